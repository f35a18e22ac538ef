/* Writing a model back as a HuggingFace checkpoint: model.safetensors with the canonical names
 * and stored dtypes, and the family's config.json. */
#include <stdio.h>
#include <stdlib.h>

#include "arch.h"
#include "core/alloc.h"
#include "core/path.h"
#include "core/status.h"
#include "io/safetensors.h"
#include "lora.h"

/* Bytes of tensor i as stored. */
static size_t stored_bytes(const zt_tensor_info *t) {
    return t->n_elems * zt_dtype_size(t->dtype);
}

/* Tensor i into host: downloaded, or fetched from the pipeline stage holding it. */
static zt_status tensor_to_host(const zt_model *m, int i, void *host, const char *dir) {
    const zt_tensor_info *t = &m->tensors[i];
    if (!t->absent)
        return m->be->ops->download(m->be, host, (const char *)m->weights + t->offset,
                                    stored_bytes(t));
    if (!m->stage || !m->stage->fetch_tensor)
        return zt_fail(ZT_ERR_INTERNAL, "%s: tensor '%s' is held by another pipeline stage", dir,
                       t->name);
    zt_status s = m->stage->fetch_tensor(m->stage->ctx, i, host, stored_bytes(t));
    return s == ZT_OK ? s : zt_fail_context(s, "%s: fetching '%s': ", dir, t->name);
}

zt_status zt_model_save(const zt_model *m, const char *dir) {
    ZT_TRY(zt_make_dirs(dir));
    /* the base checkpoint alone: adapters go to their own files (zt_lora_save, zt_prompt_save).
     * Staged on the host tensor by tensor, so a pipeline stage's host copy also holds the
     * tensors the other stages send. */
    const int n_base = zt_model_base_tensors(m);
    size_t bytes = 0;
    for (int i = 0; i < n_base; i++)
        bytes += stored_bytes(&m->tensors[i]);
    void *host = zt_malloc(bytes ? bytes : 1);
    zt_st_write_tensor *tensors = zt_calloc((size_t)n_base, sizeof *tensors);
    if (!host || !tensors) {
        free(host);
        free(tensors);
        return zt_fail(ZT_ERR_NOMEM, "%s: staging %zu bytes of weights", dir, bytes);
    }
    zt_status s = ZT_OK;
    size_t at = 0;
    for (int i = 0; s == ZT_OK && i < n_base; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        s = tensor_to_host(m, i, (char *)host + at, dir);
        tensors[i] = (zt_st_write_tensor){t->name, zt_dtype_name(t->dtype), t->n_dims, t->shape,
                                          (char *)host + at};
        at += stored_bytes(t);
    }
    char path[4096];
    static const char *const metadata[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (s == ZT_OK) s = zt_st_write(path, tensors, n_base, metadata, 1);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (s == ZT_OK) s = m->arch->write_config(m, path);
    free(host);
    free(tensors);
    return s;
}
