#include "loss.h"

#include <math.h>
#include <stdlib.h>

#include "core/status.h"

static zt_status targets_alloc(zt_targets *t, int capacity) {
    t->n = 0;
    t->rows = t->ids = t->example = NULL;
    if (capacity == 0) return ZT_OK;
    t->rows = malloc((size_t)capacity * sizeof(int32_t));
    t->ids = malloc((size_t)capacity * sizeof(int32_t));
    t->example = malloc((size_t)capacity * sizeof(int32_t));
    if (!t->rows || !t->ids || !t->example) {
        zt_targets_free(t);
        return zt_fail(ZT_ERR_NOMEM, "allocating %d targets", capacity);
    }
    return ZT_OK;
}

void zt_targets_free(zt_targets *t) {
    free(t->rows);
    free(t->ids);
    free(t->example);
    t->rows = t->ids = t->example = NULL;
    t->n = 0;
}

zt_status zt_targets_from_labels(int batch, int seq_len, const int32_t *labels, int vocab,
                                 zt_targets *out) {
    ZT_TRY(targets_alloc(out, batch * seq_len));
    for (int b = 0; b < batch; b++) {
        for (int t = 0; t + 1 < seq_len; t++) {
            int32_t y = labels[b * seq_len + t + 1];
            if (y == -100) continue;
            if (y < 0 || y >= vocab) {
                zt_targets_free(out);
                return zt_fail(ZT_ERR_INVALID_ARG,
                               "sequence %d position %d: label %d outside [0, %d) (and not -100)", b,
                               t + 1, y, vocab);
            }
            out->rows[out->n] = b * seq_len + t;
            out->ids[out->n] = y;
            out->example[out->n] = b;
            out->n++;
        }
    }
    return ZT_OK;
}

zt_status zt_targets_for_options(int batch, int seq_len, const int32_t *input_ids,
                                 const int32_t *attention_mask, const int32_t *option_len,
                                 zt_targets *out) {
    ZT_TRY(targets_alloc(out, batch * seq_len));
    for (int b = 0; b < batch; b++) {
        const int32_t *mask = attention_mask + (size_t)b * seq_len;
        int real = 0;
        for (int t = 0; t < seq_len; t++) real += mask[t] != 0;
        if (option_len[b] < 1 || option_len[b] >= real) {
            zt_targets_free(out);
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "sequence %d: option length %d needs 1..%d (it has %d real tokens and "
                           "the first cannot be predicted)",
                           b, option_len[b], real - 1, real);
        }
        /* walk real tokens in order; the last option_len of them are targets */
        int seen = 0, previous = -1;
        for (int t = 0; t < seq_len; t++) {
            if (!mask[t]) continue;
            if (seen >= real - option_len[b]) {
                out->rows[out->n] = b * seq_len + previous;
                out->ids[out->n] = input_ids[(size_t)b * seq_len + t];
                out->example[out->n] = b;
                out->n++;
            }
            previous = t;
            seen++;
        }
    }
    return ZT_OK;
}

void zt_lm_loss(const float *logprobs, const zt_targets *t, int batch, double *per_example,
                int *count, double *token_mean) {
    double total = 0.0;
    if (per_example)
        for (int b = 0; b < batch; b++) per_example[b] = 0.0;
    if (count)
        for (int b = 0; b < batch; b++) count[b] = 0;
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
    int *count = calloc((size_t)n_sequences, sizeof *count);
    for (int s = 0; s < n_sequences; s++) scores[s] = 0.0;
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
        while (s < n_sequences && example_of_sequence[s] == e) s++;
        int n_candidates = s - first;
        if (n_candidates == 0 || label[e] < 0 || label[e] >= n_candidates)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "example %d: label %d but %d candidates (candidates of an example must "
                           "be consecutive)",
                           e, label[e], n_candidates);
        double max_score = scores[first];
        for (int c = first; c < s; c++) max_score = fmax(max_score, scores[c]);
        double sum = 0.0;
        for (int c = first; c < s; c++) sum += exp(scores[c] - max_score);
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
