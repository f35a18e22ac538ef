/* Attention over a key/value cache, for incremental decoding: a copy kernel appends the new keys
 * and values to the cache, then one block per (new query, head, sequence) attends to the cache.
 * A decode step has one query per sequence and head, so the block splits that query's keys over
 * its warps, each keeping an online softmax (running max, sum and output), and merges the warps
 * at the end; the scores never exist as a row. */
#include <math.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

constexpr int kCachedWarps = 4;
constexpr int kCachedThreads = kCachedWarps * kWarpSize;
constexpr int kCachedMaxHeadDim = 256; /* 8 output columns per lane */

static __global__ void zt_kv_append_k(float *k_cache, float *v_cache, /* (B,capacity,C) each */
                                      const float *k, const float *v, /* (B,Tq,C) each */
                                      int n_new, int capacity, int start, size_t n_cols,
                                      size_t n_elems) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n_elems; idx += stride) {
        const size_t row = idx / n_cols, c = idx % n_cols;
        const size_t b = row / (size_t)n_new, i = row % (size_t)n_new;
        const size_t at = (b * (size_t)capacity + (size_t)start + i) * n_cols + c;
        k_cache[at] = k[idx];
        v_cache[at] = v[idx];
    }
}

/* Warp w takes keys w, w + kCachedWarps, ... up to the query's column; the whole warp scores one
 * key (lane d-slices of the dot, then a butterfly sum), so a masked key is skipped by the whole
 * warp at once. Lane holds output columns lane, lane + 32, ... (kDimsPerLane = ceil(D/32)). */
template <int kDimsPerLane>
static __global__ void __launch_bounds__(kCachedThreads)
    zt_attention_cached_k(float *out,                                 /* (B,Tq,C) */
                          const float *q,                             /* (B,Tq,C) */
                          const float *k_cache, const float *v_cache, /* (B,capacity,C) each */
                          const int32_t *key_mask,                    /* (B,capacity) */
                          int n_new, int capacity, int start, int n_heads, int head_dim,
                          float q_scale) {
    __shared__ float q_scaled[kCachedMaxHeadDim];
    __shared__ float warp_max[kCachedWarps], warp_sum[kCachedWarps];
    __shared__ float warp_acc[kCachedWarps][kCachedMaxHeadDim];

    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int query = start + i; /* the query's own cache column */
    const size_t row_stride = (size_t)n_heads * head_dim;
    const size_t query_at = ((size_t)b * n_new + i) * row_stride + (size_t)h * head_dim;
    const size_t cache_head = (size_t)b * capacity * row_stride + (size_t)h * head_dim;
    const int32_t *mask = key_mask + (size_t)b * capacity;

    /* HF scales the q_proj output, so q is rounded to q * q_scale before any dot product. */
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
        q_scaled[d] = q[query_at + d] * q_scale;
    __syncthreads();

    float m = -INFINITY, l = 0.0f, acc[kDimsPerLane];
    for (int t = 0; t < kDimsPerLane; t++)
        acc[t] = 0.0f;
    for (int j = warp; j <= query; j += kCachedWarps) {
        if (mask[j] == 0) continue; /* warp-uniform: every lane reads the same key */
        const float *k_row = k_cache + cache_head + (size_t)j * row_stride;
        float part = 0.0f;
        for (int t = 0; t < kDimsPerLane; t++) {
            const int d = lane + t * kWarpSize;
            if (d < head_dim) part += q_scaled[d] * k_row[d];
        }
        const float score = zt_warp_sum(part);
        const float m_new = fmaxf(m, score);
        const float correction = expf(m - m_new); /* 0 while m is still -inf */
        const float p = expf(score - m_new);
        l = l * correction + p;
        const float *v_row = v_cache + cache_head + (size_t)j * row_stride;
        for (int t = 0; t < kDimsPerLane; t++) {
            const int d = lane + t * kWarpSize;
            acc[t] = acc[t] * correction + (d < head_dim ? p * v_row[d] : 0.0f);
        }
        m = m_new;
    }

    if (lane == 0) {
        warp_max[warp] = m;
        warp_sum[warp] = l;
    }
    for (int t = 0; t < kDimsPerLane; t++) {
        const int d = lane + t * kWarpSize;
        if (d < head_dim) warp_acc[warp][d] = acc[t];
    }
    __syncthreads();

    float m_all = -INFINITY;
    for (int w = 0; w < kCachedWarps; w++)
        m_all = fmaxf(m_all, warp_max[w]);
    float *out_row = out + query_at;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float total = 0.0f, weight = 0.0f;
        for (int w = 0; w < kCachedWarps; w++) {
            if (warp_max[w] == -INFINITY) continue; /* a warp that saw no admissible key */
            const float scale = expf(warp_max[w] - m_all);
            weight += warp_sum[w] * scale;
            total += warp_acc[w][d] * scale;
        }
        /* weight == 0: a query with no admissible key (a left-pad row) gets zeros. */
        out_row[d] = weight > 0.0f ? total / weight : 0.0f;
    }
}

