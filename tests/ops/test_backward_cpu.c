/* The CPU backward ops (kernels/cpu/{gather,layernorm,linear,logprob}_backward.c, declared in
 * cpu/cpu_backward.h) against independent references.
 *
 * For each op:
 * - a naive double-precision loop of the analytic gradient, written here, on awkward shapes that
 *   cross the ops' fixed pieces (64 columns, 128 GEMM rows/columns, 256-row weight chunks);
 * - central finite differences in double of L = sum(d_out * forward(x)), with a double forward
 *   written here, at sampled elements of every input and parameter: this checks the analytic
 *   reference itself (h = 1e-4, so the difference is good to ~1e-8 of the gradient's scale);
 * - 1 thread against 3 threads, bit for bit;
 * - parameter gradients accumulate (pre-filled buffers keep their value; two calls give twice);
 * - f16 and bf16 weights give the bits of the f32 weight holding their widened values;
 * - refusals (an index out of range, overlapping buffers) write nothing and name the culprit.
 * The worst error against each reference is printed at the end.
 *
 * The CPU backend's buffers are host memory, so the ops get plain malloc'd arrays.
 * The seed is fixed and printed; ZT_OPS_SEED=<n> runs the same checks on other inputs.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "cpu/cpu_backward.h"
#include "ops_rng.h"
#include "zt_test.h"

/* Unit roundoff of f32. */
static const double U = 1.0 / 16777216.0; /* 2^-24 */

/* The op against the double reference: |err| <= OP_TOL * max|reference| of the array. The ops'
 * f32 sums run over at most 300 terms (linear's d_in), whose rounding stays below ~5e-7 of the
 * scale over many seeds; a misplaced element or a dropped term is off by ~1e-2 or more. */
static const double OP_TOL = 3e-6;
/* The double reference against finite differences, relative to the same scale: the central
 * difference's truncation error is ~h^2/6 * L''' ~ 2e-9 for h = 1e-4 and O(1) derivatives, its
 * cancellation ~1e-16 * |L| / h ~ 1e-11; seen: below 3e-10. */
static const double FD_TOL = 1e-8;
static const double FD_STEP = 1e-4;
enum { FD_SAMPLES = 6 };

static zt_backend *be1, *be3; /* 1 and 3 threads */

static char context[256];

__attribute__((format(printf, 1, 2))) static void set_context(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
}

/* ---- worst errors seen, per op, relative to each gradient's scale ---- */

typedef struct worst {
    const char *op;
    double vs_ref; /* op against the double reference */
    double vs_fd;  /* double reference against finite differences */
} worst;
static worst worst_gather = {"gather_rows_backward", 0, 0},
             worst_layernorm = {"layernorm_backward", 0, 0},
             worst_linear = {"linear_backward", 0, 0},
             worst_logprob = {"target_logprobs_backward", 0, 0};

/* ---- host arrays ---- */

static void *xalloc(size_t n_bytes) {
    void *p = malloc(n_bytes ? n_bytes : 1);
    ZT_REQUIRE(p != NULL, "host malloc of %zu bytes failed", n_bytes);
    return p;
}

static float *random_floats(size_t n, double lo, double hi) {
    float *x = xalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = rng_float(lo, hi);
    return x;
}

static float *copy_floats(const float *x, size_t n) {
    float *y = xalloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static double *widen(const float *x, size_t n) {
    double *y = xalloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

static double *zeros(size_t n) {
    double *y = xalloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = 0.0;
    return y;
}

/* A NaN pattern: an element an op should write but does not fails every comparison. */
static float *nan_floats(size_t n) {
    float *x = xalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
    return x;
}

/* A random weight stored in `dtype`; *widened gets its stored values as f32 (exact). */
static void *random_weight(zt_dtype dtype, size_t n, double lo, double hi, float **widened) {
    void *bytes = xalloc(n * zt_dtype_size(dtype));
    float *f = xalloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) {
        float v = rng_float(lo, hi);
        if (dtype == ZT_F32) {
            ((float *)bytes)[i] = v;
            f[i] = v;
        } else if (dtype == ZT_F16) {
            uint16_t h = zt_f32_to_f16(v);
            ((uint16_t *)bytes)[i] = h;
            f[i] = zt_f16_to_f32(h);
        } else {
            uint16_t h = zt_f32_to_bf16(v);
            ((uint16_t *)bytes)[i] = h;
            f[i] = zt_bf16_to_f32(h);
        }
    }
    *widened = f;
    return bytes;
}

static const char *dtype_label(zt_dtype dtype) {
    return dtype == ZT_F32 ? "f32" : dtype == ZT_F16 ? "f16" : "bf16";
}

/* ---- comparisons ---- */

static double max_abs(const double *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

/* got[i] against ref[i] within OP_TOL * max|ref| (a gradient's error is set by its largest
 * terms, not by an element that happens to cancel to near zero). */
static void check_vs_ref(const char *what, const float *got, const double *ref, size_t n,
                         worst *w) {
    const double scale = max_abs(ref, n);
    ZT_CHECK(scale > 0.0, "%s: %s: the reference is all zero, nothing is tested", context, what);
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - ref[i]);
        const int ok = isfinite(got[i]) && err <= OP_TOL * scale;
        if (isfinite(err) && scale > 0.0 && err / scale > w->vs_ref) w->vs_ref = err / scale;
        if (!ok && n_bad++ < 5)
            fprintf(stderr, "  %s: %s[%zu] got %.9g want %.9g (|err| %.3g, scale %.3g)\n", context,
                    what, i, (double)got[i], ref[i], err, scale);
    }
    ZT_CHECK(n_bad == 0, "%s: %zu of %zu %s elements off the double reference", context, n_bad, n,
             what);
}

