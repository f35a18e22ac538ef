/* The NCCL communicator: GPU ranks, one GPU each (the local rank's, modulo the devices this
 * process sees). The ncclUniqueId travels from rank 0 over the bootstrap communicator the
 * launcher set up (MPI under mpirun/srun, TCP in a torchrun-style environment), which this one
 * then owns.
 *
 * The communicator is nonblocking (ncclConfig_t.blocking = 0), so no NCCL call can hold the host:
 * every call is enqueued on the communicator's own stream, then waited for by polling the stream
 * and ncclCommGetAsyncError against the deadline of --comm-timeout. An asynchronous error, or
 * the deadline, aborts the communicator (ncclCommAbort, which frees the GPU from the kernels
 * waiting for a peer) and fails the call naming the operation. NCCL does not say which peer
 * kept it waiting, so after a timeout the ranks hold the bootstrap's roll call (MPI's; TCP has
 * none), and rank 0's error names the ranks that did not answer.
 *
 * The collectives move host bytes (a step's few scalars) through a small device buffer; send and
 * receive move device memory directly. tests/ncclstub builds this same file against a stand-in
 * for NCCL over MPI and the host executor's runtime (docs/distributed.md). */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/status.h"
#include "dist/comm.h"

typedef struct nccl_state {
    ncclComm_t comm;
    cudaStream_t stream;
    zt_comm *bootstrap; /* MPI or TCP: the unique id's broadcast, and abort's reach */
    void *staging;      /* (staging_bytes) device bytes of the collectives */
    size_t staging_bytes;
    double timeout_s;
    int aborted; /* after a failure: every later call fails at once */
} nccl_state;

static nccl_state *state(const zt_comm *c) {
    return c->impl;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nap(double seconds) {
    struct timespec ts = {0, (long)(seconds * 1e9)};
    nanosleep(&ts, NULL);
}

static zt_status cuda_check(const zt_comm *c, cudaError_t rc, const char *what) {
    if (rc == cudaSuccess) return ZT_OK;
    char gpu[24] = "";
    if (c->device >= 0) snprintf(gpu, sizeof gpu, ", cuda:%d", c->device);
    return zt_fail(ZT_ERR_CUDA, "rank %d of %d (nccl%s): %s: %s", c->rank, c->size, gpu, what,
                   cudaGetErrorString(rc));
}

static void abort_comm(zt_comm *c) {
    nccl_state *t = state(c);
    if (!t->aborted) ncclCommAbort(t->comm);
    t->aborted = 1;
}

/* A failed call leaves the communicator unusable: it is aborted at once. */
static zt_status nccl_check(zt_comm *c, ncclResult_t rc, const char *what) {
    if (rc == ncclSuccess || rc == ncclInProgress) return ZT_OK;
    abort_comm(c);
    return zt_fail(ZT_ERR_CUDA, "rank %d of %d (nccl): %s: %s", c->rank, c->size, what,
                   ncclGetErrorString(rc));
}

static zt_status usable(const zt_comm *c, const char *what) {
    if (state(c)->aborted)
        return zt_fail(ZT_ERR_IO, "rank %d of %d (nccl): %s after the communicator was aborted",
                       c->rank, c->size, what);
    return ZT_OK;
}

/* Until the communicator says its calls are enqueued and the stream has run them, an
 * asynchronous error is reported, or --comm-timeout passes. */
static zt_status nccl_wait(zt_comm *c, const char *what) {
    nccl_state *t = state(c);
    const double deadline = now_s() + t->timeout_s;
    double pause = 2e-5;
    for (;;) {
        ncclResult_t async = ncclSuccess;
        ZT_TRY(nccl_check(c, ncclCommGetAsyncError(t->comm, &async), what));
        if (async != ncclSuccess && async != ncclInProgress) {
            abort_comm(c);
            return zt_fail(ZT_ERR_IO,
                           "rank %d of %d (nccl): %s: asynchronous error: %s (a peer failed or "
                           "the network did)",
                           c->rank, c->size, what, ncclGetErrorString(async));
        }
        if (async == ncclSuccess) {
            const cudaError_t q = cudaStreamQuery(t->stream);
            if (q == cudaSuccess) return ZT_OK;
            if (q != cudaErrorNotReady) {
                abort_comm(c);
                return cuda_check(c, q, what);
            }
        }
        if (now_s() > deadline) break;
        nap(pause);
        pause = pause * 2 < 1e-3 ? pause * 2 : 1e-3;
    }
    abort_comm(c);
    /* NCCL cannot say which peer kept the call waiting; the bootstrap's roll call can */
    const zt_comm *boot = t->bootstrap;
    if (boot && boot->ops->roll_call) {
        char label[160];
        snprintf(label, sizeof label, "the NCCL %s", what);
        return boot->ops->roll_call(t->bootstrap, label);
    }
    return zt_fail(ZT_ERR_IO,
                   "rank %d of %d (nccl): %s did not complete within %.0f s (--comm-timeout): a "
                   "rank hangs or died; the communicator is aborted",
                   c->rank, c->size, what, t->timeout_s);
}

static zt_status reserve_staging(zt_comm *c, size_t bytes) {
    nccl_state *t = state(c);
    if (bytes <= t->staging_bytes) return ZT_OK;
    if (t->staging) cudaFree(t->staging);
    t->staging = NULL;
    t->staging_bytes = 0;
    ZT_TRY(cuda_check(c, cudaMalloc(&t->staging, bytes), "allocating the staging buffer"));
    t->staging_bytes = bytes;
    return ZT_OK;
}

static zt_status nccl_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    nccl_state *t = state(c);
    ZT_TRY(usable(c, "all-gather"));
    const size_t total = bytes * (size_t)c->size;
    if (bytes == 0) return ZT_OK;
    ZT_TRY(reserve_staging(c, total));
    char *mine = (char *)t->staging + (size_t)c->rank * bytes;
    /* on the communicator's stream: a pageable cudaMemcpy may return before its DMA lands, and
     * the stream orders it before the collective */
    ZT_TRY(cuda_check(c, cudaMemcpyAsync(mine, send, bytes, cudaMemcpyHostToDevice, t->stream),
                      "all-gather"));
    /* in place: this rank's part already sits at its offset */
    ZT_TRY(nccl_check(c, ncclAllGather(mine, t->staging, bytes, ncclUint8, t->comm, t->stream),
                      "all-gather"));
    ZT_TRY(nccl_wait(c, "all-gather"));
    return cuda_check(c, cudaMemcpy(recv, t->staging, total, cudaMemcpyDeviceToHost), "all-gather");
}

