/* cudaemu: a host executor for zotune's CUDA kernels, so that every .cu kernel runs (on the CPU)
 * in CI, where no GPU exists.
 *
 * A wrapper .cpp includes this header and then one .cu file of kernels/cuda; g++ compiles the pair.
 * The real toolkit headers supply the types (dim3, cudaError_t, __half, __nv_bfloat16, cuBLAS
 * enums); this header supplies what only a device has:
 *   - threadIdx / blockIdx / blockDim / gridDim, per emulated thread;
 *   - each block's threads run as cooperative fibers on one host thread; __syncthreads and every
 *     warp-level operation (shuffles, votes, __syncwarp) is a barrier that switches fibers;
 *   - __shared__ variables become `static thread_local`: one copy per host worker thread, which
 *     runs one block at a time, so one copy per resident block; dynamic shared memory is a
 *     per-block buffer, poisoned with NaN bytes before each block;
 *   - atomics (atomicAdd, atomicMin, atomicMax, atomicCAS, ...) on host atomics, since blocks
 *     run concurrently on several host threads;
 *   - the runtime (cudaMalloc, cudaMemcpyAsync, streams, errors) and the cuBLASLt calls the
 *     backend makes (cudaemu_lt.cpp: cublasLtMatmul runs as OpenBLAS cblas_sgemm on operands
 *     converted to f32, TF32-rounded for CUBLAS_COMPUTE_32F_FAST_TF32, then the epilogue),
 *     renamed to cudaemu_* so that the real libraries can be linked into the same program.
 * The executor is strict where hardware is merely undefined: a barrier that not every thread
 * reaches, threads waiting at different __syncthreads, lanes that disagree on a shuffle mask, a
 * kernel argument that is not device memory, or a copy whose direction does not match its
 * pointers fails the launch with a message naming the kernel, block and thread. Device blocks
 * sit between inaccessible guard pages, so a kernel that reads or writes past either end of one
 * gets the GPU's "illegal address" as a launch failure instead of corrupting host memory.
 */
#ifndef ZT_CUDAEMU_H
#define ZT_CUDAEMU_H

// ---- what the kernel sources see differently in this build (kernels/cuda/cuda_common.cuh) ----

#define ZT_CUDA_EMULATED 1
#define ZT_CUDA_NAMESPACE zt_cudaemu
#define ZT_CUDA_BACKEND_NAME "cuda-emu"
#define zt_cuda_backend_create zt_cudaemu_backend_create
#define zt_cuda_backend_stream zt_cudaemu_backend_stream
#define zt_cuda_backend_set_linear_chunk zt_cudaemu_backend_set_linear_chunk
#define zt_cuda_backend_gemm_counts zt_cudaemu_backend_gemm_counts
#define zt_cuda_backend_attention_paths zt_cudaemu_backend_attention_paths
#define zt_cuda_backend_set_attention_mode zt_cudaemu_backend_set_attention_mode
/* Small weight chunks, so that linear's chunk loop and its boundaries run at test sizes. */
#define ZT_CUDA_LINEAR_CHUNK_FLOATS (40u * 1024u)
/* The emulated cublasLtMatmul needs no workspace; a token one still checks that it is device
 * memory. */
#define ZT_CUDA_LT_WORKSPACE_BYTES 4096u
/* Few blocks for perturb / update / z_sumsq, so that their grid-stride loops take several turns. */
#define ZT_CUDA_ZO_MAX_BLOCKS 5u
/* A short LM-head chunk, so that the fixtures' 21 target rows take two chunks (16 + 5). */
#define ZT_CUDA_HEAD_CHUNK_ROWS 16
/* target_logprobs aims at 264 blocks (132 SMs x 2) with slices of at least 64 columns, so that the
 * fixtures' 504-word rows are split and a few hundred rows are not. */
#define ZT_CUDA_LOGPROB_BLOCKS_PER_SM 2
#define ZT_CUDA_LOGPROB_MIN_SLICE 64

// ---- runtime and cuBLAS entry points, renamed before the headers declare them ----
// The headers then declare exactly the cudaemu_* functions that cudaemu.cpp defines, with the
// real signatures. A call to an entry point not listed here still resolves to the real library:
// without a toolkit library on the link line that is a link error, with one a runtime error.

