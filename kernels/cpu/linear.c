/* linear: out = in @ W^T (+ bias) (then ReLU), through OpenBLAS sgemm. Under ZT_GEMM_HALF a half
 * weight meets activations rounded to its dtype, as the CUDA backend's tensor-core path does, so
 * the CPU can reproduce (and test) those numerics; the products are exact in f32 either way.
 * Scratch layout and chunk size come from zt_cpu_linear_scratch, which the scratch planner
 * (cpu_backend.c) asks too, so the plan and the op cannot drift apart. */
#include <cblas.h>

#include "core/status.h"
#include "cpu/cpu_common.h"

/* out[:, first_out:first_out+n_out] = in @ W[first_out:first_out+n_out, :]^T, where w_rows is
 * that slice of W in f32. ldc = out_features writes the slice's columns in place. */
static void gemm_into_columns(float *out,          /* (N,OC) */
                              const float *in,     /* (N,IC) */
                              const float *w_rows, /* (n_out,IC) */
                              int n_rows, int in_features, int out_features, int first_out,
                              int n_out, int row_block) {
    if (row_block <= 0) row_block = n_rows;
    for (int r0 = 0; r0 < n_rows; r0 += row_block) {
        const int rows = n_rows - r0 < row_block ? n_rows - r0 : row_block;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_out, in_features, 1.0f,
                    in + (size_t)r0 * in_features, in_features, w_rows, in_features, 0.0f,
                    out + (size_t)r0 * out_features + first_out, out_features);
    }
}

/* The GEMM's output columns go to the threads in pieces of this many, each one single-threaded
 * sgemm. The pieces are fixed, whatever the thread count, because OpenBLAS's bits for an element
 * depend on where it sits in the matrix it was given: so the result is the same on 1 thread or
 * 16 (test_thread_counts in tests/ops/test_ops_cpu.c). 128 columns keep a 768-wide layer 6 pieces
 * deep. */
#define ZT_CPU_GEMM_PIECE_COLUMNS 128

/* gemm_into_columns over the columns [first_out, first_out + n_out), piece by piece in parallel;
 * w_rows holds exactly those rows of W. */
static void parallel_gemm(zt_cpu_backend *cpu, float *out, /* (N,OC) */
                          const float *in,                 /* (N,IC) */
                          const float *w_rows,             /* (n_out,IC) */
                          int n_rows, int in_features, int out_features, int first_out, int n_out) {
    const int n_pieces = (n_out + ZT_CPU_GEMM_PIECE_COLUMNS - 1) / ZT_CPU_GEMM_PIECE_COLUMNS;
    const int row_block = cpu->base.gemm_row_block;
    if (n_pieces == 1) {
        gemm_into_columns(out, in, w_rows, n_rows, in_features, out_features, first_out, n_out,
                          row_block);
        return;
    }
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int piece = 0; piece < n_pieces; piece++) {
        const int first = piece * ZT_CPU_GEMM_PIECE_COLUMNS;
        const int width =
            n_out - first < ZT_CPU_GEMM_PIECE_COLUMNS ? n_out - first : ZT_CPU_GEMM_PIECE_COLUMNS;
        gemm_into_columns(out, in, w_rows + (size_t)first * (size_t)in_features, n_rows,
                          in_features, out_features, first_out + first, width, row_block);
    }
}

/* Half weights: upcast chunk_rows output rows at a time into scratch, so the scratch stays
 * chunk_rows * IC floats even for a 50272-row LM head. The upcast runs on this thread (it costs
 * IC per output row against the GEMM's 2*N*IC); the chunk's GEMM is cut into the same pieces as
 * an f32 weight's (chunk_rows is a multiple of the piece), so both give the same bits. */
static void chunked_half_gemm(zt_cpu_backend *cpu, float *out, /* (N,OC) */
                              const float *in,                 /* (N,IC) */
                              zt_weight w, float *chunk,       /* (OC,IC), (chunk_rows,IC) */
                              int chunk_rows, int n_rows, int in_features, int out_features) {
    const size_t row_len = (size_t)in_features;
    for (int first_out = 0; first_out < out_features; first_out += chunk_rows) {
        int n_out = out_features - first_out;
        if (n_out > chunk_rows) n_out = chunk_rows;
        for (int r = 0; r < n_out; r++)
            zt_cpu_weight_to_f32(chunk + (size_t)r * row_len, w, (size_t)(first_out + r) * row_len,
                                 row_len);
        parallel_gemm(cpu, out, in, chunk, n_rows, in_features, out_features, first_out, n_out);
    }
}

