/* The CPU backend's attention_cached (kernels/cpu/attention_cached.c) against a double-precision
 * reference loop over the cache, with test_ops_cpu.c's error budget for attention:
 *   - the new keys and values land in cache columns start .. start + n_new - 1 bit for bit, and
 *     no other byte of the caches (nor a guard band, nor an input) changes;
 *   - every new query's output is within the budget of the reference; a query without an
 *     admissible key (left padding, an all-padding sequence) is exactly 0;
 *   - a prefill from column 0 is bit-identical to `attention` on the same q, k, v and mask, and a
 *     short prefill followed by one-token decode steps reproduces those rows bit for bit;
 *   - the result does not depend on the thread count (bitwise), and the scratch the op takes is
 *     what scratch_bytes plans for the cache's capacity;
 *   - bad arguments fail with a message naming the op and the argument, writing nothing.
 * The seed is fixed and printed; ZT_OPS_SEED=<n> runs the same checks on other inputs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "ops_rng.h"
#include "zt_test.h"

static const double U = 1.0 / 16777216.0; /* 2^-24, f32 unit roundoff */

static void *xalloc(size_t n_bytes) {
    void *p = malloc(n_bytes ? n_bytes : 1);
    ZT_REQUIRE(p != NULL, "host malloc of %zu bytes", n_bytes);
    return p;
}

static float *random_floats(size_t n, double lo, double hi) {
    float *x = xalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = rng_float(lo, hi);
    return x;
}

typedef struct cached_shape {
    int batch, n_new, capacity, start, n_heads, head_dim;
} cached_shape;

static size_t new_elems(cached_shape s) {
    return (size_t)s.batch * s.n_new * s.n_heads * s.head_dim;
}
static size_t cache_elems(cached_shape s) {
    return (size_t)s.batch * s.capacity * s.n_heads * s.head_dim;
}

/* ---- guarded backend buffers: a NaN pattern before and after, checked on release ---- */

enum { GUARD = 64 };
static const uint8_t SENTINEL = 0xa5;

typedef struct gbuf {
    zt_backend *be;
    uint8_t *base;
    size_t n_bytes;
} gbuf;

static void *gbuf_make(zt_backend *be, gbuf *g, const void *init, size_t n_bytes) {
    g->be = be;
    g->n_bytes = n_bytes;
    ZT_REQUIRE_OK(be->ops->alloc(be, n_bytes + 2 * GUARD, ZT_MEM_ACTIVATIONS, (void **)&g->base));
    memset(g->base, SENTINEL, n_bytes + 2 * GUARD); /* CPU backend memory is host memory */
    if (init) memcpy(g->base + GUARD, init, n_bytes);
    return g->base + GUARD;
}

static void gbuf_release(gbuf *g, const char *what, const char *context) {
    size_t bad = 0;
    for (size_t i = 0; i < GUARD; i++)
        bad += (g->base[i] != SENTINEL) + (g->base[GUARD + g->n_bytes + i] != SENTINEL);
    ZT_CHECK(bad == 0, "%s: %zu guard bytes around %s overwritten", context, bad, what);
    g->be->ops->free(g->be, g->base, g->n_bytes + 2 * GUARD, ZT_MEM_ACTIVATIONS);
}

/* ---- the reference ---- */

/* ref and tol per output element, from the caches as they must be after the op (new columns
 * written). Error budget as test_ops_cpu.c derives it for attention: scores carry
 * (D + 2) U max_j sum_d |q_d s k_jd| + U |s_j - max| + 4U relative error in their weights, doubled
 * by normalising, plus (n_adm + 4) U for the f32 accumulation; all relative to sum_j p_j |v_jd|.
 * No admissible key: exactly 0. */
