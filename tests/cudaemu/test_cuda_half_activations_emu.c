/* Half activations on the host executor's CUDA kernels and on the CPU backend: the checks of
 * half_activation_parity.h (the ops against the plain ones, the half-mode forward with and without
 * them, bit for bit). */
#include <stdio.h>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "half_activation_parity.h"

int main(void) {
    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    printf("half-activation ops against the plain ops\n");
    /* 4096 floats: 300 rows of 96 halves take 4 chunks of activation rows */
    ZT_REQUIRE_OK(zt_cudaemu_backend_set_linear_chunk(emu, 4096));
    zt_half_activation_ops(cpu);
    zt_half_activation_ops(emu);
    /* the smallest budget: the model's GEMMs cut into as many chunks as they can be */
    ZT_REQUIRE_OK(zt_cudaemu_backend_set_linear_chunk(emu, 1024));
    printf("OPT forward under --gemm half, with and without the half-activation ops\n");
    zt_half_activation_models(cpu);
    zt_half_activation_models(emu);
    zt_backend_destroy(emu);
    zt_backend_destroy(cpu);
    return zt_test_finish("test_cuda_half_activations_emu");
}