/* got - prefill against ref within OP_TOL of ref's scale, plus the rounding into f32. */
static void check_accumulated(const char *what, const float *got, const float *prefill,
                              const double *ref, size_t n, worst *w) {
    const double scale = max_abs(ref, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs(((double)got[i] - prefill[i]) - ref[i]);
        if (scale > 0.0 && err / scale > w->vs_ref) w->vs_ref = err / scale;
        if (!(err <= OP_TOL * scale + U * fabs((double)prefill[i] + ref[i])) && bad++ < 5)
            fprintf(stderr, "  %s: %s[%zu] got %.9g want %.9g + %.9g\n", context, what, i,
                    (double)got[i], (double)prefill[i], ref[i]);
    }
    ZT_CHECK(scale > 0.0 && bad == 0, "%s: %zu of %zu pre-filled %s elements off the reference",
             context, bad, n, what);
}

static void check_bits(const char *what, const float *a, const float *b, size_t n) {
    ZT_CHECK(memcmp(a, b, n * sizeof *a) == 0, "%s: %s differs bit for bit", context, what);
}

/* The loss L = sum(d_out * forward(params)) in double. *kinks, when the forward has any,
 * identifies which side of each ReLU every pre-activation lies on: a difference that straddles
 * a kink measures no derivative and is drawn again. */
typedef double (*loss_fn)(const void *ctx, uint64_t *kinks);

/* The reference gradient grad of `param` (n elements, read by loss) against central
 * differences at FD_SAMPLES random elements. */
static void check_fd(const char *what, double *param, size_t n, const double *grad, loss_fn loss,
                     const void *ctx, worst *w) {
    const double scale = max_abs(grad, n);
    int n_done = 0;
    for (int attempt = 0; attempt < 20 * FD_SAMPLES && n_done < FD_SAMPLES; attempt++) {
        const size_t i = (size_t)rng_int((int)n);
        const double v = param[i];
        volatile double plus = v + FD_STEP, minus = v - FD_STEP; /* the steps as represented */
        uint64_t kinks0 = 0, kinks_plus = 0, kinks_minus = 0;
        (void)loss(ctx, &kinks0);
        param[i] = plus;
        const double l_plus = loss(ctx, &kinks_plus);
        param[i] = minus;
        const double l_minus = loss(ctx, &kinks_minus);
        param[i] = v;
        if (kinks_plus != kinks0 || kinks_minus != kinks0) continue;
        const double fd = (l_plus - l_minus) / (plus - minus);
        const double err = fabs(fd - grad[i]);
        if (scale > 0.0 && err / scale > w->vs_fd) w->vs_fd = err / scale;
        ZT_CHECK(err <= FD_TOL * scale, "%s: d%s[%zu]: reference %.12g, finite difference %.12g",
                 context, what, i, grad[i], fd);
        n_done++;
    }
    ZT_CHECK(n_done == FD_SAMPLES, "%s: d%s: only %d finite differences away from kinks", context,
             what, n_done);
}

/* A refusal: the status, a message naming `needle`, and the outputs as they were. */
static void check_refusal(const char *what, zt_status got, const char *needle) {
    ZT_CHECK(got == ZT_ERR_INVALID_ARG, "%s: %s: status %s, want invalid argument", context, what,
             zt_status_name(got));
    ZT_CHECK(strstr(zt_last_error(), needle) != NULL, "%s: %s: message \"%s\" lacks \"%s\"",
             context, what, zt_last_error(), needle);
}

/* ================================ gather_rows ================================ */

typedef struct gather_case {
    const double *table; /* (T,C) */
    const float *d_out;  /* (N,C) */
    const int32_t *rows; /* (N) */
    int n_rows, n_cols;
} gather_case;

static double gather_loss(const void *ctx, uint64_t *kinks) {
    const gather_case *g = ctx;
    double l = 0.0;
    for (int n = 0; n < g->n_rows; n++)
        for (int c = 0; c < g->n_cols; c++)
            l += (double)g->d_out[(size_t)n * g->n_cols + c] *
                 g->table[(size_t)g->rows[n] * g->n_cols + c];
    *kinks = 0;
    return l;
}

static void gather_ref(double *d_table, /* (T,C) += */
                       const float *d_out, const int32_t *rows, int n_rows, int n_cols) {
    for (int n = 0; n < n_rows; n++)
        for (int c = 0; c < n_cols; c++)
            d_table[(size_t)rows[n] * n_cols + c] += d_out[(size_t)n * n_cols + c];
}

static void test_gather_shape(int n_rows, int n_table_rows, int n_cols) {
    set_context("gather_rows_backward N=%d T=%d C=%d", n_rows, n_table_rows, n_cols);
    const size_t n_out = (size_t)n_rows * n_cols, n_table = (size_t)n_table_rows * n_cols;
    float *d_out = random_floats(n_out, -1, 1);
    int32_t *rows = xalloc((size_t)n_rows * sizeof *rows);
    for (int n = 0; n < n_rows; n++)
        rows[n] = rng_int(n_table_rows);
    rows[n_rows - 1] = rows[0]; /* a repeated token at least once */

    double *ref = zeros(n_table);
    gather_ref(ref, d_out, rows, n_rows, n_cols);

    /* From zero, on 1 and 3 threads. */
    float *got1 = calloc(n_table, sizeof(float)), *got3 = calloc(n_table, sizeof(float));
    ZT_CHECK_OK(zt_cpu_gather_rows_backward(be1, got1, d_out, rows, n_rows, n_table_rows, n_cols));
    ZT_CHECK_OK(zt_cpu_gather_rows_backward(be3, got3, d_out, rows, n_rows, n_table_rows, n_cols));
    check_vs_ref("d_table", got1, ref, n_table, &worst_gather);
    check_bits("d_table, 1 vs 3 threads", got1, got3, n_table);

    /* Twice: twice the gradient. */
    ZT_CHECK_OK(zt_cpu_gather_rows_backward(be3, got3, d_out, rows, n_rows, n_table_rows, n_cols));
    double *twice = xalloc(n_table * sizeof *twice);
    for (size_t i = 0; i < n_table; i++)
        twice[i] = 2.0 * ref[i];
    check_vs_ref("d_table after two calls", got3, twice, n_table, &worst_gather);

    /* A pre-filled gradient keeps its value; untouched rows stay as they were, bit for bit. */
    float *prefill = random_floats(n_table, -3, 3);
    float *got = copy_floats(prefill, n_table);
    ZT_CHECK_OK(zt_cpu_gather_rows_backward(be3, got, d_out, rows, n_rows, n_table_rows, n_cols));
    check_accumulated("d_table", got, prefill, ref, n_table, &worst_gather);
    for (int t = 0; t < n_table_rows; t++) {
        int used = 0;
        for (int n = 0; n < n_rows; n++)
            used |= rows[n] == t;
        if (!used)
            check_bits("an ungathered row", got + (size_t)t * n_cols, prefill + (size_t)t * n_cols,
                       (size_t)n_cols);
    }

    /* The reference against finite differences of sum(d_out * gather(table)). */
    float *table_f = random_floats(n_table, -1, 1);
    double *table = widen(table_f, n_table);
    gather_case gc = {table, d_out, rows, n_rows, n_cols};
    check_fd("table", table, n_table, ref, gather_loss, &gc, &worst_gather);

    free(d_out), free(rows), free(ref), free(got1), free(got3), free(twice), free(prefill);
    free(got), free(table_f), free(table);
}

