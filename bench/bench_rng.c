/* bench_rng: how fast z is regenerated on the CPU, the rate every perturb, gather and update pass
 * is bound by (issue 11's goal: at least one Gaussian per ns per core). Per path and thread count:
 *   words     raw Philox4x32-10 output (zt_z_bits_block4), 32-bit words per ns;
 *   gaussian  z as perturb draws it (zt_z_gauss_block4: Philox + Box-Muller), normals per ns;
 *   rademacher  z = +-1 (zt_z_rademacher_block4), values per ns.
 * Each figure is the best of --repeat runs over --elements elements (a tensor's worth, so the
 * loop is the kernels' own: one block of four per iteration, static schedule). A checksum of the
 * values is printed so no path can be optimised away.
 *
 *   bench_rng [--elements N] [--repeat R] [--threads T]   (T: the most threads to try) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "common/perturb_rng.h"
#include "cpu/cpu_common.h"

typedef enum rng_path { PATH_WORDS, PATH_GAUSSIAN, PATH_RADEMACHER, PATH_COUNT } rng_path;
static const char *const path_names[PATH_COUNT] = {"words", "gaussian", "rademacher"};

/* One pass over n elements on `threads` threads; returns a checksum of what was drawn. */
static double draw(rng_path path, uint64_t key, uint64_t n_blocks, int threads) {
    double checksum = 0.0;
#if ZT_HAVE_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : checksum)
#endif
    for (uint64_t b = 0; b < n_blocks; b++) {
        if (path == PATH_WORDS) {
            zt_u32x4 w = zt_z_bits_block4(key, b);
            checksum += (double)(w.x ^ w.y ^ w.z ^ w.w);
        } else {
            zt_f32x4 z =
                path == PATH_GAUSSIAN ? zt_z_gauss_block4(key, b) : zt_z_rademacher_block4(key, b);
            checksum += (double)(z.x + z.y + z.z + z.w);
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
    printf("bench_rng: %llu elements, best of %d, scalar path (kernels/common/perturb_rng.h)\n",
           (unsigned long long)(n_blocks * 4), repeat);
    printf("%-12s %8s %12s %12s %14s\n", "path", "threads", "ms", "per ns", "per ns/thread");
    /* 1, 2, 4, ... and the most threads asked */
    int counts[32], n_counts = 0;
    for (int t = 1; t < max_threads && n_counts < 31; t *= 2)
        counts[n_counts++] = t;
    counts[n_counts++] = max_threads;
    for (int p = 0; p < PATH_COUNT; p++)
        for (int c = 0; c < n_counts; c++) {
            const int threads = counts[c];
            double best = 1e300, checksum = 0.0;
            for (int r = 0; r < repeat; r++) {
                double t0 = bench_now_ms();
                checksum += draw((rng_path)p, key, n_blocks, threads);
                double ms = bench_now_ms() - t0;
                if (ms < best) best = ms;
            }
            double per_ns = (double)(n_blocks * 4) / (best * 1e6);
            printf("%-12s %8d %12.2f %12.3f %14.3f   (checksum %.6g)\n", path_names[p], threads,
                   best, per_ns, per_ns / threads, checksum);
        }
    return 0;
}
