/* PyTorch checkpoints (pytorch_model.bin, docs/design.md §7): torch.save's zip archive
 * (zip_read.c) holds <top>/data.pkl, the pickled state dict (read by the restricted unpickler,
 * pickle_read.c), and one stored entry <top>/data/<key> per storage. Each tensor becomes a
 * zt_st_tensor pointing into the mapping at its storage offset, so the rest of zotune sees the
 * same table a safetensors file gives; tensors sharing a storage (a tied head) share bytes. */
#include "io/safetensors_internal.h"

#include <inttypes.h>
#include <stdio.h>

#include "core/alloc.h"
#include "io/pickle_read.h"
#include "io/zip_read.h"

_Static_assert((int)ZT_PICKLE_MAX_DIMS <= (int)ZT_ST_MAX_DIMS, "a pickled rank must fit a tensor");

static const char pickle_suffix[] = "data.pkl";

/* The single <top>/data.pkl; *prefix_len is the length of "<top>/". */
static zt_status find_data_pkl(const char *path, const zt_zip *zip, const zt_zip_entry **out,
                               size_t *prefix_len) {
    *out = NULL;
    const size_t suffix_len = sizeof pickle_suffix - 1;
    for (int i = 0; i < zip->n_entries; i++) {
        const char *name = zip->entries[i].name;
        size_t len = strlen(name);
        if (len < suffix_len || strcmp(name + len - suffix_len, pickle_suffix) != 0) continue;
        size_t prefix = len - suffix_len;
        const char *slash = memchr(name, '/', prefix);
        if (prefix != 0 && (slash == NULL || slash != name + prefix - 1)) continue;
        if (*out)
            return zt_fail(ZT_ERR_FORMAT, "%s: holds both '%s' and '%s'; one data.pkl expected",
                           path, (*out)->name, name);
        *out = &zip->entries[i];
        *prefix_len = prefix;
    }
    if (!*out)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: a zip archive without data.pkl: not a torch.save checkpoint", path);
    return ZT_OK;
}

/* The archive entry "<top>/<middle><key>", or NULL. */
static const zt_zip_entry *find_sibling(const zt_zip *zip, const char *pkl_name, size_t prefix_len,
                                        const char *middle, const char *key) {
    char name[1024];
    int n = snprintf(name, sizeof name, "%.*s%s%s", (int)prefix_len, pkl_name, middle, key);
    if (n < 0 || (size_t)n >= sizeof name) return NULL;
    return zt_zip_find(zip, name);
}

static zt_status check_byteorder(const char *path, const zt_zip *zip, const zt_zip_entry *pkl,
                                 size_t prefix_len) {
    const zt_zip_entry *order = find_sibling(zip, pkl->name, prefix_len, "", "byteorder");
    if (!order) return ZT_OK; /* torch before 2.1 wrote none, and only little-endian */
    if (order->size != 6 || memcmp(order->data, "little", 6) != 0)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: entry '%s' does not say \"little\": big-endian checkpoints are not "
                       "read",
                       path, order->name);
    return ZT_OK;
}

/* Each storage's entry, whose size must be exactly the storage's. */
static zt_status resolve_storages(const char *path, const zt_zip *zip, const zt_zip_entry *pkl,
                                  size_t prefix_len, const zt_pickle_state_dict *sd,
                                  const zt_zip_entry **entries) {
    for (int s = 0; s < sd->n_storages; s++) {
        const zt_pickle_storage *storage = &sd->storages[s];
        entries[s] = find_sibling(zip, pkl->name, prefix_len, "data/", storage->key);
        if (!entries[s])
            return zt_fail(ZT_ERR_FORMAT, "%s: storage '%s' has no entry '%.*sdata/%s'", path,
                           storage->key, (int)prefix_len, pkl->name, storage->key);
        uint64_t want = storage->numel * (uint64_t)storage->element_bytes;
        if (entries[s]->size != want)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: entry '%s' holds %" PRIu64 " bytes; storage '%s' of %" PRIu64
                           " %s elements needs %" PRIu64,
                           path, entries[s]->name, entries[s]->size, storage->key, storage->numel,
                           storage->dtype, want);
    }
    return ZT_OK;
}

