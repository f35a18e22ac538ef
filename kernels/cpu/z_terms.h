/* What the CPU backend's perturbation ops (perturb, update, the perturbed gather) share: the terms
 * of a perturbation hoisted out of the element loop, and g for one block of four elements (the
 * twin of kernels/cuda/z_terms.cuh; docs/design.md §2; z addressing in
 * kernels/common/perturb_rng.h).
 *
 * The f32 operation order is part of the contract, so that another backend (or a test) that
 * mirrors it gets the same bits from the same z:
 *
 *     a_i = coeff_i * z_scale                                      one rounding per term
 *     g   = a_0 * z_0;  g = g + a_i * z_i for i = 1 .. n_terms-1    term 0 first, no FMA
 *     g   = 0 when n_terms == 0
 *
 * perturb stores src + g (src itself when n_terms == 0); update turns g into u by its rule and
 * subtracts lr * (u + weight_decay * theta) (see update.c). A file that includes this header
 * must not let the compiler contract a*z + g into an FMA (see the top of perturb.c).
 */
#ifndef ZT_CPU_Z_TERMS_H
#define ZT_CPU_Z_TERMS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "common/dtype.h"
#include "common/perturb_rng.h"

/* One term with its key and scale hoisted out of the element loop. */
typedef struct zt_cpu_z_term {
    uint64_t tensor_key; /* zt_tensor_key(seed, tensor_id) */
    float scale;         /* coeff * z_scale, rounded to f32 */
} zt_cpu_z_term;

/* Terms up to this count live on the caller's stack; more are heap-allocated. */
#define ZT_CPU_Z_TERMS_ON_STACK 64

/* Checks p (op names the caller in messages) and fills *terms_out with its n_terms hoisted
 * terms: `stack` (ZT_CPU_Z_TERMS_ON_STACK entries) when they fit, else a heap array that the
 * caller releases with zt_cpu_z_terms_release. */
zt_status zt_cpu_z_terms_prepare(const char *op, const zt_perturbation *p, uint32_t tensor_id,
                                 zt_cpu_z_term *stack, zt_cpu_z_term **terms_out);
void zt_cpu_z_terms_release(zt_cpu_z_term *terms, const zt_cpu_z_term *stack);

/* g for the four elements 4*block .. 4*block+3 of the tensor, in the order documented above. */
static inline zt_f32x4 zt_cpu_z_sum_block4(const zt_cpu_z_term *terms, int n_terms, zt_dist dist,
                                           uint64_t block) {
    zt_f32x4 sum = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < n_terms; i++) {
        zt_f32x4 z = dist == ZT_DIST_GAUSSIAN ? zt_z_gauss_block4(terms[i].tensor_key, block)
                                              : zt_z_rademacher_block4(terms[i].tensor_key, block);
        float a = terms[i].scale;
        if (i == 0) {
            /* Assigned, not added to 0: 0 + (-0) would turn a negative zero positive. */
            sum.x = a * z.x;
            sum.y = a * z.y;
            sum.z = a * z.z;
            sum.w = a * z.w;
        } else {
            sum.x += a * z.x;
            sum.y += a * z.y;
            sum.z += a * z.z;
            sum.w += a * z.w;
        }
    }
    return sum;
}

#endif
