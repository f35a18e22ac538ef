/* attention_backward: the gradient of causal attention with a key padding mask (attention.cu),
 * flash style: the probabilities are recomputed tile by tile from q and k, never stored as a
 * T x T matrix (not even per block). With P the softmax of the scores s_ij = (q_i * q_scale) . k_j
 * over the admissible keys j <= i, and delta_i = d_out_i . out_i (= sum_j P_ij dP_ij):
 *     dP_ij = d_out_i . v_j,   dS_ij = P_ij (dP_ij - delta_i)
 *     d_v_j = sum_i P_ij d_out_i,   d_k_j = sum_i dS_ij (q_i * q_scale),
 *     d_q_i = q_scale * sum_j dS_ij k_j.
 * The CPU backend's numerics (kernels/cpu/attention_backward.c): scores in f32 from q rounded to
 * q * q_scale first (as the forward), exp in f32, delta and dP - delta in double.
 *
 * d_k and d_v sum over queries and d_q over keys, so each has its own owner and no atomics are
 * needed: two kernels over tiles of 32 rows of one (sequence, head).
 *   - zt_attention_bwd_query_k, a block per query tile: first the row statistics of its queries
 *     (the running max and sum of exp over the key tiles, as the forward's online softmax, and
 *     delta), kept in a (B, H, T) scratch, then d_q, walking the key tiles in order.
 *   - zt_attention_bwd_key_k, a block per key tile, after it: d_k and d_v, walking the query
 *     tiles from the diagonal on, in order, with the statistics the first kernel left.
 * Both compute a probability through the same functions from the same statistics, so P and dS
 * have the same bits in both. Every sum runs in an order fixed by the shapes (keys or queries
 * ascending, one fused multiply-add at a time; fixed warp trees for the row sums), so the bits
 * never depend on the grid or on scheduling.
 *
 * Tiles live in dynamic shared memory; a kernel's limit comes from its attributes and the
 * device's opt-in limit, set once at create (zt_cuda_attention_backward_setup), as the forward's.
 * At D = 64 a block takes 45 KB (query kernel) / 57 KB (key kernel), at D = 128 85 / 105 KB, at
 * D = 256 165 / 201 KB: beyond an A100's 163 KB, so such heads are refused there, the sizes named.
 */
#include <math.h>
#include <stdint.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

constexpr int kBwdWarps = 4;
constexpr int kBwdThreads = kBwdWarps * kWarpSize;
constexpr int kBwdTile = kWarpSize;                /* queries or keys per tile: one key per lane */
constexpr int kBwdWarpRows = kBwdTile / kBwdWarps; /* query rows of the tile per warp */
constexpr int kBwdPStride = kBwdTile + 1;          /* P and dS tiles, rows padded */
constexpr int kBwdMaxHeadDim = 256;                /* as the forward (attention.cu) */

enum attention_backward_kernel_id { kBwdQuery = 0, kBwdKey = 1 };
static_assert(kBwdKey < kAttentionBackwardKernelSlots,
              "zt_cuda_backend::attention_backward_max_shared has a slot per kernel");

/* Row stride of the q, d_out, k and v tiles: odd, so that the 32 lanes reading one column of 32
 * rows (a key each) hit 32 different banks. */
static __host__ __device__ int tile_stride(int head_dim) {
    return head_dim % 2 ? head_dim : head_dim + 1;
}

/* Dynamic shared memory, in this order: delta (32 doubles, first for alignment), the q, d_out, k
 * and v tiles (32 x stride each), the P tile (key kernel only) and the dS tile (32 x 33 each),
 * the accumulators (d_q; or d_k and d_v: 32 x D each), the query statistics m and 1/l (32 each)
 * and the keys' admissibility (32 ints). */
struct bwd_layout {
    size_t q, d_out, k, v, p, ds, acc, m, inv_l, key_ok; /* float offsets after delta */
    size_t bytes;
};

