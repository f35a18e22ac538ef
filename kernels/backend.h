/* The op table every compute backend fills (docs/design.md §4).
 *
 * Buffers are backend memory (host memory for the CPU backend, device memory for CUDA); the
 * caller moves data in and out with upload/download. Activations are f32. Weights are read in
 * their storage dtype through a zt_weight (pointer + dtype), so a layer's master weights and a
 * staged, perturbed copy are passed the same way. Every op returns a zt_status and never exits.
 *
 * Shape legend: N rows, C/IC/OC columns, B batch, T sequence, H heads, D head dim, V vocab,
 * R rows that carry a target.
 */
#ifndef ZT_BACKEND_H
#define ZT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/alloc.h"
#include "zotune.h"

typedef struct zt_backend zt_backend;

/* How linear's GEMMs treat their inputs; products are always accumulated in f32. */
typedef enum zt_gemm_precision {
    ZT_GEMM_F32 = 0,  /* f32 inputs (f16/bf16 weights widened exactly): the CPU's numerics */
    ZT_GEMM_TF32 = 1, /* f32 inputs rounded to TF32 by the tensor cores; only when asked */
    ZT_GEMM_HALF = 2, /* f16/bf16 weights used as stored, activations rounded (to nearest even)
                         to the weight's dtype: tensor-core inputs; f32 weights as ZT_GEMM_F32 */
} zt_gemm_precision;

/* A read-only weight tensor in backend memory, in its storage dtype. data == NULL means absent
 * (e.g. a linear layer without bias). */
typedef struct zt_weight {
    const void *data;
    zt_dtype dtype;
} zt_weight;

/* Member i of tensors laid `stride` elements apart (linear_batched's weights and biases): w with
 * its pointer moved; an absent tensor stays absent. */
static inline zt_weight zt_weight_member(zt_weight w, size_t stride, int i) {
    if (w.data) w.data = (const char *)w.data + (size_t)i * stride * zt_dtype_size(w.dtype);
    return w;
}

/* ---- perturbation and update (docs/design.md §2; z addressing: common/perturb_rng.h) ---- */

typedef enum zt_dist {
    ZT_DIST_GAUSSIAN = 0,   /* cuRAND Box-Muller normals */
    ZT_DIST_RADEMACHER = 1, /* +-1 from the top bit of each 32-bit word */
} zt_dist; /* uniform-on-sphere = Gaussian with z_scale = radius / ||z|| (see z_sumsq) */

/* One random direction of a step: coeff * z(seed, tensor, j). */
typedef struct zt_direction {
    uint64_t seed;
    float coeff;
} zt_direction;

/* The perturbation of one tensor: sum_i terms[i].coeff * z_scale * z(terms[i].seed, T, j). */
typedef struct zt_perturbation {
    const zt_direction *terms; /* host memory */
    int n_terms;
    zt_dist dist;
    float z_scale;
} zt_perturbation;

/* A gather that perturbs the rows it reads: element (r, c) of the table is read as
 *     stage(table[r, c] + perturbation(tensor_id, r * C + c))
 * where stage() rounds to stage_dtype and back (f32: nothing), i.e. exactly what perturb into a
 * stage_dtype copy followed by a plain gather gives, without staging the rows nobody reads. */
typedef struct zt_gather_perturbation {
    const zt_perturbation *p;
    uint32_t tensor_id;
    zt_dtype stage_dtype;
} zt_gather_perturbation;

typedef enum zt_update_rule {
    ZT_UPDATE_SGD = 0,      /* u = g */
    ZT_UPDATE_SIGN = 1,     /* u = sign(g) elementwise (ZO-signSGD) */
    ZT_UPDATE_MOMENTUM = 2, /* m = beta1*m + g; u = m          state: m (n) */
    ZT_UPDATE_ADAMM = 3,    /* m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; vhat = max(vhat, v);
                               u = m / (sqrt(vhat) + eps)       state: m, v, vhat (3 x n) */
} zt_update_rule;

/* theta <- theta - lr * (u(g) + weight_decay * theta), g the perturbation `grad`, in f32. */
typedef struct zt_update {
    zt_perturbation grad;
    zt_update_rule rule;
    float lr, weight_decay;
    float beta1, beta2, eps;
    int stochastic_rounding; /* f16/bf16 stores: round with RNG bits keyed by rounding_seed */
    uint64_t rounding_seed;
    /* Out, optional: incremented by how many stored weights are not finite, counted in the
     * update's own pass (a diverging step is caught without another sweep over the weights).
     * Complete after the backend's next sync or download: the CUDA backend sums the counts of
     * consecutive updates on the device, so a step's updates make the host wait once. */
    unsigned long long *n_nonfinite;
} zt_update;

