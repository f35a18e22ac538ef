/* Bit-exact f16 / bf16 <-> f32 conversions, identical on host and device. Round-to-nearest-even
 * on the way down; stochastic rounding lives with the update, where the RNG is. */
#ifndef ZT_COMMON_DTYPE_H
#define ZT_COMMON_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/zt_hd.h"
#include "zotune.h"

ZT_HD uint32_t zt_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

ZT_HD float zt_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

ZT_HD float zt_bf16_to_f32(uint16_t h) {
    return zt_bits_f32((uint32_t)h << 16);
}

ZT_HD uint16_t zt_f32_to_bf16(float f) {
    uint32_t u = zt_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

ZT_HD float zt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1fu) return zt_bits_f32(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {
        if (mantissa == 0) return zt_bits_f32(sign);
        /* subnormal: value = mantissa * 2^-24, exact in f32 */
        float magnitude = (float)mantissa * 5.9604644775390625e-08f;
        return sign ? -magnitude : magnitude;
    }
    return zt_bits_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

ZT_HD uint16_t zt_f32_to_f16(float f) {
    uint32_t u = zt_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs_bits = u & 0x7fffffffu;
    if (abs_bits > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
    if (abs_bits >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to Inf */
    if (abs_bits < 0x38800000u) {                                   /* f16 subnormal or zero */
        /* Adding 0.5 (2^-1) aligns the f16 subnormal grid (2^-24) to the f32 ulp of 0.5 (2^-24),
         * so the f32 add performs round-to-nearest-even for us. */
        float magnitude = zt_bits_f32(abs_bits) + 0.5f;
        return (uint16_t)(sign | (uint16_t)(zt_f32_bits(magnitude) - 0x3f000000u));
    }
    uint32_t mantissa_odd = (abs_bits >> 13) & 1u;
    abs_bits += 0xc8000fffu + mantissa_odd; /* rebias exponent (-112 << 23) and round */
    return (uint16_t)(sign | (abs_bits >> 13));
}

/* ---- element access in a storage dtype, for every backend and test ---- */

/* Element i of a buffer of `dtype`, as f32 (exact: f16 and bf16 widen without rounding). */
ZT_HD float zt_load_f32(const void *data, zt_dtype dtype, size_t i) {
    if (dtype == ZT_F32) return ((const float *)data)[i];
    const uint16_t bits = ((const uint16_t *)data)[i];
    return dtype == ZT_F16 ? zt_f16_to_f32(bits) : zt_bf16_to_f32(bits);
}

/* Whether element i of a buffer of `dtype` is NaN or infinite, from its exponent bits alone (no
 * widening): the update's divergence count reads every weight it stores. */
ZT_HD int zt_stored_nonfinite(const void *data, zt_dtype dtype, size_t i) {
    if (dtype == ZT_F32) return (zt_f32_bits(((const float *)data)[i]) & 0x7F800000u) == 0x7F800000u;
    const uint16_t bits = ((const uint16_t *)data)[i];
    return dtype == ZT_F16 ? (bits & 0x7C00u) == 0x7C00u : (bits & 0x7F80u) == 0x7F80u;
}

/* Stores value into element i of a buffer of `dtype`, rounding to nearest even for f16 / bf16
 * (NaN stays NaN, overflow goes to infinity). */
ZT_HD void zt_store_rne(void *data, zt_dtype dtype, size_t i, float value) {
    if (dtype == ZT_F32)
        ((float *)data)[i] = value;
    else if (dtype == ZT_F16)
        ((uint16_t *)data)[i] = zt_f32_to_f16(value);
    else
        ((uint16_t *)data)[i] = zt_f32_to_bf16(value);
}

/* value as a store into `dtype` and a load back give it: rounded to nearest even, widened. */
ZT_HD float zt_round_through(zt_dtype dtype, float value) {
    if (dtype == ZT_F16) return zt_f16_to_f32(zt_f32_to_f16(value));
    if (dtype == ZT_BF16) return zt_bf16_to_f32(zt_f32_to_bf16(value));
    return value;
}

#endif
