/* LoRA adapters in the tensor table (models/lora.h): the entries, their initial values and the
 * scale matrix. The layer code applies them (models/opt/opt_layers.c, opt_backward.c). */
#include "lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "core/status.h"

void zt_lora_options_default(zt_lora_options *o) {
    memset(o, 0, sizeof *o);
    o->rank = 8;
    o->alpha = 8.0;
    snprintf(o->targets, sizeof o->targets, "q_proj,v_proj");
}

/* Whether `name` is "<...>.<target>.weight" for one of the comma-separated targets. */
static int is_target(const char *name, const char *target, size_t target_len) {
    static const char suffix[] = ".weight";
    size_t n = strlen(name), s = sizeof suffix - 1;
    if (n < target_len + s + 1 || strcmp(name + n - s, suffix) != 0) return 0;
    const char *module = name + n - s - target_len;
    return module[-1] == '.' && strncmp(module, target, target_len) == 0;
}

static zt_status add_entry(zt_model *m, const char *name, int64_t rows, int64_t cols,
                           size_t *offset) {
    zt_tensor_info *grown = zt_realloc(m->tensors, (size_t)(m->n_tensors + 1) * sizeof *grown);
    if (!grown) return zt_fail(ZT_ERR_NOMEM, "LoRA: growing the tensor table for %s", name);
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

/* "<...>.q_proj.weight" -> "<...>.q_proj.lora_A.weight" */
static void adapter_name(char *out, size_t size, const char *base_weight, char which) {
    size_t stem = strlen(base_weight) - strlen(".weight");
    snprintf(out, size, "%.*s.lora_%c.weight", (int)stem, base_weight, which);
}

/* Whether the comma-separated list holds the name (len bytes). */
static int in_list(const char *list, const char *name, size_t len) {
    while (list && *list) {
        const char *end = strchr(list, ',');
        size_t n = end ? (size_t)(end - list) : strlen(list);
        if (n == len && strncmp(list, name, len) == 0) return 1;
        list += n + (end ? 1 : 0);
    }
    return 0;
}

/* The target among the comma-separated list that names base weight `name`, or NULL. */
static const char *matching_target(const char *list, const char *name, size_t *len) {
    while (*list) {
        const char *end = strchr(list, ',');
        *len = end ? (size_t)(end - list) : strlen(list);
        if (*len > 0 && is_target(name, list, *len)) return list;
        list += *len + (end ? 1 : 0);
    }
    return NULL;
}

/* Adapters in base-table order, whatever the order of the targets, so their ids (which address
 * z) depend only on which modules are adapted. */
static zt_status adapt_targets(zt_model *m, zt_lora *lora, size_t *offset) {
    const char *targets = lora->options.targets;
    const int r = lora->options.rank;
    for (const char *t = targets; *t;) {
        const char *end = strchr(t, ',');
        size_t len = end ? (size_t)(end - t) : strlen(t);
        if (!in_list(m->arch->lora_modules, t, len))
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--lora-targets: '%.*s' is not a module zotune adapts in an %s model "
                           "(%s)",
                           (int)len, t, m->arch->display_name,
                           m->arch->lora_modules ? m->arch->lora_modules : "none");
        int matched = 0;
        for (int i = 0; i < lora->n_base && !matched; i++)
            matched = m->tensors[i].n_dims == 2 && is_target(m->tensors[i].name, t, len);
        if (!matched)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--lora-targets: '%.*s' names no weight of this model", (int)len, t);
        t += len + (end ? 1 : 0);
    }
    for (int i = 0; i < lora->n_base; i++) {
        const zt_tensor_info base = m->tensors[i];
        size_t len;
        if (base.n_dims != 2 || !matching_target(targets, base.name, &len)) continue;
        char name[ZT_TENSOR_NAME_MAX + 16];
        adapter_name(name, sizeof name, base.name, 'A');
        if (strlen(name) >= ZT_TENSOR_NAME_MAX)
            return zt_fail(ZT_ERR_INVALID_ARG, "--lora-targets: %s's adapter name is too long",
                           base.name);
        lora->a_of[i] = m->n_tensors;
        ZT_TRY(add_entry(m, name, r, base.shape[1], offset));
        adapter_name(name, sizeof name, base.name, 'B');
        lora->b_of[i] = m->n_tensors;
        ZT_TRY(add_entry(m, name, base.shape[0], r, offset));
    }
    return ZT_OK;
}