/* A step's update that has not reached every tensor yet (docs/design.md §2.5, the deferred
 * update). A shadow sweep given one (models/model.h: zt_workspace_set_pending) applies it to tensor
 * T before T is first read: fused into T's staging (update_perturb_variants) where the sweep stages
 * T, alone (update) where it reads T as stored or gathers from it. waiting[T] is cleared once T has
 * it, so every tensor gets it exactly once whatever reads it first. */
typedef struct zt_pending_update {
    zt_update update; /* weight_decay: decay[T] for tensor T; n_nonfinite: &n_nonfinite */
    int n_tensors;
    uint8_t *waiting;   /* (n_tensors) 1 while T has not had the update */
    float **state;      /* (n_tensors) T's optimizer state, or NULL */
    float *decay;       /* (n_tensors) T's weight decay (0 for no_decay tensors) */
    uint8_t *uncounted; /* (n_tensors) 1 where another holder counts T (NULL: count every T) */
    unsigned long long n_nonfinite; /* non-finite weights the update stored, complete at a sync */
} zt_pending_update;

/* Whether tensor id still waits for the pending update (pu may be NULL). */
static inline int zt_pending_waits(const zt_pending_update *pu, int id) {
    return pu && id >= 0 && id < pu->n_tensors && pu->waiting[id];
}

/* The update as tensor id takes it. */
static inline zt_update zt_pending_update_of(zt_pending_update *pu, int id) {
    zt_update u = pu->update;
    u.weight_decay = pu->decay[id];
    u.n_nonfinite = pu->uncounted && pu->uncounted[id] ? NULL : &pu->n_nonfinite;
    return u;
}

/* Applies the pending update alone to tensor id (theta: its n weights) if it still waits. */
zt_status zt_pending_apply_alone(zt_backend *be, zt_pending_update *pu, int id, void *theta,
                                 zt_dtype dtype, size_t n_elems);

/* ---- first-order updates (backprop, docs/design.md §3.1) ---- */

typedef enum zt_fo_rule {
    ZT_FO_SGD = 0,   /* PyTorch's SGD: momentum (0: none) and Nesterov; state (n) with momentum */
    ZT_FO_SIGN = 1,  /* signSGD: u = sign(g), sign(0) = 0 */
    ZT_FO_ADAM = 2,  /* Adam / AdamW with bias correction; state m, v (2 x n) */
    ZT_FO_ADAMM = 3, /* AdaMM (AMSGrad's max of v, no bias correction, seed 001); 3 x n */
} zt_fo_rule;

/* theta <- theta - lr * u(g), g = grad_scale * grad + (coupled) weight_decay * theta, in f32. */
typedef struct zt_fo_update {
    zt_fo_rule rule;
    float lr, weight_decay;
    int decoupled_decay; /* AdamW: theta *= 1 - lr * weight_decay first, nothing added to g */
    float momentum;      /* SGD */
    int nesterov;        /* SGD with momentum: u = g + momentum * m */
    float beta1, beta2, eps;
    float bias1, bias2;      /* ADAM at step t (1-based): 1 - beta1^t, 1 - beta2^t */
    float grad_scale;        /* 1 / accumulated micro-batches, times the clipping factor */
    int stochastic_rounding; /* f16/bf16 stores: rounding bits keyed by rounding_seed */
    uint64_t rounding_seed;
    /* out, optional: += non-finite weights stored. As zt_update's, complete after the backend's
     * next sync or download (the CUDA backend sums on the device). */
    unsigned long long *n_nonfinite;
} zt_fo_update;

/* f32 state rows the rule keeps per element (0 .. 3). */
int zt_fo_state_rows(const zt_fo_update *u);

/* ---- scratch planning: what an op will need of the backend's internal scratch ---- */

typedef enum zt_scratch_op {
    ZT_SCRATCH_LINEAR = 0,           /* n_rows, in_features, out_features, weight_dtype, bias_dtype,
                                        has_bias; under the backend's current GEMM precision */
    ZT_SCRATCH_ATTENTION = 1,        /* seq_len, head_dim; batch, n_heads and weight_dtype (q's)
                                        where known: CUDA's cuDNN path needs them */
    ZT_SCRATCH_Z_SUMSQ = 2,          /* n_elems */
    ZT_SCRATCH_ATTENTION_CACHED = 3, /* seq_len = the cache's capacity, head_dim */
    /* the backward ops (with d_in wanted); 0 on a backend without them */
    ZT_SCRATCH_LINEAR_BACKWARD = 4, /* n_rows, in_features, out_features, weight_dtype, has_bias */
    ZT_SCRATCH_ATTENTION_BACKWARD = 5, /* batch, n_heads, seq_len, head_dim */
    ZT_SCRATCH_LAYERNORM_BACKWARD = 6, /* n_rows, in_features = the row length */
    ZT_SCRATCH_GRAD_SUMSQ = 7,         /* n_elems */
    ZT_SCRATCH_LOGPROB_BACKWARD = 8,   /* n_rows */
} zt_scratch_op;

