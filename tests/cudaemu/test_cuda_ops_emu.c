/* The CUDA backend's kernels, executed on the CPU by the host executor (cudaemu), against the CPU
 * backend: every forward op on awkward shapes, with guard bands and NMSE bounds (op_parity.h).
 *
 *   test_cuda_ops_emu [--seed N]      CUDAEMU_WORKERS=n sets the host threads that run blocks
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "op_parity.h"
#include "gemm_parity.h"
#include "linear_batched_parity.h"

int main(int argc, char **argv) {
    uint64_t seed = 20250607;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--seed N]\n", argv[0]);
            return 2;
        }
    }
    double start = zt_parity_now();
    zt_mem_stats at_start;
    zt_mem_stats_get(&at_start);

    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(0, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    ZT_CHECK(strcmp(emu->ops->name, "cuda-emu") == 0, "backend name %s", emu->ops->name);
    /* Made by its constructor, not zt_backend_create: its op table is checked here. */
    ZT_CHECK_OK(zt_backend_check_ops(emu->ops));

    /* A second device does not exist in the emulator: the constructor must say so. */
    zt_backend *missing = NULL;
    zt_status s = zt_cudaemu_backend_create(1, &missing);
    ZT_CHECK(s == ZT_ERR_UNAVAILABLE && missing == NULL, "device 1: %s", zt_status_name(s));

    zt_parity_run(cpu, emu, seed);
    zt_gemm_parity_run(cpu, emu, seed);
    /* q, k and v as one GEMM, bit for bit the three: 300 rows of 96 halves in 4 chunks */
    printf("linear_batched against its members\n");
    zt_linear_batched_parity_run(cpu, 1, seed);
    ZT_REQUIRE_OK(zt_cudaemu_backend_set_linear_chunk(emu, 4096));
    zt_linear_batched_parity_run(emu, 1, seed);
    /* the real GPU's chunk size, where these layers take one chunk */
    ZT_CHECK(zt_cudaemu_backend_set_linear_chunk(emu, 1000) == ZT_ERR_INVALID_ARG,
             "a 1000-float linear chunk was accepted");
    ZT_REQUIRE_OK(zt_cudaemu_backend_set_linear_chunk(emu, 16u << 20));
    zt_gemm_parity_run(cpu, emu, seed);

    emu->ops->destroy(emu);
    cpu->ops->destroy(cpu);
    zt_mem_stats at_end;
    zt_mem_stats_get(&at_end);
    ZT_CHECK(at_end.current_total == at_start.current_total,
             "tracked memory: %zu bytes at start, %zu after destroying both backends",
             at_start.current_total, at_end.current_total);
    printf("seed %llu, %.1f s\n", (unsigned long long)seed, zt_parity_now() - start);
    return zt_test_finish("test_cuda_ops_emu");
}
