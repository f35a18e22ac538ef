#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/status.h"

enum { ST_LENGTH_PREFIX_BYTES = 8, ST_HEADER_ALIGNMENT = 8 };

/* The reference implementation's MAX_HEADER_SIZE: a larger header means a corrupt file, and
 * refusing it keeps a bad length field from turning into a huge allocation. */
static const uint64_t st_max_header_bytes = 100000000;

/* JSON numbers arrive as doubles; above 2^53 distinct integers collapse, so larger values cannot
 * be trusted as shapes or offsets. */
static const double st_max_exact_integer = 9007199254740992.0;

static const char st_index_name[] = "model.safetensors.index.json";
static const char st_single_name[] = "model.safetensors";

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

static int st_dtype_bits(const char *name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return st_dtypes[i].bits;
    return 0;
}

typedef struct st_file {
    char *path;
    uint8_t *map;
    size_t map_bytes;
    char **metadata; /* key, value, key, value, ... */
    int n_metadata;
} st_file;

struct zt_safetensors {
    st_file *files;
    int n_files;
    zt_st_tensor *tensors; /* sorted by name */
    int n_tensors;
};

/* ---- small helpers ---- */

static char *st_strdup(const char *text) {
    size_t n = strlen(text) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, text, n);
    return copy;
}

static char *st_join_path(const char *dir, const char *name) {
    size_t dir_len = strlen(dir), name_len = strlen(name);
    bool needs_slash = dir_len > 0 && dir[dir_len - 1] != '/';
    char *joined = malloc(dir_len + needs_slash + name_len + 1);
    if (!joined) return NULL;
    memcpy(joined, dir, dir_len);
    if (needs_slash) joined[dir_len] = '/';
    memcpy(joined + dir_len + needs_slash, name, name_len + 1);
    return joined;
}

static zt_status st_nomem(const char *path) {
    return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", path);
}

/* Returns the offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code
 * points above U+10FFFF included), or n when the text is valid. */
