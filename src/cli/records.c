/* The records score and grad read (records.h). */
#include "cli/records.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/status.h"
#include "data/dataset.h"
#include "io/jsonl.h"
#include "text/bpe.h"

void zt_records_free(record_list *list) {
    for (int i = 0; i < list->count; i++) {
        free(list->items[i].input_ids);
        free(list->items[i].labels);
    }
    free(list->items);
}

static zt_status check_record(const zt_jsonl *in, const record *r, const zt_model_dims *dims) {
    const char *path = zt_jsonl_path(in);
    if (r->length < 1) return zt_fail(ZT_ERR_FORMAT, "%s:%d: input_ids is empty", path, r->line);
    if (r->length > dims->max_positions)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: %d tokens exceed max_position_embeddings %d", path,
                       r->line, r->length, dims->max_positions);
    for (int t = 0; t < r->length; t++) {
        if (r->input_ids[t] < 0 || r->input_ids[t] >= dims->vocab_size)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: input_ids[%d] = %d outside [0, %d)", path,
                           r->line, t, r->input_ids[t], dims->vocab_size);
        if (r->labels[t] != -100 && (r->labels[t] < 0 || r->labels[t] >= dims->vocab_size))
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: labels[%d] = %d outside [0, %d) and not -100",
                           path, r->line, t, r->labels[t], dims->vocab_size);
    }
    return ZT_OK;
}

static zt_status list_append(record_list *list, const record *r, const char *path) {
    if (list->count == list->capacity) {
        int capacity = list->capacity ? 2 * list->capacity : 64;
        record *grown = zt_realloc(list->items, (size_t)capacity * sizeof *grown);
        if (!grown) return zt_fail(ZT_ERR_NOMEM, "%s: allocating records", path);
        list->items = grown;
        list->capacity = capacity;
    }
    list->items[list->count++] = *r;
    if (r->length > list->max_length) list->max_length = r->length;
    return ZT_OK;
}

/* Reads every record: "input_ids" required, "labels" optional (defaults to input_ids). */
static zt_status read_token_records(const char *path, const zt_model_dims *dims,
                                    record_list *list) {
    zt_jsonl *in = NULL;
    ZT_TRY(zt_jsonl_open(path, &in));
    zt_status s = ZT_OK;
    for (;;) {
        cJSON *obj = NULL;
        s = zt_jsonl_next(in, &obj);
        if (s != ZT_OK || !obj) break;
        record r = {zt_jsonl_line(in), 0, NULL, NULL};
        s = zt_jsonl_int_array(in, obj, "input_ids", &r.input_ids, &r.length);
        if (s == ZT_OK && cJSON_HasObjectItem(obj, "labels")) {
            int n_labels = 0;
            s = zt_jsonl_int_array(in, obj, "labels", &r.labels, &n_labels);
            if (s == ZT_OK && n_labels != r.length)
                s = zt_fail(ZT_ERR_FORMAT, "%s:%d: %d labels for %d input_ids", path, r.line,
                            n_labels, r.length);
        } else if (s == ZT_OK) {
            r.labels = zt_malloc((size_t)(r.length ? r.length : 1) * sizeof(int32_t));
            if (!r.labels)
                s = zt_fail(ZT_ERR_NOMEM, "%s:%d: allocating labels", path, r.line);
            else
                memcpy(r.labels, r.input_ids, (size_t)r.length * sizeof(int32_t));
        }
        cJSON_Delete(obj);
        if (s == ZT_OK) s = check_record(in, &r, dims);
        if (s == ZT_OK) s = list_append(list, &r, path);
        if (s != ZT_OK) {
            free(r.input_ids);
            free(r.labels);
            break;
        }
    }
    zt_jsonl_close(in);
    return s;
}

/* The sequence an example is scored on, as eval's loss sees it with --train-as lm: an LM or
 * generation record's tokens with its labels (the completion only where it has a prompt); a
 * classification record's labelled candidate, its option tokens the labels. */
static zt_status example_record(const zt_example *e, zt_task_kind kind, record *r) {
    const int32_t *ids = e->input_ids;
    r->line = e->line;
    r->length = e->length;
    int scored_from = 0;
    if (kind == ZT_TASK_CLASSIFICATION) {
        ids = e->candidates[e->label];
        r->length = e->candidate_length[e->label];
        scored_from = r->length - e->option_length[e->label];
    }
    size_t n = (size_t)(r->length > 0 ? r->length : 1);
    r->input_ids = zt_malloc(n * sizeof(int32_t));
    r->labels = zt_malloc(n * sizeof(int32_t));
    if (!r->input_ids || !r->labels) /* the caller frees what was allocated */
        return zt_fail(ZT_ERR_NOMEM, "line %d: allocating the record", e->line);
    memcpy(r->input_ids, ids, (size_t)r->length * sizeof(int32_t));
    for (int t = 0; t < r->length; t++)
        r->labels[t] =
            kind == ZT_TASK_CLASSIFICATION ? (t >= scored_from ? ids[t] : -100) : e->labels[t];
    return ZT_OK;
}

/* Any record kind eval reads (docs/tasks.md), text tokenized with the model's tokenizer. */
static zt_status read_task_records(const char *path, const char *model_dir, int bos_mezo,
                                   const zt_model_dims *dims, record_list *list) {
    zt_tokenizer *tok = NULL;
    zt_dataset ds;
    memset(&ds, 0, sizeof ds);
    zt_status s = zt_tokenizer_open_model_dir(model_dir, bos_mezo, &tok);
    if (s == ZT_OK) s = zt_dataset_load(path, tok, dims->vocab_size, dims->max_positions, &ds);
    for (int i = 0; s == ZT_OK && i < ds.n_examples; i++) {
        record r = {0, 0, NULL, NULL};
        s = example_record(&ds.examples[i], ds.kind, &r);
        if (s == ZT_OK) s = list_append(list, &r, path);
        if (s != ZT_OK) {
            free(r.input_ids);
            free(r.labels);
        }
    }
    zt_dataset_free(&ds);
    zt_tokenizer_free(tok);
    return s;
}

/* Whether the file holds score's own pre-tokenized form: a first record with "input_ids". */
static zt_status holds_token_records(const char *path, int *yes) {
    zt_jsonl *in = NULL;
    cJSON *first = NULL;
    ZT_TRY(zt_jsonl_open(path, &in));
    zt_status s = zt_jsonl_next(in, &first);
    *yes = s != ZT_OK || !first || cJSON_HasObjectItem(first, "input_ids");
    cJSON_Delete(first);
    zt_jsonl_close(in);
    return ZT_OK;
}

zt_status zt_records_read(const char *path, const char *model_dir, int bos_mezo,
                          const zt_model_dims *dims, record_list *list) {
    int token_records = 1;
    ZT_TRY(holds_token_records(path, &token_records));
    zt_status s = token_records ? read_token_records(path, dims, list)
                                : read_task_records(path, model_dir, bos_mezo, dims, list);
    if (s == ZT_OK && list->count == 0) s = zt_fail(ZT_ERR_FORMAT, "%s: no records", path);
    return s;
}
