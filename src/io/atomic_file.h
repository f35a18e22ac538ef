/* Atomic file replacement, shared by the io writers (safetensors, config.json). */
#ifndef ZT_IO_ATOMIC_FILE_H
#define ZT_IO_ATOMIC_FILE_H

#include <stddef.h>

#include "zotune.h"

/* Writes the concatenated chunks to path + ".tmp", fsyncs, and renames it over path, so a crash
 * never leaves a half-written file under the final name. On failure the .tmp file is removed
 * and the message names path. */
zt_status zt_write_file_atomic(const char *path, const void *const *chunks,
                               const size_t *chunk_bytes, int n_chunks);

#endif