typedef struct zt_scratch_query {
    zt_scratch_op op;
    int in_features, out_features;
    zt_dtype weight_dtype, bias_dtype;
    int has_bias;
    int seq_len, head_dim;
    size_t n_elems;
    int n_rows;
    int batch, n_heads; /* ZT_SCRATCH_ATTENTION_BACKWARD */
    int half_output;    /* ZT_SCRATCH_LINEAR: for linear_half_out (1) rather than linear */
    int batch_count;    /* ZT_SCRATCH_LINEAR: members of a linear_batched call (0 or 1: linear) */
} zt_scratch_query;

typedef struct zt_backend_ops {
    const char *name; /* "cpu", "cuda" */
    void (*destroy)(zt_backend *be);

    /* ---- memory (tracked by category, see core/alloc.h) ---- */
    zt_status (*alloc)(zt_backend *be, size_t n_bytes, zt_mem_category category, void **out);
    void (*free)(zt_backend *be, void *ptr, size_t n_bytes, zt_mem_category category);
    zt_status (*upload)(zt_backend *be, void *dst, const void *host_src, size_t n_bytes);
    zt_status (*download)(zt_backend *be, void *host_dst, const void *src, size_t n_bytes);
    zt_status (*sync)(zt_backend *be);
    /* Sets n_bytes of backend memory at dst to zero bits (+0 in f32, f16 and bf16), ordered
     * with the ops around it like an upload but without a host block or a wait for the device:
     * a first-order step clears its whole f32 gradient this way (models/backprop.h). */
    zt_status (*zero)(zt_backend *be, void *dst, size_t n_bytes);

    /* Bytes of internal scratch one call of the queried op needs (the scratch is shared by all
     * ops and kept, so a backend's scratch peak is the maximum over the calls it serves). */
    size_t (*scratch_bytes)(zt_backend *be, const zt_scratch_query *query);
    /* Grows the internal scratch to at least n_bytes now, so a run's peak is reached up front. */
    zt_status (*reserve_scratch)(zt_backend *be, size_t n_bytes);

    /* ---- forward ops ---- */

    /* out[n,:] (= or +=) table[rows[n],:]. Embedding lookup (accumulate=0) and learned positions
     * (accumulate=1). A row index outside [0, n_table_rows) is an error naming the index.
     * perturb (NULL: none) reads the rows as a staged perturbed table would hold them, computing
     * only the rows gathered (see zt_gather_perturbation). */
    zt_status (*gather_rows)(zt_backend *be, float *out, /* (N,C) */
                             const int32_t *rows,        /* (N) */
                             zt_weight table,            /* (n_table_rows,C) */
                             int n_rows, int n_table_rows, int n_cols, int accumulate,
                             const zt_gather_perturbation *perturb);

    /* out = (x - mean) / sqrt(var + eps) * gamma + beta per row; biased variance, as PyTorch.
     * out may equal in. gamma/beta absent => 1 / 0 (elementwise_affine = false). */
    zt_status (*layernorm)(zt_backend *be, float *out,      /* (N,C) */
                           const float *in,                 /* (N,C) */
                           zt_weight gamma, zt_weight beta, /* (C), (C) */
                           int n_rows, int n_cols, float eps);

    /* out = in @ W^T (+ bias) (then ReLU if relu). W stored [OC, IC] as nn.Linear. out != in. */
    zt_status (*linear)(zt_backend *be, float *out, /* (N,OC) */
                        const float *in,            /* (N,IC) */
                        zt_weight w,                /* (OC,IC) */
                        zt_weight bias,             /* (OC) or absent */
                        int n_rows, int in_features, int out_features, int relu);

    /* Causal self-attention with a padding mask, heads as column blocks of width D = C/H.
     * Query i of sequence b attends to keys j <= i with key_mask[b,j] != 0. q is multiplied by
     * q_scale element-wise before QK^T (HF scales the q_proj output). A query with no admissible
     * key (a left-pad row) gets zeros. out must not alias q, k or v. */
    zt_status (*attention)(zt_backend *be, float *out,                     /* (B,T,C) */
                           const float *q, const float *k, const float *v, /* (B,T,C) each */
                           const int32_t *key_mask,                        /* (B,T) */
                           int batch, int seq_len, int n_heads, int head_dim, float q_scale);

    /* attention over a key/value cache (incremental decoding, docs/design.md §2.7). First writes
     * the n_new keys and values of each sequence into cache columns start .. start + n_new - 1,
     * then query i of sequence b, at column start + i, attends to cache columns j <= start + i
     * with key_mask[b,j] != 0, q scaled by q_scale before QK^T as in `attention`. A query with
     * no admissible key gets zeros. With start = 0 and n_new = T this is `attention` on the same
     * q, k, v and mask. out must not alias q, k, v or the caches; the caches must not alias each
     * other or q, k, v. */
    zt_status (*attention_cached)(zt_backend *be, float *out,                     /* (B,Tq,C) */
                                  const float *q, const float *k, const float *v, /* (B,Tq,C) */
                                  float *k_cache, float *v_cache, /* (B,capacity,C) each */
                                  const int32_t *key_mask,        /* (B,capacity) */
                                  int batch, int n_new, int capacity, int start, int n_heads,
                                  int head_dim, float q_scale);

    /* x += y, elementwise. */
    zt_status (*add)(zt_backend *be, float *x, const float *y, size_t n_elems);

    /* logprob[r] = log_softmax(logits[r,:])[targets[r]], accumulated in at least f32 with the
     * max subtracted. A target outside [0, V) is an error naming the row. */
    zt_status (*target_logprobs)(zt_backend *be, float *logprob, /* (R) */
                                 const float *logits,            /* (R,V) */
                                 const int32_t *targets,         /* (R) */
                                 int n_rows, int vocab);

    /* Optional: target_logprobs for a head that computes its logits a block of vocabulary
     * columns at a time (head_vocab_chunk > 0; such a backend must set it). logits holds columns
     * [col0, col0 + n_cols) of every row; the blocks of a row come in column order, the first at
     * col0 = 0 (which checks the targets: a bad one is an error naming the row, and nothing is
     * written). Each block folds into the row's running log-sum-exp, state[r] = (max, sum of
     * exp(logit - max) in double, the target's logit), and the block that ends the row
     * (col0 + n_cols == vocab) writes logprob[r]. One block of the whole row gives exactly
     * target_logprobs' bits; more blocks, the same value up to rounding, in bits fixed by the
     * blocking (never by the thread count). */
    zt_status (*target_logprobs_fold)(zt_backend *be, float *logprob, /* (R) */
                                      double *state,                  /* (R,3) */
                                      const float *logits,            /* (R,n_cols) */
                                      const int32_t *targets,         /* (R) */
                                      int n_rows, int vocab, int col0, int n_cols);

    /* ---- perturbation ---- */

    /* dst[j] = src[j] + perturbation(tensor_id, elem_offset + j) for j in [0, n), computed in
     * f32 and stored in dst_dtype (round to nearest even). dst may equal src with the same
     * dtype: that is MeZO's in-place mode. elem_offset addresses a slice of a larger tensor. */
    zt_status (*perturb)(zt_backend *be, void *dst, zt_dtype dst_dtype, /* (n) */
                         zt_weight src,                                 /* (n) */
                         uint32_t tensor_id, uint64_t elem_offset, size_t n_elems,
                         const zt_perturbation *p);

    /* The K variants of one whole tensor at once (the shadow sweep's staging, docs/design.md
     * §2.3): dst[k][j] = src[j] + p[k](tensor_id, elem_offset + j) for j in [0, n) and k in
     * [0, K), stored in dst_dtype: bit for bit what K perturb calls give, but z of a seed the
     * variants share is drawn once for all of them (MeZO's +eps z and -eps z draw z once). As in
     * perturb, elem_offset addresses a slice of a larger tensor (a block of the head table's
     * rows, head_vocab_chunk). dst is a host array of K backend pointers, pairwise disjoint and
     * disjoint from src; a variant without terms gets the plain conversion. */
    zt_status (*perturb_variants)(zt_backend *be, void *const *dst,  /* (K) of (n) */
                                  zt_dtype dst_dtype, zt_weight src, /* (n) */
                                  uint32_t tensor_id, uint64_t elem_offset, size_t n_elems,
                                  const zt_perturbation *p, /* (K) */
                                  int n_variants);

    /* update, then perturb_variants of the updated tensor, in one pass over theta: the deferred
     * update of step t fused into step t + 1's staging (docs/design.md §2.5). theta and state
     * get exactly update's bits (u, n_nonfinite counted the same way), and dst[k] exactly
     * perturb_variants' bits from theta as updated and stored. dst disjoint from theta and
     * state. */
    zt_status (*update_perturb_variants)(zt_backend *be, void *theta, zt_dtype dtype, /* (n) */
                                         uint32_t tensor_id, size_t n_elems, float *state,
                                         const zt_update *u, void *const *dst, /* (K) of (n) */
                                         zt_dtype dst_dtype, const zt_perturbation *p, /* (K) */
                                         int n_variants);

    /* *out = sum over j in [0, n) of z(seed, tensor_id, j)^2 in double: the regeneration pass
     * that gives the norm for uniform-on-sphere directions. */
    zt_status (*z_sumsq)(zt_backend *be, double *out, uint64_t seed, uint32_t tensor_id,
                         size_t n_elems, zt_dist dist);

    /* The once-per-step update of one tensor, regenerating z. state: NULL for SGD/SIGN, (n) f32
     * for MOMENTUM, (3,n) f32 for ADAMM, in backend memory. */
    zt_status (*update)(zt_backend *be, void *theta, zt_dtype dtype, /* (n) */
                        uint32_t tensor_id, size_t n_elems, float *state, const zt_update *u);

    /* ---- backward ops (backprop, docs/design.md §3.1): all set, or all NULL on a backend
     * without backprop (zt_backend_has_backward). Gradients are f32. Parameter gradients (d_table,
     * d_w, d_bias, d_gamma, d_beta) are ACCUMULATED (+=), so micro-batches add up; a NULL
     * parameter-gradient pointer skips that part. Input gradients (d_in, d_q, d_k, d_v,
     * d_logits) are WRITTEN (=). Weights are read in their storage dtype and widened exactly
     * (the f32 GEMM numerics whatever the GEMM precision). Results do not depend on the thread
     * count or grid: every reduction runs in an order fixed by the shapes. ---- */

    /* d_table[rows[n], :] += d_out[n, :] (embedding, positions). A row index outside
     * [0, n_table_rows) is an error naming it; nothing is written then. */
    zt_status (*gather_rows_backward)(zt_backend *be, float *d_table, /* (n_table_rows,C) += */
                                      const float *d_out,             /* (N,C) */
                                      const int32_t *rows,            /* (N) */
                                      int n_rows, int n_table_rows, int n_cols);

    /* layernorm's gradient, each row's mean and 1/std recomputed from `in` as the forward does.
     * d_in = (may equal d_out); d_gamma, d_beta +=. gamma absent means 1. */
    zt_status (*layernorm_backward)(zt_backend *be, float *d_in,   /* (N,C) = */
                                    float *d_gamma, float *d_beta, /* (C) +=, (C) += */
                                    const float *d_out,            /* (N,C) */
                                    const float *in,               /* (N,C) */
                                    zt_weight gamma,               /* (C) or absent */
                                    int n_rows, int n_cols, float eps);

    /* linear's gradient. With relu, `out` is the forward's output (the mask: out > 0) and d_out
     * is overwritten with the pre-activation gradient; without, out may be NULL and d_out is
     * read only. d_in = d_pre @ W; d_w += d_pre^T @ in; d_bias += column sums of d_pre. `in` is
     * needed only for d_w, W's data only for d_in. */
    zt_status (*linear_backward)(zt_backend *be, float *d_in, /* (N,IC) = */
                                 float *d_w,                  /* (OC,IC) += */
                                 float *d_bias,               /* (OC) += */
                                 float *d_out,                /* (N,OC) */
                                 const float *in,             /* (N,IC) */
                                 const float *out,            /* (N,OC), relu only */
                                 zt_weight w,                 /* (OC,IC) */
                                 int n_rows, int in_features, int out_features, int relu);

    /* attention's gradient, the probabilities recomputed from q and k (never a T x T matrix
     * per head), `out` the forward's output. A query with no admissible key passes no gradient;
     * a masked key gets none. d_q, d_k, d_v = (no aliasing). */
    zt_status (*attention_backward)(zt_backend *be, float *d_q, float *d_k,
                                    float *d_v,                                     /* (B,T,C) */
                                    const float *d_out,                             /* (B,T,C) */
                                    const float *q, const float *k, const float *v, /* (B,T,C) */
                                    const float *out,                               /* (B,T,C) */
                                    const int32_t *key_mask,                        /* (B,T) */
                                    int batch, int seq_len, int n_heads, int head_dim,
                                    float q_scale);

    /* target_logprobs' gradient: d_logits[r,:] = d_logprob[r] * (onehot(targets[r]) -
     * softmax(logits[r,:])). d_logits may equal logits. A target outside [0, V) is an error
     * naming the row. */
    zt_status (*target_logprobs_backward)(zt_backend *be, float *d_logits, /* (R,V) = */
                                          const float *logits,             /* (R,V) */
                                          const int32_t *targets,          /* (R) */
                                          const float *d_logprob,          /* (R) */
                                          int n_rows, int vocab);

    /* ---- first-order updates: both set or both NULL (zt_backend_require_backward). ---- */

    /* One tensor's first-order step from its f32 gradient (zt_fo_update), the state (rows of n
     * f32: zt_fo_state_rows) advanced in place. Element j's result depends on j alone. */
    zt_status (*fo_update)(zt_backend *be, void *theta, zt_dtype dtype,           /* (n) */
                           uint32_t tensor_id, size_t n_elems, const float *grad, /* (n) */
                           float *state, /* (rows, n) or NULL */
                           const zt_fo_update *u);

    /* *out = sum of x[j]^2 in double, in an order fixed by n alone (gradient clipping). */
    zt_status (*grad_sumsq)(zt_backend *be, double *out, const float *x, /* (n) */
                            size_t n_elems);

    /* ---- half activations (docs/design.md §4.1): under ZT_GEMM_HALF a linear with an f16/bf16
     * weight rounds its f32 input to the weight's dtype before the GEMM. These let the model
     * round an activation once for every GEMM that reads it (q, k and v read one layer norm's
     * output) and let a layer norm write it rounded at once. All set, or all NULL on a backend
     * without them (zt_backend_has_half_activations); the model then calls linear as before. Each
     * gives the bits of the plain ops it replaces. ---- */

    /* dst = src rounded to nearest even in dtype (ZT_F16 or ZT_BF16) and stored in it: what
     * linear makes of its input under ZT_GEMM_HALF with a weight of that dtype. */
    zt_status (*round_half)(zt_backend *be, void *dst, zt_dtype dtype, /* (n) */
                            const float *src,                          /* (n) */
                            size_t n_elems);

    /* layernorm whose f32 result is stored rounded to out_dtype (ZT_F16 or ZT_BF16), as
     * round_half would round layernorm's output. out must not overlap in. */
    zt_status (*layernorm_half)(zt_backend *be, void *out, zt_dtype out_dtype, /* (N,C) */
                                const float *in,                               /* (N,C) */
                                zt_weight gamma, zt_weight beta,               /* (C), (C) */
                                int n_rows, int n_cols, float eps);

    /* linear on an input already rounded to w's dtype (round_half or layernorm_half wrote it):
     * only under ZT_GEMM_HALF with an f16/bf16 w; exactly linear's bits on the f32 input the
     * half one was rounded from, without rounding it again. */
    zt_status (*linear_half_in)(zt_backend *be, float *out, /* (N,OC) */
                                const void *in,             /* (N,IC) in w.dtype */
                                zt_weight w,                /* (OC,IC) */
                                zt_weight bias,             /* (OC) or absent */
                                int n_rows, int in_features, int out_features, int relu);

    /* linear_half_in whose result, bias and ReLU added in f32, is stored rounded to nearest even
     * in w's dtype: fc1 writing fc2's half input, so no f32 copy of it is written, read back and
     * rounded. A bias must be stored in w's dtype too. The CPU and the executor give exactly
     * round_half(linear_half_in); cuBLASLt rounds its f32 epilogue's result in a GEMM chosen
     * for a half D, which tests/gpu measures against the two ops (docs/design.md §4.3). */
    zt_status (*linear_half_out)(zt_backend *be, void *out, /* (N,OC) in w.dtype */
                                 const void *in,            /* (N,IC) in w.dtype */
                                 zt_weight w,               /* (OC,IC) */
                                 zt_weight bias,            /* (OC) in w.dtype, or absent */
                                 int n_rows, int in_features, int out_features, int relu);

    /* Optional (NULL: the model calls linear or linear_half_in `count` times): `count` linears
     * that read one input, member i with the weight at w.data + i * w_stride elements, its bias at
     * bias.data + i * bias_stride, its output at out + i * out_stride floats: q, k and v as one
     * GEMM. in_dtype ZT_F32 reads `in` as linear does; w's half dtype reads it as linear_half_in
     * (ZT_GEMM_HALF). Exactly the `count` calls' bits on the CPU and the executor; CUDA runs one
     * strided-batched cuBLASLt GEMM where the weight is used as stored (docs/design.md §4.3). */
    zt_status (*linear_batched)(zt_backend *be, float *out, size_t out_stride, /* count x (N,OC) */
                                const void *in, zt_dtype in_dtype,             /* (N,IC) */
                                zt_weight w, size_t w_stride,                  /* count x (OC,IC) */
                                zt_weight bias, size_t bias_stride, /* count x (OC) or absent */
                                int count, int n_rows, int in_features, int out_features, int relu);

    /* Accepts or refuses a GEMM precision (ZT_ERR_UNAVAILABLE naming it); NULL = ZT_GEMM_F32
     * only. Called by zt_backend_set_gemm_precision, which records the choice. */
    zt_status (*set_gemm_precision)(zt_backend *be, zt_gemm_precision precision);

    /* Optional (NULL: no effect). The caller checked on the host that the n indices at `values`
     * (backend memory, just uploaded) lie in [0, limit). Ops that must reject a bad index before
     * writing anything may then skip their own check of that range against any limit >= `limit`
     * until an upload, zero or free touches it: the CUDA backend's check makes the host wait for
     * the device, and a step would otherwise wait on every gather and log-prob chunk
     * (docs/design.md §4.3). */
    void (*vouch_indices)(zt_backend *be, const int32_t *values, size_t n, int32_t limit);

    /* Optional (NULL: the name says it all): the device in words, e.g. the GPU's name, compute
     * capability, memory and the driver's and runtime's CUDA versions. Lives as long as be. */
    const char *(*describe)(zt_backend *be);
} zt_backend_ops;

