/* Greedy decoding (src/train/generate.c) against transformers' generate(do_sample=False) on the
 * pre-LN and post-LN fixtures and the demo model  (tests/fixtures/generation/, written by
 * tools/make_generation_fixture.py): the same new tokens, prompt by prompt, stopping where HF
 * stopped on EOS. The fixture keeps only prompts whose top-two logit gap stays >= 1e-4 at every
 * step, far above the forward's 4e-6 agreement with HF, so an argmax cannot flip by rounding.
 * Both paths: the sequential reference (every token recomputes the whole sequence) and batched
 * decoding over the KV cache (1, 2, 4 and all prompts per batch; per-prompt budgets and a stop
 * id that ends some sequences early; one perturbed variant, where the reference is the
 * sequential path), the batched path's memory against its plan, and every allocation of a
 * batched generation failed in turn. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "core/fault.h"
#include "model.h"
#include "text/bpe.h"
#include "train/generate.h"
#include "zt_test.h"

#include "generation_fixture.h"

static void check_fixture(zt_backend *be, const gen_fixture *f) {
    const char *name = f->name;
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(f->model_dir, be, &m));
    zt_tokenizer *tok = NULL; /* the demo model has one; the fixtures do not */
    ZT_REQUIRE_OK(zt_tokenizer_open_model_dir(f->model_dir, 0, &tok));
    ZT_CHECK(m->dims.eos_token_id == f->eos, "%s: EOS %d, HF used %d", name, m->dims.eos_token_id,
             f->eos);
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
    int room = f->longest + ZT_GENERATION_MAX_NEW;
    if (room > m->dims.max_positions) room = m->dims.max_positions;
    if (room < f->longest + f->max_new) room = f->longest + f->max_new;
    zt_workspace_shape shape = {1, room, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    int tokens = 0;
    for (int c = 0; c < f->n_cases; c++) {
        const gen_case *g = &f->cases[c];
        int n_got = 0;
        int32_t *got = NULL;
        ZT_CHECK_OK(zt_generate_greedy(m, ws, NULL, g->prompt, g->n_prompt, f->max_new, &f->eos, 1,
                                       &got, &n_got));
        ZT_CHECK(gen_same(got, n_got, g->want, g->n_want),
                 "%s case %d: %d tokens generated, HF %d (first %d vs %d)", name, c, n_got,
                 g->n_want, n_got > 0 ? got[0] : -1, g->n_want > 0 ? g->want[0] : -1);
        tokens += g->n_want;
        if (tok && g->n_want <= zt_generation_max_new(m, g->n_prompt)) {
            /* the answer text eval and --objective f1 score runs on to MeZO's budget; its first
             * tokens are HF's, so it starts with their text */
            zt_example e;
            memset(&e, 0, sizeof e);
            e.prompt = g->prompt;
            e.prompt_length = g->n_prompt;
            char *text = NULL, *want_text = NULL;
            ZT_CHECK_OK(zt_generate_answer(m, ws, NULL, tok, &e, &f->eos, 1, &text));
            ZT_CHECK_OK(zt_tokenizer_decode(tok, g->want, g->n_want, 1, &want_text));
            ZT_CHECK(text && want_text && strncmp(text, want_text, strlen(want_text)) == 0 &&
                         strlen(text) > strlen(want_text),
                     "%s case %d: answer \"%s\" does not extend HF's \"%s\"", name, c,
                     text ? text : "", want_text ? want_text : "");
            free(text);
            free(want_text);
        }
        free(got);
    }
    printf("%-8s %d prompts, %d tokens: identical to HF generate\n", name, f->n_cases, tokens);
    ZT_CHECK(f->n_cases >= 4 && tokens >= 40, "%s: the fixture holds %d cases", name, f->n_cases);
    zt_workspace_free(ws);
    zt_tokenizer_free(tok);
    zt_model_free(m);
}

/* Batched decoding with the KV cache: 1, 2, 4 and all prompts at a time (all: prompts of 1 to 8
 * tokens, so up to 7 left pads), each sequence HF's tokens. The workspace holds only the prefill
 * (batch x longest prompt); the rest lives in the cache. */
