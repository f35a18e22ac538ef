/* linear: out = in @ W^T (+ bias) (then ReLU), through cuBLAS in full f32 (no TF32). */
#include "cuda/cuda_common.cuh"

/* Half-precision weights are widened to f32 at most ZT_CUDA_LINEAR_CHUNK_FLOATS elements at a
 * time (cuda_common.cuh), so linear's scratch stays bounded however large the layer. */

namespace ZT_CUDA_NAMESPACE {

// ---- the one GEMM call site ----

/* out[:, 0:n_out] (row stride ldc) = in @ w_rows^T, everything f32 and row-major. cuBLAS is
 * column-major, where a row-major (R, K) matrix reads as its (K, R) transpose; so this computes
 * out^T (n_out, N) = w_rows (n_out, IC) . in^T (IC, N): op(A) = T on w_rows, op(B) = N on in. */
static zt_status gemm_rows(zt_cuda_backend *cb, float *out, /* (N,ldc) */
                           const float *in,                 /* (N,IC) */
                           const float *w_rows,             /* (n_out,IC) */
                           int n_rows, int in_features, int n_out, int ldc) {
    const float one = 1.0f, zero = 0.0f;
    ZT_CUBLAS_TRY(cublasGemmEx(cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, n_rows, in_features,
                               &one, w_rows, CUDA_R_32F, in_features, in, CUDA_R_32F, in_features,
                               &zero, out, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
    return ZT_OK;
}

// ---- kernels ----

/* dst = src widened to f32; exact for f16 and bf16. */
static __global__ void zt_widen_k(float *__restrict__ dst, /* (n_elems) */
                                  const void *src,         /* (n_elems) */
                                  zt_dtype src_dtype, size_t n_elems) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride)
        dst[i] = zt_weight_elem(src, src_dtype, i);
}

/* The epilogue: out += bias per column, then ReLU written so that NaN passes through, as
 * torch.relu does (divergence stays visible). */
static __global__ void zt_bias_relu_k(float *out,                            /* (N,OC) */
                                      const void *bias, zt_dtype bias_dtype, /* (OC) or NULL */
                                      size_t n_elems, int out_features, int relu) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride) {
        float value = out[i];
        if (bias) value += zt_weight_elem(bias, bias_dtype, i % (size_t)out_features);
        if (relu) value = value < 0.0f ? 0.0f : value;
        out[i] = value;
    }
}

// ---- the op ----

zt_status zt_cuda_linear(zt_backend *be, float *out, /* (N,OC) */
                         const float *in,            /* (N,IC) */
                         zt_weight w,                /* (OC,IC) */
                         zt_weight bias,             /* (OC) or absent */
                         int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear";
    ZT_TRY(zt_check_linear_args(op, out, in, w, bias, n_rows, in_features, out_features));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    if (w.dtype == ZT_F32) {
        ZT_TRY(gemm_rows(cb, out, in, static_cast<const float *>(w.data), n_rows, in_features,
                         out_features, out_features));
    } else {
        /* cuBLAS has no f32 x f16 GEMM, and rounding the activations to half would change the
         * result; so the weight is widened (exactly) chunk by chunk and the GEMM stays f32. */
        /* the planner asks the same function, so the plan and the op cannot drift apart */
        size_t chunk_floats = zt_cuda_linear_scratch_floats(in_features, out_features, w.dtype);
        size_t chunk_rows = chunk_floats / (size_t)in_features;
        float *chunk;
        ZT_TRY(zt_cuda_scratch(cb, chunk_floats, op, &chunk));
        const size_t elem_size = zt_dtype_size(w.dtype);
        for (size_t first = 0; first < (size_t)out_features; first += chunk_rows) {
            size_t n_out = (size_t)out_features - first;
            if (n_out > chunk_rows) n_out = chunk_rows;
            const size_t n_elems = n_out * (size_t)in_features;
            const char *src =
                static_cast<const char *>(w.data) + first * (size_t)in_features * elem_size;
            ZT_LAUNCH(zt_widen_k, zt_stride_blocks(n_elems), kBlockThreads, 0, cb->stream, chunk,
                      src, w.dtype, n_elems);
            ZT_TRY(gemm_rows(cb, out + first, in, chunk, n_rows, in_features, (int)n_out,
                             out_features));
        }
    }

    if (bias.data || relu) {
        const size_t n_elems = (size_t)n_rows * (size_t)out_features;
        ZT_LAUNCH(zt_bias_relu_k, zt_stride_blocks(n_elems), kBlockThreads, 0, cb->stream, out,
                  bias.data, bias.dtype, n_elems, out_features, relu);
    }
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
