#include "backend.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "zt_config.h"
#if ZT_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

zt_status zt_backend_create(const char *name, int n_threads, zt_backend **out) {
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

void zt_backend_destroy(zt_backend *be) {
    if (be) be->ops->destroy(be);
}
