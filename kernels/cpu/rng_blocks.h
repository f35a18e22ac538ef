/* z and the stochastic-rounding words for runs of whole Philox blocks, on the fastest path this
 * CPU has (docs/design.md §2.1). Every path computes kernels/common/perturb_rng.h's values with
 * the same IEEE operations in the same order, so the bits never depend on the path: the vector
 * paths are the scalar definitions spread over lanes (tests/rng/test_rng_paths.c compares them
 * word by word and normal by normal).
 *
 * Each call fills out[4 * i + lane] with element 4 * (first_block + i) + lane of the tensor's z
 * (or its word of `stream`), for i in [0, n_blocks). A "block" here is four elements, which for
 * Gaussian z and the words is one Philox block; Rademacher z packs 128 elements into one Philox
 * block (kernels/common/perturb_rng.h), so zt_cpu_rademacher_blocks draws each Philox block once
 * per call and expands its bits, and the vector kernels below take whole Philox blocks. */
#ifndef ZT_CPU_RNG_BLOCKS_H
#define ZT_CPU_RNG_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

typedef enum zt_cpu_rng_path {
    ZT_CPU_RNG_PORTABLE, /* the scalar ZT_HD functions, any CPU */
    ZT_CPU_RNG_AVX2,     /* x86-64 with AVX2 and FMA: sixteen blocks per step */
    ZT_CPU_RNG_AVX512,   /* x86-64 with AVX-512 F/DQ/BW/VL (and AVX2): 32 blocks per step */
    ZT_CPU_RNG_N_PATHS
} zt_cpu_rng_path;

/* Whether the path's CPU also runs the AVX2 loops (what the AVX-512 kernels leave over, and the
 * AVX2 element loops of zo_avx2.h). */
static inline int zt_cpu_rng_path_has_avx2(zt_cpu_rng_path path) {
    return path == ZT_CPU_RNG_AVX2 || path == ZT_CPU_RNG_AVX512;
}

const char *zt_cpu_rng_path_name(zt_cpu_rng_path path);
/* Whether this CPU (and this build) can run the path. */
int zt_cpu_rng_path_available(zt_cpu_rng_path path);
/* The path the ops use: the fastest available, unless the environment variable ZT_CPU_RNG names
 * another (portable, avx2, avx512), which benchmarks and tests use to compare paths. An unknown or
 * unavailable name is ignored with a warning on stderr, once. */
zt_cpu_rng_path zt_cpu_rng_active_path(void);

void zt_cpu_gauss_blocks(zt_cpu_rng_path path, uint64_t tensor_key, uint64_t first_block,
                         size_t n_blocks, float *out); /* (4 * n_blocks) */
void zt_cpu_rademacher_blocks(zt_cpu_rng_path path, uint64_t tensor_key, uint64_t first_block,
                              size_t n_blocks, float *out); /* (4 * n_blocks) */
void zt_cpu_stream_words(zt_cpu_rng_path path, uint64_t tensor_key, uint32_t stream,
                         uint64_t first_block, size_t n_blocks, uint32_t *out); /* (4 * n_blocks) */

/* zt_box_muller(x[i], y[i]) -> (first[i], second[i]) for i in [0, n): the transform alone, so a
 * test can feed any words (every octant boundary, u = 1) to every path. */
void zt_cpu_box_muller_pairs(zt_cpu_rng_path path, const uint32_t *x, const uint32_t *y, /* (n) */
                             size_t n, float *first, float *second);                     /* (n) */

/* The AVX-512 kernels (rng_avx512.c): the same contract in groups of sixteen blocks. */
size_t zt_cpu_gauss_blocks_avx512(uint64_t tensor_key, uint64_t first_block, size_t n_blocks,
                                  float *out);
/* Rademacher z of Philox blocks [first_philox, first_philox + n_philox): 128 elements each, out
 * element 128 * first_philox + k at out[k]. Returns the blocks it filled: all but the last eight
 * or fewer, which the AVX2 kernel draws. */
size_t zt_cpu_rademacher_philox_avx512(uint64_t tensor_key, uint64_t first_philox, size_t n_philox,
                                       float *out); /* (128 * n_philox) */
size_t zt_cpu_stream_words_avx512(uint64_t tensor_key, uint32_t stream, uint64_t first_block,
                                  size_t n_blocks, uint32_t *out);
size_t zt_cpu_box_muller_pairs_avx512(const uint32_t *x, const uint32_t *y, size_t n, float *first,
                                      float *second);

/* The AVX2 kernels (rng_avx2.c); callers go through the functions above. Each handles whole
 * groups of eight blocks and returns how many blocks it filled (a multiple of 8); the caller draws
 * the rest with the scalar functions (Rademacher: any count, see above). */
size_t zt_cpu_gauss_blocks_avx2(uint64_t tensor_key, uint64_t first_block, size_t n_blocks,
                                float *out);
/* As zt_cpu_rademacher_philox_avx512, but every block (returns n_philox). */
size_t zt_cpu_rademacher_philox_avx2(uint64_t tensor_key, uint64_t first_philox, size_t n_philox,
                                     float *out); /* (128 * n_philox) */
size_t zt_cpu_stream_words_avx2(uint64_t tensor_key, uint32_t stream, uint64_t first_block,
                                size_t n_blocks, uint32_t *out);
size_t zt_cpu_box_muller_pairs_avx2(const uint32_t *x, const uint32_t *y, size_t n, float *first,
                                    float *second);

#endif
