/* Parity of the perturbation ops (perturb, z_sumsq, update) of a CUDA backend under test ("dut")
 * with the CPU backend (the reference). Shared by tests/cudaemu (the kernels under the host
 * executor) and tests/gpu (a real GPU); include it in one .c per program, after zt_test.h, and
 * link a build of zo_probe.cu that matches the backend.
 *
 * What must hold, and why (kernels/cuda/z_terms.cuh):
 *   - Rademacher z, the SR bits and every f32 operation are the same on both sides (the same
 *     Philox source, the CPU's operation order with no contraction), so perturb and update are
 *     bit-identical, in every dtype, rule and step, on any device.
 *   - Gaussian z in the host executor is bit-identical too: the kernels run host sinf / cosf
 *     there, as the CPU does. So in the executor every case is compared bit for bit.
 *   - Gaussian z on a GPU comes from __sincosf: per element
 *         |z_gpu - z_cpu| <= ZT_ZO_SINCOS_ERR * radius + 4 ulp(z)                       (B_z)
 *     with radius = sqrt(-2 ln u) of the element's pair. The CUDA Math API documents __sincosf's
 *     absolute error as 2^-21.41 on [-pi, pi], "larger otherwise"; the angle lies in (0, 2 pi],
 *     so ZT_ZO_SINCOS_ERR = 2^-19 allows 5.3 times the documented figure for (pi, 2 pi] (an
 *     allowance, not a measurement: no GPU was at hand; the probe line "engine normals vs CPU"
 *     prints the measured max/bound). The 4 ulp cover device logf (1 ulp) and the rounding of
 *     sqrt and of the product. An indexing bug moves z by O(1), 10^5 of these bounds. From B_z:
 *       perturb  |d| <= sum_i |a_i| B_z,i (1 + 2^-20) + (2 n_terms + 1) ulp_f32(M) + ulp_dtype(M)
 *                M = |src| + sum_i |a_i z_i|: each rounding of the sum may go the other way
 *                once, and the store may land on the neighbouring f16 / bf16 value;
 *       update   (SGD, one step) the same with lr * (...) and two more roundings;
 *       z_sumsq  |d| <= sum_j (2 |z_j| B_z,j + B_z,j^2) + (order terms below).
 *     Update rules other than SGD, and SR, are checked bit for bit with Rademacher z on a GPU:
 *     their arithmetic does not depend on where g came from, and the Gaussian g is checked by
 *     perturb and SGD.
 *   - z_sumsq sums in another order than the CPU (fixed chunks and trees instead of ascending
 *     j); each z_j^2 is exact in double, so the two sums differ by their rounding only:
 *         |d| <= (n_ascending + n_tree) * 2^-53 * S,
 *     n_ascending = min(n, 2^14) + ceil(n / 2^14) additions on the CPU's longest path, n_tree =
 *     64 + 8 + ceil(n_chunks / 256) + 8 on the kernel's. The kernel's sum depends on n alone: the
 *     probe runs it on grids of 1, 2, 3 and 7 blocks and wants the same bits.
 * Every buffer sits between guard bands that must come back untouched; inputs must come back
 * unchanged; outputs start as NaN bytes. Error cases must fail alike (status and message) and
 * write nothing.
 */
#ifndef ZT_TEST_ZO_PARITY_H
#define ZT_TEST_ZO_PARITY_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "core/status.h"
#include "parity_common.h"
#include "zo_probe.h"
#include "zt_test.h"

#define ZT_ZO_SINCOS_ERR 0x1p-19

typedef struct zt_zo_mode {
    int gauss_exact; /* 1: Gaussian z must be bit-identical (host executor); 0: B_z (a GPU) */
} zt_zo_mode;

// ---------------------------------------------------------------------------------------------
// Numbers

/* Spacing of `dtype` values at magnitude |x| (the subnormal spacing below the normal range). */
static inline double zt_zo_ulp(double x, zt_dtype dtype) {
    const int precision = dtype == ZT_F32 ? 24 : dtype == ZT_F16 ? 11 : 8;
    const double min_normal = dtype == ZT_F16 ? 0x1p-14 : 0x1p-126;
    x = fabs(x);
    if (!(x >= min_normal)) x = min_normal;
    int exponent;
    (void)frexp(x, &exponent); /* x = m 2^exponent, m in [0.5, 1) */
    return ldexp(1.0, exponent - precision);
}

static inline int zt_zo_same(const void *a, const void *b, zt_dtype dtype, size_t i) {
    const size_t size = zt_dtype_size(dtype);
    return memcmp((const uint8_t *)a + i * size, (const uint8_t *)b + i * size, size) == 0;
}

/* n values uniform in (-scale, scale) stored in dtype, with the awkward ones at the front: -0,
 * +0, the largest finite f16 (or a large value), a subnormal of the dtype. */
static inline void *zt_zo_random_tensor(zt_prng *r, zt_dtype dtype, size_t n, float scale) {
    void *data = malloc(n * zt_dtype_size(dtype) + 1);
    for (size_t i = 0; i < n; i++)
        zt_store_rne(data, dtype, i, scale * zt_prng_uniform(r));
    const float specials[4] = {-0.0f, 0.0f, dtype == ZT_F16 ? 65504.0f : 3.0e4f,
                               dtype == ZT_F16 ? -3.0e-6f : 1.0e-39f};
    for (size_t i = 1; i < 5 && i < n; i++)
        zt_store_rne(data, dtype, i, specials[i - 1]);
    return data;
}

/* The pair radius sqrt(-2 ln u) of element j of key's z (the CPU's arithmetic). */
static inline float zt_zo_radius(uint64_t key, uint64_t j) {
    const zt_u32x4 bits = zt_z_bits_block4(key, j / 4);
    const uint32_t u_bits = j % 4 < 2 ? bits.x : bits.z;
    return sqrtf(-2.0f * logf(zt_box_muller_u(u_bits)));
}

/* B_z of one Gaussian element on a GPU (the top of this file). */
static inline double zt_zo_gauss_bound(uint64_t key, uint64_t j, float z) {
    return ZT_ZO_SINCOS_ERR * zt_zo_radius(key, j) + 4.0 * zt_zo_ulp(z, ZT_F32);
}

/* For element j of the perturbation p of tensor_id: sum_i |a_i| B_z,i (returned) and
 * *magnitude = sum_i |a_i z_i| (CPU z). */
static inline double zt_zo_g_bound(const zt_perturbation *p, uint32_t tensor_id, uint64_t j,
                                   double *magnitude) {
    double bound = 0.0, sum = 0.0;
    for (int i = 0; i < p->n_terms; i++) {
        const uint64_t key = zt_tensor_key(p->terms[i].seed, tensor_id);
        const float a = p->terms[i].coeff * p->z_scale;
        const float z = zt_z_gauss_at(key, j);
        bound += fabs((double)a) * zt_zo_gauss_bound(key, j, z);
        sum += fabs((double)a * z);
    }
    *magnitude = sum;
    return bound;
}

// ---------------------------------------------------------------------------------------------
// Per-op summary

