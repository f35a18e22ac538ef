/* Backends by device name: the one place that knows every constructor, so that the op table
 * (backend.h) depends on no backend and each backend only on it. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/status.h"
#include "cpu/cpu_backend.h"
#include "zt_config.h"
#if ZT_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

/* Devices added at run time (zt_backend_register). A handful is all the tests need. */
enum { ZT_MAX_REGISTERED_BACKENDS = 4, ZT_MAX_BACKEND_NAME = 32 };
static struct {
    char name[ZT_MAX_BACKEND_NAME];
    zt_backend_constructor construct;
} registered[ZT_MAX_REGISTERED_BACKENDS];
static int n_registered;

/* "cpu", "cuda" and "cuda:..." belong to the built-in constructors. */
static int built_in_name(const char *name) {
    return strcmp(name, "cpu") == 0 || strcmp(name, "cuda") == 0 || strncmp(name, "cuda:", 5) == 0;
}

zt_status zt_backend_register(const char *name, zt_backend_constructor construct) {
    if (name == NULL || name[0] == '\0' || construct == NULL)
        return zt_fail(ZT_ERR_INVALID_ARG, "zt_backend_register: %s",
                       construct == NULL ? "no constructor" : "no device name");
    if (strlen(name) >= ZT_MAX_BACKEND_NAME)
        return zt_fail(ZT_ERR_INVALID_ARG, "zt_backend_register: device name '%s' is over %d bytes",
                       name, ZT_MAX_BACKEND_NAME - 1);
    if (built_in_name(name))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "zt_backend_register: device name '%s' is a built-in device's", name);
    for (int i = 0; i < n_registered; i++)
        if (strcmp(registered[i].name, name) == 0) {
            registered[i].construct = construct;
            return ZT_OK;
        }
    if (n_registered == ZT_MAX_REGISTERED_BACKENDS)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "zt_backend_register: device '%s': all %d slots are taken", name,
                       ZT_MAX_REGISTERED_BACKENDS);
    snprintf(registered[n_registered].name, ZT_MAX_BACKEND_NAME, "%s", name);
    registered[n_registered].construct = construct;
    n_registered++;
    return ZT_OK;
}

/* Calls the constructor `name` asks for. */
static zt_status create_by_name(const char *name, int n_threads, zt_backend **out) {
    *out = NULL;
    if (name == NULL || strcmp(name, "cpu") == 0) return zt_cpu_backend_create(n_threads, out);
    for (int i = 0; i < n_registered; i++)
        if (strcmp(registered[i].name, name) == 0) return registered[i].construct(n_threads, out);
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
    if (status == ZT_OK && (*out)->head_vocab_chunk < 0)
        status = zt_fail(ZT_ERR_INTERNAL, "backend '%s': head_vocab_chunk %d (0 or more)",
                         (*out)->ops->name, (*out)->head_vocab_chunk);
    if (status == ZT_OK && (*out)->head_vocab_chunk > 0 && !(*out)->ops->target_logprobs_fold)
        status = zt_fail(ZT_ERR_INTERNAL,
                         "backend '%s': head_vocab_chunk %d without a target_logprobs_fold op",
                         (*out)->ops->name, (*out)->head_vocab_chunk);
    if (status != ZT_OK) {
        /* Without a destroy slot the half-made backend cannot be released: leaked, not crashed. */
        if ((*out)->ops != NULL && (*out)->ops->destroy != NULL) (*out)->ops->destroy(*out);
        *out = NULL;
    }
    return status;
}
