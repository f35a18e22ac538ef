/* Gaussian z from two Philox words: zotune's Box–Muller transform (docs/design.md §2.2).
 *
 * The inputs are cuRAND's: the radius comes from u = curand_uniform's value of word x, the angle
 * is 2 pi (y + 1/2) / 2^32 for word y, so first = r sin(angle), second = r cos(angle) with
 * r = sqrt(-2 ln u), in curand_normal4's order. The elementary functions are our own polynomials
 * written as a fixed sequence of IEEE operations (each an fmaf, a product, a sum, a conversion or
 * a square root, every one correctly rounded), so every implementation that performs the same
 * sequence gets the same bits: this scalar code on the host and on the device (nvcc, with the
 * explicitly rounded intrinsics so nothing is contracted), and the CPU's vector paths
 * (kernels/cpu/rng_avx2.c). libm and the device's logf / __sincosf differ from each other and
 * between libraries, which is why neither is used.
 *
 * ln u: u = 2^e m with m in [sqrt(1/2), sqrt(2)); ln u = e ln 2 + log1p(f), f = m - 1 exact;
 *       log1p(f) = f + f^2 q(f), q a degree-7 polynomial fitted for relative error (3e-8 before
 *       rounding); ln 2 in two parts, the first short enough that e * LN2_HI is exact.
 * angle: the top three bits of y pick the octant, the other 29 give the offset in it, measured
 *       from the octant's near end (even octants) or far end (odd octants), so the reduced angle
 *       t lies in (0, pi/4) and no multiple of pi is ever subtracted in floating point. sin t =
 *       t + t^3 s(t^2), cos t = 1 - t^2/2 + t^4 c(t^2), s and c of degree 2 (errors 4e-9 and
 *       1e-10 before rounding); the octant then swaps them and sets the signs.
 *
 * Accuracy, measured over every 32-bit x and y by bench/bench_rng --accuracy: radius within
 * 1.08 ulp of sqrt(-2 ln u), sin and cos within 1.3e-7 of the exact angle's (1.6e-7 with the
 * radius product's rounding); tests/rng/test_philox.c checks both on 2^20 words and every edge
 * (docs/design.md §2.2). Against cuRAND's normals (host generator, host-compiled
 * curand_normal4) the difference comes mostly from cuRAND rounding y to 24 bits before forming
 * its angle. */
#ifndef ZT_COMMON_BOX_MULLER_H
#define ZT_COMMON_BOX_MULLER_H

#include <math.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/philox.h"
#include "common/zt_hd.h"

#if defined(__CUDA_ARCH__)
#define ZT_BM_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#define ZT_BM_MUL(a, b) __fmul_rn((a), (b))
#define ZT_BM_SQRT(a) __fsqrt_rn(a)
#else
/* The host build never contracts (-ffp-contract=off, meson.build), so a plain product is one. */
#define ZT_BM_FMA(a, b, c) fmaf((a), (b), (c))
#define ZT_BM_MUL(a, b) ((a) * (b))
#define ZT_BM_SQRT(a) sqrtf(a)
#endif

/* log1p(f) = f + f^2 q(f) on [sqrt(1/2) - 1, sqrt(2) - 1]: q's coefficients, constant first. */
#define ZT_BM_LOG_Q0 -0x1.fffffap-2f
#define ZT_BM_LOG_Q1 0x1.5556f4p-2f
#define ZT_BM_LOG_Q2 -0x1.00049ap-2f
#define ZT_BM_LOG_Q3 0x1.98d2bcp-3f
#define ZT_BM_LOG_Q4 -0x1.535d50p-3f
#define ZT_BM_LOG_Q5 0x1.318576p-3f
#define ZT_BM_LOG_Q6 -0x1.2503cep-3f
#define ZT_BM_LOG_Q7 0x1.65c398p-4f
/* ln 2 = LN2_HI + LN2_LO; LN2_HI has 16 significant bits, so e * LN2_HI is exact for |e| < 256. */
#define ZT_BM_LN2_HI 0x1.62e4p-1f
#define ZT_BM_LN2_LO 0x1.7f7d1cp-20f
/* sin t = t + t^3 (S0 + S1 w + S2 w^2), cos t = 1 - w/2 + w^2 (C0 + C1 w + C2 w^2), w = t^2,
 * t in (0, pi/4]. */
#define ZT_BM_SIN_S0 -0x1.555546p-3f
#define ZT_BM_SIN_S1 0x1.11073ap-7f
#define ZT_BM_SIN_S2 -0x1.9943dcp-13f
#define ZT_BM_COS_C0 0x1.55554ap-5f
#define ZT_BM_COS_C1 -0x1.6c0c34p-10f
#define ZT_BM_COS_C2 0x1.99eb94p-16f
/* The angle of one step of y, 2 pi / 2^32 rounded to f32 (cuRAND's constant). */
#define ZT_BM_ANGLE_STEP ZT_RNG_2POW32_INV_2PI
/* m above this (sqrt(2) rounded down) is halved, so m lies in [sqrt(1/2), sqrt(2)). */
#define ZT_BM_SQRT2_BITS 0x3FB504F3u
#define ZT_BM_OCTANT_MASK 0x1FFFFFFFu