static size_t st_utf8_invalid_at(const uint8_t *text, size_t n) {
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

static int st_json_count_children(const cJSON *item) {
    int count = 0;
    for (const cJSON *child = item->child; child; child = child->next)
        count++;
    return count;
}

static int st_compare_tensor_names(const void *a, const void *b) {
    return strcmp(((const zt_st_tensor *)a)->name, ((const zt_st_tensor *)b)->name);
}

static void st_free_tensor_names(zt_st_tensor *tensors, int n) {
    if (!tensors) return;
    for (int i = 0; i < n; i++)
        free(tensors[i].name);
}

static void st_file_release(st_file *file) {
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
    file->metadata = calloc((size_t)(2 * n + 1), sizeof(char *));
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
    int bits = st_dtype_bits(dtype);
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
        char *probe = malloc(n + 1);
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
    size_t bad = st_utf8_invalid_at(header, n);
    if (bad != n)
        return zt_fail(ZT_ERR_FORMAT, "%s: header is not valid UTF-8 (at header offset %zu)", path,
                       bad);
    char *text = malloc(n + 1);
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
    tensors = calloc((size_t)n_entries + 1, sizeof *tensors);
    spans = calloc((size_t)n_entries + 1, sizeof *spans);
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
        zt_st_tensor *by_name = malloc(((size_t)n_tensors + 1) * sizeof *by_name);
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

/* Maps one file and validates it; on success file owns the mapping and *tensors_out (names
 * malloc'd) is sorted by name. On failure file is released. */
static zt_status st_file_load(const char *path, st_file *file, zt_st_tensor **tensors_out,
                              int *n_out) {
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
    if (file_bytes < ST_LENGTH_PREFIX_BYTES) {
        status =
            zt_fail(ZT_ERR_FORMAT,
                    "%s: file is %" PRIu64 " bytes, shorter than the 8-byte header length field",
                    path, file_bytes);
        close(fd);
        goto fail;
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
    st_file_release(file);
    return status;
}

/* ---- public reader ---- */

zt_status zt_st_open(const char *path, zt_safetensors **out) {
    if (!out || !path) return zt_fail(ZT_ERR_INVALID_ARG, "zt_st_open: NULL argument");
    *out = NULL;
    zt_safetensors *st = calloc(1, sizeof *st);
    st_file *file = calloc(1, sizeof *file);
    if (!st || !file) {
        free(st);
        free(file);
        return st_nomem(path);
    }
    zt_status status = st_file_load(path, file, &st->tensors, &st->n_tensors);
    if (status != ZT_OK) {
        free(file);
        free(st);
        return status;
    }
    st->files = file;
    st->n_files = 1;
    *out = st;
    return ZT_OK;
}

void zt_st_close(zt_safetensors *st) {
    if (!st) return;
    st_free_tensor_names(st->tensors, st->n_tensors);
    free(st->tensors);
    for (int i = 0; i < st->n_files; i++)
        st_file_release(&st->files[i]);
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

/* ---- sharded directories ---- */

/* 1 if path exists, 0 if not, or a failure status for anything else (e.g. permission). */
static zt_status st_path_exists(const char *path, int *exists) {
    struct stat info;
    if (stat(path, &info) == 0) {
        *exists = 1;
        return ZT_OK;
    }
    if (errno == ENOENT || errno == ENOTDIR) {
        *exists = 0;
        return ZT_OK;
    }
    return zt_fail(ZT_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
}

static zt_status st_read_text_file(const char *path, char **text_out) {
    FILE *stream = fopen(path, "rb");
    if (!stream) return zt_fail(ZT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    zt_status status = ZT_OK;
    while (text) {
        if (len + 1 >= cap) {
            if (cap > st_max_header_bytes) {
                status = zt_fail(ZT_ERR_FORMAT, "%s: larger than %" PRIu64 " bytes", path,
                                 st_max_header_bytes);
                break;
            }
            char *grown = realloc(text, cap * 2);
            if (!grown) break;
            text = grown;
            cap *= 2;
        }
        size_t got = fread(text + len, 1, cap - 1 - len, stream);
        len += got;
        if (got == 0) break;
    }
    if (status == ZT_OK && !text) status = st_nomem(path);
    if (status == ZT_OK && ferror(stream))
        status = zt_fail(ZT_ERR_IO, "%s: read error: %s", path, strerror(errno));
    fclose(stream);
    if (status != ZT_OK) {
        free(text);
        return status;
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        return zt_fail(ZT_ERR_FORMAT, "%s: contains a NUL byte", path);
    }
    *text_out = text;
    return ZT_OK;
}

static int st_compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct st_index_entry {
    const char *tensor;
    const char *shard;
} st_index_entry;

static int st_compare_index_entries(const void *a, const void *b) {
    return strcmp(((const st_index_entry *)a)->tensor, ((const st_index_entry *)b)->tensor);
}

static bool st_is_plain_file_name(const char *name) {
    return name[0] != '\0' && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
           strchr(name, '/') == NULL && strchr(name, '\\') == NULL;
}

/* Reads the index's weight_map into entries sorted by tensor name. */
static zt_status st_parse_index(const char *index_path, const cJSON *root, st_index_entry **out,
                                int *n_out) {
    if (!cJSON_IsObject(root))
        return zt_fail(ZT_ERR_FORMAT, "%s: top level is not a JSON object", index_path);
    const cJSON *metadata = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (metadata && !cJSON_IsObject(metadata))
        return zt_fail(ZT_ERR_FORMAT, "%s: \"metadata\" is not a JSON object", index_path);
    const cJSON *weight_map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!weight_map) return zt_fail(ZT_ERR_FORMAT, "%s: missing \"weight_map\"", index_path);
    if (!cJSON_IsObject(weight_map))
        return zt_fail(ZT_ERR_FORMAT, "%s: \"weight_map\" is not a JSON object", index_path);
    int n = st_json_count_children(weight_map);
    if (n == 0) return zt_fail(ZT_ERR_FORMAT, "%s: \"weight_map\" is empty", index_path);
    st_index_entry *entries = calloc((size_t)n, sizeof *entries);
    if (!entries) return st_nomem(index_path);
    int i = 0;
    for (const cJSON *item = weight_map->child; item; item = item->next, i++) {
        if (!cJSON_IsString(item)) {
            free(entries);
            return zt_fail(ZT_ERR_FORMAT, "%s: weight_map entry '%s' is not a string", index_path,
                           item->string);
        }
        if (!st_is_plain_file_name(item->valuestring)) {
            free(entries);
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: weight_map entry '%s' names shard \"%s\", which is not a plain "
                           "file name in the model directory",
                           index_path, item->string, item->valuestring);
        }
        entries[i].tensor = item->string;
        entries[i].shard = item->valuestring;
    }
    qsort(entries, (size_t)n, sizeof *entries, st_compare_index_entries);
    for (i = 1; i < n; i++)
        if (strcmp(entries[i - 1].tensor, entries[i].tensor) == 0) {
            zt_status status = zt_fail(ZT_ERR_FORMAT, "%s: weight_map lists tensor '%s' twice",
                                       index_path, entries[i].tensor);
            free(entries);
            return status;
        }
    *out = entries;
    *n_out = n;
    return ZT_OK;
}

/* Opens every shard once and checks that the index and the shards agree tensor by tensor. */
static zt_status st_open_shards(const char *dir, const char *index_path, st_index_entry *entries,
                                int n_entries, zt_safetensors *st) {
    const char **shards = malloc((size_t)n_entries * sizeof *shards);
    int *shard_counts = NULL;
    zt_st_tensor **shard_tensors = NULL;
    zt_status status = ZT_OK;
    if (!shards) return st_nomem(index_path);
    for (int i = 0; i < n_entries; i++)
        shards[i] = entries[i].shard;
    qsort(shards, (size_t)n_entries, sizeof *shards, st_compare_strings);
    int n_shards = 0;
    for (int i = 0; i < n_entries; i++)
        if (n_shards == 0 || strcmp(shards[n_shards - 1], shards[i]) != 0)
            shards[n_shards++] = shards[i];

    st->files = calloc((size_t)n_shards, sizeof *st->files);
    shard_counts = calloc((size_t)n_shards, sizeof *shard_counts);
    shard_tensors = calloc((size_t)n_shards, sizeof *shard_tensors);
    if (!st->files || !shard_counts || !shard_tensors) {
        status = st_nomem(index_path);
        goto done;
    }
    int total = 0;
    for (int s = 0; s < n_shards; s++) {
        char *shard_path = st_join_path(dir, shards[s]);
        if (!shard_path) {
            status = st_nomem(index_path);
            goto done;
        }
        int exists = 0;
        status = st_path_exists(shard_path, &exists);
        if (status == ZT_OK && !exists)
            status = zt_fail(ZT_ERR_MISSING, "%s: shard \"%s\" listed in the index does not exist",
                             index_path, shard_path);
        if (status == ZT_OK)
            status = st_file_load(shard_path, &st->files[s], &shard_tensors[s], &shard_counts[s]);
        free(shard_path);
        if (status != ZT_OK) goto done;
        st->n_files = s + 1;
        total += shard_counts[s];

        for (int t = 0; t < shard_counts[s]; t++) {
            st_index_entry key = {.tensor = shard_tensors[s][t].name};
            const st_index_entry *listed =
                bsearch(&key, entries, (size_t)n_entries, sizeof key, st_compare_index_entries);
            if (!listed) {
                status = zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s' is not listed in %s",
                                 st->files[s].path, key.tensor, index_path);
                goto done;
            }
            if (strcmp(listed->shard, shards[s]) != 0) {
                status = zt_fail(ZT_ERR_FORMAT,
                                 "%s: tensor '%s' is in shard %s but the index maps it to %s",
                                 index_path, key.tensor, shards[s], listed->shard);
                goto done;
            }
        }
    }
    for (int i = 0; i < n_entries; i++) {
        const char **shard = bsearch(&entries[i].shard, shards, (size_t)n_shards, sizeof *shards,
                                     st_compare_strings);
        int s = (int)(shard - shards);
        zt_st_tensor key = {.name = (char *)entries[i].tensor};
        if (!bsearch(&key, shard_tensors[s], (size_t)shard_counts[s], sizeof key,
                     st_compare_tensor_names)) {
            status = zt_fail(ZT_ERR_MISSING, "%s: tensor '%s' is mapped to shard %s but not in it",
                             index_path, entries[i].tensor, entries[i].shard);
            goto done;
        }
    }

    st->tensors = calloc((size_t)total + 1, sizeof *st->tensors);
    if (!st->tensors) {
        status = st_nomem(index_path);
        goto done;
    }
    for (int s = 0; s < n_shards; s++) {
        memcpy(st->tensors + st->n_tensors, shard_tensors[s],
               (size_t)shard_counts[s] * sizeof *st->tensors);
        st->n_tensors += shard_counts[s];
        free(shard_tensors[s]); /* the names now belong to st->tensors */
        shard_tensors[s] = NULL;
        shard_counts[s] = 0;
    }
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, st_compare_tensor_names);

done:
    if (shard_tensors)
        for (int s = 0; s < n_shards; s++) {
            st_free_tensor_names(shard_tensors[s], shard_counts[s]);
            free(shard_tensors[s]);
        }
    free(shard_tensors);
    free(shard_counts);
    free(shards);
    return status;
}

static zt_status st_open_sharded(const char *dir, const char *index_path, zt_safetensors **out) {
    char *text = NULL;
    ZT_TRY(st_read_text_file(index_path, &text));
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &parse_end, 1);
    if (!root) {
        size_t at = parse_end ? (size_t)(parse_end - text) : 0;
        free(text);
        return zt_fail(ZT_ERR_FORMAT, "%s: invalid JSON (error near byte %zu)", index_path, at);
    }
    free(text);
    st_index_entry *entries = NULL;
    int n_entries = 0;
    zt_status status = st_parse_index(index_path, root, &entries, &n_entries);
    if (status != ZT_OK) {
        cJSON_Delete(root);
        return status;
    }
    zt_safetensors *st = calloc(1, sizeof *st);
    if (!st) status = st_nomem(index_path);
    if (status == ZT_OK) status = st_open_shards(dir, index_path, entries, n_entries, st);
    free(entries);
    cJSON_Delete(root);
    if (status != ZT_OK) {
        zt_st_close(st);
        return status;
    }
    *out = st;
    return ZT_OK;
}

zt_status zt_st_open_dir(const char *dir, zt_safetensors **out) {
    if (!out || !dir) return zt_fail(ZT_ERR_INVALID_ARG, "zt_st_open_dir: NULL argument");
    *out = NULL;
    char *index_path = st_join_path(dir, st_index_name);
    char *single_path = st_join_path(dir, st_single_name);
    zt_status status = ZT_OK;
    int index_exists = 0, single_exists = 0;
    if (!index_path || !single_path) status = st_nomem(dir);
    if (status == ZT_OK) status = st_path_exists(index_path, &index_exists);
    if (status == ZT_OK && !index_exists) status = st_path_exists(single_path, &single_exists);
    if (status == ZT_OK) {
        if (index_exists)
            status = st_open_sharded(dir, index_path, out);
        else if (single_exists)
            status = zt_st_open(single_path, out);
        else
            status = zt_fail(ZT_ERR_MISSING, "%s: no safetensors weights: neither %s nor %s exists",
                             dir, index_path, single_path);
    }
    free(index_path);
    free(single_path);
    return status;
}

/* ---- writer ---- */

zt_status zt_write_file_atomic(const char *path, const void *const *chunks,
                               const size_t *chunk_bytes, int n_chunks) {
    if (!path || n_chunks < 0 || (n_chunks > 0 && (!chunks || !chunk_bytes)))
        return zt_fail(ZT_ERR_INVALID_ARG, "zt_write_file_atomic: bad arguments");
    size_t path_len = strlen(path);
    char *tmp_path = malloc(path_len + sizeof ".tmp");
    if (!tmp_path) return st_nomem(path);
    memcpy(tmp_path, path, path_len);
    memcpy(tmp_path + path_len, ".tmp", sizeof ".tmp");

    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        zt_status status =
            zt_fail(ZT_ERR_IO, "%s: cannot create %s: %s", path, tmp_path, strerror(errno));
        free(tmp_path);
        return status;
    }
    zt_status status = ZT_OK;
    for (int c = 0; c < n_chunks && status == ZT_OK; c++) {
        const uint8_t *cursor = chunks[c];
        size_t left = chunk_bytes[c];
        while (left > 0) {
            /* Linux writes at most ~2 GiB per call; stay well under it. */
            size_t step = left < ((size_t)1 << 30) ? left : ((size_t)1 << 30);
            ssize_t written = write(fd, cursor, step);
            if (written < 0 && errno == EINTR) continue;
            if (written <= 0) {
                status = zt_fail(ZT_ERR_IO, "%s: writing %s failed: %s", path, tmp_path,
                                 written < 0 ? strerror(errno) : "no progress");
                break;
            }
            cursor += written;
            left -= (size_t)written;
        }
    }
    /* The data must be on disk before the rename makes it visible under the final name. */
    if (status == ZT_OK && fsync(fd) != 0)
        status = zt_fail(ZT_ERR_IO, "%s: fsync of %s failed: %s", path, tmp_path, strerror(errno));
    if (close(fd) != 0 && status == ZT_OK)
        status = zt_fail(ZT_ERR_IO, "%s: closing %s failed: %s", path, tmp_path, strerror(errno));
    if (status == ZT_OK && rename(tmp_path, path) != 0)
        status = zt_fail(ZT_ERR_IO, "%s: renaming %s into place failed: %s", path, tmp_path,
                         strerror(errno));
    if (status != ZT_OK) {
        unlink(tmp_path);
        free(tmp_path);
        return status;
    }
    free(tmp_path);

    /* Persist the rename itself. Best effort: some file systems refuse fsync on a directory,
     * and the file is complete either way. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? malloc((size_t)(slash - path) + 2) : st_strdup(".");
    if (dir) {
        if (slash) {
            size_t dir_len = slash == path ? 1 : (size_t)(slash - path);
            memcpy(dir, path, dir_len);
            dir[dir_len] = '\0';
        }
        int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd >= 0) {
            (void)fsync(dir_fd);
            close(dir_fd);
        }
        free(dir);
    }
    return ZT_OK;
}

static void st_write_json_string(FILE *stream, const char *text) {
    fputc('"', stream);
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(stream, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(stream, "\\u%04x", *c);
        else
            fputc(*c, stream);
    }
    fputc('"', stream);
}

static zt_status st_check_write_string(const char *path, const char *what, int index,
                                       const char *text) {
    if (!text) return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s %d is NULL", path, what, index);
    size_t n = strlen(text);
    if (st_utf8_invalid_at((const uint8_t *)text, n) != n)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s \"%s\" is not valid UTF-8", path, what, text);
    return ZT_OK;
}

/* Validates one tensor to write and returns its byte size. */
static zt_status st_check_write_tensor(const char *path, int index, const zt_st_write_tensor *t,
                                       size_t *n_bytes) {
    ZT_TRY(st_check_write_string(path, "tensor name", index, t->name));
    if (strcmp(t->name, "__metadata__") == 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: a tensor cannot be named \"__metadata__\"", path);
    int bits = t->dtype ? st_dtype_bits(t->dtype) : 0;
    if (bits == 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: tensor '%s': unknown dtype \"%s\"", path, t->name,
                       t->dtype ? t->dtype : "(null)");
    if (t->n_dims < 0 || t->n_dims > ZT_ST_MAX_DIMS || (t->n_dims > 0 && !t->shape))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: tensor '%s': bad rank %d", path, t->name,
                       t->n_dims);
    uint64_t n_elems = 1;
    for (int d = 0; d < t->n_dims; d++) {
        if (t->shape[d] < 0 || (double)t->shape[d] > st_max_exact_integer)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: tensor '%s': bad dimension %d = %" PRId64, path,
                           t->name, d, t->shape[d]);
        uint64_t extent = (uint64_t)t->shape[d];
        if (extent != 0 && n_elems > UINT64_MAX / extent)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: tensor '%s': element count overflows", path,
                           t->name);
        n_elems *= extent;
    }
    if (n_elems > UINT64_MAX / (uint64_t)bits || (n_elems * (uint64_t)bits) % 8 != 0 ||
        n_elems * (uint64_t)bits / 8 > SIZE_MAX)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "%s: tensor '%s': size is not a representable whole number of bytes", path,
                       t->name);
    *n_bytes = (size_t)(n_elems * (uint64_t)bits / 8);
    if (*n_bytes > 0 && !t->data)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: tensor '%s': data is NULL", path, t->name);
    return ZT_OK;
}

