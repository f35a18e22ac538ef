/* The backend's zero op (backend.h) on any backend, through upload and download only: each range
 * of a patterned buffer reads back as zero bits (+0.0f as f32) and every byte outside it keeps its
 * pattern (the guard bytes); an empty range writes nothing; a NULL destination is refused with a
 * message naming the op; zt_backend_zero clears whole f32 arrays the same way. Used by
 * tests/ops/test_zero_cpu.c and tests/cudaemu/test_cuda_zero_emu.c. */
#ifndef ZT_TEST_ZERO_CHECK_H
#define ZT_TEST_ZERO_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backprop.h"
#include "zt_test.h"

/* A byte no zero op writes and that no two neighbours share, so a shifted write shows. */
static inline unsigned char zero_check_pattern(size_t i) {
    return (unsigned char)(0x80u | ((i * 37u + 11u) & 0x7Fu));
}

/* Zeroes [offset, offset + n_bytes) of a fresh `total`-byte buffer and checks every byte. */
static inline void zero_check_range(zt_backend *be, size_t total, size_t offset, size_t n_bytes) {
    unsigned char *host = malloc(total);
    void *dev = NULL;
    ZT_REQUIRE(host != NULL, "host block of %zu bytes", total);
    ZT_REQUIRE_OK(be->ops->alloc(be, total, ZT_MEM_ACTIVATIONS, &dev));
    for (size_t i = 0; i < total; i++)
        host[i] = zero_check_pattern(i);
    ZT_REQUIRE_OK(be->ops->upload(be, dev, host, total));
    ZT_CHECK_OK(be->ops->zero(be, (char *)dev + offset, n_bytes));
    memset(host, 0x55, total);
    ZT_REQUIRE_OK(be->ops->download(be, host, dev, total));
    size_t wrong_inside = 0, wrong_outside = 0, first_wrong = SIZE_MAX;
    for (size_t i = 0; i < total; i++) {
        const int inside = i >= offset && i - offset < n_bytes;
        const int ok = inside ? host[i] == 0 : host[i] == zero_check_pattern(i);
        if (ok) continue;
        if (first_wrong == SIZE_MAX) first_wrong = i;
        inside ? wrong_inside++ : wrong_outside++;
    }
    ZT_CHECK(wrong_inside == 0 && wrong_outside == 0,
             "%s zero of bytes [%zu, %zu) in %zu: %zu not zeroed, %zu guard bytes changed (first "
             "at %zu)",
             be->ops->name, offset, offset + n_bytes, total, wrong_inside, wrong_outside,
             first_wrong);
    be->ops->free(be, dev, total, ZT_MEM_ACTIVATIONS);
    free(host);
}

/* zt_backend_zero on an f32 array: every element reads back as +0.0f (sign bit clear), the
 * floats on either side keep their values. */
static inline void zero_check_floats(zt_backend *be, size_t n_floats) {
    const size_t total = n_floats + 2;
    float *host = malloc(total * sizeof *host);
    float *dev = NULL;
    ZT_REQUIRE(host != NULL, "host block of %zu floats", total);
    ZT_REQUIRE_OK(be->ops->alloc(be, total * sizeof *host, ZT_MEM_OPTIMIZER, (void **)&dev));
    for (size_t i = 0; i < total; i++)
        host[i] = -1.5f - (float)(i % 7);
    ZT_REQUIRE_OK(be->ops->upload(be, dev, host, total * sizeof *host));
    ZT_CHECK_OK(zt_backend_zero(be, dev + 1, n_floats));
    ZT_REQUIRE_OK(be->ops->download(be, host, dev, total * sizeof *host));
    size_t wrong = 0;
    for (size_t i = 1; i <= n_floats; i++)
        wrong += host[i] != 0.0f || signbit(host[i]);
    ZT_CHECK(wrong == 0, "%s zt_backend_zero of %zu floats: %zu are not +0", be->ops->name,
             n_floats, wrong);
    ZT_CHECK(host[0] == -1.5f && host[total - 1] == -1.5f - (float)((total - 1) % 7),
             "%s zt_backend_zero of %zu floats: a neighbour changed (%g, %g)", be->ops->name,
             n_floats, host[0], host[total - 1]);
    be->ops->free(be, dev, total * sizeof *host, ZT_MEM_OPTIMIZER);
    free(host);
}

static inline void zero_check_run(zt_backend *be) {
    /* byte-aligned starts and odd lengths; one byte; the whole buffer; nothing */
    zero_check_range(be, 64, 0, 64);
    zero_check_range(be, 64, 1, 1);
    zero_check_range(be, 100, 3, 61);
    zero_check_range(be, 4096 + 13, 7, 4096 - 5);
    zero_check_range(be, 64, 17, 0);
    /* past the CPU backend's 1 MiB pieces: several pieces, a partial last one, any thread count */
    zero_check_range(be, (5u << 19) + 40, 9, (5u << 19) + 3);
    zero_check_floats(be, 1);
    zero_check_floats(be, 3 << 18);
    ZT_CHECK_OK(zt_backend_zero(be, NULL, 0));

    zt_status s = be->ops->zero(be, NULL, 16);
    ZT_CHECK(s == ZT_ERR_INVALID_ARG && strstr(zt_last_error(), "zero") != NULL &&
                 strstr(zt_last_error(), "NULL") != NULL,
             "%s zero of NULL: %s, \"%s\"", be->ops->name, zt_status_name(s), zt_last_error());
}

#endif
