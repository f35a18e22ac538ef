/* Where the perturbation z and the stochastic-rounding bits come from (docs/design.md §2).
 *
 * Addressing. z for element j (row-major index in the full tensor) of tensor T (its id in the
 * canonical tensor order) at step seed s is a pure function of (s, T, j, distribution):
 *
 *     key   = zt_tensor_key(s, T)                      64 bits, one per (step, tensor)
 *     block = j / 4, lane = j % 4
 *     q     = Philox4x32-10(counter = {lo32(block >> 16), hi32(block >> 16), block & 0xFFFF, 0},
 *                           key     = {lo32(key), hi32(key)})
 *     bits  = q.lane                                   (x, y, z, w for lane 0, 1, 2, 3)
 *     gauss = lanes 0, 1: Box-Muller(q.x, q.y).{first = s*sin, second = s*cos}
 *             lanes 2, 3: Box-Muller(q.z, q.w).{first, second}
 *     rademacher = bit j % 32 (bit 0 the least significant) of z word j / 32, +1 if the bit is
 *                  0, -1 if it is 1, where z word w is lane w % 4 of q at block w / 4: element j
 *                  reads lane (j / 32) % 4 of the Philox output at block j / 128 (the counter
 *                  above with block = j / 128)
 *     sphere     = gauss * (radius / ||gauss||_2), the norm taken by a caller's regeneration pass
 *                  over every perturbed element (zt_z_gauss_sumsq)
 *
 * Why this counter: cuRAND's host generator (CURAND_RNG_PSEUDO_PHILOX4_32_10, default ordering,
 * seed = key, offset 0) runs 65536 virtual threads; its element m is lane m % 4 of
 * curand_init(key, subsequence = (m / 4) mod 2^16, offset = 4 * floor(m / 2^18)), measured in
 * tests/rng/test_curand_host.c. The counter above is exactly that address, so the host
 * generator reproduces a whole tensor's z at any length: a complete oracle on a machine without
 * a GPU (docs/design.md §2); Rademacher element j is bit j % 32 of that generator's word j / 32,
 * so one Philox call gives 128 Rademacher elements (4 Gaussian ones). In device-API terms block b
 * is curand_init(key, b & 0xFFFF, 4 * (b >> 16)) followed by curand4 (bits) or curand_normal4
 * (gauss); host-compiled
 * curand_kernel.h checks this at any index (tests/rng/test_curand_kernel.cpp). The normals are
 * zotune's own transform of those words (common/box_muller.h), not cuRAND's: the oracles bound
 * the difference per element (tests/rng/curand_normal_bound.h; 2.4e-6 at most, measured).
 *
 * Stochastic-rounding bits for element j use the same key and block with counter word 3 set:
 *
 *     r = lane j % 4 of Philox4x32-10({lo32(block >> 16), hi32(block >> 16), block & 0xFFFF, 1},
 *                                     key)
 *       = curand_init(key, subsequence = 2^32 + (j / 4 mod 2^16), offset = 4 * (j / 2^18))
 *
 * The z counters all have word 3 = 0, so the two streams never share a counter: SR bits are
 * independent of z and, like z, of thread layout. Other streams of the same (s, T) may take
 * word 3 = 2, 3, ... */
#ifndef ZT_COMMON_PERTURB_RNG_H
#define ZT_COMMON_PERTURB_RNG_H

#include <math.h>
#include <stdint.h>

#include "common/box_muller.h"
#include "common/dtype.h"
#include "common/philox.h"
#include "common/zt_hd.h"

/* Counter word 3 for each stream of a (step, tensor) key. */
#define ZT_RNG_STREAM_Z 0u
#define ZT_RNG_STREAM_SR 1u

/* splitmix64's finalizer: a bijection of u64 that spreads every input bit over the output. */
ZT_HD uint64_t zt_mix64(uint64_t v) {
    v ^= v >> 30;
    v *= 0xBF58476D1CE4E5B9ull;
    v ^= v >> 27;
    v *= 0x94D049BB133111EBull;
    v ^= v >> 31;
    return v;
}

/* The per-(step, tensor) Philox key. For a fixed seed, T -> T*golden is injective (odd
 * multiplier), adding mix(s) and mixing again are bijections, so every tensor id gets its own
 * key; mixing s first keeps nearby seeds (s, s+1) from giving related keys. */
ZT_HD uint64_t zt_tensor_key(uint64_t step_seed, uint32_t tensor_id) {
    return zt_mix64(zt_mix64(step_seed) + (uint64_t)tensor_id * 0x9E3779B97F4A7C15ull);
}

/* One block of raw words from a stream of a tensor key. */
ZT_HD zt_u32x4 zt_rng_stream_block4(uint64_t tensor_key, uint32_t stream, uint64_t block) {
    zt_u32x4 ctr;
    uint64_t step = block >> 16; /* offset / 4 within the virtual thread's subsequence */
    ctr.x = (uint32_t)step;
    ctr.y = (uint32_t)(step >> 32);
    ctr.z = (uint32_t)(block & 0xFFFFu);
    ctr.w = stream;
    return zt_philox4x32_10(ctr, zt_philox_key(tensor_key));
}

