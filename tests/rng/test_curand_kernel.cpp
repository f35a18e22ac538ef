/* Oracle: curand_kernel.h itself, compiled for the host by g++, which takes the header's host
 * branches (libm logf, sinf, cosf instead of __sincosf); meson defines QUALIFIERS as
 * `static inline`. No GPU and no CUDA runtime library are involved.
 *
 * Integers and uniforms must match bit for bit for any (seed, subsequence, offset). Normals:
 * cuRAND's transform is checked bit for bit against the header's host branch modelled here (angle
 * `y * C + C/2` uncontracted, -ffp-contract=off), and zotune's own transform of the same words
 * (kernels/common/box_muller.h) within the bound of tests/rng/curand_normal_bound.h, printing the
 * largest difference. */
#include <cuda_runtime.h>
#include <curand_kernel.h>

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "common/philox.h"
#include "rng/curand_normal_bound.h"
#include "zt_test.h"

/* Word i of the stream that starts at lane `lane` of the 128-bit counter
 * subsequence * 2^64 + block; the counter wraps at 2^128 as curand's increment does. This is our
 * model, built only from the Philox block function. */
static uint32_t model_counter_word(uint64_t seed, uint64_t subsequence, uint64_t block,
                                   unsigned lane, uint64_t i) {
    uint64_t position = lane + i;
    uint64_t low = block + position / 4;
    if (low < block) subsequence++; /* carry into the high counter words */
    zt_u32x4 out = zt_philox4x32_10(zt_philox_counter(subsequence, low), zt_philox_key(seed));
    return zt_u32x4_lane(out, (unsigned)(position % 4));
}

/* Word i after curand_init(seed, subsequence, offset): counter subsequence * 2^64 + offset / 4,
 * lane offset % 4. */
static uint32_t model_word(uint64_t seed, uint64_t subsequence, uint64_t offset, uint64_t i) {
    return model_counter_word(seed, subsequence, offset / 4, (unsigned)(offset % 4), i);
}

struct triple {
    uint64_t seed, subsequence, offset;
};

static const uint64_t seeds[] = {
    0, 1, 42, 0xFFFFFFFFull, 0x100000000ull, 0xFFFFFFFFFFFFFFFFull, 0x123456789ABCDEF0ull};

/* Subsequences and offsets at the counter-word boundaries: offset / 4 near 2^32 (the carry from
 * counter word 0 into word 1 while drawing), subsequences near 2^32 and 2^64 - 1. */
static const uint64_t subsequences[] = {0,
                                        1,
                                        65535,
                                        65536,
                                        0xFFFFFFFFull,
                                        0x100000000ull,
                                        0x100000001ull,
                                        0xFFFFFFFFFFFFFFFEull,
                                        0xFFFFFFFFFFFFFFFFull};
static const uint64_t offsets[] = {0,
                                   1,
                                   2,
                                   3,
                                   4,
                                   5,
                                   4 * 0xFFFFFFFFull - 5,
                                   4 * 0xFFFFFFFFull + 2,
                                   4 * 0x100000000ull - 1,
                                   4 * 0x1FFFFFFFFull + 1,
                                   0xFFFFFFFFFFFFFFF0ull,
                                   0xFFFFFFFFFFFFFFFFull};

#define NS(a) (sizeof(a) / sizeof((a)[0]))
#define WORDS_PER_TRIPLE 19u

static struct triple triple_at(size_t i) {
    size_t grid = NS(seeds) * NS(subsequences) * NS(offsets);
    struct triple t;
    if (i < grid) {
        t.seed = seeds[i % NS(seeds)];
        t.subsequence = subsequences[i / NS(seeds) % NS(subsequences)];
        t.offset = offsets[i / NS(seeds) / NS(subsequences)];
    } else { /* and arbitrary triples */
        t.seed = zt_mix64(i);
        t.subsequence = zt_mix64(t.seed);
        t.offset = zt_mix64(t.subsequence) >> (i % 64);
        if (i % 3 == 0) t.subsequence >>= 40;
    }
    return t;
}

#define TRIPLE_COUNT (NS(seeds) * NS(subsequences) * NS(offsets) + 3000)

