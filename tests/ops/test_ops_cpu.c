/* The CPU backend's ops (kernels/cpu) against naive double-precision reference loops.
 *
 * Shapes are chosen to be awkward: 1 row, 1 column, sizes that are not multiples of 4/8/16/32,
 * T = 1, rows of 3000, the 50272-token vocabulary, linear chunk boundaries falling mid-output.
 * Weights come in F32, F16 and BF16; the reference reads the same rounded weights upcast to
 * double, so each tolerance only covers the op's own f32 arithmetic and is derived where it is
 * used. Every backend buffer is allocated with sentinel guard regions on both sides that must
 * come back untouched; outputs start as sentinel NaNs, so an element an op forgets to write
 * fails the comparison; inputs must come back unchanged.
 *
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
#include "cpu/cpu_common.h"
#include "ops_rng.h"
#include "zt_test.h"

/* Unit roundoff of f32: one correctly rounded f32 operation is off by at most U * |result|. */
static const double U = 1.0 / 16777216.0; /* 2^-24 */

static const zt_dtype ALL_DTYPES[3] = {ZT_F32, ZT_F16, ZT_BF16};

static zt_backend *be; /* the backend under test; swapped briefly by some tests */

/* What the current case is, for failure messages. */
static char context[256];

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

/* ---- deterministic inputs ---- */

static float *random_floats(size_t n, double lo, double hi) {
    float *x = test_alloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = rng_float(lo, hi);
    return x;
}

/* Random weights stored in `dtype`; ref gets the stored (rounded) values upcast to double. */
static void *random_weight_bytes(zt_dtype dtype, size_t n, double lo, double hi,
                                 double *ref /* (n) */) {
    void *bytes = test_alloc(n * zt_dtype_size(dtype));
    for (size_t i = 0; i < n; i++) {
        float f = rng_float(lo, hi);
        if (dtype == ZT_F32) {
            ((float *)bytes)[i] = f;
            ref[i] = f;
        } else if (dtype == ZT_F16) {
            uint16_t h = zt_f32_to_f16(f);
            ((uint16_t *)bytes)[i] = h;
            ref[i] = zt_f16_to_f32(h);
        } else {
            uint16_t h = zt_f32_to_bf16(f);
            ((uint16_t *)bytes)[i] = h;
            ref[i] = zt_bf16_to_f32(h);
        }
    }
    return bytes;
}

/* ---- guarded backend buffers ---- */

enum { GUARD_BYTES = 64 }; /* keeps the data 64-byte aligned like every backend allocation */
/* The bytes of the little-endian f32 0x7fa5a5a5, a NaN: outputs start as it, guards stay it. */
static const uint8_t SENTINEL[4] = {0xa5, 0xa5, 0xa5, 0x7f};

/* `phase` is p's byte offset from the start of the allocation, which sets the pattern's phase:
 * half-precision data can end off a 4-byte boundary. */
static void fill_sentinel(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = SENTINEL[i % 4];
}

static int is_sentinel(const uint8_t *p, size_t n, size_t phase) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != SENTINEL[(phase + i) % 4]) return 0;
    return 1;
}

typedef struct dev_buf {
    const char *name;
    uint8_t *base;   /* backend allocation: guard | data | guard */
    size_t n_bytes;  /* data bytes */
    uint8_t *expect; /* inputs only: the uploaded bytes, which must come back unchanged */
} dev_buf;

static void *dev_create(dev_buf *b, const char *name, const void *init, size_t n_bytes,
                        int is_input) {
    size_t total = n_bytes + 2 * GUARD_BYTES;
    uint8_t *host = test_alloc(total);
    fill_sentinel(host, total);
    if (init) memcpy(host + GUARD_BYTES, init, n_bytes);
    b->name = name;
    b->n_bytes = n_bytes;
    b->expect = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, total, ZT_MEM_ACTIVATIONS, (void **)&b->base));
    ZT_REQUIRE_OK(be->ops->upload(be, b->base, host, total));
    if (is_input) {
        b->expect = test_alloc(n_bytes);
        memcpy(b->expect, host + GUARD_BYTES, n_bytes);
    }
    free(host);
    return b->base + GUARD_BYTES;
}

static void *dev_input(dev_buf *b, const char *name, const void *init, size_t n_bytes) {
    return dev_create(b, name, init, n_bytes, 1);
}
static void *dev_inout(dev_buf *b, const char *name, const void *init, size_t n_bytes) {
    return dev_create(b, name, init, n_bytes, 0);
}
static void *dev_output(dev_buf *b, const char *name, size_t n_bytes) {
    return dev_create(b, name, NULL, n_bytes, 0);
}

static void dev_read(const dev_buf *b, void *host) {
    ZT_REQUIRE_OK(be->ops->download(be, host, b->base + GUARD_BYTES, b->n_bytes));
}

/* Checks the guards (and, for inputs, the contents), then frees. */
static void dev_release(dev_buf *b) {
    size_t total = b->n_bytes + 2 * GUARD_BYTES;
    uint8_t *host = test_alloc(total);
    ZT_REQUIRE_OK(be->ops->download(be, host, b->base, total));
    ZT_CHECK(is_sentinel(host, GUARD_BYTES, 0), "%s: guard before %s overwritten", context,
             b->name);
    ZT_CHECK(is_sentinel(host + GUARD_BYTES + b->n_bytes, GUARD_BYTES, GUARD_BYTES + b->n_bytes),
             "%s: guard after %s overwritten", context, b->name);
    if (b->expect)
        ZT_CHECK(memcmp(host + GUARD_BYTES, b->expect, b->n_bytes) == 0, "%s: input %s modified",
                 context, b->name);
    free(host);
    free(b->expect);
    be->ops->free(be, b->base, total, ZT_MEM_ACTIVATIONS);
}

