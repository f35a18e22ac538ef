/* perturb: dst = src + sum_i coeff_i * z_scale * z_i over a slice of a tensor, staged in f32 and
 * stored in dst's dtype (docs/design.md §2). Also the perturbation checks and the term
 * preparation that update.cu shares (z_terms.cuh).
 *
 * Work is cut along Philox blocks: the four elements 4*block .. 4*block+3 of the full tensor
 * share one Philox call per term, exactly as the CPU backend walks them, and every element's
 * value is a function of its index in the full tensor alone, never of the thread that computes
 * it. One kernel per (src dtype, dst dtype, distribution), so the hot loop carries no dtype or
 * distribution branch; each thread takes two whole blocks per turn (sharing the term fetches and
 * the Philox key schedule) with one vector access per block, and the at most two blocks the
 * slice cuts go through the element-wise path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/rademacher.cuh"
#include "cuda/z_terms.cuh"

namespace ZT_CUDA_NAMESPACE {

// ---- checks: the CPU backend's order, statuses and messages (kernels/cpu/perturb.c) ----

zt_status zt_cuda_z_terms_prepare(zt_cuda_backend *cb, const char *op, const zt_perturbation *p,
                                  uint32_t tensor_id, zt_cuda_z_terms *out) {
    memset(out, 0, sizeof *out);
    out->n_terms = p->n_terms;
    out->dist = p->dist;
    if (p->n_terms > 0) {
        out->first_rounds = zt_round_keys_of(zt_tensor_key(p->terms[0].seed, tensor_id));
        out->first_scale = p->terms[0].coeff * p->z_scale;
    }
    if (p->n_terms <= kInlineZTerms) {
        for (int i = 0; i < p->n_terms; i++) {
            out->keys[i] = zt_tensor_key(p->terms[i].seed, tensor_id);
            out->scales[i] = p->terms[i].coeff * p->z_scale;
        }
        return ZT_OK;
    }

    /* Too many for the kernel argument: keys then scales, staged on the host and copied into the
     * scratch on the stream. A copy from pageable memory returns once the source is staged, so
     * the host array can go straight away. */
    const size_t n = (size_t)p->n_terms;
    const size_t n_bytes = n * (sizeof(uint64_t) + sizeof(float));
    unsigned char *staging = static_cast<unsigned char *>(zt_xmalloc(n_bytes));
    if (staging == NULL)
        return zt_fail(ZT_ERR_NOMEM, "%s: no memory for %d perturbation terms", op, p->n_terms);
    uint64_t *keys = reinterpret_cast<uint64_t *>(staging);
    float *scales = reinterpret_cast<float *>(staging + n * sizeof(uint64_t));
    for (size_t i = 0; i < n; i++) {
        keys[i] = zt_tensor_key(p->terms[i].seed, tensor_id);
        scales[i] = p->terms[i].coeff * p->z_scale;
    }
    float *scratch = NULL;
    zt_status status =
        zt_cuda_scratch(cb, zt_cuda_z_terms_scratch_floats(p->n_terms), op, &scratch);
    if (status == ZT_OK) {
        cudaError_t err =
            cudaMemcpyAsync(scratch, staging, n_bytes, cudaMemcpyHostToDevice, cb->stream);
        if (err != cudaSuccess)
            status = zt_cuda_fail(err, "cudaMemcpyAsync(terms)", __FILE__, __LINE__);
    }
    free(staging);
    ZT_TRY(status);
    unsigned char *device_bytes = reinterpret_cast<unsigned char *>(scratch);
    out->spilled_keys = reinterpret_cast<const uint64_t *>(device_bytes);
    out->spilled_scales = reinterpret_cast<const float *>(device_bytes + n * sizeof(uint64_t));
    return ZT_OK;
}

// ---- kernel ----

/* The lanes of one block that lie in the slice, element by element in common/dtype.h's
 * conversions: the blocks the slice cuts, and every block of a slice not aligned for block
 * access. */
