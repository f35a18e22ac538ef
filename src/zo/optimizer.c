/* The ZO optimizers as policies (optimizer.h). Each policy plans the K variants of a step and
 * turns their K losses into update coefficients; scalar state (plateau counters, AS2P's gamma
 * window) lives here, tensor state (momentum, AdaMM moments) in the engine's param state.
 *
 * Four families share code:
 *   central  (mezo, zo-sgd-sign, ga-sign, zo-sgd-mmt): variants +-eps z_i, docs/spec.md §4.1, §6.1,
 * §7.3 forward  (zo-sgd-fd, zo-signsgd, zo-adamm): theta and theta + r u_i on the sphere,
 * docs/spec.md §7 search   (stp, s2p): move to the best probe, docs/spec.md §6.1, §6.2 adaptive
 * (as2p, as2p-sign): docs/spec.md §6.4 Coefficients of sphere directions are in units of u =
 * z/||z||; the engine folds the norm in. Option names in error messages are the command line's
 * (--lr, --s2p-option, ...). */
#include "zo/optimizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/perturb_rng.h"
#include "core/alloc.h"
#include "core/status.h"

typedef enum policy_id {
    POLICY_MEZO,
    POLICY_ZO_SGD_FD,
    POLICY_ZO_SGD_SIGN,
    POLICY_ZO_SIGNSGD,
    POLICY_GA_SIGN,
    POLICY_ZO_SGD_MMT,
    POLICY_ZO_ADAMM,
    POLICY_STP,
    POLICY_S2P,
    POLICY_AS2P,
    POLICY_AS2P_SIGN,
    POLICY_COUNT
} policy_id;

/* Per policy: name, summary, state copies, the distributions its estimator allows, and the
 * flags it reads beyond --steps, --batch-size and --seed (what --list-optimizers prints). */
static const zt_optimizer_info policy_infos[POLICY_COUNT] = {
    [POLICY_MEZO] = {"mezo", "MeZO / ZO-SGD (alias zo-sgd): central difference, +-eps z", 0,
                     "gaussian (default), rademacher, sphere",
                     "--lr --eps --eps-end --lr-schedule --eps-schedule --weight-decay "
                     "--directions --dist --sphere-sqrt-d",
                     "lr"},
    [POLICY_ZO_SGD_FD] = {"zo-sgd-fd", "ZO-SGD: forward difference (d/r) dF u on the sphere", 0,
                          "sphere",
                          "--lr --eps --eps-end --lr-schedule --eps-schedule --weight-decay "
                          "--directions --sphere-sqrt-d",
                          "lr"},
    [POLICY_ZO_SGD_SIGN] = {"zo-sgd-sign", "ZO-Bench sign-opt: sign(projected_grad) z", 0,
                            "gaussian (default), rademacher, sphere",
                            "--lr --eps --eps-end --lr-schedule --eps-schedule --weight-decay "
                            "--directions --dist --sphere-sqrt-d",
                            "lr"},
    [POLICY_ZO_SIGNSGD] = {"zo-signsgd", "ZO-signSGD: sign of the forward estimate", 0, "sphere",
                           "--lr --eps --eps-end --lr-schedule --eps-schedule --weight-decay "
                           "--directions --sphere-sqrt-d",
                           "lr"},
    [POLICY_GA_SIGN] =
        {"ga-sign", "GA_sign: MeZO with Rademacher directions", 0, "rademacher",
         "--lr --eps --eps-end --lr-schedule --eps-schedule --weight-decay --directions", "lr"},
    [POLICY_ZO_SGD_MMT] = {"zo-sgd-mmt", "MeZO's estimate with heavy-ball momentum", 1,
                           "gaussian (default), rademacher, sphere",
                           "--lr --eps --eps-end --lr-schedule --eps-schedule --weight-decay "
                           "--directions --dist --sphere-sqrt-d --momentum",
                           "lr"},
    [POLICY_ZO_ADAMM] = {"zo-adamm", "ZO-AdaMM: forward estimate, AMSGrad moments", 3, "sphere",
                         "--lr --eps --eps-end --lr-schedule --eps-schedule --weight-decay "
                         "--directions --sphere-sqrt-d --beta1 --beta2 --adam-eps",
                         "lr"},
    [POLICY_STP] = {"stp", "stochastic three points: best of f(x), f(x +- a s)", 0,
                    "gaussian (default), rademacher, sphere",
                    "--eps --eps-end --eps-schedule --lr --lr-schedule --dist --sphere-sqrt-d",
                    "alpha"},
    [POLICY_S2P] = {"s2p", "stochastic two-point search, step-size options 1-4", 0,
                    "gaussian (default), rademacher, sphere",
                    "--eps --eps-end --eps-schedule --lr --lr-schedule --dist --sphere-sqrt-d "
                    "--s2p-option --s2p-l "
                    "--s2p-l0 --s2p-l1 --s2p-a --s2p-b",
                    "alpha"},
    [POLICY_AS2P] = {"as2p", "accelerated S2P: adaptive step from the gamma statistics", 0,
                     "gaussian (default), rademacher, sphere",
                     "--eps --eps-end --eps-schedule --lr --dist --sphere-sqrt-d --as2p-eta-a "
                     "--as2p-eta-b --as2p-window --as2p-window-elapsed",
                     "alpha"},
    [POLICY_AS2P_SIGN] = {"as2p-sign", "AS2P with Rademacher directions", 0, "rademacher",
                          "--eps --eps-end --eps-schedule --lr --as2p-eta-a --as2p-eta-b "
                          "--as2p-window --as2p-window-elapsed",
                          "alpha"},
};

