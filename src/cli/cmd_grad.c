/* zotune grad: the gradient of the token-weighted mean next-token NLL over every record of a file
 * (HF's OPTForCausalLM loss with the records as one batch), one f32 tensor per parameter under
 * its HF name, by backprop on the backend's backward ops (docs/design.md §3.1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backprop.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/records.h"
#include "core/alloc.h"
#include "core/path.h"
#include "core/status.h"
#include "data/targets.h"
#include "io/safetensors.h"
#include "model.h"

/* Records [first, first + n) left-padded into one batch, with HF's shifted targets. */
typedef struct grad_batch {
    int32_t *ids, *mask, *labels;
    zt_targets targets;
    zt_batch batch;
} grad_batch;

static void grad_batch_free(grad_batch *g) {
    free(g->ids);
    free(g->mask);
    free(g->labels);
    zt_targets_free(&g->targets);
}

static zt_status grad_batch_build(const zt_model *m, const record *recs, int n, grad_batch *g) {
    memset(g, 0, sizeof *g);
    int seq_len = 0;
    for (int i = 0; i < n; i++)
        seq_len = recs[i].length > seq_len ? recs[i].length : seq_len;
    const size_t cells = (size_t)n * (size_t)seq_len;
    g->ids = zt_malloc(cells * sizeof *g->ids);
    g->mask = zt_calloc(cells, sizeof *g->mask);
    g->labels = zt_malloc(cells * sizeof *g->labels);
    if (!g->ids || !g->mask || !g->labels) return zt_fail(ZT_ERR_NOMEM, "allocating a batch");
    for (int i = 0; i < n; i++) {
        const int pad = seq_len - recs[i].length;
        for (int t = 0; t < seq_len; t++) {
            const size_t at = (size_t)i * seq_len + t;
            const int real = t >= pad;
            g->ids[at] = real ? recs[i].input_ids[t - pad] : m->dims.pad_token_id;
            g->mask[at] = real;
            g->labels[at] = real ? recs[i].labels[t - pad] : -100;
        }
    }
    ZT_TRY(zt_targets_from_labels(n, seq_len, g->labels, m->dims.vocab_size, &g->targets));
    g->batch =
        (zt_batch){n, seq_len, g->ids, g->mask, g->targets.n, g->targets.rows, g->targets.ids};
    return ZT_OK;
}

/* Target tokens of records [first, first + n), as the batch would hold them. */
static long count_targets(const record *recs, int n) {
    long count = 0;
    for (int i = 0; i < n; i++)
        for (int t = 1; t < recs[i].length; t++)
            count += recs[i].labels[t] != -100;
    return count;
}

static zt_status write_gradients(const zt_model *m, const float *host, const char *path,
                                 const char *model_dir, const char *data, double loss,
                                 long n_tokens, int n_records) {
    zt_st_write_tensor *tensors = zt_calloc((size_t)m->n_tensors, sizeof *tensors);
    size_t *offsets = zt_malloc((size_t)m->n_tensors * sizeof *offsets);
    if (!tensors || !offsets) {
        free(tensors);
        free(offsets);
        return zt_fail(ZT_ERR_NOMEM, "%s: allocating the tensor list", path);
    }
    zt_model_grad_layout(m, offsets);
    for (int i = 0; i < m->n_tensors; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        tensors[i] = (zt_st_write_tensor){t->name, "F32", t->n_dims, t->shape, host + offsets[i]};
    }
    char loss_text[64], tokens_text[32], records_text[32];
    snprintf(loss_text, sizeof loss_text, "%.17g", loss);
    snprintf(tokens_text, sizeof tokens_text, "%ld", n_tokens);
    snprintf(records_text, sizeof records_text, "%d", n_records);
    const char *metadata[] = {"loss",       loss_text, "tokens",  tokens_text, "records",
                              records_text, "model",   model_dir, "data",      data};
    zt_status s = zt_st_write(path, tensors, m->n_tensors, metadata, 5);
    free(tensors);
    free(offsets);
    return s;
}

