/* The CUDA backend's backward ops (kernels/cuda/<op>_backward.cu), executed on the CPU by the host
 * executor (cudaemu), against the CPU backend: every op on awkward shapes, with guard bands, NMSE
 * bounds (gather_rows_backward bit for bit), a second run of every case giving the same bits, and
 * bad indices refused alike (backward_parity.h). Registered twice, the second time with
 * CUDAEMU_ORDER=reverse, so that a kernel relying on the order of its threads fails one of them.
 *
 *   test_cuda_backward_emu [--seed N]      CUDAEMU_WORKERS=n sets the host threads that run blocks
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "backward_parity.h"
#include "backprop.h"
#include "model.h"
#include "model/fixture.h"

/* The whole model's gradient (models/backprop.h) on the emulated kernels against the CPU's, on
 * the fixtures' "lm" batch (pre-LN, and post-LN with project_in/out): the op-level bounds hold
 * through 2 layers and the head, and the losses agree. */
static void check_model_gradient(zt_backend *cpu, zt_backend *emu, const char *fixture) {
    char dir[1024], path[1200];
    fixture_path(dir, sizeof dir, fixture, NULL);
    fixture_path(path, sizeof path, "opt-pre", "reference.safetensors");
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &ref));
    int64_t shape[2] = {0, 0};
    int32_t *ids = fixture_array(ref, "lm_input_ids", "I32", NULL, shape);
    int32_t *mask = fixture_array(ref, "lm_attention_mask", "I32", NULL, NULL);
    int32_t *labels = fixture_array(ref, "lm_labels", "I32", NULL, NULL);
    zt_st_close(ref);
    const int b_count = (int)shape[0], t_count = (int)shape[1];
    int32_t rows[64], targets[64];
    float weights[64];
    int r = 0;
    for (int b = 0; b < b_count; b++)
        for (int t = 0; t + 1 < t_count && r < 64; t++)
            if (labels[b * t_count + t + 1] != -100) {
                rows[r] = b * t_count + t;
                targets[r++] = labels[b * t_count + t + 1];
            }
    for (int i = 0; i < r; i++)
        weights[i] = 1.0f / (float)r;
    const zt_batch batch = {b_count, t_count, ids, mask, r, rows, targets};
    zt_backend *bes[2] = {cpu, emu};
    float *host[2] = {NULL, NULL};
    double loss[2] = {0.0, 0.0};
    size_t total = 0;
    for (int k = 0; k < 2; k++) {
        zt_model *m = NULL;
        ZT_REQUIRE_OK(zt_model_load(dir, bes[k], &m));
        total = zt_model_parameter_count(m);
        float *grads = NULL;
        ZT_REQUIRE_OK(
            bes[k]->ops->alloc(bes[k], total * sizeof(float), ZT_MEM_SCRATCH, (void **)&grads));
        ZT_REQUIRE_OK(zt_backend_zero(bes[k], grads, total));
        zt_grad_buffers *gb = NULL;
        ZT_REQUIRE_OK(zt_grad_buffers_create(m, b_count, t_count, 0, &gb));
        ZT_CHECK_OK(zt_model_grad(m, gb, &batch, weights, grads, &loss[k]));
        host[k] = malloc(total * sizeof(float));
        ZT_REQUIRE_OK(bes[k]->ops->download(bes[k], host[k], grads, total * sizeof(float)));
        zt_grad_buffers_free(gb);
        bes[k]->ops->free(bes[k], grads, total * sizeof(float), ZT_MEM_SCRATCH);
        zt_model_free(m);
    }
    double diff = 0.0, norm = 0.0;
    for (size_t j = 0; j < total; j++) {
        const double d = (double)host[1][j] - (double)host[0][j];
        diff += d * d;
        norm += (double)host[0][j] * host[0][j];
    }
    printf("model gradient %-9s NMSE %.3g, loss %.9f (cpu) %.9f (cuda-emu)\n", fixture, diff / norm,
           loss[0], loss[1]);
    ZT_CHECK(norm > 0.0 && diff / norm <= 1e-10, "%s: model gradient NMSE %.3g", fixture,
             diff / norm);
    ZT_CHECK_CLOSE(loss[1], loss[0], 0.0, 1e-6, "%s: loss", fixture);
    free(host[0]);
    free(host[1]);
    free(ids);
    free(mask);
    free(labels);
}

int main(int argc, char **argv) {
    uint64_t seed = 20250607;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--seed N]\n", argv[0]);
            return 2;
        }
    }
    double start = zt_parity_now();
    zt_mem_stats at_start;
    zt_mem_stats_get(&at_start);

    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(0, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    /* Made by its constructor, not zt_backend_create: its op table is checked here, the backward
     * group included. */
    ZT_CHECK_OK(zt_backend_check_ops(emu->ops));
    ZT_CHECK_OK(zt_backend_require_backward(emu, "backprop"));

    zt_bwd_parity_run(cpu, emu, seed);
    /* the real GPU's linear chunk size: d_in in one chunk for these layers */
    ZT_REQUIRE_OK(zt_cudaemu_backend_set_linear_chunk(emu, 16u << 20));
    zt_prng r = {seed + 1};
    printf("linear_backward at the real GPU's chunk size\n");
    zt_bwd_parity_linear(cpu, emu, &r);
    check_model_gradient(cpu, emu, "opt-pre");
    check_model_gradient(cpu, emu, "opt-post");

    emu->ops->destroy(emu);
    cpu->ops->destroy(cpu);
    zt_mem_stats at_end;
    zt_mem_stats_get(&at_end);
    ZT_CHECK(at_end.current_total == at_start.current_total,
             "tracked memory: %zu bytes at start, %zu after destroying both backends",
             at_start.current_total, at_end.current_total);
    printf("seed %llu, %.1f s\n", (unsigned long long)seed, zt_parity_now() - start);
    return zt_test_finish("test_cuda_backward_emu");
}
