/* perturb: staging a perturbed copy of a weight tensor (docs/design.md §2), and the term
 * preparation that update.c and gather.c share (z_terms.h). z is regenerated block by block from
 * its seed (kernels/common/perturb_rng.h); every element's value is a pure function of its index
 * in the full tensor, so results do not depend on the thread count or on how a tensor is sliced. */

/* The f32 operation order is part of the contract (z_terms.h), so nothing may be fused into
 * an FMA: GCC in ISO C mode (-std=c11) contracts nothing; clang contracts within an expression
 * unless told not to. Placed before the includes, it covers the inline helpers too. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/status.h"
#include "cpu/cpu_common.h"
#include "cpu/z_terms.h"
#include "cpu/zo_avx2.h"
#include "cpu/zo_passes.h"

zt_status zt_cpu_z_terms_prepare(const char *op, const zt_perturbation *p, uint32_t tensor_id,
                                 zt_cpu_z_term *stack, zt_cpu_z_term **terms_out) {
    *terms_out = stack;
    ZT_TRY(zt_check_perturbation(op, p));
    if (p->n_terms == 0) return ZT_OK;

    zt_cpu_z_term *terms = stack;
    if (p->n_terms > ZT_CPU_Z_TERMS_ON_STACK) {
        terms = zt_xmalloc((size_t)p->n_terms * sizeof *terms);
        if (terms == NULL)
            return zt_fail(ZT_ERR_NOMEM, "%s: no memory for %d perturbation terms", op, p->n_terms);
    }
    for (int i = 0; i < p->n_terms; i++) {
        terms[i].tensor_key = zt_tensor_key(p->terms[i].seed, tensor_id);
        terms[i].scale = p->terms[i].coeff * p->z_scale;
    }
    *terms_out = terms;
    return ZT_OK;
}

void zt_cpu_z_terms_release(zt_cpu_z_term *terms, const zt_cpu_z_term *stack) {
    if (terms != stack) free(terms);
}

/* dst[k] = stage(src[k] + sum[k]) for k in [0, n), or the plain conversion without terms (adding
 * a zero would turn -0 into +0). Inlined with constant dtypes, so each combination below is a
 * loop without a dtype branch. */
static inline __attribute__((always_inline)) void add_run(void *dst, zt_dtype dst_dtype,
                                                          const void *src, zt_dtype src_dtype,
                                                          size_t j0, const float *sum, size_t n,
                                                          int has_terms) {
    if (has_terms) {
        ZT_CPU_SIMD
        for (size_t k = 0; k < n; k++)
            zt_store_rne(dst, dst_dtype, j0 + k, zt_load_f32(src, src_dtype, j0 + k) + sum[k]);
    } else {
        ZT_CPU_SIMD
        for (size_t k = 0; k < n; k++)
            zt_store_rne(dst, dst_dtype, j0 + k, zt_load_f32(src, src_dtype, j0 + k));
    }
}

#define ZT_ADD_RUN_CASE(d, s)                                                                      \
    case (int)(d)*3 + (int)(s):                                                                    \
        add_run(dst, d, src, s, j0, sum, n, has_terms);                                            \
        return

static void add_run_any(void *dst, zt_dtype dst_dtype, const void *src, zt_dtype src_dtype,
                        size_t j0, const float *sum, size_t n, int has_terms, int vector_loops) {
    if (vector_loops && has_terms && dst_dtype == ZT_F32 && src_dtype == ZT_F16) {
        /* an f16 weight staged into f32, as shadow mode does under --gemm f32 */
        const size_t done =
            zt_cpu_stage_f16_to_f32_avx2((float *)dst + j0, (const uint16_t *)src + j0, sum, n);
        j0 += done, sum += done, n -= done;
    }
    switch ((int)dst_dtype * 3 + (int)src_dtype) {
        ZT_ADD_RUN_CASE(ZT_F32, ZT_F32);
        ZT_ADD_RUN_CASE(ZT_F32, ZT_F16);
        ZT_ADD_RUN_CASE(ZT_F32, ZT_BF16);
        ZT_ADD_RUN_CASE(ZT_F16, ZT_F32);
        ZT_ADD_RUN_CASE(ZT_F16, ZT_F16);
        ZT_ADD_RUN_CASE(ZT_F16, ZT_BF16);
        ZT_ADD_RUN_CASE(ZT_BF16, ZT_F32);
        ZT_ADD_RUN_CASE(ZT_BF16, ZT_F16);
        ZT_ADD_RUN_CASE(ZT_BF16, ZT_BF16);
    default:
        add_run(dst, dst_dtype, src, src_dtype, j0, sum, n, has_terms);
    }
}

