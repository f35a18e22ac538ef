/* The AVX2 + FMA path of rng_blocks.h: eight Philox blocks per step, one per 32-bit lane, in
 * structure-of-arrays form (one vector per counter word), then kernels/common/box_muller.h's
 * transform lane by lane with the same operations in the same order, and a transpose back to
 * element order. Compiled for any x86-64 (the functions carry their own target attribute) and
 * called only when the CPU has AVX2 and FMA (rng_blocks.c). */
#include "cpu/rng_blocks.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#include "common/perturb_rng.h"

#define ZT_AVX2_FN __attribute__((target("avx2,fma"))) static inline

/* The counter words of eight blocks, and a Philox key schedule in vectors. */
typedef struct words8 {
    __m256i x, y, z, w;
} words8;

typedef struct key_schedule {
    __m256i k0[10], k1[10];
} key_schedule;

ZT_AVX2_FN void schedule_key(uint64_t tensor_key, key_schedule *ks) {
    zt_u32x2 key = zt_philox_key(tensor_key);
    for (int round = 0; round < 10; round++) {
        ks->k0[round] = _mm256_set1_epi32((int)key.x);
        ks->k1[round] = _mm256_set1_epi32((int)key.y);
        key.x += ZT_PHILOX_W0;
        key.y += ZT_PHILOX_W1;
    }
}

/* The 64-bit products a * m of each lane, split into high and low words. */
ZT_AVX2_FN void mul_hi_lo(__m256i a, __m256i m, __m256i *hi, __m256i *lo) {
    const __m256i even = _mm256_mul_epu32(a, m);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

/* zt_philox4x32_10 in every lane of two groups of eight blocks. Two groups rather than one
 * because a round is a chain of dependent multiplies, shifts and XORs: one group alone waits on
 * latencies, two fill the pipes. */
ZT_AVX2_FN void philox8x2(words8 *a, words8 *b, const key_schedule *ks) {
    const __m256i m0 = _mm256_set1_epi32((int)ZT_PHILOX_M0);
    const __m256i m1 = _mm256_set1_epi32((int)ZT_PHILOX_M1);
    words8 c = *a, d = *b;
    for (int round = 0; round < 10; round++) {
        __m256i c_hi0, c_lo0, c_hi1, c_lo1, d_hi0, d_lo0, d_hi1, d_lo1;
        mul_hi_lo(c.x, m0, &c_hi0, &c_lo0);
        mul_hi_lo(d.x, m0, &d_hi0, &d_lo0);
        mul_hi_lo(c.z, m1, &c_hi1, &c_lo1);
        mul_hi_lo(d.z, m1, &d_hi1, &d_lo1);
        const __m256i k0 = ks->k0[round], k1 = ks->k1[round];
        c.x = _mm256_xor_si256(_mm256_xor_si256(c_hi1, c.y), k0);
        d.x = _mm256_xor_si256(_mm256_xor_si256(d_hi1, d.y), k0);
        c.z = _mm256_xor_si256(_mm256_xor_si256(c_hi0, c.w), k1);
        d.z = _mm256_xor_si256(_mm256_xor_si256(d_hi0, d.w), k1);
        c.y = c_lo1;
        d.y = d_lo1;
        c.w = c_lo0;
        d.w = d_lo0;
    }
    *a = c;
    *b = d;
}

/* zt_philox4x32_10 on one group of eight blocks: for a last group with no partner, where
 * philox8x2 would run a copy (Rademacher z needs few Philox blocks per run). */
ZT_AVX2_FN void philox8(words8 *a, const key_schedule *ks) {
    const __m256i m0 = _mm256_set1_epi32((int)ZT_PHILOX_M0);
    const __m256i m1 = _mm256_set1_epi32((int)ZT_PHILOX_M1);
    words8 c = *a;
    for (int round = 0; round < 10; round++) {
        __m256i hi0, lo0, hi1, lo1;
        mul_hi_lo(c.x, m0, &hi0, &lo0);
        mul_hi_lo(c.z, m1, &hi1, &lo1);
        c.x = _mm256_xor_si256(_mm256_xor_si256(hi1, c.y), ks->k0[round]);
        c.z = _mm256_xor_si256(_mm256_xor_si256(hi0, c.w), ks->k1[round]);
        c.y = lo1;
        c.w = lo0;
    }
    *a = c;
}

/* The counters of blocks first .. first + 7 of a stream (zt_rng_stream_block4's layout). */
ZT_AVX2_FN words8 counters8(uint64_t first, uint32_t stream) {
    words8 c;
    const uint64_t last = first + 7;
    if ((first >> 16) == (last >> 16)) {
        const uint64_t step = first >> 16;
        c.x = _mm256_set1_epi32((int)(uint32_t)step);
        c.y = _mm256_set1_epi32((int)(uint32_t)(step >> 32));
        c.z = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)(first & 0xFFFFu)),
                               _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    } else {
        uint32_t x[8], y[8], z[8];
        for (int lane = 0; lane < 8; lane++) {
            const uint64_t block = first + (uint64_t)lane;
            x[lane] = (uint32_t)(block >> 16);
            y[lane] = (uint32_t)(block >> 48);
            z[lane] = (uint32_t)(block & 0xFFFFu);
        }
        c.x = _mm256_loadu_si256((const __m256i *)x);
        c.y = _mm256_loadu_si256((const __m256i *)y);
        c.z = _mm256_loadu_si256((const __m256i *)z);
    }
    c.w = _mm256_set1_epi32((int)stream);
    return c;
}

