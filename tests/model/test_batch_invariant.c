/* Batch invariance on the CPU backend (batch_invariance.h) on the f32 fixture. */
#include "batch_invariance.h"
#include "cpu/cpu_backend.h"

int main(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &be));
    check_batch_invariance(be, "opt-pre", "cpu");
    zt_backend_destroy(be);
    return zt_test_finish("test_batch_invariant");
}
