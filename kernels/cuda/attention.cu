/* Causal self-attention with a key padding mask, flash style: scores are produced one key tile
 * at a time and folded into a running (max, sum, output) per query with the online softmax, so
 * no T x T matrix exists anywhere, not even per block.
 *
 * Two kernels (docs/design.md §4.3):
 *   - zt_attention_tiled_k, the fast path for head_dim % 4 == 0, head_dim <= 128 and 16-byte
 *     aligned q, k, v, out: register-tiled like a SIMT GEMM micro-kernel, f32 throughout;
 *   - zt_attention_k, the general one for every other head_dim up to 256 (and misaligned
 *     pointers): one key per lane, 4 query rows per warp.
 * All dynamic shared memory limits come from the kernels' own attributes and the device's opt-in
 * limit, set once per backend at create (zt_cuda_attention_setup). */
#include <math.h>
#include <stdint.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

constexpr float kLog2e = 1.44269504088896340736f;

// =============================================================================================
// The tiled kernel.
//
// Tiling. A block of 4 warps (128 threads) owns 64 queries of one (sequence, head) and walks the
// key tiles of 64 keys from 0 up to its last query. Warp w owns queries 16w .. 16w+15 of the
// block; lane = 16 rg + kg (rg = 0, 1; kg = 0 .. 15) owns the 8 queries rg, rg+2, .., rg+14 of
// the warp and, within a key tile, the 4 keys kg, kg+16, kg+32, kg+48. So each thread computes an
// 8 x 4 block of the 64 x 64 score tile, and the 16 lanes that share a query hold a whole row of
// it: the row max is 4 shuffles within a half-warp, with no shared memory and no block barrier.
// P.V is tiled the same way: the thread accumulates its 8 queries x (4 columns per 64 of
// head_dim), columns 4 kg .. 4 kg+3 (+64).
//
// Shared memory (floats, all dynamic; S = D + 4 or D + 8, whichever makes S/4 odd):
//   q_tile  64 x S   the block's queries, scaled by q_scale (HF rounds q * scale first)
//   k_tile  64 x S   the key tile; once every warp has its scores, each warp's P^T (64 keys x 16
//                    queries, rows padded to 20) takes its quarter of this space (at least
//                    4 x 64 x 20 floats)
//   v_tile  64 x D   the value tile
// S/4 odd puts rows r and r+1 (the two queries of one q float4 load: rg = 0, 1) and the keys kg,
// kg+1, .., kg+7 (one 128-byte wavefront of a k float4 load) in different 16-byte bank groups.
//
// Instruction count per warp and full 64-key tile, D = 64 (SASS of the sm_90 build, the
// 4-column path; `cuobjdump -sass`):
//   scores   16 x 147 = 2352: each step of 4 dimensions is 12 LDS.128 (8 query rows, 4 keys)
//            + 128 FFMA + 7 address/loop instructions;
//   softmax  441: masking, 32 SHFL + 72 FMNMX for the row maxima, 40 MUFU.EX2, 8 STS.128 (P^T);
//   P.V      16 x 149 = 2384: each step of 4 keys is 12 LDS.128 (4 x 8 probabilities, 4 x 4
//            values) + 128 FFMA + 9 others;
//   loads    ~250: mask ballots, 16 LDG.128 + 16 STS.128 (K, V), 3 barriers.
// ~5470 instructions for 4104 FFMA: 75% of the issue slots do FFMA. Shared memory: a q load is
// 2 distinct addresses (1 wavefront), a k load 16 contiguous float4s (2), a P^T load 2 (1), a v
// load 16 contiguous (2): 512 wavefronts per 4096 FFMA, 0.125 per FFMA, so the SM's one wavefront
// per clock carries its 4 FFMA per clock with room to spare.
// Before (zt_attention_k<2> at D = 64, per warp and 32-key tile, 4 queries): scores 4 x 175 =
// 700 (256 FFMA, 240 LDS), P.V 16 x 37 = 592 (256 FFMA, 128 LDS), loads ~480 (an index division
// per element), softmax ~150: ~1900 instructions for 512 FFMA (27%), 0.72 wavefronts per FFMA.
// So ~2.8x fewer instructions and ~6x fewer shared wavefronts per FFMA; the diagonal tile also
// skips the key columns past each warp's queries (warp w computes w + 1 of 4), and key tiles
// without an admissible key are skipped by the whole block.
//
// Occupancy on sm_90 (65536 registers, 228 KB shared memory per SM, 1 KB of it reserved per
// block). D <= 64: 32 scores + 32 accumulators + 16 row statistics + 16 key and 4+ query
// fragment registers + addresses; at 128 registers (4 blocks per SM) ptxas spills 16-280 bytes
// depending on the unrolling, so __launch_bounds__(128, 3) allows 168: ptxas uses 161 (D = 64)
// and 164 (any D <= 64), no spills; 3 blocks = 12 warps per SM (3 x 128 x 168 = 64,512
// registers), each warp with 128 independent FFMA per 12 loads to hide shared latency. Shared
// memory is 54,272 bytes at D = 64: 3 x 54 KB fits. 64 < D <= 128: 64 accumulators; bounds (128,
// 2), ptxas 192-200 registers, no spills; 100,352 bytes of shared memory at D = 128, so 2 blocks
// = 8 warps per SM by either limit. Grid: heads x sequences x 64-query tiles, the heaviest
// query tiles (the most key tiles) first so that light ones fill the tail: 768 blocks for B16
// T256 H12, about 2 waves of 396 resident blocks on 132 SMs.

