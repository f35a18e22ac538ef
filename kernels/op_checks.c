#include "op_checks.h"

#include <math.h>
#include <stdint.h>

#include "core/status.h"

zt_status zt_check_dim(const char *op, const char *what, int value) {
    if (value > 0) return ZT_OK;
    return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s %d must be > 0", op, what, value);
}

zt_status zt_check_ptr(const char *op, const char *what, const void *ptr) {
    if (ptr != NULL) return ZT_OK;
    return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
}

zt_status zt_check_dtype(const char *op, const char *what, zt_dtype dtype) {
    if (dtype == ZT_F32 || dtype == ZT_F16 || dtype == ZT_BF16) return ZT_OK;
    return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s has unknown dtype %d", op, what, (int)dtype);
}

zt_status zt_check_weight(const char *op, const char *what, zt_weight w, int required) {
    ZT_TRY(zt_check_dtype(op, what, w.dtype));
    if (required && w.data == NULL) return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    return ZT_OK;
}

zt_status zt_check_disjoint(const char *op, const char *a_name, const void *a, size_t a_bytes,
                            const char *b_name, const void *b, size_t b_bytes) {
    uintptr_t a_begin = (uintptr_t)a, b_begin = (uintptr_t)b;
    if (a_begin < b_begin + b_bytes && b_begin < a_begin + a_bytes)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s overlaps %s", op, a_name, b_name);
    return ZT_OK;
}

static zt_status check_finite(const char *op, const char *what, float value) {
    if (isfinite(value)) return ZT_OK;
    return zt_fail(ZT_ERR_NUMERIC, "%s: %s %g is not finite", op, what, (double)value);
}

static zt_status check_beta(const char *op, const char *what, float beta) {
    if (beta >= 0.0f && beta <= 1.0f) return ZT_OK; /* also false for NaN */
    return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s %g outside [0, 1]", op, what, (double)beta);
}

zt_status zt_check_update_args(const char *op, const void *theta, zt_dtype dtype, size_t n_elems,
                               const float *state, const zt_update *u) {
    ZT_TRY(zt_check_ptr(op, "theta", theta));
    ZT_TRY(zt_check_dtype(op, "theta", dtype));
    ZT_TRY(check_finite(op, "lr", u->lr));
    ZT_TRY(check_finite(op, "weight_decay", u->weight_decay));
    size_t state_rows = 0;
    switch (u->rule) {
    case ZT_UPDATE_SGD:
    case ZT_UPDATE_SIGN:
        break;
    case ZT_UPDATE_MOMENTUM:
        ZT_TRY(check_beta(op, "momentum beta1", u->beta1));
        state_rows = 1;
        break;
    case ZT_UPDATE_ADAMM:
        ZT_TRY(check_beta(op, "adamm beta1", u->beta1));
        ZT_TRY(check_beta(op, "adamm beta2", u->beta2));
        /* eps = 0 divides 0 by 0 wherever g has always been 0 (docs/spec.md §7.4). */
        if (!(u->eps > 0.0f) || !isfinite(u->eps))
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: adamm eps %g must be finite and > 0", op,
                           (double)u->eps);
        state_rows = 3;
        break;
    default:
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: unknown update rule %d", op, (int)u->rule);
    }
    if (state_rows == 0) return ZT_OK;
    if (state == NULL)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: rule %d needs a (%zu, %zu) f32 state, got NULL", op,
                       (int)u->rule, state_rows, n_elems);
    if (n_elems > SIZE_MAX / (state_rows * sizeof(float)))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: state of (%zu, %zu) floats overflows", op,
                       state_rows, n_elems);
    return zt_check_disjoint(op, "state", state, state_rows * n_elems * sizeof(float), "theta",
                             theta, n_elems * zt_dtype_size(dtype));
}

