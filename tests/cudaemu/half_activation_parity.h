/* Half activations (kernels/backend.h: round_half, layernorm_half, linear_half_in,
 * linear_half_out; docs/design.md §4.3) on any backend: the host executor's CUDA kernels and the
 * CPU (test_cuda_half_activations_emu), a real GPU (tests/gpu/test_gpu_half_activations). Under
 * --gemm half a linear with an f16/bf16 weight rounds its f32 input to the weight's dtype; these
 * ops let the model round an input once for q, k and v, let a pre-LN layer norm write it rounded,
 * and let fc1 write fc2's input rounded. Rounding is deterministic, so on the CPU and the executor
 * everything here is bit equality, never a tolerance:
 *   - round_half against common/dtype.h's software rounding, element by element, specials too;
 *   - layernorm_half against layernorm's f32 output rounded on the host;
 *   - linear_half_in on round_half's output against linear on the f32 input, with and without
 *     bias and ReLU, across several activation chunks and batch-invariant row blocks;
 *   - linear_half_out against round_half(linear_half_in), the same cases (a real GPU: at most one
 *     half ulp apart, half_out_exact below);
 *   - the whole OPT forward (K = 3 variants, two of them perturbed and staged), pre-LN f16 and
 *     bf16 fixtures, post-LN f16 / bf16 random models and the f16 fixture with LoRA on q and v
 *     (its adapters perturbed): logits and log-probabilities with the half-activation ops against
 *     the same backend with those slots cleared (the model then rounds in every linear, as
 *     before), and op counts showing which path ran: per layer and variant 3 rounding passes
 *     instead of 6.
 * Arguments a half-activation op cannot take are refused with the op's name. */
#ifndef ZT_TEST_HALF_ACTIVATION_PARITY_H
#define ZT_TEST_HALF_ACTIVATION_PARITY_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "fixture.h"
#include "lora.h"
#include "data/targets.h"
#include "opt/opt.h"
#include "opt/opt_config.h"
#include "parity_common.h"
#include "zt_test.h"

// ---- counting op table: the real ops, counted ----

static const zt_backend_ops *real_ops;
static struct {
    long linear_half_weight; /* linear with an f16/bf16 weight: rounds its input itself */
    long round_half, layernorm_half, linear_half_in, linear_half_out;
} counts;

/* 1: linear_half_out must give round_half(linear_half_in)'s bits (the CPU, the executor). 0 (a
 * real GPU): cuBLASLt rounds in the epilogue of a GEMM chosen for a half D, whose f32 sum may
 * differ in its last bits; each element then may differ by one unit in the last place of the
 * half dtype, and the fused forward stays within a bound of the unfused one. */
static int half_out_exact = 1;

static zt_status count_linear(zt_backend *be, float *out, const float *in, zt_weight w,
                              zt_weight bias, int n_rows, int in_features, int out_features,
                              int relu) {
    if (w.dtype != ZT_F32) counts.linear_half_weight++;
    return real_ops->linear(be, out, in, w, bias, n_rows, in_features, out_features, relu);
}

static zt_status count_round_half(zt_backend *be, void *dst, zt_dtype dtype, const float *src,
                                  size_t n_elems) {
    counts.round_half++;
    return real_ops->round_half(be, dst, dtype, src, n_elems);
}

static zt_status count_layernorm_half(zt_backend *be, void *out, zt_dtype out_dtype,
                                      const float *in, zt_weight gamma, zt_weight beta, int n_rows,
                                      int n_cols, float eps) {
    counts.layernorm_half++;
    return real_ops->layernorm_half(be, out, out_dtype, in, gamma, beta, n_rows, n_cols, eps);
}

static zt_status count_linear_half_in(zt_backend *be, float *out, const void *in, zt_weight w,
                                      zt_weight bias, int n_rows, int in_features, int out_features,
                                      int relu) {
    counts.linear_half_in++;
    return real_ops->linear_half_in(be, out, in, w, bias, n_rows, in_features, out_features, relu);
}

