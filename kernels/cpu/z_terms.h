/* What the CPU backend's perturbation ops (perturb, update, the perturbed gather) share: the terms
 * of a perturbation hoisted out of the element loop, and g for one block of four elements (the
 * twin of kernels/cuda/z_terms.cuh; docs/design.md §2; z addressing in
 * kernels/common/perturb_rng.h).
 *
 * The f32 operation order is part of the contract, so that another backend (or a test) that
 * mirrors it gets the same bits from the same z:
 *
 *     a_i = coeff_i * z_scale                                      one rounding per term
 *     g   = a_0 * z_0;  g = g + a_i * z_i for i = 1 .. n_terms-1    term 0 first, no FMA
 *     g   = 0 when n_terms == 0
 *
 * perturb stores src + g (src itself when n_terms == 0); update turns g into u by its rule and
 * subtracts lr * (u + weight_decay * theta) (see update.c). A file that includes this header
 * must not let the compiler contract a*z + g into an FMA (see the top of perturb.c).
 */
#ifndef ZT_CPU_Z_TERMS_H
#define ZT_CPU_Z_TERMS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "cpu/rng_blocks.h"

/* One term with its key and scale hoisted out of the element loop. */
typedef struct zt_cpu_z_term {
    uint64_t tensor_key; /* zt_tensor_key(seed, tensor_id) */
    float scale;         /* coeff * z_scale, rounded to f32 */
} zt_cpu_z_term;

/* Terms up to this count live on the caller's stack; more are heap-allocated. */
#define ZT_CPU_Z_TERMS_ON_STACK 64

/* Checks p (op names the caller in messages) and fills *terms_out with its n_terms hoisted
 * terms: `stack` (ZT_CPU_Z_TERMS_ON_STACK entries) when they fit, else a heap array that the
 * caller releases with zt_cpu_z_terms_release. */
zt_status zt_cpu_z_terms_prepare(const char *op, const zt_perturbation *p, uint32_t tensor_id,
                                 zt_cpu_z_term *stack, zt_cpu_z_term **terms_out);
void zt_cpu_z_terms_release(zt_cpu_z_term *terms, const zt_cpu_z_term *stack);

/* The ops draw z in runs of this many Philox blocks (4 KB of f32 per buffer, on the stack). */
#define ZT_CPU_Z_RUN_BLOCKS 256

/* Run r of the whole blocks that cover elements [first, end) (first < end): its blocks, and the
 * elements of [first, end) it holds (the first and last block may hang over the range). */
typedef struct zt_cpu_z_run {
    uint64_t block, n_blocks; /* blocks [block, block + n_blocks) */
    uint64_t begin, end;      /* elements [begin, end), within [first, end) */
} zt_cpu_z_run;

static inline int64_t zt_cpu_z_run_count(uint64_t first, uint64_t end) {
    const uint64_t n_blocks = (end - 1) / 4 - first / 4 + 1;
    return (int64_t)((n_blocks + ZT_CPU_Z_RUN_BLOCKS - 1) / ZT_CPU_Z_RUN_BLOCKS);
}

static inline zt_cpu_z_run zt_cpu_z_run_at(uint64_t first, uint64_t end, int64_t r) {
    zt_cpu_z_run run;
    run.block = first / 4 + (uint64_t)r * ZT_CPU_Z_RUN_BLOCKS;
    const uint64_t blocks_left = (end - 1) / 4 - run.block + 1;
    run.n_blocks = blocks_left < ZT_CPU_Z_RUN_BLOCKS ? blocks_left : ZT_CPU_Z_RUN_BLOCKS;
    run.begin = run.block * 4 > first ? run.block * 4 : first;
    const uint64_t run_end = (run.block + run.n_blocks) * 4;
    run.end = run_end < end ? run_end : end;
    return run;
}

/* g for blocks [first_block, first_block + n_blocks) of the tensor (n_blocks <= the run size),
 * in the order documented above: sum[4*i + lane] is element 4*(first_block + i) + lane. Each term's
 * z is drawn into `scratch` on the CPU's fastest z path (the bits do not depend on the path). */
static inline void zt_cpu_z_sum_run(const zt_cpu_z_term *terms, int n_terms, zt_dist dist,
                                    zt_cpu_rng_path path, uint64_t first_block, size_t n_blocks,
                                    float *sum,       /* (4 * n_blocks) */
                                    float *scratch) { /* (4 * n_blocks) */
    const size_t n = 4 * n_blocks;
    if (n_terms == 0)
        for (size_t k = 0; k < n; k++)
            sum[k] = 0.0f;
    for (int i = 0; i < n_terms; i++) {
        if (dist == ZT_DIST_GAUSSIAN)
            zt_cpu_gauss_blocks(path, terms[i].tensor_key, first_block, n_blocks, scratch);
        else
            zt_cpu_rademacher_blocks(path, terms[i].tensor_key, first_block, n_blocks, scratch);
        const float a = terms[i].scale;
        if (i == 0) {
            /* Assigned, not added to 0: 0 + (-0) would turn a negative zero positive. */
            for (size_t k = 0; k < n; k++)
                sum[k] = a * scratch[k];
        } else {
            for (size_t k = 0; k < n; k++)
                sum[k] = sum[k] + a * scratch[k];
        }
    }
}

#endif
