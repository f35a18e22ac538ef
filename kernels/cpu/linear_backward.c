/* linear_backward: the gradient of linear (out = in @ W^T + bias, then ReLU if relu), through
 * OpenBLAS sgemm in f32 whatever the backend's GEMM precision (cpu_backward.h):
 *     d_pre = d_out masked by out > 0 (relu; written back into d_out)
 *     d_bias += sum_n d_pre[n,:],   d_w += d_pre^T @ in,   d_in = d_pre @ W.
 * As in linear.c, every GEMM is cut into pieces fixed by the shapes alone, each a single-threaded
 * sgemm: OpenBLAS's bits for an element depend on where it sits in the matrix it was given, so
 * pieces that moved with the thread count would move the bits.
 * Beyond cpu_backward.h: `in` may be NULL when d_w is, the weight's data when d_in is; no buffer
 * the op writes may overlap another it touches (refused, nothing written). The scratch (a half
 * weight's chunk, for d_in only) comes from zt_cpu_scratch, sized by
 * zt_cpu_linear_backward_scratch_floats, which the scratch planner asks too. */
#include <cblas.h>

#include "core/status.h"
#include "cpu/cpu_backward.h"
#include "cpu/cpu_common.h"

/* Rows of d_w (output features) per piece of d_w's GEMM, and columns of d_in (input features)
 * per piece of d_in's: the forward's 128, six pieces across a 768-wide layer. */
#define ZT_CPU_LINEAR_BACKWARD_PIECE 128
/* Columns of d_bias per piece of its column sums (four cache lines of f32). */
#define ZT_CPU_LINEAR_BIAS_PIECE 64

/* d_out[i] = 0 where out[i] <= 0 (or is NaN): ReLU's derivative, 0 at 0 as torch's. */
static void relu_mask(zt_cpu_backend *cpu, float *d_out, /* (N,OC) */
                      const float *out,                  /* (N,OC) */
                      int n_rows, int out_features) {
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int n = 0; n < n_rows; n++) {
        const size_t at = (size_t)n * (size_t)out_features;
        for (int o = 0; o < out_features; o++)
            d_out[at + o] = out[at + o] > 0.0f ? d_out[at + o] : 0.0f;
    }
}

/* d_bias[o] += sum_n d_pre[n,o], summed in double in row order over pieces of columns and
 * rounded once into the running gradient. */
static void bias_gradient(zt_cpu_backend *cpu, float *d_bias, /* (OC) */
                          const float *d_pre,                 /* (N,OC) */
                          int n_rows, int out_features) {
    const int n_pieces = (out_features + ZT_CPU_LINEAR_BIAS_PIECE - 1) / ZT_CPU_LINEAR_BIAS_PIECE;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int piece = 0; piece < n_pieces; piece++) {
        const int first = piece * ZT_CPU_LINEAR_BIAS_PIECE;
        const int width = out_features - first < ZT_CPU_LINEAR_BIAS_PIECE
                              ? out_features - first
                              : ZT_CPU_LINEAR_BIAS_PIECE;
        double sum[ZT_CPU_LINEAR_BIAS_PIECE] = {0};
        for (int n = 0; n < n_rows; n++) {
            const float *row = d_pre + (size_t)n * (size_t)out_features + first;
            for (int o = 0; o < width; o++)
                sum[o] += row[o];
        }
        for (int o = 0; o < width; o++)
            d_bias[first + o] = (float)((double)d_bias[first + o] + sum[o]);
    }
}

/* d_w += d_pre^T @ in, pieces of whole rows of d_w (a sum over the N rows inside each piece's
 * sgemm, beta = 1 adding into the running gradient). */
static void weight_gradient(zt_cpu_backend *cpu, float *d_w, /* (OC,IC) */
                            const float *d_pre,              /* (N,OC) */
                            const float *in,                 /* (N,IC) */
                            int n_rows, int in_features, int out_features) {
    const int n_pieces =
        (out_features + ZT_CPU_LINEAR_BACKWARD_PIECE - 1) / ZT_CPU_LINEAR_BACKWARD_PIECE;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int piece = 0; piece < n_pieces; piece++) {
        const int first = piece * ZT_CPU_LINEAR_BACKWARD_PIECE;
        const int height = out_features - first < ZT_CPU_LINEAR_BACKWARD_PIECE
                               ? out_features - first
                               : ZT_CPU_LINEAR_BACKWARD_PIECE;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, height, in_features, n_rows, 1.0f,
                    d_pre + first, out_features, in, in_features, 1.0f,
                    d_w + (size_t)first * (size_t)in_features, in_features);
    }
}

/* d_in (=, or += when accumulate) d_pre[:, first_out:first_out+n_out] @ w_rows, where w_rows
 * holds those rows of W in f32; pieces of d_in's columns in parallel. */
