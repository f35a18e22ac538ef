/* `zotune bench memory --plot`: every method's plan at each published size of the model's
 * family, drawn against the parameter count with the given model marked (cli/plot_memory.h). */
#ifndef ZT_CLI_BENCH_PLOT_H
#define ZT_CLI_BENCH_PLOT_H

#include "cli/bench_methods.h"

enum { ZT_BENCH_MAX_SIZES = 16 };

typedef struct zt_bench_sizes {
    int n_sizes;
    double params[ZT_BENCH_MAX_SIZES];                    /* (n_sizes) */
    double peaks[ZT_BENCH_N_METHODS][ZT_BENCH_MAX_SIZES]; /* (methods, n_sizes) bytes */
    double model_params;                                  /* the given model's */
} zt_bench_sizes;

/* Refuses a --plot path whose directory cannot take the file, so that nothing is planned or
 * measured for a figure that cannot be written. */
zt_status zt_bench_check_plot_path(const char *path);

/* Every method's plan at each published size of m's family, at m's vocabulary, positions and
 * dtype (zt_model_open_published_size), and m's parameter count. */
zt_status zt_bench_plan_sizes(const zt_model *m, zt_backend *be, int batch, int seq_len,
                              zt_bench_sizes *out);

/* The figure at path: the curves of `sizes` and the given model's rows (ZT_BENCH_N_METHODS) as
 * markers; the title names batch, seq_len and dtype ("F16" or "f16"). */
zt_status zt_bench_write_plot(const char *path, const zt_bench_sizes *sizes,
                              const zt_bench_row *rows, int batch, int seq_len, const char *dtype);

#endif
