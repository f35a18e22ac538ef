/* The step log is the run: (1) base weights + log, replayed without a forward pass, equal the
 * trained weights bit for bit; (2) a run stopped mid-way and resumed from its snapshot plus
 * the log ends bit-identical to an uninterrupted one; (3) so does one whose snapshot is lost
 * (resume replays the whole log from the base). For optimizers without state (mezo), with
 * tensor state (zo-adamm) and with scalar policy state (as2p), in F32 and BF16 (stochastic
 * rounding keyed by the RNG, not by threads). And 400-step runs with a cosine schedule replay
 * bit-identically for six optimizers (stp and s2p evaluate twice per step). */
#include "train/replay.h"
#include "train_util.h"
#include "zt_test.h"

enum { STEPS = 40, LONG_STEPS = 400 };

static void configure(zt_train_options *o, const char *fixture, const char *optimizer, char *model,
                      char *data, const char *out) {
    fixture_run_options(o, fixture, model, 1024, data, 1024, out);
    o->optimizer = optimizer;
    o->steps = STEPS;
    if (strcmp(optimizer, "zo-adamm") == 0) o->hp.lr = 1e-3;
    if (strcmp(optimizer, "as2p") == 0) o->hp.eps = 1e-2;
}

static void check_same(const char *what, const char *a, const char *b) {
    checkpoint_diff d = compare_checkpoints(a, b);
    ZT_CHECK(!d.mismatched_layout && d.changed == 0, "%s: %zu of %zu weights differ (max %g)", what,
             d.changed, d.elements, d.max_abs);
}

static void scenario(const char *fixture, const char *optimizer) {
    char model[1024], data[1024], full[256], stopped[256], lost[256], replayed[256], what[256];
    make_temp_dir(full, sizeof full, "full");
    make_temp_dir(stopped, sizeof stopped, "stopped");
    make_temp_dir(lost, sizeof lost, "lost");
    make_temp_dir(replayed, sizeof replayed, "replayed");
    zt_train_options o;
    zt_train_result res;

    configure(&o, fixture, optimizer, model, data, full);
    ZT_REQUIRE_OK(zt_train(&o, &res));
    ZT_CHECK(res.steps_done == STEPS && !res.interrupted, "uninterrupted run: %d", res.steps_done);
    /* the weights moved: otherwise equality below proves nothing */
    checkpoint_diff moved = compare_checkpoints(model, full);
    ZT_CHECK(moved.changed > moved.elements / 2, "%s %s: only %zu of %zu weights moved", fixture,
             optimizer, moved.changed, moved.elements);

    char log[1200];
    snprintf(log, sizeof log, "%s/steplog.jsonl", full);
    int n = 0;
    ZT_CHECK_OK(zt_replay(model, log, replayed, "cpu", 0, &n));
    ZT_CHECK(n == STEPS, "replayed %d records", n);
    snprintf(what, sizeof what, "%s %s replay", fixture, optimizer);
    check_same(what, full, replayed);

    /* stop after 17 steps with snapshots every 10: resume = snapshot(10) + log(10..16) */
    configure(&o, fixture, optimizer, model, data, stopped);
    o.save_every = 10;
    o.stop_after = 17;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    ZT_CHECK(res.interrupted && res.steps_done == 17, "stopped run: %d steps", res.steps_done);
    o.stop_after = 0;
    o.resume = 1;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    ZT_CHECK(res.steps_done == STEPS, "resumed run ends at %d", res.steps_done);
    snprintf(what, sizeof what, "%s %s stop+resume", fixture, optimizer);
    check_same(what, full, stopped);

    /* stop after 23 steps, then lose every snapshot: resume replays the log from the base */
    configure(&o, fixture, optimizer, model, data, lost);
    o.stop_after = 23;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/snapshot' '%s/snapshot.old'", lost, lost);
    ZT_CHECK(system(cmd) == 0, "removing snapshots");
    /* and the last record lost its newline, as a crash mid-append leaves it: every reader
     * drops it, so resume redoes that step and the log keeps no gap */
    snprintf(log, sizeof log, "%s/steplog.jsonl", lost);
    FILE *f = fopen(log, "rb");
    ZT_REQUIRE(f && fseek(f, 0, SEEK_END) == 0, "%s", log);
    long size = ftell(f);
    fclose(f);
    ZT_REQUIRE(truncate(log, size - 1) == 0, "cutting the last newline of %s", log);
    o.stop_after = 0;
    o.resume = 1;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    snprintf(what, sizeof what, "%s %s resume without snapshot", fixture, optimizer);
    check_same(what, full, lost);
    char replayed_lost[256];
    make_temp_dir(replayed_lost, sizeof replayed_lost, "replayed_lost");
    ZT_CHECK_OK(zt_replay(model, log, replayed_lost, "cpu", 0, &n));
    ZT_CHECK(n == STEPS, "the resumed log replays %d records", n);
    snprintf(what, sizeof what, "%s %s resumed log replayed", fixture, optimizer);
    check_same(what, full, replayed_lost);
    remove_run_dir(replayed_lost);

    /* without --resume an existing run is refused, and nothing in it is touched */
    o.resume = 0;
    zt_status s = zt_train(&o, &res);
    ZT_CHECK(s == ZT_ERR_INVALID_ARG && strstr(zt_last_error(), "--resume"),
             "rerun without --resume: %s", zt_last_error());
    check_same("refused rerun left the output alone", full, lost);

    printf("%-13s %-9s replay, stop+resume, resume without snapshot: bit-identical\n", fixture,
           optimizer);
    remove_run_dir(full);
    remove_run_dir(stopped);
    remove_run_dir(lost);
    remove_run_dir(replayed);
}

