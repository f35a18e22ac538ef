/* gather_rows_backward: the gradient of gather_rows, a scatter-add of d_out's rows into the rows
 * of d_table they were read from (embedding and learned positions). */
#include "core/status.h"
#include "cpu/cpu_backward.h"
#include "cpu/cpu_common.h"

/* The threads take pieces of this many columns and walk every row in order, so each element of
 * d_table receives its additions in row order whatever the thread count (a token repeated in the
 * batch adds to one table row many times: splitting over rows would race, and per-thread partial
 * tables would sum in an order that depends on the split). 64 floats are four cache lines. */
#define ZT_CPU_GATHER_PIECE_COLUMNS 64

zt_status zt_cpu_gather_rows_backward(zt_backend *be, float *d_table, /* (n_table_rows,C) += */
                                      const float *d_out,             /* (N,C) */
                                      const int32_t *rows,            /* (N) */
                                      int n_rows, int n_table_rows, int n_cols) {
    const char *op = "gather_rows_backward";
    ZT_TRY(zt_check_gather_backward_args(op, d_table, d_out, rows, n_rows, n_table_rows, n_cols));
    const size_t n_cols_z = (size_t)n_cols;
    /* Checked up front so a bad index leaves d_table untouched. */
    for (int n = 0; n < n_rows; n++) {
        if (rows[n] < 0 || rows[n] >= n_table_rows)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d index %d outside [0, %d)", op, n,
                           (int)rows[n], n_table_rows);
    }

    const int n_pieces = (n_cols + ZT_CPU_GATHER_PIECE_COLUMNS - 1) / ZT_CPU_GATHER_PIECE_COLUMNS;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int piece = 0; piece < n_pieces; piece++) {
        const size_t first = (size_t)piece * ZT_CPU_GATHER_PIECE_COLUMNS;
        const size_t width = n_cols_z - first < ZT_CPU_GATHER_PIECE_COLUMNS
                                 ? n_cols_z - first
                                 : ZT_CPU_GATHER_PIECE_COLUMNS;
        for (int n = 0; n < n_rows; n++) {
            float *dst = d_table + (size_t)rows[n] * n_cols_z + first;
            const float *src = d_out + (size_t)n * n_cols_z + first;
            ZT_CPU_SIMD
            for (size_t c = 0; c < width; c++)
                dst[c] += src[c];
        }
    }
    return ZT_OK;
}
