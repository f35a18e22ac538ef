/* The CUDA backend's constructor (kernels/cuda). Includable from C and C++. */
#ifndef ZT_CUDA_BACKEND_H
#define ZT_CUDA_BACKEND_H

#ifdef __cplusplus
extern "C" { /* backend.h itself has no C++ guard */
#endif

#include "backend.h"

/* The backend's cudaStream_t (as void *), for benchmarks that time with CUDA events. */
void *zt_cuda_backend_stream(zt_backend *be);

/* Creates the CUDA backend on device `device` (0-based): one stream, one cuBLASLt handle and its
 * workspace, GEMMs in f32 (zt_backend_set_gemm_precision switches). ZT_ERR_UNAVAILABLE when the
 * runtime finds no device or `device` is out of range; ZT_ERR_CUDA when creating the stream or
 * the cuBLASLt handle fails. */
zt_status zt_cuda_backend_create(int device, zt_backend **out);

#ifdef __cplusplus
}
#endif

#endif
