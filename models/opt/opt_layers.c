/* OPT's layer code (docs/spec.md §1.3) on the generic sweep (models/sweep.c): the token and
 * position embeddings, a decoder layer (pre- or post-LN), and the final norm and projection in
 * front of the tied head. Every weight is read through zt_sweep_weight / zt_sweep_gather, so
 * the same code runs the plain forward and each perturbed variant. */
#include <math.h>

#include "core/status.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "opt/opt_internal.h"

/* The workspace's family buffers, in the order plan_buffers lists them. */
/* k, v and q in the order opt_table.c stores their weights, in consecutive buffers of one size:
 * one batched GEMM writes all three (zt_sweep_linear_shared_input) */
enum layer_buffer { BUF_H, BUF_K, BUF_V, BUF_Q, BUF_ATTN, BUF_FFN, BUF_TOKENS, BUF_LORA };
enum head_buffer { BUF_PROJECTED };

void zt_opt_plan_buffers(const zt_model *m, size_t n_tokens, size_t *layer_bytes,
                         size_t *head_bytes) {
    const zt_opt_config *c = zt_opt_config_of(m);
    size_t h = (size_t)c->hidden_size, e = (size_t)c->word_embed_proj_dim, f = sizeof(float);
    layer_bytes[BUF_H] = layer_bytes[BUF_Q] = layer_bytes[BUF_K] = layer_bytes[BUF_V] =
        layer_bytes[BUF_ATTN] = n_tokens * h * f;
    /* the FFN buffer also holds q/k/v's input rounded to half (2 bytes a value) before fc1 */
    layer_bytes[BUF_FFN] = n_tokens * (size_t)c->ffn_dim * f;
    if (layer_bytes[BUF_FFN] < n_tokens * h * 2) layer_bytes[BUF_FFN] = n_tokens * h * 2;
    /* project_in's input and project_out's output exist only when the widths differ */
    layer_bytes[BUF_TOKENS] = e != h ? n_tokens * e * f : 0;
    head_bytes[BUF_PROJECTED] = e != h ? n_tokens * e * f : 0;
    /* LoRA's (N, r) down-projection and its scaled copy */
    layer_bytes[BUF_LORA] = m->lora ? 2 * n_tokens * (size_t)m->lora->options.rank * f : 0;
}

static size_t max_size(size_t a, size_t b) {
    return a > b ? a : b;
}

/* A LoRA branch's three linears: A (in -> r), the scale (r -> r), B (r -> out). */
static size_t lora_scratch(const zt_model *m, int weight, int n, int in_features,
                           int out_features) {
    int a, b;
    if (!zt_lora_of(m, weight, &a, &b)) return 0;
    const int r = m->lora->options.rank;
    zt_scratch_query scale = {.op = ZT_SCRATCH_LINEAR,
                              .in_features = r,
                              .out_features = r,
                              .weight_dtype = ZT_F32,
                              .bias_dtype = ZT_F32,
                              .n_rows = n};
    size_t most = zt_plan_scratch(m, &scale);
    most = max_size(most, zt_plan_linear_scratch(m, a, -1, n, in_features, r));
    return max_size(most, zt_plan_linear_scratch(m, b, -1, n, r, out_features));
}