static void check_batched(zt_backend *be, const gen_fixture *f) {
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(f->model_dir, be, &m));
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {f->n_cases, f->longest, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    const int batches[] = {1, 2, 4, f->n_cases};
    zt_mem_stats before, after;
    zt_mem_stats_get(&before);
    int tokens = 0;
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++)
        tokens += gen_check_batched(m, ws, f, batches[i], "cpu");
    zt_mem_stats_get(&after);
    ZT_CHECK(after.current[ZT_MEM_ACTIVATIONS] == before.current[ZT_MEM_ACTIVATIONS],
             "%s: %zu activation bytes before the batches, %zu after (a cache not freed)", f->name,
             before.current[ZT_MEM_ACTIVATIONS], after.current[ZT_MEM_ACTIVATIONS]);
    printf("%-8s batched (1, 2, 4, %d prompts per batch), %d tokens: identical to HF generate\n",
           f->name, f->n_cases, tokens);
    zt_workspace_free(ws);
    zt_model_free(m);
}

/* HF's tokens cut at the first stop id, then at the budget. */
static int expected_prefix(const gen_case *g, const int32_t *stop, int n_stop, int budget) {
    int n = 0;
    while (n < g->n_want && n < budget) {
        int hit = 0;
        for (int j = 0; j < n_stop; j++)
            hit |= g->want[n] == stop[j];
        if (hit) break;
        n++;
    }
    return n;
}

/* All prompts in one batch, each with its own budget, and a stop id HF produces mid-way in some
 * sequences: those stop while the others go on. Each output is HF's tokens cut at the stop and
 * the budget, and equals the sequential (uncached) path's under the same stops and budgets. */
static void check_stops_and_budgets(zt_backend *be, const gen_fixture *f) {
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(f->model_dir, be, &m));
    zt_workspace *batch_ws = NULL, *seq_ws = NULL;
    zt_workspace_shape batch_shape = {f->n_cases, f->longest, 1, 0, 0};
    zt_workspace_shape seq_shape = {1, f->longest + f->max_new, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &batch_shape, &batch_ws));
    ZT_REQUIRE_OK(zt_workspace_create(m, &seq_shape, &seq_ws));
    const int32_t stop[2] = {f->eos, f->cases[0].want[4]};
    int *budget = malloc((size_t)f->n_cases * sizeof *budget);
    int32_t **out = calloc((size_t)f->n_cases, sizeof *out);
    int *n_out = calloc((size_t)f->n_cases, sizeof *n_out);
    for (int c = 0; c < f->n_cases; c++)
        budget[c] = c == 1 ? 0 : f->max_new - (c % 4) * 3; /* 0 tokens, 12, 9, 6, 3 */
    gen_decode_batch(m, batch_ws, NULL, f, 0, f->n_cases, budget, stop, 2, out, n_out);
    int stopped = 0, cut = 0;
    for (int c = 0; c < f->n_cases; c++) {
        const gen_case *g = &f->cases[c];
        int n_want = expected_prefix(g, stop, 2, budget[c]);
        stopped += n_want < budget[c] && n_want < g->n_want;
        cut += n_want == budget[c] && n_want < g->n_want;
        ZT_CHECK(out[c] && gen_same(out[c], n_out[c], g->want, n_want),
                 "%s case %d (budget %d, stop %d): %d tokens, want HF's first %d", f->name, c,
                 budget[c], stop[1], n_out[c], n_want);
        int32_t *seq = NULL;
        int n_seq = 0;
        ZT_CHECK_OK(zt_generate_greedy(m, seq_ws, NULL, g->prompt, g->n_prompt, budget[c], stop, 2,
                                       &seq, &n_seq));
        ZT_CHECK(out[c] && gen_same(out[c], n_out[c], seq, n_seq),
                 "%s case %d: batched %d tokens, sequential %d", f->name, c, n_out[c], n_seq);
        free(seq);
        free(out[c]);
    }
    /* the case is only a test if some sequences stop early and others run out of budget */
    ZT_CHECK(stopped >= 1 && cut >= 1, "%s: %d sequences stopped on %d, %d cut by their budget",
             f->name, stopped, stop[1], cut);
    printf("%-8s one batch, budgets 0-12 and stop id %d: %d stopped early, %d cut by budget; "
           "HF's and the sequential path's tokens\n",
           f->name, stop[1], stopped, cut);
    free(budget);
    free(out);
    free(n_out);
    zt_workspace_free(batch_ws);
    zt_workspace_free(seq_ws);
    zt_model_free(m);
}

/* Under one perturbed variant (--objective f1 generates so), batched == sequential, and the
 * variant does change what is generated. */
