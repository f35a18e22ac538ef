/* Which rows of a padded batch carry a target, and the token each predicts. */
#include "data/targets.h"

#include <stdlib.h>

#include "core/alloc.h"
#include "core/status.h"

static zt_status targets_alloc(zt_targets *t, int capacity) {
    t->n = 0;
    t->rows = t->ids = t->example = NULL;
    if (capacity == 0) return ZT_OK;
    t->rows = zt_malloc((size_t)capacity * sizeof(int32_t));
    t->ids = zt_malloc((size_t)capacity * sizeof(int32_t));
    t->example = zt_malloc((size_t)capacity * sizeof(int32_t));
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
                               "sequence %d position %d: label %d outside [0, %d) (and not -100)",
                               b, t + 1, y, vocab);
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
        for (int t = 0; t < seq_len; t++)
            real += mask[t] != 0;
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
