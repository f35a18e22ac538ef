/* --peft and the LoRA and prompt-tuning options, shared by train, score, eval and info
 * (models/lora.h, models/prompt.h). */
#ifndef ZT_CLI_PEFT_ARGS_H
#define ZT_CLI_PEFT_ARGS_H

#include "lora.h"
#include "prefix.h"
#include "prompt.h"

typedef struct zt_peft_args {
    const char *peft;                 /* "none", "lora", "prefix" or "prompt" */
    int rank;                         /* 0: not given */
    double alpha;                     /* 0: not given */
    const char *targets;              /* NULL: not given */
    double dropout;                   /* only 0 */
    const char *adapter_dir;          /* --adapter DIR */
    int lora;                         /* resolved: LoRA in use */
    int num_virtual_tokens;           /* --num-virtual-tokens (0: not given) */
    int prompt;                       /* resolved: prompt tuning in use */
    zt_prompt_options prompt_options; /* resolved with prompt (init_seed 0: the trainer sets it) */
    int num_prefix;                   /* --num-prefix (-1: not given) */
    int prefix;                       /* resolved: prefix tuning in use */
    zt_prefix_options prefix_options; /* resolved with prefix */
} zt_peft_args;

void zt_peft_args_default(zt_peft_args *a);

/* The option table entries (an --adapter entry is the command's own: its help differs). */
#define ZT_PEFT_ARG_OPTIONS(a)                                                                     \
    {"peft", ZT_ARG_STRING, &(a).peft, "P",                                                        \
     "none (default); lora: train LoRA adapters only (HF peft's LoraModel); prefix: MeZO's "       \
     "prefix tuning (per-layer key/value prefixes); prompt: a soft prompt of "                     \
     "--num-virtual-tokens input embeddings (peft's PROMPT_TUNING)"},                              \
        {"num-prefix", ZT_ARG_INT, &(a).num_prefix, "N",                                           \
         "--peft prefix: prefix tokens per layer (MeZO's 5; its preset lr 1e-2, eps 1e-1)"},       \
        {"num-virtual-tokens", ZT_ARG_INT, &(a).num_virtual_tokens, "N",                           \
         "--peft prompt: virtual tokens in front of every sequence (default 10)"},                 \
        {"lora-rank", ZT_ARG_INT, &(a).rank, "R", "LoRA rank r (peft's default 8)"},               \
        {"lora-alpha", ZT_ARG_DOUBLE, &(a).alpha, "A",                                             \
         "LoRA alpha: scale alpha / r (peft's default 8; MeZO's OPT-13B preset r 8, alpha 16)"},   \
        {"lora-targets", ZT_ARG_STRING, &(a).targets, "M,..",                                      \
         "modules LoRA adapts: q_proj,v_proj (peft's default for OPT), k_proj, out_proj"},         \
    {                                                                                              \
        "lora-dropout", ZT_ARG_DOUBLE, &(a).dropout, "P", "LoRA dropout: only 0 is supported"      \
    }

/* Checks the options and fills options (init_seed 0: the trainer sets it). --adapter implies
 * --peft lora and takes rank, alpha and targets from its adapter_config.json, given ones must
 * agree; a prompt-tuning adapter (peft_type PROMPT_TUNING) implies --peft prompt instead, and
 * a->prompt_options takes num_virtual_tokens from it; a prefix adapter (peft_type MEZO_PREFIX)
 * implies --peft prefix and a->prefix_options takes its num_prefix. ZT_ERR_INVALID_ARG naming
 * the option otherwise. */
zt_status zt_peft_args_resolve(zt_peft_args *a, zt_lora_options *options);

/* The model in dir, with the adapter in adapter_dir (LoRA, prefix or prompt) applied when
 * not NULL. */
zt_status zt_cli_load_model(const char *dir, const char *adapter_dir, zt_backend *be,
                            zt_model **out);

#endif
