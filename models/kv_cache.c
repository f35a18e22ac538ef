/* The key/value cache and the cached forward (docs/design.md §2.7): incremental decoding runs
 * only the new tokens through the layers, each layer's attention reading the keys and values of
 * the earlier tokens from the cache instead of recomputing them. The family's layer code is the
 * plain forward's; only zt_sweep_attention sees the cache. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "prompt.h"
#include "workspace.h"

enum { CACHE_ALIGN = 64 };

struct zt_kv_cache {
    zt_model *model;
    int max_batch, capacity;
    int batch;  /* sequences since the last reset (0: none yet) */
    int length; /* columns filled, the same for every sequence */
    char *base; /* backend: keys (L,max_batch,capacity,hidden) | values (same) | mask */
    size_t bytes, values_offset, mask_offset;
    int32_t *host_mask; /* (max_batch,capacity), as uploaded */
    int32_t *real;      /* (max_batch) real tokens of each sequence so far */
};

/* One layer's keys (or values) of every sequence, in floats. */
static size_t layer_floats(const zt_model *m, int max_batch, int capacity) {
    return (size_t)max_batch * (size_t)capacity * (size_t)m->dims.hidden_size;
}

static size_t align_up(size_t n) {
    return (n + CACHE_ALIGN - 1) / CACHE_ALIGN * CACHE_ALIGN;
}

/* The one layout the plan and the allocation share. */
static size_t cache_layout(const zt_model *m, int max_batch, int capacity, size_t *values_offset,
                           size_t *mask_offset) {
    size_t half =
        align_up((size_t)m->dims.n_layers * layer_floats(m, max_batch, capacity) * sizeof(float));
    *values_offset = half;
    *mask_offset = 2 * half;
    return 2 * half + (size_t)max_batch * (size_t)capacity * sizeof(int32_t);
}

/* Prompt tuning's virtual tokens take the first columns of every sequence (models/prompt.h). */
size_t zt_kv_cache_bytes(const zt_model *m, int max_batch, int capacity) {
    size_t values, mask;
    return cache_layout(m, max_batch, capacity + zt_model_virtual_tokens(m), &values, &mask);
}

/* The scratch attention_cached asks at the cache's full width, as the family calls it. */
static size_t attention_scratch(const zt_model *m, int capacity) {
    zt_scratch_query q = {.op = ZT_SCRATCH_ATTENTION_CACHED,
                          .weight_dtype = ZT_F32,
                          .bias_dtype = ZT_F32,
                          .seq_len = capacity,
                          .head_dim = m->dims.hidden_size / m->dims.n_heads};
    return zt_plan_scratch(m, &q);
}

void zt_kv_cache_plan_memory(const zt_model *m, int max_batch, int capacity, zt_memory_plan *plan) {
    size_t scratch = attention_scratch(m, capacity + zt_model_virtual_tokens(m));
    plan->kv_cache_bytes += zt_kv_cache_bytes(m, max_batch, capacity);
    if (scratch > plan->backend_scratch_bytes) plan->backend_scratch_bytes = scratch;
    plan->total_bytes = plan->weights_bytes + plan->activation_bytes + plan->staging_bytes +
                        plan->backend_scratch_bytes + plan->kv_cache_bytes;
}

zt_status zt_kv_cache_create(zt_model *m, int max_batch, int caller_capacity, zt_kv_cache **out) {
    *out = NULL;
    const int capacity = caller_capacity + zt_model_virtual_tokens(m);
    if (max_batch <= 0 || caller_capacity <= 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "kv cache: %d sequences x %d columns must be positive",
                       max_batch, capacity);
    if ((long long)max_batch * capacity > ZT_MAX_TOKENS_PER_FORWARD)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "kv cache: %d sequences x %d columns is more than %d tokens", max_batch,
                       capacity, (int)ZT_MAX_TOKENS_PER_FORWARD);
    zt_kv_cache *c = zt_calloc(1, sizeof *c);
    if (!c) return zt_fail(ZT_ERR_NOMEM, "allocating the kv cache descriptor");
    c->model = m;
    c->max_batch = max_batch;
    c->capacity = capacity;
    c->bytes = cache_layout(m, max_batch, capacity, &c->values_offset, &c->mask_offset);
    c->host_mask = zt_calloc((size_t)max_batch * (size_t)capacity, sizeof *c->host_mask);
    c->real = zt_calloc((size_t)max_batch, sizeof *c->real);
    zt_status s = c->host_mask && c->real ? ZT_OK
                                          : zt_fail(ZT_ERR_NOMEM, "kv cache: host mask of %d x %d",
                                                    max_batch, capacity);
    if (s == ZT_OK) s = m->be->ops->alloc(m->be, c->bytes, ZT_MEM_ACTIVATIONS, (void **)&c->base);
    /* reaching the scratch peak now keeps a run's memory what the plan says */
    if (s == ZT_OK) s = m->be->ops->reserve_scratch(m->be, attention_scratch(m, capacity));
    if (s != ZT_OK) {
        zt_kv_cache_free(c);
        return zt_fail_context(s, "kv cache of %d sequences x %d columns: ", max_batch, capacity);
    }
    *out = c;
    return ZT_OK;
}

void zt_kv_cache_free(zt_kv_cache *c) {
    if (!c) return;
    if (c->base) c->model->be->ops->free(c->model->be, c->base, c->bytes, ZT_MEM_ACTIVATIONS);
    free(c->host_mask);
    free(c->real);
    free(c);
}

void zt_kv_cache_reset(zt_kv_cache *c) {
    c->batch = 0;
    c->length = 0;
    memset(c->real, 0, (size_t)c->max_batch * sizeof *c->real);
}

