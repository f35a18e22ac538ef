/* linear: out = in @ W^T (+ bias) (then ReLU), every GEMM through cuBLASLt with f32 accumulation
 * and the bias and ReLU applied by its epilogue. The backend's GEMM precision picks the inputs:
 *   ZT_GEMM_F32   f32 x f32 (a half weight widened exactly, chunk by chunk): the CPU's numerics;
 *   ZT_GEMM_TF32  the same operands with CUBLAS_COMPUTE_32F_FAST_TF32;
 *   ZT_GEMM_HALF  a half weight as stored x activations rounded to its dtype: tensor cores.
 * Scratch layout and chunks (even, the fewest the budget allows) come from zt_cuda_linear_scratch
 * (linear_plan.h), which the scratch planner asks too, so the plan and the op cannot drift apart.
 * The ReLU is cuBLASLt's max(x, 0), whose NaN handling is undocumented (the CPU's passes NaN
 * through, as torch.relu); a NaN that reaches fc1 came from the residual stream, which still
 * carries it to the loss. zt_cuda_lt_matmul is the backend's one cublasLtMatmul call site;
 * linear_backward.cu's GEMMs (transposed operands, accumulation into D) go through it too, sharing
 * the plan cache: cuBLASLt's descriptors, layouts and algorithm made once per configuration and row
 * bucket (docs/design.md §4.3). */
#include <string.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

// ---- kernels ----

/* dst = src widened to f32; exact for f16 and bf16. */
static __global__ void zt_widen_k(float *__restrict__ dst, /* (n_elems) */
                                  const void *src,         /* (n_elems) */
                                  zt_dtype src_dtype, size_t n_elems) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride)
        dst[i] = zt_load_f32(src, src_dtype, i);
}

/* dst = src rounded to nearest even in dst_dtype (f16 or bf16): the GEMM's half operand. */
static __global__ void zt_narrow_k(void *dst, zt_dtype dst_dtype, /* (n_elems) */
                                   const float *__restrict__ src, /* (n_elems) */
                                   size_t n_elems) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride) {
        if (dst_dtype == ZT_F16)
            static_cast<__half *>(dst)[i] = __float2half_rn(src[i]);
        else
            static_cast<__nv_bfloat16 *>(dst)[i] = __float2bfloat16_rn(src[i]);
    }
}

/* dst = src, 16-bit elements: a half bias moved to an aligned address, as stored. */
static __global__ void zt_copy_u16_k(uint16_t *__restrict__ dst,       /* (n_elems) */
                                     const uint16_t *__restrict__ src, /* (n_elems) */
                                     size_t n_elems) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride)
        dst[i] = src[i];
}

/* cuBLASLt's bias epilogue has been reported to need a 16-byte aligned bias on A100 (the
 * documentation is silent), so a lesser-aligned one is copied. */
constexpr unsigned kLtBiasAlignment = 16;

/* out[:, 0:n_out] (row stride ldc) = in @ w_rows^T (+ bias) (then ReLU), stored in out_dtype
 * (f32, or rounded by the epilogue to a half dtype; the bias then in that dtype too). Row-major
 * (R, K) reads column-major as its (K, R) transpose, so cuBLASLt computes the column-major
 * D (n_out, N) = w_rows^T' . in^T' with op(A) = T on w_rows (IC, n_out) and op(B) = N on in
 * (IC, N); the bias is a vector over D's rows, broadcast over the N columns, as Linear's. */
/* The members of one call (linear_batched; count 1: a plain linear), strides in elements of
 * the output's, the weight's and the bias's dtype as the GEMM reads them. */
struct linear_members {
    int count;
    size_t out_stride, w_stride, bias_stride;
};
static const linear_members kOneMember = {1, 0, 0, 0};

static zt_status lt_matmul(zt_cuda_backend *cb, void *out, zt_dtype out_dtype, /* (N,ldc) */
                           const void *in, zt_dtype in_dtype,                  /* (N,IC) */
                           const void *w_rows, zt_dtype w_dtype,               /* (n_out,IC) */
                           const void *bias,                                   /* (n_out) or NULL */
                           int n_rows, int in_features, int n_out, int ldc, int relu,
                           cublasComputeType_t compute,
                           const linear_members &members = kOneMember) {
    zt_lt_gemm g;
    memset(&g, 0, sizeof g);
    g.a = w_rows;
    g.a_dtype = w_dtype;
    g.lda = in_features;
    g.trans_a = 1;
    g.b = in;
    g.b_dtype = in_dtype;
    g.ldb = in_features;
    g.d = out;
    g.d_dtype = out_dtype;
    g.ldd = ldc;
    g.m = n_out;
    g.n = n_rows;
    g.k = in_features;
    g.bias = bias;
    g.relu = relu;
    g.compute = compute;
    g.rows_dim = ZT_LT_ROWS_N;
    if (members.count > 1) {
        /* one input for every member: B's stride 0 */
        g.batch = members.count;
        g.a_stride = (long long)members.w_stride;
        g.d_stride = (long long)members.out_stride;
        g.bias_stride = (long long)members.bias_stride;
    }
    return zt_cuda_lt_matmul(cb, "linear", g);
}

