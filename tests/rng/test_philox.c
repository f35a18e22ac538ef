/* Philox4x32-10 and the z / stochastic-rounding helpers without any cuRAND: published vectors,
 * edge values, the addressing identities, and statistics with bounds of 5 standard errors (a
 * correct generator fails one with probability ~6e-7; the seeds are fixed, so a run is
 * deterministic anyway). */
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

#define SAMPLE_COUNT 1000000u
#define SIGMA_BOUND 5.0

static zt_u32x4 u32x4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) {
    zt_u32x4 v = {x, y, z, w};
    return v;
}

static int u32x4_equal(zt_u32x4 a, zt_u32x4 b) {
    return a.x == b.x && a.y == b.y && a.z == b.z && a.w == b.w;
}

static int same_float_bits(float a, float b) {
    return zt_f32_bits(a) == zt_f32_bits(b);
}

/* Random123's kat_vectors for philox4x32_10 (docs/spec.md §5.1). */
static void test_known_answers(void) {
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } rows[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        zt_u32x2 key = {rows[i].key[0], rows[i].key[1]};
        zt_u32x4 got = zt_philox4x32_10(
            u32x4(rows[i].ctr[0], rows[i].ctr[1], rows[i].ctr[2], rows[i].ctr[3]), key);
        zt_u32x4 want = u32x4(rows[i].out[0], rows[i].out[1], rows[i].out[2], rows[i].out[3]);
        ZT_CHECK(u32x4_equal(got, want), "KAT row %zu: got %08x %08x %08x %08x", i, got.x, got.y,
                 got.z, got.w);
    }
}

/* Word i of the curand() stream after curand_init(seed, subsequence, offset): the 128-bit counter
 * subsequence*2^64 + block, lane by lane (docs/spec.md §5.2-5.3; curand_init never reaches the
 * quirky carries from a zero counter). */
static uint32_t curand_stream_word(uint64_t seed, uint64_t subsequence, uint64_t offset,
                                   uint64_t i) {
    uint64_t position_in_block = offset % 4 + i;
    uint64_t block = offset / 4 + position_in_block / 4;
    if (block < offset / 4) subsequence++; /* carry out of the low 64 counter bits */
    zt_u32x4 out = zt_philox4x32_10(zt_philox_counter(subsequence, block), zt_philox_key(seed));
    return zt_u32x4_lane(out, (unsigned)(position_in_block % 4));
}

/* The integer rows of docs/spec.md §5.3. */
static void test_spec_stream_rows(void) {
    static const struct {
        uint64_t init[3]; /* seed, subsequence, offset */
        uint32_t words[8];
    } rows[] = {
        {{0, 0, 0},
         {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8, 0xf8e4cca4, 0x5cb200db, 0xb1a574eb,
          0x097eff67}},
        {{42, 0, 0},
         {0x9ceaf053, 0x77f5493b, 0x12bf50ad, 0x5742b3d7, 0xfcdb2127, 0x53ba6cfd, 0x838f5a6e,
          0x744e06fb}},
        {{42, 1, 0},
         {0x02933769, 0x2051e913, 0x3b68b038, 0xb62c409c, 0x20ff9139, 0xfdd21d94, 0x1b0af4ec,
          0x39c6bd08}},
        {{42, 0, 5},
         {0x53ba6cfd, 0x838f5a6e, 0x744e06fb, 0xd36c0225, 0xa8875dcb, 0x9a4d6d99, 0xc609a559,
          0xbac70475}},
        {{0x123456789abcdef0ull, 3, 7},
         {0x468c909c, 0xe10702f6, 0xea1fdccd, 0x6c572861, 0x1d96aaf0, 0x46313ed5, 0x0230693d,
          0x27913a71}},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        for (uint64_t i = 0; i < 8; i++) {
            uint32_t got = curand_stream_word(rows[r].init[0], rows[r].init[1], rows[r].init[2], i);
            ZT_CHECK(got == rows[r].words[i], "row %zu word %" PRIu64 ": got %08x want %08x", r, i,
                     got, rows[r].words[i]);
        }
    }
    /* The engine's z block is that stream at offset 0 of subsequence = block. */
    uint64_t key = zt_tensor_key(7, 3);
    for (uint64_t block = 0; block < 4; block++) {
        zt_u32x4 z = zt_z_bits_block4(key, block);
        for (unsigned lane = 0; lane < 4; lane++)
            ZT_CHECK(zt_u32x4_lane(z, lane) == curand_stream_word(key, block, 0, lane),
                     "block %" PRIu64 " lane %u", block, lane);
    }
}

/* Reference values printed by the host-path emulation of docs/spec.md §5.5 (cuRAND's transform:
 * libm logf / sinf / cosf), 8 significant digits. The uniforms are cuRAND's bit for bit, so they
 * agree to what the printing allows (2e-7 relative); zotune's normals are its own transform of the
 * same words, so they lie within the bound of tests/rng/curand_normal_bound.h of cuRAND's, plus
 * the printing's rounding. */
