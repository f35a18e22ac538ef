/* The PNG writer's checksums against their published check values (CRC-32/ISO-HDLC of
 * "123456789" is 0xCBF43926; Adler-32 of "Wikipedia" 0x11E60398, RFC 1950's example), updates in
 * pieces equal to one pass, and the refusals (bad size, a directory that does not exist: the
 * message names the path and no file is left). With `--write DIR` it writes the images
 * tests/tools/test_png_decode.py decodes with Python's zlib: pattern.png (203 x 121, 73,810 bytes
 * of rows, so two stored blocks) and one.png (1 x 1), pixels given by pattern_pixel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/png_write.h"
#include "zt_test.h"

/* The same formula as test_png_decode.py's. */
static void pattern_pixel(int x, int y, uint8_t *rgb) {
    rgb[0] = (uint8_t)((x * 7 + y * 3) & 255);
    rgb[1] = (uint8_t)((x * y) & 255);
    rgb[2] = (uint8_t)((255 - x + 2 * y) & 255);
}

static int write_pattern(const char *path, int width, int height) {
    uint8_t *rgb = malloc((size_t)width * (size_t)height * 3);
    if (!rgb) return 1;
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            pattern_pixel(x, y, rgb + 3 * ((size_t)y * (size_t)width + (size_t)x));
    const zt_status s = zt_png_write_rgb(path, width, height, rgb);
    free(rgb);
    if (s != ZT_OK) fprintf(stderr, "%s\n", zt_last_error());
    return s != ZT_OK;
}

static void check_checksums(void) {
    const char *digits = "123456789";
    ZT_CHECK(zt_crc32_update(0, digits, 9) == 0xCBF43926u, "crc32(123456789) = %08x",
             zt_crc32_update(0, digits, 9));
    ZT_CHECK(zt_crc32_update(zt_crc32_update(0, digits, 4), digits + 4, 5) == 0xCBF43926u,
             "crc32 in two pieces");
    ZT_CHECK(zt_crc32_update(0, "", 0) == 0, "crc32 of nothing");
    ZT_CHECK(zt_adler32_update(1, "Wikipedia", 9) == 0x11E60398u, "adler32(Wikipedia) = %08x",
             zt_adler32_update(1, "Wikipedia", 9));
    ZT_CHECK(zt_adler32_update(1, "", 0) == 1, "adler32 of nothing");
    /* 100,000 bytes of 0xFF: the sums wrap modulo 65521 many times over */
    enum { N = 100000 };
    static uint8_t ff[N];
    memset(ff, 0xFF, sizeof ff);
    uint64_t a = 1, b = 0;
    for (int i = 0; i < N; i++) {
        a = (a + 0xFF) % 65521;
        b = (b + a) % 65521;
    }
    const uint32_t whole = zt_adler32_update(1, ff, N);
    ZT_CHECK(whole == (uint32_t)(b << 16 | a), "adler32 of 1e5 x 0xFF: %08x", whole);
    ZT_CHECK(zt_adler32_update(zt_adler32_update(1, ff, 12345), ff, N - 12345) == whole,
             "adler32 in two pieces");
}

static void check_refusals(void) {
    const char *path = "/nonexistent_zt_png_dir/out.png";
    const uint8_t rgb[3] = {1, 2, 3};
    ZT_CHECK(zt_png_write_rgb(path, 1, 1, rgb) == ZT_ERR_IO && strstr(zt_last_error(), path),
             "a missing directory: %s", zt_last_error());
    ZT_CHECK(access(path, F_OK) != 0, "%s exists", path);
    char dir[] = "/tmp/zt_png_write_XXXXXX", file[64];
    ZT_REQUIRE(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(file, sizeof file, "%s/empty.png", dir);
    ZT_CHECK(zt_png_write_rgb(file, 0, 4, rgb) == ZT_ERR_INVALID_ARG &&
                 strstr(zt_last_error(), file),
             "a 0 x 4 image: %s", zt_last_error());
    ZT_CHECK(zt_png_write_rgb(file, ZT_PNG_MAX_SIDE + 1, 1, rgb) == ZT_ERR_INVALID_ARG,
             "a side over the limit");
    ZT_CHECK(access(file, F_OK) != 0, "a refused image left %s", file);
    ZT_CHECK(rmdir(dir) == 0, "%s is not empty after refusals", dir);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write") == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/pattern.png", argv[2]);
        if (write_pattern(path, 203, 121)) return 1;
        snprintf(path, sizeof path, "%s/one.png", argv[2]);
        return write_pattern(path, 1, 1);
    }
    check_checksums();
    check_refusals();
    return zt_test_finish("test_png_write");
}
