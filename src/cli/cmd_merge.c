/* zotune merge: a LoRA adapter folded into its base, W += (alpha / r) B A, as a plain HF
 * checkpoint (models/lora.h, zt_lora_merge). */
#include <stdio.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/peft_args.h"
#include "core/dir_lock.h"
#include "core/path.h"
#include "core/status.h"
#include "io/convert.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"

static zt_status merge(const char *base, const char *adapter, const char *out, const char *device,
                       int threads, int *n_merged) {
    const char *inputs[] = {base, adapter};
    const char *input_options[] = {"BASE_DIR", "ADAPTER_DIR"};
    ZT_TRY(zt_check_output_apart(out, "OUT_DIR", inputs, input_options, 2));
    zt_backend *be = NULL;
    zt_model *model = NULL;
    zt_dir_lock lock = {-1};
    if (zt_prompt_dir_is_prompt(adapter))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "ADAPTER_DIR %s is a prompt-tuning adapter: it adds virtual tokens in front "
                       "of the input and changes no base weight, so there is nothing to merge "
                       "(use it with --adapter)",
                       adapter);
    zt_status s = zt_backend_create(device, threads, &be);
    if (s == ZT_OK && zt_prefix_dir_is_prefix(adapter))
        s = zt_fail(ZT_ERR_INVALID_ARG,
                    "ADAPTER_DIR %s: a prefix-tuning adapter adds keys and values to every "
                    "layer's attention; no weight of the base can hold them, so it cannot be "
                    "merged (use it with --adapter)",
                    adapter);
    if (s == ZT_OK) s = zt_cli_load_model(base, adapter, be, &model);
    if (s == ZT_OK) s = zt_lora_merge(model);
    if (s == ZT_OK) s = zt_prepare_new_dir(out, "merge");
    if (s == ZT_OK) s = zt_dir_lock_acquire(out, "OUT_DIR", &lock);
    if (s == ZT_OK) s = zt_model_save(model, out);
    /* the base's own config.json and tokenizer files, as they were */
    if (s == ZT_OK) s = zt_copy_companion_files(base, out);
    if (s == ZT_OK) *n_merged = (model->n_tensors - model->lora->n_base) / 2;
    zt_dir_lock_release(&lock);
    zt_model_free(model);
    zt_backend_destroy(be);
    return s;
}

int zt_cmd_merge(int argc, char **argv) {
    const char *device = "cpu";
    int threads = 0;
    const zt_arg_option options[] = {
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default) or cuda[:N]"},
        {"threads", ZT_ARG_THREADS, &threads, "N", ZT_THREADS_HELP},
    };
    const zt_arg_spec spec = {
        "zotune merge",
        "zotune merge BASE_DIR ADAPTER_DIR OUT_DIR",
        "Folds a HF peft LoRA adapter (adapter_config.json + adapter_model.safetensors, e.g. a\n"
        "`zotune train --peft lora` output) into its base: W += (lora_alpha / r) B A for every\n"
        "adapted linear, in f32, stored in W's dtype (rounded to nearest). OUT_DIR gets a plain\n"
        "HF checkpoint (model.safetensors, the base's config.json and tokenizer files); it must\n"
        "be new or empty: nothing is overwritten. Prompt- and prefix-tuning adapters are refused:\n"
        "they add virtual tokens or per-layer keys and values, which no base weight can hold.",
        options,
        (int)(sizeof options / sizeof options[0]),
        3,
        3};
    const char *positional[3] = {NULL, NULL, NULL};
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, positional, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    int n = 0;
    zt_status s = merge(positional[0], positional[1], positional[2], device, threads, &n);
    if (s != ZT_OK) return zt_cli_report("merge", s);
    fprintf(stderr, "merged %d adapted weights of %s into %s\n", n, positional[1], positional[2]);
    return 0;
}
