/* The CPU backend's constructor (kernels/cpu). Includable from C and C++. */
#ifndef ZT_CPU_BACKEND_H
#define ZT_CPU_BACKEND_H

#ifdef __cplusplus
extern "C" { /* backend.h itself has no C++ guard */
#endif

#include "backend.h"

/* Creates the CPU backend: buffers in host memory, ops parallel over n_threads OpenMP threads
 * (n_threads <= 0: OMP_NUM_THREADS, else every core; 1 without OpenMP), GEMMs through OpenBLAS
 * in f32 (zt_backend_set_gemm_precision switches to half inputs). */
zt_status zt_cpu_backend_create(int n_threads, zt_backend **out);

/* OpenBLAS's kernels (blas_kernels.c). The first call, which zt_cpu_backend_create makes, checks
 * the core OpenBLAS chose against the CPU's vector units and re-selects a core that is older
 * than them, unless OPENBLAS_CORETYPE names one. Then: a line for humans ("OpenBLAS 0.3.21,
 * SkylakeX kernels (...)"), the core OpenBLAS detected at load time and the core in use. An
 * OpenBLAS built without DYNAMIC_ARCH keeps its one core. Thread-safe; runs its check once. */
void zt_cpu_blas_select_kernels(void);
const char *zt_cpu_blas_kernels(void);
/* "OpenBLAS SkylakeX": the backend's gemm_kernels. */
const char *zt_cpu_blas_gemm_kernels(void);
const char *zt_cpu_blas_detected_core(void);
const char *zt_cpu_blas_core(void);

#ifdef __cplusplus
}
#endif

#endif
