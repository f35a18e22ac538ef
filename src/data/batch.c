/* Padded batches (left padding, as MeZO) and their targets. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "data/dataset.h"
#include "data/targets.h"

int zt_dataset_max_sequences(const zt_dataset *ds, int batch_size, int train_as_lm) {
    if (ds->kind != ZT_TASK_CLASSIFICATION || train_as_lm) return batch_size;
    /* saturates rather than wraps: the workspace then refuses the size by name */
    long long sequences = (long long)batch_size * ds->max_candidates;
    return sequences > INT_MAX ? INT_MAX : (int)sequences;
}

void zt_task_batch_free(zt_task_batch *b) {
    free(b->input_ids);
    free(b->attention_mask);
    free(b->target_rows);
    free(b->target_ids);
    free(b->target_sequence);
    free(b->example_of_sequence);
    free(b->label);
    free(b->candidate_of_sequence);
    memset(b, 0, sizeof *b);
}

/* Writes a sequence right-aligned in row `row` (left padding). */
static void place(zt_task_batch *b, int row, const int32_t *ids, int n) {
    int start = b->seq_len - n;
    int32_t *dst = b->input_ids + (size_t)row * b->seq_len;
    int32_t *mask = b->attention_mask + (size_t)row * b->seq_len;
    for (int t = 0; t < n; t++)
        dst[start + t] = ids[t], mask[start + t] = 1;
}

typedef struct sequence_ref {
    const int32_t *ids;
    int length, option_length; /* option_length 0: targets from labels */
    const int32_t *labels;
    int example, candidate;
} sequence_ref;

/* The sequences a batch of examples expands into. */
static int collect(const zt_dataset *ds, const int *indices, int n, int train_as_lm,
                   sequence_ref *out) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        const zt_example *e = &ds->examples[indices[i]];
        if (ds->kind != ZT_TASK_CLASSIFICATION) {
            out[count++] = (sequence_ref){e->input_ids, e->length, 0, e->labels, i, 0};
        } else if (train_as_lm) {
            out[count++] = (sequence_ref){e->candidates[e->label],
                                          e->candidate_length[e->label],
                                          e->option_length[e->label],
                                          NULL,
                                          i,
                                          e->label};
        } else {
            for (int c = 0; c < e->n_candidates; c++)
                out[count++] = (sequence_ref){
                    e->candidates[c], e->candidate_length[c], e->option_length[c], NULL, i, c};
        }
    }
    return count;
}

int zt_example_longest_sequence(const zt_dataset *ds, const zt_example *e, int train_as_lm) {
    if (ds->kind != ZT_TASK_CLASSIFICATION) return e->length;
    if (train_as_lm) return e->candidate_length[e->label];
    int longest = 0;
    for (int c = 0; c < e->n_candidates; c++)
        if (e->candidate_length[c] > longest) longest = e->candidate_length[c];
    return longest;
}

zt_status zt_task_batch_build(const zt_dataset *ds, const int *indices, int n, int pad_id,
                              int train_as_lm, zt_task_batch *b) {
    return zt_task_batch_build_padded(ds, indices, n, pad_id, train_as_lm, 0, b);
}

zt_status zt_task_batch_build_padded(const zt_dataset *ds, const int *indices, int n, int pad_id,
                                     int train_as_lm, int min_seq_len, zt_task_batch *b) {
    memset(b, 0, sizeof *b);
    int classify = ds->kind == ZT_TASK_CLASSIFICATION && !train_as_lm;
    b->kind = classify ? ZT_TASK_CLASSIFICATION : ZT_TASK_LM;
    int capacity = 0;
    for (int i = 0; i < n; i++)
        capacity += ds->kind == ZT_TASK_CLASSIFICATION ? ds->examples[indices[i]].n_candidates : 1;
    sequence_ref *seqs = zt_malloc((size_t)capacity * sizeof *seqs);
    if (!seqs) return zt_fail(ZT_ERR_NOMEM, "allocating a batch of %d sequences", capacity);
    int count = collect(ds, indices, n, train_as_lm, seqs);
    int longest = min_seq_len;
    for (int s = 0; s < count; s++)
        longest = seqs[s].length > longest ? seqs[s].length : longest;
    b->n_sequences = count;
    b->seq_len = longest;
    b->n_examples = n;
    size_t cells = (size_t)count * longest;
    b->input_ids = zt_malloc(cells * sizeof(int32_t));
    b->attention_mask = zt_calloc(cells, sizeof(int32_t));
    b->example_of_sequence = zt_malloc((size_t)count * sizeof(int32_t));
    b->candidate_of_sequence = zt_malloc((size_t)count * sizeof(int32_t));
    b->label = zt_malloc((size_t)n * sizeof(int32_t));
    int32_t *labels = zt_malloc(cells * sizeof(int32_t));
    int32_t *option_len = zt_malloc((size_t)count * sizeof(int32_t));
    zt_status st = ZT_OK;
    if (!b->input_ids || !b->attention_mask || !b->example_of_sequence || !b->label ||
        !b->candidate_of_sequence || !labels || !option_len)
        st = zt_fail(ZT_ERR_NOMEM, "allocating a batch of %d sequences", count);
    for (size_t c = 0; st == ZT_OK && c < cells; c++)
        b->input_ids[c] = pad_id, labels[c] = -100;
    for (int i = 0; st == ZT_OK && i < n; i++)
        b->label[i] = ds->examples[indices[i]].label;
    for (int s = 0; st == ZT_OK && s < count; s++) {
        const sequence_ref *q = &seqs[s];
        place(b, s, q->ids, q->length);
        b->example_of_sequence[s] = q->example;
        b->candidate_of_sequence[s] = q->candidate;
        option_len[s] = q->option_length;
        int start = longest - q->length;
        int32_t *row_labels = labels + (size_t)s * longest + start;
        if (q->labels) {
            memcpy(row_labels, q->labels, (size_t)q->length * sizeof(int32_t));
        } else {
            for (int t = q->length - q->option_length; t < q->length; t++)
                row_labels[t] = q->ids[t];
        }
        /* the first real token has no prediction inside its sequence */
        row_labels[0] = -100;
    }
    zt_targets t = {0};
    if (st == ZT_OK)
        st = classify ? zt_targets_for_options(count, longest, b->input_ids, b->attention_mask,
                                               option_len, &t)
                      : zt_targets_from_labels(count, longest, labels, INT32_MAX, &t);
    free(labels);
    free(option_len);
    free(seqs);
    if (st != ZT_OK) {
        zt_task_batch_free(b);
        return st;
    }
    b->n_targets = t.n;
    b->target_rows = t.rows;
    b->target_ids = t.ids;
    b->target_sequence = t.example;
    return ZT_OK;
}
