/* The MPI communicator (src/dist/comm_mpi.c) under mpirun:
 *   healthy (1 to 4 ranks): all-gathers, a broadcast from every root and a barrier deliver what
 *     each sender held; point-to-point messages between every pair both ways, and 1 MB along a
 *     chain (rank r - 1 to r); a message to itself or to no rank is refused; the calls, made
 *     through zt_comm_allgather ... zt_comm_recv, are counted as docs/distributed.md defines
 *     (the expected counts are worked out here per call, refused calls not counted);
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

enum { BIG = 1 << 18 }; /* the floats sent along the chain */

/* What the healthy scenario's calls carry on this rank, call by call: all-gather of b bytes
 * sends b and receives (P - 1) b, a broadcast's root sends b and the others receive b, one
 * process sends and receives nothing; a send sends its bytes, a recv receives them. */
static void expect_collectives(int p, zt_comm_traffic *want) {
    const uint64_t others = (uint64_t)p - 1, gather = 5 * sizeof(double);
    const uint64_t value = 2 * sizeof(int64_t);
    want->op[ZT_COMM_ALLGATHER] = (zt_comm_op_count){1, p > 1 ? gather : 0, others * gather};
    /* a broadcast from every root: this rank is the root of one of them */
    want->op[ZT_COMM_BROADCAST] =
        (zt_comm_op_count){(uint64_t)p, p > 1 ? value : 0, others * value};
    want->op[ZT_COMM_BARRIER] = (zt_comm_op_count){1, 0, 0};
}

static void expect_point_to_point(int p, int r, uint64_t big_bytes, zt_comm_traffic *want) {
    const uint64_t others = (uint64_t)p - 1, note = 3 * sizeof(int32_t);
    const int sends_big = r + 1 < p, receives_big = r > 0;
    want->op[ZT_COMM_SEND] =
        (zt_comm_op_count){others + sends_big, others * note + (sends_big ? big_bytes : 0), 0};
    want->op[ZT_COMM_RECV] = (zt_comm_op_count){others + receives_big, 0,
                                                others * note + (receives_big ? big_bytes : 0)};
}

static void check_traffic(const zt_comm *c, const zt_comm_traffic *want) {
    for (int k = 0; k < ZT_COMM_OP_KINDS; k++) {
        const zt_comm_op_count *got = &c->traffic.op[k], *w = &want->op[k];
        ZT_CHECK(got->calls == w->calls && got->sent == w->sent && got->received == w->received,
                 "rank %d of %d: %s counted %llu calls, %llu sent, %llu received; expected "
                 "%llu, %llu, %llu",
                 c->rank, c->size, zt_comm_op_name((zt_comm_op_kind)k),
                 (unsigned long long)got->calls, (unsigned long long)got->sent,
                 (unsigned long long)got->received, (unsigned long long)w->calls,
                 (unsigned long long)w->sent, (unsigned long long)w->received);
    }
}

static void collectives(zt_comm *c) {
    const int p = c->size, r = c->rank;
    double mine[5], all[4 * 5];
    for (int i = 0; i < 5; i++)
        mine[i] = r * 1e3 + i;
    ZT_CHECK_OK(zt_comm_allgather(c, mine, sizeof mine, all));
    int wrong = 0;
    for (int q = 0; q < p; q++)
        for (int i = 0; i < 5; i++)
            wrong += all[q * 5 + i] != q * 1e3 + i;
    ZT_CHECK(wrong == 0, "rank %d: all-gather: %d wrong", r, wrong);
    for (int root = 0; root < p; root++) {
        int64_t value[2] = {r == root ? 100 + root : -1, r == root ? 7 : -1};
        ZT_CHECK_OK(zt_comm_broadcast(c, value, sizeof value, root));
        ZT_CHECK(value[0] == 100 + root && value[1] == 7, "rank %d: broadcast from %d", r, root);
    }
    ZT_CHECK_OK(zt_comm_barrier(c));
}

static void point_to_point(zt_comm *c) {
    const int p = c->size, r = c->rank;
    /* small messages go out eagerly, so every rank sends all before it receives */
    for (int q = 0; q < p; q++) {
        const int32_t note[3] = {r, q, 42};
        if (q != r) ZT_CHECK_OK(zt_comm_send(c, note, sizeof note, q));
    }
    for (int q = 0; q < p; q++) {
        int32_t note[3] = {-1, -1, -1};
        if (q == r) continue;
        ZT_CHECK_OK(zt_comm_recv(c, note, sizeof note, q));
        ZT_CHECK(note[0] == q && note[1] == r && note[2] == 42, "rank %d: note from %d", r, q);
    }
    float *big = malloc(BIG * sizeof *big);
    if (r > 0) {
        ZT_CHECK_OK(zt_comm_recv(c, big, BIG * sizeof *big, r - 1));
        int wrong = 0;
        for (int i = 0; i < BIG; i++)
            wrong += big[i] != (float)(r - 1) + (float)i;
        ZT_CHECK(wrong == 0, "rank %d: %d of %d floats from rank %d wrong", r, wrong, BIG, r - 1);
    }
    for (int i = 0; i < BIG; i++)
        big[i] = (float)r + (float)i;
    if (r + 1 < p) ZT_CHECK_OK(zt_comm_send(c, big, BIG * sizeof *big, r + 1));
    ZT_CHECK(zt_comm_send(c, big, 4, r) == ZT_ERR_INVALID_ARG, "a message to itself is refused");
    ZT_CHECK(zt_comm_recv(c, big, 4, p) == ZT_ERR_INVALID_ARG, "a message from rank %d refused", p);
    free(big);
}

static void hang(zt_comm *c) {
    double x = c->rank, all[3];
    const int late = c->rank == c->size - 1;
    if (late) sleep(5);
    const zt_status s = zt_comm_allgather(c, &x, sizeof x, all);
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
        zt_comm_traffic want;
        memset(&want, 0, sizeof want);
        expect_collectives(c->size, &want);
        expect_point_to_point(c->size, c->rank, (uint64_t)BIG * sizeof(float), &want);
        check_traffic(c, &want);
    }
    /* the timed-out ranks' all-gather completes here, with the late rank's part */
    MPI_Barrier(MPI_COMM_WORLD);
    char name[64];
    snprintf(name, sizeof name, "test_comm_mpi %s, rank %d of %d", argv[1], c->rank, c->size);
    zt_comm_destroy(c);
    return zt_test_finish(name);
}
