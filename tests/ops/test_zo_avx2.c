/* The AVX2 + F16C element loops of perturb and update (kernels/cpu/zo_avx2.h) against the scalar
 * definitions they must equal bit for bit (common/dtype.h's conversions, common/perturb_rng.h's
 * stochastic rounding, update.c's SGD order): every f16 bit pattern as a weight, g from a fixed
 * generator with zeros (a zero step leaves the weight, -0 included), steps that overflow f16 and
 * that land in its subnormals, f32 weights with zeros, subnormals, infinities and NaN. Groups of
 * eight holding an f16 NaN must be left to the scalar loop: each function must stop at the first
 * such group. Skipped (exit 77) where the CPU lacks AVX2, FMA or F16C. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "cpu/zo_avx2.h"
#include "zt_test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t next_u32(void) {
    rng_state = zt_mix64(rng_state + 0x9E3779B97F4A7C15ull);
    return (uint32_t)(rng_state >> 32);
}

/* g values: mostly moderate, some zero, some large enough to overflow an f16 weight. */
static float next_g(void) {
    uint32_t r = next_u32();
    switch (r % 16) {
    case 0:
        return 0.0f;
    case 1:
        return -0.0f;
    case 2:
        return (r & 0x100) ? 3.0e9f : -3.0e9f;
    default:
        return ((float)(int32_t)r) * 0x1p-31f * 4.0f;
    }
}

static int is_f16_nan(uint16_t h) {
    return (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu) != 0;
}

static float sgd_scalar(float theta, float g, float lr, float decay) {
    const float step = lr * (g + decay * theta);
    return step != 0.0f ? theta - step : theta;
}

/* Every non-NaN f16 pattern as a weight, in groups of eight; NaN patterns are left out here and
 * tested for the early stop below. */
static size_t all_finite_or_inf_f16(uint16_t *out) {
    size_t n = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if (!is_f16_nan((uint16_t)h)) out[n++] = (uint16_t)h;
    return n - n % 8;
}

static void check_update_f16(int stochastic, float lr, float decay) {
    enum { CAPACITY = 65536 };
    uint16_t *theta = malloc(CAPACITY * sizeof *theta), *want = malloc(CAPACITY * sizeof *want);
    float *g = calloc(CAPACITY, sizeof *g);
    uint32_t *random = calloc(CAPACITY, sizeof *random);
    const size_t n = all_finite_or_inf_f16(theta);
    unsigned long long want_nonfinite = 0, got_nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = next_g();
        random[i] = next_u32();
        const float updated = sgd_scalar(zt_f16_to_f32(theta[i]), g[i], lr, decay);
        want[i] = stochastic ? zt_sr_f32_to_f16(updated, random[i]) : zt_f32_to_f16(updated);
        want_nonfinite += (want[i] & 0x7C00u) == 0x7C00u;
    }
    const size_t done = zt_cpu_update_sgd_f16_avx2(theta, g, stochastic ? random : NULL, n, lr,
                                                   decay, &got_nonfinite);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (theta[i] != want[i] && bad++ < 5)
            fprintf(stderr, "  f16 %s lr %g: element %zu: %04x, want %04x\n",
                    stochastic ? "SR" : "RNE", lr, i, theta[i], want[i]);
    ZT_CHECK(done == n, "f16 SGD (%s): did %zu of %zu elements", stochastic ? "SR" : "RNE", done,
             n);
    ZT_CHECK(bad == 0, "f16 SGD (%s, lr %g): %zu of %zu weights differ from the scalar loop",
             stochastic ? "SR" : "RNE", lr, bad, n);
    ZT_CHECK(got_nonfinite == want_nonfinite, "f16 SGD: %llu non-finite counted, want %llu",
             got_nonfinite, want_nonfinite);
    free(theta), free(want), free(g), free(random);
}

static void check_update_f32(void) {
    enum { N = 4096 };
    static float theta[N], want[N], g[N];
    unsigned long long want_nonfinite = 0, got_nonfinite = 0;
    const float specials[] = {0.0f,      -0.0f,      INFINITY, -INFINITY, NAN,
                              0x1p-140f, -0x1p-149f, 3.0e38f,  -3.0e38f,  1.0f};
    for (size_t i = 0; i < N; i++) {
        theta[i] = i < 80 ? specials[i % 10] : ((float)(int32_t)next_u32()) * 0x1p-31f;
        g[i] = i < 80 ? (i / 10 % 2 ? 0.0f : next_g()) : next_g();
        want[i] = sgd_scalar(theta[i], g[i], 1e-3f, 0.1f);
        want_nonfinite += (zt_f32_bits(want[i]) & 0x7F800000u) == 0x7F800000u;
    }
    const size_t done = zt_cpu_update_sgd_f32_avx2(theta, g, N, 1e-3f, 0.1f, &got_nonfinite);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++)
        bad += zt_f32_bits(theta[i]) != zt_f32_bits(want[i]);
    ZT_CHECK(done == N && bad == 0, "f32 SGD: did %zu of %d, %zu differ", done, N, bad);
    ZT_CHECK(got_nonfinite == want_nonfinite, "f32 SGD: %llu non-finite counted, want %llu",
             got_nonfinite, want_nonfinite);
}

static void check_stage(void) {
    enum { CAPACITY = 65536 };
    uint16_t *src = malloc(CAPACITY * sizeof *src);
    float *sum = calloc(CAPACITY, sizeof *sum), *dst = calloc(CAPACITY, sizeof *dst);
    const size_t n = all_finite_or_inf_f16(src);
    for (size_t i = 0; i < n; i++)
        sum[i] = next_g();
    const size_t done = zt_cpu_stage_f16_to_f32_avx2(dst, src, sum, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += zt_f32_bits(dst[i]) != zt_f32_bits(zt_f16_to_f32(src[i]) + sum[i]);
    ZT_CHECK(done == n && bad == 0, "stage f16 -> f32: did %zu of %zu, %zu differ", done, n, bad);

    /* A signalling NaN in the third group: both loops stop there, the groups before done. */
    src[19] = 0x7C01;
    const size_t stage_done = zt_cpu_stage_f16_to_f32_avx2(dst, src, sum, 64);
    unsigned long long nonfinite = 0;
    const size_t update_done =
        zt_cpu_update_sgd_f16_avx2(src, sum, NULL, 64, 1e-3f, 0.0f, &nonfinite);
    ZT_CHECK(stage_done == 16 && update_done == 16,
             "a NaN in elements 16..23: stage did %zu, update %zu, want 16 each", stage_done,
             update_done);
    ZT_CHECK(src[19] == 0x7C01, "the NaN group was written");
    free(src), free(sum), free(dst);
}

int main(void) {
    if (!zt_cpu_zo_avx2_available()) {
        printf("no AVX2 + FMA + F16C on this CPU: skipped\n");
        return 77;
    }
    check_update_f16(0, 1e-3f, 0.0f);
    check_update_f16(1, 1e-3f, 0.0f);
    check_update_f16(0, 0.5f, 0.01f);
    check_update_f16(1, 0.5f, 0.01f);
    check_update_f16(1, 0.0f, 0.0f); /* lr 0: every weight unchanged */
    check_update_f32();
    check_stage();
    return zt_test_finish("zo_avx2");
}