template <zt_dtype SRC, zt_dtype DST, bool TERMS>
__device__ __forceinline__ void zt_perturb_lanes_g(void *dst,       /* (n) */
                                                   const void *src, /* (n) */
                                                   const zt_block_span &s, uint64_t block,
                                                   const zt_f32x4 &g) {
    unsigned lane_begin, lane_end;
    zt_block_lanes(s, block, lane_begin, lane_end);
    for (unsigned lane = lane_begin; lane < lane_end; lane++) {
        const size_t j = (size_t)(block * 4 + lane - s.elem_offset);
        const float value = zt_load_f32(src, SRC, j);
        /* No terms is a plain copy or conversion: adding a zero would turn -0 into +0. */
        const float perturbed = TERMS ? __fadd_rn(value, zt_f32x4_lane(g, lane)) : value;
        zt_store_rne(dst, DST, j, perturbed);
    }
}

template <zt_dtype SRC, zt_dtype DST, zt_dist DIST, bool TERMS>
__device__ __forceinline__ void zt_perturb_lanes(void *dst,       /* (n) */
                                                 const void *src, /* (n) */
                                                 const zt_block_span &s, uint64_t block,
                                                 const zt_cuda_z_terms &terms) {
    zt_f32x4 g[1] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    if (TERMS) {
        const uint64_t blocks[1] = {block};
        zt_cuda_z_sum_blocks<DIST, 1>(terms, blocks, g);
    }
    zt_perturb_lanes_g<SRC, DST, TERMS>(dst, src, s, block, g[0]);
}

/* K whole blocks, blocks[k] read at src[k] and written at dst[k], each with one vector access.
 * All reads come first, so their latency hides behind the Philox work; dst may be src, each
 * block being read, then written, by this thread alone. */
template <zt_dtype SRC, zt_dtype DST, zt_dist DIST, bool TERMS, int K>
__device__ __forceinline__ void zt_perturb_whole(char *const (&dst)[K],       /* (4) each */
                                                 const char *const (&src)[K], /* (4) each */
                                                 const uint64_t (&blocks)[K],
                                                 const zt_cuda_z_terms &terms) {
    zt_f32x4 v[K];
    for (int k = 0; k < K; k++)
        v[k] = zt_load_block4<SRC>(src[k], 0);
    if (TERMS) {
        zt_f32x4 g[K];
        zt_cuda_z_sum_blocks<DIST, K>(terms, blocks, g);
        for (int k = 0; k < K; k++)
            v[k] = zt_add4(v[k], g[k]);
    }
    for (int k = 0; k < K; k++)
        zt_store_block4_rne<DST>(dst[k], 0, v[k]);
}

template <zt_dtype SRC, zt_dtype DST, zt_dist DIST, bool TERMS>
__device__ __forceinline__ void zt_perturb_run(void *dst,       /* (n) */
                                               const void *src, /* (n) */
                                               const zt_block_span &s, int aligned,
                                               const zt_cuda_z_terms &terms) {
    const uint64_t thread = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    if (!aligned) {
        const uint64_t last = (s.slice_end - 1) / 4;
        for (uint64_t b = s.elem_offset / 4 + thread; b <= last; b += stride)
            zt_perturb_lanes<SRC, DST, DIST, TERMS>(dst, src, s, b, terms);
        return;
    }
    /* Selected, not indexed by thread: an indexed kernel argument would go through local
     * memory. */
    if (thread < (uint64_t)s.n_edges)
        zt_perturb_lanes<SRC, DST, DIST, TERMS>(dst, src, s, thread == 0 ? s.edge[0] : s.edge[1],
                                                terms);
    /* Blocks b and b + stride per turn, so that each of the two accesses is contiguous across a
     * warp; the pointers advance with b rather than being recomputed from it. */
    constexpr uint64_t src_bytes = 4 * zt_dtype_bytes<SRC>(), dst_bytes = 4 * zt_dtype_bytes<DST>();
    uint64_t b = s.full_begin + thread;
    const char *src_b =
        static_cast<const char *>(src) + (b * 4 - s.elem_offset) * zt_dtype_bytes<SRC>();
    char *dst_b = static_cast<char *>(dst) + (b * 4 - s.elem_offset) * zt_dtype_bytes<DST>();
    for (; b + stride < s.full_end; b += 2 * stride) {
        const uint64_t blocks[2] = {b, b + stride};
        const char *const srcs[2] = {src_b, src_b + stride * src_bytes};
        char *const dsts[2] = {dst_b, dst_b + stride * dst_bytes};
        zt_perturb_whole<SRC, DST, DIST, TERMS, 2>(dsts, srcs, blocks, terms);
        src_b += 2 * stride * src_bytes;
        dst_b += 2 * stride * dst_bytes;
    }
    if (b < s.full_end) {
        const uint64_t blocks[1] = {b};
        const char *const srcs[1] = {src_b};
        char *const dsts[1] = {dst_b};
        zt_perturb_whole<SRC, DST, DIST, TERMS, 1>(dsts, srcs, blocks, terms);
    }
}

