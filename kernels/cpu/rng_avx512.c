/* The AVX-512 path of rng_blocks.h. Philox runs on 32 blocks at once in structure-of-arrays form,
 * each word in a 64-bit lane (philox8 below), then packed into sixteen 32-bit lanes for the
 * transform of
 * kernels/common/box_muller.h lane by lane with the same IEEE operations in the same order (mask
 * registers stand in for AVX2's blend vectors; unsigned-to-float conversion is one correctly
 * rounded instruction, as (float)x is), and a transpose back to element order. Compiled for any
 * x86-64 (the functions carry their own target attribute) and called only where the CPU has
 * AVX-512 F, DQ and BW (rng_blocks.c). */
#include "cpu/rng_blocks.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#include "common/perturb_rng.h"

#define ZT_AVX512_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define ZT_AVX512_FN ZT_AVX512_TARGET static inline
/* for philox_groups, whose group count must be a constant where it runs */
#define ZT_AVX512_INLINE ZT_AVX512_TARGET __attribute__((always_inline)) static inline

typedef struct words16 {
    __m512i x, y, z, w;
} words16;

typedef struct key_schedule16 {
    __m512i k0[10], k1[10]; /* the round keys in every 32-bit lane */
    uint32_t key0[10], key1[10];
} key_schedule16;

ZT_AVX512_FN void schedule_key16(uint64_t tensor_key, key_schedule16 *ks) {
    zt_u32x2 key = zt_philox_key(tensor_key);
    for (int round = 0; round < 10; round++) {
        ks->key0[round] = key.x;
        ks->key1[round] = key.y;
        ks->k0[round] = _mm512_set1_epi32((int)key.x);
        ks->k1[round] = _mm512_set1_epi32((int)key.y);
        key.x += ZT_PHILOX_W0;
        key.y += ZT_PHILOX_W1;
    }
}

/* Eight blocks, each 32-bit word in the low half of a 64-bit lane. One vpmuludq then gives a
 * word's whole product, high word above low, so a round costs two products, two shifts and two
 * three-way XORs per eight blocks, where sixteen 32-bit lanes need the odd lanes shifted down and
 * the halves blended back (16 instructions per sixteen blocks against 12 here). The high halves
 * of the lanes may hold garbage: vpmuludq reads only the low ones, and nothing carries upwards
 * into them. */
typedef struct philox8 {
    __m512i x, y, z, w;
} philox8;

ZT_AVX512_FN void philox8_round(philox8 *c, __m512i k0, __m512i k1) {
    const __m512i m0 = _mm512_set1_epi64(ZT_PHILOX_M0), m1 = _mm512_set1_epi64(ZT_PHILOX_M1);
    const __m512i product0 = _mm512_mul_epu32(c->x, m0);
    const __m512i product1 = _mm512_mul_epu32(c->z, m1);
    /* 0x96: a ^ b ^ c in one instruction */
    c->x = _mm512_ternarylogic_epi64(_mm512_srli_epi64(product1, 32), c->y, k0, 0x96);
    c->z = _mm512_ternarylogic_epi64(_mm512_srli_epi64(product0, 32), c->w, k1, 0x96);
    c->y = product1;
    c->w = product0;
}

