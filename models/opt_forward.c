/* The OPT forward pass (spec §1.3) over a padded batch for K weight variants in one sweep over
 * the layers (DESIGN.md §2, shadow mode): each perturbed tensor is staged, perturbed, into a
 * shadow buffer once per variant, and only the K residual streams are kept side by side. The
 * embedding tables are the exception: their rows are perturbed as they are gathered, so only the
 * batch's rows are touched (embed_tokens is still staged whole for the tied LM head). Only the
 * rows that carry a target go through the LM head, the largest GEMM. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "opt.h"

enum { BUFFER_ALIGN = 64 };

/* Byte offsets of every buffer inside the workspace's allocations. One function computes them
 * for both the plan and the allocation, so the two cannot disagree. */
typedef struct ws_layout {
    size_t x;                                   /* (K,N,h) residual streams */
    size_t h, q, k, v, attn, ffn, tok;          /* shared temporaries */
    size_t hid, hid_proj, logits, logprob;      /* head: (R,h), (R,e), (chunk,V), (K,R) */
    size_t ids, pos, mask, rows, targets;       /* int32 */
    size_t activation_total;
    size_t stage_main, stage_aux, staging_total; /* shadow buffers */
    size_t stage_elem_bytes;                     /* the widest staged dtype planned for */
} ws_layout;

static size_t take(size_t *cursor, size_t n_bytes) {
    size_t at = (*cursor + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
    *cursor = at + n_bytes;
    return at;
}

/* The largest tensor, and the largest vector, that may be staged at once: a linear stages its
 * weight (main) with its bias (aux), a layer norm its gamma (main) with its beta (aux). The
 * position table is never staged (gathered perturbed) but stays in the bound: it is small, and
 * bench/roofline's self-check mirrors this formula. */
static void staging_sizes(const zt_opt_config *c, size_t *main_elems, size_t *aux_elems) {
    size_t h = (size_t)c->hidden_size, e = (size_t)c->word_embed_proj_dim, f = (size_t)c->ffn_dim;
    size_t largest = (size_t)c->vocab_size * e;
    size_t positions = ((size_t)c->max_position_embeddings + 2) * h;
    if (positions > largest) largest = positions;
    if (h * f > largest) largest = h * f;
    if (h * e > largest) largest = h * e;
    *main_elems = largest;
    *aux_elems = f > h ? f : h;
}

/* Bytes per staged element: 4 unless the backend stages every tensor in a half dtype. */
static size_t stage_elem_bytes(const zt_model *m) {
    size_t widest = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        size_t bytes = zt_dtype_size(zt_backend_stage_dtype(m->be, m->tensors[i].dtype));
        if (bytes > widest) widest = bytes;
    }
    return widest ? widest : sizeof(float);
}

