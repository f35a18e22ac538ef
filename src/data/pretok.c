#include "data/pretok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/status.h"
#include "io/jsonl.h"
#include "loss.h"

static zt_status check_ids(const char *path, int line, const char *key, const int32_t *ids, int n,
                           int vocab, int allow_ignore) {
    for (int i = 0; i < n; i++) {
        if (allow_ignore && ids[i] == -100) continue;
        if (ids[i] < 0 || ids[i] >= vocab)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: %s[%d] = %d outside [0, %d)%s", path, line, key, i,
                           ids[i], vocab, allow_ignore ? " and not -100" : "");
    }
    return ZT_OK;
}

static zt_status parse_lm(const zt_jsonl *in, const cJSON *o, int vocab, zt_example *e) {
    const char *path = zt_jsonl_path(in);
    ZT_TRY(zt_jsonl_int_array(in, o, "input_ids", &e->input_ids, &e->length));
    if (e->length < 2)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: input_ids needs at least 2 tokens", path, e->line);
    if (cJSON_HasObjectItem(o, "labels")) {
        int n = 0;
        ZT_TRY(zt_jsonl_int_array(in, o, "labels", &e->labels, &n));
        if (n != e->length)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: %d labels for %d input_ids", path, e->line, n,
                           e->length);
    } else {
        e->labels = malloc((size_t)e->length * sizeof(int32_t));
        if (!e->labels) return zt_fail(ZT_ERR_NOMEM, "%s:%d: labels", path, e->line);
        memcpy(e->labels, e->input_ids, (size_t)e->length * sizeof(int32_t));
    }
    ZT_TRY(check_ids(path, e->line, "input_ids", e->input_ids, e->length, vocab, 0));
    return check_ids(path, e->line, "labels", e->labels, e->length, vocab, 1);
}

static zt_status parse_classification(const zt_jsonl *in, const cJSON *o, int vocab, zt_example *e) {
    const char *path = zt_jsonl_path(in);
    ZT_TRY(zt_jsonl_int_array(in, o, "prompt", &e->prompt, &e->prompt_length));
    if (e->prompt_length < 1)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: prompt is empty", path, e->line);
    ZT_TRY(check_ids(path, e->line, "prompt", e->prompt, e->prompt_length, vocab, 0));
    const cJSON *cands = cJSON_GetObjectItemCaseSensitive(o, "candidates");
    if (!cJSON_IsArray(cands) || cJSON_GetArraySize(cands) < 2)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"candidates\" must be an array of >= 2 id arrays",
                       path, e->line);
    e->n_candidates = cJSON_GetArraySize(cands);
    e->candidates = calloc((size_t)e->n_candidates, sizeof *e->candidates);
    e->candidate_length = calloc((size_t)e->n_candidates, sizeof *e->candidate_length);
    if (!e->candidates || !e->candidate_length)
        return zt_fail(ZT_ERR_NOMEM, "%s:%d: candidates", path, e->line);
    for (int c = 0; c < e->n_candidates; c++) {
        /* reuse the int-array reader through a one-key wrapper object */
        cJSON *wrap = cJSON_CreateObject();
        cJSON_AddItemReferenceToObject(wrap, "candidate", cJSON_GetArrayItem(cands, c));
        zt_status s = zt_jsonl_int_array(in, wrap, "candidate", &e->candidates[c],
                                         &e->candidate_length[c]);
        cJSON_Delete(wrap);
        ZT_TRY(s);
        if (e->candidate_length[c] < 1)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: candidate %d is empty", path, e->line, c);
        ZT_TRY(check_ids(path, e->line, "candidate", e->candidates[c], e->candidate_length[c],
                         vocab, 0));
    }
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(o, "label");
    if (!cJSON_IsNumber(label) || label->valuedouble != (double)label->valueint ||
        label->valueint < 0 || label->valueint >= e->n_candidates)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"label\" must be an integer in [0, %d)", path,
                       e->line, e->n_candidates);
    e->label = label->valueint;
    return ZT_OK;
}

