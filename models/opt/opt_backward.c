/* OPT's backprop (models/backprop.h, docs/design.md §3.1): the forward keeping each layer's input
 * (and, without checkpointing, its intermediates), the tied head's loss and gradient chunk by
 * chunk, then layer by layer back to the embedding, each layer's forward run again from its saved
 * input to get its intermediates when checkpointing. Every forward
 * op is the one opt_layers.c runs on the same inputs (a residual add's operands may come in the
 * other order: IEEE addition commutes), so the loss is the forward's to the bit. */
#include <math.h>

#include "backprop.h"
#include "core/status.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "opt/opt_internal.h"

/* The family's buffers inside the pass's area. n tokens, r target rows. */
/* A layer's intermediates: one set, recomputed per layer in backward (checkpointing), or one
 * set per layer kept from the forward. */
typedef struct layer_acts {
    float *a1, *q, *k, *v, *att, *x2, *a2, *ffn;
} layer_acts;

typedef struct opt_buffers {
    float *x;    /* (L+1,N,h) layer inputs, then the output */
    float *acts; /* the intermediates' sets, set_floats apart */
    size_t set_floats;
    int n_sets;                                  /* 1 (checkpointing) or L */
    float *dx, *dt1, *dt2, *dq, *dk, *dv, *dffn; /* gradients */
    float *tok, *dtok;                           /* (N,e) project_in's input, gradient */
    float *hid_pre, *hid, *proj, *dhid, *dproj;  /* (R,h) (R,h) (R,e) (R,h) (R,e) */
    float *logits, *lp;                          /* (chunk,V) (R) */
    float *lora;                                 /* (2,N,r) LoRA's rank rows, NULL without */
    size_t n, h, f;
} opt_buffers;

/* Layer l's set: (N,h) x 7 then (N,f). */
static layer_acts acts_of(const opt_buffers *b, int l) {
    float *base = b->acts + (b->n_sets == 1 ? 0 : (size_t)l * b->set_floats);
    const size_t nh = b->n * b->h;
    const layer_acts a = {base,          base + nh,     base + 2 * nh, base + 3 * nh,
                          base + 4 * nh, base + 5 * nh, base + 6 * nh, base + 7 * nh};
    return a;
}

/* Floats are handed out on 64-byte boundaries, as the workspace does. */
static float *take(float *area, size_t *cursor, size_t n_floats) {
    const size_t at = (*cursor + 15) / 16 * 16;
    *cursor = at + n_floats;
    return area ? area + at : NULL;
}

static size_t layout(const zt_model *m, size_t n, size_t r, int checkpoint, float *area,
                     opt_buffers *b) {
    const zt_opt_config *c = zt_opt_config_of(m);
    const size_t h = (size_t)c->hidden_size, f = (size_t)c->ffn_dim;
    const size_t e = (size_t)c->word_embed_proj_dim, layers = (size_t)c->num_hidden_layers;
    const size_t chunk = r < (size_t)m->be->head_chunk_rows ? r : (size_t)m->be->head_chunk_rows;
    const int narrow = e != h;
    size_t cursor = 0;
    b->n = n, b->h = h, b->f = f;
    b->x = take(area, &cursor, (layers + 1) * n * h);
    b->n_sets = checkpoint ? 1 : (int)layers;
    b->set_floats = 7 * n * h + n * f;
    b->acts = take(area, &cursor, (size_t)b->n_sets * b->set_floats);
    b->dx = take(area, &cursor, n * h);
    b->dt1 = take(area, &cursor, n * h);
    b->dt2 = take(area, &cursor, n * h);
    b->dq = take(area, &cursor, n * h);
    b->dk = take(area, &cursor, n * h);
    b->dv = take(area, &cursor, n * h);
    b->dffn = take(area, &cursor, n * f);
    b->tok = narrow ? take(area, &cursor, n * e) : NULL;
    b->dtok = narrow ? take(area, &cursor, n * e) : NULL;
    b->hid_pre = take(area, &cursor, r * h);
    b->hid = take(area, &cursor, r * h);
    b->proj = narrow ? take(area, &cursor, r * e) : NULL;
    b->dhid = take(area, &cursor, r * h);
    b->dproj = narrow ? take(area, &cursor, r * e) : NULL;
    b->logits = take(area, &cursor, chunk * (size_t)c->vocab_size);
    b->lp = take(area, &cursor, r);
    b->lora = m->lora ? take(area, &cursor, 2 * n * (size_t)m->lora->options.rank) : NULL;
    return (cursor + 15) / 16 * 16;
}

