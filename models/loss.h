/* Losses from per-target log-probabilities (reference/spec.md §4.3), reduced on the host in
 * double: the forward returns one float per target row, so this is never a hot path. */
#ifndef ZT_MODELS_LOSS_H
#define ZT_MODELS_LOSS_H

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

/* Mean NLL per sequence (per_example[b], 0 where count[b] = 0) and the token mean over the
 * batch (HF's CrossEntropyLoss(ignore_index=-100) reduction). Either output may be NULL. */
void zt_lm_loss(const float *logprobs, const zt_targets *t, int batch, double *per_example,
                int *count, double *token_mean);

/* Candidate score = mean log-probability of its option tokens (per sequence). */
void zt_candidate_scores(const float *logprobs, const zt_targets *t, int n_sequences, double *scores);

/* Cross-entropy over each example's candidates: example_of_sequence[s] names the example of
 * candidate sequence s (candidates of an example in order), label[e] is the correct candidate's
 * index within example e. Returns the mean over examples; per_example may be NULL. */
zt_status zt_classification_loss(const double *scores, const int32_t *example_of_sequence,
                                 int n_sequences, const int32_t *label, int n_examples,
                                 double *per_example, double *mean);

#endif
