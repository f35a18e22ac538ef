/* The CPU backend's perturbation ops (kernels/cpu/perturb.c, sumsq.c, update.c): perturb,
 * z_sumsq and update, against references written here on top of the per-element functions of
 * kernels/common/perturb_rng.h (zt_z_gauss, zt_z_rademacher, zt_sr_bits_at), which share no
 * block or offset arithmetic with the ops.
 *
 * Two references per op:
 *   - an f32 mirror of the documented operation order (kernels/cpu/z_terms.h, update.c),
 *     which the op must match bit for bit, in every storage dtype;
 *   - a double-precision evaluation of the formula, with an error bound derived alongside it
 *     (U = 2^-24 per f32 rounding; the derivations are next to the code), which catches a
 *     mirror and an op that agree on the wrong thing.
 * Outputs sit between guard regions that must come back untouched and start as NaN bytes, so an
 * element an op forgets to write fails. Inputs must come back unchanged.
 */

/* The mirrors must round every operation, as the ops do: no contraction into FMA (clang contracts
 * within an expression by default; GCC in -std=c11 mode does not). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "zt_config.h"
#include "zt_test.h"

#if ZT_HAVE_OPENMP
#include <omp.h>
#endif

static const double U = 0x1p-24; /* unit roundoff of f32 */

static zt_backend *be;  /* under test: 2 threads */
static zt_backend *be1; /* the same ops on 1 thread, for thread-count independence */

static char context[256]; /* what the current case is, for failure messages */

__attribute__((format(printf, 1, 2))) static void set_context(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
}

static void *test_alloc(size_t n_bytes) {
    void *p = malloc(n_bytes ? n_bytes : 1);
    if (p == NULL) {
        fprintf(stderr, "FATAL: host malloc of %zu bytes failed\n", n_bytes);
        exit(1);
    }
    return p;
}

/* ---- deterministic inputs (splitmix64) ---- */

static uint64_t rng_state = 0x5eed0f7e57ull;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_float(double lo, double hi) {
    double unit = (double)(rng_next() >> 11) * 0x1p-53; /* [0, 1) */
    return (float)(lo + (hi - lo) * unit);
}

/* ---- dtypes ---- */

static const zt_dtype ALL_DTYPES[3] = {ZT_F32, ZT_F16, ZT_BF16};

static int same_bits(const void *a, const void *b, zt_dtype dtype, size_t i) {
    size_t size = zt_dtype_size(dtype);
    return memcmp((const uint8_t *)a + i * size, (const uint8_t *)b + i * size, size) == 0;
}

/* Random values in [lo, hi) stored in dtype, with a few signed zeros among them. */
static void *random_tensor(zt_dtype dtype, size_t n, double lo, double hi) {
    void *data = test_alloc(n * zt_dtype_size(dtype));
    for (size_t i = 0; i < n; i++)
        zt_store_rne(data, dtype, i, rng_float(lo, hi));
    if (n > 2) zt_store_rne(data, dtype, 1, -0.0f);
    if (n > 5) zt_store_rne(data, dtype, 5, 0.0f);
    return data;
}

/* Unit roundoff of a storage dtype, and the spacing of its subnormals (an absolute error floor). */
static double dtype_roundoff(zt_dtype dtype) {
    return dtype == ZT_F32 ? 0x1p-24 : dtype == ZT_F16 ? 0x1p-11 : 0x1p-8;
}
static double dtype_subnormal_step(zt_dtype dtype) {
    return dtype == ZT_F32 ? 0x1p-149 : dtype == ZT_F16 ? 0x1p-24 : 0x1p-133;
}

/* ---- guarded backend buffers ---- */

enum { GUARD_BYTES = 64 };

typedef struct guarded {
    uint8_t *base; /* guard | data | guard */
    size_t n_bytes;
} guarded;

/* Data and guards start as 0xff bytes: NaN in every dtype, so unwritten outputs fail. */
static void *guarded_alloc(guarded *g, size_t n_bytes) {
    size_t total = n_bytes + 2 * GUARD_BYTES;
    ZT_REQUIRE_OK(be->ops->alloc(be, total, ZT_MEM_SCRATCH, (void **)&g->base));
    memset(g->base, 0xff, total);
    g->n_bytes = n_bytes;
    return g->base + GUARD_BYTES;
}

static void *guarded_copy(guarded *g, const void *init, size_t n_bytes) {
    void *data = guarded_alloc(g, n_bytes);
    memcpy(data, init, n_bytes);
    return data;
}

static int guards_intact(const guarded *g) {
    const uint8_t *after = g->base + GUARD_BYTES + g->n_bytes;
    for (size_t i = 0; i < GUARD_BYTES; i++)
        if (g->base[i] != 0xff || after[i] != 0xff) return 0;
    return 1;
}

static void guarded_free(guarded *g, const char *name) {
    ZT_CHECK(guards_intact(g), "%s: guard around %s overwritten", context, name);
    be->ops->free(be, g->base, g->n_bytes + 2 * GUARD_BYTES, ZT_MEM_SCRATCH);
}

/* ---- headroom: the worst |error| / tolerance seen against each double reference ---- */

typedef struct headroom {
    const char *what;
    double worst;
    long n_compared;
} headroom;

static headroom hr_perturb = {"perturb vs double", 0, 0};
static headroom hr_update = {"update (1 step) vs double", 0, 0};
static headroom hr_update_multi = {"update (5 steps) vs double", 0, 0};
static headroom hr_sumsq = {"z_sumsq vs double loop", 0, 0};

/* Returns 1 when got is finite and within tol of want; records the ratio. */
static int within(headroom *hr, double got, double want, double tol) {
    double err = fabs(got - want);
    hr->n_compared++;
    if (tol > 0 && err / tol > hr->worst) hr->worst = err / tol;
    return isfinite(got) && err <= tol;
}

/* ---- z and the direction sum g, element by element ---- */

static float ref_z(zt_dist dist, uint64_t seed, uint32_t tensor_id, uint64_t j) {
    return dist == ZT_DIST_GAUSSIAN ? zt_z_gauss(seed, tensor_id, j)
                                    : zt_z_rademacher(seed, tensor_id, j);
}

/* The f32 mirror: a_i = coeff_i * z_scale; g = a_0 z_0, then g += a_i z_i in term order. */
static float mirror_g(const zt_perturbation *p, uint32_t tensor_id, uint64_t j) {
    float g = 0.0f;
    for (int i = 0; i < p->n_terms; i++) {
        float a = p->terms[i].coeff * p->z_scale;
        float term = a * ref_z(p->dist, p->terms[i].seed, tensor_id, j);
        g = i == 0 ? term : g + term;
    }
    return g;
}

/* g in double from the same f32 z, coefficients and scale, with its error bound: each product
 * a_i z_i carries two roundings (a_i, then the product): <= (2U + U^2)|c_i s z_i|; the K-1
 * additions each add <= U |partial sum| <= U (1 + 3U) S. So |g_f32 - g| <= (K + 2) U S with
 * S = sum |c_i s z_i| (the slack covers the second-order terms). */
static double ref_g(const zt_perturbation *p, uint32_t tensor_id, uint64_t j, double *err_bound) {
    double g = 0.0, abs_sum = 0.0;
    for (int i = 0; i < p->n_terms; i++) {
        double term = (double)p->terms[i].coeff * (double)p->z_scale *
                      (double)ref_z(p->dist, p->terms[i].seed, tensor_id, j);
        g += term;
        abs_sum += fabs(term);
    }
    *err_bound = (p->n_terms + 2) * U * abs_sum;
    return g;
}

/* ======================================================================================== */
/* perturb                                                                                  */
/* ======================================================================================== */

