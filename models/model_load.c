/* Loading a checkpoint: the family's tensor table checked against the stored tensors (names,
 * shapes, dtypes, nothing extra, a tied head), then one backend allocation for all weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "core/alloc.h"
#include "core/status.h"
#include "io/safetensors.h"

enum { WEIGHT_ALIGN = 64 };

/* A canonical name may be stored as is or without the family's optional prefix. */
static const char *without_prefix(const zt_arch *arch, const char *canonical) {
    size_t n = strlen(arch->optional_prefix);
    return strncmp(canonical, arch->optional_prefix, n) == 0 ? canonical + n : canonical;
}

static const zt_st_tensor *find_stored(const zt_arch *arch, const zt_safetensors *st,
                                       const char *canonical) {
    const zt_st_tensor *t = zt_st_find(st, canonical);
    if (!t) t = zt_st_find(st, without_prefix(arch, canonical));
    return t;
}

static int is_ignorable_extra(const zt_arch *arch, const char *name) {
    for (const char *const *ignored = arch->ignored_names; ignored && *ignored; ignored++)
        if (strcmp(name, *ignored) == 0) return 1;
    return 0;
}

static void format_shape(char *buf, size_t size, int n_dims, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < n_dims && used < size; d++)
        used +=
            (size_t)snprintf(buf + used, size - used, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* Every stored tensor must be one the architecture uses (or a known ignorable key). */
static zt_status check_no_extra_tensors(const zt_model *m, const zt_safetensors *st,
                                        const char *dir) {
    const zt_arch *arch = m->arch;
    for (int i = 0; i < zt_st_count(st); i++) {
        const zt_st_tensor *t = zt_st_get(st, i);
        if (is_ignorable_extra(arch, t->name) ||
            (arch->tied_head_name && strcmp(t->name, arch->tied_head_name) == 0))
            continue;
        int known = 0;
        for (int k = 0; k < m->n_tensors && !known; k++) {
            const char *canonical = m->tensors[k].name;
            known = strcmp(t->name, canonical) == 0 ||
                    strcmp(t->name, without_prefix(arch, canonical)) == 0;
        }
        if (!known)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: unexpected tensor '%s' in %s (not part of an %s model with this "
                           "config.json)",
                           dir, t->name, t->file_path, arch->display_name);
    }
    return ZT_OK;
}

/* A stored head must be the tied copy of the token table: an untied head would be silently
 * ignored otherwise. */
static zt_status check_tied_head(const zt_arch *arch, const zt_safetensors *st,
                                 const zt_st_tensor *embed, const char *dir) {
    const zt_st_tensor *head = arch->tied_head_name ? zt_st_find(st, arch->tied_head_name) : NULL;
    if (!head) return ZT_OK;
    if (head->n_bytes != embed->n_bytes || strcmp(head->dtype, embed->dtype) != 0 ||
        memcmp(head->data, embed->data, embed->n_bytes) != 0)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: %s differs from embed_tokens.weight; %s ties them and zotune does not "
                       "support an untied head",
                       dir, arch->tied_head_name, arch->display_name);
    return ZT_OK;
}

static zt_status resolve_tensors(zt_model *m, const zt_safetensors *st, const char *dir,
                                 const zt_st_tensor **stored) {
    size_t offset = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        zt_tensor_info *info = &m->tensors[i];
        const zt_st_tensor *t = find_stored(m->arch, st, info->name);
        if (!t)
            return zt_fail(ZT_ERR_MISSING, "%s: tensor '%s' (or '%s') is missing", dir, info->name,
                           without_prefix(m->arch, info->name));
        int same = t->n_dims == info->n_dims;
        for (int d = 0; same && d < info->n_dims; d++)
            same = t->shape[d] == info->shape[d];
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

/* The family's config and tensor table, from config.json. */
static zt_status build_from_config(const char *path, zt_model *m) {
    void *config = NULL;
    m->arch = zt_arch_for_config(path);
    ZT_TRY(m->arch->read_config(path, &config));
    zt_status s = m->arch->build(m, config);
    free(config);
    return s;
}

zt_status zt_model_load(const char *dir, zt_backend *be, zt_model **out) {
    *out = NULL;
    zt_model *m = zt_calloc(1, sizeof *m);
    if (!m) return zt_fail(ZT_ERR_NOMEM, "allocating the model");
    m->be = be;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    zt_safetensors *st = NULL;
    const zt_st_tensor **stored = NULL;
    zt_status s = build_from_config(path, m);
    if (s == ZT_OK) s = zt_st_open_dir(dir, &st);
    if (s == ZT_OK) {
        stored = zt_calloc((size_t)m->n_tensors, sizeof *stored);
        if (!stored) s = zt_fail(ZT_ERR_NOMEM, "allocating the tensor map");
    }
    if (s == ZT_OK) s = resolve_tensors(m, st, dir, stored);
    if (s == ZT_OK) s = check_no_extra_tensors(m, st, dir);
    if (s == ZT_OK) s = check_tied_head(m->arch, st, stored[m->embed_tokens], dir);
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
    if (m->arch) m->arch->release(m);
    free(m->tensors);
    free(m);
}

size_t zt_model_parameter_count(const zt_model *m) {
    size_t total = 0;
    for (int i = 0; i < m->n_tensors; i++)
        total += m->tensors[i].n_elems;
    return total;
}

void zt_model_describe(const zt_model *m, FILE *out) {
    m->arch->describe(m, out);
}

void zt_model_describe_json(const zt_model *m, struct cJSON *root) {
    m->arch->describe_json(m, root);
}
