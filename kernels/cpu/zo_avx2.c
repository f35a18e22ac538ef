/* AVX2 + F16C element loops of the perturbation ops (perturb.c, update.c) for their commonest
 * cases: staging an f16 weight into f32, and the SGD update of f32 and f16 weights (with or
 * without stochastic rounding). Each computes exactly the scalar loop's operations (same f32
 * operations in the same order, no FMA) eight elements at a time; the f16 conversions use the
 * hardware's where they give common/dtype.h's bits, which is every value but NaN, so a group of
 * eight holding a NaN is left to the scalar loop (its f16 NaN payloads are kept where the
 * hardware would quiet them). Each function handles whole groups of eight from the start and
 * returns how many elements it did; the caller runs the scalar loop on the rest. Chosen with the
 * z path (rng_blocks.h): only where the CPU has AVX2, FMA and F16C. Tests: the parity suites
 * compare these ops with the CUDA kernels bit for bit, and tests/ops/test_perturb_cpu.c with
 * ZT_CPU_RNG=portable against the scalar loops. */
#include "cpu/zo_avx2.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

#define ZT_ZO_AVX2 __attribute__((target("avx2,fma,f16c")))

/* Lanes whose f16 value is a NaN, as a movemask of the eight 16-bit lanes' high bytes. */
ZT_ZO_AVX2 static inline int any_f16_nan(__m128i h) {
    const __m128i magnitude = _mm_and_si128(h, _mm_set1_epi16(0x7FFF));
    return _mm_movemask_epi8(_mm_cmpgt_epi16(magnitude, _mm_set1_epi16(0x7C00))) != 0;
}

ZT_ZO_AVX2 size_t zt_cpu_stage_f16_to_f32_avx2(float *dst, const uint16_t *src, const float *sum,
                                               size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        if (any_f16_nan(h)) return i;
        const __m256 value = _mm256_cvtph_ps(h);
        _mm256_storeu_ps(dst + i, _mm256_add_ps(value, _mm256_loadu_ps(sum + i)));
    }
    return i;
}

/* lr * (g + weight_decay * theta), and theta - step where the step is not zero (NaN included). */
ZT_ZO_AVX2 static inline __m256 sgd_step(__m256 theta, __m256 g, __m256 lr, __m256 decay) {
    const __m256 step = _mm256_mul_ps(lr, _mm256_add_ps(g, _mm256_mul_ps(decay, theta)));
    const __m256 moves = _mm256_cmp_ps(step, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    return _mm256_blendv_ps(theta, _mm256_sub_ps(theta, step), moves);
}

ZT_ZO_AVX2 size_t zt_cpu_update_sgd_f32_avx2(float *theta, const float *g, size_t n, float lr,
                                             float weight_decay, unsigned long long *nonfinite) {
    const __m256 lr_v = _mm256_set1_ps(lr), decay = _mm256_set1_ps(weight_decay);
    const __m256i exponent = _mm256_set1_epi32(0x7F800000);
    unsigned long long found = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 updated =
            sgd_step(_mm256_loadu_ps(theta + i), _mm256_loadu_ps(g + i), lr_v, decay);
        _mm256_storeu_ps(theta + i, updated);
        const __m256i bits = _mm256_and_si256(_mm256_castps_si256(updated), exponent);
        found += (unsigned)__builtin_popcount(
            (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, exponent))));
    }
    *nonfinite += found;
    return i;
}

/* zt_sr_f32_to_f16 in every lane of v. */
ZT_ZO_AVX2 static inline __m256i sr_to_f16(__m256 v, __m256i random) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x8000));
    const __m256i abs_bits = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
    const __m256i is_nan = _mm256_cmpgt_epi32(abs_bits, _mm256_set1_epi32(0x7F800000));
    const __m256i below_normal = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x38800000), abs_bits);
    /* normal range: 13 random bits carried into the f16 ulp; 2^16 and up is Inf */
    const __m256i rounded = _mm256_add_epi32(abs_bits, _mm256_srli_epi32(random, 19));
    const __m256i overflow = _mm256_cmpgt_epi32(rounded, _mm256_set1_epi32(0x477FFFFF));
    const __m256i normal = _mm256_blendv_epi8(
        _mm256_srli_epi32(_mm256_sub_epi32(rounded, _mm256_set1_epi32(0x38000000)), 13),
        _mm256_set1_epi32(0x7C00), overflow);
    /* subnormal range: whole + carry(fraction * 2^32 + random), the grid k * 2^-24 */
    const __m256 scaled = _mm256_mul_ps(_mm256_castsi256_ps(abs_bits), _mm256_set1_ps(0x1p24f));
    const __m256i whole = _mm256_cvttps_epi32(scaled);
    const __m256 fraction =
        _mm256_mul_ps(_mm256_sub_ps(scaled, _mm256_cvtepi32_ps(whole)), _mm256_set1_ps(0x1p32f));
    /* fraction in [0, 2^32) to u32, truncated: from 2^31 up (multiples of 256, so the
     * subtraction is exact) through 2^31 less, below it directly */
    const __m256 two31 = _mm256_set1_ps(0x1p31f);
    const __m256i high_part = _mm256_xor_si256(_mm256_cvttps_epi32(_mm256_sub_ps(fraction, two31)),
                                               _mm256_set1_epi32((int)0x80000000u));
    const __m256i fraction_bits =
        _mm256_blendv_epi8(_mm256_cvttps_epi32(fraction), high_part,
                           _mm256_castps_si256(_mm256_cmp_ps(fraction, two31, _CMP_GE_OQ)));
    /* carry out of fraction_bits + random: the u32 sum wraps below fraction_bits */
    const __m256i flip = _mm256_set1_epi32((int)0x80000000u);
    const __m256i total = _mm256_add_epi32(fraction_bits, random);
    const __m256i carry =
        _mm256_cmpgt_epi32(_mm256_xor_si256(fraction_bits, flip), _mm256_xor_si256(total, flip));
    const __m256i subnormal = _mm256_sub_epi32(whole, carry); /* carry is -1 where set */
    __m256i magnitude = _mm256_blendv_epi8(normal, subnormal, below_normal);
    magnitude = _mm256_blendv_epi8(magnitude, _mm256_set1_epi32(0x7E00), is_nan);
    return _mm256_or_si256(magnitude, sign);
}

