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
#include "core/fault.h"
#include "core/path.h"
#include "core/status.h"
#include "io/atomic_file.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "data/sampler.h"
#include "text/bpe.h"
#include "train/snapshot.h"
#include "train/train_run.h"
#include "train/first_order_run.h"
#include "train/trainable.h"
#include "dist/comm.h"
#include "dist/dp_reduce.h"
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
    o->fo.micro_batches = 1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double seconds, char *buf, size_t size) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else if (s >= 60)
        snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(buf, size, "%lds", s);
}

typedef zt_run run;

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
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--eval %s holds another kind of records than --train %s",
                           r->o->eval_path, r->o->train_path);
        /* greedy decoding runs every layer in one process; a stage holds its own */
        if (r->pipeline && r->eval.kind == ZT_TASK_GENERATION)
            return zt_fail(ZT_ERR_UNAVAILABLE,
                           "--pipeline-stages %d with --eval %s: its generation records are "
                           "evaluated by greedy decoding, which runs every layer on one rank; "
                           "not in this version",
                           r->o->pipeline_stages, r->o->eval_path);
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
                               const char *optimizer_name, const zt_zo_hparams *hp,
                               const zt_fo_options *fo_options, int steps, zt_perturb_mode mode,
                               const zt_train_shape *train_shape, zt_train_memory_plan *plan) {
    memset(plan, 0, sizeof *plan);
    size_t largest_trainable = 0;
    for (int i = 0; i < model->n_tensors; i++)
        if (!trainable || trainable[i]) {
            plan->trainable_elems += model->tensors[i].n_elems;
            if (model->tensors[i].n_elems > largest_trainable)
                largest_trainable = model->tensors[i].n_elems;
        }
    const zt_fo_info *fo = zt_fo_find(optimizer_name);
    if (fo) {
        plan->first_order = 1;
        plan->n_variants = 1;
        plan->state_copies = zt_fo_state_copies(fo, hp);
        const zt_workspace_shape shape = {train_shape->sequences, train_shape->seq_len, 1, 0, 0};
        zt_model_plan_memory(model, &shape, &plan->model);
        if (train_shape->cache_batch > 0)
            zt_kv_cache_plan_memory(model, train_shape->cache_batch, train_shape->cache_columns,
                                    &plan->model);
        /* one grow-only scratch: the largest of the forward's, backprop's and the norm's */
        const zt_scratch_query norm = {.op = ZT_SCRATCH_GRAD_SUMSQ,
                                       .weight_dtype = ZT_F32,
                                       .bias_dtype = ZT_F32,
                                       .n_elems = largest_trainable};
        size_t scratch = zt_grad_scratch_bytes(model, train_shape->sequences, train_shape->seq_len);
        const size_t norm_scratch = model->be->ops->scratch_bytes(model->be, &norm);
        if (norm_scratch > scratch) scratch = norm_scratch;
        if (scratch > plan->model.backend_scratch_bytes) {
            plan->model.total_bytes += scratch - plan->model.backend_scratch_bytes;
            plan->model.backend_scratch_bytes = scratch;
        }
        plan->backprop_bytes =
            zt_grad_buffers_bytes(model, train_shape->sequences, train_shape->seq_len,
                                  fo_options ? fo_options->checkpoint_activations : 0);
        /* every parameter's, or a LoRA model's adapters' alone (zt_model_grad_layout) */
        size_t gradient_elems = 0;
        for (int i = zt_model_first_staged(model); i < model->n_tensors; i++)
            gradient_elems += model->tensors[i].n_elems;
        plan->gradient_bytes = gradient_elems * sizeof(float);
        plan->optimizer_bytes = (size_t)plan->state_copies * plan->trainable_elems * sizeof(float);
        plan->total_bytes = plan->model.total_bytes + plan->backprop_bytes + plan->gradient_bytes +
                            plan->optimizer_bytes;
        return ZT_OK;
    }
    zt_optimizer *optimizer = NULL;
    ZT_TRY(zt_optimizer_create(optimizer_name, hp, steps, plan->trainable_elems, &optimizer));
    int sphere = 0;
    zt_status s = probe_optimizer(optimizer, &plan->n_variants, &sphere);
    plan->state_copies = zt_optimizer_get_info(optimizer)->state_copies;
    zt_optimizer_free(optimizer);
    ZT_TRY(s);
    zt_workspace_shape shape = {train_shape->sequences, train_shape->seq_len, plan->n_variants,
                                mode == ZT_PERTURB_SHADOW, sphere};
    zt_model_plan_memory(model, &shape, &plan->model);
    if (train_shape->cache_batch > 0)
        zt_kv_cache_plan_memory(model, train_shape->cache_batch, train_shape->cache_columns,
                                &plan->model);
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
    zt_train_shape run_shape;
    zt_train_shape_of(r->model, &r->train, r->have_eval ? &r->eval : NULL,
                      zt_train_largest_micro_batch(r->o), r->o->batch_size, r->o->train_as_lm,
                      r->o->objective == ZT_OBJECTIVE_F1, &run_shape);
    int n_variants = 1, sphere = 0;
    if (r->optimizer) ZT_TRY(probe_optimizer(r->optimizer, &n_variants, &sphere));
    zt_workspace_shape shape = {run_shape.sequences, run_shape.seq_len, n_variants,
                                r->optimizer && r->o->mode == ZT_PERTURB_SHADOW, sphere};
    ZT_TRY(zt_workspace_create(r->model, &shape, &r->ws));
    if (r->any_fo) ZT_TRY(zt_fo_run_prepare(r, run_shape.sequences, run_shape.seq_len));
    memset(&r->objective_state, 0, sizeof r->objective_state);
    r->objective_state.model = r->model;
    r->objective_state.ws = r->ws;
    r->objective_state.mode = r->o->mode;
    r->objective_state.perturbed = r->trainable;
    r->objective_state.kind = r->o->objective;
    r->objective_state.dataset = &r->train;
    r->objective_state.tok = r->tok;
    r->objective_state.comm = r->replicas;
    r->objective_state.global_examples = r->o->batch_size;
    r->objective_state.direction_groups = r->o->direction_groups;
    zt_task_objective_bind(&r->objective_state, &r->objective);
    return ZT_OK;
}

