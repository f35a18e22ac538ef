/* layernorm_backward: the gradient of layernorm (torch.nn.LayerNorm, biased variance). With
 * x-hat = (x - mean) * rstd and g = d_out * gamma:
 *     d_in    = rstd * (g - mean_c(g) - x-hat * mean_c(g * x-hat))
 *     d_gamma += sum_n d_out * x-hat,   d_beta += sum_n d_out.
 * d_in may be d_out but must not overlap `in` or a shifted d_out (refused). Scratch: 2N + C floats
 * from zt_cpu_scratch, sized by zt_cpu_layernorm_backward_scratch_floats (the planner asks it). */
#include "core/status.h"
#include "cpu/cpu_backward.h"
#include "cpu/cpu_common.h"

/* d_gamma and d_beta are column sums over rows: the threads take pieces of this many columns
 * and walk the rows in order, so the sums do not depend on the thread count. */
#define ZT_CPU_LAYERNORM_PIECE_COLUMNS 64

/* x-hat as the forward computes it, in f32 from its f32 mean and 1/std: the gradient is that of
 * the function the forward evaluated. */
static inline float normalised(float x, float mean, float rstd) {
    return (x - mean) * rstd;
}

/* d_gamma[c] += sum_n d_out[n,c] * x-hat[n,c], d_beta[c] += sum_n d_out[n,c], summed in double
 * in row order and rounded once into the running gradient. */
static void parameter_gradients(zt_cpu_backend *cpu, float *d_gamma, float *d_beta, /* (C) */
                                const float *d_out, const float *in,                /* (N,C) */
                                const float *mean, const float *rstd,               /* (N) */
                                int n_rows, int n_cols) {
    const int n_pieces =
        (n_cols + ZT_CPU_LAYERNORM_PIECE_COLUMNS - 1) / ZT_CPU_LAYERNORM_PIECE_COLUMNS;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int piece = 0; piece < n_pieces; piece++) {
        const int first = piece * ZT_CPU_LAYERNORM_PIECE_COLUMNS;
        const int width = n_cols - first < ZT_CPU_LAYERNORM_PIECE_COLUMNS
                              ? n_cols - first
                              : ZT_CPU_LAYERNORM_PIECE_COLUMNS;
        double sum_gamma[ZT_CPU_LAYERNORM_PIECE_COLUMNS] = {0};
        double sum_beta[ZT_CPU_LAYERNORM_PIECE_COLUMNS] = {0};
        for (int n = 0; n < n_rows; n++) {
            const size_t at = (size_t)n * (size_t)n_cols + (size_t)first;
            const float *dy = d_out + at, *x = in + at;
            for (int c = 0; c < width; c++) {
                sum_gamma[c] += (double)dy[c] * (double)normalised(x[c], mean[n], rstd[n]);
                sum_beta[c] += dy[c];
            }
        }
        for (int c = 0; c < width; c++) {
            if (d_gamma) d_gamma[first + c] = (float)((double)d_gamma[first + c] + sum_gamma[c]);
            if (d_beta) d_beta[first + c] = (float)((double)d_beta[first + c] + sum_beta[c]);
        }
    }
}

size_t zt_cpu_layernorm_backward_scratch_floats(int n_rows, int n_cols) {
    return 2 * (size_t)n_rows + (size_t)n_cols;
}

zt_status zt_cpu_layernorm_backward(zt_backend *be, float *d_in,   /* (N,C) = */
                                    float *d_gamma, float *d_beta, /* (C) +=, (C) += */
                                    const float *d_out,            /* (N,C) */
                                    const float *in,               /* (N,C) */
                                    zt_weight gamma,               /* (C) or absent */
                                    int n_rows, int n_cols, float eps) {
    const char *op = "layernorm_backward";
    zt_cpu_backend *cpu = zt_cpu(be);
    ZT_TRY(zt_check_layernorm_backward_args(op, d_in, d_gamma, d_beta, d_out, in, gamma, n_rows,
                                            n_cols, eps));

    /* Scratch: [mean (N) | rstd (N) | gamma widened (C)]. The statistics are kept because the
     * parameter pass reads them column-wise, after which d_in may overwrite d_out. */
    float *scratch = NULL;
    ZT_TRY(zt_cpu_scratch(cpu, zt_cpu_layernorm_backward_scratch_floats(n_rows, n_cols), op,
                          &scratch));
    float *mean = scratch, *rstd = scratch + n_rows, *scale = scratch + 2 * (size_t)n_rows;
    if (gamma.data)
        zt_cpu_weight_to_f32(scale, gamma, 0, (size_t)n_cols);
    else
        for (int c = 0; c < n_cols; c++)
            scale[c] = 1.0f;

    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int n = 0; n < n_rows; n++)
        zt_cpu_layernorm_row_statistics(in + (size_t)n * n_cols, n_cols, eps, &mean[n], &rstd[n]);

    /* Before d_in is written: d_in may be d_out. */
    if (d_gamma || d_beta)
        parameter_gradients(cpu, d_gamma, d_beta, d_out, in, mean, rstd, n_rows, n_cols);

    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int n = 0; n < n_rows; n++) {
        const size_t at = (size_t)n * (size_t)n_cols;
        const float *dy = d_out + at, *x = in + at;
        float *dx = d_in + at;
        /* The row's two means in double: a 3072-wide row of terms of either sign would lose
         * digits in f32, and the difference g - mean(g) can cancel. */
        double sum_g = 0.0, sum_g_xhat = 0.0;
        for (int c = 0; c < n_cols; c++) {
            const double g = (double)dy[c] * (double)scale[c];
            sum_g += g;
            sum_g_xhat += g * (double)normalised(x[c], mean[n], rstd[n]);
        }
        const double mean_g = sum_g / n_cols, mean_g_xhat = sum_g_xhat / n_cols;
        /* dy[c] is read before dx[c] is written, so dx may be dy. */
        for (int c = 0; c < n_cols; c++) {
            const double g = (double)dy[c] * (double)scale[c];
            const double xhat = normalised(x[c], mean[n], rstd[n]);
            dx[c] = (float)((double)rstd[n] * (g - mean_g - xhat * mean_g_xhat));
        }
    }
    return ZT_OK;
}
