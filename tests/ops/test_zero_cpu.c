/* The CPU backend's zero op (kernels/cpu/cpu_backend.c) and zt_backend_zero over it, with one
 * thread and with three (the 1 MiB pieces split between threads): zero_check.h. */
#include "backend.h"
#include "zt_test.h"

#include "ops/zero_check.h"

int main(void) {
    const int thread_counts[2] = {1, 3};
    for (int i = 0; i < 2; i++) {
        zt_backend *be = NULL;
        ZT_REQUIRE_OK(zt_backend_create("cpu", thread_counts[i], &be));
        zero_check_run(be);
        zt_backend_destroy(be);
    }
    return zt_test_finish("test_zero_cpu");
}
