/* Pipeline stages (--pipeline-stages S, docs/distributed.md): the job's P ranks form P / S
 * data-parallel replicas of an S-stage pipeline. Consecutive ranks form one pipeline: world rank
 * r is stage r % S of replica r / S, so a pipeline's stages sit on neighbouring local ranks.
 * Stage s runs a contiguous range of the model's layers, split as zt_comm_share splits items
 * (the first stages take the remainder: 4 layers over 3 stages are 2/1/1). */
#ifndef ZT_DIST_PIPELINE_H
#define ZT_DIST_PIPELINE_H

#include "dist/comm.h"

typedef struct zt_pipeline_layout {
    int stages, stage;     /* S, and this rank's stage */
    int replicas, replica; /* D = P / S, and this rank's replica (its pipeline) */
    int first_layer, end_layer;
} zt_pipeline_layout;

/* ZT_ERR_INVALID_ARG, naming --pipeline-stages, when S does not divide the ranks or exceeds the
 * layers. */
zt_status zt_pipeline_layout_of(int ranks, int rank, int stages, int n_layers,
                                zt_pipeline_layout *out);

/* The world rank of stage `stage` of replica `replica`. */
static inline int zt_pipeline_rank(const zt_pipeline_layout *l, int replica, int stage) {
    return replica * l->stages + stage;
}

/* The data-parallel view of `world` from this rank: the D ranks holding this rank's stage, one
 * per replica, ranked by replica. Its collectives are the world's (every rank of every stage
 * takes part at once), each rank receiving its own stage's part: the replicas of each stage
 * then reduce exactly as a data-parallel job of D ranks does (src/dist/dp_reduce.h). send and
 * recv address replicas; abort ends the world. Destroying the view leaves the world. */
zt_status zt_comm_replica_view(zt_comm *world, const zt_pipeline_layout *layout, zt_comm **out);

#endif
