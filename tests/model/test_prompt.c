/* Prompt tuning (models/prompt.h) against HF peft: the committed fixture
 * tests/fixtures/opt-pre-prompt (tools/make_prompt_fixtures.py: 3 virtual tokens on opt-pre, a
 * noisy SAMPLE_VOCAB table) loaded the way --adapter loads it gives peft's logits on a batch with
 * left padding, through the plain and the cached forward; backprop gives torch autograd's
 * gradient of the table; a table zotune writes reloads bit for bit; a fresh table holds the
 * token-table rows of the ids drawn from its own seed; bad configs are refused. */
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
#include "prompt.h"
#include "zt_test.h"

enum { B = 2, T = 8, N_VIRTUAL = 3 };

typedef struct reference {
    int32_t *ids, *mask;
    float *logits; /* (B,T,V) */
    int vocab;
} reference;

static void read_reference(reference *ref) {
    char path[1024];
    fixture_path(path, sizeof path, "opt-pre-prompt", "reference.safetensors");
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    int64_t shape[3];
    ref->ids = fixture_array(st, "input_ids", "I32", NULL, NULL);
    ref->mask = fixture_array(st, "attention_mask", "I32", NULL, NULL);
    ref->logits = fixture_array(st, "logits", "F32", NULL, shape);
    ref->vocab = (int)shape[2];
    zt_st_close(st);
}

/* The model and its prompt adapter, as zt_cli_load_model reads --adapter DIR. */
static zt_model *load_fixture(zt_backend *be) {
    char base[1024], adapter[1024];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(adapter, sizeof adapter, "opt-pre-prompt", NULL);
    ZT_CHECK(zt_prompt_dir_is_prompt(adapter), "%s: not recognised as a prompt adapter", adapter);
    zt_prompt_options o;
    zt_prompt_options_default(&o);
    ZT_REQUIRE_OK(zt_prompt_read_config(adapter, &o));
    ZT_CHECK(o.n_virtual == N_VIRTUAL, "num_virtual_tokens %d", o.n_virtual);
    o.adapter_dir = adapter;
    const zt_peft_options peft = {NULL, &o, NULL};
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load_adapted(base, be, &peft, &m));
    return m;
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

static void check_peft_parity(zt_backend *be, const reference *ref, const char *tmp) {
    zt_model *m = load_fixture(be);
    ZT_CHECK(m->n_tensors == m->prompt->n_base + 1 && m->prompt->table == m->prompt->n_base,
             "one table after the %d base tensors: %d tensors", m->prompt->n_base, m->n_tensors);
    const zt_tensor_info *t = &m->tensors[m->prompt->table];
    ZT_CHECK(t->shape[0] == N_VIRTUAL && t->shape[1] == m->dims.head_input_size &&
                 t->dtype == ZT_F32,
             "table [%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
    float *logits = malloc((size_t)B * T * ref->vocab * sizeof *logits);
    int32_t rows[B * T];
    const int n = forward_logits(m, ref, logits, rows);
    const double err = worst_relative(ref, logits, rows, n);
    ZT_CHECK(n == B * T - 3 && err <= 1e-4, "%d rows: logits off peft's by %.3g relative", n, err);
    printf("  prompt adapter vs peft: %d rows (one left-padded by 3), max relative logit error "
           "%.3g\n",
           n, err);

    /* the table matters: the base alone is far from peft's logits */
    char base[1024];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    zt_model *plain = NULL;
    ZT_REQUIRE_OK(zt_model_load(base, be, &plain));
    forward_logits(plain, ref, logits, rows);
    const double gap = worst_relative(ref, logits, rows, n);
    ZT_CHECK(gap > 1e-2, "the prompt changes the logits by only %.3g", gap);
    zt_model_free(plain);

    /* written by zotune, read back: the same table bit for bit, a config peft's reader takes */
    char out[1200];
    snprintf(out, sizeof out, "%s/exported", tmp);
    ZT_REQUIRE_OK(zt_prompt_save(m, out, base));
    zt_prompt_options o;
    zt_prompt_options_default(&o);
    ZT_CHECK_OK(zt_prompt_read_config(out, &o));
    ZT_CHECK(o.n_virtual == N_VIRTUAL && zt_prompt_dir_is_prompt(out), "re-read config: N = %d",
             o.n_virtual);
    o.adapter_dir = out;
    const zt_peft_options peft = {NULL, &o, NULL};
    zt_model *again = NULL;
    ZT_REQUIRE_OK(zt_model_load_adapted(base, be, &peft, &again));
    const size_t bytes = t->n_elems * sizeof(float);
    float *x = malloc(bytes), *y = malloc(bytes);
    ZT_REQUIRE_OK(be->ops->download(be, x, (char *)m->weights + t->offset, bytes));
    ZT_REQUIRE_OK(be->ops->download(be, y, (char *)again->weights + t->offset, bytes));
    ZT_CHECK(memcmp(x, y, bytes) == 0, "exported table differs after reloading");
    free(x);
    free(y);
    zt_model_free(again);
    free(logits);
    zt_model_free(m);
}

/* The cached forward (generation) puts the virtual tokens in front of the first call only: the
 * batch fed in two calls (6 tokens, then 2) gives peft's logits at each sequence's last token. */
static void check_cached(zt_backend *be, const reference *ref) {
    zt_model *m = load_fixture(be);
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {B, T, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    zt_kv_cache *cache = NULL;
    ZT_REQUIRE_OK(zt_kv_cache_create(m, B, T, &cache));
    const int first = 6, rest = T - first;
    int32_t ids[B * T], mask[B * T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < first; t++)
            ids[b * first + t] = ref->ids[b * T + t], mask[b * first + t] = ref->mask[b * T + t];
    float *logits = malloc((size_t)B * ref->vocab * sizeof *logits);
    ZT_REQUIRE_OK(zt_model_forward_cached(m, ws, cache, B, first, ids, mask, NULL, logits));
    ZT_CHECK(zt_kv_cache_length(cache) == first + N_VIRTUAL, "cache length %d after %d tokens",
             zt_kv_cache_length(cache), first);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < rest; t++)
            ids[b * rest + t] = ref->ids[b * T + first + t],
                           mask[b * rest + t] = ref->mask[b * T + first + t];
    ZT_REQUIRE_OK(zt_model_forward_cached(m, ws, cache, B, rest, ids, mask, NULL, logits));
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int v = 0; v < ref->vocab; v++) {
            const double want = ref->logits[((size_t)b * T + T - 1) * ref->vocab + v];
            const double err =
                fabs(logits[(size_t)b * ref->vocab + v] - want) / fmax(1.0, fabs(want));
            if (!(err <= worst)) worst = err;
        }
    ZT_CHECK(worst <= 1e-4, "cached forward: last logits off peft's by %.3g", worst);
    printf("  cached forward (6 + 2 tokens) vs peft: max relative logit error %.3g\n", worst);
    free(logits);
    zt_kv_cache_free(cache);
    zt_workspace_free(ws);
    zt_model_free(m);
}

