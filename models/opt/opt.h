/* The OPT family (docs/spec.md §1): HuggingFace's OPTForCausalLM as a zt_arch. Loading goes
 * through zt_model_load (config.json's model_type "opt"); this header is for what is OPT's own:
 * building a random OPT model from a config, and the parameter-count formula. */
#ifndef ZT_MODELS_OPT_OPT_H
#define ZT_MODELS_OPT_OPT_H

#include "model.h"
#include "opt/opt_config.h"

extern const zt_arch zt_opt_arch;

/* The config an OPT model was built from. */
const zt_opt_config *zt_opt_config_of(const zt_model *model);

/* The tensor id of the learned position table. */
int zt_opt_position_table(const zt_model *model);

/* Parameters of an OPT model with this config, from the config alone. */
size_t zt_opt_parameter_count(const zt_opt_config *cfg);

/* The sizes Meta published (facebook/opt-125m ... opt-66b, docs/spec.md §1.1): their shapes,
 * shared vocabulary and positions, and the parameter counts of the released checkpoints. */
typedef struct zt_opt_published_shape {
    const char *name; /* "125m" */
    int hidden, layers, heads, ffn, embed_proj;
    int pre_layer_norm;    /* do_layer_norm_before: false only for 350m */
    long long spec_params; /* the published count, the tied lm_head counted once */
} zt_opt_published_shape;

enum {
    ZT_OPT_N_PUBLISHED_SIZES = 8,
    ZT_OPT_PUBLISHED_VOCAB = 50272,
    ZT_OPT_PUBLISHED_POSITIONS = 2048
};

/* The ZT_OPT_N_PUBLISHED_SIZES shapes, smallest first. */
const zt_opt_published_shape *zt_opt_published_shapes(void);
/* "125m" or "opt-125m"; NULL when not a published size. */
const zt_opt_published_shape *zt_opt_find_published_shape(const char *name);

#endif
