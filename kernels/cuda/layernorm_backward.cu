/* layernorm_backward: the gradient of layernorm (torch.nn.LayerNorm, biased variance). With
 * x-hat = (x - mean) * rstd and g = d_out * gamma:
 *     d_in    = rstd * (g - mean_c(g) - x-hat * mean_c(g * x-hat))
 *     d_gamma += sum_n d_out * x-hat,   d_beta += sum_n d_out.
 * The CPU backend's numerics (kernels/cpu/layernorm_backward.c): x-hat in f32 from the forward's
 * own statistics, the row means and the parameter sums in double, rounded once. d_in may be d_out.
 *
 * Four launches: the statistics (one block per row, the forward's reduction), the parameter sums
 * as fixed pieces of rows per column, those pieces merged in piece order, then d_in (one block per
 * row). Every sum runs in an order fixed by N and C, so the bits never depend on the grid.
 * Scratch (zt_cuda_scratch): mean and rstd per row, then two (pieces, C) arrays of double. */
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* Pieces of at least 32 rows, and at most 256 pieces, so that the partials stay within
 * 256 x C x 16 bytes however many rows a batch has. A function of N alone. */
constexpr int kLayernormPieceRows = 32;
constexpr int kLayernormMaxPieces = 256;

static int piece_rows_of(int n_rows) {
    int rows = (n_rows + kLayernormMaxPieces - 1) / kLayernormMaxPieces;
    return rows < kLayernormPieceRows ? kLayernormPieceRows : rows;
}

/* x-hat as the forward computes it, in f32 from its f32 mean and 1/std: the gradient is that of
 * the function the forward evaluated. */
__device__ __forceinline__ float normalised(float x, float mean, float rstd) {
    return (x - mean) * rstd;
}

static __global__ void __launch_bounds__(kBlockThreads)
    zt_layernorm_stats_k(float *mean, float *rstd, /* (N), (N) */
                         const float *in,          /* (N,C) */
                         int n_cols, float eps) {
    __shared__ float partials[kWarpSize];
    const size_t row = blockIdx.x;
    float row_mean, row_rstd;
    zt_layernorm_row_stats(in + row * (size_t)n_cols, n_cols, eps, partials, &row_mean, &row_rstd);
    if (threadIdx.x == 0) {
        mean[row] = row_mean;
        rstd[row] = row_rstd;
    }
}

/* Grid (column blocks, pieces): thread c of piece p sums its column over the piece's rows in row
 * order, in double. sum_gamma or sum_beta NULL: not wanted. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_layernorm_param_pieces_k(double *sum_gamma, double *sum_beta,  /* (pieces,C) */
                                const float *d_out, const float *in,  /* (N,C) */
                                const float *mean, const float *rstd, /* (N), (N) */
                                int n_rows, int n_cols, int piece_rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n_cols) return;
    const int first = (int)blockIdx.y * piece_rows;
    const int end = n_rows - first < piece_rows ? n_rows : first + piece_rows;
    double gamma_part = 0.0, beta_part = 0.0;
    for (int n = first; n < end; n++) {
        const size_t at = (size_t)n * (size_t)n_cols + (size_t)c;
        const float dy = d_out[at];
        gamma_part += (double)dy * (double)normalised(in[at], mean[n], rstd[n]);
        beta_part += dy;
    }
    const size_t slot = (size_t)blockIdx.y * (size_t)n_cols + (size_t)c;
    if (sum_gamma) sum_gamma[slot] = gamma_part;
    if (sum_beta) sum_beta[slot] = beta_part;
}

/* d_gamma[c] += the pieces' sums of column c, added in piece order and rounded once. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_layernorm_param_merge_k(float *d_gamma, float *d_beta,                   /* (C), (C) */
                               const double *sum_gamma, const double *sum_beta, /* (pieces,C) */
                               int n_cols, int n_pieces) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n_cols) return;
    double gamma_total = 0.0, beta_total = 0.0;
    for (int p = 0; p < n_pieces; p++) {
        const size_t slot = (size_t)p * (size_t)n_cols + (size_t)c;
        if (d_gamma) gamma_total += sum_gamma[slot];
        if (d_beta) beta_total += sum_beta[slot];
    }
    if (d_gamma) d_gamma[c] = (float)((double)d_gamma[c] + gamma_total);
    if (d_beta) d_beta[c] = (float)((double)d_beta[c] + beta_total);
}