static zt_weight upload_weight(dev_buf *b, const char *name, zt_dtype dtype, size_t n, double lo,
                               double hi, double *ref /* (n) */) {
    void *bytes = random_weight_bytes(dtype, n, lo, hi, ref);
    zt_weight w = {dev_input(b, name, bytes, n * zt_dtype_size(dtype)), dtype};
    free(bytes);
    return w;
}

/* ---- comparison ---- */

/* Worst |err| / tol seen per op, printed at the end to show how much headroom each bound has. */
typedef struct headroom {
    const char *op;
    double worst;
} headroom;
static headroom hr_gather = {.op = "gather_rows"}, hr_layernorm = {.op = "layernorm"},
                hr_linear = {.op = "linear"}, hr_attention = {.op = "attention"},
                hr_add = {.op = "add"}, hr_logprob = {.op = "target_logprobs"};

/* Element i passes when got[i] is finite and |got[i] - ref[i]| <= tol[i]. One check per array;
 * the first few bad elements are printed. */
static void check_close_array(const char *what, const float *got, const double *ref,
                              const double *tol, size_t n, headroom *hr) {
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        int ok = isfinite(got[i]) && err <= tol[i];
        if (isfinite(err) && tol[i] > 0 && err / tol[i] > hr->worst) hr->worst = err / tol[i];
        if (!ok && n_bad++ < 5)
            fprintf(stderr, "  %s: %s[%zu] got %.9g want %.9g (|err| %.3g, tol %.3g)\n", context,
                    what, i, (double)got[i], ref[i], err, tol[i]);
    }
    ZT_CHECK(n_bad == 0, "%s: %zu of %zu %s elements out of tolerance", context, n_bad, n, what);
}

static double *doubles(size_t n) {
    return test_alloc(n * sizeof(double));
}

/* ================================ memory ================================ */

static void test_memory(void) {
    set_context("memory");
    zt_mem_stats before, during, after;
    zt_mem_stats_get(&before);
    void *p = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, 1000, ZT_MEM_OPTIMIZER, &p));
    zt_mem_stats_get(&during);
    ZT_CHECK(((uintptr_t)p & 63u) == 0, "alloc returned %p, not 64-byte aligned", p);
    ZT_CHECK(during.current[ZT_MEM_OPTIMIZER] == before.current[ZT_MEM_OPTIMIZER] + 1000,
             "optimizer bytes %zu -> %zu after a 1000-byte alloc", before.current[ZT_MEM_OPTIMIZER],
             during.current[ZT_MEM_OPTIMIZER]);
    uint8_t pattern[1000], back[1000];
    for (int i = 0; i < 1000; i++)
        pattern[i] = (uint8_t)(i * 7 + 3);
    ZT_CHECK_OK(be->ops->upload(be, p, pattern, sizeof pattern));
    ZT_CHECK_OK(be->ops->sync(be));
    ZT_CHECK_OK(be->ops->download(be, back, p, sizeof back));
    ZT_CHECK(memcmp(pattern, back, sizeof back) == 0, "upload/download round trip differs");
    be->ops->free(be, p, 1000, ZT_MEM_OPTIMIZER);
    zt_mem_stats_get(&after);
    ZT_CHECK(after.current[ZT_MEM_OPTIMIZER] == before.current[ZT_MEM_OPTIMIZER],
             "optimizer bytes %zu after free, want %zu", after.current[ZT_MEM_OPTIMIZER],
             before.current[ZT_MEM_OPTIMIZER]);
    ZT_CHECK(strcmp(be->ops->name, "cpu") == 0, "backend name %s", be->ops->name);
}

/* ================================ gather_rows ================================ */

/* A copy is exact (tol 0); `+=` is one f32 rounding of a sum that double holds exactly, so
 * tol = U * |ref|. */
static void gather_case(zt_dtype dtype, int n_rows, int n_table_rows, int n_cols, int accumulate) {
    set_context("gather_rows %s N=%d table_rows=%d C=%d accumulate=%d", zt_dtype_name(dtype),
                n_rows, n_table_rows, n_cols, accumulate);
    size_t table_n = (size_t)n_table_rows * n_cols, out_n = (size_t)n_rows * n_cols;
    double *table_ref = doubles(table_n);
    int32_t *rows = test_alloc((size_t)n_rows * sizeof *rows);
    for (int n = 0; n < n_rows; n++) /* both ends of the table, then anywhere */
        rows[n] = n == 0 ? n_table_rows - 1 : n == 1 ? 0 : rng_int(n_table_rows);
    float *init = random_floats(out_n, -2, 2);

    dev_buf table_buf, rows_buf, out_buf;
    zt_weight table = upload_weight(&table_buf, "table", dtype, table_n, -2, 2, table_ref);
    int32_t *rows_dev = dev_input(&rows_buf, "rows", rows, (size_t)n_rows * sizeof *rows);
    float *out = accumulate ? dev_inout(&out_buf, "out", init, out_n * sizeof(float))
                            : dev_output(&out_buf, "out", out_n * sizeof(float));
    ZT_CHECK_OK(be->ops->gather_rows(be, out, rows_dev, table, n_rows, n_table_rows, n_cols,
                                     accumulate, NULL));

    double *ref = doubles(out_n), *tol = doubles(out_n);
    for (int n = 0; n < n_rows; n++) {
        for (int c = 0; c < n_cols; c++) {
            size_t i = (size_t)n * n_cols + c;
            double row_value = table_ref[(size_t)rows[n] * n_cols + c];
            ref[i] = accumulate ? init[i] + row_value : row_value;
            tol[i] = accumulate ? U * fabs(ref[i]) : 0.0;
        }
    }
    float *got = test_alloc(out_n * sizeof *got);
    dev_read(&out_buf, got);
    check_close_array("out", got, ref, tol, out_n, &hr_gather);

    dev_release(&table_buf);
    dev_release(&rows_buf);
    dev_release(&out_buf);
    free(table_ref), free(rows), free(init), free(ref), free(tol), free(got);
}

