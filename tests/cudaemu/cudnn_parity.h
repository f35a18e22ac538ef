/* `attention` with --gemm half on a CUDA backend (the executor, which routes the cuDNN graph of
 * kernels/cuda/attention_cudnn.cu to the host interpreter of tests/cudaemu/cudaemu_cudnn.cpp, or a
 * real GPU with the real cuDNN), against the CPU backend's f32 attention:
 *   - head dims 64 and 128, B > 1, T not a multiple of 64, left padding (zotune's batches), f16
 *     and bf16: every output within a first-order bound derived from half rounding (below), and
 *     the queries before a sequence's first key exactly 0;
 *   - a head dim the stand-in's engines refuse (20: not a multiple of 8): the shape takes the f32
 *     kernel, bit for bit what --gemm f32 gives;
 *   - masks cuDNN cannot take (right padding, a hole in the middle, no key at all) beside
 *     left-padded sequences in one batch: those sequences bit for bit the f32 kernel's, the others
 *     within the bound;
 *   - the path counters (zt_cuda_backend_attention_paths) say which path each call took.
 *
 * The bound. q, k and v are rounded to the half dtype (unit roundoff u: 2^-11 f16, 2^-8 bf16;
 * q after the scale), the probabilities P once more before P V, and O once more. With
 * A_i = max_j scale sum_d |q_id k_jd| and V = max |v|: each score moves by at most 2 u A_i (+ u^2
 * terms), so each p_ij by at most p_ij (e^(4 u A_i) - 1) ~ 4 u A_i p_ij relative; then
 *   |o_id - ref| <= V (4 u A_i + u + u + u) + u |ref|     (v, P, O roundings)
 * which the test takes with a factor 1.25 and 1e-6 of f32 slack. A second, tighter check
 * (check_rounded_inputs) takes the input rounding out of the comparison. */
#ifndef ZT_CUDNN_PARITY_H
#define ZT_CUDNN_PARITY_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "cuda/cuda_backend.h"
#include "zt_test.h"

enum mask_kind { MASK_LEFT, MASK_NONE, MASK_RIGHT, MASK_HOLE, MASK_EMPTY };

static int32_t mask_value(enum mask_kind kind, int b, int j, int seq_len) {
    const int pad = (3 * b + 5) % (seq_len / 2 + 1); /* differs per sequence, 0 included */
    switch (kind) {
    case MASK_LEFT:
        return j >= pad;
    case MASK_NONE:
        return 1;
    case MASK_RIGHT:
        return j < seq_len - pad - 1;
    case MASK_HOLE:
        return j < seq_len / 3 || j >= 2 * seq_len / 3;
    case MASK_EMPTY:
        return 0;
    }
    return 1;
}