static ws_layout plan_layout(const zt_model *m, const zt_opt_workspace_shape *shape) {
    const zt_opt_config *c = &m->cfg;
    size_t n = (size_t)shape->max_batch * (size_t)shape->max_seq_len;
    size_t variants = (size_t)shape->max_variants, f = sizeof(float), i = sizeof(int32_t);
    size_t h = (size_t)c->hidden_size, e = (size_t)c->word_embed_proj_dim;
    size_t chunk = n < ZT_LM_HEAD_CHUNK_ROWS ? n : ZT_LM_HEAD_CHUNK_ROWS;
    ws_layout L;
    size_t cursor = 0;
    L.x = take(&cursor, variants * n * h * f);
    L.h = take(&cursor, n * h * f);
    L.q = take(&cursor, n * h * f);
    L.k = take(&cursor, n * h * f);
    L.v = take(&cursor, n * h * f);
    L.attn = take(&cursor, n * h * f);
    L.ffn = take(&cursor, n * (size_t)c->ffn_dim * f);
    L.tok = e != h ? take(&cursor, n * e * f) : 0;
    L.hid = take(&cursor, n * h * f);
    L.hid_proj = e != h ? take(&cursor, n * e * f) : 0;
    L.logits = take(&cursor, chunk * (size_t)c->vocab_size * f);
    L.logprob = take(&cursor, variants * n * f);
    L.ids = take(&cursor, n * i);
    L.pos = take(&cursor, n * i);
    L.mask = take(&cursor, n * i);
    L.rows = take(&cursor, n * i);
    L.targets = take(&cursor, n * i);
    L.activation_total = cursor;

    cursor = 0;
    L.stage_main = L.stage_aux = 0;
    L.stage_elem_bytes = stage_elem_bytes(m);
    if (shape->staging) {
        size_t main_elems, aux_elems;
        staging_sizes(c, &main_elems, &aux_elems);
        L.stage_main = take(&cursor, main_elems * L.stage_elem_bytes);
        L.stage_aux = take(&cursor, aux_elems * L.stage_elem_bytes);
    }
    L.staging_total = cursor;
    return L;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* One linear call's scratch over n_rows, the larger of the weights as stored and as staged. */
static size_t linear_scratch(const zt_model *m, int weight, int bias, int n_rows, int in, int out) {
    if (weight < 0 || !m->be->ops->scratch_bytes) return 0;
    zt_dtype w_dtype = m->tensors[weight].dtype;
    zt_dtype b_dtype = bias >= 0 ? m->tensors[bias].dtype : ZT_F32;
    zt_scratch_query q = {.op = ZT_SCRATCH_LINEAR, .in_features = in, .out_features = out,
                          .weight_dtype = w_dtype, .bias_dtype = b_dtype, .has_bias = bias >= 0,
                          .n_rows = n_rows};
    size_t stored = m->be->ops->scratch_bytes(m->be, &q);
    q.weight_dtype = zt_backend_stage_dtype(m->be, w_dtype);
    q.bias_dtype = zt_backend_stage_dtype(m->be, b_dtype);
    size_t staged = m->be->ops->scratch_bytes(m->be, &q);
    return stored > staged ? stored : staged;
}

/* The largest scratch request of any op the forward (and a sphere norm pass) makes. */
static size_t backend_scratch(const zt_model *m, const zt_opt_workspace_shape *shape) {
    const zt_opt_config *c = &m->cfg;
    if (!m->be->ops->scratch_bytes) return 0;
    int h = c->hidden_size, f = c->ffn_dim, e = c->word_embed_proj_dim;
    int n = shape->max_batch * shape->max_seq_len;
    int head_rows = n < ZT_LM_HEAD_CHUNK_ROWS ? n : ZT_LM_HEAD_CHUNK_ROWS;
    size_t most = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const zt_opt_layer_ids *L = &m->layers[l];
        most = max_size(most, linear_scratch(m, L->q_w, L->q_b, n, h, h));
        most = max_size(most, linear_scratch(m, L->k_w, L->k_b, n, h, h));
        most = max_size(most, linear_scratch(m, L->v_w, L->v_b, n, h, h));
        most = max_size(most, linear_scratch(m, L->out_w, L->out_b, n, h, h));
        most = max_size(most, linear_scratch(m, L->fc1_w, L->fc1_b, n, h, f));
        most = max_size(most, linear_scratch(m, L->fc2_w, L->fc2_b, n, f, h));
    }
    /* project_in sees every token; project_out and the LM head only the rows with a target */
    most = max_size(most, linear_scratch(m, m->project_in, -1, n, e, h));
    most = max_size(most, linear_scratch(m, m->project_out, -1, n, h, e));
    most = max_size(most, linear_scratch(m, m->embed_tokens, -1, head_rows, e, c->vocab_size));
    zt_scratch_query attention = {.op = ZT_SCRATCH_ATTENTION, .weight_dtype = ZT_F32,
                                  .bias_dtype = ZT_F32, .seq_len = shape->max_seq_len,
                                  .head_dim = h / c->num_attention_heads};
    most = max_size(most, m->be->ops->scratch_bytes(m->be, &attention));
    if (shape->sphere)
        for (int i = 0; i < m->n_tensors; i++) {
            zt_scratch_query sumsq = {.op = ZT_SCRATCH_Z_SUMSQ, .weight_dtype = ZT_F32,
                                      .bias_dtype = ZT_F32, .n_elems = m->tensors[i].n_elems};
            most = max_size(most, m->be->ops->scratch_bytes(m->be, &sumsq));
        }
    return most;
}

void zt_opt_plan_memory(const zt_model *m, const zt_opt_workspace_shape *shape,
                        zt_opt_memory_plan *plan) {
    ws_layout L = plan_layout(m, shape);
    plan->weights_bytes = m->weights_bytes;
    plan->activation_bytes = L.activation_total;
    plan->staging_bytes = L.staging_total;
    plan->backend_scratch_bytes = backend_scratch(m, shape);
    plan->total_bytes = plan->weights_bytes + L.activation_total + L.staging_total +
                        plan->backend_scratch_bytes;
}

