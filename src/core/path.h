/* Path composition with an error, not silent truncation, when a path does not fit. */
#ifndef ZT_CORE_PATH_H
#define ZT_CORE_PATH_H

#include <stddef.h>

#include "zotune.h"

enum { ZT_PATH_MAX = 4096 };

/* out = dir + "/" + name (or dir + suffix with zt_path_append). */
zt_status zt_path_join(char *out, size_t size, const char *dir, const char *name);
zt_status zt_path_append(char *out, size_t size, const char *path, const char *suffix);

/* mkdir -p: creates dir and any missing parents; an existing directory is fine. */
zt_status zt_make_dirs(const char *dir);

/* Refuses (ZT_ERR_INVALID_ARG, naming both options) an output directory that is, contains or lies
 * inside one of the inputs, judged on the resolved paths (symlinks, "." and ".." followed), so
 * that no spelling of the same place gets through. The output need not exist; inputs that do
 * not exist are left to their readers. */
zt_status zt_check_output_apart(const char *output, const char *output_option,
                                const char *const *inputs, const char *const *input_options,
                                int n_inputs);

#endif
