/* The head's table staged for a group of variants from one draw (docs/design.md §2.3), on the
 * CPU backend and the tied fixtures:
 *
 * 1. bits (head_group_bits.h): a K-variant forward's log-probabilities and logits equal, bit for
 *    bit, K forwards of one variant each, for K = 2, 3, 5 and batch-invariant K = 2, on opt-pre,
 *    opt-post (a project_out in the head input) and opt-pre-bf16 under --gemm half;
 * 2. draws, counted by the backend (backend.h n_z_drawn), against the count derived here from
 *    the tensor sizes: a K = 4 forward over one seed draws a layer tensor's z once, the head's
 *    tensors (table, final norm) once per group of ZT_HEAD_GROUP_VARIANTS, and each variant's
 *    gathered rows; K = 3 with the unperturbed variant first draws the head's once; a
 *    steady-state MeZO step (K = 2, the previous step's update pending) draws exactly 2 z per
 *    trainable element, but 1 for the position table, which is only gathered, plus the rows the
 *    batch's K embeddings gather (opt-pre). */
#include <string.h>

#include "core/status.h"
#include "data/targets.h"
#include "opt/opt.h"
#include "train/trainable.h"
#include "zo/engine.h"
#include "train_util.h"
#include "zt_test.h"
#include "lm_objective.h"
#include "head_group_bits.h"

/* Element counts of the fixture's tensors by role. */
typedef struct sizes {
    double all, tokens, positions, head_input; /* head_input: final norm, project_out */
} sizes;

static sizes sizes_of(const zt_model *m) {
    sizes s = {0};
    for (int id = 0; id < m->n_tensors; id++) {
        const double n = (double)m->tensors[id].n_elems;
        const char *name = m->tensors[id].name;
        s.all += n;
        if (id == m->embed_tokens)
            s.tokens += n;
        else if (strstr(name, "embed_positions"))
            s.positions += n;
        else if (strstr(name, "final_layer_norm") && !strstr(name, "layers."))
            s.head_input += n;
        else if (strstr(name, "project_out"))
            s.head_input += n;
    }
    return s;
}

/* A forward of k_count variants of one seed, nothing pending: its z draws, counted, against a
 * layer tensor's z drawn once, the head's tensors (table, final norm) `head_draws` times, and
 * each perturbed variant's gathered rows. */
