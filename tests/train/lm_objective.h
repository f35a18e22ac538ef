/* A fixed batch's token-mean LM loss as the ZO engine's objective: every variant in one shadow
 * sweep (zt_model_forward), shared by the engine-step tests. */
#ifndef ZT_TESTS_LM_OBJECTIVE_H
#define ZT_TESTS_LM_OBJECTIVE_H

#include "core/status.h"
#include "data/targets.h"
#include "models/model.h"
#include "train/task_loss.h"
#include "zo/engine.h"

typedef struct lm_objective {
    zt_model *m;
    zt_workspace *ws;
    const zt_batch *b;
    const zt_targets *t;
    const uint8_t *perturbed;
    float *logprobs; /* (K,R) */
} lm_objective;

static inline zt_status lm_evaluate(void *ctx, const zt_param_set *ps, const zt_variant_set *vs,
                                    double *losses) {
    (void)ps;
    lm_objective *o = ctx;
    zt_variants v = {vs->n_variants, vs->variant, o->perturbed};
    ZT_TRY(zt_model_forward(o->m, o->ws, o->b, &v, o->logprobs, NULL));
    for (int k = 0; k < vs->n_variants; k++)
        zt_lm_loss(o->logprobs + (size_t)k * o->t->n, o->t, o->b->batch, NULL, NULL, &losses[k]);
    return ZT_OK;
}

#endif