zt_status zt_cpu_perturb(zt_backend *be, void *dst, zt_dtype dst_dtype, /* (n) */
                         zt_weight src,                                 /* (n) */
                         uint32_t tensor_id, uint64_t elem_offset, size_t n_elems,
                         const zt_perturbation *p) {
    const char *op = "perturb";
    zt_cpu_z_term stack_terms[ZT_CPU_Z_TERMS_ON_STACK];
    zt_cpu_z_term *terms = NULL;
    ZT_TRY(zt_cpu_z_terms_prepare(op, p, tensor_id, stack_terms, &terms));
    zt_status status = ZT_OK;
    if (n_elems == 0) goto done; /* an empty slice: nothing to read or write */

    if ((status = zt_check_ptr(op, "dst", dst)) != ZT_OK) goto done;
    if ((status = zt_check_dtype(op, "dst", dst_dtype)) != ZT_OK) goto done;
    if ((status = zt_check_weight(op, "src", src, 1)) != ZT_OK) goto done;
    if (elem_offset > UINT64_MAX - (uint64_t)n_elems) {
        status = zt_fail(ZT_ERR_INVALID_ARG, "%s: elem_offset %llu + n_elems %zu overflows", op,
                         (unsigned long long)elem_offset, n_elems);
        goto done;
    }
    /* Element j is read before it is written, so only exact aliasing (the in-place mode) is
     * safe; a shifted overlap would read elements another iteration already perturbed. */
    if (dst == src.data) {
        if (dst_dtype != src.dtype) {
            status = zt_fail(ZT_ERR_INVALID_ARG, "%s: dst aliases src but dst is %s, src %s", op,
                             zt_dtype_name(dst_dtype), zt_dtype_name(src.dtype));
            goto done;
        }
    } else {
        status = zt_check_disjoint(op, "dst", dst, n_elems * zt_dtype_size(dst_dtype), "src",
                                   src.data, n_elems * zt_dtype_size(src.dtype));
        if (status != ZT_OK) goto done;
    }

    {
        const int n_terms = p->n_terms;
        const zt_dist dist = p->dist;
        be->n_z_drawn += (unsigned long long)n_elems * (unsigned long long)n_terms;
        /* Runs of whole blocks of the full tensor cover [elem_offset, elem_offset + n); the
         * first and last block may hang over the slice, and only their lanes inside it are
         * written. */
        const uint64_t slice_end = elem_offset + (uint64_t)n_elems;
        const int64_t n_runs = zt_cpu_z_run_count(elem_offset, slice_end);
        const zt_cpu_rng_path path = zt_cpu_rng_active_path();
        const int vector_loops = zt_cpu_rng_path_has_avx2(path) && zt_cpu_zo_avx2_available();
        ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
        for (int64_t r = 0; r < n_runs; r++) {
            float sum[4 * ZT_CPU_Z_RUN_BLOCKS], scratch[4 * ZT_CPU_Z_RUN_BLOCKS];
            const zt_cpu_z_run run = zt_cpu_z_run_at(elem_offset, slice_end, r);
            if (n_terms > 0)
                zt_cpu_z_sum_run(terms, n_terms, dist, path, run.block, (size_t)run.n_blocks, sum,
                                 scratch);
            add_run_any(dst, dst_dtype, src.data, src.dtype, (size_t)(run.begin - elem_offset),
                        sum + (run.begin - run.block * 4), (size_t)(run.end - run.begin),
                        n_terms > 0, vector_loops);
        }
    }

done:
    zt_cpu_z_terms_release(terms, stack_terms);
    return status;
}

/* ---- perturb_variants: K staged variants from one draw per shared seed ---- */

