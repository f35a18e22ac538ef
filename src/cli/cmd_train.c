/* zotune train: zeroth-order fine-tuning from the command line. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/peft_args.h"
#include "dist/comm.h"
#include "train/trainer.h"
#include "zo/optimizer.h"
#include "zo/schedule.h"

/* Forward passes of a step with the default options: what the policy plans (S2P options 2 and 4
 * add a second round on the same batch). */
static int default_variants(const char *name) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    zt_optimizer *optimizer = NULL;
    zt_step_plan plan;
    int k = -1;
    if (zt_optimizer_create(name, &hp, 1000, 1000, &optimizer) == ZT_OK &&
        zt_optimizer_plan(optimizer, 0, 1, &plan) == ZT_OK)
        k = plan.n_variants;
    zt_optimizer_free(optimizer);
    return k;
}

static void list_optimizers(void) {
    printf("optimizers (forward passes per step with --directions 1; Q directions multiply the "
           "two-point ones):\n");
    for (int i = 0; i < zt_optimizer_count(); i++) {
        const zt_optimizer_info *info = zt_optimizer_info_at(i);
        printf("  %-12s %s\n", info->name, info->summary);
        printf("  %-12s   %d forward passes%s, %d f32 state copies, --dist %s\n", "",
               default_variants(info->name),
               strcmp(info->name, "s2p") == 0 ? " (+2 on the same batch with --s2p-option 2, 4)"
                                              : "",
               info->state_copies, info->distributions);
        printf("  %-12s   flags: %s\n", "", info->flags);
    }
    printf("every optimizer: --steps --batch-size --seed --trainable --mode; with a plateau "
           "schedule, --plateau-factor --plateau-patience\n");
    printf("\nfirst-order optimizers (backprop on the same kernels):\n");
    for (int i = 0; i < zt_fo_count(); i++) {
        const zt_fo_info *info = zt_fo_at(i);
        printf("  %-12s %s\n", info->name, info->summary);
    }
    printf("  flags: --lr --lr-schedule (constant|cosine|linear) --weight-decay (masked as MeZO) "
           "--momentum (sgd, default 0 there) --nesterov --beta1 --beta2 --adam-eps "
           "--clip-grad-norm --micro-batches\n");
}

