/* Prefix tuning through `zotune train --peft prefix` on the fixture's LM task (MeZO's prefix
 * tuning, models/prefix.h): MeZO (shadow and in place), ZO-AdaMM, AdamW and SGD lower the loss
 * while the base stays bit for bit the base; replaying the log rebuilds the trained prefixes bit
 * for bit; every optimizer runs in both modes with in-place losses equal to shadow ones; SIGKILL
 * + --resume ends bit-identical to an uninterrupted run (MeZO and AdamW);
 * --adapter continues from a prefix adapter; mismatched or unsupported options are refused.
 * argv[1] is the zotune binary. */
#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "train/replay.h"
#include "peft_train_util.h"
#include "train_util.h"
#include "zt_test.h"

static const char *zotune;
static char model[1024], data[1024];

static int run_zotune(const char *args, char *printed, size_t size) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train --model %s --train %s --threads 1 --quiet %s 2>&1", zotune,
             model, data, args);
    return zt_test_run(cmd, printed, size);
}

/* The training losses of out/metrics.jsonl in step order; returns how many. */
static int read_losses(const char *out, double *losses, int max) {
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

static double mean(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    return s / n;
}

/* Byte equality of two files. */

static void check_lowers_loss(void) {
    static const struct {
        const char *options;
        int steps;
        double drop; /* the last 20 steps' mean loss at least this much under the first 20's */
    } configs[] = {
        {"--optimizer mezo --lr 1e-1 --eps 1e-1", 300, 0.5},
        {"--optimizer mezo --lr 1e-1 --eps 1e-1 --mode inplace", 300, 0.5},
        {"--optimizer zo-adamm --lr 1e-1 --eps 1e-1", 300, 0.5},
        {"--optimizer adamw --lr 1e-1", 60, 2.0},
        {"--optimizer sgd --lr 1", 60, 0.5},
    };
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        char out[256], args[2048], printed[4096];
        make_temp_dir(out, sizeof out, "prefix");
        snprintf(args, sizeof args, "--output %s --peft prefix --steps %d --batch-size 4 %s", out,
                 configs[c].steps, configs[c].options);
        ZT_CHECK(run_zotune(args, printed, sizeof printed) == 0, "%s: %s", args, printed);
        double losses[512];
        const int n = read_losses(out, losses, 512);
        ZT_CHECK(n == configs[c].steps, "%s: %d logged steps", configs[c].options, n);
        if (n >= 40) {
            const double first = mean(losses, 20), last = mean(losses + n - 20, 20);
            ZT_CHECK(last < first - configs[c].drop, "%s: loss %.3f -> %.3f", configs[c].options,
                     first, last);
            printf("  %-56s loss %.3f -> %.3f (mean of the first / last 20 of %d steps)\n",
                   configs[c].options, first, last, n);
        }
        /* the base is untouched: every tensor of the written model.safetensors is the base's */
        checkpoint_diff d = compare_checkpoints(model, out);
        ZT_CHECK(!d.mismatched_layout && d.changed == 0 && d.elements > 0,
                 "%s: %zu of %zu base weights changed", configs[c].options, d.changed, d.elements);
        char path[1200];
        adapter_path(path, sizeof path, out);
        ZT_CHECK(access(path, R_OK) == 0, "%s: no adapter written", configs[c].options);
        if (strstr(configs[c].options, "mezo") && !strstr(configs[c].options, "inplace")) {
            char log[1200], replayed[256], again[1200];
            snprintf(log, sizeof log, "%s/steplog.jsonl", out);
            make_temp_dir(replayed, sizeof replayed, "prefix_replay");
            int steps = 0;
            ZT_CHECK_OK(zt_replay(model, log, replayed, "cpu", 1, &steps));
            adapter_path(again, sizeof again, replayed);
            ZT_CHECK(steps == n && same_file(path, again),
                     "replay of %d steps: prefixes differ from the trained ones", steps);
            remove_run_dir(replayed);
        }
        remove_run_dir(out);
    }
}

enum { KILL_STEPS = 1500 };