static void test_gather_errors(void) {
    set_context("gather_rows_backward refusals");
    enum { N = 6, T = 13, C = 5 };
    float *d_out = random_floats((size_t)N * C, -1, 1);
    float *d_table = random_floats((size_t)T * C, -1, 1);
    float *before = copy_floats(d_table, (size_t)T * C);
    int32_t rows[N] = {0, 3, 12, 7, 1, 2};
    char needle[64];

    rows[4] = T;
    snprintf(needle, sizeof needle, "row 4 index %d", T);
    check_refusal("index past the table",
                  zt_cpu_gather_rows_backward(be3, d_table, d_out, rows, N, T, C), needle);
    rows[4] = 1;
    rows[2] = -1;
    check_refusal("negative index", zt_cpu_gather_rows_backward(be3, d_table, d_out, rows, N, T, C),
                  "row 2 index -1");
    rows[2] = 12;
    check_refusal("zero columns", zt_cpu_gather_rows_backward(be3, d_table, d_out, rows, N, T, 0),
                  "n_cols 0");
    check_refusal("NULL d_out", zt_cpu_gather_rows_backward(be3, d_table, NULL, rows, N, T, C),
                  "d_out is NULL");
    check_refusal("d_out inside d_table",
                  zt_cpu_gather_rows_backward(be3, d_table, d_table + C, rows, N, T, C),
                  "d_table overlaps d_out");
    check_bits("d_table after refusals", d_table, before, (size_t)T * C);
    /* And the same call with every index in range does write. */
    ZT_CHECK_OK(zt_cpu_gather_rows_backward(be3, d_table, d_out, rows, N, T, C));
    ZT_CHECK(memcmp(d_table, before, sizeof(float) * T * C) != 0,
             "%s: the valid call wrote nothing", context);
    free(d_out), free(d_table), free(before);
}

/* ================================ layernorm ================================ */

typedef struct layernorm_case {
    const double *x;     /* (N,C) */
    const double *gamma; /* (C) */
    const double *beta;  /* (C) */
    const float *d_out;  /* (N,C) */
    int n_rows, n_cols;
    double eps;
} layernorm_case;

/* sum(d_out * layernorm(x)) in double, the statistics in two passes. */
static double layernorm_loss(const void *ctx, uint64_t *kinks) {
    const layernorm_case *k = ctx;
    double l = 0.0;
    for (int n = 0; n < k->n_rows; n++) {
        const double *x = k->x + (size_t)n * k->n_cols;
        double mean = 0.0, var = 0.0;
        for (int c = 0; c < k->n_cols; c++)
            mean += x[c];
        mean /= k->n_cols;
        for (int c = 0; c < k->n_cols; c++)
            var += (x[c] - mean) * (x[c] - mean);
        var /= k->n_cols;
        const double inv_std = 1.0 / sqrt(var + k->eps);
        for (int c = 0; c < k->n_cols; c++) {
            const double y = (x[c] - mean) * inv_std * k->gamma[c] + k->beta[c];
            l += (double)k->d_out[(size_t)n * k->n_cols + c] * y;
        }
    }
    *kinks = 0;
    return l;
}

/* The analytic gradient: d_in =, d_gamma and d_beta +=. */
static void layernorm_ref(double *d_in, double *d_gamma, double *d_beta, const layernorm_case *k) {
    const int C = k->n_cols;
    double *xhat = xalloc((size_t)C * sizeof *xhat);
    for (int n = 0; n < k->n_rows; n++) {
        const double *x = k->x + (size_t)n * C;
        const float *dy = k->d_out + (size_t)n * C;
        double mean = 0.0, var = 0.0;
        for (int c = 0; c < C; c++)
            mean += x[c];
        mean /= C;
        for (int c = 0; c < C; c++)
            var += (x[c] - mean) * (x[c] - mean);
        var /= C;
        const double rstd = 1.0 / sqrt(var + k->eps);
        double mean_g = 0.0, mean_gx = 0.0;
        for (int c = 0; c < C; c++) {
            xhat[c] = (x[c] - mean) * rstd;
            const double g = dy[c] * k->gamma[c];
            mean_g += g / C;
            mean_gx += g * xhat[c] / C;
            d_gamma[c] += dy[c] * xhat[c];
            d_beta[c] += dy[c];
        }
        for (int c = 0; c < C; c++)
            d_in[(size_t)n * C + c] = rstd * (dy[c] * k->gamma[c] - mean_g - xhat[c] * mean_gx);
    }
    free(xhat);
}

typedef struct layernorm_grads {
    float *d_in, *d_gamma, *d_beta;
} layernorm_grads;

/* One call on pre-filled parameter gradients; d_in starts as NaN. */
static layernorm_grads layernorm_run(zt_backend *be, const float *d_out, const float *in,
                                     zt_weight gamma, const float *prefill_gamma,
                                     const float *prefill_beta, int n_rows, int n_cols) {
    const size_t n = (size_t)n_rows * n_cols;
    layernorm_grads g = {nan_floats(n), copy_floats(prefill_gamma, (size_t)n_cols),
                         copy_floats(prefill_beta, (size_t)n_cols)};
    ZT_CHECK_OK(zt_cpu_layernorm_backward(be, g.d_in, g.d_gamma, g.d_beta, d_out, in, gamma, n_rows,
                                          n_cols, 1e-5f));
    return g;
}