size_t zt_opt_grad_area_floats(const zt_model *m, size_t n_tokens, size_t n_rows, int checkpoint) {
    opt_buffers b;
    return layout(m, n_tokens, n_rows, checkpoint, NULL, &b);
}

static size_t larger(size_t a, size_t b) {
    return a > b ? a : b;
}

/* linear's backward over n_rows with the tensor stored as `weight` is, (in, out) features. */
static size_t linear_backward_scratch(const zt_model *m, int weight, int bias, int n_rows,
                                      int in_features, int out_features) {
    if (weight < 0) return 0;
    const zt_scratch_query q = {.op = ZT_SCRATCH_LINEAR_BACKWARD,
                                .in_features = in_features,
                                .out_features = out_features,
                                .weight_dtype = m->tensors[weight].dtype,
                                .bias_dtype = ZT_F32,
                                .has_bias = bias >= 0,
                                .n_rows = n_rows};
    return zt_plan_scratch(m, &q);
}

size_t zt_opt_grad_scratch_bytes(const zt_model *m, int sequences, int seq_len) {
    const zt_opt_family *fam = zt_opt_family_of(m);
    const zt_opt_config *c = &fam->cfg;
    const int h = c->hidden_size, f = c->ffn_dim, e = c->word_embed_proj_dim;
    const int n = sequences * seq_len;
    const int chunk = zt_head_chunk_rows(m->be, n);
    /* the forward's own ops, layers and head, at this shape */
    const zt_workspace_shape shape = {sequences, seq_len, 1, 0, 0};
    size_t most = zt_opt_scratch_bytes(m, &shape);
    most = larger(most, zt_plan_linear_scratch(m, m->lm_head, -1, chunk, e, c->vocab_size));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const zt_opt_layer_ids *L = &fam->layers[l];
        most = larger(most, linear_backward_scratch(m, L->q_w, L->q_b, n, h, h));
        most = larger(most, linear_backward_scratch(m, L->k_w, L->k_b, n, h, h));
        most = larger(most, linear_backward_scratch(m, L->v_w, L->v_b, n, h, h));
        most = larger(most, linear_backward_scratch(m, L->out_w, L->out_b, n, h, h));
        most = larger(most, linear_backward_scratch(m, L->fc1_w, L->fc1_b, n, h, f));
        most = larger(most, linear_backward_scratch(m, L->fc2_w, L->fc2_b, n, f, h));
        const int adapted[] = {L->q_w, L->k_w, L->v_w, L->out_w};
        for (int i = 0; i < 4; i++)
            most = larger(most, zt_lora_backward_scratch(m, adapted[i], n, h, h));
    }
    /* project_out and the final norm see at most every row as a target */
    most = larger(most, linear_backward_scratch(m, fam->project_in, -1, n, e, h));
    most = larger(most, linear_backward_scratch(m, fam->project_out, -1, n, h, e));
    most = larger(most, linear_backward_scratch(m, m->lm_head, -1, chunk, e, c->vocab_size));
    const zt_scratch_query attention = {.op = ZT_SCRATCH_ATTENTION_BACKWARD,
                                        .weight_dtype = ZT_F32,
                                        .bias_dtype = ZT_F32,
                                        .seq_len = seq_len + zt_model_prefix_tokens(m),
                                        .head_dim = h / c->num_attention_heads,
                                        .batch = sequences,
                                        .n_heads = c->num_attention_heads};
    const zt_scratch_query norm = {.op = ZT_SCRATCH_LAYERNORM_BACKWARD,
                                   .weight_dtype = ZT_F32,
                                   .bias_dtype = ZT_F32,
                                   .n_rows = n,
                                   .in_features = h};
    const zt_scratch_query logprob = {.op = ZT_SCRATCH_LOGPROB_BACKWARD,
                                      .weight_dtype = ZT_F32,
                                      .bias_dtype = ZT_F32,
                                      .n_rows = chunk};
    most = larger(most, zt_plan_scratch(m, &attention));
    most = larger(most, zt_plan_scratch(m, &logprob));
    return larger(most, zt_plan_scratch(m, &norm));
}