static void reference(const float *q, const float *k_cache, const float *v_cache,
                      const int32_t *mask, cached_shape s, float q_scale, double *ref,
                      double *tol) {
    const int H = s.n_heads, D = s.head_dim;
    const size_t C = (size_t)H * D;
    double *scores = xalloc((size_t)s.capacity * sizeof *scores);
    for (int b = 0; b < s.batch; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < s.n_new; i++) {
                const int query = s.start + i;
                const size_t q_at = ((size_t)b * s.n_new + i) * C + (size_t)h * D;
                const int32_t *m = mask + (size_t)b * s.capacity;
                double max_score = -INFINITY, max_magnitude = 0.0, max_gap = 0.0, sum = 0.0;
                int n_adm = 0;
                for (int j = 0; j <= query; j++) {
                    if (m[j] == 0) continue;
                    const float *k_row = k_cache + ((size_t)b * s.capacity + j) * C + (size_t)h * D;
                    double dot = 0.0, magnitude = 0.0;
                    for (int d = 0; d < D; d++) {
                        double term = (double)q[q_at + d] * q_scale * k_row[d];
                        dot += term;
                        magnitude += fabs(term);
                    }
                    scores[j] = dot;
                    if (dot > max_score) max_score = dot;
                    if (magnitude > max_magnitude) max_magnitude = magnitude;
                    n_adm++;
                }
                for (int j = 0; j <= query; j++) {
                    if (m[j] == 0) continue;
                    sum += exp(scores[j] - max_score);
                    if (max_score - scores[j] > max_gap) max_gap = max_score - scores[j];
                }
                const double rho = (D + 2) * U * max_magnitude + U * max_gap + 4 * U;
                const double factor = 2 * rho + (n_adm + 4) * U;
                for (int d = 0; d < D; d++) {
                    double value = 0.0, magnitude = 0.0;
                    for (int j = 0; j <= query; j++) {
                        if (m[j] == 0) continue;
                        double p = exp(scores[j] - max_score) / sum;
                        double v_jd = v_cache[((size_t)b * s.capacity + j) * C + (size_t)h * D + d];
                        value += p * v_jd;
                        magnitude += p * fabs(v_jd);
                    }
                    ref[q_at + d] = n_adm ? value : 0.0;
                    tol[q_at + d] = n_adm ? factor * magnitude : 0.0;
                }
            }
    free(scores);
}

/* The caches after the op: `before` with the new rows in columns start .. start + n_new - 1. */
static float *expected_cache(const float *before, const float *fresh, cached_shape s) {
    const size_t C = (size_t)s.n_heads * s.head_dim;
    float *after = xalloc(cache_elems(s) * sizeof *after);
    memcpy(after, before, cache_elems(s) * sizeof *after);
    for (int b = 0; b < s.batch; b++)
        for (int i = 0; i < s.n_new; i++)
            memcpy(after + ((size_t)b * s.capacity + s.start + i) * C,
                   fresh + ((size_t)b * s.n_new + i) * C, C * sizeof(float));
    return after;
}

