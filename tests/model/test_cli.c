/* The zotune binary end to end: `score --json` reproduces HF's per-example losses (fixtures'
 * score_reference.jsonl, from OPTForCausalLM with labels), `info --json` HF's parameter count,
 * and bad input gets a clear error naming the file and line. argv[1] is the zotune binary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cpu/cpu_backend.h"
#include "fixture.h"
#include "zt_test.h"

static const char *zotune;

static void check_score(const char *fixture) {
    char dir[1024], data[1024], ref[1024], cmd[4096];
    static char out[1 << 16];
    fixture_path(dir, sizeof dir, fixture, NULL);
    fixture_path(data, sizeof data, fixture, "score.jsonl");
    fixture_path(ref, sizeof ref, fixture, "score_reference.jsonl");
    snprintf(cmd, sizeof cmd, "%s score %s %s --json --batch-size 4", zotune, dir, data);
    int rc = zt_test_run(cmd, out, sizeof out);
    ZT_CHECK(rc == 0, "%s: exit %d", cmd, rc);
    cJSON *root = cJSON_Parse(out);
    ZT_CHECK(root != NULL, "score --json printed no JSON: %s", out);
    if (!root) return;
    const cJSON *examples = cJSON_GetObjectItem(root, "examples");
    FILE *f = fopen(ref, "r");
    char line[1024];
    int i = 0;
    double want_nll = 0.0, want_total_tokens = 0.0;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *want = cJSON_Parse(line);
        const cJSON *got = cJSON_GetArrayItem(examples, i);
        double want_loss = cJSON_GetObjectItem(want, "loss")->valuedouble;
        int want_tokens = cJSON_GetObjectItem(want, "n_tokens")->valueint;
        want_nll += want_loss * want_tokens;
        want_total_tokens += want_tokens;
        ZT_CHECK(got && cJSON_GetObjectItem(got, "n_tokens")->valueint == want_tokens,
                 "%s line %d: token count", fixture, i + 1);
        if (got)
            ZT_CHECK_CLOSE(cJSON_GetObjectItem(got, "loss")->valuedouble, want_loss, 0.0, 1e-5,
                           "%s line %d loss vs HF", fixture, i + 1);
        cJSON_Delete(want);
        i++;
    }
    if (f) fclose(f);
    ZT_CHECK(i == cJSON_GetArraySize(examples) && i > 0, "%s: %d references, %d scored", fixture, i,
             cJSON_GetArraySize(examples));
    /* the summary is the token-weighted mean of HF's per-example losses, and its exponential */
    const cJSON *mean = cJSON_GetObjectItem(root, "mean_nll");
    const cJSON *perplexity = cJSON_GetObjectItem(root, "perplexity");
    double want_mean = want_nll / want_total_tokens;
    ZT_CHECK(cJSON_IsNumber(mean) && cJSON_IsNumber(perplexity), "%s: no mean_nll/perplexity",
             fixture);
    if (cJSON_IsNumber(mean) && cJSON_IsNumber(perplexity)) {
        ZT_CHECK_CLOSE(mean->valuedouble, want_mean, 0.0, 1e-5, "%s token-weighted mean NLL",
                       fixture);
        ZT_CHECK_CLOSE(perplexity->valuedouble, exp(want_mean), 0.0, 1e-5, "%s perplexity",
                       fixture);
    }
    cJSON_Delete(root);
}

/* reference_fixture: where HF's count is recorded (the variant spelling shares opt-pre's). */
static void check_info(const char *fixture, const char *reference_fixture) {
    char dir[1024], ref_path[1024], cmd[4096];
    static char out[1 << 16];
    fixture_path(dir, sizeof dir, fixture, NULL);
    fixture_path(ref_path, sizeof ref_path, reference_fixture, "reference.safetensors");
    snprintf(cmd, sizeof cmd, "%s info %s --json", zotune, dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s failed", cmd);
    cJSON *root = cJSON_Parse(out);
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));
    double want = strtod(zt_st_metadata(ref, "num_parameters"), NULL);
    const cJSON *got = root ? cJSON_GetObjectItem(root, "parameters") : NULL;
    ZT_CHECK(got && got->valuedouble == want, "%s: info parameters %g, HF %g", fixture,
             got ? got->valuedouble : -1.0, want);
    zt_st_close(ref);
    cJSON_Delete(root);
}

static void expect_failure(const char *args, int want_rc, const char *needle) {
    char cmd[4096];
    static char out[1 << 16];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", zotune, args);
    int rc = zt_test_run(cmd, out, sizeof out);
    ZT_CHECK(rc == want_rc, "'%s': exit %d, want %d", args, rc, want_rc);
    ZT_CHECK(strstr(out, needle) != NULL, "'%s': output '%s' lacks '%s'", args, out, needle);
}

/* --gemm: bad values and the CPU's missing TF32 are errors naming the option; `info` reports the
 * mode; the step log records where losses were computed, and resuming elsewhere warns. */
