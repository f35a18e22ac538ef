/* Parity of the perturbation ops (perturb, perturb_variants, z_sumsq, update) of a CUDA backend
 * under test ("dut") with the CPU backend (the reference). Shared by tests/cudaemu (the kernels
 * under the host executor) and tests/gpu (a real GPU); include it in one .c per program, after
 * zt_test.h, and link a build of zo_probe.cu that matches the backend.
 *
 * What must hold, and why (kernels/cuda/z_terms.cuh):
 *   - Rademacher z, the SR bits and every f32 operation are the same on both sides (the same
 *     Philox source, the CPU's operation order with no contraction), so perturb and update are
 *     bit-identical, in every dtype, rule and step, on any device.
 *   - Gaussian z is bit-identical too, in the host executor and on a GPU alike: zotune's own
 *     Box-Muller transform (kernels/common/box_muller.h) is one fixed sequence of IEEE operations
 *     (fmaf / __fmaf_rn, products, conversions, sqrtf / __fsqrt_rn, each correctly rounded, none
 *     contracted) on the words both sides draw, with no libm or device intrinsic in it. So every
 *     case is compared bit for bit, Gaussian or not, on every device.
 *   - z_sumsq sums in another order than the CPU (fixed chunks and trees instead of ascending
 *     j); each z_j^2 is exact in double, so the two sums differ by their rounding only:
 *         |d| <= (n_ascending + n_tree) * 2^-53 * S,
 *     n_ascending = min(n, 2^14) + ceil(n / 2^14) additions on the CPU's longest path, n_tree =
 *     64 + 8 + ceil(n_chunks / 256) + 8 on the kernel's. The kernel's sum depends on n alone: the
 *     probe runs it on grids of 1, 2, 3 and 7 blocks and wants the same bits.
 *   - The probe's curand_normal4 is cuRAND's transform, not zotune's: it is compared with the
 *     kernels' normals within the bound of tests/rng/curand_normal_bound.h for the build it ran
 *     in (the executor compiles cuRAND's host branch: libm, uncontracted angle; a GPU runs its
 *     device branch: __sincosf, FMA angle), and the largest difference is printed. Its words
 *     must equal the kernels' bit for bit.
 * Every buffer sits between guard bands that must come back untouched; inputs must come back
 * unchanged; outputs start as NaN bytes. Error cases must fail alike (status and message) and
 * write nothing.
 */
#ifndef ZT_TEST_ZO_PARITY_H
#define ZT_TEST_ZO_PARITY_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "core/status.h"
#include "parity_common.h"
#include "rng/curand_normal_bound.h"
#include "zo_probe.h"
#include "zt_test.h"

typedef struct zt_zo_mode {
    /* where the probe's cuRAND code ran: the host executor (ZT_CURAND_HOST_BUILD) or a GPU
     * (ZT_CURAND_DEVICE_BUILD); it picks the bound on curand_normal4 against the kernels' z */
    zt_curand_build curand_build;
} zt_zo_mode;

// ---------------------------------------------------------------------------------------------
// Numbers

/* Spacing of `dtype` values at magnitude |x| (the subnormal spacing below the normal range). */
static inline double zt_zo_ulp(double x, zt_dtype dtype) {
    const int precision = dtype == ZT_F32 ? 24 : dtype == ZT_F16 ? 11 : 8;
    const double min_normal = dtype == ZT_F16 ? 0x1p-14 : 0x1p-126;
    x = fabs(x);
    if (!(x >= min_normal)) x = min_normal;
    int exponent;
    (void)frexp(x, &exponent); /* x = m 2^exponent, m in [0.5, 1) */
    return ldexp(1.0, exponent - precision);
}

static inline int zt_zo_same(const void *a, const void *b, zt_dtype dtype, size_t i) {
    const size_t size = zt_dtype_size(dtype);
    return memcmp((const uint8_t *)a + i * size, (const uint8_t *)b + i * size, size) == 0;
}

/* n values uniform in (-scale, scale) stored in dtype, with the awkward ones at the front: -0,
 * +0, the largest finite f16 (or a large value), a subnormal of the dtype. */
static inline void *zt_zo_random_tensor(zt_prng *r, zt_dtype dtype, size_t n, float scale) {
    void *data = malloc(n * zt_dtype_size(dtype) + 1);
    for (size_t i = 0; i < n; i++)
        zt_store_rne(data, dtype, i, scale * zt_prng_uniform(r));
    const float specials[4] = {-0.0f, 0.0f, dtype == ZT_F16 ? 65504.0f : 3.0e4f,
                               dtype == ZT_F16 ? -3.0e-6f : 1.0e-39f};
    for (size_t i = 1; i < 5 && i < n; i++)
        zt_store_rne(data, dtype, i, specials[i - 1]);
    return data;
}

// ---------------------------------------------------------------------------------------------
// Per-op summary

typedef struct zt_zo_stat {
    const char *op;
    int n_cases, n_bitwise; /* cases, and those whose output came back bit-identical */
    double worst_ratio;     /* max |dut - ref| / bound over the cases with a bound */
    double worst_ulps;      /* max |dut - ref| in ulps of the stored dtype */
} zt_zo_stat;

static zt_zo_stat zt_zo_stats[8];
static int zt_zo_n_stats;

static inline zt_zo_stat *zt_zo_stat_for(const char *op) {
    for (int i = 0; i < zt_zo_n_stats; i++)
        if (strcmp(zt_zo_stats[i].op, op) == 0) return &zt_zo_stats[i];
    if (zt_zo_n_stats == (int)(sizeof zt_zo_stats / sizeof zt_zo_stats[0])) {
        fprintf(stderr, "FATAL: more than %d ops in the zo summary\n", zt_zo_n_stats);
        exit(1);
    }
    zt_zo_stat *s = &zt_zo_stats[zt_zo_n_stats++];
    memset(s, 0, sizeof *s);
    s->op = op;
    return s;
}

static inline void zt_zo_record(const char *op, int bitwise, double ratio, double ulps) {
    zt_zo_stat *s = zt_zo_stat_for(op);
    s->n_cases++;
    s->n_bitwise += bitwise;
    if (!(ratio <= s->worst_ratio)) s->worst_ratio = ratio; /* NaN sticks */
    if (!(ulps <= s->worst_ulps)) s->worst_ulps = ulps;
}

static inline const char *zt_zo_dist_name(zt_dist dist) {
    return dist == ZT_DIST_GAUSSIAN ? "gauss" : "rademacher";
}

/* n_terms random directions: distinct seeds, coefficients of either sign in [0.25, 1.25). */
static inline zt_direction *zt_zo_random_terms(zt_prng *r, int n_terms) {
    zt_direction *terms =
        (zt_direction *)malloc((size_t)(n_terms > 0 ? n_terms : 1) * sizeof *terms);
    for (int i = 0; i < n_terms; i++) {
        terms[i].seed = zt_prng_next(r);
        const float magnitude = 0.75f + 0.5f * zt_prng_uniform(r);
        terms[i].coeff = (zt_prng_next(r) & 1) ? -magnitude : magnitude;
    }
    return terms;
}

// ---------------------------------------------------------------------------------------------
// perturb

typedef struct zt_zo_perturb_case {
    zt_dtype src_dtype, dst_dtype;
    int in_place; /* dst = src (same dtype) */
    size_t n;
    uint64_t offset;
    int n_terms;
    zt_dist dist;
    /* Bytes between the buffer's (256-byte aligned) start and element 0 of the slice: with the
     * offset, whether the kernels may take a block at a time (kernels/cuda/z_terms.cuh). */
    size_t src_shift, dst_shift;
    int specials; /* ZT_ZO_SPECIALS_*: non-finite and overflowing inputs at the front */
} zt_zo_perturb_case;

enum {
    ZT_ZO_SPECIALS_NONE = 0,
    /* +-Inf, and values that overflow an f16 store; fine with terms on every device */
    ZT_ZO_SPECIALS_INF = 1,
    /* NaNs of either sign and payload too: only without terms, where no arithmetic canonicalises
     * them (a GPU's does, the CPU's keeps payloads), so the conversions alone are compared */
    ZT_ZO_SPECIALS_NAN = 2,
};

/* Overwrites the front of a tensor of dtype with the values `specials` names. */
static inline void zt_zo_put_specials(void *data, zt_dtype dtype, size_t n, int specials) {
    if (specials == ZT_ZO_SPECIALS_NONE) return;
    const float inf_values[] = {INFINITY, -INFINITY, 7.0e4f, -65520.0f, 65519.0f, 1.0f};
    for (size_t i = 0; i < n && i < sizeof inf_values / sizeof inf_values[0]; i++)
        zt_store_rne(data, dtype, i, inf_values[i]);
    if (specials != ZT_ZO_SPECIALS_NAN) return;
    /* quiet and signalling NaNs with payloads, both signs, spread over different lanes */
    for (size_t i = 6; i < n && i < 14; i++) {
        if (dtype == ZT_F32) {
            const uint32_t nans[] = {0x7fc00000u, 0xffc00001u, 0x7f800001u, 0xff812345u};
            const uint32_t bits = nans[i % 4];
            memcpy((uint8_t *)data + i * 4, &bits, 4);
        } else {
            const uint16_t f16[] = {0x7e00u, 0xfe01u, 0x7c01u, 0xfd23u};
            const uint16_t bf16[] = {0x7fc0u, 0xffc1u, 0x7f81u, 0xff92u};
            const uint16_t bits = dtype == ZT_F16 ? f16[i % 4] : bf16[i % 4];
            memcpy((uint8_t *)data + i * 2, &bits, 2);
        }
    }
}

/* A host copy of a buffer's payload: shift filler bytes, then the data. */
static inline uint8_t *zt_zo_shifted(const void *data, size_t n_bytes, size_t shift) {
    uint8_t *out = (uint8_t *)malloc(shift + n_bytes + 1);
    for (size_t i = 0; i < shift; i++)
        out[i] = (uint8_t)(0x3c + 7 * i);
    if (data)
        memcpy(out + shift, data, n_bytes);
    else
        memset(out + shift, 0xff, n_bytes);
    return out;
}

