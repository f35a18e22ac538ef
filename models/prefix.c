/* Prefix tensors in the tensor table (models/prefix.h): the entries and their initial values, the
 * base model's own keys and values on random vocabulary tokens (MeZO's --prefix_init_by_real_act).
 */
#include "prefix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "core/status.h"

void zt_prefix_options_default(zt_prefix_options *o) {
    memset(o, 0, sizeof *o);
    o->n_prefix = ZT_PREFIX_DEFAULT_TOKENS;
}

static zt_status add_entry(zt_model *m, const char *name, int64_t rows, int64_t cols,
                           size_t *offset) {
    zt_tensor_info *grown = zt_realloc(m->tensors, (size_t)(m->n_tensors + 1) * sizeof *grown);
    if (!grown) return zt_fail(ZT_ERR_NOMEM, "prefix: growing the tensor table for %s", name);
    m->tensors = grown;
    zt_tensor_info *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = ZT_F32;
    t->n_dims = 2;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->n_elems = (size_t)rows * (size_t)cols;
    *offset = (*offset + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
    t->offset = *offset;
    *offset += t->n_elems * sizeof(float);
    return ZT_OK;
}

zt_status zt_prefix_extend_table(zt_model *m, const zt_prefix_options *options) {
    const int n = options->n_prefix;
    if (n <= 0 || n > ZT_PREFIX_MAX_TOKENS || n > m->dims.max_positions)
        return zt_fail(ZT_ERR_INVALID_ARG, "--num-prefix %d: must be 1 .. %d", n,
                       m->dims.max_positions < ZT_PREFIX_MAX_TOKENS ? m->dims.max_positions
                                                                    : ZT_PREFIX_MAX_TOKENS);
    if (strcmp(m->arch->model_type, "opt") != 0)
        return zt_fail(ZT_ERR_UNAVAILABLE, "--peft prefix: only OPT models have it, not %s",
                       m->arch->display_name);
    zt_prefix *prefix = zt_calloc(1, sizeof *prefix);
    if (!prefix) return zt_fail(ZT_ERR_NOMEM, "allocating the prefix state");
    m->prefix = prefix;
    prefix->options = *options;
    snprintf(prefix->adapter_dir, sizeof prefix->adapter_dir, "%s",
             options->adapter_dir ? options->adapter_dir : "");
    prefix->options.adapter_dir = prefix->adapter_dir[0] ? prefix->adapter_dir : NULL;
    prefix->n_base = m->n_tensors;
    prefix->base_bytes = m->weights_bytes;
    size_t offset = m->weights_bytes;
    for (int l = 0; l < m->dims.n_layers; l++) {
        char name[ZT_TENSOR_NAME_MAX];
        snprintf(name, sizeof name, "model.decoder.layers.%d.self_attn.prefix_keys", l);
        ZT_TRY(add_entry(m, name, n, m->dims.hidden_size, &offset));
        snprintf(name, sizeof name, "model.decoder.layers.%d.self_attn.prefix_values", l);
        ZT_TRY(add_entry(m, name, n, m->dims.hidden_size, &offset));
    }
    m->weights_bytes = offset;
    return ZT_OK;
}

zt_status zt_prefix_table_copy(const zt_model *m, const zt_prefix_options *options,
                               zt_model **out) {
    *out = NULL;
    if (m->prefix || m->lora)
        return zt_fail(ZT_ERR_INVALID_ARG, "prefix plan: the model has adapters already");
    zt_model *copy = zt_malloc(sizeof *copy);
    zt_tensor_info *tensors = zt_malloc((size_t)m->n_tensors * sizeof *tensors);
    if (!copy || !tensors) {
        free(copy);
        free(tensors);
        return zt_fail(ZT_ERR_NOMEM, "prefix plan: copying the tensor table");
    }
    *copy = *m;
    memcpy(tensors, m->tensors, (size_t)m->n_tensors * sizeof *tensors);
    copy->tensors = tensors;
    copy->weights = NULL;
    zt_status s = zt_prefix_extend_table(copy, options);
    if (s != ZT_OK) {
        zt_prefix_table_copy_free(copy);
        return s;
    }
    *out = copy;
    return ZT_OK;
}

void zt_prefix_table_copy_free(zt_model *copy) {
    if (!copy) return;
    zt_prefix_release(copy);
    free(copy->tensors);
    free(copy);
}

void zt_prefix_init_token_ids(uint64_t seed, int n, int vocab, int32_t *ids) {
    /* tensor id 0xFFFFFFFF: a key no tensor's z uses under this seed */
    const uint64_t key = zt_tensor_key(seed, 0xFFFFFFFFu);
    for (int i = 0; i < n; i++) {
        const zt_u32x4 words = zt_z_bits_block4(key, (uint64_t)i / 4);
        const uint32_t word = zt_u32x4_lane(words, (unsigned)(i % 4));
        ids[i] = (int32_t)(((uint64_t)word * (uint64_t)vocab) >> 32);
    }
}

zt_status zt_prefix_init_from_tokens(zt_model *m, const int32_t *ids, const uint8_t *mask) {
    const int n = m->prefix->options.n_prefix;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->dims.vocab_size)
            return zt_fail(ZT_ERR_INVALID_ARG, "prefix: initial token %d is %d, outside [0, %d)", i,
                           ids[i], m->dims.vocab_size);
    int32_t *ones = zt_malloc((size_t)n * sizeof *ones);
    if (!ones) return zt_fail(ZT_ERR_NOMEM, "prefix: the initial mask");
    for (int i = 0; i < n; i++)
        ones[i] = 1;
    const zt_workspace_shape shape = {1, n, 1, 0, 0};
    zt_workspace *ws = NULL;
    zt_status s = zt_workspace_create(m, &shape, &ws);
    if (s == ZT_OK) {
        const zt_batch batch = {1, n, ids, ones, 0, NULL, NULL};
        m->prefix->capturing = 1;
        m->prefix->capture_mask = mask;
        s = zt_model_forward(m, ws, &batch, NULL, NULL, NULL);
        m->prefix->capturing = 0;
        m->prefix->capture_mask = NULL;
    }
    zt_workspace_free(ws);
    free(ones);
    if (s != ZT_OK) return zt_fail_context(s, "prefix: initialising from real activations: ");
    return m->be->ops->sync(m->be);
}

