/* bench_rng: how fast z is regenerated on the CPU, the rate every perturb, gather and update pass
 * is bound by (issue 11's goal: at least one Gaussian per ns per core). For each vector path of
 * kernels/cpu/rng_blocks.h this CPU can run (portable: the scalar definitions; avx2) and each
 * thread count:
 *   words       raw Philox4x32-10 output, 32-bit words per ns;
 *   gaussian    z as perturb draws it (Philox + the Box-Muller transform), normals per ns;
 *   rademacher  z = +-1 (32 per Philox word, 128 per Philox call: docs/spec.md §5.9), values
 *               per ns.
 * Each figure is the best of --repeat runs over --elements elements, drawn in runs of 256 blocks
 * (1024 values), static schedule over the runs, into one of two targets (the "into" column):
 *   run     a per-thread 4 KB buffer reused for every run, as the ops draw z: stays in L1, so
 *           this is the generator's own rate;
 *   array   every value stored into one --elements array (64 MB at the default 2^24): what
 *           the generator gives when its output goes to memory, bound by store bandwidth once
 *           the generator outruns it.
 * Both kinds use the same element counts and run sizes. A checksum of the values is printed
 * so nothing can be optimised away.
 *
 * --accuracy instead sweeps the transform (common/box_muller.h) over 32-bit words, every word by
 * default (--stride S for every S-th), on the active path, against double precision: the
 * radius in ulps of sqrt(-2 ln u), and sin / cos of 2 pi (y + 1/2) / 2^32 in absolute error.
 *
 *   bench_rng [--elements N] [--repeat R] [--threads T] [--quick]   (T: the most threads)
 *   bench_rng --accuracy [--stride S] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "common/perturb_rng.h"
#include "cpu/cpu_common.h"
#include "cpu/rng_blocks.h"

typedef enum rng_kind { KIND_WORDS, KIND_GAUSSIAN, KIND_RADEMACHER, KIND_COUNT } rng_kind;
static const char *const kind_names[KIND_COUNT] = {"words", "gaussian", "rademacher"};

#define RUN_BLOCKS 256

typedef enum rng_target { TARGET_RUN, TARGET_ARRAY, TARGET_COUNT } rng_target;
static const char *const target_names[TARGET_COUNT] = {"run", "array"};

/* One pass over n_blocks blocks on `threads` threads; returns a checksum of what was drawn. With
 * `array` (4 * n_blocks values) every run is stored there, else into a reused run buffer. */
static double draw(zt_cpu_rng_path path, rng_kind kind, uint64_t key, uint64_t n_blocks,
                   int threads, float *array) {
    double checksum = 0.0;
    const int64_t n_runs = (int64_t)((n_blocks + RUN_BLOCKS - 1) / RUN_BLOCKS);
#if ZT_HAVE_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : checksum)
#endif
    for (int64_t r = 0; r < n_runs; r++) {
        union {
            float values[4 * RUN_BLOCKS];
            uint32_t words[4 * RUN_BLOCKS];
        } buffer;
        const uint64_t first = (uint64_t)r * RUN_BLOCKS;
        const size_t count =
            (size_t)(n_blocks - first < RUN_BLOCKS ? n_blocks - first : RUN_BLOCKS);
        float *values = array ? array + 4 * first : buffer.values;
        uint32_t *words = array ? (uint32_t *)(void *)(array + 4 * first) : buffer.words;
        if (kind == KIND_WORDS) {
            zt_cpu_stream_words(path, key, ZT_RNG_STREAM_Z, first, count, words);
            checksum += (double)(words[0] ^ words[4 * count - 1]);
        } else {
            if (kind == KIND_GAUSSIAN)
                zt_cpu_gauss_blocks(path, key, first, count, values);
            else
                zt_cpu_rademacher_blocks(path, key, first, count, values);
            checksum += (double)(values[0] + values[4 * count - 1]);
        }
    }
    (void)threads;
    return checksum;
}

static double ulp_of(double value) {
    int exponent;
    frexp(fabs(value), &exponent);
    return ldexp(1.0, exponent - 24);
}

