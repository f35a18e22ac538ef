/* Qualifiers for math shared by the host C build (gcc, C11) and CUDA (nvcc, C++17). */
#ifndef ZT_HD_H
#define ZT_HD_H

#if defined(__CUDACC__)
#define ZT_HD __host__ __device__ __forceinline__
#define ZT_RESTRICT __restrict__
#else
#define ZT_HD static inline
#define ZT_RESTRICT restrict
#endif

#endif