/* The slots of zt_backend_ops every backend must fill: all but `name` (checked on its own) and
 * set_gemm_precision (NULL = f32 only). X(slot) is applied to each. backend.c asserts at compile
 * time that these two and this list cover the whole table. */
#define ZT_BACKEND_REQUIRED_OPS(X)                                                                 \
    X(destroy)                                                                                     \
    X(alloc)                                                                                       \
    X(free)                                                                                        \
    X(upload)                                                                                      \
    X(download)                                                                                    \
    X(sync)                                                                                        \
    X(zero)                                                                                        \
    X(scratch_bytes)                                                                               \
    X(reserve_scratch)                                                                             \
    X(gather_rows)                                                                                 \
    X(layernorm)                                                                                   \
    X(linear)                                                                                      \
    X(attention)                                                                                   \
    X(attention_cached)                                                                            \
    X(add)                                                                                         \
    X(target_logprobs)                                                                             \
    X(perturb)                                                                                     \
    X(perturb_variants)                                                                            \
    X(update_perturb_variants)                                                                     \
    X(z_sumsq)                                                                                     \
    X(update)

/* The backward slots: a backend fills all of them or none. */
#define ZT_BACKEND_BACKWARD_OPS(X)                                                                 \
    X(gather_rows_backward)                                                                        \
    X(layernorm_backward)                                                                          \
    X(linear_backward)                                                                             \
    X(attention_backward)                                                                          \
    X(target_logprobs_backward)

