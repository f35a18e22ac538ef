/* safetensors reader and writer: round trips, sharded directories, every malformed header the
 * reader must refuse (status and message), and a truncation / byte-flip robustness sweep. */
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "io/safetensors.h"
#include "zt_test.h"

static char temp_dir[64];

static void path_in(char *out, size_t out_size, const char *name) {
    snprintf(out, out_size, "%s/%s", temp_dir, name);
}

static void remove_tree(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) {
        unlink(path);
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        char child[512];
        snprintf(child, sizeof child, "%s/%s", path, entry->d_name);
        remove_tree(child);
    }
    closedir(dir);
    rmdir(path);
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *stream = fopen(path, "wb");
    if (!stream || fwrite(bytes, 1, n, stream) != n || fclose(stream) != 0) {
        fprintf(stderr, "FATAL: cannot write %s\n", path);
        exit(1);
    }
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *stream = fopen(path, "rb");
    if (!stream) return NULL;
    fseek(stream, 0, SEEK_END);
    long size = ftell(stream);
    fseek(stream, 0, SEEK_SET);
    uint8_t *bytes = malloc((size_t)size + 1);
    *n = fread(bytes, 1, (size_t)size, stream);
    fclose(stream);
    return bytes;
}

static bool file_exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0;
}

/* A raw file: 8-byte length (declared_length, or the header's length when UINT64_MAX), the
 * header text, then data_bytes bytes of data. */
static void write_raw(const char *path, const char *header, uint64_t declared_length,
                      size_t data_bytes) {
    size_t header_bytes = strlen(header);
    uint64_t length = declared_length == UINT64_MAX ? header_bytes : declared_length;
    size_t n = 8 + header_bytes + data_bytes;
    uint8_t *bytes = calloc(n, 1);
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)(length >> (8 * i));
    memcpy(bytes + 8, header, header_bytes);
    for (size_t i = 0; i < data_bytes; i++)
        bytes[8 + header_bytes + i] = (uint8_t)i;
    write_bytes(path, bytes, n);
    free(bytes);
}

/* The open must fail with `status`, and the message must name the file and contain every one of
 * the NULL-terminated fragments. */
static void expect_open_failure(const char *case_name, const char *path, zt_status status, ...) {
    zt_safetensors *st = (zt_safetensors *)0x1;
    zt_clear_error();
    zt_status got = zt_st_open(path, &st);
    const char *message = zt_last_error();
    ZT_CHECK(got == status, "%s: status %s, want %s (%s)", case_name, zt_status_name(got),
             zt_status_name(status), message);
    ZT_CHECK(st == NULL, "%s: *out not reset on failure", case_name);
    ZT_CHECK(strstr(message, path) != NULL, "%s: message does not name the file: %s", case_name,
             message);
    va_list fragments;
    va_start(fragments, status);
    for (const char *fragment = va_arg(fragments, const char *); fragment;
         fragment = va_arg(fragments, const char *))
        ZT_CHECK(strstr(message, fragment) != NULL, "%s: message lacks \"%s\": %s", case_name,
                 fragment, message);
    va_end(fragments);
    if (got == ZT_OK) zt_st_close(st);
}

static void raw_case(const char *case_name, const char *header, size_t data_bytes, zt_status status,
                     const char *fragment1, const char *fragment2, const char *fragment3) {
    char path[256];
    path_in(path, sizeof path, "bad.safetensors");
    write_raw(path, header, UINT64_MAX, data_bytes);
    expect_open_failure(case_name, path, status, fragment1, fragment2, fragment3, (char *)NULL);
}

#define ENTRY(name, dtype, shape, begin, end)                                                      \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #begin "," #end \
    "]}"

