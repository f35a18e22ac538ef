/* zotune info: what a model is and what it will cost to run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/peft_args.h"
#include "cli/model_input.h"
#include "core/status.h"
#include "core/alloc.h"
#include "data/dataset.h"
#include "dist/comm.h"
#include "model.h"
#include "text/bpe.h"
#include "train/trainer.h"

static double mib(size_t n_bytes) {
    return (double)n_bytes / (1024.0 * 1024.0);
}

typedef struct info_plan {
    const char *config_only; /* config.json's path when there are no weights, else NULL */
    const char *train_path;  /* the data the training plan is shaped by, or NULL */
    int batch, seq_len;
    zt_train_shape shape;  /* of the training plan */
    const char *optimizer; /* NULL: inference plan only */
    const char *mode;
    zt_memory_plan inference;
    zt_train_memory_plan train;
    int stages; /* --pipeline-stages: each stage's weights, as `zotune train` loads them */
} info_plan;

/* Stage `stage` of `stages`: its layers (split as zotune train splits them) and the bytes of the
 * tensors it holds (zt_model_stage_holds). */
static size_t stage_weight_bytes(const zt_model *m, int stages, int stage, zt_model_stage *share) {
    int first = 0, count = 0;
    zt_comm_share(m->dims.n_layers, stages, stage, &first, &count);
    *share = (zt_model_stage){.first_layer = first,
                              .end_layer = first + count,
                              .is_first = stage == 0,
                              .is_last = stage == stages - 1};
    size_t bytes = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (zt_model_stage_holds(m, share, i))
            bytes += m->tensors[i].n_elems * zt_dtype_size(m->tensors[i].dtype);
    return bytes;
}

static void print_text(const char *dir, const zt_model *m, const info_plan *p) {
    printf("model          %s\n", dir);
    zt_model_describe(m, stdout);
    printf("dtype          %s\n", zt_dtype_name(m->tensors[m->embed_tokens].dtype));
    if (p->config_only) printf("weights        none: planned from %s alone\n", p->config_only);
    printf("tensors        %d\n", m->n_tensors);
    printf("backend        %s, gemm %s\n", m->be->ops->name, zt_gemm_precision_name(m->be->gemm));
    if (m->be->ops->describe) printf("device         %s\n", m->be->ops->describe(m->be));
    printf("parameters     %zu\n", zt_model_parameter_count(m));
    printf("inference      %d sequences x %d tokens\n", p->batch, p->seq_len);
    printf("  weights        %12zu bytes  %10.2f MiB\n", p->inference.weights_bytes,
           mib(p->inference.weights_bytes));
    printf("  activations    %12zu bytes  %10.2f MiB\n", p->inference.activation_bytes,
           mib(p->inference.activation_bytes));
    printf("  backend scratch%12zu bytes  %10.2f MiB\n", p->inference.backend_scratch_bytes,
           mib(p->inference.backend_scratch_bytes));
    printf("  total          %12zu bytes  %10.2f MiB\n", p->inference.total_bytes,
           mib(p->inference.total_bytes));
    if (!p->optimizer) return;
    const zt_train_memory_plan *t = &p->train;
    if (t->first_order)
        printf("training       %s (backprop), %llu trainable parameters\n", p->optimizer,
               (unsigned long long)t->trainable_elems);
    else
        printf("training       %s, %s mode, K = %d variants, %llu trainable parameters\n",
               p->optimizer, p->mode, t->n_variants, (unsigned long long)t->trainable_elems);
    printf("  forward        %d sequences x %d tokens%s%s\n", p->shape.sequences, p->shape.seq_len,
           p->train_path ? " (from the data: " : "", p->train_path ? "train's rule)" : "");
    if (p->shape.cache_batch > 0)
        printf("  KV cache       %d prompts x %d columns (greedy decoding)\n", p->shape.cache_batch,
               p->shape.cache_columns);
    printf("  weights        %12zu bytes  %10.2f MiB\n", t->model.weights_bytes,
           mib(t->model.weights_bytes));
    printf("  activations    %12zu bytes  %10.2f MiB\n", t->model.activation_bytes,
           mib(t->model.activation_bytes));
    printf("  staging        %12zu bytes  %10.2f MiB\n", t->model.staging_bytes,
           mib(t->model.staging_bytes));
    printf("  backend scratch%12zu bytes  %10.2f MiB\n", t->model.backend_scratch_bytes,
           mib(t->model.backend_scratch_bytes));
    if (t->model.kv_cache_bytes)
        printf("  KV cache       %12zu bytes  %10.2f MiB\n", t->model.kv_cache_bytes,
               mib(t->model.kv_cache_bytes));
    if (t->first_order) {
        printf("  backprop       %12zu bytes  %10.2f MiB (layer inputs, one layer's "
               "intermediates and gradients)\n",
               t->backprop_bytes, mib(t->backprop_bytes));
        printf("  gradients      %12zu bytes  %10.2f MiB\n", t->gradient_bytes,
               mib(t->gradient_bytes));
    }
    printf("  optimizer state%12zu bytes  %10.2f MiB (%d f32 copies)\n", t->optimizer_bytes,
           mib(t->optimizer_bytes), t->state_copies);
    printf("  total          %12zu bytes  %10.2f MiB\n", t->total_bytes, mib(t->total_bytes));
}

