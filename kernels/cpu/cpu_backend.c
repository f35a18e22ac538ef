/* The CPU backend: op table, host memory, scratch and its planning. The ops live in the other
 * files of this directory, one family each (cpu_common.h). */
#include "cpu/cpu_backend.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fault.h"
#include "core/status.h"
#include "cpu/cpu_backward.h"
#include "cpu/cpu_common.h"

enum { ZT_CPU_ALIGNMENT = 64 };

/* posix_memalign wants a non-zero size; rounding up to the alignment keeps SIMD tails inside the
 * allocation. */
static void *aligned_host_alloc(size_t n_bytes) {
    size_t rounded = (n_bytes + ZT_CPU_ALIGNMENT - 1) / ZT_CPU_ALIGNMENT * ZT_CPU_ALIGNMENT;
    if (rounded < n_bytes) return NULL; /* overflow */
    void *ptr = NULL;
    if (zt_fault_alloc_fails() ||
        posix_memalign(&ptr, ZT_CPU_ALIGNMENT, rounded ? rounded : ZT_CPU_ALIGNMENT) != 0)
        return NULL;
    return ptr;
}

static zt_status cpu_alloc(zt_backend *be, size_t n_bytes, zt_mem_category category, void **out) {
    (void)be;
    *out = NULL;
    if ((unsigned)category >= ZT_MEM_CATEGORIES)
        return zt_fail(ZT_ERR_INVALID_ARG, "cpu alloc: unknown memory category %d", (int)category);
    void *ptr = aligned_host_alloc(n_bytes);
    if (ptr == NULL)
        return zt_fail(ZT_ERR_NOMEM, "cpu alloc: %zu bytes of %s failed", n_bytes,
                       zt_mem_category_name(category));
    zt_mem_track_alloc(category, n_bytes);
    *out = ptr;
    return ZT_OK;
}

static void cpu_free(zt_backend *be, void *ptr, size_t n_bytes, zt_mem_category category) {
    (void)be;
    if (ptr == NULL) return;
    free(ptr);
    if ((unsigned)category < ZT_MEM_CATEGORIES) zt_mem_track_free(category, n_bytes);
}

static zt_status copy_bytes(const char *op, void *dst, const void *src, size_t n_bytes) {
    if (n_bytes == 0) return ZT_OK;
    if (dst == NULL || src == NULL)
        return zt_fail(ZT_ERR_INVALID_ARG, "cpu %s: NULL %s for %zu bytes", op,
                       dst == NULL ? "destination" : "source", n_bytes);
    memcpy(dst, src, n_bytes);
    return ZT_OK;
}

static zt_status cpu_upload(zt_backend *be, void *dst, const void *host_src, size_t n_bytes) {
    (void)be;
    return copy_bytes("upload", dst, host_src, n_bytes);
}

static zt_status cpu_download(zt_backend *be, void *host_dst, const void *src, size_t n_bytes) {
    (void)be;
    return copy_bytes("download", host_dst, src, n_bytes);
}

/* Pieces of 1 MiB, so a large gradient is cleared by all threads and a small one by one. */
static zt_status cpu_zero(zt_backend *be, void *dst, size_t n_bytes) {
    enum { PIECE_BYTES = 1 << 20 };
    if (n_bytes == 0) return ZT_OK;
    if (dst == NULL)
        return zt_fail(ZT_ERR_INVALID_ARG, "cpu zero: NULL destination for %zu bytes", n_bytes);
    char *bytes = dst;
    const int64_t n_pieces = (int64_t)((n_bytes + PIECE_BYTES - 1) / PIECE_BYTES);
    ZT_CPU_PARALLEL_FOR(n_pieces > 1 ? zt_cpu_threads(zt_cpu(be)) : 1)
    for (int64_t piece = 0; piece < n_pieces; piece++) {
        const size_t start = (size_t)piece * PIECE_BYTES;
        const size_t length = n_bytes - start < PIECE_BYTES ? n_bytes - start : PIECE_BYTES;
        memset(bytes + start, 0, length);
    }
    return ZT_OK;
}

/* Every op finishes before it returns. */
static zt_status cpu_sync(zt_backend *be) {
    (void)be;
    return ZT_OK;
}

