/* A PNG writer without zlib: 8-bit RGB, the image data in stored (uncompressed) deflate blocks,
 * so a figure needs no dependency (an 800 x 500 plot is 1.2 MB). The checksums are public for
 * the tests that pin them. */
#ifndef ZT_IO_PNG_WRITE_H
#define ZT_IO_PNG_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "zotune.h"

/* The largest width or height zt_png_write_rgb takes: the file stays far below 2^31 bytes. */
enum { ZT_PNG_MAX_SIDE = 16384 };

/* CRC-32 (ISO-HDLC, PNG's and zlib's): crc = zt_crc32_update(0, data, n) starts one, and
 * updating with the next bytes continues it. */
uint32_t zt_crc32_update(uint32_t crc, const void *data, size_t n);

/* Adler-32 (RFC 1950): adler = zt_adler32_update(1, data, n) starts one. */
uint32_t zt_adler32_update(uint32_t adler, const void *data, size_t n);

/* Writes rgb, (height, width, 3) bytes row by row, as a PNG at path, atomically (io/atomic_file.h):
 * a failure leaves no file and the message names path. */
zt_status zt_png_write_rgb(const char *path, int width, int height, const uint8_t *rgb);

#endif
