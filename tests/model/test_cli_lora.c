/* The LoRA commands through the binary: `zotune score --adapter` on the fixture adapter
 * (tools/make_lora_fixtures.py) equals scoring the checkpoint `zotune merge` writes (to
 * rounding) and differs from the base; merge's output is a plain checkpoint that loads without
 * the adapter; merge refuses a non-empty OUT_DIR, one inside an input, and a directory without an
 * adapter; `zotune eval --adapter` on the demo task with an adapter AdamW trained equals eval of
 * its merged checkpoint. argv[1] is the zotune binary, argv[2] the demo directory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../train/train_util.h"
#include "fixture.h"
#include "zt_test.h"

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

/* eval's JSON loss and accuracy of `zotune eval ARGS`; 0 on success. */
static int eval_json(const char *args, double *loss, double *accuracy) {
    char cmd[4096], out[4096];
    snprintf(cmd, sizeof cmd, "%s eval %s --json --threads 1 2>&1", zotune, args);
    if (zt_test_run(cmd, out, sizeof out) != 0) {
        fprintf(stderr, "%s: %s\n", cmd, out);
        return 1;
    }
    cJSON *root = cJSON_Parse(out);
    const cJSON *l = cJSON_GetObjectItem(root, "loss"), *a = cJSON_GetObjectItem(root, "accuracy");
    const int ok = cJSON_IsNumber(l) && cJSON_IsNumber(a);
    if (ok) {
        *loss = l->valuedouble;
        *accuracy = a->valuedouble;
    }
    cJSON_Delete(root);
    return !ok;
}

static void check_eval_adapter(const char *demo, const char *tmp) {
    char model[1024], train[1024], dev[1024], run[512], merged[512], cmd[4096], out[4096];
    snprintf(model, sizeof model, "%s/model", demo);
    snprintf(train, sizeof train, "%s/task/train.jsonl", demo);
    snprintf(dev, sizeof dev, "%s/task/dev.jsonl", demo);
    snprintf(run, sizeof run, "%s/demo-lora", tmp);
    snprintf(merged, sizeof merged, "%s/demo-merged", tmp);
    snprintf(cmd, sizeof cmd,
             "%s train --model %s --train %s --output %s --peft lora --optimizer adamw --lr 1e-3 "
             "--steps 20 --batch-size 16 --threads 1 --quiet 2>&1",
             zotune, model, train, run);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
    snprintf(cmd, sizeof cmd, "%s merge %s %s %s 2>&1", zotune, model, run, merged);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
    double loss_adapter = 0, acc_adapter = 0, loss_merged = 0, acc_merged = 0, loss_base = 0,
           acc_base = 0;
    char args[4096];
    snprintf(args, sizeof args, "--model %s --data %s --adapter %s", model, dev, run);
    ZT_CHECK(eval_json(args, &loss_adapter, &acc_adapter) == 0, "eval --adapter");
    snprintf(args, sizeof args, "--model %s --data %s", merged, dev);
    ZT_CHECK(eval_json(args, &loss_merged, &acc_merged) == 0, "eval of the merged checkpoint");
    snprintf(args, sizeof args, "--model %s --data %s", model, dev);
    ZT_CHECK(eval_json(args, &loss_base, &acc_base) == 0, "eval of the base");
    /* the merge rounds the f16 base once per weight: the loss moves by that much only */
    ZT_CHECK_CLOSE(loss_adapter, loss_merged, 0.0, 1e-3, "eval --adapter vs merged loss");
    ZT_CHECK(fabs(acc_adapter - acc_merged) <= 0.004, "accuracy %.3f with the adapter, %.3f merged",
             acc_adapter, acc_merged);
    ZT_CHECK(loss_adapter < loss_base - 0.01, "the adapter's dev loss %.4f, the base's %.4f",
             loss_adapter, loss_base);
    printf("demo dev: base loss %.5f accuracy %.3f; eval --adapter %.5f / %.3f; merged %.5f / "
           "%.3f\n",
           loss_base, acc_base, loss_adapter, acc_adapter, loss_merged, acc_merged);
}

int main(int argc, char **argv) {
    if (argc < 3) return 1;
    zotune = argv[1];
    char base[1024], adapter[1024], data[1024], tmp[256], merged[512], args[4096], cmd[4096];
    char out[4096];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(adapter, sizeof adapter, "opt-pre-lora", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    make_temp_dir(tmp, sizeof tmp, "cli_lora");
    snprintf(merged, sizeof merged, "%s/merged", tmp);

    snprintf(cmd, sizeof cmd, "%s merge %s %s %s 2>&1", zotune, base, adapter, merged);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);

    double with_adapter[16], folded[16], plain[16];
    snprintf(args, sizeof args, "%s %s --adapter %s", base, data, adapter);
    const int n = score(args, with_adapter, 16);
    snprintf(args, sizeof args, "%s %s", merged, data);
    ZT_CHECK(score(args, folded, 16) == n && n == 6, "%d and %d lines scored", n,
             score(args, folded, 16));
    snprintf(args, sizeof args, "%s %s", base, data);
    ZT_CHECK(score(args, plain, 16) == n, "base: lines");
    double worst = 0, gap = 0;
    for (int i = 0; i < n; i++) {
        worst = fmax(worst, fabs(with_adapter[i] - folded[i]) / fabs(folded[i]));
        gap = fmax(gap, fabs(with_adapter[i] - plain[i]));
    }
    ZT_CHECK(worst <= 1e-5, "score --adapter vs the merged checkpoint: %.3g relative", worst);
    ZT_CHECK(gap > 0.1, "the adapter changes the scores by only %.3g", gap);
    printf("score --adapter vs merge: worst relative difference %.3g over %d lines (base differs "
           "by up to %.3f nats)\n",
           worst, n, gap);

    /* merge's refusals: nothing overwritten, nothing written into an input, no adapter */
    snprintf(cmd, sizeof cmd, "%s merge %s %s %s 2>&1", zotune, base, adapter, merged);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2 && strstr(out, "not empty"),
             "merge into a non-empty OUT_DIR: %s", out);
    snprintf(cmd, sizeof cmd, "%s merge %s %s %s/inside 2>&1", zotune, base, adapter, adapter);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2 && strstr(out, "ADAPTER_DIR"),
             "merge into the adapter: %s", out);
    snprintf(cmd, sizeof cmd, "%s merge %s %s %s/none 2>&1", zotune, base, base, tmp);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) != 0 && strstr(out, "adapter_config.json"),
             "merge without an adapter: %s", out);
    check_eval_adapter(argv[2], tmp);
    remove_run_dir(tmp);
    return zt_test_finish("test_cli_lora");
}