static void layernorm_free(layernorm_grads g) {
    free(g.d_in), free(g.d_gamma), free(g.d_beta);
}

static void test_layernorm_case(int n_rows, int n_cols, int has_gamma, zt_dtype dtype) {
    set_context("layernorm_backward N=%d C=%d gamma %s", n_rows, n_cols,
                has_gamma ? dtype_label(dtype) : "absent");
    const size_t n = (size_t)n_rows * n_cols, C = (size_t)n_cols;
    float *in = random_floats(n, -1, 2);
    for (int c = 0; c < n_cols; c++)
        in[c] += 3.0f; /* a row with a common offset */
    float *d_out = random_floats(n, -1, 1);
    float *gamma_f = NULL;
    void *gamma_bytes = has_gamma ? random_weight(dtype, C, 0.5, 1.5, &gamma_f) : NULL;
    zt_weight gamma = {gamma_bytes, dtype};
    float *beta_f = random_floats(C, -0.5, 0.5);
    float *prefill_gamma = random_floats(C, -2, 2), *prefill_beta = random_floats(C, -2, 2);

    double *x = widen(in, n), *beta = widen(beta_f, C), *gamma_d = xalloc(C * sizeof *gamma_d);
    for (size_t c = 0; c < C; c++)
        gamma_d[c] = has_gamma ? gamma_f[c] : 1.0;
    layernorm_case k = {x, gamma_d, beta, d_out, n_rows, n_cols, 1e-5f};
    double *ref_in = zeros(n), *ref_gamma = zeros(C), *ref_beta = zeros(C);
    layernorm_ref(ref_in, ref_gamma, ref_beta, &k);

    layernorm_grads g1 =
        layernorm_run(be1, d_out, in, gamma, prefill_gamma, prefill_beta, n_rows, n_cols);
    layernorm_grads g3 =
        layernorm_run(be3, d_out, in, gamma, prefill_gamma, prefill_beta, n_rows, n_cols);
    check_vs_ref("d_in", g1.d_in, ref_in, n, &worst_layernorm);
    check_accumulated("d_gamma", g1.d_gamma, prefill_gamma, ref_gamma, C, &worst_layernorm);
    check_accumulated("d_beta", g1.d_beta, prefill_beta, ref_beta, C, &worst_layernorm);
    check_bits("d_in, 1 vs 3 threads", g1.d_in, g3.d_in, n);
    check_bits("d_gamma, 1 vs 3 threads", g1.d_gamma, g3.d_gamma, C);
    check_bits("d_beta, 1 vs 3 threads", g1.d_beta, g3.d_beta, C);

    /* d_in = d_out in place: the same d_in, and the parameter gradients read d_out before it
     * was overwritten. */
    float *inplace = copy_floats(d_out, n);
    float *ip_gamma = copy_floats(prefill_gamma, C), *ip_beta = copy_floats(prefill_beta, C);
    ZT_CHECK_OK(zt_cpu_layernorm_backward(be3, inplace, ip_gamma, ip_beta, inplace, in, gamma,
                                          n_rows, n_cols, 1e-5f));
    check_bits("d_in in place", inplace, g1.d_in, n);
    check_bits("d_gamma with d_in in place", ip_gamma, g1.d_gamma, C);
    check_bits("d_beta with d_in in place", ip_beta, g1.d_beta, C);

    /* NULL parameter gradients: skipped, d_in unchanged. */
    float *d_in_only = nan_floats(n);
    ZT_CHECK_OK(zt_cpu_layernorm_backward(be3, d_in_only, NULL, NULL, d_out, in, gamma, n_rows,
                                          n_cols, 1e-5f));
    check_bits("d_in without parameter gradients", d_in_only, g1.d_in, n);
    float *beta_only = copy_floats(prefill_beta, C);
    ZT_CHECK_OK(zt_cpu_layernorm_backward(be3, d_in_only, NULL, beta_only, d_out, in, gamma, n_rows,
                                          n_cols, 1e-5f));
    check_bits("d_beta alone", beta_only, g1.d_beta, C);

    /* Two calls from zero give twice the gradient. */
    float *zero_gamma = calloc(C, sizeof(float)), *zero_beta = calloc(C, sizeof(float));
    for (int call = 0; call < 2; call++)
        ZT_CHECK_OK(zt_cpu_layernorm_backward(be3, d_in_only, zero_gamma, zero_beta, d_out, in,
                                              gamma, n_rows, n_cols, 1e-5f));
    double *twice_gamma = xalloc(C * sizeof(double)), *twice_beta = xalloc(C * sizeof(double));
    for (size_t c = 0; c < C; c++)
        twice_gamma[c] = 2.0 * ref_gamma[c], twice_beta[c] = 2.0 * ref_beta[c];
    check_vs_ref("d_gamma after two calls", zero_gamma, twice_gamma, C, &worst_layernorm);
    check_vs_ref("d_beta after two calls", zero_beta, twice_beta, C, &worst_layernorm);

    /* A half gamma reads as the f32 gamma holding its widened values. */
    if (has_gamma && dtype != ZT_F32) {
        zt_weight wide = {gamma_f, ZT_F32};
        layernorm_grads gw =
            layernorm_run(be3, d_out, in, wide, prefill_gamma, prefill_beta, n_rows, n_cols);
        check_bits("d_in, half gamma vs widened f32", g1.d_in, gw.d_in, n);
        check_bits("d_gamma, half gamma vs widened f32", g1.d_gamma, gw.d_gamma, C);
        layernorm_free(gw);
    }

    /* The reference against finite differences of sum(d_out * layernorm(x)). */
    check_fd("in", x, n, ref_in, layernorm_loss, &k, &worst_layernorm);
    check_fd("gamma", gamma_d, C, ref_gamma, layernorm_loss, &k, &worst_layernorm);
    check_fd("beta", beta, C, ref_beta, layernorm_loss, &k, &worst_layernorm);

    layernorm_free(g1), layernorm_free(g3);
    free(in), free(d_out), free(gamma_f), free(gamma_bytes), free(beta_f), free(prefill_gamma);
    free(prefill_beta), free(x), free(beta), free(gamma_d), free(ref_in), free(ref_gamma);
    free(ref_beta);
    free(inplace), free(ip_gamma), free(ip_beta), free(d_in_only), free(beta_only);
    free(zero_gamma), free(zero_beta), free(twice_gamma), free(twice_beta);
}

