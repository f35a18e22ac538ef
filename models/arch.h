/* The seam between the model-generic code and a decoder family (docs/design.md §8).
 *
 * Generic (the .c files of models/): loading and saving tensors, the workspace and its memory plan,
 * the K-variant sweep (staged and perturbed weight views, perturbed embedding gathers, the tied LM
 * head over the target rows). A family (models/opt/ for OPT) fills a zt_arch: how to read its
 * config.json, its tensor table, and its layer code written against the sweep helpers below.
 * Internal to models/. */
#ifndef ZT_MODELS_ARCH_H
#define ZT_MODELS_ARCH_H

#include <stdio.h>

#include "model.h"

struct cJSON;

/* Family buffers the workspace holds beside the generic ones, per list. */
enum { ZT_ARCH_MAX_BUFFERS = 8 };

/* One variant's pass through the model: what a family's layer code reads and writes. */
typedef struct zt_sweep {
    zt_model *model;
    zt_workspace *ws;
    const zt_batch *batch;
    const zt_variants *variants; /* NULL: the weights as stored */
    int variant;
    const zt_kv_cache *cache; /* NULL: attention over the batch alone; else over the cache too */
    /* How many variants the layer code advances at once, from `variant` on (0 or 1: one). With
     * more, the layer code is written for variant 0, with its buffers, and each zt_sweep_* op
     * runs for every variant: a perturbed tensor is staged for all of them from one draw
     * (perturb_variants), then the op runs once per variant on that variant's buffers. */
    int n_together;
    /* Prompt tuning (models/prompt.h): the first n_virtual slots of each sequence are virtual
     * tokens, whose embeddings are the prompt table's rows; 0: none (or a cached call after the
     * first). */
    int n_virtual;
} zt_sweep;

/* Where a perturbed tensor is staged: a linear stages its weight (main) with its bias (aux), a
 * norm its gain (main) with its shift (aux). */
typedef enum zt_stage_slot { ZT_STAGE_MAIN = 0, ZT_STAGE_AUX = 1 } zt_stage_slot;

/* One backward pass as a family's grad hook sees it (models/backprop.c prepares it). Index
 * buffers are in backend memory, uploaded and checked. */
typedef struct zt_grad_pass {
    zt_model *model;
    const zt_batch *batch;
    float *area; /* the family's buffers: grad_area_floats(N, R) floats, backend memory */
    const int32_t *ids, *positions, *mask; /* (N), (N), (B,T) */
    const int32_t *rows, *targets;         /* (R), (R): the target rows and their tokens */
    const int32_t *identity;               /* (N) 0 .. N-1: gather_rows with it copies rows */
    const float *d_logprob;                /* (R) d loss / d log p = -weight[r] */
    float *grads;                          /* zt_model_grad_layout's block, += */
    const size_t *offsets;                 /* (n_tensors) into grads */
    float *logprobs;                       /* (R) host: receives the log-probabilities */
    int checkpoint; /* 1: keep each layer's input only and run it again in backward */
    const struct zt_prefix_buffers *prefix; /* the extended sequences (models/prefix.h), or NULL */
} zt_grad_pass;

struct zt_arch {
    const char *model_type;      /* config.json's "model_type" */
    const char *display_name;    /* in messages: "OPT" */
    const char *short_prefix;    /* --trainable patterns may leave it out: "model.decoder." */
    const char *short_example;   /* a short name, for messages: "layers.0.fc1.weight" */
    const char *optional_prefix; /* checkpoints may store names without it: "model." */
    /* A stored key accepted only as a byte-identical copy of the token table (a tied head that
     * a checkpoint repeats); NULL when the family's head is a tensor of its own table. */
    const char *tied_head_name;
    const char *const *ignored_names; /* stored keys that are no parameter; NULL-terminated */
    /* Position p (0-based among a sequence's real tokens) reads row p + offset of the position
     * table; padding reads row offset - 1. Families without a position table ignore it. */
    int position_row_offset;
    /* The linears whose outputs the layer code passes through zt_sweep_lora (and its backprop
     * adds LoRA's gradient to), comma-separated: what --lora-targets may name. */
    const char *lora_modules;
    /* Linears a layer runs on one input through zt_sweep_linear_shared_input (OPT: k, v, q: 3;
     * 0 or 1: none): the layer's staging slots hold that many copies of its largest square
     * weight, and of a vector that long, side by side (models/workspace.c). */
    int shared_input_linears;

    /* config.json -> the family's config (malloc'd, released with free). Errors name the key. */
    zt_status (*read_config)(const char *path, void **config);
    /* From a config validated as read_config would: m->family, m->dims, m->embed_tokens, m->lm_head
     * and m->tensors (names, shapes, no_decay; dtypes and offsets are the caller's). */
    zt_status (*build)(zt_model *m, const void *config);
    void (*release)(zt_model *m);
    /* Where tensor id sits for pipeline stages: its decoder layer, or ZT_ARCH_BEFORE_LAYERS
     * (embeddings, the input projection) or ZT_ARCH_AFTER_LAYERS (final norm, output
     * projection). The tied head's table is the first stage's, and the last stage's too. */
    int (*tensor_layer)(const zt_model *m, int id);
    zt_status (*write_config)(const zt_model *m, const char *path);
    /* What `zotune info` shows of the architecture, as text lines and as JSON keys. */
    void (*describe)(const zt_model *m, FILE *out);
    void (*describe_json)(const zt_model *m, struct cJSON *root);
    /* The storage dtype config.json names (HF's torch_dtype), or -1 when it names none. */
    int (*named_dtype)(const void *config);

