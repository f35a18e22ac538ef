/* LoRA adapters (models/lora.h) against HF peft: the committed fixture tests/fixtures/opt-pre-lora
 * (tools/make_lora_fixtures.py: rank 4, alpha 7, q/k/v/out_proj, random non-zero B) loaded onto
 * opt-pre gives peft's logits; merging gives a plain checkpoint with the same logits; an adapter
 * zotune writes reloads bit for bit; a fresh adapter (B = 0) leaves the base's logits bit for
 * bit, with A drawn from the seed in peft's kaiming bound; backprop gives torch autograd's
 * adapter gradients; bad targets and configs are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../train/train_util.h"
#include "backprop.h"
#include "data/targets.h"
#include "fixture.h"
#include "lora.h"
#include "model.h"
#include "zt_test.h"

enum { B = 2, T = 8 };

typedef struct reference {
    int32_t *ids, *mask;
    float *logits; /* (B,T,V) */
    int vocab;
} reference;

static void read_reference(reference *ref) {
    char path[1024];
    fixture_path(path, sizeof path, "opt-pre-lora", "reference.safetensors");
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    int64_t shape[3];
    ref->ids = fixture_array(st, "input_ids", "I32", NULL, NULL);
    ref->mask = fixture_array(st, "attention_mask", "I32", NULL, NULL);
    ref->logits = fixture_array(st, "logits", "F32", NULL, shape);
    ref->vocab = (int)shape[2];
    zt_st_close(st);
}

/* The logits of every real token, (R,V) in row order, R returned. */
static int forward_logits(zt_model *m, const reference *ref, float *logits, int32_t *rows) {
    int32_t targets[B * T];
    int n = 0;
    for (int r = 0; r < B * T; r++)
        if (ref->mask[r]) {
            rows[n] = r;
            targets[n++] = 3;
        }
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {B, T, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    zt_batch batch = {B, T, ref->ids, ref->mask, n, rows, targets};
    float logprobs[B * T];
    ZT_REQUIRE_OK(zt_model_forward(m, ws, &batch, NULL, logprobs, logits));
    zt_workspace_free(ws);
    return n;
}

/* Largest |got - peft| / max(1, |peft|) over the real tokens' logits. */
static double worst_relative(const reference *ref, const float *got, const int32_t *rows, int n) {
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int v = 0; v < ref->vocab; v++) {
            const double want = ref->logits[(size_t)rows[i] * ref->vocab + v];
            const double err = fabs(got[(size_t)i * ref->vocab + v] - want) / fmax(1.0, fabs(want));
            if (!(err <= worst)) worst = err;
        }
    return worst;
}

static void fixture_options(zt_lora_options *o, const char *adapter_dir) {
    zt_lora_options_default(o);
    ZT_REQUIRE_OK(zt_lora_read_config(adapter_dir, o));
    o->adapter_dir = adapter_dir;
}

static void check_peft_parity(zt_backend *be, const reference *ref, const char *tmp) {
    char base[1024], adapter[1024], merged[1200], exported[1200];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(adapter, sizeof adapter, "opt-pre-lora", NULL);
    zt_lora_options o;
    fixture_options(&o, adapter);
    ZT_CHECK(o.rank == 4 && o.alpha == 7.0, "adapter_config.json: r %d alpha %g", o.rank, o.alpha);
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load_peft(base, be, &o, &m));
    ZT_CHECK(m->n_tensors == m->lora->n_base + 16, "2 layers x 4 modules x (A, B): %d adapters",
             m->n_tensors - m->lora->n_base);
    const size_t per = (size_t)B * T * ref->vocab;
    float *logits = malloc(per * sizeof *logits), *again = malloc(per * sizeof *again);
    float *plain = malloc(per * sizeof *plain);
    int32_t rows[B * T];
    const int n = forward_logits(m, ref, logits, rows);
    const double err = worst_relative(ref, logits, rows, n);
    printf("  adapter vs peft: %d rows, max relative logit error %.3g\n", n, err);
    ZT_CHECK(err <= 1e-4, "LoRA logits off peft's by %.3g relative", err);

    /* the adapter matters: the base alone is far from peft's logits */
    zt_model *bare = NULL;
    ZT_REQUIRE_OK(zt_model_load(base, be, &bare));
    forward_logits(bare, ref, plain, rows);
    const double base_gap = worst_relative(ref, plain, rows, n);
    printf("  base alone vs peft: %.3g\n", base_gap);
    ZT_CHECK(base_gap > 1e-2, "the adapter changes the logits by only %.3g", base_gap);
    ZT_CHECK(bare->fingerprint == m->fingerprint, "the LoRA model's fingerprint is the base's");
    zt_model_free(bare);

    /* export round trip: zotune's files reload bit for bit */
    snprintf(exported, sizeof exported, "%s/exported", tmp);
    ZT_REQUIRE_OK(zt_lora_save(m, exported, base));
    zt_lora_options o2;
    fixture_options(&o2, exported);
    ZT_CHECK(o2.rank == o.rank && o2.alpha == o.alpha, "exported config: r %d alpha %g", o2.rank,
             o2.alpha);
    zt_model *reloaded = NULL;
    ZT_REQUIRE_OK(zt_model_load_peft(base, be, &o2, &reloaded));
    forward_logits(reloaded, ref, again, rows);
    ZT_CHECK(memcmp(logits, again, (size_t)n * ref->vocab * sizeof *logits) == 0,
             "a reloaded export gives other logits");
    zt_model_free(reloaded);

    /* merge: a plain checkpoint with the same logits; the base tensors saved stay HF's names */
    ZT_REQUIRE_OK(zt_lora_merge(m));
    snprintf(merged, sizeof merged, "%s/merged", tmp);
    ZT_REQUIRE_OK(zt_model_save(m, merged));
    zt_model *folded = NULL;
    ZT_REQUIRE_OK(zt_model_load(merged, be, &folded));
    ZT_CHECK(folded->n_tensors == m->lora->n_base, "merged checkpoint holds %d tensors",
             folded->n_tensors);
    forward_logits(folded, ref, again, rows);
    const double merge_err = worst_relative(ref, again, rows, n);
    printf("  merged vs peft: max relative logit error %.3g\n", merge_err);
    ZT_CHECK(merge_err <= 1e-4, "merged logits off peft's by %.3g relative", merge_err);
    zt_model_free(folded);
    zt_model_free(m);
    free(logits);
    free(again);
    free(plain);
}