static void example_free(zt_example *e) {
    free(e->input_ids);
    free(e->labels);
    free(e->prompt);
    for (int c = 0; c < e->n_candidates && e->candidates; c++) free(e->candidates[c]);
    free(e->candidates);
    free(e->candidate_length);
}

static int example_longest(const zt_dataset *ds, const zt_example *e) {
    if (ds->kind == ZT_TASK_LM) return e->length;
    int longest = 0;
    for (int c = 0; c < e->n_candidates; c++)
        if (e->prompt_length + e->candidate_length[c] > longest)
            longest = e->prompt_length + e->candidate_length[c];
    return longest;
}

zt_status zt_dataset_load(const char *path, int vocab, int max_positions, zt_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    snprintf(ds->path, sizeof ds->path, "%s", path);
    zt_jsonl *in = NULL;
    ZT_TRY(zt_jsonl_open(path, &in));
    zt_status s = ZT_OK;
    int capacity = 0;
    for (;;) {
        cJSON *o = NULL;
        s = zt_jsonl_next(in, &o);
        if (s != ZT_OK || !o) break;
        zt_example e;
        memset(&e, 0, sizeof e);
        e.line = zt_jsonl_line(in);
        zt_task_kind kind = cJSON_HasObjectItem(o, "candidates") ? ZT_TASK_CLASSIFICATION : ZT_TASK_LM;
        if (ds->n_examples > 0 && kind != ds->kind)
            s = zt_fail(ZT_ERR_FORMAT, "%s:%d: a %s record in a file of %s records", path, e.line,
                        kind == ZT_TASK_LM ? "language-model" : "classification",
                        ds->kind == ZT_TASK_LM ? "language-model" : "classification");
        ds->kind = kind;
        if (s == ZT_OK)
            s = kind == ZT_TASK_LM ? parse_lm(in, o, vocab, &e) : parse_classification(in, o, vocab, &e);
        cJSON_Delete(o);
        if (s == ZT_OK && example_longest(ds, &e) > max_positions)
            s = zt_fail(ZT_ERR_FORMAT, "%s:%d: %d tokens exceed max_position_embeddings %d", path,
                        e.line, example_longest(ds, &e), max_positions);
        if (s == ZT_OK && ds->n_examples == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            zt_example *grown = realloc(ds->examples, (size_t)capacity * sizeof *grown);
            if (!grown) s = zt_fail(ZT_ERR_NOMEM, "%s: examples", path);
            else ds->examples = grown;
        }
        if (s != ZT_OK) {
            example_free(&e);
            break;
        }
        ds->examples[ds->n_examples++] = e;
        if (example_longest(ds, &e) > ds->max_sequence) ds->max_sequence = example_longest(ds, &e);
        if (e.n_candidates > ds->max_candidates) ds->max_candidates = e.n_candidates;
    }
    zt_jsonl_close(in);
    if (s == ZT_OK && ds->n_examples == 0) s = zt_fail(ZT_ERR_FORMAT, "%s: no records", path);
    if (s != ZT_OK) zt_dataset_free(ds);
    return s;
}

void zt_dataset_free(zt_dataset *ds) {
    for (int i = 0; i < ds->n_examples; i++) example_free(&ds->examples[i]);
    free(ds->examples);
    ds->examples = NULL;
    ds->n_examples = 0;
}