static void test_integers_and_uniforms(void) {
    size_t word_mismatches = 0, word4_mismatches = 0, uniform_mismatches = 0, compared = 0;
    for (size_t i = 0; i < TRIPLE_COUNT; i++) {
        struct triple t = triple_at(i);
        curandStatePhilox4_32_10_t state;
        curand_init(t.seed, t.subsequence, t.offset, &state);
        for (uint64_t k = 0; k < WORDS_PER_TRIPLE; k++, compared++) {
            uint32_t want = model_word(t.seed, t.subsequence, t.offset, k);
            uint32_t got = curand(&state);
            if (got != want && word_mismatches++ < 5)
                fprintf(stderr,
                        "curand (%" PRIx64 ", %" PRIx64 ", %" PRIx64 ") word %" PRIu64
                        ": %08x want %08x\n",
                        t.seed, t.subsequence, t.offset, k, got, want);
        }
        /* curand4 from every lane position: 0..3 single draws first. */
        for (uint64_t skip = 0; skip < 4; skip++) {
            curand_init(t.seed, t.subsequence, t.offset, &state);
            for (uint64_t k = 0; k < skip; k++)
                (void)curand(&state);
            for (uint64_t k = skip; k < skip + 12; k += 4) {
                uint4 got = curand4(&state);
                uint32_t got_words[4] = {got.x, got.y, got.z, got.w};
                for (uint64_t l = 0; l < 4; l++)
                    word4_mismatches +=
                        got_words[l] != model_word(t.seed, t.subsequence, t.offset, k + l);
            }
        }
        curand_init(t.seed, t.subsequence, t.offset, &state);
        for (uint64_t k = 0; k < 8; k++) {
            float want = zt_uniform_from_u32(model_word(t.seed, t.subsequence, t.offset, k));
            uniform_mismatches += zt_f32_bits(curand_uniform(&state)) != zt_f32_bits(want);
        }
        curand_init(t.seed, t.subsequence, t.offset, &state);
        float4 u4 = curand_uniform4(&state);
        float u4_lanes[4] = {u4.x, u4.y, u4.z, u4.w};
        for (uint64_t l = 0; l < 4; l++) {
            float want = zt_uniform_from_u32(model_word(t.seed, t.subsequence, t.offset, l));
            uniform_mismatches += zt_f32_bits(u4_lanes[l]) != zt_f32_bits(want);
        }
    }
    printf("integers: %zu triples, %zu curand words, curand4 and uniforms compared\n",
           (size_t)TRIPLE_COUNT, compared);
    ZT_CHECK(word_mismatches == 0, "%zu curand words differ", word_mismatches);
    ZT_CHECK(word4_mismatches == 0, "%zu curand4 words differ", word4_mismatches);
    ZT_CHECK(uniform_mismatches == 0, "%zu uniforms differ", uniform_mismatches);
}

/* The low 64 counter bits carrying into the subsequence words while drawing. curand_init can
 * only reach block 2^62 - 1, so skipahead walks there: 4 * skipahead(2^64 - 4) adds 2^64 - 4
 * blocks, skipahead(8) two more, leaving the counter at subsequence * 2^64 + 2^64 - 2. */
static void test_counter_carry(void) {
    size_t mismatches = 0, compared = 0;
    for (size_t s = 0; s < NS(seeds); s++) {
        for (size_t q = 0; q < NS(subsequences); q++) {
            for (unsigned lane = 0; lane < 4; lane++) {
                curandStatePhilox4_32_10_t state;
                curand_init(seeds[s], subsequences[q], lane, &state);
                for (int k = 0; k < 4; k++)
                    skipahead(0xFFFFFFFFFFFFFFFCull, &state);
                skipahead(8, &state);
                for (uint64_t i = 0; i < 13; i++, compared++) {
                    uint32_t want =
                        model_counter_word(seeds[s], subsequences[q], UINT64_MAX - 1, lane, i);
                    mismatches += curand(&state) != want;
                }
            }
        }
    }
    ZT_CHECK(mismatches == 0, "%zu of %zu words across the 2^64 counter carry differ", mismatches,
             compared);
}

/* The engine's addressing in cuRAND terms (perturb_rng.h): z block b =
 * curand_init(key, b mod 2^16, 4 * (b >> 16)) + curand4; SR block b =
 * curand_init(key, 2^32 + b mod 2^16, 4 * (b >> 16)) + curand4. */
