/* The training loop: batches from the sampler, one ZO step each, the step log and metrics,
 * evaluation, snapshots, signals, resume. */
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/dir_lock.h"
#include "core/path.h"
#include "core/status.h"
#include "data/sampler.h"
#include "text/bpe.h"
#include "train/generate.h"
#include "train/snapshot.h"
#include "train/trainable.h"
#include "zo/steplog.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int signo) {
    (void)signo;
    stop_requested = 1;
}

void zt_train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void zt_train_options_default(zt_train_options *o) {
    memset(o, 0, sizeof *o);
    zt_zo_hparams_default(&o->hp);
    o->optimizer = "mezo";
    o->steps = 1000;
    o->batch_size = 16;
    o->seed = 42;
    o->mode = ZT_PERTURB_SHADOW;
    o->stochastic_rounding = 1;
    o->device = "cpu";
    o->gemm = "auto";
    o->log_every = 10;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double seconds, char *buf, size_t size) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, size, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else if (s >= 60) snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
    else snprintf(buf, size, "%lds", s);
}

typedef struct run {
    const zt_train_options *o;
    zt_tokenizer *tok; /* NULL when the model directory has none (pre-tokenized data only) */
    zt_backend *be;
    zt_model *model;
    zt_dataset train, eval;
    int have_eval;
    uint8_t *trainable;
    zt_param_set ps;
    int state_copies;
    zt_optimizer *optimizer;
    zt_workspace *ws;
    zt_task_objective objective_state;
    zt_objective objective;
    zt_steplog *log;
    FILE *metrics;
    zt_sampler sampler;
    int *indices;
    char log_path[4096];
} run;

static zt_status ensure_dir(const char *dir) {
    zt_status s = zt_make_dirs(dir);
    return s == ZT_OK ? ZT_OK : zt_fail_context(s, "--output %s: ", dir);
}

static zt_status open_data(run *r) {
    const zt_model_dims *d = &r->model->dims;
    ZT_TRY(zt_tokenizer_open_model_dir(r->o->model_dir, r->o->bos_mezo, &r->tok));
    ZT_TRY(zt_dataset_load(r->o->train_path, r->tok, d->vocab_size, d->max_positions, &r->train));
    if (r->o->eval_path) {
        ZT_TRY(zt_dataset_load(r->o->eval_path, r->tok, d->vocab_size, d->max_positions, &r->eval));
        r->have_eval = 1;
        if (r->eval.kind != r->train.kind)
            return zt_fail(ZT_ERR_INVALID_ARG, "--eval %s holds another kind of records than --train %s",
                           r->o->eval_path, r->o->train_path);
    }
    return ZT_OK;
}

/* K and whether directions live on the sphere, from the policy's plan of a first step. */
static zt_status probe_optimizer(zt_optimizer *optimizer, int *n_variants, int *sphere) {
    zt_step_plan probe;
    ZT_TRY(zt_optimizer_plan(optimizer, 0, 0, &probe));
    *n_variants = probe.n_variants;
    *sphere = probe.dist == ZT_DIRECTIONS_SPHERE;
    return ZT_OK;
}

zt_status zt_train_plan_memory(const zt_model *model, const uint8_t *trainable,
                               const char *optimizer_name,
                               const zt_zo_hparams *hp, int steps, zt_perturb_mode mode,
                               int sequences, int seq_len, zt_train_memory_plan *plan) {
    memset(plan, 0, sizeof *plan);
    for (int i = 0; i < model->n_tensors; i++)
        if (!trainable || trainable[i]) plan->trainable_elems += model->tensors[i].n_elems;
    zt_optimizer *optimizer = NULL;
    ZT_TRY(zt_optimizer_create(optimizer_name, hp, steps, plan->trainable_elems, &optimizer));
    int sphere = 0;
    zt_status s = probe_optimizer(optimizer, &plan->n_variants, &sphere);
    plan->state_copies = zt_optimizer_get_info(optimizer)->state_copies;
    zt_optimizer_free(optimizer);
    ZT_TRY(s);
    zt_workspace_shape shape = {sequences, seq_len, plan->n_variants,
                                    mode == ZT_PERTURB_SHADOW, sphere};
    zt_model_plan_memory(model, &shape, &plan->model);
    plan->optimizer_bytes = (size_t)plan->state_copies * plan->trainable_elems * sizeof(float);
    plan->total_bytes = plan->model.total_bytes + plan->optimizer_bytes;
    return ZT_OK;
}

