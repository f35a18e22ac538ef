/* `zotune train`: the loop around the ZO engine. Output directory layout:
 *   steplog.jsonl      the step log (header + one record per step): base + log = the run
 *   metrics.jsonl      per-step training loss, lr, timing; evaluation lines
 *   snapshot/          model.safetensors + config.json, optimizer.safetensors, trainer.json:
 *                      the state after trainer.json's "next_step" - 1 steps (atomic swap)
 *   model.safetensors, config.json   the final (or interrupted) weights, HF format
 * Resume (--resume) loads snapshot/ (or the base model when there is none), re-applies the
 * log's records past the snapshot, and continues: the result is bit-identical to an
 * uninterrupted run. */
#ifndef ZT_TRAIN_TRAINER_H
#define ZT_TRAIN_TRAINER_H

#include <stdint.h>

#include "train/eval.h"
#include "train/first_order.h"
#include "train/objective.h"
#include "zo/optimizer.h"

struct zt_comm;
struct zt_lora_options;
struct zt_prefix_options;
struct zt_prompt_options;

typedef struct zt_train_options {
    const char *model_dir;
    const char *train_path;
    const char *eval_path; /* optional */
    const char *output_dir;
    const char *optimizer;
    zt_zo_hparams hp;
    int steps;
    int batch_size;
    uint64_t seed;
    const char *trainable; /* patterns, NULL = all */
    zt_perturb_mode mode;
    int stochastic_rounding;
    int resume;
    const char *device;
    const char *gemm; /* GEMM precision: auto, f32, tf32, half (kernels/backend.h) */
    int threads;
    int log_every;  /* progress line period (steps) */
    int eval_every; /* 0 = only at the start and end */
    int save_every; /* snapshot period (steps), 0 = only at the end */
    int quiet;
    int train_as_lm; /* classification records train on the gold candidate's LM loss */
    int bos_mezo;    /* BOS "<s>" (id 0) as MeZO's tokenizer fix, instead of OPT's "</s>" */
    zt_objective_kind objective; /* loss (default), -accuracy or -F1 */
    int skip_nonfinite; /* --on-nonfinite skip: log a diverging step as skipped and go on */
    /* test hook: stop (as if interrupted) after this many steps of this invocation; 0 = off */
    int stop_after;
    /* first-order optimizers (--optimizer sgd, signsgd, adam, adamw, adamm): backprop */
    zt_fo_options fo;
    /* a hybrid schedule, "mezo:1000,adamw:200" (first_order.h); NULL: --optimizer throughout */
    const char *schedule;
    /* the job's ranks (src/dist/comm.h): data parallel over them, each rank evaluating its share
     * of every step's batch; rank 0 writes the output. NULL: one process */
    struct zt_comm *comm;
    /* one sequence's computation independent of its batch (kernels/backend.h): what a
     * data-parallel run uses, so one process can reproduce it bit for bit; on with several
     * data-parallel replicas */
    int batch_invariant;
    /* every N steps the ranks compare a checksum of their weights and stop on a mismatch,
     * naming the rank (0: never) */
    int verify_replicas;
    /* the ranks in G groups, each evaluating its share of a step's variants (directions,
     * probes), data-parallel inside the group (src/dist/dp_reduce.h); 0 or 1: one group */
    int direction_groups;
    /* ZO: each variant over the rank's examples in A micro-batches in turn (activations / A),
     * bit-identical to the plain batch-invariant run; 0 or 1: one forward */
    int grad_accum;
    /* --pipeline-stages S: the ranks form ranks / S data-parallel replicas of an S-stage
     * pipeline, each stage running a contiguous range of the layers (src/dist/pipeline.h);
     * 0 or 1: none */
    int pipeline_stages;
    /* --peft lora: LoRA adapters on the base (models/lora.h), the only trainable tensors; their
     * initial A comes from zt_lora_init_seed(seed) unless adapter_dir names a start. The base's
     * model.safetensors written at the end is the base unchanged; the adapters go to
     * adapter_model.safetensors + adapter_config.json (peft's format). NULL: full tensors. */
    const struct zt_lora_options *lora;
    /* --peft prefix: MeZO's prefix tuning (models/prefix.h), the prefixes the only trainable
     * tensors, initialised from real activations under zt_prefix_init_seed(seed) unless
     * adapter_dir names a start; saved as adapter files of their own (prefix_io.c). NULL: none. */
    const struct zt_prefix_options *prefix;
    /* --peft prompt: a prompt table in front of the base (models/prompt.h), the only trainable
     * tensor; its initial rows are sampled under zt_prompt_init_seed(seed) unless adapter_dir
     * names a start. Saved as lora is, in peft's PROMPT_TUNING files. NULL: none. */
    const struct zt_prompt_options *prompt;
} zt_train_options;