/* Runs the op on guarded copies; out, k_cache_out, v_cache_out receive the results. */
static zt_status run_cached(zt_backend *be, cached_shape s, const float *q, const float *k,
                            const float *v, const float *k_cache, const float *v_cache,
                            const int32_t *mask, float q_scale, float *out, float *k_cache_out,
                            float *v_cache_out, const char *context) {
    const size_t nb = new_elems(s) * sizeof(float), cb = cache_elems(s) * sizeof(float);
    const size_t mb = (size_t)s.batch * s.capacity * sizeof(int32_t);
    gbuf g_out, g_q, g_k, g_v, g_kc, g_vc, g_mask;
    float *d_out = gbuf_make(be, &g_out, NULL, nb); /* NaN bytes: every element must be written */
    float *d_q = gbuf_make(be, &g_q, q, nb), *d_k = gbuf_make(be, &g_k, k, nb);
    float *d_v = gbuf_make(be, &g_v, v, nb);
    float *d_kc = gbuf_make(be, &g_kc, k_cache, cb), *d_vc = gbuf_make(be, &g_vc, v_cache, cb);
    int32_t *d_mask = gbuf_make(be, &g_mask, mask, mb);
    zt_status st =
        be->ops->attention_cached(be, d_out, d_q, d_k, d_v, d_kc, d_vc, d_mask, s.batch, s.n_new,
                                  s.capacity, s.start, s.n_heads, s.head_dim, q_scale);
    memcpy(out, d_out, nb);
    memcpy(k_cache_out, d_kc, cb);
    memcpy(v_cache_out, d_vc, cb);
    ZT_CHECK(memcmp(d_q, q, nb) == 0 && memcmp(d_k, k, nb) == 0 && memcmp(d_v, v, nb) == 0 &&
                 memcmp(d_mask, mask, mb) == 0,
             "%s: an input changed", context);
    gbuf_release(&g_out, "out", context);
    gbuf_release(&g_q, "q", context);
    gbuf_release(&g_k, "k", context);
    gbuf_release(&g_v, "v", context);
    gbuf_release(&g_kc, "k_cache", context);
    gbuf_release(&g_vc, "v_cache", context);
    gbuf_release(&g_mask, "key_mask", context);
    return st;
}

/* Mask of (B, capacity): per sequence `left` leading pads, then tokens, holes where `holes`;
 * columns past start + n_new hold random values the op must ignore. */
static int32_t *make_mask(cached_shape s, const int *left, int holes, int all_pad_row) {
    int32_t *mask = xalloc((size_t)s.batch * s.capacity * sizeof *mask);
    for (int b = 0; b < s.batch; b++)
        for (int j = 0; j < s.capacity; j++) {
            int32_t keep = j >= left[b];
            if (holes && rng_next() % 4 == 0) keep = 0;
            if (keep && holes) keep = 1 + (int32_t)(rng_next() % 5); /* any non-zero is a token */
            if (b == all_pad_row) keep = 0;
            if (j >= s.start + s.n_new) keep = (int32_t)(rng_next() % 2);
            mask[(size_t)b * s.capacity + j] = keep;
        }
    return mask;
}

static double worst_ratio;

static void check_case(const char *label, cached_shape s, const int *left, int holes,
                       int all_pad_row) {
    char context[256];
    snprintf(context, sizeof context, "%s B=%d Tq=%d capacity=%d start=%d H=%d D=%d", label,
             s.batch, s.n_new, s.capacity, s.start, s.n_heads, s.head_dim);
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(2, &be));
    const size_t n = new_elems(s), nc = cache_elems(s);
    const float q_scale = (float)(1.0 / sqrt((double)s.head_dim));
    float *q = random_floats(n, -4, 4), *k = random_floats(n, -2, 2), *v = random_floats(n, -2, 2);
    float *k_cache = random_floats(nc, -2, 2), *v_cache = random_floats(nc, -2, 2);
    int32_t *mask = make_mask(s, left, holes, all_pad_row);
    float *out = xalloc(n * sizeof *out), *kc = xalloc(nc * sizeof *kc);
    float *vc = xalloc(nc * sizeof *vc);
    ZT_CHECK_OK(run_cached(be, s, q, k, v, k_cache, v_cache, mask, q_scale, out, kc, vc, context));
    float *k_want = expected_cache(k_cache, k, s), *v_want = expected_cache(v_cache, v, s);
    ZT_CHECK(memcmp(kc, k_want, nc * sizeof *kc) == 0 && memcmp(vc, v_want, nc * sizeof *vc) == 0,
             "%s: the caches are not the old ones with the new keys and values appended", context);
    double *ref = xalloc(n * sizeof *ref), *tol = xalloc(n * sizeof *tol);
    reference(q, k_want, v_want, mask, s, q_scale, ref, tol);
    size_t bad = 0, zeros = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)out[i] - ref[i]);
        if (!(isfinite(out[i]) && err <= tol[i]) && bad++ < 5)
            fprintf(stderr, "  %s: out[%zu] %.9g, want %.9g (tol %.3g)\n", context, i, out[i],
                    ref[i], tol[i]);
        if (tol[i] > 0 && err / tol[i] > worst_ratio) worst_ratio = err / tol[i];
        zeros += tol[i] == 0.0;
    }
    ZT_CHECK(bad == 0, "%s: %zu of %zu outputs out of tolerance", context, bad, n);
    printf("  %-64s ok (%zu outputs of queries without keys: 0)\n", context, zeros);
    free(q), free(k), free(v), free(k_cache), free(v_cache), free(mask), free(out), free(kc);
    free(vc), free(k_want), free(v_want), free(ref), free(tol);
    zt_backend_destroy(be);
}

