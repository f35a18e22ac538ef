#include "core/path.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/status.h"

zt_status zt_path_join(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return zt_fail(ZT_ERR_INVALID_ARG, "path '%s/%s' is longer than %zu bytes", dir, name,
                       size);
    return ZT_OK;
}

zt_status zt_path_append(char *out, size_t size, const char *path, const char *suffix) {
    int n = snprintf(out, size, "%s%s", path, suffix);
    if (n < 0 || (size_t)n >= size)
        return zt_fail(ZT_ERR_INVALID_ARG, "path '%s%s' is longer than %zu bytes", path, suffix,
                       size);
    return ZT_OK;
}

zt_status zt_make_dirs(const char *dir) {
    char path[ZT_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return zt_fail(ZT_ERR_INVALID_ARG, "directory '%s': bad length", dir);
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

/* The absolute, symlink-free form of path, which need not exist yet: its longest existing prefix
 * resolved by realpath, the rest appended with "." and ".." applied. 0 when it cannot be said. */
static int canonical_path(const char *path, char *out, size_t size) {
    char prefix[ZT_PATH_MAX], resolved[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof prefix) return 0;
    memcpy(prefix, path, n + 1);
    /* shorten to the longest prefix that exists */
    size_t cut = n;
    while (realpath(prefix, resolved) == NULL) {
        while (cut > 0 && prefix[cut - 1] != '/')
            cut--;
        if (cut == 0) {
            if (realpath(".", resolved) == NULL) return 0;
            break;
        }
        while (cut > 1 && prefix[cut - 1] == '/')
            cut--;
        prefix[cut] = '\0';
        if (cut == 1 && prefix[0] == '/') {
            snprintf(resolved, sizeof resolved, "/");
            break;
        }
    }
    size_t used = (size_t)snprintf(out, size, "%s", resolved);
    if (used >= size) return 0;
    /* append the components past the existing prefix */
    for (const char *c = path + cut; *c;) {
        while (*c == '/')
            c++;
        const char *end = c;
        while (*end && *end != '/')
            end++;
        size_t len = (size_t)(end - c);
        if (len == 0) break;
        if (len == 2 && c[0] == '.' && c[1] == '.') {
            while (used > 1 && out[used - 1] != '/')
                used--;
            if (used > 1) used--;
            out[used] = '\0';
        } else if (!(len == 1 && c[0] == '.')) {
            if (used + 1 + len >= size) return 0;
            if (used > 1) out[used++] = '/';
            memcpy(out + used, c, len);
            used += len;
            out[used] = '\0';
        }
        c = end;
    }
    return 1;
}

/* a lies inside b (or is b, when or_equal). */
static int path_within(const char *a, const char *b, int or_equal) {
    size_t n = strlen(b);
    if (strcmp(b, "/") == 0) return or_equal || strcmp(a, "/") != 0;
    if (strncmp(a, b, n) != 0) return 0;
    return a[n] == '/' || (or_equal && a[n] == '\0');
}

zt_status zt_check_output_apart(const char *output, const char *output_option,
                                const char *const *inputs, const char *const *input_options,
                                int n_inputs) {
    char out[ZT_PATH_MAX], in[ZT_PATH_MAX];
    if (!canonical_path(output, out, sizeof out))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s %s: cannot resolve the path", output_option, output);
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i] || !canonical_path(inputs[i], in, sizeof in)) continue;
        const char *relation = strcmp(out, in) == 0      ? "is the same place as"
                               : path_within(in, out, 0) ? "contains"
                               : path_within(out, in, 0) ? "lies inside"
                                                         : NULL;
        if (relation)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "%s %s %s %s %s (%s): a run never writes into its inputs; choose "
                           "another directory (nothing was written)",
                           output_option, output, relation, input_options[i], inputs[i], in);
    }
    return ZT_OK;
}
