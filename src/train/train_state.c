/* What a run is (the options and input fingerprints its log header records, which --resume must
 * match) and how it returns to the state its log describes: optimizer state from the snapshot,
 * then every record past it. Also metrics.jsonl, which is derived from the log. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/fingerprint.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "core/status.h"
#include "io/atomic_file.h"
#include "train/snapshot.h"
#include "train/train_run.h"

static void add_option(zt_steplog_header *h, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_option(zt_steplog_header *h, const char *name, const char *fmt, ...) {
    if (h->n_run == ZT_RUN_OPTIONS_MAX) return;
    zt_run_option *option = &h->run[h->n_run++];
    snprintf(option->name, sizeof option->name, "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(option->value, sizeof option->value, fmt, ap);
    va_end(ap);
}

static void add_fingerprint(zt_steplog_header *h, const char *name, uint64_t fingerprint) {
    char hex[17];
    zt_fingerprint_hex(fingerprint, hex);
    add_option(h, name, "%s", hex);
}

/* --peft and LoRA's options; "--peft none" alone without them (a log from before LoRA, which
 * lacks it, still resumes: zt_run_check_same). */
static void describe_peft(zt_run *r) {
    zt_steplog_header *h = &r->header;
    const zt_lora_options *lora = r->o->lora;
    const zt_prefix_options *prefix = r->o->prefix;
    if (prefix) {
        add_option(h, "--peft", "prefix");
        add_option(h, "--num-prefix", "%d", prefix->n_prefix);
        if (prefix->adapter_dir)
            add_fingerprint(h, "--adapter", r->adapter_fingerprint);
        else
            add_option(h, "--adapter", "none");
        return;
    }
    const zt_prompt_options *prompt = r->o->prompt;
    if (prompt) {
        add_option(h, "--peft", "prompt");
        add_option(h, "--num-virtual-tokens", "%d", prompt->n_virtual);
        if (prompt->adapter_dir)
            add_fingerprint(h, "--adapter", r->adapter_fingerprint);
        else
            add_option(h, "--adapter", "none");
        return;
    }
    if (!lora) {
        add_option(h, "--peft", "none");
        return;
    }
    add_option(h, "--peft", "lora");
    add_option(h, "--lora-rank", "%d", lora->rank);
    add_option(h, "--lora-alpha", "%.17g", lora->alpha);
    add_option(h, "--lora-targets", "%s", lora->targets);
    if (lora->adapter_dir)
        add_fingerprint(h, "--adapter", r->adapter_fingerprint);
    else
        add_option(h, "--adapter", "none");
}

