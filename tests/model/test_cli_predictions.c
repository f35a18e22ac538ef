/* `zotune eval --predictions FILE` end to end on the demo model: one JSON line per generation
 * example with the prompt as the record spells it, the greedy answer, the reference answers and
 * the example's F1 and EM in percent; the file's means are what eval prints (text, in percent,
 * and --json, in percent). A second run scores answers made from the first run's predictions,
 * so the expected F1/EM per line is known without the metric: the prediction itself as the
 * answer scores 100/100, an unrelated word 0/0. Refusals exit 2 before anything is written:
 * classification records, a missing or unwritable directory, a directory as FILE. A failed run
 * leaves neither FILE nor its temporary file. argv[1] is the zotune binary, argv[2] the demo
 * model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "zt_test.h"

static const char *zotune, *demo;
static char dir[256]; /* this run's scratch directory */

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The lines of a JSONL file, parsed; *n lines. */
static cJSON **read_lines(const char *path, int *n) {
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    cJSON **lines = NULL;
    static char line[1 << 16];
    while (fgets(line, sizeof line, f)) {
        lines = realloc(lines, (size_t)(*n + 1) * sizeof *lines);
        lines[(*n)++] = cJSON_Parse(line);
    }
    fclose(f);
    return lines;
}

static void free_lines(cJSON **lines, int n) {
    for (int i = 0; i < n; i++)
        cJSON_Delete(lines[i]);
    free(lines);
}

static const char *PROMPTS[] = {
    "Our book club read this textbook. It was",
    "The opening scene was reliable and the dialogue was tasty. It was",
    "I played this puzzle with my boss.",
    "Although the lobby is nice, I despised the wifi. It was",
    "It was",
    ("We spent two nights at this resort. I could not wait for it to end and it has a "
     "forgettable front desk. The staff said"),
    "Question: \"what is it?\"\nAnswer:",
};
enum { N_PROMPTS = sizeof PROMPTS / sizeof PROMPTS[0] };

/* A generation record per prompt; answers[i] a JSON array's text. */
static void write_task(const char *path, const char *const *answers) {
    FILE *f = fopen(path, "w");
    ZT_REQUIRE(f != NULL, "%s", path);
    for (int i = 0; i < N_PROMPTS; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", PROMPTS[i]);
        cJSON_AddItemToObject(o, "answers", cJSON_Parse(answers[i]));
        char *text = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", text);
        cJSON_free(text);
        cJSON_Delete(o);
    }
    fclose(f);
}

/* Runs eval --predictions and checks the file against the records and against what eval prints;
 * predictions (N_PROMPTS) receive strdup'd answers. */
