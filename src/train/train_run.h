/* The trainer's internal state, shared by trainer.c (the loop) and train_state.c (what a run
 * is, and how it gets back to its last logged state). Not part of the library's interface. */
#ifndef ZT_TRAIN_TRAIN_RUN_H
#define ZT_TRAIN_TRAIN_RUN_H

#include <stdio.h>

#include "backprop.h"
#include "data/sampler.h"
#include "train/first_order.h"
#include "train/trainer.h"
#include "zo/steplog.h"

typedef struct zt_train_pipeline zt_train_pipeline;

typedef struct zt_run {
    const zt_train_options *o;
    /* the data-parallel ranks the objective reduces over: o->comm, or with --pipeline-stages
     * the replicas of this rank's stage (src/dist/pipeline.h) */
    struct zt_comm *replicas;
    zt_train_pipeline *pipeline; /* NULL without --pipeline-stages */
    struct zt_tokenizer *tok;    /* NULL when the model directory has none */
    zt_backend *be;
    zt_model *model;
    zt_dataset train, eval;
    int have_eval;
    uint8_t *trainable;
    zt_param_set ps;
    int state_copies;
    zt_optimizer *optimizer; /* NULL in a first-order run */
    const zt_fo_info *fo;    /* the current step's first-order optimizer, NULL for a ZO step */
    zt_phases phases;        /* --schedule, or one phase of --optimizer */
    int any_fo;              /* some phase is first-order */
    int phase_logged;        /* the last phase whose switch the log holds (0: none needed) */
    zt_grad_buffers *grad_buffers;
    float *grads; /* (parameters) the step's gradient block, backend memory */
    size_t grads_floats;
    size_t *grad_offsets; /* (n_tensors) into grads */
    zt_workspace *ws;
    zt_task_objective objective_state;
    zt_objective objective;
    zt_steplog *log;
    FILE *metrics;
    zt_sampler sampler;
    int *indices;
    zt_task_batch *micro; /* (--grad-accum) the step's micro-batches on this rank */
    char log_path[4096], metrics_path[4096];
    char snapshot_dir[4096]; /* the snapshot the weights were loaded from, "" for the base */
    uint64_t base_fingerprint;
    uint64_t adapter_fingerprint; /* --peft ... --adapter DIR: the starting adapters' content */
    zt_steplog_header header;     /* this run's, as written to a new log */
    int next_step;                /* steps in the log (made or skipped) */
    int last_eval_step;           /* step of the last evaluation in the log, -1 for none */
    int observed_eval_step;       /* the last evaluation fed to a plateau schedule, -1 for none */
    int weights_dirty;            /* the weights may differ from what the log describes */
    int kept_records;             /* of the log's records, those the state stands on (a first-order
                                     run's steps past its snapshot are made again) */
    /* shadow-mode ZO: the last step's update, pending until the next step's sweep applies it,
     * logged once applied and checked (docs/design.md §2.5) */
    zt_deferred_update deferred;
    zt_eval_point first_eval, last_eval, best_eval;
    int have_first_eval, best_step;
    /* What the world communicator carried, attributed to steps (docs/distributed.md, "What a
     * rank sends"): since the mark, the traffic belongs to step traffic_step (-1: to no step:
     * the stop flag between steps, evaluations, snapshots, replica checks); each step's share
     * waits in slot step % 2 for its metrics line (a shadow-mode step's line comes after the
     * next step's forward). */
    unsigned long long traffic_mark_sent, traffic_mark_received;
    int traffic_step;
    unsigned long long step_sent[2], step_received[2];
    unsigned long long lines_sent, lines_received; /* the step lines' sums, this run */
} zt_run;

/* --peft lora (src/train/lora_run.c): the base with its initial adapters (a snapshot's are read
 * by zt_run_rebuild_state, after the header check), and the adapters as the trainable set. */
zt_status zt_lora_run_load(zt_run *r, int have_snapshot);
/* The trainable adapters back to the run's start (the seed's, or --adapter's) or dir's. */
zt_status zt_lora_run_reload(zt_run *r, const char *snapshot_dir);
/* --peft prefix (src/train/prefix_run.c): the same for prefix tuning's prefixes. */
zt_status zt_prefix_run_load(zt_run *r, int have_snapshot);
zt_status zt_prefix_run_reload(zt_run *r, const char *snapshot_dir);
/* The adapters' content as loaded (any kind, models/peft.h), in table order by name. */
zt_status zt_run_adapter_fingerprint(const zt_model *m, uint64_t *out);

/* --peft prompt (src/train/prompt_run.c): the base with its initial prompt table (a snapshot's
 * is read by zt_run_rebuild_state), and the table as the trainable set. */
zt_status zt_prompt_run_load(zt_run *r);
/* The table back to the run's start (the seed's, or --adapter's) or dir's. */
zt_status zt_prompt_run_reload(zt_run *r, const char *snapshot_dir);

/* Fills r->header with everything that defines the run (needs the model and data loaded). */
void zt_run_describe(zt_run *r);
/* --resume: the log's header must describe this same run; ZT_ERR_CONFLICT names the option and
 * both values otherwise. */
zt_status zt_run_check_same(const zt_run *r, const zt_steplog_header *logged);

