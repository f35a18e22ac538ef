/* The ZO step and the update alone. The engine turns a policy's plan into per-variant
 * perturbations (folding the sphere's 1/||z|| into the coefficients, so records and replay
 * never need a norm pass), asks the objective for the K losses, and applies the update to every
 * trainable tensor with one regeneration of z. */
#include "zo/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "core/status.h"

uint64_t zt_step_seed(uint64_t run_seed, int step) {
    return zt_mix64(zt_mix64(run_seed) ^ (0xD1B54A32D192ED03ull * (uint64_t)(step + 1)));
}

zt_status zt_param_set_alloc_state(zt_param_set *ps, int state_copies) {
    if (state_copies == 0) return ZT_OK;
    zt_backend *be = ps->be;
    enum { ZERO_CHUNK = 1 << 16 };
    float *zeros = zt_calloc(ZERO_CHUNK, sizeof *zeros);
    if (!zeros) return zt_fail(ZT_ERR_NOMEM, "allocating a zero buffer");
    zt_status s = ZT_OK;
    for (int i = 0; s == ZT_OK && i < ps->n_params; i++) {
        zt_param *p = &ps->params[i];
        size_t n = (size_t)state_copies * p->n_elems;
        s = be->ops->alloc(be, n * sizeof(float), ZT_MEM_OPTIMIZER, (void **)&p->state);
        for (size_t at = 0; s == ZT_OK && at < n; at += ZERO_CHUNK) {
            size_t count = n - at < ZERO_CHUNK ? n - at : ZERO_CHUNK;
            s = be->ops->upload(be, p->state + at, zeros, count * sizeof(float));
        }
    }
    free(zeros);
    if (s != ZT_OK) zt_param_set_free_state(ps, state_copies);
    return s;
}

void zt_param_set_free_state(zt_param_set *ps, int state_copies) {
    for (int i = 0; i < ps->n_params; i++) {
        zt_param *p = &ps->params[i];
        if (!p->state) continue;
        ps->be->ops->free(ps->be, p->state, (size_t)state_copies * p->n_elems * sizeof(float),
                          ZT_MEM_OPTIMIZER);
        p->state = NULL;
    }
}

static zt_dist backend_dist(zt_direction_dist dist) {
    return dist == ZT_DIRECTIONS_RADEMACHER ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
}

/* ||z_seed|| over every trainable element: one regeneration pass per direction. A pipeline
 * stage's partials are summed over the stages (zt_param_set.sum_over_stages). */
static zt_status direction_norm(const zt_param_set *ps, uint64_t seed, double *norm) {
    *norm = 0.0;
    double *partials = zt_calloc((size_t)ps->n_params + 1, sizeof *partials);
    if (!partials) return zt_fail(ZT_ERR_NOMEM, "the sphere norm's %d partials", ps->n_params);
    zt_status s = ZT_OK;
    for (int i = 0; s == ZT_OK && i < ps->n_params; i++)
        s = ps->be->ops->z_sumsq(ps->be, &partials[i], seed, ps->params[i].tensor_id,
                                 ps->params[i].n_elems, ZT_DIST_GAUSSIAN);
    double total = 0.0;
    if (s == ZT_OK && ps->sum_over_stages)
        s = ps->sum_over_stages(ps->stages_ctx, ps, partials, &total);
    else
        for (int i = 0; i < ps->n_params; i++)
            total += partials[i];
    free(partials);
    ZT_TRY(s);
    *norm = sqrt(total);
    if (!(*norm > 0.0))
        return zt_fail(ZT_ERR_NUMERIC, "sphere direction with seed %llu has zero norm",
                       (unsigned long long)seed);
    return ZT_OK;
}

/* Rescales coefficients of sphere directions from units of u = z/||z|| to units of z. */
static void fold_norms(zt_direction *terms, int n_terms, const zt_step_plan *plan,
                       const double *inverse_norm) {
    for (int t = 0; t < n_terms; t++)
        for (int d = 0; d < plan->n_directions; d++)
            if (terms[t].seed == plan->seeds[d]) {
                terms[t].coeff = (float)((double)terms[t].coeff * inverse_norm[d]);
                break;
            }
}

