/* The K-variant forward over a padded batch (docs/design.md §2.3, shadow mode): one sweep over
 * the layers for all K weight variants. A layer runs op by op for all variants together: each
 * perturbed tensor is staged for every variant from one draw of its z (perturb_variants), and
 * the K residual streams and their temporaries are kept side by side. The tables a family
 * gathers from are read perturbed row by row instead, so only the batch's rows are touched. The
 * head runs groups of up to ZT_HEAD_GROUP_VARIANTS variants (models/model.h) the same way: its
 * input ops for the group together, then its table (the token table when tied) staged whole for
 * the group from one draw into table slots of its own (models/workspace.h), then each variant's
 * GEMMs on its copy; a pipeline stage and a cached forward run it for one variant at a time.
 * Only the rows that carry a target go through the head, the largest GEMM. The family's layer
 * code (models/arch.h) runs between the embedding and the head. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/status.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "workspace.h"

zt_weight zt_model_weight(const zt_model *m, int id) {
    zt_weight w = {NULL, ZT_F32};
    if (id >= 0 && !m->tensors[id].absent) {
        w.data = (const char *)m->weights + m->tensors[id].offset;
        w.dtype = m->tensors[id].dtype;
    }
    return w;
}

/* ---- what the family's layer code reads and writes ---- */

float *zt_sweep_stream(const zt_sweep *sw) {
    size_t n = (size_t)sw->batch->batch * (size_t)sw->batch->seq_len;
    size_t h = (size_t)sw->model->dims.hidden_size;
    return (float *)(sw->ws->base + sw->ws->layout.x) + (size_t)sw->variant * n * h;
}

float *zt_sweep_layer_buffer(const zt_sweep *sw, int i) {
    return (float *)(sw->ws->base + sw->ws->layout.layer[i] +
                     (size_t)sw->variant * sw->ws->layout.layer_stride);
}

float *zt_sweep_head_buffer(const zt_sweep *sw, int i) {
    return (float *)(sw->ws->base + sw->ws->layout.head[i]);
}

const int32_t *zt_sweep_token_ids(const zt_sweep *sw) {
    return (const int32_t *)(sw->ws->base + sw->ws->layout.ids);
}

const int32_t *zt_sweep_position_rows(const zt_sweep *sw) {
    return (const int32_t *)(sw->ws->base + sw->ws->layout.pos);
}

const int32_t *zt_sweep_key_mask(const zt_sweep *sw) {
    return (const int32_t *)(sw->ws->base + sw->ws->layout.mask);
}

/* The perturbation of tensor `id` in the current variant, or NULL when it reads as stored. */
static const zt_perturbation *variant_perturbation(const zt_sweep *sw, int id) {
    const zt_variants *v = sw->variants;
    if (id < 0 || !v) return NULL;
    const zt_perturbation *p = &v->perturbation[sw->variant];
    if (p->n_terms == 0 || (v->perturbed && !v->perturbed[id])) return NULL;
    return p;
}

/* ---- the pending update (model.h: zt_pending_update) ---- */

void zt_workspace_set_pending(zt_workspace *ws, zt_pending_update *pending) {
    ws->pending = pending;
}

static zt_pending_update *pending_of(const zt_sweep *sw) {
    return sw->ws->pending;
}

/* Tensor id's pending update applied alone, before anything reads it as stored. */
static zt_status settle_alone(const zt_sweep *sw, int id) {
    zt_pending_update *pu = pending_of(sw);
    if (!zt_pending_waits(pu, id)) return ZT_OK;
    const zt_model *m = sw->model;
    const zt_tensor_info *t = &m->tensors[id];
    zt_status s =
        zt_pending_apply_alone(m->be, pu, id, (char *)m->weights + t->offset, t->dtype, t->n_elems);
    if (s != ZT_OK) return zt_fail_context(s, "the pending update of %s: ", t->name);
    return ZT_OK;
}

/* The n staged variants p (n >= 1) of elements [first, first + count) of tensor id (all of it, or
 * a block of the head table's rows) into dst: perturb_variants (perturb for one), or, while id
 * waits for the pending update, that update fused into the same pass (whole tensors only: a
 * block's table is settled first). */
static zt_status stage_variants(const zt_sweep *sw, int id, size_t first, size_t count,
                                void *const *dst, zt_dtype staged, const zt_perturbation *p,
                                int n) {
    const zt_model *m = sw->model;
    const zt_tensor_info *t = &m->tensors[id];
    zt_pending_update *pu = pending_of(sw);
    if (zt_pending_waits(pu, id)) {
        if (first != 0 || count != t->n_elems)
            return zt_fail(ZT_ERR_INTERNAL, "forward: a slice of %s staged with its update pending",
                           t->name);
        const zt_update u = zt_pending_update_of(pu, id);
        zt_status s = m->be->ops->update_perturb_variants(m->be, (char *)m->weights + t->offset,
                                                          t->dtype, (uint32_t)id, t->n_elems,
                                                          pu->state[id], &u, dst, staged, p, n);
        if (s != ZT_OK) return zt_fail_context(s, "the pending update of %s: ", t->name);
        pu->waiting[id] = 0;
        return ZT_OK;
    }
    const zt_weight slice = zt_weight_member(zt_model_weight(m, id), first, 1);
    if (n == 1)
        return m->be->ops->perturb(m->be, dst[0], staged, slice, (uint32_t)id, first, count, &p[0]);
    return m->be->ops->perturb_variants(m->be, dst, staged, slice, (uint32_t)id, first, count, p,
                                        n);
}

/* zt_sweep_weight with the copy `offset` bytes into variant 0's slot (zt_sweep_linear_shared_input
 * stages its weights side by side). */
static zt_status sweep_weight_at(const zt_sweep *sw, int id, zt_stage_slot slot, size_t offset,
                                 zt_weight *out);

/* A perturbed copy is staged in f32, or in the stored half dtype when the GEMMs take half
 * inputs. */
