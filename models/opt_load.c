/* Loading an OPT checkpoint: the canonical tensor table, name variants, shape checks against
 * config.json, and one backend allocation for all weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/safetensors.h"
#include "opt_internal.h"

enum { WEIGHT_ALIGN = 64 };

typedef struct table_builder {
    zt_tensor_info *tensors;
    int count, capacity;
    int out_of_memory;
} table_builder;

static int table_add(table_builder *tb, const char *name, int64_t rows, int64_t cols, int no_decay) {
    if (tb->out_of_memory) return -1;
    if (tb->count == tb->capacity) {
        int capacity = tb->capacity ? tb->capacity * 2 : 64;
        zt_tensor_info *grown = realloc(tb->tensors, (size_t)capacity * sizeof *grown);
        if (!grown) {
            tb->out_of_memory = 1;
            return -1;
        }
        tb->tensors = grown;
        tb->capacity = capacity;
    }
    zt_tensor_info *t = &tb->tensors[tb->count];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "model.decoder.%s", name);
    t->n_dims = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols > 0 ? cols : 0;
    t->n_elems = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    t->no_decay = no_decay;
    return tb->count++;
}

/* Builds the table in HF's registration order (spec §1.4), which fixes the tensor ids. */
zt_status zt_opt_build_table(zt_model *m) {
    const zt_opt_config *c = &m->cfg;
    table_builder tb = {0};
    int h = c->hidden_size, e = c->word_embed_proj_dim, f = c->ffn_dim;
    int bias = c->enable_bias, affine = c->layer_norm_elementwise_affine;
    char name[ZT_TENSOR_NAME_MAX];

    m->project_out = m->project_in = m->final_ln_g = m->final_ln_b = -1;
    m->embed_tokens = table_add(&tb, "embed_tokens.weight", c->vocab_size, e, 0);
    m->embed_positions =
        table_add(&tb, "embed_positions.weight", (int64_t)c->max_position_embeddings + 2, h, 0);
    if (e != h) {
        m->project_out = table_add(&tb, "project_out.weight", e, h, 0);
        m->project_in = table_add(&tb, "project_in.weight", h, e, 0);
    }
    if (c->do_layer_norm_before && !c->remove_final_layer_norm && affine) {
        m->final_ln_g = table_add(&tb, "final_layer_norm.weight", h, 0, 1);
        m->final_ln_b = table_add(&tb, "final_layer_norm.bias", h, 0, 1);
    }
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) return zt_fail(ZT_ERR_NOMEM, "allocating the layer table");
    for (int i = 0; i < c->num_hidden_layers; i++) {
        zt_opt_layer_ids *L = &m->layers[i];
#define ADD(field, suffix, rows, cols, no_decay)                                                   \
    do {                                                                                           \
        snprintf(name, sizeof name, "layers.%d.%s", i, suffix);                                    \
        L->field = table_add(&tb, name, rows, cols, no_decay);                                     \
    } while (0)
#define ADD_LINEAR(w, b, prefix, out_f, in_f)                                                      \
    do {                                                                                           \
        ADD(w, prefix ".weight", out_f, in_f, 0);                                                  \
        if (bias) ADD(b, prefix ".bias", out_f, 0, 1);                                             \
        else L->b = -1;                                                                            \
    } while (0)
#define ADD_LN(g, b, prefix)                                                                       \
    do {                                                                                           \
        if (affine) {                                                                              \
            ADD(g, prefix ".weight", h, 0, 1);                                                     \
            ADD(b, prefix ".bias", h, 0, 1);                                                       \
        } else {                                                                                   \
            L->g = L->b = -1;                                                                      \
        }                                                                                          \
    } while (0)
        ADD_LINEAR(k_w, k_b, "self_attn.k_proj", h, h);
        ADD_LINEAR(v_w, v_b, "self_attn.v_proj", h, h);
        ADD_LINEAR(q_w, q_b, "self_attn.q_proj", h, h);
        ADD_LINEAR(out_w, out_b, "self_attn.out_proj", h, h);
        ADD_LN(attn_ln_g, attn_ln_b, "self_attn_layer_norm");
        ADD_LINEAR(fc1_w, fc1_b, "fc1", f, h);
        ADD_LINEAR(fc2_w, fc2_b, "fc2", h, f);
        ADD_LN(ffn_ln_g, ffn_ln_b, "final_layer_norm");
#undef ADD_LN
#undef ADD_LINEAR
#undef ADD
    }
    m->tensors = tb.tensors;
    m->n_tensors = tb.count;
    if (tb.out_of_memory) return zt_fail(ZT_ERR_NOMEM, "allocating the tensor table");
    return ZT_OK;
}

/* "model.decoder.X" may be stored as "model.decoder.X" or "decoder.X". */
static const zt_st_tensor *find_stored(const zt_safetensors *st, const char *canonical) {
    const zt_st_tensor *t = zt_st_find(st, canonical);
    if (!t) t = zt_st_find(st, canonical + strlen("model."));
    return t;
}

static int is_ignorable_extra(const char *name) {
    return strcmp(name, "decoder.version") == 0 || strcmp(name, "model.decoder.version") == 0;
}