static void test_engine_addressing(void) {
    const uint64_t blocks[] = {0,
                               1,
                               2,
                               65535,
                               65536,
                               0xFFFFFFFFull,
                               0x100000000ull,
                               0x3FFFFFFFFFFFFFFFull,
                               0xFFFFFFFFFFFFFFFFull};
    size_t mismatches = 0, checked = 0, rademacher_bad = 0, rademacher_checked = 0;
    for (uint32_t tensor = 0; tensor < 40; tensor++) {
        uint64_t key = zt_tensor_key(0xC0FFEE + tensor / 8, tensor * 977u);
        for (size_t b = 0; b < NS(blocks) + 200; b++) {
            uint64_t block = b < NS(blocks) ? blocks[b] : zt_mix64(b + tensor) >> (b % 40);
            curandStatePhilox4_32_10_t state;
            curand_init(key, block & 0xFFFFu, 4 * (block >> 16), &state);
            uint4 z = curand4(&state);
            zt_u32x4 ours = zt_z_bits_block4(key, block);
            mismatches += z.x != ours.x || z.y != ours.y || z.z != ours.z || z.w != ours.w;
            curand_init(key, (1ull << 32) + (block & 0xFFFFu), 4 * (block >> 16), &state);
            uint4 sr = curand4(&state);
            zt_u32x4 sr_ours = zt_sr_bits_block4(key, block);
            mismatches +=
                sr.x != sr_ours.x || sr.y != sr_ours.y || sr.z != sr_ours.z || sr.w != sr_ours.w;
            checked += 2;
            /* Rademacher z packs 128 elements into this block (docs/spec.md §5.9): element
             * 128 block + k is bit k % 32 of curand4's word k / 32, -1 where set. Blocks whose
             * elements pass 2^64 hold none. */
            if (block > UINT64_MAX / 128) continue;
            const uint32_t words[4] = {z.x, z.y, z.z, z.w};
            for (unsigned k = 0; k < 128; k++) {
                const float sign = ((words[k / 32] >> (k % 32)) & 1u) ? -1.0f : 1.0f;
                const uint64_t j = 128 * block + k;
                rademacher_bad += zt_z_rademacher_at(key, j) != sign;
                rademacher_bad +=
                    zt_f32x4_lane(zt_z_rademacher_block4(key, j / 4), (unsigned)(j % 4)) != sign;
                rademacher_checked++;
            }
        }
    }
    ZT_CHECK(mismatches == 0, "%zu of %zu engine blocks differ", mismatches, checked);
    ZT_CHECK(rademacher_bad == 0 && rademacher_checked > 0,
             "%zu of %zu Rademacher z differ from the bits of curand4's words", rademacher_bad,
             rademacher_checked);
}

struct normal_stats {
    size_t compared, identical, model_mismatch, beyond_bound;
    double max_abs_diff, bound_at_max, worst_ratio;
};

/* One Box-Muller pair from cuRAND (got) against its transform modelled above (bit for bit) and
 * against zotune's of the same words (within tests/rng/curand_normal_bound.h's bound). */
static void compare_pair(struct normal_stats *st, float got_first, float got_second, uint32_t x,
                         uint32_t y) {
    const zt_f32x2 ours = zt_box_muller(x, y), model = zt_curand_host_box_muller(x, y);
    const float got[2] = {got_first, got_second}, want[2] = {ours.x, ours.y};
    const float modelled[2] = {model.x, model.y};
    for (int i = 0; i < 2; i++) {
        const double diff = fabs((double)got[i] - want[i]);
        const double bound = zt_curand_normal_bound(x, y, want[i], got[i], ZT_CURAND_HOST_BUILD);
        st->compared++;
        st->identical += zt_f32_bits(got[i]) == zt_f32_bits(want[i]);
        st->model_mismatch += zt_f32_bits(got[i]) != zt_f32_bits(modelled[i]);
        st->beyond_bound += !(diff <= bound);
        if (diff > st->max_abs_diff) {
            st->max_abs_diff = diff;
            st->bound_at_max = bound;
        }
        if (diff / bound > st->worst_ratio) st->worst_ratio = diff / bound;
    }
}

