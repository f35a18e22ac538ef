/* `zotune grad` end to end: the gradients it writes for the fixtures' LM records
 * (tests/fixtures/lm.jsonl, the "lm" batch of tools/make_grad_fixtures.py) against
 * transformers' autograd (grads.safetensors), whole and in 2 and 4 micro-batches; the
 * loss in the file's metadata; and the refusals: a negative --micro-batches, no --output, an output
 * inside the model directory, a malformed record (named by line), a label outside the vocabulary.
 * Nothing is written when it fails. argv[1] is the zotune binary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "io/safetensors.h"
#include "zt_test.h"

static const char *zotune;
static char tmp_dir[] = "/tmp/zt_cli_grad_XXXXXX";

/* The worst relative L2 error of `path`'s gradients against the fixture's (k_proj.bias, whose
 * exact gradient is zero, is left to test_grad_parity), and its loss. */
static double worst_error(const char *path, const char *fixture, double *loss) {
    char ref_path[512];
    fixture_path(ref_path, sizeof ref_path, fixture, "grads.safetensors");
    zt_safetensors *got = NULL, *ref = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &got));
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));
    const char *loss_text = zt_st_metadata(got, "loss");
    const char *ref_loss = zt_st_metadata(ref, "loss");
    ZT_REQUIRE(loss_text && ref_loss, "%s: no loss in the metadata", path);
    *loss = atof(loss_text);
    ZT_CHECK_CLOSE(*loss, atof(ref_loss), 0.0, 1e-6, "%s: loss", path);
    ZT_CHECK(zt_st_count(got) == zt_st_count(ref), "%s: %d tensors, HF has %d", path,
             zt_st_count(got), zt_st_count(ref));
    double worst = 0.0;
    for (int i = 0; i < zt_st_count(ref); i++) {
        const zt_st_tensor *want = zt_st_get(ref, i);
        const zt_st_tensor *have = zt_st_find(got, want->name);
        ZT_CHECK(have && strcmp(have->dtype, "F32") == 0 && have->n_elems == want->n_elems &&
                     have->n_dims == want->n_dims,
                 "%s: %s missing or misshapen", path, want->name);
        if (!have || have->n_elems != want->n_elems || strstr(want->name, "k_proj.bias")) continue;
        double diff = 0.0, norm = 0.0;
        for (size_t j = 0; j < want->n_elems; j++) {
            float a, b;
            memcpy(&a, have->data + 4 * j, 4);
            memcpy(&b, want->data + 4 * j, 4);
            diff += ((double)a - b) * ((double)a - b);
            norm += (double)b * b;
        }
        const double relative = sqrt(diff / norm);
        if (relative > worst) worst = relative;
    }
    zt_st_close(got);
    zt_st_close(ref);
    return worst;
}

static void check_gradients(const char *fixture) {
    char cmd[2048], out[4096], data[512], model[512], path[600];
    fixture_path(data, sizeof data, "lm.jsonl", NULL);
    fixture_path(model, sizeof model, fixture, NULL);
    /* the 4 records whole, in 2 passes of 2, and in 4 of 1 (more passes asked than records) */
    const char *variants[3] = {"", " --micro-batches 2", " --micro-batches 9"};
    const char *progress[3] = {NULL, "grad: 2/4 records\rgrad: 4/4 records",
                               "grad: 1/4 records\rgrad: 2/4 records\rgrad: 3/4 records"};
    for (int v = 0; v < 3; v++) {
        snprintf(path, sizeof path, "%s/%s-%d.safetensors", tmp_dir, fixture, v);
        snprintf(cmd, sizeof cmd, "%s grad %s %s --output %s --threads 2%s 2>&1", zotune, model,
                 data, path, variants[v]);
        ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s failed: %s", cmd, out);
        ZT_CHECK(strstr(out, "4 records, 21 tokens") != NULL, "%s: output '%s'", cmd, out);
        ZT_CHECK(progress[v] ? strstr(out, progress[v]) != NULL : strstr(out, "grad: ") == NULL,
                 "%s: passes '%s'", cmd, out);
        double loss = 0.0;
        const double worst = worst_error(path, fixture, &loss);
        ZT_CHECK(worst <= 1e-5, "%s: worst relative L2 error %.3g", cmd, worst);
        printf("%-13s%-19s loss %.9f, worst relative L2 error against HF %.2e\n", fixture,
               variants[v], loss, worst);
    }
}

