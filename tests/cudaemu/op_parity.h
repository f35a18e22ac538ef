/* Op-by-op parity of a backend under test ("dut") with the CPU backend (the reference), for every
 * forward op of kernels/backend.h. Shared by tests/cudaemu (the CUDA kernels under the host
 * executor) and tests/gpu (the real CUDA backend); include it in exactly one .c per program,
 * after zt_test.h.
 *
 * Every case runs the op on both backends from the same seeded inputs, with awkward shapes
 * (sizes that are not multiples of a warp, a block or a tile; T = 1; rows of 3000+; a 50272-word
 * vocabulary; f32/f16/bf16 weights; left, right and full padding). For every buffer:
 *   - guard bands of ZT_PARITY_GUARD_BYTES before and after it, filled with a byte pattern and
 *     checked untouched afterwards (an op writing out of bounds is caught);
 *   - inputs are downloaded again and must be unchanged (an op writing to the wrong buffer);
 *   - outputs start as NaN bytes unless the op accumulates, so an element the op forgot to write
 *     is caught by the finiteness check.
 * attention_cached also compares the caches bit for bit and its prefill with `attention`.
 * Outputs are compared by NMSE = sum (dut - ref)^2 / sum ref^2 against a bound per op.
 */
#ifndef ZT_TEST_OP_PARITY_H
#define ZT_TEST_OP_PARITY_H

#include "parity_common.h"

/* NMSE bounds. The reference accumulates in double (CPU backend); the device side in f32. A sum of
 * n f32 terms has a relative error of a few n^(1/2) ulp in practice, so these bounds sit orders of
 * magnitude above the expected ~1e-14 and orders below what any indexing bug produces (~1). */
/* exact: the same conversion and one f32 add; a perturbed read adds the same z (Rademacher, or
 * Gaussian from zotune's Box-Muller, the same IEEE operations on host and device) in the CPU's
 * order, so it is exact too */
#define ZT_NMSE_GATHER 0.0
#define ZT_NMSE_ADD 0.0 /* exact: one f32 add */
#define ZT_NMSE_LAYERNORM 1e-10
#define ZT_NMSE_LINEAR 1e-10
#define ZT_NMSE_ATTENTION 1e-10
#define ZT_NMSE_LOGPROB 1e-10

// ---------------------------------------------------------------------------------------------
// gather_rows

typedef struct zt_gather_case {
    int n_rows, n_table_rows, n_cols;
    zt_dtype dtype;
    int accumulate;
    int stage_dtype; /* perturbed read staged in this dtype, or ZT_PARITY_ABSENT: a plain read */
    int n_terms;     /* of the perturbation */
    zt_dist dist;
} zt_gather_case;

/* Runs gather on one backend; out_init is the starting content of out (accumulate); gp the
 * perturbation of a perturbed read (else NULL). */
static zt_status zt_run_gather(zt_backend *be, const zt_gather_case *c, const int32_t *rows,
                               const void *table, const float *out_init, float *out,
                               const zt_gather_perturbation *gp, const char *name,
                               char *error_text) {
    const size_t out_bytes = (size_t)c->n_rows * c->n_cols * sizeof(float);
    const size_t table_bytes = (size_t)c->n_table_rows * c->n_cols * zt_dtype_size(c->dtype);
    zt_pbuf b_out = {0}, b_rows = {0}, b_table = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_out, out_init, out_bytes, "out") &&
             zt_pbuf_make(be, &b_rows, rows, (size_t)c->n_rows * sizeof(int32_t), "rows") &&
             zt_pbuf_make(be, &b_table, table, table_bytes, "table");
    if (ok) {
        zt_weight w = {zt_pbuf_ptr(&b_table), c->dtype};
        s = be->ops->gather_rows(be, (float *)zt_pbuf_ptr(&b_out),
                                 (const int32_t *)zt_pbuf_ptr(&b_rows), w, c->n_rows,
                                 c->n_table_rows, c->n_cols, c->accumulate, gp);
        snprintf(error_text, 512, "%s", s == ZT_OK ? "" : zt_last_error());
        zt_pbuf_fetch(&b_out, out, name);
        zt_pbuf_check_input(&b_rows, rows, name);
        zt_pbuf_check_input(&b_table, table, name);
    }
    zt_pbuf_free(&b_out);
    zt_pbuf_free(&b_rows);
    zt_pbuf_free(&b_table);
    return s;
}

