/* linear_batched (kernels/backend.h: q, k and v as one strided-batched GEMM) on a backend under
 * test, against the same backend's linear / linear_half_in called once per member. Shared by
 * tests/cudaemu (the executor and the CPU, where the batch must give the members' bits exactly)
 * and tests/gpu (the real cuBLASLt, whose batched kernel may sum in another order: NMSE 1e-10
 * against the members, where a missing bias or a member reading another's weight is O(1)).
 *
 * Cases: 3 members of a 300 x 96 -> 80 linear whose weights, biases and outputs lie evenly apart
 * with padding between them (as OPT's stored k, v, q and the layer buffers do), under
 *   f32 weights, --gemm f32;  f16 / bf16 weights, --gemm half, on an f32 input (rounded inside)
 *   and on an input already rounded;  f16 weights under --gemm f32 (widened per member);
 * bias none, in the weight's dtype, or f32 at a stride that is no multiple of 16 bytes (the
 * backend copies it); ReLU on and off; whole and in batch-invariant blocks of 70 rows. The
 * caller sets a linear chunk budget that cuts the rows into several chunks. Then the refusals,
 * each naming the op. */
#ifndef ZT_TEST_LINEAR_BATCHED_PARITY_H
#define ZT_TEST_LINEAR_BATCHED_PARITY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "parity_common.h"
#include "zt_test.h"

typedef struct zt_batched_case {
    const char *label;
    zt_dtype w_dtype, in_dtype;
    zt_gemm_precision gemm;
} zt_batched_case;

/* One case: every bias kind, ReLU, row blocking; exact (1) or NMSE 1e-10 (0) against the
 * members. Returns the worst NMSE seen. */
static double zt_batched_case_run(zt_backend *be, const zt_batched_case *c, zt_prng *r, int exact) {
    enum { COUNT = 3, ROWS = 300, IN = 96, OUT = 80 };
    /* padded strides, in elements: weights and outputs 64 past a member, f32 biases 81 */
    const size_t w_stride = (size_t)OUT * IN + 64, out_stride = (size_t)ROWS * OUT + 64;
    const size_t w_elem = zt_dtype_size(c->w_dtype), in_elem = zt_dtype_size(c->in_dtype);
    float *x = zt_random_floats(r, (size_t)ROWS * IN, 2.0f, 0.0f);
    void *w = zt_random_weight(r, COUNT * w_stride, c->w_dtype, 0.3f);
    void *bias_same = zt_random_weight(r, COUNT * (size_t)128, c->w_dtype, 0.5f);
    float *bias_f32 = zt_random_floats(r, COUNT * (size_t)(OUT + 1), 0.5f, 0.0f);
    void *x_in = x;
    if (c->in_dtype != ZT_F32) { /* the input as round_half would store it */
        x_in = malloc((size_t)ROWS * IN * in_elem);
        for (size_t i = 0; i < (size_t)ROWS * IN; i++)
            zt_store_rne(x_in, c->in_dtype, i, x[i]);
    }
    const size_t out_bytes = (COUNT * out_stride) * sizeof(float);
    float *want = (float *)malloc(out_bytes), *got = (float *)malloc(out_bytes);
    double worst = 0.0;
    zt_pbuf bx, bw, bbs, bbf, by1, by2;
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, c->gemm));
    if (zt_pbuf_make(be, &bx, x_in, (size_t)ROWS * IN * in_elem, "x") &&
        zt_pbuf_make(be, &bw, w, COUNT * w_stride * w_elem, "w") &&
        zt_pbuf_make(be, &bbs, bias_same, COUNT * (size_t)128 * w_elem, "bias (weight dtype)") &&
        zt_pbuf_make(be, &bbf, bias_f32, COUNT * (size_t)(OUT + 1) * sizeof(float), "bias (f32)") &&
        zt_pbuf_make(be, &by1, NULL, out_bytes, "members' out") &&
        zt_pbuf_make(be, &by2, NULL, out_bytes, "batched out")) {
        const zt_weight wt = {zt_pbuf_ptr(&bw), c->w_dtype};
        const zt_weight biases[3] = {
            {NULL, ZT_F32}, {zt_pbuf_ptr(&bbs), c->w_dtype}, {zt_pbuf_ptr(&bbf), ZT_F32}};
        const size_t bias_strides[3] = {0, 128, OUT + 1};
        /* the members' outputs: padding keeps NaN bytes in both buffers alike */
        for (int block = 0; block < 2; block++) {
            be->gemm_row_block = block ? 70 : 0;
            for (int bi = 0; bi < 3; bi++)
                for (int relu = 0; relu < 2; relu++) {
                    for (int i = 0; i < COUNT; i++) {
                        zt_weight wi = wt, b_i = biases[bi];
                        wi.data = (const char *)wt.data + (size_t)i * w_stride * w_elem;
                        if (b_i.data)
                            b_i.data = (const char *)b_i.data +
                                       (size_t)i * bias_strides[bi] * zt_dtype_size(b_i.dtype);
                        float *out_i = (float *)zt_pbuf_ptr(&by1) + (size_t)i * out_stride;
                        ZT_CHECK_OK(c->in_dtype == ZT_F32
                                        ? be->ops->linear(be, out_i, zt_pbuf_ptr(&bx), wi, b_i,
                                                          ROWS, IN, OUT, relu)
                                        : be->ops->linear_half_in(be, out_i, zt_pbuf_ptr(&bx), wi,
                                                                  b_i, ROWS, IN, OUT, relu));
                    }
                    ZT_CHECK_OK(be->ops->linear_batched(
                        be, (float *)zt_pbuf_ptr(&by2), out_stride, zt_pbuf_ptr(&bx), c->in_dtype,
                        wt, w_stride, biases[bi], bias_strides[bi], COUNT, ROWS, IN, OUT, relu));
                    zt_pbuf_fetch(&by1, want, "members");
                    zt_pbuf_fetch(&by2, got, "linear_batched");
                    int same = 1;
                    double nmse = 0.0;
                    for (int i = 0; i < COUNT; i++) {
                        const size_t at = (size_t)i * out_stride, n = (size_t)ROWS * OUT;
                        same &= memcmp(got + at, want + at, n * sizeof(float)) == 0;
                        const double e = zt_nmse(got + at, want + at, n);
                        if (e > nmse) nmse = e;
                    }
                    if (nmse > worst) worst = nmse;
                    printf("  %-8s linear_batched %-22s bias %-4s relu %d row blocks %3d: %s "
                           "(nmse %.2e)\n",
                           be->ops->name, c->label,
                           bi == 0 ? "none" : zt_dtype_name(biases[bi].dtype), relu,
                           be->gemm_row_block, same ? "the members' bits" : "differs", nmse);
                    ZT_CHECK(exact ? same : nmse <= 1e-10,
                             "%s linear_batched %s bias %d relu %d block %d: nmse %.3g%s",
                             be->ops->name, c->label, bi, relu, be->gemm_row_block, nmse,
                             exact ? ", bits differ" : "");
                }
        }
        be->gemm_row_block = 0;
    }
    zt_pbuf_free(&bx);
    zt_pbuf_free(&bw);
    zt_pbuf_free(&bbs);
    zt_pbuf_free(&bbf);
    zt_pbuf_free(&by1);
    zt_pbuf_free(&by2);
    ZT_CHECK_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_F32));
    if (x_in != x) free(x_in);
    free(x);
    free(w);
    free(bias_same);
    free(bias_f32);
    free(want);
    free(got);
    return worst;
}

