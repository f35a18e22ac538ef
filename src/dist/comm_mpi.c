/* The MPI communicator: CPU ranks started by mpirun or srun. Initialised once per process; a
 * collective that fails returns its MPI error string with the rank. */
#include <mpi.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/status.h"
#include "dist/comm.h"

static zt_status mpi_check(const zt_comm *c, int rc, const char *what) {
    if (rc == MPI_SUCCESS) return ZT_OK;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return zt_fail(ZT_ERR_IO, "rank %d of %d: %s: %s", c->rank, c->size, what, text);
}

static zt_status mpi_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    if (bytes > (size_t)INT32_MAX)
        return zt_fail(ZT_ERR_INVALID_ARG, "allgather of %zu bytes per rank", bytes);
    return mpi_check(
        c, MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD),
        "all-gather");
}

static zt_status mpi_broadcast(zt_comm *c, void *buf, size_t bytes, int root) {
    if (bytes > (size_t)INT32_MAX)
        return zt_fail(ZT_ERR_INVALID_ARG, "broadcast of %zu bytes", bytes);
    return mpi_check(c, MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
}

static zt_status mpi_barrier(zt_comm *c) {
    return mpi_check(c, MPI_Barrier(MPI_COMM_WORLD), "barrier");
}

static void mpi_abort(zt_comm *c, int code) {
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, code);
}

static void mpi_destroy(zt_comm *c) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    free(c);
}

static const zt_comm_ops mpi_ops = {"mpi",       mpi_allgather, mpi_broadcast,
                                    mpi_barrier, mpi_abort,     mpi_destroy};

static int local_rank_from_env(int rank) {
    const char *names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                           "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) return atoi(v);
    }
    return rank;
}

zt_status zt_comm_mpi_create(zt_comm **out) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return zt_fail(ZT_ERR_UNAVAILABLE, "MPI_Init failed");
    /* errors come back as codes, so the command can name the rank and save what it holds */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    zt_comm *c = zt_calloc(1, sizeof *c);
    if (!c) return zt_fail(ZT_ERR_NOMEM, "allocating the communicator");
    c->ops = &mpi_ops;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    c->local_rank = local_rank_from_env(c->rank);
    *out = c;
    return ZT_OK;
}