static void check_gemm_option(void) {
    char dir[1024], data[1024], args[4096], out_dir[256], cmd[4096];
    static char out[1 << 16];
    fixture_path(dir, sizeof dir, "opt-pre-f16", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    snprintf(args, sizeof args, "info %s --gemm fp8", dir);
    expect_failure(args, 2, "--gemm fp8: expected auto, f32, tf32 or half");
    snprintf(args, sizeof args, "score %s %s --gemm tf32", dir, data);
    expect_failure(args, 1, "--gemm tf32: the cpu backend has no TF32");
    snprintf(cmd, sizeof cmd, "%s info %s --json --gemm half", zotune, dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s failed", cmd);
    cJSON *root = cJSON_Parse(out);
    const cJSON *gemm = root ? cJSON_GetObjectItem(root, "gemm") : NULL;
    ZT_CHECK(cJSON_IsString(gemm) && strcmp(gemm->valuestring, "half") == 0,
             "info --gemm half reports %s", cJSON_IsString(gemm) ? gemm->valuestring : "nothing");
    cJSON_Delete(root);

    snprintf(out_dir, sizeof out_dir, "/tmp/zt_cli_gemm_%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && %s train --model %s --train %s --output %s --steps 3 --batch-size 2 "
             "--quiet 2>&1 && head -1 %s/steplog.jsonl",
             out_dir, zotune, dir, data, out_dir, out_dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s failed: %s", cmd, out);
    /* the kernels the zotune process picks are the ones this process picks on this CPU, and the
     * head blocks a CPU backend has */
    char compute[160];
    const char *kernels = zt_cpu_blas_gemm_kernels();
    zt_backend *cpu = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &cpu));
    ZT_CHECK(cpu->head_vocab_chunk > 0, "the CPU backend has no head blocks");
    snprintf(compute, sizeof compute, "\"compute\":\"cpu, gemm f32%s%s, head blocks %d\"",
             kernels ? ", " : "", kernels ? kernels : "", cpu->head_vocab_chunk);
    zt_backend_destroy(cpu);
    ZT_CHECK(strstr(out, compute) != NULL, "step log header lacks %s: %s", compute, out);
    /* the same --gemm on other kernels (as on another CPU) warns too */
    snprintf(
        cmd, sizeof cmd,
        "sed -i '1s/\"compute\":\"[^\"]*\"/\"compute\":\"cpu, gemm f32, OpenBLAS Elsewhere\"/' "
        "%s/steplog.jsonl && %s train --model %s --train %s --output %s --steps 3 "
        "--batch-size 2 --quiet --resume 2>&1",
        out_dir, zotune, dir, data, out_dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s failed: %s", cmd, out);
    ZT_CHECK(strstr(out, "warning") &&
                 strstr(out, "was started on cpu, gemm f32, OpenBLAS Elsewhere") &&
                 (!kernels || strstr(out, kernels)),
             "resume on other GEMM kernels did not warn: '%s'", out);
    snprintf(cmd, sizeof cmd,
             "%s train --model %s --train %s --output %s --steps 3 --batch-size 2 --quiet "
             "--resume --gemm half 2>&1",
             zotune, dir, data, out_dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s failed: %s", cmd, out);
    ZT_CHECK(strstr(out, "warning") && strstr(out, "was started on cpu, gemm f32") &&
                 strstr(out, "computes on cpu, gemm half"),
             "resume under another --gemm did not warn: '%s'", out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", out_dir);
    ZT_CHECK(system(cmd) == 0, "%s", cmd);
}

static char *file_bytes(const char *path, long *n);

/* Numeric options are integers of their full range, bounded where a size would overflow or a
 * thread count would swamp the machine; a seed of 2^64 - 1 is recorded exactly. */
static void check_numeric_options(const char *dir) {
    char args[4096], data[1024], out[256], path[600];
    expect_failure("train --threads 100000", 2, "--threads expects 1 ..");
    expect_failure("train --threads 0", 2, "--threads expects 1 ..");
    expect_failure("eval --threads -3", 2, "--threads expects 1 ..");
    expect_failure("train --seed 1.5", 2, "--seed expects an integer in [0, 2^64)");
    expect_failure("train --seed -1", 2, "--seed expects an integer in [0, 2^64)");
    expect_failure("train --seed nan", 2, "--seed expects an integer in [0, 2^64)");
    expect_failure("train --seed 18446744073709551616", 2, "--seed expects an integer");
    snprintf(args, sizeof args, "info %s --seq-len 2147483647", dir);
    expect_failure(args, 2, "tokens per forward");
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    snprintf(out, sizeof out, "/tmp/zt_cli_seed_%d", (int)getpid());
    snprintf(args, sizeof args, "train --model %s --train %s --output %s --batch-size 1073741824",
             dir, data, out);
    expect_failure(args, 2, "--batch-size 1073741824: must be in 1 ..");
    snprintf(args, sizeof args,
             "%s train --model %s --train %s --output %s --steps 1 --batch-size 2 --threads 1 "
             "--quiet --seed 18446744073709551615 2>&1",
             zotune, dir, data, out);
    static char printed[1 << 16];
    ZT_CHECK(zt_test_run(args, printed, sizeof printed) == 0, "a run with seed 2^64 - 1: %s",
             printed);
    snprintf(path, sizeof path, "%s/steplog.jsonl", out);
    long n = 0;
    char *log = file_bytes(path, &n);
    ZT_CHECK(log && strstr(log, "\"run_seed\":\"ffffffffffffffff\""),
             "seed 2^64 - 1 not recorded exactly in %s", path);
    free(log);
    snprintf(args, sizeof args, "rm -rf '%s'", out);
    if (system(args) != 0) fprintf(stderr, "warning: could not remove %s\n", out);
}

/* Bytes of a file, NUL-terminated so that it can be searched as a string (NULL when
 * unreadable); *n its length. */
static char *file_bytes(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = *n >= 0 ? malloc((size_t)*n + 1) : NULL;
    if (bytes && fread(bytes, 1, (size_t)*n, f) == (size_t)*n) {
        bytes[*n] = '\0';
    } else {
        free(bytes);
        bytes = NULL;
    }
    fclose(f);
    return bytes;
}

/* A run never writes into its inputs, whatever the spelling: --output equal to --model (as
 * "DIR/.", or through a symlink), inside it, or holding the --train file, and replay onto its
 * base, are all refused, and every file of the model directory keeps its bytes. */
static void check_output_apart(const char *demo_dir) {
    static const char *const names[] = {"config.json", "model.safetensors", "tokenizer.json",
                                        "vocab.json", "merges.txt"};
    enum { N_NAMES = sizeof names / sizeof names[0] };
    char top[] = "/tmp/zt_apart_XXXXXX", cmd[4096], args[4096], base[256], path[600];
    ZT_REQUIRE(mkdtemp(top) != NULL, "mkdtemp");
    snprintf(base, sizeof base, "%s/base", top);
    snprintf(cmd, sizeof cmd,
             "cp -r '%s' '%s' && ln -s base '%s/link' && mkdir '%s/out' && "
             "cp '%s/../task/train.jsonl' '%s/out/task.jsonl'",
             demo_dir, base, top, top, demo_dir, top);
    ZT_REQUIRE(system(cmd) == 0, "%s", cmd);
    char *before[N_NAMES];
    long sizes[N_NAMES];
    for (int i = 0; i < N_NAMES; i++) {
        snprintf(path, sizeof path, "%s/%s", base, names[i]);
        before[i] = file_bytes(path, &sizes[i]);
        ZT_REQUIRE(before[i] != NULL, "reading %s", path);
    }
    const char *train = "--steps 1 --batch-size 2 --threads 1 --quiet";
    snprintf(args, sizeof args, "train --model %s --train %s/out/task.jsonl --output %s/. %s", base,
             top, base, train);
    expect_failure(args, 2, "is the same place as --model");
    snprintf(args, sizeof args, "train --model %s --train %s/out/task.jsonl --output %s/link %s",
             base, top, top, train);
    expect_failure(args, 2, "is the same place as --model");
    snprintf(args, sizeof args,
             "train --model %s --train %s/out/task.jsonl --output %s/run/../sub %s", base, top,
             base, train);
    expect_failure(args, 2, "lies inside --model");
    snprintf(args, sizeof args, "train --model %s --train %s/out/task.jsonl --output %s/out %s",
             base, top, top, train);
    expect_failure(args, 2, "contains --train");
    snprintf(args, sizeof args, "replay %s %s/out/task.jsonl %s/link", base, top, top);
    expect_failure(args, 2, "is the same place as BASE_DIR");
    snprintf(path, sizeof path, "%s/sub", base);
    ZT_CHECK(access(path, F_OK) != 0, "a refused run created %s", path);
    for (int i = 0; i < N_NAMES; i++) {
        long n = 0;
        snprintf(path, sizeof path, "%s/%s", base, names[i]);
        char *after = file_bytes(path, &n);
        ZT_CHECK(after && n == sizes[i] && memcmp(after, before[i], (size_t)n) == 0,
                 "%s changed (%ld bytes, was %ld)", names[i], n, sizes[i]);
        free(after);
        free(before[i]);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", top);
}

/* Usage errors exit 2 whichever layer finds them (a missing option, a bad value, an option the
 * optimizer cannot honour); every S2P constant has a flag, checked by the optimizer. */
static void check_usage_errors(void) {
    char dir[1024], data[1024], args[4096];
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    snprintf(args, sizeof args, "train --train %s --output /tmp/zt_cli_usage", data);
    expect_failure(args, 2, "--model is required");
    static const struct {
        const char *optimizer, *dist, *needle;
    } refused[] = {
        {"zo-signsgd", "rademacher",
         "--dist rademacher: zo-signsgd draws its directions uniformly"},
        {"zo-adamm", "gaussian", "--dist gaussian: zo-adamm"},
        {"zo-sgd-fd", "rademacher", "--dist rademacher: zo-sgd-fd"},
        {"ga-sign", "gaussian",
         "--dist gaussian: ga-sign draws its directions from the Rademacher"},
        {"as2p-sign", "sphere", "--dist sphere: as2p-sign"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(args, sizeof args,
                 "train --model %s --train %s --output /tmp/zt_cli_usage --optimizer %s --dist %s",
                 dir, data, refused[i].optimizer, refused[i].dist);
        expect_failure(args, 2, refused[i].needle);
    }
    static const struct {
        const char *option, *needle;
    } s2p[] = {
        {"--s2p-option 2 --s2p-l 0", "--s2p-l 0"},     {"--s2p-option 3 --s2p-b -1", "--s2p-b -1"},
        {"--s2p-option 3 --s2p-l1 0", "--s2p-l1 0"},   {"--s2p-option 4 --s2p-a 0", "--s2p-a 0"},
        {"--s2p-option 4 --s2p-l0 -2", "--s2p-l0 -2"},
    };
    for (size_t i = 0; i < sizeof s2p / sizeof s2p[0]; i++) {
        snprintf(args, sizeof args,
                 "train --model %s --train %s --output /tmp/zt_cli_usage --optimizer s2p %s", dir,
                 data, s2p[i].option);
        expect_failure(args, 2, s2p[i].needle);
    }
    /* what an optimizer does honour runs: its own distribution named explicitly, S2P constants */
    static char cmd[8192], out[1 << 16];
    snprintf(
        cmd, sizeof cmd,
        "rm -rf /tmp/zt_cli_usage && %s train --model %s --train %s --output /tmp/zt_cli_usage "
        "--optimizer zo-signsgd --dist sphere --steps 2 --batch-size 2 --quiet 2>&1 && rm -rf "
        "/tmp/zt_cli_usage && %s train --model %s --train %s --output /tmp/zt_cli_usage "
        "--optimizer s2p --s2p-option 4 --s2p-a 2 --s2p-b 3 --s2p-l0 0.5 --s2p-l1 0 --steps 2 "
        "--batch-size 2 --quiet 2>&1 && grep -c '\"--s2p-a\":\"2\"' "
        "/tmp/zt_cli_usage/steplog.jsonl",
        zotune, dir, data, zotune, dir, data);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0 && strstr(out, "1"),
             "an honoured --dist and S2P constants: %s", out);
    /* AS2P's window over the steps so far (docs/spec.md §9.2, B2's alternative) is reachable and
     * recorded */
    snprintf(cmd, sizeof cmd,
             "rm -rf /tmp/zt_cli_usage && %s train --model %s --train %s --output "
             "/tmp/zt_cli_usage --optimizer as2p --as2p-window-elapsed --steps 2 --batch-size 2 "
             "--quiet 2>&1 && grep -c '\"as2p window over elapsed steps\":\"1\"' "
             "/tmp/zt_cli_usage/steplog.jsonl",
             zotune, dir, data);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0 && strstr(out, "1"),
             "--as2p-window-elapsed: %s", out);
    ZT_CHECK(system("rm -rf /tmp/zt_cli_usage") == 0, "cleanup");
}

/* --list-optimizers gives each optimizer's passes per step, state copies, allowed --dist and
 * flags, and every flag it names is one `train --help` documents. */
static void check_optimizer_list(void) {
    static char cmd[512], list[1 << 16], help[1 << 16];
    snprintf(cmd, sizeof cmd, "%s train --list-optimizers 2>&1", zotune);
    ZT_REQUIRE(zt_test_run(cmd, list, sizeof list) == 0, "--list-optimizers failed");
    snprintf(cmd, sizeof cmd, "%s train --help 2>&1", zotune);
    ZT_REQUIRE(zt_test_run(cmd, help, sizeof help) == 0, "train --help failed");
    const char *adamm = strstr(list, "  zo-adamm ");
    ZT_CHECK(adamm && strstr(adamm, "3 f32 state copies, --dist sphere") &&
                 strstr(adamm, "--beta2 --adam-eps"),
             "zo-adamm's entry: %.300s", adamm ? adamm : list);
    const char *stp = strstr(list, "  stp ");
    ZT_CHECK(stp && strstr(stp, "3 forward passes"), "stp evaluates three points");
    int flags = 0, unknown = 0;
    for (const char *at = strstr(list, "--"); at; at = strstr(at + 2, "--")) {
        char flag[64];
        size_t n = strcspn(at, " \n,;()");
        if (n >= sizeof flag) continue;
        memcpy(flag, at, n);
        flag[n] = '\0';
        char spelled[80];
        snprintf(spelled, sizeof spelled, "%s ", flag);
        flags++;
        if (!strstr(help, spelled)) {
            unknown++;
            fprintf(stderr, "--list-optimizers names %s, which train --help lacks\n", flag);
        }
    }
    ZT_CHECK(flags > 100 && unknown == 0, "%d of %d listed flags unknown to train --help", unknown,
             flags);
}

/* info plans with --directions (K = 2Q for MeZO) and warns when --seq-len exceeds the model's
 * positions. */
static void check_info_plan_options(void) {
    char dir[1024];
    static char cmd[2048], out[1 << 16];
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    snprintf(cmd, sizeof cmd, "%s info %s --seq-len 8 --optimizer mezo --directions 3 2>&1", zotune,
             dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0 && strstr(out, "K = 6 variants") &&
                 !strstr(out, "warning"),
             "info --directions 3: %s", out);
    snprintf(cmd, sizeof cmd, "%s info %s --seq-len 100000 2>&1", zotune, dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0 &&
                 strstr(out, "warning: --seq-len 100000 is longer"),
             "info with --seq-len past the positions: %s", out);
    snprintf(cmd, sizeof cmd, "%s info %s --optimizer mezo --directions 17 2>&1", zotune, dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2 && strstr(out, "--directions 17"),
             "info --directions 17: %s", out);
}

/* info without weights: the same plan from config.json alone as from the checkpoint (a copy of
 * each fixture's config.json, its dtype given by --dtype where config.json names none), and an
 * OPT-13B config.json planned with HF's parameter count, computed here from the shapes. */
static void check_info_config_only(void) {
    char dir[1024], tmp[128], args[4096];
    static char cmd[8192], loaded[1 << 16], planned[1 << 16];
    snprintf(tmp, sizeof tmp, "/tmp/zt_cli_config_%d", (int)getpid());
    static const struct {
        const char *fixture, *dtype;
    } cases[] = {{"opt-pre", ""},
                 {"opt-post", ""},
                 {"opt-pre-f16", "--dtype f16"},
                 {"opt-pre-bf16", "--dtype bfloat16"}};
    for (int i = 0; i < 4; i++) {
        fixture_path(dir, sizeof dir, cases[i].fixture, NULL);
        const char *plan = "--optimizer zo-adamm --batch-size 3 --seq-len 20 --json";
        snprintf(cmd, sizeof cmd, "%s info %s %s", zotune, dir, plan);
        ZT_REQUIRE(zt_test_run(cmd, loaded, sizeof loaded) == 0, "%s", cmd);
        snprintf(cmd, sizeof cmd,
                 "rm -rf %s && mkdir %s && cp %s/config.json %s/ && %s info %s %s %s", tmp, tmp,
                 dir, tmp, zotune, tmp, plan, cases[i].dtype);
        ZT_CHECK(zt_test_run(cmd, planned, sizeof planned) == 0, "%s: %s", cmd, planned);
        cJSON *a = cJSON_Parse(loaded), *b = cJSON_Parse(planned);
        ZT_REQUIRE(a && b, "info --json output");
        ZT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a, "weights")) &&
                     cJSON_IsFalse(cJSON_GetObjectItem(b, "weights")),
                 "%s: \"weights\" should say which plan had weights", cases[i].fixture);
        cJSON_DeleteItemFromObject(a, "model");
        cJSON_DeleteItemFromObject(b, "model");
        cJSON_DeleteItemFromObject(a, "weights");
        cJSON_DeleteItemFromObject(b, "weights");
        ZT_CHECK(cJSON_Compare(a, b, 1), "%s: the plan from config.json alone differs:\n%s\n%s",
                 cases[i].fixture, loaded, planned);
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
    /* OPT-13B (facebook/opt-13b's config.json): 12.85 B parameters, f16 */
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir %s", tmp, tmp);
    ZT_REQUIRE(system(cmd) == 0, "%s", cmd);
    char config[256];
    snprintf(config, sizeof config, "%s/config.json", tmp);
    FILE *f = fopen(config, "w");
    ZT_REQUIRE(f != NULL, "%s", config);
    fputs("{\"model_type\": \"opt\", \"activation_function\": \"relu\", \"vocab_size\": 50272, "
          "\"hidden_size\": 5120, \"num_hidden_layers\": 40, \"num_attention_heads\": 40, "
          "\"ffn_dim\": 20480, \"max_position_embeddings\": 2048, \"word_embed_proj_dim\": 5120, "
          "\"do_layer_norm_before\": true, \"torch_dtype\": \"float16\", \"bos_token_id\": 2, "
          "\"eos_token_id\": 2, \"pad_token_id\": 1}\n",
          f);
    fclose(f);
    const double V = 50272, h = 5120, L = 40, F = 20480, P = 2048;
    const double per_layer = 4 * (h * h + h) + 2 * (2 * h) + (h * F + F) + (F * h + h);
    const double want = V * h + (P + 2) * h + L * per_layer + 2 * h;
    for (int as_file = 0; as_file < 2; as_file++) {
        snprintf(cmd, sizeof cmd,
                 "%s info %s --optimizer mezo --batch-size 16 --seq-len 512 --json", zotune,
                 as_file ? config : tmp);
        ZT_CHECK(zt_test_run(cmd, planned, sizeof planned) == 0, "%s: %s", cmd, planned);
        cJSON *o = cJSON_Parse(planned);
        const cJSON *params = cJSON_GetObjectItem(o, "parameters");
        const cJSON *plan = cJSON_GetObjectItem(o, "train_plan");
        const cJSON *weights = cJSON_GetObjectItem(plan, "weights_bytes");
        const cJSON *dtype = cJSON_GetObjectItem(o, "dtype");
        ZT_CHECK(cJSON_IsNumber(params) && params->valuedouble == want,
                 "OPT-13B from config.json: %.0f parameters, want %.0f",
                 cJSON_IsNumber(params) ? params->valuedouble : -1.0, want);
        /* f16, each of the 2 + 16 L + 2 tensors padded to 64 bytes at most */
        ZT_CHECK(cJSON_IsNumber(weights) && weights->valuedouble >= 2 * want &&
                     weights->valuedouble < 2 * want + 64 * (4 + 16 * L) && cJSON_IsString(dtype) &&
                     strcmp(dtype->valuestring, "F16") == 0,
                 "OPT-13B weights planned at %.0f bytes (%s)",
                 cJSON_IsNumber(weights) ? weights->valuedouble : -1.0, planned);
        cJSON_Delete(o);
    }
    snprintf(cmd, sizeof cmd, "%s info %s 2>&1", zotune, tmp);
    ZT_CHECK(zt_test_run(cmd, planned, sizeof planned) == 0 &&
                 strstr(planned, "weights        none"),
             "the text plan says there are no weights: %s", planned);
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    snprintf(args, sizeof args, "info %s --dtype f16", dir);
    expect_failure(args, 2, "holds a checkpoint");
    snprintf(args, sizeof args, "info %s --dtype f8", tmp);
    expect_failure(args, 2, "--dtype 'f8'");
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    ZT_CHECK(system(cmd) == 0, "cleanup");
}

/* One spelling for one thing: score, info and replay take --model (--data, --log, --output)
 * as eval and train do, with the positional forms kept; the two forms give the same result. */
static void check_input_aliases(void) {
    char dir[1024], data[1024], out_dir[128], args[4096];
    static char cmd[8192], positional[1 << 16], named[1 << 16];
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    snprintf(cmd, sizeof cmd, "%s score %s %s --json", zotune, dir, data);
    int rc_positional = zt_test_run(cmd, positional, sizeof positional);
    snprintf(cmd, sizeof cmd, "%s score --data %s --json --model %s", zotune, data, dir);
    int rc_named = zt_test_run(cmd, named, sizeof named);
    ZT_CHECK(rc_positional == 0 && rc_named == 0 && strcmp(positional, named) == 0,
             "score --model/--data differs from the positional form");
    snprintf(cmd, sizeof cmd, "%s info --model %s --json", zotune, dir);
    ZT_CHECK(zt_test_run(cmd, named, sizeof named) == 0 && strstr(named, "\"parameters\""),
             "info --model: %s", named);
    snprintf(out_dir, sizeof out_dir, "/tmp/zt_cli_alias_%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && %s train --model %s --train %s --output %s/run --steps 2 --batch-size 2 "
             "--quiet 2>&1 && %s replay --model %s --log %s/run/steplog.jsonl --output %s/r 2>&1",
             out_dir, zotune, dir, data, out_dir, zotune, dir, out_dir, out_dir);
    ZT_CHECK(zt_test_run(cmd, named, sizeof named) == 0 && strstr(named, "replayed 2 steps"),
             "replay --model --log --output: %s", named);
    snprintf(args, sizeof args, "score --model %s", dir);
    expect_failure(args, 2, "--data is required");
    snprintf(args, sizeof args, "replay --model %s --log x", dir);
    expect_failure(args, 2, "--output is required");
    snprintf(args, sizeof args, "info --model %s %s/other", dir, dir);
    expect_failure(args, 2, "name different inputs");
    snprintf(cmd, sizeof cmd, "rm -rf %s", out_dir);
    ZT_CHECK(system(cmd) == 0, "cleanup");
}

/* score reads every record kind eval reads: LM text scores as eval's loss does (token-weighted),
 * a generation record on its completion, a classification record on its labelled candidate,
 * which is the LM record of that candidate as completion. */
static void check_score_task_records(const char *demo_dir) {
    static const struct {
        const char *records;
        int compare_eval; /* 1: eval's loss is the token-weighted mean_nll */
    } cases[] = {
        {"{\"text\": \"The movie was a delight from start to finish.\"}\n"
         "{\"text\": \"It was dull and far too long.\"}\n",
         1},
        {"{\"prompt\": \"The film was\", \"answers\": [\"great\", \"fine\"]}\n"
         "{\"prompt\": \"The plot was\", \"answers\": [\"thin\"]}\n",
         1},
        {"{\"prompt\": \"The film was\", \"candidates\": [\" terrible\", \" great\"], \"label\": "
         "1}\n"
         "{\"prompt\": \"The plot was\", \"candidates\": [\" thin\", \" rich\"], \"label\": 0}\n",
         0},
        {"{\"prompt\": \"The film was\", \"completion\": \" great\"}\n"
         "{\"prompt\": \"The plot was\", \"completion\": \" thin\"}\n",
         1},
    };
    char data[128];
    static char cmd[4096], out[1 << 16];
    snprintf(data, sizeof data, "/tmp/zt_cli_score_%d.jsonl", (int)getpid());
    double mean[4] = {0};
    for (int i = 0; i < 4; i++) {
        FILE *f = fopen(data, "w");
        ZT_REQUIRE(f && fputs(cases[i].records, f) >= 0 && fclose(f) == 0, "%s", data);
        snprintf(cmd, sizeof cmd, "%s score --model %s --data %s --json", zotune, demo_dir, data);
        ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "score of text records (case %d): %s", i,
                 out);
        cJSON *score = cJSON_Parse(out);
        const cJSON *nll = cJSON_GetObjectItem(score, "mean_nll");
        ZT_CHECK(cJSON_IsNumber(nll) &&
                     cJSON_GetArraySize(cJSON_GetObjectItem(score, "examples")) == 2,
                 "case %d: %s", i, out);
        mean[i] = cJSON_IsNumber(nll) ? nll->valuedouble : NAN;
        cJSON_Delete(score);
        if (!cases[i].compare_eval) continue;
        snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --json", zotune, demo_dir, data);
        ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "eval (case %d): %s", i, out);
        cJSON *eval = cJSON_Parse(out);
        const cJSON *loss = cJSON_GetObjectItem(eval, "loss");
        ZT_CHECK(cJSON_IsNumber(loss), "eval --json: %s", out);
        if (cJSON_IsNumber(loss))
            /* score pads right, eval left: other GEMM shapes, so f32 rounding apart */
            ZT_CHECK_CLOSE(mean[i], loss->valuedouble, 0, 1e-6, "case %d: score vs eval", i);
        cJSON_Delete(eval);
    }
    ZT_CHECK_CLOSE(mean[2], mean[3], 0, 1e-12,
                   "a classification record scores as its labelled candidate's completion");
    char args[1024];
    snprintf(args, sizeof args, "score --model %s --data %s --bos gpt", demo_dir, data);
    expect_failure(args, 2, "--bos 'gpt'");
    remove(data);
}