static void test_gather(void) {
    for (int d = 0; d < 3; d++) {
        for (int accumulate = 0; accumulate <= 1; accumulate++) {
            gather_case(ALL_DTYPES[d], 1, 1, 1, accumulate);
            gather_case(ALL_DTYPES[d], 7, 13, 3000, accumulate);
            gather_case(ALL_DTYPES[d], 33, 2050, 5, accumulate);
        }
        gather_case(ALL_DTYPES[d], 5, 50272, 17, 0);
    }
}

/* ================================ layernorm ================================ */

/* The op computes mean and rstd in double, rounds each to f32 (error U * value), then
 * y = (x - mean) * rstd * gamma + beta in four f32 operations. Following the rounding errors
 * through: |err| <= 6U (|x| + |mean|) rstd |gamma| + U |beta|; the tolerance doubles the first
 * term's headroom: tol = 8U ((|x| + |mean|) rstd |gamma| + |beta|). Rows carry offsets of 0, 3
 * and -50 (where a one-pass f32 variance would cancel), and a constant row, whose exact output
 * is beta. */
static void layernorm_case(zt_dtype dtype, int affine, int n_rows, int n_cols, int in_place) {
    set_context("layernorm %s N=%d C=%d %s", affine ? zt_dtype_name(dtype) : "no-affine", n_rows,
                n_cols, in_place ? "in place" : "out of place");
    const float eps = 1e-5f;
    size_t n = (size_t)n_rows * n_cols;
    float *x = test_alloc(n * sizeof *x);
    static const float offsets[3] = {0.0f, 3.0f, -50.0f};
    for (int r = 0; r < n_rows; r++) {
        int constant_row = n_rows >= 3 && r == n_rows - 1;
        for (int c = 0; c < n_cols; c++)
            x[(size_t)r * n_cols + c] = offsets[r % 3] + (constant_row ? 0.1f : rng_float(-1, 1));
    }
    double *gamma_ref = doubles((size_t)n_cols), *beta_ref = doubles((size_t)n_cols);
    dev_buf gamma_buf, beta_buf, x_buf, out_buf;
    zt_weight gamma = {NULL, ZT_F32}, beta = {NULL, ZT_F32};
    if (affine) {
        gamma = upload_weight(&gamma_buf, "gamma", dtype, (size_t)n_cols, -1.5, 1.5, gamma_ref);
        beta = upload_weight(&beta_buf, "beta", dtype, (size_t)n_cols, -1, 1, beta_ref);
    } else {
        for (int c = 0; c < n_cols; c++)
            gamma_ref[c] = 1.0, beta_ref[c] = 0.0;
    }
    float *in, *out;
    if (in_place) {
        in = out = dev_inout(&out_buf, "x", x, n * sizeof(float));
    } else {
        in = dev_input(&x_buf, "in", x, n * sizeof(float));
        out = dev_output(&out_buf, "out", n * sizeof(float));
    }
    ZT_CHECK_OK(be->ops->layernorm(be, out, in, gamma, beta, n_rows, n_cols, eps));

    double *ref = doubles(n), *tol = doubles(n);
    for (int r = 0; r < n_rows; r++) {
        const float *row = x + (size_t)r * n_cols;
        double sum = 0.0, squares = 0.0;
        for (int c = 0; c < n_cols; c++)
            sum += row[c];
        double mean = sum / n_cols;
        for (int c = 0; c < n_cols; c++)
            squares += (row[c] - mean) * (row[c] - mean);
        double rstd = 1.0 / sqrt(squares / n_cols + (double)eps);
        for (int c = 0; c < n_cols; c++) {
            size_t i = (size_t)r * n_cols + c;
            ref[i] = (row[c] - mean) * rstd * gamma_ref[c] + beta_ref[c];
            tol[i] = 8 * U *
                     ((fabs(row[c]) + fabs(mean)) * rstd * fabs(gamma_ref[c]) + fabs(beta_ref[c]));
        }
    }
    float *got = test_alloc(n * sizeof *got);
    dev_read(&out_buf, got);
    check_close_array("out", got, ref, tol, n, &hr_layernorm);
    if (n_rows >= 3) { /* the constant row: x - mean is exactly 0, so y is exactly beta */
        size_t last = (size_t)(n_rows - 1) * n_cols;
        int exact = 1;
        for (int c = 0; c < n_cols; c++)
            exact &= got[last + c] == (float)beta_ref[c];
        ZT_CHECK(exact, "%s: constant row is not exactly beta", context);
    }

    if (affine) dev_release(&gamma_buf), dev_release(&beta_buf);
    if (!in_place) dev_release(&x_buf);
    dev_release(&out_buf);
    free(x), free(gamma_ref), free(beta_ref), free(ref), free(tol), free(got);
}

static void test_layernorm(void) {
    static const int shapes[][2] = {{1, 1}, {1, 3000}, {3, 7}, {4, 3000}, {5, 768}, {7, 33}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int in_place = 0; in_place <= 1; in_place++) {
            layernorm_case(ZT_F32, 0, shapes[s][0], shapes[s][1], in_place);
            for (int d = 0; d < 3; d++)
                layernorm_case(ALL_DTYPES[d], 1, shapes[s][0], shapes[s][1], in_place);
        }
    }
}

/* ================================ linear ================================ */

/* A K-term f32 dot product (sgemm, any blocking, FMA or not) has worst-case error about
 * K U sum_k |x_k w_k|, but the rounding errors are independent and the realised error is about
 * 0.3 U sum_k |x_k w_k| (a random walk of sqrt(K) roundings, each of size U * a partial sum that
 * grows like sqrt(K)). tol = 16U sum_k |x_k w_k| + 2U |pre-activation| keeps ~10x headroom over
 * the largest realised error across 200k outputs yet still sees a single dropped term; the
 * second part covers the rounding of the bias add. ReLU is 1-Lipschitz, so the same tol holds
 * after it. The printed headroom reports the worst realised ratio. */
typedef struct linear_shape {
    int n_rows, in_features, out_features;
} linear_shape;

