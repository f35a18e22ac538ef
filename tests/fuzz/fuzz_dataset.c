/* Task JSONL (docs/tasks.md) and the padded batches built from it. The first input byte picks
 * the model's limits (max positions, a vocabulary smaller than the tokenizer's, or no
 * tokenizer), the second the batch size and pad id; the rest is the task file. An accepted file
 * must meet every rule zt_dataset_load documents, and each batch must be its examples
 * right-aligned over padding with targets that point at real, in-vocabulary next tokens. */
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "fuzz_common.h"
#include "text/bpe.h"

static zt_tokenizer *tokenizer;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (zt_tokenizer_load_dir(ZT_FUZZ_FIXTURES "/tokenizer", &tokenizer) != ZT_OK) abort();
    return 0;
}

typedef struct limits {
    int vocab, max_positions;
} limits;

static void check_ids(const int32_t *ids, int n, int vocab, int allow_ignore, const char *what) {
    for (int i = 0; i < n; i++)
        FUZZ_CHECK((ids[i] >= 0 && ids[i] < vocab) || (allow_ignore && ids[i] == -100),
                   "%s[%d] = %d outside the vocabulary of %d", what, i, ids[i], vocab);
}

static void check_example(const zt_dataset *ds, const zt_example *e, limits lim) {
    if (ds->kind == ZT_TASK_CLASSIFICATION) {
        FUZZ_CHECK(e->n_candidates >= 2 && e->n_candidates <= ds->max_candidates, "candidates");
        for (int c = 0; c < e->n_candidates; c++) {
            FUZZ_CHECK(e->option_length[c] >= 1 && e->option_length[c] < e->candidate_length[c] &&
                           e->candidate_length[c] <= lim.max_positions &&
                           e->candidate_length[c] <= ds->max_sequence,
                       "line %d candidate %d: option %d of %d tokens (max %d)", e->line, c,
                       e->option_length[c], e->candidate_length[c], lim.max_positions);
            check_ids(e->candidates[c], e->candidate_length[c], lim.vocab, 0, "candidate");
        }
        FUZZ_CHECK(e->n_gold >= 1 && e->label == e->gold[0], "line %d: gold labels", e->line);
        for (int g = 0; g < e->n_gold; g++)
            FUZZ_CHECK(e->gold[g] >= 0 && e->gold[g] < e->n_candidates, "gold %d", e->gold[g]);
        return;
    }
    FUZZ_CHECK(e->length >= 1 && e->length <= lim.max_positions && e->length <= ds->max_sequence,
               "line %d: %d tokens (max %d)", e->line, e->length, lim.max_positions);
    check_ids(e->input_ids, e->length, lim.vocab, 0, "input_ids");
    check_ids(e->labels, e->length, lim.vocab, 1, "labels");
    int predicted = 0;
    for (int t = 1; t < e->length; t++) predicted += e->labels[t] != -100;
    FUZZ_CHECK(predicted > 0, "line %d: nothing to predict", e->line);
    if (ds->kind == ZT_TASK_GENERATION) {
        FUZZ_CHECK(e->prompt_length >= 1 && e->prompt_length < lim.max_positions,
                   "line %d: prompt of %d tokens", e->line, e->prompt_length);
        check_ids(e->prompt, e->prompt_length, lim.vocab, 0, "prompt");
        FUZZ_CHECK(e->n_answers >= 1, "line %d: no answers", e->line);
        for (int a = 0; a < e->n_answers; a++) FUZZ_CHECK(e->answers[a], "answer %d", a);
    }
}

/* The sequence s of a batch stands for, with its count of targets. */
static const int32_t *source_of(const zt_dataset *ds, const zt_task_batch *b, const int *idx, int s,
                                int train_as_lm, int *length, int *n_targets) {
    const zt_example *e = &ds->examples[idx[b->example_of_sequence[s]]];
    if (ds->kind != ZT_TASK_CLASSIFICATION) {
        *length = e->length;
        *n_targets = 0;
        for (int t = 1; t < e->length; t++) *n_targets += e->labels[t] != -100;
        return e->input_ids;
    }
    int c = b->candidate_of_sequence[s];
    FUZZ_CHECK(c >= 0 && c < e->n_candidates && (!train_as_lm || c == e->label), "candidate %d", c);
    *length = e->candidate_length[c];
    *n_targets = e->option_length[c];
    return e->candidates[c];
}

