/* Causal self-attention with a key padding mask, one query row at a time: each thread holds at
 * most one T-length row of scores, never a T x T matrix. */
#include <math.h>

#include "core/status.h"
#include "cpu/cpu_common.h"

size_t zt_cpu_attention_thread_floats(int seq_len, int head_dim) {
    return (size_t)seq_len + 2 * (size_t)head_dim;
}

size_t zt_cpu_attention_scratch_floats(int seq_len, int head_dim, int n_threads) {
    return zt_cpu_attention_thread_floats(seq_len, head_dim) * (size_t)n_threads;
}

zt_cpu_query_scratch zt_cpu_query_scratch_at(float *area, int seq_len, int head_dim) {
    zt_cpu_query_scratch s = {area, area + seq_len, area + seq_len + head_dim};
    return s;
}

void zt_cpu_attend_one_query(float *out_row, const float *q_row, const float *k_head,
                             const float *v_head, const int32_t *mask, int query, int head_dim,
                             size_t row_stride, float q_scale, zt_cpu_query_scratch s) {
    /* HF scales the q_proj output, so the rounding of q * scale happens before the dot. */
    ZT_CPU_SIMD
    for (int d = 0; d < head_dim; d++)
        s.q_scaled[d] = q_row[d] * q_scale;

    float max_score = -INFINITY;
    int n_admissible = 0;
    for (int j = 0; j <= query; j++) {
        if (mask[j] == 0) continue;
        const float *k_row = k_head + (size_t)j * row_stride;
        float dot = 0.0f;
        ZT_CPU_SIMD_SUM(dot)
        for (int d = 0; d < head_dim; d++)
            dot += s.q_scaled[d] * k_row[d];
        s.scores[j] = dot;
        if (dot > max_score) max_score = dot;
        n_admissible++;
    }
    if (n_admissible == 0) { /* a left-pad query: nothing to attend to */
        for (int d = 0; d < head_dim; d++)
            out_row[d] = 0.0f;
        return;
    }

    for (int d = 0; d < head_dim; d++)
        s.acc[d] = 0.0f;
    double weight_sum = 0.0;
    for (int j = 0; j <= query; j++) {
        if (mask[j] == 0) continue;
        float weight = expf(s.scores[j] - max_score);
        weight_sum += weight;
        const float *v_row = v_head + (size_t)j * row_stride;
        ZT_CPU_SIMD
        for (int d = 0; d < head_dim; d++)
            s.acc[d] += weight * v_row[d];
    }
    float inv_sum = (float)(1.0 / weight_sum);
    ZT_CPU_SIMD
    for (int d = 0; d < head_dim; d++)
        out_row[d] = s.acc[d] * inv_sum;
}

zt_status zt_cpu_attention(zt_backend *be, float *out,                     /* (B,T,C) */
                           const float *q, const float *k, const float *v, /* (B,T,C) each */
                           const int32_t *key_mask,                        /* (B,T) */
                           int batch, int seq_len, int n_heads, int head_dim, float q_scale) {
    const char *op = "attention";
    zt_cpu_backend *cpu = zt_cpu(be);
    ZT_TRY(zt_check_attention_args(op, out, q, k, v, key_mask, batch, seq_len, n_heads, head_dim,
                                   q_scale));
    const size_t n_cols = (size_t)n_heads * (size_t)head_dim;

    const size_t per_thread = zt_cpu_attention_thread_floats(seq_len, head_dim);
    float *scratch;
    ZT_TRY(zt_cpu_scratch(cpu, zt_cpu_attention_scratch_floats(seq_len, head_dim, cpu->n_threads),
                          op, &scratch));

    /* One work item per (sequence, head, query); dynamic scheduling evens out causal rows. */
    const int64_t n_items = (int64_t)batch * n_heads * seq_len;
    ZT_CPU_PARALLEL_FOR_DYNAMIC(zt_cpu_threads(cpu))
    for (int64_t item = 0; item < n_items; item++) {
        int query = (int)(item % seq_len);
        int head = (int)(item / seq_len % n_heads);
        int64_t b = item / ((int64_t)seq_len * n_heads);
        float *mine = scratch + per_thread * (size_t)ZT_CPU_THREAD_INDEX();
        zt_cpu_query_scratch s = zt_cpu_query_scratch_at(mine, seq_len, head_dim);

        size_t head_offset = (size_t)b * (size_t)seq_len * n_cols + (size_t)head * head_dim;
        size_t query_offset = head_offset + (size_t)query * n_cols;
        zt_cpu_attend_one_query(out + query_offset, q + query_offset, k + head_offset,
                                v + head_offset, key_mask + (size_t)b * seq_len, query, head_dim,
                                n_cols, q_scale, s);
    }
    return ZT_OK;
}