/* Checkpoints carry the base model's tokenizer files, so an output directory is a complete
 * model directory (zotune eval / transformers read text with it). Absent files are skipped;
 * each copy is written atomically, so a full disk never leaves a truncated tokenizer. */
static zt_status copy_tokenizer_files(const char *from_dir, const char *to_dir) {
    static const char *const names[] = {"tokenizer.json", "vocab.json", "merges.txt",
                                        "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/%s", from_dir, names[i]);
        snprintf(to, sizeof to, "%s/%s", to_dir, names[i]);
        FILE *in = fopen(from, "rb");
        if (!in) continue;
        char *content = NULL;
        size_t size = 0;
        FILE *buffer = open_memstream(&content, &size);
        char chunk[65536];
        size_t n;
        int ok = buffer != NULL;
        while (ok && (n = fread(chunk, 1, sizeof chunk, in)) > 0)
            ok = fwrite(chunk, 1, n, buffer) == n;
        ok = ok && !ferror(in);
        fclose(in);
        if (buffer && fclose(buffer) != 0) ok = 0;
        zt_status s = ok ? ZT_OK : zt_fail(ZT_ERR_IO, "%s: cannot read", from);
        if (s == ZT_OK) {
            const void *chunks[] = {content};
            size_t chunk_bytes[] = {size};
            s = zt_write_file_atomic(to, chunks, chunk_bytes, 1);
        }
        free(content);
        ZT_TRY(s);
    }
    return ZT_OK;
}

/* The step size is the one the update applied: lr, or alpha_k for the search policies. */
static void progress(const run *r, int step, double loss, double step_size, double t_start,
                     int first_step) {
    double elapsed = now_seconds() - t_start;
    int done = step + 1 - first_step;
    double rate = elapsed > 0 ? done / elapsed : 0.0;
    char eta[32];
    format_duration(rate > 0 ? (r->o->steps - step - 1) / rate : 0.0, eta, sizeof eta);
    zt_mem_stats mem;
    zt_mem_stats_get(&mem);
    fprintf(stderr, "step %6d/%d  loss %.5f  %s %.3g  %.2f steps/s  ETA %s  peak %.1f MiB\n",
            step + 1, r->o->steps, loss,
            r->fo || !r->optimizer ? "lr" : zt_optimizer_get_info(r->optimizer)->step_label,
            step_size, rate, eta, (double)mem.peak_total / (1024.0 * 1024.0));
}

static void run_free(run *r) {
    zt_run_pipeline_release(r);
    zt_steplog_close(r->log);
    if (r->metrics) fclose(r->metrics);
    zt_sampler_free(&r->sampler);
    free(r->indices);
    free(r->micro);
    zt_task_objective_release(&r->objective_state);
    zt_workspace_free(r->ws);
    zt_fo_run_release(r);
    if (r->model) zt_param_set_free_state(&r->ps, r->state_copies);
    zt_trainable_param_set_free(&r->ps);
    zt_deferred_update_free(&r->deferred);
    zt_optimizer_free(r->optimizer);
    free(r->trainable);
    zt_dataset_free(&r->train);
    if (r->have_eval) zt_dataset_free(&r->eval);
    zt_model_free(r->model);
    zt_backend_destroy(r->be);
    zt_tokenizer_free(r->tok);
}

static int any_first_order(const zt_phases *phases) {
    for (int k = 0; k < phases->n; k++)
        if (phases->phase[k].fo) return 1;
    return 0;
}

/* --pipeline-stages: the stages divide the ranks (the layers are checked once the model is
 * loaded); a stage runs zt_model_forward's share of the layers, which the options below would
 * bypass or split otherwise. */
