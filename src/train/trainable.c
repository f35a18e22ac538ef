#include "train/trainable.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"

zt_status zt_trainable_param_set(zt_model *m, const uint8_t *selected, zt_param_set *ps) {
    memset(ps, 0, sizeof *ps);
    ps->be = m->be;
    ps->params = zt_calloc((size_t)m->n_tensors, sizeof *ps->params);
    if (!ps->params) return zt_fail(ZT_ERR_NOMEM, "allocating the parameter set");
    for (int i = 0; i < m->n_tensors; i++) {
        if (selected && !selected[i]) continue;
        const zt_tensor_info *t = &m->tensors[i];
        /* d counts every stage's tensors; the set holds this stage's (pipeline stages) */
        ps->n_elems += t->n_elems;
        if (t->absent) continue;
        zt_param *p = &ps->params[ps->n_params++];
        p->name = t->name;
        p->data = (char *)m->weights + t->offset;
        p->dtype = t->dtype;
        p->n_elems = t->n_elems;
        p->tensor_id = (uint32_t)i;
        p->no_decay = t->no_decay;
    }
    return ZT_OK;
}

void zt_trainable_param_set_free(zt_param_set *ps) {
    free(ps->params);
    memset(ps, 0, sizeof *ps);
}