zt_status zt_check_update_variants_args(const char *op, void *theta, zt_dtype dtype, size_t n_elems,
                                        const float *state, const zt_update *u, void *const *dst,
                                        zt_dtype dst_dtype, const zt_perturbation *p,
                                        int n_variants) {
    ZT_TRY(zt_check_ptr(op, "update", u));
    const zt_weight updated = {theta, dtype};
    ZT_TRY(zt_check_variant_args(op, dst, dst_dtype, updated, n_elems, p, n_variants));
    ZT_TRY(zt_check_perturbation(op, &u->grad));
    if (n_elems == 0) return ZT_OK;
    ZT_TRY(zt_check_update_args(op, theta, dtype, n_elems, state, u));
    if (u->rule != ZT_UPDATE_MOMENTUM && u->rule != ZT_UPDATE_ADAMM) return ZT_OK;
    const size_t state_bytes = (u->rule == ZT_UPDATE_ADAMM ? 3 : 1) * n_elems * sizeof(float);
    for (int k = 0; k < n_variants; k++)
        ZT_TRY(zt_check_disjoint(op, "dst", dst[k], n_elems * zt_dtype_size(dst_dtype), "state",
                                 state, state_bytes));
    return ZT_OK;
}

zt_status zt_check_perturbation(const char *op, const zt_perturbation *p) {
    ZT_TRY(zt_check_ptr(op, "perturbation", p));
    if (p->dist != ZT_DIST_GAUSSIAN && p->dist != ZT_DIST_RADEMACHER)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: unknown distribution %d", op, (int)p->dist);
    if (p->n_terms < 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: n_terms %d must be >= 0", op, p->n_terms);
    if (p->n_terms == 0) return ZT_OK;
    ZT_TRY(zt_check_ptr(op, "perturbation terms", p->terms));
    if (!isfinite(p->z_scale))
        return zt_fail(ZT_ERR_NUMERIC, "%s: z_scale %g is not finite", op, (double)p->z_scale);
    for (int i = 0; i < p->n_terms; i++)
        if (!isfinite(p->terms[i].coeff))
            return zt_fail(ZT_ERR_NUMERIC, "%s: term %d (seed %llu) has coefficient %g", op, i,
                           (unsigned long long)p->terms[i].seed, (double)p->terms[i].coeff);
    return ZT_OK;
}

zt_status zt_check_variant_args(const char *op, void *const *dst, zt_dtype dst_dtype, zt_weight src,
                                size_t n_elems, const zt_perturbation *p, int n_variants) {
    if (n_variants < 1 || n_variants > ZT_MAX_PERTURB_VARIANTS)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: %d variants, 1..%d allowed", op, n_variants,
                       ZT_MAX_PERTURB_VARIANTS);
    ZT_TRY(zt_check_ptr(op, "dst", dst));
    ZT_TRY(zt_check_ptr(op, "p", p));
    for (int k = 0; k < n_variants; k++)
        ZT_TRY(zt_check_perturbation(op, &p[k]));
    if (n_elems == 0) return ZT_OK;
    ZT_TRY(zt_check_dtype(op, "dst", dst_dtype));
    ZT_TRY(zt_check_weight(op, "src", src, 1));
    const size_t dst_bytes = n_elems * zt_dtype_size(dst_dtype);
    for (int k = 0; k < n_variants; k++) {
        ZT_TRY(zt_check_ptr(op, "a dst", dst[k]));
        ZT_TRY(zt_check_disjoint(op, "a dst", dst[k], dst_bytes, "src", src.data,
                                 n_elems * zt_dtype_size(src.dtype)));
        for (int other = 0; other < k; other++)
            ZT_TRY(zt_check_disjoint(op, "a dst", dst[k], dst_bytes, "another dst", dst[other],
                                     dst_bytes));
    }
    return ZT_OK;
}

zt_status zt_check_gather_args(const char *op, const float *out, const int32_t *rows,
                               zt_weight table, int n_rows, int n_table_rows, int n_cols,
                               const zt_gather_perturbation *perturb) {
    ZT_TRY(zt_check_dim(op, "n_rows", n_rows));
    ZT_TRY(zt_check_dim(op, "n_table_rows", n_table_rows));
    ZT_TRY(zt_check_dim(op, "n_cols", n_cols));
    ZT_TRY(zt_check_ptr(op, "out", out));
    ZT_TRY(zt_check_ptr(op, "rows", rows));
    ZT_TRY(zt_check_weight(op, "table", table, 1));
    if (perturb == NULL) return ZT_OK;
    zt_weight stage = {table.data, perturb->stage_dtype};
    ZT_TRY(zt_check_weight(op, "stage dtype", stage, 1));
    return zt_check_perturbation(op, perturb->p);
}

