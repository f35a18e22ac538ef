#include "opt/opt_config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/status.h"
#include "io/jsonl.h"
#include "io/atomic_file.h"

/* A config.json is a few hundred bytes; anything near this is not a config. */
static const long cfg_max_file_bytes = 16L << 20;

/* torch's names of the storage dtypes, indexed by zt_dtype. */
static const char *const cfg_torch_dtypes[] = {
    [ZT_F32] = "float32", [ZT_F16] = "float16", [ZT_BF16] = "bfloat16"};

const char *zt_opt_torch_dtype_name(zt_dtype dtype) {
    return (unsigned)dtype < sizeof cfg_torch_dtypes / sizeof cfg_torch_dtypes[0]
               ? cfg_torch_dtypes[dtype]
               : "";
}

static const char *cfg_json_type_name(const cJSON *item) {
    if (cJSON_IsNull(item)) return "null";
    if (cJSON_IsBool(item)) return "a boolean";
    if (cJSON_IsNumber(item)) return "a number";
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    return "an invalid value";
}

static zt_status cfg_read_file(const char *path, char **text_out) {
    FILE *stream = fopen(path, "rb");
    if (!stream)
        return zt_fail(errno == ENOENT ? ZT_ERR_MISSING : ZT_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    /* The buffer grows with the file, to one byte past the limit (which is how an oversized file
     * shows): a 700-byte config should not cost a 16 MB allocation. */
    size_t capacity = 4096, len = 0, limit = (size_t)cfg_max_file_bytes + 1;
    char *text = NULL;
    for (;;) {
        char *grown = zt_realloc(text, capacity + 1);
        if (!grown) {
            free(text);
            fclose(stream);
            return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", path);
        }
        text = grown;
        len += fread(text + len, 1, capacity - len, stream);
        if (len < capacity || capacity == limit) break;
        capacity = capacity * 2 < limit ? capacity * 2 : limit;
    }
    bool read_error = ferror(stream) != 0;
    fclose(stream);
    zt_status status = ZT_OK;
    if (read_error)
        status = zt_fail(ZT_ERR_IO, "%s: read error", path);
    else if (len > (size_t)cfg_max_file_bytes)
        status = zt_fail(ZT_ERR_FORMAT, "%s: larger than %ld bytes; not a config.json", path,
                         cfg_max_file_bytes);
    else if (memchr(text, 0, len))
        status = zt_fail(ZT_ERR_FORMAT, "%s: contains a NUL byte", path);
    if (status != ZT_OK) {
        free(text);
        return status;
    }
    text[len] = '\0';
    *text_out = text;
    return ZT_OK;
}

/* Python's json keeps the last of duplicate keys and cJSON the first: refuse the ambiguity. */
static zt_status cfg_check_unique_keys(const char *path, const cJSON *root) {
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" appears twice", path, a->string);
    return ZT_OK;
}

static zt_status cfg_get_int(const char *path, const cJSON *root, const char *key, bool required,
                             int fallback, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item) {
        if (required) return zt_fail(ZT_ERR_MISSING, "%s: missing required key \"%s\"", path, key);
        *out = fallback;
        return ZT_OK;
    }
    if (!cJSON_IsNumber(item))
        return zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" must be an integer, got %s", path, key,
                       cfg_json_type_name(item));
    double value = item->valuedouble;
    if (!isfinite(value) || floor(value) != value)
        return zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" must be an integer, got %g", path, key,
                       value);
    if (value < INT_MIN || value > INT_MAX)
        return zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" = %.0f is out of range", path, key, value);
    *out = (int)value;
    return ZT_OK;
}

static zt_status cfg_get_bool(const char *path, const cJSON *root, const char *key, int fallback,
                              int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item) {
        *out = fallback;
        return ZT_OK;
    }
    if (!cJSON_IsBool(item))
        return zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" must be true or false, got %s", path, key,
                       cfg_json_type_name(item));
    *out = cJSON_IsTrue(item);
    return ZT_OK;
}

/* A string-valued key that, when present, must equal `expected`. */
static zt_status cfg_expect_string(const char *path, const cJSON *root, const char *key,
                                   const char *expected) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item) return ZT_OK;
    if (!cJSON_IsString(item))
        return zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" must be a string, got %s", path, key,
                       cfg_json_type_name(item));
    if (strcmp(item->valuestring, expected) != 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: %s is \"%.64s\"; only \"%s\" is supported", path, key,
                       item->valuestring, expected);
    return ZT_OK;
}

static bool cfg_torch_dtype_known(const char *name) {
    if (name[0] == '\0') return true;
    for (size_t i = 0; i < sizeof cfg_torch_dtypes / sizeof cfg_torch_dtypes[0]; i++)
        if (strcmp(name, cfg_torch_dtypes[i]) == 0) return true;
    return false;
}

