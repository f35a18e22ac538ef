/* --pipeline-stages (docs/distributed.md): this rank's stage of its replica's pipeline, as the
 * model's forward sees it (models/model.h, zt_model_stage), and the data-parallel view the
 * objective reduces over (src/dist/pipeline.h). Every rank holds and updates every tensor, so
 * the ranks stay replicas of one another and rank 0 writes the output as in data parallel; a
 * stage only runs its layers' share of each forward. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "dist/pipeline.h"
#include "train/train_run.h"

struct zt_train_pipeline {
    zt_pipeline_layout layout;
    zt_comm *world;
    zt_model_stage stage;
};

static int peer(const zt_train_pipeline *p, int stage) {
    return zt_pipeline_rank(&p->layout, p->layout.replica, stage);
}

static zt_status stage_receive(void *ctx, void *buf, size_t bytes) {
    zt_train_pipeline *p = ctx;
    return p->world->ops->recv(p->world, buf, bytes, peer(p, p->layout.stage - 1));
}

static zt_status stage_pass_on(void *ctx, const void *buf, size_t bytes) {
    zt_train_pipeline *p = ctx;
    return p->world->ops->send(p->world, buf, bytes, peer(p, p->layout.stage + 1));
}

/* The last stage sends to the others in stage order; each of them is receiving by then (it
 * passed its streams on and waits for nothing else). */
static zt_status stage_share_logprobs(void *ctx, void *buf, size_t bytes) {
    zt_train_pipeline *p = ctx;
    const int last = p->layout.stages - 1;
    if (p->layout.stage != last) return p->world->ops->recv(p->world, buf, bytes, peer(p, last));
    for (int s = 0; s < last; s++)
        ZT_TRY(p->world->ops->send(p->world, buf, bytes, peer(p, s)));
    return ZT_OK;
}

int zt_train_pipeline_stages(const zt_train_options *o) {
    return o->pipeline_stages > 1 ? o->pipeline_stages : 1;
}

int zt_train_replicas(const zt_train_options *o) {
    const int ranks = o->comm ? o->comm->size : 1;
    const int stages = zt_train_pipeline_stages(o);
    return ranks % stages == 0 ? ranks / stages : ranks;
}

zt_status zt_run_pipeline_setup(zt_run *r) {
    const zt_train_options *o = r->o;
    r->replicas = o->comm;
    if (zt_train_pipeline_stages(o) == 1) return ZT_OK;
    /* a stage sends the workspace's own buffers: device memory on a GPU, which only NCCL
     * carries */
    if (strcmp(r->be->ops->name, "cpu") != 0 && strcmp(o->comm->ops->name, "nccl") != 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--pipeline-stages %d on %s: the stages pass device memory, which needs "
                       "--comm nccl (not %s)",
                       o->pipeline_stages, r->be->ops->name, o->comm->ops->name);
    zt_train_pipeline *p = zt_calloc(1, sizeof *p);
    if (!p) return zt_fail(ZT_ERR_NOMEM, "allocating the pipeline stage");
    r->pipeline = p;
    p->world = o->comm;
    ZT_TRY(zt_pipeline_layout_of(o->comm->size, o->comm->rank, o->pipeline_stages,
                                 r->model->dims.n_layers, &p->layout));
    ZT_TRY(zt_comm_replica_view(o->comm, &p->layout, &r->replicas));
    p->stage = (zt_model_stage){p->layout.first_layer,
                                p->layout.end_layer,
                                p->layout.stage == 0,
                                p->layout.stage == p->layout.stages - 1,
                                p,
                                stage_receive,
                                stage_pass_on,
                                stage_share_logprobs};
    r->model->stage = &p->stage;
    fprintf(stderr, "rank %d of %d: pipeline stage %d of %d (layers %d..%d), replica %d of %d\n",
            o->comm->rank, o->comm->size, p->layout.stage, p->layout.stages, p->layout.first_layer,
            p->layout.end_layer - 1, p->layout.replica, p->layout.replicas);
    return ZT_OK;
}

void zt_run_pipeline_release(zt_run *r) {
    if (r->model) r->model->stage = NULL;
    if (r->replicas && r->replicas != r->o->comm) zt_comm_destroy(r->replicas);
    r->replicas = NULL;
    free(r->pipeline);
    r->pipeline = NULL;
}
