/* What the LoRA, prefix and prompt training tests share; each passes its own ways to run zotune
 * and read a run's losses. */
#ifndef ZT_TESTS_PEFT_TRAIN_UTIL_H
#define ZT_TESTS_PEFT_TRAIN_UTIL_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/replay.h"
#include "train_util.h"
#include "zt_test.h"

static inline int same_file(const char *a, const char *b) {
    char cmd[2600], out[64];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return zt_test_run(cmd, out, sizeof out) == 0;
}

static inline void adapter_path(char *buf, size_t size, const char *dir) {
    snprintf(buf, size, "%s/adapter_model.safetensors", dir);
}

/* A run of `steps` steps in out continued from `adapter` (train --adapter): replay without the
 * adapter is refused naming --adapter; with it, replay rebuilds out's adapter bit for bit; with
 * another adapter (out's own) it is refused by fingerprint. */
static inline void check_replay_from_adapter(const char *base, const char *adapter, const char *out,
                                             int steps) {
    char log[1200], replayed[256], other[256], trained[1200], again[1200];
    snprintf(log, sizeof log, "%s/steplog.jsonl", out);
    make_temp_dir(replayed, sizeof replayed, "peft_cont_replay");
    int n = 0;
    ZT_CHECK(zt_replay(base, log, replayed, "cpu", 1, &n) == ZT_ERR_UNAVAILABLE &&
                 strstr(zt_last_error(), "--adapter"),
             "replay of an --adapter run: %s", zt_last_error());
    ZT_CHECK_OK(zt_replay_adapted(base, adapter, log, replayed, "cpu", 1, &n));
    adapter_path(trained, sizeof trained, out);
    adapter_path(again, sizeof again, replayed);
    ZT_CHECK(n == steps && same_file(trained, again),
             "replay --adapter of %d steps: the adapter differs from the trained one", n);
    make_temp_dir(other, sizeof other, "peft_cont_other");
    ZT_CHECK(zt_replay_adapted(base, out, log, other, "cpu", 1, &n) == ZT_ERR_CONFLICT &&
                 strstr(zt_last_error(), "fingerprint"),
             "replay with another adapter: %s", zt_last_error());
    remove_run_dir(other);
    remove_run_dir(replayed);
}

/* Every optimizer, ZO and first-order, runs on the adapted model (peft_args: "--peft lora ...")
 * in both modes, and in-place perturbation logs the losses shadow staging logs (to f32
 * rounding: restoring in place is not exact). */
static inline void check_every_optimizer_with(const char *peft_args, const char *lr_eps,
                                              int (*run)(const char *, char *, size_t),
                                              int (*read)(const char *, double *, int)) {
    static const char *const optimizers[] = {"mezo",    "zo-sgd-fd",  "zo-sgd-sign", "zo-signsgd",
                                             "ga-sign", "zo-sgd-mmt", "zo-adamm",    "stp",
                                             "s2p",     "as2p",       "as2p-sign",   "sgd",
                                             "signsgd", "adam",       "adamw",       "adamm"};
    enum { STEPS = 10 };
    const size_t n = sizeof optimizers / sizeof optimizers[0];
    for (size_t i = 0; i < n; i++) {
        double losses[2][STEPS];
        for (int inplace = 0; inplace < 2; inplace++) {
            char out[256], args[2048], printed[4096];
            make_temp_dir(out, sizeof out, "peft_opt");
            snprintf(args, sizeof args,
                     "--output %s %s --steps %d --batch-size 4 --optimizer %s %s --mode %s", out,
                     peft_args, STEPS, optimizers[i], lr_eps, inplace ? "inplace" : "shadow");
            ZT_CHECK(run(args, printed, sizeof printed) == 0, "%s: %s", args, printed);
            ZT_CHECK(read(out, losses[inplace], STEPS) == STEPS, "%s: logged steps", args);
            remove_run_dir(out);
        }
        double worst = 0;
        for (int j = 0; j < STEPS; j++)
            worst = fmax(worst, fabs(losses[1][j] - losses[0][j]) / fabs(losses[0][j]));
        ZT_CHECK(worst <= 1e-5, "%s %s: in place vs shadow losses differ by %.3g relative",
                 peft_args, optimizers[i], worst);
    }
    printf("  every optimizer (%zu) with %s, shadow and in place: losses agree\n", n, peft_args);
}

#endif