/* The half-activation slots: a backend fills all of them or none. */
#define ZT_BACKEND_HALF_ACTIVATION_OPS(X)                                                          \
    X(round_half)                                                                                  \
    X(layernorm_half)                                                                              \
    X(linear_half_in)                                                                              \
    X(linear_half_out)

/* The first-order update slots: a backend fills both or neither. */
#define ZT_BACKEND_FO_OPS(X)                                                                       \
    X(fo_update)                                                                                   \
    X(grad_sumsq)

/* ZT_OK when `ops` has a name, every required slot, and all backward slots or none; otherwise
 * ZT_ERR_INTERNAL with a message naming the NULL slots, e.g. "backend 'cpu': op table slot
 * 'layernorm' is NULL", so a backend that misses an op fails when it is created, not on the
 * first call of that op. */
zt_status zt_backend_check_ops(const zt_backend_ops *ops);

/* Whether the backend has the backward ops (backprop); ZT_ERR_UNAVAILABLE naming the backend and
 * `what` needs them when not. */
zt_status zt_backend_require_backward(const zt_backend *be, const char *what);
/* Whether the backend has the half-activation ops (round_half, layernorm_half, linear_half_in,
 * linear_half_out). */
int zt_backend_has_half_activations(const zt_backend *be);
/* The same for the first-order update ops (first-order training). */
zt_status zt_backend_require_fo_update(const zt_backend *be, const char *what);