/* Backprop through the frozen base into the table: the token-mean LM loss and its gradient
 * against torch autograd through peft, within 1e-5 relative L2; checkpointed or not. */
static void check_gradient(zt_backend *be, int checkpoint) {
    char path[1200];
    fixture_path(path, sizeof path, "opt-pre-prompt", "reference.safetensors");
    zt_model *m = load_fixture(be);
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    int32_t *ids = fixture_array(st, "input_ids", "I32", NULL, NULL);
    int32_t *mask = fixture_array(st, "attention_mask", "I32", NULL, NULL);
    int32_t *labels = fixture_array(st, "labels", "I32", NULL, NULL);
    float *ref_loss = fixture_array(st, "loss", "F32", NULL, NULL);
    float *want = fixture_array(st, "grad/prompt_embeddings", "F32", NULL, NULL);
    zt_targets targets;
    ZT_REQUIRE_OK(zt_targets_from_labels(B, T, labels, m->dims.vocab_size, &targets));
    float *weights = malloc((size_t)targets.n * sizeof *weights);
    for (int r = 0; r < targets.n; r++)
        weights[r] = 1.0f / (float)targets.n;
    size_t *offsets = malloc((size_t)m->n_tensors * sizeof *offsets);
    const size_t total = zt_model_grad_layout(m, offsets);
    const zt_tensor_info *t = &m->tensors[m->prompt->table];
    ZT_CHECK(total == t->n_elems && offsets[0] == ZT_NO_GRADIENT,
             "the table alone has a gradient: %zu elements", total);
    float *grads = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, total * sizeof(float), ZT_MEM_SCRATCH, (void **)&grads));
    ZT_REQUIRE_OK(zt_backend_zero(be, grads, total));
    zt_grad_buffers *gb = NULL;
    ZT_REQUIRE_OK(zt_grad_buffers_create(m, B, T, checkpoint, &gb));
    zt_batch batch = {B, T, ids, mask, targets.n, targets.rows, targets.ids};
    double loss = 0;
    ZT_REQUIRE_OK(zt_model_grad(m, gb, &batch, weights, grads, &loss));
    ZT_CHECK_CLOSE(loss, ref_loss[0], 0.0, 1e-5, "prompt-tuned loss against peft's");
    const float *got = grads + offsets[m->prompt->table];
    double num = 0, den = 0;
    for (size_t j = 0; j < t->n_elems; j++) {
        num += ((double)got[j] - want[j]) * ((double)got[j] - want[j]);
        den += (double)want[j] * want[j];
    }
    const double rel = sqrt(num / den);
    ZT_CHECK(rel <= 1e-5 && den > 0, "prompt table gradient off by %.3g relative L2", rel);
    printf("  prompt table gradient vs peft autograd (checkpoint %d): relative L2 %.3g, loss "
           "%.9g (torch %.9g)\n",
           checkpoint, rel, loss, ref_loss[0]);
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
    free(want);
    zt_st_close(st);
    zt_model_free(m);
}

/* SAMPLE_VOCAB: row i of a fresh table is the token-table row of the i-th id drawn under the
 * seed; another seed (LoRA's stream of the same run seed) draws other ids. */
