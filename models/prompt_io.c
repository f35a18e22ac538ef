/* Prompt tuning in HF peft's files (models/prompt.h): adapter_model.safetensors holding
 * "prompt_embeddings" (num_virtual_tokens x num_transformer_submodules, token_dim), as
 * PeftModel.save_pretrained writes it for PROMPT_TUNING, and adapter_config.json. */
#include <math.h>
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
#include "prompt.h"

static const char table_key[] = "prompt_embeddings";

static zt_status write_config(const zt_model *m, const char *path, const char *base_name) {
    const zt_tensor_info *t = &m->tensors[m->prompt->table];
    cJSON *root = cJSON_CreateObject();
    if (!root) return zt_fail(ZT_ERR_NOMEM, "%s: building the adapter config", path);
    cJSON_AddNullToObject(root, "auto_mapping");
    cJSON_AddStringToObject(root, "base_model_name_or_path", base_name ? base_name : "");
    cJSON_AddBoolToObject(root, "inference_mode", 1);
    cJSON_AddNumberToObject(root, "num_attention_heads", m->dims.n_heads);
    cJSON_AddNumberToObject(root, "num_layers", m->dims.n_layers);
    cJSON_AddNumberToObject(root, "num_transformer_submodules", 1);
    cJSON_AddNumberToObject(root, "num_virtual_tokens", m->prompt->options.n_virtual);
    cJSON_AddStringToObject(root, "peft_type", "PROMPT_TUNING");
    cJSON_AddStringToObject(root, "prompt_tuning_init", "SAMPLE_VOCAB");
    cJSON_AddNullToObject(root, "prompt_tuning_init_text");
    cJSON_AddNullToObject(root, "revision");
    cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
    cJSON_AddNumberToObject(root, "token_dim", (double)t->shape[1]);
    cJSON_AddNullToObject(root, "tokenizer_kwargs");
    cJSON_AddNullToObject(root, "tokenizer_name_or_path");
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return zt_fail(ZT_ERR_NOMEM, "%s: formatting", path);
    const void *chunks[] = {text};
    size_t chunk_bytes[] = {strlen(text)};
    zt_status s = zt_write_file_atomic(path, chunks, chunk_bytes, 1);
    cJSON_free(text);
    return s;
}

zt_status zt_prompt_save(const zt_model *m, const char *dir, const char *base_name) {
    if (!m->prompt) return zt_fail(ZT_ERR_INVALID_ARG, "%s: the model has no prompt table", dir);
    ZT_TRY(zt_make_dirs(dir));
    const zt_tensor_info *t = &m->tensors[m->prompt->table];
    float *host = zt_malloc(t->n_elems * sizeof *host);
    if (!host) return zt_fail(ZT_ERR_NOMEM, "%s: staging the prompt table", dir);
    zt_status s = m->be->ops->download(m->be, host, (const char *)m->weights + t->offset,
                                       t->n_elems * sizeof *host);
    const zt_st_write_tensor tensor = {table_key, "F32", 2, t->shape, host};
    char path[4200];
    static const char *const metadata[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (s == ZT_OK) s = zt_st_write(path, &tensor, 1, metadata, 1);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (s == ZT_OK) s = write_config(m, path, base_name);
    free(host);
    return s;
}

static zt_status read_json(const char *dir, char *path, size_t path_size, cJSON **out) {
    *out = NULL;
    snprintf(path, path_size, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return zt_fail(ZT_ERR_IO, "%s: cannot open (an adapter directory needs it)", path);
    char *text = zt_malloc(1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!text) return zt_fail(ZT_ERR_NOMEM, "%s: reading", path);
    text[n] = '\0';
    *out = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return zt_fail(ZT_ERR_FORMAT, "%s: not a JSON object", path);
    }
    return ZT_OK;
}

int zt_prompt_dir_is_prompt(const char *dir) {
    char path[4200];
    cJSON *root = NULL;
    if (read_json(dir, path, sizeof path, &root) != ZT_OK) {
        zt_clear_error();
        return 0;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    const int is_prompt = cJSON_IsString(type) && strcmp(type->valuestring, "PROMPT_TUNING") == 0;
    cJSON_Delete(root);
    return is_prompt;
}

static zt_status parse_config(const char *path, const cJSON *root, zt_prompt_options *o) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "PROMPT_TUNING") != 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: \"peft_type\" is not \"PROMPT_TUNING\"", path);
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task_type");
    if (task && !(cJSON_IsString(task) && strcmp(task->valuestring, "CAUSAL_LM") == 0))
        return zt_fail(ZT_ERR_UNAVAILABLE, "%s: \"task_type\" must be \"CAUSAL_LM\"", path);
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(root, "num_transformer_submodules");
    if (subs && !cJSON_IsNull(subs) && !(cJSON_IsNumber(subs) && subs->valuedouble == 1))
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "%s: \"num_transformer_submodules\" must be 1 (a decoder-only model)", path);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "num_virtual_tokens");
    if (!cJSON_IsNumber(n) || n->valuedouble != floor(n->valuedouble) || n->valuedouble < 1 ||
        n->valuedouble > ZT_PROMPT_MAX_TOKENS)
        return zt_fail(ZT_ERR_FORMAT, "%s: \"num_virtual_tokens\" must be an integer 1 .. %d", path,
                       (int)ZT_PROMPT_MAX_TOKENS);
    o->n_virtual = (int)n->valuedouble;
    return ZT_OK;
}

