/* The ZO step: plan (optimizer) -> evaluate K variants (objective) -> update every trainable
 * tensor (backend op, regenerating z) -> a step record for the log. Also the update alone,
 * which replay and resume use: base weights + records rebuild a run bit for bit. */
#ifndef ZT_ZO_ENGINE_H
#define ZT_ZO_ENGINE_H

#include <stdint.h>

#include "backend.h"
#include "zo/optimizer.h"

/* One trainable tensor in backend memory. */
typedef struct zt_param {
    const char *name;
    void *data;
    zt_dtype dtype;
    size_t n_elems;
    uint32_t tensor_id; /* canonical id: addresses z */
    int no_decay;       /* excluded from weight decay */
    float *state;       /* optimizer state (state_copies x n_elems f32), NULL if none */
} zt_param;

typedef struct zt_param_set {
    zt_backend *be;
    zt_param *params;
    int n_params;
    uint64_t n_elems; /* d: trainable parameters in total */
} zt_param_set;

/* The K perturbations of a step, one zt_perturbation per variant (z_scale 1: the engine folds
 * sphere normalisation into the coefficients). */
typedef struct zt_variant_set {
    int n_variants;
    zt_perturbation variant[ZT_MAX_VARIANTS];
} zt_variant_set;

typedef struct zt_objective {
    void *ctx;
    /* losses[k] = loss at theta + variant[k], for every k, on the same data. The objective
     * chooses how (one shadow sweep, or in place); theta must be unchanged afterwards up to the
     * objective's documented mode. */
    zt_status (*evaluate)(void *ctx, const zt_param_set *params, const zt_variant_set *variants,
                          double *losses);
} zt_objective;

/* Everything replay needs to redo a step's update without any forward pass. */
typedef struct zt_step_record {
    int step;
    uint64_t step_seed;
    int n_variants;
    double losses[ZT_MAX_VARIANTS];
    zt_direction_dist dist;
    zt_step_update update; /* coefficients already in units of z (sphere folded in) */
    int stochastic_rounding;
    uint64_t rounding_seed;
} zt_step_record;

typedef struct zt_engine_options {
    uint64_t run_seed;
    int stochastic_rounding; /* f16/bf16 stores use SR (default on) */
} zt_engine_options;

/* The seed of step k of a run: a pure function of (run_seed, k). */
uint64_t zt_step_seed(uint64_t run_seed, int step);

/* Allocates the optimizer state of every param (zeros), tracked as ZT_MEM_OPTIMIZER. */
zt_status zt_param_set_alloc_state(zt_param_set *ps, int state_copies);
void zt_param_set_free_state(zt_param_set *ps, int state_copies);

zt_status zt_zo_step(zt_optimizer *optimizer, zt_param_set *ps, zt_objective *obj, int step,
                     const zt_engine_options *options, zt_step_record *record);

/* Applies a record's update to every param (the step's last phase; replay's only one). */
zt_status zt_zo_apply_update(zt_param_set *ps, const zt_step_record *record);

#endif