/* One perturb call, checked against both references. */
static void check_perturb_case(zt_dtype src_dtype, zt_dtype dst_dtype, uint64_t offset, size_t n,
                               const zt_perturbation *p, uint32_t tensor_id) {
    set_context("perturb %s->%s %s offset %llu n %zu terms %d", zt_dtype_name(src_dtype),
                zt_dtype_name(dst_dtype), p->dist == ZT_DIST_GAUSSIAN ? "gauss" : "rademacher",
                (unsigned long long)offset, n, p->n_terms);
    void *src_host = random_tensor(src_dtype, n, -2.0, 2.0);
    guarded src_buf, dst_buf;
    void *src = guarded_copy(&src_buf, src_host, n * zt_dtype_size(src_dtype));
    void *dst = guarded_alloc(&dst_buf, n * zt_dtype_size(dst_dtype));
    ZT_CHECK_OK(
        be->ops->perturb(be, dst, dst_dtype, (zt_weight){src, src_dtype}, tensor_id, offset, n, p));

    void *want = test_alloc(n * zt_dtype_size(dst_dtype) + 1);
    size_t n_bit_mismatch = 0, n_out_of_bound = 0;
    double u_dst = dtype_roundoff(dst_dtype), floor_dst = dtype_subnormal_step(dst_dtype);
    for (size_t j = 0; j < n; j++) {
        float x = zt_load_f32(src_host, src_dtype, j);
        float g = mirror_g(p, tensor_id, offset + j);
        zt_store_rne(want, dst_dtype, j, p->n_terms > 0 ? x + g : x);
        if (!same_bits(dst, want, dst_dtype, j)) {
            if (n_bit_mismatch++ < 3)
                fprintf(stderr, "  %s: element %zu got %.9g want %.9g\n", context, j,
                        (double)zt_load_f32(dst, dst_dtype, j),
                        (double)zt_load_f32(want, dst_dtype, j));
        }
        /* f32 result: the g bound plus one rounding of the sum, U |x + g_f32|. Then the store
         * rounds to the nearest value of dst_dtype: u_dst of the magnitude, or half a subnormal
         * step near zero. */
        double err_g;
        double exact = (double)x + ref_g(p, tensor_id, offset + j, &err_g);
        double tol_f32 = err_g + U * (fabs(exact) + err_g);
        double tol = dst_dtype == ZT_F32
                         ? tol_f32
                         : tol_f32 + u_dst * (fabs(exact) + tol_f32) + 0.5 * floor_dst;
        tol *= 1 + 0x1p-40; /* the double reference's own roundings */
        if (!within(&hr_perturb, zt_load_f32(dst, dst_dtype, j), exact, tol)) n_out_of_bound++;
    }
    ZT_CHECK(n_bit_mismatch == 0, "%s: %zu of %zu elements differ from the f32 mirror", context,
             n_bit_mismatch, n);
    ZT_CHECK(n_out_of_bound == 0, "%s: %zu of %zu elements outside the double bound", context,
             n_out_of_bound, n);
    ZT_CHECK(memcmp(src, src_host, n * zt_dtype_size(src_dtype)) == 0, "%s: src modified", context);
    guarded_free(&src_buf, "src");
    guarded_free(&dst_buf, "dst");
    free(want);
    free(src_host);
}

static zt_direction *random_terms(int n_terms) {
    zt_direction *terms = test_alloc((size_t)n_terms * sizeof *terms);
    for (int i = 0; i < n_terms; i++) {
        terms[i].seed = rng_next();
        terms[i].coeff = rng_float(-2.0, 2.0);
    }
    return terms;
}

static void test_perturb_against_references(void) {
    /* Slices that start and end mid-block, single elements, whole blocks, and an offset past
     * 2^32 blocks so the high counter word is exercised. */
    static const struct {
        uint64_t offset;
        size_t n;
    } slices[] = {
        {0, 1},
        {0, 4},
        {0, 7},
        {1, 1},
        {1, 2},
        {2, 3},
        {3, 1},
        {3, 6},
        {5, 1000},
        {4097, 259},
        {((uint64_t)1 << 34) + 3, 13},
        {((uint64_t)1 << 40) + 6, 5},
    };
    const int term_counts[] = {0, 1, 3};
    const size_t n_slices = sizeof slices / sizeof slices[0];
    int n_cases = 0;
    for (int dist = 0; dist < 2; dist++) {
        for (int t = 0; t < 3; t++) {
            zt_direction *terms = random_terms(term_counts[t] ? term_counts[t] : 1);
            zt_perturbation p = {terms, term_counts[t], (zt_dist)dist, 1e-3f * (1 + t)};
            for (int s = 0; s < 3; s++)
                for (int d = 0; d < 3; d++)
                    for (size_t k = 0; k < n_slices; k++) {
                        check_perturb_case(ALL_DTYPES[s], ALL_DTYPES[d], slices[k].offset,
                                           slices[k].n, &p, (uint32_t)(7 * k + 3));
                        n_cases++;
                    }
            free(terms);
        }
    }
    /* More terms than the op keeps on its stack (64), and a perturbation at a size where the
     * steps are far from negligible against the weights. */
    zt_direction *many = random_terms(70);
    zt_perturbation p_many = {many, 70, ZT_DIST_GAUSSIAN, 0.05f};
    check_perturb_case(ZT_F32, ZT_F32, 11, 37, &p_many, 5);
    check_perturb_case(ZT_BF16, ZT_F16, 2, 23, &p_many, 6);
    zt_perturbation p_large = {many, 2, ZT_DIST_GAUSSIAN, 1.0f};
    check_perturb_case(ZT_F32, ZT_F32, 1, 100003, &p_large, 9);
    check_perturb_case(ZT_F16, ZT_BF16, 1, 100003, &p_large, 9);
    free(many);
    printf("perturb: %d cases (3x3 dtypes, 2 distributions, 0/1/3 terms, %zu slices) + 4\n",
           n_cases, n_slices);
}

/* In place (dst == src, MeZO's mode) must equal the out-of-place result; and perturbing a tensor
 * in slices must equal perturbing it whole. */
static void test_perturb_alias_and_slices(void) {
    const size_t n = 1001;
    const uint64_t offset = 3;
    zt_direction *terms = random_terms(2);
    for (int dist = 0; dist < 2; dist++) {
        zt_perturbation p = {terms, 2, (zt_dist)dist, 0.01f};
        for (int d = 0; d < 3; d++) {
            zt_dtype dtype = ALL_DTYPES[d];
            size_t bytes = n * zt_dtype_size(dtype);
            set_context("perturb in place %s dist %d", zt_dtype_name(dtype), dist);
            void *host = random_tensor(dtype, n, -1.0, 1.0);
            guarded src_buf, out_buf, inplace_buf, sliced_buf;
            void *src = guarded_copy(&src_buf, host, bytes);
            void *out = guarded_alloc(&out_buf, bytes);
            void *inplace = guarded_copy(&inplace_buf, host, bytes);
            void *sliced = guarded_alloc(&sliced_buf, bytes);
            ZT_CHECK_OK(
                be->ops->perturb(be, out, dtype, (zt_weight){src, dtype}, 4, offset, n, &p));
            ZT_CHECK_OK(be->ops->perturb(be, inplace, dtype, (zt_weight){inplace, dtype}, 4, offset,
                                         n, &p));
            ZT_CHECK(memcmp(out, inplace, bytes) == 0, "%s: in place differs from out of place",
                     context);
            /* Cuts at 1, 2 and 3 mod 4 from the tensor's start. */
            const size_t cuts[] = {0, 2, 7, 500, 998, n};
            size_t elem = zt_dtype_size(dtype);
            for (int c = 0; c + 1 < 6; c++) {
                size_t a = cuts[c], b = cuts[c + 1];
                ZT_CHECK_OK(be->ops->perturb(be, (uint8_t *)sliced + a * elem, dtype,
                                             (zt_weight){(uint8_t *)src + a * elem, dtype}, 4,
                                             offset + a, b - a, &p));
            }
            ZT_CHECK(memcmp(out, sliced, bytes) == 0, "%s: slices differ from the whole", context);
            guarded_free(&src_buf, "src");
            guarded_free(&out_buf, "out");
            guarded_free(&inplace_buf, "in-place buffer");
            guarded_free(&sliced_buf, "sliced output");
            free(host);
        }
    }
    free(terms);
}

/* n_terms = 0 converts exactly (RNE) or copies bit for bit, signed zeros included; n = 0 writes
 * nothing. */
static void test_perturb_copy_and_empty(void) {
    const size_t n = 37;
    zt_perturbation none = {NULL, 0, ZT_DIST_GAUSSIAN, 1.0f};
    for (int s = 0; s < 3; s++) {
        for (int d = 0; d < 3; d++) {
            set_context("perturb copy %s->%s", zt_dtype_name(ALL_DTYPES[s]),
                        zt_dtype_name(ALL_DTYPES[d]));
            void *host = random_tensor(ALL_DTYPES[s], n, -3.0, 3.0);
            guarded out_buf;
            void *out = guarded_alloc(&out_buf, n * zt_dtype_size(ALL_DTYPES[d]));
            ZT_CHECK_OK(be->ops->perturb(be, out, ALL_DTYPES[d], (zt_weight){host, ALL_DTYPES[s]},
                                         0, 1, n, &none));
            void *want = test_alloc(n * zt_dtype_size(ALL_DTYPES[d]));
            for (size_t j = 0; j < n; j++)
                zt_store_rne(want, ALL_DTYPES[d], j, zt_load_f32(host, ALL_DTYPES[s], j));
            ZT_CHECK(memcmp(out, want, n * zt_dtype_size(ALL_DTYPES[d])) == 0,
                     "%s: not an exact conversion", context);
            guarded_free(&out_buf, "out");
            free(want);
            free(host);
        }
    }
    set_context("perturb n = 0");
    zt_direction term = {1, 1.0f};
    zt_perturbation one = {&term, 1, ZT_DIST_GAUSSIAN, 1.0f};
    guarded empty_buf;
    void *empty = guarded_alloc(&empty_buf, 0);
    ZT_CHECK_OK(be->ops->perturb(be, empty, ZT_F32, (zt_weight){empty, ZT_F32}, 0, 5, 0, &one));
    guarded_free(&empty_buf, "empty output");
}

