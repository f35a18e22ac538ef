/* The CUDA backend's backward ops (kernels/cuda/<op>_backward.cu), executed on the CPU by the host
 * executor (cudaemu), against the CPU backend: every op on awkward shapes, with guard bands, NMSE
 * bounds (gather_rows_backward bit for bit), a second run of every case giving the same bits, and
 * bad indices refused alike (backward_parity.h). Registered twice, the second time with
 * CUDAEMU_ORDER=reverse, so that a kernel relying on the order of its threads fails one of them.
 *
 *   test_cuda_backward_emu [--seed N]      CUDAEMU_WORKERS=n sets the host threads that run blocks
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

#include "backward_parity.h"

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
    /* Made by its constructor, not zt_backend_create: its op table is checked here, the backward
     * group included. */
    ZT_CHECK_OK(zt_backend_check_ops(emu->ops));
    ZT_CHECK_OK(zt_backend_require_backward(emu, "backprop"));

    zt_bwd_parity_run(cpu, emu, seed);
    /* the real GPU's linear chunk size: d_in in one chunk for these layers */
    ZT_REQUIRE_OK(zt_cudaemu_backend_set_linear_chunk(emu, 16u << 20));
    zt_prng r = {seed + 1};
    printf("linear_backward at the real GPU's chunk size\n");
    zt_bwd_parity_linear(cpu, emu, &r);

    emu->ops->destroy(emu);
    cpu->ops->destroy(cpu);
    zt_mem_stats at_end;
    zt_mem_stats_get(&at_end);
    ZT_CHECK(at_end.current_total == at_start.current_total,
             "tracked memory: %zu bytes at start, %zu after destroying both backends",
             at_start.current_total, at_end.current_total);
    printf("seed %llu, %.1f s\n", (unsigned long long)seed, zt_parity_now() - start);
    return zt_test_finish("test_cuda_backward_emu");
}
