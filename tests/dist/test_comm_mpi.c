/* The MPI communicator (src/dist/comm_mpi.c) under mpirun:
 *   healthy (1 to 4 ranks): all-gathers, a broadcast from every root and a barrier deliver what
 *     each sender held; point-to-point messages between every pair both ways, and 1 MB along a
 *     chain (rank r - 1 to r); a message to itself or to no rank is refused;
 *   hang (3 ranks): the last rank joins an all-gather 5 s late; the others fail after
 *     --comm-timeout (1 s): rank 0 names the late rank from the roll call, rank 1 says rank 0
 *     names it; then the late rank's all-gather completes with the parts posted before.
 * argv[1] names the scenario. Every rank checks and the exit status carries the verdict. */
#include <mpi.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "dist/comm.h"
#include "zt_test.h"

static void collectives(zt_comm *c) {
    const int p = c->size, r = c->rank;
    double mine[5], all[4 * 5];
    for (int i = 0; i < 5; i++)
        mine[i] = r * 1e3 + i;
    ZT_CHECK_OK(c->ops->allgather(c, mine, sizeof mine, all));
    int wrong = 0;
    for (int q = 0; q < p; q++)
        for (int i = 0; i < 5; i++)
            wrong += all[q * 5 + i] != q * 1e3 + i;
    ZT_CHECK(wrong == 0, "rank %d: all-gather: %d wrong", r, wrong);
    for (int root = 0; root < p; root++) {
        int64_t value[2] = {r == root ? 100 + root : -1, r == root ? 7 : -1};
        ZT_CHECK_OK(c->ops->broadcast(c, value, sizeof value, root));
        ZT_CHECK(value[0] == 100 + root && value[1] == 7, "rank %d: broadcast from %d", r, root);
    }
    ZT_CHECK_OK(c->ops->barrier(c));
}

static void point_to_point(zt_comm *c) {
    const int p = c->size, r = c->rank;
    /* small messages go out eagerly, so every rank sends all before it receives */
    for (int q = 0; q < p; q++) {
        const int32_t note[3] = {r, q, 42};
        if (q != r) ZT_CHECK_OK(c->ops->send(c, note, sizeof note, q));
    }
    for (int q = 0; q < p; q++) {
        int32_t note[3] = {-1, -1, -1};
        if (q == r) continue;
        ZT_CHECK_OK(c->ops->recv(c, note, sizeof note, q));
        ZT_CHECK(note[0] == q && note[1] == r && note[2] == 42, "rank %d: note from %d", r, q);
    }
    enum { BIG = 1 << 18 };
    float *big = malloc(BIG * sizeof *big);
    if (r > 0) {
        ZT_CHECK_OK(c->ops->recv(c, big, BIG * sizeof *big, r - 1));
        int wrong = 0;
        for (int i = 0; i < BIG; i++)
            wrong += big[i] != (float)(r - 1) + (float)i;
        ZT_CHECK(wrong == 0, "rank %d: %d of %d floats from rank %d wrong", r, wrong, BIG, r - 1);
    }
    for (int i = 0; i < BIG; i++)
        big[i] = (float)r + (float)i;
    if (r + 1 < p) ZT_CHECK_OK(c->ops->send(c, big, BIG * sizeof *big, r + 1));
    ZT_CHECK(c->ops->send(c, big, 4, r) == ZT_ERR_INVALID_ARG, "a message to itself is refused");
    ZT_CHECK(c->ops->recv(c, big, 4, p) == ZT_ERR_INVALID_ARG, "a message from rank %d refused", p);
    free(big);
}

static void hang(zt_comm *c) {
    double x = c->rank, all[3];
    const int late = c->rank == c->size - 1;
    if (late) sleep(5);
    const zt_status s = c->ops->allgather(c, &x, sizeof x, all);
    const char *why = zt_last_error();
    char named[64];
    snprintf(named, sizeof named, "no word from rank %d within 1 s", c->size - 1);
    if (late)
        ZT_CHECK(s == ZT_OK && all[0] == 0 && all[1] == 1 && all[2] == 2,
                 "the late rank's all-gather completes: %s", s == ZT_OK ? "" : why);
    else if (c->rank == 0)
        ZT_CHECK(s == ZT_ERR_IO && strstr(why, "all-gather") && strstr(why, named),
                 "rank 0 names the late rank: %s", why);
    else
        ZT_CHECK(s == ZT_ERR_IO && strstr(why, "all-gather") && strstr(why, "rank 0 names it"),
                 "rank %d: timed out, rank 0 names the late one: %s", c->rank, why);
}

int main(int argc, char **argv) {
    ZT_REQUIRE(argc == 2, "usage: test_comm_mpi healthy|hang (under mpirun)");
    zt_comm *c = NULL;
    const int hangs = strcmp(argv[1], "hang") == 0;
    ZT_REQUIRE_OK(zt_comm_mpi_create(hangs ? 1.0 : 30.0, &c));
    ZT_CHECK(strcmp(c->ops->name, "mpi") == 0 && c->n_devices == 0, "%s", c->ops->name);
    if (hangs) {
        ZT_REQUIRE(c->size == 3, "hang runs on 3 ranks");
        hang(c);
    } else {
        collectives(c);
        point_to_point(c);
    }
    /* the timed-out ranks' all-gather completes here, with the late rank's part */
    MPI_Barrier(MPI_COMM_WORLD);
    char name[64];
    snprintf(name, sizeof name, "test_comm_mpi %s, rank %d of %d", argv[1], c->rank, c->size);
    zt_comm_destroy(c);
    return zt_test_finish(name);
}
