#include "fuzz_tokenizer_check.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "text/text_internal.h"

/* Ids whose spellings are checked one by one; a fuzzed vocabulary can leave millions of holes. */
enum { SPELLINGS_CHECKED = 1 << 16 };

static int decodes_to_spelling(const zt_tokenizer *tok, int32_t id) {
    char *text = NULL;
    size_t len = 0;
    FUZZ_CHECK(zt_tokenizer_decode_bytes(tok, &id, 1, 0, &text, &len) == ZT_OK, "decode %d", id);
    const char *spelling = zt_tokenizer_token(tok, id);
    int same = len == strlen(spelling) && memcmp(text, spelling, len) == 0;
    free(text);
    return same;
}

int fuzz_tokenizer_lossless(const zt_tokenizer *tok) {
    if (tok->add_prefix_space) return 0;
    for (int byte = 0; byte < 256; byte++)
        if (tok->byte_token_id[byte] < 0) return 0;
    for (int i = 0; i < tok->added_count; i++)
        if (!decodes_to_spelling(tok, tok->added[i].id)) return 0;
    return 1;
}

void fuzz_check_roundtrip(const zt_tokenizer *tok, const uint8_t *text, size_t len, int lossless) {
    for (int add_bos = 0; add_bos <= (zt_tokenizer_bos_id(tok) >= 0); add_bos++) {
        int32_t *ids = NULL;
        int n = -1;
        fuzz_expect_begin();
        zt_status s = zt_tokenizer_encode(tok, (const char *)text, len, add_bos, &ids, &n);
        FUZZ_CHECK(s == ZT_OK && ids && n >= add_bos, "encode of %zu bytes: %s", len,
                   zt_last_error());
        FUZZ_CHECK(!add_bos || ids[0] == zt_tokenizer_bos_id(tok), "BOS is not first");
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(zt_tokenizer_token(tok, ids[i]), "encode gave id %d, which has no token",
                       ids[i]);
        char *back = NULL;
        size_t back_len = 0;
        s = zt_tokenizer_decode_bytes(tok, ids + add_bos, n - add_bos, 0, &back, &back_len);
        FUZZ_CHECK(s == ZT_OK && back[back_len] == '\0', "decode: %s", zt_last_error());
        FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)back, back_len), "decode gave invalid UTF-8");
        if (lossless && fuzz_utf8_valid(text, len))
            FUZZ_CHECK(back_len == len && memcmp(back, text, len) == 0,
                       "decode(encode(x)) != x for %zu bytes (got %zu)", len, back_len);
        free(back);
        free(ids);
    }
}

void fuzz_check_tokenizer(const zt_tokenizer *tok) {
    int n = zt_tokenizer_vocab_size(tok);
    FUZZ_CHECK(n > 0, "an accepted tokenizer with no ids");
    int checked = n < SPELLINGS_CHECKED ? n : SPELLINGS_CHECKED;
    /* What the first tokens spell, joined: text that exercises this vocabulary's merges. */
    int32_t *ids = malloc((size_t)checked * sizeof *ids);
    int n_ids = 0;
    for (int32_t id = 0; id < checked; id++) {
        const char *spelling = zt_tokenizer_token(tok, id);
        if (!spelling) continue;
        FUZZ_CHECK(spelling[0] && zt_tokenizer_token_id(tok, spelling) == id,
                   "id %d spelled \"%s\" looks up to %d", id, spelling,
                   zt_tokenizer_token_id(tok, spelling));
        char *text = NULL;
        size_t len = 0;
        FUZZ_CHECK(zt_tokenizer_decode_bytes(tok, &id, 1, 0, &text, &len) == ZT_OK, "decode");
        FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)text, len), "id %d decodes to bad UTF-8", id);
        free(text);
        ids[n_ids++] = id;
    }
    int lossless = fuzz_tokenizer_lossless(tok);
    char *joined = NULL;
    size_t joined_len = 0;
    FUZZ_CHECK(zt_tokenizer_decode_bytes(tok, ids, n_ids < 64 ? n_ids : 64, 0, &joined,
                                         &joined_len) == ZT_OK,
               "decode");
    fuzz_check_roundtrip(tok, (const uint8_t *)joined, joined_len, lossless);
    free(joined);
    free(ids);
    static const char *const probes[] = {
        "", "Hello world", " it's 42 <s>x</s><pad>  \n\t end", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "bad \xff\xfe \xe2\x82 utf-8 \xc0\x80", "'s'll'd '", "\r\n\r\n   ",
    };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        fuzz_check_roundtrip(tok, (const uint8_t *)probes[i], strlen(probes[i]), lossless);
}

void fuzz_check_loaded(zt_status status, zt_tokenizer *tok, const char *call) {
    fuzz_expect_reported(status, call);
    if (status != ZT_OK) {
        FUZZ_CHECK(!tok, "%s failed but handed out a tokenizer", call);
        return;
    }
    fuzz_check_tokenizer(tok);
    zt_tokenizer_free(tok);
}