zt_status zt_prompt_read_config(const char *dir, zt_prompt_options *o) {
    char path[4200];
    cJSON *root = NULL;
    ZT_TRY(read_json(dir, path, sizeof path, &root));
    zt_status s = parse_config(path, root, o);
    cJSON_Delete(root);
    return s;
}

zt_status zt_prompt_load_tensors(zt_model *m, const char *dir, const uint8_t *mask) {
    if (mask && !mask[m->prompt->table]) return ZT_OK;
    const zt_tensor_info *t = &m->tensors[m->prompt->table];
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    zt_safetensors *st = NULL;
    ZT_TRY(zt_st_open(path, &st));
    zt_status s = ZT_OK;
    const zt_st_tensor *stored = zt_st_find(st, table_key);
    if (!stored)
        s = zt_fail(ZT_ERR_MISSING, "%s: tensor '%s' is missing", path, table_key);
    else if (zt_st_count(st) != 1)
        s = zt_fail(ZT_ERR_FORMAT, "%s: holds %d tensors, a prompt adapter only '%s'", path,
                    zt_st_count(st), table_key);
    else if (stored->n_dims != 2 || stored->shape[0] != t->shape[0] ||
             stored->shape[1] != t->shape[1])
        s = zt_fail(ZT_ERR_SHAPE,
                    "%s: tensor '%s' is not [%lld, %lld] (num_virtual_tokens x the model's "
                    "token width)",
                    path, table_key, (long long)t->shape[0], (long long)t->shape[1]);
    zt_dtype dtype = ZT_F32;
    if (s == ZT_OK) {
        s = zt_st_storage_dtype(stored, &dtype);
        if (s != ZT_OK) s = zt_fail_context(s, "%s: ", path);
    }
    float *host = s == ZT_OK ? zt_malloc(t->n_elems * sizeof *host) : NULL;
    if (s == ZT_OK && !host) s = zt_fail(ZT_ERR_NOMEM, "%s: staging the prompt table", path);
    if (s == ZT_OK) {
        /* the mapping is not aligned: copy out, then widen in place from the back */
        memcpy(host, stored->data, stored->n_bytes);
        for (size_t j = t->n_elems; j-- > 0;)
            host[j] = zt_load_f32(host, dtype, j);
        s = m->be->ops->upload(m->be, (char *)m->weights + t->offset, host,
                               t->n_elems * sizeof *host);
    }
    free(host);
    zt_st_close(st);
    return s;
}
