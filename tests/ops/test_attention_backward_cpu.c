/* The CPU backend's attention_backward (kernels/cpu/attention_backward.c):
 *   - d_q, d_k, d_v against a double-precision backward written here from the full T x T
 *     probabilities, within 1e-5 of each gradient's largest magnitude, on shapes that are not
 *     multiples of anything, with left padding (queries without keys), right padding and holes;
 *     `out` is the CPU forward's own output;
 *   - that reference against central differences of L = sum d_out * attention(q, k, v), all in
 *     double, at sampled elements of q, k and v;
 *   - the probabilities the backward recomputes are the forward's bit for bit (read out through
 *     one-hot values and one-hot output gradients);
 *   - padded keys get exactly zero d_k and d_v, queries without keys exactly zero d_q, every
 *     element is written, nothing past the outputs is, and the inputs come back unchanged;
 *   - 1 and 3 threads give the same bytes, and the scratch the op takes is what
 *     zt_cpu_attention_backward_scratch_floats says;
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
#include "cpu/cpu_backward.h"
#include "cpu/cpu_common.h"
#include "ops_rng.h"
#include "zt_test.h"

/* f32 work against a double reference; the sums run over at most T = 40 keys or D = 64 columns. */
static const double OP_RTOL = 1e-5;
/* Central differences with step FD_STEP: truncation ~ FD_STEP^2, cancellation ~ 1e-16 / FD_STEP. */
static const double FD_STEP = 1e-5, FD_RTOL = 1e-7;
enum { GUARD = 16 }; /* floats past each output that must stay untouched */

static double worst_op_error, worst_fd_error; /* relative to the gradient's largest magnitude */

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

static double *widen(const float *x, size_t n) {
    double *y = xalloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

typedef struct shape {
    int batch, seq_len, n_heads, head_dim;
} shape;

static size_t n_elems(shape s) {
    return (size_t)s.batch * s.seq_len * s.n_heads * s.head_dim;
}

/* ---- the reference: one (sequence, head) pair in double, P materialised ---- */

/* Adds to out (and, when d_out is given, to d_q, d_k, d_v) the pair's block; returns the pair's
 * share of L = sum d_out * out when d_out is given. Every array is (B,T,C). */
static double reference_pair(const double *q, const double *k, const double *v,
                             const int32_t *key_mask, shape s, double q_scale, int b, int h,
                             double *out, const double *d_out, double *d_q, double *d_k,
                             double *d_v) {
    const int T = s.seq_len, D = s.head_dim;
    const size_t C = (size_t)s.n_heads * D;
    const int32_t *mask = key_mask + (size_t)b * T;
    double *p = xalloc((size_t)T * T * sizeof *p), *d_s = xalloc((size_t)T * T * sizeof *d_s);
#define AT(t) (((size_t)b * T + (size_t)(t)) * C + (size_t)h * D)
    double loss = 0.0;
    for (int i = 0; i < T; i++) {
        double max_score = -INFINITY;
        for (int j = 0; j < T; j++) {
            p[(size_t)i * T + j] = -INFINITY; /* inadmissible: weight exp(-inf) = 0 */
            if (j > i || mask[j] == 0) continue;
            double dot = 0.0;
            for (int d = 0; d < D; d++)
                dot += q_scale * q[AT(i) + d] * k[AT(j) + d];
            p[(size_t)i * T + j] = dot;
            if (dot > max_score) max_score = dot;
        }
        double sum = 0.0;
        for (int j = 0; j < T; j++) {
            double e = max_score == -INFINITY ? 0.0 : exp(p[(size_t)i * T + j] - max_score);
            p[(size_t)i * T + j] = e;
            sum += e;
        }
        for (int j = 0; j < T; j++)
            p[(size_t)i * T + j] = sum > 0 ? p[(size_t)i * T + j] / sum : 0.0;
        for (int d = 0; d < D; d++) {
            double o = 0.0;
            for (int j = 0; j < T; j++)
                o += p[(size_t)i * T + j] * v[AT(j) + d];
            if (out) out[AT(i) + d] = o;
            if (d_out) loss += d_out[AT(i) + d] * o;
        }
    }
    if (d_q) {
        /* dS = P (dP - sum_j P dP), with the row term from P itself (the op uses `out`). */
        for (int i = 0; i < T; i++) {
            double row_term = 0.0;
            for (int j = 0; j < T; j++) {
                double d_p = 0.0;
                for (int d = 0; d < D; d++)
                    d_p += d_out[AT(i) + d] * v[AT(j) + d];
                d_s[(size_t)i * T + j] = d_p;
                row_term += p[(size_t)i * T + j] * d_p;
            }
            for (int j = 0; j < T; j++)
                d_s[(size_t)i * T + j] = p[(size_t)i * T + j] * (d_s[(size_t)i * T + j] - row_term);
        }
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++)
                for (int d = 0; d < D; d++) {
                    double ds = d_s[(size_t)i * T + j];
                    d_q[AT(i) + d] += q_scale * ds * k[AT(j) + d];
                    d_k[AT(j) + d] += ds * q_scale * q[AT(i) + d];
                    d_v[AT(j) + d] += p[(size_t)i * T + j] * d_out[AT(i) + d];
                }
    }
#undef AT
    free(p), free(d_s);
    return loss;
}

