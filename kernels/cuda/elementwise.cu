/* Elementwise ops: the residual add. */
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

static __global__ void zt_add_k(float *__restrict__ x,       /* (n_elems) */
                                const float *__restrict__ y, /* (n_elems) */
                                size_t n_elems) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride)
        x[i] += y[i];
}

zt_status zt_cuda_add(zt_backend *be, float *x, /* (n_elems) */
                      const float *y,           /* (n_elems) */
                      size_t n_elems) {
    const char *op = "add";
    if (n_elems == 0) return ZT_OK; /* nothing to add, as on the CPU */
    ZT_TRY(zt_check_ptr(op, "x", x));
    ZT_TRY(zt_check_ptr(op, "y", y));
    ZT_TRY(zt_cuda_enter(be));
    ZT_LAUNCH(zt_add_k, zt_stride_blocks(n_elems), kBlockThreads, 0, zt_cuda(be)->stream, x, y,
              n_elems);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