static zt_status check_pipeline_options(const zt_train_options *o, const zt_phases *phases) {
    const int stages = o->pipeline_stages, ranks = o->comm ? o->comm->size : 1;
    if (stages < 0 || stages > ranks || ranks % (stages > 1 ? stages : 1) != 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--pipeline-stages %d: must divide the %d ranks (ranks = stages x "
                       "data-parallel replicas)",
                       stages, ranks);
    if (stages <= 1) return ZT_OK;
    const char *other = o->lora || o->prefix || o->prompt ? "--peft"
                        : any_first_order(phases)         ? "a first-order optimizer"
                        : o->objective == ZT_OBJECTIVE_F1 ? "--objective f1"
                                                          : NULL;
    if (other)
        return zt_fail(ZT_ERR_UNAVAILABLE, "--pipeline-stages %d with %s: not in this version",
                       stages, other);
    return ZT_OK;
}

static zt_status check_options(const zt_train_options *o) {
    if (!o->model_dir) return zt_fail(ZT_ERR_INVALID_ARG, "--model is required");
    if (!o->train_path) return zt_fail(ZT_ERR_INVALID_ARG, "--train is required");
    if (!o->output_dir) return zt_fail(ZT_ERR_INVALID_ARG, "--output is required");
    if (o->steps <= 0) return zt_fail(ZT_ERR_INVALID_ARG, "--steps %d: must be positive", o->steps);
    zt_phases phases;
    ZT_TRY(zt_phases_parse(o->schedule, o->optimizer, o->steps, &phases));
    if (zt_phases_steps(&phases) != o->steps)
        return zt_fail(ZT_ERR_INVALID_ARG, "--schedule %s has %d steps, --steps says %d",
                       o->schedule, zt_phases_steps(&phases), o->steps);
    const char *name = o->schedule ? o->schedule : o->optimizer;
    if (any_first_order(&phases)) {
        if (o->hp.lr_schedule == ZT_SCHEDULE_PLATEAU)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--lr-schedule plateau: not with a first-order optimizer (%s)", name);
        if (o->objective != ZT_OBJECTIVE_LOSS)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--objective %s: a first-order optimizer (%s) follows the loss's "
                           "gradient; the metric has none",
                           o->objective == ZT_OBJECTIVE_ACCURACY ? "accuracy" : "f1", name);
        if (o->fo.micro_batches < 1 || o->fo.micro_batches > o->batch_size)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--micro-batches %d: must be in 1 .. --batch-size %d",
                           o->fo.micro_batches, o->batch_size);
        if (o->fo.nesterov && !(o->hp.momentum > 0.0))
            return zt_fail(ZT_ERR_INVALID_ARG, "--nesterov needs --momentum > 0 (%s)", name);
        if (!(o->fo.clip_norm >= 0.0) || !isfinite(o->fo.clip_norm))
            return zt_fail(ZT_ERR_INVALID_ARG, "--clip-grad-norm %g: must be >= 0 (0: off)",
                           o->fo.clip_norm);
    } else if (o->fo.nesterov || o->fo.clip_norm != 0.0 || o->fo.micro_batches > 1 ||
               o->fo.checkpoint_activations) {
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--nesterov, --clip-grad-norm, --micro-batches and "
                       "--checkpoint-activations are first-order options; %s is zeroth-order",
                       name);
    }
    if (o->batch_size <= 0 || o->batch_size > ZT_MAX_TOKENS_PER_FORWARD)
        return zt_fail(ZT_ERR_INVALID_ARG, "--batch-size %d: must be in 1 .. %d", o->batch_size,
                       (int)ZT_MAX_TOKENS_PER_FORWARD);
    if (o->verify_replicas < 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--verify-replicas %d: must be 0 (off) or more",
                       o->verify_replicas);
    ZT_TRY(check_pipeline_options(o, &phases));
    /* the data-parallel ranks: with pipeline stages, the replicas of each stage */
    const int ranks = zt_train_replicas(o);
    if (o->grad_accum < 0 || o->grad_accum > o->batch_size / (ranks / zt_train_direction_groups(o)))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--grad-accum %d: must be in 1 .. %d (every micro-batch needs an example)",
                       o->grad_accum, o->batch_size / (ranks / zt_train_direction_groups(o)));
    if (o->grad_accum > 1 && any_first_order(&phases))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--grad-accum is for zeroth-order steps; a first-order optimizer (%s) "
                       "splits its step with --micro-batches",
                       name);
    if (ranks > 1 && any_first_order(&phases))
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "%s over %d ranks: first-order training runs in one process (data-parallel "
                       "backprop needs a gradient all-reduce, not in this version)",
                       name, ranks);
    const int groups = o->direction_groups > 1 ? o->direction_groups : 1;
    /* with stages, a group is made of whole pipelines: it divides the replicas */
    if (o->direction_groups < 0 || ranks % groups != 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--direction-groups %d: must divide the %d %s into equal groups",
                       o->direction_groups, ranks,
                       zt_train_pipeline_stages(o) > 1 ? "pipeline replicas (ranks / "
                                                         "--pipeline-stages)"
                                                       : "ranks");
    if (groups > 1 && o->mode == ZT_PERTURB_INPLACE)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--direction-groups %d with --mode inplace: each group would walk the "
                       "weights through other variants and round them differently; use shadow",
                       groups);
    if (ranks > 1 && o->batch_size < ranks / groups)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--batch-size %d over %d ranks per group: every rank needs at least one "
                       "example",
                       o->batch_size, ranks / groups);
    return ZT_OK;
}

/* The weights from the snapshot when resuming one, else the base; the base's fingerprint either
 * way (hashed while loading, or read once more from the base when a snapshot was loaded). */
static zt_status load_model(run *r) {
    const zt_train_options *o = r->o;
    int have_snapshot =
        o->resume && zt_snapshot_find(o->output_dir, r->snapshot_dir, sizeof r->snapshot_dir);
    if (!have_snapshot) r->snapshot_dir[0] = '\0';
    if (o->lora) return zt_lora_run_load(r, have_snapshot);
    if (o->prefix) return zt_prefix_run_load(r, have_snapshot);
    if (o->prompt) return zt_prompt_run_load(r);
    /* a pipeline stage loads its own tensors (the snapshot is a whole model directory too) */
    zt_model_stage share;
    int staged = 0;
    ZT_TRY(zt_run_pipeline_share(r, &share, &staged));
    const char *dir = have_snapshot ? r->snapshot_dir : o->model_dir;
    ZT_TRY(staged ? zt_model_load_stage(dir, r->be, &share, &r->model)
                  : zt_model_load(dir, r->be, &r->model));
    if (have_snapshot)
        ZT_TRY(zt_model_fingerprint_dir(o->model_dir, &r->base_fingerprint));
    else
        r->base_fingerprint = r->model->fingerprint;
    r->trainable = zt_calloc((size_t)r->model->n_tensors, 1);
    if (!r->trainable) return zt_fail(ZT_ERR_NOMEM, "trainable mask");
    int count = 0;
    ZT_TRY(zt_model_select(r->model, o->trainable, r->trainable, &count));
    return zt_trainable_param_set(r->model, r->trainable, &r->ps);
}

/* A new run starts an empty log and metrics.jsonl; --resume checks that the log describes this
 * same run, rebuilds the state after its last record, and rewrites metrics.jsonl from it. */