/* Runs perturb on one backend; out receives dst (n, dst dtype). The bytes before a shifted
 * slice must come back untouched. */
static inline zt_status zt_zo_run_perturb(zt_backend *be, const zt_zo_perturb_case *c,
                                          const void *src, const zt_perturbation *p,
                                          uint32_t tensor_id, void *out, const char *name) {
    const size_t src_bytes = c->n * zt_dtype_size(c->src_dtype);
    const size_t dst_bytes = c->n * zt_dtype_size(c->dst_dtype);
    const size_t dst_shift = c->in_place ? c->src_shift : c->dst_shift;
    uint8_t *src_init = zt_zo_shifted(src, src_bytes, c->src_shift);
    uint8_t *dst_init = zt_zo_shifted(NULL, dst_bytes, dst_shift);
    uint8_t *fetched = (uint8_t *)malloc(dst_shift + dst_bytes + 1);
    zt_pbuf b_src = {0}, b_dst = {0};
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_src, src_init, c->src_shift + src_bytes, "src") &&
             (c->in_place || zt_pbuf_make(be, &b_dst, dst_init, dst_shift + dst_bytes, "dst"));
    if (ok) {
        uint8_t *src_ptr = (uint8_t *)zt_pbuf_ptr(&b_src) + c->src_shift;
        void *dst = c->in_place ? (void *)src_ptr : (uint8_t *)zt_pbuf_ptr(&b_dst) + dst_shift;
        zt_weight w = {src_ptr, c->src_dtype};
        s = be->ops->perturb(be, dst, c->dst_dtype, w, tensor_id, c->offset, c->n, p);
        ZT_CHECK(s == ZT_OK, "%s perturb %s: %s", be->ops->name, name, zt_last_error());
        if (c->in_place) {
            zt_pbuf_fetch(&b_src, fetched, name);
        } else {
            zt_pbuf_fetch(&b_dst, fetched, name);
            zt_pbuf_check_input(&b_src, src_init, name);
        }
        ZT_CHECK(memcmp(fetched, c->in_place ? src_init : dst_init, dst_shift) == 0,
                 "%s perturb %s: bytes before the slice were written", be->ops->name, name);
        memcpy(out, fetched + dst_shift, dst_bytes);
    }
    zt_pbuf_free(&b_src);
    zt_pbuf_free(&b_dst);
    free(src_init);
    free(dst_init);
    free(fetched);
    return s;
}

static inline void zt_zo_compare_perturb(const zt_zo_perturb_case *c, const void *got,
                                         const void *want, const char *name) {
    size_t n_diff = 0, first_diff = c->n;
    double worst_ulps = 0.0;
    for (size_t j = 0; j < c->n; j++) {
        if (zt_zo_same(got, want, c->dst_dtype, j)) continue;
        if (n_diff++ == 0) first_diff = j;
        const double g = zt_load_f32(got, c->dst_dtype, j), w = zt_load_f32(want, c->dst_dtype, j);
        const double ulps = fabs(g - w) / zt_zo_ulp(w, c->dst_dtype);
        if (!(ulps <= worst_ulps)) worst_ulps = ulps;
    }
    printf("  %-9s %-66s bitwise: %zu of %zu differ, max %.2g ulp\n", "perturb", name, n_diff, c->n,
           worst_ulps);
    ZT_CHECK(n_diff == 0, "perturb %s: %zu elements differ, first [%zu] dut %.9g ref %.9g", name,
             n_diff, first_diff,
             first_diff < c->n ? zt_load_f32(got, c->dst_dtype, first_diff) : 0.0,
             first_diff < c->n ? zt_load_f32(want, c->dst_dtype, first_diff) : 0.0);
    zt_zo_record("perturb", n_diff == 0, n_diff == 0 ? 0.0 : INFINITY, worst_ulps);
}

static inline void zt_zo_perturb_one(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                     const zt_zo_perturb_case *c) {
    char name[160];
    snprintf(name, sizeof name, "%s %s->%s%s n=%zu offset=%llu terms=%d%s%s",
             zt_zo_dist_name(c->dist), zt_dtype_name(c->src_dtype), zt_dtype_name(c->dst_dtype),
             c->in_place ? " in place" : "", c->n, (unsigned long long)c->offset, c->n_terms,
             c->src_shift || c->dst_shift ? " shifted" : "",
             c->specials == ZT_ZO_SPECIALS_NAN   ? " nan"
             : c->specials == ZT_ZO_SPECIALS_INF ? " inf"
                                                 : "");
    const uint32_t tensor_id = (uint32_t)zt_prng_below(r, 400);
    void *src = zt_zo_random_tensor(r, c->src_dtype, c->n, 0.5f);
    zt_zo_put_specials(src, c->src_dtype, c->n, c->specials);
    zt_direction *terms = zt_zo_random_terms(r, c->n_terms);
    const zt_perturbation p = {terms, c->n_terms, c->dist, 1e-3f * (1.0f + zt_prng_uniform(r))};
    const size_t dst_bytes = c->n * zt_dtype_size(c->dst_dtype);
    void *want = malloc(dst_bytes + 1), *got = malloc(dst_bytes + 1);
    zt_status rs = zt_zo_run_perturb(ref, c, src, &p, tensor_id, want, name);
    zt_status ds = zt_zo_run_perturb(dut, c, src, &p, tensor_id, got, name);
    if (rs == ZT_OK && ds == ZT_OK)
        zt_zo_compare_perturb(c, got, want, name);
    else
        zt_zo_record("perturb", 0, INFINITY, INFINITY);
    free(src);
    free(terms);
    free(want);
    free(got);
}

/* Every path of the perturb kernels (kernels/cuda/perturb.cu) for each dtype pair and
 * distribution, in place and not: whole blocks a vector access at a time, the blocks a slice cuts
 * at either end, slices inside one or two blocks, slices not aligned for vector access (element 0
 * at a byte shift that the offset does not make up for), the grid-stride loop's two blocks per
 * turn and its single last one, one to three terms, no terms with NaN inputs, Inf inputs. */
static inline void zt_zo_parity_perturb_paths(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    static const struct {
        size_t n;
        uint64_t offset;
    } shapes[] = {{1, 0},  {2, 3},  {3, 1},  {4, 0},     {5, 6},     {6, 2},     {7, 4},
                  {8, 0},  {9, 7},  {13, 1}, {16, 4},    {37, 2},    {1000, 8},  {4099, 1},
                  {12, 5}, {11, 3}, {8, 2},  {30001, 3}, {30720, 0}, {2563, 12}, {20, 6}};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0];
    size_t index = 0;
    for (int si = 0; si < 3; si++)
        for (int di = 0; di < 3; di++)
            for (int dist = 0; dist < 2; dist++)
                for (int in_place = 0; in_place < (si == di ? 2 : 1); in_place++)
                    for (int aligned = 0; aligned < 2; aligned++, index++) {
                        zt_zo_perturb_case c;
                        memset(&c, 0, sizeof c);
                        c.src_dtype = dtypes[si];
                        c.dst_dtype = dtypes[di];
                        c.in_place = in_place;
                        c.n = shapes[index % n_shapes].n;
                        c.offset = shapes[index % n_shapes].offset;
                        c.dist = dist ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
                        c.n_terms = index % 5 == 4 ? 0 : 1 + (int)(index % 3);
                        c.specials = index % 5 == 4   ? ZT_ZO_SPECIALS_NAN
                                     : index % 5 == 3 ? ZT_ZO_SPECIALS_INF
                                                      : ZT_ZO_SPECIALS_NONE;
                        /* Element 0 of the tensor lands on a block boundary when the shift makes
                         * up for the offset's lane; one element further, it does not. */
                        const uint64_t lane = c.offset % 4 + (aligned ? 0 : 1 + index % 3);
                        c.src_shift = (size_t)(lane % 4) * zt_dtype_size(c.src_dtype);
                        c.dst_shift = (size_t)((c.offset + (aligned ? 0 : index % 2)) % 4) *
                                      zt_dtype_size(c.dst_dtype);
                        zt_zo_perturb_one(ref, dut, r, &c);
                    }
}

static inline void zt_zo_parity_perturb(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    const uint64_t big = (uint64_t)1 << 34;
    const zt_zo_perturb_case cases[] = {
        {ZT_F32, ZT_F32, 0, 1, 0, 1, ZT_DIST_GAUSSIAN, 0, 0, ZT_ZO_SPECIALS_NONE},
        {ZT_F32, ZT_F32, 0, 5, 3, 3, ZT_DIST_RADEMACHER, 0, 0, ZT_ZO_SPECIALS_NONE},
        {ZT_F16, ZT_F16, 1, 1023, 1, 2, ZT_DIST_GAUSSIAN, 0, 0, ZT_ZO_SPECIALS_NONE},
        /* crosses block 65536, where the counter's subsequence wraps into the offset */
        {ZT_BF16, ZT_BF16, 1, 4097, 65533 * 4 + 2, 2, ZT_DIST_RADEMACHER, 0, 0,
         ZT_ZO_SPECIALS_NONE},
        {ZT_BF16, ZT_BF16, 0, 4099, 65534 * 4 + 1, 1, ZT_DIST_GAUSSIAN, 0, 0, ZT_ZO_SPECIALS_NONE},
        {ZT_BF16, ZT_F32, 0, 66001, 0, 1, ZT_DIST_GAUSSIAN, 0, 0,
         ZT_ZO_SPECIALS_NONE}, /* staging a shadow copy */
        /* blocks past 2^32: the counter's second word */
        {ZT_F32, ZT_F16, 0, 3001, big + 1, 4, ZT_DIST_GAUSSIAN, 0, 0, ZT_ZO_SPECIALS_NONE},
        {ZT_F16, ZT_F32, 0, 777, 7, 0, ZT_DIST_GAUSSIAN, 0, 0,
         ZT_ZO_SPECIALS_NONE}, /* no terms: a conversion */
        {ZT_F32, ZT_BF16, 0, 1000, 5, 40, ZT_DIST_GAUSSIAN, 0, 0,
         ZT_ZO_SPECIALS_NONE}, /* terms past the inline 32 */
        {ZT_F16, ZT_F16, 0, 129, 262141, 33, ZT_DIST_RADEMACHER, 0, 0, ZT_ZO_SPECIALS_NONE},
        {ZT_F32, ZT_F32, 1, ((size_t)1 << 18) + 5, 0, 1, ZT_DIST_RADEMACHER, 0, 0,
         ZT_ZO_SPECIALS_NONE},
        {ZT_F32, ZT_F32, 0, 70003, 2, 2, ZT_DIST_GAUSSIAN, 0, 0, ZT_ZO_SPECIALS_NONE},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        zt_zo_perturb_one(ref, dut, r, &cases[ci]);
    }
    zt_zo_parity_perturb_paths(ref, dut, r);
}

