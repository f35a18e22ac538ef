/* fo_update and grad_sumsq: the first-order step of one tensor from its f32 gradient, and the
 * gradient's squared norm for clipping (docs/design.md §3.1).
 *
 * Per element j, in f32, PyTorch's order (torch.optim's SGD, Adam, AdamW), one rounding per
 * operation, no FMA:
 *
 *     g = grad_scale * grad[j];  g = g + weight_decay * theta   (coupled decay)
 *     theta = theta * (1 - lr * weight_decay)                  (decoupled decay, AdamW, first)
 *     SGD    m = momentum * m + g;  u = nesterov ? g + momentum * m : m   (u = g without momentum)
 *     SIGN   u = sign(g)
 *     ADAM   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  theta -= (lr / bias1) * m / d,
 *            d = sqrt(v) / sqrt(bias2) + eps
 *     ADAMM  m, v as Adam;  vhat = max(vhat, v);  u = m / (sqrt(vhat) + eps)
 *     theta' = theta - lr * u
 *
 * f16 / bf16 weights are stored rounded to nearest even, or with stochastic rounding keyed by
 * (rounding_seed, tensor id) as the ZO update does (update.c): element j's bits depend on j
 * alone, never on the thread that handles it. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdint.h>

#include "core/status.h"
#include "cpu/cpu_common.h"
#include "cpu/rng_blocks.h"
#include "cpu/z_terms.h"

typedef struct fo_coeffs {
    zt_fo_rule rule;
    float lr, weight_decay, decay_factor; /* decay_factor = 1 - lr * weight_decay (decoupled) */
    int decoupled, nesterov;
    float momentum, beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
    float step_size, sqrt_bias2; /* Adam: lr / bias1, sqrt(bias2) */
    float grad_scale;
} fo_coeffs;

static float sign_or_zero(float g) {
    return g > 0.0f ? 1.0f : g < 0.0f ? -1.0f : 0.0f;
}

/* theta' for one element, its state rows at stride n advanced. */
static float fo_updated(const fo_coeffs *k, float theta, float grad, float *state, size_t n) {
    float g = k->grad_scale * grad;
    if (k->decoupled) {
        theta = theta * k->decay_factor;
    } else if (k->weight_decay != 0.0f) {
        g = g + k->weight_decay * theta;
    }
    float u;
    switch (k->rule) {
    case ZT_FO_SIGN:
        u = sign_or_zero(g);
        break;
    case ZT_FO_ADAM: {
        const float m = k->beta1 * state[0] + k->one_minus_beta1 * g;
        const float v = k->beta2 * state[n] + k->one_minus_beta2 * (g * g);
        state[0] = m;
        state[n] = v;
        const float denominator = sqrtf(v) / k->sqrt_bias2 + k->eps;
        return theta - k->step_size * (m / denominator);
    }
    case ZT_FO_ADAMM: {
        const float m = k->beta1 * state[0] + k->one_minus_beta1 * g;
        const float v = k->beta2 * state[n] + k->one_minus_beta2 * (g * g);
        /* A comparison rather than fmaxf, so a NaN v propagates instead of vanishing. */
        const float vhat = state[2 * n] >= v ? state[2 * n] : v;
        state[0] = m;
        state[n] = v;
        state[2 * n] = vhat;
        u = m / (sqrtf(vhat) + k->eps);
        break;
    }
    default: /* ZT_FO_SGD */
        if (k->momentum != 0.0f) {
            const float m = k->momentum * state[0] + g;
            state[0] = m;
            u = k->nesterov ? g + k->momentum * m : m;
        } else {
            u = g;
        }
        break;
    }
    return theta - k->lr * u;
}

static void store(void *theta, zt_dtype dtype, size_t j, float value, int stochastic,
                  uint32_t random) {
    if (dtype == ZT_F32 || !stochastic)
        zt_store_rne(theta, dtype, j, value);
    else if (dtype == ZT_F16)
        ((uint16_t *)theta)[j] = zt_sr_f32_to_f16(value, random);
    else
        ((uint16_t *)theta)[j] = zt_sr_f32_to_bf16(value, random);
}