static zt_status check_objective(const run *r) {
    const zt_train_options *o = r->o;
    if (o->objective == ZT_OBJECTIVE_ACCURACY &&
        (r->train.kind != ZT_TASK_CLASSIFICATION || o->train_as_lm))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--objective accuracy needs classification records trained as "
                       "classification (%s)",
                       o->train_path);
    if (o->objective == ZT_OBJECTIVE_F1 && (r->train.kind != ZT_TASK_GENERATION || !r->tok))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--objective f1 needs generation records and the model's tokenizer (%s)",
                       o->train_path);
    return ZT_OK;
}

static zt_status create_workspace(run *r) {
    ZT_TRY(check_objective(r));
    int sequences = zt_dataset_max_sequences(&r->train, r->o->batch_size, r->o->train_as_lm);
    int seq_len = r->train.max_sequence;
    if (r->have_eval) {
        /* evaluation always scores every candidate */
        int s = zt_dataset_max_sequences(&r->eval, r->o->batch_size, 0);
        if (s > sequences) sequences = s;
        if (r->eval.max_sequence > seq_len) seq_len = r->eval.max_sequence;
        seq_len = zt_generation_seq_len(&r->eval, r->model, seq_len);
    }
    if (r->o->objective == ZT_OBJECTIVE_F1)
        seq_len = zt_generation_seq_len(&r->train, r->model, seq_len);
    int n_variants = 0, sphere = 0;
    ZT_TRY(probe_optimizer(r->optimizer, &n_variants, &sphere));
    zt_workspace_shape shape = {sequences, seq_len, n_variants, r->o->mode == ZT_PERTURB_SHADOW,
                                    sphere};
    ZT_TRY(zt_workspace_create(r->model, &shape, &r->ws));
    memset(&r->objective_state, 0, sizeof r->objective_state);
    r->objective_state.model = r->model;
    r->objective_state.ws = r->ws;
    r->objective_state.mode = r->o->mode;
    r->objective_state.perturbed = r->trainable;
    r->objective_state.kind = r->o->objective;
    r->objective_state.dataset = &r->train;
    r->objective_state.tok = r->tok;
    zt_task_objective_bind(&r->objective_state, &r->objective);
    return ZT_OK;
}

/* Re-applies the log's records from `from_step` on: the policy re-derives its update from the
 * logged losses (rebuilding its scalar state) and must agree with the record. */
static zt_status replay_records(run *r, const zt_step_record *records, int n, int from_step,
                                int *next_step) {
    for (int i = 0; i < n; i++) {
        const zt_step_record *rec = &records[i];
        if (rec->step < from_step) continue;
        if (rec->step != *next_step)
            return zt_fail(ZT_ERR_FORMAT, "%s: record for step %d where step %d was expected",
                           r->log_path, rec->step, *next_step);
        zt_step_plan plan;
        zt_step_update update;
        ZT_TRY(zt_optimizer_plan(r->optimizer, rec->step, rec->step_seed, &plan));
        zt_step_plan more;
        if (zt_optimizer_extend(r->optimizer, rec->step, &plan, rec->losses, &more))
            ZT_TRY(zt_optimizer_append(&plan, &more));
        ZT_TRY(zt_optimizer_finish(r->optimizer, rec->step, &plan, rec->losses, &update));
        int same = update.n_terms == rec->update.n_terms && update.rule == rec->update.rule;
        for (int t = 0; same && t < update.n_terms; t++)
            same = update.terms[t].seed == rec->update.terms[t].seed;
        if (!same)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: step %d does not replay (the log was written with other options)",
                           r->log_path, rec->step);
        ZT_TRY(zt_zo_apply_update(&r->ps, rec));
        *next_step = rec->step + 1;
    }
    return ZT_OK;
}