zt_status zt_check_layernorm_args(const char *op, const float *out, const float *in,
                                  zt_weight gamma, zt_weight beta, int n_rows, int n_cols,
                                  float eps) {
    ZT_TRY(zt_check_dim(op, "n_rows", n_rows));
    ZT_TRY(zt_check_dim(op, "n_cols", n_cols));
    ZT_TRY(zt_check_ptr(op, "out", out));
    ZT_TRY(zt_check_ptr(op, "in", in));
    ZT_TRY(zt_check_weight(op, "gamma", gamma, 0));
    ZT_TRY(zt_check_weight(op, "beta", beta, 0));
    if (!(eps >= 0.0f)) return zt_fail(ZT_ERR_INVALID_ARG, "%s: eps %g must be >= 0", op, eps);
    return ZT_OK;
}

/* What every linear checks: dimensions, pointers, the weight and the optional bias. */
static zt_status check_linear_operands(const char *op, const float *out, const void *in,
                                       zt_weight w, zt_weight bias, int n_rows, int in_features,
                                       int out_features) {
    ZT_TRY(zt_check_dim(op, "n_rows", n_rows));
    ZT_TRY(zt_check_dim(op, "in_features", in_features));
    ZT_TRY(zt_check_dim(op, "out_features", out_features));
    ZT_TRY(zt_check_ptr(op, "out", out));
    ZT_TRY(zt_check_ptr(op, "in", in));
    ZT_TRY(zt_check_weight(op, "weight", w, 1));
    ZT_TRY(zt_check_weight(op, "bias", bias, 0));
    return ZT_OK;
}

zt_status zt_check_linear_args(const char *op, const float *out, const float *in, zt_weight w,
                               zt_weight bias, int n_rows, int in_features, int out_features) {
    ZT_TRY(check_linear_operands(op, out, in, w, bias, n_rows, in_features, out_features));
    return zt_check_disjoint(op, "out", out, (size_t)n_rows * (size_t)out_features * sizeof(float),
                             "in", in, (size_t)n_rows * (size_t)in_features * sizeof(float));
}

static zt_status check_half_dtype(const char *op, const char *what, zt_dtype dtype) {
    if (dtype == ZT_F16 || dtype == ZT_BF16) return ZT_OK;
    return zt_fail(ZT_ERR_INVALID_ARG, "%s: %s dtype %d is not f16 or bf16", op, what, (int)dtype);
}

zt_status zt_check_round_half_args(const char *op, const void *dst, zt_dtype dtype,
                                   const float *src, size_t n_elems) {
    ZT_TRY(zt_check_ptr(op, "dst", dst));
    ZT_TRY(zt_check_ptr(op, "src", src));
    ZT_TRY(check_half_dtype(op, "dst", dtype));
    return zt_check_disjoint(op, "dst", dst, n_elems * 2, "src", src, n_elems * sizeof(float));
}

zt_status zt_check_layernorm_half_args(const char *op, const void *out, zt_dtype out_dtype,
                                       const float *in, zt_weight gamma, zt_weight beta, int n_rows,
                                       int n_cols, float eps) {
    ZT_TRY(zt_check_layernorm_args(op, (const float *)out, in, gamma, beta, n_rows, n_cols, eps));
    ZT_TRY(check_half_dtype(op, "out", out_dtype));
    const size_t n_elems = (size_t)n_rows * (size_t)n_cols;
    return zt_check_disjoint(op, "out", out, n_elems * 2, "in", in, n_elems * sizeof(float));
}