/* Stores lane i of a, b, c, d as out[4i .. 4i+3], for the eight lanes (32 values). */
ZT_AVX2_FN void store_interleaved(float *out, __m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 ab_lo = _mm256_unpacklo_ps(a, b); /* a0 b0 a1 b1 | a4 b4 a5 b5 */
    const __m256 ab_hi = _mm256_unpackhi_ps(a, b); /* a2 b2 a3 b3 | a6 b6 a7 b7 */
    const __m256 cd_lo = _mm256_unpacklo_ps(c, d);
    const __m256 cd_hi = _mm256_unpackhi_ps(c, d);
    const __m256 q0 = _mm256_castpd_ps(
        _mm256_unpacklo_pd(_mm256_castps_pd(ab_lo), _mm256_castps_pd(cd_lo))); /* 0 | 4 */
    const __m256 q1 = _mm256_castpd_ps(
        _mm256_unpackhi_pd(_mm256_castps_pd(ab_lo), _mm256_castps_pd(cd_lo))); /* 1 | 5 */
    const __m256 q2 = _mm256_castpd_ps(
        _mm256_unpacklo_pd(_mm256_castps_pd(ab_hi), _mm256_castps_pd(cd_hi))); /* 2 | 6 */
    const __m256 q3 = _mm256_castpd_ps(
        _mm256_unpackhi_pd(_mm256_castps_pd(ab_hi), _mm256_castps_pd(cd_hi))); /* 3 | 7 */
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(q0, q1, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(q2, q3, 0x20));
    _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(q0, q1, 0x31));
    _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(q2, q3, 0x31));
}

