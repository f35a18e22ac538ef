/* Prompt tuning (HF peft's PROMPT_TUNING on a causal LM): N trainable "virtual token" embeddings,
 * an f32 (N, E) table (E: the width of the token table's rows, OPT's word_embed_proj_dim), put in
 * front of every sequence's token embeddings with an attention mask of N ones. The position of a
 * token comes from the extended mask, so the virtual tokens take positions 0 .. N-1 and the real
 * ones follow them, as peft on OPT gives. The table is an extra entry of the tensor table after
 * the base tensors (peft.h), so perturbation, update, step log, replay and snapshots treat it as
 * any tensor. The forward gathers its rows with the existing gather op (models/opt/opt_layers.c),
 * so no backend needs an op of its own. Saved in peft's format (prompt_io.c). */
#ifndef ZT_MODELS_PROMPT_H
#define ZT_MODELS_PROMPT_H

#include <stdint.h>

#include "model.h"
#include "peft.h"

enum { ZT_PROMPT_DEFAULT_TOKENS = 10, ZT_PROMPT_MAX_TOKENS = 4096 };

typedef struct zt_prompt_options {
    int n_virtual; /* N > 0 (peft's num_virtual_tokens) */
    /* The initial table: peft's PromptTuningInit.SAMPLE_VOCAB, N token ids drawn uniformly from
     * the vocabulary under zt_prompt_init_seed(run seed), their token-table rows copied (widened
     * to f32). */
    uint64_t init_seed;
    /* when not NULL, the initial table comes from this directory's adapter_model.safetensors
     * (num_virtual_tokens must agree with its adapter_config.json) */
    const char *adapter_dir;
} zt_prompt_options;

/* The model's prompt-tuning state (m->prompt). */
typedef struct zt_prompt {
    zt_prompt_options options;
    char adapter_dir[4096]; /* options.adapter_dir's copy ("" for none) */
    int n_base;             /* tensors of the base model: ids 0 .. n_base - 1 */
    size_t base_bytes;      /* the base tensors' bytes: the weight allocation before the table */
    int table;              /* the (N, E) table's tensor id (n_base) */
    size_t rows_offset;     /* bytes into m->weights of the int32 row ids 0 .. N-1 */
} zt_prompt;

/* The seed the initial token ids are drawn under: a stream of the run seed of its own, distinct
 * from LoRA's (zt_lora_init_seed), the perturbation seeds and the batch sampler. */
static inline uint64_t zt_prompt_init_seed(uint64_t run_seed) {
    return run_seed ^ 0x50726F6D7074546Eull;
}

/* N = 10 (the CLI's default), seed 0, no directory. */
void zt_prompt_options_default(zt_prompt_options *o);

/* Virtual tokens in front of every sequence: N with prompt tuning, else 0. */
static inline int zt_model_virtual_tokens(const zt_model *m) {
    return m->prompt ? m->prompt->options.n_virtual : 0;
}

/* Appends the table "prompt_embeddings" (N, E) in f32 after the base tensors of a model whose
 * base is placed (weights_bytes counts it), then the row ids 0 .. N-1 every sequence gathers it
 * with; sets m->prompt. */
zt_status zt_prompt_extend_table(zt_model *m, const zt_prompt_options *options);

/* A table-only copy of m (no weights) with the prompt table after its tensors: what memory plans
 * of a prompt-tuning run need of a model opened without it. */
zt_status zt_prompt_table_copy(const zt_model *m, const zt_prompt_options *options, zt_model **out);
void zt_prompt_table_copy_free(zt_model *copy);

/* Uploads the row ids and the table's initial values (options.adapter_dir's, or sampled rows of
 * the token table). */
zt_status zt_prompt_upload_initial(zt_model *m);
/* The table, when mask selects it (NULL: always), back to its initial values. */
zt_status zt_prompt_reset(zt_model *m, const uint8_t *mask);
/* The table again from dir's adapter_model.safetensors when it has one, else its initial values. */
zt_status zt_prompt_reload(zt_model *m, const char *dir, const uint8_t *mask);
/* The token ids SAMPLE_VOCAB draws under the seed: ids[i] = floor(u_i * V) from the top bits of
 * Philox word i under the seed's key for the table (stream 0), as 32-bit u_i in [0, 1). */
void zt_prompt_sample_ids(const zt_model *m, uint64_t seed, int32_t *ids /* (N) */);

void zt_prompt_release(zt_model *m);

/* The table's rows in front of each sequence of a (B, T) batch's token rows (width e): one
 * gather per sequence with the ids 0 .. N-1, vouched for (backend.h), so no gather makes the host
 * wait for an index check. perturb: the variant's view of the table (NULL: as stored). */
zt_status zt_prompt_gather(const zt_model *m, float *rows /* (B,T,e) */, int batch, int seq_len,
                           const zt_gather_perturbation *perturb);
/* The table's gradient (+=) from the token rows' gradient at each sequence's virtual slots. */
zt_status zt_prompt_gather_backward(const zt_model *m, float *d_table /* (N,e) */,
                                    const float *d_rows /* (B,T,e) */, int batch, int seq_len);

/* A batch with the virtual tokens in front of each sequence: (B, N + T) ids whose virtual slots
 * hold token 0 (a placeholder the token gather reads and the prompt gather overwrites), the mask
 * with N ones in front, target rows moved to their new places. Virtual slots are never targets. */
typedef struct zt_prompt_batch {
    zt_batch batch;
    int32_t *ids, *mask, *rows;
} zt_prompt_batch;
zt_status zt_prompt_extend_batch(const zt_model *m, const zt_batch *in, zt_prompt_batch *out);
void zt_prompt_batch_free(zt_prompt_batch *b);

/* ---- peft's files (prompt_io.c) ---- */

/* OUTPUT/adapter_model.safetensors (key "prompt_embeddings") and adapter_config.json
 * (peft_type PROMPT_TUNING). base_name is base_model_name_or_path. */
zt_status zt_prompt_save(const zt_model *m, const char *dir, const char *base_name);
/* 1 when dir's adapter_config.json says PROMPT_TUNING (0 when it says anything else or is
 * unreadable: the LoRA reader then reports it). */
int zt_prompt_dir_is_prompt(const char *dir);
/* Reads dir's adapter_config.json into options (num_virtual_tokens); refuses anything but a
 * causal-LM prompt-tuning adapter of one transformer submodule, naming the key. */
zt_status zt_prompt_read_config(const char *dir, zt_prompt_options *options);
/* Uploads dir's table when mask (NULL: always) selects it. */
zt_status zt_prompt_load_tensors(zt_model *m, const char *dir, const uint8_t *mask);

#endif