template <int kDimsPerLane>
static zt_status
launch_attention_cached(zt_cuda_backend *cb, float *out, const float *q, const float *k_cache,
                        const float *v_cache, const int32_t *key_mask, int batch, int n_new,
                        int capacity, int start, int n_heads, int head_dim, float q_scale) {
    const dim3 grid((unsigned)n_new, (unsigned)n_heads, (unsigned)batch);
    ZT_LAUNCH(zt_attention_cached_k<kDimsPerLane>, grid, kCachedThreads, 0, cb->stream, out, q,
              k_cache, v_cache, key_mask, n_new, capacity, start, n_heads, head_dim, q_scale);
    return ZT_OK;
}

zt_status zt_cuda_attention_cached(zt_backend *be, float *out,                     /* (B,Tq,C) */
                                   const float *q, const float *k, const float *v, /* (B,Tq,C) */
                                   float *k_cache, float *v_cache, /* (B,capacity,C) each */
                                   const int32_t *key_mask,        /* (B,capacity) */
                                   int batch, int n_new, int capacity, int start, int n_heads,
                                   int head_dim, float q_scale) {
    const char *op = "attention_cached";
    ZT_TRY(zt_check_attention_cached_args(op, out, q, k, v, k_cache, v_cache, key_mask, batch,
                                          n_new, capacity, start, n_heads, head_dim, q_scale));
    if (head_dim > kCachedMaxHeadDim)
        return zt_fail(ZT_ERR_UNAVAILABLE, "%s: head_dim %d > %d is not supported on CUDA", op,
                       head_dim, kCachedMaxHeadDim);
    if (n_heads > 65535 || batch > 65535)
        return zt_fail(ZT_ERR_UNAVAILABLE, "%s: %d heads x %d sequences exceed the CUDA grid", op,
                       n_heads, batch);
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    const size_t n_cols = (size_t)n_heads * head_dim;
    const size_t n_elems = (size_t)batch * n_new * n_cols;
    ZT_LAUNCH(zt_kv_append_k, zt_stride_blocks(n_elems), kBlockThreads, 0, cb->stream, k_cache,
              v_cache, k, v, n_new, capacity, start, n_cols, n_elems);

    switch ((head_dim + kWarpSize - 1) / kWarpSize) {
#define ZT_ATTENTION_CACHED_CASE(n)                                                                \
    case n:                                                                                        \
        return launch_attention_cached<n>(cb, out, q, k_cache, v_cache, key_mask, batch, n_new,    \
                                          capacity, start, n_heads, head_dim, q_scale);
        ZT_ATTENTION_CACHED_CASE(1)
        ZT_ATTENTION_CACHED_CASE(2)
        ZT_ATTENTION_CACHED_CASE(3)
        ZT_ATTENTION_CACHED_CASE(4)
        ZT_ATTENTION_CACHED_CASE(5)
        ZT_ATTENTION_CACHED_CASE(6)
        ZT_ATTENTION_CACHED_CASE(7)
        ZT_ATTENTION_CACHED_CASE(8)
#undef ZT_ATTENTION_CACHED_CASE
    }
    return zt_fail(ZT_ERR_INTERNAL, "%s: no kernel for head_dim %d", op, head_dim);
}

} // namespace ZT_CUDA_NAMESPACE
