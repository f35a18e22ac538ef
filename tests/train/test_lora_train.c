/* LoRA training through `zotune train --peft lora` on the fixture's LM task: MeZO (shadow and in
 * place), ZO-AdaMM and AdamW lower the loss while the base stays bit for bit the base; replaying
 * the log rebuilds the trained adapters bit for bit; SIGKILL + --resume ends bit-identical to an
 * uninterrupted run (ZO-AdaMM and AdamW); --adapter continues from a peft adapter; mismatched or
 * unsupported options are refused. argv[1] is the zotune binary. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "train/replay.h"
#include "peft_train_util.h"
#include "train_util.h"
#include "zt_test.h"

/* The training losses of out/metrics.jsonl in step order; returns how many. */
static void check_lowers_loss(void) {
    static const struct {
        const char *options;
        int steps;
        double drop; /* the last 20 steps' mean loss at least this much under the first 20's */
    } configs[] = {
        {"--optimizer mezo --lr 1e-2 --eps 1e-2", 300, 0.5},
        {"--optimizer mezo --lr 1e-2 --eps 1e-2 --mode inplace", 300, 0.5},
        {"--optimizer zo-adamm --lr 1e-2 --eps 1e-2", 300, 0.5},
        {"--optimizer adamw --lr 1e-2", 60, 3.0},
    };
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        char out[256], args[2048], printed[4096];
        make_temp_dir(out, sizeof out, "lora");
        snprintf(args, sizeof args, "--output %s --peft lora --steps %d --batch-size 4 %s", out,
                 configs[c].steps, configs[c].options);
        ZT_CHECK(run_zotune(args, printed, sizeof printed) == 0, "%s: %s", args, printed);
        double losses[512];
        const int n = read_losses(out, losses, 512);
        ZT_CHECK(n == configs[c].steps, "%s: %d logged steps", configs[c].options, n);
        if (n >= 40) {
            const double first = mean(losses, 20), last = mean(losses + n - 20, 20);
            ZT_CHECK(last < first - configs[c].drop, "%s: loss %.3f -> %.3f", configs[c].options,
                     first, last);
            printf("  %-56s loss %.3f -> %.3f (mean of the first / last 20 of %d steps)\n",
                   configs[c].options, first, last, n);
        }
        /* the base is untouched: every tensor of the written model.safetensors is the base's */
        checkpoint_diff d = compare_checkpoints(model, out);
        ZT_CHECK(!d.mismatched_layout && d.changed == 0 && d.elements > 0,
                 "%s: %zu of %zu base weights changed", configs[c].options, d.changed, d.elements);
        char path[1200];
        adapter_path(path, sizeof path, out);
        ZT_CHECK(access(path, R_OK) == 0, "%s: no adapter written", configs[c].options);
        if (strstr(configs[c].options, "mezo") && !strstr(configs[c].options, "inplace")) {
            char log[1200], replayed[256], again[1200];
            snprintf(log, sizeof log, "%s/steplog.jsonl", out);
            make_temp_dir(replayed, sizeof replayed, "lora_replay");
            int steps = 0;
            ZT_CHECK_OK(zt_replay(model, log, replayed, "cpu", 1, &steps));
            adapter_path(again, sizeof again, replayed);
            ZT_CHECK(steps == n && zt_test_same_file(path, again, NULL),
                     "replay of %d steps: adapters differ from the trained ones", steps);
            remove_run_dir(replayed);
        }
        remove_run_dir(out);
    }
}

static const char *const KILL_PEFT[] = {"--peft",
                                        "lora",
                                        "--lora-rank",
                                        "4",
                                        "--lora-alpha",
                                        "8",
                                        "--lora-targets",
                                        "q_proj,k_proj,v_proj,out_proj",
                                        NULL};

static void check_kill_resume(const char *optimizer) {
    check_kill_resume_with(
        optimizer, KILL_PEFT, "1e-2", 600,
        "--peft lora --lora-rank 8 --lora-alpha 8 --lora-targets q_proj,k_proj,v_proj,out_proj",
        "--lora-rank");
}

/* --adapter: training continues from a peft adapter; its fingerprint is in the log, which replay
 * needs beside the log (--adapter). */
static void check_continue_from_adapter(void) {
    char adapter[1024], out[256], args[2048], printed[4096];
    fixture_path(adapter, sizeof adapter, "opt-pre-lora", NULL);
    make_temp_dir(out, sizeof out, "lora_cont");
    snprintf(args, sizeof args,
             "--output %s --adapter %s --optimizer mezo --steps 5 --batch-size 4 --lr 1e-3 --eps "
             "1e-2",
             out, adapter);
    ZT_CHECK(run_zotune(args, printed, sizeof printed) == 0, "--adapter: %s", printed);
    double losses[8];
    ZT_CHECK(read_losses(out, losses, 8) == 5 && losses[0] > 7.5,
             "--adapter: first loss %.3f (the fixture adapter's loss on this task is about 8)",
             losses[0]);
    check_replay_from_adapter(model, adapter, out, 5);
    snprintf(args, sizeof args, "--output %s/x --adapter %s --lora-rank 8", out, adapter);
    ZT_CHECK(run_zotune(args, printed, sizeof printed) == 2 && strstr(printed, "--lora-rank"),
             "--adapter with another rank: %s", printed);
    remove_run_dir(out);
}

static void check_refusals(void) {
    static const struct {
        const char *args, *names;
    } cases[] = {
        {"--peft lora --trainable fc1", "--trainable"},
        {"--peft lora --lora-dropout 0.1", "--lora-dropout"},
        {"--peft bogus", "--peft"},
        {"--lora-rank 4", "--peft lora"},
        {"--peft lora --lora-targets fc1", "fc1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256], args[2048], printed[4096];
        make_temp_dir(out, sizeof out, "lora_bad");
        snprintf(args, sizeof args, "--output %s/run --steps 2 %s", out, cases[i].args);
        const int rc = run_zotune(args, printed, sizeof printed);
        ZT_CHECK(rc == 2 && strstr(printed, cases[i].names), "%s: exit %d: %s", cases[i].args, rc,
                 printed);
        remove_run_dir(out);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    peft_test_setup(argv[1]);
    check_lowers_loss();
    check_kill_resume("zo-adamm");
    check_kill_resume("adamw");
    check_every_optimizer_with("--peft lora --lora-rank 4", "--lr 1e-3 --eps 1e-2");
    check_continue_from_adapter();
    check_refusals();
    return zt_test_finish("test_lora_train");
}
