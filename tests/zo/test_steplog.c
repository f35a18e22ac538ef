/* The step log's text format round-trips every field exactly: records with adversarial values
 * (every float bit pattern class that is finite: subnormals, -0, extremes, full-precision
 * mantissas; seeds over the whole uint64 range) are appended, read back and compared bit for
 * bit, and formatting a read record gives the same line as formatting the original. A log that
 * printed coefficients with one digit too few would pass a short replay and fail here. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zo/steplog.h"
#include "zt_test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A finite double: mostly arbitrary bit patterns, sometimes a special class. */
static double any_double(void) {
    switch (next_u64() % 8) {
    case 0:
        return 0.0;
    case 1:
        return -0.0;
    case 2:
        return 4.9406564584124654e-324 * (double)(next_u64() % 1000 + 1); /* subnormal */
    case 3:
        return (next_u64() & 1 ? -1 : 1) * 1.7976931348623157e308;
    default: {
        double d;
        do {
            uint64_t bits = next_u64();
            memcpy(&d, &bits, sizeof d);
        } while (!isfinite(d));
        return d;
    }
    }
}

static float any_float(void) {
    switch (next_u64() % 6) {
    case 0:
        return -0.0f;
    case 1:
        return 1.4e-45f * (float)(next_u64() % 100 + 1); /* subnormal */
    default: {
        float f;
        do {
            uint32_t bits = (uint32_t)next_u64();
            memcpy(&f, &bits, sizeof f);
        } while (!isfinite(f));
        return f;
    }
    }
}

static uint64_t any_seed(void) {
    switch (next_u64() % 6) {
    case 0:
        return 0;
    case 1:
        return UINT64_MAX;
    case 2:
        return (1ull << 53) + 1; /* the first integer a JSON number would lose */
    default:
        return next_u64();
    }
}

static void random_record(zt_step_record *r, int step) {
    memset(r, 0, sizeof *r);
    r->step = step;
    r->step_seed = any_seed();
    r->n_variants = 1 + (int)(next_u64() % ZT_MAX_VARIANTS);
    for (int k = 0; k < r->n_variants; k++)
        r->losses[k] = any_double();
    r->dist = (zt_direction_dist)(next_u64() % 3);
    zt_step_update *u = &r->update;
    u->rule = (zt_update_rule)(next_u64() % 4);
    u->lr = any_double();
    u->weight_decay = any_double();
    u->beta1 = any_double();
    u->beta2 = any_double();
    u->adam_eps = any_double();
    u->projected_grad = any_double();
    u->step_size = any_double();
    u->n_terms = (int)(next_u64() % (ZT_MAX_DIRECTIONS + 1));
    for (int t = 0; t < u->n_terms; t++) {
        u->terms[t].seed = any_seed();
        u->terms[t].coeff = any_float();
    }
    r->stochastic_rounding = (int)(next_u64() & 1);
    r->rounding_seed = any_seed();
}

static int same_bits(const void *a, const void *b, size_t n) {
    return memcmp(a, b, n) == 0;
}

/* Every field the log carries, bit for bit. */
static int records_equal(const zt_step_record *a, const zt_step_record *b) {
    const zt_step_update *ua = &a->update, *ub = &b->update;
    int same = a->step == b->step && a->step_seed == b->step_seed &&
               a->n_variants == b->n_variants && a->dist == b->dist && ua->rule == ub->rule &&
               ua->n_terms == ub->n_terms && a->stochastic_rounding == b->stochastic_rounding &&
               a->rounding_seed == b->rounding_seed;
    same = same && same_bits(a->losses, b->losses, (size_t)a->n_variants * sizeof(double));
    same = same && same_bits(&ua->lr, &ub->lr, sizeof(double)) &&
           same_bits(&ua->weight_decay, &ub->weight_decay, sizeof(double)) &&
           same_bits(&ua->beta1, &ub->beta1, sizeof(double)) &&
           same_bits(&ua->beta2, &ub->beta2, sizeof(double)) &&
           same_bits(&ua->adam_eps, &ub->adam_eps, sizeof(double)) &&
           same_bits(&ua->projected_grad, &ub->projected_grad, sizeof(double)) &&
           same_bits(&ua->step_size, &ub->step_size, sizeof(double));
    for (int t = 0; same && t < ua->n_terms; t++)
        same = ua->terms[t].seed == ub->terms[t].seed &&
               same_bits(&ua->terms[t].coeff, &ub->terms[t].coeff, sizeof(float));
    return same;
}

