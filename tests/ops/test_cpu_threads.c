/* The CPU backend's default thread count (kernels/cpu/threads.c): the cores other runnable tasks
 * leave free, computed from a load sample by hand here; the window that gives cores away at once
 * and takes them back only after a whole window of free samples; and, with as many spinning
 * child processes as the process has cores, a backend on the default count drops to one thread
 * while one given --threads keeps its count. Nothing here is timed (bench/bench_threads.c
 * measures the speed). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpu/cpu_common.h"
#include "zt_test.h"

static void check_free_cores(void) {
    static const struct {
        int n_max, n_cores, total, own, want;
    } cases[] = {
        {4, 4, 1, 1, 4}, /* only ourselves: every core */
        {4, 4, 3, 1, 2}, /* two others: two cores left */
        {4, 4, 9, 2, 1}, /* more others than cores: still one thread */
        {2, 8, 1, 1, 2}, /* never past the count asked */
        {8, 8, 4, 4, 8}, /* our own spinning workers are not load */
        {4, 4, 0, 1, 4}, /* a sample taken between counts: no negative load */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got =
            zt_cpu_threads_for_load(cases[i].n_max, cases[i].n_cores, cases[i].total, cases[i].own);
        ZT_CHECK(got == cases[i].want, "case %zu: %d threads, want %d", i, got, cases[i].want);
    }
}

static void check_window(void) {
    zt_cpu_threads_state s;
    memset(&s, 0, sizeof s);
    const int targets[] = {4, 4, 1, 4, 4, 4, 2, 3};
    /* the fewest of the last ZT_CPU_LOAD_WINDOW (3) samples */
    const int want[] = {4, 4, 1, 1, 1, 4, 2, 2};
    for (int i = 0; i < 8; i++) {
        int got = zt_cpu_threads_after(&s, targets[i]);
        ZT_CHECK(got == want[i] && ZT_CPU_LOAD_WINDOW == 3, "sample %d: %d threads, want %d", i,
                 got, want[i]);
    }
}

static void spin_forever(void) {
    volatile unsigned long counter = 0;
    for (;;)
        counter++;
}

/* zt_cpu_threads samples the load at most every 0.1 s. */
static int threads_after_a_while(zt_cpu_backend *cpu) {
    int n = 0;
    for (int i = 0; i < 2 * ZT_CPU_LOAD_WINDOW + 2; i++) {
        n = zt_cpu_threads(cpu);
        nanosleep(&(struct timespec){0, 120 * 1000 * 1000}, NULL);
    }
    return n;
}

static void check_busy_machine(void) {
    zt_backend *be = NULL, *given = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 0, &be));
    ZT_REQUIRE_OK(zt_backend_create("cpu", 2, &given));
    zt_cpu_backend *cpu = zt_cpu(be);
    ZT_CHECK(zt_cpu(given)->threads.adaptive == 0 && zt_cpu_threads(zt_cpu(given)) == 2,
             "--threads 2 is taken as given");
    /* the tests run with OMP_NUM_THREADS=1, which the default honours; act as the default on a
     * machine of this many cores would */
    int cores = zt_cpu_online_cores();
    cpu->n_threads = cores > 1 ? cores : 2;
    cpu->threads.adaptive = 1;
    cpu->threads.n_cores = cpu->n_threads;
    enum { MAX_CHILDREN = 256 };
    pid_t children[MAX_CHILDREN];
    int n_children = cpu->n_threads < MAX_CHILDREN ? cpu->n_threads : MAX_CHILDREN;
    for (int i = 0; i < n_children; i++) {
        children[i] = fork();
        ZT_REQUIRE(children[i] >= 0, "fork");
        if (children[i] == 0) spin_forever();
    }
    int busy = threads_after_a_while(cpu);
    for (int i = 0; i < n_children; i++)
        kill(children[i], SIGKILL);
    for (int i = 0; i < n_children; i++)
        waitpid(children[i], NULL, 0);
    ZT_CHECK(busy == 1, "%d spinning processes on %d cores: the default ran %d threads, want 1",
             n_children, cpu->threads.n_cores, busy);
    ZT_CHECK(zt_cpu_threads(zt_cpu(given)) == 2, "--threads 2 kept its count under load");
    zt_backend_destroy(be);
    zt_backend_destroy(given);
}

int main(void) {
    check_free_cores();
    check_window();
    check_busy_machine();
    return zt_test_finish("test_cpu_threads");
}