struct zt_optimizer {
    policy_id policy;
    zt_zo_hparams hp;
    int total_steps;
    uint64_t n_params;      /* d */
    zt_direction_dist dist; /* the policy's direction distribution */
    int n_directions;       /* q */

    /* ReduceLROnPlateau (mode min, threshold 0, cooldown 0): docs/spec.md §9 C4. */
    double plateau_best;
    int64_t plateau_bad;
    double plateau_scale; /* factor^(reductions so far) */

    /* AS2P: the most recent gamma values, a ring buffer (docs/spec.md §6.4, B2-B4). */
    double *gamma_window;
    uint32_t window_capacity, window_fill, window_next;
};

/* ---- registry ---- */

int zt_optimizer_count(void) {
    return POLICY_COUNT;
}

const zt_optimizer_info *zt_optimizer_info_at(int index) {
    if (index < 0 || index >= POLICY_COUNT) return NULL;
    return &policy_infos[index];
}

static int policy_lookup(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "zo-sgd") == 0) return POLICY_MEZO; /* docs/spec.md §4.7: GA constant = MeZO */
    for (int p = 0; p < POLICY_COUNT; p++)
        if (strcmp(name, policy_infos[p].name) == 0) return p;
    return -1;
}

const zt_optimizer_info *zt_optimizer_find(const char *name) {
    int p = policy_lookup(name);
    return p < 0 ? NULL : &policy_infos[p];
}

const zt_optimizer_info *zt_optimizer_get_info(const zt_optimizer *optimizer) {
    return &policy_infos[optimizer->policy];
}

static int is_central(policy_id p) {
    return p == POLICY_MEZO || p == POLICY_ZO_SGD_SIGN || p == POLICY_GA_SIGN ||
           p == POLICY_ZO_SGD_MMT;
}

static int is_forward(policy_id p) {
    return p == POLICY_ZO_SGD_FD || p == POLICY_ZO_SIGNSGD || p == POLICY_ZO_ADAMM;
}

static int is_adaptive(policy_id p) {
    return p == POLICY_AS2P || p == POLICY_AS2P_SIGN;
}

/* Policies that move by a chosen step with lr 1: no learning rate scales weight decay. */
static int moves_to_probe(policy_id p) {
    return p == POLICY_STP || p == POLICY_S2P || is_adaptive(p);
}

void zt_zo_hparams_default(zt_zo_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    hp->lr = 1e-6;
    hp->eps = 1e-3;
    hp->eps_end = 1e-4; /* rho_end = rho_0 / 10 (docs/spec.md §6.3, AS2P) */
    hp->lr_schedule = ZT_SCHEDULE_CONSTANT;
    hp->eps_schedule = ZT_SCHEDULE_CONSTANT;
    hp->weight_decay = 0.0;
    hp->n_directions = 1;
    hp->dist = ZT_DIRECTIONS_GAUSSIAN; /* docs/spec.md §6: the LLM experiments use normal s */
    hp->sphere_scale_sqrt_d = 0;
    hp->momentum = 0.9;
    hp->beta1 = 0.9;
    hp->beta2 = 0.999;
    hp->adam_eps = 1e-8; /* docs/spec.md §9 C4 */
    hp->s2p_option = 1;
    hp->s2p_l = 1.0; /* the smoothness constants are unknown (docs/spec.md §6.2): user-supplied */
    hp->s2p_l0 = 1.0;
    hp->s2p_l1 = 1.0;
    hp->s2p_a = 1.01;
    hp->s2p_b = 1.01;
    hp->as2p_eta_a = 5.0;
    hp->as2p_eta_b = 50.0; /* LLM value, docs/spec.md §6.3 Table 4 (B9) */
    hp->as2p_window_frac = 0.10;
    hp->as2p_window_elapsed = 0;
    hp->plateau_factor = 0.1; /* PyTorch ReduceLROnPlateau defaults, docs/spec.md §9 C4 */
    hp->plateau_patience = 10;
}

uint64_t zt_direction_seed(uint64_t step_seed, int direction) {
    /* An odd multiplier keeps (step_seed + c*(i+1)) distinct for distinct i and the mix is a
     * bijection, so the directions of a step never share a seed (the engine matches terms to
     * directions by seed). */
    return zt_mix64(step_seed + 0x9E3779B97F4A7C15ull * ((uint64_t)direction + 1u));
}

/* ---- validation ---- */

static int finite_at_least(double v, double lo) {
    return isfinite(v) && v >= lo;
}
static int finite_above(double v, double lo) {
    return isfinite(v) && v > lo;
}

static zt_status check_schedule(const char *option, zt_schedule_kind kind) {
    if ((int)kind < ZT_SCHEDULE_CONSTANT || (int)kind > ZT_SCHEDULE_PLATEAU)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s %d: expected constant, cosine, linear or plateau",
                       option, (int)kind);
    return ZT_OK;
}

static zt_status check_positive(const char *option, double v) {
    if (!finite_above(v, 0.0))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s %g: expected a finite value > 0", option, v);
    return ZT_OK;
}

static zt_status check_unit_interval(const char *option, double v) {
    if (!(isfinite(v) && v >= 0.0 && v < 1.0))
        return zt_fail(ZT_ERR_INVALID_ARG, "%s %g: expected 0 <= value < 1", option, v);
    return ZT_OK;
}

static const char *dist_name(zt_direction_dist dist) {
    static const char *const names[] = {"gaussian", "rademacher", "sphere"};
    return (unsigned)dist < 3 ? names[dist] : "?";
}

