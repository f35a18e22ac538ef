/* The data of `zotune bench memory --plot` and its figure. */
#include "cli/bench_plot.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/plot_memory.h"
#include "core/status.h"

zt_status zt_bench_plan_sizes(const zt_model *m, zt_backend *be, int batch, int seq_len,
                              zt_bench_sizes *out) {
    memset(out, 0, sizeof *out);
    out->model_params = (double)zt_model_parameter_count(m);
    const int n = zt_model_published_sizes(m);
    if (n < 1)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "--plot: the model's family has no published sizes to draw against");
    for (int i = 0; i < n && i < ZT_BENCH_MAX_SIZES; i++) {
        zt_model *sized = NULL;
        const char *name = NULL;
        ZT_TRY(zt_model_open_published_size(m, i, m->tensors[m->embed_tokens].dtype, be, &sized,
                                            &name));
        out->params[i] = (double)zt_model_parameter_count(sized);
        zt_status s = ZT_OK;
        for (int j = 0; s == ZT_OK && j < ZT_BENCH_N_METHODS; j++) {
            zt_bench_row r;
            s = zt_bench_plan_row(sized, &zt_bench_methods[j], batch, seq_len, &r);
            out->peaks[j][i] = (double)r.plan.total_bytes;
        }
        zt_model_free(sized);
        if (s != ZT_OK) return zt_fail_context(s, "--plot, size %s: ", name);
        out->n_sizes = i + 1;
    }
    return ZT_OK;
}

zt_status zt_bench_check_plot_path(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (slash && !slash[1])
        return zt_fail(ZT_ERR_INVALID_ARG, "--plot %s: a file name is needed, not a directory",
                       path);
    if (access(dir, W_OK | X_OK) != 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "--plot %s: cannot write into %s: %s", path, dir,
                       strerror(errno));
    return ZT_OK;
}

zt_status zt_bench_write_plot(const char *path, const zt_bench_sizes *sizes,
                              const zt_bench_row *rows, int batch, int seq_len, const char *dtype) {
    zt_memory_curve curves[ZT_BENCH_N_METHODS];
    for (int i = 0; i < ZT_BENCH_N_METHODS; i++)
        curves[i] = (zt_memory_curve){zt_bench_methods[i].name,
                                      zt_bench_methods[i].colour,
                                      sizes->n_sizes,
                                      sizes->params,
                                      sizes->peaks[i],
                                      sizes->model_params,
                                      (double)rows[i].plan.total_bytes};
    char title[128], flag_dtype[16];
    snprintf(flag_dtype, sizeof flag_dtype, "%s", dtype);
    for (char *c = flag_dtype; *c; c++) /* "F16" as --dtype spells it */
        *c = (char)tolower((unsigned char)*c);
    snprintf(title, sizeof title, "planned peak memory, batch %d x %d tokens, %s weights", batch,
             seq_len, flag_dtype);
    const zt_memory_figure figure = {title, "parameters (published sizes)", "this model", curves,
                                     ZT_BENCH_N_METHODS};
    return zt_plot_memory_png(path, &figure);
}
