/* gather_rows: embedding lookup and learned positions, optionally reading the rows of a perturbed
 * table without staging it (backend.h, zt_gather_perturbation). */

/* The perturbed read keeps perturb's f32 operation order (z_terms.h): no FMA contraction.
 * GCC in ISO C mode contracts nothing; clang needs telling. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "core/status.h"
#include "cpu/cpu_common.h"
#include "cpu/z_terms.h"

/* dst[c] = stage(table[first + c] + g(first + c)) for c in [0, n): perturb's arithmetic element
 * by element, z drawn in runs of whole blocks of the full tensor. */
static void perturbed_row(float *dst,                                /* (n) */
                          zt_weight table, uint64_t first, size_t n, /* elements of the tensor */
                          const zt_cpu_z_term *terms, int n_terms, zt_dist dist,
                          zt_dtype stage_dtype) {
    float sum[4 * ZT_CPU_Z_RUN_BLOCKS], scratch[4 * ZT_CPU_Z_RUN_BLOCKS];
    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    const uint64_t end = first + (uint64_t)n;
    for (int64_t r = 0; r < zt_cpu_z_run_count(first, end); r++) {
        const zt_cpu_z_run run = zt_cpu_z_run_at(first, end, r);
        if (n_terms > 0)
            zt_cpu_z_sum_run(terms, n_terms, dist, path, run.block, (size_t)run.n_blocks, sum,
                             scratch);
        for (uint64_t j = run.begin; j < run.end; j++) {
            const float value = zt_load_f32(table.data, table.dtype, (size_t)j);
            /* No terms is a plain read: adding a zero would turn -0 into +0 (as perturb). */
            const float staged = n_terms > 0 ? value + sum[j - run.block * 4] : value;
            dst[j - first] = zt_round_through(stage_dtype, staged);
        }
    }
}

zt_status zt_cpu_gather_rows(zt_backend *be, float *out, /* (N,C) */
                             const int32_t *rows,        /* (N) */
                             zt_weight table,            /* (n_table_rows,C) */
                             int n_rows, int n_table_rows, int n_cols, int accumulate,
                             const zt_gather_perturbation *perturb) {
    const char *op = "gather_rows";
    ZT_TRY(zt_check_gather_args(op, out, rows, table, n_rows, n_table_rows, n_cols, perturb));
    /* Checked up front so a bad index leaves out untouched. */
    for (int n = 0; n < n_rows; n++) {
        if (rows[n] < 0 || rows[n] >= n_table_rows)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d index %d outside [0, %d)", op, n,
                           (int)rows[n], n_table_rows);
    }
    zt_cpu_z_term stack_terms[ZT_CPU_Z_TERMS_ON_STACK];
    zt_cpu_z_term *terms = stack_terms;
    if (perturb) {
        ZT_TRY(zt_cpu_z_terms_prepare(op, perturb->p, perturb->tensor_id, stack_terms, &terms));
        /* every gathered row draws its own z, a row gathered twice twice */
        be->n_z_drawn += (unsigned long long)n_rows * (unsigned long long)n_cols *
                         (unsigned long long)perturb->p->n_terms;
    }

    const size_t n_cols_z = (size_t)n_cols;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int n = 0; n < n_rows; n++) {
        float *dst = out + (size_t)n * n_cols_z;
        size_t first = (size_t)rows[n] * n_cols_z;
        if (!accumulate && !perturb) {
            zt_cpu_weight_to_f32(dst, table, first, n_cols_z);
            continue;
        }
        /* A short stack tile keeps the dtype switch out of the inner loop. */
        enum { TILE = 256 };
        float tile[TILE];
        for (size_t c0 = 0; c0 < n_cols_z; c0 += TILE) {
            size_t width = n_cols_z - c0 < TILE ? n_cols_z - c0 : TILE;
            if (perturb)
                perturbed_row(tile, table, first + c0, width, terms, perturb->p->n_terms,
                              perturb->p->dist, perturb->stage_dtype);
            else
                zt_cpu_weight_to_f32(tile, table, first + c0, width);
            for (size_t c = 0; c < width; c++)
                dst[c0 + c] = accumulate ? dst[c0 + c] + tile[c] : tile[c];
        }
    }
    if (perturb) zt_cpu_z_terms_release(terms, stack_terms);
    return ZT_OK;
}
