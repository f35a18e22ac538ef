/* The zip reader of zip_read.h. Layout (PKWARE APPNOTE 6.3): entries, each a local header, its
 * name and extra field, then the data; the central directory, one record per entry; and the
 * end-of-central-directory record, which torch always precedes by the zip64 record and locator.
 * Nothing is trusted before it is bounds-checked: every read goes through zip_span_ok. */
#include "io/zip_read.h"

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"

enum {
    EOCD_BYTES = 22,
    EOCD64_BYTES = 56,
    LOCATOR64_BYTES = 20,
    CENTRAL_BYTES = 46,
    LOCAL_BYTES = 30,
    MAX_COMMENT_BYTES = 65535,
};

static const uint32_t sig_eocd = 0x06054b50, sig_eocd64 = 0x06064b50, sig_locator64 = 0x07064b50,
                      sig_central = 0x02014b50, sig_local = 0x04034b50;
static const uint32_t zip64_marker32 = 0xFFFFFFFFu;
static const uint16_t zip64_marker16 = 0xFFFFu;

static uint16_t le16(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) {
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Whether [offset, offset + length) lies inside [0, limit), without overflow. */
static bool zip_span_ok(uint64_t offset, uint64_t length, uint64_t limit) {
    return offset <= limit && length <= limit - offset;
}

/* Where the central directory is and how many records it holds. */
typedef struct zip_directory {
    uint64_t offset, size, count;
    uint64_t end; /* the first byte after it that belongs to the end records */
} zip_directory;

static zt_status zip_find_eocd(const char *path, const uint8_t *map, size_t n, uint64_t *at) {
    if (n < EOCD_BYTES)
        return zt_fail(ZT_ERR_FORMAT, "%s: %zu bytes, too short to be a zip archive", path, n);
    /* The record ends the file but for its comment, so the last candidate whose comment length
     * reaches exactly the end is the one. */
    size_t lowest = n - EOCD_BYTES > MAX_COMMENT_BYTES ? n - EOCD_BYTES - MAX_COMMENT_BYTES : 0;
    for (size_t i = n - EOCD_BYTES + 1; i-- > lowest;)
        if (le32(map + i) == sig_eocd && i + EOCD_BYTES + le16(map + i + 20) == n) {
            *at = i;
            return ZT_OK;
        }
    return zt_fail(ZT_ERR_FORMAT, "%s: no end-of-central-directory record: not a zip archive",
                   path);
}

/* Fills dir from the zip64 record that the locator just before the classic record points to. */
static zt_status zip_read_eocd64(const char *path, const uint8_t *map, uint64_t locator,
                                 zip_directory *dir) {
    if (le32(map + locator + 4) != 0 || le32(map + locator + 16) != 1)
        return zt_fail(ZT_ERR_FORMAT, "%s: multi-disk zip archives are not supported", path);
    uint64_t at = le64(map + locator + 8);
    if (!zip_span_ok(at, EOCD64_BYTES, locator) || le32(map + at) != sig_eocd64)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: the zip64 locator points at offset %" PRIu64
                       ", where there is no zip64 end record",
                       path, at);
    if (le32(map + at + 16) != 0 || le32(map + at + 20) != 0 ||
        le64(map + at + 24) != le64(map + at + 32))
        return zt_fail(ZT_ERR_FORMAT, "%s: multi-disk zip archives are not supported", path);
    dir->count = le64(map + at + 32);
    dir->size = le64(map + at + 40);
    dir->offset = le64(map + at + 48);
    dir->end = at;
    return ZT_OK;
}

static zt_status zip_locate_directory(const char *path, const uint8_t *map, size_t n,
                                      zip_directory *dir) {
    uint64_t eocd = 0;
    ZT_TRY(zip_find_eocd(path, map, n, &eocd));
    const uint8_t *e = map + eocd;
    if (eocd >= LOCATOR64_BYTES && le32(map + eocd - LOCATOR64_BYTES) == sig_locator64)
        return zip_read_eocd64(path, map, eocd - LOCATOR64_BYTES, dir);
    if (le16(e + 4) != 0 || le16(e + 6) != 0 || le16(e + 8) != le16(e + 10))
        return zt_fail(ZT_ERR_FORMAT, "%s: multi-disk zip archives are not supported", path);
    if (le16(e + 10) == zip64_marker16 || le32(e + 12) == zip64_marker32 ||
        le32(e + 16) == zip64_marker32)
        return zt_fail(ZT_ERR_FORMAT, "%s: the end record defers to a zip64 record that is absent",
                       path);
    dir->count = le16(e + 10);
    dir->size = le32(e + 12);
    dir->offset = le32(e + 16);
    dir->end = eocd;
    return ZT_OK;
}

/* The zip64 extended-information field gives, in this order, the values whose 32-bit fields
 * hold the marker. */
