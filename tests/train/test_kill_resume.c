/* The zotune process itself, interrupted: SIGTERM makes `zotune train` save and exit 130;
 * SIGKILL leaves whatever was on disk at that instant (a torn log line, a half-written snapshot
 * directory). Either way `--resume` must end bit-identical to an uninterrupted run.
 * argv[1] is the zotune binary. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "train/replay.h"
#include "train_util.h"
#include "zt_test.h"

enum { STEPS = 1500 };

static const char *zotune;

static pid_t start_training(const char *out, int resume) {
    char model[1024], data[1024], steps[16];
    fixture_path(model, sizeof model, "opt-pre-bf16", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    snprintf(steps, sizeof steps, "%d", STEPS);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(zotune, zotune, "train", "--model", model, "--train", data, "--output", out,
              "--steps", steps, "--batch-size", "4", "--lr", "1e-3", "--threads", "1",
              "--save-every", "100", "--quiet", resume ? "--resume" : "--quiet", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Runs until the log has `lines` lines, then sends `signo`. Returns the exit code. */
static int interrupt_at(const char *out, int lines, int signo) {
    pid_t pid = start_training(out, 0);
    struct timespec nap = {0, 200000};
    for (int spins = 0; spins < 600000 && steplog_lines(out) < lines; spins++)
        nanosleep(&nap, NULL);
    kill(pid, signo);
    return wait_exit(pid);
}

/* next_step of out/snapshot/trainer.json, -1 when unreadable. */
static int snapshot_next_step(const char *out) {
    char path[1200], text[4096];
    snprintf(path, sizeof path, "%s/snapshot/trainer.json", out);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *o = cJSON_Parse(text);
    const cJSON *next = cJSON_GetObjectItem(o, "next_step");
    int step = cJSON_IsNumber(next) ? next->valueint : -1;
    cJSON_Delete(o);
    return step;
}

/* What SIGTERM saved is the state after exactly the logged steps: the snapshot says so, and the
 * final weights equal base + log replayed without a forward pass. */
static void check_saved_at_stop(const char *out, int logged_steps) {
    ZT_CHECK(snapshot_next_step(out) == logged_steps, "SIGTERM: snapshot at step %d, log has %d",
             snapshot_next_step(out), logged_steps);
    char model[1024], log[1200], replayed[256];
    fixture_path(model, sizeof model, "opt-pre-bf16", NULL);
    snprintf(log, sizeof log, "%s/steplog.jsonl", out);
    make_temp_dir(replayed, sizeof replayed, "term_replayed");
    int n = 0;
    ZT_CHECK_OK(zt_replay(model, log, replayed, "cpu", 1, &n));
    checkpoint_diff d = compare_checkpoints(out, replayed);
    ZT_CHECK(n == logged_steps && !d.mismatched_layout && d.changed == 0,
             "SIGTERM: saved weights differ from the %d logged steps in %zu of %zu elements", n,
             d.changed, d.elements);
    remove_run_dir(replayed);
}

/* One writer per output directory: while a run is going, a second `zotune train --resume` on
 * the same --output fails at once naming the first's pid and touches nothing; once the first is
 * killed its lock is gone and --resume proceeds. Returns the writer's pid, still running. */
static pid_t check_second_writer(const char *out) {
    pid_t first = start_training(out, 0);
    struct timespec nap = {0, 200000};
    for (int spins = 0; spins < 600000 && steplog_lines(out) < 50; spins++)
        nanosleep(&nap, NULL);
    char model[1024], data[1024], cmd[4096], printed[4096] = "";
    fixture_path(model, sizeof model, "opt-pre-bf16", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    snprintf(cmd, sizeof cmd,
             "%s train --model %s --train %s --output %s --steps %d --batch-size 4 --lr 1e-3 "
             "--threads 1 --save-every 100 --quiet --resume 2>&1",
             zotune, model, data, out, STEPS);
    FILE *p = popen(cmd, "r");
    ZT_REQUIRE(p != NULL, "popen");
    size_t n = fread(printed, 1, sizeof printed - 1, p);
    printed[n] = '\0';
    int status = pclose(p);
    char pid_text[32];
    snprintf(pid_text, sizeof pid_text, "process %ld", (long)first);
    ZT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(printed, pid_text) &&
                 strstr(printed, "--output"),
             "a second writer on %s: exit %d, printed: %s", out,
             WIFEXITED(status) ? WEXITSTATUS(status) : -1, printed);
    return first;
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    zotune = argv[1];
    char full[256], termed[256], killed[256];
    make_temp_dir(full, sizeof full, "full");
    make_temp_dir(termed, sizeof termed, "term");
    make_temp_dir(killed, sizeof killed, "kill");

    ZT_CHECK(wait_exit(start_training(full, 0)) == 0, "uninterrupted run failed");

    int rc = interrupt_at(termed, 400, SIGTERM);
    int done_at_term = steplog_lines(termed) - 1;
    /* 1500 steps take far longer than reaching line 400: the signal lands mid-run */
    ZT_CHECK(rc == 130, "SIGTERM: exit %d (want 130: saved and stopped)", rc);
    ZT_CHECK(done_at_term >= 399 && done_at_term < STEPS, "SIGTERM: stopped after %d steps",
             done_at_term);
    check_saved_at_stop(termed, done_at_term);
    ZT_CHECK(wait_exit(start_training(termed, 1)) == 0, "resume after SIGTERM failed");
    checkpoint_diff d = compare_checkpoints(full, termed);
    ZT_CHECK(!d.mismatched_layout && d.changed == 0,
             "SIGTERM at step %d + resume: %zu of %zu weights differ", done_at_term, d.changed,
             d.elements);

    /* the SIGKILL run first meets a second writer, then dies holding its lock */
    pid_t writer = check_second_writer(killed);
    struct timespec nap = {0, 200000};
    for (int spins = 0; spins < 600000 && steplog_lines(killed) < 700; spins++)
        nanosleep(&nap, NULL);
    kill(writer, SIGKILL);
    rc = wait_exit(writer);
    int done_at_kill = steplog_lines(killed) - 1;
    ZT_CHECK(rc == 128 + SIGKILL, "SIGKILL: exit %d", rc);
    ZT_CHECK(wait_exit(start_training(killed, 1)) == 0, "resume after SIGKILL failed");
    d = compare_checkpoints(full, killed);
    ZT_CHECK(!d.mismatched_layout && d.changed == 0,
             "SIGKILL at step %d + resume: %zu of %zu weights differ", done_at_kill, d.changed,
             d.elements);
    printf("SIGTERM after %d steps (exit %d), SIGKILL after %d steps: both resumed to %d steps "
           "bit-identical to the uninterrupted run\n",
           done_at_term, 130, done_at_kill, STEPS);
    remove_run_dir(full);
    remove_run_dir(termed);
    remove_run_dir(killed);
    return zt_test_finish("test_kill_resume");
}
