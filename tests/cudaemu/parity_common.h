/* What the parity tests share (op_parity.h for the forward ops, zo_parity.h for the perturbation
 * ops): seeded random inputs, guarded backend buffers, comparison and the per-op summary. Used by
 * tests/cudaemu (the CUDA kernels under the host executor) and tests/gpu (the real CUDA backend);
 * include it after zt_test.h. Functions are static inline, so a program may use any subset.
 */
#ifndef ZT_TEST_PARITY_COMMON_H
#define ZT_TEST_PARITY_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "common/dtype.h"
#include "core/status.h"
#include "zt_test.h"

#define ZT_PARITY_GUARD_BYTES 256
#define ZT_PARITY_ABSENT (-1) /* a weight dtype meaning "no such weight" */

// ---------------------------------------------------------------------------------------------
// Random inputs (xorshift64*: reproducible from the printed seed)

typedef struct zt_prng {
    uint64_t state;
} zt_prng;

static inline uint64_t zt_prng_next(zt_prng *r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 0x2545f4914f6cdd1dull;
}

/* Uniform in [-1, 1). */
static inline float zt_prng_uniform(zt_prng *r) {
    return (float)((double)(zt_prng_next(r) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static inline int zt_prng_below(zt_prng *r, int n) {
    return (int)(zt_prng_next(r) % (uint64_t)n);
}

static inline float *zt_random_floats(zt_prng *r, size_t n, float scale, float offset) {
    float *x = (float *)malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++)
        x[i] = offset + scale * zt_prng_uniform(r);
    return x;
}

/* A weight of n elements in `dtype` (values exactly representable there), and its f32 copy. */
static inline void *zt_random_weight(zt_prng *r, size_t n, zt_dtype dtype, float scale) {
    void *w = malloc(n * zt_dtype_size(dtype) + 1);
    for (size_t i = 0; i < n; i++) {
        float value = scale * zt_prng_uniform(r);
        if (dtype == ZT_F32)
            ((float *)w)[i] = value;
        else if (dtype == ZT_F16)
            ((uint16_t *)w)[i] = zt_f32_to_f16(value);
        else
            ((uint16_t *)w)[i] = zt_f32_to_bf16(value);
    }
    return w;
}

static inline const char *zt_weight_name(int dtype) {
    return dtype == ZT_PARITY_ABSENT ? "none" : zt_dtype_name((zt_dtype)dtype);
}

// ---------------------------------------------------------------------------------------------
// Guarded backend buffers

typedef struct zt_pbuf {
    zt_backend *be;
    uint8_t *base; /* backend memory: guard | payload | guard */
    size_t n_bytes;
    const char *what;
} zt_pbuf;

static inline uint8_t zt_guard_byte(size_t i) {
    return (uint8_t)(0xa5u ^ (i * 29u));
}

/* A payload of n_bytes with guards, holding `init` (NaN bytes when init is NULL). */
static inline int zt_pbuf_make(zt_backend *be, zt_pbuf *b, const void *init, size_t n_bytes,
                               const char *what) {
    const size_t total = n_bytes + 2 * ZT_PARITY_GUARD_BYTES;
    b->be = be;
    b->base = NULL;
    b->n_bytes = n_bytes;
    b->what = what;
    void *base = NULL;
    zt_status s = be->ops->alloc(be, total, ZT_MEM_ACTIVATIONS, &base);
    ZT_CHECK(s == ZT_OK, "%s: alloc of %s (%zu bytes): %s", be->ops->name, what, total,
             zt_last_error());
    if (s != ZT_OK) return 0;
    b->base = (uint8_t *)base;
    uint8_t *staging = (uint8_t *)malloc(total);
    for (size_t i = 0; i < ZT_PARITY_GUARD_BYTES; i++) {
        staging[i] = zt_guard_byte(i);
        staging[ZT_PARITY_GUARD_BYTES + n_bytes + i] = zt_guard_byte(i + 7);
    }
    if (init)
        memcpy(staging + ZT_PARITY_GUARD_BYTES, init, n_bytes);
    else
        memset(staging + ZT_PARITY_GUARD_BYTES, 0xff, n_bytes);
    s = be->ops->upload(be, b->base, staging, total);
    ZT_CHECK(s == ZT_OK, "%s: upload of %s: %s", be->ops->name, what, zt_last_error());
    free(staging);
    return s == ZT_OK;
}

static inline void *zt_pbuf_ptr(const zt_pbuf *b) {
    return b->base ? b->base + ZT_PARITY_GUARD_BYTES : NULL;
}

/* Downloads the payload into host_out (may be NULL) and checks both guards. */
static inline void zt_pbuf_fetch(zt_pbuf *b, void *host_out, const char *case_name) {
    if (b->base == NULL) return;
    const size_t total = b->n_bytes + 2 * ZT_PARITY_GUARD_BYTES;
    uint8_t *staging = (uint8_t *)malloc(total);
    zt_status s = b->be->ops->download(b->be, staging, b->base, total);
    ZT_CHECK(s == ZT_OK, "%s: download of %s: %s", b->be->ops->name, b->what, zt_last_error());
    if (s == ZT_OK) {
        size_t bad_before = 0, bad_after = 0;
        for (size_t i = 0; i < ZT_PARITY_GUARD_BYTES; i++) {
            bad_before += staging[i] != zt_guard_byte(i);
            bad_after += staging[ZT_PARITY_GUARD_BYTES + b->n_bytes + i] != zt_guard_byte(i + 7);
        }
        ZT_CHECK(bad_before == 0 && bad_after == 0,
                 "%s %s: %zu guard bytes before and %zu after %s were overwritten",
                 b->be->ops->name, case_name, bad_before, bad_after, b->what);
        if (host_out) memcpy(host_out, staging + ZT_PARITY_GUARD_BYTES, b->n_bytes);
    }
    free(staging);
}

/* For inputs: guards intact and payload unchanged. */
static inline void zt_pbuf_check_input(zt_pbuf *b, const void *expected, const char *case_name) {
    if (b->base == NULL) return;
    void *now = malloc(b->n_bytes + 1);
    zt_pbuf_fetch(b, now, case_name);
    ZT_CHECK(memcmp(now, expected, b->n_bytes) == 0, "%s %s: input %s was modified",
             b->be->ops->name, case_name, b->what);
    free(now);
}

static inline void zt_pbuf_free(zt_pbuf *b) {
    if (b->base)
        b->be->ops->free(b->be, b->base, b->n_bytes + 2 * ZT_PARITY_GUARD_BYTES,
                         ZT_MEM_ACTIVATIONS);
    b->base = NULL;
}

// ---------------------------------------------------------------------------------------------
// Comparison and the per-op summary

typedef struct zt_parity_stat {
    const char *op;
    double bound;
    double worst_nmse;
    int n_cases;
} zt_parity_stat;

static zt_parity_stat zt_parity_stats[16];
static int zt_parity_n_stats;

static inline zt_parity_stat *zt_parity_stat_for(const char *op, double bound) {
    for (int i = 0; i < zt_parity_n_stats; i++)
        if (strcmp(zt_parity_stats[i].op, op) == 0) return &zt_parity_stats[i];
    if (zt_parity_n_stats == (int)(sizeof zt_parity_stats / sizeof zt_parity_stats[0])) {
        fprintf(stderr, "FATAL: more than %d ops in the parity summary\n", zt_parity_n_stats);
        exit(1);
    }
    zt_parity_stat *s = &zt_parity_stats[zt_parity_n_stats++];
    s->op = op;
    s->bound = bound;
    s->worst_nmse = 0.0;
    s->n_cases = 0;
    return s;
}

/* sum (got - want)^2 / sum want^2, in double (the plain sum when want is all zero). */
static inline double zt_nmse(const float *got, const float *want, size_t n) {
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        err += d * d;
        ref += (double)want[i] * want[i];
    }
    return ref > 0.0 ? err / ref : err;
}

/* got (dut) against want (ref): both finite everywhere, NMSE within bound. */
static inline void zt_parity_compare(const char *op, const char *case_name, const float *got,
                                     const float *want, size_t n, double bound) {
    size_t nonfinite = 0, first_bad = n;
    double err = 0.0, ref = 0.0, max_abs = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) {
            if (nonfinite++ == 0) first_bad = i;
            continue;
        }
        double d = (double)got[i] - (double)want[i];
        err += d * d;
        ref += (double)want[i] * want[i];
        if (fabs(d) > max_abs) max_abs = fabs(d);
    }
    /* Non-finite values make the case fail whatever the rest says: report it as inf. */
    double nmse = nonfinite ? INFINITY : ref > 0.0 ? err / ref : err;
    printf("  %-16s %-58s nmse %.2e (bound %.0e) max|diff| %.2e\n", op, case_name, nmse, bound,
           max_abs);
    ZT_CHECK(nonfinite == 0, "%s %s: %zu non-finite values, first at %zu (dut %g, ref %g)", op,
             case_name, nonfinite, first_bad, first_bad < n ? got[first_bad] : 0.0,
             first_bad < n ? want[first_bad] : 0.0);
    ZT_CHECK(nmse <= bound, "%s %s: nmse %.3e > %.0e", op, case_name, nmse, bound);
    if (nmse > bound || nonfinite) {
        int shown = 0;
        for (size_t i = 0; i < n && shown < 5; i++) {
            if (got[i] == want[i]) continue;
            fprintf(stderr, "    [%zu] dut %.9g ref %.9g\n", i, got[i], want[i]);
            shown++;
        }
    }
    zt_parity_stat *s = zt_parity_stat_for(op, bound);
    if (nmse > s->worst_nmse) s->worst_nmse = nmse;
    s->n_cases++;
}

/* A case whose op failed on either side counts as the worst possible result. */
static inline void zt_parity_case_failed(const char *op, double bound) {
    zt_parity_stat *s = zt_parity_stat_for(op, bound);
    s->worst_nmse = INFINITY;
    s->n_cases++;
}

/* Both backends must fail alike: same status, same message. */
static inline void zt_parity_same_error(const char *op, const char *case_name, zt_status ref_status,
                                        const char *ref_text, zt_status dut_status,
                                        const char *dut_text) {
    printf("  %-16s %-58s error: %s\n", op, case_name, dut_text);
    ZT_CHECK(ref_status != ZT_OK && dut_status == ref_status, "%s %s: statuses ref %d dut %d", op,
             case_name, (int)ref_status, (int)dut_status);
    ZT_CHECK(strcmp(ref_text, dut_text) == 0, "%s %s: messages differ:\n    ref: %s\n    dut: %s",
             op, case_name, ref_text, dut_text);
}

static inline double zt_parity_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