static zt_status st_check_unique(const char *path, const char *what, const char **names, int n) {
    qsort(names, (size_t)n, sizeof *names, st_compare_strings);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s '%s' given twice", path, what, names[i]);
    return ZT_OK;
}

static zt_status st_build_header(const char *path, const zt_st_write_tensor *tensors, int n_tensors,
                                 const size_t *n_bytes, const char *const *metadata, int n_metadata,
                                 char **header_out, size_t *header_bytes_out) {
    char *header = NULL;
    size_t header_bytes = 0;
    FILE *stream = open_memstream(&header, &header_bytes);
    if (!stream) return st_nomem(path);
    fputc('{', stream);
    bool first = true;
    if (n_metadata > 0) {
        fputs("\"__metadata__\":{", stream);
        for (int i = 0; i < n_metadata; i++) {
            if (i > 0) fputc(',', stream);
            st_write_json_string(stream, metadata[2 * i]);
            fputc(':', stream);
            st_write_json_string(stream, metadata[2 * i + 1]);
        }
        fputc('}', stream);
        first = false;
    }
    uint64_t offset = 0;
    for (int i = 0; i < n_tensors; i++) {
        const zt_st_write_tensor *t = &tensors[i];
        if (!first) fputc(',', stream);
        first = false;
        st_write_json_string(stream, t->name);
        fprintf(stream, ":{\"dtype\":\"%s\",\"shape\":[", t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            fprintf(stream, "%s%" PRId64, d > 0 ? "," : "", t->shape[d]);
        fprintf(stream, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset,
                offset + n_bytes[i]);
        offset += n_bytes[i];
    }
    fputc('}', stream);
    /* Padding keeps every tensor aligned to its element size in the file, as readers expect. */
    long length = ftell(stream);
    while (length >= 0 && length % ST_HEADER_ALIGNMENT != 0) {
        fputc(' ', stream);
        length++;
    }
    bool failed = ferror(stream) != 0 || length < 0;
    if (fclose(stream) != 0 || failed) {
        free(header);
        return st_nomem(path);
    }
    *header_out = header;
    *header_bytes_out = header_bytes;
    return ZT_OK;
}

zt_status zt_st_write(const char *path, const zt_st_write_tensor *tensors, int n_tensors,
                      const char *const *metadata, int n_metadata) {
    if (!path) return zt_fail(ZT_ERR_INVALID_ARG, "zt_st_write: path is NULL");
    if (n_tensors < 0 || (n_tensors > 0 && !tensors) || n_metadata < 0 ||
        (n_metadata > 0 && !metadata))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: bad tensor or metadata list", path);

    size_t *n_bytes = calloc((size_t)n_tensors + 1, sizeof *n_bytes);
    const char **names =
        calloc((size_t)(n_tensors > n_metadata ? n_tensors : n_metadata) + 1, sizeof *names);
    const void **chunks = calloc((size_t)n_tensors + 2, sizeof *chunks);
    size_t *chunk_bytes = calloc((size_t)n_tensors + 2, sizeof *chunk_bytes);
    char *header = NULL;
    size_t header_bytes = 0;
    zt_status status = ZT_OK;
    if (!n_bytes || !names || !chunks || !chunk_bytes) status = st_nomem(path);

    for (int i = 0; status == ZT_OK && i < n_tensors; i++)
        status = st_check_write_tensor(path, i, &tensors[i], &n_bytes[i]);
    for (int i = 0; status == ZT_OK && i < n_tensors; i++)
        names[i] = tensors[i].name;
    if (status == ZT_OK) status = st_check_unique(path, "tensor", names, n_tensors);
    for (int i = 0; status == ZT_OK && i < n_metadata; i++) {
        status = st_check_write_string(path, "metadata key", i, metadata[2 * i]);
        if (status == ZT_OK)
            status = st_check_write_string(path, "metadata value", i, metadata[2 * i + 1]);
        names[i] = metadata[2 * i];
    }
    if (status == ZT_OK) status = st_check_unique(path, "metadata key", names, n_metadata);
    if (status == ZT_OK)
        status = st_build_header(path, tensors, n_tensors, n_bytes, metadata, n_metadata, &header,
                                 &header_bytes);
    if (status == ZT_OK && header_bytes > st_max_header_bytes)
        status = zt_fail(ZT_ERR_INVALID_ARG,
                         "%s: header of %zu bytes exceeds the format's limit of %" PRIu64, path,
                         header_bytes, st_max_header_bytes);
    if (status == ZT_OK) {
        uint8_t length_field[ST_LENGTH_PREFIX_BYTES];
        for (int i = 0; i < ST_LENGTH_PREFIX_BYTES; i++)
            length_field[i] = (uint8_t)((uint64_t)header_bytes >> (8 * i));
        chunks[0] = length_field;
        chunk_bytes[0] = sizeof length_field;
        chunks[1] = header;
        chunk_bytes[1] = header_bytes;
        for (int i = 0; i < n_tensors; i++) {
            chunks[i + 2] = tensors[i].data;
            chunk_bytes[i + 2] = n_bytes[i];
        }
        status = zt_write_file_atomic(path, chunks, chunk_bytes, n_tensors + 2);
    }
    free(header);
    free(chunk_bytes);
    free(chunks);
    free(names);
    free(n_bytes);
    return status;
}
