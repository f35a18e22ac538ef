/* `zotune bench memory`: from a config.json alone, for every OPT size (125m ... 66b, f16, batch 1
 * x 400 tokens, MeZO's MultiRC setting), the rows come in the order memory arithmetic gives
 * (inference <= ZO in place <= ZO shadow < first-order; checkpointing saves; AdamW's two state
 * copies cost more than SGD's none), each row's parts add up to its peak, and the zo-shadow and
 * fo-adamw rows equal `zotune info`'s plans (zo-prompt and fo-prompt: its --peft prompt plans);
 * with --measure on a fixture model every method's measured peak equals its plan to the byte;
 * --plot writes an 800 x 500 PNG (read here by hand: chunks, IHDR, the stored deflate blocks the
 * writer promises, rows) holding every method's colour, with the table and JSON unchanged; the
 * refusals. argv[1] is the zotune binary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../bench/bench_common.h"
#include "fixture.h"
#include "zt_test.h"

static const char *zotune;
static char tmp_dir[] = "/tmp/zt_cli_bench_XXXXXX";
static char out[1 << 16];

enum { N_ROWS = 13 };
static const char *const ROW_NAMES[N_ROWS] = {
    "inference", "zo-inplace", "zo-shadow", "fo-sgd-ckpt", "fo-sgd",    "fo-adamw-ckpt", "fo-adamw",
    "zo-lora",   "fo-lora",    "zo-prefix", "fo-prefix",   "zo-prompt", "fo-prompt"};

/* The rows of a --json run, peak and measured by method (measured -1 when null). */
static int read_rows(const char *text, double *peak, double *measured) {
    cJSON *root = cJSON_Parse(text);
    const cJSON *rows = cJSON_GetObjectItem(root, "rows");
    int n = 0;
    for (int i = 0; i < N_ROWS; i++) {
        const cJSON *r = cJSON_GetArrayItem(rows, i);
        const cJSON *method = cJSON_GetObjectItem(r, "method");
        if (!cJSON_IsString(method) || strcmp(method->valuestring, ROW_NAMES[i]) != 0) continue;
        peak[i] = cJSON_GetObjectItem(r, "peak_bytes")->valuedouble;
        const cJSON *m = cJSON_GetObjectItem(r, "measured");
        measured[i] = cJSON_IsNumber(m) ? m->valuedouble : -1.0;
        double parts = 0.0;
        const cJSON *part;
        cJSON_ArrayForEach(part, cJSON_GetObjectItem(r, "parts")) parts += part->valuedouble;
        ZT_CHECK(parts == peak[i], "%s: parts add up to %.0f, peak %.0f", ROW_NAMES[i], parts,
                 peak[i]);
        n++;
    }
    cJSON_Delete(root);
    return n;
}

static double info_total(const char *dir, const char *optimizer, const char *extra) {
    char cmd[2048], text[1 << 15];
    snprintf(cmd, sizeof cmd,
             "%s info %s --json --batch-size 1 --seq-len 400 --optimizer %s --dtype f16%s", zotune,
             dir, optimizer, extra);
    if (zt_test_run(cmd, text, sizeof text) != 0) return -1.0;
    cJSON *root = cJSON_Parse(text);
    const cJSON *train = cJSON_GetObjectItem(root, "train_plan");
    const double total = train ? cJSON_GetObjectItem(train, "total_bytes")->valuedouble : -1.0;
    cJSON_Delete(root);
    return total;
}

