#include "core/fingerprint.h"

#include <stdio.h>
#include <string.h>

static const uint64_t lane_seed[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full,
                                      0x165667B19E3779F9ull, 0xD6E8FEB86659FD93ull};
static const uint64_t multiplier = 0xFF51AFD7ED558CCDull;

static uint64_t finalize64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* One 32-byte block: each lane absorbs its word with a multiply and a rotation. */
static void absorb_block(uint64_t lane[4], const uint8_t *block) {
    for (int i = 0; i < 4; i++) {
        uint64_t h = (lane[i] ^ load_le64(block + 8 * i)) * multiplier;
        lane[i] = (h << 31) | (h >> 33);
    }
}

void zt_fingerprint_init(zt_fingerprint *fp) {
    memset(fp, 0, sizeof *fp);
    memcpy(fp->lane, lane_seed, sizeof fp->lane);
}

void zt_fingerprint_update(zt_fingerprint *fp, const void *data, size_t n_bytes) {
    const uint8_t *p = data;
    fp->total_bytes += n_bytes;
    if (fp->n_pending > 0) {
        size_t take = sizeof fp->pending - fp->n_pending;
        if (take > n_bytes) take = n_bytes;
        memcpy(fp->pending + fp->n_pending, p, take);
        fp->n_pending += take;
        p += take;
        n_bytes -= take;
        if (fp->n_pending < sizeof fp->pending) return;
        absorb_block(fp->lane, fp->pending);
        fp->n_pending = 0;
    }
    for (; n_bytes >= 32; p += 32, n_bytes -= 32) absorb_block(fp->lane, p);
    memcpy(fp->pending, p, n_bytes);
    fp->n_pending = n_bytes;
}

uint64_t zt_fingerprint_final(const zt_fingerprint *fp) {
    uint64_t lane[4];
    memcpy(lane, fp->lane, sizeof lane);
    /* The tail is zero-padded into one more block; the length term tells "ab" from "ab\0". */
    if (fp->n_pending > 0) {
        uint8_t block[32] = {0};
        memcpy(block, fp->pending, fp->n_pending);
        absorb_block(lane, block);
    }
    uint64_t h = fp->total_bytes * 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 4; i++) h = finalize64(h ^ lane[i]) + lane_seed[i];
    return finalize64(h);
}

void zt_fingerprint_hex(uint64_t value, char out[17]) {
    snprintf(out, 17, "%016llx", (unsigned long long)value);
}