static void test_malformed(void) {
    char path[256];
    path_in(path, sizeof path, "bad.safetensors");
    const zt_status F = ZT_ERR_FORMAT;

    write_bytes(path, "\x05\0\0\0\0", 5);
    expect_open_failure("short file", path, F, "shorter than the 8-byte", (char *)NULL);
    write_bytes(path, "", 0);
    expect_open_failure("empty file", path, F, "0 bytes", (char *)NULL);

    write_raw(path, "{}", 0, 0);
    expect_open_failure("zero header length", path, F, "header length is 0", (char *)NULL);
    write_raw(path, "{}", 100000001, 0);
    expect_open_failure("huge header length", path, F, "100000001", "exceeds the limit",
                        (char *)NULL);
    write_raw(path, "{}      ", 9, 0);
    expect_open_failure("header past end", path, F, "runs past the end", (char *)NULL);
    char missing[256];
    path_in(missing, sizeof missing, "absent.safetensors");
    expect_open_failure("missing file", missing, ZT_ERR_MISSING, "cannot open", (char *)NULL);
    expect_open_failure("directory", temp_dir, ZT_ERR_IO, "not a regular file", (char *)NULL);

    raw_case("not a brace", "PK\x03\x04zip", 0, F, "does not start with '{'", NULL, NULL);
    raw_case("leading space", " {}     ", 0, F, "does not start with '{'", NULL, NULL);
    raw_case("top level array", "[1,2]   ", 0, F, "top level is not a JSON object", NULL, NULL);
    raw_case("invalid JSON", "{\"a\":  ", 0, F, "not valid JSON", NULL, NULL);
    raw_case("trailing garbage", "{} x    ", 0, F, "not valid JSON", NULL, NULL);
    raw_case("invalid UTF-8", "{\"\xff\":1}", 0, F, "not valid UTF-8", NULL, NULL);
    {
        const char header[] = "{}\0     ";
        uint8_t bytes[8 + sizeof header - 1];
        memset(bytes, 0, 8);
        bytes[0] = sizeof header - 1;
        memcpy(bytes + 8, header, sizeof header - 1);
        write_bytes(path, bytes, sizeof bytes);
        expect_open_failure("NUL in header", path, F, "NUL byte", (char *)NULL);
    }

    raw_case("entry not object", "{\"w\":5}", 0, F, "'w'", "not a JSON object", NULL);
    raw_case("missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, F, "'w'",
             "missing \"dtype\"", NULL);
    raw_case("missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, F, "'w'",
             "missing \"shape\"", NULL);
    raw_case("missing data_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, F, "'w'",
             "missing \"data_offsets\"", NULL);
    raw_case("repeated field",
             "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
             4, F, "'w'", "\"dtype\" appears twice", NULL);
    raw_case("dtype not string", "{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
             F, "'w'", "\"dtype\" is not a string", NULL);
    raw_case("unknown dtype", "{" ENTRY("w", "F33", "[1]", 0, 4) "}", 4, F, "'w'",
             "unknown dtype \"F33\"", NULL);
    raw_case("lowercase dtype", "{" ENTRY("w", "f32", "[1]", 0, 4) "}", 4, F, "'w'",
             "unknown dtype \"f32\"", NULL);
    raw_case("shape not array", "{" ENTRY("w", "F32", "4", 0, 4) "}", 4, F, "'w'",
             "\"shape\" is not an array", NULL);
    raw_case("negative dim", "{" ENTRY("w", "F32", "[2,-1]", 0, 4) "}", 4, F, "'w'",
             "dimension 1 is not a non-negative integer", NULL);
    raw_case("fractional dim", "{" ENTRY("w", "F32", "[1.5]", 0, 4) "}", 4, F, "'w'",
             "dimension 0 is not a non-negative integer", NULL);
    raw_case("string dim", "{" ENTRY("w", "F32", "[\"1\"]", 0, 4) "}", 4, F, "'w'",
             "dimension 0 is not a non-negative integer", NULL);
    raw_case("huge dim", "{" ENTRY("w", "F32", "[1e300]", 0, 4) "}", 4, F, "'w'",
             "dimension 0 is not a non-negative integer", NULL);
    raw_case("nine dims", "{" ENTRY("w", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, F, "'w'",
             "9 dimensions", NULL);
    raw_case("shape overflow", "{" ENTRY("w", "U8", "[4294967296,4294967296,4294967296]", 0, 4) "}",
             4, F, "'w'", "overflows", NULL);
    raw_case("bit count overflow", "{" ENTRY("w", "F64", "[2147483648,4294967296]", 0, 4) "}", 4, F,
             "'w'", "overflows", NULL);
    raw_case("offsets one value", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}",
             4, F, "'w'", "not two non-negative integers", NULL);
    raw_case("offsets three values",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, F, "'w'",
             "not two non-negative integers", NULL);
    raw_case("offsets not array", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":4}}", 4,
             F, "'w'", "not two non-negative integers", NULL);
    raw_case("negative offset", "{" ENTRY("w", "F32", "[1]", -4, 0) "}", 4, F, "'w'",
             "not two non-negative integers", NULL);
    raw_case("begin after end", "{" ENTRY("w", "F32", "[1]", 8, 4) "}", 8, F, "'w'",
             "begin 8 is after end 4", NULL);
    raw_case("byte size mismatch", "{" ENTRY("w", "F32", "[2,2]", 0, 12) "}", 12, F, "'w'",
             "hold 12 bytes", "need 16 bytes");
    raw_case("partial byte", "{" ENTRY("w", "F4", "[3]", 0, 2) "}", 2, F, "'w'",
             "12 bits, not a whole number of bytes", NULL);
    raw_case("duplicate name",
             "{" ENTRY("dup", "F32", "[1]", 0, 4) "," ENTRY("dup", "F32", "[1]", 4, 8) "}", 8, F,
             "'dup'", "appears twice", NULL);
    raw_case("first not at zero", "{" ENTRY("w", "F32", "[1]", 4, 8) "}", 8, F, "'w'",
             "must start at 0", NULL);
    raw_case("hole", "{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("b", "F32", "[1]", 8, 12) "}", 12,
             F, "hole of 4 bytes", "'a'", "'b'");
    raw_case("overlap", "{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[1]", 4, 8) "}",
             8, F, "'a'", "'b'", "overlap");
    raw_case("trailing bytes", "{" ENTRY("w", "F32", "[1]", 0, 4) "}", 6, F, "2 trailing bytes",
             NULL, NULL);
    raw_case("no tensors, data left", "{}      ", 3, F, "3 trailing bytes", NULL, NULL);
    raw_case("truncated data", "{" ENTRY("w", "F32", "[4]", 0, 16) "}", 10, F, "truncated",
             "6 missing", NULL);
    raw_case("metadata not object",
             "{\"__metadata__\":[\"pt\"]," ENTRY("w", "F32", "[1]", 0, 4) "}", 4, F,
             "\"__metadata__\" is not a JSON object", NULL, NULL);
    raw_case("metadata null", "{\"__metadata__\":null," ENTRY("w", "F32", "[1]", 0, 4) "}", 4, F,
             "\"__metadata__\" is not a JSON object", NULL, NULL);
    raw_case("metadata value not string",
             "{\"__metadata__\":{\"total\":5}," ENTRY("w", "F32", "[1]", 0, 4) "}", 4, F,
             "\"total\"", "is not a string", NULL);
    raw_case("metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, F,
             "\"__metadata__\" appears twice", NULL, NULL);

    /* What the format allows must still open: unpadded header, zero tensors, empty tensors. */
    write_raw(path, "{" ENTRY("w", "F32", "[1]", 0, 4) "}", UINT64_MAX, 4);
    zt_safetensors *st = NULL;
    ZT_CHECK_OK(zt_st_open(path, &st));
    zt_st_close(st);
    write_raw(path, "{}", UINT64_MAX, 0);
    ZT_CHECK_OK(zt_st_open(path, &st));
    ZT_CHECK(st && zt_st_count(st) == 0, "empty file has tensors");
    zt_st_close(st);
    write_raw(path,
              "{" ENTRY("e1", "F16", "[0]", 0, 0) "," ENTRY("w", "F32", "[1]", 0, 4) "," ENTRY(
                  "e2", "BF16", "[3,0]", 4, 4) "}",
              UINT64_MAX, 4);
    ZT_CHECK_OK(zt_st_open(path, &st));
    ZT_CHECK(st && zt_st_count(st) == 3, "empty tensors not kept");
    zt_st_close(st);
    unlink(path);
}