/* --- z, a whole block at a time (elements 4*block .. 4*block+3): for vectorized loops, which
 * hoist the key. */

ZT_HD zt_u32x4 zt_z_bits_block4(uint64_t tensor_key, uint64_t block) {
    return zt_rng_stream_block4(tensor_key, ZT_RNG_STREAM_Z, block);
}

ZT_HD zt_f32x4 zt_z_gauss_block4(uint64_t tensor_key, uint64_t block) {
    return zt_box_muller4(zt_z_bits_block4(tensor_key, block));
}

/* Rademacher z packs 32 elements into each z word, 128 into each Philox block: the four elements
 * of a 4-element block `block` (elements 4*block .. 4*block+3, the unit the Gaussian forms and the
 * kernels' loops use) are bits 4*(block % 8) .. +3 of lane (block / 8) % 4 of Philox block
 * block / 32. */
#define ZT_RADEMACHER_PER_WORD 32u
#define ZT_RADEMACHER_PER_PHILOX 128u
#define ZT_RADEMACHER_BLOCK4_PER_PHILOX 32u

/* The Philox block that holds 4-element block `block`'s Rademacher bits. */
ZT_HD uint64_t zt_rademacher_philox_of(uint64_t block) {
    return block / ZT_RADEMACHER_BLOCK4_PER_PHILOX;
}

ZT_HD float zt_rademacher_from_u32(uint32_t bits) {
    return (bits >> 31) ? -1.0f : 1.0f;
}

/* The four Rademacher signs of 4-element block `block`, from q = the z words of Philox block
 * zt_rademacher_philox_of(block): lane l's top bit is element 4*block + l's bit, the other bits 0.
 * A sign word, not a float, so a kernel can XOR it into a scale (kernels/cuda/z_terms.cuh). */
ZT_HD zt_u32x4 zt_rademacher_sign_words4(zt_u32x4 q, uint64_t block) {
    const uint32_t word = zt_u32x4_lane(q, (unsigned)((block / 8) % 4));
    const uint32_t nibble = word >> (4u * (unsigned)(block % 8));
    zt_u32x4 signs;
    signs.x = (nibble & 1u) << 31;
    signs.y = ((nibble >> 1) & 1u) << 31;
    signs.z = ((nibble >> 2) & 1u) << 31;
    signs.w = ((nibble >> 3) & 1u) << 31;
    return signs;
}

/* The four Rademacher z of 4-element block `block` from its Philox block's words q. */
ZT_HD zt_f32x4 zt_rademacher4_of(zt_u32x4 q, uint64_t block) {
    const zt_u32x4 signs = zt_rademacher_sign_words4(q, block);
    zt_f32x4 out;
    out.x = zt_rademacher_from_u32(signs.x);
    out.y = zt_rademacher_from_u32(signs.y);
    out.z = zt_rademacher_from_u32(signs.z);
    out.w = zt_rademacher_from_u32(signs.w);
    return out;
}

/* Elements 4*block .. 4*block+3. A whole Philox call for four elements: loops over many blocks
 * should draw each Philox block once (kernels/cpu/rng_blocks.h). */
ZT_HD zt_f32x4 zt_z_rademacher_block4(uint64_t tensor_key, uint64_t block) {
    return zt_rademacher4_of(zt_z_bits_block4(tensor_key, zt_rademacher_philox_of(block)), block);
}

/* --- z, one element. A Gaussian element costs a whole Philox block and two Box-Muller pairs'
 * worth of work for one value: per-element loops should prefer the block forms. */

ZT_HD float zt_z_gauss_at(uint64_t tensor_key, uint64_t j) {
    zt_u32x4 bits = zt_z_bits_block4(tensor_key, j / 4);
    unsigned lane = (unsigned)(j % 4);
    zt_f32x2 pair = lane < 2 ? zt_box_muller(bits.x, bits.y) : zt_box_muller(bits.z, bits.w);
    return (lane & 1u) ? pair.y : pair.x;
}

ZT_HD float zt_z_rademacher_at(uint64_t tensor_key, uint64_t j) {
    const zt_u32x4 q = zt_z_bits_block4(tensor_key, j / ZT_RADEMACHER_PER_PHILOX);
    const uint32_t word = zt_u32x4_lane(q, (unsigned)((j / ZT_RADEMACHER_PER_WORD) % 4));
    return ((word >> (j % ZT_RADEMACHER_PER_WORD)) & 1u) ? -1.0f : 1.0f;
}

ZT_HD float zt_z_gauss(uint64_t step_seed, uint32_t tensor_id, uint64_t j) {
    return zt_z_gauss_at(zt_tensor_key(step_seed, tensor_id), j);
}