/* a batch counts as its members: each rounds its f32 input (a half weight), or takes a half one */
static zt_status count_linear_batched(zt_backend *be, float *out, size_t out_stride, const void *in,
                                      zt_dtype in_dtype, zt_weight w, size_t w_stride,
                                      zt_weight bias, size_t bias_stride, int count, int n_rows,
                                      int in_features, int out_features, int relu) {
    if (in_dtype != ZT_F32)
        counts.linear_half_in += count;
    else if (w.dtype != ZT_F32)
        counts.linear_half_weight += count;
    return real_ops->linear_batched(be, out, out_stride, in, in_dtype, w, w_stride, bias,
                                    bias_stride, count, n_rows, in_features, out_features, relu);
}

static zt_status count_linear_half_out(zt_backend *be, void *out, const void *in, zt_weight w,
                                       zt_weight bias, int n_rows, int in_features,
                                       int out_features, int relu) {
    counts.linear_half_out++;
    return real_ops->linear_half_out(be, out, in, w, bias, n_rows, in_features, out_features, relu);
}

// ---- the ops ----

static size_t half_bytes(size_t n) {
    return n * 2;
}

static void check_round_half(zt_backend *be, zt_dtype dtype) {
    const char *name = zt_dtype_name(dtype);
    zt_prng r = {0x4a1f + (uint64_t)dtype};
    const size_t n = 1000;
    float *x = zt_random_floats(&r, n, 3.0f, 0.0f);
    /* specials: zeros, overflow to infinity, infinities, subnormals of both dtypes, ties */
    const float special[] = {0.0f,
                             -0.0f,
                             1e6f,
                             -7e4f,
                             65504.0f,
                             65520.0f,
                             1e38f,
                             3.4e38f,
                             1.0f / 0.0f,
                             -1.0f / 0.0f,
                             6e-8f,
                             -3e-6f,
                             1e-39f,
                             1.0f + 1.0f / 2048,
                             1.0f + 3.0f / 2048,
                             1.0f + 1.0f / 256};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        x[i * 37] = special[i];
    for (size_t i = 500; i < n; i++) /* a wide exponent range */
        x[i] *= ldexpf(1.0f, (int)(i % 60) - 30);
    uint16_t *want = malloc(half_bytes(n));
    for (size_t i = 0; i < n; i++)
        zt_store_rne(want, dtype, i, x[i]);
    zt_pbuf bx, bd;
    if (zt_pbuf_make(be, &bx, x, n * sizeof(float), "x") &&
        zt_pbuf_make(be, &bd, NULL, half_bytes(n), "dst")) {
        ZT_CHECK_OK(be->ops->round_half(be, zt_pbuf_ptr(&bd), dtype, zt_pbuf_ptr(&bx), n));
        uint16_t *got = malloc(half_bytes(n));
        zt_pbuf_fetch(&bd, got, "round_half");
        size_t differ = 0;
        for (size_t i = 0; i < n; i++)
            differ += got[i] != want[i];
        printf("  %-8s round_half %s: %zu of %zu elements differ from dtype.h's rounding\n",
               be->ops->name, name, differ, n);
        ZT_CHECK(differ == 0, "%s round_half %s: %zu elements differ", be->ops->name, name, differ);
        zt_pbuf_check_input(&bx, x, "round_half");
        free(got);
        zt_pbuf_free(&bd);
    }
    zt_pbuf_free(&bx);
    free(want);
    free(x);
}

