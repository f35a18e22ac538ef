/* The one-process communicator, and the choice of implementation from the launcher's
 * environment. */
#include "dist/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"

static zt_status single_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    (void)c;
    if (bytes > 0) memmove(recv, send, bytes);
    return ZT_OK;
}

static zt_status single_broadcast(zt_comm *c, void *buf, size_t bytes, int root) {
    (void)c, (void)buf, (void)bytes;
    if (root != 0) return zt_fail(ZT_ERR_INVALID_ARG, "broadcast from rank %d of 1", root);
    return ZT_OK;
}

static zt_status single_barrier(zt_comm *c) {
    (void)c;
    return ZT_OK;
}

static zt_status single_point_to_point(zt_comm *c, const void *buf, size_t bytes, int peer) {
    (void)c, (void)buf;
    return zt_fail(ZT_ERR_INVALID_ARG,
                   "point-to-point message of %zu bytes with rank %d: one process has no other "
                   "rank",
                   bytes, peer);
}

static zt_status single_send(zt_comm *c, const void *buf, size_t bytes, int peer) {
    return single_point_to_point(c, buf, bytes, peer);
}

static zt_status single_recv(zt_comm *c, void *buf, size_t bytes, int peer) {
    return single_point_to_point(c, buf, bytes, peer);
}

/* One process has no other rank to stop: the command's own exit status ends the job. */
static void single_abort(zt_comm *c, int code) {
    (void)c, (void)code;
}

static void single_destroy(zt_comm *c) {
    free(c);
}

static const zt_comm_ops single_ops = {"single",       single_allgather, single_broadcast,
                                       single_barrier, single_send,      single_recv,
                                       single_abort,   single_destroy,   NULL};

zt_status zt_comm_single_create(zt_comm **out) {
    zt_comm *c = zt_calloc(1, sizeof *c);
    if (!c) return zt_fail(ZT_ERR_NOMEM, "allocating the communicator");
    c->ops = &single_ops;
    c->size = 1;
    *out = c;
    return ZT_OK;
}

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end = NULL;
    long x = strtol(v, &end, 10);
    return *end == '\0' ? (int)x : fallback;
}

int zt_comm_launched_as_ranks(void) {
    return env_int("OMPI_COMM_WORLD_SIZE", 1) > 1 || env_int("PMI_SIZE", 1) > 1 ||
           env_int("PMIX_SIZE", 1) > 1 || getenv("PMIX_RANK") != NULL;
}

int zt_comm_local_rank_from_env(int fallback) {
    const char *names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                           "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (getenv(names[i]) && *getenv(names[i])) return env_int(names[i], fallback);
    return fallback;
}

/* A torchrun-style environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (LOCAL_RANK). */
static zt_status create_tcp(double timeout_s, zt_comm **out) {
    const char *names[] = {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
    for (int i = 0; i < 4; i++)
        if (!getenv(names[i]) || !*getenv(names[i]))
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--comm tcp: %s is not set (a torchrun-style launch sets RANK, "
                           "WORLD_SIZE, MASTER_ADDR and MASTER_PORT)",
                           names[i]);
    const int rank = env_int("RANK", -1);
    return zt_comm_tcp_create(rank, env_int("WORLD_SIZE", 0), env_int("LOCAL_RANK", rank),
                              getenv("MASTER_ADDR"), env_int("MASTER_PORT", 0), timeout_s, out);
}

/* The host communicator the launcher's environment asks for (auto), or the one named. */
static zt_status create_host(int want_mpi, int want_tcp, double timeout_s, zt_comm **out) {
    if (want_tcp) return create_tcp(timeout_s, out);
    if (want_mpi) {
#if ZT_HAVE_MPI
        return zt_comm_mpi_create(timeout_s, out);
#else
        (void)timeout_s;
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "started as one of several MPI ranks, but this build has no MPI "
                       "(install libopenmpi-dev and rebuild); refusing to run %d independent "
                       "copies",
                       env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", 0)));
#endif
    }
    return zt_comm_single_create(out);
}

zt_status zt_comm_create(const char *kind, int device_is_cuda, double timeout_s, zt_comm **out) {
    *out = NULL;
    if (!kind) kind = "auto";
    const int is_auto = strcmp(kind, "auto") == 0;
    int want_mpi = strcmp(kind, "mpi") == 0, want_tcp = strcmp(kind, "tcp") == 0;
    int want_nccl = strcmp(kind, "nccl") == 0;
    if (!want_mpi && !want_tcp && !want_nccl && !is_auto && strcmp(kind, "single") != 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--comm %s: expected auto, single, mpi, tcp or nccl",
                       kind);
    if (!(timeout_s > 0)) return zt_fail(ZT_ERR_INVALID_ARG, "--comm-timeout must be positive");
    if (is_auto || want_nccl) {
        /* NCCL bootstraps over whatever the launcher set up */
        want_mpi = zt_comm_launched_as_ranks();
        want_tcp = !want_mpi && env_int("WORLD_SIZE", 1) > 1;
        if (is_auto) want_nccl = device_is_cuda && (want_mpi || want_tcp);
    }
    zt_comm *host = NULL;
    ZT_TRY(create_host(want_mpi, want_tcp, timeout_s, &host));
    if (!want_nccl) {
        *out = host;
        return ZT_OK;
    }
#if ZT_HAVE_NCCL
    const zt_status s = zt_comm_nccl_create(host, timeout_s, out);
    /* An MPI rank that failed to join leaves MPI initialised: it exits without MPI_Finalize,
     * which makes mpirun end every rank, where MPI_Finalize would wait for the others, which
     * wait for it. */
    if (s != ZT_OK && strcmp(host->ops->name, "mpi") != 0) zt_comm_destroy(host);
    return s;
#else
    zt_comm_destroy(host);
    return zt_fail(ZT_ERR_UNAVAILABLE, "--comm nccl: this build has no NCCL (a CUDA build finds "
                                       "it in the toolkit)");
#endif
}

void zt_comm_destroy(zt_comm *c) {
    if (c) c->ops->destroy(c);
}

void zt_comm_share(int n, int size, int rank, int *first, int *count) {
    const int base = n / size, extra = n % size;
    *count = base + (rank < extra);
    *first = rank * base + (rank < extra ? rank : extra);
}

/* A successful call of `kind` that sent and received these payload bytes. */
static void count_call(zt_comm *c, zt_comm_op_kind kind, uint64_t sent, uint64_t received) {
    zt_comm_op_count *n = &c->traffic.op[kind];
    n->calls++;
    n->sent += sent;
    n->received += received;
}

zt_status zt_comm_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    ZT_TRY(c->ops->allgather(c, send, bytes, recv));
    const uint64_t others = c->size > 1 ? (uint64_t)c->size - 1 : 0;
    count_call(c, ZT_COMM_ALLGATHER, others > 0 ? bytes : 0, others * bytes);
    return ZT_OK;
}

