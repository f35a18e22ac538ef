/* What the perturbation kernels share (perturb.cu, update.cu, sumsq.cu, gather.cu): the random
 * words of a (key, stream, block), the terms of a perturbation as a kernel argument, g for whole
 * Philox blocks in the CPU backend's f32 operation order, and whole-block loads and stores in a
 * storage dtype with common/dtype.h's bits (the CPU's conversions).
 *
 * Words: curand_init(key, subsequence = (stream << 32) | (block & 0xFFFF), offset = 4 * (block >>
 * 16)) + curand4, the engine's address (kernels/common/perturb_rng.h), which the CPU backend's
 * Philox port reproduces bit for bit. Inlined, the state is local and the look-ahead blocks that
 * curand_init and curand4 compute are never read, so nvcc drops them: the PTX of this form has
 * the instruction count of a single curand_Philox4x32_10 call (127 for a grid-stride loop
 * storing one block, measured with nvcc 13 -O2, sm_90). A key that a whole kernel draws under
 * (a perturbation's term 0, the update's rounding key) instead has its ten round keys computed
 * once on the host (zt_round_keys_of): the same Philox rounds, with the per-round key additions
 * out of the loop. tests/cudaemu/zo_probe.cu checks both forms against the CPU's words.
 *
 * Normals: zotune's own Box-Muller transform (kernels/common/box_muller.h) applied to the curand4
 * words through zt_box_muller4, pairs (x, y) and (z, w) in curand_normal4's order. It takes
 * cuRAND's u but its own ln and sin / cos, written as a fixed sequence of IEEE operations
 * (__fmaf_rn, __fmul_rn, __fsqrt_rn on the device; fmaf, products, sqrtf on the host, never
 * contracted), so a GPU and the host executor both give the CPU backend's normals bit for bit
 * (tests/cudaemu/zo_probe.cu checks it). They are not curand_normal4's: cuRAND rounds y to 24 bits
 * for its angle and calls __sincosf (libm on the host); the probe bounds that difference
 * (tests/rng/curand_normal_bound.h).
 *
 * f32 arithmetic goes through __fmul_rn / __fadd_rn / ... so that nvcc cannot contract a*z + g
 * into an FMA: with z identical too, perturb and update give the CPU backend's bits on any device,
 * Gaussian z included.
 */
#ifndef ZT_CUDA_Z_TERMS_CUH
#define ZT_CUDA_Z_TERMS_CUH

#include <curand_kernel.h>

#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* The four words of block `block` of stream `stream` (ZT_RNG_STREAM_*) of a tensor key. */
__device__ __forceinline__ zt_u32x4 zt_cuda_rng_block4(uint64_t tensor_key, uint32_t stream,
                                                       uint64_t block) {
    curandStatePhilox4_32_10_t state;
    curand_init(tensor_key, ((unsigned long long)stream << 32) | (block & 0xFFFFu),
                4ull * (block >> 16), &state);
    const uint4 words = curand4(&state);
    return zt_u32x4{words.x, words.y, words.z, words.w};
}

__device__ __forceinline__ zt_f32x4 zt_cuda_z_gauss_block4(uint64_t tensor_key, uint64_t block) {
    return zt_box_muller4(zt_cuda_rng_block4(tensor_key, ZT_RNG_STREAM_Z, block));
}

__device__ __forceinline__ zt_u32x4 zt_cuda_sr_bits_block4(uint64_t tensor_key, uint64_t block) {
    return zt_cuda_rng_block4(tensor_key, ZT_RNG_STREAM_SR, block);
}

/* The ten round keys of a Philox key: round r takes (lo32(key) + r * W0, hi32(key) + r * W1),
 * which zt_philox4x32_10 derives as it goes. Computed once on the host for the keys a whole
 * kernel uses, so that its loop reads them from the constant bank instead of adding them up
 * again for every block. */
struct zt_round_keys {
    uint32_t k[20]; /* round r: k[2r], k[2r + 1] */
};

__host__ __device__ inline zt_round_keys zt_round_keys_of(uint64_t tensor_key) {
    zt_round_keys rk;
    zt_u32x2 key = zt_philox_key(tensor_key);
    for (int r = 0; r < 10; r++) {
        rk.k[2 * r] = key.x;
        rk.k[2 * r + 1] = key.y;
        key.x += ZT_PHILOX_W0;
        key.y += ZT_PHILOX_W1;
    }
    return rk;
}

