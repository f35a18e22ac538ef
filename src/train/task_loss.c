/* Losses from per-target log-probabilities (docs/spec.md §4.3), reduced on the host in double:
 * the forward returns one float per target row, so this is never a hot path. */
#include "train/task_loss.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/status.h"
#include "dist/dp_reduce.h"

void zt_lm_loss(const float *logprobs, const zt_targets *t, int batch, double *per_example,
                int *count, double *token_mean) {
    double total = 0.0;
    if (per_example)
        for (int b = 0; b < batch; b++)
            per_example[b] = 0.0;
    if (count)
        for (int b = 0; b < batch; b++)
            count[b] = 0;
    for (int r = 0; r < t->n; r++) {
        total -= logprobs[r];
        if (per_example) per_example[t->example[r]] -= logprobs[r];
        if (count) count[t->example[r]]++;
    }
    if (per_example && count)
        for (int b = 0; b < batch; b++)
            if (count[b] > 0) per_example[b] /= count[b];
    if (token_mean) *token_mean = t->n > 0 ? total / t->n : 0.0;
}

void zt_candidate_scores(const float *logprobs, const zt_targets *t, int n_sequences,
                         double *scores) {
    int *count = zt_calloc((size_t)n_sequences, sizeof *count);
    for (int s = 0; s < n_sequences; s++)
        scores[s] = 0.0;
    for (int r = 0; r < t->n; r++) {
        scores[t->example[r]] += logprobs[r];
        if (count) count[t->example[r]]++;
    }
    for (int s = 0; s < n_sequences; s++)
        if (count && count[s] > 0) scores[s] /= count[s];
    free(count);
}

zt_status zt_classification_loss(const double *scores, const int32_t *example_of_sequence,
                                 int n_sequences, const int32_t *label, int n_examples,
                                 double *per_example, double *mean) {
    double total = 0.0;
    int s = 0;
    for (int e = 0; e < n_examples; e++) {
        int first = s;
        while (s < n_sequences && example_of_sequence[s] == e)
            s++;
        int n_candidates = s - first;
        if (n_candidates == 0 || label[e] < 0 || label[e] >= n_candidates)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "example %d: label %d but %d candidates (candidates of an example must "
                           "be consecutive)",
                           e, label[e], n_candidates);
        double max_score = scores[first];
        for (int c = first; c < s; c++)
            max_score = fmax(max_score, scores[c]);
        double sum = 0.0;
        for (int c = first; c < s; c++)
            sum += exp(scores[c] - max_score);
        double loss = -(scores[first + label[e]] - max_score - log(sum));
        if (per_example) per_example[e] = loss;
        total += loss;
    }
    if (s != n_sequences)
        return zt_fail(ZT_ERR_INVALID_ARG, "candidate %d belongs to example %d, beyond %d examples",
                       s, example_of_sequence[s], n_examples);
    *mean = n_examples > 0 ? total / n_examples : 0.0;
    return ZT_OK;
}

/* -1 where the candidate argmax (first on ties) is the labelled one, else 0. */
static void negative_correct(const zt_task_batch *b, const double *scores, double *value) {
    for (int s = 0; s < b->n_sequences;) {
        int e = b->example_of_sequence[s], best = s, count = 0;
        while (s + count < b->n_sequences && b->example_of_sequence[s + count] == e) {
            if (scores[s + count] > scores[best]) best = s + count;
            count++;
        }
        value[e] = b->candidate_of_sequence[best] == b->label[e] ? -1.0 : 0.0;
        s += count;
    }
}

zt_status zt_task_batch_contributions(const zt_task_batch *b, const float *logprobs,
                                      int negative_accuracy, double *value, double *weight) {
    zt_targets t = {b->n_targets, b->target_rows, b->target_ids, b->target_sequence};
    if (b->kind != ZT_TASK_CLASSIFICATION) {
        if (negative_accuracy)
            return zt_fail(ZT_ERR_INVALID_ARG, "accuracy of a batch without candidates");
        /* an LM batch holds one sequence per example */
        for (int e = 0; e < b->n_examples; e++)
            value[e] = weight[e] = 0.0;
        for (int r = 0; r < t.n; r++) {
            value[t.example[r]] -= logprobs[r];
            weight[t.example[r]] += 1.0;
        }
        return ZT_OK;
    }
    double *scores = zt_malloc((size_t)b->n_sequences * sizeof *scores);
    if (!scores) return zt_fail(ZT_ERR_NOMEM, "candidate scores");
    zt_candidate_scores(logprobs, &t, b->n_sequences, scores);
    zt_status s = ZT_OK;
    if (negative_accuracy) {
        negative_correct(b, scores, value);
    } else {
        double mean = 0.0;
        s = zt_classification_loss(scores, b->example_of_sequence, b->n_sequences, b->label,
                                   b->n_examples, value, &mean);
    }
    for (int e = 0; e < b->n_examples; e++)
        weight[e] = 1.0;
    free(scores);
    return s;
}

zt_status zt_task_batch_loss(const zt_task_batch *b, const float *logprobs, double *loss) {
    const int n = b->n_examples;
    double *value = zt_malloc((size_t)2 * (n > 0 ? n : 1) * sizeof *value);
    if (!value) return zt_fail(ZT_ERR_NOMEM, "per-example losses");
    double *weight = value + n;
    zt_status s = zt_task_batch_contributions(b, logprobs, 0, value, weight);
    if (s == ZT_OK) s = zt_dp_reduce_losses(NULL, 1, 1, n, value, weight, loss);
    free(value);
    return s;
}
