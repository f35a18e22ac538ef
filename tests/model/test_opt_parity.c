/* The CPU forward and losses against HuggingFace transformers (fixtures from
 * tools/make_fixtures.py): logits at every target row, per-example LM losses, MeZO's
 * classification loss, for pre-LN and post-LN (project_in/out) models stored in F32, F16, BF16.
 *
 * Tolerances: logits 1e-4 absolute, losses 1e-5 relative (the bounds). The F16/BF16
 * references are HF in f32 on the weights upcast from their storage dtype; upcasting is exact,
 * so the same bounds apply to every storage dtype. HF's native half-precision run, which also
 * rounds activations, is reported beside them as information. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "fixture.h"
#include "data/targets.h"
#include "train/task_loss.h"
#include "opt/opt.h"
#include "zt_test.h"

static double worst_logit_error, worst_loss_rel_error;

static void check_lm_batch(zt_model *m, const zt_safetensors *ref, const char *fixture,
                           const char *prefix) {
    char key[64];
    int64_t shape[2];
    snprintf(key, sizeof key, "%s_input_ids", prefix);
    int32_t *ids = fixture_array(ref, key, "I32", NULL, shape);
    int batch = (int)shape[0], seq_len = (int)shape[1];
    snprintf(key, sizeof key, "%s_attention_mask", prefix);
    int32_t *mask = fixture_array(ref, key, "I32", NULL, NULL);
    snprintf(key, sizeof key, "%s_labels", prefix);
    int32_t *labels = fixture_array(ref, key, "I32", NULL, NULL);
    snprintf(key, sizeof key, "%s_target_rows", prefix);
    size_t n_ref_targets = 0;
    int32_t *ref_rows = fixture_array(ref, key, "I32", &n_ref_targets, NULL);
    snprintf(key, sizeof key, "%s_target_logits", prefix);
    float *ref_logits = fixture_array(ref, key, "F32", NULL, NULL);
    snprintf(key, sizeof key, "%s_loss_per_example", prefix);
    float *ref_example_loss = fixture_array(ref, key, "F32", NULL, NULL);
    snprintf(key, sizeof key, "%s_example_has_targets", prefix);
    int32_t *has_targets = fixture_array(ref, key, "I32", NULL, NULL);
    snprintf(key, sizeof key, "%s_loss", prefix);
    float *ref_loss = fixture_array(ref, key, "F32", NULL, NULL);

    zt_targets targets;
    ZT_REQUIRE_OK(zt_targets_from_labels(batch, seq_len, labels, m->dims.vocab_size, &targets));
    ZT_CHECK(targets.n == (int)n_ref_targets, "%s %s: %d targets, HF has %zu", fixture, prefix,
             targets.n, n_ref_targets);
    for (int r = 0; r < targets.n && r < (int)n_ref_targets; r++)
        ZT_CHECK(targets.rows[r] == ref_rows[r], "%s %s: target %d row %d, HF %d", fixture, prefix, r,
                 targets.rows[r], ref_rows[r]);

    int vocab = m->dims.vocab_size;
    float *logprobs = malloc((size_t)targets.n * sizeof *logprobs);
    float *logits = malloc((size_t)targets.n * vocab * sizeof *logits);
    zt_workspace *ws = NULL;
    zt_workspace_shape ws_shape = {batch, seq_len, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &ws_shape, &ws));
    zt_batch b = {batch, seq_len, ids, mask, targets.n, targets.rows, targets.ids};
    ZT_REQUIRE_OK(zt_model_forward(m, ws, &b, NULL, logprobs, logits));

    double max_err = 0.0;
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)targets.n * vocab; i++) {
        double err = fabs((double)logits[i] - ref_logits[i]);
        if (!(err <= 1e-4)) bad++;
        if (err > max_err || isnan(err)) max_err = err;
    }
    ZT_CHECK(bad == 0, "%s %s: %zu logits off by more than 1e-4 (max %.3g)", fixture, prefix, bad,
             max_err);
    if (max_err > worst_logit_error) worst_logit_error = max_err;

    double per_example[64], token_mean = 0.0;
    int count[64];
    zt_lm_loss(logprobs, &targets, batch, per_example, count, &token_mean);
    for (int e = 0; e < batch; e++) {
        ZT_CHECK((count[e] > 0) == (has_targets[e] != 0), "%s %s: example %d target presence",
                 fixture, prefix, e);
        if (!has_targets[e]) continue;
        ZT_CHECK_CLOSE(per_example[e], ref_example_loss[e], 0.0, 1e-5, "%s %s example %d loss",
                       fixture, prefix, e);
        double rel = fabs(per_example[e] - ref_example_loss[e]) / fabs(ref_example_loss[e]);
        if (rel > worst_loss_rel_error) worst_loss_rel_error = rel;
    }
    ZT_CHECK_CLOSE(token_mean, ref_loss[0], 0.0, 1e-5, "%s %s batch token-mean loss", fixture,
                   prefix);
    printf("  %-14s %-4s logits max|err| %.3g, loss %.9g (HF %.9g)\n", fixture, prefix, max_err,
           token_mean, ref_loss[0]);

    if (zt_st_find(ref, "lm_target_logits_native") && strcmp(prefix, "lm") == 0) {
        float *native = fixture_array(ref, "lm_target_logits_native", "F32", NULL, NULL);
        double dev = 0.0;
        for (size_t i = 0; i < (size_t)targets.n * vocab; i++)
            dev = fmax(dev, fabs((double)logits[i] - native[i]));
        printf("  %-14s      (HF native half-precision run differs by up to %.3g: it rounds "
               "activations too)\n",
               fixture, dev);
        free(native);
    }

    zt_workspace_free(ws);
    zt_targets_free(&targets);
    free(logprobs);
    free(logits);
    free(ids);
    free(mask);
    free(labels);
    free(ref_rows);
    free(ref_logits);
    free(ref_example_loss);
    free(has_targets);
    free(ref_loss);
}

static void check_classification(zt_model *m, const zt_safetensors *ref, const char *fixture) {
    int64_t shape[2];
    int32_t *ids = fixture_array(ref, "cls_input_ids", "I32", NULL, shape);
    int n_seq = (int)shape[0], seq_len = (int)shape[1];
    int32_t *mask = fixture_array(ref, "cls_attention_mask", "I32", NULL, NULL);
    int32_t *option_len = fixture_array(ref, "cls_option_len", "I32", NULL, NULL);
    int32_t *example = fixture_array(ref, "cls_example", "I32", NULL, NULL);
    size_t n_examples = 0;
    int32_t *label = fixture_array(ref, "cls_label", "I32", &n_examples, NULL);
    float *ref_scores = fixture_array(ref, "cls_scores", "F32", NULL, NULL);
    float *ref_loss = fixture_array(ref, "cls_loss", "F32", NULL, NULL);
    float *ref_per_example = fixture_array(ref, "cls_loss_per_example", "F32", NULL, NULL);

    zt_targets targets;
    ZT_REQUIRE_OK(zt_targets_for_options(n_seq, seq_len, ids, mask, option_len, &targets));
    float *logprobs = malloc((size_t)targets.n * sizeof *logprobs);
    zt_workspace *ws = NULL;
    zt_workspace_shape ws_shape = {n_seq, seq_len, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &ws_shape, &ws));
    zt_batch b = {n_seq, seq_len, ids, mask, targets.n, targets.rows, targets.ids};
    ZT_REQUIRE_OK(zt_model_forward(m, ws, &b, NULL, logprobs, NULL));

    double scores[64], per_example[64], loss = 0.0;
    zt_candidate_scores(logprobs, &targets, n_seq, scores);
    for (int s = 0; s < n_seq; s++)
        ZT_CHECK_CLOSE(scores[s], ref_scores[s], 0.0, 1e-5, "%s candidate %d score", fixture, s);
    ZT_CHECK_OK(zt_classification_loss(scores, example, n_seq, label, (int)n_examples, per_example,
                                       &loss));
    for (size_t e = 0; e < n_examples; e++)
        ZT_CHECK_CLOSE(per_example[e], ref_per_example[e], 0.0, 1e-5, "%s example %zu CE", fixture,
                       e);
    ZT_CHECK_CLOSE(loss, ref_loss[0], 0.0, 1e-5, "%s classification loss", fixture);
    double rel = fabs(loss - ref_loss[0]) / fabs(ref_loss[0]);
    if (rel > worst_loss_rel_error) worst_loss_rel_error = rel;
    printf("  %-14s cls  loss %.9g (HF %.9g)\n", fixture, loss, ref_loss[0]);

    zt_workspace_free(ws);
    zt_targets_free(&targets);
    free(logprobs);
    free(ids);
    free(mask);
    free(option_len);
    free(example);
    free(label);
    free(ref_scores);
    free(ref_loss);
    free(ref_per_example);
}

static void check_fixture(zt_backend *be, const char *fixture) {
    char dir[1024], ref_path[1024];
    fixture_path(dir, sizeof dir, fixture, NULL);
    fixture_path(ref_path, sizeof ref_path, fixture, "reference.safetensors");
    zt_model *m = NULL;
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));

    const char *hf_count = zt_st_metadata(ref, "num_parameters");
    ZT_CHECK(hf_count != NULL, "%s: reference lacks num_parameters", fixture);
    if (hf_count) {
        size_t want = strtoull(hf_count, NULL, 10);
        ZT_CHECK(zt_model_parameter_count(m) == want, "%s: %zu parameters, HF counts %zu", fixture,
                 zt_model_parameter_count(m), want);
        ZT_CHECK(zt_opt_parameter_count(zt_opt_config_of(m)) == want, "%s: formula gives %zu, HF %zu", fixture,
                 zt_opt_parameter_count(zt_opt_config_of(m)), want);
    }
    check_lm_batch(m, ref, fixture, "lm");
    check_lm_batch(m, ref, fixture, "lmr");
    check_classification(m, ref, fixture);
    zt_st_close(ref);
    zt_model_free(m);
}

/* The variant spelling (no "model." prefix, explicit tied lm_head, decoder.version, two shards)
 * must load to exactly the same weights as opt-pre: identical logits bit for bit. */