zt_status zt_comm_broadcast(zt_comm *c, void *buf, size_t bytes, int root) {
    ZT_TRY(c->ops->broadcast(c, buf, bytes, root));
    const uint64_t carried = c->size > 1 ? bytes : 0;
    count_call(c, ZT_COMM_BROADCAST, c->rank == root ? carried : 0, c->rank == root ? 0 : carried);
    return ZT_OK;
}

zt_status zt_comm_barrier(zt_comm *c) {
    ZT_TRY(c->ops->barrier(c));
    count_call(c, ZT_COMM_BARRIER, 0, 0);
    return ZT_OK;
}

zt_status zt_comm_send(zt_comm *c, const void *buf, size_t bytes, int peer) {
    ZT_TRY(c->ops->send(c, buf, bytes, peer));
    count_call(c, ZT_COMM_SEND, bytes, 0);
    return ZT_OK;
}

zt_status zt_comm_recv(zt_comm *c, void *buf, size_t bytes, int peer) {
    ZT_TRY(c->ops->recv(c, buf, bytes, peer));
    count_call(c, ZT_COMM_RECV, 0, bytes);
    return ZT_OK;
}

uint64_t zt_comm_traffic_sent(const zt_comm_traffic *t) {
    uint64_t sum = 0;
    for (int k = 0; k < ZT_COMM_OP_KINDS; k++)
        sum += t->op[k].sent;
    return sum;
}

uint64_t zt_comm_traffic_received(const zt_comm_traffic *t) {
    uint64_t sum = 0;
    for (int k = 0; k < ZT_COMM_OP_KINDS; k++)
        sum += t->op[k].received;
    return sum;
}

const char *zt_comm_op_name(zt_comm_op_kind kind) {
    static const char *names[ZT_COMM_OP_KINDS] = {"allgather", "broadcast", "send", "recv",
                                                  "barrier"};
    return kind >= 0 && kind < ZT_COMM_OP_KINDS ? names[kind] : "?";
}

/* Appends text to buf at *used, keeping it NUL-terminated: what does not fit is cut. */
static void append(char *buf, size_t size, size_t *used, const char *text) {
    size_t n = strlen(text);
    if (n > size - 1 - *used) n = size - 1 - *used;
    memcpy(buf + *used, text, n);
    *used += n;
    buf[*used] = '\0';
}

void zt_comm_traffic_format(const zt_comm_traffic *t, char *buf, size_t size) {
    if (size == 0) return;
    buf[0] = '\0';
    size_t used = 0;
    char piece[160];
    snprintf(piece, sizeof piece, "sent %llu bytes, received %llu bytes",
             (unsigned long long)zt_comm_traffic_sent(t),
             (unsigned long long)zt_comm_traffic_received(t));
    append(buf, size, &used, piece);
    for (int k = 0; k < ZT_COMM_OP_KINDS; k++) {
        const zt_comm_op_count *n = &t->op[k];
        snprintf(piece, sizeof piece, "; %s %llu calls (sent %llu, received %llu)",
                 zt_comm_op_name((zt_comm_op_kind)k), (unsigned long long)n->calls,
                 (unsigned long long)n->sent, (unsigned long long)n->received);
        append(buf, size, &used, piece);
    }
}
