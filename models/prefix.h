/* Prefix tuning as MeZO runs it (its large_models/prefix.py with --no_reparam
 * --prefix_init_by_real_act): per layer, N trainable key rows and N value rows, (N, C) f32, in
 * the space of the k_proj / v_proj outputs (bias included, heads as column blocks), prepended to
 * every sequence's keys and values. Every query, padded ones included, may attend to all N
 * prefix keys; the sequence's own causal and padding mask is unchanged, and positions are the
 * sequence's own (MeZO hands the prefix to the attention module, so the decoder never sees it;
 * HF peft's PREFIX_TUNING shifts positions by N instead, which is why the adapter has a format of
 * its own, prefix_io.c). The tensors are entries of the table after the base tensors, as LoRA's
 * adapters (models/lora.h), so base ids and the z they address do not move.
 *
 * The attention runs on an extended sequence of N + T rows: the N prefix rows first, then the
 * sequence's, with the key mask 1 on the prefix rows. The backend's causal `attention` then gives
 * query N + i exactly the keys MeZO gives it (all of the prefix, then its own causal keys), and
 * the N extra queries are discarded; in backward they get a zero output gradient, so they add
 * nothing to any key's or value's gradient. The existing attention ops (CPU and CUDA) thus serve
 * unchanged (docs/design.md §3.3). */
#ifndef ZT_MODELS_PREFIX_H
#define ZT_MODELS_PREFIX_H

#include <stdint.h>

#include "model.h"

enum { ZT_PREFIX_MAX_TOKENS = 1024, ZT_PREFIX_DEFAULT_TOKENS = 5 };

typedef struct zt_prefix_options {
    int n_prefix; /* N: prefix rows per layer (MeZO's scripts: 5) */
    /* the initial prefixes are the base model's k_proj / v_proj outputs on N token ids drawn
     * uniformly from [0, vocab) under this seed (zt_prefix_init_seed of the run seed) */
    uint64_t init_seed;
    /* when not NULL, the initial prefixes come from this directory's adapter instead */
    const char *adapter_dir;
} zt_prefix_options;

/* The model's prefix state (m->prefix). */
typedef struct zt_prefix {
    zt_prefix_options options;
    char adapter_dir[4096]; /* options.adapter_dir's copy ("" for none) */
    int n_base;             /* tensors of the base model: ids 0 .. n_base - 1 */
    size_t base_bytes;      /* the base tensors' bytes: the weight allocation before the prefixes */
    /* 1 while the initial prefixes are taken from real activations: the attention records each
     * layer's keys and values into its prefix tensors and runs without a prefix */
    int capturing;
    const uint8_t *capture_mask; /* the prefixes capturing writes (NULL: all) */
} zt_prefix;

/* Its own stream of the run seed (not LoRA's, zt_lora_init_seed, nor the perturbations'). */
static inline uint64_t zt_prefix_init_seed(uint64_t run_seed) {
    return run_seed ^ 0x5072656669784B56ull;
}

/* Prefix rows per layer, 0 without a prefix. */
static inline int zt_model_prefix_tokens(const zt_model *m) {
    return m->prefix ? m->prefix->options.n_prefix : 0;
}

/* Layer l's prefix_keys id (its prefix_values is the next one). */
static inline int zt_prefix_keys_id(const zt_model *m, int layer) {
    return m->prefix->n_base + 2 * layer;
}

void zt_prefix_options_default(zt_prefix_options *o);

/* Appends model.decoder.layers.{l}.self_attn.prefix_keys / .prefix_values, (N, hidden) f32,
 * placed after the base tensors; sets m->prefix. */
zt_status zt_prefix_extend_table(zt_model *m, const zt_prefix_options *options);
/* A table-only copy of m with prefixes after its tensors, for memory plans (zt_lora_table_copy). */
zt_status zt_prefix_table_copy(const zt_model *m, const zt_prefix_options *options, zt_model **out);
void zt_prefix_table_copy_free(zt_model *copy);

/* The N token ids the initial prefixes are made from: word i of a Philox stream of seed, mapped
 * to [0, vocab) by (word * vocab) >> 32. */
void zt_prefix_init_token_ids(uint64_t seed, int n, int vocab, int32_t *ids /* (N) */);

