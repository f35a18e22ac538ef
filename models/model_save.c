/* Writing a model back as a HuggingFace checkpoint: model.safetensors with the canonical names
 * and stored dtypes, and the family's config.json. */
#include <stdio.h>
#include <stdlib.h>

#include "arch.h"
#include "core/alloc.h"
#include "core/path.h"
#include "core/status.h"
#include "io/safetensors.h"

zt_status zt_model_save(const zt_model *m, const char *dir) {
    ZT_TRY(zt_make_dirs(dir));
    void *host = zt_malloc(m->weights_bytes ? m->weights_bytes : 1);
    zt_st_write_tensor *tensors = zt_calloc((size_t)m->n_tensors, sizeof *tensors);
    if (!host || !tensors) {
        free(host);
        free(tensors);
        return zt_fail(ZT_ERR_NOMEM, "%s: staging %zu bytes of weights", dir, m->weights_bytes);
    }
    zt_status s = m->be->ops->download(m->be, host, m->weights, m->weights_bytes);
    for (int i = 0; s == ZT_OK && i < m->n_tensors; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        tensors[i] = (zt_st_write_tensor){t->name, zt_dtype_name(t->dtype), t->n_dims, t->shape,
                                          (char *)host + t->offset};
    }
    char path[4096];
    static const char *const metadata[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (s == ZT_OK) s = zt_st_write(path, tensors, m->n_tensors, metadata, 1);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (s == ZT_OK) s = m->arch->write_config(m, path);
    free(host);
    free(tensors);
    return s;
}