/* ---- round trip ---- */

static uint16_t to_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return (uint16_t)(bits >> 16);
}

static void test_round_trip(void) {
    char path[256];
    path_in(path, sizeof path, "round.safetensors");
    float f32[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-20f, -1e20f};
    uint16_t f16[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};
    uint16_t bf16[3] = {to_bf16(1.5f), to_bf16(-0.125f), to_bf16(65504.0f)};
    int32_t i32[1] = {-123456789};
    int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
    const int64_t shape_f32[] = {2, 3}, shape_f16[] = {4}, shape_bf16[] = {3, 1}, shape_i64[] = {3},
                  shape_empty[] = {2, 0};
    /* Deliberately not in name order: the writer keeps the given order, the reader sorts. */
    const zt_st_write_tensor tensors[] = {
        {"model.decoder.z_f32", "F32", 2, shape_f32, f32},
        {"a_f16", "F16", 1, shape_f16, f16},
        {"m_bf16", "BF16", 2, shape_bf16, bf16},
        {"scalar_i32", "I32", 0, NULL, i32},
        {"empty \"quoted\" \xc3\xbc", "I64", 2, shape_empty, NULL},
        {"b_i64", "I64", 1, shape_i64, i64},
    };
    const int n = (int)(sizeof tensors / sizeof tensors[0]);
    const char *metadata[] = {"format",         "pt",
                              "lm_head.weight", "model.decoder.embed_tokens.weight",
                              "odd\\key\n",     "tab\there"};
    ZT_REQUIRE_OK(zt_st_write(path, tensors, n, metadata, 3));

    char tmp_path[300];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
    ZT_CHECK(!file_exists(tmp_path), "%s left behind", tmp_path);

    size_t file_bytes = 0;
    uint8_t *bytes = read_bytes(path, &file_bytes);
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--)
        header_bytes = (header_bytes << 8) | bytes[i];
    ZT_CHECK(header_bytes % 8 == 0, "header length %llu not a multiple of 8",
             (unsigned long long)header_bytes);
    ZT_CHECK(bytes[8] == '{', "header starts with 0x%02x", bytes[8]);
    size_t data_bytes = sizeof f32 + sizeof f16 + sizeof bf16 + sizeof i32 + sizeof i64;
    ZT_CHECK(file_bytes == 8 + header_bytes + data_bytes, "file is %zu bytes, want %llu",
             file_bytes, (unsigned long long)(8 + header_bytes + data_bytes));
    /* The given order is the data order: the first tensor's data follows the header. */
    ZT_CHECK(memcmp(bytes + 8 + header_bytes, f32, sizeof f32) == 0, "F32 data not first");
    free(bytes);

    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    ZT_CHECK(zt_st_count(st) == n, "count %d want %d", zt_st_count(st), n);
    for (int i = 1; i < zt_st_count(st); i++)
        ZT_CHECK(strcmp(zt_st_get(st, i - 1)->name, zt_st_get(st, i)->name) < 0,
                 "not in name order at %d", i);
    ZT_CHECK(zt_st_get(st, -1) == NULL && zt_st_get(st, n) == NULL, "out-of-range get");
    for (int i = 0; i < n; i++) {
        const zt_st_write_tensor *want = &tensors[i];
        const zt_st_tensor *got = zt_st_find(st, want->name);
        ZT_CHECK(got != NULL, "tensor %s not found", want->name);
        if (!got) continue;
        ZT_CHECK(strcmp(got->dtype, want->dtype) == 0, "%s dtype %s", want->name, got->dtype);
        ZT_CHECK(got->n_dims == want->n_dims, "%s rank %d", want->name, got->n_dims);
        uint64_t n_elems = 1;
        for (int d = 0; d < want->n_dims; d++) {
            ZT_CHECK(got->shape[d] == want->shape[d], "%s dim %d", want->name, d);
            n_elems *= (uint64_t)want->shape[d];
        }
        ZT_CHECK(got->n_elems == n_elems, "%s n_elems %llu", want->name,
                 (unsigned long long)got->n_elems);
        ZT_CHECK(got->n_bytes == n_elems * (uint64_t)got->element_bits / 8, "%s n_bytes %zu",
                 want->name, got->n_bytes);
        ZT_CHECK(got->n_bytes == 0 || memcmp(got->data, want->data, got->n_bytes) == 0,
                 "%s data differs", want->name);
        ZT_CHECK(got->file_path && strcmp(got->file_path, path) == 0, "%s file_path", want->name);
    }
    ZT_CHECK(zt_st_find(st, "scalar_i32")->n_elems == 1, "scalar has one element");
    ZT_CHECK(zt_st_find(st, "absent") == NULL, "absent tensor found");
    ZT_CHECK(zt_st_find(st, "") == NULL, "empty name found");
    const char *format = zt_st_metadata(st, "format");
    ZT_CHECK(format && strcmp(format, "pt") == 0, "metadata format = %s", format);
    const char *odd = zt_st_metadata(st, "odd\\key\n");
    ZT_CHECK(odd && strcmp(odd, "tab\there") == 0, "escaped metadata = %s", odd);
    ZT_CHECK(zt_st_metadata(st, "absent") == NULL, "absent metadata found");

    zt_dtype dtype;
    ZT_CHECK(zt_st_storage_dtype(zt_st_find(st, "model.decoder.z_f32"), &dtype) == ZT_OK &&
                 dtype == ZT_F32,
             "F32 storage dtype");
    ZT_CHECK(zt_st_storage_dtype(zt_st_find(st, "a_f16"), &dtype) == ZT_OK && dtype == ZT_F16,
             "F16 storage dtype");
    ZT_CHECK(zt_st_storage_dtype(zt_st_find(st, "m_bf16"), &dtype) == ZT_OK && dtype == ZT_BF16,
             "BF16 storage dtype");
    ZT_CHECK(zt_st_storage_dtype(zt_st_find(st, "b_i64"), &dtype) == ZT_ERR_FORMAT,
             "I64 accepted as storage dtype");
    ZT_CHECK(strstr(zt_last_error(), "b_i64") && strstr(zt_last_error(), "I64") &&
                 strstr(zt_last_error(), path),
             "storage dtype message: %s", zt_last_error());
    zt_st_close(st);

    /* Rewriting replaces the file atomically and without metadata. */
    ZT_REQUIRE_OK(zt_st_write(path, tensors, 1, NULL, 0));
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    ZT_CHECK(zt_st_count(st) == 1 && zt_st_metadata(st, "format") == NULL, "rewrite");
    zt_st_close(st);

    /* An empty file list is a valid file. */
    ZT_REQUIRE_OK(zt_st_write(path, NULL, 0, NULL, 0));
    ZT_REQUIRE_OK(zt_st_open(path, &st));
    ZT_CHECK(zt_st_count(st) == 0, "empty write");
    zt_st_close(st);
    unlink(path);
}