static zt_status open_log(run *r) {
    const zt_train_options *o = r->o;
    snprintf(r->log_path, sizeof r->log_path, "%s/steplog.jsonl", o->output_dir);
    snprintf(r->metrics_path, sizeof r->metrics_path, "%s/metrics.jsonl", o->output_dir);
    struct stat st;
    int log_exists = stat(r->log_path, &st) == 0 && st.st_size > 0;
    zt_steplog_header logged;
    zt_step_record *records = NULL;
    int n = 0;
    if (log_exists) ZT_TRY(zt_steplog_read(r->log_path, &logged, &records, &n, NULL));
    /* a run begun over several ranks goes on batch-invariant, in one process or any number */
    if (log_exists && strstr(logged.compute, ZT_BATCH_INVARIANT_NAME))
        ZT_TRY(zt_backend_set_batch_invariant(r->be, 1));
    zt_status s = ZT_OK;
    if (n > 0 && !o->resume)
        s = zt_fail(ZT_ERR_INVALID_ARG,
                    "--output %s already holds a run of %d records: pass --resume to continue it, "
                    "or choose another directory",
                    o->output_dir, n);
    r->state_copies = zt_run_state_copies(r);
    zt_run_describe(r);
    if (s == ZT_OK && log_exists) s = zt_run_check_same(r, &logged);
    if (s == ZT_OK && log_exists) s = zt_steplog_check_z_layout(&logged, records, n, r->log_path);
    if (s == ZT_OK) s = zt_run_rebuild_state(r, records, n);
    if (s == ZT_OK && zt_run_writes_files(r) && log_exists &&
        strcmp(logged.compute, r->header.compute) != 0 && logged.compute[0])
        fprintf(stderr,
                "zotune train: warning: %s was started on %s, this run computes on %s: the steps "
                "from here will not be bit-identical to an uninterrupted run (that needs the same "
                "--device, --gemm and GEMM kernels)\n",
                r->log_path, logged.compute, r->header.compute);
    /* every rank has read the log (and the snapshot) before rank 0 creates or changes either */
    if (s == ZT_OK) s = zt_run_barrier(r);
    if (!zt_run_writes_files(r)) {
        free(records);
        return s;
    }
    /* A first-order run's steps past its snapshot are made again: cut them from the log. */
    if (s == ZT_OK && r->kept_records < n)
        s = zt_steplog_keep_records(r->log_path, r->kept_records);
    if (s == ZT_OK) s = zt_run_rewrite_metrics(r, records, r->kept_records);
    free(records);
    ZT_TRY(s);
    r->metrics = fopen(r->metrics_path, "ab");
    if (!r->metrics)
        return zt_fail(ZT_ERR_IO, "%s: cannot open for appending: %s", r->metrics_path,
                       strerror(errno));
    return zt_steplog_open_append(r->log_path, &r->header, &r->log);
}

/* The world communicator's totals (0 in one process). */
static void world_traffic(const run *r, unsigned long long *sent, unsigned long long *received) {
    const zt_comm *c = r->o->comm;
    *sent = c ? zt_comm_traffic_sent(&c->traffic) : 0;
    *received = c ? zt_comm_traffic_received(&c->traffic) : 0;
}

static int counts_traffic(const run *r) {
    return r->o->comm && r->o->comm->size > 1;
}

/* The traffic since the mark goes to the step it belongs to; from here on, to `step` (-1: to
 * none). */
static void traffic_to(run *r, int step) {
    if (!counts_traffic(r)) return;
    unsigned long long sent = 0, received = 0;
    world_traffic(r, &sent, &received);
    if (r->traffic_step >= 0) {
        r->step_sent[r->traffic_step % 2] += sent - r->traffic_mark_sent;
        r->step_received[r->traffic_step % 2] += received - r->traffic_mark_received;
    }
    r->traffic_mark_sent = sent;
    r->traffic_mark_received = received;
    r->traffic_step = step;
}

/* A step's line takes the bytes of its step (on every rank, to sum them; rank 0 writes them);
 * not counted in one process or on other lines. */
static zt_line_traffic take_step_traffic(run *r, const zt_step_record *rec) {
    zt_line_traffic t = {-1, -1};
    if (!counts_traffic(r) || rec->kind == ZT_RECORD_EVAL || rec->kind == ZT_RECORD_PHASE) return t;
    traffic_to(r, r->traffic_step);
    const int slot = rec->step % 2;
    t.sent = (long long)r->step_sent[slot];
    t.received = (long long)r->step_received[slot];
    r->lines_sent += r->step_sent[slot];
    r->lines_received += r->step_received[slot];
    r->step_sent[slot] = r->step_received[slot] = 0;
    return t;
}

static zt_status write_metrics_line(run *r, const zt_step_record *rec,
                                    const zt_line_traffic *traffic, double elapsed) {
    char line[ZT_METRICS_LINE_MAX];
    zt_run_metrics_line(rec, elapsed, traffic, line, sizeof line);
    if (zt_write_stream(r->metrics, line, strlen(line)) != 0 || fflush(r->metrics) != 0)
        return zt_fail(ZT_ERR_IO, "%s: writing step %d: %s", r->metrics_path, rec->step,
                       strerror(errno));
    return ZT_OK;
}

/* A record into the log (rank 0). The state moves past a step only once its record is in. */
static zt_status append_record(run *r, const zt_step_record *rec) {
    return zt_run_writes_files(r) ? zt_steplog_append(r->log, rec) : ZT_OK;
}

/* The record's metrics.jsonl line (rank 0). */
static zt_status metrics_line(run *r, const zt_step_record *rec, double elapsed) {
    const zt_line_traffic traffic = take_step_traffic(r, rec);
    return zt_run_writes_files(r) ? write_metrics_line(r, rec, &traffic, elapsed) : ZT_OK;
}

