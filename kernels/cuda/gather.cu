/* gather_rows: embedding lookup and learned positions. */
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* One block per output row; the threads stride across its columns, so reads of the table row
 * and writes of out are both coalesced. Indices were validated before the launch. */
static __global__ void zt_gather_rows_k(float *out,          /* (N,C) */
                                        const int32_t *rows, /* (N) */
                                        const void *table,   /* (n_table_rows,C) */
                                        zt_dtype table_dtype, int n_cols, int accumulate) {
    const size_t n = blockIdx.x;
    const size_t first = (size_t)rows[n] * (size_t)n_cols;
    float *dst = out + n * (size_t)n_cols;
    for (int c = threadIdx.x; c < n_cols; c += blockDim.x) {
        float value = zt_weight_elem(table, table_dtype, first + (size_t)c);
        dst[c] = accumulate ? dst[c] + value : value;
    }
}

zt_status zt_cuda_gather_rows(zt_backend *be, float *out, /* (N,C) */
                              const int32_t *rows,        /* (N) */
                              zt_weight table,            /* (n_table_rows,C) */
                              int n_rows, int n_table_rows, int n_cols, int accumulate) {
    const char *op = "gather_rows";
    ZT_TRY(zt_check_gather_args(op, out, rows, table, n_rows, n_table_rows, n_cols));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    /* Checked before the gather so that a bad index leaves out untouched. */
    int bad_row;
    int32_t bad_index;
    ZT_TRY(zt_cuda_find_bad_index(cb, rows, n_rows, n_table_rows, &bad_row, &bad_index));
    if (bad_row >= 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d index %d outside [0, %d)", op, bad_row,
                       (int)bad_index, n_table_rows);

    ZT_LAUNCH(zt_gather_rows_k, (unsigned)n_rows, kBlockThreads, 0, cb->stream, out, rows,
              table.data, table.dtype, n_cols, accumulate);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
