/* What the CUDA backend's .cu files share: the backend state, the error checks, the one launch
 * macro and the warp/block reductions.
 *
 * These sources are compiled twice. nvcc builds the real backend from them; g++ builds a second,
 * host-executed backend ("cuda-emu") from the very same files for the tests, by including
 * tests/cudaemu/cudaemu.h first. That header defines ZT_CUDA_EMULATED, supplies its own
 * ZT_LAUNCH_KERNEL and zt_dynamic_shared, and picks another ZT_CUDA_NAMESPACE so both copies can
 * be linked into one test program. Nothing else here knows about the emulator.
 */
#ifndef ZT_CUDA_COMMON_CUH
#define ZT_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn_graph.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "backend.h"
#include "core/status.h"
#include "cuda/cuda_backend.h"
#include "cuda/linear_plan.h"
#include "op_checks.h"
}

#include "common/dtype.h"
#include "cuda/cuda_backend.h"

#ifndef ZT_CUDA_NAMESPACE
#define ZT_CUDA_NAMESPACE zt_cuda
#endif
#ifndef ZT_CUDA_BACKEND_NAME
#define ZT_CUDA_BACKEND_NAME "cuda"
#endif

// ---------------------------------------------------------------------------------------------
// Launching. Every kernel goes through ZT_LAUNCH, so the real and the emulated build share each
// call site and every launch is followed by the same error check.

#ifndef ZT_CUDA_EMULATED
#define ZT_LAUNCH_KERNEL(kernel, grid, block, smem, stream, ...)                                   \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)

/* Dynamic shared memory of the current block, as T. A function rather than a bare
 * `extern __shared__` declaration so that the host executor can supply its own. */
template <typename T> __device__ __forceinline__ T *zt_dynamic_shared() {
    extern __shared__ __align__(16) unsigned char zt_dynamic_shared_bytes[];
    return reinterpret_cast<T *>(zt_dynamic_shared_bytes);
}
#endif

