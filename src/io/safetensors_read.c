/* The strict safetensors reader (docs/spec.md §2.1): maps one file read-only and validates all
 * of it before handing out a tensor (the length field, the header's UTF-8 and JSON, each entry's
 * dtype, shape and byte size, offsets that tile the data buffer exactly), then answers lookups
 * by name and of the "__metadata__" values. Tensors point into the mapping. */
#include "io/safetensors_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

/* ---- dtypes and small helpers ---- */

typedef struct st_dtype_info {
    const char *name;
    int bits;
} st_dtype_info;

static const st_dtype_info st_dtypes[] = {
    {"BOOL", 8},        {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},
    {"I8", 8},          {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8},
    {"F8_E5M2FNUZ", 8}, {"I16", 16},    {"U16", 16},    {"F16", 16},    {"BF16", 16},
    {"I32", 32},        {"U32", 32},    {"F32", 32},    {"C64", 64},    {"F64", 64},
    {"I64", 64},        {"U64", 64},
};

int zt_st_dtype_bits(const char *name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return st_dtypes[i].bits;
    return 0;
}

static char *st_strdup(const char *text) {
    size_t n = strlen(text) + 1;
    char *copy = zt_malloc(n);
    if (copy) memcpy(copy, text, n);
    return copy;
}

size_t zt_st_utf8_invalid_at(const uint8_t *text, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t lead = text[i];
        if (lead < 0x80) {
            i++;
            continue;
        }
        int extra;
        uint32_t code_point, smallest;
        if ((lead & 0xE0) == 0xC0) {
            extra = 1, code_point = lead & 0x1F, smallest = 0x80;
        } else if ((lead & 0xF0) == 0xE0) {
            extra = 2, code_point = lead & 0x0F, smallest = 0x800;
        } else if ((lead & 0xF8) == 0xF0) {
            extra = 3, code_point = lead & 0x07, smallest = 0x10000;
        } else {
            return i;
        }
        if (n - i <= (size_t)extra) return i;
        for (int k = 1; k <= extra; k++) {
            if ((text[i + k] & 0xC0) != 0x80) return i;
            code_point = (code_point << 6) | (text[i + k] & 0x3F);
        }
        if (code_point < smallest || code_point > 0x10FFFF ||
            (code_point >= 0xD800 && code_point <= 0xDFFF))
            return i;
        i += (size_t)extra + 1;
    }
    return n;
}

/* A JSON number that is a whole number in [0, 2^53]. */
static bool st_json_to_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double value = item->valuedouble;
    if (!isfinite(value) || value < 0 || value > st_max_exact_integer || floor(value) != value)
        return false;
    *out = (uint64_t)value;
    return true;
}

void zt_st_file_release(st_file *file) {
    if (file->map) munmap(file->map, file->map_bytes);
    for (int i = 0; i < 2 * file->n_metadata; i++)
        free(file->metadata[i]);
    free(file->metadata);
    free(file->path);
    memset(file, 0, sizeof *file);
}

/* ---- header parsing ---- */

/* A tensor's place in the data buffer while the header is being validated. */
typedef struct st_span {
    uint64_t begin, end;
    int tensor;
} st_span;

