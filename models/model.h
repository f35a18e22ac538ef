/* A decoder-only language model as zotune runs it, whatever its family: the tensor table, the
 * weights in one backend allocation, and the K-variant forward (docs/design.md §2.3). What is
 * particular to a family (config.json, tensor names, layer code) sits behind the table in
 * models/arch.h; models/opt/ is the OPT family. The model knows nothing of the CPU or CUDA: it
 * only calls the backend's op table. */
#ifndef ZT_MODELS_MODEL_H
#define ZT_MODELS_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"

enum { ZT_TENSOR_NAME_MAX = 96 };

/* One entry of the tensor table. Entries are in HF's named_parameters() order (docs/spec.md
 * §1.4); the index in that order is the tensor id that addresses perturbations. */
typedef struct zt_tensor_info {
    char name[ZT_TENSOR_NAME_MAX]; /* canonical name, e.g. "model.decoder...." */
    zt_dtype dtype;
    int n_dims;
    int64_t shape[2];
    size_t n_elems;
    size_t offset; /* bytes from the start of the model's single weight allocation */
    int no_decay;  /* biases and layer norms: excluded from weight decay (MeZO's rule) */
    int absent;    /* 1: another pipeline stage holds it (zt_model_load_stage); no bytes here */
} zt_tensor_info;

/* The sizes every family shares, filled from its config.json. */
typedef struct zt_model_dims {
    int vocab_size;      /* rows of the token table, which is also the tied LM head */
    int hidden_size;     /* width of the residual stream */
    int head_input_size; /* width of the rows the tied head reads (OPT: word_embed_proj_dim) */
    int n_layers;
    int n_heads;       /* attention heads: hidden_size = n_heads x head dim */
    int max_positions; /* real tokens a sequence may hold */
    int bos_token_id, eos_token_id, pad_token_id;
    float init_std; /* standard deviation of freshly initialised matrices */
} zt_model_dims;

typedef struct zt_arch zt_arch;
struct zt_lora;
struct zt_prefix;
struct zt_prompt;

/* One stage of a pipeline (--pipeline-stages, docs/distributed.md): zt_model_forward runs only
 * layers [first_layer, end_layer) of the sweep. The first stage embeds; the others receive each
 * variant's residual stream from the stage before (one message per variant, in variant order),
 * and every stage but the last passes it on. The last runs the head and shares the K variants'
 * target log-probabilities with the earlier stages, which receive them, so every stage returns
 * the same log-probabilities. Buffers are backend memory, synchronised before a send; the
 * callbacks (src/train/train_pipeline.c) carry them over the job's communicator. */
typedef struct zt_model_stage {
    int first_layer, end_layer;
    int is_first, is_last;
    void *ctx;
    zt_status (*receive)(void *ctx, void *buf, size_t bytes);       /* from the stage before */
    zt_status (*pass_on)(void *ctx, const void *buf, size_t bytes); /* to the stage after */
    /* the last stage sends buf to the earlier stages; they receive into it */
    zt_status (*share_logprobs)(void *ctx, void *buf, size_t bytes);
    /* An absent tensor's stored bytes (host), from the stage holding it: how zt_model_save on
     * the first stage writes every tensor while the holders send theirs in table order. */
    zt_status (*fetch_tensor)(void *ctx, int id, void *host, size_t bytes);
} zt_model_stage;

typedef struct zt_model {
    const zt_arch *arch;
    void *family; /* the family's parsed config and tensor ids (models/arch.h, release) */
    zt_model_dims dims;
    zt_backend *be;
    void *weights; /* one backend allocation holding every tensor */
    size_t weights_bytes;
    zt_tensor_info *tensors;
    int n_tensors;
    int embed_tokens;         /* the token table */
    int lm_head;              /* the table the head multiplies by: embed_tokens itself when tied */
    uint64_t fingerprint;     /* of the loaded weights' content (zt_model_fingerprint_dir) */
    struct zt_lora *lora;     /* LoRA adapters after the base tensors (models/lora.h); NULL: none */
    struct zt_prefix *prefix; /* prefix tuning's keys and values after them (models/prefix.h) */
    struct zt_prompt *prompt; /* prompt tuning's table after them (models/prompt.h); NULL: none */
    const zt_model_stage *stage; /* a pipeline stage's share of the forward; NULL: every layer */
} zt_model;