/* Where the losses are computed, as the step log records it: "cpu, gemm f32", "cuda, gemm half". */
static void describe_compute(const zt_backend *be, char *out, size_t size) {
    snprintf(out, size, "%s, gemm %s", be->ops->name, zt_gemm_precision_name(be->gemm));
}

static zt_status load_model_and_state(run *r, int *next_step) {
    const zt_train_options *o = r->o;
    char snapshot[4096];
    int have_snapshot = o->resume && zt_snapshot_find(o->output_dir, snapshot, sizeof snapshot);
    ZT_TRY(zt_model_load(have_snapshot ? snapshot : o->model_dir, r->be, &r->model));
    r->trainable = zt_calloc((size_t)r->model->n_tensors, 1);
    if (!r->trainable) return zt_fail(ZT_ERR_NOMEM, "trainable mask");
    int count = 0;
    ZT_TRY(zt_model_select(r->model, o->trainable, r->trainable, &count));
    ZT_TRY(zt_trainable_param_set(r->model, r->trainable, &r->ps));
    ZT_TRY(zt_optimizer_create(o->optimizer, &o->hp, o->steps, r->ps.n_elems, &r->optimizer));
    r->state_copies = zt_optimizer_get_info(r->optimizer)->state_copies;
    ZT_TRY(zt_param_set_alloc_state(&r->ps, r->state_copies));
    *next_step = 0;
    if (have_snapshot)
        ZT_TRY(zt_snapshot_load_state(snapshot, &r->ps, r->state_copies, r->optimizer, next_step));

    snprintf(r->log_path, sizeof r->log_path, "%s/steplog.jsonl", o->output_dir);
    struct stat st;
    int log_exists = stat(r->log_path, &st) == 0 && st.st_size > 0;
    if (log_exists) {
        zt_steplog_header header;
        zt_step_record *records = NULL;
        int n = 0;
        ZT_TRY(zt_steplog_read(r->log_path, &header, &records, &n, NULL));
        if (!o->resume && n > 0) {
            free(records);
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--output %s already holds a run of %d steps: pass --resume to continue "
                           "it, or choose another directory",
                           o->output_dir, n);
        }
        zt_status s = replay_records(r, records, n, *next_step, next_step);
        free(records);
        ZT_TRY(s);
        char compute[sizeof header.compute];
        describe_compute(r->be, compute, sizeof compute);
        if (header.compute[0] && strcmp(header.compute, compute) != 0)
            fprintf(stderr,
                    "zotune train: warning: %s was started on %s, this run computes on %s: "
                    "the steps from here will not be bit-identical to an uninterrupted run "
                    "(that needs the same --device and --gemm)\n",
                    r->log_path, header.compute, compute);
    }
    zt_steplog_header header;
    memset(&header, 0, sizeof header);
    describe_compute(r->be, header.compute, sizeof header.compute);
    snprintf(header.optimizer, sizeof header.optimizer, "%s", o->optimizer);
    snprintf(header.trainable, sizeof header.trainable, "%s", o->trainable ? o->trainable : "");
    snprintf(header.model, sizeof header.model, "%s", o->model_dir);
    header.state_copies = r->state_copies;
    header.run_seed = o->seed;
    return zt_steplog_open_append(r->log_path, &header, &r->log);
}

/* Checkpoints carry the base model's tokenizer files, so an output directory is a complete
 * model directory (zotune eval / transformers read text with it). Absent files are skipped. */
