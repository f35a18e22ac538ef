/* First-order training through `zotune train` (src/train/first_order_run.c): every first-order
 * optimizer lowers the LM loss of the fixture task; micro-batches give the step's gradient of one
 * batch (the same losses to rounding); classification records train by the candidates'
 * cross-entropy; SIGTERM and SIGKILL + --resume end bit-identical to an uninterrupted run (bf16
 * weights, stochastic rounding, AdamW state in the snapshot); replay refuses the log; the
 * options that make no sense are refused. argv[1] is the zotune binary, argv[2] the demo
 * directory. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "train_util.h"
#include "zt_test.h"

static const char *zotune;
static const char *demo; /* the demo directory (model/, task/) */

/* Runs `zotune train ARGS` (output discarded), returns its exit code. */
static int train(const char *args) {
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s train %s --quiet 2>&1", zotune, args);
    return zt_test_run(cmd, out, sizeof out);
}

/* The training losses of out/metrics.jsonl, in step order; returns how many. */
static int read_losses(const char *out, double *losses, int max) {
    char path[1200], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *loss = cJSON_GetObjectItem(o, "loss");
        const cJSON *norm = cJSON_GetObjectItem(o, "grad_norm");
        if (cJSON_IsNumber(loss) && cJSON_IsNumber(norm)) losses[n++] = loss->valuedouble;
        cJSON_Delete(o);
    }
    fclose(f);
    return n;
}

static void check_lowers_loss(void) {
    static const char *const configs[] = {
        "sgd --lr 0.5",
        "sgd --lr 0.2 --momentum 0.9 --nesterov",
        "signsgd --lr 0.01",
        "adam --lr 0.01",
        "adamw --lr 0.01 --weight-decay 0.1 --clip-grad-norm 1",
        "adamm --lr 0.01",
    };
    char model[1024], data[1024];
    fixture_path(model, sizeof model, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        char out[256], args[3072];
        make_temp_dir(out, sizeof out, "fo");
        snprintf(args, sizeof args,
                 "--model %s --train %s --output %s --optimizer %s --steps 15 --batch-size 4 "
                 "--threads 1",
                 model, data, out, configs[c]);
        ZT_CHECK(train(args) == 0, "%s failed", args);
        double losses[32];
        const int n = read_losses(out, losses, 32);
        ZT_CHECK(n == 15, "%s: %d logged steps", configs[c], n);
        const double last = n >= 3 ? (losses[n - 1] + losses[n - 2] + losses[n - 3]) / 3.0 : 1e9;
        ZT_CHECK(n >= 3 && last < 0.5 * losses[0],
                 "%s: loss %.4f at the start, %.4f over the last three steps", configs[c],
                 losses[0], last);
        printf("%-48s loss %.3f -> %.3f (mean of the last 3 of 15 steps)\n", configs[c], losses[0],
               last);
        remove_run_dir(out);
    }
}

