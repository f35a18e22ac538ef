/* Oracle: cuRAND's own host generator (libcurand, CURAND_RNG_PSEUDO_PHILOX4_32_10, default
 * ordering), which runs on the CPU and needs no GPU.
 *
 * Its layout, measured here: output k of a generate call is the stream element m = offset + k,
 * and element m is lane m % 4 of Philox(counter = {lo32(m >> 18), hi32(m >> 18),
 * (m / 4) mod 2^16, 0}, key = seed), i.e. curand_init(seed, subsequence = (m / 4) mod 2^16,
 * offset = 4 * floor(m / 2^18)): 65536 virtual threads, each stepping its own subsequence.
 * The engine addresses z exactly so (kernels/common/perturb_rng.h), hence the generator seeded
 * with a tensor key reproduces that tensor's z at every index: checked here past the 2^16 and
 * 2^18 wrap points and at 2^20 elements. Rademacher element j is bit j % 32 of word j / 32. */
#include <curand.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "common/philox.h"
#include "rng/curand_normal_bound.h"
#include "zt_test.h"

#define GENERATOR_THREADS 65536u /* virtual threads (subsequences) of the host generator */

/* The Philox block holding generator element m, as described above. */
static zt_u32x4 generator_block(uint64_t seed, uint64_t m) {
    uint64_t block = m / 4;
    zt_u32x4 ctr = zt_philox_counter(block % GENERATOR_THREADS, block / GENERATOR_THREADS);
    return zt_philox4x32_10(ctr, zt_philox_key(seed));
}

static uint32_t generator_word(uint64_t seed, uint64_t m) {
    return zt_u32x4_lane(generator_block(seed, m), (unsigned)(m % 4));
}

static int status_ok(curandStatus_t status, const char *what) {
    ZT_CHECK(status == CURAND_STATUS_SUCCESS, "%s -> status %d", what, (int)status);
    return status == CURAND_STATUS_SUCCESS;
}

/* Setting the seed does not rewind a generator: it continues from where the last call ended
 * unless the offset is set again, so every case sets both. */
static int reset(curandGenerator_t gen, uint64_t seed, uint64_t offset) {
    return status_ok(curandSetPseudoRandomGeneratorSeed(gen, seed), "seed") &&
           status_ok(curandSetGeneratorOffset(gen, offset), "offset");
}

static const uint64_t plain_seeds[] = {
    0, 1, 42, 0xFFFFFFFFull, 0x100000000ull, 0xFFFFFFFFFFFFFFFFull, 0x123456789ABCDEF0ull};

#define SEED_COUNT (sizeof plain_seeds / sizeof plain_seeds[0] + 4)

static uint64_t seed_at(size_t i) {
    if (i < sizeof plain_seeds / sizeof plain_seeds[0]) return plain_seeds[i];
    /* Tensor keys as the engine makes them. */
    static const uint32_t tensors[] = {0, 1, 77, 0xFFFFFFFFu};
    return zt_tensor_key(i * 1000003u, tensors[i - sizeof plain_seeds / sizeof plain_seeds[0]]);
}

