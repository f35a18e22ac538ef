/* JSONL reader: records, blank lines, long lines, and path:line in every error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/jsonl.h"
#include "zt_test.h"

static char temp_dir[64];
static char data_path[128];

static void write_text(const char *text) {
    FILE *stream = fopen(data_path, "wb");
    if (!stream || fputs(text, stream) < 0 || fclose(stream) != 0) {
        fprintf(stderr, "FATAL: cannot write %s\n", data_path);
        exit(1);
    }
}

static void test_good_file(void) {
    write_text("{\"text\": \"a\", \"ids\": [1, 2, 3]}\n"
               "\n"
               "   \t\r\n"
               "{\"text\": \"b\", \"ids\": [], \"label\": 0}\r\n"
               "{\"text\": \"c\", \"ids\": [-2147483648, 2147483647, 0]}"); /* no final newline */
    zt_jsonl *reader = NULL;
    ZT_REQUIRE_OK(zt_jsonl_open(data_path, &reader));
    ZT_CHECK(strcmp(zt_jsonl_path(reader), data_path) == 0, "path %s", zt_jsonl_path(reader));

    const char *texts[] = {"a", "b", "c"};
    const int lines[] = {1, 4, 5};
    const int counts[] = {3, 0, 3};
    const int32_t third[] = {INT32_MIN, INT32_MAX, 0};
    for (int r = 0; r < 3; r++) {
        cJSON *record = NULL;
        ZT_CHECK_OK(zt_jsonl_next(reader, &record));
        ZT_CHECK(record != NULL, "record %d missing", r);
        if (!record) break;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(record, "text");
        ZT_CHECK(cJSON_IsString(text) && strcmp(text->valuestring, texts[r]) == 0, "record %d text",
                 r);
        ZT_CHECK(zt_jsonl_line(reader) == lines[r], "record %d on line %d, want %d", r,
                 zt_jsonl_line(reader), lines[r]);
        int32_t *ids = NULL;
        int n = -1;
        ZT_CHECK_OK(zt_jsonl_int_array(reader, record, "ids", &ids, &n));
        ZT_CHECK(n == counts[r] && ids != NULL, "record %d: %d ids", r, n);
        if (r == 0)
            for (int i = 0; i < n; i++)
                ZT_CHECK(ids[i] == i + 1, "ids[%d] = %d", i, ids[i]);
        if (r == 2)
            for (int i = 0; i < n; i++)
                ZT_CHECK(ids[i] == third[i], "ids[%d] = %d", i, ids[i]);
        free(ids);
        cJSON_Delete(record);
    }
    cJSON *end = (cJSON *)0x1;
    ZT_CHECK_OK(zt_jsonl_next(reader, &end));
    ZT_CHECK(end == NULL, "record after the end");
    ZT_CHECK_OK(zt_jsonl_next(reader, &end));
    ZT_CHECK(end == NULL, "end is not sticky");
    zt_jsonl_close(reader);

    write_text("\n\n  \n");
    ZT_REQUIRE_OK(zt_jsonl_open(data_path, &reader));
    ZT_CHECK_OK(zt_jsonl_next(reader, &end));
    ZT_CHECK(end == NULL, "blank file has records");
    zt_jsonl_close(reader);
}

static void test_long_line(void) {
    const int n_ids = 200000; /* about 1.3 MB on one line */
    size_t capacity = (size_t)n_ids * 8 + 64;
    char *text = malloc(capacity);
    size_t len = (size_t)snprintf(text, capacity, "{\"ids\": [");
    for (int i = 0; i < n_ids; i++)
        len += (size_t)snprintf(text + len, capacity - len, "%s%d", i ? "," : "", i);
    snprintf(text + len, capacity - len, "]}\n");
    write_text(text);
    free(text);
    zt_jsonl *reader = NULL;
    cJSON *record = NULL;
    ZT_REQUIRE_OK(zt_jsonl_open(data_path, &reader));
    ZT_REQUIRE_OK(zt_jsonl_next(reader, &record));
    int32_t *ids = NULL;
    int n = 0;
    ZT_CHECK_OK(zt_jsonl_int_array(reader, record, "ids", &ids, &n));
    ZT_CHECK(n == n_ids && ids && ids[n_ids - 1] == n_ids - 1, "long line: %d ids", n);
    free(ids);
    cJSON_Delete(record);
    zt_jsonl_close(reader);
}

/* Reads records until one fails; that failure must carry `status` and the fragments. */
static void expect_record_failure(const char *case_name, const char *text, zt_status status,
                                  const char *location, const char *fragment) {
    write_text(text);
    zt_jsonl *reader = NULL;
    ZT_REQUIRE_OK(zt_jsonl_open(data_path, &reader));
    zt_status got = ZT_OK;
    for (int guard = 0; guard < 100; guard++) {
        cJSON *record = NULL;
        got = zt_jsonl_next(reader, &record);
        if (got != ZT_OK || !record) break;
        cJSON_Delete(record);
    }
    char where[160];
    snprintf(where, sizeof where, "%s:%s", data_path, location);
    ZT_CHECK(got == status, "%s: status %s (%s)", case_name, zt_status_name(got), zt_last_error());
    ZT_CHECK(strstr(zt_last_error(), where) && strstr(zt_last_error(), fragment),
             "%s: message lacks \"%s\" / \"%s\": %s", case_name, where, fragment, zt_last_error());
    zt_jsonl_close(reader);
}