static void check_layernorm_half(zt_backend *be, zt_dtype dtype) {
    const char *name = zt_dtype_name(dtype);
    zt_prng r = {0x1a7e + (uint64_t)dtype};
    const int rows = 37, cols = 96;
    const size_t n = (size_t)rows * cols;
    float *x = zt_random_floats(&r, n, 2.0f, 0.5f);
    void *gamma = zt_random_weight(&r, cols, dtype, 1.5f);
    void *beta = zt_random_weight(&r, cols, dtype, 0.5f);
    zt_pbuf bx, bg, bb, bf, bh;
    float *f32 = malloc(n * sizeof(float));
    uint16_t *got = malloc(half_bytes(n)), *want = malloc(half_bytes(n));
    if (zt_pbuf_make(be, &bx, x, n * sizeof(float), "x") &&
        zt_pbuf_make(be, &bg, gamma, cols * 2, "gamma") &&
        zt_pbuf_make(be, &bb, beta, cols * 2, "beta") &&
        zt_pbuf_make(be, &bf, NULL, n * sizeof(float), "f32 out") &&
        zt_pbuf_make(be, &bh, NULL, half_bytes(n), "half out")) {
        const zt_weight g = {zt_pbuf_ptr(&bg), dtype}, b = {zt_pbuf_ptr(&bb), dtype};
        ZT_CHECK_OK(
            be->ops->layernorm(be, zt_pbuf_ptr(&bf), zt_pbuf_ptr(&bx), g, b, rows, cols, 1e-5f));
        ZT_CHECK_OK(be->ops->layernorm_half(be, zt_pbuf_ptr(&bh), dtype, zt_pbuf_ptr(&bx), g, b,
                                            rows, cols, 1e-5f));
        zt_pbuf_fetch(&bf, f32, "layernorm");
        zt_pbuf_fetch(&bh, got, "layernorm_half");
        for (size_t i = 0; i < n; i++)
            zt_store_rne(want, dtype, i, f32[i]);
        const size_t differ = (size_t)(memcmp(got, want, half_bytes(n)) != 0);
        printf("  %-8s layernorm_half %s (%d x %d): %s layernorm's output rounded\n", be->ops->name,
               name, rows, cols, differ ? "DIFFERS from" : "equals");
        ZT_CHECK(!differ, "%s layernorm_half %s differs from layernorm rounded", be->ops->name,
                 name);
        zt_pbuf_check_input(&bx, x, "layernorm_half");
    }
    zt_pbuf_free(&bx);
    zt_pbuf_free(&bg);
    zt_pbuf_free(&bb);
    zt_pbuf_free(&bf);
    zt_pbuf_free(&bh);
    free(f32);
    free(got);
    free(want);
    free(x);
    free(gamma);
    free(beta);
}

/* linear_half_in on round_half(x) against linear on x: rows (300) cut into several chunks by the
 * executor's budget set below, and again in batch-invariant blocks of 70 rows. */
