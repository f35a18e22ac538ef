/* Op-by-op parity of a backend under test ("dut") with the CPU backend (the reference) for the
 * backward ops of kernels/backend.h (docs/design.md §3.1). Shared by tests/cudaemu (the CUDA
 * kernels under the host executor) and, later, tests/gpu (the real CUDA backend); include it in
 * exactly one .c per program, after zt_test.h. Its names start with zt_bwd_, so a program may
 * include op_parity.h beside it.
 *
 * Every case runs the op on both backends from the same seeded inputs, on awkward shapes (sizes
 * that are not multiples of a warp, a block or a tile; T = 1; rows of 3000+; a 50272-word
 * vocabulary; f32/f16/bf16 weights; left, right, full and holed padding; relu on and off; NULL
 * for every gradient the op may skip). For every buffer:
 *   - guard bands of ZT_PARITY_GUARD_BYTES before and after it, checked untouched afterwards;
 *   - inputs are downloaded again and must be unchanged;
 *   - gradients the op writes (=) start as NaN bytes, so an element it forgot is caught by the
 *     finiteness check; gradients it accumulates (+=) start from seeded values.
 * gather_rows_backward must match bit for bit (the same f32 adds in the same order); the others
 * are compared by NMSE = sum (dut - ref)^2 / sum ref^2 against a bound per op. The dut runs every
 * case twice and must give the same bits (run the program with CUDAEMU_ORDER=reverse too). A bad
 * row or target index must fail alike on both backends (status and message) and write nothing.
 */
#ifndef ZT_TEST_BACKWARD_PARITY_H
#define ZT_TEST_BACKWARD_PARITY_H

#include "parity_common.h"

/* Bounds as op_parity.h's: the reference sums in double (or sgemm's f32 order), the device in
 * f32 trees or cuBLASLt's order; agreement is ~1e-14, an indexing bug ~1. */
#define ZT_BWD_NMSE_GATHER 0.0 /* and bit for bit */
#define ZT_BWD_NMSE_LAYERNORM 1e-10
#define ZT_BWD_NMSE_LINEAR 1e-10
#define ZT_BWD_NMSE_ATTENTION 1e-10
#define ZT_BWD_NMSE_LOGPROB 1e-10

// ---------------------------------------------------------------------------------------------
// Helpers

/* n floats of NaN bytes: an output the op must write. */
static inline float *zt_bwd_nan_floats(size_t n) {
    float *x = (float *)malloc(n * sizeof(float) + 1);
    memset(x, 0xff, n * sizeof(float));
    return x;
}

static inline float *zt_bwd_copy(const float *x, size_t n) {
    float *copy = (float *)malloc(n * sizeof(float) + 1);
    memcpy(copy, x, n * sizeof(float));
    return copy;
}

/* The dut's second run must give the first run's bits. */
static inline void zt_bwd_same_bits(const char *op, const char *case_name, const char *what,
                                    const float *first, const float *again, size_t n) {
    ZT_CHECK(memcmp(first, again, n * sizeof(float)) == 0,
             "%s %s: %s differs between two runs of the dut", op, case_name, what);
}

/* An output compared by NMSE, then its two dut runs bit for bit. */
static inline void zt_bwd_compare(const char *op, const char *case_name, const char *what,
                                  const float *got, const float *again, const float *want, size_t n,
                                  double bound) {
    char name[192];
    snprintf(name, sizeof name, "%s: %s", case_name, what);
    zt_parity_compare(op, name, got, want, n, bound);
    zt_bwd_same_bits(op, case_name, what, got, again, n);
}

/* Where the reference is exactly 0 (queries without a key, keys no query sees), the dut must be
 * too. Returns how many such values there are. */
static inline size_t zt_bwd_exact_zeros(const char *op, const char *case_name, const char *what,
                                        const float *got, const float *want, size_t n) {
    size_t zeros = 0, wrong = 0;
    for (size_t i = 0; i < n; i++) {
        if (want[i] != 0.0f) continue;
        zeros++;
        wrong += got[i] != 0.0f;
    }
    ZT_CHECK(wrong == 0, "%s %s: %zu of the %zu zeros of %s are not 0", op, case_name, wrong, zeros,
             what);
    return zeros;
}

// ---------------------------------------------------------------------------------------------
// gather_rows_backward

typedef struct zt_bwd_gather_case {
    int n_rows, n_table_rows, n_cols;
} zt_bwd_gather_case;

static zt_status zt_bwd_run_gather(zt_backend *be, const zt_bwd_gather_case *c,
                                   const float *table_init, const float *d_out, const int32_t *rows,
                                   float *d_table, const char *name, char *error_text) {
    const size_t table_bytes = (size_t)c->n_table_rows * c->n_cols * sizeof(float);
    const size_t out_bytes = (size_t)c->n_rows * c->n_cols * sizeof(float);
    zt_pbuf b_table = {0}, b_out = {0}, b_rows = {0};
    zt_status s = ZT_ERR_INTERNAL;
    snprintf(error_text, 512, "setup failed");
    int ok = zt_pbuf_make(be, &b_table, table_init, table_bytes, "d_table") &&
             zt_pbuf_make(be, &b_out, d_out, out_bytes, "d_out") &&
             zt_pbuf_make(be, &b_rows, rows, (size_t)c->n_rows * sizeof(int32_t), "rows");
    if (ok) {
        s = be->ops->gather_rows_backward(
            be, (float *)zt_pbuf_ptr(&b_table), (const float *)zt_pbuf_ptr(&b_out),
            (const int32_t *)zt_pbuf_ptr(&b_rows), c->n_rows, c->n_table_rows, c->n_cols);
        snprintf(error_text, 512, "%s", s == ZT_OK ? "" : zt_last_error());
        zt_pbuf_fetch(&b_table, d_table, name);
        zt_pbuf_check_input(&b_out, d_out, name);
        zt_pbuf_check_input(&b_rows, rows, name);
    }
    zt_pbuf_free(&b_table);
    zt_pbuf_free(&b_out);
    zt_pbuf_free(&b_rows);
    return s;
}

