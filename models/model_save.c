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

zt_status zt_model_save(const zt_model *m, const char *dir) {
    ZT_TRY(zt_make_dirs(dir));
    /* the base checkpoint alone: adapters go to their own files (zt_lora_save, zt_prompt_save) */
    const int n_base = zt_model_base_tensors(m);
    const size_t bytes = zt_model_base_bytes(m);
    void *host = zt_malloc(bytes ? bytes : 1);
    zt_st_write_tensor *tensors = zt_calloc((size_t)n_base, sizeof *tensors);
    if (!host || !tensors) {
        free(host);
        free(tensors);
        return zt_fail(ZT_ERR_NOMEM, "%s: staging %zu bytes of weights", dir, bytes);
    }
    zt_status s = m->be->ops->download(m->be, host, m->weights, bytes);
    for (int i = 0; s == ZT_OK && i < n_base; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        tensors[i] = (zt_st_write_tensor){t->name, zt_dtype_name(t->dtype), t->n_dims, t->shape,
                                          (char *)host + t->offset};
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
