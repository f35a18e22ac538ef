/* Data-parallel training through the NCCL communicator's own source (src/dist/comm_nccl.c, built
 * against the stand-in ncclstub.cpp) on the CUDA kernels under the host executor: what a
 * multi-GPU run does, with no GPU. Under mpirun with N ranks, zt_train runs MeZO on "cuda-emu"
 * with the NCCL communicator, the global batch split over the ranks (5 records: 3/2 over 2 ranks,
 * 2/2/1 over 3); rank 0 then trains one process on the same device with --batch-invariant and
 * no communicator, and the step log and model.safetensors of the two runs must be equal byte for
 * byte (docs/distributed.md). A second case splits the ranks into direction groups with two
 * directions per step. argv[1]: "dp" or "groups". */
#include "ncclstub.h"

#include <mpi.h>
#include <string.h>

#include "backend.h"
#include "core/status.h"
#include "cudaemu_backend.h"
#include "dist/comm.h"
#include "../train/train_util.h"
#include "zt_test.h"

static void run(const char *out, zt_comm *comm, int groups, int directions) {
    char model[1024], data[1024];
    zt_train_options o;
    fixture_run_options(&o, "opt-pre", model, sizeof model, data, sizeof data, out);
    o.device = "cuda-emu";
    o.gemm = "f32";
    o.threads = 1;
    o.optimizer = "mezo";
    o.steps = 4;
    o.batch_size = 5;
    o.seed = 11;
    o.hp.lr = 1e-2;
    o.hp.eps = 1e-2;
    o.comm = comm;
    o.batch_invariant = 1;
    o.direction_groups = groups;
    o.hp.n_directions = directions;
    zt_train_result res;
    ZT_REQUIRE_OK(zt_train(&o, &res));
}

int main(int argc, char **argv) {
    ZT_REQUIRE(argc == 2 && (strcmp(argv[1], "dp") == 0 || strcmp(argv[1], "groups") == 0),
               "usage: test_train_nccl_stub dp|groups (under mpirun)");
    const int groups = strcmp(argv[1], "groups") == 0 ? 2 : 1;
    ZT_REQUIRE_OK(zt_backend_register("cuda-emu", zt_cudaemu_backend_factory));
    zt_comm *boot = NULL, *c = NULL;
    ZT_REQUIRE_OK(zt_comm_mpi_create(60.0, &boot));
    if (zt_comm_nccl_create(boot, 60.0, &c) != ZT_OK) {
        fprintf(stderr, "FATAL: zt_comm_nccl_create: %s\n", zt_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    ZT_REQUIRE(groups == 1 || c->size % groups == 0, "groups: %d ranks in %d groups", c->size,
               groups);
    char ranks_out[256] = {0}, alone_out[256] = {0};
    if (c->rank == 0) {
        make_temp_dir(ranks_out, sizeof ranks_out, "nccl_ranks");
        make_temp_dir(alone_out, sizeof alone_out, "nccl_alone");
    }
    ZT_REQUIRE_OK(c->ops->broadcast(c, ranks_out, sizeof ranks_out, 0));
    const long before = ncclstub_operations();
    const int directions = groups > 1 ? 2 : 1;
    run(ranks_out, c, groups, directions);
    ZT_CHECK(ncclstub_operations() > before, "rank %d: the run's exchanges went through NCCL",
             c->rank);
    ZT_REQUIRE_OK(c->ops->barrier(c));
    if (c->rank == 0) {
        run(alone_out, NULL, 1, directions);
        for (int f = 0; f < 2; f++) {
            const char *file = f == 0 ? "steplog.jsonl" : "model.safetensors";
            char a[1200], b[1200];
            snprintf(a, sizeof a, "%s/%s", ranks_out, file);
            snprintf(b, sizeof b, "%s/%s", alone_out, file);
            ZT_CHECK(zt_test_same_file(a, b, NULL),
                     "%s: %d ranks over NCCL (%d direction group%s) and one process, byte for byte",
                     file, c->size, groups, groups > 1 ? "s" : "");
        }
        ZT_CHECK(steplog_lines(ranks_out) == 5, "the log holds a header and 4 records (%d lines)",
                 steplog_lines(ranks_out));
        remove_run_dir(ranks_out);
        remove_run_dir(alone_out);
    }
    ncclstub_drain();
    MPI_Barrier(MPI_COMM_WORLD);
    char name[80];
    snprintf(name, sizeof name, "train_nccl_stub %s, rank %d of %d", argv[1], c->rank, c->size);
    zt_comm_destroy(c);
    return zt_test_finish(name);
}