/* best/ holds the weights of the best evaluation so far with their score; it is complete
 * before the evaluation reaches the log, so a kill in between only repeats this save. */
static zt_status save_best(run *r, int step, const zt_eval_result *e) {
    char dir[4096], path[4200], text[256];
    snprintf(dir, sizeof dir, "%s/best", r->o->output_dir);
    ZT_TRY(zt_make_dirs(dir));
    if (r->model->lora) /* the best adapters; the base is --model's */
        ZT_TRY(zt_lora_save(r->model, dir, r->o->model_dir));
    else if (r->model->prefix)
        ZT_TRY(zt_prefix_save(r->model, dir, r->o->model_dir));
    else if (r->model->prompt)
        ZT_TRY(zt_prompt_save(r->model, dir, r->o->model_dir));
    else
        ZT_TRY(zt_model_save(r->model, dir));
    ZT_TRY(copy_tokenizer_files(r->o->model_dir, dir));
    snprintf(path, sizeof path, "%s/metric.json", dir);
    int len = snprintf(text, sizeof text, "{\"step\": %d, \"metric\": %.17g, \"name\": \"%s\"}\n",
                       step, e->metric, e->metric_name);
    const void *chunks[] = {text};
    size_t chunk_bytes[] = {(size_t)len};
    return zt_write_file_atomic(path, chunks, chunk_bytes, 1);
}

static int evaluation_due(const zt_train_options *o, int step) {
    return step == 0 || step == o->steps || (o->eval_every > 0 && step % o->eval_every == 0);
}

/* The evaluation after `step` steps, unless the log already holds it (a resumed run). */
static zt_status evaluate_at(run *r, int step) {
    if (!r->have_eval || step <= r->last_eval_step) return ZT_OK;
    zt_eval_result e;
    ZT_TRY(zt_evaluate(&r->objective_state, &r->eval, r->o->batch_size, r->tok, &e));
    zt_step_record rec;
    memset(&rec, 0, sizeof rec);
    rec.kind = ZT_RECORD_EVAL;
    rec.step = step;
    rec.eval = (zt_eval_point){e.loss, e.metric, e.accuracy, e.f1, e.exact_match};
    if (r->best_step < 0 || e.metric > r->best_eval.metric) {
        if (zt_run_writes_files(r)) ZT_TRY(save_best(r, step, &e));
        ZT_TRY(zt_run_pipeline_serve_weights(r)); /* the stages rank 0 gathers from */
    }
    ZT_TRY(append_record(r, &rec));
    zt_run_note_evaluation(r, &rec);
    if (!r->o->quiet && zt_run_writes_files(r)) {
        fprintf(stderr, "eval  step %d: loss %.5f", step, e.loss);
        if (e.accuracy >= 0) fprintf(stderr, ", accuracy %.2f%%", 100.0 * e.accuracy);
        if (e.f1 >= 0)
            fprintf(stderr, ", F1 %.2f%%, EM %.2f%%", 100.0 * e.f1, 100.0 * e.exact_match);
        fprintf(stderr, "\n");
    }
    return metrics_line(r, &rec, -1.0);
}

/* A step that is not taken: the log keeps its number, nothing moves (docs/design.md §2.5). */
static zt_status log_skipped(run *r, int step, uint64_t step_seed, zt_skip_reason reason,
                             double elapsed) {
    zt_step_record rec;
    memset(&rec, 0, sizeof rec);
    rec.kind = ZT_RECORD_SKIPPED;
    rec.skip_reason = reason;
    rec.step = step;
    rec.step_seed = step_seed;
    ZT_TRY(append_record(r, &rec));
    r->next_step = step + 1;
    if (!r->o->quiet && zt_run_writes_files(r))
        fprintf(stderr, "step %d skipped: %s\n", step + 1,
                reason == ZT_SKIP_NONFINITE_LOSS ? "non-finite loss" : "non-finite weights");
    return metrics_line(r, &rec, elapsed);
}

/* Shadow-mode ZO steps defer their update into the next step's staging (docs/design.md §2.5);
 * in place, first-order and hybrid schedules apply it at once. */
static int defers_updates(const run *r) {
    return r->optimizer && !r->any_fo && r->o->mode == ZT_PERTURB_SHADOW;
}

/* The run stops on step `step`'s update (0-based) having left weights non-finite; they are back
 * at the logged state. One process saves them at the end; pipeline stages cannot gather a save
 * after a failure, so their last snapshot stands (zt_train). */
static zt_status nonfinite_update_failure(const run *r, int step, unsigned long long n_nonfinite) {
    char saved[96];
    if (r->pipeline)
        snprintf(saved, sizeof saved, "the last snapshot stands");
    else
        snprintf(saved, sizeof saved, "the weights after step %d are saved", step);
    return zt_fail(ZT_ERR_NUMERIC,
                   "step %d: the update left %llu of %llu weights non-finite (lower --lr?); %s "
                   "(--on-nonfinite skip would skip the step)",
                   step + 1, n_nonfinite, (unsigned long long)r->ps.n_elems, saved);
}

/* The step whose update is pending: its update applied to every tensor (the sweep has done most
 * of it), checked, then its record logged. An update that left a weight non-finite is undone by
 * going back to the logged state (*went_back), where the step is logged as skipped, or the run
 * stops, as for an update applied at once. */
