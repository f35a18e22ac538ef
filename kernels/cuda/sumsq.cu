/* z_sumsq: sum of z_j^2 over a tensor, in double, regenerating z (the norm pass of
 * uniform-on-sphere directions, docs/design.md §2).
 *
 * Deterministic by construction: the tensor is cut into fixed chunks of kSumsqChunkElems
 * elements; a chunk's sum is formed in one fixed order (thread t of kSumsqThreads takes the Philox
 * blocks t, t + kSumsqThreads, ... of the chunk in ascending order, then a fixed pairwise tree over
 * the threads), whichever block of the grid happens to take the chunk; the chunk sums are then
 * combined by one block in the same fixed way. So the bits depend on n_elems alone: not on the
 * grid, the GPU, or the order in which blocks run. They differ from the CPU backend's (ascending
 * order within a chunk) only by the rounding of the order, as z_j^2 is exact in double.
 */
#include "cuda/z_terms.cuh"

namespace ZT_CUDA_NAMESPACE {

/* Threads per block of both kernels: the tree below is written for a power of two. */
constexpr int kSumsqThreads = 256;
/* Elements per chunk: 4096 Philox blocks, 16 per thread. The CPU backend uses the same size. */
constexpr uint64_t kSumsqChunkElems = (uint64_t)1 << 14;

static_assert((kSumsqThreads & (kSumsqThreads - 1)) == 0, "the tree needs a power of two");

size_t zt_cuda_z_sumsq_scratch_floats(size_t n_elems) {
    if (n_elems == 0) return 0;
    const uint64_t n_chunks = ((uint64_t)n_elems + kSumsqChunkElems - 1) / kSumsqChunkElems;
    /* one double per chunk and one for the total */
    return (size_t)(n_chunks + 1) * (sizeof(double) / sizeof(float));
}

/* The sum of every thread's value in a fixed pairwise order (thread t absorbs t + stride for
 * stride = kSumsqThreads/2 .. 1), returned to thread 0. Every thread of the block must call it;
 * the closing barrier lets the caller reuse `tree` at once. */
__device__ __forceinline__ double zt_sumsq_tree(double value, double *tree) {
    const int t = threadIdx.x;
    tree[t] = value;
    __syncthreads();
    for (int stride = kSumsqThreads / 2; stride > 0; stride /= 2) {
        if (t < stride) tree[t] = __dadd_rn(tree[t], tree[t + stride]);
        __syncthreads();
    }
    const double total = tree[0];
    __syncthreads();
    return total;
}

/* partials[c] = sum of z_j^2 over chunk c, for every chunk (grid-stride over chunks; the loop
 * bound is the same for the whole block, so every thread reaches the barriers). */
static __global__ void __launch_bounds__(kSumsqThreads)
    zt_z_sumsq_chunks_k(double *partials, /* (n_chunks) */
                        uint64_t tensor_key, uint64_t n_elems, uint64_t n_chunks) {
    __shared__ double tree[kSumsqThreads];
    for (uint64_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
        const uint64_t begin = c * kSumsqChunkElems;
        const uint64_t end =
            n_elems - begin < kSumsqChunkElems ? n_elems : begin + kSumsqChunkElems;
        double sum = 0.0;
        for (uint64_t block = begin / 4 + threadIdx.x; block * 4 < end; block += kSumsqThreads) {
            const zt_f32x4 z = zt_cuda_z_gauss_block4(tensor_key, block);
            for (unsigned lane = 0; lane < 4 && block * 4 + lane < end; lane++) {
                const double value = (double)zt_f32x4_lane(z, lane);
                sum = __dadd_rn(sum, __dmul_rn(value, value)); /* the square is exact */
            }
        }
        const double chunk_sum = zt_sumsq_tree(sum, tree);
        if (threadIdx.x == 0) partials[c] = chunk_sum;
    }
}

/* *total = the chunk sums combined in a fixed order: thread t adds chunks t, t + kSumsqThreads,
 * ... in ascending order, then the tree. One block. */
static __global__ void __launch_bounds__(kSumsqThreads)
    zt_z_sumsq_total_k(double *total, const double *partials, /* (n_chunks) */
                       uint64_t n_chunks) {
    __shared__ double tree[kSumsqThreads];
    double sum = 0.0;
    for (uint64_t c = threadIdx.x; c < n_chunks; c += kSumsqThreads)
        sum = __dadd_rn(sum, partials[c]);
    const double all = zt_sumsq_tree(sum, tree);
    if (threadIdx.x == 0) *total = all;
}

static zt_status check_dist(const char *op, zt_dist dist) {
    if (dist == ZT_DIST_GAUSSIAN || dist == ZT_DIST_RADEMACHER) return ZT_OK;
    return zt_fail(ZT_ERR_INVALID_ARG, "%s: unknown distribution %d", op, (int)dist);
}

zt_status zt_cuda_z_sumsq_grid(zt_backend *be, double *out, uint64_t seed, uint32_t tensor_id,
                               size_t n_elems, zt_dist dist, unsigned max_blocks) {
    const char *op = "z_sumsq";
    ZT_TRY(zt_check_ptr(op, "out", out));
    ZT_TRY(check_dist(op, dist));
    /* Rademacher z is +-1, so the sum is the count, exactly (n < 2^53 for any real tensor). */
    if (dist == ZT_DIST_RADEMACHER || n_elems == 0) {
        *out = (double)n_elems;
        return ZT_OK;
    }
    if (max_blocks == 0) return zt_fail(ZT_ERR_INVALID_ARG, "%s: a grid of 0 blocks", op);

    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    const uint64_t n = (uint64_t)n_elems;
    const uint64_t n_chunks = (n + kSumsqChunkElems - 1) / kSumsqChunkElems;
    float *scratch = NULL;
    ZT_TRY(zt_cuda_scratch(cb, zt_cuda_z_sumsq_scratch_floats(n_elems), op, &scratch));
    double *partials = reinterpret_cast<double *>(scratch); /* cudaMalloc aligns to 256 bytes */
    double *total = partials + n_chunks;

    const unsigned blocks = n_chunks < max_blocks ? (unsigned)n_chunks : max_blocks;
    ZT_LAUNCH(zt_z_sumsq_chunks_k, blocks, kSumsqThreads, 0, cb->stream, partials,
              zt_tensor_key(seed, tensor_id), n, n_chunks);
    ZT_LAUNCH(zt_z_sumsq_total_k, 1, kSumsqThreads, 0, cb->stream, total, partials, n_chunks);
    double result = 0.0;
    ZT_CUDA_TRY(cudaMemcpyAsync(&result, total, sizeof result, cudaMemcpyDeviceToHost, cb->stream));
    ZT_TRY(zt_cuda_wait(cb)); /* the caller reads *out next */
    *out = result;
    return ZT_OK;
}

zt_status zt_cuda_z_sumsq(zt_backend *be, double *out, uint64_t seed, uint32_t tensor_id,
                          size_t n_elems, zt_dist dist) {
    return zt_cuda_z_sumsq_grid(be, out, seed, tensor_id, n_elems, dist, ZT_CUDA_ZO_MAX_BLOCKS);
}

} // namespace ZT_CUDA_NAMESPACE
