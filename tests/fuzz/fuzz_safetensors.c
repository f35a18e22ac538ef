/* The safetensors reader on arbitrary bytes. An accepted file must hold what the reader claims:
 * names sorted and unique, sizes that agree with shape and dtype, tensors that tile the data
 * buffer exactly and hold the file's own bytes, metadata as the header spells it. Then the
 * writer must take back everything the reader accepted, and reading its file gives the same. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "io/safetensors.h"

typedef struct metadata_list {
    const char **pairs; /* key, value, ... as the harness's own JSON parse sees them */
    int n;
    cJSON *root;
} metadata_list;

static void read_metadata(const uint8_t *data, size_t size, metadata_list *out) {
    memset(out, 0, sizeof *out);
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--) header_bytes = header_bytes << 8 | data[i];
    out->root = cJSON_ParseWithLength((const char *)data + 8, (size_t)header_bytes);
    FUZZ_CHECK(out->root && size >= 8 + header_bytes, "an accepted header does not parse");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(out->root, "__metadata__");
    int n = meta ? cJSON_GetArraySize(meta) : 0;
    out->pairs = calloc((size_t)(2 * n + 1), sizeof *out->pairs);
    for (const cJSON *e = meta ? meta->child : NULL; e; e = e->next) {
        out->pairs[2 * out->n] = e->string;
        out->pairs[2 * out->n + 1] = e->valuestring;
        out->n++;
    }
}

static int by_place(const void *a, const void *b) {
    const zt_st_tensor *x = *(const zt_st_tensor *const *)a, *y = *(const zt_st_tensor *const *)b;
    if (x->data != y->data) return (uintptr_t)x->data < (uintptr_t)y->data ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

static void check_tensor(const zt_safetensors *st, int i) {
    const zt_st_tensor *t = zt_st_get(st, i);
    FUZZ_CHECK(t && t->name && zt_st_find(st, t->name) == t, "tensor %d is not found by name", i);
    if (i > 0) FUZZ_CHECK(strcmp(zt_st_get(st, i - 1)->name, t->name) < 0, "names out of order");
    FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= ZT_ST_MAX_DIMS, "rank %d", t->n_dims);
    uint64_t n_elems = 1;
    for (int d = 0; d < t->n_dims; d++) {
        FUZZ_CHECK(t->shape[d] >= 0, "'%s': negative dimension", t->name);
        n_elems *= (uint64_t)t->shape[d];
    }
    FUZZ_CHECK(n_elems == t->n_elems, "'%s': %llu elements, shape says %llu", t->name,
               (unsigned long long)t->n_elems, (unsigned long long)n_elems);
    FUZZ_CHECK(t->element_bits > 0 && (__uint128_t)t->n_bytes * 8 ==
                                          (__uint128_t)t->n_elems * (unsigned)t->element_bits,
               "'%s': %zu bytes for %llu elements of %d bits", t->name, t->n_bytes,
               (unsigned long long)t->n_elems, t->element_bits);
    zt_dtype dtype;
    int storage = !strcmp(t->dtype, "F32") || !strcmp(t->dtype, "F16") || !strcmp(t->dtype, "BF16");
    fuzz_expect_begin();
    zt_status s = zt_st_storage_dtype(t, &dtype);
    FUZZ_CHECK((s == ZT_OK) == storage, "'%s': storage dtype of %s", t->name, t->dtype);
    fuzz_expect_reported(s, "zt_st_storage_dtype");
}