static void check_variant(zt_backend *be, const gen_fixture *f) {
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(f->model_dir, be, &m));
    const zt_direction term = {0x5eed1234ULL, 0.05f};
    const zt_perturbation p = {&term, 1, ZT_DIST_GAUSSIAN, 1.0f};
    const zt_variants variant = {1, &p, NULL};
    zt_workspace *batch_ws = NULL, *seq_ws = NULL;
    zt_workspace_shape batch_shape = {f->n_cases, f->longest, 1, 1, 0};
    zt_workspace_shape seq_shape = {1, f->longest + f->max_new, 1, 1, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &batch_shape, &batch_ws));
    ZT_REQUIRE_OK(zt_workspace_create(m, &seq_shape, &seq_ws));
    int *budget = malloc((size_t)f->n_cases * sizeof *budget);
    int32_t **out = calloc((size_t)f->n_cases, sizeof *out);
    int *n_out = calloc((size_t)f->n_cases, sizeof *n_out);
    for (int c = 0; c < f->n_cases; c++)
        budget[c] = f->max_new;
    gen_decode_batch(m, batch_ws, &variant, f, 0, f->n_cases, budget, &f->eos, 1, out, n_out);
    int differs_from_hf = 0, tokens = 0;
    for (int c = 0; c < f->n_cases; c++) {
        const gen_case *g = &f->cases[c];
        int32_t *seq = NULL;
        int n_seq = 0;
        ZT_CHECK_OK(zt_generate_greedy(m, seq_ws, &variant, g->prompt, g->n_prompt, f->max_new,
                                       &f->eos, 1, &seq, &n_seq));
        ZT_CHECK(out[c] && gen_same(out[c], n_out[c], seq, n_seq),
                 "%s variant, case %d: batched %d tokens, sequential %d (first %d vs %d)", f->name,
                 c, n_out[c], n_seq, out[c] && n_out[c] ? out[c][0] : -1, n_seq ? seq[0] : -1);
        differs_from_hf += !gen_same(seq, n_seq, g->want, g->n_want);
        tokens += n_seq;
        free(seq);
        free(out[c]);
    }
    ZT_CHECK(differs_from_hf > 0, "%s: the perturbed variant generates what the weights do",
             f->name);
    printf("%-8s one perturbed variant: batched == sequential, %d tokens (%d of %d generations "
           "differ from the unperturbed model's)\n",
           f->name, tokens, differs_from_hf, f->n_cases);
    free(budget);
    free(out);
    free(n_out);
    zt_workspace_free(batch_ws);
    zt_workspace_free(seq_ws);
    zt_model_free(m);
}

/* The tracked peak of a batched generation on a fresh backend is the workspace's plan plus the
 * cache's (zt_kv_cache_plan_memory), to the byte. */
static void check_memory(const gen_fixture *f) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 2, &be));
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(f->model_dir, be, &m));
    zt_workspace_shape shape = {f->n_cases, f->longest, 1, 0, 0};
    zt_memory_plan plan;
    zt_model_plan_memory(m, &shape, &plan);
    const size_t without_cache = plan.total_bytes;
    zt_kv_cache_plan_memory(m, f->n_cases, zt_generation_cache_columns(f->longest, f->max_new),
                            &plan);
    zt_mem_reset_peak();
    zt_workspace *ws = NULL;
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    gen_check_batched(m, ws, f, f->n_cases, "cpu");
    zt_mem_stats stats;
    zt_mem_stats_get(&stats);
    ZT_CHECK(stats.peak_total == plan.total_bytes && plan.kv_cache_bytes > 0,
             "%s: peak %zu bytes, plan %zu (workspace %zu + cache %zu)", f->name, stats.peak_total,
             plan.total_bytes, without_cache, plan.kv_cache_bytes);
    /* keys and values of every layer and sequence for the cache's columns, and the mask */
    const size_t columns = (size_t)zt_generation_cache_columns(f->longest, f->max_new);
    const size_t floats = 2 * (size_t)m->dims.n_layers * f->n_cases * columns * m->dims.hidden_size;
    ZT_CHECK(plan.kv_cache_bytes >= floats * 4 + (size_t)f->n_cases * columns * 4 &&
                 plan.kv_cache_bytes < floats * 4 + (size_t)f->n_cases * columns * 4 + 128,
             "%s: cache of %zu bytes for %zu floats", f->name, plan.kv_cache_bytes, floats);
    printf("%-8s batched generation peaks at the plan: %zu bytes (cache %zu)\n", f->name,
           stats.peak_total, plan.kv_cache_bytes);
    zt_workspace_free(ws);
    zt_model_free(m);
    zt_backend_destroy(be);
}

