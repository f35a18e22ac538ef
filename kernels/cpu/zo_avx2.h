/* AVX2 + F16C element loops of perturb and update (zo_avx2.c). Each does whole groups of eight
 * from the start, stops early at a group it leaves to the scalar loop, and returns how many
 * elements it did. Call only when zt_cpu_zo_avx2_available(). */
#ifndef ZT_CPU_ZO_AVX2_H
#define ZT_CPU_ZO_AVX2_H

#include <stddef.h>
#include <stdint.h>

int zt_cpu_zo_avx2_available(void);

/* dst[k] = f16_to_f32(src[k]) + sum[k] */
size_t zt_cpu_stage_f16_to_f32_avx2(float *dst,          /* (n) */
                                    const uint16_t *src, /* (n) */
                                    const float *sum,    /* (n) */
                                    size_t n);
/* theta[k] -= lr * (g[k] + weight_decay * theta[k]) where that step is not zero; counts the
 * stored values that are NaN or infinite into *nonfinite. */
size_t zt_cpu_update_sgd_f32_avx2(float *theta, const float *g, /* (n), (n) */
                                  size_t n, float lr, float weight_decay,
                                  unsigned long long *nonfinite);
/* The same for f16 weights, stored rounded to nearest even (random NULL) or stochastically
 * with random[k] (zt_sr_f32_to_f16). */
size_t zt_cpu_update_sgd_f16_avx2(uint16_t *theta, const float *g, /* (n), (n) */
                                  const uint32_t *random,          /* (n) or NULL */
                                  size_t n, float lr, float weight_decay,
                                  unsigned long long *nonfinite);

#endif