void zt_run_describe(zt_run *r) {
    static const char *const dist_names[] = {"gaussian", "rademacher", "sphere"};
    static const char *const objective_names[] = {"loss", "accuracy", "f1"};
    const zt_train_options *o = r->o;
    const zt_zo_hparams *hp = &o->hp;
    zt_steplog_header *h = &r->header;
    memset(h, 0, sizeof *h);
    h->version = 2;
    /* "cpu, gemm f32, OpenBLAS SkylakeX, head blocks 512[, batch-invariant]": what the losses'
     * bits depend on (the head's blocking rounds the log-sum-exp its own way) */
    char blocks[32] = "";
    if (r->be->head_vocab_chunk > 0)
        snprintf(blocks, sizeof blocks, ", head blocks %d", r->be->head_vocab_chunk);
    snprintf(h->compute, sizeof h->compute, "%s, gemm %s%s%s%s%s", r->be->ops->name,
             zt_gemm_precision_name(r->be->gemm), r->be->gemm_kernels ? ", " : "",
             r->be->gemm_kernels ? r->be->gemm_kernels : "", blocks,
             r->be->batch_invariant ? ", " ZT_BATCH_INVARIANT_NAME : "");
    snprintf(h->optimizer, sizeof h->optimizer, "%s", o->optimizer);
    snprintf(h->trainable, sizeof h->trainable, "%s", o->trainable ? o->trainable : "");
    snprintf(h->model, sizeof h->model, "%s", o->model_dir);
    h->state_copies = r->state_copies;
    h->run_seed = o->seed;
    /* Inputs by content, then every option that changes the trajectory or what is evaluated. */
    add_fingerprint(h, "--model", r->base_fingerprint);
    add_fingerprint(h, "--train", r->train.fingerprint);
    if (r->have_eval)
        add_fingerprint(h, "--eval", r->eval.fingerprint);
    else
        add_option(h, "--eval", "none");
    add_option(h, "--optimizer", "%s", o->optimizer);
    add_option(h, "--trainable", "%s",
               o->lora        ? "(LoRA adapters)"
               : o->prefix    ? "(prefixes)"
               : o->prompt    ? "(prompt table)"
               : o->trainable ? o->trainable
                              : "(all)");
    describe_peft(r);
    add_option(h, "--steps", "%d", o->steps);
    add_option(h, "--batch-size", "%d", o->batch_size);
    add_option(h, "--seed", "%llu", (unsigned long long)o->seed);
    add_option(h, "--mode", "%s", o->mode == ZT_PERTURB_INPLACE ? "inplace" : "shadow");
    add_option(h, "--stochastic-rounding", "%s", o->stochastic_rounding ? "on" : "off");
    add_option(h, "--train-as", "%s", o->train_as_lm ? "lm" : "classification");
    add_option(h, "--bos", "%s", o->bos_mezo ? "mezo" : "opt");
    add_option(h, "--objective", "%s", objective_names[o->objective]);
    if (r->have_eval) add_option(h, "--eval-every", "%d", o->eval_every);
    add_option(h, "--on-nonfinite", "%s", o->skip_nonfinite ? "skip" : "stop");
    add_option(h, "--lr", "%.17g", hp->lr);
    add_option(h, "--eps", "%.17g", hp->eps);
    add_option(h, "--eps-end", "%.17g", hp->eps_end);
    add_option(h, "--lr-schedule", "%s", zt_schedule_name(hp->lr_schedule));
    add_option(h, "--eps-schedule", "%s", zt_schedule_name(hp->eps_schedule));
    add_option(h, "--weight-decay", "%.17g", hp->weight_decay);
    add_option(h, "--directions", "%d", hp->n_directions);
    add_option(h, "--dist", "%s", dist_names[hp->dist]);
    add_option(h, ZT_RUN_Z_LAYOUT, "%s", ZT_Z_LAYOUT_CURRENT);
    add_option(h, "--sphere-sqrt-d", "%s", hp->sphere_scale_sqrt_d ? "on" : "off");
    add_option(h, "--momentum", "%.17g", hp->momentum);
    add_option(h, "--beta1", "%.17g", hp->beta1);
    add_option(h, "--beta2", "%.17g", hp->beta2);
    add_option(h, "--adam-eps", "%.17g", hp->adam_eps);
    add_option(h, "--s2p-option", "%d", hp->s2p_option);
    add_option(h, "--s2p-l", "%.17g", hp->s2p_l);
    add_option(h, "--s2p-l0", "%.17g", hp->s2p_l0);
    add_option(h, "--s2p-l1", "%.17g", hp->s2p_l1);
    add_option(h, "--s2p-a", "%.17g", hp->s2p_a);
    add_option(h, "--s2p-b", "%.17g", hp->s2p_b);
    add_option(h, "--as2p-eta-a", "%.17g", hp->as2p_eta_a);
    add_option(h, "--as2p-eta-b", "%.17g", hp->as2p_eta_b);
    add_option(h, "--as2p-window", "%.17g", hp->as2p_window_frac);
    add_option(h, "as2p window over elapsed steps", "%d", hp->as2p_window_elapsed);
    add_option(h, "--plateau-factor", "%.17g", hp->plateau_factor);
    add_option(h, "--plateau-patience", "%d", hp->plateau_patience);
    if (o->schedule) add_option(h, "--schedule", "%s", o->schedule);
    if (r->any_fo) {
        add_option(h, "--nesterov", "%s", o->fo.nesterov ? "on" : "off");
        add_option(h, "--clip-grad-norm", "%.17g", o->fo.clip_norm);
        add_option(h, "--micro-batches", "%d", o->fo.micro_batches);
        add_option(h, "--checkpoint-activations", "%s",
                   o->fo.checkpoint_activations ? "on" : "off");
    }
}