static void test_spec_float_values(void) {
    const zt_u32x4 bits42 = zt_philox4x32_10(u32x4(0, 0, 0, 0), zt_philox_key(42));
    const zt_u32x4 bits0 = zt_philox4x32_10(u32x4(0, 0, 0, 0), zt_philox_key(0));
    const zt_f32x4 normal42 = zt_box_muller4(bits42), normal0 = zt_box_muller4(bits0);
    const float want_uniform42[4] = {0.61295986f, 0.46858650f, 0.073231734f, 0.34086156f};
    const float want_normal42[4] = {0.19401887f, -0.97018981f, 1.9239266f, -1.2356212f};
    const float want_normal0[4] = {-0.92466241f, 0.99113774f, -0.48206875f, -0.61760885f};
    double worst_ratio = 0.0;
    for (unsigned lane = 0; lane < 4; lane++) {
        ZT_CHECK_CLOSE(zt_uniform_from_u32(zt_u32x4_lane(bits42, lane)), want_uniform42[lane], 0,
                       2e-7, "uniform4 (42,0,0) lane %u", lane);
        const unsigned first = lane & 2u; /* the pair's words: (x, y) or (z, w) */
        for (int s = 0; s < 2; s++) {
            const zt_u32x4 bits = s ? bits0 : bits42;
            const float ours = zt_f32x4_lane(s ? normal0 : normal42, lane);
            const float theirs = s ? want_normal0[lane] : want_normal42[lane];
            const double bound =
                zt_curand_normal_bound(zt_u32x4_lane(bits, first), zt_u32x4_lane(bits, first + 1),
                                       ours, theirs, ZT_CURAND_HOST_BUILD) +
                2e-7 * fabs(theirs);
            const double diff = fabs((double)ours - theirs);
            if (diff / bound > worst_ratio) worst_ratio = diff / bound;
            ZT_CHECK(diff <= bound,
                     "normal4 (%d,0,0) lane %u: ours %.9g, cuRAND's %.9g, |diff| "
                     "%.3g > %.3g",
                     s ? 0 : 42, lane, ours, theirs, diff, bound);
        }
    }
    printf("spec normals: ours against cuRAND's printed values, max |diff| / bound %.3g\n",
           worst_ratio);
}

static void test_uniform_and_box_muller_edges(void) {
    /* The constants are what cuRAND's float literals evaluate to. */
    volatile float inv32 = 2.3283064e-10f, two_pi = 6.2831855f;
    ZT_CHECK(same_float_bits(ZT_RNG_2POW32_INV, inv32), "2^-32");
    ZT_CHECK(same_float_bits(ZT_RNG_2POW32_INV_2PI, inv32 * two_pi), "2^-32 * 2pi");

    ZT_CHECK(same_float_bits(zt_uniform_from_u32(0), 0x1p-33f), "x=0 -> 2^-33");
    ZT_CHECK(same_float_bits(zt_uniform_from_u32(1), 0x3p-33f), "x=1 -> 3*2^-33");
    ZT_CHECK(zt_f32_bits(zt_uniform_from_u32(0xFFFFFF7Fu)) == 0x3F7FFFFFu, "-> 0.99999994");
    ZT_CHECK(same_float_bits(zt_uniform_from_u32(0xFFFFFF80u), 1.0f), "0xFFFFFF80 -> 1");
    ZT_CHECK(same_float_bits(zt_uniform_from_u32(0xFFFFFFFFu), 1.0f), "max -> 1");
    float previous = 0.0f;
    int monotone_in_range = 1, same_u = 1;
    for (uint64_t x = 0; x <= 0xFFFFFFFFull; x += 65521) { /* prime stride: all residues */
        float u = zt_uniform_from_u32((uint32_t)x);
        if (!(u > 0.0f && u <= 1.0f && u >= previous)) monotone_in_range = 0;
        /* the transform's u is curand_uniform's, bit for bit */
        if (!same_float_bits(zt_box_muller_u((uint32_t)x), u)) same_u = 0;
        previous = u;
    }
    ZT_CHECK(monotone_in_range, "uniform in (0,1] and non-decreasing in x");
    ZT_CHECK(same_u, "zt_box_muller_u = zt_uniform_from_u32");

    /* u = 1 gives radius 0; the smallest u gives the largest radius, sqrt(66 ln 2). */
    zt_f32x2 zero_radius = zt_box_muller(0xFFFFFFFFu, 0x12345678u);
    ZT_CHECK(zero_radius.x == 0.0f && zero_radius.y == 0.0f, "u=1 -> 0, 0");
    const double max_radius = sqrt(66.0 * log(2.0));
    ZT_CHECK_CLOSE(zt_bm_radius(0), max_radius, ZT_BM_RADIUS_ULPS * zt_f32_ulp(max_radius), 0,
                   "max radius");
    /* y = 2^30: the angle is half a step past pi/2, all on the sine; within 1.5 ulp of the radius
     * + radius * 1.3e-7 + half an ulp of the product (1.9e-6) of the exact values */
    zt_f32x2 at_max = zt_box_muller(0, 0x40000000u);
    ZT_CHECK_CLOSE(at_max.x, max_radius * sin(zt_exact_angle(0x40000000u)), 2e-6, 0,
                   "x=0, angle ~pi/2: sine");
    ZT_CHECK_CLOSE(at_max.y, max_radius * cos(zt_exact_angle(0x40000000u)), 2e-6, 0,
                   "x=0, angle ~pi/2: cosine");

    /* cuRAND's angle (zt_curand_angle, for the oracles): in (0, 2 pi] as a float, one rounding of
     * y*C + C/2 (fmaf), which double arithmetic resolves; it and the uncontracted form lie within
     * A(y) of the exact angle (tests/rng/curand_normal_bound.h). */
    ZT_CHECK(zt_curand_angle(0) > 0.0f, "v > 0");
    ZT_CHECK(zt_curand_angle(0xFFFFFFFFu) <= 6.2831855f, "v <= 2pi as float");
    ZT_CHECK(zt_curand_angle_uncontracted(0xFFFFFFFFu) <= 6.2831855f, "v <= 2pi as float");
    int fma_exact = 1, angle_beyond = 0;
    double worst_angle_ratio[2] = {0.0, 0.0};
    for (uint32_t i = 0; i < 200000; i++) {
        uint32_t word = i < 8 ? 0xFFFFFFFFu - i : i * 2654435761u;
        float fy = (float)word;
        double exact = (double)fy * (double)ZT_RNG_2POW32_INV_2PI; /* 48 bits: exact */
        float v = zt_curand_angle(word);
        double error = fabs((double)v - (exact + (double)ZT_RNG_2POW32_INV_2PI * 0.5));
        double half_ulp = ldexp(1.0, ilogb(v) - 24);
        if (error > half_ulp) fma_exact = 0;
        const float forms[2] = {v, zt_curand_angle_uncontracted(word)};
        for (int b = 0; b < 2; b++) {
            const double ratio =
                fabs((double)forms[b] - zt_exact_angle(word)) /
                zt_curand_angle_bound(word, b ? ZT_CURAND_HOST_BUILD : ZT_CURAND_DEVICE_BUILD);
            if (ratio > worst_angle_ratio[b]) worst_angle_ratio[b] = ratio;
            angle_beyond += !(ratio <= 1.0);
        }
    }
    printf("cuRAND's angle against 2 pi (y + 1/2) / 2^32: max |diff| / A(y) %.3g (FMA), %.3g "
           "(uncontracted)\n",
           worst_angle_ratio[0], worst_angle_ratio[1]);
    ZT_CHECK(fma_exact, "v within half an ulp of y*C + C/2");
    ZT_CHECK(angle_beyond == 0, "%d cuRAND angles beyond A(y)", angle_beyond);
}