typedef struct zt_zo_stat {
    const char *op;
    int n_cases, n_bitwise; /* cases, and those whose output came back bit-identical */
    double worst_ratio;     /* max |dut - ref| / bound over the cases with a bound */
    double worst_ulps;      /* max |dut - ref| in ulps of the stored dtype */
} zt_zo_stat;

static zt_zo_stat zt_zo_stats[8];
static int zt_zo_n_stats;

static inline zt_zo_stat *zt_zo_stat_for(const char *op) {
    for (int i = 0; i < zt_zo_n_stats; i++)
        if (strcmp(zt_zo_stats[i].op, op) == 0) return &zt_zo_stats[i];
    if (zt_zo_n_stats == (int)(sizeof zt_zo_stats / sizeof zt_zo_stats[0])) {
        fprintf(stderr, "FATAL: more than %d ops in the zo summary\n", zt_zo_n_stats);
        exit(1);
    }
    zt_zo_stat *s = &zt_zo_stats[zt_zo_n_stats++];
    memset(s, 0, sizeof *s);
    s->op = op;
    return s;
}

static inline void zt_zo_record(const char *op, int bitwise, double ratio, double ulps) {
    zt_zo_stat *s = zt_zo_stat_for(op);
    s->n_cases++;
    s->n_bitwise += bitwise;
    if (!(ratio <= s->worst_ratio)) s->worst_ratio = ratio; /* NaN sticks */
    if (!(ulps <= s->worst_ulps)) s->worst_ulps = ulps;
}

static inline const char *zt_zo_dist_name(zt_dist dist) {
    return dist == ZT_DIST_GAUSSIAN ? "gauss" : "rademacher";
}

/* n_terms random directions: distinct seeds, coefficients of either sign in [0.25, 1.25). */
static inline zt_direction *zt_zo_random_terms(zt_prng *r, int n_terms) {
    zt_direction *terms =
        (zt_direction *)malloc((size_t)(n_terms > 0 ? n_terms : 1) * sizeof *terms);
    for (int i = 0; i < n_terms; i++) {
        terms[i].seed = zt_prng_next(r);
        const float magnitude = 0.75f + 0.5f * zt_prng_uniform(r);
        terms[i].coeff = (zt_prng_next(r) & 1) ? -magnitude : magnitude;
    }
    return terms;
}

// ---------------------------------------------------------------------------------------------
// perturb

typedef struct zt_zo_perturb_case {
    zt_dtype src_dtype, dst_dtype;
    int in_place; /* dst = src (same dtype) */
    size_t n;
    uint64_t offset;
    int n_terms;
    zt_dist dist;
} zt_zo_perturb_case;

/* Runs perturb on one backend; out receives dst (n, dst dtype). */
static inline zt_status zt_zo_run_perturb(zt_backend *be, const zt_zo_perturb_case *c,
                                          const void *src, const zt_perturbation *p,
                                          uint32_t tensor_id, void *out, const char *name) {
    const size_t src_bytes = c->n * zt_dtype_size(c->src_dtype);
    const size_t dst_bytes = c->n * zt_dtype_size(c->dst_dtype);
    zt_pbuf b_src = {0}, b_dst = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_src, src, src_bytes, "src") &&
             (c->in_place || zt_pbuf_make(be, &b_dst, NULL, dst_bytes, "dst"));
    if (ok) {
        void *dst = c->in_place ? zt_pbuf_ptr(&b_src) : zt_pbuf_ptr(&b_dst);
        zt_weight w = {zt_pbuf_ptr(&b_src), c->src_dtype};
        s = be->ops->perturb(be, dst, c->dst_dtype, w, tensor_id, c->offset, c->n, p);
        ZT_CHECK(s == ZT_OK, "%s perturb %s: %s", be->ops->name, name, zt_last_error());
        if (c->in_place) {
            zt_pbuf_fetch(&b_src, out, name);
        } else {
            zt_pbuf_fetch(&b_dst, out, name);
            zt_pbuf_check_input(&b_src, src, name);
        }
    }
    zt_pbuf_free(&b_src);
    zt_pbuf_free(&b_dst);
    return s;
}

static inline void zt_zo_compare_perturb(const zt_zo_perturb_case *c, const zt_perturbation *p,
                                         uint32_t tensor_id, const void *src, const void *got,
                                         const void *want, const zt_zo_mode *mode,
                                         const char *name) {
    const int exact = mode->gauss_exact || c->dist == ZT_DIST_RADEMACHER || c->n_terms == 0;
    size_t n_diff = 0, first_diff = c->n;
    double worst_ratio = 0.0, worst_ulps = 0.0;
    for (size_t j = 0; j < c->n; j++) {
        if (zt_zo_same(got, want, c->dst_dtype, j)) continue;
        if (n_diff++ == 0) first_diff = j;
        const double g = zt_load_f32(got, c->dst_dtype, j), w = zt_load_f32(want, c->dst_dtype, j);
        const double diff = fabs(g - w);
        double magnitude = 0.0;
        const double g_bound = c->dist == ZT_DIST_GAUSSIAN
                                   ? zt_zo_g_bound(p, tensor_id, c->offset + j, &magnitude)
                                   : 0.0;
        magnitude += fabs((double)zt_load_f32(src, c->src_dtype, j));
        const double bound = g_bound * (1.0 + 0x1p-20) +
                             (2.0 * c->n_terms + 1.0) * zt_zo_ulp(magnitude, ZT_F32) +
                             zt_zo_ulp(magnitude, c->dst_dtype);
        const double ratio = diff / bound, ulps = diff / zt_zo_ulp(w, c->dst_dtype);
        if (!(ratio <= worst_ratio)) worst_ratio = ratio;
        if (!(ulps <= worst_ulps)) worst_ulps = ulps;
    }
    printf("  %-9s %-66s %s: %zu of %zu differ, max %.2g ulp, max/bound %.2g\n", "perturb", name,
           exact ? "bitwise" : "bound B_z", n_diff, c->n, worst_ulps, worst_ratio);
    if (exact) {
        ZT_CHECK(n_diff == 0, "perturb %s: %zu elements differ, first [%zu] dut %.9g ref %.9g",
                 name, n_diff, first_diff,
                 first_diff < c->n ? zt_load_f32(got, c->dst_dtype, first_diff) : 0.0,
                 first_diff < c->n ? zt_load_f32(want, c->dst_dtype, first_diff) : 0.0);
    } else {
        ZT_CHECK(worst_ratio <= 1.0, "perturb %s: |dut - ref| reaches %.3g of the bound", name,
                 worst_ratio);
    }
    zt_zo_record("perturb", n_diff == 0, worst_ratio, worst_ulps);
}

