/* zotune convert (convert.h): read through the same strict reader as loading (torch_bin_read.c),
 * write through the safetensors writer, so a converted directory holds exactly the bytes zotune
 * would have loaded from the .bin. */
#include "io/convert.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/path.h"
#include "core/status.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

/* The files of a model directory besides its weights that a converted one should carry. */
static const char *const companion_files[] = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
};

zt_status zt_prepare_new_dir(const char *out_dir, const char *command) {
    struct stat info;
    if (stat(out_dir, &info) != 0) {
        if (errno != ENOENT)
            return zt_fail(ZT_ERR_IO, "%s: cannot stat: %s", out_dir, strerror(errno));
        return zt_make_dirs(out_dir);
    }
    if (!S_ISDIR(info.st_mode))
        return zt_fail(ZT_ERR_INVALID_ARG, "OUT_DIR %s exists and is not a directory", out_dir);
    DIR *dir = opendir(out_dir);
    if (!dir) return zt_fail(ZT_ERR_IO, "%s: cannot list: %s", out_dir, strerror(errno));
    const struct dirent *entry;
    int empty = 1;
    while (empty && (entry = readdir(dir)) != NULL)
        empty = strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0;
    closedir(dir);
    if (!empty)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "OUT_DIR %s is not empty; %s never overwrites: give a new or empty "
                       "directory",
                       out_dir, command);
    return ZT_OK;
}

static zt_status read_whole_file(const char *path, char **content, size_t *size) {
    FILE *in = fopen(path, "rb");
    if (!in) return zt_fail(ZT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    *content = NULL;
    *size = 0;
    FILE *buffer = open_memstream(content, size);
    char chunk[65536];
    size_t n;
    int ok = buffer != NULL;
    while (ok && (n = fread(chunk, 1, sizeof chunk, in)) > 0)
        ok = fwrite(chunk, 1, n, buffer) == n;
    ok = ok && !ferror(in);
    fclose(in);
    if (buffer && fclose(buffer) != 0) ok = 0;
    if (!ok) {
        free(*content);
        *content = NULL;
        return zt_fail(ZT_ERR_IO, "%s: cannot read", path);
    }
    return ZT_OK;
}

zt_status zt_copy_companion_files(const char *in_dir, const char *out_dir) {
    for (size_t i = 0; i < sizeof companion_files / sizeof companion_files[0]; i++) {
        char from[ZT_PATH_MAX], to[ZT_PATH_MAX];
        ZT_TRY(zt_path_join(from, sizeof from, in_dir, companion_files[i]));
        ZT_TRY(zt_path_join(to, sizeof to, out_dir, companion_files[i]));
        struct stat info;
        if (stat(from, &info) != 0) continue;
        char *content = NULL;
        size_t size = 0;
        ZT_TRY(read_whole_file(from, &content, &size));
        const void *chunks[] = {content};
        size_t chunk_bytes[] = {size};
        zt_status s = zt_write_file_atomic(to, chunks, chunk_bytes, 1);
        free(content);
        ZT_TRY(s);
    }
    return ZT_OK;
}

static zt_status write_weights(const zt_safetensors *st, const char *path) {
    int n = zt_st_count(st);
    zt_st_write_tensor *tensors = zt_calloc((size_t)n + 1, sizeof *tensors);
    if (!tensors) return zt_fail(ZT_ERR_NOMEM, "%s: allocating the tensor list", path);
    for (int i = 0; i < n; i++) {
        const zt_st_tensor *t = zt_st_get(st, i);
        tensors[i] = (zt_st_write_tensor){t->name, t->dtype, t->n_dims, t->shape, t->data};
    }
    static const char *const metadata[] = {"format", "pt"};
    zt_status s = zt_st_write(path, tensors, n, metadata, 1);
    free(tensors);
    return s;
}

zt_status zt_convert_torch_dir(const char *in_dir, const char *out_dir, int *n_tensors) {
    const char *inputs[] = {in_dir};
    const char *input_options[] = {"IN_DIR"};
    ZT_TRY(zt_check_output_apart(out_dir, "OUT_DIR", inputs, input_options, 1));
    zt_safetensors *st = NULL;
    ZT_TRY(zt_st_open_torch_dir(in_dir, &st));
    char path[ZT_PATH_MAX];
    zt_status s = zt_path_join(path, sizeof path, out_dir, "model.safetensors");
    if (s == ZT_OK) s = zt_prepare_new_dir(out_dir, "convert");
    if (s == ZT_OK) s = write_weights(st, path);
    if (s == ZT_OK) s = zt_copy_companion_files(in_dir, out_dir);
    if (s == ZT_OK && n_tensors) *n_tensors = zt_st_count(st);
    zt_st_close(st);
    return s;
}
