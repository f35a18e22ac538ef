/* linear under the tensor-core GEMM precisions of a backend under test ("dut"): ZT_GEMM_HALF
 * (half weights as stored x activations rounded to the weight's dtype) and ZT_GEMM_TF32. Shared by
 * tests/cudaemu and tests/gpu; include after op_parity.h (it uses that file's helpers).
 *
 * Each case is held three ways:
 *   1. HALF only: against the CPU backend (f32) fed the activations rounded on the host, within
 *      the f32 bound ZT_NMSE_LINEAR: the dut rounds exactly where and how it says it does.
 *   2. Against a double-precision loop on the unrounded inputs, element by element, within a
 *      bound derived from the input rounding (u = 2^-11 f16, 2^-8 bf16 activations; 2^-10 for
 *      TF32, truncation's bound, so round-to-nearest or truncating hardware both pass) plus f32
 *      accumulation: |err_i| <= (r + (IC + 2) 2^-24 (1 + r)^2) S_i + 2^-24 |b_i|, where
 *      S_i = sum_k |x_k w_ik| and r the relative rounding of the products (u for HALF, where
 *      weights are exact; 2u + u^2 for TF32, where both sides round).
 *   3. HALF is in effect: NMSE against the CPU's full-f32 result above 1e-12, where f32 gives
 *      ~1e-14 and the rounding ~1e-8 or more (f32 weights under HALF take the f32 path and pass
 *      check 1 instead). For TF32 it is printed, not required: CUBLAS_COMPUTE_32F_FAST_TF32
 *      permits TF32 without forcing it. That f32 never uses TF32 unasked is op_parity.h's
 *      linear bound (1e-10, where TF32 gives ~1e-8).
 */
#ifndef ZT_TEST_GEMM_PARITY_H
#define ZT_TEST_GEMM_PARITY_H

#include <math.h>

#include "common/dtype.h"

#define ZT_NMSE_GEMM_ENGAGED 1e-12

typedef struct zt_gemm_stat {
    int n_cases;
    double worst_ratio;   /* max |err| / derived bound over all elements and cases */
    double least_engaged; /* smallest NMSE against full f32 among the cases that must differ */
} zt_gemm_stat;

/* Worst |got - exact| / bound over the case, exact and S in double on the unrounded inputs. */
static double zt_gemm_worst_ratio(const zt_linear_case *c, const float *x, const void *w,
                                  const void *bias, const float *got, double r) {
    double worst = 0.0;
    const double u24 = ldexp(1.0, -24);
    const double accumulate = (c->in_features + 2) * u24 * (1.0 + r) * (1.0 + r);
    for (int n = 0; n < c->n_rows; n++)
        for (int o = 0; o < c->out_features; o++) {
            double sum = 0.0, magnitude = 0.0;
            for (int k = 0; k < c->in_features; k++) {
                double p = (double)x[(size_t)n * c->in_features + k] *
                           zt_load_f32(w, c->w_dtype, (size_t)o * c->in_features + k);
                sum += p;
                magnitude += fabs(p);
            }
            double b = bias ? zt_load_f32(bias, (zt_dtype)c->bias_dtype, (size_t)o) : 0.0;
            double exact = sum + b;
            if (c->relu && exact < 0.0) exact = 0.0;
            double bound = (r + accumulate) * magnitude + u24 * fabs(b) + 1e-30;
            double ratio = fabs((double)got[(size_t)n * c->out_features + o] - exact) / bound;
            if (ratio > worst) worst = ratio;
        }
    return worst;
}

