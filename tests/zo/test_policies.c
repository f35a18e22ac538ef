/* The ZO policies on scripted losses: every coefficient against a formula recomputed here in
 * double from the spec (docs/spec.md §4.1, §6, §7, §9 B/C), schedules, plateau decay,
 * state round trips and option errors. No backend: a policy never touches tensors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "zo/optimizer.h"
#include "zo/schedule.h"
#include "zt_test.h"

/* Coefficients travel as float: compare with float's relative precision. */
#define COEFF_RTOL 1e-6

static const uint64_t STEP_SEED = 0x1234ABCDull;

static zt_optimizer *make(const char *name, const zt_zo_hparams *hp, int total_steps,
                          uint64_t n_params) {
    zt_optimizer *optimizer = NULL;
    ZT_REQUIRE_OK(zt_optimizer_create(name, hp, total_steps, n_params, &optimizer));
    return optimizer;
}

/* Plans step `step` and finishes it with `losses` (both rounds' when the policy extends). */
static void run_step(zt_optimizer *optimizer, int step, const double *losses, zt_step_plan *plan,
                     zt_step_update *update) {
    ZT_REQUIRE_OK(zt_optimizer_plan(optimizer, step, STEP_SEED + (uint64_t)step, plan));
    zt_step_plan more;
    if (zt_optimizer_extend(optimizer, step, plan, losses, &more))
        ZT_REQUIRE_OK(zt_optimizer_append(plan, &more));
    ZT_REQUIRE_OK(zt_optimizer_finish(optimizer, step, plan, losses, update));
}

static double sign_of(double v) {
    return (double)((v > 0) - (v < 0));
}

/* docs/spec.md §9 B5 cosine decay, written out independently of schedule.c. */
static double cosdec(double from, double to, int k, int total) {
    return to + (from - to) * 0.5 * (1.0 + cos(3.14159265358979323846 * k / total));
}

static void test_registry(void) {
    ZT_CHECK(zt_optimizer_count() == 11, "count %d", zt_optimizer_count());
    const char *names[] = {"mezo",    "zo-sgd-fd",  "zo-sgd-sign", "zo-signsgd",
                           "ga-sign", "zo-sgd-mmt", "zo-adamm",    "stp",
                           "s2p",     "as2p",       "as2p-sign"};
    for (int i = 0; i < 11; i++) {
        const zt_optimizer_info *info = zt_optimizer_find(names[i]);
        ZT_CHECK(info && strcmp(info->name, names[i]) == 0, "find %s", names[i]);
        ZT_CHECK(zt_optimizer_info_at(i) && zt_optimizer_info_at(i)->summary, "info %d", i);
    }
    ZT_CHECK(zt_optimizer_find("zo-sgd") == zt_optimizer_find("mezo"), "zo-sgd alias");
    ZT_CHECK(zt_optimizer_find("adam") == NULL, "unknown name");
    ZT_CHECK(zt_optimizer_find("zo-sgd-mmt")->state_copies == 1, "momentum state");
    ZT_CHECK(zt_optimizer_find("zo-adamm")->state_copies == 3, "adamm state");
    ZT_CHECK(zt_optimizer_find("mezo")->state_copies == 0, "mezo state");
}

static void test_direction_seeds(void) {
    for (int i = 0; i < ZT_MAX_DIRECTIONS; i++) {
        ZT_CHECK(zt_direction_seed(7, i) == zt_direction_seed(7, i), "pure %d", i);
        ZT_CHECK(zt_direction_seed(7, i) != zt_direction_seed(8, i), "step seed matters %d", i);
        for (int j = 0; j < i; j++)
            ZT_CHECK(zt_direction_seed(7, i) != zt_direction_seed(7, j), "distinct %d %d", i, j);
    }
}