/* The largest errors of the transform over every stride-th 32-bit word. */
static int accuracy(uint64_t stride) {
    enum { CHUNK = 4096 };
    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    const uint64_t n_chunks = ((1ull << 32) / stride + CHUNK - 1) / CHUNK;
    double worst_radius = 0.0, worst_trig = 0.0;
#if ZT_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 16) reduction(max : worst_radius, worst_trig)
#endif
    for (int64_t c = 0; c < (int64_t)n_chunks; c++) {
        uint32_t words[CHUNK], ones[CHUNK];
        float first[CHUNK], second[CHUNK];
        size_t n = 0;
        for (uint64_t v = (uint64_t)c * CHUNK * stride; n < CHUNK && v < (1ull << 32); v += stride)
            words[n] = (uint32_t)v, ones[n] = 0xFFFFFFFFu, n++;
        /* x = word, y = all ones (angle 2 pi - tiny: cos = 1 - tiny, sin ~ -0): radius alone */
        zt_cpu_box_muller_pairs(path, words, ones, n, first, second);
        for (size_t i = 0; i < n; i++) {
            const double u = (double)zt_box_muller_u(words[i]);
            const double want = sqrt(-2.0 * log(u));
            if (want > 0.0) {
                const double err = fabs((double)zt_bm_radius(words[i]) - want) / ulp_of(want);
                if (err > worst_radius) worst_radius = err;
            }
        }
        /* x = 0 (u = 2^-33, radius sqrt(66 ln 2) exactly as computed): the angle's error */
        for (size_t i = 0; i < n; i++)
            ones[i] = 0u;
        zt_cpu_box_muller_pairs(path, ones, words, n, first, second);
        const double radius = (double)zt_bm_radius(0u);
        for (size_t i = 0; i < n; i++) {
            const double angle = 6.283185307179586 * ((double)words[i] + 0.5) / 4294967296.0;
            const double sin_err = fabs((double)first[i] / radius - sin(angle));
            const double cos_err = fabs((double)second[i] / radius - cos(angle));
            if (sin_err > worst_trig) worst_trig = sin_err;
            if (cos_err > worst_trig) worst_trig = cos_err;
        }
    }
    printf("transform accuracy over %llu words (stride %llu), path %s:\n",
           (unsigned long long)((1ull << 32) / stride), (unsigned long long)stride,
           zt_cpu_rng_path_name(path));
    printf("  radius sqrt(-2 ln u): max %.3f ulp\n", worst_radius);
    printf("  sin, cos of 2 pi (y + 1/2) / 2^32: max |error| %.3g (plus the radius product's "
           "rounding)\n",
           worst_trig);
    return 0;
}

int main(int argc, char **argv) {
    long long elements = 1 << 24;
    int repeat = 3, max_threads = zt_cpu_online_cores(), check_accuracy = 0;
    unsigned long long stride = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--elements") == 0 && i + 1 < argc)
            elements = atoll(argv[++i]);
        else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            max_threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--accuracy") == 0)
            check_accuracy = 1;
        else if (strcmp(argv[i], "--stride") == 0 && i + 1 < argc)
            stride = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--quick") == 0)
            elements = 1 << 20;
        else {
            fprintf(stderr, "usage: bench_rng [--elements N] [--repeat R] [--threads T] "
                            "[--quick] | --accuracy [--stride S]\n");
            return 2;
        }
    }
    if (check_accuracy) return stride >= 1 ? accuracy(stride) : 2;
    if (elements < 4 || repeat < 1 || max_threads < 1) {
        fprintf(stderr, "bench_rng: --elements >= 4, --repeat >= 1, --threads >= 1\n");
        return 2;
    }
#if !ZT_HAVE_OPENMP
    max_threads = 1;
#endif
    const uint64_t n_blocks = (uint64_t)elements / 4, key = zt_tensor_key(42, 7);
    printf("bench_rng: %llu elements, best of %d; the ops use path %s\n",
           (unsigned long long)(n_blocks * 4), repeat,
           zt_cpu_rng_path_name(zt_cpu_rng_active_path()));
    float *array = malloc((size_t)n_blocks * 4 * sizeof *array);
    if (!array) {
        fprintf(stderr, "bench_rng: no memory for a %llu-element array\n",
                (unsigned long long)(n_blocks * 4));
        return 1;
    }
    /* touched once, so the array rows time stores, not first-touch page faults */
    memset(array, 0, (size_t)n_blocks * 4 * sizeof *array);
    printf("%-10s %-12s %-6s %8s %12s %12s %14s\n", "path", "kind", "into", "threads", "ms",
           "per ns", "per ns/thread");
    /* 1, 2, 4, ... and the most threads asked */
    int counts[32], n_counts = 0;
    for (int t = 1; t < max_threads && n_counts < 31; t *= 2)
        counts[n_counts++] = t;
    counts[n_counts++] = max_threads;
    for (int p = 0; p < ZT_CPU_RNG_N_PATHS; p++) {
        const zt_cpu_rng_path path = (zt_cpu_rng_path)p;
        if (!zt_cpu_rng_path_available(path)) {
            printf("%-10s (not available on this CPU)\n", zt_cpu_rng_path_name(path));
            continue;
        }
        for (int k = 0; k < KIND_COUNT; k++)
            for (int t = 0; t < TARGET_COUNT; t++)
                for (int c = 0; c < n_counts; c++) {
                    const int threads = counts[c];
                    double best = 1e300, checksum = 0.0;
                    for (int r = 0; r < repeat; r++) {
                        double t0 = bench_now_ms();
                        checksum += draw(path, (rng_kind)k, key, n_blocks, threads,
                                         t == TARGET_ARRAY ? array : NULL);
                        double ms = bench_now_ms() - t0;
                        if (ms < best) best = ms;
                    }
                    double per_ns = (double)(n_blocks * 4) / (best * 1e6);
                    printf("%-10s %-12s %-6s %8d %12.2f %12.3f %14.3f   (checksum %.6g)\n",
                           zt_cpu_rng_path_name(path), kind_names[k], target_names[t], threads,
                           best, per_ns, per_ns / threads, checksum);
                }
    }
    free(array);
    return 0;
}