static int st_compare_spans(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static zt_status st_parse_metadata(const char *path, const cJSON *item, st_file *file) {
    if (!cJSON_IsObject(item))
        return zt_fail(ZT_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", path);
    int n = st_json_count_children(item);
    file->metadata = zt_calloc((size_t)(2 * n + 1), sizeof(char *));
    if (!file->metadata) return st_nomem(path);
    for (const cJSON *entry = item->child; entry; entry = entry->next) {
        if (!cJSON_IsString(entry))
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: \"__metadata__\" value of key \"%s\" is not a string", path,
                           entry->string);
        for (int i = 0; i < file->n_metadata; i++)
            if (strcmp(file->metadata[2 * i], entry->string) == 0)
                return zt_fail(ZT_ERR_FORMAT, "%s: \"__metadata__\" key \"%s\" appears twice", path,
                               entry->string);
        char *key = st_strdup(entry->string), *value = st_strdup(entry->valuestring);
        file->metadata[2 * file->n_metadata] = key;
        file->metadata[2 * file->n_metadata + 1] = value;
        file->n_metadata++;
        if (!key || !value) return st_nomem(path);
    }
    return ZT_OK;
}

static zt_status st_parse_shape(const char *path, const char *name, const cJSON *shape,
                                zt_st_tensor *tensor) {
    if (!cJSON_IsArray(shape))
        return zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", path, name);
    int n_dims = st_json_count_children(shape);
    if (n_dims > ZT_ST_MAX_DIMS)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: tensor '%s': shape has %d dimensions, at most %d allowed", path, name,
                       n_dims, ZT_ST_MAX_DIMS);
    uint64_t n_elems = 1;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t extent;
        if (!st_json_to_u64(dim, &extent))
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: tensor '%s': shape dimension %d is not a non-negative integer",
                           path, name, d);
        if (extent != 0 && n_elems > UINT64_MAX / extent)
            return zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s': element count of the shape overflows",
                           path, name);
        n_elems *= extent;
        tensor->shape[d] = (int64_t)extent;
    }
    tensor->n_dims = n_dims;
    tensor->n_elems = n_elems;
    return ZT_OK;
}

static zt_status st_parse_offsets(const char *path, const char *name, const cJSON *offsets,
                                  st_span *span) {
    uint64_t values[2];
    if (!cJSON_IsArray(offsets) || st_json_count_children(offsets) != 2 ||
        !st_json_to_u64(offsets->child, &values[0]) ||
        !st_json_to_u64(offsets->child->next, &values[1]))
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: tensor '%s': \"data_offsets\" is not two non-negative integers", path,
                       name);
    if (values[0] > values[1])
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets begin %" PRIu64 " is after end %" PRIu64,
                       path, name, values[0], values[1]);
    span->begin = values[0];
    span->end = values[1];
    return ZT_OK;
}

static zt_status st_parse_entry(const char *path, const cJSON *entry, zt_st_tensor *tensor,
                                st_span *span) {
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        return zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    static const char *const fields[] = {"dtype", "shape", "data_offsets"};
    const cJSON *found[3] = {NULL, NULL, NULL};
    for (const cJSON *field = entry->child; field; field = field->next)
        for (int f = 0; f < 3; f++) {
            if (strcmp(field->string, fields[f]) != 0) continue;
            if (found[f])
                return zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s': key \"%s\" appears twice", path,
                               name, fields[f]);
            found[f] = field;
        }
    for (int f = 0; f < 3; f++)
        if (!found[f])
            return zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", path, name, fields[f]);

    if (!cJSON_IsString(found[0]))
        return zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", path, name);
    const char *dtype = found[0]->valuestring;
    int bits = zt_st_dtype_bits(dtype);
    if (bits == 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%.40s\"", path, name,
                       dtype);
    snprintf(tensor->dtype, sizeof tensor->dtype, "%s", dtype);
    tensor->element_bits = bits;

    ZT_TRY(st_parse_shape(path, name, found[1], tensor));
    ZT_TRY(st_parse_offsets(path, name, found[2], span));

    if (tensor->n_elems > UINT64_MAX / (uint64_t)bits)
        return zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s': size in bits overflows", path, name);
    uint64_t total_bits = tensor->n_elems * (uint64_t)bits;
    if (total_bits % 8 != 0)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: tensor '%s': %" PRIu64 " elements of %s make %" PRIu64
                       " bits, not a whole number of bytes",
                       path, name, tensor->n_elems, dtype, total_bits);
    uint64_t expected_bytes = total_bits / 8;
    uint64_t actual_bytes = span->end - span->begin;
    if (actual_bytes != expected_bytes)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64
                       " bytes, but its shape and dtype %s need %" PRIu64 " bytes",
                       path, name, span->begin, span->end, actual_bytes, dtype, expected_bytes);
    tensor->n_bytes = (size_t)expected_bytes;
    return ZT_OK;
}