/* ---- helpers ---- */

typedef struct pass_ctx {
    const zt_grad_pass *p;
    const zt_model *m;
    zt_backend *be;
    const zt_opt_family *fam;
    const zt_opt_config *c;
    opt_buffers b;
    int n, r; /* tokens, target rows */
} pass_ctx;

static float *grad_of(const pass_ctx *x, int id) {
    return id < 0 || x->p->offsets[id] == ZT_NO_GRADIENT ? NULL : x->p->grads + x->p->offsets[id];
}

static zt_weight weight(const pass_ctx *x, int id) {
    return zt_model_weight(x->m, id);
}

static zt_status linear(const pass_ctx *x, float *out, const float *in, int w, int bias, int rows,
                        int in_features, int out_features, int relu) {
    return x->be->ops->linear(x->be, out, in, weight(x, w), weight(x, bias), rows, in_features,
                              out_features, relu);
}

/* The gradient of linear(w, bias): d_in (NULL: not wanted) and the parameters' (+=). */
static zt_status linear_back(const pass_ctx *x, float *d_in, float *d_out, const float *in,
                             const float *out, int w, int bias, int rows, int in_features,
                             int out_features, int relu) {
    return x->be->ops->linear_backward(x->be, d_in, grad_of(x, w), grad_of(x, bias), d_out, in, out,
                                       weight(x, w), rows, in_features, out_features, relu);
}

static zt_status layer_norm(const pass_ctx *x, float *out, const float *in, int gamma, int beta,
                            int rows) {
    return x->be->ops->layernorm(x->be, out, in, weight(x, gamma), weight(x, beta), rows,
                                 x->c->hidden_size, ZT_OPT_LAYER_NORM_EPS);
}

static zt_status layer_norm_back(const pass_ctx *x, float *d_in, const float *d_out,
                                 const float *in, int gamma, int beta, int rows) {
    return x->be->ops->layernorm_backward(x->be, d_in, grad_of(x, gamma), grad_of(x, beta), d_out,
                                          in, weight(x, gamma), rows, x->c->hidden_size,
                                          ZT_OPT_LAYER_NORM_EPS);
}

static zt_status add(const pass_ctx *x, float *dst, const float *src) {
    return x->be->ops->add(x->be, dst, src, (size_t)x->n * (size_t)x->c->hidden_size);
}

/* LoRA's branch (lora_backprop.c) on the pass's rank rows. */
static zt_status lora_forward(const pass_ctx *x, float *out, const float *in, int adapted,
                              int in_features, int out_features, float *spare) {
    return zt_lora_forward(x->m, adapted, out, in, x->n, in_features, out_features, x->b.lora,
                           spare);
}

static zt_status lora_backward(const pass_ctx *x, float *d_in, float *d_out, const float *in,
                               int adapted, int in_features, int out_features, float *spare) {
    int a, b;
    if (!zt_lora_of(x->m, adapted, &a, &b)) return ZT_OK;
    return zt_lora_backward(x->m, adapted, d_in, d_out, in, x->n, in_features, out_features,
                            x->b.lora, spare, grad_of(x, a), grad_of(x, b));
}

static float q_scale_of(const zt_opt_config *c) {
    /* HF computes head_dim**-0.5 in Python (double) and multiplies the f32 tensor by it. */
    return (float)(1.0 / sqrt((double)(c->hidden_size / c->num_attention_heads)));
}

/* ---- a decoder layer ---- */

