/* gather_rows_backward: the gradient of gather_rows, a scatter-add of d_out's rows into the rows
 * of d_table they were read from (embedding and learned positions). A token repeated in the
 * batch adds to one table row many times, so the adds race unless each element of d_table has
 * one owner. Here element (t, c) belongs to the thread of column c in the block of bucket
 * t % n_buckets, which adds the rows n with rows[n] == t in increasing n, one f32 add each: the
 * CPU backend's order (kernels/cpu/gather_backward.c), so the two agree bit for bit, whatever
 * the grid. No atomics. */
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* Rows a thread takes at once: their d_out values and the distinct table rows among them are
 * loaded together, so the chain of read-add-write on d_table (which the compiler must keep in
 * order, as two rows may name one table row) costs one memory latency per group, not per row. */
constexpr int kGatherGroup = 8;

/* Grid (column blocks, buckets). Each turn, the block's threads test blockDim.x consecutive rows
 * for its bucket and compact the matches, in row order, into a shared list (warp ballots and
 * per-warp counts); then each thread walks the list for its column. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_gather_rows_backward_k(float *d_table,      /* (n_table_rows,C) += */
                              const float *d_out,  /* (N,C) */
                              const int32_t *rows, /* (N) */
                              int n_rows, int n_cols, int n_buckets) {
    __shared__ int list_n[kBlockThreads], list_row[kBlockThreads];
    __shared__ int warp_counts[kBlockThreads / kWarpSize];
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int bucket = blockIdx.y;
    const size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t n_cols_z = (size_t)n_cols;

    for (int base = 0; base < n_rows; base += blockDim.x) {
        const int n = base + (int)threadIdx.x;
        const int row = n < n_rows ? rows[n] : -1; /* validated: >= 0 */
        const bool mine = row >= 0 && row % n_buckets == bucket;
        const unsigned ballot = __ballot_sync(0xffffffffu, mine);
        if (lane == 0) warp_counts[warp] = __popc(ballot);
        __syncthreads();
        int offset = 0, total = 0;
        for (int w = 0; w < (int)(blockDim.x / kWarpSize); w++) {
            if (w < warp) offset += warp_counts[w];
            total += warp_counts[w];
        }
        if (mine) {
            const int at = offset + __popc(ballot & ((1u << lane) - 1u));
            list_n[at] = n;
            list_row[at] = row;
        }
        __syncthreads();

        if (c < n_cols_z) {
            for (int first = 0; first < total; first += kGatherGroup) {
                int t[kGatherGroup], owner[kGatherGroup];
                float x[kGatherGroup], acc[kGatherGroup];
                ZT_UNROLL(8)
                for (int u = 0; u < kGatherGroup; u++) {
                    const bool live = first + u < total;
                    t[u] = live ? list_row[first + u] : -1;
                    x[u] = live ? d_out[(size_t)list_n[first + u] * n_cols_z + c] : 0.0f;
                }
                /* owner[u]: the first slot of the group naming u's table row, which holds that
                 * row's running value. */
                ZT_UNROLL(8)
                for (int u = 0; u < kGatherGroup; u++) {
                    owner[u] = u;
                    for (int v = u - 1; v >= 0; v--)
                        if (t[v] == t[u]) owner[u] = v;
                }
                ZT_UNROLL(8)
                for (int u = 0; u < kGatherGroup; u++)
                    acc[u] =
                        t[u] >= 0 && owner[u] == u ? d_table[(size_t)t[u] * n_cols_z + c] : 0.0f;
                /* Constant indices only (the loops unroll), so acc stays in registers. */
                ZT_UNROLL(8)
                for (int u = 0; u < kGatherGroup; u++) {
                    if (t[u] < 0) continue;
                    for (int v = 0; v <= u; v++)
                        if (owner[u] == v) acc[v] += x[u];
                }
                ZT_UNROLL(8)
                for (int u = 0; u < kGatherGroup; u++)
                    if (t[u] >= 0 && owner[u] == u) d_table[(size_t)t[u] * n_cols_z + c] = acc[u];
            }
        }
        __syncthreads(); /* the list is read before the next turn rewrites it */
    }
}

zt_status zt_cuda_gather_rows_backward(zt_backend *be, float *d_table, /* (n_table_rows,C) += */
                                       const float *d_out,             /* (N,C) */
                                       const int32_t *rows,            /* (N) */
                                       int n_rows, int n_table_rows, int n_cols) {
    const char *op = "gather_rows_backward";
    ZT_TRY(zt_check_gather_backward_args(op, d_table, d_out, rows, n_rows, n_table_rows, n_cols));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    /* Checked before the scatter so that a bad index leaves d_table untouched. */
    int bad_row;
    int32_t bad_index;
    ZT_TRY(zt_cuda_find_bad_index(cb, rows, n_rows, n_table_rows, &bad_row, &bad_index));
    if (bad_row >= 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d index %d outside [0, %d)", op, bad_row,
                       (int)bad_index, n_table_rows);

    /* A narrow table gets fewer threads per block rather than idle columns; whole warps, for the
     * ballots. Buckets bring the grid to about 4 blocks per SM (a 768-wide table: 3 column
     * blocks, 176 buckets on 132 SMs); every block reads all N indices, which is cheap beside
     * the rows it adds. The bits do not depend on either choice. */
    const int threads =
        n_cols >= kBlockThreads ? kBlockThreads : (n_cols + kWarpSize - 1) / kWarpSize * kWarpSize;
    const long long col_blocks = ((long long)n_cols + threads - 1) / threads;
    long long buckets = (4LL * cb->n_sms + col_blocks - 1) / col_blocks;
    if (buckets > n_table_rows) buckets = n_table_rows;
    if (buckets > 65535) buckets = 65535; /* gridDim.y */
    if (buckets < 1) buckets = 1;
    const dim3 grid((unsigned)col_blocks, (unsigned)buckets);
    ZT_LAUNCH(zt_gather_rows_backward_k, grid, (unsigned)threads, 0, cb->stream, d_table, d_out,
              rows, n_rows, n_cols, (int)buckets);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
