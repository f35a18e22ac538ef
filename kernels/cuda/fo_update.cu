/* fo_update and grad_sumsq: the first-order step of one tensor from its f32 gradient, and the
 * gradient's squared norm for clipping (docs/design.md §3.1), bit for bit the CPU backend's
 * (kernels/cpu/fo_update.c).
 *
 * fo_update repeats the CPU's per-element f32 formulas in the same operation order, each written
 * with an explicitly rounded intrinsic (__fmul_rn, __fadd_rn, ...) so that nvcc cannot contract a
 * product and a sum into an FMA; the constants the CPU computes once per call (1 - lr * decay,
 * 1 - beta, lr / bias1, sqrtf(bias2)) are computed on the host here too, with the same
 * expressions. f16 / bf16 stores round to nearest even through common/dtype.h, or stochastically
 * with the word of element j taken from Philox block j / 4 of the SR stream of (rounding_seed,
 * tensor id), as the ZO update draws them (update.cu): the bits never depend on the thread.
 *
 * The step is memory-bound and once per tensor per step, so each thread takes one Philox block
 * (four elements) at a time, element by element, with no alignment cases.
 *
 * grad_sumsq sums fixed chunks of 4096 elements in ascending order in double, one thread per chunk,
 * then one thread adds the chunk sums in ascending order: the CPU's order exactly, so the same
 * double. */
#include <math.h>

#include "cuda/z_terms.cuh"

namespace ZT_CUDA_NAMESPACE {

/* The CPU's chunk (ZT_CPU_SUMSQ_CHUNK): the order of the additions is the result's definition. */
constexpr size_t kGradSumsqChunk = 4096;

struct zt_fo_coeffs {
    zt_fo_rule rule;
    float lr, weight_decay, decay_factor;
    int decoupled, nesterov;
    float momentum, beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
    float step_size, sqrt_bias2;
    float grad_scale;
};

__device__ __forceinline__ float zt_fo_sign_or_zero(float g) {
    return g > 0.0f ? 1.0f : g < 0.0f ? -1.0f : 0.0f;
}

/* fo_updated of kernels/cpu/fo_update.c: theta' for element j, its state rows at stride n
 * advanced. The rule is uniform over the grid, so its switch costs no divergence. */
__device__ __forceinline__ float zt_fo_updated(const zt_fo_coeffs &k, float theta, float grad,
                                               float *state, /* (rows, n) from element j */
                                               uint64_t n) {
    float g = __fmul_rn(k.grad_scale, grad);
    if (k.decoupled) {
        theta = __fmul_rn(theta, k.decay_factor);
    } else if (k.weight_decay != 0.0f) {
        g = __fadd_rn(g, __fmul_rn(k.weight_decay, theta));
    }
    float u;
    switch (k.rule) {
    case ZT_FO_SIGN:
        u = zt_fo_sign_or_zero(g);
        break;
    case ZT_FO_ADAM: {
        const float m = __fadd_rn(__fmul_rn(k.beta1, state[0]), __fmul_rn(k.one_minus_beta1, g));
        const float v =
            __fadd_rn(__fmul_rn(k.beta2, state[n]), __fmul_rn(k.one_minus_beta2, __fmul_rn(g, g)));
        state[0] = m;
        state[n] = v;
        const float denominator = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), k.sqrt_bias2), k.eps);
        return __fsub_rn(theta, __fmul_rn(k.step_size, __fdiv_rn(m, denominator)));
    }
    case ZT_FO_ADAMM: {
        const float m = __fadd_rn(__fmul_rn(k.beta1, state[0]), __fmul_rn(k.one_minus_beta1, g));
        const float v =
            __fadd_rn(__fmul_rn(k.beta2, state[n]), __fmul_rn(k.one_minus_beta2, __fmul_rn(g, g)));
        /* A comparison rather than fmaxf, so a NaN v propagates instead of vanishing. */
        const float vhat = state[2 * n] >= v ? state[2 * n] : v;
        state[0] = m;
        state[n] = v;
        state[2 * n] = vhat;
        u = __fdiv_rn(m, __fadd_rn(__fsqrt_rn(vhat), k.eps));
        break;
    }
    default: /* ZT_FO_SGD */
        if (k.momentum != 0.0f) {
            const float m = __fadd_rn(__fmul_rn(k.momentum, state[0]), g);
            state[0] = m;
            u = k.nesterov ? __fadd_rn(g, __fmul_rn(k.momentum, m)) : m;
        } else {
            u = g;
        }
        break;
    }
    return __fsub_rn(theta, __fmul_rn(k.lr, u));
}