/* zotune's transform against an independent double-precision reference: radius sqrt(-2 ln u)
 * from the same u, sin / cos of the exact angle 2 pi (y + 1/2) / 2^32. 2^20 words at a stride of
 * 2^12 with a varying offset inside each stride (so every octant and every residue class of the
 * low bits is hit), and the edges: 0, 1, the u = 1 threshold (0xFFFFFF7F -> u < 1, 0xFFFFFF80
 * -> u = 1), the top word, and both sides of every octant boundary k 2^29. */
#define ACCURACY_WORDS (1u << 20)

static uint32_t accuracy_word(uint32_t i) {
    static const uint32_t edges[] = {0u,          1u,          2u,          0xFFFFFF7Eu,
                                     0xFFFFFF7Fu, 0xFFFFFF80u, 0xFFFFFFFEu, 0xFFFFFFFFu,
                                     0x7FFFFFFFu, 0x80000000u};
    const uint32_t n_edges = sizeof edges / sizeof edges[0];
    if (i < n_edges) return edges[i];
    i -= n_edges;
    if (i < 3 * 8) { /* k 2^29 - 1, k 2^29, k 2^29 + 1 for k = 0..7 (k = 0 wraps to the top) */
        return (i / 3) * (1u << 29) + (i % 3) - 1u;
    }
    i -= 3 * 8;
    return i * 4096u + (uint32_t)(zt_mix64(i) & 4095u);
}