/* Layer l's forward from x_in into x_out, leaving its intermediates in the buffers. */
static zt_status layer_forward(const pass_ctx *x, int l, const layer_acts *a, const float *x_in,
                               float *x_out) {
    const zt_opt_layer_ids *id = &x->fam->layers[l];
    const int n = x->n, h = x->c->hidden_size, f = x->c->ffn_dim;
    const int heads = x->c->num_attention_heads;
    const float *attn_in = x_in;
    if (x->c->do_layer_norm_before) {
        ZT_TRY(layer_norm(x, a->a1, x_in, id->attn_ln_g, id->attn_ln_b, n));
        attn_in = a->a1;
    }
    /* LoRA's spare (N,h): dq, free until the layer's attention backward */
    float *spare = x->b.dq;
    ZT_TRY(linear(x, a->q, attn_in, id->q_w, id->q_b, n, h, h, 0));
    ZT_TRY(lora_forward(x, a->q, attn_in, id->q_w, h, h, spare));
    ZT_TRY(linear(x, a->k, attn_in, id->k_w, id->k_b, n, h, h, 0));
    ZT_TRY(lora_forward(x, a->k, attn_in, id->k_w, h, h, spare));
    ZT_TRY(linear(x, a->v, attn_in, id->v_w, id->v_b, n, h, h, 0));
    ZT_TRY(lora_forward(x, a->v, attn_in, id->v_w, h, h, spare));
    if (x->p->prefix)
        ZT_TRY(zt_prefix_attention(x->m, l, x->p->prefix, a->att, a->q, a->k, a->v,
                                   x->p->batch->batch, x->p->batch->seq_len, x->p->mask, heads,
                                   h / heads, q_scale_of(x->c), NULL, NULL));
    else
        ZT_TRY(x->be->ops->attention(x->be, a->att, a->q, a->k, a->v, x->p->mask,
                                     x->p->batch->batch, x->p->batch->seq_len, heads, h / heads,
                                     q_scale_of(x->c)));
    if (x->c->do_layer_norm_before) {
        /* x2 = x + o; h2 = LN(x2); out = x2 + fc2(relu(fc1(h2))) */
        ZT_TRY(linear(x, a->x2, a->att, id->out_w, id->out_b, n, h, h, 0));
        ZT_TRY(lora_forward(x, a->x2, a->att, id->out_w, h, h, spare));
        ZT_TRY(add(x, a->x2, x_in));
        ZT_TRY(layer_norm(x, a->a2, a->x2, id->ffn_ln_g, id->ffn_ln_b, n));
        ZT_TRY(linear(x, a->ffn, a->a2, id->fc1_w, id->fc1_b, n, h, f, 1));
        ZT_TRY(linear(x, x_out, a->ffn, id->fc2_w, id->fc2_b, n, f, h, 0));
        return add(x, x_out, a->x2);
    }
    /* s1 = x + o; x2 = LN(s1); s2 = x2 + fc2(relu(fc1(x2))); out = LN(s2) */
    ZT_TRY(linear(x, a->a1, a->att, id->out_w, id->out_b, n, h, h, 0));
    ZT_TRY(lora_forward(x, a->a1, a->att, id->out_w, h, h, spare));
    ZT_TRY(add(x, a->a1, x_in));
    ZT_TRY(layer_norm(x, a->x2, a->a1, id->attn_ln_g, id->attn_ln_b, n));
    ZT_TRY(linear(x, a->ffn, a->x2, id->fc1_w, id->fc1_b, n, h, f, 1));
    ZT_TRY(linear(x, a->a2, a->ffn, id->fc2_w, id->fc2_b, n, f, h, 0));
    ZT_TRY(add(x, a->a2, a->x2));
    return layer_norm(x, x_out, a->a2, id->ffn_ln_g, id->ffn_ln_b, n);
}

/* q, k and v's gradients, from dq, dk, dv, into d_in (=) and their parameters. dt is a spare
 * (N,h) buffer. */
static zt_status qkv_back(const pass_ctx *x, int l, float *d_in, float *dt, const float *in) {
    const zt_opt_layer_ids *id = &x->fam->layers[l];
    const opt_buffers *b = &x->b;
    const int n = x->n, h = x->c->hidden_size;
    ZT_TRY(linear_back(x, d_in, b->dq, in, NULL, id->q_w, id->q_b, n, h, h, 0));
    ZT_TRY(lora_backward(x, d_in, b->dq, in, id->q_w, h, h, dt));
    ZT_TRY(linear_back(x, dt, b->dk, in, NULL, id->k_w, id->k_b, n, h, h, 0));
    ZT_TRY(add(x, d_in, dt));
    ZT_TRY(lora_backward(x, d_in, b->dk, in, id->k_w, h, h, dt));
    ZT_TRY(linear_back(x, dt, b->dv, in, NULL, id->v_w, id->v_b, n, h, h, 0));
    ZT_TRY(add(x, d_in, dt));
    return lora_backward(x, d_in, b->dv, in, id->v_w, h, h, dt);
}