constexpr int kTileWarps = 4;
constexpr int kTileThreads = kTileWarps * kWarpSize;
constexpr int kTileQueries = 64;                        /* queries per block */
constexpr int kTileKeys = 64;                           /* keys per tile */
constexpr int kWarpQueries = kTileQueries / kTileWarps; /* 16 */
constexpr int kThreadQueries = 8;                       /* rg, rg+2, .., rg+14 of the warp's */
constexpr int kKeyLanes = 16;                           /* lanes sharing a query row */
constexpr int kThreadKeys = kTileKeys / kKeyLanes;      /* kg, kg+16, kg+32, kg+48 */
constexpr int kColsPerChunk = kKeyLanes * 4;            /* 64 columns: 4 per lane */
constexpr int kMaxTiledHeadDim = 128;                   /* 2 chunks of 64 columns */
/* A P^T row holds the warp's 16 queries, padded to 20 floats: the 8 lanes of a quarter-warp store
 * keys kg = 0..7 at 20 kg, 8 different 16-byte bank groups (at 16 they would share 2). */
constexpr int kPStride = kWarpQueries + 4;

static_assert(kTileQueries == kTileKeys, "tiled_load copies 64 rows of q, k or v alike");

static __host__ __device__ constexpr int tiled_stride(int head_dim) {
    return (head_dim / 4) % 2 == 0 ? head_dim + 4 : head_dim + 8;
}

static __host__ __device__ constexpr int tiled_k_floats(int head_dim) {
    return kTileKeys * tiled_stride(head_dim) > kTileWarps * kTileKeys * kPStride
               ? kTileKeys * tiled_stride(head_dim)
               : kTileWarps * kTileKeys * kPStride;
}

static size_t tiled_shared_bytes(int head_dim) {
    return sizeof(float) * ((size_t)kTileQueries * tiled_stride(head_dim) +
                            (size_t)tiled_k_floats(head_dim) + (size_t)kTileKeys * head_dim);
}

/* 2^x. On the device the bare MUFU.EX2 (ex2.approx.ftz: relative error below 2^-22, results
 * under 2^-126 flushed to 0, far below what a softmax weight can contribute), one instruction where
 * exp2f adds three for the subnormal range; the executor has no PTX and takes exp2f. */
