/* What the CPU backend's .c files share (the twin of kernels/cuda/cuda_common.cuh): the backend
 * state, the OpenMP macros, the scratch accessor, the dtype helpers, the scratch each op takes
 * (asked by the op and by the planner alike) and the prototypes of the ops. Backend buffers are
 * plain host memory, so ops read and write them directly.
 *
 * The backend is not re-entrant: ops on one zt_backend must not run concurrently, because they
 * share one grow-on-demand scratch buffer. Parallelism happens inside each op (OpenMP).
 *
 * CUDA's index_check.cu has no twin here: the CPU ops check their indices inline, on the host.
 */
#ifndef ZT_CPU_COMMON_H
#define ZT_CPU_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "common/dtype.h"
#include "cpu/cpu_backend.h"
#include "op_checks.h"
#include "zt_config.h"

#if ZT_HAVE_OPENMP
#include <omp.h>
#define ZT_CPU_PRAGMA(text) _Pragma(#text)
/* Static schedule for loops whose iterations cost the same (rows of an op); dynamic for causal
 * attention, where query i costs O(i). */
#define ZT_CPU_PARALLEL_FOR(n_threads)                                                             \
    ZT_CPU_PRAGMA(omp parallel for num_threads(n_threads) schedule(static))
#define ZT_CPU_PARALLEL_FOR_DYNAMIC(n_threads)                                                     \
    ZT_CPU_PRAGMA(omp parallel for num_threads(n_threads) schedule(dynamic, 4))
#define ZT_CPU_PARALLEL_FOR_SUM(n_threads, var)                                                    \
    ZT_CPU_PRAGMA(omp parallel for num_threads(n_threads) schedule(static) reduction(+ : var))
#define ZT_CPU_SIMD_SUM(var) ZT_CPU_PRAGMA(omp simd reduction(+ : var))
#define ZT_CPU_SIMD ZT_CPU_PRAGMA(omp simd)
#define ZT_CPU_THREAD_INDEX() omp_get_thread_num()
#else
/* Serial: the thread count is only evaluated, which keeps `be` used. These expand to a statement,
 * so put them where one may stand (not as the body of an unbraced if). */
#define ZT_CPU_PARALLEL_FOR(n_threads) (void)(n_threads);
#define ZT_CPU_PARALLEL_FOR_DYNAMIC(n_threads) (void)(n_threads);
#define ZT_CPU_PARALLEL_FOR_SUM(n_threads, var) (void)(n_threads);
#define ZT_CPU_SIMD_SUM(var)
#define ZT_CPU_SIMD
#define ZT_CPU_THREAD_INDEX() 0
#endif

/* linear converts half-precision weights this many output rows at a time, so its scratch is
 * bounded by ZT_CPU_LINEAR_CHUNK_ROWS * in_features floats however large out_features is. */
#define ZT_CPU_LINEAR_CHUNK_ROWS 256

enum { ZT_CPU_LOAD_WINDOW = 3 }; /* load samples the default thread count looks back on */

/* The default thread count's view of the machine (kernels/cpu/threads.c). */
typedef struct zt_cpu_threads_state {
    int adaptive;      /* the default count: yield cores other processes keep busy */
    int n_cores;       /* cores this process may run on */
    int n_active;      /* threads the next region gets */
    double next_check; /* monotonic seconds of the next look at the load */
    int recent[ZT_CPU_LOAD_WINDOW], filled, next;
} zt_cpu_threads_state;

/* The backend's private state. `base` comes first so a zt_backend * is also this struct's. */
typedef struct zt_cpu_backend {
    zt_backend base;
    int n_threads; /* the most threads a parallel region gets (scratch is sized for it); >= 1 */
    zt_cpu_threads_state threads;
    float *scratch; /* 64-byte aligned, tracked as ZT_MEM_SCRATCH */
    size_t scratch_floats;
    char description[256]; /* what describe() returns */
} zt_cpu_backend;

/* Threads for the next parallel region: n_threads as given, or for the default count the cores
 * other runnable processes leave free (looked at every 0.1 s), between 1 and n_threads. */
int zt_cpu_threads(zt_cpu_backend *cpu);
/* The pieces, exposed for tests: the free cores for a load sample (runnable tasks in the whole
 * system and ours), clamped to [1, n_max]; the count after a sample (the fewest in the window);
 * the cores this process may use. */
int zt_cpu_threads_for_load(int n_max, int n_cores, int runnable_total, int runnable_own);
int zt_cpu_threads_after(zt_cpu_threads_state *state, int target);
int zt_cpu_online_cores(void);

static inline zt_cpu_backend *zt_cpu(zt_backend *be) {
    return (zt_cpu_backend *)be->impl;
}