/* Two micro-batches: one gradient, so the same losses as one pass up to summation order. */
static void check_micro_batches(void) {
    char model[1024], data[1024], one[256], two[256], args[3072];
    fixture_path(model, sizeof model, "opt-post", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    make_temp_dir(one, sizeof one, "fo_mb1");
    make_temp_dir(two, sizeof two, "fo_mb2");
    const char *common = "--optimizer adam --lr 0.01 --steps 6 --batch-size 4 --threads 1";
    snprintf(args, sizeof args, "--model %s --train %s --output %s %s", model, data, one, common);
    ZT_CHECK(train(args) == 0, "%s failed", args);
    snprintf(args, sizeof args, "--model %s --train %s --output %s %s --micro-batches 2", model,
             data, two, common);
    ZT_CHECK(train(args) == 0, "%s failed", args);
    double a[8], b[8];
    const int na = read_losses(one, a, 8), nb = read_losses(two, b, 8);
    ZT_CHECK(na == 6 && nb == 6, "%d and %d logged steps", na, nb);
    for (int i = 0; i < na && i < nb; i++)
        ZT_CHECK_CLOSE(b[i], a[i], 0.0, 1e-4, "step %d: 2 micro-batches against 1", i + 1);
    remove_run_dir(one);
    remove_run_dir(two);
}

/* Classification records: the candidates' cross-entropy goes down, and the dev accuracy is
 * logged as for ZO runs. */
static void check_classification(void) {
    char out[256], args[3072];
    make_temp_dir(out, sizeof out, "fo_cls");
    snprintf(args, sizeof args,
             "--model %s/model --train %s/task/train.jsonl --output %s --optimizer adamw "
             "--lr 3e-4 --steps 12 --batch-size 8 --threads 1 --micro-batches 3",
             demo, demo, out);
    ZT_CHECK(train(args) == 0, "%s failed", args);
    double losses[16];
    const int n = read_losses(out, losses, 16);
    ZT_CHECK(n == 12, "classification: %d logged steps", n);
    const double first = (losses[0] + losses[1] + losses[2]) / 3.0;
    const double last = n >= 3 ? (losses[n - 1] + losses[n - 2] + losses[n - 3]) / 3.0 : 1e9;
    ZT_CHECK(last < 0.8 * first, "classification: loss %.4f over the first three, %.4f the last",
             first, last);
    printf("classification (demo, adamw, 3 micro-batches): loss %.3f -> %.3f\n", first, last);
    remove_run_dir(out);
}

/* AdamW for 400 steps, or (hybrid) MeZO for 200 then AdamW for 200, on bf16 weights. */
static pid_t start_run(const char *out, int resume, int hybrid) {
    char model[1024], data[1024];
    fixture_path(model, sizeof model, "opt-pre-bf16", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    fflush(stdout); /* or the child's copy of the buffer is printed again */
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(zotune, zotune, "train", "--model", model, "--train", data, "--output", out,
              hybrid ? "--schedule" : "--optimizer", hybrid ? "mezo:200,adamw:200" : "adamw",
              "--lr", "1e-3", "--weight-decay", "0.01", "--steps", "400", "--batch-size", "4",
              "--threads", "1", "--save-every", "25", "--quiet", resume ? "--resume" : "--quiet",
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* SIGTERM and SIGKILL between snapshots, then --resume, against an uninterrupted run: an AdamW
 * run killed at log line 140; a MeZO -> AdamW run killed in its ZO phase (line 120) and in its
 * first-order phase (line 290, past the switch at step 200). */
static void check_interrupted_resume(int hybrid) {
    char full[256], termed[256], killed[256];
    make_temp_dir(full, sizeof full, "fo_full");
    make_temp_dir(termed, sizeof termed, "fo_term");
    make_temp_dir(killed, sizeof killed, "fo_kill");
    ZT_CHECK(wait_exit(start_run(full, 0, hybrid)) == 0, "uninterrupted run failed (hybrid %d)",
             hybrid);
    const int signals[2] = {SIGTERM, SIGKILL};
    const int kill_lines[2] = {hybrid ? 120 : 140, hybrid ? 290 : 140};
    char *dirs[2] = {termed, killed};
    for (int i = 0; i < 2; i++) {
        pid_t pid = start_run(dirs[i], 0, hybrid);
        struct timespec nap = {0, 200000};
        /* past a snapshot (every 25 steps), between two */
        for (int spins = 0; spins < 600000 && steplog_lines(dirs[i]) < kill_lines[i]; spins++)
            nanosleep(&nap, NULL);
        kill(pid, signals[i]);
        const int rc = wait_exit(pid);
        const int logged = steplog_lines(dirs[i]) - 1;
        ZT_CHECK(rc == (signals[i] == SIGTERM ? 130 : 128 + SIGKILL), "signal %d: exit %d",
                 signals[i], rc);
        ZT_CHECK(logged < 400, "signal %d landed after the run ended", signals[i]);
        ZT_CHECK(wait_exit(start_run(dirs[i], 1, hybrid)) == 0, "resume after signal %d failed",
                 signals[i]);
        checkpoint_diff d = compare_checkpoints(full, dirs[i]);
        ZT_CHECK(!d.mismatched_layout && d.changed == 0,
                 "signal %d after %d logged steps + resume: %zu of %zu weights differ", signals[i],
                 logged, d.changed, d.elements);
        printf("%s on bf16, signal %d after %d log lines: resumed bit-identical (%zu weights)\n",
               hybrid ? "mezo:200,adamw:200" : "adamw", signals[i], logged, d.elements);
    }

    /* The log of a first-order run does not hold its gradients: replay refuses it. */
    char model[1024], cmd[4096], printed[4096], replayed[256];
    fixture_path(model, sizeof model, "opt-pre-bf16", NULL);
    make_temp_dir(replayed, sizeof replayed, "fo_replayed");
    snprintf(cmd, sizeof cmd, "%s replay %s %s/steplog.jsonl %s 2>&1", zotune, model, full,
             replayed);
    ZT_CHECK(zt_test_run(cmd, printed, sizeof printed) != 0 &&
                 strstr(printed, "not replayable") != NULL,
             "replay of a first-order log: %s", printed);
    remove_run_dir(replayed);
    remove_run_dir(full);
    remove_run_dir(termed);
    remove_run_dir(killed);
}

/* A hybrid schedule in either order: one log, the switch recorded once, ZO records then
 * first-order ones (or the reverse); bad schedules are refused. */
static void check_hybrid(void) {
    char model[1024], data[1024], out[256], args[3072], path[600], line[1024];
    fixture_path(model, sizeof model, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    static const char *const schedules[2] = {"zo:12,fo:8", "adam:8,mezo:12"};
    for (int i = 0; i < 2; i++) {
        make_temp_dir(out, sizeof out, "fo_hybrid");
        snprintf(args, sizeof args,
                 "--model %s --train %s --output %s --schedule %s --lr 1e-3 --batch-size 4 "
                 "--threads 1",
                 model, data, out, schedules[i]);
        ZT_CHECK(train(args) == 0, "%s failed", args);
        snprintf(path, sizeof path, "%s/steplog.jsonl", out);
        FILE *f = fopen(path, "r");
        int zo = 0, fo = 0, phases = 0, order_ok = 1, seen_fo = 0, seen_zo = 0;
        while (f && fgets(line, sizeof line, f)) {
            const int is_fo = strstr(line, "\"fo\":") != NULL;
            const int is_zo = strstr(line, "\"losses\":") != NULL;
            phases += strstr(line, "\"phase\":") != NULL;
            fo += is_fo;
            zo += is_zo;
            /* the first phase's records all come before the second's */
            if (i == 0 && is_zo && seen_fo) order_ok = 0;
            if (i == 1 && is_fo && seen_zo) order_ok = 0;
            seen_fo |= is_fo;
            seen_zo |= is_zo;
        }
        if (f) fclose(f);
        ZT_CHECK(zo == 12 && fo == 8 && phases == 1 && order_ok,
                 "--schedule %s: %d ZO and %d first-order records, %d switches, order %d",
                 schedules[i], zo, fo, phases, order_ok);
        remove_run_dir(out);
    }
    static const char *const refused[] = {"mezo:5,zo-adamm:5", "mezo:5,adamw:x", "adamw",
                                          "mezo:5,nothing:5"};
    make_temp_dir(out, sizeof out, "fo_hybrid_refused");
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(args, sizeof args,
                 "--model %s --train %s --output %s --batch-size 4 --schedule %s", model, data, out,
                 refused[i]);
        ZT_CHECK(train(args) != 0, "--schedule %s accepted", refused[i]);
    }
    snprintf(
        args, sizeof args,
        "--model %s --train %s --output %s --batch-size 4 --schedule mezo:5,adamw:5 --steps 12",
        model, data, out);
    ZT_CHECK(train(args) != 0, "--schedule of 10 steps with --steps 12 accepted");
    remove_run_dir(out);
}

static void check_refusals(void) {
    char model[1024], data[1024], out[256], args[3072];
    fixture_path(model, sizeof model, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    make_temp_dir(out, sizeof out, "fo_refused");
    static const char *const refused[] = {
        "--optimizer adamw --lr-schedule plateau",
        "--optimizer adam --micro-batches 9",
        "--optimizer mezo --nesterov",
        "--optimizer sgd --nesterov",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(args, sizeof args, "--model %s --train %s --output %s --steps 2 --batch-size 4 %s",
                 model, data, out, refused[i]);
        ZT_CHECK(train(args) != 0, "accepted: %s", refused[i]);
    }
    remove_run_dir(out);
}

int main(int argc, char **argv) {
    if (argc < 3) return 1;
    zotune = argv[1];
    demo = argv[2];
    check_lowers_loss();
    check_micro_batches();
    check_classification();
    check_interrupted_resume(0);
    check_interrupted_resume(1);
    check_hybrid();
    check_refusals();
    return zt_test_finish("test_fo_train");
}
