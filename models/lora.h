/* LoRA adapters (HF peft's LoraModel for the linears it targets): out = W x + b + s * B (A x),
 * with A (r, in) and B (out, r) trainable in f32 and s = alpha / r. The adapters are extra
 * entries of the model's tensor table after the base tensors, so base tensor ids (and the z they
 * address) do not move, and the trainable mask, perturbation, update, step log, replay and
 * snapshots treat them as any tensor. The scale goes through the existing linear op as an (r, r)
 * diagonal matrix held after the tensors in the weight allocation, so the forward and backward
 * need no op of their own. Saved in peft's format (lora_io.c). */
#ifndef ZT_MODELS_LORA_H
#define ZT_MODELS_LORA_H

#include <stdint.h>

#include "model.h"
#include "peft.h"

enum { ZT_LORA_TARGETS_MAX = 128, ZT_LORA_MAX_RANK = 4096 };

typedef struct zt_lora_options {
    int rank;                          /* r > 0 */
    double alpha;                      /* scale = alpha / r (peft's default, not rsLoRA) */
    char targets[ZT_LORA_TARGETS_MAX]; /* module names, comma-separated: "q_proj,v_proj" */
    /* A's initial values: U(-1/sqrt(in), 1/sqrt(in)) as peft's kaiming_uniform(a = sqrt(5)),
     * from Philox words under zt_lora_init_seed(run seed); B starts at 0 */
    uint64_t init_seed;
    /* when not NULL, the initial adapters come from this directory's adapter_model.safetensors
     * instead (rank, alpha and targets must agree with its adapter_config.json) */
    const char *adapter_dir;
} zt_lora_options;

/* The model's LoRA state (m->lora). */
typedef struct zt_lora {
    zt_lora_options options;
    char adapter_dir[4096]; /* options.adapter_dir's copy ("" for none) */
    float scale;
    int n_base;          /* tensors of the base model: ids 0 .. n_base - 1 */
    size_t base_bytes;   /* the base tensors' bytes: the weight allocation before the adapters */
    int *a_of, *b_of;    /* (n_base) the adapter ids of a base weight, -1 without */
    size_t scale_offset; /* bytes into m->weights of the (r, r) diagonal scale matrix */
} zt_lora;

/* The seed A's initial values are drawn under: its own stream of the run seed, so they share no
 * bits with the perturbation seeds or the batch sampler. */
static inline uint64_t zt_lora_init_seed(uint64_t run_seed) {
    return run_seed ^ 0x4C6F52416E697453ull;
}

/* peft's defaults for OPT: targets q_proj and v_proj, rank 8, alpha 8. */
void zt_lora_options_default(zt_lora_options *o);

/* Appends A and B for every 2-D base weight named "<...>.<target>.weight" to the table of a model
 * whose base tensors are placed (weights_bytes counts them), places them in f32 after the base,
 * then the scale matrix; sets m->lora. A target that matches nothing is an error naming it. */
zt_status zt_lora_extend_table(zt_model *m, const zt_lora_options *options);

/* A table-only copy of m (no weights, m's family shared) with adapters after its tensors: what
 * memory plans of a LoRA run need of a model loaded or opened without them. */
zt_status zt_lora_table_copy(const zt_model *m, const zt_lora_options *options, zt_model **out);
void zt_lora_table_copy_free(zt_model *copy);

/* Uploads the adapters' initial values (options.adapter_dir, or A from the seed and B = 0) and
 * the scale matrix into the allocated weights. */
zt_status zt_lora_upload_initial(zt_model *m);

/* The adapters selected by mask (NULL: all) back to their initial values. */
zt_status zt_lora_reset(zt_model *m, const uint8_t *mask);

/* Uploads the adapters selected by mask (NULL: all) again: from dir's adapter_model.safetensors
 * when it has one, else their initial values. */
zt_status zt_lora_reload(zt_model *m, const char *dir, const uint8_t *mask);

/* The weight of base tensor `weight`'s adapters, or 0 when it has none: ids of A and B. */
static inline int zt_lora_of(const zt_model *m, int weight, int *a, int *b) {
    if (!m->lora || weight < 0 || weight >= m->lora->n_base || m->lora->a_of[weight] < 0) return 0;
    *a = m->lora->a_of[weight];
    *b = m->lora->b_of[weight];
    return 1;
}

/* The (r, r) diagonal matrix s * I as a weight. */
zt_weight zt_lora_scale_weight(const zt_model *m);

/* ---- backprop (lora_backprop.c) ---- */

/* out += s * B (A in) with the same ops in the same order as zt_sweep_lora, for a grad pass's
 * forward; nothing when `weight` has no adapters. rank_rows: 2 x n_rows x r floats, spare:
 * n_rows x out_features. */
zt_status zt_lora_forward(const zt_model *m, int weight, float *out, const float *in, int n_rows,
                          int in_features, int out_features, float *rank_rows, float *spare);
/* The branch's gradient: d_a, d_b (+=, NULL: not wanted) and its share of d in added into d_in,
 * from d_out, the adapted linear's output gradient; the rank rows are recomputed from in.
 * spare: n_rows x in_features. */
zt_status zt_lora_backward(const zt_model *m, int weight, float *d_in, float *d_out,
                           const float *in, int n_rows, int in_features, int out_features,
                           float *rank_rows, float *spare, float *d_a, float *d_b);
/* The largest backend scratch zt_lora_backward asks (0 without adapters). */
size_t zt_lora_backward_scratch(const zt_model *m, int weight, int n_rows, int in_features,
                                int out_features);

/* Marks the adapters in mask (n_tensors), and only them. */
void zt_lora_select(const zt_model *m, uint8_t *mask);

void zt_lora_release(zt_model *m);

/* ---- peft's files (lora_io.c) ---- */

/* OUTPUT/adapter_model.safetensors (peft's key names) and adapter_config.json. base_name is
 * base_model_name_or_path. */
zt_status zt_lora_save(const zt_model *m, const char *dir, const char *base_name);
/* Reads dir's adapter_config.json into options (rank, alpha, targets); refuses anything but a
 * plain LoRA (dropout aside) with a message naming the key. */
zt_status zt_lora_read_config(const char *dir, zt_lora_options *options);
/* 1 when dir holds adapter_model.safetensors. */
int zt_lora_dir_has_adapter(const char *dir);
/* Uploads dir's adapter tensors (peft names) into the adapters selected by mask (NULL: all). */
zt_status zt_lora_load_tensors(zt_model *m, const char *dir, const uint8_t *mask);
/* W += s * B A for every adapted weight, in f32 then stored in W's dtype (round to nearest);
 * the model's base tensors then hold the merged checkpoint. */
zt_status zt_lora_merge(zt_model *m);

#endif
