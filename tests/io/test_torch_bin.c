/* PyTorch checkpoints (pytorch_model.bin): the tensor table the reader makes of torch-written
 * fixtures (tools/make_bin_fixtures.py), and every refusal with its message: malicious pickles
 * (globals off the allow-list, INST), files torch writes that zotune does not read (legacy
 * format, deflated entries, non-contiguous tensors), corruptions made here from a good file,
 * and hand-assembled pickles that break the machine's rules. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/fixture.h"
#include "io/pickle_read.h"
#include "zt_test.h"

static char temp_dir[64];

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *stream = fopen(path, "rb");
    ZT_REQUIRE(stream != NULL, "cannot read %s", path);
    fseek(stream, 0, SEEK_END);
    long size = ftell(stream);
    fseek(stream, 0, SEEK_SET);
    uint8_t *bytes = malloc((size_t)size + 1);
    *n = fread(bytes, 1, (size_t)size, stream);
    fclose(stream);
    return bytes;
}

/* temp_dir/pytorch_model.bin := bytes (the directory holds nothing else). */
static void put_checkpoint(const uint8_t *bytes, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/pytorch_model.bin", temp_dir);
    FILE *stream = fopen(path, "wb");
    ZT_REQUIRE(stream && fwrite(bytes, 1, n, stream) == n && fclose(stream) == 0, "cannot write %s",
               path);
}

static void expect_refused(const char *label, const char *want1, const char *want2) {
    zt_safetensors *st = NULL;
    zt_status s = zt_st_open_dir(temp_dir, &st);
    const char *message = zt_last_error();
    ZT_CHECK(s == ZT_ERR_FORMAT && st == NULL, "%s: accepted or wrong status %s (%s)", label,
             zt_status_name(s), message);
    ZT_CHECK(strstr(message, "pytorch_model.bin") != NULL, "%s: message names no file: %s", label,
             message);
    ZT_CHECK(strstr(message, want1) != NULL, "%s: message lacks '%s': %s", label, want1, message);
    if (want2)
        ZT_CHECK(strstr(message, want2) != NULL, "%s: message lacks '%s': %s", label, want2,
                 message);
    zt_st_close(st);
}

static void expect_fixture_refused(const char *file, const char *want1, const char *want2) {
    char path[1024];
    size_t n = 0;
    fixture_path(path, sizeof path, "torch-bin", file);
    uint8_t *bytes = read_bytes(path, &n);
    put_checkpoint(bytes, n);
    expect_refused(file, want1, want2);
    free(bytes);
}

static void check_refused_fixtures(void) {
    /* the GLOBAL opcode follows PROTO 2 at byte 2 */
    expect_fixture_refused("malicious-os-system.bin", "refusing global 'os.system'", "byte 2:");
    expect_fixture_refused("malicious-nested.bin", "refusing global 'builtins.eval'",
                           "archive/data.pkl: byte ");
    expect_fixture_refused("malicious-stack-global.bin", "refusing global 'posix.system'",
                           "byte 17:");
    expect_fixture_refused("malicious-inst.bin", "opcode 0x69 ('i')", NULL);
    expect_fixture_refused("legacy-format.bin", "legacy torch.save file", NULL);
    expect_fixture_refused("deflated.bin", "is compressed (method 8)", NULL);
    expect_fixture_refused("noncontiguous.bin", "tensor 'w' is not contiguous",
                           "shape [3, 2], stride [1, 3]");
}

