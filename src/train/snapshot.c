#include "train/snapshot.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/path.h"
#include "core/status.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void remove_tree(const char *dir) {
    static const char *const files[] = {"model.safetensors",         "config.json",
                                        "optimizer.safetensors",     "trainer.json",
                                        "adapter_model.safetensors", "adapter_config.json"};
    char path[ZT_PATH_MAX];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (zt_path_join(path, sizeof path, dir, files[i]) == ZT_OK) unlink(path);
    rmdir(dir);
}

/* One tensor's state as the file holds it: this rank's, or (rank 0 of a pipeline) received
 * from the stage holding it. */
typedef struct state_entry {
    const char *name;
    size_t n_elems;
    const float *state; /* backend memory; NULL: fetched by id */
    uint32_t tensor_id;
} state_entry;

/* Every trainable tensor in table order, as one process's set lists them: this rank's params
 * merged with the ids other pipeline stages hold (both ascending). */
static int list_state(const zt_model *model, const zt_param_set *ps, state_entry *out) {
    int n = 0, own = 0, other = 0;
    while (own < ps->n_params || other < ps->n_elsewhere) {
        const int take_own =
            other == ps->n_elsewhere ||
            (own < ps->n_params && ps->params[own].tensor_id < ps->elsewhere_ids[other]);
        if (take_own) {
            const zt_param *p = &ps->params[own++];
            out[n++] = (state_entry){p->name, p->n_elems, p->state, p->tensor_id};
        } else {
            const uint32_t id = ps->elsewhere_ids[other++];
            const zt_tensor_info *t = &model->tensors[id];
            out[n++] = (state_entry){t->name, t->n_elems, NULL, id};
        }
    }
    return n;
}

static zt_status write_optimizer_state(const char *path, const zt_model *model,
                                       const zt_param_set *ps, int copies) {
    if (copies == 0) return zt_st_write(path, NULL, 0, NULL, 0);
    const int n_all = ps->n_params + ps->n_elsewhere;
    state_entry *entries = zt_calloc((size_t)n_all + 1, sizeof *entries);
    zt_st_write_tensor *tensors = zt_calloc((size_t)n_all + 1, sizeof *tensors);
    int64_t(*shapes)[2] = zt_calloc((size_t)n_all + 1, sizeof *shapes);
    float **host = zt_calloc((size_t)n_all + 1, sizeof *host);
    zt_status s =
        entries && tensors && shapes && host ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "%s: staging", path);
    const int n = s == ZT_OK ? list_state(model, ps, entries) : 0;
    for (int i = 0; s == ZT_OK && i < n; i++) {
        const state_entry *e = &entries[i];
        const size_t count = (size_t)copies * e->n_elems;
        host[i] = zt_malloc(count * sizeof(float));
        if (!host[i]) {
            s = zt_fail(ZT_ERR_NOMEM, "%s: staging %s", path, e->name);
            break;
        }
        if (e->state)
            s = ps->be->ops->download(ps->be, host[i], e->state, count * sizeof(float));
        else if (!ps->fetch_state)
            s = zt_fail(ZT_ERR_INTERNAL, "%s: the state of '%s' is held by another stage", path,
                        e->name);
        else {
            s = ps->fetch_state(ps->stages_ctx, e->tensor_id, host[i], count * sizeof(float));
            if (s != ZT_OK)
                s = zt_fail_context(s, "%s: fetching the state of '%s': ", path, e->name);
        }
        shapes[i][0] = copies;
        shapes[i][1] = (int64_t)e->n_elems;
        tensors[i] = (zt_st_write_tensor){e->name, "F32", 2, shapes[i], host[i]};
    }
    if (s == ZT_OK) s = zt_st_write(path, tensors, n, NULL, 0);
    for (int i = 0; host && i < n_all; i++)
        free(host[i]);
    free(host);
    free(shapes);
    free(tensors);
    free(entries);
    return s;
}

