/* Test-only entry points into the CUDA backend's perturbation code (zo_probe.cu), for the emulated
 * backend (tests/cudaemu) and the real one (tests/gpu). be must be a backend of the build the
 * probe was compiled into ("cuda-emu" or "cuda"); pointers marked device are that backend's
 * memory (its alloc / upload / download). */
#ifndef ZT_TEST_ZO_PROBE_H
#define ZT_TEST_ZO_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Words per probed block in zt_zo_probe_rng's output, and where each stream starts. */
enum {
    ZT_PROBE_Z_BITS = 0,  /* zt_cuda_rng_block4 (curand_init + curand4), terms 1, 2, ... */
    ZT_PROBE_SR_BITS = 4, /* zt_cuda_sr_bits_block4: curand_init + curand4 on the SR stream */
    ZT_PROBE_Z_GAUSS = 8, /* zt_cuda_z_gauss_block4 (f32 bits), the kernels' normals */
    ZT_PROBE_ROUND_KEY_BITS = 12, /* zt_cuda_rng_block4_rk: term 0's z words in the hot loops */
    ZT_PROBE_ROUND_KEY_SR = 16,   /* the same for the SR stream, as update draws its bits */
    ZT_PROBE_CURAND_GAUSS = 20,   /* curand_init(key, b & 0xFFFF, 4 * (b >> 16)); curand_normal4 */
    /* Rademacher z (f32 bits) of elements 4b .. 4b+3 as the kernels compute them: term 0's
     * round-key form, then the key form of terms 1, 2, ... */
    ZT_PROBE_RADEMACHER_RK = 24,
    ZT_PROBE_RADEMACHER_KEY = 28,
    /* cuRAND's curand4 at Philox block p = b / 32 (curand_init(key, p & 0xFFFF, 4 * (p >> 16))):
     * the words whose bits Rademacher z packs */
    ZT_PROBE_CURAND_PACKED = 32,
    ZT_PROBE_WORDS = 36,
};

/* For i < n: the streams above for block blocks[i] of key keys[i], computed by a kernel (device
 * code) into out[i * ZT_PROBE_WORDS ...]. Waits for the result. */
zt_status zt_zo_probe_rng(zt_backend *be, uint32_t *out, /* device (n, ZT_PROBE_WORDS) */
                          const uint64_t *keys,          /* device (n) */
                          const uint64_t *blocks,        /* device (n) */
                          int n);

/* z_sumsq on a grid of at most max_blocks blocks (the op itself picks its own grid). */
zt_status zt_zo_probe_sumsq(zt_backend *be, double *out, uint64_t seed, uint32_t tensor_id,
                            size_t n_elems, unsigned max_blocks);

#ifdef __cplusplus
}
#endif

#endif