/* The f32 fixture: 36 weights + the tied head, which shares embed_tokens' bytes. */
static void check_table(void) {
    char dir[1024];
    fixture_path(dir, sizeof dir, "opt-bin", NULL);
    zt_safetensors *st = NULL;
    ZT_REQUIRE_OK(zt_st_open_dir(dir, &st));
    ZT_CHECK(zt_st_count(st) == 37, "opt-bin: %d tensors, want 37", zt_st_count(st));
    const zt_st_tensor *embed = zt_st_find(st, "model.decoder.embed_tokens.weight");
    const zt_st_tensor *head = zt_st_find(st, "lm_head.weight");
    ZT_REQUIRE(embed && head, "opt-bin: embed_tokens or lm_head missing");
    ZT_CHECK(embed->data == head->data && embed->n_bytes == 96 * 16 * 4 &&
                 !strcmp(embed->dtype, "F32") && embed->n_dims == 2 && embed->shape[0] == 96 &&
                 embed->shape[1] == 16,
             "opt-bin: tied head does not share the token table's storage");
    for (int i = 1; i < zt_st_count(st); i++)
        ZT_CHECK(strcmp(zt_st_get(st, i - 1)->name, zt_st_get(st, i)->name) < 0,
                 "names out of order at %d", i);
    zt_st_close(st);

    /* every legacy tensor is a view into one flat storage, laid end to end in pickle order */
    fixture_path(dir, sizeof dir, "opt-bin-legacy", NULL);
    ZT_REQUIRE_OK(zt_st_open_dir(dir, &st));
    const zt_st_tensor *version = zt_st_find(st, "decoder.version");
    const zt_st_tensor *first = zt_st_find(st, "decoder.embed_tokens.weight");
    const zt_st_tensor *second = zt_st_find(st, "decoder.embed_positions.weight");
    ZT_REQUIRE(version && first && second, "opt-bin-legacy: keys missing");
    float value = 0;
    memcpy(&value, version->data, sizeof value);
    ZT_CHECK(version->n_dims == 1 && version->shape[0] == 1 && value == 3.0f, "decoder.version: %g",
             value);
    ZT_CHECK(second->data == first->data + first->n_bytes,
             "embed_positions does not follow embed_tokens in the shared storage");
    ZT_CHECK(zt_st_find(st, "lm_head.weight") == NULL, "legacy layout has no head");
    zt_st_close(st);

    /* zip64 extra fields in the central directory (values checked by torch.load when made) */
    char path[1024];
    size_t n = 0;
    fixture_path(path, sizeof path, "torch-bin", "zip64-entries.bin");
    uint8_t *bytes = read_bytes(path, &n);
    put_checkpoint(bytes, n);
    free(bytes);
    ZT_REQUIRE_OK(zt_st_open_dir(temp_dir, &st));
    const zt_st_tensor *w = zt_st_find(st, "w");
    ZT_REQUIRE(w && w->n_dims == 2 && w->shape[0] == 2 && w->shape[1] == 3, "zip64: w");
    float values[6];
    memcpy(values, w->data, sizeof values);
    for (int i = 0; i < 6; i++)
        ZT_CHECK(values[i] == (float)(i + 1), "zip64: w[%d] = %g", i, values[i]);
    zt_st_close(st);

    /* nn.Linear(2, 2).state_dict(): an OrderedDict whose _metadata BUILD sets, plus an alias */
    fixture_path(path, sizeof path, "torch-bin", "linear-state-dict.bin");
    bytes = read_bytes(path, &n);
    put_checkpoint(bytes, n);
    free(bytes);
    ZT_REQUIRE_OK(zt_st_open_dir(temp_dir, &st));
    const zt_st_tensor *weight = zt_st_find(st, "weight"), *bias = zt_st_find(st, "bias");
    const zt_st_tensor *alias = zt_st_find(st, "alias.weight");
    ZT_CHECK(zt_st_count(st) == 3 && weight && bias && alias && alias->data == weight->data &&
                 weight->n_bytes == 16 && bias->n_bytes == 8 && bias->n_dims == 1,
             "linear state dict: %d tensors", zt_st_count(st));
    zt_st_close(st);
}

/* The first place of text at or after from, or n. */
static size_t find_from(const uint8_t *bytes, size_t n, const char *text, size_t from) {
    size_t len = strlen(text);
    for (size_t i = from; i + len <= n; i++)
        if (memcmp(bytes + i, text, len) == 0) return i;
    return n;
}

static size_t find(const uint8_t *bytes, size_t n, const char *text) {
    size_t at = find_from(bytes, n, text, 0);
    ZT_REQUIRE(at < n, "'%s' not in the fixture", text);
    return at;
}

