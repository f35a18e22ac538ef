/* Prefix tuning's attention (models/prefix_attention.c) on the CPU backend against a
 * double-precision loop written here from MeZO's rule: query i of sequence b attends to all N
 * prefix keys (mask 0 on their scores), then to its own keys j <= i with mask 1; padded queries
 * too. The forward's output within 1e-5 of its largest magnitude; the backward of
 * L = sum d_out * out gives d_q, d_k, d_v and the prefixes' gradients summed over the batch within
 * 1e-5 of each gradient's largest magnitude, the prefix gradients added to what was there. The
 * shapes have left padding, right padding and a hole; heads are column blocks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"
#include "ops_rng.h"
#include "prefix.h"
#include "zt_test.h"

enum { B = 3, T = 7, N = 4, H = 2, D = 5, C = H * D };

static double worst_forward, worst_backward;

/* The forward and the gradients in double for one (sequence, head): probabilities over the
 * N + T extended keys, keys 0 .. N-1 the prefix. */
static void reference(const float *q, const float *k, const float *v, const float *pk,
                      const float *pv, const int32_t *mask, const float *d_out, float q_scale,
                      double *out, double *d_q, double *d_k, double *d_v, double *d_pk,
                      double *d_pv) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const size_t qi = ((size_t)b * T + i) * C + (size_t)h * D;
                double s[N + T], p[N + T], most = -INFINITY;
                int ok[N + T];
                for (int j = 0; j < N + T; j++) {
                    const int own = j - N;
                    ok[j] = j < N || (own <= i && mask[b * T + own]);
                    if (!ok[j]) continue;
                    const float *key = j < N ? pk + (size_t)j * C + (size_t)h * D
                                             : k + ((size_t)b * T + own) * C + (size_t)h * D;
                    double dot = 0;
                    for (int d = 0; d < D; d++)
                        dot += (double)q[qi + d] * q_scale * key[d];
                    s[j] = dot;
                    most = fmax(most, dot);
                }
                double z = 0;
                for (int j = 0; j < N + T; j++)
                    z += ok[j] ? exp(s[j] - most) : 0;
                double dp[N + T], sum_pdp = 0;
                for (int d = 0; d < D; d++)
                    out[qi + d] = 0;
                for (int j = 0; j < N + T; j++) {
                    p[j] = ok[j] ? exp(s[j] - most) / z : 0;
                    if (!ok[j]) continue;
                    const float *val = j < N ? pv + (size_t)j * C + (size_t)h * D
                                             : v + ((size_t)b * T + j - N) * C + (size_t)h * D;
                    dp[j] = 0;
                    for (int d = 0; d < D; d++) {
                        out[qi + d] += p[j] * val[d];
                        dp[j] += (double)d_out[qi + d] * val[d];
                    }
                    sum_pdp += p[j] * dp[j];
                }
                for (int j = 0; j < N + T; j++) {
                    if (!ok[j]) continue;
                    const double ds = p[j] * (dp[j] - sum_pdp);
                    const int own = j - N;
                    const float *key = j < N ? pk + (size_t)j * C + (size_t)h * D
                                             : k + ((size_t)b * T + own) * C + (size_t)h * D;
                    double *dk = j < N ? d_pk + (size_t)j * C + (size_t)h * D
                                       : d_k + ((size_t)b * T + own) * C + (size_t)h * D;
                    double *dv = j < N ? d_pv + (size_t)j * C + (size_t)h * D
                                       : d_v + ((size_t)b * T + own) * C + (size_t)h * D;
                    for (int d = 0; d < D; d++) {
                        d_q[qi + d] += ds * key[d] * q_scale;
                        dk[d] += ds * q[qi + d] * q_scale;
                        dv[d] += p[j] * d_out[qi + d];
                    }
                }
            }
}

/* Largest |got - want| over the largest |want|. */
static double relative(const float *got, const double *want, size_t n) {
    double scale = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(want[i]));
        err = fmax(err, fabs((double)got[i] - want[i]));
    }
    return scale > 0 ? err / scale : err;
}

