/* PNG (ISO/IEC 15948) with the zlib stream (RFC 1950) holding stored deflate blocks (RFC 1951
 * §3.2.4): every row is filter byte 0 then its pixels, and the concatenated rows go out in blocks
 * of at most 65535 bytes, each with its length and the length's complement. No compression, so
 * no zlib; the plots this writes are small. */
#include "io/png_write.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "io/atomic_file.h"

enum { STORED_BLOCK_MAX = 65535, CHUNK_OVERHEAD = 12 /* length, type, CRC */ };

uint32_t zt_crc32_update(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t zt_adler32_update(uint32_t adler, const void *data, size_t n) {
    const uint8_t *p = data;
    uint32_t a = adler & 0xFFFFu, b = adler >> 16;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return (b << 16) | a;
}

static uint8_t *put_u32_be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

/* A chunk whose data already sits at p + 8 (n bytes): its length, type and CRC around it. */
static uint8_t *close_chunk(uint8_t *p, const char type[4], size_t n) {
    put_u32_be(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    const uint32_t crc = zt_crc32_update(0, p + 4, 4 + n);
    return put_u32_be(p + 8 + n, crc);
}

/* The zlib stream of the filtered rows at p; returns its end. */
static uint8_t *put_zlib_stored(uint8_t *p, const uint8_t *raw, size_t raw_bytes) {
    *p++ = 0x78; /* deflate, 32 KiB window */
    *p++ = 0x01; /* no preset dictionary, fastest; (0x78 << 8 | 0x01) % 31 == 0 */
    size_t done = 0;
    do {
        const size_t n = raw_bytes - done < STORED_BLOCK_MAX ? raw_bytes - done : STORED_BLOCK_MAX;
        const int last = done + n == raw_bytes;
        *p++ = (uint8_t)last; /* BFINAL, BTYPE 00: stored */
        *p++ = (uint8_t)n;
        *p++ = (uint8_t)(n >> 8);
        *p++ = (uint8_t)~n;
        *p++ = (uint8_t)(~n >> 8);
        memcpy(p, raw + done, n);
        p += n;
        done += n;
    } while (done < raw_bytes);
    return put_u32_be(p, zt_adler32_update(1, raw, raw_bytes));
}

zt_status zt_png_write_rgb(const char *path, int width, int height, const uint8_t *rgb) {
    if (!path || !rgb || width < 1 || height < 1 || width > ZT_PNG_MAX_SIDE ||
        height > ZT_PNG_MAX_SIDE)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: a PNG of %d x %d pixels (1 to %d a side)",
                       path ? path : "(no path)", width, height, ZT_PNG_MAX_SIDE);
    const size_t row_bytes = 1 + 3 * (size_t)width;
    const size_t raw_bytes = row_bytes * (size_t)height;
    const size_t n_blocks = (raw_bytes + STORED_BLOCK_MAX - 1) / STORED_BLOCK_MAX;
    const size_t zlib_bytes = 2 + 5 * n_blocks + raw_bytes + 4;
    const size_t file_bytes =
        8 + (CHUNK_OVERHEAD + 13) + (CHUNK_OVERHEAD + zlib_bytes) + CHUNK_OVERHEAD;
    uint8_t *raw = zt_malloc(raw_bytes), *file = zt_malloc(file_bytes);
    if (!raw || !file) {
        free(raw);
        free(file);
        return zt_fail(ZT_ERR_NOMEM, "%s: %zu bytes for a %d x %d PNG", path, file_bytes, width,
                       height);
    }
    for (int y = 0; y < height; y++) {
        raw[(size_t)y * row_bytes] = 0; /* filter: none */
        memcpy(raw + (size_t)y * row_bytes + 1, rgb + (size_t)y * 3 * (size_t)width,
               3 * (size_t)width);
    }
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    uint8_t *p = file;
    memcpy(p, signature, sizeof signature);
    p += sizeof signature;

    uint8_t *ihdr = p + 8;
    ihdr = put_u32_be(ihdr, (uint32_t)width);
    ihdr = put_u32_be(ihdr, (uint32_t)height);
    const uint8_t depth_colour_methods[5] = {8, 2, 0, 0, 0}; /* 8 bits, RGB, deflate, none, no */
    memcpy(ihdr, depth_colour_methods, 5);
    p = close_chunk(p, "IHDR", 13);

    const uint8_t *zlib_end = put_zlib_stored(p + 8, raw, raw_bytes);
    p = close_chunk(p, "IDAT", (size_t)(zlib_end - (p + 8)));
    p = close_chunk(p, "IEND", 0);
    free(raw);

    const void *chunks[1] = {file};
    const size_t sizes[1] = {(size_t)(p - file)};
    const zt_status s = zt_write_file_atomic(path, chunks, sizes, 1);
    free(file);
    return s;
}
