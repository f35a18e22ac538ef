/* gather_rows: embedding lookup and learned positions. */
#include "core/status.h"
#include "cpu/cpu_backend.h"

zt_status zt_cpu_gather_rows(zt_backend *be, float *out, /* (N,C) */
                             const int32_t *rows,        /* (N) */
                             zt_weight table,            /* (n_table_rows,C) */
                             int n_rows, int n_table_rows, int n_cols, int accumulate) {
    const char *op = "gather_rows";
    ZT_TRY(zt_check_gather_args(op, out, rows, table, n_rows, n_table_rows, n_cols));
    /* Checked up front so a bad index leaves out untouched. */
    for (int n = 0; n < n_rows; n++) {
        if (rows[n] < 0 || rows[n] >= n_table_rows)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d index %d outside [0, %d)", op, n,
                           (int)rows[n], n_table_rows);
    }

    const size_t n_cols_z = (size_t)n_cols;
    ZT_CPU_PARALLEL_FOR(zt_cpu(be)->n_threads)
    for (int n = 0; n < n_rows; n++) {
        float *dst = out + (size_t)n * n_cols_z;
        size_t first = (size_t)rows[n] * n_cols_z;
        if (!accumulate) {
            zt_cpu_weight_to_f32(dst, table, first, n_cols_z);
            continue;
        }
        /* A short stack tile keeps the dtype switch out of the inner loop. */
        enum { TILE = 256 };
        float tile[TILE];
        for (size_t c0 = 0; c0 < n_cols_z; c0 += TILE) {
            size_t width = n_cols_z - c0 < TILE ? n_cols_z - c0 : TILE;
            zt_cpu_weight_to_f32(tile, table, first + c0, width);
            for (size_t c = 0; c < width; c++)
                dst[c0 + c] += tile[c];
        }
    }
    return ZT_OK;
}