static zt_status check_s2p(const zt_zo_hparams *hp) {
    switch (hp->s2p_option) {
    case 1:
        return ZT_OK;
    case 2:
        return check_positive("--s2p-l", hp->s2p_l);
    case 3:
        ZT_TRY(check_positive("--s2p-b", hp->s2p_b));
        return check_positive("--s2p-l1", hp->s2p_l1);
    case 4:
        ZT_TRY(check_positive("--s2p-a", hp->s2p_a));
        ZT_TRY(check_positive("--s2p-b", hp->s2p_b));
        ZT_TRY(check_positive("--s2p-l0", hp->s2p_l0));
        /* (L0, L1)-smoothness with L1 = 0 is plain L0-smoothness: allowed. */
        if (!finite_at_least(hp->s2p_l1, 0.0))
            return zt_fail(ZT_ERR_INVALID_ARG, "--s2p-l1 %g: expected a finite value >= 0",
                           hp->s2p_l1);
        return ZT_OK;
    default:
        return zt_fail(ZT_ERR_INVALID_ARG, "--s2p-option %d: expected 1..4", hp->s2p_option);
    }
}

/* Checks the options the policy uses; others are ignored, so a stray default never fails. */
static zt_status validate(policy_id p, const zt_zo_hparams *hp, int total_steps,
                          uint64_t n_params) {
    const char *name = policy_infos[p].name;
    if (total_steps < 1)
        return zt_fail(ZT_ERR_INVALID_ARG, "--steps %d: expected >= 1", total_steps);
    if (n_params < 1)
        return zt_fail(ZT_ERR_INVALID_ARG, "%s: no trainable parameters (d = 0)", name);
    if (!finite_at_least(hp->lr, 0.0))
        return zt_fail(ZT_ERR_INVALID_ARG, "--lr %g: expected a finite value >= 0", hp->lr);
    ZT_TRY(check_positive("--eps", hp->eps));
    if (!finite_at_least(hp->eps_end, 0.0))
        return zt_fail(ZT_ERR_INVALID_ARG, "--eps-end %g: expected a finite value >= 0",
                       hp->eps_end);
    ZT_TRY(check_schedule("--lr-schedule", hp->lr_schedule));
    ZT_TRY(check_schedule("--eps-schedule", hp->eps_schedule));
    if (!finite_at_least(hp->weight_decay, 0.0))
        return zt_fail(ZT_ERR_INVALID_ARG, "--weight-decay %g: expected a finite value >= 0",
                       hp->weight_decay);
    if (hp->n_directions < 1 || hp->n_directions > ZT_MAX_DIRECTIONS)
        return zt_fail(ZT_ERR_INVALID_ARG, "--directions %d: expected 1..%d", hp->n_directions,
                       ZT_MAX_DIRECTIONS);
    if ((int)hp->dist < ZT_DIRECTIONS_GAUSSIAN || (int)hp->dist > ZT_DIRECTIONS_SPHERE)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--dist %d: expected gaussian (0), rademacher (1) or sphere (2)",
                       (int)hp->dist);
    if (moves_to_probe(p)) {
        if (hp->n_directions != 1)
            return zt_fail(ZT_ERR_INVALID_ARG, "--directions %d: %s uses one direction per step",
                           hp->n_directions, name);
        if (hp->weight_decay != 0.0)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--weight-decay %g: %s moves to a probe with lr 1, so no learning "
                           "rate scales the decay; expected 0",
                           hp->weight_decay, name);
    }
    if (hp->lr_schedule == ZT_SCHEDULE_PLATEAU || hp->eps_schedule == ZT_SCHEDULE_PLATEAU) {
        if (!(isfinite(hp->plateau_factor) && hp->plateau_factor > 0.0 && hp->plateau_factor < 1.0))
            return zt_fail(ZT_ERR_INVALID_ARG, "--plateau-factor %g: expected 0 < value < 1",
                           hp->plateau_factor);
        if (hp->plateau_patience < 0)
            return zt_fail(ZT_ERR_INVALID_ARG, "--plateau-patience %d: expected >= 0",
                           hp->plateau_patience);
    }
    if (p == POLICY_ZO_SGD_MMT) ZT_TRY(check_unit_interval("--momentum", hp->momentum));
    if (p == POLICY_ZO_ADAMM) {
        ZT_TRY(check_unit_interval("--beta1", hp->beta1));
        ZT_TRY(check_unit_interval("--beta2", hp->beta2));
        ZT_TRY(check_positive("--adam-eps", hp->adam_eps));
    }
    if (p == POLICY_S2P) ZT_TRY(check_s2p(hp));
    if (is_adaptive(p)) {
        ZT_TRY(check_positive("--as2p-eta-a", hp->as2p_eta_a));
        ZT_TRY(check_positive("--as2p-eta-b", hp->as2p_eta_b));
        if (!(isfinite(hp->as2p_window_frac) && hp->as2p_window_frac > 0.0 &&
              hp->as2p_window_frac <= 1.0))
            return zt_fail(ZT_ERR_INVALID_ARG, "--as2p-window %g: expected 0 < fraction <= 1",
                           hp->as2p_window_frac);
    }
    return ZT_OK;
}

/* ---- creation ---- */

/* The AS2P window of `count` steps: max(2, ceil(frac * count)) (docs/spec.md §9 B2). The ceiling
 * takes a relative tolerance because frac*count is rarely exact in binary (0.1 * 30 is
 * 3.0000000000000004, which must give 3, not 4). */
static uint32_t window_length(double frac, double count) {
    double x = frac * count;
    double n = ceil(x - 1e-9 * x);
    return n < 2.0 ? 2u : (uint32_t)n;
}

static void list_policies(char *buf, size_t size) {
    size_t at = 0;
    buf[0] = '\0';
    for (int p = 0; p < POLICY_COUNT && at < size; p++) {
        int n = snprintf(buf + at, size - at, "%s%s", p ? ", " : "", policy_infos[p].name);
        if (n < 0) break;
        at += (size_t)n;
        if (p == POLICY_MEZO && at < size) {
            n = snprintf(buf + at, size - at, ", zo-sgd");
            if (n < 0) break;
            at += (size_t)n;
        }
    }
}

