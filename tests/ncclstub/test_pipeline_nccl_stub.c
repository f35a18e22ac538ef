/* Pipelines on the CUDA path, in CI: 2 ranks under mpirun, each one stage of zt_train on
 * the host executor's CUDA backend ("cuda-emu", tests/cudaemu), joined by the NCCL communicator
 * (src/dist/comm_nccl.c built against the stand-in, ncclstub.cpp). The stages pass device
 * memory, the K residual streams and the targets' log-probabilities, through ncclSend/ncclRecv;
 * the step log and the weights must equal, bit for bit, one process on cuda-emu. A pure pipeline
 * needs no batch invariance: every stage runs the whole
 * batch through the same kernels as one process. Under 4 ranks, 2 replicas of the 2-stage pipeline
 * split the batch, and the reference is one batch-invariant process (the CUDA kernels are
 * batch-invariant too). Rank 0 runs the one-process reference after the pipelined run. Every
 * rank checks; the exit status carries the verdict. */
#include "ncclstub.h"

#include <mpi.h>
#include <string.h>

#include "core/status.h"
#include "cudaemu_backend.h"
#include "dist/comm.h"
#include "../train/train_util.h"
#include "zt_test.h"

static void run(zt_comm *comm, int stages, int batch_invariant, const char *out, char *model,
                char *data) {
    zt_train_options o;
    fixture_run_options(&o, "opt-pre", model, 1024, data, 1024, out);
    o.device = "cuda-emu";
    o.gemm = "f32";
    o.threads = 1;
    o.steps = 3;
    o.seed = 7;
    o.hp.lr = 1e-3;
    o.hp.eps = 1e-2;
    o.hp.n_directions = 2; /* 4 variants cross the boundary */
    o.eval_path = data;
    o.comm = comm;
    o.pipeline_stages = stages;
    o.batch_invariant = batch_invariant;
    zt_train_result res;
    zt_status s = zt_train(&o, &res);
    ZT_CHECK(s == ZT_OK && res.steps_done == 3, "%d stage(s) on cuda-emu: %d steps: %s", stages,
             res.steps_done, s == ZT_OK ? "" : zt_last_error());
}

int main(void) {
    ZT_REQUIRE_OK(zt_backend_register("cuda-emu", zt_cudaemu_backend_factory));
    zt_comm *boot = NULL, *c = NULL;
    ZT_REQUIRE_OK(zt_comm_mpi_create(60.0, &boot));
    if (zt_comm_nccl_create(boot, 60.0, &c) != ZT_OK) {
        fprintf(stderr, "FATAL: zt_comm_nccl_create: %s\n", zt_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    ZT_REQUIRE(c->size == 2 || c->size == 4, "run under mpirun -np 2 or 4 (%d ranks)", c->size);
    const int replicas = c->size / 2;
    char dir[256] = "";
    if (c->rank == 0) make_temp_dir(dir, sizeof dir, "pipe_nccl");
    ZT_REQUIRE_OK(c->ops->broadcast(c, dir, sizeof dir, 0));
    char pipelined[512], single[512], model[1024], data[1024];
    snprintf(pipelined, sizeof pipelined, "%s/pipeline", dir);
    snprintf(single, sizeof single, "%s/one", dir);
    const long before = ncclstub_operations();
    run(c, 2, 0, pipelined, model, data);
    /* per forward: the streams once, the log-probabilities once, besides the collectives */
    ZT_CHECK(ncclstub_operations() - before > 2 * 3 * 2,
             "rank %d: %ld operations through the "
             "stand-in",
             c->rank, ncclstub_operations() - before);
    ncclstub_drain();
    if (c->rank == 0) {
        run(NULL, 0, replicas > 1, single, model, data);
        const char *files[] = {"steplog.jsonl", "model.safetensors"};
        for (int i = 0; i < 2; i++) {
            char a[600], b[600];
            snprintf(a, sizeof a, "%s/%s", pipelined, files[i]);
            snprintf(b, sizeof b, "%s/%s", single, files[i]);
            ZT_CHECK(zt_test_same_file(a, b, NULL),
                     "%s of 2 stages x %d replica(s) over NCCL equals one process's", files[i],
                     replicas);
        }
        if (zt_test_failed_count == 0) remove_run_dir(dir);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    char name[64];
    snprintf(name, sizeof name, "pipeline_nccl_stub, rank %d of %d", c->rank, c->size);
    zt_comm_destroy(c);
    return zt_test_finish(name);
}