static void format_dims(char *buf, size_t size, int n_dims, const int64_t *dims) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < n_dims && used < size; d++)
        used +=
            (size_t)snprintf(buf + used, size - used, d ? ", %lld" : "%lld", (long long)dims[d]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* One pickled tensor as a table entry: contiguous, inside its storage. */
static zt_status make_tensor(const char *path, const zt_pickle_tensor *t,
                             const zt_pickle_storage *storage, const zt_zip_entry *entry,
                             const char *file_path, zt_st_tensor *out) {
    char shape[160], stride[160];
    format_dims(shape, sizeof shape, t->n_dims, t->shape);
    format_dims(stride, sizeof stride, t->n_dims, t->stride);
    uint64_t n_elems = 1;
    int has_zero = 0, overflows = 0;
    for (int d = 0; d < t->n_dims; d++) {
        uint64_t extent = (uint64_t)t->shape[d];
        has_zero |= extent == 0;
        if (extent != 0 && n_elems > UINT64_MAX / extent)
            overflows = 1;
        else
            n_elems *= extent;
    }
    if (has_zero) n_elems = 0;
    uint64_t offset = (uint64_t)t->storage_offset;
    if ((overflows && !has_zero) || offset > storage->numel || n_elems > storage->numel - offset)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: tensor '%s' (shape %s at offset %" PRIu64
                       ") runs past the end of storage '%s' (%" PRIu64 " elements)",
                       path, t->name, shape, offset, storage->key, storage->numel);
    /* Strides of size-1 dimensions do not move through memory, so torch leaves them free. */
    uint64_t expected_stride = 1;
    for (int d = t->n_dims - 1; d >= 0 && n_elems != 0; d--) {
        if (t->shape[d] != 1 && (uint64_t)t->stride[d] != expected_stride)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: tensor '%s' is not contiguous (shape %s, stride %s); save it "
                           "with .contiguous()",
                           path, t->name, shape, stride);
        expected_stride *= (uint64_t)t->shape[d];
    }
    memset(out, 0, sizeof *out);
    snprintf(out->dtype, sizeof out->dtype, "%s", storage->dtype);
    out->element_bits = 8 * storage->element_bytes;
    out->n_dims = t->n_dims;
    memcpy(out->shape, t->shape, (size_t)t->n_dims * sizeof *t->shape);
    out->n_elems = n_elems;
    out->data = entry->data + offset * (uint64_t)storage->element_bytes;
    out->n_bytes = (size_t)(n_elems * (uint64_t)storage->element_bytes);
    out->file_path = file_path;
    return ZT_OK;
}

static zt_status build_table(const char *path, const zt_pickle_state_dict *sd,
                             const zt_zip_entry *const *entries, const char *file_path,
                             zt_st_tensor **tensors_out, int *n_out) {
    zt_st_tensor *tensors = zt_calloc((size_t)sd->n_tensors + 1, sizeof *tensors);
    if (!tensors) return st_nomem(path);
    zt_status status = ZT_OK;
    int n = 0;
    for (; n < sd->n_tensors && status == ZT_OK; n++) {
        const zt_pickle_tensor *t = &sd->tensors[n];
        status = make_tensor(path, t, &sd->storages[t->storage], entries[t->storage], file_path,
                             &tensors[n]);
        tensors[n].name = zt_malloc(strlen(t->name) + 1);
        if (status == ZT_OK && !tensors[n].name) status = st_nomem(path);
        if (tensors[n].name) strcpy(tensors[n].name, t->name);
    }
    if (status == ZT_OK) {
        qsort(tensors, (size_t)n, sizeof *tensors, st_compare_tensor_names);
        for (int i = 1; i < n && status == ZT_OK; i++)
            if (strcmp(tensors[i - 1].name, tensors[i].name) == 0)
                status = zt_fail(ZT_ERR_FORMAT, "%s: the state dict holds tensor '%s' twice", path,
                                 tensors[i].name);
    }
    if (status != ZT_OK) {
        st_free_tensor_names(tensors, n);
        free(tensors);
        return status;
    }
    *tensors_out = tensors;
    *n_out = n;
    return ZT_OK;
}

static zt_status read_archive(const char *path, st_file *file, zt_st_tensor **tensors_out,
                              int *n_out) {
    if (file->map_bytes >= 2 && file->map[0] == 0x80 && file->map[1] <= 5)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: a legacy torch.save file (torch before 1.6, not a zip archive); load "
                       "and re-save it with a current torch",
                       path);
    zt_zip zip;
    ZT_TRY(zt_zip_read(path, file->map, file->map_bytes, &zip));
    zt_pickle_state_dict sd;
    memset(&sd, 0, sizeof sd);
    const zt_zip_entry *pkl = NULL, **entries = NULL;
    size_t prefix_len = 0;
    char what[4200];
    zt_status status = find_data_pkl(path, &zip, &pkl, &prefix_len);
    if (status == ZT_OK) status = check_byteorder(path, &zip, pkl, prefix_len);
    if (status == ZT_OK) status = zt_zip_check_crc(path, pkl);
    if (status == ZT_OK) {
        snprintf(what, sizeof what, "%s: %s", path, pkl->name);
        status = zt_pickle_read_state_dict(what, pkl->data, (size_t)pkl->size, &sd);
    }
    if (status == ZT_OK) {
        entries = zt_calloc((size_t)sd.n_storages + 1, sizeof *entries);
        if (!entries) status = st_nomem(path);
    }
    if (status == ZT_OK) status = resolve_storages(path, &zip, pkl, prefix_len, &sd, entries);
    if (status == ZT_OK) status = build_table(path, &sd, entries, file->path, tensors_out, n_out);
    free(entries);
    zt_pickle_state_dict_free(&sd);
    zt_zip_free(&zip);
    return status;
}

zt_status zt_torch_file_load(const char *path, st_file *file, zt_st_tensor **tensors_out,
                             int *n_out) {
    ZT_TRY(zt_st_file_map(path, file));
    zt_status status = read_archive(path, file, tensors_out, n_out);
    if (status != ZT_OK) zt_st_file_release(file);
    return status;
}
