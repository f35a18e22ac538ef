/* The NCCL communicator (src/dist/comm_nccl.c, built against the stand-in ncclstub.cpp and the
 * host executor's runtime), under mpirun with 1 to 4 ranks, bootstrapped over MPI:
 *   collectives: all-gathers (a few bytes, then a buffer that grows the staging), a broadcast
 *     from every root and a barrier deliver what each sender held; a chain of sends and receives
 *     of device buffers (rank r - 1 to r, as a pipeline's stages) delivers each sender's bytes;
 *     a send to itself or to no rank is refused; each rank's counts of those calls (through
 *     zt_comm_allgather ... zt_comm_recv) are docs/distributed.md's, worked out call by call;
 *   hang: the last rank joins an all-gather 3 s late; the others fail after --comm-timeout (1 s),
 *     not before, naming the all-gather; rank 0 names the late rank from the MPI bootstrap's
 *     roll call; the aborted communicator refuses the next call;
 *   async: an asynchronous error injected on rank 0 fails its next call naming the operation and
 *     the error; the other ranks' calls complete.
 * argv[1] names the scenario. Every rank checks and the exit status carries the verdict. */
#include "ncclstub.h"

#include <mpi.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "dist/comm.h"
#include "zt_test.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static zt_comm *join(double timeout_s) {
    zt_comm *boot = NULL, *c = NULL;
    ZT_REQUIRE_OK(zt_comm_mpi_create(timeout_s, &boot));
    if (zt_comm_nccl_create(boot, timeout_s, &c) != ZT_OK) {
        /* the other ranks may wait in the stand-in's setup: end them too */
        fprintf(stderr, "FATAL: zt_comm_nccl_create: %s\n", zt_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    ZT_CHECK(strcmp(c->ops->name, "nccl") == 0 && c->n_devices == 1 && c->device == 0,
             "the executor's one device for every local rank (%d of %d)", c->device, c->n_devices);
    return c;
}

enum { CHAIN = 777 }; /* the floats each link of the chain carries */

static void collectives(zt_comm *c) {
    const int p = c->size, r = c->rank;
    for (int n = 3; n <= 3000; n *= 1000) {
        double *mine = malloc((size_t)n * sizeof *mine),
               *all = malloc((size_t)(n * p) * sizeof *all);
        for (int i = 0; i < n; i++)
            mine[i] = r * 1e6 + n + i;
        ZT_CHECK_OK(zt_comm_allgather(c, mine, (size_t)n * sizeof *mine, all));
        int wrong = 0;
        for (int q = 0; q < p; q++)
            for (int i = 0; i < n; i++)
                wrong += all[(size_t)q * (size_t)n + (size_t)i] != q * 1e6 + n + i;
        ZT_CHECK(wrong == 0, "rank %d: all-gather of %d doubles: %d wrong", r, n, wrong);
        free(mine), free(all);
    }
    for (int root = 0; root < p; root++) {
        int64_t value[3] = {r == root ? 100 + root : -1, r == root ? 7 : -1, r};
        ZT_CHECK_OK(zt_comm_broadcast(c, value, sizeof value, root));
        ZT_CHECK(value[0] == 100 + root && value[1] == 7 && value[2] == root,
                 "rank %d: broadcast from %d gave %lld %lld %lld", r, root, (long long)value[0],
                 (long long)value[1], (long long)value[2]);
    }
    ZT_CHECK_OK(zt_comm_barrier(c));
}

/* Rank r receives (n) floats from r - 1, then sends its own to r + 1: a pipeline's chain. */
static void chain(zt_comm *c) {
    const int r = c->rank;
    float host[CHAIN];
    float *device = NULL;
    ZT_REQUIRE(cudaMalloc((void **)&device, sizeof host) == cudaSuccess, "cudaMalloc");
    if (r > 0) {
        ZT_CHECK_OK(zt_comm_recv(c, device, sizeof host, r - 1));
        cudaMemcpy(host, device, sizeof host, cudaMemcpyDeviceToHost);
        int wrong = 0;
        for (int i = 0; i < CHAIN; i++)
            wrong += host[i] != (float)(r - 1) + 0.25f * (float)i;
        ZT_CHECK(wrong == 0, "rank %d: %d of %d floats from rank %d wrong", r, wrong, CHAIN, r - 1);
    }
    if (r + 1 < c->size) {
        for (int i = 0; i < CHAIN; i++)
            host[i] = (float)r + 0.25f * (float)i;
        cudaMemcpy(device, host, sizeof host, cudaMemcpyHostToDevice);
        ZT_CHECK_OK(zt_comm_send(c, device, sizeof host, r + 1));
    }
    ZT_CHECK(zt_comm_send(c, device, sizeof host, c->size) == ZT_ERR_INVALID_ARG,
             "a send to rank %d of %d is refused", c->size, c->size);
    ZT_CHECK(zt_comm_recv(c, device, sizeof host, -1) == ZT_ERR_INVALID_ARG,
             "a receive from rank -1 is refused");
    cudaFree(device);
}

/* What collectives and chain carried on this rank, by the definition: all-gathers of 3 and 3000
 * doubles (sent once, received from each other rank), a broadcast of 3 int64 from every root
 * (sent as the root, received from the others), a barrier, the chain's floats sent unless last
 * and received unless first; the refused calls not counted. */
static void check_traffic(const zt_comm *c) {
    const int p = c->size, r = c->rank;
    const uint64_t others = (uint64_t)p - 1, gathered = 3003 * sizeof(double);
    const uint64_t value = 3 * sizeof(int64_t), floats = CHAIN * sizeof(float);
    const int sends = r + 1 < p, receives = r > 0;
    const zt_comm_op_count want[ZT_COMM_OP_KINDS] = {
        [ZT_COMM_ALLGATHER] = {2, p > 1 ? gathered : 0, others * gathered},
        [ZT_COMM_BROADCAST] = {(uint64_t)p, p > 1 ? value : 0, others * value},
        [ZT_COMM_SEND] = {(uint64_t)sends, sends ? floats : 0, 0},
        [ZT_COMM_RECV] = {(uint64_t)receives, 0, receives ? floats : 0},
        [ZT_COMM_BARRIER] = {1, 0, 0}};
    for (int k = 0; k < ZT_COMM_OP_KINDS; k++) {
        const zt_comm_op_count *got = &c->traffic.op[k];
        ZT_CHECK(got->calls == want[k].calls && got->sent == want[k].sent &&
                     got->received == want[k].received,
                 "rank %d of %d: %s counted %llu calls, %llu sent, %llu received", r, p,
                 zt_comm_op_name((zt_comm_op_kind)k), (unsigned long long)got->calls,
                 (unsigned long long)got->sent, (unsigned long long)got->received);
    }
}

static void hang(zt_comm *c) {
    const double timeout = 1.0;
    double x = c->rank, all[4];
    const int late = c->rank == c->size - 1;
    if (late) sleep(3);
    const double start = now_s();
    const zt_status s = c->ops->allgather(c, &x, sizeof x, all);
    const double took = now_s() - start;
    if (late) {
        /* the others had aborted, and their parts were posted before: this one completes */
        ZT_CHECK(s == ZT_OK, "the late rank's all-gather: %s", zt_last_error());
        return;
    }
    ZT_CHECK(s == ZT_ERR_IO && strstr(zt_last_error(), "all-gather") &&
                 strstr(zt_last_error(), "--comm-timeout"),
             "rank %d: the all-gather fails naming itself and --comm-timeout: %s", c->rank,
             zt_last_error());
    /* rank 0 listens for the roll call for min(timeout, 2 s); the others report, then leave it
     * that long twice and a second more to name the missing (comm_mpi.c) */
    const double roll = timeout < 2.0 ? timeout : 2.0;
    const double latest = timeout + (c->rank == 0 ? roll : 2.0 * roll + 1.0) + 1.5;
    ZT_CHECK(took >= timeout && took < latest, "rank %d: failed after %.2f s, timeout %.0f",
             c->rank, took, timeout);
    if (c->rank == 0) {
        char late_rank[32];
        snprintf(late_rank, sizeof late_rank, "no word from rank %d ", c->size - 1);
        ZT_CHECK(strstr(zt_last_error(), late_rank) != NULL,
                 "rank 0 names the late rank %d from the bootstrap's roll call: %s", c->size - 1,
                 zt_last_error());
    } else {
        ZT_CHECK(strstr(zt_last_error(), "rank 0 names it") != NULL,
                 "rank %d leaves the naming to rank 0: %s", c->rank, zt_last_error());
    }
    ZT_CHECK(c->ops->barrier(c) == ZT_ERR_IO && strstr(zt_last_error(), "aborted"),
             "rank %d: the aborted communicator refuses the next call: %s", c->rank,
             zt_last_error());
}

static void async_error(zt_comm *c) {
    int64_t v = c->rank == 0 ? 42 : 0;
    if (c->rank == 0) ncclstub_inject_async_error(0, ncclRemoteError);
    const zt_status s = c->ops->broadcast(c, &v, sizeof v, 0);
    if (c->rank == 0)
        ZT_CHECK(s == ZT_ERR_IO && strstr(zt_last_error(), "broadcast") &&
                     strstr(zt_last_error(), "asynchronous error") &&
                     strstr(zt_last_error(), "remote process"),
                 "rank 0: the injected error fails the broadcast, named: %s", zt_last_error());
    else
        ZT_CHECK(s == ZT_OK && v == 42, "rank %d: its broadcast completed (%lld): %s", c->rank,
                 (long long)v, s == ZT_OK ? "" : zt_last_error());
}

int main(int argc, char **argv) {
    ZT_REQUIRE(argc == 2, "usage: test_comm_nccl_stub collectives|hang|async (under mpirun)");
    const char *scenario = argv[1];
    zt_comm *c = join(strcmp(scenario, "hang") == 0 ? 1.0 : 30.0);
    const long before = ncclstub_operations();
    if (strcmp(scenario, "collectives") == 0) {
        collectives(c);
        chain(c);
        ZT_CHECK(ncclstub_operations() > before, "the calls went through the stand-in");
        check_traffic(c);
    } else if (strcmp(scenario, "hang") == 0) {
        ZT_REQUIRE(c->size >= 2, "hang needs 2 ranks or more");
        hang(c);
    } else if (strcmp(scenario, "async") == 0) {
        ZT_REQUIRE(c->size >= 2, "async needs 2 ranks or more");
        async_error(c);
    } else {
        ZT_REQUIRE(0, "scenario %s: expected collectives, hang or async", scenario);
    }
    ncclstub_drain();
    MPI_Barrier(MPI_COMM_WORLD);
    char name[64];
    snprintf(name, sizeof name, "comm_nccl_stub %s, rank %d of %d", scenario, c->rank, c->size);
    zt_comm_destroy(c);
    return zt_test_finish(name);
}