/* A long run with a decaying schedule: the log's coefficients, lrs and seeds must round-trip
 * exactly for hundreds of steps, where one digit too few in the log drifts the weights. */
static void long_replay(const char *fixture, const char *optimizer) {
    char model[1024], data[1024], full[256], replayed[256], log[1200], what[256];
    make_temp_dir(full, sizeof full, "long");
    make_temp_dir(replayed, sizeof replayed, "long_replayed");
    zt_train_options o;
    zt_train_result res;
    configure(&o, fixture, optimizer, model, data, full);
    o.steps = LONG_STEPS;
    o.hp.lr_schedule = ZT_SCHEDULE_COSINE;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    ZT_CHECK(res.steps_done == LONG_STEPS, "long run: %d steps", res.steps_done);
    snprintf(log, sizeof log, "%s/steplog.jsonl", full);
    int n = 0;
    ZT_CHECK_OK(zt_replay(model, log, replayed, "cpu", 0, &n));
    ZT_CHECK(n == LONG_STEPS, "replayed %d records", n);
    snprintf(what, sizeof what, "%s %s %d-step cosine replay", fixture, optimizer, LONG_STEPS);
    check_same(what, full, replayed);
    printf("%-13s %-9s %d steps, cosine lr: replay bit-identical\n", fixture, optimizer,
           LONG_STEPS);
    remove_run_dir(full);
    remove_run_dir(replayed);
}

int main(void) {
    scenario("opt-pre", "mezo");
    scenario("opt-pre-bf16", "mezo");
    scenario("opt-pre", "zo-adamm");
    scenario("opt-pre", "as2p");
    long_replay("opt-pre", "mezo");
    long_replay("opt-pre-bf16", "zo-sgd-mmt");
    long_replay("opt-pre", "zo-adamm");
    long_replay("opt-pre-f16", "as2p");
    /* a second round of evaluation within the step: it must see the previous step's deferred
     * update already applied (docs/design.md §2.5) */
    long_replay("opt-pre", "stp");
    long_replay("opt-pre-bf16", "s2p");
    return zt_test_finish("test_replay_resume");
}