/* dq, dk, dv from dt1, the attention output's gradient; with a prefix, its gradient too. */
static zt_status attention_back(const pass_ctx *x, int l, const layer_acts *a) {
    const opt_buffers *b = &x->b;
    const zt_batch *batch = x->p->batch;
    const int h = x->c->hidden_size, heads = x->c->num_attention_heads;
    if (x->p->prefix) {
        const int keys = zt_prefix_keys_id(x->m, l);
        return zt_prefix_attention_backward(x->m, l, x->p->prefix, b->dq, b->dk, b->dv, b->dt1,
                                            a->q, a->k, a->v, a->att, batch->batch, batch->seq_len,
                                            heads, h / heads, q_scale_of(x->c), grad_of(x, keys),
                                            grad_of(x, keys + 1));
    }
    return x->be->ops->attention_backward(x->be, b->dq, b->dk, b->dv, b->dt1, a->q, a->k, a->v,
                                          a->att, x->p->mask, batch->batch, batch->seq_len, heads,
                                          h / heads, q_scale_of(x->c));
}

/* dx: the gradient of layer l's output on entry, of its input on return. The intermediates are
 * those of layer_forward(l). */
static zt_status layer_backward(const pass_ctx *x, int l, const layer_acts *a, const float *x_in) {
    const zt_opt_layer_ids *id = &x->fam->layers[l];
    const opt_buffers *b = &x->b;
    const int n = x->n, h = x->c->hidden_size, f = x->c->ffn_dim;
    if (x->c->do_layer_norm_before) {
        ZT_TRY(linear_back(x, b->dffn, b->dx, a->ffn, NULL, id->fc2_w, id->fc2_b, n, f, h, 0));
        ZT_TRY(linear_back(x, b->dt1, b->dffn, a->a2, a->ffn, id->fc1_w, id->fc1_b, n, h, f, 1));
        ZT_TRY(layer_norm_back(x, b->dt1, b->dt1, a->x2, id->ffn_ln_g, id->ffn_ln_b, n));
        ZT_TRY(add(x, b->dx, b->dt1)); /* dx: d x2 */
        ZT_TRY(linear_back(x, b->dt1, b->dx, a->att, NULL, id->out_w, id->out_b, n, h, h, 0));
        ZT_TRY(lora_backward(x, b->dt1, b->dx, a->att, id->out_w, h, h, b->dq));
        ZT_TRY(attention_back(x, l, a));
        ZT_TRY(qkv_back(x, l, b->dt2, b->dt1, a->a1));
        ZT_TRY(layer_norm_back(x, b->dt2, b->dt2, x_in, id->attn_ln_g, id->attn_ln_b, n));
        return add(x, b->dx, b->dt2);
    }
    ZT_TRY(layer_norm_back(x, b->dt1, b->dx, a->a2, id->ffn_ln_g, id->ffn_ln_b, n)); /* d s2 */
    ZT_TRY(linear_back(x, b->dffn, b->dt1, a->ffn, NULL, id->fc2_w, id->fc2_b, n, f, h, 0));
    ZT_TRY(linear_back(x, b->dt2, b->dffn, a->x2, a->ffn, id->fc1_w, id->fc1_b, n, h, f, 1));
    ZT_TRY(add(x, b->dt1, b->dt2)); /* dt1: d x2 */
    ZT_TRY(layer_norm_back(x, b->dx, b->dt1, a->a1, id->attn_ln_g, id->attn_ln_b, n)); /* d s1 */
    ZT_TRY(linear_back(x, b->dt1, b->dx, a->att, NULL, id->out_w, id->out_b, n, h, h, 0));
    ZT_TRY(lora_backward(x, b->dt1, b->dx, a->att, id->out_w, h, h, b->dq));
    ZT_TRY(attention_back(x, l, a));
    ZT_TRY(qkv_back(x, l, b->dt1, b->dt2, x_in));
    return add(x, b->dx, b->dt1);
}

