/* Memory is the point of ZO: during training nothing but the weights, the activations of the K
 * variants, the staging buffers, the backend's scratch and the optimizer's own state is held,
 * and the tracked allocator's measured peak equals the plan `zotune info --optimizer` prints,
 * to the byte. Runs: MeZO (no state), ZO-SGD-MMT (one copy), ZO-AdaMM (three copies, sphere
 * norm passes), STP (K = 3), shadow and in-place, F32 and F16, all or some tensors trainable,
 * GEMMs in f32 and with half inputs (--gemm half: half staging, rounded activations); and the
 * first-order optimizers (AdamW, SGD on bf16 layers, Adam without the embeddings, AdaMM on f16),
 * whose plan adds backprop's buffers and scratch, the gradient and the optimizer's state; and
 * --grad-accum, whose forwards (and plan) hold one micro-batch; and LoRA runs, ZO and
 * first-order (--peft lora: only the adapters staged and trained), prefix runs (--peft prefix),
 * and prompt-tuning runs (--peft prompt: the table alone staged and trained, every sequence N
 * tokens longer).
 * argv[1] is the zotune binary. */
#include <cjson/cJSON.h>
#include <sys/wait.h>

#include "lora.h"
#include "prefix.h"
#include "prompt.h"
#include "train_util.h"
#include "zt_test.h"

typedef struct run_spec {
    const char *fixture, *optimizer, *mode, *trainable, *gemm;
    int checkpoint;    /* first-order: --checkpoint-activations */
    int grad_accum;    /* ZO: --grad-accum (0: off), planned at the micro-batch's shape */
    int lora_rank;     /* --peft lora with this rank on q, k, v and out_proj; 0: none */
    int n_prefix;      /* --peft prefix with this many prefixes per layer; 0: none */
    int prompt_tokens; /* --peft prompt with this many virtual tokens; 0: none */
} run_spec;

static const run_spec runs[] = {
    {"opt-pre", "mezo", "shadow", NULL, "f32", 0, 0, 0, 0, 0},
    {"opt-pre-f16", "mezo", "shadow", NULL, "f32", 0, 0, 0, 0, 0},
    {"opt-pre-f16", "mezo", "inplace", NULL, "f32", 0, 0, 0, 0, 0},
    {"opt-pre", "zo-sgd-mmt", "shadow", NULL, "f32", 0, 0, 0, 0, 0},
    {"opt-pre-bf16", "zo-adamm", "shadow", "layers.*", "f32", 0, 0, 0, 0, 0},
    {"opt-post", "stp", "shadow", "!embed_*", "f32", 0, 0, 0, 0, 0},
    /* half GEMM inputs: staging in the stored dtype, rounded activations in the scratch */
    {"opt-pre-f16", "mezo", "shadow", NULL, "half", 0, 0, 0, 0, 0},
    {"opt-pre-bf16", "zo-adamm", "shadow", "layers.*", "half", 0, 0, 0, 0, 0},
    /* first-order: backprop's buffers and scratch, the gradient, the optimizer's state */
    {"opt-pre", "adamw", "shadow", NULL, "f32", 0, 0, 0, 0, 0},
    {"opt-pre-bf16", "sgd", "shadow", "layers.*", "f32", 0, 0, 0, 0, 0},
    {"opt-post", "adam", "shadow", "!embed_*", "f32", 0, 0, 0, 0, 0},
    {"opt-pre-f16", "adamm", "shadow", NULL, "f32", 0, 0, 0, 0, 0},
    {"opt-pre", "adamw", "shadow", NULL, "f32", 1, 0, 0, 0, 0},
    {"opt-post", "sgd", "shadow", NULL, "f32", 1, 0, 0, 0, 0},
    /* --grad-accum: the forwards hold a micro-batch, and so does the plan */
    {"opt-pre", "mezo", "shadow", NULL, "f32", 0, 2, 0, 0, 0},
    {"opt-pre-f16", "mezo", "inplace", NULL, "f32", 0, 4, 0, 0, 0},
    /* LoRA: the adapters alone are staged, perturbed and given state or gradients */
    {"opt-pre", "mezo", "shadow", NULL, "f32", 0, 0, 4, 0, 0},
    {"opt-pre-f16", "zo-adamm", "inplace", NULL, "f32", 0, 0, 8, 0, 0},
    {"opt-pre-bf16", "mezo", "shadow", NULL, "half", 0, 0, 2, 0, 0},
    {"opt-pre", "adamw", "shadow", NULL, "f32", 0, 0, 4, 0, 0},
    {"opt-post", "adam", "shadow", NULL, "f32", 1, 0, 8, 0, 0},
    /* prefix tuning: the prefixes alone are perturbed (read row by row, never staged) and given
     * state or gradients; the extended sequences' buffers and their attention scratch */
    {"opt-pre", "mezo", "shadow", NULL, "f32", 0, 0, 0, 5, 0},
    {"opt-pre-f16", "zo-adamm", "inplace", NULL, "f32", 0, 0, 0, 3, 0},
    {"opt-pre", "adamw", "shadow", NULL, "f32", 0, 0, 0, 5, 0},
    {"opt-post", "sgd", "shadow", NULL, "f32", 1, 0, 0, 4, 0},
    /* prompt tuning: the table alone is staged and trained; sequences N tokens longer */
    {"opt-pre", "mezo", "shadow", NULL, "f32", 0, 0, 0, 0, 4},
    {"opt-pre-f16", "zo-adamm", "inplace", NULL, "f32", 0, 0, 0, 0, 5},
    {"opt-pre-bf16", "mezo", "shadow", NULL, "half", 0, 0, 0, 0, 3},
    {"opt-pre", "adamw", "shadow", NULL, "f32", 0, 0, 0, 0, 4},
    {"opt-post", "adam", "shadow", NULL, "f32", 1, 0, 0, 0, 6},
};

