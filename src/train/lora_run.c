/* A LoRA training run's model (trainer.h, zt_train_options.lora): the base from --model with its
 * adapters, which alone are trained. The base is never written back into; snapshots and the
 * output hold the adapters in peft's files. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fingerprint.h"
#include "core/status.h"
#include "lora.h"
#include "train/train_run.h"
#include "train/trainable.h"

zt_status zt_run_adapter_fingerprint(const zt_model *m, uint64_t *out) {
    zt_fingerprint fp;
    zt_fingerprint_init(&fp);
    for (int i = zt_model_first_staged(m); i < m->n_tensors; i++) {
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

zt_status zt_lora_run_load(zt_run *r, int have_snapshot) {
    const zt_train_options *o = r->o;
    if (o->trainable && o->trainable[0])
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--trainable with --peft lora: a LoRA run trains its adapters only");
    zt_lora_options start = *o->lora;
    start.init_seed = zt_lora_init_seed(o->seed);
    ZT_TRY(zt_model_load_peft(o->model_dir, r->be, &start, &r->model));
    r->base_fingerprint = r->model->fingerprint;
    r->adapter_fingerprint = 0;
    if (o->lora->adapter_dir) ZT_TRY(zt_run_adapter_fingerprint(r->model, &r->adapter_fingerprint));
    (void)have_snapshot; /* its adapters are read with its state (zt_run_rebuild_state) */
    r->trainable = zt_calloc((size_t)r->model->n_tensors, 1);
    if (!r->trainable) return zt_fail(ZT_ERR_NOMEM, "trainable mask");
    zt_lora_select(r->model, r->trainable);
    return zt_trainable_param_set(r->model, r->trainable, &r->ps);
}

zt_status zt_lora_run_reload(zt_run *r, const char *snapshot_dir) {
    if (snapshot_dir && snapshot_dir[0])
        return zt_lora_load_tensors(r->model, snapshot_dir, r->trainable);
    return zt_lora_reset(r->model, r->trainable);
}