/* u = cuRAND's uniform of x, in (0, 1]: (float)x * 2^-32 + 2^-33. The product is exact, so this
 * FMA gives curand_uniform's bits whether or not cuRAND's expression was contracted. */
ZT_HD float zt_box_muller_u(uint32_t x) {
    return ZT_BM_FMA((float)x, ZT_RNG_2POW32_INV, ZT_RNG_2POW32_INV * 0.5f);
}

/* ln u for u in (0, 1] (a normal float: u >= 2^-33). */
ZT_HD float zt_bm_log_unit(float u) {
    uint32_t bits = zt_f32_bits(u);
    int32_t exponent = (int32_t)(bits >> 23) - 127;
    uint32_t mantissa_bits = (bits & 0x007FFFFFu) | 0x3F800000u; /* m in [1, 2) */
    if (mantissa_bits > ZT_BM_SQRT2_BITS) {
        mantissa_bits -= 0x00800000u; /* m / 2 */
        exponent += 1;
    }
    const float f = zt_bits_f32(mantissa_bits) - 1.0f; /* exact: m is within a factor 2 of 1 */
    float q = ZT_BM_LOG_Q7;
    q = ZT_BM_FMA(q, f, ZT_BM_LOG_Q6);
    q = ZT_BM_FMA(q, f, ZT_BM_LOG_Q5);
    q = ZT_BM_FMA(q, f, ZT_BM_LOG_Q4);
    q = ZT_BM_FMA(q, f, ZT_BM_LOG_Q3);
    q = ZT_BM_FMA(q, f, ZT_BM_LOG_Q2);
    q = ZT_BM_FMA(q, f, ZT_BM_LOG_Q1);
    q = ZT_BM_FMA(q, f, ZT_BM_LOG_Q0);
    const float f_squared = ZT_BM_MUL(f, f);
    float log_u = ZT_BM_FMA(f_squared, q, f);
    const float exponent_f = (float)exponent;
    log_u = ZT_BM_FMA(exponent_f, ZT_BM_LN2_LO, log_u);
    return ZT_BM_FMA(exponent_f, ZT_BM_LN2_HI, log_u);
}

/* sqrt(-2 ln u) of word x. */
ZT_HD float zt_bm_radius(uint32_t x) {
    return ZT_BM_SQRT(ZT_BM_MUL(-2.0f, zt_bm_log_unit(zt_box_muller_u(x))));
}

/* (sin, cos) of 2 pi (y + 1/2) / 2^32. */
ZT_HD zt_f32x2 zt_bm_sincos_turn(uint32_t y) {
    const uint32_t octant = y >> 29;
    uint32_t offset = y & ZT_BM_OCTANT_MASK;
    if (octant & 1u) offset = ZT_BM_OCTANT_MASK - offset; /* from the far end */
    const float t = ZT_BM_FMA((float)(int32_t)offset, ZT_BM_ANGLE_STEP, ZT_BM_ANGLE_STEP * 0.5f);
    const float w = ZT_BM_MUL(t, t);
    float s = ZT_BM_FMA(ZT_BM_SIN_S2, w, ZT_BM_SIN_S1);
    s = ZT_BM_FMA(s, w, ZT_BM_SIN_S0);
    const float sin_t = ZT_BM_FMA(ZT_BM_MUL(t, w), s, t);
    float c = ZT_BM_FMA(ZT_BM_COS_C2, w, ZT_BM_COS_C1);
    c = ZT_BM_FMA(c, w, ZT_BM_COS_C0);
    const float cos_t = ZT_BM_FMA(ZT_BM_MUL(w, w), c, ZT_BM_FMA(-0.5f, w, 1.0f));
    /* Octants 1, 2, 5, 6 are nearer pi/2 or 3 pi/2: sine and cosine trade places. */
    const int swap = ((octant + 1u) & 2u) != 0;
    uint32_t sin_bits = zt_f32_bits(swap ? cos_t : sin_t);
    uint32_t cos_bits = zt_f32_bits(swap ? sin_t : cos_t);
    sin_bits ^= (octant & 4u) << 29;        /* octants 4-7: below the axis */
    cos_bits ^= ((octant + 2u) & 4u) << 29; /* octants 2-5: left of it */
    zt_f32x2 out;
    out.x = zt_bits_f32(sin_bits);
    out.y = zt_bits_f32(cos_bits);
    return out;
}

/* Two normals from words (x, y): (r sin, r cos). */
ZT_HD zt_f32x2 zt_box_muller(uint32_t x, uint32_t y) {
    const float radius = zt_bm_radius(x);
    const zt_f32x2 sc = zt_bm_sincos_turn(y);
    zt_f32x2 out;
    out.x = ZT_BM_MUL(radius, sc.x);
    out.y = ZT_BM_MUL(radius, sc.y);
    return out;
}

/* A block's four normals, in curand_normal4's order: pairs (x, y) and (z, w). */
ZT_HD zt_f32x4 zt_box_muller4(zt_u32x4 bits) {
    const zt_f32x2 first = zt_box_muller(bits.x, bits.y);
    const zt_f32x2 second = zt_box_muller(bits.z, bits.w);
    zt_f32x4 out;
    out.x = first.x;
    out.y = first.y;
    out.z = second.x;
    out.w = second.y;
    return out;
}

#endif
