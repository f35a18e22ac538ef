/* First-order training (docs/design.md §3.1): the optimizers backprop serves, and one step of
 * them inside `zotune train` (gradients by zt_model_grad, clipping, the update by the backend's
 * fo_update). */
#ifndef ZT_TRAIN_FIRST_ORDER_H
#define ZT_TRAIN_FIRST_ORDER_H

#include "backend.h"
#include "data/dataset.h"
#include "zo/optimizer.h"

typedef struct zt_fo_info {
    const char *name;
    zt_fo_rule rule;
    int decoupled_decay; /* adamw */
    const char *summary;
} zt_fo_info;

/* The first-order optimizers by name (sgd, signsgd, adam, adamw, adamm); NULL if unknown. */
const zt_fo_info *zt_fo_find(const char *name);
int zt_fo_count(void);
const zt_fo_info *zt_fo_at(int index);

/* What a first-order run takes beyond zt_zo_hparams (lr and its schedule, weight decay,
 * momentum, beta1, beta2, adam_eps come from there). */
typedef struct zt_fo_options {
    int nesterov;               /* sgd with momentum */
    double clip_norm;           /* global gradient norm clipping; 0 = off */
    int micro_batches;          /* the step's examples in this many backward passes (>= 1) */
    int checkpoint_activations; /* keep layer inputs only; run each layer again in backward */
} zt_fo_options;

/* A hybrid schedule (--schedule mezo:1000,adamw:200): phases run one after the other in one run,
 * each with its optimizer; "zo" stands for mezo, "fo" for adamw. A phase starts its optimizer's
 * tensor state afresh; lr schedules run over the whole run. At most one zeroth-order optimizer
 * (its policy is shared by its phases), any first-order ones. */
enum { ZT_MAX_PHASES = 16 };
typedef struct zt_phase {
    const char *optimizer; /* a name from the optimizer tables (static) */
    const zt_fo_info *fo;  /* NULL: zeroth-order */
    int start, steps;
} zt_phase;
typedef struct zt_phases {
    int n;
    zt_phase phase[ZT_MAX_PHASES];
} zt_phases;

/* spec NULL or "": one phase of `optimizer` over `steps`. Errors name the phase at fault. */
zt_status zt_phases_parse(const char *spec, const char *optimizer, int steps, zt_phases *out);
/* The phase step `step` belongs to (the last one past the end). */
int zt_phase_at(const zt_phases *phases, int step);
/* The total steps, and the schedule's zeroth-order optimizer (NULL when it has none). */
int zt_phases_steps(const zt_phases *phases);
const char *zt_phases_zo_optimizer(const zt_phases *phases);

/* f32 state copies the optimizer keeps per trainable element. */
int zt_fo_state_copies(const zt_fo_info *info, const zt_zo_hparams *hp);

/* The update of step `step` (0-based) of `total`: lr from the schedule, Adam's bias corrections
 * for the optimizer's own step phase_step + 1 (its phase's, in a hybrid schedule). grad_scale 1,
 * weight decay for a tensor that takes it. */
zt_fo_update zt_fo_update_at(const zt_fo_info *info, const zt_zo_hparams *hp,
                             const zt_fo_options *fo, int step, int total, int phase_step);

/* d loss / d log p for every target of a task batch, as zt_model_grad's weights (their
 * negatives): the token mean over `total_targets` for LM batches; for classification, the
 * cross-entropy over each example's candidate scores (mean log-probability of the option
 * tokens), averaged over `total_examples`, from the batch's log-probabilities. *loss receives
 * this batch's share of the step's loss. */
zt_status zt_fo_target_weights(const zt_task_batch *batch, const float *logprobs,      /* (R) */
                               long total_targets, int total_examples, float *weights, /* (R) */
                               double *loss);

#endif
