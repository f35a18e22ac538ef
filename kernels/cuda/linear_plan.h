/* How the CUDA linear cuts its work, as pure host functions (C and C++, no CUDA types), so that the
 * op (linear.cu, linear_backward.cu), the scratch planner (cuda_backend.cu) and the unit tests
 * (tests/cudaemu/test_cuda_gemm_plans_emu.c, on the published OPT shapes) share one answer:
 *   - zt_even_chunks: a range cut into the fewest chunks a budget allows, all of nearly one size;
 *   - zt_cuda_linear_scratch: linear's scratch layout and its chunks of rows;
 *   - zt_gemm_rows_bucket: the row count the GEMM plan cache files a shape under.
 * docs/design.md §4.3 ("GEMMs", "--gemm") says why. */
#ifndef ZT_CUDA_LINEAR_PLAN_H
#define ZT_CUDA_LINEAR_PLAN_H

#include <stddef.h>
#include <string.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A range of `total` rows cut into n_chunks consecutive chunks whose sizes differ by at most one
 * `unit`, every chunk but the first starting at a multiple of `unit`: the first
 * n_chunks - n_larger chunks hold base_units units, the rest one more, the last one trimmed to
 * end at `total`. */
typedef struct zt_chunking {
    size_t total, n_chunks, unit, base_units, n_larger;
} zt_chunking;

/* Largest first: a unit of 64 rows keeps a widened weight chunk's column block of the output and
 * its bias slice 256-byte aligned (cuBLASLt's fastest kernels), 16 and 4 rows at least 16-byte
 * aligned (the epilogue's bias). Activation chunks may fall back to single rows. */
static const size_t zt_chunk_units[4] = {64, 16, 4, 1};

/* Cuts `total` rows into the fewest chunks of at most `max_rows` (ceil(total / max_rows)), then
 * evens them out: the largest unit (64, 16, 4, then 1 when min_unit allows) that keeps that count
 * and at most an eighth of the even size. min_unit (1 or 4) is the smallest alignment the chunk
 * starts need; a max_rows below it is raised to it. */
static inline zt_chunking zt_even_chunks(size_t total, size_t max_rows, size_t min_unit) {
    zt_chunking c = {total, 0, 1, 0, 0};
    if (total == 0) return c;
    if (max_rows < min_unit) max_rows = min_unit;
    if (max_rows < 1) max_rows = 1;
    const size_t n_chunks = (total + max_rows - 1) / max_rows;
    const size_t even = (total + n_chunks - 1) / n_chunks;
    size_t unit = min_unit;
    for (int i = 0; i < 4; i++) {
        const size_t u = zt_chunk_units[i];
        if (u < min_unit || u > max_rows) continue;
        const size_t units = (total + u - 1) / u, max_units = max_rows / u;
        if ((units + max_units - 1) / max_units == n_chunks && (n_chunks == 1 || u * 8 <= even)) {
            unit = u;
            break;
        }
    }
    const size_t units = (total + unit - 1) / unit;
    c.n_chunks = n_chunks;
    c.unit = unit;
    c.base_units = units / n_chunks;
    c.n_larger = units % n_chunks;
    return c;
}

/* The first row of chunk i (i = n_chunks: total). */
static inline size_t zt_chunk_first(const zt_chunking *c, size_t i) {
    const size_t n_base = c->n_chunks - c->n_larger;
    const size_t units = i * c->base_units + (i > n_base ? i - n_base : 0);
    const size_t first = units * c->unit;
    return first < c->total ? first : c->total;
}

static inline size_t zt_chunk_rows(const zt_chunking *c, size_t i) {
    return zt_chunk_first(c, i + 1) - zt_chunk_first(c, i);
}

/* The largest chunk: what the scratch holds. */
static inline size_t zt_chunk_max_rows(const zt_chunking *c) {
    if (c->n_chunks == 0) return 0;
    const size_t rows = (c->base_units + (c->n_larger ? 1 : 0)) * c->unit;
    return rows < c->total ? rows : c->total;
}

static inline size_t zt_align256(size_t n) {
    return (n + 255u) / 256u * 256u;
}