static zt_status write_trainer_json(const char *path, const zt_optimizer *optimizer, int next_step,
                                    int observed_eval_step) {
    void *blob = NULL;
    size_t n_bytes = 0;
    /* A first-order run has no policy: its state is all in optimizer.safetensors. */
    if (optimizer) ZT_TRY(zt_optimizer_save_state(optimizer, &blob, &n_bytes));
    char *hex = zt_malloc(2 * n_bytes + 1);
    if (!hex) {
        free(blob);
        return zt_fail(ZT_ERR_NOMEM, "%s: policy state", path);
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n_bytes; i++) {
        unsigned char byte = ((unsigned char *)blob)[i];
        hex[2 * i] = digits[byte >> 4];
        hex[2 * i + 1] = digits[byte & 15];
    }
    hex[2 * n_bytes] = '\0';
    free(blob);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "next_step", next_step);
    cJSON_AddNumberToObject(o, "observed_eval", observed_eval_step);
    cJSON_AddStringToObject(o, "policy_state", hex);
    free(hex);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return zt_fail(ZT_ERR_NOMEM, "%s: formatting", path);
    const void *chunks[] = {text};
    size_t chunk_bytes[] = {strlen(text)};
    zt_status s = zt_write_file_atomic(path, chunks, chunk_bytes, 1);
    cJSON_free(text);
    return s;
}

static zt_status write_snapshot_files(const char *dir, const zt_model *model,
                                      const zt_param_set *ps, int state_copies,
                                      const zt_optimizer *optimizer, int next_step,
                                      int observed_eval_step) {
    char path[ZT_PATH_MAX];
    /* a LoRA run's base never changes: its snapshot holds the adapters alone */
    if (model->lora)
        ZT_TRY(zt_lora_save(model, dir, ""));
    else if (model->prefix)
        ZT_TRY(zt_prefix_save(model, dir, ""));
    else if (model->prompt)
        ZT_TRY(zt_prompt_save(model, dir, ""));
    else
        ZT_TRY(zt_model_save(model, dir));
    ZT_TRY(zt_path_join(path, sizeof path, dir, "optimizer.safetensors"));
    ZT_TRY(write_optimizer_state(path, model, ps, state_copies));
    ZT_TRY(zt_path_join(path, sizeof path, dir, "trainer.json"));
    return write_trainer_json(path, optimizer, next_step, observed_eval_step);
}

zt_status zt_snapshot_save(const char *output_dir, const zt_model *model, const zt_param_set *ps,
                           int state_copies, const zt_optimizer *optimizer, int next_step,
                           int observed_eval_step) {
    char tmp[ZT_PATH_MAX], final_dir[ZT_PATH_MAX], old[ZT_PATH_MAX];
    ZT_TRY(zt_path_join(tmp, sizeof tmp, output_dir, "snapshot.tmp"));
    ZT_TRY(zt_path_join(final_dir, sizeof final_dir, output_dir, "snapshot"));
    ZT_TRY(zt_path_join(old, sizeof old, output_dir, "snapshot.old"));
    remove_tree(tmp);
    zt_status s = write_snapshot_files(tmp, model, ps, state_copies, optimizer, next_step,
                                       observed_eval_step);
    if (s != ZT_OK) {
        remove_tree(tmp); /* the previous snapshot stays as it was */
        return s;
    }
    /* swap: snapshot -> snapshot.old, snapshot.tmp -> snapshot, drop snapshot.old */
    remove_tree(old);
    if (is_dir(final_dir) && rename(final_dir, old) != 0)
        return zt_fail(ZT_ERR_IO, "%s: cannot move the previous snapshot aside: %s", final_dir,
                       strerror(errno));
    if (rename(tmp, final_dir) != 0)
        return zt_fail(ZT_ERR_IO, "%s: cannot install the snapshot: %s", final_dir,
                       strerror(errno));
    remove_tree(old);
    return ZT_OK;
}

/* zt_path_join rather than snprintf here: a truncated path is never probed, and GCC's UBSan build
 * (its nonnull check on stat's argument leaves a path where dir looks null) fails a local
 * snprintf under -Wformat-truncation. */
int zt_snapshot_find(const char *output_dir, char *dir, size_t size) {
    if (zt_path_join(dir, size, output_dir, "snapshot") == ZT_OK && is_dir(dir)) return 1;
    return zt_path_join(dir, size, output_dir, "snapshot.old") == ZT_OK && is_dir(dir);
}

