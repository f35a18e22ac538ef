/* The greedy-generation references of tests/fixtures/generation/ (tools/make_generation_fixture.py:
 * transformers' generate(do_sample=False) on each prompt alone), and batched decoding of them.
 * Shared by tests/train/test_generate.c and tests/cudaemu/test_cuda_generate_emu.c; include after
 * zt_test.h. */
#ifndef ZT_TEST_GENERATION_FIXTURE_H
#define ZT_TEST_GENERATION_FIXTURE_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/fixture.h"
#include "model.h"
#include "train/generate.h"

typedef struct gen_case {
    int32_t *prompt, *want; /* want: HF's new tokens without the EOS it stopped on */
    int n_prompt, n_want;
} gen_case;

typedef struct gen_fixture {
    char name[64], model_dir[1024];
    int max_new; /* HF's max_new_tokens */
    int32_t eos;
    int n_cases, longest;
    gen_case *cases;
} gen_fixture;

static inline int32_t *gen_ids_of(const cJSON *array, int *n) {
    *n = cJSON_GetArraySize(array);
    int32_t *ids = (int32_t *)malloc((size_t)(*n > 0 ? *n : 1) * sizeof *ids);
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)cJSON_GetArrayItem(array, i)->valueint;
    return ids;
}

static inline void gen_fixture_load(const char *name, gen_fixture *f) {
    char path[1024];
    snprintf(path, sizeof path, "%s/generation/%s.json", fixture_root(), name);
    FILE *file = fopen(path, "rb");
    ZT_REQUIRE(file != NULL, "cannot open %s", path);
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = (char *)malloc((size_t)size + 1);
    ZT_REQUIRE(text && fread(text, 1, (size_t)size, file) == (size_t)size, "reading %s", path);
    text[size] = '\0';
    fclose(file);
    cJSON *root = cJSON_Parse(text);
    ZT_REQUIRE(root != NULL, "%s: invalid JSON", path);
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    /* "model" is relative to the repository root, two levels above the fixtures */
    snprintf(f->model_dir, sizeof f->model_dir, "%s/../../%s", fixture_root(),
             cJSON_GetObjectItem(root, "model")->valuestring);
    f->max_new = cJSON_GetObjectItem(root, "max_new_tokens")->valueint;
    f->eos = (int32_t)cJSON_GetObjectItem(root, "eos_token_id")->valueint;
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    f->n_cases = cJSON_GetArraySize(cases);
    f->cases = (gen_case *)calloc((size_t)f->n_cases, sizeof *f->cases);
    for (int c = 0; c < f->n_cases; c++) {
        const cJSON *item = cJSON_GetArrayItem(cases, c);
        gen_case *g = &f->cases[c];
        g->prompt = gen_ids_of(cJSON_GetObjectItem(item, "prompt"), &g->n_prompt);
        g->want = gen_ids_of(cJSON_GetObjectItem(item, "generated"), &g->n_want);
        /* HF keeps the EOS it stopped on; zotune stops before it */
        if (g->n_want > 0 && g->want[g->n_want - 1] == f->eos) g->n_want--;
        if (g->n_prompt > f->longest) f->longest = g->n_prompt;
    }
    cJSON_Delete(root);
    free(text);
}

static inline void gen_fixture_free(gen_fixture *f) {
    for (int c = 0; c < f->n_cases; c++) {
        free(f->cases[c].prompt);
        free(f->cases[c].want);
    }
    free(f->cases);
}

static inline int gen_same(const int32_t *got, int n_got, const int32_t *want, int n_want) {
    return n_got == n_want && (n_got == 0 || memcmp(got, want, (size_t)n_got * 4) == 0);
}

/* Cases first .. first + count - 1 decoded in one zt_generate_greedy_batch call with budgets
 * max_new (count) and stop ids; outputs (count) are malloc'd. */
static inline void gen_decode_batch(zt_model *m, zt_workspace *ws, const zt_variants *variants,
                                    const gen_fixture *f, int first, int count, const int *max_new,
                                    const int32_t *stop, int n_stop, int32_t **outputs,
                                    int *n_outputs) {
    const int32_t **prompts = (const int32_t **)malloc((size_t)count * sizeof *prompts);
    int *lengths = (int *)malloc((size_t)count * sizeof *lengths);
    for (int i = 0; i < count; i++) {
        prompts[i] = f->cases[first + i].prompt;
        lengths[i] = f->cases[first + i].n_prompt;
    }
    ZT_CHECK_OK(zt_generate_greedy_batch(m, ws, variants, count, prompts, lengths, max_new, stop,
                                         n_stop, outputs, n_outputs));
    free(prompts);
    free(lengths);
}

/* Every case decoded `batch` at a time against HF's tokens; returns the tokens compared. */
static inline int gen_check_batched(zt_model *m, zt_workspace *ws, const gen_fixture *f, int batch,
                                    const char *backend) {
    int tokens = 0;
    int *max_new = (int *)malloc((size_t)batch * sizeof *max_new);
    int32_t **out = (int32_t **)calloc((size_t)batch, sizeof *out);
    int *n_out = (int *)calloc((size_t)batch, sizeof *n_out);
    for (int first = 0; first < f->n_cases; first += batch) {
        int count = f->n_cases - first < batch ? f->n_cases - first : batch;
        for (int i = 0; i < count; i++)
            max_new[i] = f->max_new;
        gen_decode_batch(m, ws, NULL, f, first, count, max_new, &f->eos, 1, out, n_out);
        for (int i = 0; i < count; i++) {
            const gen_case *g = &f->cases[first + i];
            ZT_CHECK(out[i] && gen_same(out[i], n_out[i], g->want, g->n_want),
                     "%s %s batch %d: case %d (%d-token prompt): %d tokens, HF %d (first %d vs %d)",
                     backend, f->name, batch, first + i, g->n_prompt, n_out[i], g->n_want,
                     out[i] && n_out[i] > 0 ? out[i][0] : -1, g->n_want > 0 ? g->want[0] : -1);
            tokens += g->n_want;
            free(out[i]);
            out[i] = NULL;
        }
    }
    free(max_new);
    free(out);
    free(n_out);
    return tokens;
}

#endif
