/* SIGKILL while a step's update is pending (docs/design.md §2.5). In shadow mode step t's update
 * waits for step t + 1's sweep, which applies it tensor by tensor as it stages them, and step t
 * is logged only once its update has reached every tensor; so between the snapshots of a run
 * with momentum (optimizer state moves with the update) a kill lands, almost always, in a sweep
 * whose weights are part updated. What is on disk (the last snapshot + the log) must still give
 * the uninterrupted run bit for bit: killed three times at different steps and resumed each
 * time, the final weights and the optimizer state equal an uninterrupted run's, and replaying
 * the log from the base gives those weights again. argv[1] is the zotune binary. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "train/replay.h"
#include "train_util.h"
#include "zt_test.h"

enum { STEPS = 600 };

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
              "--steps", steps, "--batch-size", "4", "--lr", "1e-3", "--optimizer", "zo-sgd-mmt",
              "--threads", "1", "--save-every", "70", "--quiet", resume ? "--resume" : "--quiet",
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Starts (or resumes) a run and kills it once its log has `lines` lines; returns the steps the
 * log held at the kill. */
static int kill_at(const char *out, int resume, int lines) {
    pid_t pid = start_training(out, resume);
    struct timespec nap = {0, 200000};
    int status = 0, exited = 0;
    for (int spins = 0; spins < 600000 && steplog_lines(out) < lines && !exited; spins++) {
        nanosleep(&nap, NULL);
        exited = waitpid(pid, &status, WNOHANG) == pid;
    }
    ZT_CHECK(!exited, "the run ended (status %d) before its log had %d lines", status, lines);
    if (exited) return -1;
    kill(pid, SIGKILL);
    int rc = wait_exit(pid);
    ZT_CHECK(rc == 128 + SIGKILL, "SIGKILL at %d lines: exit %d", lines, rc);
    return steplog_lines(out) - 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    zotune = argv[1];
    char full[256], killed[256], replayed[256];
    make_temp_dir(full, sizeof full, "pending_full");
    make_temp_dir(killed, sizeof killed, "pending_kill");
    make_temp_dir(replayed, sizeof replayed, "pending_replayed");

    ZT_CHECK(wait_exit(start_training(full, 0)) == 0, "uninterrupted run failed");
    /* kills between snapshots (every 70 steps): 100, 230 and 400 lines, each resumed */
    const int at[3] = {100, 230, 400};
    int done[3];
    for (int i = 0; i < 3; i++)
        done[i] = kill_at(killed, i > 0, at[i] + 1);
    ZT_CHECK(wait_exit(start_training(killed, 1)) == 0, "the last resume failed");
    checkpoint_diff d = compare_checkpoints(full, killed);
    ZT_CHECK(!d.mismatched_layout && d.changed == 0,
             "killed after %d, %d and %d steps and resumed: %zu of %zu weights differ", done[0],
             done[1], done[2], d.changed, d.elements);
    /* the momentum, as the final snapshots keep it */
    char full_state[1200], killed_state[1200];
    snprintf(full_state, sizeof full_state, "%s/snapshot/optimizer.safetensors", full);
    snprintf(killed_state, sizeof killed_state, "%s/snapshot/optimizer.safetensors", killed);
    size_t state_bytes = 0;
    const int same_state = zt_test_same_file(full_state, killed_state, &state_bytes);
    ZT_CHECK(same_state && state_bytes > 0, "final optimizer state differs (%s vs %s)", full_state,
             killed_state);

    char model[1024], log[1200];
    fixture_path(model, sizeof model, "opt-pre-bf16", NULL);
    snprintf(log, sizeof log, "%s/steplog.jsonl", killed);
    int n = 0;
    ZT_CHECK_OK(zt_replay(model, log, replayed, "cpu", 1, &n));
    checkpoint_diff dr = compare_checkpoints(killed, replayed);
    ZT_CHECK(n == STEPS && !dr.mismatched_layout && dr.changed == 0,
             "replay of %d steps: %zu of %zu weights differ from the trained ones", n, dr.changed,
             dr.elements);
    printf("SIGKILL with an update pending after %d, %d and %d steps: resumed to %d steps "
           "bit-identical (%zu weights, %zu bytes of optimizer state); replay equal\n",
           done[0], done[1], done[2], STEPS, d.elements, state_bytes);
    remove_run_dir(full);
    remove_run_dir(killed);
    remove_run_dir(replayed);
    return zt_test_finish("test_kill_pending");
}
