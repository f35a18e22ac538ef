/* layernorm over the last dimension, as torch.nn.LayerNorm (biased variance). */
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* One block per row, statistics by zt_layernorm_row_stats (cuda_common.cuh). Each thread reads
 * and writes only its own columns, so out may equal in. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_layernorm_k(float *out,                              /* (N,C) */
                   const float *in,                         /* (N,C) */
                   const void *gamma, zt_dtype gamma_dtype, /* (C) or NULL */
                   const void *beta, zt_dtype beta_dtype,   /* (C) or NULL */
                   int n_cols, float eps) {
    __shared__ float partials[kWarpSize];
    const size_t row = blockIdx.x;
    const float *x = in + row * (size_t)n_cols;
    float *y = out + row * (size_t)n_cols;
    float mean, rstd;
    zt_layernorm_row_stats(x, n_cols, eps, partials, &mean, &rstd);

    for (int c = threadIdx.x; c < n_cols; c += blockDim.x) {
        float scale = gamma ? zt_load_f32(gamma, gamma_dtype, (size_t)c) : 1.0f;
        float shift = beta ? zt_load_f32(beta, beta_dtype, (size_t)c) : 0.0f;
        y[c] = (x[c] - mean) * rstd * scale + shift;
    }
}

zt_status zt_cuda_layernorm(zt_backend *be, float *out,      /* (N,C) */
                            const float *in,                 /* (N,C) */
                            zt_weight gamma, zt_weight beta, /* (C), (C) */
                            int n_rows, int n_cols, float eps) {
    const char *op = "layernorm";
    ZT_TRY(zt_check_layernorm_args(op, out, in, gamma, beta, n_rows, n_cols, eps));
    ZT_TRY(zt_cuda_enter(be));
    ZT_LAUNCH(zt_layernorm_k, (unsigned)n_rows, kBlockThreads, 0, zt_cuda(be)->stream, out, in,
              gamma.data, gamma.dtype, beta.data, beta.dtype, n_cols, eps);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