zt_status zt_sweep_weight(const zt_sweep *sw, int id, zt_stage_slot slot, zt_weight *out) {
    return sweep_weight_at(sw, id, slot, 0, out);
}

static zt_status sweep_weight_at(const zt_sweep *sw, int id, zt_stage_slot slot, size_t offset,
                                 zt_weight *out) {
    const zt_model *m = sw->model;
    *out = zt_model_weight(m, id);
    const zt_perturbation *p = variant_perturbation(sw, id);
    if (!p) return settle_alone(sw, id);
    if (!sw->ws->staging)
        return zt_fail(ZT_ERR_INVALID_ARG, "forward: perturbed variants need a staging workspace");
    const zt_tensor_info *t = &m->tensors[id];
    if (id < zt_model_first_staged(m))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "forward: %s is a base weight of a model with adapters (LoRA or a prompt "
                       "table), whose variants perturb only its adapters",
                       t->name);
    const zt_dtype staged = zt_backend_stage_dtype(m->be, t->dtype);
    if (zt_dtype_size(staged) > sw->ws->layout.stage_elem_bytes)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "forward: %s is staged in %s, wider than the workspace was planned for "
                       "(the GEMM precision changed after the workspace was created)",
                       t->name, zt_dtype_name(staged));
    const zt_workspace_layout *L = &sw->ws->layout;
    const size_t capacity = slot == ZT_STAGE_MAIN ? L->stage_main_bytes : L->stage_aux_bytes;
    if (offset + t->n_elems * zt_dtype_size(staged) > capacity)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "forward: %s staged in %s at %zu bytes does not fit variant 0's %s slot "
                       "(%zu bytes)",
                       t->name, zt_dtype_name(staged), offset,
                       slot == ZT_STAGE_MAIN ? "main" : "aux", capacity);
    void *shadow =
        sw->ws->staging + (slot == ZT_STAGE_MAIN ? L->stage_main : L->stage_aux) + offset;
    void *const dst[1] = {shadow};
    ZT_TRY(stage_variants(sw, id, 0, t->n_elems, dst, staged, p, 1));
    out->data = shadow;
    out->dtype = staged;
    return ZT_OK;
}

zt_status zt_sweep_gather(const zt_sweep *sw, int id, zt_gather_perturbation *storage,
                          const zt_gather_perturbation **out) {
    *out = NULL;
    ZT_TRY(settle_alone(sw, id));
    const zt_perturbation *p = variant_perturbation(sw, id);
    if (!p) return ZT_OK;
    storage->p = p;
    storage->tensor_id = (uint32_t)id;
    storage->stage_dtype = zt_backend_stage_dtype(sw->model->be, sw->model->tensors[id].dtype);
    *out = storage;
    return ZT_OK;
}

/* ---- ops for every variant advanced together ---- */

/* Variants a layer advances at once; beyond this, one at a time (the same results). */
enum { ZT_SWEEP_MAX_TOGETHER = 16 };

static int together(const zt_sweep *sw) {
    return sw->n_together > 1 ? sw->n_together : 1;
}

/* Variant sw->variant + k's copy of a buffer the layer (or head) code holds for sw->variant: its
 * residual stream, its layer temporaries, or in a head group its head rows and temporaries;
 * anything else (masks, ids) is shared by the variants. */
static float *variant_buffer(const zt_sweep *sw, const void *p, int k) {
    const zt_workspace_layout *L = &sw->ws->layout;
    const char *at = (const char *)p;
    const size_t stream_bytes = (size_t)sw->batch->batch * (size_t)sw->batch->seq_len *
                                (size_t)sw->model->dims.hidden_size * sizeof(float);
    const char *stream = (const char *)zt_sweep_stream(sw);
    const char *layer = sw->ws->base + L->layer[0] + (size_t)sw->variant * L->layer_stride;
    const char *hid = sw->ws->base + L->hid, *head = sw->ws->base + L->heads;
    size_t shift = 0;
    if (at >= stream && at < stream + stream_bytes)
        shift = stream_bytes;
    else if (at >= layer && at < layer + L->layer_stride)
        shift = L->layer_stride;
    else if (at >= hid && at < hid + L->hid_stride)
        shift = L->hid_stride;
    else if (at >= head && at < head + L->head_stride)
        shift = L->head_stride;
    return (float *)(at + (size_t)k * shift);
}

/* Where stage_group puts variant sw->variant + k's copy: a layer's slots (variant 0's own, the
 * region's for the others), or the head table's slots in the region. */
typedef enum stage_place { STAGE_LAYER_MAIN, STAGE_LAYER_AUX, STAGE_HEAD_TABLE } stage_place;

static char *stage_slot(const zt_sweep *sw, stage_place place, int k) {
    const zt_workspace_layout *L = &sw->ws->layout;
    char *region = sw->ws->staging + L->stage_variants;
    if (place == STAGE_HEAD_TABLE) return region + (size_t)k * L->stage_head_stride;
    if (k == 0) return sw->ws->staging + (place == STAGE_LAYER_MAIN ? L->stage_main : L->stage_aux);
    return region + (size_t)(k - 1) * L->stage_variant_stride +
           (place == STAGE_LAYER_MAIN ? 0 : L->stage_variant_aux);
}

/* Bytes a variant's slot holds at `place` (variant 0's layer slots are checked by
 * zt_sweep_weight). */
static size_t stage_capacity(const zt_sweep *sw, stage_place place) {
    const zt_workspace_layout *L = &sw->ws->layout;
    if (place == STAGE_HEAD_TABLE) return L->stage_head_stride;
    return place == STAGE_LAYER_MAIN ? L->stage_variant_aux
                                     : L->stage_variant_stride - L->stage_variant_aux;
}

/* Elements [first, first + count) of tensor `id` (count 0: all of it; a part only for the head
 * table's blocks) as each of n variants from sw->variant on sees them (w[k] for variant
 * sw->variant + k): the master weight's, or a copy staged for all of them from one draw into
 * variant k's slot at `place`, `offset` bytes in. */
