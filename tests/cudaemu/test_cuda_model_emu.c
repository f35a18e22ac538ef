/* The whole OPT forward on the CUDA kernels run by the host executor, against the CPU backend
 * (model_parity.h), the half mode's attention through the emulated cuDNN included. */
#include <stdio.h>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "model_parity.h"

int main(void) {
    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    zt_model_parity_attention.set_mode = zt_cudaemu_backend_set_attention_mode;
    zt_model_parity_attention.paths = zt_cudaemu_backend_attention_paths;
    zt_model_parity_run(cpu, emu);
    zt_backend_destroy(emu);
    zt_backend_destroy(cpu);
    return zt_test_finish("test_cuda_model_emu");
}
