/* target_logprobs_backward: the gradient of log_softmax(logits)[target] per row,
 *     d_logits[r, j] = d_logprob[r] * ([j == targets[r]] - softmax(logits[r, :])_j).
 * Two launches: one block per row reduces it to its max and 1 / sum exp(x - max) (a fixed block
 * tree, so the bits depend on V alone), then a (row, slice) grid writes every element; that pass
 * has no reduction, so its split is free to fill the device. The second reads each logit before
 * writing its gradient, so d_logits may be the logits (the head's chunk, reused in place).
 *
 * Numerics as the CPU's (kernels/cpu/logprob_backward.c) but for exp, taken in f32 on x - max:
 * the sum of exp and the gradient in double, so 1 - p of a target that holds nearly all the mass
 * keeps its digits. NaN and -inf follow the CPU: a row with a NaN, or all -inf, is NaN. */
#include <math.h>
#include <stdint.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* Columns per block of the gradient pass: 16 per thread. */
constexpr int kLogprobGradSlice = 16 * kBlockThreads;

/* A row's statistics. */
struct zt_logprob_row {
    float max;
    double inv_sum; /* 1 / sum_j exp(x_j - max) */
};

/* max over the row (NaN never becomes it, as on the CPU where a NaN still poisons the sum), then
 * the sum of exp(x - max) in double; thread t takes columns t, t + 256, ... in order. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_logprob_row_stats_k(zt_logprob_row *stats, /* (R) */
                           const float *logits,   /* (R,V) */
                           int vocab) {
    __shared__ float max_partials[kWarpSize];
    __shared__ double sum_partials[kWarpSize];
    const size_t row = blockIdx.x;
    const float *x = logits + row * (size_t)vocab;
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;

    float mine = -INFINITY;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x)
        mine = fmaxf(mine, x[j]);
    mine = zt_warp_max(mine);
    if (lane == 0) max_partials[warp] = mine;
    __syncthreads();
    const int n_warps = blockDim.x / kWarpSize;
    const float max = zt_warp_max(lane < n_warps ? max_partials[lane] : -INFINITY);

    double sum = 0.0;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x)
        sum += (double)expf(x[j] - max);
    sum = zt_block_sum_double(sum, sum_partials);
    if (threadIdx.x == 0) stats[row] = zt_logprob_row{max, 1.0 / sum};
}

/* Grid (row, slice). */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_logprob_grad_k(float *d_logits,             /* (R,V) */
                      const float *logits,         /* (R,V) */
                      const int32_t *targets,      /* (R) */
                      const float *d_logprob,      /* (R) */
                      const zt_logprob_row *stats, /* (R) */
                      int vocab) {
    const size_t row = blockIdx.x;
    const int begin = (int)blockIdx.y * kLogprobGradSlice;
    const int end = vocab - begin < kLogprobGradSlice ? vocab : begin + kLogprobGradSlice;
    const float *x = logits + row * (size_t)vocab;
    float *dx = d_logits + row * (size_t)vocab;
    const zt_logprob_row s = stats[row];
    const double scale = (double)d_logprob[row];
    const int target = targets[row];
    for (int j = begin + (int)threadIdx.x; j < end; j += blockDim.x) {
        const double p = (double)expf(x[j] - s.max) * s.inv_sum;
        dx[j] = (float)(scale * ((j == target ? 1.0 : 0.0) - p));
    }
}

size_t zt_cuda_logprob_backward_scratch_bytes(int n_rows) {
    return n_rows > 0 ? (size_t)n_rows * sizeof(zt_logprob_row) : 0;
}

zt_status zt_cuda_target_logprobs_backward(zt_backend *be, float *d_logits, /* (R,V) = */
                                           const float *logits,             /* (R,V) */
                                           const int32_t *targets,          /* (R) */
                                           const float *d_logprob,          /* (R) */
                                           int n_rows, int vocab) {
    const char *op = "target_logprobs_backward";
    ZT_TRY(zt_check_logprob_backward_args(op, d_logits, logits, targets, d_logprob, n_rows, vocab));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    /* Checked before the launches so that a bad target leaves d_logits untouched. */
    int bad_row;
    int32_t bad_target;
    ZT_TRY(zt_cuda_find_bad_index(cb, targets, n_rows, vocab, &bad_row, &bad_target));
    if (bad_row >= 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d target %d outside [0, %d)", op, bad_row,
                       (int)bad_target, vocab);

    float *scratch = NULL;
    ZT_TRY(zt_cuda_scratch(cb, zt_cuda_logprob_backward_scratch_bytes(n_rows) / sizeof(float), op,
                           &scratch));
    zt_logprob_row *stats = reinterpret_cast<zt_logprob_row *>(scratch);

    ZT_LAUNCH(zt_logprob_row_stats_k, (unsigned)n_rows, kBlockThreads, 0, cb->stream, stats, logits,
              vocab);
    const unsigned slices = (unsigned)((vocab + kLogprobGradSlice - 1) / kLogprobGradSlice);
    ZT_LAUNCH(zt_logprob_grad_k, dim3((unsigned)n_rows, slices), kBlockThreads, 0, cb->stream,
              d_logits, logits, targets, d_logprob, stats, vocab);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