static void test_layernorm_errors(void) {
    set_context("layernorm_backward refusals");
    enum { N = 3, C = 8 };
    float *d_out = random_floats(N * C, -1, 1), *in = random_floats(N * C, -1, 1);
    float *d_in = random_floats(N * C, -1, 1), *before = copy_floats(d_in, N * C);
    zt_weight none = {NULL, ZT_F32};
    check_refusal("zero rows",
                  zt_cpu_layernorm_backward(be3, d_in, NULL, NULL, d_out, in, none, 0, C, 1e-5f),
                  "layernorm_backward: n_rows 0");
    check_refusal("d_in shifted over d_out",
                  zt_cpu_layernorm_backward(be3, d_in, NULL, NULL, d_in + 1, in, none, 1, C, 1e-5f),
                  "d_in overlaps d_out");
    check_refusal(
        "d_gamma inside d_in",
        zt_cpu_layernorm_backward(be3, d_in, d_in + C, NULL, d_out, in, none, N, C, 1e-5f),
        "d_gamma overlaps d_in");
    check_refusal("negative eps",
                  zt_cpu_layernorm_backward(be3, d_in, NULL, NULL, d_out, in, none, N, C, -1.0f),
                  "eps -1");
    check_bits("d_in after refusals", d_in, before, N * C);
    free(d_out), free(in), free(d_in), free(before);
}

/* ================================ linear ================================ */

typedef struct linear_case {
    const double *x;    /* (N,IC) */
    const double *w;    /* (OC,IC) */
    const double *bias; /* (OC) */
    const float *d_out; /* (N,OC) */
    int n_rows, in_features, out_features, relu;
} linear_case;

static double linear_pre(const linear_case *k, int n, int o) {
    double s = k->bias[o];
    for (int i = 0; i < k->in_features; i++)
        s += k->x[(size_t)n * k->in_features + i] * k->w[(size_t)o * k->in_features + i];
    return s;
}

/* sum(d_out * act(x @ W^T + b)); *kinks hashes which pre-activations are positive. */
static double linear_loss(const void *ctx, uint64_t *kinks) {
    const linear_case *k = ctx;
    double l = 0.0;
    uint64_t h = 0;
    for (int n = 0; n < k->n_rows; n++)
        for (int o = 0; o < k->out_features; o++) {
            double y = linear_pre(k, n, o);
            const uint64_t at = (uint64_t)n * (uint64_t)k->out_features + (uint64_t)o;
            if (k->relu) {
                if (y > 0.0)
                    h += (at + 1) * 0x9e3779b97f4a7c15ull;
                else
                    y = 0.0;
            }
            l += (double)k->d_out[at] * y;
        }
    *kinks = h;
    return l;
}

/* The analytic gradient from the mask of the double forward: d_in =, d_w and d_bias +=. */
static void linear_ref(double *d_in, double *d_w, double *d_bias, double *d_pre,
                       const linear_case *k) {
    const int N = k->n_rows, IC = k->in_features, OC = k->out_features;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            const size_t at = (size_t)n * OC + o;
            d_pre[at] = k->relu && !(linear_pre(k, n, o) > 0.0) ? 0.0 : k->d_out[at];
        }
    for (int o = 0; o < OC; o++)
        for (int n = 0; n < N; n++) {
            d_bias[o] += d_pre[(size_t)n * OC + o];
            for (int i = 0; i < IC; i++)
                d_w[(size_t)o * IC + i] += d_pre[(size_t)n * OC + o] * k->x[(size_t)n * IC + i];
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < IC; i++) {
            double s = 0.0;
            for (int o = 0; o < OC; o++)
                s += d_pre[(size_t)n * OC + o] * k->w[(size_t)o * IC + i];
            d_in[(size_t)n * IC + i] = s;
        }
}

typedef struct linear_grads {
    float *d_in, *d_w, *d_bias, *d_out;
} linear_grads;

/* One call; which gradients are asked for by want_*; d_in starts as NaN, d_w and d_bias as the
 * pre-fills, d_out as a copy of the given one. */
static linear_grads linear_run(zt_backend *be, const float *d_out, const float *in,
                               const float *out, zt_weight w, const float *prefill_w,
                               const float *prefill_bias, const linear_case *k, int want_in,
                               int want_w, int want_bias) {
    const size_t N = (size_t)k->n_rows, IC = (size_t)k->in_features, OC = (size_t)k->out_features;
    linear_grads g = {want_in ? nan_floats(N * IC) : NULL,
                      want_w ? copy_floats(prefill_w, OC * IC) : NULL,
                      want_bias ? copy_floats(prefill_bias, OC) : NULL, copy_floats(d_out, N * OC)};
    ZT_CHECK_OK(zt_cpu_linear_backward(be, g.d_in, g.d_w, g.d_bias, g.d_out, in,
                                       k->relu ? out : NULL, w, k->n_rows, k->in_features,
                                       k->out_features, k->relu));
    return g;
}

static void linear_free(linear_grads g) {
    free(g.d_in), free(g.d_w), free(g.d_bias), free(g.d_out);
}