/* Evaluates the variants of one round (sphere norms folded in); losses[k] for each. */
static zt_status evaluate_round(zt_objective *obj, zt_param_set *ps, const zt_step_plan *plan,
                                const double *inverse_norm, int step, int first_variant,
                                double *losses) {
    zt_step_plan scaled = *plan;
    zt_variant_set variants;
    variants.n_variants = plan->n_variants;
    for (int k = 0; k < plan->n_variants; k++) {
        fold_norms(scaled.terms[k], scaled.n_terms[k], plan, inverse_norm);
        variants.variant[k] =
            (zt_perturbation){scaled.terms[k], scaled.n_terms[k], backend_dist(plan->dist), 1.0f};
    }
    ZT_TRY(obj->evaluate(obj->ctx, ps, &variants, losses));
    for (int k = 0; k < plan->n_variants; k++)
        if (!isfinite(losses[k]))
            return zt_fail(ZT_ERR_NUMERIC, "step %d: variant %d has a non-finite loss (%g)", step,
                           first_variant + k, losses[k]);
    return ZT_OK;
}

zt_status zt_zo_step_record(zt_optimizer *optimizer, zt_param_set *ps, zt_objective *obj, int step,
                            const zt_engine_options *options, zt_step_record *record) {
    memset(record, 0, sizeof *record);
    uint64_t step_seed = zt_step_seed(options->run_seed, step);
    zt_step_plan plan;
    ZT_TRY(zt_optimizer_plan(optimizer, step, step_seed, &plan));

    double inverse_norm[ZT_MAX_DIRECTIONS];
    for (int d = 0; d < plan.n_directions; d++)
        inverse_norm[d] = 1.0;
    if (plan.dist == ZT_DIRECTIONS_SPHERE)
        for (int d = 0; d < plan.n_directions; d++) {
            double norm;
            ZT_TRY(direction_norm(ps, plan.seeds[d], &norm));
            inverse_norm[d] = 1.0 / norm;
        }

    double losses[ZT_MAX_VARIANTS];
    ZT_TRY(evaluate_round(obj, ps, &plan, inverse_norm, step, 0, losses));
    /* the previous step's deferred update, wherever the sweep did not take it */
    ZT_TRY(zt_zo_apply_pending(ps));
    zt_step_plan more;
    if (zt_optimizer_extend(optimizer, step, &plan, losses, &more)) {
        ZT_TRY(evaluate_round(obj, ps, &more, inverse_norm, step, plan.n_variants,
                              losses + plan.n_variants));
        ZT_TRY(zt_optimizer_append(&plan, &more));
    }

    zt_step_update update;
    ZT_TRY(zt_optimizer_finish(optimizer, step, &plan, losses, &update));
    fold_norms(update.terms, update.n_terms, &plan, inverse_norm);

    record->step = step;
    record->step_seed = step_seed;
    record->n_variants = plan.n_variants;
    memcpy(record->losses, losses, (size_t)plan.n_variants * sizeof(double));
    record->dist = plan.dist;
    record->update = update;
    record->stochastic_rounding = options->stochastic_rounding;
    record->rounding_seed = zt_mix64(step_seed ^ 0x5851F42D4C957F2Dull);
    return ZT_OK;
}

zt_status zt_zo_step(zt_optimizer *optimizer, zt_param_set *ps, zt_objective *obj, int step,
                     const zt_engine_options *options, zt_step_record *record) {
    ZT_TRY(zt_zo_step_record(optimizer, ps, obj, step, options, record));
    return zt_zo_apply_update(ps, record);
}

zt_status zt_zo_apply_update(zt_param_set *ps, const zt_step_record *record) {
    unsigned long long n_nonfinite = 0;
    ZT_TRY(zt_zo_apply_update_counted(ps, record, &n_nonfinite));
    if (n_nonfinite > 0)
        return zt_fail(ZT_ERR_NUMERIC, "step %d: the update left %llu of %llu weights non-finite",
                       record->step, n_nonfinite, (unsigned long long)ps->n_elems);
    return ZT_OK;
}

/* Whether a record's update moves nothing (e.g. STP staying put). */
static int update_is_still(const zt_step_update *up) {
    return up->n_terms == 0 && up->rule != ZT_UPDATE_MOMENTUM && up->rule != ZT_UPDATE_ADAMM &&
           up->weight_decay == 0.0;
}

/* The backend's update for a record, weight decay and the count left to the caller. */
static zt_update update_of(const zt_step_record *record) {
    const zt_step_update *up = &record->update;
    zt_update u;
    memset(&u, 0, sizeof u);
    u.grad = (zt_perturbation){up->terms, up->n_terms, backend_dist(record->dist), 1.0f};
    u.rule = up->rule;
    u.lr = (float)up->lr;
    u.beta1 = (float)up->beta1;
    u.beta2 = (float)up->beta2;
    u.eps = (float)up->adam_eps;
    u.stochastic_rounding = record->stochastic_rounding;
    u.rounding_seed = record->rounding_seed;
    return u;
}

