/* LoRA adapters in HF peft's files (models/lora.h): adapter_model.safetensors with the keys
 * PeftModel.save_pretrained writes ("base_model.model." + the module path + ".lora_A.weight"),
 * adapter_config.json, and merging an adapter into its base weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "arch.h"
#include "common/dtype.h"
#include "core/alloc.h"
#include "core/path.h"
#include "core/status.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "lora.h"

static const char peft_prefix[] = "base_model.model.";

int zt_lora_dir_has_adapter(const char *dir) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static zt_status write_config(const zt_model *m, const char *path, const char *base_name) {
    const zt_lora_options *o = &m->lora->options;
    cJSON *root = cJSON_CreateObject(), *targets = cJSON_CreateArray();
    if (!root || !targets) {
        cJSON_Delete(root);
        cJSON_Delete(targets);
        return zt_fail(ZT_ERR_NOMEM, "%s: building the adapter config", path);
    }
    cJSON_AddItemToObject(root, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddStringToObject(root, "base_model_name_or_path", base_name ? base_name : "");
    cJSON_AddStringToObject(root, "bias", "none");
    cJSON_AddBoolToObject(root, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(root, "inference_mode", 1);
    cJSON_AddBoolToObject(root, "init_lora_weights", 1);
    cJSON_AddNullToObject(root, "layers_pattern");
    cJSON_AddNullToObject(root, "layers_to_transform");
    cJSON_AddNumberToObject(root, "lora_alpha", o->alpha);
    cJSON_AddNumberToObject(root, "lora_dropout", 0.0);
    cJSON_AddNullToObject(root, "modules_to_save");
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    cJSON_AddNumberToObject(root, "r", o->rank);
    cJSON_AddItemToObject(root, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(root, "revision");
    const char *list = o->targets;
    while (*list) {
        const char *end = strchr(list, ',');
        size_t len = end ? (size_t)(end - list) : strlen(list);
        char name[ZT_LORA_TARGETS_MAX];
        snprintf(name, sizeof name, "%.*s", (int)len, list);
        cJSON_AddItemToArray(targets, cJSON_CreateString(name));
        list += len + (end ? 1 : 0);
    }
    cJSON_AddItemToObject(root, "target_modules", targets);
    cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(root, "use_dora", 0);
    cJSON_AddBoolToObject(root, "use_rslora", 0);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return zt_fail(ZT_ERR_NOMEM, "%s: formatting", path);
    const void *chunks[] = {text};
    size_t chunk_bytes[] = {strlen(text)};
    zt_status s = zt_write_file_atomic(path, chunks, chunk_bytes, 1);
    cJSON_free(text);
    return s;
}

zt_status zt_lora_save(const zt_model *m, const char *dir, const char *base_name) {
    const zt_lora *lora = m->lora;
    if (!lora) return zt_fail(ZT_ERR_INVALID_ARG, "%s: the model has no LoRA adapters", dir);
    ZT_TRY(zt_make_dirs(dir));
    const int n = m->n_tensors - lora->n_base;
    const zt_tensor_info *first = &m->tensors[lora->n_base];
    const size_t bytes = lora->scale_offset - first->offset;
    char *host = zt_malloc(bytes ? bytes : 1);
    zt_st_write_tensor *tensors = zt_calloc((size_t)n, sizeof *tensors);
    char(*names)[ZT_TENSOR_NAME_MAX + sizeof peft_prefix] = zt_calloc((size_t)n, sizeof *names);
    zt_status s =
        host && tensors && names ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "%s: staging the adapters", dir);
    if (s == ZT_OK)
        s = m->be->ops->download(m->be, host, (const char *)m->weights + first->offset, bytes);
    for (int i = 0; s == ZT_OK && i < n; i++) {
        const zt_tensor_info *t = &first[i];
        snprintf(names[i], sizeof names[i], "%s%s", peft_prefix, t->name);
        tensors[i] =
            (zt_st_write_tensor){names[i], "F32", 2, t->shape, host + (t->offset - first->offset)};
    }
    char path[4200];
    static const char *const metadata[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (s == ZT_OK) s = zt_st_write(path, tensors, n, metadata, 1);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (s == ZT_OK) s = write_config(m, path, base_name);
    free(host);
    free(tensors);
    free(names);
    return s;
}

/* A key that must hold a given value for zotune to apply the adapter as peft would. */
static zt_status expect_plain(const char *path, const cJSON *root) {
    static const char *const false_keys[] = {"use_rslora", "use_dora", "fan_in_fan_out",
                                             "lora_bias"};
    for (size_t i = 0; i < sizeof false_keys / sizeof *false_keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, false_keys[i]);
        if (cJSON_IsTrue(v))
            return zt_fail(ZT_ERR_UNAVAILABLE,
                           "%s: \"%s\": true is not supported (plain LoRA only)", path,
                           false_keys[i]);
    }
    static const char *const null_keys[] = {"layers_to_transform", "modules_to_save",
                                            "exclude_modules",     "layer_replication",
                                            "target_parameters",   "trainable_token_indices"};
    for (size_t i = 0; i < sizeof null_keys / sizeof *null_keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, null_keys[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
            return zt_fail(ZT_ERR_UNAVAILABLE, "%s: \"%s\" is not supported (must be null)", path,
                           null_keys[i]);
    }
    static const char *const empty_maps[] = {"rank_pattern", "alpha_pattern"};
    for (size_t i = 0; i < sizeof empty_maps / sizeof *empty_maps; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, empty_maps[i]);
        if (v && !cJSON_IsNull(v) && cJSON_GetArraySize(v) > 0)
            return zt_fail(ZT_ERR_UNAVAILABLE, "%s: \"%s\" is not supported (must be empty)", path,
                           empty_maps[i]);
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (bias && !(cJSON_IsString(bias) && strcmp(bias->valuestring, "none") == 0))
        return zt_fail(ZT_ERR_UNAVAILABLE, "%s: \"bias\" must be \"none\"", path);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "LORA") != 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: \"peft_type\" is not \"LORA\"", path);
    return ZT_OK;
}

