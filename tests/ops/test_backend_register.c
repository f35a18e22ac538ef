/* zt_backend_register (kernels/backends.c): a registered device name reaches its constructor
 * through zt_backend_create and zt_backend_open, with the caller's thread count; its table is
 * checked as a built-in one's (a NULL slot is named, the half-made backend released); the
 * built-in names, empty or over-long names, a NULL constructor and a fifth name are refused;
 * registering a name again replaces its constructor. */
#include <string.h>

#include "backend.h"
#include "core/status.h"
#include "cpu/cpu_backend.h"
#include "zt_test.h"

static int last_threads = -100, calls_a, calls_b;

static zt_status make_cpu_a(int n_threads, zt_backend **out) {
    last_threads = n_threads;
    calls_a++;
    return zt_cpu_backend_create(n_threads, out);
}

static zt_status make_cpu_b(int n_threads, zt_backend **out) {
    calls_b++;
    return zt_cpu_backend_create(n_threads, out);
}

/* A CPU backend whose table lacks the zero op. */
static zt_backend_ops without_zero;
static zt_status make_without_zero(int n_threads, zt_backend **out) {
    ZT_TRY(zt_cpu_backend_create(n_threads, out));
    without_zero = *(*out)->ops;
    without_zero.zero = NULL;
    (*out)->ops = &without_zero;
    return ZT_OK;
}

static void check_refused(const char *name, zt_backend_constructor make, const char *wording) {
    zt_status s = zt_backend_register(name, make);
    ZT_CHECK(s == ZT_ERR_INVALID_ARG && strstr(zt_last_error(), wording) != NULL,
             "registering '%s': %s, \"%s\" (want \"%s\")", name ? name : "(NULL)",
             zt_status_name(s), zt_last_error(), wording);
}

int main(void) {
    zt_mem_stats at_start;
    zt_mem_stats_get(&at_start);
    zt_backend *be = NULL;
    zt_status s = zt_backend_create("test-cpu", 1, &be);
    ZT_CHECK(s == ZT_ERR_INVALID_ARG && be == NULL &&
                 strstr(zt_last_error(), "--device test-cpu: unknown device") != NULL,
             "an unregistered name: %s, \"%s\"", zt_status_name(s), zt_last_error());

    ZT_REQUIRE_OK(zt_backend_register("test-cpu", make_cpu_a));
    ZT_REQUIRE_OK(zt_backend_create("test-cpu", 2, &be));
    ZT_CHECK(calls_a == 1 && last_threads == 2, "constructor called %d times with %d threads",
             calls_a, last_threads);
    ZT_CHECK(strcmp(be->ops->name, "cpu") == 0 && be->gemm == ZT_GEMM_F32, "made '%s'",
             be->ops->name);
    zt_backend_destroy(be);
    be = NULL;
    ZT_REQUIRE_OK(zt_backend_open("test-cpu", 0, "auto", &be));
    ZT_CHECK(calls_a == 2 && last_threads == 0 && be->gemm == ZT_GEMM_F32,
             "zt_backend_open: %d calls, %d threads, gemm %s", calls_a, last_threads,
             zt_gemm_precision_name(be->gemm));
    zt_backend_destroy(be);
    be = NULL;

    /* again: the new constructor replaces the old, in the same slot */
    ZT_REQUIRE_OK(zt_backend_register("test-cpu", make_cpu_b));
    ZT_REQUIRE_OK(zt_backend_create("test-cpu", 1, &be));
    ZT_CHECK(calls_a == 2 && calls_b == 1, "after re-registering: %d and %d calls", calls_a,
             calls_b);
    zt_backend_destroy(be);
    be = NULL;

    ZT_REQUIRE_OK(zt_backend_register("test-no-zero", make_without_zero));
    s = zt_backend_create("test-no-zero", 1, &be);
    ZT_CHECK(s == ZT_ERR_INTERNAL && be == NULL &&
                 strcmp(zt_last_error(), "backend 'cpu': op table slot 'zero' is NULL") == 0,
             "a table without zero: %s, \"%s\"", zt_status_name(s), zt_last_error());

    check_refused("cpu", make_cpu_a, "'cpu' is a built-in device's");
    check_refused("cuda", make_cpu_a, "'cuda' is a built-in device's");
    check_refused("cuda:1", make_cpu_a, "'cuda:1' is a built-in device's");
    check_refused("", make_cpu_a, "no device name");
    check_refused(NULL, make_cpu_a, "no device name");
    check_refused("test-null", NULL, "no constructor");
    check_refused("a-device-name-of-more-than-31-bytes", make_cpu_a, "is over 31 bytes");
    /* two slots taken above; two more fit, a fifth name does not */
    ZT_CHECK_OK(zt_backend_register("test-3", make_cpu_a));
    ZT_CHECK_OK(zt_backend_register("test-4", make_cpu_a));
    check_refused("test-5", make_cpu_a, "all 4 slots are taken");
    ZT_CHECK_OK(zt_backend_register("test-4", make_cpu_b)); /* replacing still works when full */

    zt_mem_stats at_end;
    zt_mem_stats_get(&at_end);
    ZT_CHECK(at_end.current_total == at_start.current_total,
             "tracked memory: %zu bytes at start, %zu at the end", at_start.current_total,
             at_end.current_total);
    return zt_test_finish("test_backend_register");
}