zt_status zt_optimizer_create(const char *name, const zt_zo_hparams *hp, int total_steps,
                              uint64_t n_params, zt_optimizer **out) {
    *out = NULL;
    int p = policy_lookup(name);
    if (p < 0) {
        char known[256];
        list_policies(known, sizeof known);
        return zt_fail(ZT_ERR_INVALID_ARG, "--optimizer %s: unknown; expected one of %s",
                       name ? name : "(null)", known);
    }
    ZT_TRY(validate((policy_id)p, hp, total_steps, n_params));
    zt_direction_dist forced =
        is_forward((policy_id)p) ? ZT_DIRECTIONS_SPHERE : ZT_DIRECTIONS_RADEMACHER;
    int forces = is_forward((policy_id)p) || p == POLICY_GA_SIGN || p == POLICY_AS2P_SIGN;
    if (forces && hp->dist_given && hp->dist != forced)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--dist %s: %s draws its directions %s (docs/spec.md %s), so it takes no "
                       "other --dist",
                       dist_name(hp->dist), policy_infos[p].name,
                       forced == ZT_DIRECTIONS_SPHERE ? "uniformly on the sphere"
                                                      : "from the Rademacher distribution",
                       forced == ZT_DIRECTIONS_SPHERE ? "§7.1" : "§6.1");

    zt_optimizer *optimizer = zt_calloc(1, sizeof *optimizer);
    if (!optimizer) return zt_fail(ZT_ERR_NOMEM, "allocating optimizer %s", policy_infos[p].name);
    optimizer->policy = (policy_id)p;
    optimizer->hp = *hp;
    optimizer->total_steps = total_steps;
    optimizer->n_params = n_params;
    if (is_forward(optimizer->policy))
        optimizer->dist = ZT_DIRECTIONS_SPHERE; /* u ~ U(S^{d-1}), docs/spec.md §7.1 */
    else if (optimizer->policy == POLICY_GA_SIGN || optimizer->policy == POLICY_AS2P_SIGN)
        optimizer->dist =
            ZT_DIRECTIONS_RADEMACHER; /* the paper's "sign" variants, docs/spec.md §6.1, B10 */
    else
        optimizer->dist = hp->dist;
    optimizer->n_directions = moves_to_probe(optimizer->policy) ? 1 : hp->n_directions;
    optimizer->plateau_best = INFINITY;
    optimizer->plateau_bad = 0;
    optimizer->plateau_scale = 1.0;
    if (is_adaptive(optimizer->policy)) {
        optimizer->window_capacity = window_length(hp->as2p_window_frac, (double)total_steps);
        optimizer->gamma_window =
            zt_calloc(optimizer->window_capacity, sizeof *optimizer->gamma_window);
        if (!optimizer->gamma_window) {
            uint32_t capacity = optimizer->window_capacity;
            free(optimizer);
            return zt_fail(ZT_ERR_NOMEM, "allocating the AS2P window of %u values", capacity);
        }
    }
    *out = optimizer;
    return ZT_OK;
}

void zt_optimizer_free(zt_optimizer *optimizer) {
    if (!optimizer) return;
    free(optimizer->gamma_window);
    free(optimizer);
}

/* ---- step values ---- */

static double sign_of(double v) {
    return (double)((v > 0.0) - (v < 0.0));
}

/* The learning rate at step k. Cosine and linear decay to 0 (docs/spec.md §9 B5, as HF's
 * schedulers); plateau is lr times the factors applied so far. */
static double lr_at(const zt_optimizer *optimizer, int step) {
    if (optimizer->hp.lr_schedule == ZT_SCHEDULE_PLATEAU)
        return optimizer->hp.lr * optimizer->plateau_scale;
    return zt_schedule_value(optimizer->hp.lr_schedule, optimizer->hp.lr, 0.0, step,
                             optimizer->total_steps);
}

/* The perturbation scale at step k: eps -> eps_end. A plateau eps follows the learning rate's
 * factor (ZO-AdaMM: mu decays "with the same schedule as the learning rate", docs/spec.md §7.4). */
static zt_status eps_at(const zt_optimizer *optimizer, int step, double *eps) {
    if (optimizer->hp.eps_schedule == ZT_SCHEDULE_PLATEAU)
        *eps = optimizer->hp.eps * optimizer->plateau_scale;
    else
        *eps = zt_schedule_value(optimizer->hp.eps_schedule, optimizer->hp.eps,
                                 optimizer->hp.eps_end, step, optimizer->total_steps);
    if (!finite_above(*eps, 0.0))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "step %d: the --eps-schedule %s reaches eps = %g; a difference quotient "
                       "needs eps > 0 (raise --eps-end)",
                       step, zt_schedule_name(optimizer->hp.eps_schedule), *eps);
    return ZT_OK;
}

/* Forward-difference radius r: eps, or eps*sqrt(d) so that the per-coordinate perturbation
 * keeps MeZO's scale at LLM sizes (docs/spec.md §7.1 [REC], §9 C5). */
static zt_status sphere_radius(const zt_optimizer *optimizer, int step, double *radius) {
    ZT_TRY(eps_at(optimizer, step, radius));
    if (optimizer->hp.sphere_scale_sqrt_d) *radius *= sqrt((double)optimizer->n_params);
    return ZT_OK;
}

/* AS2P's cosine decays over the run (docs/spec.md §6.4, B5): c_k = cosdec(2, 1, k) and
 * rho_k = cosdec(rho_0, rho_end, k) with rho_0 = --eps, rho_end = --eps-end. */
