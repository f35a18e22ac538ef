/* --peft and the LoRA options (peft_args.h). */
#include "cli/peft_args.h"

#include <stdio.h>
#include <string.h>

#include "core/status.h"

void zt_peft_args_default(zt_peft_args *a) {
    memset(a, 0, sizeof *a);
    a->peft = "none";
    a->num_prefix = -1;
}

/* A given option must agree with what --adapter's config says. */
static zt_status agree(const zt_peft_args *a, const zt_lora_options *from_dir) {
    if (a->rank && a->rank != from_dir->rank)
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-rank %d: --adapter %s has r = %d", a->rank,
                       a->adapter_dir, from_dir->rank);
    if (a->alpha != 0 && a->alpha != from_dir->alpha)
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-alpha %g: --adapter %s has lora_alpha = %g",
                       a->alpha, a->adapter_dir, from_dir->alpha);
    if (a->targets && strcmp(a->targets, from_dir->targets) != 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-targets %s: --adapter %s targets %s", a->targets,
                       a->adapter_dir, from_dir->targets);
    return ZT_OK;
}

/* --peft prefix, or --adapter with a prefix adapter. */
static zt_status resolve_prefix(zt_peft_args *a) {
    zt_prefix_options *o = &a->prefix_options;
    zt_prefix_options_default(o);
    if (a->rank || a->alpha != 0 || a->targets || a->dropout != 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-* options need --peft lora, not prefix");
    a->prefix = 1;
    if (a->adapter_dir) {
        ZT_TRY(zt_prefix_read_config(a->adapter_dir, o));
        if (a->num_prefix != -1 && a->num_prefix != o->n_prefix)
            return zt_fail(ZT_ERR_INVALID_ARG, "--num-prefix %d: --adapter %s has num_prefix %d",
                           a->num_prefix, a->adapter_dir, o->n_prefix);
        o->adapter_dir = a->adapter_dir;
        return ZT_OK;
    }
    if (a->num_prefix != -1) o->n_prefix = a->num_prefix;
    if (o->n_prefix <= 0 || o->n_prefix > ZT_PREFIX_MAX_TOKENS)
        return zt_fail(ZT_ERR_INVALID_ARG, "--num-prefix %d: must be 1 .. %d", o->n_prefix,
                       (int)ZT_PREFIX_MAX_TOKENS);
    return ZT_OK;
}

/* --peft prompt (or --adapter with a prompt-tuning adapter). */
static zt_status resolve_prompt(zt_peft_args *a) {
    zt_prompt_options *o = &a->prompt_options;
    zt_prompt_options_default(o);
    a->prompt = 1;
    if (a->rank || a->alpha != 0 || a->targets || a->dropout != 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-* options need --peft lora, not prompt");
    if (a->adapter_dir) {
        ZT_TRY(zt_prompt_read_config(a->adapter_dir, o));
        if (a->num_virtual_tokens && a->num_virtual_tokens != o->n_virtual)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--num-virtual-tokens %d: --adapter %s has num_virtual_tokens = %d",
                           a->num_virtual_tokens, a->adapter_dir, o->n_virtual);
        o->adapter_dir = a->adapter_dir;
        return ZT_OK;
    }
    if (a->num_virtual_tokens) o->n_virtual = a->num_virtual_tokens;
    if (o->n_virtual <= 0 || o->n_virtual > ZT_PROMPT_MAX_TOKENS)
        return zt_fail(ZT_ERR_INVALID_ARG, "--num-virtual-tokens %d: must be 1 .. %d", o->n_virtual,
                       (int)ZT_PROMPT_MAX_TOKENS);
    return ZT_OK;
}

zt_status zt_peft_args_resolve(zt_peft_args *a, zt_lora_options *o) {
    zt_lora_options_default(o);
    const int named_lora = strcmp(a->peft, "lora") == 0;
    const int named_prompt = strcmp(a->peft, "prompt") == 0;
    const int named_prefix = strcmp(a->peft, "prefix") == 0;
    if (!named_lora && !named_prompt && !named_prefix && strcmp(a->peft, "none") != 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--peft %s: must be none, lora, prefix or prompt",
                       a->peft);
    a->prefix = 0;
    a->prompt = 0;
    const int adapter_is_prompt = a->adapter_dir && zt_prompt_dir_is_prompt(a->adapter_dir);
    const int adapter_is_prefix = a->adapter_dir && zt_prefix_dir_is_prefix(a->adapter_dir);
    if (a->adapter_dir && (named_lora || named_prompt || named_prefix) &&
        (adapter_is_prompt != named_prompt || adapter_is_prefix != named_prefix))
        return zt_fail(ZT_ERR_INVALID_ARG, "--peft %s: --adapter %s is a %s adapter", a->peft,
                       a->adapter_dir,
                       adapter_is_prompt   ? "prompt-tuning"
                       : adapter_is_prefix ? "prefix-tuning"
                                           : "LoRA");
    if (!named_prefix && a->num_prefix != -1 && !adapter_is_prefix)
        return zt_fail(ZT_ERR_INVALID_ARG, "--num-prefix needs --peft prefix");
    if (!named_prompt && a->num_virtual_tokens && !adapter_is_prompt)
        return zt_fail(ZT_ERR_INVALID_ARG, "--num-virtual-tokens needs --peft prompt");
    if (named_prefix || adapter_is_prefix) {
        a->lora = 0;
        return resolve_prefix(a);
    }
    if (named_prompt || adapter_is_prompt) {
        a->lora = 0;
        return resolve_prompt(a);
    }
    a->lora = named_lora || a->adapter_dir;
    if (!a->lora) {
        if (a->rank || a->alpha != 0 || a->targets || a->dropout != 0)
            return zt_fail(ZT_ERR_INVALID_ARG, "--lora-* options need --peft lora");
        return ZT_OK;
    }
    if (a->dropout != 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--lora-dropout %g: only 0 is supported (a ZO step must see the same "
                       "function in each of its forward passes)",
                       a->dropout);
    if (a->adapter_dir) {
        ZT_TRY(zt_lora_read_config(a->adapter_dir, o));
        ZT_TRY(agree(a, o));
        o->adapter_dir = a->adapter_dir;
        return ZT_OK;
    }
    if (a->rank) o->rank = a->rank;
    if (a->alpha != 0) o->alpha = a->alpha;
    if (a->targets) {
        if (strlen(a->targets) >= sizeof o->targets)
            return zt_fail(ZT_ERR_INVALID_ARG, "--lora-targets: too long");
        snprintf(o->targets, sizeof o->targets, "%s", a->targets);
    }
    if (o->rank <= 0 || o->rank > ZT_LORA_MAX_RANK)
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-rank %d: must be 1 .. %d", o->rank,
                       (int)ZT_LORA_MAX_RANK);
    if (!(o->alpha > 0))
        return zt_fail(ZT_ERR_INVALID_ARG, "--lora-alpha %g: must be positive", o->alpha);
    return ZT_OK;
}

zt_status zt_cli_load_model(const char *dir, const char *adapter_dir, zt_backend *be,
                            zt_model **out) {
    if (!adapter_dir) return zt_model_load(dir, be, out);
    if (zt_prefix_dir_is_prefix(adapter_dir)) {
        zt_prefix_options p;
        zt_prefix_options_default(&p);
        ZT_TRY(zt_prefix_read_config(adapter_dir, &p));
        p.adapter_dir = adapter_dir;
        return zt_model_load_prefix(dir, be, &p, out);
    }
    if (zt_prompt_dir_is_prompt(adapter_dir)) {
        zt_prompt_options p;
        zt_prompt_options_default(&p);
        ZT_TRY(zt_prompt_read_config(adapter_dir, &p));
        p.adapter_dir = adapter_dir;
        const zt_peft_options peft = {NULL, &p, NULL};
        return zt_model_load_adapted(dir, be, &peft, out);
    }
    zt_lora_options o;
    zt_lora_options_default(&o);
    ZT_TRY(zt_lora_read_config(adapter_dir, &o));
    o.adapter_dir = adapter_dir;
    return zt_model_load_peft(dir, be, &o, out);
}
