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
 * rounding never depends on which thread handles the element.
 *
 * One kernel per (dtype, distribution, rule, stochastic rounding), so the hot loop carries none
 * of those branches; as in perturb.cu each thread takes two whole Philox blocks per turn with one
 * vector access per block of weights and of each state row, and the tensor's last block, when
 * n is not a multiple of 4, or every block of a tensor not aligned for that, goes element by
 * element. */
#include <math.h>
#include <string.h>

#include "cuda/rademacher.cuh"
#include "cuda/z_terms.cuh"

namespace ZT_CUDA_NAMESPACE {

/* The rule's constants (the rule itself is the kernel's template argument), with 1-beta rounded
 * once on the host as the CPU does. */
struct zt_update_coeffs {
    float lr, weight_decay;
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float eps;
};

__device__ __forceinline__ float zt_sign_or_zero(float g) {
    return g > 0.0f ? 1.0f : g < 0.0f ? -1.0f : 0.0f;
}

/* theta' for one element; advances its optimizer state m, v, vhat (those RULE keeps). */
template <zt_update_rule RULE>
__device__ __forceinline__ float zt_updated_weight(const zt_update_coeffs &k, float theta, float g,
                                                   float &m, float &v, float &vhat) {
    float direction;
    if (RULE == ZT_UPDATE_SIGN) {
        direction = zt_sign_or_zero(g);
    } else if (RULE == ZT_UPDATE_MOMENTUM) {
        m = __fadd_rn(__fmul_rn(k.beta1, m), g);
        direction = m;
    } else if (RULE == ZT_UPDATE_ADAMM) {
        const float m_new = __fadd_rn(__fmul_rn(k.beta1, m), __fmul_rn(k.one_minus_beta1, g));
        const float v_new =
            __fadd_rn(__fmul_rn(k.beta2, v), __fmul_rn(k.one_minus_beta2, __fmul_rn(g, g)));
        /* A comparison rather than fmaxf, so a NaN v propagates instead of vanishing. */
        const float vhat_new = vhat >= v_new ? vhat : v_new;
        m = m_new;
        v = v_new;
        vhat = vhat_new;
        direction = __fdiv_rn(m_new, __fadd_rn(__fsqrt_rn(vhat_new), k.eps));
    } else { /* ZT_UPDATE_SGD */
        direction = g;
    }
    const float step = __fmul_rn(k.lr, __fadd_rn(direction, __fmul_rn(k.weight_decay, theta)));
    return step != 0.0f ? __fsub_rn(theta, step) : theta;
}

/* Optimizer state rows RULE reads and writes (m; m, v, vhat). */
template <zt_update_rule RULE> __host__ __device__ constexpr int zt_state_rows() {
    return RULE == ZT_UPDATE_MOMENTUM ? 1 : RULE == ZT_UPDATE_ADAMM ? 3 : 0;
}

/* f32 magnitudes at and above which (or NaN) a store into DT can give a non-finite value: the
 * round-to-nearest overflow threshold, or, with stochastic rounding, the largest finite value
 * (beyond it the rounding may go up to Inf). Only a screen: the count reads the stored bits. */
template <zt_dtype DT, bool SR> __host__ __device__ constexpr float zt_nonfinite_screen() {
    return DT == ZT_F16    ? (SR ? 65504.0f : 65520.0f)
           : DT == ZT_BF16 ? (SR ? 0x1.fep127f : 0x1.ffp127f)
                           : 0x1.fffffep127f;
}

/* The lanes of block `block` inside the tensor, element by element: the tensor's last block when
 * n is not a multiple of 4, and every block of a tensor not aligned for block access. Returns the
 * number of non-finite weights stored. */
template <zt_dtype DT, zt_update_rule RULE, bool SR>
__device__ __forceinline__ unsigned
zt_update_lanes_g(void *theta,                    /* (n) */
                  uint64_t n_elems, float *state, /* (rows, n) or NULL */
                  const zt_f32x4 &g_block, const zt_update_coeffs &coeffs,
                  const zt_round_keys &rounding, uint64_t block) {
    const zt_f32x4 g[1] = {g_block};
    const zt_u32x4 random =
        SR ? zt_cuda_rng_block4_rk(rounding, ZT_RNG_STREAM_SR, block) : zt_u32x4{0u, 0u, 0u, 0u};
    const unsigned n_lanes = block * 4 + 4 <= n_elems ? 4u : (unsigned)(n_elems - block * 4);
    unsigned found = 0;
    for (unsigned lane = 0; lane < n_lanes; lane++) {
        const size_t j = (size_t)(block * 4 + lane);
        float m = 0.0f, v = 0.0f, vhat = 0.0f;
        if (zt_state_rows<RULE>() >= 1) m = state[j];
        if (zt_state_rows<RULE>() == 3) {
            v = state[n_elems + j];
            vhat = state[2 * n_elems + j];
        }
        const float updated = zt_updated_weight<RULE>(coeffs, zt_load_f32(theta, DT, j),
                                                      zt_f32x4_lane(g[0], lane), m, v, vhat);
        if (zt_state_rows<RULE>() >= 1) state[j] = m;
        if (zt_state_rows<RULE>() == 3) {
            state[n_elems + j] = v;
            state[2 * n_elems + j] = vhat;
        }
        if (!SR) {
            zt_store_rne(theta, DT, j, updated);
        } else {
            const uint32_t bits = zt_u32x4_lane(random, lane);
            static_cast<uint16_t *>(theta)[j] =
                DT == ZT_F16 ? zt_sr_f32_to_f16(updated, bits) : zt_sr_f32_to_bf16(updated, bits);
        }
        /* The stored value, since a finite f32 can still overflow f16's range. */
        found += (unsigned)zt_stored_nonfinite(theta, DT, j);
    }
    return found;
}

template <zt_dtype DT, zt_dist DIST, zt_update_rule RULE, bool SR, bool TERMS>
__device__ __forceinline__ unsigned
zt_update_lanes(void *theta,                    /* (n) */
                uint64_t n_elems, float *state, /* (rows, n) or NULL */
                const zt_cuda_z_terms &terms, const zt_update_coeffs &coeffs,
                const zt_round_keys &rounding, uint64_t block) {
    zt_f32x4 g[1] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    const uint64_t blocks[1] = {block};
    if (TERMS) zt_cuda_z_sum_blocks<DIST, 1>(terms, blocks, g);
    return zt_update_lanes_g<DT, RULE, SR>(theta, n_elems, state, g[0], coeffs, rounding, block);
}

/* The four values of v stochastically rounded into DT with the words r (zt_sr_f32_to_f16 /
 * zt_sr_f32_to_bf16, element j taking word j), as two packed words. For f16 the common case,
 * magnitudes from the smallest normal to Inf, is zt_sr_f32_to_f16's normal-range branch written
 * out; a block with a NaN or an f16 subnormal takes the function itself. */
template <zt_dtype DT>
__device__ __forceinline__ uint2 zt_pack4_sr(const zt_f32x4 &v, const zt_u32x4 &r) {
    const uint32_t bits[4] = {zt_f32_bits(v.x), zt_f32_bits(v.y), zt_f32_bits(v.z),
                              zt_f32_bits(v.w)};
    const uint32_t random[4] = {r.x, r.y, r.z, r.w};
    uint32_t h[4];
    if (DT == ZT_BF16) {
        for (int l = 0; l < 4; l++)
            h[l] = zt_sr_f32_to_bf16(zt_bits_f32(bits[l]), random[l]);
    } else {
        bool normal = true;
        for (int l = 0; l < 4; l++)
            normal = normal && (bits[l] & 0x7fffffffu) - 0x38800000u <= 0x7f800000u - 0x38800000u;
        if (__builtin_expect(normal, 1)) {
            for (int l = 0; l < 4; l++) {
                const uint32_t magnitude = (bits[l] & 0x7fffffffu) + (random[l] >> 19);
                const uint32_t sign = (bits[l] >> 16) & 0x8000u;
                h[l] =
                    sign | (magnitude >= 0x47800000u ? 0x7c00u : (magnitude - 0x38000000u) >> 13);
            }
        } else {
            for (int l = 0; l < 4; l++)
                h[l] = zt_sr_f32_to_f16(zt_bits_f32(bits[l]), random[l]);
        }
    }
    return uint2{h[0] | (h[1] << 16), h[2] | (h[3] << 16)};
}

__device__ __forceinline__ float4 zt_float4_of(const zt_f32x4 &v) {
    return float4{v.x, v.y, v.z, v.w};
}

__device__ __forceinline__ zt_f32x4 zt_f32x4_of(const float4 &v) {
    return zt_f32x4{v.x, v.y, v.z, v.w};
}

/* Non-finite values among the four of a block as stored in DT (packed words for f16 / bf16). */
template <zt_dtype DT>
__device__ __forceinline__ unsigned zt_block_nonfinite(const zt_f32x4 &v, uint2 packed) {
    if (DT == ZT_F32) {
        const float f[4] = {v.x, v.y, v.z, v.w};
        unsigned found = 0;
        for (int i = 0; i < 4; i++)
            found += (zt_f32_bits(f[i]) & 0x7F800000u) == 0x7F800000u;
        return found;
    }
    const uint32_t exponent = DT == ZT_F16 ? 0x7C00u : 0x7F80u;
    const uint32_t w[2] = {packed.x, packed.y};
    unsigned found = 0;
    for (int i = 0; i < 2; i++)
        found += ((w[i] & exponent) == exponent) + (((w[i] >> 16) & exponent) == exponent);
    return found;
}

/* K whole blocks, each weight block and state row read and written with one vector access;
 * returns the number of non-finite weights stored. */
template <zt_dtype DT, zt_dist DIST, zt_update_rule RULE, bool SR, bool TERMS, int K>
__device__ __forceinline__ unsigned
zt_update_whole(char *const (&theta)[K],  /* (4) each: the blocks' weights */
                float *const (&state)[K], /* (rows, n) each, from the block's first element */
                uint64_t n_elems, const zt_cuda_z_terms &terms, const zt_update_coeffs &coeffs,
                const zt_round_keys &rounding, const uint64_t (&blocks)[K],
                const zt_u32x4 *first_signs = NULL) {
    constexpr int rows = zt_state_rows<RULE>();
    zt_f32x4 w[K], s[K][rows > 0 ? rows : 1];
    for (int k = 0; k < K; k++) {
        w[k] = zt_load_block4<DT>(theta[k], 0);
        for (int r = 0; r < rows; r++)
            s[k][r] = zt_f32x4_of(*reinterpret_cast<const float4 *>(state[k] + r * n_elems));
    }
    zt_f32x4 g[K];
    if (TERMS && first_signs != NULL) {
        /* Rademacher, term 0's signs from the warp's chunk (cuda/rademacher.cuh); K is 1. */
        for (int k = 0; k < K; k++)
            g[k] = zt_rademacher_z_sum(terms, blocks[k], first_signs[k]);
    } else if (TERMS) {
        zt_cuda_z_sum_blocks<DIST, K>(terms, blocks, g);
    } else {
        for (int k = 0; k < K; k++)
            g[k] = zt_f32x4{0.0f, 0.0f, 0.0f, 0.0f};
    }
    unsigned found = 0;
    for (int k = 0; k < K; k++) {
        float m[4] = {0.0f, 0.0f, 0.0f, 0.0f}, v[4] = {0.0f, 0.0f, 0.0f, 0.0f},
              vhat[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (rows >= 1) m[0] = s[k][0].x, m[1] = s[k][0].y, m[2] = s[k][0].z, m[3] = s[k][0].w;
        if (rows == 3) {
            v[0] = s[k][1].x, v[1] = s[k][1].y, v[2] = s[k][1].z, v[3] = s[k][1].w;
            vhat[0] = s[k][2].x, vhat[1] = s[k][2].y, vhat[2] = s[k][2].z, vhat[3] = s[k][2].w;
        }
        const float old[4] = {w[k].x, w[k].y, w[k].z, w[k].w};
        const float gl[4] = {g[k].x, g[k].y, g[k].z, g[k].w};
        float updated[4];
        for (int l = 0; l < 4; l++)
            updated[l] = zt_updated_weight<RULE>(coeffs, old[l], gl[l], m[l], v[l], vhat[l]);
        if (rows >= 1) *reinterpret_cast<float4 *>(state[k]) = float4{m[0], m[1], m[2], m[3]};
        if (rows == 3) {
            *reinterpret_cast<float4 *>(state[k] + n_elems) = float4{v[0], v[1], v[2], v[3]};
            *reinterpret_cast<float4 *>(state[k] + 2 * n_elems) =
                float4{vhat[0], vhat[1], vhat[2], vhat[3]};
        }
        const zt_f32x4 u4 = zt_f32x4{updated[0], updated[1], updated[2], updated[3]};
        uint2 packed = uint2{0u, 0u};
        if (DT == ZT_F32) {
            *reinterpret_cast<float4 *>(theta[k]) = zt_float4_of(u4);
        } else {
            if (SR) {
                packed = zt_pack4_sr<DT>(
                    u4, zt_cuda_rng_block4_rk(rounding, ZT_RNG_STREAM_SR, blocks[k]));
            } else {
                packed = zt_pack4_rne<DT>(u4);
            }
            *reinterpret_cast<uint2 *>(theta[k]) = packed;
        }
        /* Screened on the f32 values, so the count's bit tests run only where a store may have
         * overflowed (or a NaN arrived). */
        constexpr float screen = zt_nonfinite_screen<DT, SR>();
        if (__builtin_expect(!(fabsf(u4.x) < screen) || !(fabsf(u4.y) < screen) ||
                                 !(fabsf(u4.z) < screen) || !(fabsf(u4.w) < screen),
                             0))
            found += zt_block_nonfinite<DT>(u4, packed);
    }
    return found;
}

template <zt_dtype DT, zt_dist DIST, zt_update_rule RULE, bool SR, bool TERMS>
__device__ __forceinline__ unsigned
zt_update_run(void *theta,                    /* (n) */
              uint64_t n_elems, float *state, /* (rows, n) or NULL */
              const zt_cuda_z_terms &terms, const zt_update_coeffs &coeffs,
              const zt_round_keys &rounding, int aligned) {
    const uint64_t thread = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    unsigned found = 0;
    if (!aligned) {
        for (uint64_t b = thread; b * 4 < n_elems; b += stride)
            found += zt_update_lanes<DT, DIST, RULE, SR, TERMS>(theta, n_elems, state, terms,
                                                                coeffs, rounding, b);
        return found;
    }
    const uint64_t n_whole = n_elems / 4;
    if (thread == 0 && n_elems % 4 != 0)
        found += zt_update_lanes<DT, DIST, RULE, SR, TERMS>(theta, n_elems, state, terms, coeffs,
                                                            rounding, n_whole);
    /* Blocks b and b + stride per turn, so that each of the two accesses is contiguous across a
     * warp; the pointers advance with b rather than being recomputed from it. The state pointer
     * is only formed, never used, by rules without state (state is NULL there). */
    constexpr uint64_t theta_bytes = 4 * zt_dtype_bytes<DT>();
    uint64_t b = thread;
    char *theta_b = static_cast<char *>(theta) + b * theta_bytes;
    float *state_b = zt_state_rows<RULE>() > 0 ? state + b * 4 : NULL;
    for (; b + stride < n_whole; b += 2 * stride) {
        const uint64_t blocks[2] = {b, b + stride};
        char *const thetas[2] = {theta_b, theta_b + stride * theta_bytes};
        float *const states[2] = {state_b, zt_state_rows<RULE>() > 0 ? state_b + stride * 4 : NULL};
        found += zt_update_whole<DT, DIST, RULE, SR, TERMS, 2>(thetas, states, n_elems, terms,
                                                               coeffs, rounding, blocks);
        theta_b += 2 * stride * theta_bytes;
        if (zt_state_rows<RULE>() > 0) state_b += 2 * stride * 4;
    }
    if (b < n_whole) {
        const uint64_t blocks[1] = {b};
        char *const thetas[1] = {theta_b};
        float *const states[1] = {state_b};
        found += zt_update_whole<DT, DIST, RULE, SR, TERMS, 1>(thetas, states, n_elems, terms,
                                                               coeffs, rounding, blocks);
    }
    return found;
}

/* Rademacher z with terms, a warp per chunk of 32 Philox blocks (cuda/rademacher.cuh): whole
 * blocks with one vector access each when aligned, the last block when n is not a multiple of 4
 * (and every block when not aligned) element by element. */
template <zt_dtype DT, zt_update_rule RULE, bool SR>
__device__ __forceinline__ unsigned
zt_update_rademacher_run(void *theta,                    /* (n) */
                         uint64_t n_elems, float *state, /* (rows, n) or NULL */
                         const zt_cuda_z_terms &terms, const zt_update_coeffs &coeffs,
                         const zt_round_keys &rounding, int aligned) {
    const uint64_t n_whole = n_elems / 4;
    const zt_round_keys *const keys[1] = {&terms.first_rounds};
    unsigned found = 0;
    zt_rademacher_chunks<1>(
        keys, 0, (n_elems + 3) / 4, 0, aligned ? n_whole : 0,
        [&](uint64_t block, const zt_u32x4(&signs)[1], auto where) {
            if (decltype(where)::value || (aligned && block < n_whole)) {
                char *const thetas[1] = {static_cast<char *>(theta) +
                                         block * 4 * zt_dtype_bytes<DT>()};
                float *const states[1] = {zt_state_rows<RULE>() > 0 ? state + block * 4 : NULL};
                const uint64_t blocks[1] = {block};
                found += zt_update_whole<DT, ZT_DIST_RADEMACHER, RULE, SR, true, 1>(
                    thetas, states, n_elems, terms, coeffs, rounding, blocks, signs);
            } else {
                found += zt_update_lanes_g<DT, RULE, SR>(
                    theta, n_elems, state, zt_rademacher_z_sum(terms, block, signs[0]), coeffs,
                    rounding, block);
            }
        });
    return found;
}

/* One kernel per (dtype, distribution, rule, stochastic rounding). aligned: theta aligned for
 * block access and, where the rule keeps state, the state 16-byte aligned with n a multiple of
 * 4 (so every row is); otherwise every block goes element by element. */
template <zt_dtype DT, zt_dist DIST, zt_update_rule RULE, bool SR>
static __global__ void __launch_bounds__(kBlockThreads)
    zt_update_k(void *theta, uint64_t n_elems, /* (n) */
                float *state,                  /* (1 or 3, n) or NULL */
                zt_cuda_z_terms terms, zt_update_coeffs coeffs, zt_round_keys rounding, int aligned,
                unsigned long long *nonfinite /* (1) or NULL */) {
    const unsigned found =
        terms.n_terms > 0 && DIST == ZT_DIST_RADEMACHER
            ? zt_update_rademacher_run<DT, RULE, SR>(theta, n_elems, state, terms, coeffs, rounding,
                                                     aligned)
        : terms.n_terms > 0 ? zt_update_run<DT, DIST, RULE, SR, true>(theta, n_elems, state, terms,
                                                                      coeffs, rounding, aligned)
                            : zt_update_run<DT, DIST, RULE, SR, false>(theta, n_elems, state, terms,
                                                                       coeffs, rounding, aligned);
    /* Divergence is rare: one atomic per thread that saw it, none otherwise. */
    if (nonfinite && found) atomicAdd(nonfinite, (unsigned long long)found);
}

typedef void (*zt_update_kernel)(void *, uint64_t, float *, zt_cuda_z_terms, zt_update_coeffs,
                                 zt_round_keys, int, unsigned long long *);

/* One kernel family's dispatch from run-time (dtype, distribution, rule, stochastic rounding) to
 * its template instance; a Family names its pointer type and `kernel<DT, DIST, RULE, SR>()`.
 * Stochastic rounding only exists for f16 / bf16 stores. */
template <class Family, zt_dtype DT, zt_dist DIST, bool SR>
static typename Family::kernel_type zt_update_family_pick(zt_update_rule rule) {
    switch (rule) {
    case ZT_UPDATE_SIGN:
        return Family::template kernel<DT, DIST, ZT_UPDATE_SIGN, SR>();
    case ZT_UPDATE_MOMENTUM:
        return Family::template kernel<DT, DIST, ZT_UPDATE_MOMENTUM, SR>();
    case ZT_UPDATE_ADAMM:
        return Family::template kernel<DT, DIST, ZT_UPDATE_ADAMM, SR>();
    default:
        return Family::template kernel<DT, DIST, ZT_UPDATE_SGD, SR>();
    }
}

template <class Family, zt_dtype DT, bool SR>
static typename Family::kernel_type zt_update_family_pick(zt_dist dist, zt_update_rule rule) {
    return dist == ZT_DIST_GAUSSIAN
               ? zt_update_family_pick<Family, DT, ZT_DIST_GAUSSIAN, SR>(rule)
               : zt_update_family_pick<Family, DT, ZT_DIST_RADEMACHER, SR>(rule);
}

template <class Family>
static typename Family::kernel_type zt_update_family_pick(zt_dtype dtype, zt_dist dist,
                                                          zt_update_rule rule, int stochastic) {
    switch (dtype) {
    case ZT_F16:
        return stochastic ? zt_update_family_pick<Family, ZT_F16, true>(dist, rule)
                          : zt_update_family_pick<Family, ZT_F16, false>(dist, rule);
    case ZT_BF16:
        return stochastic ? zt_update_family_pick<Family, ZT_BF16, true>(dist, rule)
                          : zt_update_family_pick<Family, ZT_BF16, false>(dist, rule);
    default:
        return zt_update_family_pick<Family, ZT_F32, false>(dist, rule);
    }
}

struct zt_update_family {
    typedef zt_update_kernel kernel_type;
    template <zt_dtype DT, zt_dist DIST, zt_update_rule RULE, bool SR> static kernel_type kernel() {
        return zt_update_k<DT, DIST, RULE, SR>;
    }
};

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
    int aligned = 0;
    switch (dtype) {
    case ZT_F16:
        aligned = zt_block_aligned<ZT_F16>(theta, 0);
        break;
    case ZT_BF16:
        aligned = zt_block_aligned<ZT_BF16>(theta, 0);
        break;
    default:
        aligned = zt_block_aligned<ZT_F32>(theta, 0);
        break;
    }
    if (rule_state != NULL)
        aligned = aligned && zt_block_aligned<ZT_F32>(rule_state, 0) && n_elems % 4 == 0;
    unsigned long long *count = u->n_nonfinite ? cb->nonfinite : NULL;
    if (count && cb->pending_nonfinite != u->n_nonfinite) {
        /* Another counter's sum is still on the device: deliver it before starting this one. */
        if (cb->pending_nonfinite) ZT_TRY(zt_cuda_wait(cb));
        ZT_CUDA_TRY(cudaMemsetAsync(count, 0, sizeof *count, cb->stream));
        cb->pending_nonfinite = u->n_nonfinite;
    }
    /* Threads for two blocks each in the aligned loop; element-wise, one block each; Rademacher
     * z, a warp per chunk. */
    const uint64_t n_items = u->grad.dist == ZT_DIST_RADEMACHER && u->grad.n_terms > 0
                                 ? zt_rademacher_threads(0, n_blocks)
                             : aligned ? (n_blocks + 1) / 2
                                       : n_blocks;
    const zt_update_kernel update_kernel =
        zt_update_family_pick<zt_update_family>(dtype, u->grad.dist, u->rule, stochastic);
    ZT_LAUNCH(update_kernel, zt_zo_blocks(n_items, ZT_CUDA_ZO_MAX_BLOCKS), kBlockThreads, 0,
              cb->stream, theta, (uint64_t)n_elems, rule_state, terms, coeffs,
              zt_round_keys_of(zt_tensor_key(u->rounding_seed, tensor_id)), aligned, count);
    return ZT_OK; /* the count arrives at the next wait (zt_cuda_wait) */
}

// ---- update_perturb_variants: the deferred update fused into the next step's staging ----

/* Variants fused with the update: up to four of one term each, all of one seed and of the
 * update's distribution (MeZO's +eps z and -eps z, S2P's pairs); other sets go through update
 * then perturb_variants, with the same bits. */
constexpr int kUpdateFusedVariants = 4;

struct zt_fused_variant_set {
    int n;
    zt_dtype dst_dtype;
    float scale[kUpdateFusedVariants];
    void *dst[kUpdateFusedVariants];
};

/* Block b of every variant from theta as stored: theta + scale_k * z, z from `words`
 * (zt_cuda_z_words4<DIST>'s form: Rademacher sign words or Gaussian Philox words). */
template <zt_dtype DT, zt_dist DIST>
__device__ __forceinline__ void zt_update_store_variants(const void *theta, /* (n) */
                                                         uint64_t n_elems,
                                                         const zt_fused_variant_set &v, uint64_t b,
                                                         const zt_u32x4 &words) {
    zt_f32x4 g[kUpdateFusedVariants];
    if (DIST == ZT_DIST_GAUSSIAN) {
        const zt_f32x4 z = zt_box_muller4(words);
        for (int k = 0; k < kUpdateFusedVariants; k++)
            if (k < v.n)
                g[k] = zt_f32x4{__fmul_rn(v.scale[k], z.x), __fmul_rn(v.scale[k], z.y),
                                __fmul_rn(v.scale[k], z.z), __fmul_rn(v.scale[k], z.w)};
    } else {
        for (int k = 0; k < kUpdateFusedVariants; k++)
            if (k < v.n) g[k] = zt_cuda_scaled_z4<ZT_DIST_RADEMACHER>(v.scale[k], words);
    }
    for (unsigned lane = 0; lane < 4 && b * 4 + lane < n_elems; lane++) {
        const size_t j = (size_t)(b * 4 + lane);
        const float x = zt_load_f32(theta, DT, j);
        for (int k = 0; k < kUpdateFusedVariants; k++)
            if (k < v.n)
                zt_store_rne(v.dst[k], v.dst_dtype, j, __fadd_rn(x, zt_f32x4_lane(g[k], lane)));
    }
}

/* Block by block, each thread updates a block's lanes (zt_update_lanes: update's bits), then reads
 * them back as stored and writes every variant from the block's one draw of the variants' z:
 * perturb_variants' bits from the updated tensor, theta read and written once. */
template <zt_dtype DT, zt_dist DIST, zt_update_rule RULE, bool SR>
static __global__ void __launch_bounds__(kBlockThreads)
    zt_update_variants_k(void *theta, uint64_t n_elems, /* (n) */
                         float *state,                  /* (1 or 3, n) or NULL */
                         zt_cuda_z_terms terms, zt_update_coeffs coeffs, zt_round_keys rounding,
                         zt_round_keys variant_rounds, zt_fused_variant_set v,
                         unsigned long long *nonfinite /* (1) or NULL */) {
    const uint64_t n_blocks = (n_elems + 3) / 4;
    unsigned found = 0;
    if (DIST == ZT_DIST_RADEMACHER && terms.n_terms > 0) {
        /* A warp per chunk of 32 Philox blocks (cuda/rademacher.cuh), drawing the update's term 0
         * and the variants' z together. */
        const zt_round_keys *const keys[2] = {&terms.first_rounds, &variant_rounds};
        zt_rademacher_chunks<2>(
            keys, 0, n_blocks, 0, n_blocks, [&](uint64_t b, const zt_u32x4(&signs)[2], auto) {
                found += zt_update_lanes_g<DT, RULE, SR>(theta, n_elems, state,
                                                         zt_rademacher_z_sum(terms, b, signs[0]),
                                                         coeffs, rounding, b);
                zt_update_store_variants<DT, DIST>(theta, n_elems, v, b, signs[1]);
            });
    } else if (DIST == ZT_DIST_RADEMACHER) {
        const zt_round_keys *const keys[1] = {&variant_rounds};
        zt_rademacher_chunks<1>(
            keys, 0, n_blocks, 0, n_blocks, [&](uint64_t b, const zt_u32x4(&signs)[1], auto) {
                found += zt_update_lanes<DT, DIST, RULE, SR, false>(theta, n_elems, state, terms,
                                                                    coeffs, rounding, b);
                zt_update_store_variants<DT, DIST>(theta, n_elems, v, b, signs[0]);
            });
    } else {
        const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
        for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b < n_blocks;
             b += stride) {
            found += terms.n_terms > 0
                         ? zt_update_lanes<DT, DIST, RULE, SR, true>(theta, n_elems, state, terms,
                                                                     coeffs, rounding, b)
                         : zt_update_lanes<DT, DIST, RULE, SR, false>(theta, n_elems, state, terms,
                                                                      coeffs, rounding, b);
            zt_update_store_variants<DT, DIST>(theta, n_elems, v, b,
                                               zt_cuda_z_words4_rk<DIST>(variant_rounds, b));
        }
    }
    if (nonfinite && found) atomicAdd(nonfinite, (unsigned long long)found);
}

