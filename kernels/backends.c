/* Backends by device name: the one place that knows every constructor, so that the op table
 * (backend.h) depends on no backend and each backend only on it. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/status.h"
#include "cpu/cpu_backend.h"
#include "zt_config.h"
#if ZT_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

/* Calls the constructor `name` asks for. */
static zt_status create_by_name(const char *name, int n_threads, zt_backend **out) {
    *out = NULL;
    if (name == NULL || strcmp(name, "cpu") == 0) return zt_cpu_backend_create(n_threads, out);
    if (strncmp(name, "cuda", 4) == 0) {
#if ZT_HAVE_CUDA
        const char *suffix = name + 4;
        long device = 0;
        if (*suffix == ':') {
            char *end = NULL;
            device = strtol(suffix + 1, &end, 10);
            if (end == suffix + 1 || *end != '\0' || device < 0 || device > INT_MAX)
                return zt_fail(ZT_ERR_INVALID_ARG, "--device %s: expected cuda or cuda:N", name);
        } else if (*suffix != '\0') {
            return zt_fail(ZT_ERR_INVALID_ARG, "--device %s: expected cuda or cuda:N", name);
        }
        return zt_cuda_backend_create((int)device, out);
#else
        return zt_fail(ZT_ERR_UNAVAILABLE, "--device %s: this build has no CUDA backend", name);
#endif
    }
    return zt_fail(ZT_ERR_INVALID_ARG, "--device %s: unknown device (expected cpu or cuda[:N])",
                   name);
}

zt_status zt_backend_create(const char *name, int n_threads, zt_backend **out) {
    ZT_TRY(create_by_name(name, n_threads, out));
    zt_status status = zt_backend_check_ops((*out)->ops);
    if (status == ZT_OK && (*out)->head_chunk_rows < 1)
        status = zt_fail(ZT_ERR_INTERNAL, "backend '%s': head_chunk_rows %d (at least 1)",
                         (*out)->ops->name, (*out)->head_chunk_rows);
    if (status != ZT_OK) {
        /* Without a destroy slot the half-made backend cannot be released: leaked, not crashed. */
        if ((*out)->ops != NULL && (*out)->ops->destroy != NULL) (*out)->ops->destroy(*out);
        *out = NULL;
    }
    return status;
}
