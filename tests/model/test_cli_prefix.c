/* Prefix tuning through the binary: `zotune score --adapter` with the fixture prefixes
 * (tools/make_prefix_fixtures.py) gives the per-line mean NLL of HF's own logits with those
 * prefixes (computed here in double from the fixture's logits), in one padded batch and one line
 * at a time, and differs from the base; `zotune merge` refuses a prefix adapter; `zotune eval
 * --adapter` on the demo task with prefixes AdamW trained lowers the base's dev loss.
 * argv[1] is the zotune binary, argv[2] the demo directory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../train/train_util.h"
#include "fixture.h"
#include "zt_test.h"

enum { B = 3, T = 8 };

static const char *zotune;

/* Per-line mean NLL of `zotune score --json ARGS`; returns the count. */
static int score(const char *args, double *loss, int max) {
    char cmd[4096], out[1 << 14];
    snprintf(cmd, sizeof cmd, "%s score %s --json --threads 1 2>&1", zotune, args);
    if (zt_test_run(cmd, out, sizeof out) != 0) {
        fprintf(stderr, "%s: %s\n", cmd, out);
        return 0;
    }
    cJSON *root = cJSON_Parse(out);
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "examples")) {
        if (n < max) loss[n++] = cJSON_GetObjectItem(e, "loss")->valuedouble;
    }
    cJSON_Delete(root);
    return n;
}

static double eval_loss(const char *args) {
    char cmd[4096], out[4096];
    snprintf(cmd, sizeof cmd, "%s eval %s --json --threads 1 2>&1", zotune, args);
    if (zt_test_run(cmd, out, sizeof out) != 0) {
        fprintf(stderr, "%s: %s\n", cmd, out);
        return NAN;
    }
    cJSON *root = cJSON_Parse(out);
    const cJSON *l = cJSON_GetObjectItem(root, "loss");
    const double loss = cJSON_IsNumber(l) ? l->valuedouble : NAN;
    cJSON_Delete(root);
    return loss;
}

/* The fixture's sequences without their padding as score records, and each one's mean NLL of
 * its next tokens from HF's logits (in double). */
static void write_records(const char *path, double *want) {
    char ref[1024];
    fixture_path(ref, sizeof ref, "opt-pre-prefix", "reference.safetensors");
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(ref, &st));
    int64_t shape[3];
    int32_t *ids = fixture_array(st, "input_ids", "I32", NULL, NULL);
    int32_t *mask = fixture_array(st, "attention_mask", "I32", NULL, NULL);
    float *logits = fixture_array(st, "logits", "F32", NULL, shape);
    const int vocab = (int)shape[2];
    FILE *f = fopen(path, "w");
    ZT_REQUIRE(f != NULL, "%s", path);
    for (int b = 0; b < B; b++) {
        int rows[T], n = 0;
        for (int t = 0; t < T; t++)
            if (mask[b * T + t]) rows[n++] = b * T + t;
        fprintf(f, "{\"input_ids\": [");
        for (int j = 0; j < n; j++)
            fprintf(f, "%s%d", j ? ", " : "", ids[rows[j]]);
        fprintf(f, "]}\n");
        double sum = 0;
        for (int j = 0; j + 1 < n; j++) {
            const float *row = logits + (size_t)rows[j] * vocab;
            double most = row[0], z = 0;
            for (int v = 1; v < vocab; v++)
                most = fmax(most, row[v]);
            for (int v = 0; v < vocab; v++)
                z += exp((double)row[v] - most);
            sum -= (double)row[ids[rows[j + 1]]] - most - log(z);
        }
        want[b] = sum / (n - 1);
    }
    fclose(f);
    free(ids);
    free(mask);
    free(logits);
    zt_st_close(st);
}

static void check_eval_adapter(const char *demo, const char *tmp) {
    char model[1024], train[1024], dev[1024], run[512], cmd[4096], out[4096], args[4096];
    snprintf(model, sizeof model, "%s/model", demo);
    snprintf(train, sizeof train, "%s/task/train.jsonl", demo);
    snprintf(dev, sizeof dev, "%s/task/dev.jsonl", demo);
    snprintf(run, sizeof run, "%s/demo-prefix", tmp);
    snprintf(cmd, sizeof cmd,
             "%s train --model %s --train %s --output %s --peft prefix --optimizer adamw --lr "
             "1e-1 --steps 40 --batch-size 16 --threads 1 --quiet 2>&1",
             zotune, model, train, run);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
    snprintf(args, sizeof args, "--model %s --data %s --adapter %s", model, dev, run);
    const double with_prefix = eval_loss(args);
    snprintf(args, sizeof args, "--model %s --data %s", model, dev);
    const double base = eval_loss(args);
    ZT_CHECK(with_prefix < base - 0.01, "the prefixes' dev loss %.4f, the base's %.4f", with_prefix,
             base);
    printf("demo dev: base loss %.5f, eval --adapter (AdamW prefixes, 40 steps) %.5f\n", base,
           with_prefix);
}

int main(int argc, char **argv) {
    if (argc < 3) return 1;
    zotune = argv[1];
    char base[1024], adapter[1024], data[600], tmp[256], args[4096], cmd[4096], out[4096];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(adapter, sizeof adapter, "opt-pre-prefix", NULL);
    make_temp_dir(tmp, sizeof tmp, "cli_prefix");
    snprintf(data, sizeof data, "%s/records.jsonl", tmp);
    double want[B], batched[B], alone[B], plain[B];
    write_records(data, want);
    snprintf(args, sizeof args, "%s %s --adapter %s --batch-size %d", base, data, adapter, B);
    ZT_CHECK(score(args, batched, B) == B, "score --adapter: lines");
    snprintf(args, sizeof args, "%s %s --adapter %s --batch-size 1", base, data, adapter);
    ZT_CHECK(score(args, alone, B) == B, "score --adapter --batch-size 1: lines");
    snprintf(args, sizeof args, "%s %s", base, data);
    ZT_CHECK(score(args, plain, B) == B, "score of the base: lines");
    double worst = 0, gap = 0;
    for (int i = 0; i < B; i++) {
        worst = fmax(worst, fabs(batched[i] - want[i]) / fabs(want[i]));
        worst = fmax(worst, fabs(alone[i] - want[i]) / fabs(want[i]));
        gap = fmax(gap, fabs(batched[i] - plain[i]));
    }
    ZT_CHECK(worst <= 1e-5, "score --adapter vs HF's logits: %.3g relative", worst);
    ZT_CHECK(gap > 0.1, "the prefixes change the scores by only %.3g", gap);
    printf("score --adapter (prefix) vs HF: worst relative %.3g over %d lines, batched and alone "
           "(the base differs by up to %.3f nats)\n",
           worst, B, gap);

    snprintf(cmd, sizeof cmd, "%s merge %s %s %s/merged 2>&1", zotune, base, adapter, tmp);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2 && strstr(out, "prefix"),
             "merge of a prefix adapter: %s", out);
    check_eval_adapter(argv[2], tmp);
    remove_run_dir(tmp);
    return zt_test_finish("test_cli_prefix");
}