/* MeZO (docs/spec.md §4.1): variants +-eps z_i; coeff_i = (L+_i - L-_i) / (2 eps q). */
static void test_mezo(void) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.weight_decay = 0.01;
    zt_optimizer *optimizer = make("zo-sgd", &hp, 100, 1000);
    zt_step_plan plan;
    zt_step_update up;
    double losses[2] = {2.5, 2.0};
    run_step(optimizer, 3, losses, &plan, &up);
    ZT_CHECK(plan.n_variants == 2 && plan.n_directions == 1, "K %d", plan.n_variants);
    ZT_CHECK(plan.dist == ZT_DIRECTIONS_GAUSSIAN, "dist %d", plan.dist);
    ZT_CHECK(plan.seeds[0] == zt_direction_seed(STEP_SEED + 3, 0), "seed");
    ZT_CHECK(plan.n_terms[0] == 1 && plan.terms[0][0].seed == plan.seeds[0], "variant 0");
    ZT_CHECK_CLOSE(plan.terms[0][0].coeff, 1e-3, 0, COEFF_RTOL, "+eps");
    ZT_CHECK_CLOSE(plan.terms[1][0].coeff, -1e-3, 0, COEFF_RTOL, "-eps");
    ZT_CHECK(up.rule == ZT_UPDATE_SGD && up.n_terms == 1, "rule %d terms %d", up.rule, up.n_terms);
    ZT_CHECK_CLOSE(up.terms[0].coeff, (2.5 - 2.0) / (2 * 1e-3), 0, COEFF_RTOL, "coeff");
    ZT_CHECK_CLOSE(up.projected_grad, 250.0, 0, 1e-12, "projected_grad");
    ZT_CHECK_CLOSE(up.lr, 1e-6, 0, 1e-12, "lr");
    ZT_CHECK(up.step_size == up.lr, "mezo's step size is its lr");
    ZT_CHECK_CLOSE(up.weight_decay, 0.01, 0, 1e-12, "weight decay");
    zt_optimizer_free(optimizer);

    /* q = 3 directions: K = 6 in pairs, the update averages. */
    hp.n_directions = 3;
    hp.eps = 2e-3;
    optimizer = make("mezo", &hp, 100, 1000);
    double losses3[6] = {1.0, 1.2, 3.0, 2.0, 0.7, 0.7};
    run_step(optimizer, 0, losses3, &plan, &up);
    ZT_CHECK(plan.n_variants == 6 && plan.n_directions == 3, "K %d", plan.n_variants);
    for (int i = 0; i < 3; i++) {
        ZT_CHECK(plan.seeds[i] == zt_direction_seed(STEP_SEED, i), "seed %d", i);
        ZT_CHECK(plan.terms[2 * i][0].seed == plan.seeds[i] &&
                     plan.terms[2 * i + 1][0].seed == plan.seeds[i],
                 "pair %d", i);
        ZT_CHECK_CLOSE(plan.terms[2 * i + 1][0].coeff, -2e-3, 0, COEFF_RTOL, "-eps %d", i);
    }
    /* Direction 2 has L+ == L-: a zero coefficient, left out. */
    ZT_CHECK(up.n_terms == 2, "terms %d", up.n_terms);
    ZT_CHECK_CLOSE(up.terms[0].coeff, (1.0 - 1.2) / (2 * 2e-3 * 3), 0, COEFF_RTOL, "q coeff 0");
    ZT_CHECK_CLOSE(up.terms[1].coeff, (3.0 - 2.0) / (2 * 2e-3 * 3), 0, COEFF_RTOL, "q coeff 1");
    ZT_CHECK(up.terms[1].seed == plan.seeds[1], "q seed 1");
    ZT_CHECK_CLOSE(up.projected_grad, (1.0 - 1.2) / (2 * 2e-3), 0, 1e-12, "first direction");
    zt_optimizer_free(optimizer);
}

static void test_central_variants(void) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.n_directions = 2;
    zt_step_plan plan;
    zt_step_update up;
    double losses[4] = {1.0, 1.5, 2.0, 1.0};
    double g0 = (1.0 - 1.5) / 2e-3, g1 = (2.0 - 1.0) / 2e-3;

    /* ZO-Bench sign-opt (docs/spec.md §7.3 contrast, B10): sign(projected_grad)/q on Gaussian z. */
    zt_optimizer *optimizer = make("zo-sgd-sign", &hp, 10, 50);
    run_step(optimizer, 0, losses, &plan, &up);
    ZT_CHECK(plan.dist == ZT_DIRECTIONS_GAUSSIAN && up.rule == ZT_UPDATE_SGD, "sign-opt rule");
    ZT_CHECK_CLOSE(up.terms[0].coeff, sign_of(g0) / 2, 0, COEFF_RTOL, "sign 0");
    ZT_CHECK_CLOSE(up.terms[1].coeff, sign_of(g1) / 2, 0, COEFF_RTOL, "sign 1");
    ZT_CHECK_CLOSE(up.projected_grad, g0, 0, 1e-12, "sign-opt projected_grad");
    zt_optimizer_free(optimizer);

    /* GA_sign (docs/spec.md §6.1, B10): MeZO on Rademacher directions. */
    optimizer = make("ga-sign", &hp, 10, 50);
    run_step(optimizer, 0, losses, &plan, &up);
    ZT_CHECK(plan.dist == ZT_DIRECTIONS_RADEMACHER && up.rule == ZT_UPDATE_SGD, "ga-sign");
    ZT_CHECK_CLOSE(up.terms[0].coeff, g0 / 2, 0, COEFF_RTOL, "ga-sign 0");
    ZT_CHECK_CLOSE(up.terms[1].coeff, g1 / 2, 0, COEFF_RTOL, "ga-sign 1");
    zt_optimizer_free(optimizer);

    /* ZO-SGD-MMT: MeZO's estimate into the momentum rule, beta = --momentum. */
    hp.momentum = 0.8;
    optimizer = make("zo-sgd-mmt", &hp, 10, 50);
    run_step(optimizer, 0, losses, &plan, &up);
    ZT_CHECK(up.rule == ZT_UPDATE_MOMENTUM, "mmt rule %d", up.rule);
    ZT_CHECK_CLOSE(up.beta1, 0.8, 0, 1e-12, "mmt beta");
    ZT_CHECK_CLOSE(up.terms[0].coeff, g0 / 2, 0, COEFF_RTOL, "mmt 0");
    ZT_CHECK(zt_optimizer_get_info(optimizer)->state_copies == 1, "mmt copies");
    zt_optimizer_free(optimizer);
}

