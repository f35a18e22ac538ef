/* The TCP communicator with real processes on the loopback: N forked ranks join rank 0 and run
 * all-gathers, broadcasts and point-to-point messages whose contents every rank checks against
 * what each sender must have sent, and count what each rank's calls carried as
 * docs/distributed.md defines (rank 0 relays every collective, yet counts what the others do);
 * then the failures: a rank that exits, a rank that hangs (caught
 * by the timeout), and ranks exchanging messages of different lengths. Each child reports through
 * its exit status: 0 = every check passed. */
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "dist/comm.h"
#include "zt_test.h"

enum { RANKS = 4, N = 1000, BIG = 1 << 18 }; /* BIG: the floats sent along the chain */

/* A port the kernel says is free right now. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* 0 when every collective delivered what the senders held. */
static int collectives(zt_comm *c) {
    double mine[N], all[RANKS * N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++)
            mine[i] = c->rank * 1e6 + round * 1e4 + i;
        if (zt_comm_allgather(c, mine, sizeof mine, all) != ZT_OK) return 10 + round;
        for (int q = 0; q < RANKS; q++)
            for (int i = 0; i < N; i++)
                if (all[q * N + i] != q * 1e6 + round * 1e4 + i) return 20 + round;
    }
    for (int root = 0; root < RANKS; root++) {
        int64_t value[3] = {c->rank == root ? 100 + root : -1, c->rank == root ? 7 : -1, 0};
        if (zt_comm_broadcast(c, value, sizeof value, root) != ZT_OK) return 30 + root;
        if (value[0] != 100 + root || value[1] != 7) return 40 + root;
    }
    return zt_comm_barrier(c) == ZT_OK ? 0 : 50;
}

/* 0 when point-to-point messages arrive whole: a small one between every pair of ranks both
 * ways (they fit the socket buffers, so every rank sends all before receiving), then 1 MB along
 * a chain, rank r - 1 to r, which blocks each sender until the receiver reads. */
static int point_to_point(zt_comm *c) {
    const int r = c->rank;
    for (int q = 0; q < RANKS; q++) {
        const int32_t note[3] = {r, q, 42};
        if (q != r && zt_comm_send(c, note, sizeof note, q) != ZT_OK) return 80 + q;
    }
    for (int q = 0; q < RANKS; q++) {
        int32_t note[3] = {-1, -1, -1};
        if (q != r && zt_comm_recv(c, note, sizeof note, q) != ZT_OK) return 84 + q;
        if (q != r && (note[0] != q || note[1] != r || note[2] != 42)) return 88 + q;
    }
    float *big = malloc(BIG * sizeof *big);
    int code = 0;
    if (r > 0 && zt_comm_recv(c, big, BIG * sizeof *big, r - 1) != ZT_OK) code = 92;
    for (int i = 0; r > 0 && code == 0 && i < BIG; i++)
        if (big[i] != (float)(r - 1) + (float)i) code = 93;
    for (int i = 0; i < BIG; i++)
        big[i] = (float)r + (float)i;
    if (code == 0 && r + 1 < RANKS && zt_comm_send(c, big, BIG * sizeof *big, r + 1) != ZT_OK)
        code = 94;
    free(big);
    if (code == 0 && zt_comm_send(c, &code, sizeof code, r) != ZT_ERR_INVALID_ARG) code = 95;
    if (code) fprintf(stderr, "rank %d: point to point: %s\n", r, zt_last_error());
    return code;
}

/* 0 when this rank's counts match its calls above, worked out call by call: 3 all-gathers of N
 * doubles (N sent, (RANKS - 1) N received each), a broadcast from every root of 3 int64 (sent
 * as the root, received from the others), a barrier; a 12-byte note to and from every other
 * rank, the chain's BIG floats sent unless last and received unless first; the refused
 * message to itself not counted. */
static int check_traffic(const zt_comm *c) {
    const int r = c->rank;
    const uint64_t gather = N * sizeof(double), value = 3 * sizeof(int64_t);
    const uint64_t note = 3 * sizeof(int32_t), big = BIG * sizeof(float);
    const int sends_big = r + 1 < RANKS, receives_big = r > 0;
    const zt_comm_op_count want[ZT_COMM_OP_KINDS] = {
        [ZT_COMM_ALLGATHER] = {3, 3 * gather, 3 * (RANKS - 1) * gather},
        [ZT_COMM_BROADCAST] = {RANKS, value, (RANKS - 1) * value},
        [ZT_COMM_SEND] = {RANKS - 1 + sends_big, (RANKS - 1) * note + (sends_big ? big : 0), 0},
        [ZT_COMM_RECV] = {RANKS - 1 + receives_big, 0,
                          (RANKS - 1) * note + (receives_big ? big : 0)},
        [ZT_COMM_BARRIER] = {1, 0, 0},
    };
    for (int k = 0; k < ZT_COMM_OP_KINDS; k++) {
        const zt_comm_op_count *got = &c->traffic.op[k];
        if (got->calls != want[k].calls || got->sent != want[k].sent ||
            got->received != want[k].received) {
            fprintf(stderr, "rank %d: %s counted %llu calls, %llu sent, %llu received\n", r,
                    zt_comm_op_name((zt_comm_op_kind)k), (unsigned long long)got->calls,
                    (unsigned long long)got->sent, (unsigned long long)got->received);
            return 96 + k;
        }
    }
    return 0;
}