static zt_status settle_deferred(run *r, double t_start, int *went_back) {
    *went_back = 0;
    if (!r->deferred.active) return ZT_OK;
    /* from here until the record is appended, the weights are ahead of the log */
    r->weights_dirty = 1;
    const int owner = r->traffic_step;
    const zt_step_record *rec = &r->deferred.record;
    traffic_to(r, rec->step); /* the settle's count is the settled step's */
    unsigned long long n_nonfinite = 0;
    zt_status s = zt_zo_settle_deferred(&r->ps, &r->deferred, &n_nonfinite);
    if (s == ZT_OK)
        s = zt_run_pipeline_sum_count(r, &n_nonfinite); /* every stage takes the same turn */
    traffic_to(r, owner);
    ZT_TRY(s);
    if (n_nonfinite > 0) {
        *went_back = 1;
        ZT_TRY(zt_run_restore_logged_state(r));
        /* every rank has read the log before rank 0 appends to it */
        ZT_TRY(zt_run_barrier(r));
        if (r->o->skip_nonfinite)
            return log_skipped(r, rec->step, rec->step_seed, ZT_SKIP_NONFINITE_WEIGHTS,
                               now_seconds() - t_start);
        return nonfinite_update_failure(r, rec->step, n_nonfinite);
    }
    ZT_TRY(append_record(r, rec));
    r->weights_dirty = 0;
    r->next_step = rec->step + 1;
    return metrics_line(r, rec, now_seconds() - t_start);
}

/* A shadow-mode ZO step: its losses, with the previous step's update fused into the staging;
 * that step settled (logged); this step's update left pending. */
static zt_status take_deferred_step(run *r, int step, const zt_engine_options *eo, double t_start,
                                    zt_step_record *rec, int *skipped) {
    for (;;) {
        zt_status s = zt_zo_step_record(r->optimizer, &r->ps, &r->objective, step, eo, rec);
        int went_back = 0;
        ZT_TRY(settle_deferred(r, t_start, &went_back));
        /* the losses were taken on weights that are gone (and the policy was rebuilt): again */
        if (went_back) continue;
        if (s == ZT_ERR_NUMERIC && r->o->skip_nonfinite) {
            *skipped = 1;
            return log_skipped(r, step, zt_step_seed(eo->run_seed, step), ZT_SKIP_NONFINITE_LOSS,
                               now_seconds() - t_start);
        }
        if (s == ZT_ERR_NUMERIC)
            zt_fail_context(s, "stopping (--on-nonfinite skip would skip the step): ");
        ZT_TRY(s);
        return zt_zo_defer_update(&r->ps, &r->deferred, rec);
    }
}

/* One step: losses, then the update, then the record. A non-finite loss moves nothing; an
 * update that leaves a weight non-finite is undone by going back to the logged state. */
static zt_status take_step(run *r, int step, const zt_engine_options *eo, double t_start,
                           zt_step_record *rec, int *skipped) {
    *skipped = 0;
    if (defers_updates(r)) return take_deferred_step(r, step, eo, t_start, rec, skipped);
    if (r->fo) {
        zt_status s = zt_fo_run_step(r, step, rec, skipped);
        if (s != ZT_OK || *skipped) {
            if (*skipped)
                return log_skipped(r, step, 0, (zt_skip_reason)rec->skip_reason,
                                   now_seconds() - t_start);
            return s;
        }
        ZT_TRY(append_record(r, rec));
        r->weights_dirty = 0;
        r->next_step = step + 1;
        return metrics_line(r, rec, now_seconds() - t_start);
    }
    zt_status s = zt_zo_step_record(r->optimizer, &r->ps, &r->objective, step, eo, rec);
    /* Losses are checked before the policy's finish, the only call that changes its state, so
     * a skipped step leaves nothing to undo. */
    if (s == ZT_ERR_NUMERIC && r->o->skip_nonfinite) {
        *skipped = 1;
        return log_skipped(r, step, zt_step_seed(eo->run_seed, step), ZT_SKIP_NONFINITE_LOSS,
                           now_seconds() - t_start);
    }
    if (s != ZT_OK) {
        /* in place, a forward that failed half-way may have left theta perturbed */
        r->weights_dirty = r->o->mode == ZT_PERTURB_INPLACE;
        if (s == ZT_ERR_NUMERIC)
            zt_fail_context(s, "stopping (--on-nonfinite skip would skip the step): ");
        return s;
    }
    unsigned long long n_nonfinite = 0;
    r->weights_dirty = 1;
    ZT_TRY(zt_zo_apply_update_counted(&r->ps, rec, &n_nonfinite));
    ZT_TRY(zt_run_pipeline_sum_count(r, &n_nonfinite)); /* every stage takes the same turn */
    if (n_nonfinite > 0) {
        ZT_TRY(zt_run_restore_logged_state(r));
        /* every rank has read the log before rank 0 appends to it */
        ZT_TRY(zt_run_barrier(r));
        if (r->o->skip_nonfinite) {
            *skipped = 1;
            return log_skipped(r, step, rec->step_seed, ZT_SKIP_NONFINITE_WEIGHTS,
                               now_seconds() - t_start);
        }
        return nonfinite_update_failure(r, step, n_nonfinite);
    }
    ZT_TRY(append_record(r, rec));
    r->weights_dirty = 0;
    r->next_step = step + 1;
    return metrics_line(r, rec, now_seconds() - t_start);
}

/* The optimizer of step `step`'s phase; at a phase's first step (after the first) its state
 * starts at zero and the switch goes into the log, once. */
static zt_status enter_phase(run *r, int step, double t_start) {
    const int k = zt_phase_at(&r->phases, step);
    const zt_phase *phase = &r->phases.phase[k];
    r->fo = phase->fo;
    if (k == 0 || step != phase->start) return ZT_OK;
    ZT_TRY(zt_run_zero_state(r));
    if (k <= r->phase_logged) return ZT_OK;
    zt_step_record rec;
    memset(&rec, 0, sizeof rec);
    rec.kind = ZT_RECORD_PHASE;
    rec.step = step;
    rec.phase = k;
    snprintf(rec.fo_name, sizeof rec.fo_name, "%s", phase->optimizer);
    ZT_TRY(append_record(r, &rec));
    r->phase_logged = k;
    if (!r->o->quiet && zt_run_writes_files(r))
        fprintf(stderr, "phase %d from step %d: %s\n", k + 1, step + 1, phase->optimizer);
    return metrics_line(r, &rec, now_seconds() - t_start);
}