enum { N_RECORDS = 3000, LINE_MAX_BYTES = 8192 };

static void write_log(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ZT_REQUIRE(f && fputs(text, f) >= 0 && fclose(f) == 0, "writing %s", path);
}

static const char header_v2[] =
    "{\"zotune_steplog\":2,\"optimizer\":\"mezo\",\"trainable\":\"\",\"state_copies\":0,"
    "\"run\":{\"--model\":\"00000000000000ab\",\"--lr\":\"0.001\"}}\n";
static const char record0[] =
    "{\"step\":0,\"seed\":\"%s\",\"losses\":[1,2],\"dist\":\"gaussian\",\"rule\":\"sgd\",\"lr\":1,"
    "\"wd\":0,\"beta1\":0,\"beta2\":0,\"adam_eps\":0,\"pg\":0,\"sr\":0,\"rseed\":\"1\",\"terms\":[]"
    "}%s\n";

/* Version 2: run options, evaluations (null = NaN) and skipped steps read back as written; and
 * what another reader would read differently is refused: seeds that are not plain hex, text
 * after a record, a key given twice. */
static void test_kinds_and_refusals(const char *path) {
    char text[2048], record[1024];
    snprintf(record, sizeof record, record0, "00000000000000ff", "");
    snprintf(text, sizeof text,
             "%s{\"eval\":0,\"loss\":0.5,\"metric\":-0.5,\"accuracy\":-1,\"f1\":-1,\"em\":-1}\n%s"
             "{\"step\":1,\"seed\":\"a\",\"skipped\":\"non-finite weights\"}\n"
             "{\"eval\":2,\"loss\":null,\"metric\":null,\"accuracy\":0.25,\"f1\":-1,\"em\":-1}\n",
             header_v2, record);
    write_log(path, text);
    zt_steplog_header h;
    zt_step_record *r = NULL;
    int n = 0;
    ZT_REQUIRE_OK(zt_steplog_read(path, &h, &r, &n, NULL));
    const char *lr = zt_steplog_run_value(&h, "--lr");
    ZT_CHECK(h.version == 2 && h.n_run == 2 && lr && strcmp(lr, "0.001") == 0 &&
                 !zt_steplog_run_value(&h, "--seed"),
             "v2 header: version %d, %d run options", h.version, h.n_run);
    ZT_CHECK(n == 4 && r[0].kind == ZT_RECORD_EVAL && r[0].step == 0 && r[0].eval.loss == 0.5 &&
                 r[0].eval.metric == -0.5 && r[1].kind == ZT_RECORD_STEP &&
                 r[1].step_seed == 0xff && r[2].kind == ZT_RECORD_SKIPPED && r[2].step == 1 &&
                 r[2].skip_reason == ZT_SKIP_NONFINITE_WEIGHTS && r[3].kind == ZT_RECORD_EVAL &&
                 r[3].step == 2 && isnan(r[3].eval.loss) && r[3].eval.accuracy == 0.25,
             "evaluation and skipped records read back (%d records)", n);
    ZT_CHECK(n == 4 && r[1].update.step_size == -1.0,
             "a record written before step_size was logged reads it as -1 (unknown), got %g",
             n == 4 ? r[1].update.step_size : 0.0);
    free(r);
    static const struct {
        const char *seed, *what;
        int variant; /* 0 as is, 1 text after the object, 2 a key given twice */
    } bad[] = {
        {"-1", "a signed seed", 0},        {" 1", "a seed with a space", 0},
        {"0x1", "a seed with 0x", 0},      {"11112222333344445", "17 hex digits", 0},
        {"1", "text after the record", 1}, {"1", "a key given twice", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[1024];
        snprintf(line, sizeof line, record0, bad[i].seed, bad[i].variant == 1 ? " {}" : "");
        if (bad[i].variant == 2) {
            char *sr = strstr(line, "\"sr\":0,");
            ZT_REQUIRE(sr != NULL, "record template");
            memmove(sr + 7, sr, strlen(sr) + 1);
            memcpy(sr, "\"sr\":1,", 7);
        }
        snprintf(text, sizeof text, "%s%s", header_v2, line);
        write_log(path, text);
        zt_status s = zt_steplog_read(path, &h, &r, &n, NULL);
        ZT_CHECK(s == ZT_ERR_FORMAT && strstr(zt_last_error(), ":2:"),
                 "%s accepted (status %d): %s", bad[i].what, (int)s, text);
        if (s == ZT_OK) free(r);
    }
    /* the same line with a plain seed is accepted: the refusals above are about the flaw */
    snprintf(record, sizeof record, record0, "1", "");
    snprintf(text, sizeof text, "%s%s", header_v2, record);
    write_log(path, text);
    ZT_CHECK_OK(zt_steplog_read(path, &h, &r, &n, NULL));
    free(r);
}

/* A log whose Rademacher steps were drawn under another z layout (docs/spec.md §5.9) is refused
 * by name; Gaussian steps, and logs that record this version's layout, are not. */
static void test_z_layout(const char *path) {
    static const char header_no_layout[] =
        "{\"zotune_steplog\":2,\"optimizer\":\"ga-sign\",\"trainable\":\"\",\"state_copies\":0,"
        "\"run\":{\"--lr\":\"0.001\"}}\n";
    static const char header_old_layout[] =
        "{\"zotune_steplog\":2,\"optimizer\":\"ga-sign\",\"trainable\":\"\",\"state_copies\":0,"
        "\"run\":{\"--lr\":\"0.001\",\"z layout\":\"one word per element\"}}\n";
    static const char header_current[] =
        "{\"zotune_steplog\":2,\"optimizer\":\"ga-sign\",\"trainable\":\"\",\"state_copies\":0,"
        "\"run\":{\"--lr\":\"0.001\",\"z layout\":\"" ZT_Z_LAYOUT_CURRENT "\"}}\n";
    char gaussian[1024], rademacher[1024], text[4096];
    snprintf(gaussian, sizeof gaussian, record0, "5", "");
    snprintf(rademacher, sizeof rademacher, record0, "6", "");
    char *dist = strstr(rademacher, "\"gaussian\"");
    ZT_REQUIRE(dist != NULL, "record template");
    memmove(dist + 12, dist + 10, strlen(dist + 10) + 1);
    memcpy(dist, "\"rademacher\"", 12);
    char *step = strstr(rademacher, "\"step\":0"); /* the Rademacher record is step 1 */
    ZT_REQUIRE(step != NULL, "record template");
    step[7] = '1';
    const struct {
        const char *header, *what;
        int with_rademacher, refused;
    } cases[] = {
        {header_no_layout, "no layout, Gaussian steps", 0, 0},
        {header_no_layout, "no layout, a Rademacher step", 1, 1},
        {header_old_layout, "another layout, a Rademacher step", 1, 1},
        {header_current, "this layout, a Rademacher step", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, "%s%s%s", cases[i].header, gaussian,
                 cases[i].with_rademacher ? rademacher : "");
        write_log(path, text);
        zt_steplog_header h;
        zt_step_record *r = NULL;
        int n = 0;
        ZT_REQUIRE_OK(zt_steplog_read(path, &h, &r, &n, NULL));
        ZT_CHECK(n == 1 + cases[i].with_rademacher &&
                     r[n - 1].dist == (cases[i].with_rademacher ? ZT_DIRECTIONS_RADEMACHER
                                                                : ZT_DIRECTIONS_GAUSSIAN),
                 "%s: %d records read", cases[i].what, n);
        const zt_status s = zt_steplog_check_z_layout(&h, r, n, path);
        if (cases[i].refused)
            ZT_CHECK(s == ZT_ERR_CONFLICT && strstr(zt_last_error(), path) &&
                         strstr(zt_last_error(), "step 1") &&
                         strstr(zt_last_error(), ZT_Z_LAYOUT_CURRENT),
                     "%s: status %d, want a refusal naming the log, the step and the layout: %s",
                     cases[i].what, (int)s, zt_last_error());
        else
            ZT_CHECK(s == ZT_OK, "%s: refused: %s", cases[i].what, zt_last_error());
        free(r);
    }
}

int main(void) {
    char path[] = "/tmp/zt_steplog_XXXXXX";
    int fd = mkstemp(path);
    ZT_REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    unlink(path); /* a new log: open_append writes the header */

    zt_steplog_header header;
    memset(&header, 0, sizeof header);
    snprintf(header.optimizer, sizeof header.optimizer, "zo-adamm");
    snprintf(header.trainable, sizeof header.trainable, "layers.*,!*bias");
    snprintf(header.model, sizeof header.model, "/models/opt \"quoted\" \\ path");
    snprintf(header.compute, sizeof header.compute, "cpu, gemm f32");
    header.state_copies = 3;
    header.run_seed = UINT64_MAX - 7;

    zt_step_record *written = calloc(N_RECORDS, sizeof *written);
    ZT_REQUIRE(written != NULL, "allocation");
    zt_steplog *log = NULL;
    ZT_REQUIRE_OK(zt_steplog_open_append(path, &header, &log));
    for (int i = 0; i < N_RECORDS; i++) {
        random_record(&written[i], i);
        ZT_REQUIRE_OK(zt_steplog_append(log, &written[i]));
    }
    ZT_REQUIRE_OK(zt_steplog_sync(log));
    zt_steplog_close(log);

    zt_steplog_header read_header;
    zt_step_record *read = NULL;
    int n_read = 0, torn = -1;
    ZT_REQUIRE_OK(zt_steplog_read(path, &read_header, &read, &n_read, &torn));
    ZT_CHECK(n_read == N_RECORDS && torn == 0, "read %d records (torn %d), wrote %d", n_read, torn,
             N_RECORDS);
    ZT_CHECK(strcmp(read_header.optimizer, header.optimizer) == 0 &&
                 strcmp(read_header.trainable, header.trainable) == 0 &&
                 strcmp(read_header.model, header.model) == 0 &&
                 strcmp(read_header.compute, header.compute) == 0 &&
                 read_header.state_copies == header.state_copies &&
                 read_header.run_seed == header.run_seed,
             "header fields round-trip");

    char *line_a = malloc(LINE_MAX_BYTES), *line_b = malloc(LINE_MAX_BYTES);
    ZT_REQUIRE(line_a && line_b, "allocation");
    int mismatched = 0, first_bad = -1;
    for (int i = 0; i < n_read && i < N_RECORDS; i++) {
        ZT_REQUIRE_OK(zt_steplog_format(&written[i], line_a, LINE_MAX_BYTES));
        ZT_REQUIRE_OK(zt_steplog_format(&read[i], line_b, LINE_MAX_BYTES));
        int same = records_equal(&written[i], &read[i]) && strcmp(line_a, line_b) == 0;
        if (!same && first_bad < 0) {
            first_bad = i;
            fprintf(stderr, "record %d differs after the round trip:\n  wrote %s\n  read  %s\n", i,
                    line_a, line_b);
        }
        mismatched += !same;
    }
    ZT_CHECK(mismatched == 0, "%d of %d records differ after format -> parse -> format", mismatched,
             n_read);

    free(line_a);
    free(line_b);
    free(read);

    /* A last record that lost its newline (a crash mid-append) is torn for every reader, even
     * though its text parses; reopening cuts it and the step, appended again, closes the log
     * without a gap. */
    FILE *f = fopen(path, "r+b");
    ZT_REQUIRE(f && fseek(f, -1, SEEK_END) == 0 && fgetc(f) == '\n', "log ends with a newline");
    long size = ftell(f);
    fclose(f);
    ZT_REQUIRE(truncate(path, size - 1) == 0, "truncate");
    ZT_REQUIRE_OK(zt_steplog_read(path, &read_header, &read, &n_read, &torn));
    ZT_CHECK(n_read == N_RECORDS - 1 && torn == 1,
             "an unterminated last record: read %d records (torn %d), want %d and torn", n_read,
             torn, N_RECORDS - 1);
    free(read);
    ZT_REQUIRE_OK(zt_steplog_open_append(path, &header, &log));
    ZT_REQUIRE_OK(zt_steplog_append(log, &written[N_RECORDS - 1]));
    zt_steplog_close(log);
    ZT_REQUIRE_OK(zt_steplog_read(path, &read_header, &read, &n_read, &torn));
    int in_order = n_read == N_RECORDS && torn == 0;
    for (int i = 0; in_order && i < n_read; i++)
        in_order = records_equal(&written[i], &read[i]);
    ZT_CHECK(in_order, "after reopening: %d records (torn %d), every step once and in order",
             n_read, torn);
    free(read);
    free(written);
    test_kinds_and_refusals(path);
    test_z_layout(path);
    unlink(path);
    return zt_test_finish("steplog");
}
