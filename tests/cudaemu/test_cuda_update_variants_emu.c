/* update_perturb_variants of the CUDA backend (kernels/cuda/update.cu: the deferred update fused
 * into the next step's staging), executed by the host executor, against the CPU backend's
 * update followed by its perturb_variants (the CPU's fused op equals that composition:
 * tests/ops/test_update_variants_cpu.c): theta, the optimizer state, the non-finite count and
 * every staged variant bit for bit, for every rule, storage dtype, staged dtype, distribution,
 * with and without stochastic rounding, on variant sets the fused kernel takes (one seed, up to
 * four variants) and sets it hands to update + perturb_variants.
 *
 *   test_cuda_update_variants_emu        CUDAEMU_WORKERS=n sets the host threads that run blocks
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

enum { MAX_K = 5 };

static uint64_t rng_state = 0xc0dae3e1a7edull;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_float(double lo, double hi) {
    return (float)(lo + (hi - lo) * ((double)(rng_next() >> 11) * 0x1p-53));
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    ZT_REQUIRE(p != NULL, "malloc of %zu bytes", n);
    return p;
}

/* A backend buffer holding a copy of host bytes. */
static void *device_copy(zt_backend *be, const void *host, size_t n) {
    void *d = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, n ? n : 1, ZT_MEM_SCRATCH, &d));
    if (n) ZT_REQUIRE_OK(be->ops->upload(be, d, host, n));
    return d;
}

static void fetch_free(zt_backend *be, void *d, void *host, size_t n) {
    if (n) ZT_REQUIRE_OK(be->ops->download(be, host, d, n));
    be->ops->free(be, d, n ? n : 1, ZT_MEM_SCRATCH);
}

static int state_rows(zt_update_rule rule) {
    return rule == ZT_UPDATE_MOMENTUM ? 1 : rule == ZT_UPDATE_ADAMM ? 3 : 0;
}

/* Variant sets: k's terms by seed index (into a pool of three) and coefficient. */
static const struct {
    const char *name;
    int n_variants, n_terms[MAX_K], seed_of[MAX_K][2];
    float coeff[MAX_K][2];
} SETS[] = {
    {"+eps/-eps (fused)", 2, {1, 1}, {{0}, {0}}, {{1.0f}, {-1.0f}}},
    {"one variant (fused)", 1, {1}, {{0}}, {{0.5f}}},
    {"four of one seed (fused)", 4, {1, 1, 1, 1}, {{0}, {0}, {0}, {0}}, {{1}, {-1}, {2}, {-3}}},
    {"three of one seed (fused)", 3, {1, 1, 1}, {{0}, {0}, {0}}, {{-1}, {0.5f}, {4}}},
    {"mixed seeds (update + perturb_variants)",
     3,
     {1, 2, 0},
     {{1}, {0, 2}, {0}},
     {{1}, {-1, 0.5f}}},
    {"five (update + perturb_variants)", 5, {1, 1, 1, 1, 1}, {{0}}, {{1}, {-1}, {1}, {-1}, {2}}},
};

static size_t n_cases, n_moved;

typedef struct {
    size_t n;
    zt_dtype dtype, staged;
    zt_update_rule rule;
    int stochastic, n_update_terms, set;
    zt_dist dist, variant_dist;
    float lr;
} case_desc;

