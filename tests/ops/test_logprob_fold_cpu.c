/* target_logprobs_fold (kernels/cpu/logprob.c), the CPU head's log-probabilities a block of
 * vocabulary columns at a time. Against a long double log-softmax of the whole row: every
 * blocking gives each row within one float ulp of it; one block of the whole row gives exactly
 * target_logprobs' bits; every SIMD path gives the same bits as the portable one for any
 * blocking; 1 and 2 threads agree bit for bit. Special values as target_logprobs has them: a
 * leading block of nothing but -inf, NaN or +inf in a later block, a row of -inf, a -inf target.
 * Bad targets and columns are errors that write nothing. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "cpu/logsumexp.h"
#include "zt_test.h"

#define VOCAB 5003
#define ROWS 5

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static double uniform01(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1p-53;
}

static void fill(float *x, size_t n, double scale) {
    for (size_t j = 0; j < n; j++)
        x[j] = (float)((uniform01() * 2.0 - 1.0) * scale);
}

/* log_softmax(x)[target] in long double: libm's expl summed in element order. */
static float reference_logprob(const float *x, int n, int target) {
    float max = x[0];
    for (int j = 1; j < n; j++)
        if (x[j] > max) max = x[j];
    long double sum = 0.0L;
    for (int j = 0; j < n; j++)
        sum += expl((long double)x[j] - (long double)max);
    return (float)((long double)x[target] - ((long double)max + logl(sum)));
}

/* The rows through the backend's op, `cols` columns at a time, as the head calls it. */
static zt_status fold_rows(zt_backend *be, float *logprob, const float *logits, /* (R,V) */
                           const int32_t *targets, int rows, int vocab, int cols) {
    double *state = malloc((size_t)rows * 3 * sizeof *state);
    float *block = malloc((size_t)rows * (size_t)cols * sizeof *block);
    ZT_REQUIRE(state && block, "no memory");
    zt_status s = ZT_OK;
    for (int v0 = 0; s == ZT_OK && v0 < vocab; v0 += cols) {
        const int n = vocab - v0 < cols ? vocab - v0 : cols;
        for (int r = 0; r < rows; r++)
            memcpy(block + (size_t)r * n, logits + (size_t)r * vocab + v0,
                   (size_t)n * sizeof *block);
        s = be->ops->target_logprobs_fold(be, logprob, state, block, targets, rows, vocab, v0, n);
    }
    free(block);
    free(state);
    return s;
}

static uint32_t float_bits(float v) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* log-sum-exp of x by blocks of `cols` on one path, as state[0] + log(state[1]). */
static double fold_lse(zt_cpu_rng_path path, const float *x, int n, int cols) {
    double state[3] = {0};
    for (int v0 = 0; v0 < n; v0 += cols)
        zt_cpu_log_sum_exp_fold(path, x + v0, n - v0 < cols ? n - v0 : cols, state, v0 == 0);
    return state[0] + log(state[1]);
}