/* Offsets must tile the data buffer exactly: from 0, no holes, no overlaps, no trailing bytes. */
static zt_status st_check_layout(const char *path, const zt_st_tensor *tensors, st_span *spans,
                                 int n, uint64_t buffer_bytes) {
    qsort(spans, (size_t)n, sizeof *spans, st_compare_spans);
    uint64_t covered = 0;
    for (int i = 0; i < n; i++) {
        const st_span *span = &spans[i];
        const char *name = tensors[span->tensor].name;
        if (i == 0 && span->begin != 0)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: tensor '%s' starts at data offset %" PRIu64
                           "; the first tensor must start at 0",
                           path, name, span->begin);
        if (i > 0) {
            const char *previous = tensors[spans[i - 1].tensor].name;
            if (span->begin > covered)
                return zt_fail(ZT_ERR_FORMAT,
                               "%s: hole of %" PRIu64 " bytes between tensor '%s' (ends at %" PRIu64
                               ") and tensor '%s' (starts at %" PRIu64 ")",
                               path, span->begin - covered, previous, covered, name, span->begin);
            if (span->begin < covered)
                return zt_fail(ZT_ERR_FORMAT,
                               "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                               ", %" PRIu64 ") overlap",
                               path, previous, spans[i - 1].begin, spans[i - 1].end, name,
                               span->begin, span->end);
        }
        covered = span->end;
    }
    if (covered < buffer_bytes)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: %" PRIu64 " trailing bytes after the tensor data (tensors end at data "
                       "offset %" PRIu64 ", the file holds %" PRIu64 " data bytes)",
                       path, buffer_bytes - covered, covered, buffer_bytes);
    if (covered > buffer_bytes)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: file is truncated: tensors need %" PRIu64
                       " data bytes but the file holds %" PRIu64 " (%" PRIu64 " missing)",
                       path, covered, buffer_bytes, covered - buffer_bytes);
    return ZT_OK;
}

static zt_status st_check_header_text(const char *path, const uint8_t *header, size_t n,
                                      char **text_out) {
    if (header[0] != '{') {
        /* A header that is valid JSON but not an object deserves the more precise message. */
        char *probe = zt_malloc(n + 1);
        if (!probe) return st_nomem(path);
        memcpy(probe, header, n);
        probe[n] = '\0';
        cJSON *root = cJSON_ParseWithOpts(probe, NULL, 1);
        bool other_json = root && !cJSON_IsObject(root);
        cJSON_Delete(root);
        free(probe);
        if (other_json)
            return zt_fail(ZT_ERR_FORMAT, "%s: header's top level is not a JSON object", path);
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: header does not start with '{' (first byte 0x%02x); not a safetensors "
                       "file?",
                       path, header[0]);
    }
    const uint8_t *nul = memchr(header, 0, n);
    if (nul)
        return zt_fail(ZT_ERR_FORMAT, "%s: header contains a NUL byte at header offset %zu", path,
                       (size_t)(nul - header));
    size_t bad = zt_st_utf8_invalid_at(header, n);
    if (bad != n)
        return zt_fail(ZT_ERR_FORMAT, "%s: header is not valid UTF-8 (at header offset %zu)", path,
                       bad);
    char *text = zt_malloc(n + 1);
    if (!text) return st_nomem(path);
    memcpy(text, header, n);
    text[n] = '\0';
    *text_out = text;
    return ZT_OK;
}

/* Parses and validates the header of a mapped file; fills file->metadata and a name-sorted tensor
 * array whose names the caller frees. */
