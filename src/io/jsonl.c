#include "io/jsonl.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fingerprint.h"
#include "core/status.h"

struct zt_jsonl {
    FILE *stream;
    char *path;
    char *line;
    size_t line_capacity;
    int lines_read;
    int record_line;
    zt_fingerprint content; /* every byte read so far, blank lines too */
};

zt_status zt_jsonl_open(const char *path, zt_jsonl **out) {
    if (!path || !out) return zt_fail(ZT_ERR_INVALID_ARG, "zt_jsonl_open: NULL argument");
    *out = NULL;
    zt_jsonl *reader = zt_calloc(1, sizeof *reader);
    size_t path_bytes = strlen(path) + 1;
    char *path_copy = zt_malloc(path_bytes);
    if (!reader || !path_copy) {
        free(reader);
        free(path_copy);
        return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(path_copy, path, path_bytes);
    zt_fingerprint_init(&reader->content);
    reader->stream = fopen(path, "rb");
    if (!reader->stream) {
        zt_status status = zt_fail(errno == ENOENT ? ZT_ERR_MISSING : ZT_ERR_IO,
                                   "%s: cannot open: %s", path, strerror(errno));
        free(path_copy);
        free(reader);
        return status;
    }
    reader->path = path_copy;
    *out = reader;
    return ZT_OK;
}

static bool jsonl_is_blank(const char *line, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\n') return false;
    return true;
}

zt_status zt_jsonl_next(zt_jsonl *reader, cJSON **out) {
    if (!reader || !out) return zt_fail(ZT_ERR_INVALID_ARG, "zt_jsonl_next: NULL argument");
    *out = NULL;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&reader->line, &reader->line_capacity, reader->stream);
        if (n < 0) {
            if (ferror(reader->stream))
                return zt_fail(ZT_ERR_IO, "%s:%d: read error: %s", reader->path,
                               reader->lines_read + 1, strerror(errno));
            return ZT_OK;
        }
        reader->lines_read++;
        zt_fingerprint_update(&reader->content, reader->line, (size_t)n);
        if (jsonl_is_blank(reader->line, (size_t)n)) continue;
        reader->record_line = reader->lines_read;
        if (strlen(reader->line) != (size_t)n)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: line contains a NUL byte", reader->path,
                           reader->record_line);
        const char *parse_end = NULL;
        cJSON *record = cJSON_ParseWithOpts(reader->line, &parse_end, 1);
        if (!record) {
            long column = parse_end ? (long)(parse_end - reader->line) + 1 : 1;
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: invalid JSON (near column %ld)", reader->path,
                           reader->record_line, column);
        }
        const char *twice = zt_json_duplicate_key(record);
        if (twice) {
            zt_status status = zt_fail(ZT_ERR_FORMAT, "%s:%d: key \"%s\" appears twice in a record",
                                       reader->path, reader->record_line, twice);
            cJSON_Delete(record);
            return status;
        }
        if (!cJSON_IsObject(record)) {
            cJSON_Delete(record);
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: record is not a JSON object", reader->path,
                           reader->record_line);
        }
        *out = record;
        return ZT_OK;
    }
}

int zt_jsonl_line(const zt_jsonl *reader) {
    return reader ? reader->record_line : 0;
}

uint64_t zt_jsonl_fingerprint(const zt_jsonl *reader) {
    return reader ? zt_fingerprint_final(&reader->content) : 0;
}

const char *zt_jsonl_path(const zt_jsonl *reader) {
    return reader ? reader->path : NULL;
}

void zt_jsonl_close(zt_jsonl *reader) {
    if (!reader) return;
    if (reader->stream) fclose(reader->stream);
    free(reader->line);
    free(reader->path);
    free(reader);
}

zt_status zt_jsonl_int_array(const zt_jsonl *reader, const cJSON *obj, const char *key,
                             int32_t **out, int *n_out) {
    if (!reader || !obj || !key || !out || !n_out)
        return zt_fail(ZT_ERR_INVALID_ARG, "zt_jsonl_int_array: NULL argument");
    *out = NULL;
    *n_out = 0;
    const char *path = reader->path;
    int line = reader->record_line;
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!array) return zt_fail(ZT_ERR_MISSING, "%s:%d: missing key \"%s\"", path, line, key);
    if (!cJSON_IsArray(array))
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: key \"%s\" is not an array", path, line, key);
    int n = cJSON_GetArraySize(array);
    int32_t *values = zt_malloc(((size_t)n + 1) * sizeof *values);
    if (!values) return zt_fail(ZT_ERR_NOMEM, "%s:%d: out of memory", path, line);
    int i = 0;
    for (const cJSON *item = array->child; item; item = item->next, i++) {
        double value = item->valuedouble;
        if (!cJSON_IsNumber(item) || !isfinite(value) || floor(value) != value) {
            free(values);
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: key \"%s\": element %d is not an integer", path,
                           line, key, i);
        }
        if (value < INT32_MIN || value > INT32_MAX) {
            free(values);
            return zt_fail(ZT_ERR_FORMAT,
                           "%s:%d: key \"%s\": element %d = %.0f is out of int32 range", path, line,
                           key, i, value);
        }
        values[i] = (int32_t)value;
    }
    *out = values;
    *n_out = n;
    return ZT_OK;
}

static int compare_key_pointers(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Pairwise for small objects; sorted for large ones (a tokenizer's vocabulary). */
static const char *object_duplicate_key(const cJSON *object) {
    enum { PAIRWISE_MAX = 16 };
    int n = cJSON_GetArraySize(object);
    if (n <= PAIRWISE_MAX) {
        for (const cJSON *a = object->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && strcmp(a->string, b->string) == 0) return a->string;
        return NULL;
    }
    const char **keys = zt_malloc((size_t)n * sizeof *keys);
    if (!keys) return NULL; /* best effort: the parse itself stands */
    int count = 0;
    for (const cJSON *a = object->child; a; a = a->next)
        if (a->string) keys[count++] = a->string;
    qsort(keys, (size_t)count, sizeof *keys, compare_key_pointers);
    const char *found = NULL;
    for (int i = 1; i < count && !found; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) found = keys[i];
    free(keys);
    return found;
}

const char *zt_json_duplicate_key(const cJSON *item) {
    if (!item) return NULL;
    if (cJSON_IsObject(item)) {
        const char *found = object_duplicate_key(item);
        if (found) return found;
    }
    if (cJSON_IsObject(item) || cJSON_IsArray(item))
        for (const cJSON *child = item->child; child; child = child->next) {
            const char *found = zt_json_duplicate_key(child);
            if (found) return found;
        }
    return NULL;
}
