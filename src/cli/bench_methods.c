/* The methods of `zotune bench memory` and their plans, from the trainer's planning
 * (zt_train_plan_memory) and the model's: no arithmetic of their own. */
#include "cli/bench_methods.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"

const zt_bench_method zt_bench_methods[ZT_BENCH_N_METHODS] = {
    {"inference", NULL, ZT_PERTURB_SHADOW, 0, 0, {31, 119, 180}, 0, 0},
    {"zo-inplace", "mezo", ZT_PERTURB_INPLACE, 0, 0, {44, 160, 44}, 0, 0},
    {"zo-shadow", "mezo", ZT_PERTURB_SHADOW, 0, 0, {23, 190, 207}, 0, 0},
    {"fo-sgd-ckpt", "sgd", ZT_PERTURB_SHADOW, 1, 0, {255, 127, 14}, 0, 0},
    {"fo-sgd", "sgd", ZT_PERTURB_SHADOW, 0, 0, {214, 39, 40}, 0, 0},
    {"fo-adamw-ckpt", "adamw", ZT_PERTURB_SHADOW, 1, 0, {148, 103, 189}, 0, 0},
    {"fo-adamw", "adamw", ZT_PERTURB_SHADOW, 0, 0, {140, 86, 75}, 0, 0},
    /* LoRA after the full methods: each below its full counterpart */
    {"zo-lora", "mezo", ZT_PERTURB_SHADOW, 0, 1, {227, 119, 194}, 0, 0},
    {"fo-lora", "adamw", ZT_PERTURB_SHADOW, 0, 1, {188, 189, 34}, 0, 0},
    {"zo-prefix", "mezo", ZT_PERTURB_SHADOW, 0, 0, {174, 199, 232}, 1, 0},
    {"fo-prefix", "adamw", ZT_PERTURB_SHADOW, 0, 0, {255, 152, 150}, 1, 0},
    {"zo-prompt", "mezo", ZT_PERTURB_SHADOW, 0, 0, {127, 127, 127}, 0, 1},
    {"fo-prompt", "adamw", ZT_PERTURB_SHADOW, 0, 0, {0, 0, 128}, 0, 1},
};

void zt_bench_prefix_options(zt_prefix_options *o) {
    zt_prefix_options_default(o);
}

/* The plan of a method on m extended by the adapters a table copy adds, which alone train. */
static zt_status plan_adapted(zt_model *adapted, const zt_bench_method *me, const zt_zo_hparams *hp,
                              const zt_fo_options *fo, const zt_train_shape *shape,
                              zt_bench_row *r) {
    uint8_t *trainable = zt_calloc((size_t)adapted->n_tensors, 1);
    if (!trainable) return zt_fail(ZT_ERR_NOMEM, "the %s plan's mask", me->name);
    const int first = zt_model_first_staged(adapted);
    for (int i = 0; i < adapted->n_tensors; i++)
        trainable[i] = i >= first;
    zt_status s = zt_train_plan_memory(adapted, trainable, me->optimizer, hp, fo, 1000, me->mode,
                                       shape, &r->plan);
    free(trainable);
    return s;
}

void zt_bench_lora_options(zt_lora_options *o) {
    zt_lora_options_default(o);
    o->rank = 8;
    o->alpha = 16.0;
}

void zt_bench_prompt_options(zt_prompt_options *o) {
    zt_prompt_options_default(o);
}

/* A prompt-tuning method's plan: the table after m's tensors, trained alone. */
static zt_status plan_prompt(const zt_model *m, const zt_bench_method *me, const zt_zo_hparams *hp,
                             const zt_fo_options *fo, const zt_train_shape *shape,
                             zt_bench_row *r) {
    zt_prompt_options prompt;
    zt_bench_prompt_options(&prompt);
    zt_model *adapted = NULL;
    ZT_TRY(zt_prompt_table_copy(m, &prompt, &adapted));
    zt_status s = plan_adapted(adapted, me, hp, fo, shape, r);
    zt_prompt_table_copy_free(adapted);
    return s;
}

zt_status zt_bench_plan_row(const zt_model *m, const zt_bench_method *me, int batch, int seq_len,
                            zt_bench_row *r) {
    memset(r, 0, sizeof *r);
    const zt_train_shape shape = {batch, seq_len, 0, 0};
    if (!me->optimizer) {
        const zt_workspace_shape ws = {batch, seq_len, 1, 0, 0};
        zt_model_plan_memory(m, &ws, &r->plan.model);
        r->plan.total_bytes = r->plan.model.total_bytes;
        return ZT_OK;
    }
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.momentum = 0.0; /* PyTorch's SGD */
    const zt_fo_options fo = {0, 0.0, 1, me->checkpoint};
    if (me->prefix) {
        zt_prefix_options prefix;
        zt_bench_prefix_options(&prefix);
        zt_model *adapted = NULL;
        ZT_TRY(zt_prefix_table_copy(m, &prefix, &adapted));
        zt_status s = plan_adapted(adapted, me, &hp, &fo, &shape, r);
        zt_prefix_table_copy_free(adapted);
        return s;
    }
    if (me->prompt) return plan_prompt(m, me, &hp, &fo, &shape, r);
    if (!me->lora)
        return zt_train_plan_memory(m, NULL, me->optimizer, &hp, &fo, 1000, me->mode, &shape,
                                    &r->plan);
    zt_lora_options lora;
    zt_bench_lora_options(&lora);
    zt_model *adapted = NULL;
    ZT_TRY(zt_lora_table_copy(m, &lora, &adapted));
    zt_status s = plan_adapted(adapted, me, &hp, &fo, &shape, r);
    zt_lora_table_copy_free(adapted);
    return s;
}
