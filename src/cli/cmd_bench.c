/* zotune bench memory: the memory of inference, ZO training and first-order training of one model
 * at one shape, side by side, from the plans (any OPT size, from its config.json alone) and, with
 * --measure and weights present, from a few real training steps on the CPU; with --plot, the
 * plans at every published size of the model's family drawn against the parameter count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "cli/args.h"
#include "cli/bench_methods.h"
#include "cli/bench_plot.h"
#include "cli/commands.h"
#include "cli/model_input.h"
#include "core/alloc.h"
#include "core/status.h"
#include "model.h"
#include "train/trainer.h"

/* ---- --measure: each method in a child process, so its RSS is its own ---- */

typedef struct measure_ctx {
    const char *model_dir, *work_dir, *data_path;
    int batch, seq_len, steps, threads;
} measure_ctx;

/* batch x (steps + 1) random pre-tokenized LM records of seq_len tokens. */
static zt_status write_random_data(int vocab, const measure_ctx *c) {
    FILE *f = fopen(c->data_path, "w");
    if (!f) return zt_fail(ZT_ERR_IO, "%s: cannot write", c->data_path);
    uint64_t state = 0x5EEDull;
    for (int r = 0; r < c->batch * (c->steps + 1); r++) {
        fputs("{\"input_ids\":[", f);
        for (int t = 0; t < c->seq_len; t++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            fprintf(f, "%s%d", t ? "," : "", 4 + (int)((state >> 33) % (uint64_t)(vocab - 4)));
        }
        fputs("]}\n", f);
    }
    return fclose(f) == 0 ? ZT_OK : zt_fail(ZT_ERR_IO, "%s: cannot write", c->data_path);
}

/* Seconds per step from a run's metrics.jsonl: the steps after the first. */
static double seconds_per_step(const char *out_dir) {
    char path[4400], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    double first = NAN, last = NAN;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *elapsed = cJSON_GetObjectItem(o, "elapsed_s");
        if (cJSON_IsNumber(elapsed)) {
            if (n++ == 0) first = elapsed->valuedouble;
            last = elapsed->valuedouble;
        }
        cJSON_Delete(o);
    }
    fclose(f);
    return n > 1 ? (last - first) / (n - 1) : NAN;
}

/* In the child: the method's run; writes peak bytes, RSS and seconds per step to fd. */
static int measure_child(const measure_ctx *c, const zt_bench_method *me, int fd) {
    double result[3] = {NAN, NAN, NAN};
    zt_status s = ZT_OK;
    if (!me->optimizer) {
        zt_backend *be = NULL;
        zt_model *m = NULL;
        zt_workspace *ws = NULL;
        s = zt_backend_open("cpu", c->threads, "f32", &be);
        if (s == ZT_OK) s = zt_model_load(c->model_dir, be, &m);
        const int n = c->batch * c->seq_len;
        int32_t *ids = zt_malloc((size_t)n * 4 * sizeof(int32_t));
        float *logprobs = zt_malloc((size_t)n * sizeof(float));
        if (s == ZT_OK && (!ids || !logprobs)) s = zt_fail(ZT_ERR_NOMEM, "a batch");
        const zt_workspace_shape shape = {c->batch, c->seq_len, 1, 0, 0};
        if (s == ZT_OK) s = zt_workspace_create(m, &shape, &ws);
        if (s == ZT_OK) {
            int32_t *mask = ids + n, *rows = ids + 2 * n, *targets = ids + 3 * n;
            for (int i = 0; i < n; i++) {
                ids[i] = 4 + i % (m->dims.vocab_size - 4);
                mask[i] = 1;
                rows[i] = i;
                targets[i] = 4 + (i * 7) % (m->dims.vocab_size - 4);
            }
            const zt_batch b = {c->batch, c->seq_len, ids, mask, n, rows, targets};
            zt_mem_reset_peak();
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (int i = 0; s == ZT_OK && i < c->steps; i++)
                s = zt_model_forward(m, ws, &b, NULL, logprobs, NULL);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            zt_mem_stats mem;
            zt_mem_stats_get(&mem);
            result[0] = (double)mem.peak_total;
            result[2] =
                ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)) /
                c->steps;
        }
        free(ids);
        free(logprobs);
        zt_workspace_free(ws);
        zt_model_free(m);
        zt_backend_destroy(be);
    } else {
        char out[4300];
        snprintf(out, sizeof out, "%s/%s", c->work_dir, me->name);
        zt_train_options o;
        zt_train_options_default(&o);
        o.model_dir = c->model_dir;
        o.train_path = c->data_path;
        o.output_dir = out;
        o.optimizer = me->optimizer;
        o.mode = me->mode;
        o.steps = c->steps;
        o.batch_size = c->batch;
        o.threads = c->threads;
        o.quiet = 1;
        o.hp.lr = 1e-6;
        o.hp.momentum = 0.0;
        o.fo.checkpoint_activations = me->checkpoint;
        zt_lora_options lora;
        zt_bench_lora_options(&lora);
        if (me->lora) o.lora = &lora;
        zt_prefix_options prefix;
        zt_bench_prefix_options(&prefix);
        if (me->prefix) o.prefix = &prefix;
        zt_prompt_options prompt;
        zt_bench_prompt_options(&prompt);
        if (me->prompt) o.prompt = &prompt;
        zt_train_result res;
        s = zt_train(&o, &res);
        result[0] = (double)res.peak_bytes;
        result[2] = seconds_per_step(out);
    }
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    result[1] = 1024.0 * (double)usage.ru_maxrss;
    if (s != ZT_OK) fprintf(stderr, "zotune bench memory: %s: %s\n", me->name, zt_last_error());
    const int ok = write(fd, result, sizeof result) == (ssize_t)sizeof result;
    return s == ZT_OK && ok ? 0 : 1;
}