static zt_status train_loop(run *r, zt_train_result *res) {
    const zt_train_options *o = r->o;
    zt_engine_options eo = {o->seed, o->stochastic_rounding};
    double t_start = now_seconds();
    int first_step = r->next_step, steps_this_run = 0;
    unsigned long long sent_before = 0, received_before = 0;
    world_traffic(r, &sent_before, &received_before);
    r->traffic_step = -1;
    traffic_to(r, -1);
    for (int step = first_step; step < o->steps; step++) {
        traffic_to(r, -1);
        r->step_sent[step % 2] = r->step_received[step % 2] = 0;
        traffic_to(r, step); /* its forwards and their reductions */
        ZT_TRY(enter_phase(r, step, t_start));
        zt_sampler_batch(&r->sampler, step, r->indices);
        /* data parallel: this rank's share of the step's examples (all of them in one process) */
        zt_dp_layout me;
        ZT_TRY(zt_dp_layout_of(r->replicas, o->direction_groups > 1 ? o->direction_groups : 1, 1,
                               o->batch_size, &me));
        const int first = me.first_example, count = me.n_examples;
        zt_status s = zt_run_build_micro_batches(r, first, count);
        r->objective_state.batch = r->micro;
        r->objective_state.n_micro = zt_train_grad_accum(o);
        r->objective_state.indices = r->indices + first;
        r->objective_state.n_indices = count;
        res->examples_evaluated += count;
        zt_step_record rec;
        int skipped = 0;
        if (s == ZT_OK) s = take_step(r, step, &eo, t_start, &rec, &skipped);
        r->objective_state.batch = NULL;
        for (int i = 0; i < zt_train_grad_accum(o); i++) {
            zt_task_batch_free(&r->micro[i]);
            memset(&r->micro[i], 0, sizeof r->micro[i]);
        }
        ZT_TRY(s);
        if (!skipped) res->last_train_loss = rec.losses[0];
        if (!skipped && !o->quiet && zt_run_writes_files(r) && o->log_every > 0 &&
            ((step + 1) % o->log_every == 0 || step == first_step))
            progress(r, step, rec.losses[0], rec.update.step_size, t_start, first_step);
        steps_this_run++;
        int last = step + 1 == o->steps;
        const int verify = o->verify_replicas > 0 && (step + 1) % o->verify_replicas == 0;
        /* every rank settles at the same steps (a settle may go back to the logged state) */
        const int save_due = o->save_every > 0 && (step + 1) % o->save_every == 0 && !last;
        const int save = zt_run_writes_files(r) && save_due;
        int stop = 0;
        traffic_to(r, -1); /* the stop flag, checks, evaluations and snapshots: no step's */
        ZT_TRY(zt_run_stop_agreed(r, stop_requested != 0, &stop));
        stop = stop || (o->stop_after > 0 && steps_this_run >= o->stop_after);
        /* whatever reads the weights outside the sweep sees the step's update applied */
        if (last || stop || verify || save_due || evaluation_due(o, step + 1)) {
            int went_back = 0;
            ZT_TRY(settle_deferred(r, t_start, &went_back));
        }
        if (verify) ZT_TRY(zt_run_verify_replicas(r, step + 1));
        if (!last && evaluation_due(o, step + 1)) ZT_TRY(evaluate_at(r, step + 1));
        if (save) {
            ZT_TRY(zt_steplog_sync(r->log));
            ZT_TRY(zt_snapshot_save(o->output_dir, r->model, &r->ps, r->state_copies, r->optimizer,
                                    step + 1, r->observed_eval_step));
        } else if (o->save_every > 0 && (step + 1) % o->save_every == 0 && !last) {
            /* the stages rank 0 gathers the snapshot from: weights, then optimizer state */
            ZT_TRY(zt_run_pipeline_serve_weights(r));
            ZT_TRY(zt_run_pipeline_serve_state(r));
        }
        if (stop) {
            res->interrupted = !last;
            break;
        }
    }
    unsigned long long sent = 0, received = 0;
    world_traffic(r, &sent, &received);
    res->steps_this_run = steps_this_run;
    res->loop_bytes_sent = sent - sent_before;
    res->loop_bytes_received = received - received_before;
    res->step_bytes_sent = r->lines_sent;
    res->step_bytes_received = r->lines_received;
    return ZT_OK;
}

/* What the log describes is saved whatever happened after loading: weights that may differ
 * from it (a step failed half-way) go back to the logged state first, or are not saved at all. */
static zt_status save_final(run *r) {
    const zt_train_options *o = r->o;
    /* a pending update's step has its losses: it is applied and logged, not lost */
    int went_back = 0;
    const zt_status settled = settle_deferred(r, now_seconds(), &went_back);
    if (r->weights_dirty) ZT_TRY(zt_run_restore_logged_state(r));
    ZT_TRY(zt_steplog_sync(r->log));
    ZT_TRY(zt_snapshot_save(o->output_dir, r->model, &r->ps, r->state_copies, r->optimizer,
                            r->next_step, r->observed_eval_step));
    ZT_TRY(zt_model_save(r->model, o->output_dir));
    if (r->model->lora) ZT_TRY(zt_lora_save(r->model, o->output_dir, o->model_dir));
    if (r->model->prefix) ZT_TRY(zt_prefix_save(r->model, o->output_dir, o->model_dir));
    if (r->model->prompt) ZT_TRY(zt_prompt_save(r->model, o->output_dir, o->model_dir));
    ZT_TRY(copy_tokenizer_files(o->model_dir, o->output_dir));
    return settled; /* what the log describes is saved; the settle's error stands */
}

