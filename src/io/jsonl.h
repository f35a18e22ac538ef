/* JSONL reading with file:line in every error. */
#ifndef ZT_IO_JSONL_H
#define ZT_IO_JSONL_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "zotune.h"

typedef struct zt_jsonl zt_jsonl;

zt_status zt_jsonl_open(const char *path, zt_jsonl **out);
/* Next non-blank line parsed as a JSON object. *out = NULL at end of file. The caller frees
 * with cJSON_Delete. A line that is not a JSON object fails naming path:line. */
zt_status zt_jsonl_next(zt_jsonl *reader, cJSON **out);
int zt_jsonl_line(const zt_jsonl *reader); /* 1-based line of the record last returned */
const char *zt_jsonl_path(const zt_jsonl *reader);
/* Fingerprint (core/fingerprint.h) of every byte read so far: of the whole file once
 * zt_jsonl_next has returned its end. */
uint64_t zt_jsonl_fingerprint(const zt_jsonl *reader);
void zt_jsonl_close(zt_jsonl *reader);

/* Reads an array of integers from obj[key] into a new malloc'd array. Errors name path:line and
 * key (missing, not an array, non-integer element, out of int32 range). */
zt_status zt_jsonl_int_array(const zt_jsonl *reader, const cJSON *obj, const char *key,
                             int32_t **out, int *n_out);

/* The first key that appears twice in one object anywhere inside item, or NULL. JSON leaves
 * duplicates undefined (cJSON keeps the first, Python the last), so every zotune reader refuses
 * them rather than read a file differently from the tools that wrote it. */
const char *zt_json_duplicate_key(const cJSON *item);

#endif