static void format_shape(char *buf, size_t size, int n_dims, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < n_dims && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* Every stored tensor must be one the architecture uses (or a known ignorable key). */
static zt_status check_no_extra_tensors(const zt_model *m, const zt_safetensors *st, const char *dir) {
    for (int i = 0; i < zt_st_count(st); i++) {
        const zt_st_tensor *t = zt_st_get(st, i);
        if (is_ignorable_extra(t->name) || strcmp(t->name, "lm_head.weight") == 0) continue;
        int known = 0;
        for (int k = 0; k < m->n_tensors && !known; k++) {
            const char *canonical = m->tensors[k].name;
            known = strcmp(t->name, canonical) == 0 ||
                    strcmp(t->name, canonical + strlen("model.")) == 0;
        }
        if (!known)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: unexpected tensor '%s' in %s (not part of an OPT model with this "
                           "config.json)",
                           dir, t->name, t->file_path);
    }
    return ZT_OK;
}

/* lm_head.weight, when stored, must be the tied copy of embed_tokens: an untied head would be
 * silently ignored otherwise. */
static zt_status check_tied_head(const zt_safetensors *st, const zt_st_tensor *embed, const char *dir) {
    const zt_st_tensor *head = zt_st_find(st, "lm_head.weight");
    if (!head) return ZT_OK;
    if (head->n_bytes != embed->n_bytes || strcmp(head->dtype, embed->dtype) != 0 ||
        memcmp(head->data, embed->data, embed->n_bytes) != 0)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: lm_head.weight differs from embed_tokens.weight; OPT ties them and "
                       "zotune does not support an untied head",
                       dir);
    return ZT_OK;
}

static zt_status resolve_tensors(zt_model *m, const zt_safetensors *st, const char *dir,
                                 const zt_st_tensor **stored) {
    size_t offset = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        zt_tensor_info *info = &m->tensors[i];
        const zt_st_tensor *t = find_stored(st, info->name);
        if (!t)
            return zt_fail(ZT_ERR_MISSING, "%s: tensor '%s' (or '%s') is missing", dir, info->name,
                           info->name + strlen("model."));
        int same = t->n_dims == info->n_dims;
        for (int d = 0; same && d < info->n_dims; d++) same = t->shape[d] == info->shape[d];
        if (!same) {
            char want[64], got[128];
            format_shape(want, sizeof want, info->n_dims, info->shape);
            format_shape(got, sizeof got, t->n_dims, t->shape);
            return zt_fail(ZT_ERR_SHAPE, "%s: tensor '%s' has shape %s, config.json implies %s",
                           dir, t->name, got, want);
        }
        zt_status s = zt_st_storage_dtype(t, &info->dtype);
        if (s != ZT_OK) return zt_fail_context(s, "%s: ", dir);
        offset = (offset + WEIGHT_ALIGN - 1) / WEIGHT_ALIGN * WEIGHT_ALIGN;
        info->offset = offset;
        offset += t->n_bytes;
        stored[i] = t;
    }
    m->weights_bytes = offset;
    return ZT_OK;
}

zt_status zt_model_load(const char *dir, zt_backend *be, zt_model **out) {
    *out = NULL;
    zt_model *m = calloc(1, sizeof *m);
    if (!m) return zt_fail(ZT_ERR_NOMEM, "allocating the model");
    m->be = be;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    zt_safetensors *st = NULL;
    const zt_st_tensor **stored = NULL;
    zt_status s = zt_opt_config_load(path, &m->cfg);
    if (s == ZT_OK) s = zt_opt_build_table(m);
    if (s == ZT_OK) s = zt_st_open_dir(dir, &st);
    if (s == ZT_OK) {
        stored = calloc((size_t)m->n_tensors, sizeof *stored);
        if (!stored) s = zt_fail(ZT_ERR_NOMEM, "allocating the tensor map");
    }
    if (s == ZT_OK) s = resolve_tensors(m, st, dir, stored);
    if (s == ZT_OK) s = check_no_extra_tensors(m, st, dir);
    if (s == ZT_OK) s = check_tied_head(st, stored[m->embed_tokens], dir);
    if (s == ZT_OK) s = be->ops->alloc(be, m->weights_bytes, ZT_MEM_WEIGHTS, &m->weights);
    for (int i = 0; s == ZT_OK && i < m->n_tensors; i++)
        s = be->ops->upload(be, (char *)m->weights + m->tensors[i].offset, stored[i]->data,
                            stored[i]->n_bytes);
    free(stored);
    zt_st_close(st);
    if (s != ZT_OK) {
        zt_model_free(m);
        return s;
    }
    *out = m;
    return ZT_OK;
}

void zt_model_free(zt_model *m) {
    if (!m) return;
    if (m->weights) m->be->ops->free(m->be, m->weights, m->weights_bytes, ZT_MEM_WEIGHTS);
    free(m->tensors);
    free(m->layers);
    free(m);
}

size_t zt_model_parameter_count(const zt_model *m) {
    size_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) total += m->tensors[i].n_elems;
    return total;
}