static void zt_gemm_parity_mode(zt_backend *ref, zt_backend *dut, zt_prng *rng,
                                zt_gemm_precision precision, zt_gemm_stat *stat) {
    /* Sizes that are not multiples of tiles; row chunks of the converted activations (more than
     * the executor's 160 KB of half elements: N=90 x IC=1000 is two chunks, 44 + 46 rows;
     * IC=40961 one row each);
     * the f32 chunked-weight path under TF32; f32 weights under HALF. */
    static const zt_linear_case cases[] = {
        {7, 33, 65, ZT_F16, ZT_F16, 0},
        {37, 768, 300, ZT_BF16, ZT_BF16, 1},
        {90, 1000, 40, ZT_BF16, ZT_F32, 0},
        {3, 40961, 5, ZT_F16, ZT_PARITY_ABSENT, 0},
        {2, 64, 5000, ZT_F16, ZT_PARITY_ABSENT, 0},
        {5, 300, 17, ZT_F32, ZT_F32, 1},
        {1, 1, 1, ZT_BF16, ZT_BF16, 1},
    };
    const char *mode = zt_gemm_precision_name(precision);
    zt_status set = zt_backend_set_gemm_precision(dut, precision);
    ZT_CHECK(set == ZT_OK, "%s: --gemm %s refused: %s", dut->ops->name, mode, zt_last_error());
    if (set != ZT_OK) return;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const zt_linear_case *c = &cases[ci];
        char name[128];
        snprintf(name, sizeof name, "%s N=%d IC=%d OC=%d W=%s bias=%s%s", mode, c->n_rows,
                 c->in_features, c->out_features, zt_dtype_name(c->w_dtype),
                 zt_weight_name(c->bias_dtype), c->relu ? " relu" : "");
        const size_t n_in = (size_t)c->n_rows * c->in_features;
        const size_t n_out = (size_t)c->n_rows * c->out_features;
        float *x = zt_random_floats(rng, n_in, 1.0f, 0.0f);
        void *w = zt_random_weight(rng, (size_t)c->out_features * c->in_features, c->w_dtype,
                                   1.0f / sqrtf((float)c->in_features));
        void *bias =
            c->bias_dtype == ZT_PARITY_ABSENT
                ? NULL
                : zt_random_weight(rng, (size_t)c->out_features, (zt_dtype)c->bias_dtype, 0.3f);
        const int half_weight = c->w_dtype != ZT_F32;
        const int rounds_x = precision == ZT_GEMM_HALF && half_weight;
        float *x_rounded = (float *)malloc(n_in * sizeof(float));
        for (size_t i = 0; i < n_in; i++)
            x_rounded[i] = rounds_x ? zt_round_through(c->w_dtype, x[i]) : x[i];
        float *got = (float *)malloc(n_out * sizeof(float));
        float *full = (float *)malloc(n_out * sizeof(float));
        float *want = (float *)malloc(n_out * sizeof(float));
        zt_status ds = zt_run_linear(dut, c, x, w, bias, got, name);
        zt_status fs = zt_run_linear(ref, c, x, w, bias, full, name);
        zt_status rs = zt_run_linear(ref, c, x_rounded, w, bias, want, name);
        if (ds == ZT_OK && fs == ZT_OK && rs == ZT_OK) {
            if (precision == ZT_GEMM_HALF) {
                /* 1 (and f32 weights under HALF: the f32 path, so the f32 bound) */
                zt_parity_compare("linear gemm", name, got, want, n_out, ZT_NMSE_LINEAR);
            }
            const double u = precision == ZT_GEMM_TF32 ? ldexp(1.0, -10)
                             : c->w_dtype == ZT_F16    ? ldexp(1.0, -11)
                                                       : ldexp(1.0, -8);
            const double r = precision == ZT_GEMM_TF32 ? 2 * u + u * u : rounds_x ? u : 0.0;
            const double ratio = zt_gemm_worst_ratio(c, x, w, bias, got, r); /* 2 */
            const double engaged = zt_nmse(got, full, n_out);                /* 3 */
            /* FAST_TF32 allows TF32 but does not force it (a small GEMM may run a plain f32
             * kernel), so only HALF, which rounds the activations itself, must differ */
            const int must_differ = rounds_x;
            printf("  %-16s %-58s |err|/bound %.3f, nmse vs f32 %.2e%s\n", "linear gemm", name,
                   ratio, engaged, precision == ZT_GEMM_HALF && !rounds_x ? " (f32 path)" : "");
            ZT_CHECK(ratio <= 1.0, "%s: error %.3f x the derived bound", name, ratio);
            if (must_differ) {
                ZT_CHECK(engaged > ZT_NMSE_GEMM_ENGAGED,
                         "%s: nmse %.2e against full f32: the mode is not in effect", name,
                         engaged);
            }
            if (half_weight && (stat->least_engaged == 0.0 || engaged < stat->least_engaged))
                stat->least_engaged = engaged;
            if (ratio > stat->worst_ratio) stat->worst_ratio = ratio;
        } else {
            ZT_CHECK(0, "%s: an op failed (dut %s, cpu %s)", name, zt_status_name(ds),
                     zt_status_name(rs));
        }
        stat->n_cases++;
        free(x);
        free(x_rounded);
        free(w);
        free(bias);
        free(got);
        free(full);
        free(want);
    }
    ZT_CHECK_OK(zt_backend_set_gemm_precision(dut, ZT_GEMM_F32));
}

