/* The MPI communicator: CPU ranks started by mpirun or srun. Initialised once per process; a
 * call that fails returns its MPI error string with the rank.
 *
 * Every call is nonblocking underneath (MPI_Iallgather, MPI_Ibcast, MPI_Ibarrier, MPI_Isend,
 * MPI_Irecv), polled with MPI_Test against the deadline of --comm-timeout. A blocking MPI call
 * would wait forever for a rank that hangs without dying (stopped, deadlocked, stuck in I/O):
 * mpirun only ends the job when a process exits. Past the deadline the ranks that timed out
 * answer a roll call to rank 0, which names the ranks it did not hear from; the command then
 * calls MPI_Abort, which ends every rank, the hung one included. An NCCL communicator
 * bootstrapped from this one holds the same roll call after its own timeouts (roll_call). */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/status.h"
#include "dist/comm.h"

/* Tags of the point-to-point messages: the user's, the roll call's answers after a timeout, and
 * rank 0's call for them. */
enum { P2P_TAG = 1, ROLL_CALL_TAG = 2, ROLL_REQUEST_TAG = 3 };

typedef struct mpi_state {
    double timeout_s; /* the longest a call waits */
    int64_t calls;    /* calls made so far, which the roll call quotes */
} mpi_state;

static mpi_state *state(const zt_comm *c) {
    return c->impl;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nap(double seconds) {
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

static zt_status mpi_check(const zt_comm *c, int rc, const char *what) {
    if (rc == MPI_SUCCESS) return ZT_OK;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return zt_fail(ZT_ERR_IO, "rank %d of %d: %s: %s", c->rank, c->size, what, text);
}

/* How long rank 0 listens for the roll call after its own deadline. A rank that waits in any
 * call answers rank 0's request at once (answer_roll_call), one that timed out reports by
 * itself; only a rank that neither waits nor computes for this long goes unheard. */
static double roll_call_s(const zt_comm *c) {
    return state(c)->timeout_s < 2.0 ? state(c)->timeout_s : 2.0;
}

/* Rank 0 after a timeout: the ranks that report being stuck too are alive; the others are named.
 * `call` is this communicator's call count, quoted when the timeout was its own (else -1). */
static zt_status name_the_missing(const zt_comm *c, const char *what, long long call) {
    char *heard = zt_calloc((size_t)c->size, 1);
    if (!heard) return zt_fail(ZT_ERR_NOMEM, "the roll call of %d ranks", c->size);
    heard[0] = 1;
    /* every other rank is asked; the requests are never waited for (the job is ending) */
    static const int request = 1;
    for (int q = 1; q < c->size; q++) {
        MPI_Request sent;
        MPI_Isend(&request, 1, MPI_INT, q, ROLL_REQUEST_TAG, MPI_COMM_WORLD, &sent);
        MPI_Request_free(&sent);
    }
    const double until = now_s() + roll_call_s(c);
    while (now_s() < until) {
        int waiting = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, ROLL_CALL_TAG, MPI_COMM_WORLD, &waiting, &st);
        if (!waiting) {
            nap(1e-3);
            continue;
        }
        int64_t their_call = 0;
        MPI_Recv(&their_call, 1, MPI_INT64_T, st.MPI_SOURCE, ROLL_CALL_TAG, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        heard[st.MPI_SOURCE] = 1;
    }
    char names[256] = "";
    int missing = 0;
    for (int q = 1; q < c->size; q++)
        if (!heard[q]) {
            const size_t at = strlen(names);
            if (at + 16 < sizeof names)
                snprintf(names + at, sizeof names - at, "%s%d", missing ? ", " : "", q);
            missing++;
        }
    free(heard);
    char label[96] = "";
    if (call >= 0) snprintf(label, sizeof label, " (call %lld)", call);
    if (missing == 0)
        return zt_fail(ZT_ERR_IO,
                       "rank 0 of %d: %s%s did not complete within %.0f s (--comm-timeout), "
                       "though every rank reported waiting: were the ranks started with the same "
                       "options?",
                       c->size, what, label, state(c)->timeout_s);
    return zt_fail(ZT_ERR_IO,
                   "rank 0 of %d: %s%s: no word from rank%s %s within %.0f s (--comm-timeout): "
                   "%s hang%s or died",
                   c->size, what, label, missing > 1 ? "s" : "", names, state(c)->timeout_s,
                   missing > 1 ? "they" : "it", missing > 1 ? "" : "s");
}

/* A rank other than 0 after a timeout: reports to rank 0 and leaves it the time to name the
 * missing and end the job (an MPI_Abort from here would cut rank 0 short). */
static zt_status report_to_rank_0(zt_comm *c, const char *what, long long call) {
    mpi_state *t = state(c);
    MPI_Request roll;
    MPI_Isend(&t->calls, 1, MPI_INT64_T, 0, ROLL_CALL_TAG, MPI_COMM_WORLD, &roll);
    nap(2.0 * roll_call_s(c) + 1.0);
    char label[96] = "";
    if (call >= 0) snprintf(label, sizeof label, " (call %lld)", call);
    return zt_fail(ZT_ERR_IO,
                   "rank %d of %d: %s%s did not complete within %.0f s (--comm-timeout): a rank "
                   "hangs or died (rank 0 names it)",
                   c->rank, c->size, what, label, t->timeout_s);
}

static zt_status mpi_roll_call(zt_comm *c, const char *what) {
    return c->rank == 0 ? name_the_missing(c, what, -1) : report_to_rank_0(c, what, -1);
}

/* Polls `req` until it completes or --comm-timeout passes. */
/* A rank other than 0, waiting: answers rank 0's roll call if it asked, so that a rank whose own
 * wait began later than rank 0's (it was computing, or waits on another peer) is not taken for
 * a hung one. */
static void answer_roll_call(const zt_comm *c) {
    int asked = 0;
    MPI_Iprobe(0, ROLL_REQUEST_TAG, MPI_COMM_WORLD, &asked, MPI_STATUS_IGNORE);
    if (!asked) return;
    int request = 0;
    MPI_Recv(&request, 1, MPI_INT, 0, ROLL_REQUEST_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Request answer;
    MPI_Isend(&state(c)->calls, 1, MPI_INT64_T, 0, ROLL_CALL_TAG, MPI_COMM_WORLD, &answer);
    MPI_Request_free(&answer);
}

static zt_status mpi_wait(zt_comm *c, MPI_Request *req, const char *what) {
    mpi_state *t = state(c);
    t->calls++;
    const double deadline = now_s() + t->timeout_s;
    /* short naps first (a step's collective is usually answered in microseconds), then at most
     * a millisecond, which costs a waiting rank nothing that shows */
    double pause = 2e-5;
    for (;;) {
        int done = 0;
        ZT_TRY(mpi_check(c, MPI_Test(req, &done, MPI_STATUS_IGNORE), what));
        if (done) return ZT_OK;
        if (now_s() > deadline) break;
        if (c->rank != 0) answer_roll_call(c);
        nap(pause);
        pause = pause * 2 < 1e-3 ? pause * 2 : 1e-3;
    }
    return c->rank == 0 ? name_the_missing(c, what, (long long)t->calls)
                        : report_to_rank_0(c, what, (long long)t->calls);
}

static zt_status check_count(size_t bytes, const char *what) {
    if (bytes > (size_t)INT32_MAX)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s of %zu bytes: more than MPI's count", what, bytes);
    return ZT_OK;
}

/* The bytes a call hands MPI: a copy the communicator allocates per call, never the caller's
 * buffer. A call that times out leaves its request pending, and MPI may still read the send side
 * or write the receive side whenever the late rank arrives; so a timed-out call's copy is
 * abandoned (the job is ending), never freed, and the caller's buffers are free to go. */
static zt_status staged(void **out, size_t bytes, const char *what) {
    *out = malloc(bytes ? bytes : 1);
    return *out ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "%s: staging %zu bytes", what, bytes);
}

/* Waits for req; on success copies n bytes of the staging area out to `to` (when not NULL) and
 * frees it; on failure abandons it (above). */
static zt_status finish(zt_comm *c, MPI_Request *req, const char *what, void *stage,
                        const void *from, void *to, size_t n) {
    const zt_status s = mpi_wait(c, req, what);
    if (s != ZT_OK) return s;
    if (to) memcpy(to, from, n);
    free(stage);
    return ZT_OK;
}

static zt_status mpi_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    ZT_TRY(check_count(bytes, "all-gather"));
    const size_t gathered = bytes * (size_t)c->size;
    char *stage = NULL;
    ZT_TRY(staged((void **)&stage, bytes + gathered, "all-gather"));
    memcpy(stage, send, bytes);
    MPI_Request req;
    const zt_status s = mpi_check(c,
                                  MPI_Iallgather(stage, (int)bytes, MPI_BYTE, stage + bytes,
                                                 (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &req),
                                  "all-gather");
    if (s != ZT_OK) {
        free(stage);
        return s;
    }
    return finish(c, &req, "all-gather", stage, stage + bytes, recv, gathered);
}

static zt_status mpi_broadcast(zt_comm *c, void *buf, size_t bytes, int root) {
    ZT_TRY(check_count(bytes, "broadcast"));
    if (root < 0 || root >= c->size)
        return zt_fail(ZT_ERR_INVALID_ARG, "broadcast from rank %d of %d", root, c->size);
    void *stage = NULL;
    ZT_TRY(staged(&stage, bytes, "broadcast"));
    if (c->rank == root) memcpy(stage, buf, bytes);
    MPI_Request req;
    const zt_status s = mpi_check(
        c, MPI_Ibcast(stage, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD, &req), "broadcast");
    if (s != ZT_OK) {
        free(stage);
        return s;
    }
    return finish(c, &req, "broadcast", stage, stage, c->rank == root ? NULL : buf, bytes);
}

static zt_status mpi_barrier(zt_comm *c) {
    MPI_Request req;
    ZT_TRY(mpi_check(c, MPI_Ibarrier(MPI_COMM_WORLD, &req), "barrier"));
    return mpi_wait(c, &req, "barrier");
}

static zt_status check_peer(const zt_comm *c, int peer, const char *what) {
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return zt_fail(ZT_ERR_INVALID_ARG, "rank %d of %d: %s rank %d", c->rank, c->size, what,
                       peer);
    return ZT_OK;
}

static zt_status mpi_send(zt_comm *c, const void *buf, size_t bytes, int peer) {
    ZT_TRY(check_count(bytes, "send"));
    ZT_TRY(check_peer(c, peer, "send to"));
    void *stage = NULL;
    ZT_TRY(staged(&stage, bytes, "send"));
    memcpy(stage, buf, bytes);
    MPI_Request req;
    const zt_status s = mpi_check(
        c, MPI_Isend(stage, (int)bytes, MPI_BYTE, peer, P2P_TAG, MPI_COMM_WORLD, &req), "send");
    if (s != ZT_OK) {
        free(stage);
        return s;
    }
    return finish(c, &req, "send", stage, NULL, NULL, 0);
}

static zt_status mpi_recv(zt_comm *c, void *buf, size_t bytes, int peer) {
    ZT_TRY(check_count(bytes, "receive"));
    ZT_TRY(check_peer(c, peer, "receive from"));
    void *stage = NULL;
    ZT_TRY(staged(&stage, bytes, "receive"));
    MPI_Request req;
    const zt_status s = mpi_check(
        c, MPI_Irecv(stage, (int)bytes, MPI_BYTE, peer, P2P_TAG, MPI_COMM_WORLD, &req), "receive");
    if (s != ZT_OK) {
        free(stage);
        return s;
    }
    return finish(c, &req, "receive", stage, stage, buf, bytes);
}

static void mpi_abort(zt_comm *c, int code) {
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, code);
}

static void mpi_destroy(zt_comm *c) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    free(c->impl);
    free(c);
}

static const zt_comm_ops mpi_ops = {"mpi",    mpi_allgather, mpi_broadcast, mpi_barrier,  mpi_send,
                                    mpi_recv, mpi_abort,     mpi_destroy,   mpi_roll_call};

zt_status zt_comm_mpi_create(double timeout_s, zt_comm **out) {
    *out = NULL;
    if (!(timeout_s > 0)) return zt_fail(ZT_ERR_INVALID_ARG, "--comm-timeout must be positive");
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return zt_fail(ZT_ERR_UNAVAILABLE, "MPI_Init failed");
    /* errors come back as codes, so the command can name the rank and save what it holds */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    zt_comm *c = zt_calloc(1, sizeof *c);
    mpi_state *t = zt_calloc(1, sizeof *t);
    if (!c || !t) {
        free(c), free(t);
        return zt_fail(ZT_ERR_NOMEM, "allocating the communicator");
    }
    t->timeout_s = timeout_s;
    c->ops = &mpi_ops;
    c->impl = t;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    c->local_rank = zt_comm_local_rank_from_env(c->rank);
    *out = c;
    return ZT_OK;
}