/* Returns a scratch area of at least n_floats, growing the backend's buffer when needed. The
 * area stays valid until the next call; `op` names the caller in the out-of-memory message. */
zt_status zt_cpu_scratch(zt_cpu_backend *cpu, size_t n_floats, const char *op, float **out);

/* ---- dtype helpers ---- */

/* Upcasts n elements of w starting at element `first` into dst. */
static inline void zt_cpu_weight_to_f32(float *dst, /* (n) */
                                        zt_weight w, size_t first, size_t n) {
    if (w.dtype == ZT_F32) {
        const float *src = (const float *)w.data + first;
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i];
    } else if (w.dtype == ZT_F16) {
        const uint16_t *src = (const uint16_t *)w.data + first;
        for (size_t i = 0; i < n; i++)
            dst[i] = zt_f16_to_f32(src[i]);
    } else {
        const uint16_t *src = (const uint16_t *)w.data + first;
        for (size_t i = 0; i < n; i++)
            dst[i] = zt_bf16_to_f32(src[i]);
    }
}

/* dst = src rounded to nearest even in `dtype` (f16 or bf16), kept as f32 (exact). */
static inline void zt_cpu_round_to(float *dst, const float *src, zt_dtype dtype, /* (n), (n) */
                                   size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = zt_round_through(dtype, src[i]);
}

/* One element of w as f32; for per-element reads of short vectors (gamma, beta). */
static inline float zt_cpu_weight_at(zt_weight w, size_t i) {
    return zt_load_f32(w.data, w.dtype, i);
}

/* ---- scratch: what each op takes of zt_cpu_scratch, asked by the op and by the planner ---- */

/* linear's scratch, in floats from the start of the area: [weight chunk | bias | rounded
 * inputs | f32 output], any part possibly empty. A half weight is widened chunk_rows output rows
 * at a time; a half bias is widened whole; under ZT_GEMM_HALF a half weight's activations are
 * rounded to its dtype, and linear_half_out computes its output in f32 before rounding it. */
typedef struct zt_cpu_linear_scratch_layout {
    size_t chunk_rows; /* weight rows widened per GEMM; 0 = the weight is used as stored (f32) */
    size_t chunk_offset, chunk_floats;
    size_t bias_offset, bias_floats;     /* bias_floats 0: the bias is absent or already f32 */
    size_t inputs_offset, input_floats;  /* input_floats 0: the activations are used as given */
    size_t output_offset, output_floats; /* output_floats 0: the output is f32 (linear) */
    size_t total_floats;
} zt_cpu_linear_scratch_layout;

/* The layout linear (half_output 0) or linear_half_out (1) uses under GEMM precision `gemm`
 * (linear.c). */
zt_cpu_linear_scratch_layout zt_cpu_linear_scratch(zt_gemm_precision gemm, int n_rows,
                                                   int in_features, int out_features,
                                                   zt_dtype weight_dtype, zt_dtype bias_dtype,
                                                   int has_bias, int half_output);
/* Floats attention takes: one query's working rows per thread (attention.c). attention_cached
 * takes the same with seq_len = the cache's capacity. */
size_t zt_cpu_attention_scratch_floats(int seq_len, int head_dim, int n_threads);
size_t zt_cpu_attention_thread_floats(int seq_len, int head_dim);
/* Floats attention_backward takes (attention_backward.c): per thread, one query's probability row
 * (T), its scaled query (D) and its d_q accumulator (D). Not yet a zt_scratch_op: the backward ops
 * are called outside zt_backend_ops for now, so a planner adds this itself. */
size_t zt_cpu_attention_backward_scratch_floats(int seq_len, int head_dim, int n_threads);
size_t zt_cpu_attention_backward_thread_floats(int seq_len, int head_dim);

/* ---- the per-query routine attention and attention_cached share (attention.c) ---- */

/* One thread's working rows: scores (T), the scaled query (D), the output accumulator (D). */
typedef struct zt_cpu_query_scratch {
    float *scores;
    float *q_scaled;
    float *acc;
} zt_cpu_query_scratch;

/* The rows laid out in an area of zt_cpu_attention_thread_floats(seq_len, head_dim) floats. */
zt_cpu_query_scratch zt_cpu_query_scratch_at(float *area, int seq_len, int head_dim);

/* out_row = softmax over admissible keys of (q_row * q_scale) . k_j, applied to v_j. Keys are
 * rows of k and v with stride `row_stride`; key j is admissible when j <= query and
 * mask[j] != 0; none admissible gives zeros. */
void zt_cpu_attend_one_query(float *out_row,                           /* (D) */
                             const float *q_row,                       /* (D) */
                             const float *k_head, const float *v_head, /* (T,stride) from head */
                             const int32_t *mask,                      /* (T) */
                             int query, int head_dim, size_t row_stride, float q_scale,
                             zt_cpu_query_scratch s);