/* Optimizer state from the snapshot (or fresh), then every record of the log past it: the state
 * after the log's last step, bit for bit. Sets next_step, the evaluation marks and best. */
zt_status zt_run_rebuild_state(zt_run *r, const zt_step_record *records, int n_records);
/* Takes a logged evaluation into account: first/last/best, and a plateau schedule's observation
 * (once per evaluation, wherever the snapshot was taken). */
void zt_run_note_evaluation(zt_run *r, const zt_step_record *record);
/* Back to what the log describes after a step failed half-way or diverged: the trainable
 * tensors from the snapshot (or base), then zt_run_rebuild_state from the log on disk. */
zt_status zt_run_restore_logged_state(zt_run *r);

/* Sets every trainable tensor's optimizer state to zero: a phase of a schedule starts afresh. */
zt_status zt_run_zero_state(zt_run *r);
/* The f32 state copies the run keeps: the most any phase's optimizer needs. */
int zt_run_state_copies(const zt_run *r);

/* ---- several ranks (train_ranks.c) ---- */

/* Only rank 0 of a data-parallel job writes (the log, metrics, snapshots, best/, the final
 * weights): every rank holds the same weights and records bit for bit. */
int zt_run_writes_files(const zt_run *r);
/* Every rank waits until all have arrived (a no-op in one process). */
zt_status zt_run_barrier(const zt_run *r);
/* A stop asked of any rank (SIGTERM to one of them) stops all of them after the same step. */
zt_status zt_run_stop_agreed(const zt_run *r, int local, int *agreed);
/* --verify-replicas: every rank's weights against rank 0's after `steps` steps; all ranks reach
 * the same verdict, so all stop together on a mismatch, which names the rank. */
zt_status zt_run_verify_replicas(const zt_run *r, int steps);
/* The rank's examples [first, first + count) of the step into r->micro, as --grad-accum's
 * micro-batches (one without it), padded as the whole step's batch when batch-invariant. */
zt_status zt_run_build_micro_batches(zt_run *r, int first, int count);
/* --grad-accum's micro-batches per step (1 without it). */
int zt_train_grad_accum(const zt_train_options *o);
/* --direction-groups, or 1 when it does not divide the ranks (check_options refuses that). */
int zt_train_direction_groups(const zt_train_options *o);
/* The most examples one training forward of this rank holds. */
int zt_train_largest_micro_batch(const zt_train_options *o);

/* ---- pipeline stages (train_pipeline.c) ---- */

/* --pipeline-stages, 1 without it. */
int zt_train_pipeline_stages(const zt_train_options *o);
/* The data-parallel replicas: the ranks over the stages (all ranks without stages). */
int zt_train_replicas(const zt_train_options *o);
/* With stages, *share receives this rank's share of the model (zt_model_load_stage) from
 * --model's config.json, and *staged 1; else *staged 0. Errors name --pipeline-stages. */
zt_status zt_run_pipeline_share(const zt_run *r, zt_model_stage *share, int *staged);
/* r->replicas, and with stages this rank's stage of the model's forward (model->stage) and the
 * parameter set's sum over the stages; needs the model loaded with its share. Errors name
 * --pipeline-stages. */
zt_status zt_run_pipeline_setup(zt_run *r);
/* Does this rank send its tensors to rank 0 whenever rank 0 saves the model (a stage other
 * than the first of replica 0)? */
int zt_run_pipeline_serves(const zt_run *r);
/* The counterpart of one zt_model_save on rank 0: sends the tensors rank 0 lacks and this
 * stage is the first to hold, in table order. Nothing without stages. */
zt_status zt_run_pipeline_serve_weights(const zt_run *r);
/* The counterpart of the optimizer state in one zt_snapshot_save on rank 0: sends the state
 * (state_copies x n_elems f32) of the trainable tensors rank 0 lacks and this stage is the first
 * to hold, in table order. Nothing without stages or state. */
zt_status zt_run_pipeline_serve_state(const zt_run *r);
/* With stages, *count becomes the sum of every stage's count in this rank's pipeline (each rank
 * counts over its own tensors), the same on every rank; unchanged without stages. */
zt_status zt_run_pipeline_sum_count(const zt_run *r, unsigned long long *count);
void zt_run_pipeline_release(zt_run *r);

/* The bytes this rank's communicator carried for one step (docs/distributed.md, "What a rank
 * sends, counted"); negative where not counted (one process, a line rewritten from a file
 * without them). */
typedef struct zt_line_traffic {
    long long sent, received;
} zt_line_traffic;

/* One metrics.jsonl line (newline included) for a log record; elapsed < 0 leaves it out, and so
 * does traffic NULL or negative ("sent_bytes", "received_bytes", on step lines only). */
void zt_run_metrics_line(const zt_step_record *record, double elapsed,
                         const zt_line_traffic *traffic, char *buf, size_t size);
/* The longest line zt_run_metrics_line writes, newline and NUL included. */
enum { ZT_METRICS_LINE_MAX = 384 };
/* Rewrites metrics.jsonl from the log's records, keeping the elapsed times and bytes of the lines
 * that were there, so it holds exactly one line per record whatever a kill interrupted. */
zt_status zt_run_rewrite_metrics(const zt_run *r, const zt_step_record *records, int n_records);

#endif