/* Forward difference on the sphere (docs/spec.md §7.1): g = (d/r)(F(x + r u) - F(x)) u. */
static void test_forward(void) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    const uint64_t d = 400;
    zt_step_plan plan;
    zt_step_update up;
    double losses[2] = {1.0, 1.25};

    zt_optimizer *optimizer = make("zo-sgd-fd", &hp, 10, d);
    run_step(optimizer, 1, losses, &plan, &up);
    ZT_CHECK(plan.dist == ZT_DIRECTIONS_SPHERE && plan.n_variants == 2, "fd plan");
    ZT_CHECK(plan.n_terms[0] == 0 && plan.n_terms[1] == 1, "fd variants: theta, theta + r u");
    ZT_CHECK_CLOSE(plan.terms[1][0].coeff, 1e-3, 0, COEFF_RTOL, "radius eps");
    ZT_CHECK(up.rule == ZT_UPDATE_SGD, "fd rule");
    ZT_CHECK_CLOSE(up.terms[0].coeff, (double)d / 1e-3 * 0.25, 0, COEFF_RTOL, "fd coeff");
    zt_optimizer_free(optimizer);

    /* Radius eps*sqrt(d) (C5): g = (d / (eps sqrt d)) Delta u = (sqrt(d)/eps) Delta u. */
    hp.sphere_scale_sqrt_d = 1;
    optimizer = make("zo-sgd-fd", &hp, 10, d);
    run_step(optimizer, 1, losses, &plan, &up);
    ZT_CHECK_CLOSE(plan.terms[1][0].coeff, 1e-3 * 20.0, 0, COEFF_RTOL, "radius eps sqrt d");
    ZT_CHECK_CLOSE(up.terms[0].coeff, 20.0 / 1e-3 * 0.25, 0, COEFF_RTOL, "sqrt-d coeff");
    zt_optimizer_free(optimizer);
    hp.sphere_scale_sqrt_d = 0;

    /* q = 2: theta once, then theta + r u_i; the estimates average. */
    hp.n_directions = 2;
    optimizer = make("zo-sgd-fd", &hp, 10, d);
    double losses3[3] = {2.0, 2.5, 1.0};
    run_step(optimizer, 0, losses3, &plan, &up);
    ZT_CHECK(plan.n_variants == 3 && plan.terms[2][0].seed == plan.seeds[1], "fd q plan");
    ZT_CHECK_CLOSE(up.terms[0].coeff, d / 1e-3 * 0.5 / 2, 0, COEFF_RTOL, "fd q 0");
    ZT_CHECK_CLOSE(up.terms[1].coeff, d / 1e-3 * -1.0 / 2, 0, COEFF_RTOL, "fd q 1");
    zt_optimizer_free(optimizer);
    hp.n_directions = 1;

    /* ZO-signSGD (docs/spec.md §7.3): rule SIGN, coefficient sign(Delta), sign(0) = 0 -> no update.
     */
    optimizer = make("zo-signsgd", &hp, 10, d);
    run_step(optimizer, 0, (double[]){1.0, 0.5}, &plan, &up);
    ZT_CHECK(plan.dist == ZT_DIRECTIONS_SPHERE && up.rule == ZT_UPDATE_SIGN, "signsgd rule");
    ZT_CHECK(up.n_terms == 1 && up.terms[0].coeff == -1.0f, "signsgd coeff %g",
             up.n_terms ? up.terms[0].coeff : 0.0);
    run_step(optimizer, 1, (double[]){1.0, 1.0}, &plan, &up);
    ZT_CHECK(up.n_terms == 0, "signsgd sign(0) = 0: %d terms", up.n_terms);
    zt_optimizer_free(optimizer);

    /* ZO-AdaMM (docs/spec.md §7.4): the forward estimate into the AMSGrad rule. */
    hp.beta1 = 0.85;
    hp.beta2 = 0.99;
    hp.adam_eps = 1e-7;
    optimizer = make("zo-adamm", &hp, 10, d);
    run_step(optimizer, 0, losses, &plan, &up);
    ZT_CHECK(up.rule == ZT_UPDATE_ADAMM && plan.dist == ZT_DIRECTIONS_SPHERE, "adamm rule");
    ZT_CHECK_CLOSE(up.beta1, 0.85, 0, 1e-12, "beta1");
    ZT_CHECK_CLOSE(up.beta2, 0.99, 0, 1e-12, "beta2");
    ZT_CHECK_CLOSE(up.adam_eps, 1e-7, 0, 1e-12, "adam eps");
    ZT_CHECK_CLOSE(up.terms[0].coeff, d / 1e-3 * 0.25, 0, COEFF_RTOL, "adamm coeff");
    ZT_CHECK(zt_optimizer_get_info(optimizer)->state_copies == 3, "adamm copies");
    zt_optimizer_free(optimizer);
}