/* One kernel per (dtype, stochastic rounding): each thread takes whole Philox blocks, so a block's
 * four SR words are drawn once. */
template <zt_dtype DT, bool SR>
static __global__ void __launch_bounds__(kBlockThreads)
    zt_fo_update_k(void *theta, const float *grad, /* (n) each */
                   float *state,                   /* (rows, n) or NULL */
                   uint64_t n_elems, zt_fo_coeffs coeffs, zt_round_keys rounding,
                   unsigned long long *nonfinite /* (1) or NULL */) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    unsigned found = 0;
    for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b * 4 < n_elems;
         b += stride) {
        const zt_u32x4 random =
            SR ? zt_cuda_rng_block4_rk(rounding, ZT_RNG_STREAM_SR, b) : zt_u32x4{0u, 0u, 0u, 0u};
        const unsigned n_lanes = b * 4 + 4 <= n_elems ? 4u : (unsigned)(n_elems - b * 4);
        for (unsigned lane = 0; lane < n_lanes; lane++) {
            const size_t j = (size_t)(b * 4 + lane);
            const float updated = zt_fo_updated(coeffs, zt_load_f32(theta, DT, j), grad[j],
                                                state ? state + j : NULL, n_elems);
            if (!SR) {
                zt_store_rne(theta, DT, j, updated);
            } else {
                const uint32_t bits = zt_u32x4_lane(random, lane);
                static_cast<uint16_t *>(theta)[j] = DT == ZT_F16 ? zt_sr_f32_to_f16(updated, bits)
                                                                 : zt_sr_f32_to_bf16(updated, bits);
            }
            /* The stored value, since a finite f32 can still overflow f16's range. */
            found += (unsigned)zt_stored_nonfinite(theta, DT, j);
        }
    }
    /* Divergence is rare: one atomic per thread that saw it, none otherwise. */
    if (nonfinite && found) atomicAdd(nonfinite, (unsigned long long)found);
}

typedef void (*zt_fo_update_kernel)(void *, const float *, float *, uint64_t, zt_fo_coeffs,
                                    zt_round_keys, unsigned long long *);

/* Stochastic rounding only exists for f16 / bf16 stores. */
static zt_fo_update_kernel zt_fo_update_pick(zt_dtype dtype, int stochastic) {
    switch (dtype) {
    case ZT_F16:
        return stochastic ? zt_fo_update_k<ZT_F16, true> : zt_fo_update_k<ZT_F16, false>;
    case ZT_BF16:
        return stochastic ? zt_fo_update_k<ZT_BF16, true> : zt_fo_update_k<ZT_BF16, false>;
    default:
        return zt_fo_update_k<ZT_F32, false>;
    }
}

zt_status zt_cuda_fo_update(zt_backend *be, void *theta, zt_dtype dtype,           /* (n) */
                            uint32_t tensor_id, size_t n_elems, const float *grad, /* (n) */
                            float *state, /* (rows, n) or NULL */
                            const zt_fo_update *u) {
    const char *op = "fo_update";
    if (n_elems == 0) return ZT_OK;
    ZT_TRY(zt_check_fo_update_args(op, theta, dtype, n_elems, grad, state, u));

    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    /* The CPU's fo_coeffs, with its expressions: these roundings happen once, on the host. */
    zt_fo_coeffs k;
    k.rule = u->rule;
    k.lr = u->lr;
    k.weight_decay = u->weight_decay;
    k.decay_factor = 1.0f - u->lr * u->weight_decay;
    k.decoupled = u->decoupled_decay;
    k.nesterov = u->nesterov;
    k.momentum = u->momentum;
    k.beta1 = u->beta1;
    k.one_minus_beta1 = 1.0f - u->beta1;
    k.beta2 = u->beta2;
    k.one_minus_beta2 = 1.0f - u->beta2;
    k.eps = u->eps;
    k.step_size = u->rule == ZT_FO_ADAM ? u->lr / u->bias1 : 0.0f;
    k.sqrt_bias2 = u->rule == ZT_FO_ADAM ? sqrtf(u->bias2) : 1.0f;
    k.grad_scale = u->grad_scale;
    const int stochastic = u->stochastic_rounding && dtype != ZT_F32;
    /* A rule without state must not have the kernel touch a pointer it was not promised. */
    float *rule_state = zt_fo_state_rows(u) > 0 ? state : NULL;
    /* The ZO update's deferred count (update.cu): summed on the device, delivered by the next
     * wait, so a step's updates make the host wait once. */
    unsigned long long *count = u->n_nonfinite ? cb->nonfinite : NULL;
    if (count && cb->pending_nonfinite != u->n_nonfinite) {
        /* Another counter's sum is still on the device: deliver it before starting this one. */
        if (cb->pending_nonfinite) ZT_TRY(zt_cuda_wait(cb));
        ZT_CUDA_TRY(cudaMemsetAsync(count, 0, sizeof *count, cb->stream));
        cb->pending_nonfinite = u->n_nonfinite;
    }
    const uint64_t n_blocks = ((uint64_t)n_elems + 3) / 4;
    const zt_fo_update_kernel update_kernel = zt_fo_update_pick(dtype, stochastic);
    ZT_LAUNCH(update_kernel, zt_stride_blocks((size_t)n_blocks), kBlockThreads, 0, cb->stream,
              theta, grad, rule_state, (uint64_t)n_elems, k,
              zt_round_keys_of(zt_tensor_key(u->rounding_seed, tensor_id)), count);
    return ZT_OK; /* the count arrives at the next wait (zt_cuda_wait) */
}