// ---------------------------------------------------------------------------------------------
// z_sumsq

/* The rounding allowance for the two summation orders (the top of this file), relative to S. */
static inline double zt_zo_sumsq_order_bound(size_t n) {
    const double chunk = 16384.0, chunks = ceil((double)n / chunk);
    const double ascending = fmin((double)n, chunk) + chunks;
    const double tree = 64.0 + 8.0 + ceil(chunks / 256.0) + 8.0;
    return (ascending + tree) * 0x1p-53;
}

// ---------------------------------------------------------------------------------------------
// perturb_variants

/* The sets of variants a sweep stages together: what each variant's terms are, by the seeds of a
 * pool (index into it) and a coefficient. */
typedef struct zt_zo_variant_set {
    const char *name;
    int n_variants;
    int n_terms[6];
    int seed_of[6][3]; /* index into the seed pool, per term */
    float coeff[6][3];
} zt_zo_variant_set;

static const zt_zo_variant_set zt_zo_variant_sets[] = {
    /* MeZO's two variants: one draw scaled twice (the kernel's fused path) */
    {"+eps/-eps", 2, {1, 1}, {{0}, {0}}, {{1.0f}, {-1.0f}}},
    /* as many as the fused kernel takes, one unperturbed */
    {"four shared", 4, {1, 1, 0, 1}, {{0}, {0}, {0}, {0}}, {{0.5f}, {-1.25f}, {0}, {2.0f}}},
    /* one, and three, of one seed: the fused path with fewer variants than it takes */
    {"one", 1, {1}, {{0}}, {{-0.5f}}},
    {"three shared", 3, {1, 1, 1}, {{0}, {0}, {0}}, {{1.0f}, {-2.0f}, {0.25f}}},
    /* more than it takes: variant by variant */
    {"five shared",
     5,
     {1, 1, 1, 1, 1},
     {{0}, {0}, {0}, {0}, {0}},
     {{1.0f}, {-1.0f}, {0.5f}, {-0.5f}, {3.0f}}},
    /* different seeds and several terms: variant by variant */
    {"mixed",
     3,
     {1, 2, 3},
     {{0}, {1, 0}, {2, 0, 1}},
     {{1.0f}, {-0.75f, 0.25f}, {1.5f, -1.0f, 0.125f}}},
};

/* Runs perturb_variants on the dut; out[k] receives variant k's dst. Variant k's dst sits
 * dst_shift bytes after a 256-byte aligned start (a shift that breaks block access sends the
 * kernel down its element-wise path). */
static inline zt_status zt_zo_run_perturb_variants(zt_backend *be, zt_dtype src_dtype,
                                                   zt_dtype dst_dtype, size_t n, size_t dst_shift,
                                                   const void *src, const zt_perturbation *p,
                                                   int n_variants, uint32_t tensor_id,
                                                   void *const *out, const char *name) {
    const size_t src_bytes = n * zt_dtype_size(src_dtype), dst_bytes = n * zt_dtype_size(dst_dtype);
    uint8_t *dst_init = zt_zo_shifted(NULL, dst_bytes, dst_shift);
    uint8_t *fetched = (uint8_t *)malloc(dst_shift + dst_bytes + 1);
    zt_pbuf b_src = {0}, b_dst[6];
    memset(b_dst, 0, sizeof b_dst);
    void *dst[6];
    zt_status s = ZT_ERR_INTERNAL;
    int ok = zt_pbuf_make(be, &b_src, src, src_bytes, "src");
    for (int k = 0; ok && k < n_variants; k++) {
        ok = zt_pbuf_make(be, &b_dst[k], dst_init, dst_shift + dst_bytes, "dst");
        if (ok) dst[k] = (uint8_t *)zt_pbuf_ptr(&b_dst[k]) + dst_shift;
    }
    if (ok) {
        const zt_weight w = {zt_pbuf_ptr(&b_src), src_dtype};
        s = be->ops->perturb_variants(be, dst, dst_dtype, w, tensor_id, 0, n, p, n_variants);
        ZT_CHECK(s == ZT_OK, "%s perturb_variants %s: %s", be->ops->name, name, zt_last_error());
        for (int k = 0; k < n_variants; k++) {
            zt_pbuf_fetch(&b_dst[k], fetched, name);
            ZT_CHECK(memcmp(fetched, dst_init, dst_shift) == 0,
                     "%s perturb_variants %s: bytes before variant %d were written", be->ops->name,
                     name, k);
            memcpy(out[k], fetched + dst_shift, dst_bytes);
        }
        zt_pbuf_check_input(&b_src, src, name);
    }
    zt_pbuf_free(&b_src);
    for (int k = 0; k < n_variants; k++)
        zt_pbuf_free(&b_dst[k]);
    free(dst_init);
    free(fetched);
    return s;
}

/* perturb_variants on the dut against one reference perturb per variant, bit for bit: every set
 * above, each dtype pair and distribution, block-aligned and shifted destinations, lengths with
 * and without a cut last block. */
/* One set of variants on the dut against one reference perturb per variant, bit for bit. */
static inline void zt_zo_perturb_variants_one(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                              const zt_zo_variant_set *set, zt_dtype src_dtype,
                                              zt_dtype dst_dtype, zt_dist dist, size_t n,
                                              size_t dst_shift) {
    char name[160];
    snprintf(name, sizeof name, "%s %s->%s n=%zu %s%s", zt_zo_dist_name(dist),
             zt_dtype_name(src_dtype), zt_dtype_name(dst_dtype), n, set->name,
             dst_shift ? " shifted" : "");
    const uint32_t tensor_id = (uint32_t)zt_prng_below(r, 400);
    void *src = zt_zo_random_tensor(r, src_dtype, n, 0.5f);
    uint64_t seeds[3] = {zt_prng_next(r), zt_prng_next(r), zt_prng_next(r)};
    zt_direction terms[6][3];
    zt_perturbation p[6];
    for (int k = 0; k < set->n_variants; k++) {
        for (int t = 0; t < set->n_terms[k]; t++)
            terms[k][t] = (zt_direction){seeds[set->seed_of[k][t]], set->coeff[k][t]};
        p[k] = (zt_perturbation){terms[k], set->n_terms[k], dist, 1e-3f * (1.0f + (float)k)};
    }
    const size_t dst_bytes = n * zt_dtype_size(dst_dtype);
    void *got[6], *want = malloc(dst_bytes + 1);
    for (int k = 0; k < set->n_variants; k++)
        got[k] = malloc(dst_bytes + 1);
    zt_status ds = zt_zo_run_perturb_variants(dut, src_dtype, dst_dtype, n, dst_shift, src, p,
                                              set->n_variants, tensor_id, got, name);
    size_t n_diff = 0;
    for (int k = 0; ds == ZT_OK && k < set->n_variants; k++) {
        const zt_zo_perturb_case c = {src_dtype,       dst_dtype, 0, n, 0,
                                      set->n_terms[k], dist,      0, 0, ZT_ZO_SPECIALS_NONE};
        if (zt_zo_run_perturb(ref, &c, src, &p[k], tensor_id, want, name) != ZT_OK) continue;
        for (size_t i = 0; i < n; i++)
            n_diff += !zt_zo_same(got[k], want, dst_dtype, i);
    }
    printf("  %-9s %-66s bitwise: %zu differ\n", "variants", name, n_diff);
    ZT_CHECK(ds == ZT_OK && n_diff == 0, "perturb_variants %s: %zu elements differ from perturb",
             name, n_diff);
    zt_zo_record("variants", ds == ZT_OK && n_diff == 0, 0.0, 0.0);
    for (int k = 0; k < set->n_variants; k++)
        free(got[k]);
    free(want);
    free(src);
}

static inline void zt_zo_parity_perturb_variants(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    static const size_t lengths[] = {1, 3, 4, 7, 1000, 4099, 30001};
    const size_t n_sets = sizeof zt_zo_variant_sets / sizeof zt_zo_variant_sets[0];
    size_t index = 0;
    for (int si = 0; si < 3; si++)
        for (int di = 0; di < 3; di++)
            for (int dist = 0; dist < 2; dist++, index++)
                zt_zo_perturb_variants_one(ref, dut, r, &zt_zo_variant_sets[index % n_sets],
                                           dtypes[si], dtypes[di], (zt_dist)dist,
                                           lengths[index % (sizeof lengths / sizeof lengths[0])],
                                           index % 3 == 2 ? 2 : 0);
}