/* STP (docs/spec.md §6.1): argmin of f(x), f(x + a s), f(x - a s); ties stay, then prefer +a s. */
static void test_stp(void) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.lr = 2e-5;
    hp.lr_schedule = ZT_SCHEDULE_COSINE;
    const int K = 40;
    zt_optimizer *optimizer = make("stp", &hp, K, 1000);
    zt_step_plan plan;
    zt_step_update up;
    struct {
        double here, plus, minus;
        double move; /* 0 stay, +1 to theta + a s, -1 to theta - a s */
    } cases[] = {
        {1.0, 2.0, 3.0, 0}, {3.0, 1.0, 2.0, +1}, {3.0, 2.0, 1.0, -1}, {1.0, 1.0, 2.0, 0},
        {1.0, 2.0, 1.0, 0}, {2.0, 1.0, 1.0, +1}, {1.0, 1.0, 1.0, 0},
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        int step = 10 + c;
        double a = cosdec(2e-5, 0.0, step, K);
        run_step(optimizer, step, (double[]){cases[c].here, cases[c].plus, cases[c].minus}, &plan,
                 &up);
        ZT_CHECK(plan.n_variants == 3 && plan.n_terms[0] == 0, "stp plan");
        ZT_CHECK_CLOSE(plan.terms[1][0].coeff, a, 0, COEFF_RTOL, "stp +a at %d", step);
        ZT_CHECK_CLOSE(plan.terms[2][0].coeff, -a, 0, COEFF_RTOL, "stp -a at %d", step);
        ZT_CHECK(up.lr == 1.0 && up.rule == ZT_UPDATE_SGD, "stp lr 1");
        /* the step applied along s: a_k when it moves, 0 when it stays */
        ZT_CHECK_CLOSE(up.step_size, cases[c].move == 0 ? 0.0 : a, 0, COEFF_RTOL,
                       "case %d step_size", c);
        if (cases[c].move == 0) {
            ZT_CHECK(up.n_terms == 0, "case %d stays", c);
        } else {
            /* theta - 1 * (coeff z) = theta + move * a z  =>  coeff = -move * a. */
            ZT_CHECK(up.n_terms == 1, "case %d moves", c);
            ZT_CHECK_CLOSE(up.terms[0].coeff, -cases[c].move * a, 0, COEFF_RTOL, "case %d", c);
        }
    }
    zt_optimizer_free(optimizer);
}

/* S2P (docs/spec.md §6.2): options 1 and 3 probe +-alpha s and move to the lower probe; 2 and 4
 * probe
 * +-rho s, derive alpha from |gamma|, probe +-alpha s in a second round on the same data and
 * move to the lower of those (4 evaluations). */
static void test_s2p(void) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    const int K = 200;
    const double d = 5000;
    hp.lr = 3e-2;
    hp.eps = 2e-3;
    hp.s2p_l = 4.0;
    hp.s2p_l0 = 2.0;
    hp.s2p_l1 = 0.5;
    hp.s2p_a = 1.01;
    hp.s2p_b = 1.01;
    zt_step_plan plan;
    zt_step_update up;
    /* round one f(+) > f(-): options 1, 3 move toward -s; round two (options 2, 4) has
     * f(x + alpha s) = 0.9 < f(x - alpha s) = 1.0: they move toward +s */
    double losses[4] = {1.30, 1.10, 0.90, 1.00};
    double delta = losses[0] - losses[1];
    for (int option = 1; option <= 4; option++) {
        hp.s2p_option = option;
        zt_optimizer *optimizer = make("s2p", &hp, K, (uint64_t)d);
        run_step(optimizer, 5, losses, &plan, &up);
        double probe, alpha;
        if (option == 1) {
            alpha = probe = 3e-2 / sqrt(K * d);
        } else if (option == 3) {
            alpha = probe = sqrt(2.0) / (1.01 * 0.5 * sqrt(d * K));
        } else {
            probe = 2e-3;
            double g = fabs(delta) / (2 * probe);
            alpha =
                option == 2 ? g / (4.0 * d) : g / ((1.01 * 2.0 + sqrt(2.0) * 1.01 * 0.5 * g) * d);
        }
        int two_rounds = option == 2 || option == 4;
        ZT_CHECK(plan.n_variants == (two_rounds ? 4 : 2) && plan.dist == ZT_DIRECTIONS_GAUSSIAN,
                 "s2p plan of %d variants", plan.n_variants);
        ZT_CHECK_CLOSE(plan.terms[0][0].coeff, probe, 0, COEFF_RTOL, "option %d probe", option);
        ZT_CHECK_CLOSE(plan.terms[1][0].coeff, -probe, 0, COEFF_RTOL, "option %d -probe", option);
        if (two_rounds) {
            ZT_CHECK_CLOSE(plan.terms[2][0].coeff, alpha, 0, COEFF_RTOL, "option %d +alpha",
                           option);
            ZT_CHECK_CLOSE(plan.terms[3][0].coeff, -alpha, 0, COEFF_RTOL, "option %d -alpha",
                           option);
        }
        ZT_CHECK(up.n_terms == 1 && up.lr == 1.0, "option %d moves", option);
        /* theta <- theta - coeff z: moving toward -s is coeff +alpha, toward +s -alpha */
        ZT_CHECK_CLOSE(up.terms[0].coeff, two_rounds ? -alpha : alpha, 0, COEFF_RTOL,
                       "option %d alpha", option);
        ZT_CHECK_CLOSE(up.step_size, alpha, 0, COEFF_RTOL, "option %d step_size", option);
        run_step(optimizer, 6, (double[]){1.0, 1.0, 1.0, 1.0}, &plan, &up);
        ZT_CHECK(up.n_terms == 0 && up.step_size == 0.0, "option %d tie stays", option);
        zt_optimizer_free(optimizer);
    }
}

