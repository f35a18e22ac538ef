/* perturb: dst = src + sum_i coeff_i * z_scale * z_i over a slice of a tensor, staged in f32 and
 * stored in dst's dtype (docs/design.md §2). Also the perturbation checks and the term
 * preparation that update.cu shares (z_terms.cuh).
 *
 * One thread per Philox block: the four elements 4*block .. 4*block+3 of the full tensor share
 * one Philox call per term, exactly as the CPU backend walks them, and every element's value is a
 * function of its index in the full tensor alone, never of the thread that computes it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/z_terms.cuh"

namespace ZT_CUDA_NAMESPACE {

// ---- checks: the CPU backend's order, statuses and messages (kernels/cpu/perturb.c) ----

zt_status zt_cuda_z_terms_prepare(zt_cuda_backend *cb, const char *op, const zt_perturbation *p,
                                  uint32_t tensor_id, zt_cuda_z_terms *out) {
    memset(out, 0, sizeof *out);
    out->n_terms = p->n_terms;
    out->dist = p->dist;
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

/* Blocks first_block .. first_block + n_blocks - 1 of the full tensor cover the slice
 * [elem_offset, slice_end); the first and last may hang over it, and only their lanes inside it
 * are read and written. dst may be src (same dtype): each element is read, then written, by the
 * one thread that owns its block. */
static __global__ void zt_perturb_k(void *dst, zt_dtype dst_dtype,       /* (n) */
                                    const void *src, zt_dtype src_dtype, /* (n) */
                                    uint64_t elem_offset, uint64_t slice_end, uint64_t first_block,
                                    uint64_t n_blocks, zt_cuda_z_terms terms) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b < n_blocks; b += stride) {
        const uint64_t block = first_block + b;
        const zt_f32x4 sum = terms.n_terms > 0 ? zt_cuda_z_sum_block4(terms, block)
                                               : zt_f32x4{0.0f, 0.0f, 0.0f, 0.0f};
        const uint64_t lane_begin = block * 4 < elem_offset ? elem_offset - block * 4 : 0;
        const uint64_t lane_end = block * 4 + 4 > slice_end ? slice_end - block * 4 : 4;
        for (uint64_t lane = lane_begin; lane < lane_end; lane++) {
            const size_t j = (size_t)(block * 4 + lane - elem_offset);
            const float value = zt_load_f32(src, src_dtype, j);
            /* No terms is a plain copy or conversion: adding a zero would turn -0 into +0. */
            const float perturbed =
                terms.n_terms > 0 ? __fadd_rn(value, zt_f32x4_lane(sum, (unsigned)lane)) : value;
            zt_store_rne(dst, dst_dtype, j, perturbed);
        }
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
    const uint64_t slice_end = elem_offset + (uint64_t)n_elems;
    const uint64_t first_block = elem_offset / 4;
    const uint64_t n_blocks = (slice_end - 1) / 4 - first_block + 1;
    ZT_LAUNCH(zt_perturb_k, zt_zo_blocks(n_blocks, ZT_CUDA_ZO_MAX_BLOCKS), kBlockThreads, 0,
              cb->stream, dst, dst_dtype, src.data, src.dtype, elem_offset, slice_end, first_block,
              n_blocks, terms);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