/* Arguments linear_batched refuses, each message naming the op and what is wrong. */
static void zt_batched_refusals(zt_backend *be) {
    zt_pbuf bx, bw, by;
    if (zt_pbuf_make(be, &bx, NULL, 64 * sizeof(float), "x") &&
        zt_pbuf_make(be, &bw, NULL, 256 * sizeof(float), "w") &&
        zt_pbuf_make(be, &by, NULL, 256 * sizeof(float), "out")) {
        const zt_weight w = {zt_pbuf_ptr(&bw), ZT_F32}, none = {NULL, ZT_F32};
        float *out = (float *)zt_pbuf_ptr(&by);
        /* 4 rows of 8 -> 4: members of 16 outputs and 32 weights */
        ZT_CHECK(be->ops->linear_batched(be, out, 16, zt_pbuf_ptr(&bx), ZT_F32, w, 32, none, 0, 0,
                                         4, 8, 4, 0) == ZT_ERR_INVALID_ARG,
                 "%s: count 0 accepted", be->ops->name);
        ZT_CHECK(strstr(zt_last_error(), "linear_batched: count") == zt_last_error(),
                 "%s: message \"%s\"", be->ops->name, zt_last_error());
        ZT_CHECK(be->ops->linear_batched(be, out, 8, zt_pbuf_ptr(&bx), ZT_F32, w, 32, none, 0, 3, 4,
                                         8, 4, 0) == ZT_ERR_INVALID_ARG,
                 "%s: overlapping outputs accepted", be->ops->name);
        ZT_CHECK(strcmp(zt_last_error(), "linear_batched: strides out 8, weight 32, bias 0 "
                                         "overlap the members (16, 32, 4 elements)") == 0,
                 "%s: message \"%s\"", be->ops->name, zt_last_error());
        ZT_CHECK(be->ops->linear_batched(be, out, 16, zt_pbuf_ptr(&bx), ZT_BF16, w, 32, none, 0, 3,
                                         4, 8, 4, 0) == ZT_ERR_INVALID_ARG,
                 "%s: a bf16 input to f32 weights accepted", be->ops->name);
        ZT_CHECK(strcmp(zt_last_error(),
                        "linear_batched: input dtype BF16 is neither f32 nor the weight's F32") ==
                     0,
                 "%s: message \"%s\"", be->ops->name, zt_last_error());
    }
    zt_pbuf_free(&bx);
    zt_pbuf_free(&bw);
    zt_pbuf_free(&by);
}

/* Every case on `be`; exact on the CPU and the executor, NMSE-bounded on a real GPU. */
static void zt_linear_batched_parity_run(zt_backend *be, int exact, uint64_t seed) {
    if (!be->ops->linear_batched) {
        printf("  %s has no linear_batched: the model runs q, k and v one by one\n", be->ops->name);
        return;
    }
    zt_prng r = {seed ^ 0x9e3779b97f4a7c15ull};
    const zt_batched_case cases[] = {
        {"f32, --gemm f32", ZT_F32, ZT_F32, ZT_GEMM_F32},
        {"f16, --gemm half", ZT_F16, ZT_F32, ZT_GEMM_HALF},
        {"f16 rounded, half", ZT_F16, ZT_F16, ZT_GEMM_HALF},
        {"bf16 rounded, half", ZT_BF16, ZT_BF16, ZT_GEMM_HALF},
        {"f16 widened, --gemm f32", ZT_F16, ZT_F32, ZT_GEMM_F32},
    };
    double worst = 0.0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const double e = zt_batched_case_run(be, &cases[i], &r, exact);
        if (e > worst) worst = e;
    }
    zt_batched_refusals(be);
    printf("  %s linear_batched: %zu cases, worst nmse against the members %.2e\n", be->ops->name,
           sizeof cases / sizeof cases[0], worst);
}

#endif