/* zt_bm_radius in every lane. */
ZT_AVX2_FN __m256 radius8(__m256i x) {
    /* (float)x for unsigned x: both 16-bit halves convert exactly and the FMA rounds once. */
    const __m256 high = _mm256_cvtepi32_ps(_mm256_srli_epi32(x, 16));
    const __m256 low = _mm256_cvtepi32_ps(_mm256_and_si256(x, _mm256_set1_epi32(0xFFFF)));
    const __m256 x_f = _mm256_fmadd_ps(high, _mm256_set1_ps(65536.0f), low);
    const __m256 u = _mm256_fmadd_ps(x_f, _mm256_set1_ps(ZT_RNG_2POW32_INV),
                                     _mm256_set1_ps(ZT_RNG_2POW32_INV * 0.5f));

    const __m256i bits = _mm256_castps_si256(u);
    __m256i exponent = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
    __m256i mantissa = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)),
                                       _mm256_set1_epi32(0x3F800000));
    const __m256i halve = _mm256_cmpgt_epi32(mantissa, _mm256_set1_epi32((int)ZT_BM_SQRT2_BITS));
    mantissa = _mm256_sub_epi32(mantissa, _mm256_and_si256(halve, _mm256_set1_epi32(0x00800000)));
    exponent = _mm256_sub_epi32(exponent, halve); /* halve is -1 where taken */
    const __m256 f = _mm256_sub_ps(_mm256_castsi256_ps(mantissa), _mm256_set1_ps(1.0f));

    __m256 q = _mm256_set1_ps(ZT_BM_LOG_Q7);
    q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(ZT_BM_LOG_Q6));
    q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(ZT_BM_LOG_Q5));
    q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(ZT_BM_LOG_Q4));
    q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(ZT_BM_LOG_Q3));
    q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(ZT_BM_LOG_Q2));
    q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(ZT_BM_LOG_Q1));
    q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(ZT_BM_LOG_Q0));
    __m256 log_u = _mm256_fmadd_ps(_mm256_mul_ps(f, f), q, f);
    const __m256 exponent_f = _mm256_cvtepi32_ps(exponent);
    log_u = _mm256_fmadd_ps(exponent_f, _mm256_set1_ps(ZT_BM_LN2_LO), log_u);
    log_u = _mm256_fmadd_ps(exponent_f, _mm256_set1_ps(ZT_BM_LN2_HI), log_u);
    return _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), log_u));
}

/* zt_box_muller in every lane: *first = r sin, *second = r cos. */
ZT_AVX2_FN void normals8(__m256i x, __m256i y, __m256 *first, __m256 *second) {
    const __m256 radius = radius8(x);
    /* Bit 29 of y (the octant's lowest bit) spread over the lane: odd octants count back. */
    const __m256i odd = _mm256_srai_epi32(_mm256_slli_epi32(y, 2), 31);
    const __m256i offset =
        _mm256_and_si256(_mm256_xor_si256(y, odd), _mm256_set1_epi32((int)ZT_BM_OCTANT_MASK));
    const __m256 step = _mm256_set1_ps(ZT_BM_ANGLE_STEP);
    const __m256 t =
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(offset), step, _mm256_set1_ps(ZT_BM_ANGLE_STEP * 0.5f));
    const __m256 w = _mm256_mul_ps(t, t);
    __m256 s = _mm256_fmadd_ps(_mm256_set1_ps(ZT_BM_SIN_S2), w, _mm256_set1_ps(ZT_BM_SIN_S1));
    s = _mm256_fmadd_ps(s, w, _mm256_set1_ps(ZT_BM_SIN_S0));
    const __m256 sin_t = _mm256_fmadd_ps(_mm256_mul_ps(t, w), s, t);
    __m256 c = _mm256_fmadd_ps(_mm256_set1_ps(ZT_BM_COS_C2), w, _mm256_set1_ps(ZT_BM_COS_C1));
    c = _mm256_fmadd_ps(c, w, _mm256_set1_ps(ZT_BM_COS_C0));
    const __m256 cos_t = _mm256_fmadd_ps(
        _mm256_mul_ps(w, w), c, _mm256_fmadd_ps(_mm256_set1_ps(-0.5f), w, _mm256_set1_ps(1.0f)));
    /* Octant bits (b2 b1 b0) = y's bits 31..29. Swap where b1 != b0; sine negative where b2;
     * cosine negative where b2 != b1. */
    const __m256i y_neighbours = _mm256_xor_si256(y, _mm256_slli_epi32(y, 1));
    const __m256 swap =
        _mm256_castsi256_ps(_mm256_srai_epi32(_mm256_slli_epi32(y_neighbours, 1), 31));
    const __m256i sign_bit = _mm256_set1_epi32((int)0x80000000u);
    const __m256 sin_sign = _mm256_castsi256_ps(_mm256_and_si256(y, sign_bit));
    const __m256 cos_sign = _mm256_castsi256_ps(_mm256_and_si256(y_neighbours, sign_bit));
    const __m256 sin_v = _mm256_xor_ps(_mm256_blendv_ps(sin_t, cos_t, swap), sin_sign);
    const __m256 cos_v = _mm256_xor_ps(_mm256_blendv_ps(cos_t, sin_t, swap), cos_sign);
    *first = _mm256_mul_ps(radius, sin_v);
    *second = _mm256_mul_ps(radius, cos_v);
}

