/* zt_model_grad (models/backprop.h) on the CPU backend against transformers' autograd: the
 * gradient of HF's LM loss (mean next-token NLL over the labels that are not -100) on the
 * fixtures' "lm" batch, for every parameter, written by tools/make_grad_fixtures.py into each
 * fixture's grads.safetensors: pre-LN (opt-pre), post-LN with project_in / project_out
 * (opt-post), and f16 / bf16 storage computed in f32 (opt-pre-f16, opt-pre-bf16). Also: the loss
 * is HF's and is the one the forward gives to the bit; gradients accumulate; the result is the
 * same on 1 and 3 threads, byte for byte, and with activation checkpointing; a backend without
 * backward ops is refused by name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backprop.h"
#include "core/status.h"
#include "fixture.h"
#include "model.h"
#include "zt_test.h"

/* Relative L2 error allowed per tensor (issue 12: 1e-5). */
static const double GRAD_TOLERANCE = 1e-5;

typedef struct lm_batch {
    zt_batch batch;
    int32_t *ids, *mask, *rows, *targets;
    float *weights;
} lm_batch;

/* The "lm" batch as HF's loss reads it: row b*T + t predicts labels[b][t + 1]. */
static void load_lm_batch(const char *fixture, lm_batch *out) {
    char path[512];
    fixture_path(path, sizeof path, fixture, "reference.safetensors");
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &ref));
    int64_t shape[2] = {0, 0};
    out->ids = fixture_array(ref, "lm_input_ids", "I32", NULL, shape);
    out->mask = fixture_array(ref, "lm_attention_mask", "I32", NULL, NULL);
    int32_t *labels = fixture_array(ref, "lm_labels", "I32", NULL, NULL);
    zt_st_close(ref);
    const int b_count = (int)shape[0], t_count = (int)shape[1];
    out->rows = malloc((size_t)b_count * t_count * sizeof(int32_t));
    out->targets = malloc((size_t)b_count * t_count * sizeof(int32_t));
    int r = 0;
    for (int b = 0; b < b_count; b++)
        for (int t = 0; t + 1 < t_count; t++)
            if (labels[b * t_count + t + 1] != -100) {
                out->rows[r] = b * t_count + t;
                out->targets[r++] = labels[b * t_count + t + 1];
            }
    free(labels);
    out->weights = malloc((size_t)r * sizeof(float));
    for (int i = 0; i < r; i++)
        out->weights[i] = 1.0f / (float)r;
    out->batch = (zt_batch){b_count, t_count, out->ids, out->mask, r, out->rows, out->targets};
}

static void free_lm_batch(lm_batch *b) {
    free(b->ids);
    free(b->mask);
    free(b->rows);
    free(b->targets);
    free(b->weights);
}

/* The gradient block of the fixture's model on `threads` threads, and the loss. */
static float *model_grad(const char *fixture, int threads, const lm_batch *lb, int passes,
                         int checkpoint, double *loss, zt_model **model_out) {
    char dir[512];
    fixture_path(dir, sizeof dir, fixture, NULL);
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", threads, &be));
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    size_t *offsets = malloc((size_t)m->n_tensors * sizeof *offsets);
    const size_t total = zt_model_grad_layout(m, offsets);
    free(offsets);
    ZT_CHECK(total == zt_model_parameter_count(m), "%s: gradient block %zu, parameters %zu",
             fixture, total, zt_model_parameter_count(m));
    float *grads = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, total * sizeof(float), ZT_MEM_SCRATCH, (void **)&grads));
    ZT_REQUIRE_OK(zt_backend_zero(be, grads, total));
    zt_grad_buffers *gb = NULL;
    ZT_REQUIRE_OK(zt_grad_buffers_create(m, lb->batch.batch, lb->batch.seq_len, checkpoint, &gb));
    for (int i = 0; i < passes; i++)
        ZT_REQUIRE_OK(zt_model_grad(m, gb, &lb->batch, lb->weights, grads, loss));
    float *host = malloc(total * sizeof(float));
    ZT_REQUIRE_OK(be->ops->download(be, host, grads, total * sizeof(float)));
    zt_grad_buffers_free(gb);
    be->ops->free(be, grads, total * sizeof(float), ZT_MEM_SCRATCH);
    if (model_out) {
        *model_out = m;
    } else {
        zt_model_free(m);
        zt_backend_destroy(be);
    }
    return host;
}

