/* Prompt tuning through `zotune train --peft prompt` on the fixture's LM task: MeZO (shadow and
 * in place), ZO-AdaMM and AdamW lower the loss while the base stays bit for bit the base;
 * replaying the log rebuilds the trained table bit for bit; SIGKILL + --resume ends
 * bit-identical to an uninterrupted run (ZO-AdaMM and AdamW); --adapter continues from a peft
 * prompt adapter; mismatched or unsupported options are refused, and so is merging a prompt
 * adapter. argv[1] is the zotune binary. */
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
        {"--optimizer adamw --lr 1e-2", 60, 0.5},
        {"--optimizer sgd --lr 1", 60, 0.2},
    };
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        char out[256], args[2048], printed[4096];
        make_temp_dir(out, sizeof out, "prompt");
        snprintf(args, sizeof args,
                 "--output %s --peft prompt --num-virtual-tokens 4 --steps %d --batch-size 4 %s",
                 out, configs[c].steps, configs[c].options);
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
            make_temp_dir(replayed, sizeof replayed, "prompt_replay");
            int steps = 0;
            ZT_CHECK_OK(zt_replay(model, log, replayed, "cpu", 1, &steps));
            adapter_path(again, sizeof again, replayed);
            ZT_CHECK(steps == n && zt_test_same_file(path, again, NULL),
                     "replay of %d steps: the table differs from the trained one", steps);
            remove_run_dir(replayed);
        }
        remove_run_dir(out);
    }
}

static const char *const KILL_PEFT[] = {"--peft", "prompt", "--num-virtual-tokens", "4", NULL};

static void check_kill_resume(const char *optimizer) {
    check_kill_resume_with(optimizer, KILL_PEFT, "1e-2", 600,
                           "--peft prompt --num-virtual-tokens 5", "--num-virtual-tokens");
}

/* --adapter: training continues from a peft prompt adapter (the fixture's, whose loss on this
 * task the first step shows); its fingerprint is in the log, and replay needs it (--adapter). */
static void check_continue_from_adapter(void) {
    char adapter[1024], out[256], args[2048], printed[4096];
    fixture_path(adapter, sizeof adapter, "opt-pre-prompt", NULL);
    make_temp_dir(out, sizeof out, "prompt_cont");
    snprintf(args, sizeof args,
             "--output %s --adapter %s --optimizer mezo --steps 5 --batch-size 4 --lr 1e-3 --eps "
             "1e-2",
             out, adapter);
    ZT_CHECK(run_zotune(args, printed, sizeof printed) == 0, "--adapter: %s", printed);
    double losses[8];
    ZT_CHECK(read_losses(out, losses, 8) == 5, "--adapter: %s", printed);
    char config[1200];
    snprintf(config, sizeof config, "%s/adapter_config.json", out);
    ZT_CHECK(access(config, R_OK) == 0, "--adapter: no adapter_config.json written");
    check_replay_from_adapter(model, adapter, out, 5);
    snprintf(args, sizeof args, "--output %s/x --adapter %s --num-virtual-tokens 5", out, adapter);
    ZT_CHECK(run_zotune(args, printed, sizeof printed) == 2 &&
                 strstr(printed, "--num-virtual-tokens"),
             "--adapter with another N: %s", printed);
    snprintf(args, sizeof args, "--output %s/y --adapter %s --peft lora", out, adapter);
    ZT_CHECK(run_zotune(args, printed, sizeof printed) == 2 && strstr(printed, "prompt-tuning"),
             "--peft lora with a prompt adapter: %s", printed);
    remove_run_dir(out);
}

static void check_refusals(void) {
    static const struct {
        const char *args, *names;
    } cases[] = {
        {"--peft prompt --trainable fc1", "--trainable"},
        {"--peft prompt --lora-rank 4", "--peft lora"},
        {"--num-virtual-tokens 4", "--peft prompt"},
        {"--peft prompt --num-virtual-tokens -1", "--num-virtual-tokens"},
        {"--peft prompt --num-virtual-tokens 40", "--num-virtual-tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256], args[2048], printed[4096];
        make_temp_dir(out, sizeof out, "prompt_bad");
        snprintf(args, sizeof args, "--output %s/run --steps 2 %s", out, cases[i].args);
        const int rc = run_zotune(args, printed, sizeof printed);
        ZT_CHECK(rc == 2 && strstr(printed, cases[i].names), "%s: exit %d: %s", cases[i].args, rc,
                 printed);
        remove_run_dir(out);
    }
}

/* zotune merge refuses a prompt adapter, naming it, and writes nothing. */
static void check_merge_refused(void) {
    char adapter[1024], out[256], cmd[4096], printed[4096], target[600];
    fixture_path(adapter, sizeof adapter, "opt-pre-prompt", NULL);
    make_temp_dir(out, sizeof out, "prompt_merge");
    snprintf(target, sizeof target, "%s/merged", out);
    snprintf(cmd, sizeof cmd, "%s merge %s %s %s 2>&1", zotune, model, adapter, target);
    const int rc = zt_test_run(cmd, printed, sizeof printed);
    ZT_CHECK(rc == 2 && strstr(printed, "prompt-tuning adapter") && access(target, F_OK) != 0,
             "merge of a prompt adapter: exit %d: %s", rc, printed);
    remove_run_dir(out);
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    peft_test_setup(argv[1]);
    check_lowers_loss();
    check_kill_resume("zo-adamm");
    check_kill_resume("adamw");
    check_every_optimizer_with("--peft prompt --num-virtual-tokens 4", "--lr 1e-2 --eps 1e-2");
    check_continue_from_adapter();
    check_refusals();
    check_merge_refused();
    return zt_test_finish("test_prompt_train");
}
