/* safetensors: strict reader (mmap, single file or sharded through an index) and writer.
 * Format: u64 LE header length N, N bytes of JSON, then the data buffer; offsets in the JSON are
 * relative to the buffer (docs/spec.md §2.1; sharded checkpoints §2.2). */
#ifndef ZT_IO_SAFETENSORS_H
#define ZT_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "zotune.h"

enum { ZT_ST_MAX_DIMS = 8 };

typedef struct zt_st_tensor {
    char *name;
    char dtype[16];   /* as spelled in the file: "F32", "F16", "BF16", "I32", "I64", ... */
    int element_bits; /* 32 for F32, 16 for F16/BF16, ... */
    int n_dims;
    int64_t shape[ZT_ST_MAX_DIMS];
    uint64_t n_elems;    /* product of shape (1 for a scalar) */
    const uint8_t *data; /* inside the read-only mapping; not aligned: read with memcpy */
    size_t n_bytes;
    const char *file_path; /* the shard it lives in */
} zt_st_tensor;

typedef struct zt_safetensors zt_safetensors;

/* Opens one .safetensors file and validates it completely (header bounds, JSON, dtypes,
 * byte sizes, offsets contiguous from 0 without holes or overlaps, buffer size). */
zt_status zt_st_open(const char *path, zt_safetensors **out);

/* Opens a model directory: model.safetensors.index.json (sharded) if present, else
 * model.safetensors; without either, PyTorch's pytorch_model.bin.index.json or
 * pytorch_model.bin (torch.save archives read by a restricted unpickler that never runs code;
 * the tensors then come in the same table). Every tensor in an index must exist in its shard
 * and vice versa. */
zt_status zt_st_open_dir(const char *dir, zt_safetensors **out);

/* Opens only a directory's PyTorch weights: pytorch_model.bin.index.json, else
 * pytorch_model.bin. */
zt_status zt_st_open_torch_dir(const char *dir, zt_safetensors **out);

void zt_st_close(zt_safetensors *st);

int zt_st_count(const zt_safetensors *st);
const zt_st_tensor *zt_st_get(const zt_safetensors *st, int index);         /* in name order */
const zt_st_tensor *zt_st_find(const zt_safetensors *st, const char *name); /* NULL if absent */
/* A value of "__metadata__" (of the first shard), or NULL. */
const char *zt_st_metadata(const zt_safetensors *st, const char *key);

/* The zotune storage dtype of a tensor: ZT_OK for F32/F16/BF16, ZT_ERR_FORMAT otherwise. */
zt_status zt_st_storage_dtype(const zt_st_tensor *t, zt_dtype *out);

/* ---- writer ---- */
typedef struct zt_st_write_tensor {
    const char *name;
    const char *dtype; /* "F32", "F16", "BF16", "I32", "I64" */
    int n_dims;
    const int64_t *shape;
    const void *data; /* host memory, n_elems * element size bytes */
} zt_st_write_tensor;

/* Writes a file atomically: path.tmp, fsync, rename. The header is padded with spaces to a
 * multiple of 8; tensors are laid out in the given order. metadata: n_metadata (key, value)
 * pairs as a flat array of 2*n_metadata strings (may be NULL). */
zt_status zt_st_write(const char *path, const zt_st_write_tensor *tensors, int n_tensors,
                      const char *const *metadata, int n_metadata);

#endif