static void check_linear_half_in(zt_backend *be, zt_dtype dtype) {
    const char *name = zt_dtype_name(dtype);
    zt_prng r = {0x11ea + (uint64_t)dtype};
    const int rows = 300, in_f = 96, out_f = 80;
    float *x = zt_random_floats(&r, (size_t)rows * in_f, 2.0f, 0.0f);
    void *w = zt_random_weight(&r, (size_t)out_f * in_f, dtype, 0.3f);
    void *bias_half = zt_random_weight(&r, out_f, dtype, 0.5f);
    float *bias_f32 = zt_random_floats(&r, out_f, 0.5f, 0.0f);
    const size_t out_bytes = (size_t)rows * out_f * sizeof(float);
    float *want = malloc(out_bytes), *got = malloc(out_bytes);
    zt_pbuf bx, bh, bw, bbh, bbf, by1, by2;
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_HALF));
    if (zt_pbuf_make(be, &bx, x, (size_t)rows * in_f * sizeof(float), "x") &&
        zt_pbuf_make(be, &bh, NULL, half_bytes((size_t)rows * in_f), "x rounded") &&
        zt_pbuf_make(be, &bw, w, half_bytes((size_t)out_f * in_f), "w") &&
        zt_pbuf_make(be, &bbh, bias_half, half_bytes(out_f), "half bias") &&
        zt_pbuf_make(be, &bbf, bias_f32, out_f * sizeof(float), "f32 bias") &&
        zt_pbuf_make(be, &by1, NULL, out_bytes, "linear out") &&
        zt_pbuf_make(be, &by2, NULL, out_bytes, "linear_half_in out")) {
        ZT_CHECK_OK(be->ops->round_half(be, zt_pbuf_ptr(&bh), dtype, zt_pbuf_ptr(&bx),
                                        (size_t)rows * in_f));
        const zt_weight wt = {zt_pbuf_ptr(&bw), dtype};
        const zt_weight biases[3] = {
            {NULL, ZT_F32}, {zt_pbuf_ptr(&bbh), dtype}, {zt_pbuf_ptr(&bbf), ZT_F32}};
        for (int block = 0; block < 2; block++) {
            be->gemm_row_block = block ? 70 : 0;
            for (int bi = 0; bi < 3; bi++)
                for (int relu = 0; relu < 2; relu++) {
                    ZT_CHECK_OK(be->ops->linear(be, zt_pbuf_ptr(&by1), zt_pbuf_ptr(&bx), wt,
                                                biases[bi], rows, in_f, out_f, relu));
                    ZT_CHECK_OK(be->ops->linear_half_in(be, zt_pbuf_ptr(&by2), zt_pbuf_ptr(&bh), wt,
                                                        biases[bi], rows, in_f, out_f, relu));
                    zt_pbuf_fetch(&by1, want, "linear");
                    zt_pbuf_fetch(&by2, got, "linear_half_in");
                    const int same = memcmp(got, want, out_bytes) == 0;
                    printf("  %-8s linear_half_in %s %d x %d -> %d, bias %s, relu %d, row blocks "
                           "%d: %s\n",
                           be->ops->name, name, rows, in_f, out_f,
                           bi == 0 ? "none" : zt_dtype_name(biases[bi].dtype), relu,
                           be->gemm_row_block, same ? "linear's bits" : "DIFFERS from linear");
                    ZT_CHECK(same, "%s linear_half_in %s bias %d relu %d block %d differs",
                             be->ops->name, name, bi, relu, be->gemm_row_block);
                }
        }
        be->gemm_row_block = 0;

        /* refusals, each naming its op */
        ZT_CHECK_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_F32));
        ZT_CHECK(be->ops->linear_half_in(be, zt_pbuf_ptr(&by2), zt_pbuf_ptr(&bh), wt, biases[0],
                                         rows, in_f, out_f, 0) == ZT_ERR_INVALID_ARG,
                 "%s: linear_half_in under --gemm f32 accepted", be->ops->name);
        ZT_CHECK(
            strcmp(zt_last_error(), "linear_half_in: a half input needs --gemm half, not f32") == 0,
            "%s: message \"%s\"", be->ops->name, zt_last_error());
        ZT_CHECK_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_HALF));
        const zt_weight f32_weight = {zt_pbuf_ptr(&bbf), ZT_F32};
        ZT_CHECK(be->ops->linear_half_in(be, zt_pbuf_ptr(&by2), zt_pbuf_ptr(&bh), f32_weight,
                                         biases[0], 1, 1, 1, 0) == ZT_ERR_INVALID_ARG,
                 "%s: linear_half_in with an f32 weight accepted", be->ops->name);
        ZT_CHECK(strcmp(zt_last_error(), "linear_half_in: weight dtype 0 is not f16 or bf16") == 0,
                 "%s: message \"%s\"", be->ops->name, zt_last_error());
        ZT_CHECK(be->ops->round_half(be, zt_pbuf_ptr(&bh), ZT_F32, zt_pbuf_ptr(&bx), 4) ==
                     ZT_ERR_INVALID_ARG,
                 "%s: round_half to f32 accepted", be->ops->name);
        ZT_CHECK(strcmp(zt_last_error(), "round_half: dst dtype 0 is not f16 or bf16") == 0,
                 "%s: message \"%s\"", be->ops->name, zt_last_error());
        ZT_CHECK(be->ops->layernorm_half(be, zt_pbuf_ptr(&bx), dtype, zt_pbuf_ptr(&bx), biases[0],
                                         biases[0], 2, 4, 1e-5f) == ZT_ERR_INVALID_ARG,
                 "%s: layernorm_half in place accepted", be->ops->name);
        ZT_CHECK(strcmp(zt_last_error(), "layernorm_half: out overlaps in") == 0,
                 "%s: message \"%s\"", be->ops->name, zt_last_error());
    }
    zt_pbuf_free(&bx);
    zt_pbuf_free(&bh);
    zt_pbuf_free(&bw);
    zt_pbuf_free(&bbh);
    zt_pbuf_free(&bbf);
    zt_pbuf_free(&by1);
    zt_pbuf_free(&by2);
    ZT_CHECK_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_F32));
    free(x);
    free(w);
    free(bias_half);
    free(bias_f32);
    free(want);
    free(got);
}

/* Distance in units in the last place between two halves of one dtype, by their order as
 * sign-magnitude integers; NaNs compare equal to each other only. */