static zt_status copy_tokenizer_files(const char *from_dir, const char *to_dir) {
    static const char *const names[] = {"tokenizer.json", "vocab.json", "merges.txt",
                                        "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/%s", from_dir, names[i]);
        snprintf(to, sizeof to, "%s/%s", to_dir, names[i]);
        FILE *in = fopen(from, "rb");
        if (!in) continue;
        FILE *out = fopen(to, "wb");
        if (!out) {
            fclose(in);
            return zt_fail(ZT_ERR_IO, "%s: cannot write: %s", to, strerror(errno));
        }
        char buf[65536];
        size_t n;
        int ok = 1;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0) ok &= fwrite(buf, 1, n, out) == n;
        fclose(in);
        if (fclose(out) != 0 || !ok) return zt_fail(ZT_ERR_IO, "%s: short write", to);
    }
    return ZT_OK;
}

/* The best dev metric so far lives beside its checkpoint (best/metric.json), so a resumed run
 * keeps comparing against it. */
static void read_best(run *r, zt_train_result *res) {
    char path[4096];
    snprintf(path, sizeof path, "%s/best/metric.json", r->o->output_dir);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char text[512];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *o = cJSON_Parse(text);
    const cJSON *metric = cJSON_GetObjectItem(o, "metric"), *step = cJSON_GetObjectItem(o, "step");
    if (cJSON_IsNumber(metric) && cJSON_IsNumber(step)) {
        res->best_eval_metric = metric->valuedouble;
        res->best_step = step->valueint;
    }
    cJSON_Delete(o);
}

static zt_status save_best(run *r, int step, const zt_eval_result *e, zt_train_result *res) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/best", r->o->output_dir);
    ZT_TRY(zt_model_save(r->model, dir));
    ZT_TRY(copy_tokenizer_files(r->o->model_dir, dir));
    snprintf(path, sizeof path, "%s/metric.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fprintf(f, "{\"step\": %d, \"metric\": %.17g, \"name\": \"%s\"}\n", step, e->metric,
                      e->metric_name) < 0) {
        if (f) fclose(f);
        return zt_fail(ZT_ERR_IO, "%s: cannot write", path);
    }
    fclose(f);
    res->best_eval_metric = e->metric;
    res->best_step = step;
    return ZT_OK;
}

static zt_status evaluate_and_report(run *r, int step, zt_eval_result *e, zt_train_result *res) {
    ZT_TRY(zt_evaluate(&r->objective_state, &r->eval, r->o->batch_size, r->tok, e));
    fprintf(r->metrics, "{\"step\":%d,\"eval_loss\":%.9g", step, e->loss);
    if (e->accuracy >= 0) fprintf(r->metrics, ",\"eval_accuracy\":%.6f", e->accuracy);
    if (e->f1 >= 0) fprintf(r->metrics, ",\"eval_f1\":%.6f,\"eval_em\":%.6f", e->f1, e->exact_match);
    fprintf(r->metrics, "}\n");
    fflush(r->metrics);
    if (!r->o->quiet) {
        fprintf(stderr, "eval  step %d: loss %.5f", step, e->loss);
        if (e->accuracy >= 0) fprintf(stderr, ", accuracy %.2f%%", 100.0 * e->accuracy);
        if (e->f1 >= 0) fprintf(stderr, ", F1 %.2f, EM %.2f", 100.0 * e->f1, 100.0 * e->exact_match);
        fprintf(stderr, "\n");
    }
    res->metric_name = e->metric_name;
    if (r->o->hp.lr_schedule == ZT_SCHEDULE_PLATEAU) zt_optimizer_observe(r->optimizer, e->loss);
    if (res->best_step < 0 || e->metric > res->best_eval_metric) ZT_TRY(save_best(r, step, e, res));
    return ZT_OK;
}

static void progress(const run *r, int step, double loss, double lr, double t_start, int first_step) {
    double elapsed = now_seconds() - t_start;
    int done = step + 1 - first_step;
    double rate = elapsed > 0 ? done / elapsed : 0.0;
    char eta[32];
    format_duration(rate > 0 ? (r->o->steps - step - 1) / rate : 0.0, eta, sizeof eta);
    zt_mem_stats mem;
    zt_mem_stats_get(&mem);
    fprintf(stderr, "step %6d/%d  loss %.5f  lr %.3g  %.2f steps/s  ETA %s  peak %.1f MiB\n",
            step + 1, r->o->steps, loss, lr, rate, eta, (double)mem.peak_total / (1024.0 * 1024.0));
}

