/* LoRA (models/lora.h) on the CUDA kernels run by the host executor: the fixture adapter
 * (tests/fixtures/opt-pre-lora) gives peft's logits, and a ZO sweep of K = 3 variants with only
 * the adapters perturbed (+eps z, -eps z) gives the CPU backend's log-probabilities; backprop's
 * adapter gradients equal the CPU's. LoRA adds no kernel: A, the scale and B go through linear,
 * the residual through add, the gradients through linear_backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backprop.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "fixture.h"
#include "lora.h"
#include "zt_test.h"

enum { B = 2, T = 8, K = 3 };

typedef struct fixture_batch {
    int32_t *ids, *mask;
    float *logits; /* (B,T,V) peft's */
    int vocab, n;
    int32_t rows[B * T], targets[B * T];
} fixture_batch;

static zt_model *load(zt_backend *be) {
    char base[1024], adapter[1024];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(adapter, sizeof adapter, "opt-pre-lora", NULL);
    zt_lora_options o;
    zt_lora_options_default(&o);
    ZT_REQUIRE_OK(zt_lora_read_config(adapter, &o));
    o.adapter_dir = adapter;
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load_peft(base, be, &o, &m));
    return m;
}

/* K variants' log-probabilities (K,R) and logits (K,R,V): variant 0 the weights, 1 and 2 the
 * adapters at +eps z and -eps z. */
static void sweep(zt_backend *be, const fixture_batch *fb, float *logprobs, float *logits) {
    zt_model *m = load(be);
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {B, T, K, 1, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    uint8_t *perturbed = calloc((size_t)m->n_tensors, 1);
    zt_lora_select(m, perturbed);
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

/* The adapters' gradient of the token-mean NLL over the batch's real tokens (host copy). */
static float *adapter_gradients(zt_backend *be, const fixture_batch *fb, size_t *count) {
    zt_model *m = load(be);
    size_t *offsets = malloc((size_t)m->n_tensors * sizeof *offsets);
    const size_t total = zt_model_grad_layout(m, offsets);
    float *grads = NULL, *host = malloc(total * sizeof *host);
    ZT_REQUIRE_OK(be->ops->alloc(be, total * sizeof(float), ZT_MEM_SCRATCH, (void **)&grads));
    ZT_REQUIRE_OK(zt_backend_zero(be, grads, total));
    zt_grad_buffers *gb = NULL;
    ZT_REQUIRE_OK(zt_grad_buffers_create(m, B, T, 0, &gb));
    float weights[B * T];
    for (int r = 0; r < fb->n; r++)
        weights[r] = 1.0f / (float)fb->n;
    zt_batch batch = {B, T, fb->ids, fb->mask, fb->n, fb->rows, fb->targets};
    double loss = 0;
    ZT_REQUIRE_OK(zt_model_grad(m, gb, &batch, weights, grads, &loss));
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
    fixture_path(path, sizeof path, "opt-pre-lora", "reference.safetensors");
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    fixture_batch fb;
    int64_t shape[3];
    fb.ids = fixture_array(st, "input_ids", "I32", NULL, NULL);
    fb.mask = fixture_array(st, "attention_mask", "I32", NULL, NULL);
    fb.logits = fixture_array(st, "logits", "F32", NULL, shape);
    fb.vocab = (int)shape[2];
    zt_st_close(st);
    /* every real token but the last of each sequence, predicting the next one */
    fb.n = 0;
    for (int r = 0; r < B * T; r++)
        if (fb.mask[r] && (r + 1) % T != 0) {
            fb.rows[fb.n] = r;
            fb.targets[fb.n++] = fb.ids[r + 1];
        }
    const size_t kr = (size_t)K * fb.n, krv = kr * fb.vocab;
    float *cpu_lp = malloc(kr * sizeof(float)), *emu_lp = malloc(kr * sizeof(float));
    float *cpu_logits = malloc(krv * sizeof(float)), *emu_logits = malloc(krv * sizeof(float));
    sweep(cpu, &fb, cpu_lp, cpu_logits);
    zt_cuda_gemm_counts before, after;
    zt_cudaemu_backend_gemm_counts(emu, &before);
    sweep(emu, &fb, emu_lp, emu_logits);
    zt_cudaemu_backend_gemm_counts(emu, &after);
    /* the base k, v and q, read as stored, still run as one batched GEMM per layer and variant
     * (the slots, sized by the adapters, need not hold them) */
    const unsigned long long batched = after.batched_matmuls - before.batched_matmuls;
    printf("K = %d sweep: %llu matmuls, %llu of them batched (k, v, q)\n", K,
           after.matmuls - before.matmuls, batched);
    ZT_CHECK(batched == 2ull * K, "%llu batched matmuls over 2 layers and %d variants", batched, K);

    double peft_err = 0, lp_err = 0, moved = 0;
    for (int i = 0; i < fb.n; i++)
        for (int v = 0; v < fb.vocab; v++) {
            const double want = fb.logits[(size_t)fb.rows[i] * fb.vocab + v];
            const double got = emu_logits[(size_t)i * fb.vocab + v];
            peft_err = fmax(peft_err, fabs(got - want) / fmax(1.0, fabs(want)));
        }
    for (size_t i = 0; i < kr; i++)
        lp_err = fmax(lp_err, fabs((double)emu_lp[i] - cpu_lp[i]));
    for (int i = 0; i < fb.n; i++)
        moved = fmax(moved, fabs((double)cpu_lp[fb.n + i] - cpu_lp[i]));
    ZT_CHECK(peft_err <= 1e-4, "executor LoRA logits off peft's by %.3g relative", peft_err);
    ZT_CHECK(lp_err <= 1e-5, "executor vs CPU log-probabilities over %d variants: %.3g", K, lp_err);
    ZT_CHECK(moved > 1e-6, "perturbing the adapters moves the log-probabilities by %.3g", moved);
    printf("executor: logits vs peft %.3g relative; K = %d sweep (adapters perturbed) vs CPU "
           "%.3g (the perturbation moves them by %.3g)\n",
           peft_err, K, lp_err, moved);

    size_t n_cpu = 0, n_emu = 0;
    float *g_cpu = adapter_gradients(cpu, &fb, &n_cpu),
          *g_emu = adapter_gradients(emu, &fb, &n_emu);
    double num = 0, den = 0;
    for (size_t i = 0; i < n_cpu && n_cpu == n_emu; i++) {
        num += ((double)g_emu[i] - g_cpu[i]) * ((double)g_emu[i] - g_cpu[i]);
        den += (double)g_cpu[i] * g_cpu[i];
    }
    const double rel = den > 0 ? sqrt(num / den) : 1.0;
    ZT_CHECK(n_cpu == n_emu && rel <= 1e-5, "adapter gradients: executor vs CPU %.3g relative L2",
             rel);
    printf("executor: adapter gradients vs CPU %.3g relative L2 over %zu elements\n", rel, n_cpu);
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
    return zt_test_finish("test_cuda_lora_emu");
}