static long half_ulps(uint16_t a, uint16_t b) {
    const long ka = a & 0x8000u ? -(long)(a & 0x7fffu) : (long)a;
    const long kb = b & 0x8000u ? -(long)(b & 0x7fffu) : (long)b;
    return ka > kb ? ka - kb : kb - ka;
}

/* linear_half_out on a half input against round_half(linear_half_in) on the same input: bias
 * none or in w's dtype, ReLU on and off, several activation chunks and batch-invariant blocks. */
static void check_linear_half_out(zt_backend *be, zt_dtype dtype) {
    const char *name = zt_dtype_name(dtype);
    zt_prng r = {0x0f1c + (uint64_t)dtype};
    const int rows = 300, in_f = 96, out_f = 144;
    const size_t n_out = (size_t)rows * out_f;
    float *x = zt_random_floats(&r, (size_t)rows * in_f, 2.0f, 0.0f);
    void *w = zt_random_weight(&r, (size_t)out_f * in_f, dtype, 0.3f);
    void *bias_half = zt_random_weight(&r, out_f, dtype, 0.5f);
    uint16_t *want = malloc(half_bytes(n_out)), *got = malloc(half_bytes(n_out));
    zt_pbuf bx, bh, bw, bb, bf, by1, by2;
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_HALF));
    if (zt_pbuf_make(be, &bx, x, (size_t)rows * in_f * sizeof(float), "x") &&
        zt_pbuf_make(be, &bh, NULL, half_bytes((size_t)rows * in_f), "x rounded") &&
        zt_pbuf_make(be, &bw, w, half_bytes((size_t)out_f * in_f), "w") &&
        zt_pbuf_make(be, &bb, bias_half, half_bytes(out_f), "half bias") &&
        zt_pbuf_make(be, &bf, NULL, n_out * sizeof(float), "linear_half_in out") &&
        zt_pbuf_make(be, &by1, NULL, half_bytes(n_out), "rounded out") &&
        zt_pbuf_make(be, &by2, NULL, half_bytes(n_out), "linear_half_out out")) {
        ZT_CHECK_OK(be->ops->round_half(be, zt_pbuf_ptr(&bh), dtype, zt_pbuf_ptr(&bx),
                                        (size_t)rows * in_f));
        const zt_weight wt = {zt_pbuf_ptr(&bw), dtype};
        const zt_weight biases[2] = {{NULL, ZT_F32}, {zt_pbuf_ptr(&bb), dtype}};
        for (int block = 0; block < 2; block++) {
            be->gemm_row_block = block ? 70 : 0;
            for (int bi = 0; bi < 2; bi++)
                for (int relu = 0; relu < 2; relu++) {
                    ZT_CHECK_OK(be->ops->linear_half_in(be, zt_pbuf_ptr(&bf), zt_pbuf_ptr(&bh), wt,
                                                        biases[bi], rows, in_f, out_f, relu));
                    ZT_CHECK_OK(
                        be->ops->round_half(be, zt_pbuf_ptr(&by1), dtype, zt_pbuf_ptr(&bf), n_out));
                    ZT_CHECK_OK(be->ops->linear_half_out(be, zt_pbuf_ptr(&by2), zt_pbuf_ptr(&bh),
                                                         wt, biases[bi], rows, in_f, out_f, relu));
                    zt_pbuf_fetch(&by1, want, "round_half");
                    zt_pbuf_fetch(&by2, got, "linear_half_out");
                    size_t differ = 0, zeros = 0;
                    long worst = 0;
                    for (size_t i = 0; i < n_out; i++) {
                        const long u = half_ulps(got[i], want[i]);
                        differ += u != 0;
                        zeros += (want[i] & 0x7fffu) == 0;
                        if (u > worst) worst = u;
                    }
                    printf("  %-8s linear_half_out %s %d x %d -> %d, bias %s, relu %d, row blocks "
                           "%d: %zu of %zu elements differ from linear_half_in rounded (worst %ld "
                           "ulp), %zu zeros\n",
                           be->ops->name, name, rows, in_f, out_f, bi ? name : "none", relu,
                           be->gemm_row_block, differ, n_out, worst, zeros);
                    ZT_CHECK(half_out_exact ? differ == 0 : worst <= 1,
                             "%s linear_half_out %s bias %d relu %d block %d: %zu differ, worst "
                             "%ld ulp",
                             be->ops->name, name, bi, relu, be->gemm_row_block, differ, worst);
                    /* the ReLU's zeros are there: a third or more of the outputs */
                    ZT_CHECK(!relu || zeros * 3 > n_out, "%s linear_half_out: %zu zeros with ReLU",
                             be->ops->name, zeros);
                }
        }
        be->gemm_row_block = 0;

        /* refusals, each naming its op */
        const zt_weight f32_bias = {zt_pbuf_ptr(&bf), ZT_F32};
        ZT_CHECK(be->ops->linear_half_out(be, zt_pbuf_ptr(&by2), zt_pbuf_ptr(&bh), wt, f32_bias,
                                          rows, in_f, out_f, 1) == ZT_ERR_INVALID_ARG,
                 "%s: linear_half_out with an f32 bias accepted", be->ops->name);
        char msg[128];
        snprintf(msg, sizeof msg, "linear_half_out: bias dtype F32 differs from the weight's %s",
                 name);
        ZT_CHECK(strcmp(zt_last_error(), msg) == 0, "%s: message \"%s\"", be->ops->name,
                 zt_last_error());
        ZT_CHECK(be->ops->linear_half_out(be, zt_pbuf_ptr(&bh), zt_pbuf_ptr(&bh), wt, biases[0],
                                          rows, in_f, out_f, 0) == ZT_ERR_INVALID_ARG,
                 "%s: linear_half_out in place accepted", be->ops->name);
        ZT_CHECK(strstr(zt_last_error(), "linear_half_out: out") == zt_last_error(),
                 "%s: message \"%s\"", be->ops->name, zt_last_error());
        ZT_CHECK_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_F32));
        ZT_CHECK(be->ops->linear_half_out(be, zt_pbuf_ptr(&by2), zt_pbuf_ptr(&bh), wt, biases[0],
                                          rows, in_f, out_f, 0) == ZT_ERR_INVALID_ARG,
                 "%s: linear_half_out under --gemm f32 accepted", be->ops->name);
        ZT_CHECK(strcmp(zt_last_error(),
                        "linear_half_out: a half input needs --gemm half, not f32") == 0,
                 "%s: message \"%s\"", be->ops->name, zt_last_error());
    }
    zt_pbuf_free(&bx);
    zt_pbuf_free(&bh);
    zt_pbuf_free(&bw);
    zt_pbuf_free(&bb);
    zt_pbuf_free(&bf);
    zt_pbuf_free(&by1);
    zt_pbuf_free(&by2);
    ZT_CHECK_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_F32));
    free(x);
    free(w);
    free(bias_half);
    free(want);
    free(got);
}

