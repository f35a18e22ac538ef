#include "data/sampler.h"

#include <stdlib.h>

#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "core/status.h"

zt_status zt_sampler_init(zt_sampler *s, uint64_t seed, int n_examples, int batch_size) {
    s->seed = seed;
    s->n_examples = n_examples;
    s->batch_size = batch_size;
    s->cached_epoch = -1;
    s->permutation = zt_malloc((size_t)n_examples * sizeof *s->permutation);
    if (!s->permutation) return zt_fail(ZT_ERR_NOMEM, "sampler permutation of %d", n_examples);
    return ZT_OK;
}

void zt_sampler_free(zt_sampler *s) {
    free(s->permutation);
    s->permutation = NULL;
}

/* Fisher-Yates with a counter-based generator: draw i of epoch e is mix(seed, e, i). */
static void build_epoch(zt_sampler *s, long epoch) {
    int n = s->n_examples;
    for (int i = 0; i < n; i++) s->permutation[i] = i;
    uint64_t key = zt_mix64(s->seed ^ zt_mix64((uint64_t)epoch + 0x632BE59BD9B4E019ull));
    for (int i = n - 1; i > 0; i--) {
        uint64_t r = zt_mix64(key + (uint64_t)i);
        int j = (int)(r % (uint64_t)(i + 1));
        int t = s->permutation[i];
        s->permutation[i] = s->permutation[j];
        s->permutation[j] = t;
    }
    s->cached_epoch = epoch;
}

void zt_sampler_batch(zt_sampler *s, int step, int *indices) {
    for (int i = 0; i < s->batch_size; i++) {
        long position = (long)step * s->batch_size + i;
        long epoch = position / s->n_examples;
        if (epoch != s->cached_epoch) build_epoch(s, epoch);
        indices[i] = s->permutation[position % s->n_examples];
    }
}