/* One block per row. Every thread reads its columns of d_out before the reductions' barriers and
 * writes only its own columns after, so d_in may be d_out. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_layernorm_backward_rows_k(float *d_in,                             /* (N,C) */
                                 const float *d_out, const float *in,     /* (N,C) */
                                 const float *mean, const float *rstd,    /* (N), (N) */
                                 const void *gamma, zt_dtype gamma_dtype, /* (C) or NULL */
                                 int n_cols) {
    __shared__ double partials[kWarpSize];
    const size_t row = blockIdx.x, at = row * (size_t)n_cols;
    const float *dy = d_out + at, *x = in + at;
    float *dx = d_in + at;
    const float row_mean = mean[row], row_rstd = rstd[row];

    /* The row's two means in double: a 3072-wide row of terms of either sign would lose digits
     * in f32, and the difference g - mean(g) can cancel. */
    double sum_g = 0.0, sum_g_xhat = 0.0;
    for (int c = threadIdx.x; c < n_cols; c += blockDim.x) {
        const double scale = gamma ? (double)zt_load_f32(gamma, gamma_dtype, (size_t)c) : 1.0;
        const double g = (double)dy[c] * scale;
        sum_g += g;
        sum_g_xhat += g * (double)normalised(x[c], row_mean, row_rstd);
    }
    const double mean_g = zt_block_sum_double(sum_g, partials) / n_cols;
    const double mean_g_xhat = zt_block_sum_double(sum_g_xhat, partials) / n_cols;

    for (int c = threadIdx.x; c < n_cols; c += blockDim.x) {
        const double scale = gamma ? (double)zt_load_f32(gamma, gamma_dtype, (size_t)c) : 1.0;
        const double g = (double)dy[c] * scale;
        const double xhat = normalised(x[c], row_mean, row_rstd);
        dx[c] = (float)((double)row_rstd * (g - mean_g - xhat * mean_g_xhat));
    }
}

/* [mean (N) | rstd (N)], 256-byte aligned, then the pieces' sums: d_gamma's, d_beta's. */
static size_t stats_bytes_of(int n_rows) {
    return zt_align256(2 * (size_t)n_rows * sizeof(float));
}

size_t zt_cuda_layernorm_backward_scratch_bytes(int n_rows, int n_cols, int with_params) {
    if (n_rows <= 0 || n_cols <= 0) return 0;
    const int piece_rows = piece_rows_of(n_rows);
    const size_t n_pieces = (size_t)((n_rows + piece_rows - 1) / piece_rows);
    const size_t sums_bytes = with_params ? 2 * n_pieces * (size_t)n_cols * sizeof(double) : 0;
    return stats_bytes_of(n_rows) + sums_bytes;
}

zt_status zt_cuda_layernorm_backward(zt_backend *be, float *d_in,   /* (N,C) = */
                                     float *d_gamma, float *d_beta, /* (C) +=, (C) += */
                                     const float *d_out,            /* (N,C) */
                                     const float *in,               /* (N,C) */
                                     zt_weight gamma,               /* (C) or absent */
                                     int n_rows, int n_cols, float eps) {
    const char *op = "layernorm_backward";
    ZT_TRY(zt_check_layernorm_backward_args(op, d_in, d_gamma, d_beta, d_out, in, gamma, n_rows,
                                            n_cols, eps));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    const bool params = d_gamma != NULL || d_beta != NULL;
    const int piece_rows = piece_rows_of(n_rows);
    const int n_pieces = (n_rows + piece_rows - 1) / piece_rows;
    const size_t stats_bytes = stats_bytes_of(n_rows);
    const size_t scratch_bytes = zt_cuda_layernorm_backward_scratch_bytes(n_rows, n_cols, params);
    float *scratch = NULL;
    ZT_TRY(zt_cuda_scratch(cb, scratch_bytes / sizeof(float), op, &scratch));
    float *mean = scratch, *rstd = scratch + n_rows;
    double *sum_gamma = reinterpret_cast<double *>(reinterpret_cast<char *>(scratch) + stats_bytes);
    double *sum_beta = sum_gamma + (size_t)n_pieces * (size_t)n_cols;

    ZT_LAUNCH(zt_layernorm_stats_k, (unsigned)n_rows, kBlockThreads, 0, cb->stream, mean, rstd, in,
              n_cols, eps);
    /* Before d_in is written: d_in may be d_out. */
    if (params) {
        const unsigned col_blocks = (unsigned)((n_cols + kBlockThreads - 1) / kBlockThreads);
        ZT_LAUNCH(zt_layernorm_param_pieces_k, dim3(col_blocks, (unsigned)n_pieces), kBlockThreads,
                  0, cb->stream, d_gamma ? sum_gamma : NULL, d_beta ? sum_beta : NULL, d_out, in,
                  mean, rstd, n_rows, n_cols, piece_rows);
        ZT_LAUNCH(zt_layernorm_param_merge_k, col_blocks, kBlockThreads, 0, cb->stream, d_gamma,
                  d_beta, sum_gamma, sum_beta, n_cols, n_pieces);
    }
    ZT_LAUNCH(zt_layernorm_backward_rows_k, (unsigned)n_rows, kBlockThreads, 0, cb->stream, d_in,
              d_out, in, mean, rstd, gamma.data, gamma.dtype, n_cols);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
