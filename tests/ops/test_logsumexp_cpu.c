/* The CPU's log-sum-exp (kernels/cpu/logprob.c, the LM loss's normaliser) on every SIMD path
 * this CPU runs: the paths agree bit for bit, and each stays within 4e-15 relative of a long
 * double sum of libm's expl in element order. Rows of every length up to three vector widths and
 * a vocabulary-sized one (tails), rows with -inf entries, a dominant entry, and the special
 * values: NaN anywhere and +inf give NaN, all -inf gives NaN, as the per-element loop it
 * replaces did. target_logprobs is then checked against (float)(x_t - reference). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "cpu/logsumexp.h"
#include "zt_test.h"

#define VOCAB 50272

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static double uniform01(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1p-53;
}

static long double reference_lse(const float *x, int n) {
    float max = x[0];
    for (int j = 1; j < n; j++)
        if (x[j] > max) max = x[j];
    long double sum = 0.0L;
    for (int j = 0; j < n; j++)
        sum += expl((long double)x[j] - (long double)max);
    return (long double)max + logl(sum);
}

static uint64_t double_bits(double v) {
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* Every available path on x (n): equal bits, and within tolerance of the reference (or NaN when
 * want_nan). */
static void check_row(const char *what, const float *x, int n, int want_nan) {
    const double portable = zt_cpu_log_sum_exp(ZT_CPU_RNG_PORTABLE, x, n);
    for (int p = 0; p < ZT_CPU_RNG_N_PATHS; p++) {
        if (!zt_cpu_rng_path_available((zt_cpu_rng_path)p)) continue;
        const double got = zt_cpu_log_sum_exp((zt_cpu_rng_path)p, x, n);
        ZT_CHECK(double_bits(got) == double_bits(portable) || (isnan(got) && isnan(portable)),
                 "%s (n %d): path %s gives %.17g, portable %.17g", what, n,
                 zt_cpu_rng_path_name((zt_cpu_rng_path)p), got, portable);
    }
    if (want_nan) {
        ZT_CHECK(isnan(portable), "%s (n %d): %.17g, want NaN", what, n, portable);
        return;
    }
    const long double want = reference_lse(x, n);
    const double err = (double)fabsl((long double)portable - want);
    ZT_CHECK(err <= 4e-15 * fabs((double)want) + 1e-300, "%s (n %d): %.17g vs %.17Lg (error %.3g)",
             what, n, portable, want, err);
}

static void fill(float *x, int n, double scale) {
    for (int j = 0; j < n; j++)
        x[j] = (float)((uniform01() * 2.0 - 1.0) * scale);
}

int main(void) {
    float *x = malloc(VOCAB * sizeof *x);
    ZT_REQUIRE(x != NULL, "no memory");
    for (int p = 0; p < ZT_CPU_RNG_N_PATHS; p++)
        printf("path %-8s %s\n", zt_cpu_rng_path_name((zt_cpu_rng_path)p),
               zt_cpu_rng_path_available((zt_cpu_rng_path)p) ? "runs" : "not on this CPU");

    for (int n = 1; n <= 24; n++) {
        fill(x, n, 8.0);
        check_row("random", x, n, 0);
    }
    fill(x, VOCAB, 10.0);
    check_row("vocabulary-wide, logits in [-10, 10]", x, VOCAB, 0);
    check_row("vocabulary-wide, odd length", x, VOCAB - 3, 0);
    fill(x, VOCAB, 1e-3);
    check_row("near-equal logits", x, VOCAB, 0);
    fill(x, VOCAB, 400.0);
    check_row("logits in [-400, 400] (terms below exp(-708))", x, VOCAB, 0);
    fill(x, 1001, 3.0);
    x[500] = 60.0f;
    check_row("one dominant logit", x, 1001, 0);
    fill(x, 37, 5.0);
    x[0] = -INFINITY, x[9] = -INFINITY, x[36] = -INFINITY;
    check_row("-inf entries (tail and head)", x, 37, 0);

    for (int n = 1; n <= 17; n += 8)
        for (int at = 0; at < n; at += 3) {
            fill(x, n, 2.0);
            x[at] = NAN;
            check_row("a NaN", x, n, 1);
            x[at] = INFINITY;
            check_row("a +inf", x, n, 1);
        }
    for (int j = 0; j < 19; j++)
        x[j] = -INFINITY;
    check_row("all -inf", x, 19, 1);

    /* target_logprobs through the backend, 3 rows, on the active path */
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &be));
    const int rows = 3, vocab = 1003;
    float *logits = malloc((size_t)rows * vocab * sizeof *logits);
    ZT_REQUIRE(logits != NULL, "no memory");
    fill(logits, rows * vocab, 6.0);
    const int32_t targets[3] = {0, 501, 1002};
    float logprob[3];
    ZT_CHECK_OK(be->ops->target_logprobs(be, logprob, logits, targets, rows, vocab));
    for (int r = 0; r < rows; r++) {
        const float *row = logits + (size_t)r * vocab;
        const float want = (float)((long double)row[targets[r]] - reference_lse(row, vocab));
        const float ulp = nextafterf(fabsf(want), INFINITY) - fabsf(want);
        ZT_CHECK(fabsf(logprob[r] - want) <= ulp, "row %d: logprob %.9g, reference %.9g", r,
                 logprob[r], want);
    }
    zt_backend_destroy(be);
    free(logits);
    free(x);
    return zt_test_finish("logsumexp_cpu");
}
