/* target_logprobs: log_softmax(logits)[target] per row, the LM loss's only input. */
#include <math.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* A running log-sum-exp: the largest value seen and the sum of exp(x - max) over the values. */
struct zt_lse {
    float max;
    float sum;
};

/* Merges two partial log-sum-exps. An empty side (max = -inf, sum = 0) contributes nothing; the
 * explicit case keeps exp(-inf - -inf) = NaN out of rows that are all -inf so far. */
__device__ __forceinline__ zt_lse zt_lse_merge(zt_lse a, zt_lse b) {
    const float max = fmaxf(a.max, b.max);
    if (max == -INFINITY) return a;
    return zt_lse{max, a.sum * expf(a.max - max) + b.sum * expf(b.max - max)};
}

__device__ __forceinline__ zt_lse zt_warp_lse(zt_lse x) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        zt_lse other;
        other.max = __shfl_down_sync(0xffffffffu, x.max, offset);
        other.sum = __shfl_down_sync(0xffffffffu, x.sum, offset);
        x = zt_lse_merge(x, other);
    }
    return x; /* complete in lane 0 only */
}

/* One block per row, one read of the row: each thread keeps an online (max, sum) over its
 * columns, then warps and the block merge them. Targets were validated before the launch. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_target_logprobs_k(float *logprob,         /* (R) */
                         const float *logits,    /* (R,V) */
                         const int32_t *targets, /* (R) */
                         int vocab) {
    __shared__ zt_lse warp_lse[kBlockThreads / kWarpSize];
    const size_t row = blockIdx.x;
    const float *x = logits + row * (size_t)vocab;
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;

    zt_lse mine = {-INFINITY, 0.0f};
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float value = x[j];
        if (value > mine.max) { /* rescale the old sum to the new max */
            mine.sum = mine.sum * expf(mine.max - value) + 1.0f;
            mine.max = value;
        } else if (value != -INFINITY) {        /* exp(-inf) adds nothing; NaN falls through */
            mine.sum += expf(value - mine.max); /* and poisons the sum, as it should */
        }
    }
    mine = zt_warp_lse(mine);
    if (lane == 0) warp_lse[warp] = mine;
    __syncthreads();
    if (warp == 0) {
        const int n_warps = blockDim.x / kWarpSize;
        zt_lse total = lane < n_warps ? warp_lse[lane] : zt_lse{-INFINITY, 0.0f};
        total = zt_warp_lse(total);
        if (lane == 0) logprob[row] = x[targets[row]] - (total.max + logf(total.sum));
    }
}

zt_status zt_cuda_target_logprobs(zt_backend *be, float *logprob, /* (R) */
                                  const float *logits,            /* (R,V) */
                                  const int32_t *targets,         /* (R) */
                                  int n_rows, int vocab) {
    const char *op = "target_logprobs";
    ZT_TRY(zt_check_logprob_args(op, logprob, logits, targets, n_rows, vocab));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    /* Checked before the launch so that a bad target leaves logprob untouched. */
    int bad_row;
    int32_t bad_target;
    ZT_TRY(zt_cuda_find_bad_index(cb, targets, n_rows, vocab, &bad_row, &bad_target));
    if (bad_row >= 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d target %d outside [0, %d)", op, bad_row,
                       (int)bad_target, vocab);

    ZT_LAUNCH(zt_target_logprobs_k, (unsigned)n_rows, kBlockThreads, 0, cb->stream, logprob, logits,
              targets, vocab);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
