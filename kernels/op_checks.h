/* Argument checks every backend makes, with one wording, so a bad call fails the same way on the
 * CPU and on CUDA (tests compare the messages). Host code; callable from .cu files. */
#ifndef ZT_OP_CHECKS_H
#define ZT_OP_CHECKS_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

zt_status zt_check_dim(const char *op, const char *what, int value); /* value > 0 */
zt_status zt_check_ptr(const char *op, const char *what, const void *ptr);
/* A known dtype and, when `required`, data. */
/* One of the storage dtypes. */
zt_status zt_check_dtype(const char *op, const char *what, zt_dtype dtype);
zt_status zt_check_weight(const char *op, const char *what, zt_weight w, int required);
/* Fails when the byte ranges [a, a+a_bytes) and [b, b+b_bytes) overlap. */
zt_status zt_check_disjoint(const char *op, const char *a_name, const void *a, size_t a_bytes,
                            const char *b_name, const void *b, size_t b_bytes);
/* The forward ops' arguments (backend.h states the contract of each). */
zt_status zt_check_gather_args(const char *op, const float *out, const int32_t *rows,
                               zt_weight table, int n_rows, int n_table_rows, int n_cols,
                               const zt_gather_perturbation *perturb);
zt_status zt_check_layernorm_args(const char *op, const float *out, const float *in,
                                  zt_weight gamma, zt_weight beta, int n_rows, int n_cols,
                                  float eps);
zt_status zt_check_linear_args(const char *op, const float *out, const float *in, zt_weight w,
                               zt_weight bias, int n_rows, int in_features, int out_features);
/* The half-activation ops (backend.h): a half dtype (f16 or bf16) where one is named, buffers
 * disjoint; linear_half_in and linear_half_out also need ZT_GEMM_HALF and a weight of the
 * input's half dtype. */
zt_status zt_check_round_half_args(const char *op, const void *dst, zt_dtype dtype,
                                   const float *src, size_t n_elems);
zt_status zt_check_layernorm_half_args(const char *op, const void *out, zt_dtype out_dtype,
                                       const float *in, zt_weight gamma, zt_weight beta, int n_rows,
                                       int n_cols, float eps);
zt_status zt_check_linear_half_in_args(const char *op, zt_gemm_precision gemm, const float *out,
                                       const void *in, zt_weight w, zt_weight bias, int n_rows,
                                       int in_features, int out_features);
/* linear_batched: count >= 1, in_dtype f32 (linear's checks for member 0) or w's half dtype
 * (linear_half_in's), strides that keep the members' outputs, weights and biases apart, and no
 * member's output overlapping the input. */
zt_status zt_check_linear_batched_args(const char *op, zt_gemm_precision gemm, const float *out,
                                       size_t out_stride, const void *in, zt_dtype in_dtype,
                                       zt_weight w, size_t w_stride, zt_weight bias,
                                       size_t bias_stride, int count, int n_rows, int in_features,
                                       int out_features);
/* linear_half_out: linear_half_in's checks on a half out, and a bias (if any) in w's dtype. */
zt_status zt_check_linear_half_out_args(const char *op, zt_gemm_precision gemm, const void *out,
                                        const void *in, zt_weight w, zt_weight bias, int n_rows,
                                        int in_features, int out_features);
zt_status zt_check_attention_args(const char *op, const float *out, const float *q, const float *k,
                                  const float *v, const int32_t *key_mask, int batch, int seq_len,
                                  int n_heads, int head_dim, float q_scale);
/* attention_cached: dims > 0, 0 <= start, start + n_new <= capacity, pointers, finite q_scale, and
 * no overlap between out, the caches and the new q, k, v (the op writes out and the caches). */
zt_status zt_check_attention_cached_args(const char *op, const float *out, const float *q,
                                         const float *k, const float *v, const float *k_cache,
                                         const float *v_cache, const int32_t *key_mask, int batch,
                                         int n_new, int capacity, int start, int n_heads,
                                         int head_dim, float q_scale);