static const char *input_path(const zt_train_options *o, const char *name) {
    if (strcmp(name, "--model") == 0) return o->model_dir;
    if (strcmp(name, "--train") == 0) return o->train_path;
    return o->eval_path ? o->eval_path : "(none)";
}

zt_status zt_run_check_same(const zt_run *r, const zt_steplog_header *logged) {
    if (logged->version < 2) {
        fprintf(stderr,
                "zotune train: warning: %s predates run options in the log header; --resume "
                "cannot check that this is the same run\n",
                r->log_path);
        return ZT_OK;
    }
    const zt_steplog_header *now = &r->header;
    for (int i = 0; i < logged->n_run; i++) {
        const char *name = logged->run[i].name, *then = logged->run[i].value;
        const char *current = zt_steplog_run_value(now, name);
        if (current && strcmp(current, then) == 0) continue;
        if (!current) current = "(not an option of this version)";
        int is_input = strcmp(name, "--model") == 0 || strcmp(name, "--train") == 0 ||
                       (strcmp(name, "--eval") == 0 && strcmp(then, "none") != 0 &&
                        strcmp(current, "none") != 0);
        if (is_input)
            return zt_fail(ZT_ERR_CONFLICT,
                           "--resume: %s %s is not the content this run started from "
                           "(fingerprint %s in %s, %s now); continue with the same files, or "
                           "start a new run in another --output",
                           name, input_path(r->o, name), then, r->log_path, current);
        return zt_fail(ZT_ERR_CONFLICT,
                       "--resume: %s was %s when this run started (%s) and is %s now; resume "
                       "continues the same run, so give the same options, or start a new run in "
                       "another --output",
                       name, then, r->log_path, current);
    }
    /* A log from before the z layout was recorded: its Rademacher steps are refused by
     * zt_steplog_check_z_layout when the records are read; the rest replay the same. */
    const char *peft = zt_steplog_run_value(now, "--peft");
    const int peft_off = peft != NULL && strcmp(peft, "none") == 0;
    for (int i = 0; i < now->n_run; i++) {
        const zt_run_option *option = &now->run[i];
        if ((peft_off && strcmp(option->name, "--peft") == 0) ||
            strcmp(option->name, ZT_RUN_Z_LAYOUT) == 0)
            continue;
        if (!zt_steplog_run_value(logged, option->name))
            return zt_fail(ZT_ERR_CONFLICT,
                           "--resume: %s = %s is not recorded in %s, which another version "
                           "wrote; start a new run in another --output",
                           option->name, option->value, r->log_path);
    }
    return ZT_OK;
}

/* Re-derives a logged step's update from its losses (rebuilding the policy's scalar state),
 * checks it is the logged one, and applies it. */
static zt_status replay_step(zt_run *r, const zt_step_record *rec) {
    zt_step_plan plan, more;
    zt_step_update update;
    ZT_TRY(zt_optimizer_plan(r->optimizer, rec->step, rec->step_seed, &plan));
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
    return zt_zo_apply_update(&r->ps, rec);
}

void zt_run_note_evaluation(zt_run *r, const zt_step_record *rec) {
    if (!r->have_first_eval) r->first_eval = rec->eval;
    r->have_first_eval = 1;
    r->last_eval = rec->eval;
    r->last_eval_step = rec->step;
    if (r->best_step < 0 || rec->eval.metric > r->best_eval.metric) {
        r->best_eval = rec->eval;
        r->best_step = rec->step;
    }
    if (rec->step > r->observed_eval_step) {
        if (r->optimizer) zt_optimizer_observe(r->optimizer, rec->eval.loss);
        r->observed_eval_step = rec->step;
    }
}