static void expect_array_failure(const char *case_name, const char *record_text, zt_status status,
                                 const char *fragment) {
    char text[256];
    snprintf(text, sizeof text, "{\"ok\": [1]}\n%s\n", record_text);
    write_text(text);
    zt_jsonl *reader = NULL;
    cJSON *record = NULL;
    ZT_REQUIRE_OK(zt_jsonl_open(data_path, &reader));
    ZT_REQUIRE_OK(zt_jsonl_next(reader, &record));
    cJSON_Delete(record);
    ZT_REQUIRE_OK(zt_jsonl_next(reader, &record));
    int32_t *ids = (int32_t *)0x1;
    int n = -1;
    zt_status got = zt_jsonl_int_array(reader, record, "ids", &ids, &n);
    char where[160];
    snprintf(where, sizeof where, "%s:2:", data_path);
    ZT_CHECK(got == status, "%s: status %s (%s)", case_name, zt_status_name(got), zt_last_error());
    ZT_CHECK(strstr(zt_last_error(), where) && strstr(zt_last_error(), "\"ids\"") &&
                 strstr(zt_last_error(), fragment),
             "%s: message: %s", case_name, zt_last_error());
    ZT_CHECK(ids == NULL && n == 0, "%s: outputs not reset", case_name);
    cJSON_Delete(record);
    zt_jsonl_close(reader);
}

static void test_errors(void) {
    const zt_status F = ZT_ERR_FORMAT;
    expect_record_failure("invalid JSON", "{\"a\": 1}\n{\"a\": 2}\n{\"a\": \n{\"a\": 4}\n", F,
                          "3:", "invalid JSON");
    expect_record_failure("invalid after blank lines", "{\"a\": 1}\n\n{\"a\" 3}\n", F,
                          "3:", "invalid JSON");
    expect_record_failure("trailing garbage", "{\"a\": 1} x\n", F, "1:", "invalid JSON");
    expect_record_failure("two objects", "{\"a\": 1}{\"a\": 2}\n", F, "1:", "invalid JSON");
    expect_record_failure("array record", "{\"a\": 1}\n[1, 2]\n", F, "2:", "not a JSON object");
    expect_record_failure("string record", "\"text\"\n", F, "1:", "not a JSON object");
    expect_record_failure("number record", "\n\n\n\n42\n", F, "5:", "not a JSON object");
    /* cJSON would keep the first "ids", Python's json the last: refused, not guessed */
    expect_record_failure("duplicate key", "{\"a\": 1}\n{\"ids\": [1], \"ids\": [2]}\n", F, "2:",
                          "key \"ids\" appears twice");
    expect_record_failure("nested duplicate key",
                          "{\"x\": {\"k\": 1, \"j\": [{\"y\": 1, \"y\": 2}]}}\n", F, "1:",
                          "key \"y\" appears twice");
    /* objects of more than 16 keys are checked by sorting */
    char wide[512] = "{";
    for (int k = 0; k < 24; k++)
        snprintf(wide + strlen(wide), sizeof wide - strlen(wide), "%s\"k%d\": %d", k ? ", " : "",
                 k == 23 ? 5 : k, k);
    strcat(wide, "}\n");
    expect_record_failure("duplicate among 24 keys", wide, F, "1:", "key \"k5\" appears twice");

    expect_array_failure("missing key", "{\"other\": [1]}", ZT_ERR_MISSING, "missing key");
    expect_array_failure("not an array", "{\"ids\": 5}", F, "not an array");
    expect_array_failure("object value", "{\"ids\": {\"a\": 1}}", F, "not an array");
    expect_array_failure("string element", "{\"ids\": [1, \"2\"]}", F,
                         "element 1 is not an integer");
    expect_array_failure("fraction element", "{\"ids\": [1, 2, 3.5]}", F,
                         "element 2 is not an integer");
    expect_array_failure("null element", "{\"ids\": [null]}", F, "element 0 is not an integer");
    expect_array_failure("nested element", "{\"ids\": [[1]]}", F, "element 0 is not an integer");
    expect_array_failure("too large", "{\"ids\": [2147483648]}", F, "out of int32 range");
    expect_array_failure("too small", "{\"ids\": [0, -2147483649]}", F,
                         "element 1 = -2147483649 is out of int32 range");
    expect_array_failure("infinite", "{\"ids\": [1e999]}", F, "element 0 is not an integer");

    zt_jsonl *reader = (zt_jsonl *)0x1;
    char absent[160];
    snprintf(absent, sizeof absent, "%s/absent.jsonl", temp_dir);
    ZT_CHECK(zt_jsonl_open(absent, &reader) == ZT_ERR_MISSING && reader == NULL,
             "absent file opened");
    ZT_CHECK(strstr(zt_last_error(), absent) != NULL, "open message: %s", zt_last_error());
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/zt_test_jsonl_XXXXXX");
    if (!mkdtemp(temp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data_path, sizeof data_path, "%s/data.jsonl", temp_dir);
    test_good_file();
    test_long_line();
    test_errors();
    unlink(data_path);
    rmdir(temp_dir);
    return zt_test_finish("test_jsonl");
}
