/* Encode -> decode on the fixture tokenizer (GPT-2 byte-level BPE, lossless): any valid UTF-8
 * comes back byte for byte; invalid UTF-8 comes back as its U+FFFD repair; tokenizer.json and
 * vocab.json + merges.txt of the same tokenizer give the same ids. The input read as 16-bit ids
 * must decode to valid UTF-8, and skipping special tokens equals dropping them first. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "fuzz_tokenizer_check.h"
#include "text/text_internal.h"

static zt_tokenizer *from_json, *from_files;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *dir = ZT_FUZZ_FIXTURES "/tokenizer";
    if (zt_tokenizer_load_json(ZT_FUZZ_FIXTURES "/tokenizer/tokenizer.json", &from_json) != ZT_OK ||
        zt_tokenizer_load_files(ZT_FUZZ_FIXTURES "/tokenizer/vocab.json",
                                ZT_FUZZ_FIXTURES "/tokenizer/merges.txt", &from_files) != ZT_OK)
        fuzz_fail(__FILE__, __LINE__, "load", "%s: %s", dir, zt_last_error());
    FUZZ_CHECK(fuzz_tokenizer_lossless(from_json), "the fixture tokenizer is not lossless");
    return 0;
}

static void check_repair(const uint8_t *text, size_t len) {
    int32_t *ids = NULL;
    int n = 0;
    char *back = NULL, *repaired = NULL;
    size_t back_len = 0, repaired_len = 0;
    FUZZ_CHECK(zt_tokenizer_encode(from_json, (const char *)text, len, 0, &ids, &n) == ZT_OK &&
                   zt_tokenizer_decode_bytes(from_json, ids, n, 0, &back, &back_len) == ZT_OK &&
                   zt_utf8_repair(text, len, &repaired, &repaired_len) == ZT_OK,
               "encode, decode or repair failed");
    FUZZ_CHECK(back_len == repaired_len && !memcmp(back, repaired, back_len),
               "invalid UTF-8 does not come back as its repair");
    free(ids);
    free(back);
    free(repaired);
}

static void check_same_ids(const uint8_t *text, size_t len) {
    int32_t *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    FUZZ_CHECK(zt_tokenizer_encode(from_json, (const char *)text, len, 1, &a, &na) == ZT_OK &&
                   zt_tokenizer_encode(from_files, (const char *)text, len, 1, &b, &nb) == ZT_OK,
               "encode failed");
    FUZZ_CHECK(na == nb && !memcmp(a, b, (size_t)na * sizeof *a),
               "tokenizer.json and vocab.json + merges.txt disagree (%d vs %d ids)", na, nb);
    free(a);
    free(b);
}

static void check_decode_ids(const uint8_t *data, size_t size) {
    int n = (int)(size / 2), kept = 0;
    int32_t *ids = malloc((size_t)n * sizeof *ids + 1), *plain = malloc((size_t)n * sizeof *ids + 1);
    for (int i = 0; i < n; i++) {
        ids[i] = (int16_t)(data[2 * i] | data[2 * i + 1] << 8); /* negatives and holes too */
        if (!zt_tokenizer_is_special(from_json, ids[i])) plain[kept++] = ids[i];
    }
    char *all = NULL, *skipped = NULL, *dropped = NULL;
    size_t all_len = 0, skipped_len = 0, dropped_len = 0;
    FUZZ_CHECK(zt_tokenizer_decode_bytes(from_json, ids, n, 0, &all, &all_len) == ZT_OK &&
                   zt_tokenizer_decode_bytes(from_json, ids, n, 1, &skipped, &skipped_len) == ZT_OK &&
                   zt_tokenizer_decode_bytes(from_json, plain, kept, 0, &dropped, &dropped_len) ==
                       ZT_OK,
               "decode failed");
    FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)all, all_len), "decode gave invalid UTF-8");
    FUZZ_CHECK(skipped_len == dropped_len && !memcmp(skipped, dropped, skipped_len),
               "skip_special differs from dropping the special ids");
    free(all);
    free(skipped);
    free(dropped);
    free(ids);
    free(plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_check_roundtrip(from_json, data, size, 1);
    if (!fuzz_utf8_valid(data, size)) check_repair(data, size);
    check_same_ids(data, size);
    check_decode_ids(data, size);
    return 0;
}
