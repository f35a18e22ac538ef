/* The gradient of attention (attention.c), flash-style: each query's probabilities are recomputed
 * from q and k into one T-length row per thread, never stored as a T x T matrix.
 *
 * d_k and d_v of a key sum over the queries that see it, so the work is split over (sequence,
 * head) pairs: one thread owns a pair's column block of d_k and d_v and adds its queries in order,
 * which keeps every sum in one order whatever the thread count. */
#include <math.h>

#include "core/status.h"
#include "cpu/cpu_backward.h"
#include "cpu/cpu_common.h"

size_t zt_cpu_attention_backward_thread_floats(int seq_len, int head_dim) {
    return (size_t)seq_len + 2 * (size_t)head_dim;
}

size_t zt_cpu_attention_backward_scratch_floats(int seq_len, int head_dim, int n_threads) {
    return zt_cpu_attention_backward_thread_floats(seq_len, head_dim) * (size_t)n_threads;
}

/* One (sequence, head) pair. Every pointer but mask starts at the pair's first element; rows are
 * row_stride apart. weights (T), q_scaled (D) and d_q_acc (D) are this thread's scratch. */
static void backward_one_head(float *d_q, float *d_k, float *d_v,             /* (T,stride) */
                              const float *d_out,                             /* (T,stride) */
                              const float *q, const float *k, const float *v, /* (T,stride) */
                              const float *out,                               /* (T,stride) */
                              const int32_t *mask,                            /* (T) */
                              int seq_len, int head_dim, size_t row_stride, float q_scale,
                              float *weights, float *q_scaled, float *d_q_acc) {
    /* Keys no query sees (padding) must come out 0, and the rest start from 0 for the += below. */
    for (int j = 0; j < seq_len; j++)
        for (int d = 0; d < head_dim; d++) {
            d_k[(size_t)j * row_stride + d] = 0.0f;
            d_v[(size_t)j * row_stride + d] = 0.0f;
        }

    for (int query = 0; query < seq_len; query++) {
        const size_t row = (size_t)query * row_stride;
        const float *d_out_row = d_out + row;

        /* The forward's scores, max and weights operation for operation, so that P here is the
         * P its output was made of (the softmax gradient assumes that P). */
        for (int d = 0; d < head_dim; d++)
            q_scaled[d] = q[row + d] * q_scale;
        float max_score = -INFINITY;
        int n_admissible = 0;
        for (int j = 0; j <= query; j++) {
            if (mask[j] == 0) continue;
            const float *k_row = k + (size_t)j * row_stride;
            float dot = 0.0f;
            ZT_CPU_SIMD_SUM(dot)
            for (int d = 0; d < head_dim; d++)
                dot += q_scaled[d] * k_row[d];
            weights[j] = dot;
            if (dot > max_score) max_score = dot;
            n_admissible++;
        }
        if (n_admissible == 0) { /* the forward wrote zeros: no path back to q, k or v */
            for (int d = 0; d < head_dim; d++)
                d_q[row + d] = 0.0f;
            continue;
        }
        double weight_sum = 0.0;
        for (int j = 0; j <= query; j++) {
            if (mask[j] == 0) continue;
            weights[j] = expf(weights[j] - max_score);
            weight_sum += weights[j];
        }
        const float inv_sum = (float)(1.0 / weight_sum);

        /* sum_j P_ij dP_ij = d_out_i . out_i: from the forward's output, no second pass over keys
         */
        double delta = 0.0;
        for (int d = 0; d < head_dim; d++)
            delta += (double)d_out_row[d] * (double)out[row + d];

        for (int d = 0; d < head_dim; d++)
            d_q_acc[d] = 0.0f;
        for (int j = 0; j <= query; j++) {
            if (mask[j] == 0) continue;
            const float p = weights[j] * inv_sum;
            const float *k_row = k + (size_t)j * row_stride;
            const float *v_row = v + (size_t)j * row_stride;
            float d_p = 0.0f;
            ZT_CPU_SIMD_SUM(d_p)
            for (int d = 0; d < head_dim; d++)
                d_p += d_out_row[d] * v_row[d];
            /* dP and delta are close when P is peaked: subtract in double before rounding */
            const float d_s = (float)((double)p * ((double)d_p - delta));
            float *d_k_row = d_k + (size_t)j * row_stride;
            float *d_v_row = d_v + (size_t)j * row_stride;
            ZT_CPU_SIMD
            for (int d = 0; d < head_dim; d++) {
                d_q_acc[d] += d_s * k_row[d];
                /* the scores were made from the rounded q * q_scale: differentiate those */
                d_k_row[d] += d_s * q_scaled[d];
                d_v_row[d] += p * d_out_row[d];
            }
        }
        for (int d = 0; d < head_dim; d++)
            d_q[row + d] = d_q_acc[d] * q_scale;
    }
}

zt_status zt_cpu_attention_backward(zt_backend *be, float *d_q, float *d_k,
                                    float *d_v,                                     /* (B,T,C) */
                                    const float *d_out,                             /* (B,T,C) */
                                    const float *q, const float *k, const float *v, /* (B,T,C) */
                                    const float *out,                               /* (B,T,C) */
                                    const int32_t *key_mask,                        /* (B,T) */
                                    int batch, int seq_len, int n_heads, int head_dim,
                                    float q_scale) {
    const char *op = "attention_backward";
    zt_cpu_backend *cpu = zt_cpu(be);
    ZT_TRY(zt_check_attention_backward_args(op, d_q, d_k, d_v, d_out, q, k, v, out, key_mask, batch,
                                            seq_len, n_heads, head_dim, q_scale));
    const size_t n_cols = (size_t)n_heads * (size_t)head_dim;

    const size_t per_thread = zt_cpu_attention_backward_thread_floats(seq_len, head_dim);
    float *scratch;
    ZT_TRY(zt_cpu_scratch(
        cpu, zt_cpu_attention_backward_scratch_floats(seq_len, head_dim, cpu->n_threads), op,
        &scratch));

    /* Pairs cost about the same (every pair has all T queries), so a static split. */
    const int64_t n_pairs = (int64_t)batch * n_heads;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int64_t pair = 0; pair < n_pairs; pair++) {
        int head = (int)(pair % n_heads);
        int64_t b = pair / n_heads;
        float *mine = scratch + per_thread * (size_t)ZT_CPU_THREAD_INDEX();
        size_t at = (size_t)b * (size_t)seq_len * n_cols + (size_t)head * head_dim;
        backward_one_head(d_q + at, d_k + at, d_v + at, d_out + at, q + at, k + at, v + at,
                          out + at, key_mask + (size_t)b * seq_len, seq_len, head_dim, n_cols,
                          q_scale, mine, mine + seq_len, mine + seq_len + head_dim);
    }
    return ZT_OK;
}