static void zt_parity_gather(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    /* clang-format off */
    static const zt_gather_case cases[] = {
        {1, 5, 1, ZT_F32, 0, ZT_PARITY_ABSENT, 0, ZT_DIST_GAUSSIAN},
        {37, 50, 33, ZT_F16, 1, ZT_PARITY_ABSENT, 0, ZT_DIST_GAUSSIAN},
        {19, 50272, 16, ZT_BF16, 0, ZT_PARITY_ABSENT, 0, ZT_DIST_GAUSSIAN},
        {64, 300, 3000, ZT_F32, 1, ZT_PARITY_ABSENT, 0, ZT_DIST_GAUSSIAN},
        {7, 2, 768, ZT_F16, 0, ZT_PARITY_ABSENT, 0, ZT_DIST_GAUSSIAN},
        {3, 11, 257, ZT_BF16, 1, ZT_PARITY_ABSENT, 0, ZT_DIST_GAUSSIAN},
        /* perturbed reads: rows that start off a four-element block (odd C), every staging
         * dtype, accumulate, no terms, more terms than a kernel argument holds */
        {37, 50, 33, ZT_F16, 1, ZT_F32, 1, ZT_DIST_GAUSSIAN},
        {19, 50272, 16, ZT_BF16, 0, ZT_BF16, 3, ZT_DIST_RADEMACHER},
        {7, 2, 768, ZT_F16, 0, ZT_F16, 2, ZT_DIST_GAUSSIAN},
        {3, 11, 257, ZT_BF16, 1, ZT_BF16, 40, ZT_DIST_GAUSSIAN},
        {5, 9, 6, ZT_F32, 0, ZT_F32, 0, ZT_DIST_GAUSSIAN},
        {64, 300, 1001, ZT_F32, 1, ZT_F32, 1, ZT_DIST_RADEMACHER},
    };
    /* clang-format on */
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_gather_case *c = &cases[ci];
        const int perturbed = c->stage_dtype != ZT_PARITY_ABSENT;
        char name[128];
        snprintf(name, sizeof name, "N=%d rows=%d C=%d %s %s%s%s", c->n_rows, c->n_table_rows,
                 c->n_cols, zt_dtype_name(c->dtype), c->accumulate ? "accumulate" : "assign",
                 perturbed ? ", perturbed staged " : "",
                 perturbed ? zt_dtype_name((zt_dtype)c->stage_dtype) : "");
        zt_direction terms[40];
        for (int t = 0; t < c->n_terms; t++) {
            terms[t].seed = zt_prng_next(r);
            terms[t].coeff = 0.02f * (zt_prng_uniform(r) - 0.5f);
        }
        const zt_perturbation p = {terms, c->n_terms, c->dist, 1.0f};
        const zt_gather_perturbation gp = {&p, 7u + (uint32_t)ci, (zt_dtype)c->stage_dtype};
        const double bound = ZT_NMSE_GATHER;
        const size_t n_out = (size_t)c->n_rows * c->n_cols;
        int32_t *rows = (int32_t *)malloc((size_t)c->n_rows * sizeof(int32_t));
        for (int i = 0; i < c->n_rows; i++)
            rows[i] = zt_prng_below(r, c->n_table_rows);
        rows[0] = c->n_table_rows - 1; /* both ends of the table */
        if (c->n_rows > 1) rows[c->n_rows - 1] = 0;
        void *table = zt_random_weight(r, (size_t)c->n_table_rows * c->n_cols, c->dtype, 2.0f);
        float *init = c->accumulate ? zt_random_floats(r, n_out, 1.0f, 0.0f) : NULL;
        float *want = (float *)malloc(n_out * sizeof(float));
        float *got = (float *)malloc(n_out * sizeof(float));
        char ref_text[512], dut_text[512];
        const zt_gather_perturbation *use = perturbed ? &gp : NULL;
        zt_status rs = zt_run_gather(ref, c, rows, table, init, want, use, name, ref_text);
        zt_status ds = zt_run_gather(dut, c, rows, table, init, got, use, name, dut_text);
        ZT_CHECK(rs == ZT_OK && ds == ZT_OK, "gather %s: ref %s / dut %s", name, ref_text,
                 dut_text);
        if (rs == ZT_OK && ds == ZT_OK)
            zt_parity_compare("gather_rows", name, got, want, n_out, bound);
        else
            zt_parity_case_failed("gather_rows", bound);

        /* A bad index: the same error on both sides, and out untouched. */
        if (ci == 1) {
            const int32_t bad_values[2] = {-1, c->n_table_rows};
            for (int k = 0; k < 2; k++) {
                int32_t saved = rows[3 + k];
                rows[3 + k] = bad_values[k];
                char bad_name[160];
                snprintf(bad_name, sizeof bad_name, "%s, rows[%d] = %d", name, 3 + k,
                         (int)bad_values[k]);
                rs = zt_run_gather(ref, c, rows, table, init, want, NULL, bad_name, ref_text);
                ds = zt_run_gather(dut, c, rows, table, init, got, NULL, bad_name, dut_text);
                zt_parity_same_error("gather_rows", bad_name, rs, ref_text, ds, dut_text);
                ZT_CHECK(memcmp(got, init, n_out * sizeof(float)) == 0,
                         "gather %s: out changed although the op failed", bad_name);
                rows[3 + k] = saved;
            }
        }
        free(rows);
        free(table);
        free(init);
        free(want);
        free(got);
    }
}

// ---------------------------------------------------------------------------------------------
// layernorm

typedef struct zt_layernorm_case {
    int n_rows, n_cols;
    int gamma_dtype, beta_dtype; /* zt_dtype or ZT_PARITY_ABSENT */
    int in_place;
    float offset; /* a common offset of every row, to stress the mean */
} zt_layernorm_case;

static zt_status zt_run_layernorm(zt_backend *be, const zt_layernorm_case *c, const float *x,
                                  const void *gamma, const void *beta, float *y, const char *name) {
    const size_t n = (size_t)c->n_rows * c->n_cols;
    zt_pbuf b_x = {0}, b_y = {0}, b_g = {0}, b_b = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_x, x, n * sizeof(float), "in");
    if (ok && !c->in_place) ok = zt_pbuf_make(be, &b_y, NULL, n * sizeof(float), "out");
    if (ok && gamma)
        ok = zt_pbuf_make(be, &b_g, gamma,
                          (size_t)c->n_cols * zt_dtype_size((zt_dtype)c->gamma_dtype), "gamma");
    if (ok && beta)
        ok = zt_pbuf_make(be, &b_b, beta,
                          (size_t)c->n_cols * zt_dtype_size((zt_dtype)c->beta_dtype), "beta");
    if (ok) {
        zt_weight g = {gamma ? zt_pbuf_ptr(&b_g) : NULL, gamma ? (zt_dtype)c->gamma_dtype : ZT_F32};
        zt_weight bt = {beta ? zt_pbuf_ptr(&b_b) : NULL, beta ? (zt_dtype)c->beta_dtype : ZT_F32};
        float *in = (float *)zt_pbuf_ptr(&b_x);
        float *out = c->in_place ? in : (float *)zt_pbuf_ptr(&b_y);
        s = be->ops->layernorm(be, out, in, g, bt, c->n_rows, c->n_cols, 1e-5f);
        ZT_CHECK(s == ZT_OK, "%s layernorm %s: %s", be->ops->name, name, zt_last_error());
        if (c->in_place) {
            zt_pbuf_fetch(&b_x, y, name);
        } else {
            zt_pbuf_fetch(&b_y, y, name);
            zt_pbuf_check_input(&b_x, x, name);
        }
        if (gamma) zt_pbuf_check_input(&b_g, gamma, name);
        if (beta) zt_pbuf_check_input(&b_b, beta, name);
    }
    zt_pbuf_free(&b_x);
    zt_pbuf_free(&b_y);
    zt_pbuf_free(&b_g);
    zt_pbuf_free(&b_b);
    return s;
}

static void zt_parity_layernorm(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const zt_layernorm_case cases[] = {
        {1, 1, ZT_F32, ZT_F32, 0, 0.0f},
        {7, 33, ZT_F16, ZT_F16, 0, 0.0f},
        {5, 3000, ZT_BF16, ZT_BF16, 1, 0.0f},
        {64, 768, ZT_PARITY_ABSENT, ZT_PARITY_ABSENT, 0, 100.0f},
        {3, 5120, ZT_F32, ZT_PARITY_ABSENT, 1, 0.0f},
        {2, 4099, ZT_F16, ZT_BF16, 0, -3.0f},
        {1, 257, ZT_PARITY_ABSENT, ZT_F32, 0, 0.0f},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_layernorm_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "N=%d C=%d gamma=%s beta=%s%s offset=%g", c->n_rows, c->n_cols,
                 zt_weight_name(c->gamma_dtype), zt_weight_name(c->beta_dtype),
                 c->in_place ? " in-place" : "", c->offset);
        const size_t n = (size_t)c->n_rows * c->n_cols;
        float *x = zt_random_floats(r, n, 2.0f, c->offset);
        void *gamma = c->gamma_dtype == ZT_PARITY_ABSENT
                          ? NULL
                          : zt_random_weight(r, (size_t)c->n_cols, (zt_dtype)c->gamma_dtype, 1.5f);
        void *beta = c->beta_dtype == ZT_PARITY_ABSENT
                         ? NULL
                         : zt_random_weight(r, (size_t)c->n_cols, (zt_dtype)c->beta_dtype, 0.5f);
        float *want = (float *)malloc(n * sizeof(float));
        float *got = (float *)malloc(n * sizeof(float));
        zt_status rs = zt_run_layernorm(ref, c, x, gamma, beta, want, name);
        zt_status ds = zt_run_layernorm(dut, c, x, gamma, beta, got, name);
        if (rs == ZT_OK && ds == ZT_OK)
            zt_parity_compare("layernorm", name, got, want, n, ZT_NMSE_LAYERNORM);
        else
            zt_parity_case_failed("layernorm", ZT_NMSE_LAYERNORM);
        free(x);
        free(gamma);
        free(beta);
        free(want);
        free(got);
    }
}

