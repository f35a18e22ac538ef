/* zt_write_file_atomic: the content goes to path.tmp, which is fsynced and renamed over path, and
 * then the directory is fsynced (best effort) so that the rename itself survives a crash. */
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fault.h"
#include "core/status.h"

zt_status zt_write_file_atomic(const char *path, const void *const *chunks,
                               const size_t *chunk_bytes, int n_chunks) {
    if (!path || n_chunks < 0 || (n_chunks > 0 && (!chunks || !chunk_bytes)))
        return zt_fail(ZT_ERR_INVALID_ARG, "zt_write_file_atomic: bad arguments");
    size_t path_len = strlen(path);
    char *tmp_path = zt_malloc(path_len + sizeof ".tmp");
    if (!tmp_path) return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp_path, path, path_len);
    memcpy(tmp_path + path_len, ".tmp", sizeof ".tmp");

    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        zt_status status =
            zt_fail(ZT_ERR_IO, "%s: cannot create %s: %s", path, tmp_path, strerror(errno));
        free(tmp_path);
        return status;
    }
    zt_status status = ZT_OK;
    for (int c = 0; c < n_chunks && status == ZT_OK; c++)
        if (chunk_bytes[c] > 0 && zt_write_fd(fd, chunks[c], chunk_bytes[c]) != 0)
            status = zt_fail(ZT_ERR_IO, "%s: writing %s failed: %s", path, tmp_path,
                             strerror(errno));
    /* The data must be on disk before the rename makes it visible under the final name. */
    if (status == ZT_OK && fsync(fd) != 0)
        status = zt_fail(ZT_ERR_IO, "%s: fsync of %s failed: %s", path, tmp_path, strerror(errno));
    if (close(fd) != 0 && status == ZT_OK)
        status = zt_fail(ZT_ERR_IO, "%s: closing %s failed: %s", path, tmp_path, strerror(errno));
    if (status == ZT_OK && rename(tmp_path, path) != 0)
        status = zt_fail(ZT_ERR_IO, "%s: renaming %s into place failed: %s", path, tmp_path,
                         strerror(errno));
    if (status != ZT_OK) {
        unlink(tmp_path);
        free(tmp_path);
        return status;
    }
    free(tmp_path);

    /* Persist the rename itself. Best effort: some file systems refuse fsync on a directory,
     * and the file is complete either way. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? zt_malloc((size_t)(slash - path) + 2) : zt_strdup(".");
    if (dir) {
        if (slash) {
            size_t dir_len = slash == path ? 1 : (size_t)(slash - path);
            memcpy(dir, path, dir_len);
            dir[dir_len] = '\0';
        }
        int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd >= 0) {
            (void)fsync(dir_fd);
            close(dir_fd);
        }
        free(dir);
    }
    return ZT_OK;
}
