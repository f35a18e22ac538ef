/* Attention over a key/value cache, for incremental decoding: the new keys and values are
 * appended to the cache, then each new query runs attention.c's per-query routine over the
 * cache's columns, so a prefill from column 0 computes exactly what `attention` computes. */
#include <string.h>

#include "core/status.h"
#include "cpu/cpu_common.h"

zt_status zt_cpu_attention_cached(zt_backend *be, float *out,                     /* (B,Tq,C) */
                                  const float *q, const float *k, const float *v, /* (B,Tq,C) */
                                  float *k_cache, float *v_cache, /* (B,capacity,C) each */
                                  const int32_t *key_mask,        /* (B,capacity) */
                                  int batch, int n_new, int capacity, int start, int n_heads,
                                  int head_dim, float q_scale) {
    const char *op = "attention_cached";
    zt_cpu_backend *cpu = zt_cpu(be);
    ZT_TRY(zt_check_attention_cached_args(op, out, q, k, v, k_cache, v_cache, key_mask, batch,
                                          n_new, capacity, start, n_heads, head_dim, q_scale));
    const size_t n_cols = (size_t)n_heads * (size_t)head_dim;

    /* Queries may attend to keys of their own step, so every new key is in place first. */
    const int64_t n_rows = (int64_t)batch * n_new;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(cpu))
    for (int64_t row = 0; row < n_rows; row++) {
        int64_t b = row / n_new;
        int i = (int)(row % n_new);
        size_t at = ((size_t)b * (size_t)capacity + (size_t)(start + i)) * n_cols;
        memcpy(k_cache + at, k + (size_t)row * n_cols, n_cols * sizeof(float));
        memcpy(v_cache + at, v + (size_t)row * n_cols, n_cols * sizeof(float));
    }

    /* Scores span every column a query may see: at most capacity. */
    const int span = start + n_new;
    const size_t per_thread = zt_cpu_attention_thread_floats(span, head_dim);
    float *scratch;
    ZT_TRY(zt_cpu_scratch(cpu, zt_cpu_attention_scratch_floats(span, head_dim, cpu->n_threads), op,
                          &scratch));

    /* One work item per (sequence, head, query), as in attention.c. */
    const int64_t n_items = (int64_t)batch * n_heads * n_new;
    ZT_CPU_PARALLEL_FOR_DYNAMIC(zt_cpu_threads(cpu))
    for (int64_t item = 0; item < n_items; item++) {
        int i = (int)(item % n_new);
        int head = (int)(item / n_new % n_heads);
        int64_t b = item / ((int64_t)n_new * n_heads);
        float *mine = scratch + per_thread * (size_t)ZT_CPU_THREAD_INDEX();
        zt_cpu_query_scratch s = zt_cpu_query_scratch_at(mine, span, head_dim);

        size_t query_offset =
            ((size_t)b * (size_t)n_new + (size_t)i) * n_cols + (size_t)head * head_dim;
        size_t cache_head = (size_t)b * (size_t)capacity * n_cols + (size_t)head * head_dim;
        zt_cpu_attend_one_query(out + query_offset, q + query_offset, k_cache + cache_head,
                                v_cache + cache_head, key_mask + (size_t)b * capacity, start + i,
                                head_dim, n_cols, q_scale, s);
    }
    return ZT_OK;
}
