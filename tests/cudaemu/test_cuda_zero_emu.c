/* The CUDA backend's zero op (cudaMemsetAsync on its stream, kernels/cuda/cuda_backend.cu) on the
 * host executor: zero_check.h's ranges inside guard bytes, and no wait for the device, which the
 * upload of a zeroed host block it replaces needed before freeing the block. */
#include <string.h>

#include "backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "ops/zero_check.h"

int main(void) {
    zt_backend *emu = NULL;
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    ZT_CHECK_OK(zt_backend_check_ops(emu->ops));
    zero_check_run(emu);

    float *grads = NULL;
    const size_t n = 1000;
    ZT_REQUIRE_OK(emu->ops->alloc(emu, n * sizeof *grads, ZT_MEM_OPTIMIZER, (void **)&grads));
    ZT_REQUIRE_OK(emu->ops->sync(emu));
    const unsigned long long waits = emu->n_host_waits;
    ZT_CHECK_OK(zt_backend_zero(emu, grads, n));
    ZT_CHECK(emu->n_host_waits == waits, "zt_backend_zero waited %llu times for the device",
             emu->n_host_waits - waits);
    emu->ops->free(emu, grads, n * sizeof *grads, ZT_MEM_OPTIMIZER);
    emu->ops->destroy(emu);
    return zt_test_finish("test_cuda_zero_emu");
}
