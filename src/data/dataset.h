/* Task data (JSONL, docs/tasks.md): classification / multiple choice, language modelling and
 * generation records, as text (tokenized here, MeZO's way) or pre-tokenized ids. A
 * classification example expands into one sequence per candidate, scored by the mean
 * log-probability of the candidate's tokens (MeZO, docs/spec.md §4.3). */
#ifndef ZT_DATA_DATASET_H
#define ZT_DATA_DATASET_H

#include <stdint.h>

#include "zotune.h"

typedef enum zt_task_kind {
    ZT_TASK_LM = 0,
    ZT_TASK_CLASSIFICATION = 1,
    ZT_TASK_GENERATION = 2, /* prompt + reference answers; trains as LM on the completion */
} zt_task_kind;

struct zt_tokenizer;

typedef struct zt_example {
    int line;
    /* LM and generation: the training sequence and its labels (-100 = not a target) */
    int length;
    int32_t *input_ids, *labels;
    /* generation: the prompt alone (greedy decoding starts from it), and as the record spells
     * it (what `zotune eval --predictions` reports) */
    int prompt_length;
    int32_t *prompt;
    char *prompt_text;
    /* classification: one full sequence per candidate, its last option_length tokens scored */
    int n_candidates;
    int *candidate_length;
    int *option_length;
    int32_t **candidates;
    int label;  /* the candidate trained towards */
    int n_gold; /* correct candidates for accuracy (>1 for list-valued gold, as ReCoRD) */
    int *gold;
    /* generation: reference answers */
    int n_answers;
    char **answers;
} zt_example;

typedef struct zt_dataset {
    char path[1024];
    zt_task_kind kind;
    zt_example *examples;
    int n_examples;
    int max_sequence; /* longest sequence (a candidate's full sequence for classification) */
    int max_candidates;
    uint64_t fingerprint; /* of the file's bytes (core/fingerprint.h): resume checks it */
} zt_dataset;

/* Reads and validates a whole file (docs/tasks.md): every id in [0, vocab), lengths within
 * max_positions, label within the candidates, one record kind per file. Text records are
 * tokenized with `tok` (NULL: text records are an error) as MeZO does: BOS first, option
 * tokens = encode(prompt + candidate) past encode(prompt), sequences longer than max_positions
 * keep BOS and their last tokens (left truncation). Errors name path:line. */
zt_status zt_dataset_load(const char *path, const struct zt_tokenizer *tok, int vocab,
                          int max_positions, zt_dataset *out);
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
    int32_t *example_of_sequence;   /* (S) */
    int32_t *label;                 /* (n_examples) */
    int32_t *candidate_of_sequence; /* (S) index within its example */
} zt_task_batch;

/* train_as_lm: classification examples contribute only their labelled candidate, scored by the
 * LM loss of its tokens (MeZO's --train_as_classification False, for Copa and ReCoRD).
 * Generation examples always train as LM on prompt + completion. */
zt_status zt_task_batch_build(const zt_dataset *ds, const int *indices, int n, int pad_id,
                              int train_as_lm, zt_task_batch *out);
/* The longest sequence example e adds to a batch (as zt_task_batch_build expands it). */
int zt_example_longest_sequence(const zt_dataset *ds, const zt_example *e, int train_as_lm);

/* The same, padded to at least min_seq_len tokens: a data-parallel rank pads its share as the
 * whole step's batch is padded, so each sequence meets the same computation (dist/). */
zt_status zt_task_batch_build_padded(const zt_dataset *ds, const int *indices, int n, int pad_id,
                                     int train_as_lm, int min_seq_len, zt_task_batch *out);
void zt_task_batch_free(zt_task_batch *b);

/* Sequences a batch of n examples may expand into (for workspace sizing). */
int zt_dataset_max_sequences(const zt_dataset *ds, int batch_size, int train_as_lm);

#endif
