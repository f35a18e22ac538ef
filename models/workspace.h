/* The workspace's layout, shared by its planner (workspace.c) and the sweep (sweep.c). Internal
 * to models/. */
#ifndef ZT_MODELS_WORKSPACE_H
#define ZT_MODELS_WORKSPACE_H

#include "arch.h"

/* Byte offsets of every buffer inside the workspace's two allocations. One function computes
 * them for both the plan and the allocation, so the two cannot disagree. */
typedef struct zt_workspace_layout {
    size_t x;                             /* (K,N,hidden) residual streams */
    size_t layer[ZT_ARCH_MAX_BUFFERS];    /* the family's layer temporaries */
    size_t hid;                           /* (R,hidden) the target rows of the final stream */
    size_t head[ZT_ARCH_MAX_BUFFERS];     /* the family's head temporaries */
    size_t logits, logprob;               /* (chunk,V), (K,R) */
    size_t ids, pos, mask, rows, targets; /* int32 */
    size_t activation_total;
    size_t stage_main, stage_aux, staging_total; /* shadow buffers */
    size_t stage_elem_bytes;                     /* the widest staged dtype planned for */
} zt_workspace_layout;

struct zt_workspace {
    zt_model *model;
    zt_workspace_shape shape;
    zt_workspace_layout layout;
    char *base;    /* activations */
    char *staging; /* shadow buffers, NULL without staging */
};

#endif