static void eval_with_predictions(const char *task, const char *file, int batch, char **predictions,
                                  double *f1s, double *ems) {
    static char cmd[8192], out[1 << 16], json_out[1 << 16];
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --batch-size %d --predictions %s 2>&1",
             zotune, demo, task, batch, file);
    int rc = zt_test_run(cmd, out, sizeof out);
    ZT_CHECK(rc == 0, "%s -> %d: %s", cmd, rc, out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --batch-size %d --json 2>&1", zotune,
             demo, task, batch);
    ZT_CHECK(zt_test_run(cmd, json_out, sizeof json_out) == 0, "%s: %s", cmd, json_out);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    ZT_CHECK(!exists(tmp), "%s left behind", tmp);

    int n = 0;
    cJSON **lines = read_lines(file, &n);
    ZT_REQUIRE(lines && n == N_PROMPTS, "%s: %d lines, want %d", file, n, N_PROMPTS);
    cJSON **records = NULL;
    int n_records = 0;
    records = read_lines(task, &n_records);
    double f1_sum = 0.0, em_sum = 0.0;
    for (int i = 0; i < n; i++) {
        const cJSON *l = lines[i];
        ZT_REQUIRE(l && cJSON_IsObject(l), "%s line %d is not a JSON object", file, i + 1);
        const cJSON *prompt = cJSON_GetObjectItem(l, "prompt");
        const cJSON *prediction = cJSON_GetObjectItem(l, "prediction");
        const cJSON *answers = cJSON_GetObjectItem(l, "answers");
        const cJSON *f1 = cJSON_GetObjectItem(l, "f1"), *em = cJSON_GetObjectItem(l, "em");
        ZT_REQUIRE(cJSON_IsString(prompt) && cJSON_IsString(prediction) && cJSON_IsArray(answers) &&
                       cJSON_IsNumber(f1) && cJSON_IsNumber(em) && cJSON_GetArraySize(l) == 5,
                   "%s line %d: fields prompt, prediction, answers, f1, em", file, i + 1);
        ZT_CHECK(strcmp(prompt->valuestring, PROMPTS[i]) == 0, "line %d: prompt \"%s\"", i + 1,
                 prompt->valuestring);
        char *want = cJSON_PrintUnformatted(cJSON_GetObjectItem(records[i], "answers"));
        char *got = cJSON_PrintUnformatted(answers);
        ZT_CHECK(strcmp(want, got) == 0, "line %d: answers %s, the record's %s", i + 1, got, want);
        cJSON_free(want);
        cJSON_free(got);
        ZT_CHECK(f1->valuedouble >= 0.0 && f1->valuedouble <= 100.0 &&
                     (em->valuedouble == 0.0 || em->valuedouble == 100.0) &&
                     (em->valuedouble == 0.0 || f1->valuedouble == 100.0),
                 "line %d: f1 %g em %g are not percentages of one example", i + 1, f1->valuedouble,
                 em->valuedouble);
        /* greedy decoding stops at "\n" and never keeps it */
        ZT_CHECK(strchr(prediction->valuestring, '\n') == NULL, "line %d: prediction \"%s\"", i + 1,
                 prediction->valuestring);
        predictions[i] = strdup(prediction->valuestring);
        f1s[i] = f1->valuedouble;
        ems[i] = em->valuedouble;
        f1_sum += f1->valuedouble;
        em_sum += em->valuedouble;
    }
    /* eval's own numbers: the text line in percent (2 decimals), --json in percent too */
    const char *f1_text = strstr(out, "F1 "), *em_text = strstr(out, "EM ");
    ZT_REQUIRE(f1_text && em_text, "eval printed no F1/EM: %s", out);
    double f1_printed = atof(f1_text + 3), em_printed = atof(em_text + 3);
    ZT_CHECK(fabs(f1_sum / n - f1_printed) <= 0.005 + 1e-9 &&
                 fabs(em_sum / n - em_printed) <= 0.005 + 1e-9,
             "file means F1 %.6f EM %.6f, eval printed %.2f / %.2f", f1_sum / n, em_sum / n,
             f1_printed, em_printed);
    cJSON *j = cJSON_Parse(json_out);
    ZT_REQUIRE(j != NULL, "eval --json: %s", json_out);
    double f1_json = cJSON_GetObjectItem(j, "f1")->valuedouble;
    double em_json = cJSON_GetObjectItem(j, "exact_match")->valuedouble;
    ZT_CHECK(fabs(f1_sum / n - f1_json) <= 1e-9 && fabs(em_sum / n - em_json) <= 1e-9,
             "file means F1 %.12f EM %.12f, eval --json %.12f / %.12f", f1_sum / n, em_sum / n,
             f1_json, em_json);
    printf("  %s, batch %d: %d lines; mean F1 %.4f%% EM %.4f%% = eval's %.2f%% / %.2f%%\n", task,
           batch, n, f1_sum / n, em_sum / n, f1_printed, em_printed);
    cJSON_Delete(j);
    free_lines(lines, n);
    free_lines(records, n_records);
}

static void check_predictions(void) {
    char task[512], file[512], task2[512], file2[512];
    snprintf(task, sizeof task, "%s/gen.jsonl", dir);
    snprintf(file, sizeof file, "%s/predictions.jsonl", dir);
    const char *answers[N_PROMPTS] = {
        "[\"great\"]",      "[\"terrible\", \"bad\"]",    "[\"it was fun\"]",     "[\"terrible\"]",
        "[\"a\", \"the\"]", "[\"the staff said hello\"]", "[\"\\\"nothing\\\"\"]"};
    write_task(task, answers);
    char *first[N_PROMPTS], *second[N_PROMPTS];
    double f1[N_PROMPTS], em[N_PROMPTS];
    eval_with_predictions(task, file, 3, first, f1, em);

    /* answers built from the predictions: the prediction itself (100/100) or an unrelated word
     * (0/0), scored on the same batch size so the same predictions come back */
    static char built[N_PROMPTS][4096];
    const char *answers2[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++) {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, cJSON_CreateString(i % 2 == 0 ? first[i] : "zzqx"));
        char *text = cJSON_PrintUnformatted(a);
        snprintf(built[i], sizeof built[i], "%s", text);
        cJSON_free(text);
        cJSON_Delete(a);
        answers2[i] = built[i];
    }
    snprintf(task2, sizeof task2, "%s/gen2.jsonl", dir);
    snprintf(file2, sizeof file2, "%s/predictions2.jsonl", dir);
    write_task(task2, answers2);
    eval_with_predictions(task2, file2, 3, second, f1, em);
    for (int i = 0; i < N_PROMPTS; i++) {
        ZT_CHECK(strcmp(first[i], second[i]) == 0, "line %d: \"%s\", then \"%s\"", i + 1, first[i],
                 second[i]);
        double want = i % 2 == 0 ? 100.0 : 0.0;
        ZT_CHECK(f1[i] == want && em[i] == want,
                 "line %d (prediction \"%s\", answer %s): f1 %g em %g, want %g", i + 1, second[i],
                 answers2[i], f1[i], em[i], want);
        free(first[i]);
        free(second[i]);
    }
}

