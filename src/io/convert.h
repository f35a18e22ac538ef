/* zotune convert: a PyTorch checkpoint directory (pytorch_model.bin, sharded or not) rewritten as
 * a safetensors one. */
#ifndef ZT_IO_CONVERT_H
#define ZT_IO_CONVERT_H

#include "zotune.h"

/* Writes out_dir/model.safetensors holding every tensor of in_dir's PyTorch weights under its
 * stored name, dtype and shape (tensors that shared a storage become separate copies: the
 * format has no aliasing), with metadata {"format": "pt"} as transformers writes it; then copies
 * config.json, generation_config.json and the tokenizer files that exist. out_dir must not
 * exist or be an empty directory, and must lie apart from in_dir: nothing is ever overwritten.
 * *n_tensors (may be NULL) gets the count written. */
zt_status zt_convert_torch_dir(const char *in_dir, const char *out_dir, int *n_tensors);

/* out_dir must not exist (it is created) or be an empty directory; command names the refuser. */
zt_status zt_prepare_new_dir(const char *out_dir, const char *command);
/* Copies config.json, generation_config.json and the tokenizer files in_dir has to out_dir. */
zt_status zt_copy_companion_files(const char *in_dir, const char *out_dir);

#endif
