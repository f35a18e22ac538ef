/* The workspace's layout, shared by its planner (workspace.c) and the sweep (sweep.c). Internal
 * to models/. */
#ifndef ZT_MODELS_WORKSPACE_H
#define ZT_MODELS_WORKSPACE_H

#include "arch.h"

/* Byte offsets of every buffer inside the workspace's two allocations. One function computes
 * them for both the plan and the allocation, so the two cannot disagree. */
typedef struct zt_workspace_layout {
    size_t x;                          /* (K,N,hidden) residual streams */
    size_t layer[ZT_ARCH_MAX_BUFFERS]; /* variant 0's layer temporaries; variant k's lie
                                          k * layer_stride further */
    size_t layer_stride;
    /* The head's rows for each variant of a head group (head_group of them): variant v0 + j's
     * (R,hidden) target rows of its final stream at hid + j * hid_stride, its family head
     * temporaries at head[i] + j * head_stride (group variant 0's lie in [heads, heads +
     * head_stride)). */
    size_t hid, hid_stride;
    size_t head[ZT_ARCH_MAX_BUFFERS], heads, head_stride;
    int head_group;         /* min(K, zt_model_head_group_limit) */
    size_t logits, logprob; /* (chunk,cols), (K,R): cols = zt_head_vocab_cols */
    size_t lse_state;       /* (head_group,R,3) doubles: the head's running log-sum-exp by block */
    size_t ids, pos, mask, rows, targets; /* int32 */
    size_t prefix;                        /* zt_prefix_buffers_bytes (models/prefix.h) */
    size_t activation_total;
    /* Variant 0's shadow buffers for a layer's tensors (and the head's norm and projection):
     * main sized for the largest tensor but the token and head tables, aux for the largest
     * vector. */
    size_t stage_main, stage_aux, staging_total;
    size_t stage_main_bytes, stage_aux_bytes;
    size_t stage_elem_bytes; /* the widest staged dtype planned for */
    /* One region that a layer and the head use in turn (never both at once):
     *  - variants 1 .. K-1 of a layer's tensors, staged with variant 0 from one draw: variant
     *    k's main slot at stage_variants + (k - 1) * stage_variant_stride, its aux slot
     *    stage_variant_aux further;
     *  - the head table of head_group variants staged from one draw: variant v0 + j's copy at
     *    stage_variants + j * stage_head_stride (0 when the head table is not staged), a block of
     *    zt_head_vocab_cols of its rows at a time. */
    size_t stage_variants, stage_variant_stride, stage_variant_aux;
    size_t stage_head_stride;
} zt_workspace_layout;

struct zt_workspace {
    zt_model *model;
    zt_workspace_shape shape;
    zt_workspace_layout layout;
    char *base;                 /* activations */
    char *staging;              /* shadow buffers, NULL without staging */
    zt_pending_update *pending; /* applied by the sweeps that stage (zt_workspace_set_pending) */
};

/* Each token's row of the family's position table (padding reads the row before the first);
 * sequence b's first real token takes position first[b] (NULL: 0). An error names a sequence
 * longer than the table. */
zt_status zt_batch_position_rows(const zt_model *model, const zt_batch *batch,
                                 const int32_t *first, /* (B) host or NULL */
                                 int32_t *rows /* (B*T) host */);

/* What the cached forward (kv_cache.c) shares with the plain one (sweep.c). */

/* Uploads the batch's ids, mask, targets and position rows; sequence b's first real token takes
 * position first_position[b] (NULL: 0). */
zt_status zt_sweep_upload_batch(zt_model *model, zt_workspace *ws, const zt_batch *batch,
                                const int32_t *first_position /* (B) host or NULL */);
/* The LM head on the batch's target rows of the variant's stream: log-probabilities into the
 * workspace, and the logits into logits_out (host, (K,R,V)) when not NULL. */
zt_status zt_sweep_head(const zt_sweep *sw, float *logits_out);
/* attention_cached over the cache's layer `layer` at its current length (kv_cache.c). */
zt_status zt_kv_cache_attend(const zt_sweep *sw, int layer, float *out, const float *q,
                             const float *k, const float *v, int n_heads, int head_dim,
                             float q_scale);

#endif
