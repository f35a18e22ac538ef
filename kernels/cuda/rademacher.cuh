/* Rademacher z on the GPU at one Philox call per 128 elements (perturb.cu, update.cu).
 *
 * Rademacher z packs 128 elements into each Philox block (kernels/common/perturb_rng.h): 4-element
 * block b takes bits 4*(b % 8) .. +3 of word (b / 8) % 4 of Philox block b / 32. A thread that
 * drew one Philox block per 4-element block would compute each Philox block 32 times over. Here a
 * warp walks the tensor in chunks of 32 Philox blocks (1024 4-element blocks, 4096 elements):
 *
 *     lane l draws Philox block 32*chunk + l of each key (one call per lane per chunk);
 *     turn (q, w), q = 0 .. 7, w = 0 .. 3: lane l handles 4-element block
 *         1024*chunk + 32*(4q + l/8) + 8w + l%8,
 *     whose bits are nibble l%8 of word w of Philox block 32*chunk + 4q + l/8: one __shfl_sync of
 *     word w from lane 4q + l/8, the same register in every lane.
 *
 * Each turn a warp touches four runs of 8 consecutive 4-element blocks (128 bytes of f32, 64 of
 * f16 / bf16: whole sectors, as many as 32 consecutive blocks take), and every element's z is still
 * a function of its index alone: the CPU backend's bits. The chunks of a tensor are dealt to the
 * warps grid-stride; a warp runs all 32 turns of a chunk together (the shuffles need every lane).
 * A chunk whose blocks all lie in the caller's fast range runs the turns with no range check;
 * the others (the at most two a range cuts) check each block. blockDim must be a multiple of 32
 * (kBlockThreads is), so that every warp is whole.
 *
 * Terms after the first (q-direction steps; MeZO has one) are drawn per block as before
 * (zt_cuda_z_words4): the warp shares term 0's draw only. */
#ifndef ZT_CUDA_RADEMACHER_CUH
#define ZT_CUDA_RADEMACHER_CUH

#include "cuda/z_terms.cuh"

namespace ZT_CUDA_NAMESPACE {

static_assert(kBlockThreads % kWarpSize == 0, "the Rademacher chunks need whole warps");

/* 4-element blocks per chunk: a warp's 32 Philox blocks. */
constexpr uint64_t kRademacherChunkBlocks4 = (uint64_t)ZT_RADEMACHER_BLOCK4_PER_PHILOX * kWarpSize;

/* Threads to launch for the 4-element blocks [first, end) (end > first): a warp per chunk. */
static inline uint64_t zt_rademacher_threads(uint64_t first, uint64_t end) {
    const uint64_t chunks =
        (end - 1) / kRademacherChunkBlocks4 - first / kRademacherChunkBlocks4 + 1;
    return chunks * kWarpSize;
}

/* Compile-time flags for a visit: whether the block is known to lie in the fast range. */
struct zt_rademacher_fast {
    static constexpr bool value = true;
};
struct zt_rademacher_checked {
    static constexpr bool value = false;
};

/* The sign words (zt_rademacher_sign_words4's form: element e's bit at bit 31 of word e) of the
 * four bits at the bottom of `nibble`; bits above them are ignored. */
__device__ __forceinline__ zt_u32x4 zt_rademacher_nibble_signs(uint32_t nibble) {
    return zt_u32x4{nibble << 31, (nibble << 30) & 0x80000000u, (nibble << 29) & 0x80000000u,
                    (nibble << 28) & 0x80000000u};
}

/* The 32 turns of one chunk (see the top of this file). FAST: every block of the chunk lies in
 * [first, end); otherwise each is checked. */
template <bool FAST, int NKEYS, class Visit>
__device__ __forceinline__ void zt_rademacher_turns(const zt_u32x4 (&own)[NKEYS], unsigned lane,
                                                    uint64_t lane_block, uint64_t first,
                                                    uint64_t end, Visit &visit) {
    const unsigned shift = 4u * (lane % 8u);
    for (unsigned q = 0; q < 8; q++) {
        const int src_lane = (int)(4u * q + lane / 8u);
        ZT_UNROLL(4)
        for (unsigned w = 0; w < 4; w++) {
            zt_u32x4 signs[NKEYS];
            for (int k = 0; k < NKEYS; k++) {
                const uint32_t word = w == 0   ? own[k].x
                                      : w == 1 ? own[k].y
                                      : w == 2 ? own[k].z
                                               : own[k].w;
                signs[k] =
                    zt_rademacher_nibble_signs(__shfl_sync(0xFFFFFFFFu, word, src_lane) >> shift);
            }
            const uint64_t block = lane_block + 128u * q + 8u * w;
            if (FAST)
                visit(block, signs, zt_rademacher_fast());
            else if (block >= first && block < end)
                visit(block, signs, zt_rademacher_checked());
        }
    }
}

/* Calls visit(block, signs[NKEYS], flag) for every 4-element block in [first, end) that this
 * thread handles, signs[k] being the block's sign words under round keys *keys[k], flag
 * zt_rademacher_fast when the block lies in [fast_first, fast_end) (a sub-range of [first, end),
 * maybe empty), else zt_rademacher_checked. Called by every thread of the grid (the loop is uniform
 * over a warp). */
template <int NKEYS, class Visit>
__device__ __forceinline__ void
zt_rademacher_chunks(const zt_round_keys *const (&keys)[NKEYS], uint64_t first, uint64_t end,
                     uint64_t fast_first, uint64_t fast_end, Visit &&visit) {
    const unsigned lane = threadIdx.x % kWarpSize;
    const uint64_t warp = ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x) / kWarpSize;
    const uint64_t n_warps = (uint64_t)gridDim.x * blockDim.x / kWarpSize;
    for (uint64_t chunk = first / kRademacherChunkBlocks4 + warp;
         chunk * kRademacherChunkBlocks4 < end; chunk += n_warps) {
        zt_u32x4 own[NKEYS];
        for (int k = 0; k < NKEYS; k++)
            own[k] = zt_cuda_rng_block4_rk(*keys[k], ZT_RNG_STREAM_Z, chunk * kWarpSize + lane);
        const uint64_t chunk_first = chunk * kRademacherChunkBlocks4;
        const uint64_t lane_block = chunk_first + 32u * (lane / 8u) + lane % 8u;
        if (chunk_first >= fast_first && chunk_first + kRademacherChunkBlocks4 <= fast_end)
            zt_rademacher_turns<true, NKEYS>(own, lane, lane_block, first, end, visit);
        else
            zt_rademacher_turns<false, NKEYS>(own, lane, lane_block, first, end, visit);
    }
}

/* g = sum_i scale_i * z_i for 4-element block `block` with term 0's sign words given: the order and
 * roundings of zt_cuda_z_sum_blocks. n_terms > 0. */
__device__ __forceinline__ zt_f32x4 zt_rademacher_z_sum(const zt_cuda_z_terms &terms,
                                                        uint64_t block,
                                                        const zt_u32x4 &first_signs) {
    zt_f32x4 g = zt_cuda_scaled_z4<ZT_DIST_RADEMACHER>(terms.first_scale, first_signs);
    uint64_t key;
    float a;
    for (int i = 1; i < terms.n_terms; i++) {
        zt_cuda_term(terms, i, key, a);
        const zt_f32x4 p = zt_cuda_scaled_z4<ZT_DIST_RADEMACHER>(
            a, zt_cuda_z_words4<ZT_DIST_RADEMACHER>(key, block));
        g = zt_add4(g, p);
    }
    return g;
}

} // namespace ZT_CUDA_NAMESPACE

#endif
