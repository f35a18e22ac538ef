/* linear_backward: the gradient of linear (out = in @ W^T + bias, then ReLU if relu):
 *     d_pre = d_out masked by out > 0 (relu; written back into d_out)
 *     d_bias += sum_n d_pre[n,:],   d_w += d_pre^T @ in,   d_in = d_pre @ W.
 * Both products are cuBLASLt GEMMs (linear.cu's call site) on f32 operands with f32 compute,
 * whatever the backend's GEMM precision: the contract's numerics (backend.h). d_bias is a column
 * sum in double over fixed pieces of rows, merged in piece order, so its bits depend on the shapes
 * only.
 *
 * d_in sums over the output features, so a weight is cut into chunks of its rows, d_in taking each
 * chunk's product in chunk order (the first assigns, the rest add). A half weight is widened into
 * the scratch a chunk at a time (bounded scratch, as the forward's); an f32 weight is cut into the
 * same chunks and its algorithm chosen for the same alignment, so that a half weight gives the
 * bits of the f32 weight holding its widened values, as the contract asks. */
#include <string.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* d_bias's pieces: at least 32 rows, at most 256 pieces (a function of N alone). */
constexpr int kBiasPieceRows = 32;
constexpr int kBiasMaxPieces = 256;
/* The A alignment every d_in GEMM declares (see zt_lt_gemm::max_align_a): what cuBLASLt's
 * vectorised kernels need, and what the widened chunks and an aligned f32 weight both have. */
constexpr unsigned kWeightAlignment = 16;

/* d_out[i] = 0 where out[i] <= 0 (or is NaN): ReLU's derivative, 0 at 0 as torch's. */
static __global__ void zt_relu_mask_k(float *__restrict__ d_out,     /* (n_elems) */
                                      const float *__restrict__ out, /* (n_elems) */
                                      size_t n_elems) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride)
        d_out[i] = out[i] > 0.0f ? d_out[i] : 0.0f;
}

/* Grid (column blocks, pieces): sums[p, o] = sum of d_pre[n, o] over piece p's rows, in row order,
 * in double. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_bias_pieces_k(double *sums,       /* (pieces,OC) */
                     const float *d_pre, /* (N,OC) */
                     int n_rows, int out_features, int piece_rows) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out_features) return;
    const int first = (int)blockIdx.y * piece_rows;
    const int end = n_rows - first < piece_rows ? n_rows : first + piece_rows;
    double sum = 0.0;
    for (int n = first; n < end; n++)
        sum += d_pre[(size_t)n * (size_t)out_features + (size_t)o];
    sums[(size_t)blockIdx.y * (size_t)out_features + (size_t)o] = sum;
}

/* d_bias[o] += the pieces' sums, added in piece order and rounded once. */
static __global__ void __launch_bounds__(kBlockThreads)
    zt_bias_merge_k(float *d_bias,      /* (OC) */
                    const double *sums, /* (pieces,OC) */
                    int out_features, int n_pieces) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out_features) return;
    double total = 0.0;
    for (int p = 0; p < n_pieces; p++)
        total += sums[(size_t)p * (size_t)out_features + (size_t)o];
    d_bias[o] = (float)((double)d_bias[o] + total);
}

/* dst = src widened to f32; exact for f16 and bf16 (and a copy for f32). */
static __global__ void zt_widen_chunk_k(float *__restrict__ dst, /* (n_elems) */
                                        const void *src,         /* (n_elems) */
                                        zt_dtype src_dtype, size_t n_elems) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride)
        dst[i] = zt_load_f32(src, src_dtype, i);
}

/* Row-major (R, K) is column-major (K, R) with leading dimension K, so in cuBLASLt's terms
 *     d_w^T (IC, OC) += in^T (IC, N) . d_pre (N, OC):   A = in as stored, B = d_pre transposed. */
static zt_status weight_gradient(zt_cuda_backend *cb, const char *op, float *d_w, /* (OC,IC) */
                                 const float *d_pre,                              /* (N,OC) */
                                 const float *in,                                 /* (N,IC) */
                                 int n_rows, int in_features, int out_features) {
    zt_lt_gemm g;
    memset(&g, 0, sizeof g);
    g.a = in;
    g.a_dtype = ZT_F32;
    g.lda = in_features;
    g.b = d_pre;
    g.b_dtype = ZT_F32;
    g.ldb = out_features;
    g.trans_b = 1;
    g.d = d_w;
    g.ldd = in_features;
    g.m = in_features;
    g.n = out_features;
    g.k = n_rows;
    g.accumulate = 1;
    g.compute = CUBLAS_COMPUTE_32F;
    g.rows_dim = ZT_LT_ROWS_K;
    return zt_cuda_lt_matmul(cb, op, g);
}

/* d_in (=, or += when accumulate) d_pre[:, first:first+n_out] @ w_rows, w_rows holding those rows
 * of W in f32: d_in^T (IC, N) = w_rows^T (IC, n_out) . d_pre[:, first:...]^T (n_out, N), with
 * both operands as stored (the slice of d_pre keeps d_pre's leading dimension). */
static zt_status input_gradient_chunk(zt_cuda_backend *cb, const char *op, float *d_in, /* (N,IC) */
                                      const float *d_pre,                               /* (N,OC) */
                                      const float *w_rows, /* (n_out,IC) */
                                      int n_rows, int in_features, int out_features, int first,
                                      int n_out, int accumulate) {
    zt_lt_gemm g;
    memset(&g, 0, sizeof g);
    g.a = w_rows;
    g.a_dtype = ZT_F32;
    g.lda = in_features;
    g.b = d_pre + first;
    g.b_dtype = ZT_F32;
    g.ldb = out_features;
    g.d = d_in;
    g.ldd = in_features;
    g.m = in_features;
    g.n = n_rows;
    g.k = n_out;
    g.accumulate = accumulate;
    g.compute = CUBLAS_COMPUTE_32F;
    g.max_align_a = kWeightAlignment;
    g.rows_dim = ZT_LT_ROWS_N;
    return zt_cuda_lt_matmul(cb, op, g);
}

