/* Drawing the memory figure: decade ticks and a light grid at 2..9 of each decade on both log
 * axes, the x axis in parameters (100M, 1B, ...), the y axis in GiB (0.1 GiB, 1 GiB, ...), a
 * legend right of the plot. */
#include "cli/plot_memory.h"

#include <math.h>
#include <stdio.h>

#include "cli/font5x7.h"
#include "core/status.h"
#include "io/png_write.h"

enum {
    TEXT_SCALE = 2,
    PLOT_LEFT = 130,
    PLOT_RIGHT = 590,
    PLOT_TOP = 44,
    PLOT_BOTTOM = 430,
    LEGEND_X = 604,
    LEGEND_ROW = 24,
    LINE_WIDTH = 2,
    POINT_SIZE = 5,
    MARK_SIZE = 11,
};

static const zt_rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0}, GRID = {225, 225, 225},
                    MINOR_GRID = {242, 242, 242};

static const double GIB = 1024.0 * 1024.0 * 1024.0;

/* A log axis over whole decades: 10^lo .. 10^hi. */
typedef struct log_axis {
    int lo, hi;
    int pixel_lo, pixel_hi; /* where 10^lo and 10^hi land */
} log_axis;

static log_axis decades_around(double min, double max, int pixel_lo, int pixel_hi) {
    log_axis a = {(int)floor(log10(min) + 1e-9), (int)ceil(log10(max) - 1e-9), pixel_lo, pixel_hi};
    if (a.hi <= a.lo) a.hi = a.lo + 1;
    return a;
}

static int to_pixel(const log_axis *a, double value) {
    const double t = (log10(value) - a->lo) / (a->hi - a->lo);
    return a->pixel_lo + (int)lround(t * (a->pixel_hi - a->pixel_lo));
}

/* 10^k parameters: 1, 10, 100, 1K ... 100K, 1M ..., 1B ..., 1T ... */
static void count_label(int k, char *out, size_t size) {
    static const char suffix[] = {'\0', 'K', 'M', 'B', 'T'};
    int group = k / 3;
    if (group > 4) group = 4;
    if (k < 0) group = 0;
    if (k < 0 || k - 3 * group > 5) {
        snprintf(out, size, "1e%d", k);
        return;
    }
    int mantissa = 1;
    for (int i = 0; i < k - 3 * group; i++)
        mantissa *= 10;
    snprintf(out, size, group ? "%d%c" : "%d", mantissa, suffix[group]);
}

/* 10^k GiB. */
static void gib_label(int k, char *out, size_t size) {
    if (k >= 0 && k <= 5)
        snprintf(out, size, "%.0f GiB", pow(10.0, k));
    else if (k < 0 && k >= -3)
        snprintf(out, size, "%.*f GiB", -k, pow(10.0, k));
    else
        snprintf(out, size, "1e%d GiB", k);
}

static void draw_axes(zt_canvas *c, const log_axis *x, const log_axis *y) {
    for (int k = x->lo; k <= x->hi; k++)
        for (int m = 1; m <= (k < x->hi ? 9 : 1); m++) {
            const int px = to_pixel(x, m * pow(10.0, k));
            zt_canvas_fill_rect(c, px, PLOT_TOP, 1, PLOT_BOTTOM - PLOT_TOP,
                                m == 1 ? GRID : MINOR_GRID);
        }
    for (int k = y->lo; k <= y->hi; k++)
        for (int m = 1; m <= (k < y->hi ? 9 : 1); m++) {
            const int py = to_pixel(y, m * pow(10.0, k));
            zt_canvas_fill_rect(c, PLOT_LEFT, py, PLOT_RIGHT - PLOT_LEFT, 1,
                                m == 1 ? GRID : MINOR_GRID);
        }
    zt_canvas_fill_rect(c, PLOT_LEFT, PLOT_TOP, 1, PLOT_BOTTOM - PLOT_TOP + 1, BLACK);
    zt_canvas_fill_rect(c, PLOT_LEFT, PLOT_BOTTOM, PLOT_RIGHT - PLOT_LEFT + 1, 1, BLACK);
    char label[32];
    const int text_h = ZT_FONT_HEIGHT * TEXT_SCALE;
    for (int k = x->lo; k <= x->hi; k++) {
        const int px = to_pixel(x, pow(10.0, k));
        zt_canvas_fill_rect(c, px, PLOT_BOTTOM, 1, 6, BLACK);
        count_label(k, label, sizeof label);
        zt_canvas_text(c, px - zt_text_width(label, TEXT_SCALE) / 2, PLOT_BOTTOM + 10, TEXT_SCALE,
                       label, BLACK);
    }
    for (int k = y->lo; k <= y->hi; k++) {
        const int py = to_pixel(y, pow(10.0, k));
        zt_canvas_fill_rect(c, PLOT_LEFT - 6, py, 6, 1, BLACK);
        gib_label(k, label, sizeof label);
        zt_canvas_text(c, PLOT_LEFT - 10 - zt_text_width(label, TEXT_SCALE), py - text_h / 2,
                       TEXT_SCALE, label, BLACK);
    }
}

