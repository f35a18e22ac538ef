/* A restricted unpickler for the data.pkl of a torch.save'd state dict (docs/design.md §7,
 * "PyTorch checkpoints"). It interprets the opcodes a state dict uses and nothing else, and it
 * never calls anything: the only globals it accepts are the tensor-rebuild functions, the typed
 * storage classes and collections.OrderedDict, whose effect it reproduces as data. Any other
 * global (os.system, builtins.eval, ...) is refused with its name and byte offset. */
#ifndef ZT_IO_PICKLE_READ_H
#define ZT_IO_PICKLE_READ_H

#include <stddef.h>
#include <stdint.h>

#include "zotune.h"

enum { ZT_PICKLE_MAX_DIMS = 8 };

/* One storage the pickle names through a persistent id ('storage', torch.XStorage, key,
 * location, numel); its bytes are the archive entry data/<key>. */
typedef struct zt_pickle_storage {
    char *key;
    const char *dtype; /* as safetensors spells it: "F32", "F16", "BF16", "I64", ... */
    int element_bytes;
    uint64_t numel;
} zt_pickle_storage;

/* One entry of the state dict: torch._utils._rebuild_tensor_v2's arguments, not yet checked
 * against the storage (the caller does that, naming the tensor). */
typedef struct zt_pickle_tensor {
    char *name;
    int storage; /* index into storages */
    int64_t storage_offset;
    int n_dims;
    int64_t shape[ZT_PICKLE_MAX_DIMS];
    int64_t stride[ZT_PICKLE_MAX_DIMS];
} zt_pickle_tensor;

typedef struct zt_pickle_state_dict {
    zt_pickle_tensor *tensors; /* in the pickle's order */
    int n_tensors;
    zt_pickle_storage *storages;
    int n_storages;
} zt_pickle_state_dict;

/* Interprets bytes[0..n) as a pickled {name: tensor} dict. what names the pickle in messages
 * ("dir/pytorch_model.bin: archive/data.pkl"). On failure *out is left empty. */
zt_status zt_pickle_read_state_dict(const char *what, const uint8_t *bytes, size_t n,
                                    zt_pickle_state_dict *out);
void zt_pickle_state_dict_free(zt_pickle_state_dict *sd);

#endif
