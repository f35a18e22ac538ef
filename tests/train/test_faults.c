/* Nothing lost when the machine fails (issue 10). A run with an optimizer that keeps state, the
 * plateau schedule and evaluation with best/ is taken from a 1-step snapshot through one more
 * step, its evaluation and the final snapshot, while
 *   - the N-th heap allocation of the library fails, for every N the run makes;
 *   - the N-th file write fails with ENOSPC (and every write after it: the disk stays full),
 *     or with EIO once, for every N the run makes.
 * Each failure must return a status with a message and leave a log and snapshot from which
 * --resume, once the fault is gone, ends bit-identical to the uninterrupted run: weights, step
 * log, metrics.jsonl and best/. Stopping after every single step and resuming must do the same
 * (the plateau schedule sees each evaluation once). Leaks are checked by the sanitizer build. */
#include <errno.h>

#include "core/fault.h"
#include "train_util.h"
#include "zo/steplog.h"
#include "zt_test.h"

enum { STEPS = 2 };

static char model[1024], data[1024];

static void configure(zt_train_options *o, const char *out, int steps) {
    fixture_run_options(o, "opt-pre", model, sizeof model, data, sizeof data, out);
    o->eval_path = data;
    o->optimizer = "zo-adamm";
    o->steps = steps;
    o->batch_size = 2;
    o->hp.lr = 1e-2;
    o->hp.lr_schedule = ZT_SCHEDULE_PLATEAU;
    o->hp.plateau_patience = 0;
    o->hp.plateau_factor = 0.5;
    o->eval_every = 1;
    o->save_every = 1;
    o->threads = 1;
}

/* Whether the run in `dir` equals the reference run in every file that defines it. */
static int same_run(const char *reference, const char *dir, char *why, size_t why_size) {
    static const char *const files[] = {"steplog.jsonl", "metrics.jsonl", "best/metric.json",
                                        "snapshot/trainer.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s/%s", reference, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        char *ta = read_without_timing(a), *tb = read_without_timing(b);
        int same = ta && tb && strcmp(ta, tb) == 0;
        free(ta);
        free(tb);
        if (!same) {
            snprintf(why, why_size, "%s differs", files[i]);
            return 0;
        }
    }
    static const char *const dirs[] = {"", "/best", "/snapshot"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s%s", reference, dirs[i]);
        snprintf(b, sizeof b, "%s%s", dir, dirs[i]);
        checkpoint_diff d = compare_checkpoints(a, b);
        if (d.mismatched_layout || d.changed) {
            snprintf(why, why_size, "%s/model.safetensors: %zu of %zu weights differ", dirs[i],
                     d.changed, d.elements);
            return 0;
        }
    }
    return 1;
}

static void copy_dir(const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", to, from, to);
    ZT_REQUIRE(system(cmd) == 0, "%s", cmd);
}

typedef enum fault_kind { FAULT_ALLOC, FAULT_ENOSPC, FAULT_EIO } fault_kind;
static const char *const fault_names[] = {"allocation", "ENOSPC write", "EIO write"};

/* Resumes `prepared` (copied to `work`) to STEPS with the N-th allocation or write failing.
 * Returns 0 once N is past the run's last allocation or write. */
static int faulted_resume(fault_kind kind, long n, const char *prepared, const char *work,
                          const char *reference, char *first_error, size_t error_size) {
    copy_dir(prepared, work);
    zt_train_options o;
    zt_train_result res;
    configure(&o, work, STEPS);
    o.resume = 1;
    if (kind == FAULT_ALLOC)
        zt_fault_arm_alloc(n);
    else
        zt_fault_arm_write(n, kind == FAULT_ENOSPC ? ENOSPC : EIO, kind == FAULT_ENOSPC);
    zt_status s = zt_train(&o, &res);
    int fired = zt_fault_fired();
    zt_fault_disarm();
    snprintf(first_error, error_size, "%s", s == ZT_OK ? "" : zt_last_error());
    if (!fired) {
        ZT_CHECK(s == ZT_OK, "%s %ld never fired, yet the run failed: %s", fault_names[kind], n,
                 zt_last_error());
        return 0;
    }
    ZT_CHECK(s == ZT_OK || first_error[0] != '\0', "%s %ld: status %d without a message",
             fault_names[kind], n, (int)s);
    if (kind != FAULT_ALLOC && s != ZT_OK)
        ZT_CHECK(strstr(first_error, strerror(kind == FAULT_ENOSPC ? ENOSPC : EIO)) != NULL,
                 "%s %ld: the reported error is not the failed write: %s", fault_names[kind], n,
                 first_error);
    /* what is on disk is loadable and, once the fault is gone, resumes to the same run */
    char log[1200];
    snprintf(log, sizeof log, "%s/steplog.jsonl", work);
    zt_steplog_header header;
    zt_step_record *records = NULL;
    int n_records = 0;
    ZT_CHECK_OK(zt_steplog_read(log, &header, &records, &n_records, NULL));
    free(records);
    configure(&o, work, STEPS);
    o.resume = 1;
    zt_status resumed = zt_train(&o, &res);
    char why[256] = "";
    ZT_CHECK(resumed == ZT_OK && same_run(reference, work, why, sizeof why),
             "%s %ld (%s): resume %s: %s", fault_names[kind], n,
             s == ZT_OK ? "run succeeded" : first_error,
             resumed == ZT_OK ? "ended differently" : zt_last_error(), why);
    return 1;
}