/* The tensors, ordered by place, tile [data start, end of file) and hold the file's bytes. */
static void check_layout(const zt_safetensors *st, const uint8_t *data, size_t size) {
    int n = zt_st_count(st);
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--) header_bytes = header_bytes << 8 | data[i];
    size_t data_start = 8 + (size_t)header_bytes;
    if (n == 0) {
        FUZZ_CHECK(size == data_start, "no tensors but %zu data bytes", size - data_start);
        return;
    }
    const zt_st_tensor **order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = zt_st_get(st, i);
    qsort(order, (size_t)n, sizeof *order, by_place);
    uintptr_t base = (uintptr_t)order[0]->data - data_start;
    for (int i = 0; i < n; i++) {
        uintptr_t at = (uintptr_t)order[i]->data;
        uintptr_t expected = i ? (uintptr_t)order[i - 1]->data + order[i - 1]->n_bytes
                               : base + data_start;
        FUZZ_CHECK(at == expected, "'%s' does not follow the previous tensor", order[i]->name);
        size_t offset = (size_t)(at - base);
        FUZZ_CHECK(offset + order[i]->n_bytes <= size, "'%s' ends past the file", order[i]->name);
        FUZZ_CHECK(memcmp(order[i]->data, data + offset, order[i]->n_bytes) == 0,
                   "'%s' does not hold the file's bytes", order[i]->name);
    }
    const zt_st_tensor *last = order[n - 1];
    FUZZ_CHECK((uintptr_t)last->data + last->n_bytes == base + size, "data does not end the file");
    free(order);
}

/* Writes what was read and reads it back: the same tensors, bytes and metadata. */
static void check_write_back(const zt_safetensors *st, const metadata_list *meta) {
    int n = zt_st_count(st);
    zt_st_write_tensor *out = calloc((size_t)n + 1, sizeof *out);
    for (int i = 0; i < n; i++) {
        const zt_st_tensor *t = zt_st_get(st, i);
        out[i] = (zt_st_write_tensor){t->name, t->dtype, t->n_dims, t->shape, t->data};
    }
    char path[512];
    fuzz_path(path, sizeof path, "copy.safetensors");
    fuzz_expect_begin();
    zt_status s = zt_st_write(path, out, n, meta->pairs, meta->n);
    FUZZ_CHECK(s == ZT_OK, "the writer refuses what the reader accepted: %s", zt_last_error());
    free(out);
    zt_safetensors *copy = NULL;
    s = zt_st_open(path, &copy);
    FUZZ_CHECK(s == ZT_OK, "the writer's file does not read back: %s", zt_last_error());
    FUZZ_CHECK(zt_st_count(copy) == n, "%d tensors read back, %d written", zt_st_count(copy), n);
    for (int i = 0; i < n; i++) {
        const zt_st_tensor *a = zt_st_get(st, i), *b = zt_st_get(copy, i);
        FUZZ_CHECK(!strcmp(a->name, b->name) && !strcmp(a->dtype, b->dtype) &&
                       a->n_dims == b->n_dims && a->n_bytes == b->n_bytes &&
                       !memcmp(a->shape, b->shape, (size_t)a->n_dims * sizeof a->shape[0]) &&
                       !memcmp(a->data, b->data, a->n_bytes),
                   "tensor '%s' changed on the way through the writer", a->name);
    }
    for (int i = 0; i < meta->n; i++) {
        const char *value = zt_st_metadata(copy, meta->pairs[2 * i]);
        FUZZ_CHECK(value && !strcmp(value, meta->pairs[2 * i + 1]), "metadata '%s' lost",
                   meta->pairs[2 * i]);
    }
    zt_st_close(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_put("input.safetensors", data, size, path, sizeof path);
    zt_safetensors *st = NULL;
    fuzz_expect_begin();
    zt_status s = zt_st_open(path, &st);
    fuzz_expect_reported(s, "zt_st_open");
    if (s != ZT_OK) {
        FUZZ_CHECK(st == NULL, "a failed open handed out a reader");
        return 0;
    }
    for (int i = 0; i < zt_st_count(st); i++) check_tensor(st, i);
    check_layout(st, data, size);
    metadata_list meta;
    read_metadata(data, size, &meta);
    for (int i = 0; i < meta.n; i++) {
        const char *value = zt_st_metadata(st, meta.pairs[2 * i]);
        FUZZ_CHECK(value && !strcmp(value, meta.pairs[2 * i + 1]), "metadata '%s' differs",
                   meta.pairs[2 * i]);
    }
    check_write_back(st, &meta);
    free(meta.pairs);
    cJSON_Delete(meta.root);
    zt_st_close(st);
    return 0;
}
