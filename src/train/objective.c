#include "train/objective.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "dist/dp_reduce.h"
#include "text/bpe.h"
#include "train/generate.h"
#include "train/metrics.h"
#include "train/task_loss.h"

static zt_status ensure_logprobs(zt_task_objective *o, int n) {
    if (n <= o->logprobs_capacity) return ZT_OK;
    float *grown = zt_realloc(o->logprobs, (size_t)n * sizeof *grown);
    if (!grown) return zt_fail(ZT_ERR_NOMEM, "allocating %d log-probabilities", n);
    o->logprobs = grown;
    o->logprobs_capacity = n;
    return ZT_OK;
}

static zt_batch model_batch(const zt_task_batch *b) {
    zt_batch mb = {b->n_sequences, b->seq_len,     b->input_ids, b->attention_mask,
                   b->n_targets,   b->target_rows, b->target_ids};
    return mb;
}

/* -F1 of each example's greedy generation under one variant, the n examples decoded together. */
static zt_status negative_f1(zt_task_objective *o, int n, const int *indices,
                             const zt_variants *variant, double *value) {
    if (!o->dataset || !o->tok || o->dataset->kind != ZT_TASK_GENERATION)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--objective f1 needs generation records and a tokenizer");
    int32_t stop[2];
    int n_stop = 0;
    ZT_TRY(zt_generation_stop_ids(o->tok, o->model, stop, &n_stop));
    const zt_example **examples = zt_xmalloc((size_t)n * sizeof *examples);
    char **texts = zt_xmalloc((size_t)n * sizeof *texts);
    zt_status s = examples && texts ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "generation batch");
    for (int i = 0; s == ZT_OK && i < n; i++)
        examples[i] = &o->dataset->examples[indices[i]];
    if (s == ZT_OK)
        s = zt_generate_answers(o->model, o->ws, variant, o->tok, examples, n, n, stop, n_stop,
                                texts);
    for (int i = 0; s == ZT_OK && i < n; i++) {
        value[i] = -zt_answer_f1(texts[i], examples[i]->answers, examples[i]->n_answers);
        free(texts[i]);
    }
    free(examples);
    free(texts);
    return s;
}

static zt_status ensure_contributions(zt_task_objective *o, int n_variants, int n_examples) {
    const int n = 2 * n_variants * n_examples;
    if (n <= o->contributions_capacity) return ZT_OK;
    double *grown = zt_realloc(o->contributions, (size_t)n * sizeof *grown);
    if (!grown) return zt_fail(ZT_ERR_NOMEM, "allocating %d per-example losses", n);
    o->contributions = grown;
    o->contributions_capacity = n;
    return ZT_OK;
}

/* Variant k's per-example contributions on micro-batch b, whose examples start at `first` of
 * the rank's, from its log-probabilities (or generations). */
static zt_status contribute(zt_task_objective *o, const zt_task_batch *b, int first,
                            const zt_variants *f1_variant, const float *logprobs, double *value,
                            double *weight) {
    if (o->kind == ZT_OBJECTIVE_F1) {
        for (int e = 0; e < b->n_examples; e++)
            weight[e] = 1.0;
        return negative_f1(o, b->n_examples, o->indices + first, f1_variant, value);
    }
    return zt_task_batch_contributions(b, logprobs, o->kind == ZT_OBJECTIVE_ACCURACY, value,
                                       weight);
}

static int micro_batches(const zt_task_objective *o) {
    return o->n_micro > 1 ? o->n_micro : 1;
}

/* Both evaluations fill o->contributions (2, K, n) for the variants they are given (this rank's
 * share of the step's) over the rank's n examples, micro-batch by micro-batch. */
static zt_status evaluate_shadow(zt_task_objective *o, const zt_param_set *ps,
                                 const zt_variant_set *vs, int n) {
    const int K = vs->n_variants;
    double *value = o->contributions, *weight = o->contributions + (size_t)K * n;
    for (int i = 0, first = 0; i < micro_batches(o); first += o->batch[i].n_examples, i++) {
        const zt_task_batch *b = &o->batch[i];
        if (o->kind == ZT_OBJECTIVE_F1) {
            /* generation reads the weights as stored, step by step */
            ZT_TRY(zt_zo_apply_pending(ps));
            for (int k = 0; k < K; k++) {
                zt_variants one = {1, &vs->variant[k], o->perturbed};
                ZT_TRY(contribute(o, b, first, &one, NULL, value + (size_t)k * n + first,
                                  weight + (size_t)k * n + first));
            }
            continue;
        }
        ZT_TRY(ensure_logprobs(o, K * b->n_targets));
        zt_batch mb = model_batch(b);
        zt_variants variants = {K, vs->variant, o->perturbed};
        /* the previous step's pending update goes into this sweep's staging (§2.5) */
        zt_workspace_set_pending(o->ws, ps->pending);
        zt_status s = zt_model_forward(o->model, o->ws, &mb, &variants, o->logprobs, NULL);
        zt_workspace_set_pending(o->ws, NULL);
        ZT_TRY(s);
        for (int k = 0; k < K; k++)
            ZT_TRY(contribute(o, b, first, NULL, o->logprobs + (size_t)k * b->n_targets,
                              value + (size_t)k * n + first, weight + (size_t)k * n + first));
    }
    return ZT_OK;
}