static void test_normals(void) {
    struct normal_stats st = {0, 0, 0, 0, 0.0, 0.0, 0.0};
    const size_t normal_blocks = 100000;
    for (size_t i = 0; i < TRIPLE_COUNT + normal_blocks; i++) {
        struct triple t = i < TRIPLE_COUNT ? triple_at(i) : triple_at(TRIPLE_COUNT + i);
        curandStatePhilox4_32_10_t state;
        uint32_t w[8];
        for (uint64_t k = 0; k < 8; k++)
            w[k] = model_word(t.seed, t.subsequence, t.offset, k);
        /* curand_normal4: pairs (0,1), (2,3) of the next four words. */
        curand_init(t.seed, t.subsequence, t.offset, &state);
        float4 n4 = curand_normal4(&state);
        compare_pair(&st, n4.x, n4.y, w[0], w[1]);
        compare_pair(&st, n4.z, n4.w, w[2], w[3]);
        if (i >= TRIPLE_COUNT / 4) continue; /* the other forms on a subset */
        /* curand_normal2 and the caching curand_normal: pairs (0,1), (2,3), ... */
        curand_init(t.seed, t.subsequence, t.offset, &state);
        float2 n2 = curand_normal2(&state);
        compare_pair(&st, n2.x, n2.y, w[0], w[1]);
        curand_init(t.seed, t.subsequence, t.offset, &state);
        for (int pair = 0; pair < 4; pair++) {
            float first = curand_normal(&state);
            float second = curand_normal(&state);
            compare_pair(&st, first, second, w[2 * pair], w[2 * pair + 1]);
        }
    }
    /* The engine's own z against curand_normal4 at its cuRAND address. */
    size_t engine_beyond = 0, engine_compared = 0;
    double engine_max = 0.0;
    for (uint64_t block = 0; block < 5000; block++) {
        uint64_t key = zt_tensor_key(77, (uint32_t)block % 7);
        uint64_t addressed = block * 0x9E3779B97F4A7C15ull >> (block % 64);
        curandStatePhilox4_32_10_t state;
        curand_init(key, addressed & 0xFFFFu, 4 * (addressed >> 16), &state);
        float4 n4 = curand_normal4(&state);
        zt_f32x4 z = zt_z_gauss_block4(key, addressed);
        zt_u32x4 bits = zt_z_bits_block4(key, addressed);
        float got[4] = {n4.x, n4.y, n4.z, n4.w}, want[4] = {z.x, z.y, z.z, z.w};
        uint32_t words[4] = {bits.x, bits.y, bits.z, bits.w};
        for (int l = 0; l < 4; l++) {
            const uint32_t x = words[l & 2], y = words[(l & 2) + 1];
            const double diff = fabs((double)got[l] - want[l]);
            engine_beyond +=
                !(diff <= zt_curand_normal_bound(x, y, want[l], got[l], ZT_CURAND_HOST_BUILD));
            if (diff > engine_max) engine_max = diff;
            engine_compared++;
        }
    }
    const double bound_max = zt_curand_normal_bound_max(ZT_CURAND_HOST_BUILD);
    printf("normals: %zu compared, %zu bit-identical to zotune's; max |ours - cuRAND| %.3g (its "
           "bound %.3g; bound over all words %.3g), max |diff| / bound %.3g; engine z at its "
           "cuRAND address: max |diff| %.3g over %zu\n",
           st.compared, st.identical, st.max_abs_diff, st.bound_at_max, bound_max, st.worst_ratio,
           engine_max, engine_compared);
    ZT_CHECK(st.model_mismatch == 0, "%zu cuRAND normals differ from its transform modelled here",
             st.model_mismatch);
    ZT_CHECK(st.beyond_bound == 0, "%zu of ours beyond the bound of cuRAND's", st.beyond_bound);
    ZT_CHECK(st.max_abs_diff <= bound_max, "max |ours - cuRAND| %g > %g", st.max_abs_diff,
             bound_max);
    ZT_CHECK(engine_beyond == 0, "%zu engine z beyond the bound of curand_normal4's",
             engine_beyond);
}

int main(void) {
    test_integers_and_uniforms();
    test_counter_carry();
    test_engine_addressing();
    test_normals();
    return zt_test_finish("test_curand_kernel");
}