// ---------------------------------------------------------------------------------------------
// linear

typedef struct zt_linear_case {
    int n_rows, in_features, out_features;
    zt_dtype w_dtype;
    int bias_dtype; /* zt_dtype or ZT_PARITY_ABSENT */
    int relu;
} zt_linear_case;

static zt_status zt_run_linear(zt_backend *be, const zt_linear_case *c, const float *x,
                               const void *w, const void *bias, float *y, const char *name) {
    const size_t n_in = (size_t)c->n_rows * c->in_features;
    const size_t n_out = (size_t)c->n_rows * c->out_features;
    const size_t w_bytes = (size_t)c->out_features * c->in_features * zt_dtype_size(c->w_dtype);
    zt_pbuf b_x = {0}, b_y = {0}, b_w = {0}, b_bias = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_x, x, n_in * sizeof(float), "in") &&
             zt_pbuf_make(be, &b_y, NULL, n_out * sizeof(float), "out") &&
             zt_pbuf_make(be, &b_w, w, w_bytes, "weight");
    if (ok && bias)
        ok = zt_pbuf_make(be, &b_bias, bias,
                          (size_t)c->out_features * zt_dtype_size((zt_dtype)c->bias_dtype), "bias");
    if (ok) {
        zt_weight wt = {zt_pbuf_ptr(&b_w), c->w_dtype};
        zt_weight bt = {bias ? zt_pbuf_ptr(&b_bias) : NULL,
                        bias ? (zt_dtype)c->bias_dtype : ZT_F32};
        s = be->ops->linear(be, (float *)zt_pbuf_ptr(&b_y), (const float *)zt_pbuf_ptr(&b_x), wt,
                            bt, c->n_rows, c->in_features, c->out_features, c->relu);
        ZT_CHECK(s == ZT_OK, "%s linear %s: %s", be->ops->name, name, zt_last_error());
        zt_pbuf_fetch(&b_y, y, name);
        zt_pbuf_check_input(&b_x, x, name);
        zt_pbuf_check_input(&b_w, w, name);
        if (bias) zt_pbuf_check_input(&b_bias, bias, name);
    }
    zt_pbuf_free(&b_x);
    zt_pbuf_free(&b_y);
    zt_pbuf_free(&b_w);
    zt_pbuf_free(&b_bias);
    return s;
}

static void zt_parity_linear(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const zt_linear_case cases[] = {
        {1, 1, 1, ZT_F32, ZT_F32, 1},
        {7, 33, 65, ZT_F16, ZT_F16, 0},
        {37, 768, 300, ZT_BF16, ZT_BF16, 1},
        {5, 3000, 17, ZT_F32, ZT_PARITY_ABSENT, 0},
        {3, 64, 50272, ZT_F16, ZT_PARITY_ABSENT, 0}, /* an LM head over the OPT vocabulary */
        {2, 100, 700, ZT_BF16, ZT_F32, 1},
        {1, 40961, 9, ZT_F16, ZT_F16, 0}, /* chunks of 4, 4, 1 rows (the minimum, emulated) */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_linear_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "N=%d IC=%d OC=%d W=%s bias=%s%s", c->n_rows, c->in_features,
                 c->out_features, zt_dtype_name(c->w_dtype), zt_weight_name(c->bias_dtype),
                 c->relu ? " relu" : "");
        const size_t n_out = (size_t)c->n_rows * c->out_features;
        float *x = zt_random_floats(r, (size_t)c->n_rows * c->in_features, 1.0f, 0.0f);
        float w_scale = 1.0f / sqrtf((float)c->in_features);
        void *w =
            zt_random_weight(r, (size_t)c->out_features * c->in_features, c->w_dtype, w_scale);
        void *bias =
            c->bias_dtype == ZT_PARITY_ABSENT
                ? NULL
                : zt_random_weight(r, (size_t)c->out_features, (zt_dtype)c->bias_dtype, 0.3f);
        float *want = (float *)malloc(n_out * sizeof(float));
        float *got = (float *)malloc(n_out * sizeof(float));
        zt_status rs = zt_run_linear(ref, c, x, w, bias, want, name);
        zt_status ds = zt_run_linear(dut, c, x, w, bias, got, name);
        if (rs == ZT_OK && ds == ZT_OK)
            zt_parity_compare("linear", name, got, want, n_out, ZT_NMSE_LINEAR);
        else
            zt_parity_case_failed("linear", ZT_NMSE_LINEAR);
        free(x);
        free(w);
        free(bias);
        free(want);
        free(got);
    }
}

// ---------------------------------------------------------------------------------------------
// attention

typedef enum zt_pad {
    ZT_PAD_NONE,
    ZT_PAD_LEFT,   /* the first T/3 keys are padding */
    ZT_PAD_RIGHT,  /* the last T/3 keys are padding */
    ZT_PAD_FULL,   /* every key is padding: the whole output is zeros */
    ZT_PAD_HOLES,  /* random holes, and non-zero mask values other than 1 */
    ZT_PAD_MIDDLE, /* keys T/3 .. 2T/3 - 1 are padding: from T = 192, whole 64-key tiles */
} zt_pad;

static const char *zt_pad_name(zt_pad p) {
    static const char *names[] = {"none", "left", "right", "full", "holes", "middle"};
    return names[p];
}

/* The key mask of position j of a sequence of `length` columns with padding `pad` (holes: a
 * random 0, or a random nonzero value, as masks need only be nonzero). */
static int zt_pad_keep(zt_prng *r, int pad, int j, int length) {
    switch (pad) {
    case ZT_PAD_LEFT:
        return j >= length / 3;
    case ZT_PAD_RIGHT:
        return j < length - length / 3;
    case ZT_PAD_FULL:
        return 0;
    case ZT_PAD_HOLES:
        return zt_prng_below(r, 4) != 0 ? 1 + (int)zt_prng_below(r, 7) : 0;
    case ZT_PAD_MIDDLE:
        return j < length / 3 || j >= 2 * length / 3;
    }
    return 1;
}