static uint64_t double_bits(double v) {
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static void check_paths(const char *what, const float *x, int n, int cols) {
    const double portable = fold_lse(ZT_CPU_RNG_PORTABLE, x, n, cols);
    for (int p = 0; p < ZT_CPU_RNG_N_PATHS; p++) {
        if (!zt_cpu_rng_path_available((zt_cpu_rng_path)p)) continue;
        const double got = fold_lse((zt_cpu_rng_path)p, x, n, cols);
        ZT_CHECK(double_bits(got) == double_bits(portable) || (isnan(got) && isnan(portable)),
                 "%s (blocks of %d): path %s gives %.17g, portable %.17g", what, cols,
                 zt_cpu_rng_path_name((zt_cpu_rng_path)p), got, portable);
    }
}

/* One special row, folded in blocks of `cols`: NaN when want_nan, else within an ulp of the
 * reference (-inf when the target's logit is -inf). */
static void check_special(zt_backend *be, const char *what, const float *row, int n, int target,
                          int cols, int want_nan) {
    float got = 0.0f;
    const int32_t t = target;
    ZT_CHECK_OK(fold_rows(be, &got, row, &t, 1, n, cols));
    check_paths(what, row, n, cols);
    if (want_nan) {
        ZT_CHECK(isnan(got), "%s (blocks of %d): %.9g, want NaN", what, cols, got);
        return;
    }
    const float want = reference_logprob(row, n, target);
    if (isinf(want)) {
        ZT_CHECK(got == want, "%s (blocks of %d): %.9g, want %.9g", what, cols, got, want);
        return;
    }
    const float ulp = nextafterf(fabsf(want), INFINITY) - fabsf(want);
    ZT_CHECK(fabsf(got - want) <= ulp, "%s (blocks of %d): %.9g, reference %.9g", what, cols, got,
             want);
}

int main(void) {
    zt_backend *be = NULL, *be2 = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &be));
    ZT_REQUIRE_OK(zt_cpu_backend_create(2, &be2));
    float *logits = malloc((size_t)ROWS * VOCAB * sizeof *logits);
    ZT_REQUIRE(logits != NULL, "no memory");
    const int32_t targets[ROWS] = {0, 17, 2500, 5000, VOCAB - 1};
    static const int blockings[] = {VOCAB, 4096, 1024, 1000, 37, 8, 1};
    static const double scales[] = {10.0, 1e-3, 400.0};
    int n_checked = 0;
    for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++) {
        fill(logits, (size_t)ROWS * VOCAB, scales[si]);
        /* a dominant logit late in the row: the running max moves in a later block */
        logits[3 * (size_t)VOCAB + 4000] = (float)(scales[si] * 3.0);
        float whole[ROWS];
        ZT_CHECK_OK(be->ops->target_logprobs(be, whole, logits, targets, ROWS, VOCAB));
        for (size_t bi = 0; bi < sizeof blockings / sizeof blockings[0]; bi++) {
            const int cols = blockings[bi];
            float got[ROWS], got2[ROWS];
            ZT_CHECK_OK(fold_rows(be, got, logits, targets, ROWS, VOCAB, cols));
            ZT_CHECK_OK(fold_rows(be2, got2, logits, targets, ROWS, VOCAB, cols));
            for (int r = 0; r < ROWS; r++) {
                const float *row = logits + (size_t)r * VOCAB;
                const float want = reference_logprob(row, VOCAB, targets[r]);
                const float ulp = nextafterf(fabsf(want), INFINITY) - fabsf(want);
                ZT_CHECK(fabsf(got[r] - want) <= ulp,
                         "scale %g, blocks of %d, row %d: %.9g, reference %.9g", scales[si], cols,
                         r, got[r], want);
                ZT_CHECK(float_bits(got[r]) == float_bits(got2[r]),
                         "scale %g, blocks of %d, row %d: %.9g on 1 thread, %.9g on 2", scales[si],
                         cols, r, got[r], got2[r]);
                if (cols == VOCAB)
                    ZT_CHECK(float_bits(got[r]) == float_bits(whole[r]),
                             "scale %g, one block, row %d: %.9g, target_logprobs %.9g", scales[si],
                             r, got[r], whole[r]);
                n_checked++;
            }
            if (si == 0) check_paths("random row", logits + 3 * (size_t)VOCAB, VOCAB, cols);
        }
    }
    printf("%d rows against the reference, on paths:", n_checked);
    for (int p = 0; p < ZT_CPU_RNG_N_PATHS; p++)
        if (zt_cpu_rng_path_available((zt_cpu_rng_path)p))
            printf(" %s", zt_cpu_rng_path_name((zt_cpu_rng_path)p));
    printf("\n");

    /* special values, in blocks of 8 over 40 columns */
    float row[40];
    fill(row, 40, 4.0);
    for (int j = 0; j < 16; j++)
        row[j] = -INFINITY;
    check_special(be, "two leading blocks of -inf", row, 40, 20, 8, 0);
    check_special(be, "-inf target", row, 40, 3, 8, 0);
    row[5] = NAN;
    check_special(be, "NaN among leading -inf", row, 40, 20, 8, 1);
    fill(row, 40, 4.0);
    row[33] = INFINITY;
    check_special(be, "+inf in the last block", row, 40, 2, 8, 1);
    fill(row, 40, 4.0);
    row[0] = NAN;
    check_special(be, "NaN first", row, 40, 9, 8, 1);
    fill(row, 40, 4.0);
    row[17] = NAN;
    check_special(be, "NaN in a middle block", row, 40, 9, 8, 1);
    for (int j = 0; j < 40; j++)
        row[j] = -INFINITY;
    check_special(be, "all -inf", row, 40, 9, 8, 1);

    /* errors: a bad target on the first block, columns outside the vocab; nothing written */
    float out[2] = {7.0f, 7.0f};
    double state[6] = {0};
    const int32_t bad[2] = {0, 40};
    fill(row, 40, 1.0);
    ZT_CHECK(be->ops->target_logprobs_fold(be, out, state, row, bad, 2, 40, 0, 20) ==
                 ZT_ERR_INVALID_ARG,
             "target 40 of a vocab of 40 accepted");
    ZT_CHECK(strstr(zt_last_error(), "row 1") != NULL, "the error does not name row 1: %s",
             zt_last_error());
    const int32_t fine[2] = {0, 39};
    ZT_CHECK(be->ops->target_logprobs_fold(be, out, state, row, fine, 2, 40, 30, 20) ==
                 ZT_ERR_INVALID_ARG,
             "columns [30, 50) of a vocab of 40 accepted");
    ZT_CHECK(be->ops->target_logprobs_fold(be, out, state, row, fine, 2, 40, 0, 0) ==
                 ZT_ERR_INVALID_ARG,
             "an empty block accepted");
    ZT_CHECK(out[0] == 7.0f && out[1] == 7.0f && state[0] == 0.0 && state[3] == 0.0,
             "a refused call wrote its outputs");

    free(logits);
    zt_backend_destroy(be);
    zt_backend_destroy(be2);
    return zt_test_finish("logprob_fold_cpu");
}
