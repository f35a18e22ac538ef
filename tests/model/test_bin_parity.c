/* Models saved only as pytorch_model.bin (tools/make_bin_fixtures.py) against transformers: the
 * logits HF computes after loading each directory itself, for f32, f16, bf16, sharded and the
 * legacy key layout (1e-4 absolute, test_opt_parity's bound; the f16/bf16 references are HF in
 * f32 on the upcast weights, which is exact). The f32, sharded and legacy files hold the same
 * weights and must load bit for bit alike. `zotune convert` round trips: the safetensors it
 * writes load to the same bytes and the same logits bit for bit; it refuses a non-empty
 * OUT_DIR. A malicious .bin in a model directory fails the load, naming the global.
 * argv[1] is the zotune binary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "data/targets.h"
#include "fixture.h"
#include "io/convert.h"
#include "model.h"
#include "zt_test.h"

static char temp_dir[64];

typedef struct logits_run {
    float *logits; /* (R, V) at the target rows */
    int n_rows;
} logits_run;

/* The model's logits at every row that has a successor token in the reference batch. */
static logits_run forward_reference_batch(zt_model *m, const zt_safetensors *ref,
                                          zt_targets *targets) {
    int64_t shape[2];
    int32_t *ids = fixture_array(ref, "input_ids", "I32", NULL, shape);
    int32_t *mask = fixture_array(ref, "attention_mask", "I32", NULL, NULL);
    int batch = (int)shape[0], seq_len = (int)shape[1];
    int32_t *labels = malloc((size_t)batch * seq_len * sizeof *labels);
    for (int i = 0; i < batch * seq_len; i++)
        labels[i] = mask[i] && i % seq_len && mask[i - 1] ? ids[i] : -100;
    ZT_REQUIRE_OK(zt_targets_from_labels(batch, seq_len, labels, m->dims.vocab_size, targets));
    logits_run run = {malloc((size_t)targets->n * m->dims.vocab_size * sizeof(float)), targets->n};
    float *logprobs = malloc((size_t)targets->n * sizeof *logprobs);
    zt_workspace *ws = NULL;
    zt_workspace_shape ws_shape = {batch, seq_len, 1, 0, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &ws_shape, &ws));
    zt_batch b = {batch, seq_len, ids, mask, targets->n, targets->rows, targets->ids};
    ZT_REQUIRE_OK(zt_model_forward(m, ws, &b, NULL, logprobs, run.logits));
    zt_workspace_free(ws);
    free(logprobs);
    free(labels);
    free(ids);
    free(mask);
    return run;
}

static void check_against_hf(zt_backend *be, const char *fixture) {
    char dir[1024], ref_path[1024];
    fixture_path(dir, sizeof dir, fixture, NULL);
    fixture_path(ref_path, sizeof ref_path, fixture, "reference.safetensors");
    zt_model *m = NULL;
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));
    const char *hf_count = zt_st_metadata(ref, "num_parameters");
    ZT_CHECK(hf_count && zt_model_parameter_count(m) == strtoull(hf_count, NULL, 10),
             "%s: %zu parameters, HF counts %s", fixture, zt_model_parameter_count(m),
             hf_count ? hf_count : "?");
    const char *stored = zt_st_metadata(ref, "stored");
    ZT_CHECK(stored && !strcmp(zt_dtype_name(m->tensors[0].dtype), stored),
             "%s: weights loaded as %s, stored as %s", fixture, zt_dtype_name(m->tensors[0].dtype),
             stored ? stored : "?");

    zt_targets targets;
    logits_run run = forward_reference_batch(m, ref, &targets);
    int64_t shape[3];
    float *hf = fixture_array(ref, "logits", "F32", NULL, shape);
    int vocab = m->dims.vocab_size;
    ZT_REQUIRE(shape[2] == vocab && run.n_rows > 8, "%s: reference shape", fixture);
    double max_err = 0.0;
    size_t bad = 0;
    for (int r = 0; r < run.n_rows; r++)
        for (int v = 0; v < vocab; v++) {
            double err = fabs((double)run.logits[(size_t)r * vocab + v] -
                              hf[(size_t)targets.rows[r] * vocab + v]);
            if (!(err <= 1e-4)) bad++;
            if (!(err <= max_err)) max_err = err;
        }
    ZT_CHECK(bad == 0, "%s: %zu logits off HF by more than 1e-4 (max %.3g)", fixture, bad, max_err);
    printf("  %-16s %d rows x %d logits, max |err| vs HF %.3g\n", fixture, run.n_rows, vocab,
           max_err);
    free(hf);
    free(run.logits);
    zt_targets_free(&targets);
    zt_st_close(ref);
    zt_model_free(m);
}