__device__ __forceinline__ float fast_exp2(float x) {
#ifdef __CUDA_ARCH__
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

/* Max over the 16 lanes of a half-warp (lanes 0-15 and 16-31 reduce separately). */
__device__ __forceinline__ float half_warp_max(float value) {
    for (int offset = kKeyLanes / 2; offset > 0; offset /= 2)
        value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
    return value;
}

__device__ __forceinline__ float half_warp_sum(float value) {
    for (int offset = kKeyLanes / 2; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

__device__ __forceinline__ float4 load4(const float *p) {
    return *reinterpret_cast<const float4 *>(p);
}

__device__ __forceinline__ void store4(float *p, float4 value) {
    *reinterpret_cast<float4 *>(p) = value;
}

/* The thread's 8 x kNc scores of the tile: kNc of its 4 key columns (the warp needs no key past
 * its last query, so on the diagonal tile warp w computes w + 1 of them). q_rows is the thread's
 * first query row in q_tile, k_keys its first key row in k_tile; rows 2i and keys 16c follow. */
template <int kNc, int kFixedDim>
__device__ __forceinline__ void tiled_scores(float (&s)[kThreadQueries][kThreadKeys],
                                             const float *q_rows, const float *k_keys, int head_dim,
                                             int stride) {
    for (int i = 0; i < kThreadQueries; i++)
        for (int c = 0; c < kNc; c++)
            s[i][c] = 0.0f;
    const int n_dims = kFixedDim > 0 ? kFixedDim : head_dim;
    ZT_UNROLL(1)
    for (int d = 0; d < n_dims; d += 4) {
        float4 key[kNc];
        for (int c = 0; c < kNc; c++)
            key[c] = load4(k_keys + c * kKeyLanes * stride + d);
        for (int i = 0; i < kThreadQueries; i++) {
            const float4 query = load4(q_rows + 2 * i * stride + d);
            for (int c = 0; c < kNc; c++) {
                s[i][c] += query.x * key[c].x;
                s[i][c] += query.y * key[c].y;
                s[i][c] += query.z * key[c].z;
                s[i][c] += query.w * key[c].w;
            }
        }
    }
}

/* Masks the scores, folds them into the running max m (log2 units), sum l (this lane's keys
 * only; the half-warp adds them up at the end) and output o, writes the probabilities to the
 * warp's P^T and accumulates P.V. first_row is the thread's first query (rows 2i follow),
 * key_bits the tile's admissible keys (padding and sequence end; causality is applied here). */
template <int kNc, int kChunks, int kFixedDim>
__device__ __forceinline__ void
tiled_update(float (&s)[kThreadQueries][kThreadKeys], float (&m)[kThreadQueries],
             float (&l)[kThreadQueries], float4 (&o)[kThreadQueries][kChunks], float *p_warp,
             const float *v_tile, uint32_t key_bits_lo, uint32_t key_bits_hi, int k0, int first_row,
             int rg, int kg, int head_dim) {
    const int n_cols = kFixedDim > 0 ? kFixedDim : head_dim;
    const uint64_t key_bits = (uint64_t)key_bits_hi << 32 | key_bits_lo;
    bool key_ok[kNc];
    for (int c = 0; c < kNc; c++)
        key_ok[c] = (key_bits >> (kg + c * kKeyLanes) & 1u) != 0;
    for (int i = 0; i < kThreadQueries; i++) {
        const int row = first_row + 2 * i;
        float tile_max = -INFINITY;
        for (int c = 0; c < kNc; c++) {
            const bool admissible = key_ok[c] && k0 + kg + c * kKeyLanes <= row;
            s[i][c] = admissible ? s[i][c] * kLog2e : -INFINITY;
            tile_max = fmaxf(tile_max, s[i][c]);
        }
        tile_max = half_warp_max(tile_max);
        const float m_new = fmaxf(m[i], tile_max);
        /* While a row has seen no admissible key, m stays -inf and its p, l and o stay 0; a zero
         * base keeps -inf - base from becoming NaN. m == m_new gives a correction of exactly 1. */
        const float base = m_new == -INFINITY ? 0.0f : m_new;
        const float correction = fast_exp2(m[i] - base);
        m[i] = m_new;
        float sum = 0.0f;
        for (int c = 0; c < kNc; c++) {
            s[i][c] = fast_exp2(s[i][c] - base);
            sum += s[i][c];
        }
        l[i] = l[i] * correction + sum;
        for (int t = 0; t < kChunks; t++) {
            o[i][t].x *= correction;
            o[i][t].y *= correction;
            o[i][t].z *= correction;
            o[i][t].w *= correction;
        }
    }

    /* P^T: key-major, the lane's 8 queries contiguous (rg's half of the row), so that P.V reads
     * them as two float4s that every lane of the half-warp shares. */
    for (int c = 0; c < kNc; c++) {
        float *at = p_warp + (kg + c * kKeyLanes) * kPStride + rg * kThreadQueries;
        store4(at, make_float4(s[0][c], s[1][c], s[2][c], s[3][c]));
        store4(at + 4, make_float4(s[4][c], s[5][c], s[6][c], s[7][c]));
    }
    __syncwarp(); /* P^T is the warp's own: every lane's probabilities are visible to all */

    constexpr bool kAllColumns = kFixedDim == kChunks * kColsPerChunk;
    const float *p_row = p_warp + rg * kThreadQueries;
    const float *v_col = v_tile + 4 * kg;
    ZT_UNROLL(4)
    for (int j = 0; j < kNc * kKeyLanes; j++) {
        const float4 pa = load4(p_row + j * kPStride), pb = load4(p_row + j * kPStride + 4);
        const float p[kThreadQueries] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
        for (int t = 0; t < kChunks; t++) {
            if (!kAllColumns && 4 * kg + t * kColsPerChunk >= n_cols) continue;
            const float4 value = load4(v_col + j * n_cols + t * kColsPerChunk);
            for (int i = 0; i < kThreadQueries; i++) {
                o[i][t].x += p[i] * value.x;
                o[i][t].y += p[i] * value.y;
                o[i][t].z += p[i] * value.z;
                o[i][t].w += p[i] * value.w;
            }
        }
    }
}

/* Copies rows [first, first + 64) of one head (x points at its column 0 of row 0) to a shared
 * tile with the given row stride, times scale; rows at or past seq_len become zeros (never NaN:
 * a zero probability times a NaN value would still be NaN). When the float4s of a row divide the
 * block (D = 64, 128), each thread keeps one column and walks rows: one 64-bit add per load
 * instead of an index division and a 64-bit multiply. */
template <int kFixedDim>
__device__ __forceinline__ void tiled_load(float *tile, int tile_stride, const float *x,
                                           size_t row_stride, int first, int seq_len, int head_dim,
                                           float scale) {
    constexpr int kVecs = kFixedDim > 0 ? kFixedDim / 4 : 1; /* float4s per row (fixed D) */
    if constexpr (kFixedDim > 0 && kTileThreads % kVecs == 0) {
        constexpr int kRowsPerPass = kTileThreads / kVecs;
        const int c = 4 * (threadIdx.x % kVecs), r0 = threadIdx.x / kVecs;
        const float *src = x + (size_t)(first + r0) * row_stride + c;
        float *dst = tile + r0 * tile_stride + c;
        ZT_UNROLL(4)
        for (int r = r0; r < kTileKeys; r += kRowsPerPass) {
            float4 value = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (first + r < seq_len) {
                value = load4(src);
                value.x *= scale;
                value.y *= scale;
                value.z *= scale;
                value.w *= scale;
            }
            store4(dst, value);
            src += kRowsPerPass * row_stride;
            dst += kRowsPerPass * tile_stride;
        }
    } else {
        const int n_vecs = head_dim / 4;
        ZT_UNROLL(4)
        for (int idx = threadIdx.x; idx < kTileKeys * n_vecs; idx += kTileThreads) {
            const int r = idx / n_vecs, c = 4 * (idx % n_vecs), row = first + r;
            float4 value = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (row < seq_len) {
                value = load4(x + (size_t)row * row_stride + c);
                value.x *= scale;
                value.y *= scale;
                value.z *= scale;
                value.w *= scale;
            }
            store4(tile + r * tile_stride + c, value);
        }
    }
}

/* Grid: (head, sequence, query tile counted from the last). kChunks = ceil(D / 64); kFixedDim is
 * D when the instance is built for one head size (unrolled), 0 for any D % 4 == 0 up to 64 *
 * kChunks. */
template <int kChunks, int kFixedDim>
static __global__ void __launch_bounds__(kTileThreads, kChunks == 1 ? 3 : 2)
    zt_attention_tiled_k(float *out,                                     /* (B,T,C) */
                         const float *q, const float *k, const float *v, /* (B,T,C) each */
                         const int32_t *key_mask,                        /* (B,T) */
                         int seq_len, int n_heads, int head_dim_arg, float q_scale,
                         const int32_t *only_sequences /* (B) or NULL: see launch_attention */) {
    if (only_sequences != nullptr && only_sequences[blockIdx.y] == 0) return; /* block-uniform */
    const int head_dim = kFixedDim > 0 ? kFixedDim : head_dim_arg;
    const int stride = tiled_stride(head_dim);
    float *q_tile = zt_dynamic_shared<float>();        /* (64, stride) */
    float *k_tile = q_tile + kTileQueries * stride;    /* (64, stride), then 4 x (64, 20) */
    float *v_tile = k_tile + tiled_k_floats(head_dim); /* (64, D) */

    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int rg = lane / kKeyLanes, kg = lane % kKeyLanes;
    const int h = blockIdx.x, b = blockIdx.y;
    const int q0 = (gridDim.z - 1 - blockIdx.z) * kTileQueries;
    const size_t row_stride = (size_t)n_heads * head_dim;
    const size_t head_offset = (size_t)b * seq_len * row_stride + (size_t)h * head_dim;
    const int32_t *mask = key_mask + (size_t)b * seq_len;

    /* HF scales the q_proj output, so q is rounded to q * q_scale before any dot product. */
    tiled_load<kFixedDim>(q_tile, stride, q + head_offset, row_stride, q0, seq_len, head_dim,
                          q_scale);

    const int warp_row0 = q0 + warp * kWarpQueries;
    const int first_row = warp_row0 + rg;
    /* The last key this warp may attend to (causal and in the sequence), -1 for a warp with no
     * query in the sequence. */
    const int warp_last_key = warp_row0 >= seq_len ? -1
                                                   : (warp_row0 + kWarpQueries - 1 < seq_len - 1
                                                          ? warp_row0 + kWarpQueries - 1
                                                          : seq_len - 1);
    const int block_last_key = (q0 + kTileQueries < seq_len ? q0 + kTileQueries : seq_len) - 1;

    float m[kThreadQueries], l[kThreadQueries];
    float4 o[kThreadQueries][kChunks];
    for (int i = 0; i < kThreadQueries; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        for (int t = 0; t < kChunks; t++)
            o[i][t] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    /* Set per tile by the first switch below and read by the second, which takes the same case;
     * zeroed once as the compiler cannot see that. */
    float s[kThreadQueries][kThreadKeys] = {};
    float *p_warp = k_tile + warp * kTileKeys * kPStride;

    for (int k0 = 0; k0 <= block_last_key; k0 += kTileKeys) {
        /* The tile's admissible keys (in the sequence, not padding), one bit each. Every warp
         * reads the same mask, so a tile without any is skipped by the whole block at once. */
        const int key_a = k0 + lane, key_b = k0 + kWarpSize + lane;
        const uint32_t bits_lo = __ballot_sync(0xffffffffu, key_a < seq_len && mask[key_a] != 0);
        const uint32_t bits_hi = __ballot_sync(0xffffffffu, key_b < seq_len && mask[key_b] != 0);
        if ((bits_lo | bits_hi) == 0u) continue;

        __syncthreads(); /* the previous tile's P^T and values are consumed, q_tile written */
        tiled_load<kFixedDim>(k_tile, stride, k + head_offset, row_stride, k0, seq_len, head_dim,
                              1.0f);
        tiled_load<kFixedDim>(v_tile, head_dim, v + head_offset, row_stride, k0, seq_len, head_dim,
                              1.0f);
        __syncthreads();

        /* Key columns (of 16) this warp needs: none past its last query or the tile's last
         * admissible key. Warp-uniform. */
        const int top_key = bits_hi != 0u ? 63 - __clz((int)bits_hi) : 31 - __clz((int)bits_lo);
        const int last = warp_last_key - k0 < top_key ? warp_last_key - k0 : top_key;
        const int n_key_cols = last < 0 ? 0 : last / kKeyLanes + 1;

        const float *q_rows = q_tile + (warp * kWarpQueries + rg) * stride;
        const float *k_keys = k_tile + kg * stride;
        switch (n_key_cols) {
        case 1:
            tiled_scores<1, kFixedDim>(s, q_rows, k_keys, head_dim, stride);
            break;
        case 2:
            tiled_scores<2, kFixedDim>(s, q_rows, k_keys, head_dim, stride);
            break;
        case 3:
            tiled_scores<3, kFixedDim>(s, q_rows, k_keys, head_dim, stride);
            break;
        case 4:
            tiled_scores<4, kFixedDim>(s, q_rows, k_keys, head_dim, stride);
            break;
        }
        __syncthreads(); /* every warp is done with k_tile: it becomes the warps' P^T */
        switch (n_key_cols) {
#define ZT_TILED_UPDATE(nc)                                                                        \
    case nc:                                                                                       \
        tiled_update<nc, kChunks, kFixedDim>(s, m, l, o, p_warp, v_tile, bits_lo, bits_hi, k0,     \
                                             first_row, rg, kg, head_dim);                         \
        break;
            ZT_TILED_UPDATE(1)
            ZT_TILED_UPDATE(2)
            ZT_TILED_UPDATE(3)
            ZT_TILED_UPDATE(4)
#undef ZT_TILED_UPDATE
        }
    }

    /* One reciprocal per row; l == 0: a query with no admissible key (a left-pad row) gets
     * zeros, as its o is still 0. */
    for (int i = 0; i < kThreadQueries; i++) {
        const float l_row = half_warp_sum(l[i]);
        const float inv = l_row > 0.0f ? 1.0f / l_row : 0.0f;
        const int row = first_row + 2 * i;
        if (row >= seq_len) continue;
        float *out_row = out + head_offset + (size_t)row * row_stride + 4 * kg;
        for (int t = 0; t < kChunks; t++) {
            if (4 * kg + t * kColsPerChunk >= head_dim) continue;
            store4(out_row + t * kColsPerChunk,
                   make_float4(o[i][t].x * inv, o[i][t].y * inv, o[i][t].z * inv, o[i][t].w * inv));
        }
    }
}

// =============================================================================================
// The general kernel: any head_dim up to 256.

constexpr int kAttnWarps = 4;
constexpr int kAttnThreads = kAttnWarps * kWarpSize;
constexpr int kRowsPerWarp = 4;                       /* query rows each warp owns */
constexpr int kQueryTile = kAttnWarps * kRowsPerWarp; /* query rows per block */
constexpr int kKeyTile = kWarpSize;                   /* keys per tile: one per lane */
constexpr int kMaxHeadDim = 256;                      /* 8 output columns per lane */

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
                   int seq_len, int n_heads, int head_dim, float q_scale,
                   const int32_t *only_sequences /* (B) or NULL: see launch_attention */) {
    if (only_sequences != nullptr && only_sequences[blockIdx.z] == 0) return; /* block-uniform */
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

// =============================================================================================
// Host side: one table of every kernel instance, so that create can opt each one in and a
// launch can check its need against the limit create found.

typedef void (*attention_kernel_fn)(float *, const float *, const float *, const float *,
                                    const int32_t *, int, int, int, float, const int32_t *);

enum attention_kernel_id {
    kTiled64,      /* D = 64: opt-125m .. 1.3b */
    kTiled80,      /* D = 80: opt-2.7b */
    kTiled128,     /* D = 128: opt-6.7b and up */
    kTiledUpTo64,  /* any other D % 4 == 0 up to 64 */
    kTiledUpTo128, /* any other D % 4 == 0 in 65 .. 128 */
    kGeneral1,     /* kGeneral1 + n - 1: zt_attention_k<n>, ceil(D / 32) = n */
    kAttentionKernelCount = kGeneral1 + kMaxHeadDim / kWarpSize,
};
static_assert(kAttentionKernelCount <= kAttentionKernelSlots,
              "zt_cuda_backend::attention_max_shared has a slot per attention kernel");

struct attention_kernel_entry {
    attention_kernel_fn fn;
    const char *name; /* for launch errors: ZT_LAUNCH only sees a function pointer */
};

static attention_kernel_entry attention_kernel(int id) {
    switch (id) {
    case kTiled64:
        return {zt_attention_tiled_k<1, 64>, "zt_attention_tiled_k<1, 64>"};
    case kTiled80:
        return {zt_attention_tiled_k<2, 80>, "zt_attention_tiled_k<2, 80>"};
    case kTiled128:
        return {zt_attention_tiled_k<2, 128>, "zt_attention_tiled_k<2, 128>"};
    case kTiledUpTo64:
        return {zt_attention_tiled_k<1, 0>, "zt_attention_tiled_k<1, 0>"};
    case kTiledUpTo128:
        return {zt_attention_tiled_k<2, 0>, "zt_attention_tiled_k<2, 0>"};
    case kGeneral1 + 0:
        return {zt_attention_k<1>, "zt_attention_k<1>"};
    case kGeneral1 + 1:
        return {zt_attention_k<2>, "zt_attention_k<2>"};
    case kGeneral1 + 2:
        return {zt_attention_k<3>, "zt_attention_k<3>"};
    case kGeneral1 + 3:
        return {zt_attention_k<4>, "zt_attention_k<4>"};
    case kGeneral1 + 4:
        return {zt_attention_k<5>, "zt_attention_k<5>"};
    case kGeneral1 + 5:
        return {zt_attention_k<6>, "zt_attention_k<6>"};
    case kGeneral1 + 6:
        return {zt_attention_k<7>, "zt_attention_k<7>"};
    case kGeneral1 + 7:
        return {zt_attention_k<8>, "zt_attention_k<8>"};
    }
    return {nullptr, "none"};
}

/* A kernel may launch with at most maxDynamicSharedSizeBytes of dynamic shared memory: 48 KB
 * less its static shared memory unless raised, and raisable to the device's opt-in limit less
 * the static part. The static part is the binary's, not the sum of the __shared__ declarations
 * (the sm_90 build of zt_attention_k records 3,200 bytes for its 2,176 declared), so both come
 * from the function's attributes: each kernel is raised as far as it can go once here, and
 * launches check against what the runtime then reports. */
zt_status zt_cuda_attention_setup(zt_cuda_backend *cb) {
    int optin = 0;
    ZT_CUDA_TRY(
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, cb->device));
    for (int id = 0; id < kAttentionKernelCount; id++) {
        const void *fn = reinterpret_cast<const void *>(attention_kernel(id).fn);
        cudaFuncAttributes attr;
        ZT_CUDA_TRY(cudaFuncGetAttributes(&attr, fn));
        const int room = optin - (int)attr.sharedSizeBytes;
        if (room > attr.maxDynamicSharedSizeBytes) {
            ZT_CUDA_TRY(
                cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, room));
            ZT_CUDA_TRY(cudaFuncGetAttributes(&attr, fn));
        }
        cb->attention_max_shared[id] = (size_t)attr.maxDynamicSharedSizeBytes;
    }
    return ZT_OK;
}

/* only_sequences (device, (B), or NULL for all): the blocks of a sequence whose entry is 0 return
 * at once, so that after the cuDNN path (attention_cudnn.cu) this kernel computes the sequences
 * whose mask cuDNN could not express, and only those. */
static zt_status launch_attention(zt_cuda_backend *cb, attention_kernel_fn kernel, dim3 grid,
                                  dim3 block, size_t shared_bytes, float *out, const float *q,
                                  const float *k, const float *v, const int32_t *key_mask,
                                  int seq_len, int n_heads, int head_dim, float q_scale,
                                  const int32_t *only_sequences) {
    ZT_LAUNCH(kernel, grid, block, shared_bytes, cb->stream, out, q, k, v, key_mask, seq_len,
              n_heads, head_dim, q_scale, only_sequences);
    return ZT_OK;
}

static bool aligned16(const void *p) {
    return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
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

    /* --gemm half: tensor cores through cuDNN where it takes the shape; then this kernel runs
     * for the sequences it flagged (a mask that is not one left-padded run), if any. */
    const int32_t *only_sequences = NULL;
    if (be->gemm == ZT_GEMM_HALF) {
        ZT_TRY(zt_cuda_attention_cudnn(cb, out, q, k, v, key_mask, batch, seq_len, n_heads,
                                       head_dim, q_scale, &only_sequences));
    }

    /* float4 loads and stores need 16-byte rows: D % 4 == 0 (so C % 4 == 0) and aligned bases. */
    const bool tiled = head_dim % 4 == 0 && head_dim <= kMaxTiledHeadDim && aligned16(out) &&
                       aligned16(q) && aligned16(k) && aligned16(v);
    const int n_query_tiles = (seq_len + kTileQueries - 1) / kTileQueries;
    int id;
    size_t shared_bytes;
    dim3 grid, block;
    if (tiled && n_query_tiles <= 65535) {
        id = head_dim == 64    ? kTiled64
             : head_dim == 80  ? kTiled80
             : head_dim == 128 ? kTiled128
             : head_dim <= 64  ? kTiledUpTo64
                               : kTiledUpTo128;
        shared_bytes = tiled_shared_bytes(head_dim);
        grid = dim3((unsigned)n_heads, (unsigned)batch, (unsigned)n_query_tiles);
        block = dim3(kTileThreads);
    } else {
        id = kGeneral1 + (head_dim + kWarpSize - 1) / kWarpSize - 1;
        shared_bytes = attention_shared_bytes(head_dim);
        grid = dim3((unsigned)((seq_len + kQueryTile - 1) / kQueryTile), (unsigned)n_heads,
                    (unsigned)batch);
        block = dim3(kAttnThreads);
    }
    if (shared_bytes > cb->attention_max_shared[id])
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "%s: head_dim %d needs %zu bytes of shared memory; this device allows %zu",
                       op, head_dim, shared_bytes, cb->attention_max_shared[id]);
    const attention_kernel_entry kernel = attention_kernel(id);
    const zt_status status =
        launch_attention(cb, kernel.fn, grid, block, shared_bytes, out, q, k, v, key_mask, seq_len,
                         n_heads, head_dim, q_scale, only_sequences);
    if (status != ZT_OK) return zt_fail_context(status, "%s (%s): ", op, kernel.name);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