static long sweep(fault_kind kind, const char *prepared, const char *work, const char *reference,
                  long *failures) {
    char error[2048];
    long n = 1;
    *failures = 0;
    while (n < 100000 && faulted_resume(kind, n, prepared, work, reference, error, sizeof error)) {
        *failures += error[0] != '\0';
        n++;
    }
    return n - 1;
}

/* The first error is the one reported: with the disk full from the append of step 2 on, the
 * message names that append, not the final save that fails after it. */
static void check_first_error(const char *prepared, const char *work, const char *reference) {
    char error[2048];
    for (long n = 1; n < 1000; n++) {
        if (!faulted_resume(FAULT_EIO, n, prepared, work, reference, error, sizeof error)) break;
        if (!strstr(error, "steplog.jsonl: appending step 1")) continue;
        faulted_resume(FAULT_ENOSPC, n, prepared, work, reference, error, sizeof error);
        ZT_CHECK(strstr(error, "steplog.jsonl: appending step 1: No space left on device") ==
                         error ||
                     strstr(error, "steplog.jsonl: appending step 1: No space left on device"),
                 "disk full at the append of step 2 reported as: %s", error);
        ZT_CHECK(strstr(error, "final save failed too") != NULL,
                 "the failing final save is not mentioned: %s", error);
        printf("disk full at write %ld (the log append of step 2): %s\n", n, error);
        return;
    }
    ZT_CHECK(0, "no write of the run appends step 2 to the log");
}

/* Defect 3: stopped after every step (its evaluation, best/ and snapshot included) and resumed,
 * a plateau run with evaluations ends identical to the uninterrupted one. */
static void check_stop_every_step(const char *reference_dir, int steps) {
    char dir[256], why[256] = "";
    make_temp_dir(dir, sizeof dir, "faults_stepwise");
    zt_train_options o;
    zt_train_result res;
    for (int resumes = 0; resumes <= steps; resumes++) {
        configure(&o, dir, steps);
        o.resume = resumes > 0;
        o.stop_after = 1;
        ZT_REQUIRE_OK(zt_train(&o, &res));
    }
    ZT_CHECK(res.steps_done == steps && same_run(reference_dir, dir, why, sizeof why),
             "stopped after every one of %d steps: %s", steps, why);
    remove_run_dir(dir);
}

int main(void) {
    char reference[256], prepared[256], work[300], longer[256];
    make_temp_dir(reference, sizeof reference, "faults_reference");
    make_temp_dir(prepared, sizeof prepared, "faults_prepared");
    snprintf(work, sizeof work, "%s.work", prepared);
    zt_train_options o;
    zt_train_result res;
    configure(&o, reference, STEPS);
    ZT_REQUIRE_OK(zt_train(&o, &res));
    configure(&o, prepared, STEPS);
    o.stop_after = 1;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    ZT_REQUIRE(res.interrupted && res.steps_done == 1, "prepared run: %d steps", res.steps_done);

    long failures[3];
    long allocations = sweep(FAULT_ALLOC, prepared, work, reference, &failures[FAULT_ALLOC]);
    long writes = sweep(FAULT_ENOSPC, prepared, work, reference, &failures[FAULT_ENOSPC]);
    long eio_writes = sweep(FAULT_EIO, prepared, work, reference, &failures[FAULT_EIO]);
    ZT_CHECK(allocations > 50 && writes > 10 && eio_writes == writes,
             "swept %ld allocations and %ld / %ld writes", allocations, writes, eio_writes);
    printf("fault injection over load -> step -> evaluation -> snapshot: %ld allocation sites "
           "(%ld runs failed), %ld write sites with ENOSPC (%ld failed) and with EIO (%ld "
           "failed); every one resumed bit-identical\n",
           allocations, failures[FAULT_ALLOC], writes, failures[FAULT_ENOSPC], failures[FAULT_EIO]);
    check_first_error(prepared, work, reference);

    make_temp_dir(longer, sizeof longer, "faults_longer");
    configure(&o, longer, 8);
    ZT_REQUIRE_OK(zt_train(&o, &res));
    check_stop_every_step(longer, 8);

    remove_run_dir(reference);
    remove_run_dir(prepared);
    remove_run_dir(work);
    remove_run_dir(longer);
    return zt_test_finish("test_faults");
}