zt_status zt_check_logprob_args(const char *op, const float *logprob, const float *logits,
                                const int32_t *targets, int n_rows, int vocab);

/* The backward ops' arguments (backend.h, docs/design.md §3.1): dims, the pointers each gradient
 * needs, and no overlap between a buffer the op writes and another it touches (an in-place
 * d_in == d_out or d_logits == logits is allowed where the contract says so). Index ranges
 * (rows, targets) are each backend's to check, as the indices may live on the device; the
 * wording is "<op>: row N index I outside [0, L)" and "<op>: row N target T outside [0, V)". */
zt_status zt_check_gather_backward_args(const char *op, const float *d_table, const float *d_out,
                                        const int32_t *rows, int n_rows, int n_table_rows,
                                        int n_cols);
zt_status zt_check_layernorm_backward_args(const char *op, const float *d_in, const float *d_gamma,
                                           const float *d_beta, const float *d_out, const float *in,
                                           zt_weight gamma, int n_rows, int n_cols, float eps);
/* `in` is required only with d_w, the weight's data only with d_in, `out` only with relu. */
zt_status zt_check_linear_backward_args(const char *op, const float *d_in, const float *d_w,
                                        const float *d_bias, const float *d_out, const float *in,
                                        const float *out, zt_weight w, int n_rows, int in_features,
                                        int out_features, int relu);
zt_status zt_check_attention_backward_args(const char *op, const float *d_q, const float *d_k,
                                           const float *d_v, const float *d_out, const float *q,
                                           const float *k, const float *v, const float *out,
                                           const int32_t *key_mask, int batch, int seq_len,
                                           int n_heads, int head_dim, float q_scale);
zt_status zt_check_logprob_backward_args(const char *op, const float *d_logits, const float *logits,
                                         const int32_t *targets, const float *d_logprob, int n_rows,
                                         int vocab);

/* A perturbation: known distribution, n_terms >= 0, terms present, finite scale and
 * coefficients (a non-finite one would write NaN or Inf everywhere: refused before any write). */
zt_status zt_check_perturbation(const char *op, const zt_perturbation *p);
/* perturb_variants: 1..ZT_MAX_PERTURB_VARIANTS variants, each perturbation checked, and for a
 * non-empty tensor every dst present and disjoint from src and from the others. */
enum { ZT_MAX_PERTURB_VARIANTS = 64 };
zt_status zt_check_variant_args(const char *op, void *const *dst, zt_dtype dst_dtype, zt_weight src,
                                size_t n_elems, const zt_perturbation *p, int n_variants);
/* The update op's arguments other than its perturbation: dtype, finite lr and decay, betas in
 * [0, 1], AdaMM eps > 0, a state of the rule's size disjoint from theta. */
zt_status zt_check_update_args(const char *op, const void *theta, zt_dtype dtype, size_t n_elems,
                               const float *state, const zt_update *u);
/* update_perturb_variants: the update (zt_check_update_args and its perturbation), the variants
 * (zt_check_variant_args, their source being the updated theta) and, for a rule with state,
 * every dst disjoint from the state. An empty tensor checks the perturbations only. */
zt_status zt_check_update_variants_args(const char *op, void *theta, zt_dtype dtype, size_t n_elems,
                                        const float *state, const zt_update *u, void *const *dst,
                                        zt_dtype dst_dtype, const zt_perturbation *p,
                                        int n_variants);

/* fo_update: theta, grad and the rule's state present and disjoint, finite lr, decay and scale,
 * betas in [0, 1], eps > 0, Adam's bias corrections in (0, 1], Nesterov only with momentum. */
zt_status zt_check_fo_update_args(const char *op, const void *theta, zt_dtype dtype, size_t n_elems,
                                  const float *grad, const float *state, const zt_fo_update *u);

#ifdef __cplusplus
}
#endif
#endif
