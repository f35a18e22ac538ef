/* Which examples make up step k's batch: a pure function of (seed, k), so a resumed run sees
 * exactly the batches the uninterrupted one would have. Each epoch is a fresh permutation. */
#ifndef ZT_DATA_SAMPLER_H
#define ZT_DATA_SAMPLER_H

#include <stdint.h>

#include "zotune.h"

typedef struct zt_sampler {
    uint64_t seed;
    int n_examples;
    int batch_size;
    long cached_epoch;
    int *permutation; /* (n_examples) for cached_epoch */
} zt_sampler;

zt_status zt_sampler_init(zt_sampler *s, uint64_t seed, int n_examples, int batch_size);
void zt_sampler_free(zt_sampler *s);
/* indices (batch_size) of step k. */
void zt_sampler_batch(zt_sampler *s, int step, int *indices);

#endif