static void check_refusals(void) {
    char cmd[2048], out[4096], data[512], model[512], bad[600], path[600];
    fixture_path(data, sizeof data, "lm.jsonl", NULL);
    fixture_path(model, sizeof model, "opt-pre", NULL);
    struct stat st;

    snprintf(cmd, sizeof cmd, "%s grad %s %s 2>&1", zotune, model, data);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2, "no --output: not exit 2");
    ZT_CHECK(strstr(out, "--output") != NULL, "no --output: message '%s'", out);

    /* --micro-batches counts passes, as train's: a negative count is refused (exit 2), naming
     * the option and what it takes; the old spelling --micro-batch is gone */
    snprintf(path, sizeof path, "%s/mb.safetensors", tmp_dir);
    snprintf(cmd, sizeof cmd, "%s grad %s %s --output %s --micro-batches -1 2>&1", zotune, model,
             data, path);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2, "--micro-batches -1: not exit 2: %s", out);
    ZT_CHECK(strstr(out, "--micro-batches -1: expected 0 or more (0 = all records in one "
                         "micro-batch)") != NULL,
             "--micro-batches -1: message '%s'", out);
    ZT_CHECK(stat(path, &st) != 0, "--micro-batches -1: %s was written", path);
    snprintf(cmd, sizeof cmd, "%s grad %s %s --output %s --micro-batch 1 2>&1", zotune, model, data,
             path);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2, "--micro-batch 1: not exit 2: %s", out);
    ZT_CHECK(strstr(out, "--micro-batch") != NULL, "--micro-batch 1: message '%s'", out);

    snprintf(path, sizeof path, "%s/g.safetensors", model);
    snprintf(cmd, sizeof cmd, "%s grad %s %s --output %s 2>&1", zotune, model, data, path);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2, "output inside the model: not exit 2: %s",
             out);
    ZT_CHECK(strstr(out, "--model") != NULL, "output inside the model: message '%s'", out);
    ZT_CHECK(stat(path, &st) != 0, "output inside the model: %s was written", path);

    snprintf(bad, sizeof bad, "%s/bad.jsonl", tmp_dir);
    FILE *f = fopen(bad, "w");
    fputs("{\"input_ids\": [5, 6, 7]}\n{\"input_ids\": [5, 6,\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/bad.safetensors", tmp_dir);
    snprintf(cmd, sizeof cmd, "%s grad %s %s --output %s 2>&1", zotune, model, bad, path);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 1, "malformed record: not exit 1: %s", out);
    ZT_CHECK(strstr(out, "bad.jsonl:2") != NULL, "malformed record: message '%s'", out);
    ZT_CHECK(stat(path, &st) != 0, "malformed record: %s was written", path);

    f = fopen(bad, "w");
    fputs("{\"input_ids\": [5, 6, 7], \"labels\": [-100, 6, 100000]}\n", f);
    fclose(f);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 1, "label out of range: not exit 1: %s", out);
    ZT_CHECK(strstr(out, "labels[2] = 100000") != NULL, "label out of range: message '%s'", out);
    ZT_CHECK(stat(path, &st) != 0, "label out of range: %s was written", path);
    unlink(bad);
}

int main(int argc, char **argv) {
    ZT_REQUIRE(argc >= 2, "usage: test_cli_grad ZOTUNE");
    zotune = argv[1];
    ZT_REQUIRE(mkdtemp(tmp_dir) != NULL, "mkdtemp");
    check_gradients("opt-pre");
    check_gradients("opt-post");
    check_refusals();
    char cmd[600], out[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    zt_test_run(cmd, out, sizeof out);
    return zt_test_finish("test_cli_grad");
}
