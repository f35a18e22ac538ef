/* Greedy decoding (MeZO's generation evaluation: no sampling, one beam, docs/spec.md §4.4), and
 * the rules the objective, evaluation and workspace sizing share about it. */
#ifndef ZT_TRAIN_GENERATE_H
#define ZT_TRAIN_GENERATE_H

#include "data/dataset.h"
#include "model.h"

struct zt_tokenizer;

/* Greedy generations stop at "\n" or EOS, after at most this many tokens (MeZO). */
enum { ZT_GENERATION_MAX_NEW = 50 };

/* New tokens a prompt of prompt_length may grow by: ZT_GENERATION_MAX_NEW, or fewer where the
 * model's positions run out. */
int zt_generation_max_new(const zt_model *model, int prompt_length);

/* seq_len, grown to what greedy decoding of ds's generation records needs (unchanged for other
 * kinds). */
int zt_generation_seq_len(const zt_dataset *ds, const zt_model *model, int seq_len);

/* The tokens that end a generation: EOS and the id of "\n" as the tokenizer spells it alone
 * (MeZO's eos list). stop holds 2; *n_stop is 1 when "\n" has no encoding. */
zt_status zt_generation_stop_ids(const struct zt_tokenizer *tok, const zt_model *model,
                                 int32_t *stop, int *n_stop);

/* Appends up to max_new tokens to the prompt, each the argmax (first on ties) of the next-token
 * logits under `variants` (NULL: the weights themselves; else exactly one variant), stopping
 * after a token in stop_ids (not included in the output). The workspace must hold one sequence
 * of prompt + max_new tokens. *out is malloc'd. */
zt_status zt_generate_greedy(zt_model *model, zt_workspace *ws, const zt_variants *variants,
                             const int32_t *prompt, int n_prompt, int max_new,
                             const int32_t *stop_ids, int n_stop, int32_t **out, int *n_out);

/* A generation example's answer as text: greedy decoding from its prompt within the budget of
 * zt_generation_max_new, stopping at stop_ids, decoded without special tokens. *text is
 * malloc'd. */
zt_status zt_generate_answer(zt_model *model, zt_workspace *ws, const zt_variants *variants,
                             const struct zt_tokenizer *tok, const zt_example *example,
                             const int32_t *stop_ids, int n_stop, char **text);

#endif
