/* `attention` with --gemm half on the emulated CUDA backend: its cuDNN graph interpreted by
 * tests/cudaemu/cudaemu_cudnn.cpp, against the CPU backend (cudnn_parity.h says what and how
 * closely). The stand-in refuses head dim 20, so that shape must take the f32 kernel. */
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "cudnn_parity.h"

int main(void) {
    zt_mem_stats at_start;
    zt_mem_stats_get(&at_start);
    zt_backend *cpu = NULL, *emu_half = NULL, *emu_f32 = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(0, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu_half));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu_f32));
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(emu_half, ZT_GEMM_HALF));
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(emu_f32, ZT_GEMM_F32));
    zt_cudnn_parity_run(cpu, emu_half, emu_f32, zt_cudaemu_backend_set_attention_mode,
                        zt_cudaemu_backend_attention_paths, 0);
    emu_half->ops->destroy(emu_half);
    emu_f32->ops->destroy(emu_f32);
    cpu->ops->destroy(cpu);
    zt_mem_stats at_end;
    zt_mem_stats_get(&at_end);
    ZT_CHECK(at_end.current_total == at_start.current_total,
             "tracked memory: %zu bytes at start, %zu after destroying the backends",
             at_start.current_total, at_end.current_total);
    return zt_test_finish("test_cuda_cudnn_emu");
}
