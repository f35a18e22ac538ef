#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

zt_status zt_backend_create(const char *name, int n_threads, zt_backend **out) {
    *out = NULL;
    if (name == NULL || strcmp(name, "cpu") == 0) return zt_cpu_backend_create(n_threads, out);
    if (strncmp(name, "cuda", 4) == 0)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "--device %s: the CUDA backend is not available in this build yet", name);
    return zt_fail(ZT_ERR_INVALID_ARG, "--device %s: unknown device (expected cpu or cuda[:N])",
                   name);
}

void zt_backend_destroy(zt_backend *be) {
    if (be) be->ops->destroy(be);
}