#define cudaGetDeviceCount cudaemu_cudaGetDeviceCount
#define cudaSetDevice cudaemu_cudaSetDevice
#define cudaGetDevice cudaemu_cudaGetDevice
#define cudaDeviceSynchronize cudaemu_cudaDeviceSynchronize
#define cudaDeviceGetAttribute cudaemu_cudaDeviceGetAttribute
#define cudaGetDeviceProperties cudaemu_cudaGetDeviceProperties
#define cudaDriverGetVersion cudaemu_cudaDriverGetVersion
#define cudaRuntimeGetVersion cudaemu_cudaRuntimeGetVersion
#define cudaMalloc cudaemu_cudaMalloc
#define cudaFree cudaemu_cudaFree
#define cudaMemcpy cudaemu_cudaMemcpy
#define cudaMemcpyAsync cudaemu_cudaMemcpyAsync
#define cudaMemset cudaemu_cudaMemset
#define cudaMemsetAsync cudaemu_cudaMemsetAsync
#define cudaStreamCreate cudaemu_cudaStreamCreate
#define cudaStreamCreateWithFlags cudaemu_cudaStreamCreateWithFlags
#define cudaStreamDestroy cudaemu_cudaStreamDestroy
#define cudaStreamSynchronize cudaemu_cudaStreamSynchronize
#define cudaGetLastError cudaemu_cudaGetLastError
#define cudaPeekAtLastError cudaemu_cudaPeekAtLastError
#define cudaGetErrorString cudaemu_cudaGetErrorString
#define cudaGetErrorName cudaemu_cudaGetErrorName
#define cudaFuncSetAttribute cudaemu_cudaFuncSetAttribute
#define cudaFuncGetAttributes cudaemu_cudaFuncGetAttributes
#define cublasLtCreate cudaemu_cublasLtCreate
#define cublasLtDestroy cudaemu_cublasLtDestroy
#define cublasLtMatmulDescCreate cudaemu_cublasLtMatmulDescCreate
#define cublasLtMatmulDescDestroy cudaemu_cublasLtMatmulDescDestroy
#define cublasLtMatmulDescSetAttribute cudaemu_cublasLtMatmulDescSetAttribute
#define cublasLtMatrixLayoutCreate cudaemu_cublasLtMatrixLayoutCreate
#define cublasLtMatrixLayoutDestroy cudaemu_cublasLtMatrixLayoutDestroy
#define cublasLtMatrixLayoutSetAttribute cudaemu_cublasLtMatrixLayoutSetAttribute
#define cublasLtMatmulAlgoCheck cudaemu_cublasLtMatmulAlgoCheck
#define cublasLtMatmulPreferenceCreate cudaemu_cublasLtMatmulPreferenceCreate
#define cublasLtMatmulPreferenceDestroy cudaemu_cublasLtMatmulPreferenceDestroy
#define cublasLtMatmulPreferenceSetAttribute cudaemu_cublasLtMatmulPreferenceSetAttribute
#define cublasLtMatmulAlgoGetHeuristic cudaemu_cublasLtMatmulAlgoGetHeuristic
#define cublasLtMatmul cudaemu_cublasLtMatmul
/* cuDNN's backend API (cudaemu_cudnn.cpp: the attention graph interpreted on the host). */
#define cudnnCreate cudaemu_cudnnCreate
#define cudnnDestroy cudaemu_cudnnDestroy
#define cudnnSetStream cudaemu_cudnnSetStream
#define cudnnGetErrorString cudaemu_cudnnGetErrorString
#define cudnnBackendCreateDescriptor cudaemu_cudnnBackendCreateDescriptor
#define cudnnBackendDestroyDescriptor cudaemu_cudnnBackendDestroyDescriptor
#define cudnnBackendSetAttribute cudaemu_cudnnBackendSetAttribute
#define cudnnBackendGetAttribute cudaemu_cudnnBackendGetAttribute
#define cudnnBackendFinalize cudaemu_cudnnBackendFinalize
#define cudnnBackendExecute cudaemu_cudnnBackendExecute

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn_graph.h>
/* Before the built-in variables below become macros: it declares blockDim & co. itself. Its
 * host path (Philox, Box-Muller) is what the perturbation kernels will run here. */
#if __has_include(<curand_kernel.h>)
#include <curand_kernel.h>
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- qualifiers ----
// host_defines.h already maps __global__, __device__ and __host__ to nothing for a host compiler.

#undef __shared__
#define __shared__ static thread_local
#define __launch_bounds__(...)