static zt_status zip_apply_zip64_extra(const char *path, const char *name, const uint8_t *extra,
                                       uint16_t extra_len, uint64_t *size, uint64_t *compressed,
                                       uint64_t *local_offset) {
    uint64_t *wanted[3] = {*size == zip64_marker32 ? size : NULL,
                           *compressed == zip64_marker32 ? compressed : NULL,
                           *local_offset == zip64_marker32 ? local_offset : NULL};
    for (uint32_t i = 0; i + 4 <= extra_len;) {
        uint16_t id = le16(extra + i), len = le16(extra + i + 2);
        if (len > extra_len - i - 4)
            return zt_fail(ZT_ERR_FORMAT, "%s: entry '%s': extra field runs past its end", path,
                           name);
        if (id == 1) {
            uint32_t used = 0;
            for (int k = 0; k < 3; k++) {
                if (!wanted[k]) continue;
                if (used + 8 > len)
                    return zt_fail(ZT_ERR_FORMAT, "%s: entry '%s': zip64 extra field is too short",
                                   path, name);
                *wanted[k] = le64(extra + i + 4 + used);
                wanted[k] = NULL;
                used += 8;
            }
        }
        i += 4u + len;
    }
    for (int k = 0; k < 3; k++)
        if (wanted[k])
            return zt_fail(ZT_ERR_FORMAT,
                           "%s: entry '%s': a size or offset defers to a missing zip64 field", path,
                           name);
    return ZT_OK;
}

/* One central record at *at (advanced past it): its local header, name and data span. */
static zt_status zip_read_entry(const char *path, const uint8_t *map, const zip_directory *dir,
                                uint64_t *at, zt_zip_entry *entry, uint64_t *local_offset) {
    uint64_t dir_end = dir->offset + dir->size;
    if (!zip_span_ok(*at, CENTRAL_BYTES, dir_end) || le32(map + *at) != sig_central)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: central directory record at offset %" PRIu64 " is missing or cut off",
                       path, *at);
    const uint8_t *c = map + *at;
    uint16_t flags = le16(c + 8), method = le16(c + 10);
    uint16_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
    if (!zip_span_ok(*at + CENTRAL_BYTES, (uint64_t)name_len + extra_len + comment_len, dir_end))
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: central directory record at offset %" PRIu64 " runs past the directory",
                       path, *at);
    const uint8_t *name = c + CENTRAL_BYTES;
    if (name_len == 0 || memchr(name, 0, name_len))
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: central directory record at offset %" PRIu64
                       " has an empty name or one holding a NUL byte",
                       path, *at);
    entry->name = zt_malloc((size_t)name_len + 1);
    if (!entry->name) return zt_fail(ZT_ERR_NOMEM, "%s: out of memory", path);
    memcpy(entry->name, name, name_len);
    entry->name[name_len] = '\0';
    if (flags & 1) return zt_fail(ZT_ERR_FORMAT, "%s: entry '%s' is encrypted", path, entry->name);
    if (method != 0)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: entry '%s' is compressed (method %u); only stored entries are read, "
                       "as torch.save writes them (re-save the checkpoint with torch.save)",
                       path, entry->name, method);
    uint64_t compressed = le32(c + 20), size = le32(c + 24), local = le32(c + 42);
    entry->crc32 = le32(c + 16);
    ZT_TRY(zip_apply_zip64_extra(path, entry->name, name + name_len, extra_len, &size, &compressed,
                                 &local));
    if (compressed != size)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: entry '%s' is stored but its sizes differ (%" PRIu64 " and %" PRIu64
                       ")",
                       path, entry->name, compressed, size);
    *at += CENTRAL_BYTES + (uint64_t)name_len + extra_len + comment_len;

    if (!zip_span_ok(local, LOCAL_BYTES, dir->offset) || le32(map + local) != sig_local)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: entry '%s': no local header at offset %" PRIu64
                       " (before the central directory at %" PRIu64 ")",
                       path, entry->name, local, dir->offset);
    const uint8_t *l = map + local;
    uint16_t local_name_len = le16(l + 26), local_extra_len = le16(l + 28);
    uint64_t data = local + LOCAL_BYTES + local_name_len + local_extra_len;
    if (le16(l + 8) != method || local_name_len != name_len ||
        !zip_span_ok(local + LOCAL_BYTES, local_name_len, dir->offset) ||
        memcmp(l + LOCAL_BYTES, name, name_len) != 0)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: entry '%s': its local header disagrees with the central directory",
                       path, entry->name);
    if (!zip_span_ok(data, size, dir->offset))
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: entry '%s': %" PRIu64 " bytes at offset %" PRIu64
                       " run past the start of the central directory (%" PRIu64 ")",
                       path, entry->name, size, data, dir->offset);
    entry->data = map + data;
    entry->size = size;
    *local_offset = local;
    return ZT_OK;
}

