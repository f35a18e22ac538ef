/* OPT config.json (HF OPTConfig), docs/spec.md §1.1: the OPT family's config parser and writer. */
#ifndef ZT_MODELS_OPT_CONFIG_H
#define ZT_MODELS_OPT_CONFIG_H

#include "zotune.h"

typedef struct zt_opt_config {
    int vocab_size;
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int ffn_dim;
    int max_position_embeddings;
    int word_embed_proj_dim;                      /* defaults to hidden_size */
    int do_layer_norm_before;                     /* default 1 */
    int enable_bias;                              /* default 1 */
    int layer_norm_elementwise_affine;            /* default 1 */
    int remove_final_layer_norm;                  /* "_remove_final_layer_norm", default 0 */
    int bos_token_id, eos_token_id, pad_token_id; /* defaults 2, 2, 1 */
    char torch_dtype[16];                         /* "float16", "float32", "bfloat16" or "" */
} zt_opt_config;

/* Reads and validates config.json: required integer fields present and positive,
 * hidden_size divisible by num_attention_heads, activation_function "relu" (if given),
 * model_type "opt" (if given). Errors name the file and the key. */
zt_status zt_opt_config_load(const char *path, zt_opt_config *out);

/* The invariants the loader, the writer and a caller-built config (a random model) meet;
 * `status` says whose fault a violation is (the file's when loading, the caller's otherwise) and
 * messages start with `where`. */
zt_status zt_opt_config_validate(const char *where, const zt_opt_config *cfg, zt_status status);

/* torch's name of a storage dtype ("float32", "float16", "bfloat16"), as torch_dtype spells it. */
const char *zt_opt_torch_dtype_name(zt_dtype dtype);

/* Writes a config.json that transformers' OPTForCausalLM loads (atomic: tmp + rename). */
zt_status zt_opt_config_write(const char *path, const zt_opt_config *cfg);

#endif
