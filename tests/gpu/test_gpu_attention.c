/* `attention` with --gemm half on a real GPU: the real cuDNN path (kernels/cuda/attention_cudnn.cu)
 * against the CPU backend and, for the sequences and shapes it does not take, bit for bit against
 * the f32 kernel (tests/cudaemu/cudnn_parity.h, the cases the executor runs with its stand-in).
 * Prints which path each shape took and its worst error against the bounds. Head dims 64 and 128
 * must take cuDNN: a refusal there (the graph not finalizing on this cuDNN) fails, so that the
 * tensor-core path cannot silently become the f32 kernel. Head dim 20 takes whichever path cuDNN
 * chooses. Exits 77 (a meson skip) without a CUDA device.
 *
 *   test_gpu_attention [--device N]
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "zt_test.h"

#include "gpu_device.h"

#include "cudnn_parity.h"

int main(int argc, char **argv) {
    int device = 0, n_devices = 0, status = zt_gpu_test_device_option(argc, argv, &device);
    if (status == 0) status = zt_gpu_test_devices("test_gpu_attention", &n_devices);
    if (status != 0) return status;
    zt_backend *cpu = NULL, *gpu_half = NULL, *gpu_f32 = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(0, &cpu));
    ZT_REQUIRE_OK(zt_cuda_backend_create(device, &gpu_half));
    ZT_REQUIRE_OK(zt_cuda_backend_create(device, &gpu_f32));
    printf("test_gpu_attention: %s\n", gpu_half->ops->describe(gpu_half));
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(gpu_half, ZT_GEMM_HALF));
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(gpu_f32, ZT_GEMM_F32));
    zt_cudnn_parity_run(cpu, gpu_half, gpu_f32, zt_cuda_backend_set_attention_mode,
                        zt_cuda_backend_attention_paths, -1);
    zt_backend_destroy(gpu_half);
    zt_backend_destroy(gpu_f32);
    zt_backend_destroy(cpu);
    return zt_test_finish("test_gpu_attention");
}