static void test_linear_case(int n_rows, int in_features, int out_features, zt_dtype dtype,
                             int relu) {
    set_context("linear_backward N=%d IC=%d OC=%d %s%s", n_rows, in_features, out_features,
                dtype_label(dtype), relu ? " relu" : "");
    const size_t N = (size_t)n_rows, IC = (size_t)in_features, OC = (size_t)out_features;
    float *in = random_floats(N * IC, -1, 1), *d_out = random_floats(N * OC, -1, 1);
    float *w_f = NULL;
    void *w_bytes = random_weight(dtype, OC * IC, -0.5, 0.5, &w_f);
    zt_weight w = {w_bytes, dtype};
    float *bias_f = random_floats(OC, -0.3, 0.3);
    float *prefill_w = random_floats(OC * IC, -1, 1), *prefill_bias = random_floats(OC, -1, 1);

    double *x = widen(in, N * IC), *wd = widen(w_f, OC * IC), *bias = widen(bias_f, OC);
    linear_case k = {x, wd, bias, d_out, n_rows, in_features, out_features, relu};
    /* The forward's output as the op would get it: the double forward rounded to f32 keeps
     * every sign, so the op's mask is the reference's. */
    float *out = xalloc(N * OC * sizeof *out);
    for (int n = 0; n < n_rows; n++)
        for (int o = 0; o < out_features; o++) {
            const double y = linear_pre(&k, n, o);
            out[(size_t)n * OC + o] = (float)(relu && y < 0.0 ? 0.0 : y);
        }
    double *ref_in = zeros(N * IC), *ref_w = zeros(OC * IC), *ref_bias = zeros(OC);
    double *ref_pre = zeros(N * OC);
    linear_ref(ref_in, ref_w, ref_bias, ref_pre, &k);

    linear_grads g1 = linear_run(be1, d_out, in, out, w, prefill_w, prefill_bias, &k, 1, 1, 1);
    linear_grads g3 = linear_run(be3, d_out, in, out, w, prefill_w, prefill_bias, &k, 1, 1, 1);
    check_vs_ref("d_in", g1.d_in, ref_in, N * IC, &worst_linear);
    check_accumulated("d_w", g1.d_w, prefill_w, ref_w, OC * IC, &worst_linear);
    check_accumulated("d_bias", g1.d_bias, prefill_bias, ref_bias, OC, &worst_linear);
    check_bits("d_in, 1 vs 3 threads", g1.d_in, g3.d_in, N * IC);
    check_bits("d_w, 1 vs 3 threads", g1.d_w, g3.d_w, OC * IC);
    check_bits("d_bias, 1 vs 3 threads", g1.d_bias, g3.d_bias, OC);

    /* d_out: with relu the masked gradient (each element its own value or zero, as the
     * reference's mask says), without it untouched. */
    size_t n_bad = 0, n_masked = 0;
    for (size_t i = 0; i < N * OC; i++) {
        const float want = relu ? (float)ref_pre[i] : d_out[i];
        n_masked += ref_pre[i] == 0.0 && d_out[i] != 0.0f;
        if (memcmp(&g1.d_out[i], &want, sizeof want) != 0) n_bad++;
    }
    ZT_CHECK(n_bad == 0, "%s: %zu d_out elements are not the %s gradient", context, n_bad,
             relu ? "masked" : "given");
    if (relu)
        ZT_CHECK(n_masked > 0 && n_masked < N * OC, "%s: the mask is trivial (%zu of %zu)", context,
                 n_masked, N * OC);

    /* NULL gradients are skipped; the others are the same bits. */
    linear_grads only_in = linear_run(be3, d_out, in, out, w, prefill_w, prefill_bias, &k, 1, 0, 0);
    linear_grads only_w = linear_run(be3, d_out, in, out, w, prefill_w, prefill_bias, &k, 0, 1, 0);
    linear_grads only_b = linear_run(be3, d_out, in, out, w, prefill_w, prefill_bias, &k, 0, 0, 1);
    check_bits("d_in alone", only_in.d_in, g1.d_in, N * IC);
    check_bits("d_w alone", only_w.d_w, g1.d_w, OC * IC);
    check_bits("d_bias alone", only_b.d_bias, g1.d_bias, OC);
    check_bits("d_out with d_w alone", only_w.d_out, g1.d_out, N * OC);
    /* Without d_w, `in` is not needed; without d_in, the weight's data is not. */
    float *d_out_copy = copy_floats(d_out, N * OC), *bias_only = copy_floats(prefill_bias, OC);
    zt_weight no_data = {NULL, dtype};
    ZT_CHECK_OK(zt_cpu_linear_backward(be3, NULL, NULL, bias_only, d_out_copy, NULL,
                                       relu ? out : NULL, no_data, n_rows, in_features,
                                       out_features, relu));
    check_bits("d_bias with no input and no weight", bias_only, g1.d_bias, OC);

    /* Two calls from zero give twice the gradient. */
    float *zero_w = calloc(OC * IC, sizeof(float)), *zero_bias = calloc(OC, sizeof(float));
    for (int call = 0; call < 2; call++) {
        memcpy(d_out_copy, d_out, N * OC * sizeof(float));
        ZT_CHECK_OK(zt_cpu_linear_backward(be3, NULL, zero_w, zero_bias, d_out_copy, in,
                                           relu ? out : NULL, w, n_rows, in_features, out_features,
                                           relu));
    }
    double *twice_w = xalloc(OC * IC * sizeof(double)), *twice_bias = xalloc(OC * sizeof(double));
    for (size_t i = 0; i < OC * IC; i++)
        twice_w[i] = 2.0 * ref_w[i];
    for (size_t i = 0; i < OC; i++)
        twice_bias[i] = 2.0 * ref_bias[i];
    check_vs_ref("d_w after two calls", zero_w, twice_w, OC * IC, &worst_linear);
    check_vs_ref("d_bias after two calls", zero_bias, twice_bias, OC, &worst_linear);

    /* A half weight reads as the f32 weight holding its widened values. */
    if (dtype != ZT_F32) {
        zt_weight wide = {w_f, ZT_F32};
        linear_grads gw =
            linear_run(be3, d_out, in, out, wide, prefill_w, prefill_bias, &k, 1, 1, 1);
        check_bits("d_in, half weight vs widened f32", g1.d_in, gw.d_in, N * IC);
        check_bits("d_w, half weight vs widened f32", g1.d_w, gw.d_w, OC * IC);
        linear_free(gw);
    }

    /* The reference against finite differences of sum(d_out * act(in @ W^T + b)). */
    check_fd("in", x, N * IC, ref_in, linear_loss, &k, &worst_linear);
    check_fd("w", wd, OC * IC, ref_w, linear_loss, &k, &worst_linear);
    check_fd("bias", bias, OC, ref_bias, linear_loss, &k, &worst_linear);

    linear_free(g1), linear_free(g3), linear_free(only_in), linear_free(only_w);
    linear_free(only_b);
    free(in), free(d_out), free(w_f), free(w_bytes), free(bias_f), free(prefill_w);
    free(prefill_bias), free(x), free(wd), free(bias), free(out), free(ref_in), free(ref_w);
    free(ref_bias), free(ref_pre), free(d_out_copy), free(bias_only), free(zero_w);
    free(zero_bias), free(twice_w), free(twice_bias);
}