size_t zt_opt_parameter_count(const zt_opt_config *c) {
    size_t h = (size_t)c->hidden_size, e = (size_t)c->word_embed_proj_dim, f = (size_t)c->ffn_dim;
    size_t bias = c->enable_bias ? 1 : 0, ln = c->layer_norm_elementwise_affine ? 2 * h : 0;
    size_t total = (size_t)c->vocab_size * e + ((size_t)c->max_position_embeddings + 2) * h;
    if (e != h) total += 2 * h * e;
    if (c->do_layer_norm_before && !c->remove_final_layer_norm) total += ln;
    size_t per_layer = 4 * (h * h + bias * h) + (h * f + bias * f) + (f * h + bias * h) + 2 * ln;
    return total + (size_t)c->num_hidden_layers * per_layer;
}

struct zt_opt_workspace {
    zt_model *model;
    zt_opt_workspace_shape shape;
    ws_layout layout;
    char *base;    /* activations */
    char *staging; /* shadow buffers, NULL without staging */
};

zt_status zt_opt_workspace_create(zt_model *model, const zt_opt_workspace_shape *shape,
                                  zt_opt_workspace **out) {
    *out = NULL;
    if (shape->max_batch <= 0 || shape->max_seq_len <= 0 || shape->max_variants <= 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "workspace: batch %d x sequence %d x variants %d must be positive",
                       shape->max_batch, shape->max_seq_len, shape->max_variants);
    zt_opt_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return zt_fail(ZT_ERR_NOMEM, "allocating the workspace descriptor");
    ws->model = model;
    ws->shape = *shape;
    ws->layout = plan_layout(model, shape);
    zt_backend *be = model->be;
    zt_status s = be->ops->alloc(be, ws->layout.activation_total, ZT_MEM_ACTIVATIONS,
                                 (void **)&ws->base);
    if (s == ZT_OK && ws->layout.staging_total > 0)
        s = be->ops->alloc(be, ws->layout.staging_total, ZT_MEM_SCRATCH, (void **)&ws->staging);
    /* reaching the backend's scratch peak now makes a run's memory what the plan says */
    if (s == ZT_OK && be->ops->reserve_scratch)
        s = be->ops->reserve_scratch(be, backend_scratch(model, shape));
    if (s != ZT_OK) {
        zt_opt_workspace_free(ws);
        return s;
    }
    *out = ws;
    return ZT_OK;
}

void zt_opt_workspace_free(zt_opt_workspace *ws) {
    if (!ws) return;
    zt_backend *be = ws->model->be;
    if (ws->base) be->ops->free(be, ws->base, ws->layout.activation_total, ZT_MEM_ACTIVATIONS);
    if (ws->staging) be->ops->free(be, ws->staging, ws->layout.staging_total, ZT_MEM_SCRATCH);
    free(ws);
}

/* ---- weights of a variant ---- */

typedef struct sweep {
    zt_model *m;
    zt_opt_workspace *ws;
    const zt_opt_variants *variants;
    int variant;
} sweep;

enum stage_slot { STAGE_MAIN, STAGE_AUX };

static zt_weight master_weight(const zt_model *m, int id) {
    zt_weight w = {NULL, ZT_F32};
    if (id >= 0) {
        w.data = (const char *)m->weights + m->tensors[id].offset;
        w.dtype = m->tensors[id].dtype;
    }
    return w;
}

/* Tensor `id` as the current variant sees it: the master weight, or a perturbed copy staged
 * into a shadow buffer (f32, or the stored half dtype when the GEMMs take half inputs). */
static zt_status variant_weight(const sweep *sw, int id, enum stage_slot slot, zt_weight *out) {
    *out = master_weight(sw->m, id);
    const zt_opt_variants *v = sw->variants;
    if (id < 0 || !v) return ZT_OK;
    const zt_perturbation *p = &v->perturbation[sw->variant];
    if (p->n_terms == 0 || (v->perturbed && !v->perturbed[id])) return ZT_OK;
    if (!sw->ws->staging)
        return zt_fail(ZT_ERR_INVALID_ARG, "forward: perturbed variants need a staging workspace");
    const zt_tensor_info *t = &sw->m->tensors[id];
    const zt_dtype staged = zt_backend_stage_dtype(sw->m->be, t->dtype);
    if (zt_dtype_size(staged) > sw->ws->layout.stage_elem_bytes)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "forward: %s is staged in %s, wider than the workspace was planned for "
                       "(the GEMM precision changed after the workspace was created)",
                       t->name, zt_dtype_name(staged));
    void *shadow = sw->ws->staging +
                   (slot == STAGE_MAIN ? sw->ws->layout.stage_main : sw->ws->layout.stage_aux);
    ZT_TRY(sw->m->be->ops->perturb(sw->m->be, shadow, staged, *out, (uint32_t)id, 0, t->n_elems, p));
    out->data = shadow;
    out->dtype = staged;
    return ZT_OK;
}

