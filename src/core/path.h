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

#endif