typedef struct zt_train_result {
    int steps_done;  /* steps completed in total (incl. before a resume) */
    int interrupted; /* stopped by SIGINT/SIGTERM (or stop_after) with state saved */
    double first_eval_loss, last_eval_loss;
    double first_eval_accuracy, last_eval_accuracy; /* -1 when not classification */
    double first_eval_metric, last_eval_metric, best_eval_metric;
    int best_step;
    const char *metric_name;
    double last_train_loss;
    size_t peak_bytes;       /* tracked allocator peak during training */
    long examples_evaluated; /* training examples this process evaluated (its data-parallel
                                share of every step it made) */
    int steps_this_run;      /* steps the loop made in this run (after a resume's) */
    /* What this rank's communicator carried (docs/distributed.md, "What a rank sends, counted"):
     * the steps' own bytes, as their metrics lines give them (their forwards, loss reductions and
     * update counts), and the loop's in all (with the stop flags, and the evaluations, snapshots
     * and replica checks between steps; not the setup or the first and last evaluations). */
    unsigned long long step_bytes_sent, step_bytes_received;
    unsigned long long loop_bytes_sent, loop_bytes_received;
} zt_train_result;

void zt_train_options_default(zt_train_options *o);

/* Everything a training run holds in tracked memory: the model's plan with K residual streams
 * (and staging in shadow mode), plus the optimizer's state over the trainable tensors; for a
 * first-order run the backward pass's activations and the gradient too. The tracked allocator's
 * peak during zt_train equals total_bytes. */
typedef struct zt_train_memory_plan {
    zt_memory_plan model;  /* first-order: K = 1, no staging, the scratch of backprop included */
    size_t backprop_bytes; /* first-order: each layer's input and one layer's intermediates and
                              gradients, the head's (models/backprop.h), as activations */
    size_t gradient_bytes; /* first-order: the f32 gradient of every parameter (optimizer) */
    int first_order;
    size_t optimizer_bytes;
    size_t total_bytes;
    int n_variants;
    int state_copies;
    uint64_t trainable_elems;
} zt_train_memory_plan;

/* What a run's forwards hold at most (src/train/train_shape.c). */
typedef struct zt_train_shape {
    int sequences, seq_len;         /* padded sequences per forward (a classification batch counts
                                       every candidate), tokens each */
    int cache_batch, cache_columns; /* greedy decoding's KV cache; 0 without generation */
} zt_train_shape;

/* The shape a run over these datasets takes (eval may be NULL): batch_size examples per training
 * forward (a step's, or a micro-batch's), eval_batch_size per evaluation batch;
 * generation_objective for --objective f1, which decodes training batches.
 * The trainer sizes its workspace by it; a plan at this shape is the run's. */
void zt_train_shape_of(const zt_model *model, const zt_dataset *train, const zt_dataset *eval,
                       int batch_size, int eval_batch_size, int train_as_lm,
                       int generation_objective, zt_train_shape *shape);

/* The plan at `shape` (its KV cache included when it has one); fo: a first-order run's options
 * (NULL: the defaults). */
zt_status zt_train_plan_memory(const zt_model *model, const uint8_t *trainable,
                               const char *optimizer, const zt_zo_hparams *hp,
                               const zt_fo_options *fo, int steps, zt_perturb_mode mode,
                               const zt_train_shape *shape, zt_train_memory_plan *plan);
zt_status zt_train(const zt_train_options *o, zt_train_result *result);

/* The seed of the batch sampler (data/sampler.h) of a run with this --seed: its own stream, so
 * the batches do not share bits with the perturbation seeds. Tests rebuild a step's batch. */
static inline uint64_t zt_train_sampler_seed(uint64_t run_seed) {
    return run_seed ^ 0xA0761D6478BD642Full;
}

/* Installs SIGINT/SIGTERM handlers that ask the loop to stop after the current step. */
void zt_train_install_signal_handlers(void);

#endif