/* The whole reference backward into zeroed d_q, d_k, d_v. */
static void reference_backward(const double *q, const double *k, const double *v,
                               const int32_t *mask, shape s, double q_scale, const double *d_out,
                               double *d_q, double *d_k, double *d_v) {
    const size_t n = n_elems(s);
    memset(d_q, 0, n * sizeof *d_q), memset(d_k, 0, n * sizeof *d_k);
    memset(d_v, 0, n * sizeof *d_v);
    for (int b = 0; b < s.batch; b++)
        for (int h = 0; h < s.n_heads; h++)
            reference_pair(q, k, v, mask, s, q_scale, b, h, NULL, d_out, d_q, d_k, d_v);
}

/* ---- running the op on copies ---- */

typedef struct grads {
    float *d_q, *d_k, *d_v; /* (B,T,C) each */
} grads;

static void grads_free(grads g) {
    free(g.d_q), free(g.d_k), free(g.d_v);
}

/* The op on n_threads, outputs starting as NaN with a guard band after each (so an unwritten
 * element or a write past the end shows); the inputs must come back unchanged. */
static grads run_backward(int n_threads, shape s, const float *d_out, const float *q,
                          const float *k, const float *v, const float *out, const int32_t *mask,
                          float q_scale, const char *context) {
    const size_t n = n_elems(s), bytes = n * sizeof(float);
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(n_threads, &be));
    grads g = {xalloc(bytes + GUARD * sizeof(float)), xalloc(bytes + GUARD * sizeof(float)),
               xalloc(bytes + GUARD * sizeof(float))};
    float *outputs[3] = {g.d_q, g.d_k, g.d_v};
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < n + GUARD; i++)
            outputs[t][i] = NAN;
    float *in[5];
    const float *orig[5] = {d_out, q, k, v, out};
    for (int t = 0; t < 5; t++) {
        in[t] = xalloc(bytes);
        memcpy(in[t], orig[t], bytes);
    }
    zt_mem_stats before, after;
    zt_mem_stats_get(&before);
    ZT_CHECK_OK(zt_cpu_attention_backward(be, g.d_q, g.d_k, g.d_v, in[0], in[1], in[2], in[3],
                                          in[4], mask, s.batch, s.seq_len, s.n_heads, s.head_dim,
                                          q_scale));
    zt_mem_stats_get(&after);
    const size_t grown = after.current[ZT_MEM_SCRATCH] - before.current[ZT_MEM_SCRATCH];
    const size_t planned =
        zt_cpu_attention_backward_scratch_floats(s.seq_len, s.head_dim, n_threads) * sizeof(float);
    ZT_CHECK(grown == planned &&
                 planned == (size_t)n_threads * (s.seq_len + 2 * s.head_dim) * sizeof(float),
             "%s, %d threads: scratch grew by %zu bytes, planned %zu", context, n_threads, grown,
             planned);
    int changed = 0, guard_hit = 0;
    for (int t = 0; t < 5; t++) {
        changed += memcmp(in[t], orig[t], bytes) != 0;
        free(in[t]);
    }
    for (int t = 0; t < 3; t++)
        for (size_t i = n; i < n + GUARD; i++)
            guard_hit += !isnan(outputs[t][i]);
    ZT_CHECK(changed == 0, "%s: %d inputs changed", context, changed);
    ZT_CHECK(guard_hit == 0, "%s: %d floats past the outputs written", context, guard_hit);
    zt_backend_destroy(be);
    return g;
}

