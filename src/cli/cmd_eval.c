/* zotune eval: a model's loss and task metric on a task file (accuracy by candidate
 * log-likelihood, F1/EM by greedy generation, or LM loss). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/peft_args.h"
#include "core/alloc.h"
#include "core/status.h"
#include "io/atomic_file.h"
#include "text/bpe.h"
#include "train/eval.h"
#include "train/generate.h"
#include "train/metrics.h"

/* One JSON line per example: the prompt as the record spells it, the greedy answer, the
 * references, and the example's F1 and EM in percent (as eval prints them). */
static zt_status prediction_lines(const zt_dataset *ds, char *const *predictions, char **text,
                                  size_t *n_bytes) {
    *text = NULL;
    *n_bytes = 0;
    FILE *buffer = open_memstream(text, n_bytes);
    if (!buffer) return zt_fail(ZT_ERR_NOMEM, "--predictions: buffer");
    int ok = 1;
    for (int i = 0; ok && i < ds->n_examples; i++) {
        const zt_example *e = &ds->examples[i];
        cJSON *o = cJSON_CreateObject(), *answers = cJSON_CreateArray();
        ok = o && answers && cJSON_AddStringToObject(o, "prompt", e->prompt_text) &&
             cJSON_AddStringToObject(o, "prediction", predictions[i]);
        for (int a = 0; ok && a < e->n_answers; a++) {
            cJSON *answer = cJSON_CreateString(e->answers[a]);
            ok = answer && cJSON_AddItemToArray(answers, answer);
            if (!ok) cJSON_Delete(answer);
        }
        if (ok)
            ok = cJSON_AddItemToObject(o, "answers", answers);
        else
            cJSON_Delete(answers);
        if (ok) {
            double f1 = zt_answer_f1(predictions[i], e->answers, e->n_answers);
            double em = zt_answer_exact_match(predictions[i], e->answers, e->n_answers);
            ok = cJSON_AddNumberToObject(o, "f1", 100.0 * f1) &&
                 cJSON_AddNumberToObject(o, "em", 100.0 * em);
        }
        char *line = ok ? cJSON_PrintUnformatted(o) : NULL;
        ok = line && fprintf(buffer, "%s\n", line) > 0;
        cJSON_free(line);
        cJSON_Delete(o);
    }
    if (fclose(buffer) != 0) ok = 0;
    if (ok) return ZT_OK;
    free(*text);
    *text = NULL;
    return zt_fail(ZT_ERR_NOMEM, "--predictions: formatting the lines");
}

/* Refuses, before anything is computed, a predictions path that cannot be written: a directory,
 * or a file in a directory that is missing or not writable (the file is replaced atomically,
 * through a temporary file beside it). */
static int check_predictions_path(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "zotune eval: --predictions %s is a directory\n", path);
        return 0;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "zotune eval: --predictions %s: cannot write in %s (%s)\n", path, dir,
                strerror(errno));
        return 0;
    }
    return 1;
}