/* zt_cuda_rng_block4's words (the Philox block at the engine's address, kernels/common/
 * perturb_rng.h) from precomputed round keys. */
__device__ __forceinline__ zt_u32x4 zt_cuda_rng_block4_rk(const zt_round_keys &rk, uint32_t stream,
                                                          uint64_t block) {
    const uint64_t step = block >> 16;
    zt_u32x4 ctr = {(uint32_t)step, (uint32_t)(step >> 32), (uint32_t)(block & 0xFFFFu), stream};
    for (int r = 0; r < 10; r++)
        ctr = zt_philox_round(ctr, zt_u32x2{rk.k[2 * r], rk.k[2 * r + 1]});
    return ctr;
}

/* Terms up to this count travel inside the kernel argument (read through the constant bank, no
 * copy); more are uploaded to the backend scratch first. MeZO has one term, q-direction steps a
 * handful. */
constexpr int kInlineZTerms = 32;

/* sum_i scale_i * z(key_i, j): keys and scales hoisted on the host, as zt_cpu_z_terms_prepare
 * does (scale = coeff * z_scale rounded once to f32). */
struct zt_cuda_z_terms {
    int n_terms;
    zt_dist dist;
    /* Term 0, whether or not the others spill: the hot loops read it from the argument alone. */
    zt_round_keys first_rounds;
    float first_scale;
    const uint64_t *spilled_keys; /* device, when n_terms > kInlineZTerms; else NULL */
    const float *spilled_scales;
    uint64_t keys[kInlineZTerms];
    float scales[kInlineZTerms];
};

/* Checks p as the CPU backend does (zt_cpu_z_terms_prepare): same order, statuses and messages.
 * Touches no device state. Defined in perturb.cu. */

/* Fills *out from a checked p. Terms beyond kInlineZTerms go to the backend scratch (queued on
 * the stream, ahead of the kernel that reads them), so the caller must not take the scratch for
 * anything else before that kernel is launched. Defined in perturb.cu. */
zt_status zt_cuda_z_terms_prepare(zt_cuda_backend *cb, const char *op, const zt_perturbation *p,
                                  uint32_t tensor_id, zt_cuda_z_terms *out);

/* Scratch floats zt_cuda_z_terms_prepare takes for n_terms terms (0 when they fit inline). */
static inline size_t zt_cuda_z_terms_scratch_floats(int n_terms) {
    if (n_terms <= kInlineZTerms) return 0;
    return (size_t)n_terms * (sizeof(uint64_t) + sizeof(float)) / sizeof(float);
}

/* Blocks for a grid-stride loop over n_items, one per thread. */
static inline unsigned zt_zo_blocks(uint64_t n_items, unsigned max_blocks) {
    uint64_t blocks = (n_items + kBlockThreads - 1) / kBlockThreads;
    if (blocks > max_blocks) blocks = max_blocks;
    return blocks == 0 ? 1u : (unsigned)blocks;
}

/* Term i's key and scale, from the kernel argument or, past kInlineZTerms, the scratch. */
__device__ __forceinline__ void zt_cuda_term(const zt_cuda_z_terms &terms, int i, uint64_t &key,
                                             float &scale) {
    if (terms.n_terms > kInlineZTerms) {
        key = terms.spilled_keys[i];
        scale = terms.spilled_scales[i];
    } else {
        key = terms.keys[i];
        scale = terms.scales[i];
    }
}

/* The words zt_cuda_scaled_z4<DIST> takes for the four z of 4-element block `block`: for Gaussian
 * z the block's own Philox words; for Rademacher z, which packs 128 elements into a Philox block
 * (kernels/common/perturb_rng.h), the sign words of the block's four bits, cut from Philox block
 * block / 32. A thread here runs one Philox call per 4-element block, so a warp over 32
 * consecutive blocks issues one Philox sequence per 128 elements; the hot loops of perturb and
 * update draw term 0 a warp chunk at a time instead (cuda/rademacher.cuh, one Philox sequence per
 * 4096 elements) and use these for the other terms and the per-element paths. `_rk` from
 * precomputed round keys, the other from a key. */
