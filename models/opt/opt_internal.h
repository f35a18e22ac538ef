/* Internal to models/opt/: the family's state and its layer code, which opt_table.c binds into
 * zt_opt_arch. */
#ifndef ZT_MODELS_OPT_INTERNAL_H
#define ZT_MODELS_OPT_INTERNAL_H

#include "arch.h"
#include "opt/opt.h"

/* Indices into the tensor table for one decoder layer; -1 where absent (no bias). */
typedef struct zt_opt_layer_ids {
    int k_w, k_b, v_w, v_b, q_w, q_b, out_w, out_b;
    int attn_ln_g, attn_ln_b, fc1_w, fc1_b, fc2_w, fc2_b, ffn_ln_g, ffn_ln_b;
} zt_opt_layer_ids;

/* m->family of an OPT model. Table indices are -1 where the architecture has no such tensor. */
typedef struct zt_opt_family {
    zt_opt_config cfg;
    int embed_positions, project_out, project_in, final_ln_g, final_ln_b;
    zt_opt_layer_ids *layers; /* (num_hidden_layers) */
} zt_opt_family;

static inline const zt_opt_family *zt_opt_family_of(const zt_model *m) {
    return (const zt_opt_family *)m->family;
}

/* torch.nn.LayerNorm's default, which OPT keeps. */
#define ZT_OPT_LAYER_NORM_EPS 1e-5f

/* The layer code (opt_layers.c). */
void zt_opt_plan_buffers(const zt_model *m, size_t n_tokens, size_t *layer_bytes,
                         size_t *head_bytes);
size_t zt_opt_scratch_bytes(const zt_model *m, const zt_workspace_shape *shape);
zt_status zt_opt_embed(const zt_sweep *sw);
zt_status zt_opt_decoder_layer(const zt_sweep *sw, int layer);
zt_status zt_opt_head_input(const zt_sweep *sw, float *rows, int n_rows, const float **head_in);

/* Backprop (opt_backward.c). */
size_t zt_opt_grad_area_floats(const zt_model *m, size_t n_tokens, size_t n_rows, int checkpoint);
size_t zt_opt_grad_scratch_bytes(const zt_model *m, int sequences, int seq_len);
zt_status zt_opt_grad(const zt_grad_pass *pass);

/* The published sizes (opt_sizes.c): arch.h's n_published_sizes and published_size. */
zt_status zt_opt_published_size(const zt_model *like, int index, void **config, const char **name);

#endif
