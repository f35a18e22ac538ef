/* Prompt tuning's table in the tensor table (models/prompt.h): the entry, its initial values and
 * the batches with virtual tokens in front. The family's embedding reads the table
 * (models/opt/opt_layers.c, opt_backward.c). */
#include "prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "core/status.h"

void zt_prompt_options_default(zt_prompt_options *o) {
    memset(o, 0, sizeof *o);
    o->n_virtual = ZT_PROMPT_DEFAULT_TOKENS;
}

zt_status zt_prompt_extend_table(zt_model *m, const zt_prompt_options *options) {
    if (m->lora)
        return zt_fail(ZT_ERR_INVALID_ARG, "--peft prompt: the model has LoRA adapters already");
    if (options->n_virtual <= 0 || options->n_virtual > ZT_PROMPT_MAX_TOKENS)
        return zt_fail(ZT_ERR_INVALID_ARG, "--num-virtual-tokens %d: must be 1 .. %d",
                       options->n_virtual, (int)ZT_PROMPT_MAX_TOKENS);
    if (options->n_virtual >= m->dims.max_positions)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--num-virtual-tokens %d: leaves no position of max_position_embeddings "
                       "%d to the real tokens",
                       options->n_virtual, m->dims.max_positions);
    zt_prompt *p = zt_calloc(1, sizeof *p);
    zt_tensor_info *grown = zt_realloc(m->tensors, (size_t)(m->n_tensors + 1) * sizeof *grown);
    if (!p || !grown) {
        free(p);
        if (grown) m->tensors = grown;
        return zt_fail(ZT_ERR_NOMEM, "prompt tuning: growing the tensor table");
    }
    m->tensors = grown;
    m->prompt = p;
    p->options = *options;
    snprintf(p->adapter_dir, sizeof p->adapter_dir, "%s",
             options->adapter_dir ? options->adapter_dir : "");
    p->options.adapter_dir = p->adapter_dir[0] ? p->adapter_dir : NULL;
    p->n_base = m->n_tensors;
    p->base_bytes = m->weights_bytes;
    p->table = m->n_tensors++;
    zt_tensor_info *t = &m->tensors[p->table];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "prompt_embeddings");
    t->dtype = ZT_F32;
    t->n_dims = 2;
    t->shape[0] = options->n_virtual;
    t->shape[1] = m->dims.head_input_size;
    t->n_elems = (size_t)t->shape[0] * (size_t)t->shape[1];
    t->offset = (m->weights_bytes + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
    const size_t end = t->offset + t->n_elems * sizeof(float);
    p->rows_offset = (end + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
    m->weights_bytes = p->rows_offset + (size_t)options->n_virtual * sizeof(int32_t);
    return ZT_OK;
}

zt_status zt_prompt_table_copy(const zt_model *m, const zt_prompt_options *options,
                               zt_model **out) {
    *out = NULL;
    zt_model *copy = zt_malloc(sizeof *copy);
    zt_tensor_info *tensors = zt_malloc((size_t)m->n_tensors * sizeof *tensors);
    if (!copy || !tensors) {
        free(copy);
        free(tensors);
        return zt_fail(ZT_ERR_NOMEM, "prompt plan: copying the tensor table");
    }
    *copy = *m;
    memcpy(tensors, m->tensors, (size_t)m->n_tensors * sizeof *tensors);
    copy->tensors = tensors;
    copy->weights = NULL;
    zt_status s = zt_prompt_extend_table(copy, options);
    if (s != ZT_OK) {
        zt_prompt_table_copy_free(copy);
        return s;
    }
    *out = copy;
    return ZT_OK;
}

void zt_prompt_table_copy_free(zt_model *copy) {
    if (!copy) return;
    zt_prompt_release(copy);
    free(copy->tensors);
    free(copy);
}

void zt_prompt_sample_ids(const zt_model *m, uint64_t seed, int32_t *ids) {
    const uint64_t key = zt_tensor_key(seed, (uint32_t)m->prompt->table);
    const uint64_t vocab = (uint64_t)m->dims.vocab_size;
    for (int i = 0; i < m->prompt->options.n_virtual; i++) {
        const zt_u32x4 words = zt_z_bits_block4(key, (uint64_t)i / 4);
        const uint32_t word = zt_u32x4_lane(words, (unsigned)(i % 4));
        /* floor(u * V) with u = word / 2^32: uniform up to a bias below V / 2^32 */
        ids[i] = (int32_t)(((uint64_t)word * vocab) >> 32);
    }
}

/* SAMPLE_VOCAB: the sampled ids' token-table rows, widened to f32 (peft's .to(float32)). */
static zt_status upload_sampled(zt_model *m) {
    const zt_prompt *p = m->prompt;
    const zt_tensor_info *table = &m->tensors[m->embed_tokens], *t = &m->tensors[p->table];
    const size_t cols = (size_t)t->shape[1], elem = zt_dtype_size(table->dtype);
    int32_t *ids = zt_malloc((size_t)p->options.n_virtual * sizeof *ids);
    void *row = zt_malloc(cols * elem);
    float *host = zt_malloc(t->n_elems * sizeof *host);
    zt_status s =
        ids && row && host ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "prompt tuning: the initial table");
    if (s == ZT_OK) zt_prompt_sample_ids(m, p->options.init_seed, ids);
    for (int i = 0; s == ZT_OK && i < p->options.n_virtual; i++) {
        const char *src = (const char *)m->weights + table->offset + (size_t)ids[i] * cols * elem;
        s = m->be->ops->download(m->be, row, src, cols * elem);
        for (size_t j = 0; s == ZT_OK && j < cols; j++)
            host[(size_t)i * cols + j] = zt_load_f32(row, table->dtype, j);
    }
    if (s == ZT_OK)
        s = m->be->ops->upload(m->be, (char *)m->weights + t->offset, host,
                               t->n_elems * sizeof *host);
    free(ids);
    free(row);
    free(host);
    return s;
}

