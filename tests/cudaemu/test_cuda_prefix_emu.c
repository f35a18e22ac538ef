/* Prefix tuning (models/prefix.h) on the CUDA kernels run by the host executor: the fixture
 * prefixes (tests/fixtures/opt-pre-prefix) give HF's logits on every row, padded ones included,
 * and a ZO sweep of K = 3 variants with only the prefixes perturbed (+eps z, -eps z, read through
 * gather_rows' perturbation) gives the CPU backend's log-probabilities; backprop's prefix
 * gradients equal the CPU's and HF autograd's. The prefix adds no kernel: the extended sequences
 * go through gather_rows, the attention and its gradient through attention / attention_backward,
 * the prefix gradients through gather_rows_backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backprop.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "fixture.h"
#include "data/targets.h"
#include "prefix.h"
#include "zt_test.h"

enum { B = 3, T = 8, K = 3 };

typedef struct fixture_batch {
    int32_t *ids, *mask;
    float *logits; /* (B,T,V) HF's */
    int vocab, n;
    int32_t rows[B * T], targets[B * T];
} fixture_batch;

static zt_model *load(zt_backend *be) {
    char base[1024], adapter[1024];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(adapter, sizeof adapter, "opt-pre-prefix", NULL);
    zt_prefix_options o;
    zt_prefix_options_default(&o);
    ZT_REQUIRE_OK(zt_prefix_read_config(adapter, &o));
    o.adapter_dir = adapter;
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load_prefix(base, be, &o, &m));
    return m;
}

/* K variants' log-probabilities (K,R) and logits (K,R,V): variant 0 the weights, 1 and 2 the
 * prefixes at +eps z and -eps z. */