int zt_cpu_plan_shared_draws(const zt_perturbation *p, int n_variants, uint32_t tensor_id,
                             zt_cpu_shared_draws *plan) {
    plan->n_draws = 0;
    plan->dist = p[0].dist;
    int t = 0;
    for (int k = 0; k < n_variants; k++) {
        plan->first_term[k] = t;
        if (p[k].n_terms > 0 && p[k].dist != plan->dist) return 0;
        for (int i = 0; i < p[k].n_terms; i++, t++) {
            if (t == ZT_CPU_VARIANT_TERMS) return 0;
            const uint64_t key = zt_tensor_key(p[k].terms[i].seed, tensor_id);
            int d = 0;
            while (d < plan->n_draws && plan->key[d] != key)
                d++;
            if (d == plan->n_draws) {
                if (d == ZT_CPU_SHARED_DRAWS) return 0;
                plan->key[plan->n_draws++] = key;
            }
            plan->draw_of[t] = d;
            plan->scale[t] = p[k].terms[i].coeff * p[k].z_scale;
        }
    }
    plan->first_term[n_variants] = t;
    return 1;
}

void zt_cpu_variants_run(const zt_cpu_shared_draws *plan, void *const *dst, /* (K) of (n) */
                         zt_dtype dst_dtype, zt_weight src,                 /* (n) */
                         uint64_t elem_offset, int n_variants, zt_cpu_z_run run,
                         zt_cpu_rng_path path, int vector_loops) {
    float z[ZT_CPU_SHARED_DRAWS][4 * ZT_CPU_Z_RUN_BLOCKS], sum[4 * ZT_CPU_Z_RUN_BLOCKS];
    const size_t n_blocks = (size_t)run.n_blocks, n = 4 * n_blocks;
    for (int d = 0; d < plan->n_draws; d++) {
        if (plan->dist == ZT_DIST_GAUSSIAN)
            zt_cpu_gauss_blocks(path, plan->key[d], run.block, n_blocks, z[d]);
        else
            zt_cpu_rademacher_blocks(path, plan->key[d], run.block, n_blocks, z[d]);
    }
    for (int k = 0; k < n_variants; k++) {
        /* z_terms.h's order: term 0 assigned (0 + -0 would be +0), the others added. */
        const int first = plan->first_term[k], end = plan->first_term[k + 1];
        for (int t = first; t < end; t++) {
            const float a = plan->scale[t];
            const float *zt = z[plan->draw_of[t]];
            if (t == first)
                for (size_t e = 0; e < n; e++)
                    sum[e] = a * zt[e];
            else
                for (size_t e = 0; e < n; e++)
                    sum[e] = sum[e] + a * zt[e];
        }
        /* the run's first block may start before the slice (elem_offset % 4 != 0) */
        add_run_any(dst[k], dst_dtype, src.data, src.dtype, (size_t)(run.begin - elem_offset),
                    sum + (run.begin - run.block * 4), (size_t)(run.end - run.begin), end > first,
                    vector_loops);
    }
}

zt_status zt_cpu_perturb_variants(zt_backend *be, void *const *dst,  /* (K) of (n) */
                                  zt_dtype dst_dtype, zt_weight src, /* (n) */
                                  uint32_t tensor_id, uint64_t elem_offset, size_t n_elems,
                                  const zt_perturbation *p, /* (K) */
                                  int n_variants) {
    const char *op = "perturb_variants";
    ZT_TRY(zt_check_variant_args(op, dst, dst_dtype, src, n_elems, p, n_variants));
    if (n_elems == 0) return ZT_OK;
    if (elem_offset > UINT64_MAX - (uint64_t)n_elems)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: elem_offset %llu + n_elems %zu overflows", op,
                       (unsigned long long)elem_offset, n_elems);
    zt_cpu_shared_draws plan;
    if (!zt_cpu_plan_shared_draws(p, n_variants, tensor_id, &plan)) {
        for (int k = 0; k < n_variants; k++)
            ZT_TRY(
                zt_cpu_perturb(be, dst[k], dst_dtype, src, tensor_id, elem_offset, n_elems, &p[k]));
        return ZT_OK;
    }
    be->n_z_drawn += (unsigned long long)n_elems * (unsigned long long)plan.n_draws;
    const uint64_t slice_end = elem_offset + (uint64_t)n_elems;
    const int64_t n_runs = zt_cpu_z_run_count(elem_offset, slice_end);
    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    const int vector_loops = zt_cpu_rng_path_has_avx2(path) && zt_cpu_zo_avx2_available();
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int64_t r = 0; r < n_runs; r++)
        zt_cpu_variants_run(&plan, dst, dst_dtype, src, elem_offset, n_variants,
                            zt_cpu_z_run_at(elem_offset, slice_end, r), path, vector_loops);
    return ZT_OK;
}
