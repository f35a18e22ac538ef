/* Prefix adapters on disk (models/prefix.h): adapter_config.json with peft_type "MEZO_PREFIX" and
 * num_prefix, and adapter_model.safetensors with the prefix tensors under their table names
 * (MeZO's parameter names). Not HF peft's PREFIX_TUNING format on purpose: peft shifts the
 * positions by N and would load these prefixes with other logits (docs/design.md §3.3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/dtype.h"
#include "core/alloc.h"
#include "core/path.h"
#include "core/status.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "prefix.h"

static const char peft_type[] = "MEZO_PREFIX";

static zt_status write_config(const zt_model *m, const char *path, const char *base_name) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return zt_fail(ZT_ERR_NOMEM, "%s: building the adapter config", path);
    cJSON_AddStringToObject(root, "base_model_name_or_path", base_name ? base_name : "");
    cJSON_AddNumberToObject(root, "num_prefix", m->prefix->options.n_prefix);
    cJSON_AddStringToObject(root, "peft_type", peft_type);
    cJSON_AddStringToObject(root, "position_ids", "unshifted");
    cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return zt_fail(ZT_ERR_NOMEM, "%s: formatting", path);
    const void *chunks[] = {text};
    size_t chunk_bytes[] = {strlen(text)};
    zt_status s = zt_write_file_atomic(path, chunks, chunk_bytes, 1);
    cJSON_free(text);
    return s;
}

zt_status zt_prefix_save(const zt_model *m, const char *dir, const char *base_name) {
    const zt_prefix *prefix = m->prefix;
    if (!prefix) return zt_fail(ZT_ERR_INVALID_ARG, "%s: the model has no prefixes", dir);
    ZT_TRY(zt_make_dirs(dir));
    const int n = m->n_tensors - prefix->n_base;
    const zt_tensor_info *first = &m->tensors[prefix->n_base];
    const zt_tensor_info *last = &m->tensors[m->n_tensors - 1];
    const size_t bytes = last->offset + last->n_elems * sizeof(float) - first->offset;
    char *host = zt_malloc(bytes ? bytes : 1);
    zt_st_write_tensor *tensors = zt_calloc((size_t)n, sizeof *tensors);
    zt_status s = host && tensors ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "%s: staging the prefixes", dir);
    if (s == ZT_OK)
        s = m->be->ops->download(m->be, host, (const char *)m->weights + first->offset, bytes);
    for (int i = 0; s == ZT_OK && i < n; i++) {
        const zt_tensor_info *t = &first[i];
        tensors[i] =
            (zt_st_write_tensor){t->name, "F32", 2, t->shape, host + (t->offset - first->offset)};
    }
    char path[4200];
    static const char *const metadata[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (s == ZT_OK) s = zt_st_write(path, tensors, n, metadata, 1);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (s == ZT_OK) s = write_config(m, path, base_name);
    free(host);
    free(tensors);
    return s;
}

/* dir's adapter_config.json parsed, or NULL when it cannot be read or is no JSON object (no
 * error set: the callers say what they expected). */
static cJSON *read_json(const char *dir, char *path, size_t path_size) {
    snprintf(path, path_size, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = zt_malloc(1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!text) return NULL;
    text[n] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int zt_prefix_dir_is_prefix(const char *dir) {
    char path[4200];
    cJSON *root = read_json(dir, path, sizeof path);
    if (!root) return 0;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    const int is = cJSON_IsString(type) && strcmp(type->valuestring, peft_type) == 0;
    cJSON_Delete(root);
    return is;
}

zt_status zt_prefix_read_config(const char *dir, zt_prefix_options *o) {
    char path[4200];
    cJSON *root = read_json(dir, path, sizeof path);
    if (!root) return zt_fail(ZT_ERR_IO, "%s: cannot read it as a JSON object", path);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "num_prefix");
    zt_status s = ZT_OK;
    if (!cJSON_IsString(type) || strcmp(type->valuestring, peft_type) != 0)
        s = zt_fail(ZT_ERR_FORMAT, "%s: \"peft_type\" is not \"%s\"", path, peft_type);
    else if (!cJSON_IsNumber(n) || n->valuedouble != (double)(int)n->valuedouble ||
             n->valuedouble < 1 || n->valuedouble > ZT_PREFIX_MAX_TOKENS)
        s = zt_fail(ZT_ERR_FORMAT, "%s: \"num_prefix\" must be an integer 1 .. %d", path,
                    (int)ZT_PREFIX_MAX_TOKENS);
    else
        o->n_prefix = (int)n->valuedouble;
    cJSON_Delete(root);
    return s;
}

static zt_status upload_prefix(zt_model *m, const zt_tensor_info *t, const zt_st_tensor *stored,
                               const char *path, float *host) {
    if (stored->n_dims != 2 || stored->shape[0] != t->shape[0] || stored->shape[1] != t->shape[1])
        return zt_fail(ZT_ERR_SHAPE, "%s: tensor '%s' is not [%lld, %lld]", path, stored->name,
                       (long long)t->shape[0], (long long)t->shape[1]);
    zt_dtype dtype;
    zt_status s = zt_st_storage_dtype(stored, &dtype);
    if (s != ZT_OK) return zt_fail_context(s, "%s: ", path);
    memcpy(host, stored->data, stored->n_bytes);
    for (size_t j = t->n_elems; j-- > 0;)
        host[j] = zt_load_f32(host, dtype, j);
    return m->be->ops->upload(m->be, (char *)m->weights + t->offset, host,
                              t->n_elems * sizeof(float));
}

zt_status zt_prefix_load_tensors(zt_model *m, const char *dir, const uint8_t *mask) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    zt_safetensors *st = NULL;
    ZT_TRY(zt_st_open(path, &st));
    const int n_base = m->prefix->n_base;
    float *host = zt_malloc(m->tensors[n_base].n_elems * sizeof(float));
    zt_status s = host ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "%s: staging the prefixes", path);
    if (s == ZT_OK && zt_st_count(st) != m->n_tensors - n_base)
        s = zt_fail(ZT_ERR_FORMAT, "%s: %d tensors, this model has %d prefixes", path,
                    zt_st_count(st), m->n_tensors - n_base);
    for (int i = n_base; s == ZT_OK && i < m->n_tensors; i++) {
        if (mask && !mask[i]) continue;
        const zt_tensor_info *t = &m->tensors[i];
        const zt_st_tensor *stored = zt_st_find(st, t->name);
        if (!stored)
            s = zt_fail(ZT_ERR_MISSING, "%s: tensor '%s' is missing", path, t->name);
        else
            s = upload_prefix(m, t, stored, path, host);
    }
    free(host);
    zt_st_close(st);
    return s;
}
