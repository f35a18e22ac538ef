/* The communicator of a multi-process run (docs/distributed.md): who this process is among the
 * job's ranks, and the few collectives a ZO step needs. Seeds are shared, so ranks exchange only
 * per-step scalars (loss sums and counts), never weights or z. Implementations: one process
 * (comm.c), MPI for ranks started by mpirun or srun (comm_mpi.c), TCP for ranks started by a
 * torchrun-style launcher (comm_tcp.c), and NCCL for GPU ranks (comm_nccl.c). Every wait is
 * bounded by the communicator's timeout (--comm-timeout): past it the call fails naming the
 * operation, and the rank(s) not heard from where the implementation can tell. */
#ifndef ZT_DIST_COMM_H
#define ZT_DIST_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "zotune.h"
#include "zt_config.h"

typedef struct zt_comm zt_comm;

/* The kinds of call a communicator counts (zt_comm_traffic). */
typedef enum zt_comm_op_kind {
    ZT_COMM_ALLGATHER,
    ZT_COMM_BROADCAST,
    ZT_COMM_SEND,
    ZT_COMM_RECV,
    ZT_COMM_BARRIER,
    ZT_COMM_OP_KINDS
} zt_comm_op_kind;

/* Payload bytes one rank's calls of one kind carried, as docs/distributed.md ("What a rank
 * sends, counted") defines them: what the caller hands over and gets back, whatever route the
 * implementation takes (TCP relays collectives through rank 0, NCCL through rings). Per call of
 * b bytes over P ranks: all-gather sends b and receives (P - 1) * b; a broadcast's root sends b
 * and every other rank receives b; send sends b, recv receives b; a barrier carries none. One
 * process (P = 1) sends and receives nothing. Only calls that succeeded count. */
typedef struct zt_comm_op_count {
    uint64_t calls, sent, received;
} zt_comm_op_count;

typedef struct zt_comm_traffic {
    zt_comm_op_count op[ZT_COMM_OP_KINDS];
} zt_comm_traffic;

typedef struct zt_comm_ops {
    const char *name; /* "single", "mpi", "tcp", "nccl" */
    /* recv (size * bytes) = every rank's send (bytes), in rank order */
    zt_status (*allgather)(zt_comm *c, const void *send, size_t bytes, void *recv);
    /* buf (bytes) of rank `root` to every rank */
    zt_status (*broadcast)(zt_comm *c, void *buf, size_t bytes, int root);
    zt_status (*barrier)(zt_comm *c);
    /* Point to point (a pipeline's activations): `bytes` at buf to rank `peer`, and from it; the
     * two sides name each other and agree on the length. buf is device memory for NCCL (ready:
     * the stream that wrote it synchronised), host memory for the CPU kinds. Messages between
     * two ranks arrive in the order they were sent. */
    zt_status (*send)(zt_comm *c, const void *buf, size_t bytes, int peer);
    zt_status (*recv)(zt_comm *c, void *buf, size_t bytes, int peer);
    /* ends every rank of the job with `code`: for the command after a fatal error, never the
     * library (it returns statuses) */
    void (*abort)(zt_comm *c, int code);
    void (*destroy)(zt_comm *c);
    /* After `what` timed out on this rank in a communicator bootstrapped from this one (NCCL,
     * which cannot say which peer kept it waiting): every rank that timed out reports to rank 0,
     * whose call fails naming the ranks it did not hear from; the others' calls fail saying that
     * rank 0 names them. NULL where the kind has no roll call (single, TCP). */
    zt_status (*roll_call)(zt_comm *c, const char *what);
} zt_comm_ops;

struct zt_comm {
    const zt_comm_ops *ops;
    int rank, size, local_rank;
    /* NCCL: the GPU this rank drives (its local rank modulo n_devices, the GPUs it sees); the
     * host kinds leave n_devices 0 */
    int device, n_devices;
    void *impl;
    /* what this rank's calls through zt_comm_allgather ... zt_comm_barrier carried since the
     * communicator was made (a direct ops call is not counted) */
    zt_comm_traffic traffic;
};

/* The calls every caller makes: each checks nothing more than the implementation does, calls it,
 * and counts what a successful call carried in c->traffic, so every kind (and the pipeline's
 * replica view, which counts its own calls while the world counts the world's) counts alike. */
zt_status zt_comm_allgather(zt_comm *c, const void *send, size_t bytes, void *recv);
zt_status zt_comm_broadcast(zt_comm *c, void *buf, size_t bytes, int root);
zt_status zt_comm_barrier(zt_comm *c);
zt_status zt_comm_send(zt_comm *c, const void *buf, size_t bytes, int peer);
zt_status zt_comm_recv(zt_comm *c, void *buf, size_t bytes, int peer);

/* Sums over the kinds; the name of a kind ("allgather", "broadcast", "send", "recv",
 * "barrier"). */
uint64_t zt_comm_traffic_sent(const zt_comm_traffic *t);
uint64_t zt_comm_traffic_received(const zt_comm_traffic *t);
const char *zt_comm_op_name(zt_comm_op_kind kind);
/* One line (no newline) of t: totals, then each kind's calls, sent and received. */
void zt_comm_traffic_format(const zt_comm_traffic *t, char *buf, size_t size);

/* kind "auto": NCCL when the run's device is a CUDA GPU (device_is_cuda) and there are several
 * ranks, bootstrapped over MPI or TCP as below; else MPI when the process was started by a launcher
 * that sets up MPI ranks (mpirun: OMPI_COMM_WORLD_SIZE; Slurm/MPICH: PMI_SIZE/PMIX_RANK) and this
 * build has MPI; TCP when a torchrun-style environment says WORLD_SIZE > 1 (with RANK, MASTER_ADDR,
 * MASTER_PORT); else one process. "single", "mpi", "tcp" and "nccl" force one. A launcher that asks
 * for ranks this build cannot serve (mpirun without MPI compiled in) is an error, not a silent job
 * of N independent copies. timeout_s: the longest a rank waits for a peer in any call. */
zt_status zt_comm_create(const char *kind, int device_is_cuda, double timeout_s, zt_comm **out);
void zt_comm_destroy(zt_comm *c);

/* The one-process communicator (kind "single"). */
zt_status zt_comm_single_create(zt_comm **out);
/* The TCP star around rank 0 at host:port (kind "tcp"); returns once every rank has joined. */
zt_status zt_comm_tcp_create(int rank, int size, int local_rank, const char *host, int port,
                             double timeout_s, zt_comm **out);
#if ZT_HAVE_MPI
zt_status zt_comm_mpi_create(double timeout_s, zt_comm **out);
#endif
/* NCCL over the GPU of the local rank (modulo the visible devices), its ncclUniqueId broadcast
 * from rank 0 over `bootstrap` (MPI or TCP), which the NCCL communicator then owns; on failure
 * the caller still does. */
zt_status zt_comm_nccl_create(zt_comm *bootstrap, double timeout_s, zt_comm **out);

/* The launcher's local rank: OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID or
 * LOCAL_RANK, else `fallback`. */
int zt_comm_local_rank_from_env(int fallback);

/* A share of n items over the ranks, in rank order, differing by at most one (16 over 3 ranks:
 * 6, 5, 5): rank's first item and count. */
void zt_comm_share(int n, int size, int rank, int *first, int *count);

/* Whether the launcher's environment says this process is one of several ranks. */
int zt_comm_launched_as_ranks(void);

#endif
