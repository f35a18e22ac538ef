/* target_logprobs: log_softmax(logits)[target] per row, the LM loss's only input. */

/* Every path must give the same bits, so nothing may be fused into an FMA (clang contracts
 * within an expression unless told not to; GCC in ISO C mode does not). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
/* The vector helpers are always inlined into each path's function, so their vector arguments
 * never cross a call and the compilers' warning about the AVX-512 calling convention does not
 * apply (clang honours GCC's pragma too). */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/status.h"
#include "cpu/cpu_common.h"
#include "cpu/logsumexp.h"
#include "cpu/rng_blocks.h"

/* The row's terms are computed eight at a time in GCC/clang vector types. Vector arithmetic is
 * IEEE per lane and never contracted, so the one body below, compiled for AVX-512, AVX2 and the
 * baseline ISA, gives the same bits on every path: lane l of the partial sums takes the elements
 * j with j % 8 == l, and the lanes are added in order at the end. */
typedef float zt_v8f __attribute__((vector_size(32)));
typedef double zt_v8d __attribute__((vector_size(64)));
typedef int64_t zt_v8l __attribute__((vector_size(64)));
typedef int32_t zt_v8i __attribute__((vector_size(32)));

#define ZT_LSE_LANES 8

/* exp(d) for d <= 0 (and -inf, NaN) in double, within a few ulp: d = n ln2 + r with |r| <=
 * ln2 / 2 (ln2 split so that n * ln2_hi is exact), exp(r) from its Taylor series to r^12 (the
 * next term is below 2e-16 relative), scaled by 2^n through the exponent bits. Terms below
 * exp(-708) are 0: the row's largest term is exp(0) = 1, so they cannot show in the sum. */
static inline __attribute__((always_inline)) zt_v8d exp_nonpositive8(zt_v8d d) {
    const double shifter = 0x1.8p52; /* adding it rounds to an integer in the low bits */
    const double log2e = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fee00000p-1;
    const double ln2_lo = 0x1.a39ef35793c76p-33;
    const zt_v8d t = d * log2e + shifter;
    const zt_v8d n = t - shifter;
    zt_v8d r = d - n * ln2_hi;
    r = r - n * ln2_lo;
    /* Horner on 1/k!, k = 12 down to 0 (the nearest doubles) */
    zt_v8d p = (zt_v8d){0} + 0x1.1eed8eff8d898p-29;
    p = p * r + 0x1.ae64567f544e4p-26;
    p = p * r + 0x1.27e4fb7789f5cp-22;
    p = p * r + 0x1.71de3a556c734p-19;
    p = p * r + 0x1.a01a01a01a01ap-16;
    p = p * r + 0x1.a01a01a01a01ap-13;
    p = p * r + 0x1.6c16c16c16c17p-10;
    p = p * r + 0x1.1111111111111p-7;
    p = p * r + 0x1.5555555555555p-5;
    p = p * r + 0x1.5555555555555p-3;
    p = p * r + 0x1p-1;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* t and the shifter lie in one binade, so their bits differ by n */
    zt_v8l t_bits;
    memcpy(&t_bits, &t, sizeof t_bits);
    const int64_t shifter_bits = 0x4338000000000000;
    const zt_v8l scale_bits = (t_bits - shifter_bits + 1023) << 52;
    zt_v8d scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    const zt_v8d e = p * scale;
    /* -1 where d < -708 (so -inf too), 0 elsewhere (NaN too: it passes through) */
    const zt_v8l tiny = d < -708.0;
    zt_v8l e_bits;
    memcpy(&e_bits, &e, sizeof e_bits);
    e_bits &= ~tiny;
    zt_v8d out;
    memcpy(&out, &e_bits, sizeof out);
    return out;
}

/* Elements [j, j + 8) of x, with -inf past `end` (exp gives +0 there, which adds nothing). */
static inline __attribute__((always_inline)) zt_v8d load8(const float *x, int j, int end) {
    zt_v8f v;
    if (j + ZT_LSE_LANES <= end) {
        memcpy(&v, x + j, sizeof v);
    } else {
        float pad[ZT_LSE_LANES];
        for (int l = 0; l < ZT_LSE_LANES; l++)
            pad[l] = j + l < end ? x[j + l] : -INFINITY;
        memcpy(&v, pad, sizeof v);
    }
    return __builtin_convertvector(v, zt_v8d);
}

static inline __attribute__((always_inline)) double sum_exp_shifted_body(const float *x, /* (V) */
                                                                         int vocab,
                                                                         float max_logit) {
    const zt_v8d max = (zt_v8d){0} + (double)max_logit;
    zt_v8d sum = {0};
    for (int j = 0; j < vocab; j += ZT_LSE_LANES)
        sum += exp_nonpositive8(load8(x, j, vocab) - max);
    double total = 0.0;
    for (int l = 0; l < ZT_LSE_LANES; l++)
        total += sum[l];
    return total;
}

static inline __attribute__((always_inline)) float row_max_body(const float *x, /* (V) */
                                                                int vocab) {
    zt_v8f max = (zt_v8f){0} + x[0];
    for (int j = 0; j < vocab; j += ZT_LSE_LANES) {
        zt_v8f v;
        if (j + ZT_LSE_LANES <= vocab) {
            memcpy(&v, x + j, sizeof v);
        } else {
            for (int l = 0; l < ZT_LSE_LANES; l++)
                v[l] = j + l < vocab ? x[j + l] : x[0];
        }
        /* keeps the running max where v is NaN, as `if (x > max) max = x` does */
        const zt_v8i greater = v > max;
        zt_v8i v_bits, max_bits;
        memcpy(&v_bits, &v, sizeof v_bits);
        memcpy(&max_bits, &max, sizeof max_bits);
        max_bits = (v_bits & greater) | (max_bits & ~greater);
        memcpy(&max, &max_bits, sizeof max);
    }
    float m = max[0];
    for (int l = 1; l < ZT_LSE_LANES; l++)
        if (max[l] > m) m = max[l];
    return m;
}

