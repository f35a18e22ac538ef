/* A sharded checkpoint directory: model.safetensors.index.json and two shards, cut from one
 * input at FUZZ_SEPARATOR (an input without one is a lone model.safetensors). An accepted
 * directory must agree with its parts: each tensor is the one its shard holds when opened
 * alone, the index maps it to that shard, and the index and the shards list the same tensors. */
#include <cjson/cJSON.h>
#include <string.h>

#include "fuzz_common.h"
#include "io/safetensors.h"

static const char *const files[] = {"model.safetensors.index.json",
                                    "model-00001-of-00002.safetensors",
                                    "model-00002-of-00002.safetensors", "model.safetensors"};
enum { N_FILES = 4, N_SHARDS = 2 };

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The tensor as its shard, opened alone, holds it. */
static void check_against_shard(const zt_st_tensor *t) {
    zt_safetensors *shard = NULL;
    FUZZ_CHECK(zt_st_open(t->file_path, &shard) == ZT_OK, "'%s': its shard %s does not open alone",
               t->name, t->file_path);
    const zt_st_tensor *u = zt_st_find(shard, t->name);
    FUZZ_CHECK(u && !strcmp(u->dtype, t->dtype) && u->n_dims == t->n_dims &&
                   u->n_bytes == t->n_bytes &&
                   !memcmp(u->shape, t->shape, (size_t)t->n_dims * sizeof t->shape[0]) &&
                   !memcmp(u->data, t->data, t->n_bytes),
               "'%s' differs from the copy in its shard %s", t->name, t->file_path);
    zt_st_close(shard);
}

static void check_sharded(const zt_safetensors *st, const uint8_t *index, size_t index_size) {
    cJSON *root = cJSON_ParseWithLength((const char *)index, index_size);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    FUZZ_CHECK(cJSON_IsObject(map), "an accepted index has no weight_map object");
    int n = zt_st_count(st);
    FUZZ_CHECK(cJSON_GetArraySize(map) == n, "the index lists %d tensors, the reader has %d",
               cJSON_GetArraySize(map), n);
    for (const cJSON *entry = map->child; entry; entry = entry->next) {
        const zt_st_tensor *t = zt_st_find(st, entry->string);
        FUZZ_CHECK(t && !strcmp(base_name(t->file_path), entry->valuestring),
                   "'%s' is not read from the shard %s the index names", entry->string,
                   entry->valuestring);
    }
    cJSON_Delete(root);
    for (int i = 0; i < n; i++) {
        const zt_st_tensor *t = zt_st_get(st, i);
        if (i > 0) FUZZ_CHECK(strcmp(zt_st_get(st, i - 1)->name, t->name) < 0, "names unsorted");
        FUZZ_CHECK(zt_st_find(st, t->name) == t, "'%s' is not found by name", t->name);
        check_against_shard(t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *parts[1 + N_SHARDS];
    size_t sizes[1 + N_SHARDS];
    int n_parts = fuzz_split(data, size, parts, sizes, 1 + N_SHARDS);
    fuzz_remove(files, N_FILES);
    char path[512];
    if (n_parts == 1) {
        fuzz_put(files[3], data, size, path, sizeof path);
    } else {
        for (int i = 0; i < n_parts; i++) fuzz_put(files[i], parts[i], sizes[i], NULL, 0);
    }
    zt_safetensors *st = NULL;
    fuzz_expect_begin();
    zt_status s = zt_st_open_dir(fuzz_dir(), &st);
    fuzz_expect_reported(s, "zt_st_open_dir");
    if (s != ZT_OK) {
        FUZZ_CHECK(st == NULL, "a failed open handed out a reader");
        return 0;
    }
    if (n_parts == 1) {
        zt_safetensors *alone = NULL;
        FUZZ_CHECK(zt_st_open(path, &alone) == ZT_OK && zt_st_count(alone) == zt_st_count(st),
                   "the directory and its model.safetensors disagree");
        zt_st_close(alone);
    } else {
        check_sharded(st, parts[0], sizes[0]);
    }
    zt_st_close(st);
    return 0;
}