/* AS2P as docs/spec.md §6.4 prescribes, re-implemented here in double. */
typedef struct as2p_reference {
    int total, window_fixed, elapsed;
    double rho0, rho_end, eta_a, eta_b;
    double gammas[256];
    int count;
} as2p_reference;

static double as2p_reference_coeff(as2p_reference *ref, int k, double f_plus, double f_minus) {
    double rho = cosdec(ref->rho0, ref->rho_end, k, ref->total);
    double c = cosdec(2.0, 1.0, k, ref->total);
    double delta = f_plus - f_minus;
    double gamma = delta / (2 * rho);
    ref->gammas[ref->count++] = gamma;
    int window = ref->window_fixed;
    if (ref->elapsed) {
        int elapsed = (k + 1 + 9) / 10; /* ceil(0.1 (k+1)) in integers */
        if (elapsed < 2) elapsed = 2;
        if (elapsed < window) window = elapsed;
    }
    int n = ref->count < window ? ref->count : window;
    double sigma = fabs(gamma);
    if (n >= 2) {
        double mean = 0, var = 0;
        for (int j = ref->count - n; j < ref->count; j++)
            mean += ref->gammas[j];
        mean /= n;
        for (int j = ref->count - n; j < ref->count; j++)
            var += (ref->gammas[j] - mean) * (ref->gammas[j] - mean);
        sigma = sqrt(var / n);
    }
    if (gamma == 0) return 0.0;
    double tau_a = c * ref->eta_a * sigma;
    double gamma_prime = 1.0 / (1.0 / fabs(gamma) + 1.0 / tau_a);
    double alpha = rho * gamma_prime / (ref->eta_b * sigma); /* the §6.3 step 7 form */
    return sign_of(delta) * alpha;                           /* x <- x - beta a s */
}

static double scripted_gamma(int k) {
    if (k == 4 || k == 17) return 0.0; /* equal losses */
    return 3.0 * sin(1.7 * k + 0.3) + 0.5 * (k % 3) + (k == 9 ? 40.0 : 0.0);
}

static void run_as2p(const char *name, int elapsed) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.as2p_window_elapsed = elapsed;
    const int K = 50; /* window 10% of 50 = 5 */
    zt_optimizer *optimizer = make(name, &hp, K, 1000);
    as2p_reference ref = {.total = K,
                          .window_fixed = 5,
                          .elapsed = elapsed,
                          .rho0 = 1e-3,
                          .rho_end = 1e-4,
                          .eta_a = 5,
                          .eta_b = 50};
    zt_step_plan plan;
    zt_step_update up;
    for (int k = 0; k < K; k++) {
        double rho = cosdec(1e-3, 1e-4, k, K);
        double f_plus = 2.0 + rho * scripted_gamma(k), f_minus = 2.0 - rho * scripted_gamma(k);
        run_step(optimizer, k, (double[]){f_plus, f_minus}, &plan, &up);
        double want = as2p_reference_coeff(&ref, k, f_plus, f_minus);
        ZT_CHECK_CLOSE(plan.terms[0][0].coeff, rho, 0, COEFF_RTOL, "%s rho_%d", name, k);
        ZT_CHECK(up.lr == 1.0, "%s lr", name);
        if (want == 0.0) {
            ZT_CHECK(up.n_terms == 0, "%s step %d: gamma 0 gives no move", name, k);
        } else {
            ZT_CHECK(up.n_terms == 1, "%s step %d moves", name, k);
            ZT_CHECK_CLOSE(up.terms[0].coeff, want, 0, COEFF_RTOL, "%s a_%d (elapsed %d)", name, k,
                           elapsed);
            ZT_CHECK_CLOSE(up.step_size, fabs(want), 0, COEFF_RTOL, "%s step_size %d", name, k);
            /* Saturation bound of §6.4: a_k <= rho_k c_k eta_a / eta_b. */
            double c = cosdec(2, 1, k, K);
            ZT_CHECK(fabs(up.terms[0].coeff) <= rho * c * 5.0 / 50.0 * (1 + 1e-6), "bound %d", k);
        }
    }
    zt_optimizer_free(optimizer);
}