static void test_box_muller_accuracy(void) {
    const uint32_t n_words = ACCURACY_WORDS + 34;
    double worst_radius_ulps = 0.0, worst_sincos = 0.0, worst_pair_ratio = 0.0;
    size_t radius_bad = 0, zero_bad = 0, sincos_bad = 0, sign_bad = 0, octant_bad = 0;
    size_t pair_bad = 0, block_bad = 0, octants_checked = 0;
    uint32_t worst_radius_word = 0, worst_sincos_word = 0;
    for (uint32_t i = 0; i < n_words; i++) {
        const uint32_t word = accuracy_word(i);
        /* radius of x = word */
        const float u = zt_box_muller_u(word);
        const float radius = zt_bm_radius(word);
        if (u == 1.0f) {
            zero_bad += radius != 0.0f;
        } else {
            const double exact = sqrt(-2.0 * log((double)u));
            const double ulps = fabs((double)radius - exact) / zt_f32_ulp(exact);
            if (!(ulps <= worst_radius_ulps)) {
                worst_radius_ulps = ulps;
                worst_radius_word = word;
            }
            radius_bad += !(ulps <= ZT_BM_RADIUS_ULPS);
        }
        /* sin and cos of y = word */
        const zt_f32x2 sc = zt_bm_sincos_turn(word);
        const double theta = zt_exact_angle(word);
        const double sin_exact = sin(theta), cos_exact = cos(theta);
        const double error = fmax(fabs(sc.x - sin_exact), fabs(sc.y - cos_exact));
        if (!(error <= worst_sincos)) {
            worst_sincos = error;
            worst_sincos_word = word;
        }
        sincos_bad += !(error <= ZT_BM_SINCOS_ABS);
        /* theta is never a multiple of pi / 2, so neither is ever zero: the signs are exact */
        sign_bad += (signbit(sc.x) != 0) != (sin_exact < 0.0) ||
                    (signbit(sc.y) != 0) != (cos_exact < 0.0) || sc.x == 0.0f || sc.y == 0.0f;
        /* octant k = word >> 29 holds (k pi / 4, (k + 1) pi / 4): |sin| < |cos| in octants
         * 0, 3, 4, 7, |sin| > |cos| in the others, wherever the exact values differ by more
         * than the two errors (near the boundaries either order is within the accuracy) */
        const uint32_t octant = word >> 29;
        const int sine_smaller = octant == 0 || octant == 3 || octant == 4 || octant == 7;
        if (fabs(fabs(sin_exact) - fabs(cos_exact)) > 2.0 * ZT_BM_SINCOS_ABS) {
            octant_bad +=
                sine_smaller ? !(fabsf(sc.x) < fabsf(sc.y)) : !(fabsf(sc.x) > fabsf(sc.y));
            octants_checked++;
        }
        /* the pair (x, y) = (word, a second word) is the product of the two, each rounded once,
         * and lies within both errors of the exact r sin theta, r cos theta */
        const uint32_t y = (uint32_t)zt_mix64(word);
        const zt_f32x2 pair = zt_box_muller(word, y);
        const zt_f32x2 sc_y = zt_bm_sincos_turn(y);
        pair_bad +=
            !same_float_bits(pair.x, radius * sc_y.x) || !same_float_bits(pair.y, radius * sc_y.y);
        const double r_exact = u == 1.0f ? 0.0 : sqrt(-2.0 * log((double)u));
        const double angle = zt_exact_angle(y);
        const float pair_values[2] = {pair.x, pair.y};
        const double exact_values[2] = {r_exact * sin(angle), r_exact * cos(angle)};
        for (int k = 0; k < 2; k++) {
            /* |r s - R sin| <= |r - R| |s| + R |s - sin|, then the product's rounding */
            const double bound =
                (ZT_BM_RADIUS_ULPS * zt_f32_ulp(r_exact) + r_exact * ZT_BM_SINCOS_ABS) *
                    (1.0 + 0x1p-20) +
                0.5 * zt_f32_ulp(pair_values[k]);
            const double ratio = fabs(pair_values[k] - exact_values[k]) / bound;
            if (!(ratio <= worst_pair_ratio)) worst_pair_ratio = ratio;
            pair_bad += !(ratio <= 1.0);
        }
        /* a block's four normals are the two pairs, in curand_normal4's order */
        const zt_u32x4 block = u32x4(word, y, (uint32_t)zt_mix64(y), ~word);
        const zt_f32x4 four = zt_box_muller4(block);
        const zt_f32x2 first = zt_box_muller(block.x, block.y);
        const zt_f32x2 second = zt_box_muller(block.z, block.w);
        block_bad += !same_float_bits(four.x, first.x) || !same_float_bits(four.y, first.y) ||
                     !same_float_bits(four.z, second.x) || !same_float_bits(four.w, second.y);
    }
    printf("box-muller over %u words: radius max %.3f ulp (word %08x; bound %.2f), sin/cos max "
           "|error| %.3g (word %08x; bound %.2g), r sin / r cos max |error| / bound %.3g\n",
           n_words, worst_radius_ulps, worst_radius_word, ZT_BM_RADIUS_ULPS, worst_sincos,
           worst_sincos_word, ZT_BM_SINCOS_ABS, worst_pair_ratio);
    ZT_CHECK(radius_bad == 0, "%zu radii beyond %.2f ulp of sqrt(-2 ln u)", radius_bad,
             ZT_BM_RADIUS_ULPS);
    ZT_CHECK(zero_bad == 0, "%zu radii at u = 1 are not 0", zero_bad);
    ZT_CHECK(sincos_bad == 0, "%zu sin/cos beyond %g of the exact angle's", sincos_bad,
             ZT_BM_SINCOS_ABS);
    ZT_CHECK(sign_bad == 0, "%zu sin/cos with the wrong sign or zero", sign_bad);
    ZT_CHECK(octant_bad == 0 && octants_checked > n_words - 64,
             "%zu of %zu sin/cos in the wrong octant", octant_bad, octants_checked);
    ZT_CHECK(pair_bad == 0, "%zu pairs not r sin, r cos (bit for bit and within the bound)",
             pair_bad);
    ZT_CHECK(block_bad == 0, "%zu blocks of four differ from their two pairs", block_bad);
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static size_t count_duplicates(uint64_t *keys, size_t count) {
    qsort(keys, count, sizeof keys[0], compare_u64);
    size_t duplicates = 0;
    for (size_t i = 1; i < count; i++)
        duplicates += keys[i] == keys[i - 1];
    return duplicates;
}

static void test_tensor_keys(void) {
    /* One seed, many tensor ids: distinct by construction (a bijection of an injective map). */
    const uint64_t seeds[] = {
        0, 1, 42, 0xFFFFFFFFull, 0xFFFFFFFFFFFFFFFFull, 0x123456789abcdef0ull};
    const size_t tensor_count = 1u << 17;
    uint64_t *keys = malloc(SAMPLE_COUNT * sizeof *keys);
    if (!keys) exit(1);
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        for (size_t t = 0; t < tensor_count; t++)
            keys[t] = zt_tensor_key(seeds[s], (uint32_t)t);
        ZT_CHECK(count_duplicates(keys, tensor_count) == 0, "seed %" PRIu64, seeds[s]);
    }
    /* The largest ids too, and across seeds 0..999 x tensors 0..999: no collision among 10^6
     * keys (a random 64-bit function would collide with probability ~3e-8). */
    for (size_t t = 0; t < 1000; t++)
        keys[t] = zt_tensor_key(5, 0xFFFFFFFFu - (uint32_t)t);
    ZT_CHECK(count_duplicates(keys, 1000) == 0, "top ids");
    for (size_t s = 0; s < 1000; s++)
        for (size_t t = 0; t < 1000; t++)
            keys[s * 1000 + t] = zt_tensor_key(s, (uint32_t)t);
    ZT_CHECK(count_duplicates(keys, 1000000) == 0, "1000 seeds x 1000 tensors");
    free(keys);
    ZT_CHECK(zt_tensor_key(42, 7) == zt_tensor_key(42, 7), "pure function");
    ZT_CHECK(zt_tensor_key(42, 7) != zt_tensor_key(43, 7), "seed matters");
}