static void add_bias_relu(zt_cpu_backend *cpu, float *out, /* (N,OC) */
                          const float *bias,               /* (OC) or NULL */
                          int n_rows, int out_features, int relu) {
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int n = 0; n < n_rows; n++) {
        float *y = out + (size_t)n * out_features;
        /* One vectorised pass per row (a branch per element costs a misprediction on half of
         * fc1's outputs). The relu is written so that NaN passes through, as torch.relu does:
         * divergence stays visible. */
        if (bias && relu) {
            ZT_CPU_SIMD
            for (int o = 0; o < out_features; o++) {
                const float v = y[o] + bias[o];
                y[o] = v < 0.0f ? 0.0f : v;
            }
        } else if (bias) {
            ZT_CPU_SIMD
            for (int o = 0; o < out_features; o++)
                y[o] += bias[o];
        } else {
            ZT_CPU_SIMD
            for (int o = 0; o < out_features; o++)
                y[o] = y[o] < 0.0f ? 0.0f : y[o];
        }
    }
}

zt_cpu_linear_scratch_layout zt_cpu_linear_scratch(zt_gemm_precision gemm, int n_rows,
                                                   int in_features, int out_features,
                                                   zt_dtype weight_dtype, zt_dtype bias_dtype,
                                                   int has_bias, int half_output) {
    zt_cpu_linear_scratch_layout layout = {0};
    if (weight_dtype != ZT_F32) {
        layout.chunk_rows = out_features < ZT_CPU_LINEAR_CHUNK_ROWS ? (size_t)out_features
                                                                    : ZT_CPU_LINEAR_CHUNK_ROWS;
        layout.chunk_floats = layout.chunk_rows * (size_t)in_features;
    }
    if (has_bias && bias_dtype != ZT_F32) layout.bias_floats = (size_t)out_features;
    if (gemm == ZT_GEMM_HALF && weight_dtype != ZT_F32) {
        layout.input_floats = (size_t)n_rows * (size_t)in_features;
        if (half_output) layout.output_floats = (size_t)n_rows * (size_t)out_features;
    }
    layout.chunk_offset = 0;
    layout.bias_offset = layout.chunk_offset + layout.chunk_floats;
    layout.inputs_offset = layout.bias_offset + layout.bias_floats;
    layout.output_offset = layout.inputs_offset + layout.input_floats;
    layout.total_floats = layout.output_offset + layout.output_floats;
    return layout;
}

/* linear on `in` as the GEMM takes it: rounded to the weight's dtype already where the layout
 * rounds (ZT_GEMM_HALF), given in w's dtype in `half_in` (NULL: round `in` here). A half_out
 * (linear_half_out; then out is NULL) receives the f32 result rounded to w's dtype. */
static zt_status linear_rounded(zt_backend *be, const char *op, float *out, /* (N,OC) or NULL */
                                void *half_out,                             /* (N,OC) or NULL */
                                const float *in,                            /* (N,IC) */
                                const void *half_in,                        /* (N,IC) or NULL */
                                zt_weight w, zt_weight bias, int n_rows, int in_features,
                                int out_features, int relu) {
    zt_cpu_backend *cpu = zt_cpu(be);
    const zt_cpu_linear_scratch_layout layout =
        zt_cpu_linear_scratch(be->gemm, n_rows, in_features, out_features, w.dtype, bias.dtype,
                              bias.data != NULL, half_out != NULL);
    float *scratch = NULL;
    if (layout.total_floats > 0) ZT_TRY(zt_cpu_scratch(cpu, layout.total_floats, op, &scratch));
    if (half_out) out = scratch + layout.output_offset;
    if (layout.input_floats > 0) {
        float *rounded = scratch + layout.inputs_offset;
        if (half_in) /* widening is exact: the values rounding `in` would give */
            zt_cpu_weight_to_f32(rounded, (zt_weight){half_in, w.dtype}, 0, layout.input_floats);
        else
            zt_cpu_round_to(rounded, in, w.dtype, layout.input_floats);
        in = rounded;
    }

    if (layout.chunk_rows == 0)
        parallel_gemm(cpu, out, in, (const float *)w.data, n_rows, in_features, out_features, 0,
                      out_features);
    else
        chunked_half_gemm(cpu, out, in, w, scratch + layout.chunk_offset, (int)layout.chunk_rows,
                          n_rows, in_features, out_features);

    const float *bias_f32 = bias.data;
    if (layout.bias_floats > 0) {
        zt_cpu_weight_to_f32(scratch + layout.bias_offset, bias, 0, layout.bias_floats);
        bias_f32 = scratch + layout.bias_offset;
    }
    if (bias_f32 || relu) add_bias_relu(cpu, out, bias_f32, n_rows, out_features, relu);
    if (half_out)
        return zt_cpu_round_half(be, half_out, w.dtype, out, (size_t)n_rows * out_features);
    return ZT_OK;
}