static void draw_square(zt_canvas *c, int x, int y, int size, zt_rgb colour) {
    zt_canvas_fill_rect(c, x - size / 2, y - size / 2, size, size, colour);
}

/* The marker of the given model: the method's colour in a black frame. */
static void draw_mark(zt_canvas *c, int x, int y, zt_rgb colour) {
    draw_square(c, x, y, MARK_SIZE, BLACK);
    draw_square(c, x, y, MARK_SIZE - 4, colour);
}

static void draw_curve(zt_canvas *c, const log_axis *x, const log_axis *y,
                       const zt_memory_curve *curve) {
    for (int i = 0; i < curve->n_points; i++) {
        const int px = to_pixel(x, curve->params[i]), py = to_pixel(y, curve->bytes[i] / GIB);
        if (i > 0)
            zt_canvas_line(c, to_pixel(x, curve->params[i - 1]),
                           to_pixel(y, curve->bytes[i - 1] / GIB), px, py, LINE_WIDTH,
                           curve->colour);
        draw_square(c, px, py, POINT_SIZE, curve->colour);
    }
}

static void draw_legend(zt_canvas *c, const zt_memory_figure *f) {
    int row_y = PLOT_TOP + 8;
    const int text_h = ZT_FONT_HEIGHT * TEXT_SCALE;
    for (int i = 0; i < f->n_curves; i++, row_y += LEGEND_ROW) {
        zt_canvas_fill_rect(c, LEGEND_X, row_y + text_h / 2 - 1, 18, 3, f->curves[i].colour);
        zt_canvas_text(c, LEGEND_X + 24, row_y, TEXT_SCALE, f->curves[i].label, BLACK);
    }
    draw_mark(c, LEGEND_X + 9, row_y + text_h / 2, WHITE);
    zt_canvas_text(c, LEGEND_X + 24, row_y, TEXT_SCALE, f->mark_label, BLACK);
}

zt_status zt_plot_memory_png(const char *path, const zt_memory_figure *f) {
    double x_min = INFINITY, x_max = 0.0, y_min = INFINITY, y_max = 0.0;
    for (int i = 0; i < f->n_curves; i++) {
        const zt_memory_curve *curve = &f->curves[i];
        for (int j = -1; j < curve->n_points; j++) {
            const double x = j < 0 ? curve->mark_params : curve->params[j];
            const double y = (j < 0 ? curve->mark_bytes : curve->bytes[j]) / GIB;
            if (!(x > 0.0 && y > 0.0 && isfinite(x) && isfinite(y)))
                return zt_fail(ZT_ERR_INVALID_ARG,
                               "%s: %s: a point (%g parameters, %g GiB) "
                               "that a log scale cannot show",
                               path, curve->label, x, y);
            x_min = fmin(x_min, x);
            x_max = fmax(x_max, x);
            y_min = fmin(y_min, y);
            y_max = fmax(y_max, y);
        }
    }
    if (f->n_curves < 1) return zt_fail(ZT_ERR_INVALID_ARG, "%s: a figure without curves", path);
    const log_axis x = decades_around(x_min, x_max, PLOT_LEFT, PLOT_RIGHT);
    const log_axis y = decades_around(y_min, y_max, PLOT_BOTTOM, PLOT_TOP);
    zt_canvas c;
    ZT_TRY(zt_canvas_create(ZT_PLOT_WIDTH, ZT_PLOT_HEIGHT, WHITE, &c));
    zt_canvas_text(&c, PLOT_LEFT - 100, 12, TEXT_SCALE, f->title, BLACK);
    draw_axes(&c, &x, &y);
    for (int i = 0; i < f->n_curves; i++)
        draw_curve(&c, &x, &y, &f->curves[i]);
    for (int i = 0; i < f->n_curves; i++)
        draw_mark(&c, to_pixel(&x, f->curves[i].mark_params),
                  to_pixel(&y, f->curves[i].mark_bytes / GIB), f->curves[i].colour);
    zt_canvas_text(&c, (PLOT_LEFT + PLOT_RIGHT - zt_text_width(f->x_label, TEXT_SCALE)) / 2,
                   PLOT_BOTTOM + 36, TEXT_SCALE, f->x_label, BLACK);
    draw_legend(&c, f);
    const zt_status s = zt_png_write_rgb(path, c.width, c.height, c.pixels);
    zt_canvas_free(&c);
    return s;
}