zt_status zt_cpu_fo_update(zt_backend *be, void *theta, zt_dtype dtype,           /* (n) */
                           uint32_t tensor_id, size_t n_elems, const float *grad, /* (n) */
                           float *state, /* (rows, n) or NULL */
                           const zt_fo_update *u) {
    const char *op = "fo_update";
    if (n_elems == 0) return ZT_OK;
    ZT_TRY(zt_check_fo_update_args(op, theta, dtype, n_elems, grad, state, u));
    const fo_coeffs k = {
        .rule = u->rule,
        .lr = u->lr,
        .weight_decay = u->weight_decay,
        .decay_factor = 1.0f - u->lr * u->weight_decay,
        .decoupled = u->decoupled_decay,
        .nesterov = u->nesterov,
        .momentum = u->momentum,
        .beta1 = u->beta1,
        .one_minus_beta1 = 1.0f - u->beta1,
        .beta2 = u->beta2,
        .one_minus_beta2 = 1.0f - u->beta2,
        .eps = u->eps,
        .step_size = u->rule == ZT_FO_ADAM ? u->lr / u->bias1 : 0.0f,
        .sqrt_bias2 = u->rule == ZT_FO_ADAM ? sqrtf(u->bias2) : 1.0f,
        .grad_scale = u->grad_scale,
    };
    const int stochastic = u->stochastic_rounding && dtype != ZT_F32;
    const uint64_t rounding_key = zt_tensor_key(u->rounding_seed, tensor_id);
    const uint64_t n = (uint64_t)n_elems;
    const int64_t n_runs = zt_cpu_z_run_count(0, n);
    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    unsigned long long nonfinite = 0;
    ZT_CPU_PARALLEL_FOR_SUM(zt_cpu_threads(zt_cpu(be)), nonfinite)
    for (int64_t r = 0; r < n_runs; r++) {
        uint32_t random[4 * ZT_CPU_Z_RUN_BLOCKS];
        const zt_cpu_z_run run = zt_cpu_z_run_at(0, n, r);
        if (stochastic)
            zt_cpu_stream_words(path, rounding_key, ZT_RNG_STREAM_SR, run.block,
                                (size_t)run.n_blocks, random);
        for (uint64_t j = run.begin; j < run.end; j++) {
            const float old = zt_load_f32(theta, dtype, (size_t)j);
            const float updated = fo_updated(&k, old, grad[j], state ? state + j : NULL, n_elems);
            store(theta, dtype, (size_t)j, updated, stochastic,
                  stochastic ? random[j - run.begin] : 0u);
            nonfinite += (unsigned long long)zt_stored_nonfinite(theta, dtype, (size_t)j);
        }
    }
    if (u->n_nonfinite) *u->n_nonfinite += nonfinite;
    return ZT_OK;
}

/* Chunks of this many elements are summed in ascending order, then the chunks' sums in order:
 * the same bits on any thread count. */
#define ZT_CPU_SUMSQ_CHUNK 4096

size_t zt_cpu_grad_sumsq_scratch_floats(size_t n_elems) {
    return 2 * ((n_elems + ZT_CPU_SUMSQ_CHUNK - 1) / ZT_CPU_SUMSQ_CHUNK);
}

zt_status zt_cpu_grad_sumsq(zt_backend *be, double *out, const float *x, /* (n) */
                            size_t n_elems) {
    const char *op = "grad_sumsq";
    ZT_TRY(zt_check_ptr(op, "out", out));
    if (n_elems == 0) {
        *out = 0.0;
        return ZT_OK;
    }
    ZT_TRY(zt_check_ptr(op, "x", x));
    const size_t n_chunks = (n_elems + ZT_CPU_SUMSQ_CHUNK - 1) / ZT_CPU_SUMSQ_CHUNK;
    double *partial = NULL;
    ZT_TRY(zt_cpu_scratch(zt_cpu(be), zt_cpu_grad_sumsq_scratch_floats(n_elems), op,
                          (float **)&partial));
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (size_t c = 0; c < n_chunks; c++) {
        const size_t first = c * ZT_CPU_SUMSQ_CHUNK;
        const size_t end =
            first + ZT_CPU_SUMSQ_CHUNK < n_elems ? first + ZT_CPU_SUMSQ_CHUNK : n_elems;
        double sum = 0.0;
        for (size_t j = first; j < end; j++)
            sum += (double)x[j] * (double)x[j];
        partial[c] = sum;
    }
    double total = 0.0;
    for (size_t c = 0; c < n_chunks; c++)
        total += partial[c];
    *out = total;
    return ZT_OK;
}
