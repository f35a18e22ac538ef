/* Causal self-attention with a key padding mask, flash style: scores are produced one key tile
 * at a time and folded into a running (max, sum, output) per query with the online softmax, so
 * no T x T matrix exists anywhere, not even per block. */
#include <math.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

constexpr int kAttnWarps = 4;
constexpr int kAttnThreads = kAttnWarps * kWarpSize;
constexpr int kRowsPerWarp = 4;                       /* query rows each warp owns */
constexpr int kQueryTile = kAttnWarps * kRowsPerWarp; /* query rows per block */
constexpr int kKeyTile = kWarpSize;                   /* keys per tile: one per lane */
constexpr int kMaxHeadDim = 256;                      /* 8 output columns per lane */
/* Without an opt-in, a block may use this much dynamic shared memory. */
constexpr size_t kDefaultSharedBytes = 48 * 1024;

/* Dynamic shared memory: the query tile (scaled), the key tile with rows padded to D + 1 floats
 * (lane j reads key row j, so the padding puts the 32 lanes in 32 different banks), and the
 * value tile. */
static size_t attention_shared_bytes(int head_dim) {
    return sizeof(float) * ((size_t)kQueryTile * head_dim + (size_t)kKeyTile * (head_dim + 1) +
                            (size_t)kKeyTile * head_dim);
}

/* One block per (query tile, head, sequence). Warp w owns query rows w*kRowsPerWarp .. +3 of the
 * tile. For each key tile, lane j scores key j against the warp's rows; the warp's max updates
 * the running max m, and lane-local partial sums l and the output accumulators (lane holds
 * columns lane, lane+32, ...) are rescaled by exp(m_old - m_new). kDimsPerLane = ceil(D/32). */