zt_status zt_lora_extend_table(zt_model *m, const zt_lora_options *options) {
    if (options->rank <= 0 || options->rank > ZT_LORA_MAX_RANK)
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-rank %d: must be 1 .. %d", options->rank,
                       (int)ZT_LORA_MAX_RANK);
    if (!isfinite(options->alpha) || options->alpha <= 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-alpha %g: must be positive", options->alpha);
    if (!options->targets[0]) return zt_fail(ZT_ERR_INVALID_ARG, "--lora-targets: names no module");
    zt_lora *lora = zt_calloc(1, sizeof *lora);
    if (!lora) return zt_fail(ZT_ERR_NOMEM, "allocating the LoRA state");
    m->lora = lora;
    lora->options = *options;
    snprintf(lora->adapter_dir, sizeof lora->adapter_dir, "%s",
             options->adapter_dir ? options->adapter_dir : "");
    lora->options.adapter_dir = lora->adapter_dir[0] ? lora->adapter_dir : NULL;
    /* peft: scaling = lora_alpha / r, in Python double, applied to the f32 output */
    lora->scale = (float)(options->alpha / options->rank);
    lora->n_base = m->n_tensors;
    lora->a_of = zt_malloc((size_t)m->n_tensors * sizeof *lora->a_of);
    lora->b_of = zt_malloc((size_t)m->n_tensors * sizeof *lora->b_of);
    if (!lora->a_of || !lora->b_of) return zt_fail(ZT_ERR_NOMEM, "allocating the LoRA map");
    for (int i = 0; i < m->n_tensors; i++)
        lora->a_of[i] = lora->b_of[i] = -1;
    lora->base_bytes = m->weights_bytes;
    size_t offset = m->weights_bytes;
    ZT_TRY(adapt_targets(m, lora, &offset));
    offset = (offset + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
    lora->scale_offset = offset;
    m->weights_bytes = offset + (size_t)options->rank * (size_t)options->rank * sizeof(float);
    return ZT_OK;
}

zt_status zt_lora_table_copy(const zt_model *m, const zt_lora_options *options, zt_model **out) {
    *out = NULL;
    if (m->lora) return zt_fail(ZT_ERR_INVALID_ARG, "LoRA plan: the model has adapters already");
    zt_model *copy = zt_malloc(sizeof *copy);
    zt_tensor_info *tensors = zt_malloc((size_t)m->n_tensors * sizeof *tensors);
    if (!copy || !tensors) {
        free(copy);
        free(tensors);
        return zt_fail(ZT_ERR_NOMEM, "LoRA plan: copying the tensor table");
    }
    *copy = *m;
    memcpy(tensors, m->tensors, (size_t)m->n_tensors * sizeof *tensors);
    copy->tensors = tensors;
    copy->weights = NULL;
    zt_status s = zt_lora_extend_table(copy, options);
    if (s != ZT_OK) {
        zt_lora_table_copy_free(copy);
        return s;
    }
    *out = copy;
    return ZT_OK;
}

void zt_lora_table_copy_free(zt_model *copy) {
    if (!copy) return;
    zt_lora_release(copy);
    free(copy->tensors);
    free(copy);
}

zt_weight zt_lora_scale_weight(const zt_model *m) {
    zt_weight w = {(const char *)m->weights + m->lora->scale_offset, ZT_F32};
    return w;
}

/* A's initial values: element j of adapter tensor T is the top 24 bits of word j of T's key
 * under the init seed (stream 0, the z counters), as u in [0, 1), then (2u - 1) / sqrt(in):
 * peft's kaiming_uniform_(a = sqrt(5)) bound. */
static void initial_a(const zt_model *m, int id, float *out) {
    const zt_tensor_info *t = &m->tensors[id];
    const uint64_t key = zt_tensor_key(m->lora->options.init_seed, (uint32_t)id);
    const float bound = (float)(1.0 / sqrt((double)t->shape[1]));
    for (size_t j = 0; j < t->n_elems; j++) {
        const zt_u32x4 words = zt_z_bits_block4(key, j / 4);
        const uint32_t word = zt_u32x4_lane(words, (unsigned)(j % 4));
        const float u = (float)(word >> 8) * 0x1p-24f;
        out[j] = (2.0f * u - 1.0f) * bound;
    }
}

static int is_adapter_a(const zt_model *m, int id) {
    for (int i = 0; i < m->lora->n_base; i++)
        if (m->lora->a_of[i] == id) return 1;
    return 0;
}

/* The initial values of the adapters selected by mask from the seed (B = 0). */
static zt_status upload_seeded(zt_model *m, const uint8_t *mask) {
    size_t most = 0;
    for (int i = m->lora->n_base; i < m->n_tensors; i++)
        if (m->tensors[i].n_elems > most) most = m->tensors[i].n_elems;
    float *host = zt_malloc((most ? most : 1) * sizeof(float));
    if (!host) return zt_fail(ZT_ERR_NOMEM, "LoRA: staging the initial adapters");
    zt_status s = ZT_OK;
    for (int i = m->lora->n_base; s == ZT_OK && i < m->n_tensors; i++) {
        if (mask && !mask[i]) continue;
        const zt_tensor_info *t = &m->tensors[i];
        if (is_adapter_a(m, i))
            initial_a(m, i, host);
        else
            memset(host, 0, t->n_elems * sizeof(float));
        s = m->be->ops->upload(m->be, (char *)m->weights + t->offset, host,
                               t->n_elems * sizeof(float));
    }
    free(host);
    return s;
}

zt_status zt_lora_reset(zt_model *m, const uint8_t *mask) {
    if (m->lora->options.adapter_dir)
        return zt_lora_load_tensors(m, m->lora->options.adapter_dir, mask);
    return upload_seeded(m, mask);
}

zt_status zt_lora_upload_initial(zt_model *m) {
    const int r = m->lora->options.rank;
    float *diag = zt_calloc((size_t)r * (size_t)r, sizeof *diag);
    if (!diag) return zt_fail(ZT_ERR_NOMEM, "LoRA: the scale matrix");
    for (int i = 0; i < r; i++)
        diag[(size_t)i * (size_t)r + (size_t)i] = m->lora->scale;
    zt_status s = m->be->ops->upload(m->be, (char *)m->weights + m->lora->scale_offset, diag,
                                     (size_t)r * (size_t)r * sizeof *diag);
    free(diag);
    if (s != ZT_OK) return s;
    return zt_lora_reset(m, NULL);
}

zt_status zt_lora_reload(zt_model *m, const char *dir, const uint8_t *mask) {
    if (zt_lora_dir_has_adapter(dir)) return zt_lora_load_tensors(m, dir, mask);
    return zt_lora_reset(m, mask);
}

void zt_lora_select(const zt_model *m, uint8_t *mask) {
    for (int i = 0; i < m->n_tensors; i++)
        mask[i] = m->lora && i >= m->lora->n_base;
}

void zt_lora_release(zt_model *m) {
    if (!m->lora) return;
    free(m->lora->a_of);
    free(m->lora->b_of);
    free(m->lora);
    m->lora = NULL;
}