static inline void zt_zo_parity_perturb(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                        const zt_zo_mode *mode) {
    const uint64_t big = (uint64_t)1 << 34;
    const zt_zo_perturb_case cases[] = {
        {ZT_F32, ZT_F32, 0, 1, 0, 1, ZT_DIST_GAUSSIAN},
        {ZT_F32, ZT_F32, 0, 5, 3, 3, ZT_DIST_RADEMACHER},
        {ZT_F16, ZT_F16, 1, 1023, 1, 2, ZT_DIST_GAUSSIAN},
        /* crosses block 65536, where the counter's subsequence wraps into the offset */
        {ZT_BF16, ZT_BF16, 1, 4097, 65533 * 4 + 2, 2, ZT_DIST_RADEMACHER},
        {ZT_BF16, ZT_BF16, 0, 4099, 65534 * 4 + 1, 1, ZT_DIST_GAUSSIAN},
        {ZT_BF16, ZT_F32, 0, 66001, 0, 1, ZT_DIST_GAUSSIAN}, /* staging a shadow copy */
        /* blocks past 2^32: the counter's second word */
        {ZT_F32, ZT_F16, 0, 3001, big + 1, 4, ZT_DIST_GAUSSIAN},
        {ZT_F16, ZT_F32, 0, 777, 7, 0, ZT_DIST_GAUSSIAN},    /* no terms: a conversion */
        {ZT_F32, ZT_BF16, 0, 1000, 5, 40, ZT_DIST_GAUSSIAN}, /* terms past the inline 32 */
        {ZT_F16, ZT_F16, 0, 129, 262141, 33, ZT_DIST_RADEMACHER},
        {ZT_F32, ZT_F32, 1, ((size_t)1 << 18) + 5, 0, 1, ZT_DIST_RADEMACHER},
        {ZT_F32, ZT_F32, 0, 70003, 2, 2, ZT_DIST_GAUSSIAN},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_zo_perturb_case *c = &cases[ci];
        char name[160];
        snprintf(name, sizeof name, "%s %s->%s%s n=%zu offset=%llu terms=%d",
                 zt_zo_dist_name(c->dist), zt_dtype_name(c->src_dtype), zt_dtype_name(c->dst_dtype),
                 c->in_place ? " in place" : "", c->n, (unsigned long long)c->offset, c->n_terms);
        const uint32_t tensor_id = (uint32_t)zt_prng_below(r, 400);
        void *src = zt_zo_random_tensor(r, c->src_dtype, c->n, 0.5f);
        zt_direction *terms = zt_zo_random_terms(r, c->n_terms);
        const zt_perturbation p = {terms, c->n_terms, c->dist, 1e-3f * (1.0f + zt_prng_uniform(r))};
        const size_t dst_bytes = c->n * zt_dtype_size(c->dst_dtype);
        void *want = malloc(dst_bytes + 1), *got = malloc(dst_bytes + 1);
        zt_status rs = zt_zo_run_perturb(ref, c, src, &p, tensor_id, want, name);
        zt_status ds = zt_zo_run_perturb(dut, c, src, &p, tensor_id, got, name);
        if (rs == ZT_OK && ds == ZT_OK)
            zt_zo_compare_perturb(c, &p, tensor_id, src, got, want, mode, name);
        else
            zt_zo_record("perturb", 0, INFINITY, INFINITY);
        free(src);
        free(terms);
        free(want);
        free(got);
    }
}

// ---------------------------------------------------------------------------------------------
// z_sumsq

/* The rounding allowance for the two summation orders (the top of this file), relative to S. */
static inline double zt_zo_sumsq_order_bound(size_t n) {
    const double chunk = 16384.0, chunks = ceil((double)n / chunk);
    const double ascending = fmin((double)n, chunk) + chunks;
    const double tree = 64.0 + 8.0 + ceil(chunks / 256.0) + 8.0;
    return (ascending + tree) * 0x1p-53;
}