static void test_as2p(void) {
    run_as2p("as2p", 0);
    run_as2p("as2p", 1);
    run_as2p("as2p-sign", 0);
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    zt_optimizer *optimizer = make("as2p-sign", &hp, 50, 10);
    zt_step_plan plan;
    ZT_REQUIRE_OK(zt_optimizer_plan(optimizer, 0, 1, &plan));
    ZT_CHECK(plan.dist == ZT_DIRECTIONS_RADEMACHER, "as2p-sign Rademacher");
    zt_optimizer_free(optimizer);
    optimizer = make("as2p", &hp, 50, 10);
    ZT_REQUIRE_OK(zt_optimizer_plan(optimizer, 0, 1, &plan));
    ZT_CHECK(plan.dist == ZT_DIRECTIONS_GAUSSIAN, "as2p Gaussian (docs/spec.md §6.4)");
    zt_optimizer_free(optimizer);

    /* The window is ceil(0.1 K) even where 0.1*K is inexact in binary (0.1*30 = 3.0000...4):
     * the state blob holds a 48-byte header and the window's doubles. */
    optimizer = make("as2p", &hp, 30, 10);
    void *blob;
    size_t n;
    ZT_REQUIRE_OK(zt_optimizer_save_state(optimizer, &blob, &n));
    ZT_CHECK(n == 48 + 3 * sizeof(double), "window of 3 for K = 30: %zu bytes", n);
    free(blob);
    zt_optimizer_free(optimizer);
    optimizer = make("as2p", &hp, 5, 10);
    ZT_REQUIRE_OK(zt_optimizer_save_state(optimizer, &blob, &n));
    ZT_CHECK(n == 48 + 2 * sizeof(double), "window at least 2: %zu bytes", n);
    free(blob);
    zt_optimizer_free(optimizer);
}

static void test_schedules(void) {
    const int K = 100;
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_CONSTANT, 3.0, 1.0, 50, K), 3.0, 0, 0, "const");
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_COSINE, 3.0, 1.0, 0, K), 3.0, 0, 1e-15, "cos 0");
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_COSINE, 3.0, 1.0, 50, K), 2.0, 0, 1e-15,
                   "cos K/2");
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_COSINE, 3.0, 1.0, 100, K), 1.0, 0, 1e-15, "cos K");
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_COSINE, 3.0, 1.0, 25, K),
                   1.0 + 2.0 * 0.5 * (1 + sqrt(0.5)), 0, 1e-15, "cos K/4");
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_COSINE, 3.0, 1.0, 150, K), 1.0, 0, 1e-15,
                   "cos past K holds the end");
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_LINEAR, 3.0, 1.0, 0, K), 3.0, 0, 1e-15, "lin 0");
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_LINEAR, 3.0, 1.0, 50, K), 2.0, 0, 1e-15,
                   "lin K/2");
    ZT_CHECK_CLOSE(zt_schedule_value(ZT_SCHEDULE_LINEAR, 3.0, 1.0, 100, K), 1.0, 0, 1e-15, "lin K");
    const char *names[] = {"constant", "cosine", "linear", "plateau"};
    for (int kind = 0; kind < 4; kind++) {
        ZT_CHECK(zt_schedule_parse(names[kind]) == kind, "parse %s", names[kind]);
        ZT_CHECK(strcmp(zt_schedule_name((zt_schedule_kind)kind), names[kind]) == 0, "name");
    }
    ZT_CHECK(zt_schedule_parse("step") == -1, "unknown schedule");

    /* Through a policy: MeZO's lr decays to 0 (B5), eps decays linearly to --eps-end. */
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.lr = 1e-4;
    hp.lr_schedule = ZT_SCHEDULE_COSINE;
    hp.eps_schedule = ZT_SCHEDULE_LINEAR;
    hp.eps_end = 5e-4;
    zt_optimizer *optimizer = make("mezo", &hp, K, 10);
    int steps[3] = {0, K / 2, K};
    double lrs[3] = {1e-4, 5e-5, 0.0}, epss[3] = {1e-3, 7.5e-4, 5e-4};
    for (int i = 0; i < 3; i++) {
        zt_step_plan plan;
        zt_step_update up;
        run_step(optimizer, steps[i], (double[]){1.0, 0.0}, &plan, &up);
        ZT_CHECK_CLOSE(up.lr, lrs[i], 1e-20, 1e-12, "lr at %d", steps[i]);
        ZT_CHECK_CLOSE(plan.terms[0][0].coeff, epss[i], 0, COEFF_RTOL, "eps at %d", steps[i]);
        ZT_CHECK_CLOSE(up.terms[0].coeff, 1.0 / (2 * epss[i]), 0, COEFF_RTOL, "coeff at %d",
                       steps[i]);
    }
    zt_optimizer_free(optimizer);

    /* An eps schedule that reaches 0 fails at that step and names the option. */
    hp.eps_schedule = ZT_SCHEDULE_COSINE;
    hp.eps_end = 0.0;
    optimizer = make("mezo", &hp, K, 10);
    zt_step_plan plan;
    ZT_CHECK(zt_optimizer_plan(optimizer, K, 1, &plan) == ZT_ERR_INVALID_ARG, "eps 0 rejected");
    ZT_CHECK(strstr(zt_last_error(), "--eps-end") != NULL, "message: %s", zt_last_error());
    zt_optimizer_free(optimizer);
}