typedef void (*zt_update_variants_kernel)(void *, uint64_t, float *, zt_cuda_z_terms,
                                          zt_update_coeffs, zt_round_keys, zt_round_keys,
                                          zt_fused_variant_set, unsigned long long *);

struct zt_update_variants_family {
    typedef zt_update_variants_kernel kernel_type;
    template <zt_dtype DT, zt_dist DIST, zt_update_rule RULE, bool SR> static kernel_type kernel() {
        return zt_update_variants_k<DT, DIST, RULE, SR>;
    }
};

/* Whether the variants fit the fused kernel: one term each, all of the first variant's seed, and
 * of the update's distribution when the update has terms (the kernel draws both as DIST). */
static bool zt_update_variants_fuse(const zt_update *u, const zt_perturbation *p, int n_variants) {
    if (n_variants > kUpdateFusedVariants) return false;
    if (u->grad.n_terms > 0 && u->grad.dist != p[0].dist) return false;
    for (int k = 0; k < n_variants; k++)
        if (p[k].n_terms != 1 || p[k].dist != p[0].dist || p[k].terms[0].seed != p[0].terms[0].seed)
            return false;
    return true;
}

zt_status zt_cuda_update_perturb_variants(zt_backend *be, void *theta, zt_dtype dtype, /* (n) */
                                          uint32_t tensor_id, size_t n_elems,
                                          float *state, /* NULL, (n) or (3,n) by rule */
                                          const zt_update *u, void *const *dst, /* (K) of (n) */
                                          zt_dtype dst_dtype, const zt_perturbation *p, /* (K) */
                                          int n_variants) {
    const char *op = "update_perturb_variants";
    ZT_TRY(zt_check_update_variants_args(op, theta, dtype, n_elems, state, u, dst, dst_dtype, p,
                                         n_variants));
    if (n_elems == 0) return ZT_OK;
    const zt_weight updated = {theta, dtype};
    const int rule_state = u->rule == ZT_UPDATE_MOMENTUM || u->rule == ZT_UPDATE_ADAMM;
    if (!zt_update_variants_fuse(u, p, n_variants)) {
        ZT_TRY(zt_cuda_update(be, theta, dtype, tensor_id, n_elems, state, u));
        return zt_cuda_perturb_variants(be, dst, dst_dtype, updated, tensor_id, 0, n_elems, p,
                                        n_variants);
    }

    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    zt_cuda_z_terms terms;
    ZT_TRY(zt_cuda_z_terms_prepare(cb, op, &u->grad, tensor_id, &terms));
    zt_update_coeffs coeffs;
    coeffs.lr = u->lr;
    coeffs.weight_decay = u->weight_decay;
    coeffs.beta1 = u->beta1;
    coeffs.one_minus_beta1 = 1.0f - u->beta1;
    coeffs.beta2 = u->beta2;
    coeffs.one_minus_beta2 = 1.0f - u->beta2;
    coeffs.eps = u->eps;
    const int stochastic = u->stochastic_rounding && dtype != ZT_F32;
    float *rule_state_ptr = rule_state ? state : NULL;
    zt_fused_variant_set v;
    memset(&v, 0, sizeof v);
    v.n = n_variants;
    v.dst_dtype = dst_dtype;
    for (int k = 0; k < n_variants; k++) {
        v.scale[k] = p[k].terms[0].coeff * p[k].z_scale;
        v.dst[k] = dst[k];
    }
    unsigned long long *count = u->n_nonfinite ? cb->nonfinite : NULL;
    if (count && cb->pending_nonfinite != u->n_nonfinite) {
        if (cb->pending_nonfinite) ZT_TRY(zt_cuda_wait(cb));
        ZT_CUDA_TRY(cudaMemsetAsync(count, 0, sizeof *count, cb->stream));
        cb->pending_nonfinite = u->n_nonfinite;
    }
    const uint64_t n_blocks = ((uint64_t)n_elems + 3) / 4;
    /* the variants' distribution names the kernel when the update has no terms */
    const zt_dist dist = u->grad.n_terms > 0 ? u->grad.dist : p[0].dist;
    const uint64_t n_items =
        dist == ZT_DIST_RADEMACHER ? zt_rademacher_threads(0, n_blocks) : n_blocks;
    const zt_update_variants_kernel kernel =
        zt_update_family_pick<zt_update_variants_family>(dtype, dist, u->rule, stochastic);
    ZT_LAUNCH(kernel, zt_zo_blocks(n_items, ZT_CUDA_ZO_MAX_BLOCKS), kBlockThreads, 0, cb->stream,
              theta, (uint64_t)n_elems, rule_state_ptr, terms, coeffs,
              zt_round_keys_of(zt_tensor_key(u->rounding_seed, tensor_id)),
              zt_round_keys_of(zt_tensor_key(p[0].terms[0].seed, tensor_id)), v, count);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
