/* Reading reference arrays from a fixture's reference.safetensors (written by
 * tools/make_fixtures.py with torch + transformers). */
#ifndef ZT_TEST_FIXTURE_H
#define ZT_TEST_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static inline const char *fixture_root(void) {
    const char *root = getenv("ZT_FIXTURES");
    return root ? root : "tests/fixtures";
}

static inline void fixture_path(char *buf, size_t size, const char *dir, const char *file) {
    if (file)
        snprintf(buf, size, "%s/%s/%s", fixture_root(), dir, file);
    else
        snprintf(buf, size, "%s/%s", fixture_root(), dir);
}

/* Copies tensor `name` (dtype I32 or F32 as asked) into a new array; exits the test if absent,
 * since every later check depends on it. */
static inline void *fixture_array(const zt_safetensors *st, const char *name, const char *dtype,
                                  size_t *n_elems, int64_t *shape) {
    const zt_st_tensor *t = zt_st_find(st, name);
    if (!t || strcmp(t->dtype, dtype) != 0) {
        fprintf(stderr, "FATAL: fixture tensor %s (%s) missing or of another dtype\n", name, dtype);
        exit(1);
    }
    void *data = malloc(t->n_bytes ? t->n_bytes : 1);
    memcpy(data, t->data, t->n_bytes);
    if (n_elems) *n_elems = t->n_elems;
    if (shape)
        for (int d = 0; d < t->n_dims; d++)
            shape[d] = t->shape[d];
    return data;
}

/* A fixture's LM batch as tools/make_fixtures.py stores it: (B,T) ids, attention mask and labels
 * (-100 where no target). */
typedef struct fixture_lm_batch {
    int batch, seq_len;
    int32_t *ids, *mask, *labels;
} fixture_lm_batch;

static inline fixture_lm_batch fixture_lm_batch_read(const zt_safetensors *st) {
    fixture_lm_batch b;
    int64_t shape[2];
    b.ids = (int32_t *)fixture_array(st, "lm_input_ids", "I32", NULL, shape);
    b.mask = (int32_t *)fixture_array(st, "lm_attention_mask", "I32", NULL, NULL);
    b.labels = (int32_t *)fixture_array(st, "lm_labels", "I32", NULL, NULL);
    b.batch = (int)shape[0];
    b.seq_len = (int)shape[1];
    return b;
}

static inline void fixture_lm_batch_free(fixture_lm_batch *b) {
    free(b->ids);
    free(b->mask);
    free(b->labels);
}

#endif
