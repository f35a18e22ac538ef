/* The CUDA backend: constructor, op table, device memory, the stream and the cuBLASLt handle, error
 * reporting and argument checks. The ops live in the other .cu files, one family each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

// ---------------------------------------------------------------------------------------------
// Errors

/* Read once at creation: ZT_CUDA_SYNC=1 makes every launch wait for its kernel. */
static bool sync_each_launch = false;

zt_status zt_cuda_fail(cudaError_t err, const char *call, const char *file, int line) {
    return zt_fail(ZT_ERR_CUDA, "%s failed at %s:%d: %s: %s", call, file, line,
                   cudaGetErrorName(err), cudaGetErrorString(err));
}

static const char *cublas_status_text(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS:
        return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
        return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
        return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
        return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
        return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
        return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
        return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
        return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "unknown cuBLAS status";
}

zt_status zt_cublas_fail(cublasStatus_t status, const char *call, const char *file, int line) {
    return zt_fail(ZT_ERR_CUDA, "%s failed at %s:%d: %s (%d)", call, file, line,
                   cublas_status_text(status), (int)status);
}

zt_status zt_cuda_after_launch(cudaStream_t stream, const char *kernel, const char *file,
                               int line) {
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess && sync_each_launch) err = cudaStreamSynchronize(stream);
    if (err == cudaSuccess) return ZT_OK;
    return zt_fail(ZT_ERR_CUDA, "launch of %s failed at %s:%d: %s: %s", kernel, file, line,
                   cudaGetErrorName(err), cudaGetErrorString(err));
}

zt_status zt_cuda_enter(zt_backend *be) {
    ZT_CUDA_TRY(cudaSetDevice(zt_cuda(be)->device));
    return ZT_OK;
}

zt_status zt_cuda_wait(zt_cuda_backend *cb) {
    cb->base.n_host_waits++;
    unsigned long long counted = 0;
    unsigned long long *pending = cb->pending_nonfinite;
    if (pending)
        ZT_CUDA_TRY(cudaMemcpyAsync(&counted, cb->nonfinite, sizeof counted, cudaMemcpyDeviceToHost,
                                    cb->stream));
    ZT_CUDA_TRY(cudaStreamSynchronize(cb->stream));
    if (pending) {
        *pending += counted;
        cb->pending_nonfinite = NULL;
    }
    return ZT_OK;
}

// ---------------------------------------------------------------------------------------------
// Vouched index ranges (backend.h: vouch_indices)

