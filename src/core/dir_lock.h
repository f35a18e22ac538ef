/* One writer per output directory: an exclusive flock on DIR/.zotune.lock held for the whole run.
 * A second writer fails at once, naming the process that holds the lock; the kernel drops the
 * lock when its holder exits, however it exits, so a dead run never blocks its --resume. */
#ifndef ZT_CORE_DIR_LOCK_H
#define ZT_CORE_DIR_LOCK_H

#include "zotune.h"

typedef struct zt_dir_lock {
    int fd; /* -1 when not held */
} zt_dir_lock;

/* dir must exist. option names the directory in messages ("--output"). */
zt_status zt_dir_lock_acquire(const char *dir, const char *option, zt_dir_lock *lock);
void zt_dir_lock_release(zt_dir_lock *lock);

#endif