/* The element forms, block forms and stream words all name the same numbers. */
static void test_addressing(void) {
    const uint64_t seed = 0x0123456789ABCDEFull;
    const uint32_t tensor = 11;
    const uint64_t key = zt_tensor_key(seed, tensor);
    const uint64_t first_elements[] = {
        0, 1, 2, 3, 4, 5, 4 * 0xFFFFFFFFull - 2, 4 * 0x100000000ull + 1, 0xFFFFFFFFFFFFFFFFull - 8,
        /* Rademacher's word (32) and Philox block (128) edges, and its counter wraps */
        28, 124, (128ull << 16) - 4, (128ull << 48) - 2};
    for (size_t i = 0; i < sizeof first_elements / sizeof first_elements[0]; i++) {
        for (uint64_t j = first_elements[i]; j < first_elements[i] + 8; j++) {
            uint64_t block = j / 4;
            unsigned lane = (unsigned)(j % 4);
            /* the host generator's address: subsequence block mod 2^16, offset 4*(block >> 16) */
            uint64_t step = block >> 16;
            zt_u32x4 ctr =
                u32x4((uint32_t)step, (uint32_t)(step >> 32), (uint32_t)(block & 0xFFFF), 0);
            zt_u32x4 bits = zt_philox4x32_10(ctr, zt_philox_key(key));
            ZT_CHECK(u32x4_equal(zt_z_bits_block4(key, block), bits), "z bits j=%" PRIu64, j);
            zt_f32x4 gauss4 = zt_z_gauss_block4(key, block);
            float gauss = zt_z_gauss(seed, tensor, j);
            ZT_CHECK(same_float_bits(gauss, zt_f32x4_lane(gauss4, lane)), "gauss j=%" PRIu64, j);
            ZT_CHECK(same_float_bits(gauss, zt_z_gauss_at(key, j)), "gauss_at j=%" PRIu64, j);
            zt_f32x2 pair =
                lane < 2 ? zt_box_muller(bits.x, bits.y) : zt_box_muller(bits.z, bits.w);
            ZT_CHECK(same_float_bits(gauss, (lane & 1) ? pair.y : pair.x), "BM lane %u", lane);
            /* Rademacher packs 32 elements per word: element j is bit j % 32 of z word j / 32,
             * i.e. of lane (j / 32) % 4 at the host generator's address for block j / 128. */
            const uint64_t packed = j / 128, packed_step = packed >> 16;
            const zt_u32x4 packed_bits =
                zt_philox4x32_10(u32x4((uint32_t)packed_step, (uint32_t)(packed_step >> 32),
                                       (uint32_t)(packed & 0xFFFF), 0),
                                 zt_philox_key(key));
            const uint32_t sign_word = zt_u32x4_lane(packed_bits, (unsigned)((j / 32) % 4));
            float sign = zt_z_rademacher(seed, tensor, j);
            ZT_CHECK(sign == (((sign_word >> (j % 32)) & 1u) ? -1.0f : 1.0f),
                     "rademacher j=%" PRIu64, j);
            ZT_CHECK(sign == zt_f32x4_lane(zt_z_rademacher_block4(key, block), lane), "block");
            ZT_CHECK(sign == zt_z_rademacher_at(key, j), "rademacher_at");
            /* SR bits: counter word 3 = 1, never a z counter. */
            zt_u32x4 sr_ctr =
                u32x4((uint32_t)step, (uint32_t)(step >> 32), (uint32_t)(block & 0xFFFF), 1);
            zt_u32x4 sr = zt_philox4x32_10(sr_ctr, zt_philox_key(key));
            ZT_CHECK(u32x4_equal(zt_sr_bits_block4(key, block), sr), "sr block");
            ZT_CHECK(zt_sr_bits_at(key, j) == zt_u32x4_lane(sr, lane), "sr_at");
            ZT_CHECK(!u32x4_equal(sr, bits), "sr differs from z");
        }
    }
    /* A tensor's z does not depend on which other tensors exist: only (seed, id) enter. */
    ZT_CHECK(!same_float_bits(zt_z_gauss(seed, 0, 0), zt_z_gauss(seed, 1, 0)), "ids differ");
}