static void zt_bwd_parity_gather(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    /* Tables from 2 rows (every row repeated many times) to OPT's vocabulary; columns from 1 to
     * past a 256-thread block; 3001 rows, most of them repeats. */
    static const zt_bwd_gather_case cases[] = {
        {1, 5, 1},    {37, 50, 33}, {19, 50272, 16},  {3001, 300, 70},
        {64, 2, 768}, {7, 11, 257}, {300, 1000, 600}, {100, 7, 3},
    };
    const char *op = "gather_rows_backward";
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_bwd_gather_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "N=%d rows=%d C=%d", c->n_rows, c->n_table_rows, c->n_cols);
        const size_t n_table = (size_t)c->n_table_rows * c->n_cols;
        const size_t n_out = (size_t)c->n_rows * c->n_cols;
        int32_t *rows = (int32_t *)malloc((size_t)c->n_rows * sizeof(int32_t));
        for (int i = 0; i < c->n_rows; i++)
            rows[i] = zt_prng_below(r, c->n_table_rows);
        rows[0] = c->n_table_rows - 1; /* both ends of the table */
        if (c->n_rows > 1) rows[c->n_rows - 1] = 0;
        if (c->n_rows > 2) rows[1] = rows[0]; /* back-to-back repeats */
        float *init = zt_random_floats(r, n_table, 1.0f, 0.0f);
        float *d_out = zt_random_floats(r, n_out, 1.0f, 0.0f);
        float *want = (float *)malloc(n_table * sizeof(float) + 1);
        float *got = (float *)malloc(n_table * sizeof(float) + 1);
        float *again = (float *)malloc(n_table * sizeof(float) + 1);
        char ref_text[512], dut_text[512];
        zt_status rs = zt_bwd_run_gather(ref, c, init, d_out, rows, want, name, ref_text);
        zt_status ds = zt_bwd_run_gather(dut, c, init, d_out, rows, got, name, dut_text);
        zt_status ds2 = zt_bwd_run_gather(dut, c, init, d_out, rows, again, name, dut_text);
        ZT_CHECK(rs == ZT_OK && ds == ZT_OK && ds2 == ZT_OK, "%s %s: ref %s / dut %s", op, name,
                 ref_text, dut_text);
        if (rs == ZT_OK && ds == ZT_OK && ds2 == ZT_OK) {
            zt_bwd_compare(op, name, "d_table", got, again, want, n_table, ZT_BWD_NMSE_GATHER);
            ZT_CHECK(memcmp(got, want, n_table * sizeof(float)) == 0,
                     "%s %s: d_table differs from the CPU's bits", op, name);
        } else {
            zt_parity_case_failed(op, ZT_BWD_NMSE_GATHER);
        }

        /* A bad index, before and past the table: the same error on both sides, d_table as it
         * was. */
        if (ci == 1) {
            const int32_t bad_values[2] = {-1, c->n_table_rows};
            for (int k = 0; k < 2; k++) {
                int32_t saved = rows[3 + k];
                rows[3 + k] = bad_values[k];
                char bad_name[160];
                snprintf(bad_name, sizeof bad_name, "%s, rows[%d] = %d", name, 3 + k,
                         (int)bad_values[k]);
                rs = zt_bwd_run_gather(ref, c, init, d_out, rows, want, bad_name, ref_text);
                ds = zt_bwd_run_gather(dut, c, init, d_out, rows, got, bad_name, dut_text);
                zt_parity_same_error(op, bad_name, rs, ref_text, ds, dut_text);
                ZT_CHECK(memcmp(got, init, n_table * sizeof(float)) == 0,
                         "%s %s: d_table changed although the op failed", op, bad_name);
                rows[3 + k] = saved;
            }
        }
        free(rows);
        free(init);
        free(d_out);
        free(want);
        free(got);
        free(again);
    }
}

// ---------------------------------------------------------------------------------------------
// layernorm_backward

typedef struct zt_bwd_layernorm_case {
    int n_rows, n_cols;
    int gamma_dtype;     /* zt_dtype or ZT_PARITY_ABSENT */
    int in_place;        /* d_in = d_out */
    int d_gamma, d_beta; /* 0: that gradient is skipped (NULL) */
    float offset;        /* a common offset of every row of `in`, to stress the mean */
} zt_bwd_layernorm_case;

/* The outputs of one run. */
typedef struct zt_bwd_layernorm_out {
    float *d_in, *d_gamma, *d_beta;
} zt_bwd_layernorm_out;

static zt_status zt_bwd_run_layernorm(zt_backend *be, const zt_bwd_layernorm_case *c,
                                      const float *d_out, const float *in, const void *gamma,
                                      const float *d_gamma_init, const float *d_beta_init,
                                      zt_bwd_layernorm_out *o, const char *name) {
    const size_t n = (size_t)c->n_rows * c->n_cols;
    const size_t row_bytes = (size_t)c->n_cols * sizeof(float);
    zt_pbuf b_dout = {0}, b_in = {0}, b_din = {0}, b_g = {0}, b_dg = {0}, b_db = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_dout, d_out, n * sizeof(float), "d_out") &&
             zt_pbuf_make(be, &b_in, in, n * sizeof(float), "in");
    if (ok && !c->in_place) ok = zt_pbuf_make(be, &b_din, NULL, n * sizeof(float), "d_in");
    if (ok && gamma)
        ok = zt_pbuf_make(be, &b_g, gamma,
                          (size_t)c->n_cols * zt_dtype_size((zt_dtype)c->gamma_dtype), "gamma");
    if (ok && c->d_gamma) ok = zt_pbuf_make(be, &b_dg, d_gamma_init, row_bytes, "d_gamma");
    if (ok && c->d_beta) ok = zt_pbuf_make(be, &b_db, d_beta_init, row_bytes, "d_beta");
    if (ok) {
        zt_weight g = {gamma ? zt_pbuf_ptr(&b_g) : NULL, gamma ? (zt_dtype)c->gamma_dtype : ZT_F32};
        float *dout_ptr = (float *)zt_pbuf_ptr(&b_dout);
        float *din_ptr = c->in_place ? dout_ptr : (float *)zt_pbuf_ptr(&b_din);
        s = be->ops->layernorm_backward(
            be, din_ptr, (float *)zt_pbuf_ptr(&b_dg), (float *)zt_pbuf_ptr(&b_db), dout_ptr,
            (const float *)zt_pbuf_ptr(&b_in), g, c->n_rows, c->n_cols, 1e-5f);
        ZT_CHECK(s == ZT_OK, "%s layernorm_backward %s: %s", be->ops->name, name, zt_last_error());
        if (c->in_place) {
            zt_pbuf_fetch(&b_dout, o->d_in, name);
        } else {
            zt_pbuf_fetch(&b_din, o->d_in, name);
            zt_pbuf_check_input(&b_dout, d_out, name);
        }
        zt_pbuf_check_input(&b_in, in, name);
        if (gamma) zt_pbuf_check_input(&b_g, gamma, name);
        if (c->d_gamma) zt_pbuf_fetch(&b_dg, o->d_gamma, name);
        if (c->d_beta) zt_pbuf_fetch(&b_db, o->d_beta, name);
    }
    zt_pbuf_free(&b_dout);
    zt_pbuf_free(&b_in);
    zt_pbuf_free(&b_din);
    zt_pbuf_free(&b_g);
    zt_pbuf_free(&b_dg);
    zt_pbuf_free(&b_db);
    return s;
}