/* Loads config.json + safetensors (single or sharded) from dir onto the backend, the family
 * chosen by config.json's model_type. Accepts the family's name variants and a stored head only
 * as a byte-identical copy of the token table (tied). Errors name the directory and tensor. */
zt_status zt_model_load(const char *dir, zt_backend *be, zt_model **out);
/* The same with LoRA adapters (models/lora.h) after the base tensors when lora is not NULL. The
 * fingerprint is the base's. */
struct zt_lora_options;
zt_status zt_model_load_peft(const char *dir, zt_backend *be, const struct zt_lora_options *lora,
                             zt_model **out);
/* The same with prefix tensors (models/prefix.h) after the base tensors, initialised. */
struct zt_prefix_options;
zt_status zt_model_load_prefix(const char *dir, zt_backend *be,
                               const struct zt_prefix_options *prefix, zt_model **out);
/* zt_model_load holding only the tensors of one pipeline stage (zt_model_stage_holds): the
 * others are in the table, marked absent, with no bytes. The fingerprint is the whole
 * directory's, hashed from the files as zt_model_load hashes it. */
zt_status zt_model_load_stage(const char *dir, zt_backend *be, const zt_model_stage *share,
                              zt_model **out);
/* Does a stage with this share hold tensor id? Its layers' tensors; the tensors before the
 * layers (embeddings) when it is the first; those after them (final norm, projection) and the
 * head's table when it is the last, so a tied token table is held by the first and the last. */
int zt_model_stage_holds(const zt_model *model, const zt_model_stage *share, int id);
void zt_model_free(zt_model *model);
/* The model config.json at config_path describes, without weights (weights NULL: only the
 * table, sizes and memory plans may be used): tensors stored in `dtype`, or when dtype is -1 in
 * the dtype config.json names (torch_dtype; float32 when it names none), placed as the loader
 * would place them, so weights_bytes and every plan equal those of the loaded checkpoint. */
zt_status zt_model_open_config(const char *config_path, int dtype, zt_backend *be, zt_model **out);
/* How many sizes like's family has published (OPT: 8, 125m ... 66b); 0 for none. */
int zt_model_published_sizes(const zt_model *like);
/* The same as zt_model_open_config for the index-th of them (0 the smallest), with like's
 * vocabulary, positions and token ids and every tensor in dtype; *name receives the size's name
 * ("125m"). ZT_ERR_MISSING outside 0 .. zt_model_published_sizes - 1. */
zt_status zt_model_open_published_size(const zt_model *like, int index, zt_dtype dtype,
                                       zt_backend *be, zt_model **out, const char **name);
/* The content fingerprint (core/fingerprint.h) of dir's weights, as zt_model_load records it:
 * canonical names, dtypes and bytes in table order, whatever the sharding or name prefixes. */
zt_status zt_model_fingerprint_dir(const char *dir, uint64_t *fingerprint);
/* Uploads the tensors selected by mask (NULL = all) again from dir, a checkpoint of the same
 * table: how a run goes back to its last saved state without a second copy of the model. */
zt_status zt_model_reload_tensors(zt_model *model, const char *dir, const uint8_t *mask);

/* Number of parameters, the tied head counted once (equals HF's model.num_parameters()). */
size_t zt_model_parameter_count(const zt_model *model);

/* How many variants a shadow forward stages the model's head table for at once: 1 without a
 * head, ZT_HEAD_GROUP_VARIANTS on a backend with head blocks (head_vocab_chunk), where a second
 * copy is a block, else zt_head_group_limit (below) of its table. */
int zt_model_head_group_limit(const zt_model *model);

/* Marks the tensors matched by comma-separated fnmatch patterns (on the canonical name or the
 * name after the family's short-name prefix, e.g. "model.decoder."; "!pattern" excludes; a list
 * starting with "!" means "all but"); NULL or "" selects every tensor. selected is (n_tensors).
 * A pattern matching nothing is an error naming it. */
zt_status zt_model_select(const zt_model *model, const char *patterns, uint8_t *selected,
                          int *count);

/* What `zotune info` shows of the architecture: text lines, or keys added to a JSON object. */
struct cJSON;
void zt_model_describe(const zt_model *model, FILE *out);
void zt_model_describe_json(const zt_model *model, struct cJSON *root);