/* The perturbation a gather applies to tensor `id` for the current variant (backend.h,
 * zt_gather_perturbation), or NULL when the variant reads it as stored. The embedding tables are
 * gathered this way: only the rows the batch reads are perturbed, not the whole table. */
static const zt_gather_perturbation *variant_gather(const sweep *sw, int id,
                                                    zt_gather_perturbation *storage) {
    const zt_opt_variants *v = sw->variants;
    if (id < 0 || !v) return NULL;
    const zt_perturbation *p = &v->perturbation[sw->variant];
    if (p->n_terms == 0 || (v->perturbed && !v->perturbed[id])) return NULL;
    storage->p = p;
    storage->tensor_id = (uint32_t)id;
    storage->stage_dtype = zt_backend_stage_dtype(sw->m->be, sw->m->tensors[id].dtype);
    return storage;
}

static zt_weight activation(const float *data) {
    zt_weight w = {data, ZT_F32};
    return w;
}

/* HF derives positions from the mask: cumsum(mask) * mask - 1, then offset 2, so pads read
 * row 1 and the first real token row 2 whatever the padding side. */
static zt_status position_rows(const zt_model *m, const zt_batch *b, int32_t *rows) {
    for (int s = 0; s < b->batch; s++) {
        int32_t seen = 0;
        for (int t = 0; t < b->seq_len; t++) {
            int real = b->attention_mask[s * b->seq_len + t] != 0;
            seen += real;
            rows[s * b->seq_len + t] = real ? seen - 1 + 2 : 1;
        }
        if (seen > m->cfg.max_position_embeddings)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "sequence %d has %d tokens, more than max_position_embeddings %d", s,
                           seen, m->cfg.max_position_embeddings);
    }
    return ZT_OK;
}