static double current_lr(zt_optimizer *optimizer, int step) {
    zt_step_plan plan;
    zt_step_update up;
    run_step(optimizer, step, (double[]){1.0, 0.0}, &plan, &up);
    return up.lr;
}

/* ReduceLROnPlateau, mode min, threshold 0: reduce on the (patience+1)-th bad observation. */
static void test_plateau(void) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.lr = 1e-3;
    hp.lr_schedule = ZT_SCHEDULE_PLATEAU;
    hp.plateau_factor = 0.5;
    hp.plateau_patience = 2;
    zt_optimizer *optimizer = make("mezo", &hp, 100, 10);
    double metrics[] = {1.0,
                        0.9,
                        1.0,
                        0.9,
                        0.95,
                        /* reduce */ 0.95,
                        0.8,
                        NAN,
                        0.8,
                        0.8,
                        /* reduce */ 0.7};
    double want[] = {1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4};
    for (int i = 0; i < (int)(sizeof metrics / sizeof metrics[0]); i++) {
        zt_optimizer_observe(optimizer, metrics[i]);
        ZT_CHECK_CLOSE(current_lr(optimizer, i), want[i], 0, 1e-12, "after observation %d", i);
    }
    zt_optimizer_free(optimizer);

    /* Other schedules ignore observations. */
    hp.lr_schedule = ZT_SCHEDULE_CONSTANT;
    optimizer = make("mezo", &hp, 100, 10);
    for (int i = 0; i < 10; i++)
        zt_optimizer_observe(optimizer, 5.0);
    ZT_CHECK_CLOSE(current_lr(optimizer, 0), 1e-3, 0, 1e-12, "constant ignores observe");
    zt_optimizer_free(optimizer);
}

/* Save at step 20, run on; a fresh optimizer loaded from the blob gives identical updates. */
static void test_state_round_trip(void) {
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.lr_schedule = ZT_SCHEDULE_PLATEAU;
    hp.plateau_patience = 1;
    const int K = 60;
    zt_optimizer *first = make("as2p", &hp, K, 100);
    zt_step_plan plan;
    zt_step_update up, up2;
    for (int k = 0; k < 20; k++) {
        double rho = cosdec(1e-3, 1e-4, k, K);
        run_step(first, k, (double[]){1 + rho * scripted_gamma(k), 1 - rho * scripted_gamma(k)},
                 &plan, &up);
        zt_optimizer_observe(first, 1.0 + (k % 4));
    }
    void *blob;
    size_t n;
    ZT_REQUIRE_OK(zt_optimizer_save_state(first, &blob, &n));
    zt_optimizer *second = make("as2p", &hp, K, 100);
    ZT_CHECK_OK(zt_optimizer_load_state(second, blob, n));
    int identical = 1;
    for (int k = 20; k < K; k++) {
        double rho = cosdec(1e-3, 1e-4, k, K);
        double losses[2] = {1 + rho * scripted_gamma(k), 1 - rho * scripted_gamma(k)};
        run_step(first, k, losses, &plan, &up);
        run_step(second, k, losses, &plan, &up2);
        identical &=
            up.n_terms == up2.n_terms &&
            (up.n_terms == 0 || memcmp(&up.terms[0], &up2.terms[0], sizeof up.terms[0]) == 0);
    }
    ZT_CHECK(identical, "AS2P continues identically after load");
    void *blob2;
    size_t n2;
    ZT_REQUIRE_OK(zt_optimizer_save_state(first, &blob2, &n2));
    void *blob3;
    size_t n3;
    ZT_REQUIRE_OK(zt_optimizer_save_state(second, &blob3, &n3));
    ZT_CHECK(n2 == n3 && memcmp(blob2, blob3, n2) == 0, "states equal at the end");
    free(blob2);
    free(blob3);

    /* The plateau factor survives too. */
    zt_zo_hparams mhp;
    zt_zo_hparams_default(&mhp);
    mhp.lr_schedule = ZT_SCHEDULE_PLATEAU;
    mhp.plateau_patience = 0;
    zt_optimizer *mezo = make("mezo", &mhp, K, 100);
    for (int i = 0; i < 4; i++)
        zt_optimizer_observe(mezo, 1.0); /* best, then 3 reductions */
    void *mblob;
    size_t mn;
    ZT_REQUIRE_OK(zt_optimizer_save_state(mezo, &mblob, &mn));
    zt_optimizer *mezo2 = make("mezo", &mhp, K, 100);
    ZT_CHECK_OK(zt_optimizer_load_state(mezo2, mblob, mn));
    ZT_CHECK_CLOSE(current_lr(mezo2, 0), 1e-9, 0, 1e-12, "plateau factor restored");
    zt_optimizer_observe(mezo2, 1.0);
    ZT_CHECK_CLOSE(current_lr(mezo2, 0), 1e-10, 0, 1e-12, "plateau best restored");

    /* Errors: another policy, a truncated blob, another window, a bad magic. */
    ZT_CHECK(zt_optimizer_load_state(mezo2, blob, n) == ZT_ERR_INVALID_ARG, "policy mismatch");
    ZT_CHECK(strstr(zt_last_error(), "as2p") != NULL, "message: %s", zt_last_error());
    ZT_CHECK(zt_optimizer_load_state(second, blob, n - 8) != ZT_OK, "truncated");
    ZT_CHECK(zt_optimizer_load_state(second, blob, 10) == ZT_ERR_FORMAT, "shorter than header");
    zt_optimizer *other_window = make("as2p", &hp, 2 * K, 100);
    ZT_CHECK(zt_optimizer_load_state(other_window, blob, n) == ZT_ERR_INVALID_ARG, "window");
    ZT_CHECK(strstr(zt_last_error(), "--steps") != NULL, "message: %s", zt_last_error());
    ((unsigned char *)blob)[0] ^= 0xFF;
    ZT_CHECK(zt_optimizer_load_state(second, blob, n) == ZT_ERR_FORMAT, "magic");
    free(blob);
    free(mblob);
    zt_optimizer_free(first);
    zt_optimizer_free(second);
    zt_optimizer_free(other_window);
    zt_optimizer_free(mezo);
    zt_optimizer_free(mezo2);
}