static void check_forward_draws(zt_model *m, const zt_batch *b, const zt_perturbation *p,
                                int k_count, double head_draws, const char *what) {
    const size_t r = (size_t)b->n_targets;
    float *lp = malloc(k_count * r * sizeof(float));
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {b->batch, b->seq_len, k_count, 1, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    zt_variants v = {k_count, p, NULL};
    const unsigned long long before = m->be->n_z_drawn;
    ZT_REQUIRE_OK(zt_model_forward(m, ws, b, &v, lp, NULL));
    const double drawn = (double)(m->be->n_z_drawn - before);
    const sizes s = sizes_of(m);
    int perturbed = 0;
    for (int k = 0; k < k_count; k++)
        perturbed += p[k].n_terms > 0;
    const double rows = (double)b->batch * b->seq_len;
    const double gathered = perturbed * rows * (m->dims.head_input_size + m->dims.hidden_size);
    const double want = (s.all - s.tokens - s.positions - s.head_input) +
                        head_draws * (s.tokens + s.head_input) + gathered;
    printf("%s, K = %d: %.0f z drawn, %.0f expected (layers once, table and final norm %.0f "
           "times, %.0f gathered)\n",
           what, k_count, drawn, want, head_draws, gathered);
    ZT_CHECK(drawn == want, "%s: K = %d forward drew %.0f z, expected %.0f", what, k_count, drawn,
             want);
    zt_workspace_free(ws);
    free(lp);
}

static void check_forward_draws_all(zt_model *m, const zt_batch *b) {
    const zt_direction d[4] = {{11, 1e-3f}, {11, -1e-3f}, {11, 2e-3f}, {11, -2e-3f}};
    zt_perturbation p[4];
    for (int k = 0; k < 4; k++)
        p[k] = (zt_perturbation){&d[k], 1, ZT_DIST_GAUSSIAN, 1.0f};
    /* four variants: two head groups, each drawing the table once */
    check_forward_draws(m, b, p, 4, 2.0, "one seed");
    /* the unperturbed variant first runs its head alone, so +eps z and -eps z pair up */
    const zt_perturbation with_base[3] = {{NULL, 0, ZT_DIST_GAUSSIAN, 1.0f}, p[0], p[1]};
    check_forward_draws(m, b, with_base, 3, 1.0, "unperturbed first");
}

/* lm_evaluate with the previous step's pending update handed to the sweep, as the task
 * objective does (src/train/objective.c). */
static zt_status evaluate_pending(void *ctx, const zt_param_set *ps, const zt_variant_set *vs,
                                  double *losses) {
    lm_objective *o = ctx;
    zt_workspace_set_pending(o->ws, ps->pending);
    zt_status s = lm_evaluate(ctx, ps, vs, losses);
    zt_workspace_set_pending(o->ws, NULL);
    return s;
}

/* Steady-state MeZO steps as the trainer takes them in shadow mode: the previous step's update
 * pending, fused into this step's staging (or applied alone to the gathered tables). */
static void check_step_draws(zt_model *m, const zt_batch *b, const zt_targets *t) {
    uint8_t *all = calloc((size_t)m->n_tensors, 1);
    int count = 0;
    ZT_REQUIRE_OK(zt_model_select(m, NULL, all, &count));
    zt_param_set ps;
    ZT_REQUIRE_OK(zt_trainable_param_set(m, all, &ps));
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.lr = 1e-4;
    hp.eps = 1e-3;
    zt_optimizer *optimizer = NULL;
    ZT_REQUIRE_OK(zt_optimizer_create("mezo", &hp, 4, ps.n_elems, &optimizer));
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {b->batch, b->seq_len, 2, 1, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    float *logprobs = malloc(2 * (size_t)t->n * sizeof *logprobs);
    lm_objective ctx = {m, ws, b, t, all, logprobs};
    zt_objective objective = {&ctx, evaluate_pending};
    zt_engine_options engine = {5, 0};
    zt_deferred_update deferred;
    memset(&deferred, 0, sizeof deferred);
    const sizes s = sizes_of(m);
    const double rows = (double)b->batch * b->seq_len;
    const double gathered = 2.0 * rows * (m->dims.head_input_size + m->dims.hidden_size);
    const double want = 2.0 * s.all - s.positions + gathered;
    ZT_CHECK((double)ps.n_elems == s.all, "%zu trainable of %.0f elements", ps.n_elems, s.all);
    for (int step = 0; step < 3; step++) {
        const unsigned long long before = m->be->n_z_drawn;
        zt_step_record rec;
        unsigned long long n_nonfinite = 0;
        ZT_REQUIRE_OK(zt_zo_step_record(optimizer, &ps, &objective, step, &engine, &rec));
        ZT_REQUIRE_OK(zt_zo_settle_deferred(&ps, &deferred, &n_nonfinite));
        ZT_REQUIRE_OK(zt_zo_defer_update(&ps, &deferred, &rec));
        const double drawn = (double)(m->be->n_z_drawn - before);
        printf("MeZO step %d: %.0f z drawn, %.4f per trainable element (%.0f trainable, %.0f "
               "gathered)%s\n",
               step, drawn, drawn / s.all, s.all, gathered,
               step == 0 ? ", no update pending yet" : "");
        /* step 0 has no update to take: half the draws of a table element and a layer's */
        const double expected = step == 0 ? s.all - s.positions + gathered : want;
        ZT_CHECK(drawn == expected, "MeZO step %d drew %.0f z, expected %.0f", step, drawn,
                 expected);
    }
    unsigned long long n_nonfinite = 0;
    ZT_REQUIRE_OK(zt_zo_settle_deferred(&ps, &deferred, &n_nonfinite));
    zt_deferred_update_free(&deferred);
    zt_workspace_free(ws);
    zt_optimizer_free(optimizer);
    zt_trainable_param_set_free(&ps);
    free(logprobs);
    free(all);
}

/* The group rule on OPT's published sizes, from their shapes alone: the tied table is
 * V x word_embed_proj_dim of the published parameter count; 125m's (31%) takes pairs, 350m's
 * (7.8%) and every larger one's (under 8%) one variant at a time; and the bound itself. */
static void check_group_rule(const zt_model *fixture) {
    const zt_opt_published_shape *shapes = zt_opt_published_shapes();
    for (int i = 0; i < ZT_OPT_N_PUBLISHED_SIZES; i++) {
        const size_t table = (size_t)ZT_OPT_PUBLISHED_VOCAB * (size_t)shapes[i].embed_proj;
        const int want = strcmp(shapes[i].name, "125m") == 0 ? 2 : 1;
        const int got = zt_head_group_limit(table, (size_t)shapes[i].spec_params);
        ZT_CHECK(got == want, "opt-%s: table %zu of %lld parameters groups %d, want %d",
                 shapes[i].name, table, shapes[i].spec_params, got, want);
    }
    ZT_CHECK(zt_head_group_limit(1, 8) == 2 && zt_head_group_limit(1, 9) == 1,
             "an eighth is the bound: %d, %d", zt_head_group_limit(1, 8),
             zt_head_group_limit(1, 9));
    const size_t table = fixture->tensors[fixture->lm_head].n_elems;
    const size_t params = zt_model_parameter_count(fixture);
    ZT_CHECK(zt_model_head_group_limit(fixture) == (table * 8 >= params ? 2 : 1) &&
                 zt_model_head_group_limit(fixture) == 2,
             "the opt-pre fixture (table %zu of %zu) groups %d, and the draw checks below assume 2",
             table, params, zt_model_head_group_limit(fixture));
}

int main(void) {
    char dir[1024], ref_path[1024];
    fixture_path(dir, sizeof dir, "opt-pre", NULL);
    fixture_path(ref_path, sizeof ref_path, "opt-pre", "reference.safetensors");
    zt_backend *be = NULL;
    zt_model *m = NULL;
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 0, &be));
    ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));
    ZT_REQUIRE(m->lm_head == m->embed_tokens, "the opt-pre fixture ties its head");

    fixture_lm_batch lm = fixture_lm_batch_read(ref);
    zt_targets t;
    ZT_REQUIRE_OK(zt_targets_from_labels(lm.batch, lm.seq_len, lm.labels, m->dims.vocab_size, &t));
    zt_batch b = {lm.batch, lm.seq_len, lm.ids, lm.mask, t.n, t.rows, t.ids};

    /* opt-post has a project_out in its head input (head buffers per variant); the bf16 model
     * stages in bf16 under --gemm half */
    head_group_check_fixture(be, "opt-pre", ZT_GEMM_F32);
    head_group_check_fixture(be, "opt-post", ZT_GEMM_F32);
    head_group_check_fixture(be, "opt-pre-bf16", ZT_GEMM_HALF);
    check_group_rule(m);
    check_forward_draws_all(m, &b);
    check_step_draws(m, &b, &t);

    zt_targets_free(&t);
    fixture_lm_batch_free(&lm);
    zt_st_close(ref);
    zt_model_free(m);
    zt_backend_destroy(be);
    return zt_test_finish("test_head_group");
}