static zt_status train_loop(run *r, int first_step, zt_train_result *res) {
    const zt_train_options *o = r->o;
    zt_engine_options eo = {o->seed, o->stochastic_rounding};
    double t_start = now_seconds();
    int steps_this_run = 0;
    for (int step = first_step; step < o->steps; step++) {
        zt_sampler_batch(&r->sampler, step, r->indices);
        zt_task_batch batch;
        ZT_TRY(zt_task_batch_build(&r->train, r->indices, o->batch_size, r->model->dims.pad_token_id,
                                   o->train_as_lm, &batch));
        r->objective_state.batch = &batch;
        r->objective_state.indices = r->indices;
        r->objective_state.n_indices = o->batch_size;
        zt_step_record rec;
        zt_status s = zt_zo_step(r->optimizer, &r->ps, &r->objective, step, &eo, &rec);
        r->objective_state.batch = NULL;
        zt_task_batch_free(&batch);
        ZT_TRY(s);
        ZT_TRY(zt_steplog_append(r->log, &rec));
        double loss = rec.losses[0];
        res->last_train_loss = loss;
        res->steps_done = step + 1;
        fprintf(r->metrics, "{\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"projected_grad\":%.9g,"
                            "\"elapsed_s\":%.3f}\n",
                step + 1, loss, rec.update.lr, rec.update.projected_grad, now_seconds() - t_start);
        if (!o->quiet && (o->log_every > 0 && ((step + 1) % o->log_every == 0 || step == first_step)))
            progress(r, step, loss, rec.update.lr, t_start, first_step);
        steps_this_run++;
        int last = step + 1 == o->steps;
        if (r->have_eval && o->eval_every > 0 && (step + 1) % o->eval_every == 0 && !last) {
            zt_eval_result e;
            ZT_TRY(evaluate_and_report(r, step + 1, &e, res));
            if (o->hp.lr_schedule == ZT_SCHEDULE_PLATEAU)
                ZT_TRY(zt_snapshot_save(o->output_dir, r->model, &r->ps, r->state_copies, r->optimizer,
                                        step + 1));
        }
        if (o->save_every > 0 && (step + 1) % o->save_every == 0 && !last) {
            ZT_TRY(zt_steplog_sync(r->log));
            ZT_TRY(zt_snapshot_save(o->output_dir, r->model, &r->ps, r->state_copies, r->optimizer,
                                    step + 1));
        }
        if (stop_requested || (o->stop_after > 0 && steps_this_run >= o->stop_after)) {
            res->interrupted = !last;
            break;
        }
    }
    return ZT_OK;
}

static void run_free(run *r) {
    zt_steplog_close(r->log);
    if (r->metrics) fclose(r->metrics);
    zt_sampler_free(&r->sampler);
    free(r->indices);
    zt_task_objective_release(&r->objective_state);
    zt_workspace_free(r->ws);
    if (r->model) zt_param_set_free_state(&r->ps, r->state_copies);
    zt_trainable_param_set_free(&r->ps);
    zt_optimizer_free(r->optimizer);
    free(r->trainable);
    zt_dataset_free(&r->train);
    if (r->have_eval) zt_dataset_free(&r->eval);
    zt_model_free(r->model);
    zt_backend_destroy(r->be);
    zt_tokenizer_free(r->tok);
}