static __host__ __device__ bwd_layout bwd_layout_of(int head_dim, int n_acc, bool with_p) {
    const size_t tile = (size_t)kBwdTile * (size_t)tile_stride(head_dim);
    const size_t pt = (size_t)kBwdTile * kBwdPStride;
    bwd_layout l;
    l.q = 0;
    l.d_out = l.q + tile;
    l.k = l.d_out + tile;
    l.v = l.k + tile;
    l.p = l.v + tile;
    l.ds = l.p + (with_p ? pt : 0);
    l.acc = l.ds + pt;
    l.m = l.acc + (size_t)n_acc * kBwdTile * (size_t)head_dim;
    l.inv_l = l.m + kBwdTile;
    l.key_ok = l.inv_l + kBwdTile;
    l.bytes = kBwdTile * sizeof(double) + (l.key_ok + kBwdTile) * sizeof(float);
    return l;
}

/* Rows [first, first + 32) of one head (x at its column 0 of row 0) into a shared tile, times
 * scale; rows at or past seq_len become zeros, whose products add nothing. */
__device__ __forceinline__ void load_tile(float *tile, int stride, const float *x,
                                          size_t row_stride, int first, int seq_len, int head_dim,
                                          float scale) {
    for (int idx = threadIdx.x; idx < kBwdTile * head_dim; idx += blockDim.x) {
        const int r = idx / head_dim, d = idx % head_dim, row = first + r;
        tile[r * stride + d] = row < seq_len ? x[(size_t)row * row_stride + d] * scale : 0.0f;
    }
}

/* a . b over D in order, one fused multiply-add at a time: the same bits wherever it runs. */
__device__ __forceinline__ float row_dot(const float *a, const float *b, int head_dim) {
    float sum = 0.0f;
    for (int d = 0; d < head_dim; d++)
        sum = fmaf(a[d], b[d], sum);
    return sum;
}

/* P_ij from the score and row i's statistics (m = -inf: no admissible key, P = 0). */
__device__ __forceinline__ float probability(float score, float m, float inv_l) {
    return expf(score - m) * inv_l;
}

/* dS_ij: dP and delta are close when P is peaked, so the difference is taken in double. */
__device__ __forceinline__ float score_gradient(float p, float d_p, double delta) {
    return (float)((double)p * ((double)d_p - delta));
}

/* The tile's admissible keys (in the sequence, not padding) into key_ok; returns the same ballot
 * of them in every warp, so a tile without any is skipped by the whole block at once. */
__device__ __forceinline__ unsigned load_key_ok(int *key_ok, const int32_t *mask, int k0,
                                                int seq_len) {
    const int lane = threadIdx.x % kWarpSize, j = k0 + lane;
    const bool ok = j < seq_len && mask[j] != 0;
    if (threadIdx.x < kWarpSize) key_ok[lane] = ok;
    return __ballot_sync(0xffffffffu, ok);
}

/* Grid (query tile, head, sequence). Warp w owns the tile's query rows 8w .. 8w + 7; in a score
 * tile lane j takes key j of the key tile. */
