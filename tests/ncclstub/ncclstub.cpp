/* The NCCL stand-in over MPI (ncclstub.h). A communicator is a duplicate of MPI_COMM_WORLD; each
 * operation is posted as a nonblocking MPI call on the "device" buffers (host memory under the
 * executor) and stays in flight, attached to its stream, until ncclstub_cudaStreamQuery sees it
 * complete: a peer that never posts its part keeps the stream "not ready", as a GPU kernel
 * waiting for it would. Sends are synchronous (MPI_Issend), as NCCL's are: a send completes once
 * the receiver has posted the receive, so two ranks that both send first hang here as they would
 * on GPUs. Operands must be device memory, which the executor checks. */
#include "cudaemu.h"

#include "ncclstub.h"

#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <vector>

struct ncclComm {
    MPI_Comm mpi;
    int rank, size;
    int init_polls;                     /* queries that still answer ncclInProgress */
    ncclResult_t async;                 /* what ncclCommGetAsyncError reports */
    std::vector<MPI_Request> in_flight; /* posted, not yet seen complete */
    std::vector<cudaStream_t> streams;  /* each one's stream */
};

namespace {

std::vector<ncclComm *> live;       /* communicators not destroyed or aborted */
std::vector<MPI_Request> orphans;   /* what aborted communicators left in flight */
std::vector<MPI_Comm> orphan_comms; /* their MPI communicators, freed after a drain */
long operations = 0, fail_at = -1;
ncclResult_t fail_with = ncclSuccess;

size_t type_size(ncclDataType_t t) {
    switch (t) {
    case ncclInt8:
    case ncclUint8:
        return 1;
    case ncclFloat16:
    case ncclBfloat16:
        return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
        return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
        return 8;
    default:
        return 0;
    }
}

/* Operands: device memory of the executor, as on a GPU (a host pointer there is a fault). */
bool on_device(const void *p, size_t bytes, const char *what) {
    if (bytes == 0) return true;
    const std::string outside = cudaemu::outside_device(p, bytes);
    if (outside.empty()) return true;
    fprintf(stderr, "ncclstub: %s: %zu bytes at %p: %s\n", what, bytes, p, outside.c_str());
    return false;
}

ncclResult_t enqueue(ncclComm *comm, cudaStream_t stream, MPI_Request req) {
    comm->in_flight.push_back(req);
    comm->streams.push_back(stream);
    if (fail_at >= 0 && operations == fail_at) comm->async = fail_with;
    operations++;
    return ncclSuccess;
}

ncclResult_t check_comm(ncclComm *comm) {
    for (ncclComm *c : live)
        if (c == comm) return ncclSuccess;
    fprintf(stderr, "ncclstub: communicator %p is not live (destroyed or aborted)\n", (void *)comm);
    return ncclInvalidArgument;
}

} // namespace

extern "C" {

void ncclstub_inject_async_error(int after, ncclResult_t error) {
    fail_at = operations + after;
    fail_with = error;
}

long ncclstub_operations(void) {
    return operations;
}

void ncclstub_drain(void) {
    MPI_Waitall((int)orphans.size(), orphans.data(), MPI_STATUSES_IGNORE);
    orphans.clear();
    for (MPI_Comm &m : orphan_comms)
        MPI_Comm_free(&m);
    orphan_comms.clear();
}

ncclResult_t ncclstub_ncclGetUniqueId(ncclUniqueId *id) {
    if (id == nullptr) return ncclInvalidArgument;
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "ncclstub pid %ld", (long)getpid());
    return ncclSuccess;
}

/* Every rank must hold rank 0's id (the bootstrap's broadcast delivered it) and name its MPI
 * rank and size. */
ncclResult_t ncclstub_ncclCommInitRankConfig(ncclComm_t *out, int nranks, ncclUniqueId id, int rank,
                                             ncclConfig_t *config) {
    int world_rank = -1, world_size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (out == nullptr || rank != world_rank || nranks != world_size) {
        fprintf(stderr, "ncclstub: rank %d of %d asked for rank %d of %d\n", world_rank, world_size,
                rank, nranks);
        return ncclInvalidArgument;
    }
    ncclUniqueId root = id;
    MPI_Bcast(&root, sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (memcmp(&root, &id, sizeof id) != 0 || strncmp(id.internal, "ncclstub", 8) != 0) {
        fprintf(stderr, "ncclstub: rank %d holds another unique id than rank 0's\n", rank);
        return ncclInvalidUsage;
    }
    ncclComm *comm = new ncclComm();
    MPI_Comm_dup(MPI_COMM_WORLD, &comm->mpi);
    comm->rank = rank;
    comm->size = nranks;
    comm->async = ncclSuccess;
    /* a nonblocking communicator is "in progress" for a poll, as NCCL's usually is */
    comm->init_polls = config != nullptr && config->blocking == 0 ? 1 : 0;
    live.push_back(comm);
    *out = comm;
    return comm->init_polls ? ncclInProgress : ncclSuccess;
}

ncclResult_t ncclstub_ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async) {
    if (check_comm(comm) != ncclSuccess || async == nullptr) return ncclInvalidArgument;
    if (comm->init_polls > 0) {
        comm->init_polls--;
        *async = ncclInProgress;
        return ncclSuccess;
    }
    *async = comm->async;
    return ncclSuccess;
}

cudaError_t ncclstub_cudaStreamQuery(cudaStream_t stream) {
    for (ncclComm *comm : live)
        for (size_t i = 0; i < comm->in_flight.size();) {
            if (comm->streams[i] != stream) {
                i++;
                continue;
            }
            int done = 0;
            MPI_Test(&comm->in_flight[i], &done, MPI_STATUS_IGNORE);
            if (!done) return cudaErrorNotReady;
            comm->in_flight.erase(comm->in_flight.begin() + (long)i);
            comm->streams.erase(comm->streams.begin() + (long)i);
        }
    return cudaemu_cudaStreamSynchronize(stream);
}