/* info --train plans at the shape train takes from the same data and options (the demo's 16
 * examples x 2 candidates, generation with its KV cache): the plan's total is the peak train
 * reports, to the byte. */
static void check_info_from_data(const char *demo_dir) {
    char gen[128], out_dir[128], args[4096];
    static char cmd[8192], out[1 << 16];
    snprintf(gen, sizeof gen, "/tmp/zt_cli_shape_%d.jsonl", (int)getpid());
    snprintf(out_dir, sizeof out_dir, "/tmp/zt_cli_shape_%d", (int)getpid());
    FILE *f = fopen(gen, "w");
    ZT_REQUIRE(f != NULL, "%s", gen);
    fputs("{\"prompt\": \"The film was\", \"answers\": [\"great\"]}\n"
          "{\"prompt\": \"It was a joy and the plot was\", \"answers\": [\"terrible\", \"bad\"]}\n"
          "{\"prompt\": \"The plot\", \"answers\": [\"thin\"]}\n",
          f);
    fclose(f);
    char train[1024], dev[1024];
    snprintf(train, sizeof train, "%s/../task/train.jsonl", demo_dir);
    snprintf(dev, sizeof dev, "%s/../task/dev.jsonl", demo_dir);
    const struct {
        const char *train, *eval, *options;
        int cache; /* the plan holds a KV cache */
    } cases[] = {
        {train, dev, "--batch-size 16", 0},
        {gen, gen, "--batch-size 2 --objective f1", 1},
        {gen, NULL, "--batch-size 2", 0},
        {gen, gen, "--batch-size 3 --optimizer zo-adamm", 1},
    };
    for (int i = 0; i < 4; i++) {
        char eval[1200] = "";
        if (cases[i].eval) snprintf(eval, sizeof eval, "--eval %s", cases[i].eval);
        snprintf(cmd, sizeof cmd, "%s info %s --train %s %s %s --json", zotune, demo_dir,
                 cases[i].train, eval, cases[i].options);
        ZT_REQUIRE(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
        cJSON *o = cJSON_Parse(out);
        const cJSON *plan = cJSON_GetObjectItem(o, "train_plan");
        const cJSON *total = cJSON_GetObjectItem(plan, "total_bytes");
        const cJSON *cache = cJSON_GetObjectItem(plan, "kv_cache_bytes");
        ZT_REQUIRE(cJSON_IsNumber(total) && cJSON_IsNumber(cache), "info --train: %s", out);
        double planned = total->valuedouble;
        ZT_CHECK((cache->valuedouble > 0) == cases[i].cache, "case %d: KV cache %.0f bytes", i,
                 cache->valuedouble);
        cJSON_Delete(o);
        snprintf(cmd, sizeof cmd,
                 "rm -rf %s && %s train --model %s --train %s %s --output %s --steps 2 "
                 "--eval-every 0 %s 2>&1",
                 out_dir, zotune, demo_dir, cases[i].train, eval, out_dir, cases[i].options);
        ZT_REQUIRE(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
        const char *peak = strstr(out, "; peak ");
        double measured = peak ? strtod(peak + 7, NULL) : -1.0;
        ZT_CHECK(measured == planned, "case %d: info planned %.0f bytes, train peaked at %.0f", i,
                 planned, measured);
    }
    snprintf(args, sizeof args, "info %s --train %s --seq-len 40", demo_dir, gen);
    expect_failure(args, 2, "--seq-len and --train");
    snprintf(args, sizeof args, "info %s --eval %s", demo_dir, gen);
    expect_failure(args, 2, "give --train");
    remove(gen);
    snprintf(cmd, sizeof cmd, "rm -rf %s", out_dir);
    ZT_CHECK(system(cmd) == 0, "cleanup");
}

/* F1 and EM are printed in percent, with the sign, by eval, by train's evaluation lines and by
 * train's summary, so no two places disagree by a factor of 100. */
static void check_f1_units(const char *demo_dir) {
    char data[128], out_dir[128];
    static char cmd[8192], out[1 << 16];
    snprintf(data, sizeof data, "/tmp/zt_cli_f1_%d.jsonl", (int)getpid());
    snprintf(out_dir, sizeof out_dir, "/tmp/zt_cli_f1_%d", (int)getpid());
    FILE *f = fopen(data, "w");
    ZT_REQUIRE(f != NULL, "%s", data);
    fputs("{\"prompt\": \"The film was\", \"answers\": [\"great\"]}\n"
          "{\"prompt\": \"It was\", \"answers\": [\"terrible\", \"bad\"]}\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s 2>&1", zotune, demo_dir, data);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0 && strstr(out, "  F1 ") &&
                 strstr(out, "%  EM ") && out[strlen(out) - 2] == '%',
             "eval prints F1/EM without percent signs: %s", out);
    /* --json gives them in percent too: the text's two decimals of the same numbers */
    const char *f1_text = strstr(out, "  F1 "), *em_text = strstr(out, "  EM ");
    double f1_shown = f1_text ? strtod(f1_text + 5, NULL) : -1.0;
    double em_shown = em_text ? strtod(em_text + 5, NULL) : -1.0;
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --json", zotune, demo_dir, data);
    ZT_REQUIRE(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
    cJSON *o = cJSON_Parse(out);
    const cJSON *f1 = cJSON_GetObjectItem(o, "f1"), *em = cJSON_GetObjectItem(o, "exact_match");
    ZT_CHECK(cJSON_IsNumber(f1) && cJSON_IsNumber(em) &&
                 fabs(f1->valuedouble - f1_shown) <= 0.005 &&
                 fabs(em->valuedouble - em_shown) <= 0.005,
             "eval --json F1/EM are not the percent the text shows (%.2f%%, %.2f%%): %s", f1_shown,
             em_shown, out);
    cJSON_Delete(o);
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && %s train --model %s --train %s --eval %s --output %s --steps 1 "
             "--batch-size 2 --log-every 0 2>&1",
             out_dir, zotune, demo_dir, data, data, out_dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0 && strstr(out, "% before, ") &&
                 strstr(out, "% after training") && strstr(out, "best dev f1 ") &&
                 strstr(out, "%, EM ") && strstr(strstr(out, "best dev f1 "), "% at step"),
             "train prints F1 without percent signs: %s", out);
    /* metrics.jsonl's eval_f1 is in percent: the summary's "before" value */
    const char *before = strstr(out, "dev F1: ");
    double f1_before = before ? strtod(before + 8, NULL) : -1.0;
    char metrics[256], line[1024];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out_dir);
    FILE *m = fopen(metrics, "r");
    double f1_logged = -1.0;
    while (m && f1_logged < 0 && fgets(line, sizeof line, m)) {
        cJSON *rec = cJSON_Parse(line);
        const cJSON *value = cJSON_GetObjectItem(rec, "eval_f1");
        if (cJSON_IsNumber(value)) f1_logged = value->valuedouble;
        cJSON_Delete(rec);
    }
    if (m) fclose(m);
    ZT_CHECK(f1_before >= 0 && fabs(f1_logged - f1_before) <= 0.005,
             "metrics.jsonl eval_f1 %g is not the percent train shows (%g): %s", f1_logged,
             f1_before, out);
    remove(data);
    snprintf(cmd, sizeof cmd, "rm -rf %s", out_dir);
    ZT_CHECK(system(cmd) == 0, "cleanup");
}