/* kernel must be a plain name or a one-argument template instance: the macro splits on commas. */
#define ZT_LAUNCH(kernel, grid, block, smem, stream, ...)                                          \
    do {                                                                                           \
        ZT_LAUNCH_KERNEL(kernel, grid, block, smem, stream, __VA_ARGS__);                          \
        ZT_TRY(ZT_CUDA_NAMESPACE::zt_cuda_after_launch((stream), #kernel, __FILE__, __LINE__));    \
    } while (0)

#define ZT_CUDA_TRY(call)                                                                          \
    do {                                                                                           \
        cudaError_t zt_cuda_err_ = (call);                                                         \
        if (zt_cuda_err_ != cudaSuccess)                                                           \
            return ZT_CUDA_NAMESPACE::zt_cuda_fail(zt_cuda_err_, #call, __FILE__, __LINE__);       \
    } while (0)

#define ZT_CUBLAS_TRY(call)                                                                        \
    do {                                                                                           \
        cublasStatus_t zt_cublas_st_ = (call);                                                     \
        if (zt_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                \
            return ZT_CUDA_NAMESPACE::zt_cublas_fail(zt_cublas_st_, #call, __FILE__, __LINE__);    \
    } while (0)

/* Loop unrolling hints for the device compiler; host compilers (the executor's) have no such
 * pragma. */
#ifdef __CUDA_ARCH__
#define ZT_UNROLL_TEXT(n) #n
#define ZT_UNROLL(n) _Pragma(ZT_UNROLL_TEXT(unroll n))
#else
#define ZT_UNROLL(n)
#endif

namespace ZT_CUDA_NAMESPACE {

constexpr int kWarpSize = 32;
/* Threads per block of the row and elementwise kernels: 8 warps. */
constexpr int kBlockThreads = 256;
/* Grid-stride kernels stop adding blocks here; more would only queue behind the resident ones. */
constexpr int kMaxStrideBlocks = 4096;
/* The same cap for the perturbation kernels (perturb, update, z_sumsq). The host executor lowers
 * it so that their grid-stride loops take several turns at test sizes. */
#ifndef ZT_CUDA_ZO_MAX_BLOCKS
#define ZT_CUDA_ZO_MAX_BLOCKS 4096u
#endif
/* A chunk of linear's converted operand takes at most this many floats of scratch by default (64
 * MiB: 16M widened f32 elements or 32M half ones), so its scratch stays bounded however large the
 * layer; linear_plan.h cuts the rows evenly within it. A backend keeps its own value
 * (linear_chunk_floats), which the tests lower with zt_cuda_backend_set_linear_chunk to reach every
 * chunked path at test sizes, on the executor and on a real GPU alike; the executor also starts
 * lower. */
#ifndef ZT_CUDA_LINEAR_CHUNK_FLOATS
#define ZT_CUDA_LINEAR_CHUNK_FLOATS (16u << 20)
#endif
constexpr size_t kMinLinearChunkFloats = 1024;

/* The cuBLASLt workspace, allocated once per backend (32 MiB is what NVIDIA suggests for Hopper;
 * the host executor uses a token one). */
#ifndef ZT_CUDA_LT_WORKSPACE_BYTES
#define ZT_CUDA_LT_WORKSPACE_BYTES (32u << 20)
#endif

/* One GEMM configuration's cuBLASLt objects, created once and reused by every call of that
 * configuration (linear.cu): the matmul descriptor, the A, B and D layouts and the algorithm
 * cuBLASLt's heuristic chose. The dimension carrying the batch's rows is filed under its bucket
 * (zt_gemm_rows_bucket), so that batches of varying length share plans; the layouts hold the
 * dimensions of the latest call. */
struct zt_lt_plan_key {
    int m, n, k, lda, ldb, ldc;       /* the rows dimension bucketed */
    int trans_a, trans_b, accumulate; /* op(A), op(B) transposed; beta = 1 (D += ...) */
    int a_type, b_type, d_type, compute, epilogue, rows_dim;
    unsigned align_a, align_b, align_d, align_bias; /* bytes; cuBLASLt's algos depend on them */
    int batch;                                      /* strided-batch members (1: none) */
    long long a_stride, b_stride, d_stride, bias_stride; /* elements between members */
};
constexpr int kLtPlanServedDims = 4;
struct zt_lt_plan {
    zt_lt_plan_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
    int m, n, k; /* what the layouts hold now */
    /* (m, n, k) the algorithm is known to serve: the one the heuristic was asked about, then the
     * latest that cublasLtMatmulAlgoCheck confirmed, so that chunks of two sizes in one bucket
     * (or a tail chunk) are checked once, not at every call. */
    int served[kLtPlanServedDims][3];
    int n_served, next_served;
};
/* A forward uses a handful of configurations per bucket (q/k/v/out, fc1, fc2, the head), the
 * backward as many again; full, the oldest plan is destroyed. */
constexpr int kLtPlanCacheSize = 128;
/* attention.cu's kernel instances, one slot each in zt_cuda_backend::attention_max_shared. */
constexpr int kAttentionKernelSlots = 16;
/* attention_backward.cu's two kernels, a slot each in attention_backward_max_shared. */
constexpr int kAttentionBackwardKernelSlots = 2;

/* One attention shape's cuDNN execution plan (attention_cudnn.cu); plan NULL: cuDNN refused the
 * shape, which takes the f32 kernel. */
struct zt_cudnn_attention_plan {
    int batch, seq_len, n_heads, head_dim, dtype;
    cudnnBackendDescriptor_t plan;
    size_t workspace_bytes;
};
/* Forward shapes per run are few (one per padded batch length); full, the oldest plan goes. */
constexpr int kCudnnAttentionPlans = 32;

/* A device index array the caller checked on the host: its values lie in [0, limit). */
struct zt_vouched_indices {
    const int32_t *values;
    size_t n;
    int32_t limit;
};
/* A step uploads three index arrays (token ids, position rows, target rows) and the target ids. */
constexpr int kMaxVouched = 8;
struct zt_lse; /* a partial log-sum-exp (logprob.cu) */

/* The backend's private state. `base` comes first so a zt_backend * is also this struct's. */
struct zt_cuda_backend {
    zt_backend base;
    int device;
    cudaStream_t stream; /* every op, copy and GEMM is ordered on this one stream */
    cublasLtHandle_t lt; /* every GEMM (linear.cu) */
    void *lt_workspace;  /* device, ZT_CUDA_LT_WORKSPACE_BYTES */
    zt_lt_plan lt_plans[kLtPlanCacheSize];
    int n_lt_plans, next_lt_evict;
    zt_cuda_gemm_counts gemm_counts; /* see zt_cuda_backend_gemm_counts */
    float *scratch; /* device; linear's converted operands, z_sumsq's partial sums, or the
                       terms of a perturbation too long to pass by value */
    size_t scratch_floats;
    int *index_error;              /* device; first bad position found by zt_cuda_find_bad_index */
    unsigned long long *nonfinite; /* device, beside index_error: the update's count */
    zt_vouched_indices vouched[kMaxVouched]; /* newest last; see vouch_indices (backend.h) */
    int n_vouched;
    /* The caller's non-finite counter that `nonfinite` is summing for (update.cu); the sum is
     * added to it at the next wait. NULL: none. */
    unsigned long long *pending_nonfinite;
    char description[384];      /* the device in words (describe, `zotune info --device cuda`) */
    size_t linear_chunk_floats; /* see ZT_CUDA_LINEAR_CHUNK_FLOATS */
    int n_sms;                  /* the device's multiprocessors: target_logprobs' split */
    zt_lse *logprob_partials;   /* device, logprob_slots: target_logprobs' split rows */
    size_t logprob_slots;
    size_t attention_max_shared[kAttentionKernelSlots]; /* dynamic shared bytes each attention
                                                           kernel may launch with (create) */
    size_t attention_backward_max_shared[kAttentionBackwardKernelSlots]; /* the same, backward */
    /* attention on cuDNN (--gemm half; attention_cudnn.cu): the handle, created on first use
     * (NULL when that failed: every shape then takes the f32 kernel), and the plans by shape */
    cudnnHandle_t cudnn;
    int cudnn_tried;
    zt_cudnn_attention_plan attention_plans[kCudnnAttentionPlans];
    int n_attention_plans, next_attention_evict;
    zt_cuda_attention_mode attention_mode; /* see zt_cuda_backend_set_attention_mode */
    int last_gemm_input_dtype; /* what linear's latest GEMM took: ZT_F16 / ZT_BF16 or ZT_F32 */
    /* 1 once cuBLASLt refused a strided-batched linear (linear_batched then runs its members
     * one by one) */
    int batched_gemm_refused;
    zt_cuda_attention_path_counts attention_path_counts; /* see zt_cuda_backend_attention_paths */
};

/* index_error and nonfinite share one small device allocation of this many bytes. */
constexpr size_t kCudaFlagBytes = 16;

static inline zt_cuda_backend *zt_cuda(zt_backend *be) {
    return static_cast<zt_cuda_backend *>(be->impl);
}

// ---- errors (cuda_backend.cu) ----

/* ZT_ERR_CUDA with a message naming the call, where it was made and CUDA's own words. */
zt_status zt_cuda_fail(cudaError_t err, const char *call, const char *file, int line);
zt_status zt_cublas_fail(cublasStatus_t status, const char *call, const char *file, int line);
/* Checks a launch (cudaGetLastError); with ZT_CUDA_SYNC=1 in the environment it also waits for
 * the kernel, so an asynchronous fault is reported against the kernel that caused it. */
zt_status zt_cuda_after_launch(cudaStream_t stream, const char *kernel, const char *file, int line);

/* Makes be's device current for this host thread; every op starts with it. */
zt_status zt_cuda_enter(zt_backend *be);

/* The one way the backend waits for its stream: counted in base.n_host_waits, so a test can
 * hold a step to its budget of waits. A pending non-finite count arrives with it. */
zt_status zt_cuda_wait(zt_cuda_backend *cb);

/* 1 when every value of [values, values + n) was vouched for against a limit <= `limit`. */
int zt_cuda_indices_vouched(const zt_cuda_backend *cb, const int32_t *values, size_t n,
                            int32_t limit);

/* A device scratch of at least n_floats (grown on demand, tracked as ZT_MEM_SCRATCH). Valid
 * until the next call; stream order keeps earlier users of the old buffer safe. */
zt_status zt_cuda_scratch(zt_cuda_backend *cb, size_t n_floats, const char *op, float **out);

/* target_logprobs' fixed partials buffer (logprob.cu), sized from the device's SM count:
 * allocated (tracked as ZT_MEM_SCRATCH) by init, freed by release, which tolerates a failed or
 * missing init. */
zt_status zt_cuda_logprob_init(zt_cuda_backend *cb);
void zt_cuda_logprob_release(zt_cuda_backend *cb);

// ---- index validation (index_check.cu) ----

/* Finds the first n with values[n] outside [0, limit). *first_bad = -1 when all are in range,
 * else the position and *bad_value the value. Waits for the stream, the answer being needed on
 * the host, unless the range was vouched for (zt_cuda_indices_vouched). */
zt_status zt_cuda_find_bad_index(zt_cuda_backend *cb, const int32_t *values, /* (n) */
                                 int n, int limit, int *first_bad, int32_t *bad_value);

// ---- the GEMM call site (linear.cu) ----

/* Which GEMM dimension carries the batch's rows (B*T or a chunk of them): the plan cache files it
 * under its bucket (zt_gemm_rows_bucket). */
enum zt_lt_rows_dim { ZT_LT_ROWS_NONE = 0, ZT_LT_ROWS_N, ZT_LT_ROWS_K };

/* One cuBLASLt matmul, in cuBLASLt's column-major terms:
 *     D (m, n) = op(A) op(B) (+ bias over D's rows) (then ReLU) (+ D first, when accumulate)
 * with op(X) = X^T when trans_x, so A is stored (k, m) when transposed and (m, k) otherwise, with
 * leading dimension lda; B likewise (n, k) or (k, n); D is f32 (m, n) with leading dimension ldd.
 * Products accumulate in f32 under `compute`. Descriptors, layouts and algorithm are cached per
 * configuration and pointer alignments (zt_lt_plan), rows_dim's dimension by bucket; max_align_a
 * (0: none) caps the alignment A is declared with, so that two calls whose A differ only in
 * alignment get the same algorithm, hence the same bits. */
struct zt_lt_gemm {
    const void *a;
    zt_dtype a_dtype;
    int lda, trans_a;
    const void *b;
    zt_dtype b_dtype;
    int ldb, trans_b;
    void *d;
    zt_dtype d_dtype; /* ZT_F32 (0, a zeroed struct's), or f16/bf16 rounded by the epilogue */
    int ldd;
    int m, n, k;
    const void *bias; /* (m) in D's dtype (cuBLASLt's default), 16-byte aligned, or NULL */
    int relu, accumulate;
    cublasComputeType_t compute;
    unsigned max_align_a;
    zt_lt_rows_dim rows_dim;
    /* batch > 1: a strided batch, member i's A, B, D and bias that many elements of their own
     * dtype past member 0's (a stride of 0 shares one operand); 0 or 1: one matmul */
    int batch;
    long long a_stride, b_stride, d_stride, bias_stride;
};
zt_status zt_cuda_lt_matmul(zt_cuda_backend *cb, const char *op, const zt_lt_gemm &g);
/* The largest power of two (at most 256) dividing the address: what cuBLASLt may assume. */
static inline unsigned zt_alignment_of(const void *p) {
    unsigned a = 256;
    while (a > 1 && ((uintptr_t)p % a) != 0)
        a /= 2;
    return a;
}
/* Destroys every cached GEMM plan (the backend's destroy). */
void zt_cuda_lt_plans_release(zt_cuda_backend *cb);

// ---- the ops, one family per file ----

zt_status zt_cuda_gather_rows(zt_backend *be, float *out, const int32_t *rows, zt_weight table,
                              int n_rows, int n_table_rows, int n_cols, int accumulate,
                              const zt_gather_perturbation *perturb);
zt_status zt_cuda_layernorm(zt_backend *be, float *out, const float *in, zt_weight gamma,
                            zt_weight beta, int n_rows, int n_cols, float eps);
zt_status zt_cuda_linear(zt_backend *be, float *out, const float *in, zt_weight w, zt_weight bias,
                         int n_rows, int in_features, int out_features, int relu);
/* the half-activation ops (layernorm.cu, linear.cu) */
zt_status zt_cuda_layernorm_half(zt_backend *be, void *out, zt_dtype out_dtype, const float *in,
                                 zt_weight gamma, zt_weight beta, int n_rows, int n_cols,
                                 float eps);
zt_status zt_cuda_linear_half_in(zt_backend *be, float *out, const void *in, zt_weight w,
                                 zt_weight bias, int n_rows, int in_features, int out_features,
                                 int relu);
zt_status zt_cuda_linear_batched(zt_backend *be, float *out, size_t out_stride, const void *in,
                                 zt_dtype in_dtype, zt_weight w, size_t w_stride, zt_weight bias,
                                 size_t bias_stride, int count, int n_rows, int in_features,
                                 int out_features, int relu);
zt_status zt_cuda_linear_half_out(zt_backend *be, void *out, const void *in, zt_weight w,
                                  zt_weight bias, int n_rows, int in_features, int out_features,
                                  int relu);
zt_status zt_cuda_round_half(zt_backend *be, void *dst, zt_dtype dtype, const float *src,
                             size_t n_elems);
zt_status zt_cuda_attention(zt_backend *be, float *out, const float *q, const float *k,
                            const float *v, const int32_t *key_mask, int batch, int seq_len,
                            int n_heads, int head_dim, float q_scale);
/* Opts every attention kernel into the most dynamic shared memory the device allows it and
 * records the limits; create calls it once. */
zt_status zt_cuda_attention_setup(zt_cuda_backend *cb);
/* Bytes of scratch the cuDNN path takes for attention of this shape when linear's GEMMs last took
 * inputs of gemm_input_dtype (the AUTO mode follows it; ZT_F32: the GEMMs were f32): 0 when the
 * shape runs on the f32 kernel. Builds and caches the shape's plan (attention_cudnn.cu), so the
 * scratch planner counts cuDNN's workspace before the first forward. */
size_t zt_cuda_attention_cudnn_scratch_bytes(zt_cuda_backend *cb, int batch, int seq_len,
                                             int n_heads, int head_dim, int gemm_input_dtype);
/* The cuDNN path of `attention` (attention_cudnn.cu), for --gemm half: computes out for every
 * sequence whose admissible keys are one run [lo, T), and sets *fallback_flags to a device array
 * (B) marking the others (1) for attention.cu's kernel; *fallback_flags = NULL when the mode
 * (zt_cuda_backend_set_attention_mode) or cuDNN does not take the shape (nothing written). */
zt_status zt_cuda_attention_cudnn(zt_cuda_backend *cb, float *out, const float *q, const float *k,
                                  const float *v, const int32_t *key_mask, int batch, int seq_len,
                                  int n_heads, int head_dim, float q_scale,
                                  const int32_t **fallback_flags);
/* Destroys the cached cuDNN plans and the handle (the backend's destroy). */
void zt_cuda_attention_plans_release(zt_cuda_backend *cb);
zt_status zt_cuda_attention_cached(zt_backend *be, float *out, const float *q, const float *k,
                                   const float *v, float *k_cache, float *v_cache,
                                   const int32_t *key_mask, int batch, int n_new, int capacity,
                                   int start, int n_heads, int head_dim, float q_scale);
zt_status zt_cuda_add(zt_backend *be, float *x, const float *y, size_t n_elems);
zt_status zt_cuda_target_logprobs(zt_backend *be, float *logprob, const float *logits,
                                  const int32_t *targets, int n_rows, int vocab);
zt_status zt_cuda_perturb_variants(zt_backend *be, void *const *dst, zt_dtype dst_dtype,
                                   zt_weight src, uint32_t tensor_id, uint64_t elem_offset,
                                   size_t n_elems, const zt_perturbation *p, int n_variants);
zt_status zt_cuda_perturb(zt_backend *be, void *dst, zt_dtype dst_dtype, zt_weight src,
                          uint32_t tensor_id, uint64_t elem_offset, size_t n_elems,
                          const zt_perturbation *p);
zt_status zt_cuda_z_sumsq(zt_backend *be, double *out, uint64_t seed, uint32_t tensor_id,
                          size_t n_elems, zt_dist dist);
zt_status zt_cuda_update_perturb_variants(zt_backend *be, void *theta, zt_dtype dtype,
                                          uint32_t tensor_id, size_t n_elems, float *state,
                                          const zt_update *u, void *const *dst, zt_dtype dst_dtype,
                                          const zt_perturbation *p, int n_variants);
zt_status zt_cuda_update(zt_backend *be, void *theta, zt_dtype dtype, uint32_t tensor_id,
                         size_t n_elems, float *state, const zt_update *u);

/* The backward ops (backprop, docs/design.md §3.1), one file each, named after the forward's:
 * gather_backward.cu, layernorm_backward.cu, linear_backward.cu, attention_backward.cu,
 * logprob_backward.cu. */
zt_status zt_cuda_gather_rows_backward(zt_backend *be, float *d_table, const float *d_out,
                                       const int32_t *rows, int n_rows, int n_table_rows,
                                       int n_cols);
zt_status zt_cuda_layernorm_backward(zt_backend *be, float *d_in, float *d_gamma, float *d_beta,
                                     const float *d_out, const float *in, zt_weight gamma,
                                     int n_rows, int n_cols, float eps);
zt_status zt_cuda_linear_backward(zt_backend *be, float *d_in, float *d_w, float *d_bias,
                                  float *d_out, const float *in, const float *out, zt_weight w,
                                  int n_rows, int in_features, int out_features, int relu);
zt_status zt_cuda_attention_backward(zt_backend *be, float *d_q, float *d_k, float *d_v,
                                     const float *d_out, const float *q, const float *k,
                                     const float *v, const float *out, const int32_t *key_mask,
                                     int batch, int seq_len, int n_heads, int head_dim,
                                     float q_scale);
/* As zt_cuda_attention_setup, for attention_backward's kernels; create calls it once. */
zt_status zt_cuda_attention_backward_setup(zt_cuda_backend *cb);
zt_status zt_cuda_target_logprobs_backward(zt_backend *be, float *d_logits, const float *logits,
                                           const int32_t *targets, const float *d_logprob,
                                           int n_rows, int vocab);

/* The first-order update ops (fo_update.cu), bit for bit the CPU backend's. fo_update's
 * non-finite count is the ZO update's deferred one: complete after the next wait. */
zt_status zt_cuda_fo_update(zt_backend *be, void *theta, zt_dtype dtype, uint32_t tensor_id,
                            size_t n_elems, const float *grad, float *state, const zt_fo_update *u);
zt_status zt_cuda_grad_sumsq(zt_backend *be, double *out, const float *x, size_t n_elems);

/* z_sumsq on a grid of at most max_blocks blocks (the op uses ZT_CUDA_ZO_MAX_BLOCKS). The result
 * depends on n_elems only, never on the grid: the tests call this with several grids. */
zt_status zt_cuda_z_sumsq_grid(zt_backend *be, double *out, uint64_t seed, uint32_t tensor_id,
                               size_t n_elems, zt_dist dist, unsigned max_blocks);

// ---- scratch planning: what each op asks of zt_cuda_scratch (cuda_backend.cu answers queries) --

/* What linear takes of zt_cuda_scratch: zt_cuda_linear_scratch (linear_plan.h). */

/* Floats of scratch z_sumsq takes for n Gaussian elements (sumsq.cu). */
size_t zt_cuda_z_sumsq_scratch_floats(size_t n_elems);
/* Floats of scratch grad_sumsq takes for n elements (fo_update.cu), the op's own request. */
size_t zt_cuda_grad_sumsq_scratch_floats(size_t n_elems);

/* Bytes of zt_cuda_scratch each backward op takes, computed by the function the op itself calls,
 * so that a scratch planner asking them cannot drift from the op. with_params: d_gamma or d_beta
 * given; widen: a half weight, or an f32 one below 16-byte alignment (linear_backward.cu). */
size_t zt_cuda_layernorm_backward_scratch_bytes(int n_rows, int n_cols, int with_params);
size_t zt_cuda_linear_backward_scratch_bytes(int n_rows, int in_features, int out_features,
                                             int with_d_in, int widen, int with_d_bias,
                                             size_t linear_chunk_floats);
size_t zt_cuda_attention_backward_scratch_bytes(int batch, int n_heads, int seq_len);
size_t zt_cuda_logprob_backward_scratch_bytes(int n_rows);

// ---------------------------------------------------------------------------------------------
// Device helpers.

/* Blocks for a grid-stride loop over n elements, kBlockThreads per block. */
static inline unsigned zt_stride_blocks(size_t n) {
    size_t blocks = (n + kBlockThreads - 1) / kBlockThreads;
    if (blocks > (size_t)kMaxStrideBlocks) blocks = kMaxStrideBlocks;
    return blocks == 0 ? 1u : (unsigned)blocks;
}

/* Butterfly reductions: every lane ends with the result, so no broadcast is needed after. */
__device__ __forceinline__ float zt_warp_sum(float value) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

__device__ __forceinline__ float zt_warp_max(float value) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
        value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
    return value;
}

/* Sum over the block, returned to every thread. blockDim.x must be a multiple of 32 (at most
 * 1024), and every thread of the block must call it. `partials` is a __shared__ float[32]. Each
 * warp reduces the per-warp partials itself, which saves a broadcast; the closing barrier lets
 * the caller reuse `partials` straight away. */
__device__ __forceinline__ float zt_block_sum(float value, float *partials) {
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    value = zt_warp_sum(value);
    if (lane == 0) partials[warp] = value;
    __syncthreads();
    const int n_warps = blockDim.x / kWarpSize;
    float total = zt_warp_sum(lane < n_warps ? partials[lane] : 0.0f);
    __syncthreads();
    return total;
}

/* The same in double: the backward ops' row sums (layer norm, log-sum-exp). */
__device__ __forceinline__ double zt_warp_sum_double(double value) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

/* zt_block_sum in double; `partials` is a __shared__ double[32]. */
__device__ __forceinline__ double zt_block_sum_double(double value, double *partials) {
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    value = zt_warp_sum_double(value);
    if (lane == 0) partials[warp] = value;
    __syncthreads();
    const int n_warps = blockDim.x / kWarpSize;
    double total = zt_warp_sum_double(lane < n_warps ? partials[lane] : 0.0);
    __syncthreads();
    return total;
}

/* A layernorm row's mean and 1/std, in f32 with two block reductions (layernorm.cu's forward;
 * layernorm_backward.cu recomputes them through this same function, so its x-hat is the one the
 * forward normalised with). The mean is accumulated relative to the row's first element: a row
 * with a large common offset would otherwise lose digits to cancellation in the f32 sum. The
 * variance is the exact two-pass form, never E[x^2] - E[x]^2. Every thread of the block must
 * call it and gets both; the bits depend on blockDim.x, so both ops launch kBlockThreads. */
__device__ __forceinline__ void zt_layernorm_row_stats(const float *x, /* (C) */
                                                       int n_cols, float eps, float *partials,
                                                       float *mean_out, float *rstd_out) {
    const float pivot = x[0];
    float shifted_sum = 0.0f;
    for (int c = threadIdx.x; c < n_cols; c += blockDim.x)
        shifted_sum += x[c] - pivot;
    const float mean = pivot + zt_block_sum(shifted_sum, partials) / (float)n_cols;

    float squares = 0.0f;
    for (int c = threadIdx.x; c < n_cols; c += blockDim.x) {
        float centered = x[c] - mean;
        squares += centered * centered;
    }
    const float variance = zt_block_sum(squares, partials) / (float)n_cols;
    *mean_out = mean;
    *rstd_out = 1.0f / sqrtf(variance + eps);
}

} // namespace ZT_CUDA_NAMESPACE

#endif