static zt_status read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return zt_fail(ZT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return zt_fail(ZT_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    char *text = zt_malloc((size_t)size + 1);
    size_t got = text ? fread(text, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!text || got != (size_t)size) {
        free(text);
        return zt_fail(ZT_ERR_IO, "%s: short read", path);
    }
    text[size] = '\0';
    *out = text;
    return ZT_OK;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

zt_status zt_snapshot_load_state(const char *dir, zt_param_set *ps, int state_copies,
                                 zt_optimizer *optimizer, int *next_step, int *observed_eval_step) {
    char path[ZT_PATH_MAX];
    ZT_TRY(zt_path_join(path, sizeof path, dir, "trainer.json"));
    char *text = NULL;
    ZT_TRY(read_text(path, &text));
    cJSON *o = cJSON_ParseWithOpts(text, NULL, 1); /* nothing may follow the object */
    free(text);
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "next_step");
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(o, "policy_state");
    /* A resumable step, and hex digits only (sscanf's %x would also take signs and spaces, and
     * leave a non-digit's byte silently 0). */
    const char *digits = cJSON_IsString(hex) ? hex->valuestring : "";
    size_t n_digits = strspn(digits, "0123456789abcdefABCDEF");
    if (!cJSON_IsNumber(step) || !(step->valuedouble >= 0 && step->valuedouble <= INT_MAX) ||
        step->valuedouble != floor(step->valuedouble) || !cJSON_IsString(hex) ||
        digits[n_digits] != '\0' || n_digits % 2) {
        cJSON_Delete(o);
        return zt_fail(ZT_ERR_FORMAT, "%s: expected {\"next_step\": N >= 0, \"policy_state\": hex}",
                       path);
    }
    if (step->valuedouble < 0 || step->valuedouble >= 2147483647.0 ||
        step->valuedouble != (double)step->valueint) {
        cJSON_Delete(o);
        return zt_fail(ZT_ERR_FORMAT, "%s: \"next_step\" is not a step number", path);
    }
    *next_step = step->valueint;
    /* Snapshots written before evaluations were logged hold every evaluation up to next_step. */
    const cJSON *observed = cJSON_GetObjectItemCaseSensitive(o, "observed_eval");
    *observed_eval_step = *next_step;
    if (cJSON_IsNumber(observed)) {
        if (!(observed->valuedouble >= -1 && observed->valuedouble <= INT_MAX) ||
            observed->valuedouble != floor(observed->valuedouble)) {
            cJSON_Delete(o);
            return zt_fail(ZT_ERR_FORMAT, "%s: \"observed_eval\" is not a step number", path);
        }
        *observed_eval_step = observed->valueint;
    }
    size_t n_bytes = strlen(hex->valuestring) / 2;
    unsigned char *blob = zt_malloc(n_bytes ? n_bytes : 1);
    int bad_digit = 0;
    for (size_t i = 0; blob && i < n_bytes; i++) {
        int high = hex_digit(hex->valuestring[2 * i]), low = hex_digit(hex->valuestring[2 * i + 1]);
        bad_digit |= high < 0 || low < 0;
        blob[i] = (unsigned char)((high & 15) << 4 | (low & 15));
    }
    cJSON_Delete(o);
    if (!blob) return zt_fail(ZT_ERR_NOMEM, "%s: policy state", path);
    if (bad_digit) {
        free(blob);
        return zt_fail(ZT_ERR_FORMAT, "%s: \"policy_state\" is not a hex string", path);
    }
    zt_status s = ZT_OK;
    if (optimizer)
        s = zt_optimizer_load_state(optimizer, blob, n_bytes);
    else if (n_bytes != 0)
        s = zt_fail(ZT_ERR_FORMAT, "a policy state where a first-order run keeps none");
    free(blob);
    if (s != ZT_OK) return zt_fail_context(s, "%s: ", path);
    if (state_copies == 0) return ZT_OK;

    ZT_TRY(zt_path_join(path, sizeof path, dir, "optimizer.safetensors"));
    zt_safetensors *st = NULL;
    ZT_TRY(zt_st_open(path, &st));
    for (int i = 0; s == ZT_OK && i < ps->n_params; i++) {
        const zt_param *p = &ps->params[i];
        const zt_st_tensor *t = zt_st_find(st, p->name);
        size_t want = (size_t)state_copies * p->n_elems * sizeof(float);
        if (!t || strcmp(t->dtype, "F32") != 0 || t->n_bytes != want)
            s = zt_fail(ZT_ERR_FORMAT, "%s: optimizer state for '%s' missing or of the wrong size",
                        path, p->name);
        else
            s = ps->be->ops->upload(ps->be, p->state, t->data, want);
    }
    zt_st_close(st);
    return s;
}