/* The counters of blocks first .. first + 7 of a stream (zt_rng_stream_block4's layout). */
ZT_AVX512_FN philox8 counters8(uint64_t first, uint32_t stream) {
    const __m512i blocks = _mm512_add_epi64(_mm512_set1_epi64((long long)first),
                                            _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    philox8 c;
    c.x = _mm512_srli_epi64(blocks, 16);
    c.y = _mm512_srli_epi64(blocks, 48);
    c.z = _mm512_and_si512(blocks, _mm512_set1_epi64(0xFFFF));
    c.w = _mm512_set1_epi64(stream);
    return c;
}

/* Sixteen blocks in 32-bit lanes, in block order, from the low words of two groups of eight. */
ZT_AVX512_FN words16 pack16(const philox8 *lo, const philox8 *hi) {
    const __m512i low_words =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    words16 q;
    q.x = _mm512_permutex2var_epi32(lo->x, low_words, hi->x);
    q.y = _mm512_permutex2var_epi32(lo->y, low_words, hi->y);
    q.z = _mm512_permutex2var_epi32(lo->z, low_words, hi->z);
    q.w = _mm512_permutex2var_epi32(lo->w, low_words, hi->w);
    return q;
}

/* zt_philox4x32_10 on blocks first .. first + 8 n_groups - 1 (n_groups 2 or 4: sixteen or 32
 * blocks, the groups interleaved to hide each round's dependent products), into out[0] (blocks
 * 0-15) and out[1] (16-31). Where the blocks share their counter's words x, y and w (they differ
 * in z only: every run of 2^16 blocks), the first two rounds' products of those words are the same
 * in every lane, so they are taken once in scalar code and only z's products are vectors. */
ZT_AVX512_INLINE void philox_groups(uint64_t first, uint32_t stream, int n_groups,
                                    const key_schedule16 *ks, words16 out[2]) {
    const uint64_t last = first + (uint64_t)(8 * n_groups - 1);
    philox8 g[4];
    if (last >= first && (first >> 16) == (last >> 16)) {
        const uint64_t step = first >> 16;
        const uint32_t x0 = (uint32_t)step, y0 = (uint32_t)(step >> 32);
        /* round 1: x's product is shared; z1 and w1 are the same in every lane */
        const uint64_t shared0 = (uint64_t)ZT_PHILOX_M0 * x0;
        const uint32_t z1 = (uint32_t)(shared0 >> 32) ^ stream ^ ks->key1[0];
        const uint32_t w1 = (uint32_t)shared0;
        /* round 2: z1's product is shared */
        const uint64_t shared1 = (uint64_t)ZT_PHILOX_M1 * z1;
        const __m512i x1_mask = _mm512_set1_epi64(y0 ^ ks->key0[0]);
        const __m512i x2_mask = _mm512_set1_epi64((uint32_t)(shared1 >> 32) ^ ks->key0[1]);
        const __m512i z2_mask = _mm512_set1_epi64(w1 ^ ks->key1[1]);
        const __m512i y2 = _mm512_set1_epi64((uint32_t)shared1);
        const __m512i m0 = _mm512_set1_epi64(ZT_PHILOX_M0), m1 = _mm512_set1_epi64(ZT_PHILOX_M1);
        for (int i = 0; i < n_groups; i++) {
            const __m512i z0 = _mm512_add_epi64(
                _mm512_set1_epi64((long long)((first & 0xFFFFu) + 8u * (unsigned)i)),
                _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
            const __m512i product1 = _mm512_mul_epu32(z0, m1);
            const __m512i x1 = _mm512_xor_si512(_mm512_srli_epi64(product1, 32), x1_mask);
            const __m512i y1 = product1;
            const __m512i product0 = _mm512_mul_epu32(x1, m0);
            g[i].x = _mm512_xor_si512(y1, x2_mask);
            g[i].y = y2;
            g[i].z = _mm512_xor_si512(_mm512_srli_epi64(product0, 32), z2_mask);
            g[i].w = product0;
        }
    } else {
        for (int i = 0; i < n_groups; i++) {
            g[i] = counters8(first + 8u * (unsigned)i, stream);
            philox8_round(&g[i], ks->k0[0], ks->k1[0]);
            philox8_round(&g[i], ks->k0[1], ks->k1[1]);
        }
    }
    /* unrolled, so that the groups stay in registers */
#pragma GCC unroll 8
    for (int round = 2; round < 10; round++)
#pragma GCC unroll 4
        for (int i = 0; i < n_groups; i++)
            philox8_round(&g[i], ks->k0[round], ks->k1[round]);
    out[0] = pack16(&g[0], &g[1]);
    if (n_groups == 4) out[1] = pack16(&g[2], &g[3]);
}

/* Stores lane i of a, b, c, d as out[4i .. 4i+3], for the sixteen lanes (64 values). */
ZT_AVX512_FN void store_interleaved16(float *out, __m512 a, __m512 b, __m512 c, __m512 d) {
    /* pairs: (a0 b0 a1 b1 .. a7 b7) and (a8 b8 .. a15 b15), the same for c and d */
    const __m512i pair_lo =
        _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i pair_hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512d ab_lo = _mm512_castps_pd(_mm512_permutex2var_ps(a, pair_lo, b));
    const __m512d ab_hi = _mm512_castps_pd(_mm512_permutex2var_ps(a, pair_hi, b));
    const __m512d cd_lo = _mm512_castps_pd(_mm512_permutex2var_ps(c, pair_lo, d));
    const __m512d cd_hi = _mm512_castps_pd(_mm512_permutex2var_ps(c, pair_hi, d));
    /* quads: the (a b) pair of lane i beside the (c d) pair of lane i */
    const __m512i quad_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i quad_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_storeu_ps(out, _mm512_castpd_ps(_mm512_permutex2var_pd(ab_lo, quad_lo, cd_lo)));
    _mm512_storeu_ps(out + 16, _mm512_castpd_ps(_mm512_permutex2var_pd(ab_lo, quad_hi, cd_lo)));
    _mm512_storeu_ps(out + 32, _mm512_castpd_ps(_mm512_permutex2var_pd(ab_hi, quad_lo, cd_hi)));
    _mm512_storeu_ps(out + 48, _mm512_castpd_ps(_mm512_permutex2var_pd(ab_hi, quad_hi, cd_hi)));
}

/* zt_bm_radius in every lane. */
ZT_AVX512_FN __m512 radius16(__m512i x) {
    const __m512 u = _mm512_fmadd_ps(_mm512_cvtepu32_ps(x), _mm512_set1_ps(ZT_RNG_2POW32_INV),
                                     _mm512_set1_ps(ZT_RNG_2POW32_INV * 0.5f));
    /* u is a normal float, so getexp and getmant give its exponent and mantissa (in [1, 2))
     * exactly: the integer steps of zt_bm_log_unit, the halving included, in exact float ops. */
    __m512 exponent_f = _mm512_getexp_ps(u);
    __m512 mantissa = _mm512_getmant_ps(u, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    const __mmask16 halve = _mm512_cmp_ps_mask(
        mantissa, _mm512_castsi512_ps(_mm512_set1_epi32((int)ZT_BM_SQRT2_BITS)), _CMP_GT_OQ);
    mantissa = _mm512_mask_mul_ps(mantissa, halve, mantissa, _mm512_set1_ps(0.5f));
    exponent_f = _mm512_mask_add_ps(exponent_f, halve, exponent_f, _mm512_set1_ps(1.0f));
    const __m512 f = _mm512_sub_ps(mantissa, _mm512_set1_ps(1.0f));

    __m512 q = _mm512_set1_ps(ZT_BM_LOG_Q7);
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(ZT_BM_LOG_Q6));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(ZT_BM_LOG_Q5));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(ZT_BM_LOG_Q4));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(ZT_BM_LOG_Q3));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(ZT_BM_LOG_Q2));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(ZT_BM_LOG_Q1));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(ZT_BM_LOG_Q0));
    __m512 log_u = _mm512_fmadd_ps(_mm512_mul_ps(f, f), q, f);
    log_u = _mm512_fmadd_ps(exponent_f, _mm512_set1_ps(ZT_BM_LN2_LO), log_u);
    log_u = _mm512_fmadd_ps(exponent_f, _mm512_set1_ps(ZT_BM_LN2_HI), log_u);
    return _mm512_sqrt_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), log_u));
}