/* Corruptions of the f32 fixture, each refused naming its cause. */
static void check_corruptions(void) {
    char path[1024];
    size_t n = 0;
    fixture_path(path, sizeof path, "opt-bin", "pytorch_model.bin");
    uint8_t *good = read_bytes(path, &n);
    uint8_t *bad = malloc(n);
    const size_t cuts[] = {0, 10, n / 2, n - 30, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        put_checkpoint(good, cuts[i]);
        expect_refused("truncated", cuts[i] < 22 ? "too short" : "end-of-central-directory", NULL);
    }
    /* the pickle's first opcode byte (PROTO): the CRC catches it */
    size_t local_name = find(good, n, "pytorch_model/data.pkl");
    size_t pickle_at = local_name + 22 + (size_t)(good[28] | good[29] << 8);
    ZT_REQUIRE(good[pickle_at] == 0x80, "data.pkl does not start where expected");
    memcpy(bad, good, n);
    bad[pickle_at + 1] = 3;
    put_checkpoint(bad, n);
    expect_refused("pickle byte", "is corrupt: CRC-32", NULL);

    /* storage 0 renamed in the local header and the central directory alike */
    memcpy(bad, good, n);
    int renamed = 0;
    for (size_t at = 0; (at = find_from(bad, n, "pytorch_model/data/0", at)) + 20 < n; at++)
        if (!isdigit(bad[at + 20])) bad[at + 19] = 'Z', renamed++;
    ZT_REQUIRE(renamed == 2, "storage 0's name found %d times", renamed);
    put_checkpoint(bad, n);
    expect_refused("missing storage", "storage '0' has no entry", "pytorch_model/data/0");

    /* the central record of data.pkl says deflated */
    size_t central = find(good, n, "PK\x01\x02");
    memcpy(bad, good, n);
    bad[central + 10] = 8;
    put_checkpoint(bad, n);
    expect_refused("method", "'pytorch_model/data.pkl' is compressed (method 8)", NULL);

    /* its local header offset moved past the central directory */
    memcpy(bad, good, n);
    bad[central + 42] = 0xF0, bad[central + 43] = 0xFF, bad[central + 44] = 0;
    put_checkpoint(bad, n);
    expect_refused("local offset", "no local header at offset", NULL);

    /* the central directory's record count in the zip64 end record */
    size_t eocd64 = find(good, n, "PK\x06\x06");
    memcpy(bad, good, n);
    bad[eocd64 + 24] = bad[eocd64 + 32] = 200; /* on this disk and in all */
    put_checkpoint(bad, n);
    expect_refused("count", "entries cannot fit a central directory", NULL);
    free(bad);
    free(good);
}

/* A byte string literal and its length, NULs included. */
#define P(literal) literal, sizeof(literal) - 1

/* Pickles the machine refuses on its own, without a zip around them. */
static void check_pickles(void) {
    static const struct {
        const char *label;
        const char *bytes;
        size_t n;
        const char *want;
    } cases[] = {
        {"no STOP", P("\x80\x02}"), "byte 3: the pickle ends without STOP"},
        {"trailing", P("\x80\x02}.x"), "1 bytes follow STOP"},
        {"not a dict", P("\x80\x02]."), "holds a list, not a state dict"},
        {"empty pop", P("\x80\x02t"), "byte 2: needs a MARK"},
        {"unset memo", P("\x80\x02h\x05."), "memo index 5 was never set"},
        {"short operand",
         P("\x80\x02X\xff\x00\x00\x00"
           "ab."),
         "runs past the end"},
        {"wide LONG1", P("\x80\x02\x8a\x09"), "LONG1 of 9 bytes"},
        {"protocol", P("\x80\x07}."), "pickle protocol 7"},
        {"value",
         P("\x80\x02}(X\x01\x00\x00\x00"
           "aK\x01u."),
         "entry 'a' holds a value of type int, not a tensor"},
        {"storage key",
         P("\x80\x02}(X\x01\x00\x00\x00"
           "a(X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
           "X\x04\x00\x00\x00../xX\x03\x00\x00\x00"
           "cpuK\x01tQu."),
         "storage key is not"},
        {"storage call",
         P("\x80\x02"
           "ctorch\nFloatStorage\n)R."),
         "calls torch.FloatStorage"},
        {"odd setitems", P("\x80\x02}(K\x01u."), "odd number"},
        {"mark floor", P("\x80\x02}(K\x01\x85K\x02s."), "SETITEM with too few values"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zt_pickle_state_dict sd;
        zt_status s =
            zt_pickle_read_state_dict("test.pkl", (const uint8_t *)cases[i].bytes, cases[i].n, &sd);
        ZT_CHECK(s == ZT_ERR_FORMAT && sd.n_tensors == 0 && sd.tensors == NULL, "%s: %s accepted",
                 cases[i].label, zt_status_name(s));
        ZT_CHECK(strstr(zt_last_error(), cases[i].want) && strstr(zt_last_error(), "test.pkl"),
                 "%s: message lacks '%s': %s", cases[i].label, cases[i].want, zt_last_error());
    }
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/zt_test_bin_XXXXXX");
    ZT_REQUIRE(mkdtemp(temp_dir) != NULL, "mkdtemp failed");
    check_table();
    check_refused_fixtures();
    check_corruptions();
    check_pickles();
    char path[256];
    snprintf(path, sizeof path, "%s/pytorch_model.bin", temp_dir);
    unlink(path);
    rmdir(temp_dir);
    return zt_test_finish("test_torch_bin");
}