zt_status zt_check_linear_half_in_args(const char *op, zt_gemm_precision gemm, const float *out,
                                       const void *in, zt_weight w, zt_weight bias, int n_rows,
                                       int in_features, int out_features) {
    ZT_TRY(check_linear_operands(op, out, in, w, bias, n_rows, in_features, out_features));
    if (gemm != ZT_GEMM_HALF)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: a half input needs --gemm half, not %s", op,
                       zt_gemm_precision_name(gemm));
    ZT_TRY(check_half_dtype(op, "weight", w.dtype));
    return zt_check_disjoint(op, "out", out, (size_t)n_rows * (size_t)out_features * sizeof(float),
                             "in", in, (size_t)n_rows * (size_t)in_features * 2);
}

zt_status zt_check_linear_batched_args(const char *op, zt_gemm_precision gemm, const float *out,
                                       size_t out_stride, const void *in, zt_dtype in_dtype,
                                       zt_weight w, size_t w_stride, zt_weight bias,
                                       size_t bias_stride, int count, int n_rows, int in_features,
                                       int out_features) {
    ZT_TRY(zt_check_dim(op, "count", count));
    if (in_dtype == ZT_F32)
        ZT_TRY(zt_check_linear_args(op, out, in, w, bias, n_rows, in_features, out_features));
    else if (in_dtype != w.dtype)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: input dtype %s is neither f32 nor the weight's %s",
                       op, zt_dtype_name(in_dtype), zt_dtype_name(w.dtype));
    else
        ZT_TRY(zt_check_linear_half_in_args(op, gemm, out, in, w, bias, n_rows, in_features,
                                            out_features));
    const size_t out_elems = (size_t)n_rows * (size_t)out_features;
    const size_t w_elems = (size_t)out_features * (size_t)in_features;
    if (count > 1 && (out_stride < out_elems || w_stride < w_elems ||
                      (bias.data && bias_stride < (size_t)out_features)))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "%s: strides out %zu, weight %zu, bias %zu overlap the members (%zu, %zu, "
                       "%d elements)",
                       op, out_stride, w_stride, bias_stride, out_elems, w_elems, out_features);
    const size_t in_bytes = (size_t)n_rows * (size_t)in_features * zt_dtype_size(in_dtype);
    return zt_check_disjoint(op, "out", out,
                             ((size_t)(count - 1) * out_stride + out_elems) * sizeof(float), "in",
                             in, in_bytes);
}

zt_status zt_check_linear_half_out_args(const char *op, zt_gemm_precision gemm, const void *out,
                                        const void *in, zt_weight w, zt_weight bias, int n_rows,
                                        int in_features, int out_features) {
    ZT_TRY(check_linear_operands(op, (const float *)out, in, w, bias, n_rows, in_features,
                                 out_features));
    if (gemm != ZT_GEMM_HALF)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: a half input needs --gemm half, not %s", op,
                       zt_gemm_precision_name(gemm));
    ZT_TRY(check_half_dtype(op, "weight", w.dtype));
    if (bias.data && bias.dtype != w.dtype)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: bias dtype %s differs from the weight's %s", op,
                       zt_dtype_name(bias.dtype), zt_dtype_name(w.dtype));
    return zt_check_disjoint(op, "out", out, (size_t)n_rows * (size_t)out_features * 2, "in", in,
                             (size_t)n_rows * (size_t)in_features * 2);
}

zt_status zt_check_attention_args(const char *op, const float *out, const float *q, const float *k,
                                  const float *v, const int32_t *key_mask, int batch, int seq_len,
                                  int n_heads, int head_dim, float q_scale) {
    ZT_TRY(zt_check_dim(op, "batch", batch));
    ZT_TRY(zt_check_dim(op, "seq_len", seq_len));
    ZT_TRY(zt_check_dim(op, "n_heads", n_heads));
    ZT_TRY(zt_check_dim(op, "head_dim", head_dim));
    ZT_TRY(zt_check_ptr(op, "out", out));
    ZT_TRY(zt_check_ptr(op, "q", q));
    ZT_TRY(zt_check_ptr(op, "k", k));
    ZT_TRY(zt_check_ptr(op, "v", v));
    ZT_TRY(zt_check_ptr(op, "key_mask", key_mask));
    if (!isfinite(q_scale))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: q_scale %g is not finite", op, q_scale);
    const size_t tensor_bytes =
        (size_t)batch * (size_t)seq_len * (size_t)n_heads * (size_t)head_dim * sizeof(float);
    ZT_TRY(zt_check_disjoint(op, "out", out, tensor_bytes, "q", q, tensor_bytes));
    ZT_TRY(zt_check_disjoint(op, "out", out, tensor_bytes, "k", k, tensor_bytes));
    return zt_check_disjoint(op, "out", out, tensor_bytes, "v", v, tensor_bytes);
}