static void expect_write_failure(const char *case_name, const char *path,
                                 const zt_st_write_tensor *tensors, int n, const char **metadata,
                                 int n_metadata, zt_status status, const char *fragment) {
    zt_status got = zt_st_write(path, tensors, n, metadata, n_metadata);
    ZT_CHECK(got == status, "%s: status %s (%s)", case_name, zt_status_name(got), zt_last_error());
    ZT_CHECK(strstr(zt_last_error(), path) && strstr(zt_last_error(), fragment), "%s: message: %s",
             case_name, zt_last_error());
    ZT_CHECK(!file_exists(path), "%s: file created", case_name);
}

static void test_write_errors(void) {
    char path[256], bad_dir_path[256];
    path_in(path, sizeof path, "never.safetensors");
    path_in(bad_dir_path, sizeof bad_dir_path, "no_such_dir/x.safetensors");
    float values[2] = {1, 2};
    const int64_t shape[] = {2}, negative[] = {-2};
    const zt_st_write_tensor good = {"w", "F32", 1, shape, values};
    const zt_st_write_tensor twice[] = {good, good};
    const zt_st_write_tensor unknown = {"w", "F31", 1, shape, values};
    const zt_st_write_tensor bad_dim = {"w", "F32", 1, negative, values};
    const zt_st_write_tensor no_data = {"w", "F32", 1, shape, NULL};
    const zt_st_write_tensor reserved = {"__metadata__", "F32", 1, shape, values};
    const char *meta_twice[] = {"k", "v", "k", "w"};
    expect_write_failure("duplicate", path, twice, 2, NULL, 0, ZT_ERR_INVALID_ARG, "'w'");
    expect_write_failure("unknown dtype", path, &unknown, 1, NULL, 0, ZT_ERR_INVALID_ARG, "F31");
    expect_write_failure("negative dim", path, &bad_dim, 1, NULL, 0, ZT_ERR_INVALID_ARG,
                         "dimension");
    expect_write_failure("no data", path, &no_data, 1, NULL, 0, ZT_ERR_INVALID_ARG, "NULL");
    expect_write_failure("reserved name", path, &reserved, 1, NULL, 0, ZT_ERR_INVALID_ARG,
                         "__metadata__");
    expect_write_failure("metadata twice", path, &good, 1, meta_twice, 2, ZT_ERR_INVALID_ARG,
                         "'k'");
    expect_write_failure("missing directory", bad_dir_path, &good, 1, NULL, 0, ZT_ERR_IO,
                         "cannot create");
}