static void check_same_weights(zt_backend *be, const char *fixture_a, const char *dir_b) {
    char dir_a[1024];
    fixture_path(dir_a, sizeof dir_a, fixture_a, NULL);
    zt_model *a = NULL, *b = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir_a, be, &a));
    ZT_REQUIRE_OK(zt_model_load(dir_b, be, &b));
    /* tensor by tensor: the alignment gaps between them hold no data */
    int same = a->n_tensors == b->n_tensors && a->fingerprint == b->fingerprint;
    for (int i = 0; same && i < a->n_tensors; i++) {
        const zt_tensor_info *x = &a->tensors[i], *y = &b->tensors[i];
        size_t bytes = x->n_elems * zt_dtype_size(x->dtype);
        same = x->dtype == y->dtype && x->n_elems == y->n_elems &&
               memcmp((const char *)a->weights + x->offset, (const char *)b->weights + y->offset,
                      bytes) == 0;
    }
    ZT_CHECK(same, "%s and %s load different weights", dir_a, dir_b);
    zt_model_free(a);
    zt_model_free(b);
}

/* Logits of the two directories on fixture's reference batch, bit for bit. */
static void check_same_logits(zt_backend *be, const char *fixture, const char *converted) {
    char dir[1024], ref_path[1024];
    fixture_path(dir, sizeof dir, fixture, NULL);
    fixture_path(ref_path, sizeof ref_path, fixture, "reference.safetensors");
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));
    zt_model *a = NULL, *b = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir, be, &a));
    ZT_REQUIRE_OK(zt_model_load(converted, be, &b));
    zt_targets ta, tb;
    logits_run ra = forward_reference_batch(a, ref, &ta);
    logits_run rb = forward_reference_batch(b, ref, &tb);
    ZT_CHECK(ra.n_rows == rb.n_rows &&
                 memcmp(ra.logits, rb.logits, (size_t)ra.n_rows * a->dims.vocab_size * 4) == 0,
             "%s: converted safetensors gives other logits than the .bin", fixture);
    free(ra.logits);
    free(rb.logits);
    zt_targets_free(&ta);
    zt_targets_free(&tb);
    zt_model_free(a);
    zt_model_free(b);
    zt_st_close(ref);
}

static void copy_file(const char *from, const char *to) {
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    ZT_REQUIRE(system(cmd) == 0, "%s failed", cmd);
}