static void check_every_size(void) {
    const bench_opt_size *sizes = bench_opt_sizes();
    for (int s = 0; s < BENCH_OPT_N_SIZES; s++) {
        const bench_opt_size *z = &sizes[s];
        char dir[512], path[600], cmd[2048];
        snprintf(dir, sizeof dir, "%s/opt-%s", tmp_dir, z->name);
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        ZT_REQUIRE(system(cmd) == 0, "%s", cmd);
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "w");
        ZT_REQUIRE(f != NULL, "%s", path);
        fprintf(f,
                "{\"model_type\": \"opt\", \"activation_function\": \"relu\", \"vocab_size\": %d, "
                "\"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                "\"ffn_dim\": %d, \"max_position_embeddings\": %d, \"word_embed_proj_dim\": %d, "
                "\"do_layer_norm_before\": %s, \"bos_token_id\": 2, \"eos_token_id\": 2, "
                "\"pad_token_id\": 1}\n",
                BENCH_OPT_VOCAB, z->hidden, z->layers, z->heads, z->ffn, BENCH_OPT_POSITIONS,
                z->embed_proj, z->pre_layer_norm ? "true" : "false");
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "%s bench memory %s --json --dtype f16 --batch-size 1 --seq-len 400", zotune, dir);
        ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
        double peak[N_ROWS] = {0}, measured[N_ROWS];
        ZT_CHECK(read_rows(out, peak, measured) == N_ROWS, "opt-%s: the rows", z->name);
        const double *p = peak;
        ZT_CHECK(p[0] <= p[1] && p[1] <= p[2] && p[2] < p[3] && p[3] < p[4] && p[3] < p[5] &&
                     p[5] < p[6] && p[4] < p[6],
                 "opt-%s: rows out of order: %.0f %.0f %.0f %.0f %.0f %.0f %.0f", z->name, p[0],
                 p[1], p[2], p[3], p[4], p[5], p[6]);
        /* LoRA (rank 8 on q and v): below its full counterpart, ZO below first-order */
        ZT_CHECK(p[7] < p[2] && p[8] < p[6] && p[7] < p[8],
                 "opt-%s: LoRA rows: zo-lora %.0f (zo-shadow %.0f), fo-lora %.0f (fo-adamw %.0f)",
                 z->name, p[7], p[2], p[8], p[6]);
        /* prefix tuning (5 per layer): below its full counterpart, ZO below first-order */
        ZT_CHECK(p[9] < p[2] && p[10] < p[6] && p[9] < p[10],
                 "opt-%s: prefix rows: zo-prefix %.0f (zo-shadow %.0f), fo-prefix %.0f (fo-adamw "
                 "%.0f)",
                 z->name, p[9], p[2], p[10], p[6]);
        /* prompt tuning (10 virtual tokens): below its full counterpart, ZO below first-order */
        ZT_CHECK(p[11] < p[2] && p[12] < p[6] && p[11] < p[12],
                 "opt-%s: prompt rows: zo-prompt %.0f (zo-shadow %.0f), fo-prompt %.0f (fo-adamw "
                 "%.0f)",
                 z->name, p[11], p[2], p[12], p[6]);
        ZT_CHECK(p[2] == info_total(dir, "mezo", "") && p[6] == info_total(dir, "adamw", ""),
                 "opt-%s: the rows are not info's plans", z->name);
        ZT_CHECK(p[11] == info_total(dir, "mezo", " --peft prompt") &&
                     p[12] == info_total(dir, "adamw", " --peft prompt --num-virtual-tokens 10"),
                 "opt-%s: the prompt rows are not info's --peft prompt plans", z->name);
        printf("opt-%-5s f16, 1 x 400: inference %7.2f GiB, zo-shadow %7.2f, fo-sgd-ckpt %7.2f, "
               "fo-adamw %8.2f, zo-lora %7.2f, fo-lora %7.2f, zo-prefix %7.2f, fo-prefix %7.2f, "
               "zo-prompt %7.2f, fo-prompt %7.2f\n",
               z->name, p[0] / (1 << 30), p[2] / (1 << 30), p[3] / (1 << 30), p[6] / (1 << 30),
               p[7] / (1 << 30), p[8] / (1 << 30), p[9] / (1 << 30), p[10] / (1 << 30),
               p[11] / (1 << 30), p[12] / (1 << 30));
    }
}

