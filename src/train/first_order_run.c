/* One first-order step of a training run (first_order_run.h). */
#include "train/first_order_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "common/perturb_rng.h"
#include "core/status.h"

zt_status zt_fo_run_prepare(zt_run *r, int sequences, int seq_len) {
    zt_model *m = r->model;
    zt_backend *be = m->be;
    r->grad_offsets = zt_malloc((size_t)m->n_tensors * sizeof *r->grad_offsets);
    if (!r->grad_offsets) return zt_fail(ZT_ERR_NOMEM, "first-order run: gradient offsets");
    r->grads_floats = zt_model_grad_layout(m, r->grad_offsets);
    ZT_TRY(
        be->ops->alloc(be, r->grads_floats * sizeof(float), ZT_MEM_OPTIMIZER, (void **)&r->grads));
    return zt_grad_buffers_create(m, sequences, seq_len, r->o->fo.checkpoint_activations,
                                  &r->grad_buffers);
}

void zt_fo_run_release(zt_run *r) {
    zt_grad_buffers_free(r->grad_buffers);
    r->grad_buffers = NULL;
    if (r->grads)
        r->model->be->ops->free(r->model->be, r->grads, r->grads_floats * sizeof(float),
                                ZT_MEM_OPTIMIZER);
    r->grads = NULL;
    free(r->grad_offsets);
    r->grad_offsets = NULL;
}

/* The step's examples in `n` micro-batches of (nearly) equal size, each built as a task batch. */
static zt_status build_micro_batches(zt_run *r, zt_task_batch *mb, int n) {
    const int b = r->o->batch_size;
    for (int k = 0; k < n; k++) {
        const int first = (int)((long)b * k / n), end = (int)((long)b * (k + 1) / n);
        ZT_TRY(zt_task_batch_build(&r->train, r->indices + first, end - first,
                                   r->model->dims.pad_token_id, r->o->train_as_lm, &mb[k]));
    }
    return ZT_OK;
}

/* The loss of the step and its gradient into r->grads (zeroed first). */
static zt_status gradient(zt_run *r, zt_task_batch *mb, int n, double *loss) {
    zt_model *m = r->model;
    long total_targets = 0;
    int total_examples = 0;
    int most_targets = 0;
    for (int k = 0; k < n; k++) {
        total_targets += mb[k].n_targets;
        total_examples += mb[k].kind == ZT_TASK_CLASSIFICATION ? mb[k].n_examples : 0;
        if (mb[k].n_targets > most_targets) most_targets = mb[k].n_targets;
    }
    if (total_targets == 0) return zt_fail(ZT_ERR_INVALID_ARG, "a training batch without targets");
    ZT_TRY(zt_backend_zero(m->be, r->grads, r->grads_floats));
    float *weights = zt_malloc((size_t)most_targets * 2 * sizeof(float));
    if (!weights) return zt_fail(ZT_ERR_NOMEM, "first-order step: %d target weights", most_targets);
    float *logprobs = weights + most_targets;
    zt_status s = ZT_OK;
    *loss = 0.0;
    for (int k = 0; s == ZT_OK && k < n; k++) {
        const zt_task_batch *t = &mb[k];
        if (t->n_targets == 0) continue;
        const zt_batch batch = {t->n_sequences, t->seq_len,     t->input_ids, t->attention_mask,
                                t->n_targets,   t->target_rows, t->target_ids};
        const int classification = t->kind == ZT_TASK_CLASSIFICATION;
        /* The cross-entropy over candidates weighs each target by its candidate's probability,
         * which a forward gives first; the LM loss weighs every target alike. */
        if (classification) s = zt_model_forward(m, r->ws, &batch, NULL, logprobs, NULL);
        double share = 0.0, linear_loss = 0.0;
        if (s == ZT_OK)
            s = zt_fo_target_weights(t, classification ? logprobs : NULL, total_targets,
                                     total_examples, weights, &share);
        if (s == ZT_OK)
            s = zt_model_grad(m, r->grad_buffers, &batch, weights, r->grads, &linear_loss);
        *loss += classification ? share : linear_loss;
    }
    free(weights);
    return s;
}

