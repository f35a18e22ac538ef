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

/* seq_len, grown to the longest prompt of ds's generation records (unchanged for other kinds):
 * batched decoding prefills a batch's prompts in the workspace at once, and everything after
 * lives in a KV cache of its own (zt_generation_cache_columns). */
int zt_generation_seq_len(const zt_dataset *ds, const zt_model *model, int seq_len);

/* Columns of the KV cache zt_generate_greedy_batch decodes a batch in: its longest prompt plus
 * its largest budget, but for the last token, which is never fed back. */
int zt_generation_cache_columns(int longest_prompt, int largest_max_new);

/* The tokens that end a generation: EOS and the id of "\n" as the tokenizer spells it alone
 * (MeZO's eos list). stop holds 2; *n_stop is 1 when "\n" has no encoding. */
zt_status zt_generation_stop_ids(const struct zt_tokenizer *tok, const zt_model *model,
                                 int32_t *stop, int *n_stop);

/* Appends up to max_new tokens to the prompt, each the argmax (first on ties) of the next-token
 * logits under `variants` (NULL: the weights themselves; else exactly one variant), stopping
 * after a token in stop_ids (not included in the output). The reference path: every token runs
 * the whole sequence again (no cache), so the workspace must hold one sequence of prompt +
 * max_new tokens. *out is malloc'd. */
zt_status zt_generate_greedy(zt_model *model, zt_workspace *ws, const zt_variants *variants,
                             const int32_t *prompt, int n_prompt, int max_new,
                             const int32_t *stop_ids, int n_stop, int32_t **out, int *n_out);

/* zt_generate_greedy for n prompts at once (docs/design.md §2.7): the prompts are left-padded to
 * the longest, P, and prefilled in one cached forward, then every sequence takes one token per
 * step; a sequence that produced a stop id or max_new[i] tokens stops growing (later steps feed
 * it padding, which nothing attends to) and the loop ends when all have stopped. Each sequence
 * sees the positions and keys it would see alone, so the tokens are zt_generate_greedy's up to
 * the rounding of different GEMM shapes. The workspace must hold n x P tokens; the KV cache
 * (zt_generation_cache_columns) is allocated and freed here. outputs[i] (n_outputs[i] tokens) is
 * malloc'd; on failure none is left. */
zt_status zt_generate_greedy_batch(zt_model *model, zt_workspace *ws, const zt_variants *variants,
                                   int n, const int32_t *const *prompts,          /* (n) */
                                   const int *prompt_lengths, const int *max_new, /* (n) each */
                                   const int32_t *stop_ids, int n_stop, int32_t **outputs,
                                   int *n_outputs /* (n) each */);

/* The answers of n generation examples as text, `batch` prompts at a time through
 * zt_generate_greedy_batch, each within zt_generation_max_new, decoded without special tokens.
 * texts (n) are malloc'd; on failure none is left. */
zt_status zt_generate_answers(zt_model *model, zt_workspace *ws, const zt_variants *variants,
                              const struct zt_tokenizer *tok,
                              const zt_example *const *examples, /* (n) */
                              int n, int batch, const int32_t *stop_ids, int n_stop,
                              char **texts /* (n) */);

/* A generation example's answer as text on the reference path (zt_generate_greedy, alone):
 * greedy decoding from its prompt within the budget of zt_generation_max_new, stopping at
 * stop_ids, decoded without special tokens. *text is malloc'd. */
zt_status zt_generate_answer(zt_model *model, zt_workspace *ws, const zt_variants *variants,
                             const struct zt_tokenizer *tok, const zt_example *example,
                             const int32_t *stop_ids, int n_stop, char **text);

#endif