/* ---- embedding and head ---- */

/* Prompt tuning: each sequence's first N token rows from the prompt table, as the sweep's
 * embedding reads them (opt_layers.c). */
static zt_status prompt_rows(const pass_ctx *x, float *rows /* (B,T,e) */) {
    if (!x->m->prompt) return ZT_OK;
    return zt_prompt_gather(x->m, rows, x->p->batch->batch, x->p->batch->seq_len, NULL);
}

/* The prompt table's gradient: the token rows' gradient at each sequence's virtual slots. */
static zt_status prompt_rows_back(const pass_ctx *x, const float *d_rows /* (B,T,e) */) {
    float *d_table = x->m->prompt ? grad_of(x, x->m->prompt->table) : NULL;
    if (!d_table) return ZT_OK;
    return zt_prompt_gather_backward(x->m, d_table, d_rows, x->p->batch->batch,
                                     x->p->batch->seq_len);
}

static zt_status embed_forward(const pass_ctx *x, float *x0) {
    const zt_backend_ops *op = x->be->ops;
    const zt_opt_config *c = x->c;
    const int n = x->n;
    const zt_weight table = weight(x, x->m->embed_tokens);
    if (x->fam->project_in >= 0) {
        ZT_TRY(op->gather_rows(x->be, x->b.tok, x->p->ids, table, n, c->vocab_size,
                               c->word_embed_proj_dim, 0, NULL));
        ZT_TRY(prompt_rows(x, x->b.tok));
        ZT_TRY(linear(x, x0, x->b.tok, x->fam->project_in, -1, n, c->word_embed_proj_dim,
                      c->hidden_size, 0));
    } else {
        ZT_TRY(op->gather_rows(x->be, x0, x->p->ids, table, n, c->vocab_size, c->hidden_size, 0,
                               NULL));
        ZT_TRY(prompt_rows(x, x0));
    }
    return op->gather_rows(x->be, x0, x->p->positions, weight(x, x->fam->embed_positions), n,
                           c->max_position_embeddings + 2, c->hidden_size, 1, NULL);
}

static zt_status embed_backward(const pass_ctx *x) {
    const zt_backend_ops *op = x->be->ops;
    const zt_opt_config *c = x->c;
    const int n = x->n;
    float *d_positions = grad_of(x, x->fam->embed_positions);
    if (d_positions)
        ZT_TRY(op->gather_rows_backward(x->be, d_positions, x->b.dx, x->p->positions, n,
                                        c->max_position_embeddings + 2, c->hidden_size));
    /* the token table's gradient (and project_in's, the prompt table's) only when some is
     * wanted */
    const int want_prompt = x->m->prompt && grad_of(x, x->m->prompt->table);
    if (!grad_of(x, x->m->embed_tokens) && !want_prompt &&
        (x->fam->project_in < 0 || !grad_of(x, x->fam->project_in)))
        return ZT_OK;
    const float *d_tokens = x->b.dx;
    if (x->fam->project_in >= 0) {
        ZT_TRY(linear_back(x, x->b.dtok, x->b.dx, x->b.tok, NULL, x->fam->project_in, -1, n,
                           c->word_embed_proj_dim, c->hidden_size, 0));
        d_tokens = x->b.dtok;
    }
    ZT_TRY(prompt_rows_back(x, d_tokens));
    float *d_table = grad_of(x, x->m->embed_tokens);
    if (!d_table) return ZT_OK;
    /* a prompt-tuned model's base is frozen: no token-table gradient reads the virtual slots */
    return op->gather_rows_backward(x->be, d_table, d_tokens, x->p->ids, n, c->vocab_size,
                                    c->word_embed_proj_dim);
}

/* The head on the target rows of the final stream: log-probabilities into b.lp, the table's
 * gradient, and d of the final stream into dx (zeroed first: only target rows get one). */