static void linear_case(zt_dtype w_dtype, zt_dtype bias_dtype, int has_bias, linear_shape shape,
                        int relu) {
    const int n_rows = shape.n_rows, in_f = shape.in_features, out_f = shape.out_features;
    set_context("linear W=%s bias=%s N=%d IC=%d OC=%d relu=%d", zt_dtype_name(w_dtype),
                has_bias ? zt_dtype_name(bias_dtype) : "none", n_rows, in_f, out_f, relu);
    size_t in_n = (size_t)n_rows * in_f, w_n = (size_t)out_f * in_f, out_n = (size_t)n_rows * out_f;
    float *x = random_floats(in_n, -1, 1);
    double *w_ref = doubles(w_n), *bias_ref = doubles((size_t)out_f);
    dev_buf w_buf, bias_buf, in_buf, out_buf;
    zt_weight w = upload_weight(&w_buf, "weight", w_dtype, w_n, -1, 1, w_ref);
    zt_weight bias = {NULL, ZT_F32};
    if (has_bias)
        bias = upload_weight(&bias_buf, "bias", bias_dtype, (size_t)out_f, -1, 1, bias_ref);
    else
        for (int o = 0; o < out_f; o++)
            bias_ref[o] = 0.0;
    float *in = dev_input(&in_buf, "in", x, in_n * sizeof(float));
    float *out = dev_output(&out_buf, "out", out_n * sizeof(float));
    ZT_CHECK_OK(be->ops->linear(be, out, in, w, bias, n_rows, in_f, out_f, relu));

    double *ref = doubles(out_n), *tol = doubles(out_n);
    for (int n = 0; n < n_rows; n++) {
        const float *x_row = x + (size_t)n * in_f;
        for (int o = 0; o < out_f; o++) {
            const double *w_row = w_ref + (size_t)o * in_f;
            double dot = 0.0, magnitude = 0.0;
            for (int k = 0; k < in_f; k++) {
                dot += x_row[k] * w_row[k];
                magnitude += fabs(x_row[k] * w_row[k]);
            }
            double pre = dot + bias_ref[o];
            size_t i = (size_t)n * out_f + o;
            ref[i] = relu && pre < 0 ? 0.0 : pre;
            tol[i] = 16 * U * magnitude + 2 * U * fabs(pre);
        }
    }
    float *got = test_alloc(out_n * sizeof *got);
    dev_read(&out_buf, got);
    check_close_array("out", got, ref, tol, out_n, &hr_linear);

    dev_release(&w_buf);
    if (has_bias) dev_release(&bias_buf);
    dev_release(&in_buf);
    dev_release(&out_buf);
    free(x), free(w_ref), free(bias_ref), free(ref), free(tol), free(got);
}

static void test_linear(void) {
    /* 300 = one chunk boundary (256) mid-output; 513 = two, the last chunk one row wide. */
    static const linear_shape shapes[] = {{1, 1, 1},      {3, 7, 5},    {1, 33, 300},
                                          {17, 100, 513}, {2, 3000, 9}, {6, 257, 31}};
    for (int d = 0; d < 3; d++) {
        zt_dtype dtype = ALL_DTYPES[d];
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            linear_case(dtype, dtype, 1, shapes[s], 0);
            linear_case(dtype, dtype, 0, shapes[s], 1);
            linear_case(dtype, dtype, 1, shapes[s], 1);
        }
        /* The tied LM head: vocabulary rows, no bias; 50272 = 196 chunks + 96 rows. */
        linear_case(dtype, dtype, 0, (linear_shape){4, 64, 50272}, 0);
    }
    /* Bias dtype differing from the weight's. */
    linear_case(ZT_F32, ZT_F16, 1, (linear_shape){3, 40, 270}, 1);
    linear_case(ZT_F16, ZT_F32, 1, (linear_shape){3, 40, 270}, 0);
    linear_case(ZT_BF16, ZT_F16, 1, (linear_shape){2, 9, 11}, 1);
}

/* The half-weight path converts ZT_CPU_LINEAR_CHUNK_ROWS rows at a time, so its scratch (plus
 * the bias in f32) stays bounded however large out_features is. Measured on a fresh backend. */
static void test_linear_scratch_bounded(void) {
    zt_backend *main_be = be;
    ZT_REQUIRE_OK(zt_cpu_backend_create(2, &be));
    zt_mem_stats before, after;
    zt_mem_stats_get(&before);
    linear_case(ZT_F16, ZT_F16, 1, (linear_shape){2, 48, 50272}, 0);
    zt_mem_stats_get(&after);
    size_t grown = after.current[ZT_MEM_SCRATCH] - before.current[ZT_MEM_SCRATCH];
    size_t bound = ((size_t)ZT_CPU_LINEAR_CHUNK_ROWS * 48 + 50272) * sizeof(float);
    ZT_CHECK(grown > 0 && grown <= bound, "linear scratch grew by %zu bytes, bound %zu", grown,
             bound);
    zt_backend_destroy(be);
    be = main_be;
    zt_mem_stats_get(&after);
    ZT_CHECK(after.current[ZT_MEM_SCRATCH] == before.current[ZT_MEM_SCRATCH],
             "scratch bytes %zu after destroy, want %zu", after.current[ZT_MEM_SCRATCH],
             before.current[ZT_MEM_SCRATCH]);
}

/* ================================ attention ================================ */

/* Error budget per output element (b, i, head, d), all relative to sum_j p_j |v_jd|:
 *  - each score: q * q_scale rounded to f32, then a D-term f32 dot: |ds| <= eps_s =
 *    (D + 2) U max_j sum_d |q_d q_scale k_jd| (worst case, any summation order);
 *  - each weight exp(s_j - max) then carries relative error rho <= eps_s (the common max
 *    cancels in the normalisation) + U |s_j - max| (the subtraction) + 2U (expf is within one
 *    ulp) + 2U for second-order terms; normalising doubles it: 2 rho;
 *  - the f32 accumulation of n_adm weighted rows of v: (n_adm + 1) U worst case, plus U each
 *    for the f32 reciprocal of the double weight sum and the final product.
 * tol = (2 rho + (n_adm + 4) U) sum_j p_j |v_jd|. A query without admissible keys must be
 * exactly 0 (tol 0). */
