/* Sharded checkpoints (docs/spec.md §2.2): zt_st_open_dir opens a model directory through
 * model.safetensors.index.json when there is one, else its model.safetensors, else the same two
 * layouts of PyTorch checkpoints (pytorch_model.bin.index.json, pytorch_model.bin). Each shard is
 * opened once and validated like a single file, and the index and the shards must agree
 * exactly: every tensor the index maps is in its shard, and every tensor of a shard is mapped
 * to that shard. */
#include "io/safetensors_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "core/alloc.h"

/* Where a model directory's weights may be, in the order they are looked for: safetensors
 * first, then PyTorch's pickled checkpoints (torch_bin_read.c). */
typedef struct st_layout {
    const char *index_name, *single_name;
    zt_st_loader load;
} st_layout;

static const st_layout st_safetensors_layout = {"model.safetensors.index.json", "model.safetensors",
                                                zt_st_file_load};
static const st_layout st_torch_layout = {"pytorch_model.bin.index.json", "pytorch_model.bin",
                                          zt_torch_file_load};

static char *st_join_path(const char *dir, const char *name) {
    size_t dir_len = strlen(dir), name_len = strlen(name);
    bool needs_slash = dir_len > 0 && dir[dir_len - 1] != '/';
    char *joined = zt_malloc(dir_len + needs_slash + name_len + 1);
    if (!joined) return NULL;
    memcpy(joined, dir, dir_len);
    if (needs_slash) joined[dir_len] = '/';
    memcpy(joined + dir_len + needs_slash, name, name_len + 1);
    return joined;
}

/* 1 if path exists, 0 if not, or a failure status for anything else (e.g. permission). */
static zt_status st_path_exists(const char *path, int *exists) {
    struct stat info;
    if (stat(path, &info) == 0) {
        *exists = 1;
        return ZT_OK;
    }
    if (errno == ENOENT || errno == ENOTDIR) {
        *exists = 0;
        return ZT_OK;
    }
    return zt_fail(ZT_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
}

static zt_status st_read_text_file(const char *path, char **text_out) {
    FILE *stream = fopen(path, "rb");
    if (!stream) return zt_fail(ZT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *text = zt_malloc(cap);
    zt_status status = ZT_OK;
    while (text) {
        if (len + 1 >= cap) {
            if (cap > st_max_header_bytes) {
                status = zt_fail(ZT_ERR_FORMAT, "%s: larger than %" PRIu64 " bytes", path,
                                 st_max_header_bytes);
                break;
            }
            char *grown = zt_realloc(text, cap * 2);
            if (!grown) break;
            text = grown;
            cap *= 2;
        }
        size_t got = fread(text + len, 1, cap - 1 - len, stream);
        len += got;
        if (got == 0) break;
    }
    if (status == ZT_OK && !text) status = st_nomem(path);
    if (status == ZT_OK && ferror(stream))
        status = zt_fail(ZT_ERR_IO, "%s: read error: %s", path, strerror(errno));
    fclose(stream);
    if (status != ZT_OK) {
        free(text);
        return status;
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        return zt_fail(ZT_ERR_FORMAT, "%s: contains a NUL byte", path);
    }
    *text_out = text;
    return ZT_OK;
}

typedef struct st_index_entry {
    const char *tensor;
    const char *shard;
} st_index_entry;

static int st_compare_index_entries(const void *a, const void *b) {
    return strcmp(((const st_index_entry *)a)->tensor, ((const st_index_entry *)b)->tensor);
}

static bool st_is_plain_file_name(const char *name) {
    return name[0] != '\0' && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
           strchr(name, '/') == NULL && strchr(name, '\\') == NULL;
}

/* Reads the index's weight_map into entries sorted by tensor name. */
static zt_status st_parse_index(const char *index_path, const cJSON *root, st_index_entry **out,
                                int *n_out) {
    if (!cJSON_IsObject(root))
        return zt_fail(ZT_ERR_FORMAT, "%s: top level is not a JSON object", index_path);
    const cJSON *metadata = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (metadata && !cJSON_IsObject(metadata))
        return zt_fail(ZT_ERR_FORMAT, "%s: \"metadata\" is not a JSON object", index_path);
    const cJSON *weight_map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!weight_map) return zt_fail(ZT_ERR_FORMAT, "%s: missing \"weight_map\"", index_path);
    if (!cJSON_IsObject(weight_map))
        return zt_fail(ZT_ERR_FORMAT, "%s: \"weight_map\" is not a JSON object", index_path);
    int n = st_json_count_children(weight_map);
    if (n == 0) return zt_fail(ZT_ERR_FORMAT, "%s: \"weight_map\" is empty", index_path);
    st_index_entry *entries = zt_calloc((size_t)n, sizeof *entries);
    if (!entries) return st_nomem(index_path);
    int i = 0;
    for (const cJSON *item = weight_map->child; item; item = item->next, i++) {
        if (!cJSON_IsString(item)) {
            free(entries);
            return zt_fail(ZT_ERR_FORMAT, "%s: weight_map entry '%s' is not a string", index_path,
                           item->string);
        }
        if (!st_is_plain_file_name(item->valuestring)) {
            free(entries);
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: weight_map entry '%s' names shard \"%s\", which is not a plain "
                           "file name in the model directory",
                           index_path, item->string, item->valuestring);
        }
        entries[i].tensor = item->string;
        entries[i].shard = item->valuestring;
    }
    qsort(entries, (size_t)n, sizeof *entries, st_compare_index_entries);
    for (i = 1; i < n; i++)
        if (strcmp(entries[i - 1].tensor, entries[i].tensor) == 0) {
            zt_status status = zt_fail(ZT_ERR_FORMAT, "%s: weight_map lists tensor '%s' twice",
                                       index_path, entries[i].tensor);
            free(entries);
            return status;
        }
    *out = entries;
    *n_out = n;
    return ZT_OK;
}