/* What linear takes of the backend's scratch, as byte offsets into it: the bias copied as f32
 * (cuBLASLt adds an f32 bias to an f32 output, and wants it 16-byte aligned: copy_bias for a half
 * bias, or an f32 one at a lesser address; copy_bias counts the biases, one per member of a
 * linear_batched call), then one chunk of the converted operand: activation
 * rows rounded to the weight's half dtype (ZT_GEMM_HALF; each chunk's GEMM reads the whole weight
 * again), or weight rows widened to f32 (a half weight under ZT_GEMM_F32 / TF32). Each part
 * starts 256-byte aligned. A chunk takes at most chunk_floats * 4 bytes of scratch whatever the
 * operand's dtype (so twice as many half elements as widened f32 ones: half the weight re-reads),
 * at least one activation row or four weight rows. */
/* Bytes a copied bias takes in the scratch, one member's (linear_batched copies each member's at
 * this stride, 256-byte aligned as cuBLASLt's bias epilogue and its batch stride want). */
static inline size_t zt_linear_bias_bytes(int out_features) {
    return ((size_t)out_features * sizeof(float) + 255u) / 256u * 256u;
}

typedef struct zt_linear_scratch {
    size_t bias_offset, operand_offset, total_bytes;
    zt_chunking chunks; /* of activation rows (half_inputs) or weight rows (widen_weight) */
    int half_inputs;    /* 1: activations are converted, the weight is used as stored */
    int widen_weight;   /* 1: the weight is widened in chunks */
    int copy_bias;      /* n > 0: n biases are copied (widened if half) to the first part */
} zt_linear_scratch;

static inline zt_linear_scratch zt_cuda_linear_scratch(zt_gemm_precision precision, int n_rows,
                                                       int in_features, int out_features,
                                                       zt_dtype weight_dtype, int copy_bias,
                                                       size_t chunk_floats) {
    zt_linear_scratch plan;
    memset(&plan, 0, sizeof plan);
    if (in_features <= 0 || out_features <= 0) return plan;
    const int half_weight = weight_dtype == ZT_F16 || weight_dtype == ZT_BF16;
    plan.half_inputs = half_weight && precision == ZT_GEMM_HALF;
    plan.widen_weight = half_weight && !plan.half_inputs;
    plan.copy_bias = copy_bias;
    size_t cursor = 0;
    if (plan.copy_bias) {
        plan.bias_offset = cursor;
        cursor += (size_t)plan.copy_bias * zt_linear_bias_bytes(out_features);
    }
    const size_t budget_bytes = chunk_floats * sizeof(float);
    size_t operand_bytes = 0;
    if (plan.half_inputs && n_rows > 0) {
        const size_t row_bytes = (size_t)in_features * zt_dtype_size(weight_dtype);
        plan.chunks = zt_even_chunks((size_t)n_rows, budget_bytes / row_bytes, 1);
        operand_bytes = zt_chunk_max_rows(&plan.chunks) * row_bytes;
    } else if (plan.widen_weight) {
        const size_t row_bytes = (size_t)in_features * sizeof(float);
        plan.chunks = zt_even_chunks((size_t)out_features, budget_bytes / row_bytes, 4);
        operand_bytes = zt_chunk_max_rows(&plan.chunks) * row_bytes;
    }
    if (operand_bytes) {
        plan.operand_offset = cursor;
        cursor = zt_align256(cursor + operand_bytes);
    }
    plan.total_bytes = cursor;
    return plan;
}

/* The row count a GEMM's plan (descriptors and algorithm) is cached under, for the dimension that
 * carries the batch's rows (B*T, or a chunk of them): up to 64 the next multiple of 8, beyond the
 * next of 4, 5, 6 or 7 times a power of two (64, 80, 96, 112, 128, 160, ...: four buckets per
 * octave, at most 25% above the real count). The heuristic is asked about the bucket, the matmul
 * runs on the real count (docs/design.md §4.3). */
static inline int zt_gemm_rows_bucket(int rows) {
    if (rows <= 64) return rows <= 8 ? 8 : (rows + 7) / 8 * 8;
    int step = 1;
    while (step * 8 < rows)
        step *= 2; /* rows in (4 step, 8 step]: the buckets are multiples of step */
    return (rows + step - 1) / step * step;
}

#ifdef __cplusplus
}
#endif

#endif