static __global__ void __launch_bounds__(kBwdThreads)
    zt_attention_bwd_query_k(float *d_q,                       /* (B,T,C) */
                             float *stat_m, float *stat_inv_l, /* (B,H,T) each */
                             double *stat_delta,               /* (B,H,T) */
                             const float *d_out, const float *q, const float *k, const float *v,
                             const float *out,        /* (B,T,C) each */
                             const int32_t *key_mask, /* (B,T) */
                             int seq_len, int n_heads, int head_dim, float q_scale) {
    const bwd_layout lay = bwd_layout_of(head_dim, 1, false);
    double *delta_tile = zt_dynamic_shared<double>();
    float *base = reinterpret_cast<float *>(delta_tile + kBwdTile);
    float *q_tile = base + lay.q, *do_tile = base + lay.d_out, *k_tile = base + lay.k;
    float *v_tile = base + lay.v, *ds_tile = base + lay.ds, *acc = base + lay.acc;
    int *key_ok = reinterpret_cast<int *>(base + lay.key_ok);
    const int stride = tile_stride(head_dim);

    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kBwdTile;
    const size_t row_stride = (size_t)n_heads * head_dim;
    const size_t head_offset = (size_t)b * seq_len * row_stride + (size_t)h * head_dim;
    const size_t stat_offset = ((size_t)b * n_heads + h) * (size_t)seq_len;
    const int32_t *mask = key_mask + (size_t)b * seq_len;
    const int last_query = (q0 + kBwdTile < seq_len ? q0 + kBwdTile : seq_len) - 1;

    /* HF scales the q_proj output, so q is rounded to q * q_scale before any dot product. */
    load_tile(q_tile, stride, q + head_offset, row_stride, q0, seq_len, head_dim, q_scale);
    load_tile(do_tile, stride, d_out + head_offset, row_stride, q0, seq_len, head_dim, 1.0f);
    for (int idx = threadIdx.x; idx < kBwdTile * head_dim; idx += blockDim.x)
        acc[idx] = 0.0f;
    __syncthreads();

    /* delta_i = d_out_i . out_i in double: lanes over the columns, then the warp's tree. */
    double delta[kBwdWarpRows];
    for (int r = 0; r < kBwdWarpRows; r++) {
        const int row = warp * kBwdWarpRows + r, i = q0 + row;
        double part = 0.0;
        if (i < seq_len)
            for (int d = lane; d < head_dim; d += kWarpSize)
                part += (double)do_tile[row * stride + d] *
                        (double)out[head_offset + (size_t)i * row_stride + d];
        delta[r] = zt_warp_sum_double(part);
    }

    /* Pass 1: the running max m and sum of exp (lane-local partials l_part, rescaled as the max
     * grows), as the forward's online softmax. */
    float m[kBwdWarpRows], l_part[kBwdWarpRows];
    for (int r = 0; r < kBwdWarpRows; r++) {
        m[r] = -INFINITY;
        l_part[r] = 0.0f;
    }
    for (int k0 = 0; k0 <= last_query; k0 += kBwdTile) {
        __syncthreads(); /* the previous tile is consumed */
        const unsigned any_key = load_key_ok(key_ok, mask, k0, seq_len);
        if (any_key == 0u) continue;
        load_tile(k_tile, stride, k + head_offset, row_stride, k0, seq_len, head_dim, 1.0f);
        __syncthreads();
        const int j = k0 + lane;
        for (int r = 0; r < kBwdWarpRows; r++) {
            const int row = warp * kBwdWarpRows + r, i = q0 + row;
            const bool admissible = key_ok[lane] && j <= i && i < seq_len;
            const float s = admissible
                                ? row_dot(q_tile + row * stride, k_tile + lane * stride, head_dim)
                                : -INFINITY;
            const float tile_max = zt_warp_max(s);
            if (tile_max == -INFINITY) continue; /* warp-uniform */
            const float m_new = fmaxf(m[r], tile_max);
            const float correction = expf(m[r] - m_new); /* 0 while m[r] is still -inf */
            l_part[r] = l_part[r] * correction + (admissible ? expf(s - m_new) : 0.0f);
            m[r] = m_new;
        }
    }
    float inv_l[kBwdWarpRows];
    for (int r = 0; r < kBwdWarpRows; r++) {
        const float l = zt_warp_sum(l_part[r]);
        inv_l[r] = l > 0.0f ? 1.0f / l : 0.0f;
        const int i = q0 + warp * kBwdWarpRows + r;
        if (lane == 0 && i < seq_len) {
            stat_m[stat_offset + i] = m[r];
            stat_inv_l[stat_offset + i] = inv_l[r];
            stat_delta[stat_offset + i] = delta[r];
        }
    }

    /* Pass 2: dS for the tile, then d_q += dS . K, each thread owning fixed (query, column)
     * elements of the accumulator and adding the keys in order. */
    for (int k0 = 0; k0 <= last_query; k0 += kBwdTile) {
        __syncthreads();
        const unsigned any_key = load_key_ok(key_ok, mask, k0, seq_len);
        if (any_key == 0u) continue;
        load_tile(k_tile, stride, k + head_offset, row_stride, k0, seq_len, head_dim, 1.0f);
        load_tile(v_tile, stride, v + head_offset, row_stride, k0, seq_len, head_dim, 1.0f);
        __syncthreads();
        const int j = k0 + lane;
        for (int r = 0; r < kBwdWarpRows; r++) {
            const int row = warp * kBwdWarpRows + r, i = q0 + row;
            const bool admissible = key_ok[lane] && j <= i && i < seq_len && m[r] != -INFINITY;
            float d_s = 0.0f;
            if (admissible) {
                const float s = row_dot(q_tile + row * stride, k_tile + lane * stride, head_dim);
                const float p = probability(s, m[r], inv_l[r]);
                const float d_p = row_dot(do_tile + row * stride, v_tile + lane * stride, head_dim);
                d_s = score_gradient(p, d_p, delta[r]);
            }
            ds_tile[row * kBwdPStride + lane] = d_s;
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < kBwdTile * head_dim; idx += blockDim.x) {
            const int row = idx / head_dim, d = idx % head_dim;
            float sum = acc[idx];
            for (int jj = 0; jj < kBwdTile; jj++)
                sum = fmaf(ds_tile[row * kBwdPStride + jj], k_tile[jj * stride + d], sum);
            acc[idx] = sum;
        }
    }
    __syncthreads();

    /* A query with no admissible key passes no gradient: exact zeros, as the CPU's. */
    for (int idx = threadIdx.x; idx < kBwdTile * head_dim; idx += blockDim.x) {
        const int row = idx / head_dim, d = idx % head_dim, i = q0 + row;
        if (i >= seq_len) continue;
        const bool any = stat_m[stat_offset + i] != -INFINITY;
        d_q[head_offset + (size_t)i * row_stride + d] = any ? acc[idx] * q_scale : 0.0f;
    }
}