static zt_status evaluate(const char *model_dir, const char *adapter, const char *data,
                          const char *device, const char *gemm, int threads, int batch_size,
                          int bos_mezo, const char *predictions_path, zt_eval_result *res,
                          int *n_examples) {
    zt_backend *be = NULL;
    zt_model *model = NULL;
    zt_tokenizer *tok = NULL;
    zt_dataset ds;
    memset(&ds, 0, sizeof ds);
    zt_workspace *ws = NULL;
    zt_task_objective objective;
    memset(&objective, 0, sizeof objective);
    char **predictions = NULL;
    zt_status s = zt_backend_open(device, threads, gemm, &be);
    if (s == ZT_OK) s = zt_cli_load_model(model_dir, adapter, be, &model);
    if (s == ZT_OK) s = zt_tokenizer_open_model_dir(model_dir, bos_mezo, &tok);
    if (s == ZT_OK)
        s = zt_dataset_load(data, tok, model->dims.vocab_size, model->dims.max_positions, &ds);
    if (s == ZT_OK && predictions_path && ds.kind != ZT_TASK_GENERATION)
        s = zt_fail(ZT_ERR_INVALID_ARG,
                    "--predictions needs generation records (prompt and answers); %s holds %s",
                    data,
                    ds.kind == ZT_TASK_CLASSIFICATION ? "classification records"
                                                      : "language-modelling records");
    if (s == ZT_OK && predictions_path) {
        predictions = zt_calloc((size_t)ds.n_examples, sizeof *predictions);
        if (!predictions) s = zt_fail(ZT_ERR_NOMEM, "--predictions: %d answers", ds.n_examples);
    }
    if (s == ZT_OK) {
        /* batched decoding prefills a batch of prompts in the workspace (its KV cache is its own)
         */
        int seq_len = zt_generation_seq_len(&ds, model, ds.max_sequence);
        zt_workspace_shape shape = {zt_dataset_max_sequences(&ds, batch_size, 0), seq_len, 1, 0, 0};
        s = zt_workspace_create(model, &shape, &ws);
    }
    if (s == ZT_OK) {
        objective.model = model;
        objective.ws = ws;
        s = zt_evaluate_predictions(&objective, &ds, batch_size, tok, res, predictions);
        *n_examples = ds.n_examples;
    }
    if (s == ZT_OK && predictions) {
        char *text = NULL;
        size_t n_bytes = 0;
        s = prediction_lines(&ds, predictions, &text, &n_bytes);
        if (s == ZT_OK) {
            const void *chunks[] = {text};
            s = zt_write_file_atomic(predictions_path, chunks, &n_bytes, 1);
        }
        free(text);
    }
    for (int i = 0; predictions && i < ds.n_examples; i++)
        free(predictions[i]);
    free(predictions);
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
    const char *predictions = NULL, *adapter = NULL;
    int batch_size = 8, threads = 0, json = 0;
    const zt_arg_option options[] = {
        {"model", ZT_ARG_STRING, &model, "DIR", "model directory (required)"},
        {"data", ZT_ARG_STRING, &data, "FILE", "task JSONL (required; docs/tasks.md)"},
        {"adapter", ZT_ARG_STRING, &adapter, "DIR",
         "apply this adapter: peft LoRA or prompt tuning, or a MeZO prefix (a --peft run's "
         "output)"},
        {"batch-size", ZT_ARG_INT, &batch_size, "B", "examples per forward (default 8)"},
        {"bos", ZT_ARG_STRING, &bos, "B", "opt (default) or mezo"},
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default) or cuda[:N]"},
        {"gemm", ZT_ARG_STRING, &gemm, "P", ZT_GEMM_HELP},
        {"threads", ZT_ARG_THREADS, &threads, "N", ZT_THREADS_HELP},
        {"json", ZT_ARG_FLAG, &json, NULL, "print one JSON object"},
        {"predictions", ZT_ARG_STRING, &predictions, "FILE",
         "generation tasks: write one JSON line per example (prompt, prediction, answers, f1 and "
         "em in percent)"},
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
    static const char *const bos_choices[] = ZT_ARGS_BOS_CHOICES;
    const int bos_mezo = zt_args_choice("zotune eval", "bos", bos, bos_choices, 2);
    if (bos_mezo < 0) return 2;
    if (batch_size <= 0) {
        fprintf(stderr, "zotune eval: --batch-size must be positive\n");
        return 2;
    }
    if (predictions && !check_predictions_path(predictions)) return 2;
    zt_eval_result res;
    int n = 0;
    zt_status s = evaluate(model, adapter, data, device, gemm, threads, batch_size, bos_mezo,
                           predictions, &res, &n);
    if (s != ZT_OK) return zt_cli_report("eval", s);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "examples", n);
        cJSON_AddNumberToObject(o, "loss", res.loss);
        if (res.accuracy >= 0) cJSON_AddNumberToObject(o, "accuracy", res.accuracy);
        /* F1 and EM in percent, as every output gives them */
        if (res.f1 >= 0) cJSON_AddNumberToObject(o, "f1", 100.0 * res.f1);
        if (res.exact_match >= 0)
            cJSON_AddNumberToObject(o, "exact_match", 100.0 * res.exact_match);
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