static void zt_bwd_parity_layernorm(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    /* Rows up to 3001 (many 32-row pieces of the parameter sums), columns from 1 to 5120, half
     * gammas, no gamma, in place, each parameter gradient skipped. */
    static const zt_bwd_layernorm_case cases[] = {
        {1, 1, ZT_F32, 0, 1, 1, 0.0f},
        {7, 33, ZT_F16, 0, 1, 1, 0.0f},
        {5, 3000, ZT_BF16, 1, 1, 1, 0.0f},
        {64, 768, ZT_PARITY_ABSENT, 0, 0, 0, 100.0f},
        {3, 5120, ZT_F32, 1, 1, 0, 0.0f},
        {2, 4099, ZT_F16, 0, 0, 1, -3.0f},
        {300, 257, ZT_PARITY_ABSENT, 0, 1, 1, 0.0f},
        {3001, 40, ZT_BF16, 1, 1, 1, 5.0f},
    };
    const char *op = "layernorm_backward";
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_bwd_layernorm_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "N=%d C=%d gamma=%s%s%s%s offset=%g", c->n_rows, c->n_cols,
                 zt_weight_name(c->gamma_dtype), c->in_place ? " in-place" : "",
                 c->d_gamma ? "" : " no-d_gamma", c->d_beta ? "" : " no-d_beta", c->offset);
        const size_t n = (size_t)c->n_rows * c->n_cols, nc = (size_t)c->n_cols;
        float *in = zt_random_floats(r, n, 2.0f, c->offset);
        float *d_out = zt_random_floats(r, n, 1.0f, 0.0f);
        void *gamma = c->gamma_dtype == ZT_PARITY_ABSENT
                          ? NULL
                          : zt_random_weight(r, nc, (zt_dtype)c->gamma_dtype, 1.5f);
        float *dg_init = zt_random_floats(r, nc, 1.0f, 0.0f);
        float *db_init = zt_random_floats(r, nc, 1.0f, 0.0f);
        zt_bwd_layernorm_out o[3];
        for (int k = 0; k < 3; k++) {
            o[k].d_in = zt_bwd_nan_floats(n);
            o[k].d_gamma = zt_bwd_nan_floats(nc);
            o[k].d_beta = zt_bwd_nan_floats(nc);
        }
        zt_status rs =
            zt_bwd_run_layernorm(ref, c, d_out, in, gamma, dg_init, db_init, &o[0], name);
        zt_status ds =
            zt_bwd_run_layernorm(dut, c, d_out, in, gamma, dg_init, db_init, &o[1], name);
        zt_status ds2 =
            zt_bwd_run_layernorm(dut, c, d_out, in, gamma, dg_init, db_init, &o[2], name);
        if (rs == ZT_OK && ds == ZT_OK && ds2 == ZT_OK) {
            zt_bwd_compare(op, name, "d_in", o[1].d_in, o[2].d_in, o[0].d_in, n,
                           ZT_BWD_NMSE_LAYERNORM);
            if (c->d_gamma)
                zt_bwd_compare(op, name, "d_gamma", o[1].d_gamma, o[2].d_gamma, o[0].d_gamma, nc,
                               ZT_BWD_NMSE_LAYERNORM);
            if (c->d_beta)
                zt_bwd_compare(op, name, "d_beta", o[1].d_beta, o[2].d_beta, o[0].d_beta, nc,
                               ZT_BWD_NMSE_LAYERNORM);
        } else {
            zt_parity_case_failed(op, ZT_BWD_NMSE_LAYERNORM);
        }
        free(in);
        free(d_out);
        free(gamma);
        free(dg_init);
        free(db_init);
        for (int k = 0; k < 3; k++) {
            free(o[k].d_in);
            free(o[k].d_gamma);
            free(o[k].d_beta);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// linear_backward

typedef struct zt_bwd_linear_case {
    int n_rows, in_features, out_features;
    zt_dtype w_dtype;
    int relu;
    int d_in, d_w, d_bias; /* 0: that gradient is skipped (NULL; then `in` or W is NULL too) */
} zt_bwd_linear_case;

typedef struct zt_bwd_linear_out {
    float *d_in, *d_w, *d_bias, *d_out; /* d_out: the masked gradient a relu case writes back */
} zt_bwd_linear_out;

static zt_status zt_bwd_run_linear(zt_backend *be, const zt_bwd_linear_case *c, const float *d_out,
                                   const float *in, const float *out, const void *w,
                                   zt_dtype w_dtype, int w_shift, const float *d_w_init,
                                   const float *d_bias_init, zt_bwd_linear_out *o,
                                   const char *name) {
    const size_t n_in = (size_t)c->n_rows * c->in_features;
    const size_t n_out = (size_t)c->n_rows * c->out_features;
    const size_t n_w = (size_t)c->out_features * c->in_features;
    zt_pbuf b_dout = {0}, b_in = {0}, b_out = {0}, b_w = {0}, b_din = {0}, b_dw = {0}, b_db = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_dout, d_out, n_out * sizeof(float), "d_out");
    if (ok && c->d_w) ok = zt_pbuf_make(be, &b_in, in, n_in * sizeof(float), "in");
    if (ok && c->relu) ok = zt_pbuf_make(be, &b_out, out, n_out * sizeof(float), "out");
    /* w_shift elements of zeros first: a weight that is not 16-byte aligned */
    const size_t w_elem = zt_dtype_size(w_dtype), w_skip = (size_t)w_shift * w_elem;
    uint8_t *w_staged = (uint8_t *)calloc(n_w * w_elem + w_skip + 1, 1);
    memcpy(w_staged + w_skip, w, n_w * w_elem);
    if (ok && c->d_in) ok = zt_pbuf_make(be, &b_w, w_staged, n_w * w_elem + w_skip, "weight");
    if (ok && c->d_in) ok = zt_pbuf_make(be, &b_din, NULL, n_in * sizeof(float), "d_in");
    if (ok && c->d_w) ok = zt_pbuf_make(be, &b_dw, d_w_init, n_w * sizeof(float), "d_w");
    if (ok && c->d_bias)
        ok =
            zt_pbuf_make(be, &b_db, d_bias_init, (size_t)c->out_features * sizeof(float), "d_bias");
    if (ok) {
        zt_weight wt = {c->d_in ? (uint8_t *)zt_pbuf_ptr(&b_w) + w_skip : NULL, w_dtype};
        s = be->ops->linear_backward(be, (float *)zt_pbuf_ptr(&b_din), (float *)zt_pbuf_ptr(&b_dw),
                                     (float *)zt_pbuf_ptr(&b_db), (float *)zt_pbuf_ptr(&b_dout),
                                     (const float *)zt_pbuf_ptr(&b_in),
                                     (const float *)zt_pbuf_ptr(&b_out), wt, c->n_rows,
                                     c->in_features, c->out_features, c->relu);
        ZT_CHECK(s == ZT_OK, "%s linear_backward %s: %s", be->ops->name, name, zt_last_error());
        if (c->relu)
            zt_pbuf_fetch(&b_dout, o->d_out, name);
        else
            zt_pbuf_check_input(&b_dout, d_out, name);
        zt_pbuf_check_input(&b_in, in, name);
        zt_pbuf_check_input(&b_out, out, name);
        zt_pbuf_check_input(&b_w, w_staged, name);
        if (c->d_in) zt_pbuf_fetch(&b_din, o->d_in, name);
        if (c->d_w) zt_pbuf_fetch(&b_dw, o->d_w, name);
        if (c->d_bias) zt_pbuf_fetch(&b_db, o->d_bias, name);
    }
    zt_pbuf_free(&b_dout);
    zt_pbuf_free(&b_in);
    zt_pbuf_free(&b_out);
    zt_pbuf_free(&b_w);
    zt_pbuf_free(&b_din);
    zt_pbuf_free(&b_dw);
    zt_pbuf_free(&b_db);
    free(w_staged);
    return s;
}

