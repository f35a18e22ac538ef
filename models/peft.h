/* What every adapter kind shares (LoRA: lora.h, prompt tuning: prompt.h, prefix
 * tuning: prefix.h): its tensors are extra
 * entries of the table after the base model's, so base ids and the z they address do not move.
 * These helpers answer for whichever kind a model carries. */
#ifndef ZT_MODELS_PEFT_H
#define ZT_MODELS_PEFT_H

#include <stddef.h>

#include "model.h"

/* The adapters a model is loaded with (NULL members: that kind is absent). */
typedef struct zt_peft_options {
    const struct zt_lora_options *lora;
    const struct zt_prompt_options *prompt;
    const struct zt_prefix_options *prefix;
} zt_peft_options;

/* Loads dir's checkpoint with the adapters of `peft` (NULL: none) after its tensors. */
zt_status zt_model_load_adapted(const char *dir, zt_backend *be, const zt_peft_options *peft,
                                zt_model **out);

/* Base tensors: all of the table without adapters. */
int zt_model_base_tensors(const zt_model *m);

/* The first tensor variants may perturb: an adapted model's first adapter, else 0. */
int zt_model_first_staged(const zt_model *m);

/* Bytes of the weight allocation the base tensors take (all of it without adapters). */
size_t zt_model_base_bytes(const zt_model *m);

/* Marks the adapters in mask (n_tensors), and only them, whatever their kind. */
void zt_peft_select(const zt_model *m, uint8_t *mask);

#endif
