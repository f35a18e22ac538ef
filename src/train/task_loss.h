/* The losses of a task batch from its per-target log-probabilities (docs/spec.md §4.3): what
 * the objective and evaluation reduce a forward's output to. */
#ifndef ZT_TRAIN_TASK_LOSS_H
#define ZT_TRAIN_TASK_LOSS_H

#include "data/dataset.h"
#include "data/targets.h"

/* Mean NLL per sequence (per_example[b], 0 where count[b] = 0) and the token mean over the
 * batch (HF's CrossEntropyLoss(ignore_index=-100) reduction). Either output may be NULL. */
void zt_lm_loss(const float *logprobs, const zt_targets *t, int batch, double *per_example,
                int *count, double *token_mean);

/* Candidate score = mean log-probability of its option tokens (per sequence). */
void zt_candidate_scores(const float *logprobs, const zt_targets *t, int n_sequences,
                         double *scores);

/* Cross-entropy over each example's candidates: example_of_sequence[s] names the example of
 * candidate sequence s (candidates of an example in order), label[e] is the correct candidate's
 * index within example e. Returns the mean over examples; per_example may be NULL. */
zt_status zt_classification_loss(const double *scores, const int32_t *example_of_sequence,
                                 int n_sequences, const int32_t *label, int n_examples,
                                 double *per_example, double *mean);

/* Per-example contributions to a batch's loss (dist/dp_reduce.h): loss = sum_e value[e] /
 * sum_e weight[e], summed in example order, which is how one process and any number of
 * data-parallel ranks reduce alike. LM: the NLL sum of example e's targets and their count;
 * classification: e's cross-entropy over its candidates, and 1; negative_accuracy: -1 for a
 * correct candidate argmax (first on ties) else 0, and 1. value and weight are (n_examples). */
zt_status zt_task_batch_contributions(const zt_task_batch *b, const float *logprobs,
                                      int negative_accuracy, double *value, double *weight);

/* The loss of one variant from its per-target log-probabilities: LM token mean, or the mean
 * cross-entropy over candidates. */
zt_status zt_task_batch_loss(const zt_task_batch *b, const float *logprobs, double *loss);

#endif