typedef struct zt_attention_case {
    int batch, seq_len, n_heads, head_dim;
    zt_pad pads[3]; /* padding of sequence b is pads[b % 3] */
    int shift;      /* q, k, v and out start this many floats into their buffers (1: not 16-byte
                       aligned, which the CUDA backend's tiled kernel needs) */
} zt_attention_case;

/* n floats of x after `shift` zeros (a copy to free). */
static float *zt_shifted_copy(const float *x, size_t n, size_t shift) {
    float *copy = (float *)calloc(n + shift, sizeof(float));
    if (x) memcpy(copy + shift, x, n * sizeof(float));
    return copy;
}

static zt_status zt_run_attention(zt_backend *be, const zt_attention_case *c, const float *q,
                                  const float *k, const float *v, const int32_t *mask, float *out,
                                  const char *name) {
    const size_t n = (size_t)c->batch * c->seq_len * c->n_heads * c->head_dim;
    const size_t shift = (size_t)c->shift, bytes = (n + shift) * sizeof(float);
    float *q_at = zt_shifted_copy(q, n, shift), *k_at = zt_shifted_copy(k, n, shift);
    float *v_at = zt_shifted_copy(v, n, shift), *out_at = zt_shifted_copy(NULL, n, shift);
    zt_pbuf b_out = {0}, b_q = {0}, b_k = {0}, b_v = {0}, b_mask = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_out, NULL, bytes, "out") &&
             zt_pbuf_make(be, &b_q, q_at, bytes, "q") && zt_pbuf_make(be, &b_k, k_at, bytes, "k") &&
             zt_pbuf_make(be, &b_v, v_at, bytes, "v") &&
             zt_pbuf_make(be, &b_mask, mask, (size_t)c->batch * c->seq_len * sizeof(int32_t),
                          "key_mask");
    if (ok) {
        s = be->ops->attention(
            be, (float *)zt_pbuf_ptr(&b_out) + shift, (const float *)zt_pbuf_ptr(&b_q) + shift,
            (const float *)zt_pbuf_ptr(&b_k) + shift, (const float *)zt_pbuf_ptr(&b_v) + shift,
            (const int32_t *)zt_pbuf_ptr(&b_mask), c->batch, c->seq_len, c->n_heads, c->head_dim,
            1.0f / sqrtf((float)c->head_dim));
        ZT_CHECK(s == ZT_OK, "%s attention %s: %s", be->ops->name, name, zt_last_error());
        zt_pbuf_fetch(&b_out, out_at, name);
        memcpy(out, out_at + shift, n * sizeof(float));
        zt_pbuf_check_input(&b_q, q_at, name);
        zt_pbuf_check_input(&b_k, k_at, name);
        zt_pbuf_check_input(&b_v, v_at, name);
        zt_pbuf_check_input(&b_mask, mask, name);
    }
    zt_pbuf_free(&b_out);
    zt_pbuf_free(&b_q);
    zt_pbuf_free(&b_k);
    zt_pbuf_free(&b_v);
    zt_pbuf_free(&b_mask);
    free(q_at);
    free(k_at);
    free(v_at);
    free(out_at);
    return s;
}