static void test_against_reference(void) {
    const int none[3] = {0, 0, 0};
    check_case("prefill, no padding", (cached_shape){2, 9, 20, 0, 3, 7}, none, 0, -1);
    const int left[3] = {10, 0, 0};
    /* decode: a left-padded row, a plain one, one that is padding throughout */
    check_case("decode, left pad + all-pad row", (cached_shape){3, 1, 40, 25, 2, 16}, left, 0, 2);
    check_case("chunk mid-cache, holes", (cached_shape){2, 5, 64, 30, 4, 33}, none, 1, -1);
    const int left2[1] = {3};
    check_case("fills the capacity, D=80", (cached_shape){1, 3, 50, 47, 1, 80}, left2, 0, -1);
    check_case("one column", (cached_shape){1, 1, 1, 0, 1, 1}, none, 0, -1);
    const int late[2] = {30, 12};
    /* every query of sequence 0 precedes its first token: all zeros */
    check_case("queries before any token", (cached_shape){2, 4, 36, 20, 2, 5}, late, 0, -1);
}

/* Prefill from 0 == attention, bit for bit; then 5 prefilled tokens + 8 one-token steps give the
 * same rows again (the same routine over the same keys). */
static void test_prefill_and_steps(void) {
    const int B = 2, T = 13, H = 3, D = 7, capacity = 17;
    const size_t C = (size_t)H * D, n = (size_t)B * T * C, nc = (size_t)B * capacity * C;
    const float q_scale = 0.37796447f;
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(2, &be));
    float *q = random_floats(n, -4, 4), *k = random_floats(n, -2, 2), *v = random_floats(n, -2, 2);
    int32_t mask_t[2 * 13], *mask_c = xalloc((size_t)B * capacity * sizeof *mask_c);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < capacity; j++) {
            int32_t keep = b == 0 ? j >= 4 : j % 5 != 2; /* left padding; holes */
            if (j < T) mask_t[b * T + j] = keep;
            mask_c[(size_t)b * capacity + j] = keep;
        }
    float *plain = xalloc(n * sizeof *plain);
    ZT_CHECK_OK(be->ops->attention(be, plain, q, k, v, mask_t, B, T, H, D, q_scale));

    float *k_cache = calloc(nc, sizeof(float)), *v_cache = calloc(nc, sizeof(float));
    float *out = xalloc(n * sizeof *out);
    ZT_CHECK_OK(be->ops->attention_cached(be, out, q, k, v, k_cache, v_cache, mask_c, B, T,
                                          capacity, 0, H, D, q_scale));
    ZT_CHECK(memcmp(out, plain, n * sizeof *out) == 0, "prefill of %d: differs from attention", T);

    /* the same again, 5 tokens then one at a time: rows gathered per step */
    const int first = 5;
    memset(k_cache, 0, nc * sizeof(float));
    memset(v_cache, 0, nc * sizeof(float));
    float *step_q = xalloc((size_t)B * first * C * sizeof(float));
    float *step_k = xalloc((size_t)B * first * C * sizeof(float));
    float *step_v = xalloc((size_t)B * first * C * sizeof(float));
    float *step_out = xalloc((size_t)B * first * C * sizeof(float));
    int mismatched = 0;
    for (int start = 0; start < T;) {
        int n_new = start == 0 ? first : 1;
        for (int b = 0; b < B; b++) {
            size_t from = ((size_t)b * T + start) * C, to = (size_t)b * n_new * C;
            memcpy(step_q + to, q + from, n_new * C * sizeof(float));
            memcpy(step_k + to, k + from, n_new * C * sizeof(float));
            memcpy(step_v + to, v + from, n_new * C * sizeof(float));
        }
        ZT_CHECK_OK(be->ops->attention_cached(be, step_out, step_q, step_k, step_v, k_cache,
                                              v_cache, mask_c, B, n_new, capacity, start, H, D,
                                              q_scale));
        for (int b = 0; b < B; b++)
            mismatched +=
                memcmp(step_out + (size_t)b * n_new * C, plain + ((size_t)b * T + start) * C,
                       n_new * C * sizeof(float)) != 0;
        start += n_new;
    }
    ZT_CHECK(mismatched == 0, "prefill of %d + one-token steps: %d step rows differ from attention",
             first, mismatched);
    printf("  prefill == attention and %d + 1-token steps == attention, bit for bit\n", first);
    free(q), free(k), free(v), free(mask_c), free(plain), free(k_cache), free(v_cache), free(out);
    free(step_q), free(step_k), free(step_v), free(step_out);
    zt_backend_destroy(be);
}