static zt_status measure_row(const measure_ctx *c, const zt_bench_method *me, zt_bench_row *r) {
    int pipe_fd[2];
    if (pipe(pipe_fd) != 0) return zt_fail(ZT_ERR_IO, "bench memory: pipe");
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) return zt_fail(ZT_ERR_IO, "bench memory: fork");
    if (pid == 0) {
        close(pipe_fd[0]);
        _exit(measure_child(c, me, pipe_fd[1]));
    }
    close(pipe_fd[1]);
    double result[3];
    const ssize_t n = read(pipe_fd[0], result, sizeof result);
    close(pipe_fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n != (ssize_t)sizeof result || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return zt_fail(ZT_ERR_INTERNAL, "bench memory: measuring %s failed", me->name);
    r->measured = 1;
    r->measured_bytes = result[0];
    r->rss_bytes = result[1];
    r->step_s = result[2];
    return ZT_OK;
}

/* ---- output ---- */

static void add_parts(cJSON *parts, const zt_train_memory_plan *p) {
    cJSON_AddNumberToObject(parts, "weights", (double)p->model.weights_bytes);
    cJSON_AddNumberToObject(parts, "activations", (double)p->model.activation_bytes);
    cJSON_AddNumberToObject(parts, "staging", (double)p->model.staging_bytes);
    cJSON_AddNumberToObject(parts, "backend_scratch", (double)p->model.backend_scratch_bytes);
    cJSON_AddNumberToObject(parts, "backprop", (double)p->backprop_bytes);
    cJSON_AddNumberToObject(parts, "gradients", (double)p->gradient_bytes);
    cJSON_AddNumberToObject(parts, "optimizer_state", (double)p->optimizer_bytes);
}

static void print_json(const char *model, int batch, int seq_len, const char *dtype,
                       const zt_bench_row *rows) {
    cJSON *root = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddNumberToObject(root, "batch_size", batch);
    cJSON_AddNumberToObject(root, "seq_len", seq_len);
    cJSON_AddStringToObject(root, "dtype", dtype);
    for (int i = 0; i < ZT_BENCH_N_METHODS; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "method", zt_bench_methods[i].name);
        cJSON_AddNumberToObject(o, "peak_bytes", (double)rows[i].plan.total_bytes);
        if (rows[i].measured) {
            cJSON_AddNumberToObject(o, "measured", rows[i].measured_bytes);
            cJSON_AddNumberToObject(o, "rss_bytes", rows[i].rss_bytes);
            cJSON_AddNumberToObject(o, "step_s", rows[i].step_s);
        } else {
            cJSON_AddNullToObject(o, "measured");
            cJSON_AddNullToObject(o, "step_s");
        }
        cJSON *parts = cJSON_CreateObject();
        add_parts(parts, &rows[i].plan);
        cJSON_AddItemToObject(o, "parts", parts);
        cJSON_AddItemToArray(list, o);
    }
    cJSON_AddItemToObject(root, "rows", list);
    char *text = cJSON_PrintUnformatted(root);
    if (text) puts(text);
    cJSON_free(text);
    cJSON_Delete(root);
}

