/* UTF-8 validation and repair with the "maximal subpart" rule (Unicode §3.9, Table 3-7).
 *
 * Python's errors="replace" and Rust's from_utf8_lossy (which tokenizers uses on decode) both
 * emit one U+FFFD per maximal subpart: the longest prefix of a well-formed sequence that the
 * bytes start with, or a single byte when no well-formed sequence starts there. So "\xE2\x82x"
 * gives one U+FFFD then "x", while "\xC0\x80" (an overlong form) gives two. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "text/text_internal.h"

enum { REPLACEMENT_UTF8_LEN = 3 };
static const uint8_t replacement_utf8[REPLACEMENT_UTF8_LEN] = {0xEF, 0xBF, 0xBD};

/* How many continuation bytes follow `lead` and the allowed range of the first one (Table 3-7);
 * 0 continuation bytes with a non-ASCII lead means the byte cannot start a sequence. */
static int sequence_shape(uint8_t lead, uint8_t *second_min, uint8_t *second_max) {
    *second_min = 0x80;
    *second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) return 1;
    if (lead == 0xE0) {
        *second_min = 0xA0; /* below is an overlong encoding */
        return 2;
    }
    if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) return 2;
    if (lead == 0xED) {
        *second_max = 0x9F; /* above are the UTF-16 surrogates */
        return 2;
    }
    if (lead == 0xF0) {
        *second_min = 0x90; /* below is an overlong encoding */
        return 3;
    }
    if (lead >= 0xF1 && lead <= 0xF3) return 3;
    if (lead == 0xF4) {
        *second_max = 0x8F; /* above is past U+10FFFF */
        return 3;
    }
    return 0;
}

/* Length of the well-formed sequence at text[pos] (> 0), or -(length of the maximal subpart to
 * replace) when it is ill-formed. */
static long sequence_at(const uint8_t *text, size_t len, size_t pos) {
    uint8_t lead = text[pos];
    if (lead < 0x80) return 1;
    uint8_t second_min, second_max;
    int continuations = sequence_shape(lead, &second_min, &second_max);
    if (continuations == 0) return -1;
    size_t end = pos + 1;
    for (int k = 0; k < continuations; k++, end++) {
        uint8_t lo = k == 0 ? second_min : 0x80;
        uint8_t hi = k == 0 ? second_max : 0xBF;
        if (end >= len || text[end] < lo || text[end] > hi) return -(long)(end - pos);
    }
    return (long)(end - pos);
}

size_t zt_utf8_valid_prefix(const uint8_t *text, size_t len) {
    size_t pos = 0;
    while (pos < len) {
        if (text[pos] < 0x80) {
            pos++;
            continue;
        }
        long step = sequence_at(text, len, pos);
        if (step < 0) break;
        pos += (size_t)step;
    }
    return pos;
}

zt_status zt_utf8_repair(const uint8_t *text, size_t len, char **out, size_t *out_len) {
    /* Every replaced subpart is at least one byte and becomes three. */
    if (len > (SIZE_MAX - 1) / REPLACEMENT_UTF8_LEN)
        return zt_fail(ZT_ERR_NOMEM, "UTF-8 repair: input of %zu bytes is too large", len);
    uint8_t *buffer = zt_malloc(len * REPLACEMENT_UTF8_LEN + 1);
    if (!buffer) return zt_fail(ZT_ERR_NOMEM, "UTF-8 repair: out of memory (%zu bytes)", len);
    size_t pos = 0, written = 0;
    while (pos < len) {
        long step = sequence_at(text, len, pos);
        if (step > 0) {
            memcpy(buffer + written, text + pos, (size_t)step);
            written += (size_t)step;
            pos += (size_t)step;
        } else {
            memcpy(buffer + written, replacement_utf8, REPLACEMENT_UTF8_LEN);
            written += REPLACEMENT_UTF8_LEN;
            pos += (size_t)(-step);
        }
    }
    buffer[written] = '\0';
    *out = (char *)buffer;
    *out_len = written;
    return ZT_OK;
}

uint32_t zt_utf8_next(const uint8_t *text, size_t *pos) {
    const uint8_t *p = text + *pos;
    if (p[0] < 0x80) {
        *pos += 1;
        return p[0];
    }
    if (p[0] < 0xE0) {
        *pos += 2;
        return ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    }
    if (p[0] < 0xF0) {
        *pos += 3;
        return ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    }
    *pos += 4;
    return ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
           ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

int zt_utf8_put(uint32_t code_point, uint8_t *out) {
    if (code_point < 0x80) {
        out[0] = (uint8_t)code_point;
        return 1;
    }
    if (code_point < 0x800) {
        out[0] = (uint8_t)(0xC0 | (code_point >> 6));
        out[1] = (uint8_t)(0x80 | (code_point & 0x3F));
        return 2;
    }
    if (code_point < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (code_point >> 12));
        out[1] = (uint8_t)(0x80 | ((code_point >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (code_point & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (code_point >> 18));
    out[1] = (uint8_t)(0x80 | ((code_point >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((code_point >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (code_point & 0x3F));
    return 4;
}
