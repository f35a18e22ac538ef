/* How far zotune's Gaussian z (kernels/common/box_muller.h) may lie from cuRAND's normal of the
 * same two Philox words, for the tests that compare them (tests/rng/test_curand_host.c,
 * test_curand_kernel.cpp, the curand_normal4 probe of tests/cudaemu/zo_parity.h). The words and
 * u are cuRAND's bit for bit; the transforms differ, so each side is bounded against the exact
 * value and the bounds are added.
 *
 * Pair (x, y): exact radius R = sqrt(-2 ln u), u = curand_uniform's value of x; exact angle
 * theta = 2 pi (y + 1/2) / 2^32. Ours: z_o = fl(r_o s_o); cuRAND: z_c = fl(r_c s_c), s the sine
 * (first) or cosine (second) each side computes.
 *   angle  cuRAND's v = fl(fl((float)y) C + C/2), C = 2 pi 2^-32 rounded to f32, one rounding
 *          when nvcc contracts it (device code), two when not (host builds, -ffp-contract=off):
 *            |v - theta| <= 128 C                      rounding y to 24 bits (|fl(y) - y| <= 128)
 *                         + |C - 2 pi 2^-32| (y + 1/2)  the constant's own error (3e-8 relative)
 *                         + ulp(v) / 2 per rounding     (ulp(v) <= 2^-21 for v < 2 pi)   = A(y)
 *          checked over a sample of words in tests/rng/test_philox.c.
 *   sin    |s_o - sin theta| <= ZT_BM_SINCOS_ABS (measured 1.23e-7 over every y; test_philox
 *          asserts it over its sample); |s_c - sin v| <= ZT_CURAND_*_SINCOS_ABS (host libm sinf /
 *          cosf: 1 ulp of a value <= 1; device __sincosf: the allowance
 * ZT_CURAND_DEVICE_SINCOS_ABS, 2^-19, 5.3 times the CUDA Math API's 2^-21.41 for [-pi, pi], since v
 * reaches 2 pi where it documents only "larger"); |sin theta - sin v| <= |theta - v|. So |s_o -
 * s_c| <= ZT_BM_SINCOS_ABS + A(y) + E_c. radius |r_o - R| <= 1.5 ulp(R) (measured 1.06; test_philox
 * asserts 1.5) <= 1.5 2^-23 R; cuRAND's sqrtf(-2 logf(u)): logf within 1 ulp (glibc, and the
 * device's documented maximum) moves R by half that relatively, the correctly rounded sqrtf by
 * 2^-24 more, so |r_c - R| <= 2^-23 R; together |r_o - r_c| <= 2.5 2^-23 R. total  |z_o - z_c| <=
 * |r_o - r_c| |s_o| + r_c |s_o - s_c| + ulp(z_o) / 2 + ulp(z_c) / 2
 *                      <= 2.5 2^-23 |z| + r (ZT_BM_SINCOS_ABS + A(y) + E_c) + ulp(|z|),
 *          |z| = max(|z_o|, |z_c|) and r = r_o, each times (1 + 2^-20) for the second-order
 *          terms. An indexing or word bug moves z by O(1), 10^5 times this. */
#ifndef ZT_TEST_CURAND_NORMAL_BOUND_H
#define ZT_TEST_CURAND_NORMAL_BOUND_H

#include <math.h>
#include <stdint.h>

#include "common/box_muller.h"
#include "common/philox.h"

#define ZT_BM_RADIUS_ULPS 1.5   /* ours against the exact radius, in ulps of it */
#define ZT_BM_SINCOS_ABS 1.3e-7 /* ours against sin / cos of the exact angle */
#define ZT_CURAND_RADIUS_REL 0x1p-23
#define ZT_CURAND_HOST_SINCOS_ABS 0x1p-24 /* libm sinf / cosf: 1 ulp of a value <= 1 */
#define ZT_CURAND_DEVICE_SINCOS_ABS 0x1p-19
#define ZT_TWO_PI 0x1.921fb54442d18p+2 /* 2 pi rounded to double */

/* Where the cuRAND code under comparison was compiled: its angle's roundings and its sin / cos. */
typedef enum zt_curand_build {
    ZT_CURAND_HOST_BUILD = 0,   /* host libcurand or host-compiled curand_kernel.h: libm */
    ZT_CURAND_DEVICE_BUILD = 1, /* nvcc device code: FMA angle, __sincosf */
} zt_curand_build;

