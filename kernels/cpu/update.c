/* update: the once-per-step change of one weight tensor, regenerating z (docs/design.md §2).
 *
 * Per element j, in f32 (g as in z_terms.h; one rounding per operation, no FMA):
 *
 *     SGD       u = g
 *     SIGN      u = sign(g), sign(0) = 0
 *     MOMENTUM  m = beta1*m + g;  u = m
 *     ADAMM     m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*(g*g);
 *               vhat = max(vhat, v);  u = m / (sqrt(vhat) + eps)     (1-beta rounded once)
 *     step      = lr * (u + weight_decay*theta)
 *     theta'    = theta - step, or theta itself when step is zero
 *
 * The zero-step case keeps a weight of -0 from becoming +0 (-0 - -0 = +0), so lr = 0 leaves
 * every weight bit-identical. f16 / bf16 weights are stored rounded to nearest even, or, with
 * stochastic_rounding, with the SR bits of element j keyed by (rounding_seed, tensor_id): a
 * pure function of j, never of the thread that handles it. */

/* The f32 operation order is part of the contract (z_terms.h), so nothing may be fused into
 * an FMA: GCC in ISO C mode (-std=c11) contracts nothing; clang contracts within an expression
 * unless told not to. Placed before the includes, it covers the inline helpers too. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdint.h>

#include "core/status.h"
#include "cpu/cpu_common.h"
#include "cpu/z_terms.h"
#include "cpu/zo_avx2.h"
#include "cpu/zo_passes.h"

typedef zt_cpu_update_coeffs update_coeffs;

#define ZT_ALWAYS_INLINE static inline __attribute__((always_inline))

ZT_ALWAYS_INLINE float sign_or_zero(float g) {
    return g > 0.0f ? 1.0f : g < 0.0f ? -1.0f : 0.0f;
}

/* theta' for one element; advances its optimizer state (m, v, vhat at stride n_elems). `rule` is
 * a constant where update_run is instantiated, so the switch folds away. */
ZT_ALWAYS_INLINE float updated_weight(const update_coeffs *k, zt_update_rule rule, float theta,
                                      float g,
                                      float *state, /* (1 or 3, n) or NULL, at this element */
                                      size_t n_elems) {
    float direction;
    switch (rule) {
    case ZT_UPDATE_SIGN:
        direction = sign_or_zero(g);
        break;
    case ZT_UPDATE_MOMENTUM: {
        float m = k->beta1 * state[0] + g;
        state[0] = m;
        direction = m;
        break;
    }
    case ZT_UPDATE_ADAMM: {
        float *m = state, *v = state + n_elems, *vhat = state + 2 * n_elems;
        float m_new = k->beta1 * *m + k->one_minus_beta1 * g;
        float v_new = k->beta2 * *v + k->one_minus_beta2 * (g * g);
        /* A comparison rather than fmaxf, so a NaN v propagates instead of vanishing. */
        float vhat_new = *vhat >= v_new ? *vhat : v_new;
        *m = m_new;
        *v = v_new;
        *vhat = vhat_new;
        direction = m_new / (sqrtf(vhat_new) + k->eps);
        break;
    }
    default:
        direction = g;
        break; /* ZT_UPDATE_SGD */
    }
    float step = k->lr * (direction + k->weight_decay * theta);
    return step != 0.0f ? theta - step : theta;
}

ZT_ALWAYS_INLINE void store_weight(void *theta, zt_dtype dtype, size_t j, float value,
                                   int stochastic, uint32_t random) {
    if (dtype == ZT_F32 || !stochastic)
        zt_store_rne(theta, dtype, j, value);
    else if (dtype == ZT_F16)
        ((uint16_t *)theta)[j] = zt_sr_f32_to_f16(value, random);
    else
        ((uint16_t *)theta)[j] = zt_sr_f32_to_bf16(value, random);
}

/* Elements [begin, end) of theta from their g (and SR words), both indexed from `base`; returns
 * how many stored values are NaN or infinite. Instantiated with constant dtype, rule and
 * stochastic by update_run_any, so each combination is a loop without those branches. */
