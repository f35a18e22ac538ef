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
    /* An earlier pipeline stage holds this tensor too (OPT's tied token table) and counts its
     * non-finite weights; this copy is left out of the count so the stages' sum is one
     * process's. */
    int uncounted;
} zt_param;

typedef struct zt_param_set zt_param_set;
struct zt_param_set {
    zt_backend *be;
    zt_param *params;
    int n_params;
    uint64_t n_elems; /* d: trainable parameters in total (every pipeline stage's) */
    /* A step's update not yet applied to every param (zt_zo_defer_update), or NULL. A shadow
     * sweep given it applies it as it stages (models/model.h); what is left, zt_zo_apply_pending.
     */
    zt_pending_update *pending;
    /* A pipeline stage's set holds its own tensors only (src/train/train_pipeline.c): this sums
     * per-parameter partials (n_params, in params order) of a total over every stage's
     * parameters into the same double on every rank. NULL: the set is every parameter. */
    zt_status (*sum_over_stages)(void *ctx, const zt_param_set *ps, const double *partials,
                                 double *total);
    void *stages_ctx;
    /* Rank 0 of a pipeline writes the whole optimizer state into a snapshot: the trainable
     * tensors only other stages hold (ascending ids, n_elsewhere of them), and how to receive
     * one's state (state_copies x n_elems f32, into host) from the first stage holding it, in
     * table order. NULL: the set holds every trainable tensor that rank 0 writes. */
    const uint32_t *elsewhere_ids;
    int n_elsewhere;
    zt_status (*fetch_state)(void *ctx, uint32_t tensor_id, float *host, size_t bytes);
};

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

/* What a line of the step log is (docs/design.md §2.5): a step the engine made, a step the run
 * skipped (nothing moved), or an evaluation of the weights after `step` steps. */
typedef enum zt_record_kind {
    ZT_RECORD_STEP = 0,
    ZT_RECORD_SKIPPED = 1,
    ZT_RECORD_EVAL = 2,
    /* a first-order step (backprop, src/train/first_order.h): its loss, lr and gradient norm
     * (update.projected_grad) for the record; it cannot be replayed from the log */
    ZT_RECORD_FO_STEP = 3,
    /* a hybrid schedule's switch: phase `eval.metric`'s optimizer (fo_name) from step `step` */
    ZT_RECORD_PHASE = 4,
} zt_record_kind;

typedef enum zt_skip_reason {
    ZT_SKIP_NONFINITE_LOSS = 0,
    ZT_SKIP_NONFINITE_WEIGHTS = 1,
} zt_skip_reason;

/* An evaluation as the log keeps it, so that resume rebuilds plateau schedules, best/ and
 * metrics.jsonl without evaluating again. Fields that do not apply are -1. */
typedef struct zt_eval_point {
    double loss, metric, accuracy, f1, exact_match;
} zt_eval_point;

/* Everything replay needs to redo a step's update without any forward pass. */
typedef struct zt_step_record {
    zt_record_kind kind; /* ZT_RECORD_STEP (0) for what the engine makes */
    zt_skip_reason skip_reason;
    zt_eval_point eval; /* ZT_RECORD_EVAL only */
    int step;
    uint64_t step_seed;
    int n_variants;
    double losses[ZT_MAX_VARIANTS];
    zt_direction_dist dist;
    zt_step_update update; /* coefficients already in units of z (sphere folded in) */
    int stochastic_rounding;
    uint64_t rounding_seed;
    char fo_name[16]; /* ZT_RECORD_FO_STEP: the first-order optimizer; PHASE: the phase's */
    int phase;        /* ZT_RECORD_PHASE: the phase's index in the schedule */
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

/* Step `step` up to its record: plan, evaluate the variants, derive the update. No weight has
 * moved when it returns (the trainer logs the record, then applies it). A non-finite loss fails
 * with ZT_ERR_NUMERIC. */
zt_status zt_zo_step_record(zt_optimizer *optimizer, zt_param_set *ps, zt_objective *obj, int step,
                            const zt_engine_options *options, zt_step_record *record);
/* zt_zo_step_record, then zt_zo_apply_update. */
zt_status zt_zo_step(zt_optimizer *optimizer, zt_param_set *ps, zt_objective *obj, int step,
                     const zt_engine_options *options, zt_step_record *record);

/* ---- the deferred update (docs/design.md §2.5) ----
 * In shadow mode the trainer leaves step t's update pending instead of applying it: step t + 1's
 * sweep applies it to each tensor in the pass that stages the tensor's variants
 * (update_perturb_variants), alone to tables it gathers from and tensors it reads as stored, and
 * the engine applies what is left after the first round of evaluation, so every later read (a
 * second round, the update) sees it. The bits are those of zt_zo_apply_update. */
typedef struct zt_deferred_update {
    zt_pending_update pending;
    zt_step_record record; /* the step whose update it is; its terms back pending.update.grad */
    int active;            /* handed to the weights, not yet settled */
} zt_deferred_update;

/* Makes record's update pending on ps (ps->pending; nothing waits when it moves nothing). */
zt_status zt_zo_defer_update(zt_param_set *ps, zt_deferred_update *d, const zt_step_record *record);
/* Applies the pending update alone to every param still waiting for it. */
zt_status zt_zo_apply_pending(const zt_param_set *ps);
/* zt_zo_apply_pending, then the count of non-finite weights the whole update stored; the
 * update is no longer pending (d->record is the step to log). */
zt_status zt_zo_settle_deferred(zt_param_set *ps, zt_deferred_update *d,
                                unsigned long long *n_nonfinite);
/* Drops a deferred update without applying the rest (the run goes back to its logged state). */
void zt_zo_drop_deferred(zt_param_set *ps, zt_deferred_update *d);
void zt_deferred_update_free(zt_deferred_update *d);

/* Applies a record's update to every param (the step's last phase; replay's only one).
 * *n_nonfinite receives how many updated weights are not finite, counted in the same pass. */
zt_status zt_zo_apply_update_counted(zt_param_set *ps, const zt_step_record *record,
                                     unsigned long long *n_nonfinite);
/* As above, and a step that leaves any weight non-finite fails with ZT_ERR_NUMERIC (the
 * weights are then those of the failed update). */
zt_status zt_zo_apply_update(zt_param_set *ps, const zt_step_record *record);

#endif
