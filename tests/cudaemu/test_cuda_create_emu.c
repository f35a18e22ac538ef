/* Creating the CUDA backend (kernels/cuda/cuda_backend.cu) on the host executor: the device is
 * described in words (name, compute capability, SMs, memory, CUDA versions) and a GPU older than
 * sm_80 is refused at create, naming it, instead of failing at its first launch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

int main(void) {
    zt_backend *emu = NULL;
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    ZT_REQUIRE(emu->ops->describe != NULL, "the CUDA backend has no describe");
    const char *text = emu->ops->describe(emu);
    printf("describe: %s\n", text);
    const char *expected[] = {"cuda:0 cudaemu host executor",
                              "compute capability 9.0",
                              "132 SMs",
                              "80.0 GiB",
                              "driver supports CUDA 13.",
                              "runtime 13."};
    for (size_t i = 0; i < sizeof expected / sizeof *expected; i++)
        ZT_CHECK(strstr(text, expected[i]) != NULL, "describe lacks '%s': %s", expected[i], text);
    zt_backend_destroy(emu);

    const char *old_gpus[] = {"7.5", "7.0", "6.1"};
    for (size_t i = 0; i < sizeof old_gpus / sizeof *old_gpus; i++) {
        setenv("CUDAEMU_COMPUTE_CAPABILITY", old_gpus[i], 1);
        emu = NULL;
        zt_status s = zt_cudaemu_backend_create(0, &emu);
        ZT_CHECK(s == ZT_ERR_UNAVAILABLE && emu == NULL, "compute capability %s: status %d",
                 old_gpus[i], (int)s);
        ZT_CHECK(strstr(zt_last_error(), "cudaemu host executor") &&
                     strstr(zt_last_error(), old_gpus[i]) && strstr(zt_last_error(), "8.0"),
                 "the refusal does not name the GPU, its capability and the need: %s",
                 zt_last_error());
        if (emu) zt_backend_destroy(emu);
    }
    setenv("CUDAEMU_COMPUTE_CAPABILITY", "8.0", 1);
    ZT_CHECK(zt_cudaemu_backend_create(0, &emu) == ZT_OK, "sm_80 refused: %s", zt_last_error());
    if (emu) zt_backend_destroy(emu);
    unsetenv("CUDAEMU_COMPUTE_CAPABILITY");
    return zt_test_finish("test_cuda_create_emu");
}