typedef enum { HEALTHY, ONE_EXITS, ONE_HANGS, MISMATCH } scenario;

static int run_rank(int rank, int port, scenario what, double timeout) {
    zt_comm *c = NULL;
    if (zt_comm_tcp_create(rank, RANKS, rank, "127.0.0.1", port, timeout, &c) != ZT_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, zt_last_error());
        return 2;
    }
    int code = 0;
    if (what == HEALTHY) {
        code = collectives(c);
        if (code == 0) code = point_to_point(c);
        if (code == 0) code = check_traffic(c);
    } else if (what == ONE_EXITS || what == ONE_HANGS) {
        if (rank == 2) {
            if (what == ONE_HANGS) sleep(30);
            _exit(0); /* gone without a word */
        }
        double x = rank, all[RANKS];
        zt_status s = c->ops->allgather(c, &x, sizeof x, all);
        const char *why = zt_last_error();
        /* rank 0 names rank 2; the others hear that rank 0 went away */
        int named = rank == 0 ? strstr(why, "rank 2") != NULL : strstr(why, "rank 0") != NULL;
        /* a rank waiting on rank 0 may time out itself as rank 0 gives up on the hung one */
        const int timed_out = strstr(why, "--comm-timeout") != NULL;
        const int went_away = strstr(why, "ended or failed") != NULL;
        int kind = what == ONE_HANGS ? (rank == 0 ? timed_out : timed_out || went_away) : went_away;
        code = s != ZT_OK && named && kind ? 0 : 60;
        if (code) fprintf(stderr, "rank %d: %s\n", rank, why);
        c->ops->abort(c, 1); /* as the command does: the others stop waiting */
    } else {
        double x[2] = {0, 0}, all[2 * RANKS];
        zt_status s = c->ops->allgather(c, x, rank == 1 ? sizeof x : sizeof x[0], all);
        code = rank == 1 || rank == 0 ? (s == ZT_ERR_CONFLICT || s == ZT_ERR_IO ? 0 : 70) : 0;
        c->ops->abort(c, 1);
    }
    zt_comm_destroy(c);
    return code;
}

/* Runs the scenario on RANKS processes; returns how many failed, and the seconds it took. */
static int run_all(scenario what, double timeout, double *seconds) {
    const int port = free_port();
    pid_t pid[RANKS];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < RANKS; r++) {
        pid[r] = fork();
        if (pid[r] == 0) _exit(run_rank(r, port, what, timeout));
    }
    int failed = 0;
    /* the hanging rank is waited for last, after the time is taken, and then killed */
    for (int r = 0; r < RANKS; r++) {
        if (what == ONE_HANGS && r == 2) continue;
        int status = 0;
        waitpid(pid[r], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "scenario %d: rank %d ended with status %d\n", what, r, status);
            failed++;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (what == ONE_HANGS) {
        kill(pid[2], SIGKILL);
        waitpid(pid[2], NULL, 0);
    }
    return failed;
}

int main(void) {
    double took = 0;
    ZT_CHECK(run_all(HEALTHY, 20.0, &took) == 0,
             "all-gathers, broadcasts from every root, point-to-point messages, each counted");
    ZT_CHECK(run_all(ONE_EXITS, 20.0, &took) == 0, "a rank that exits is named");
    ZT_CHECK(run_all(ONE_HANGS, 2.0, &took) == 0 && took < 20.0,
             "a rank that hangs is caught by the timeout (took %.1f s)", took);
    ZT_CHECK(run_all(MISMATCH, 20.0, &took) == 0, "messages of other lengths are refused");
    zt_comm *c = NULL;
    ZT_CHECK(zt_comm_tcp_create(4, 4, 0, "127.0.0.1", 1, 1.0, &c) == ZT_ERR_INVALID_ARG,
             "RANK out of range");
    ZT_CHECK(strstr(zt_last_error(), "RANK=4") != NULL, "%s", zt_last_error());
    return zt_test_finish("test_comm_tcp");
}