/* Expects `status` with a message that names the op. */
static void expect_error(zt_status got, zt_status want, const char *op, const char *what) {
    ZT_CHECK(got == want, "%s: %s gave %s, want %s", op, what, zt_status_name(got),
             zt_status_name(want));
    ZT_CHECK(strncmp(zt_last_error(), op, strlen(op)) == 0, "%s: %s: message '%s' lacks the op", op,
             what, zt_last_error());
}

static void test_perturb_errors(void) {
    float a[16] = {0}, b[16] = {0};
    zt_direction terms[2] = {{1, 1.0f}, {2, NAN}};
    zt_perturbation ok = {terms, 1, ZT_DIST_GAUSSIAN, 1.0f};
    zt_perturbation bad_coeff = {terms, 2, ZT_DIST_GAUSSIAN, 1.0f};
    zt_perturbation bad_scale = {terms, 1, ZT_DIST_GAUSSIAN, INFINITY};
    zt_perturbation bad_dist = {terms, 1, (zt_dist)7, 1.0f};
    zt_perturbation bad_count = {terms, -1, ZT_DIST_GAUSSIAN, 1.0f};
    zt_perturbation null_terms = {NULL, 1, ZT_DIST_GAUSSIAN, 1.0f};
    const zt_weight src = {b, ZT_F32};
    const zt_status INVALID = ZT_ERR_INVALID_ARG;
    const char *op = "perturb";
    expect_error(be->ops->perturb(be, NULL, ZT_F32, src, 0, 0, 4, &ok), INVALID, op, "NULL dst");
    expect_error(be->ops->perturb(be, a, (zt_dtype)9, src, 0, 0, 4, &ok), INVALID, op,
                 "bad dst dtype");
    expect_error(be->ops->perturb(be, a, ZT_F32, (zt_weight){NULL, ZT_F32}, 0, 0, 4, &ok), INVALID,
                 op, "NULL src");
    expect_error(be->ops->perturb(be, a, ZT_F32, (zt_weight){b, (zt_dtype)5}, 0, 0, 4, &ok),
                 INVALID, op, "bad src dtype");
    expect_error(be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, NULL), INVALID, op, "NULL p");
    expect_error(be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &bad_coeff), ZT_ERR_NUMERIC, op,
                 "NaN coefficient");
    expect_error(be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &bad_scale), ZT_ERR_NUMERIC, op,
                 "Inf z_scale");
    expect_error(be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &bad_dist), INVALID, op,
                 "unknown distribution");
    expect_error(be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &bad_count), INVALID, op,
                 "negative n_terms");
    expect_error(be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &null_terms), INVALID, op,
                 "NULL terms");
    expect_error(be->ops->perturb(be, a + 1, ZT_F32, (zt_weight){a, ZT_F32}, 0, 0, 8, &ok), INVALID,
                 op, "shifted overlap");
    expect_error(be->ops->perturb(be, a, ZT_BF16, (zt_weight){a, ZT_F32}, 0, 0, 8, &ok), INVALID,
                 op, "in place with another dtype");
    expect_error(be->ops->perturb(be, a, ZT_F32, src, 0, UINT64_MAX - 2, 4, &ok), INVALID, op,
                 "offset overflow");
    for (int i = 0; i < 16; i++)
        ZT_CHECK(a[i] == 0.0f && b[i] == 0.0f, "perturb errors: element %d written", i);
}

/* perturb_variants: K variants of a tensor from one draw per shared seed must equal K perturb
 * calls bit for bit, whether the seeds fit the CPU's shared draws (MeZO's pair; several terms
 * over a few seeds; a variant without terms) or not (more distinct seeds than it draws at once,
 * which goes variant by variant), on 1 and 2 threads. */