static zt_status st_parse_header(const char *path, st_file *file, uint64_t header_bytes,
                                 zt_st_tensor **tensors_out, int *n_out) {
    const uint8_t *header = file->map + ST_LENGTH_PREFIX_BYTES;
    size_t n = (size_t)header_bytes;
    char *text = NULL;
    ZT_TRY(st_check_header_text(path, header, n, &text));

    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &parse_end, 1);
    if (!root) {
        size_t at = parse_end ? (size_t)(parse_end - text) : 0;
        free(text);
        return zt_fail(ZT_ERR_FORMAT, "%s: header is not valid JSON (error near header offset %zu)",
                       path, at);
    }
    free(text);

    zt_status status = ZT_OK;
    zt_st_tensor *tensors = NULL;
    st_span *spans = NULL;
    int n_tensors = 0;
    bool have_metadata = false;
    if (!cJSON_IsObject(root)) {
        status = zt_fail(ZT_ERR_FORMAT, "%s: header's top level is not a JSON object", path);
        goto done;
    }
    int n_entries = st_json_count_children(root);
    tensors = zt_calloc((size_t)n_entries + 1, sizeof *tensors);
    spans = zt_calloc((size_t)n_entries + 1, sizeof *spans);
    if (!tensors || !spans) {
        status = st_nomem(path);
        goto done;
    }
    for (const cJSON *entry = root->child; entry; entry = entry->next) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (have_metadata) {
                status = zt_fail(ZT_ERR_FORMAT, "%s: \"__metadata__\" appears twice", path);
                goto done;
            }
            have_metadata = true;
            status = st_parse_metadata(path, entry, file);
            if (status != ZT_OK) goto done;
            continue;
        }
        zt_st_tensor *tensor = &tensors[n_tensors];
        tensor->name = st_strdup(entry->string);
        if (!tensor->name) {
            status = st_nomem(path);
            goto done;
        }
        n_tensors++;
        spans[n_tensors - 1].tensor = n_tensors - 1;
        status = st_parse_entry(path, entry, tensor, &spans[n_tensors - 1]);
        if (status != ZT_OK) goto done;
    }

    /* cJSON keeps every duplicate key; the format forbids them. Checked before the layout so a
     * duplicate is reported as such, not as the overlap it usually causes. */
    {
        zt_st_tensor *by_name = zt_malloc(((size_t)n_tensors + 1) * sizeof *by_name);
        if (!by_name) {
            status = st_nomem(path);
            goto done;
        }
        memcpy(by_name, tensors, (size_t)n_tensors * sizeof *by_name);
        qsort(by_name, (size_t)n_tensors, sizeof *by_name, st_compare_tensor_names);
        for (int i = 1; i < n_tensors; i++)
            if (strcmp(by_name[i - 1].name, by_name[i].name) == 0) {
                status = zt_fail(ZT_ERR_FORMAT, "%s: tensor name '%s' appears twice in the header",
                                 path, by_name[i].name);
                break;
            }
        free(by_name);
        if (status != ZT_OK) goto done;
    }

    uint64_t data_start = ST_LENGTH_PREFIX_BYTES + header_bytes;
    uint64_t buffer_bytes = (uint64_t)file->map_bytes - data_start;
    status = st_check_layout(path, tensors, spans, n_tensors, buffer_bytes);
    if (status != ZT_OK) goto done;
    for (int i = 0; i < n_tensors; i++) {
        tensors[spans[i].tensor].data = file->map + data_start + spans[i].begin;
        tensors[spans[i].tensor].file_path = file->path;
    }
    qsort(tensors, (size_t)n_tensors, sizeof *tensors, st_compare_tensor_names);

done:
    cJSON_Delete(root);
    free(spans);
    if (status != ZT_OK) {
        st_free_tensor_names(tensors, n_tensors);
        free(tensors);
        return status;
    }
    *tensors_out = tensors;
    *n_out = n_tensors;
    return ZT_OK;
}