static double cosine_decay(const zt_optimizer *optimizer, double from, double to, int step) {
    return zt_schedule_value(ZT_SCHEDULE_COSINE, from, to, step, optimizer->total_steps);
}

static zt_status as2p_rho(const zt_optimizer *optimizer, int step, double *rho) {
    *rho = cosine_decay(optimizer, optimizer->hp.eps, optimizer->hp.eps_end, step);
    if (!finite_above(*rho, 0.0))
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "step %d: rho decays to %g; AS2P needs rho > 0 (raise --eps-end)", step,
                       *rho);
    return ZT_OK;
}

/* S2P options 1 and 3 fix the step before any evaluation (docs/spec.md §6.2):
 *   Opt1: alpha_k = alpha_0 / sqrt(K d), alpha_0 the learning rate (schedule applied);
 *   Opt3: alpha_k = sqrt(2) / (B L1 sqrt(d K))   [reconstructed, §9 B12]. */
static double s2p_fixed_alpha(const zt_optimizer *optimizer, int step) {
    double kd = (double)optimizer->total_steps * (double)optimizer->n_params;
    if (optimizer->hp.s2p_option == 1) return lr_at(optimizer, step) / sqrt(kd);
    return sqrt(2.0) / (optimizer->hp.s2p_b * optimizer->hp.s2p_l1 * sqrt(kd));
}

/* S2P options 2 and 4 derive the step from |gamma| = |f(x+rho s) - f(x-rho s)| / (2 rho):
 *   Opt2: alpha_k = |gamma| / (L d);
 *   Opt4: alpha_k = |gamma| / ((A L0 + sqrt(2) B L1 |gamma|) d). */
static double s2p_adaptive_alpha(const zt_optimizer *optimizer, double abs_gamma) {
    const zt_zo_hparams *hp = &optimizer->hp;
    double d = (double)optimizer->n_params;
    if (hp->s2p_option == 2) return abs_gamma / (hp->s2p_l * d);
    return abs_gamma /
           ((hp->s2p_a * hp->s2p_l0 + sqrt(2.0) * hp->s2p_b * hp->s2p_l1 * abs_gamma) * d);
}

/* ---- plan ---- */

static void add_variant(zt_step_plan *plan, const zt_direction *term) {
    int k = plan->n_variants++;
    plan->n_terms[k] = term ? 1 : 0;
    if (term) plan->terms[k][0] = *term;
}

/* The two probes theta +- scale * s of one direction. */
static void add_probe_pair(zt_step_plan *plan, uint64_t seed, double scale) {
    add_variant(plan, &(zt_direction){seed, (float)scale});
    add_variant(plan, &(zt_direction){seed, (float)-scale});
}

static int expected_variants(const zt_optimizer *optimizer) {
    if (is_central(optimizer->policy)) return 2 * optimizer->n_directions;
    if (is_forward(optimizer->policy)) return optimizer->n_directions + 1;
    if (optimizer->policy == POLICY_STP) return 3;
    if (optimizer->policy == POLICY_S2P &&
        (optimizer->hp.s2p_option == 2 || optimizer->hp.s2p_option == 4))
        return 4; /* +-rho s, then +-alpha s */
    return 2;     /* s2p options 1 and 3, as2p */
}

zt_status zt_optimizer_plan(zt_optimizer *optimizer, int step, uint64_t step_seed,
                            zt_step_plan *plan) {
    memset(plan, 0, sizeof *plan);
    plan->n_directions = optimizer->n_directions;
    plan->dist = optimizer->dist;
    for (int i = 0; i < optimizer->n_directions; i++)
        plan->seeds[i] = zt_direction_seed(step_seed, i);
    const uint64_t *seeds = plan->seeds;

    if (is_central(optimizer->policy)) {
        /* docs/spec.md §4.1: variants theta + eps z_i and theta - eps z_i, in pairs. */
        double eps;
        ZT_TRY(eps_at(optimizer, step, &eps));
        for (int i = 0; i < optimizer->n_directions; i++)
            add_probe_pair(plan, seeds[i], eps);
    } else if (is_forward(optimizer->policy)) {
        /* docs/spec.md §7.1: F(x) once, shared by the q forward differences F(x + r u_i). */
        double radius;
        ZT_TRY(sphere_radius(optimizer, step, &radius));
        add_variant(plan, NULL);
        for (int i = 0; i < optimizer->n_directions; i++)
            add_variant(plan, &(zt_direction){seeds[i], (float)radius});
    } else if (optimizer->policy == POLICY_STP) {
        /* docs/spec.md §6.1: f(x), f(x + a s), f(x - a s) on the same minibatch; a = alpha_k. */
        add_variant(plan, NULL);
        add_probe_pair(plan, seeds[0], lr_at(optimizer, step));
    } else if (optimizer->policy == POLICY_S2P) {
        double probe;
        if (optimizer->hp.s2p_option == 1 || optimizer->hp.s2p_option == 3)
            probe = s2p_fixed_alpha(optimizer, step);
        else
            ZT_TRY(eps_at(optimizer, step, &probe)); /* rho = eps */
        add_probe_pair(plan, seeds[0], probe);
    } else {
        double rho;
        ZT_TRY(as2p_rho(optimizer, step, &rho));
        add_probe_pair(plan, seeds[0], rho);
    }
    return ZT_OK;
}

/* ---- finish ---- */

/* A zero coefficient moves nothing; leaving it out lets the engine skip the update pass. */
static void add_term(zt_step_update *update, uint64_t seed, double coeff) {
    float c = (float)coeff;
    if (c == 0.0f) return;
    update->terms[update->n_terms++] = (zt_direction){seed, c};
}

