/* target_logprobs: log_softmax(logits)[target] per row, the LM loss's only input.
 *
 * A row's vocabulary is split over several blocks so that a head chunk of a few rows still keeps
 * every SM streaming (docs/design.md §4.3): with one block per row, the 16 rows of a MeZO batch
 * ran on 16 of 132 SMs. Blocks (row, split) each reduce one slice of a row to a partial (max,
 * sum-exp) in the backend's partials buffer; a second kernel merges each row's partials in split
 * order. The order of every sum is fixed by the indices alone (no atomics), so the bits depend on
 * the logits, the row count and the device's SM count, never on which block finishes first.
 */
#include <math.h>
#include <stdint.h>

#include "cuda/cuda_common.cuh"

/* The split rule (zt_logprob_split_of below): blocks aimed at per SM, 4 waves of the 8 resident
 * 256-thread blocks, and the fewest columns per block, 8 per thread, below which a block is mostly
 * overhead. The host executor lowers both, so that the test sizes (a 504-word fixture vocabulary,
 * a few hundred rows) take the split and the unsplit paths. */
#ifndef ZT_CUDA_LOGPROB_BLOCKS_PER_SM
#define ZT_CUDA_LOGPROB_BLOCKS_PER_SM 32
#endif
#ifndef ZT_CUDA_LOGPROB_MIN_SLICE
#define ZT_CUDA_LOGPROB_MIN_SLICE 2048
#endif