static uint64_t zt_cudnn_rng_state = 20261207;
static float uniform(void) { /* [-1, 1) */
    zt_cudnn_rng_state = zt_cudnn_rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(zt_cudnn_rng_state >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* Runs `attention` on be; out receives (B,T,C). */
static void run(zt_backend *be, const float *q, const float *k, const float *v, const int32_t *mask,
                float *out, int batch, int seq_len, int n_heads, int head_dim, const char *name) {
    const size_t n = (size_t)batch * seq_len * n_heads * head_dim;
    const size_t bytes = n * sizeof(float), mask_bytes = (size_t)batch * seq_len * sizeof(int32_t);
    void *d_q, *d_k, *d_v, *d_out, *d_mask;
    ZT_REQUIRE_OK(be->ops->alloc(be, bytes, ZT_MEM_ACTIVATIONS, &d_q));
    ZT_REQUIRE_OK(be->ops->alloc(be, bytes, ZT_MEM_ACTIVATIONS, &d_k));
    ZT_REQUIRE_OK(be->ops->alloc(be, bytes, ZT_MEM_ACTIVATIONS, &d_v));
    ZT_REQUIRE_OK(be->ops->alloc(be, bytes, ZT_MEM_ACTIVATIONS, &d_out));
    ZT_REQUIRE_OK(be->ops->alloc(be, mask_bytes, ZT_MEM_ACTIVATIONS, &d_mask));
    ZT_REQUIRE_OK(be->ops->upload(be, d_q, q, bytes));
    ZT_REQUIRE_OK(be->ops->upload(be, d_k, k, bytes));
    ZT_REQUIRE_OK(be->ops->upload(be, d_v, v, bytes));
    ZT_REQUIRE_OK(be->ops->upload(be, d_mask, mask, mask_bytes));
    /* NaN bits: any output element the op forgets to write shows up as a failure */
    float *poison = (float *)malloc(bytes);
    memset(poison, 0xff, bytes);
    ZT_REQUIRE_OK(be->ops->upload(be, d_out, poison, bytes));
    free(poison);
    const zt_status s = be->ops->attention(
        be, (float *)d_out, (const float *)d_q, (const float *)d_k, (const float *)d_v,
        (const int32_t *)d_mask, batch, seq_len, n_heads, head_dim, 1.0f / sqrtf((float)head_dim));
    ZT_CHECK(s == ZT_OK, "%s attention %s: %s", be->ops->name, name, zt_last_error());
    ZT_REQUIRE_OK(be->ops->download(be, out, d_out, bytes));
    be->ops->free(be, d_q, bytes, ZT_MEM_ACTIVATIONS);
    be->ops->free(be, d_k, bytes, ZT_MEM_ACTIVATIONS);
    be->ops->free(be, d_v, bytes, ZT_MEM_ACTIVATIONS);
    be->ops->free(be, d_out, bytes, ZT_MEM_ACTIVATIONS);
    be->ops->free(be, d_mask, mask_bytes, ZT_MEM_ACTIVATIONS);
}

typedef struct attention_case {
    int batch, seq_len, n_heads, head_dim;
    enum mask_kind masks[3]; /* sequence b's is masks[b % 3] */
} attention_case;

/* Checks sequence b of got against want within the bound; returns the worst error / bound. */
static double check_bounded(const attention_case *c, int b, const float *q, const float *k,
                            const float *v, const int32_t *mask, const float *got,
                            const float *want, double u, const char *name) {
    const int T = c->seq_len, H = c->n_heads, D = c->head_dim, C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    double worst = 0.0;
    int first = T;
    for (int j = 0; j < T; j++)
        if (mask[(size_t)b * T + j]) {
            first = j;
            break;
        }
    for (int h = 0; h < H; h++) {
        double v_max = 0.0;
        for (int j = 0; j < T; j++)
            for (int d = 0; d < D; d++)
                v_max = fmax(v_max, fabs(v[((size_t)b * T + j) * C + h * D + d]));
        for (int i = 0; i < T; i++) {
            const size_t row = ((size_t)b * T + i) * C + h * D;
            if (i < first) {
                for (int d = 0; d < D; d++)
                    ZT_CHECK(got[row + d] == 0.0f,
                             "%s: sequence %d head %d query %d before the first key: %g, not 0",
                             name, b, h, i, got[row + d]);
                continue;
            }
            double a = 0.0;
            for (int j = 0; j <= i; j++) {
                double dot = 0.0;
                for (int d = 0; d < D; d++)
                    dot += fabs(q[row + d] * k[((size_t)b * T + j) * C + h * D + d]);
                a = fmax(a, scale * dot);
            }
            for (int d = 0; d < D; d++) {
                const double bound =
                    1.25 * (v_max * (4.0 * u * a + 3.0 * u) + u * fabs(want[row + d])) + 1e-6;
                const double err = fabs((double)got[row + d] - want[row + d]);
                ZT_CHECK(err <= bound,
                         "%s: sequence %d head %d query %d dim %d: %.7g vs %.7g "
                         "(error %.3g > bound %.3g)",
                         name, b, h, i, d, got[row + d], want[row + d], err, bound);
                worst = fmax(worst, err / bound);
            }
        }
    }
    return worst;
}

/* Sequence b of got against attention computed in double on q * scale, k and v rounded to `half`
 * as the path rounds them: what is left is the rounding of P (u relative per probability, so
 * u sum_j p_j |v_j| <= u V) and of O (u |o|), and f32 arithmetic. Bound 1.25 u (V + |ref|) + 1e-5:
 * tight enough that a 1% error in the scores' scale fails it at these score magnitudes. Returns
 * the worst error / bound. */
static double check_rounded_inputs(const attention_case *c, int b, const float *q, const float *k,
                                   const float *v, const int32_t *mask, const float *got,
                                   zt_dtype half, double u, const char *name) {
    const int T = c->seq_len, H = c->n_heads, D = c->head_dim, C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    double worst = 0.0;
    int first = T;
    for (int j = 0; j < T; j++)
        if (mask[(size_t)b * T + j]) {
            first = j;
            break;
        }
    double *p = (double *)malloc((size_t)T * sizeof(double));
    for (int h = 0; h < H; h++) {
        double v_max = 0.0;
        for (int j = 0; j < T; j++)
            for (int d = 0; d < D; d++)
                v_max = fmax(v_max, fabs(v[((size_t)b * T + j) * C + h * D + d]));
        for (int i = first; i < T; i++) {
            const size_t row = ((size_t)b * T + i) * C + h * D;
            double m = -INFINITY, l = 0.0;
            for (int j = first; j <= i; j++) {
                double dot = 0.0;
                for (int d = 0; d < D; d++)
                    dot += (double)zt_round_through(half, q[row + d] * scale) *
                           zt_round_through(half, k[((size_t)b * T + j) * C + h * D + d]);
                p[j] = dot;
                m = fmax(m, dot);
            }
            for (int j = first; j <= i; j++) {
                p[j] = exp(p[j] - m);
                l += p[j];
            }
            for (int d = 0; d < D; d++) {
                double ref = 0.0;
                for (int j = first; j <= i; j++)
                    ref +=
                        p[j] / l * zt_round_through(half, v[((size_t)b * T + j) * C + h * D + d]);
                const double bound = 1.25 * u * (v_max + fabs(ref)) + 1e-5;
                const double err = fabs((double)got[row + d] - ref);
                ZT_CHECK(err <= bound,
                         "%s: sequence %d head %d query %d dim %d: %.7g vs %.7g on "
                         "the rounded inputs (error %.3g > bound %.3g)",
                         name, b, h, i, d, got[row + d], ref, err, bound);
                worst = fmax(worst, err / bound);
            }
        }
    }
    free(p);
    return worst;
}

typedef zt_status (*zt_cudnn_set_mode_fn)(zt_backend *, int);
typedef void (*zt_cudnn_paths_fn)(zt_backend *, zt_cuda_attention_path_counts *);

/* expect_cudnn: 1 the cuDNN path, 0 the f32 kernel, -1 whichever the library chose (a real
 * cuDNN's engines on a head dim the stand-in refuses); the path taken is checked accordingly. */
static void check_case(zt_backend *cpu, zt_backend *emu_half, zt_backend *emu_f32,
                       zt_cudnn_set_mode_fn set_mode, zt_cudnn_paths_fn paths,
                       const attention_case *c, zt_dtype half, int expect_cudnn) {
    const int T = c->seq_len, C = c->n_heads * c->head_dim;
    const size_t n = (size_t)c->batch * T * C;
    float *q = malloc(n * sizeof(float)), *k = malloc(n * sizeof(float)),
          *v = malloc(n * sizeof(float));
    float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float)),
          *f32_kernel = malloc(n * sizeof(float));
    int32_t *mask = malloc((size_t)c->batch * T * sizeof(int32_t));
    /* q and k in [-2, 2): scores of standard deviation ~1.3, a softmax far from uniform */
    for (size_t i = 0; i < n; i++) {
        q[i] = 2.0f * uniform();
        k[i] = 2.0f * uniform();
        v[i] = uniform();
    }
    for (int b = 0; b < c->batch; b++)
        for (int j = 0; j < T; j++)
            mask[(size_t)b * T + j] = mask_value(c->masks[b % 3], b, j, T);
    char name[128];
    snprintf(name, sizeof name, "B%d T%d H%d D%d %s masks %d/%d/%d", c->batch, T, c->n_heads,
             c->head_dim, half == ZT_BF16 ? "bf16" : "f16", c->masks[0], c->masks[1], c->masks[2]);

    /* set_mode NULL: the caller set the mode, and counts the paths itself */
    if (set_mode)
        ZT_REQUIRE_OK(
            set_mode(emu_half, half == ZT_BF16 ? ZT_CUDA_ATTENTION_BF16 : ZT_CUDA_ATTENTION_F16));
    zt_cuda_attention_path_counts before, after;
    paths(emu_half, &before);
    run(cpu, q, k, v, mask, want, c->batch, T, c->n_heads, c->head_dim, name);
    run(emu_half, q, k, v, mask, got, c->batch, T, c->n_heads, c->head_dim, name);
    run(emu_f32, q, k, v, mask, f32_kernel, c->batch, T, c->n_heads, c->head_dim, name);
    paths(emu_half, &after);
    const int took_cudnn = after.cudnn - before.cudnn == 1;
    const int one_path = after.cudnn - before.cudnn + after.f32_kernel - before.f32_kernel == 1;
    ZT_CHECK(!set_mode || (one_path && (expect_cudnn < 0 || took_cudnn == expect_cudnn)),
             "%s: path counts cudnn +%llu, f32 kernel +%llu; expected the %s", name,
             after.cudnn - before.cudnn, after.f32_kernel - before.f32_kernel,
             expect_cudnn ? "cuDNN path" : "f32 kernel");
    expect_cudnn = took_cudnn;

    const double u = half == ZT_BF16 ? 1.0 / 256.0 : 1.0 / 2048.0;
    double worst = 0.0, worst_rounded = 0.0;
    int n_exact = 0;
    for (int b = 0; b < c->batch; b++) {
        const enum mask_kind kind = c->masks[b % 3];
        const int cudnn_takes = expect_cudnn && (kind == MASK_LEFT || kind == MASK_NONE);
        if (cudnn_takes) {
            worst = fmax(worst, check_bounded(c, b, q, k, v, mask, got, want, u, name));
            worst_rounded =
                fmax(worst_rounded, check_rounded_inputs(c, b, q, k, v, mask, got, half, u, name));
        } else {
            /* the f32 kernel's own bits, as --gemm f32 computes them */
            const size_t at = (size_t)b * T * C;
            ZT_CHECK(memcmp(got + at, f32_kernel + at, (size_t)T * C * sizeof(float)) == 0,
                     "%s: sequence %d (mask %d) differs from the f32 kernel's bits", name, b, kind);
            n_exact++;
        }
    }
    printf("  %-38s %-10s worst error / bound: %.3f vs CPU, %.3f vs rounded inputs; %d "
           "sequence(s) bit for bit on the f32 kernel\n",
           name, took_cudnn ? "cuDNN" : "f32 kernel", worst, worst_rounded, n_exact);
    free(q);
    free(k);
    free(v);
    free(want);
    free(got);
    free(f32_kernel);
    free(mask);
}

