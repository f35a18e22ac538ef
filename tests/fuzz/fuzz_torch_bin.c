/* PyTorch checkpoints on arbitrary bytes. An input starting "PK" is a whole pytorch_model.bin
 * (zip reader, data.pkl's CRC, unpickler, storages); any other input goes straight to the
 * restricted unpickler, since the CRC would stop nearly every mutation of an archived pickle.
 * An accepted archive must give a table that holds what it claims (names sorted and unique,
 * sizes that agree with shape and dtype) and that the safetensors writer takes back unchanged;
 * an accepted pickle must name only tensors with sane names, ranks and storages. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "io/pickle_read.h"
#include "io/safetensors.h"

static void check_table(const zt_safetensors *st) {
    int n = zt_st_count(st);
    for (int i = 0; i < n; i++) {
        const zt_st_tensor *t = zt_st_get(st, i);
        FUZZ_CHECK(t && t->name && zt_st_find(st, t->name) == t, "tensor %d not found by name", i);
        if (i > 0)
            FUZZ_CHECK(strcmp(zt_st_get(st, i - 1)->name, t->name) < 0, "names out of order");
        FUZZ_CHECK(t->name[0] && fuzz_utf8_valid((const uint8_t *)t->name, strlen(t->name)),
                   "tensor %d: empty or non-UTF-8 name", i);
        FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= ZT_ST_MAX_DIMS, "'%s': rank %d", t->name,
                   t->n_dims);
        __uint128_t n_elems = 1;
        for (int d = 0; d < t->n_dims; d++) {
            FUZZ_CHECK(t->shape[d] >= 0, "'%s': negative dimension", t->name);
            n_elems *= (uint64_t)t->shape[d];
        }
        FUZZ_CHECK(n_elems == t->n_elems, "'%s': element count", t->name);
        FUZZ_CHECK(t->element_bits > 0 &&
                       (__uint128_t)t->n_bytes * 8 == n_elems * (unsigned)t->element_bits,
                   "'%s': %zu bytes for its shape", t->name, t->n_bytes);
        volatile uint8_t sum = 0; /* every byte is readable (ASan checks the mapping) */
        for (size_t b = 0; b < t->n_bytes; b++)
            sum ^= t->data[b];
        (void)sum;
    }
    /* written as safetensors and read back: the same tensors */
    zt_st_write_tensor *out = calloc((size_t)n + 1, sizeof *out);
    for (int i = 0; i < n; i++) {
        const zt_st_tensor *t = zt_st_get(st, i);
        out[i] = (zt_st_write_tensor){t->name, t->dtype, t->n_dims, t->shape, t->data};
    }
    char path[512];
    fuzz_path(path, sizeof path, "copy.safetensors");
    fuzz_expect_begin();
    zt_status s = zt_st_write(path, out, n, NULL, 0);
    free(out);
    FUZZ_CHECK(s == ZT_OK, "the writer refuses what the reader accepted: %s", zt_last_error());
    zt_safetensors *copy = NULL;
    s = zt_st_open(path, &copy);
    FUZZ_CHECK(s == ZT_OK && zt_st_count(copy) == n, "the copy does not read back: %s",
               zt_last_error());
    for (int i = 0; i < n; i++) {
        const zt_st_tensor *a = zt_st_get(st, i), *b = zt_st_get(copy, i);
        FUZZ_CHECK(!strcmp(a->name, b->name) && !strcmp(a->dtype, b->dtype) &&
                       a->n_bytes == b->n_bytes && !memcmp(a->data, b->data, a->n_bytes),
                   "tensor '%s' changed on the way through the writer", a->name);
    }
    zt_st_close(copy);
}

static void check_state_dict(const zt_pickle_state_dict *sd) {
    for (int i = 0; i < sd->n_storages; i++) {
        const zt_pickle_storage *s = &sd->storages[i];
        FUZZ_CHECK(s->key && s->key[0] && strlen(s->key) <= 64 && !strchr(s->key, '/') &&
                       !strchr(s->key, '.'),
                   "storage %d: key", i);
        FUZZ_CHECK(s->element_bytes > 0 && s->numel <= INT64_MAX / (uint64_t)s->element_bytes,
                   "storage '%s': size", s->key);
    }
    for (int i = 0; i < sd->n_tensors; i++) {
        const zt_pickle_tensor *t = &sd->tensors[i];
        FUZZ_CHECK(t->name && t->name[0] &&
                       fuzz_utf8_valid((const uint8_t *)t->name, strlen(t->name)),
                   "tensor %d: name", i);
        FUZZ_CHECK(t->storage >= 0 && t->storage < sd->n_storages, "'%s': storage %d", t->name,
                   t->storage);
        FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= ZT_PICKLE_MAX_DIMS && t->storage_offset >= 0,
                   "'%s': rank or offset", t->name);
        for (int d = 0; d < t->n_dims; d++)
            FUZZ_CHECK(t->shape[d] >= 0 && t->stride[d] >= 0, "'%s': negative size or stride",
                       t->name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
        fuzz_put("pytorch_model.bin", data, size, NULL, 0);
        zt_safetensors *st = NULL;
        fuzz_expect_begin();
        zt_status s = zt_st_open_dir(fuzz_dir(), &st);
        fuzz_expect_reported(s, "zt_st_open_dir");
        if (s != ZT_OK) {
            FUZZ_CHECK(st == NULL, "a failed open handed out a reader");
            return 0;
        }
        check_table(st);
        zt_st_close(st);
        return 0;
    }
    zt_pickle_state_dict sd;
    fuzz_expect_begin();
    zt_status s = zt_pickle_read_state_dict("fuzz.pkl", data, size, &sd);
    fuzz_expect_reported(s, "zt_pickle_read_state_dict");
    if (s != ZT_OK) {
        FUZZ_CHECK(sd.n_tensors == 0 && sd.tensors == NULL && sd.storages == NULL,
                   "a failed read left a state dict");
        return 0;
    }
    check_state_dict(&sd);
    zt_pickle_state_dict_free(&sd);
    return 0;
}