typedef struct attention_shape {
    int batch, seq_len, n_heads, head_dim;
} attention_shape;

static void attention_reference(const float *q, const float *k, const float *v, const int32_t *mask,
                                attention_shape shape, float q_scale, double *ref, double *tol,
                                double *scores /* (T) */) {
    const int T = shape.seq_len, H = shape.n_heads, D = shape.head_dim;
    const size_t C = (size_t)H * D;
    for (int b = 0; b < shape.batch; b++) {
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < T; i++) {
                size_t q_at = ((size_t)b * T + i) * C + (size_t)h * D;
                double max_score = -INFINITY, max_magnitude = 0.0;
                int n_admissible = 0;
                for (int j = 0; j <= i; j++) {
                    if (mask[(size_t)b * T + j] == 0) continue;
                    size_t k_at = ((size_t)b * T + j) * C + (size_t)h * D;
                    double dot = 0.0, magnitude = 0.0;
                    for (int d = 0; d < D; d++) {
                        double term = (double)q[q_at + d] * q_scale * k[k_at + d];
                        dot += term;
                        magnitude += fabs(term);
                    }
                    scores[j] = dot;
                    if (dot > max_score) max_score = dot;
                    if (magnitude > max_magnitude) max_magnitude = magnitude;
                    n_admissible++;
                }
                double weight_sum = 0.0, max_gap = 0.0;
                for (int j = 0; j <= i; j++) {
                    if (mask[(size_t)b * T + j] == 0) continue;
                    weight_sum += exp(scores[j] - max_score);
                    if (max_score - scores[j] > max_gap) max_gap = max_score - scores[j];
                }
                double rho = (D + 2) * U * max_magnitude + U * max_gap + 4 * U;
                double factor = 2 * rho + (n_admissible + 4) * U;
                for (int d = 0; d < D; d++) {
                    double value = 0.0, magnitude = 0.0;
                    for (int j = 0; j <= i; j++) {
                        if (mask[(size_t)b * T + j] == 0) continue;
                        double p = exp(scores[j] - max_score) / weight_sum;
                        double v_jd = v[((size_t)b * T + j) * C + (size_t)h * D + d];
                        value += p * v_jd;
                        magnitude += p * fabs(v_jd);
                    }
                    ref[q_at + d] = n_admissible ? value : 0.0;
                    tol[q_at + d] = n_admissible ? factor * magnitude : 0.0;
                }
            }
        }
    }
}

static void attention_case(const char *label, attention_shape shape,
                           const int32_t *mask /* (B,T) */) {
    set_context("attention %s B=%d T=%d H=%d D=%d", label, shape.batch, shape.seq_len,
                shape.n_heads, shape.head_dim);
    size_t n = (size_t)shape.batch * shape.seq_len * shape.n_heads * shape.head_dim;
    size_t mask_n = (size_t)shape.batch * shape.seq_len;
    float q_scale = (float)(1.0 / sqrt((double)shape.head_dim));
    /* |q| up to 4 makes the softmax peaked rather than near-uniform. */
    float *q = random_floats(n, -4, 4), *k = random_floats(n, -2, 2), *v = random_floats(n, -2, 2);
    dev_buf q_buf, k_buf, v_buf, mask_buf, out_buf;
    float *q_dev = dev_input(&q_buf, "q", q, n * sizeof(float));
    float *k_dev = dev_input(&k_buf, "k", k, n * sizeof(float));
    float *v_dev = dev_input(&v_buf, "v", v, n * sizeof(float));
    int32_t *mask_dev = dev_input(&mask_buf, "key_mask", mask, mask_n * sizeof(int32_t));
    float *out = dev_output(&out_buf, "out", n * sizeof(float));
    ZT_CHECK_OK(be->ops->attention(be, out, q_dev, k_dev, v_dev, mask_dev, shape.batch,
                                   shape.seq_len, shape.n_heads, shape.head_dim, q_scale));

    double *ref = doubles(n), *tol = doubles(n), *scores = doubles((size_t)shape.seq_len);
    attention_reference(q, k, v, mask, shape, q_scale, ref, tol, scores);
    float *got = test_alloc(n * sizeof *got);
    dev_read(&out_buf, got);
    check_close_array("out", got, ref, tol, n, &hr_attention);

    dev_release(&q_buf), dev_release(&k_buf), dev_release(&v_buf);
    dev_release(&mask_buf), dev_release(&out_buf);
    free(q), free(k), free(v), free(ref), free(tol), free(scores), free(got);
}

/* Fills a (B,T) mask from one string per sequence, '1' = token, '0' = pad. */
static int32_t *mask_from(int batch, int seq_len, const char *const *rows) {
    int32_t *mask = test_alloc((size_t)batch * seq_len * sizeof *mask);
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < seq_len; t++)
            mask[(size_t)b * seq_len + t] = rows[b][t] == '1';
    return mask;
}

/* left_pad pads at the front, then real tokens, then right_pad pads at the end. */
static int32_t *padded_mask(int seq_len, int left_pad, int right_pad) {
    int32_t *mask = test_alloc((size_t)seq_len * sizeof *mask);
    for (int t = 0; t < seq_len; t++)
        mask[t] = t >= left_pad && t < seq_len - right_pad;
    return mask;
}