// ---- grad_sumsq ----

size_t zt_cuda_grad_sumsq_scratch_floats(size_t n_elems) {
    if (n_elems == 0) return 0;
    const size_t n_chunks = (n_elems + kGradSumsqChunk - 1) / kGradSumsqChunk;
    /* one double per chunk and one for the total */
    return (n_chunks + 1) * (sizeof(double) / sizeof(float));
}

/* __dmul_rn / __dadd_rn: a contracted x * x + sum would round once where the CPU rounds twice. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_grad_sumsq_chunks_k(double *partials, /* (chunks) */
                           const float *x,   /* (n) */
                           uint64_t n_elems, uint64_t n_chunks) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t c = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; c < n_chunks; c += stride) {
        const uint64_t first = c * kGradSumsqChunk;
        const uint64_t end = first + kGradSumsqChunk < n_elems ? first + kGradSumsqChunk : n_elems;
        double sum = 0.0;
        for (uint64_t j = first; j < end; j++)
            sum = __dadd_rn(sum, __dmul_rn((double)x[j], (double)x[j]));
        partials[c] = sum;
    }
}

/* One thread: the chunk sums in ascending order, as the CPU adds them. */
static __global__ void zt_grad_sumsq_total_k(double *total,          /* (1) */
                                             const double *partials, /* (chunks) */
                                             uint64_t n_chunks) {
    double sum = 0.0;
    for (uint64_t c = 0; c < n_chunks; c++)
        sum = __dadd_rn(sum, partials[c]);
    *total = sum;
}

zt_status zt_cuda_grad_sumsq(zt_backend *be, double *out, const float *x, /* (n) */
                             size_t n_elems) {
    const char *op = "grad_sumsq";
    ZT_TRY(zt_check_ptr(op, "out", out));
    if (n_elems == 0) {
        *out = 0.0;
        return ZT_OK;
    }
    ZT_TRY(zt_check_ptr(op, "x", x));

    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    const uint64_t n_chunks = ((uint64_t)n_elems + kGradSumsqChunk - 1) / kGradSumsqChunk;
    float *scratch = NULL;
    ZT_TRY(zt_cuda_scratch(cb, zt_cuda_grad_sumsq_scratch_floats(n_elems), op, &scratch));
    double *partials = reinterpret_cast<double *>(scratch); /* cudaMalloc aligns to 256 bytes */
    double *total = partials + n_chunks;
    ZT_LAUNCH(zt_grad_sumsq_chunks_k, zt_stride_blocks((size_t)n_chunks), kBlockThreads, 0,
              cb->stream, partials, x, (uint64_t)n_elems, n_chunks);
    ZT_LAUNCH(zt_grad_sumsq_total_k, 1, 1, 0, cb->stream, total, partials, n_chunks);
    double result = 0.0;
    ZT_CUDA_TRY(cudaMemcpyAsync(&result, total, sizeof result, cudaMemcpyDeviceToHost, cb->stream));
    ZT_TRY(zt_cuda_wait(cb)); /* the caller reads *out next */
    *out = result;
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