static double log_sum_exp_portable(const float *x, int vocab) {
    const float max_logit = row_max_body(x, vocab);
    return (double)max_logit + log(sum_exp_shifted_body(x, vocab, max_logit));
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2,fma"))) static double log_sum_exp_avx2(const float *x, int vocab) {
    const float max_logit = row_max_body(x, vocab);
    return (double)max_logit + log(sum_exp_shifted_body(x, vocab, max_logit));
}

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))) static double
log_sum_exp_avx512(const float *x, int vocab) {
    const float max_logit = row_max_body(x, vocab);
    return (double)max_logit + log(sum_exp_shifted_body(x, vocab, max_logit));
}
#endif

/* zt_cpu_log_sum_exp_fold's body. The block's terms are summed against the running max, so a row
 * of one block gets exactly the bits of the whole-row log-sum-exp above. */
static inline __attribute__((always_inline)) void fold_block_body(const float *x, /* (n) */
                                                                  int n, double *state, int first) {
    const float block_max = row_max_body(x, n);
    const float old_max = (float)state[0];
    /* as row_max_body: a NaN block max never replaces a running one */
    const float max = first || block_max > old_max ? block_max : old_max;
    double sum;
    if (max == -INFINITY) {
        /* Nothing finite yet: exp(x - max) would be NaN for every -inf term, which adds 0 once a
         * finite max arrives; a NaN still makes the row NaN. */
        sum = first ? 0.0 : state[1];
        for (int j = 0; j < n; j++)
            if (isnan(x[j])) sum = NAN;
    } else {
        const double carried = first            ? 0.0
                               : max == old_max ? state[1]
                                                : state[1] * exp((double)old_max - (double)max);
        sum = carried + sum_exp_shifted_body(x, n, max);
    }
    state[0] = (double)max;
    state[1] = sum;
}

static void fold_block_portable(const float *x, int n, double *state, int first) {
    fold_block_body(x, n, state, first);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2,fma"))) static void fold_block_avx2(const float *x, int n,
                                                                double *state, int first) {
    fold_block_body(x, n, state, first);
}

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))) static void
fold_block_avx512(const float *x, int n, double *state, int first) {
    fold_block_body(x, n, state, first);
}
#endif

void zt_cpu_log_sum_exp_fold(zt_cpu_rng_path path, const float *x, int n, double *state,
                             int first) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (path == ZT_CPU_RNG_AVX512) {
        fold_block_avx512(x, n, state, first);
        return;
    }
    if (path == ZT_CPU_RNG_AVX2) {
        fold_block_avx2(x, n, state, first);
        return;
    }
#endif
    (void)path;
    fold_block_portable(x, n, state, first);
}

double zt_cpu_log_sum_exp(zt_cpu_rng_path path, const float *x, int vocab) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (path == ZT_CPU_RNG_AVX512) return log_sum_exp_avx512(x, vocab);
    if (path == ZT_CPU_RNG_AVX2) return log_sum_exp_avx2(x, vocab);
#endif
    (void)path;
    return log_sum_exp_portable(x, vocab);
}

zt_status zt_cpu_target_logprobs(zt_backend *be, float *logprob, /* (R) */
                                 const float *logits,            /* (R,V) */
                                 const int32_t *targets,         /* (R) */
                                 int n_rows, int vocab) {
    const char *op = "target_logprobs";
    ZT_TRY(zt_check_logprob_args(op, logprob, logits, targets, n_rows, vocab));
    /* Checked up front so a bad target leaves logprob untouched. */
    for (int r = 0; r < n_rows; r++) {
        if (targets[r] < 0 || targets[r] >= vocab)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d target %d outside [0, %d)", op, r,
                           (int)targets[r], vocab);
    }

    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int r = 0; r < n_rows; r++) {
        const float *row = logits + (size_t)r * vocab;
        logprob[r] = (float)((double)row[targets[r]] - zt_cpu_log_sum_exp(path, row, vocab));
    }
    return ZT_OK;
}

zt_status zt_cpu_target_logprobs_fold(zt_backend *be, float *logprob, /* (R) */
                                      double *state,                  /* (R,3) */
                                      const float *logits,            /* (R,n_cols) */
                                      const int32_t *targets,         /* (R) */
                                      int n_rows, int vocab, int col0, int n_cols) {
    const char *op = "target_logprobs_fold";
    ZT_TRY(zt_check_logprob_args(op, logprob, logits, targets, n_rows, vocab));
    ZT_TRY(zt_check_ptr(op, "state", state));
    if (n_cols < 1 || col0 < 0 || col0 > vocab - n_cols)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: columns [%d, %d + %d) outside the vocab of %d", op,
                       col0, col0, n_cols, vocab);
    if (col0 == 0)
        for (int r = 0; r < n_rows; r++)
            if (targets[r] < 0 || targets[r] >= vocab)
                return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d target %d outside [0, %d)", op, r,
                               (int)targets[r], vocab);

    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    const int last = col0 + n_cols == vocab;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int r = 0; r < n_rows; r++) {
        const float *block = logits + (size_t)r * n_cols;
        double *row_state = state + 3 * (size_t)r;
        zt_cpu_log_sum_exp_fold(path, block, n_cols, row_state, col0 == 0);
        const int target = targets[r];
        if (target >= col0 && target < col0 + n_cols) row_state[2] = (double)block[target - col0];
        if (last) logprob[r] = (float)(row_state[2] - (row_state[0] + log(row_state[1])));
    }
    return ZT_OK;
}