template <int kDimsPerLane>
static __global__ void __launch_bounds__(kAttnThreads)
    zt_attention_k(float *out,                                     /* (B,T,C) */
                   const float *q, const float *k, const float *v, /* (B,T,C) each */
                   const int32_t *key_mask,                        /* (B,T) */
                   int seq_len, int n_heads, int head_dim, float q_scale) {
    __shared__ float probs[kAttnWarps][kRowsPerWarp][kKeyTile];
    __shared__ int key_admissible[kKeyTile];                /* in the sequence and not padding */
    float *q_tile = zt_dynamic_shared<float>();             /* (kQueryTile, D) */
    float *k_tile = q_tile + (size_t)kQueryTile * head_dim; /* (kKeyTile, D + 1) */
    float *v_tile = k_tile + (size_t)kKeyTile * (head_dim + 1); /* (kKeyTile, D) */

    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kQueryTile;
    const size_t row_stride = (size_t)n_heads * head_dim;
    const size_t head_offset = (size_t)b * seq_len * row_stride + (size_t)h * head_dim;
    const int32_t *mask = key_mask + (size_t)b * seq_len;

    /* HF scales the q_proj output, so q is rounded to q * q_scale before any dot product. */
    for (int idx = threadIdx.x; idx < kQueryTile * head_dim; idx += blockDim.x) {
        int r = idx / head_dim, d = idx % head_dim, i = q0 + r;
        q_tile[idx] = i < seq_len ? q[head_offset + (size_t)i * row_stride + d] * q_scale : 0.0f;
    }

    const int first_row = q0 + warp * kRowsPerWarp; /* this warp's first query */
    const int last_query = (q0 + kQueryTile < seq_len ? q0 + kQueryTile : seq_len) - 1;
    const int warp_last =
        first_row + kRowsPerWarp - 1 < last_query ? first_row + kRowsPerWarp - 1 : last_query;

    float m[kRowsPerWarp], l_part[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
    for (int r = 0; r < kRowsPerWarp; r++) {
        m[r] = -INFINITY;
        l_part[r] = 0.0f;
        for (int t = 0; t < kDimsPerLane; t++)
            acc[r][t] = 0.0f;
    }

    /* Causal: no query of this block looks past last_query. */
    for (int k0 = 0; k0 <= last_query; k0 += kKeyTile) {
        __syncthreads(); /* the previous tile is consumed (and q_tile is written) */
        for (int idx = threadIdx.x; idx < kKeyTile * head_dim; idx += blockDim.x) {
            int r = idx / head_dim, d = idx % head_dim, j = k0 + r;
            size_t at = head_offset + (size_t)j * row_stride + d;
            k_tile[r * (head_dim + 1) + d] = j < seq_len ? k[at] : 0.0f;
            v_tile[idx] = j < seq_len ? v[at] : 0.0f;
        }
        for (int r = threadIdx.x; r < kKeyTile; r += blockDim.x)
            key_admissible[r] = k0 + r < seq_len && mask[k0 + r] != 0;
        __syncthreads();
        /* Warp-uniform skip: no rows, or every row of the warp precedes the tile. */
        if (first_row >= seq_len || k0 > warp_last) continue;

        float score[kRowsPerWarp];
        for (int r = 0; r < kRowsPerWarp; r++)
            score[r] = 0.0f;
        const float *k_row = k_tile + lane * (head_dim + 1);
        for (int d = 0; d < head_dim; d++) {
            float key_d = k_row[d];
            for (int r = 0; r < kRowsPerWarp; r++)
                score[r] += q_tile[(warp * kRowsPerWarp + r) * head_dim + d] * key_d;
        }

        const int j = k0 + lane;
        for (int r = 0; r < kRowsPerWarp; r++) {
            const int i = first_row + r;
            const bool admissible = key_admissible[lane] && j <= i && i < seq_len;
            const float s = admissible ? score[r] : -INFINITY;
            const float tile_max = zt_warp_max(s);
            float p = 0.0f;
            if (tile_max > -INFINITY) { /* warp-uniform: the max went through every lane */
                const float m_new = fmaxf(m[r], tile_max);
                const float correction = expf(m[r] - m_new); /* 0 while m[r] is still -inf */
                p = admissible ? expf(s - m_new) : 0.0f;
                l_part[r] = l_part[r] * correction + p;
                for (int t = 0; t < kDimsPerLane; t++)
                    acc[r][t] *= correction;
                m[r] = m_new;
            }
            probs[warp][r][lane] = p;
        }
        __syncwarp(); /* every lane's probabilities are visible to the whole warp */

        for (int jj = 0; jj < kKeyTile; jj++) {
            for (int t = 0; t < kDimsPerLane; t++) {
                const int d = lane + t * kWarpSize;
                const float value_d = d < head_dim ? v_tile[jj * head_dim + d] : 0.0f;
                for (int r = 0; r < kRowsPerWarp; r++)
                    acc[r][t] += probs[warp][r][jj] * value_d;
            }
        }
    }

    for (int r = 0; r < kRowsPerWarp; r++) {
        const int i = first_row + r;
        if (i >= seq_len) break; /* warp-uniform */
        const float l = zt_warp_sum(l_part[r]);
        float *out_row = out + head_offset + (size_t)i * row_stride;
        for (int t = 0; t < kDimsPerLane; t++) {
            const int d = lane + t * kWarpSize;
            /* l == 0: a query with no admissible key (a left-pad row) gets zeros. */
            if (d < head_dim) out_row[d] = l > 0.0f ? acc[r][t] / l : 0.0f;
        }
    }
}

template <int kDimsPerLane>
static zt_status launch_attention(zt_cuda_backend *cb, float *out, const float *q, const float *k,
                                  const float *v, const int32_t *key_mask, int batch, int seq_len,
                                  int n_heads, int head_dim, float q_scale) {
    const size_t shared_bytes = attention_shared_bytes(head_dim);
    if (shared_bytes > kDefaultSharedBytes)
        ZT_CUDA_TRY(
            cudaFuncSetAttribute(reinterpret_cast<const void *>(zt_attention_k<kDimsPerLane>),
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared_bytes));
    const dim3 grid((unsigned)((seq_len + kQueryTile - 1) / kQueryTile), (unsigned)n_heads,
                    (unsigned)batch);
    ZT_LAUNCH(zt_attention_k<kDimsPerLane>, grid, kAttnThreads, shared_bytes, cb->stream, out, q, k,
              v, key_mask, seq_len, n_heads, head_dim, q_scale);
    return ZT_OK;
}

zt_status zt_cuda_attention(zt_backend *be, float *out,                     /* (B,T,C) */
                            const float *q, const float *k, const float *v, /* (B,T,C) each */
                            const int32_t *key_mask,                        /* (B,T) */
                            int batch, int seq_len, int n_heads, int head_dim, float q_scale) {
    const char *op = "attention";
    ZT_TRY(zt_check_attention_args(op, out, q, k, v, key_mask, batch, seq_len, n_heads, head_dim,
                                   q_scale));
    if (head_dim > kMaxHeadDim)
        return zt_fail(ZT_ERR_UNAVAILABLE, "%s: head_dim %d > %d is not supported on CUDA", op,
                       head_dim, kMaxHeadDim);
    if (n_heads > 65535 || batch > 65535)
        return zt_fail(ZT_ERR_UNAVAILABLE, "%s: %d heads x %d sequences exceed the CUDA grid", op,
                       n_heads, batch);
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    switch ((head_dim + kWarpSize - 1) / kWarpSize) {
#define ZT_ATTENTION_CASE(n)                                                                       \
    case n:                                                                                        \
        return launch_attention<n>(cb, out, q, k, v, key_mask, batch, seq_len, n_heads, head_dim,  \
                                   q_scale);
        ZT_ATTENTION_CASE(1)
        ZT_ATTENTION_CASE(2)
        ZT_ATTENTION_CASE(3)
        ZT_ATTENTION_CASE(4)
        ZT_ATTENTION_CASE(5)
        ZT_ATTENTION_CASE(6)
        ZT_ATTENTION_CASE(7)
        ZT_ATTENTION_CASE(8)
#undef ZT_ATTENTION_CASE
    }
    return zt_fail(ZT_ERR_INTERNAL, "%s: no kernel for head_dim %d", op, head_dim);
}

} // namespace ZT_CUDA_NAMESPACE
