/* The workspace of the K-variant forward: its layout, the memory plan that follows from it, and
 * its allocation. The plan is what the tracked allocator then measures, to the byte. */
#include <stdlib.h>

#include "core/alloc.h"
#include "core/status.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "workspace.h"

enum { BUFFER_ALIGN = 64 };

static size_t take(size_t *cursor, size_t n_bytes) {
    size_t at = (*cursor + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
    *cursor = at + n_bytes;
    return at;
}

static size_t max_size(size_t a, size_t b) {
    return a > b ? a : b;
}

static size_t aligned256(size_t n_bytes) {
    return (n_bytes + 255u) / 256u * 256u;
}

static size_t aligned(size_t n_bytes) {
    return (n_bytes + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
}

/* The largest matrix, and the largest vector, that a layer (or the head's norm and projection)
 * stages at once (a linear stages its weight with its bias, a norm its gain with its shift):
 * every tensor but the token table and the head's, which the head stages into slots of their
 * own. Tables that are only gathered (positions) stay in the bound: they are small, and
 * bench/roofline's self-check mirrors this rule. */
static void layer_staging_sizes(const zt_model *m, size_t *main_elems, size_t *aux_elems) {
    *main_elems = *aux_elems = 0;
    for (int i = zt_model_first_staged(m); i < m->n_tensors; i++) {
        if (i == m->embed_tokens || i == m->lm_head) continue;
        size_t *bound = m->tensors[i].n_dims == 2 ? main_elems : aux_elems;
        *bound = max_size(*bound, m->tensors[i].n_elems);
    }
}

/* Room for zt_sweep_linear_shared_input's copies side by side, each 256-byte aligned (sweep.c):
 * the family's shared_input_linears copies of its largest square weight in the main slot, and
 * of a vector its side long in the aux slot. OPT's f = 4h leaves room already (3 h^2 < 4 h^2);
 * only narrower FFNs grow the slots. bench/roofline mirrors this. */
static void shared_input_staging(const zt_model *m, size_t elem_bytes, size_t *main_bytes,
                                 size_t *aux_bytes) {
    const size_t count =
        m->arch->shared_input_linears > 1 ? (size_t)m->arch->shared_input_linears : 0;
    size_t side = 0;
    for (int i = zt_model_first_staged(m); i < m->n_tensors && count; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        if (t->n_dims == 2 && t->shape[0] == t->shape[1] && (size_t)t->shape[0] > side)
            side = (size_t)t->shape[0];
    }
    if (side == 0) return;
    *main_bytes = max_size(*main_bytes, count * aligned256(side * side * elem_bytes));
    *aux_bytes = max_size(*aux_bytes, count * aligned256(side * elem_bytes));
}

/* Bytes per staged element: 4 unless the backend stages every tensor in a half dtype. */
static size_t stage_elem_bytes(const zt_model *m) {
    size_t widest = 0;
    for (int i = 0; i < m->n_tensors; i++)
        widest =
            max_size(widest, zt_dtype_size(zt_backend_stage_dtype(m->be, m->tensors[i].dtype)));
    return widest ? widest : sizeof(float);
}

int zt_model_head_group_limit(const zt_model *m) {
    if (m->lm_head < 0) return 1;
    /* with head blocks a pair costs a second block (1.5 MB), not a second table */
    if (m->be->head_vocab_chunk > 0) return ZT_HEAD_GROUP_VARIANTS;
    return zt_head_group_limit(m->tensors[m->lm_head].n_elems, zt_model_parameter_count(m));
}

static zt_workspace_layout plan_layout(const zt_model *m, const zt_workspace_shape *shape) {
    size_t n = (size_t)shape->max_batch * (size_t)shape->max_seq_len;
    size_t variants = (size_t)shape->max_variants, f = sizeof(float), i = sizeof(int32_t);
    size_t h = (size_t)m->dims.hidden_size;
    size_t chunk = n < (size_t)m->be->head_chunk_rows ? n : (size_t)m->be->head_chunk_rows;
    size_t layer_bytes[ZT_ARCH_MAX_BUFFERS] = {0}, head_bytes[ZT_ARCH_MAX_BUFFERS] = {0};
    m->arch->plan_buffers(m, n, layer_bytes, head_bytes);
    zt_workspace_layout L = {0};
    size_t cursor = 0;
    L.x = take(&cursor, variants * n * h * f);
    /* Each variant's temporaries: a layer runs op by op for all K variants, so that each
     * perturbed tensor is staged for all of them from one draw (sweep.c). */
    size_t variant_cursor = 0;
    for (int b = 0; b < ZT_ARCH_MAX_BUFFERS; b++)
        if (layer_bytes[b]) L.layer[b] = take(&variant_cursor, layer_bytes[b]);
    L.layer_stride = (variant_cursor + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
    const size_t layers_at = take(&cursor, variants * L.layer_stride);
    for (int b = 0; b < ZT_ARCH_MAX_BUFFERS; b++)
        if (layer_bytes[b]) L.layer[b] += layers_at;
    /* The head runs a group of variants op by op too (sweep.c), each with its own rows. */
    const int head_limit = zt_model_head_group_limit(m);
    L.head_group = variants < (size_t)head_limit ? (int)variants : head_limit;
    L.hid_stride = aligned(n * h * f);
    L.hid = take(&cursor, (size_t)L.head_group * L.hid_stride);
    size_t head_cursor = 0;
    for (int b = 0; b < ZT_ARCH_MAX_BUFFERS; b++)
        if (head_bytes[b]) L.head[b] = take(&head_cursor, head_bytes[b]);
    L.head_stride = aligned(head_cursor);
    L.heads = take(&cursor, (size_t)L.head_group * L.head_stride);
    for (int b = 0; b < ZT_ARCH_MAX_BUFFERS; b++)
        if (head_bytes[b]) L.head[b] += L.heads;
    const size_t cols = (size_t)zt_head_vocab_cols(m->be, m->dims.vocab_size);
    L.logits = take(&cursor, chunk * cols * f);
    if (m->be->head_vocab_chunk > 0)
        L.lse_state = take(&cursor, (size_t)L.head_group * n * 3 * sizeof(double));
    L.logprob = take(&cursor, variants * n * f);
    L.ids = take(&cursor, n * i);
    L.pos = take(&cursor, n * i);
    L.mask = take(&cursor, n * i);
    L.rows = take(&cursor, n * i);
    L.targets = take(&cursor, n * i);
    if (m->prefix)
        L.prefix =
            take(&cursor, zt_prefix_buffers_bytes(m, shape->max_batch, shape->max_seq_len, 0));
    L.activation_total = cursor;

    cursor = 0;
    L.stage_elem_bytes = stage_elem_bytes(m);
    if (shape->staging) {
        size_t main_elems, aux_elems;
        layer_staging_sizes(m, &main_elems, &aux_elems);
        L.stage_main_bytes = main_elems * L.stage_elem_bytes;
        L.stage_aux_bytes = aux_elems * L.stage_elem_bytes;
        shared_input_staging(m, L.stage_elem_bytes, &L.stage_main_bytes, &L.stage_aux_bytes);
        L.stage_main = take(&cursor, L.stage_main_bytes);
        L.stage_aux = take(&cursor, L.stage_aux_bytes);
        size_t region = 0;
        if (variants > 1) {
            size_t slot_cursor = 0;
            take(&slot_cursor, L.stage_main_bytes);
            L.stage_variant_aux = take(&slot_cursor, L.stage_aux_bytes);
            L.stage_variant_stride = aligned(slot_cursor);
            region = (variants - 1) * L.stage_variant_stride;
        }
        /* The head stages its table for up to head_group variants at once, after the layers
         * are done with the region (sweep.c). */
        const int head = m->lm_head;
        if (head >= 0 && head >= zt_model_first_staged(m) && !m->tensors[head].absent) {
            const size_t row = (size_t)m->dims.head_input_size;
            L.stage_head_stride = aligned(cols * row * L.stage_elem_bytes);
            region = max_size(region, (size_t)L.head_group * L.stage_head_stride);
        }
        if (region > 0) L.stage_variants = take(&cursor, region);
    }
    L.staging_total = cursor;
    return L;
}

size_t zt_plan_scratch(const zt_model *m, const zt_scratch_query *query) {
    return m->be->ops->scratch_bytes(m->be, query);
}

static size_t plan_linear(const zt_model *m, int weight, int bias, int n_rows, int in_features,
                          int out_features, int half_output, int batch_count) {
    if (weight < 0) return 0;
    zt_dtype w_dtype = m->tensors[weight].dtype;
    zt_dtype b_dtype = bias >= 0 ? m->tensors[bias].dtype : ZT_F32;
    zt_scratch_query q = {.op = ZT_SCRATCH_LINEAR,
                          .in_features = in_features,
                          .out_features = out_features,
                          .weight_dtype = w_dtype,
                          .bias_dtype = b_dtype,
                          .has_bias = bias >= 0,
                          .n_rows = n_rows,
                          .half_output = half_output,
                          .batch_count = batch_count};
    size_t stored = zt_plan_scratch(m, &q);
    q.weight_dtype = zt_backend_stage_dtype(m->be, w_dtype);
    q.bias_dtype = zt_backend_stage_dtype(m->be, b_dtype);
    return max_size(stored, zt_plan_scratch(m, &q));
}

size_t zt_plan_linear_scratch(const zt_model *m, int weight, int bias, int n_rows, int in_features,
                              int out_features) {
    return plan_linear(m, weight, bias, n_rows, in_features, out_features, 0, 1);
}

size_t zt_plan_linear_batched_scratch(const zt_model *m, int weight, int bias, int n_rows,
                                      int in_features, int out_features, int count) {
    return plan_linear(m, weight, bias, n_rows, in_features, out_features, 0, count);
}

size_t zt_plan_linear_half_out_scratch(const zt_model *m, int weight, int bias, int n_rows,
                                       int in_features, int out_features) {
    return plan_linear(m, weight, bias, n_rows, in_features, out_features, 1, 1);
}

/* The largest scratch request of any op the forward (and a sphere norm pass) makes: the
 * family's layers, then the tied head over at most a chunk of target rows. */
static size_t backend_scratch(const zt_model *m, const zt_workspace_shape *shape) {
    int n = shape->max_batch * shape->max_seq_len;
    int head_rows = zt_head_chunk_rows(m->be, n);
    size_t most = m->arch->scratch_bytes(m, shape);
    most =
        max_size(most, zt_plan_linear_scratch(m, m->lm_head, -1, head_rows, m->dims.head_input_size,
                                              zt_head_vocab_cols(m->be, m->dims.vocab_size)));
    if (shape->sphere)
        for (int i = 0; i < m->n_tensors; i++) {
            zt_scratch_query sumsq = {.op = ZT_SCRATCH_Z_SUMSQ,
                                      .weight_dtype = ZT_F32,
                                      .bias_dtype = ZT_F32,
                                      .n_elems = m->tensors[i].n_elems};
            most = max_size(most, zt_plan_scratch(m, &sumsq));
        }
    return most;
}

/* The shape the buffers are sized for: prompt tuning's virtual tokens make every sequence N
 * tokens longer than its caller's (models/prompt.h). */
static zt_workspace_shape stored_shape(const zt_model *m, const zt_workspace_shape *shape) {
    zt_workspace_shape wider = *shape;
    wider.max_seq_len += zt_model_virtual_tokens(m);
    return wider;
}

void zt_model_plan_memory(const zt_model *m, const zt_workspace_shape *caller_shape,
                          zt_memory_plan *plan) {
    const zt_workspace_shape wider = stored_shape(m, caller_shape), *shape = &wider;
    zt_workspace_layout L = plan_layout(m, shape);
    plan->weights_bytes = m->weights_bytes;
    plan->activation_bytes = L.activation_total;
    plan->staging_bytes = L.staging_total;
    plan->backend_scratch_bytes = backend_scratch(m, shape);
    plan->kv_cache_bytes = 0;
    plan->total_bytes = plan->weights_bytes + L.activation_total + L.staging_total +
                        plan->backend_scratch_bytes + plan->kv_cache_bytes;
}

zt_status zt_workspace_create(zt_model *model, const zt_workspace_shape *caller_shape,
                              zt_workspace **out) {
    *out = NULL;
    const zt_workspace_shape wider = stored_shape(model, caller_shape), *shape = &wider;
    if (shape->max_batch <= 0 || shape->max_seq_len <= 0 || shape->max_variants <= 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "workspace: batch %d x sequence %d x variants %d must be positive",
                       shape->max_batch, shape->max_seq_len, shape->max_variants);
    if ((long long)shape->max_batch * shape->max_seq_len * shape->max_variants >
        ZT_MAX_TOKENS_PER_FORWARD)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "workspace: batch %d x sequence %d x variants %d is more than %d tokens",
                       shape->max_batch, shape->max_seq_len, shape->max_variants,
                       (int)ZT_MAX_TOKENS_PER_FORWARD);
    zt_workspace *ws = zt_calloc(1, sizeof *ws);
    if (!ws) return zt_fail(ZT_ERR_NOMEM, "allocating the workspace descriptor");
    ws->model = model;
    ws->shape = *shape;
    ws->layout = plan_layout(model, shape);
    zt_backend *be = model->be;
    zt_status s =
        be->ops->alloc(be, ws->layout.activation_total, ZT_MEM_ACTIVATIONS, (void **)&ws->base);
    if (s == ZT_OK && ws->layout.staging_total > 0)
        s = be->ops->alloc(be, ws->layout.staging_total, ZT_MEM_SCRATCH, (void **)&ws->staging);
    /* reaching the backend's scratch peak now makes a run's memory what the plan says */
    if (s == ZT_OK) s = be->ops->reserve_scratch(be, backend_scratch(model, shape));
    if (s != ZT_OK) {
        zt_workspace_free(ws);
        return s;
    }
    *out = ws;
    return ZT_OK;
}

void zt_workspace_free(zt_workspace *ws) {
    if (!ws) return;
    zt_backend *be = ws->model->be;
    if (ws->base) be->ops->free(be, ws->base, ws->layout.activation_total, ZT_MEM_ACTIVATIONS);
    if (ws->staging) be->ops->free(be, ws->staging, ws->layout.staging_total, ZT_MEM_SCRATCH);
    free(ws);
}