static void check_against_hf(const char *fixture) {
    lm_batch lb;
    load_lm_batch(fixture, &lb);
    double loss = 0.0;
    zt_model *m = NULL;
    float *got = model_grad(fixture, 2, &lb, 1, 0, &loss, &m);
    /* Checkpointing runs each layer's forward again with the same ops on the same input: the
     * same gradient, bit for bit, and the same loss. */
    double loss_checkpointed = 0.0;
    float *checkpointed = model_grad(fixture, 2, &lb, 1, 1, &loss_checkpointed, NULL);
    ZT_CHECK(memcmp(got, checkpointed, zt_model_parameter_count(m) * sizeof(float)) == 0 &&
                 loss == loss_checkpointed,
             "%s: --checkpoint-activations changes the gradient", fixture);
    free(checkpointed);

    char path[512];
    fixture_path(path, sizeof path, fixture, "grads.safetensors");
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &ref));
    const char *hf_loss = zt_st_metadata(ref, "loss");
    ZT_REQUIRE(hf_loss != NULL, "%s: grads.safetensors has no loss", fixture);
    ZT_CHECK_CLOSE(loss, atof(hf_loss), 0.0, 1e-6, "%s: loss", fixture);

    /* The forward's log-probabilities give the same loss, summed the same way, to the bit. */
    zt_workspace *ws = NULL;
    const zt_workspace_shape shape = {lb.batch.batch, lb.batch.seq_len, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    float *logprobs = malloc((size_t)lb.batch.n_targets * sizeof(float));
    ZT_REQUIRE_OK(zt_model_forward(m, ws, &lb.batch, NULL, logprobs, NULL));
    double forward_loss = 0.0;
    for (int r = 0; r < lb.batch.n_targets; r++)
        forward_loss -= (double)lb.weights[r] * (double)logprobs[r];
    ZT_CHECK(forward_loss == loss, "%s: backprop's loss %.17g, the forward's %.17g", fixture, loss,
             forward_loss);
    free(logprobs);
    zt_workspace_free(ws);

    size_t *offsets = malloc((size_t)m->n_tensors * sizeof *offsets);
    zt_model_grad_layout(m, offsets);
    double worst = 0.0;
    const char *worst_name = "";
    for (int id = 0; id < m->n_tensors; id++) {
        const zt_tensor_info *t = &m->tensors[id];
        const zt_st_tensor *g = zt_st_find(ref, t->name);
        ZT_REQUIRE(g && strcmp(g->dtype, "F32") == 0 && g->n_elems == t->n_elems,
                   "%s: HF gradient for %s missing or misshapen", fixture, t->name);
        double diff = 0.0, norm = 0.0;
        for (size_t j = 0; j < t->n_elems; j++) {
            float want;
            memcpy(&want, g->data + 4 * j, 4);
            const double d = (double)got[offsets[id] + j] - (double)want;
            diff += d * d;
            norm += (double)want * want;
        }
        const size_t name_length = strlen(t->name);
        if (name_length > 11 && strcmp(t->name + name_length - 11, "k_proj.bias") == 0) {
            /* Exactly zero: k's bias adds q . b to every score of a query, which the softmax
             * removes. Both sides hold rounding noise, measured against the gradient of the same
             * layer's k_proj.weight. */
            char weight_name[ZT_TENSOR_NAME_MAX];
            snprintf(weight_name, sizeof weight_name, "%.*s.weight", (int)(name_length - 5),
                     t->name);
            const zt_st_tensor *gw = zt_st_find(ref, weight_name);
            ZT_REQUIRE(gw != NULL, "%s: no HF gradient for %s", fixture, weight_name);
            double scale = 0.0, mine = 0.0;
            for (size_t j = 0; j < gw->n_elems; j++) {
                float v;
                memcpy(&v, gw->data + 4 * j, 4);
                scale += (double)v * v;
            }
            for (size_t j = 0; j < t->n_elems; j++)
                mine += (double)got[offsets[id] + j] * got[offsets[id] + j];
            ZT_CHECK(sqrt(mine) <= GRAD_TOLERANCE * sqrt(scale) &&
                         sqrt(norm) <= GRAD_TOLERANCE * sqrt(scale),
                     "%s: %s should vanish: ours %.3g, HF's %.3g, k_proj.weight's %.3g", fixture,
                     t->name, sqrt(mine), sqrt(norm), sqrt(scale));
            continue;
        }
        ZT_CHECK(norm > 0.0, "%s: HF's gradient of %s is zero", fixture, t->name);
        const double relative = sqrt(diff / norm);
        ZT_CHECK(relative <= GRAD_TOLERANCE, "%s: %s relative L2 error %.3g > %.0e", fixture,
                 t->name, relative, GRAD_TOLERANCE);
        if (relative > worst) {
            worst = relative;
            worst_name = t->name;
        }
    }
    printf("%-13s loss %.9f (HF %s), worst relative L2 error %.2e (%s), %d tensors\n", fixture,
           loss, hf_loss, worst, worst_name, m->n_tensors);
    free(offsets);
    zt_st_close(ref);
    zt_backend *be = m->be;
    zt_model_free(m);
    zt_backend_destroy(be);
    free(got);
    free_lm_batch(&lb);
}