/* Every case above; emu_half must be in --gemm half, emu_f32 in --gemm f32 (its attention is the
 * f32 kernel's bits). */
static void zt_cudnn_parity_run(zt_backend *cpu, zt_backend *emu_half, zt_backend *emu_f32,
                                zt_cudnn_set_mode_fn set_mode, zt_cudnn_paths_fn paths,
                                int refused_expect) {
    printf("attention through cuDNN (--gemm half) against the CPU backend:\n");
    ZT_CHECK(set_mode(emu_half, 7) == ZT_ERR_INVALID_ARG, "attention mode 7 was accepted");
    /* AUTO before any half-input GEMM, and F32: the f32 kernel, not counted as a refusal */
    zt_cuda_attention_path_counts before, after;
    const attention_case plain = {2, 37, 2, 64, {MASK_LEFT, MASK_LEFT, MASK_LEFT}};
    for (int m = 0; m < 2; m++) {
        ZT_REQUIRE_OK(set_mode(emu_half, m ? ZT_CUDA_ATTENTION_F32 : ZT_CUDA_ATTENTION_AUTO));
        paths(emu_half, &before);
        check_case(cpu, emu_half, emu_f32, NULL, paths, &plain, ZT_F16, 0);
        paths(emu_half, &after);
        ZT_CHECK(after.cudnn == before.cudnn && after.f32_kernel == before.f32_kernel &&
                     after.plan_builds == before.plan_builds,
                 "attention mode %s tried cuDNN", m ? "F32" : "AUTO (no half GEMM yet)");
    }
    static const attention_case on_cudnn[] = {
        {2, 37, 2, 64, {MASK_LEFT, MASK_LEFT, MASK_LEFT}},
        {3, 70, 1, 128, {MASK_NONE, MASK_LEFT, MASK_LEFT}},
        {1, 64, 3, 64, {MASK_NONE, MASK_NONE, MASK_NONE}},
        {2, 21, 2, 128, {MASK_LEFT, MASK_NONE, MASK_NONE}},
    };
    for (int h = 0; h < 2; h++) {
        const zt_dtype half = h == 0 ? ZT_F16 : ZT_BF16;
        for (size_t i = 0; i < sizeof on_cudnn / sizeof on_cudnn[0]; i++)
            check_case(cpu, emu_half, emu_f32, set_mode, paths, &on_cudnn[i], half, 1);
    }
    /* T = 50 shares the plan T = 37 made: plans are made for T rounded up to 64 */
    const attention_case nearby = {2, 50, 2, 64, {MASK_LEFT, MASK_NONE, MASK_LEFT}};
    paths(emu_half, &before);
    check_case(cpu, emu_half, emu_f32, set_mode, paths, &nearby, ZT_F16, 1);
    paths(emu_half, &after);
    ZT_CHECK(after.plan_builds == before.plan_builds, "T = 50 built a plan of its own");
    /* masks cuDNN cannot take, beside left padding: those sequences go to the f32 kernel */
    const attention_case mixed = {6, 45, 2, 64, {MASK_LEFT, MASK_RIGHT, MASK_HOLE}};
    check_case(cpu, emu_half, emu_f32, set_mode, paths, &mixed, ZT_F16, 1);
    const attention_case empty = {3, 33, 1, 64, {MASK_EMPTY, MASK_LEFT, MASK_NONE}};
    check_case(cpu, emu_half, emu_f32, set_mode, paths, &empty, ZT_BF16, 1);
    /* a head dim the stand-in's engines refuse: the whole shape on the f32 kernel, announced
     * once (a real cuDNN decides for itself: refused_expect -1) */
    const attention_case refused = {2, 40, 2, 20, {MASK_LEFT, MASK_HOLE, MASK_NONE}};
    check_case(cpu, emu_half, emu_f32, set_mode, paths, &refused, ZT_F16, refused_expect);
    paths(emu_half, &before);
    check_case(cpu, emu_half, emu_f32, set_mode, paths, &refused, ZT_F16, refused_expect);
    paths(emu_half, &after);
    ZT_CHECK(after.plan_builds == before.plan_builds,
             "a shape seen before was built again (%llu builds)",
             after.plan_builds - before.plan_builds);

    /* --gemm f32 never tries cuDNN */
    zt_cuda_attention_path_counts f32_paths;
    paths(emu_f32, &f32_paths);
    ZT_CHECK(f32_paths.cudnn == 0 && f32_paths.f32_kernel == 0,
             "--gemm f32 counted cuDNN %llu, refused %llu", f32_paths.cudnn, f32_paths.f32_kernel);
}

#endif