/* The CPU forward's output, for the op's `out`. */
static float *forward(shape s, const float *q, const float *k, const float *v, const int32_t *mask,
                      float q_scale) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(2, &be));
    float *out = xalloc(n_elems(s) * sizeof *out);
    ZT_CHECK_OK(be->ops->attention(be, out, q, k, v, mask, s.batch, s.seq_len, s.n_heads,
                                   s.head_dim, q_scale));
    zt_backend_destroy(be);
    return out;
}

/* max |got - want| / max |want| over a tensor. */
static double relative_error(const float *got, const double *want, size_t n) {
    double max_err = 0.0, max_want = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= max_err)) max_err = err; /* NaN sticks */
        if (fabs(want[i]) > max_want) max_want = fabs(want[i]);
    }
    return max_want > 0 ? max_err / max_want : max_err;
}

static double max_magnitude(const double *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

/* Central differences of the pair's L at n_samples random elements of each of q, k, v. */
static void check_reference_by_differences(const char *context, shape s, double *q, double *k,
                                           double *v, const int32_t *mask, double q_scale,
                                           const double *d_out, const double *ref_d[3],
                                           int n_samples) {
    const size_t n = n_elems(s), C = (size_t)s.n_heads * s.head_dim;
    double *inputs[3] = {q, k, v};
    const char *names[3] = {"d_q", "d_k", "d_v"};
    for (int t = 0; t < 3; t++) {
        /* a tensor whose gradient vanishes (T = 1: P = 1) is compared absolutely */
        const double scale = max_magnitude(ref_d[t], n) > 0 ? max_magnitude(ref_d[t], n) : 1.0;
        double worst = 0.0;
        for (int sample = 0; sample < n_samples; sample++) {
            size_t at = (size_t)(rng_next() % n);
            int b = (int)(at / ((size_t)s.seq_len * C)), h = (int)(at % C / s.head_dim);
            double saved = inputs[t][at];
            inputs[t][at] = saved + FD_STEP;
            double up =
                reference_pair(q, k, v, mask, s, q_scale, b, h, NULL, d_out, NULL, NULL, NULL);
            inputs[t][at] = saved - FD_STEP;
            double down =
                reference_pair(q, k, v, mask, s, q_scale, b, h, NULL, d_out, NULL, NULL, NULL);
            inputs[t][at] = saved;
            double fd = (up - down) / (2 * FD_STEP);
            double err = fabs(fd - ref_d[t][at]) / scale;
            ZT_CHECK(err <= FD_RTOL, "%s: %s[%zu] reference %.12g, differences %.12g", context,
                     names[t], at, ref_d[t][at], fd);
            if (!(err <= worst)) worst = err;
        }
        if (worst > worst_fd_error) worst_fd_error = worst;
        printf("    reference %s vs differences: worst %.2e of max |%s| (%d samples)\n", names[t],
               worst, names[t], n_samples);
    }
}

/* A query is empty when no key j <= i is a token. */
static int query_is_empty(const int32_t *mask, int i) {
    for (int j = 0; j <= i; j++)
        if (mask[j] != 0) return 0;
    return 1;
}

static void check_case(const char *label, shape s, const int32_t *mask, int fd_samples) {
    char context[256];
    snprintf(context, sizeof context, "%s B=%d T=%d H=%d D=%d", label, s.batch, s.seq_len,
             s.n_heads, s.head_dim);
    printf("  %s\n", context);
    const size_t n = n_elems(s), C = (size_t)s.n_heads * s.head_dim;
    const float q_scale = (float)(1.0 / sqrt((double)s.head_dim));
    float *q = random_floats(n, -2, 2), *k = random_floats(n, -2, 2), *v = random_floats(n, -1, 1);
    float *d_out = random_floats(n, -1, 1);
    float *out = forward(s, q, k, v, mask, q_scale);
    grads g = run_backward(2, s, d_out, q, k, v, out, mask, q_scale, context);

    double *qd = widen(q, n), *kd = widen(k, n), *vd = widen(v, n), *dod = widen(d_out, n);
    double *ref[3] = {xalloc(n * sizeof(double)), xalloc(n * sizeof(double)),
                      xalloc(n * sizeof(double))};
    reference_backward(qd, kd, vd, mask, s, q_scale, dod, ref[0], ref[1], ref[2]);
    const float *got[3] = {g.d_q, g.d_k, g.d_v};
    const char *names[3] = {"d_q", "d_k", "d_v"};
    for (int t = 0; t < 3; t++) {
        double err = relative_error(got[t], ref[t], n);
        ZT_CHECK(err <= OP_RTOL, "%s: %s off the reference by %.3g of its max magnitude", context,
                 names[t], err);
        if (!(err <= worst_op_error)) worst_op_error = err;
        printf("    op %s vs reference: %.2e of max |%s| %.3g\n", names[t], err, names[t],
               max_magnitude(ref[t], n));
    }

    /* exact zeros where no gradient flows */
    size_t nonzero = 0, masked_keys = 0, empty_queries = 0;
    for (int b = 0; b < s.batch; b++) {
        const int32_t *m = mask + (size_t)b * s.seq_len;
        for (int t = 0; t < s.seq_len; t++) {
            const size_t row = ((size_t)b * s.seq_len + t) * C;
            if (m[t] == 0) {
                masked_keys++;
                for (size_t c = 0; c < C; c++)
                    nonzero += (g.d_k[row + c] != 0.0f) + (g.d_v[row + c] != 0.0f);
            }
            if (query_is_empty(m, t)) {
                empty_queries++;
                for (size_t c = 0; c < C; c++)
                    nonzero += g.d_q[row + c] != 0.0f;
            }
        }
    }
    ZT_CHECK(nonzero == 0, "%s: %zu gradients of padded keys or empty queries are not 0", context,
             nonzero);
    printf("    %zu padded keys: d_k = d_v = 0; %zu empty queries: d_q = 0\n", masked_keys,
           empty_queries);

    if (fd_samples > 0) {
        const double *ref_c[3] = {ref[0], ref[1], ref[2]};
        check_reference_by_differences(context, s, qd, kd, vd, mask, q_scale, dod, ref_c,
                                       fd_samples);
    }

    grads_free(g);
    free(q), free(k), free(v), free(d_out), free(out), free(qd), free(kd), free(vd), free(dod);
    free(ref[0]), free(ref[1]), free(ref[2]);
}

static void test_against_reference(void) {
    {
        /* 0: left padding (queries 0-3 see nothing); 1: right padding; 2: a hole, and tokens
         * marked by values other than 1 */
        enum { B = 3, T = 13 };
        int32_t mask[B * T];
        for (int j = 0; j < T; j++) {
            mask[0 * T + j] = j >= 4;
            mask[1 * T + j] = j < 10;
            mask[2 * T + j] = (j == 5 || j == 6) ? 0 : 1 + j % 3;
        }
        check_case("left pad, right pad, hole", (shape){B, T, 3, 5}, mask, 40);
    }
    {
        enum { B = 2, T = 40 };
        int32_t mask[B * T];
        for (int j = 0; j < T; j++) {
            mask[0 * T + j] = j >= 7 && !(j >= 20 && j <= 22);
            mask[1 * T + j] = j < 31 ? 2 : 0;
        }
        check_case("left pad + hole, right pad, D=64", (shape){B, T, 2, 64}, mask, 40);
    }
    {
        /* sequence 1 is padding throughout: all its gradients are 0 */
        enum { B = 2, T = 6 };
        int32_t mask[B * T];
        for (int j = 0; j < T; j++) {
            mask[0 * T + j] = j != 0;
            mask[1 * T + j] = 0;
        }
        check_case("all-padding sequence", (shape){B, T, 1, 3}, mask, 20);
    }
    {
        int32_t mask[1] = {1};
        check_case("one token, one column", (shape){1, 1, 1, 1}, mask, 3);
    }
}

/* P as the forward made it, read out bit for bit: with v one-hot at (key j0, column d0) of every
 * head the forward's out[i, d0] is w_j0 / sum, i.e. P[i, j0]; with d_out one-hot at (query i0,
 * column d0) the backward's d_v[j, d0] is 0 + P[i0, j] (every other term adds 0 exactly). */
static void test_probabilities_match_forward(void) {
    enum { B = 3, T = 13, H = 3, D = 5, C = H * D, D0 = 2 };
    const shape s = {B, T, H, D};
    const size_t n = n_elems(s);
    const float q_scale = (float)(1.0 / sqrt((double)D));
    int32_t mask[B * T];
    for (int j = 0; j < T; j++) {
        mask[0 * T + j] = j >= 4;
        mask[1 * T + j] = j < 10;
        mask[2 * T + j] = j != 5 && j != 6;
    }
    float *q = random_floats(n, -2, 2), *k = random_floats(n, -2, 2), *v = random_floats(n, -1, 1);
    float *out = forward(s, q, k, v, mask, q_scale);
    float *one_hot = xalloc(n * sizeof *one_hot);
    float *p_forward = xalloc((size_t)B * H * T * T * sizeof(float));
    float *p_backward = xalloc((size_t)B * H * T * T * sizeof(float));
#define P_AT(b, h, i, j) ((((size_t)(b)*H + (h)) * T + (i)) * T + (j))
    for (int j0 = 0; j0 < T; j0++) {
        memset(one_hot, 0, n * sizeof *one_hot);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                one_hot[((size_t)b * T + j0) * C + (size_t)h * D + D0] = 1.0f;
        float *o = forward(s, q, k, one_hot, mask, q_scale);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++)
                    p_forward[P_AT(b, h, i, j0)] = o[((size_t)b * T + i) * C + (size_t)h * D + D0];
        free(o);
    }
    for (int i0 = 0; i0 < T; i0++) {
        memset(one_hot, 0, n * sizeof *one_hot);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                one_hot[((size_t)b * T + i0) * C + (size_t)h * D + D0] = 1.0f;
        grads g = run_backward(1, s, one_hot, q, k, v, out, mask, q_scale, "one-hot d_out");
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int j = 0; j < T; j++)
                    p_backward[P_AT(b, h, i0, j)] =
                        g.d_v[((size_t)b * T + j) * C + (size_t)h * D + D0];
        grads_free(g);
    }
