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

#endif
