/* The small pieces every writer and planner leans on, against values worked out by hand: the
 * tracked allocator's peaks (by category and of the sum) through a scripted sequence of
 * allocations, zt_make_dirs on new, existing and blocked paths, and zt_write_file_atomic's
 * content, its refusal when the rename cannot happen, and the .tmp it must not leave behind. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/path.h"
#include "core/status.h"
#include "io/atomic_file.h"
#include "zt_test.h"

static void check_allocator(void) {
    zt_mem_stats base;
    zt_mem_stats_get(&base);
    zt_mem_reset_peak();
    /* weights 100, activations 50 (total 150), free 30 of the activations (120), scratch 40
     * (160, the peak of the sum, reached while activations are below their own peak), free
     * everything. Peaks: weights 100, activations 50, scratch 40, sum 160. */
    zt_mem_track_alloc(ZT_MEM_WEIGHTS, 100);
    zt_mem_track_alloc(ZT_MEM_ACTIVATIONS, 50);
    zt_mem_track_free(ZT_MEM_ACTIVATIONS, 30);
    zt_mem_track_alloc(ZT_MEM_SCRATCH, 40);
    zt_mem_stats mid;
    zt_mem_stats_get(&mid);
    zt_mem_track_free(ZT_MEM_WEIGHTS, 100);
    zt_mem_track_free(ZT_MEM_ACTIVATIONS, 20);
    zt_mem_track_free(ZT_MEM_SCRATCH, 40);
    zt_mem_stats s;
    zt_mem_stats_get(&s);
    ZT_CHECK(mid.current_total == base.current_total + 160, "current total %zu, want +160",
             mid.current_total - base.current_total);
    ZT_CHECK(s.peak_total == base.current_total + 160, "peak of the sum %zu, want +160",
             s.peak_total - base.current_total);
    ZT_CHECK(s.peak[ZT_MEM_WEIGHTS] == base.current[ZT_MEM_WEIGHTS] + 100 &&
                 s.peak[ZT_MEM_ACTIVATIONS] == base.current[ZT_MEM_ACTIVATIONS] + 50 &&
                 s.peak[ZT_MEM_SCRATCH] == base.current[ZT_MEM_SCRATCH] + 40,
             "category peaks +%zu, +%zu, +%zu; want +100, +50, +40",
             s.peak[ZT_MEM_WEIGHTS] - base.current[ZT_MEM_WEIGHTS],
             s.peak[ZT_MEM_ACTIVATIONS] - base.current[ZT_MEM_ACTIVATIONS],
             s.peak[ZT_MEM_SCRATCH] - base.current[ZT_MEM_SCRATCH]);
    ZT_CHECK(s.current_total == base.current_total, "everything freed: %zu left",
             s.current_total - base.current_total);
    zt_mem_reset_peak();
    zt_mem_stats_get(&s);
    ZT_CHECK(s.peak_total == s.current_total, "a reset peak is the current total");
}

static int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void check_make_dirs(const char *top) {
    char deep[1200], file[1200], below_file[1300];
    snprintf(deep, sizeof deep, "%s/a/b/c", top);
    ZT_CHECK_OK(zt_make_dirs(deep));
    ZT_CHECK(is_directory(deep), "%s was not created", deep);
    ZT_CHECK_OK(zt_make_dirs(deep)); /* an existing directory is fine */
    snprintf(file, sizeof file, "%s/plain", top);
    FILE *f = fopen(file, "w");
    ZT_REQUIRE(f && fputs("x", f) >= 0 && fclose(f) == 0, "writing %s", file);
    zt_status s = zt_make_dirs(file);
    ZT_CHECK(s == ZT_ERR_IO && strstr(zt_last_error(), "not a directory"),
             "a regular file as a directory: %s (%s)", zt_status_name(s), zt_last_error());
    snprintf(below_file, sizeof below_file, "%s/plain/sub", top);
    s = zt_make_dirs(below_file);
    ZT_CHECK(s == ZT_ERR_IO && strstr(zt_last_error(), "plain"),
             "a directory below a regular file: %s (%s)", zt_status_name(s), zt_last_error());
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = malloc(4096);
    *n = fread(text, 1, 4096, f);
    fclose(f);
    return text;
}

static void check_atomic_write(const char *top) {
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/out.bin", top);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const char *parts[] = {"hello ", "", "world"};
    const void *chunks[] = {parts[0], parts[1], parts[2]};
    const size_t sizes[] = {6, 0, 5};
    ZT_CHECK_OK(zt_write_file_atomic(path, chunks, sizes, 3));
    size_t n = 0;
    char *got = slurp(path, &n);
    ZT_CHECK(got && n == 11 && memcmp(got, "hello world", 11) == 0, "atomic write content");
    free(got);
    ZT_CHECK(access(tmp, F_OK) != 0, "%s left behind", tmp);
    /* a second write replaces the whole content */
    const size_t one[] = {5};
    const void *second[] = {"brief"};
    ZT_CHECK_OK(zt_write_file_atomic(path, second, one, 1));
    got = slurp(path, &n);
    ZT_CHECK(got && n == 5 && memcmp(got, "brief", 5) == 0, "replaced content");
    free(got);

    /* rename(2) cannot put a file over a non-empty directory: the write must fail, name the
     * path, leave the directory alone and remove its .tmp */
    char blocked[1200], inside[1300], blocked_tmp[1300];
    snprintf(blocked, sizeof blocked, "%s/blocked", top);
    snprintf(inside, sizeof inside, "%s/keep", blocked);
    snprintf(blocked_tmp, sizeof blocked_tmp, "%s.tmp", blocked);
    ZT_REQUIRE(mkdir(blocked, 0755) == 0, "mkdir %s", blocked);
    FILE *f = fopen(inside, "w");
    ZT_REQUIRE(f && fclose(f) == 0, "writing %s", inside);
    zt_status s = zt_write_file_atomic(blocked, second, one, 1);
    ZT_CHECK(s == ZT_ERR_IO && strstr(zt_last_error(), blocked),
             "a rename over a directory: %s (%s)", zt_status_name(s), zt_last_error());
    ZT_CHECK(is_directory(blocked) && access(inside, F_OK) == 0, "the directory was touched");
    ZT_CHECK(access(blocked_tmp, F_OK) != 0, "%s left behind after the failure", blocked_tmp);
}

int main(void) {
    check_allocator();
    char top[] = "/tmp/zt_files_XXXXXX";
    ZT_REQUIRE(mkdtemp(top) != NULL, "mkdtemp");
    check_make_dirs(top);
    check_atomic_write(top);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", top);
    return zt_test_finish("test_files_memory");
}