/* What each kernel stores for a group of eight blocks, in element order at out. */
ZT_AVX2_FN void store_gauss8(float *out, words8 q) {
    __m256 a_sin, a_cos, b_sin, b_cos;
    normals8(q.x, q.y, &a_sin, &a_cos);
    normals8(q.z, q.w, &b_sin, &b_cos);
    store_interleaved(out, a_sin, a_cos, b_sin, b_cos);
}

/* The float transpose moves bits unchanged. */
ZT_AVX2_FN void store_words8(uint32_t *out, words8 q) {
    store_interleaved((float *)out, _mm256_castsi256_ps(q.x), _mm256_castsi256_ps(q.y),
                      _mm256_castsi256_ps(q.z), _mm256_castsi256_ps(q.w));
}

/* The loop every kernel shares: two groups of eight blocks per step while sixteen remain, then
 * a last group of eight run beside a copy of itself (rather than left to the scalar tail). */
#define ZT_FOR_GROUPS(first_block, n_blocks, stream, ks, out, store)                               \
    size_t i = 0;                                                                                  \
    while (i + 8 <= (n_blocks)) {                                                                  \
        const int both = i + 16 <= (n_blocks);                                                     \
        words8 q = counters8((first_block) + i, (stream));                                         \
        words8 r = both ? counters8((first_block) + i + 8, (stream)) : q;                          \
        philox8x2(&q, &r, &(ks));                                                                  \
        store((out) + 4 * i, q);                                                                   \
        if (both) store((out) + 4 * i + 32, r);                                                    \
        i += both ? 16 : 8;                                                                        \
    }                                                                                              \
    return i

__attribute__((target("avx2,fma"))) size_t
zt_cpu_gauss_blocks_avx2(uint64_t tensor_key, uint64_t first_block, size_t n_blocks, float *out) {
    key_schedule ks;
    schedule_key(tensor_key, &ks);
    ZT_FOR_GROUPS(first_block, n_blocks, ZT_RNG_STREAM_Z, ks, out, store_gauss8);
}

/* Rademacher z from z words in element order: bit k of words[i] is element 32 i + k, -1 where
 * it is set. A variable shift moves bits k .. k+7 of the broadcast word to the sign bits of eight
 * lanes, where blendv reads its choice between +1 and -1. */
ZT_AVX2_FN void expand_rademacher8(const uint32_t *words, size_t n_words,
                                   float *out) { /* (32 * n_words) */
    const __m256i shift0 = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
    const __m256i eight = _mm256_set1_epi32(8);
    const __m256i shift1 = _mm256_sub_epi32(shift0, eight);
    const __m256i shift2 = _mm256_sub_epi32(shift1, eight);
    const __m256i shift3 = _mm256_sub_epi32(shift2, eight);
    const __m256 plus = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f);
    for (size_t i = 0; i < n_words; i++) {
        const __m256i word = _mm256_set1_epi32((int)words[i]);
        float *dst = out + 32 * i;
        _mm256_storeu_ps(
            dst,
            _mm256_blendv_ps(plus, minus, _mm256_castsi256_ps(_mm256_sllv_epi32(word, shift0))));
        _mm256_storeu_ps(
            dst + 8,
            _mm256_blendv_ps(plus, minus, _mm256_castsi256_ps(_mm256_sllv_epi32(word, shift1))));
        _mm256_storeu_ps(
            dst + 16,
            _mm256_blendv_ps(plus, minus, _mm256_castsi256_ps(_mm256_sllv_epi32(word, shift2))));
        _mm256_storeu_ps(
            dst + 24,
            _mm256_blendv_ps(plus, minus, _mm256_castsi256_ps(_mm256_sllv_epi32(word, shift3))));
    }
}