/* Two passes add up to twice one pass (within rounding: a GEMM that adds into its output adds
 * its partial sums one by one); 1 and 3 threads give the same bytes. */
static void check_accumulation_and_threads(void) {
    lm_batch lb;
    load_lm_batch("opt-post", &lb);
    double loss1 = 0.0, loss3 = 0.0, loss_twice = 0.0;
    float *one = model_grad("opt-post", 1, &lb, 1, 0, &loss1, NULL);
    float *three = model_grad("opt-post", 3, &lb, 1, 1, &loss3, NULL);
    float *twice = model_grad("opt-post", 1, &lb, 2, 0, &loss_twice, NULL);
    char dir[512];
    fixture_path(dir, sizeof dir, "opt-post", NULL);
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &be));
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    const size_t total = zt_model_parameter_count(m);
    ZT_CHECK(memcmp(one, three, total * sizeof(float)) == 0,
             "1 and 3 threads give different gradients");
    ZT_CHECK(loss1 == loss3 && loss1 == loss_twice, "losses %.17g %.17g %.17g", loss1, loss3,
             loss_twice);
    double diff = 0.0, norm = 0.0;
    for (size_t j = 0; j < total; j++) {
        const double d = (double)twice[j] - 2.0 * (double)one[j];
        diff += d * d;
        norm += 4.0 * (double)one[j] * one[j];
    }
    ZT_CHECK(norm > 0.0 && sqrt(diff / norm) <= 1e-6,
             "two passes are not twice one pass: relative L2 difference %.3g", sqrt(diff / norm));

    /* Refusals: a backend without the backward ops, a target outside the batch. */
    zt_backend_ops no_backward = *be->ops;
    no_backward.linear_backward = NULL;
    const zt_backend_ops *real = be->ops;
    be->ops = &no_backward;
    zt_grad_buffers *gb = NULL;
    ZT_CHECK(zt_grad_buffers_create(m, lb.batch.batch, lb.batch.seq_len, 0, &gb) ==
                 ZT_ERR_UNAVAILABLE,
             "a backend without backward ops is not refused");
    ZT_CHECK(strstr(zt_last_error(), "cpu backend") != NULL, "message '%s'", zt_last_error());
    be->ops = real;
    ZT_REQUIRE_OK(zt_grad_buffers_create(m, lb.batch.batch, lb.batch.seq_len, 0, &gb));
    zt_batch bad = lb.batch;
    int32_t bad_rows[1] = {lb.batch.batch * lb.batch.seq_len};
    bad.n_targets = 1;
    bad.target_rows = bad_rows;
    double loss = 0.0;
    ZT_CHECK(zt_model_grad(m, gb, &bad, lb.weights, NULL, &loss) == ZT_ERR_INVALID_ARG,
             "a target row outside the batch is not refused");
    ZT_CHECK(strstr(zt_last_error(), "row 48") != NULL, "message '%s'", zt_last_error());
    zt_grad_buffers_free(gb);
    zt_model_free(m);
    zt_backend_destroy(be);
    free(one);
    free(three);
    free(twice);
    free_lm_batch(&lb);
}

int main(void) {
    check_against_hf("opt-pre");
    check_against_hf("opt-post");
    check_against_hf("opt-pre-f16");
    check_against_hf("opt-pre-bf16");
    check_accumulation_and_threads();
    return zt_test_finish("test_grad_parity");
}
