/* A strict reader for the zip archives torch.save writes (docs/design.md §7, "PyTorch
 * checkpoints"): the end-of-central-directory record (and its zip64 form), the central directory
 * and each entry's local header, every offset and size checked against the mapped file. Only
 * stored (uncompressed) entries are accepted: torch writes nothing else, and the entries' bytes
 * are handed out in place, inside the caller's mapping. */
#ifndef ZT_IO_ZIP_READ_H
#define ZT_IO_ZIP_READ_H

#include <stddef.h>
#include <stdint.h>

#include "zotune.h"

typedef struct zt_zip_entry {
    char *name;          /* as stored, NUL-terminated (names holding a NUL are refused) */
    const uint8_t *data; /* inside the mapping */
    uint64_t size;
    uint32_t crc32; /* as the central directory records it */
} zt_zip_entry;

typedef struct zt_zip {
    zt_zip_entry *entries; /* sorted by name, names unique */
    int n_entries;
} zt_zip;

/* Reads the archive in map[0..map_bytes). path names the file in messages. On failure *zip is
 * left empty. */
zt_status zt_zip_read(const char *path, const uint8_t *map, size_t map_bytes, zt_zip *zip);
void zt_zip_free(zt_zip *zip);

const zt_zip_entry *zt_zip_find(const zt_zip *zip, const char *name); /* NULL if absent */

/* Compares the entry's bytes with its recorded CRC-32 (for the small entries a reader parses:
 * the storages of a large checkpoint are not worth a pass over gigabytes). */
zt_status zt_zip_check_crc(const char *path, const zt_zip_entry *entry);

#endif
