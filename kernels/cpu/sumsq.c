/* z_sumsq: sum of z_j^2 over a tensor, in double, regenerating z: the norm pass of
 * uniform-on-sphere directions (docs/design.md §2).
 *
 * Deterministic by construction: fixed-size chunks are summed in parallel, each in ascending
 * order, then the chunk sums in ascending order. The chunk size, not the thread count, decides
 * the rounding, so the result is the same on any machine. */

/* z comes from the same Box-Muller arithmetic as perturb's (kernels/common/perturb_rng.h), which
 * must not be contracted into FMAs either: see the top of perturb.c. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <stdint.h>

#include "core/status.h"
#include "common/perturb_rng.h"
#include "cpu/cpu_common.h"
#include "cpu/rng_blocks.h"
#include "cpu/z_terms.h"

/* Elements per chunk; CUDA's sumsq.cu uses the same size. */
#define ZT_CPU_SUMSQ_CHUNK_ELEMS ((uint64_t)1 << 14)

static zt_status check_dist(const char *op, zt_dist dist) {
    if (dist == ZT_DIST_GAUSSIAN || dist == ZT_DIST_RADEMACHER) return ZT_OK;
    return zt_fail(ZT_ERR_INVALID_ARG, "%s: unknown distribution %d", op, (int)dist);
}

static uint64_t chunk_count(size_t n_elems) {
    return ((uint64_t)n_elems + ZT_CPU_SUMSQ_CHUNK_ELEMS - 1) / ZT_CPU_SUMSQ_CHUNK_ELEMS;
}

/* zt_z_gauss_sumsq(tensor_key, begin, end) (kernels/common/perturb_rng.h): the same values summed
 * in the same ascending order, so the same bits, with z drawn in runs on the CPU's z path. */
static double gauss_sumsq(zt_cpu_rng_path path, uint64_t tensor_key, uint64_t begin, uint64_t end) {
    float z[4 * ZT_CPU_Z_RUN_BLOCKS];
    double sum = 0.0;
    for (int64_t r = 0; r < zt_cpu_z_run_count(begin, end); r++) {
        const zt_cpu_z_run run = zt_cpu_z_run_at(begin, end, r);
        zt_cpu_gauss_blocks(path, tensor_key, run.block, (size_t)run.n_blocks, z);
        for (uint64_t j = run.begin; j < run.end; j++) {
            const double value = (double)z[j - run.block * 4];
            sum += value * value;
        }
    }
    return sum;
}

size_t zt_cpu_z_sumsq_scratch_floats(size_t n_elems) {
    /* one double partial sum (two floats of room) per fixed-size chunk */
    return (size_t)chunk_count(n_elems) * 2;
}

zt_status zt_cpu_z_sumsq(zt_backend *be, double *out, uint64_t seed, uint32_t tensor_id,
                         size_t n_elems, zt_dist dist) {
    const char *op = "z_sumsq";
    ZT_TRY(zt_check_ptr(op, "out", out));
    ZT_TRY(check_dist(op, dist));
    /* Rademacher z is +-1, so the sum is the count, exactly (n < 2^53 for any real tensor). */
    if (dist == ZT_DIST_RADEMACHER || n_elems == 0) {
        *out = (double)n_elems;
        return ZT_OK;
    }

    zt_cpu_backend *cpu = zt_cpu(be);
    const uint64_t n = (uint64_t)n_elems;
    const uint64_t n_chunks = chunk_count(n_elems);
    /* The scratch is 64-byte aligned floats; two of them hold each chunk's double sum. */
    float *scratch = NULL;
    ZT_TRY(zt_cpu_scratch(cpu, zt_cpu_z_sumsq_scratch_floats(n_elems), op, &scratch));
    double *chunk_sums = (double *)(void *)scratch;

    be->n_z_drawn += (unsigned long long)n_elems;
    const uint64_t tensor_key = zt_tensor_key(seed, tensor_id);
    const int64_t n_chunks_signed = (int64_t)n_chunks;
    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int64_t c = 0; c < n_chunks_signed; c++) {
        const uint64_t begin = (uint64_t)c * ZT_CPU_SUMSQ_CHUNK_ELEMS;
        const uint64_t end =
            begin + ZT_CPU_SUMSQ_CHUNK_ELEMS < n ? begin + ZT_CPU_SUMSQ_CHUNK_ELEMS : n;
        chunk_sums[c] = gauss_sumsq(path, tensor_key, begin, end);
    }
    double sum = 0.0;
    for (uint64_t c = 0; c < n_chunks; c++)
        sum += chunk_sums[c];
    *out = sum;
    return ZT_OK;
}