static void test_perturb_variants(void) {
    enum { MAX_K = 10 };
    static const struct {
        const char *name;
        int n_variants, n_seeds; /* variant k's terms: seeds (k + t) % n_seeds, t < n_terms */
        int n_terms[MAX_K];
    } sets[] = {
        {"+eps/-eps", 2, 1, {1, 1}},
        {"terms over three seeds, one without", 4, 3, {2, 3, 0, 1}},
        {"ten seeds (more than one draw pass holds)", 10, 10, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
    };
    static const size_t lengths[] = {1, 7, 1024, 4097, 70001};
    for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++)
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
            for (int di = 0; di < 3; di++) {
                const size_t n = lengths[li];
                const zt_dtype src_dtype = ALL_DTYPES[di], dst_dtype = ALL_DTYPES[(di + li) % 3];
                const zt_dist dist = (si + li) % 2 ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
                set_context("perturb_variants %s n=%zu %s->%s", sets[si].name, n,
                            zt_dtype_name(src_dtype), zt_dtype_name(dst_dtype));
                const int k_count = sets[si].n_variants;
                uint64_t seeds[MAX_K];
                for (int i = 0; i < sets[si].n_seeds; i++)
                    seeds[i] = rng_next();
                zt_direction terms[MAX_K][3];
                zt_perturbation p[MAX_K];
                for (int k = 0; k < k_count; k++) {
                    for (int t = 0; t < sets[si].n_terms[k]; t++)
                        terms[k][t] =
                            (zt_direction){seeds[(k + t) % sets[si].n_seeds], rng_float(-1.5, 1.5)};
                    p[k] = (zt_perturbation){terms[k], sets[si].n_terms[k], dist,
                                             rng_float(1e-3, 2e-2)};
                }
                void *src = random_tensor(src_dtype, n, -1.0, 1.0);
                const size_t bytes = n * zt_dtype_size(dst_dtype);
                void *got[MAX_K], *got1[MAX_K];
                for (int k = 0; k < k_count; k++) {
                    got[k] = test_alloc(bytes);
                    got1[k] = test_alloc(bytes);
                }
                void *want = test_alloc(bytes);
                const uint32_t id = (uint32_t)(rng_next() % 300);
                const zt_weight w = {src, src_dtype};
                /* the whole tensor, then a slice of a larger one (a block of the head table's
                 * rows): at a block boundary, and inside a Philox block */
                const uint64_t offsets[] = {0, 4 * (uint64_t)(li + 1) * 1031, 4 * li + 1};
                for (size_t oi = 0; oi < sizeof offsets / sizeof offsets[0]; oi++) {
                    const uint64_t off = offsets[oi];
                    ZT_CHECK_OK(
                        be->ops->perturb_variants(be, got, dst_dtype, w, id, off, n, p, k_count));
                    ZT_CHECK_OK(be1->ops->perturb_variants(be1, got1, dst_dtype, w, id, off, n, p,
                                                           k_count));
                    size_t n_diff = 0, n_thread_diff = 0;
                    for (int k = 0; k < k_count; k++) {
                        ZT_CHECK_OK(be->ops->perturb(be, want, dst_dtype, w, id, off, n, &p[k]));
                        n_diff += memcmp(got[k], want, bytes) != 0;
                        n_thread_diff += memcmp(got[k], got1[k], bytes) != 0;
                    }
                    ZT_CHECK(n_diff == 0, "%s offset %llu: %zu variants differ from perturb",
                             context, (unsigned long long)off, n_diff);
                    ZT_CHECK(n_thread_diff == 0, "%s offset %llu: %zu variants differ on 1 thread",
                             context, (unsigned long long)off, n_thread_diff);
                }
                for (int k = 0; k < k_count; k++) {
                    free(got[k]);
                    free(got1[k]);
                }
                free(want);
                free(src);
            }

    /* refusals, before anything is written */
    float a[16] = {0}, b[16] = {0}, c[16] = {0};
    zt_direction term = {1, 1.0f};
    const zt_perturbation p[2] = {{&term, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                  {&term, 1, ZT_DIST_GAUSSIAN, 1.0f}};
    const zt_weight src = {b, ZT_F32};
    const char *op = "perturb_variants";
    void *overlapping[2] = {a, a + 4};
    void *onto_src[2] = {a, b + 2};
    void *with_null[2] = {a, NULL};
    void *fine[2] = {a, c};
    expect_error(be->ops->perturb_variants(be, overlapping, ZT_F32, src, 0, 0, 8, p, 2),
                 ZT_ERR_INVALID_ARG, op, "overlapping dsts");
    expect_error(be->ops->perturb_variants(be, onto_src, ZT_F32, src, 0, 0, 8, p, 2),
                 ZT_ERR_INVALID_ARG, op, "dst over src");
    expect_error(be->ops->perturb_variants(be, with_null, ZT_F32, src, 0, 0, 8, p, 2),
                 ZT_ERR_INVALID_ARG, op, "NULL dst");
    expect_error(be->ops->perturb_variants(be, fine, ZT_F32, src, 0, 0, 8, p, 0),
                 ZT_ERR_INVALID_ARG, op, "no variants");
    for (int i = 0; i < 16; i++)
        ZT_CHECK(a[i] == 0.0f && b[i] == 0.0f && c[i] == 0.0f,
                 "perturb_variants errors: element %d written", i);
}

/* ======================================================================================== */
/* z_sumsq                                                                                  */
/* ======================================================================================== */

static void test_z_sumsq(void) {
    const size_t sizes[] = {1, 3, 4, 5, 4099, 16384, 16385, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        uint64_t seed = rng_next();
        set_context("z_sumsq n %zu", n);
        double got = NAN;
        ZT_CHECK_OK(be->ops->z_sumsq(be, &got, seed, 17, n, ZT_DIST_GAUSSIAN));
        /* Each z^2 is exact in double (24-bit squares); any summation order of n non-negative
         * terms is within (n - 1) 2^-53 of the exact sum, relative, so two orders are within
         * twice that of each other. */
        double want = 0.0;
        for (size_t j = 0; j < n; j++) {
            double z = (double)zt_z_gauss(seed, 17, j);
            want += z * z;
        }
        double tol = 2.0 * (double)(n - 1) * 0x1p-53 * want;
        ZT_CHECK(within(&hr_sumsq, got, want, tol) && (n > 1 || got == want),
                 "%s: got %.17g want %.17g tol %.3g", context, got, want, tol);
        double rademacher = -1.0;
        ZT_CHECK_OK(be->ops->z_sumsq(be, &rademacher, seed, 17, n, ZT_DIST_RADEMACHER));
        ZT_CHECK(rademacher == (double)n, "%s: rademacher sum %.17g, want %zu", context, rademacher,
                 n);
    }

    /* E[z^2] = 1 and Var[z^2] = 2 for a standard normal, so the mean of n squares has standard
     * error sqrt(2 / n); 6 of them is a bound a correct generator breaks with probability about
     * 2e-9 for this fixed seed. */
    const size_t n = (size_t)1 << 20;
    double sum = 0.0;
    ZT_CHECK_OK(be->ops->z_sumsq(be, &sum, 0x123456789ull, 2, n, ZT_DIST_GAUSSIAN));
    double mean = sum / (double)n, bound = 6.0 * sqrt(2.0 / (double)n);
    ZT_CHECK(fabs(mean - 1.0) <= bound, "z_sumsq: mean z^2 %.6f, |mean - 1| > %.6f", mean, bound);
    printf("z_sumsq: n = 2^20 gives mean z^2 = %.6f (|mean - 1| = %.2e, 6-sigma bound %.2e)\n",
           mean, fabs(mean - 1.0), bound);

    double empty = -1.0;
    ZT_CHECK_OK(be->ops->z_sumsq(be, &empty, 1, 1, 0, ZT_DIST_GAUSSIAN));
    ZT_CHECK(empty == 0.0, "z_sumsq: n = 0 gave %g", empty);
    expect_error(be->ops->z_sumsq(be, NULL, 1, 1, 4, ZT_DIST_GAUSSIAN), ZT_ERR_INVALID_ARG,
                 "z_sumsq", "NULL out");
    expect_error(be->ops->z_sumsq(be, &empty, 1, 1, 4, (zt_dist)3), ZT_ERR_INVALID_ARG, "z_sumsq",
                 "unknown distribution");
}

/* ======================================================================================== */
/* update                                                                                   */
/* ======================================================================================== */

/* The f32 mirror of one element's update (update.c's documented order); advances m, v, vhat. */
static float mirror_update(const zt_update *u, float theta, float g, float *m, float *v,
                           float *vhat) {
    float d;
    if (u->rule == ZT_UPDATE_SGD) {
        d = g;
    } else if (u->rule == ZT_UPDATE_SIGN) {
        d = g > 0.0f ? 1.0f : g < 0.0f ? -1.0f : 0.0f;
    } else if (u->rule == ZT_UPDATE_MOMENTUM) {
        *m = u->beta1 * *m + g;
        d = *m;
    } else {
        float one_minus_beta1 = 1.0f - u->beta1, one_minus_beta2 = 1.0f - u->beta2;
        *m = u->beta1 * *m + one_minus_beta1 * g;
        *v = u->beta2 * *v + one_minus_beta2 * (g * g);
        if (*v > *vhat) *vhat = *v;
        d = *m / (sqrtf(*vhat) + u->eps);
    }
    float step = u->lr * (d + u->weight_decay * theta);
    return step != 0.0f ? theta - step : theta;
}

/* One element in the double reference: exact values and bounds on |f32 op - exact|. */
typedef struct ref_state {
    double theta, m, v, vhat;
    double e_theta, e_m, e_v, e_vhat;
} ref_state;

/* |fl(a * b) - a b| when a is exact and b carries e_b: |a| e_b + U |a| (|b| + e_b). */
static double err_mul_exact(double a, double b, double e_b) {
    return fabs(a) * e_b + U * fabs(a) * (fabs(b) + e_b);
}

/* |fl(x + y) - (x + y)| for operands carrying e_x, e_y: e_x + e_y + U (|x + y| + e_x + e_y). */
static double err_add(double sum, double e_x, double e_y) {
    return e_x + e_y + U * (fabs(sum) + e_x + e_y);
}

/* Advances r by one step of u with direction sum g (bound e_g) in double, propagating the bound
 * through every f32 operation of the documented order. 1-beta is rounded to f32 once; its error
 * is measured, not assumed (it is 0 for beta in [0.5, 1] by Sterbenz's lemma). */
static void ref_update(ref_state *r, const zt_update *u, double g, double e_g) {
    double d, e_d;
    if (u->rule == ZT_UPDATE_SGD) {
        d = g;
        e_d = e_g;
    } else if (u->rule == ZT_UPDATE_SIGN) {
        d = g > 0 ? 1.0 : g < 0 ? -1.0 : 0.0;
        e_d = fabs(g) > e_g ? 0.0 : 2.0; /* the f32 g may have either sign */
    } else if (u->rule == ZT_UPDATE_MOMENTUM) {
        double scaled = u->beta1 * r->m;
        double e_scaled = err_mul_exact(u->beta1, r->m, r->e_m);
        r->m = scaled + g;
        r->e_m = err_add(r->m, e_scaled, e_g);
        d = r->m;
        e_d = r->e_m;
    } else {
        double b1 = u->beta1, b2 = u->beta2;
        double omb1 = 1.0 - b1, omb2 = 1.0 - b2;
        double e_omb1 = fabs((double)(1.0f - u->beta1) - omb1);
        double e_omb2 = fabs((double)(1.0f - u->beta2) - omb2);
        /* m = b1 m + (1 - b1) g */
        double e_t1 = err_mul_exact(b1, r->m, r->e_m);
        double e_t2 = omb1 * e_g + e_omb1 * (fabs(g) + e_g) + U * (omb1 + e_omb1) * (fabs(g) + e_g);
        r->m = b1 * r->m + omb1 * g;
        r->e_m = err_add(r->m, e_t1, e_t2);
        /* v = b2 v + (1 - b2) g^2 */
        double gg = g * g;
        double e_gg = 2.0 * fabs(g) * e_g + e_g * e_g + U * (fabs(g) + e_g) * (fabs(g) + e_g);
        double e_t3 = err_mul_exact(b2, r->v, r->e_v);
        double e_t4 = omb2 * e_gg + e_omb2 * (gg + e_gg) + U * (omb2 + e_omb2) * (gg + e_gg);
        r->v = b2 * r->v + omb2 * gg;
        r->e_v = err_add(r->v, e_t3, e_t4);
        /* vhat = max(vhat, v): max is 1-Lipschitz in each argument */
        r->vhat = r->v > r->vhat ? r->v : r->vhat;
        r->e_vhat = r->e_v > r->e_vhat ? r->e_v : r->e_vhat;
        /* sqrt: |sqrt(a) - sqrt(b)| <= min(sqrt|a - b|, |a - b| / sqrt(b)) */
        double root = sqrt(r->vhat);
        double e_root = sqrt(r->e_vhat);
        if (root > 0 && r->e_vhat / root < e_root) e_root = r->e_vhat / root;
        e_root += U * (root + e_root);
        double den = root + u->eps;
        double e_den = e_root + U * (den + e_root);
        d = r->m / den;
        e_d = (r->e_m + fabs(d) * e_den) / (den - e_den);
        e_d += U * (fabs(d) + e_d);
    }
    /* step = lr (d + wd theta); theta' = theta - step. When the op keeps theta because its step
     * rounded to zero, the exact step is within e_step of zero, so the same bound holds. */
    double decay = u->weight_decay * r->theta;
    double e_decay = err_mul_exact(u->weight_decay, r->theta, r->e_theta);
    double inner = d + decay;
    double e_inner = err_add(inner, e_d, e_decay);
    double step = u->lr * inner;
    double e_step = err_mul_exact(u->lr, inner, e_inner);
    double theta = r->theta - step;
    r->e_theta = err_add(theta, r->e_theta, e_step);
    r->theta = theta;
}

static const char *rule_name(zt_update_rule rule) {
    static const char *names[] = {"sgd", "sign", "momentum", "adamm"};
    return names[rule];
}

static zt_update make_update(zt_update_rule rule, zt_direction *terms, int n_terms, zt_dist dist,
                             float lr, float weight_decay) {
    zt_update u;
    memset(&u, 0, sizeof u);
    u.grad = (zt_perturbation){terms, n_terms, dist, 1.0f};
    u.rule = rule;
    u.lr = lr;
    u.weight_decay = weight_decay;
    u.beta1 = 0.9f;
    u.beta2 = 0.999f;
    u.eps = 1e-8f;
    return u;
}

static size_t state_floats(zt_update_rule rule, size_t n) {
    return rule == ZT_UPDATE_ADAMM ? 3 * n : rule == ZT_UPDATE_MOMENTUM ? n : 0;
}

/* The expected stored bits of element j: the mirror's f32 value rounded as the op must round. */
static void store_expected(void *want, zt_dtype dtype, size_t j, float value, const zt_update *u,
                           uint32_t tensor_id) {
    if (dtype == ZT_F32 || !u->stochastic_rounding) {
        zt_store_rne(want, dtype, j, value);
        return;
    }
    uint32_t random = zt_sr_bits_at(zt_tensor_key(u->rounding_seed, tensor_id), j);
    ((uint16_t *)want)[j] =
        dtype == ZT_F16 ? zt_sr_f32_to_f16(value, random) : zt_sr_f32_to_bf16(value, random);
}

/* n_steps updates of one tensor; after each, theta and state must equal the f32 mirror bit for
 * bit; for f32 theta the double reference must hold too, after every step. */
static void check_update_case(zt_update_rule rule, zt_dtype dtype, int stochastic, int n_steps,
                              float weight_decay, size_t n, headroom *hr) {
    const uint32_t tensor_id = 21;
    set_context("update %s %s sr %d steps %d wd %g n %zu", rule_name(rule), zt_dtype_name(dtype),
                stochastic, n_steps, (double)weight_decay, n);
    void *theta_host = random_tensor(dtype, n, -1.0, 1.0);
    size_t bytes = n * zt_dtype_size(dtype), n_state = state_floats(rule, n);
    guarded theta_buf, state_buf;
    void *theta = guarded_copy(&theta_buf, theta_host, bytes);
    float *state = n_state ? guarded_alloc(&state_buf, n_state * sizeof(float)) : NULL;
    if (state) memset(state, 0, n_state * sizeof(float));
    /* The mirror's own state, and the double reference per element. */
    float *mirror_state = test_alloc((3 * n + 1) * sizeof(float));
    memset(mirror_state, 0, (3 * n + 1) * sizeof(float));
    ref_state *ref = test_alloc(n * sizeof *ref);
    for (size_t j = 0; j < n; j++) {
        memset(&ref[j], 0, sizeof ref[j]);
        ref[j].theta = zt_load_f32(theta_host, dtype, j);
    }
    void *want = test_alloc(bytes + 1);
    memcpy(want, theta_host, bytes);

    for (int step = 0; step < n_steps; step++) {
        int n_terms = 1 + step % 3;
        zt_direction *terms = random_terms(n_terms);
        zt_update u = make_update(rule, terms, n_terms, (zt_dist)(step % 2), 1e-3f, weight_decay);
        u.grad.z_scale = 0.5f;
        u.stochastic_rounding = stochastic;
        u.rounding_seed = rng_next();
        ZT_CHECK_OK(be->ops->update(be, theta, dtype, tensor_id, n, state, &u));

        size_t n_theta_bad = 0, n_state_bad = 0, n_out_of_bound = 0;
        for (size_t j = 0; j < n; j++) {
            float *m = mirror_state + j, *v = mirror_state + n + j,
                  *vhat = mirror_state + 2 * n + j;
            float value = mirror_update(&u, zt_load_f32(want, dtype, j),
                                        mirror_g(&u.grad, tensor_id, j), m, v, vhat);
            store_expected(want, dtype, j, value, &u, tensor_id);
            if (!same_bits(theta, want, dtype, j) && n_theta_bad++ < 3)
                fprintf(stderr, "  %s step %d: theta[%zu] got %.9g want %.9g\n", context, step, j,
                        (double)zt_load_f32(theta, dtype, j), (double)zt_load_f32(want, dtype, j));
            if (rule == ZT_UPDATE_MOMENTUM && memcmp(&state[j], m, sizeof *m) != 0) n_state_bad++;
            if (rule == ZT_UPDATE_ADAMM &&
                (memcmp(&state[j], m, sizeof *m) || memcmp(&state[n + j], v, sizeof *v) ||
                 memcmp(&state[2 * n + j], vhat, sizeof *vhat)))
                n_state_bad++;
            if (dtype == ZT_F32 && hr) {
                double e_g;
                double g = ref_g(&u.grad, tensor_id, j, &e_g);
                ref_update(&ref[j], &u, g, e_g);
                /* The reference runs in double; 2^-40 relative covers its own roundings. */
                double tol = ref[j].e_theta * (1 + 0x1p-40) + 0x1p-40 * fabs(ref[j].theta);
                if (!within(hr, zt_load_f32(theta, dtype, j), ref[j].theta, tol) &&
                    n_out_of_bound++ < 3)
                    fprintf(stderr, "  %s step %d: theta[%zu] got %.9g ref %.9g tol %.3g\n",
                            context, step, j, (double)zt_load_f32(theta, dtype, j), ref[j].theta,
                            tol);
            }
        }
        ZT_CHECK(n_theta_bad == 0, "%s step %d: %zu of %zu weights differ from the mirror", context,
                 step, n_theta_bad, n);
        ZT_CHECK(n_state_bad == 0, "%s step %d: %zu of %zu state elements differ from the mirror",
                 context, step, n_state_bad, n);
        ZT_CHECK(n_out_of_bound == 0, "%s step %d: %zu of %zu weights outside the double bound",
                 context, step, n_out_of_bound, n);
        free(terms);
    }
    guarded_free(&theta_buf, "theta");
    if (state) guarded_free(&state_buf, "state");
    free(mirror_state);
    free(ref);
    free(want);
    free(theta_host);
}

static void test_update_rules(void) {
    int n_cases = 0;
    for (int rule = 0; rule < 4; rule++) {
        /* One step from fresh state, each dtype and rounding. */
        for (int d = 0; d < 3; d++)
            for (int sr = 0; sr < 2; sr++) {
                if (ALL_DTYPES[d] == ZT_F32 && sr) continue;
                check_update_case((zt_update_rule)rule, ALL_DTYPES[d], sr, 1, 0.0f, 1003,
                                  &hr_update);
                check_update_case((zt_update_rule)rule, ALL_DTYPES[d], sr, 1, 0.1f, 6, &hr_update);
                n_cases += 2;
            }
        /* Several steps: momentum and AdaMM state carried over, theta compounding. */
        check_update_case((zt_update_rule)rule, ZT_F32, 0, 5, 0.01f, 1003, &hr_update_multi);
        check_update_case((zt_update_rule)rule, ZT_BF16, 1, 5, 0.01f, 257, NULL);
        check_update_case((zt_update_rule)rule, ZT_F16, 1, 5, 0.0f, 258, NULL);
        n_cases += 3;
    }
    printf("update: %d cases (4 rules x f32/f16/bf16 x RNE/SR, 1 and 5 steps)\n", n_cases);
}

/* SGD on f32 with one Rademacher term, against theta - lr * (coeff * z) written out here,
 * independently of the mirror helpers: bit for bit. */
static void test_update_sgd_f32_exact(void) {
    const size_t n = 4099;
    set_context("update sgd f32 exact");
    zt_direction terms[1] = {{42, 0.75f}};
    zt_update u = make_update(ZT_UPDATE_SGD, terms, 1, ZT_DIST_RADEMACHER, 0.5f, 0.0f);
    float *theta = random_tensor(ZT_F32, n, -1.0, 1.0);
    float *want = test_alloc(n * sizeof *want);
    for (size_t j = 0; j < n; j++) {
        float step = 0.5f * (0.75f * zt_z_rademacher(42, 3, j));
        want[j] = step != 0.0f ? theta[j] - step : theta[j];
    }
    ZT_CHECK_OK(be->ops->update(be, theta, ZT_F32, 3, n, NULL, &u));
    ZT_CHECK(memcmp(theta, want, n * sizeof *want) == 0,
             "update sgd rademacher: not bit-exact to theta - lr*coeff*z");
    free(theta);
    free(want);
}

/* The update's count of non-finite stored weights equals a recount of the stored tensor after
 * the call (widened and tested with isfinite): overflows of the storage range (f16's 65504
 * included) and NaNs already present, over every thread and the ragged tail. */
static void test_update_nonfinite_count(void) {
    const size_t n = 4099;
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    static const double big[] = {3e38, 65000.0, 3e38}, lr[] = {1e38, 1000.0, 1e38};
    for (int d = 0; d < 3; d++) {
        zt_dtype dtype = dtypes[d];
        set_context("update non-finite count %s", zt_dtype_name(dtype));
        zt_direction terms[1] = {{7, 1.0f}};
        zt_update u = make_update(ZT_UPDATE_SGD, terms, 1, ZT_DIST_RADEMACHER, (float)lr[d], 0.0f);
        void *theta = random_tensor(dtype, n, -1.0, 1.0);
        for (size_t j = 0; j < n; j++) {
            if (j % 7 == 0) zt_store_rne(theta, dtype, j, (float)big[d]);
            if (j % 11 == 0) zt_store_rne(theta, dtype, j, NAN);
        }
        unsigned long long counted = 0;
        u.n_nonfinite = &counted;
        ZT_CHECK_OK(be->ops->update(be, theta, dtype, 5, n, NULL, &u));
        unsigned long long want = 0;
        for (size_t j = 0; j < n; j++)
            want += !isfinite((double)zt_load_f32(theta, dtype, j));
        ZT_CHECK(want > n / 11 + n / 30 && counted == want,
                 "%s: the update counted %llu non-finite weights, the tensor holds %llu",
                 zt_dtype_name(dtype), counted, want);
        free(theta);
    }
}

/* ---- stochastic rounding ---- */

/* The stored neighbours of x in dtype: lo <= x <= hi (magnitudes toward zero / away). */
static void grid_neighbours(float x, zt_dtype dtype, float *below, float *above) {
    uint16_t rounded = dtype == ZT_F16 ? zt_f32_to_f16(x) : zt_f32_to_bf16(x);
    float r = dtype == ZT_F16 ? zt_f16_to_f32(rounded) : zt_bf16_to_f32(rounded);
    /* Step one code toward x's other side (positive values: codes increase with value). */
    uint16_t other = r > x ? (uint16_t)(rounded - 1) : r < x ? (uint16_t)(rounded + 1) : rounded;
    float o = dtype == ZT_F16 ? zt_f16_to_f32(other) : zt_bf16_to_f32(other);
    *below = r < o ? r : o;
    *above = r < o ? o : r;
}

/* (1) Unbiased: weights in [1, 2), SGD steps of +-0.3 ulp (Rademacher z). Round-to-nearest
 * never moves them. With SR each result is one of the two neighbours of the f32 result t, the
 * upper with probability p = (t - below) / ulp, so its expectation is t. Over N results the mean
 * of (result - t), and the mean of (result - t) * sign(step), have standard error
 * ulp sqrt(sum p(1-p)) / N; the checks allow 5 of them. The second statistic is the one
 * round-to-nearest fails: for RNE it is exactly the step, 0.3 ulp, on every element. */
static void test_sr_unbiased(zt_dtype dtype) {
    const size_t n = 4096;
    const int n_seeds = 256;
    const double ulp = dtype == ZT_BF16 ? 0x1p-7 : 0x1p-10; /* spacing in [1, 2) */
    const uint32_t tensor_id = 8;
    set_context("sr unbiased %s", zt_dtype_name(dtype));
    uint16_t *start = test_alloc(n * sizeof *start);
    for (size_t j = 0; j < n; j++) /* away from the binade's ends by more than the step */
        start[j] = dtype == ZT_BF16 ? zt_f32_to_bf16(rng_float(1.05, 1.95))
                                    : zt_f32_to_f16(rng_float(1.05, 1.95));
    zt_direction term = {777, 1.0f};
    zt_update u =
        make_update(ZT_UPDATE_SGD, &term, 1, ZT_DIST_RADEMACHER, (float)(0.3 * ulp), 0.0f);
    guarded buf;
    uint16_t *theta = guarded_alloc(&buf, n * sizeof *theta);

    /* Round to nearest: a 0.3 ulp step is lost. */
    memcpy(theta, start, n * sizeof *theta);
    ZT_CHECK_OK(be->ops->update(be, theta, dtype, tensor_id, n, NULL, &u));
    ZT_CHECK(memcmp(theta, start, n * sizeof *theta) == 0, "%s: round-to-nearest moved a weight",
             context);

    double sum_dev = 0.0, sum_signed_dev = 0.0, sum_var = 0.0, rne_signed_dev = 0.0;
    size_t n_off_grid = 0, n_samples = 0;
    u.stochastic_rounding = 1;
    for (int s = 0; s < n_seeds; s++) {
        u.rounding_seed = 1000 + (uint64_t)s * 7919;
        memcpy(theta, start, n * sizeof *theta);
        ZT_CHECK_OK(be->ops->update(be, theta, dtype, tensor_id, n, NULL, &u));
        for (size_t j = 0; j < n; j++) {
            float w = dtype == ZT_BF16 ? zt_bf16_to_f32(start[j]) : zt_f16_to_f32(start[j]);
            float z = zt_z_rademacher(term.seed, tensor_id, j);
            float step = u.lr * (term.coeff * z);
            float exact = w - step; /* the f32 result t */
            float got = dtype == ZT_BF16 ? zt_bf16_to_f32(theta[j]) : zt_f16_to_f32(theta[j]);
            float below, above;
            grid_neighbours(exact, dtype, &below, &above);
            if (got != below && got != above) n_off_grid++;
            double p = ((double)exact - below) / (above - below);
            sum_dev += (double)got - exact;
            sum_signed_dev += ((double)got - exact) * z;
            sum_var += p * (1.0 - p) * ulp * ulp;
            rne_signed_dev += ((double)w - exact) * z;
            n_samples++;
        }
    }
    double mean_dev = sum_dev / (double)n_samples;
    double mean_signed_dev = sum_signed_dev / (double)n_samples;
    double rne_mean = rne_signed_dev / (double)n_samples;
    double std_err = sqrt(sum_var) / (double)n_samples;
    ZT_CHECK(n_off_grid == 0, "%s: %zu results are not a neighbour of the exact value", context,
             n_off_grid);
    ZT_CHECK(fabs(mean_dev) <= 5.0 * std_err,
             "%s: mean deviation %.3g ulp > 5 standard errors "
             "(%.3g ulp)",
             context, mean_dev / ulp, 5.0 * std_err / ulp);
    ZT_CHECK(fabs(mean_signed_dev) <= 5.0 * std_err,
             "%s: mean deviation along the step %.3g ulp "
             "> 5 standard errors (%.3g ulp)",
             context, mean_signed_dev / ulp, 5.0 * std_err / ulp);
    ZT_CHECK(fabs(rne_mean) > 100.0 * std_err,
             "%s: RNE's bias %.3g ulp is within 100 standard "
             "errors: the test cannot tell SR from RNE",
             context, rne_mean / ulp);
    printf("SR %s: %zu samples, steps of 0.3 ulp: mean(result - t) = %+.2e ulp (%+.2f se), "
           "along the step %+.2e ulp (%+.2f se), se %.2e ulp, bound 5 se; round-to-nearest "
           "along the step: %+.3f ulp\n",
           zt_dtype_name(dtype), n_samples, mean_dev / ulp, mean_dev / std_err,
           mean_signed_dev / ulp, mean_signed_dev / std_err, std_err / ulp, rne_mean / ulp);
    guarded_free(&buf, "theta");
    free(start);
}

/* (2) Same rounding_seed, same bits; another seed, other bits somewhere. */
static void test_sr_deterministic(void) {
    const size_t n = 2051;
    for (int d = 1; d < 3; d++) {
        zt_dtype dtype = ALL_DTYPES[d];
        set_context("sr determinism %s", zt_dtype_name(dtype));
        void *start = random_tensor(dtype, n, -1.0, 1.0);
        size_t bytes = n * 2;
        void *a = test_alloc(bytes), *b = test_alloc(bytes), *c = test_alloc(bytes);
        zt_direction terms[2] = {{5, 1.0f}, {6, -0.5f}};
        zt_update u = make_update(ZT_UPDATE_SGD, terms, 2, ZT_DIST_GAUSSIAN, 1e-4f, 0.0f);
        u.stochastic_rounding = 1;
        u.rounding_seed = 99;
        memcpy(a, start, bytes);
        memcpy(b, start, bytes);
        memcpy(c, start, bytes);
        ZT_CHECK_OK(be->ops->update(be, a, dtype, 1, n, NULL, &u));
        ZT_CHECK_OK(be->ops->update(be, b, dtype, 1, n, NULL, &u));
        u.rounding_seed = 100;
        ZT_CHECK_OK(be->ops->update(be, c, dtype, 1, n, NULL, &u));
        ZT_CHECK(memcmp(a, b, bytes) == 0, "%s: same seed, different bits", context);
        ZT_CHECK(memcmp(a, c, bytes) != 0, "%s: another seed, identical bits", context);
        free(a);
        free(b);
        free(c);
        free(start);
    }
}

/* (3) lr = 0 leaves every weight bit-identical, stochastic rounding or not, every rule, with
 * weight decay on: signed zeros, subnormals and the largest finite values included. */
static void test_lr_zero_identity(void) {
    const size_t n = 515;
    for (int d = 0; d < 3; d++) {
        zt_dtype dtype = ALL_DTYPES[d];
        void *start = random_tensor(dtype, n, -4.0, 4.0);
        const float specials[] = {
            -0.0f,     0.0f,     0x1p-149f, -0x1p-140f,    0x1p-24f, -0x1p-20f,
            0x1p-130f, 65504.0f, -65504.0f, 3.3895314e38f, 1e-3f,    -1e-3f,
        };
        for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
            zt_store_rne(start, dtype, 3 * i + 2, specials[i]);
            /* Values past the dtype's range would be Inf, where wd * theta makes 0 * Inf. */
            if (!isfinite(zt_load_f32(start, dtype, 3 * i + 2)))
                zt_store_rne(start, dtype, 3 * i + 2, 1.0f);
        }
        /* Negative zeros under steps of both signs: -0 - (-0) would give +0. */
        for (size_t j = 100; j < n; j += 5)
            zt_store_rne(start, dtype, j, -0.0f);
        size_t bytes = n * zt_dtype_size(dtype);
        for (int rule = 0; rule < 4; rule++)
            for (int sr = 0; sr < 2; sr++) {
                set_context("lr 0 %s %s sr %d", zt_dtype_name(dtype),
                            rule_name((zt_update_rule)rule), sr);
                zt_direction terms[2] = {{11, 3.0f}, {12, -2.0f}};
                zt_update u =
                    make_update((zt_update_rule)rule, terms, 2, ZT_DIST_GAUSSIAN, 0.0f, 0.01f);
                u.stochastic_rounding = sr;
                u.rounding_seed = 4242;
                guarded theta_buf, state_buf;
                void *theta = guarded_copy(&theta_buf, start, bytes);
                size_t n_state = state_floats((zt_update_rule)rule, n);
                float *state = n_state ? guarded_alloc(&state_buf, n_state * sizeof(float)) : NULL;
                if (state) memset(state, 0, n_state * sizeof(float));
                ZT_CHECK_OK(be->ops->update(be, theta, dtype, 2, n, state, &u));
                ZT_CHECK(memcmp(theta, start, bytes) == 0, "%s: weights changed", context);
                if (state) {
                    /* The state still advances: lr scales the step, not the statistics. */
                    ZT_CHECK(state[0] != 0.0f, "%s: state did not advance", context);
                    guarded_free(&state_buf, "state");
                }
                guarded_free(&theta_buf, "theta");
            }
        free(start);
    }
}