static void print_stages(const zt_model *m, const info_plan *p) {
    for (int stage = 0; stage < p->stages; stage++) {
        zt_model_stage share;
        const size_t bytes = stage_weight_bytes(m, p->stages, stage, &share);
        printf("pipeline stage %d of %d (layers %d..%d): weights %zu bytes  %.2f MiB\n", stage,
               p->stages, share.first_layer, share.end_layer - 1, bytes, mib(bytes));
    }
}

static cJSON *plan_json(const zt_memory_plan *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "weights_bytes", (double)p->weights_bytes);
    cJSON_AddNumberToObject(o, "activation_bytes", (double)p->activation_bytes);
    cJSON_AddNumberToObject(o, "staging_bytes", (double)p->staging_bytes);
    cJSON_AddNumberToObject(o, "backend_scratch_bytes", (double)p->backend_scratch_bytes);
    cJSON_AddNumberToObject(o, "kv_cache_bytes", (double)p->kv_cache_bytes);
    cJSON_AddNumberToObject(o, "total_bytes", (double)p->total_bytes);
    return o;
}

static void print_json(const char *dir, const zt_model *m, const info_plan *p) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", dir);
    cJSON_AddStringToObject(root, "backend", m->be->ops->name);
    if (m->be->ops->describe) cJSON_AddStringToObject(root, "device", m->be->ops->describe(m->be));
    cJSON_AddStringToObject(root, "gemm", zt_gemm_precision_name(m->be->gemm));
    zt_model_describe_json(m, root);
    cJSON_AddStringToObject(root, "dtype", zt_dtype_name(m->tensors[m->embed_tokens].dtype));
    cJSON_AddBoolToObject(root, "weights", p->config_only == NULL);
    cJSON_AddNumberToObject(root, "tensors", m->n_tensors);
    cJSON_AddNumberToObject(root, "parameters", (double)zt_model_parameter_count(m));
    cJSON *inference = plan_json(&p->inference);
    cJSON_AddNumberToObject(inference, "sequences", p->batch);
    cJSON_AddNumberToObject(inference, "seq_len", p->seq_len);
    cJSON_AddItemToObject(root, "plan", inference);
    if (p->optimizer) {
        cJSON *train = plan_json(&p->train.model);
        cJSON_AddStringToObject(train, "optimizer", p->optimizer);
        cJSON_AddStringToObject(train, "mode", p->mode);
        cJSON_AddNumberToObject(train, "variants", p->train.n_variants);
        cJSON_AddNumberToObject(train, "sequences", p->shape.sequences);
        cJSON_AddNumberToObject(train, "seq_len", p->shape.seq_len);
        cJSON_AddNumberToObject(train, "trainable_parameters", (double)p->train.trainable_elems);
        cJSON_AddNumberToObject(train, "optimizer_bytes", (double)p->train.optimizer_bytes);
        if (p->train.first_order) {
            cJSON_AddNumberToObject(train, "backprop_bytes", (double)p->train.backprop_bytes);
            cJSON_AddNumberToObject(train, "gradient_bytes", (double)p->train.gradient_bytes);
        }
        cJSON_ReplaceItemInObject(train, "total_bytes",
                                  cJSON_CreateNumber((double)p->train.total_bytes));
        cJSON_AddItemToObject(root, "train_plan", train);
    }
    if (p->stages > 0) {
        cJSON *stages = cJSON_AddArrayToObject(root, "pipeline_stages");
        for (int stage = 0; stage < p->stages; stage++) {
            zt_model_stage share;
            const size_t bytes = stage_weight_bytes(m, p->stages, stage, &share);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "first_layer", share.first_layer);
            cJSON_AddNumberToObject(o, "end_layer", share.end_layer);
            cJSON_AddNumberToObject(o, "weights_bytes", (double)bytes);
            cJSON_AddItemToArray(stages, o);
        }
    }
    char *text = cJSON_PrintUnformatted(root);
    if (text) puts(text);
    cJSON_free(text);
    cJSON_Delete(root);
}

