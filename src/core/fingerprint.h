/* Content fingerprints: a 64-bit hash of bytes fed in any chunking, so a run can tell whether
 * its base weights and data are still the ones it started from. Not cryptographic: it guards
 * against mistakes (another checkpoint, an edited file), not against an adversary. */
#ifndef ZT_CORE_FINGERPRINT_H
#define ZT_CORE_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

typedef struct zt_fingerprint {
    uint64_t lane[4]; /* four independent chains keep the multiplier pipeline busy */
    uint8_t pending[32];
    size_t n_pending;
    uint64_t total_bytes;
} zt_fingerprint;

void zt_fingerprint_init(zt_fingerprint *fp);
void zt_fingerprint_update(zt_fingerprint *fp, const void *data, size_t n_bytes);
uint64_t zt_fingerprint_final(const zt_fingerprint *fp);
/* The fingerprint as the 16 hex digits the step log stores ("%016llx"). */
void zt_fingerprint_hex(uint64_t value, char out[17]);

#endif
