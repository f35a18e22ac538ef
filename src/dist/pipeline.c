/* The pipeline's layout over the job's ranks and the replicas' data-parallel view of them. */
#include "dist/pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"

zt_status zt_pipeline_layout_of(int ranks, int rank, int stages, int n_layers,
                                zt_pipeline_layout *out) {
    memset(out, 0, sizeof *out);
    if (stages < 1 || ranks % stages != 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--pipeline-stages %d: must divide the %d ranks (ranks = stages x "
                       "data-parallel replicas)",
                       stages, ranks);
    if (stages > n_layers)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--pipeline-stages %d: the model has %d layers, and every stage needs one",
                       stages, n_layers);
    out->stages = stages;
    out->stage = rank % stages;
    out->replicas = ranks / stages;
    out->replica = rank / stages;
    int count = 0;
    zt_comm_share(n_layers, stages, out->stage, &out->first_layer, &count);
    out->end_layer = out->first_layer + count;
    return ZT_OK;
}

typedef struct replica_view {
    zt_comm *world;
    zt_pipeline_layout layout;
} replica_view;

static replica_view *view_of(zt_comm *c) {
    return c->impl;
}

/* Every world rank's `bytes`, then this stage's D of them in replica order. */
static zt_status view_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    replica_view *v = view_of(c);
    const int world_size = v->world->size;
    char *all = zt_malloc(bytes * (size_t)world_size + 1);
    if (!all) return zt_fail(ZT_ERR_NOMEM, "all-gather of %d x %zu bytes", world_size, bytes);
    zt_status s = zt_comm_allgather(v->world, send, bytes, all);
    for (int d = 0; s == ZT_OK && d < c->size; d++)
        memcpy((char *)recv + (size_t)d * bytes,
               all + (size_t)zt_pipeline_rank(&v->layout, d, v->layout.stage) * bytes, bytes);
    free(all);
    return s;
}

/* Each stage's replicas broadcast among themselves at once: an all-gather, keeping the root's. */
static zt_status view_broadcast(zt_comm *c, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= c->size)
        return zt_fail(ZT_ERR_INVALID_ARG, "broadcast from replica %d of %d", root, c->size);
    char *all = zt_malloc(bytes * (size_t)c->size + 1);
    if (!all) return zt_fail(ZT_ERR_NOMEM, "broadcast of %zu bytes", bytes);
    zt_status s = view_allgather(c, buf, bytes, all);
    if (s == ZT_OK) memcpy(buf, all + (size_t)root * bytes, bytes);
    free(all);
    return s;
}

static zt_status view_barrier(zt_comm *c) {
    zt_comm *w = view_of(c)->world;
    return zt_comm_barrier(w);
}

static zt_status view_send(zt_comm *c, const void *buf, size_t bytes, int peer) {
    replica_view *v = view_of(c);
    return zt_comm_send(v->world, buf, bytes, zt_pipeline_rank(&v->layout, peer, v->layout.stage));
}

static zt_status view_recv(zt_comm *c, void *buf, size_t bytes, int peer) {
    replica_view *v = view_of(c);
    return zt_comm_recv(v->world, buf, bytes, zt_pipeline_rank(&v->layout, peer, v->layout.stage));
}

static void view_abort(zt_comm *c, int code) {
    zt_comm *w = view_of(c)->world;
    w->ops->abort(w, code);
}

static void view_destroy(zt_comm *c) {
    free(c->impl);
    free(c);
}

static const zt_comm_ops view_ops = {"replicas",   view_allgather, view_broadcast,
                                     view_barrier, view_send,      view_recv,
                                     view_abort,   view_destroy,   NULL};

zt_status zt_comm_replica_view(zt_comm *world, const zt_pipeline_layout *layout, zt_comm **out) {
    zt_comm *c = zt_calloc(1, sizeof *c);
    replica_view *v = zt_calloc(1, sizeof *v);
    if (!c || !v) {
        free(c);
        free(v);
        return zt_fail(ZT_ERR_NOMEM, "allocating the replicas' communicator");
    }
    v->world = world;
    v->layout = *layout;
    c->ops = &view_ops;
    c->rank = layout->replica;
    c->size = layout->replicas;
    c->local_rank = world->local_rank;
    c->device = world->device;
    c->n_devices = world->n_devices;
    c->impl = v;
    *out = c;
    return ZT_OK;
}