int zt_inplace_move_terms(const zt_perturbation *from, const zt_perturbation *to,
                          zt_direction *out) {
    int n = 0;
    for (int i = 0; to && i < to->n_terms; i++)
        out[n++] = to->terms[i];
    for (int i = 0; from && i < from->n_terms; i++) {
        int j = 0;
        while (j < n && out[j].seed != from->terms[i].seed)
            j++;
        if (j == n) out[n++] = (zt_direction){from->terms[i].seed, 0.0f};
        out[j].coeff -= from->terms[i].coeff;
    }
    return n;
}

static zt_status move_weights(const zt_param_set *ps, const zt_perturbation *from,
                              const zt_perturbation *to, zt_dist dist) {
    zt_direction terms[2 * ZT_MAX_DIRECTIONS];
    int n = zt_inplace_move_terms(from, to, terms);
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

static zt_status evaluate_inplace(zt_task_objective *o, const zt_param_set *ps,
                                  const zt_variant_set *vs, int n) {
    const int K = vs->n_variants;
    double *value = o->contributions, *weight = o->contributions + (size_t)K * n;
    const zt_perturbation *current = NULL;
    zt_dist dist = K > 0 ? vs->variant[0].dist : ZT_DIST_GAUSSIAN;
    for (int k = 0; k < K; k++) {
        ZT_TRY(move_weights(ps, current, &vs->variant[k], dist));
        current = &vs->variant[k];
        for (int i = 0, first = 0; i < micro_batches(o); first += o->batch[i].n_examples, i++) {
            const zt_task_batch *b = &o->batch[i];
            ZT_TRY(ensure_logprobs(o, b->n_targets));
            if (o->kind != ZT_OBJECTIVE_F1) {
                zt_batch mb = model_batch(b);
                ZT_TRY(zt_model_forward(o->model, o->ws, &mb, NULL, o->logprobs, NULL));
            }
            ZT_TRY(contribute(o, b, first, NULL, o->logprobs, value + (size_t)k * n + first,
                              weight + (size_t)k * n + first));
        }
    }
    return move_weights(ps, current, NULL, dist);
}

/* This rank's variants on its examples, then the K losses from every rank's contributions (one
 * process: all of them, reduced the same way). */
static zt_status evaluate(void *ctx, const zt_param_set *ps, const zt_variant_set *vs,
                          double *losses) {
    zt_task_objective *o = ctx;
    if (!o->batch) return zt_fail(ZT_ERR_INTERNAL, "objective evaluated without a batch");
    const int groups = o->direction_groups > 0 ? o->direction_groups : 1;
    int n = 0;
    for (int i = 0; i < micro_batches(o); i++)
        n += o->batch[i].n_examples;
    const int global = o->comm ? o->global_examples : n;
    zt_dp_layout me;
    ZT_TRY(zt_dp_layout_of(o->comm, groups, vs->n_variants, global, &me));
    if (me.n_examples != n)
        return zt_fail(ZT_ERR_INTERNAL, "rank's batch holds %d examples, its share is %d", n,
                       me.n_examples);
    zt_variant_set mine;
    mine.n_variants = me.n_variants;
    memcpy(mine.variant, vs->variant + me.first_variant,
           (size_t)me.n_variants * sizeof mine.variant[0]);
    ZT_TRY(ensure_contributions(o, me.n_variants > 0 ? me.n_variants : 1, n));
    if (me.n_variants > 0 && o->mode == ZT_PERTURB_SHADOW) {
        ZT_TRY(evaluate_shadow(o, ps, &mine, n));
    } else if (me.n_variants > 0) {
        ZT_TRY(zt_zo_apply_pending(ps)); /* in place moves the weights themselves */
        ZT_TRY(evaluate_inplace(o, ps, &mine, n));
    }
    return zt_dp_reduce_losses(o->comm, groups, vs->n_variants, global, o->contributions,
                               o->contributions + (size_t)me.n_variants * n, losses);
}

void zt_task_objective_bind(zt_task_objective *state, zt_objective *objective) {
    objective->ctx = state;
    objective->evaluate = evaluate;
}

void zt_task_objective_release(zt_task_objective *state) {
    free(state->logprobs);
    state->logprobs = NULL;
    state->logprobs_capacity = 0;
    free(state->contributions);
    state->contributions = NULL;
    state->contributions_capacity = 0;
}

zt_status zt_task_objective_loss(zt_task_objective *o, const zt_task_batch *batch, double *loss) {
    ZT_TRY(ensure_logprobs(o, batch->n_targets));
    zt_batch mb = model_batch(batch);
    ZT_TRY(zt_model_forward(o->model, o->ws, &mb, NULL, o->logprobs, NULL));
    return zt_task_batch_loss(batch, o->logprobs, loss);
}