// ---- the op ----

static zt_status linear_rounded(zt_backend *be, const char *op, void *out, zt_dtype out_dtype,
                                const float *in, const void *half_in, zt_weight w, zt_weight bias,
                                int n_rows, int in_features, int out_features, int relu,
                                const linear_members &members = kOneMember);

/* A batch's members as linears of their own (f32 outputs). */
static zt_status linear_each_member(zt_backend *be, const char *op, float *out, /* members */
                                    const float *in, const void *half_in, zt_weight w,
                                    zt_weight bias, int n_rows, int in_features, int out_features,
                                    int relu, const linear_members &members) {
    for (int i = 0; i < members.count; i++)
        ZT_TRY(linear_rounded(be, op, out + (size_t)i * members.out_stride, ZT_F32, in, half_in,
                              zt_weight_member(w, members.w_stride, i),
                              zt_weight_member(bias, members.bias_stride, i), n_rows, in_features,
                              out_features, relu));
    return ZT_OK;
}

/* linear with its f32 input `in`, or, under ZT_GEMM_HALF, with that input already rounded to
 * w's dtype in half_in (NULL: round `in` here). A half input runs the very GEMMs (the same
 * chunks of rows, so the same shapes and plans) that rounding `in` chunk by chunk would, reading
 * each chunk in place instead of from the scratch. out holds out_dtype: f32, or w's half dtype
 * (linear_half_out: half_in given, the bias in w's dtype), which cuBLASLt's epilogue rounds to. */