static int bias_piece_rows_of(int n_rows) {
    const int rows = (n_rows + kBiasMaxPieces - 1) / kBiasMaxPieces;
    return rows < kBiasPieceRows ? kBiasPieceRows : rows;
}

/* The chunks a half weight is widened in under f32 GEMMs (the forward's plan), for every weight
 * dtype: the chunking is part of d_in's summation order. */
static zt_chunking chunks_of(int n_rows, int in_features, int out_features,
                             size_t linear_chunk_floats) {
    return zt_cuda_linear_scratch(ZT_GEMM_F32, n_rows, in_features, out_features, ZT_F16, 0,
                                  linear_chunk_floats)
        .chunks;
}

/* The bias sums are merged before the first chunk is widened (stream order), so the two share
 * the scratch: the larger of the two. */
size_t zt_cuda_linear_backward_scratch_bytes(int n_rows, int in_features, int out_features,
                                             int with_d_in, int widen, int with_d_bias,
                                             size_t linear_chunk_floats) {
    if (n_rows <= 0 || in_features <= 0 || out_features <= 0) return 0;
    const zt_chunking chunks = chunks_of(n_rows, in_features, out_features, linear_chunk_floats);
    const size_t chunk_bytes =
        with_d_in && widen
            ? zt_align256(zt_chunk_max_rows(&chunks) * (size_t)in_features * sizeof(float))
            : 0;
    const int piece_rows = bias_piece_rows_of(n_rows);
    const size_t n_pieces = (size_t)((n_rows + piece_rows - 1) / piece_rows);
    const size_t sums_bytes = with_d_bias ? n_pieces * (size_t)out_features * sizeof(double) : 0;
    return chunk_bytes > sums_bytes ? chunk_bytes : sums_bytes;
}

zt_status zt_cuda_linear_backward(zt_backend *be, float *d_in, /* (N,IC) = */
                                  float *d_w,                  /* (OC,IC) += */
                                  float *d_bias,               /* (OC) += */
                                  float *d_out,                /* (N,OC) */
                                  const float *in,             /* (N,IC) */
                                  const float *out,            /* (N,OC), relu only */
                                  zt_weight w,                 /* (OC,IC) */
                                  int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear_backward";
    ZT_TRY(zt_check_linear_backward_args(op, d_in, d_w, d_bias, d_out, in, out, w, n_rows,
                                         in_features, out_features, relu));
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);

    const zt_chunking chunks =
        chunks_of(n_rows, in_features, out_features, cb->linear_chunk_floats);
    const bool widen =
        w.dtype != ZT_F32 || (reinterpret_cast<uintptr_t>(w.data) % kWeightAlignment) != 0;
    const int piece_rows = bias_piece_rows_of(n_rows);
    const int n_pieces = (n_rows + piece_rows - 1) / piece_rows;
    /* Taken before anything is written, so running out of memory leaves every output as it
     * was. */
    const size_t scratch_bytes =
        zt_cuda_linear_backward_scratch_bytes(n_rows, in_features, out_features, d_in != NULL,
                                              widen, d_bias != NULL, cb->linear_chunk_floats);
    float *scratch = NULL;
    if (scratch_bytes)
        ZT_TRY(
            zt_cuda_scratch(cb, (scratch_bytes + sizeof(float) - 1) / sizeof(float), op, &scratch));

    const size_t n_out_elems = (size_t)n_rows * (size_t)out_features;
    if (relu)
        ZT_LAUNCH(zt_relu_mask_k, zt_stride_blocks(n_out_elems), kBlockThreads, 0, cb->stream,
                  d_out, out, n_out_elems);
    const float *d_pre = d_out;
    if (d_bias) {
        double *sums = reinterpret_cast<double *>(scratch);
        const unsigned col_blocks = (unsigned)((out_features + kBlockThreads - 1) / kBlockThreads);
        ZT_LAUNCH(zt_bias_pieces_k, dim3(col_blocks, (unsigned)n_pieces), kBlockThreads, 0,
                  cb->stream, sums, d_pre, n_rows, out_features, piece_rows);
        ZT_LAUNCH(zt_bias_merge_k, col_blocks, kBlockThreads, 0, cb->stream, d_bias, sums,
                  out_features, n_pieces);
    }
    if (d_w) ZT_TRY(weight_gradient(cb, op, d_w, d_pre, in, n_rows, in_features, out_features));
    if (d_in) {
        const size_t row_len = (size_t)in_features, elem_size = zt_dtype_size(w.dtype);
        for (size_t c = 0; c < chunks.n_chunks; c++) {
            const size_t first = zt_chunk_first(&chunks, c), n_out = zt_chunk_rows(&chunks, c);
            const float *w_rows;
            if (widen) {
                const size_t n_elems = n_out * row_len;
                const char *src = static_cast<const char *>(w.data) + first * row_len * elem_size;
                ZT_LAUNCH(zt_widen_chunk_k, zt_stride_blocks(n_elems), kBlockThreads, 0, cb->stream,
                          scratch, src, w.dtype, n_elems);
                w_rows = scratch;
            } else {
                w_rows = static_cast<const float *>(w.data) + first * row_len;
            }
            ZT_TRY(input_gradient_chunk(cb, op, d_in, d_pre, w_rows, n_rows, in_features,
                                        out_features, (int)first, (int)n_out, first > 0));
        }
    }
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