static bool overlaps(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
    const char *a0 = static_cast<const char *>(a), *b0 = static_cast<const char *>(b);
    return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

/* Whatever is written or released there is no longer known to be in range. */
static void forget_vouched(zt_cuda_backend *cb, const void *ptr, size_t n_bytes) {
    int kept = 0;
    for (int i = 0; i < cb->n_vouched; i++) {
        const zt_vouched_indices *v = &cb->vouched[i];
        if (!overlaps(v->values, v->n * sizeof(int32_t), ptr, n_bytes)) cb->vouched[kept++] = *v;
    }
    cb->n_vouched = kept;
}

static void cuda_vouch_indices(zt_backend *be, const int32_t *values, size_t n, int32_t limit) {
    zt_cuda_backend *cb = zt_cuda(be);
    if (values == NULL || n == 0 || limit < 1) return;
    forget_vouched(cb, values, n * sizeof(int32_t));
    if (cb->n_vouched == kMaxVouched) { /* the oldest goes: its op falls back to the check */
        for (int i = 1; i < kMaxVouched; i++)
            cb->vouched[i - 1] = cb->vouched[i];
        cb->n_vouched--;
    }
    cb->vouched[cb->n_vouched++] = zt_vouched_indices{values, n, limit};
}

int zt_cuda_indices_vouched(const zt_cuda_backend *cb, const int32_t *values, size_t n,
                            int32_t limit) {
    for (int i = 0; i < cb->n_vouched; i++) {
        const zt_vouched_indices *v = &cb->vouched[i];
        if (v->limit <= limit && values >= v->values && values + n <= v->values + v->n) return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Argument checks: the CPU backend's rules and wording, so both fail alike.

// ---------------------------------------------------------------------------------------------
// Memory

static zt_status cuda_alloc(zt_backend *be, size_t n_bytes, zt_mem_category category, void **out) {
    *out = NULL;
    if ((unsigned)category >= ZT_MEM_CATEGORIES)
        return zt_fail(ZT_ERR_INVALID_ARG, "cuda alloc: unknown memory category %d", (int)category);
    ZT_TRY(zt_cuda_enter(be));
    void *ptr = NULL;
    /* cudaMalloc(0) may hand back NULL; a real (tiny) allocation keeps "NULL = failure". */
    cudaError_t err = cudaMalloc(&ptr, n_bytes ? n_bytes : 1);
    if (err != cudaSuccess) {
        (void)cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        return zt_fail(err == cudaErrorMemoryAllocation ? ZT_ERR_NOMEM : ZT_ERR_CUDA,
                       "cuda alloc: %zu bytes of %s on device %d: %s", n_bytes,
                       zt_mem_category_name(category), zt_cuda(be)->device,
                       cudaGetErrorString(err));
    }
    zt_mem_track_alloc(category, n_bytes);
    *out = ptr;
    return ZT_OK;
}

static void cuda_free(zt_backend *be, void *ptr, size_t n_bytes, zt_mem_category category) {
    if (ptr == NULL) return;
    forget_vouched(zt_cuda(be), ptr, n_bytes);
    /* free cannot report: a failure here means the context is already broken, and the next op
     * that checks its calls will say so. */
    (void)cudaSetDevice(zt_cuda(be)->device);
    (void)cudaFree(ptr);
    if ((unsigned)category < ZT_MEM_CATEGORIES) zt_mem_track_free(category, n_bytes);
}

static zt_status check_copy(const char *op, void *dst, const void *src, size_t n_bytes) {
    if (dst == NULL || src == NULL)
        return zt_fail(ZT_ERR_INVALID_ARG, "cuda %s: NULL %s for %zu bytes", op,
                       dst == NULL ? "destination" : "source", n_bytes);
    return ZT_OK;
}

/* From pageable host memory cudaMemcpyAsync returns once the source has been staged, so the
 * caller may reuse host_src at once; the copy stays ordered before later ops on the stream. */
static zt_status cuda_upload(zt_backend *be, void *dst, const void *host_src, size_t n_bytes) {
    if (n_bytes == 0) return ZT_OK;
    ZT_TRY(check_copy("upload", dst, host_src, n_bytes));
    ZT_TRY(zt_cuda_enter(be));
    forget_vouched(zt_cuda(be), dst, n_bytes);
    ZT_CUDA_TRY(
        cudaMemcpyAsync(dst, host_src, n_bytes, cudaMemcpyHostToDevice, zt_cuda(be)->stream));
    return ZT_OK;
}

static zt_status cuda_download(zt_backend *be, void *host_dst, const void *src, size_t n_bytes) {
    if (n_bytes == 0) return ZT_OK;
    ZT_TRY(check_copy("download", host_dst, src, n_bytes));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    ZT_CUDA_TRY(cudaMemcpyAsync(host_dst, src, n_bytes, cudaMemcpyDeviceToHost, cb->stream));
    return zt_cuda_wait(cb); /* the caller reads host_dst next */
}

/* A memset on the stream: no host block to keep alive, so no wait (zt_backend_zero used to
 * upload zeros and then synchronise). */
static zt_status cuda_zero(zt_backend *be, void *dst, size_t n_bytes) {
    if (n_bytes == 0) return ZT_OK;
    if (dst == NULL)
        return zt_fail(ZT_ERR_INVALID_ARG, "cuda zero: NULL destination for %zu bytes", n_bytes);
    ZT_TRY(zt_cuda_enter(be));
    forget_vouched(zt_cuda(be), dst, n_bytes);
    ZT_CUDA_TRY(cudaMemsetAsync(dst, 0, n_bytes, zt_cuda(be)->stream));
    return ZT_OK;
}

static zt_status cuda_sync(zt_backend *be) {
    ZT_TRY(zt_cuda_enter(be));
    return zt_cuda_wait(zt_cuda(be));
}

zt_status zt_cuda_scratch(zt_cuda_backend *cb, size_t n_floats, const char *op, float **out) {
    if (n_floats <= cb->scratch_floats) {
        *out = cb->scratch;
        return ZT_OK;
    }
    if (n_floats > SIZE_MAX / sizeof(float))
        return zt_fail(ZT_ERR_NOMEM, "%s: scratch of %zu floats overflows", op, n_floats);
    if (cb->scratch) {
        /* cudaFree waits for the device, so kernels still reading the old buffer finish. */
        ZT_CUDA_TRY(cudaFree(cb->scratch));
        zt_mem_track_free(ZT_MEM_SCRATCH, cb->scratch_floats * sizeof(float));
        cb->scratch = NULL;
        cb->scratch_floats = 0;
    }
    void *grown = NULL;
    cudaError_t err = cudaMalloc(&grown, n_floats * sizeof(float));
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return zt_fail(ZT_ERR_NOMEM, "%s: device scratch of %zu bytes: %s", op,
                       n_floats * sizeof(float), cudaGetErrorString(err));
    }
    zt_mem_track_alloc(ZT_MEM_SCRATCH, n_floats * sizeof(float));
    cb->scratch = static_cast<float *>(grown);
    cb->scratch_floats = n_floats;
    *out = cb->scratch;
    return ZT_OK;
}

// ---------------------------------------------------------------------------------------------
// Life cycle

/* Releases whatever a (possibly half-finished) create acquired. */
static void release(zt_cuda_backend *cb) {
    (void)cudaSetDevice(cb->device);
    if (cb->stream) (void)cudaStreamSynchronize(cb->stream);
    if (cb->scratch) {
        (void)cudaFree(cb->scratch);
        zt_mem_track_free(ZT_MEM_SCRATCH, cb->scratch_floats * sizeof(float));
    }
    if (cb->index_error) {
        (void)cudaFree(cb->index_error);
        zt_mem_track_free(ZT_MEM_SCRATCH, kCudaFlagBytes);
    }
    if (cb->lt_workspace) {
        (void)cudaFree(cb->lt_workspace);
        zt_mem_track_free(ZT_MEM_SCRATCH, ZT_CUDA_LT_WORKSPACE_BYTES);
    }
    zt_cuda_logprob_release(cb);
    zt_cuda_lt_plans_release(cb);
    zt_cuda_attention_plans_release(cb);
    if (cb->lt) (void)cublasLtDestroy(cb->lt);
    if (cb->stream) (void)cudaStreamDestroy(cb->stream);
    free(cb);
}

static void cuda_destroy(zt_backend *be) {
    release(zt_cuda(be));
}

/* Mirrors the requests the forward ops make of zt_cuda_scratch (linear.cu, sumsq.cu). Attention's
 * kernels, cached or not, work in shared memory and registers and ask for none; its cuDNN path
 * (--gemm half, attention_cudnn.cu) takes 4 half (B,T,C) operands and cuDNN's workspace on
 * demand, which this query cannot size (it names no batch). The backward ops take
 * theirs on demand (no zt_scratch_op names them yet): per-row statistics, column-sum pieces and
 * linear's widened weight chunk. perturb and update take 3
 * floats per term when a perturbation has more than 32 terms (z_terms.cuh), which no query names:
 * under 1 KiB for 64 terms; linear copies an f32 bias that is not 16-byte aligned (never one of a
 * model's: those are 64-byte aligned). The cuBLASLt workspace is a fixed allocation of the backend,
 * not scratch. */
static size_t cuda_scratch_bytes(zt_backend *be, const zt_scratch_query *q) {
    size_t floats = 0;
    switch (q->op) {
    case ZT_SCRATCH_LINEAR: {
        /* a batched call copies each member's half bias */
        const int members = q->batch_count > 1 ? q->batch_count : 1;
        const zt_linear_scratch plan = zt_cuda_linear_scratch(
            be->gemm, q->n_rows, q->in_features, q->out_features, q->weight_dtype,
            q->has_bias && q->bias_dtype != ZT_F32 ? members : 0, zt_cuda(be)->linear_chunk_floats);
        floats = (plan.total_bytes + sizeof(float) - 1) / sizeof(float);
        break;
    }
    case ZT_SCRATCH_ATTENTION: {
        /* the cuDNN path's operands and workspace, for a query that names the batch and heads;
         * the f32 kernel takes none. q's GEMM takes half inputs under --gemm half with a half
         * weight (the query's weight_dtype), which the AUTO attention mode follows. */
        const int half_weight = q->weight_dtype == ZT_F16 || q->weight_dtype == ZT_BF16;
        const int gemm_input =
            be->gemm == ZT_GEMM_HALF && half_weight ? (int)q->weight_dtype : (int)ZT_F32;
        const size_t bytes = zt_cuda_attention_cudnn_scratch_bytes(
            zt_cuda(be), q->batch, q->seq_len, q->n_heads, q->head_dim, gemm_input);
        floats = (bytes + sizeof(float) - 1) / sizeof(float);
        break;
    }
    case ZT_SCRATCH_ATTENTION_CACHED:
        break;
    case ZT_SCRATCH_Z_SUMSQ:
        floats = zt_cuda_z_sumsq_scratch_floats(q->n_elems);
        break;
    case ZT_SCRATCH_LINEAR_BACKWARD:
        floats = (zt_cuda_linear_backward_scratch_bytes(q->n_rows, q->in_features, q->out_features,
                                                        1, q->weight_dtype != ZT_F32, q->has_bias,
                                                        zt_cuda(be)->linear_chunk_floats) +
                  sizeof(float) - 1) /
                 sizeof(float);
        break;
    case ZT_SCRATCH_ATTENTION_BACKWARD:
        floats = (zt_cuda_attention_backward_scratch_bytes(q->batch, q->n_heads, q->seq_len) +
                  sizeof(float) - 1) /
                 sizeof(float);
        break;
    case ZT_SCRATCH_LAYERNORM_BACKWARD:
        floats = (zt_cuda_layernorm_backward_scratch_bytes(q->n_rows, q->in_features, 1) +
                  sizeof(float) - 1) /
                 sizeof(float);
        break;
    case ZT_SCRATCH_LOGPROB_BACKWARD:
        floats =
            (zt_cuda_logprob_backward_scratch_bytes(q->n_rows) + sizeof(float) - 1) / sizeof(float);
        break;
    case ZT_SCRATCH_GRAD_SUMSQ:
        floats = zt_cuda_grad_sumsq_scratch_floats(q->n_elems);
        break;
    }
    return floats * sizeof(float);
}

/* Every precision is available: TF32 and half inputs on sm_80 and later, which is all this backend
 * is built for (gpu_arch). */
static zt_status cuda_set_gemm_precision(zt_backend *be, zt_gemm_precision precision) {
    (void)be;
    if ((unsigned)precision > ZT_GEMM_HALF)
        return zt_fail(ZT_ERR_INVALID_ARG, "cuda: gemm precision %d: unknown", (int)precision);
    return ZT_OK;
}

static const char *cuda_describe(zt_backend *be) {
    return zt_cuda(be)->description;
}

static zt_status cuda_reserve_scratch(zt_backend *be, size_t n_bytes) {
    if (n_bytes == 0) return ZT_OK;
    ZT_TRY(zt_cuda_enter(be));
    float *unused = NULL;
    return zt_cuda_scratch(zt_cuda(be), n_bytes / sizeof(float) + (n_bytes % sizeof(float) != 0),
                           "reserve_scratch", &unused);
}

/* Filled field by field (C++17 has no designated initializers); a field added to the table later
 * starts out NULL here instead of breaking the build. */
static zt_backend_ops make_ops() {
    zt_backend_ops ops;
    memset(&ops, 0, sizeof ops);
    ops.name = ZT_CUDA_BACKEND_NAME;
    ops.destroy = cuda_destroy;
    ops.alloc = cuda_alloc;
    ops.free = cuda_free;
    ops.upload = cuda_upload;
    ops.download = cuda_download;
    ops.sync = cuda_sync;
    ops.zero = cuda_zero;
    ops.scratch_bytes = cuda_scratch_bytes;
    ops.reserve_scratch = cuda_reserve_scratch;
    ops.gather_rows = zt_cuda_gather_rows;
    ops.layernorm = zt_cuda_layernorm;
    ops.linear = zt_cuda_linear;
    ops.round_half = zt_cuda_round_half;
    ops.layernorm_half = zt_cuda_layernorm_half;
    ops.linear_half_in = zt_cuda_linear_half_in;
    ops.linear_half_out = zt_cuda_linear_half_out;
    ops.linear_batched = zt_cuda_linear_batched;
    ops.attention = zt_cuda_attention;
    ops.attention_cached = zt_cuda_attention_cached;
    ops.add = zt_cuda_add;
    ops.target_logprobs = zt_cuda_target_logprobs;
    ops.perturb = zt_cuda_perturb;
    ops.perturb_variants = zt_cuda_perturb_variants;
    ops.z_sumsq = zt_cuda_z_sumsq;
    ops.update = zt_cuda_update;
    ops.update_perturb_variants = zt_cuda_update_perturb_variants;
    ops.gather_rows_backward = zt_cuda_gather_rows_backward;
    ops.layernorm_backward = zt_cuda_layernorm_backward;
    ops.linear_backward = zt_cuda_linear_backward;
    ops.attention_backward = zt_cuda_attention_backward;
    ops.target_logprobs_backward = zt_cuda_target_logprobs_backward;
    ops.fo_update = zt_cuda_fo_update;
    ops.grad_sumsq = zt_cuda_grad_sumsq;
    ops.set_gemm_precision = cuda_set_gemm_precision;
    ops.vouch_indices = cuda_vouch_indices;
    ops.describe = cuda_describe;
    return ops;
}

static const zt_backend_ops cuda_ops = make_ops();

static zt_status init(zt_cuda_backend *cb) {
    ZT_CUDA_TRY(cudaSetDevice(cb->device));
    ZT_CUDA_TRY(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking));
    ZT_CUBLAS_TRY(cublasLtCreate(&cb->lt));
    ZT_CUDA_TRY(cudaMalloc(&cb->lt_workspace, ZT_CUDA_LT_WORKSPACE_BYTES));
    zt_mem_track_alloc(ZT_MEM_SCRATCH, ZT_CUDA_LT_WORKSPACE_BYTES);
    ZT_TRY(zt_cuda_logprob_init(cb));
    void *slot = NULL;
    ZT_CUDA_TRY(cudaMalloc(&slot, kCudaFlagBytes));
    cb->index_error = static_cast<int *>(slot);
    cb->nonfinite = reinterpret_cast<unsigned long long *>(static_cast<char *>(slot) + 8);
    zt_mem_track_alloc(ZT_MEM_SCRATCH, kCudaFlagBytes);
    ZT_TRY(zt_cuda_attention_setup(cb));
    ZT_TRY(zt_cuda_attention_backward_setup(cb));
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE

using namespace ZT_CUDA_NAMESPACE;

/* "13.0" from CUDA's 13000. */
static void cuda_version_text(int version, char *buf, size_t size) {
    snprintf(buf, size, "%d.%d", version / 1000, version % 1000 / 10);
}

extern "C" zt_status zt_cuda_backend_create(int device, zt_backend **out) {
    *out = NULL;
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    char driver_text[16], runtime_text[16];
    cuda_version_text(driver, driver_text, sizeof driver_text);
    cuda_version_text(runtime, runtime_text, sizeof runtime_text);
    int n_devices = 0;
    cudaError_t err = cudaGetDeviceCount(&n_devices);
    if (err != cudaSuccess) {
        (void)cudaGetLastError(); /* leave no stale error for the next check */
        if (driver == 0)
            return zt_fail(ZT_ERR_UNAVAILABLE,
                           "cuda:%d: no usable CUDA device (no NVIDIA driver is installed; this "
                           "build needs one that supports CUDA %s)",
                           device, runtime_text);
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "cuda:%d: no usable CUDA device (cudaGetDeviceCount: %s; the driver "
                       "supports CUDA %s, this build needs %s or newer)",
                       device, cudaGetErrorString(err), driver_text, runtime_text);
    }
    if (device < 0 || device >= n_devices)
        return zt_fail(ZT_ERR_UNAVAILABLE, "cuda:%d: no such device (%d found)", device, n_devices);
    cudaDeviceProp prop;
    err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return zt_fail(ZT_ERR_UNAVAILABLE, "cuda:%d: cudaGetDeviceProperties: %s", device,
                       cudaGetErrorString(err));
    }
    /* The kernels are built for sm_80 and later (gpu_arch) and the GEMMs use TF32 and half
     * tensor cores: an older GPU would fail at its first launch with "no kernel image". */
    if (prop.major < 8)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "cuda:%d: %s has compute capability %d.%d; zotune's CUDA backend needs "
                       "8.0 or newer (A100, H100 or later)",
                       device, prop.name, prop.major, prop.minor);

    const char *sync_env = getenv("ZT_CUDA_SYNC");
    sync_each_launch = sync_env != NULL && strcmp(sync_env, "1") == 0;

    zt_cuda_backend *cb = static_cast<zt_cuda_backend *>(calloc(1, sizeof *cb));
    if (cb == NULL) return zt_fail(ZT_ERR_NOMEM, "cuda backend: out of host memory");
    cb->device = device;
    cb->linear_chunk_floats = ZT_CUDA_LINEAR_CHUNK_FLOATS;
    snprintf(cb->description, sizeof cb->description,
             "cuda:%d %s, compute capability %d.%d, %d SMs, %.1f GiB; driver supports CUDA %s, "
             "runtime %s",
             device, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), driver_text, runtime_text);
    cb->base.ops = &cuda_ops;
    cb->base.impl = cb;
    cb->base.head_chunk_rows = ZT_CUDA_HEAD_CHUNK_ROWS;
    cb->base.offers_batch_invariance = 1; /* linear.cu: one GEMM per row block */
    zt_status status = init(cb);
    if (status != ZT_OK) {
        release(cb);
        return zt_fail_context(status, "cuda:%d: ", device);
    }
    *out = &cb->base;
    return ZT_OK;
}

