/* update: the once-per-step change of one weight tensor, regenerating z (docs/design.md §2),
 * with the CPU backend's per-element f32 formulas in the same operation order
 * (kernels/cpu/update.c), each operation rounded on its own:
 *
 *     SGD       u = g
 *     SIGN      u = sign(g), sign(0) = 0
 *     MOMENTUM  m = beta1*m + g;  u = m
 *     ADAMM     m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*(g*g);
 *               vhat = max(vhat, v);  u = m / (sqrt(vhat) + eps)     (1-beta rounded once)
 *     step      = lr * (u + weight_decay*theta)
 *     theta'    = theta - step, or theta itself when step is zero (lr = 0 keeps every bit, -0 too)
 *
 * f16 / bf16 weights are stored rounded to nearest even, or, with stochastic rounding, with the
 * SR bits of element j keyed by (rounding_seed, tensor_id): the stream is addressed by j, so the
 * rounding never depends on which thread handles the element. */
#include <math.h>

#include "cuda/z_terms.cuh"

namespace ZT_CUDA_NAMESPACE {

/* The rule's constants, with 1-beta rounded once on the host as the CPU does. */
struct zt_update_coeffs {
    zt_update_rule rule;
    float lr, weight_decay;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float eps;
};

__device__ __forceinline__ float zt_sign_or_zero(float g) {
    return g > 0.0f ? 1.0f : g < 0.0f ? -1.0f : 0.0f;
}

/* theta' for element j; advances its optimizer state (m, v, vhat at stride n_elems). */
__device__ __forceinline__ float zt_updated_weight(const zt_update_coeffs &k, float theta, float g,
                                                   float *state, /* (1 or 3, n) or NULL */
                                                   size_t j, size_t n_elems) {
    float direction;
    switch (k.rule) {
    case ZT_UPDATE_SIGN:
        direction = zt_sign_or_zero(g);
        break;
    case ZT_UPDATE_MOMENTUM: {
        const float m = __fadd_rn(__fmul_rn(k.beta1, state[j]), g);
        state[j] = m;
        direction = m;
        break;
    }
    case ZT_UPDATE_ADAMM: {
        float *m = state + j, *v = state + n_elems + j, *vhat = state + 2 * n_elems + j;
        const float m_new = __fadd_rn(__fmul_rn(k.beta1, *m), __fmul_rn(k.one_minus_beta1, g));
        const float v_new =
            __fadd_rn(__fmul_rn(k.beta2, *v), __fmul_rn(k.one_minus_beta2, __fmul_rn(g, g)));
        /* A comparison rather than fmaxf, so a NaN v propagates instead of vanishing. */
        const float vhat_new = *vhat >= v_new ? *vhat : v_new;
        *m = m_new;
        *v = v_new;
        *vhat = vhat_new;
        direction = __fdiv_rn(m_new, __fadd_rn(__fsqrt_rn(vhat_new), k.eps));
        break;
    }
    default: /* ZT_UPDATE_SGD */
        direction = g;
        break;
    }
    const float step = __fmul_rn(k.lr, __fadd_rn(direction, __fmul_rn(k.weight_decay, theta)));
    return step != 0.0f ? __fsub_rn(theta, step) : theta;
}

/* One thread per Philox block: elements 4*block .. 4*block+3 share the Philox calls of g and of
 * the SR bits. */
static __global__ void zt_update_k(void *theta, zt_dtype dtype, uint64_t n_elems, /* (n) */
                                   float *state, /* (1 or 3, n) or NULL */
                                   zt_cuda_z_terms terms, zt_update_coeffs coeffs, int stochastic,
                                   uint64_t rounding_key,
                                   unsigned long long *nonfinite /* (1) or NULL */) {
    unsigned long long my_nonfinite = 0;
    const uint64_t n_blocks = (n_elems + 3) / 4;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t block = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; block < n_blocks;
         block += stride) {
        const zt_f32x4 g = terms.n_terms > 0 ? zt_cuda_z_sum_block4(terms, block)
                                             : zt_f32x4{0.0f, 0.0f, 0.0f, 0.0f};
        const zt_u32x4 random =
            stochastic ? zt_cuda_sr_bits_block4(rounding_key, block) : zt_u32x4{0u, 0u, 0u, 0u};
        const unsigned n_lanes = block * 4 + 4 <= n_elems ? 4u : (unsigned)(n_elems - block * 4);
        for (unsigned lane = 0; lane < n_lanes; lane++) {
            const size_t j = (size_t)(block * 4 + lane);
            const float old = zt_load_f32(theta, dtype, j);
            const float updated =
                zt_updated_weight(coeffs, old, zt_f32x4_lane(g, lane), state, j, n_elems);
            if (!stochastic) {
                zt_store_rne(theta, dtype, j, updated);
            } else {
                const uint32_t bits = zt_u32x4_lane(random, lane);
                static_cast<uint16_t *>(theta)[j] = dtype == ZT_F16
                                                        ? zt_sr_f32_to_f16(updated, bits)
                                                        : zt_sr_f32_to_bf16(updated, bits);
            }
            /* The stored value, since a finite f32 can still overflow f16's range. */
            my_nonfinite += zt_stored_nonfinite(theta, dtype, j);
        }
    }
    /* Divergence is rare: one atomic per thread that saw it, none otherwise. */
    if (nonfinite && my_nonfinite) atomicAdd(nonfinite, my_nonfinite);
}