/* Rademacher z with terms, a warp per chunk of 32 Philox blocks (cuda/rademacher.cuh): every
 * block of the slice, whole ones with one vector access each when aligned, the cut ones (and all
 * of an unaligned slice) element by element. */
template <zt_dtype SRC, zt_dtype DST>
__device__ __forceinline__ void zt_perturb_rademacher_run(void *dst,       /* (n) */
                                                          const void *src, /* (n) */
                                                          const zt_block_span &s, int aligned,
                                                          const zt_cuda_z_terms &terms) {
    const zt_round_keys *const keys[1] = {&terms.first_rounds};
    zt_rademacher_chunks<1>(
        keys, s.elem_offset / 4, (s.slice_end - 1) / 4 + 1, aligned ? s.full_begin : 0,
        aligned ? s.full_end : 0, [&](uint64_t block, const zt_u32x4(&signs)[1], auto where) {
            const zt_f32x4 g = zt_rademacher_z_sum(terms, block, signs[0]);
            if (decltype(where)::value ||
                (aligned && block >= s.full_begin && block < s.full_end)) {
                const size_t j = (size_t)(block * 4 - s.elem_offset);
                zt_store_block4_rne<DST>(dst, j, zt_add4(zt_load_block4<SRC>(src, j), g));
            } else {
                zt_perturb_lanes_g<SRC, DST, true>(dst, src, s, block, g);
            }
        });
}

/* aligned: src and dst both aligned for block access (zt_block_aligned); otherwise every block
 * goes element by element. */
template <zt_dtype SRC, zt_dtype DST, zt_dist DIST>
static __global__ void __launch_bounds__(kBlockThreads)
    zt_perturb_k(void *dst,       /* (n) */
                 const void *src, /* (n) */
                 zt_block_span span, int aligned, zt_cuda_z_terms terms) {
    if (terms.n_terms > 0 && DIST == ZT_DIST_RADEMACHER)
        zt_perturb_rademacher_run<SRC, DST>(dst, src, span, aligned, terms);
    else if (terms.n_terms > 0)
        zt_perturb_run<SRC, DST, DIST, true>(dst, src, span, aligned, terms);
    else
        zt_perturb_run<SRC, DST, DIST, false>(dst, src, span, aligned, terms);
}

typedef void (*zt_perturb_kernel)(void *, const void *, zt_block_span, int, zt_cuda_z_terms);

/* One kernel family's dispatch from run-time (source dtype, destination dtype, distribution) to
 * its template instance; a Family names its pointer type and `kernel<SRC, DST, DIST>()`. */
template <class Family, zt_dtype SRC, zt_dtype DST>
static typename Family::kernel_type zt_perturb_family_pick(zt_dist dist) {
    return dist == ZT_DIST_GAUSSIAN ? Family::template kernel<SRC, DST, ZT_DIST_GAUSSIAN>()
                                    : Family::template kernel<SRC, DST, ZT_DIST_RADEMACHER>();
}

