/* zotune score: per-example mean next-token NLL of pre-tokenized JSONL, with labels shifted
 * and -100 ignored exactly as HF's OPTForCausalLM computes its loss. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/peft_args.h"
#include "cli/records.h"
#include "core/alloc.h"
#include "core/status.h"
#include "io/jsonl.h"
#include "io/safetensors.h"
#include "data/dataset.h"
#include "data/targets.h"
#include "model.h"
#include "text/bpe.h"
#include "train/task_loss.h"

/* Target-row logits kept for --logits: (rows, V) with each row's (record line, position). */
typedef struct logits_dump {
    float *values;
    int32_t *where; /* (rows, 2) */
    size_t rows, capacity;
} logits_dump;

static zt_status dump_append(logits_dump *d, const float *logits, const zt_targets *t,
                             const record *recs, int seq_len, int vocab) {
    if (d->rows + (size_t)t->n > d->capacity) {
        size_t capacity = 2 * (d->rows + (size_t)t->n);
        float *v = zt_realloc(d->values, capacity * (size_t)vocab * sizeof *v);
        int32_t *w = zt_realloc(d->where, capacity * 2 * sizeof *w);
        if (v) d->values = v;
        if (w) d->where = w;
        if (!v || !w) return zt_fail(ZT_ERR_NOMEM, "--logits: %zu rows", capacity);
        d->capacity = capacity;
    }
    memcpy(d->values + d->rows * (size_t)vocab, logits, (size_t)t->n * vocab * sizeof(float));
    for (int r = 0; r < t->n; r++) {
        d->where[2 * (d->rows + r)] = recs[t->example[r]].line;
        d->where[2 * (d->rows + r) + 1] = t->rows[r] % seq_len;
    }
    d->rows += (size_t)t->n;
    return ZT_OK;
}

static zt_status dump_write(const logits_dump *d, const char *path, int vocab) {
    int64_t value_shape[2] = {(int64_t)d->rows, vocab}, where_shape[2] = {(int64_t)d->rows, 2};
    zt_st_write_tensor tensors[2] = {{"logits", "F32", 2, value_shape, d->values},
                                     {"line_position", "I32", 2, where_shape, d->where}};
    return zt_st_write(path, tensors, 2, NULL, 0);
}

/* Scores records [first, first+n): right-padded batch, one forward, per-example mean NLL. */
static zt_status score_batch(zt_model *m, zt_workspace *ws, const record *recs, int n, double *loss,
                             int *n_tokens, logits_dump *dump) {
    int seq_len = 0;
    for (int i = 0; i < n; i++)
        seq_len = recs[i].length > seq_len ? recs[i].length : seq_len;
    size_t cells = (size_t)n * seq_len;
    int32_t *ids = zt_calloc(cells, sizeof *ids), *mask = zt_calloc(cells, sizeof *mask);
    int32_t *labels = zt_malloc(cells * sizeof *labels);
    float *logprobs = zt_malloc(cells * sizeof *logprobs);
    float *logits = dump ? zt_malloc(cells * (size_t)m->dims.vocab_size * sizeof *logits) : NULL;
    if (dump && !logits) free(logprobs), logprobs = NULL;
    zt_targets targets = {0};
    zt_status s =
        ids && mask && labels && logprobs ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "allocating a batch");
    for (size_t c = 0; s == ZT_OK && c < cells; c++)
        labels[c] = -100;
    for (int i = 0; s == ZT_OK && i < n; i++) {
        for (int t = 0; t < recs[i].length; t++) {
            ids[(size_t)i * seq_len + t] = recs[i].input_ids[t];
            mask[(size_t)i * seq_len + t] = 1;
            labels[(size_t)i * seq_len + t] = recs[i].labels[t];
        }
        for (int t = recs[i].length; t < seq_len; t++)
            ids[(size_t)i * seq_len + t] = m->dims.pad_token_id;
    }
    if (s == ZT_OK) s = zt_targets_from_labels(n, seq_len, labels, m->dims.vocab_size, &targets);
    if (s == ZT_OK) {
        zt_batch batch = {n, seq_len, ids, mask, targets.n, targets.rows, targets.ids};
        s = zt_model_forward(m, ws, &batch, NULL, logprobs, logits);
    }
    if (s == ZT_OK) zt_lm_loss(logprobs, &targets, n, loss, n_tokens, NULL);
    if (s == ZT_OK && dump)
        s = dump_append(dump, logits, &targets, recs, seq_len, m->dims.vocab_size);
    free(logits);
    zt_targets_free(&targets);
    free(ids);
    free(mask);
    free(labels);
    free(logprobs);
    return s;
}

