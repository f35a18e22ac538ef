/* `zotune train` as a user meets it when things go wrong (issue 10): a diverging run saves only
 * the last finite state, --resume refuses another run (exit 2), replay refuses another base (and
 * both refuse a log whose Rademacher steps predate the packed z layout),
 * and SIGKILL at many random moments (snapshot writes included) with an optimizer that keeps
 * state, the plateau schedule and evaluation with best/ still ends identical to the
 * uninterrupted run: weights, step log, best/ and metrics.jsonl. argv[1] is the zotune binary. */
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "train_util.h"
#include "zt_test.h"

static const char *zotune;
static char printed[1 << 16];

/* Runs a shell command (stderr merged), keeping its output in `printed`; returns the exit code. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(printed, 1, sizeof printed - 1, p);
    printed[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Every element of dir/name (a safetensors file) is finite; returns how many are not. */
static size_t count_nonfinite(const char *dir, const char *name) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    zt_safetensors *st = NULL;
    if (zt_st_open(path, &st) != ZT_OK) return (size_t)-1;
    size_t bad = 0;
    for (int i = 0; i < zt_st_count(st); i++) {
        const zt_st_tensor *t = zt_st_get(st, i);
        for (size_t e = 0; e < t->n_elems; e++)
            bad += !isfinite(element_as_double(t, e));
    }
    zt_st_close(st);
    return bad;
}

