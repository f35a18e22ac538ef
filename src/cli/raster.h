/* An RGB canvas for the CLI's figures: filled rectangles, thick lines and text in the 5 x 7
 * font, every shape clipped to the canvas; no anti-aliasing, so each colour drawn stays exact. */
#ifndef ZT_CLI_RASTER_H
#define ZT_CLI_RASTER_H

#include <stdint.h>

#include "zotune.h"

typedef struct zt_rgb {
    uint8_t r, g, b;
} zt_rgb;

typedef struct zt_canvas {
    int width, height;
    uint8_t *pixels; /* (height,width,3) */
} zt_canvas;

zt_status zt_canvas_create(int width, int height, zt_rgb background, zt_canvas *out);
void zt_canvas_free(zt_canvas *canvas);

/* The w x h pixels from (x, y), x rightwards and y downwards from the top left corner. */
void zt_canvas_fill_rect(zt_canvas *canvas, int x, int y, int w, int h, zt_rgb colour);

/* From (x0, y0) to (x1, y1), both ends included, with a square pen `thickness` pixels wide. */
void zt_canvas_line(zt_canvas *canvas, int x0, int y0, int x1, int y1, int thickness,
                    zt_rgb colour);

/* Text whose top left corner is (x, y), each font pixel drawn as scale x scale; a character
 * the font lacks is drawn as a hollow box. */
void zt_canvas_text(zt_canvas *canvas, int x, int y, int scale, const char *text, zt_rgb colour);

/* The width in pixels zt_canvas_text takes for text at scale. */
int zt_text_width(const char *text, int scale);

#endif
