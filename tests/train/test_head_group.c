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
 *    batch's K embeddings gather (opt-pre);
 * 3. the head blocks (the CPU's head_vocab_chunk): the fixtures' 504-word vocabulary fits one
 *    block of the CPU's 512 rows, so 1 and 2 run again with blocks of 100 rows (five, and a last
 *    of 4), where the running log-sum-exp crosses blocks; and a K = 2 forward's
 *    log-probabilities by blocks of 100 stay within 2 float ulps of the whole-table head's
 *    (target_logprobs), its logits within 1e-6 of the largest, and its staging plan shrinks by the
 * table. */
#include <math.h>
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
 * (7.8%) and every larger one's (under 8%) one variant at a time; and the bound itself. With
 * head blocks every model takes pairs. */
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
    /* A model whose table is under an eighth (64 x 32 of ~2.1M, as opt-350m's 7.8%): one
     * variant at a time where the head stages whole tables, pairs where it stages blocks. */
    zt_opt_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 64, c.hidden_size = 32, c.num_hidden_layers = 8, c.num_attention_heads = 2;
    c.ffn_dim = 4096, c.max_position_embeddings = 16, c.word_embed_proj_dim = 32;
    c.do_layer_norm_before = 1, c.enable_bias = 1, c.layer_norm_elementwise_affine = 1;
    c.bos_token_id = 2, c.eos_token_id = 2, c.pad_token_id = 1;
    zt_backend *be = fixture->be;
    zt_model *narrow = NULL;
    ZT_REQUIRE_OK(zt_model_create_random(&zt_opt_arch, &c, ZT_F32, 1, be, &narrow));
    const int saved = be->head_vocab_chunk;
    be->head_vocab_chunk = 0;
    const int whole = zt_model_head_group_limit(narrow);
    be->head_vocab_chunk = 512;
    const int blocks = zt_model_head_group_limit(narrow);
    be->head_vocab_chunk = saved;
    ZT_CHECK(whole == 1 && blocks == ZT_HEAD_GROUP_VARIANTS,
             "a table of %zu of %zu parameters groups %d with whole tables, %d with blocks",
             narrow->tensors[narrow->lm_head].n_elems, zt_model_parameter_count(narrow), whole,
             blocks);
    zt_model_free(narrow);
}

/* A MeZO pair's log-probabilities and logits by blocks of `cols` table rows against the
 * whole-table head (head_vocab_chunk 0) on the same model. */
static void check_blocks_against_whole(zt_model *m, const zt_batch *b, int cols) {
    const zt_direction plus = {5, 1e-2f}, minus = {5, -1e-2f};
    const zt_perturbation mezo[2] = {{&plus, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                     {&minus, 1, ZT_DIST_GAUSSIAN, 1.0f}};
    const size_t r = (size_t)b->n_targets, v = (size_t)m->dims.vocab_size;
    float *lp[2], *logits[2];
    zt_memory_plan plan[2];
    const zt_workspace_shape shape = {b->batch, b->seq_len, 2, 1, 0};
    const int saved = m->be->head_vocab_chunk;
    for (int i = 0; i < 2; i++) {
        m->be->head_vocab_chunk = i == 0 ? 0 : cols;
        lp[i] = malloc(2 * r * sizeof(float));
        logits[i] = malloc(2 * r * v * sizeof(float));
        head_group_forward(m, b, mezo, 2, 0, lp[i], logits[i]);
        zt_model_plan_memory(m, &shape, &plan[i]);
    }
    m->be->head_vocab_chunk = saved;
    double worst_ulps = 0.0, worst_logit = 0.0;
    for (size_t i = 0; i < 2 * r; i++) {
        const float ulp = nextafterf(fabsf(lp[0][i]), INFINITY) - fabsf(lp[0][i]);
        const double ulps = fabs((double)lp[1][i] - (double)lp[0][i]) / ulp;
        if (ulps > worst_ulps) worst_ulps = ulps;
    }
    /* a GEMM on a block of columns may take other kernel tails than on the whole table: its
     * logits agree to the dot products' rounding, against the largest logit */
    double largest = 0.0;
    for (size_t i = 0; i < 2 * r * v; i++)
        if (fabs((double)logits[0][i]) > largest) largest = fabs((double)logits[0][i]);
    for (size_t i = 0; i < 2 * r * v; i++) {
        const double d = fabs((double)logits[1][i] - (double)logits[0][i]) / largest;
        if (d > worst_logit) worst_logit = d;
    }
    const double table_bytes = (double)m->tensors[m->lm_head].n_elems * sizeof(float);
    printf("blocks of %d rows against the whole table: log-probabilities within %.2f ulp, logits "
           "within %.2g of the largest; staging %zu -> %zu bytes\n",
           cols, worst_ulps, worst_logit, plan[0].staging_bytes, plan[1].staging_bytes);
    ZT_CHECK(worst_ulps <= 2.0, "blocks of %d: a log-probability %.2f ulps from the whole head's",
             cols, worst_ulps);
    ZT_CHECK(worst_logit <= 1e-6, "blocks of %d: a logit %.3g from the whole head's", cols,
             worst_logit);
    /* two tables (K = 2) give way to two blocks of `cols` rows, the layers' slots aside */
    ZT_CHECK((double)plan[0].staging_bytes - (double)plan[1].staging_bytes >=
                 2.0 * table_bytes * (1.0 - (double)cols / (double)v) - 2.0 * table_bytes * 0.5,
             "blocks of %d: staging %zu bytes, the whole table's %zu", cols, plan[1].staging_bytes,
             plan[0].staging_bytes);
    for (int i = 0; i < 2; i++) {
        free(lp[i]);
        free(logits[i]);
    }
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

    /* 3. the head blocks across block boundaries */
    ZT_REQUIRE(be->head_vocab_chunk >= m->dims.vocab_size,
               "the CPU's head blocks (%d rows) split the fixture's %d-word vocabulary: the "
               "checks above no longer cover one block",
               be->head_vocab_chunk, m->dims.vocab_size);
    const int saved = be->head_vocab_chunk;
    be->head_vocab_chunk = 100;
    printf("head blocks of 100 rows:\n");
    head_group_check_fixture(be, "opt-pre", ZT_GEMM_F32);
    head_group_check_fixture(be, "opt-post", ZT_GEMM_F32);
    head_group_check_fixture(be, "opt-pre-bf16", ZT_GEMM_HALF);
    check_forward_draws_all(m, &b);
    check_step_draws(m, &b, &t);
    be->head_vocab_chunk = saved;
    check_blocks_against_whole(m, &b, 100);

    zt_targets_free(&t);
    fixture_lm_batch_free(&lm);
    zt_st_close(ref);
    zt_model_free(m);
    zt_backend_destroy(be);
    return zt_test_finish("test_head_group");
}
