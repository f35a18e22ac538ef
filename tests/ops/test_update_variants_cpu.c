/* update_perturb_variants (kernels/cpu/update_variants.c), the deferred update fused into the next
 * step's staging: theta, the optimizer state, the non-finite count and every staged variant must
 * be bit for bit what update followed by perturb_variants give (each of which
 * tests/ops/test_perturb_cpu.c checks against per-element references), for every rule, storage
 * and staged dtype, with and without stochastic rounding, on variant sets that fit the shared
 * draws and one that does not, and on 1, 2 and 3 threads. meson runs it once per z path
 * (ZT_CPU_RNG=portable, avx2, avx512; a path this CPU lacks falls back to the fastest). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common/dtype.h"
#include "cpu/cpu_backend.h"
#include "zt_test.h"

enum { MAX_K = 10, N_BACKENDS = 3 };

static zt_backend *backends[N_BACKENDS]; /* 1, 2 and 3 threads */

static uint64_t rng_state = 0xdefe44ed5eedull;

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

static void *copy_of(const void *src, size_t n) {
    void *p = xmalloc(n);
    memcpy(p, src, n);
    return p;
}

static int state_rows(zt_update_rule rule) {
    return rule == ZT_UPDATE_MOMENTUM ? 1 : rule == ZT_UPDATE_ADAMM ? 3 : 0;
}