static void zt_parity_attention(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    /* The CUDA backend's kernels (attention.cu): tiled for D % 4 == 0 up to 128 with instances
     * for D = 64, 80, 128 and any D up to 64 or 128 (S = D + 4 or D + 8 per D / 4 even or odd),
     * the general one for the rest, for D = 147 .. 153 (shared memory near 48 KB) and for
     * misaligned buffers. T below, at, off and well past the 64-query / 64-key tiles; key tiles
     * without an admissible key (left, middle, full padding) and queries without any (left,
     * full, holes). */
    static const zt_attention_case cases[] = {
        {1, 1, 1, 1, {ZT_PAD_NONE, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {2, 37, 3, 24, {ZT_PAD_NONE, ZT_PAD_LEFT, ZT_PAD_NONE}, 0},
        {3, 100, 2, 64, {ZT_PAD_NONE, ZT_PAD_RIGHT, ZT_PAD_FULL}, 0},
        {1, 130, 2, 80, {ZT_PAD_HOLES, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 65, 1, 128, {ZT_PAD_LEFT, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {2, 33, 1, 256, {ZT_PAD_LEFT, ZT_PAD_HOLES, ZT_PAD_NONE}, 0}, /* > 48 KiB shared memory */
        {2, 17, 5, 7, {ZT_PAD_RIGHT, ZT_PAD_LEFT, ZT_PAD_NONE}, 0},
        /* tiled, D = 64: one exact tile, T < a tile, long with holes and whole padded tiles */
        {1, 64, 2, 64, {ZT_PAD_NONE, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {2, 5, 3, 64, {ZT_PAD_HOLES, ZT_PAD_LEFT, ZT_PAD_NONE}, 0},
        {3, 333, 1, 64, {ZT_PAD_LEFT, ZT_PAD_MIDDLE, ZT_PAD_HOLES}, 0},
        {1, 600, 2, 64, {ZT_PAD_HOLES, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        /* tiled, D = 80 and 128 (two column chunks) */
        {2, 300, 1, 80, {ZT_PAD_MIDDLE, ZT_PAD_HOLES, ZT_PAD_NONE}, 0},
        {2, 200, 2, 128, {ZT_PAD_HOLES, ZT_PAD_RIGHT, ZT_PAD_NONE}, 0},
        /* tiled, any D up to 64: D / 4 odd and even, a single float4 */
        {2, 45, 2, 36, {ZT_PAD_HOLES, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 150, 3, 60, {ZT_PAD_LEFT, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 20, 2, 4, {ZT_PAD_LEFT, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        /* tiled, any D in 65 .. 128 */
        {2, 129, 2, 96, {ZT_PAD_LEFT, ZT_PAD_HOLES, ZT_PAD_NONE}, 0},
        {1, 70, 3, 100, {ZT_PAD_RIGHT, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 400, 1, 124, {ZT_PAD_MIDDLE, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        /* general: D % 4 == 0 past 128, misaligned buffers, and D = 147 .. 153 */
        {1, 100, 2, 132, {ZT_PAD_HOLES, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {2, 90, 2, 64, {ZT_PAD_LEFT, ZT_PAD_HOLES, ZT_PAD_NONE}, 1},
        {1, 40, 1, 147, {ZT_PAD_LEFT, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 40, 1, 148, {ZT_PAD_HOLES, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 40, 1, 149, {ZT_PAD_NONE, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 40, 1, 150, {ZT_PAD_RIGHT, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 40, 1, 151, {ZT_PAD_NONE, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 40, 1, 152, {ZT_PAD_LEFT, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
        {1, 40, 1, 153, {ZT_PAD_HOLES, ZT_PAD_NONE, ZT_PAD_NONE}, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_attention_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "B=%d T=%d H=%d D=%d pad=%s/%s/%s%s", c->batch, c->seq_len,
                 c->n_heads, c->head_dim, zt_pad_name(c->pads[0]),
                 c->batch > 1 ? zt_pad_name(c->pads[1]) : "-",
                 c->batch > 2 ? zt_pad_name(c->pads[2]) : "-", c->shift ? " +4B" : "");
        const int T = c->seq_len;
        const size_t n = (size_t)c->batch * T * c->n_heads * c->head_dim;
        float *q = zt_random_floats(r, n, 2.0f, 0.0f);
        float *k = zt_random_floats(r, n, 2.0f, 0.0f);
        float *v = zt_random_floats(r, n, 1.0f, 0.0f);
        int32_t *mask = (int32_t *)malloc((size_t)c->batch * T * sizeof(int32_t));
        for (int b = 0; b < c->batch; b++) {
            for (int j = 0; j < T; j++)
                mask[(size_t)b * T + j] = zt_pad_keep(r, c->pads[b % 3], j, T);
        }
        float *want = (float *)malloc(n * sizeof(float));
        float *got = (float *)malloc(n * sizeof(float));
        zt_status rs = zt_run_attention(ref, c, q, k, v, mask, want, name);
        zt_status ds = zt_run_attention(dut, c, q, k, v, mask, got, name);
        if (rs == ZT_OK && ds == ZT_OK) {
            zt_parity_compare("attention", name, got, want, n, ZT_NMSE_ATTENTION);
            /* Queries with no admissible key: exact zeros on both sides. */
            size_t zero_rows = 0, wrong = 0;
            const size_t row = (size_t)c->n_heads * c->head_dim;
            for (size_t i = 0; i < n; i += row) {
                int ref_zero = 1;
                for (size_t d = 0; d < row; d++)
                    ref_zero &= want[i + d] == 0.0f;
                if (!ref_zero) continue;
                zero_rows++;
                for (size_t d = 0; d < row; d++)
                    wrong += got[i + d] != 0.0f;
            }
            ZT_CHECK(wrong == 0, "attention %s: %zu values of all-padding queries are not 0", name,
                     wrong);
            if (zero_rows)
                printf("  %-16s %-58s %zu all-padding queries: zeros\n", "attention", name,
                       zero_rows);
        } else {
            zt_parity_case_failed("attention", ZT_NMSE_ATTENTION);
        }
        free(q);
        free(k);
        free(v);
        free(mask);
        free(want);
        free(got);
    }
}

// ---------------------------------------------------------------------------------------------
// attention_cached

typedef struct zt_cached_case {
    int batch, n_new, capacity, start, n_heads, head_dim;
    zt_pad pads[3]; /* of the first start + n_new columns, sequence b: pads[b % 3] */
} zt_cached_case;

/* Runs attention_cached on one backend from caches holding k_cache / v_cache; out and the caches
 * after the op come back in out, k_after, v_after. */
static zt_status zt_run_attention_cached(zt_backend *be, const zt_cached_case *c, const float *q,
                                         const float *k, const float *v, const float *k_cache,
                                         const float *v_cache, const int32_t *mask, float *out,
                                         float *k_after, float *v_after, const char *name,
                                         char *error_text) {
    const size_t row = (size_t)c->n_heads * c->head_dim;
    const size_t n = (size_t)c->batch * c->n_new * row, nc = (size_t)c->batch * c->capacity * row;
    zt_pbuf b_out = {0}, b_q = {0}, b_k = {0}, b_v = {0}, b_kc = {0}, b_vc = {0}, b_mask = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_out, NULL, n * sizeof(float), "out") &&
             zt_pbuf_make(be, &b_q, q, n * sizeof(float), "q") &&
             zt_pbuf_make(be, &b_k, k, n * sizeof(float), "k") &&
             zt_pbuf_make(be, &b_v, v, n * sizeof(float), "v") &&
             zt_pbuf_make(be, &b_kc, k_cache, nc * sizeof(float), "k_cache") &&
             zt_pbuf_make(be, &b_vc, v_cache, nc * sizeof(float), "v_cache") &&
             zt_pbuf_make(be, &b_mask, mask, (size_t)c->batch * c->capacity * sizeof(int32_t),
                          "key_mask");
    if (ok) {
        s = be->ops->attention_cached(
            be, (float *)zt_pbuf_ptr(&b_out), (const float *)zt_pbuf_ptr(&b_q),
            (const float *)zt_pbuf_ptr(&b_k), (const float *)zt_pbuf_ptr(&b_v),
            (float *)zt_pbuf_ptr(&b_kc), (float *)zt_pbuf_ptr(&b_vc),
            (const int32_t *)zt_pbuf_ptr(&b_mask), c->batch, c->n_new, c->capacity, c->start,
            c->n_heads, c->head_dim, 1.0f / sqrtf((float)c->head_dim));
        snprintf(error_text, 512, "%s", s == ZT_OK ? "" : zt_last_error());
        zt_pbuf_fetch(&b_out, out, name);
        zt_pbuf_fetch(&b_kc, k_after, name);
        zt_pbuf_fetch(&b_vc, v_after, name);
        zt_pbuf_check_input(&b_q, q, name);
        zt_pbuf_check_input(&b_k, k, name);
        zt_pbuf_check_input(&b_v, v, name);
        zt_pbuf_check_input(&b_mask, mask, name);
    }
    zt_pbuf_free(&b_out);
    zt_pbuf_free(&b_q);
    zt_pbuf_free(&b_k);
    zt_pbuf_free(&b_v);
    zt_pbuf_free(&b_kc);
    zt_pbuf_free(&b_vc);
    zt_pbuf_free(&b_mask);
    return s;
}

/* The caches must come back as they went in with the new rows in their columns, bit for bit, on
 * both backends; outputs within the attention bound; queries with no admissible key exactly 0 on
 * both. A prefill from column 0 must also match the backend's own `attention` on the same inputs,
 * and a refused call fail alike on both. */
static void zt_parity_attention_cached(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const zt_cached_case cases[] = {
        {1, 1, 1, 0, 1, 1, {ZT_PAD_NONE, ZT_PAD_NONE, ZT_PAD_NONE}},
        {2, 37, 40, 0, 3, 24, {ZT_PAD_NONE, ZT_PAD_LEFT, ZT_PAD_NONE}},    /* prefill */
        {3, 17, 17, 0, 5, 7, {ZT_PAD_RIGHT, ZT_PAD_LEFT, ZT_PAD_HOLES}},   /* prefill, full */
        {3, 1, 100, 60, 2, 64, {ZT_PAD_LEFT, ZT_PAD_NONE, ZT_PAD_FULL}},   /* decode */
        {2, 1, 130, 129, 2, 80, {ZT_PAD_HOLES, ZT_PAD_LEFT, ZT_PAD_NONE}}, /* last column */
        {2, 5, 70, 33, 1, 128, {ZT_PAD_LEFT, ZT_PAD_HOLES, ZT_PAD_NONE}},  /* a chunk */
        {2, 1, 50, 20, 1, 256, {ZT_PAD_LEFT, ZT_PAD_NONE, ZT_PAD_NONE}},   /* D = 256 */
        {16, 1, 45, 44, 12, 64, {ZT_PAD_LEFT, ZT_PAD_NONE, ZT_PAD_FULL}},  /* OPT-125m decode */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_cached_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "B=%d Tq=%d cap=%d start=%d H=%d D=%d pad=%s/%s/%s", c->batch,
                 c->n_new, c->capacity, c->start, c->n_heads, c->head_dim, zt_pad_name(c->pads[0]),
                 c->batch > 1 ? zt_pad_name(c->pads[1]) : "-",
                 c->batch > 2 ? zt_pad_name(c->pads[2]) : "-");
        const size_t row = (size_t)c->n_heads * c->head_dim;
        const size_t n = (size_t)c->batch * c->n_new * row;
        const size_t nc = (size_t)c->batch * c->capacity * row;
        const int used = c->start + c->n_new, cap = c->capacity;
        float *q = zt_random_floats(r, n, 2.0f, 0.0f), *k = zt_random_floats(r, n, 2.0f, 0.0f);
        float *v = zt_random_floats(r, n, 1.0f, 0.0f);
        float *k_cache = zt_random_floats(r, nc, 2.0f, 0.0f);
        float *v_cache = zt_random_floats(r, nc, 1.0f, 0.0f);
        int32_t *mask = (int32_t *)malloc((size_t)c->batch * cap * sizeof(int32_t));
        for (int b = 0; b < c->batch; b++)
            for (int j = 0; j < cap; j++) {
                int keep = zt_pad_keep(r, c->pads[b % 3], j, used);
                if (j >= used) keep = zt_prng_below(r, 2); /* past the queries: never read */
                mask[(size_t)b * cap + j] = keep;
            }
        /* the caches as they must be after the op */
        float *k_want = (float *)malloc(nc * sizeof(float) + 1);
        float *v_want = (float *)malloc(nc * sizeof(float) + 1);
        memcpy(k_want, k_cache, nc * sizeof(float));
        memcpy(v_want, v_cache, nc * sizeof(float));
        for (int b = 0; b < c->batch; b++)
            for (int i = 0; i < c->n_new; i++) {
                const size_t to = ((size_t)b * cap + c->start + i) * row;
                const size_t from = ((size_t)b * c->n_new + i) * row;
                memcpy(k_want + to, k + from, row * sizeof(float));
                memcpy(v_want + to, v + from, row * sizeof(float));
            }
        float *want = (float *)malloc(n * sizeof(float) + 1);
        float *got = (float *)malloc(n * sizeof(float) + 1);
        float *kc[2], *vc[2];
        for (int side = 0; side < 2; side++) {
            kc[side] = (float *)malloc(nc * sizeof(float) + 1);
            vc[side] = (float *)malloc(nc * sizeof(float) + 1);
        }
        char ref_text[512], dut_text[512];
        zt_status rs = zt_run_attention_cached(ref, c, q, k, v, k_cache, v_cache, mask, want, kc[0],
                                               vc[0], name, ref_text);
        zt_status ds = zt_run_attention_cached(dut, c, q, k, v, k_cache, v_cache, mask, got, kc[1],
                                               vc[1], name, dut_text);
        ZT_CHECK(rs == ZT_OK && ds == ZT_OK, "attention_cached %s: ref %s / dut %s", name, ref_text,
                 dut_text);
        if (rs == ZT_OK && ds == ZT_OK) {
            zt_parity_compare("attention_cached", name, got, want, n, ZT_NMSE_ATTENTION);
            for (int side = 0; side < 2; side++)
                ZT_CHECK(memcmp(kc[side], k_want, nc * sizeof(float)) == 0 &&
                             memcmp(vc[side], v_want, nc * sizeof(float)) == 0,
                         "attention_cached %s: %s's caches are not the old ones with the new "
                         "keys and values appended",
                         name, side ? dut->ops->name : ref->ops->name);
            size_t zero_rows = 0, wrong = 0;
            for (size_t i = 0; i < n; i += c->head_dim) {
                int ref_zero = 1;
                for (int d = 0; d < c->head_dim; d++)
                    ref_zero &= want[i + d] == 0.0f;
                if (!ref_zero) continue;
                zero_rows++;
                for (int d = 0; d < c->head_dim; d++)
                    wrong += got[i + d] != 0.0f;
            }
            ZT_CHECK(wrong == 0, "attention_cached %s: %zu values of key-less queries are not 0",
                     name, wrong);
            if (zero_rows)
                printf("  %-16s %-58s %zu key-less query heads: zeros\n", "attention_cached", name,
                       zero_rows);
        } else {
            zt_parity_case_failed("attention_cached", ZT_NMSE_ATTENTION);
        }
        if (c->start == 0 && c->n_new > 1 && ds == ZT_OK) {
            /* a prefill is `attention` on the same inputs, on the device as on the CPU */
            const zt_attention_case plain = {c->batch,
                                             c->n_new,
                                             c->n_heads,
                                             c->head_dim,
                                             {ZT_PAD_NONE, ZT_PAD_NONE, ZT_PAD_NONE},
                                             0};
            int32_t *mask_t = (int32_t *)malloc((size_t)c->batch * c->n_new * sizeof(int32_t));
            for (int b = 0; b < c->batch; b++)
                memcpy(mask_t + (size_t)b * c->n_new, mask + (size_t)b * cap,
                       (size_t)c->n_new * sizeof(int32_t));
            float *plain_out = (float *)malloc(n * sizeof(float) + 1);
            char prefill_name[160];
            snprintf(prefill_name, sizeof prefill_name, "%s vs attention", name);
            if (zt_run_attention(dut, &plain, q, k, v, mask_t, plain_out, prefill_name) == ZT_OK)
                zt_parity_compare("cached=plain", prefill_name, got, plain_out, n,
                                  ZT_NMSE_ATTENTION);
            free(mask_t);
            free(plain_out);
        }
        if (ci == 3) { /* a step past the capacity: the same refusal, the caches untouched */
            zt_cached_case bad = *c;
            bad.start = c->capacity;
            char bad_name[160];
            snprintf(bad_name, sizeof bad_name, "%s, start = capacity", name);
            rs = zt_run_attention_cached(ref, &bad, q, k, v, k_cache, v_cache, mask, want, kc[0],
                                         vc[0], bad_name, ref_text);
            ds = zt_run_attention_cached(dut, &bad, q, k, v, k_cache, v_cache, mask, got, kc[1],
                                         vc[1], bad_name, dut_text);
            zt_parity_same_error("attention_cached", bad_name, rs, ref_text, ds, dut_text);
            ZT_CHECK(memcmp(kc[1], k_cache, nc * sizeof(float)) == 0,
                     "attention_cached %s: k_cache changed although the op failed", bad_name);
        }
        free(q);
        free(k);
        free(v);
        free(k_cache);
        free(v_cache);
        free(mask);
        free(k_want);
        free(v_want);
        free(want);
        free(got);
        for (int side = 0; side < 2; side++) {
            free(kc[side]);
            free(vc[side]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// add

static zt_status zt_run_add(zt_backend *be, const float *x, const float *y, size_t n, float *out,
                            const char *name) {
    zt_pbuf b_x = {0}, b_y = {0};
    zt_status s = ZT_ERR_INTERNAL;
    if (zt_pbuf_make(be, &b_x, x, n * sizeof(float), "x") &&
        zt_pbuf_make(be, &b_y, y, n * sizeof(float), "y")) {
        s = be->ops->add(be, (float *)zt_pbuf_ptr(&b_x), (const float *)zt_pbuf_ptr(&b_y), n);
        ZT_CHECK(s == ZT_OK, "%s add %s: %s", be->ops->name, name, zt_last_error());
        zt_pbuf_fetch(&b_x, out, name);
        zt_pbuf_check_input(&b_y, y, name);
    }
    zt_pbuf_free(&b_x);
    zt_pbuf_free(&b_y);
    return s;
}

static void zt_parity_add(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const size_t sizes[] = {1, 1000, ((size_t)1 << 20) + 3};
    for (size_t ci = 0; ci < sizeof sizes / sizeof sizes[0]; ci++) {
        const size_t n = sizes[ci];
        char name[64];
        snprintf(name, sizeof name, "n=%zu", n);
        float *x = zt_random_floats(r, n, 3.0f, 0.0f);
        float *y = zt_random_floats(r, n, 3.0f, 0.0f);
        float *want = (float *)malloc(n * sizeof(float));
        float *got = (float *)malloc(n * sizeof(float));
        zt_status rs = zt_run_add(ref, x, y, n, want, name);
        zt_status ds = zt_run_add(dut, x, y, n, got, name);
        if (rs == ZT_OK && ds == ZT_OK)
            zt_parity_compare("add", name, got, want, n, ZT_NMSE_ADD);
        else
            zt_parity_case_failed("add", ZT_NMSE_ADD);
        free(x);
        free(y);
        free(want);
        free(got);
    }
}

// ---------------------------------------------------------------------------------------------
// target_logprobs

/* Logits that are not all finite. NEG_INF: every 5th logit but the target's is -inf, and row 0
 * holds nothing else beside its target (log-probability 0). NONFINITE: rows cycle through six
 * kinds (zt_logprob_poison), whose log-probabilities are NaN, -inf or finite alike on both
 * backends. */
enum { ZT_LOGPROB_FINITE = 0, ZT_LOGPROB_NEG_INF = 1, ZT_LOGPROB_NONFINITE = 2 };

typedef struct zt_logprob_case {
    int n_rows, vocab;
    float scale; /* logits uniform in [-scale, scale); 0 = all equal */
    int special; /* ZT_LOGPROB_* */
} zt_logprob_case;

/* Writes the case's -inf and NaN into logits (R,V), given the targets. */
static void zt_logprob_poison(const zt_logprob_case *c, float *logits, const int32_t *targets) {
    const int v = c->vocab;
    for (int r = 0; r < c->n_rows; r++) {
        float *x = logits + (size_t)r * v;
        if (c->special == ZT_LOGPROB_NEG_INF) {
            for (int j = 0; j < v; j++)
                if (j != targets[r] && (r == 0 || j % 5 == 0)) x[j] = -INFINITY;
            continue;
        }
        if (c->special != ZT_LOGPROB_NONFINITE) continue;
        switch (r % 6) {
        case 0: /* all -inf: NaN (log_softmax of nothing) */
            for (int j = 0; j < v; j++)
                x[j] = -INFINITY;
            break;
        case 1: /* one NaN near the end, in another slice than most of the row: NaN */
            x[v - 2] = NAN;
            break;
        case 2: /* the target alone is -inf: -inf */
            x[targets[r]] = -INFINITY;
            break;
        case 3: /* all -inf but one NaN mid-row: NaN */
            for (int j = 0; j < v; j++)
                x[j] = j == v / 2 ? NAN : -INFINITY;
            break;
        case 4: /* NaN first: NaN */
            x[0] = NAN;
            break;
        default: /* finite, beside every 3rd logit -inf */
            for (int j = 0; j < v; j++)
                if (j != targets[r] && j % 3 == 0) x[j] = -INFINITY;
            break;
        }
    }
}

/* got against want where some log-probabilities are not finite: the same NaN and infinities, row
 * for row, and the finite rows within the NMSE bound. */
static void zt_logprob_compare(const char *name, const float *got, const float *want, int n) {
    float *got_finite = (float *)malloc((size_t)n * sizeof(float) + 1);
    float *want_finite = (float *)malloc((size_t)n * sizeof(float) + 1);
    int n_finite = 0, n_nan = 0, n_inf = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(want[i])) {
            n_nan++;
            ZT_CHECK(isnan(got[i]), "target_logprobs %s: row %d is %g, the reference NaN", name, i,
                     got[i]);
        } else if (isinf(want[i])) {
            n_inf++;
            ZT_CHECK(got[i] == want[i], "target_logprobs %s: row %d is %g, the reference %g", name,
                     i, got[i], want[i]);
        } else {
            got_finite[n_finite] = got[i];
            want_finite[n_finite++] = want[i];
        }
    }
    char finite_name[160];
    snprintf(finite_name, sizeof finite_name, "%s (%d NaN, %d inf)", name, n_nan, n_inf);
    zt_parity_compare("target_logprobs", finite_name, got_finite, want_finite, (size_t)n_finite,
                      ZT_NMSE_LOGPROB);
    free(got_finite);
    free(want_finite);
}

static zt_status zt_run_logprob(zt_backend *be, const zt_logprob_case *c, const float *logits,
                                const int32_t *targets, float *out, const char *name,
                                char *error_text) {
    zt_pbuf b_out = {0}, b_logits = {0}, b_targets = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_out, out, (size_t)c->n_rows * sizeof(float), "logprob") &&
             zt_pbuf_make(be, &b_logits, logits, (size_t)c->n_rows * c->vocab * sizeof(float),
                          "logits") &&
             zt_pbuf_make(be, &b_targets, targets, (size_t)c->n_rows * sizeof(int32_t), "targets");
    if (ok) {
        s = be->ops->target_logprobs(be, (float *)zt_pbuf_ptr(&b_out),
                                     (const float *)zt_pbuf_ptr(&b_logits),
                                     (const int32_t *)zt_pbuf_ptr(&b_targets), c->n_rows, c->vocab);
        snprintf(error_text, 512, "%s", s == ZT_OK ? "" : zt_last_error());
        zt_pbuf_fetch(&b_out, out, name);
        zt_pbuf_check_input(&b_logits, logits, name);
        zt_pbuf_check_input(&b_targets, targets, name);
    }
    zt_pbuf_free(&b_out);
    zt_pbuf_free(&b_logits);
    zt_pbuf_free(&b_targets);
    return s;
}

/* The CUDA backend splits each row over several blocks when the rows alone do not fill the device
 * (kernels/cuda/logprob.cu), so the cases span one row to hundreds, vocabularies that no split
 * size divides (odd, and not whole float4s), and rows with -inf and NaN. Under the host executor
 * (132 SMs, 264 blocks aimed at, slices of 64 columns or more): R=1 V=50272 runs 262 splits,
 * R=263 V=1000 two (526 partials of the 528 the backend holds), R=300 one. */
static void zt_parity_logprob(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const zt_logprob_case cases[] = {
        {1, 1, 1.0f, ZT_LOGPROB_FINITE},         {5, 7, 3.0f, ZT_LOGPROB_FINITE},
        {33, 3000, 30.0f, ZT_LOGPROB_FINITE},    {9, 50272, 10.0f, ZT_LOGPROB_FINITE},
        {4, 50272, 0.0f, ZT_LOGPROB_FINITE},     {2, 257, 80.0f, ZT_LOGPROB_FINITE},
        {1, 50272, 10.0f, ZT_LOGPROB_FINITE},    {37, 50271, 10.0f, ZT_LOGPROB_FINITE},
        {16, 504, 10.0f, ZT_LOGPROB_FINITE},     {263, 1000, 10.0f, ZT_LOGPROB_FINITE},
        {300, 130, 10.0f, ZT_LOGPROB_FINITE},    {7, 2001, 10.0f, ZT_LOGPROB_NEG_INF},
        {12, 3001, 10.0f, ZT_LOGPROB_NONFINITE}, {12, 50272, 10.0f, ZT_LOGPROB_NONFINITE},
    };
    static const char *const special_names[] = {"", ", -inf", ", -inf and NaN"};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_logprob_case *c = &cases[ci];
        char name[96];
        snprintf(name, sizeof name, "R=%d V=%d logits in +-%g%s", c->n_rows, c->vocab, c->scale,
                 special_names[c->special]);
        float *logits = zt_random_floats(r, (size_t)c->n_rows * c->vocab, c->scale, 0.0f);
        int32_t *targets = (int32_t *)malloc((size_t)c->n_rows * sizeof(int32_t));
        for (int i = 0; i < c->n_rows; i++)
            targets[i] = zt_prng_below(r, c->vocab);
        targets[0] = c->vocab - 1;
        if (c->n_rows > 1) targets[1] = 0;
        zt_logprob_poison(c, logits, targets);
        /* NaN bytes: the op must write every row. */
        float *want = (float *)malloc((size_t)c->n_rows * sizeof(float));
        float *got = (float *)malloc((size_t)c->n_rows * sizeof(float));
        memset(want, 0xff, (size_t)c->n_rows * sizeof(float));
        memset(got, 0xff, (size_t)c->n_rows * sizeof(float));
        char ref_text[512], dut_text[512];
        zt_status rs = zt_run_logprob(ref, c, logits, targets, want, name, ref_text);
        zt_status ds = zt_run_logprob(dut, c, logits, targets, got, name, dut_text);
        ZT_CHECK(rs == ZT_OK && ds == ZT_OK, "logprob %s: ref %s / dut %s", name, ref_text,
                 dut_text);
        if (rs == ZT_OK && ds == ZT_OK && c->special != ZT_LOGPROB_FINITE)
            zt_logprob_compare(name, got, want, c->n_rows);
        else if (rs == ZT_OK && ds == ZT_OK)
            zt_parity_compare("target_logprobs", name, got, want, (size_t)c->n_rows,
                              ZT_NMSE_LOGPROB);
        else
            zt_parity_case_failed("target_logprobs", ZT_NMSE_LOGPROB);
        if (ds == ZT_OK) { /* a second call, blocks finishing in another order: the same bits */
            float *again = (float *)malloc((size_t)c->n_rows * sizeof(float));
            memset(again, 0xff, (size_t)c->n_rows * sizeof(float));
            ds = zt_run_logprob(dut, c, logits, targets, again, name, dut_text);
            ZT_CHECK(ds == ZT_OK && memcmp(again, got, (size_t)c->n_rows * sizeof(float)) == 0,
                     "logprob %s: a second call gives other bits", name);
            free(again);
        }
        if (ci == 2) { /* a target outside the vocabulary: same error, logprob untouched */
            targets[2] = c->vocab;
            char bad_name[128];
            snprintf(bad_name, sizeof bad_name, "%s, targets[2] = %d", name, c->vocab);
            float *before = (float *)malloc((size_t)c->n_rows * sizeof(float));
            memcpy(before, got, (size_t)c->n_rows * sizeof(float));
            rs = zt_run_logprob(ref, c, logits, targets, want, bad_name, ref_text);
            ds = zt_run_logprob(dut, c, logits, targets, got, bad_name, dut_text);
            zt_parity_same_error("target_logprobs", bad_name, rs, ref_text, ds, dut_text);
            ZT_CHECK(memcmp(before, got, (size_t)c->n_rows * sizeof(float)) == 0,
                     "logprob %s: logprob changed although the op failed", bad_name);
            free(before);
        }
        free(logits);
        free(targets);
        free(want);
        free(got);
    }
}

// ---------------------------------------------------------------------------------------------

/* Every op, every case; prints one line per case and a per-op summary of the worst NMSE. */
static void zt_parity_run(zt_backend *ref, zt_backend *dut, uint64_t seed) {
    zt_prng r = {seed ? seed : 1};
    printf("parity of %s against %s, seed %llu\n", dut->ops->name, ref->ops->name,
           (unsigned long long)seed);
    struct {
        const char *op;
        void (*run)(zt_backend *, zt_backend *, zt_prng *);
    } ops[] = {
        {"gather_rows", zt_parity_gather},
        {"layernorm", zt_parity_layernorm},
        {"linear", zt_parity_linear},
        {"attention", zt_parity_attention},
        {"attention_cached", zt_parity_attention_cached},
        {"add", zt_parity_add},
        {"target_logprobs", zt_parity_logprob},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        double start = zt_parity_now();
        ops[i].run(ref, dut, &r);
        printf("  %-16s %.2f s\n", ops[i].op, zt_parity_now() - start);
    }
    printf("summary (worst NMSE per op):\n");
    for (int i = 0; i < zt_parity_n_stats; i++)
        printf("  %-16s %2d cases  worst %.2e  bound %.0e\n", zt_parity_stats[i].op,
               zt_parity_stats[i].n_cases, zt_parity_stats[i].worst_nmse, zt_parity_stats[i].bound);
}

#endif