    /* Bytes of each family buffer for n_tokens rows (0: not needed): layer_bytes live during
     * the layers, head_bytes during the head. */
    void (*plan_buffers)(const zt_model *m, size_t n_tokens, size_t *layer_bytes,
                         size_t *head_bytes);
    /* The largest backend scratch any op of embed, layer or head_input asks at this shape. */
    size_t (*scratch_bytes)(const zt_model *m, const zt_workspace_shape *shape);
    /* Token ids (and positions) into the variant's residual stream. */
    zt_status (*embed)(const zt_sweep *sw);
    /* One decoder layer on the variant's residual stream, in place. */
    zt_status (*layer)(const zt_sweep *sw, int layer);
    /* n_rows gathered rows of the final residual stream -> the tied head's input (final norm,
     * projection); *head_in may be `rows` itself. */
    zt_status (*head_input)(const zt_sweep *sw, float *rows, int n_rows, const float **head_in);

    /* Backprop (models/backprop.h); NULL when the family has none. Floats of the family's
     * buffers for n_tokens rows with n_rows targets (checkpoint: one layer's intermediates,
     * recomputed, instead of every layer's), and the pass itself: forward keeping each layer's
     * input, the head's loss and gradient, then the layers back to the embedding. */
    size_t (*grad_area_floats)(const zt_model *m, size_t n_tokens, size_t n_rows, int checkpoint);
    /* The largest backend scratch any op of grad asks for batches up to sequences x seq_len
     * (grad_sumsq aside: its callers plan it). */
    size_t (*grad_scratch_bytes)(const zt_model *m, int sequences, int seq_len);
    zt_status (*grad)(const zt_grad_pass *pass);

    /* The family's published sizes, for figures against model size (zotune bench memory
     * --plot): how many, and the index-th (0 the smallest) as a validated config (malloc'd) with
     * `like`'s vocabulary, positions and token ids, and its name ("125m"). 0 and NULL when the
     * family publishes none. */
    int n_published_sizes;
    zt_status (*published_size)(const zt_model *like, int index, void **config, const char **name);
};

enum { ZT_ARCH_BEFORE_LAYERS = -1, ZT_ARCH_AFTER_LAYERS = -2 };

/* The families zotune knows, chosen by config.json's model_type (models/families.c). */
const zt_arch *zt_arch_for_config(const char *config_path);

/* Where the loader, a random model and a config-only table put each tensor: on a cache line. */
enum { ZT_WEIGHT_ALIGN = 64 };

/* m->arch, the tensor table and dims from config.json at config_path (read and validated by the
 * family). When named_dtype is not NULL it receives the dtype config.json names, or -1. */
zt_status zt_model_build_from_config(const char *config_path, zt_model *m, int *named_dtype);

/* ---- helpers for a family's layer code (models/sweep.c, models/workspace.c) ---- */

float *zt_sweep_stream(const zt_sweep *sw);              /* (N,hidden) this variant's stream */
float *zt_sweep_layer_buffer(const zt_sweep *sw, int i); /* the i-th of plan_buffers' layer list */
float *zt_sweep_head_buffer(const zt_sweep *sw, int i);  /* the i-th of its head list */
const int32_t *zt_sweep_token_ids(const zt_sweep *sw);   /* (N) backend memory */
const int32_t *zt_sweep_position_rows(const zt_sweep *sw); /* (N) backend memory */
const int32_t *zt_sweep_key_mask(const zt_sweep *sw);      /* (B,T) backend memory */

/* Tensor `id` as the current variant sees it: the master weight, or a perturbed copy staged into
 * the slot's shadow buffer. id -1 gives an absent weight. */
zt_status zt_sweep_weight(const zt_sweep *sw, int id, zt_stage_slot slot, zt_weight *out);
/* *out = the perturbation a gather applies to table `id` for the current variant, or NULL when
 * the variant reads it as stored: only the rows the batch reads are perturbed. A pending update
 * (zt_pending_update) reaches the table first, applied alone. */
zt_status zt_sweep_gather(const zt_sweep *sw, int id, zt_gather_perturbation *storage,
                          const zt_gather_perturbation **out);

zt_status zt_sweep_linear(const zt_sweep *sw, float *out, /* (N,OC) */
                          const float *in,                /* (N,IC) */
                          int weight, int bias, int n_rows, int in_features, int out_features,
                          int relu);