static void test_linear_errors(void) {
    set_context("linear_backward refusals");
    enum { N = 3, IC = 4, OC = 5 };
    float *in = random_floats(N * IC, -1, 1), *w_f = random_floats(OC * IC, -1, 1);
    float *d_out = random_floats(N * OC, -1, 1), *out = random_floats(N * OC, -1, 1);
    float *d_in = random_floats(N * IC, -1, 1), *d_w = random_floats(OC * IC, -1, 1);
    float *before_in = copy_floats(d_in, N * IC), *before_w = copy_floats(d_w, OC * IC);
    float *before_out = copy_floats(d_out, N * OC);
    zt_weight w = {w_f, ZT_F32};
    check_refusal("relu without out",
                  zt_cpu_linear_backward(be3, d_in, d_w, NULL, d_out, in, NULL, w, N, IC, OC, 1),
                  "linear_backward: out is NULL");
    check_refusal("d_w without in",
                  zt_cpu_linear_backward(be3, d_in, d_w, NULL, d_out, NULL, out, w, N, IC, OC, 1),
                  "linear_backward: in is NULL");
    zt_weight no_data = {NULL, ZT_F32};
    check_refusal(
        "d_in without weight",
        zt_cpu_linear_backward(be3, d_in, d_w, NULL, d_out, in, out, no_data, N, IC, OC, 1),
        "linear_backward: weight is NULL");
    check_refusal(
        "d_in over d_out",
        zt_cpu_linear_backward(be3, d_out + 1, d_w, NULL, d_out, in, out, w, N, IC, OC, 1),
        "d_in overlaps d_out");
    /* in lies inside d_w, so that d_w overlaps nothing else whatever the allocator's layout */
    float *shared = random_floats(OC * IC, -1, 1);
    check_refusal(
        "d_w over in",
        zt_cpu_linear_backward(be3, d_in, shared, NULL, d_out, shared + 2, out, w, N, IC, OC, 1),
        "d_w overlaps in");
    free(shared);
    check_refusal("zero out_features",
                  zt_cpu_linear_backward(be3, d_in, d_w, NULL, d_out, in, out, w, N, IC, 0, 1),
                  "out_features 0");
    check_bits("d_in after refusals", d_in, before_in, N * IC);
    check_bits("d_w after refusals", d_w, before_w, OC * IC);
    check_bits("d_out after refusals (no relu mask applied)", d_out, before_out, N * OC);
    free(in), free(w_f), free(d_out), free(out), free(d_in), free(d_w), free(before_in);
    free(before_w), free(before_out);
}

/* ================================ target_logprobs ================================ */

typedef struct logprob_case {
    const double *logits; /* (R,V) */
    const int32_t *targets;
    const float *d_logprob;
    int n_rows, vocab;
} logprob_case;

/* sum_r d_logprob[r] * log_softmax(logits[r])[target], the max subtracted. */
static double logprob_loss(const void *ctx, uint64_t *kinks) {
    const logprob_case *k = ctx;
    double l = 0.0;
    for (int r = 0; r < k->n_rows; r++) {
        const double *x = k->logits + (size_t)r * k->vocab;
        double m = x[0], s = 0.0;
        for (int j = 1; j < k->vocab; j++)
            m = x[j] > m ? x[j] : m;
        for (int j = 0; j < k->vocab; j++)
            s += exp(x[j] - m);
        l += (double)k->d_logprob[r] * (x[k->targets[r]] - m - log(s));
    }
    *kinks = 0;
    return l;
}

static void logprob_ref(double *d_logits, const logprob_case *k) {
    for (int r = 0; r < k->n_rows; r++) {
        const double *x = k->logits + (size_t)r * k->vocab;
        double m = x[0], s = 0.0;
        for (int j = 1; j < k->vocab; j++)
            m = x[j] > m ? x[j] : m;
        for (int j = 0; j < k->vocab; j++)
            s += exp(x[j] - m);
        for (int j = 0; j < k->vocab; j++) {
            const double p = exp(x[j] - m) / s;
            d_logits[(size_t)r * k->vocab + j] =
                k->d_logprob[r] * ((j == k->targets[r] ? 1.0 : 0.0) - p);
        }
    }
}