zt_status zt_check_attention_cached_args(const char *op, const float *out, const float *q,
                                         const float *k, const float *v, const float *k_cache,
                                         const float *v_cache, const int32_t *key_mask, int batch,
                                         int n_new, int capacity, int start, int n_heads,
                                         int head_dim, float q_scale) {
    ZT_TRY(zt_check_dim(op, "batch", batch));
    ZT_TRY(zt_check_dim(op, "n_new", n_new));
    ZT_TRY(zt_check_dim(op, "capacity", capacity));
    ZT_TRY(zt_check_dim(op, "n_heads", n_heads));
    ZT_TRY(zt_check_dim(op, "head_dim", head_dim));
    if (start < 0 || start > capacity - n_new)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "%s: start %d + n_new %d does not fit the cache's capacity %d", op, start,
                       n_new, capacity);
    ZT_TRY(zt_check_ptr(op, "out", out));
    ZT_TRY(zt_check_ptr(op, "q", q));
    ZT_TRY(zt_check_ptr(op, "k", k));
    ZT_TRY(zt_check_ptr(op, "v", v));
    ZT_TRY(zt_check_ptr(op, "k_cache", k_cache));
    ZT_TRY(zt_check_ptr(op, "v_cache", v_cache));
    ZT_TRY(zt_check_ptr(op, "key_mask", key_mask));
    if (!isfinite(q_scale))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: q_scale %g is not finite", op, q_scale);
    const size_t row = (size_t)n_heads * (size_t)head_dim * sizeof(float);
    const size_t new_bytes = (size_t)batch * (size_t)n_new * row;
    const size_t cache_bytes = (size_t)batch * (size_t)capacity * row;
    /* what the op writes (out, k_cache, v_cache) against everything else it touches */
    const struct {
        const char *name;
        const void *ptr;
        size_t bytes;
    } written[] = {{"out", out, new_bytes},
                   {"k_cache", k_cache, cache_bytes},
                   {"v_cache", v_cache, cache_bytes}},
      read[] = {{"q", q, new_bytes},
                {"k", k, new_bytes},
                {"v", v, new_bytes},
                {"key_mask", key_mask, (size_t)batch * (size_t)capacity * sizeof(int32_t)}};
    for (int w = 0; w < 3; w++) {
        for (int o = w + 1; o < 3; o++)
            ZT_TRY(zt_check_disjoint(op, written[w].name, written[w].ptr, written[w].bytes,
                                     written[o].name, written[o].ptr, written[o].bytes));
        for (int r = 0; r < 4; r++)
            ZT_TRY(zt_check_disjoint(op, written[w].name, written[w].ptr, written[w].bytes,
                                     read[r].name, read[r].ptr, read[r].bytes));
    }
    return ZT_OK;
}

zt_status zt_check_logprob_args(const char *op, const float *logprob, const float *logits,
                                const int32_t *targets, int n_rows, int vocab) {
    ZT_TRY(zt_check_dim(op, "n_rows", n_rows));
    ZT_TRY(zt_check_dim(op, "vocab", vocab));
    ZT_TRY(zt_check_ptr(op, "logprob", logprob));
    ZT_TRY(zt_check_ptr(op, "logits", logits));
    return zt_check_ptr(op, "targets", targets);
}