zt_status zt_run_rebuild_state(zt_run *r, const zt_step_record *records, int n_records) {
    const zt_train_options *o = r->o;
    zt_param_set_free_state(&r->ps, r->state_copies);
    zt_optimizer_free(r->optimizer);
    r->optimizer = NULL;
    r->kept_records = n_records;
    r->phase_logged = 0;
    const char *zo_name = zt_phases_zo_optimizer(&r->phases);
    if (zo_name)
        ZT_TRY(zt_optimizer_create(zo_name, &o->hp, o->steps, r->ps.n_elems, &r->optimizer));
    r->state_copies = zt_run_state_copies(r);
    ZT_TRY(zt_param_set_alloc_state(&r->ps, r->state_copies));
    int next = 0, observed = -1;
    /* a LoRA snapshot holds the adapters alone, read once the log's header is known to agree */
    if (r->snapshot_dir[0] && r->model->lora)
        ZT_TRY(zt_lora_load_tensors(r->model, r->snapshot_dir, r->trainable));
    if (r->snapshot_dir[0] && r->model->prefix)
        ZT_TRY(zt_prefix_load_tensors(r->model, r->snapshot_dir, r->trainable));
    if (r->snapshot_dir[0] && r->model->prompt)
        ZT_TRY(zt_prompt_load_tensors(r->model, r->snapshot_dir, r->trainable));
    if (r->snapshot_dir[0])
        ZT_TRY(zt_snapshot_load_state(r->snapshot_dir, &r->ps, r->state_copies, r->optimizer, &next,
                                      &observed));
    r->observed_eval_step = observed;
    r->last_eval_step = -1;
    r->have_first_eval = 0;
    r->best_step = -1;
    for (int i = 0; i < n_records; i++) {
        const zt_step_record *rec = &records[i];
        if (rec->kind == ZT_RECORD_EVAL) {
            zt_run_note_evaluation(r, rec);
            continue;
        }
        if (rec->kind == ZT_RECORD_PHASE) {
            if (rec->phase > r->phase_logged) r->phase_logged = rec->phase;
            continue;
        }
        if (rec->step < next) continue;
        if (rec->kind == ZT_RECORD_FO_STEP) {
            /* Its gradient is not in the log: the steps from here are made again, and the log
             * is cut back to this record (open_log, zt_run_restore_logged_state). */
            r->kept_records = i;
            break;
        }
        if (rec->step != next)
            return zt_fail(ZT_ERR_FORMAT, "%s: record for step %d where step %d was expected",
                           r->log_path, rec->step, next);
        /* a phase of a schedule starts its optimizer's state afresh, as the live run did */
        const int k = zt_phase_at(&r->phases, rec->step);
        if (k > 0 && rec->step == r->phases.phase[k].start) ZT_TRY(zt_run_zero_state(r));
        if (rec->kind == ZT_RECORD_STEP) ZT_TRY(replay_step(r, rec));
        next++;
    }
    r->next_step = next;
    return ZT_OK;
}

int zt_run_state_copies(const zt_run *r) {
    int most = 0;
    for (int k = 0; k < r->phases.n; k++) {
        const zt_phase *p = &r->phases.phase[k];
        const int copies = p->fo ? zt_fo_state_copies(p->fo, &r->o->hp)
                                 : zt_optimizer_find(p->optimizer)->state_copies;
        if (copies > most) most = copies;
    }
    return most;
}

zt_status zt_run_zero_state(zt_run *r) {
    if (r->state_copies == 0) return ZT_OK;
    for (int i = 0; i < r->ps.n_params; i++) {
        const zt_param *p = &r->ps.params[i];
        ZT_TRY(zt_backend_zero(r->ps.be, p->state, (size_t)r->state_copies * p->n_elems));
    }
    return ZT_OK;
}

