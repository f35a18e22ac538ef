/* Text in, fine-tuned model out, through the zotune binary: `zotune train` (MeZO, fixed seed) on
 * the bundled text task (demo/: a small pretrained OPT with its tokenizer, SST-2-style prompts)
 * raises dev accuracy well beyond the untrained model's, and `zotune eval` on the checkpoint it
 * wrote reproduces the accuracy the trainer reported. argv[1]: zotune, argv[2]: demo dir. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "zt_test.h"

static int run(const char *cmd, char *out, size_t size) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    return pclose(p);
}

static double eval_accuracy(const char *zotune, const char *model, const char *data) {
    char cmd[4096], out[4096];
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --json", zotune, model, data);
    if (run(cmd, out, sizeof out) != 0) return -1.0;
    cJSON *o = cJSON_Parse(out);
    const cJSON *acc = cJSON_GetObjectItem(o, "accuracy");
    double value = cJSON_IsNumber(acc) ? acc->valuedouble : -1.0;
    cJSON_Delete(o);
    return value;
}

int main(int argc, char **argv) {
    if (argc < 3) return 1;
    const char *zotune = argv[1], *demo = argv[2];
    char model[1024], train[1024], dev[1024], out[256], cmd[8192], text[1 << 14];
    snprintf(model, sizeof model, "%s/model", demo);
    snprintf(train, sizeof train, "%s/task/train.jsonl", demo);
    snprintf(dev, sizeof dev, "%s/task/dev.jsonl", demo);
    snprintf(out, sizeof out, "/tmp/zt_text_task_XXXXXX");
    if (!mkdtemp(out)) return 1;

    double before = eval_accuracy(zotune, model, dev);
    ZT_CHECK(before > 0.3 && before < 0.75, "untrained dev accuracy %.4f", before);
    snprintf(cmd, sizeof cmd,
             "%s train --model %s --train %s --eval %s --output %s --optimizer mezo --steps 250 "
             "--batch-size 16 --lr 3e-4 --eps 1e-3 --eval-every 0 --seed 7 --log-every 50 2>&1",
             zotune, model, train, dev, out);
    ZT_CHECK(run(cmd, text, sizeof text) == 0, "train failed: %s", text);
    double reported = -1.0;
    char *line = strstr(text, "dev accuracy:");
    if (line) {
        double first = 0;
        sscanf(line, "dev accuracy: %lf%% before, %lf%% after", &first, &reported);
        reported /= 100.0;
    }
    double after = eval_accuracy(zotune, out, dev);
    printf("dev accuracy: %.4f untrained, %.4f after 250 MeZO steps (trainer reported %.4f)\n",
           before, after, reported);
    ZT_CHECK(after >= before + 0.10, "fine-tuning moved dev accuracy %.4f -> %.4f", before, after);
    ZT_CHECK(reported >= 0 && fabs(after - reported) < 1e-4,
             "zotune eval on the checkpoint %.4f, trainer reported %.4f", after, reported);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    ZT_CHECK(system(cmd) == 0, "cleanup");
    return zt_test_finish("test_text_task");
}