/* A fresh adapter: B = 0 leaves every logit bit for bit; A within peft's kaiming bound, spread
 * over it, the same for the same seed and different for another. */
static void check_fresh(zt_backend *be, const reference *ref) {
    char base[1024];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    zt_lora_options o;
    zt_lora_options_default(&o);
    o.init_seed = zt_lora_init_seed(42);
    zt_model *m = NULL, *bare = NULL, *same = NULL, *other = NULL;
    ZT_REQUIRE_OK(zt_model_load_peft(base, be, &o, &m));
    ZT_REQUIRE_OK(zt_model_load(base, be, &bare));
    ZT_REQUIRE_OK(zt_model_load_peft(base, be, &o, &same));
    o.init_seed = zt_lora_init_seed(43);
    ZT_REQUIRE_OK(zt_model_load_peft(base, be, &o, &other));
    const size_t per = (size_t)B * T * ref->vocab;
    float *a = malloc(per * sizeof *a), *b = malloc(per * sizeof *b);
    int32_t rows[B * T];
    const int n = forward_logits(m, ref, a, rows);
    forward_logits(bare, ref, b, rows);
    ZT_CHECK(memcmp(a, b, (size_t)n * ref->vocab * sizeof *a) == 0,
             "a fresh adapter (B = 0) changes the logits");
    ZT_CHECK(m->n_tensors == m->lora->n_base + 8, "q_proj, v_proj: %d adapters",
             m->n_tensors - m->lora->n_base);
    const int first = m->lora->n_base;
    const zt_tensor_info *A = &m->tensors[first];
    ZT_CHECK(strcmp(A->name, "model.decoder.layers.0.self_attn.v_proj.lora_A.weight") == 0,
             "adapters in table order: first is %s", A->name);
    const float *av = (const float *)((const char *)m->weights + A->offset);
    const float *same_av = (const float *)((const char *)same->weights + A->offset);
    const float *other_av = (const float *)((const char *)other->weights + A->offset);
    const double bound = 1.0 / sqrt((double)A->shape[1]);
    double lo = 1, hi = -1, mean = 0;
    for (size_t j = 0; j < A->n_elems; j++) {
        lo = fmin(lo, av[j]);
        hi = fmax(hi, av[j]);
        mean += av[j];
    }
    mean /= (double)A->n_elems;
    ZT_CHECK(lo >= -bound && hi < bound, "A in [%g, %g], bound %g", lo, hi, bound);
    ZT_CHECK(lo < -0.8 * bound && hi > 0.8 * bound, "A spans only [%g, %g]", lo, hi);
    ZT_CHECK(fabs(mean) < 0.15 * bound, "A's mean %g", mean);
    ZT_CHECK(memcmp(av, same_av, A->n_elems * sizeof *av) == 0, "same seed, other A");
    ZT_CHECK(memcmp(av, other_av, A->n_elems * sizeof *av) != 0, "other seed, same A");
    const zt_tensor_info *Bt = &m->tensors[first + 1];
    const float *bv = (const float *)((const char *)m->weights + Bt->offset);
    int zero = 1;
    for (size_t j = 0; j < Bt->n_elems; j++)
        zero &= bv[j] == 0.0f;
    ZT_CHECK(zero && strstr(Bt->name, "lora_B"), "%s starts at zero", Bt->name);
    free(a);
    free(b);
    zt_model_free(m);
    zt_model_free(bare);
    zt_model_free(same);
    zt_model_free(other);
}

/* Backprop through the frozen base into the adapters: every adapter's gradient of the token-mean
 * LM loss against torch autograd through peft, within 1e-5 relative L2; checkpointed or not. */
