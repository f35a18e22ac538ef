/* The GPT-2 pre-tokenization split (docs/spec.md §3.3) on PCRE2:
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * The classes are spelled out as explicit code point ranges (unicode_classes.c) instead of
 * PCRE2's \p{L}, \p{N}, \s: tokenizers runs this regex on Oniguruma with Unicode 16.0 and
 * \s = White_Space, while PCRE2 10.42 knows Unicode 14.0 (9392 letters and digits fewer) and
 * counts U+180E as \s. Explicit ranges give tokenizers' splits with any PCRE2 version. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "text/text_internal.h"

struct zt_pretokenizer {
    pcre2_code *code;
};

typedef struct pattern_buffer {
    char *text;
    size_t len, capacity;
} pattern_buffer;

static int pattern_append(pattern_buffer *buffer, const char *piece) {
    size_t piece_len = strlen(piece);
    if (buffer->len + piece_len + 1 > buffer->capacity) {
        size_t capacity = (buffer->capacity + piece_len + 1) * 2;
        char *grown = zt_realloc(buffer->text, capacity);
        if (!grown) return 0;
        buffer->text = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->text + buffer->len, piece, piece_len + 1);
    buffer->len += piece_len;
    return 1;
}

/* Appends the ranges as the inside of a character class: \x{41}-\x{5A}\x{61}-... */
static int pattern_append_ranges(pattern_buffer *buffer, const zt_code_point_range *ranges,
                                 size_t count) {
    char item[48];
    for (size_t i = 0; i < count; i++) {
        if (ranges[i].first == ranges[i].last)
            snprintf(item, sizeof item, "\\x{%X}", (unsigned)ranges[i].first);
        else
            snprintf(item, sizeof item, "\\x{%X}-\\x{%X}", (unsigned)ranges[i].first,
                     (unsigned)ranges[i].last);
        if (!pattern_append(buffer, item)) return 0;
    }
    return 1;
}

typedef enum class_id { CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE } class_id;

static int pattern_append_class(pattern_buffer *buffer, class_id which) {
    switch (which) {
    case CLASS_LETTER:
        return pattern_append_ranges(buffer, zt_unicode_letter_ranges,
                                     zt_unicode_letter_ranges_count);
    case CLASS_NUMBER:
        return pattern_append_ranges(buffer, zt_unicode_number_ranges,
                                     zt_unicode_number_ranges_count);
    case CLASS_SPACE:
        return pattern_append_ranges(buffer, zt_unicode_space_ranges,
                                     zt_unicode_space_ranges_count);
    }
    return 0;
}

/* The regex, term by term, with each class written out as its ranges. */
static int build_pattern(pattern_buffer *buffer) {
    int ok = pattern_append(buffer, "'s|'t|'re|'ve|'m|'ll|'d");
    ok = ok && pattern_append(buffer, "| ?[") && pattern_append_class(buffer, CLASS_LETTER);
    ok = ok && pattern_append(buffer, "]+| ?[") && pattern_append_class(buffer, CLASS_NUMBER);
    ok = ok && pattern_append(buffer, "]+| ?[^") && pattern_append_class(buffer, CLASS_SPACE) &&
         pattern_append_class(buffer, CLASS_LETTER) && pattern_append_class(buffer, CLASS_NUMBER);
    /* \s+(?!\S) is written [s]+(?![^s]) */
    ok = ok && pattern_append(buffer, "]+|[") && pattern_append_class(buffer, CLASS_SPACE);
    ok = ok && pattern_append(buffer, "]+(?![^") && pattern_append_class(buffer, CLASS_SPACE);
    ok = ok && pattern_append(buffer, "])|[") && pattern_append_class(buffer, CLASS_SPACE);
    ok = ok && pattern_append(buffer, "]+");
    return ok;
}

zt_status zt_pretokenizer_create(zt_pretokenizer **out) {
    *out = NULL;
    pattern_buffer pattern = {0};
    if (!build_pattern(&pattern)) {
        free(pattern.text);
        return zt_fail(ZT_ERR_NOMEM, "pre-tokenizer: out of memory building the regex");
    }
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern.text, pattern.len, PCRE2_UTF, &error_code,
                                     &error_offset, NULL);
    free(pattern.text);
    if (!code) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error_code, message, sizeof message);
        return zt_fail(ZT_ERR_INTERNAL, "pre-tokenizer: PCRE2 rejected the regex at offset %zu: %s",
                       (size_t)error_offset, (const char *)message);
    }
    /* JIT is a speed-up only: where the platform lacks it, the interpreter gives the same
     * matches. */
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    zt_pretokenizer *pretokenizer = zt_malloc(sizeof *pretokenizer);
    if (!pretokenizer) {
        pcre2_code_free(code);
        return zt_fail(ZT_ERR_NOMEM, "pre-tokenizer: out of memory");
    }
    pretokenizer->code = code;
    *out = pretokenizer;
    return ZT_OK;
}

void zt_pretokenizer_free(zt_pretokenizer *pretokenizer) {
    if (!pretokenizer) return;
    pcre2_code_free(pretokenizer->code);
    free(pretokenizer);
}

zt_status zt_pretokenize(const zt_pretokenizer *pretokenizer, const uint8_t *text, size_t len,
                         zt_piece_fn on_piece, void *user) {
    if (len == 0) return ZT_OK;
    pcre2_match_data *match = pcre2_match_data_create_from_pattern(pretokenizer->code, NULL);
    if (!match) return zt_fail(ZT_ERR_NOMEM, "pre-tokenizer: out of memory for match data");
    zt_status status = ZT_OK;
    size_t pos = 0;
    while (pos < len && status == ZT_OK) {
        int rc = pcre2_match(pretokenizer->code, text, len, pos, PCRE2_NO_UTF_CHECK, match, NULL);
        const PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(match);
        /* Every character is a letter, a number, a space or none of these, so some alternative
         * matches right at `pos` and consumes at least one character. */
        if (rc < 0) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(rc, message, sizeof message);
            status = zt_fail(ZT_ERR_INTERNAL, "pre-tokenizer: PCRE2 failed at byte %zu of %zu: %s",
                             pos, len, (const char *)message);
            break;
        }
        if (ovector[0] != pos || ovector[1] <= pos) {
            status = zt_fail(ZT_ERR_INTERNAL, "pre-tokenizer: no piece starts at byte %zu of %zu",
                             pos, len);
            break;
        }
        status = on_piece(text + pos, ovector[1] - pos, user);
        pos = ovector[1];
    }
    pcre2_match_data_free(match);
    return status;
}