/* ---- sharded directories ---- */

static void write_index(const char *dir, const char *weight_map_json) {
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *stream = fopen(path, "w");
    fprintf(stream, "{\"metadata\": {\"total_size\": 40}, \"weight_map\": %s}\n", weight_map_json);
    fclose(stream);
}

static const char shard1[] = "model-00001-of-00002.safetensors";
static const char shard2[] = "model-00002-of-00002.safetensors";

static const char good_map[] = "{\"decoder.a\": \"model-00001-of-00002.safetensors\", "
                               "\"decoder.b\": \"model-00001-of-00002.safetensors\", "
                               "\"decoder.c\": \"model-00002-of-00002.safetensors\"}";

static void expect_dir_failure(const char *case_name, const char *dir, zt_status status,
                               const char *fragment1, const char *fragment2) {
    zt_safetensors *st = (zt_safetensors *)0x1;
    zt_status got = zt_st_open_dir(dir, &st);
    const char *message = zt_last_error();
    ZT_CHECK(got == status, "%s: status %s, want %s (%s)", case_name, zt_status_name(got),
             zt_status_name(status), message);
    ZT_CHECK(st == NULL, "%s: *out not reset", case_name);
    ZT_CHECK(strstr(message, dir) != NULL, "%s: message lacks the directory: %s", case_name,
             message);
    ZT_CHECK(strstr(message, fragment1) != NULL, "%s: message lacks \"%s\": %s", case_name,
             fragment1, message);
    ZT_CHECK(!fragment2 || strstr(message, fragment2) != NULL, "%s: message lacks \"%s\": %s",
             case_name, fragment2, message);
    if (got == ZT_OK) zt_st_close(st);
}