static void test_update_errors(void) {
    float theta[8] = {0}, state[24] = {0};
    zt_direction term = {1, 1.0f};
    const char *op = "update";
    const zt_status INVALID = ZT_ERR_INVALID_ARG;
    zt_update u = make_update(ZT_UPDATE_SGD, &term, 1, ZT_DIST_GAUSSIAN, 1.0f, 0.0f);
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, NULL, NULL), INVALID, op, "NULL u");
    expect_error(be->ops->update(be, NULL, ZT_F32, 0, 8, NULL, &u), INVALID, op, "NULL theta");
    expect_error(be->ops->update(be, theta, (zt_dtype)4, 0, 8, NULL, &u), INVALID, op, "bad dtype");
    zt_update bad = u;
    bad.lr = NAN;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, NULL, &bad), ZT_ERR_NUMERIC, op,
                 "NaN lr");
    bad = u;
    bad.weight_decay = INFINITY;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, NULL, &bad), ZT_ERR_NUMERIC, op,
                 "Inf weight_decay");
    bad = u;
    bad.rule = (zt_update_rule)9;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, NULL, &bad), INVALID, op, "bad rule");
    bad = u;
    bad.rule = ZT_UPDATE_MOMENTUM;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, NULL, &bad), INVALID, op,
                 "momentum without state");
    bad.beta1 = 1.5f;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, state, &bad), INVALID, op,
                 "momentum beta1 1.5");
    bad = u;
    bad.rule = ZT_UPDATE_ADAMM;
    bad.eps = 0.0f;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, state, &bad), INVALID, op, "adamm eps 0");
    bad.eps = 1e-8f;
    bad.beta2 = NAN;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, state, &bad), INVALID, op,
                 "adamm beta2 NaN");
    bad.beta2 = 0.999f;
    expect_error(be->ops->update(be, state + 4, ZT_F32, 0, 8, state, &bad), INVALID, op,
                 "state overlapping theta");
    bad = u;
    bad.grad.n_terms = -3;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, NULL, &bad), INVALID, op,
                 "negative n_terms");
    bad = u;
    bad.grad.dist = (zt_dist)2;
    expect_error(be->ops->update(be, theta, ZT_F32, 0, 8, NULL, &bad), INVALID, op,
                 "unknown distribution");
    for (int i = 0; i < 8; i++)
        ZT_CHECK(theta[i] == 0.0f, "update errors: theta[%d] written", i);
    for (int i = 0; i < 24; i++)
        ZT_CHECK(state[i] == 0.0f, "update errors: state[%d] written", i);
}