static void expect_rejected(const char *name, const zt_zo_hparams *hp, int total_steps,
                            const char *fragment) {
    zt_optimizer *optimizer = NULL;
    zt_status s = zt_optimizer_create(name, hp, total_steps, 100, &optimizer);
    ZT_CHECK(s == ZT_ERR_INVALID_ARG && optimizer == NULL, "%s accepted (%s)", name, fragment);
    ZT_CHECK(strstr(zt_last_error(), fragment) != NULL, "message '%s' lacks '%s'", zt_last_error(),
             fragment);
}

static void test_bad_options(void) {
    zt_zo_hparams hp, base;
    zt_zo_hparams_default(&base);
    hp = base;
    hp.s2p_option = 5;
    expect_rejected("s2p", &hp, 10, "--s2p-option 5: expected 1..4");
    hp = base;
    hp.s2p_option = 2;
    hp.s2p_l = 0;
    expect_rejected("s2p", &hp, 10, "--s2p-l 0");
    expect_rejected("lion", &base, 10, "--optimizer lion");
    hp = base;
    hp.n_directions = 0;
    expect_rejected("mezo", &hp, 10, "--directions 0");
    hp.n_directions = ZT_MAX_DIRECTIONS + 1;
    expect_rejected("mezo", &hp, 10, "--directions 17");
    hp.n_directions = 2;
    expect_rejected("stp", &hp, 10, "--directions 2: stp");
    hp = base;
    hp.eps = 0;
    expect_rejected("mezo", &hp, 10, "--eps 0");
    hp = base;
    hp.lr = -1e-3;
    expect_rejected("mezo", &hp, 10, "--lr -0.001");
    hp = base;
    hp.weight_decay = 0.1;
    expect_rejected("as2p", &hp, 10, "--weight-decay 0.1");
    hp = base;
    hp.momentum = 1.0;
    expect_rejected("zo-sgd-mmt", &hp, 10, "--momentum 1");
    hp = base;
    hp.beta2 = 1.5;
    expect_rejected("zo-adamm", &hp, 10, "--beta2 1.5");
    hp = base;
    hp.as2p_window_frac = 0;
    expect_rejected("as2p-sign", &hp, 10, "--as2p-window 0");
    hp = base;
    hp.lr_schedule = ZT_SCHEDULE_PLATEAU;
    hp.plateau_factor = 1.5;
    expect_rejected("mezo", &hp, 10, "--plateau-factor 1.5");
    hp = base;
    hp.lr_schedule = (zt_schedule_kind)9;
    expect_rejected("mezo", &hp, 10, "--lr-schedule 9");
    expect_rejected("mezo", &base, 0, "--steps 0");

    /* Options a policy does not use are not checked; lr 0 is legal (a no-op run). */
    hp = base;
    hp.momentum = 5.0;
    hp.s2p_option = 9;
    hp.lr = 0.0;
    zt_optimizer *optimizer = NULL;
    ZT_CHECK_OK(zt_optimizer_create("mezo", &hp, 10, 100, &optimizer));
    zt_optimizer_free(optimizer);

    /* finish rejects a plan of the wrong shape. */
    optimizer = make("mezo", &base, 10, 100);
    zt_step_plan plan;
    zt_step_update up;
    ZT_REQUIRE_OK(zt_optimizer_plan(optimizer, 0, 1, &plan));
    plan.n_variants = 3;
    ZT_CHECK(zt_optimizer_finish(optimizer, 0, &plan, (double[]){1, 2, 3}, &up) ==
                 ZT_ERR_INVALID_ARG,
             "wrong plan shape");
    zt_optimizer_free(optimizer);
}

int main(void) {
    test_registry();
    test_direction_seeds();
    test_mezo();
    test_central_variants();
    test_forward();
    test_stp();
    test_s2p();
    test_as2p();
    test_schedules();
    test_plateau();
    test_state_round_trip();
    test_bad_options();
    return zt_test_finish("zo_policies");
}