/* An f32 bias 4 bytes past an aligned address (a caller's slice), which cuBLASLt's epilogue may
 * not take directly: the result must still match, with and without ReLU. */
static zt_status zt_run_offset_bias(zt_backend *be, const float *x, const float *w,
                                    const float *bias_padded, float *y, int n, int ic, int oc,
                                    int relu) {
    zt_pbuf bx = {0}, bw = {0}, bb = {0}, by = {0};
    zt_status s = ZT_ERR_INTERNAL;
    if (zt_pbuf_make(be, &bx, x, (size_t)n * ic * sizeof(float), "in") &&
        zt_pbuf_make(be, &bw, w, (size_t)oc * ic * sizeof(float), "weight") &&
        zt_pbuf_make(be, &bb, bias_padded, (size_t)(oc + 1) * sizeof(float), "bias") &&
        zt_pbuf_make(be, &by, NULL, (size_t)n * oc * sizeof(float), "out")) {
        zt_weight wt = {zt_pbuf_ptr(&bw), ZT_F32};
        zt_weight bt = {(const float *)zt_pbuf_ptr(&bb) + 1, ZT_F32};
        s = be->ops->linear(be, (float *)zt_pbuf_ptr(&by), (const float *)zt_pbuf_ptr(&bx), wt, bt,
                            n, ic, oc, relu);
        ZT_CHECK(s == ZT_OK, "%s linear, offset bias: %s", be->ops->name, zt_last_error());
        zt_pbuf_fetch(&by, y, "offset bias");
    }
    zt_pbuf_free(&bx);
    zt_pbuf_free(&bw);
    zt_pbuf_free(&bb);
    zt_pbuf_free(&by);
    return s;
}

static void zt_gemm_parity_offset_bias(zt_backend *ref, zt_backend *dut, zt_prng *rng) {
    const int n = 3, ic = 40, oc = 17;
    float *x = zt_random_floats(rng, (size_t)n * ic, 1.0f, 0.0f);
    float *w = (float *)zt_random_weight(rng, (size_t)oc * ic, ZT_F32, 0.2f);
    float *b = (float *)zt_random_weight(rng, (size_t)oc + 1, ZT_F32, 0.3f);
    float *got = (float *)malloc((size_t)n * oc * sizeof(float));
    float *want = (float *)malloc((size_t)n * oc * sizeof(float));
    for (int relu = 0; relu <= 1; relu++)
        if (zt_run_offset_bias(dut, x, w, b, got, n, ic, oc, relu) == ZT_OK &&
            zt_run_offset_bias(ref, x, w, b, want, n, ic, oc, relu) == ZT_OK)
            zt_parity_compare("linear",
                              relu ? "f32 bias at +4 bytes, relu" : "f32 bias at +4 bytes", got,
                              want, (size_t)n * oc, ZT_NMSE_LINEAR);
    free(x);
    free(w);
    free(b);
    free(got);
    free(want);
}

/* Both tensor-core modes, then a summary; the CPU reference must refuse TF32 by name. */
static void zt_gemm_parity_run(zt_backend *ref, zt_backend *dut, uint64_t seed) {
    zt_prng rng = {seed ? seed ^ 0x6a09e667f3bcc909ull : 1};
    printf("linear under tensor-core GEMM precisions, %s against %s and a double loop\n",
           dut->ops->name, ref->ops->name);
    zt_gemm_parity_offset_bias(ref, dut, &rng);
    zt_gemm_stat half = {0, 0.0, 0.0}, tf32 = {0, 0.0, 0.0};
    zt_gemm_parity_mode(ref, dut, &rng, ZT_GEMM_HALF, &half);
    zt_gemm_parity_mode(ref, dut, &rng, ZT_GEMM_TF32, &tf32);
    printf("summary: half %d cases, worst |err|/bound %.3f, least nmse vs f32 %.2e; tf32 %d cases, "
           "worst %.3f, least %.2e\n",
           half.n_cases, half.worst_ratio, half.least_engaged, tf32.n_cases, tf32.worst_ratio,
           tf32.least_engaged);
    zt_status s = zt_backend_set_gemm_precision(ref, ZT_GEMM_TF32);
    ZT_CHECK(s == ZT_ERR_UNAVAILABLE && strstr(zt_last_error(), "--gemm tf32") != NULL &&
                 ref->gemm == ZT_GEMM_F32,
             "cpu accepted --gemm tf32 (%s: %s)", zt_status_name(s), zt_last_error());
}

#endif