size_t zt_opt_scratch_bytes(const zt_model *m, const zt_workspace_shape *shape) {
    const zt_opt_family *fam = zt_opt_family_of(m);
    const zt_opt_config *c = &fam->cfg;
    int h = c->hidden_size, f = c->ffn_dim, e = c->word_embed_proj_dim;
    int n = shape->max_batch * shape->max_seq_len;
    size_t most = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const zt_opt_layer_ids *L = &fam->layers[l];
        most = max_size(most, zt_plan_linear_scratch(m, L->q_w, L->q_b, n, h, h));
        most = max_size(most, zt_plan_linear_scratch(m, L->k_w, L->k_b, n, h, h));
        most = max_size(most, zt_plan_linear_scratch(m, L->v_w, L->v_b, n, h, h));
        most = max_size(most, zt_plan_linear_batched_scratch(m, L->k_w, L->k_b, n, h, h, 3));
        most = max_size(most, zt_plan_linear_scratch(m, L->out_w, L->out_b, n, h, h));
        most = max_size(most, zt_plan_linear_scratch(m, L->fc1_w, L->fc1_b, n, h, f));
        most = max_size(most, zt_plan_linear_half_out_scratch(m, L->fc1_w, L->fc1_b, n, h, f));
        most = max_size(most, zt_plan_linear_scratch(m, L->fc2_w, L->fc2_b, n, f, h));
        const int adapted[] = {L->q_w, L->k_w, L->v_w, L->out_w};
        for (int i = 0; i < 4; i++)
            most = max_size(most, lora_scratch(m, adapted[i], n, h, h));
    }
    /* project_in sees every token; project_out only the rows with a target (at most n) */
    most = max_size(most, zt_plan_linear_scratch(m, fam->project_in, -1, n, e, h));
    most = max_size(most, zt_plan_linear_scratch(m, fam->project_out, -1, n, h, e));
    /* batch, heads and q's dtype: the CUDA backend's cuDNN path sizes its operands by them */
    zt_scratch_query attention = {
        .op = ZT_SCRATCH_ATTENTION,
        .weight_dtype = c->num_hidden_layers > 0 ? m->tensors[fam->layers[0].q_w].dtype : ZT_F32,
        .bias_dtype = ZT_F32,
        .seq_len = shape->max_seq_len + zt_model_prefix_tokens(m),
        .head_dim = h / c->num_attention_heads,
        .batch = shape->max_batch,
        .n_heads = c->num_attention_heads};
    return max_size(most, zt_plan_scratch(m, &attention));
}

/* Prompt tuning: the virtual slots of each sequence's token rows (width e) from the prompt
 * table, perturbed as the variant reads it. */
static zt_status gather_prompt(const zt_sweep *sw, float *rows /* (B,T,e) */) {
    if (sw->n_virtual == 0) return ZT_OK;
    zt_gather_perturbation storage;
    const zt_gather_perturbation *p;
    ZT_TRY(zt_sweep_gather(sw, sw->model->prompt->table, &storage, &p));
    return zt_prompt_gather(sw->model, rows, sw->batch->batch, sw->batch->seq_len, p);
}

zt_status zt_opt_embed(const zt_sweep *sw) {
    const zt_model *m = sw->model;
    const zt_opt_family *fam = zt_opt_family_of(m);
    const zt_opt_config *c = &fam->cfg;
    const zt_backend_ops *op = m->be->ops;
    int n = sw->batch->batch * sw->batch->seq_len;
    float *x = zt_sweep_stream(sw);
    const int32_t *ids = zt_sweep_token_ids(sw);
    zt_gather_perturbation tok_storage, pos_storage;
    const zt_weight table = zt_model_weight(m, m->embed_tokens);
    const zt_gather_perturbation *tok_p, *pos_p;
    ZT_TRY(zt_sweep_gather(sw, m->embed_tokens, &tok_storage, &tok_p));
    ZT_TRY(zt_sweep_gather(sw, fam->embed_positions, &pos_storage, &pos_p));
    if (fam->project_in >= 0) {
        float *tok = zt_sweep_layer_buffer(sw, BUF_TOKENS);
        ZT_TRY(op->gather_rows(m->be, tok, ids, table, n, c->vocab_size, c->word_embed_proj_dim, 0,
                               tok_p));
        ZT_TRY(gather_prompt(sw, tok));
        ZT_TRY(zt_sweep_linear(sw, x, tok, fam->project_in, -1, n, c->word_embed_proj_dim,
                               c->hidden_size, 0));
    } else {
        ZT_TRY(op->gather_rows(m->be, x, ids, table, n, c->vocab_size, c->hidden_size, 0, tok_p));
        ZT_TRY(gather_prompt(sw, x));
    }
    return op->gather_rows(m->be, x, zt_sweep_position_rows(sw),
                           zt_model_weight(m, fam->embed_positions), n,
                           c->max_position_embeddings + 2, c->hidden_size, 1, pos_p);
}

static zt_status layer_norm(const zt_sweep *sw, float *out, const float *in, int gamma, int beta,
                            int rows) {
    return zt_sweep_layer_norm(sw, out, in, gamma, beta, rows, sw->model->dims.hidden_size,
                               ZT_OPT_LAYER_NORM_EPS);
}

