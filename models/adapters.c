/* The adapter kinds' common questions (models/peft.h, implemented apart from it so that lora.h
 * and prompt.h, which include it, are not included back). */
#include "peft.h"

#include "lora.h"
#include "prefix.h"
#include "prompt.h"

int zt_model_base_tensors(const zt_model *m) {
    if (m->lora) return m->lora->n_base;
    if (m->prompt) return m->prompt->n_base;
    if (m->prefix) return m->prefix->n_base;
    return m->n_tensors;
}

int zt_model_first_staged(const zt_model *m) {
    return m->lora || m->prompt || m->prefix ? zt_model_base_tensors(m) : 0;
}

size_t zt_model_base_bytes(const zt_model *m) {
    if (m->lora) return m->lora->base_bytes;
    if (m->prompt) return m->prompt->base_bytes;
    if (m->prefix) return m->prefix->base_bytes;
    return m->weights_bytes;
}

void zt_peft_select(const zt_model *m, uint8_t *mask) {
    const int first = zt_model_first_staged(m);
    for (int i = 0; i < m->n_tensors; i++)
        mask[i] = first > 0 && i >= first;
}