/* The base model on the seeded tokens. */
static zt_status capture_real_activations(zt_model *m, const uint8_t *mask) {
    const int n = m->prefix->options.n_prefix;
    int32_t *ids = zt_malloc((size_t)n * sizeof *ids);
    if (!ids) return zt_fail(ZT_ERR_NOMEM, "prefix: the initial token ids");
    zt_prefix_init_token_ids(m->prefix->options.init_seed, n, m->dims.vocab_size, ids);
    zt_status s = zt_prefix_init_from_tokens(m, ids, mask);
    free(ids);
    return s;
}

zt_status zt_prefix_reset(zt_model *m, const uint8_t *mask) {
    if (m->prefix->options.adapter_dir)
        return zt_prefix_load_tensors(m, m->prefix->options.adapter_dir, mask);
    return capture_real_activations(m, mask);
}

zt_status zt_prefix_upload_initial(zt_model *m) {
    return zt_prefix_reset(m, NULL);
}

zt_status zt_prefix_reload(zt_model *m, const char *dir, const uint8_t *mask) {
    if (zt_prefix_dir_is_prefix(dir)) return zt_prefix_load_tensors(m, dir, mask);
    return zt_prefix_reset(m, mask);
}

void zt_prefix_select(const zt_model *m, uint8_t *mask) {
    for (int i = 0; i < m->n_tensors; i++)
        mask[i] = m->prefix && i >= m->prefix->n_base;
}

void zt_prefix_release(zt_model *m) {
    if (!m->prefix) return;
    free(m->prefix);
    m->prefix = NULL;
}