/* The step applied is what the progress line, metrics.jsonl and the step log show: alpha_k (the
 * distance moved along s) for the search policies, whose lr is 1, and lr for the others. */
static void check_step_size(void) {
    char dir[1024], data[1024], out_dir[128], path[256];
    static char cmd[8192], out[1 << 16];
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    snprintf(out_dir, sizeof out_dir, "/tmp/zt_cli_alpha_%d", (int)getpid());
    static const struct {
        const char *optimizer, *label, *flags;
    } runs[] = {{"as2p", "alpha", "--eps 1e-2"},
                {"stp", "alpha", "--lr 1e-3"},
                {"mezo", "lr", "--lr 1e-4"}};
    for (int i = 0; i < 3; i++) {
        const int steps = 5;
        snprintf(cmd, sizeof cmd,
                 "rm -rf %s && %s train --model %s --train %s --output %s --steps %d "
                 "--batch-size 2 --log-every 1 --optimizer %s %s 2>&1",
                 out_dir, zotune, dir, data, out_dir, steps, runs[i].optimizer, runs[i].flags);
        ZT_REQUIRE(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
        snprintf(path, sizeof path, "%s/steplog.jsonl", out_dir);
        FILE *log = fopen(path, "r");
        snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
        FILE *metrics = fopen(path, "r");
        ZT_REQUIRE(log && metrics, "%s: no step log or metrics", runs[i].optimizer);
        char line[4096], metrics_line[1024];
        int checked = 0, distinct = 0;
        double previous = -1.0;
        const char *progress = out;
        while (fgets(line, sizeof line, log)) {
            cJSON *rec = cJSON_Parse(line);
            const cJSON *terms = cJSON_GetObjectItem(rec, "terms");
            const cJSON *step_size = cJSON_GetObjectItem(rec, "step_size");
            if (!terms) { /* the header */
                cJSON_Delete(rec);
                continue;
            }
            double applied = cJSON_GetObjectItem(rec, "lr")->valuedouble;
            if (strcmp(runs[i].label, "alpha") == 0)
                applied =
                    cJSON_GetArraySize(terms)
                        ? fabs(cJSON_GetArrayItem(cJSON_GetArrayItem(terms, 0), 1)->valuedouble)
                        : 0.0;
            ZT_CHECK(cJSON_IsNumber(step_size), "%s: the log lacks step_size", runs[i].optimizer);
            if (!cJSON_IsNumber(step_size)) break;
            ZT_CHECK_CLOSE(step_size->valuedouble, applied, 0, 1e-7, "%s log step %d",
                           runs[i].optimizer, checked);
            ZT_REQUIRE(fgets(metrics_line, sizeof metrics_line, metrics), "metrics line");
            cJSON *m = cJSON_Parse(metrics_line);
            const cJSON *logged = cJSON_GetObjectItem(m, "step_size");
            ZT_CHECK(cJSON_IsNumber(logged), "%s metrics lack step_size", runs[i].optimizer);
            if (cJSON_IsNumber(logged))
                ZT_CHECK_CLOSE(logged->valuedouble, applied, 0, 1e-8, "%s metrics step %d",
                               runs[i].optimizer, checked);
            cJSON_Delete(m);
            char want[64];
            snprintf(want, sizeof want, "  %s %.3g  ", runs[i].label, step_size->valuedouble);
            progress = strstr(progress, want);
            ZT_CHECK(progress != NULL, "%s: no progress line shows '%s': %s", runs[i].optimizer,
                     want, out);
            if (!progress)
                progress = out;
            else
                progress++;
            distinct += step_size->valuedouble != previous;
            previous = step_size->valuedouble;
            checked++;
            cJSON_Delete(rec);
        }
        fclose(log);
        fclose(metrics);
        ZT_CHECK(checked == steps, "%s: %d of %d steps checked", runs[i].optimizer, checked, steps);
        /* AS2P's alpha_k follows the gamma statistics: it changes from step to step */
        if (strcmp(runs[i].optimizer, "as2p") == 0)
            ZT_CHECK(distinct >= 3, "as2p: %d distinct step sizes in %d steps", distinct, steps);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", out_dir);
    ZT_CHECK(system(cmd) == 0, "cleanup");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli PATH_TO_ZOTUNE\n");
        return 1;
    }
    zotune = argv[1];
    check_score("opt-pre");
    check_score("opt-post");
    expect_failure("eval --data /nonexistent.jsonl", 2, "--model and --data are required");
    check_info("opt-pre", "opt-pre");
    check_info("opt-post", "opt-post");
    check_info("opt-pre-variant", "opt-pre");
    check_usage_errors();
    check_optimizer_list();
    check_info_plan_options();
    check_info_config_only();
    check_input_aliases();
    check_step_size();

    char dir[1024], bad[256], args[2048];
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    snprintf(bad, sizeof bad, "/tmp/zt_cli_bad_%d.jsonl", (int)getpid());
    FILE *f = fopen(bad, "w");
    fputs("{\"input_ids\": [5, 6, 7]}\n\n{\"input_ids\": [5, 6], \"labels\": [5, 9999]}\n", f);
    fclose(f);
    snprintf(args, sizeof args, "score %s %s", dir, bad);
    expect_failure(args, 1, ":3: labels[1] = 9999 outside [0, 504)");
    f = fopen(bad, "w");
    fputs("{\"input_ids\": [5, 6, 7]}\n{\"input_ids\": [5, 6,\n", f);
    fclose(f);
    expect_failure(args, 1, ":2:");
    remove(bad);
    snprintf(args, sizeof args, "score %s %s --batch-sise 3", dir, bad);
    expect_failure(args, 2, "unknown option '--batch-sise'");
    snprintf(args, sizeof args, "info %s --seq-len abc", dir);
    expect_failure(args, 2, "--seq-len expects an integer, got 'abc'");
    expect_failure("frobnicate", 2, "unknown command 'frobnicate'");
    expect_failure("info /nonexistent/model", 1, "/nonexistent/model/config.json");
    check_gemm_option();
    check_numeric_options(dir);
    if (argc > 2) check_output_apart(argv[2]);
    if (argc > 2) check_f1_units(argv[2]);
    if (argc > 2) check_score_task_records(argv[2]);
    if (argc > 2) check_info_from_data(argv[2]);
    return zt_test_finish("test_cli");
}
