/* --pipeline-stages (docs/distributed.md): this rank's stage of its replica's pipeline, as the
 * model's forward sees it (models/model.h, zt_model_stage), and the data-parallel view the
 * objective reduces over (src/dist/pipeline.h). A rank loads, perturbs and updates only its
 * stage's tensors (z is addressed by tensor id, so nothing else moves); totals over every
 * parameter (the sphere's ||z||) are summed over the stages, and rank 0 writes the model with
 * the tensors the other stages of its pipeline send it. The replicas of one stage stay equal. */
#include <math.h>
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
    zt_model *model;
    uint32_t *elsewhere; /* rank 0: trainable tensors only other stages hold (ascending ids) */
};

static int peer(const zt_train_pipeline *p, int stage) {
    return zt_pipeline_rank(&p->layout, p->layout.replica, stage);
}

static zt_status stage_receive(void *ctx, void *buf, size_t bytes) {
    zt_train_pipeline *p = ctx;
    return zt_comm_recv(p->world, buf, bytes, peer(p, p->layout.stage - 1));
}

static zt_status stage_pass_on(void *ctx, const void *buf, size_t bytes) {
    zt_train_pipeline *p = ctx;
    return zt_comm_send(p->world, buf, bytes, peer(p, p->layout.stage + 1));
}

/* The last stage sends to the others in stage order; each of them is receiving by then (it
 * passed its streams on and waits for nothing else). */
static zt_status stage_share_logprobs(void *ctx, void *buf, size_t bytes) {
    zt_train_pipeline *p = ctx;
    const int last = p->layout.stages - 1;
    if (p->layout.stage != last) return zt_comm_recv(p->world, buf, bytes, peer(p, last));
    for (int s = 0; s < last; s++)
        ZT_TRY(zt_comm_send(p->world, buf, bytes, peer(p, s)));
    return ZT_OK;
}

/* The share of stage `stage` of the layout (the layers as zt_pipeline_layout_of splits them). */
static zt_model_stage share_of(const zt_pipeline_layout *l, int n_layers, int stage) {
    int first = 0, count = 0;
    zt_comm_share(n_layers, l->stages, stage, &first, &count);
    return (zt_model_stage){.first_layer = first,
                            .end_layer = first + count,
                            .is_first = stage == 0,
                            .is_last = stage == l->stages - 1};
}

/* The first stage holding tensor id: the one that sends it to rank 0 and whose partial counts. */
static int first_holder(const zt_train_pipeline *p, int id) {
    for (int s = 0; s < p->layout.stages; s++) {
        const zt_model_stage share = share_of(&p->layout, p->model->dims.n_layers, s);
        if (zt_model_stage_holds(p->model, &share, id)) return s;
    }
    return -1;
}

/* Rank 0 (stage 0 of replica 0) receives what it lacks of tensor id (its stored bytes, or its
 * optimizer state) from the tensor's first holder, into backend memory (device memory is what
 * NCCL carries), then to the host. */
static zt_status receive_from_holder(zt_train_pipeline *p, int id, const char *what, void *host,
                                     size_t bytes) {
    zt_backend *be = p->model->be;
    const int holder = first_holder(p, id);
    if (holder <= 0)
        return zt_fail(ZT_ERR_INTERNAL, "--pipeline-stages: no stage holds the %s of tensor %d",
                       what, id);
    void *landing = NULL;
    ZT_TRY(be->ops->alloc(be, bytes, ZT_MEM_SCRATCH, &landing));
    zt_status s = zt_comm_recv(p->world, landing, bytes, peer(p, holder));
    if (s == ZT_OK) s = be->ops->download(be, host, landing, bytes);
    be->ops->free(be, landing, bytes, ZT_MEM_SCRATCH);
    return s;
}

static zt_status stage_fetch_tensor(void *ctx, int id, void *host, size_t bytes) {
    return receive_from_holder(ctx, id, "weights", host, bytes);
}

