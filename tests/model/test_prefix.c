/* Prefix tuning (models/prefix.h) against HF's OPT: the committed fixture
 * tests/fixtures/opt-pre-prefix (tools/make_prefix_fixtures.py: 5 prefixes per layer handed to
 * transformers as past_key_values, the mask prefixed with ones, positions from the original mask)
 * loaded onto opt-pre gives HF's logits on every row, padded ones included; backprop gives torch
 * autograd's prefix gradients; the init by real activations gives HF's past_key_values on the
 * same token ids; a saved adapter reloads bit for bit; the seeded init is that rule on the seed's
 * tokens; bad configs are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../train/train_util.h"
#include "backprop.h"
#include "data/targets.h"
#include "fixture.h"
#include "model.h"
#include "prefix.h"
#include "zt_test.h"

enum { B = 3, T = 8 };

static zt_safetensors *open_reference(void) {
    char path[1024];
    fixture_path(path, sizeof path, "opt-pre-prefix", "reference.safetensors");
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    return st;
}

static zt_model *load_with_adapter(zt_backend *be, const char *adapter) {
    char base[1024];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    zt_prefix_options o;
    zt_prefix_options_default(&o);
    ZT_REQUIRE_OK(zt_prefix_read_config(adapter, &o));
    o.adapter_dir = adapter;
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load_prefix(base, be, &o, &m));
    return m;
}

/* Every row's logits (B*T, V): each row a target, so the head sees them all. */
static void forward_logits(zt_model *m, const int32_t *ids, const int32_t *mask, float *logits) {
    int32_t rows[B * T], targets[B * T];
    for (int r = 0; r < B * T; r++) {
        rows[r] = r;
        targets[r] = 3;
    }
    zt_workspace *ws = NULL;
    const zt_workspace_shape shape = {B, T, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    const zt_batch batch = {B, T, ids, mask, B * T, rows, targets};
    float logprobs[B * T];
    ZT_REQUIRE_OK(zt_model_forward(m, ws, &batch, NULL, logprobs, logits));
    zt_workspace_free(ws);
}

static void check_hf_parity(zt_backend *be, const char *tmp) {
    char adapter[1024];
    fixture_path(adapter, sizeof adapter, "opt-pre-prefix", NULL);
    zt_safetensors *st = open_reference();
    int64_t shape[3];
    int32_t *ids = fixture_array(st, "input_ids", "I32", NULL, NULL);
    int32_t *mask = fixture_array(st, "attention_mask", "I32", NULL, NULL);
    float *want = fixture_array(st, "logits", "F32", NULL, shape);
    const int vocab = (int)shape[2];
    zt_model *m = load_with_adapter(be, adapter);
    ZT_CHECK(m->n_tensors == m->prefix->n_base + 2 * m->dims.n_layers &&
                 strcmp(m->tensors[m->prefix->n_base + 1].name,
                        "model.decoder.layers.0.self_attn.prefix_values") == 0,
             "prefix tensors not appended as MeZO names them");
    float *got = malloc((size_t)B * T * vocab * sizeof *got);
    forward_logits(m, ids, mask, got);
    double worst = 0, worst_pad = 0;
    for (int r = 0; r < B * T; r++)
        for (int v = 0; v < vocab; v++) {
            const double w = want[(size_t)r * vocab + v];
            const double err = fabs(got[(size_t)r * vocab + v] - w) / fmax(1.0, fabs(w));
            double *into = mask[r] ? &worst : &worst_pad;
            if (!(err <= *into)) *into = err;
        }
    ZT_CHECK(worst <= 1e-4, "logits off HF's by %.3g relative on real tokens", worst);
    ZT_CHECK(worst_pad <= 1e-4, "logits off HF's by %.3g relative on padded rows", worst_pad);
    printf("  logits vs HF with past_key_values prefixes: worst relative %.3g (real), %.3g (pad)\n",
           worst, worst_pad);

    /* zotune's own files reload bit for bit */
    char saved[1200];
    snprintf(saved, sizeof saved, "%s/saved", tmp);
    ZT_REQUIRE_OK(zt_prefix_save(m, saved, "opt-pre"));
    ZT_CHECK(zt_prefix_dir_is_prefix(saved), "saved adapter not recognised");
    zt_model *again = load_with_adapter(be, saved);
    float *reloaded = malloc((size_t)B * T * vocab * sizeof *reloaded);
    forward_logits(again, ids, mask, reloaded);
    ZT_CHECK(memcmp(got, reloaded, (size_t)B * T * vocab * sizeof *got) == 0,
             "saved prefixes do not reload bit for bit");
    zt_model_free(again);
    free(reloaded);
    free(got);
    free(want);
    free(ids);
    free(mask);
    zt_st_close(st);
    zt_model_free(m);
}

/* d loss / d prefixes against torch autograd through HF's OPT, within 1e-5 relative L2. */
static void check_gradients(zt_backend *be, int checkpoint) {
    char adapter[1024];
    fixture_path(adapter, sizeof adapter, "opt-pre-prefix", NULL);
    zt_model *m = load_with_adapter(be, adapter);
    zt_safetensors *st = open_reference();
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
    ZT_CHECK(offsets[0] == ZT_NO_GRADIENT, "a base tensor has a gradient");
    float *grads = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, total * sizeof(float), ZT_MEM_SCRATCH, (void **)&grads));
    ZT_REQUIRE_OK(zt_backend_zero(be, grads, total));
    zt_grad_buffers *gb = NULL;
    ZT_REQUIRE_OK(zt_grad_buffers_create(m, B, T, checkpoint, &gb));
    const zt_batch batch = {B, T, ids, mask, targets.n, targets.rows, targets.ids};
    double loss = 0;
    ZT_REQUIRE_OK(zt_model_grad(m, gb, &batch, weights, grads, &loss));
    ZT_CHECK_CLOSE(loss, ref_loss[0], 0.0, 1e-5, "prefix loss against HF's");
    double worst = 0;
    for (int i = m->prefix->n_base; i < m->n_tensors; i++) {
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
    printf("  prefix gradients vs HF autograd (checkpoint %d): worst relative L2 %.3g, loss %.9g "
           "(torch %.9g)\n",
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

static float *download_tensor(const zt_model *m, int id) {
    const zt_tensor_info *t = &m->tensors[id];
    float *host = malloc(t->n_elems * sizeof *host);
    ZT_REQUIRE_OK(m->be->ops->download(m->be, host, (const char *)m->weights + t->offset,
                                       t->n_elems * sizeof *host));
    return host;
}

/* The init rule on HF's token ids gives HF's past_key_values; the seeded init is the same rule on
 * zt_prefix_init_token_ids' tokens, which are in range and depend on the seed. */
static void check_init(zt_backend *be) {
    char base[1024];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    zt_prefix_options o;
    zt_prefix_options_default(&o);
    o.init_seed = zt_prefix_init_seed(42);
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load_prefix(base, be, &o, &m));
    const int n = o.n_prefix, first = m->prefix->n_base;
    float *seeded = download_tensor(m, first);
    int32_t seed_ids[ZT_PREFIX_DEFAULT_TOKENS], other_ids[ZT_PREFIX_DEFAULT_TOKENS];
    zt_prefix_init_token_ids(o.init_seed, n, m->dims.vocab_size, seed_ids);
    zt_prefix_init_token_ids(zt_prefix_init_seed(43), n, m->dims.vocab_size, other_ids);
    int in_range = 1;
    for (int i = 0; i < n; i++)
        in_range &= seed_ids[i] >= 0 && seed_ids[i] < m->dims.vocab_size;
    ZT_CHECK(in_range, "initial token ids outside the vocabulary");
    ZT_CHECK(memcmp(seed_ids, other_ids, sizeof seed_ids) != 0, "two seeds draw the same tokens");
    ZT_REQUIRE_OK(zt_prefix_init_from_tokens(m, seed_ids, NULL));
    float *again = download_tensor(m, first);
    ZT_CHECK(memcmp(seeded, again, m->tensors[first].n_elems * sizeof *again) == 0,
             "the seeded init is not the rule on the seed's tokens");
    free(seeded);
    free(again);

    zt_safetensors *st = open_reference();
    int32_t *ids = fixture_array(st, "init/ids", "I32", NULL, NULL);
    ZT_REQUIRE_OK(zt_prefix_init_from_tokens(m, ids, NULL));
    double worst = 0;
    for (int i = first; i < m->n_tensors; i++) {
        char key[ZT_TENSOR_NAME_MAX + 8];
        snprintf(key, sizeof key, "init/%s", m->tensors[i].name);
        float *want = fixture_array(st, key, "F32", NULL, NULL);
        float *got = download_tensor(m, i);
        double num = 0, den = 0;
        for (size_t j = 0; j < m->tensors[i].n_elems; j++) {
            num += ((double)got[j] - want[j]) * ((double)got[j] - want[j]);
            den += (double)want[j] * want[j];
        }
        const double rel = sqrt(num / den);
        if (!(rel <= worst)) worst = rel;
        free(want);
        free(got);
    }
    ZT_CHECK(worst <= 1e-5, "init by real activations off HF's past_key_values by %.3g rel L2",
             worst);
    printf("  init by real activations vs HF past_key_values: worst relative L2 %.3g\n", worst);
    free(ids);
    zt_st_close(st);
    zt_model_free(m);
}

static void check_refusals(zt_backend *be, const char *tmp) {
    char base[1024], dir[1200], path[1300];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    zt_prefix_options o;
    zt_prefix_options_default(&o);
    zt_model *m = NULL;
    o.n_prefix = 0;
    ZT_CHECK(zt_model_load_prefix(base, be, &o, &m) == ZT_ERR_INVALID_ARG &&
                 strstr(zt_last_error(), "--num-prefix"),
             "0 prefixes accepted: %s", zt_last_error());
    o.n_prefix = 33; /* opt-pre has 32 positions */
    ZT_CHECK(zt_model_load_prefix(base, be, &o, &m) == ZT_ERR_INVALID_ARG,
             "more prefixes than positions accepted");
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    ZT_REQUIRE(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"peft_type\": \"MEZO_PREFIX\", \"num_prefix\": 2.5}", f);
    fclose(f);
    ZT_CHECK(zt_prefix_read_config(dir, &o) == ZT_ERR_FORMAT &&
                 strstr(zt_last_error(), "num_prefix"),
             "num_prefix 2.5 accepted: %s", zt_last_error());
    f = fopen(path, "w");
    fputs("{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 5}", f);
    fclose(f);
    ZT_CHECK(!zt_prefix_dir_is_prefix(dir), "peft's PREFIX_TUNING taken for MeZO's");
    ZT_CHECK(zt_prefix_read_config(dir, &o) == ZT_ERR_FORMAT &&
                 strstr(zt_last_error(), "MEZO_PREFIX"),
             "peft's PREFIX_TUNING accepted: %s", zt_last_error());
}

int main(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &be));
    char tmp[256];
    make_temp_dir(tmp, sizeof tmp, "prefix");
    check_hf_parity(be, tmp);
    check_gradients(be, 0);
    check_gradients(be, 1);
    check_init(be);
    check_refusals(be, tmp);
    remove_run_dir(tmp);
    zt_backend_destroy(be);
    return zt_test_finish("test_prefix");
}