static inline void zt_zo_parity_sumsq(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    const size_t sizes[] = {1, 3, 4, 5, 4099, 16383, 16384, 16385, 100003, ((size_t)1 << 18) + 7};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int d = 0; d < 2; d++) {
            const size_t n = sizes[k];
            const zt_dist dist = d == 0 ? ZT_DIST_GAUSSIAN : ZT_DIST_RADEMACHER;
            if (dist == ZT_DIST_RADEMACHER && n > 5) continue; /* n itself; a few suffice */
            const uint64_t seed = zt_prng_next(r);
            const uint32_t tensor_id = (uint32_t)zt_prng_below(r, 1000);
            char name[96];
            snprintf(name, sizeof name, "%s n=%zu", zt_zo_dist_name(dist), n);
            double want = NAN, got = NAN;
            zt_status rs = ref->ops->z_sumsq(ref, &want, seed, tensor_id, n, dist);
            zt_status ds = dut->ops->z_sumsq(dut, &got, seed, tensor_id, n, dist);
            ZT_CHECK(rs == ZT_OK && ds == ZT_OK, "z_sumsq %s: %s", name, zt_last_error());
            if (rs != ZT_OK || ds != ZT_OK) {
                zt_zo_record("z_sumsq", 0, INFINITY, INFINITY);
                continue;
            }
            /* the same z_j on both sides: only the summation order differs */
            const double bound = dist == ZT_DIST_GAUSSIAN ? zt_zo_sumsq_order_bound(n) * want : 0.0;
            const double diff = fabs(got - want);
            const double ratio = bound > 0.0 ? diff / bound : (diff == 0.0 ? 0.0 : INFINITY);
            printf("  %-9s %-66s dut %.17g ref %.17g rel %.2g, max/bound %.2g\n", "z_sumsq", name,
                   got, want, want > 0.0 ? diff / want : diff, ratio);
            if (dist == ZT_DIST_RADEMACHER)
                ZT_CHECK(got == (double)n && want == (double)n, "z_sumsq %s: %.17g / %.17g", name,
                         got, want);
            ZT_CHECK(ratio <= 1.0, "z_sumsq %s: dut %.17g ref %.17g beyond the bound %.3g", name,
                     got, want, bound);
            zt_zo_record("z_sumsq", got == want, ratio, 0.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// update

typedef struct zt_zo_update_case {
    zt_update_rule rule;
    zt_dtype dtype;
    int stochastic;
    zt_dist dist;
    size_t n;
    int n_terms, n_steps;
    float lr, weight_decay;
    /* Bytes between the buffers' (256-byte aligned) starts and element 0 of theta and of the
     * state: whether the kernels may take a block at a time (kernels/cuda/update.cu). */
    size_t theta_shift, state_shift;
    int overflows; /* lr large enough that some stored weights become +-Inf */
} zt_zo_update_case;

static inline const char *zt_zo_rule_name(zt_update_rule rule) {
    static const char *names[] = {"sgd", "sign", "momentum", "adamm"};
    return (unsigned)rule < 4 ? names[rule] : "?";
}

static inline size_t zt_zo_state_rows(zt_update_rule rule) {
    return rule == ZT_UPDATE_MOMENTUM ? 1 : rule == ZT_UPDATE_ADAMM ? 3 : 0;
}

/* One backend's theta and state for a multi-step case. */
typedef struct zt_zo_update_side {
    zt_backend *be;
    zt_pbuf theta, state;
} zt_zo_update_side;

static inline void zt_zo_update_cmp(const zt_zo_update_case *c, const void *got, const void *want,
                                    const float *got_state, const float *want_state,
                                    const char *name) {
    size_t n_diff = 0, first_diff = c->n;
    double worst_ulps = 0.0;
    for (size_t j = 0; j < c->n; j++) {
        if (zt_zo_same(got, want, c->dtype, j)) continue;
        if (n_diff++ == 0) first_diff = j;
        const double g = zt_load_f32(got, c->dtype, j), w = zt_load_f32(want, c->dtype, j);
        const double ulps = fabs(g - w) / zt_zo_ulp(w, c->dtype);
        if (!(ulps <= worst_ulps)) worst_ulps = ulps;
    }
    size_t state_diff = 0;
    const size_t state_floats = zt_zo_state_rows(c->rule) * c->n;
    for (size_t i = 0; i < state_floats; i++)
        state_diff += memcmp(&got_state[i], &want_state[i], sizeof(float)) != 0;
    printf("  %-9s %-66s bitwise: %zu of %zu differ, max %.2g ulp; state %zu differ\n", "update",
           name, n_diff, c->n, worst_ulps, state_diff);
    ZT_CHECK(n_diff == 0, "update %s: %zu weights differ, first [%zu] dut %.9g ref %.9g", name,
             n_diff, first_diff, first_diff < c->n ? zt_load_f32(got, c->dtype, first_diff) : 0.0,
             first_diff < c->n ? zt_load_f32(want, c->dtype, first_diff) : 0.0);
    ZT_CHECK(state_diff == 0, "update %s: %zu state values differ", name, state_diff);
    const int bitwise = n_diff == 0 && state_diff == 0;
    zt_zo_record("update", bitwise, bitwise ? 0.0 : INFINITY, worst_ulps);
}

static inline void zt_zo_run_update_case(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                         const zt_zo_update_case *c) {
    char name[160];
    snprintf(name, sizeof name, "%s %s %s%s n=%zu terms=%d lr=%g wd=%g%s", zt_zo_rule_name(c->rule),
             zt_dtype_name(c->dtype), zt_zo_dist_name(c->dist), c->stochastic ? " sr" : "", c->n,
             c->n_terms, (double)c->lr, (double)c->weight_decay,
             c->theta_shift || c->state_shift ? " shifted" : "");
    const uint32_t tensor_id = (uint32_t)zt_prng_below(r, 300);
    const size_t theta_bytes = c->n * zt_dtype_size(c->dtype);
    const size_t rows = zt_zo_state_rows(c->rule);
    void *theta = zt_zo_random_tensor(r, c->dtype, c->n, 1.0f);
    float *state = (float *)malloc(rows * c->n * sizeof(float) + 1);
    for (size_t i = 0; i < c->n; i++) {
        if (rows >= 1) state[i] = 0.1f * zt_prng_uniform(r);
        if (rows == 3) {
            const float v = 0.005f * (1.0f + zt_prng_uniform(r));
            state[c->n + i] = v;
            state[2 * c->n + i] = v + 0.005f * (1.0f + zt_prng_uniform(r));
        }
    }
    const size_t state_bytes = rows * c->n * sizeof(float);
    uint8_t *theta_init = zt_zo_shifted(theta, theta_bytes, c->theta_shift);
    uint8_t *state_init = zt_zo_shifted(state, state_bytes, c->state_shift);
    uint8_t *theta_fetched = (uint8_t *)malloc(c->theta_shift + theta_bytes + 1);
    uint8_t *state_fetched = (uint8_t *)malloc(c->state_shift + state_bytes + 1);
    zt_zo_update_side sides[2] = {{ref, {0}, {0}}, {dut, {0}, {0}}};
    int ok = 1;
    for (int s = 0; s < 2; s++) {
        ok = ok && zt_pbuf_make(sides[s].be, &sides[s].theta, theta_init,
                                c->theta_shift + theta_bytes, "theta");
        if (rows)
            ok = ok && zt_pbuf_make(sides[s].be, &sides[s].state, state_init,
                                    c->state_shift + state_bytes, "state");
    }
    void *before = malloc(theta_bytes + 1),
         *outs[2] = {malloc(theta_bytes + 1), malloc(theta_bytes + 1)};
    float *states[2] = {(float *)malloc(rows * c->n * sizeof(float) + 1),
                        (float *)malloc(rows * c->n * sizeof(float) + 1)};
    memcpy(before, theta, theta_bytes);
    for (int step = 0; ok && step < c->n_steps; step++) {
        zt_direction *terms = zt_zo_random_terms(r, c->n_terms);
        zt_update u;
        memset(&u, 0, sizeof u);
        u.grad.terms = terms;
        u.grad.n_terms = c->n_terms;
        u.grad.dist = c->dist;
        u.grad.z_scale = 1.0f + 0.5f * zt_prng_uniform(r);
        /* |a_i| >= 1, so the elements whose z all agree have |g| >= n_terms: they overflow */
        if (c->overflows) u.grad.z_scale = 4.0f;
        u.rule = c->rule;
        u.lr = c->lr;
        u.weight_decay = c->weight_decay;
        u.beta1 = 0.9f;
        u.beta2 = 0.999f;
        u.eps = 1e-8f;
        u.stochastic_rounding = c->stochastic;
        u.rounding_seed = zt_prng_next(r);
        char step_name[192];
        snprintf(step_name, sizeof step_name, "%s step %d", name, step + 1);
        /* The count of non-finite weights each backend stores, started off the mark so that
         * adding to it (not assigning) is checked too. */
        unsigned long long counted[2] = {5, 5};
        for (int s = 0; s < 2; s++) {
            zt_backend *be = sides[s].be;
            u.n_nonfinite = &counted[s];
            void *theta_ptr = (uint8_t *)zt_pbuf_ptr(&sides[s].theta) + c->theta_shift;
            float *state_ptr =
                rows ? (float *)((uint8_t *)zt_pbuf_ptr(&sides[s].state) + c->state_shift) : NULL;
            zt_status st = be->ops->update(be, theta_ptr, c->dtype, tensor_id, c->n, state_ptr, &u);
            ZT_CHECK(st == ZT_OK, "%s update %s: %s", be->ops->name, step_name, zt_last_error());
            ok = ok && st == ZT_OK;
            zt_pbuf_fetch(&sides[s].theta, theta_fetched, step_name);
            ZT_CHECK(memcmp(theta_fetched, theta_init, c->theta_shift) == 0,
                     "%s update %s: bytes before theta were written", be->ops->name, step_name);
            memcpy(outs[s], theta_fetched + c->theta_shift, theta_bytes);
            if (rows) {
                zt_pbuf_fetch(&sides[s].state, state_fetched, step_name);
                ZT_CHECK(memcmp(state_fetched, state_init, c->state_shift) == 0,
                         "%s update %s: bytes before the state were written", be->ops->name,
                         step_name);
                memcpy(states[s], state_fetched + c->state_shift, state_bytes);
            }
        }
        if (ok) {
            if (c->lr == 0.0f) {
                /* lr = 0 must leave every weight's bits as they were, -0 included, on both. */
                ZT_CHECK(memcmp(outs[0], before, theta_bytes) == 0 &&
                             memcmp(outs[1], before, theta_bytes) == 0,
                         "update %s: lr = 0 changed weights", step_name);
            }
            zt_zo_update_cmp(c, outs[1], outs[0], states[1], states[0], step_name);
            ZT_CHECK(counted[0] == counted[1],
                     "update %s: %llu non-finite weights counted, the reference %llu", step_name,
                     counted[1] - 5, counted[0] - 5);
            if (c->overflows)
                ZT_CHECK(counted[0] > 5,
                         "update %s: meant to overflow, but %llu weights are not finite", step_name,
                         counted[0] - 5);
            memcpy(before, outs[0], theta_bytes);
        } else {
            zt_zo_record("update", 0, INFINITY, INFINITY);
        }
        free(terms);
    }
    for (int s = 0; s < 2; s++) {
        zt_pbuf_free(&sides[s].theta);
        zt_pbuf_free(&sides[s].state);
        free(outs[s]);
        free(states[s]);
    }
    free(before);
    free(theta);
    free(state);
    free(theta_init);
    free(state_init);
    free(theta_fetched);
    free(state_fetched);
}

/* Every path of the update kernels (kernels/cuda/update.cu) for each dtype, distribution,
 * rule and rounding: whole blocks a vector access at a time (theta, and every state row), the
 * last block when n is not a multiple of 4, tensors not aligned for vector access (theta shifted
 * off a block boundary, the state off 16 bytes), the grid-stride loop's two blocks per turn and
 * its single last one, one to three terms and none. */
static inline void zt_zo_parity_update_paths(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const size_t sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 36, 1003, 4096, 30001, 30720};
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    size_t index = 0;
    for (int rule = ZT_UPDATE_SGD; rule <= ZT_UPDATE_ADAMM; rule++)
        for (int d = 0; d < 3; d++)
            for (int sr = 0; sr < (dtypes[d] == ZT_F32 ? 1 : 2); sr++)
                for (int dist = 0; dist < 2; dist++)
                    for (int layout = 0; layout < 3; layout++, index++) {
                        zt_zo_update_case c;
                        memset(&c, 0, sizeof c);
                        c.rule = (zt_update_rule)rule;
                        c.dtype = dtypes[d];
                        c.stochastic = sr;
                        c.dist = dist ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
                        c.n = sizes[index % (sizeof sizes / sizeof sizes[0])];
                        c.n_terms = index % 7 == 6 ? 0 : 1 + (int)(index % 3);
                        c.n_steps = 2;
                        c.lr = 1e-3f;
                        c.weight_decay = index % 2 ? 0.01f : 0.0f;
                        /* 0: aligned; 1: theta one element off a block boundary; 2: the state
                         * one float off 16 bytes (theta 8 blocks' worth of bytes off, aligned) */
                        c.theta_shift = layout == 1   ? zt_dtype_size(c.dtype)
                                        : layout == 2 ? 8 * 16
                                                      : 0;
                        c.state_shift = layout == 2 ? sizeof(float) : 0;
                        zt_zo_run_update_case(ref, dut, r, &c);
                    }
}

static inline void zt_zo_parity_update(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const size_t sizes[] = {1, 7, 1001, 4099, 33333};
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    int index = 0;
    for (int rule = ZT_UPDATE_SGD; rule <= ZT_UPDATE_ADAMM; rule++) {
        for (int d = 0; d < 3; d++) {
            for (int sr = 0; sr < 2; sr++, index++) {
                zt_zo_update_case c;
                c.rule = (zt_update_rule)rule;
                c.dtype = dtypes[d];
                c.stochastic = sr; /* on f32 it must be ignored */
                c.dist = index % 2 ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
                c.n = sizes[index % 5];
                c.n_terms = 1 + index % 3;
                c.n_steps = 3;
                c.lr = 1e-3f;
                c.weight_decay = index % 4 == 0 ? 0.0f : 0.01f;
                c.theta_shift = c.state_shift = 0;
                c.overflows = 0;
                zt_zo_run_update_case(ref, dut, r, &c);
            }
        }
    }
    /* Gaussian SGD, one step, large and small lr. */
    const zt_zo_update_case sgd[] = {
        {ZT_UPDATE_SGD, ZT_F32, 0, ZT_DIST_GAUSSIAN, 50001, 2, 1, 1e-3f, 0.01f, 0, 0, 0},
        {ZT_UPDATE_SGD, ZT_BF16, 0, ZT_DIST_GAUSSIAN, 9999, 1, 1, 1e-2f, 0.0f, 0, 0, 0},
        /* terms past the inline 32, every rule's state read through spilled terms */
        {ZT_UPDATE_ADAMM, ZT_BF16, 1, ZT_DIST_RADEMACHER, 3001, 40, 2, 1e-3f, 0.01f, 0, 0, 0},
        {ZT_UPDATE_ADAMM, ZT_F16, 1, ZT_DIST_GAUSSIAN, 2049, 70, 2, 1e-3f, 0.0f, 0, 0, 0},
        /* lr = 0: weights bit-identical, -0 and subnormals included; state still advances */
        {ZT_UPDATE_ADAMM, ZT_F16, 1, ZT_DIST_RADEMACHER, 1003, 2, 2, 0.0f, 0.01f, 0, 0, 0},
        {ZT_UPDATE_MOMENTUM, ZT_BF16, 1, ZT_DIST_GAUSSIAN, 517, 1, 2, 0.0f, 0.01f, 0, 0, 0},
        {ZT_UPDATE_SIGN, ZT_F32, 0, ZT_DIST_GAUSSIAN, 515, 3, 1, 0.0f, 0.0f, 0, 0, 0},
        /* more blocks than the grid: the grid-stride loop */
        {ZT_UPDATE_MOMENTUM, ZT_F32, 0, ZT_DIST_RADEMACHER, ((size_t)1 << 18) + 3, 1, 2, 1e-3f,
         0.0f, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof sgd / sizeof sgd[0]; i++)
        zt_zo_run_update_case(ref, dut, r, &sgd[i]);
    /* Stores that overflow: the non-finite count, on every path (aligned, a cut last block,
     * shifted), with and without SR; one step and no decay, so Inf never meets Inf. */
    const zt_zo_update_case overflow[] = {
        {ZT_UPDATE_SGD, ZT_F16, 1, ZT_DIST_RADEMACHER, 1003, 3, 1, 4e4f, 0.0f, 0, 0, 1},
        {ZT_UPDATE_SGD, ZT_F16, 0, ZT_DIST_RADEMACHER, 4096, 3, 1, 4e4f, 0.0f, 2, 0, 1},
        {ZT_UPDATE_SIGN, ZT_F16, 0, ZT_DIST_RADEMACHER, 515, 3, 1, 66000.0f, 0.0f, 0, 0, 1},
        {ZT_UPDATE_SGD, ZT_BF16, 1, ZT_DIST_RADEMACHER, 2048, 3, 1, 3e38f, 0.0f, 0, 0, 1},
        {ZT_UPDATE_SGD, ZT_BF16, 0, ZT_DIST_RADEMACHER, 999, 3, 1, 3e38f, 0.0f, 0, 0, 1},
        {ZT_UPDATE_SGD, ZT_F32, 0, ZT_DIST_RADEMACHER, 4100, 3, 1, 3e38f, 0.0f, 0, 0, 1},
        {ZT_UPDATE_MOMENTUM, ZT_F32, 0, ZT_DIST_RADEMACHER, 1001, 3, 1, 3e38f, 0.0f, 4, 0, 1},
    };
    for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++)
        zt_zo_run_update_case(ref, dut, r, &overflow[i]);
    zt_zo_parity_update_paths(ref, dut, r);
}

// ---------------------------------------------------------------------------------------------
// errors: the same status and message on both, and nothing written

/* The buffers one error case may touch, on one backend: a (16 floats), b (16 floats), state (24).
 */
typedef struct zt_zo_err_bufs {
    zt_pbuf a, b, state;
} zt_zo_err_bufs;

/* The backends under test are C++, where an enum object holding a value outside the enum's range
 * (that of the smallest bit-field holding every enumerator) is undefined behaviour, caught by
 * UBSan. So a bad dtype passed by value is 3: no zt_dtype, yet inside 0..3. zt_dist's range holds
 * nothing but its two enumerators, so z_sumsq's by-value distribution has no bad case here (the
 * CPU backend's own test has it); bad values inside structs are fine, since the C checks of
 * kernels/op_checks.c read them before any C++ does. */
#define ZT_ZO_UNKNOWN_DTYPE ((zt_dtype)(ZT_BF16 + 1))

typedef enum zt_zo_err_call {
    ZT_ZO_PERTURB_NULL_DST,
    ZT_ZO_PERTURB_BAD_DST_DTYPE,
    ZT_ZO_PERTURB_NULL_SRC,
    ZT_ZO_PERTURB_BAD_SRC_DTYPE,
    ZT_ZO_PERTURB_NULL_P,
    ZT_ZO_PERTURB_NAN_COEFF,
    ZT_ZO_PERTURB_INF_SCALE,
    ZT_ZO_PERTURB_BAD_DIST,
    ZT_ZO_PERTURB_NEGATIVE_TERMS,
    ZT_ZO_PERTURB_NULL_TERMS,
    ZT_ZO_PERTURB_SHIFTED_OVERLAP,
    ZT_ZO_PERTURB_ALIAS_OTHER_DTYPE,
    ZT_ZO_PERTURB_OFFSET_OVERFLOW,
    ZT_ZO_SUMSQ_NULL_OUT,
    ZT_ZO_UPDATE_NULL_U,
    ZT_ZO_UPDATE_NULL_THETA,
    ZT_ZO_UPDATE_BAD_DTYPE,
    ZT_ZO_UPDATE_NAN_LR,
    ZT_ZO_UPDATE_INF_WD,
    ZT_ZO_UPDATE_BAD_RULE,
    ZT_ZO_UPDATE_MOMENTUM_NO_STATE,
    ZT_ZO_UPDATE_MOMENTUM_BETA,
    ZT_ZO_UPDATE_ADAMM_EPS,
    ZT_ZO_UPDATE_ADAMM_BETA2,
    ZT_ZO_UPDATE_STATE_OVERLAP,
    ZT_ZO_UPDATE_NEGATIVE_TERMS,
    ZT_ZO_UPDATE_BAD_DIST,
    ZT_ZO_UPDATE_NAN_COEFF,
    ZT_ZO_ERR_CALLS
} zt_zo_err_call;

static inline zt_status zt_zo_err_run(zt_backend *be, zt_zo_err_bufs *bufs, zt_zo_err_call call,
                                      const char **what) {
    float *a = (float *)zt_pbuf_ptr(&bufs->a), *b = (float *)zt_pbuf_ptr(&bufs->b);
    float *state = (float *)zt_pbuf_ptr(&bufs->state);
    static const zt_direction terms[2] = {{1, 1.0f}, {2, NAN}};
    const zt_perturbation ok = {terms, 1, ZT_DIST_GAUSSIAN, 1.0f};
    zt_perturbation p = ok;
    const zt_weight src = {b, ZT_F32};
    zt_update u;
    memset(&u, 0, sizeof u);
    u.grad = ok;
    u.rule = ZT_UPDATE_SGD;
    u.lr = 1.0f;
    u.beta1 = 0.9f;
    u.beta2 = 0.999f;
    u.eps = 1e-8f;
    switch (call) {
    case ZT_ZO_PERTURB_NULL_DST:
        *what = "perturb NULL dst";
        return be->ops->perturb(be, NULL, ZT_F32, src, 0, 0, 4, &ok);
    case ZT_ZO_PERTURB_BAD_DST_DTYPE:
        *what = "perturb bad dst dtype";
        return be->ops->perturb(be, a, ZT_ZO_UNKNOWN_DTYPE, src, 0, 0, 4, &ok);
    case ZT_ZO_PERTURB_NULL_SRC:
        *what = "perturb NULL src";
        return be->ops->perturb(be, a, ZT_F32, (zt_weight){NULL, ZT_F32}, 0, 0, 4, &ok);
    case ZT_ZO_PERTURB_BAD_SRC_DTYPE:
        *what = "perturb bad src dtype";
        return be->ops->perturb(be, a, ZT_F32, (zt_weight){b, ZT_ZO_UNKNOWN_DTYPE}, 0, 0, 4, &ok);
    case ZT_ZO_PERTURB_NULL_P:
        *what = "perturb NULL perturbation";
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, NULL);
    case ZT_ZO_PERTURB_NAN_COEFF:
        *what = "perturb NaN coefficient";
        p.n_terms = 2;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_INF_SCALE:
        *what = "perturb Inf z_scale";
        p.z_scale = INFINITY;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_BAD_DIST:
        *what = "perturb unknown distribution";
        p.dist = (zt_dist)7;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_NEGATIVE_TERMS:
        *what = "perturb negative n_terms";
        p.n_terms = -1;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_NULL_TERMS:
        *what = "perturb NULL terms";
        p.terms = NULL;
        return be->ops->perturb(be, a, ZT_F32, src, 0, 0, 4, &p);
    case ZT_ZO_PERTURB_SHIFTED_OVERLAP:
        *what = "perturb shifted overlap";
        return be->ops->perturb(be, a + 1, ZT_F32, (zt_weight){a, ZT_F32}, 0, 0, 8, &ok);
    case ZT_ZO_PERTURB_ALIAS_OTHER_DTYPE:
        *what = "perturb in place with another dtype";
        return be->ops->perturb(be, a, ZT_BF16, (zt_weight){a, ZT_F32}, 0, 0, 8, &ok);
    case ZT_ZO_PERTURB_OFFSET_OVERFLOW:
        *what = "perturb offset overflow";
        return be->ops->perturb(be, a, ZT_F32, src, 0, UINT64_MAX - 2, 4, &ok);
    case ZT_ZO_SUMSQ_NULL_OUT:
        *what = "z_sumsq NULL out";
        return be->ops->z_sumsq(be, NULL, 1, 2, 100, ZT_DIST_GAUSSIAN);
    case ZT_ZO_UPDATE_NULL_U:
        *what = "update NULL update";
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, NULL);
    case ZT_ZO_UPDATE_NULL_THETA:
        *what = "update NULL theta";
        return be->ops->update(be, NULL, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_BAD_DTYPE:
        *what = "update bad dtype";
        return be->ops->update(be, a, ZT_ZO_UNKNOWN_DTYPE, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_NAN_LR:
        *what = "update NaN lr";
        u.lr = NAN;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_INF_WD:
        *what = "update Inf weight_decay";
        u.weight_decay = INFINITY;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_BAD_RULE:
        *what = "update unknown rule";
        u.rule = (zt_update_rule)9;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_MOMENTUM_NO_STATE:
        *what = "update momentum without state";
        u.rule = ZT_UPDATE_MOMENTUM;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_MOMENTUM_BETA:
        *what = "update momentum beta1 1.5";
        u.rule = ZT_UPDATE_MOMENTUM;
        u.beta1 = 1.5f;
        return be->ops->update(be, a, ZT_F32, 0, 8, state, &u);
    case ZT_ZO_UPDATE_ADAMM_EPS:
        *what = "update adamm eps 0";
        u.rule = ZT_UPDATE_ADAMM;
        u.eps = 0.0f;
        return be->ops->update(be, a, ZT_F32, 0, 8, state, &u);
    case ZT_ZO_UPDATE_ADAMM_BETA2:
        *what = "update adamm beta2 NaN";
        u.rule = ZT_UPDATE_ADAMM;
        u.beta2 = NAN;
        return be->ops->update(be, a, ZT_F32, 0, 8, state, &u);
    case ZT_ZO_UPDATE_STATE_OVERLAP:
        *what = "update state overlapping theta";
        u.rule = ZT_UPDATE_ADAMM;
        return be->ops->update(be, state + 4, ZT_F32, 0, 8, state, &u);
    case ZT_ZO_UPDATE_NEGATIVE_TERMS:
        *what = "update negative n_terms";
        u.grad.n_terms = -3;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_BAD_DIST:
        *what = "update unknown distribution";
        u.grad.dist = (zt_dist)2;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_UPDATE_NAN_COEFF:
        *what = "update NaN coefficient";
        u.grad.n_terms = 2;
        return be->ops->update(be, a, ZT_F32, 0, 8, NULL, &u);
    case ZT_ZO_ERR_CALLS:
        break;
    }
    *what = "?";
    return ZT_ERR_INTERNAL;
}

static inline void zt_zo_parity_errors(zt_backend *ref, zt_backend *dut) {
    float zeros[24];
    memset(zeros, 0, sizeof zeros);
    for (int call = 0; call < ZT_ZO_ERR_CALLS; call++) {
        zt_status status[2];
        char text[2][512];
        const char *what = "?";
        for (int s = 0; s < 2; s++) {
            zt_backend *be = s == 0 ? ref : dut;
            zt_zo_err_bufs bufs;
            memset(&bufs, 0, sizeof bufs);
            if (!zt_pbuf_make(be, &bufs.a, zeros, 16 * sizeof(float), "a") ||
                !zt_pbuf_make(be, &bufs.b, zeros, 16 * sizeof(float), "b") ||
                !zt_pbuf_make(be, &bufs.state, zeros, 24 * sizeof(float), "state")) {
                status[s] = ZT_ERR_INTERNAL;
                snprintf(text[s], sizeof text[s], "buffers");
            } else {
                status[s] = zt_zo_err_run(be, &bufs, (zt_zo_err_call)call, &what);
                snprintf(text[s], sizeof text[s], "%s", status[s] == ZT_OK ? "" : zt_last_error());
                /* Nothing written: the op failed before any launch. */
                zt_pbuf_check_input(&bufs.a, zeros, what);
                zt_pbuf_check_input(&bufs.b, zeros, what);
                zt_pbuf_check_input(&bufs.state, zeros, what);
            }
            zt_pbuf_free(&bufs.a);
            zt_pbuf_free(&bufs.b);
            zt_pbuf_free(&bufs.state);
        }
        zt_parity_same_error("zo error", what, status[0], text[0], status[1], text[1]);
    }
}

// ---------------------------------------------------------------------------------------------
// the probes: the kernels' RNG against the CPU's and cuRAND's, z_sumsq on several grids

static inline void zt_zo_probe_checks(zt_backend *ref, zt_backend *dut, zt_prng *r,
                                      const zt_zo_mode *mode) {
    (void)ref;
    enum { N_KEYS = 4, N_BLOCKS = 48, N = N_KEYS * N_BLOCKS };
    const uint64_t keys4[N_KEYS] = {0, ~0ull, zt_tensor_key(20250607, 3), zt_prng_next(r)};
    /* Both sides of every counter boundary: the 2^16 subsequences, 2^32 blocks (the counter's
     * second word), and far out. */
    /* clang-format off */
    static const uint64_t edges[] = {0x0, 0x1, 0x2, 0x3, 0xFFFF, 0x10000, 0x10001, 0x1FFFF,
                                     0x40003, 0xFFFFFFFF, 0x100000000, 0x10000FFFF,
                                     0x10000003039, 0xFFFFFFFFFFFF, 0x1000000000000007,
                                     0x3FFFFFFFFFFFFFFF};
    /* Rademacher z packs 32 blocks into one Philox block: both sides of its first Philox block
     * and of its counter's subsequence (Philox block 2^16) and second-word (2^48) wraps. */
    static const uint64_t packed_edges[] = {0x1F, 0x20, 0x1FFFFF, 0x200000, 0x1FFFFFFFFFFFFF,
                                            0x20000000000000};
    /* clang-format on */
    uint64_t blocks48[N_BLOCKS];
    for (int i = 0; i < N_BLOCKS; i++)
        blocks48[i] = i < 16   ? edges[i]
                      : i < 22 ? packed_edges[i - 16]
                               : zt_prng_next(r) >> (2 + (unsigned)(i % 40));
    uint64_t keys[N], blocks[N];
    for (int k = 0; k < N_KEYS; k++)
        for (int b = 0; b < N_BLOCKS; b++) {
            keys[k * N_BLOCKS + b] = keys4[k];
            blocks[k * N_BLOCKS + b] = blocks48[b];
        }
    zt_pbuf b_keys = {0}, b_blocks = {0}, b_out = {0};
    uint32_t *out = (uint32_t *)malloc((size_t)N * ZT_PROBE_WORDS * sizeof(uint32_t));
    int ok = zt_pbuf_make(dut, &b_keys, keys, sizeof keys, "keys") &&
             zt_pbuf_make(dut, &b_blocks, blocks, sizeof blocks, "blocks") &&
             zt_pbuf_make(dut, &b_out, NULL, (size_t)N * ZT_PROBE_WORDS * sizeof(uint32_t), "out");
    if (ok) {
        zt_status s = zt_zo_probe_rng(dut, (uint32_t *)zt_pbuf_ptr(&b_out),
                                      (const uint64_t *)zt_pbuf_ptr(&b_keys),
                                      (const uint64_t *)zt_pbuf_ptr(&b_blocks), N);
        ZT_CHECK(s == ZT_OK, "probe rng: %s", zt_last_error());
        zt_pbuf_fetch(&b_out, out, "probe rng");
        ok = s == ZT_OK;
    }
    if (ok) {
        int bits_bad = 0, sr_bad = 0, rk_bad = 0, rk_sr_bad = 0, gauss_bad = 0;
        int packed_bad = 0, rademacher_rk_bad = 0, rademacher_key_bad = 0;
        int normal_identical = 0, normal_bad = 0;
        double worst_normal = 0.0, max_normal_diff = 0.0, bound_at_max = 0.0;
        for (int i = 0; i < N; i++) {
            const uint32_t *w = out + (size_t)i * ZT_PROBE_WORDS;
            const zt_u32x4 z = zt_z_bits_block4(keys[i], blocks[i]);
            const zt_u32x4 sr = zt_sr_bits_block4(keys[i], blocks[i]);
            const zt_f32x4 gauss = zt_z_gauss_block4(keys[i], blocks[i]);
            const uint32_t zw[4] = {z.x, z.y, z.z, z.w}, srw[4] = {sr.x, sr.y, sr.z, sr.w};
            const float gw[4] = {gauss.x, gauss.y, gauss.z, gauss.w};
            /* Rademacher: elements 4b + l are bits 4 (b % 8) + l of word (b / 8) % 4 of
             * cuRAND's curand4 at Philox block b / 32 (docs/spec.md §5.9), -1 where set; those
             * words must also be the CPU's. */
            const zt_u32x4 packed = zt_z_bits_block4(keys[i], blocks[i] / 32);
            const uint32_t packed_w[4] = {packed.x, packed.y, packed.z, packed.w};
            const uint32_t curand_word = w[ZT_PROBE_CURAND_PACKED + (blocks[i] / 8) % 4];
            for (int l = 0; l < 4; l++) {
                packed_bad += w[ZT_PROBE_CURAND_PACKED + l] != packed_w[l];
                const unsigned bit = (unsigned)(4 * (blocks[i] % 8)) + (unsigned)l;
                const float sign = ((curand_word >> bit) & 1u) ? -1.0f : 1.0f;
                rademacher_rk_bad += w[ZT_PROBE_RADEMACHER_RK + l] != zt_f32_bits(sign);
                rademacher_key_bad += w[ZT_PROBE_RADEMACHER_KEY + l] != zt_f32_bits(sign);
            }
            for (int l = 0; l < 4; l++) {
                bits_bad += w[ZT_PROBE_Z_BITS + l] != zw[l];
                sr_bad += w[ZT_PROBE_SR_BITS + l] != srw[l];
                rk_bad += w[ZT_PROBE_ROUND_KEY_BITS + l] != zw[l];
                rk_sr_bad += w[ZT_PROBE_ROUND_KEY_SR + l] != srw[l];
                /* The engine's normal from device code: bit for bit, on any device. */
                const float device_z = zt_bits_f32(w[ZT_PROBE_Z_GAUSS + l]);
                gauss_bad += zt_f32_bits(device_z) != zt_f32_bits(gw[l]);
                /* curand_normal4 is cuRAND's transform of the same words: within the bound of
                 * tests/rng/curand_normal_bound.h of the engine's (the CPU's) normal. */
                const float normal = zt_bits_f32(w[ZT_PROBE_CURAND_GAUSS + l]);
                const double diff = fabs((double)normal - gw[l]);
                const double bound = zt_curand_normal_bound(zw[l & 2], zw[(l & 2) + 1], gw[l],
                                                            normal, mode->curand_build);
                normal_identical += zt_f32_bits(normal) == zt_f32_bits(gw[l]);
                if (diff > max_normal_diff) {
                    max_normal_diff = diff;
                    bound_at_max = bound;
                }
                if (!(diff / bound <= worst_normal)) worst_normal = diff / bound;
                normal_bad += !(diff <= bound);
            }
        }
        printf("  %-9s %d blocks x 4 words from device code: kernels' curand4 z %d bad, SR %d bad; "
               "round-key Philox z %d bad, SR %d bad\n",
               "rng", N, bits_bad, sr_bad, rk_bad, rk_sr_bad);
        printf("  %-9s engine normals vs CPU: %d of %d differ; curand_normal4 (%s build) vs "
               "engine: %d of %d bit-identical, max |diff| %.3g (its bound %.3g; over all words "
               "%.3g), max |diff| / bound %.2g\n",
               "rng", gauss_bad, N * 4,
               mode->curand_build == ZT_CURAND_DEVICE_BUILD ? "device" : "host", normal_identical,
               N * 4, max_normal_diff, bound_at_max, zt_curand_normal_bound_max(mode->curand_build),
               worst_normal);
        ZT_CHECK(bits_bad == 0 && sr_bad == 0,
                 "probe: the kernels' curand_init + curand4 words differ from the CPU's");
        ZT_CHECK(rk_bad == 0 && rk_sr_bad == 0,
                 "probe: the round-key Philox in device code differs from the CPU's");
        ZT_CHECK(gauss_bad == 0, "probe: %d kernel normals differ from the CPU's", gauss_bad);
        printf("  %-9s Rademacher z from device code vs the bits of cuRAND's curand4: round-key "
               "form %d of %d bad, key form %d bad; those words vs the CPU's %d bad\n",
               "rng", rademacher_rk_bad, N * 4, rademacher_key_bad, packed_bad);
        ZT_CHECK(rademacher_rk_bad == 0 && rademacher_key_bad == 0 && packed_bad == 0,
                 "probe: Rademacher z in device code is not the bits of cuRAND's words at the "
                 "packed address (%d, %d bad; %d words differ from the CPU's)",
                 rademacher_rk_bad, rademacher_key_bad, packed_bad);
        ZT_CHECK(normal_bad == 0,
                 "probe: %d curand_normal4 values beyond the bound of the "
                 "engine's",
                 normal_bad);
    }
    zt_pbuf_free(&b_keys);
    zt_pbuf_free(&b_blocks);
    zt_pbuf_free(&b_out);
    free(out);

    /* z_sumsq's bits depend on n alone: the same on any grid. */
    const size_t sizes[] = {16384 * 5 + 3, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const uint64_t seed = zt_prng_next(r);
        double by_op = NAN;
        zt_status s = dut->ops->z_sumsq(dut, &by_op, seed, 9, sizes[k], ZT_DIST_GAUSSIAN);
        ZT_CHECK(s == ZT_OK, "z_sumsq: %s", zt_last_error());
        const unsigned grids[] = {1, 2, 3, 7};
        int same = 0;
        for (size_t g = 0; g < sizeof grids / sizeof grids[0]; g++) {
            double by_grid = NAN;
            s = zt_zo_probe_sumsq(dut, &by_grid, seed, 9, sizes[k], grids[g]);
            ZT_CHECK(s == ZT_OK, "probe sumsq: %s", zt_last_error());
            ZT_CHECK(memcmp(&by_grid, &by_op, sizeof by_op) == 0,
                     "z_sumsq n=%zu: %u blocks give %.17g, the op %.17g", sizes[k], grids[g],
                     by_grid, by_op);
            same += memcmp(&by_grid, &by_op, sizeof by_op) == 0;
        }
        printf("  %-9s n=%zu on grids of 1, 2, 3, 7 blocks: %d of 4 bit-identical to the op\n",
               "z_sumsq", sizes[k], same);
    }
}

// ---------------------------------------------------------------------------------------------
// scratch planning: what scratch_bytes promises is what the ops take

static inline size_t zt_zo_scratch_now(void) {
    zt_mem_stats stats;
    zt_mem_stats_get(&stats);
    return stats.current[ZT_MEM_SCRATCH];
}

static inline void zt_zo_scratch_checks(zt_status (*create)(int device, zt_backend **out),
                                        int device) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(create(device, &be));
    ZT_CHECK(be->ops->scratch_bytes != NULL && be->ops->reserve_scratch != NULL,
             "%s: no scratch planning ops", be->ops->name);
    if (be->ops->scratch_bytes == NULL || be->ops->reserve_scratch == NULL) {
        be->ops->destroy(be);
        return;
    }
    const size_t base = zt_zo_scratch_now(); /* the backend's own fixed slots */
    zt_scratch_query sumsq = {.op = ZT_SCRATCH_Z_SUMSQ, .n_elems = 100003};
    const size_t sumsq_bytes = be->ops->scratch_bytes(be, &sumsq);
    double out = 0.0;
    ZT_CHECK_OK(be->ops->z_sumsq(be, &out, 5, 6, 100003, ZT_DIST_GAUSSIAN));
    const size_t after_sumsq = zt_zo_scratch_now() - base;
    ZT_CHECK(after_sumsq == sumsq_bytes, "z_sumsq took %zu bytes of scratch, planned %zu",
             after_sumsq, sumsq_bytes);

    /* linear with an f16 weight widens one chunk of rows; with f32 it takes none. */
    const int n_rows = 3, in_features = 300, out_features = 700;
    zt_scratch_query linear = {.op = ZT_SCRATCH_LINEAR,
                               .in_features = in_features,
                               .out_features = out_features,
                               .weight_dtype = ZT_F16,
                               .bias_dtype = ZT_F32,
                               .n_rows = n_rows};
    const size_t linear_bytes = be->ops->scratch_bytes(be, &linear);
    linear.weight_dtype = ZT_F32;
    ZT_CHECK(be->ops->scratch_bytes(be, &linear) == 0, "linear with an f32 weight plans scratch");
    zt_pbuf x = {0}, y = {0}, w = {0};
    if (zt_pbuf_make(be, &x, NULL, (size_t)n_rows * in_features * sizeof(float), "x") &&
        zt_pbuf_make(be, &y, NULL, (size_t)n_rows * out_features * sizeof(float), "y") &&
        zt_pbuf_make(be, &w, NULL, (size_t)out_features * in_features * 2, "w")) {
        const zt_weight weight = {zt_pbuf_ptr(&w), ZT_F16}, no_bias = {NULL, ZT_F32};
        ZT_CHECK_OK(be->ops->linear(be, (float *)zt_pbuf_ptr(&y), (const float *)zt_pbuf_ptr(&x),
                                    weight, no_bias, n_rows, in_features, out_features, 0));
        ZT_CHECK_OK(be->ops->sync(be));
    }
    zt_pbuf_free(&x);
    zt_pbuf_free(&y);
    zt_pbuf_free(&w);
    const size_t after_linear = zt_zo_scratch_now() - base;
    const size_t expected = linear_bytes > sumsq_bytes ? linear_bytes : sumsq_bytes;
    ZT_CHECK(after_linear == expected, "after linear: %zu bytes of scratch, planned max %zu",
             after_linear, expected);

    zt_scratch_query attention = {.op = ZT_SCRATCH_ATTENTION, .seq_len = 1024, .head_dim = 128};
    const size_t attention_bytes = be->ops->scratch_bytes(be, &attention);

    /* reserve_scratch reaches the peak up front; later ops within it grow nothing. */
    const size_t big = 3 * expected + 2;
    ZT_CHECK_OK(be->ops->reserve_scratch(be, big));
    const size_t reserved = zt_zo_scratch_now() - base;
    ZT_CHECK(reserved >= big && reserved < big + sizeof(float), "reserved %zu for %zu", reserved,
             big);
    ZT_CHECK_OK(be->ops->z_sumsq(be, &out, 5, 6, 100003, ZT_DIST_GAUSSIAN));
    ZT_CHECK_OK(be->ops->reserve_scratch(be, 0));
    ZT_CHECK(zt_zo_scratch_now() - base == reserved, "scratch grew within a reservation");
    printf("  %-9s z_sumsq(100003) %zu B, linear f16 300x700 %zu B, attention %zu B; taken as "
           "planned, reserve %zu -> %zu B\n",
           "scratch", sumsq_bytes, linear_bytes, attention_bytes, big, reserved);
    be->ops->destroy(be);
}

