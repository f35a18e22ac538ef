/* linear: out = in @ W^T (+ bias) (then ReLU), through OpenBLAS sgemm. Under ZT_GEMM_HALF a half
 * weight meets activations rounded to its dtype, as the CUDA backend's tensor-core path does, so
 * the CPU can reproduce (and test) those numerics; the products are exact in f32 either way. */
#include <cblas.h>

#include "core/status.h"
#include "cpu/cpu_backend.h"

/* out[:, first_out:first_out+n_out] = in @ W[first_out:first_out+n_out, :]^T, where w_rows is
 * that slice of W in f32. ldc = out_features writes the slice's columns in place. */
static void gemm_into_columns(float *out,          /* (N,OC) */
                              const float *in,     /* (N,IC) */
                              const float *w_rows, /* (n_out,IC) */
                              int n_rows, int in_features, int out_features, int first_out,
                              int n_out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_rows, n_out, in_features, 1.0f, in,
                in_features, w_rows, in_features, 0.0f, out + first_out, out_features);
}

/* Half weights: upcast ZT_CPU_LINEAR_CHUNK_ROWS output rows at a time into scratch, so the
 * scratch stays chunk * IC floats even for a 50272-row LM head. The upcast runs on this thread:
 * it costs IC per output row against the GEMM's 2*N*IC, and an OpenMP region between OpenBLAS
 * calls leaves OpenMP's threads spinning against OpenBLAS's own (bench_ops measured the 125m LM
 * head 24x slower that way). */
static void chunked_half_gemm(float *out,                /* (N,OC) */
                              const float *in,           /* (N,IC) */
                              zt_weight w, float *chunk, /* (OC,IC), (chunk,IC) */
                              int n_rows, int in_features, int out_features) {
    const size_t row_len = (size_t)in_features;
    for (int first_out = 0; first_out < out_features; first_out += ZT_CPU_LINEAR_CHUNK_ROWS) {
        int n_out = out_features - first_out;
        if (n_out > ZT_CPU_LINEAR_CHUNK_ROWS) n_out = ZT_CPU_LINEAR_CHUNK_ROWS;
        for (int r = 0; r < n_out; r++)
            zt_cpu_weight_to_f32(chunk + (size_t)r * row_len, w, (size_t)(first_out + r) * row_len,
                                 row_len);
        gemm_into_columns(out, in, chunk, n_rows, in_features, out_features, first_out, n_out);
    }
}

static void add_bias_relu(zt_cpu_backend *cpu, float *out, /* (N,OC) */
                          const float *bias,               /* (OC) or NULL */
                          int n_rows, int out_features, int relu) {
    ZT_CPU_PARALLEL_FOR(cpu->n_threads)
    for (int n = 0; n < n_rows; n++) {
        float *y = out + (size_t)n * out_features;
        if (bias)
            for (int o = 0; o < out_features; o++)
                y[o] += bias[o];
        /* Written so that NaN passes through, as torch.relu does: divergence stays visible. */
        if (relu)
            for (int o = 0; o < out_features; o++)
                y[o] = y[o] < 0.0f ? 0.0f : y[o];
    }
}

zt_status zt_cpu_linear(zt_backend *be, float *out, /* (N,OC) */
                        const float *in,            /* (N,IC) */
                        zt_weight w,                /* (OC,IC) */
                        zt_weight bias,             /* (OC) or absent */
                        int n_rows, int in_features, int out_features, int relu) {
    const char *op = "linear";
    zt_cpu_backend *cpu = zt_cpu(be);
    ZT_TRY(zt_check_linear_args(op, out, in, w, bias, n_rows, in_features, out_features));

    /* Scratch layout: [converted weight chunk | bias in f32 | rounded activations]; any part may
     * be empty. zt_cpu_linear_scratch_floats (the planner's answer) is the sum. */
    int chunk_rows =
        out_features < ZT_CPU_LINEAR_CHUNK_ROWS ? out_features : ZT_CPU_LINEAR_CHUNK_ROWS;
    size_t chunk_floats = w.dtype == ZT_F32 ? 0 : (size_t)chunk_rows * (size_t)in_features;
    size_t bias_floats = bias.data && bias.dtype != ZT_F32 ? (size_t)out_features : 0;
    int round_inputs = be->gemm == ZT_GEMM_HALF && w.dtype != ZT_F32;
    size_t input_floats = round_inputs ? (size_t)n_rows * (size_t)in_features : 0;
    float *scratch = NULL;
    if (chunk_floats + bias_floats + input_floats > 0)
        ZT_TRY(zt_cpu_scratch(cpu, chunk_floats + bias_floats + input_floats, op, &scratch));
    if (round_inputs) {
        float *rounded = scratch + chunk_floats + bias_floats;
        zt_cpu_round_to(rounded, in, w.dtype, input_floats);
        in = rounded;
    }

    if (w.dtype == ZT_F32)
        gemm_into_columns(out, in, (const float *)w.data, n_rows, in_features, out_features, 0,
                          out_features);
    else
        chunked_half_gemm(out, in, w, scratch, n_rows, in_features, out_features);

    const float *bias_f32 = bias.data;
    if (bias_floats > 0) {
        zt_cpu_weight_to_f32(scratch + chunk_floats, bias, 0, bias_floats);
        bias_f32 = scratch + chunk_floats;
    }
    if (bias_f32 || relu) add_bias_relu(cpu, out, bias_f32, n_rows, out_features, relu);
    return ZT_OK;
}
