#include "core/path.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

zt_status zt_make_dirs(const char *dir) {
    char path[ZT_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) return zt_fail(ZT_ERR_INVALID_ARG, "directory '%s': bad length", dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return zt_fail(ZT_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return zt_fail(ZT_ERR_IO, "%s: exists and is not a directory", dir);
    return ZT_OK;
}
