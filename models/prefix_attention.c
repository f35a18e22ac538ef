/* The attention with a prefix (models/prefix.h) on the backend's own attention ops: each
 * sequence extended to N + T rows, prefix rows first, so that the causal rule over the extended
 * sequence is MeZO's rule. The copies go through gather_rows with 0, 1, 2, ... as the rows, one
 * sequence at a time; the prefix rows are read with the variant's gather perturbation, so a ZO
 * variant never stages them. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "prefix.h"

enum { BUFFER_ALIGN = 64 };

static size_t aligned(size_t n_bytes) {
    return (n_bytes + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
}

/* Bytes of one extended (B, N+T, C) f32 buffer, of the mask and of the row indices. */
static void sizes(const zt_model *m, int max_batch, int max_seq_len, size_t *ext, size_t *mask,
                  size_t *iota) {
    const size_t rows = (size_t)zt_model_prefix_tokens(m) + (size_t)max_seq_len;
    *ext = aligned((size_t)max_batch * rows * (size_t)m->dims.hidden_size * sizeof(float));
    *mask = aligned((size_t)max_batch * rows * sizeof(int32_t));
    *iota = aligned(rows * sizeof(int32_t));
}

size_t zt_prefix_buffers_bytes(const zt_model *m, int max_batch, int max_seq_len, int backward) {
    if (!m->prefix) return 0;
    size_t ext, mask, iota;
    sizes(m, max_batch, max_seq_len, &ext, &mask, &iota);
    return (backward ? 8 : 4) * ext + mask + iota;
}

void zt_prefix_buffers_place(const zt_model *m, int max_batch, int max_seq_len, int backward,
                             char *base, zt_prefix_buffers *out) {
    memset(out, 0, sizeof *out);
    if (!m->prefix) return;
    size_t ext, mask, iota;
    sizes(m, max_batch, max_seq_len, &ext, &mask, &iota);
    float **floats[] = {&out->q,     &out->k,   &out->v,   &out->out,
                        &out->d_out, &out->d_q, &out->d_k, &out->d_v};
    const int n_floats = backward ? 8 : 4;
    for (int i = 0; i < n_floats; i++) {
        *floats[i] = (float *)base;
        base += ext;
    }
    out->mask = (int32_t *)base;
    out->iota = (int32_t *)(base + mask);
    out->iota_seq = out->iota + zt_model_prefix_tokens(m);
}

zt_status zt_prefix_upload_batch(const zt_model *m, const zt_prefix_buffers *pb,
                                 const zt_batch *b) {
    const int n = zt_model_prefix_tokens(m), rows = n + b->seq_len;
    int32_t *host = zt_malloc(((size_t)b->batch + 1) * (size_t)rows * sizeof *host);
    if (!host) return zt_fail(ZT_ERR_NOMEM, "prefix: the extended key mask");
    for (int s = 0; s < b->batch; s++)
        for (int j = 0; j < rows; j++)
            host[(size_t)s * rows + j] =
                j < n ? 1 : b->attention_mask[(size_t)s * b->seq_len + (j - n)];
    /* 0 .. N-1 then 0 .. T-1 */
    int32_t *iota = host + (size_t)b->batch * rows;
    for (int j = 0; j < rows; j++)
        iota[j] = j < n ? j : j - n;
    zt_backend *be = m->be;
    zt_status s = be->ops->upload(be, pb->mask, host, (size_t)b->batch * rows * sizeof *host);
    if (s == ZT_OK) s = be->ops->upload(be, pb->iota, iota, (size_t)rows * sizeof *iota);
    free(host);
    if (s == ZT_OK && be->ops->vouch_indices) {
        be->ops->vouch_indices(be, pb->iota, n, n);
        be->ops->vouch_indices(be, pb->iota_seq, b->seq_len, b->seq_len);
    }
    return s;
}

typedef struct shape {
    int batch, seq_len, n_prefix, n_cols;
} shape;

static size_t ext_row(const shape *sh, int b, int j) {
    return ((size_t)b * (size_t)(sh->n_prefix + sh->seq_len) + (size_t)j) * (size_t)sh->n_cols;
}

/* ext (B, N+T, C) = each sequence's N rows of `prefix` (perturbed by p) then its T rows of src. */
static zt_status extend(zt_backend *be, const shape *sh, const zt_prefix_buffers *pb, float *ext,
                        const float *src /* (B,T,C) */, zt_weight prefix,
                        const zt_gather_perturbation *p) {
    const int n = sh->n_prefix, t = sh->seq_len, c = sh->n_cols;
    for (int b = 0; b < sh->batch; b++) {
        ZT_TRY(be->ops->gather_rows(be, ext + ext_row(sh, b, 0), pb->iota, prefix, n, n, c, 0, p));
        const zt_weight own = {src + (size_t)b * t * c, ZT_F32};
        ZT_TRY(
            be->ops->gather_rows(be, ext + ext_row(sh, b, n), pb->iota_seq, own, t, t, c, 0, NULL));
    }
    return ZT_OK;
}

/* dst (B,T,C) = the sequences' own rows of ext. */
static zt_status contract(zt_backend *be, const shape *sh, const zt_prefix_buffers *pb, float *dst,
                          const float *ext) {
    const int t = sh->seq_len, c = sh->n_cols;
    for (int b = 0; b < sh->batch; b++) {
        const zt_weight own = {ext + ext_row(sh, b, sh->n_prefix), ZT_F32};
        ZT_TRY(
            be->ops->gather_rows(be, dst + (size_t)b * t * c, pb->iota_seq, own, t, t, c, 0, NULL));
    }
    return ZT_OK;
}