static void test_attention(void) {
    const char *one[] = {"1"}, *pad[] = {"0"};
    int32_t *mask = mask_from(1, 1, one);
    attention_case("T=1", (attention_shape){1, 1, 1, 1}, mask);
    free(mask);
    mask = mask_from(1, 1, pad);
    attention_case("T=1 fully padded", (attention_shape){1, 1, 2, 3}, mask);
    free(mask);

    /* Left pads, right pads, a fully padded sequence (all zeros), no pads, holes. */
    const char *mixed[] = {"0000111111111", "1111111100000", "0000000000000", "1111111111111",
                           "0110100111011"};
    mask = mask_from(5, 13, mixed);
    attention_case("mixed padding", (attention_shape){5, 13, 3, 7}, mask);
    free(mask);

    const char *opt125[] = {"0000000000111111111111111111111111111",
                            "1111111111111111111111111111110000000"};
    mask = mask_from(2, 37, opt125);
    attention_case("left/right pads, D=64", (attention_shape){2, 37, 2, 64}, mask);
    free(mask);

    mask = padded_mask(5, 0, 0);
    attention_case("D=80", (attention_shape){1, 5, 1, 80}, mask);
    free(mask);

    mask = padded_mask(3000, 3, 2);
    attention_case("long rows", (attention_shape){1, 3000, 2, 24}, mask);
    free(mask);
}

/* ================================ add ================================ */

/* One f32 rounding of a sum that double holds exactly: tol = U |ref|. */
static void test_add(void) {
    static const size_t sizes[] = {1, 13, 3001, 4103};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        set_context("add n=%zu", n);
        float *x = random_floats(n, -2, 2), *y = random_floats(n, -2, 2);
        dev_buf x_buf, y_buf;
        float *x_dev = dev_inout(&x_buf, "x", x, n * sizeof(float));
        float *y_dev = dev_input(&y_buf, "y", y, n * sizeof(float));
        ZT_CHECK_OK(be->ops->add(be, x_dev, y_dev, n));
        double *ref = doubles(n), *tol = doubles(n);
        for (size_t i = 0; i < n; i++) {
            ref[i] = (double)x[i] + y[i];
            tol[i] = U * fabs(ref[i]);
        }
        float *got = test_alloc(n * sizeof *got);
        dev_read(&x_buf, got);
        check_close_array("x", got, ref, tol, n, &hr_add);
        dev_release(&x_buf), dev_release(&y_buf);
        free(x), free(y), free(ref), free(tol), free(got);
    }
}

/* ================================ target_logprobs ================================ */

/* The op and the reference both work in double (max subtracted, exp summed, log) and differ
 * only in summation order, ~V * 2^-53 relative on the sum, i.e. < 1e-11 absolute on the log
 * for V = 50272; then the op rounds to f32. tol = 1e-10 + U |ref|. */
static void logprob_case(const char *label, int n_rows, int vocab, const float *logits,
                         const int32_t *targets) {
    set_context("target_logprobs %s R=%d V=%d", label, n_rows, vocab);
    size_t n = (size_t)n_rows * vocab;
    dev_buf logits_buf, targets_buf, out_buf;
    float *logits_dev = dev_input(&logits_buf, "logits", logits, n * sizeof(float));
    int32_t *targets_dev =
        dev_input(&targets_buf, "targets", targets, (size_t)n_rows * sizeof(int32_t));
    float *out = dev_output(&out_buf, "logprob", (size_t)n_rows * sizeof(float));
    ZT_CHECK_OK(be->ops->target_logprobs(be, out, logits_dev, targets_dev, n_rows, vocab));

    double *ref = doubles((size_t)n_rows), *tol = doubles((size_t)n_rows);
    for (int r = 0; r < n_rows; r++) {
        const float *row = logits + (size_t)r * vocab;
        double max_logit = row[0], sum = 0.0;
        for (int j = 1; j < vocab; j++)
            max_logit = row[j] > max_logit ? row[j] : max_logit;
        for (int j = 0; j < vocab; j++)
            sum += exp(row[j] - max_logit);
        ref[r] = row[targets[r]] - (max_logit + log(sum));
        tol[r] = 1e-10 + U * fabs(ref[r]);
    }
    float *got = test_alloc((size_t)n_rows * sizeof *got);
    dev_read(&out_buf, got);
    check_close_array("logprob", got, ref, tol, (size_t)n_rows, &hr_logprob);
    dev_release(&logits_buf), dev_release(&targets_buf), dev_release(&out_buf);
    free(ref), free(tol), free(got);
}

static void test_target_logprobs(void) {
    float single = 3.5f;
    int32_t zero = 0;
    logprob_case("V=1", 1, 1, &single, &zero);

    float *small = random_floats(3 * 7, -5, 5);
    int32_t small_targets[3] = {0, 6, 3};
    logprob_case("small", 3, 7, small, small_targets);
    free(small);

    /* Vocabulary-wide rows: plain; all equal (-log V); one dominant target (~0); offsets of
     * -1000 and +500, where exp without the max subtracted under- or overflows; the row's
     * minimum as target. */
    const int R = 6, V = 50272;
    float *logits = random_floats((size_t)R * V, -8, 8);
    int32_t targets[6] = {0, V - 1, 0, 0, 0, 0};
    for (int j = 0; j < V; j++) {
        logits[1 * (size_t)V + j] = 0.5f;
        logits[3 * (size_t)V + j] -= 1000.0f;
        logits[4 * (size_t)V + j] += 500.0f;
    }
    targets[2] = rng_int(V);
    logits[2 * (size_t)V + targets[2]] = 80.0f;
    targets[3] = rng_int(V);
    targets[4] = rng_int(V);
    for (int j = 1; j < V; j++)
        if (logits[5 * (size_t)V + j] < logits[5 * (size_t)V + targets[5]]) targets[5] = j;
    logprob_case("vocab", R, V, logits, targets);
    free(logits);
}

/* ================================ thread counts ================================ */

/* attention and layernorm split work over rows, heads or queries, never inside a reduction, so
 * their results must be bitwise identical whatever the thread count. So must linear: it gives
 * the threads fixed pieces of 128 output columns, each one single-threaded sgemm (OpenBLAS's
 * roundings depend on where an element sits in the matrix it is given, so the pieces must not
 * depend on the thread count). 300 columns make two whole pieces and a partial one, for an f16
 * weight (widened in chunks) and an f32 one. */