zt_status zt_run_restore_logged_state(zt_run *r) {
    /* an update not in the log goes with the weights (its step is made again) */
    zt_zo_drop_deferred(&r->ps, &r->deferred);
    int have_snapshot = zt_snapshot_find(r->o->output_dir, r->snapshot_dir, sizeof r->snapshot_dir);
    if (!have_snapshot) r->snapshot_dir[0] = '\0';
    if (r->model->lora)
        ZT_TRY(zt_lora_run_reload(r, r->snapshot_dir));
    else if (r->model->prefix)
        ZT_TRY(zt_prefix_run_reload(r, r->snapshot_dir));
    else if (r->model->prompt)
        ZT_TRY(zt_prompt_run_reload(r, r->snapshot_dir));
    else
        ZT_TRY(zt_model_reload_tensors(r->model, have_snapshot ? r->snapshot_dir : r->o->model_dir,
                                       r->trainable));
    zt_steplog_header logged;
    zt_step_record *records = NULL;
    int n = 0;
    ZT_TRY(zt_steplog_read(r->log_path, &logged, &records, &n, NULL));
    zt_status s = zt_run_rebuild_state(r, records, n);
    free(records);
    if (s == ZT_OK && r->kept_records < n) {
        /* a first-order run goes back to its snapshot: the log with it */
        zt_steplog_close(r->log);
        r->log = NULL;
        s = zt_steplog_keep_records(r->log_path, r->kept_records);
        if (s == ZT_OK) s = zt_steplog_open_append(r->log_path, &r->header, &r->log);
    }
    if (s == ZT_OK) r->weights_dirty = 0;
    return s;
}

/* ,"key":value into buf at *used; JSON has no NaN, so a non-finite value is written as null. */
static void put_number(char *buf, size_t size, size_t *used, const char *key, const char *fmt,
                       double value) {
    if (*used >= size) return;
    int finite = isfinite(value);
    int n = snprintf(buf + *used, size - *used, finite ? ",\"%s\":" : ",\"%s\":null", key);
    if (n < 0 || (size_t)n >= size - *used) {
        *used = size;
        return;
    }
    *used += (size_t)n;
    if (!finite) return;
    n = snprintf(buf + *used, size - *used, fmt, value);
    *used = n < 0 || (size_t)n >= size - *used ? size : *used + (size_t)n;
}

void zt_run_metrics_line(const zt_step_record *rec, double elapsed, const zt_line_traffic *traffic,
                         char *buf, size_t size) {
    size_t used = 0;
    int n;
    if (rec->kind == ZT_RECORD_EVAL) {
        n = snprintf(buf, size, "{\"step\":%d", rec->step);
        used = n < 0 ? size : (size_t)n;
        put_number(buf, size, &used, "eval_loss", "%.9g", rec->eval.loss);
        if (rec->eval.accuracy >= 0)
            put_number(buf, size, &used, "eval_accuracy", "%.6f", rec->eval.accuracy);
        if (rec->eval.f1 >= 0) {
            /* in percent, as every output gives F1 and EM */
            put_number(buf, size, &used, "eval_f1", "%.6f", 100.0 * rec->eval.f1);
            put_number(buf, size, &used, "eval_em", "%.6f", 100.0 * rec->eval.exact_match);
        }
    } else if (rec->kind == ZT_RECORD_SKIPPED) {
        n = snprintf(buf, size, "{\"step\":%d,\"skipped\":\"%s\"", rec->step + 1,
                     rec->skip_reason == ZT_SKIP_NONFINITE_LOSS ? "non-finite loss"
                                                                : "non-finite weights");
        used = n < 0 ? size : (size_t)n;
    } else if (rec->kind == ZT_RECORD_PHASE) {
        n = snprintf(buf, size, "{\"step\":%d,\"phase\":\"%s\"", rec->step, rec->fo_name);
        used = n < 0 ? size : (size_t)n;
    } else if (rec->kind == ZT_RECORD_FO_STEP) {
        n = snprintf(buf, size, "{\"step\":%d", rec->step + 1);
        used = n < 0 ? size : (size_t)n;
        put_number(buf, size, &used, "loss", "%.9g", rec->losses[0]);
        put_number(buf, size, &used, "lr", "%.9g", rec->update.lr);
        put_number(buf, size, &used, "step_size", "%.9g", rec->update.lr);
        put_number(buf, size, &used, "grad_norm", "%.9g", rec->update.projected_grad);
    } else {
        n = snprintf(buf, size, "{\"step\":%d", rec->step + 1);
        used = n < 0 ? size : (size_t)n;
        put_number(buf, size, &used, "loss", "%.9g", rec->losses[0]);
        put_number(buf, size, &used, "lr", "%.9g", rec->update.lr);
        if (rec->update.step_size >= 0)
            put_number(buf, size, &used, "step_size", "%.9g", rec->update.step_size);
        put_number(buf, size, &used, "projected_grad", "%.9g", rec->update.projected_grad);
    }
    if (rec->kind != ZT_RECORD_EVAL && rec->kind != ZT_RECORD_PHASE && elapsed >= 0)
        put_number(buf, size, &used, "elapsed_s", "%.3f", elapsed);
    if (rec->kind != ZT_RECORD_EVAL && rec->kind != ZT_RECORD_PHASE && traffic &&
        traffic->sent >= 0 && traffic->received >= 0) {
        /* integers below 2^53 print exactly through %.0f */
        put_number(buf, size, &used, "sent_bytes", "%.0f", (double)traffic->sent);
        put_number(buf, size, &used, "received_bytes", "%.0f", (double)traffic->received);
    }
    if (used + 3 <= size)
        memcpy(buf + used, "}\n", 3);
    else if (size >= 3)
        memcpy(buf + size - 3, "}\n", 3);
}