/* Two groups of eight Philox blocks (2048 elements) per step; a last step of eight blocks or
 * fewer runs one group and expands only the blocks asked for. */
__attribute__((target("avx2,fma"))) size_t zt_cpu_rademacher_philox_avx2(uint64_t tensor_key,
                                                                         uint64_t first_philox,
                                                                         size_t n_philox,
                                                                         float *out) {
    key_schedule ks;
    schedule_key(tensor_key, &ks);
    uint32_t words[64]; /* (16 blocks, 4): element order */
    size_t i = 0;
    while (i < n_philox) {
        const size_t left = n_philox - i;
        const int both = left > 8;
        words8 q = counters8(first_philox + i, ZT_RNG_STREAM_Z);
        if (both) {
            words8 r = counters8(first_philox + i + 8, ZT_RNG_STREAM_Z);
            philox8x2(&q, &r, &ks);
            store_words8(words + 32, r);
        } else {
            philox8(&q, &ks);
        }
        store_words8(words, q);
        const size_t take = left < 16 ? left : 16;
        expand_rademacher8(words, 4 * take, out + ZT_RADEMACHER_PER_PHILOX * i);
        i += take;
    }
    return n_philox;
}

__attribute__((target("avx2,fma"))) size_t
zt_cpu_stream_words_avx2(uint64_t tensor_key, uint32_t stream, uint64_t first_block,
                         size_t n_blocks, uint32_t *out) {
    key_schedule ks;
    schedule_key(tensor_key, &ks);
    ZT_FOR_GROUPS(first_block, n_blocks, stream, ks, out, store_words8);
}

__attribute__((target("avx2,fma"))) size_t zt_cpu_box_muller_pairs_avx2(const uint32_t *x,
                                                                        const uint32_t *y, size_t n,
                                                                        float *first,
                                                                        float *second) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 sin_part, cos_part;
        normals8(_mm256_loadu_si256((const __m256i *)(x + i)),
                 _mm256_loadu_si256((const __m256i *)(y + i)), &sin_part, &cos_part);
        _mm256_storeu_ps(first + i, sin_part);
        _mm256_storeu_ps(second + i, cos_part);
    }
    return i;
}

#else

size_t zt_cpu_box_muller_pairs_avx2(const uint32_t *x, const uint32_t *y, size_t n, float *first,
                                    float *second) {
    (void)x, (void)y, (void)n, (void)first, (void)second;
    return 0;
}
size_t zt_cpu_gauss_blocks_avx2(uint64_t tensor_key, uint64_t first_block, size_t n_blocks,
                                float *out) {
    (void)tensor_key, (void)first_block, (void)n_blocks, (void)out;
    return 0;
}
size_t zt_cpu_rademacher_philox_avx2(uint64_t tensor_key, uint64_t first_philox, size_t n_philox,
                                     float *out) {
    (void)tensor_key, (void)first_philox, (void)n_philox, (void)out;
    return 0;
}
size_t zt_cpu_stream_words_avx2(uint64_t tensor_key, uint32_t stream, uint64_t first_block,
                                size_t n_blocks, uint32_t *out) {
    (void)tensor_key, (void)stream, (void)first_block, (void)n_blocks, (void)out;
    return 0;
}

#endif