zt_status zt_check_fo_update_args(const char *op, const void *theta, zt_dtype dtype, size_t n_elems,
                                  const float *grad, const float *state, const zt_fo_update *u) {
    ZT_TRY(zt_check_ptr(op, "update", u));
    ZT_TRY(zt_check_ptr(op, "theta", theta));
    ZT_TRY(zt_check_ptr(op, "grad", grad));
    ZT_TRY(zt_check_dtype(op, "theta", dtype));
    ZT_TRY(check_finite(op, "lr", u->lr));
    ZT_TRY(check_finite(op, "weight_decay", u->weight_decay));
    ZT_TRY(check_finite(op, "grad_scale", u->grad_scale));
    switch (u->rule) {
    case ZT_FO_SGD:
        ZT_TRY(check_beta(op, "momentum", u->momentum));
        if (u->nesterov && !(u->momentum > 0.0f))
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: Nesterov needs momentum > 0", op);
        break;
    case ZT_FO_SIGN:
        break;
    case ZT_FO_ADAM:
    case ZT_FO_ADAMM:
        if (u->rule == ZT_FO_ADAM &&
            !(u->bias1 > 0.0f && u->bias1 <= 1.0f && u->bias2 > 0.0f && u->bias2 <= 1.0f))
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: adam bias corrections %g, %g not in (0, 1]", op,
                           (double)u->bias1, (double)u->bias2);
        ZT_TRY(check_beta(op, "beta1", u->beta1));
        ZT_TRY(check_beta(op, "beta2", u->beta2));
        if (!(u->eps > 0.0f) || !isfinite(u->eps))
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: eps %g must be finite and > 0", op,
                           (double)u->eps);
        break;
    default:
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: unknown first-order rule %d", op, (int)u->rule);
    }
    const size_t theta_bytes = n_elems * zt_dtype_size(dtype);
    ZT_TRY(
        zt_check_disjoint(op, "grad", grad, n_elems * sizeof(float), "theta", theta, theta_bytes));
    const size_t rows = (size_t)zt_fo_state_rows(u);
    if (rows == 0) return ZT_OK;
    if (state == NULL)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: rule %d needs a (%zu, %zu) f32 state, got NULL", op,
                       (int)u->rule, rows, n_elems);
    ZT_TRY(zt_check_disjoint(op, "state", state, rows * n_elems * sizeof(float), "theta", theta,
                             theta_bytes));
    return zt_check_disjoint(op, "state", state, rows * n_elems * sizeof(float), "grad", grad,
                             n_elems * sizeof(float));
}

// ---- the backward ops (the CPU's kernels/cpu/*_backward.c and CUDA's kernels/cuda/*_backward.cu
// share these, so both refuse a call with the same words) ----

zt_status zt_check_gather_backward_args(const char *op, const float *d_table, const float *d_out,
                                        const int32_t *rows, int n_rows, int n_table_rows,
                                        int n_cols) {
    ZT_TRY(zt_check_dim(op, "n_rows", n_rows));
    ZT_TRY(zt_check_dim(op, "n_table_rows", n_table_rows));
    ZT_TRY(zt_check_dim(op, "n_cols", n_cols));
    ZT_TRY(zt_check_ptr(op, "d_table", d_table));
    ZT_TRY(zt_check_ptr(op, "d_out", d_out));
    ZT_TRY(zt_check_ptr(op, "rows", rows));
    const size_t n_cols_z = (size_t)n_cols;
    return zt_check_disjoint(op, "d_table", d_table,
                             (size_t)n_table_rows * n_cols_z * sizeof(float), "d_out", d_out,
                             (size_t)n_rows * n_cols_z * sizeof(float));
}

/* Fails unless a and b are the same buffer or do not overlap: an element-wise in-place update
 * is safe, a shifted overlap is not. */
static zt_status check_same_or_disjoint(const char *op, const char *a_name, const float *a,
                                        const char *b_name, const float *b, size_t n_floats) {
    if (a == b) return ZT_OK;
    return zt_check_disjoint(op, a_name, a, n_floats * sizeof(float), b_name, b,
                             n_floats * sizeof(float));
}

