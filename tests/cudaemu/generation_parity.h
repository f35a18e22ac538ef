/* Batched greedy generation over the KV cache (src/train/generate.c, attention_cached) on a CUDA
 * backend (the host executor's or a real GPU's) against transformers' generate on the fixture
 * models and the demo model (tests/fixtures/generation/): all prompts in one batch (1 to 8
 * tokens, so up to 7 left pads) and two at a time, every sequence HF's tokens. The fixture keeps
 * only prompts whose top-two logit gap stays >= 1e-4 at every step, so the device's f32 order
 * cannot flip an argmax. Under one perturbed variant (staged on the device) there is no HF
 * reference: the device's tokens must be the CPU backend's. Include after zt_test.h. */
#ifndef ZT_TEST_GENERATION_PARITY_H
#define ZT_TEST_GENERATION_PARITY_H

#include "../train/generation_fixture.h"
#include "backend.h"
#include "model.h"

/* Every case under `variant` in one batch on backend be; outputs (n_cases) are malloc'd. */
static void zt_generation_all(zt_backend *be, const gen_fixture *f, const zt_variants *variant,
                              int32_t **out, int *n_out) {
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(f->model_dir, be, &m));
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {f->n_cases, f->longest, 1, variant != NULL, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    int *budget = (int *)malloc((size_t)f->n_cases * sizeof *budget);
    for (int c = 0; c < f->n_cases; c++)
        budget[c] = f->max_new;
    gen_decode_batch(m, ws, variant, f, 0, f->n_cases, budget, &f->eos, 1, out, n_out);
    free(budget);
    zt_workspace_free(ws);
    zt_model_free(m);
}

static void zt_generation_parity_fixture(zt_backend *cpu, zt_backend *dut, const char *name) {
    gen_fixture f;
    gen_fixture_load(name, &f);
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(f.model_dir, dut, &m));
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {f.n_cases, f.longest, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    int tokens = gen_check_batched(m, ws, &f, f.n_cases, dut->ops->name);
    tokens += gen_check_batched(m, ws, &f, 2, dut->ops->name);
    zt_workspace_free(ws);
    zt_model_free(m);

    const zt_direction term = {0x5eed1234ULL, 0.05f};
    const zt_perturbation p = {&term, 1, ZT_DIST_GAUSSIAN, 1.0f};
    const zt_variants variant = {1, &p, NULL};
    int32_t **want = (int32_t **)calloc((size_t)f.n_cases, sizeof *want);
    int32_t **got = (int32_t **)calloc((size_t)f.n_cases, sizeof *got);
    int *n_want = (int *)calloc((size_t)f.n_cases, sizeof *n_want);
    int *n_got = (int *)calloc((size_t)f.n_cases, sizeof *n_got);
    zt_generation_all(cpu, &f, &variant, want, n_want);
    zt_generation_all(dut, &f, &variant, got, n_got);
    int same = 0;
    for (int c = 0; c < f.n_cases; c++) {
        same += want[c] && got[c] && gen_same(got[c], n_got[c], want[c], n_want[c]);
        free(want[c]);
        free(got[c]);
    }
    ZT_CHECK(same == f.n_cases,
             "%s: under a perturbed variant %d of %d generations on %s are "
             "the CPU's",
             name, same, f.n_cases, dut->ops->name);
    printf("  %-8s batched generation on %s: %d tokens identical to HF generate (%d and 2 "
           "prompts per batch); perturbed variant: %d of %d generations the CPU's\n",
           name, dut->ops->name, tokens, f.n_cases, same, f.n_cases);
    free(want);
    free(got);
    free(n_want);
    free(n_got);
    gen_fixture_free(&f);
}

static void zt_generation_parity_run(zt_backend *cpu, zt_backend *dut) {
    printf("batched greedy generation with the KV cache, %s against HF and %s\n", dut->ops->name,
           cpu->ops->name);
    const char *names[] = {"opt-pre", "opt-post", "demo"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        zt_generation_parity_fixture(cpu, dut, names[i]);
}

#endif