static zt_status nccl_broadcast(zt_comm *c, void *buf, size_t bytes, int root) {
    nccl_state *t = state(c);
    ZT_TRY(usable(c, "broadcast"));
    if (root < 0 || root >= c->size)
        return zt_fail(ZT_ERR_INVALID_ARG, "broadcast from rank %d of %d", root, c->size);
    if (bytes == 0) return ZT_OK;
    ZT_TRY(reserve_staging(c, bytes));
    if (c->rank == root)
        ZT_TRY(cuda_check(
            c, cudaMemcpyAsync(t->staging, buf, bytes, cudaMemcpyHostToDevice, t->stream),
            "broadcast"));
    ZT_TRY(nccl_check(
        c, ncclBroadcast(t->staging, t->staging, bytes, ncclUint8, root, t->comm, t->stream),
        "broadcast"));
    ZT_TRY(nccl_wait(c, "broadcast"));
    return cuda_check(c, cudaMemcpy(buf, t->staging, bytes, cudaMemcpyDeviceToHost), "broadcast");
}

/* NCCL has no barrier: an all-gather of one byte is one. */
static zt_status nccl_barrier(zt_comm *c) {
    uint8_t mine = 1;
    uint8_t *all = zt_malloc((size_t)c->size);
    if (!all) return zt_fail(ZT_ERR_NOMEM, "barrier of %d ranks", c->size);
    zt_status s = nccl_allgather(c, &mine, 1, all);
    free(all);
    return s;
}

static zt_status check_peer(const zt_comm *c, int peer, const char *what) {
    /* to itself: NCCL would wait for a receive posted in the same group, which this call is not */
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return zt_fail(ZT_ERR_INVALID_ARG, "rank %d of %d (nccl): %s rank %d", c->rank, c->size,
                       what, peer);
    return ZT_OK;
}