/* k and v of the one-sequence capture batch become the layer's prefixes. */
static zt_status capture(const zt_model *m, int layer, const float *k, const float *v, int batch,
                         int seq_len) {
    const zt_prefix *prefix = m->prefix;
    const int n = prefix->options.n_prefix, keys = zt_prefix_keys_id(m, layer);
    if (batch != 1 || seq_len != n)
        return zt_fail(ZT_ERR_INTERNAL, "prefix capture: a batch of 1 x %d, not %d x %d", n, batch,
                       seq_len);
    const size_t count = (size_t)n * (size_t)m->dims.hidden_size;
    float *host = zt_malloc(count * sizeof *host);
    if (!host) return zt_fail(ZT_ERR_NOMEM, "prefix capture: staging");
    zt_backend *be = m->be;
    zt_status s = ZT_OK;
    const float *sources[] = {k, v};
    for (int i = 0; s == ZT_OK && i < 2; i++) {
        const int id = keys + i;
        if (prefix->capture_mask && !prefix->capture_mask[id]) continue;
        s = be->ops->download(be, host, sources[i], count * sizeof *host);
        if (s == ZT_OK)
            s = be->ops->upload(be, (char *)m->weights + m->tensors[id].offset, host,
                                count * sizeof *host);
    }
    free(host);
    return s;
}

zt_status zt_prefix_attention(const zt_model *m, int layer, const zt_prefix_buffers *pb, float *out,
                              const float *q, const float *k, const float *v, int batch,
                              int seq_len, const int32_t *key_mask, int n_heads, int head_dim,
                              float q_scale, const zt_gather_perturbation *pk,
                              const zt_gather_perturbation *pv) {
    zt_backend *be = m->be;
    if (m->prefix->capturing) {
        ZT_TRY(capture(m, layer, k, v, batch, seq_len));
        return be->ops->attention(be, out, q, k, v, key_mask, batch, seq_len, n_heads, head_dim,
                                  q_scale);
    }
    const shape sh = {batch, seq_len, m->prefix->options.n_prefix, n_heads * head_dim};
    const int keys = zt_prefix_keys_id(m, layer);
    const zt_weight prefix_k = zt_model_weight(m, keys), prefix_v = zt_model_weight(m, keys + 1);
    /* the prefix rows' queries are discarded: any finite rows do */
    ZT_TRY(extend(be, &sh, pb, pb->q, q, prefix_k, NULL));
    ZT_TRY(extend(be, &sh, pb, pb->k, k, prefix_k, pk));
    ZT_TRY(extend(be, &sh, pb, pb->v, v, prefix_v, pv));
    ZT_TRY(be->ops->attention(be, pb->out, pb->q, pb->k, pb->v, pb->mask, batch,
                              sh.n_prefix + seq_len, n_heads, head_dim, q_scale));
    return contract(be, &sh, pb, out, pb->out);
}

zt_status zt_prefix_attention_backward(const zt_model *m, int layer, const zt_prefix_buffers *pb,
                                       float *d_q, float *d_k, float *d_v, const float *d_out,
                                       const float *q, const float *k, const float *v,
                                       const float *out, int batch, int seq_len, int n_heads,
                                       int head_dim, float q_scale, float *d_prefix_keys,
                                       float *d_prefix_values) {
    zt_backend *be = m->be;
    const shape sh = {batch, seq_len, m->prefix->options.n_prefix, n_heads * head_dim};
    const int n = sh.n_prefix, rows = n + seq_len, c = sh.n_cols;
    const int keys = zt_prefix_keys_id(m, layer);
    const zt_weight prefix_k = zt_model_weight(m, keys), prefix_v = zt_model_weight(m, keys + 1);
    ZT_TRY(extend(be, &sh, pb, pb->q, q, prefix_k, NULL));
    ZT_TRY(extend(be, &sh, pb, pb->k, k, prefix_k, NULL));
    ZT_TRY(extend(be, &sh, pb, pb->v, v, prefix_v, NULL));
    /* the prefix rows' outputs are multiplied by a zero gradient: any finite rows do */
    ZT_TRY(extend(be, &sh, pb, pb->out, out, prefix_k, NULL));
    /* the discarded queries' output gradient is 0, so they pass nothing to any key or value */
    ZT_TRY(be->ops->zero(be, pb->d_out, (size_t)batch * rows * c * sizeof(float)));
    for (int b = 0; b < batch; b++) {
        const zt_weight own = {d_out + (size_t)b * seq_len * c, ZT_F32};
        ZT_TRY(be->ops->gather_rows(be, pb->d_out + ext_row(&sh, b, n), pb->iota_seq, own, seq_len,
                                    seq_len, c, 0, NULL));
    }
    ZT_TRY(be->ops->attention_backward(be, pb->d_q, pb->d_k, pb->d_v, pb->d_out, pb->q, pb->k,
                                       pb->v, pb->out, pb->mask, batch, rows, n_heads, head_dim,
                                       q_scale));
    ZT_TRY(contract(be, &sh, pb, d_q, pb->d_q));
    ZT_TRY(contract(be, &sh, pb, d_k, pb->d_k));
    ZT_TRY(contract(be, &sh, pb, d_v, pb->d_v));
    /* summed over the sequences in order */
    for (int b = 0; b < batch; b++) {
        if (d_prefix_keys)
            ZT_TRY(be->ops->gather_rows_backward(be, d_prefix_keys, pb->d_k + ext_row(&sh, b, 0),
                                                 pb->iota, n, n, c));
        if (d_prefix_values)
            ZT_TRY(be->ops->gather_rows_backward(be, d_prefix_values, pb->d_v + ext_row(&sh, b, 0),
                                                 pb->iota, n, n, c));
    }
    return ZT_OK;
}
