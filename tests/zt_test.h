/* A small test harness: checks count, failures print what and where, and the closing line of
 * each test program says how many checks passed. Exit 0 = pass, 1 = fail, 77 = skip (meson). */
#ifndef ZT_TEST_H
#define ZT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static int zt_test_passed_count;
static int zt_test_failed_count;

#define ZT_SKIP_EXIT 77

#define ZT_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (cond) {                                                                                \
            zt_test_passed_count++;                                                                \
        } else {                                                                                   \
            zt_test_failed_count++;                                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* |got - want| <= atol + rtol*|want|, and both finite. */
#define ZT_CHECK_CLOSE(got, want, atol, rtol, ...)                                                 \
    do {                                                                                           \
        double zt_g_ = (double)(got), zt_w_ = (double)(want);                                      \
        double zt_tol_ = (atol) + (rtol)*fabs(zt_w_);                                              \
        if (isfinite(zt_g_) && isfinite(zt_w_) && fabs(zt_g_ - zt_w_) <= zt_tol_) {                \
            zt_test_passed_count++;                                                                \
        } else {                                                                                   \
            zt_test_failed_count++;                                                                \
            fprintf(stderr, "FAIL %s:%d: got %.9g want %.9g (|diff| %.3g > tol %.3g): ", __FILE__, \
                    __LINE__, zt_g_, zt_w_, fabs(zt_g_ - zt_w_), zt_tol_);                         \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* For calls returning zt_status that must succeed: prints the library's error text. */
#define ZT_CHECK_OK(expr)                                                                          \
    do {                                                                                           \
        zt_status zt_s_ = (expr);                                                                  \
        ZT_CHECK(zt_s_ == ZT_OK, "%s -> %s: %s", #expr, zt_status_name(zt_s_), zt_last_error());   \
    } while (0)

/* Fatal variant for setup steps: the rest of the test cannot run without it. */
#define ZT_REQUIRE_OK(expr)                                                                        \
    do {                                                                                           \
        zt_status zt_s_ = (expr);                                                                  \
        if (zt_s_ != ZT_OK) {                                                                      \
            fprintf(stderr, "FATAL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,              \
                    zt_status_name(zt_s_), zt_last_error());                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Fatal check of a setup condition. */
#define ZT_REQUIRE(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FATAL %s:%d: ", __FILE__, __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Runs a shell command, capturing up to size - 1 bytes of its stdout into out (NUL-terminated);
 * returns its exit status, -1 when it did not exit. */
static inline int zt_test_run(const char *cmd, char *out, size_t size) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Whether two files exist and hold the same bytes; *size (when not NULL) receives how many
 * leading bytes they share. */
static inline int zt_test_same_file(const char *a, const char *b, size_t *size) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa != NULL && fb != NULL;
    size_t shared = 0;
    while (same) {
        const int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (!same || ca == EOF) break;
        shared++;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    if (size) *size = shared;
    return same;
}

static inline int zt_test_finish(const char *name) {
    printf("%s: %d checks passed, %d failed\n", name, zt_test_passed_count, zt_test_failed_count);
    return zt_test_failed_count == 0 && zt_test_passed_count > 0 ? 0 : 1;
}

#endif
