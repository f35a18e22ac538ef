/* The one-process communicator, and the choice of implementation from the launcher's
 * environment. */
#include "dist/comm.h"

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

/* One process has no other rank to stop: the command's own exit status ends the job. */
static void single_abort(zt_comm *c, int code) {
    (void)c, (void)code;
}

static void single_destroy(zt_comm *c) {
    free(c);
}

static const zt_comm_ops single_ops = {"single",       single_allgather, single_broadcast,
                                       single_barrier, single_abort,     single_destroy};

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

zt_status zt_comm_create(const char *kind, double timeout_s, zt_comm **out) {
    *out = NULL;
    if (!kind) kind = "auto";
    int want_mpi = strcmp(kind, "mpi") == 0, want_tcp = strcmp(kind, "tcp") == 0;
    if (!want_mpi && !want_tcp && strcmp(kind, "single") != 0 && strcmp(kind, "auto") != 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--comm %s: expected auto, single, mpi or tcp", kind);
    if (strcmp(kind, "auto") == 0) {
        want_mpi = zt_comm_launched_as_ranks();
        want_tcp = !want_mpi && env_int("WORLD_SIZE", 1) > 1;
    }
    if (want_tcp) return create_tcp(timeout_s, out);
    if (want_mpi) {
#if ZT_HAVE_MPI
        return zt_comm_mpi_create(out);
#else
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "started as one of several MPI ranks, but this build has no MPI "
                       "(install libopenmpi-dev and rebuild); refusing to run %d independent "
                       "copies",
                       env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", 0)));
#endif
    }
    return zt_comm_single_create(out);
}

void zt_comm_destroy(zt_comm *c) {
    if (c) c->ops->destroy(c);
}

void zt_comm_share(int n, int size, int rank, int *first, int *count) {
    const int base = n / size, extra = n % size;
    *count = base + (rank < extra);
    *first = rank * base + (rank < extra ? rank : extra);
}