static void finish_central(const zt_optimizer *optimizer, const zt_step_plan *plan, double eps,
                           double lr, const double *losses, zt_step_update *update) {
    int q = optimizer->n_directions;
    update->rule = optimizer->policy == POLICY_ZO_SGD_MMT ? ZT_UPDATE_MOMENTUM : ZT_UPDATE_SGD;
    update->lr = lr;
    update->weight_decay = optimizer->hp.weight_decay;
    if (optimizer->policy == POLICY_ZO_SGD_MMT) update->beta1 = optimizer->hp.momentum;
    for (int i = 0; i < q; i++) {
        /* MeZO's projected_grad (docs/spec.md §4.1), averaged over the q directions. */
        double projected = (losses[2 * i] - losses[2 * i + 1]) / (2.0 * eps);
        if (i == 0) update->projected_grad = projected;
        /* ZO-Bench's sign-opt keeps z and signs only the scalar (docs/spec.md §7.3, §9 B10, C3). */
        double scalar = optimizer->policy == POLICY_ZO_SGD_SIGN ? sign_of(projected) : projected;
        add_term(update, plan->seeds[i], scalar / q);
    }
}

static void finish_forward(const zt_optimizer *optimizer, const zt_step_plan *plan, double radius,
                           double lr, const double *losses, zt_step_update *update) {
    int q = optimizer->n_directions;
    /* docs/spec.md §7.1: g = (phi(d)/r) (F(x + r u) - F(x)) u with phi(d) = d; radius r is eps or
     * eps*sqrt(d). In units of u, as the plan's variants are. */
    double scale = (double)optimizer->n_params / radius;
    update->lr = lr;
    update->weight_decay = optimizer->hp.weight_decay;
    update->rule = optimizer->policy == POLICY_ZO_SIGNSGD ? ZT_UPDATE_SIGN
                   : optimizer->policy == POLICY_ZO_ADAMM ? ZT_UPDATE_ADAMM
                                                          : ZT_UPDATE_SGD;
    if (optimizer->policy == POLICY_ZO_ADAMM) {
        update->beta1 = optimizer->hp.beta1;
        update->beta2 = optimizer->hp.beta2;
        update->adam_eps = optimizer->hp.adam_eps;
    }
    for (int i = 0; i < q; i++) {
        double difference = losses[i + 1] - losses[0];
        double estimate = scale * difference;
        if (i == 0) update->projected_grad = estimate;
        /* ZO-signSGD (docs/spec.md §7.3): sign(g) = sign(Delta) sign(u) for one direction, so the
         * coefficient is sign(Delta) (sign(0) = 0: no update). With q directions the sign of the
         * averaged estimate needs the magnitudes, which the SIGN rule then discards. */
        double coeff =
            optimizer->policy == POLICY_ZO_SIGNSGD && q == 1 ? sign_of(difference) : estimate / q;
        add_term(update, plan->seeds[i], coeff);
    }
}

/* docs/spec.md §6.1: x_{k+1} = argmin{f(x), f(x + a s), f(x - a s)}. Ties prefer staying, then +a
 * s: a tie carries no evidence that a move helps. */
static void finish_stp(const zt_optimizer *optimizer, const zt_step_plan *plan, int step,
                       const double *losses, zt_step_update *update) {
    double alpha = lr_at(optimizer, step);
    double here = losses[0], plus = losses[1], minus = losses[2];
    update->projected_grad = alpha > 0.0 ? (plus - minus) / (2.0 * alpha) : 0.0;
    if (here <= plus && here <= minus) return;
    /* theta - 1 * (coeff z): coeff -a reaches theta + a s, +a reaches theta - a s. */
    add_term(update, plan->seeds[0], plus <= minus ? -alpha : alpha);
}

/* The population standard deviation of the most recent gamma values, the current one included
 * (docs/spec.md §6.4; B1 signed gamma, B3 current included, B4 ddof 0, |gamma_k| under 2 values).
 */
static double as2p_sigma(const zt_optimizer *optimizer, int step, double gamma) {
    uint32_t window = optimizer->window_capacity;
    if (optimizer->hp.as2p_window_elapsed) { /* B2 alternative: 10% of the steps elapsed */
        uint32_t elapsed = window_length(optimizer->hp.as2p_window_frac, (double)step + 1.0);
        if (elapsed < window) window = elapsed;
    }
    uint32_t n = optimizer->window_fill < window ? optimizer->window_fill : window;
    if (n < 2) return fabs(gamma);
    double mean = 0.0;
    for (uint32_t j = 0; j < n; j++)
        mean +=
            optimizer->gamma_window[(optimizer->window_next + optimizer->window_capacity - 1 - j) %
                                    optimizer->window_capacity];
    mean /= n;
    double sum_sq = 0.0;
    for (uint32_t j = 0; j < n; j++) {
        double dev =
            optimizer->gamma_window[(optimizer->window_next + optimizer->window_capacity - 1 - j) %
                                    optimizer->window_capacity] -
            mean;
        sum_sq += dev * dev;
    }
    return sqrt(sum_sq / n);
}