/* elapsed[k] = "elapsed_s" of the training line of step k+1 in the old file, -1 if none;
 * traffic[k] its bytes, -1 if none. */
static void read_elapsed(const char *path, double *elapsed, zt_line_traffic *traffic, int n_steps) {
    for (int i = 0; i < n_steps; i++) {
        elapsed[i] = -1.0;
        traffic[i] = (zt_line_traffic){-1, -1};
    }
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
        const cJSON *seconds = cJSON_GetObjectItemCaseSensitive(o, "elapsed_s");
        const cJSON *sent = cJSON_GetObjectItemCaseSensitive(o, "sent_bytes");
        const cJSON *received = cJSON_GetObjectItemCaseSensitive(o, "received_bytes");
        const int at =
            cJSON_IsNumber(step) && step->valuedouble >= 1 && step->valuedouble <= n_steps
                ? (int)step->valuedouble - 1
                : -1;
        if (at >= 0 && cJSON_IsNumber(seconds)) elapsed[at] = seconds->valuedouble;
        if (at >= 0 && cJSON_IsNumber(sent) && cJSON_IsNumber(received))
            traffic[at] =
                (zt_line_traffic){(long long)sent->valuedouble, (long long)received->valuedouble};
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
}

zt_status zt_run_rewrite_metrics(const zt_run *r, const zt_step_record *records, int n_records) {
    int n_steps = 0;
    for (int i = 0; i < n_records; i++)
        if (records[i].kind != ZT_RECORD_EVAL && records[i].kind != ZT_RECORD_PHASE &&
            records[i].step + 1 > n_steps)
            n_steps = records[i].step + 1;
    double *elapsed = zt_calloc((size_t)n_steps + 1, sizeof *elapsed);
    zt_line_traffic *traffic = zt_calloc((size_t)n_steps + 1, sizeof *traffic);
    char *text = zt_malloc((size_t)n_records * ZT_METRICS_LINE_MAX + 1);
    if (!elapsed || !traffic || !text) {
        free(elapsed);
        free(traffic);
        free(text);
        return zt_fail(ZT_ERR_NOMEM, "%s: rewriting", r->metrics_path);
    }
    read_elapsed(r->metrics_path, elapsed, traffic, n_steps);
    size_t used = 0;
    for (int i = 0; i < n_records; i++) {
        const zt_step_record *rec = &records[i];
        const int step_line = rec->kind != ZT_RECORD_EVAL && rec->kind != ZT_RECORD_PHASE;
        const double seconds = step_line ? elapsed[rec->step] : -1.0;
        zt_run_metrics_line(rec, seconds, step_line ? &traffic[rec->step] : NULL, text + used,
                            ZT_METRICS_LINE_MAX);
        used += strlen(text + used);
    }
    const void *chunks[] = {text};
    size_t chunk_bytes[] = {used};
    zt_status s = zt_write_file_atomic(r->metrics_path, chunks, chunk_bytes, 1);
    free(text);
    free(elapsed);
    free(traffic);
    return s;
}