static void zt_bwd_linear_out_alloc(zt_bwd_linear_out *o, const zt_bwd_linear_case *c) {
    o->d_in = zt_bwd_nan_floats((size_t)c->n_rows * c->in_features);
    o->d_w = zt_bwd_nan_floats((size_t)c->out_features * c->in_features);
    o->d_bias = zt_bwd_nan_floats((size_t)c->out_features);
    o->d_out = zt_bwd_nan_floats((size_t)c->n_rows * c->out_features);
}

static void zt_bwd_linear_out_free(zt_bwd_linear_out *o) {
    free(o->d_in);
    free(o->d_w);
    free(o->d_bias);
    free(o->d_out);
}

static void zt_bwd_parity_linear(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    /* The executor's 40K-float chunks cut d_in's sum over the weight's rows: IC = 768 takes 6
     * chunks of 48 and 52 rows for OC = 300, the 50272-word head 79 of 576 and 640 rows,
     * IC = 40961 the minimum of 4 rows. Every gradient is skipped somewhere, with the input only it
     * reads (in, W) NULL. */
    static const zt_bwd_linear_case cases[] = {
        {1, 1, 1, ZT_F32, 1, 1, 1, 1},       {7, 33, 65, ZT_F16, 0, 1, 1, 1},
        {37, 768, 300, ZT_BF16, 1, 1, 1, 1}, {5, 3000, 17, ZT_F32, 0, 0, 1, 1},
        {3, 64, 50272, ZT_F16, 0, 1, 1, 0}, /* an LM head over the OPT vocabulary, no bias */
        {2, 100, 700, ZT_BF16, 1, 1, 0, 0},  {1, 40961, 9, ZT_F16, 0, 1, 1, 1},
        {3001, 40, 24, ZT_F32, 1, 1, 1, 1},  {300, 130, 1000, ZT_F32, 0, 1, 0, 1},
    };
    const char *op = "linear_backward";
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_bwd_linear_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "N=%d IC=%d OC=%d W=%s%s%s%s%s", c->n_rows, c->in_features,
                 c->out_features, zt_dtype_name(c->w_dtype), c->relu ? " relu" : "",
                 c->d_in ? "" : " no-d_in", c->d_w ? "" : " no-d_w", c->d_bias ? "" : " no-d_bias");
        const size_t n_in = (size_t)c->n_rows * c->in_features;
        const size_t n_out = (size_t)c->n_rows * c->out_features;
        const size_t n_w = (size_t)c->out_features * c->in_features;
        float *in = zt_random_floats(r, n_in, 1.0f, 0.0f);
        float *d_out = zt_random_floats(r, n_out, 1.0f, 0.0f);
        /* The forward's output only matters through its sign; every 7th is exactly 0 (masked). */
        float *out = zt_random_floats(r, n_out, 1.0f, 0.0f);
        for (size_t i = 0; i < n_out; i += 7)
            out[i] = 0.0f;
        void *w = zt_random_weight(r, n_w, c->w_dtype, 1.0f / sqrtf((float)c->in_features));
        float *dw_init = zt_random_floats(r, n_w, 0.5f, 0.0f);
        float *db_init = zt_random_floats(r, (size_t)c->out_features, 0.5f, 0.0f);
        zt_bwd_linear_out o[3];
        for (int k = 0; k < 3; k++)
            zt_bwd_linear_out_alloc(&o[k], c);
        zt_status rs = zt_bwd_run_linear(ref, c, d_out, in, out, w, c->w_dtype, 0, dw_init, db_init,
                                         &o[0], name);
        zt_status ds = zt_bwd_run_linear(dut, c, d_out, in, out, w, c->w_dtype, 0, dw_init, db_init,
                                         &o[1], name);
        zt_status ds2 = zt_bwd_run_linear(dut, c, d_out, in, out, w, c->w_dtype, 0, dw_init,
                                          db_init, &o[2], name);
        if (rs == ZT_OK && ds == ZT_OK && ds2 == ZT_OK) {
            if (c->d_in)
                zt_bwd_compare(op, name, "d_in", o[1].d_in, o[2].d_in, o[0].d_in, n_in,
                               ZT_BWD_NMSE_LINEAR);
            if (c->d_w)
                zt_bwd_compare(op, name, "d_w", o[1].d_w, o[2].d_w, o[0].d_w, n_w,
                               ZT_BWD_NMSE_LINEAR);
            if (c->d_bias)
                zt_bwd_compare(op, name, "d_bias", o[1].d_bias, o[2].d_bias, o[0].d_bias,
                               (size_t)c->out_features, ZT_BWD_NMSE_LINEAR);
            if (c->relu) /* the mask is exact */
                ZT_CHECK(memcmp(o[1].d_out, o[0].d_out, n_out * sizeof(float)) == 0 &&
                             memcmp(o[2].d_out, o[0].d_out, n_out * sizeof(float)) == 0,
                         "%s %s: the masked d_out differs from the CPU's", op, name);
        } else {
            zt_parity_case_failed(op, ZT_BWD_NMSE_LINEAR);
        }

        /* A half weight gives the bits of an f32 weight holding its widened values, aligned or
         * not (one float in: copied to an aligned chunk, the algorithm chosen alike). */
        if (c->w_dtype != ZT_F32 && c->d_in && ds == ZT_OK) {
            float *widened = (float *)malloc(n_w * sizeof(float) + 1);
            for (size_t i = 0; i < n_w; i++)
                widened[i] = zt_load_f32(w, c->w_dtype, i);
            for (int shift = 0; shift < 2; shift++) {
                zt_bwd_linear_out wide;
                zt_bwd_linear_out_alloc(&wide, c);
                char wide_name[160];
                snprintf(wide_name, sizeof wide_name, "%s, as widened f32%s", name,
                         shift ? " +4B" : "");
                if (zt_bwd_run_linear(dut, c, d_out, in, out, widened, ZT_F32, shift, dw_init,
                                      db_init, &wide, wide_name) == ZT_OK)
                    ZT_CHECK(memcmp(wide.d_in, o[1].d_in, n_in * sizeof(float)) == 0,
                             "%s %s: d_in differs from the %s weight's", op, wide_name,
                             zt_dtype_name(c->w_dtype));
                zt_bwd_linear_out_free(&wide);
            }
            free(widened);
        }
        free(in);
        free(d_out);
        free(out);
        free(w);
        free(dw_init);
        free(db_init);
        for (int k = 0; k < 3; k++)
            zt_bwd_linear_out_free(&o[k]);
    }
}

