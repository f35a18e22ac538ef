/* The loss of a model on a task batch as a zt_objective for the ZO engine, in one of two
 * modes (docs/design.md §2.3):
 *   shadow  - all K variants in one sweep over the layers, weights staged per variant; the
 *             master weights are never written, so lr = 0 leaves them bit-identical.
 *   inplace - MeZO's way: the master weights are moved to each variant in turn (+eps, -2eps,
 *             +eps for MeZO) and evaluated with the plain forward; in f16/bf16 the round trip
 *             drifts, which is what this mode exists to measure. */
#ifndef ZT_TRAIN_OBJECTIVE_H
#define ZT_TRAIN_OBJECTIVE_H

#include "data/dataset.h"
#include "model.h"
#include "zo/engine.h"

typedef enum zt_perturb_mode { ZT_PERTURB_SHADOW = 0, ZT_PERTURB_INPLACE = 1 } zt_perturb_mode;

/* What a step minimises (MeZO §3.3: ZO can optimise non-differentiable objectives directly). */
typedef enum zt_objective_kind {
    ZT_OBJECTIVE_LOSS = 0,     /* the task loss (cross-entropy) */
    ZT_OBJECTIVE_ACCURACY = 1, /* -accuracy of the candidate argmax (classification) */
    ZT_OBJECTIVE_F1 = 2,       /* -F1 of greedy generations (generation) */
} zt_objective_kind;

struct zt_tokenizer;
struct zt_comm;

typedef struct zt_task_objective {
    zt_model *model;
    zt_workspace *ws;
    zt_perturb_mode mode;
    const uint8_t *perturbed; /* (n_tensors): trainable mask */
    /* set before each step: the rank's examples, as n_micro consecutive micro-batches evaluated
     * in turn (--grad-accum; 0 or 1: batch[0] alone) */
    const zt_task_batch *batch;
    int n_micro;
    zt_objective_kind kind;
    /* for -F1: the batch's examples and the tokenizer that decodes generations */
    const zt_dataset *dataset;
    const int *indices;
    int n_indices;
    const struct zt_tokenizer *tok;
    float *logprobs; /* (K,R) host scratch */
    int logprobs_capacity;
    /* data parallel (src/dist): `batch` is this rank's share of the step's global_examples,
     * and the K losses reduce every rank's per-example contributions; NULL: one process */
    struct zt_comm *comm;
    int global_examples;
    /* direction groups (dist/dp_reduce.h): this rank evaluates its group's share of the
     * variants; 0 or 1: every rank all of them */
    int direction_groups;
    double *contributions; /* (2,K,examples) host scratch: values, then weights */
    int contributions_capacity;
} zt_task_objective;

/* Fills `objective` to call into `state`. */
void zt_task_objective_bind(zt_task_objective *state, zt_objective *objective);
void zt_task_objective_release(zt_task_objective *state);

/* In-place mode's move from perturbation `from` to `to` (either may be NULL: the weights as
 * stored): per seed, coefficient(to) - coefficient(from), so MeZO's sequence is exactly +eps,
 * -2eps, +eps. Writes at most from->n_terms + to->n_terms terms; returns their count. */
int zt_inplace_move_terms(const zt_perturbation *from, const zt_perturbation *to,
                          zt_direction *out);

/* The loss of the unperturbed weights on a batch (evaluation). */
zt_status zt_task_objective_loss(zt_task_objective *state, const zt_task_batch *batch,
                                 double *loss);

#endif
