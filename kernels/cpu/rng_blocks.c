/* Runs of z blocks: the portable path, the choice of path, and the dispatch (rng_blocks.h). */
#include "cpu/rng_blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/perturb_rng.h"

static const char *const path_names[ZT_CPU_RNG_N_PATHS] = {"portable", "avx2", "avx512"};

const char *zt_cpu_rng_path_name(zt_cpu_rng_path path) {
    return (unsigned)path < ZT_CPU_RNG_N_PATHS ? path_names[path] : "unknown";
}

int zt_cpu_rng_path_available(zt_cpu_rng_path path) {
    switch (path) {
    case ZT_CPU_RNG_PORTABLE:
        return 1;
    case ZT_CPU_RNG_AVX2:
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        return 0;
#endif
    case ZT_CPU_RNG_AVX512:
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        return zt_cpu_rng_path_available(ZT_CPU_RNG_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
#else
        return 0;
#endif
    default:
        return 0;
    }
}

static zt_cpu_rng_path choose_path(void) {
    zt_cpu_rng_path best = ZT_CPU_RNG_PORTABLE;
    for (int p = ZT_CPU_RNG_N_PATHS - 1; p > 0; p--)
        if (zt_cpu_rng_path_available((zt_cpu_rng_path)p)) {
            best = (zt_cpu_rng_path)p;
            break;
        }
    const char *asked = getenv("ZT_CPU_RNG");
    if (asked == NULL || asked[0] == '\0') return best;
    for (int p = 0; p < ZT_CPU_RNG_N_PATHS; p++)
        if (strcmp(asked, path_names[p]) == 0) {
            if (zt_cpu_rng_path_available((zt_cpu_rng_path)p)) return (zt_cpu_rng_path)p;
            fprintf(stderr, "zotune: ZT_CPU_RNG=%s: this CPU cannot run it; using %s\n", asked,
                    path_names[best]);
            return best;
        }
    fprintf(stderr, "zotune: ZT_CPU_RNG=%s is not a path (portable, avx2, avx512); using %s\n",
            asked, path_names[best]);
    return best;
}

zt_cpu_rng_path zt_cpu_rng_active_path(void) {
    /* Racing first calls compute the same answer; only the warning could print twice. */
    static int chosen = -1;
    int path = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (path < 0) {
        path = (int)choose_path();
        __atomic_store_n(&chosen, path, __ATOMIC_RELEASE);
    }
    return (zt_cpu_rng_path)path;
}

static void store_block(float *out, /* (4) */
                        zt_f32x4 z) {
    out[0] = z.x;
    out[1] = z.y;
    out[2] = z.z;
    out[3] = z.w;
}

void zt_cpu_gauss_blocks(zt_cpu_rng_path path, uint64_t tensor_key, uint64_t first_block,
                         size_t n_blocks, float *out) {
    size_t done = 0;
    if (path == ZT_CPU_RNG_AVX512)
        done = zt_cpu_gauss_blocks_avx512(tensor_key, first_block, n_blocks, out);
    if (zt_cpu_rng_path_has_avx2(path))
        done += zt_cpu_gauss_blocks_avx2(tensor_key, first_block + done, n_blocks - done,
                                         out + 4 * done);
    for (size_t i = done; i < n_blocks; i++) {
        store_block(out + 4 * i, zt_z_gauss_block4(tensor_key, first_block + i));
    }
}

/* Rademacher z of whole Philox blocks (128 elements each) on the path. */
static void rademacher_philox(zt_cpu_rng_path path, uint64_t tensor_key, uint64_t first_philox,
                              size_t n_philox, float *out) { /* (128 * n_philox) */
    size_t done = 0;
    if (path == ZT_CPU_RNG_AVX512)
        done = zt_cpu_rademacher_philox_avx512(tensor_key, first_philox, n_philox, out);
    if (zt_cpu_rng_path_has_avx2(path))
        done += zt_cpu_rademacher_philox_avx2(tensor_key, first_philox + done, n_philox - done,
                                              out + ZT_RADEMACHER_PER_PHILOX * done);
    for (size_t i = done; i < n_philox; i++) {
        const zt_u32x4 q = zt_z_bits_block4(tensor_key, first_philox + i);
        const uint32_t words[4] = {q.x, q.y, q.z, q.w};
        float *dst = out + ZT_RADEMACHER_PER_PHILOX * i;
        for (unsigned k = 0; k < ZT_RADEMACHER_PER_PHILOX; k++)
            dst[k] = ((words[k / 32] >> (k % 32)) & 1u) ? -1.0f : 1.0f;
    }
}

void zt_cpu_rademacher_blocks(zt_cpu_rng_path path, uint64_t tensor_key, uint64_t first_block,
                              size_t n_blocks, float *out) {
    const uint64_t per = ZT_RADEMACHER_BLOCK4_PER_PHILOX;
    size_t done = 0;
    while (done < n_blocks) {
        const uint64_t block = first_block + done;
        const uint64_t philox = block / per;
        const size_t inside = (size_t)(block % per); /* blocks of this Philox block before ours */
        if (inside == 0 && n_blocks - done >= per) {
            /* Whole Philox blocks straight into out. */
            const size_t n_philox = (n_blocks - done) / per;
            rademacher_philox(path, tensor_key, philox, n_philox, out + 4 * done);
            done += n_philox * per;
            continue;
        }
        /* A Philox block the run starts or ends inside: draw it whole, keep our part. */
        float whole[ZT_RADEMACHER_PER_PHILOX];
        rademacher_philox(path, tensor_key, philox, 1, whole);
        size_t take = (size_t)per - inside;
        if (take > n_blocks - done) take = n_blocks - done;
        memcpy(out + 4 * done, whole + 4 * inside, 4 * take * sizeof(float));
        done += take;
    }
}

void zt_cpu_stream_words(zt_cpu_rng_path path, uint64_t tensor_key, uint32_t stream,
                         uint64_t first_block, size_t n_blocks, uint32_t *out) {
    size_t done = 0;
    if (path == ZT_CPU_RNG_AVX512)
        done = zt_cpu_stream_words_avx512(tensor_key, stream, first_block, n_blocks, out);
    if (zt_cpu_rng_path_has_avx2(path))
        done += zt_cpu_stream_words_avx2(tensor_key, stream, first_block + done, n_blocks - done,
                                         out + 4 * done);
    for (size_t i = done; i < n_blocks; i++) {
        const zt_u32x4 w = zt_rng_stream_block4(tensor_key, stream, first_block + i);
        out[4 * i] = w.x;
        out[4 * i + 1] = w.y;
        out[4 * i + 2] = w.z;
        out[4 * i + 3] = w.w;
    }
}

void zt_cpu_box_muller_pairs(zt_cpu_rng_path path, const uint32_t *x, const uint32_t *y, size_t n,
                             float *first, float *second) {
    size_t done = 0;
    if (path == ZT_CPU_RNG_AVX512) done = zt_cpu_box_muller_pairs_avx512(x, y, n, first, second);
    if (zt_cpu_rng_path_has_avx2(path))
        done +=
            zt_cpu_box_muller_pairs_avx2(x + done, y + done, n - done, first + done, second + done);
    for (size_t i = done; i < n; i++) {
        const zt_f32x2 pair = zt_box_muller(x[i], y[i]);
        first[i] = pair.x;
        second[i] = pair.y;
    }
}