static void test_integer_stream(curandGenerator_t gen) {
    /* Non-multiples of 4, the 2^16 and 2^18 (layout wrap) boundaries, and past them. */
    static const size_t lengths[] = {1, 2, 3, 5, 7, 4097, 65535, 65537, 262143, 262147, 1048579};
    size_t max_length = lengths[sizeof lengths / sizeof lengths[0] - 1];
    uint32_t *words = malloc(max_length * sizeof *words);
    if (!words) exit(1);
    for (size_t s = 0; s < SEED_COUNT; s++) {
        uint64_t seed = seed_at(s);
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            size_t n = lengths[l];
            if (!reset(gen, seed, 0) || !status_ok(curandGenerate(gen, words, n), "generate"))
                continue;
            size_t layout_mismatches = 0, z_mismatches = 0, z_compared = 0, sign_mismatches = 0;
            size_t signs_compared = 0;
            uint64_t block = UINT64_MAX;
            zt_u32x4 z_bits = {0, 0, 0, 0};
            for (size_t m = 0; m < n; m++) {
                layout_mismatches += words[m] != generator_word(seed, m);
                if (m / 4 != block) z_bits = zt_z_bits_block4(seed, block = m / 4);
                z_mismatches += words[m] != zt_u32x4_lane(z_bits, (unsigned)(m % 4));
                z_compared++;
                /* Rademacher z packs 32 elements per word: elements 32m .. 32m+31 are the bits
                 * of cuRAND's word m, low bit first, -1 where set. Every bit of every word in
                 * the short lengths and of the 4096 words on either side of the 2^18-word layout
                 * wrap (element 2^23); one bit per word elsewhere, through the element form, so
                 * the long lengths stay quick. */
                if (n <= 65537 || (m + 4096 >= 262144 && m < 262144 + 4096)) {
                    for (uint64_t b4 = 8 * (uint64_t)m; b4 < 8 * (uint64_t)m + 8; b4++) {
                        const zt_f32x4 z = zt_z_rademacher_block4(seed, b4);
                        for (unsigned lane = 0; lane < 4; lane++) {
                            const unsigned bit = (unsigned)(4 * (b4 % 8) + lane);
                            const float sign = ((words[m] >> bit) & 1u) ? -1.0f : 1.0f;
                            sign_mismatches += zt_f32x4_lane(z, lane) != sign;
                            signs_compared++;
                        }
                    }
                } else {
                    const unsigned bit = (unsigned)((m * 7) % 32);
                    const float sign = ((words[m] >> bit) & 1u) ? -1.0f : 1.0f;
                    sign_mismatches += zt_z_rademacher_at(seed, 32 * (uint64_t)m + bit) != sign;
                    signs_compared++;
                }
            }
            ZT_CHECK(sign_mismatches == 0,
                     "seed %" PRIx64 " n %zu: %zu of %zu Rademacher signs differ from the bits of "
                     "cuRAND's words",
                     seed, n, sign_mismatches, signs_compared);
            ZT_CHECK(layout_mismatches == 0, "seed %" PRIx64 " n %zu: %zu words differ", seed, n,
                     layout_mismatches);
            ZT_CHECK(z_mismatches == 0, "seed %" PRIx64 " n %zu: %zu of %zu z words differ", seed,
                     n, z_mismatches, z_compared);
        }
    }
    /* Offsets: output k is element offset + k, offsets need not be multiples of 4. */
    static const uint64_t offsets[] = {1, 2, 3, 5, 262141, 1000003, (1ull << 40) + 3};
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
        size_t n = 70001;
        if (!reset(gen, 42, offsets[o]) || !status_ok(curandGenerate(gen, words, n), "generate"))
            continue;
        size_t mismatches = 0;
        for (size_t k = 0; k < n; k++)
            mismatches += words[k] != generator_word(42, offsets[o] + k);
        ZT_CHECK(mismatches == 0, "offset %" PRIu64 ": %zu differ", offsets[o], mismatches);
    }
    /* A second call continues the stream. */
    if (reset(gen, 9, 0) && status_ok(curandGenerate(gen, words, 6), "generate") &&
        status_ok(curandGenerate(gen, words + 6, 10), "generate")) {
        size_t mismatches = 0;
        for (size_t m = 0; m < 16; m++)
            mismatches += words[m] != generator_word(9, m);
        ZT_CHECK(mismatches == 0, "continued stream: %zu differ", mismatches);
    }
    free(words);
}

static void test_uniform(curandGenerator_t gen) {
    size_t n = 300001;
    float *values = malloc(n * sizeof *values);
    if (!values) exit(1);
    for (size_t s = 0; s < SEED_COUNT; s += 3) {
        uint64_t seed = seed_at(s);
        if (!reset(gen, seed, 0) || !status_ok(curandGenerateUniform(gen, values, n), "uniform"))
            continue;
        size_t mismatches = 0;
        for (size_t m = 0; m < n; m++) {
            float want = zt_uniform_from_u32(generator_word(seed, m));
            mismatches += zt_f32_bits(values[m]) != zt_f32_bits(want);
        }
        ZT_CHECK(mismatches == 0, "uniform seed %" PRIx64 ": %zu differ", seed, mismatches);
    }
    free(values);
}

/* Normals: each pair (2i, 2i+1) is one Box-Muller of the words at 2i, 2i+1 (sine first). They are
 * cuRAND's transform, which this checks bit for bit against the model above (so the words, u and
 * angle are cuRAND's); zotune's transform of the same words (kernels/common/box_muller.h) is its
 * own, so ours is checked within the bound of tests/rng/curand_normal_bound.h and the largest
 * difference printed. The engine's z at index m is ours at every index. */