template <zt_dist DIST>
__device__ __forceinline__ zt_u32x4 zt_cuda_z_words4_rk(const zt_round_keys &rk, uint64_t block) {
    if (DIST == ZT_DIST_GAUSSIAN) return zt_cuda_rng_block4_rk(rk, ZT_RNG_STREAM_Z, block);
    return zt_rademacher_sign_words4(
        zt_cuda_rng_block4_rk(rk, ZT_RNG_STREAM_Z, zt_rademacher_philox_of(block)), block);
}

template <zt_dist DIST>
__device__ __forceinline__ zt_u32x4 zt_cuda_z_words4(uint64_t tensor_key, uint64_t block) {
    if (DIST == ZT_DIST_GAUSSIAN) return zt_cuda_rng_block4(tensor_key, ZT_RNG_STREAM_Z, block);
    return zt_rademacher_sign_words4(
        zt_cuda_rng_block4(tensor_key, ZT_RNG_STREAM_Z, zt_rademacher_philox_of(block)), block);
}

/* a * z for the four z of a block, from zt_cuda_z_words4<DIST>: __fmul_rn for Gaussian z. A
 * Rademacher z is +-1, so a * z is a with the sign word's top bit as sign: the same bits as
 * __fmul_rn(a, +-1.0f) for every a that is not NaN, and a never is (zt_check_perturbation: finite
 * coefficients and scale, whose product may overflow to +-Inf, whose sign flips as the product's
 * would). */
template <zt_dist DIST>
__device__ __forceinline__ zt_f32x4 zt_cuda_scaled_z4(float a, const zt_u32x4 &words) {
    if (DIST == ZT_DIST_GAUSSIAN) {
        const zt_f32x4 z = zt_box_muller4(words);
        return zt_f32x4{__fmul_rn(a, z.x), __fmul_rn(a, z.y), __fmul_rn(a, z.z), __fmul_rn(a, z.w)};
    }
    const uint32_t bits = zt_f32_bits(a);
    return zt_f32x4{
        zt_bits_f32(bits ^ (words.x & 0x80000000u)), zt_bits_f32(bits ^ (words.y & 0x80000000u)),
        zt_bits_f32(bits ^ (words.z & 0x80000000u)), zt_bits_f32(bits ^ (words.w & 0x80000000u))};
}

/* g for the K blocks blocks[k] (elements 4*blocks[k] .. +3 of the full tensor each): a_0*z_0,
 * then + a_i*z_i in term order, one rounding per operation (kernels/cpu/z_terms.h). The K blocks
 * share each term's key fetch and Philox key schedule. n_terms > 0. */
template <zt_dist DIST, int K>
__device__ __forceinline__ void
zt_cuda_z_sum_blocks(const zt_cuda_z_terms &terms, const uint64_t (&blocks)[K], zt_f32x4 (&g)[K]) {
    /* Term 0 assigned, not added to 0: 0 + (-0) would turn a negative zero positive. */
    for (int k = 0; k < K; k++)
        g[k] = zt_cuda_scaled_z4<DIST>(terms.first_scale,
                                       zt_cuda_z_words4_rk<DIST>(terms.first_rounds, blocks[k]));
    uint64_t key;
    float a;
    for (int i = 1; i < terms.n_terms; i++) {
        zt_cuda_term(terms, i, key, a);
        for (int k = 0; k < K; k++) {
            const zt_f32x4 p = zt_cuda_scaled_z4<DIST>(a, zt_cuda_z_words4<DIST>(key, blocks[k]));
            g[k] = zt_f32x4{__fadd_rn(g[k].x, p.x), __fadd_rn(g[k].y, p.y), __fadd_rn(g[k].z, p.z),
                            __fadd_rn(g[k].w, p.w)};
        }
    }
}