// ---------------------------------------------------------------------------------------------
// attention_backward

typedef enum zt_bwd_pad {
    ZT_BWD_PAD_NONE,
    ZT_BWD_PAD_LEFT,   /* the first T/3 keys are padding */
    ZT_BWD_PAD_RIGHT,  /* the last T/3 keys are padding */
    ZT_BWD_PAD_FULL,   /* every key is padding: every gradient is zero */
    ZT_BWD_PAD_HOLES,  /* random holes, and non-zero mask values other than 1 */
    ZT_BWD_PAD_MIDDLE, /* keys T/3 .. 2T/3 - 1 are padding: whole 32-key tiles from T = 192 */
} zt_bwd_pad;

static const char *zt_bwd_pad_name(zt_bwd_pad p) {
    static const char *names[] = {"none", "left", "right", "full", "holes", "middle"};
    return names[p];
}

static int zt_bwd_pad_keep(zt_prng *r, zt_bwd_pad pad, int j, int length) {
    switch (pad) {
    case ZT_BWD_PAD_LEFT:
        return j >= length / 3;
    case ZT_BWD_PAD_RIGHT:
        return j < length - length / 3;
    case ZT_BWD_PAD_FULL:
        return 0;
    case ZT_BWD_PAD_HOLES:
        return zt_prng_below(r, 4) != 0 ? 1 + (int)zt_prng_below(r, 7) : 0;
    case ZT_BWD_PAD_MIDDLE:
        return j < length / 3 || j >= 2 * length / 3;
    case ZT_BWD_PAD_NONE:
        break;
    }
    return 1;
}

typedef struct zt_bwd_attention_case {
    int batch, seq_len, n_heads, head_dim;
    zt_bwd_pad pads[3]; /* padding of sequence b is pads[b % 3] */
    int shift;          /* every tensor starts this many floats into its buffer (misaligned) */
} zt_bwd_attention_case;

typedef struct zt_bwd_attention_out {
    float *d_q, *d_k, *d_v;
} zt_bwd_attention_out;

/* The forward's output on the reference backend: attention_backward's `out`. */
static zt_status zt_bwd_attention_forward(zt_backend *be, const zt_bwd_attention_case *c,
                                          const float *q, const float *k, const float *v,
                                          const int32_t *mask, float q_scale, float *out) {
    const size_t n = (size_t)c->batch * c->seq_len * c->n_heads * c->head_dim;
    zt_pbuf b_out = {0}, b_q = {0}, b_k = {0}, b_v = {0}, b_mask = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_out, NULL, n * sizeof(float), "out") &&
             zt_pbuf_make(be, &b_q, q, n * sizeof(float), "q") &&
             zt_pbuf_make(be, &b_k, k, n * sizeof(float), "k") &&
             zt_pbuf_make(be, &b_v, v, n * sizeof(float), "v") &&
             zt_pbuf_make(be, &b_mask, mask, (size_t)c->batch * c->seq_len * sizeof(int32_t),
                          "key_mask");
    if (ok) {
        s = be->ops->attention(be, (float *)zt_pbuf_ptr(&b_out), (const float *)zt_pbuf_ptr(&b_q),
                               (const float *)zt_pbuf_ptr(&b_k), (const float *)zt_pbuf_ptr(&b_v),
                               (const int32_t *)zt_pbuf_ptr(&b_mask), c->batch, c->seq_len,
                               c->n_heads, c->head_dim, q_scale);
        ZT_CHECK(s == ZT_OK, "%s attention: %s", be->ops->name, zt_last_error());
        zt_pbuf_fetch(&b_out, out, "attention forward");
    }
    zt_pbuf_free(&b_out);
    zt_pbuf_free(&b_q);
    zt_pbuf_free(&b_k);
    zt_pbuf_free(&b_v);
    zt_pbuf_free(&b_mask);
    return s;
}