/* Grid (key tile, head, sequence), after zt_attention_bwd_query_k. Scores as there (warp w:
 * query rows 8w .. 8w + 7 of the query tile, lane j: key j); each thread owns fixed (key, column)
 * elements of the d_k and d_v accumulators and adds the queries in order. */
static __global__ void __launch_bounds__(kBwdThreads)
    zt_attention_bwd_key_k(float *d_k, float *d_v,                       /* (B,T,C) each */
                           const float *stat_m, const float *stat_inv_l, /* (B,H,T) each */
                           const double *stat_delta,                     /* (B,H,T) */
                           const float *d_out, const float *q, const float *k,
                           const float *v,          /* (B,T,C) each */
                           const int32_t *key_mask, /* (B,T) */
                           int seq_len, int n_heads, int head_dim, float q_scale) {
    const bwd_layout lay = bwd_layout_of(head_dim, 2, true);
    double *delta_tile = zt_dynamic_shared<double>();
    float *base = reinterpret_cast<float *>(delta_tile + kBwdTile);
    float *q_tile = base + lay.q, *do_tile = base + lay.d_out, *k_tile = base + lay.k;
    float *v_tile = base + lay.v, *p_tile = base + lay.p, *ds_tile = base + lay.ds;
    float *acc_k = base + lay.acc, *acc_v = acc_k + (size_t)kBwdTile * head_dim;
    float *m_tile = base + lay.m, *inv_l_tile = base + lay.inv_l;
    int *key_ok = reinterpret_cast<int *>(base + lay.key_ok);
    const int stride = tile_stride(head_dim);

    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * kBwdTile;
    const size_t row_stride = (size_t)n_heads * head_dim;
    const size_t head_offset = (size_t)b * seq_len * row_stride + (size_t)h * head_dim;
    const size_t stat_offset = ((size_t)b * n_heads + h) * (size_t)seq_len;
    const int32_t *mask = key_mask + (size_t)b * seq_len;

    const unsigned any_key = load_key_ok(key_ok, mask, k0, seq_len);
    load_tile(k_tile, stride, k + head_offset, row_stride, k0, seq_len, head_dim, 1.0f);
    load_tile(v_tile, stride, v + head_offset, row_stride, k0, seq_len, head_dim, 1.0f);
    for (int idx = threadIdx.x; idx < 2 * kBwdTile * head_dim; idx += blockDim.x)
        acc_k[idx] = 0.0f; /* acc_v follows acc_k */

    /* Causal: query i sees keys j <= i, and the query tiles are aligned with the key tiles, so
     * the first query tile with work is the diagonal one. A tile of padding has none at all. */
    const int q_begin = any_key != 0u ? k0 : seq_len;
    for (int q0 = q_begin; q0 < seq_len; q0 += kBwdTile) {
        __syncthreads(); /* the previous query tile is consumed (and the key tile written) */
        load_tile(q_tile, stride, q + head_offset, row_stride, q0, seq_len, head_dim, q_scale);
        load_tile(do_tile, stride, d_out + head_offset, row_stride, q0, seq_len, head_dim, 1.0f);
        for (int r = threadIdx.x; r < kBwdTile; r += blockDim.x) {
            const int i = q0 + r;
            m_tile[r] = i < seq_len ? stat_m[stat_offset + i] : -INFINITY;
            inv_l_tile[r] = i < seq_len ? stat_inv_l[stat_offset + i] : 0.0f;
            delta_tile[r] = i < seq_len ? stat_delta[stat_offset + i] : 0.0;
        }
        __syncthreads();
        const int j = k0 + lane;
        for (int r = 0; r < kBwdWarpRows; r++) {
            const int row = warp * kBwdWarpRows + r, i = q0 + row;
            const bool admissible =
                key_ok[lane] && j <= i && i < seq_len && m_tile[row] != -INFINITY;
            float p = 0.0f, d_s = 0.0f;
            if (admissible) {
                const float s = row_dot(q_tile + row * stride, k_tile + lane * stride, head_dim);
                p = probability(s, m_tile[row], inv_l_tile[row]);
                const float d_p = row_dot(do_tile + row * stride, v_tile + lane * stride, head_dim);
                d_s = score_gradient(p, d_p, delta_tile[row]);
            }
            p_tile[row * kBwdPStride + lane] = p;
            ds_tile[row * kBwdPStride + lane] = d_s;
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < kBwdTile * head_dim; idx += blockDim.x) {
            const int key = idx / head_dim, d = idx % head_dim;
            float sum_k = acc_k[idx], sum_v = acc_v[idx];
            for (int row = 0; row < kBwdTile; row++) {
                /* the scores were made from the rounded q * q_scale: differentiate those */
                sum_k = fmaf(ds_tile[row * kBwdPStride + key], q_tile[row * stride + d], sum_k);
                sum_v = fmaf(p_tile[row * kBwdPStride + key], do_tile[row * stride + d], sum_v);
            }
            acc_k[idx] = sum_k;
            acc_v[idx] = sum_v;
        }
    }
    __syncthreads();

    /* Every key is written: a masked key, or one no query sees, gets zeros. */
    for (int idx = threadIdx.x; idx < kBwdTile * head_dim; idx += blockDim.x) {
        const int key = idx / head_dim, d = idx % head_dim, jj = k0 + key;
        if (jj >= seq_len) continue;
        const size_t at = head_offset + (size_t)jj * row_stride + d;
        d_k[at] = acc_k[idx];
        d_v[at] = acc_v[idx];
    }
}

