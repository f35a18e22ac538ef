/* Greedy decoding (src/train/generate.c) against transformers' generate(do_sample=False) on the
 * pre-LN and post-LN fixtures and the demo model  (tests/fixtures/generation/, written by
 * tools/make_generation_fixture.py): the same new tokens, prompt by prompt, stopping where HF
 * stopped on EOS. The fixture keeps only prompts whose top-two logit gap stays >= 1e-4 at every
 * step, far above the forward's 4e-6 agreement with HF, so an argmax cannot flip by rounding. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/fixture.h"
#include "backend.h"
#include "model.h"
#include "text/bpe.h"
#include "train/generate.h"
#include "zt_test.h"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    ZT_REQUIRE(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    ZT_REQUIRE(text && fread(text, 1, (size_t)n, f) == (size_t)n, "reading %s", path);
    text[n] = '\0';
    fclose(f);
    return text;
}

static int32_t *ids_of(const cJSON *array, int *n) {
    *n = cJSON_GetArraySize(array);
    int32_t *ids = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *ids);
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)cJSON_GetArrayItem(array, i)->valueint;
    return ids;
}

static void check_fixture(zt_backend *be, const char *name) {
    char path[1024], model_dir[1024];
    snprintf(path, sizeof path, "%s/generation/%s.json", fixture_root(), name);
    char *text = read_text(path);
    cJSON *root = cJSON_Parse(text);
    ZT_REQUIRE(root != NULL, "%s: invalid JSON", path);
    /* "model" is relative to the repository root, two levels above the fixtures */
    snprintf(model_dir, sizeof model_dir, "%s/../../%s", fixture_root(),
             cJSON_GetObjectItem(root, "model")->valuestring);
    int max_new = cJSON_GetObjectItem(root, "max_new_tokens")->valueint;
    int32_t eos = (int32_t)cJSON_GetObjectItem(root, "eos_token_id")->valueint;
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(model_dir, be, &m));
    zt_tokenizer *tok = NULL; /* the demo model has one; the fixtures do not */
    ZT_REQUIRE_OK(zt_tokenizer_open_model_dir(model_dir, 0, &tok));
    ZT_CHECK(m->dims.eos_token_id == eos, "%s: EOS %d, HF used %d", name, m->dims.eos_token_id,
             eos);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    int longest = 0, n_cases = cJSON_GetArraySize(cases);
    for (int c = 0; c < n_cases; c++) {
        int n = cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(cases, c), "prompt"));
        if (n > longest) longest = n;
    }
    /* MeZO's budget: 50 new tokens, fewer where the positions run out */
    int positions = m->dims.max_positions;
    for (int prompt = 1; prompt <= positions; prompt += 7) {
        int want =
            positions - prompt < ZT_GENERATION_MAX_NEW ? positions - prompt : ZT_GENERATION_MAX_NEW;
        ZT_CHECK(zt_generation_max_new(m, prompt) == want && ZT_GENERATION_MAX_NEW == 50,
                 "%s: a %d-token prompt may grow by %d, want %d", name, prompt,
                 zt_generation_max_new(m, prompt), want);
    }
    zt_workspace *ws = NULL;
    /* room for the answer budget too (zt_generate_answer decodes up to it) */
    int room = longest + ZT_GENERATION_MAX_NEW;
    if (room > m->dims.max_positions) room = m->dims.max_positions;
    if (room < longest + max_new) room = longest + max_new;
    zt_workspace_shape shape = {1, room, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    int tokens = 0;
    for (int c = 0; c < n_cases; c++) {
        const cJSON *item = cJSON_GetArrayItem(cases, c);
        int n_prompt = 0, n_want = 0, n_got = 0;
        int32_t *prompt = ids_of(cJSON_GetObjectItem(item, "prompt"), &n_prompt);
        int32_t *want = ids_of(cJSON_GetObjectItem(item, "generated"), &n_want);
        /* HF keeps the EOS it stopped on; zotune stops before it */
        if (n_want > 0 && want[n_want - 1] == eos) n_want--;
        int32_t *got = NULL;
        ZT_CHECK_OK(
            zt_generate_greedy(m, ws, NULL, prompt, n_prompt, max_new, &eos, 1, &got, &n_got));
        int same = n_got == n_want && (n_got == 0 || memcmp(got, want, (size_t)n_got * 4) == 0);
        ZT_CHECK(same, "%s case %d: %d tokens generated, HF %d (first %d vs %d)", name, c, n_got,
                 n_want, n_got > 0 ? got[0] : -1, n_want > 0 ? want[0] : -1);
        tokens += n_want;
        if (tok && n_want <= zt_generation_max_new(m, n_prompt)) {
            /* the answer text eval and --objective f1 score runs on to MeZO's budget; its first
             * tokens are HF's, so it starts with their text */
            zt_example e;
            memset(&e, 0, sizeof e);
            e.prompt = prompt;
            e.prompt_length = n_prompt;
            char *text = NULL, *want_text = NULL;
            ZT_CHECK_OK(zt_generate_answer(m, ws, NULL, tok, &e, &eos, 1, &text));
            ZT_CHECK_OK(zt_tokenizer_decode(tok, want, n_want, 1, &want_text));
            ZT_CHECK(text && want_text && strncmp(text, want_text, strlen(want_text)) == 0 &&
                         strlen(text) > strlen(want_text),
                     "%s case %d: answer \"%s\" does not extend HF's \"%s\"", name, c,
                     text ? text : "", want_text ? want_text : "");
            free(text);
            free(want_text);
        }
        free(got);
        free(prompt);
        free(want);
    }
    printf("%-8s %d prompts, %d tokens: identical to HF generate\n", name, n_cases, tokens);
    ZT_CHECK(n_cases >= 4 && tokens >= 40, "%s: the fixture holds %d cases", name, n_cases);
    zt_workspace_free(ws);
    zt_tokenizer_free(tok);
    zt_model_free(m);
    cJSON_Delete(root);
    free(text);
}

int main(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &be));
    check_fixture(be, "opt-pre");
    check_fixture(be, "opt-post");
    check_fixture(be, "demo");
    zt_backend_destroy(be);
    return zt_test_finish("test_generate");
}