static void test_gaussian_statistics(void) {
    /* Standard errors over N = 10^6: mean 1/sqrt(N); E z^2 sqrt(2/N) (Var z^2 = 2); E z^4
     * sqrt(96/N) (Var z^4 = 105 - 9); pair products over N/4 pairs sqrt(4/N) (Var = 1). */
    const double n = SAMPLE_COUNT;
    const uint64_t key = zt_tensor_key(20240601, 5);
    double sum1 = 0, sum2 = 0, sum4 = 0, sum_pair_xy = 0, sum_pair_zw = 0, sum_pair_yz = 0;
    double max_abs = 0;
    for (uint64_t block = 0; block < SAMPLE_COUNT / 4; block++) {
        zt_f32x4 z = zt_z_gauss_block4(key, block);
        float lanes[4] = {z.x, z.y, z.z, z.w};
        for (int l = 0; l < 4; l++) {
            double v = lanes[l];
            sum1 += v;
            sum2 += v * v;
            sum4 += v * v * v * v;
            if (fabs(v) > max_abs) max_abs = fabs(v);
        }
        sum_pair_xy += (double)z.x * z.y; /* the two outputs of one Box-Muller pair */
        sum_pair_zw += (double)z.z * z.w;
        sum_pair_yz += (double)z.y * z.z; /* across the two pairs of a block */
    }
    double mean = sum1 / n, second = sum2 / n, fourth = sum4 / n;
    double pair_bound = SIGMA_BOUND * sqrt(4.0 / n);
    printf("gauss: mean %.3g, E z^2 %.6f, E z^4 %.5f, pair corr %.3g %.3g %.3g, max |z| %.4f\n",
           mean, second, fourth, sum_pair_xy * 4 / n, sum_pair_zw * 4 / n, sum_pair_yz * 4 / n,
           max_abs);
    ZT_CHECK(fabs(mean) < SIGMA_BOUND / sqrt(n), "mean %g", mean);
    ZT_CHECK(fabs(second - 1.0) < SIGMA_BOUND * sqrt(2.0 / n), "E z^2 %g", second);
    ZT_CHECK(fabs(fourth - 3.0) < SIGMA_BOUND * sqrt(96.0 / n), "E z^4 %g", fourth);
    ZT_CHECK(fabs(sum_pair_xy * 4 / n) < pair_bound, "corr(x,y)");
    ZT_CHECK(fabs(sum_pair_zw * 4 / n) < pair_bound, "corr(z,w)");
    ZT_CHECK(fabs(sum_pair_yz * 4 / n) < pair_bound, "corr(y,z)");
    ZT_CHECK(max_abs <= sqrt(66.0 * log(2.0)) + 1e-5, "|z| <= max radius");

    /* Rademacher: exactly +-1, mean 0 with standard error 1/sqrt(N). */
    double sign_sum = 0;
    int only_unit = 1;
    for (uint64_t block = 0; block < SAMPLE_COUNT / 4; block++) {
        zt_f32x4 r = zt_z_rademacher_block4(key, block);
        float lanes[4] = {r.x, r.y, r.z, r.w};
        for (int l = 0; l < 4; l++) {
            if (lanes[l] != 1.0f && lanes[l] != -1.0f) only_unit = 0;
            sign_sum += lanes[l];
        }
    }
    printf("rademacher: mean %.3g\n", sign_sum / n);
    ZT_CHECK(only_unit, "values are +-1");
    ZT_CHECK(fabs(sign_sum / n) < SIGMA_BOUND / sqrt(n), "rademacher mean %g", sign_sum / n);
}

static void test_sumsq_and_sphere(void) {
    const uint64_t key = zt_tensor_key(99, 2);
    /* Unaligned range: the same sum, in the same order, as element by element. */
    double by_element = 0;
    for (uint64_t j = 3; j < 1003; j++) {
        double z = zt_z_gauss_at(key, j);
        by_element += z * z;
    }
    ZT_CHECK(zt_z_gauss_sumsq(key, 3, 1003) == by_element, "sumsq [3,1003)");
    ZT_CHECK(zt_z_gauss_sumsq(key, 5, 5) == 0.0, "empty range");
    double split = zt_z_gauss_sumsq(key, 3, 514) + zt_z_gauss_sumsq(key, 514, 1003);
    ZT_CHECK_CLOSE(split, by_element, 0, 1e-13, "split ranges");
    /* E sumsq = N, sd sqrt(2N). */
    double total = zt_z_gauss_sumsq(key, 0, SAMPLE_COUNT);
    ZT_CHECK(fabs(total - SAMPLE_COUNT) < SIGMA_BOUND * sqrt(2.0 * SAMPLE_COUNT), "%g", total);

    /* Scaled by zt_sphere_scale the vector has the requested radius. */
    const float radius = 0.75f;
    double sumsq = zt_z_gauss_sumsq(key, 0, 4099);
    float scale = zt_sphere_scale(sumsq, radius);
    double norm2 = 0;
    for (uint64_t j = 0; j < 4099; j++) {
        double v = zt_z_gauss_at(key, j) * scale;
        norm2 += v * v;
    }
    ZT_CHECK_CLOSE(sqrt(norm2), radius, 0, 1e-6, "sphere radius");
    ZT_CHECK(zt_sphere_scale(0.0, radius) == 0.0f, "empty -> no perturbation");
}

/* --- stochastic rounding */

/* Round toward zero by an independent route: nearest-even, stepped back when it went up. */
static uint16_t bf16_toward_zero(float x) {
    uint16_t nearest = zt_f32_to_bf16(x);
    return fabsf(zt_bf16_to_f32(nearest)) > fabsf(x) ? (uint16_t)(nearest - 1) : nearest;
}

static uint16_t f16_toward_zero(float x) {
    uint16_t nearest = zt_f32_to_f16(x);
    return fabsf(zt_f16_to_f32(nearest)) > fabsf(x) ? (uint16_t)(nearest - 1) : nearest;
}