static void check_variant_spelling(zt_backend *be) {
    char dir_a[1024], dir_b[1024];
    fixture_path(dir_a, sizeof dir_a, "opt-pre", NULL);
    fixture_path(dir_b, sizeof dir_b, "opt-pre-variant", NULL);
    zt_model *a = NULL, *b = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir_a, be, &a));
    ZT_REQUIRE_OK(zt_model_load(dir_b, be, &b));
    ZT_CHECK(a->weights_bytes == b->weights_bytes && a->n_tensors == b->n_tensors,
             "variant layout differs");
    ZT_CHECK(memcmp(a->weights, b->weights, a->weights_bytes) == 0,
             "variant spelling loads different weights");
    zt_model_free(a);
    zt_model_free(b);
}

/* --trainable patterns on opt-pre's 36 tensors, counted by hand: 2 layers x 16 tensors, of which
 * 8 per layer are biases (k, v, q, out, fc1, fc2, and the two norms' betas). */
static void check_select(zt_backend *be) {
    char dir[1024];
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    uint8_t *selected = calloc((size_t)m->n_tensors, 1);
    const struct {
        const char *patterns;
        int want;
    } cases[] = {
        {NULL, 36},
        {"layers.*", 32},
        {"layers.*,!*bias", 16},
        {"!*bias", 36 - 16 - 1},                       /* all but the 16 layer biases and the final beta */
        {"model.decoder.embed_tokens.weight", 1},      /* the canonical name */
        {"layers.1.fc2.*,final_layer_norm.*", 4},      /* short names */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int count = -1;
        ZT_CHECK_OK(zt_model_select(m, cases[i].patterns, selected, &count));
        int marked = 0;
        for (int t = 0; t < m->n_tensors; t++) marked += selected[t];
        ZT_CHECK(count == cases[i].want && marked == count, "--trainable '%s': %d tensors, want %d",
                 cases[i].patterns ? cases[i].patterns : "(all)", count, cases[i].want);
    }
    int count = 0;
    zt_status s = zt_model_select(m, "layers.*,!nothing*", selected, &count);
    ZT_CHECK(s == ZT_ERR_INVALID_ARG && strstr(zt_last_error(), "nothing*"),
             "a pattern matching nothing is named: %s", zt_last_error());
    free(selected);
    zt_model_free(m);
}

int main(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 0, &be));
    const char *fixtures[] = {"opt-pre", "opt-post", "opt-pre-f16", "opt-pre-bf16"};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) check_fixture(be, fixtures[i]);
    check_variant_spelling(be);
    check_select(be);
    printf("max |logit error| %.3g, max relative loss error %.3g\n", worst_logit_error,
           worst_loss_rel_error);
    zt_backend_destroy(be);
    return zt_test_finish("test_opt_parity");
}
