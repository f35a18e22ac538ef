/* A prompt-tuning run's model (trainer.h, zt_train_options.prompt): the base from --model with
 * its prompt table, which alone is trained. The base is never written back into; snapshots and
 * the output hold the table in peft's files. */
#include "core/alloc.h"
#include "core/status.h"
#include "prompt.h"
#include "train/train_run.h"
#include "train/trainable.h"

zt_status zt_prompt_run_load(zt_run *r) {
    const zt_train_options *o = r->o;
    if (o->trainable && o->trainable[0])
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--trainable with --peft prompt: a prompt-tuning run trains its prompt "
                       "table only");
    zt_prompt_options start = *o->prompt;
    start.init_seed = zt_prompt_init_seed(o->seed);
    const zt_peft_options peft = {NULL, &start, NULL};
    ZT_TRY(zt_model_load_adapted(o->model_dir, r->be, &peft, &r->model));
    r->base_fingerprint = r->model->fingerprint;
    r->adapter_fingerprint = 0;
    if (o->prompt->adapter_dir)
        ZT_TRY(zt_run_adapter_fingerprint(r->model, &r->adapter_fingerprint));
    r->trainable = zt_calloc((size_t)r->model->n_tensors, 1);
    if (!r->trainable) return zt_fail(ZT_ERR_NOMEM, "trainable mask");
    zt_peft_select(r->model, r->trainable);
    return zt_trainable_param_set(r->model, r->trainable, &r->ps);
}

zt_status zt_prompt_run_reload(zt_run *r, const char *snapshot_dir) {
    if (snapshot_dir && snapshot_dir[0])
        return zt_prompt_load_tensors(r->model, snapshot_dir, r->trainable);
    return zt_prompt_reset(r->model, r->trainable);
}
