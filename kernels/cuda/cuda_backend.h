/* The CUDA backend's constructor (kernels/cuda). Includable from C and C++. */
#ifndef ZT_CUDA_BACKEND_H
#define ZT_CUDA_BACKEND_H

#ifdef __cplusplus
extern "C" { /* backend.h itself has no C++ guard */
#endif

#include "backend.h"

/* Sets the scratch one chunk of linear's converted operand may take, in floats (default 16M:
 * 64 MiB; at least 1024): that many widened f32 weight elements, or twice as many half activation
 * elements. The tests lower it so that small layers take linear's chunked paths (several
 * half-input chunks, widened weight chunks) on the real library too. Takes effect for scratch
 * plans made after it. */
zt_status zt_cuda_backend_set_linear_chunk(zt_backend *be, size_t floats);
/* What the backend's GEMM call site has done since the backend was created, so that tests and
 * benchmarks can hold a step to its cuBLASLt host work (docs/design.md §4.3, "GEMMs"). */
typedef struct zt_cuda_gemm_counts {
    unsigned long long matmuls;             /* cublasLtMatmul calls */
    unsigned long long descriptors_created; /* matmul descriptors, layouts and preferences */
    unsigned long long heuristic_queries;   /* cublasLtMatmulAlgoGetHeuristic calls */
    unsigned long long algo_checks;         /* cublasLtMatmulAlgoCheck calls */
    int cached_plans;                       /* entries in the GEMM plan cache now */
    unsigned long long batched_matmuls;     /* of matmuls, strided batches (linear_batched) */
    int batched_refused; /* 1: cuBLASLt refused a batch; linear_batched runs member by member */
} zt_cuda_gemm_counts;
void zt_cuda_backend_gemm_counts(zt_backend *be, zt_cuda_gemm_counts *out);

/* Which path `attention` took since the backend was created (--gemm half tries cuDNN first,
 * kernels/cuda/attention_cudnn.cu): calls on cuDNN (some sequences may still have gone to the
 * f32 kernel, see there) and calls whose shape cuDNN refused. f32 and TF32 modes count neither. */
typedef struct zt_cuda_attention_path_counts {
    unsigned long long cudnn;
    unsigned long long f32_kernel;
    unsigned long long plan_builds; /* shapes tried on cuDNN (each once: plans are cached) */
} zt_cuda_attention_path_counts;
void zt_cuda_backend_attention_paths(zt_backend *be, zt_cuda_attention_path_counts *out);
/* What `attention` does under --gemm half (f32 and TF32 always take the f32 kernel):
 *   AUTO (the default)  cuDNN with q, k, v rounded to the half dtype linear's latest GEMM took
 *                       (the model's stored f16 or bf16: the q/k/v projections run just
 *                       before); the f32 kernel when that GEMM took f32 inputs (an f32 model,
 *                       whose GEMMs stay f32 under --gemm half) or there was none yet;
 *   F32                 the f32 kernel;
 *   F16, BF16           cuDNN in that dtype, whatever the GEMMs did (tests).
 * Takes effect for the next call. */
typedef enum zt_cuda_attention_mode {
    ZT_CUDA_ATTENTION_AUTO = 0,
    ZT_CUDA_ATTENTION_F32 = 1,
    ZT_CUDA_ATTENTION_F16 = 2,
    ZT_CUDA_ATTENTION_BF16 = 3,
} zt_cuda_attention_mode;
zt_status zt_cuda_backend_set_attention_mode(zt_backend *be,
                                             int mode); /* a zt_cuda_attention_mode */

/* Target rows per LM-head chunk on CUDA (zt_backend.head_chunk_rows). Each chunk's GEMM reads the
 * whole (V, e) head table again (77 MB for opt-125m in bf16): 64-row chunks read it 64 times for
 * the 4096 target rows of an all-token batch, 1024-row chunks 4 times, and give the GEMM enough
 * rows to be compute-bound and target_logprobs enough rows to fill the device. The price is the
 * logits buffer, 1024 x 50272 x 4 B = 206 MB for OPT's vocabulary, small beside the device; past
 * ~1024 rows the table reads are already a fraction of the logits' own traffic (written once,
 * read once), so longer chunks would buy little for more memory. Lowered by the host executor so
 * that its tests run several chunks. */
#ifndef ZT_CUDA_HEAD_CHUNK_ROWS
#define ZT_CUDA_HEAD_CHUNK_ROWS 1024
#endif

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