static void cpu_destroy(zt_backend *be) {
    zt_cpu_backend *cpu = zt_cpu(be);
    if (cpu->scratch) {
        free(cpu->scratch);
        zt_mem_track_free(ZT_MEM_SCRATCH, cpu->scratch_floats * sizeof(float));
    }
    free(cpu);
}

zt_status zt_cpu_scratch(zt_cpu_backend *cpu, size_t n_floats, const char *op, float **out) {
    if (n_floats <= cpu->scratch_floats) {
        *out = cpu->scratch;
        return ZT_OK;
    }
    if (n_floats > SIZE_MAX / sizeof(float))
        return zt_fail(ZT_ERR_NOMEM, "%s: scratch of %zu floats overflows", op, n_floats);
    float *grown = aligned_host_alloc(n_floats * sizeof(float));
    if (grown == NULL)
        return zt_fail(ZT_ERR_NOMEM, "%s: scratch of %zu bytes failed", op,
                       n_floats * sizeof(float));
    if (cpu->scratch) {
        free(cpu->scratch);
        zt_mem_track_free(ZT_MEM_SCRATCH, cpu->scratch_floats * sizeof(float));
    }
    zt_mem_track_alloc(ZT_MEM_SCRATCH, n_floats * sizeof(float));
    cpu->scratch = grown;
    cpu->scratch_floats = n_floats;
    *out = grown;
    return ZT_OK;
}

/* Asks each op's own scratch function (cpu_common.h), the one the op itself calls, so the plan
 * and the op cannot drift apart. */
static size_t cpu_scratch_bytes(zt_backend *be, const zt_scratch_query *q) {
    size_t floats = 0;
    switch (q->op) {
    case ZT_SCRATCH_LINEAR:
        floats = zt_cpu_linear_scratch(be->gemm, q->n_rows, q->in_features, q->out_features,
                                       q->weight_dtype, q->bias_dtype, q->has_bias, q->half_output)
                     .total_floats;
        break;
    case ZT_SCRATCH_ATTENTION:
    case ZT_SCRATCH_ATTENTION_CACHED:
        floats = zt_cpu_attention_scratch_floats(q->seq_len, q->head_dim, zt_cpu(be)->n_threads);
        break;
    case ZT_SCRATCH_Z_SUMSQ:
        floats = zt_cpu_z_sumsq_scratch_floats(q->n_elems);
        break;
    case ZT_SCRATCH_LINEAR_BACKWARD:
        floats =
            zt_cpu_linear_backward_scratch_floats(q->in_features, q->out_features, q->weight_dtype);
        break;
    case ZT_SCRATCH_ATTENTION_BACKWARD:
        floats = zt_cpu_attention_backward_scratch_floats(q->seq_len, q->head_dim,
                                                          zt_cpu(be)->n_threads);
        break;
    case ZT_SCRATCH_LAYERNORM_BACKWARD:
        floats = zt_cpu_layernorm_backward_scratch_floats(q->n_rows, q->in_features);
        break;
    case ZT_SCRATCH_GRAD_SUMSQ:
        floats = zt_cpu_grad_sumsq_scratch_floats(q->n_elems);
        break;
    case ZT_SCRATCH_LOGPROB_BACKWARD:
        break; /* the CPU's works in place */
    }
    return floats * sizeof(float);
}

/* Half inputs are rounded here as the CUDA backend rounds them; TF32 is a tensor-core conversion
 * whose rounding the CPU cannot promise to match, so it is refused. */
static zt_status cpu_set_gemm_precision(zt_backend *be, zt_gemm_precision precision) {
    (void)be;
    if (precision == ZT_GEMM_TF32)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "--gemm tf32: the cpu backend has no TF32 (use f32 or half, or --device "
                       "cuda)");
    return ZT_OK;
}

static zt_status cpu_reserve_scratch(zt_backend *be, size_t n_bytes) {
    float *unused;
    if (n_bytes == 0) return ZT_OK;
    return zt_cpu_scratch(zt_cpu(be), (n_bytes + sizeof(float) - 1) / sizeof(float),
                          "reserve_scratch", &unused);
}

static const char *cpu_describe(zt_backend *be) {
    return zt_cpu(be)->description;
}