/* zt_f32_to_f16 (round to nearest even, any NaN to the sign's 0x7E00) in every lane. */
ZT_ZO_AVX2 static inline __m128i rne_to_f16(__m256 v) {
    const __m128i hardware = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    if (_mm256_testz_si256(is_nan, is_nan)) return hardware;
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i canonical =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x8000)),
                        _mm256_set1_epi32(0x7E00));
    const __m128i canonical16 =
        _mm_packus_epi32(_mm256_castsi256_si128(canonical), _mm256_extracti128_si256(canonical, 1));
    const __m128i nan16 =
        _mm_packs_epi32(_mm256_castsi256_si128(is_nan), _mm256_extracti128_si256(is_nan, 1));
    return _mm_blendv_epi8(hardware, canonical16, nan16);
}

ZT_ZO_AVX2 size_t zt_cpu_update_sgd_f16_avx2(uint16_t *theta, const float *g,
                                             const uint32_t *random, size_t n, float lr,
                                             float weight_decay, unsigned long long *nonfinite) {
    const __m256 lr_v = _mm256_set1_ps(lr), decay = _mm256_set1_ps(weight_decay);
    unsigned long long found = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(theta + i));
        if (any_f16_nan(h)) break;
        const __m256 updated = sgd_step(_mm256_cvtph_ps(h), _mm256_loadu_ps(g + i), lr_v, decay);
        __m128i stored;
        if (random) {
            const __m256i r = _mm256_loadu_si256((const __m256i *)(random + i));
            const __m256i wide = sr_to_f16(updated, r);
            stored =
                _mm_packus_epi32(_mm256_castsi256_si128(wide), _mm256_extracti128_si256(wide, 1));
        } else {
            stored = rne_to_f16(updated);
        }
        _mm_storeu_si128((__m128i *)(theta + i), stored);
        const __m128i exponent = _mm_set1_epi16(0x7C00);
        const __m128i inf_or_nan = _mm_cmpeq_epi16(_mm_and_si128(stored, exponent), exponent);
        found += (unsigned)__builtin_popcount((unsigned)_mm_movemask_epi8(inf_or_nan)) / 2;
    }
    *nonfinite += found;
    return i;
}

/* Asked once: every staging, perturb and update call asks, and under a hypervisor CPUID traps
 * to it (perf showed this function at 0.4% of a MeZO step on a KVM guest). */
static _Atomic int avx2_available = -1;

int zt_cpu_zo_avx2_available(void) {
    int known = atomic_load_explicit(&avx2_available, memory_order_relaxed);
    if (known >= 0) return known;
    /* clang 14's __builtin_cpu_supports does not know "f16c": CPUID leaf 1, ECX bit 29 */
    unsigned eax, ebx, ecx, edx;
    const int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx >> 29 & 1u);
    known = f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    atomic_store_explicit(&avx2_available, known, memory_order_relaxed);
    return known;
}

#else

size_t zt_cpu_stage_f16_to_f32_avx2(float *dst, const uint16_t *src, const float *sum, size_t n) {
    (void)dst, (void)src, (void)sum, (void)n;
    return 0;
}
size_t zt_cpu_update_sgd_f32_avx2(float *theta, const float *g, size_t n, float lr,
                                  float weight_decay, unsigned long long *nonfinite) {
    (void)theta, (void)g, (void)n, (void)lr, (void)weight_decay, (void)nonfinite;
    return 0;
}
size_t zt_cpu_update_sgd_f16_avx2(uint16_t *theta, const float *g, const uint32_t *random, size_t n,
                                  float lr, float weight_decay, unsigned long long *nonfinite) {
    (void)theta, (void)g, (void)random, (void)n, (void)lr, (void)weight_decay, (void)nonfinite;
    return 0;
}
int zt_cpu_zo_avx2_available(void) {
    return 0;
}

#endif
