/* Greedy decoding (MeZO's generation evaluation: no sampling, one beam). */
#ifndef ZT_TRAIN_GENERATE_H
#define ZT_TRAIN_GENERATE_H

#include "opt.h"

/* Appends up to max_new tokens to the prompt, each the argmax (first on ties) of the next-token
 * logits under `variants` (NULL: the weights themselves; else exactly one variant), stopping
 * after a token in stop_ids (not included in the output). The workspace must hold one sequence
 * of prompt + max_new tokens. *out is malloc'd. */
zt_status zt_generate_greedy(zt_model *model, zt_opt_workspace *ws, const zt_opt_variants *variants,
                             const int32_t *prompt, int n_prompt, int max_new,
                             const int32_t *stop_ids, int n_stop, int32_t **out, int *n_out);

#endif
