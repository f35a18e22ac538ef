/* A prefix-tuning run's model (trainer.h, zt_train_options.prefix): the base from --model with
 * its prefixes (models/prefix.h), which alone are trained. The base is never written back into;
 * snapshots and the output hold the prefixes in their own adapter files. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fingerprint.h"
#include "core/status.h"
#include "prefix.h"
#include "train/train_run.h"
#include "train/trainable.h"

/* The prefixes' content as loaded, in table order by name. */
static zt_status prefix_fingerprint(const zt_model *m, uint64_t *out) {
    zt_fingerprint fp;
    zt_fingerprint_init(&fp);
    for (int i = m->prefix->n_base; i < m->n_tensors; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        float *host = zt_malloc(t->n_elems * sizeof *host);
        if (!host) return zt_fail(ZT_ERR_NOMEM, "fingerprinting %s", t->name);
        zt_status s = m->be->ops->download(m->be, host, (const char *)m->weights + t->offset,
                                           t->n_elems * sizeof *host);
        if (s == ZT_OK) {
            zt_fingerprint_update(&fp, t->name, strlen(t->name) + 1);
            zt_fingerprint_update(&fp, host, t->n_elems * sizeof *host);
        }
        free(host);
        ZT_TRY(s);
    }
    *out = zt_fingerprint_final(&fp);
    return ZT_OK;
}

zt_status zt_prefix_run_load(zt_run *r, int have_snapshot) {
    const zt_train_options *o = r->o;
    if (o->trainable && o->trainable[0])
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--trainable with --peft prefix: a prefix run trains its prefixes only");
    zt_prefix_options start = *o->prefix;
    start.init_seed = zt_prefix_init_seed(o->seed);
    ZT_TRY(zt_model_load_prefix(o->model_dir, r->be, &start, &r->model));
    r->base_fingerprint = r->model->fingerprint;
    r->adapter_fingerprint = 0;
    if (o->prefix->adapter_dir) ZT_TRY(prefix_fingerprint(r->model, &r->adapter_fingerprint));
    (void)have_snapshot; /* its prefixes are read with its state (zt_run_rebuild_state) */
    r->trainable = zt_calloc((size_t)r->model->n_tensors, 1);
    if (!r->trainable) return zt_fail(ZT_ERR_NOMEM, "trainable mask");
    zt_prefix_select(r->model, r->trainable);
    return zt_trainable_param_set(r->model, r->trainable, &r->ps);
}

zt_status zt_prefix_run_reload(zt_run *r, const char *snapshot_dir) {
    if (snapshot_dir && snapshot_dir[0])
        return zt_prefix_load_tensors(r->model, snapshot_dir, r->trainable);
    return zt_prefix_reset(r->model, r->trainable);
}