static void test_logprob_case(int n_rows, int vocab) {
    set_context("target_logprobs_backward R=%d V=%d", n_rows, vocab);
    const size_t n = (size_t)n_rows * vocab;
    float *logits = random_floats(n, -4, 4);
    for (int j = 0; j < vocab; j++)
        logits[(size_t)vocab + j] += 1000.0f; /* row 1: exp without the max would overflow */
    float *d_logprob = random_floats((size_t)n_rows, -2, 2);
    int32_t *targets = xalloc((size_t)n_rows * sizeof *targets);
    for (int r = 0; r < n_rows; r++)
        targets[r] = rng_int(vocab);
    targets[0] = vocab - 1;
    /* Row 2 sharply peaked at its target: 1 - p is a small difference. */
    logits[2 * (size_t)vocab + targets[2]] += 12.0f;

    double *x = widen(logits, n), *ref = zeros(n);
    logprob_case k = {x, targets, d_logprob, n_rows, vocab};
    logprob_ref(ref, &k);

    float *got1 = nan_floats(n), *got3 = nan_floats(n);
    ZT_CHECK_OK(
        zt_cpu_target_logprobs_backward(be1, got1, logits, targets, d_logprob, n_rows, vocab));
    ZT_CHECK_OK(
        zt_cpu_target_logprobs_backward(be3, got3, logits, targets, d_logprob, n_rows, vocab));
    check_vs_ref("d_logits", got1, ref, n, &worst_logprob);
    /* Tighter, element by element: the op rounds a double result once, so each element is
     * within an f32 rounding of the reference's (plus the double sums' ~V * 1e-16 drift). */
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got1[i] - ref[i]);
        if (!(err <= U * fabs(ref[i]) + 1e-12 * fabs(d_logprob[i / (size_t)vocab])) && n_bad++ < 5)
            fprintf(stderr, "  %s: d_logits[%zu] got %.9g want %.12g\n", context, i,
                    (double)got1[i], ref[i]);
    }
    ZT_CHECK(n_bad == 0, "%s: %zu d_logits elements beyond one f32 rounding of the reference",
             context, n_bad);
    check_bits("d_logits, 1 vs 3 threads", got1, got3, n);

    /* In place over the logits. */
    float *inplace = copy_floats(logits, n);
    ZT_CHECK_OK(
        zt_cpu_target_logprobs_backward(be3, inplace, inplace, targets, d_logprob, n_rows, vocab));
    check_bits("d_logits in place", inplace, got1, n);

    check_fd("logits", x, n, ref, logprob_loss, &k, &worst_logprob);

    free(logits), free(d_logprob), free(targets), free(x), free(ref), free(got1), free(got3);
    free(inplace);
}

static void test_logprob_errors(void) {
    set_context("target_logprobs_backward refusals");
    enum { R = 6, V = 333 };
    float *logits = random_floats(R * V, -1, 1), *d_logprob = random_floats(R, -1, 1);
    float *d_logits = random_floats(R * V, -1, 1);
    float *before = copy_floats(d_logits, R * V), *logits_before = copy_floats(logits, R * V);
    int32_t targets[R] = {0, 5, V - 1, 7, 8, 9};
    char needle[64];

    targets[4] = V;
    snprintf(needle, sizeof needle, "row 4 target %d", V);
    check_refusal("target past the vocabulary",
                  zt_cpu_target_logprobs_backward(be3, d_logits, logits, targets, d_logprob, R, V),
                  needle);
    /* In place, a refusal leaves the logits as they were. */
    check_refusal("target past the vocabulary, in place",
                  zt_cpu_target_logprobs_backward(be3, logits, logits, targets, d_logprob, R, V),
                  needle);
    targets[4] = 8;
    targets[1] = -3;
    check_refusal("negative target",
                  zt_cpu_target_logprobs_backward(be3, d_logits, logits, targets, d_logprob, R, V),
                  "row 1 target -3");
    targets[1] = 5;
    check_refusal(
        "d_logits shifted over logits",
        zt_cpu_target_logprobs_backward(be3, logits + 1, logits, targets, d_logprob, 2, V),
        "d_logits overlaps logits");
    check_refusal("NULL d_logprob",
                  zt_cpu_target_logprobs_backward(be3, d_logits, logits, targets, NULL, R, V),
                  "d_logprob is NULL");
    check_bits("d_logits after refusals", d_logits, before, R * V);
    check_bits("logits after refusals", logits, logits_before, R * V);
    ZT_CHECK_OK(zt_cpu_target_logprobs_backward(be3, d_logits, logits, targets, d_logprob, R, V));
    ZT_CHECK(memcmp(d_logits, before, sizeof(float) * R * V) != 0,
             "%s: the valid call wrote nothing", context);
    free(logits), free(d_logprob), free(d_logits), free(before), free(logits_before);
}

int main(void) {
    uint64_t seed = 20250112;
    const char *seed_text = getenv("ZT_OPS_SEED");
    if (seed_text && *seed_text) seed = strtoull(seed_text, NULL, 0);
    printf("test_backward_cpu: seed %llu (ZT_OPS_SEED overrides)\n", (unsigned long long)seed);
    rng_state = seed;

    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &be1));
    ZT_REQUIRE_OK(zt_cpu_backend_create(3, &be3));

    /* 133 columns: two whole 64-column pieces and a partial one. */
    test_gather_shape(7, 5, 33);
    test_gather_shape(40, 13, 133);
    test_gather_errors();

    const zt_dtype dtypes[3] = {ZT_F32, ZT_F16, ZT_BF16};
    test_layernorm_case(7, 33, 0, ZT_F32);
    for (int d = 0; d < 3; d++) {
        test_layernorm_case(7, 33, 1, dtypes[d]);
        test_layernorm_case(5, 200, 1, dtypes[d]); /* 64-column pieces: 3 whole, 1 partial */
    }
    test_layernorm_errors();

    /* OC = 130: d_w's 128-row pieces, one whole and one partial. OC = 300: two 256-row chunks
     * of d_in's reduction (the second partial) and IC = 300: three 128-column pieces of d_in. */
    for (int d = 0; d < 3; d++)
        for (int relu = 0; relu < 2; relu++) {
            test_linear_case(7, 37, 130, dtypes[d], relu);
            test_linear_case(9, 300, 300, dtypes[d], relu);
        }
    test_linear_errors();

    test_logprob_case(7, 333);
    test_logprob_case(3, 50272);
    test_logprob_errors();

    zt_backend_destroy(be1);
    zt_backend_destroy(be3);
    zt_mem_stats stats;
    zt_mem_stats_get(&stats);
    ZT_CHECK(stats.current_total == 0, "%zu bytes still tracked after destroy",
             stats.current_total);

    const worst *all[4] = {&worst_gather, &worst_layernorm, &worst_linear, &worst_logprob};
    printf("worst |error| / gradient scale (op vs double reference, reference vs finite "
           "differences):\n");
    for (int i = 0; i < 4; i++)
        printf("  %-26s %.3g (tol %.0e)   %.3g (tol %.0e)\n", all[i]->op, all[i]->vs_ref, OP_TOL,
               all[i]->vs_fd, FD_TOL);
    return zt_test_finish("test_backward_cpu");
}