static void test_sharded(void) {
    char dir[128], path[300];
    snprintf(dir, sizeof dir, "%s/model", temp_dir);
    mkdir(dir, 0755);

    expect_dir_failure("empty directory", dir, ZT_ERR_MISSING, "model.safetensors.index.json",
                       "/model.safetensors ");

    float a[4] = {1, 2, 3, 4}, c[3] = {7, 8, 9};
    uint16_t b[2] = {0x3C00, 0x4000};
    const int64_t shape_a[] = {2, 2}, shape_b[] = {2}, shape_c[] = {3};
    const zt_st_write_tensor first[] = {{"decoder.a", "F32", 2, shape_a, a},
                                        {"decoder.b", "F16", 1, shape_b, b}};
    const zt_st_write_tensor second[] = {{"decoder.c", "F32", 1, shape_c, c}};
    const char *metadata[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/%s", dir, shard1);
    ZT_REQUIRE_OK(zt_st_write(path, first, 2, metadata, 1));
    snprintf(path, sizeof path, "%s/%s", dir, shard2);
    ZT_REQUIRE_OK(zt_st_write(path, second, 1, NULL, 0));
    write_index(dir, good_map);

    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open_dir(dir, &st));
    ZT_CHECK(zt_st_count(st) == 3, "sharded count %d", zt_st_count(st));
    const char *want_names[] = {"decoder.a", "decoder.b", "decoder.c"};
    for (int i = 0; i < 3 && i < zt_st_count(st); i++)
        ZT_CHECK(strcmp(zt_st_get(st, i)->name, want_names[i]) == 0, "order %d: %s", i,
                 zt_st_get(st, i)->name);
    const zt_st_tensor *tc = zt_st_find(st, "decoder.c");
    ZT_CHECK(tc && memcmp(tc->data, c, sizeof c) == 0, "decoder.c data");
    ZT_CHECK(tc && strstr(tc->file_path, shard2), "decoder.c file_path %s", tc->file_path);
    const zt_st_tensor *tb = zt_st_find(st, "decoder.b");
    ZT_CHECK(tb && memcmp(tb->data, b, sizeof b) == 0 && strstr(tb->file_path, shard1),
             "decoder.b data / file_path");
    const char *format = zt_st_metadata(st, "format");
    ZT_CHECK(format && strcmp(format, "pt") == 0, "first shard metadata: %s", format);
    zt_st_close(st);

    write_index(dir, "{\"decoder.a\": \"model-00001-of-00002.safetensors\", "
                     "\"decoder.b\": \"model-00001-of-00002.safetensors\", "
                     "\"decoder.c\": \"model-00002-of-00002.safetensors\", "
                     "\"decoder.d\": \"model-00002-of-00002.safetensors\"}");
    expect_dir_failure("index tensor not in shard", dir, ZT_ERR_MISSING, "'decoder.d'", shard2);

    write_index(dir, "{\"decoder.a\": \"model-00001-of-00002.safetensors\", "
                     "\"decoder.c\": \"model-00002-of-00002.safetensors\"}");
    expect_dir_failure("shard tensor not in index", dir, ZT_ERR_FORMAT, "'decoder.b'",
                       "not listed");

    write_index(dir, "{\"decoder.a\": \"model-00001-of-00002.safetensors\", "
                     "\"decoder.b\": \"model-00002-of-00002.safetensors\", "
                     "\"decoder.c\": \"model-00002-of-00002.safetensors\"}");
    expect_dir_failure("tensor in another shard", dir, ZT_ERR_FORMAT, "'decoder.b'", "maps it to");

    write_index(dir, "{\"decoder.a\": \"../model-00001-of-00002.safetensors\"}");
    expect_dir_failure("parent shard path", dir, ZT_ERR_FORMAT, "not a plain file name", NULL);
    write_index(dir, "{\"decoder.a\": \"sub/x.safetensors\"}");
    expect_dir_failure("slash in shard", dir, ZT_ERR_FORMAT, "not a plain file name", NULL);
    write_index(dir, "{\"decoder.a\": \"..\"}");
    expect_dir_failure("dot-dot shard", dir, ZT_ERR_FORMAT, "not a plain file name", NULL);
    write_index(dir, "{\"decoder.a\": 3}");
    expect_dir_failure("shard not string", dir, ZT_ERR_FORMAT, "'decoder.a'", "not a string");
    write_index(dir, "{\"decoder.x\": \"model-00003-of-00003.safetensors\"}");
    expect_dir_failure("missing shard", dir, ZT_ERR_MISSING, "model-00003-of-00003.safetensors",
                       "does not exist");
    write_index(dir, "{}");
    expect_dir_failure("empty weight_map", dir, ZT_ERR_FORMAT, "empty", NULL);
    write_index(dir, "{\"decoder.a\": \"model-00001-of-00002.safetensors\", "
                     "\"decoder.a\": \"model-00001-of-00002.safetensors\"}");
    expect_dir_failure("index duplicate", dir, ZT_ERR_FORMAT, "'decoder.a' twice", NULL);
    write_index(dir, "[]");
    expect_dir_failure("weight_map not object", dir, ZT_ERR_FORMAT, "not a JSON object", NULL);

    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_bytes(path, "{\"weight_map\": {", 16);
    expect_dir_failure("index invalid JSON", dir, ZT_ERR_FORMAT, "invalid JSON", NULL);
    write_bytes(path, "{\"metadata\": {}}", 16);
    expect_dir_failure("index without weight_map", dir, ZT_ERR_FORMAT, "missing \"weight_map\"",
                       NULL);

    /* A damaged shard is reported by its own path. */
    write_index(dir, good_map);
    snprintf(path, sizeof path, "%s/%s", dir, shard2);
    write_raw(path, "{" ENTRY("decoder.c", "F32", "[3]", 0, 12) "}", UINT64_MAX, 8);
    expect_dir_failure("truncated shard", dir, ZT_ERR_FORMAT, shard2, "truncated");

    /* Without an index, model.safetensors is used. */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ZT_REQUIRE_OK(zt_st_write(path, first, 2, NULL, 0));
    ZT_REQUIRE_OK(zt_st_open_dir(dir, &st));
    ZT_CHECK(zt_st_count(st) == 2 && zt_st_find(st, "decoder.a"), "single-file directory");
    zt_st_close(st);
}