static void check_convert(zt_backend *be, const char *zotune) {
    static const char *const fixtures[] = {"opt-bin", "opt-bin-f16", "opt-bin-legacy"};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char in[1024], out[256], st_path[300];
        fixture_path(in, sizeof in, fixtures[i], NULL);
        snprintf(out, sizeof out, "%s/%s", temp_dir, fixtures[i]);
        int n = 0;
        ZT_CHECK_OK(zt_convert_torch_dir(in, out, &n));
        snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
        zt_safetensors *st = NULL;
        ZT_REQUIRE_OK(zt_st_open(st_path, &st));
        ZT_CHECK(zt_st_count(st) == n && n >= 36 && !strcmp(zt_st_metadata(st, "format"), "pt"),
                 "%s: %d tensors converted, %d read back", fixtures[i], n, zt_st_count(st));
        zt_st_close(st);
        check_same_weights(be, fixtures[i], out);
        check_same_logits(be, fixtures[i], out);
    }

    /* the CLI, on the sharded directory: one model.safetensors and the config */
    char in[1024], out[256], cmd[2600], text[4096];
    fixture_path(in, sizeof in, "opt-bin-sharded", NULL);
    snprintf(out, sizeof out, "%s/sharded", temp_dir);
    snprintf(cmd, sizeof cmd, "%s convert %s %s 2>&1", zotune, in, out);
    ZT_CHECK(zt_test_run(cmd, text, sizeof text) == 0, "%s: %s", cmd, text);
    check_same_weights(be, "opt-bin", out);
    check_same_logits(be, "opt-bin-sharded", out);
    /* a second run into the now non-empty directory is refused, the file untouched */
    struct stat before, after;
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", out);
    ZT_REQUIRE(stat(cmd, &before) == 0, "no %s", cmd);
    snprintf(cmd, sizeof cmd, "%s convert %s %s 2>&1", zotune, in, out);
    int rc = zt_test_run(cmd, text, sizeof text);
    ZT_CHECK(rc == 2 && strstr(text, "is not empty") && strstr(text, out),
             "convert into a non-empty OUT_DIR: exit %d: %s", rc, text);
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", out);
    ZT_CHECK(stat(cmd, &after) == 0 && after.st_mtime == before.st_mtime &&
                 after.st_size == before.st_size,
             "the refused convert touched %s", cmd);
    /* a directory without a .bin */
    fixture_path(in, sizeof in, "opt-pre", NULL);
    snprintf(cmd, sizeof cmd, "%s convert %s %s/none 2>&1", zotune, in, temp_dir);
    rc = zt_test_run(cmd, text, sizeof text);
    ZT_CHECK(rc == 1 && strstr(text, "no PyTorch weights") && strstr(text, "pytorch_model.bin"),
             "convert without a .bin: exit %d: %s", rc, text);
}

/* A model directory whose .bin would run code is refused at load, naming file and global; with
 * a model.safetensors beside it, the safetensors is what loads and the .bin is never read. */
static void check_malicious_model(zt_backend *be) {
    char from[1024], dir[256], to[300];
    snprintf(dir, sizeof dir, "%s/evil", temp_dir);
    ZT_REQUIRE(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    fixture_path(from, sizeof from, "opt-bin", "config.json");
    snprintf(to, sizeof to, "%s/config.json", dir);
    copy_file(from, to);
    fixture_path(from, sizeof from, "torch-bin", "malicious-nested.bin");
    snprintf(to, sizeof to, "%s/pytorch_model.bin", dir);
    copy_file(from, to);
    zt_model *m = NULL;
    zt_status s = zt_model_load(dir, be, &m);
    ZT_CHECK(s == ZT_ERR_FORMAT && m == NULL && strstr(zt_last_error(), to) &&
                 strstr(zt_last_error(), "refusing global 'builtins.eval'"),
             "malicious .bin: %s: %s", zt_status_name(s), zt_last_error());
    snprintf(from, sizeof from, "%s/opt-bin/model.safetensors", temp_dir);
    snprintf(to, sizeof to, "%s/model.safetensors", dir);
    copy_file(from, to);
    ZT_CHECK_OK(zt_model_load(dir, be, &m));
    zt_model_free(m);
}

int main(int argc, char **argv) {
    ZT_REQUIRE(argc == 2, "usage: test_bin_parity ZOTUNE_BINARY");
    snprintf(temp_dir, sizeof temp_dir, "/tmp/zt_test_binp_XXXXXX");
    ZT_REQUIRE(mkdtemp(temp_dir) != NULL, "mkdtemp failed");
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 0, &be));
    const char *fixtures[] = {"opt-bin", "opt-bin-f16", "opt-bin-bf16", "opt-bin-sharded",
                              "opt-bin-legacy"};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
        check_against_hf(be, fixtures[i]);
    char dir[1024];
    fixture_path(dir, sizeof dir, "opt-bin-sharded", NULL);
    check_same_weights(be, "opt-bin", dir);
    fixture_path(dir, sizeof dir, "opt-bin-legacy", NULL);
    check_same_weights(be, "opt-bin", dir);
    check_convert(be, argv[1]);
    check_malicious_model(be);
    zt_backend_destroy(be);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", temp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", temp_dir);
    return zt_test_finish("test_bin_parity");
}