static zt_status parse_config(const char *path, const cJSON *root, zt_lora_options *o) {
    ZT_TRY(expect_plain(path, root));
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (!cJSON_IsNumber(r) || r->valuedouble != floor(r->valuedouble) || r->valuedouble < 1 ||
        r->valuedouble > ZT_LORA_MAX_RANK)
        return zt_fail(ZT_ERR_FORMAT, "%s: \"r\" must be an integer 1 .. %d", path,
                       (int)ZT_LORA_MAX_RANK);
    if (!cJSON_IsNumber(alpha) || !(alpha->valuedouble > 0))
        return zt_fail(ZT_ERR_FORMAT, "%s: \"lora_alpha\" must be a positive number", path);
    if (!cJSON_IsArray(targets) || cJSON_GetArraySize(targets) == 0)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "%s: \"target_modules\" must be a list of module names (a regex string is "
                       "not supported)",
                       path);
    o->rank = (int)r->valuedouble;
    o->alpha = alpha->valuedouble;
    size_t used = 0;
    o->targets[0] = '\0';
    const cJSON *t;
    cJSON_ArrayForEach(t, targets) {
        if (!cJSON_IsString(t) || !t->valuestring[0] || strchr(t->valuestring, ','))
            return zt_fail(ZT_ERR_FORMAT, "%s: \"target_modules\" holds a bad name", path);
        int n = snprintf(o->targets + used, sizeof o->targets - used, "%s%s", used ? "," : "",
                         t->valuestring);
        if (n < 0 || (size_t)n >= sizeof o->targets - used)
            return zt_fail(ZT_ERR_FORMAT, "%s: \"target_modules\" is too long", path);
        used += (size_t)n;
    }
    return ZT_OK;
}

zt_status zt_lora_read_config(const char *dir, zt_lora_options *o) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return zt_fail(ZT_ERR_IO, "%s: cannot open (an adapter directory needs it)", path);
    char *text = zt_malloc(1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!text) return zt_fail(ZT_ERR_NOMEM, "%s: reading", path);
    text[n] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return zt_fail(ZT_ERR_FORMAT, "%s: not a JSON object", path);
    }
    zt_status s = parse_config(path, root, o);
    cJSON_Delete(root);
    return s;
}

/* The stored adapter tensor of table entry t: peft's key, or the bare module path. */
static const zt_st_tensor *find_adapter(const zt_safetensors *st, const zt_tensor_info *t) {
    char key[ZT_TENSOR_NAME_MAX + sizeof peft_prefix];
    snprintf(key, sizeof key, "%s%s", peft_prefix, t->name);
    const zt_st_tensor *found = zt_st_find(st, key);
    return found ? found : zt_st_find(st, t->name);
}

static zt_status check_all_known(const zt_model *m, const zt_safetensors *st, const char *path) {
    for (int i = 0; i < zt_st_count(st); i++) {
        const char *name = zt_st_get(st, i)->name;
        const char *bare = strncmp(name, peft_prefix, sizeof peft_prefix - 1) == 0
                               ? name + sizeof peft_prefix - 1
                               : name;
        int known = 0;
        for (int k = m->lora->n_base; k < m->n_tensors && !known; k++)
            known = strcmp(bare, m->tensors[k].name) == 0;
        if (!known)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: tensor '%s' is no adapter of this model with these targets (%s)",
                           path, name, m->lora->options.targets);
    }
    return ZT_OK;
}