static void test_sr_exact_cases(void) {
    /* Random 0 truncates; all ones rounds every inexact value away from zero. */
    uint64_t state = 0x9E3779B97F4A7C15ull;
    int bf16_ok = 1, f16_ok = 1;
    for (int i = 0; i < 200000; i++) {
        state = zt_mix64(state + i);
        uint32_t bits = (uint32_t)state;
        float x = zt_bits_f32(bits);
        if (isnan(x)) continue;
        uint16_t down = bf16_toward_zero(x);
        int exact = zt_bf16_to_f32(down) == x;
        if (zt_sr_f32_to_bf16(x, 0) != down) bf16_ok = 0;
        if (zt_sr_f32_to_bf16(x, 0xFFFFFFFFu) != (uint16_t)(down + !exact)) bf16_ok = 0;
        /* f16: magnitudes 2^-26 .. 2^16 (below the smallest subnormal to past the largest). */
        float mantissa = 1.0f + (float)(state >> 40) * 0x1p-24f;
        float y = ldexpf(mantissa, (int)((state >> 36) % 42) - 26);
        if (state & 1) y = -y;
        uint16_t f16_down = f16_toward_zero(y);
        int f16_exact = zt_f16_to_f32(f16_down) == y;
        if (zt_sr_f32_to_f16(y, 0) != f16_down) f16_ok = 0;
        if (zt_sr_f32_to_f16(y, 0xFFFFFFFFu) != (uint16_t)(f16_down + !f16_exact)) f16_ok = 0;
    }
    ZT_CHECK(bf16_ok, "bf16: random 0 = toward zero, all ones = away");
    ZT_CHECK(f16_ok, "f16: random 0 = toward zero, all ones = away");

    /* Exhaustive over the random bits that matter: the number of round-ups equals the fraction
     * in units of those bits, so the expectation is x exactly. */
    const float bf16_values[] = {1.0f + 0x1p-9f, -3.14159265f, 1.99999f, 1e-3f, 0x1p-140f};
    for (size_t i = 0; i < sizeof bf16_values / sizeof bf16_values[0]; i++) {
        float x = bf16_values[i];
        uint32_t ups = 0;
        for (uint32_t k = 0; k < 65536; k++)
            ups += zt_sr_f32_to_bf16(x, k << 16 | (k & 0xFFFFu)) != bf16_toward_zero(x);
        ZT_CHECK(ups == (zt_f32_bits(x) & 0xFFFFu), "bf16 %g: %u ups", x, ups);
    }
    const float f16_values[] = {1.0001f, -0.33333334f, 65000.3f, 2047.9f, 0x1.0004p-14f};
    for (size_t i = 0; i < sizeof f16_values / sizeof f16_values[0]; i++) {
        float x = f16_values[i];
        uint32_t ups = 0;
        for (uint32_t k = 0; k < 8192; k++)
            ups += zt_sr_f32_to_f16(x, k << 19 | 0x5A5A5u) != f16_toward_zero(x);
        ZT_CHECK(ups == (zt_f32_bits(x) & 0x1FFFu), "f16 %g: %u ups", x, ups);
    }

    /* Specials and overflow. */
    const uint32_t randoms[] = {0, 0x80000000u, 0xFFFFFFFFu};
    for (size_t r = 0; r < 3; r++) {
        uint32_t rnd = randoms[r];
        uint16_t nan_bf16 = zt_sr_f32_to_bf16(zt_bits_f32(0x7FFFFFFFu), rnd);
        uint16_t neg_nan_bf16 = zt_sr_f32_to_bf16(zt_bits_f32(0xFF800001u), rnd);
        ZT_CHECK((nan_bf16 & 0xFFC0u) == 0x7FC0u, "bf16 NaN %04x", nan_bf16);
        ZT_CHECK((neg_nan_bf16 & 0xFFC0u) == 0xFFC0u, "bf16 -NaN %04x", neg_nan_bf16);
        ZT_CHECK(zt_sr_f32_to_bf16(INFINITY, rnd) == 0x7F80u, "bf16 inf");
        ZT_CHECK(zt_sr_f32_to_bf16(-INFINITY, rnd) == 0xFF80u, "bf16 -inf");
        ZT_CHECK(zt_sr_f32_to_bf16(-0.0f, rnd) == 0x8000u, "bf16 -0");
        ZT_CHECK(zt_sr_f32_to_f16(zt_bits_f32(0x7FFFFFFFu), rnd) == 0x7E00u, "f16 NaN");
        ZT_CHECK(zt_sr_f32_to_f16(zt_bits_f32(0xFFC00000u), rnd) == 0xFE00u, "f16 -NaN");
        ZT_CHECK(zt_sr_f32_to_f16(INFINITY, rnd) == 0x7C00u, "f16 inf");
        ZT_CHECK(zt_sr_f32_to_f16(-INFINITY, rnd) == 0xFC00u, "f16 -inf");
        ZT_CHECK(zt_sr_f32_to_f16(-0.0f, rnd) == 0x8000u, "f16 -0");
        ZT_CHECK(zt_sr_f32_to_f16(65504.0f, rnd) == 0x7BFFu, "f16 max stays");
        ZT_CHECK(zt_sr_f32_to_f16(-65536.0f, rnd) == 0xFC00u, "f16 -2^16 -> -inf");
        ZT_CHECK(zt_sr_f32_to_f16(1e30f, rnd) == 0x7C00u, "f16 huge -> inf");
        ZT_CHECK(zt_sr_f32_to_f16(0x1p-24f, rnd) == 0x0001u, "f16 min subnormal stays");
    }
    /* Between the largest finite value and the next grid point (Inf): either neighbour. */
    ZT_CHECK(zt_sr_f32_to_f16(65520.0f, 0) == 0x7BFFu, "65520 down");
    ZT_CHECK(zt_sr_f32_to_f16(65520.0f, 0xFFFFFFFFu) == 0x7C00u, "65520 up");
    ZT_CHECK(zt_sr_f32_to_bf16(zt_bits_f32(0x7F7FFFFFu), 0) == 0x7F7Fu, "f32 max down");
    ZT_CHECK(zt_sr_f32_to_bf16(zt_bits_f32(0x7F7FFFFFu), 0xFFFFFFFFu) == 0x7F80u, "f32 max up");
    /* Below the smallest f16 subnormal, up to it or down to zero. */
    ZT_CHECK(zt_sr_f32_to_f16(0x1p-26f, 0) == 0, "2^-26 down");
    ZT_CHECK(zt_sr_f32_to_f16(0x1p-26f, 0xC0000000u) == 1, "2^-26 up at 3/4");
    ZT_CHECK(zt_sr_f32_to_f16(0x1p-26f, 0xBFFFFFFFu) == 0, "2^-26 down below 3/4");
    ZT_CHECK(zt_sr_f32_to_f16(0x1.ffcp-15f, 0xFFFFFFFFu) == 0x0400u, "up to smallest normal");
}