int zt_cmd_train(int argc, char **argv) {
    zt_train_options o;
    zt_train_options_default(&o);
    o.steps = 20000;
    o.eval_every = 4000;
    o.save_every = 1000;
    const char *lr_schedule = "constant", *eps_schedule = "constant", *dist = NULL;
    const char *mode = "shadow", *train_as = "classification", *bos = "opt", *objective = "loss";
    const char *on_nonfinite = "stop", *comm_kind = "auto";
    double comm_timeout = 600.0;
    uint64_t seed = 42;
    int no_sr = 0, list = 0;
    zt_peft_args peft;
    zt_peft_args_default(&peft);
    const zt_arg_option options[] = {
        {"model", ZT_ARG_STRING, &o.model_dir, "DIR", "HF OPT model directory (required)"},
        {"train", ZT_ARG_STRING, &o.train_path, "FILE", "training JSONL (required)"},
        {"eval", ZT_ARG_STRING, &o.eval_path, "FILE", "dev JSONL, evaluated every --eval-every"},
        {"output", ZT_ARG_STRING, &o.output_dir, "DIR", "output directory (required)"},
        {"optimizer", ZT_ARG_STRING, &o.optimizer, "NAME", "default mezo; --list-optimizers"},
        {"steps", ZT_ARG_INT, &o.steps, "N", "training steps (default 20000, MeZO)"},
        {"batch-size", ZT_ARG_INT, &o.batch_size, "B", "examples per step (default 16)"},
        {"lr", ZT_ARG_DOUBLE, &o.hp.lr, "X", "learning rate / alpha_0 (default 1e-6)"},
        {"eps", ZT_ARG_DOUBLE, &o.hp.eps, "X", "perturbation scale eps / rho_0 (default 1e-3)"},
        {"eps-end", ZT_ARG_DOUBLE, &o.hp.eps_end, "X", "final eps of the eps schedule"},
        {"lr-schedule", ZT_ARG_STRING, &lr_schedule, "S", "constant|cosine|linear|plateau"},
        {"eps-schedule", ZT_ARG_STRING, &eps_schedule, "S", "constant|cosine|linear"},
        {"weight-decay", ZT_ARG_DOUBLE, &o.hp.weight_decay, "X", "coupled L2 (default 0)"},
        {"directions", ZT_ARG_INT, &o.hp.n_directions, "Q", "random directions per step (1)"},
        {"dist", ZT_ARG_STRING, &dist, "D", "gaussian|rademacher|sphere (optimizer default)"},
        {"sphere-sqrt-d", ZT_ARG_FLAG, &o.hp.sphere_scale_sqrt_d, NULL,
         "sphere radius eps*sqrt(d) instead of eps"},
        {"momentum", ZT_ARG_DOUBLE, &o.hp.momentum, "B", "zo-sgd-mmt momentum (0.9)"},
        {"beta1", ZT_ARG_DOUBLE, &o.hp.beta1, "B", "zo-adamm beta1 (0.9)"},
        {"beta2", ZT_ARG_DOUBLE, &o.hp.beta2, "B", "zo-adamm beta2 (0.999)"},
        {"adam-eps", ZT_ARG_DOUBLE, &o.hp.adam_eps, "X", "zo-adamm delta (1e-8)"},
        {"s2p-option", ZT_ARG_INT, &o.hp.s2p_option, "K", "s2p step-size option 1..4"},
        {"s2p-l", ZT_ARG_DOUBLE, &o.hp.s2p_l, "X", "s2p option 2: smoothness L (1)"},
        {"s2p-l0", ZT_ARG_DOUBLE, &o.hp.s2p_l0, "X", "s2p option 4: L0 of (L0, L1)-smoothness (1)"},
        {"s2p-l1", ZT_ARG_DOUBLE, &o.hp.s2p_l1, "X", "s2p options 3, 4: L1 (1)"},
        {"s2p-a", ZT_ARG_DOUBLE, &o.hp.s2p_a, "X", "s2p option 4: constant a (1.01)"},
        {"s2p-b", ZT_ARG_DOUBLE, &o.hp.s2p_b, "X", "s2p options 3, 4: constant b (1.01)"},
        {"as2p-eta-a", ZT_ARG_DOUBLE, &o.hp.as2p_eta_a, "X", "as2p eta_a (5)"},
        {"as2p-eta-b", ZT_ARG_DOUBLE, &o.hp.as2p_eta_b, "X", "as2p eta_b (50)"},
        {"as2p-window", ZT_ARG_DOUBLE, &o.hp.as2p_window_frac, "F", "as2p std window (0.10)"},
        {"as2p-window-elapsed", ZT_ARG_FLAG, &o.hp.as2p_window_elapsed, NULL,
         "as2p: the window is that fraction of the steps so far, not of --steps (docs/spec.md §9.2 "
         "B2)"},
        {"plateau-factor", ZT_ARG_DOUBLE, &o.hp.plateau_factor, "F", "plateau lr factor (0.1)"},
        {"plateau-patience", ZT_ARG_INT, &o.hp.plateau_patience, "N", "plateau patience (10)"},
        {"seed", ZT_ARG_U64, &seed, "S", "run seed: directions and data order (42)"},
        {"trainable", ZT_ARG_STRING, &o.trainable, "PATTERNS",
         "comma-separated tensor patterns, '!' excludes (default all)"},
        {"mode", ZT_ARG_STRING, &mode, "M", "shadow (default) or inplace (MeZO's +e,-2e,+e)"},
        {"train-as", ZT_ARG_STRING, &train_as, "L",
         "classification (default) or lm: loss for candidate records (MeZO: lm for Copa, ReCoRD)"},
        {"bos", ZT_ARG_STRING, &bos, "B", "opt (default, </s> = 2) or mezo (<s> = 0, MeZO's fix)"},
        {"objective", ZT_ARG_STRING, &objective, "O",
         "loss (default), accuracy or f1: minimise -accuracy / -F1 directly (MeZO 3.3)"},
        {"on-nonfinite", ZT_ARG_STRING, &on_nonfinite, "A",
         "stop (default: save the last finite state and exit) or skip (log the step as skipped)"},
        {"no-stochastic-rounding", ZT_ARG_FLAG, &no_sr, NULL, "round f16/bf16 updates to nearest"},
        {"resume", ZT_ARG_FLAG, &o.resume, NULL, "continue the run in --output bit-identically"},
        {"device", ZT_ARG_STRING, &o.device, "DEV", "cpu (default) or cuda[:N]"},
        {"comm", ZT_ARG_STRING, &comm_kind, "C",
         "auto (default: the ranks of mpirun/srun, or of a torchrun-style environment; nccl "
         "for them with --device cuda), single, mpi, tcp or nccl"},
        {"comm-timeout", ZT_ARG_DOUBLE, &comm_timeout, "S",
         "the longest a rank waits for another (any --comm) before the job ends (default 600)"},
        {"verify-replicas", ZT_ARG_INT, &o.verify_replicas, "N",
         "data parallel: compare the ranks' weights every N steps, stop on a mismatch (0: off)"},
        {"grad-accum", ZT_ARG_INT, &o.grad_accum, "A",
         "zeroth-order: each variant over the step's examples in A micro-batches in turn "
         "(activations / A; batch-invariant, so equal to one forward)"},
        {"direction-groups", ZT_ARG_INT, &o.direction_groups, "G",
         "data parallel: G groups of ranks (of pipelines, with --pipeline-stages) share each "
         "step's variants (default 1)"},
        {"pipeline-stages", ZT_ARG_INT, &o.pipeline_stages, "S",
         "the ranks as S-stage pipelines, each stage running a contiguous range of layers "
         "(ranks = S x data-parallel replicas; default 1)"},
        {"batch-invariant", ZT_ARG_FLAG, &o.batch_invariant, NULL,
         "a sequence's bits independent of its batch, as data-parallel runs compute (cpu)"},
        {"gemm", ZT_ARG_STRING, &o.gemm, "P", ZT_GEMM_HELP},
        {"threads", ZT_ARG_THREADS, &o.threads, "N", ZT_THREADS_HELP},
        {"log-every", ZT_ARG_INT, &o.log_every, "N", "progress line every N steps (10)"},
        {"eval-every", ZT_ARG_INT, &o.eval_every, "N", "evaluate every N steps (4000)"},
        {"save-every", ZT_ARG_INT, &o.save_every, "N", "snapshot every N steps (1000)"},
        {"quiet", ZT_ARG_FLAG, &o.quiet, NULL, "no progress output"},
        {"nesterov", ZT_ARG_FLAG, &o.fo.nesterov, NULL, "first-order sgd: Nesterov momentum"},
        {"clip-grad-norm", ZT_ARG_DOUBLE, &o.fo.clip_norm, "X",
         "first-order: clip the global gradient norm to X (default 0: off)"},
        {"micro-batches", ZT_ARG_INT, &o.fo.micro_batches, "N",
         "first-order: the step's examples in N backward passes, one gradient (default 1)"},
        {"schedule", ZT_ARG_STRING, &o.schedule, "PHASES",
         "hybrid run, e.g. mezo:1000,adamw:200 (zo = mezo, fo = adamw; --steps = their sum)"},
        {"checkpoint-activations", ZT_ARG_FLAG, &o.fo.checkpoint_activations, NULL,
         "first-order: keep each layer's input only and run the layer again in backward"},
        ZT_PEFT_ARG_OPTIONS(peft),
        {"adapter", ZT_ARG_STRING, &peft.adapter_dir, "DIR",
         "continue from this adapter: peft LoRA (its rank, alpha and targets) or prompt tuning "
         "(its num_virtual_tokens), or a MeZO prefix (its num_prefix)"},
        {"list-optimizers", ZT_ARG_FLAG, &list, NULL, "print the optimizers and exit"},
    };
    const zt_arg_spec spec = {
        "zotune train",
        "zotune train --model DIR --train FILE --output DIR [options]",
        "Fine-tunes an OPT model with a zeroth-order optimizer (forward passes only), or a\n"
        "first-order one (backprop: sgd, signsgd, adam, adamw, adamm). Writes the step log (for\n"
        "ZO runs, base weights + log = the fine-tune), metrics.jsonl, snapshots and the final\n"
        "weights in HF format to --output. SIGINT/SIGTERM save and stop; --resume continues.",
        options,
        (int)(sizeof options / sizeof options[0]),
        0,
        0};
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, NULL, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    if (list) {
        list_optimizers();
        return 0;
    }
    static const char *const schedules[] = {"constant", "cosine", "linear", "plateau"};
    static const char *const dists[] = {"gaussian", "rademacher", "sphere"};
    static const char *const modes[] = ZT_ARGS_MODE_CHOICES;
    static const char *const losses[] = ZT_ARGS_TRAIN_AS_CHOICES;
    static const char *const bos_kinds[] = ZT_ARGS_BOS_CHOICES;
    static const char *const objectives[] = ZT_ARGS_OBJECTIVE_CHOICES;
    int lr_kind = zt_args_choice("zotune train", "lr-schedule", lr_schedule, schedules, 4);
    int eps_kind = zt_args_choice("zotune train", "eps-schedule", eps_schedule, schedules, 3);
    int mode_kind = zt_args_choice("zotune train", "mode", mode, modes, 2);
    int dist_kind = dist ? zt_args_choice("zotune train", "dist", dist, dists, 3) : 0;
    int train_as_kind = zt_args_choice("zotune train", "train-as", train_as, losses, 2);
    int bos_kind = zt_args_choice("zotune train", "bos", bos, bos_kinds, 2);
    int objective_kind = zt_args_choice("zotune train", "objective", objective, objectives, 3);
    static const char *const nonfinite_actions[] = {"stop", "skip"};
    int nonfinite_kind =
        zt_args_choice("zotune train", "on-nonfinite", on_nonfinite, nonfinite_actions, 2);
    if (nonfinite_kind < 0) return 2;
    o.skip_nonfinite = nonfinite_kind == 1;
    if (objective_kind < 0) return 2;
    o.objective = (zt_objective_kind)objective_kind;
    if (lr_kind < 0 || eps_kind < 0 || mode_kind < 0 || dist_kind < 0 || train_as_kind < 0 ||
        bos_kind < 0)
        return 2;
    o.train_as_lm = train_as_kind == 1;
    o.bos_mezo = bos_kind == 1;
    int steps_given = 0, momentum_given = 0;
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "--steps", 7) == 0) steps_given = 1;
        if (strncmp(argv[i], "--momentum", 10) == 0) momentum_given = 1;
    }
    if (o.schedule) {
        zt_phases phases;
        zt_status ps = zt_phases_parse(o.schedule, o.optimizer, 1, &phases);
        if (ps != ZT_OK) return zt_cli_report("train", ps);
        if (!steps_given) o.steps = zt_phases_steps(&phases);
        /* PyTorch's SGD has no momentum unless asked; --momentum's 0.9 is zo-sgd-mmt's */
        for (int k = 0; k < phases.n && !momentum_given; k++)
            if (phases.phase[k].fo && phases.phase[k].fo->rule == ZT_FO_SGD) o.hp.momentum = 0.0;
    } else if (zt_fo_find(o.optimizer)) {
        if (!momentum_given) o.hp.momentum = 0.0;
    } else if (!zt_optimizer_find(o.optimizer)) {
        fprintf(stderr, "zotune train: --optimizer '%s' is not known\n", o.optimizer);
        list_optimizers();
        return 2;
    }
    /* AS2P's rho_end is rho_0/10 (docs/spec.md §6.4) unless given */
    int eps_end_given = 0;
    for (int i = 2; i < argc; i++)
        if (strncmp(argv[i], "--eps-end", 9) == 0) eps_end_given = 1;
    if (!eps_end_given) o.hp.eps_end = o.hp.eps / 10.0;
    o.hp.lr_schedule = (zt_schedule_kind)lr_kind;
    o.hp.eps_schedule = (zt_schedule_kind)eps_kind;
    if (dist) o.hp.dist = (zt_direction_dist)dist_kind;
    o.hp.dist_given = dist != NULL;
    o.mode = (zt_perturb_mode)mode_kind;
    o.stochastic_rounding = !no_sr;
    o.seed = seed;
    zt_lora_options lora;
    zt_status ls = zt_peft_args_resolve(&peft, &lora);
    if (ls != ZT_OK) return zt_cli_report("train", ls);
    if (peft.lora) o.lora = &lora;
    if (peft.prefix) o.prefix = &peft.prefix_options;
    if (peft.prompt) o.prompt = &peft.prompt_options;
    zt_train_install_signal_handlers();

    zt_comm *comm = NULL;
    zt_status cs = zt_comm_create(comm_kind, o.device && strncmp(o.device, "cuda", 4) == 0,
                                  comm_timeout, &comm);
    if (cs != ZT_OK) return zt_cli_report("train", cs);
    char rank_device[32];
    if (comm->n_devices > 0 && o.device && strcmp(o.device, "cuda") == 0) {
        /* each rank drives its local rank's GPU, the one its NCCL communicator uses */
        snprintf(rank_device, sizeof rank_device, "cuda:%d", comm->device);
        o.device = rank_device;
        fprintf(stderr, "rank %d of %d: local rank %d, %s (of %d GPUs)\n", comm->rank, comm->size,
                comm->local_rank, rank_device, comm->n_devices);
    }
    o.comm = comm;
    if (comm->rank != 0) o.quiet = 1;
    zt_train_result res;
    zt_status s = zt_train(&o, &res);
    if (s != ZT_OK && comm->size > 1) {
        /* the other ranks wait in a collective for this one: end the job, naming the rank */
        fprintf(stderr, "zotune train: rank %d of %d: %s: %s\n", comm->rank, comm->size,
                zt_status_name(s), zt_last_error());
        comm->ops->abort(comm, s == ZT_ERR_INVALID_ARG || s == ZT_ERR_CONFLICT ? 2 : 1);
    }
    const int ranks = comm->size, rank = comm->rank;
    if (ranks > 1 && s == ZT_OK) {
        fprintf(stderr, "rank %d of %d: evaluated %ld training examples (its share)\n", rank, ranks,
                res.examples_evaluated);
        /* what crossed the wire (docs/distributed.md, "What a rank sends, counted"): the steps' own
         * bytes (as metrics.jsonl gives them per step), the loop's in all, and the whole run's
         * by kind of call */
        const double steps = res.steps_this_run > 0 ? res.steps_this_run : 1;
        char whole[512];
        zt_comm_traffic_format(&comm->traffic, whole, sizeof whole);
        fprintf(stderr,
                "rank %d of %d: traffic: %d steps sent %llu bytes and received %llu bytes (%.0f "
                "and %.0f per step); the loop with its stop flags sent %llu and received %llu "
                "(%.0f and %.0f per step); whole run: %s\n",
                rank, ranks, res.steps_this_run, res.step_bytes_sent, res.step_bytes_received,
                (double)res.step_bytes_sent / steps, (double)res.step_bytes_received / steps,
                res.loop_bytes_sent, res.loop_bytes_received, (double)res.loop_bytes_sent / steps,
                (double)res.loop_bytes_received / steps, whole);
    }
    zt_comm_destroy(comm);
    if (s != ZT_OK) return ranks > 1 ? 1 : zt_cli_report("train", s);
    if (res.interrupted) {
        if (rank == 0)
            fprintf(stderr, "stopped after step %d; state saved in %s (continue with --resume)\n",
                    res.steps_done, o.output_dir);
        return 130;
    }
    if (!o.quiet) {
        fprintf(stderr, "done: %d steps, weights in %s; peak %zu bytes (%.2f MiB) tracked\n",
                res.steps_done, o.output_dir, res.peak_bytes,
                (double)res.peak_bytes / (1024.0 * 1024.0));
        if (res.first_eval_accuracy >= 0)
            printf("dev accuracy: %.2f%% before, %.2f%% after training\n",
                   100.0 * res.first_eval_accuracy, 100.0 * res.last_eval_accuracy);
        else if (o.eval_path && res.metric_name && strcmp(res.metric_name, "f1") == 0)
            printf("dev F1: %.2f%% before, %.2f%% after training\n", 100.0 * res.first_eval_metric,
                   100.0 * res.last_eval_metric);
        else if (o.eval_path)
            printf("dev loss: %.5f before, %.5f after training\n", res.first_eval_loss,
                   res.last_eval_loss);
        /* accuracy and F1 in percent, as every other line prints them; -loss as it is */
        int percent = res.metric_name && strcmp(res.metric_name, "-loss") != 0;
        if (o.eval_path && res.best_step >= 0)
            fprintf(stderr, "best dev %s %.*f%s at step %d: %s/best\n", res.metric_name,
                    percent ? 2 : 5, percent ? 100.0 * res.best_eval_metric : res.best_eval_metric,
                    percent ? "%" : "", res.best_step, o.output_dir);
    }
    return 0;
}
