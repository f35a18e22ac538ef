/* The emulated CUDA backend ("cuda-emu"): kernels/cuda compiled by the host compiler against
 * cudaemu.h, for tests. Same constructor as zt_cuda_backend_create, renamed; device must be 0. */
#ifndef ZT_CUDAEMU_BACKEND_H
#define ZT_CUDAEMU_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h"
#include "cuda/cuda_backend.h" /* zt_cuda_gemm_counts */

zt_status zt_cudaemu_backend_create(int device, zt_backend **out);
/* A zt_backend_register factory for "cuda-emu": the executor has one device and runs blocks on
 * its own workers, so n_threads does not apply. */
static inline zt_status zt_cudaemu_backend_factory(int n_threads, zt_backend **out) {
    (void)n_threads;
    return zt_cudaemu_backend_create(0, out);
}
zt_status zt_cudaemu_backend_set_linear_chunk(zt_backend *be, size_t floats);
void zt_cudaemu_backend_gemm_counts(zt_backend *be, zt_cuda_gemm_counts *out);
void zt_cudaemu_backend_attention_paths(zt_backend *be, zt_cuda_attention_path_counts *out);
zt_status zt_cudaemu_backend_set_attention_mode(zt_backend *be, int mode);
/* The emulated cuBLASLt's descriptors, layouts and preferences alive now
 * (tests/cudaemu/cudaemu_lt.cpp). */
long cudaemu_lt_live_objects(void);

#ifdef __cplusplus
}
#endif

#endif
