/* The CPU backend's backward ops (issue 12, backprop): the gradient of each forward op in
 * kernels/cpu, with the forward's shape legend (backend.h). They will fill optional slots of
 * zt_backend_ops; until then the engine calls them through these prototypes.
 *
 * Conventions, shared by every op here:
 * - Gradients are f32. Parameter gradients (d_table, d_w, d_bias, d_gamma, d_beta) are
 *   ACCUMULATED (+=), so micro-batches add up; a NULL parameter-gradient pointer skips that part.
 *   Input gradients (d_in, d_q, d_k, d_v, d_logits) are WRITTEN (=).
 * - Weights are read in their storage dtype through zt_weight and widened exactly to f32, as the
 *   forward ops do (the f32 GEMM numerics, never the ZT_GEMM_HALF rounding).
 * - Results are bit-identical whatever the thread count: every reduction runs in a fixed order
 *   that does not depend on how the work is split (parallelise over the dimension that is not
 *   reduced, or over fixed-size pieces).
 * - Bad arguments (NULL required buffers, non-positive sizes, an index out of range) return an
 *   error naming the op and the argument, as the forward ops' checks do; nothing is written
 *   before the checks pass.
 */
#ifndef ZT_CPU_BACKWARD_H
#define ZT_CPU_BACKWARD_H

#include "backend.h"

/* d_table[rows[n], :] += d_out[n, :]: the gradient of gather_rows (embedding or positions). A
 * row index outside [0, n_table_rows) is an error naming the index. */
zt_status zt_cpu_gather_rows_backward(zt_backend *be, float *d_table, /* (n_table_rows,C) += */
                                      const float *d_out,             /* (N,C) */
                                      const int32_t *rows,            /* (N) */
                                      int n_rows, int n_table_rows, int n_cols);

/* The gradient of layernorm (torch.nn.LayerNorm, biased variance), recomputing each row's mean
 * and 1/std from `in` as the forward does. d_in =; d_gamma, d_beta += (NULL: skipped). gamma
 * absent means 1. d_in may equal d_out. */
zt_status zt_cpu_layernorm_backward(zt_backend *be, float *d_in,   /* (N,C) = */
                                    float *d_gamma, float *d_beta, /* (C) +=, (C) += */
                                    const float *d_out,            /* (N,C) */
                                    const float *in,               /* (N,C) */
                                    zt_weight gamma,               /* (C) or absent */
                                    int n_rows, int n_cols, float eps);

/* The gradient of linear (out = in @ W^T + bias, then ReLU if relu). With relu, `out` is the
 * forward's output (needed for the mask: gradient passes where out > 0) and d_out is overwritten
 * with the pre-activation gradient; without relu, out may be NULL and d_out is only read.
 * d_in = d_pre @ W (NULL: skipped); d_w += d_pre^T @ in (NULL: skipped); d_bias += column sums
 * of d_pre (NULL: skipped). */
zt_status zt_cpu_linear_backward(zt_backend *be, float *d_in, /* (N,IC) = */
                                 float *d_w,                  /* (OC,IC) += */
                                 float *d_bias,               /* (OC) += */
                                 float *d_out,                /* (N,OC) */
                                 const float *in,             /* (N,IC) */
                                 const float *out,            /* (N,OC), relu only */
                                 zt_weight w,                 /* (OC,IC) */
                                 int n_rows, int in_features, int out_features, int relu);

/* The gradient of attention (causal, padding mask, q scaled by q_scale before QK^T; a query with
 * no admissible key got zeros and passes no gradient). Flash-style: the probabilities are
 * recomputed from q and k, never stored as a T x T matrix per head; `out` is the forward's
 * output (for the softmax's row term sum_d d_out * out). d_q, d_k, d_v = (none may alias an
 * input or each other). */
zt_status zt_cpu_attention_backward(zt_backend *be, float *d_q, float *d_k,
                                    float *d_v,                                     /* (B,T,C) */
                                    const float *d_out,                             /* (B,T,C) */
                                    const float *q, const float *k, const float *v, /* (B,T,C) */
                                    const float *out,                               /* (B,T,C) */
                                    const int32_t *key_mask,                        /* (B,T) */
                                    int batch, int seq_len, int n_heads, int head_dim,
                                    float q_scale);

/* The gradient of target_logprobs: d_logits[r, :] = d_logprob[r] * (onehot(targets[r]) -
 * softmax(logits[r, :])). d_logits may equal logits (the head's logits chunk is reused). A target
 * outside [0, V) is an error naming the row. */
zt_status zt_cpu_target_logprobs_backward(zt_backend *be, float *d_logits, /* (R,V) = */
                                          const float *logits,             /* (R,V) */
                                          const int32_t *targets,          /* (R) */
                                          const float *d_logprob,          /* (R) */
                                          int n_rows, int vocab);

#endif