int zt_cmd_score(int argc, char **argv) {
    int json = 0, batch_size = 8, threads = 0;
    const char *device = "cpu", *gemm = "auto", *logits_path = NULL, *bos = "opt";
    const char *inputs[2] = {NULL, NULL}; /* model directory, data file */
    const char *adapter = NULL;
    const zt_arg_option options[] = {
        {"model", ZT_ARG_STRING, &inputs[0], "DIR", "model directory (or the first positional)"},
        {"data", ZT_ARG_STRING, &inputs[1], "FILE", "JSONL records (or the second positional)"},
        {"adapter", ZT_ARG_STRING, &adapter, "DIR",
         "apply this adapter: peft LoRA or prompt tuning, or a MeZO prefix (adapter_config.json + "
         "adapter_model.safetensors)"},
        {"json", ZT_ARG_FLAG, &json, NULL, "print one JSON object with every example"},
        {"batch-size", ZT_ARG_INT, &batch_size, "B", "sequences per forward (default 8)"},
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default) or cuda[:N]"},
        {"gemm", ZT_ARG_STRING, &gemm, "P", ZT_GEMM_HELP},
        {"threads", ZT_ARG_THREADS, &threads, "N", ZT_THREADS_HELP},
        {"bos", ZT_ARG_STRING, &bos, "opt|mezo",
         "text records: BOS as OPT's tokenizer adds it (default) or MeZO's quirk"},
        {"logits", ZT_ARG_STRING, &logits_path, "FILE",
         "also write every target row's logits (safetensors: logits (R,V), line_position (R,2))"},
    };
    const zt_arg_spec spec = {
        "zotune score",
        "zotune score MODEL_DIR DATA.jsonl [options]  (or --model DIR --data FILE)",
        "Per-example mean next-token negative log-likelihood of JSONL records\n"
        "{\"input_ids\": [...], \"labels\": [...]} (labels optional, -100 = ignored; labels are\n"
        "shifted by one inside, as in HF's OPTForCausalLM), plus the token-weighted mean and\n"
        "perplexity. Every task record eval reads is scored too (docs/tasks.md; text through\n"
        "the model's tokenizer): LM text on its tokens (a prompt's completion only), generation\n"
        "records on their completion, classification records on the labelled candidate's\n"
        "option tokens.",
        options,
        (int)(sizeof options / sizeof options[0]),
        0,
        2};
    const char *positional[2] = {NULL, NULL};
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, positional, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    static const char *const input_options[2] = {"model", "data"};
    if (zt_args_named_or_positional(&spec, inputs, input_options, 2, positional, n_positional) !=
        ZT_ARGS_OK)
        return 2;
    positional[0] = inputs[0];
    positional[1] = inputs[1];
    if (batch_size <= 0) {
        fprintf(stderr, "zotune score: --batch-size must be positive\n");
        return 2;
    }
    static const char *const bos_choices[] = ZT_ARGS_BOS_CHOICES;
    const int bos_mezo = zt_args_choice("zotune score", "bos", bos, bos_choices, 2);
    if (bos_mezo < 0) return 2;

    zt_backend *be = NULL;
    zt_model *model = NULL;
    zt_workspace *ws = NULL;
    record_list records = {0};
    double *loss = NULL;
    int *n_tokens = NULL;
    logits_dump dump = {0};
    zt_status s = zt_backend_open(device, threads, gemm, &be);
    if (s == ZT_OK) s = zt_cli_load_model(positional[0], adapter, be, &model);
    if (s == ZT_OK)
        s = zt_records_read(positional[1], positional[0], bos_mezo, &model->dims, &records);
    if (s == ZT_OK) {
        zt_workspace_shape shape = {batch_size < records.count ? batch_size : records.count,
                                    records.max_length, 1, 0, 0};
        s = zt_workspace_create(model, &shape, &ws);
    }
    if (s == ZT_OK) {
        loss = zt_calloc((size_t)records.count, sizeof *loss);
        n_tokens = zt_calloc((size_t)records.count, sizeof *n_tokens);
        if (!loss || !n_tokens) s = zt_fail(ZT_ERR_NOMEM, "allocating results");
    }
    for (int first = 0; s == ZT_OK && first < records.count; first += batch_size) {
        int n = records.count - first < batch_size ? records.count - first : batch_size;
        s = score_batch(model, ws, records.items + first, n, loss + first, n_tokens + first,
                        logits_path ? &dump : NULL);
        if (records.count > 4 * batch_size)
            fprintf(stderr, "\rscored %d/%d", first + n, records.count);
    }
    if (records.count > 4 * batch_size) fprintf(stderr, "\n");
    if (s == ZT_OK && logits_path) s = dump_write(&dump, logits_path, model->dims.vocab_size);
    free(dump.values);
    free(dump.where);

    if (s == ZT_OK) {
        double total_nll = 0.0;
        long total_tokens = 0;
        for (int i = 0; i < records.count; i++) {
            total_nll += loss[i] * n_tokens[i];
            total_tokens += n_tokens[i];
        }
        double mean = total_tokens ? total_nll / (double)total_tokens : NAN;
        if (json) {
            cJSON *root = cJSON_CreateObject(), *list = cJSON_CreateArray();
            for (int i = 0; i < records.count; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "line", records.items[i].line);
                cJSON_AddNumberToObject(e, "n_tokens", n_tokens[i]);
                if (n_tokens[i])
                    cJSON_AddNumberToObject(e, "loss", loss[i]);
                else
                    cJSON_AddNullToObject(e, "loss");
                cJSON_AddItemToArray(list, e);
            }
            cJSON_AddItemToObject(root, "examples", list);
            cJSON_AddNumberToObject(root, "tokens", (double)total_tokens);
            if (total_tokens) {
                cJSON_AddNumberToObject(root, "mean_nll", mean);
                cJSON_AddNumberToObject(root, "perplexity", exp(mean));
            }
            char *text = cJSON_PrintUnformatted(root);
            if (text) puts(text);
            cJSON_free(text);
            cJSON_Delete(root);
        } else {
            printf("%8s %8s %14s\n", "line", "tokens", "mean_nll");
            for (int i = 0; i < records.count; i++)
                printf("%8d %8d %14.9g\n", records.items[i].line, n_tokens[i],
                       n_tokens[i] ? loss[i] : NAN);
            printf("%d examples, %ld tokens, mean NLL %.6f, perplexity %.4f\n", records.count,
                   total_tokens, mean, exp(mean));
        }
    }
    free(loss);
    free(n_tokens);
    zt_records_free(&records);
    zt_workspace_free(ws);
    zt_model_free(model);
    zt_backend_destroy(be);
    return s == ZT_OK ? 0 : zt_cli_report("score", s);
}