/* ---- the row statistics layernorm and layernorm_backward share (layernorm.c) ---- */

/* A row's mean and 1/sqrt(biased variance + eps), computed in double and rounded to f32: the
 * backward recomputes them through this one function so its x-hat is the forward's. */
void zt_cpu_layernorm_row_statistics(const float *x, /* (C) */
                                     int n_cols, float eps, float *mean_out, float *rstd_out);

/* Floats z_sumsq takes for n_elems Gaussian elements (sumsq.c). */
size_t zt_cpu_z_sumsq_scratch_floats(size_t n_elems);

/* ---- the ops, one family per file, with the signatures of zt_backend_ops (backend.h) ---- */

zt_status zt_cpu_gather_rows(zt_backend *be, float *out, const int32_t *rows, zt_weight table,
                             int n_rows, int n_table_rows, int n_cols, int accumulate,
                             const zt_gather_perturbation *perturb);
zt_status zt_cpu_layernorm(zt_backend *be, float *out, const float *in, zt_weight gamma,
                           zt_weight beta, int n_rows, int n_cols, float eps);
zt_status zt_cpu_linear(zt_backend *be, float *out, const float *in, zt_weight w, zt_weight bias,
                        int n_rows, int in_features, int out_features, int relu);
/* the half-activation ops (layernorm.c, linear.c) */
zt_status zt_cpu_layernorm_half(zt_backend *be, void *out, zt_dtype out_dtype, const float *in,
                                zt_weight gamma, zt_weight beta, int n_rows, int n_cols, float eps);
zt_status zt_cpu_linear_half_in(zt_backend *be, float *out, const void *in, zt_weight w,
                                zt_weight bias, int n_rows, int in_features, int out_features,
                                int relu);
zt_status zt_cpu_linear_batched(zt_backend *be, float *out, size_t out_stride, const void *in,
                                zt_dtype in_dtype, zt_weight w, size_t w_stride, zt_weight bias,
                                size_t bias_stride, int count, int n_rows, int in_features,
                                int out_features, int relu);
zt_status zt_cpu_linear_half_out(zt_backend *be, void *out, const void *in, zt_weight w,
                                 zt_weight bias, int n_rows, int in_features, int out_features,
                                 int relu);
zt_status zt_cpu_round_half(zt_backend *be, void *dst, zt_dtype dtype, const float *src,
                            size_t n_elems);
zt_status zt_cpu_attention(zt_backend *be, float *out, const float *q, const float *k,
                           const float *v, const int32_t *key_mask, int batch, int seq_len,
                           int n_heads, int head_dim, float q_scale);
zt_status zt_cpu_attention_cached(zt_backend *be, float *out, const float *q, const float *k,
                                  const float *v, float *k_cache, float *v_cache,
                                  const int32_t *key_mask, int batch, int n_new, int capacity,
                                  int start, int n_heads, int head_dim, float q_scale);
zt_status zt_cpu_add(zt_backend *be, float *x, const float *y, size_t n_elems);
zt_status zt_cpu_target_logprobs(zt_backend *be, float *logprob, const float *logits,
                                 const int32_t *targets, int n_rows, int vocab);
zt_status zt_cpu_target_logprobs_fold(zt_backend *be, float *logprob, double *state,
                                      const float *logits, const int32_t *targets, int n_rows,
                                      int vocab, int col0, int n_cols);
zt_status zt_cpu_perturb(zt_backend *be, void *dst, zt_dtype dst_dtype, zt_weight src,
                         uint32_t tensor_id, uint64_t elem_offset, size_t n_elems,
                         const zt_perturbation *p);
zt_status zt_cpu_perturb_variants(zt_backend *be, void *const *dst, zt_dtype dst_dtype,
                                  zt_weight src, uint32_t tensor_id, uint64_t elem_offset,
                                  size_t n_elems, const zt_perturbation *p, int n_variants);
zt_status zt_cpu_z_sumsq(zt_backend *be, double *out, uint64_t seed, uint32_t tensor_id,
                         size_t n_elems, zt_dist dist);
zt_status zt_cpu_update(zt_backend *be, void *theta, zt_dtype dtype, uint32_t tensor_id,
                        size_t n_elems, float *state, const zt_update *u);
zt_status zt_cpu_update_perturb_variants(zt_backend *be, void *theta, zt_dtype dtype,
                                         uint32_t tensor_id, size_t n_elems, float *state,
                                         const zt_update *u, void *const *dst, zt_dtype dst_dtype,
                                         const zt_perturbation *p, int n_variants);

#endif
