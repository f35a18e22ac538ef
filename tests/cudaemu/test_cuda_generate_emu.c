/* Batched greedy generation over the KV cache on the CUDA kernels run by the host executor,
 * against transformers' generate and the CPU backend (generation_parity.h). */
#include <stdio.h>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "generation_parity.h"

int main(void) {
    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    zt_generation_parity_run(cpu, emu);
    zt_backend_destroy(emu);
    zt_backend_destroy(cpu);
    return zt_test_finish("test_cuda_generate_emu");
}