zt_status zt_check_layernorm_backward_args(const char *op, const float *d_in, const float *d_gamma,
                                           const float *d_beta, const float *d_out, const float *in,
                                           zt_weight gamma, int n_rows, int n_cols, float eps) {
    ZT_TRY(zt_check_dim(op, "n_rows", n_rows));
    ZT_TRY(zt_check_dim(op, "n_cols", n_cols));
    ZT_TRY(zt_check_ptr(op, "d_in", d_in));
    ZT_TRY(zt_check_ptr(op, "d_out", d_out));
    ZT_TRY(zt_check_ptr(op, "in", in));
    ZT_TRY(zt_check_weight(op, "gamma", gamma, 0));
    if (!(eps >= 0.0f)) return zt_fail(ZT_ERR_INVALID_ARG, "%s: eps %g must be >= 0", op, eps);
    const size_t n_elems = (size_t)n_rows * (size_t)n_cols;
    const size_t row_bytes = (size_t)n_cols * sizeof(float);
    ZT_TRY(check_same_or_disjoint(op, "d_in", d_in, "d_out", d_out, n_elems));
    ZT_TRY(zt_check_disjoint(op, "d_in", d_in, n_elems * sizeof(float), "in", in,
                             n_elems * sizeof(float)));
    const float *params[2] = {d_gamma, d_beta};
    const char *param_names[2] = {"d_gamma", "d_beta"};
    for (int i = 0; i < 2; i++) {
        if (params[i] == NULL) continue;
        ZT_TRY(zt_check_disjoint(op, param_names[i], params[i], row_bytes, "d_in", d_in,
                                 n_elems * sizeof(float)));
        ZT_TRY(zt_check_disjoint(op, param_names[i], params[i], row_bytes, "d_out", d_out,
                                 n_elems * sizeof(float)));
    }
    if (d_gamma && d_beta)
        ZT_TRY(zt_check_disjoint(op, "d_gamma", d_gamma, row_bytes, "d_beta", d_beta, row_bytes));
    return ZT_OK;
}

typedef struct buffer_extent {
    const char *name;
    const void *data; /* NULL: not passed, nothing to check */
    size_t n_bytes;
    int written;
} buffer_extent;

zt_status zt_check_linear_backward_args(const char *op, const float *d_in, const float *d_w,
                                        const float *d_bias, const float *d_out, const float *in,
                                        const float *out, zt_weight w, int n_rows, int in_features,
                                        int out_features, int relu) {
    ZT_TRY(zt_check_dim(op, "n_rows", n_rows));
    ZT_TRY(zt_check_dim(op, "in_features", in_features));
    ZT_TRY(zt_check_dim(op, "out_features", out_features));
    ZT_TRY(zt_check_ptr(op, "d_out", d_out));
    /* Each input is needed only by the gradient that reads it. */
    if (relu) ZT_TRY(zt_check_ptr(op, "out", out));
    if (d_w) ZT_TRY(zt_check_ptr(op, "in", in));
    ZT_TRY(zt_check_weight(op, "weight", w, d_in != NULL));

    /* No buffer the op writes may overlap another it touches: the GEMMs read d_pre, in and W
     * while they write. */
    const size_t n = (size_t)n_rows, ic = (size_t)in_features, oc = (size_t)out_features;
    const buffer_extent buffers[] = {
        {"d_in", d_in, n * ic * sizeof(float), 1},
        {"d_w", d_w, oc * ic * sizeof(float), 1},
        {"d_bias", d_bias, oc * sizeof(float), 1},
        {"d_out", d_out, n * oc * sizeof(float), relu},
        {"in", d_w ? in : NULL, n * ic * sizeof(float), 0},
        {"out", relu ? out : NULL, n * oc * sizeof(float), 0},
        {"weight", d_in ? w.data : NULL, oc * ic * zt_dtype_size(w.dtype), 0},
    };
    const int n_buffers = (int)(sizeof buffers / sizeof buffers[0]);
    for (int i = 0; i < n_buffers; i++) {
        for (int j = i + 1; j < n_buffers; j++) {
            const buffer_extent *a = &buffers[i], *b = &buffers[j];
            if (!a->data || !b->data || !(a->written || b->written)) continue;
            ZT_TRY(
                zt_check_disjoint(op, a->name, a->data, a->n_bytes, b->name, b->data, b->n_bytes));
        }
    }
    return ZT_OK;
}

