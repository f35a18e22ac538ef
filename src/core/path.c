#include "core/path.h"

#include <stdio.h>

#include "core/status.h"

zt_status zt_path_join(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return zt_fail(ZT_ERR_INVALID_ARG, "path '%s/%s' is longer than %zu bytes", dir, name, size);
    return ZT_OK;
}

zt_status zt_path_append(char *out, size_t size, const char *path, const char *suffix) {
    int n = snprintf(out, size, "%s%s", path, suffix);
    if (n < 0 || (size_t)n >= size)
        return zt_fail(ZT_ERR_INVALID_ARG, "path '%s%s' is longer than %zu bytes", path, suffix, size);
    return ZT_OK;
}