int main(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 2, &be));
    rng_state = 20261207;
    const size_t nq = (size_t)B * T * C, np = (size_t)N * C;
    /* a model holding only layer 0's two prefix tensors, at the front of its weights */
    zt_tensor_info tensors[2];
    memset(tensors, 0, sizeof tensors);
    for (int i = 0; i < 2; i++) {
        snprintf(tensors[i].name, sizeof tensors[i].name, "prefix_%d", i);
        tensors[i].dtype = ZT_F32;
        tensors[i].n_dims = 2;
        tensors[i].shape[0] = N;
        tensors[i].shape[1] = C;
        tensors[i].n_elems = np;
        tensors[i].offset = (size_t)i * np * sizeof(float);
    }
    zt_prefix prefix;
    memset(&prefix, 0, sizeof prefix);
    prefix.options.n_prefix = N;
    zt_model m;
    memset(&m, 0, sizeof m);
    m.be = be;
    m.dims.hidden_size = C;
    m.tensors = tensors;
    m.n_tensors = 2;
    m.prefix = &prefix;

    /* host inputs: q, k, v, d_out (B,T,C) and the prefixes (N,C) */
    float *in = malloc((4 * nq + 2 * np) * sizeof *in);
    float *q = in, *k = q + nq, *v = k + nq, *d_out = v + nq, *pk = d_out + nq, *pv = pk + np;
    for (size_t i = 0; i < 4 * nq + 2 * np; i++)
        in[i] = rng_float(-1.0, 1.0);
    /* sequence 0 full; 1 left-padded by 2 with a hole at 4; 2 right-padded by 3 */
    int32_t mask[B * T];
    for (int i = 0; i < B * T; i++)
        mask[i] = 1;
    mask[T + 0] = mask[T + 1] = mask[T + 4] = 0;
    mask[2 * T + 4] = mask[2 * T + 5] = mask[2 * T + 6] = 0;
    const float q_scale = 1.0f / sqrtf((float)D);

    /* backend: the prefixes (the model's weights), then q k v d_out, out, d_q d_k d_v, the prefix
     * gradients, then the extended buffers */
    const size_t floats = 2 * np + 4 * nq + nq + 3 * nq + 2 * np;
    const size_t pb_bytes = zt_prefix_buffers_bytes(&m, B, T, 1);
    float *dev = NULL;
    ZT_REQUIRE_OK(
        be->ops->alloc(be, floats * sizeof(float) + pb_bytes, ZT_MEM_ACTIVATIONS, (void **)&dev));
    float *weights = dev, *q_dev = weights + 2 * np, *out_dev = q_dev + 4 * nq;
    float *grad_dev = out_dev + nq, *prefix_grad_dev = grad_dev + 3 * nq;
    m.weights = weights;
    ZT_REQUIRE_OK(be->ops->upload(be, weights, pk, 2 * np * sizeof(float)));
    ZT_REQUIRE_OK(be->ops->upload(be, q_dev, q, 4 * nq * sizeof(float)));
    float *start = malloc(2 * np * sizeof *start);
    for (size_t i = 0; i < 2 * np; i++)
        start[i] = 0.25f; /* the prefix gradients are added to this */
    ZT_REQUIRE_OK(be->ops->upload(be, prefix_grad_dev, start, 2 * np * sizeof(float)));
    zt_prefix_buffers pb;
    zt_prefix_buffers_place(&m, B, T, 1, (char *)(prefix_grad_dev + 2 * np), &pb);
    int32_t ids[B * T] = {0};
    const zt_batch batch = {B, T, ids, mask, 0, NULL, NULL};
    ZT_REQUIRE_OK(zt_prefix_upload_batch(&m, &pb, &batch));
    const float *k_dev = q_dev + nq, *v_dev = k_dev + nq, *d_out_dev = v_dev + nq;
    ZT_REQUIRE_OK(zt_prefix_attention(&m, 0, &pb, out_dev, q_dev, k_dev, v_dev, B, T, NULL, H, D,
                                      q_scale, NULL, NULL));
    ZT_REQUIRE_OK(zt_prefix_attention_backward(
        &m, 0, &pb, grad_dev, grad_dev + nq, grad_dev + 2 * nq, d_out_dev, q_dev, k_dev, v_dev,
        out_dev, B, T, H, D, q_scale, prefix_grad_dev, prefix_grad_dev + np));

    float *got = malloc((4 * nq + 2 * np) * sizeof *got);
    ZT_REQUIRE_OK(be->ops->download(be, got, out_dev, (4 * nq + 2 * np) * sizeof(float)));
    double *want = calloc(4 * nq + 2 * np, sizeof *want);
    double *w_dq = want + nq, *w_dk = w_dq + nq, *w_dv = w_dk + nq, *w_dpk = w_dv + nq;
    reference(q, k, v, pk, pv, mask, d_out, q_scale, want, w_dq, w_dk, w_dv, w_dpk, w_dpk + np);
    for (size_t i = 0; i < 2 * np; i++)
        w_dpk[i] += 0.25;

    worst_forward = relative(got, want, nq);
    const double e_q = relative(got + nq, w_dq, nq), e_k = relative(got + 2 * nq, w_dk, nq);
    const double e_v = relative(got + 3 * nq, w_dv, nq);
    const double e_pk = relative(got + 4 * nq, w_dpk, np);
    const double e_pv = relative(got + 4 * nq + np, w_dpk + np, np);
    worst_backward = fmax(fmax(e_q, e_k), fmax(e_v, fmax(e_pk, e_pv)));
    ZT_CHECK(worst_forward <= 1e-5, "forward off the double loop by %.3g", worst_forward);
    ZT_CHECK(e_q <= 1e-5 && e_k <= 1e-5 && e_v <= 1e-5,
             "d_q %.3g, d_k %.3g, d_v %.3g off the double loop", e_q, e_k, e_v);
    ZT_CHECK(e_pk <= 1e-5 && e_pv <= 1e-5,
             "prefix gradients off the double loop: keys %.3g, values %.3g", e_pk, e_pv);
    /* sequence 1's first query is padding: it still attends to the prefix */
    double padded = 0;
    for (int d = 0; d < C; d++)
        padded = fmax(padded, fabs(got[(size_t)T * C + d]));
    ZT_CHECK(padded > 1e-3, "a padded query's output is %.3g: it ignored the prefix", padded);
    printf("prefix attention (B %d, T %d, N %d, %d heads of %d; left and right padding, a hole) "
           "vs a double loop: forward %.3g, backward %.3g of each output's scale\n",
           B, T, N, H, D, worst_forward, worst_backward);
    free(want);
    free(got);
    free(start);
    free(in);
    be->ops->free(be, dev, floats * sizeof(float) + pb_bytes, ZT_MEM_ACTIVATIONS);
    zt_backend_destroy(be);
    return zt_test_finish("test_prefix_attention_cpu");
}
