/* zotune replay: base weights + step log -> the fine-tuned weights, with no forward pass. */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/status.h"
#include "train/replay.h"

int zt_cmd_replay(int argc, char **argv) {
    const char *device = "cpu";
    int threads = 0;
    const char *inputs[3] = {NULL, NULL, NULL}; /* base, step log, output */
    const char *adapter = NULL;
    const zt_arg_option options[] = {
        {"model", ZT_ARG_STRING, &inputs[0], "DIR", "base model (or the first positional)"},
        {"log", ZT_ARG_STRING, &inputs[1], "FILE", "step log (or the second positional)"},
        {"output", ZT_ARG_STRING, &inputs[2], "DIR", "where to write (or the third positional)"},
        {"adapter", ZT_ARG_STRING, &adapter, "DIR",
         "the adapter a --peft run continued from (train --adapter DIR): checked against the "
         "fingerprint its log records"},
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default) or cuda[:N]"},
        {"threads", ZT_ARG_THREADS, &threads, "N", ZT_THREADS_HELP},
    };
    const zt_arg_spec spec = {
        "zotune replay",
        "zotune replay BASE_DIR STEPLOG OUT_DIR [options]  (or --model DIR --log FILE --output "
        "DIR)",
        "Rebuilds fine-tuned weights from the base model and a step log (steplog.jsonl of a\n"
        "`zotune train` run), bit for bit, without any forward pass; writes HF safetensors.",
        options,
        (int)(sizeof options / sizeof options[0]),
        0,
        3};
    const char *positional[3] = {NULL, NULL, NULL};
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, positional, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    static const char *const input_options[3] = {"model", "log", "output"};
    if (zt_args_named_or_positional(&spec, inputs, input_options, 3, positional, n_positional) !=
        ZT_ARGS_OK)
        return 2;
    int n = 0;
    zt_status s = zt_replay_adapted(inputs[0], adapter, inputs[1], inputs[2], device, threads, &n);
    if (s != ZT_OK) return zt_cli_report("replay", s);
    fprintf(stderr, "replayed %d steps into %s\n", n, inputs[2]);
    return 0;
}
