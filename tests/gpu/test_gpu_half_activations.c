/* Half activations on a real GPU (tests/cudaemu/half_activation_parity.h): round_half,
 * layernorm_half and linear_half_in against the plain ops, and the half-mode OPT forward with and
 * without them, on the real cuBLASLt and cuDNN. linear_half_in reads its chunks in place where
 * linear reads them from the scratch, so the GEMMs' B pointers differ in alignment; a cuBLASLt
 * algorithm chosen for another alignment would show here as differing bits. linear_half_out's
 * GEMM writes a half D, so cuBLASLt may choose another algorithm than for linear_half_in's f32 D:
 * it is held to one half ulp of round_half(linear_half_in), and the printed counts say how many
 * elements the device's epilogue rounding moved. Exits 77 (a meson skip) without a CUDA device.
 *
 *   test_gpu_half_activations [--device N]
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda/cuda_backend.h"
#include "zt_test.h"

#include "gpu_device.h"

#include "half_activation_parity.h"

int main(int argc, char **argv) {
    int device = 0, n_devices = 0, status = zt_gpu_test_device_option(argc, argv, &device);
    if (status == 0) status = zt_gpu_test_devices("test_gpu_half_activations", &n_devices);
    if (status != 0) return status;
    zt_backend *gpu = NULL;
    ZT_REQUIRE_OK(zt_cuda_backend_create(device, &gpu));
    printf("test_gpu_half_activations: %s\n", gpu->ops->describe(gpu));
    /* the executor's budgets, so the chunk loops take several turns here too */
    ZT_REQUIRE_OK(zt_cuda_backend_set_linear_chunk(gpu, 4096));
    half_out_exact = 0;
    zt_half_activation_ops(gpu);
    ZT_REQUIRE_OK(zt_cuda_backend_set_linear_chunk(gpu, 1024));
    zt_half_activation_models(gpu);
    zt_backend_destroy(gpu);
    return zt_test_finish("test_gpu_half_activations");
}