static void check_gradients(zt_backend *be, int checkpoint) {
    char base[1024], adapter[1024], path[1200];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(adapter, sizeof adapter, "opt-pre-lora", NULL);
    fixture_path(path, sizeof path, "opt-pre-lora", "reference.safetensors");
    zt_lora_options o;
    fixture_options(&o, adapter);
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load_peft(base, be, &o, &m));
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    int32_t *ids = fixture_array(st, "input_ids", "I32", NULL, NULL);
    int32_t *mask = fixture_array(st, "attention_mask", "I32", NULL, NULL);
    int32_t *labels = fixture_array(st, "labels", "I32", NULL, NULL);
    float *ref_loss = fixture_array(st, "loss", "F32", NULL, NULL);
    zt_targets targets;
    ZT_REQUIRE_OK(zt_targets_from_labels(B, T, labels, m->dims.vocab_size, &targets));
    float *weights = malloc((size_t)targets.n * sizeof *weights);
    for (int r = 0; r < targets.n; r++)
        weights[r] = 1.0f / (float)targets.n;
    size_t *offsets = malloc((size_t)m->n_tensors * sizeof *offsets);
    const size_t total = zt_model_grad_layout(m, offsets);
    float *grads = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, total * sizeof(float), ZT_MEM_SCRATCH, (void **)&grads));
    ZT_REQUIRE_OK(zt_backend_zero(be, grads, total));
    zt_grad_buffers *gb = NULL;
    ZT_REQUIRE_OK(zt_grad_buffers_create(m, B, T, checkpoint, &gb));
    zt_batch batch = {B, T, ids, mask, targets.n, targets.rows, targets.ids};
    double loss = 0;
    ZT_REQUIRE_OK(zt_model_grad(m, gb, &batch, weights, grads, &loss));
    ZT_CHECK_CLOSE(loss, ref_loss[0], 0.0, 1e-5, "LoRA loss against peft's");
    double worst = 0;
    for (int i = m->lora->n_base; i < m->n_tensors; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        char key[ZT_TENSOR_NAME_MAX + 8];
        snprintf(key, sizeof key, "grad/%s", t->name);
        float *want = fixture_array(st, key, "F32", NULL, NULL);
        double num = 0, den = 0;
        const float *got = grads + offsets[i];
        for (size_t j = 0; j < t->n_elems; j++) {
            num += ((double)got[j] - want[j]) * ((double)got[j] - want[j]);
            den += (double)want[j] * want[j];
        }
        const double rel = sqrt(num / den);
        ZT_CHECK(rel <= 1e-5 && den > 0, "%s: gradient off by %.3g relative L2", t->name, rel);
        if (rel > worst) worst = rel;
        free(want);
    }
    printf("  adapter gradients vs peft autograd (checkpoint %d): worst relative L2 %.3g, loss "
           "%.9g (torch %.9g)\n",
           checkpoint, worst, loss, ref_loss[0]);
    zt_grad_buffers_free(gb);
    be->ops->free(be, grads, total * sizeof(float), ZT_MEM_SCRATCH);
    free(offsets);
    free(weights);
    free(targets.rows);
    free(targets.ids);
    free(targets.example);
    free(ids);
    free(mask);
    free(labels);
    free(ref_loss);
    zt_st_close(st);
    zt_model_free(m);
}

static void check_refusals(zt_backend *be, const char *tmp) {
    char base[1024], dir[1200], path[1300];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    zt_lora_options o;
    zt_lora_options_default(&o);
    zt_model *m = NULL;
    snprintf(o.targets, sizeof o.targets, "q_proj,fc1");
    ZT_CHECK(zt_model_load_peft(base, be, &o, &m) == ZT_ERR_INVALID_ARG &&
                 strstr(zt_last_error(), "fc1"),
             "fc1 accepted: %s", zt_last_error());
    snprintf(o.targets, sizeof o.targets, "q_proj");
    o.rank = 0;
    ZT_CHECK(zt_model_load_peft(base, be, &o, &m) == ZT_ERR_INVALID_ARG &&
                 strstr(zt_last_error(), "--lora-rank"),
             "rank 0 accepted: %s", zt_last_error());
    snprintf(dir, sizeof dir, "%s/rslora", tmp);
    ZT_REQUIRE(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": "
          "[\"q_proj\"], \"use_rslora\": true}",
          f);
    fclose(f);
    ZT_CHECK(zt_lora_read_config(dir, &o) == ZT_ERR_UNAVAILABLE &&
                 strstr(zt_last_error(), "use_rslora"),
             "rsLoRA accepted: %s", zt_last_error());
}

int main(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &be));
    reference ref;
    read_reference(&ref);
    char tmp[256];
    make_temp_dir(tmp, sizeof tmp, "lora");
    check_peft_parity(be, &ref, tmp);
    check_fresh(be, &ref);
    check_gradients(be, 0);
    check_gradients(be, 1);
    check_refusals(be, tmp);
    remove_run_dir(tmp);
    free(ref.ids);
    free(ref.mask);
    free(ref.logits);
    zt_backend_destroy(be);
    return zt_test_finish("test_lora");
}
