/* The per-run bodies of update (update.c) and perturb_variants (perturb.c), shared with the op
 * that fuses them (update_variants.c): a run is ZT_CPU_Z_RUN_BLOCKS Philox blocks of a whole
 * tensor (z_terms.h), so running one after the other on the same run gives exactly the bits of
 * the two ops run one after the other on the whole tensor. */
#ifndef ZT_CPU_ZO_PASSES_H
#define ZT_CPU_ZO_PASSES_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "cpu/rng_blocks.h"
#include "cpu/z_terms.h"

/* ---- update ---- */

/* The rule's constants, with 1-beta rounded once per call rather than per element. */
typedef struct zt_cpu_update_coeffs {
    zt_update_rule rule;
    float lr, weight_decay;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float eps;
} zt_cpu_update_coeffs;

/* One update call's constants: the tensor, its z terms (prepared by zt_cpu_z_terms_prepare and
 * owned by the caller) and the rounding key. */
typedef struct zt_cpu_update_pass {
    zt_cpu_update_coeffs coeffs;
    void *theta; /* (n) */
    zt_dtype dtype;
    size_t n_elems;
    float *state; /* (1 or 3, n) or NULL */
    const zt_cpu_z_term *terms;
    int n_terms;
    zt_dist dist;
    int stochastic;
    uint64_t rounding_key;
    zt_cpu_rng_path path;
    int vector_loops;
} zt_cpu_update_pass;

void zt_cpu_update_pass_init(zt_cpu_update_pass *pass, void *theta, zt_dtype dtype,
                             uint32_t tensor_id, size_t n_elems, float *state, const zt_update *u,
                             const zt_cpu_z_term *terms);
/* Updates the elements of `run` (a run over [0, n_elems)); returns how many stored weights are
 * not finite. */
unsigned long long zt_cpu_update_pass_run(const zt_cpu_update_pass *pass, zt_cpu_z_run run);

/* ---- perturb_variants ---- */

/* Seeds drawn once per run for all variants, and the terms the variants may hold in all. */
enum { ZT_CPU_SHARED_DRAWS = 8, ZT_CPU_VARIANT_TERMS = 64 };

/* The variants' terms against their distinct seeds: term t of all variants (variant by variant,
 * in term order) reads draw draw_of[t] scaled by scale[t]. */
typedef struct zt_cpu_shared_draws {
    int n_draws;
    uint64_t key[ZT_CPU_SHARED_DRAWS];
    int first_term[ZT_CPU_VARIANT_TERMS + 1]; /* variant k: terms first_term[k] .. [k + 1] - 1 */
    int draw_of[ZT_CPU_VARIANT_TERMS];
    float scale[ZT_CPU_VARIANT_TERMS];
    zt_dist dist;
} zt_cpu_shared_draws;

/* Returns 0 when the variants do not fit a plan (too many seeds or terms, or they mix
 * distributions): the caller then goes variant by variant through zt_cpu_perturb. */
int zt_cpu_plan_shared_draws(const zt_perturbation *p, int n_variants, uint32_t tensor_id,
                             zt_cpu_shared_draws *plan);
/* dst[k] = stage(src + variant k) over the elements of `run` (a run over [0, n)). */
void zt_cpu_variants_run(const zt_cpu_shared_draws *plan, void *const *dst, /* (K) of (n) */
                         zt_dtype dst_dtype, zt_weight src,                 /* (n) */
                         uint64_t elem_offset, int n_variants, zt_cpu_z_run run,
                         zt_cpu_rng_path path, int vector_loops);

#endif