static void sweep(zt_backend *be, const fixture_batch *fb, float *logprobs, float *logits) {
    zt_model *m = load(be);
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {B, T, K, 1, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    uint8_t *perturbed = calloc((size_t)m->n_tensors, 1);
    zt_prefix_select(m, perturbed);
    static const zt_direction plus = {0x5EEDull, 1e-2f}, minus = {0x5EEDull, -1e-2f};
    const zt_perturbation p[K] = {{NULL, 0, ZT_DIST_GAUSSIAN, 1.0f},
                                  {&plus, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                  {&minus, 1, ZT_DIST_GAUSSIAN, 1.0f}};
    zt_variants v = {K, p, perturbed};
    zt_batch batch = {B, T, fb->ids, fb->mask, fb->n, fb->rows, fb->targets};
    ZT_REQUIRE_OK(zt_model_forward(m, ws, &batch, &v, logprobs, logits));
    free(perturbed);
    zt_workspace_free(ws);
    zt_model_free(m);
}

/* The prefixes' gradient of the token-mean LM loss with the fixture's labels (host copy, in the
 * order of the table), and the loss. */
static float *prefix_gradients(zt_backend *be, const zt_targets *lm, size_t *count, double *loss,
                               const fixture_batch *fb) {
    zt_model *m = load(be);
    size_t *offsets = malloc((size_t)m->n_tensors * sizeof *offsets);
    const size_t total = zt_model_grad_layout(m, offsets);
    float *grads = NULL, *host = malloc(total * sizeof *host);
    ZT_REQUIRE_OK(be->ops->alloc(be, total * sizeof(float), ZT_MEM_SCRATCH, (void **)&grads));
    ZT_REQUIRE_OK(zt_backend_zero(be, grads, total));
    zt_grad_buffers *gb = NULL;
    ZT_REQUIRE_OK(zt_grad_buffers_create(m, B, T, 0, &gb));
    float weights[B * T];
    for (int r = 0; r < lm->n; r++)
        weights[r] = 1.0f / (float)lm->n;
    zt_batch batch = {B, T, fb->ids, fb->mask, lm->n, lm->rows, lm->ids};
    ZT_REQUIRE_OK(zt_model_grad(m, gb, &batch, weights, grads, loss));
    ZT_REQUIRE_OK(be->ops->download(be, host, grads, total * sizeof(float)));
    zt_grad_buffers_free(gb);
    be->ops->free(be, grads, total * sizeof(float), ZT_MEM_SCRATCH);
    free(offsets);
    zt_model_free(m);
    *count = total;
    return host;
}

int main(void) {
    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(emu, ZT_GEMM_F32));
    char path[1024];
    fixture_path(path, sizeof path, "opt-pre-prefix", "reference.safetensors");
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    fixture_batch fb;
    int64_t shape[3];
    fb.ids = fixture_array(st, "input_ids", "I32", NULL, NULL);
    fb.mask = fixture_array(st, "attention_mask", "I32", NULL, NULL);
    fb.logits = fixture_array(st, "logits", "F32", NULL, shape);
    fb.vocab = (int)shape[2];
    int32_t *labels = fixture_array(st, "labels", "I32", NULL, NULL);
    float *hf_loss = fixture_array(st, "loss", "F32", NULL, NULL);
    /* every row, padded ones included, a target: the head sees them all */
    fb.n = B * T;
    for (int r = 0; r < B * T; r++) {
        fb.rows[r] = r;
        fb.targets[r] = fb.ids[r];
    }
    const size_t kr = (size_t)K * fb.n, krv = kr * fb.vocab;
    float *cpu_lp = malloc(kr * sizeof(float)), *emu_lp = malloc(kr * sizeof(float));
    float *cpu_logits = malloc(krv * sizeof(float)), *emu_logits = malloc(krv * sizeof(float));
    sweep(cpu, &fb, cpu_lp, cpu_logits);
    sweep(emu, &fb, emu_lp, emu_logits);

    double hf_err = 0, lp_err = 0, moved = 0;
    for (int i = 0; i < fb.n; i++)
        for (int v = 0; v < fb.vocab; v++) {
            const double want = fb.logits[(size_t)fb.rows[i] * fb.vocab + v];
            const double got = emu_logits[(size_t)i * fb.vocab + v];
            hf_err = fmax(hf_err, fabs(got - want) / fmax(1.0, fabs(want)));
        }
    for (size_t i = 0; i < kr; i++)
        lp_err = fmax(lp_err, fabs((double)emu_lp[i] - cpu_lp[i]));
    for (int i = 0; i < fb.n; i++)
        moved = fmax(moved, fabs((double)cpu_lp[fb.n + i] - cpu_lp[i]));
    ZT_CHECK(hf_err <= 1e-4, "executor prefix logits off HF's by %.3g relative", hf_err);
    ZT_CHECK(lp_err <= 1e-5, "executor vs CPU log-probabilities over %d variants: %.3g", K, lp_err);
    ZT_CHECK(moved > 1e-6, "perturbing the prefixes moves the log-probabilities by %.3g", moved);
    printf("executor: logits vs HF %.3g relative; K = %d sweep (prefixes perturbed) vs CPU "
           "%.3g (the perturbation moves them by %.3g)\n",
           hf_err, K, lp_err, moved);

    zt_targets lm;
    ZT_REQUIRE_OK(zt_targets_from_labels(B, T, labels, fb.vocab, &lm));
    size_t n_cpu = 0, n_emu = 0;
    double loss_cpu = 0, loss_emu = 0;
    float *g_cpu = prefix_gradients(cpu, &lm, &n_cpu, &loss_cpu, &fb),
          *g_emu = prefix_gradients(emu, &lm, &n_emu, &loss_emu, &fb);
    double num = 0, den = 0, hf_num = 0, hf_den = 0;
    for (size_t i = 0; i < n_cpu && n_cpu == n_emu; i++) {
        num += ((double)g_emu[i] - g_cpu[i]) * ((double)g_emu[i] - g_cpu[i]);
        den += (double)g_cpu[i] * g_cpu[i];
    }
    /* the gradient block holds the prefixes alone, in table order: keys then values per layer */
    zt_model *m = load(cpu);
    size_t at = 0;
    for (int i = m->prefix->n_base; i < m->n_tensors; i++) {
        char key[ZT_TENSOR_NAME_MAX + 8];
        snprintf(key, sizeof key, "grad/%s", m->tensors[i].name);
        float *want = fixture_array(st, key, "F32", NULL, NULL);
        for (size_t j = 0; j < m->tensors[i].n_elems && at + j < n_emu; j++) {
            hf_num += ((double)g_emu[at + j] - want[j]) * ((double)g_emu[at + j] - want[j]);
            hf_den += (double)want[j] * want[j];
        }
        at += m->tensors[i].n_elems;
        free(want);
    }
    zt_model_free(m);
    const double rel = den > 0 ? sqrt(num / den) : 1.0;
    const double hf_rel = hf_den > 0 ? sqrt(hf_num / hf_den) : 1.0;
    ZT_CHECK(n_cpu == n_emu && at == n_emu && rel <= 1e-5,
             "prefix gradients: executor vs CPU %.3g relative L2", rel);
    ZT_CHECK(hf_rel <= 1e-5, "prefix gradients: executor vs HF autograd %.3g relative L2", hf_rel);
    ZT_CHECK_CLOSE(loss_emu, hf_loss[0], 0.0, 1e-5, "executor prefix loss against HF's");
    printf("executor: prefix gradients vs CPU %.3g, vs HF autograd %.3g relative L2 over %zu "
           "elements; loss %.9g (HF %.9g)\n",
           rel, hf_rel, n_cpu, loss_emu, hf_loss[0]);
    zt_st_close(st);
    free(labels);
    free(hf_loss);
    free(lm.rows);
    free(lm.ids);
    free(lm.example);
    free(g_cpu);
    free(g_emu);
    free(cpu_lp);
    free(emu_lp);
    free(cpu_logits);
    free(emu_logits);
    free(fb.ids);
    free(fb.mask);
    free(fb.logits);
    zt_backend_destroy(emu);
    zt_backend_destroy(cpu);
    return zt_test_finish("test_cuda_prefix_emu");
}