#undef P_AT
    size_t differ = 0, positive = 0;
    for (size_t i = 0; i < (size_t)B * H * T * T; i++) {
        differ += memcmp(&p_forward[i], &p_backward[i], sizeof(float)) != 0;
        positive += p_forward[i] > 0;
    }
    ZT_CHECK(differ == 0 && positive > 0,
             "%zu of %d probabilities differ between the forward and the backward (%zu > 0)",
             differ, B * H * T * T, positive);
    printf("  the backward's probabilities are the forward's bit for bit (%zu of them > 0)\n",
           positive);
    free(q), free(k), free(v), free(out), free(one_hot), free(p_forward), free(p_backward);
}

/* Work is split over (sequence, head) pairs and each pair's sums run in query order: 1 and 3
 * threads give the same bytes (the scratch each takes is checked in run_backward). */
static void test_threads(void) {
    const shape s = {3, 29, 4, 24};
    const size_t n = n_elems(s);
    const float q_scale = (float)(1.0 / sqrt(24.0));
    int32_t mask[3 * 29];
    for (int b = 0; b < 3; b++)
        for (int j = 0; j < 29; j++)
            mask[b * 29 + j] = j >= 5 * b && rng_next() % 5 != 0;
    float *q = random_floats(n, -2, 2), *k = random_floats(n, -2, 2), *v = random_floats(n, -1, 1);
    float *d_out = random_floats(n, -1, 1);
    float *out = forward(s, q, k, v, mask, q_scale);
    grads one = run_backward(1, s, d_out, q, k, v, out, mask, q_scale, "1 thread");
    grads three = run_backward(3, s, d_out, q, k, v, out, mask, q_scale, "3 threads");
    ZT_CHECK(memcmp(one.d_q, three.d_q, n * sizeof(float)) == 0 &&
                 memcmp(one.d_k, three.d_k, n * sizeof(float)) == 0 &&
                 memcmp(one.d_v, three.d_v, n * sizeof(float)) == 0,
             "attention_backward differs between 1 and 3 threads");
    printf(
        "  1 and 3 threads bit-identical; scratch as zt_cpu_attention_backward_scratch_floats\n");
    grads_free(one), grads_free(three);
    free(q), free(k), free(v), free(d_out), free(out);
}

