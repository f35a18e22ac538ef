/* gather_rows: embedding lookup and learned positions, optionally reading the rows of a perturbed
 * table without staging it (backend.h, zt_gather_perturbation). */
#include "cuda/cuda_common.cuh"
#include "cuda/z_terms.cuh"

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
        float value = zt_load_f32(table, table_dtype, first + (size_t)c);
        dst[c] = accumulate ? dst[c] + value : value;
    }
}

/* The perturbed read, in perturb's arithmetic (perturb.cu) followed by the staging dtype's
 * rounding. Work item i is block k = i % blocks_per_row of the four-element blocks of the full
 * tensor that output row n = i / blocks_per_row touches; a row that does not start on a block
 * boundary touches one block more than C / 4, so the last item of a row may have no lanes. */
static __global__ void zt_gather_perturbed_k(float *out,          /* (N,C) */
                                             const int32_t *rows, /* (N) */
                                             const void *table,   /* (n_table_rows,C) */
                                             zt_dtype table_dtype, int n_cols, int accumulate,
                                             uint64_t n_items, uint64_t blocks_per_row,
                                             zt_cuda_z_terms terms, zt_dtype stage_dtype) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_items; i += stride) {
        const uint64_t n = i / blocks_per_row;
        const uint64_t first = (uint64_t)rows[n] * (uint64_t)n_cols;
        const uint64_t end = first + (uint64_t)n_cols;
        const uint64_t block = first / 4 + i % blocks_per_row;
        if (block * 4 >= end) continue;
        const zt_f32x4 sum = terms.n_terms > 0 ? zt_cuda_z_sum_block4(terms, block)
                                               : zt_f32x4{0.0f, 0.0f, 0.0f, 0.0f};
        const uint64_t lane_begin = block * 4 < first ? first - block * 4 : 0;
        const uint64_t lane_end = block * 4 + 4 > end ? end - block * 4 : 4;
        float *row_out = out + n * (uint64_t)n_cols;
        for (uint64_t lane = lane_begin; lane < lane_end; lane++) {
            const uint64_t j = block * 4 + lane;
            const float value = zt_load_f32(table, table_dtype, (size_t)j);
            /* No terms is a plain read: adding a zero would turn -0 into +0 (as perturb). */
            float staged =
                terms.n_terms > 0 ? __fadd_rn(value, zt_f32x4_lane(sum, (unsigned)lane)) : value;
            staged = zt_round_through(stage_dtype, staged);
            float *dst = row_out + (j - first);
            *dst = accumulate ? __fadd_rn(*dst, staged) : staged;
        }
    }
}

zt_status zt_cuda_gather_rows(zt_backend *be, float *out, /* (N,C) */
                              const int32_t *rows,        /* (N) */
                              zt_weight table,            /* (n_table_rows,C) */
                              int n_rows, int n_table_rows, int n_cols, int accumulate,
                              const zt_gather_perturbation *perturb) {
    const char *op = "gather_rows";
    ZT_TRY(zt_check_gather_args(op, out, rows, table, n_rows, n_table_rows, n_cols, perturb));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    /* Checked before the gather so that a bad index leaves out untouched. */
    int bad_row;
    int32_t bad_index;
    ZT_TRY(zt_cuda_find_bad_index(cb, rows, n_rows, n_table_rows, &bad_row, &bad_index));
    if (bad_row >= 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d index %d outside [0, %d)", op, bad_row,
                       (int)bad_index, n_table_rows);

    if (perturb == NULL) {
        ZT_LAUNCH(zt_gather_rows_k, (unsigned)n_rows, kBlockThreads, 0, cb->stream, out, rows,
                  table.data, table.dtype, n_cols, accumulate);
        return ZT_OK;
    }
    zt_cuda_z_terms terms;
    ZT_TRY(zt_cuda_z_terms_prepare(cb, op, perturb->p, perturb->tensor_id, &terms));
    const uint64_t blocks_per_row = (uint64_t)(n_cols + 3) / 4 + 1;
    const uint64_t n_items = (uint64_t)n_rows * blocks_per_row;
    ZT_LAUNCH(zt_gather_perturbed_k, zt_zo_blocks(n_items, ZT_CUDA_ZO_MAX_BLOCKS), kBlockThreads, 0,
              cb->stream, out, rows, table.data, table.dtype, n_cols, accumulate, n_items,
              blocks_per_row, terms, perturb->stage_dtype);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
