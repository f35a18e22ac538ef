/* A 5 x 7 bitmap font of our own for the figures the CLI draws: digits, letters and the
 * punctuation labels need. */
#ifndef ZT_CLI_FONT5X7_H
#define ZT_CLI_FONT5X7_H

#include <stdint.h>

enum {
    ZT_FONT_WIDTH = 5,
    ZT_FONT_HEIGHT = 7,
    ZT_FONT_DESCENT = 2, /* rows below the baseline that g, p, q, y reach */
    ZT_FONT_ADVANCE = 6, /* columns from one character to the next, the gap included */
    ZT_FONT_LINE = 10,   /* rows from one line to the next */
};

typedef struct zt_glyph {
    uint8_t rows[ZT_FONT_HEIGHT]; /* bit 4 is the leftmost column */
    int drop;                     /* rows the glyph sits lower: descenders */
} zt_glyph;

/* The glyph of c; 0 when the font has none (the caller draws a box). */
int zt_font_glyph(char c, zt_glyph *out);

#endif