template <class Family, zt_dtype SRC>
static typename Family::kernel_type zt_perturb_family_pick(zt_dtype dst, zt_dist dist) {
    switch (dst) {
    case ZT_F16:
        return zt_perturb_family_pick<Family, SRC, ZT_F16>(dist);
    case ZT_BF16:
        return zt_perturb_family_pick<Family, SRC, ZT_BF16>(dist);
    default:
        return zt_perturb_family_pick<Family, SRC, ZT_F32>(dist);
    }
}

template <class Family>
static typename Family::kernel_type zt_perturb_family_pick(zt_dtype src, zt_dtype dst,
                                                           zt_dist dist) {
    switch (src) {
    case ZT_F16:
        return zt_perturb_family_pick<Family, ZT_F16>(dst, dist);
    case ZT_BF16:
        return zt_perturb_family_pick<Family, ZT_BF16>(dst, dist);
    default:
        return zt_perturb_family_pick<Family, ZT_F32>(dst, dist);
    }
}

struct zt_perturb_family {
    typedef zt_perturb_kernel kernel_type;
    template <zt_dtype SRC, zt_dtype DST, zt_dist DIST> static kernel_type kernel() {
        return zt_perturb_k<SRC, DST, DIST>;
    }
};

/* Whether a slice starting at element `first` of a tensor of dtype at p allows block access. */
static bool zt_slice_aligned(const void *p, zt_dtype dtype, uint64_t first) {
    switch (dtype) {
    case ZT_F16:
        return zt_block_aligned<ZT_F16>(p, first);
    case ZT_BF16:
        return zt_block_aligned<ZT_BF16>(p, first);
    default:
        return zt_block_aligned<ZT_F32>(p, first);
    }
}

// ---- the op ----

zt_status zt_cuda_perturb(zt_backend *be, void *dst, zt_dtype dst_dtype, /* (n) */
                          zt_weight src,                                 /* (n) */
                          uint32_t tensor_id, uint64_t elem_offset, size_t n_elems,
                          const zt_perturbation *p) {
    const char *op = "perturb";
    ZT_TRY(zt_check_perturbation(op, p));
    if (n_elems == 0) return ZT_OK; /* an empty slice: nothing to read or write */
    ZT_TRY(zt_check_ptr(op, "dst", dst));
    ZT_TRY(zt_check_dtype(op, "dst", dst_dtype));
    ZT_TRY(zt_check_weight(op, "src", src, 1));
    if (elem_offset > UINT64_MAX - (uint64_t)n_elems)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: elem_offset %llu + n_elems %zu overflows", op,
                       (unsigned long long)elem_offset, n_elems);
    /* Only exact aliasing (the in-place mode) is safe; a shifted overlap would read elements
     * another thread already perturbed. */
    if (dst == src.data) {
        if (dst_dtype != src.dtype)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: dst aliases src but dst is %s, src %s", op,
                           zt_dtype_name(dst_dtype), zt_dtype_name(src.dtype));
    } else {
        ZT_TRY(zt_check_disjoint(op, "dst", dst, n_elems * zt_dtype_size(dst_dtype), "src",
                                 src.data, n_elems * zt_dtype_size(src.dtype)));
    }

    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    zt_cuda_z_terms terms;
    ZT_TRY(zt_cuda_z_terms_prepare(cb, op, p, tensor_id, &terms));
    const zt_block_span span = zt_block_span_of(elem_offset, (uint64_t)n_elems);
    const int aligned = zt_slice_aligned(src.data, src.dtype, elem_offset) &&
                        zt_slice_aligned(dst, dst_dtype, elem_offset);
    /* Threads for two blocks each in the aligned loop; element-wise, one block each; Rademacher
     * z, a warp per chunk. */
    const uint64_t n_blocks = (span.slice_end - 1) / 4 - elem_offset / 4 + 1;
    const uint64_t n_items =
        p->dist == ZT_DIST_RADEMACHER && p->n_terms > 0
            ? zt_rademacher_threads(elem_offset / 4, (span.slice_end - 1) / 4 + 1)
        : aligned ? (n_blocks + 1) / 2
                  : n_blocks;
    const zt_perturb_kernel perturb_kernel =
        zt_perturb_family_pick<zt_perturb_family>(src.dtype, dst_dtype, p->dist);
    ZT_LAUNCH(perturb_kernel, zt_zo_blocks(n_items, ZT_CUDA_ZO_MAX_BLOCKS), kBlockThreads, 0,
              cb->stream, dst, src.data, span, aligned, terms);
    return ZT_OK;
}

