/* Targets of a padded batch: which rows predict which token (docs/spec.md §4.3). */
#ifndef ZT_DATA_TARGETS_H
#define ZT_DATA_TARGETS_H

#include <stdint.h>

#include "zotune.h"

/* Targets of a causal-LM batch, as HF's OPTForCausalLM shifts labels: row b*T+t predicts
 * labels[b,t+1]; -100 is ignored. Every other label must be in [0, vocab). Arrays are malloc'd
 * (NULL when n = 0); example[r] = b. */
typedef struct zt_targets {
    int n;
    int32_t *rows;    /* (R) b*T+t */
    int32_t *ids;     /* (R) */
    int32_t *example; /* (R) which sequence */
} zt_targets;

zt_status zt_targets_from_labels(int batch, int seq_len, const int32_t *labels, int vocab,
                                 zt_targets *out);

/* Targets for MeZO's option scoring: the last option_len[b] real tokens of sequence b (real =
 * attention_mask 1), each predicted from the real token before it. */
zt_status zt_targets_for_options(int batch, int seq_len, const int32_t *input_ids,
                                 const int32_t *attention_mask, const int32_t *option_len,
                                 zt_targets *out);

void zt_targets_free(zt_targets *t);

#endif