// ---- the model ----

typedef struct model_case {
    const char *label;
    const char *fixture; /* loaded from tests/fixtures, or NULL: a random model */
    const char *config;  /* the random model's config.json (fixture name) */
    zt_dtype dtype;      /* the random model's */
    const char *lora;    /* a LoRA adapter fixture loaded onto the model, or NULL */
} model_case;

static zt_model *open_model(zt_backend *be, const model_case *mc) {
    char dir[1024];
    zt_model *m = NULL;
    if (mc->fixture && mc->lora) {
        char adapter[1024];
        fixture_path(dir, sizeof dir, mc->fixture, NULL);
        fixture_path(adapter, sizeof adapter, mc->lora, NULL);
        zt_lora_options o;
        zt_lora_options_default(&o);
        ZT_REQUIRE_OK(zt_lora_read_config(adapter, &o));
        o.adapter_dir = adapter;
        ZT_REQUIRE_OK(zt_model_load_peft(dir, be, &o, &m));
    } else if (mc->fixture) {
        fixture_path(dir, sizeof dir, mc->fixture, NULL);
        ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    } else {
        fixture_path(dir, sizeof dir, mc->config, "config.json");
        zt_opt_config cfg;
        ZT_REQUIRE_OK(zt_opt_config_load(dir, &cfg));
        ZT_REQUIRE_OK(zt_model_create_random(&zt_opt_arch, &cfg, mc->dtype, 77, be, &m));
    }
    return m;
}