/* n floats of x after `shift` zeros (a copy to free; NULL x: NaN bytes, an output). */
static float *zt_bwd_shifted(const float *x, size_t n, size_t shift) {
    float *copy = (float *)calloc(n + shift, sizeof(float));
    if (x)
        memcpy(copy + shift, x, n * sizeof(float));
    else
        memset(copy + shift, 0xff, n * sizeof(float));
    return copy;
}

static zt_status zt_bwd_run_attention(zt_backend *be, const zt_bwd_attention_case *c,
                                      const float *d_out, const float *q, const float *k,
                                      const float *v, const float *out, const int32_t *mask,
                                      float q_scale, zt_bwd_attention_out *o, const char *name) {
    const size_t n = (size_t)c->batch * c->seq_len * c->n_heads * c->head_dim;
    const size_t shift = (size_t)c->shift, bytes = (n + shift) * sizeof(float);
    const float *inputs[5] = {d_out, q, k, v, out};
    const char *input_names[5] = {"d_out", "q", "k", "v", "out"};
    const char *output_names[3] = {"d_q", "d_k", "d_v"};
    float *outputs[3] = {o->d_q, o->d_k, o->d_v};
    float *staged_in[5], *staged_out[3];
    zt_pbuf b_in[5], b_out[3], b_mask = {0};
    memset(b_in, 0, sizeof b_in);
    memset(b_out, 0, sizeof b_out);
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        staged_in[i] = zt_bwd_shifted(inputs[i], n, shift);
        if (ok) ok = zt_pbuf_make(be, &b_in[i], staged_in[i], bytes, input_names[i]);
    }
    for (int i = 0; i < 3; i++) {
        staged_out[i] = zt_bwd_shifted(NULL, n, shift);
        if (ok) ok = zt_pbuf_make(be, &b_out[i], staged_out[i], bytes, output_names[i]);
    }
    if (ok)
        ok = zt_pbuf_make(be, &b_mask, mask, (size_t)c->batch * c->seq_len * sizeof(int32_t),
                          "key_mask");
    zt_status s = ZT_ERR_INTERNAL;
    if (ok) {
        const float *in_ptr[5];
        float *out_ptr[3];
        for (int i = 0; i < 5; i++)
            in_ptr[i] = (const float *)zt_pbuf_ptr(&b_in[i]) + shift;
        for (int i = 0; i < 3; i++)
            out_ptr[i] = (float *)zt_pbuf_ptr(&b_out[i]) + shift;
        s = be->ops->attention_backward(be, out_ptr[0], out_ptr[1], out_ptr[2], in_ptr[0],
                                        in_ptr[1], in_ptr[2], in_ptr[3], in_ptr[4],
                                        (const int32_t *)zt_pbuf_ptr(&b_mask), c->batch, c->seq_len,
                                        c->n_heads, c->head_dim, q_scale);
        ZT_CHECK(s == ZT_OK, "%s attention_backward %s: %s", be->ops->name, name, zt_last_error());
        for (int i = 0; i < 3; i++) {
            zt_pbuf_fetch(&b_out[i], staged_out[i], name);
            memcpy(outputs[i], staged_out[i] + shift, n * sizeof(float));
        }
        for (int i = 0; i < 5; i++)
            zt_pbuf_check_input(&b_in[i], staged_in[i], name);
        zt_pbuf_check_input(&b_mask, mask, name);
    }
    for (int i = 0; i < 5; i++) {
        zt_pbuf_free(&b_in[i]);
        free(staged_in[i]);
    }
    for (int i = 0; i < 3; i++) {
        zt_pbuf_free(&b_out[i]);
        free(staged_out[i]);
    }
    zt_pbuf_free(&b_mask);
    return s;
}