namespace cudaemu {

// ---- the emulated thread's coordinates (set by the scheduler before it resumes a fiber) ----

extern thread_local uint3 thread_idx;
extern thread_local uint3 block_idx;
extern thread_local dim3 block_dim;
extern thread_local dim3 grid_dim;

// ---- device-side services of the executor (cudaemu.cpp) ----

/* __syncthreads: waits until every thread of the block has arrived at the same call site. */
void block_barrier(const char *file, int line);
/* The warp-level rendezvous behind shuffles, votes and __syncwarp: the calling lane publishes
 * `bits`, waits until every lane of `mask` has done the same, and gets its warp's 32 published
 * words (lanes outside the mask read as all-ones, i.e. NaN / -1). */
const uint64_t *warp_exchange(unsigned mask, uint64_t bits, const char *what);
/* Lane of the calling thread in its warp, and the lanes of its warp that have not exited. */
unsigned lane_id();
unsigned active_lanes();
/* Dynamic shared memory of the running block, and its size in bytes. */
unsigned char *dynamic_shared(size_t *n_bytes);
/* "" when the n_bytes at p lie in one cudaMalloc'd block, else what they are (host memory, or a
 * range overrunning a block): for the emulated libraries' operand checks. */
std::string outside_device(const void *p, size_t n_bytes);
/* The static shared memory of a kernel. __shared__ variables are host thread_locals here, so the
 * executor cannot size them; a kernel counts as having none unless a test states its size with
 * this. The runtime's rules then count it: a launch may use 48 KB less the static part of dynamic
 * shared memory, or what cudaFuncSetAttribute raised that to, which is at most the opt-in limit
 * less the static part; cudaFuncGetAttributes reports both. */
void declare_static_shared(const void *function, size_t n_bytes);
/* Whether s is the default stream or one created and not yet destroyed. */
bool stream_is_valid(cudaStream_t s);
/* Fails the running launch with a message (naming kernel, block and thread); does not return. */
[[noreturn]] void fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- host side of a launch ----

struct launch_spec {
    const char *kernel;
    const void *function;
    dim3 grid, block;
    size_t shared_bytes;
    cudaStream_t stream;
};

/* Runs body(context) once per thread of the grid. A bad configuration or a fault inside the
 * kernel sets the error that cudaGetLastError() returns next. */
void run_grid(const launch_spec &spec, void (*body)(void *), void *context);
/* Fails the launch (cudaGetLastError) unless p is NULL or points into a cudaMalloc'd block. */
bool check_kernel_pointer(const launch_spec &spec, int index, const void *p);

template <typename T> bool check_kernel_arg(const launch_spec &spec, int index, T *p) {
    return check_kernel_pointer(spec, index, static_cast<const void *>(p));
}
template <typename T> bool check_kernel_arg(const launch_spec &, int, const T &) {
    return true;
}

template <typename Tuple, size_t... I>
bool check_kernel_args(const launch_spec &spec, const Tuple &params, std::index_sequence<I...>) {
    return (check_kernel_arg(spec, (int)I, std::get<I>(params)) && ... && true);
}

/* The emulated <<<grid, block, smem, stream>>>: the arguments are converted to the kernel's
 * parameter types once, as a launch does, then every emulated thread calls the kernel. */
template <typename... P, typename... A>
void launch(const char *kernel_name, void (*kernel)(P...), dim3 grid, dim3 block,
            size_t shared_bytes, cudaStream_t stream, A &&...args) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong argument count");
    using params_t = std::tuple<std::decay_t<P>...>;
    struct call_t {
        void (*kernel)(P...);
        params_t params;
    };
    call_t call{kernel, params_t(std::forward<A>(args)...)};
    launch_spec spec{kernel_name, reinterpret_cast<const void *>(kernel), grid, block, shared_bytes,
                     stream};
    if (!check_kernel_args(spec, call.params, std::index_sequence_for<P...>{})) return;
    run_grid(
        spec,
        [](void *context) {
            call_t *c = static_cast<call_t *>(context);
            std::apply(c->kernel, c->params);
        },
        &call);
}

template <typename T> uint64_t to_bits(T value) {
    static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable<T>::value,
                  "warp exchange of a type wider than 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof value);
    return bits;
}

template <typename T> T from_bits(uint64_t bits) {
    T value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

inline void check_width(int width, const char *what) {
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
        fault("%s: width %d is not a power of two in [1, 32]", what, width);
}

} // namespace cudaemu

// ---- built-in variables ----

#define threadIdx (::cudaemu::thread_idx)
#define blockIdx (::cudaemu::block_idx)
#define blockDim (::cudaemu::block_dim)
#define gridDim (::cudaemu::grid_dim)
constexpr int warpSize = 32;