/* The K = 3 forward of the fixture LM batch under --gemm half: logits and log-probabilities. */
static void forward(zt_backend *be, const model_case *mc, const zt_batch *b, float *logprobs,
                    float *logits) {
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_HALF));
    zt_model *m = open_model(be, mc);
    const zt_direction plus = {0x5eedULL, 1e-2f}, minus = {0x5eedULL, -1e-2f};
    const zt_perturbation p[3] = {{NULL, 0, ZT_DIST_GAUSSIAN, 1.0f},
                                  {&plus, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                  {&minus, 1, ZT_DIST_GAUSSIAN, 1.0f}};
    /* with adapters, the variants perturb only them (the base weights read as stored) */
    uint8_t *perturbed = NULL;
    if (m->lora) {
        perturbed = calloc((size_t)m->n_tensors, 1);
        zt_lora_select(m, perturbed);
    }
    const zt_variants v = {3, p, perturbed};
    zt_workspace_shape shape = {b->batch, b->seq_len, 3, 1, 0};
    zt_workspace *ws = NULL;
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    ZT_CHECK_OK(zt_model_forward(m, ws, b, &v, logprobs, logits));
    free(perturbed);
    zt_workspace_free(ws);
    zt_model_free(m);
}

static void check_model(zt_backend *be, const model_case *mc) {
    char ref_path[1024];
    const char *batch_fixture = mc->fixture ? mc->fixture : mc->config;
    fixture_path(ref_path, sizeof ref_path, batch_fixture, "reference.safetensors");
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));
    fixture_lm_batch lm = fixture_lm_batch_read(ref);
    const int batch = lm.batch, seq_len = lm.seq_len;
    zt_model *probe = open_model(be, mc);
    const int vocab = probe->dims.vocab_size, layers = probe->dims.n_layers;
    const int pre_ln = zt_opt_config_of(probe)->do_layer_norm_before;
    zt_model_free(probe);
    zt_targets targets;
    ZT_REQUIRE_OK(zt_targets_from_labels(batch, seq_len, lm.labels, vocab, &targets));
    const zt_batch b = {batch, seq_len, lm.ids, lm.mask, targets.n, targets.rows, targets.ids};
    const size_t k_r = (size_t)3 * targets.n;
    float *lp[2], *lg[2];
    long roundings[2], half_in[2], half_out[2], by_round_half = 0, by_layernorm = 0;

    const zt_backend_ops *own = be->ops;
    real_ops = own;
    zt_backend_ops counting = *own;
    counting.linear = count_linear;
    counting.round_half = count_round_half;
    counting.layernorm_half = count_layernorm_half;
    counting.linear_half_in = count_linear_half_in;
    counting.linear_half_out = count_linear_half_out;
    if (own->linear_batched) counting.linear_batched = count_linear_batched;
    zt_backend_ops plain = counting;
    plain.round_half = NULL;
    plain.layernorm_half = NULL;
    plain.linear_half_in = NULL;
    plain.linear_half_out = NULL;
    ZT_REQUIRE_OK(zt_backend_check_ops(&plain));
    for (int path = 0; path < 2; path++) {
        be->ops = path ? &counting : &plain;
        memset(&counts, 0, sizeof counts);
        lp[path] = malloc(k_r * sizeof(float));
        lg[path] = malloc(k_r * (size_t)vocab * sizeof(float));
        forward(be, mc, &b, lp[path], lg[path]);
        roundings[path] = counts.linear_half_weight + counts.round_half + counts.layernorm_half;
        half_in[path] = counts.linear_half_in;
        half_out[path] = counts.linear_half_out;
        if (path) {
            by_round_half = counts.round_half;
            by_layernorm = counts.layernorm_half;
        }
    }
    be->ops = own;
    const int same = memcmp(lp[0], lp[1], k_r * sizeof(float)) == 0 &&
                     memcmp(lg[0], lg[1], k_r * (size_t)vocab * sizeof(float)) == 0;
    double worst_lp = 0.0;
    for (size_t i = 0; i < k_r; i++)
        if (fabs((double)lp[0][i] - lp[1][i]) > worst_lp)
            worst_lp = fabs((double)lp[0][i] - lp[1][i]);
    /* per layer and variant: q, k, v, out, fc1, fc2 each round their input (6). With the ops one
     * rounding (a layer norm's or round_half) feeds q, k and v; one more (the FFN layer norm's,
     * or round_half post-LN) feeds fc1, which writes fc2's input rounded at once
     * (linear_half_out); out rounds as before: 3 passes. q, k, v and fc2 take half inputs. */
    const long lv = (long)layers * 3;
    const long want_half_in = 4 * lv, want_half_out = lv;
    /* q/k/v's input: the attention layer norm's rounded output (pre-LN), else round_half (post-LN,
     * or LoRA branches that read the f32 output too); fc1's: the FFN layer norm's (pre-LN), else
     * round_half */
    const long want_round_half = (!pre_ln ? 2 : mc->lora ? 1 : 0) * lv;
    const long want_layernorm = pre_ln ? (mc->lora ? 1 : 2) * lv : 0;
    printf("  %-8s %-24s K = 3: input roundings %ld -> %ld (%ld by layer norms, %ld by "
           "round_half), GEMMs on rounded inputs %ld, writing half %ld; log-probs and logits %s "
           "(log-probs differ by %.3g at most)\n",
           be->ops->name, mc->label, roundings[0], roundings[1], by_layernorm, by_round_half,
           half_in[1], half_out[1], same ? "bit for bit as before" : "DIFFER", worst_lp);
    /* a real GPU's half-D GEMM may flip a last bit of fc1's output: the log-probs then move by
     * far less than a half ulp of an activation could move them (1e-2 on these small models) */
    ZT_CHECK(half_out_exact ? same : worst_lp <= 1e-2, "%s %s: half activations changed the bits",
             be->ops->name, mc->label);
    ZT_CHECK(half_in[0] == 0 && half_in[1] == want_half_in, "%s %s: %ld / %ld half-input GEMMs",
             be->ops->name, mc->label, half_in[0], half_in[1]);
    ZT_CHECK(half_out[0] == 0 && half_out[1] == want_half_out,
             "%s %s: %ld / %ld half-output GEMMs, want %ld", be->ops->name, mc->label, half_out[0],
             half_out[1], want_half_out);
    ZT_CHECK(by_round_half == want_round_half && by_layernorm == want_layernorm,
             "%s %s: %ld round_half and %ld layernorm_half calls, want %ld and %ld", be->ops->name,
             mc->label, by_round_half, by_layernorm, want_round_half, want_layernorm);
    ZT_CHECK(roundings[0] - roundings[1] == 3 * lv, "%s %s: roundings %ld -> %ld, want %ld fewer",
             be->ops->name, mc->label, roundings[0], roundings[1], 3 * lv);
    for (int i = 0; i < 2; i++) {
        free(lp[i]);
        free(lg[i]);
    }
    zt_targets_free(&targets);
    fixture_lm_batch_free(&lm);
    zt_st_close(ref);
}

