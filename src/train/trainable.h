/* The parameter set the ZO engine sees: the trainable tensors of a model, as views into its
 * weights. Built here rather than in models/, which knows nothing of the engine. */
#ifndef ZT_TRAIN_TRAINABLE_H
#define ZT_TRAIN_TRAINABLE_H

#include "model.h"
#include "zo/engine.h"

/* selected (n_tensors) from zt_model_select, or NULL for every tensor. A pipeline stage's model
 * (zt_model_load_stage) gives the selected tensors it holds; n_elems (d) counts every selected
 * tensor, absent ones too. */
zt_status zt_trainable_param_set(zt_model *model, const uint8_t *selected, zt_param_set *ps);
void zt_trainable_param_set_free(zt_param_set *ps);

#endif
