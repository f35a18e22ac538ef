/* A model known by its config.json alone: the tensor table, dtypes and offsets as a checkpoint
 * of that config would have them, and no weights. What planning needs before 26 GB of OPT-13B
 * are downloaded. */
#include <stdio.h>
#include <stdlib.h>

#include "arch.h"
#include "core/alloc.h"
#include "core/status.h"

/* Every tensor stored in `stored`, each on a cache line, as the loader places them. */
static void place_tensors(zt_model *m, zt_dtype stored) {
    size_t offset = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        zt_tensor_info *t = &m->tensors[i];
        t->dtype = stored;
        offset = (offset + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
        t->offset = offset;
        offset += t->n_elems * zt_dtype_size(stored);
    }
    m->weights_bytes = offset;
}

zt_status zt_model_open_config(const char *config_path, int dtype, zt_backend *be, zt_model **out) {
    *out = NULL;
    if (dtype > ZT_BF16)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: unknown dtype %d", config_path, dtype);
    zt_model *m = zt_calloc(1, sizeof *m);
    if (!m) return zt_fail(ZT_ERR_NOMEM, "allocating the model");
    m->be = be;
    int named = -1;
    zt_status s = zt_model_build_from_config(config_path, m, &named);
    if (s != ZT_OK) {
        zt_model_free(m);
        return s;
    }
    /* HF loads a config that names no dtype in float32 */
    place_tensors(m, dtype >= 0 ? (zt_dtype)dtype : named >= 0 ? (zt_dtype)named : ZT_F32);
    *out = m;
    return ZT_OK;
}

int zt_model_published_sizes(const zt_model *like) {
    return like->arch->published_size ? like->arch->n_published_sizes : 0;
}

zt_status zt_model_open_published_size(const zt_model *like, int index, zt_dtype dtype,
                                       zt_backend *be, zt_model **out, const char **name) {
    *out = NULL;
    if (index < 0 || index >= zt_model_published_sizes(like))
        return zt_fail(ZT_ERR_MISSING, "%s has %d published sizes, not a size %d",
                       like->arch->display_name, zt_model_published_sizes(like), index);
    if (dtype > ZT_BF16) return zt_fail(ZT_ERR_INVALID_ARG, "unknown dtype %d", (int)dtype);
    void *config = NULL;
    ZT_TRY(like->arch->published_size(like, index, &config, name));
    zt_model *m = zt_calloc(1, sizeof *m);
    if (!m) {
        free(config);
        return zt_fail(ZT_ERR_NOMEM, "allocating the model");
    }
    m->be = be;
    m->arch = like->arch;
    const zt_status s = m->arch->build(m, config);
    free(config);
    if (s != ZT_OK) {
        zt_model_free(m);
        return s;
    }
    place_tensors(m, dtype);
    *out = m;
    return ZT_OK;
}
