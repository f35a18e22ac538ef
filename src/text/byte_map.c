/* GPT-2's byte-to-unicode map (docs/spec.md §3.2). BPE works on strings of printable characters, so each
 * of the 256 bytes gets one: the 188 printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand
 * for themselves and the other 68 (controls, space, DEL, NBSP, soft hyphen) take U+0100,
 * U+0101, ... in byte order. Space 0x20 thus becomes 'Ġ' (U+0120), '\n' becomes 'Ċ' (U+010A). */
#include "text/bpe.h"

static int byte_is_printable(unsigned byte) {
    return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) ||
           (byte >= 0xAE && byte <= 0xFF);
}

uint32_t zt_byte_to_unicode(uint8_t byte) {
    if (byte_is_printable(byte)) return byte;
    /* Count the non-printable bytes below this one: that is its offset past U+0100. */
    uint32_t shifted_below = 0;
    for (unsigned lower = 0; lower < byte; lower++)
        shifted_below += !byte_is_printable(lower);
    return 0x100 + shifted_below;
}

int zt_unicode_to_byte(uint32_t code_point) {
    if (code_point < 0x100) return byte_is_printable(code_point) ? (int)code_point : -1;
    uint32_t wanted = code_point - 0x100; /* index among the non-printable bytes */
    for (unsigned byte = 0; byte < 256; byte++) {
        if (byte_is_printable(byte)) continue;
        if (wanted == 0) return (int)byte;
        wanted--;
    }
    return -1;
}