struct zt_backend {
    const zt_backend_ops *ops;
    void *impl;             /* backend-private state */
    zt_gemm_precision gemm; /* ZT_GEMM_F32 at creation */
    /* How many times the host has waited for the device (CUDA: stream synchronisations); 0 on
     * the CPU, where nothing runs asynchronously. The tests count a step's waits with it. */
    unsigned long long n_host_waits;
    /* z elements generated so far: per op, the elements it draws z for times the terms it draws
     * (a seed shared by several variants counted once). The CPU backend counts perturb,
     * perturb_variants, update, update_perturb_variants, z_sumsq and the perturbed gather's
     * rows; 0 on CUDA, which does not count. Tests and bench_step read draws per step from it. */
    unsigned long long n_z_drawn;
    /* Target rows the LM head sends through one linear + target_logprobs (models/sweep.c), so the
     * rows of V logits the workspace holds; set by the constructor, at least 1. Each backend's
     * choice trades re-reads of the head table against that buffer (docs/design.md §2.3). */
    int head_chunk_rows;
    /* Head-table rows (vocabulary columns of the logits) the LM head stages and multiplies at a
     * time, folding each block into target_logprobs_fold's running log-sum-exp; 0: the whole
     * table at once with target_logprobs. A block keeps the staged copies and the logits in
     * cache and the staging memory at G blocks instead of G tables (docs/design.md §2.3). */
    int head_vocab_chunk;
    /* What besides --gemm decides the GEMMs' bits, e.g. "OpenBLAS SkylakeX"; NULL when the
     * backend knows nothing more. The step log's compute string records it, so resuming a run
     * on other kernels warns that its steps will differ (docs/design.md §2.5). */
    const char *gemm_kernels;
    /* Batch invariance (docs/distributed.md): a sequence's results must not depend on what else
     * is in its batch, so that data-parallel ranks and one process agree bit for bit. BLAS
     * libraries give a row bits that depend on the matrix it sits in, so under batch_invariant
     * the model gives linear one sequence's rows at a time (gemm_row_block = T rows per GEMM in
     * the body) and the head one target row at a time (gemm_row_block = 1). A backend whose
     * linear honours gemm_row_block (and whose other ops compute each row alone) sets
     * offers_batch_invariance in its constructor: the CPU and CUDA backends. */
    int offers_batch_invariance;
    int batch_invariant;
    int gemm_row_block; /* 0: one GEMM over all rows; R: consecutive blocks of R rows */
};

