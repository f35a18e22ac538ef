/* Zeroth-order optimizers as policies (docs/design.md §3). A policy never touches tensors: for step
 * k it chooses the K variants theta + sum_i a_ki z_i to evaluate (zt_step_plan), then turns their
 * K losses into the update's coefficients (zt_step_update). The engine (engine.h) does the
 * rest on any backend. Formulas and resolved ambiguities: docs/spec.md §4, §6, §7, §9. */
#ifndef ZT_ZO_OPTIMIZER_H
#define ZT_ZO_OPTIMIZER_H

#include <stdint.h>

#include "backend.h"
#include "zo/schedule.h"

enum {
    ZT_MAX_DIRECTIONS = 16,                  /* q directions per step */
    ZT_MAX_VARIANTS = 2 * ZT_MAX_DIRECTIONS, /* K evaluations per step */
};

typedef enum zt_direction_dist {
    ZT_DIRECTIONS_GAUSSIAN = 0,
    ZT_DIRECTIONS_RADEMACHER = 1,
    ZT_DIRECTIONS_SPHERE = 2, /* Gaussian normalised to radius sphere_radius (engine) */
} zt_direction_dist;

/* Every option of every optimizer; each resolved ambiguity of docs/spec.md §9 is a named field
 * with the default chosen there (zt_zo_hparams_default). */
typedef struct zt_zo_hparams {
    double lr;      /* alpha_0 / eta */
    double eps;     /* epsilon / mu / rho_0 (perturbation scale) */
    double eps_end; /* rho_end for the eps schedule (AS2P: eps/10) */
    zt_schedule_kind lr_schedule, eps_schedule;
    double weight_decay; /* coupled L2, MeZO's mask (no biases / layer norms) */
    int n_directions;    /* q */
    zt_direction_dist dist;
    int dist_given;          /* --dist was given: an optimizer that cannot honour it refuses */
    int sphere_scale_sqrt_d; /* sphere radius eps*sqrt(d) instead of eps (docs/spec.md §7.1, C5) */
    double momentum;         /* ZO-SGD-MMT beta */
    double beta1, beta2, adam_eps;                   /* ZO-AdaMM (delta = 1e-8 resolution C4) */
    int s2p_option;                                  /* 1..4 */
    double s2p_l, s2p_l0, s2p_l1, s2p_a, s2p_b;      /* smoothness constants of S2P options */
    double as2p_eta_a, as2p_eta_b, as2p_window_frac; /* 5, 50, 0.10 */
    int as2p_window_elapsed;                         /* B2 alternative: window = ceil(frac*(k+1)) */
    double plateau_factor;
    int plateau_patience; /* plateau lr decay (C4: 0.1, 10) */
} zt_zo_hparams;

void zt_zo_hparams_default(zt_zo_hparams *hp);

/* What step k evaluates. variant[k] = theta + sum_t terms[k][t].coeff * z(terms[k][t].seed);
 * a variant with no terms is theta itself. */
typedef struct zt_step_plan {
    int n_variants;
    int n_terms[ZT_MAX_VARIANTS];
    zt_direction terms[ZT_MAX_VARIANTS][ZT_MAX_DIRECTIONS];
    int n_directions;
    uint64_t seeds[ZT_MAX_DIRECTIONS]; /* the step's directions */
    zt_direction_dist dist;
} zt_step_plan;

/* What the step does: theta <- theta - lr * (rule(sum_t coeff_t z_t) + wd * theta). */
typedef struct zt_step_update {
    int n_terms;
    zt_direction terms[ZT_MAX_DIRECTIONS];
    zt_update_rule rule;
    double lr, weight_decay;
    double beta1, beta2, adam_eps;
    double projected_grad; /* the scalar(s) the policy derived, for the log (first direction) */
    /* The step the update applies, for the progress line, metrics and log: lr for the gradient
     * policies; for the search policies (lr 1) the distance moved along s, |coefficient| =
     * alpha_k or beta_k a_k, 0 when the step stays. -1: not recorded (a log written before). */
    double step_size;
} zt_step_update;

typedef struct zt_optimizer zt_optimizer;

typedef struct zt_optimizer_info {
    const char *name;
    const char *summary;
    int state_copies;          /* f32 copies of the trainable parameters it keeps (0, 1 or 3) */
    const char *distributions; /* the --dist values its estimator allows */
    const char *flags;         /* the options it reads, besides --steps, --batch-size, --seed */
    const char *step_label;    /* what step_size is called: "lr", or "alpha" for the searches */
} zt_optimizer_info;

/* Known optimizers: mezo (= zo-sgd), zo-sgd-fd, zo-sgd-sign, zo-signsgd, ga-sign, zo-sgd-mmt,
 * zo-adamm, stp, s2p, as2p, as2p-sign. */
int zt_optimizer_count(void);
const zt_optimizer_info *zt_optimizer_info_at(int index);
const zt_optimizer_info *zt_optimizer_find(const char *name);

/* total_steps fixes the schedules; n_params is d (for S2P and the sphere). */
zt_status zt_optimizer_create(const char *name, const zt_zo_hparams *hp, int total_steps,
                              uint64_t n_params, zt_optimizer **out);
void zt_optimizer_free(zt_optimizer *optimizer);
const zt_optimizer_info *zt_optimizer_get_info(const zt_optimizer *optimizer);

/* Step k: the variants to evaluate. step_seed gives the step's directions (seed_i derived
 * from it). */
zt_status zt_optimizer_plan(zt_optimizer *optimizer, int step, uint64_t step_seed,
                            zt_step_plan *plan);

/* A second round of the same step (S2P options 2 and 4 choose their probes +-alpha s from the
 * first round's |gamma|): returns 1 and fills `more` when the losses of `plan` call for further
 * variants on the same data, 0 otherwise. zt_optimizer_append then joins the two plans, and
 * finish receives the losses of both rounds in that order. */
int zt_optimizer_extend(zt_optimizer *optimizer, int step, const zt_step_plan *plan,
                        const double *losses, zt_step_plan *more);
/* plan += more's variants (same directions). */
zt_status zt_optimizer_append(zt_step_plan *plan, const zt_step_plan *more);

/* Step k, after evaluation: losses[k] of each planned variant -> the update. */
zt_status zt_optimizer_finish(zt_optimizer *optimizer, int step, const zt_step_plan *plan,
                              const double *losses, zt_step_update *update);

/* Plateau schedules observe a metric (e.g. dev loss); others ignore it. */
void zt_optimizer_observe(zt_optimizer *optimizer, double metric);

/* The policy's scalar state (AS2P's gamma window, plateau counters), for snapshots: a
 * byte-exact blob. */
zt_status zt_optimizer_save_state(const zt_optimizer *optimizer, void **blob, size_t *n_bytes);
zt_status zt_optimizer_load_state(zt_optimizer *optimizer, const void *blob, size_t n_bytes);

/* Direction seed i of a step: a pure function, shared by every rank and by replay. */
uint64_t zt_direction_seed(uint64_t step_seed, int direction);

#endif