/* g for one block with the distribution chosen at run time (the perturbed gather). n_terms > 0. */
__device__ __forceinline__ zt_f32x4 zt_cuda_z_sum_block4(const zt_cuda_z_terms &terms,
                                                         uint64_t block) {
    const uint64_t blocks[1] = {block};
    zt_f32x4 g[1];
    if (terms.dist == ZT_DIST_GAUSSIAN)
        zt_cuda_z_sum_blocks<ZT_DIST_GAUSSIAN, 1>(terms, blocks, g);
    else
        zt_cuda_z_sum_blocks<ZT_DIST_RADEMACHER, 1>(terms, blocks, g);
    return g[0];
}

// ---- whole blocks in a storage dtype ----
// The hot loops of perturb and update move a Philox block's four elements with one 16-byte (f32)
// or 8-byte (f16 / bf16) access when the tensor's element 0 is aligned to that size (the host
// checks with zt_block_aligned). Conversions take the hardware's (cvt.f32.f16, cvt.rn.f16x2.f32,
// cvt.rn.bf16x2.f32) where they give common/dtype.h's bits, which is every value but NaN: the
// rounding ones return the canonical NaN, and nothing promises cvt.f32.f16 keeps a payload. A
// block holding a NaN therefore takes common/dtype.h's conversions, so the bits are those of
// zt_load_f32 / zt_store_rne for every input. bf16 widens by a shift, exact for every value. In
// the host executor the cuda_fp16.h / cuda_bf16.h intrinsics run their host code, which
// canonicalises NaN as well, so the tests (NaN inputs included) exercise the same fallback.

template <zt_dtype DT> __host__ __device__ constexpr size_t zt_dtype_bytes() {
    return DT == ZT_F32 ? 4 : 2;
}

/* Bytes of one block of DT, the alignment its vector access needs. */
template <zt_dtype DT> constexpr size_t zt_block_bytes() {
    return DT == ZT_F32 ? 16 : 8;
}

/* Whether element 0 of a tensor whose element `first` sits at p is aligned for block access. */
template <zt_dtype DT> static inline bool zt_block_aligned(const void *p, uint64_t first) {
    const uintptr_t origin = (uintptr_t)p - (uintptr_t)(first * zt_dtype_size(DT));
    return origin % zt_block_bytes<DT>() == 0;
}

__device__ __forceinline__ bool zt_any_nan4(const zt_f32x4 &v) {
    return (v.x != v.x) | (v.y != v.y) | (v.z != v.z) | (v.w != v.w);
}

/* Two f16 / bf16 values packed in a word, low address in the low half. */
template <zt_dtype DT> __device__ __forceinline__ zt_f32x2 zt_unpack2_hw(uint32_t w) {
    if (DT == ZT_BF16) return zt_f32x2{zt_bits_f32(w << 16), zt_bits_f32(w & 0xFFFF0000u)};
    __half2_raw raw;
    raw.x = (unsigned short)(w & 0xFFFFu);
    raw.y = (unsigned short)(w >> 16);
    const float2 f = __half22float2(__half2(raw));
    return zt_f32x2{f.x, f.y};
}

template <zt_dtype DT> __device__ __forceinline__ uint32_t zt_pack2_rne_hw(float lo, float hi) {
    if (DT == ZT_F16) {
        const __half2_raw raw = __floats2half2_rn(lo, hi);
        return (uint32_t)raw.x | ((uint32_t)raw.y << 16);
    }
    const __nv_bfloat162_raw raw = __floats2bfloat162_rn(lo, hi);
    return (uint32_t)raw.x | ((uint32_t)raw.y << 16);
}

/* The block of DT at element j (j a multiple of 4, the tensor aligned for block access), as f32:
 * zt_load_f32's bits. */
template <zt_dtype DT>
__device__ __forceinline__ zt_f32x4 zt_load_block4(const void *p, /* (n) */ size_t j) {
    if (DT == ZT_F32) {
        const float4 v = *reinterpret_cast<const float4 *>(static_cast<const float *>(p) + j);
        return zt_f32x4{v.x, v.y, v.z, v.w};
    }
    const uint2 w = *reinterpret_cast<const uint2 *>(static_cast<const uint16_t *>(p) + j);
    const zt_f32x2 lo = zt_unpack2_hw<DT>(w.x), hi = zt_unpack2_hw<DT>(w.y);
    zt_f32x4 v = zt_f32x4{lo.x, lo.y, hi.x, hi.y};
    if (DT == ZT_F16 && zt_any_nan4(v))
        v = zt_f32x4{zt_f16_to_f32((uint16_t)w.x), zt_f16_to_f32((uint16_t)(w.x >> 16)),
                     zt_f16_to_f32((uint16_t)w.y), zt_f16_to_f32((uint16_t)(w.y >> 16))};
    return v;
}