static zt_status linear_rounded(zt_backend *be, const char *op, void *out, /* (N,OC) */
                                zt_dtype out_dtype, const float *in,       /* (N,IC) */
                                const void *half_in,                       /* (N,IC) or NULL */
                                zt_weight w, zt_weight bias, int n_rows, int in_features,
                                int out_features, int relu, const linear_members &members) {
    ZT_TRY(zt_cuda_enter(be));
    zt_cuda_backend *cb = zt_cuda(be);
    const zt_gemm_precision precision = be->gemm;
    const int half_out = out_dtype != ZT_F32;
    /* cuBLASLt's bias epilogue: every member's bias 16-byte aligned */
    const int misaligned_bias =
        bias.data != NULL &&
        (zt_alignment_of(bias.data) < kLtBiasAlignment ||
         (members.count > 1 &&
          members.bias_stride * zt_dtype_size(bias.dtype) % kLtBiasAlignment != 0));
    /* an f32 output takes an f32 bias, a half one a bias of its own dtype (as stored) */
    const int copy_bias =
        half_out ? misaligned_bias : bias.data != NULL && (bias.dtype != ZT_F32 || misaligned_bias);
    const int half_weight = w.dtype == ZT_F16 || w.dtype == ZT_BF16;
    if (members.count > 1 && half_weight && precision != ZT_GEMM_HALF)
        /* widened weight chunks are a member's own */
        return linear_each_member(be, op, static_cast<float *>(out), in, half_in, w, bias, n_rows,
                                  in_features, out_features, relu, members);
    const int n_bias_copies = copy_bias ? members.count : 0;
    const zt_linear_scratch plan =
        zt_cuda_linear_scratch(precision, n_rows, in_features, out_features, w.dtype, n_bias_copies,
                               cb->linear_chunk_floats);
    /* a half input takes only the bias copy of the scratch */
    const size_t scratch_bytes =
        half_in ? (plan.copy_bias ? plan.operand_offset : 0) : plan.total_bytes;
    char *scratch = NULL;
    if (scratch_bytes) {
        float *base;
        ZT_TRY(zt_cuda_scratch(cb, (scratch_bytes + sizeof(float) - 1) / sizeof(float), op, &base));
        scratch = reinterpret_cast<char *>(base);
    }
    const void *bias_arg = bias.data;
    const size_t out_elem = zt_dtype_size(out_dtype);
    linear_members gemm_members = members;
    if (plan.copy_bias) {
        /* each member's bias in D's dtype, zt_linear_bias_bytes apart */
        const size_t copy_bytes = zt_linear_bias_bytes(out_features);
        for (int i = 0; i < members.count; i++) {
            const char *src = static_cast<const char *>(bias.data) +
                              (size_t)i * members.bias_stride * zt_dtype_size(bias.dtype);
            char *dst = scratch + plan.bias_offset + (size_t)i * copy_bytes;
            if (half_out)
                ZT_LAUNCH(zt_copy_u16_k, zt_stride_blocks((size_t)out_features), kBlockThreads, 0,
                          cb->stream, reinterpret_cast<uint16_t *>(dst),
                          reinterpret_cast<const uint16_t *>(src), (size_t)out_features);
            else
                ZT_LAUNCH(zt_widen_k, zt_stride_blocks((size_t)out_features), kBlockThreads, 0,
                          cb->stream, reinterpret_cast<float *>(dst), src, bias.dtype,
                          (size_t)out_features);
        }
        bias_arg = scratch + plan.bias_offset;
        gemm_members.bias_stride = copy_bytes / out_elem;
    }
    const float *bias_f32 = static_cast<const float *>(bias_arg); /* the f32-output paths' */
    const cublasComputeType_t compute =
        precision == ZT_GEMM_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    void *operand = scratch ? scratch + plan.operand_offset : NULL;

    /* attention's dtype in the AUTO mode: the q/k/v projections run just before it */
    cb->last_gemm_input_dtype = plan.half_inputs ? (int)w.dtype : (int)ZT_F32;
    /* Under batch invariance each GEMM holds one block of gemm_row_block rows (backend.h), so a
     * row meets the same M, plan and algorithm whatever else its batch holds. */
    const int block =
        be->gemm_row_block > 0 && be->gemm_row_block < n_rows ? be->gemm_row_block : n_rows;
    if (plan.half_inputs) {
        /* rows of activations at a time, rounded to the weight's dtype; the weight as stored.
         * Chunks split each block, by the block's own plan, so they depend on the block alone. */
        for (int first_row = 0; first_row < n_rows; first_row += block) {
            const int block_rows = n_rows - first_row < block ? n_rows - first_row : block;
            const zt_linear_scratch block_plan =
                block_rows == n_rows
                    ? plan
                    : zt_cuda_linear_scratch(precision, block_rows, in_features, out_features,
                                             w.dtype, n_bias_copies, cb->linear_chunk_floats);
            for (size_t c = 0; c < block_plan.chunks.n_chunks; c++) {
                const size_t first = (size_t)first_row + zt_chunk_first(&block_plan.chunks, c);
                const size_t rows = zt_chunk_rows(&block_plan.chunks, c);
                const size_t n_elems = rows * (size_t)in_features;
                const void *chunk_in = operand;
                if (half_in)
                    chunk_in = static_cast<const char *>(half_in) +
                               first * (size_t)in_features * zt_dtype_size(w.dtype);
                else
                    ZT_LAUNCH(zt_narrow_k, zt_stride_blocks(n_elems), kBlockThreads, 0, cb->stream,
                              operand, w.dtype, in + first * (size_t)in_features, n_elems);
                ZT_TRY(lt_matmul(
                    cb, static_cast<char *>(out) + first * (size_t)out_features * out_elem,
                    out_dtype, chunk_in, w.dtype, w.data, w.dtype, bias_arg, (int)rows, in_features,
                    out_features, out_features, relu, CUBLAS_COMPUTE_32F, gemm_members));
            }
        }
    } else if (half_out) {
        return zt_fail(ZT_ERR_INTERNAL, "%s: a half output without half inputs", op);
    } else if (plan.widen_weight) {
        /* cuBLASLt has no f32 x f16 GEMM; widening the weight (exactly) keeps the activations
         * f32. Chunks of weight rows are column blocks of out; each is widened once, then
         * multiplied block of rows by block of rows. */
        const size_t elem_size = zt_dtype_size(w.dtype);
        float *chunk = static_cast<float *>(operand);
        for (size_t c = 0; c < plan.chunks.n_chunks; c++) {
            const size_t first = zt_chunk_first(&plan.chunks, c);
            const size_t n_out = zt_chunk_rows(&plan.chunks, c);
            const size_t n_elems = n_out * (size_t)in_features;
            const char *src =
                static_cast<const char *>(w.data) + first * (size_t)in_features * elem_size;
            ZT_LAUNCH(zt_widen_k, zt_stride_blocks(n_elems), kBlockThreads, 0, cb->stream, chunk,
                      src, w.dtype, n_elems);
            for (int first_row = 0; first_row < n_rows; first_row += block) {
                const int block_rows = n_rows - first_row < block ? n_rows - first_row : block;
                const size_t row0 = (size_t)first_row;
                ZT_TRY(lt_matmul(cb,
                                 static_cast<float *>(out) + row0 * (size_t)out_features + first,
                                 ZT_F32, in + row0 * (size_t)in_features, ZT_F32, chunk, ZT_F32,
                                 bias_f32 ? bias_f32 + first : NULL, block_rows, in_features,
                                 (int)n_out, out_features, relu, compute));
            }
        }
    } else {
        for (int first_row = 0; first_row < n_rows; first_row += block) {
            const int block_rows = n_rows - first_row < block ? n_rows - first_row : block;
            const size_t row0 = (size_t)first_row;
            ZT_TRY(lt_matmul(cb, static_cast<float *>(out) + row0 * (size_t)out_features, ZT_F32,
                             in + row0 * (size_t)in_features, ZT_F32, w.data, ZT_F32, bias_f32,
                             block_rows, in_features, out_features, out_features, relu, compute,
                             gemm_members));
        }
    }
    return ZT_OK;
}

