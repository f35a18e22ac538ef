/* Philox4x32-10 and the cuRAND transforms built on it, bit for bit as the cuRAND device API
 * computes them (docs/spec.md §5), as ZT_HD functions: the same source serves the
 * C host build (gcc, C11) and CUDA (nvcc, C++17). The CPU backend and the CUDA kernels therefore
 * draw identical 32-bit words and uniforms; the normals built from them are zotune's own
 * (common/box_muller.h). Tests: tests/rng (cuRAND's host generator and host-compiled
 * curand_kernel.h). */
#ifndef ZT_COMMON_PHILOX_H
#define ZT_COMMON_PHILOX_H

#include <math.h>
#include <stdint.h>

#include "common/zt_hd.h"

/* Four 32-bit words: a Philox counter or one block of output. Plain structs (not uint4) keep the
 * header valid C. */
typedef struct {
    uint32_t x, y, z, w;
} zt_u32x4;

typedef struct {
    uint32_t x, y;
} zt_u32x2;

typedef struct {
    float x, y;
} zt_f32x2;

typedef struct {
    float x, y, z, w;
} zt_f32x4;

/* Round multipliers and the Weyl constants that bump the key between rounds. */
#define ZT_PHILOX_M0 0xD2511F53u
#define ZT_PHILOX_M1 0xCD9E8D57u
#define ZT_PHILOX_W0 0x9E3779B9u
#define ZT_PHILOX_W1 0xBB67AE85u

/* 2^-32 and 2^-32 * 2 pi exactly as cuRAND's float constants evaluate: 2.3283064e-10f is 2^-32,
 * and 2.3283064e-10f * 6.2831855f rounds to 0x1.921fb6p-30f (tests/rng checks both). */
#define ZT_RNG_2POW32_INV 0x1p-32f
#define ZT_RNG_2POW32_INV_2PI 0x1.921fb6p-30f

/* One round: two 32x32->64 multiplies, the halves crossed with the other two words and the key. */
ZT_HD zt_u32x4 zt_philox_round(zt_u32x4 ctr, zt_u32x2 key) {
    uint64_t product0 = (uint64_t)ZT_PHILOX_M0 * ctr.x;
    uint64_t product1 = (uint64_t)ZT_PHILOX_M1 * ctr.z;
    zt_u32x4 out;
    out.x = (uint32_t)(product1 >> 32) ^ ctr.y ^ key.x;
    out.y = (uint32_t)product1;
    out.z = (uint32_t)(product0 >> 32) ^ ctr.w ^ key.y;
    out.w = (uint32_t)product0;
    return out;
}

/* The block function: 10 rounds, the key bumped after each of the first nine. */
ZT_HD zt_u32x4 zt_philox4x32_10(zt_u32x4 ctr, zt_u32x2 key) {
    for (int round_index = 0; round_index < 9; round_index++) {
        ctr = zt_philox_round(ctr, key);
        key.x += ZT_PHILOX_W0;
        key.y += ZT_PHILOX_W1;
    }
    return zt_philox_round(ctr, key);
}

/* The 64-bit seed as curand_init splits it into the key. */
ZT_HD zt_u32x2 zt_philox_key(uint64_t seed) {
    zt_u32x2 key;
    key.x = (uint32_t)seed;
    key.y = (uint32_t)(seed >> 32);
    return key;
}

/* The counter curand_init(seed, subsequence, offset) starts from, for offset a multiple of 4:
 * the offset (in blocks) fills the low two words, the subsequence the high two. */
ZT_HD zt_u32x4 zt_philox_counter(uint64_t subsequence, uint64_t offset_block) {
    zt_u32x4 ctr;
    ctr.x = (uint32_t)offset_block;
    ctr.y = (uint32_t)(offset_block >> 32);
    ctr.z = (uint32_t)subsequence;
    ctr.w = (uint32_t)(subsequence >> 32);
    return ctr;
}

ZT_HD uint32_t zt_u32x4_lane(zt_u32x4 v, unsigned lane) {
    lane &= 3u;
    return lane == 0 ? v.x : lane == 1 ? v.y : lane == 2 ? v.z : v.w;
}

ZT_HD float zt_f32x4_lane(zt_f32x4 v, unsigned lane) {
    lane &= 3u;
    return lane == 0 ? v.x : lane == 1 ? v.y : lane == 2 ? v.z : v.w;
}

/* curand_uniform: (0, 1], 0 -> 2^-33, anything >= 0xFFFFFF80 -> 1.0f. The scale is a power of
 * two, so the product is exact and an FMA-contracted device build gives the same bits. */
ZT_HD float zt_uniform_from_u32(uint32_t x) {
    return (float)x * ZT_RNG_2POW32_INV + ZT_RNG_2POW32_INV * 0.5f;
}

/* cuRAND's Box-Muller angle v in (0, 2 pi] for word y, for the oracles that rebuild cuRAND's
 * normals (tests): nvcc contracts cuRAND's `y * C + C/2` into one FMA by default and the product
 * is not exact, so this uses fmaf to match the device build. zotune's own transform
 * (common/box_muller.h) forms its angle from y's bits instead. */
ZT_HD float zt_curand_angle(uint32_t y) {
    return fmaf((float)y, ZT_RNG_2POW32_INV_2PI, ZT_RNG_2POW32_INV_2PI * 0.5f);
}

#endif
