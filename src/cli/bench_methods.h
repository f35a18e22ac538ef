/* The methods `zotune bench memory` sets side by side, and the plan of each: shared by the
 * command (src/cli/cmd_bench.c) and its figure (src/cli/bench_plot.c). */
#ifndef ZT_CLI_BENCH_METHODS_H
#define ZT_CLI_BENCH_METHODS_H

#include "cli/raster.h"
#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "model.h"
#include "train/trainer.h"

typedef struct zt_bench_method {
    const char *name;
    const char *optimizer; /* NULL: inference */
    zt_perturb_mode mode;
    int checkpoint;
    int lora;      /* LoRA with MeZO's OPT-13B preset (rank 8, alpha 16, q_proj and v_proj) */
    zt_rgb colour; /* in --plot's figure */
    int prefix;    /* prefix tuning with MeZO's preset (5 prefix tokens per layer) */
    int prompt;    /* prompt tuning with peft's and zotune's default of 10 virtual tokens */
} zt_bench_method;

/* In the order memory arithmetic ranks them for a large model. */
enum { ZT_BENCH_N_METHODS = 13 };
extern const zt_bench_method zt_bench_methods[ZT_BENCH_N_METHODS];

typedef struct zt_bench_row {
    zt_train_memory_plan plan; /* inference: model only */
    int measured;              /* a measurement ran */
    double measured_bytes, rss_bytes, step_s;
} zt_bench_row;

/* The plan of method `me` on m at batch x seq_len (zt_train_plan_memory, or the model's own
 * plan for inference) into r, which is cleared. */
/* The LoRA options of a method with lora set. */
void zt_bench_lora_options(zt_lora_options *options);
/* The prefix options of a method with prefix set. */
void zt_bench_prefix_options(zt_prefix_options *options);
/* The prompt-tuning options of a method with prompt set. */
void zt_bench_prompt_options(zt_prompt_options *options);

zt_status zt_bench_plan_row(const zt_model *m, const zt_bench_method *me, int batch, int seq_len,
                            zt_bench_row *r);

#endif
