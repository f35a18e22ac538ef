/* bench_threads: training speed of the default thread count against one thread and against every
 * core taken as given (--threads N), on an idle machine and beside 1 .. N busy processes.
 *
 * The competing load is this bench's own children, each spinning on a core until killed. Each
 * configuration runs `zotune train` for --steps steps on the same model and data and reports the
 * rate of its last progress line (zotune's rate over the steps run, loading excluded), the best
 * of --repeat runs, every other repeat in reverse order. Back to back in one run, so the ratios
 * hold on a shared machine even where the absolute rates drift.
 *
 *   bench_threads ZOTUNE MODEL_DIR TRAIN_JSONL [--steps N] [--repeat R]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.h"
#include "cpu/cpu_common.h"

enum { MAX_LOAD = 64, OUTPUT_BYTES = 1 << 16 };

static void spin_forever(void) {
    volatile unsigned long counter = 0;
    for (;;)
        counter++;
}

static int start_load(pid_t *children, int n) {
    for (int i = 0; i < n; i++) {
        children[i] = fork();
        if (children[i] < 0) return -1;
        if (children[i] == 0) spin_forever();
    }
    return 0;
}

static void stop_load(const pid_t *children, int n) {
    for (int i = 0; i < n; i++)
        if (children[i] > 0) kill(children[i], SIGKILL);
    for (int i = 0; i < n; i++)
        if (children[i] > 0) waitpid(children[i], NULL, 0);
}

/* The steps/s of the last progress line of one training run; -1 when it failed. */
static double train_rate(const char *zotune, const char *model, const char *train, int steps,
                         const char *threads) {
    char out_dir[64], cmd[4096];
    static char output[OUTPUT_BYTES];
    snprintf(out_dir, sizeof out_dir, "/tmp/zt_bench_threads_%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && %s train --model %s --train %s --output %s --optimizer mezo "
             "--steps %d --batch-size 16 --lr 3e-4 --eps 1e-3 --log-every %d %s 2>&1; rm -rf %s",
             out_dir, zotune, model, train, out_dir, steps, steps, threads, out_dir);
    FILE *p = popen(cmd, "r");
    if (!p) return -1.0;
    size_t n = fread(output, 1, sizeof output - 1, p);
    output[n] = '\0';
    if (pclose(p) != 0) {
        fprintf(stderr, "bench_threads: `%s` failed:\n%s\n", cmd, output);
        return -1.0;
    }
    double rate = -1.0;
    for (const char *at = strstr(output, "steps/s"); at; at = strstr(at + 1, "steps/s")) {
        const char *start = at - 1;
        while (start > output && start[-1] != ' ')
            start--;
        rate = strtod(start, NULL);
    }
    return rate;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_threads ZOTUNE MODEL_DIR TRAIN_JSONL [--steps N] "
                        "[--repeat R]\n");
        return 2;
    }
    int steps = 150, repeat = 2;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--steps") == 0)
            steps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--repeat") == 0)
            repeat = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_threads: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (steps < 2 || repeat < 1) {
        fprintf(stderr, "bench_threads: --steps must be >= 2 and --repeat >= 1\n");
        return 2;
    }
    /* The thread settings the bench compares must be zotune's own, not the test harness's. */
    unsetenv("OMP_NUM_THREADS");
    unsetenv("OMP_WAIT_POLICY");
    int cores = zt_cpu_online_cores();
    if (cores > MAX_LOAD) cores = MAX_LOAD;
    char all[32];
    snprintf(all, sizeof all, "--threads %d", cores);
    printf("demo fine-tune (MeZO, batch 16), %d steps per run, best of %d, %d cores\n", steps,
           repeat, cores);
    printf("%-14s %12s %12s %14s %12s %12s\n", "busy processes", "1 thread", "default",
           "--threads all", "default/1", "all/1");
    for (int load = 0; load <= cores; load++) {
        pid_t children[MAX_LOAD] = {0};
        if (start_load(children, load) != 0) {
            stop_load(children, load);
            fprintf(stderr, "bench_threads: fork failed\n");
            return 1;
        }
        usleep(300000); /* the spinners are running before the first measurement */
        const char *settings[3] = {"--threads 1", "", all};
        double best[3] = {-1.0, -1.0, -1.0};
        /* every other repeat in reverse order, so a drift in the machine's speed favours none */
        for (int r = 0; r < repeat; r++)
            for (int i = 0; i < 3; i++) {
                int c = r % 2 ? 2 - i : i;
                double rate = train_rate(argv[1], argv[2], argv[3], steps, settings[c]);
                if (rate > best[c]) best[c] = rate;
            }
        stop_load(children, load);
        printf("%-14d %8.2f s/s %8.2f s/s %10.2f s/s %12.2f %12.2f\n", load, best[0], best[1],
               best[2], best[0] > 0 ? best[1] / best[0] : 0.0,
               best[0] > 0 ? best[2] / best[0] : 0.0);
        fflush(stdout);
    }
    return 0;
}