/* Mean rounding error over N trials with SR bits from the engine's SR stream (one key, a
 * separate range of blocks per value). For x between neighbours lo < hi (gap g, position
 * p = (x-lo)/g), the error is g(1-p) w.p. p and -gp w.p. 1-p: mean 0, sd g sqrt(p(1-p)); the
 * bound is 5 standard errors of the mean. */
static void check_sr_mean(const char *format, float x, int is_bf16, uint64_t key,
                          uint64_t first_block) {
    float lo =
        is_bf16 ? zt_bf16_to_f32(zt_sr_f32_to_bf16(x, 0)) : zt_f16_to_f32(zt_sr_f32_to_f16(x, 0));
    float hi = is_bf16 ? zt_bf16_to_f32(zt_sr_f32_to_bf16(x, 0xFFFFFFFFu))
                       : zt_f16_to_f32(zt_sr_f32_to_f16(x, 0xFFFFFFFFu));
    double gap = fabs((double)hi - lo), p = fabs((double)x - lo) / gap;
    double error_sum = 0;
    int only_neighbours = 1;
    for (uint64_t block = first_block; block < first_block + SAMPLE_COUNT / 4; block++) {
        zt_u32x4 r = zt_sr_bits_block4(key, block);
        uint32_t words[4] = {r.x, r.y, r.z, r.w};
        for (int l = 0; l < 4; l++) {
            float y = is_bf16 ? zt_bf16_to_f32(zt_sr_f32_to_bf16(x, words[l]))
                              : zt_f16_to_f32(zt_sr_f32_to_f16(x, words[l]));
            if (y != lo && y != hi) only_neighbours = 0;
            error_sum += (double)y - x;
        }
    }
    double mean_error = error_sum / SAMPLE_COUNT;
    double bound = SIGMA_BOUND * gap * sqrt(p * (1 - p) / SAMPLE_COUNT);
    printf("SR %s x=%.9g gap %.3g p %.4f: mean error %.3g (%.2f standard errors)\n", format, x, gap,
           p, mean_error, mean_error / (bound / SIGMA_BOUND));
    ZT_CHECK(only_neighbours && gap > 0 && p > 0 && p < 1, "%s %g neighbours", format, x);
    ZT_CHECK(fabs(mean_error) <= bound, "%s %g: mean error %g > %g", format, x, mean_error, bound);
}

static void test_sr_unbiased(void) {
    const uint64_t key = zt_tensor_key(31337, 9);
    /* Fractions 1/4, 1/3-ish, ~1/2, small and large; a binade crossing (1.99999 rounds to 1.9921875
     * or 2.0); bf16 subnormal; f16 subnormals and below its smallest subnormal. */
    const float bf16_values[] = {1.0f + 0x1p-9f,  0.1f,        -3.14159265f, 1.99999f, 1e-3f,
                                 1.0f + 0x1p-20f, 0x1.0ap-130f};
    const float f16_values[] = {1.0001f,         -0.33333334f, 65000.3f, 2047.9f,
                                0.5f + 0x1p-13f, 1e-5f,        -3e-8f,   0x1.75p-20f};
    for (size_t i = 0; i < sizeof bf16_values / sizeof bf16_values[0]; i++)
        check_sr_mean("bf16", bf16_values[i], 1, key, i << 20);
    for (size_t i = 0; i < sizeof f16_values / sizeof f16_values[0]; i++)
        check_sr_mean("f16", f16_values[i], 0, key, (i + 100) << 20);
}

int main(void) {
    test_known_answers();
    test_spec_stream_rows();
    test_spec_float_values();
    test_uniform_and_box_muller_edges();
    test_box_muller_accuracy();
    test_tensor_keys();
    test_addressing();
    test_gaussian_statistics();
    test_sumsq_and_sphere();
    test_sr_exact_cases();
    test_sr_unbiased();
    return zt_test_finish("test_philox");
}