// ---- synchronization ----

#define __syncthreads() ::cudaemu::block_barrier(__FILE__, __LINE__)

inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)::cudaemu::warp_exchange(mask, 0, "__syncwarp");
}

inline unsigned __activemask() {
    return ::cudaemu::active_lanes();
}

inline void __threadfence() {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
inline void __threadfence_block() {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

// ---- warp shuffles and votes (semantics of the CUDA C++ Programming Guide) ----

/* Lane srcLane of the caller's width-wide segment. */
template <typename T> T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
    ::cudaemu::check_width(width, "__shfl_sync");
    const unsigned lane = ::cudaemu::lane_id();
    const uint64_t *words = ::cudaemu::warp_exchange(mask, ::cudaemu::to_bits(var), "__shfl_sync");
    const unsigned src = (lane & ~(unsigned)(width - 1)) + ((unsigned)src_lane & (width - 1));
    return ::cudaemu::from_bits<T>(words[src]);
}

/* Lane (lane - delta); the lowest delta lanes of each segment keep their own value. */
template <typename T> T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    ::cudaemu::check_width(width, "__shfl_up_sync");
    const unsigned lane = ::cudaemu::lane_id();
    const uint64_t *words =
        ::cudaemu::warp_exchange(mask, ::cudaemu::to_bits(var), "__shfl_up_sync");
    const unsigned src = (lane & (width - 1)) < delta ? lane : lane - delta;
    return ::cudaemu::from_bits<T>(words[src]);
}

/* Lane (lane + delta); the highest delta lanes of each segment keep their own value. */
template <typename T> T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    ::cudaemu::check_width(width, "__shfl_down_sync");
    const unsigned lane = ::cudaemu::lane_id();
    const uint64_t *words =
        ::cudaemu::warp_exchange(mask, ::cudaemu::to_bits(var), "__shfl_down_sync");
    const unsigned src = (lane & (width - 1)) + delta >= (unsigned)width ? lane : lane + delta;
    return ::cudaemu::from_bits<T>(words[src]);
}

/* Lane (lane ^ laneMask); a source in a later segment gives the caller its own value. */
template <typename T> T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    ::cudaemu::check_width(width, "__shfl_xor_sync");
    const unsigned lane = ::cudaemu::lane_id();
    const uint64_t *words =
        ::cudaemu::warp_exchange(mask, ::cudaemu::to_bits(var), "__shfl_xor_sync");
    const unsigned segment_end = (lane & ~(unsigned)(width - 1)) + (unsigned)width;
    unsigned src = lane ^ (unsigned)lane_mask;
    if (src >= segment_end) src = lane;
    return ::cudaemu::from_bits<T>(words[src]);
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
    const uint64_t *words = ::cudaemu::warp_exchange(mask, predicate != 0, "__ballot_sync");
    unsigned ballot = 0;
    for (unsigned lane = 0; lane < 32; lane++)
        if ((mask >> lane & 1u) && words[lane] != 0) ballot |= 1u << lane;
    return ballot;
}

inline int __all_sync(unsigned mask, int predicate) {
    return __ballot_sync(mask, predicate) == mask;
}

inline int __any_sync(unsigned mask, int predicate) {
    return __ballot_sync(mask, predicate) != 0;
}

// ---- atomics: host atomics, because blocks run on several host threads at once ----

template <typename T> T cudaemu_atomic_add(T *address, T value) {
    return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}

/* Floating-point read-modify-write through compare-and-swap on the bits. */
template <typename T, typename F> T cudaemu_atomic_float_update(T *address, F update) {
    T old;
    __atomic_load(address, &old, __ATOMIC_SEQ_CST);
    T desired = update(old);
    while (!__atomic_compare_exchange(address, &old, &desired, false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_SEQ_CST))
        desired = update(old);
    return old;
}

inline int atomicAdd(int *a, int v) {
    return cudaemu_atomic_add(a, v);
}
inline unsigned atomicAdd(unsigned *a, unsigned v) {
    return cudaemu_atomic_add(a, v);
}
inline unsigned long long atomicAdd(unsigned long long *a, unsigned long long v) {
    return cudaemu_atomic_add(a, v);
}
inline float atomicAdd(float *a, float v) {
    return cudaemu_atomic_float_update(a, [v](float old) { return old + v; });
}
inline double atomicAdd(double *a, double v) {
    return cudaemu_atomic_float_update(a, [v](double old) { return old + v; });
}
inline int atomicSub(int *a, int v) {
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);
}
inline unsigned atomicSub(unsigned *a, unsigned v) {
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);
}

