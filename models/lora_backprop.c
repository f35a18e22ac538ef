/* LoRA's branch in a backward pass (models/lora.h): the forward with the sweep's ops in its
 * order, so backprop's loss is the forward's to the bit, and its gradient through the existing
 * linear_backward op. Family-generic: a family's grad hook calls these after each adapted
 * linear, as its layer code calls zt_sweep_lora. */
#include "core/status.h"
#include "lora.h"
#include "workspace.h"

zt_status zt_lora_forward(const zt_model *m, int weight, float *out, const float *in, int n_rows,
                          int in_features, int out_features, float *rank_rows, float *spare) {
    int a, b;
    if (!zt_lora_of(m, weight, &a, &b)) return ZT_OK;
    zt_backend *be = m->be;
    const int r = m->lora->options.rank;
    float *down = rank_rows, *scaled = rank_rows + (size_t)n_rows * (size_t)r;
    const zt_weight none = zt_model_weight(m, -1);
    ZT_TRY(be->ops->linear(be, down, in, zt_model_weight(m, a), none, n_rows, in_features, r, 0));
    ZT_TRY(be->ops->linear(be, scaled, down, zt_lora_scale_weight(m), none, n_rows, r, r, 0));
    ZT_TRY(be->ops->linear(be, spare, scaled, zt_model_weight(m, b), none, n_rows, r, out_features,
                           0));
    return be->ops->add(be, out, spare, (size_t)n_rows * (size_t)out_features);
}

zt_status zt_lora_backward(const zt_model *m, int weight, float *d_in, float *d_out,
                           const float *in, int n_rows, int in_features, int out_features,
                           float *rank_rows, float *spare, float *d_a, float *d_b) {
    int a, b;
    if (!zt_lora_of(m, weight, &a, &b)) return ZT_OK;
    zt_backend *be = m->be;
    const zt_backend_ops *op = be->ops;
    const int r = m->lora->options.rank, n = n_rows;
    float *down = rank_rows, *scaled = rank_rows + (size_t)n * (size_t)r;
    const zt_weight none = zt_model_weight(m, -1), scale = zt_lora_scale_weight(m);
    const zt_weight w_a = zt_model_weight(m, a), w_b = zt_model_weight(m, b);
    ZT_TRY(op->linear(be, down, in, w_a, none, n, in_features, r, 0));
    ZT_TRY(op->linear(be, scaled, down, scale, none, n, r, r, 0));
    /* d scaled into down, dB += d_out^T scaled; d down into scaled (the scale is diagonal) */
    ZT_TRY(
        op->linear_backward(be, down, d_b, NULL, d_out, scaled, NULL, w_b, n, r, out_features, 0));
    ZT_TRY(op->linear_backward(be, scaled, NULL, NULL, down, NULL, NULL, scale, n, r, r, 0));
    ZT_TRY(op->linear_backward(be, spare, d_a, NULL, scaled, in, NULL, w_a, n, in_features, r, 0));
    return op->add(be, d_in, spare, (size_t)n * (size_t)in_features);
}

size_t zt_lora_backward_scratch(const zt_model *m, int weight, int n_rows, int in_features,
                                int out_features) {
    int a, b;
    if (!zt_lora_of(m, weight, &a, &b)) return 0;
    const int r = m->lora->options.rank;
    const zt_dtype f32 = ZT_F32;
    const int shapes[3][2] = {{in_features, r}, {r, r}, {r, out_features}};
    size_t most = 0;
    for (int i = 0; i < 3; i++) {
        const zt_scratch_query q = {.op = ZT_SCRATCH_LINEAR_BACKWARD,
                                    .in_features = shapes[i][0],
                                    .out_features = shapes[i][1],
                                    .weight_dtype = f32,
                                    .bias_dtype = f32,
                                    .n_rows = n_rows};
        const size_t need = zt_plan_scratch(m, &q);
        if (need > most) most = need;
    }
    return most;
}