/* ======================================================================================== */
/* thread-count independence                                                                */
/* ======================================================================================== */

typedef struct thread_probe {
    void *perturbed;    /* (n) bf16 */
    float *adamm;       /* (n) f32 theta after two AdaMM steps */
    float *adamm_state; /* (3, n) */
    void *sr;           /* (n) bf16 after an SR update */
    double sumsq;
} thread_probe;

enum { PROBE_N = 100003 };

static void run_probe(zt_backend *b, thread_probe *out) {
    const size_t n = PROBE_N;
    uint64_t saved = rng_state;
    rng_state = 0xfeedull; /* the same inputs on every run */
    zt_direction terms[3] = {{71, 0.5f}, {72, -1.25f}, {73, 2.0f}};
    float *src = random_tensor(ZT_F32, n, -1.0, 1.0);
    zt_perturbation p = {terms, 3, ZT_DIST_GAUSSIAN, 0.01f};
    out->perturbed = test_alloc(n * 2);
    ZT_CHECK_OK(
        b->ops->perturb(b, out->perturbed, ZT_BF16, (zt_weight){src, ZT_F32}, 13, 5, n, &p));
    out->adamm = src; /* updated in place */
    out->adamm_state = test_alloc(3 * n * sizeof(float));
    memset(out->adamm_state, 0, 3 * n * sizeof(float));
    zt_update u = make_update(ZT_UPDATE_ADAMM, terms, 3, ZT_DIST_GAUSSIAN, 1e-3f, 0.01f);
    ZT_CHECK_OK(b->ops->update(b, out->adamm, ZT_F32, 13, n, out->adamm_state, &u));
    u.grad.terms = terms + 1;
    u.grad.n_terms = 2;
    ZT_CHECK_OK(b->ops->update(b, out->adamm, ZT_F32, 13, n, out->adamm_state, &u));
    out->sr = random_tensor(ZT_BF16, n, -1.0, 1.0);
    zt_update sr = make_update(ZT_UPDATE_SGD, terms, 3, ZT_DIST_RADEMACHER, 1e-4f, 0.0f);
    sr.stochastic_rounding = 1;
    sr.rounding_seed = 31337;
    ZT_CHECK_OK(b->ops->update(b, out->sr, ZT_BF16, 13, n, NULL, &sr));
    ZT_CHECK_OK(b->ops->z_sumsq(b, &out->sumsq, 74, 13, n, ZT_DIST_GAUSSIAN));
    rng_state = saved;
}

