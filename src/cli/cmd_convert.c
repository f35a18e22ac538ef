/* zotune convert: PyTorch pytorch_model.bin checkpoints (single or sharded) to safetensors. */
#include <stdio.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/convert.h"

int zt_cmd_convert(int argc, char **argv) {
    const zt_arg_spec spec = {
        "zotune convert",
        "zotune convert IN_DIR OUT_DIR",
        "Rewrites a PyTorch checkpoint directory (pytorch_model.bin, or shards listed by\n"
        "pytorch_model.bin.index.json) as OUT_DIR/model.safetensors, every tensor under its\n"
        "stored name, dtype and shape, and copies config.json, generation_config.json and the\n"
        "tokenizer files. The .bin is read by zotune's restricted unpickler, which refuses any\n"
        "pickle that would run code. OUT_DIR must be new or empty: nothing is overwritten.",
        NULL,
        0,
        2,
        2};
    const char *positional[2] = {NULL, NULL};
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, positional, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    int n_tensors = 0;
    int s = zt_convert_torch_dir(positional[0], positional[1], &n_tensors);
    if (s != 0) return zt_cli_report("convert", s);
    fprintf(stderr, "converted %d tensors from %s into %s/model.safetensors\n", n_tensors,
            positional[0], positional[1]);
    return 0;
}