static zt_status head(const pass_ctx *x, const float *stream) {
    const zt_backend_ops *op = x->be->ops;
    const zt_opt_family *fam = x->fam;
    const opt_buffers *b = &x->b;
    const int r_count = x->r, h = x->c->hidden_size, e = x->c->word_embed_proj_dim;
    const int vocab = x->c->vocab_size;
    ZT_TRY(op->gather_rows(x->be, b->hid_pre, x->p->rows, (zt_weight){stream, ZT_F32}, r_count,
                           x->n, h, 0, NULL));
    const float *normed = b->hid_pre;
    if (fam->final_ln_g >= 0) {
        ZT_TRY(layer_norm(x, b->hid, b->hid_pre, fam->final_ln_g, fam->final_ln_b, r_count));
        normed = b->hid;
    }
    const float *head_in = normed;
    float *d_head_in = b->dhid;
    if (fam->project_out >= 0) {
        ZT_TRY(linear(x, b->proj, normed, fam->project_out, -1, r_count, h, e, 0));
        head_in = b->proj;
        d_head_in = b->dproj;
    }
    const zt_weight table = weight(x, x->m->lm_head);
    float *d_table = grad_of(x, x->m->lm_head);
    const int chunk = zt_head_chunk_rows(x->be, r_count);
    for (int r0 = 0; r0 < r_count; r0 += chunk) {
        const int rows = r_count - r0 < chunk ? r_count - r0 : chunk;
        const float *in = head_in + (size_t)r0 * e;
        ZT_TRY(
            op->linear(x->be, b->logits, in, table, zt_model_weight(x->m, -1), rows, e, vocab, 0));
        ZT_TRY(op->target_logprobs(x->be, b->lp + r0, b->logits, x->p->targets + r0, rows, vocab));
        ZT_TRY(op->target_logprobs_backward(x->be, b->logits, b->logits, x->p->targets + r0,
                                            x->p->d_logprob + r0, rows, vocab));
        ZT_TRY(op->linear_backward(x->be, d_head_in + (size_t)r0 * e, d_table, NULL, b->logits, in,
                                   NULL, table, rows, e, vocab, 0));
    }
    if (fam->project_out >= 0)
        ZT_TRY(linear_back(x, b->dhid, b->dproj, normed, NULL, fam->project_out, -1, r_count, h, e,
                           0));
    if (fam->final_ln_g >= 0)
        ZT_TRY(layer_norm_back(x, b->dhid, b->dhid, b->hid_pre, fam->final_ln_g, fam->final_ln_b,
                               r_count));
    ZT_TRY(zt_backend_zero(x->be, b->dx, (size_t)x->n * (size_t)h));
    return op->gather_rows_backward(x->be, b->dx, b->dhid, x->p->rows, r_count, x->n, h);
}

zt_status zt_opt_grad(const zt_grad_pass *p) {
    pass_ctx x = {p, p->model, p->model->be, zt_opt_family_of(p->model), NULL, {0}, 0, 0};
    x.c = &x.fam->cfg;
    x.n = p->batch->batch * p->batch->seq_len;
    x.r = p->batch->n_targets;
    layout(x.m, (size_t)x.n, (size_t)x.r, p->checkpoint, p->area, &x.b);
    const size_t stride = (size_t)x.n * (size_t)x.c->hidden_size;
    const int layers = x.c->num_hidden_layers;

    ZT_TRY(embed_forward(&x, x.b.x));
    for (int l = 0; l < layers; l++) {
        const layer_acts a = acts_of(&x.b, l);
        ZT_TRY(
            layer_forward(&x, l, &a, x.b.x + (size_t)l * stride, x.b.x + (size_t)(l + 1) * stride));
    }
    ZT_TRY(head(&x, x.b.x + (size_t)layers * stride));
    for (int l = layers - 1; l >= 0; l--) {
        const layer_acts a = acts_of(&x.b, l);
        /* Checkpointing: the layer's intermediates again, from its input; the recomputed output
         * is not needed and goes to a buffer the backward rewrites. */
        if (x.b.n_sets == 1) ZT_TRY(layer_forward(&x, l, &a, x.b.x + (size_t)l * stride, x.b.dt1));
        ZT_TRY(layer_backward(&x, l, &a, x.b.x + (size_t)l * stride));
    }
    ZT_TRY(embed_backward(&x));
    return x.be->ops->download(x.be, p->logprobs, x.b.lp, (size_t)x.r * sizeof(float));
}