ZT_ALWAYS_INLINE unsigned long long update_run(void *theta, zt_dtype dtype, zt_update_rule rule,
                                               int stochastic, const update_coeffs *coeffs,
                                               float *state, size_t n_elems, uint64_t base,
                                               uint64_t begin, uint64_t end,
                                               const float *g,           /* (end - base) */
                                               const uint32_t *random) { /* (end - base) */
    /* Elements are independent, so vector lanes give the same bits as a scalar loop. */
    const size_t first = (size_t)begin, count = (size_t)(end - begin);
    const size_t offset = (size_t)(begin - base);
    ZT_CPU_SIMD
    for (size_t i = 0; i < count; i++) {
        const size_t j = first + i;
        const float old = zt_load_f32(theta, dtype, j);
        const float updated =
            updated_weight(coeffs, rule, old, g[offset + i], state ? state + j : NULL, n_elems);
        store_weight(theta, dtype, j, updated, stochastic, stochastic ? random[offset + i] : 0u);
    }
    /* The stored values, since a finite f32 can still overflow f16's range. */
    unsigned long long nonfinite = 0;
    for (size_t i = 0; i < count; i++)
        nonfinite += (unsigned long long)zt_stored_nonfinite(theta, dtype, first + i);
    return nonfinite;
}

#define ZT_UPDATE_CASE(dt, rl, sr)                                                                 \
    if (dtype == (dt) && coeffs->rule == (rl) && stochastic == (sr))                               \
    return update_run(theta, dt, rl, sr, coeffs, state, n_elems, base, begin, end, g, random)
#define ZT_UPDATE_CASES(dt, sr)                                                                    \
    ZT_UPDATE_CASE(dt, ZT_UPDATE_SGD, sr);                                                         \
    ZT_UPDATE_CASE(dt, ZT_UPDATE_SIGN, sr);                                                        \
    ZT_UPDATE_CASE(dt, ZT_UPDATE_MOMENTUM, sr);                                                    \
    ZT_UPDATE_CASE(dt, ZT_UPDATE_ADAMM, sr)

static unsigned long long update_run_scalar(void *theta, zt_dtype dtype, int stochastic,
                                            const update_coeffs *coeffs, float *state,
                                            size_t n_elems, uint64_t base, uint64_t begin,
                                            uint64_t end, const float *g, const uint32_t *random) {
    ZT_UPDATE_CASES(ZT_F32, 0);
    ZT_UPDATE_CASES(ZT_F16, 0);
    ZT_UPDATE_CASES(ZT_F16, 1);
    ZT_UPDATE_CASES(ZT_BF16, 0);
    ZT_UPDATE_CASES(ZT_BF16, 1);
    return update_run(theta, dtype, coeffs->rule, stochastic, coeffs, state, n_elems, base, begin,
                      end, g, random);
}

/* SGD on f32 and f16 weights takes the AVX2 loops (zo_avx2.h) where the CPU has them; what they
 * leave, and every other case, the scalar loops. */
static unsigned long long update_run_any(void *theta, zt_dtype dtype, int stochastic,
                                         const update_coeffs *coeffs, float *state, size_t n_elems,
                                         uint64_t base, uint64_t begin, uint64_t end,
                                         const float *g, const uint32_t *random, int vector_loops) {
    unsigned long long vector_nonfinite = 0;
    if (vector_loops && coeffs->rule == ZT_UPDATE_SGD && (dtype == ZT_F32 || dtype == ZT_F16)) {
        const size_t offset = (size_t)(begin - base), n = (size_t)(end - begin);
        size_t done;
        if (dtype == ZT_F32)
            done = zt_cpu_update_sgd_f32_avx2((float *)theta + begin, g + offset, n, coeffs->lr,
                                              coeffs->weight_decay, &vector_nonfinite);
        else
            done = zt_cpu_update_sgd_f16_avx2((uint16_t *)theta + begin, g + offset,
                                              stochastic ? random + offset : NULL, n, coeffs->lr,
                                              coeffs->weight_decay, &vector_nonfinite);
        begin += done;
    }
    return vector_nonfinite + update_run_scalar(theta, dtype, stochastic, coeffs, state, n_elems,
                                                base, begin, end, g, random);
}