/* In flight operations wait for the late ranks' parts in ncclstub_drain. */
ncclResult_t ncclstub_ncclCommAbort(ncclComm_t comm) {
    if (check_comm(comm) != ncclSuccess) return ncclInvalidArgument;
    for (size_t i = 0; i < live.size(); i++)
        if (live[i] == comm) live.erase(live.begin() + (long)i);
    orphans.insert(orphans.end(), comm->in_flight.begin(), comm->in_flight.end());
    orphan_comms.push_back(comm->mpi);
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclstub_ncclCommDestroy(ncclComm_t comm) {
    if (check_comm(comm) != ncclSuccess) return ncclInvalidArgument;
    if (!comm->in_flight.empty()) {
        fprintf(stderr, "ncclstub: destroying a communicator with %zu operations in flight\n",
                comm->in_flight.size());
        return ncclInvalidUsage;
    }
    for (size_t i = 0; i < live.size(); i++)
        if (live[i] == comm) live.erase(live.begin() + (long)i);
    MPI_Comm_free(&comm->mpi);
    delete comm;
    return ncclSuccess;
}

const char *ncclstub_ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess:
        return "no error";
    case ncclUnhandledCudaError:
        return "unhandled cuda error (ncclstub)";
    case ncclSystemError:
        return "unhandled system error (ncclstub)";
    case ncclInternalError:
        return "internal error (ncclstub)";
    case ncclInvalidArgument:
        return "invalid argument (ncclstub)";
    case ncclInvalidUsage:
        return "invalid usage (ncclstub)";
    case ncclRemoteError:
        return "remote process exited or there was a network error (ncclstub)";
    case ncclInProgress:
        return "NCCL operation in progress (ncclstub)";
    default:
        return "unknown result code (ncclstub)";
    }
}

ncclResult_t ncclstub_ncclAllGather(const void *send, void *recv, size_t count, ncclDataType_t type,
                                    ncclComm_t comm, cudaStream_t stream) {
    const size_t bytes = count * type_size(type);
    if (check_comm(comm) != ncclSuccess || type_size(type) == 0 || bytes > INT32_MAX ||
        !on_device(send, bytes, "ncclAllGather send") ||
        !on_device(recv, bytes * (size_t)comm->size, "ncclAllGather receive"))
        return ncclInvalidArgument;
    char *slot = (char *)recv + (size_t)comm->rank * bytes;
    const char *from = (const char *)send, *all = (const char *)recv;
    /* in place is the send buffer at this rank's slot; any other overlap is undefined in NCCL
     * (and MPI would take send == recv for in place, hiding a wrong offset) */
    if (from != slot && from < all + bytes * (size_t)comm->size && all < from + bytes) {
        fprintf(stderr, "ncclstub: ncclAllGather: the send buffer overlaps the receive buffer "
                        "but is not this rank's slot (in place)\n");
        return ncclInvalidArgument;
    }
    if (from != slot) memcpy(slot, send, bytes);
    MPI_Request req;
    MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, (int)bytes, MPI_BYTE, comm->mpi, &req);
    return enqueue(comm, stream, req);
}

ncclResult_t ncclstub_ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type,
                                    int root, ncclComm_t comm, cudaStream_t stream) {
    const size_t bytes = count * type_size(type);
    if (check_comm(comm) != ncclSuccess || type_size(type) == 0 || bytes > INT32_MAX || root < 0 ||
        root >= comm->size ||
        (comm->rank == root && !on_device(send, bytes, "ncclBroadcast send")) ||
        !on_device(recv, bytes, "ncclBroadcast receive"))
        return ncclInvalidArgument;
    if (comm->rank == root && send != recv) memmove(recv, send, bytes);
    MPI_Request req;
    MPI_Ibcast(recv, (int)bytes, MPI_BYTE, root, comm->mpi, &req);
    return enqueue(comm, stream, req);
}

ncclResult_t ncclstub_ncclSend(const void *send, size_t count, ncclDataType_t type, int peer,
                               ncclComm_t comm, cudaStream_t stream) {
    const size_t bytes = count * type_size(type);
    if (check_comm(comm) != ncclSuccess || type_size(type) == 0 || bytes > INT32_MAX || peer < 0 ||
        peer >= comm->size || !on_device(send, bytes, "ncclSend"))
        return ncclInvalidArgument;
    MPI_Request req;
    MPI_Issend(send, (int)bytes, MPI_BYTE, peer, 0, comm->mpi, &req);
    return enqueue(comm, stream, req);
}

ncclResult_t ncclstub_ncclRecv(void *recv, size_t count, ncclDataType_t type, int peer,
                               ncclComm_t comm, cudaStream_t stream) {
    const size_t bytes = count * type_size(type);
    if (check_comm(comm) != ncclSuccess || type_size(type) == 0 || bytes > INT32_MAX || peer < 0 ||
        peer >= comm->size || !on_device(recv, bytes, "ncclRecv"))
        return ncclInvalidArgument;
    MPI_Request req;
    MPI_Irecv(recv, (int)bytes, MPI_BYTE, peer, 0, comm->mpi, &req);
    return enqueue(comm, stream, req);
}

/* Every operation is posted nonblocking at once, so a group needs no fusing here. */
ncclResult_t ncclstub_ncclGroupStart(void) {
    return ncclSuccess;
}

ncclResult_t ncclstub_ncclGroupEnd(void) {
    return ncclSuccess;
}

} // extern "C"