/* theta = 2 pi (y + 1/2) / 2^32, to double precision. */
static inline double zt_exact_angle(uint32_t y) {
    return ((double)y + 0.5) * (ZT_TWO_PI * 0x1p-32);
}

/* Spacing of f32 values at |x| (the subnormal spacing below the normal range). */
static inline double zt_f32_ulp(double x) {
    x = fabs(x);
    if (!(x >= 0x1p-126)) return 0x1p-149;
    int exponent;
    (void)frexp(x, &exponent); /* x = m 2^exponent, m in [0.5, 1) */
    return ldexp(1.0, exponent - 24);
}

/* cuRAND's angle as the host builds compute it: a rounded product, then a rounded sum. */
static inline float zt_curand_angle_uncontracted(uint32_t y) {
    volatile float product = (float)y * ZT_RNG_2POW32_INV_2PI;
    return product + ZT_RNG_2POW32_INV_2PI * 0.5f;
}

/* A(y): the bound on |cuRAND's angle - theta| above, for a build. */
/* cuRAND's host transform as curand_normal.h's host branch reads (libcurand's host generator and
 * host-compiled curand_normal4 alike): libm logf, sinf, cosf, and the angle y * C + C/2 as a
 * rounded product then a rounded sum (no FMA). */
static inline zt_f32x2 zt_curand_host_box_muller(uint32_t x, uint32_t y) {
    const float radius = sqrtf(-2.0f * logf(zt_uniform_from_u32(x)));
    const float v = zt_curand_angle_uncontracted(y);
    zt_f32x2 out;
    out.x = sinf(v) * radius;
    out.y = cosf(v) * radius;
    return out;
}

static inline double zt_curand_angle_bound(uint32_t y, zt_curand_build build) {
    const double step = (double)ZT_RNG_2POW32_INV_2PI;
    const double v = build == ZT_CURAND_DEVICE_BUILD ? (double)zt_curand_angle(y)
                                                     : (double)zt_curand_angle_uncontracted(y);
    const double roundings = build == ZT_CURAND_DEVICE_BUILD ? 1.0 : 2.0;
    return 128.0 * step + fabs(step - ZT_TWO_PI * 0x1p-32) * ((double)y + 0.5) +
           roundings * 0.5 * zt_f32_ulp(v);
}

/* The bound above on |ours - cuRAND| for one output of the pair (x, y). */
static inline double zt_curand_normal_bound(uint32_t x, uint32_t y, float ours, float theirs,
                                            zt_curand_build build) {
    const double sincos_c =
        build == ZT_CURAND_DEVICE_BUILD ? ZT_CURAND_DEVICE_SINCOS_ABS : ZT_CURAND_HOST_SINCOS_ABS;
    const double z = fmax(fabs((double)ours), fabs((double)theirs));
    const double radius = zt_bm_radius(x);
    const double radius_rel = ZT_BM_RADIUS_ULPS * 0x1p-23 + ZT_CURAND_RADIUS_REL;
    return (radius_rel * z +
            radius * (ZT_BM_SINCOS_ABS + zt_curand_angle_bound(y, build) + sincos_c)) *
               (1.0 + 0x1p-20) +
           zt_f32_ulp(z);
}

/* The same bound's largest value over all words: the largest radius sqrt(66 ln 2) (u = 2^-33),
 * the largest angle bound (y = 2^32 - 1), |z| up to the radius. */
static inline double zt_curand_normal_bound_max(zt_curand_build build) {
    const double sincos_c =
        build == ZT_CURAND_DEVICE_BUILD ? ZT_CURAND_DEVICE_SINCOS_ABS : ZT_CURAND_HOST_SINCOS_ABS;
    const double radius = sqrt(66.0 * log(2.0)) * (1.0 + 0x1p-20);
    const double radius_rel = ZT_BM_RADIUS_ULPS * 0x1p-23 + ZT_CURAND_RADIUS_REL;
    return (radius_rel * radius +
            radius * (ZT_BM_SINCOS_ABS + zt_curand_angle_bound(0xFFFFFFFFu, build) + sincos_c)) *
               (1.0 + 0x1p-20) +
           zt_f32_ulp(radius);
}

#endif