// ---------------------------------------------------------------------------------------------
// Rademacher chunks

/* The warp-chunk mapping of Rademacher z (kernels/cuda/rademacher.cuh: a warp per 4096 elements,
 * lane l drawing Philox block l of the chunk, the others' words by shuffle) against the CPU, bit
 * for bit: slices starting off a 128-element (Philox block) and a 4096-element (chunk) boundary,
 * slices shorter than a Philox block, lengths not a multiple of 4, slices spanning several chunks
 * and more chunks than the executor's grid has warps (ZT_CUDA_ZO_MAX_BLOCKS = 5 blocks of 8 warps
 * in tests/cudaemu/cudaemu.h, so the chunk loop wraps), every dtype pair, aligned or not, one and
 * two terms; the variants kernel with one to four variants; update for every rule and dtype, SR
 * on and off. */
static inline void zt_zo_parity_rademacher_chunks(zt_backend *ref, zt_backend *dut, zt_prng *r) {
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    const size_t grid_elems = (size_t)5 * 8 * 4096; /* a chunk per warp of the executor's grid */
    const struct {
        size_t n;
        uint64_t offset;
    } shapes[] = {{1, 127},
                  {5, 126},
                  {127, 1},
                  {128, 128},
                  {131, 4093},
                  {509, 77},
                  {4096, 4096 * 3},
                  {4097, 4096 - 2},
                  {9001, 130},
                  {12288, 127},
                  {grid_elems + 4101, 4096 * 7 + 65}};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0];
    size_t index = 0;
    for (int si = 0; si < 3; si++)
        for (int di = 0; di < 3; di++)
            for (int aligned = 0; aligned < 2; aligned++, index++) {
                zt_zo_perturb_case c;
                memset(&c, 0, sizeof c);
                c.src_dtype = dtypes[si];
                c.dst_dtype = dtypes[di];
                c.in_place = si == di && index % 2;
                /* the largest shape once: the executor walks it slowly */
                const size_t shape = index == 5 ? n_shapes - 1 : index % (n_shapes - 1);
                c.n = shapes[shape].n;
                c.offset = shapes[shape].offset;
                c.dist = ZT_DIST_RADEMACHER;
                c.n_terms = 1 + (int)(index % 2);
                c.specials = ZT_ZO_SPECIALS_NONE;
                const uint64_t lane = c.offset % 4 + (aligned ? 0 : 1);
                c.src_shift = (size_t)(lane % 4) * zt_dtype_size(c.src_dtype);
                c.dst_shift = (size_t)(c.offset % 4) * zt_dtype_size(c.dst_dtype);
                zt_zo_perturb_one(ref, dut, r, &c);
            }
    /* Variants: the fused kernel with 1, 2, 3 and 4 variants of one seed. */
    static const size_t lengths[] = {3, 130, 4097, 12289};
    const size_t n_sets = sizeof zt_zo_variant_sets / sizeof zt_zo_variant_sets[0];
    index = 0;
    for (size_t set = 0; set < n_sets; set++) {
        const zt_zo_variant_set *vs = &zt_zo_variant_sets[set];
        if (vs->n_variants > 4 || strcmp(vs->name, "mixed") == 0) continue;
        for (int di = 0; di < 3; di++, index++)
            zt_zo_perturb_variants_one(ref, dut, r, vs, dtypes[index % 3], dtypes[di],
                                       ZT_DIST_RADEMACHER, lengths[index % 4],
                                       index % 3 == 1 ? 2 : 0);
    }
    /* Update: every rule, dtype and rounding, one or two terms, aligned and not. */
    static const size_t sizes[] = {1, 6, 127, 129, 4096, 4099, 8195, 12290};
    index = 0;
    for (int rule = ZT_UPDATE_SGD; rule <= ZT_UPDATE_ADAMM; rule++)
        for (int d = 0; d < 3; d++)
            for (int sr = 0; sr < (dtypes[d] == ZT_F32 ? 1 : 2); sr++, index++) {
                zt_zo_update_case c;
                memset(&c, 0, sizeof c);
                c.rule = (zt_update_rule)rule;
                c.dtype = dtypes[d];
                c.stochastic = sr;
                c.dist = ZT_DIST_RADEMACHER;
                c.n = sizes[index % (sizeof sizes / sizeof sizes[0])];
                c.n_terms = 1 + (int)(index % 2);
                c.n_steps = 2;
                c.lr = 1e-3f;
                c.weight_decay = index % 3 ? 0.01f : 0.0f;
                c.theta_shift = index % 4 == 3 ? zt_dtype_size(c.dtype) : 0;
                zt_zo_run_update_case(ref, dut, r, &c);
            }
    /* more chunks than the grid's warps */
    const zt_zo_update_case wrap = {ZT_UPDATE_MOMENTUM,
                                    ZT_BF16,
                                    1,
                                    ZT_DIST_RADEMACHER,
                                    grid_elems + 8193,
                                    1,
                                    1,
                                    1e-3f,
                                    0.0f,
                                    0,
                                    0,
                                    0};
    zt_zo_run_update_case(ref, dut, r, &wrap);
}

