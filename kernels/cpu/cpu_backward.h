/* The CPU backend's backward ops (backprop), with the signatures of zt_backend_ops' backward
 * slots; backend.h states their contract. One file per op family, named after the forward's:
 * gather_backward.c, layernorm_backward.c, linear_backward.c, attention_backward.c,
 * logprob_backward.c. */
#ifndef ZT_CPU_BACKWARD_H
#define ZT_CPU_BACKWARD_H

#include "backend.h"

zt_status zt_cpu_gather_rows_backward(zt_backend *be, float *d_table, /* (n_table_rows,C) += */
                                      const float *d_out,             /* (N,C) */
                                      const int32_t *rows,            /* (N) */
                                      int n_rows, int n_table_rows, int n_cols);

zt_status zt_cpu_layernorm_backward(zt_backend *be, float *d_in,   /* (N,C) = */
                                    float *d_gamma, float *d_beta, /* (C) +=, (C) += */
                                    const float *d_out,            /* (N,C) */
                                    const float *in,               /* (N,C) */
                                    zt_weight gamma,               /* (C) or absent */
                                    int n_rows, int n_cols, float eps);

zt_status zt_cpu_linear_backward(zt_backend *be, float *d_in, /* (N,IC) = */
                                 float *d_w,                  /* (OC,IC) += */
                                 float *d_bias,               /* (OC) += */
                                 float *d_out,                /* (N,OC) */
                                 const float *in,             /* (N,IC) */
                                 const float *out,            /* (N,OC), relu only */
                                 zt_weight w,                 /* (OC,IC) */
                                 int n_rows, int in_features, int out_features, int relu);

zt_status zt_cpu_attention_backward(zt_backend *be, float *d_q, float *d_k,
                                    float *d_v,                                     /* (B,T,C) */
                                    const float *d_out,                             /* (B,T,C) */
                                    const float *q, const float *k, const float *v, /* (B,T,C) */
                                    const float *out,                               /* (B,T,C) */
                                    const int32_t *key_mask,                        /* (B,T) */
                                    int batch, int seq_len, int n_heads, int head_dim,
                                    float q_scale);

zt_status zt_cpu_target_logprobs_backward(zt_backend *be, float *d_logits, /* (R,V) = */
                                          const float *logits,             /* (R,V) */
                                          const int32_t *targets,          /* (R) */
                                          const float *d_logprob,          /* (R) */
                                          int n_rows, int vocab);

/* Floats of backend scratch each takes (for the planner, and taken by the op itself). */
size_t zt_cpu_linear_backward_scratch_floats(int in_features, int out_features,
                                             zt_dtype weight_dtype);
size_t zt_cpu_layernorm_backward_scratch_floats(int n_rows, int n_cols);
size_t zt_cpu_grad_sumsq_scratch_floats(size_t n_elems);

/* First-order updates (fo_update.c). */
zt_status zt_cpu_fo_update(zt_backend *be, void *theta, zt_dtype dtype, uint32_t tensor_id,
                           size_t n_elems, const float *grad, float *state, const zt_fo_update *u);
zt_status zt_cpu_grad_sumsq(zt_backend *be, double *out, const float *x, size_t n_elems);

#endif
