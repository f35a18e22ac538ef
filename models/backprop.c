/* The generic part of backprop (models/backprop.h): the gradient block's layout, the buffers a
 * family's grad hook works in, and the batch it reads, uploaded and checked once. */
#include "backprop.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/status.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "workspace.h"

enum { BUFFER_ALIGN = 64 };

struct zt_grad_buffers {
    zt_model *model;
    int max_batch, max_seq_len, checkpoint;
    size_t area_floats; /* the family's buffers */
    size_t bytes;
    char *base;
    /* offsets in bytes from base */
    size_t area, ids, positions, mask, rows, targets, identity, d_logprob;
    size_t prefix; /* zt_prefix_buffers_bytes with backward */
};

size_t zt_model_grad_layout(const zt_model *m, size_t *offsets) {
    size_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        if (i < zt_model_first_staged(m)) {
            offsets[i] = ZT_NO_GRADIENT;
            continue;
        }
        offsets[i] = total;
        total += m->tensors[i].n_elems;
    }
    return total;
}

static size_t take(size_t *cursor, size_t n_bytes) {
    size_t at = (*cursor + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
    *cursor = at + n_bytes;
    return at;
}

/* The layout at a shape; every target row count up to N is covered by planning for R = N. */
static size_t plan(const zt_model *m, int max_batch, int max_seq_len, int checkpoint,
                   zt_grad_buffers *gb) {
    const size_t n = (size_t)max_batch * (size_t)max_seq_len, i = sizeof(int32_t);
    size_t cursor = 0;
    gb->area_floats = m->arch->grad_area_floats(m, n, n, checkpoint);
    gb->area = take(&cursor, gb->area_floats * sizeof(float));
    gb->ids = take(&cursor, n * i);
    gb->positions = take(&cursor, n * i);
    gb->mask = take(&cursor, n * i);
    gb->rows = take(&cursor, n * i);
    gb->targets = take(&cursor, n * i);
    gb->identity = take(&cursor, n * i);
    gb->d_logprob = take(&cursor, n * sizeof(float));
    gb->prefix = take(&cursor, zt_prefix_buffers_bytes(m, max_batch, max_seq_len, 1));
    return cursor;
}

/* Prompt tuning's virtual tokens make every sequence N tokens longer than its caller's
 * (models/prompt.h): the buffers and scratch are planned for the longer ones. */
size_t zt_grad_buffers_bytes(const zt_model *m, int max_batch, int max_seq_len, int checkpoint) {
    if (!m->arch->grad || max_batch <= 0 || max_seq_len <= 0) return 0;
    zt_grad_buffers gb;
    return plan(m, max_batch, max_seq_len + zt_model_virtual_tokens(m), checkpoint, &gb);
}

size_t zt_grad_scratch_bytes(const zt_model *m, int max_batch, int max_seq_len) {
    if (!m->arch->grad || max_batch <= 0 || max_seq_len <= 0) return 0;
    return m->arch->grad_scratch_bytes(m, max_batch, max_seq_len + zt_model_virtual_tokens(m));
}

zt_status zt_grad_buffers_create(zt_model *m, int max_batch, int caller_seq_len, int checkpoint,
                                 zt_grad_buffers **out) {
    *out = NULL;
    const int max_seq_len = caller_seq_len + zt_model_virtual_tokens(m);
    if (!m->arch->grad)
        return zt_fail(ZT_ERR_UNAVAILABLE, "backprop: the %s family has none yet",
                       m->arch->display_name);
    ZT_TRY(zt_backend_require_backward(m->be, "backprop"));
    if (max_batch <= 0 || max_seq_len <= 0 ||
        (long long)max_batch * max_seq_len > ZT_MAX_TOKENS_PER_FORWARD)
        return zt_fail(ZT_ERR_INVALID_ARG, "backprop: batch %d x sequence %d is out of range",
                       max_batch, max_seq_len);
    zt_grad_buffers *gb = zt_calloc(1, sizeof *gb);
    if (!gb) return zt_fail(ZT_ERR_NOMEM, "allocating the backprop buffers' descriptor");
    gb->model = m;
    gb->max_batch = max_batch;
    gb->max_seq_len = max_seq_len;
    gb->checkpoint = checkpoint != 0;
    gb->bytes = plan(m, max_batch, max_seq_len, gb->checkpoint, gb);
    zt_status s = m->be->ops->alloc(m->be, gb->bytes, ZT_MEM_ACTIVATIONS, (void **)&gb->base);
    if (s != ZT_OK) {
        free(gb);
        return s;
    }
    /* reaching the scratch's peak now makes a run's memory what its plan says */
    s = m->be->ops->reserve_scratch(m->be, zt_grad_scratch_bytes(m, max_batch, caller_seq_len));
    if (s != ZT_OK) {
        zt_grad_buffers_free(gb);
        return s;
    }
    *out = gb;
    return ZT_OK;
}

void zt_grad_buffers_free(zt_grad_buffers *gb) {
    if (!gb) return;
    if (gb->base) gb->model->be->ops->free(gb->model->be, gb->base, gb->bytes, ZT_MEM_ACTIVATIONS);
    free(gb);
}

zt_status zt_backend_zero(zt_backend *be, float *dst, size_t n_floats) {
    if (n_floats > SIZE_MAX / sizeof(float))
        return zt_fail(ZT_ERR_INVALID_ARG, "zeroing %zu floats: the byte count overflows",
                       n_floats);
    return be->ops->zero(be, dst, n_floats * sizeof(float));
}

static zt_status check_batch(const zt_grad_buffers *gb, const zt_batch *b, const float *weights) {
    const zt_model *m = gb->model;
    if (b->batch <= 0 || b->seq_len <= 0 || b->batch > gb->max_batch ||
        b->seq_len > gb->max_seq_len)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "backprop: batch %d x %d does not fit the buffers (%d x %d)", b->batch,
                       b->seq_len, gb->max_batch, gb->max_seq_len);
    const int n = b->batch * b->seq_len;
    if (b->n_targets <= 0 || b->n_targets > n)
        return zt_fail(ZT_ERR_INVALID_ARG, "backprop: %d targets for a batch of %d rows",
                       b->n_targets, n);
    for (int r = 0; r < b->n_targets; r++) {
        if (b->target_rows[r] < 0 || b->target_rows[r] >= n)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "backprop: target %d: row %d outside the batch's %d rows", r,
                           b->target_rows[r], n);
        if (b->target_ids[r] < 0 || b->target_ids[r] >= m->dims.vocab_size)
            return zt_fail(ZT_ERR_INVALID_ARG, "backprop: target %d: token %d outside [0, %d)", r,
                           b->target_ids[r], m->dims.vocab_size);
        if (!isfinite(weights[r]))
            return zt_fail(ZT_ERR_NUMERIC, "backprop: target %d has weight %g", r,
                           (double)weights[r]);
    }
    for (int i = 0; i < n; i++)
        if (b->input_ids[i] < 0 || b->input_ids[i] >= m->dims.vocab_size)
            return zt_fail(ZT_ERR_INVALID_ARG, "backprop: token %d at row %d outside [0, %d)",
                           b->input_ids[i], i, m->dims.vocab_size);
    return ZT_OK;
}