// ---- perturb_variants ----

/* Variants fused into one kernel: each holds exactly one term, all of one seed (MeZO's +eps z and
 * -eps z, S2P's pairs): z is drawn once per block and scaled once per variant. Other sets of
 * variants go through zt_cuda_perturb one by one, with the same bits. */
constexpr int kFusedVariants = 4;

struct zt_shared_z_variants {
    int n;
    float scale[kFusedVariants];
    void *dst[kFusedVariants];
};

/* a * z for each variant's scale, z's four values drawn once from `words`
 * (zt_cuda_z_words4<DIST>). */
template <zt_dist DIST>
__device__ __forceinline__ void zt_scaled_variants4(const zt_shared_z_variants &v,
                                                    const zt_u32x4 &words,
                                                    zt_f32x4 (&g)[kFusedVariants]) {
    if (DIST == ZT_DIST_GAUSSIAN) {
        const zt_f32x4 z = zt_box_muller4(words);
        for (int k = 0; k < kFusedVariants; k++)
            if (k < v.n)
                g[k] = zt_f32x4{__fmul_rn(v.scale[k], z.x), __fmul_rn(v.scale[k], z.y),
                                __fmul_rn(v.scale[k], z.z), __fmul_rn(v.scale[k], z.w)};
    } else {
        for (int k = 0; k < kFusedVariants; k++)
            if (k < v.n) g[k] = zt_cuda_scaled_z4<ZT_DIST_RADEMACHER>(v.scale[k], words);
    }
}

/* Block b of every variant: src + g[k], one vector access per variant when aligned and whole
 * (WHOLE: known to be). */
template <zt_dtype SRC, zt_dtype DST, bool WHOLE>
__device__ __forceinline__ void zt_store_variants4(const void *src, /* (n) */
                                                   uint64_t n_elems, int aligned,
                                                   const zt_shared_z_variants &v, uint64_t b,
                                                   const zt_f32x4 (&g)[kFusedVariants]) {
    if (WHOLE || (aligned && b * 4 + 4 <= n_elems)) {
        const zt_f32x4 x = zt_load_block4<SRC>(src, b * 4);
        for (int k = 0; k < kFusedVariants; k++)
            if (k < v.n) zt_store_block4_rne<DST>(v.dst[k], b * 4, zt_add4(x, g[k]));
    } else {
        for (unsigned lane = 0; lane < 4 && b * 4 + lane < n_elems; lane++) {
            const size_t j = (size_t)(b * 4 + lane);
            const float x = zt_load_f32(src, SRC, j);
            for (int k = 0; k < kFusedVariants; k++)
                if (k < v.n)
                    zt_store_rne(v.dst[k], DST, j, __fadd_rn(x, zt_f32x4_lane(g[k], lane)));
        }
    }
}