/* The training plan's shape as `zotune train` takes it from the same data and options. */
static zt_status shape_from_data(const zt_model *model, const char *model_dir,
                                 const char *train_path, const char *eval_path, int batch,
                                 int grad_accum, int train_as_lm, int f1_objective, int bos_mezo,
                                 zt_dataset *train, zt_dataset *eval, zt_train_shape *shape) {
    zt_tokenizer *tok = NULL;
    zt_status s = zt_tokenizer_open_model_dir(model_dir, bos_mezo, &tok);
    const int vocab = model->dims.vocab_size, positions = model->dims.max_positions;
    if (s == ZT_OK) s = zt_dataset_load(train_path, tok, vocab, positions, train);
    if (s == ZT_OK && eval_path) s = zt_dataset_load(eval_path, tok, vocab, positions, eval);
    if (s == ZT_OK && eval_path && eval->kind != train->kind)
        s = zt_fail(ZT_ERR_INVALID_ARG, "--eval %s holds another kind of records than --train %s",
                    eval_path, train_path);
    if (s == ZT_OK)
        zt_train_shape_of(model, train, eval_path ? eval : NULL,
                          (batch + grad_accum - 1) / grad_accum, batch, train_as_lm, f1_objective,
                          shape);
    zt_tokenizer_free(tok);
    return s;
}