static zt_status finish_as2p(zt_optimizer *optimizer, const zt_step_plan *plan, int step,
                             const double *losses, zt_step_update *update) {
    double rho;
    ZT_TRY(as2p_rho(optimizer, step, &rho));
    double difference = losses[0] - losses[1]; /* f(x + rho s) - f(x - rho s) */
    double gamma = difference / (2.0 * rho);
    update->projected_grad = gamma;

    optimizer->gamma_window[optimizer->window_next] = gamma;
    optimizer->window_next = (optimizer->window_next + 1) % optimizer->window_capacity;
    if (optimizer->window_fill < optimizer->window_capacity) optimizer->window_fill++;
    double sigma = as2p_sigma(optimizer, step, gamma);

    /* a_k = rho_k gamma'_k / (eta_b sigma_k), gamma' = 1 / (1/|gamma| + 1/(c_k eta_a sigma_k)),
     * in the closed form of §6.4 that needs no guard for sigma = 0 (B11). */
    double c = cosine_decay(optimizer, 2.0, 1.0, step);
    double abs_gamma = fabs(gamma);
    double eta_a = optimizer->hp.as2p_eta_a, eta_b = optimizer->hp.as2p_eta_b;
    double a = abs_gamma == 0.0
                   ? 0.0
                   : rho * c * eta_a * abs_gamma / (eta_b * (abs_gamma + c * eta_a * sigma));
    /* Descent: x <- x - beta_k a_k s (B6), i.e. coefficient beta_k a_k with lr 1. */
    add_term(update, plan->seeds[0], sign_of(difference) * a);
    return ZT_OK;
}

static zt_status finish_s2p(const zt_optimizer *optimizer, const zt_step_plan *plan, int step,
                            const double *losses, zt_step_update *update) {
    double difference = losses[0] - losses[1]; /* f(x + probe s) - f(x - probe s) */
    double alpha;
    if (optimizer->hp.s2p_option == 1 || optimizer->hp.s2p_option == 3) {
        /* The probes are +-alpha s: move to the lower one (a tie stays, as sign(0) = 0). */
        alpha = s2p_fixed_alpha(optimizer, step);
        update->projected_grad = alpha > 0.0 ? difference / (2.0 * alpha) : 0.0;
    } else {
        /* Round one probed +-rho s and gave gamma, alpha follows from |gamma|; round two
         * probed +-alpha s (zt_optimizer_extend): move to the lower of those (docs/spec.md §6.2).
         */
        double rho;
        ZT_TRY(eps_at(optimizer, step, &rho));
        double gamma = difference / (2.0 * rho);
        update->projected_grad = gamma;
        alpha = s2p_adaptive_alpha(optimizer, fabs(gamma));
        difference = losses[2] - losses[3]; /* f(x + alpha s) - f(x - alpha s) */
    }
    /* x <- x - sign(Delta) alpha s reaches argmin{f(x + alpha s), f(x - alpha s)}. */
    add_term(update, plan->seeds[0], sign_of(difference) * alpha);
    return ZT_OK;
}

int zt_optimizer_extend(zt_optimizer *optimizer, int step, const zt_step_plan *plan,
                        const double *losses, zt_step_plan *more) {
    if (optimizer->policy != POLICY_S2P ||
        (optimizer->hp.s2p_option != 2 && optimizer->hp.s2p_option != 4) || plan->n_variants != 2)
        return 0;
    double rho;
    if (eps_at(optimizer, step, &rho) != ZT_OK || !isfinite(losses[0]) || !isfinite(losses[1]))
        return 0;
    double alpha = s2p_adaptive_alpha(optimizer, fabs(losses[0] - losses[1]) / (2.0 * rho));
    memset(more, 0, sizeof *more);
    more->n_directions = plan->n_directions;
    more->dist = plan->dist;
    memcpy(more->seeds, plan->seeds, sizeof more->seeds);
    add_probe_pair(more, plan->seeds[0], alpha);
    return 1;
}

zt_status zt_optimizer_append(zt_step_plan *plan, const zt_step_plan *more) {
    if (plan->n_variants + more->n_variants > ZT_MAX_VARIANTS)
        return zt_fail(ZT_ERR_INTERNAL, "a step of %d + %d variants exceeds %d", plan->n_variants,
                       more->n_variants, ZT_MAX_VARIANTS);
    for (int k = 0; k < more->n_variants; k++) {
        int at = plan->n_variants++;
        plan->n_terms[at] = more->n_terms[k];
        memcpy(plan->terms[at], more->terms[k], sizeof plan->terms[at]);
    }
    return ZT_OK;
}

zt_status zt_optimizer_finish(zt_optimizer *optimizer, int step, const zt_step_plan *plan,
                              const double *losses, zt_step_update *update) {
    memset(update, 0, sizeof *update);
    int expected = expected_variants(optimizer);
    if (plan->n_variants != expected || plan->n_directions != optimizer->n_directions)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "%s step %d: a plan of %d variants and %d directions, expected %d and %d",
                       policy_infos[optimizer->policy].name, step, plan->n_variants,
                       plan->n_directions, expected, optimizer->n_directions);
    for (int k = 0; k < plan->n_variants; k++)
        if (!isfinite(losses[k]))
            return zt_fail(ZT_ERR_NUMERIC, "%s step %d: variant %d has a non-finite loss (%g)",
                           policy_infos[optimizer->policy].name, step, k, losses[k]);
    update->rule = ZT_UPDATE_SGD;
    update->lr = 1.0; /* the search policies move by their coefficients */

    if (is_central(optimizer->policy)) {
        double eps;
        ZT_TRY(eps_at(optimizer, step, &eps));
        finish_central(optimizer, plan, eps, lr_at(optimizer, step), losses, update);
    } else if (is_forward(optimizer->policy)) {
        double radius;
        ZT_TRY(sphere_radius(optimizer, step, &radius));
        finish_forward(optimizer, plan, radius, lr_at(optimizer, step), losses, update);
    } else if (optimizer->policy == POLICY_STP) {
        finish_stp(optimizer, plan, step, losses, update);
    } else if (optimizer->policy == POLICY_S2P) {
        ZT_TRY(finish_s2p(optimizer, plan, step, losses, update));
    } else {
        ZT_TRY(finish_as2p(optimizer, plan, step, losses, update));
    }
    if (moves_to_probe(optimizer->policy))
        update->step_size = update->n_terms ? fabs((double)update->terms[0].coeff) : 0.0;
    else
        update->step_size = update->lr;
    return ZT_OK;
}