/* zt_box_muller in every lane: *first = r sin, *second = r cos. */
ZT_AVX512_FN void normals16(__m512i x, __m512i y, __m512 *first, __m512 *second) {
    const __m512 radius = radius16(x);
    /* Bit 29 of y (the octant's lowest bit): odd octants count back. */
    const __m512i odd = _mm512_srai_epi32(_mm512_slli_epi32(y, 2), 31);
    const __m512i offset =
        _mm512_and_si512(_mm512_xor_si512(y, odd), _mm512_set1_epi32((int)ZT_BM_OCTANT_MASK));
    const __m512 step = _mm512_set1_ps(ZT_BM_ANGLE_STEP);
    const __m512 t =
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(offset), step, _mm512_set1_ps(ZT_BM_ANGLE_STEP * 0.5f));
    const __m512 w = _mm512_mul_ps(t, t);
    __m512 s = _mm512_fmadd_ps(_mm512_set1_ps(ZT_BM_SIN_S2), w, _mm512_set1_ps(ZT_BM_SIN_S1));
    s = _mm512_fmadd_ps(s, w, _mm512_set1_ps(ZT_BM_SIN_S0));
    const __m512 sin_t = _mm512_fmadd_ps(_mm512_mul_ps(t, w), s, t);
    __m512 c = _mm512_fmadd_ps(_mm512_set1_ps(ZT_BM_COS_C2), w, _mm512_set1_ps(ZT_BM_COS_C1));
    c = _mm512_fmadd_ps(c, w, _mm512_set1_ps(ZT_BM_COS_C0));
    const __m512 cos_t = _mm512_fmadd_ps(
        _mm512_mul_ps(w, w), c, _mm512_fmadd_ps(_mm512_set1_ps(-0.5f), w, _mm512_set1_ps(1.0f)));
    /* Octant bits (b2 b1 b0) = y's bits 31..29. Swap where b1 != b0; sine negative where b2;
     * cosine negative where b2 != b1. */
    const __m512i y_neighbours = _mm512_xor_si512(y, _mm512_slli_epi32(y, 1));
    const __mmask16 swap = _mm512_test_epi32_mask(y_neighbours, _mm512_set1_epi32(1 << 30));
    const __m512i sign_bit = _mm512_set1_epi32((int)0x80000000u);
    const __m512 sin_sign = _mm512_castsi512_ps(_mm512_and_si512(y, sign_bit));
    const __m512 cos_sign = _mm512_castsi512_ps(_mm512_and_si512(y_neighbours, sign_bit));
    const __m512 sin_v = _mm512_xor_ps(_mm512_mask_blend_ps(swap, sin_t, cos_t), sin_sign);
    const __m512 cos_v = _mm512_xor_ps(_mm512_mask_blend_ps(swap, cos_t, sin_t), cos_sign);
    *first = _mm512_mul_ps(radius, sin_v);
    *second = _mm512_mul_ps(radius, cos_v);
}

