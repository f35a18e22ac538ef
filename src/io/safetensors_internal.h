/* What the safetensors reader (safetensors_read.c), the sharded-checkpoint loader
 * (safetensors_index.c) and the writer (safetensors_write.c) share; not part of the API, which
 * is safetensors.h. Format: docs/spec.md §2.1. */
#ifndef ZT_IO_SAFETENSORS_INTERNAL_H
#define ZT_IO_SAFETENSORS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/status.h"
#include "io/safetensors.h"

enum { ST_LENGTH_PREFIX_BYTES = 8 };

/* The reference implementation's MAX_HEADER_SIZE: a larger header means a corrupt file, and
 * refusing it keeps a bad length field from turning into a huge allocation. */
static const uint64_t st_max_header_bytes = 100000000;

/* JSON numbers arrive as doubles; above 2^53 distinct integers collapse, so larger values cannot
 * be trusted as shapes or offsets. */
static const double st_max_exact_integer = 9007199254740992.0;

typedef struct st_file {
    char *path;
    uint8_t *map;
    size_t map_bytes;
    char **metadata; /* key, value, key, value, ... */
    int n_metadata;
} st_file;

struct zt_safetensors {
    st_file *files;
    int n_files;
    zt_st_tensor *tensors; /* sorted by name */
    int n_tensors;
};

static inline zt_status st_nomem(const char *path) {
    return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", path);
}

static inline int st_json_count_children(const cJSON *item) {
    int count = 0;
    for (const cJSON *child = item->child; child; child = child->next)
        count++;
    return count;
}

static inline int st_compare_tensor_names(const void *a, const void *b) {
    return strcmp(((const zt_st_tensor *)a)->name, ((const zt_st_tensor *)b)->name);
}

static inline void st_free_tensor_names(zt_st_tensor *tensors, int n) {
    if (!tensors) return;
    for (int i = 0; i < n; i++)
        free(tensors[i].name);
}

static inline int st_compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- defined in safetensors_read.c ---- */

/* Bits per element of a dtype the format defines ("F32" -> 32, "F4" -> 4), or 0 for any other
 * name. The one dtype table, so the reader and the writer accept the same names. */
int zt_st_dtype_bits(const char *name);

/* Returns the offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code
 * points above U+10FFFF included), or n when the text is valid. */
size_t zt_st_utf8_invalid_at(const uint8_t *text, size_t n);

/* Maps path read-only into a fresh file (map NULL for an empty file); on failure file is
 * released. */
zt_status zt_st_file_map(const char *path, st_file *file);
void zt_st_file_release(st_file *file);

/* Maps one file and validates it; on success file owns the mapping and *tensors_out (names
 * malloc'd) is sorted by name. On failure file is released. */
zt_status zt_st_file_load(const char *path, st_file *file, zt_st_tensor **tensors_out, int *n_out);

/* ---- defined in torch_bin_read.c ---- */

/* Maps one torch.save archive (pytorch_model.bin) and reads its state dict into the same table a
 * safetensors file gives: tensors point into the mapping (tied ones share bytes), sorted by
 * name. On failure file is released. */
zt_status zt_torch_file_load(const char *path, st_file *file, zt_st_tensor **tensors_out,
                             int *n_out);

/* A file loader: zt_st_file_load or zt_torch_file_load. */
typedef zt_status (*zt_st_loader)(const char *path, st_file *file, zt_st_tensor **tensors_out,
                                  int *n_out);

/* One file read by `load` (safetensors or a PyTorch archive) as a table of one shard. */
zt_status zt_st_open_single(const char *path, zt_st_loader load, zt_safetensors **out);

#endif