static zt_status stage_fetch_state(void *ctx, uint32_t id, float *host, size_t bytes) {
    return receive_from_holder(ctx, (int)id, "optimizer state", host, bytes);
}

/* Rank 0's list of the trainable tensors that only other stages hold, whose optimizer state a
 * snapshot receives (zt_param_set.elsewhere_ids). */
static zt_status list_elsewhere(zt_train_pipeline *p, zt_run *r) {
    const zt_model *m = r->model;
    p->elsewhere = zt_malloc((size_t)m->n_tensors * sizeof *p->elsewhere + 1);
    if (!p->elsewhere) return zt_fail(ZT_ERR_NOMEM, "--pipeline-stages: %d ids", m->n_tensors);
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].absent && (!r->trainable || r->trainable[i]))
            p->elsewhere[n++] = (uint32_t)i;
    r->ps.elsewhere_ids = p->elsewhere;
    r->ps.n_elsewhere = n;
    r->ps.fetch_state = stage_fetch_state;
    return ZT_OK;
}

/* Per-tensor partials of every stage of this replica, all-gathered over the world (NaN where
 * a stage holds no such parameter), summed in tensor order taking each tensor once: the same
 * additions in the same order as one process, so the same double. */
static zt_status sum_over_stages(void *ctx, const zt_param_set *ps, const double *partials,
                                 double *total) {
    zt_train_pipeline *p = ctx;
    const int n = p->model->n_tensors, world_size = p->world->size;
    double *mine = zt_malloc((size_t)n * sizeof *mine);
    double *all = zt_malloc((size_t)n * (size_t)world_size * sizeof *all);
    zt_status s = mine && all ? ZT_OK
                              : zt_fail(ZT_ERR_NOMEM, "--pipeline-stages: %d x %d norm partials",
                                        world_size, n);
    for (int i = 0; s == ZT_OK && i < n; i++)
        mine[i] = NAN;
    for (int k = 0; s == ZT_OK && k < ps->n_params; k++)
        mine[ps->params[k].tensor_id] = partials[k];
    if (s == ZT_OK) s = zt_comm_allgather(p->world, mine, (size_t)n * sizeof *mine, all);
    double sum = 0.0;
    for (int i = 0; s == ZT_OK && i < n; i++)
        for (int stage = 0; stage < p->layout.stages; stage++) {
            const double part = all[(size_t)peer(p, stage) * (size_t)n + (size_t)i];
            if (!isnan(part)) {
                sum += part;
                break;
            }
        }
    free(mine);
    free(all);
    *total = sum;
    return s;
}

int zt_train_pipeline_stages(const zt_train_options *o) {
    return o->pipeline_stages > 1 ? o->pipeline_stages : 1;
}

int zt_train_replicas(const zt_train_options *o) {
    const int ranks = o->comm ? o->comm->size : 1;
    const int stages = zt_train_pipeline_stages(o);
    return ranks % stages == 0 ? ranks / stages : ranks;
}

zt_status zt_run_pipeline_share(const zt_run *r, zt_model_stage *share, int *staged) {
    const zt_train_options *o = r->o;
    *staged = 0;
    memset(share, 0, sizeof *share);
    if (zt_train_pipeline_stages(o) == 1) return ZT_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", o->model_dir);
    zt_model *config = NULL;
    ZT_TRY(zt_model_open_config(path, -1, r->be, &config));
    zt_pipeline_layout layout;
    zt_status s = zt_pipeline_layout_of(o->comm->size, o->comm->rank, o->pipeline_stages,
                                        config->dims.n_layers, &layout);
    if (s == ZT_OK) *share = share_of(&layout, config->dims.n_layers, layout.stage);
    zt_model_free(config);
    *staged = s == ZT_OK;
    return s;
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
                                stage_share_logprobs,
                                stage_fetch_tensor};
    p->model = r->model;
    r->model->stage = &p->stage;
    r->ps.sum_over_stages = sum_over_stages;
    r->ps.stages_ctx = p;
    if (o->comm->rank == 0) ZT_TRY(list_elsewhere(p, r));
    for (int k = 0; k < r->ps.n_params; k++)
        r->ps.params[k].uncounted =
            first_holder(p, (int)r->ps.params[k].tensor_id) != p->layout.stage;
    size_t all_bytes = 0;
    for (int i = 0; i < r->model->n_tensors; i++)
        all_bytes += r->model->tensors[i].n_elems * zt_dtype_size(r->model->tensors[i].dtype);
    fprintf(stderr,
            "rank %d of %d: pipeline stage %d of %d (layers %d..%d), replica %d of %d, holding "
            "%zu of the model's %zu weight bytes\n",
            o->comm->rank, o->comm->size, p->layout.stage, p->layout.stages, p->layout.first_layer,
            p->layout.end_layer - 1, p->layout.replica, p->layout.replicas, r->model->weights_bytes,
            all_bytes);
    return ZT_OK;
}