static zt_status cfg_get_torch_dtype(const char *path, const cJSON *root, char *out,
                                     size_t out_size) {
    /* transformers 4.56 renamed the key to "dtype"; accept either. */
    const char *key = "torch_dtype";
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item) {
        key = "dtype";
        item = cJSON_GetObjectItemCaseSensitive(root, key);
    }
    out[0] = '\0';
    if (!item || cJSON_IsNull(item)) return ZT_OK;
    if (!cJSON_IsString(item))
        return zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" must be a string, got %s", path, key,
                       cfg_json_type_name(item));
    if (!cfg_torch_dtype_known(item->valuestring))
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: %s \"%.64s\" is not supported (float16, float32 or bfloat16)", path,
                       key, item->valuestring);
    snprintf(out, out_size, "%s", item->valuestring);
    return ZT_OK;
}

zt_status zt_opt_config_validate(const char *path, const zt_opt_config *cfg, zt_status status) {
    const struct {
        const char *key;
        int value;
    } sizes[] = {
        {"vocab_size", cfg->vocab_size},
        {"hidden_size", cfg->hidden_size},
        {"num_hidden_layers", cfg->num_hidden_layers},
        {"num_attention_heads", cfg->num_attention_heads},
        {"ffn_dim", cfg->ffn_dim},
        {"max_position_embeddings", cfg->max_position_embeddings},
        {"word_embed_proj_dim", cfg->word_embed_proj_dim},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value <= 0)
            return zt_fail(status, "%s: %s must be positive, got %d", path, sizes[i].key,
                           sizes[i].value);
    if (cfg->hidden_size % cfg->num_attention_heads != 0)
        return zt_fail(status, "%s: hidden_size %d is not divisible by num_attention_heads %d",
                       path, cfg->hidden_size, cfg->num_attention_heads);
    const struct {
        const char *key;
        int value;
    } tokens[] = {
        {"bos_token_id", cfg->bos_token_id},
        {"eos_token_id", cfg->eos_token_id},
        {"pad_token_id", cfg->pad_token_id},
    };
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
        if (tokens[i].value < 0 || tokens[i].value >= cfg->vocab_size)
            return zt_fail(status, "%s: %s %d is outside the vocabulary [0, %d)", path,
                           tokens[i].key, tokens[i].value, cfg->vocab_size);
    if (memchr(cfg->torch_dtype, '\0', sizeof cfg->torch_dtype) == NULL ||
        !cfg_torch_dtype_known(cfg->torch_dtype))
        return zt_fail(status, "%s: torch_dtype is not float16, float32, bfloat16 or empty", path);
    return ZT_OK;
}

static zt_status cfg_read_fields(const char *path, const cJSON *root, zt_opt_config *cfg) {
    const struct {
        const char *key;
        int *field;
    } required[] = {
        {"vocab_size", &cfg->vocab_size},
        {"hidden_size", &cfg->hidden_size},
        {"num_hidden_layers", &cfg->num_hidden_layers},
        {"num_attention_heads", &cfg->num_attention_heads},
        {"ffn_dim", &cfg->ffn_dim},
        {"max_position_embeddings", &cfg->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        ZT_TRY(cfg_get_int(path, root, required[i].key, true, 0, required[i].field));

    const cJSON *proj = cJSON_GetObjectItemCaseSensitive(root, "word_embed_proj_dim");
    if (proj && cJSON_IsNull(proj))
        cfg->word_embed_proj_dim = cfg->hidden_size;
    else
        ZT_TRY(cfg_get_int(path, root, "word_embed_proj_dim", false, cfg->hidden_size,
                           &cfg->word_embed_proj_dim));

    ZT_TRY(cfg_get_bool(path, root, "do_layer_norm_before", 1, &cfg->do_layer_norm_before));
    ZT_TRY(cfg_get_bool(path, root, "enable_bias", 1, &cfg->enable_bias));
    ZT_TRY(cfg_get_bool(path, root, "layer_norm_elementwise_affine", 1,
                        &cfg->layer_norm_elementwise_affine));
    ZT_TRY(cfg_get_bool(path, root, "_remove_final_layer_norm", 0, &cfg->remove_final_layer_norm));
    ZT_TRY(cfg_get_int(path, root, "bos_token_id", false, 2, &cfg->bos_token_id));
    ZT_TRY(cfg_get_int(path, root, "eos_token_id", false, 2, &cfg->eos_token_id));
    ZT_TRY(cfg_get_int(path, root, "pad_token_id", false, 1, &cfg->pad_token_id));
    ZT_TRY(cfg_get_torch_dtype(path, root, cfg->torch_dtype, sizeof cfg->torch_dtype));
    ZT_TRY(cfg_expect_string(path, root, "activation_function", "relu"));
    ZT_TRY(cfg_expect_string(path, root, "model_type", "opt"));
    return zt_opt_config_validate(path, cfg, ZT_ERR_FORMAT);
}

zt_status zt_opt_config_load(const char *path, zt_opt_config *out) {
    if (!path || !out) return zt_fail(ZT_ERR_INVALID_ARG, "zt_opt_config_load: NULL argument");
    char *text = NULL;
    ZT_TRY(cfg_read_file(path, &text));
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &parse_end, 1);
    if (!root) {
        /* Report a line, as an editor would show it. */
        int line = 1;
        for (const char *c = text; parse_end && c < parse_end && *c; c++)
            line += *c == '\n';
        free(text);
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: invalid JSON", path, line);
    }
    free(text);
    const char *twice = zt_json_duplicate_key(root);
    if (twice) {
        zt_status status = zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" appears twice", path, twice);
        cJSON_Delete(root);
        return status;
    }
    zt_status status = ZT_OK;
    if (!cJSON_IsObject(root))
        status = zt_fail(ZT_ERR_FORMAT, "%s: top level is not a JSON object", path);
    if (status == ZT_OK) status = cfg_check_unique_keys(path, root);
    zt_opt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (status == ZT_OK) status = cfg_read_fields(path, root, &cfg);
    cJSON_Delete(root);
    if (status == ZT_OK) *out = cfg;
    return status;
}