ZT_AVX512_FN void store_gauss16(float *out, words16 q) {
    __m512 a_sin, a_cos, b_sin, b_cos;
    normals16(q.x, q.y, &a_sin, &a_cos);
    normals16(q.z, q.w, &b_sin, &b_cos);
    store_interleaved16(out, a_sin, a_cos, b_sin, b_cos);
}

ZT_AVX512_FN void store_words16(uint32_t *out, words16 q) {
    store_interleaved16((float *)out, _mm512_castsi512_ps(q.x), _mm512_castsi512_ps(q.y),
                        _mm512_castsi512_ps(q.z), _mm512_castsi512_ps(q.w));
}

/* 32 blocks per step while 32 remain, then a last sixteen; fewer than sixteen are the caller's
 * (the AVX2 or scalar loop). */
#define ZT_FOR_GROUPS16(first_block, n_blocks, stream, ks, out, store)                             \
    size_t i = 0;                                                                                  \
    while (i + 16 <= (n_blocks)) {                                                                 \
        const int both = i + 32 <= (n_blocks);                                                     \
        words16 q[2];                                                                              \
        if (both)                                                                                  \
            philox_groups((first_block) + i, (stream), 4, &(ks), q);                               \
        else                                                                                       \
            philox_groups((first_block) + i, (stream), 2, &(ks), q);                               \
        store((out) + 4 * i, q[0]);                                                                \
        if (both) store((out) + 4 * i + 64, q[1]);                                                 \
        i += both ? 32 : 16;                                                                       \
    }                                                                                              \
    return i

ZT_AVX512_TARGET size_t zt_cpu_gauss_blocks_avx512(uint64_t tensor_key, uint64_t first_block,
                                                   size_t n_blocks, float *out) {
    key_schedule16 ks;
    schedule_key16(tensor_key, &ks);
    ZT_FOR_GROUPS16(first_block, n_blocks, ZT_RNG_STREAM_Z, ks, out, store_gauss16);
}