/* ---- robustness ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void check_open_outcome(const char *path, const char *what, size_t at) {
    zt_safetensors *st = NULL;
    zt_clear_error();
    zt_status status = zt_st_open(path, &st);
    if (status == ZT_OK) {
        /* Whatever it accepted must be internally consistent. */
        for (int i = 0; i < zt_st_count(st); i++) {
            const zt_st_tensor *t = zt_st_get(st, i);
            volatile uint8_t sum = 0;
            for (size_t b = 0; b < t->n_bytes; b++)
                sum += t->data[b];
            (void)sum;
        }
        zt_st_close(st);
        return;
    }
    bool named = strstr(zt_last_error(), path) != NULL;
    ZT_CHECK(named && st == NULL, "%s at %zu: status %s, message \"%s\"", what, at,
             zt_status_name(status), zt_last_error());
}

static void test_robustness(void) {
    char path[256], source[256];
    path_in(source, sizeof source, "source.safetensors");
    path_in(path, sizeof path, "mutant.safetensors");
    float values[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[] = {2, 3}, shape_small[] = {2};
    const zt_st_write_tensor tensors[] = {{"alpha", "F32", 2, shape, values},
                                          {"beta", "F16", 1, shape_small, values},
                                          {"gamma", "I8", 1, shape_small, values}};
    const char *metadata[] = {"format", "pt"};
    ZT_REQUIRE_OK(zt_st_write(source, tensors, 3, metadata, 1));
    size_t n = 0;
    uint8_t *original = read_bytes(source, &n);
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--)
        header_bytes = (header_bytes << 8) | original[i];

    int accepted = 0;
    for (size_t length = 0; length <= n; length++) {
        write_bytes(path, original, length);
        zt_safetensors *st = NULL;
        zt_status status = zt_st_open(path, &st);
        accepted += status == ZT_OK;
        zt_st_close(st);
        check_open_outcome(path, "truncated", length);
    }
    ZT_CHECK(accepted == 1, "%d truncations accepted, want only the full file", accepted);

    uint8_t *mutant = malloc(n);
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(mutant, original, n);
        int flips = 1 + (int)(next_random() % 3);
        size_t at = 0;
        for (int f = 0; f < flips; f++) {
            at = (size_t)(next_random() % (8 + header_bytes));
            uint8_t value = (uint8_t)next_random();
            /* Half the flips write characters JSON cares about, to get past the parser. */
            static const char interesting[] = "{}[]\",:0123456789-.e ";
            if (next_random() & 1) value = (uint8_t)interesting[next_random() % 21];
            mutant[at] = value;
        }
        write_bytes(path, mutant, n);
        check_open_outcome(path, "flip", at);
    }
    free(mutant);
    free(original);
    unlink(path);
    unlink(source);
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/zt_test_st_XXXXXX");
    if (!mkdtemp(temp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_write_errors();
    test_malformed();
    test_sharded();
    test_robustness();
    remove_tree(temp_dir);
    return zt_test_finish("test_safetensors");
}