/* The three ops on be, f16 and bf16 (the caller sets a linear chunk budget that cuts 300 rows of
 * 96 halves into several chunks where the backend has one). */
static void zt_half_activation_ops(zt_backend *be) {
    const zt_dtype dtypes[2] = {ZT_F16, ZT_BF16};
    for (int d = 0; d < 2; d++) {
        check_round_half(be, dtypes[d]);
        check_layernorm_half(be, dtypes[d]);
        check_linear_half_in(be, dtypes[d]);
        check_linear_half_out(be, dtypes[d]);
    }
}

/* The half-mode forward with and without the ops, on the fixture and random models. */
static void zt_half_activation_models(zt_backend *be) {
    const model_case models[] = {
        {"opt-pre-f16", "opt-pre-f16", NULL, ZT_F16, NULL},
        {"opt-pre-bf16", "opt-pre-bf16", NULL, ZT_BF16, NULL},
        {"post-LN f16 (random)", NULL, "opt-post", ZT_F16, NULL},
        {"post-LN bf16 (random)", NULL, "opt-post", ZT_BF16, NULL},
        /* q and v read the f32 layer norm through their LoRA branches: round_half feeds q/k/v */
        {"opt-pre-f16 + LoRA q,v", "opt-pre-f16", NULL, ZT_F16, "opt-pre-lora"},
    };
    for (size_t c = 0; c < sizeof models / sizeof models[0]; c++)
        check_model(be, &models[c]);
}

#endif