static double gib(double bytes) {
    return bytes / (1024.0 * 1024.0 * 1024.0);
}

static void print_text(const char *model, int batch, int seq_len, const char *dtype,
                       const zt_bench_row *rows) {
    printf("memory of %s, batch %d x %d tokens, %s weights (GiB; the plan, and measured with "
           "--measure)\n",
           model, batch, seq_len, dtype);
    printf("%-14s %10s %10s %10s %10s %10s %10s %10s %10s", "method", "peak", "weights", "activ.",
           "staging", "scratch", "backprop", "grads", "opt.state");
    int any = 0;
    for (int i = 0; i < ZT_BENCH_N_METHODS; i++)
        any |= rows[i].measured;
    if (any) printf(" %10s %10s %9s", "measured", "RSS", "s/step");
    printf("\n");
    for (int i = 0; i < ZT_BENCH_N_METHODS; i++) {
        const zt_train_memory_plan *p = &rows[i].plan;
        printf("%-14s %10.4f %10.4f %10.4f %10.4f %10.4f %10.4f %10.4f %10.4f",
               zt_bench_methods[i].name, gib((double)p->total_bytes),
               gib((double)p->model.weights_bytes), gib((double)p->model.activation_bytes),
               gib((double)p->model.staging_bytes), gib((double)p->model.backend_scratch_bytes),
               gib((double)p->backprop_bytes), gib((double)p->gradient_bytes),
               gib((double)p->optimizer_bytes));
        if (rows[i].measured)
            printf(" %10.4f %10.4f %9.3f", gib(rows[i].measured_bytes), gib(rows[i].rss_bytes),
                   rows[i].step_s);
        printf("\n");
    }
}

