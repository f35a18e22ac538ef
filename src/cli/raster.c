/* Rasterising by whole pixels: Bresenham's line stamping a square pen at every step, glyphs as
 * scaled blocks. */
#include "cli/raster.h"

#include <stdlib.h>
#include <string.h>

#include "cli/font5x7.h"
#include "core/alloc.h"
#include "core/status.h"

zt_status zt_canvas_create(int width, int height, zt_rgb background, zt_canvas *out) {
    memset(out, 0, sizeof *out);
    if (width < 1 || height < 1 || width > 1 << 14 || height > 1 << 14)
        return zt_fail(ZT_ERR_INVALID_ARG, "a canvas of %d x %d pixels", width, height);
    out->pixels = zt_malloc((size_t)width * (size_t)height * 3);
    if (!out->pixels) return zt_fail(ZT_ERR_NOMEM, "a canvas of %d x %d pixels", width, height);
    out->width = width;
    out->height = height;
    zt_canvas_fill_rect(out, 0, 0, width, height, background);
    return ZT_OK;
}

void zt_canvas_free(zt_canvas *canvas) {
    free(canvas->pixels);
    memset(canvas, 0, sizeof *canvas);
}

void zt_canvas_fill_rect(zt_canvas *canvas, int x, int y, int w, int h, zt_rgb colour) {
    int x_end = x + w, y_end = y + h;
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x_end > canvas->width) x_end = canvas->width;
    if (y_end > canvas->height) y_end = canvas->height;
    for (int row = y; row < y_end; row++)
        for (int col = x; col < x_end; col++) {
            uint8_t *p = canvas->pixels + 3 * ((size_t)row * (size_t)canvas->width + (size_t)col);
            p[0] = colour.r;
            p[1] = colour.g;
            p[2] = colour.b;
        }
}

void zt_canvas_line(zt_canvas *canvas, int x0, int y0, int x1, int y1, int thickness,
                    zt_rgb colour) {
    const int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    const int step_x = x0 < x1 ? 1 : -1, step_y = y0 < y1 ? 1 : -1;
    const int back = (thickness - 1) / 2; /* the pen's pixels left of and above the point */
    int error = dx + dy;
    for (;;) {
        zt_canvas_fill_rect(canvas, x0 - back, y0 - back, thickness, thickness, colour);
        if (x0 == x1 && y0 == y1) break;
        const int twice = 2 * error;
        if (twice >= dy) {
            error += dy;
            x0 += step_x;
        }
        if (twice <= dx) {
            error += dx;
            y0 += step_y;
        }
    }
}

static void draw_box(zt_canvas *canvas, int x, int y, int scale, zt_rgb colour) {
    const int w = ZT_FONT_WIDTH * scale, h = ZT_FONT_HEIGHT * scale;
    zt_canvas_fill_rect(canvas, x, y, w, scale, colour);
    zt_canvas_fill_rect(canvas, x, y + h - scale, w, scale, colour);
    zt_canvas_fill_rect(canvas, x, y, scale, h, colour);
    zt_canvas_fill_rect(canvas, x + w - scale, y, scale, h, colour);
}

void zt_canvas_text(zt_canvas *canvas, int x, int y, int scale, const char *text, zt_rgb colour) {
    for (const char *c = text; *c; c++, x += ZT_FONT_ADVANCE * scale) {
        zt_glyph glyph;
        if (!zt_font_glyph(*c, &glyph)) {
            draw_box(canvas, x, y, scale, colour);
            continue;
        }
        for (int row = 0; row < ZT_FONT_HEIGHT; row++)
            for (int col = 0; col < ZT_FONT_WIDTH; col++)
                if (glyph.rows[row] >> (ZT_FONT_WIDTH - 1 - col) & 1)
                    zt_canvas_fill_rect(canvas, x + col * scale, y + (row + glyph.drop) * scale,
                                        scale, scale, colour);
    }
}

int zt_text_width(const char *text, int scale) {
    const int n = (int)strlen(text);
    return n ? (n * ZT_FONT_ADVANCE - (ZT_FONT_ADVANCE - ZT_FONT_WIDTH)) * scale : 0;
}