/* The other stages' side of save_final: rank 0 writes the snapshot (weights, optimizer state)
 * and the model, gathering what it lacks each time. */
static zt_status serve_final(run *r) {
    if (r->weights_dirty) ZT_TRY(zt_run_restore_logged_state(r));
    ZT_TRY(zt_run_pipeline_serve_weights(r));
    ZT_TRY(zt_run_pipeline_serve_state(r));
    return zt_run_pipeline_serve_weights(r);
}

static const char *metric_name_of(const zt_eval_point *e) {
    return e->accuracy >= 0 ? "accuracy" : e->f1 >= 0 ? "f1" : "-loss";
}

static void fill_result(const run *r, zt_train_result *res) {
    res->steps_done = r->next_step;
    if (r->have_first_eval) {
        res->first_eval_loss = r->first_eval.loss;
        res->first_eval_accuracy = r->first_eval.accuracy;
        res->first_eval_metric = r->first_eval.metric;
        res->last_eval_loss = r->last_eval.loss;
        res->last_eval_accuracy = r->last_eval.accuracy;
        res->last_eval_metric = r->last_eval.metric;
        res->metric_name = metric_name_of(&r->last_eval);
    }
    res->best_step = r->best_step;
    if (r->best_step >= 0) res->best_eval_metric = r->best_eval.metric;
}

zt_status zt_train(const zt_train_options *o, zt_train_result *res) {
    memset(res, 0, sizeof *res);
    res->first_eval_accuracy = res->last_eval_accuracy = -1.0;
    res->first_eval_loss = res->last_eval_loss = NAN;
    res->best_step = -1;
    ZT_TRY(check_options(o));
    stop_requested = 0;
    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.last_eval_step = r.observed_eval_step = r.best_step = -1;
    r.traffic_step = -1;
    const char *inputs[] = {o->model_dir, o->train_path, o->eval_path};
    const char *input_options[] = {"--model", "--train", "--eval"};
    ZT_TRY(zt_check_output_apart(o->output_dir, "--output", inputs, input_options, 3));
    zt_dir_lock lock = {-1};
    zt_status s = ZT_OK;
    if (zt_run_writes_files(&r)) {
        s = ensure_dir(o->output_dir);
        if (s == ZT_OK) s = zt_dir_lock_acquire(o->output_dir, "--output", &lock);
    }
    /* the other ranks read the output directory once rank 0 has made and locked it */
    if (s == ZT_OK) s = zt_run_barrier(&r);
    if (s == ZT_OK) s = zt_phases_parse(o->schedule, o->optimizer, o->steps, &r.phases);
    r.any_fo = any_first_order(&r.phases);
    r.fo = r.phases.phase[0].fo;
    if (s == ZT_OK) s = zt_backend_open(o->device, o->threads, o->gemm, &r.be);
    if (s == ZT_OK &&
        (o->batch_invariant || zt_train_grad_accum(o) > 1 || zt_train_replicas(o) > 1))
        s = zt_backend_set_batch_invariant(r.be, 1);
    if (s == ZT_OK && r.any_fo) s = zt_backend_require_backward(r.be, "first-order training");
    if (s == ZT_OK && r.any_fo) s = zt_backend_require_fo_update(r.be, "first-order training");
    if (s == ZT_OK) s = load_model(&r);
    if (s == ZT_OK) s = zt_run_pipeline_setup(&r);
    if (s == ZT_OK) s = open_data(&r);
    if (s == ZT_OK) s = open_log(&r);
    if (s == ZT_OK) s = create_workspace(&r);
    if (s == ZT_OK)
        s = zt_sampler_init(&r.sampler, zt_train_sampler_seed(o->seed), r.train.n_examples,
                            o->batch_size);
    if (s == ZT_OK) {
        r.indices = zt_malloc((size_t)o->batch_size * sizeof *r.indices);
        r.micro = zt_calloc((size_t)zt_train_grad_accum(o), sizeof *r.micro);
        if (!r.indices || !r.micro) s = zt_fail(ZT_ERR_NOMEM, "batch indices");
    }
    zt_mem_reset_peak();
    if (s == ZT_OK && evaluation_due(o, r.next_step)) s = evaluate_at(&r, r.next_step);
    if (s == ZT_OK && r.next_step < o->steps) s = train_loop(&r, res);
    if (s == ZT_OK && !res->interrupted && r.next_step == o->steps) s = evaluate_at(&r, o->steps);
    if (r.log && r.pipeline && s != ZT_OK) {
        /* the stages' messages may be out of step after a failure: no gathering save */
        char first_error[2048];
        snprintf(first_error, sizeof first_error, "%s", zt_last_error());
        zt_fail(s, "%s (the last snapshot stands)", first_error);
    } else if (r.log && zt_run_writes_files(&r)) {
        /* The first error is the one to report: keep its text while saving. */
        char first_error[2048];
        snprintf(first_error, sizeof first_error, "%s", zt_last_error());
        zt_status saved = save_final(&r);
        if (s == ZT_OK)
            s = saved;
        else if (saved != ZT_OK)
            zt_fail(s, "%s (and the final save failed too; the last snapshot stands)", first_error);
        else
            zt_fail(s, "%s", first_error);
    } else if (s == ZT_OK && zt_run_pipeline_serves(&r)) { /* (only rank 0 opens the log) */
        s = serve_final(&r);
    }
    fill_result(&r, res);
    zt_mem_stats mem;
    zt_mem_stats_get(&mem);
    res->peak_bytes = mem.peak_total;
    run_free(&r);
    zt_dir_lock_release(&lock);
    return s;
}