int zt_kv_cache_length(const zt_kv_cache *c) {
    return c->length;
}

zt_status zt_kv_cache_attend(const zt_sweep *sw, int layer, float *out, const float *q,
                             const float *k, const float *v, int n_heads, int head_dim,
                             float q_scale) {
    const zt_kv_cache *c = sw->cache;
    zt_backend *be = sw->model->be;
    /* the cache is sized, and its scratch planned, for dims.n_heads heads of the hidden width */
    if (n_heads != sw->model->dims.n_heads ||
        (long long)n_heads * head_dim != sw->model->dims.hidden_size)
        return zt_fail(ZT_ERR_INTERNAL,
                       "kv cache: attention of %d heads x %d, the cache holds %d heads of %d",
                       n_heads, head_dim, sw->model->dims.n_heads, sw->model->dims.hidden_size);
    /* a layer's slab is sized for max_batch; the first `batch` sequences are contiguous in it */
    const size_t slab = (size_t)layer * layer_floats(sw->model, c->max_batch, c->capacity);
    float *keys = (float *)c->base + slab;
    float *values = (float *)(c->base + c->values_offset) + slab;
    return be->ops->attention_cached(
        be, out, q, k, v, keys, values, (const int32_t *)(c->base + c->mask_offset),
        sw->batch->batch, sw->batch->seq_len, c->capacity, c->length, n_heads, head_dim, q_scale);
}

static zt_status check_call(const zt_model *m, const zt_workspace *ws, const zt_kv_cache *c,
                            int batch, int n_new, const zt_variants *variants) {
    const char *op = "forward_cached";
    if (c->model != m)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: the cache belongs to another model", op);
    if (variants && variants->n_variants != 1)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: %d variants, decoding takes one", op,
                       variants->n_variants);
    if (batch <= 0 || n_new <= 0 || batch > ws->shape.max_batch || n_new > ws->shape.max_seq_len)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: batch %d x %d does not fit the workspace (%d x %d)",
                       op, batch, n_new, ws->shape.max_batch, ws->shape.max_seq_len);
    if (batch > c->max_batch || (c->batch > 0 && batch != c->batch))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: %d sequences, the cache holds %d", op, batch,
                       c->batch > 0 ? c->batch : c->max_batch);
    if (n_new > c->capacity - c->length)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "%s: %d new tokens after %d of the cache's %d columns do not fit", op, n_new,
                       c->length, c->capacity);
    return ZT_OK;
}

/* One cached call whose sequences start with n_virtual virtual tokens (the first after a reset
 * of a prompt-tuned model). */
static zt_status forward_cached(zt_model *m, zt_workspace *ws, zt_kv_cache *c, int batch, int n_new,
                                const int32_t *input_ids, const int32_t *attention_mask,
                                const zt_variants *variants, float *logits, int n_virtual) {
    ZT_TRY(check_call(m, ws, c, batch, n_new, variants));
    if (m->prefix)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "generation with a prefix adapter is not supported (score and eval's "
                       "log-probability tasks are)");
    /* the head reads each sequence's last new row; the target ids are not read */
    int32_t *rows = zt_malloc((size_t)batch * 2 * sizeof *rows);
    if (!rows) return zt_fail(ZT_ERR_NOMEM, "forward_cached: %d target rows", batch);
    int32_t *dummy = rows + batch;
    for (int b = 0; b < batch; b++) {
        rows[b] = b * n_new + n_new - 1;
        dummy[b] = 0;
    }
    const zt_batch tokens = {batch, n_new, input_ids, attention_mask, batch, rows, dummy};
    zt_status s = zt_sweep_upload_batch(m, ws, &tokens, c->real);
    /* Columns past the length are never read before a call writes them, so a failed call leaves
     * the cache as it was: only the length and the counts below make columns count. */
    for (int b = 0; s == ZT_OK && b < batch; b++)
        memcpy(c->host_mask + (size_t)b * c->capacity + c->length,
               attention_mask + (size_t)b * n_new, (size_t)n_new * sizeof(int32_t));
    if (s == ZT_OK)
        s = m->be->ops->upload(m->be, c->base + c->mask_offset, c->host_mask,
                               (size_t)batch * c->capacity * sizeof(int32_t));
    zt_sweep sw = {m, ws, &tokens, variants, 0, c, 0, n_virtual};
    if (s == ZT_OK) s = m->arch->embed(&sw);
    for (int layer = 0; s == ZT_OK && layer < m->dims.n_layers; layer++)
        s = m->arch->layer(&sw, layer);
    if (s == ZT_OK) s = zt_sweep_head(&sw, logits);
    free(rows);
    ZT_TRY(s);
    c->batch = batch;
    c->length += n_new;
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < n_new; i++)
            c->real[b] += attention_mask[(size_t)b * n_new + i] != 0;
    return ZT_OK;
}

zt_status zt_model_forward_cached(zt_model *m, zt_workspace *ws, zt_kv_cache *c, int batch,
                                  int n_new, const int32_t *input_ids,
                                  const int32_t *attention_mask, const zt_variants *variants,
                                  float *logits) {
    const int n_virtual = zt_model_virtual_tokens(m);
    if (n_virtual == 0 || c->length > 0)
        return forward_cached(m, ws, c, batch, n_new, input_ids, attention_mask, variants, logits,
                              0);
    const zt_batch tokens = {batch, n_new, input_ids, attention_mask, 0, NULL, NULL};
    zt_prompt_batch extended;
    ZT_TRY(zt_prompt_extend_batch(m, &tokens, &extended));
    zt_status s = forward_cached(m, ws, c, batch, n_new + n_virtual, extended.ids, extended.mask,
                                 variants, logits, n_virtual);
    zt_prompt_batch_free(&extended);
    return s;
}