// ---- the op ----

zt_status zt_cuda_update(zt_backend *be, void *theta, zt_dtype dtype, /* (n) */
                         uint32_t tensor_id, size_t n_elems,
                         float *state, /* NULL, (n) or (3,n) by rule */
                         const zt_update *u) {
    const char *op = "update";
    ZT_TRY(zt_check_ptr(op, "update", u));
    ZT_TRY(zt_check_perturbation(op, &u->grad));
    if (n_elems == 0) return ZT_OK;
    ZT_TRY(zt_check_update_args(op, theta, dtype, n_elems, state, u));

    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    zt_cuda_z_terms terms;
    ZT_TRY(zt_cuda_z_terms_prepare(cb, op, &u->grad, tensor_id, &terms));
    zt_update_coeffs coeffs;
    coeffs.rule = u->rule;
    coeffs.lr = u->lr;
    coeffs.weight_decay = u->weight_decay;
    coeffs.beta1 = u->beta1;
    coeffs.one_minus_beta1 = 1.0f - u->beta1;
    coeffs.beta2 = u->beta2;
    coeffs.one_minus_beta2 = 1.0f - u->beta2;
    coeffs.eps = u->eps;
    const int stochastic = u->stochastic_rounding && dtype != ZT_F32;
    /* SGD and SIGN keep no state: the kernel must not touch a pointer it was not promised. */
    float *rule_state = u->rule == ZT_UPDATE_MOMENTUM || u->rule == ZT_UPDATE_ADAMM ? state : NULL;
    const uint64_t n_blocks = ((uint64_t)n_elems + 3) / 4;
    unsigned long long *count = u->n_nonfinite ? cb->nonfinite : NULL;
    if (count && cb->pending_nonfinite != u->n_nonfinite) {
        /* Another counter's sum is still on the device: deliver it before starting this one. */
        if (cb->pending_nonfinite) ZT_TRY(zt_cuda_wait(cb));
        ZT_CUDA_TRY(cudaMemsetAsync(count, 0, sizeof *count, cb->stream));
        cb->pending_nonfinite = u->n_nonfinite;
    }
    ZT_LAUNCH(zt_update_k, zt_zo_blocks(n_blocks, ZT_CUDA_ZO_MAX_BLOCKS), kBlockThreads, 0,
              cb->stream, theta, dtype, (uint64_t)n_elems, rule_state, terms, coeffs, stochastic,
              zt_tensor_key(u->rounding_seed, tensor_id), count);
    return ZT_OK; /* the count arrives at the next wait (zt_cuda_wait) */
}

} // namespace ZT_CUDA_NAMESPACE