static void expect_refusal(const char *args, const char *needle, const char *file) {
    static char cmd[8192], out[1 << 16];
    snprintf(cmd, sizeof cmd, "%s eval --model %s %s 2>&1", zotune, demo, args);
    int rc = zt_test_run(cmd, out, sizeof out);
    ZT_CHECK(rc == 2 && strstr(out, needle) != NULL, "%s -> %d, want 2 and \"%s\": %s", cmd, rc,
             needle, out);
    if (file) {
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp", file);
        ZT_CHECK(!exists(file) && !exists(tmp), "%s: a refused run wrote %s", cmd, file);
    }
}

static void check_refusals(void) {
    char args[4096], file[512], classification[1024], task[512], bad[512];
    snprintf(file, sizeof file, "%s/refused.jsonl", dir);
    snprintf(classification, sizeof classification, "%s/../task/dev.jsonl", demo);
    snprintf(args, sizeof args, "--data %s --predictions %s", classification, file);
    expect_refusal(args, "--predictions needs generation records", file);
    snprintf(task, sizeof task, "%s/gen.jsonl", dir);
    snprintf(args, sizeof args, "--data %s --predictions %s/missing/p.jsonl", task, dir);
    expect_refusal(args, "cannot write in", NULL);
    snprintf(args, sizeof args, "--data %s --predictions %s", task, dir);
    expect_refusal(args, "is a directory", NULL);
    if (geteuid() != 0) { /* root writes anywhere */
        char locked[512];
        snprintf(locked, sizeof locked, "%s/locked", dir);
        ZT_REQUIRE(mkdir(locked, 0500) == 0, "%s", locked);
        snprintf(args, sizeof args, "--data %s --predictions %s/p.jsonl", task, locked);
        expect_refusal(args, "cannot write in", NULL);
        chmod(locked, 0700);
    }
    /* a run that fails (a malformed record) writes nothing */
    snprintf(bad, sizeof bad, "%s/bad.jsonl", dir);
    FILE *f = fopen(bad, "w");
    ZT_REQUIRE(f != NULL, "%s", bad);
    fputs("{\"prompt\": \"It was\", \"answers\": [\"great\"]}\n{\"prompt\": \"x\"}\n", f);
    fclose(f);
    static char cmd[8192], out[1 << 16];
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --predictions %s 2>&1", zotune, demo,
             bad, file);
    int rc = zt_test_run(cmd, out, sizeof out);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    ZT_CHECK(rc != 0 && !exists(file) && !exists(tmp), "a failed eval (rc %d) left %s: %s", rc,
             file, out);
    snprintf(cmd, sizeof cmd, "%s eval --help 2>&1", zotune);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0 && strstr(out, "--predictions FILE") != NULL,
             "eval --help does not list --predictions: %s", out);
    printf("  refusals exit 2 and write nothing; --help lists --predictions\n");
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_cli_predictions PATH_TO_ZOTUNE DEMO_MODEL_DIR\n");
        return 1;
    }
    zotune = argv[1];
    demo = argv[2];
    snprintf(dir, sizeof dir, "/tmp/zt_cli_predictions_%d", (int)getpid());
    ZT_REQUIRE(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    check_predictions();
    check_refusals();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ZT_CHECK(system(cmd) == 0, "cleanup");
    return zt_test_finish("test_cli_predictions");
}
