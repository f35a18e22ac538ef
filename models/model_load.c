/* Loading a checkpoint: the family's tensor table checked against the stored tensors (names,
 * shapes, dtypes, nothing extra, a tied head), then one backend allocation for all weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "core/alloc.h"
#include "core/fingerprint.h"
#include "core/status.h"
#include "io/safetensors.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"

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
        offset = (offset + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
        info->offset = offset;
        offset += t->n_bytes;
        stored[i] = t;
    }
    m->weights_bytes = offset;
    return ZT_OK;
}

zt_status zt_model_build_from_config(const char *path, zt_model *m, int *named_dtype) {
    void *config = NULL;
    m->arch = zt_arch_for_config(path);
    ZT_TRY(m->arch->read_config(path, &config));
    zt_status s = m->arch->build(m, config);
    if (named_dtype) *named_dtype = m->arch->named_dtype(config);
    free(config);
    return s;
}

/* The weights' content in table order: canonical name, dtype and bytes of every tensor, so the
 * value does not depend on sharding, name prefixes or a stored copy of a tied head. */
static uint64_t fingerprint_tensors(const zt_model *m, const zt_st_tensor *const *stored) {
    zt_fingerprint fp;
    zt_fingerprint_init(&fp);
    for (int i = 0; i < zt_model_base_tensors(m); i++) {
        const zt_tensor_info *info = &m->tensors[i];
        zt_fingerprint_update(&fp, info->name, strlen(info->name) + 1);
        zt_fingerprint_update(&fp, stored[i]->dtype, strlen(stored[i]->dtype) + 1);
        zt_fingerprint_update(&fp, stored[i]->data, stored[i]->n_bytes);
    }
    return zt_fingerprint_final(&fp);
}

/* Reads dir's config.json and safetensors and checks them against each other; the stored tensors
 * stay mapped in *st_out, in table order in *stored_out. */
static zt_status open_checkpoint(const char *dir, zt_model *m, zt_safetensors **st_out,
                                 const zt_st_tensor ***stored_out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ZT_TRY(zt_model_build_from_config(path, m, NULL));
    ZT_TRY(zt_st_open_dir(dir, st_out));
    *stored_out = zt_calloc((size_t)m->n_tensors, sizeof **stored_out);
    if (!*stored_out) return zt_fail(ZT_ERR_NOMEM, "allocating the tensor map");
    ZT_TRY(resolve_tensors(m, *st_out, dir, *stored_out));
    ZT_TRY(check_no_extra_tensors(m, *st_out, dir));
    return check_tied_head(m->arch, *st_out, (*stored_out)[m->embed_tokens], dir);
}

int zt_model_stage_holds(const zt_model *m, const zt_model_stage *share, int id) {
    if (!m->arch->tensor_layer || (id == m->lm_head && share->is_last)) return 1;
    const int layer = m->arch->tensor_layer(m, id);
    if (layer == ZT_ARCH_BEFORE_LAYERS) return share->is_first;
    if (layer == ZT_ARCH_AFTER_LAYERS) return share->is_last;
    return layer >= share->first_layer && layer < share->end_layer;
}

/* Places only the stage's tensors in the weight allocation; the others are marked absent. */
static void keep_stage_share(zt_model *m, const zt_st_tensor *const *stored,
                             const zt_model_stage *share) {
    size_t offset = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        zt_tensor_info *info = &m->tensors[i];
        info->absent = !zt_model_stage_holds(m, share, i);
        info->offset = 0;
        if (info->absent) continue;
        offset = (offset + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
        info->offset = offset;
        offset += stored[i]->n_bytes;
    }
    m->weights_bytes = offset;
}

/* share NULL: every tensor. */
static zt_status load_checkpoint(const char *dir, zt_backend *be, const zt_peft_options *peft,
                                 const zt_model_stage *share, zt_model **out) {
    *out = NULL;
    const zt_lora_options *lora = peft ? peft->lora : NULL;
    const zt_prompt_options *prompt = peft ? peft->prompt : NULL;
    const zt_prefix_options *prefix = peft ? peft->prefix : NULL;
    zt_model *m = zt_calloc(1, sizeof *m);
    if (!m) return zt_fail(ZT_ERR_NOMEM, "allocating the model");
    m->be = be;
    zt_safetensors *st = NULL;
    const zt_st_tensor **stored = NULL;
    zt_status s = open_checkpoint(dir, m, &st, &stored);
    const int n_base = m->n_tensors;
    if (s == ZT_OK && share) keep_stage_share(m, stored, share);
    if (s == ZT_OK && lora) s = zt_lora_extend_table(m, lora);
    if (s == ZT_OK && prefix) s = zt_prefix_extend_table(m, prefix);
    if (s == ZT_OK && prompt) s = zt_prompt_extend_table(m, prompt);
    if (s == ZT_OK) s = be->ops->alloc(be, m->weights_bytes, ZT_MEM_WEIGHTS, &m->weights);
    for (int i = 0; s == ZT_OK && i < n_base; i++)
        if (!m->tensors[i].absent)
            s = be->ops->upload(be, (char *)m->weights + m->tensors[i].offset, stored[i]->data,
                                stored[i]->n_bytes);
    if (s == ZT_OK && lora) s = zt_lora_upload_initial(m);
    if (s == ZT_OK && prompt) s = zt_prompt_upload_initial(m);
    if (s == ZT_OK) m->fingerprint = fingerprint_tensors(m, stored);
    if (s == ZT_OK && prefix) s = zt_prefix_upload_initial(m);
    free(stored);
    zt_st_close(st);
    if (s != ZT_OK) {
        zt_model_free(m);
        return s;
    }
    *out = m;
    return ZT_OK;
}

