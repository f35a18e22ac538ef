/* OPT decoder as HuggingFace's OPTForCausalLM computes it (reference/spec.md §1), built from
 * backend ops. The model knows nothing of the CPU or CUDA: it only calls the op table. */
#ifndef ZT_MODELS_OPT_H
#define ZT_MODELS_OPT_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "io/opt_config.h"

enum { ZT_TENSOR_NAME_MAX = 96 };

/* One entry of the tensor table. Entries are in HF's named_parameters() order (spec §1.4); the
 * index in that order is the tensor id used to address perturbations. */
typedef struct zt_tensor_info {
    char name[ZT_TENSOR_NAME_MAX]; /* canonical name, "model.decoder...." */
    zt_dtype dtype;
    int n_dims;
    int64_t shape[2];
    size_t n_elems;
    size_t offset; /* bytes from the start of the model's single weight allocation */
    int no_decay;  /* biases and layer norms: excluded from weight decay (MeZO's rule) */
} zt_tensor_info;

/* Indices into the tensor table for one decoder layer; -1 where absent (no bias). */
typedef struct zt_opt_layer_ids {
    int k_w, k_b, v_w, v_b, q_w, q_b, out_w, out_b;
    int attn_ln_g, attn_ln_b, fc1_w, fc1_b, fc2_w, fc2_b, ffn_ln_g, ffn_ln_b;
} zt_opt_layer_ids;

typedef struct zt_model {
    zt_opt_config cfg;
    zt_backend *be;
    void *weights; /* one backend allocation holding every tensor */
    size_t weights_bytes;
    zt_tensor_info *tensors;
    int n_tensors;
    /* table indices; -1 where the architecture has no such tensor */
    int embed_tokens, embed_positions, project_out, project_in, final_ln_g, final_ln_b;
    zt_opt_layer_ids *layers;
} zt_model;

/* Loads config.json + safetensors (single or sharded) from dir onto the backend. Accepts keys
 * with or without "model.", ignores "decoder.version", accepts an lm_head.weight only if it is
 * a byte-identical copy of embed_tokens (tied). Errors name the directory and tensor. */
zt_status zt_model_load(const char *dir, zt_backend *be, zt_model **out);
void zt_model_free(zt_model *model);

/* Number of parameters, the tied head counted once (equals HF's model.num_parameters()). */
size_t zt_model_parameter_count(const zt_model *model);
size_t zt_opt_parameter_count(const zt_opt_config *cfg);

/* Marks the tensors matched by comma-separated fnmatch patterns (on the canonical name or the
 * name after "model.decoder."; "!pattern" excludes; a list starting with "!" means "all
 * but"); NULL or "" selects every tensor. selected is (n_tensors). A pattern matching nothing
 * is an error naming it. */
zt_status zt_model_select(const zt_model *model, const char *patterns, uint8_t *selected,
                          int *count);

/* Writes config.json + model.safetensors (canonical HF names, stored dtype) into dir, each
 * file atomically. transformers' OPTForCausalLM loads the result. */
zt_status zt_model_save(const zt_model *model, const char *dir);

/* A batch of padded sequences and the rows whose next-token log-probability is wanted.
 * A target (row r = b*T + t, token y) asks for log p(y | tokens of sequence b up to t). */
typedef struct zt_batch {
    int batch, seq_len;
    const int32_t *input_ids;      /* (B,T) host */
    const int32_t *attention_mask; /* (B,T) host, 1 = token, 0 = pad */
    int n_targets;
    const int32_t *target_rows;    /* (R) host, b*T+t */
    const int32_t *target_ids;     /* (R) host */
} zt_batch;

/* Activation buffers for batches up to max_batch x max_seq_len and up to max_variants
 * variants per sweep, plus (when staging) the shadow buffers perturbed weights are staged into.
 * Reused across forwards. */
typedef struct zt_opt_workspace zt_opt_workspace;

typedef struct zt_opt_workspace_shape {
    int max_batch, max_seq_len;
    int max_variants; /* K: residual streams kept side by side */
    int staging;      /* 1: shadow buffers for perturbed weights */
    int sphere;       /* 1: norm passes over the largest tensor (uniform-on-sphere directions) */
} zt_opt_workspace_shape;

/* Memory a model needs at a shape, by category: weights, activations, staging buffers, and the
 * backend's own scratch (the maximum over the op calls the forward makes). */
typedef struct zt_opt_memory_plan {
    size_t weights_bytes;
    size_t activation_bytes;
    size_t staging_bytes;
    size_t backend_scratch_bytes;
    size_t total_bytes;
} zt_opt_memory_plan;

/* Rows of the tied LM head evaluated at once: bounds the logits scratch to this many x V. */
enum { ZT_LM_HEAD_CHUNK_ROWS = 64 };

/* The plan of a loaded model on its backend at a shape. */
void zt_opt_plan_memory(const zt_model *model, const zt_opt_workspace_shape *shape,
                        zt_opt_memory_plan *plan);

zt_status zt_opt_workspace_create(zt_model *model, const zt_opt_workspace_shape *shape,
                                  zt_opt_workspace **out);
void zt_opt_workspace_free(zt_opt_workspace *ws);

/* K variants of the weights for one sweep: variant k reads tensor T as
 * theta_T + perturbation[k](T) when perturbed[T] (all tensors when perturbed is NULL) and the
 * perturbation has terms, else theta_T itself. The master weights are never written. */
typedef struct zt_opt_variants {
    int n_variants;
    const zt_perturbation *perturbation; /* (K) */
    const uint8_t *perturbed;            /* (n_tensors) or NULL */
} zt_opt_variants;

/* Evaluates every variant on the batch in one sweep over the layers: each layer's weights are
 * staged once per variant and its K residual streams advance together. logprobs (host, (K,R))
 * receives log p(target) per variant; logits, if not NULL, the target rows' logits (host,
 * (K,R,V)). variants may be NULL: one unperturbed variant. */
zt_status zt_opt_forward_multi(zt_model *model, zt_opt_workspace *ws, const zt_batch *batch,
                               const zt_opt_variants *variants, float *logprobs, float *logits);

/* The plain forward: one unperturbed variant. */
zt_status zt_opt_forward_logprobs(zt_model *model, zt_opt_workspace *ws, const zt_batch *batch,
                                  float *logprobs, float *logits);

/* The selected tensors as the ZO engine's parameter set (views into the model's weights). */
struct zt_param_set;
zt_status zt_model_param_set(zt_model *model, const uint8_t *selected, struct zt_param_set *ps);
void zt_model_param_set_free(struct zt_param_set *ps);

/* A model with OPT's initialisation (init_std 0.02) instead of a checkpoint, built in memory for
 * benchmarks and tests: matrices and embeddings ~ N(0, 0.02^2) (embed_tokens' pad_token_id row
 * zero), layer-norm gammas 1, biases 0, every tensor stored in `dtype`. The normals are the
 * project's Philox z with `seed` as the step seed: a pure function of (seed, tensor id, index),
 * the same on every machine. cfg is validated as config.json would be (word_embed_proj_dim must
 * be set). */
zt_status zt_model_create_random(const zt_opt_config *cfg, zt_dtype dtype, uint64_t seed,
                                 zt_backend *be, zt_model **out);

#endif