zt_status zt_fo_run_step(zt_run *r, int step, zt_step_record *rec, int *skipped) {
    const zt_train_options *o = r->o;
    zt_backend *be = r->model->be;
    *skipped = 0;
    memset(rec, 0, sizeof *rec);
    rec->kind = ZT_RECORD_FO_STEP;
    rec->step = step;
    rec->n_variants = 1;
    snprintf(rec->fo_name, sizeof rec->fo_name, "%s", r->fo->name);

    const int n = o->fo.micro_batches;
    zt_task_batch *mb = zt_calloc((size_t)n, sizeof *mb);
    if (!mb) return zt_fail(ZT_ERR_NOMEM, "first-order step: %d micro-batches", n);
    double loss = 0.0;
    zt_status s = build_micro_batches(r, mb, n);
    if (s == ZT_OK) s = gradient(r, mb, n, &loss);
    for (int k = 0; k < n; k++)
        zt_task_batch_free(&mb[k]);
    free(mb);
    ZT_TRY(s);
    rec->losses[0] = loss;
    if (!isfinite(loss)) {
        if (o->skip_nonfinite) {
            *skipped = 1;
            rec->skip_reason = ZT_SKIP_NONFINITE_LOSS;
            return ZT_OK;
        }
        return zt_fail(ZT_ERR_NUMERIC,
                       "step %d: the loss is not finite; stopping (--on-nonfinite skip would skip "
                       "the step)",
                       step + 1);
    }

    /* The global norm over the trainable tensors, summed in table order. */
    double squares = 0.0;
    for (int i = 0; i < r->ps.n_params; i++) {
        const zt_param *p = &r->ps.params[i];
        double part = 0.0;
        ZT_TRY(
            be->ops->grad_sumsq(be, &part, r->grads + r->grad_offsets[p->tensor_id], p->n_elems));
        squares += part;
    }
    const double norm = sqrt(squares);
    const zt_phase *phase = &r->phases.phase[zt_phase_at(&r->phases, step)];
    zt_fo_update u = zt_fo_update_at(r->fo, &o->hp, &o->fo, step, o->steps, step - phase->start);
    /* torch.nn.utils.clip_grad_norm_'s factor */
    if (o->fo.clip_norm > 0.0 && norm > o->fo.clip_norm)
        u.grad_scale = (float)(o->fo.clip_norm / (norm + 1e-6));
    unsigned long long nonfinite = 0;
    u.n_nonfinite = &nonfinite;
    u.stochastic_rounding = o->stochastic_rounding;
    u.rounding_seed = zt_mix64(zt_step_seed(o->seed, step) ^ 0x5851F42D4C957F2Dull);
    r->weights_dirty = 1;
    for (int i = 0; i < r->ps.n_params; i++) {
        const zt_param *p = &r->ps.params[i];
        zt_fo_update ui = u;
        if (p->no_decay) ui.weight_decay = 0.0f;
        ZT_TRY(be->ops->fo_update(be, p->data, p->dtype, p->tensor_id, p->n_elems,
                                  r->grads + r->grad_offsets[p->tensor_id], p->state, &ui));
    }
    ZT_TRY(be->ops->sync(be));
    if (nonfinite > 0) {
        /* The state before this step is the snapshot's plus steps the log cannot replay, so the
         * run stops there, even with --on-nonfinite skip; --resume makes those steps again. */
        ZT_TRY(zt_run_restore_logged_state(r));
        return zt_fail(ZT_ERR_NUMERIC,
                       "step %d: the update left %llu weights non-finite (lower --lr, or "
                       "--clip-grad-norm?); the run is back at its last snapshot",
                       step + 1, nonfinite);
    }
    rec->update.lr = u.lr;
    rec->update.step_size = u.lr;
    rec->update.projected_grad = norm;
    return ZT_OK;
}