extern "C" zt_status zt_cuda_backend_set_linear_chunk(zt_backend *be, size_t floats) {
    if (floats < kMinLinearChunkFloats)
        return zt_fail(ZT_ERR_INVALID_ARG, "linear chunk of %zu floats: at least %zu", floats,
                       kMinLinearChunkFloats);
    ZT_CUDA_NAMESPACE::zt_cuda(be)->linear_chunk_floats = floats;
    return ZT_OK;
}

extern "C" void zt_cuda_backend_gemm_counts(zt_backend *be, zt_cuda_gemm_counts *out) {
    *out = ZT_CUDA_NAMESPACE::zt_cuda(be)->gemm_counts;
    out->batched_refused = ZT_CUDA_NAMESPACE::zt_cuda(be)->batched_gemm_refused;
}

extern "C" void zt_cuda_backend_attention_paths(zt_backend *be,
                                                zt_cuda_attention_path_counts *out) {
    *out = ZT_CUDA_NAMESPACE::zt_cuda(be)->attention_path_counts;
}

/* mode is an int, not the enum: a value outside the enum is refused, not undefined */
extern "C" zt_status zt_cuda_backend_set_attention_mode(zt_backend *be, int mode) {
    if (mode < 0 || mode > ZT_CUDA_ATTENTION_BF16)
        return zt_fail(ZT_ERR_INVALID_ARG, "attention mode %d: unknown", mode);
    ZT_CUDA_NAMESPACE::zt_cuda(be)->attention_mode = (zt_cuda_attention_mode)mode;
    return ZT_OK;
}

extern "C" void *zt_cuda_backend_stream(zt_backend *be) {
    return ZT_CUDA_NAMESPACE::zt_cuda(be)->stream;
}