static void test_normal(curandGenerator_t gen) {
    static const size_t lengths[] = {2, 6, 4098, 262146, 1048578};
    size_t max_length = lengths[sizeof lengths / sizeof lengths[0] - 1];
    float *values = malloc(max_length * sizeof *values);
    if (!values) exit(1);
    double max_abs_diff = 0, worst_ratio = 0, bound_at_max = 0;
    size_t compared = 0, identical = 0, model_mismatches = 0, z_mismatches = 0, beyond_bound = 0;
    for (size_t s = 0; s < SEED_COUNT; s++) {
        uint64_t seed = seed_at(s);
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            size_t n = lengths[l];
            if (!reset(gen, seed, 0) ||
                !status_ok(curandGenerateNormal(gen, values, n, 0.0f, 1.0f), "normal"))
                continue;
            for (size_t m = 0; m < n; m += 2) {
                zt_u32x4 block = generator_block(seed, m);
                uint32_t x = m % 4 == 0 ? block.x : block.z, y = m % 4 == 0 ? block.y : block.w;
                zt_f32x2 ours = zt_box_muller(x, y), model = zt_curand_host_box_muller(x, y);
                float mine[2] = {ours.x, ours.y}, modelled[2] = {model.x, model.y};
                for (int i = 0; i < 2; i++) {
                    const float theirs = values[m + i];
                    double diff = fabs((double)theirs - mine[i]);
                    double bound =
                        zt_curand_normal_bound(x, y, mine[i], theirs, ZT_CURAND_HOST_BUILD);
                    if (diff > max_abs_diff) {
                        max_abs_diff = diff;
                        bound_at_max = bound;
                    }
                    if (diff / bound > worst_ratio) worst_ratio = diff / bound;
                    identical += zt_f32_bits(theirs) == zt_f32_bits(mine[i]);
                    model_mismatches += zt_f32_bits(theirs) != zt_f32_bits(modelled[i]);
                    beyond_bound += !(diff <= bound);
                    compared++;
                    /* The engine's z is this same value at every index. */
                    if (zt_f32_bits(mine[i]) != zt_f32_bits(zt_z_gauss_at(seed, m + i)))
                        z_mismatches++;
                }
            }
        }
    }
    const double bound_max = zt_curand_normal_bound_max(ZT_CURAND_HOST_BUILD);
    /* tools/readme_numbers.py reads the number after the last "max |diff|" of this line */
    printf("curandGenerateNormal vs zt_box_muller: %zu values, %zu "
           "bit-identical; largest |diff| / bound %.3g; bound %.3g there, %.3g over all words; "
           "max |diff| %.3g\n",
           compared, identical, worst_ratio, bound_at_max, bound_max, max_abs_diff);
    ZT_CHECK(model_mismatches == 0, "%zu cuRAND normals differ from its transform modelled here",
             model_mismatches);
    ZT_CHECK(beyond_bound == 0, "%zu of ours beyond the bound of cuRAND's", beyond_bound);
    ZT_CHECK(max_abs_diff <= bound_max, "max |ours - cuRAND| %g > %g", max_abs_diff, bound_max);
    ZT_CHECK(z_mismatches == 0, "engine z vs our generator-layout normals: %zu differ",
             z_mismatches);
    free(values);
}

int main(void) {
    curandGenerator_t gen;
    curandStatus_t status = curandCreateGeneratorHost(&gen, CURAND_RNG_PSEUDO_PHILOX4_32_10);
    if (status != CURAND_STATUS_SUCCESS) {
        printf("SKIP: curandCreateGeneratorHost(PHILOX4_32_10) failed with status %d\n",
               (int)status);
        return ZT_SKIP_EXIT;
    }
    curandOrdering_t ordering = CURAND_ORDERING_PSEUDO_DEFAULT;
    status_ok(curandSetGeneratorOrdering(gen, ordering), "default ordering");
    test_integer_stream(gen);
    test_uniform(gen);
    test_normal(gen);
    status_ok(curandDestroyGenerator(gen), "destroy");
    return zt_test_finish("test_curand_host");
}
