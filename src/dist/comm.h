/* The communicator of a multi-process run (docs/distributed.md): who this process is among the
 * job's ranks, and the few collectives a ZO step needs. Seeds are shared, so ranks exchange only
 * per-step scalars (loss sums and counts), never weights or z. Implementations: one process
 * (comm.c), MPI for ranks started by mpirun or srun (comm_mpi.c), and TCP for ranks started by
 * a torchrun-style launcher (comm_tcp.c). */
#ifndef ZT_DIST_COMM_H
#define ZT_DIST_COMM_H

#include <stddef.h>

#include "zotune.h"
#include "zt_config.h"

typedef struct zt_comm zt_comm;

typedef struct zt_comm_ops {
    const char *name; /* "single", "mpi" */
    /* recv (size * bytes) = every rank's send (bytes), in rank order */
    zt_status (*allgather)(zt_comm *c, const void *send, size_t bytes, void *recv);
    /* buf (bytes) of rank `root` to every rank */
    zt_status (*broadcast)(zt_comm *c, void *buf, size_t bytes, int root);
    zt_status (*barrier)(zt_comm *c);
    /* ends every rank of the job with `code`: for the command after a fatal error, never the
     * library (it returns statuses) */
    void (*abort)(zt_comm *c, int code);
    void (*destroy)(zt_comm *c);
} zt_comm_ops;

struct zt_comm {
    const zt_comm_ops *ops;
    int rank, size, local_rank;
    void *impl;
};

/* kind "auto": MPI when the process was started by a launcher that sets up MPI ranks (mpirun:
 * OMPI_COMM_WORLD_SIZE; Slurm/MPICH: PMI_SIZE/PMIX_RANK) and this build has MPI; TCP when a
 * torchrun-style environment says WORLD_SIZE > 1 (with RANK, MASTER_ADDR, MASTER_PORT); else
 * one process. "single", "mpi" and "tcp" force one. A launcher that asks for ranks this build
 * cannot serve (mpirun without MPI compiled in) is an error, not a silent job of N independent
 * copies. timeout_s: the longest a rank waits for a peer (TCP; MPI has no such bound). */
zt_status zt_comm_create(const char *kind, double timeout_s, zt_comm **out);
void zt_comm_destroy(zt_comm *c);

/* The one-process communicator (kind "single"). */
zt_status zt_comm_single_create(zt_comm **out);
/* The TCP star around rank 0 at host:port (kind "tcp"); returns once every rank has joined. */
zt_status zt_comm_tcp_create(int rank, int size, int local_rank, const char *host, int port,
                             double timeout_s, zt_comm **out);
#if ZT_HAVE_MPI
zt_status zt_comm_mpi_create(zt_comm **out);
#endif

/* A share of n items over the ranks, in rank order, differing by at most one (16 over 3 ranks:
 * 6, 5, 5): rank's first item and count. */
void zt_comm_share(int n, int size, int rank, int *first, int *count);

/* Whether the launcher's environment says this process is one of several ranks. */
int zt_comm_launched_as_ranks(void);

#endif
