/* layernorm over the last dimension, as torch.nn.LayerNorm (biased variance). */
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* Stores a normalised element: f32 as is, or rounded to nearest even by the conversions linear's
 * rounding kernel uses (linear.cu's zt_narrow_k), so layernorm_half's output is exactly what
 * round_half makes of layernorm's. */
static __device__ __forceinline__ void store(float *y, size_t i, float value, zt_dtype) {
    y[i] = value;
}
static __device__ __forceinline__ void store(void *y, size_t i, float value, zt_dtype dtype) {
    if (dtype == ZT_F16)
        static_cast<__half *>(y)[i] = __float2half_rn(value);
    else
        static_cast<__nv_bfloat16 *>(y)[i] = __float2bfloat16_rn(value);
}

/* One block per row, statistics by zt_layernorm_row_stats (cuda_common.cuh). Each thread reads
 * and writes only its own columns, so out may equal in (f32 output). Out is float* (layernorm) or
 * void* in out_dtype (layernorm_half); both compute each element by one expression. */
template <typename Out>
static __global__ void __launch_bounds__(kBlockThreads)
    zt_layernorm_k(Out *out, zt_dtype out_dtype,            /* (N,C) */
                   const float *in,                         /* (N,C) */
                   const void *gamma, zt_dtype gamma_dtype, /* (C) or NULL */
                   const void *beta, zt_dtype beta_dtype,   /* (C) or NULL */
                   int n_cols, float eps) {
    __shared__ float partials[kWarpSize];
    const size_t row = blockIdx.x;
    const float *x = in + row * (size_t)n_cols;
    const size_t row0 = row * (size_t)n_cols;
    float mean, rstd;
    zt_layernorm_row_stats(x, n_cols, eps, partials, &mean, &rstd);

    for (int c = threadIdx.x; c < n_cols; c += blockDim.x) {
        float scale = gamma ? zt_load_f32(gamma, gamma_dtype, (size_t)c) : 1.0f;
        float shift = beta ? zt_load_f32(beta, beta_dtype, (size_t)c) : 0.0f;
        store(out, row0 + (size_t)c, (x[c] - mean) * rstd * scale + shift, out_dtype);
    }
}

zt_status zt_cuda_layernorm(zt_backend *be, float *out,      /* (N,C) */
                            const float *in,                 /* (N,C) */
                            zt_weight gamma, zt_weight beta, /* (C), (C) */
                            int n_rows, int n_cols, float eps) {
    const char *op = "layernorm";
    ZT_TRY(zt_check_layernorm_args(op, out, in, gamma, beta, n_rows, n_cols, eps));
    ZT_TRY(zt_cuda_enter(be));
    ZT_LAUNCH(zt_layernorm_k<float>, (unsigned)n_rows, kBlockThreads, 0, zt_cuda(be)->stream, out,
              ZT_F32, in, gamma.data, gamma.dtype, beta.data, beta.dtype, n_cols, eps);
    return ZT_OK;
}

zt_status zt_cuda_layernorm_half(zt_backend *be, void *out, zt_dtype out_dtype, /* (N,C) */
                                 const float *in,                               /* (N,C) */
                                 zt_weight gamma, zt_weight beta,               /* (C), (C) */
                                 int n_rows, int n_cols, float eps) {
    const char *op = "layernorm_half";
    ZT_TRY(zt_check_layernorm_half_args(op, out, out_dtype, in, gamma, beta, n_rows, n_cols, eps));
    ZT_TRY(zt_cuda_enter(be));
    ZT_LAUNCH(zt_layernorm_k<void>, (unsigned)n_rows, kBlockThreads, 0, zt_cuda(be)->stream, out,
              out_dtype, in, gamma.data, gamma.dtype, beta.data, beta.dtype, n_cols, eps);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