/* Half activations (docs/design.md §4.3, "Half activations"): the dtype linear would round its
 * input to for every weight listed (f16 or bf16, all alike) when the backend has the
 * half-activation ops and the GEMMs take half inputs; ZT_F32 otherwise, and the layer code then
 * calls zt_sweep_linear on f32 inputs as before. */
zt_dtype zt_sweep_half_input(const zt_sweep *sw, const int *weights, int n_weights);
/* dst = src rounded to dtype, per variant (round_half): an input rounded once for several GEMMs. */
zt_status zt_sweep_round_half(const zt_sweep *sw, void *dst, zt_dtype dtype, /* (n) */
                              const float *src,                              /* (n) */
                              size_t n_elems);
/* zt_sweep_linear on an input already rounded to the weight's dtype (linear_half_in); only with
 * the dtype zt_sweep_half_input gave for `weight`. */
zt_status zt_sweep_linear_half_in(const zt_sweep *sw, float *out, /* (N,OC) */
                                  const void *in,                 /* (N,IC) half */
                                  int weight, int bias, int n_rows, int in_features,
                                  int out_features, int relu);
/* Linears on one input (q, k and v): member i applies weights[i] and biases[i] (-1: none) and
 * writes outs[i]. in_dtype is ZT_F32 (zt_sweep_linear) or the weights' half dtype
 * (zt_sweep_linear_half_in). Their perturbed copies are staged side by side in the layer's
 * slots, so that where the weights, biases and outputs each lie evenly apart (members of one
 * shape and dtype, outputs in consecutive layer buffers of one size) a variant takes one
 * linear_batched call; otherwise, or without the op, one linear per member, the same bits on
 * the CPU. At most ZT_SWEEP_MAX_SHARED members. */
enum { ZT_SWEEP_MAX_SHARED = 4 };
zt_status zt_sweep_linear_shared_input(const zt_sweep *sw, float *const *outs, /* count x (N,OC) */
                                       const void *in, zt_dtype in_dtype,      /* (N,IC) */
                                       const int *weights, const int *biases,  /* (count) */
                                       int count, int n_rows, int in_features, int out_features);
/* zt_sweep_linear_half_in whose output is stored rounded to the weight's dtype
 * (linear_half_out): fc1 writing fc2's half input. The bias, if any, is stored in that dtype. */
zt_status zt_sweep_linear_half_out(const zt_sweep *sw, void *out, /* (N,OC) half */
                                   const void *in,                /* (N,IC) half */
                                   int weight, int bias, int n_rows, int in_features,
                                   int out_features, int relu);
/* out += s * B (A in) when `weight` has LoRA adapters (models/lora.h), else nothing: A and B
 * read as the variant sees them, the scale through linear with the (r, r) scale matrix.
 * rank_rows holds 2 x n_rows x r floats and spare n_rows x out_features, both of the variant's
 * layer buffers. */
zt_status zt_sweep_lora(const zt_sweep *sw, float *out, const float *in, int weight, int n_rows,
                        int in_features, int out_features, float *rank_rows, float *spare);
/* Layer `layer`'s self-attention of the batch (q, k, v of its N = B x T rows): the plain
 * `attention` op, or with a cache in the sweep `attention_cached` over the layer's cache, so
 * layer code never sees the cache. */
zt_status zt_sweep_attention(const zt_sweep *sw, int layer, float *out,      /* (N,C) */
                             const float *q, const float *k, const float *v, /* (N,C) each */
                             int n_heads, int head_dim, float q_scale);
zt_status zt_sweep_layer_norm(const zt_sweep *sw, float *out, /* (N,C) */
                              const float *in,                /* (N,C) */
                              int gamma, int beta, int n_rows, int n_cols, float eps);
/* zt_sweep_layer_norm with its output stored rounded to out_dtype (layernorm_half), for an
 * output whose only readers are half GEMMs. */
zt_status zt_sweep_layer_norm_half(const zt_sweep *sw, void *out, zt_dtype out_dtype, /* (N,C) */
                                   const float *in,                                   /* (N,C) */
                                   int gamma, int beta, int n_rows, int n_cols, float eps);
/* x += y for every variant advanced together (the residual adds). */
zt_status zt_sweep_add(const zt_sweep *sw, float *x, /* (n) */
                       const float *y,               /* (n) */
                       size_t n_elems);

/* Scratch planning: one linear call over n_rows, the larger of its weights as stored and as
 * staged; and any other query, asked of the model's backend. */
size_t zt_plan_linear_scratch(const zt_model *m, int weight, int bias, int n_rows, int in_features,
                              int out_features);
/* The same for a linear_batched call of `count` members (zt_sweep_linear_shared_input). */
size_t zt_plan_linear_batched_scratch(const zt_model *m, int weight, int bias, int n_rows,
                                      int in_features, int out_features, int count);
/* The same for linear_half_out (zt_sweep_linear_half_out). */
size_t zt_plan_linear_half_out_scratch(const zt_model *m, int weight, int bias, int n_rows,
                                       int in_features, int out_features);
size_t zt_plan_scratch(const zt_model *m, const zt_scratch_query *query);

#endif