/* Every allocation of a batched generation (zt_generate_answers: buffers, the KV cache, the
 * decoded texts) failed in turn: each failure is a status with a message, hands back no text and
 * leaves no backend memory behind (the sanitizer build checks the host heap); then a run without
 * faults still answers as HF. */
static void check_faults(zt_backend *be, const gen_fixture *f) {
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(f->model_dir, be, &m));
    zt_tokenizer *tok = NULL;
    ZT_REQUIRE_OK(zt_tokenizer_open_model_dir(f->model_dir, 0, &tok));
    ZT_REQUIRE(tok != NULL, "%s has no tokenizer", f->model_dir);
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {f->n_cases, f->longest, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    zt_example *examples = calloc((size_t)f->n_cases, sizeof *examples);
    const zt_example **pointers = calloc((size_t)f->n_cases, sizeof *pointers);
    char **texts = calloc((size_t)f->n_cases, sizeof *texts);
    for (int c = 0; c < f->n_cases; c++) {
        examples[c].prompt = f->cases[c].prompt;
        examples[c].prompt_length = f->cases[c].n_prompt;
        pointers[c] = &examples[c];
    }
    zt_mem_stats before, after;
    zt_mem_stats_get(&before);
    zt_fault_disarm();
    ZT_CHECK_OK(zt_generate_answers(m, ws, NULL, tok, pointers, f->n_cases, 4, &f->eos, 1, texts));
    const long n_allocs = zt_fault_allocs_seen();
    for (int c = 0; c < f->n_cases; c++)
        free(texts[c]);
    int failed_cleanly = 0;
    for (long nth = 1; nth <= n_allocs; nth++) {
        zt_fault_arm_alloc(nth);
        zt_status s =
            zt_generate_answers(m, ws, NULL, tok, pointers, f->n_cases, 4, &f->eos, 1, texts);
        int fired = zt_fault_fired();
        zt_fault_disarm();
        int none_left = 1;
        for (int c = 0; c < f->n_cases; c++)
            none_left &= texts[c] == NULL;
        zt_mem_stats_get(&after);
        int ok = fired && s != ZT_OK && zt_last_error()[0] != '\0' && none_left &&
                 after.current[ZT_MEM_ACTIVATIONS] == before.current[ZT_MEM_ACTIVATIONS];
        ZT_CHECK(ok,
                 "%s: allocation %ld of %ld failed: status %s \"%s\", texts left %d, %zu "
                 "activation bytes (before %zu)",
                 f->name, nth, n_allocs, zt_status_name(s), zt_last_error(), !none_left,
                 after.current[ZT_MEM_ACTIVATIONS], before.current[ZT_MEM_ACTIVATIONS]);
        failed_cleanly += ok;
    }
    ZT_CHECK_OK(zt_generate_answers(m, ws, NULL, tok, pointers, f->n_cases, 4, &f->eos, 1, texts));
    int hf = 0;
    for (int c = 0; c < f->n_cases; c++) {
        char *want = NULL;
        ZT_CHECK_OK(zt_tokenizer_decode(tok, f->cases[c].want, f->cases[c].n_want, 1, &want));
        hf += texts[c] && want && strncmp(texts[c], want, strlen(want)) == 0;
        free(want);
        free(texts[c]);
    }
    ZT_CHECK(hf == f->n_cases, "%s: after the faults %d of %d answers start with HF's", f->name, hf,
             f->n_cases);
    printf("%-8s batched answers: each of %ld allocations failed in turn, %d cleanly\n", f->name,
           n_allocs, failed_cleanly);
    free(examples);
    free(pointers);
    free(texts);
    zt_workspace_free(ws);
    zt_tokenizer_free(tok);
    zt_model_free(m);
}

int main(void) {
    gen_fixture opt_pre;
    gen_fixture_load("opt-pre", &opt_pre);
    check_memory(&opt_pre); /* first: on a backend whose scratch nothing else grew */
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &be));
    const char *names[] = {"opt-pre", "opt-post", "demo"};
    for (int i = 0; i < 3; i++) {
        gen_fixture f;
        gen_fixture_load(names[i], &f);
        check_fixture(be, &f);
        check_batched(be, &f);
        check_stops_and_budgets(be, &f);
        if (strcmp(names[i], "demo") == 0) check_faults(be, &f);
        gen_fixture_free(&f);
    }
    check_variant(be, &opt_pre);
    gen_fixture_free(&opt_pre);
    zt_backend_destroy(be);
    return zt_test_finish("test_generate");
}