static void check_fresh(zt_backend *be) {
    char base[1024];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    zt_prompt_options o;
    zt_prompt_options_default(&o);
    ZT_CHECK(o.n_virtual == 10, "default N %d", o.n_virtual);
    o.n_virtual = 8;
    o.init_seed = zt_prompt_init_seed(42);
    const zt_peft_options peft = {NULL, &o, NULL};
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load_adapted(base, be, &peft, &m));
    int32_t ids[8], other[8];
    zt_prompt_sample_ids(m, o.init_seed, ids);
    zt_prompt_sample_ids(m, zt_lora_init_seed(42), other);
    int distinct = 0, differ = 0;
    for (int i = 0; i < 8; i++) {
        ZT_CHECK(ids[i] >= 0 && ids[i] < m->dims.vocab_size, "id %d out of range", ids[i]);
        for (int j = 0; j < i; j++)
            distinct += ids[i] == ids[j];
        differ += ids[i] != other[i];
    }
    ZT_CHECK(distinct == 0 && differ >= 7, "ids repeat (%d) or match LoRA's stream (%d differ)",
             distinct, differ);
    const zt_tensor_info *t = &m->tensors[m->prompt->table], *tok = &m->tensors[m->embed_tokens];
    const size_t e = (size_t)t->shape[1];
    float *table = malloc(t->n_elems * sizeof *table);
    float *tokens = malloc(tok->n_elems * sizeof *tokens);
    ZT_REQUIRE(tok->dtype == ZT_F32, "opt-pre stores f32");
    ZT_REQUIRE_OK(
        be->ops->download(be, table, (char *)m->weights + t->offset, t->n_elems * sizeof *table));
    ZT_REQUIRE_OK(be->ops->download(be, tokens, (char *)m->weights + tok->offset,
                                    tok->n_elems * sizeof *tokens));
    int same = 1;
    for (int i = 0; i < 8; i++)
        same &= memcmp(table + i * e, tokens + (size_t)ids[i] * e, e * sizeof(float)) == 0;
    ZT_CHECK(same, "a fresh table's rows are not the sampled ids' token rows");
    free(table);
    free(tokens);
    zt_model_free(m);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ZT_REQUIRE(f != NULL, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void check_refusals(zt_backend *be, const char *tmp) {
    char base[1024], dir[1200];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    zt_prompt_options o;
    zt_prompt_options_default(&o);
    zt_model *m = NULL;
    o.n_virtual = 32; /* opt-pre has 32 positions */
    const zt_peft_options peft = {NULL, &o, NULL};
    ZT_CHECK(zt_model_load_adapted(base, be, &peft, &m) == ZT_ERR_INVALID_ARG &&
                 strstr(zt_last_error(), "--num-virtual-tokens"),
             "N = 32 accepted: %s", zt_last_error());
    snprintf(dir, sizeof dir, "%s/seq2seq", tmp);
    ZT_REQUIRE(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    write_file(dir, "adapter_config.json",
               "{\"peft_type\": \"PROMPT_TUNING\", \"task_type\": \"CAUSAL_LM\", "
               "\"num_virtual_tokens\": 4, \"num_transformer_submodules\": 2}");
    ZT_CHECK(zt_prompt_read_config(dir, &o) == ZT_ERR_UNAVAILABLE &&
                 strstr(zt_last_error(), "num_transformer_submodules"),
             "2 submodules accepted: %s", zt_last_error());
    write_file(dir, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4}");
    ZT_CHECK(!zt_prompt_dir_is_prompt(dir) && zt_prompt_read_config(dir, &o) == ZT_ERR_FORMAT &&
                 strstr(zt_last_error(), "PROMPT_TUNING"),
             "a LoRA config read as prompt tuning: %s", zt_last_error());
    /* a table of another width than the model's tokens */
    write_file(dir, "adapter_config.json",
               "{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 3}");
    char lora_dir[1024], cmd[3000], out[256];
    fixture_path(lora_dir, sizeof lora_dir, "opt-pre-lora", NULL);
    snprintf(cmd, sizeof cmd, "cp %s/adapter_model.safetensors %s/", lora_dir, dir);
    ZT_REQUIRE(zt_test_run(cmd, out, sizeof out) == 0, "%s", cmd);
    zt_prompt_options_default(&o);
    ZT_REQUIRE_OK(zt_prompt_read_config(dir, &o));
    o.adapter_dir = dir;
    ZT_CHECK(zt_model_load_adapted(base, be, &peft, &m) != ZT_OK &&
                 strstr(zt_last_error(), "prompt_embeddings"),
             "a LoRA adapter's tensors read as a prompt table: %s", zt_last_error());
}

int main(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &be));
    reference ref;
    read_reference(&ref);
    char tmp[256];
    make_temp_dir(tmp, sizeof tmp, "prompt");
    check_peft_parity(be, &ref, tmp);
    check_cached(be, &ref);
    check_gradient(be, 0);
    check_gradient(be, 1);
    check_fresh(be);
    check_refusals(be, tmp);
    remove_run_dir(tmp);
    free(ref.ids);
    free(ref.mask);
    free(ref.logits);
    zt_backend_destroy(be);
    return zt_test_finish("test_prompt");
}