int zt_cmd_grad(int argc, char **argv) {
    int threads = 0, micro_batches = 0, checkpoint = 0;
    const char *device = "cpu", *output = NULL, *bos = "opt";
    const char *inputs[2] = {NULL, NULL}; /* model directory, data file */
    const zt_arg_option options[] = {
        {"model", ZT_ARG_STRING, &inputs[0], "DIR", "model directory (or the first positional)"},
        {"data", ZT_ARG_STRING, &inputs[1], "FILE", "JSONL records (or the second positional)"},
        {"output", ZT_ARG_STRING, &output, "FILE",
         "where the gradients go (safetensors, written atomically); required"},
        {"micro-batches", ZT_ARG_INT, &micro_batches, "N",
         "the records in N backward passes of (nearly) equal size summed into one gradient, "
         "as in train (default 0: all records in one)"},
        {"checkpoint-activations", ZT_ARG_FLAG, &checkpoint, NULL,
         "keep each layer's input only and run the layer again in backward (less memory)"},
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default); backprop needs backward ops"},
        {"threads", ZT_ARG_THREADS, &threads, "N", ZT_THREADS_HELP},
        {"bos", ZT_ARG_STRING, &bos, "opt|mezo",
         "text records: BOS as OPT's tokenizer adds it (default) or MeZO's quirk"},
    };
    const zt_arg_spec spec = {
        "zotune grad",
        "zotune grad MODEL_DIR DATA.jsonl --output G.safetensors [options]",
        "The gradient of the token-weighted mean next-token negative log-likelihood over every\n"
        "record of DATA taken as one batch (labels shifted by one inside and -100 ignored, as\n"
        "HF's OPTForCausalLM computes its loss; padding masked), by backprop. G.safetensors holds\n"
        "one f32 tensor per parameter under its HF name (the tied LM head folded into\n"
        "embed_tokens) and the loss in its metadata. Records as `zotune score` reads them.",
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
    if (!output) {
        fprintf(stderr, "zotune grad: --output FILE is required (try 'zotune grad --help')\n");
        return 2;
    }
    if (micro_batches < 0) {
        fprintf(stderr,
                "zotune grad: --micro-batches %d: expected 0 or more (0 = all records in one "
                "micro-batch)\n",
                micro_batches);
        return 2;
    }
    static const char *const bos_choices[] = ZT_ARGS_BOS_CHOICES;
    const int bos_mezo = zt_args_choice("zotune grad", "bos", bos, bos_choices, 2);
    if (bos_mezo < 0) return 2;
    const char *apart_options[2] = {"--model", "--data"};
    zt_status s = zt_check_output_apart(output, "--output", inputs, apart_options, 2);
    if (s != ZT_OK) return zt_cli_report("grad", s);

    zt_backend *be = NULL;
    zt_model *model = NULL;
    zt_grad_buffers *gb = NULL;
    record_list records = {0};
    float *grads = NULL, *host = NULL, *weights = NULL;
    size_t total = 0;
    double loss = 0.0;
    long n_tokens = 0;
    s = zt_backend_open(device, threads, "f32", &be);
    if (s == ZT_OK) s = zt_backend_require_backward(be, "zotune grad");
    if (s == ZT_OK) s = zt_model_load(inputs[0], be, &model);
    if (s == ZT_OK) s = zt_records_read(inputs[1], inputs[0], bos_mezo, &model->dims, &records);
    /* split as train splits a step's examples: pass k takes records [count k / n, count (k+1) /
     * n), so passes differ by one record at most and the largest sizes the buffers; more passes
     * than records would leave some empty */
    int n_passes = micro_batches > 1 ? micro_batches : 1;
    if (n_passes > records.count && records.count > 0) n_passes = records.count;
    const int per_pass = (records.count + n_passes - 1) / n_passes;
    if (s == ZT_OK) {
        n_tokens = count_targets(records.items, records.count);
        if (n_tokens == 0) s = zt_fail(ZT_ERR_FORMAT, "%s: no label to predict", inputs[1]);
    }
    if (s == ZT_OK)
        s = zt_grad_buffers_create(model, per_pass, records.max_length, checkpoint, &gb);
    if (s == ZT_OK) {
        total = zt_model_parameter_count(model);
        s = be->ops->alloc(be, total * sizeof(float), ZT_MEM_SCRATCH, (void **)&grads);
    }
    if (s == ZT_OK) s = zt_backend_zero(be, grads, total);
    if (s == ZT_OK) {
        weights = zt_malloc((size_t)n_tokens * sizeof *weights);
        if (!weights) s = zt_fail(ZT_ERR_NOMEM, "allocating %ld target weights", n_tokens);
        for (long i = 0; s == ZT_OK && i < n_tokens; i++)
            weights[i] = (float)(1.0 / (double)n_tokens);
    }
    for (int k = 0; s == ZT_OK && k < n_passes; k++) {
        const int first = (int)((long)records.count * k / n_passes);
        const int n = (int)((long)records.count * (k + 1) / n_passes) - first;
        if (count_targets(records.items + first, n) == 0) continue;
        grad_batch g;
        double part = 0.0;
        s = grad_batch_build(model, records.items + first, n, &g);
        if (s == ZT_OK) s = zt_model_grad(model, gb, &g.batch, weights, grads, &part);
        loss += part;
        grad_batch_free(&g);
        if (n_passes > 1) fprintf(stderr, "\rgrad: %d/%d records", first + n, records.count);
    }
    if (n_passes > 1) fprintf(stderr, "\n");
    if (s == ZT_OK) {
        host = zt_malloc(total * sizeof *host);
        if (!host) s = zt_fail(ZT_ERR_NOMEM, "allocating %zu gradient floats", total);
    }
    if (s == ZT_OK) s = be->ops->download(be, host, grads, total * sizeof(float));
    if (s == ZT_OK)
        s = write_gradients(model, host, output, inputs[0], inputs[1], loss, n_tokens,
                            records.count);
    if (s == ZT_OK)
        printf("%d records, %ld tokens, mean NLL %.6f; %zu gradients (%d tensors) in %s\n",
               records.count, n_tokens, loss, total, model->n_tensors, output);
    free(host);
    free(weights);
    if (grads) be->ops->free(be, grads, total * sizeof(float), ZT_MEM_SCRATCH);
    zt_grad_buffers_free(gb);
    zt_records_free(&records);
    zt_model_free(model);
    zt_backend_destroy(be);
    return s == ZT_OK ? 0 : zt_cli_report("grad", s);
}