/* Writes config.json + model.safetensors (canonical HF names, stored dtype) into dir, each
 * file atomically. transformers loads the result. */
zt_status zt_model_save(const zt_model *model, const char *dir);

/* A model with the family's initialisation instead of a checkpoint, built in memory for
 * benchmarks and tests: matrices ~ N(0, init_std^2) (the padding row of the token table zero),
 * 1-D ".weight" tensors (norm gains) 1, other 1-D tensors 0, every tensor stored in `dtype`. The
 * normals are the project's Philox z with `seed` as the step seed: a pure function of (seed,
 * tensor id, index), the same on every machine. config is the family's parsed config (OPT:
 * zt_opt_config), validated as config.json would be. */
zt_status zt_model_create_random(const zt_arch *arch, const void *config, zt_dtype dtype,
                                 uint64_t seed, zt_backend *be, zt_model **out);

/* The weight as stored (data NULL for id -1 and for a tensor another pipeline stage holds). */
zt_weight zt_model_weight(const zt_model *model, int id);

/* ---- the K-variant forward (models/workspace.c, models/sweep.c) ---- */

/* A batch of padded sequences and the rows whose next-token log-probability is wanted.
 * A target (row r = b*T + t, token y) asks for log p(y | tokens of sequence b up to t). */
typedef struct zt_batch {
    int batch, seq_len;
    const int32_t *input_ids;      /* (B,T) host */
    const int32_t *attention_mask; /* (B,T) host, 1 = token, 0 = pad */
    int n_targets;
    const int32_t *target_rows; /* (R) host, b*T+t */
    const int32_t *target_ids;  /* (R) host */
} zt_batch;

/* Activation buffers for batches up to max_batch x max_seq_len and up to max_variants
 * variants per sweep, plus (when staging) the shadow buffers perturbed weights are staged into.
 * Reused across forwards. */
typedef struct zt_workspace zt_workspace;

typedef struct zt_workspace_shape {
    int max_batch, max_seq_len;
    int max_variants; /* K: residual streams kept side by side */
    int staging;      /* 1: shadow buffers for perturbed weights */
    int sphere;       /* 1: norm passes over the largest tensor (uniform-on-sphere directions) */
} zt_workspace_shape;

/* Variants whose head table (the token table when tied) a shadow forward stages together, from
 * one draw of its z (docs/design.md §2.3): at most two, so that MeZO's +eps z and -eps z draw the
 * table's z once, at the cost of one more copy of the table in the staging buffers. */
enum { ZT_HEAD_GROUP_VARIANTS = 2 };

/* The head group of a model whose head table holds table_elems of its parameter_elems: two where
 * the table is at least an eighth of the model (opt-125m: 31%), where its extra draw is that share
 * of a step's z; one where it is less (opt-350m and larger: under 8%), where a second copy of the
 * table would cost more memory (0.5 GB at 13b in f16) than its draw costs time. */
static inline int zt_head_group_limit(size_t table_elems, size_t parameter_elems) {
    return table_elems * 8 >= parameter_elems ? ZT_HEAD_GROUP_VARIANTS : 1;
}

/* Memory a model needs at a shape, by category: weights, activations, staging buffers, and the
 * backend's own scratch (the maximum over the op calls the forward makes). */
typedef struct zt_memory_plan {
    size_t weights_bytes;
    size_t activation_bytes;
    size_t staging_bytes;
    size_t backend_scratch_bytes;
    size_t kv_cache_bytes; /* KV caches added by zt_kv_cache_plan_memory (activations) */
    size_t total_bytes;
} zt_memory_plan;

/* Tokens (sequences x length) one forward may hold, all K variants' streams counted in int. */
enum { ZT_MAX_TOKENS_PER_FORWARD = 1 << 24 };

/* Target rows the LM head evaluates at once out of `rows`: the backend's head_chunk_rows
 * (backend.h), which bounds the workspace's logits buffer to this many x V. */
static inline int zt_head_chunk_rows(const zt_backend *be, int rows) {
    return rows < be->head_chunk_rows ? rows : be->head_chunk_rows;
}

/* Vocabulary columns of the logits (rows of the head table) the LM head computes at a time: the
 * backend's head_vocab_chunk (backend.h), or the whole vocabulary when that is 0 or larger. */