int zt_cmd_info(int argc, char **argv) {
    int json = 0, batch = 16, seq_len = 256, threads = 0, directions = 1;
    double momentum = NAN;
    zt_fo_options fo = {0, 0.0, 1, 0};
    const char *device = "cpu", *gemm = "auto", *optimizer = NULL, *mode = "shadow",
               *trainable = NULL;
    const char *dtype_name = NULL, *train_path = NULL, *eval_path = NULL, *bos = "opt";
    const char *train_as = "classification", *objective = "loss";
    int seq_len_given = 0, grad_accum = 1, stages = 0;
    const char *inputs[1] = {NULL};
    zt_peft_args peft;
    zt_peft_args_default(&peft);
    const zt_arg_option options[] = {
        {"model", ZT_ARG_STRING, &inputs[0], "DIR", "model directory (or the positional)"},
        {"json", ZT_ARG_FLAG, &json, NULL, "print one JSON object"},
        {"batch-size", ZT_ARG_INT, &batch, "S",
         "sequences per forward for the plan (classification: examples x candidates; 16)"},
        {"seq-len", ZT_ARG_INT, &seq_len, "T", "longest sequence for the plan (default 256)"},
        {"optimizer", ZT_ARG_STRING, &optimizer, "NAME", "also plan training with this optimizer"},
        {"mode", ZT_ARG_STRING, &mode, "M", "training mode: shadow (default) or inplace"},
        {"directions", ZT_ARG_INT, &directions, "Q", "directions per step for the plan (1)"},
        {"checkpoint-activations", ZT_ARG_FLAG, &fo.checkpoint_activations, NULL,
         "first-order: plan activation checkpointing (layer inputs only)"},
        {"momentum", ZT_ARG_DOUBLE, &momentum, "B",
         "first-order sgd: its momentum (default 0, no state copy)"},
        {"trainable", ZT_ARG_STRING, &trainable, "PATTERNS", "trainable tensors (default all)"},
        ZT_PEFT_ARG_OPTIONS(peft),
        {"adapter", ZT_ARG_STRING, &peft.adapter_dir, "DIR", "plan with this peft adapter"},
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default) or cuda[:N]"},
        {"gemm", ZT_ARG_STRING, &gemm, "P", ZT_GEMM_HELP},
        {"threads", ZT_ARG_THREADS, &threads, "N",
         "CPU threads (the attention scratch scales with it)"},
        {"train", ZT_ARG_STRING, &train_path, "FILE",
         "plan training on this task JSONL at train's shape: --batch-size counts examples, "
         "sequences and length come from the data (implies --optimizer mezo)"},
        {"eval", ZT_ARG_STRING, &eval_path, "FILE", "with --train: the dev set train would read"},
        {"train-as", ZT_ARG_STRING, &train_as, "L", "with --train: classification or lm, as train"},
        {"objective", ZT_ARG_STRING, &objective, "O",
         "with --train: loss, accuracy or f1, as train (f1 decodes training batches)"},
        {"bos", ZT_ARG_STRING, &bos, "B", "with --train: opt (default) or mezo, as train"},
        {"grad-accum", ZT_ARG_INT, &grad_accum, "A",
         "with --train: train's micro-batches (each forward holds --batch-size / A examples)"},
        {"pipeline-stages", ZT_ARG_INT, &stages, "S",
         "also print the weights each of S pipeline stages holds (zotune train's split)"},
        {"dtype", ZT_ARG_STRING, &dtype_name, "D",
         "without weights: plan them stored as f32, f16 or bf16 (default: config.json's "
         "torch_dtype, else f32)"},
    };
    const zt_arg_spec spec = {"zotune info",
                              "zotune info MODEL_DIR [options]  (or --model DIR)",
                              "Loads an OPT model directory (config.json + safetensors) and prints "
                              "its configuration, parameter count and memory plan. A directory "
                              "without safetensors, or a config.json itself, is planned from the "
                              "config alone (any OPT size, nothing downloaded).",
                              options,
                              (int)(sizeof options / sizeof options[0]),
                              0,
                              1};
    const char *positional[1] = {NULL};
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, positional, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    static const char *const input_options[1] = {"model"};
    if (zt_args_named_or_positional(&spec, inputs, input_options, 1, positional, n_positional) !=
        ZT_ARGS_OK)
        return 2;
    positional[0] = inputs[0];
    for (int i = 2; i < argc; i++)
        seq_len_given |=
            strcmp(argv[i], "--seq-len") == 0 || strncmp(argv[i], "--seq-len=", 10) == 0;
    static const char *const train_as_choices[] = ZT_ARGS_TRAIN_AS_CHOICES;
    static const char *const objective_choices[] = ZT_ARGS_OBJECTIVE_CHOICES;
    static const char *const bos_choices[] = ZT_ARGS_BOS_CHOICES;
    static const char *const mode_choices[] = ZT_ARGS_MODE_CHOICES;
    const int train_as_lm =
        zt_args_choice("zotune info", "train-as", train_as, train_as_choices, 2);
    const int objective_kind =
        zt_args_choice("zotune info", "objective", objective, objective_choices, 3);
    const int bos_mezo = zt_args_choice("zotune info", "bos", bos, bos_choices, 2);
    const int inplace = zt_args_choice("zotune info", "mode", mode, mode_choices, 2);
    if (train_as_lm < 0 || objective_kind < 0 || bos_mezo < 0 || inplace < 0) return 2;
    if (!train_path && (eval_path || train_as_lm || objective_kind != 0 || bos_mezo)) {
        fprintf(stderr, "zotune info: --eval, --train-as, --objective and --bos shape a plan "
                        "from --train's data; give --train\n");
        return 2;
    }
    if (train_path && seq_len_given) {
        fprintf(stderr, "zotune info: --seq-len and --train both set the length; with --train "
                        "the data does\n");
        return 2;
    }
    if (train_path && !optimizer) optimizer = "mezo";
    if (batch <= 0 || seq_len <= 0) {
        fprintf(stderr, "zotune info: --batch-size and --seq-len must be positive\n");
        return 2;
    }
    if (grad_accum < 1 || grad_accum > batch) {
        fprintf(stderr, "zotune info: --grad-accum %d: must be in 1 .. --batch-size %d\n",
                grad_accum, batch);
        return 2;
    }
    /* the plan counts rows (batch x seq-len, for K variants) in int */
    if ((long long)batch * seq_len > ZT_MAX_TOKENS_PER_FORWARD) {
        fprintf(stderr,
                "zotune info: --batch-size %d x --seq-len %d is more than %d tokens per forward\n",
                batch, seq_len, (int)ZT_MAX_TOKENS_PER_FORWARD);
        return 2;
    }

    zt_backend *be = NULL;
    zt_model *model = NULL;
    uint8_t *selected = NULL;
    info_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.batch = batch;
    plan.seq_len = seq_len;
    plan.optimizer = optimizer;
    plan.mode = mode;
    char config[4096];
    plan.config_only = zt_cli_config_only(positional[0], config, sizeof config) ? config : NULL;
    int dtype = dtype_name ? zt_cli_parse_dtype(dtype_name) : -1;
    if (dtype_name && dtype < 0) {
        fprintf(stderr, "zotune info: --dtype '%s': expected f32, f16 or bf16\n", dtype_name);
        return 2;
    }
    if (dtype_name && !plan.config_only) {
        fprintf(stderr,
                "zotune info: --dtype plans weights that are not there; %s holds a checkpoint, "
                "whose own dtypes are planned\n",
                positional[0]);
        return 2;
    }
    zt_lora_options lora;
    zt_status s = zt_peft_args_resolve(&peft, &lora);
    if (s == ZT_OK && peft.lora && trainable)
        s = zt_fail(ZT_ERR_INVALID_ARG, "--trainable with --peft lora: LoRA trains its adapters");
    if (s == ZT_OK && peft.prefix && trainable)
        s = zt_fail(ZT_ERR_INVALID_ARG, "--trainable with --peft prefix: it trains its prefixes");
    if (s == ZT_OK && peft.prompt && trainable)
        s = zt_fail(ZT_ERR_INVALID_ARG,
                    "--trainable with --peft prompt: prompt tuning trains its prompt table");
    if (s == ZT_OK) s = zt_backend_open(device, threads, gemm, &be);
    if (s == ZT_OK && plan.config_only) {
        s = zt_model_open_config(config, dtype, be, &model);
        /* the adapters placed after the base, without weights */
        if (s == ZT_OK && peft.lora) s = zt_lora_extend_table(model, &lora);
        if (s == ZT_OK && peft.prefix) s = zt_prefix_extend_table(model, &peft.prefix_options);
        if (s == ZT_OK && peft.prompt) s = zt_prompt_extend_table(model, &peft.prompt_options);
    } else if (s == ZT_OK) {
        const zt_peft_options adapters = {peft.lora ? &lora : NULL,
                                          peft.prompt ? &peft.prompt_options : NULL,
                                          peft.prefix ? &peft.prefix_options : NULL};
        s = zt_model_load_adapted(positional[0], be, &adapters, &model);
    }
    zt_dataset train_ds, eval_ds;
    memset(&train_ds, 0, sizeof train_ds);
    memset(&eval_ds, 0, sizeof eval_ds);
    plan.shape = (zt_train_shape){batch, seq_len, 0, 0};
    plan.train_path = train_path;
    if (s == ZT_OK && train_path)
        s = shape_from_data(model, positional[0], train_path, eval_path, batch, grad_accum,
                            train_as_lm, objective_kind == 2, bos_mezo, &train_ds, &eval_ds,
                            &plan.shape);
    if (s == ZT_OK && train_path) seq_len = plan.seq_len = plan.shape.seq_len;
    if (s == ZT_OK && (stages < 0 || stages > model->dims.n_layers))
        s = zt_fail(ZT_ERR_INVALID_ARG,
                    "--pipeline-stages %d: the model has %d layers, and every stage needs one",
                    stages, model->dims.n_layers);
    plan.stages = stages;
    if (s == ZT_OK && seq_len > model->dims.max_positions)
        fprintf(stderr,
                "zotune info: warning: --seq-len %d is longer than the model's %d positions; "
                "longer sequences are truncated to %d tokens, so this plan overstates them\n",
                seq_len, model->dims.max_positions, model->dims.max_positions);
    if (s == ZT_OK && train_path) plan.batch = plan.shape.sequences;
    if (s == ZT_OK) {
        zt_workspace_shape shape = {plan.batch, seq_len, 1, 0, 0};
        zt_model_plan_memory(model, &shape, &plan.inference);
    }
    if (s == ZT_OK && optimizer) {
        int count = 0;
        zt_zo_hparams hp;
        zt_zo_hparams_default(&hp);
        hp.n_directions = directions;
        /* PyTorch's SGD keeps no momentum unless asked, as `zotune train` */
        if (zt_fo_find(optimizer)) hp.momentum = isnan(momentum) ? 0.0 : momentum;
        selected = zt_calloc((size_t)model->n_tensors, 1);
        s = selected ? zt_model_select(model, trainable, selected, &count)
                     : zt_fail(ZT_ERR_NOMEM, "selection");
        if (s == ZT_OK && zt_model_first_staged(model) > 0) zt_peft_select(model, selected);
        if (s == ZT_OK)
            s = zt_train_plan_memory(model, selected, optimizer, &hp, &fo, 1000,
                                     inplace ? ZT_PERTURB_INPLACE : ZT_PERTURB_SHADOW, &plan.shape,
                                     &plan.train);
    }
    zt_dataset_free(&train_ds);
    zt_dataset_free(&eval_ds);
    if (s != ZT_OK) {
        free(selected);
        zt_model_free(model);
        zt_backend_destroy(be);
        return zt_cli_report("info", s);
    }
    if (json)
        print_json(positional[0], model, &plan);
    else
        print_text(positional[0], model, &plan);
    if (!json) print_stages(model, &plan);
    free(selected);
    zt_model_free(model);
    zt_backend_destroy(be);
    return 0;
}
