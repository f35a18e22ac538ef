/* bench_rng: how fast z is regenerated on the CPU, the rate every perturb, gather and update pass
 * is bound by (issue 11's goal: at least one Gaussian per ns per core). For each vector path of
 * kernels/cpu/rng_blocks.h this CPU can run (portable: the scalar definitions; avx2) and each
 * thread count:
 *   words       raw Philox4x32-10 output, 32-bit words per ns;
 *   gaussian    z as perturb draws it (Philox + the Box-Muller transform), normals per ns;
 *   rademacher  z = +-1, values per ns.
 * Each figure is the best of --repeat runs over --elements elements, drawn in runs of 256 blocks
 * (1024 values) into a per-thread buffer as the ops do, static schedule over the runs. A
 * checksum of the values is printed so nothing can be optimised away.
 *
 *   bench_rng [--elements N] [--repeat R] [--threads T] [--quick]   (T: the most threads) */
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

/* One pass over n_blocks blocks on `threads` threads; returns a checksum of what was drawn. */
static double draw(zt_cpu_rng_path path, rng_kind kind, uint64_t key, uint64_t n_blocks,
                   int threads) {
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
        if (kind == KIND_WORDS) {
            zt_cpu_stream_words(path, key, ZT_RNG_STREAM_Z, first, count, buffer.words);
            checksum += (double)(buffer.words[0] ^ buffer.words[4 * count - 1]);
        } else {
            if (kind == KIND_GAUSSIAN)
                zt_cpu_gauss_blocks(path, key, first, count, buffer.values);
            else
                zt_cpu_rademacher_blocks(path, key, first, count, buffer.values);
            checksum += (double)(buffer.values[0] + buffer.values[4 * count - 1]);
        }
    }
    (void)threads;
    return checksum;
}

int main(int argc, char **argv) {
    long long elements = 1 << 24;
    int repeat = 3, max_threads = zt_cpu_online_cores();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--elements") == 0 && i + 1 < argc)
            elements = atoll(argv[++i]);
        else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            max_threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            elements = 1 << 20;
        else {
            fprintf(stderr, "usage: bench_rng [--elements N] [--repeat R] [--threads T] "
                            "[--quick]\n");
            return 2;
        }
    }
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
    printf("%-10s %-12s %8s %12s %12s %14s\n", "path", "kind", "threads", "ms", "per ns",
           "per ns/thread");
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
            for (int c = 0; c < n_counts; c++) {
                const int threads = counts[c];
                double best = 1e300, checksum = 0.0;
                for (int r = 0; r < repeat; r++) {
                    double t0 = bench_now_ms();
                    checksum += draw(path, (rng_kind)k, key, n_blocks, threads);
                    double ms = bench_now_ms() - t0;
                    if (ms < best) best = ms;
                }
                double per_ns = (double)(n_blocks * 4) / (best * 1e6);
                printf("%-10s %-12s %8d %12.2f %12.3f %14.3f   (checksum %.6g)\n",
                       zt_cpu_rng_path_name(path), kind_names[k], threads, best, per_ns,
                       per_ns / threads, checksum);
            }
    }
    return 0;
}