zt_status zt_model_load_adapted(const char *dir, zt_backend *be, const zt_peft_options *peft,
                                zt_model **out) {
    return load_checkpoint(dir, be, peft, NULL, out);
}

zt_status zt_model_load_stage(const char *dir, zt_backend *be, const zt_model_stage *share,
                              zt_model **out) {
    return load_checkpoint(dir, be, NULL, share, out);
}

zt_status zt_model_load_peft(const char *dir, zt_backend *be, const zt_lora_options *lora,
                             zt_model **out) {
    const zt_peft_options peft = {lora, NULL, NULL};
    return zt_model_load_adapted(dir, be, &peft, out);
}

zt_status zt_model_load_prefix(const char *dir, zt_backend *be, const zt_prefix_options *prefix,
                               zt_model **out) {
    const zt_peft_options peft = {NULL, NULL, prefix};
    return zt_model_load_adapted(dir, be, &peft, out);
}

zt_status zt_model_load(const char *dir, zt_backend *be, zt_model **out) {
    return zt_model_load_peft(dir, be, NULL, out);
}

zt_status zt_model_fingerprint_dir(const char *dir, uint64_t *fingerprint) {
    zt_model probe;
    memset(&probe, 0, sizeof probe);
    zt_safetensors *st = NULL;
    const zt_st_tensor **stored = NULL;
    zt_status s = open_checkpoint(dir, &probe, &st, &stored);
    if (s == ZT_OK) *fingerprint = fingerprint_tensors(&probe, stored);
    free(stored);
    zt_st_close(st);
    if (probe.arch) probe.arch->release(&probe);
    free(probe.tensors);
    return s;
}

zt_status zt_model_reload_tensors(zt_model *m, const char *dir, const uint8_t *mask) {
    zt_model probe;
    memset(&probe, 0, sizeof probe);
    zt_safetensors *st = NULL;
    const zt_st_tensor **stored = NULL;
    zt_status s = open_checkpoint(dir, &probe, &st, &stored);
    const int n_base = zt_model_base_tensors(m);
    if (s == ZT_OK && probe.n_tensors != n_base)
        s = zt_fail(ZT_ERR_SHAPE, "%s: not a checkpoint of the loaded model", dir);
    for (int i = 0; s == ZT_OK && i < n_base; i++) {
        const zt_tensor_info *info = &m->tensors[i];
        if (strcmp(probe.tensors[i].name, info->name) != 0 ||
            probe.tensors[i].dtype != info->dtype || probe.tensors[i].n_elems != info->n_elems)
            s = zt_fail(ZT_ERR_SHAPE, "%s: tensor '%s' differs from the loaded model's", dir,
                        probe.tensors[i].name);
        else if ((!mask || mask[i]) && !info->absent)
            s = m->be->ops->upload(m->be, (char *)m->weights + info->offset, stored[i]->data,
                                   stored[i]->n_bytes);
    }
    free(stored);
    zt_st_close(st);
    if (probe.arch) probe.arch->release(&probe);
    free(probe.tensors);
    if (s == ZT_OK && m->lora) s = zt_lora_reload(m, dir, mask);
    if (s == ZT_OK && m->prefix) s = zt_prefix_reload(m, dir, mask);
    if (s == ZT_OK && m->prompt) s = zt_prompt_reload(m, dir, mask);
    return s;
}

void zt_model_free(zt_model *m) {
    if (!m) return;
    if (m->weights) m->be->ops->free(m->be, m->weights, m->weights_bytes, ZT_MEM_WEIGHTS);
    if (m->arch) m->arch->release(m);
    zt_lora_release(m);
    zt_prefix_release(m);
    zt_prompt_release(m);
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
