/* update_perturb_variants: a step's deferred update fused into the next step's staging
 * (docs/design.md §2.5). Run by run (ZT_CPU_Z_RUN_BLOCKS Philox blocks, in cache), the update's
 * pass writes theta' (and the optimizer state), then the variants' pass reads theta' back as
 * stored and writes every variant from one draw of each seed: the two ops' own per-run bodies
 * (zo_passes.h), so the bits are exactly those of update followed by perturb_variants, while
 * theta is read and written once instead of twice and read once more. */

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "core/status.h"
#include "cpu/cpu_common.h"
#include "cpu/z_terms.h"
#include "cpu/zo_avx2.h"
#include "cpu/zo_passes.h"
#include "op_checks.h"

zt_status zt_cpu_update_perturb_variants(zt_backend *be, void *theta, zt_dtype dtype, /* (n) */
                                         uint32_t tensor_id, size_t n_elems,
                                         float *state, /* NULL, (n) or (3,n) by rule */
                                         const zt_update *u, void *const *dst, /* (K) of (n) */
                                         zt_dtype dst_dtype, const zt_perturbation *p, /* (K) */
                                         int n_variants) {
    const char *op = "update_perturb_variants";
    ZT_TRY(zt_check_update_variants_args(op, theta, dtype, n_elems, state, u, dst, dst_dtype, p,
                                         n_variants));
    if (n_elems == 0) return ZT_OK;
    const zt_weight updated = {theta, dtype};
    zt_cpu_shared_draws plan;
    if (!zt_cpu_plan_shared_draws(p, n_variants, tensor_id, &plan)) {
        /* beyond the plan's capacity: the two ops one after the other (the same bits) */
        ZT_TRY(zt_cpu_update(be, theta, dtype, tensor_id, n_elems, state, u));
        return zt_cpu_perturb_variants(be, dst, dst_dtype, updated, tensor_id, 0, n_elems, p,
                                       n_variants);
    }

    zt_cpu_z_term stack_terms[ZT_CPU_Z_TERMS_ON_STACK];
    zt_cpu_z_term *terms = NULL;
    ZT_TRY(zt_cpu_z_terms_prepare(op, &u->grad, tensor_id, stack_terms, &terms));
    zt_cpu_update_pass pass;
    zt_cpu_update_pass_init(&pass, theta, dtype, tensor_id, n_elems, state, u, terms);
    const uint64_t n = (uint64_t)n_elems;
    unsigned long long nonfinite = 0;
    const int64_t n_runs = zt_cpu_z_run_count(0, n);
    ZT_CPU_PARALLEL_FOR_SUM(zt_cpu_threads(zt_cpu(be)), nonfinite)
    for (int64_t r = 0; r < n_runs; r++) {
        const zt_cpu_z_run run = zt_cpu_z_run_at(0, n, r);
        nonfinite += zt_cpu_update_pass_run(&pass, run);
        zt_cpu_variants_run(&plan, dst, dst_dtype, updated, 0, n_variants, run, pass.path,
                            pass.vector_loops);
    }
    if (u->n_nonfinite) *u->n_nonfinite += nonfinite;
    /* the update's terms, then one draw per seed the variants share */
    be->n_z_drawn += (unsigned long long)n_elems *
                     ((unsigned long long)u->grad.n_terms + (unsigned long long)plan.n_draws);
    zt_cpu_z_terms_release(terms, stack_terms);
    return ZT_OK;
}