static const zt_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .sync = cpu_sync,
    .zero = cpu_zero,
    .scratch_bytes = cpu_scratch_bytes,
    .reserve_scratch = cpu_reserve_scratch,
    .gather_rows = zt_cpu_gather_rows,
    .layernorm = zt_cpu_layernorm,
    .linear = zt_cpu_linear,
    .round_half = zt_cpu_round_half,
    .layernorm_half = zt_cpu_layernorm_half,
    .linear_half_in = zt_cpu_linear_half_in,
    .linear_half_out = zt_cpu_linear_half_out,
    .linear_batched = zt_cpu_linear_batched,
    .attention = zt_cpu_attention,
    .attention_cached = zt_cpu_attention_cached,
    .add = zt_cpu_add,
    .target_logprobs = zt_cpu_target_logprobs,
    .target_logprobs_fold = zt_cpu_target_logprobs_fold,
    .perturb = zt_cpu_perturb,
    .perturb_variants = zt_cpu_perturb_variants,
    .update_perturb_variants = zt_cpu_update_perturb_variants,
    .z_sumsq = zt_cpu_z_sumsq,
    .update = zt_cpu_update,
    .gather_rows_backward = zt_cpu_gather_rows_backward,
    .layernorm_backward = zt_cpu_layernorm_backward,
    .linear_backward = zt_cpu_linear_backward,
    .attention_backward = zt_cpu_attention_backward,
    .target_logprobs_backward = zt_cpu_target_logprobs_backward,
    .fo_update = zt_cpu_fo_update,
    .grad_sumsq = zt_cpu_grad_sumsq,
    .set_gemm_precision = cpu_set_gemm_precision,
    .describe = cpu_describe,
};

static int default_thread_count(void) {
#if ZT_HAVE_OPENMP
    /* Honours OMP_NUM_THREADS, which otherwise defaults to every core. */
    return omp_get_max_threads();
#else
    return 1;
#endif
}

zt_status zt_cpu_backend_create(int n_threads, zt_backend **out) {
    *out = NULL;
    zt_cpu_backend *cpu = zt_calloc(1, sizeof *cpu);
    if (cpu == NULL) return zt_fail(ZT_ERR_NOMEM, "cpu backend: out of memory");
    /* Without OpenMP the ops run on the calling thread whatever was asked. */
    cpu->n_threads = ZT_HAVE_OPENMP && n_threads > 0 ? n_threads : default_thread_count();
    /* Only the default count adapts: OMP_NUM_THREADS and --threads are taken as given. */
    cpu->threads.adaptive = ZT_HAVE_OPENMP && n_threads <= 0 && !getenv("OMP_NUM_THREADS");
    cpu->threads.n_cores = zt_cpu_online_cores();
    cpu->threads.n_active = cpu->n_threads;
    /* Debian's OpenBLAS runs its own pthreads pool, which fights OpenMP's spinning threads for
     * the same cores: bench_step measured GEMMs slower with 2 BLAS threads than with 1 next to
     * our OpenMP ops, and sgemm's bits depend on its thread count. So OpenBLAS runs on one
     * thread (the same bits whatever the machine's core count) unless OPENBLAS_NUM_THREADS asks
     * otherwise. */
    zt_cpu_blas_select_kernels();
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    snprintf(cpu->description, sizeof cpu->description, "%d thread%s, %s", cpu->n_threads,
             cpu->n_threads == 1 ? "" : "s", zt_cpu_blas_kernels());
    cpu->base.ops = &cpu_ops;
    cpu->base.impl = cpu;
    /* 256 rows: OpenBLAS packs the whole head table once per GEMM call, so each chunk re-reads
     * and re-packs it (154 MB at opt-125m in f32); 256 rows (an LM batch of 4 x 64 tokens in one
     * chunk) cost 256 x 50272 x 4 B = 51 MB of logits, where 64 rows re-packed the table 4 times
     * (docs/design.md §2.3). */
    cpu->base.head_chunk_rows = 256;
    /* 512 table rows: a staged block is 1.5 MB in f32 per variant and its logits 0.5 MB at 256
     * rows, so both stay in L2 instead of the 154 MB tables and 51 MB of logits going through
     * memory; bench_step at opt-125m f32, batch 4 x 64: staging 278 -> 223 ms, step 1736 ->
     * 1686 ms on 1 thread; 256 to 1024 rows did as well, 4096 worse. */
    cpu->base.head_vocab_chunk = 512;
    cpu->base.offers_batch_invariance = 1;
    cpu->base.gemm_kernels = zt_cpu_blas_gemm_kernels();
    *out = &cpu->base;
    return ZT_OK;
}