/* ---- plateau ---- */

void zt_optimizer_observe(zt_optimizer *optimizer, double metric) {
    if (optimizer->hp.lr_schedule != ZT_SCHEDULE_PLATEAU &&
        optimizer->hp.eps_schedule != ZT_SCHEDULE_PLATEAU)
        return;
    /* PyTorch ReduceLROnPlateau, mode min, threshold 0, cooldown 0: a reduction follows the
     * (patience+1)-th consecutive observation without improvement; NaN never improves. Its
     * absolute min-change eps (1e-8) is left out: ZO learning rates are ~1e-7 and would stop
     * decaying after one reduction. */
    if (metric < optimizer->plateau_best) {
        optimizer->plateau_best = metric;
        optimizer->plateau_bad = 0;
        return;
    }
    if (++optimizer->plateau_bad > optimizer->hp.plateau_patience) {
        optimizer->plateau_scale *= optimizer->hp.plateau_factor;
        optimizer->plateau_bad = 0;
    }
}

/* ---- state blob ----
 * Native byte order (a snapshot is resumed on the machine kind that wrote it):
 *   u32 magic "ZTOS", u32 version, u32 policy, u32 window capacity,
 *   f64 plateau best, i64 plateau bad count, f64 plateau scale,
 *   u32 window fill, u32 window next, f64 window[capacity]. */

enum { STATE_MAGIC = 0x534F545Au, STATE_VERSION = 1u, STATE_HEADER_BYTES = 48 };

static size_t state_size(uint32_t capacity) {
    return STATE_HEADER_BYTES + (size_t)capacity * sizeof(double);
}

static void put(unsigned char *blob, size_t *at, const void *value, size_t n) {
    memcpy(blob + *at, value, n);
    *at += n;
}

static void get(const unsigned char *blob, size_t *at, void *value, size_t n) {
    memcpy(value, blob + *at, n);
    *at += n;
}

zt_status zt_optimizer_save_state(const zt_optimizer *optimizer, void **blob, size_t *n_bytes) {
    size_t size = state_size(optimizer->window_capacity);
    unsigned char *out = zt_malloc(size);
    if (!out) return zt_fail(ZT_ERR_NOMEM, "allocating %zu bytes of optimizer state", size);
    uint32_t magic = STATE_MAGIC, version = STATE_VERSION, policy = (uint32_t)optimizer->policy;
    size_t at = 0;
    put(out, &at, &magic, 4);
    put(out, &at, &version, 4);
    put(out, &at, &policy, 4);
    put(out, &at, &optimizer->window_capacity, 4);
    put(out, &at, &optimizer->plateau_best, 8);
    put(out, &at, &optimizer->plateau_bad, 8);
    put(out, &at, &optimizer->plateau_scale, 8);
    put(out, &at, &optimizer->window_fill, 4);
    put(out, &at, &optimizer->window_next, 4);
    if (optimizer->window_capacity)
        put(out, &at, optimizer->gamma_window, optimizer->window_capacity * sizeof(double));
    *blob = out;
    *n_bytes = size;
    return ZT_OK;
}

zt_status zt_optimizer_load_state(zt_optimizer *optimizer, const void *blob, size_t n_bytes) {
    const char *name = policy_infos[optimizer->policy].name;
    const unsigned char *in = blob;
    if (n_bytes < STATE_HEADER_BYTES)
        return zt_fail(ZT_ERR_FORMAT, "optimizer state: %zu bytes, shorter than the %d-byte header",
                       n_bytes, STATE_HEADER_BYTES);
    uint32_t magic, version, policy, capacity, fill, next;
    double best, scale;
    int64_t bad;
    size_t at = 0;
    get(in, &at, &magic, 4);
    get(in, &at, &version, 4);
    get(in, &at, &policy, 4);
    get(in, &at, &capacity, 4);
    get(in, &at, &best, 8);
    get(in, &at, &bad, 8);
    get(in, &at, &scale, 8);
    get(in, &at, &fill, 4);
    get(in, &at, &next, 4);
    if (magic != STATE_MAGIC)
        return zt_fail(ZT_ERR_FORMAT, "optimizer state: bad magic 0x%08x", magic);
    if (version != STATE_VERSION)
        return zt_fail(ZT_ERR_FORMAT, "optimizer state: version %u, this build reads version %u",
                       version, STATE_VERSION);
    if (policy != (uint32_t)optimizer->policy)
        return zt_fail(ZT_ERR_INVALID_ARG, "optimizer state: written by %s, loading into %s",
                       policy < POLICY_COUNT ? policy_infos[policy].name : "an unknown optimizer",
                       name);
    if (capacity != optimizer->window_capacity)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "optimizer state: a gamma window of %u values, this %s run has %u "
                       "(--steps or --as2p-window differ)",
                       capacity, name, optimizer->window_capacity);
    if (n_bytes != state_size(capacity))
        return zt_fail(ZT_ERR_FORMAT, "optimizer state: %zu bytes, expected %zu", n_bytes,
                       state_size(capacity));
    if (fill > capacity || (capacity > 0 && next >= capacity) || bad < 0 ||
        !finite_above(scale, 0.0))
        return zt_fail(ZT_ERR_FORMAT,
                       "optimizer state: inconsistent (window %u of %u at %u, plateau count "
                       "%lld, scale %g)",
                       fill, capacity, next, (long long)bad, scale);
    optimizer->plateau_best = best;
    optimizer->plateau_bad = bad;
    optimizer->plateau_scale = scale;
    optimizer->window_fill = fill;
    optimizer->window_next = next;
    if (capacity) get(in, &at, optimizer->gamma_window, capacity * sizeof(double));
    return ZT_OK;
}