/* The prefixes selected by mask (NULL: all) = the base model's k_proj / v_proj outputs on the N
 * token ids (one sequence, positions 0 .. N-1, no padding): MeZO's init by real activations. */
zt_status zt_prefix_init_from_tokens(zt_model *m, const int32_t *ids /* (N) */,
                                     const uint8_t *mask);
/* The prefixes' initial values: options.adapter_dir's, or the base model's keys and values on
 * the seeded token ids (positions 0 .. N-1, no padding). */
zt_status zt_prefix_upload_initial(zt_model *m);
/* The prefixes selected by mask (NULL: all) back to their initial values. */
zt_status zt_prefix_reset(zt_model *m, const uint8_t *mask);
/* From dir's adapter when it has one, else their initial values. */
zt_status zt_prefix_reload(zt_model *m, const char *dir, const uint8_t *mask);
/* Marks the prefixes in mask (n_tensors), and only them. */
void zt_prefix_select(const zt_model *m, uint8_t *mask);
void zt_prefix_release(zt_model *m);

/* ---- the attention with a prefix (prefix_attention.c) ---- */

/* The extended sequences, (B, N+T, C) each, their key mask (B, N+T), and row indices 0 .. N-1
 * (iota) and 0 .. T-1 (iota_seq), each vouched for its own table. The d_ ones only for backward. */
typedef struct zt_prefix_buffers {
    float *q, *k, *v, *out;
    float *d_out, *d_q, *d_k, *d_v;
    int32_t *mask, *iota, *iota_seq;
} zt_prefix_buffers;

/* Bytes of those buffers for batches up to max_batch x max_seq_len (0 without a prefix). */
size_t zt_prefix_buffers_bytes(const zt_model *m, int max_batch, int max_seq_len, int backward);
/* Places them at base (backend memory, zt_prefix_buffers_bytes of it). */
void zt_prefix_buffers_place(const zt_model *m, int max_batch, int max_seq_len, int backward,
                             char *base, zt_prefix_buffers *out);
/* Uploads the batch's extended key mask (the prefix rows 1) and the row indices. */
zt_status zt_prefix_upload_batch(const zt_model *m, const zt_prefix_buffers *pb,
                                 const zt_batch *batch);

/* Layer l's attention with its prefix: out (B,T,C) from q, k, v (B,T,C), the prefix tensors read
 * with the gather perturbations pk, pv (NULL: as stored). While m->prefix->capturing, records k
 * and v of a one-sequence batch of N tokens as the layer's prefixes and runs plain attention. */
zt_status zt_prefix_attention(const zt_model *m, int layer, const zt_prefix_buffers *pb, float *out,
                              const float *q, const float *k, const float *v, int batch,
                              int seq_len, const int32_t *key_mask, int n_heads, int head_dim,
                              float q_scale, const zt_gather_perturbation *pk,
                              const zt_gather_perturbation *pv);
/* Its gradient: d_q, d_k, d_v (B,T,C) =, and d_prefix_keys, d_prefix_values (N,C) += summed over
 * the batch (NULL: not wanted). out is the forward's. */
zt_status zt_prefix_attention_backward(const zt_model *m, int layer, const zt_prefix_buffers *pb,
                                       float *d_q, float *d_k, float *d_v, const float *d_out,
                                       const float *q, const float *k, const float *v,
                                       const float *out, int batch, int seq_len, int n_heads,
                                       int head_dim, float q_scale, float *d_prefix_keys,
                                       float *d_prefix_values);

/* ---- files (prefix_io.c) ---- */

/* dir/adapter_config.json ({"peft_type": "MEZO_PREFIX", "num_prefix": N, ...}) and
 * dir/adapter_model.safetensors with the prefix tensors under their table names. */
zt_status zt_prefix_save(const zt_model *m, const char *dir, const char *base_name);
/* 1 when dir's adapter_config.json names peft_type MEZO_PREFIX. */
int zt_prefix_dir_is_prefix(const char *dir);
/* Reads dir's adapter_config.json into options (num_prefix); errors name the key. */
zt_status zt_prefix_read_config(const char *dir, zt_prefix_options *options);
/* Uploads dir's prefix tensors into those selected by mask (NULL: all). */
zt_status zt_prefix_load_tensors(zt_model *m, const char *dir, const uint8_t *mask);

#endif