/* The forward's rule (attention.cu: zt_cuda_attention_setup): each kernel may use the device's
 * opt-in limit less its static shared memory, as its attributes report. */
zt_status zt_cuda_attention_backward_setup(zt_cuda_backend *cb) {
    int optin = 0;
    ZT_CUDA_TRY(
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, cb->device));
    const void *kernels[kAttentionBackwardKernelSlots] = {
        reinterpret_cast<const void *>(zt_attention_bwd_query_k),
        reinterpret_cast<const void *>(zt_attention_bwd_key_k)};
    for (int id = 0; id < kAttentionBackwardKernelSlots; id++) {
        cudaFuncAttributes attr;
        ZT_CUDA_TRY(cudaFuncGetAttributes(&attr, kernels[id]));
        const int room = optin - (int)attr.sharedSizeBytes;
        if (room > attr.maxDynamicSharedSizeBytes) {
            ZT_CUDA_TRY(cudaFuncSetAttribute(kernels[id],
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, room));
            ZT_CUDA_TRY(cudaFuncGetAttributes(&attr, kernels[id]));
        }
        cb->attention_backward_max_shared[id] = (size_t)attr.maxDynamicSharedSizeBytes;
    }
    return ZT_OK;
}

/* The statistics of every query: (B, H, T) doubles of delta, then floats of m and 1/l. */
size_t zt_cuda_attention_backward_scratch_bytes(int batch, int n_heads, int seq_len) {
    if (batch <= 0 || n_heads <= 0 || seq_len <= 0) return 0;
    return (size_t)batch * (size_t)n_heads * (size_t)seq_len * (sizeof(double) + 2 * sizeof(float));
}