static void check_batch(const zt_dataset *ds, const int *idx, int n, int pad, int train_as_lm,
                        limits lim) {
    zt_task_batch b;
    fuzz_expect_begin();
    zt_status s = zt_task_batch_build(ds, idx, n, pad, train_as_lm, &b);
    FUZZ_CHECK(s == ZT_OK, "a batch of accepted examples fails: %s", zt_last_error());
    int S = b.n_sequences, T = b.seq_len, longest = 0;
    FUZZ_CHECK(S >= n && S <= zt_dataset_max_sequences(ds, n, train_as_lm) && T <= lim.max_positions,
               "%d sequences of %d tokens for %d examples", S, T, n);
    int *targets_of = calloc((size_t)S, sizeof *targets_of);
    for (int r = 0; r < b.n_targets; r++) {
        int row = b.target_rows[r], seq = b.target_sequence[r];
        FUZZ_CHECK(row >= 0 && row < S * T && row / T == seq && row % T + 1 < T &&
                       (r == 0 || row > b.target_rows[r - 1]),
                   "target %d: row %d of sequence %d", r, row, seq);
        FUZZ_CHECK(b.attention_mask[row] && b.attention_mask[row + 1], "target on padding");
        FUZZ_CHECK(b.target_ids[r] >= 0 && b.target_ids[r] < lim.vocab, "target id %d",
                   b.target_ids[r]);
        if (b.kind == ZT_TASK_CLASSIFICATION)
            FUZZ_CHECK(b.target_ids[r] == b.input_ids[row + 1], "option target is not the token");
        targets_of[seq]++;
    }
    for (int q = 0; q < S; q++) {
        FUZZ_CHECK(b.example_of_sequence[q] >= 0 && b.example_of_sequence[q] < n, "example");
        int length = 0, n_targets = 0;
        const int32_t *ids = source_of(ds, &b, idx, q, train_as_lm, &length, &n_targets);
        longest = length > longest ? length : longest;
        FUZZ_CHECK(length <= T && targets_of[q] == n_targets,
                   "sequence %d: %d targets, its example has %d", q, targets_of[q], n_targets);
        for (int t = 0; t < T; t++) {
            int real = t >= T - length;
            int32_t want = real ? ids[t - (T - length)] : pad;
            FUZZ_CHECK(b.attention_mask[q * T + t] == real && b.input_ids[q * T + t] == want,
                       "sequence %d position %d is not its example left-padded", q, t);
        }
    }
    FUZZ_CHECK(longest == T, "batch length %d, longest sequence %d", T, longest);
    free(targets_of);
    zt_task_batch_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    limits lim = {zt_tokenizer_vocab_size(tokenizer), (data[0] & 63) ? (data[0] & 63) : 2048};
    if (data[0] & 64) lim.vocab = 500;
    const zt_tokenizer *tok = data[0] & 128 ? NULL : tokenizer;
    int batch = 1 + (data[1] & 7), pad = data[1] >> 3;
    char path[512];
    fuzz_put("task.jsonl", data + 2, size - 2, path, sizeof path);
    zt_dataset ds;
    fuzz_expect_begin();
    zt_status s = zt_dataset_load(path, tok, lim.vocab, lim.max_positions, &ds);
    fuzz_expect_reported(s, "zt_dataset_load");
    if (s != ZT_OK) {
        FUZZ_CHECK(ds.n_examples == 0 && !ds.examples, "a failed load kept examples");
        return 0;
    }
    FUZZ_CHECK(ds.n_examples > 0, "an accepted file without examples");
    for (int i = 0; i < ds.n_examples; i++) {
        FUZZ_CHECK(i == 0 || ds.examples[i].line > ds.examples[i - 1].line, "lines out of order");
        check_example(&ds, &ds.examples[i], lim);
    }
    int n = ds.n_examples < 64 ? ds.n_examples : 64;
    int *idx = malloc((size_t)n * sizeof *idx);
    for (int i = 0; i < n; i++) idx[i] = n - 1 - i; /* any order: batches are index lists */
    for (int at = 0; at < n; at += batch) {
        int count = n - at < batch ? n - at : batch;
        check_batch(&ds, idx + at, count, pad, 0, lim);
        check_batch(&ds, idx + at, count, pad, 1, lim);
    }
    free(idx);
    zt_dataset_free(&ds);
    return 0;
}
