/* zotune eval: a model's loss and task metric on a task file (accuracy by candidate
 * log-likelihood, F1/EM by greedy generation, or LM loss). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/status.h"
#include "text/bpe.h"
#include "train/eval.h"
#include "train/generate.h"

static zt_status evaluate(const char *model_dir, const char *data, const char *device,
                          const char *gemm, int threads, int batch_size, int bos_mezo,
                          zt_eval_result *res, int *n_examples) {
    zt_backend *be = NULL;
    zt_model *model = NULL;
    zt_tokenizer *tok = NULL;
    zt_dataset ds;
    memset(&ds, 0, sizeof ds);
    zt_workspace *ws = NULL;
    zt_task_objective objective;
    memset(&objective, 0, sizeof objective);
    zt_status s = zt_backend_open(device, threads, gemm, &be);
    if (s == ZT_OK) s = zt_model_load(model_dir, be, &model);
    if (s == ZT_OK) s = zt_tokenizer_open_model_dir(model_dir, bos_mezo, &tok);
    if (s == ZT_OK)
        s = zt_dataset_load(data, tok, model->dims.vocab_size, model->dims.max_positions, &ds);
    if (s == ZT_OK) {
        int seq_len = zt_generation_seq_len(&ds, model, ds.max_sequence);
        zt_workspace_shape shape = {zt_dataset_max_sequences(&ds, batch_size, 0), seq_len, 1, 0, 0};
        s = zt_workspace_create(model, &shape, &ws);
    }
    if (s == ZT_OK) {
        objective.model = model;
        objective.ws = ws;
        s = zt_evaluate(&objective, &ds, batch_size, tok, res);
        *n_examples = ds.n_examples;
    }
    zt_task_objective_release(&objective);
    zt_workspace_free(ws);
    zt_dataset_free(&ds);
    zt_tokenizer_free(tok);
    zt_model_free(model);
    zt_backend_destroy(be);
    return s;
}

int zt_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *device = "cpu", *bos = "opt", *gemm = "auto";
    int batch_size = 8, threads = 0, json = 0;
    const zt_arg_option options[] = {
        {"model", ZT_ARG_STRING, &model, "DIR", "model directory (required)"},
        {"data", ZT_ARG_STRING, &data, "FILE", "task JSONL (required; docs/tasks.md)"},
        {"batch-size", ZT_ARG_INT, &batch_size, "B", "examples per forward (default 8)"},
        {"bos", ZT_ARG_STRING, &bos, "B", "opt (default) or mezo"},
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default) or cuda[:N]"},
        {"gemm", ZT_ARG_STRING, &gemm, "P", ZT_GEMM_HELP},
        {"threads", ZT_ARG_THREADS, &threads, "N", ZT_THREADS_HELP},
        {"json", ZT_ARG_FLAG, &json, NULL, "print one JSON object"},
    };
    const zt_arg_spec spec = {
        "zotune eval",
        "zotune eval --model DIR --data FILE [options]",
        "Evaluates a model on a task file: accuracy by candidate log-likelihood (classification),\n"
        "F1 and exact match of greedy generations (generation), and the mean loss.",
        options,
        (int)(sizeof options / sizeof options[0]),
        0,
        0};
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, NULL, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    if (!model || !data) {
        fprintf(stderr, "zotune eval: --model and --data are required (see --help)\n");
        return 2;
    }
    if (batch_size <= 0 || (strcmp(bos, "opt") != 0 && strcmp(bos, "mezo") != 0)) {
        fprintf(stderr, "zotune eval: --batch-size must be positive and --bos opt or mezo\n");
        return 2;
    }
    zt_eval_result res;
    int n = 0;
    zt_status s = evaluate(model, data, device, gemm, threads, batch_size, strcmp(bos, "mezo") == 0,
                           &res, &n);
    if (s != ZT_OK) return zt_cli_report("eval", s);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "examples", n);
        cJSON_AddNumberToObject(o, "loss", res.loss);
        if (res.accuracy >= 0) cJSON_AddNumberToObject(o, "accuracy", res.accuracy);
        if (res.f1 >= 0) cJSON_AddNumberToObject(o, "f1", res.f1);
        if (res.exact_match >= 0) cJSON_AddNumberToObject(o, "exact_match", res.exact_match);
        char *text = cJSON_PrintUnformatted(o);
        if (text) puts(text);
        cJSON_free(text);
        cJSON_Delete(o);
    } else {
        printf("%d examples  loss %.5f", n, res.loss);
        if (res.accuracy >= 0) printf("  accuracy %.2f%%", 100.0 * res.accuracy);
        if (res.f1 >= 0) printf("  F1 %.2f%%  EM %.2f%%", 100.0 * res.f1, 100.0 * res.exact_match);
        printf("\n");
    }
    return 0;
}