static zt_status validate(const zt_opt_workspace *ws, const zt_batch *b, int n_variants) {
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

static zt_status upload_batch(zt_model *m, zt_opt_workspace *ws, const zt_batch *b) {
    const zt_backend_ops *op = m->be->ops;
    const ws_layout *L = &ws->layout;
    int n = b->batch * b->seq_len, r = b->n_targets;
    int32_t *pos_rows = malloc((size_t)n * sizeof *pos_rows);
    if (!pos_rows) return zt_fail(ZT_ERR_NOMEM, "allocating position ids");
    zt_status s = position_rows(m, b, pos_rows);
    if (s == ZT_OK) s = op->upload(m->be, ws->base + L->pos, pos_rows, (size_t)n * sizeof(int32_t));
    free(pos_rows);
    ZT_TRY(s);
    ZT_TRY(op->upload(m->be, ws->base + L->ids, b->input_ids, (size_t)n * sizeof(int32_t)));
    ZT_TRY(op->upload(m->be, ws->base + L->mask, b->attention_mask, (size_t)n * sizeof(int32_t)));
    if (r > 0) {
        ZT_TRY(op->upload(m->be, ws->base + L->rows, b->target_rows, (size_t)r * sizeof(int32_t)));
        ZT_TRY(op->upload(m->be, ws->base + L->targets, b->target_ids, (size_t)r * sizeof(int32_t)));
    }
    return ZT_OK;
}

/* ---- the three phases of a variant ---- */

static float *stream_of(const sweep *sw, int n) {
    size_t h = (size_t)sw->m->cfg.hidden_size;
    return (float *)(sw->ws->base + sw->ws->layout.x) + (size_t)sw->variant * n * h;
}

static zt_status embed(const sweep *sw, int n) {
    zt_model *m = sw->m;
    const zt_backend_ops *op = m->be->ops;
    const zt_opt_config *c = &m->cfg;
    const ws_layout *L = &sw->ws->layout;
    char *base = sw->ws->base;
    float *x = stream_of(sw, n);
    const int32_t *ids = (const int32_t *)(base + L->ids);
    zt_weight w;
    zt_gather_perturbation tok_storage, pos_storage;
    const zt_weight table = master_weight(m, m->embed_tokens);
    const zt_gather_perturbation *tok_p = variant_gather(sw, m->embed_tokens, &tok_storage);
    if (m->project_in >= 0) {
        float *tok = (float *)(base + L->tok);
        ZT_TRY(op->gather_rows(m->be, tok, ids, table, n, c->vocab_size, c->word_embed_proj_dim, 0,
                               tok_p));
        ZT_TRY(variant_weight(sw, m->project_in, STAGE_MAIN, &w));
        ZT_TRY(op->linear(m->be, x, tok, w, master_weight(m, -1), n, c->word_embed_proj_dim,
                          c->hidden_size, 0));
    } else {
        ZT_TRY(op->gather_rows(m->be, x, ids, table, n, c->vocab_size, c->hidden_size, 0, tok_p));
    }
    return op->gather_rows(m->be, x, (const int32_t *)(base + L->pos),
                           master_weight(m, m->embed_positions), n,
                           c->max_position_embeddings + 2, c->hidden_size, 1,
                           variant_gather(sw, m->embed_positions, &pos_storage));
}

static zt_status layer_norm(const sweep *sw, float *out, const float *in, int gamma, int beta,
                            int rows) {
    zt_weight g, b;
    ZT_TRY(variant_weight(sw, gamma, STAGE_MAIN, &g));
    ZT_TRY(variant_weight(sw, beta, STAGE_AUX, &b));
    return sw->m->be->ops->layernorm(sw->m->be, out, in, g, b, rows, sw->m->cfg.hidden_size, 1e-5f);
}

static zt_status linear(const sweep *sw, float *out, const float *in, int weight, int bias, int rows,
                        int in_features, int out_features, int relu) {
    zt_weight w, b;
    ZT_TRY(variant_weight(sw, weight, STAGE_MAIN, &w));
    ZT_TRY(variant_weight(sw, bias, STAGE_AUX, &b));
    return sw->m->be->ops->linear(sw->m->be, out, in, w, b, rows, in_features, out_features, relu);
}

static zt_status decoder_layer(const sweep *sw, int layer, int batch, int seq_len) {
    zt_model *m = sw->m;
    const zt_backend_ops *op = m->be->ops;
    const zt_opt_layer_ids *ids = &m->layers[layer];
    const zt_opt_config *c = &m->cfg;
    const ws_layout *L = &sw->ws->layout;
    char *base = sw->ws->base;
    int n = batch * seq_len, h = c->hidden_size, heads = c->num_attention_heads;
    int head_dim = h / heads, f = c->ffn_dim;
    float *x = stream_of(sw, n), *hbuf = (float *)(base + L->h);
    float *q = (float *)(base + L->q), *k = (float *)(base + L->k), *v = (float *)(base + L->v);
    float *attn = (float *)(base + L->attn), *ffn = (float *)(base + L->ffn);
    const int32_t *mask = (const int32_t *)(base + L->mask);
    /* HF computes head_dim**-0.5 in Python (double) and multiplies the f32 tensor by it. */
    const float q_scale = (float)(1.0 / sqrt((double)head_dim));
    int pre_ln = c->do_layer_norm_before;

    const float *attn_in = x;
    if (pre_ln) {
        ZT_TRY(layer_norm(sw, hbuf, x, ids->attn_ln_g, ids->attn_ln_b, n));
        attn_in = hbuf;
    }
    ZT_TRY(linear(sw, q, attn_in, ids->q_w, ids->q_b, n, h, h, 0));
    ZT_TRY(linear(sw, k, attn_in, ids->k_w, ids->k_b, n, h, h, 0));
    ZT_TRY(linear(sw, v, attn_in, ids->v_w, ids->v_b, n, h, h, 0));
    ZT_TRY(op->attention(m->be, attn, q, k, v, mask, batch, seq_len, heads, head_dim, q_scale));
    ZT_TRY(linear(sw, hbuf, attn, ids->out_w, ids->out_b, n, h, h, 0));
    ZT_TRY(op->add(m->be, x, hbuf, (size_t)n * h));
    if (!pre_ln) ZT_TRY(layer_norm(sw, x, x, ids->attn_ln_g, ids->attn_ln_b, n));

    const float *ffn_in = x;
    if (pre_ln) {
        ZT_TRY(layer_norm(sw, hbuf, x, ids->ffn_ln_g, ids->ffn_ln_b, n));
        ffn_in = hbuf;
    }
    ZT_TRY(linear(sw, ffn, ffn_in, ids->fc1_w, ids->fc1_b, n, h, f, 1));
    ZT_TRY(linear(sw, q, ffn, ids->fc2_w, ids->fc2_b, n, f, h, 0));
    ZT_TRY(op->add(m->be, x, q, (size_t)n * h));
    if (!pre_ln) ZT_TRY(layer_norm(sw, x, x, ids->ffn_ln_g, ids->ffn_ln_b, n));
    return ZT_OK;
}

/* Final norm, project_out and the tied head on the target rows only: all three are row-wise,
 * so selecting the rows first changes nothing but the cost. */
static zt_status head(const sweep *sw, const zt_batch *b, float *logits_out) {
    zt_model *m = sw->m;
    const zt_backend_ops *op = m->be->ops;
    const zt_opt_config *c = &m->cfg;
    const ws_layout *L = &sw->ws->layout;
    char *base = sw->ws->base;
    int n = b->batch * b->seq_len, h = c->hidden_size, e = c->word_embed_proj_dim;
    int r_count = b->n_targets, vocab = c->vocab_size;
    float *hid = (float *)(base + L->hid);
    ZT_TRY(op->gather_rows(m->be, hid, (const int32_t *)(base + L->rows),
                           activation(stream_of(sw, n)), r_count, n, h, 0, NULL));
    if (m->final_ln_g >= 0) ZT_TRY(layer_norm(sw, hid, hid, m->final_ln_g, m->final_ln_b, r_count));
    const float *head_in = hid;
    if (m->project_out >= 0) {
        float *proj = (float *)(base + L->hid_proj);
        ZT_TRY(linear(sw, proj, hid, m->project_out, -1, r_count, h, e, 0));
        head_in = proj;
    }
    zt_weight table;
    ZT_TRY(variant_weight(sw, m->embed_tokens, STAGE_MAIN, &table));
    float *logits = (float *)(base + L->logits);
    float *lp = (float *)(base + L->logprob) + (size_t)sw->variant * r_count;
    const int32_t *targets = (const int32_t *)(base + L->targets);
    for (int r0 = 0; r0 < r_count; r0 += ZT_LM_HEAD_CHUNK_ROWS) {
        int rows = r_count - r0 < ZT_LM_HEAD_CHUNK_ROWS ? r_count - r0 : ZT_LM_HEAD_CHUNK_ROWS;
        ZT_TRY(op->linear(m->be, logits, head_in + (size_t)r0 * e, table, master_weight(m, -1), rows,
                          e, vocab, 0));
        ZT_TRY(op->target_logprobs(m->be, lp + r0, logits, targets + r0, rows, vocab));
        if (logits_out)
            ZT_TRY(op->download(m->be, logits_out + ((size_t)sw->variant * r_count + r0) * vocab,
                                logits, (size_t)rows * vocab * sizeof(float)));
    }
    return ZT_OK;
}

zt_status zt_opt_forward_multi(zt_model *m, zt_opt_workspace *ws, const zt_batch *b,
                               const zt_opt_variants *variants, float *logprobs, float *logits) {
    int n_variants = variants ? variants->n_variants : 1;
    ZT_TRY(validate(ws, b, n_variants));
    ZT_TRY(upload_batch(m, ws, b));
    int n = b->batch * b->seq_len;
    sweep sw = {m, ws, variants, 0};
    for (sw.variant = 0; sw.variant < n_variants; sw.variant++) ZT_TRY(embed(&sw, n));
    for (int layer = 0; layer < m->cfg.num_hidden_layers; layer++)
        for (sw.variant = 0; sw.variant < n_variants; sw.variant++)
            ZT_TRY(decoder_layer(&sw, layer, b->batch, b->seq_len));
    if (b->n_targets == 0) return ZT_OK;
    for (sw.variant = 0; sw.variant < n_variants; sw.variant++) ZT_TRY(head(&sw, b, logits));
    return m->be->ops->download(m->be, logprobs, ws->base + ws->layout.logprob,
                                (size_t)n_variants * b->n_targets * sizeof(float));
}

zt_status zt_opt_forward_logprobs(zt_model *m, zt_opt_workspace *ws, const zt_batch *b,
                                  float *logprobs, float *logits) {
    return zt_opt_forward_multi(m, ws, b, NULL, logprobs, logits);
}