/* The variant sets: variant k's terms take seeds (k + t) % n_seeds, t < n_terms[k]. */
static const struct {
    const char *name;
    int n_variants, n_seeds;
    int n_terms[MAX_K];
} SETS[] = {
    {"+eps/-eps", 2, 1, {1, 1}},
    {"three seeds, one variant without terms", 4, 3, {2, 3, 0, 1}},
    {"ten seeds (beyond the shared draws)", 10, 10, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
};

typedef struct case_desc {
    size_t n;
    zt_dtype dtype, staged;
    zt_update_rule rule;
    int stochastic, n_update_terms, set;
    zt_dist dist;
    float lr;
} case_desc;

static size_t n_moved_total, n_cases;

static void run_case(const case_desc *c) {
    char what[200];
    snprintf(what, sizeof what, "n=%zu %s staged %s rule %d sr %d update terms %d set '%s' %s",
             c->n, zt_dtype_name(c->dtype), zt_dtype_name(c->staged), (int)c->rule, c->stochastic,
             c->n_update_terms, SETS[c->set].name,
             c->dist == ZT_DIST_GAUSSIAN ? "gaussian" : "rademacher");
    const size_t n = c->n, theta_bytes = n * zt_dtype_size(c->dtype);
    const size_t staged_bytes = n * zt_dtype_size(c->staged);
    const size_t state_bytes = (size_t)state_rows(c->rule) * n * sizeof(float);

    void *theta0 = xmalloc(theta_bytes);
    for (size_t i = 0; i < n; i++)
        zt_store_rne(theta0, c->dtype, i, rng_float(-1.0, 1.0));
    if (n > 3) zt_store_rne(theta0, c->dtype, 3, -0.0f);
    float *state0 = xmalloc(state_bytes);
    for (size_t i = 0; i < state_bytes / sizeof(float); i++)
        state0[i] = i >= 2 * n ? rng_float(0.0, 0.2) : rng_float(-0.1, 0.1); /* vhat >= 0 */
    if (c->rule == ZT_UPDATE_ADAMM)
        for (size_t i = n; i < 2 * n; i++)
            state0[i] = fabsf(state0[i]); /* v >= 0 */

    zt_direction update_terms[2] = {{rng_next(), rng_float(-2.0, 2.0)},
                                    {rng_next(), rng_float(-2.0, 2.0)}};
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

    const int k_count = SETS[c->set].n_variants;
    uint64_t seeds[MAX_K];
    for (int i = 0; i < SETS[c->set].n_seeds; i++)
        seeds[i] = rng_next();
    zt_direction terms[MAX_K][3];
    zt_perturbation p[MAX_K];
    for (int k = 0; k < k_count; k++) {
        for (int t = 0; t < SETS[c->set].n_terms[k]; t++)
            terms[k][t] =
                (zt_direction){seeds[(k + t) % SETS[c->set].n_seeds], rng_float(-1.5, 1.5)};
        p[k] = (zt_perturbation){terms[k], SETS[c->set].n_terms[k], c->dist, 1e-2f};
    }
    const uint32_t id = (uint32_t)(rng_next() % 300);

    /* the reference: update, then perturb_variants of the updated theta (2 threads) */
    zt_backend *ref_be = backends[1];
    void *want_theta = copy_of(theta0, theta_bytes);
    float *want_state = copy_of(state0, state_bytes);
    void *want[MAX_K];
    for (int k = 0; k < k_count; k++)
        want[k] = xmalloc(staged_bytes);
    unsigned long long want_nonfinite = 0;
    u.n_nonfinite = &want_nonfinite;
    ZT_CHECK_OK(ref_be->ops->update(ref_be, want_theta, c->dtype, id, n,
                                    state_bytes ? want_state : NULL, &u));
    ZT_CHECK_OK(ref_be->ops->perturb_variants(
        ref_be, want, c->staged, (zt_weight){want_theta, c->dtype}, id, 0, n, p, k_count));
    size_t moved = 0;
    for (size_t i = 0; i < n; i++)
        moved += memcmp((char *)want_theta + i * zt_dtype_size(c->dtype),
                        (char *)theta0 + i * zt_dtype_size(c->dtype), zt_dtype_size(c->dtype)) != 0;
    n_moved_total += moved;

    for (int b = 0; b < N_BACKENDS; b++) {
        zt_backend *be = backends[b];
        void *theta = copy_of(theta0, theta_bytes);
        float *state = copy_of(state0, state_bytes);
        void *got[MAX_K];
        for (int k = 0; k < k_count; k++) {
            got[k] = xmalloc(staged_bytes);
            memset(got[k], 0xff, staged_bytes); /* NaN: an unwritten element fails */
        }
        unsigned long long nonfinite = 0;
        u.n_nonfinite = &nonfinite;
        ZT_CHECK_OK(be->ops->update_perturb_variants(be, theta, c->dtype, id, n,
                                                     state_bytes ? state : NULL, &u, got, c->staged,
                                                     p, k_count));
        ZT_CHECK(memcmp(theta, want_theta, theta_bytes) == 0, "%s, %d threads: theta differs", what,
                 b + 1);
        ZT_CHECK(memcmp(state, want_state, state_bytes) == 0, "%s, %d threads: state differs", what,
                 b + 1);
        ZT_CHECK(nonfinite == want_nonfinite, "%s, %d threads: %llu non-finite, want %llu", what,
                 b + 1, nonfinite, want_nonfinite);
        int n_diff = 0;
        for (int k = 0; k < k_count; k++)
            n_diff += memcmp(got[k], want[k], staged_bytes) != 0;
        ZT_CHECK(n_diff == 0, "%s, %d threads: %d of %d variants differ", what, b + 1, n_diff,
                 k_count);
        for (int k = 0; k < k_count; k++)
            free(got[k]);
        free(theta);
        free(state);
    }
    for (int k = 0; k < k_count; k++)
        free(want[k]);
    free(want_theta);
    free(want_state);
    free(theta0);
    free(state0);
    n_cases++;
}

static void test_against_update_then_variants(void) {
    static const size_t lengths[] = {1, 7, 1027, 70001};
    static const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    static const zt_update_rule rules[] = {ZT_UPDATE_SGD, ZT_UPDATE_SIGN, ZT_UPDATE_MOMENTUM,
                                           ZT_UPDATE_ADAMM};
    int i = 0;
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
        for (int di = 0; di < 3; di++)
            for (int ri = 0; ri < 4; ri++)
                for (int set = 0; set < 3; set++, i++) {
                    case_desc c;
                    c.n = lengths[li];
                    c.dtype = dtypes[di];
                    /* f32, or the stored half dtype as under --gemm half */
                    c.staged = (i % 2 && c.dtype != ZT_F32) ? c.dtype : ZT_F32;
                    c.rule = rules[ri];
                    c.stochastic = c.dtype != ZT_F32 && i % 3 != 0;
                    c.n_update_terms = i % 5 == 0 ? 0 : 1 + i % 2; /* 0: weight decay alone */
                    c.set = set;
                    c.dist = i % 4 == 1 ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
                    c.lr = 1e-3f;
                    run_case(&c);
                }
    /* lr 0 (the shadow-mode contract: no weight moves) and an lr that overflows f16 (the
     * non-finite count of the fused pass must be update's) */
    case_desc still = {4099, ZT_F16, ZT_F32, ZT_UPDATE_SGD, 1, 2, 0, ZT_DIST_GAUSSIAN, 0.0f};
    run_case(&still);
    case_desc overflow = {4099, ZT_F16, ZT_F16, ZT_UPDATE_SGD, 0, 1, 0, ZT_DIST_GAUSSIAN, 1e5f};
    run_case(&overflow);
    ZT_CHECK(n_moved_total > 0, "no case moved a weight: the comparison proves nothing");
    printf("update_perturb_variants: %zu cases bit-identical to update + perturb_variants on 1, "
           "2, 3 threads (%zu weights moved)\n",
           n_cases, n_moved_total);
}

static void expect_refused(zt_status got, const char *what) {
    ZT_CHECK(got == ZT_ERR_INVALID_ARG, "%s: got %s, want invalid argument", what,
             zt_status_name(got));
    ZT_CHECK(strncmp(zt_last_error(), "update_perturb_variants", 23) == 0,
             "%s: message '%s' lacks the op", what, zt_last_error());
}

static void test_refusals(void) {
    zt_backend *be = backends[1];
    float theta[16] = {0}, a[16] = {0}, b[16] = {0}, state[16] = {0};
    zt_direction term = {1, 1.0f};
    const zt_perturbation p[2] = {{&term, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                  {&term, 1, ZT_DIST_GAUSSIAN, 1.0f}};
    zt_update u;
    memset(&u, 0, sizeof u);
    u.grad = p[0];
    u.lr = 1.0f;
    u.rule = ZT_UPDATE_MOMENTUM;
    u.beta1 = 0.9f;
    void *onto_theta[2] = {a, theta + 2};
    void *onto_state[2] = {a, state};
    void *fine[2] = {a, b};
    expect_refused(be->ops->update_perturb_variants(be, theta, ZT_F32, 0, 8, state, &u, onto_theta,
                                                    ZT_F32, p, 2),
                   "a variant over theta");
    expect_refused(be->ops->update_perturb_variants(be, theta, ZT_F32, 0, 8, state, &u, onto_state,
                                                    ZT_F32, p, 2),
                   "a variant over the state");
    expect_refused(
        be->ops->update_perturb_variants(be, theta, ZT_F32, 0, 8, NULL, &u, fine, ZT_F32, p, 2),
        "momentum without state");
    for (int i = 0; i < 16; i++)
        ZT_CHECK(theta[i] == 0.0f && a[i] == 0.0f && b[i] == 0.0f && state[i] == 0.0f,
                 "refused calls wrote element %d", i);
}

int main(void) {
    for (int b = 0; b < N_BACKENDS; b++)
        ZT_REQUIRE_OK(zt_cpu_backend_create(b + 1, &backends[b]));
    test_against_update_then_variants();
    test_refusals();
    for (int b = 0; b < N_BACKENDS; b++)
        zt_backend_destroy(backends[b]);
    return zt_test_finish("update_variants_cpu");
}