static zt_status upload_adapter(zt_model *m, const zt_tensor_info *t, const zt_st_tensor *stored,
                                const char *path, float *host) {
    if (stored->n_dims != 2 || stored->shape[0] != t->shape[0] || stored->shape[1] != t->shape[1])
        return zt_fail(ZT_ERR_SHAPE, "%s: tensor '%s' is not [%lld, %lld]", path, stored->name,
                       (long long)t->shape[0], (long long)t->shape[1]);
    zt_dtype dtype;
    zt_status s = zt_st_storage_dtype(stored, &dtype);
    if (s != ZT_OK) return zt_fail_context(s, "%s: ", path);
    /* the mapping is not aligned: copy out, then widen in place from the back */
    memcpy(host, stored->data, stored->n_bytes);
    for (size_t j = t->n_elems; j-- > 0;)
        host[j] = zt_load_f32(host, dtype, j);
    return m->be->ops->upload(m->be, (char *)m->weights + t->offset, host,
                              t->n_elems * sizeof(float));
}

zt_status zt_lora_load_tensors(zt_model *m, const char *dir, const uint8_t *mask) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    zt_safetensors *st = NULL;
    ZT_TRY(zt_st_open(path, &st));
    size_t most = 1;
    for (int i = m->lora->n_base; i < m->n_tensors; i++)
        if (m->tensors[i].n_elems > most) most = m->tensors[i].n_elems;
    float *host = zt_malloc(most * sizeof(float));
    zt_status s = host ? check_all_known(m, st, path)
                       : zt_fail(ZT_ERR_NOMEM, "%s: staging the adapters", path);
    for (int i = m->lora->n_base; s == ZT_OK && i < m->n_tensors; i++) {
        if (mask && !mask[i]) continue;
        const zt_tensor_info *t = &m->tensors[i];
        const zt_st_tensor *stored = find_adapter(st, t);
        if (!stored)
            s = zt_fail(ZT_ERR_MISSING, "%s: tensor '%s%s' is missing", path, peft_prefix, t->name);
        else
            s = upload_adapter(m, t, stored, path, host);
    }
    free(host);
    zt_st_close(st);
    return s;
}

/* W += s * B A for one adapted weight: each element's delta summed in double over the rank. */
static zt_status merge_one(zt_model *m, int w_id, int a_id, int b_id) {
    const zt_tensor_info *w = &m->tensors[w_id], *a = &m->tensors[a_id], *b = &m->tensors[b_id];
    const size_t rows = (size_t)w->shape[0], cols = (size_t)w->shape[1];
    const size_t rank = (size_t)a->shape[0], elem = zt_dtype_size(w->dtype);
    void *wh = zt_malloc(w->n_elems * elem);
    float *ah = zt_malloc(a->n_elems * sizeof *ah), *bh = zt_malloc(b->n_elems * sizeof *bh);
    zt_status s =
        wh && ah && bh ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "merging %s: host copies", w->name);
    zt_backend *be = m->be;
    if (s == ZT_OK)
        s = be->ops->download(be, wh, (char *)m->weights + w->offset, w->n_elems * elem);
    if (s == ZT_OK)
        s = be->ops->download(be, ah, (char *)m->weights + a->offset, a->n_elems * sizeof *ah);
    if (s == ZT_OK)
        s = be->ops->download(be, bh, (char *)m->weights + b->offset, b->n_elems * sizeof *bh);
    const double scale = m->lora->options.alpha / m->lora->options.rank;
    for (size_t o = 0; s == ZT_OK && o < rows; o++)
        for (size_t i = 0; i < cols; i++) {
            double delta = 0;
            for (size_t k = 0; k < rank; k++)
                delta += (double)bh[o * rank + k] * (double)ah[k * cols + i];
            const float merged = zt_load_f32(wh, w->dtype, o * cols + i) + (float)(scale * delta);
            zt_store_rne(wh, w->dtype, o * cols + i, merged);
        }
    if (s == ZT_OK) s = be->ops->upload(be, (char *)m->weights + w->offset, wh, w->n_elems * elem);
    free(wh);
    free(ah);
    free(bh);
    return s;
}

zt_status zt_lora_merge(zt_model *m) {
    if (!m->lora) return zt_fail(ZT_ERR_INVALID_ARG, "merge: the model has no LoRA adapters");
    for (int i = 0; i < m->lora->n_base; i++) {
        int a, b;
        if (zt_lora_of(m, i, &a, &b)) ZT_TRY(merge_one(m, i, a, b));
    }
    return ZT_OK;
}