static int has_lora(const zt_model *m, int weight) {
    int a, b;
    return zt_lora_of(m, weight, &a, &b);
}

zt_status zt_opt_decoder_layer(const zt_sweep *sw, int layer) {
    const zt_model *m = sw->model;
    const zt_opt_family *fam = zt_opt_family_of(m);
    const zt_opt_config *c = &fam->cfg;
    const zt_opt_layer_ids *ids = &fam->layers[layer];
    int batch = sw->batch->batch, seq_len = sw->batch->seq_len;
    int n = batch * seq_len, h = c->hidden_size, heads = c->num_attention_heads;
    int head_dim = h / heads, f = c->ffn_dim;
    float *x = zt_sweep_stream(sw), *hbuf = zt_sweep_layer_buffer(sw, BUF_H);
    float *q = zt_sweep_layer_buffer(sw, BUF_Q), *k = zt_sweep_layer_buffer(sw, BUF_K);
    float *v = zt_sweep_layer_buffer(sw, BUF_V), *attn = zt_sweep_layer_buffer(sw, BUF_ATTN);
    float *ffn = zt_sweep_layer_buffer(sw, BUF_FFN);
    /* HF computes head_dim**-0.5 in Python (double) and multiplies the f32 tensor by it. */
    const float q_scale = (float)(1.0 / sqrt((double)head_dim));
    int pre_ln = c->do_layer_norm_before;

    /* Half activations (docs/design.md §4.3): under --gemm half q, k and v read one input rounded
     * once, kept in the FFN buffer (free until fc1); a pre-LN layer norm writes it rounded at
     * once unless a LoRA branch reads the f32 values too. fc1 is the only reader of the FFN
     * block's layer norm. The bits are those of rounding in each linear. */
    float *lora = zt_sweep_layer_buffer(sw, BUF_LORA);
    const int qkv[3] = {ids->q_w, ids->k_w, ids->v_w};
    const zt_dtype qkv_half = zt_sweep_half_input(sw, qkv, 3);
    const int qkv_lora = has_lora(m, ids->q_w) || has_lora(m, ids->k_w) || has_lora(m, ids->v_w);
    const float *attn_in = x;
    if (pre_ln && qkv_half != ZT_F32 && !qkv_lora) {
        ZT_TRY(zt_sweep_layer_norm_half(sw, ffn, qkv_half, x, ids->attn_ln_g, ids->attn_ln_b, n, h,
                                        ZT_OPT_LAYER_NORM_EPS));
    } else {
        if (pre_ln) {
            ZT_TRY(layer_norm(sw, hbuf, x, ids->attn_ln_g, ids->attn_ln_b, n));
            attn_in = hbuf;
        }
        if (qkv_half != ZT_F32)
            ZT_TRY(zt_sweep_round_half(sw, ffn, qkv_half, attn_in, (size_t)n * h));
    }
    /* k, v, q: one GEMM where the backend batches (zt_sweep_linear_shared_input) */
    float *const kvq_out[3] = {k, v, q};
    const int kvq_w[3] = {ids->k_w, ids->v_w, ids->q_w}, kvq_b[3] = {ids->k_b, ids->v_b, ids->q_b};
    ZT_TRY(zt_sweep_linear_shared_input(sw, kvq_out,
                                        qkv_half != ZT_F32 ? (const void *)ffn : attn_in, qkv_half,
                                        kvq_w, kvq_b, 3, n, h, h));
    /* LoRA branches (lora.h): attn is free until the attention, q after it */
    ZT_TRY(zt_sweep_lora(sw, q, attn_in, ids->q_w, n, h, h, lora, attn));
    ZT_TRY(zt_sweep_lora(sw, k, attn_in, ids->k_w, n, h, h, lora, attn));
    ZT_TRY(zt_sweep_lora(sw, v, attn_in, ids->v_w, n, h, h, lora, attn));
    ZT_TRY(zt_sweep_attention(sw, layer, attn, q, k, v, heads, head_dim, q_scale));
    ZT_TRY(zt_sweep_linear(sw, hbuf, attn, ids->out_w, ids->out_b, n, h, h, 0));
    ZT_TRY(zt_sweep_lora(sw, hbuf, attn, ids->out_w, n, h, h, lora, q));
    ZT_TRY(zt_sweep_add(sw, x, hbuf, (size_t)n * h));
    if (!pre_ln) ZT_TRY(layer_norm(sw, x, x, ids->attn_ln_g, ids->attn_ln_b, n));

    /* fc1 writes fc2's input rounded to half at once when both read one half dtype (and fc1's
     * bias is stored in it): no f32 copy of the widest activation is written, read and rounded */
    const int ffn_weights[2] = {ids->fc1_w, ids->fc2_w};
    const zt_dtype ffn_half = zt_sweep_half_input(sw, ffn_weights, 2);
    if (ffn_half != ZT_F32 && !has_lora(m, ids->fc1_w) && !has_lora(m, ids->fc2_w) &&
        (ids->fc1_b < 0 || m->tensors[ids->fc1_b].dtype == ffn_half)) {
        if (pre_ln)
            ZT_TRY(zt_sweep_layer_norm_half(sw, hbuf, ffn_half, x, ids->ffn_ln_g, ids->ffn_ln_b, n,
                                            h, ZT_OPT_LAYER_NORM_EPS));
        else
            ZT_TRY(zt_sweep_round_half(sw, hbuf, ffn_half, x, (size_t)n * h));
        ZT_TRY(zt_sweep_linear_half_out(sw, ffn, hbuf, ids->fc1_w, ids->fc1_b, n, h, f, 1));
        ZT_TRY(zt_sweep_linear_half_in(sw, q, ffn, ids->fc2_w, ids->fc2_b, n, f, h, 0));
        ZT_TRY(zt_sweep_add(sw, x, q, (size_t)n * h));
        if (!pre_ln) ZT_TRY(layer_norm(sw, x, x, ids->ffn_ln_g, ids->ffn_ln_b, n));
        return ZT_OK;
    }
    const zt_dtype fc1_half = zt_sweep_half_input(sw, &ids->fc1_w, 1);
    if (pre_ln && fc1_half != ZT_F32 && !has_lora(m, ids->fc1_w)) {
        ZT_TRY(zt_sweep_layer_norm_half(sw, hbuf, fc1_half, x, ids->ffn_ln_g, ids->ffn_ln_b, n, h,
                                        ZT_OPT_LAYER_NORM_EPS));
        ZT_TRY(zt_sweep_linear_half_in(sw, ffn, hbuf, ids->fc1_w, ids->fc1_b, n, h, f, 1));
    } else {
        const float *ffn_in = x;
        if (pre_ln) {
            ZT_TRY(layer_norm(sw, hbuf, x, ids->ffn_ln_g, ids->ffn_ln_b, n));
            ffn_in = hbuf;
        }
        ZT_TRY(zt_sweep_linear(sw, ffn, ffn_in, ids->fc1_w, ids->fc1_b, n, h, f, 1));
    }
    ZT_TRY(zt_sweep_linear(sw, q, ffn, ids->fc2_w, ids->fc2_b, n, f, h, 0));
    ZT_TRY(zt_sweep_add(sw, x, q, (size_t)n * h));
    if (!pre_ln) ZT_TRY(layer_norm(sw, x, x, ids->ffn_ln_g, ids->ffn_ln_b, n));
    return ZT_OK;
}

zt_status zt_opt_head_input(const zt_sweep *sw, float *rows, int n_rows, const float **head_in) {
    const zt_opt_family *fam = zt_opt_family_of(sw->model);
    const zt_opt_config *c = &fam->cfg;
    *head_in = rows;
    if (fam->final_ln_g >= 0)
        ZT_TRY(layer_norm(sw, rows, rows, fam->final_ln_g, fam->final_ln_b, n_rows));
    if (fam->project_out >= 0) {
        float *projected = zt_sweep_head_buffer(sw, BUF_PROJECTED);
        ZT_TRY(zt_sweep_linear(sw, projected, rows, fam->project_out, -1, n_rows, c->hidden_size,
                               c->word_embed_proj_dim, 0));
        *head_in = projected;
    }
    return ZT_OK;
}
