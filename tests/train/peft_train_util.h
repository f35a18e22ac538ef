/* What the LoRA, prefix and prompt training tests share: runs of `zotune train` on the opt-pre
 * fixture and the checks every adapter kind must pass (every optimizer, SIGKILL + resume, replay
 * of a run continued from an adapter). */
#ifndef ZT_TESTS_PEFT_TRAIN_UTIL_H
#define ZT_TESTS_PEFT_TRAIN_UTIL_H

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "train/replay.h"
#include "train_util.h"
#include "zt_test.h"

static const char *zotune;           /* the binary under test (argv[1]) */
static char model[1024], data[1024]; /* the opt-pre fixture and its LM records */

static inline void peft_test_setup(const char *zotune_path) {
    zotune = zotune_path;
    fixture_path(model, sizeof model, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
}

/* `zotune train` on the fixture with args; its exit status, its output in printed. */
static inline int run_zotune(const char *args, char *printed, size_t size) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s train --model %s --train %s --threads 1 --quiet %s 2>&1", zotune,
             model, data, args);
    return zt_test_run(cmd, printed, size);
}

/* The step losses of out's metrics.jsonl, at most max; how many. */
static inline int read_losses(const char *out, double *losses, int max) {
    char path[1200], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *loss = cJSON_GetObjectItem(o, "loss");
        if (cJSON_IsNumber(loss)) losses[n++] = loss->valuedouble;
        cJSON_Delete(o);
    }
    fclose(f);
    return n;
}

static inline double mean(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    return s / n;
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
    ZT_CHECK(n == steps && zt_test_same_file(trained, again, NULL),
             "replay --adapter of %d steps: the adapter differs from the trained one", n);
    make_temp_dir(other, sizeof other, "peft_cont_other");
    ZT_CHECK(zt_replay_adapted(base, out, log, other, "cpu", 1, &n) == ZT_ERR_CONFLICT &&
                 strstr(zt_last_error(), "fingerprint"),
             "replay with another adapter: %s", zt_last_error());
    remove_run_dir(other);
    remove_run_dir(replayed);
}

/* A run of `steps` steps in out with the adapter options peft (NULL-terminated argv words), in
 * the background, its output discarded. */
static inline pid_t start_peft_training(const char *out, int resume, const char *optimizer,
                                        const char *const *peft, const char *eps, int steps) {
    char steps_text[16];
    snprintf(steps_text, sizeof steps_text, "%d", steps);
    const char *argv[64] = {
        zotune,      "train",    "--model",      model, "--train",     data,      "--output", out,
        "--steps",   steps_text, "--batch-size", "4",   "--lr",        "1e-2",    "--eps",    eps,
        "--threads", "1",        "--save-every", "50",  "--optimizer", optimizer, "--quiet"};
    int n = 23;
    for (int i = 0; peft[i] && n < 62; i++)
        argv[n++] = peft[i];
    if (resume) argv[n++] = "--resume";
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execv(zotune, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* SIGKILL mid-run (a torn log line or snapshot is possible), then --resume: the adapter and the
 * optimizer's state in the final snapshot equal an uninterrupted run's. A ZO run replays the log
 * past the snapshot; a first-order one makes those steps again. Then resuming with other adapter
 * options (other_args, a train command line's adapter part) is refused naming other_option. */
static inline void check_kill_resume_with(const char *optimizer, const char *const *peft,
                                          const char *eps, int steps, const char *other_args,
                                          const char *other_option) {
    char full[256], killed[256], a[1200], b[1200];
    make_temp_dir(full, sizeof full, "peft_full");
    make_temp_dir(killed, sizeof killed, "peft_kill");
    ZT_CHECK(wait_exit(start_peft_training(full, 0, optimizer, peft, eps, steps)) == 0,
             "uninterrupted %s run failed", optimizer);
    pid_t pid = start_peft_training(killed, 0, optimizer, peft, eps, steps);
    struct timespec nap = {0, 200000};
    for (int spins = 0; spins < 600000 && steplog_lines(killed) < 230; spins++)
        nanosleep(&nap, NULL);
    kill(pid, SIGKILL);
    const int rc = wait_exit(pid), done = steplog_lines(killed) - 1;
    ZT_CHECK(rc == 128 + SIGKILL && done < steps, "SIGKILL: exit %d after %d steps", rc, done);
    ZT_CHECK(wait_exit(start_peft_training(killed, 1, optimizer, peft, eps, steps)) == 0,
             "resume after SIGKILL failed");
    adapter_path(a, sizeof a, full);
    adapter_path(b, sizeof b, killed);
    ZT_CHECK(zt_test_same_file(a, b, NULL),
             "%s %s: SIGKILL after %d steps + resume: adapters differ", peft[1], optimizer, done);
    snprintf(a, sizeof a, "%s/snapshot/optimizer.safetensors", full);
    snprintf(b, sizeof b, "%s/snapshot/optimizer.safetensors", killed);
    ZT_CHECK(zt_test_same_file(a, b, NULL), "%s %s: SIGKILL + resume: optimizer state differs",
             peft[1], optimizer);
    printf("  %s %s: SIGKILL after %d of %d steps + --resume: adapter and optimizer state "
           "bit-identical\n",
           peft[1], optimizer, done, steps);

    char args[2048], printed[4096];
    snprintf(args, sizeof args,
             "--output %s %s --optimizer %s --steps %d --batch-size 4 --lr 1e-2 --eps %s "
             "--save-every 50 --resume",
             killed, other_args, optimizer, steps, eps);
    const int refused = run_zotune(args, printed, sizeof printed);
    ZT_CHECK(refused == 2 && strstr(printed, other_option), "resume with %s: exit %d: %s",
             other_args, refused, printed);
    remove_run_dir(full);
    remove_run_dir(killed);
}

/* Every optimizer, ZO and first-order, runs on the adapted model (peft_args: "--peft lora ...")
 * in both modes, and in-place perturbation logs the losses shadow staging logs (to f32
 * rounding: restoring in place is not exact). */
static inline void check_every_optimizer_with(const char *peft_args, const char *lr_eps) {
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
            ZT_CHECK(run_zotune(args, printed, sizeof printed) == 0, "%s: %s", args, printed);
            ZT_CHECK(read_losses(out, losses[inplace], STEPS) == STEPS, "%s: logged steps", args);
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
