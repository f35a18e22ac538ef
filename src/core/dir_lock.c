#include "core/dir_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/path.h"
#include "core/status.h"

zt_status zt_dir_lock_acquire(const char *dir, const char *option, zt_dir_lock *lock) {
    lock->fd = -1;
    char path[ZT_PATH_MAX];
    ZT_TRY(zt_path_join(path, sizeof path, dir, ".zotune.lock"));
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return zt_fail(ZT_ERR_IO, "%s: cannot open the lock: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int why = errno;
        char holder[32] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        if (why != EWOULDBLOCK)
            return zt_fail(ZT_ERR_IO, "%s: cannot lock: %s", path, strerror(why));
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "%s %s is being written by another zotune (process %s, lock %s): wait for "
                       "it to finish or stop it first",
                       option, dir, holder[0] ? holder : "unknown", path);
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        zt_status s =
            zt_fail(ZT_ERR_IO, "%s: cannot record the lock's owner: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    lock->fd = fd;
    return ZT_OK;
}

void zt_dir_lock_release(zt_dir_lock *lock) {
    if (lock->fd >= 0) close(lock->fd); /* closing drops the flock */
    lock->fd = -1;
}