static void input_gradient_chunk(zt_cpu_backend *cpu, float *d_in, /* (N,IC) */
                                 const float *d_pre,               /* (N,OC) */
                                 const float *w_rows,              /* (n_out,IC) */
                                 int n_rows, int in_features, int out_features, int first_out,
                                 int n_out, int accumulate) {
    const int n_pieces =
        (in_features + ZT_CPU_LINEAR_BACKWARD_PIECE - 1) / ZT_CPU_LINEAR_BACKWARD_PIECE;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int piece = 0; piece < n_pieces; piece++) {
        const int first = piece * ZT_CPU_LINEAR_BACKWARD_PIECE;
        const int width = in_features - first < ZT_CPU_LINEAR_BACKWARD_PIECE
                              ? in_features - first
                              : ZT_CPU_LINEAR_BACKWARD_PIECE;
        /* beta = 0 never reads d_in, so its incoming contents (even NaN) do not matter. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_rows, width, n_out, 1.0f,
                    d_pre + first_out, out_features, w_rows + first, in_features,
                    accumulate ? 1.0f : 0.0f, d_in + first, in_features);
    }
}

/* d_in = d_pre @ W as a sum over chunks of ZT_CPU_LINEAR_CHUNK_ROWS rows of W (the output
 * features, d_in's reduction dimension), in chunk order. A half weight is widened one chunk at a
 * time into `chunk`, so the scratch stays ZT_CPU_LINEAR_CHUNK_ROWS * IC floats even for a
 * 50272-row LM head; an f32 weight is cut into the same chunks, so a half weight gives the bits
 * of the f32 weight holding its widened values. The widening runs on this thread, as in
 * linear.c: IC per row against the GEMM's 2 * N * IC. */
static void input_gradient(zt_cpu_backend *cpu, float *d_in, /* (N,IC) */
                           const float *d_pre,               /* (N,OC) */
                           zt_weight w, float *chunk,        /* (OC,IC), (chunk rows,IC) or NULL */
                           int n_rows, int in_features, int out_features) {
    const size_t row_len = (size_t)in_features;
    for (int first_out = 0; first_out < out_features; first_out += ZT_CPU_LINEAR_CHUNK_ROWS) {
        int n_out = out_features - first_out;
        if (n_out > ZT_CPU_LINEAR_CHUNK_ROWS) n_out = ZT_CPU_LINEAR_CHUNK_ROWS;
        const float *w_rows;
        if (w.dtype == ZT_F32) {
            w_rows = (const float *)w.data + (size_t)first_out * row_len;
        } else {
            zt_cpu_weight_to_f32(chunk, w, (size_t)first_out * row_len, (size_t)n_out * row_len);
            w_rows = chunk;
        }
        input_gradient_chunk(cpu, d_in, d_pre, w_rows, n_rows, in_features, out_features, first_out,
                             n_out, first_out > 0);
    }
}

size_t zt_cpu_linear_backward_scratch_floats(int in_features, int out_features,
                                             zt_dtype weight_dtype) {
    if (weight_dtype == ZT_F32) return 0;
    const size_t chunk_rows =
        out_features < ZT_CPU_LINEAR_CHUNK_ROWS ? (size_t)out_features : ZT_CPU_LINEAR_CHUNK_ROWS;
    return chunk_rows * (size_t)in_features;
}

zt_status zt_cpu_linear_backward(zt_backend *be, float *d_in, /* (N,IC) = */
                                 float *d_w,                  /* (OC,IC) += */
                                 float *d_bias,               /* (OC) += */
                                 float *d_out,                /* (N,OC) */
                                 const float *in,             /* (N,IC) */
                                 const float *out,            /* (N,OC), relu only */
                                 zt_weight w,                 /* (OC,IC) */
                                 int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear_backward";
    zt_cpu_backend *cpu = zt_cpu(be);
    ZT_TRY(zt_check_linear_backward_args(op, d_in, d_w, d_bias, d_out, in, out, w, n_rows,
                                         in_features, out_features, relu));

    float *chunk = NULL;
    if (d_in && w.dtype != ZT_F32)
        /* Taken before anything is written, so running out of memory leaves every output as it
         * was. */
        ZT_TRY(zt_cpu_scratch(
            cpu, zt_cpu_linear_backward_scratch_floats(in_features, out_features, w.dtype), op,
            &chunk));

    if (relu) relu_mask(cpu, d_out, out, n_rows, out_features);
    const float *d_pre = d_out;
    if (d_bias) bias_gradient(cpu, d_bias, d_pre, n_rows, out_features);
    if (d_w) weight_gradient(cpu, d_w, d_pre, in, n_rows, in_features, out_features);
    if (d_in) input_gradient(cpu, d_in, d_pre, w, chunk, n_rows, in_features, out_features);
    return ZT_OK;
}