zt_status zt_cuda_linear(zt_backend *be, float *out, /* (N,OC) */
                         const float *in,            /* (N,IC) */
                         zt_weight w,                /* (OC,IC) */
                         zt_weight bias,             /* (OC) or absent */
                         int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear";
    ZT_TRY(zt_check_linear_args(op, out, in, w, bias, n_rows, in_features, out_features));
    return linear_rounded(be, op, out, ZT_F32, in, nullptr, w, bias, n_rows, in_features,
                          out_features, relu);
}

zt_status zt_cuda_linear_half_in(zt_backend *be, float *out, /* (N,OC) */
                                 const void *in,             /* (N,IC) in w.dtype */
                                 zt_weight w,                /* (OC,IC) */
                                 zt_weight bias,             /* (OC) or absent */
                                 int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear_half_in";
    ZT_TRY(zt_check_linear_half_in_args(op, be->gemm, out, in, w, bias, n_rows, in_features,
                                        out_features));
    return linear_rounded(be, op, out, ZT_F32, nullptr, in, w, bias, n_rows, in_features,
                          out_features, relu);
}

zt_status zt_cuda_linear_batched(zt_backend *be, float *out, size_t out_stride, /* count x (N,OC) */
                                 const void *in, zt_dtype in_dtype,             /* (N,IC) */
                                 zt_weight w, size_t w_stride,       /* count x (OC,IC) */
                                 zt_weight bias, size_t bias_stride, /* count x (OC) or absent */
                                 int count, int n_rows, int in_features, int out_features,
                                 int relu) {
    const char *op = "linear_batched";
    ZT_TRY(zt_check_linear_batched_args(op, be->gemm, out, out_stride, in, in_dtype, w, w_stride,
                                        bias, bias_stride, count, n_rows, in_features,
                                        out_features));
    const linear_members members = {count, out_stride, w_stride, bias.data ? bias_stride : 0};
    const int half = in_dtype != ZT_F32;
    const float *in_f32 = half ? nullptr : static_cast<const float *>(in);
    const void *in_half = half ? in : nullptr;
    zt_cuda_backend *cb = zt_cuda(be);
    if (!cb->batched_gemm_refused && count > 1) {
        const zt_status s = linear_rounded(be, op, out, ZT_F32, in_f32, in_half, w, bias, n_rows,
                                           in_features, out_features, relu, members);
        if (s != ZT_ERR_CUDA) return s;
        /* cuBLASLt may have no algorithm for this batch (a shared B, a bias batch stride): the
         * members one by one from now on, rewriting every output; a device fault fails there
         * again */
        fprintf(stderr, "zotune: %s: %s; running its linears one by one\n", op, zt_last_error());
        cb->batched_gemm_refused = 1;
        zt_clear_error();
    }
    return linear_each_member(be, op, out, in_f32, in_half, w, bias, n_rows, in_features,
                              out_features, relu, members);
}

zt_status zt_cuda_linear_half_out(zt_backend *be, void *out, /* (N,OC) in w.dtype */
                                  const void *in,            /* (N,IC) in w.dtype */
                                  zt_weight w,               /* (OC,IC) */
                                  zt_weight bias,            /* (OC) in w.dtype, or absent */
                                  int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear_half_out";
    ZT_TRY(zt_check_linear_half_out_args(op, be->gemm, out, in, w, bias, n_rows, in_features,
                                         out_features));
    return linear_rounded(be, op, out, w.dtype, nullptr, in, w, bias, n_rows, in_features,
                          out_features, relu);
}

zt_status zt_cuda_round_half(zt_backend *be, void *dst, zt_dtype dtype, /* (n) */
                             const float *src,                          /* (n) */
                             size_t n_elems) {
    ZT_TRY(zt_check_round_half_args("round_half", dst, dtype, src, n_elems));
    ZT_TRY(zt_cuda_enter(be));
    if (n_elems == 0) return ZT_OK;
    /* linear's own rounding kernel, so the bits are those linear would have given the GEMM */
    ZT_LAUNCH(zt_narrow_k, zt_stride_blocks(n_elems), kBlockThreads, 0, zt_cuda(be)->stream, dst,
              dtype, src, n_elems);
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
