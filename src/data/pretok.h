/* Pre-tokenized task data (JSONL), the input of `zotune train` and `zotune eval` before the
 * text tasks: two record kinds, one per file.
 *   language modelling: {"input_ids": [...], "labels": [...]}        labels optional, -100 ignored
 *   classification:     {"prompt": [...], "candidates": [[...], ...], "label": k}
 * A classification example expands into one sequence per candidate (prompt + candidate) scored
 * by the mean log-probability of the candidate's tokens (MeZO, reference/spec.md §4.3). */
#ifndef ZT_DATA_PRETOK_H
#define ZT_DATA_PRETOK_H

#include <stdint.h>

#include "zotune.h"

typedef enum zt_task_kind { ZT_TASK_LM = 0, ZT_TASK_CLASSIFICATION = 1 } zt_task_kind;

typedef struct zt_example {
    int line;
    /* LM */
    int length;
    int32_t *input_ids, *labels;
    /* classification */
    int prompt_length;
    int32_t *prompt;
    int n_candidates;
    int *candidate_length;
    int32_t **candidates;
    int label;
} zt_example;

typedef struct zt_dataset {
    char path[1024];
    zt_task_kind kind;
    zt_example *examples;
    int n_examples;
    int max_sequence; /* longest sequence (prompt + candidate for classification) */
    int max_candidates;
} zt_dataset;

/* Reads and validates a whole file: every id in [0, vocab), lengths within max_positions,
 * label within the candidates, one record kind per file. Errors name path:line. */
zt_status zt_dataset_load(const char *path, int vocab, int max_positions, zt_dataset *out);
void zt_dataset_free(zt_dataset *ds);

/* A padded batch built from some examples (left padding, as MeZO), with its targets. */
typedef struct zt_task_batch {
    zt_task_kind kind;
    int n_sequences, seq_len;
    int32_t *input_ids, *attention_mask; /* (S,T) */
    int n_targets;
    int32_t *target_rows, *target_ids, *target_sequence; /* (R) */
    /* classification */
    int n_examples;
    int32_t *example_of_sequence; /* (S) */
    int32_t *label;               /* (n_examples) */
    int32_t *candidate_of_sequence; /* (S) index within its example */
} zt_task_batch;

zt_status zt_task_batch_build(const zt_dataset *ds, const int *indices, int n, int pad_id,
                              zt_task_batch *out);
void zt_task_batch_free(zt_task_batch *b);

/* Sequences a batch of n examples may expand into (for workspace sizing). */
int zt_dataset_max_sequences(const zt_dataset *ds, int batch_size);

/* The loss of one variant from its per-target log-probabilities: LM token mean, or the mean
 * cross-entropy over candidates. */
zt_status zt_task_batch_loss(const zt_task_batch *b, const float *logprobs, double *loss);

#endif