/* The four words of v rounded to nearest even into DT: zt_store_rne's bits, as two packed words
 * (f16 / bf16). */
template <zt_dtype DT> __device__ __forceinline__ uint2 zt_pack4_rne(const zt_f32x4 &v) {
    if (zt_any_nan4(v)) {
        const uint16_t h[4] = {
            DT == ZT_F16 ? zt_f32_to_f16(v.x) : zt_f32_to_bf16(v.x),
            DT == ZT_F16 ? zt_f32_to_f16(v.y) : zt_f32_to_bf16(v.y),
            DT == ZT_F16 ? zt_f32_to_f16(v.z) : zt_f32_to_bf16(v.z),
            DT == ZT_F16 ? zt_f32_to_f16(v.w) : zt_f32_to_bf16(v.w),
        };
        return uint2{(uint32_t)h[0] | ((uint32_t)h[1] << 16),
                     (uint32_t)h[2] | ((uint32_t)h[3] << 16)};
    }
    return uint2{zt_pack2_rne_hw<DT>(v.x, v.y), zt_pack2_rne_hw<DT>(v.z, v.w)};
}

/* Stores v at element j of p (as zt_load_block4), rounded to nearest even. */
template <zt_dtype DT>
__device__ __forceinline__ void zt_store_block4_rne(void *p, /* (n) */ size_t j,
                                                    const zt_f32x4 &v) {
    if (DT == ZT_F32)
        *reinterpret_cast<float4 *>(static_cast<float *>(p) + j) = float4{v.x, v.y, v.z, v.w};
    else
        *reinterpret_cast<uint2 *>(static_cast<uint16_t *>(p) + j) = zt_pack4_rne<DT>(v);
}

__device__ __forceinline__ zt_f32x4 zt_add4(const zt_f32x4 &a, const zt_f32x4 &b) {
    return zt_f32x4{__fadd_rn(a.x, b.x), __fadd_rn(a.y, b.y), __fadd_rn(a.z, b.z),
                    __fadd_rn(a.w, b.w)};
}

/* Which Philox blocks of a slice [elem_offset, slice_end) of a tensor are whole, and which are
 * cut by the slice's ends. Computed on the host. */
struct zt_block_span {
    uint64_t elem_offset, slice_end;
    uint64_t full_begin, full_end; /* whole blocks: [full_begin, full_end), maybe empty */
    uint64_t edge[2];              /* blocks with lanes outside the slice: edge[0 .. n_edges) */
    int n_edges;
};

static inline zt_block_span zt_block_span_of(uint64_t elem_offset, uint64_t n_elems) {
    zt_block_span s;
    s.elem_offset = elem_offset;
    s.slice_end = elem_offset + n_elems;
    s.full_begin = (elem_offset + 3) / 4;
    s.full_end = s.slice_end / 4;
    s.n_edges = 0;
    const uint64_t first = elem_offset / 4, last = (s.slice_end - 1) / 4;
    if (s.full_begin >= s.full_end) {
        /* No whole block: one or two cut blocks. */
        s.full_end = s.full_begin;
        s.edge[s.n_edges++] = first;
        if (last != first) s.edge[s.n_edges++] = last;
        return s;
    }
    if (first < s.full_begin) s.edge[s.n_edges++] = first;
    if (last >= s.full_end) s.edge[s.n_edges++] = last;
    return s;
}

/* Lanes [begin, end) of block `block` that lie inside the slice. */
__device__ __forceinline__ void zt_block_lanes(const zt_block_span &s, uint64_t block,
                                               unsigned &begin, unsigned &end) {
    begin = block * 4 < s.elem_offset ? (unsigned)(s.elem_offset - block * 4) : 0u;
    end = block * 4 + 4 > s.slice_end ? (unsigned)(s.slice_end - block * 4) : 4u;
}

} // namespace ZT_CUDA_NAMESPACE

#endif