/* Turns batch invariance on or off (the field's comment above); ZT_ERR_UNAVAILABLE on a backend
 * without it. The step log's compute string names it ZT_BATCH_INVARIANT_NAME. */
zt_status zt_backend_set_batch_invariant(zt_backend *be, int on);
#define ZT_BATCH_INVARIANT_NAME "batch-invariant"

/* Creates a backend by name: "cpu" (always), "cuda" / "cuda:N" (ZT_ERR_UNAVAILABLE when not
 * compiled in or no device). n_threads <= 0 means all cores (CPU backend). The backend's op table
 * must pass zt_backend_check_ops; one that does not is destroyed and the call fails. The
 * constructors themselves are in kernels/cpu/cpu_backend.h and kernels/cuda/cuda_backend.h. */
zt_status zt_backend_create(const char *name, int n_threads, zt_backend **out);
void zt_backend_destroy(zt_backend *be);

/* A constructor for zt_backend_register; n_threads as zt_backend_create's (it may ignore it). */
typedef zt_status (*zt_backend_constructor)(int n_threads, zt_backend **out);
/* Makes zt_backend_create (and so --device / zt_train_options.device) resolve `name` to
 * `construct`, whose table is checked as a built-in one's. For tests: the library links no test
 * code, so e.g. the host executor's "cuda-emu" (tests/cudaemu) is reachable by name only once a
 * test registers it. Registering a name again replaces its constructor; "cpu", "cuda" and
 * "cuda:N" are refused (ZT_ERR_INVALID_ARG), as are more than a few names. Not thread-safe:
 * register before creating backends. */
