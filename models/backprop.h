/* Backprop through a model on the backend's backward ops (docs/design.md §3.1): the gradient of
 * a weighted sum of the batch's target log-probabilities with respect to every tensor. The
 * family does the work (zt_arch's grad hooks); this is the generic part: the gradient block's
 * layout, the buffers, the batch upload. */
#ifndef ZT_MODELS_BACKPROP_H
#define ZT_MODELS_BACKPROP_H

#include "model.h"

/* A tensor without a place in the gradient block: the family's grad pass computes no gradient
 * for it (and skips work only it needs). */
#define ZT_NO_GRADIENT SIZE_MAX

/* Offsets (in f32 elements) of each tensor's gradient in one block, in table order (the tied
 * head has no tensor of its own: its gradient lands in the token table's). Returns the block's
 * element count, zt_model_parameter_count. A model with LoRA adapters (lora.h) has gradients of
 * its adapters alone: its base tensors get ZT_NO_GRADIENT. */
size_t zt_model_grad_layout(const zt_model *model, size_t *offsets /* (n_tensors) */);

/* The activations one backward pass keeps for batches up to max_batch x max_seq_len: each
 * layer's input, every layer's intermediates (checkpoint 0) or one layer's, recomputed from its
 * input in backward (checkpoint 1: activation checkpointing, one forward more), their gradients,
 * the head's. */
typedef struct zt_grad_buffers zt_grad_buffers;

/* Bytes zt_grad_buffers_create allocates at that shape (activations), 0 when the family has no
 * backprop. */
size_t zt_grad_buffers_bytes(const zt_model *model, int max_batch, int max_seq_len, int checkpoint);
/* Bytes of backend scratch a backward pass at that shape asks at most (the family's ops, and
 * the forward's at that shape); zt_grad_buffers_create reserves it. */
size_t zt_grad_scratch_bytes(const zt_model *model, int max_batch, int max_seq_len);
zt_status zt_grad_buffers_create(zt_model *model, int max_batch, int max_seq_len, int checkpoint,
                                 zt_grad_buffers **out);
void zt_grad_buffers_free(zt_grad_buffers *gb);

/* loss = -sum_r weight[r] * log p(target r | its prefix); grads (backend memory, f32, the block
 * of zt_model_grad_layout) += d loss / d theta; *loss receives the loss, summed in double from
 * the f32 log-probabilities. The token-mean NLL is weight[r] = 1 / R. Each layer's forward is
 * run again during the backward pass from its saved input (only the layer inputs are kept), with
 * the forward's own operations, so the loss is the one zt_model_forward gives. */
zt_status zt_model_grad(zt_model *model, zt_grad_buffers *gb, const zt_batch *batch,
                        const float *weights, /* (R) host */
                        float *grads, double *loss);

/* Sets n floats of backend memory to +0 (the backend's zero op: no host block, no wait). */
zt_status zt_backend_zero(zt_backend *be, float *dst, size_t n_floats);

#endif
