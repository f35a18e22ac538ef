/* zotune: forward-only fine-tuning of OPT models. Dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "zotune.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"info", zt_cmd_info, "show a model's config, parameter count and memory plan"},
    {"train", zt_cmd_train, "fine-tune: zeroth-order (forward passes only) or by backprop"},
    {"eval", zt_cmd_eval, "loss and accuracy / F1 of a model on a task file"},
    {"score", zt_cmd_score, "per-example mean token NLL of pre-tokenized JSONL (perplexity)"},
    {"grad", zt_cmd_grad, "the gradient of a file's mean token NLL, by backprop (safetensors)"},
    {"bench", zt_cmd_bench,
     "bench memory: inference, ZO and backprop memory of a model, side by side"},
    {"replay", zt_cmd_replay, "rebuild fine-tuned weights from base weights + step log"},
    {"merge", zt_cmd_merge, "fold a LoRA adapter into its base as a plain HF checkpoint"},
    {"convert", zt_cmd_convert, "rewrite a PyTorch pytorch_model.bin checkpoint as safetensors"},
};

static void print_usage(FILE *out) {
    fprintf(out, "zotune %s: fine-tune OPT language models with forward passes only\n\n",
            zt_version());
    fprintf(out, "usage: zotune COMMAND [options]   (zotune COMMAND --help for details)\n\n");
    fprintf(out, "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int zt_cli_report(const char *command, int status) {
    fprintf(stderr, "zotune %s: %s: %s\n", command, zt_status_name((zt_status)status),
            zt_last_error());
    /* Usage errors exit 2 whichever layer finds them: a bad option value (the library says
     * invalid argument) or a run that contradicts what is saved. */
    return status == ZT_ERR_INVALID_ARG || status == ZT_ERR_CONFLICT ? 2 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("zotune %s\n", zt_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc, argv);
    fprintf(stderr, "zotune: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return 2;
}