zt_status zt_prompt_reset(zt_model *m, const uint8_t *mask) {
    if (mask && !mask[m->prompt->table]) return ZT_OK;
    if (m->prompt->options.adapter_dir)
        return zt_prompt_load_tensors(m, m->prompt->options.adapter_dir, mask);
    return upload_sampled(m);
}

zt_status zt_prompt_upload_initial(zt_model *m) {
    const int n = m->prompt->options.n_virtual;
    int32_t *rows = zt_malloc((size_t)n * sizeof *rows);
    if (!rows) return zt_fail(ZT_ERR_NOMEM, "prompt tuning: the row ids");
    for (int i = 0; i < n; i++)
        rows[i] = i;
    zt_status s = m->be->ops->upload(m->be, (char *)m->weights + m->prompt->rows_offset, rows,
                                     (size_t)n * sizeof *rows);
    free(rows);
    if (s != ZT_OK) return s;
    return zt_prompt_reset(m, NULL);
}

/* The row ids, vouched for again before each use: the vouch lapses as the batch's own indices
 * take the backend's slots. */
static const int32_t *row_ids(const zt_model *m) {
    const int32_t *rows = (const int32_t *)((const char *)m->weights + m->prompt->rows_offset);
    const int n = m->prompt->options.n_virtual;
    if (m->be->ops->vouch_indices) m->be->ops->vouch_indices(m->be, rows, (size_t)n, n);
    return rows;
}

zt_status zt_prompt_gather(const zt_model *m, float *rows, int batch, int seq_len,
                           const zt_gather_perturbation *perturb) {
    const zt_tensor_info *t = &m->tensors[m->prompt->table];
    const int n = (int)t->shape[0], e = (int)t->shape[1];
    const int32_t *ids = row_ids(m);
    const zt_weight table = {(const char *)m->weights + t->offset, ZT_F32};
    for (int s = 0; s < batch; s++)
        ZT_TRY(m->be->ops->gather_rows(m->be, rows + (size_t)s * seq_len * e, ids, table, n, n, e,
                                       0, perturb));
    return ZT_OK;
}

zt_status zt_prompt_gather_backward(const zt_model *m, float *d_table, const float *d_rows,
                                    int batch, int seq_len) {
    const zt_tensor_info *t = &m->tensors[m->prompt->table];
    const int n = (int)t->shape[0], e = (int)t->shape[1];
    const int32_t *ids = row_ids(m);
    for (int s = 0; s < batch; s++)
        ZT_TRY(m->be->ops->gather_rows_backward(m->be, d_table, d_rows + (size_t)s * seq_len * e,
                                                ids, n, n, e));
    return ZT_OK;
}

zt_status zt_prompt_reload(zt_model *m, const char *dir, const uint8_t *mask) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        return zt_prompt_load_tensors(m, dir, mask);
    }
    return zt_prompt_reset(m, mask);
}

void zt_prompt_release(zt_model *m) {
    free(m->prompt);
    m->prompt = NULL;
}

zt_status zt_prompt_extend_batch(const zt_model *m, const zt_batch *in, zt_prompt_batch *out) {
    memset(out, 0, sizeof *out);
    const int n_virtual = zt_model_virtual_tokens(m), t_in = in->seq_len;
    const int t_out = t_in + n_virtual;
    if (in->batch <= 0 || t_in <= 0 || (long long)in->batch * t_out > ZT_MAX_TOKENS_PER_FORWARD)
        return zt_fail(ZT_ERR_INVALID_ARG, "prompt tuning: batch %d x %d (+%d virtual tokens)",
                       in->batch, t_in, n_virtual);
    const size_t n = (size_t)in->batch * (size_t)t_out;
    out->ids = zt_malloc(n * sizeof *out->ids);
    out->mask = zt_malloc(n * sizeof *out->mask);
    out->rows = zt_malloc(((size_t)in->n_targets + 1) * sizeof *out->rows);
    if (!out->ids || !out->mask || !out->rows) {
        zt_prompt_batch_free(out);
        return zt_fail(ZT_ERR_NOMEM, "prompt tuning: the extended batch");
    }
    for (int s = 0; s < in->batch; s++) {
        int32_t *ids = out->ids + (size_t)s * t_out, *mask = out->mask + (size_t)s * t_out;
        for (int i = 0; i < n_virtual; i++)
            ids[i] = 0, mask[i] = 1;
        memcpy(ids + n_virtual, in->input_ids + (size_t)s * t_in, (size_t)t_in * sizeof *ids);
        memcpy(mask + n_virtual, in->attention_mask + (size_t)s * t_in,
               (size_t)t_in * sizeof *mask);
    }
    for (int r = 0; r < in->n_targets; r++) {
        const int32_t row = in->target_rows[r];
        /* a row outside the batch stays outside it, for the forward's own check to name */
        out->rows[r] =
            row < 0 || row >= in->batch * t_in ? -1 : (row / t_in) * t_out + n_virtual + row % t_in;
    }
    out->batch = *in;
    out->batch.seq_len = t_out;
    out->batch.input_ids = out->ids;
    out->batch.attention_mask = out->mask;
    out->batch.target_rows = out->rows;
    return ZT_OK;
}

void zt_prompt_batch_free(zt_prompt_batch *b) {
    free(b->ids);
    free(b->mask);
    free(b->rows);
    memset(b, 0, sizeof *b);
}
