/* Index validation for ops whose indices live on the device (gather rows, target tokens). The
 * contract wants a bad index reported by position and value before anything is written, so the
 * check runs as its own kernel and its answer comes back to the host. */
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* No valid position reaches this: cudaMemsetAsync with byte 0x7f writes it. */
constexpr int kNoBadIndex = 0x7f7f7f7f;

/* first_bad = min n with values[n] outside [0, limit); atomicMin keeps the answer independent
 * of the order in which blocks run. */
static __global__ void zt_find_bad_index_k(int *first_bad,        /* (1) */
                                           const int32_t *values, /* (n) */
                                           int n, int limit) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += stride) {
        int32_t value = values[i];
        if (value < 0 || value >= limit) atomicMin(first_bad, (int)i);
    }
}

zt_status zt_cuda_find_bad_index(zt_cuda_backend *cb, const int32_t *values, /* (n) */
                                 int n, int limit, int *first_bad, int32_t *bad_value) {
    *first_bad = -1;
    *bad_value = 0;
    if (zt_cuda_indices_vouched(cb, values, (size_t)n, limit)) return ZT_OK;
    ZT_CUDA_TRY(cudaMemsetAsync(cb->index_error, 0x7f, sizeof(int), cb->stream));
    ZT_LAUNCH(zt_find_bad_index_k, zt_stride_blocks((size_t)n), kBlockThreads, 0, cb->stream,
              cb->index_error, values, n, limit);
    int found = kNoBadIndex;
    ZT_CUDA_TRY(
        cudaMemcpyAsync(&found, cb->index_error, sizeof found, cudaMemcpyDeviceToHost, cb->stream));
    ZT_TRY(zt_cuda_wait(cb));
    if (found == kNoBadIndex) return ZT_OK;
    if (found < 0 || found >= n)
        return zt_fail(ZT_ERR_INTERNAL, "index check: impossible position %d of %d", found, n);
    ZT_CUDA_TRY(cudaMemcpyAsync(bad_value, values + found, sizeof *bad_value,
                                cudaMemcpyDeviceToHost, cb->stream));
    ZT_TRY(zt_cuda_wait(cb));
    *first_bad = found;
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