zt_status zt_backend_register(const char *name, zt_backend_constructor construct);

/* zt_backend_create, then the GEMM precision named by `gemm`: "f32", "tf32", "half", or NULL /
 * "auto" = half on CUDA (tensor cores for f16/bf16 weights), f32 on the CPU. */
zt_status zt_backend_open(const char *device, int n_threads, const char *gemm, zt_backend **out);
#define ZT_GEMM_HELP "auto (default: half on cuda, f32 on cpu), f32, tf32 (cuda) or half"

/* Switches linear's GEMM precision; ZT_ERR_UNAVAILABLE (with the reason) when the backend has no
 * such mode (TF32 on the CPU). Set it before creating workspaces: staging is planned for it. */
zt_status zt_backend_set_gemm_precision(zt_backend *be, zt_gemm_precision precision);
/* "f32", "tf32", "half"; and the reverse, with an error naming `option` for anything else. */
const char *zt_gemm_precision_name(zt_gemm_precision precision);
zt_status zt_gemm_precision_parse(const char *text, const char *option, zt_gemm_precision *out);
/* The dtype a perturbed copy of a `stored` weight is staged in: the stored half dtype when the
 * GEMMs take half inputs (staging in f32 would only be rounded back), f32 otherwise. */
zt_dtype zt_backend_stage_dtype(const zt_backend *be, zt_dtype stored);

#endif