namespace ZT_CUDA_NAMESPACE {

/* A running log-sum-exp: the largest value seen and the sum of exp(x - max) over the values. */
struct zt_lse {
    float max;
    float sum;
};

/* Folds one logit into a running log-sum-exp. -inf adds nothing (exp(-inf) = 0); NaN never
 * becomes the max and poisons the sum, so a row holding one is NaN, as on the CPU. */
__device__ __forceinline__ void zt_lse_add(zt_lse &acc, float value) {
    if (value > acc.max) { /* rescale the old sum to the new max */
        acc.sum = acc.sum * expf(acc.max - value) + 1.0f;
        acc.max = value;
    } else if (value != -INFINITY) {
        acc.sum += expf(value - acc.max);
    }
}

/* Merges two partial log-sum-exps. A side that has seen only -inf and NaN has max -inf and sum 0
 * or NaN; when both sides are such, the sums are added instead of rescaled, which keeps
 * exp(-inf - -inf) = NaN out of an all -inf row and a NaN in it. */
__device__ __forceinline__ zt_lse zt_lse_merge(zt_lse a, zt_lse b) {
    const float max = fmaxf(a.max, b.max);
    if (max == -INFINITY) return zt_lse{max, a.sum + b.sum};
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

/* (row, split) blocks: block (r, s) reduces columns [s * slice, min((s + 1) * slice, V)) of row r.
 * With one split (partials == NULL) it finishes the row itself; otherwise it leaves its partial at
 * partials[r * splits + s] for zt_logprob_merge_k. kVec4: V and slice are multiples of 4 and the
 * logits 16-byte aligned, so each thread reads whole float4s. Targets were validated before the
 * launch. */
template <bool kVec4>
static __global__ void __launch_bounds__(kBlockThreads)
    zt_logprob_partial_k(float *logprob,         /* (R) */
                         zt_lse *partials,       /* (R,splits) or NULL */
                         const float *logits,    /* (R,V) */
                         const int32_t *targets, /* (R) */
                         int vocab, int slice) {
    __shared__ zt_lse warp_lse[kBlockThreads / kWarpSize];
    const size_t row = blockIdx.x;
    const int begin = (int)blockIdx.y * slice;
    const int end = vocab - begin < slice ? vocab : begin + slice;
    const float *x = logits + row * (size_t)vocab;
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;

    zt_lse mine = {-INFINITY, 0.0f};
    if (kVec4) {
        /* Two loads issued before either is used: 32 bytes in flight per thread, so that 2048
         * resident threads keep ~64 KB per SM on the way from memory. A missing second float4
         * reads as -inf, which adds nothing. */
        const float4 *x4 = reinterpret_cast<const float4 *>(x + begin);
        const int n4 = (end - begin) / 4, stride = blockDim.x;
        const float4 none = make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
        for (int j = threadIdx.x; j < n4; j += 2 * stride) {
            const float4 a = x4[j];
            const float4 b = j + stride < n4 ? x4[j + stride] : none;
            zt_lse_add(mine, a.x);
            zt_lse_add(mine, a.y);
            zt_lse_add(mine, a.z);
            zt_lse_add(mine, a.w);
            zt_lse_add(mine, b.x);
            zt_lse_add(mine, b.y);
            zt_lse_add(mine, b.z);
            zt_lse_add(mine, b.w);
        }
    } else {
        for (int j = begin + (int)threadIdx.x; j < end; j += blockDim.x)
            zt_lse_add(mine, x[j]);
    }
    mine = zt_warp_lse(mine);
    if (lane == 0) warp_lse[warp] = mine;
    __syncthreads();
    if (warp == 0) {
        const int n_warps = blockDim.x / kWarpSize;
        zt_lse total = lane < n_warps ? warp_lse[lane] : zt_lse{-INFINITY, 0.0f};
        total = zt_warp_lse(total);
        if (lane == 0) {
            if (partials)
                partials[row * gridDim.y + blockIdx.y] = total;
            else
                logprob[row] = x[targets[row]] - (total.max + logf(total.sum));
        }
    }
}

/* One warp per row: lane l merges splits l, l + 32, ... in that order, then the warp's tree does
 * the rest, so the order is fixed by the split count. A warp past the last row leaves whole. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_logprob_merge_k(float *logprob,         /* (R) */
                       const zt_lse *partials, /* (R,splits) */
                       const float *logits,    /* (R,V) */
                       const int32_t *targets, /* (R) */
                       int n_rows, int vocab, int splits) {
    const int lane = threadIdx.x % kWarpSize;
    const size_t row = (size_t)blockIdx.x * (kBlockThreads / kWarpSize) + threadIdx.x / kWarpSize;
    if (row >= (size_t)n_rows) return;
    const zt_lse *p = partials + row * (size_t)splits;
    zt_lse total = {-INFINITY, 0.0f};
    for (int s = lane; s < splits; s += kWarpSize)
        total = zt_lse_merge(total, p[s]);
    total = zt_warp_lse(total);
    if (lane == 0)
        logprob[row] = logits[row * (size_t)vocab + targets[row]] - (total.max + logf(total.sum));
}

/* How one call splits its rows. */
struct zt_logprob_split {
    int splits; /* blocks per row */
    int slice;  /* columns per block (the last may have fewer), a multiple of 4 */
};

/* Enough splits that rows x splits reaches ZT_CUDA_LOGPROB_BLOCKS_PER_SM blocks per SM, but no
 * slice under ZT_CUDA_LOGPROB_MIN_SLICE columns. A 1024-row chunk of OPT's 50272 words on 132
 * SMs: 5 splits of 10056 columns; a MeZO batch's 16 rows: 24 splits of 2096. */
static zt_logprob_split zt_logprob_split_of(int n_sms, int n_rows, int vocab) {
    const long long target = (long long)n_sms * ZT_CUDA_LOGPROB_BLOCKS_PER_SM;
    long long splits = (target + n_rows - 1) / n_rows;
    const long long most = vocab / ZT_CUDA_LOGPROB_MIN_SLICE;
    if (splits > most) splits = most;
    if (splits > 65535) splits = 65535; /* gridDim.y */
    if (splits < 1) splits = 1;
    /* Rounding the slice up to whole float4s may leave the last split empty: recount. */
    long long slice = (vocab + splits - 1) / splits;
    slice = (slice + 3) / 4 * 4;
    splits = (vocab + slice - 1) / slice;
    return zt_logprob_split{(int)splits, (int)slice};
}

/* A split call has rows < target (else one split suffices), so rows x splits < rows x
 * (target / rows + 1) < 2 target: the fixed buffer below holds every call's partials. */
static size_t zt_logprob_slots(int n_sms) {
    return 2u * (size_t)n_sms * ZT_CUDA_LOGPROB_BLOCKS_PER_SM;
}

zt_status zt_cuda_logprob_init(zt_cuda_backend *cb) {
    ZT_CUDA_TRY(cudaDeviceGetAttribute(&cb->n_sms, cudaDevAttrMultiProcessorCount, cb->device));
    if (cb->n_sms < 1) cb->n_sms = 1;
    const size_t slots = zt_logprob_slots(cb->n_sms);
    void *buffer = NULL;
    ZT_CUDA_TRY(cudaMalloc(&buffer, slots * sizeof(zt_lse)));
    zt_mem_track_alloc(ZT_MEM_SCRATCH, slots * sizeof(zt_lse));
    cb->logprob_partials = static_cast<zt_lse *>(buffer);
    cb->logprob_slots = slots;
    return ZT_OK;
}

void zt_cuda_logprob_release(zt_cuda_backend *cb) {
    if (cb->logprob_partials == NULL) return;
    (void)cudaFree(cb->logprob_partials);
    zt_mem_track_free(ZT_MEM_SCRATCH, cb->logprob_slots * sizeof(zt_lse));
    cb->logprob_partials = NULL;
    cb->logprob_slots = 0;
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

    const zt_logprob_split split = zt_logprob_split_of(cb->n_sms, n_rows, vocab);
    zt_lse *partials = NULL;
    if (split.splits > 1) {
        if ((size_t)n_rows * (size_t)split.splits > cb->logprob_slots)
            return zt_fail(ZT_ERR_INTERNAL, "%s: %d rows x %d splits overflow the %zu partials", op,
                           n_rows, split.splits, cb->logprob_slots);
        partials = cb->logprob_partials;
    }
    const dim3 grid((unsigned)n_rows, (unsigned)split.splits);
    const bool vec4 = vocab % 4 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0;
    if (vec4)
        ZT_LAUNCH(zt_logprob_partial_k<true>, grid, kBlockThreads, 0, cb->stream, logprob, partials,
                  logits, targets, vocab, split.slice);
    else
        ZT_LAUNCH(zt_logprob_partial_k<false>, grid, kBlockThreads, 0, cb->stream, logprob,
                  partials, logits, targets, vocab, split.slice);
    if (partials) {
        constexpr int rows_per_block = kBlockThreads / kWarpSize;
        const unsigned blocks = (unsigned)((n_rows + rows_per_block - 1) / rows_per_block);
        ZT_LAUNCH(zt_logprob_merge_k, blocks, kBlockThreads, 0, cb->stream, logprob, partials,
                  logits, targets, n_rows, vocab, split.splits);
    }
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
