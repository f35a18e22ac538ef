/* The records `zotune score` and `zotune grad` read: pre-tokenized JSONL ({"input_ids",
 * "labels"}, labels optional, -100 ignored) or any task record eval reads (docs/tasks.md), text
 * through the model's tokenizer, each as a sequence with its labels. */
#ifndef ZT_CLI_RECORDS_H
#define ZT_CLI_RECORDS_H

#include <stdint.h>

#include "model.h"

typedef struct record {
    int line;
    int length;
    int32_t *input_ids;
    int32_t *labels;
} record;

typedef struct record_list {
    record *items;
    int count, capacity;
    int max_length;
} record_list;

void zt_records_free(record_list *list);

/* Every record of the file at path (an empty file is an error): pre-tokenized records when the
 * first has "input_ids", else task records, tokenized with model_dir's tokenizer (bos_mezo:
 * MeZO's BOS quirk). Ids and labels are checked against dims; errors name path:line. */
zt_status zt_records_read(const char *path, const char *model_dir, int bos_mezo,
                          const zt_model_dims *dims, record_list *list);

#endif