static void zt_bwd_parity_attention(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    /* The CUDA kernels take 32-row tiles: T below, at, off and well past them; T = 1; head dims
     * from 1 to 256 (over 200 KB of shared memory for the key kernel), odd and even (the tile
     * stride); misaligned buffers; key tiles without an admissible key (left, middle, full) and
     * queries without any (left, full, holes); several heads and sequences in one grid. */
    static const zt_bwd_attention_case cases[] = {
        {1, 1, 1, 1, {ZT_BWD_PAD_NONE, ZT_BWD_PAD_NONE, ZT_BWD_PAD_NONE}, 0},
        {2, 37, 3, 24, {ZT_BWD_PAD_NONE, ZT_BWD_PAD_LEFT, ZT_BWD_PAD_NONE}, 0},
        {3, 100, 2, 64, {ZT_BWD_PAD_NONE, ZT_BWD_PAD_RIGHT, ZT_BWD_PAD_FULL}, 0},
        {1, 130, 2, 80, {ZT_BWD_PAD_HOLES, ZT_BWD_PAD_NONE, ZT_BWD_PAD_NONE}, 0},
        {1, 65, 1, 128, {ZT_BWD_PAD_LEFT, ZT_BWD_PAD_NONE, ZT_BWD_PAD_NONE}, 0},
        {2, 33, 1, 256, {ZT_BWD_PAD_LEFT, ZT_BWD_PAD_HOLES, ZT_BWD_PAD_NONE}, 0},
        {2, 17, 5, 7, {ZT_BWD_PAD_RIGHT, ZT_BWD_PAD_LEFT, ZT_BWD_PAD_NONE}, 0},
        {1, 32, 2, 33, {ZT_BWD_PAD_HOLES, ZT_BWD_PAD_NONE, ZT_BWD_PAD_NONE}, 0},
        {2, 90, 2, 64, {ZT_BWD_PAD_LEFT, ZT_BWD_PAD_HOLES, ZT_BWD_PAD_NONE}, 1},
        {3, 200, 1, 16, {ZT_BWD_PAD_MIDDLE, ZT_BWD_PAD_LEFT, ZT_BWD_PAD_HOLES}, 0},
        {1, 3001, 1, 4, {ZT_BWD_PAD_HOLES, ZT_BWD_PAD_NONE, ZT_BWD_PAD_NONE}, 0},
    };
    const char *op = "attention_backward";
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_bwd_attention_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "B=%d T=%d H=%d D=%d pad=%s/%s/%s%s", c->batch, c->seq_len,
                 c->n_heads, c->head_dim, zt_bwd_pad_name(c->pads[0]),
                 c->batch > 1 ? zt_bwd_pad_name(c->pads[1]) : "-",
                 c->batch > 2 ? zt_bwd_pad_name(c->pads[2]) : "-", c->shift ? " +4B" : "");
        const int T = c->seq_len;
        const size_t n = (size_t)c->batch * T * c->n_heads * c->head_dim;
        const float q_scale = 1.0f / sqrtf((float)c->head_dim);
        float *q = zt_random_floats(r, n, 2.0f, 0.0f);
        float *k = zt_random_floats(r, n, 2.0f, 0.0f);
        float *v = zt_random_floats(r, n, 1.0f, 0.0f);
        float *d_out = zt_random_floats(r, n, 1.0f, 0.0f);
        int32_t *mask = (int32_t *)malloc((size_t)c->batch * T * sizeof(int32_t));
        for (int b = 0; b < c->batch; b++)
            for (int j = 0; j < T; j++)
                mask[(size_t)b * T + j] = zt_bwd_pad_keep(r, c->pads[b % 3], j, T);
        float *out = (float *)malloc(n * sizeof(float) + 1);
        zt_status fs = zt_bwd_attention_forward(ref, c, q, k, v, mask, q_scale, out);
        zt_bwd_attention_out o[3];
        for (int i = 0; i < 3; i++) {
            o[i].d_q = zt_bwd_nan_floats(n);
            o[i].d_k = zt_bwd_nan_floats(n);
            o[i].d_v = zt_bwd_nan_floats(n);
        }
        zt_status rs = ZT_ERR_INTERNAL, ds = ZT_ERR_INTERNAL, ds2 = ZT_ERR_INTERNAL;
        if (fs == ZT_OK) {
            rs = zt_bwd_run_attention(ref, c, d_out, q, k, v, out, mask, q_scale, &o[0], name);
            ds = zt_bwd_run_attention(dut, c, d_out, q, k, v, out, mask, q_scale, &o[1], name);
            ds2 = zt_bwd_run_attention(dut, c, d_out, q, k, v, out, mask, q_scale, &o[2], name);
        }
        if (rs == ZT_OK && ds == ZT_OK && ds2 == ZT_OK) {
            zt_bwd_compare(op, name, "d_q", o[1].d_q, o[2].d_q, o[0].d_q, n, ZT_BWD_NMSE_ATTENTION);
            zt_bwd_compare(op, name, "d_k", o[1].d_k, o[2].d_k, o[0].d_k, n, ZT_BWD_NMSE_ATTENTION);
            zt_bwd_compare(op, name, "d_v", o[1].d_v, o[2].d_v, o[0].d_v, n, ZT_BWD_NMSE_ATTENTION);
            const size_t zeros = zt_bwd_exact_zeros(op, name, "d_q", o[1].d_q, o[0].d_q, n) +
                                 zt_bwd_exact_zeros(op, name, "d_k", o[1].d_k, o[0].d_k, n) +
                                 zt_bwd_exact_zeros(op, name, "d_v", o[1].d_v, o[0].d_v, n);
            if (zeros)
                printf("  %-24s %-60s %zu exact zeros (no key, unseen keys): zeros\n", op, name,
                       zeros);
        } else {
            zt_parity_case_failed(op, ZT_BWD_NMSE_ATTENTION);
        }
        free(q);
        free(k);
        free(v);
        free(d_out);
        free(mask);
        free(out);
        for (int i = 0; i < 3; i++) {
            free(o[i].d_q);
            free(o[i].d_k);
            free(o[i].d_v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// target_logprobs_backward

typedef struct zt_bwd_logprob_case {
    int n_rows, vocab;
    float scale;  /* logits uniform in [-scale, scale); 0 = all equal */
    int neg_inf;  /* every 5th logit but the target's is -inf; row 0 holds only its target */
    int in_place; /* d_logits = logits */
} zt_bwd_logprob_case;

static zt_status zt_bwd_run_logprob(zt_backend *be, const zt_bwd_logprob_case *c,
                                    const float *logits, const int32_t *targets,
                                    const float *d_logprob, const float *d_logits_init,
                                    float *d_logits, const char *name, char *error_text) {
    const size_t bytes = (size_t)c->n_rows * c->vocab * sizeof(float);
    zt_pbuf b_logits = {0}, b_dlogits = {0}, b_targets = {0}, b_dlp = {0};
    zt_status s = ZT_ERR_INTERNAL;
    snprintf(error_text, 512, "setup failed");
    int ok =
        zt_pbuf_make(be, &b_logits, logits, bytes, "logits") &&
        zt_pbuf_make(be, &b_targets, targets, (size_t)c->n_rows * sizeof(int32_t), "targets") &&
        zt_pbuf_make(be, &b_dlp, d_logprob, (size_t)c->n_rows * sizeof(float), "d_logprob");
    if (ok && !c->in_place) ok = zt_pbuf_make(be, &b_dlogits, d_logits_init, bytes, "d_logits");
    if (ok) {
        const float *logits_ptr = (const float *)zt_pbuf_ptr(&b_logits);
        float *dl_ptr =
            c->in_place ? (float *)zt_pbuf_ptr(&b_logits) : (float *)zt_pbuf_ptr(&b_dlogits);
        s = be->ops->target_logprobs_backward(
            be, dl_ptr, logits_ptr, (const int32_t *)zt_pbuf_ptr(&b_targets),
            (const float *)zt_pbuf_ptr(&b_dlp), c->n_rows, c->vocab);
        snprintf(error_text, 512, "%s", s == ZT_OK ? "" : zt_last_error());
        if (c->in_place) {
            zt_pbuf_fetch(&b_logits, d_logits, name);
        } else {
            zt_pbuf_fetch(&b_dlogits, d_logits, name);
            zt_pbuf_check_input(&b_logits, logits, name);
        }
        zt_pbuf_check_input(&b_targets, targets, name);
        zt_pbuf_check_input(&b_dlp, d_logprob, name);
    }
    zt_pbuf_free(&b_logits);
    zt_pbuf_free(&b_dlogits);
    zt_pbuf_free(&b_targets);
    zt_pbuf_free(&b_dlp);
    return s;
}

static void zt_bwd_parity_logprob(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    /* OPT's 50272 words (and one fewer: not whole float4s), 1 to 300 rows, a single word, equal
     * logits, peaked rows (logits in +-80: a target holding nearly all the mass), -inf logits,
     * in place. */
    static const zt_bwd_logprob_case cases[] = {
        {1, 1, 1.0f, 0, 0},      {5, 7, 3.0f, 0, 1},     {33, 3000, 30.0f, 0, 0},
        {9, 50272, 10.0f, 0, 0}, {4, 50272, 0.0f, 0, 1}, {2, 257, 80.0f, 0, 0},
        {3, 50271, 10.0f, 0, 1}, {16, 504, 10.0f, 0, 0}, {263, 1000, 10.0f, 0, 0},
        {300, 130, 10.0f, 0, 1}, {7, 2001, 10.0f, 1, 0}, {2, 4097, 10.0f, 1, 1},
    };
    const char *op = "target_logprobs_backward";
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_bwd_logprob_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "R=%d V=%d logits in +-%g%s%s", c->n_rows, c->vocab, c->scale,
                 c->neg_inf ? ", -inf" : "", c->in_place ? " in-place" : "");
        const size_t n = (size_t)c->n_rows * c->vocab;
        float *logits = zt_random_floats(r, n, c->scale, 0.0f);
        int32_t *targets = (int32_t *)malloc((size_t)c->n_rows * sizeof(int32_t));
        for (int i = 0; i < c->n_rows; i++)
            targets[i] = zt_prng_below(r, c->vocab);
        targets[0] = c->vocab - 1;
        if (c->n_rows > 1) targets[1] = 0;
        if (c->scale >= 80.0f && c->n_rows > 1) { /* row 1: its target is the largest logit */
            float *x = logits + c->vocab;
            x[targets[1]] = 100.0f;
        }
        if (c->neg_inf)
            for (int row = 0; row < c->n_rows; row++)
                for (int j = 0; j < c->vocab; j++)
                    if (j != targets[row] && (row == 0 || j % 5 == 0))
                        logits[(size_t)row * c->vocab + j] = -INFINITY;
        float *d_logprob = zt_random_floats(r, (size_t)c->n_rows, 2.0f, 0.0f);
        if (c->n_rows > 2) d_logprob[2] = 0.0f;
        float *init = zt_bwd_nan_floats(n);
        float *want = zt_bwd_nan_floats(n), *got = zt_bwd_nan_floats(n);
        float *again = zt_bwd_nan_floats(n);
        char ref_text[512], dut_text[512];
        zt_status rs =
            zt_bwd_run_logprob(ref, c, logits, targets, d_logprob, init, want, name, ref_text);
        zt_status ds =
            zt_bwd_run_logprob(dut, c, logits, targets, d_logprob, init, got, name, dut_text);
        zt_status ds2 =
            zt_bwd_run_logprob(dut, c, logits, targets, d_logprob, init, again, name, dut_text);
        ZT_CHECK(rs == ZT_OK && ds == ZT_OK && ds2 == ZT_OK, "%s %s: ref %s / dut %s", op, name,
                 ref_text, dut_text);
        if (rs == ZT_OK && ds == ZT_OK && ds2 == ZT_OK)
            zt_bwd_compare(op, name, "d_logits", got, again, want, n, ZT_BWD_NMSE_LOGPROB);
        else
            zt_parity_case_failed(op, ZT_BWD_NMSE_LOGPROB);

        /* A target outside the vocabulary: the same error, d_logits (or the logits it would
         * overwrite) untouched. */
        if (ci == 2 || ci == 1) {
            const int32_t saved = targets[2];
            targets[2] = ci == 2 ? c->vocab : -3;
            char bad_name[160];
            snprintf(bad_name, sizeof bad_name, "%s, targets[2] = %d", name, (int)targets[2]);
            rs = zt_bwd_run_logprob(ref, c, logits, targets, d_logprob, init, want, bad_name,
                                    ref_text);
            ds = zt_bwd_run_logprob(dut, c, logits, targets, d_logprob, init, got, bad_name,
                                    dut_text);
            zt_parity_same_error(op, bad_name, rs, ref_text, ds, dut_text);
            const float *expected = c->in_place ? logits : init;
            ZT_CHECK(memcmp(got, expected, n * sizeof(float)) == 0,
                     "%s %s: d_logits changed although the op failed", op, bad_name);
            targets[2] = saved;
        }
        free(logits);
        free(targets);
        free(d_logprob);
        free(init);
        free(want);
        free(got);
        free(again);
    }
}