/* One case on both backends: the CPU's update then perturb_variants, the dut's fused op. */
static void run_case(zt_backend *cpu, zt_backend *dut, const case_desc *c) {
    char what[200];
    snprintf(what, sizeof what, "n=%zu %s staged %s rule %d sr %d terms %d %s %s/%s", c->n,
             zt_dtype_name(c->dtype), zt_dtype_name(c->staged), (int)c->rule, c->stochastic,
             c->n_update_terms, SETS[c->set].name, c->dist ? "rad" : "gauss",
             c->variant_dist ? "rad" : "gauss");
    const size_t n = c->n, theta_bytes = n * zt_dtype_size(c->dtype);
    const size_t staged_bytes = n * zt_dtype_size(c->staged);
    const size_t state_bytes = (size_t)state_rows(c->rule) * n * sizeof(float);
    void *theta0 = xmalloc(theta_bytes);
    for (size_t i = 0; i < n; i++)
        zt_store_rne(theta0, c->dtype, i, rng_float(-1.0, 1.0));
    float *state0 = xmalloc(state_bytes);
    for (size_t i = 0; i < state_bytes / sizeof(float); i++)
        state0[i] = i >= n ? rng_float(0.0, 0.1) : rng_float(-0.1, 0.1); /* v, vhat >= 0 */

    zt_direction update_terms[2] = {{rng_next(), rng_float(-2, 2)}, {rng_next(), rng_float(-2, 2)}};
    zt_update u;
    memset(&u, 0, sizeof u);
    u.grad = (zt_perturbation){update_terms, c->n_update_terms, c->dist, 1.0f};
    u.rule = c->rule;
    u.lr = c->lr;
    u.weight_decay = 0.01f;
    u.beta1 = 0.9f;
    u.beta2 = 0.99f;
    u.eps = 1e-3f;
    u.stochastic_rounding = c->stochastic;
    u.rounding_seed = rng_next();
    const uint64_t seeds[3] = {rng_next(), rng_next(), rng_next()};
    const int k_count = SETS[c->set].n_variants;
    zt_direction terms[MAX_K][2];
    zt_perturbation p[MAX_K];
    for (int k = 0; k < k_count; k++) {
        for (int t = 0; t < SETS[c->set].n_terms[k]; t++)
            terms[k][t] =
                (zt_direction){seeds[SETS[c->set].seed_of[k][t]], SETS[c->set].coeff[k][t]};
        p[k] = (zt_perturbation){terms[k], SETS[c->set].n_terms[k], c->variant_dist, 1e-2f};
    }
    const uint32_t id = (uint32_t)(rng_next() % 300);

    void *host_theta[2], *host_state[2], *host_var[2][MAX_K];
    unsigned long long nonfinite[2] = {0, 0};
    zt_status status[2];
    for (int side = 0; side < 2; side++) {
        zt_backend *be = side == 0 ? cpu : dut;
        void *theta = device_copy(be, theta0, theta_bytes);
        void *state = device_copy(be, state0, state_bytes);
        void *dst[MAX_K];
        void *nan_bytes = xmalloc(staged_bytes);
        memset(nan_bytes, 0xff, staged_bytes);
        for (int k = 0; k < k_count; k++)
            dst[k] = device_copy(be, nan_bytes, staged_bytes);
        free(nan_bytes);
        u.n_nonfinite = &nonfinite[side];
        float *rule_state = state_bytes ? state : NULL;
        if (side == 0) {
            status[side] = be->ops->update(be, theta, c->dtype, id, n, rule_state, &u);
            if (status[side] == ZT_OK)
                status[side] = be->ops->perturb_variants(
                    be, dst, c->staged, (zt_weight){theta, c->dtype}, id, 0, n, p, k_count);
        } else {
            status[side] = be->ops->update_perturb_variants(be, theta, c->dtype, id, n, rule_state,
                                                            &u, dst, c->staged, p, k_count);
        }
        ZT_CHECK(status[side] == ZT_OK, "%s %s: %s", what, be->ops->name, zt_last_error());
        ZT_REQUIRE_OK(be->ops->sync(be));
        host_theta[side] = xmalloc(theta_bytes);
        host_state[side] = xmalloc(state_bytes);
        fetch_free(be, theta, host_theta[side], theta_bytes);
        fetch_free(be, state, host_state[side], state_bytes);
        for (int k = 0; k < k_count; k++) {
            host_var[side][k] = xmalloc(staged_bytes);
            fetch_free(be, dst[k], host_var[side][k], staged_bytes);
        }
    }
    ZT_CHECK(memcmp(host_theta[0], host_theta[1], theta_bytes) == 0, "%s: theta differs", what);
    ZT_CHECK(memcmp(host_state[0], host_state[1], state_bytes) == 0, "%s: state differs", what);
    ZT_CHECK(nonfinite[0] == nonfinite[1], "%s: %llu non-finite, the CPU %llu", what, nonfinite[1],
             nonfinite[0]);
    int n_diff = 0;
    for (int k = 0; k < k_count; k++)
        n_diff += memcmp(host_var[0][k], host_var[1][k], staged_bytes) != 0;
    ZT_CHECK(n_diff == 0, "%s: %d of %d variants differ", what, n_diff, k_count);
    for (size_t i = 0; i < theta_bytes; i++)
        if (((uint8_t *)host_theta[0])[i] != ((uint8_t *)theta0)[i]) {
            n_moved++;
            break;
        }
    for (int side = 0; side < 2; side++) {
        free(host_theta[side]);
        free(host_state[side]);
        for (int k = 0; k < k_count; k++)
            free(host_var[side][k]);
    }
    free(theta0);
    free(state0);
    n_cases++;
}