/* Opens every shard once and checks that the index and the shards agree tensor by tensor. */
static zt_status st_open_shards(const char *dir, const char *index_path, st_index_entry *entries,
                                int n_entries, zt_st_loader load, zt_safetensors *st) {
    const char **shards = zt_malloc((size_t)n_entries * sizeof *shards);
    int *shard_counts = NULL;
    zt_st_tensor **shard_tensors = NULL;
    zt_status status = ZT_OK;
    if (!shards) return st_nomem(index_path);
    for (int i = 0; i < n_entries; i++)
        shards[i] = entries[i].shard;
    qsort(shards, (size_t)n_entries, sizeof *shards, st_compare_strings);
    int n_shards = 0;
    for (int i = 0; i < n_entries; i++)
        if (n_shards == 0 || strcmp(shards[n_shards - 1], shards[i]) != 0)
            shards[n_shards++] = shards[i];

    st->files = zt_calloc((size_t)n_shards, sizeof *st->files);
    shard_counts = zt_calloc((size_t)n_shards, sizeof *shard_counts);
    shard_tensors = zt_calloc((size_t)n_shards, sizeof *shard_tensors);
    if (!st->files || !shard_counts || !shard_tensors) {
        status = st_nomem(index_path);
        goto done;
    }
    int total = 0;
    for (int s = 0; s < n_shards; s++) {
        char *shard_path = st_join_path(dir, shards[s]);
        if (!shard_path) {
            status = st_nomem(index_path);
            goto done;
        }
        int exists = 0;
        status = st_path_exists(shard_path, &exists);
        if (status == ZT_OK && !exists)
            status = zt_fail(ZT_ERR_MISSING, "%s: shard \"%s\" listed in the index does not exist",
                             index_path, shard_path);
        if (status == ZT_OK)
            status = load(shard_path, &st->files[s], &shard_tensors[s], &shard_counts[s]);
        free(shard_path);
        if (status != ZT_OK) goto done;
        st->n_files = s + 1;
        total += shard_counts[s];

        for (int t = 0; t < shard_counts[s]; t++) {
            st_index_entry key = {.tensor = shard_tensors[s][t].name};
            const st_index_entry *listed =
                bsearch(&key, entries, (size_t)n_entries, sizeof key, st_compare_index_entries);
            if (!listed) {
                status = zt_fail(ZT_ERR_FORMAT, "%s: tensor '%s' is not listed in %s",
                                 st->files[s].path, key.tensor, index_path);
                goto done;
            }
            if (strcmp(listed->shard, shards[s]) != 0) {
                status = zt_fail(ZT_ERR_FORMAT,
                                 "%s: tensor '%s' is in shard %s but the index maps it to %s",
                                 index_path, key.tensor, shards[s], listed->shard);
                goto done;
            }
        }
    }
    for (int i = 0; i < n_entries; i++) {
        const char **shard = bsearch(&entries[i].shard, shards, (size_t)n_shards, sizeof *shards,
                                     st_compare_strings);
        int s = (int)(shard - shards);
        zt_st_tensor key = {.name = (char *)entries[i].tensor};
        if (!bsearch(&key, shard_tensors[s], (size_t)shard_counts[s], sizeof key,
                     st_compare_tensor_names)) {
            status = zt_fail(ZT_ERR_MISSING, "%s: tensor '%s' is mapped to shard %s but not in it",
                             index_path, entries[i].tensor, entries[i].shard);
            goto done;
        }
    }

    st->tensors = zt_calloc((size_t)total + 1, sizeof *st->tensors);
    if (!st->tensors) {
        status = st_nomem(index_path);
        goto done;
    }
    for (int s = 0; s < n_shards; s++) {
        memcpy(st->tensors + st->n_tensors, shard_tensors[s],
               (size_t)shard_counts[s] * sizeof *st->tensors);
        st->n_tensors += shard_counts[s];
        free(shard_tensors[s]); /* the names now belong to st->tensors */
        shard_tensors[s] = NULL;
        shard_counts[s] = 0;
    }
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, st_compare_tensor_names);

done:
    if (shard_tensors)
        for (int s = 0; s < n_shards; s++) {
            st_free_tensor_names(shard_tensors[s], shard_counts[s]);
            free(shard_tensors[s]);
        }
    free(shard_tensors);
    free(shard_counts);
    free(shards);
    return status;
}