/* Work is split over (sequence, head, query), never inside a reduction: bitwise equal on 1 and 3
 * threads. The scratch grows to exactly what scratch_bytes plans for the capacity. */
static void test_threads_and_scratch(void) {
    const cached_shape s = {3, 6, 70, 64, 4, 24};
    const size_t n = new_elems(s), nc = cache_elems(s);
    float *q = random_floats(n, -4, 4), *k = random_floats(n, -2, 2), *v = random_floats(n, -2, 2);
    float *kc0 = random_floats(nc, -2, 2), *vc0 = random_floats(nc, -2, 2);
    const int left[3] = {0, 17, 40};
    int32_t *mask = make_mask(s, left, 1, -1);
    float *out[2], *kc = xalloc(nc * sizeof *kc), *vc = xalloc(nc * sizeof *vc);
    const int threads[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        zt_backend *be = NULL;
        ZT_REQUIRE_OK(zt_cpu_backend_create(threads[t], &be));
        zt_scratch_query query = {.op = ZT_SCRATCH_ATTENTION_CACHED,
                                  .weight_dtype = ZT_F32,
                                  .bias_dtype = ZT_F32,
                                  .seq_len = s.capacity,
                                  .head_dim = s.head_dim};
        const size_t planned = be->ops->scratch_bytes(be, &query);
        zt_mem_stats before, after;
        zt_mem_stats_get(&before);
        out[t] = xalloc(n * sizeof(float));
        ZT_CHECK_OK(run_cached(be, s, q, k, v, kc0, vc0, mask, 0.2f, out[t], kc, vc, "threads"));
        zt_mem_stats_get(&after);
        const size_t grown = after.current[ZT_MEM_SCRATCH] - before.current[ZT_MEM_SCRATCH];
        /* start + n_new == capacity: the op's largest request */
        ZT_CHECK(grown == planned && planned == (size_t)threads[t] * (70 + 2 * 24) * sizeof(float),
                 "%d threads: scratch grew by %zu bytes, planned %zu", threads[t], grown, planned);
        zt_backend_destroy(be);
    }
    ZT_CHECK(memcmp(out[0], out[1], n * sizeof(float)) == 0,
             "attention_cached differs between 1 and 3 threads");
    printf("  1 and 3 threads bit-identical; scratch as planned\n");
    free(q), free(k), free(v), free(kc0), free(vc0), free(mask), free(out[0]), free(out[1]);
    free(kc), free(vc);
}