zt_status zt_opt_config_write(const char *path, const zt_opt_config *cfg) {
    if (!path || !cfg) return zt_fail(ZT_ERR_INVALID_ARG, "zt_opt_config_write: NULL argument");
    ZT_TRY(zt_opt_config_validate(path, cfg, ZT_ERR_INVALID_ARG));

    char *text = NULL;
    size_t text_bytes = 0;
    FILE *stream = open_memstream(&text, &text_bytes);
    if (!stream) return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", path);
#define CFG_BOOL(value) ((value) ? "true" : "false")
    /* Keys sorted and indented as transformers' save_pretrained writes them. */
    fprintf(stream, "{\n");
    fprintf(stream, "  \"_remove_final_layer_norm\": %s,\n",
            CFG_BOOL(cfg->remove_final_layer_norm));
    fprintf(stream, "  \"activation_dropout\": 0.0,\n");
    fprintf(stream, "  \"activation_function\": \"relu\",\n");
    fprintf(stream, "  \"architectures\": [\n    \"OPTForCausalLM\"\n  ],\n");
    fprintf(stream, "  \"attention_dropout\": 0.0,\n");
    fprintf(stream, "  \"bos_token_id\": %d,\n", cfg->bos_token_id);
    fprintf(stream, "  \"do_layer_norm_before\": %s,\n", CFG_BOOL(cfg->do_layer_norm_before));
    fprintf(stream, "  \"dropout\": 0.1,\n");
    fprintf(stream, "  \"enable_bias\": %s,\n", CFG_BOOL(cfg->enable_bias));
    fprintf(stream, "  \"eos_token_id\": %d,\n", cfg->eos_token_id);
    fprintf(stream, "  \"ffn_dim\": %d,\n", cfg->ffn_dim);
    fprintf(stream, "  \"hidden_size\": %d,\n", cfg->hidden_size);
    fprintf(stream, "  \"init_std\": 0.02,\n");
    fprintf(stream, "  \"layer_norm_elementwise_affine\": %s,\n",
            CFG_BOOL(cfg->layer_norm_elementwise_affine));
    fprintf(stream, "  \"layerdrop\": 0.0,\n");
    fprintf(stream, "  \"max_position_embeddings\": %d,\n", cfg->max_position_embeddings);
    fprintf(stream, "  \"model_type\": \"opt\",\n");
    fprintf(stream, "  \"num_attention_heads\": %d,\n", cfg->num_attention_heads);
    fprintf(stream, "  \"num_hidden_layers\": %d,\n", cfg->num_hidden_layers);
    fprintf(stream, "  \"pad_token_id\": %d,\n", cfg->pad_token_id);
    fprintf(stream, "  \"prefix\": \"</s>\",\n");
    if (cfg->torch_dtype[0])
        fprintf(stream, "  \"torch_dtype\": \"%s\",\n", cfg->torch_dtype);
    else
        fprintf(stream, "  \"torch_dtype\": null,\n");
    fprintf(stream, "  \"use_cache\": true,\n");
    fprintf(stream, "  \"vocab_size\": %d,\n", cfg->vocab_size);
    fprintf(stream, "  \"word_embed_proj_dim\": %d\n", cfg->word_embed_proj_dim);
    fprintf(stream, "}\n");
#undef CFG_BOOL
    bool failed = ferror(stream) != 0;
    if (fclose(stream) != 0 || failed) {
        free(text);
        return zt_fail(ZT_ERR_NOMEM, "%s: out of memory while formatting", path);
    }
    const void *chunks[1] = {text};
    zt_status status = zt_write_file_atomic(path, chunks, &text_bytes, 1);
    free(text);
    return status;
}
