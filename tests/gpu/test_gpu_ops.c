/* The real CUDA backend against the CPU backend: every forward op on the same awkward shapes,
 * guard bands and NMSE bounds as the emulated run (tests/cudaemu/op_parity.h), then the
 * perturbation ops (tests/cudaemu/zo_parity.h): bit for bit for every update rule and both
 * distributions (Gaussian z is the same IEEE operations on host and device); the RNG streams of
 * device code against the CPU's Philox, and cuRAND's device curand_normal4 within its bound of the
 * engine's normals; z_sumsq on several grids; scratch planning; linear under --gemm half and tf32
 * (gemm_parity.h); the whole OPT forward on the fixture models under f32 and half
 * (model_parity.h); batched generation over the KV cache against HF's tokens
 * (generation_parity.h); linear's chunked paths at the executor's chunk size; the GEMM plan cache
 * over repeated and varying-length forwards (gemm_plans.h). Exits 77 (a meson skip) when the CUDA
 * runtime finds no device, which is the case on the CI machines.
 *
 *   test_gpu_ops [--seed N] [--device N]      ZT_CUDA_SYNC=1 attributes faults to kernels
 */
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "zt_test.h"

#include "gpu_device.h"

/* The host executor's default (tests/cudaemu/cudaemu.h), at which the parity cases were sized to
 * cross chunk boundaries. */
#define ZT_EXECUTOR_LINEAR_CHUNK_FLOATS (40u * 1024u)

#include "op_parity.h"
#include "gemm_parity.h"
#include "linear_batched_parity.h"
#include "generation_parity.h"
#include "model_parity.h"
#include "zo_parity.h"
#include "backward_parity.h"
#include "gemm_plans.h"

/* The backend for gemm_plans.h with attention on the f32 kernel: those checks hold the GEMMs to
 * the CPU's half mode, which rounds no attention operands (test_gpu_attention checks cuDNN's). */
static zt_status create_gemm_only(int device, zt_backend **out) {
    ZT_TRY(zt_cuda_backend_create(device, out));
    return zt_cuda_backend_set_attention_mode(*out, ZT_CUDA_ATTENTION_F32);
}

int main(int argc, char **argv) {
    uint64_t seed = 20250607;
    int device = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            device = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--seed N] [--device N]\n", argv[0]);
            return 2;
        }
    }
    int n_devices = 0;
    const int status = zt_gpu_test_devices("test_gpu_ops", &n_devices);
    if (status != 0) return status;

    double start = zt_parity_now();
    zt_mem_stats at_start;
    zt_mem_stats_get(&at_start);
    zt_zo_scratch_checks(zt_cuda_backend_create, device);
    zt_backend *cpu = NULL, *gpu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(0, &cpu));
    ZT_REQUIRE_OK(zt_cuda_backend_create(device, &gpu));
    zt_model_parity_attention.set_mode = zt_cuda_backend_set_attention_mode;
    zt_model_parity_attention.paths = zt_cuda_backend_attention_paths;
    ZT_CHECK(strcmp(gpu->ops->name, "cuda") == 0, "backend name %s", gpu->ops->name);
    printf("test_gpu_ops: %s\n", gpu->ops->describe(gpu));

    zt_parity_run(cpu, gpu, seed);
    zt_gemm_parity_run(cpu, gpu, seed);
    zt_model_parity_run(cpu, gpu);
    zt_generation_parity_run(cpu, gpu);
    const zt_zo_mode mode = {ZT_CURAND_DEVICE_BUILD}; /* the probe's cuRAND: __sincosf, FMA */
    zt_zo_parity_run(cpu, gpu, seed, &mode);
    /* the backward ops (backprop) against the CPU's */
    zt_bwd_parity_run(cpu, gpu, seed);
    /* linear's chunked paths (several half-input chunks, widened weight chunks with their bias
     * slices) at the executor's chunk size, on the real cuBLASLt */
    ZT_REQUIRE_OK(zt_cuda_backend_set_linear_chunk(gpu, ZT_EXECUTOR_LINEAR_CHUNK_FLOATS));
    printf("linear chunk lowered to %u floats:\n", ZT_EXECUTOR_LINEAR_CHUNK_FLOATS);
    zt_parity_run(cpu, gpu, seed);
    zt_gemm_parity_run(cpu, gpu, seed);
    zt_model_parity_run(cpu, gpu);
    /* q, k and v as one strided-batched GEMM against three, on the real cuBLASLt */
    zt_linear_batched_parity_run(gpu, 0, seed);
    zt_prng backward_prng = {seed + 1};
    zt_bwd_parity_linear(cpu, gpu, &backward_prng);
    /* the GEMM plan cache on the real cuBLASLt: descriptors once per shape and row bucket,
     * algorithms chosen for a bucket confirmed by cublasLtMatmulAlgoCheck for each real row
     * count, the CPU's log-probs over varying lengths */
    const char *fixtures = getenv("ZT_FIXTURES");
    ZT_REQUIRE(fixtures != NULL, "ZT_FIXTURES is not set");
    char f32_dir[4096], f16_dir[4096];
    snprintf(f32_dir, sizeof f32_dir, "%s/opt-pre", fixtures);
    snprintf(f16_dir, sizeof f16_dir, "%s/opt-pre-f16", fixtures);
    zt_gemm_plans_run(create_gemm_only, device, zt_cuda_backend_gemm_counts, f32_dir, ZT_GEMM_F32);
    zt_gemm_plans_run(create_gemm_only, device, zt_cuda_backend_gemm_counts, f16_dir, ZT_GEMM_HALF);

    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    zt_mem_stats at_end;
    zt_mem_stats_get(&at_end);
    ZT_CHECK(at_end.current_total == at_start.current_total,
             "tracked memory: %zu bytes at start, %zu after destroying both backends",
             at_start.current_total, at_end.current_total);
    printf("device %d, seed %llu, %.1f s\n", device, (unsigned long long)seed,
           zt_parity_now() - start);
    return zt_test_finish("test_gpu_ops");
}
