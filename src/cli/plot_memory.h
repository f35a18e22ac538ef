/* The figure of `zotune bench memory --plot`: peak memory against parameter count, log-log, one
 * line per method through the family's published sizes and a marker per method at the model the
 * command was given. */
#ifndef ZT_CLI_PLOT_MEMORY_H
#define ZT_CLI_PLOT_MEMORY_H

#include "cli/raster.h"
#include "zotune.h"

enum { ZT_PLOT_WIDTH = 800, ZT_PLOT_HEIGHT = 500 };

typedef struct zt_memory_curve {
    const char *label; /* the method */
    zt_rgb colour;
    int n_points;
    const double *params, *bytes;   /* (n_points), positive, in drawing order */
    double mark_params, mark_bytes; /* the given model's point (positive), drawn as a marker */
} zt_memory_curve;

typedef struct zt_memory_figure {
    const char *title;
    const char *x_label;
    const char *mark_label; /* the legend's name for the markers */
    const zt_memory_curve *curves;
    int n_curves;
} zt_memory_figure;

/* Draws the figure into an 800 x 500 PNG at path (io/png_write.h: atomic, errors name path). */
zt_status zt_plot_memory_png(const char *path, const zt_memory_figure *figure);

#endif
