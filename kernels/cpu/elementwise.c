/* Elementwise ops: the residual add. */
#include "core/status.h"
#include "cpu/cpu_common.h"

zt_status zt_cpu_add(zt_backend *be, float *x, /* (n_elems) */
                     const float *y,           /* (n_elems) */
                     size_t n_elems) {
    const char *op = "add";
    if (n_elems == 0) return ZT_OK; /* nothing to add; an unsigned count cannot be negative */
    ZT_TRY(zt_check_ptr(op, "x", x));
    ZT_TRY(zt_check_ptr(op, "y", y));
    const int64_t n = (int64_t)n_elems;
    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
    return ZT_OK;
}