static void expect_error(zt_status got, const char *message) {
    ZT_CHECK(got == ZT_ERR_INVALID_ARG, "\"%s\": status %s", message, zt_status_name(got));
    ZT_CHECK(strcmp(zt_last_error(), message) == 0, "message \"%s\", want \"%s\"", zt_last_error(),
             message);
}

static void test_errors(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &be));
    enum { CAP = 8, C = 6 };
    float buf[7][CAP * C];
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < CAP * C; j++)
            buf[i][j] = (float)(i * 100 + j);
    float saved[7][CAP * C];
    memcpy(saved, buf, sizeof buf);
    float *out = buf[0], *q = buf[1], *k = buf[2], *v = buf[3], *kc = buf[4], *vc = buf[5];
    int32_t mask[CAP];
    for (int j = 0; j < CAP; j++)
        mask[j] = 1;
    const zt_backend_ops *op = be->ops;
    expect_error(op->attention_cached(be, out, q, k, v, kc, vc, mask, 1, 3, CAP, 6, 2, 3, 1.0f),
                 "attention_cached: start 6 + n_new 3 does not fit the cache's capacity 8");
    expect_error(op->attention_cached(be, out, q, k, v, kc, vc, mask, 1, 1, CAP, -1, 2, 3, 1.0f),
                 "attention_cached: start -1 + n_new 1 does not fit the cache's capacity 8");
    expect_error(op->attention_cached(be, out, q, k, v, kc, vc, mask, 1, 0, CAP, 0, 2, 3, 1.0f),
                 "attention_cached: n_new 0 must be > 0");
    expect_error(op->attention_cached(be, out, q, k, v, kc, vc, mask, 1, 1, 0, 0, 2, 3, 1.0f),
                 "attention_cached: capacity 0 must be > 0");
    expect_error(op->attention_cached(be, out, q, k, v, NULL, vc, mask, 1, 1, CAP, 0, 2, 3, 1.0f),
                 "attention_cached: k_cache is NULL");
    expect_error(op->attention_cached(be, out, q, k, v, kc, kc, mask, 1, 1, CAP, 0, 2, 3, 1.0f),
                 "attention_cached: k_cache overlaps v_cache");
    expect_error(op->attention_cached(be, kc + 3, q, k, v, kc, vc, mask, 1, 1, CAP, 0, 2, 3, 1.0f),
                 "attention_cached: out overlaps k_cache");
    expect_error(
        op->attention_cached(be, out, q, vc + C, v, kc, vc, mask, 1, 1, CAP, 2, 2, 3, 1.0f),
        "attention_cached: v_cache overlaps k");
    expect_error(op->attention_cached(be, out, q, k, v, kc, vc, mask, 1, 1, CAP, 0, 2, 3, NAN),
                 "attention_cached: q_scale nan is not finite");
    ZT_CHECK(memcmp(saved, buf, sizeof buf) == 0, "a refused call wrote into its buffers");
    printf("  9 refusals, each naming the op and argument, nothing written\n");
    zt_backend_destroy(be);
}

int main(void) {
    uint64_t seed = 20260101;
    const char *seed_text = getenv("ZT_OPS_SEED");
    if (seed_text && *seed_text) seed = strtoull(seed_text, NULL, 0);
    printf("test_attention_cached_cpu: seed %llu (ZT_OPS_SEED overrides)\n",
           (unsigned long long)seed);
    rng_state = seed;
    test_against_reference();
    test_prefill_and_steps();
    test_threads_and_scratch();
    test_errors();
    zt_mem_stats stats;
    zt_mem_stats_get(&stats);
    ZT_CHECK(stats.current_total == 0, "%zu bytes still tracked", stats.current_total);
    printf("  worst |err|/tol %.3g\n", worst_ratio);
    return zt_test_finish("test_attention_cached_cpu");
}