int main(void) {
    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(0, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    static const size_t lengths[] = {1, 7, 1024, 4099};
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    const int n_sets = (int)(sizeof SETS / sizeof SETS[0]);
    int i = 0;
    for (int di = 0; di < 3; di++)
        for (int rule = 0; rule < 4; rule++)
            for (int set = 0; set < n_sets; set++, i++) {
                case_desc c;
                c.n = lengths[i % 4];
                c.dtype = dtypes[di];
                c.staged = (i % 2 && c.dtype != ZT_F32) ? c.dtype : ZT_F32;
                c.rule = (zt_update_rule)rule;
                c.stochastic = c.dtype != ZT_F32 && i % 3 != 0;
                c.n_update_terms = i % 7 == 0 ? 0 : 1 + i % 2;
                c.set = set;
                c.dist = i % 4 == 1 ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
                /* mostly the update's; sometimes another (the kernel must then hand it over) */
                c.variant_dist = i % 9 == 4 ? (zt_dist)(1 - c.dist) : c.dist;
                c.lr = 1e-3f;
                run_case(cpu, emu, &c);
            }
    /* Rademacher z through the warp chunks (kernels/cuda/rademacher.cuh): 1 to 4 fused variants,
     * with and without update terms, lengths off the 128- and 4096-element boundaries and past
     * the executor grid's 40 warps of chunks. */
    static const size_t chunk_lengths[] = {5, 130, 4097, 12291, (size_t)40 * 4096 + 4103};
    for (int di = 0; di < 3; di++)
        for (int set = 0; set < 4; set++, i++) {
            case_desc c;
            c.n = chunk_lengths[(di * 4 + set) % 4];
            if (di == 2 && set == 3) c.n = chunk_lengths[4];
            c.dtype = dtypes[di];
            c.staged = set % 2 ? c.dtype : ZT_F32;
            c.rule = (zt_update_rule)((di + set) % 4);
            c.stochastic = c.dtype != ZT_F32 && set % 2 == 0;
            c.n_update_terms = set == 1 ? 0 : 1 + set % 2;
            c.set = set;
            c.dist = c.variant_dist = ZT_DIST_RADEMACHER;
            c.lr = 1e-3f;
            run_case(cpu, emu, &c);
        }
    const case_desc still = {4099, ZT_BF16, ZT_F32,           ZT_UPDATE_SGD,    1,
                             2,    0,       ZT_DIST_GAUSSIAN, ZT_DIST_GAUSSIAN, 0.0f};
    run_case(cpu, emu, &still);
    const case_desc overflow = {4099, ZT_F16, ZT_F16,           ZT_UPDATE_SGD,    0,
                                1,    0,      ZT_DIST_GAUSSIAN, ZT_DIST_GAUSSIAN, 1e5f};
    run_case(cpu, emu, &overflow);
    ZT_CHECK(n_moved > 0, "no case moved a weight: the comparison proves nothing");
    printf("update_perturb_variants: %zu cases on the executor bit-identical to the CPU's update + "
           "perturb_variants (%zu moved theta)\n",
           n_cases, n_moved);
    emu->ops->destroy(emu);
    cpu->ops->destroy(cpu);
    return zt_test_finish("test_cuda_update_variants_emu");
}