int zt_dataset_max_sequences(const zt_dataset *ds, int batch_size) {
    return ds->kind == ZT_TASK_LM ? batch_size : batch_size * ds->max_candidates;
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

/* Writes tokens right-aligned in row s (left padding). */
static void place_left_padded(zt_task_batch *b, int s, const int32_t *a, int na, const int32_t *c,
                              int nc) {
    int start = b->seq_len - (na + nc);
    int32_t *ids = b->input_ids + (size_t)s * b->seq_len;
    int32_t *mask = b->attention_mask + (size_t)s * b->seq_len;
    for (int t = 0; t < na; t++) ids[start + t] = a[t], mask[start + t] = 1;
    for (int t = 0; t < nc; t++) ids[start + na + t] = c[t], mask[start + na + t] = 1;
}

zt_status zt_task_batch_build(const zt_dataset *ds, const int *indices, int n, int pad_id,
                              zt_task_batch *b) {
    memset(b, 0, sizeof *b);
    b->kind = ds->kind;
    int sequences = 0, longest = 0;
    for (int i = 0; i < n; i++) {
        const zt_example *e = &ds->examples[indices[i]];
        sequences += ds->kind == ZT_TASK_LM ? 1 : e->n_candidates;
        int len = example_longest(ds, e);
        if (len > longest) longest = len;
    }
    b->n_sequences = sequences;
    b->seq_len = longest;
    b->n_examples = n;
    size_t cells = (size_t)sequences * longest;
    b->input_ids = malloc(cells * sizeof(int32_t));
    b->attention_mask = calloc(cells, sizeof(int32_t));
    b->example_of_sequence = malloc((size_t)sequences * sizeof(int32_t));
    b->candidate_of_sequence = malloc((size_t)sequences * sizeof(int32_t));
    b->label = malloc((size_t)n * sizeof(int32_t));
    int32_t *labels = malloc(cells * sizeof(int32_t));
    int32_t *option_len = malloc((size_t)sequences * sizeof(int32_t));
    zt_status s = ZT_OK;
    if (!b->input_ids || !b->attention_mask || !b->example_of_sequence || !b->label ||
        !b->candidate_of_sequence || !labels || !option_len)
        s = zt_fail(ZT_ERR_NOMEM, "allocating a batch of %d sequences", sequences);
    for (size_t c = 0; s == ZT_OK && c < cells; c++) b->input_ids[c] = pad_id, labels[c] = -100;
    int row = 0;
    for (int i = 0; s == ZT_OK && i < n; i++) {
        const zt_example *e = &ds->examples[indices[i]];
        if (ds->kind == ZT_TASK_LM) {
            place_left_padded(b, row, e->input_ids, e->length, NULL, 0);
            int start = longest - e->length;
            memcpy(labels + (size_t)row * longest + start, e->labels, (size_t)e->length * sizeof(int32_t));
            /* the first real token has no prediction inside the sequence */
            labels[(size_t)row * longest + start] = -100;
            b->example_of_sequence[row] = i;
            b->candidate_of_sequence[row] = 0;
            row++;
        } else {
            b->label[i] = e->label;
            for (int c = 0; c < e->n_candidates; c++) {
                place_left_padded(b, row, e->prompt, e->prompt_length, e->candidates[c],
                                  e->candidate_length[c]);
                option_len[row] = e->candidate_length[c];
                b->example_of_sequence[row] = i;
                b->candidate_of_sequence[row] = c;
                row++;
            }
        }
    }
    zt_targets t = {0};
    if (s == ZT_OK)
        s = ds->kind == ZT_TASK_LM
                ? zt_targets_from_labels(sequences, longest, labels, INT32_MAX, &t)
                : zt_targets_for_options(sequences, longest, b->input_ids, b->attention_mask,
                                         option_len, &t);
    free(labels);
    free(option_len);
    if (s != ZT_OK) {
        zt_task_batch_free(b);
        return s;
    }
    b->n_targets = t.n;
    b->target_rows = t.rows;
    b->target_ids = t.ids;
    b->target_sequence = t.example;
    return ZT_OK;
}

zt_status zt_task_batch_loss(const zt_task_batch *b, const float *logprobs, double *loss) {
    zt_targets t = {b->n_targets, b->target_rows, b->target_ids, b->target_sequence};
    if (b->kind == ZT_TASK_LM) {
        if (b->n_targets == 0) return zt_fail(ZT_ERR_INVALID_ARG, "a batch without targets");
        zt_lm_loss(logprobs, &t, b->n_sequences, NULL, NULL, loss);
        return ZT_OK;
    }
    double *scores = malloc((size_t)b->n_sequences * sizeof *scores);
    if (!scores) return zt_fail(ZT_ERR_NOMEM, "candidate scores");
    zt_candidate_scores(logprobs, &t, b->n_sequences, scores);
    zt_status s = zt_classification_loss(scores, b->example_of_sequence, b->n_sequences, b->label,
                                         b->n_examples, NULL, loss);
    free(scores);
    return s;
}