zt_status zt_cuda_attention_backward(zt_backend *be, float *d_q, float *d_k,
                                     float *d_v,                                     /* (B,T,C) */
                                     const float *d_out,                             /* (B,T,C) */
                                     const float *q, const float *k, const float *v, /* (B,T,C) */
                                     const float *out,                               /* (B,T,C) */
                                     const int32_t *key_mask,                        /* (B,T) */
                                     int batch, int seq_len, int n_heads, int head_dim,
                                     float q_scale) {
    const char *op = "attention_backward";
    ZT_TRY(zt_check_attention_backward_args(op, d_q, d_k, d_v, d_out, q, k, v, out, key_mask, batch,
                                            seq_len, n_heads, head_dim, q_scale));
    if (head_dim > kBwdMaxHeadDim)
        return zt_fail(ZT_ERR_UNAVAILABLE, "%s: head_dim %d > %d is not supported on CUDA", op,
                       head_dim, kBwdMaxHeadDim);
    if (n_heads > 65535 || batch > 65535)
        return zt_fail(ZT_ERR_UNAVAILABLE, "%s: %d heads x %d sequences exceed the CUDA grid", op,
                       n_heads, batch);
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    const size_t query_bytes = bwd_layout_of(head_dim, 1, false).bytes;
    const size_t key_bytes = bwd_layout_of(head_dim, 2, true).bytes;
    if (query_bytes > cb->attention_backward_max_shared[kBwdQuery] ||
        key_bytes > cb->attention_backward_max_shared[kBwdKey])
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "%s: head_dim %d needs %zu and %zu bytes of shared memory; this device "
                       "allows %zu and %zu",
                       op, head_dim, query_bytes, key_bytes,
                       cb->attention_backward_max_shared[kBwdQuery],
                       cb->attention_backward_max_shared[kBwdKey]);

    const size_t n_stats = (size_t)batch * (size_t)n_heads * (size_t)seq_len;
    float *scratch = NULL;
    ZT_TRY(zt_cuda_scratch(
        cb, zt_cuda_attention_backward_scratch_bytes(batch, n_heads, seq_len) / sizeof(float), op,
        &scratch));
    double *stat_delta = reinterpret_cast<double *>(scratch);
    float *stat_m = scratch + 2 * n_stats, *stat_inv_l = scratch + 3 * n_stats;

    const dim3 grid((unsigned)((seq_len + kBwdTile - 1) / kBwdTile), (unsigned)n_heads,
                    (unsigned)batch);
    ZT_LAUNCH(zt_attention_bwd_query_k, grid, kBwdThreads, query_bytes, cb->stream, d_q, stat_m,
              stat_inv_l, stat_delta, d_out, q, k, v, out, key_mask, seq_len, n_heads, head_dim,
              q_scale);
    ZT_LAUNCH(zt_attention_bwd_key_k, grid, kBwdThreads, key_bytes, cb->stream, d_k, d_v, stat_m,
              stat_inv_l, stat_delta, d_out, q, k, v, key_mask, seq_len, n_heads, head_dim,
              q_scale);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