static void check_measured(void) {
    char dir[512], cmd[2048];
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    snprintf(cmd, sizeof cmd,
             "%s bench memory %s --json --batch-size 3 --seq-len 16 --measure --threads 1 "
             "2>/dev/null",
             zotune, dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
    double peak[N_ROWS] = {0}, measured[N_ROWS] = {0};
    ZT_CHECK(read_rows(out, peak, measured) == N_ROWS, "--measure: the rows");
    for (int i = 0; i < N_ROWS; i++)
        ZT_CHECK(measured[i] == peak[i], "--measure %s: measured %.0f, plan %.0f", ROW_NAMES[i],
                 measured[i], peak[i]);
}

/* The figure's palette, in the rows' order (src/cli/bench_methods.c). */
static const unsigned char COLOURS[N_ROWS][3] = {
    {31, 119, 180},  {44, 160, 44},   {23, 190, 207},  {255, 127, 14}, {214, 39, 40},
    {148, 103, 189}, {140, 86, 75},   {227, 119, 194}, {188, 189, 34}, {174, 199, 232},
    {255, 152, 150}, {127, 127, 127}, {0, 0, 128}};

static unsigned be32(const unsigned char *p) {
    return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

/* The image's rows (filter byte first) from a PNG of stored blocks; NULL when it is not one. */
static unsigned char *png_rows(const unsigned char *png, size_t n, unsigned *width,
                               unsigned *height, size_t *raw_bytes) {
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n < 8 + 25 + 12 || memcmp(png, signature, 8) != 0 || memcmp(png + 12, "IHDR", 4) != 0)
        return NULL;
    *width = be32(png + 16);
    *height = be32(png + 20);
    unsigned char *zlib = malloc(n), *raw = malloc(n);
    size_t zlib_bytes = 0, pos = 8;
    while (pos + 12 <= n) { /* the IDAT payloads, concatenated */
        const size_t len = be32(png + pos);
        if (pos + 12 + len > n) break;
        if (memcmp(png + pos + 4, "IDAT", 4) == 0) {
            memcpy(zlib + zlib_bytes, png + pos + 8, len);
            zlib_bytes += len;
        }
        pos += 12 + len;
    }
    size_t z = 2, out = 0;
    int last = 0;
    while (!last && z + 5 <= zlib_bytes) {
        last = zlib[z] & 1;
        const size_t len = zlib[z + 1] | (size_t)zlib[z + 2] << 8;
        const size_t nlen = zlib[z + 3] | (size_t)zlib[z + 4] << 8;
        if ((zlib[z] >> 1) != 0 || (len ^ nlen) != 0xFFFF || z + 5 + len > zlib_bytes) break;
        memcpy(raw + out, zlib + z + 5, len);
        out += len;
        z += 5 + len;
    }
    free(zlib);
    if (pos != n || !last || z + 4 != zlib_bytes) {
        free(raw);
        return NULL;
    }
    *raw_bytes = out;
    return raw;
}

static void check_plot(void) {
    char dir[512], png_path[600], cmd[2048], plain[1 << 14];
    snprintf(dir, sizeof dir, "%s/opt-125m", tmp_dir);
    snprintf(png_path, sizeof png_path, "%s/memory.png", tmp_dir);
    for (int json = 0; json < 2; json++) { /* --plot leaves the table and the JSON as they were */
        const char *options = json ? "--json --dtype f16" : "--batch-size 2 --seq-len 64";
        snprintf(cmd, sizeof cmd, "%s bench memory %s %s", zotune, dir, options);
        ZT_CHECK(zt_test_run(cmd, plain, sizeof plain) == 0, "%s", cmd);
        snprintf(cmd, sizeof cmd, "%s bench memory %s %s --plot %s 2>%s/stderr", zotune, dir,
                 options, png_path, tmp_dir);
        ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
        ZT_CHECK(strcmp(out, plain) == 0, "--plot changed the output:\n%s\nagainst\n%s", out,
                 plain);
    }
    char err_path[600], err[1024] = "", wrote[700];
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp_dir);
    FILE *f = fopen(err_path, "r");
    if (f) {
        err[fread(err, 1, sizeof err - 1, f)] = '\0';
        fclose(f);
    }
    snprintf(wrote, sizeof wrote, "wrote %s\n", png_path);
    ZT_CHECK(strcmp(err, wrote) == 0, "stderr: %s", err);

    static unsigned char png[1 << 22];
    f = fopen(png_path, "rb");
    ZT_REQUIRE(f != NULL, "%s", png_path);
    const size_t n = fread(png, 1, sizeof png, f);
    fclose(f);
    unsigned width = 0, height = 0;
    size_t raw_bytes = 0;
    unsigned char *raw = png_rows(png, n, &width, &height, &raw_bytes);
    ZT_REQUIRE(raw != NULL, "%s: not a PNG of stored deflate blocks (%zu bytes)", png_path, n);
    const size_t row_bytes = 1 + 3 * (size_t)width;
    const size_t blocks = (raw_bytes + 65534) / 65535;
    ZT_CHECK(width == 800 && height == 500, "%u x %u", width, height);
    ZT_CHECK(raw_bytes == row_bytes * height &&
                 n == 8 + 25 + 12 + 2 + 5 * blocks + raw_bytes + 4 + 12,
             "%zu bytes of rows for %u x %u, a file of %zu", raw_bytes, width, height, n);
    long counts[N_ROWS] = {0}, in_plot = 0;
    int filters_zero = 1;
    for (size_t y = 0; y < height && raw_bytes == row_bytes * height; y++) {
        filters_zero &= raw[y * row_bytes] == 0;
        for (size_t x = 0; x < width; x++) {
            const unsigned char *p = raw + y * row_bytes + 1 + 3 * x;
            for (int i = 0; i < N_ROWS; i++)
                if (memcmp(p, COLOURS[i], 3) == 0) {
                    counts[i]++;
                    in_plot += x < 590; /* the legend sits right of the plot */
                }
        }
    }
    free(raw);
    ZT_CHECK(filters_zero, "a row with a filter");
    for (int i = 0; i < N_ROWS; i++)
        ZT_CHECK(counts[i] >= 50, "%s: %ld pixels of its colour", ROW_NAMES[i], counts[i]);
    ZT_CHECK(in_plot > 2000, "%ld pixels of the methods' colours in the plot", in_plot);

    /* refused before any output: a directory that does not exist, a directory as the file */
    const char *refused[2] = {"no/such/dir/memory.png", ""};
    for (int i = 0; i < 2; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, refused[i]);
        snprintf(cmd, sizeof cmd, "%s bench memory %s --plot %s 2>&1", zotune, dir, path);
        ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2 && strstr(out, path) &&
                     !strstr(out, "inference"),
                 "--plot %s: %s", path, out);
    }
    snprintf(cmd, sizeof cmd, "test ! -e %s/no", tmp_dir);
    ZT_CHECK(system(cmd) == 0, "a refused --plot left %s/no", tmp_dir);
}

static void check_refusals(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s bench memory %s/opt-125m --measure 2>&1", zotune, tmp_dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2 && strstr(out, "weights"),
             "--measure without weights: %s", out);
    snprintf(cmd, sizeof cmd, "%s bench memory %s/opt-125m --dtype f8 2>&1", zotune, tmp_dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2, "--dtype f8 accepted: %s", out);
    snprintf(cmd, sizeof cmd, "%s bench memory %s/opt-125m --seq-len 4096 2>&1", zotune, tmp_dir);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) != 0 && strstr(out, "positions"),
             "--seq-len beyond the positions: %s", out);
    snprintf(cmd, sizeof cmd, "%s bench flops 2>&1", zotune);
    ZT_CHECK(zt_test_run(cmd, out, sizeof out) == 2, "an unknown bench accepted: %s", out);
}

int main(int argc, char **argv) {
    ZT_REQUIRE(argc >= 2, "usage: test_cli_bench ZOTUNE");
    zotune = argv[1];
    ZT_REQUIRE(mkdtemp(tmp_dir) != NULL, "mkdtemp");
    check_every_size();
    check_measured();
    check_plot();
    check_refusals();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return zt_test_finish("test_cli_bench");
}