/* The plan as `zotune info --json` prints it. */
static double planned_bytes(const char *zotune, const run_spec *r, int sequences, int seq_len) {
    char dir[1024], cmd[4096], out[1 << 15], lora_args[128] = "";
    fixture_path(dir, sizeof dir, r->fixture, NULL);
    if (r->lora_rank)
        snprintf(lora_args, sizeof lora_args,
                 " --peft lora --lora-rank %d --lora-targets q_proj,k_proj,v_proj,out_proj",
                 r->lora_rank);
    if (r->n_prefix)
        snprintf(lora_args, sizeof lora_args, " --peft prefix --num-prefix %d", r->n_prefix);
    if (r->prompt_tokens)
        snprintf(lora_args, sizeof lora_args, " --peft prompt --num-virtual-tokens %d",
                 r->prompt_tokens);
    snprintf(cmd, sizeof cmd,
             "%s info %s --json --threads 2 --batch-size %d --seq-len %d --optimizer %s --mode %s "
             "--gemm %s%s%s%s%s%s",
             zotune, dir, sequences, seq_len, r->optimizer, r->mode, r->gemm,
             r->checkpoint ? " --checkpoint-activations" : "", r->trainable ? " --trainable '" : "",
             r->trainable ? r->trainable : "", r->trainable ? "'" : "", lora_args);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    if (p) pclose(p);
    cJSON *root = cJSON_Parse(out);
    const cJSON *train = root ? cJSON_GetObjectItem(root, "train_plan") : NULL;
    double total = train ? cJSON_GetObjectItem(train, "total_bytes")->valuedouble : -1.0;
    cJSON_Delete(root);
    return total;
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        const run_spec *r = &runs[i];
        char out[256], model[1024], data[1024];
        make_temp_dir(out, sizeof out, "mem");
        zt_train_options o;
        fixture_run_options(&o, r->fixture, model, sizeof model, data, sizeof data, out);
        o.optimizer = r->optimizer;
        o.mode = strcmp(r->mode, "inplace") == 0 ? ZT_PERTURB_INPLACE : ZT_PERTURB_SHADOW;
        o.trainable = r->trainable;
        o.gemm = r->gemm;
        o.threads = 2;
        o.steps = 12;
        o.save_every = 5;
        o.fo.checkpoint_activations = r->checkpoint;
        o.grad_accum = r->grad_accum;
        zt_lora_options lora;
        zt_lora_options_default(&lora);
        lora.rank = r->lora_rank;
        snprintf(lora.targets, sizeof lora.targets, "q_proj,k_proj,v_proj,out_proj");
        if (r->lora_rank) o.lora = &lora;
        zt_prefix_options prefix;
        zt_prefix_options_default(&prefix);
        prefix.n_prefix = r->n_prefix;
        if (r->n_prefix) o.prefix = &prefix;
        zt_prompt_options prompt;
        zt_prompt_options_default(&prompt);
        prompt.n_virtual = r->prompt_tokens;
        if (r->prompt_tokens) o.prompt = &prompt;
        /* as `zotune train` and `zotune info` take it: PyTorch's SGD keeps no momentum unasked */
        if (strcmp(r->optimizer, "sgd") == 0) o.hp.momentum = 0.0;
        zt_train_result res;
        ZT_REQUIRE_OK(zt_train(&o, &res));
        /* score.jsonl: batch 4 of LM records, the longest 20 tokens */
        const int accum = r->grad_accum > 1 ? r->grad_accum : 1;
        double plan = planned_bytes(argv[1], r, (4 + accum - 1) / accum, 20);
        printf("%-13s %-10s %-7s gemm %-4s trainable %-10s%s grad-accum %d: measured peak %zu "
               "bytes, plan %.0f\n",
               r->fixture, r->optimizer, r->mode, r->gemm,
               r->lora_rank       ? "LoRA"
               : r->n_prefix      ? "prefix"
               : r->prompt_tokens ? "prompt"
               : r->trainable     ? r->trainable
                                  : "all",
               r->checkpoint ? " checkpointed" : "", accum, res.peak_bytes, plan);
        ZT_CHECK((double)res.peak_bytes == plan, "%s %s %s: peak %zu != plan %.0f", r->fixture,
                 r->optimizer, r->mode, res.peak_bytes, plan);
        remove_run_dir(out);
    }
    return zt_test_finish("test_memory_plan");
}