// ---------------------------------------------------------------------------------------------

static inline void zt_zo_parity_run(zt_backend *ref, zt_backend *dut, uint64_t seed,
                                    const zt_zo_mode *mode) {
    zt_prng r = {seed ? seed : 1};
    printf("perturbation ops of %s against %s, seed %llu, every case bit for bit (Gaussian z "
           "included)\n",
           dut->ops->name, ref->ops->name, (unsigned long long)seed);
    double start = zt_parity_now();
    zt_zo_probe_checks(ref, dut, &r, mode);
    printf("  %-9s %.2f s\n", "probes", zt_parity_now() - start);
    start = zt_parity_now();
    zt_zo_parity_perturb(ref, dut, &r);
    printf("  %-9s %.2f s\n", "perturb", zt_parity_now() - start);
    start = zt_parity_now();
    zt_zo_parity_perturb_variants(ref, dut, &r);
    printf("  %-9s %.2f s\n", "variants", zt_parity_now() - start);
    start = zt_parity_now();
    zt_zo_parity_sumsq(ref, dut, &r);
    printf("  %-9s %.2f s\n", "z_sumsq", zt_parity_now() - start);
    start = zt_parity_now();
    zt_zo_parity_update(ref, dut, &r);
    printf("  %-9s %.2f s\n", "update", zt_parity_now() - start);
    start = zt_parity_now();
    zt_zo_parity_rademacher_chunks(ref, dut, &r);
    printf("  %-9s %.2f s\n", "chunks", zt_parity_now() - start);
    zt_zo_parity_errors(ref, dut);
    printf("summary (perturbation ops):\n");
    for (int i = 0; i < zt_zo_n_stats; i++)
        printf("  %-9s %2d cases, %2d bit-identical, worst %.2g ulp, worst |diff|/bound %.2g\n",
               zt_zo_stats[i].op, zt_zo_stats[i].n_cases, zt_zo_stats[i].n_bitwise,
               zt_zo_stats[i].worst_ulps, zt_zo_stats[i].worst_ratio);
}

#endif