static zt_status stage_group_at(const zt_sweep *sw, int id, stage_place place, size_t offset,
                                size_t first, size_t count, int n, zt_weight *w /* (n) */) {
    if (n == 1 && place != STAGE_HEAD_TABLE)
        return sweep_weight_at(sw, id, place == STAGE_LAYER_MAIN ? ZT_STAGE_MAIN : ZT_STAGE_AUX,
                               offset, &w[0]);
    const zt_model *m = sw->model;
    const zt_workspace_layout *L = &sw->ws->layout;
    zt_perturbation p[ZT_SWEEP_MAX_TOGETHER];
    void *dst[ZT_SWEEP_MAX_TOGETHER];
    int staged_variant[ZT_SWEEP_MAX_TOGETHER], n_staged = 0;
    zt_sweep one = *sw;
    one.n_together = 1;
    for (int k = 0; k < n; k++) {
        w[k] = zt_weight_member(zt_model_weight(m, id), first, 1);
        one.variant = sw->variant + k;
        const zt_perturbation *pk = variant_perturbation(&one, id);
        if (!pk) continue;
        p[n_staged] = *pk;
        staged_variant[n_staged++] = k;
    }
    if (n_staged == 0) return settle_alone(sw, id);
    if (!sw->ws->staging)
        return zt_fail(ZT_ERR_INVALID_ARG, "forward: perturbed variants need a staging workspace");
    const zt_tensor_info *t = &m->tensors[id];
    if (id < zt_model_first_staged(m))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "forward: %s is a base weight of a model with adapters (LoRA or a prompt "
                       "table), whose variants perturb only its adapters",
                       t->name);
    if (count == 0) count = t->n_elems;
    const zt_dtype staged = zt_backend_stage_dtype(m->be, t->dtype);
    const size_t bytes = offset + count * zt_dtype_size(staged);
    const size_t capacity = stage_capacity(sw, place);
    if (zt_dtype_size(staged) > L->stage_elem_bytes || bytes > capacity ||
        (place == STAGE_HEAD_TABLE && n > L->head_group))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "forward: %s staged in %s for %d variants does not fit the workspace's "
                       "slots for %s (%zu bytes, %d variants)",
                       t->name, zt_dtype_name(staged), n,
                       place == STAGE_HEAD_TABLE ? "the head table" : "a layer's variants",
                       capacity,
                       place == STAGE_HEAD_TABLE ? L->head_group : sw->ws->shape.max_variants);
    for (int i = 0; i < n_staged; i++) {
        const int k = staged_variant[i];
        char *slot_k = stage_slot(sw, place, k) + offset;
        dst[i] = slot_k;
        w[k].data = slot_k;
        w[k].dtype = staged;
    }
    return stage_variants(sw, id, first, count, dst, staged, p, n_staged);
}

static zt_status stage_group(const zt_sweep *sw, int id, stage_place place, int n,
                             zt_weight *w /* (n) */) {
    return stage_group_at(sw, id, place, 0, 0, 0, n, w);
}

zt_status zt_sweep_linear(const zt_sweep *sw, float *out, const float *in, int weight, int bias,
                          int n_rows, int in_features, int out_features, int relu) {
    zt_weight w[ZT_SWEEP_MAX_TOGETHER], b[ZT_SWEEP_MAX_TOGETHER];
    ZT_TRY(stage_group(sw, weight, STAGE_LAYER_MAIN, together(sw), w));
    ZT_TRY(stage_group(sw, bias, STAGE_LAYER_AUX, together(sw), b));
    zt_backend *be = sw->model->be;
    for (int k = 0; k < together(sw); k++)
        ZT_TRY(be->ops->linear(be, variant_buffer(sw, out, k), variant_buffer(sw, in, k), w[k],
                               b[k], n_rows, in_features, out_features, relu));
    return ZT_OK;
}

zt_dtype zt_sweep_half_input(const zt_sweep *sw, const int *weights, int n_weights) {
    const zt_model *m = sw->model;
    if (m->be->gemm != ZT_GEMM_HALF || !zt_backend_has_half_activations(m->be) || n_weights < 1)
        return ZT_F32;
    /* Under half GEMMs a weight is read in its stored dtype, staged or not
     * (zt_backend_stage_dtype); linear rounds its input to that dtype. */
    const zt_dtype first = weights[0] >= 0 ? m->tensors[weights[0]].dtype : ZT_F32;
    if (first != ZT_F16 && first != ZT_BF16) return ZT_F32;
    for (int i = 0; i < n_weights; i++)
        if (weights[i] < 0 || m->tensors[weights[i]].absent ||
            m->tensors[weights[i]].dtype != first)
            return ZT_F32;
    return first;
}

zt_status zt_sweep_round_half(const zt_sweep *sw, void *dst, zt_dtype dtype, const float *src,
                              size_t n_elems) {
    zt_backend *be = sw->model->be;
    for (int k = 0; k < together(sw); k++)
        ZT_TRY(be->ops->round_half(be, variant_buffer(sw, dst, k), dtype,
                                   variant_buffer(sw, src, k), n_elems));
    return ZT_OK;
}

/* linear_half_in (f32 out) or linear_half_out (out rounded to the weight's dtype) per variant */
static zt_status sweep_half_linear(const zt_sweep *sw, void *out, const void *in, int weight,
                                   int bias, int n_rows, int in_features, int out_features,
                                   int relu, int half_out) {
    zt_weight w[ZT_SWEEP_MAX_TOGETHER], b[ZT_SWEEP_MAX_TOGETHER];
    ZT_TRY(stage_group(sw, weight, STAGE_LAYER_MAIN, together(sw), w));
    ZT_TRY(stage_group(sw, bias, STAGE_LAYER_AUX, together(sw), b));
    zt_backend *be = sw->model->be;
    for (int k = 0; k < together(sw); k++) {
        void *out_k = variant_buffer(sw, out, k);
        const void *in_k = variant_buffer(sw, in, k);
        ZT_TRY(half_out ? be->ops->linear_half_out(be, out_k, in_k, w[k], b[k], n_rows, in_features,
                                                   out_features, relu)
                        : be->ops->linear_half_in(be, out_k, in_k, w[k], b[k], n_rows, in_features,
                                                  out_features, relu));
    }
    return ZT_OK;
}