int zt_run_pipeline_serves(const zt_run *r) {
    return r->pipeline && r->pipeline->layout.replica == 0 && r->pipeline->layout.stage > 0;
}

zt_status zt_run_pipeline_serve_weights(const zt_run *r) {
    if (!zt_run_pipeline_serves(r)) return ZT_OK;
    const zt_train_pipeline *p = r->pipeline;
    const zt_model *m = r->model;
    const zt_model_stage first = share_of(&p->layout, m->dims.n_layers, 0);
    /* the weights go as they sit in backend memory, the last update complete */
    ZT_TRY(m->be->ops->sync(m->be));
    for (int i = 0; i < m->n_tensors; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        if (zt_model_stage_holds(m, &first, i) || first_holder(p, i) != p->layout.stage) continue;
        ZT_TRY(zt_comm_send(p->world, (const char *)m->weights + t->offset,
                            t->n_elems * zt_dtype_size(t->dtype), peer(p, 0)));
    }
    return ZT_OK;
}

zt_status zt_run_pipeline_serve_state(const zt_run *r) {
    if (!zt_run_pipeline_serves(r) || r->state_copies == 0) return ZT_OK;
    const zt_train_pipeline *p = r->pipeline;
    const zt_model *m = r->model;
    const zt_model_stage first = share_of(&p->layout, m->dims.n_layers, 0);
    ZT_TRY(m->be->ops->sync(m->be));
    for (int k = 0; k < r->ps.n_params; k++) { /* in table order, as rank 0 lists them */
        const zt_param *param = &r->ps.params[k];
        const int id = (int)param->tensor_id;
        if (zt_model_stage_holds(m, &first, id) || first_holder(p, id) != p->layout.stage) continue;
        ZT_TRY(zt_comm_send(p->world, param->state,
                            (size_t)r->state_copies * param->n_elems * sizeof(float), peer(p, 0)));
    }
    return ZT_OK;
}

zt_status zt_run_pipeline_sum_count(const zt_run *r, unsigned long long *count) {
    if (!r->pipeline) return ZT_OK;
    const zt_train_pipeline *p = r->pipeline;
    unsigned long long *all = zt_malloc((size_t)p->world->size * sizeof *all);
    if (!all) return zt_fail(ZT_ERR_NOMEM, "--pipeline-stages: %d counts", p->world->size);
    zt_status s = zt_comm_allgather(p->world, count, sizeof *count, all);
    unsigned long long total = 0;
    for (int stage = 0; s == ZT_OK && stage < p->layout.stages; stage++)
        total += all[peer(p, stage)];
    free(all);
    if (s == ZT_OK) *count = total;
    return s;
}

void zt_run_pipeline_release(zt_run *r) {
    if (r->model) r->model->stage = NULL;
    if (r->replicas && r->replicas != r->o->comm) zt_comm_destroy(r->replicas);
    r->replicas = NULL;
    if (r->pipeline) free(r->pipeline->elsewhere);
    r->ps.elsewhere_ids = NULL;
    r->ps.n_elsewhere = 0;
    r->ps.fetch_state = NULL;
    free(r->pipeline);
    r->pipeline = NULL;
}