template <zt_dtype SRC, zt_dtype DST, zt_dist DIST>
static __global__ void __launch_bounds__(kBlockThreads)
    zt_perturb_variants_k(const void *src, /* (n) */
                          uint64_t n_elems, int aligned, zt_round_keys rounds,
                          zt_shared_z_variants v) {
    const uint64_t n_blocks = (n_elems + 3) / 4;
    if (DIST == ZT_DIST_RADEMACHER) {
        /* A warp per chunk of 32 Philox blocks (cuda/rademacher.cuh). */
        const zt_round_keys *const keys[1] = {&rounds};
        zt_rademacher_chunks<1>(keys, 0, n_blocks, 0, aligned ? n_elems / 4 : 0,
                                [&](uint64_t b, const zt_u32x4(&signs)[1], auto where) {
                                    zt_f32x4 g[kFusedVariants];
                                    zt_scaled_variants4<DIST>(v, signs[0], g);
                                    zt_store_variants4<SRC, DST, decltype(where)::value>(
                                        src, n_elems, aligned, v, b, g);
                                });
        return;
    }
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b < n_blocks; b += stride) {
        zt_f32x4 g[kFusedVariants];
        zt_scaled_variants4<DIST>(v, zt_cuda_z_words4_rk<DIST>(rounds, b), g);
        zt_store_variants4<SRC, DST, false>(src, n_elems, aligned, v, b, g);
    }
}

typedef void (*zt_perturb_variants_kernel)(const void *, uint64_t, int, zt_round_keys,
                                           zt_shared_z_variants);

struct zt_perturb_variants_family {
    typedef zt_perturb_variants_kernel kernel_type;
    template <zt_dtype SRC, zt_dtype DST, zt_dist DIST> static kernel_type kernel() {
        return zt_perturb_variants_k<SRC, DST, DIST>;
    }
};

/* Whether the variants are one term each, all of the first variant's seed and distribution. */
static bool zt_variants_share_one_z(const zt_perturbation *p, int n_variants) {
    if (n_variants > kFusedVariants) return false;
    for (int k = 0; k < n_variants; k++)
        if (p[k].n_terms != 1 || p[k].dist != p[0].dist || p[k].terms[0].seed != p[0].terms[0].seed)
            return false;
    return true;
}

zt_status zt_cuda_perturb_variants(zt_backend *be, void *const *dst,  /* (K) of (n) */
                                   zt_dtype dst_dtype, zt_weight src, /* (n) */
                                   uint32_t tensor_id, uint64_t elem_offset, size_t n_elems,
                                   const zt_perturbation *p, /* (K) */
                                   int n_variants) {
    const char *op = "perturb_variants";
    ZT_TRY(zt_check_variant_args(op, dst, dst_dtype, src, n_elems, p, n_variants));
    if (n_elems == 0) return ZT_OK;
    /* The shared-z kernel stages whole tensors; a slice (only a backend with head_vocab_chunk
     * asks for one, which CUDA is not) goes through perturb, one variant at a time: the same
     * bits. */
    if (elem_offset != 0 || !zt_variants_share_one_z(p, n_variants)) {
        for (int k = 0; k < n_variants; k++)
            ZT_TRY(zt_cuda_perturb(be, dst[k], dst_dtype, src, tensor_id, elem_offset, n_elems,
                                   &p[k]));
        return ZT_OK;
    }
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    zt_shared_z_variants v;
    memset(&v, 0, sizeof v);
    v.n = n_variants;
    int aligned = zt_slice_aligned(src.data, src.dtype, 0);
    for (int k = 0; k < n_variants; k++) {
        v.scale[k] = p[k].terms[0].coeff * p[k].z_scale;
        v.dst[k] = dst[k];
        aligned = aligned && zt_slice_aligned(dst[k], dst_dtype, 0);
    }
    const zt_round_keys rounds = zt_round_keys_of(zt_tensor_key(p[0].terms[0].seed, tensor_id));
    const uint64_t n_blocks = ((uint64_t)n_elems + 3) / 4;
    const uint64_t n_items =
        p[0].dist == ZT_DIST_RADEMACHER ? zt_rademacher_threads(0, n_blocks) : n_blocks;
    const zt_perturb_variants_kernel kernel =
        zt_perturb_family_pick<zt_perturb_variants_family>(src.dtype, dst_dtype, p[0].dist);
    ZT_LAUNCH(kernel, zt_zo_blocks(n_items, ZT_CUDA_ZO_MAX_BLOCKS), kBlockThreads, 0, cb->stream,
              src.data, (uint64_t)n_elems, aligned, rounds, v);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
