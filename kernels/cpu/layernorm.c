/* layernorm over the last dimension, as torch.nn.LayerNorm (biased variance). */
#include <math.h>

#include "core/status.h"
#include "cpu/cpu_common.h"

/* Two passes in double: the mean is exact enough that subtracting it loses nothing for rows with
 * a large common offset, where E[x^2] - E[x]^2 in f32 would cancel catastrophically. Shared with
 * layernorm_backward, which must normalise with the very same bits. */
void zt_cpu_layernorm_row_statistics(const float *x, /* (C) */
                                     int n_cols, float eps, float *mean_out, float *rstd_out) {
    double sum = 0.0;
    ZT_CPU_SIMD_SUM(sum)
    for (int c = 0; c < n_cols; c++)
        sum += x[c];
    double mean = sum / n_cols;
    double squares = 0.0;
    ZT_CPU_SIMD_SUM(squares)
    for (int c = 0; c < n_cols; c++) {
        double centered = x[c] - mean;
        squares += centered * centered;
    }
    double variance = squares / n_cols;
    *mean_out = (float)mean;
    *rstd_out = (float)(1.0 / sqrt(variance + (double)eps));
}

/* Element c of a normalised row: one expression for layernorm and layernorm_half, so that the
 * half output is exactly the f32 output rounded. */
static inline float normalized(const float *x, /* (C) */
                               int c, float mean, float rstd, zt_weight gamma, zt_weight beta) {
    float scale = gamma.data ? zt_cpu_weight_at(gamma, (size_t)c) : 1.0f;
    float shift = beta.data ? zt_cpu_weight_at(beta, (size_t)c) : 0.0f;
    return (x[c] - mean) * rstd * scale + shift;
}

zt_status zt_cpu_layernorm(zt_backend *be, float *out,      /* (N,C) */
                           const float *in,                 /* (N,C) */
                           zt_weight gamma, zt_weight beta, /* (C), (C) */
                           int n_rows, int n_cols, float eps) {
    const char *op = "layernorm";
    ZT_TRY(zt_check_layernorm_args(op, out, in, gamma, beta, n_rows, n_cols, eps));

    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int n = 0; n < n_rows; n++) {
        const float *x = in + (size_t)n * n_cols;
        float *y = out + (size_t)n * n_cols;
        float mean, rstd;
        /* Statistics first: out may equal in. */
        zt_cpu_layernorm_row_statistics(x, n_cols, eps, &mean, &rstd);
        for (int c = 0; c < n_cols; c++)
            y[c] = normalized(x, c, mean, rstd, gamma, beta);
    }
    return ZT_OK;
}

zt_status zt_cpu_layernorm_half(zt_backend *be, void *out, zt_dtype out_dtype, /* (N,C) */
                                const float *in,                               /* (N,C) */
                                zt_weight gamma, zt_weight beta,               /* (C), (C) */
                                int n_rows, int n_cols, float eps) {
    const char *op = "layernorm_half";
    ZT_TRY(zt_check_layernorm_half_args(op, out, out_dtype, in, gamma, beta, n_rows, n_cols, eps));

    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int n = 0; n < n_rows; n++) {
        const float *x = in + (size_t)n * n_cols;
        const size_t row0 = (size_t)n * n_cols;
        float mean, rstd;
        zt_cpu_layernorm_row_statistics(x, n_cols, eps, &mean, &rstd);
        for (int c = 0; c < n_cols; c++)
            zt_store_rne(out, out_dtype, row0 + (size_t)c,
                         normalized(x, c, mean, rstd, gamma, beta));
    }
    return ZT_OK;
}
