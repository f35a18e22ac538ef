/* The safetensors writer (docs/spec.md §2.1): checks every tensor and metadata entry before
 * writing anything, builds the header JSON with offsets in the given tensor order, and writes
 * length field, header and data in one atomic replace (atomic_file.h), so a failed or
 * interrupted write never leaves a partial file under the final name. */
#include "io/safetensors_internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/alloc.h"
#include "io/atomic_file.h"

enum { ST_HEADER_ALIGNMENT = 8 };

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
    if (zt_st_utf8_invalid_at((const uint8_t *)text, n) != n)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s \"%s\" is not valid UTF-8", path, what, text);
    return ZT_OK;
}

/* Validates one tensor to write and returns its byte size. */
static zt_status st_check_write_tensor(const char *path, int index, const zt_st_write_tensor *t,
                                       size_t *n_bytes) {
    ZT_TRY(st_check_write_string(path, "tensor name", index, t->name));
    if (strcmp(t->name, "__metadata__") == 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: a tensor cannot be named \"__metadata__\"", path);
    int bits = t->dtype ? zt_st_dtype_bits(t->dtype) : 0;
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

    size_t *n_bytes = zt_calloc((size_t)n_tensors + 1, sizeof *n_bytes);
    const char **names =
        zt_calloc((size_t)(n_tensors > n_metadata ? n_tensors : n_metadata) + 1, sizeof *names);
    const void **chunks = zt_calloc((size_t)n_tensors + 2, sizeof *chunks);
    size_t *chunk_bytes = zt_calloc((size_t)n_tensors + 2, sizeof *chunk_bytes);
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
