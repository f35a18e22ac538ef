#include "train/objective.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

static zt_status ensure_logprobs(zt_opt_objective *o, int n) {
    if (n <= o->logprobs_capacity) return ZT_OK;
    float *grown = realloc(o->logprobs, (size_t)n * sizeof *grown);
    if (!grown) return zt_fail(ZT_ERR_NOMEM, "allocating %d log-probabilities", n);
    o->logprobs = grown;
    o->logprobs_capacity = n;
    return ZT_OK;
}

static zt_batch model_batch(const zt_task_batch *b) {
    zt_batch mb = {b->n_sequences, b->seq_len,   b->input_ids, b->attention_mask,
                   b->n_targets,   b->target_rows, b->target_ids};
    return mb;
}

static zt_status evaluate_shadow(zt_opt_objective *o, const zt_variant_set *vs, double *losses) {
    const zt_task_batch *b = o->batch;
    ZT_TRY(ensure_logprobs(o, vs->n_variants * b->n_targets));
    zt_batch mb = model_batch(b);
    zt_opt_variants variants = {vs->n_variants, vs->variant, o->perturbed};
    ZT_TRY(zt_opt_forward_multi(o->model, o->ws, &mb, &variants, o->logprobs, NULL));
    for (int k = 0; k < vs->n_variants; k++)
        ZT_TRY(zt_task_batch_loss(b, o->logprobs + (size_t)k * b->n_targets, &losses[k]));
    return ZT_OK;
}

/* The terms that move the weights from perturbation `from` to perturbation `to`: per seed,
 * coefficient(to) - coefficient(from), so MeZO's sequence is exactly +eps, -2eps, +eps. */
static int delta_terms(const zt_perturbation *from, const zt_perturbation *to, zt_direction *out) {
    int n = 0;
    for (int i = 0; to && i < to->n_terms; i++) out[n++] = to->terms[i];
    for (int i = 0; from && i < from->n_terms; i++) {
        int j = 0;
        while (j < n && out[j].seed != from->terms[i].seed) j++;
        if (j == n) out[n++] = (zt_direction){from->terms[i].seed, 0.0f};
        out[j].coeff -= from->terms[i].coeff;
    }
    return n;
}

static zt_status move_weights(const zt_param_set *ps, const zt_perturbation *from,
                              const zt_perturbation *to, zt_dist dist) {
    zt_direction terms[2 * ZT_MAX_DIRECTIONS];
    int n = delta_terms(from, to, terms);
    if (n == 0) return ZT_OK;
    zt_perturbation delta = {terms, n, dist, 1.0f};
    for (int i = 0; i < ps->n_params; i++) {
        const zt_param *p = &ps->params[i];
        zt_weight src = {p->data, p->dtype};
        ZT_TRY(ps->be->ops->perturb(ps->be, p->data, p->dtype, src, p->tensor_id, 0, p->n_elems,
                                    &delta));
    }
    return ZT_OK;
}

static zt_status evaluate_inplace(zt_opt_objective *o, const zt_param_set *ps,
                                  const zt_variant_set *vs, double *losses) {
    const zt_task_batch *b = o->batch;
    ZT_TRY(ensure_logprobs(o, b->n_targets));
    zt_batch mb = model_batch(b);
    const zt_perturbation *current = NULL;
    zt_dist dist = vs->n_variants > 0 ? vs->variant[0].dist : ZT_DIST_GAUSSIAN;
    for (int k = 0; k < vs->n_variants; k++) {
        ZT_TRY(move_weights(ps, current, &vs->variant[k], dist));
        current = &vs->variant[k];
        ZT_TRY(zt_opt_forward_multi(o->model, o->ws, &mb, NULL, o->logprobs, NULL));
        ZT_TRY(zt_task_batch_loss(b, o->logprobs, &losses[k]));
    }
    return move_weights(ps, current, NULL, dist);
}

static zt_status evaluate(void *ctx, const zt_param_set *ps, const zt_variant_set *vs,
                          double *losses) {
    zt_opt_objective *o = ctx;
    if (!o->batch) return zt_fail(ZT_ERR_INTERNAL, "objective evaluated without a batch");
    return o->mode == ZT_PERTURB_SHADOW ? evaluate_shadow(o, vs, losses)
                                        : evaluate_inplace(o, ps, vs, losses);
}

void zt_opt_objective_bind(zt_opt_objective *state, zt_objective *objective) {
    objective->ctx = state;
    objective->evaluate = evaluate;
}

void zt_opt_objective_release(zt_opt_objective *state) {
    free(state->logprobs);
    state->logprobs = NULL;
    state->logprobs_capacity = 0;
}

zt_status zt_opt_batch_loss(zt_opt_objective *o, const zt_task_batch *batch, double *loss) {
    ZT_TRY(ensure_logprobs(o, batch->n_targets));
    zt_batch mb = model_batch(batch);
    ZT_TRY(zt_opt_forward_multi(o->model, o->ws, &mb, NULL, o->logprobs, NULL));
    return zt_task_batch_loss(batch, o->logprobs, loss);
}