ZT_HD float zt_z_rademacher(uint64_t step_seed, uint32_t tensor_id, uint64_t j) {
    return zt_z_rademacher_at(zt_tensor_key(step_seed, tensor_id), j);
}

/* --- uniform on the sphere: a caller sums zt_z_gauss_sumsq over every perturbed tensor (in
 * any split into ranges), then scales each Gaussian element by zt_sphere_scale. */

/* sum of z_j^2 for j in [begin, end), accumulated in double in ascending j, so a given split into
 * ranges always gives the same bits. */
ZT_HD double zt_z_gauss_sumsq(uint64_t tensor_key, uint64_t begin, uint64_t end) {
    double sum = 0.0;
    uint64_t j = begin;
    while (j < end) {
        uint64_t block = j / 4;
        zt_f32x4 z = zt_z_gauss_block4(tensor_key, block);
        uint64_t block_end = block * 4 + 4 < end ? block * 4 + 4 : end;
        for (; j < block_end; j++) {
            double value = (double)zt_f32x4_lane(z, (unsigned)(j % 4));
            sum += value * value;
        }
    }
    return sum;
}

/* radius / ||z||_2; 0 for an empty or all-zero z, so nothing is perturbed rather than NaN. */
ZT_HD float zt_sphere_scale(double gauss_sumsq, float radius) {
    return gauss_sumsq > 0.0 ? (float)((double)radius / sqrt(gauss_sumsq)) : 0.0f;
}

/* --- stochastic rounding bits (stream ZT_RNG_STREAM_SR, see the top of this file). */

ZT_HD zt_u32x4 zt_sr_bits_block4(uint64_t tensor_key, uint64_t block) {
    return zt_rng_stream_block4(tensor_key, ZT_RNG_STREAM_SR, block);
}

ZT_HD uint32_t zt_sr_bits_at(uint64_t tensor_key, uint64_t j) {
    return zt_u32x4_lane(zt_sr_bits_block4(tensor_key, j / 4), (unsigned)(j % 4));
}

/* --- stochastic rounding f32 -> bf16 / f16. x lies between two neighbours lo <= |x| < hi of the
 * target grid (magnitudes); the result is hi with probability (|x| - lo) / (hi - lo), so the
 * expected result is x exactly (the probability is exact to the random bits used: 16 for bf16,
 * 13 for normal f16, 32 for subnormal f16, where below 2^-32 of an ulp it is truncated). The
 * top bits of `random` are used: random = 0 rounds toward zero, all ones away from zero for any
 * inexact x (subnormal f16: any x at least 2^-32 ulp above lo). NaN stays a quiet NaN with its
 * sign; +-Inf and representable values are returned unchanged. Overflow: past the largest finite
 * value the next grid point is Inf (as IEEE overflow), so f16 magnitudes in (65504, 65536) become
 * Inf with probability (|x| - 65504) / 32, and from 65536 on always; bf16 can only overflow from
 * f32 magnitudes above its largest finite value. */

ZT_HD uint16_t zt_sr_f32_to_bf16(float x, uint32_t random) {
    uint32_t bits = zt_f32_bits(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u);
    /* The low 16 bits are the position between the truncated value and the next one up, in
     * units of 2^-16 of the gap; adding 16 uniform bits carries into bit 16 with exactly that
     * probability. The carry may cross into the exponent, which is the next value up, too. */
    bits += random >> 16;
    return (uint16_t)(bits >> 16);
}

ZT_HD uint16_t zt_sr_f32_to_f16(float x, uint32_t random) {
    uint32_t bits = zt_f32_bits(x);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t abs_bits = bits & 0x7fffffffu;
    if (abs_bits > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (abs_bits < 0x38800000u) {
        /* f16 subnormal range (below 2^-14): the grid is k*2^-24, k = 0..1024 (1024 is the
         * smallest normal, 0x0400). Scaling by 2^24 is exact, so are the integer and fraction
         * parts; the fraction is then truncated to 32 bits. */
        float scaled = zt_bits_f32(abs_bits) * 0x1p24f;
        uint32_t whole = (uint32_t)scaled;
        uint32_t fraction_bits = (uint32_t)((scaled - (float)whole) * 0x1p32f);
        /* The carry out of fraction + random, as in the other paths: random 0 truncates. */
        whole += (uint32_t)(((uint64_t)fraction_bits + random) >> 32);
        return (uint16_t)(sign | whole);
    }
    /* Normal range: 13 f32 mantissa bits fall below the f16 ulp; add 13 uniform bits so the
     * carry rounds up with exactly that probability (and may step into the next binade). */
    abs_bits += random >> 19;
    if (abs_bits >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* 2^16 and up: Inf */
    return (uint16_t)(sign | ((abs_bits - 0x38000000u) >> 13));     /* exponent 127 -> 15 */
}

#endif