static zt_status grad_batch(zt_model *m, zt_grad_buffers *gb, const zt_batch *b,
                            const float *weights, float *grads, double *loss) {
    ZT_TRY(check_batch(gb, b, weights));
    zt_backend *be = m->be;
    const int n = b->batch * b->seq_len, r_count = b->n_targets;
    const size_t int_bytes = (size_t)n * sizeof(int32_t);
    int32_t *host = zt_malloc(int_bytes * 2);
    float *host_f = zt_malloc((size_t)r_count * 2 * sizeof(float));
    size_t *offsets = zt_malloc((size_t)m->n_tensors * sizeof *offsets);
    zt_status s = host && host_f && offsets ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "backprop: batch");
    int32_t *positions = host, *identity = host ? host + n : NULL;
    if (s == ZT_OK) s = zt_batch_position_rows(m, b, NULL, positions);
    if (s == ZT_OK) {
        for (int i = 0; i < n; i++)
            identity[i] = i;
        for (int r = 0; r < r_count; r++)
            host_f[r] = -weights[r];
        zt_model_grad_layout(m, offsets);
    }
    char *base = gb->base;
    const zt_backend_ops *op = be->ops;
    if (s == ZT_OK) s = op->upload(be, base + gb->ids, b->input_ids, int_bytes);
    if (s == ZT_OK) s = op->upload(be, base + gb->positions, positions, int_bytes);
    if (s == ZT_OK) s = op->upload(be, base + gb->mask, b->attention_mask, int_bytes);
    if (s == ZT_OK) s = op->upload(be, base + gb->identity, identity, int_bytes);
    if (s == ZT_OK)
        s = op->upload(be, base + gb->rows, b->target_rows, (size_t)r_count * sizeof(int32_t));
    if (s == ZT_OK)
        s = op->upload(be, base + gb->targets, b->target_ids, (size_t)r_count * sizeof(int32_t));
    if (s == ZT_OK)
        s = op->upload(be, base + gb->d_logprob, host_f, (size_t)r_count * sizeof(float));
    float *logprobs = host_f ? host_f + r_count : NULL;
    zt_prefix_buffers prefix;
    zt_prefix_buffers_place(m, gb->max_batch, gb->max_seq_len, 1, base + gb->prefix, &prefix);
    if (s == ZT_OK && m->prefix) s = zt_prefix_upload_batch(m, &prefix, b);
    if (s == ZT_OK) {
        const zt_grad_pass pass = {m,
                                   b,
                                   (float *)(base + gb->area),
                                   (const int32_t *)(base + gb->ids),
                                   (const int32_t *)(base + gb->positions),
                                   (const int32_t *)(base + gb->mask),
                                   (const int32_t *)(base + gb->rows),
                                   (const int32_t *)(base + gb->targets),
                                   (const int32_t *)(base + gb->identity),
                                   (const float *)(base + gb->d_logprob),
                                   grads,
                                   offsets,
                                   logprobs,
                                   gb->checkpoint,
                                   m->prefix ? &prefix : NULL};
        s = m->arch->grad(&pass);
    }
    if (s == ZT_OK) {
        double sum = 0.0;
        for (int r = 0; r < r_count; r++)
            sum -= (double)weights[r] * (double)logprobs[r];
        *loss = sum;
    }
    free(host);
    free(host_f);
    free(offsets);
    return s;
}

zt_status zt_model_grad(zt_model *m, zt_grad_buffers *gb, const zt_batch *b, const float *weights,
                        float *grads, double *loss) {
    if (!m->prompt) return grad_batch(m, gb, b, weights, grads, loss);
    zt_prompt_batch extended;
    ZT_TRY(zt_prompt_extend_batch(m, b, &extended));
    zt_status s = grad_batch(m, gb, &extended.batch, weights, grads, loss);
    zt_prompt_batch_free(&extended);
    return s;
}