static int bench_memory(int argc, char **argv) {
    int batch = 1, seq_len = 400, steps = 3, threads = 0, json = 0, measure = 0;
    const char *dtype_name = NULL, *plot = NULL;
    const zt_arg_option options[] = {
        {"batch-size", ZT_ARG_INT, &batch, "B", "sequences per step (default 1, as MeZO's table)"},
        {"seq-len", ZT_ARG_INT, &seq_len, "T", "tokens per sequence (default 400, MultiRC's)"},
        {"dtype", ZT_ARG_STRING, &dtype_name, "D",
         "f32, f16 or bf16 for a config without weights (default: its torch_dtype, else f32)"},
        {"measure", ZT_ARG_FLAG, &measure, NULL,
         "also train --steps steps per method on the CPU (weights needed) and measure"},
        {"steps", ZT_ARG_INT, &steps, "N", "steps per measured method (default 3)"},
        {"threads", ZT_ARG_THREADS, &threads, "N", ZT_THREADS_HELP},
        {"json", ZT_ARG_FLAG, &json, NULL, "print one JSON object"},
        {"plot", ZT_ARG_STRING, &plot, "FILE.png",
         "also draw the planned peaks against model size (an 800 x 500 PNG; see above)"},
    };
    const zt_arg_spec spec = {
        "zotune bench memory",
        "zotune bench memory MODEL_OR_CONFIG_DIR [--batch-size B] [--seq-len T] [options]",
        "Peak memory of inference, ZO training (MeZO, in place and shadow) and first-order\n"
        "training (SGD and AdamW, with and without activation checkpointing) of one model, from\n"
        "the plans the runs reach to the byte (zotune info), with each plan's parts. A directory\n"
        "with only config.json (or the file) is planned without weights: any OPT size. With\n"
        "--measure and weights, each method also trains --steps steps on random tokens on the\n"
        "CPU, in a process of its own: tracked peak, process RSS and seconds per step. --plot\n"
        "draws each method's planned peak against the parameter count, log-log, at every\n"
        "published size of the model's family (OPT 125m ... 66b) with the model's vocabulary,\n"
        "positions and dtype, and marks the model itself.",
        options,
        (int)(sizeof options / sizeof options[0]),
        1,
        1};
    const char *positional[1] = {NULL};
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 3, positional, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    if (batch <= 0 || seq_len <= 0 || steps < 2 ||
        (long long)batch * seq_len > ZT_MAX_TOKENS_PER_FORWARD) {
        fprintf(stderr, "zotune bench memory: --batch-size, --seq-len must be positive (their "
                        "product at most 2^24) and --steps at least 2\n");
        return 2;
    }
    char config[4096];
    const int config_only = zt_cli_config_only(positional[0], config, sizeof config);
    const int dtype = dtype_name ? zt_cli_parse_dtype(dtype_name) : -1;
    if (dtype_name && (dtype < 0 || !config_only)) {
        fprintf(stderr,
                "zotune bench memory: --dtype '%s': f32, f16 or bf16, for a config "
                "without weights only\n",
                dtype_name);
        return 2;
    }
    if (measure && config_only) {
        fprintf(stderr,
                "zotune bench memory: --measure trains, which needs weights; %s has "
                "none\n",
                positional[0]);
        return 2;
    }
    zt_backend *be = NULL;
    zt_model *m = NULL;
    zt_bench_row rows[ZT_BENCH_N_METHODS];
    zt_status s = plot ? zt_bench_check_plot_path(plot) : ZT_OK;
    if (s == ZT_OK) s = zt_backend_open("cpu", threads, "f32", &be);
    if (s == ZT_OK)
        s = config_only ? zt_model_open_config(config, dtype, be, &m)
                        : zt_model_load(positional[0], be, &m);
    if (s == ZT_OK && seq_len > m->dims.max_positions)
        s = zt_fail(ZT_ERR_INVALID_ARG, "--seq-len %d: the model has %d positions", seq_len,
                    m->dims.max_positions);
    for (int i = 0; s == ZT_OK && i < ZT_BENCH_N_METHODS; i++)
        s = zt_bench_plan_row(m, &zt_bench_methods[i], batch, seq_len, &rows[i]);
    zt_bench_sizes sizes;
    if (s == ZT_OK && plot) s = zt_bench_plan_sizes(m, be, batch, seq_len, &sizes);
    char work[] = "/tmp/zotune_bench_memory_XXXXXX";
    char dtype_text[16] = "";
    const int vocab = m ? m->dims.vocab_size : 0;
    if (m)
        snprintf(dtype_text, sizeof dtype_text, "%s",
                 zt_dtype_name(m->tensors[m->embed_tokens].dtype));
    /* The children measure their own memory: what this process holds would count in theirs. */
    zt_model_free(m);
    zt_backend_destroy(be);
    m = NULL;
    be = NULL;
    if (s == ZT_OK && measure) {
        if (!mkdtemp(work)) s = zt_fail(ZT_ERR_IO, "bench memory: a temporary directory");
        char data[4200];
        snprintf(data, sizeof data, "%s/data.jsonl", work);
        const measure_ctx c = {positional[0], work, data, batch, seq_len, steps, threads};
        if (s == ZT_OK) s = write_random_data(vocab, &c);
        for (int i = 0; s == ZT_OK && i < ZT_BENCH_N_METHODS; i++) {
            if (!json) fprintf(stderr, "measuring %s ...\n", zt_bench_methods[i].name);
            s = measure_row(&c, &zt_bench_methods[i], &rows[i]);
        }
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
        if (system(cmd) != 0) fprintf(stderr, "zotune bench memory: could not remove %s\n", work);
    }
    if (s == ZT_OK) {
        if (json)
            print_json(positional[0], batch, seq_len, dtype_text, rows);
        else
            print_text(positional[0], batch, seq_len, dtype_text, rows);
    }
    if (s == ZT_OK && plot) {
        s = zt_bench_write_plot(plot, &sizes, rows, batch, seq_len, dtype_text);
        if (s == ZT_OK) fprintf(stderr, "wrote %s\n", plot);
    }
    return s == ZT_OK ? 0 : zt_cli_report("bench memory", s);
}

int zt_cmd_bench(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[2], "memory") == 0) return bench_memory(argc, argv);
    const int help = argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0);
    fprintf(help ? stdout : stderr,
            "usage: zotune bench memory MODEL_OR_CONFIG_DIR [options]  (zotune bench memory "
            "--help)\n");
    return help ? 0 : 2;
}
