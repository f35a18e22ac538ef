/* Bad checkpoints are refused with an error that names the directory and the tensor at fault:
 * missing tensor, shape against config.json, unexpected tensor, untied lm_head, storage dtype,
 * truncated file. Each case rewrites the opt-pre fixture into a temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "fixture.h"
#include "opt/opt.h"
#include "zt_test.h"

static char tmp_dir[256];

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out) {
        fprintf(stderr, "FATAL: copy %s -> %s\n", from, to);
        exit(1);
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
}

typedef enum edit {
    EDIT_DROP,      /* leave tensor `target` out */
    EDIT_RESHAPE,   /* store `target` with one row fewer */
    EDIT_EXTRA,     /* add an unknown tensor */
    EDIT_UNTIED,    /* add lm_head.weight with different values */
    EDIT_INT_DTYPE, /* store `target` as I32 */
} edit;

/* Writes tmp_dir/model.safetensors: opt-pre's tensors with one edit applied. */
static void write_edited(const zt_safetensors *src, edit what, const char *target) {
    int n = zt_st_count(src);
    zt_st_write_tensor *out = calloc((size_t)n + 1, sizeof *out);
    int64_t(*shapes)[ZT_ST_MAX_DIMS] = calloc((size_t)n + 1, sizeof *shapes);
    int k = 0;
    const zt_st_tensor *embed = NULL;
    for (int i = 0; i < n; i++) {
        const zt_st_tensor *t = zt_st_get(src, i);
        if (strcmp(t->name, "model.decoder.embed_tokens.weight") == 0) embed = t;
        if (what == EDIT_DROP && strcmp(t->name, target) == 0) continue;
        memcpy(shapes[k], t->shape, sizeof shapes[k]);
        out[k] = (zt_st_write_tensor){t->name, t->dtype, t->n_dims, shapes[k], t->data};
        if (strcmp(t->name, target) == 0) {
            if (what == EDIT_RESHAPE) shapes[k][0] -= 1;
            if (what == EDIT_INT_DTYPE) out[k].dtype = "I32";
        }
        k++;
    }
    float *other = NULL;
    if (what == EDIT_EXTRA) {
        static const float value[2] = {1.0f, 2.0f};
        static const int64_t shape[1] = {2};
        out[k++] = (zt_st_write_tensor){"model.decoder.layers.0.self_attn.rotary.weight", "F32", 1,
                                        shape, value};
    }
    if (what == EDIT_UNTIED && embed) {
        other = malloc(embed->n_bytes);
        memcpy(other, embed->data, embed->n_bytes);
        other[0] += 1.0f;
        out[k++] = (zt_st_write_tensor){"lm_head.weight", embed->dtype, embed->n_dims, embed->shape,
                                        other};
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp_dir);
    ZT_REQUIRE_OK(zt_st_write(path, out, k, NULL, 0));
    free(other);
    free(shapes);
    free(out);
}

static void expect_load_error(zt_backend *be, zt_status want, const char *needle1,
                              const char *needle2, const char *what) {
    zt_model *m = NULL;
    zt_status s = zt_model_load(tmp_dir, be, &m);
    ZT_CHECK(s == want, "%s: status %s, want %s (%s)", what, zt_status_name(s),
             zt_status_name(want), zt_last_error());
    ZT_CHECK(m == NULL, "%s: a model was returned on failure", what);
    ZT_CHECK(strstr(zt_last_error(), needle1) != NULL, "%s: message '%s' lacks '%s'", what,
             zt_last_error(), needle1);
    ZT_CHECK(strstr(zt_last_error(), needle2) != NULL, "%s: message '%s' lacks '%s'", what,
             zt_last_error(), needle2);
    zt_model_free(m);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/zt_model_errors_XXXXXX");
    if (!mkdtemp(tmp_dir)) return 1;
    char src_dir[1024], path[1024], to[512];
    fixture_path(src_dir, sizeof src_dir, "opt-pre", NULL);
    fixture_path(path, sizeof path, "opt-pre", "config.json");
    snprintf(to, sizeof to, "%s/config.json", tmp_dir);
    copy_file(path, to);
    fixture_path(path, sizeof path, "opt-pre", "model.safetensors");
    zt_safetensors *src = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &src));
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &be));

    const char *fc1 = "model.decoder.layers.1.fc1.weight";
    write_edited(src, EDIT_DROP, fc1);
    expect_load_error(be, ZT_ERR_MISSING, fc1, tmp_dir, "missing tensor");
    write_edited(src, EDIT_RESHAPE, fc1);
    expect_load_error(be, ZT_ERR_SHAPE, fc1, "config.json", "shape mismatch");
    write_edited(src, EDIT_EXTRA, "");
    expect_load_error(be, ZT_ERR_FORMAT, "rotary", "unexpected", "unexpected tensor");
    write_edited(src, EDIT_UNTIED, "");
    expect_load_error(be, ZT_ERR_FORMAT, "lm_head.weight", "differs", "untied head");
    write_edited(src, EDIT_INT_DTYPE, fc1);
    expect_load_error(be, ZT_ERR_FORMAT, fc1, "I32", "integer storage dtype");

    /* truncated: the safetensors error surfaces through the model loader with the file name */
    write_edited(src, EDIT_DROP, "none");
    snprintf(path, sizeof path, "%s/model.safetensors", tmp_dir);
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    if (truncate(path, size - 100) != 0) return 1;
    expect_load_error(be, ZT_ERR_FORMAT, "model.safetensors", "", "truncated file");

    /* config.json that disagrees with nothing in it but is malformed */
    f = fopen(to, "w");
    fputs("{\"hidden_size\": 32,", f);
    fclose(f);
    expect_load_error(be, ZT_ERR_FORMAT, "config.json", "", "malformed config");

    zt_st_close(src);
    zt_backend_destroy(be);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp_dir);
    remove(path);
    remove(to);
    rmdir(tmp_dir);
    return zt_test_finish("test_model_errors");
}