zt_status zt_cpu_linear(zt_backend *be, float *out, /* (N,OC) */
                        const float *in,            /* (N,IC) */
                        zt_weight w,                /* (OC,IC) */
                        zt_weight bias,             /* (OC) or absent */
                        int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear";
    ZT_TRY(zt_check_linear_args(op, out, in, w, bias, n_rows, in_features, out_features));
    return linear_rounded(be, op, out, NULL, in, NULL, w, bias, n_rows, in_features, out_features,
                          relu);
}

zt_status zt_cpu_linear_half_in(zt_backend *be, float *out, /* (N,OC) */
                                const void *in,             /* (N,IC) in w.dtype */
                                zt_weight w,                /* (OC,IC) */
                                zt_weight bias,             /* (OC) or absent */
                                int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear_half_in";
    ZT_TRY(zt_check_linear_half_in_args(op, be->gemm, out, in, w, bias, n_rows, in_features,
                                        out_features));
    return linear_rounded(be, op, out, NULL, NULL, in, w, bias, n_rows, in_features, out_features,
                          relu);
}

zt_status zt_cpu_linear_batched(zt_backend *be, float *out, size_t out_stride, /* count x (N,OC) */
                                const void *in, zt_dtype in_dtype,             /* (N,IC) */
                                zt_weight w, size_t w_stride,                  /* count x (OC,IC) */
                                zt_weight bias, size_t bias_stride, /* count x (OC) or absent */
                                int count, int n_rows, int in_features, int out_features,
                                int relu) {
    const char *op = "linear_batched";
    ZT_TRY(zt_check_linear_batched_args(op, be->gemm, out, out_stride, in, in_dtype, w, w_stride,
                                        bias, bias_stride, count, n_rows, in_features,
                                        out_features));
    /* one linear per member: the CPU's GEMM is cut by output columns anyway */
    const int half = in_dtype != ZT_F32;
    for (int i = 0; i < count; i++)
        ZT_TRY(linear_rounded(be, op, out + (size_t)i * out_stride, NULL, half ? NULL : in,
                              half ? in : NULL, zt_weight_member(w, w_stride, i),
                              zt_weight_member(bias, bias_stride, i), n_rows, in_features,
                              out_features, relu));
    return ZT_OK;
}

zt_status zt_cpu_linear_half_out(zt_backend *be, void *out, /* (N,OC) in w.dtype */
                                 const void *in,            /* (N,IC) in w.dtype */
                                 zt_weight w,               /* (OC,IC) */
                                 zt_weight bias,            /* (OC) in w.dtype, or absent */
                                 int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear_half_out";
    ZT_TRY(zt_check_linear_half_out_args(op, be->gemm, out, in, w, bias, n_rows, in_features,
                                         out_features));
    return linear_rounded(be, op, NULL, out, NULL, in, w, bias, n_rows, in_features, out_features,
                          relu);
}

zt_status zt_cpu_round_half(zt_backend *be, void *dst, zt_dtype dtype, /* (n) */
                            const float *src,                          /* (n) */
                            size_t n_elems) {
    ZT_TRY(zt_check_round_half_args("round_half", dst, dtype, src, n_elems));
    /* pieces of 2^16 elements, so each thread writes whole cache lines of its own */
    const size_t piece = (size_t)1 << 16;
    const long n_pieces = (long)((n_elems + piece - 1) / piece);
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (long p = 0; p < n_pieces; p++) {
        const size_t end = ((size_t)p + 1) * piece < n_elems ? ((size_t)p + 1) * piece : n_elems;
        for (size_t i = (size_t)p * piece; i < end; i++)
            zt_store_rne(dst, dtype, i, src[i]);
    }
    return ZT_OK;
}