typedef struct probe_outputs {
    float attention[2 * 50 * 32];
    float layernorm[2 * 50 * 96];
    float linear[2 * 50 * 300];
    float linear_f32[2 * 50 * 300];
} probe_outputs;

static void run_thread_probe(int n_threads, probe_outputs *out) {
    zt_backend *main_be = be;
    ZT_REQUIRE_OK(zt_cpu_backend_create(n_threads, &be));
    uint64_t saved_rng = rng_state;
    rng_state = 12345; /* the same inputs for every thread count */
    const int B = 2, T = 50, H = 2, D = 16, C = H * D, IC = 96, OC = 300;
    const size_t n = (size_t)B * T * C;
    float *q = random_floats(n, -4, 4), *k = random_floats(n, -2, 2), *v = random_floats(n, -2, 2);
    int32_t *mask = test_alloc((size_t)B * T * sizeof *mask);
    for (int t = 0; t < B * T; t++)
        mask[t] = t % T >= 7 * (t / T); /* sequence 1: 7 left pads */
    float *x = random_floats((size_t)B * T * IC, -1, 1);
    double *w_ref = doubles((size_t)OC * IC);
    void *w_bytes = random_weight_bytes(ZT_F16, (size_t)OC * IC, -1, 1, w_ref);
    zt_weight w = {w_bytes, ZT_F16}, none = {NULL, ZT_F32};
    /* Host pointers are backend buffers on the CPU backend. */
    ZT_CHECK_OK(be->ops->attention(be, out->attention, q, k, v, mask, B, T, H, D, 0.25f));
    ZT_CHECK_OK(be->ops->layernorm(be, out->layernorm, x, none, none, B * T, IC, 1e-5f));
    ZT_CHECK_OK(be->ops->linear(be, out->linear, x, w, none, B * T, IC, OC, 1));
    float *w_f32 = random_floats((size_t)OC * IC, -1, 1);
    zt_weight w32 = {w_f32, ZT_F32};
    ZT_CHECK_OK(be->ops->linear(be, out->linear_f32, x, w32, none, B * T, IC, OC, 0));
    free(w_f32);
    zt_backend_destroy(be);
    be = main_be;
    rng_state = saved_rng;
    free(q), free(k), free(v), free(mask), free(x), free(w_ref), free(w_bytes);
}

static void test_thread_counts(void) {
    set_context("thread counts");
    probe_outputs *one = test_alloc(sizeof *one), *three = test_alloc(sizeof *three),
                  *three_again = test_alloc(sizeof *three_again);
    run_thread_probe(1, one);
    run_thread_probe(3, three);
    run_thread_probe(3, three_again);
    ZT_CHECK(memcmp(one->attention, three->attention, sizeof one->attention) == 0,
             "attention differs between 1 and 3 threads");
    ZT_CHECK(memcmp(one->layernorm, three->layernorm, sizeof one->layernorm) == 0,
             "layernorm differs between 1 and 3 threads");
    ZT_CHECK(memcmp(one->linear, three->linear, sizeof one->linear) == 0,
             "linear (f16 weight) differs between 1 and 3 threads");
    ZT_CHECK(memcmp(one->linear_f32, three->linear_f32, sizeof one->linear_f32) == 0,
             "linear (f32 weight) differs between 1 and 3 threads");
    ZT_CHECK(memcmp(three->linear, three_again->linear, sizeof three->linear) == 0,
             "linear differs between two runs on 3 threads");
    free(one), free(three), free(three_again);
}

/* ================================ errors ================================ */

static void expect_error(const char *what, zt_status got, zt_status want, const char *message) {
    ZT_CHECK(got == want, "%s: status %s, want %s", what, zt_status_name(got),
             zt_status_name(want));
    ZT_CHECK(strcmp(zt_last_error(), message) == 0, "%s: message \"%s\", want \"%s\"", what,
             zt_last_error(), message);
}

static void expect_untouched(const dev_buf *b, const char *what) {
    uint8_t *host = test_alloc(b->n_bytes);
    dev_read(b, host);
    ZT_CHECK(is_sentinel(host, b->n_bytes, GUARD_BYTES),
             "%s: output written although the op failed", what);
    free(host);
}

