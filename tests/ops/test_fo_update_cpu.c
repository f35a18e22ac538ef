/* fo_update and grad_sumsq (kernels/cpu/fo_update.c): the first-order steps against torch.optim
 * (tests/fixtures/fo_update.safetensors, tools/make_fo_fixtures.py: SGD plain, with decay, with
 * momentum, Nesterov; Adam with coupled decay; AdamW), six steps each; signSGD and AdaMM against
 * a double-precision loop of seed 001's definitions; f16 / bf16 weights (nearest even equals the
 * f32 step rounded; stochastic rounding lands on a neighbour and is the same on 1 and 3
 * threads); the non-finite count; grad_sumsq against a double loop and across thread counts;
 * the refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "core/status.h"
#include "fixture.h"
#include "zt_test.h"

static zt_backend *be, *be3;

typedef struct torch_case {
    const char *name;
    zt_fo_update u;
} torch_case;

static float *tensor_rows(const zt_safetensors *st, const char *name, size_t *n) {
    return fixture_array(st, name, "F32", n, NULL);
}

/* Six steps of each torch configuration from theta0 with the fixture's gradients. */
static void check_against_torch(void) {
    char path[512];
    fixture_path(path, sizeof path, "fo_update.safetensors", NULL);
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    size_t n = 0, n_grads = 0;
    float *theta0 = tensor_rows(st, "theta0", &n);
    float *grads = tensor_rows(st, "grads", &n_grads);
    const int steps = (int)(n_grads / n);
    const torch_case cases[] = {
        {"sgd", {.rule = ZT_FO_SGD, .lr = 0.1f, .grad_scale = 1.0f}},
        {"sgd_decay", {.rule = ZT_FO_SGD, .lr = 0.05f, .weight_decay = 0.1f, .grad_scale = 1.0f}},
        {"sgd_momentum",
         {.rule = ZT_FO_SGD,
          .lr = 0.1f,
          .momentum = 0.9f,
          .weight_decay = 0.01f,
          .grad_scale = 1.0f}},
        {"sgd_nesterov",
         {.rule = ZT_FO_SGD,
          .lr = 0.1f,
          .momentum = 0.9f,
          .nesterov = 1,
          .weight_decay = 0.01f,
          .grad_scale = 1.0f}},
        {"adam",
         {.rule = ZT_FO_ADAM,
          .lr = 0.01f,
          .beta1 = 0.9f,
          .beta2 = 0.999f,
          .eps = 1e-8f,
          .weight_decay = 0.01f,
          .grad_scale = 1.0f}},
        {"adamw",
         {.rule = ZT_FO_ADAM,
          .lr = 0.01f,
          .beta1 = 0.8f,
          .beta2 = 0.99f,
          .eps = 1e-6f,
          .weight_decay = 0.1f,
          .decoupled_decay = 1,
          .grad_scale = 1.0f}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n_want = 0;
        float *want = tensor_rows(st, cases[c].name, &n_want);
        float *theta = malloc(n * sizeof *theta), *state = calloc(3 * n, sizeof *state);
        memcpy(theta, theta0, n * sizeof *theta);
        double worst = 0.0;
        for (int t = 0; t < steps; t++) {
            zt_fo_update u = cases[c].u;
            u.bias1 = (float)(1.0 - pow((double)u.beta1, t + 1));
            u.bias2 = (float)(1.0 - pow((double)u.beta2, t + 1));
            ZT_CHECK_OK(be->ops->fo_update(be, theta, ZT_F32, 7, n, grads + (size_t)t * n,
                                           zt_fo_state_rows(&u) ? state : NULL, &u));
            for (size_t j = 0; j < n; j++) {
                const double expected = want[(size_t)t * n + j];
                const double err = fabs(theta[j] - expected) / (fabs(expected) + 1e-3);
                if (err > worst) worst = err;
            }
        }
        /* torch's kernels may fuse a*b + c; ours round each operation: a few ulps apart per
         * step, grown by momentum over six steps (a wrong rule is off by 1e-2 or more). */
        ZT_CHECK(worst <= 1e-5, "%s: worst relative difference from torch %.3g", cases[c].name,
                 worst);
        printf("%-13s 6 steps, worst relative difference from torch.optim %.2g\n", cases[c].name,
               worst);
        free(want);
        free(theta);
        free(state);
    }
    free(theta0);
    free(grads);
    zt_st_close(st);
}

/* signSGD and AdaMM (seed 001: AMSGrad's max of v, no bias correction), in double. */
static void check_sign_and_adamm(void) {
    enum { N = 45, STEPS = 5 };
    float theta[N], grads[STEPS][N], state[3 * N] = {0};
    double ref[N], m[N] = {0}, v[N] = {0}, vhat[N] = {0};
    unsigned seed = 12345;
    for (int j = 0; j < N; j++) {
        seed = seed * 1103515245u + 12345u;
        theta[j] = (float)((int)(seed >> 8 & 0xFFFF) - 32768) / 16384.0f;
        ref[j] = theta[j];
    }
    for (int t = 0; t < STEPS; t++)
        for (int j = 0; j < N; j++) {
            seed = seed * 1103515245u + 12345u;
            grads[t][j] = j == 5 ? 0.0f : (float)((int)(seed >> 8 & 0xFFFF) - 32768) / 65536.0f;
        }
    const zt_fo_update adamm = {.rule = ZT_FO_ADAMM,
                                .lr = 0.02f,
                                .beta1 = 0.9f,
                                .beta2 = 0.99f,
                                .eps = 1e-8f,
                                .weight_decay = 0.01f,
                                .grad_scale = 0.5f};
    for (int t = 0; t < STEPS; t++) {
        ZT_CHECK_OK(be->ops->fo_update(be, theta, ZT_F32, 3, N, grads[t], state, &adamm));
        for (int j = 0; j < N; j++) {
            const double g = 0.5 * grads[t][j] + 0.01 * ref[j];
            m[j] = 0.9 * m[j] + 0.1 * g;
            v[j] = 0.99 * v[j] + 0.01 * g * g;
            vhat[j] = vhat[j] > v[j] ? vhat[j] : v[j];
            ref[j] -= 0.02 * m[j] / (sqrt(vhat[j]) + 1e-8);
        }
    }
    double worst = 0.0;
    for (int j = 0; j < N; j++)
        worst = fmax(worst, fabs(theta[j] - ref[j]) / (fabs(ref[j]) + 1e-3));
    ZT_CHECK(worst <= 1e-5, "adamm: worst relative difference from double %.3g", worst);

    const zt_fo_update sign = {.rule = ZT_FO_SIGN, .lr = 0.01f, .grad_scale = 1.0f};
    float before[N];
    memcpy(before, theta, sizeof before);
    ZT_CHECK_OK(be->ops->fo_update(be, theta, ZT_F32, 3, N, grads[0], NULL, &sign));
    for (int j = 0; j < N; j++) {
        const float s = grads[0][j] > 0.0f ? 1.0f : grads[0][j] < 0.0f ? -1.0f : 0.0f;
        ZT_CHECK(theta[j] == before[j] - 0.01f * s, "sign: element %d %.9g, want %.9g", j,
                 (double)theta[j], (double)(before[j] - 0.01f * s));
    }
}

/* Half weights: nearest even is the f32 step rounded; stochastic rounding lands on one of the
 * two neighbours of the f32 step and gives the same bits on 1 and 3 threads. */
static void check_half(zt_dtype dtype) {
    enum { N = 70001 };
    uint16_t *half = malloc(N * 2), *half_sr = malloc(N * 2), *half_sr3 = malloc(N * 2);
    float *widened = malloc(N * sizeof(float)), *grad = malloc(N * sizeof(float));
    float *state = calloc(2 * N, sizeof(float)), *state_f = calloc(2 * N, sizeof(float));
    float *state_sr = calloc(2 * N, sizeof(float)), *state_sr3 = calloc(2 * N, sizeof(float));
    for (int j = 0; j < N; j++) {
        const float x = (float)sin(0.37 * j) * 0.25f;
        half[j] = dtype == ZT_F16 ? zt_f32_to_f16(x) : zt_f32_to_bf16(x);
        widened[j] = zt_load_f32(half, dtype, (size_t)j);
        grad[j] = (float)cos(0.11 * j) * 0.1f;
    }
    memcpy(half_sr, half, N * 2);
    memcpy(half_sr3, half, N * 2);
    zt_fo_update u = {.rule = ZT_FO_ADAM,
                      .lr = 1e-3f,
                      .beta1 = 0.9f,
                      .beta2 = 0.999f,
                      .eps = 1e-8f,
                      .bias1 = 0.1f,
                      .bias2 = 0.001f,
                      .grad_scale = 1.0f,
                      .rounding_seed = 99};
    ZT_CHECK_OK(be->ops->fo_update(be, half, dtype, 11, N, grad, state, &u));
    ZT_CHECK_OK(be->ops->fo_update(be, widened, ZT_F32, 11, N, grad, state_f, &u));
    u.stochastic_rounding = 1;
    ZT_CHECK_OK(be->ops->fo_update(be, half_sr, dtype, 11, N, grad, state_sr, &u));
    ZT_CHECK_OK(be3->ops->fo_update(be3, half_sr3, dtype, 11, N, grad, state_sr3, &u));
    size_t n_rne = 0, n_neighbour = 0;
    for (int j = 0; j < N; j++) {
        const uint16_t rne =
            dtype == ZT_F16 ? zt_f32_to_f16(widened[j]) : zt_f32_to_bf16(widened[j]);
        n_rne += half[j] == rne;
        const float got = zt_load_f32(half_sr, dtype, (size_t)j);
        const float below = zt_load_f32(&rne, dtype, 0);
        /* the other neighbour is one unit in the last place away, on the far side of the f32 */
        const uint16_t other_bits =
            (uint16_t)(rne + ((widened[j] > below) == (below >= 0.0f) ? 1 : -1));
        const float other = zt_load_f32(&other_bits, dtype, 0);
        n_neighbour += got == below || got == other || widened[j] == below;
    }
    ZT_CHECK(n_rne == N, "%s: %zu of %d nearest-even stores differ from the rounded f32 step",
             zt_dtype_name(dtype), N - n_rne, N);
    ZT_CHECK(n_neighbour == N, "%s: %zu of %d stochastic stores off the two neighbours",
             zt_dtype_name(dtype), N - n_neighbour, N);
    ZT_CHECK(memcmp(half_sr, half_sr3, N * 2) == 0 && memcmp(state_sr, state_sr3, 2 * N * 4) == 0,
             "%s: stochastic rounding differs on 3 threads", zt_dtype_name(dtype));
    ZT_CHECK(memcmp(state, state_f, 2 * N * 4) == 0, "%s: the state depends on the storage",
             zt_dtype_name(dtype));
    free(half);
    free(half_sr);
    free(half_sr3);
    free(widened);
    free(grad);
    free(state);
    free(state_f);
    free(state_sr);
    free(state_sr3);
}

static void check_sumsq_and_refusals(void) {
    enum { N = 100003 };
    float *x = malloc(N * sizeof(float));
    double want = 0.0;
    for (int j = 0; j < N; j++) {
        x[j] = (float)sin(1.3 * j) * (j % 7 == 0 ? 100.0f : 1.0f);
        want += (double)x[j] * x[j];
    }
    double got = 0.0, got3 = 0.0;
    ZT_CHECK_OK(be->ops->grad_sumsq(be, &got, x, N));
    ZT_CHECK_OK(be3->ops->grad_sumsq(be3, &got3, x, N));
    ZT_CHECK_CLOSE(got, want, 0.0, 1e-13, "grad_sumsq against a double loop");
    ZT_CHECK(got == got3, "grad_sumsq: %.17g on 2 threads, %.17g on 3", got, got3);

    /* Inf and NaN weights are counted. */
    float theta[4] = {1.0f, 2.0f, 3.0f, 4.0f}, g[4] = {0.0f, 1e38f, 0.0f, 0.0f};
    unsigned long long nonfinite = 0;
    zt_fo_update sgd = {.rule = ZT_FO_SGD, .lr = -1e3f, .grad_scale = 1.0f};
    sgd.n_nonfinite = &nonfinite;
    ZT_CHECK_OK(be->ops->fo_update(be, theta, ZT_F32, 0, 4, g, NULL, &sgd));
    ZT_CHECK(nonfinite == 1, "non-finite count %llu, want 1", nonfinite);

    float state[12] = {0};
    const zt_fo_update adam_without_bias = {.rule = ZT_FO_ADAM,
                                            .lr = 0.1f,
                                            .beta1 = 0.9f,
                                            .beta2 = 0.9f,
                                            .eps = 1e-8f,
                                            .grad_scale = 1.0f};
    const zt_fo_update nesterov_alone = {
        .rule = ZT_FO_SGD, .lr = 0.1f, .nesterov = 1, .grad_scale = 1.0f};
    const zt_fo_update momentum = {
        .rule = ZT_FO_SGD, .lr = 0.1f, .momentum = 0.5f, .grad_scale = 1.0f};
    ZT_CHECK(be->ops->fo_update(be, theta, ZT_F32, 0, 4, g, state, &adam_without_bias) ==
                 ZT_ERR_INVALID_ARG,
             "adam without bias corrections accepted");
    ZT_CHECK(strstr(zt_last_error(), "fo_update") != NULL, "message '%s'", zt_last_error());
    ZT_CHECK(be->ops->fo_update(be, theta, ZT_F32, 0, 4, g, NULL, &nesterov_alone) ==
                 ZT_ERR_INVALID_ARG,
             "Nesterov without momentum accepted");
    ZT_CHECK(be->ops->fo_update(be, theta, ZT_F32, 0, 4, g, NULL, &momentum) == ZT_ERR_INVALID_ARG,
             "momentum without a state accepted");
    ZT_CHECK(be->ops->fo_update(be, theta, ZT_F32, 0, 4, theta, NULL, &sgd) == ZT_ERR_INVALID_ARG,
             "grad over theta accepted");
    free(x);
}

int main(void) {
    ZT_REQUIRE_OK(zt_backend_create("cpu", 2, &be));
    ZT_REQUIRE_OK(zt_backend_create("cpu", 3, &be3));
    ZT_CHECK_OK(zt_backend_require_fo_update(be, "test"));
    check_against_torch();
    check_sign_and_adamm();
    check_half(ZT_F16);
    check_half(ZT_BF16);
    check_sumsq_and_refusals();
    zt_backend_destroy(be3);
    zt_backend_destroy(be);
    return zt_test_finish("fo_update_cpu");
}