zt_status zt_st_file_map(const char *path, st_file *file) {
    memset(file, 0, sizeof *file);
    file->path = st_strdup(path);
    if (!file->path) return st_nomem(path);

    zt_status status = ZT_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        status = zt_fail(errno == ENOENT ? ZT_ERR_MISSING : ZT_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
        goto fail;
    }
    struct stat info;
    if (fstat(fd, &info) != 0) {
        status = zt_fail(ZT_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(info.st_mode)) {
        status = zt_fail(ZT_ERR_IO, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    uint64_t file_bytes = (uint64_t)info.st_size;
    if (file_bytes == 0) { /* mmap refuses a length of 0; the format readers report it */
        close(fd);
        return ZT_OK;
    }
    if (file_bytes > SIZE_MAX) {
        status = zt_fail(ZT_ERR_IO, "%s: file of %" PRIu64 " bytes does not fit the address space",
                         path, file_bytes);
        close(fd);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) {
        status = zt_fail(ZT_ERR_IO, "%s: mmap failed: %s", path, strerror(map_errno));
        goto fail;
    }
    file->map = map;
    file->map_bytes = (size_t)file_bytes;
    return ZT_OK;

fail:
    zt_st_file_release(file);
    return status;
}

zt_status zt_st_file_load(const char *path, st_file *file, zt_st_tensor **tensors_out, int *n_out) {
    ZT_TRY(zt_st_file_map(path, file));
    zt_status status = ZT_OK;
    uint64_t file_bytes = file->map_bytes;
    if (file_bytes < ST_LENGTH_PREFIX_BYTES) {
        status =
            zt_fail(ZT_ERR_FORMAT,
                    "%s: file is %" PRIu64 " bytes, shorter than the 8-byte header length field",
                    path, file_bytes);
        goto fail;
    }
    uint64_t header_bytes = 0;
    for (int i = ST_LENGTH_PREFIX_BYTES - 1; i >= 0; i--)
        header_bytes = (header_bytes << 8) | file->map[i];
    if (header_bytes == 0) {
        status = zt_fail(ZT_ERR_FORMAT, "%s: header length is 0", path);
        goto fail;
    }
    if (header_bytes > st_max_header_bytes) {
        status = zt_fail(ZT_ERR_FORMAT,
                         "%s: header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes",
                         path, header_bytes, st_max_header_bytes);
        goto fail;
    }
    if (ST_LENGTH_PREFIX_BYTES + header_bytes > file_bytes) {
        status = zt_fail(ZT_ERR_FORMAT,
                         "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64
                         " bytes)",
                         path, header_bytes, file_bytes);
        goto fail;
    }
    status = st_parse_header(path, file, header_bytes, tensors_out, n_out);
    if (status != ZT_OK) goto fail;
    return ZT_OK;

fail:
    zt_st_file_release(file);
    return status;
}

/* ---- public reader ---- */

zt_status zt_st_open(const char *path, zt_safetensors **out) {
    if (!out || !path) return zt_fail(ZT_ERR_INVALID_ARG, "zt_st_open: NULL argument");
    *out = NULL;
    return zt_st_open_single(path, zt_st_file_load, out);
}

void zt_st_close(zt_safetensors *st) {
    if (!st) return;
    st_free_tensor_names(st->tensors, st->n_tensors);
    free(st->tensors);
    for (int i = 0; i < st->n_files; i++)
        zt_st_file_release(&st->files[i]);
    free(st->files);
    free(st);
}

int zt_st_count(const zt_safetensors *st) {
    return st ? st->n_tensors : 0;
}

const zt_st_tensor *zt_st_get(const zt_safetensors *st, int index) {
    if (!st || index < 0 || index >= st->n_tensors) return NULL;
    return &st->tensors[index];
}

const zt_st_tensor *zt_st_find(const zt_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    zt_st_tensor key = {.name = (char *)name};
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof key, st_compare_tensor_names);
}

const char *zt_st_metadata(const zt_safetensors *st, const char *key) {
    if (!st || !key || st->n_files == 0) return NULL;
    const st_file *file = &st->files[0];
    for (int i = 0; i < file->n_metadata; i++)
        if (strcmp(file->metadata[2 * i], key) == 0) return file->metadata[2 * i + 1];
    return NULL;
}

zt_status zt_st_storage_dtype(const zt_st_tensor *t, zt_dtype *out) {
    if (!t || !out) return zt_fail(ZT_ERR_INVALID_ARG, "zt_st_storage_dtype: NULL argument");
    if (strcmp(t->dtype, "F32") == 0)
        *out = ZT_F32;
    else if (strcmp(t->dtype, "F16") == 0)
        *out = ZT_F16;
    else if (strcmp(t->dtype, "BF16") == 0)
        *out = ZT_BF16;
    else
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                       t->file_path ? t->file_path : "?", t->name, t->dtype);
    return ZT_OK;
}