static inline void zt_zo_parity_sumsq(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                      const zt_zo_mode *mode) {
    const size_t sizes[] = {1, 3, 4, 5, 4099, 16383, 16384, 16385, 100003, ((size_t)1 << 18) + 7};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int d = 0; d < 2; d++) {
            const size_t n = sizes[k];
            const zt_dist dist = d == 0 ? ZT_DIST_GAUSSIAN : ZT_DIST_RADEMACHER;
            if (dist == ZT_DIST_RADEMACHER && n > 5) continue; /* n itself; a few suffice */
            const uint64_t seed = zt_prng_next(r);
            const uint32_t tensor_id = (uint32_t)zt_prng_below(r, 1000);
            char name[96];
            snprintf(name, sizeof name, "%s n=%zu", zt_zo_dist_name(dist), n);
            double want = NAN, got = NAN;
            zt_status rs = ref->ops->z_sumsq(ref, &want, seed, tensor_id, n, dist);
            zt_status ds = dut->ops->z_sumsq(dut, &got, seed, tensor_id, n, dist);
            ZT_CHECK(rs == ZT_OK && ds == ZT_OK, "z_sumsq %s: %s", name, zt_last_error());
            if (rs != ZT_OK || ds != ZT_OK) {
                zt_zo_record("z_sumsq", 0, INFINITY, INFINITY);
                continue;
            }
            double bound = 0.0;
            if (dist == ZT_DIST_GAUSSIAN) {
                bound = zt_zo_sumsq_order_bound(n) * want;
                if (!mode->gauss_exact) {
                    const uint64_t key = zt_tensor_key(seed, tensor_id);
                    for (uint64_t j = 0; j < n; j++) {
                        const float z = zt_z_gauss_at(key, j);
                        const double b = zt_zo_gauss_bound(key, j, z);
                        bound += 2.0 * fabs((double)z) * b + b * b;
                    }
                }
            }
            const double diff = fabs(got - want);
            const double ratio = bound > 0.0 ? diff / bound : (diff == 0.0 ? 0.0 : INFINITY);
            printf("  %-9s %-66s dut %.17g ref %.17g rel %.2g, max/bound %.2g\n", "z_sumsq", name,
                   got, want, want > 0.0 ? diff / want : diff, ratio);
            if (dist == ZT_DIST_RADEMACHER)
                ZT_CHECK(got == (double)n && want == (double)n, "z_sumsq %s: %.17g / %.17g", name,
                         got, want);
            ZT_CHECK(ratio <= 1.0, "z_sumsq %s: dut %.17g ref %.17g beyond the bound %.3g", name,
                     got, want, bound);
            zt_zo_record("z_sumsq", got == want, ratio, 0.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// update

typedef struct zt_zo_update_case {
    zt_update_rule rule;
    zt_dtype dtype;
    int stochastic;
    zt_dist dist;
    size_t n;
    int n_terms, n_steps;
    float lr, weight_decay;
} zt_zo_update_case;

static inline const char *zt_zo_rule_name(zt_update_rule rule) {
    static const char *names[] = {"sgd", "sign", "momentum", "adamm"};
    return (unsigned)rule < 4 ? names[rule] : "?";
}

static inline size_t zt_zo_state_rows(zt_update_rule rule) {
    return rule == ZT_UPDATE_MOMENTUM ? 1 : rule == ZT_UPDATE_ADAMM ? 3 : 0;
}

/* One backend's theta and state for a multi-step case. */
typedef struct zt_zo_update_side {
    zt_backend *be;
    zt_pbuf theta, state;
} zt_zo_update_side;

static inline void zt_zo_update_cmp(const zt_zo_update_case *c, int exact, const zt_update *u,
                                    uint32_t tensor_id, const void *theta_before, const void *got,
                                    const void *want, const float *got_state,
                                    const float *want_state, const char *name) {
    size_t n_diff = 0, first_diff = c->n;
    double worst_ratio = 0.0, worst_ulps = 0.0;
    for (size_t j = 0; j < c->n; j++) {
        if (zt_zo_same(got, want, c->dtype, j)) continue;
        if (n_diff++ == 0) first_diff = j;
        const double g = zt_load_f32(got, c->dtype, j), w = zt_load_f32(want, c->dtype, j);
        const double diff = fabs(g - w);
        const double theta = zt_load_f32(theta_before, c->dtype, j);
        double magnitude = 0.0;
        const double g_bound =
            c->dist == ZT_DIST_GAUSSIAN ? zt_zo_g_bound(&u->grad, tensor_id, j, &magnitude) : 0.0;
        const double step = (double)u->lr * (magnitude + fabs((double)u->weight_decay * theta));
        const double scale = fabs(theta) + step;
        const double bound = (double)u->lr * g_bound * (1.0 + 0x1p-20) +
                             (2.0 * c->n_terms + 4.0) * zt_zo_ulp(scale, ZT_F32) +
                             zt_zo_ulp(scale, c->dtype);
        const double ratio = diff / bound, ulps = diff / zt_zo_ulp(w, c->dtype);
        if (!(ratio <= worst_ratio)) worst_ratio = ratio;
        if (!(ulps <= worst_ulps)) worst_ulps = ulps;
    }
    size_t state_diff = 0;
    const size_t state_floats = zt_zo_state_rows(c->rule) * c->n;
    if (exact && state_floats)
        for (size_t i = 0; i < state_floats; i++)
            state_diff += memcmp(&got_state[i], &want_state[i], sizeof(float)) != 0;
    printf("  %-9s %-66s %s: %zu of %zu differ, max %.2g ulp, max/bound %.2g; state %zu differ\n",
           "update", name, exact ? "bitwise" : "bound B_z", n_diff, c->n, worst_ulps, worst_ratio,
           state_diff);
    if (exact) {
        ZT_CHECK(n_diff == 0, "update %s: %zu weights differ, first [%zu] dut %.9g ref %.9g", name,
                 n_diff, first_diff,
                 first_diff < c->n ? zt_load_f32(got, c->dtype, first_diff) : 0.0,
                 first_diff < c->n ? zt_load_f32(want, c->dtype, first_diff) : 0.0);
        ZT_CHECK(state_diff == 0, "update %s: %zu state values differ", name, state_diff);
    } else {
        ZT_CHECK(worst_ratio <= 1.0, "update %s: |dut - ref| reaches %.3g of the bound", name,
                 worst_ratio);
    }
    zt_zo_record("update", n_diff == 0 && state_diff == 0, worst_ratio, worst_ulps);
}

static inline void zt_zo_run_update_case(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                         const zt_zo_update_case *c, const zt_zo_mode *mode) {
    /* On a GPU, Gaussian z differs slightly: only SGD without SR, one step, has a bound there. */
    const int exact = mode->gauss_exact || c->dist == ZT_DIST_RADEMACHER;
    char name[160];
    snprintf(name, sizeof name, "%s %s %s%s n=%zu terms=%d lr=%g wd=%g", zt_zo_rule_name(c->rule),
             zt_dtype_name(c->dtype), zt_zo_dist_name(c->dist), c->stochastic ? " sr" : "", c->n,
             c->n_terms, (double)c->lr, (double)c->weight_decay);
    if (!exact && (c->rule != ZT_UPDATE_SGD || c->stochastic || c->n_steps != 1) && c->lr != 0.0f) {
        printf("  %-9s %-66s not compared here: Gaussian z differs on this device\n", "update",
               name);
        return;
    }
    const uint32_t tensor_id = (uint32_t)zt_prng_below(r, 300);
    const size_t theta_bytes = c->n * zt_dtype_size(c->dtype);
    const size_t rows = zt_zo_state_rows(c->rule);
    void *theta = zt_zo_random_tensor(r, c->dtype, c->n, 1.0f);
    float *state = (float *)malloc(rows * c->n * sizeof(float) + 1);
    for (size_t i = 0; i < c->n; i++) {
        if (rows >= 1) state[i] = 0.1f * zt_prng_uniform(r);
        if (rows == 3) {
            const float v = 0.005f * (1.0f + zt_prng_uniform(r));
            state[c->n + i] = v;
            state[2 * c->n + i] = v + 0.005f * (1.0f + zt_prng_uniform(r));
        }
    }
    zt_zo_update_side sides[2] = {{ref, {0}, {0}}, {dut, {0}, {0}}};
    int ok = 1;
    for (int s = 0; s < 2; s++) {
        ok = ok && zt_pbuf_make(sides[s].be, &sides[s].theta, theta, theta_bytes, "theta");
        if (rows)
            ok = ok && zt_pbuf_make(sides[s].be, &sides[s].state, state,
                                    rows * c->n * sizeof(float), "state");
    }
    void *before = malloc(theta_bytes + 1),
         *outs[2] = {malloc(theta_bytes + 1), malloc(theta_bytes + 1)};
    float *states[2] = {(float *)malloc(rows * c->n * sizeof(float) + 1),
                        (float *)malloc(rows * c->n * sizeof(float) + 1)};
    memcpy(before, theta, theta_bytes);
    for (int step = 0; ok && step < c->n_steps; step++) {
        zt_direction *terms = zt_zo_random_terms(r, c->n_terms);
        zt_update u;
        memset(&u, 0, sizeof u);
        u.grad.terms = terms;
        u.grad.n_terms = c->n_terms;
        u.grad.dist = c->dist;
        u.grad.z_scale = 1.0f + 0.5f * zt_prng_uniform(r);
        u.rule = c->rule;
        u.lr = c->lr;
        u.weight_decay = c->weight_decay;
        u.beta1 = 0.9f;
        u.beta2 = 0.999f;
        u.eps = 1e-8f;
        u.stochastic_rounding = c->stochastic;
        u.rounding_seed = zt_prng_next(r);
        char step_name[192];
        snprintf(step_name, sizeof step_name, "%s step %d", name, step + 1);
        for (int s = 0; s < 2; s++) {
            zt_backend *be = sides[s].be;
            zt_status st =
                be->ops->update(be, zt_pbuf_ptr(&sides[s].theta), c->dtype, tensor_id, c->n,
                                rows ? (float *)zt_pbuf_ptr(&sides[s].state) : NULL, &u);
            ZT_CHECK(st == ZT_OK, "%s update %s: %s", be->ops->name, step_name, zt_last_error());
            ok = ok && st == ZT_OK;
            zt_pbuf_fetch(&sides[s].theta, outs[s], step_name);
            if (rows) zt_pbuf_fetch(&sides[s].state, states[s], step_name);
        }
        if (ok) {
            if (c->lr == 0.0f) {
                /* lr = 0 must leave every weight's bits as they were, -0 included, on both. */
                ZT_CHECK(memcmp(outs[0], before, theta_bytes) == 0 &&
                             memcmp(outs[1], before, theta_bytes) == 0,
                         "update %s: lr = 0 changed weights", step_name);
            }
            zt_zo_update_cmp(c, exact, &u, tensor_id, before, outs[1], outs[0], states[1],
                             states[0], step_name);
            memcpy(before, outs[0], theta_bytes);
        } else {
            zt_zo_record("update", 0, INFINITY, INFINITY);
        }
        free(terms);
    }
    for (int s = 0; s < 2; s++) {
        zt_pbuf_free(&sides[s].theta);
        zt_pbuf_free(&sides[s].state);
        free(outs[s]);
        free(states[s]);
    }
    free(before);
    free(theta);
    free(state);
}

static inline void zt_zo_parity_update(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                       const zt_zo_mode *mode) {
    static const size_t sizes[] = {1, 7, 1001, 4099, 33333};
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    int index = 0;
    for (int rule = ZT_UPDATE_SGD; rule <= ZT_UPDATE_ADAMM; rule++) {
        for (int d = 0; d < 3; d++) {
            for (int sr = 0; sr < 2; sr++, index++) {
                zt_zo_update_case c;
                c.rule = (zt_update_rule)rule;
                c.dtype = dtypes[d];
                c.stochastic = sr; /* on f32 it must be ignored */
                c.dist = index % 2 ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
                c.n = sizes[index % 5];
                c.n_terms = 1 + index % 3;
                c.n_steps = 3;
                c.lr = 1e-3f;
                c.weight_decay = index % 4 == 0 ? 0.0f : 0.01f;
                zt_zo_run_update_case(ref, dut, r, &c, mode);
            }
        }
    }
    /* Gaussian SGD, one step: the case a GPU compares against B_z. */
    const zt_zo_update_case sgd[] = {
        {ZT_UPDATE_SGD, ZT_F32, 0, ZT_DIST_GAUSSIAN, 50001, 2, 1, 1e-3f, 0.01f},
        {ZT_UPDATE_SGD, ZT_BF16, 0, ZT_DIST_GAUSSIAN, 9999, 1, 1, 1e-2f, 0.0f},
        /* terms past the inline 32, every rule's state read through spilled terms */
        {ZT_UPDATE_ADAMM, ZT_BF16, 1, ZT_DIST_RADEMACHER, 3001, 40, 2, 1e-3f, 0.01f},
        {ZT_UPDATE_ADAMM, ZT_F16, 1, ZT_DIST_GAUSSIAN, 2049, 70, 2, 1e-3f, 0.0f},
        /* lr = 0: weights bit-identical, -0 and subnormals included; state still advances */
        {ZT_UPDATE_ADAMM, ZT_F16, 1, ZT_DIST_RADEMACHER, 1003, 2, 2, 0.0f, 0.01f},
        {ZT_UPDATE_MOMENTUM, ZT_BF16, 1, ZT_DIST_GAUSSIAN, 517, 1, 2, 0.0f, 0.01f},
        {ZT_UPDATE_SIGN, ZT_F32, 0, ZT_DIST_GAUSSIAN, 515, 3, 1, 0.0f, 0.0f},
        /* more blocks than the grid: the grid-stride loop */
        {ZT_UPDATE_MOMENTUM, ZT_F32, 0, ZT_DIST_RADEMACHER, ((size_t)1 << 18) + 3, 1, 2, 1e-3f,
         0.0f},
    };
    for (size_t i = 0; i < sizeof sgd / sizeof sgd[0]; i++)
        zt_zo_run_update_case(ref, dut, r, &sgd[i], mode);
}

// ---------------------------------------------------------------------------------------------
// errors: the same status and message on both, and nothing written

/* The buffers one error case may touch, on one backend: a (16 floats), b (16 floats), state (24).
 */
typedef struct zt_zo_err_bufs {
    zt_pbuf a, b, state;
} zt_zo_err_bufs;

/* The backends under test are C++, where an enum object holding a value outside the enum's range
 * (that of the smallest bit-field holding every enumerator) is undefined behaviour, caught by
 * UBSan. So a bad dtype passed by value is 3: no zt_dtype, yet inside 0..3. zt_dist's range holds
 * nothing but its two enumerators, so z_sumsq's by-value distribution has no bad case here (the
 * CPU backend's own test has it); bad values inside structs are fine, since the C checks of
 * kernels/op_checks.c read them before any C++ does. */
#define ZT_ZO_UNKNOWN_DTYPE ((zt_dtype)(ZT_BF16 + 1))

typedef enum zt_zo_err_call {
    ZT_ZO_PERTURB_NULL_DST,
    ZT_ZO_PERTURB_BAD_DST_DTYPE,
    ZT_ZO_PERTURB_NULL_SRC,
    ZT_ZO_PERTURB_BAD_SRC_DTYPE,
    ZT_ZO_PERTURB_NULL_P,
    ZT_ZO_PERTURB_NAN_COEFF,
    ZT_ZO_PERTURB_INF_SCALE,
    ZT_ZO_PERTURB_BAD_DIST,
    ZT_ZO_PERTURB_NEGATIVE_TERMS,
    ZT_ZO_PERTURB_NULL_TERMS,
    ZT_ZO_PERTURB_SHIFTED_OVERLAP,
    ZT_ZO_PERTURB_ALIAS_OTHER_DTYPE,
    ZT_ZO_PERTURB_OFFSET_OVERFLOW,
    ZT_ZO_SUMSQ_NULL_OUT,
    ZT_ZO_UPDATE_NULL_U,
    ZT_ZO_UPDATE_NULL_THETA,
    ZT_ZO_UPDATE_BAD_DTYPE,
    ZT_ZO_UPDATE_NAN_LR,
    ZT_ZO_UPDATE_INF_WD,
    ZT_ZO_UPDATE_BAD_RULE,
    ZT_ZO_UPDATE_MOMENTUM_NO_STATE,
    ZT_ZO_UPDATE_MOMENTUM_BETA,
    ZT_ZO_UPDATE_ADAMM_EPS,
    ZT_ZO_UPDATE_ADAMM_BETA2,
    ZT_ZO_UPDATE_STATE_OVERLAP,
    ZT_ZO_UPDATE_NEGATIVE_TERMS,
    ZT_ZO_UPDATE_BAD_DIST,
    ZT_ZO_UPDATE_NAN_COEFF,
    ZT_ZO_ERR_CALLS
} zt_zo_err_call;

static inline zt_status zt_zo_err_run(zt_backend *be, zt_zo_err_bufs *bufs, zt_zo_err_call call,
                                      const char **what) {
    float *a = (float *)zt_pbuf_ptr(&bufs->a), *b = (float *)zt_pbuf_ptr(&bufs->b);
    float *state = (float *)zt_pbuf_ptr(&bufs->state);
    static const zt_direction terms[2] = {{1, 1.0f}, {2, NAN}};
    const zt_perturbation ok = {terms, 1, ZT_DIST_GAUSSIAN, 1.0f};
    zt_perturbation p = ok;
    const zt_weight src = {b, ZT_F32};
    zt_update u;
    memset(&u, 0, sizeof u);
    u.grad = ok;
    u.rule = ZT_UPDATE_SGD;
    u.lr = 1.0f;
    u.beta1 = 0.9f;
    u.beta2 = 0.999f;
    u.eps = 1e-8f;
    switch (call) {
    case ZT_ZO_PERTURB_NULL_DST:
        *what = "perturb NULL dst";
        return be->ops->perturb(be, NULL, ZT_F32, src, 0, 0, 4, &ok);
    case ZT_ZO_PERTURB_BAD_DST_DTYPE:
        *what = "perturb bad dst dtype";
        return be->ops->perturb(be, a, ZT_ZO_UNKNOWN_DTYPE, src, 0, 0, 4, &ok);
    case ZT_ZO_PERTURB_NULL_SRC:
        *what = "perturb NULL src";
        return be->ops->perturb(be, a, ZT_F32, (zt_weight){NULL, ZT_F32}, 0, 0, 4, &ok);
    case ZT_ZO_PERTURB_BAD_SRC_DTYPE:
        *what = "perturb bad src dtype";
        return be->ops->perturb(be, a, ZT_F32, (zt_weight){b, ZT_ZO_UNKNOWN_DTYPE}, 0, 0, 4, &ok);
    case ZT_ZO_PERTURB_NULL_P:
        *what = "perturb NULL perturbation";
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, NULL);
    case ZT_ZO_PERTURB_NAN_COEFF:
        *what = "perturb NaN coefficient";
        p.n_terms = 2;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_INF_SCALE:
        *what = "perturb Inf z_scale";
        p.z_scale = INFINITY;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_BAD_DIST:
        *what = "perturb unknown distribution";
        p.dist = (zt_dist)7;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_NEGATIVE_TERMS:
        *what = "perturb negative n_terms";
        p.n_terms = -1;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_NULL_TERMS:
        *what = "perturb NULL terms";
        p.terms = NULL;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_SHIFTED_OVERLAP:
        *what = "perturb shifted overlap";
        return be->ops->perturb(be, a + 1, ZT_F32, (zt_weight){a, ZT_F32}, 0, 0, 8, &ok);
    case ZT_ZO_PERTURB_ALIAS_OTHER_DTYPE:
        *what = "perturb in place with another dtype";
        return be->ops->perturb(be, a, ZT_BF16, (zt_weight){a, ZT_F32}, 0, 0, 8, &ok);
    case ZT_ZO_PERTURB_OFFSET_OVERFLOW:
        *what = "perturb offset overflow";
        return be->ops->perturb(be, a, ZT_F32, src, 0, UINT64_MAX - 2, 4, &ok);
    case ZT_ZO_SUMSQ_NULL_OUT:
        *what = "z_sumsq NULL out";
        return be->ops->z_sumsq(be, NULL, 1, 2, 100, ZT_DIST_GAUSSIAN);
    case ZT_ZO_UPDATE_NULL_U:
        *what = "update NULL update";
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, NULL);
    case ZT_ZO_UPDATE_NULL_THETA:
        *what = "update NULL theta";
        return be->ops->update(be, NULL, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_BAD_DTYPE:
        *what = "update bad dtype";
        return be->ops->update(be, a, ZT_ZO_UNKNOWN_DTYPE, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_NAN_LR:
        *what = "update NaN lr";
        u.lr = NAN;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_INF_WD:
        *what = "update Inf weight_decay";
        u.weight_decay = INFINITY;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_BAD_RULE:
        *what = "update unknown rule";
        u.rule = (zt_update_rule)9;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_MOMENTUM_NO_STATE:
        *what = "update momentum without state";
        u.rule = ZT_UPDATE_MOMENTUM;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_MOMENTUM_BETA:
        *what = "update momentum beta1 1.5";
        u.rule = ZT_UPDATE_MOMENTUM;
        u.beta1 = 1.5f;
        return be->ops->update(be, a, ZT_F32, 0, 8, state, &u);
    case ZT_ZO_UPDATE_ADAMM_EPS:
        *what = "update adamm eps 0";
        u.rule = ZT_UPDATE_ADAMM;
        u.eps = 0.0f;
        return be->ops->update(be, a, ZT_F32, 0, 8, state, &u);
    case ZT_ZO_UPDATE_ADAMM_BETA2:
        *what = "update adamm beta2 NaN";
        u.rule = ZT_UPDATE_ADAMM;
        u.beta2 = NAN;
        return be->ops->update(be, a, ZT_F32, 0, 8, state, &u);
    case ZT_ZO_UPDATE_STATE_OVERLAP:
        *what = "update state overlapping theta";
        u.rule = ZT_UPDATE_ADAMM;
        return be->ops->update(be, state + 4, ZT_F32, 0, 8, state, &u);
    case ZT_ZO_UPDATE_NEGATIVE_TERMS:
        *what = "update negative n_terms";
        u.grad.n_terms = -3;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_BAD_DIST:
        *what = "update unknown distribution";
        u.grad.dist = (zt_dist)2;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_NAN_COEFF:
        *what = "update NaN coefficient";
        u.grad.n_terms = 2;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_ERR_CALLS:
        break;
    }
    *what = "?";
    return ZT_ERR_INTERNAL;
}

static inline void zt_zo_parity_errors(zt_backend *ref, zt_backend *dut) {
    float zeros[24];
    memset(zeros, 0, sizeof zeros);
    for (int call = 0; call < ZT_ZO_ERR_CALLS; call++) {
        zt_status status[2];
        char text[2][512];
        const char *what = "?";
        for (int s = 0; s < 2; s++) {
            zt_backend *be = s == 0 ? ref : dut;
            zt_zo_err_bufs bufs;
            memset(&bufs, 0, sizeof bufs);
            if (!zt_pbuf_make(be, &bufs.a, zeros, 16 * sizeof(float), "a") ||
                !zt_pbuf_make(be, &bufs.b, zeros, 16 * sizeof(float), "b") ||
                !zt_pbuf_make(be, &bufs.state, zeros, 24 * sizeof(float), "state")) {
                status[s] = ZT_ERR_INTERNAL;
                snprintf(text[s], sizeof text[s], "buffers");
            } else {
                status[s] = zt_zo_err_run(be, &bufs, (zt_zo_err_call)call, &what);
                snprintf(text[s], sizeof text[s], "%s", status[s] == ZT_OK ? "" : zt_last_error());
                /* Nothing written: the op failed before any launch. */
                zt_pbuf_check_input(&bufs.a, zeros, what);
                zt_pbuf_check_input(&bufs.b, zeros, what);
                zt_pbuf_check_input(&bufs.state, zeros, what);
            }
            zt_pbuf_free(&bufs.a);
            zt_pbuf_free(&bufs.b);
            zt_pbuf_free(&bufs.state);
        }
        zt_parity_same_error("zo error", what, status[0], text[0], status[1], text[1]);
    }
}

// ---------------------------------------------------------------------------------------------
// the probes: the kernels' RNG against the CPU's and cuRAND's, z_sumsq on several grids

static inline void zt_zo_probe_checks(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                      const zt_zo_mode *mode) {
    (void)ref;
    enum { N_KEYS = 4, N_BLOCKS = 48, N = N_KEYS * N_BLOCKS };
    const uint64_t keys4[N_KEYS] = {0, ~0ull, zt_tensor_key(20250607, 3), zt_prng_next(r)};
    /* Both sides of every counter boundary: the 2^16 subsequences, 2^32 blocks (the counter's
     * second word), and far out. */
    /* clang-format off */
    static const uint64_t edges[] = {0x0, 0x1, 0x2, 0x3, 0xFFFF, 0x10000, 0x10001, 0x1FFFF,
                                     0x40003, 0xFFFFFFFF, 0x100000000, 0x10000FFFF,
                                     0x10000003039, 0xFFFFFFFFFFFF, 0x1000000000000007,
                                     0x3FFFFFFFFFFFFFFF};
    /* clang-format on */
    uint64_t blocks48[N_BLOCKS];
    for (int i = 0; i < N_BLOCKS; i++)
        blocks48[i] = i < 16 ? edges[i] : zt_prng_next(r) >> (2 + (unsigned)(i % 40));
    uint64_t keys[N], blocks[N];
    for (int k = 0; k < N_KEYS; k++)
        for (int b = 0; b < N_BLOCKS; b++) {
            keys[k * N_BLOCKS + b] = keys4[k];
            blocks[k * N_BLOCKS + b] = blocks48[b];
        }
    zt_pbuf b_keys = {0}, b_blocks = {0}, b_out = {0};
    uint32_t *out = (uint32_t *)malloc((size_t)N * ZT_PROBE_WORDS * sizeof(uint32_t));
    int ok = zt_pbuf_make(dut, &b_keys, keys, sizeof keys, "keys") &&
             zt_pbuf_make(dut, &b_blocks, blocks, sizeof blocks, "blocks") &&
             zt_pbuf_make(dut, &b_out, NULL, (size_t)N * ZT_PROBE_WORDS * sizeof(uint32_t), "out");
    if (ok) {
        zt_status s = zt_zo_probe_rng(dut, (uint32_t *)zt_pbuf_ptr(&b_out),
                                      (const uint64_t *)zt_pbuf_ptr(&b_keys),
                                      (const uint64_t *)zt_pbuf_ptr(&b_blocks), N);
        ZT_CHECK(s == ZT_OK, "probe rng: %s", zt_last_error());
        zt_pbuf_fetch(&b_out, out, "probe rng");
        ok = s == ZT_OK;
    }
    if (ok) {
        int bits_bad = 0, sr_bad = 0, curand_bad = 0, curand_sr_bad = 0, gauss_bad = 0;
        int normal_differ = 0, normal_bad = 0;
        double worst_normal = 0.0, worst_gauss = 0.0;
        for (int i = 0; i < N; i++) {
            const uint32_t *w = out + (size_t)i * ZT_PROBE_WORDS;
            const zt_u32x4 z = zt_z_bits_block4(keys[i], blocks[i]);
            const zt_u32x4 sr = zt_sr_bits_block4(keys[i], blocks[i]);
            const zt_f32x4 gauss = zt_z_gauss_block4(keys[i], blocks[i]);
            const uint32_t zw[4] = {z.x, z.y, z.z, z.w}, srw[4] = {sr.x, sr.y, sr.z, sr.w};
            const float gw[4] = {gauss.x, gauss.y, gauss.z, gauss.w};
            for (int l = 0; l < 4; l++) {
                bits_bad += w[ZT_PROBE_Z_BITS + l] != zw[l];
                sr_bad += w[ZT_PROBE_SR_BITS + l] != srw[l];
                curand_bad += w[ZT_PROBE_CURAND_BITS + l] != zw[l];
                curand_sr_bad += w[ZT_PROBE_CURAND_SR + l] != srw[l];
                const float radius = sqrtf(-2.0f * logf(zt_box_muller_u(zw[l < 2 ? 0 : 2])));
                /* The engine's normal from device code: bit for bit in the executor, within B_z
                 * on a GPU. */
                const float device_z = zt_bits_f32(w[ZT_PROBE_Z_GAUSS + l]);
                if (mode->gauss_exact) {
                    gauss_bad += zt_f32_bits(device_z) != zt_f32_bits(gw[l]);
                } else {
                    const double b_z = ZT_ZO_SINCOS_ERR * radius + 4.0 * zt_zo_ulp(gw[l], ZT_F32);
                    const double ratio = fabs((double)device_z - gw[l]) / b_z;
                    if (!(ratio <= worst_gauss)) worst_gauss = ratio;
                    gauss_bad += !(ratio <= 1.0);
                }
                /* curand_normal4 against the engine's normal, both from device code. The host
                 * compile of cuRAND (the executor) does not contract its angle y * C + C/2, the
                 * engine does, as nvcc does on a GPU: there a few pairs differ, by at most
                 * radius * ulp(angle) + 2 ulp (tests/rng). On a GPU: bit for bit. */
                const float normal = zt_bits_f32(w[ZT_PROBE_CURAND_GAUSS + l]);
                if (zt_f32_bits(normal) != zt_f32_bits(device_z)) {
                    normal_differ++;
                    const float angle = zt_box_muller_v(zw[l < 2 ? 1 : 3]);
                    const double bound =
                        radius * zt_zo_ulp(angle, ZT_F32) + 2.0 * zt_zo_ulp(device_z, ZT_F32);
                    const double ratio = fabs((double)normal - device_z) / bound;
                    if (!(ratio <= worst_normal)) worst_normal = ratio;
                    normal_bad += !(ratio <= 1.0);
                }
            }
        }
        printf("  %-9s %d blocks x 4 words from device code: kernels' curand4 z %d bad, SR %d bad; "
               "Philox port z %d bad, SR %d bad\n",
               "rng", N, bits_bad, sr_bad, curand_bad, curand_sr_bad);
        printf("  %-9s engine normals vs CPU: %d beyond %s (max/bound %.2g); curand_normal4 vs "
               "engine: %d of %d differ (max/(r ulp(angle) + 2 ulp) %.2g)\n",
               "rng", gauss_bad, mode->gauss_exact ? "bitwise" : "B_z", worst_gauss, normal_differ,
               N * 4, worst_normal);
        ZT_CHECK(bits_bad == 0 && sr_bad == 0,
                 "probe: the kernels' curand_init + curand4 words differ from the CPU's");
        ZT_CHECK(curand_bad == 0 && curand_sr_bad == 0,
                 "probe: the Philox port in device code differs from the CPU's");
        ZT_CHECK(gauss_bad == 0, "probe: %d kernel normals differ from the CPU's", gauss_bad);
        if (mode->gauss_exact)
            ZT_CHECK(normal_bad == 0, "probe: %d curand_normal4 values beyond the angle bound",
                     normal_bad);
        else
            ZT_CHECK(normal_differ == 0, "probe: %d device normals differ from curand_normal4",
                     normal_differ);
    }
    zt_pbuf_free(&b_keys);
    zt_pbuf_free(&b_blocks);
    zt_pbuf_free(&b_out);
    free(out);

    /* z_sumsq's bits depend on n alone: the same on any grid. */
    const size_t sizes[] = {16384 * 5 + 3, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const uint64_t seed = zt_prng_next(r);
        double by_op = NAN;
        zt_status s = dut->ops->z_sumsq(dut, &by_op, seed, 9, sizes[k], ZT_DIST_GAUSSIAN);
        ZT_CHECK(s == ZT_OK, "z_sumsq: %s", zt_last_error());
        const unsigned grids[] = {1, 2, 3, 7};
        int same = 0;
        for (size_t g = 0; g < sizeof grids / sizeof grids[0]; g++) {
            double by_grid = NAN;
            s = zt_zo_probe_sumsq(dut, &by_grid, seed, 9, sizes[k], grids[g]);
            ZT_CHECK(s == ZT_OK, "probe sumsq: %s", zt_last_error());
            ZT_CHECK(memcmp(&by_grid, &by_op, sizeof by_op) == 0,
                     "z_sumsq n=%zu: %u blocks give %.17g, the op %.17g", sizes[k], grids[g],
                     by_grid, by_op);
            same += memcmp(&by_grid, &by_op, sizeof by_op) == 0;
        }
        printf("  %-9s n=%zu on grids of 1, 2, 3, 7 blocks: %d of 4 bit-identical to the op\n",
               "z_sumsq", sizes[k], same);
    }
}

// ---------------------------------------------------------------------------------------------
// scratch planning: what scratch_bytes promises is what the ops take

static inline size_t zt_zo_scratch_now(void) {
    zt_mem_stats stats;
    zt_mem_stats_get(&stats);
    return stats.current[ZT_MEM_SCRATCH];
}

static inline void zt_zo_scratch_checks(zt_status (*create)(int device, zt_backend **out),
                                        int device) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(create(device, &be));
    ZT_CHECK(be->ops->scratch_bytes != NULL && be->ops->reserve_scratch != NULL,
             "%s: no scratch planning ops", be->ops->name);
    if (be->ops->scratch_bytes == NULL || be->ops->reserve_scratch == NULL) {
        be->ops->destroy(be);
        return;
    }
    const size_t base = zt_zo_scratch_now(); /* the backend's own fixed slots */
    zt_scratch_query sumsq = {.op = ZT_SCRATCH_Z_SUMSQ, .n_elems = 100003};
    const size_t sumsq_bytes = be->ops->scratch_bytes(be, &sumsq);
    double out = 0.0;
    ZT_CHECK_OK(be->ops->z_sumsq(be, &out, 5, 6, 100003, ZT_DIST_GAUSSIAN));
    const size_t after_sumsq = zt_zo_scratch_now() - base;
    ZT_CHECK(after_sumsq == sumsq_bytes, "z_sumsq took %zu bytes of scratch, planned %zu",
             after_sumsq, sumsq_bytes);

    /* linear with an f16 weight widens one chunk of rows; with f32 it takes none. */
    const int n_rows = 3, in_features = 300, out_features = 700;
    zt_scratch_query linear = {.op = ZT_SCRATCH_LINEAR,
                               .in_features = in_features,
                               .out_features = out_features,
                               .weight_dtype = ZT_F16,
                               .bias_dtype = ZT_F32,
                               .n_rows = n_rows};
    const size_t linear_bytes = be->ops->scratch_bytes(be, &linear);
    linear.weight_dtype = ZT_F32;
    ZT_CHECK(be->ops->scratch_bytes(be, &linear) == 0, "linear with an f32 weight plans scratch");
    zt_pbuf x = {0}, y = {0}, w = {0};
    if (zt_pbuf_make(be, &x, NULL, (size_t)n_rows * in_features * sizeof(float), "x") &&
        zt_pbuf_make(be, &y, NULL, (size_t)n_rows * out_features * sizeof(float), "y") &&
        zt_pbuf_make(be, &w, NULL, (size_t)out_features * in_features * 2, "w")) {
        const zt_weight weight = {zt_pbuf_ptr(&w), ZT_F16}, no_bias = {NULL, ZT_F32};
        ZT_CHECK_OK(be->ops->linear(be, (float *)zt_pbuf_ptr(&y), (const float *)zt_pbuf_ptr(&x),
                                    weight, no_bias, n_rows, in_features, out_features, 0));
        ZT_CHECK_OK(be->ops->sync(be));
    }
    zt_pbuf_free(&x);
    zt_pbuf_free(&y);
    zt_pbuf_free(&w);
    const size_t after_linear = zt_zo_scratch_now() - base;
    const size_t expected = linear_bytes > sumsq_bytes ? linear_bytes : sumsq_bytes;
    ZT_CHECK(after_linear == expected, "after linear: %zu bytes of scratch, planned max %zu",
             after_linear, expected);

    zt_scratch_query attention = {.op = ZT_SCRATCH_ATTENTION, .seq_len = 1024, .head_dim = 128};
    const size_t attention_bytes = be->ops->scratch_bytes(be, &attention);

    /* reserve_scratch reaches the peak up front; later ops within it grow nothing. */
    const size_t big = 3 * expected + 2;
    ZT_CHECK_OK(be->ops->reserve_scratch(be, big));
    const size_t reserved = zt_zo_scratch_now() - base;
    ZT_CHECK(reserved >= big && reserved < big + sizeof(float), "reserved %zu for %zu", reserved,
             big);
    ZT_CHECK_OK(be->ops->z_sumsq(be, &out, 5, 6, 100003, ZT_DIST_GAUSSIAN));
    ZT_CHECK_OK(be->ops->reserve_scratch(be, 0));
    ZT_CHECK(zt_zo_scratch_now() - base == reserved, "scratch grew within a reservation");
    printf("  %-9s z_sumsq(100003) %zu B, linear f16 300x700 %zu B, attention %zu B; taken as "
           "planned, reserve %zu -> %zu B\n",
           "scratch", sumsq_bytes, linear_bytes, attention_bytes, big, reserved);
    be->ops->destroy(be);
}

// ---------------------------------------------------------------------------------------------

static inline void zt_zo_parity_run(zt_backend *ref, zt_backend *dut, uint64_t seed,
                                    const zt_zo_mode *mode) {
    zt_prng r = {seed ? seed : 1};
    printf("perturbation ops of %s against %s, seed %llu, Gaussian z %s\n", dut->ops->name,
           ref->ops->name, (unsigned long long)seed,
           mode->gauss_exact ? "bit for bit (host sinf/cosf)" : "within B_z (__sincosf)");
    double start = zt_parity_now();
    zt_zo_probe_checks(ref, dut, &r, mode);
    printf("  %-9s %.2f s\n", "probes", zt_parity_now() - start);
    start = zt_parity_now();
    zt_zo_parity_perturb(ref, dut, &r, mode);
    printf("  %-9s %.2f s\n", "perturb", zt_parity_now() - start);
    start = zt_parity_now();
    zt_zo_parity_sumsq(ref, dut, &r, mode);
    printf("  %-9s %.2f s\n", "z_sumsq", zt_parity_now() - start);
    start = zt_parity_now();
    zt_zo_parity_update(ref, dut, &r, mode);
    printf("  %-9s %.2f s\n", "update", zt_parity_now() - start);
    zt_zo_parity_errors(ref, dut);
    printf("summary (perturbation ops):\n");
    for (int i = 0; i < zt_zo_n_stats; i++)
        printf("  %-9s %2d cases, %2d bit-identical, worst %.2g ulp, worst |diff|/bound %.2g\n",
               zt_zo_stats[i].op, zt_zo_stats[i].n_cases, zt_zo_stats[i].n_bitwise,
               zt_zo_stats[i].worst_ulps, zt_zo_stats[i].worst_ratio);
}

#endif
