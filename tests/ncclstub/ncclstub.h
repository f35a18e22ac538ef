/* The NCCL stand-in of CI (tests/ncclstub/ncclstub.cpp): the subset of nccl.h that
 * src/dist/comm_nccl.c calls, over MPI on host memory, so that the communicator's own source runs
 * without a GPU. Like tests/cudaemu, the entry points are renamed before the headers declare them,
 * so that the real libraries can be linked into the same program: this header is force-included
 * (-include) when comm_nccl.c is compiled for the stand-in, and included by the tests.
 *
 * What comm_nccl.c asks of the CUDA runtime resolves to the host executor's emulation (device
 * memory there is host memory, and copies check their direction), except cudaStreamQuery: the
 * stand-in answers it, "not ready" while an operation it enqueued on the stream is in flight. */
#ifndef ZT_NCCLSTUB_H
#define ZT_NCCLSTUB_H

#define ncclGetUniqueId ncclstub_ncclGetUniqueId
#define ncclCommInitRankConfig ncclstub_ncclCommInitRankConfig
#define ncclCommGetAsyncError ncclstub_ncclCommGetAsyncError
#define ncclCommAbort ncclstub_ncclCommAbort
#define ncclCommDestroy ncclstub_ncclCommDestroy
#define ncclGetErrorString ncclstub_ncclGetErrorString
#define ncclAllGather ncclstub_ncclAllGather
#define ncclBroadcast ncclstub_ncclBroadcast
#define ncclSend ncclstub_ncclSend
#define ncclRecv ncclstub_ncclRecv
#define ncclGroupStart ncclstub_ncclGroupStart
#define ncclGroupEnd ncclstub_ncclGroupEnd

#define cudaGetDeviceCount cudaemu_cudaGetDeviceCount
#define cudaSetDevice cudaemu_cudaSetDevice
#define cudaMalloc cudaemu_cudaMalloc
#define cudaFree cudaemu_cudaFree
#define cudaMemcpy cudaemu_cudaMemcpy
#define cudaMemcpyAsync cudaemu_cudaMemcpyAsync
#define cudaStreamCreateWithFlags cudaemu_cudaStreamCreateWithFlags
#define cudaStreamDestroy cudaemu_cudaStreamDestroy
#define cudaGetErrorString cudaemu_cudaGetErrorString
#define cudaStreamQuery ncclstub_cudaStreamQuery

/* The communicator under test, so that the library's own (real-NCCL) one can sit in the same
 * program. */
#define zt_comm_nccl_create zt_comm_ncclstub_create

#include <cuda_runtime.h>
#include <nccl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Declared here too: a file that included cuda_runtime.h before this header saw the real name. */
cudaError_t ncclstub_cudaStreamQuery(cudaStream_t stream);

/* Fault injection: the `after`-th operation enqueued from now on (0: the next one) still runs,
 * but ncclCommGetAsyncError then reports `error` on this rank, as NCCL does when a peer or the
 * network fails. */
void ncclstub_inject_async_error(int after, ncclResult_t error);
/* Completes the operations that aborted communicators left in flight (they need every rank's
 * part, which a late rank supplies after the others gave up on it): a test calls it before
 * MPI_Finalize. */
void ncclstub_drain(void);
/* Operations enqueued since the start: allgathers, broadcasts, sends, receives. */
long ncclstub_operations(void);

#ifdef __cplusplus
}
#endif

#endif