zt_status zt_sweep_linear_half_in(const zt_sweep *sw, float *out, const void *in, int weight,
                                  int bias, int n_rows, int in_features, int out_features,
                                  int relu) {
    return sweep_half_linear(sw, out, in, weight, bias, n_rows, in_features, out_features, relu, 0);
}

zt_status zt_sweep_linear_half_out(const zt_sweep *sw, void *out, const void *in, int weight,
                                   int bias, int n_rows, int in_features, int out_features,
                                   int relu) {
    return sweep_half_linear(sw, out, in, weight, bias, n_rows, in_features, out_features, relu, 1);
}

/* Bytes between the staged copies of tensors like `id` laid side by side in a slot. */
static size_t staged_step(const zt_model *m, int id) {
    const zt_tensor_info *t = &m->tensors[id];
    const size_t bytes = t->n_elems * zt_dtype_size(zt_backend_stage_dtype(m->be, t->dtype));
    return (bytes + 255u) / 256u * 256u;
}

/* The common distance of count pointers from the first, in elements of elem bytes; 0 when they
 * are not evenly spaced upwards. */
static size_t even_stride(const void *const *p, int count, size_t elem) {
    const ptrdiff_t step = (const char *)p[1] - (const char *)p[0];
    if (step <= 0 || (size_t)step % elem != 0) return 0;
    for (int i = 2; i < count; i++)
        if ((const char *)p[i] - (const char *)p[i - 1] != step) return 0;
    return (size_t)step / elem;
}

zt_status zt_sweep_linear_shared_input(const zt_sweep *sw, float *const *outs, const void *in,
                                       zt_dtype in_dtype, const int *weights, const int *biases,
                                       int count, int n_rows, int in_features, int out_features) {
    const zt_model *m = sw->model;
    zt_backend *be = m->be;
    const zt_workspace_layout *L = &sw->ws->layout;
    if (count < 1 || count > ZT_SWEEP_MAX_SHARED)
        return zt_fail(ZT_ERR_INTERNAL, "forward: %d linears on one input (at most %d)", count,
                       ZT_SWEEP_MAX_SHARED);
    /* side by side in the layer's slots, if they fit there */
    const size_t w_step = staged_step(m, weights[0]);
    const size_t b_step = biases[0] >= 0 ? staged_step(m, biases[0]) : 0;
    int fits = count > 1;
    for (int i = 0; i < count && fits; i++) {
        const zt_tensor_info *t = &m->tensors[weights[i]];
        fits = t->n_elems == m->tensors[weights[0]].n_elems &&
               t->dtype == m->tensors[weights[0]].dtype && (biases[i] >= 0) == (biases[0] >= 0);
    }
    /* the slots must hold them only where they may be staged: a model with adapters (LoRA, a
     * prompt) reads its base weights as stored, and sizes its slots by the adapters */
    int stageable = 0;
    for (int i = 0; i < count; i++)
        stageable |= weights[i] >= zt_model_first_staged(m);
    if (fits && sw->ws->staging && stageable) {
        const size_t main_room = L->stage_main_bytes, aux_room = L->stage_aux_bytes;
        fits = (size_t)count * w_step <= main_room && (size_t)count * b_step <= aux_room;
    }
    if (!fits) {
        for (int i = 0; i < count; i++)
            ZT_TRY(in_dtype == ZT_F32
                       ? zt_sweep_linear(sw, outs[i], in, weights[i], biases[i], n_rows,
                                         in_features, out_features, 0)
                       : zt_sweep_linear_half_in(sw, outs[i], in, weights[i], biases[i], n_rows,
                                                 in_features, out_features, 0));
        return ZT_OK;
    }
    const int n = together(sw);
    zt_weight w[ZT_SWEEP_MAX_SHARED][ZT_SWEEP_MAX_TOGETHER];
    zt_weight b[ZT_SWEEP_MAX_SHARED][ZT_SWEEP_MAX_TOGETHER];
    for (int i = 0; i < count; i++) {
        ZT_TRY(stage_group_at(sw, weights[i], STAGE_LAYER_MAIN, (size_t)i * w_step, 0, 0, n, w[i]));
        ZT_TRY(stage_group_at(sw, biases[i], STAGE_LAYER_AUX, (size_t)i * b_step, 0, 0, n, b[i]));
    }
    for (int k = 0; k < n; k++) {
        const void *in_k = variant_buffer(sw, in, k);
        const void *w_at[ZT_SWEEP_MAX_SHARED], *b_at[ZT_SWEEP_MAX_SHARED],
            *out_at[ZT_SWEEP_MAX_SHARED];
        int same_dtypes = 1;
        for (int i = 0; i < count; i++) {
            w_at[i] = w[i][k].data;
            b_at[i] = b[i][k].data;
            out_at[i] = variant_buffer(sw, outs[i], k);
            same_dtypes &= w[i][k].dtype == w[0][k].dtype && b[i][k].dtype == b[0][k].dtype;
        }
        /* one call where each operand's members lie evenly apart (staged copies, the stored
         * k, v, q of OPT's table order, the layer buffers); otherwise one linear each */
        const size_t w_stride = even_stride(w_at, count, zt_dtype_size(w[0][k].dtype));
        const size_t b_stride =
            b_at[0] ? even_stride(b_at, count, zt_dtype_size(b[0][k].dtype)) : 0;
        const size_t out_stride = even_stride(out_at, count, sizeof(float));
        if (be->ops->linear_batched && same_dtypes && w_stride && out_stride &&
            (b_stride || !b_at[0])) {
            ZT_TRY(be->ops->linear_batched(be, (float *)out_at[0], out_stride, in_k, in_dtype,
                                           w[0][k], w_stride, b[0][k], b_stride, count, n_rows,
                                           in_features, out_features, 0));
            continue;
        }
        for (int i = 0; i < count; i++)
            ZT_TRY(in_dtype == ZT_F32
                       ? be->ops->linear(be, (float *)out_at[i], in_k, w[i][k], b[i][k], n_rows,
                                         in_features, out_features, 0)
                       : be->ops->linear_half_in(be, (float *)out_at[i], in_k, w[i][k], b[i][k],
                                                 n_rows, in_features, out_features, 0));
    }
    return ZT_OK;
}

