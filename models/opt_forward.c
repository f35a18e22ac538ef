/* The OPT forward pass (spec §1.3) over a padded batch, returning log-probabilities only for the
 * rows that carry a target: the LM head is the largest GEMM and most rows never need it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "opt.h"

enum { BUFFER_ALIGN = 64 };

/* Byte offsets of every activation buffer inside the workspace's single allocation. One
 * function computes them for both the plan and the allocation, so the two cannot disagree. */
typedef struct ws_layout {
    size_t x, h, q, k, v, attn, ffn, tok, hid, hid_proj, logits, logprob;
    size_t ids, pos, mask, rows, targets;
    size_t total;
} ws_layout;

static size_t take(size_t *cursor, size_t n_bytes) {
    size_t at = (*cursor + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
    *cursor = at + n_bytes;
    return at;
}

static ws_layout plan_layout(const zt_opt_config *c, int max_batch, int max_seq_len) {
    size_t n = (size_t)max_batch * (size_t)max_seq_len, f = sizeof(float), i = sizeof(int32_t);
    size_t h = (size_t)c->hidden_size, e = (size_t)c->word_embed_proj_dim;
    size_t chunk = n < ZT_LM_HEAD_CHUNK_ROWS ? n : ZT_LM_HEAD_CHUNK_ROWS;
    ws_layout L;
    size_t cursor = 0;
    L.x = take(&cursor, n * h * f);
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
    L.logprob = take(&cursor, n * f);
    L.ids = take(&cursor, n * i);
    L.pos = take(&cursor, n * i);
    L.mask = take(&cursor, n * i);
    L.rows = take(&cursor, n * i);
    L.targets = take(&cursor, n * i);
    L.total = cursor;
    return L;
}

void zt_opt_plan_memory(const zt_opt_config *cfg, size_t weights_bytes, int max_batch,
                        int max_seq_len, zt_opt_memory_plan *plan) {
    plan->weights_bytes = weights_bytes;
    plan->activation_bytes = plan_layout(cfg, max_batch, max_seq_len).total;
    plan->total_bytes = plan->weights_bytes + plan->activation_bytes;
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
    int max_batch, max_seq_len;
    ws_layout layout;
    char *base;
};

zt_status zt_opt_workspace_create(zt_model *model, int max_batch, int max_seq_len,
                                  zt_opt_workspace **out) {
    *out = NULL;
    if (max_batch <= 0 || max_seq_len <= 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "workspace: batch %d x sequence %d must be positive",
                       max_batch, max_seq_len);
    zt_opt_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return zt_fail(ZT_ERR_NOMEM, "allocating the workspace descriptor");
    ws->model = model;
    ws->max_batch = max_batch;
    ws->max_seq_len = max_seq_len;
    ws->layout = plan_layout(&model->cfg, max_batch, max_seq_len);
    zt_status s = model->be->ops->alloc(model->be, ws->layout.total, ZT_MEM_ACTIVATIONS,
                                        (void **)&ws->base);
    if (s != ZT_OK) {
        free(ws);
        return s;
    }
    *out = ws;
    return ZT_OK;
}

void zt_opt_workspace_free(zt_opt_workspace *ws) {
    if (!ws) return;
    zt_backend *be = ws->model->be;
    be->ops->free(be, ws->base, ws->layout.total, ZT_MEM_ACTIVATIONS);
    free(ws);
}

static zt_weight weight_of(const zt_model *m, int id) {
    zt_weight w = {NULL, ZT_F32};
    if (id >= 0) {
        w.data = (const char *)m->weights + m->tensors[id].offset;
        w.dtype = m->tensors[id].dtype;
    }
    return w;
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

static zt_status validate_batch(const zt_opt_workspace *ws, const zt_batch *b) {
    if (b->batch <= 0 || b->seq_len <= 0 || b->batch > ws->max_batch ||
        b->seq_len > ws->max_seq_len)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "batch %d x %d does not fit the workspace (%d x %d)", b->batch, b->seq_len,
                       ws->max_batch, ws->max_seq_len);
    int n = b->batch * b->seq_len;
    if (b->n_targets < 0 || b->n_targets > n)
        return zt_fail(ZT_ERR_INVALID_ARG, "%d targets for a batch of %d rows", b->n_targets, n);
    for (int r = 0; r < b->n_targets; r++)
        if (b->target_rows[r] < 0 || b->target_rows[r] >= n)
            return zt_fail(ZT_ERR_INVALID_ARG, "target %d: row %d outside the batch's %d rows", r,
                           b->target_rows[r], n);
    return ZT_OK;
}

static zt_status decoder_layer(zt_model *m, const ws_layout *L, char *base, int layer, int batch,
                               int seq_len) {
    const zt_backend_ops *op = m->be->ops;
    zt_backend *be = m->be;
    const zt_opt_layer_ids *ids = &m->layers[layer];
    const zt_opt_config *c = &m->cfg;
    int n = batch * seq_len, h = c->hidden_size, heads = c->num_attention_heads;
    int head_dim = h / heads;
    float *x = (float *)(base + L->x), *hbuf = (float *)(base + L->h);
    float *q = (float *)(base + L->q), *k = (float *)(base + L->k), *v = (float *)(base + L->v);
    float *attn = (float *)(base + L->attn), *ffn = (float *)(base + L->ffn);
    const int32_t *mask = (const int32_t *)(base + L->mask);
    const float eps = 1e-5f;
    /* HF computes head_dim**-0.5 in Python (double) and multiplies the f32 tensor by it. */
    const float q_scale = (float)(1.0 / sqrt((double)head_dim));
    int pre_ln = c->do_layer_norm_before;

    const float *attn_in = x;
    if (pre_ln) {
        ZT_TRY(op->layernorm(be, hbuf, x, weight_of(m, ids->attn_ln_g), weight_of(m, ids->attn_ln_b),
                             n, h, eps));
        attn_in = hbuf;
    }
    ZT_TRY(op->linear(be, q, attn_in, weight_of(m, ids->q_w), weight_of(m, ids->q_b), n, h, h, 0));
    ZT_TRY(op->linear(be, k, attn_in, weight_of(m, ids->k_w), weight_of(m, ids->k_b), n, h, h, 0));
    ZT_TRY(op->linear(be, v, attn_in, weight_of(m, ids->v_w), weight_of(m, ids->v_b), n, h, h, 0));
    ZT_TRY(op->attention(be, attn, q, k, v, mask, batch, seq_len, heads, head_dim, q_scale));
    ZT_TRY(op->linear(be, hbuf, attn, weight_of(m, ids->out_w), weight_of(m, ids->out_b), n, h, h, 0));
    ZT_TRY(op->add(be, x, hbuf, (size_t)n * h));
    if (!pre_ln)
        ZT_TRY(op->layernorm(be, x, x, weight_of(m, ids->attn_ln_g), weight_of(m, ids->attn_ln_b), n,
                             h, eps));

    const float *ffn_in = x;
    if (pre_ln) {
        ZT_TRY(op->layernorm(be, hbuf, x, weight_of(m, ids->ffn_ln_g), weight_of(m, ids->ffn_ln_b),
                             n, h, eps));
        ffn_in = hbuf;
    }
    ZT_TRY(op->linear(be, ffn, ffn_in, weight_of(m, ids->fc1_w), weight_of(m, ids->fc1_b), n, h,
                      c->ffn_dim, 1));
    ZT_TRY(op->linear(be, q, ffn, weight_of(m, ids->fc2_w), weight_of(m, ids->fc2_b), n, c->ffn_dim,
                      h, 0));
    ZT_TRY(op->add(be, x, q, (size_t)n * h));
    if (!pre_ln)
        ZT_TRY(op->layernorm(be, x, x, weight_of(m, ids->ffn_ln_g), weight_of(m, ids->ffn_ln_b), n,
                             h, eps));
    return ZT_OK;
}

zt_status zt_opt_forward_logprobs(zt_model *m, zt_opt_workspace *ws, const zt_batch *b,
                                  float *logprobs, float *logits_out) {
    ZT_TRY(validate_batch(ws, b));
    const zt_backend_ops *op = m->be->ops;
    zt_backend *be = m->be;
    const zt_opt_config *c = &m->cfg;
    const ws_layout *L = &ws->layout;
    char *base = ws->base;
    int n = b->batch * b->seq_len, h = c->hidden_size, e = c->word_embed_proj_dim;
    int r_count = b->n_targets;
    float *x = (float *)(base + L->x);

    int32_t *pos_rows = malloc((size_t)n * sizeof *pos_rows);
    if (!pos_rows) return zt_fail(ZT_ERR_NOMEM, "allocating position ids");
    zt_status s = position_rows(m, b, pos_rows);
    if (s == ZT_OK) s = op->upload(be, base + L->pos, pos_rows, (size_t)n * sizeof(int32_t));
    free(pos_rows);
    ZT_TRY(s);
    ZT_TRY(op->upload(be, base + L->ids, b->input_ids, (size_t)n * sizeof(int32_t)));
    ZT_TRY(op->upload(be, base + L->mask, b->attention_mask, (size_t)n * sizeof(int32_t)));
    if (r_count > 0) {
        ZT_TRY(op->upload(be, base + L->rows, b->target_rows, (size_t)r_count * sizeof(int32_t)));
        ZT_TRY(op->upload(be, base + L->targets, b->target_ids, (size_t)r_count * sizeof(int32_t)));
    }

    /* embeddings: tokens (through project_in when e != h), plus learned positions */
    const int32_t *ids = (const int32_t *)(base + L->ids);
    if (m->project_in >= 0) {
        float *tok = (float *)(base + L->tok);
        ZT_TRY(op->gather_rows(be, tok, ids, weight_of(m, m->embed_tokens), n, c->vocab_size, e, 0));
        ZT_TRY(op->linear(be, x, tok, weight_of(m, m->project_in), weight_of(m, -1), n, e, h, 0));
    } else {
        ZT_TRY(op->gather_rows(be, x, ids, weight_of(m, m->embed_tokens), n, c->vocab_size, h, 0));
    }
    ZT_TRY(op->gather_rows(be, x, (const int32_t *)(base + L->pos), weight_of(m, m->embed_positions),
                           n, c->max_position_embeddings + 2, h, 1));

    for (int layer = 0; layer < c->num_hidden_layers; layer++)
        ZT_TRY(decoder_layer(m, L, base, layer, b->batch, b->seq_len));
    if (r_count == 0) return ZT_OK;

    /* Only target rows go through the final norm, project_out and the tied head: all three are
     * row-wise, so selecting first changes nothing but the cost. */
    float *hid = (float *)(base + L->hid);
    ZT_TRY(op->gather_rows(be, hid, (const int32_t *)(base + L->rows), activation(x), r_count, n, h,
                           0));
    if (m->final_ln_g >= 0)
        ZT_TRY(op->layernorm(be, hid, hid, weight_of(m, m->final_ln_g), weight_of(m, m->final_ln_b),
                             r_count, h, 1e-5f));
    const float *head_in = hid;
    if (m->project_out >= 0) {
        float *proj = (float *)(base + L->hid_proj);
        ZT_TRY(op->linear(be, proj, hid, weight_of(m, m->project_out), weight_of(m, -1), r_count, h,
                          e, 0));
        head_in = proj;
    }
    float *logits = (float *)(base + L->logits);
    float *lp = (float *)(base + L->logprob);
    const int32_t *targets = (const int32_t *)(base + L->targets);
    for (int r0 = 0; r0 < r_count; r0 += ZT_LM_HEAD_CHUNK_ROWS) {
        int rows = r_count - r0 < ZT_LM_HEAD_CHUNK_ROWS ? r_count - r0 : ZT_LM_HEAD_CHUNK_ROWS;
        ZT_TRY(op->linear(be, logits, head_in + (size_t)r0 * e, weight_of(m, m->embed_tokens),
                          weight_of(m, -1), rows, e, c->vocab_size, 0));
        ZT_TRY(op->target_logprobs(be, lp + r0, logits, targets + r0, rows, c->vocab_size));
        if (logits_out)
            ZT_TRY(op->download(be, logits_out + (size_t)r0 * c->vocab_size, logits,
                                (size_t)rows * c->vocab_size * sizeof(float)));
    }
    return op->download(be, logprobs, lp, (size_t)r_count * sizeof(float));
}