static void free_probe(thread_probe *t) {
    free(t->perturbed);
    free(t->adamm);
    free(t->adamm_state);
    free(t->sr);
}

static int probes_equal(const thread_probe *a, const thread_probe *b) {
    const size_t n = PROBE_N;
    return memcmp(a->perturbed, b->perturbed, n * 2) == 0 &&
           memcmp(a->adamm, b->adamm, n * sizeof(float)) == 0 &&
           memcmp(a->adamm_state, b->adamm_state, 3 * n * sizeof(float)) == 0 &&
           memcmp(a->sr, b->sr, n * 2) == 0 && memcmp(&a->sumsq, &b->sumsq, sizeof a->sumsq) == 0;
}

static void test_thread_independence(void) {
    thread_probe one, two;
    set_context("threads");
    run_probe(be1, &one);
    run_probe(be, &two);
    ZT_CHECK(probes_equal(&one, &two), "backends with 1 and 2 threads disagree");
#if ZT_HAVE_OPENMP
    /* The default thread count follows omp_set_num_threads when the backend is created. */
    thread_probe by_env[2];
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        zt_backend *b = NULL;
        ZT_REQUIRE_OK(zt_cpu_backend_create(0, &b));
        run_probe(b, &by_env[k]);
        zt_backend_destroy(b);
    }
    ZT_CHECK(probes_equal(&by_env[0], &one) && probes_equal(&by_env[1], &one),
             "omp_set_num_threads(1) and (2) disagree");
    free_probe(&by_env[0]);
    free_probe(&by_env[1]);
    printf("threads: perturb, update (AdaMM, SR) and z_sumsq bit-identical on 1 and 2 threads\n");