zt_status zt_sweep_lora(const zt_sweep *sw, float *out, const float *in, int weight, int n_rows,
                        int in_features, int out_features, float *rank_rows, float *spare) {
    int a, b;
    const zt_model *m = sw->model;
    if (!zt_lora_of(m, weight, &a, &b)) return ZT_OK;
    const int r = m->lora->options.rank;
    float *down = rank_rows, *scaled = rank_rows + (size_t)n_rows * (size_t)r;
    ZT_TRY(zt_sweep_linear(sw, down, in, a, -1, n_rows, in_features, r, 0));
    zt_backend *be = m->be;
    for (int k = 0; k < together(sw); k++)
        ZT_TRY(be->ops->linear(be, variant_buffer(sw, scaled, k), variant_buffer(sw, down, k),
                               zt_lora_scale_weight(m), zt_model_weight(m, -1), n_rows, r, r, 0));
    ZT_TRY(zt_sweep_linear(sw, spare, scaled, b, -1, n_rows, r, out_features, 0));
    return zt_sweep_add(sw, out, spare, (size_t)n_rows * (size_t)out_features);
}

/* Each variant's attention with its own prefix (models/prefix.h), the prefix rows read with the
 * variant's gather perturbation; the extended buffers are shared, the variants running in turn. */
static zt_status prefix_attention(const zt_sweep *sw, int layer, float *out, const float *q,
                                  const float *k, const float *v, int n_heads, int head_dim,
                                  float q_scale) {
    const zt_model *m = sw->model;
    const zt_workspace *ws = sw->ws;
    zt_prefix_buffers pb;
    zt_prefix_buffers_place(m, ws->shape.max_batch, ws->shape.max_seq_len, 0,
                            ws->base + ws->layout.prefix, &pb);
    const int keys = zt_prefix_keys_id(m, layer);
    for (int i = 0; i < together(sw); i++) {
        zt_sweep one = *sw;
        one.variant = sw->variant + i;
        one.n_together = 1;
        zt_gather_perturbation pk_storage, pv_storage;
        const zt_gather_perturbation *pk, *pv;
        ZT_TRY(zt_sweep_gather(&one, keys, &pk_storage, &pk));
        ZT_TRY(zt_sweep_gather(&one, keys + 1, &pv_storage, &pv));
        ZT_TRY(zt_prefix_attention(m, layer, &pb, variant_buffer(sw, out, i),
                                   variant_buffer(sw, q, i), variant_buffer(sw, k, i),
                                   variant_buffer(sw, v, i), sw->batch->batch, sw->batch->seq_len,
                                   zt_sweep_key_mask(sw), n_heads, head_dim, q_scale, pk, pv));
    }
    return ZT_OK;
}

zt_status zt_sweep_attention(const zt_sweep *sw, int layer, float *out, const float *q,
                             const float *k, const float *v, int n_heads, int head_dim,
                             float q_scale) {
    if (sw->cache) {
        if (together(sw) > 1)
            return zt_fail(ZT_ERR_INTERNAL, "forward: a cached sweep runs one variant at a time");
        return zt_kv_cache_attend(sw, layer, out, q, k, v, n_heads, head_dim, q_scale);
    }
    zt_backend *be = sw->model->be;
    if (sw->model->prefix)
        return prefix_attention(sw, layer, out, q, k, v, n_heads, head_dim, q_scale);
    for (int i = 0; i < together(sw); i++)
        ZT_TRY(be->ops->attention(be, variant_buffer(sw, out, i), variant_buffer(sw, q, i),
                                  variant_buffer(sw, k, i), variant_buffer(sw, v, i),
                                  zt_sweep_key_mask(sw), sw->batch->batch, sw->batch->seq_len,
                                  n_heads, head_dim, q_scale));
    return ZT_OK;
}

zt_status zt_sweep_layer_norm(const zt_sweep *sw, float *out, const float *in, int gamma, int beta,
                              int n_rows, int n_cols, float eps) {
    zt_weight g[ZT_SWEEP_MAX_TOGETHER], b[ZT_SWEEP_MAX_TOGETHER];
    ZT_TRY(stage_group(sw, gamma, STAGE_LAYER_MAIN, together(sw), g));
    ZT_TRY(stage_group(sw, beta, STAGE_LAYER_AUX, together(sw), b));
    zt_backend *be = sw->model->be;
    for (int k = 0; k < together(sw); k++)
        ZT_TRY(be->ops->layernorm(be, variant_buffer(sw, out, k), variant_buffer(sw, in, k), g[k],
                                  b[k], n_rows, n_cols, eps));
    return ZT_OK;
}

zt_status zt_sweep_layer_norm_half(const zt_sweep *sw, void *out, zt_dtype out_dtype,
                                   const float *in, int gamma, int beta, int n_rows, int n_cols,
                                   float eps) {
    zt_weight g[ZT_SWEEP_MAX_TOGETHER], b[ZT_SWEEP_MAX_TOGETHER];
    ZT_TRY(stage_group(sw, gamma, STAGE_LAYER_MAIN, together(sw), g));
    ZT_TRY(stage_group(sw, beta, STAGE_LAYER_AUX, together(sw), b));
    zt_backend *be = sw->model->be;
    for (int k = 0; k < together(sw); k++)
        ZT_TRY(be->ops->layernorm_half(be, variant_buffer(sw, out, k), out_dtype,
                                       variant_buffer(sw, in, k), g[k], b[k], n_rows, n_cols, eps));
    return ZT_OK;
}