static pid_t start_training(const char *out, int resume, const char *optimizer) {
    char steps[16];
    snprintf(steps, sizeof steps, "%d", KILL_STEPS);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(zotune, zotune, "train", "--model", model, "--train", data, "--output", out,
              "--steps", steps, "--batch-size", "4", "--lr", "1e-2", "--eps", "1e-1", "--threads",
              "1", "--save-every", "50", "--peft", "prefix", "--num-prefix", "4", "--optimizer",
              optimizer, "--quiet", resume ? "--resume" : "--quiet", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* SIGKILL mid-run (a torn log line or snapshot is possible), then --resume: the prefixes and the
 * optimizer's state in the final snapshot equal an uninterrupted run's. A ZO run replays the log
 * past the snapshot; a first-order one makes those steps again. */
static void check_kill_resume(const char *optimizer) {
    char full[256], killed[256], a[1200], b[1200];
    make_temp_dir(full, sizeof full, "prefix_full");
    make_temp_dir(killed, sizeof killed, "prefix_kill");
    ZT_CHECK(wait_exit(start_training(full, 0, optimizer)) == 0, "uninterrupted %s run failed",
             optimizer);
    pid_t pid = start_training(killed, 0, optimizer);
    struct timespec nap = {0, 200000};
    for (int spins = 0; spins < 600000 && steplog_lines(killed) < 230; spins++)
        nanosleep(&nap, NULL);
    kill(pid, SIGKILL);
    const int rc = wait_exit(pid), done = steplog_lines(killed) - 1;
    ZT_CHECK(rc == 128 + SIGKILL && done < KILL_STEPS, "SIGKILL: exit %d after %d steps", rc, done);
    ZT_CHECK(wait_exit(start_training(killed, 1, optimizer)) == 0, "resume after SIGKILL failed");
    adapter_path(a, sizeof a, full);
    adapter_path(b, sizeof b, killed);
    ZT_CHECK(same_file(a, b), "%s: SIGKILL after %d steps + resume: prefixes differ", optimizer,
             done);
    snprintf(a, sizeof a, "%s/snapshot/optimizer.safetensors", full);
    snprintf(b, sizeof b, "%s/snapshot/optimizer.safetensors", killed);
    ZT_CHECK(same_file(a, b), "%s: SIGKILL + resume: optimizer state differs", optimizer);
    printf("  %s: SIGKILL after %d of %d steps + --resume: prefixes and optimizer state "
           "bit-identical\n",
           optimizer, done, KILL_STEPS);

    /* resuming with another prefix length is refused, naming the option */
    char args[2048], printed[4096];
    snprintf(args, sizeof args,
             "--output %s --peft prefix --num-prefix 5 --optimizer %s --steps %d --batch-size 4 "
             "--lr 1e-2 --eps 1e-1 --save-every 50 --resume",
             killed, optimizer, KILL_STEPS);
    const int refused = run_zotune(args, printed, sizeof printed);
    ZT_CHECK(refused == 2 && strstr(printed, "--num-prefix"), "resume with 5 prefixes: exit %d: %s",
             refused, printed);
    remove_run_dir(full);
    remove_run_dir(killed);
}

/* --adapter: training continues from a prefix adapter; its fingerprint is in the log, which replay
 * needs beside the log (--adapter). */
static void check_continue_from_adapter(void) {
    char adapter[1024], out[256], args[2048], printed[4096];
    fixture_path(adapter, sizeof adapter, "opt-pre-prefix", NULL);
    make_temp_dir(out, sizeof out, "prefix_cont");
    snprintf(args, sizeof args,
             "--output %s --adapter %s --optimizer mezo --steps 5 --batch-size 4 --lr 1e-3 --eps "
             "1e-1",
             out, adapter);
    ZT_CHECK(run_zotune(args, printed, sizeof printed) == 0, "--adapter: %s", printed);
    double losses[8];
    char fresh[256];
    make_temp_dir(fresh, sizeof fresh, "prefix_fresh");
    snprintf(args, sizeof args,
             "--output %s --peft prefix --optimizer mezo --steps 5 --batch-size 4 --lr 1e-3 --eps "
             "1e-1",
             fresh);
    ZT_CHECK(run_zotune(args, printed, sizeof printed) == 0, "fresh prefixes: %s", printed);
    double fresh_losses[8];
    ZT_CHECK(read_losses(out, losses, 8) == 5 && read_losses(fresh, fresh_losses, 8) == 5 &&
                 fabs(losses[0] - fresh_losses[0]) > 1e-3,
             "--adapter: first loss %.4f equals the fresh prefixes' %.4f", losses[0],
             fresh_losses[0]);
    check_replay_from_adapter(model, adapter, out, 5);
    snprintf(args, sizeof args, "--output %s/x --adapter %s --num-prefix 3", out, adapter);
    ZT_CHECK(run_zotune(args, printed, sizeof printed) == 2 && strstr(printed, "--num-prefix"),
             "--adapter with another prefix length: %s", printed);
    remove_run_dir(fresh);
    remove_run_dir(out);
}

static void check_refusals(void) {
    static const struct {
        const char *args, *names;
    } cases[] = {
        {"--peft prefix --trainable fc1", "--trainable"},
        {"--peft prefix --lora-rank 4", "--lora-"},
        {"--num-prefix 4", "--peft prefix"},
        {"--peft prefix --num-prefix 0", "--num-prefix"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256], args[2048], printed[4096];
        make_temp_dir(out, sizeof out, "prefix_bad");
        snprintf(args, sizeof args, "--output %s/run --steps 2 %s", out, cases[i].args);
        const int rc = run_zotune(args, printed, sizeof printed);
        ZT_CHECK(rc == 2 && strstr(printed, cases[i].names), "%s: exit %d: %s", cases[i].args, rc,
                 printed);
        remove_run_dir(out);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    zotune = argv[1];
    fixture_path(model, sizeof model, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    check_lowers_loss();
    check_every_optimizer_with("--peft prefix --num-prefix 3", "--lr 1e-2 --eps 1e-1", run_zotune,
                               read_losses);
    check_kill_resume("mezo");
    check_kill_resume("adamw");
    check_continue_from_adapter();
    check_refusals();
    return zt_test_finish("test_prefix_train");
}