static int count_lines_with(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[16384];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* The saved weights are those of an uninterrupted run of as many steps as the log holds: in
 * shadow mode that is also base + log replayed. In place the weights drift off the replay
 * (docs/design.md §2.3), and the state is restored from the snapshot, taken every step here. */
static void check_saved_is_logged(const char *what, const char *base, const char *out,
                                  const char *run_options) {
    char log[300], reference[256], data[1024];
    snprintf(log, sizeof log, "%s/steplog.jsonl", out);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    int steps = count_lines_with(log, "\"step\"");
    make_temp_dir(reference, sizeof reference, "integrity_reference");
    int rc = run("%s train --model %s --train %s --output %s/r %s --steps %d", zotune, base, data,
                 reference, run_options, steps);
    ZT_CHECK(rc == 0, "%s: the %d-step reference run failed: %s", what, steps, printed);
    char reference_dir[300];
    snprintf(reference_dir, sizeof reference_dir, "%s/r", reference);
    checkpoint_diff d = compare_checkpoints(out, reference_dir);
    ZT_CHECK(!d.mismatched_layout && d.changed == 0,
             "%s: saved weights differ from an uninterrupted %d-step run in %zu of %zu elements",
             what, steps, d.changed, d.elements);
    if (strstr(run_options, "inplace") == NULL) {
        rc = run("%s replay %s %s %s/replayed", zotune, base, log, reference);
        snprintf(reference_dir, sizeof reference_dir, "%s/replayed", reference);
        d = compare_checkpoints(out, reference_dir);
        ZT_CHECK(rc == 0 && !d.mismatched_layout && d.changed == 0,
                 "%s: saved weights differ from base + log in %zu of %zu elements (%s)", what,
                 d.changed, d.elements, printed);
    }
    remove_run_dir(reference);
}

/* Defect 2: a diverging run (f16 weights overflow at --lr 1e3; f32 losses overflow at 1e20)
 * stops with a numeric error, and the weights, snapshot and log it leaves are the last finite
 * state, in shadow and in place. With --on-nonfinite skip the run goes on, logging the skips. */
static void check_divergence(const char *fixture, const char *lr, const char *mode,
                             int save_every) {
    char base[1024], data[1024], out[256], what[128], options[256];
    fixture_path(base, sizeof base, fixture, NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    snprintf(what, sizeof what, "%s --lr %s --mode %s --save-every %d", fixture, lr, mode,
             save_every);
    snprintf(options, sizeof options,
             "--batch-size 2 --lr %s --mode %s --save-every %d --threads 1 --quiet", lr, mode,
             save_every);
    make_temp_dir(out, sizeof out, "diverge");
    int rc = run("%s train --model %s --train %s --output %s --steps 12 %s", zotune, base, data,
                 out, options);
    ZT_CHECK(rc == 1 && strstr(printed, "numeric error") && strstr(printed, "non-finite"),
             "%s: exit %d (want 1, a numeric error): %s", what, rc, printed);
    ZT_CHECK(count_nonfinite(out, "model.safetensors") == 0, "%s: %zu non-finite saved weights",
             what, count_nonfinite(out, "model.safetensors"));
    ZT_CHECK(count_nonfinite(out, "snapshot/model.safetensors") == 0,
             "%s: %zu non-finite weights in the snapshot", what,
             count_nonfinite(out, "snapshot/model.safetensors"));
    check_saved_is_logged(what, base, out, options);
    remove_run_dir(out);

    make_temp_dir(out, sizeof out, "diverge_skip");
    rc = run("%s train --model %s --train %s --output %s --steps 12 %s --on-nonfinite skip", zotune,
             base, data, out, options);
    char log[300];
    snprintf(log, sizeof log, "%s/steplog.jsonl", out);
    int skipped = count_lines_with(log, "\"skipped\"");
    ZT_CHECK(rc == 0 && skipped >= 1 && count_lines_with(log, "\"step\"") == 12,
             "%s --on-nonfinite skip: exit %d, %d of 12 steps logged as skipped: %s", what, rc,
             skipped, printed);
    ZT_CHECK(count_nonfinite(out, "model.safetensors") == 0, "%s skip: non-finite weights saved",
             what);
    if (strcmp(mode, "shadow") == 0) {
        char replayed[300];
        snprintf(replayed, sizeof replayed, "%s/replayed", out);
        rc = run("%s replay %s %s %s", zotune, base, log, replayed);
        checkpoint_diff d = compare_checkpoints(out, replayed);
        ZT_CHECK(rc == 0 && !d.mismatched_layout && d.changed == 0,
                 "%s skip: saved weights differ from base + log in %zu of %zu elements", what,
                 d.changed, d.elements);
    }
    remove_run_dir(out);
}

/* Defect 6: --resume with another option or other input content is refused with exit 2, naming
 * the option and both values; replay refuses a base with other weights. */
static void check_same_run_or_refused(void) {
    char base[1024], other_base[1024], data[1024], out[256], copy[300];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(other_base, sizeof other_base, "opt-post", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    make_temp_dir(out, sizeof out, "same_run");
    snprintf(copy, sizeof copy, "%s.data.jsonl", out);
    ZT_REQUIRE(run("cp %s %s", data, copy) == 0, "copying %s", data);
    const char *common = "--steps 6 --batch-size 2 --lr 1e-3 --threads 1 --quiet";
    ZT_REQUIRE(
        run("%s train --model %s --train %s --output %s %s", zotune, base, copy, out, common) == 0,
        "first run: %s", printed);
    static const struct {
        const char *option, *then, *now;
    } changed[] = {
        {"--lr", "0.001", "0.002"},
        {"--seed", "42", "7"},
        {"--batch-size", "2", "3"},
        {"--steps", "6", "8"},
        {"--eps", "0.001", "0.01"},
        {"--mode", "shadow", "inplace"},
        {"--lr-schedule", "constant", "cosine"},
        {"--directions", "1", "2"},
        {"--weight-decay", "0", "0.5"},
        {"--optimizer", "mezo", "zo-sgd-sign"},
    };
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        int rc = run("%s train --model %s --train %s --output %s %s %s %s --resume", zotune, base,
                     copy, out, common, changed[i].option, changed[i].now);
        ZT_CHECK(rc == 2 && strstr(printed, changed[i].option) && strstr(printed, changed[i].now),
                 "resume with %s %s: exit %d (want 2 naming it): %s", changed[i].option,
                 changed[i].now, rc, printed);
    }
    int rc = run("%s train --model %s --train %s --output %s %s --no-stochastic-rounding --resume",
                 zotune, base, copy, out, common);
    ZT_CHECK(rc == 2 && strstr(printed, "--stochastic-rounding"),
             "resume without stochastic rounding: exit %d: %s", rc, printed);
    rc = run("%s train --model %s --train %s --output %s %s --resume", zotune, other_base, copy,
             out, common);
    ZT_CHECK(rc == 2 && strstr(printed, "--model") && strstr(printed, "fingerprint"),
             "resume on another base: exit %d: %s", rc, printed);
    /* the same path, one byte of content changed */
    ZT_REQUIRE(run("sed -i '1s/339/338/' %s", copy) == 0, "editing %s", copy);
    rc = run("%s train --model %s --train %s --output %s %s --resume", zotune, base, copy, out,
             common);
    ZT_CHECK(rc == 2 && strstr(printed, "--train") && strstr(printed, "fingerprint"),
             "resume on edited training data: exit %d: %s", rc, printed);
    rc = run("%s replay %s %s/steplog.jsonl %s/replayed", zotune, other_base, out, out);
    ZT_CHECK(rc == 2 && strstr(printed, "fingerprint"), "replay onto another base: exit %d: %s", rc,
             printed);
    remove_run_dir(out);
    unlink(copy);
}

/* A log from before Rademacher z was packed 32 elements per word (docs/spec.md §5.9) has no
 * "z layout" run option: its Rademacher steps would replay along other directions, so --resume
 * and replay refuse it (exit 2, naming the layout); a Gaussian log without it still resumes and
 * replays. The old log is made by deleting the option from a new one's header. */
static void check_old_rademacher_layout_refused(void) {
    char base[1024], data[1024], out[256];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    const char *common = "--steps 2 --batch-size 2 --lr 1e-3 --threads 1 --quiet";
    const char *drop_layout = "sed -i '1s/,\"z layout\":\"rademacher 32 per word\"//'";
    static const struct {
        const char *optimizer;
        int refused;
    } cases[] = {{"ga-sign", 1}, {"mezo", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_temp_dir(out, sizeof out, "z_layout");
        ZT_REQUIRE(run("%s train --model %s --train %s --output %s --optimizer %s %s", zotune, base,
                       data, out, cases[i].optimizer, common) == 0,
                   "%s run: %s", cases[i].optimizer, printed);
        char log[300];
        snprintf(log, sizeof log, "%s/steplog.jsonl", out);
        ZT_CHECK(count_lines_with(log, "\"z layout\":\"rademacher 32 per word\"") == 1,
                 "%s: the log header records the z layout", cases[i].optimizer);
        ZT_REQUIRE(run("%s %s", drop_layout, log) == 0, "editing %s", log);
        ZT_CHECK(count_lines_with(log, "z layout") == 0, "%s: layout removed", log);
        int rc = run("%s train --model %s --train %s --output %s --optimizer %s %s --resume",
                     zotune, base, data, out, cases[i].optimizer, common);
        if (cases[i].refused)
            ZT_CHECK(rc == 2 && strstr(printed, "Rademacher") && strstr(printed, "z layout"),
                     "%s: resume of a log without the z layout: exit %d (want 2): %s",
                     cases[i].optimizer, rc, printed);
        else
            ZT_CHECK(rc == 0, "%s: resume of a log without the z layout: exit %d: %s",
                     cases[i].optimizer, rc, printed);
        rc = run("%s replay %s %s %s/replayed", zotune, base, log, out);
        if (cases[i].refused)
            ZT_CHECK(rc == 2 && strstr(printed, "Rademacher") && strstr(printed, "z layout"),
                     "%s: replay of a log without the z layout: exit %d (want 2): %s",
                     cases[i].optimizer, rc, printed);
        else
            ZT_CHECK(rc == 0, "%s: replay of a log without the z layout: exit %d: %s",
                     cases[i].optimizer, rc, printed);
        remove_run_dir(out);
    }
}

/* ---- many random SIGKILLs ---- */

static const char *const kill_run_options =
    "--steps 40 --batch-size 2 --optimizer zo-adamm --lr 1e-2 --lr-schedule plateau "
    "--plateau-patience 1 --plateau-factor 0.5 --eval-every 3 --save-every 2 --threads 1 --quiet";

static pid_t start_run(const char *base, const char *data, const char *out, int resume) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s train --model %s --train %s --eval %s --output %s %s %s",
             zotune, base, data, data, out, kill_run_options, resume ? "--resume" : "");
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check_same_file(const char *name, const char *a, const char *b) {
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/%s", a, name);
    snprintf(pb, sizeof pb, "%s/%s", b, name);
    char *ta = read_without_timing(pa), *tb = read_without_timing(pb);
    ZT_CHECK(ta && tb && strcmp(ta, tb) == 0, "%s differs (%s vs %s)", name, pa, pb);
    free(ta);
    free(tb);
}

/* Neither the thread count nor the CPU's vector paths change anything: ops split work into
 * pieces that do not depend on the count (z by element, GEMMs in fixed column pieces, rows and
 * heads), and the AVX2 z and element loops compute the scalar definitions' bits. So runs on 1
 * thread, 3 threads and 1 thread with ZT_CPU_RNG=portable (the scalar loops) save the same
 * weights and log the same losses, bit for bit. f16 storage (stochastic rounding), shadow and
 * in-place. */
static void check_thread_counts(void) {
    static const char *const modes[] = {"shadow", "inplace"};
    static const struct {
        const char *name, *env, *threads;
    } runs[] = {{"3 threads", "", "3"}, {"the portable path", "ZT_CPU_RNG=portable ", "1"}};
    char base[1024], data[1024], one[256], other[256], a[1200], b[1200];
    fixture_path(base, sizeof base, "opt-pre-f16", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    const char *common = "--steps 4 --batch-size 4 --lr 1e-2 --eps 1e-2 --quiet";
    for (int m = 0; m < 2; m++) {
        make_temp_dir(one, sizeof one, "threads_1");
        ZT_REQUIRE(run("%s train --model %s --train %s --output %s %s --mode %s --threads 1",
                       zotune, base, data, one, common, modes[m]) == 0,
                   "1 thread: %s", printed);
        snprintf(a, sizeof a, "%s/model.safetensors", one);
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            make_temp_dir(other, sizeof other, "threads_other");
            ZT_REQUIRE(run("%s%s train --model %s --train %s --output %s %s --mode %s --threads %s",
                           runs[r].env, zotune, base, data, other, common, modes[m],
                           runs[r].threads) == 0,
                       "%s: %s", runs[r].name, printed);
            snprintf(b, sizeof b, "%s/model.safetensors", other);
            ZT_CHECK(run("cmp %s %s", a, b) == 0, "%s: weights differ between 1 thread and %s: %s",
                     modes[m], runs[r].name, printed);
            check_same_file("steplog.jsonl", one, other);
            remove_run_dir(other);
        }
        remove_run_dir(one);
    }
}

static void check_random_kills(void) {
    char base[1024], data[1024], full[256], killed[256];
    fixture_path(base, sizeof base, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    make_temp_dir(full, sizeof full, "kills_full");
    make_temp_dir(killed, sizeof killed, "kills");
    double t0 = seconds_now();
    ZT_REQUIRE(wait_exit(start_run(base, data, full, 0)) == 0, "uninterrupted run failed");
    double full_seconds = seconds_now() - t0;
    /* Each attempt resumes the last and is killed a random number of log lines later (0..2,
     * so start-up is hit too) plus a random 0..15 ms, which lands inside evaluations, best/ and
     * snapshot writes as well; until one finishes on its own. */
    srand(12345);
    int kills = 0, attempts = 0, rc = -1;
    char log[300];
    snprintf(log, sizeof log, "%s/steplog.jsonl", killed);
    while (attempts < 400) {
        int target = count_lines_with(log, "\n") + rand() % 3;
        pid_t pid = start_run(base, data, killed, attempts > 0);
        attempts++;
        int status = 0, reaped = 0;
        struct timespec poll_nap = {0, 100000};
        while (count_lines_with(log, "\n") < target && !(reaped = waitpid(pid, &status, WNOHANG)))
            nanosleep(&poll_nap, NULL);
        if (reaped) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        } else {
            long extra_ns = (long)(rand() % 15000) * 1000L;
            struct timespec nap = {0, extra_ns};
            nanosleep(&nap, NULL);
            kill(pid, SIGKILL);
            rc = wait_exit(pid);
        }
        if (rc == 128 + SIGKILL) {
            kills++;
            continue;
        }
        if (rc == 0) break;
        ZT_CHECK(0, "attempt %d after %d kills: exit %d", attempts, kills, rc);
        break;
    }
    /* the last kill may have landed after the run finished: one more resume is a no-op then */
    if (rc != 0) rc = wait_exit(start_run(base, data, killed, 1));
    ZT_CHECK(rc == 0, "final resume: exit %d", rc);
    ZT_CHECK(kills >= 20, "only %d of %d attempts were killed mid-run", kills, attempts);
    printf("%d SIGKILLs over %d attempts (uninterrupted run %.2f s)\n", kills, attempts,
           full_seconds);
    checkpoint_diff d = compare_checkpoints(full, killed);
    ZT_CHECK(!d.mismatched_layout && d.changed == 0, "weights differ in %zu of %zu elements",
             d.changed, d.elements);
    char best_full[300], best_killed[300];
    snprintf(best_full, sizeof best_full, "%s/best", full);
    snprintf(best_killed, sizeof best_killed, "%s/best", killed);
    d = compare_checkpoints(best_full, best_killed);
    ZT_CHECK(!d.mismatched_layout && d.changed == 0, "best/ weights differ in %zu of %zu elements",
             d.changed, d.elements);
    check_same_file("steplog.jsonl", full, killed);
    check_same_file("metrics.jsonl", full, killed);
    check_same_file("best/metric.json", full, killed);
    check_same_file("snapshot/trainer.json", full, killed);
    snprintf(log, sizeof log, "%s/steplog.jsonl", full);
    ZT_CHECK(count_lines_with(log, "\"eval\"") == 15,
             "%d evaluations logged, want 15 (0, 3, .., 39, 40)",
             count_lines_with(log, "\"eval\""));
    remove_run_dir(full);
    remove_run_dir(killed);
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    zotune = argv[1];
    check_divergence("opt-pre-f16", "1e3", "shadow", 1);
    check_divergence("opt-pre-f16", "1e3", "inplace", 1);
    check_divergence("opt-pre", "1e20", "shadow", 1);
    check_divergence("opt-pre", "1e20", "inplace", 1);
    /* no snapshot after each step: the diverging update is still pending when the next step's
     * sweep applies it, which finds it non-finite (docs/design.md §2.5) */
    check_divergence("opt-pre-f16", "1e3", "shadow", 5);
    check_same_run_or_refused();
    check_old_rademacher_layout_refused();
    check_thread_counts();
    check_random_kills();
    return zt_test_finish("test_run_integrity");
}