zt_status zt_sweep_add(const zt_sweep *sw, float *x, const float *y, size_t n_elems) {
    zt_backend *be = sw->model->be;
    for (int k = 0; k < together(sw); k++)
        ZT_TRY(be->ops->add(be, variant_buffer(sw, x, k), variant_buffer(sw, y, k), n_elems));
    return ZT_OK;
}

/* ---- the batch ---- */

/* A token's position is its index among its sequence's real tokens, whatever the padding side
 * (HF: cumsum(mask) * mask - 1), counted from first[s] when the sequence continues a cached one;
 * the family's offset maps it to a row of its position table and padding to the row before. */
zt_status zt_batch_position_rows(const zt_model *m, const zt_batch *b, const int32_t *first,
                                 int32_t *rows) {
    const int32_t offset = m->arch->position_row_offset;
    for (int s = 0; s < b->batch; s++) {
        int32_t seen = first ? first[s] : 0;
        for (int t = 0; t < b->seq_len; t++) {
            int real = b->attention_mask[s * b->seq_len + t] != 0;
            seen += real;
            rows[s * b->seq_len + t] = real ? seen - 1 + offset : offset - 1;
        }
        if (seen > m->dims.max_positions)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "sequence %d has %d tokens, more than max_position_embeddings %d", s,
                           seen, m->dims.max_positions);
    }
    return ZT_OK;
}

static zt_status validate(const zt_workspace *ws, const zt_batch *b, int n_variants) {
    if (b->batch <= 0 || b->seq_len <= 0 || b->batch > ws->shape.max_batch ||
        b->seq_len > ws->shape.max_seq_len)
        return zt_fail(ZT_ERR_INVALID_ARG, "batch %d x %d does not fit the workspace (%d x %d)",
                       b->batch, b->seq_len, ws->shape.max_batch, ws->shape.max_seq_len);
    if (n_variants < 1 || n_variants > ws->shape.max_variants)
        return zt_fail(ZT_ERR_INVALID_ARG, "%d variants, the workspace holds 1..%d", n_variants,
                       ws->shape.max_variants);
    int n = b->batch * b->seq_len;
    if (b->n_targets < 0 || b->n_targets > n)
        return zt_fail(ZT_ERR_INVALID_ARG, "%d targets for a batch of %d rows", b->n_targets, n);
    for (int r = 0; r < b->n_targets; r++)
        if (b->target_rows[r] < 0 || b->target_rows[r] >= n)
            return zt_fail(ZT_ERR_INVALID_ARG, "target %d: row %d outside the batch's %d rows", r,
                           b->target_rows[r], n);
    return ZT_OK;
}

/* Uploads n indices and, when they are all >= 0, vouches for them up to their largest value:
 * the ops that read them (gathers, log-probs) then need not check them on the device, which
 * would make the host wait for it on every call. A bad index is not vouched for, so the op's own
 * check still reports it by position. */
static zt_status upload_indices(zt_model *m, char *dst, const int32_t *host, int n) {
    zt_backend *be = m->be;
    ZT_TRY(be->ops->upload(be, dst, host, (size_t)n * sizeof(int32_t)));
    if (be->ops->vouch_indices == NULL || n == 0) return ZT_OK;
    int32_t lowest = host[0], highest = host[0];
    for (int i = 1; i < n; i++) {
        if (host[i] < lowest) lowest = host[i];
        if (host[i] > highest) highest = host[i];
    }
    if (lowest >= 0 && highest < INT32_MAX)
        be->ops->vouch_indices(be, (const int32_t *)dst, (size_t)n, highest + 1);
    return ZT_OK;
}

zt_status zt_sweep_upload_batch(zt_model *m, zt_workspace *ws, const zt_batch *b,
                                const int32_t *first_position) {
    const zt_backend_ops *op = m->be->ops;
    const zt_workspace_layout *L = &ws->layout;
    int n = b->batch * b->seq_len, r = b->n_targets;
    int32_t *pos_rows = zt_malloc((size_t)n * sizeof *pos_rows);
    if (!pos_rows) return zt_fail(ZT_ERR_NOMEM, "allocating position ids");
    zt_status s = zt_batch_position_rows(m, b, first_position, pos_rows);
    if (s == ZT_OK) s = upload_indices(m, ws->base + L->pos, pos_rows, n);
    free(pos_rows);
    ZT_TRY(s);
    ZT_TRY(upload_indices(m, ws->base + L->ids, b->input_ids, n));
    ZT_TRY(op->upload(m->be, ws->base + L->mask, b->attention_mask, (size_t)n * sizeof(int32_t)));
    if (r > 0) {
        ZT_TRY(upload_indices(m, ws->base + L->rows, b->target_rows, r));
        ZT_TRY(upload_indices(m, ws->base + L->targets, b->target_ids, r));
    }
    return ZT_OK;
}

/* ---- the LM head ---- */

/* The rest of head_group on a backend with head_vocab_chunk: the table a block of rows at a time,
 * each block staged for the group from one draw, then per variant its target rows' logits for
 * the block folded into their running log-sum-exp (target_logprobs_fold). The staged copies and
 * the logits stay in cache, and the staging holds G blocks instead of G tables. */
