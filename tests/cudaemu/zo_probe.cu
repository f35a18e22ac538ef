/* Test-only probes of the CUDA backend's perturbation code (declared in zo_probe.h): compiled by
 * nvcc into tests/gpu, and by the host compiler against cudaemu.h into tests/cudaemu
 * (emu_zo_probe.cpp), exactly as a kernels/cuda unit is.
 *
 * The RNG probe runs, in device code, the word and normal functions the kernels call
 * (kernels/cuda/z_terms.cuh: curand_init + curand4 at the engine's address, zotune's Box-Muller
 * transform applied to those words, the round-key form of the engine's Philox port that the
 * hot loops use for term 0 and the SR bits, and Rademacher z in both forms) next to cuRAND's own
 * curand_normal4 and curand4 at the Philox block Rademacher z packs into, so a test can
 * show that all of them give the CPU backend's 32-bit words and normals bit for bit, and that
 * cuRAND's normals of the same words lie within their bound of the engine's
 * (tests/rng/curand_normal_bound.h). */
#include <curand_kernel.h>

#include "cuda/cuda_common.cuh"
#include "cuda/z_terms.cuh"
#include "zo_probe.h"

namespace ZT_CUDA_NAMESPACE {

__device__ __forceinline__ void zt_probe_store4(uint32_t *out, zt_u32x4 v) {
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
}

__device__ __forceinline__ void zt_probe_store_f4(uint32_t *out, float x, float y, float z,
                                                  float w) {
    out[0] = zt_f32_bits(x);
    out[1] = zt_f32_bits(y);
    out[2] = zt_f32_bits(z);
    out[3] = zt_f32_bits(w);
}

static __global__ void zt_zo_probe_rng_k(uint32_t *out,        /* (n, ZT_PROBE_WORDS) */
                                         const uint64_t *keys, /* (n) */
                                         const uint64_t *blocks, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const uint64_t key = keys[i], block = blocks[i];
    uint32_t *mine = out + (size_t)i * ZT_PROBE_WORDS;
    /* what the kernels draw */
    zt_probe_store4(mine + ZT_PROBE_Z_BITS, zt_cuda_rng_block4(key, ZT_RNG_STREAM_Z, block));
    zt_probe_store4(mine + ZT_PROBE_SR_BITS, zt_cuda_sr_bits_block4(key, block));
    const zt_f32x4 gauss = zt_cuda_z_gauss_block4(key, block);
    zt_probe_store_f4(mine + ZT_PROBE_Z_GAUSS, gauss.x, gauss.y, gauss.z, gauss.w);

    /* the engine's Philox port from precomputed round keys, as the kernels' hot loops draw
     * term 0 and the SR bits */
    const zt_round_keys rounds = zt_round_keys_of(key);
    zt_probe_store4(mine + ZT_PROBE_ROUND_KEY_BITS,
                    zt_cuda_rng_block4_rk(rounds, ZT_RNG_STREAM_Z, block));
    zt_probe_store4(mine + ZT_PROBE_ROUND_KEY_SR,
                    zt_cuda_rng_block4_rk(rounds, ZT_RNG_STREAM_SR, block));

    /* Rademacher z as the kernels scale it (a = 1: the sign words' top bits become 1.0f's) */
    const zt_f32x4 rademacher_rk = zt_cuda_scaled_z4<ZT_DIST_RADEMACHER>(
        1.0f, zt_cuda_z_words4_rk<ZT_DIST_RADEMACHER>(rounds, block));
    zt_probe_store_f4(mine + ZT_PROBE_RADEMACHER_RK, rademacher_rk.x, rademacher_rk.y,
                      rademacher_rk.z, rademacher_rk.w);
    const zt_f32x4 rademacher_key = zt_cuda_scaled_z4<ZT_DIST_RADEMACHER>(
        1.0f, zt_cuda_z_words4<ZT_DIST_RADEMACHER>(key, block));
    zt_probe_store_f4(mine + ZT_PROBE_RADEMACHER_KEY, rademacher_key.x, rademacher_key.y,
                      rademacher_key.z, rademacher_key.w);
    {
        /* cuRAND's own words at the Philox block that packs this block's Rademacher bits */
        const uint64_t packed = block / 32;
        curandStatePhilox4_32_10_t packed_state;
        curand_init(key, packed & 0xFFFFu, 4ull * (packed >> 16), &packed_state);
        const uint4 words = curand4(&packed_state);
        zt_probe_store4(mine + ZT_PROBE_CURAND_PACKED,
                        zt_u32x4{words.x, words.y, words.z, words.w});
    }

    /* cuRAND's own normals at the engine's address */
    const unsigned long long subsequence = block & 0xFFFFu, offset = 4ull * (block >> 16);
    curandStatePhilox4_32_10_t state;
    curand_init(key, subsequence, offset, &state);
    const float4 normal = curand_normal4(&state);
    zt_probe_store_f4(mine + ZT_PROBE_CURAND_GAUSS, normal.x, normal.y, normal.z, normal.w);
}

} // namespace ZT_CUDA_NAMESPACE

/* Outside the namespace, named in full: in the real build the namespace and the backend accessor
 * are both called zt_cuda. */
extern "C" zt_status zt_zo_probe_rng(zt_backend *be, uint32_t *out, const uint64_t *keys,
                                     const uint64_t *blocks, int n) {
    namespace zc = ZT_CUDA_NAMESPACE;
    if (n <= 0) return ZT_OK;
    ZT_TRY(zc::zt_cuda_enter(be));
    zc::zt_cuda_backend *cb = zc::zt_cuda(be);
    ZT_LAUNCH(zc::zt_zo_probe_rng_k, (unsigned)((n + zc::kBlockThreads - 1) / zc::kBlockThreads),
              zc::kBlockThreads, 0, cb->stream, out, keys, blocks, n);
    ZT_CUDA_TRY(cudaStreamSynchronize(cb->stream));
    return ZT_OK;
}

extern "C" zt_status zt_zo_probe_sumsq(zt_backend *be, double *out, uint64_t seed,
                                       uint32_t tensor_id, size_t n_elems, unsigned max_blocks) {
    return ZT_CUDA_NAMESPACE::zt_cuda_z_sumsq_grid(be, out, seed, tensor_id, n_elems,
                                                   ZT_DIST_GAUSSIAN, max_blocks);
}