/* CUDA has integer atomicMin/atomicMax only; there is deliberately no float overload here, so
 * code that nvcc would reject does not compile in the emulated build either. */
template <typename T> T cudaemu_atomic_extreme(T *address, T value, bool want_max) {
    T old = __atomic_load_n(address, __ATOMIC_SEQ_CST);
    while (want_max ? value > old : value < old) {
        if (__atomic_compare_exchange_n(address, &old, value, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            break;
    }
    return old;
}

inline int atomicMin(int *a, int v) {
    return cudaemu_atomic_extreme(a, v, false);
}
inline unsigned atomicMin(unsigned *a, unsigned v) {
    return cudaemu_atomic_extreme(a, v, false);
}
inline long long atomicMin(long long *a, long long v) {
    return cudaemu_atomic_extreme(a, v, false);
}
inline unsigned long long atomicMin(unsigned long long *a, unsigned long long v) {
    return cudaemu_atomic_extreme(a, v, false);
}
inline int atomicMax(int *a, int v) {
    return cudaemu_atomic_extreme(a, v, true);
}
inline unsigned atomicMax(unsigned *a, unsigned v) {
    return cudaemu_atomic_extreme(a, v, true);
}
inline long long atomicMax(long long *a, long long v) {
    return cudaemu_atomic_extreme(a, v, true);
}
inline unsigned long long atomicMax(unsigned long long *a, unsigned long long v) {
    return cudaemu_atomic_extreme(a, v, true);
}

template <typename T> T cudaemu_atomic_cas(T *address, T compare, T value) {
    __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    return compare; /* the old value, whether or not the swap happened */
}

inline int atomicCAS(int *a, int c, int v) {
    return cudaemu_atomic_cas(a, c, v);
}
inline unsigned atomicCAS(unsigned *a, unsigned c, unsigned v) {
    return cudaemu_atomic_cas(a, c, v);
}
inline unsigned long long atomicCAS(unsigned long long *a, unsigned long long c,
                                    unsigned long long v) {
    return cudaemu_atomic_cas(a, c, v);
}
inline int atomicExch(int *a, int v) {
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);
}
inline unsigned atomicExch(unsigned *a, unsigned v) {
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);
}
inline float atomicExch(float *a, float v) {
    return cudaemu_atomic_float_update(a, [v](float) { return v; });
}

// ---- device intrinsics without a host counterpart (IEEE versions: no fast-math here) ----

inline float rsqrtf(float x) {
    return 1.0f / sqrtf(x);
}
inline float __expf(float x) {
    return expf(x);
}
inline float __logf(float x) {
    return logf(x);
}
inline float __fdividef(float a, float b) {
    return a / b;
}
inline float __saturatef(float x) {
    return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x;
}
inline int __popc(unsigned x) {
    return __builtin_popcount(x);
}
inline int __ffs(int x) {
    return __builtin_ffs(x);
}
inline int __clz(int x) {
    return x == 0 ? 32 : __builtin_clz((unsigned)x);
}
template <typename T> T __ldg(const T *p) {
    return *p;
}

/* Explicitly rounded arithmetic (round to nearest even, never contracted into an FMA). The
 * emulated units are built with -ffp-contract=off (meson.build) and x86-64 SSE rounds each
 * operation to its type, so plain operators give exactly the device's results. */
inline float __fadd_rn(float a, float b) {
    return a + b;
}
inline float __fsub_rn(float a, float b) {
    return a - b;
}
inline float __fmul_rn(float a, float b) {
    return a * b;
}
inline float __fdiv_rn(float a, float b) {
    return a / b;
}
inline float __fsqrt_rn(float x) {
    return sqrtf(x);
}
inline double __dadd_rn(double a, double b) {
    return a + b;
}
inline double __dmul_rn(double a, double b) {
    return a * b;
}

// ---- dynamic shared memory and the launch (kernels/cuda/cuda_common.cuh uses these) ----

template <typename T> T *zt_dynamic_shared() {
    size_t n_bytes = 0;
    return reinterpret_cast<T *>(::cudaemu::dynamic_shared(&n_bytes));
}

#define ZT_LAUNCH_KERNEL(kernel, grid, block, smem, stream, ...)                                   \
    ::cudaemu::launch(#kernel, kernel, grid, block, smem, stream, __VA_ARGS__)

#endif