static zt_status nccl_send(zt_comm *c, const void *buf, size_t bytes, int peer) {
    nccl_state *t = state(c);
    ZT_TRY(usable(c, "send"));
    ZT_TRY(check_peer(c, peer, "send to"));
    ZT_TRY(nccl_check(c, ncclSend(buf, bytes, ncclUint8, peer, t->comm, t->stream), "send"));
    return nccl_wait(c, "send");
}

static zt_status nccl_recv(zt_comm *c, void *buf, size_t bytes, int peer) {
    nccl_state *t = state(c);
    ZT_TRY(usable(c, "receive"));
    ZT_TRY(check_peer(c, peer, "receive from"));
    ZT_TRY(nccl_check(c, ncclRecv(buf, bytes, ncclUint8, peer, t->comm, t->stream), "receive"));
    return nccl_wait(c, "receive");
}

/* The GPUs stop waiting first; the bootstrap's abort then ends the other ranks (MPI_Abort), or
 * closes its sockets so that they fail at their next call (TCP). */
static void nccl_abort(zt_comm *c, int code) {
    abort_comm(c);
    zt_comm *boot = state(c)->bootstrap;
    boot->ops->abort(boot, code);
}

static void nccl_destroy(zt_comm *c) {
    nccl_state *t = state(c);
    if (t->comm) {
        if (t->aborted)
            ; /* ncclCommAbort freed it */
        else
            ncclCommDestroy(t->comm);
    }
    if (t->staging) cudaFree(t->staging);
    if (t->stream) cudaStreamDestroy(t->stream);
    if (t->bootstrap) zt_comm_destroy(t->bootstrap);
    free(t);
    free(c);
}

static const zt_comm_ops nccl_ops = {"nccl",       nccl_allgather, nccl_broadcast,
                                     nccl_barrier, nccl_send,      nccl_recv,
                                     nccl_abort,   nccl_destroy,   NULL};

/* The GPU, the stream and the communicator, joined by every rank (within --comm-timeout). */
static zt_status join(zt_comm *c) {
    nccl_state *t = state(c);
    ZT_TRY(cuda_check(c, cudaGetDeviceCount(&c->n_devices), "counting the GPUs"));
    if (c->n_devices < 1)
        return zt_fail(ZT_ERR_UNAVAILABLE, "rank %d of %d (nccl): no GPU is visible", c->rank,
                       c->size);
    c->device = c->local_rank % c->n_devices;
    ZT_TRY(cuda_check(c, cudaSetDevice(c->device), "selecting the local rank's GPU"));
    ZT_TRY(cuda_check(c, cudaStreamCreateWithFlags(&t->stream, cudaStreamNonBlocking),
                      "creating the stream"));
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (c->rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
        return zt_fail(ZT_ERR_CUDA, "rank 0 (nccl): ncclGetUniqueId failed");
    ZT_TRY(zt_comm_broadcast(t->bootstrap, &id, sizeof id, 0));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t rc = ncclCommInitRankConfig(&t->comm, c->size, id, c->rank, &config);
    if (rc != ncclSuccess && rc != ncclInProgress)
        return zt_fail(ZT_ERR_CUDA, "rank %d of %d (nccl): ncclCommInitRankConfig: %s", c->rank,
                       c->size, ncclGetErrorString(rc));
    return nccl_wait(c, "joining the communicator");
}

zt_status zt_comm_nccl_create(zt_comm *bootstrap, double timeout_s, zt_comm **out) {
    *out = NULL;
    zt_comm *c = zt_calloc(1, sizeof *c);
    nccl_state *t = zt_calloc(1, sizeof *t);
    if (!c || !t) {
        free(c), free(t);
        return zt_fail(ZT_ERR_NOMEM, "allocating the communicator");
    }
    t->bootstrap = bootstrap;
    t->timeout_s = timeout_s;
    c->ops = &nccl_ops;
    c->impl = t;
    c->rank = bootstrap->rank;
    c->size = bootstrap->size;
    c->local_rank = bootstrap->local_rank;
    c->device = -1;
    zt_status s = join(c);
    if (s != ZT_OK) {
        /* a communicator that joined half-way is aborted, never destroyed collectively */
        if (t->comm) abort_comm(c);
        t->bootstrap = NULL; /* the caller's again */
        nccl_destroy(c);
        return s;
    }
    *out = c;
    return ZT_OK;
}