zt_status zt_check_attention_backward_args(const char *op, const float *d_q, const float *d_k,
                                           const float *d_v, const float *d_out, const float *q,
                                           const float *k, const float *v, const float *out,
                                           const int32_t *key_mask, int batch, int seq_len,
                                           int n_heads, int head_dim, float q_scale) {
    /* The forward's own checks cover the dims, q_scale and the inputs it shares with this op. */
    ZT_TRY(zt_check_attention_args(op, out, q, k, v, key_mask, batch, seq_len, n_heads, head_dim,
                                   q_scale));
    ZT_TRY(zt_check_ptr(op, "d_q", d_q));
    ZT_TRY(zt_check_ptr(op, "d_k", d_k));
    ZT_TRY(zt_check_ptr(op, "d_v", d_v));
    ZT_TRY(zt_check_ptr(op, "d_out", d_out));
    const size_t n_cols = (size_t)n_heads * (size_t)head_dim;
    const size_t tensor_bytes = (size_t)batch * (size_t)seq_len * n_cols * sizeof(float);
    const size_t mask_bytes = (size_t)batch * (size_t)seq_len * sizeof(int32_t);
    /* A gradient sharing memory with anything else would be read after being written. */
    const struct {
        const char *name;
        const void *ptr;
        size_t bytes;
    } written[] = {{"d_q", d_q, tensor_bytes},
                   {"d_k", d_k, tensor_bytes},
                   {"d_v", d_v, tensor_bytes}},
      read[] = {{"d_out", d_out, tensor_bytes}, {"q", q, tensor_bytes},
                {"k", k, tensor_bytes},         {"v", v, tensor_bytes},
                {"out", out, tensor_bytes},     {"key_mask", key_mask, mask_bytes}};
    const int n_written = (int)(sizeof written / sizeof written[0]);
    const int n_read = (int)(sizeof read / sizeof read[0]);
    for (int w = 0; w < n_written; w++) {
        for (int other = w + 1; other < n_written; other++)
            ZT_TRY(zt_check_disjoint(op, written[w].name, written[w].ptr, written[w].bytes,
                                     written[other].name, written[other].ptr,
                                     written[other].bytes));
        for (int r = 0; r < n_read; r++)
            ZT_TRY(zt_check_disjoint(op, written[w].name, written[w].ptr, written[w].bytes,
                                     read[r].name, read[r].ptr, read[r].bytes));
    }
    return ZT_OK;
}

zt_status zt_check_logprob_backward_args(const char *op, const float *d_logits, const float *logits,
                                         const int32_t *targets, const float *d_logprob, int n_rows,
                                         int vocab) {
    ZT_TRY(zt_check_dim(op, "n_rows", n_rows));
    ZT_TRY(zt_check_dim(op, "vocab", vocab));
    ZT_TRY(zt_check_ptr(op, "d_logits", d_logits));
    ZT_TRY(zt_check_ptr(op, "logits", logits));
    ZT_TRY(zt_check_ptr(op, "targets", targets));
    ZT_TRY(zt_check_ptr(op, "d_logprob", d_logprob));
    const size_t logits_bytes = (size_t)n_rows * (size_t)vocab * sizeof(float);
    /* In place is the common case (the head's logits chunk is reused); a shifted overlap would
     * overwrite logits that a later row still reads. */
    if (d_logits != logits)
        ZT_TRY(zt_check_disjoint(op, "d_logits", d_logits, logits_bytes, "logits", logits,
                                 logits_bytes));
    ZT_TRY(zt_check_disjoint(op, "d_logits", d_logits, logits_bytes, "targets", targets,
                             (size_t)n_rows * sizeof(int32_t)));
    return zt_check_disjoint(op, "d_logits", d_logits, logits_bytes, "d_logprob", d_logprob,
                             (size_t)n_rows * sizeof(float));
}