static int zip_compare_names(const void *a, const void *b) {
    return strcmp(((const zt_zip_entry *)a)->name, ((const zt_zip_entry *)b)->name);
}

/* An entry's bytes in the file, from its local header to the end of its data. */
typedef struct zip_span {
    uint64_t begin, end;
    int entry;
} zip_span;

static int zip_compare_spans(const void *a, const void *b) {
    const zip_span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Entries must not share bytes: each local header starts after the previous entry's data. */
static zt_status zip_check_apart(const char *path, const zt_zip *zip, zip_span *spans) {
    qsort(spans, (size_t)zip->n_entries, sizeof *spans, zip_compare_spans);
    for (int i = 1; i < zip->n_entries; i++)
        if (spans[i].begin < spans[i - 1].end)
            return zt_fail(ZT_ERR_FORMAT, "%s: entries '%s' and '%s' overlap", path,
                           zip->entries[spans[i - 1].entry].name,
                           zip->entries[spans[i].entry].name);
    return ZT_OK;
}

zt_status zt_zip_read(const char *path, const uint8_t *map, size_t map_bytes, zt_zip *zip) {
    memset(zip, 0, sizeof *zip);
    zip_directory dir = {0, 0, 0, 0};
    ZT_TRY(zip_locate_directory(path, map, map_bytes, &dir));
    if (!zip_span_ok(dir.offset, dir.size, dir.end))
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: central directory (%" PRIu64 " bytes at offset %" PRIu64
                       ") runs past the end records at %" PRIu64,
                       path, dir.size, dir.offset, dir.end);
    if (dir.count == 0 || dir.count > dir.size / CENTRAL_BYTES || dir.count > INT_MAX)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: %" PRIu64 " entries cannot fit a central directory of %" PRIu64
                       " bytes",
                       path, dir.count, dir.size);
    zip->entries = zt_calloc((size_t)dir.count, sizeof *zip->entries);
    zip_span *spans = zt_calloc((size_t)dir.count, sizeof *spans);
    zt_status status =
        zip->entries && spans ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "%s: out of memory", path);
    uint64_t at = dir.offset;
    for (uint64_t i = 0; status == ZT_OK && i < dir.count; i++) {
        zt_zip_entry *entry = &zip->entries[i];
        status = zip_read_entry(path, map, &dir, &at, entry, &spans[i].begin);
        zip->n_entries = (int)i + 1;
        if (status != ZT_OK) break;
        spans[i].end = (uint64_t)(entry->data - map) + entry->size;
        spans[i].entry = (int)i;
    }
    if (status == ZT_OK && at != dir.offset + dir.size)
        status =
            zt_fail(ZT_ERR_FORMAT,
                    "%s: %" PRIu64 " bytes of the central directory follow its %" PRIu64 " records",
                    path, dir.offset + dir.size - at, dir.count);
    if (status == ZT_OK) status = zip_check_apart(path, zip, spans);
    free(spans);
    if (status == ZT_OK) {
        qsort(zip->entries, (size_t)zip->n_entries, sizeof *zip->entries, zip_compare_names);
        for (int i = 1; i < zip->n_entries && status == ZT_OK; i++)
            if (strcmp(zip->entries[i - 1].name, zip->entries[i].name) == 0)
                status = zt_fail(ZT_ERR_FORMAT, "%s: entry '%s' appears twice", path,
                                 zip->entries[i].name);
    }
    if (status != ZT_OK) zt_zip_free(zip);
    return status;
}

void zt_zip_free(zt_zip *zip) {
    if (!zip) return;
    for (int i = 0; zip->entries && i < zip->n_entries; i++)
        free(zip->entries[i].name);
    free(zip->entries);
    memset(zip, 0, sizeof *zip);
}

const zt_zip_entry *zt_zip_find(const zt_zip *zip, const char *name) {
    zt_zip_entry key = {.name = (char *)name};
    return bsearch(&key, zip->entries, (size_t)zip->n_entries, sizeof key, zip_compare_names);
}

zt_status zt_zip_check_crc(const char *path, const zt_zip_entry *entry) {
    static uint32_t table[256];
    static bool table_ready = false; /* racing threads would write the same values */
    if (!table_ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        table_ready = true;
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (uint64_t i = 0; i < entry->size; i++)
        crc = table[(crc ^ entry->data[i]) & 0xFF] ^ (crc >> 8);
    crc ^= 0xFFFFFFFFu;
    if (crc != entry->crc32)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s: entry '%s' is corrupt: CRC-32 %08" PRIx32 ", the directory records "
                       "%08" PRIx32,
                       path, entry->name, crc, entry->crc32);
    return ZT_OK;
}