static void expect_error(zt_status got, const char *message) {
    ZT_CHECK(got == ZT_ERR_INVALID_ARG, "\"%s\": status %s", message, zt_status_name(got));
    ZT_CHECK(strcmp(zt_last_error(), message) == 0, "message \"%s\", want \"%s\"", zt_last_error(),
             message);
}

static void test_errors(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &be));
    enum { T = 4, C = 6, N = T * C };
    float buf[8][N];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < N; j++)
            buf[i][j] = (float)(i * 100 + j);
    float saved[8][N];
    memcpy(saved, buf, sizeof buf);
    float *dq = buf[0], *dk = buf[1], *dv = buf[2], *dout = buf[3], *q = buf[4], *k = buf[5];
    float *v = buf[6], *out = buf[7];
    int32_t mask[T] = {1, 1, 1, 1};
    expect_error(
        zt_cpu_attention_backward(be, NULL, dk, dv, dout, q, k, v, out, mask, 1, T, 2, 3, 0.5f),
        "attention_backward: d_q is NULL");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, NULL, dout, q, k, v, out, mask, 1, T, 2, 3, 0.5f),
        "attention_backward: d_v is NULL");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dv, NULL, q, k, v, out, mask, 1, T, 2, 3, 0.5f),
        "attention_backward: d_out is NULL");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dv, dout, q, k, v, NULL, mask, 1, T, 2, 3, 0.5f),
        "attention_backward: out is NULL");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dv, dout, q, k, v, out, NULL, 1, T, 2, 3, 0.5f),
        "attention_backward: key_mask is NULL");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dv, dout, q, k, v, out, mask, 1, 0, 2, 3, 0.5f),
        "attention_backward: seq_len 0 must be > 0");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dv, dout, q, k, v, out, mask, 1, T, 2, -3, 0.5f),
        "attention_backward: head_dim -3 must be > 0");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dv, dout, q, k, v, out, mask, 1, T, 2, 3, NAN),
        "attention_backward: q_scale nan is not finite");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dk, dout, q, k, v, out, mask, 1, T, 2, 3, 0.5f),
        "attention_backward: d_k overlaps d_v");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dv, dout, dq + 5, k, v, out, mask, 1, T, 2, 3, 0.5f),
        "attention_backward: d_q overlaps q");
    expect_error(
        zt_cpu_attention_backward(be, dq, dk, dv, dv + N - 1, q, k, v, out, mask, 1, T, 2, 3, 0.5f),
        "attention_backward: d_v overlaps d_out");
    expect_error(zt_cpu_attention_backward(be, dq, dk, dv, dout, q, k, v, out, (int32_t *)dk, 1, T,
                                           2, 3, 0.5f),
                 "attention_backward: d_k overlaps key_mask");
    ZT_CHECK(memcmp(saved, buf, sizeof buf) == 0, "a refused call wrote into its buffers");
    printf("  12 refusals, each naming the op and argument, nothing written\n");
    zt_backend_destroy(be);
}

int main(void) {
    uint64_t seed = 20260102;
    const char *seed_text = getenv("ZT_OPS_SEED");
    if (seed_text && *seed_text) seed = strtoull(seed_text, NULL, 0);
    printf("test_attention_backward_cpu: seed %llu (ZT_OPS_SEED overrides)\n",
           (unsigned long long)seed);
    rng_state = seed;
    test_against_reference();
    test_probabilities_match_forward();
    test_threads();
    test_errors();
    zt_mem_stats stats;
    zt_mem_stats_get(&stats);
    ZT_CHECK(stats.current_total == 0, "%zu bytes still tracked", stats.current_total);
    printf("  worst op vs reference %.2e, reference vs differences %.2e (of max magnitude)\n",
           worst_op_error, worst_fd_error);
    return zt_test_finish("test_attention_backward_cpu");
}
