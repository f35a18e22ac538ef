/* Deterministic test inputs for the op tests (splitmix64): the same sequence on every machine,
 * reseeded by assigning rng_state. */
#ifndef ZT_TESTS_OPS_RNG_H
#define ZT_TESTS_OPS_RNG_H

#include <stdint.h>

static uint64_t rng_state;

static inline uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi), from the top 53 bits. */
static inline float rng_float(double lo, double hi) {
    double unit = (double)(rng_next() >> 11) / 9007199254740992.0; /* [0, 1) */
    return (float)(lo + (hi - lo) * unit);
}

static inline int rng_int(int n) {
    return (int)(rng_next() % (uint64_t)n);
}

#endif