#else
    printf("threads: built without OpenMP; 1- and 2-thread backends both run serially\n");
#endif
    free_probe(&one);
    free_probe(&two);
}

/* gather_rows with a perturbation reads exactly what perturb into a stage_dtype copy of the whole
 * table followed by a plain gather reads: bit for bit, for every table and staging dtype, assign
 * and accumulate, Gaussian and Rademacher z, 0, 1 and 3 terms, rows that start off a block. */
static void test_gather_perturbed(void) {
    const int n_table_rows = 41, n_cols = 37, n_rows = 23;
    int32_t rows[23];
    for (int i = 0; i < n_rows; i++)
        rows[i] = (int32_t)(rng_next() % (uint64_t)n_table_rows);
    rows[0] = n_table_rows - 1;
    rows[1] = 0;
    const size_t n_table = (size_t)n_table_rows * n_cols, n_out = (size_t)n_rows * n_cols;
    int cases = 0, differ = 0;
    for (int t = 0; t < 3; t++)
        for (int sd = 0; sd < 3; sd++)
            for (int n_terms = 0; n_terms <= 3; n_terms += (n_terms == 0 ? 1 : 2))
                for (int dist = 0; dist < 2; dist++)
                    for (int accumulate = 0; accumulate < 2; accumulate++) {
                        const zt_dtype table_dtype = ALL_DTYPES[t], stage_dtype = ALL_DTYPES[sd];
                        void *table = random_tensor(table_dtype, n_table, -1.0, 1.0);
                        zt_direction *terms = random_terms(n_terms);
                        const zt_perturbation p = {terms, n_terms, (zt_dist)dist, 0.5f};
                        const uint32_t tensor_id = 11;
                        float *init = test_alloc(n_out * sizeof(float));
                        for (size_t i = 0; i < n_out; i++)
                            init[i] = rng_float(-1.0, 1.0);
                        /* the reference: stage the whole table, then gather it */
                        void *staged = test_alloc(n_table * zt_dtype_size(stage_dtype));
                        const zt_weight src = {table, table_dtype};
                        ZT_CHECK_OK(be->ops->perturb(be, staged, stage_dtype, src, tensor_id, 0,
                                                     n_table, &p));
                        float *want = test_alloc(n_out * sizeof(float));
                        float *got = test_alloc(n_out * sizeof(float));
                        memcpy(want, init, n_out * sizeof(float));
                        memcpy(got, init, n_out * sizeof(float));
                        const zt_weight staged_w = {staged, stage_dtype};
                        ZT_CHECK_OK(be->ops->gather_rows(be, want, rows, staged_w, n_rows,
                                                         n_table_rows, n_cols, accumulate, NULL));
                        const zt_gather_perturbation gp = {&p, tensor_id, stage_dtype};
                        ZT_CHECK_OK(be->ops->gather_rows(be, got, rows, src, n_rows, n_table_rows,
                                                         n_cols, accumulate, &gp));
                        const int same = memcmp(got, want, n_out * sizeof(float)) == 0;
                        ZT_CHECK(same,
                                 "gather perturbed: table %s staged %s, %d %s terms, %s: differs "
                                 "from perturb + gather",
                                 zt_dtype_name(table_dtype), zt_dtype_name(stage_dtype), n_terms,
                                 dist ? "Rademacher" : "Gaussian", accumulate ? "add" : "assign");
                        differ += !same;
                        cases++;
                        free(table);
                        free(terms);
                        free(init);
                        free(staged);
                        free(want);
                        free(got);
                    }
    /* a non-finite coefficient is refused before anything is written */
    zt_direction bad = {1, NAN};
    const zt_perturbation bad_p = {&bad, 1, ZT_DIST_GAUSSIAN, 1.0f};
    const zt_gather_perturbation bad_gp = {&bad_p, 0, ZT_F32};
    float table[4] = {1, 2, 3, 4}, out[2] = {7, 7};
    const int32_t two_rows[2] = {0, 1};
    const zt_weight w = {table, ZT_F32};
    ZT_CHECK(be->ops->gather_rows(be, out, two_rows, w, 2, 2, 2, 0, &bad_gp) == ZT_ERR_NUMERIC &&
                 out[0] == 7.0f && out[1] == 7.0f,
             "gather with a NaN coefficient: %s", zt_last_error());
    printf("gather_rows perturbed: %d cases, %d differ from perturb + gather\n", cases, differ);
}

static void print_headroom(const headroom *hr) {
    printf("  %-28s worst |err|/tol = %.3f over %ld values\n", hr->what, hr->worst, hr->n_compared);
}

int main(void) {
    ZT_REQUIRE_OK(zt_cpu_backend_create(2, &be));
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &be1));

    test_perturb_against_references();
    test_perturb_alias_and_slices();
    test_perturb_copy_and_empty();
    test_perturb_errors();
    test_perturb_variants();
    test_z_sumsq();
    test_update_rules();
    test_update_sgd_f32_exact();
    test_update_nonfinite_count();
    test_sr_unbiased(ZT_BF16);
    test_sr_unbiased(ZT_F16);
    test_sr_deterministic();
    test_lr_zero_identity();
    test_update_errors();
    test_thread_independence();
    test_gather_perturbed();

    printf("double-reference headroom (1.0 = at the derived bound):\n");
    print_headroom(&hr_perturb);
    print_headroom(&hr_sumsq);
    print_headroom(&hr_update);
    print_headroom(&hr_update_multi);
    zt_backend_destroy(be1);
    zt_backend_destroy(be);
    return zt_test_finish("perturb_cpu");
}