static inline int zt_head_vocab_cols(const zt_backend *be, int vocab) {
    return be->head_vocab_chunk > 0 && be->head_vocab_chunk < vocab ? be->head_vocab_chunk : vocab;
}

/* The plan of a loaded model on its backend at a shape. */
void zt_model_plan_memory(const zt_model *model, const zt_workspace_shape *shape,
                          zt_memory_plan *plan);

zt_status zt_workspace_create(zt_model *model, const zt_workspace_shape *shape, zt_workspace **out);
void zt_workspace_free(zt_workspace *ws);

/* K variants of the weights for one sweep: variant k reads tensor T as
 * theta_T + perturbation[k](T) when perturbed[T] (all tensors when perturbed is NULL) and the
 * perturbation has terms, else theta_T itself. The master weights are never written. */
/* A model with LoRA adapters perturbs only them: its staging buffers hold no copy of a base
 * weight. */
typedef struct zt_variants {
    int n_variants;
    const zt_perturbation *perturbation; /* (K) */
    const uint8_t *perturbed;            /* (n_tensors) or NULL */
} zt_variants;

/* The pending update the workspace's next shadow sweeps apply as they go (NULL: none). */
void zt_workspace_set_pending(zt_workspace *ws, zt_pending_update *pending);

/* Evaluates every variant on the batch in one sweep over the layers: each layer's weights are
 * staged once per variant and its K residual streams advance together. logprobs (host, (K,R))
 * receives log p(target) per variant; logits, if not NULL, the target rows' logits (host,
 * (K,R,V)). variants may be NULL: one unperturbed variant. */
zt_status zt_model_forward(zt_model *model, zt_workspace *ws, const zt_batch *batch,
                           const zt_variants *variants, float *logprobs, float *logits);

/* ---- incremental decoding over a key/value cache (models/kv_cache.c, docs/design.md §2.7) ---- */

/* Per layer, the keys and values of up to max_batch sequences over `capacity` columns (f32,
 * (n_layers, max_batch, capacity, hidden) each, on the backend as activations), the key mask
 * (max_batch, capacity) on the backend with a host copy, and each sequence's count of real tokens
 * (the next token's position). Columns fill left to right, the same columns for every sequence. */
typedef struct zt_kv_cache zt_kv_cache;

/* Backend bytes of a cache of max_batch x capacity (what zt_kv_cache_create allocates). */
size_t zt_kv_cache_bytes(const zt_model *model, int max_batch, int capacity);
/* Adds such a cache to a plan (zt_model_plan_memory's): its bytes, and the backend scratch its
 * attention takes (the plan keeps the larger of that and its own), so a workspace and a cache used
 * together peak at the plan's total. */
void zt_kv_cache_plan_memory(const zt_model *model, int max_batch, int capacity,
                             zt_memory_plan *plan);
/* Allocates the cache and reserves the backend scratch its attention takes. */
zt_status zt_kv_cache_create(zt_model *model, int max_batch, int capacity, zt_kv_cache **out);
void zt_kv_cache_free(zt_kv_cache *cache);
/* Empties the cache (no columns, no sequences) for a new batch. */
void zt_kv_cache_reset(zt_kv_cache *cache);
/* Columns filled so far. */
int zt_kv_cache_length(const zt_kv_cache *cache);

/* Runs n_new new tokens of each of `batch` sequences through the model, appending their keys and
 * values to the cache's next n_new columns; the first call after a reset fixes the batch. Token
 * (b, i) takes the position after sequence b's real tokens so far, padding (mask 0) takes none,
 * so a left-padded prompt sees the positions it would see alone (HF). logits (host, (B,V))
 * receives the next-token logits at each sequence's last new token. variants: NULL or exactly
 * one variant, staged as zt_model_forward stages it. The workspace must hold batch x n_new
 * tokens. */
zt_status zt_model_forward_cached(zt_model *model, zt_workspace *ws, zt_kv_cache *cache, int batch,
                                  int n_new, const int32_t *input_ids, /* (B,Tq) host */
                                  const int32_t *attention_mask,       /* (B,Tq) host, 1 = token */
                                  const zt_variants *variants, float *logits /* (B,V) host */);

#endif
