/* Every z path of the CPU backend (kernels/cpu/rng_blocks.h) against the scalar definitions of
 * kernels/common/perturb_rng.h, bit for bit: Philox words of both streams, Gaussian and
 * Rademacher z over runs that start anywhere (inside one of Rademacher's 128-element Philox
 * blocks too), cross the 2^16-block counter boundary and reach the top of the 64-bit block range,
 * and the transform alone on chosen words (u = 1, every octant boundary, both ends of each octant).
 * A path this CPU cannot run is reported and skipped; the portable path always runs, and on x86-64
 * CI machines the AVX2 one too. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/perturb_rng.h"
#include "cpu/rng_blocks.h"
#include "zt_test.h"

#define MAX_BLOCKS 4133 /* odd, so the vector paths leave a scalar tail */

static uint32_t float_bits(float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

typedef struct run {
    uint64_t key, first_block;
    size_t n_blocks;
} run;

static void check_runs(zt_cpu_rng_path path, const run *runs, int n_runs) {
    float *values = malloc(4 * MAX_BLOCKS * sizeof *values);
    uint32_t *words = malloc(4 * MAX_BLOCKS * sizeof *words);
    ZT_CHECK(values != NULL && words != NULL, "no memory");
    if (values == NULL || words == NULL) goto done;
    for (int r = 0; r < n_runs; r++) {
        const run *c = &runs[r];
        size_t gauss_bad = 0, rademacher_bad = 0, z_word_bad = 0, sr_word_bad = 0;
        zt_cpu_gauss_blocks(path, c->key, c->first_block, c->n_blocks, values);
        for (size_t i = 0; i < c->n_blocks; i++) {
            const zt_f32x4 want = zt_z_gauss_block4(c->key, c->first_block + i);
            for (unsigned lane = 0; lane < 4; lane++)
                gauss_bad +=
                    float_bits(values[4 * i + lane]) != float_bits(zt_f32x4_lane(want, lane));
        }
        zt_cpu_rademacher_blocks(path, c->key, c->first_block, c->n_blocks, values);
        for (size_t i = 0; i < c->n_blocks; i++) {
            const zt_f32x4 want = zt_z_rademacher_block4(c->key, c->first_block + i);
            for (unsigned lane = 0; lane < 4; lane++)
                rademacher_bad +=
                    float_bits(values[4 * i + lane]) != float_bits(zt_f32x4_lane(want, lane));
        }
        zt_cpu_stream_words(path, c->key, ZT_RNG_STREAM_Z, c->first_block, c->n_blocks, words);
        for (size_t i = 0; i < c->n_blocks; i++) {
            const zt_u32x4 want = zt_z_bits_block4(c->key, c->first_block + i);
            for (unsigned lane = 0; lane < 4; lane++)
                z_word_bad += words[4 * i + lane] != zt_u32x4_lane(want, lane);
        }
        zt_cpu_stream_words(path, c->key, ZT_RNG_STREAM_SR, c->first_block, c->n_blocks, words);
        for (size_t i = 0; i < c->n_blocks; i++) {
            const zt_u32x4 want = zt_sr_bits_block4(c->key, c->first_block + i);
            for (unsigned lane = 0; lane < 4; lane++)
                sr_word_bad += words[4 * i + lane] != zt_u32x4_lane(want, lane);
        }
        ZT_CHECK(gauss_bad + rademacher_bad + z_word_bad + sr_word_bad == 0,
                 "%s: key %016" PRIx64 " blocks [%" PRIu64 ", +%zu): %zu Gaussian, %zu "
                 "Rademacher, %zu z words, %zu SR words differ from the scalar definitions",
                 zt_cpu_rng_path_name(path), c->key, c->first_block, c->n_blocks, gauss_bad,
                 rademacher_bad, z_word_bad, sr_word_bad);
    }
done:
    free(values);
    free(words);
}

/* Words that exercise every branch of the transform, then a stride through all 2^32. */
static size_t chosen_words(uint32_t *x, uint32_t *y, size_t capacity) {
    size_t n = 0;
    static const uint32_t edges[] = {0u,          1u,          2u,          0x7Fu,
                                     0x80u,       0xFFFFFF7Fu, 0xFFFFFF80u, 0xFFFFFFFEu,
                                     0xFFFFFFFFu, 0x3504F300u, 0x6A09E667u, 0xB504F333u};
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        for (uint32_t octant = 0; octant < 8; octant++) {
            const uint32_t base = octant << 29;
            const uint32_t near_ends[] = {base, base + 1u, base + ZT_BM_OCTANT_MASK,
                                          base + ZT_BM_OCTANT_MASK - 1u, base + (1u << 28)};
            for (size_t k = 0; k < 5 && n < capacity; k++, n++) {
                x[n] = edges[e];
                y[n] = near_ends[k];
            }
        }
    for (uint64_t v = 12345; v < (1ull << 32) && n < capacity; v += 4294967u, n++) {
        x[n] = (uint32_t)v;
        y[n] = (uint32_t)(v * 2654435761u);
    }
    return n;
}

static void check_transform(zt_cpu_rng_path path) {
    enum { CAPACITY = 1024 + 12 * 8 * 5 };
    uint32_t *x = malloc(CAPACITY * sizeof *x), *y = malloc(CAPACITY * sizeof *y);
    float *first = malloc(CAPACITY * sizeof *first), *second = malloc(CAPACITY * sizeof *second);
    ZT_CHECK(x && y && first && second, "no memory");
    if (x && y && first && second) {
        const size_t n = chosen_words(x, y, CAPACITY);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            first[i] = second[i] = -12345.0f;
        zt_cpu_box_muller_pairs(path, x, y, n, first, second);
        for (size_t i = 0; i < n; i++) {
            const zt_f32x2 want = zt_box_muller(x[i], y[i]);
            if (float_bits(first[i]) != float_bits(want.x) ||
                float_bits(second[i]) != float_bits(want.y)) {
                if (bad++ < 5)
                    fprintf(stderr, "  %s: words (%08x, %08x): (%a, %a), scalar (%a, %a)\n",
                            zt_cpu_rng_path_name(path), x[i], y[i], first[i], second[i], want.x,
                            want.y);
            }
        }
        ZT_CHECK(bad == 0, "%s: %zu of %zu transformed pairs differ from zt_box_muller",
                 zt_cpu_rng_path_name(path), bad, n);
    }
    free(x);
    free(y);
    free(first);
    free(second);
}

int main(void) {
    const run runs[] = {
        {0x0123456789ABCDEFull, 0, MAX_BLOCKS},
        {0x0123456789ABCDEFull, 3, 1},
        {0x0123456789ABCDEFull, 5, 8},
        {0xFEDCBA9876543210ull, 65536 - 13, 40},             /* crosses counter word 0 */
        {zt_tensor_key(7, 3), (1ull << 32) * 65536 - 5, 29}, /* crosses into counter word 1 */
        {zt_tensor_key(9, 1), UINT64_MAX / 4 - 100, 100},    /* the last blocks of a tensor */
        {zt_tensor_key(11, 250), 123456789, MAX_BLOCKS},
        /* Rademacher packs 32 blocks into one Philox block: runs that start and end inside one,
         * whole ones in counts that leave the vector paths a short last group (9, 17), and its
         * own counter crossings (Philox block 2^16, 2^48, at blocks 2^21 and 2^53). */
        {0x0123456789ABCDEFull, 31, 1},
        {0x0123456789ABCDEFull, 33, 30},
        {0x0123456789ABCDEFull, 32 * 3, 32 * 9},
        {0x0123456789ABCDEFull, 32 * 5 + 7, 32 * 17},
        {0x0123456789ABCDEFull, 64, 32 * 40}, /* AVX-512: two groups, then eight for AVX2 */
        {zt_tensor_key(3, 8), 32 * 65536 - 70, 200},
        {zt_tensor_key(5, 2), (1ull << 53) - 40, 100},
    };
    const int n_runs = (int)(sizeof runs / sizeof runs[0]);
    int n_checked = 0;
    for (int p = 0; p < ZT_CPU_RNG_N_PATHS; p++) {
        const zt_cpu_rng_path path = (zt_cpu_rng_path)p;
        if (!zt_cpu_rng_path_available(path)) {
            printf("path %s: not available on this CPU, not checked\n", zt_cpu_rng_path_name(path));
            continue;
        }
        check_runs(path, runs, n_runs);
        check_transform(path);
        n_checked++;
        printf("path %s: checked\n", zt_cpu_rng_path_name(path));
    }
    printf("active path: %s\n", zt_cpu_rng_path_name(zt_cpu_rng_active_path()));
    ZT_CHECK(n_checked >= 1, "no path ran");
    return zt_test_finish("rng_paths");
}