static zt_status check_options(const zt_train_options *o) {
    if (!o->model_dir) return zt_fail(ZT_ERR_INVALID_ARG, "--model is required");
    if (!o->train_path) return zt_fail(ZT_ERR_INVALID_ARG, "--train is required");
    if (!o->output_dir) return zt_fail(ZT_ERR_INVALID_ARG, "--output is required");
    if (o->steps <= 0) return zt_fail(ZT_ERR_INVALID_ARG, "--steps %d: must be positive", o->steps);
    if (o->batch_size <= 0 || o->batch_size > ZT_MAX_TOKENS_PER_FORWARD)
        return zt_fail(ZT_ERR_INVALID_ARG, "--batch-size %d: must be in 1 .. %d", o->batch_size,
                       (int)ZT_MAX_TOKENS_PER_FORWARD);
    return ZT_OK;
}

zt_status zt_train(const zt_train_options *o, zt_train_result *res) {
    memset(res, 0, sizeof *res);
    res->first_eval_accuracy = res->last_eval_accuracy = -1.0;
    res->first_eval_loss = res->last_eval_loss = NAN;
    ZT_TRY(check_options(o));
    stop_requested = 0;
    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    int next_step = 0;
    const char *inputs[] = {o->model_dir, o->train_path, o->eval_path};
    const char *input_options[] = {"--model", "--train", "--eval"};
    ZT_TRY(zt_check_output_apart(o->output_dir, "--output", inputs, input_options, 3));
    zt_dir_lock lock = {-1};
    zt_status s = ensure_dir(o->output_dir);
    if (s == ZT_OK) s = zt_dir_lock_acquire(o->output_dir, "--output", &lock);
    if (s == ZT_OK) s = zt_backend_open(o->device, o->threads, o->gemm, &r.be);
    if (s == ZT_OK) s = load_model_and_state(&r, &next_step);
    if (s == ZT_OK) s = open_data(&r);
    if (s == ZT_OK) s = create_workspace(&r);
    if (s == ZT_OK) s = zt_sampler_init(&r.sampler, o->seed ^ 0xA0761D6478BD642Full, r.train.n_examples,
                                        o->batch_size);
    if (s == ZT_OK) {
        r.indices = zt_malloc((size_t)o->batch_size * sizeof *r.indices);
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", o->output_dir);
        r.metrics = fopen(path, "ab");
        if (!r.indices || !r.metrics) s = zt_fail(ZT_ERR_IO, "%s: cannot open for appending", path);
    }
    zt_mem_reset_peak();
    res->best_step = -1;
    if (s == ZT_OK && r.have_eval) read_best(&r, res);
    if (s == ZT_OK && r.have_eval) {
        zt_eval_result e;
        s = evaluate_and_report(&r, next_step, &e, res);
        res->first_eval_loss = e.loss;
        res->first_eval_accuracy = e.accuracy;
        res->first_eval_metric = e.metric;
    }
    res->steps_done = next_step;
    if (s == ZT_OK && next_step < o->steps) s = train_loop(&r, next_step, res);
    if (s == ZT_OK && r.have_eval && !res->interrupted) {
        zt_eval_result e;
        s = evaluate_and_report(&r, res->steps_done, &e, res);
        res->last_eval_loss = e.loss;
        res->last_eval_accuracy = e.accuracy;
        res->last_eval_metric = e.metric;
    }
    /* Whatever happened after loading, what the log describes is saved: a failed step leaves
     * the weights as of the last logged step (updates are applied after logging's inputs). */
    if (r.log) {
        zt_status saved = zt_steplog_sync(r.log);
        if (saved == ZT_OK && r.model)
            saved = zt_snapshot_save(o->output_dir, r.model, &r.ps, r.state_copies, r.optimizer,
                                     res->steps_done);
        if (saved == ZT_OK && r.model) saved = zt_model_save(r.model, o->output_dir);
        if (saved == ZT_OK && r.model) saved = copy_tokenizer_files(o->model_dir, o->output_dir);
        if (s == ZT_OK) s = saved;
    }
    zt_mem_stats mem;
    zt_mem_stats_get(&mem);
    res->peak_bytes = mem.peak_total;
    run_free(&r);
    zt_dir_lock_release(&lock);
    return s;
}