static zt_status head_blocks(const zt_sweep *group, int n, const float *head_in, int count,
                             float *logits_out) {
    zt_model *m = group->model;
    zt_backend *be = m->be;
    const zt_workspace_layout *L = &group->ws->layout;
    char *base = group->ws->base;
    const int e = m->dims.head_input_size, vocab = m->dims.vocab_size;
    const int cols = zt_head_vocab_cols(be, vocab), chunk = zt_head_chunk_rows(be, count);
    float *logits = (float *)(base + L->logits);
    const int32_t *targets = (const int32_t *)(base + L->targets);
    double *state = (double *)(base + L->lse_state);
    ZT_TRY(settle_alone(group, m->lm_head));
    for (int v0 = 0; v0 < vocab; v0 += cols) {
        const int n_cols = vocab - v0 < cols ? vocab - v0 : cols;
        zt_weight tables[ZT_HEAD_GROUP_VARIANTS];
        ZT_TRY(stage_group_at(group, m->lm_head, STAGE_HEAD_TABLE, 0, (size_t)v0 * e,
                              (size_t)n_cols * e, n, tables));
        for (int k = 0; k < n; k++) {
            const int variant = group->variant + k;
            const float *in = variant_buffer(group, head_in, k);
            float *lp = (float *)(base + L->logprob) + (size_t)variant * count;
            double *row_state = state + (size_t)k * count * 3;
            for (int r0 = 0; r0 < count; r0 += chunk) {
                const int rows = count - r0 < chunk ? count - r0 : chunk;
                ZT_TRY(be->ops->linear(be, logits, in + (size_t)r0 * e, tables[k],
                                       zt_model_weight(m, -1), rows, e, n_cols, 0));
                ZT_TRY(be->ops->target_logprobs_fold(be, lp + r0, row_state + 3 * (size_t)r0,
                                                     logits, targets + r0, rows, vocab, v0,
                                                     n_cols));
                for (int i = 0; logits_out && i < rows; i++)
                    ZT_TRY(be->ops->download(
                        be, logits_out + ((size_t)variant * count + r0 + i) * vocab + v0,
                        logits + (size_t)i * n_cols, (size_t)n_cols * sizeof(float)));
            }
        }
    }
    return ZT_OK;
}

/* The head of variants [sw->variant, sw->variant + n), n <= the workspace's head_group, on the
 * target rows only, op by op for the n together as a layer runs: each variant's target rows
 * gathered from its stream; the family's head input (its final norm and projection are row-wise,
 * so selecting the rows first changes nothing but the cost), their tensors staged for all n from
 * one draw; then the head table (the token table when tied) staged for all n from one draw into
 * the head's slots, which share the staging region with a layer's variants and so come after
 * the head input; and per variant its rows through its table a chunk at a time, and the
 * targets' log-probabilities. A batch-invariant backend computes each target row on its own
 * (backend.h: gemm_row_block 1), so a row meets the same GEMM whatever else the batch holds;
 * the table's column pieces stay in cache across the rows. */
static zt_status head_group(const zt_sweep *sw, int n, float *logits_out) {
    zt_model *m = sw->model;
    zt_backend *be = m->be;
    const zt_batch *b = sw->batch;
    const zt_workspace_layout *L = &sw->ws->layout;
    char *base = sw->ws->base;
    const int n_tokens = b->batch * b->seq_len, e = m->dims.head_input_size;
    const int count = b->n_targets, vocab = m->dims.vocab_size;
    if (n < 1 || n > L->head_group)
        return zt_fail(ZT_ERR_INTERNAL,
                       "forward: a head group of %d variants, the workspace plans %d", n,
                       L->head_group);
    zt_sweep group = *sw;
    group.n_together = n;
    float *hid = (float *)(base + L->hid);
    for (int k = 0; k < n; k++) {
        zt_sweep one = *sw;
        one.variant = sw->variant + k;
        ZT_TRY(be->ops->gather_rows(be, variant_buffer(&group, hid, k),
                                    (const int32_t *)(base + L->rows),
                                    (zt_weight){zt_sweep_stream(&one), ZT_F32}, count, n_tokens,
                                    m->dims.hidden_size, 0, NULL));
    }
    be->gemm_row_block = be->batch_invariant ? 1 : 0;
    const float *head_in = hid;
    zt_status s = m->arch->head_input(&group, hid, count, &head_in);
    if (be->head_vocab_chunk > 0) {
        if (s == ZT_OK) s = head_blocks(&group, n, head_in, count, logits_out);
        be->gemm_row_block = 0;
        return s;
    }
    zt_weight tables[ZT_HEAD_GROUP_VARIANTS];
    if (s == ZT_OK) s = stage_group(&group, m->lm_head, STAGE_HEAD_TABLE, n, tables);
    float *logits = (float *)(base + L->logits);
    const int32_t *targets = (const int32_t *)(base + L->targets);
    const int chunk = zt_head_chunk_rows(be, count);
    for (int k = 0; s == ZT_OK && k < n; k++) {
        const int variant = sw->variant + k;
        const float *in = variant_buffer(&group, head_in, k);
        float *lp = (float *)(base + L->logprob) + (size_t)variant * count;
        for (int r0 = 0; s == ZT_OK && r0 < count; r0 += chunk) {
            const int rows = count - r0 < chunk ? count - r0 : chunk;
            s = be->ops->linear(be, logits, in + (size_t)r0 * e, tables[k], zt_model_weight(m, -1),
                                rows, e, vocab, 0);
            if (s == ZT_OK)
                s = be->ops->target_logprobs(be, lp + r0, logits, targets + r0, rows, vocab);
            if (s == ZT_OK && logits_out)
                s = be->ops->download(be, logits_out + ((size_t)variant * count + r0) * vocab,
                                      logits, (size_t)rows * vocab * sizeof(float));
        }
    }
    be->gemm_row_block = 0;
    return s;
}

zt_status zt_sweep_head(const zt_sweep *sw, float *logits_out) {
    return head_group(sw, 1, logits_out);
}

/* The heads of variants [0, n_variants), in groups of up to the workspace's head_group: a
 * variant that reads the head table as stored runs alone when it would start a group, so that
 * perturbed variants behind it pair up (an unperturbed variant first, then +eps z and -eps z,
 * still draws the table's z once). */