zt_status zt_zo_defer_update(zt_param_set *ps, zt_deferred_update *d,
                             const zt_step_record *record) {
    if (d->active)
        return zt_fail(ZT_ERR_INTERNAL, "step %d: the update of step %d is still pending",
                       record->step, d->record.step);
    zt_pending_update *pu = &d->pending;
    int n_tensors = 0;
    for (int i = 0; i < ps->n_params; i++)
        if ((int)ps->params[i].tensor_id + 1 > n_tensors)
            n_tensors = (int)ps->params[i].tensor_id + 1;
    if (n_tensors > pu->n_tensors) {
        zt_deferred_update_free(d);
        pu->waiting = zt_calloc((size_t)n_tensors, sizeof *pu->waiting);
        pu->state = zt_calloc((size_t)n_tensors, sizeof *pu->state);
        pu->decay = zt_calloc((size_t)n_tensors, sizeof *pu->decay);
        pu->uncounted = zt_calloc((size_t)n_tensors, sizeof *pu->uncounted);
        if (!pu->waiting || !pu->state || !pu->decay || !pu->uncounted) {
            zt_deferred_update_free(d);
            return zt_fail(ZT_ERR_NOMEM, "the pending update of %d tensors", n_tensors);
        }
        pu->n_tensors = n_tensors;
    }
    d->record = *record;
    d->active = 1;
    pu->update = update_of(&d->record);
    pu->n_nonfinite = 0;
    memset(pu->waiting, 0, (size_t)pu->n_tensors);
    if (update_is_still(&record->update)) return ZT_OK;
    for (int i = 0; i < ps->n_params; i++) {
        const zt_param *p = &ps->params[i];
        pu->waiting[p->tensor_id] = 1;
        pu->state[p->tensor_id] = p->state;
        pu->decay[p->tensor_id] = p->no_decay ? 0.0f : (float)record->update.weight_decay;
        pu->uncounted[p->tensor_id] = (uint8_t)(p->uncounted != 0);
    }
    ps->pending = pu;
    return ZT_OK;
}

zt_status zt_zo_apply_pending(const zt_param_set *ps) {
    zt_pending_update *pu = ps->pending;
    if (!pu) return ZT_OK;
    for (int i = 0; i < ps->n_params; i++) {
        const zt_param *p = &ps->params[i];
        zt_status s =
            zt_pending_apply_alone(ps->be, pu, (int)p->tensor_id, p->data, p->dtype, p->n_elems);
        if (s != ZT_OK) return zt_fail_context(s, "the pending update, tensor %s: ", p->name);
    }
    return ZT_OK;
}

zt_status zt_zo_settle_deferred(zt_param_set *ps, zt_deferred_update *d,
                                unsigned long long *n_nonfinite) {
    *n_nonfinite = 0;
    if (!d->active) return ZT_OK;
    ZT_TRY(zt_zo_apply_pending(ps));
    ZT_TRY(ps->be->ops->sync(ps->be)); /* the count is complete after it (backend.h) */
    *n_nonfinite = d->pending.n_nonfinite;
    ps->pending = NULL;
    d->active = 0;
    return ZT_OK;
}

void zt_zo_drop_deferred(zt_param_set *ps, zt_deferred_update *d) {
    ps->pending = NULL;
    d->active = 0;
}

void zt_deferred_update_free(zt_deferred_update *d) {
    free(d->pending.waiting);
    free(d->pending.state);
    free(d->pending.decay);
    free(d->pending.uncounted);
    d->pending.waiting = NULL;
    d->pending.state = NULL;
    d->pending.decay = NULL;
    d->pending.uncounted = NULL;
    d->pending.n_tensors = 0;
}

zt_status zt_zo_apply_update_counted(zt_param_set *ps, const zt_step_record *record,
                                     unsigned long long *n_nonfinite) {
    *n_nonfinite = 0;
    const zt_step_update *up = &record->update;
    if (update_is_still(up)) return ZT_OK;
    zt_update u = update_of(record);
    u.n_nonfinite = n_nonfinite;
    for (int i = 0; i < ps->n_params; i++) {
        zt_param *p = &ps->params[i];
        u.weight_decay = p->no_decay ? 0.0f : (float)up->weight_decay;
        u.n_nonfinite = p->uncounted ? NULL : n_nonfinite;
        zt_status s =
            ps->be->ops->update(ps->be, p->data, p->dtype, p->tensor_id, p->n_elems, p->state, &u);
        if (s != ZT_OK) return zt_fail_context(s, "step %d, tensor %s: ", record->step, p->name);
    }
    return ps->be->ops->sync(ps->be); /* the count is complete after it (backend.h) */
}