// ---------------------------------------------------------------------------------------------

/* Every backward op, every case; one line per case and a per-op summary of the worst NMSE. */
static void zt_bwd_parity_run(zt_backend *ref, zt_backend *dut, uint64_t seed) {
    zt_prng r = {seed ? seed : 1};
    printf("backward parity of %s against %s, seed %llu\n", dut->ops->name, ref->ops->name,
           (unsigned long long)seed);
    struct {
        const char *op;
        void (*run)(zt_backend *, zt_backend *, zt_prng *);
    } ops[] = {
        {"gather_rows_backward", zt_bwd_parity_gather},
        {"layernorm_backward", zt_bwd_parity_layernorm},
        {"linear_backward", zt_bwd_parity_linear},
        {"attention_backward", zt_bwd_parity_attention},
        {"target_logprobs_backward", zt_bwd_parity_logprob},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        double start = zt_parity_now();
        ops[i].run(ref, dut, &r);
        printf("  %-24s %.2f s\n", ops[i].op, zt_parity_now() - start);
    }
    printf("summary (worst NMSE per op, over every output of every case):\n");
    for (int i = 0; i < zt_parity_n_stats; i++)
        printf("  %-24s %2d outputs  worst %.2e  bound %.0e\n", zt_parity_stats[i].op,
               zt_parity_stats[i].n_cases, zt_parity_stats[i].worst_nmse, zt_parity_stats[i].bound);
}

#endif