void zt_cpu_update_pass_init(zt_cpu_update_pass *pass, void *theta, zt_dtype dtype,
                             uint32_t tensor_id, size_t n_elems, float *state, const zt_update *u,
                             const zt_cpu_z_term *terms) {
    pass->coeffs = (update_coeffs){
        .rule = u->rule,
        .lr = u->lr,
        .weight_decay = u->weight_decay,
        .beta1 = u->beta1,
        .one_minus_beta1 = 1.0f - u->beta1,
        .beta2 = u->beta2,
        .one_minus_beta2 = 1.0f - u->beta2,
        .eps = u->eps,
    };
    pass->theta = theta;
    pass->dtype = dtype;
    pass->n_elems = n_elems;
    pass->state = state;
    pass->terms = terms;
    pass->n_terms = u->grad.n_terms;
    pass->dist = u->grad.dist;
    pass->stochastic = u->stochastic_rounding && dtype != ZT_F32;
    pass->rounding_key = zt_tensor_key(u->rounding_seed, tensor_id);
    pass->path = zt_cpu_rng_active_path();
    pass->vector_loops = zt_cpu_rng_path_has_avx2(pass->path) && zt_cpu_zo_avx2_available();
}

unsigned long long zt_cpu_update_pass_run(const zt_cpu_update_pass *pass, zt_cpu_z_run run) {
    float g[4 * ZT_CPU_Z_RUN_BLOCKS], scratch[4 * ZT_CPU_Z_RUN_BLOCKS];
    uint32_t random[4 * ZT_CPU_Z_RUN_BLOCKS];
    zt_cpu_z_sum_run(pass->terms, pass->n_terms, pass->dist, pass->path, run.block,
                     (size_t)run.n_blocks, g, scratch);
    if (pass->stochastic)
        zt_cpu_stream_words(pass->path, pass->rounding_key, ZT_RNG_STREAM_SR, run.block,
                            (size_t)run.n_blocks, random);
    return update_run_any(pass->theta, pass->dtype, pass->stochastic, &pass->coeffs, pass->state,
                          pass->n_elems, run.begin, run.begin, run.end, g, random,
                          pass->vector_loops);
}

zt_status zt_cpu_update(zt_backend *be, void *theta, zt_dtype dtype, /* (n) */
                        uint32_t tensor_id, size_t n_elems,
                        float *state, /* NULL, (n) or (3,n) by rule */
                        const zt_update *u) {
    const char *op = "update";
    ZT_TRY(zt_check_ptr(op, "update", u));
    zt_cpu_z_term stack_terms[ZT_CPU_Z_TERMS_ON_STACK];
    zt_cpu_z_term *terms = NULL;
    ZT_TRY(zt_cpu_z_terms_prepare(op, &u->grad, tensor_id, stack_terms, &terms));
    zt_status status = ZT_OK;
    if (n_elems == 0) goto done;
    if ((status = zt_check_update_args(op, theta, dtype, n_elems, state, u)) != ZT_OK) goto done;

    {
        zt_cpu_update_pass pass;
        zt_cpu_update_pass_init(&pass, theta, dtype, tensor_id, n_elems, state, u, terms);
        const uint64_t n = (uint64_t)n_elems;
        unsigned long long nonfinite = 0;
        const int64_t n_runs = zt_cpu_z_run_count(0, n);
        ZT_CPU_PARALLEL_FOR_SUM(zt_cpu_threads(zt_cpu(be)), nonfinite)
        for (int64_t r = 0; r < n_runs; r++)
            nonfinite += zt_cpu_update_pass_run(&pass, zt_cpu_z_run_at(0, n, r));
        if (u->n_nonfinite) *u->n_nonfinite += nonfinite;
        be->n_z_drawn += (unsigned long long)n_elems * (unsigned long long)u->grad.n_terms;
    }

done:
    zt_cpu_z_terms_release(terms, stack_terms);
    return status;
}
