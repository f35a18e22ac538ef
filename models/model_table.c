/* A model known by its config.json alone: the tensor table, dtypes and offsets as a checkpoint
 * of that config would have them, and no weights. What planning needs before 26 GB of OPT-13B
 * are downloaded. */
#include <stdio.h>

#include "arch.h"
#include "core/alloc.h"
#include "core/status.h"

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
    zt_dtype stored = dtype >= 0 ? (zt_dtype)dtype : named >= 0 ? (zt_dtype)named : ZT_F32;
    size_t offset = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        zt_tensor_info *t = &m->tensors[i];
        t->dtype = stored;
        offset = (offset + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
        t->offset = offset;
        offset += t->n_elems * zt_dtype_size(stored);
    }
    m->weights_bytes = offset;
    *out = m;
    return ZT_OK;
}