static void test_errors(void) {
    set_context("errors");
    const zt_status BAD = ZT_ERR_INVALID_ARG;
    dev_buf table_buf, rows_buf, out_buf;
    double table_ref[1000 * 3];
    zt_weight table = upload_weight(&table_buf, "table", ZT_F16, 1000 * 3, -1, 1, table_ref);
    int32_t rows[4] = {0, 999, 1234, 5};
    int32_t *rows_dev = dev_input(&rows_buf, "rows", rows, sizeof rows);
    float *out = dev_output(&out_buf, "out", 4 * 3 * sizeof(float));
    expect_error("bad row", be->ops->gather_rows(be, out, rows_dev, table, 4, 1000, 3, 0, NULL),
                 BAD, "gather_rows: row 2 index 1234 outside [0, 1000)");
    expect_untouched(&out_buf, "gather_rows");
    rows[0] = -1;
    ZT_REQUIRE_OK(be->ops->upload(be, rows_dev, rows, sizeof rows));
    memcpy(rows_buf.expect, rows, sizeof rows); /* the input as it now is */
    expect_error("negative row",
                 be->ops->gather_rows(be, out, rows_dev, table, 4, 1000, 3, 1, NULL), BAD,
                 "gather_rows: row 0 index -1 outside [0, 1000)");
    expect_error("zero columns",
                 be->ops->gather_rows(be, out, rows_dev, table, 4, 1000, 0, 0, NULL), BAD,
                 "gather_rows: n_cols 0 must be > 0");
    expect_untouched(&out_buf, "gather_rows");

    /* target_logprobs: a target one past the vocabulary, and a negative one. */
    const int V = 50272;
    float *logits = random_floats(4 * (size_t)V, -1, 1);
    int32_t targets[4] = {1, 2, 3, V};
    dev_buf logits_buf, targets_buf, logprob_buf;
    float *logits_dev = dev_input(&logits_buf, "logits", logits, 4 * (size_t)V * sizeof(float));
    int32_t *targets_dev = dev_input(&targets_buf, "targets", targets, sizeof targets);
    float *logprob = dev_output(&logprob_buf, "logprob", 4 * sizeof(float));
    expect_error("bad target", be->ops->target_logprobs(be, logprob, logits_dev, targets_dev, 4, V),
                 BAD, "target_logprobs: row 3 target 50272 outside [0, 50272)");
    expect_error("target vs small vocab",
                 be->ops->target_logprobs(be, logprob, logits_dev, targets_dev, 3, 3), BAD,
                 "target_logprobs: row 2 target 3 outside [0, 3)");
    expect_error("zero rows", be->ops->target_logprobs(be, logprob, logits_dev, targets_dev, 0, V),
                 BAD, "target_logprobs: n_rows 0 must be > 0");
    expect_error("zero vocab", be->ops->target_logprobs(be, logprob, logits_dev, targets_dev, 4, 0),
                 BAD, "target_logprobs: vocab 0 must be > 0");
    expect_untouched(&logprob_buf, "target_logprobs");

    /* linear: dims, NULL weight, unknown dtype, aliasing. logits_dev serves as a big input. */
    zt_weight w = {logits_dev, ZT_F32}, none = {NULL, ZT_F32};
    float *lin_out = (float *)logits_dev + V; /* inside the (2,V) input */
    expect_error("zero in_features", be->ops->linear(be, out, logits_dev, w, none, 1, 0, 3, 0), BAD,
                 "linear: in_features 0 must be > 0");
    expect_error("negative rows", be->ops->linear(be, out, logits_dev, w, none, -3, 4, 3, 0), BAD,
                 "linear: n_rows -3 must be > 0");
    expect_error("zero out_features", be->ops->linear(be, out, logits_dev, w, none, 1, 4, 0, 0),
                 BAD, "linear: out_features 0 must be > 0");
    expect_error("NULL weight", be->ops->linear(be, out, logits_dev, none, none, 1, 4, 3, 0), BAD,
                 "linear: weight is NULL");
    zt_weight odd = {logits_dev, (zt_dtype)9};
    expect_error("unknown dtype", be->ops->linear(be, out, logits_dev, odd, none, 1, 4, 3, 0), BAD,
                 "linear: weight has unknown dtype 9");
    expect_error("aliasing", be->ops->linear(be, lin_out, logits_dev, w, none, 2, V, 4, 0), BAD,
                 "linear: out overlaps in");
    expect_untouched(&out_buf, "linear");

    /* layernorm */
    expect_error("zero columns", be->ops->layernorm(be, out, logits_dev, none, none, 2, 0, 1e-5f),
                 BAD, "layernorm: n_cols 0 must be > 0");
    expect_error("unknown gamma dtype",
                 be->ops->layernorm(be, out, logits_dev, odd, none, 2, 3, 1e-5f), BAD,
                 "layernorm: gamma has unknown dtype 9");
    expect_error("NaN eps", be->ops->layernorm(be, out, logits_dev, none, none, 2, 3, NAN), BAD,
                 "layernorm: eps nan must be >= 0");
    expect_untouched(&out_buf, "layernorm");

    /* attention: dims and out aliasing v. */
    const float *qkv = logits_dev;
    expect_error("zero seq_len",
                 be->ops->attention(be, out, qkv, qkv, qkv, targets_dev, 1, 0, 1, 3, 1.0f), BAD,
                 "attention: seq_len 0 must be > 0");
    expect_error("zero head_dim",
                 be->ops->attention(be, out, qkv, qkv, qkv, targets_dev, 1, 4, 1, 0, 1.0f), BAD,
                 "attention: head_dim 0 must be > 0");
    expect_error("out aliases v",
                 be->ops->attention(be, out, qkv, qkv, out, targets_dev, 1, 4, 1, 3, 1.0f), BAD,
                 "attention: out overlaps v");
    expect_untouched(&out_buf, "attention");

    /* add: nothing to do for zero elements; NULL operands otherwise. */
    ZT_CHECK_OK(be->ops->add(be, NULL, NULL, 0));
    expect_error("NULL y", be->ops->add(be, out, NULL, 3), BAD, "add: y is NULL");

    /* memory */
    void *p = NULL;
    expect_error("bad category", be->ops->alloc(be, 16, (zt_mem_category)7, &p), BAD,
                 "cpu alloc: unknown memory category 7");
    ZT_CHECK(p == NULL, "failed alloc returned %p", p);

    dev_release(&table_buf), dev_release(&rows_buf), dev_release(&out_buf);
    dev_release(&logits_buf), dev_release(&targets_buf), dev_release(&logprob_buf);
    free(logits);
}

int main(void) {
    uint64_t seed = 20240611;
    const char *seed_text = getenv("ZT_OPS_SEED");
    if (seed_text && *seed_text) seed = strtoull(seed_text, NULL, 0);
    printf("test_ops_cpu: seed %llu (ZT_OPS_SEED overrides)\n", (unsigned long long)seed);
    rng_state = seed;

    ZT_REQUIRE_OK(zt_cpu_backend_create(2, &be));
    test_memory();
    test_gather();
    test_layernorm();
    test_linear();
    test_linear_scratch_bounded();
    test_attention();
    test_add();
    test_target_logprobs();
    test_thread_counts();
    test_errors();
    zt_backend_destroy(be);

    zt_mem_stats stats;
    zt_mem_stats_get(&stats);
    ZT_CHECK(stats.current_total == 0, "%zu bytes still tracked after destroy",
             stats.current_total);
    const headroom *all[] = {&hr_gather,    &hr_layernorm, &hr_linear,
                             &hr_attention, &hr_add,       &hr_logprob};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        printf("  %-16s worst |err|/tol = %.3g\n", all[i]->op, all[i]->worst);
    return zt_test_finish("test_ops_cpu");
}
