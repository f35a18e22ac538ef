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

#ifdef __cplusplus
}
#endif

#endif
