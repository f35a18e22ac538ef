/* What the perturbation kernels share (perturb.cu, update.cu, sumsq.cu): the random words of a
 * (key, stream, block) from the cuRAND device API, the terms of a perturbation as a kernel
 * argument, and g for one Philox block in the CPU backend's f32 operation order. Element loads
 * and stores in a storage dtype are common/dtype.h's, the CPU's conversions.
 *
 * Words: curand_init(key, subsequence = (stream << 32) | (block & 0xFFFF), offset = 4 * (block >>
 * 16)) + curand4, the engine's address (kernels/common/perturb_rng.h), which the CPU backend's
 * Philox port reproduces bit for bit. Inlined, the state is local and the look-ahead blocks that
 * curand_init and curand4 compute are never read, so nvcc drops them: the PTX of this form has
 * the instruction count of a single curand_Philox4x32_10 call (127 for a grid-stride loop
 * storing one block, measured with nvcc 13 -O2, sm_90).
 *
 * Normals: curand_normal4's transform (_curand_box_muller on (x, y) and (z, w)), applied to the
 * curand4 words through zt_box_muller4 (kernels/common/philox.h), which spells out the FMA nvcc
 * contracts in cuRAND's device code and calls __sincosf on the device. On a GPU that is
 * curand_normal4's result bit for bit (tests/cudaemu/zo_probe.cu checks it); in the host executor
 * it is the CPU backend's result bit for bit, where the emulated curand_normal4 would take
 * cuRAND's host path and round the angle differently in ~0.9% of pairs.
 *
 * f32 arithmetic goes through __fmul_rn / __fadd_rn / ... so that nvcc cannot contract a*z + g
 * into an FMA: given identical z, perturb and update give the CPU backend's bits. On a GPU the
 * Gaussian z itself differs from the CPU's by __sincosf's error (kernels/common/philox.h); in the
 * host executor it is bit-identical, since there the kernels run the host sinf / cosf.
 */
#ifndef ZT_CUDA_Z_TERMS_CUH
#define ZT_CUDA_Z_TERMS_CUH

#include <curand_kernel.h>

#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

/* The four words of block `block` of stream `stream` (ZT_RNG_STREAM_*) of a tensor key. */
__device__ __forceinline__ zt_u32x4 zt_cuda_rng_block4(uint64_t tensor_key, uint32_t stream,
                                                       uint64_t block) {
    curandStatePhilox4_32_10_t state;
    curand_init(tensor_key, ((unsigned long long)stream << 32) | (block & 0xFFFFu),
                4ull * (block >> 16), &state);
    const uint4 words = curand4(&state);
    return zt_u32x4{words.x, words.y, words.z, words.w};
}

__device__ __forceinline__ zt_f32x4 zt_cuda_z_gauss_block4(uint64_t tensor_key, uint64_t block) {
    return zt_box_muller4(zt_cuda_rng_block4(tensor_key, ZT_RNG_STREAM_Z, block));
}

__device__ __forceinline__ zt_f32x4 zt_cuda_z_rademacher_block4(uint64_t tensor_key,
                                                                uint64_t block) {
    const zt_u32x4 bits = zt_cuda_rng_block4(tensor_key, ZT_RNG_STREAM_Z, block);
    return zt_f32x4{zt_rademacher_from_u32(bits.x), zt_rademacher_from_u32(bits.y),
                    zt_rademacher_from_u32(bits.z), zt_rademacher_from_u32(bits.w)};
}

__device__ __forceinline__ zt_u32x4 zt_cuda_sr_bits_block4(uint64_t tensor_key, uint64_t block) {
    return zt_cuda_rng_block4(tensor_key, ZT_RNG_STREAM_SR, block);
}

/* Terms up to this count travel inside the kernel argument (read through the constant bank, no
 * copy); more are uploaded to the backend scratch first. MeZO has one term, q-direction steps a
 * handful. */
constexpr int kInlineZTerms = 32;

/* sum_i scale_i * z(key_i, j): keys and scales hoisted on the host, as zt_cpu_z_terms_prepare
 * does (scale = coeff * z_scale rounded once to f32). */
struct zt_cuda_z_terms {
    int n_terms;
    zt_dist dist;
    const uint64_t *spilled_keys; /* device, when n_terms > kInlineZTerms; else NULL */
    const float *spilled_scales;
    uint64_t keys[kInlineZTerms];
    float scales[kInlineZTerms];
};

/* Checks p as the CPU backend does (zt_cpu_z_terms_prepare): same order, statuses and messages.
 * Touches no device state. Defined in perturb.cu. */

/* Fills *out from a checked p. Terms beyond kInlineZTerms go to the backend scratch (queued on
 * the stream, ahead of the kernel that reads them), so the caller must not take the scratch for
 * anything else before that kernel is launched. Defined in perturb.cu. */
zt_status zt_cuda_z_terms_prepare(zt_cuda_backend *cb, const char *op, const zt_perturbation *p,
                                  uint32_t tensor_id, zt_cuda_z_terms *out);

/* Scratch floats zt_cuda_z_terms_prepare takes for n_terms terms (0 when they fit inline). */
static inline size_t zt_cuda_z_terms_scratch_floats(int n_terms) {
    if (n_terms <= kInlineZTerms) return 0;
    return (size_t)n_terms * (sizeof(uint64_t) + sizeof(float)) / sizeof(float);
}

/* Blocks for a grid-stride loop over n_items, one per thread. */
static inline unsigned zt_zo_blocks(uint64_t n_items, unsigned max_blocks) {
    uint64_t blocks = (n_items + kBlockThreads - 1) / kBlockThreads;
    if (blocks > max_blocks) blocks = max_blocks;
    return blocks == 0 ? 1u : (unsigned)blocks;
}

/* g for elements 4*block .. 4*block+3 of the tensor: a_0*z_0, then + a_i*z_i in term order, one
 * rounding per operation (kernels/cpu/z_terms.h). n_terms > 0. */
__device__ __forceinline__ zt_f32x4 zt_cuda_z_sum_block4(const zt_cuda_z_terms &terms,
                                                         uint64_t block) {
    const bool spilled = terms.n_terms > kInlineZTerms;
    zt_f32x4 sum;
    for (int i = 0; i < terms.n_terms; i++) {
        const uint64_t key = spilled ? terms.spilled_keys[i] : terms.keys[i];
        const float a = spilled ? terms.spilled_scales[i] : terms.scales[i];
        const zt_f32x4 z = terms.dist == ZT_DIST_GAUSSIAN ? zt_cuda_z_gauss_block4(key, block)
                                                          : zt_cuda_z_rademacher_block4(key, block);
        if (i == 0) {
            /* Assigned, not added to 0: 0 + (-0) would turn a negative zero positive. */
            sum.x = __fmul_rn(a, z.x);
            sum.y = __fmul_rn(a, z.y);
            sum.z = __fmul_rn(a, z.z);
            sum.w = __fmul_rn(a, z.w);
        } else {
            sum.x = __fadd_rn(sum.x, __fmul_rn(a, z.x));
            sum.y = __fadd_rn(sum.y, __fmul_rn(a, z.y));
            sum.z = __fadd_rn(sum.z, __fmul_rn(a, z.z));
            sum.w = __fadd_rn(sum.w, __fmul_rn(a, z.w));
        }
    }
    return sum;
}

} // namespace ZT_CUDA_NAMESPACE

#endif
