/* How many threads a parallel region gets. An explicit count is used as given. The default
 * (every core) yields to other processes: an OpenMP region waits for its slowest thread, and a
 * thread that shares its core with a busy process gets a time slice in turn, so each of the
 * thousands of regions of a step waits milliseconds for it (2 threads ran 1.85 steps/s beside
 * two busy processes where 1 thread ran 8.97). So the default counts, every
 * ZT_CPU_LOAD_CHECK_SECONDS, the runnable tasks that are not ours and leaves their cores to
 * them. The results do not depend on the count (docs/design.md §4.2), only the speed. */
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu_common.h"

static const double ZT_CPU_LOAD_CHECK_SECONDS = 0.1;

int zt_cpu_threads_for_load(int n_max, int n_cores, int runnable_total, int runnable_own) {
    int others = runnable_total - runnable_own;
    int free_cores = n_cores - (others > 0 ? others : 0);
    if (free_cores > n_max) free_cores = n_max;
    return free_cores > 1 ? free_cores : 1;
}

int zt_cpu_threads_after(zt_cpu_threads_state *s, int target) {
    s->recent[s->next] = target;
    s->next = (s->next + 1) % ZT_CPU_LOAD_WINDOW;
    if (s->filled < ZT_CPU_LOAD_WINDOW) s->filled++;
    /* the fewest of the recent samples: one busy sample gives cores away at once, taking them
     * back waits until the whole window saw them free */
    int fewest = target;
    for (int i = 0; i < s->filled; i++)
        if (s->recent[i] < fewest) fewest = s->recent[i];
    return fewest;
}

int zt_cpu_online_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

/* The kernel's count of runnable tasks, the 4th field of /proc/loadavg ("2/345"); -1 if unread. */
static int runnable_tasks(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return -1;
    double load[3];
    int running = -1, total = 0;
    if (fscanf(f, "%lf %lf %lf %d/%d", &load[0], &load[1], &load[2], &running, &total) != 5)
        running = -1;
    fclose(f);
    return running;
}

/* Our own tasks in state R (running or waiting for a core), from /proc/self/task/TID/stat. */
static int runnable_own_tasks(void) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return -1;
    int count = 0;
    const struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char path[64], line[512];
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", entry->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = '\0';
        /* "TID (comm) S ...": the command may hold spaces and parentheses, the state follows
         * the last ')' */
        const char *close = strrchr(line, ')');
        if (close && close[1] == ' ' && close[2] == 'R') count++;
    }
    closedir(dir);
    return count;
}

static double monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int zt_cpu_threads(zt_cpu_backend *cpu) {
    zt_cpu_threads_state *s = &cpu->threads;
    if (!s->adaptive) return cpu->n_threads;
    double now = monotonic_seconds();
    if (now < s->next_check) return s->n_active;
    s->next_check = now + ZT_CPU_LOAD_CHECK_SECONDS;
    int total = runnable_tasks(), own = runnable_own_tasks();
    if (total < 0 || own < 0) { /* no /proc: every core, as OpenMP would */
        s->n_active = cpu->n_threads;
        return s->n_active;
    }
    int target = zt_cpu_threads_for_load(cpu->n_threads, s->n_cores, total, own);
    s->n_active = zt_cpu_threads_after(s, target);
    return s->n_active;
}