static zt_status heads(zt_sweep *sw, int n_variants, float *logits_out) {
    const int most = sw->ws->layout.head_group > 1 ? sw->ws->layout.head_group : 1;
    for (int v = 0; v < n_variants;) {
        sw->variant = v;
        int n = n_variants - v < most ? n_variants - v : most;
        if (!variant_perturbation(sw, sw->model->lm_head)) n = 1;
        ZT_TRY(head_group(sw, n, logits_out));
        v += n;
    }
    return ZT_OK;
}

/* Layers [first, end) for variants [first_variant, first_variant + n_variants), op by op for
 * the variants together, so each perturbed tensor of a layer is staged for all of them from
 * one draw of its z. Batch-invariant: a sequence per GEMM. */
static zt_status sweep_layers(zt_sweep *sw, int first, int end, int first_variant, int n_variants) {
    zt_backend *be = sw->model->be;
    be->gemm_row_block = be->batch_invariant ? sw->batch->seq_len : 0;
    const int end_variant = first_variant + n_variants;
    zt_status s = ZT_OK;
    for (int layer = first; s == ZT_OK && layer < end; layer++) {
        for (sw->variant = first_variant; s == ZT_OK && sw->variant < end_variant;
             sw->variant += ZT_SWEEP_MAX_TOGETHER) {
            const int left = end_variant - sw->variant;
            sw->n_together = left < ZT_SWEEP_MAX_TOGETHER ? left : ZT_SWEEP_MAX_TOGETHER;
            s = sw->model->arch->layer(sw, layer);
        }
        sw->n_together = 0;
    }
    be->gemm_row_block = 0;
    return s;
}

/* A pipeline stage's forward (zt_model_stage). The variants pass through the stages one at a
 * time, so that stage s + 1 advances variant k while stage s runs variant k + 1: variant k's
 * residual stream arrives from the stage before (or is embedded by the first), goes through
 * the stage's layers and on to the next stage, whose head (the last stage's) turns it into its
 * targets' log-probabilities. A variant staged alone gets the same bits as staged with the
 * others (perturb_variants equals K perturb calls), so the result equals one process's. The
 * last stage then shares the K variants' log-probabilities, so every stage returns the same
 * ones. A batch without targets has nothing to return: no stage computes or sends anything. */
static zt_status forward_stage(zt_sweep *sw, int n_variants, float *logprobs, float *logits) {
    zt_model *m = sw->model;
    const zt_model_stage *st = m->stage;
    const zt_batch *b = sw->batch;
    if (logits || m->prefix || m->prompt)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "forward: a pipeline stage returns log-probabilities only, of a model "
                       "without prefixes or a prompt table");
    if (b->n_targets == 0) return ZT_OK;
    const size_t stream_bytes =
        (size_t)b->batch * (size_t)b->seq_len * (size_t)m->dims.hidden_size * sizeof(float);
    for (int k = 0; k < n_variants; k++) {
        sw->variant = k;
        char *stream = (char *)zt_sweep_stream(sw);
        if (st->is_first)
            ZT_TRY(m->arch->embed(sw));
        else
            ZT_TRY(st->receive(st->ctx, stream, stream_bytes));
        ZT_TRY(sweep_layers(sw, st->first_layer, st->end_layer, k, 1));
        sw->variant = k;
        if (st->is_last) {
            ZT_TRY(zt_sweep_head(sw, NULL));
        } else {
            ZT_TRY(m->be->ops->sync(m->be));
            ZT_TRY(st->pass_on(st->ctx, stream, stream_bytes));
        }
    }
    char *lp = sw->ws->base + sw->ws->layout.logprob;
    const size_t lp_bytes = (size_t)n_variants * (size_t)b->n_targets * sizeof(float);
    if (st->is_last) ZT_TRY(m->be->ops->sync(m->be));
    ZT_TRY(st->share_logprobs(st->ctx, lp, lp_bytes));
    return m->be->ops->download(m->be, logprobs, lp, lp_bytes);
}

/* The forward of a batch whose sequences start with n_virtual virtual tokens. */
static zt_status forward_batch(zt_model *m, zt_workspace *ws, const zt_batch *b,
                               const zt_variants *variants, float *logprobs, float *logits,
                               int n_virtual) {
    int n_variants = variants ? variants->n_variants : 1;
    ZT_TRY(validate(ws, b, n_variants));
    ZT_TRY(zt_sweep_upload_batch(m, ws, b, NULL));
    zt_sweep sw = {m, ws, b, variants, 0, NULL, 0, n_virtual};
    if (m->stage) return forward_stage(&sw, n_variants, logprobs, logits);
    if (m->prefix) {
        zt_prefix_buffers pb;
        zt_prefix_buffers_place(m, ws->shape.max_batch, ws->shape.max_seq_len, 0,
                                ws->base + ws->layout.prefix, &pb);
        ZT_TRY(zt_prefix_upload_batch(m, &pb, b));
    }
    for (sw.variant = 0; sw.variant < n_variants; sw.variant++)
        ZT_TRY(m->arch->embed(&sw));
    ZT_TRY(sweep_layers(&sw, 0, m->dims.n_layers, 0, n_variants));
    if (b->n_targets == 0) return ZT_OK;
    ZT_TRY(heads(&sw, n_variants, logits));
    return m->be->ops->download(m->be, logprobs, ws->base + ws->layout.logprob,
                                (size_t)n_variants * b->n_targets * sizeof(float));
}

zt_status zt_model_forward(zt_model *m, zt_workspace *ws, const zt_batch *b,
                           const zt_variants *variants, float *logprobs, float *logits) {
    if (!m->prompt) return forward_batch(m, ws, b, variants, logprobs, logits, 0);
    zt_prompt_batch extended;
    ZT_TRY(zt_prompt_extend_batch(m, b, &extended));
    zt_status s = forward_batch(m, ws, &extended.batch, variants, logprobs, logits,
                                zt_model_virtual_tokens(m));
    zt_prompt_batch_free(&extended);
    return s;
}
