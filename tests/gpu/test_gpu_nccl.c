/* The NCCL communicator (src/dist/comm_nccl.c) with the real NCCL on real GPUs:
 *   one rank (--comm nccl without a launcher: world size 1): all-gathers of a few bytes and of a
 *     buffer that grows the staging, a broadcast, a barrier; a message to itself is refused;
 *   N ranks, when the machine has N >= 2 GPUs and mpirun is given: the same program under
 *     `mpirun -np N`, each rank on its local rank's GPU: all-gathers, a broadcast from every
 *     root, a barrier, and device buffers along a chain of sends and receives (rank r - 1 to r).
 * Exits 77 (a meson skip) when the CUDA runtime finds no device; the N-rank part says why it is
 * skipped (one GPU, or no mpirun) and the one-rank part still runs.
 *
 *   test_gpu_nccl [MPIRUN]        (the N-rank part runs `MPIRUN -np N test_gpu_nccl --rank`)
 */
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "dist/comm.h"
#include "zt_test.h"

#include "gpu_device.h"

static void collectives(zt_comm *c) {
    const int p = c->size, r = c->rank;
    for (int n = 3; n <= 3000; n *= 1000) {
        double *mine = malloc((size_t)n * sizeof *mine);
        double *all = malloc((size_t)n * (size_t)p * sizeof *all);
        for (int i = 0; i < n; i++)
            mine[i] = r * 1e6 + n + i;
        ZT_CHECK_OK(c->ops->allgather(c, mine, (size_t)n * sizeof *mine, all));
        int wrong = 0;
        for (int q = 0; q < p; q++)
            for (int i = 0; i < n; i++)
                wrong += all[(size_t)q * (size_t)n + (size_t)i] != q * 1e6 + n + i;
        ZT_CHECK(wrong == 0, "rank %d: all-gather of %d doubles: %d wrong", r, n, wrong);
        free(mine), free(all);
    }
    for (int root = 0; root < p; root++) {
        int64_t value[2] = {r == root ? 100 + root : -1, r == root ? 7 : -1};
        ZT_CHECK_OK(c->ops->broadcast(c, value, sizeof value, root));
        ZT_CHECK(value[0] == 100 + root && value[1] == 7, "rank %d: broadcast from %d", r, root);
    }
    ZT_CHECK_OK(c->ops->barrier(c));
}

/* Device buffers from rank r - 1 to r, as a pipeline's activations travel. */
static void chain(zt_comm *c) {
    enum { N = 1 << 20 };
    const int r = c->rank;
    float *host = malloc(N * sizeof *host), *device = NULL;
    ZT_REQUIRE(cudaMalloc((void **)&device, N * sizeof *host) == cudaSuccess, "cudaMalloc");
    if (r > 0) {
        ZT_CHECK_OK(c->ops->recv(c, device, N * sizeof *host, r - 1));
        cudaMemcpy(host, device, N * sizeof *host, cudaMemcpyDeviceToHost);
        int wrong = 0;
        for (int i = 0; i < N; i++)
            wrong += host[i] != (float)(r - 1) + (float)(i % 1000);
        ZT_CHECK(wrong == 0, "rank %d: %d of %d floats from rank %d wrong", r, wrong, N, r - 1);
    }
    if (r + 1 < c->size) {
        for (int i = 0; i < N; i++)
            host[i] = (float)r + (float)(i % 1000);
        cudaMemcpy(device, host, N * sizeof *host, cudaMemcpyHostToDevice);
        ZT_CHECK_OK(c->ops->send(c, device, N * sizeof *host, r + 1));
    }
    ZT_CHECK(c->ops->send(c, device, 4, r) == ZT_ERR_INVALID_ARG, "a message to itself is refused");
    cudaFree(device);
    free(host);
}

int main(int argc, char **argv) {
    const int as_rank = argc > 1 && strcmp(argv[1], "--rank") == 0;
    int n_devices = 0;
    const int status = zt_gpu_test_devices("test_gpu_nccl", &n_devices);
    if (status != 0) return status;
    zt_comm *c = NULL;
    ZT_REQUIRE_OK(zt_comm_create("nccl", 1, 120.0, &c));
    ZT_CHECK(strcmp(c->ops->name, "nccl") == 0 && c->device == c->local_rank % n_devices,
             "rank %d: %s on cuda:%d, local rank %d of %d GPUs", c->rank, c->ops->name, c->device,
             c->local_rank, n_devices);
    collectives(c);
    chain(c);
    char name[64];
    snprintf(name, sizeof name, "test_gpu_nccl, rank %d of %d", c->rank, c->size);
    zt_comm_destroy(c);
    const int code = zt_test_finish(name);
    if (as_rank || code != 0) return code;
    if (n_devices < 2 || argc < 2) {
        printf("test_gpu_nccl: %d ranks skipped: %s\n", n_devices,
               n_devices < 2 ? "one GPU" : "no mpirun given");
        return code;
    }
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 %s -np %d --oversubscribe "
             "%s --rank 2>&1",
             argv[1], n_devices, argv[0]);
    const int rc = zt_test_run(cmd, out, sizeof out);
    printf("%s", out);
    ZT_CHECK(rc == 0, "%d ranks under mpirun, one GPU each (exit %d)", n_devices, rc);
    return zt_test_finish("test_gpu_nccl");
}