static zt_status st_open_sharded(const char *dir, const char *index_path, zt_st_loader load,
                                 zt_safetensors **out) {
    char *text = NULL;
    ZT_TRY(st_read_text_file(index_path, &text));
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &parse_end, 1);
    if (!root) {
        size_t at = parse_end ? (size_t)(parse_end - text) : 0;
        free(text);
        return zt_fail(ZT_ERR_FORMAT, "%s: invalid JSON (error near byte %zu)", index_path, at);
    }
    free(text);
    st_index_entry *entries = NULL;
    int n_entries = 0;
    zt_status status = st_parse_index(index_path, root, &entries, &n_entries);
    if (status != ZT_OK) {
        cJSON_Delete(root);
        return status;
    }
    zt_safetensors *st = zt_calloc(1, sizeof *st);
    if (!st) status = st_nomem(index_path);
    if (status == ZT_OK) status = st_open_shards(dir, index_path, entries, n_entries, load, st);
    free(entries);
    cJSON_Delete(root);
    if (status != ZT_OK) {
        zt_st_close(st);
        return status;
    }
    *out = st;
    return ZT_OK;
}

zt_status zt_st_open_single(const char *path, zt_st_loader load, zt_safetensors **out) {
    zt_safetensors *st = zt_calloc(1, sizeof *st);
    st_file *file = zt_calloc(1, sizeof *file);
    if (!st || !file) {
        free(st);
        free(file);
        return st_nomem(path);
    }
    zt_status status = load(path, file, &st->tensors, &st->n_tensors);
    if (status != ZT_OK) {
        free(file);
        free(st);
        return status;
    }
    st->files = file;
    st->n_files = 1;
    *out = st;
    return ZT_OK;
}

/* Opens dir's weights in one of the layouts; *found says whether any of their files exists
 * (a failure to open one that exists is returned as is). */
static zt_status st_open_layouts(const char *dir, const st_layout *const *layouts, int n_layouts,
                                 int *found, zt_safetensors **out) {
    *found = 0;
    for (int i = 0; i < n_layouts && !*found; i++) {
        char *index_path = st_join_path(dir, layouts[i]->index_name);
        char *single_path = st_join_path(dir, layouts[i]->single_name);
        zt_status status = index_path && single_path ? ZT_OK : st_nomem(dir);
        int index_exists = 0, single_exists = 0;
        if (status == ZT_OK) status = st_path_exists(index_path, &index_exists);
        if (status == ZT_OK && !index_exists) status = st_path_exists(single_path, &single_exists);
        if (status == ZT_OK && index_exists)
            status = st_open_sharded(dir, index_path, layouts[i]->load, out);
        else if (status == ZT_OK && single_exists)
            status = zt_st_open_single(single_path, layouts[i]->load, out);
        *found = index_exists || single_exists;
        free(index_path);
        free(single_path);
        if (status != ZT_OK) return status;
    }
    return ZT_OK;
}

/* "<dir>/<name>" for each name, in a message listing where weights were looked for. */
static zt_status st_fail_no_weights(const char *dir, const char *what, const char *const *names,
                                    int n) {
    char listed[4 * 4200] = "";
    size_t used = 0;
    bool needs_slash = dir[0] != '\0' && dir[strlen(dir) - 1] != '/';
    for (int i = 0; i < n && used < sizeof listed; i++)
        used += (size_t)snprintf(listed + used, sizeof listed - used, "%s%s%s%s",
                                 i == 0 ? "" : " nor ", dir, needs_slash ? "/" : "", names[i]);
    return zt_fail(ZT_ERR_MISSING, "%s: no %s: neither %s exists", dir, what, listed);
}

zt_status zt_st_open_dir(const char *dir, zt_safetensors **out) {
    if (!out || !dir) return zt_fail(ZT_ERR_INVALID_ARG, "zt_st_open_dir: NULL argument");
    *out = NULL;
    static const st_layout *const layouts[] = {&st_safetensors_layout, &st_torch_layout};
    int found = 0;
    ZT_TRY(st_open_layouts(dir, layouts, 2, &found, out));
    static const char *const names[] = {"model.safetensors.index.json", "model.safetensors",
                                        "pytorch_model.bin.index.json", "pytorch_model.bin"};
    return found ? ZT_OK : st_fail_no_weights(dir, "weights", names, 4);
}

zt_status zt_st_open_torch_dir(const char *dir, zt_safetensors **out) {
    if (!out || !dir) return zt_fail(ZT_ERR_INVALID_ARG, "zt_st_open_torch_dir: NULL argument");
    *out = NULL;
    static const st_layout *const layouts[] = {&st_torch_layout};
    int found = 0;
    ZT_TRY(st_open_layouts(dir, layouts, 1, &found, out));
    static const char *const names[] = {"pytorch_model.bin.index.json", "pytorch_model.bin"};
    return found ? ZT_OK : st_fail_no_weights(dir, "PyTorch weights", names, 2);
}
