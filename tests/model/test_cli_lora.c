/* The LoRA commands through the binary: `zotune score --adapter` on the fixture adapter
 * (tools/make_lora_fixtures.py) equals scoring the checkpoint `zotune merge` writes (to
 * rounding) and differs from the base; merge's output is a plain checkpoint that loads without
 * the adapter; merge refuses a non-empty OUT_DIR, one inside an input, and a directory without an
 * adapter. argv[1] is the zotune binary. */
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

int main(int argc, char **argv) {
    if (argc < 2) return 1;
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
    remove_run_dir(tmp);
    return zt_test_finish("test_cli_lora");
}
