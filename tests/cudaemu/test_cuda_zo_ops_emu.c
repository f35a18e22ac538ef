/* The CUDA backend's perturbation kernels (perturb, z_sumsq, update: kernels/cuda/perturb.cu,
 * sumsq.cu, update.cu), executed on the CPU by the host executor (cudaemu), against the CPU
 * backend: bit for bit in every case, Gaussian z included (zotune's Box-Muller transform is the
 * same IEEE operations on both sides); the RNG streams of device code against the CPU's Philox,
 * and cuRAND's curand_normal4 (compiled for the host here) within its bound of the engine's
 * normals; z_sumsq on several grids; the same errors; scratch planning (zo_parity.h).
 *
 *   test_cuda_zo_ops_emu [--seed N]      CUDAEMU_WORKERS=n sets the host threads that run blocks
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

#include "zo_parity.h"

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

    zt_zo_scratch_checks(zt_cudaemu_backend_create, 0);

    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(0, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    const zt_zo_mode mode = {ZT_CURAND_HOST_BUILD}; /* cuRAND's host branch under the executor */
    zt_zo_parity_run(cpu, emu, seed, &mode);
    emu->ops->destroy(emu);
    cpu->ops->destroy(cpu);

    zt_mem_stats at_end;
    zt_mem_stats_get(&at_end);
    ZT_CHECK(at_end.current_total == at_start.current_total,
             "tracked memory: %zu bytes at start, %zu after destroying both backends",
             at_start.current_total, at_end.current_total);
    printf("seed %llu, %.1f s\n", (unsigned long long)seed, zt_parity_now() - start);
    return zt_test_finish("test_cuda_zo_ops_emu");
}