/* Rademacher z from z words in element order: bit k of words[i] is element 32 i + k, -1 where
 * it is set. Each half word is a mask register that picks -1 or +1 for sixteen lanes, so an
 * element costs a sixteenth of a blend and of a store. */
ZT_AVX512_FN void expand_rademacher16(const uint32_t *words, size_t n_words,
                                      float *out) { /* (32 * n_words) */
    const __m512 plus = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
    for (size_t i = 0; i < n_words; i++) {
        const uint32_t word = words[i];
        _mm512_storeu_ps(out + 32 * i, _mm512_mask_blend_ps((__mmask16)word, plus, minus));
        _mm512_storeu_ps(out + 32 * i + 16,
                         _mm512_mask_blend_ps((__mmask16)(word >> 16), plus, minus));
    }
}

/* Two groups of sixteen Philox blocks (4096 elements) per step. A last step of nine to sixteen
 * blocks runs one group (the lanes past the end are counters no one reads) and expands only the
 * blocks asked for; eight or fewer are left to the AVX2 loop, whose group of eight wastes less
 * (the ops' runs of 256 4-element blocks are eight Philox blocks). Returns the blocks done. */
ZT_AVX512_TARGET size_t zt_cpu_rademacher_philox_avx512(uint64_t tensor_key, uint64_t first_philox,
                                                        size_t n_philox, float *out) {
    if (n_philox <= 8) return 0; /* all the AVX2 loop's, without building a key schedule */
    key_schedule16 ks;
    schedule_key16(tensor_key, &ks);
    uint32_t words[128]; /* (32 blocks, 4): element order */
    size_t i = 0;
    while (n_philox - i > 8) {
        const size_t left = n_philox - i;
        const int both = left > 16;
        words16 q[2];
        if (both)
            philox_groups(first_philox + i, ZT_RNG_STREAM_Z, 4, &ks, q);
        else
            philox_groups(first_philox + i, ZT_RNG_STREAM_Z, 2, &ks, q);
        store_words16(words, q[0]);
        if (both) store_words16(words + 64, q[1]);
        const size_t take = left < 32 ? left : 32;
        expand_rademacher16(words, 4 * take, out + ZT_RADEMACHER_PER_PHILOX * i);
        i += take;
    }
    return i;
}

ZT_AVX512_TARGET size_t zt_cpu_stream_words_avx512(uint64_t tensor_key, uint32_t stream,
                                                   uint64_t first_block, size_t n_blocks,
                                                   uint32_t *out) {
    key_schedule16 ks;
    schedule_key16(tensor_key, &ks);
    ZT_FOR_GROUPS16(first_block, n_blocks, stream, ks, out, store_words16);
}

ZT_AVX512_TARGET size_t zt_cpu_box_muller_pairs_avx512(const uint32_t *x, const uint32_t *y,
                                                       size_t n, float *first, float *second) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 sin_part, cos_part;
        normals16(_mm512_loadu_si512(x + i), _mm512_loadu_si512(y + i), &sin_part, &cos_part);
        _mm512_storeu_ps(first + i, sin_part);
        _mm512_storeu_ps(second + i, cos_part);
    }
    return i;
}

#else

size_t zt_cpu_box_muller_pairs_avx512(const uint32_t *x, const uint32_t *y, size_t n, float *first,
                                      float *second) {
    (void)x, (void)y, (void)n, (void)first, (void)second;
    return 0;
}
size_t zt_cpu_gauss_blocks_avx512(uint64_t tensor_key, uint64_t first_block, size_t n_blocks,
                                  float *out) {
    (void)tensor_key, (void)first_block, (void)n_blocks, (void)out;
    return 0;
}
size_t zt_cpu_rademacher_philox_avx512(uint64_t tensor_key, uint64_t first_philox, size_t n_philox,
                                       float *out) {
    (void)tensor_key, (void)first_philox, (void)n_philox, (void)out;
    return 0;
}
size_t zt_cpu_stream_words_avx512(uint64_t tensor_key, uint32_t stream, uint64_t first_block,
                                  size_t n_blocks, uint32_t *out) {
    (void)tensor_key, (void)stream, (void)first_block, (void)n_blocks, (void)out;
    return 0;
}

#endif
