/* bench_step: the time and memory of one zeroth-order step on the CPU backend, with the real OPT
 * objective, for models of a few sizes built with random weights (no checkpoint needed).
 *
 * A step is timed whole (zt_zo_step), then split into its three phases, each measured on its
 * own with the same ops the step runs:
 *   staging  the perturbation of the trainable tensors for every variant (backend perturb):
 *            shadow mode stages each tensor into an f32 buffer per variant, except that the
 *            embedding and position rows of the batch are read by perturbed gathers (backend
 *            gather_rows), inplace mode moves the master weights K+1 times (+eps, -2eps, +eps
 *            for MeZO);
 *   forward  the K forwards without the perturbation cost: shadow mode sweeps K unperturbed
 *            variants over an f32 twin of the model (what the GEMMs read after staging), inplace
 *            mode runs K plain forwards over the master weights;
 *   update   zt_zo_apply_update on the last step's record.
 * The split is checked against the step; a gap above SPLIT_TOLERANCE is reported, not hidden.
 * Bytes moved and FLOPs are analytic estimates (formulas at bytes_per_step and forward_flops). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/status.h"
#include "cpu/cpu_common.h"
#include "cpu/rng_blocks.h"
#include "cpu/z_terms.h"
#include "data/dataset.h"
#include "opt/opt.h"
#include "train/objective.h"
#include "train/trainable.h"
#include "zo/engine.h"
#include "zo/optimizer.h"

static const double SPLIT_TOLERANCE = 0.10; /* |step - sum of phases| / step worth a warning */
static const uint64_t MODEL_SEED = 20240607;
static const uint64_t BATCH_SEED = 7;
static const uint64_t RUN_SEED = 42;

enum { MAX_SIZES = 8 };

typedef struct bench_options {
    const char *sizes[MAX_SIZES];
    int n_sizes;
    zt_dtype dtype;
    int batch_size, seq_len;
    const char *optimizer;
    const char *dist; /* NULL: the optimizer's own */
    zt_perturb_mode mode;
    int steps, warmup;
    int threads;
    int head_blocks; /* -1: the backend's head_vocab_chunk */
    int json;
    /* the draw floor: z per ns of one core drawing as the ops do, and the backend's threads */
    double gauss_per_ns, rademacher_per_ns;
    int backend_threads;
} bench_options;

/* ---- time and small helpers ---- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* CPU time of the whole process (all threads): against wall time it shows how many cores a
 * phase kept busy, and so whether a slow step waited for the machine rather than computed. */
static double process_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* Wall and process CPU time summed over the laps of one phase. */
typedef struct meter {
    double wall_ms, cpu_ms;
    int laps;
    double lap_wall_ms, lap_cpu_ms;
} meter;

static void meter_start(meter *m) {
    m->lap_wall_ms = now_ms();
    m->lap_cpu_ms = process_cpu_ms();
}

/* Ends a lap; returns its wall time. */
static double meter_stop(meter *m) {
    double ms = now_ms() - m->lap_wall_ms;
    m->wall_ms += ms;
    m->cpu_ms += process_cpu_ms() - m->lap_cpu_ms;
    m->laps++;
    return ms;
}

static double meter_mean_ms(const meter *m) {
    return m->laps ? m->wall_ms / m->laps : 0.0;
}

/* Cores kept busy on average: near the thread count when the phase had the machine to itself. */
static double meter_cores(const meter *m) {
    return m->wall_ms > 0.0 ? m->cpu_ms / m->wall_ms : 0.0;
}

/* Everything measured for one model. Times are milliseconds per step. */
typedef struct bench_result {
    const char *size;
    zt_opt_config cfg;
    size_t n_params, n_trainable;
    int n_variants, state_copies;
    int staging_passes;  /* shadow: perturbed variants; inplace: moves (see staging_passes) */
    double theta_passes; /* passes over the trainable weights per step, averaged over their
                            elements (see sweeps_per_step) */
    double z_draws;      /* z elements the backend generated per trainable element per step (its
                            counter, backend.h n_z_drawn), the perturbed gathers' rows included */
    int sr_draws;        /* stochastic-rounding words per element per step (half weights) */
    zt_dist dist;        /* of the step's directions */
    double first_loss;
    double create_ms; /* zt_model_create_random, for the record */
    meter step, staging, forward, update;
    double step_min_ms, step_max_ms;
    meter forward_master; /* shadow mode: the same sweep over the master dtype, for contrast */
    double staging_bytes, forward_weight_bytes, update_bytes;
    double forward_flops;
    zt_mem_stats mem;
    zt_memory_plan plan;
} bench_result;

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double mib(double bytes) {
    return bytes / (1024.0 * 1024.0);
}

static double gb_per_s(double bytes, double ms) {
    return ms > 0.0 ? bytes / (ms * 1e6) : 0.0;
}

static zt_status report(zt_status s) {
    if (s != ZT_OK) fprintf(stderr, "bench_step: %s\n", zt_last_error());
    return s;
}

/* ---- model configurations ---- */

static void opt_defaults(zt_opt_config *c) {
    memset(c, 0, sizeof *c);
    c->do_layer_norm_before = 1;
    c->enable_bias = 1;
    c->layer_norm_elementwise_affine = 1;
    c->bos_token_id = 2;
    c->eos_token_id = 2;
    c->pad_token_id = 1;
}

/* tiny: the test fixtures' shape (tests/fixtures/opt-pre), positions widened to the sequence;
 * small: a 6-layer model with OPT's vocabulary; 125m: facebook/opt-125m. */
static zt_status size_config(const char *size, int seq_len, zt_opt_config *c) {
    opt_defaults(c);
    if (strcmp(size, "tiny") == 0) {
        c->vocab_size = 504, c->hidden_size = 32, c->num_hidden_layers = 2;
        c->num_attention_heads = 4, c->ffn_dim = 64;
        c->max_position_embeddings = seq_len > 32 ? seq_len : 32;
    } else if (strcmp(size, "small") == 0) {
        c->vocab_size = 50272, c->hidden_size = 256, c->num_hidden_layers = 6;
        c->num_attention_heads = 4, c->ffn_dim = 1024, c->max_position_embeddings = 2048;
    } else if (strcmp(size, "125m") == 0) {
        c->vocab_size = 50272, c->hidden_size = 768, c->num_hidden_layers = 12;
        c->num_attention_heads = 12, c->ffn_dim = 3072, c->max_position_embeddings = 2048;
    } else {
        return zt_fail(ZT_ERR_INVALID_ARG, "--model-size '%s': expected tiny, small or 125m", size);
    }
    c->word_embed_proj_dim = c->hidden_size;
    if (seq_len > c->max_position_embeddings)
        return zt_fail(ZT_ERR_INVALID_ARG, "--seq-len %d exceeds %s's %d positions", seq_len, size,
                       c->max_position_embeddings);
    return ZT_OK;
}

/* ---- the batch: B random sequences of T tokens, every next token a target ---- */

static zt_status random_lm_batch(const zt_opt_config *c, int batch_size, int seq_len,
                                 zt_task_batch *out) {
    zt_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.kind = ZT_TASK_LM;
    ds.max_sequence = seq_len;
    ds.examples = calloc((size_t)batch_size, sizeof *ds.examples);
    int *indices = malloc((size_t)batch_size * sizeof *indices);
    zt_status s = ds.examples && indices ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "allocating the batch");
    uint64_t rng = BATCH_SEED;
    for (int i = 0; s == ZT_OK && i < batch_size; i++) {
        zt_example *e = &ds.examples[ds.n_examples++];
        e->length = seq_len;
        e->input_ids = malloc((size_t)seq_len * sizeof *e->input_ids);
        e->labels = malloc((size_t)seq_len * sizeof *e->labels);
        if (!e->input_ids || !e->labels) s = zt_fail(ZT_ERR_NOMEM, "allocating the batch");
        /* Ids above the special tokens (0..3 in OPT's vocabulary). */
        for (int t = 0; s == ZT_OK && t < seq_len; t++)
            e->input_ids[t] = e->labels[t] =
                4 + (int32_t)(splitmix64(&rng) % (uint64_t)(c->vocab_size - 4));
        indices[i] = i;
    }
    if (s == ZT_OK) s = zt_task_batch_build(&ds, indices, batch_size, c->pad_token_id, 0, out);
    zt_dataset_free(&ds);
    free(indices);
    return s;
}

/* ---- analytic estimates ---- */

/* Elements of the trainable tensors; those of them the forward (models/sweep.c) does not
 * stage: the position table, read through a perturbed gather of the batch's rows only; and the
 * token table, staged once per variant for the tied LM head (the embedding reads it by a
 * perturbed gather as well). Every other tensor is staged once for all K variants. */
static void trainable_elements(const zt_model *m, const uint8_t *trainable, double *elements,
                               double *gathered_only, double *table) {
    *elements = *gathered_only = *table = 0.0;
    for (int i = 0; i < m->n_tensors; i++) {
        if (!trainable[i]) continue;
        *elements += (double)m->tensors[i].n_elems;
        if (i == zt_opt_position_table(m)) *gathered_only += (double)m->tensors[i].n_elems;
        if (i == m->embed_tokens) *table += (double)m->tensors[i].n_elems;
    }
}

/* Bytes of weight traffic per step; activations are left out (for B*T = 256 rows they are a few
 * MB against hundreds of MB of weights). P trainable elements, Pos the position table (only
 * gathered, B*T rows: not counted), E the token table, s the storage size, K variants, S the
 * staging passes (shadow: the perturbed variants, K for MeZO; inplace: the moves, K + 1),
 * G = ceil(S / zt_model_head_group_limit) head groups:
 *   shadow   staging  (P - Pos - E) (s + 4 S) + E (G s + 4 S)
 *                                         a layer's tensors read once in s and written as f32
 *                                         for the S variants; the token table read per head
 *                                         group
 *            forward  K (P - Pos) 4       the GEMMs and norms read the f32 shadows
 *   inplace  staging  S P 2s              read-modify-write passes over the masters
 *            forward  K (P - Pos) s       the GEMMs read the masters
 *   update            P 2s + 8 c P        read + write each weight once, c f32 state copies
 *                                         read + written (0 for MeZO) */
static void bytes_per_step(const zt_model *m, const uint8_t *trainable, const bench_options *o,
                           bench_result *r) {
    double p, positions, table;
    trainable_elements(m, trainable, &p, &positions, &table);
    double s = (double)zt_dtype_size(o->dtype), k = (double)r->n_variants;
    double passes = (double)r->staging_passes;
    double groups = ceil(passes / zt_model_head_group_limit(m));
    if (o->mode == ZT_PERTURB_SHADOW) {
        const double layered = p - positions - table;
        r->staging_bytes =
            passes > 0.0 ? layered * (s + 4.0 * passes) + table * (groups * s + 4.0 * passes) : 0.0;
        r->forward_weight_bytes = k * (p - positions) * 4.0;
    } else {
        r->staging_bytes = passes * p * 2.0 * s;
        r->forward_weight_bytes = k * (p - positions) * s;
    }
    r->update_bytes = p * 2.0 * s + 8.0 * (double)r->state_copies * p;
}

/* Multiply-adds x2 of one variant's forward, times K: the layers' linears on N = B*T rows,
 * causal attention (query i sees i+1 keys: QK^T and AV cost 2 * 2 * D each per key and head),
 * and the tied head on the R target rows. Layer norms and softmaxes are O(N h), left out. */
static double forward_flops(const zt_opt_config *c, const zt_task_batch *b, int n_variants) {
    double n = (double)b->n_sequences * b->seq_len, h = c->hidden_size, f = c->ffn_dim;
    double t = b->seq_len, layers = c->num_hidden_layers;
    double linears = 2.0 * n * (4.0 * h * h + 2.0 * h * f);
    double attention = 4.0 * (double)b->n_sequences * h * t * (t + 1.0) / 2.0;
    double head = 2.0 * (double)b->n_targets * (double)c->vocab_size * c->word_embed_proj_dim;
    return (double)n_variants * (layers * (linears + attention) + head);
}

/* ---- the three phases, measured alone ---- */

static zt_dist backend_dist(zt_direction_dist dist) {
    return dist == ZT_DIRECTIONS_RADEMACHER ? ZT_DIST_RADEMACHER : ZT_DIST_GAUSSIAN;
}

/* The variants a step evaluates, from a fresh optimizer (planning may advance a policy's state,
 * so the timed optimizer is not asked). */
static zt_status plan_step(const bench_options *o, const zt_zo_hparams *hp, uint64_t n_params,
                           int step, zt_step_plan *plan) {
    zt_optimizer *probe = NULL;
    ZT_TRY(zt_optimizer_create(o->optimizer, hp, o->warmup + o->steps, n_params, &probe));
    zt_status s = zt_optimizer_plan(probe, step, zt_step_seed(RUN_SEED, step), plan);
    zt_optimizer_free(probe);
    return s;
}

static zt_perturbation variant_of(const zt_step_plan *plan, int k) {
    zt_perturbation p = {plan->terms[k], plan->n_terms[k], backend_dist(plan->dist), 1.0f};
    return p;
}

/* Shadow staging of one step as the forward does it: every trainable tensor but the two tables
 * staged once for all perturbed variants into an f32 buffer each (perturb_variants), the token
 * table once per head group of zt_model_head_group_limit perturbed variants (for the LM head; the
 * forward groups variants by index, the same for MeZO; a block of the backend's head_vocab_chunk
 * rows at a time where it has one), and the embedding and position rows of
 * the batch read by perturbed gathers into `rows_out`. shadow holds a buffer of shadow_floats
 * per perturbed variant. */
static zt_status stage_shadow(zt_model *m, const zt_param_set *ps, const zt_step_plan *plan,
                              const zt_task_batch *tb, const int32_t *positions, float *shadow,
                              size_t shadow_floats, float *rows_out) {
    zt_backend *be = m->be;
    const zt_opt_config *c = zt_opt_config_of(m);
    const int n = tb->n_sequences * tb->seq_len;
    zt_perturbation staged[ZT_MAX_VARIANTS];
    void *dst[ZT_MAX_VARIANTS];
    int n_staged = 0;
    for (int k = 0; k < plan->n_variants; k++) {
        zt_perturbation p = variant_of(plan, k);
        if (p.n_terms == 0) continue; /* an unperturbed variant reads the masters */
        dst[n_staged] = shadow + (size_t)n_staged * shadow_floats;
        staged[n_staged++] = p;
    }
    if (n_staged == 0) return ZT_OK;
    for (int i = 0; i < ps->n_params; i++) {
        const zt_param *t = &ps->params[i];
        zt_weight src = {t->data, t->dtype};
        const int id = (int)t->tensor_id;
        if (id != zt_opt_position_table(m) && id != m->embed_tokens) {
            ZT_TRY(be->ops->perturb_variants(be, dst, ZT_F32, src, t->tensor_id, 0, t->n_elems,
                                             staged, n_staged));
            continue;
        }
        for (int k = 0; k < n_staged; k++) {
            zt_gather_perturbation gp = {&staged[k], t->tensor_id, ZT_F32};
            if (id == zt_opt_position_table(m)) {
                ZT_TRY(be->ops->gather_rows(be, rows_out, positions, src, n,
                                            c->max_position_embeddings + 2, c->hidden_size, 0,
                                            &gp));
                continue;
            }
            ZT_TRY(be->ops->gather_rows(be, rows_out, tb->input_ids, src, n, c->vocab_size,
                                        c->word_embed_proj_dim, 0, &gp));
        }
        if (id != m->embed_tokens) continue;
        /* the head's blocks of zt_head_vocab_cols rows, each into the front of the buffers */
        const int head_group = zt_model_head_group_limit(m);
        const size_t row = (size_t)c->word_embed_proj_dim;
        const int cols = zt_head_vocab_cols(be, c->vocab_size);
        for (int g = 0; g < n_staged; g += head_group) {
            const int in_group = n_staged - g < head_group ? n_staged - g : head_group;
            for (int v0 = 0; v0 < c->vocab_size; v0 += cols) {
                const size_t rows = (size_t)(c->vocab_size - v0 < cols ? c->vocab_size - v0 : cols);
                ZT_TRY(be->ops->perturb_variants(
                    be, dst + g, ZT_F32, zt_weight_member(src, (size_t)v0 * row, 1), t->tensor_id,
                    (uint64_t)v0 * row, rows * row, staged + g, in_group));
            }
        }
    }
    return ZT_OK;
}

/* Inplace staging of one step: the K+1 moves of the master weights, back to theta at the end. */
static zt_status stage_inplace(const zt_param_set *ps, const zt_step_plan *plan) {
    zt_perturbation variants[ZT_MAX_VARIANTS];
    for (int k = 0; k < plan->n_variants; k++)
        variants[k] = variant_of(plan, k);
    for (int k = 0; k <= plan->n_variants; k++) {
        zt_direction terms[2 * ZT_MAX_DIRECTIONS];
        const zt_perturbation *from = k > 0 ? &variants[k - 1] : NULL;
        const zt_perturbation *to = k < plan->n_variants ? &variants[k] : NULL;
        int n = zt_inplace_move_terms(from, to, terms);
        if (n == 0) continue;
        zt_perturbation delta = {terms, n, backend_dist(plan->dist), 1.0f};
        for (int i = 0; i < ps->n_params; i++) {
            const zt_param *t = &ps->params[i];
            zt_weight src = {t->data, t->dtype};
            ZT_TRY(ps->be->ops->perturb(ps->be, t->data, t->dtype, src, t->tensor_id, 0, t->n_elems,
                                        &delta));
        }
    }
    return ZT_OK;
}

/* Per-tensor perturb passes of one step: shadow mode stages every perturbed variant, inplace
 * mode makes every non-empty move (K + 1 for MeZO). */
static int staging_passes(const zt_step_plan *plan, zt_perturb_mode mode) {
    int passes = 0;
    for (int k = 0; k <= plan->n_variants; k++) {
        if (mode == ZT_PERTURB_SHADOW) {
            passes += k < plan->n_variants && plan->n_terms[k] > 0;
            continue;
        }
        zt_perturbation from = k > 0 ? variant_of(plan, k - 1) : (zt_perturbation){0};
        zt_perturbation to = k < plan->n_variants ? variant_of(plan, k) : (zt_perturbation){0};
        zt_direction terms[2 * ZT_MAX_DIRECTIONS];
        passes += zt_inplace_move_terms(&from, &to, terms) > 0;
    }
    return passes;
}

/* What a step costs per trainable element, counted from its plan and averaged over the trainable
 * elements: shadow mode reads a layer's tensor once for all perturbed variants, but the token
 * table (fraction `table_share` of the elements) once per head group (head_group variants,
 * zt_model_head_group_limit in models/model.h) with a staged variant; inplace mode reads and writes
 * every weight once per move; the update reads and writes it once, and draws one
 * stochastic-rounding word for f16 / bf16 weights. z draws are counted by the backend (time_steps),
 * not here. */
static void sweeps_per_step(const zt_step_plan *plan, zt_perturb_mode mode, zt_dtype dtype,
                            double table_share, int head_group, bench_result *r) {
    r->theta_passes = 1.0; /* the update */
    r->sr_draws = dtype != ZT_F32;
    if (mode == ZT_PERTURB_SHADOW) {
        int n_groups = 0;
        for (int g = 0; g < plan->n_variants; g += head_group) {
            int staged = 0;
            for (int k = g; k < plan->n_variants && k < g + head_group; k++)
                staged |= plan->n_terms[k] > 0;
            n_groups += staged;
        }
        /* The update is deferred into the next step's staging (docs/design.md §2.5): a staged
         * tensor takes it in its staging pass, which is then no pass of its own; the token
         * table, gathered before the head stages it, takes it alone, then is staged once per
         * head group. */
        r->theta_passes += table_share * n_groups;
        return;
    }
    for (int k = 0; k <= plan->n_variants; k++) {
        zt_perturbation from = k > 0 ? variant_of(plan, k - 1) : (zt_perturbation){0};
        zt_perturbation to = k < plan->n_variants ? variant_of(plan, k) : (zt_perturbation){0};
        zt_direction terms[2 * ZT_MAX_DIRECTIONS];
        r->theta_passes += zt_inplace_move_terms(&from, &to, terms) > 0;
    }
}

static zt_status time_staging(zt_model *m, const zt_param_set *ps, const bench_options *o,
                              const zt_step_plan *plan, const zt_task_batch *tb, meter *timing) {
    zt_backend *be = m->be;
    float *shadow = NULL, *rows_out = NULL;
    int32_t *positions = NULL;
    size_t shadow_bytes = 0, shadow_floats = 0, rows_bytes = 0;
    const size_t n = (size_t)tb->n_sequences * (size_t)tb->seq_len;
    zt_status s = ZT_OK;
    if (o->mode == ZT_PERTURB_SHADOW) {
        for (int i = 0; i < ps->n_params; i++)
            if (ps->params[i].n_elems * sizeof(float) > shadow_bytes)
                shadow_bytes = ps->params[i].n_elems * sizeof(float);
        int widest = m->dims.hidden_size > m->dims.head_input_size ? m->dims.hidden_size
                                                                   : m->dims.head_input_size;
        rows_bytes = n * (size_t)widest * sizeof(float);
        positions = malloc(n * sizeof *positions);
        if (!positions) return zt_fail(ZT_ERR_NOMEM, "bench_step: positions");
        for (size_t i = 0; i < n; i++)
            positions[i] = (int32_t)(i % (size_t)tb->seq_len) + 2;
        size_t n_staged = 0;
        for (int k = 0; k < plan->n_variants; k++)
            n_staged += plan->n_terms[k] > 0;
        shadow_floats = shadow_bytes / sizeof(float);
        shadow_bytes *= n_staged > 0 ? n_staged : 1;
        s = be->ops->alloc(be, shadow_bytes, ZT_MEM_SCRATCH, (void **)&shadow);
        if (s == ZT_OK) s = be->ops->alloc(be, rows_bytes, ZT_MEM_SCRATCH, (void **)&rows_out);
    }
    for (int rep = 0; s == ZT_OK && rep < o->steps; rep++) {
        meter_start(timing);
        s = o->mode == ZT_PERTURB_SHADOW
                ? stage_shadow(m, ps, plan, tb, positions, shadow, shadow_floats, rows_out)
                : stage_inplace(ps, plan);
        meter_stop(timing);
    }
    if (shadow) be->ops->free(be, shadow, shadow_bytes, ZT_MEM_SCRATCH);
    if (rows_out) be->ops->free(be, rows_out, rows_bytes, ZT_MEM_SCRATCH);
    free(positions);
    return s;
}

static zt_batch model_batch(const zt_task_batch *b) {
    zt_batch mb = {b->n_sequences, b->seq_len,     b->input_ids, b->attention_mask,
                   b->n_targets,   b->target_rows, b->target_ids};
    return mb;
}

/* K forwards over `m` with unperturbed weights: one sweep of K variants (shadow), or K plain
 * forwards (inplace), as the objective runs them. */
static zt_status time_forward(zt_model *m, const zt_task_batch *tb, int n_variants,
                              zt_perturb_mode mode, int reps, meter *timing) {
    zt_workspace_shape shape = {tb->n_sequences, tb->seq_len,
                                mode == ZT_PERTURB_SHADOW ? n_variants : 1, 0, 0};
    zt_workspace *ws = NULL;
    ZT_TRY(zt_workspace_create(m, &shape, &ws));
    float *logprobs = malloc((size_t)n_variants * (size_t)tb->n_targets * sizeof *logprobs);
    zt_status s = logprobs ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "allocating log-probabilities");
    zt_perturbation unperturbed[ZT_MAX_VARIANTS];
    for (int k = 0; k < n_variants; k++)
        unperturbed[k] = (zt_perturbation){NULL, 0, ZT_DIST_GAUSSIAN, 1.0f};
    zt_variants variants = {n_variants, unperturbed, NULL};
    zt_batch mb = model_batch(tb);
    for (int rep = 0; s == ZT_OK && rep < reps; rep++) {
        meter_start(timing);
        if (mode == ZT_PERTURB_SHADOW) s = zt_model_forward(m, ws, &mb, &variants, logprobs, NULL);
        for (int k = 0; s == ZT_OK && mode == ZT_PERTURB_INPLACE && k < n_variants; k++)
            s = zt_model_forward(m, ws, &mb, NULL, logprobs, NULL);
        meter_stop(timing);
    }
    free(logprobs);
    zt_workspace_free(ws);
    return s;
}

/* Shadow mode's GEMMs read f32 shadows, whatever the master dtype: the forward of the split runs
 * on an f32 twin of the model (same seed). The sweep over the masters is kept for contrast. */
static zt_status time_forwards(zt_model *m, const bench_options *o, const zt_task_batch *tb,
                               bench_result *r) {
    int shadow_half = o->mode == ZT_PERTURB_SHADOW && o->dtype != ZT_F32;
    /* As a contrast only, one repetition of the master sweep suffices there. */
    ZT_TRY(time_forward(m, tb, r->n_variants, o->mode, shadow_half ? 1 : o->steps,
                        &r->forward_master));
    if (!shadow_half) {
        r->forward = r->forward_master;
        return ZT_OK;
    }
    zt_model *twin = NULL;
    ZT_TRY(zt_model_create_random(&zt_opt_arch, zt_opt_config_of(m), ZT_F32, MODEL_SEED, m->be,
                                  &twin));
    zt_status s = time_forward(twin, tb, r->n_variants, o->mode, o->steps, &r->forward);
    zt_model_free(twin);
    return s;
}

static zt_status time_update(zt_param_set *ps, const zt_step_record *record, int reps,
                             meter *timing) {
    for (int rep = 0; rep < reps; rep++) {
        meter_start(timing);
        zt_status s = zt_zo_apply_update(ps, record);
        meter_stop(timing);
        ZT_TRY(s);
    }
    return ZT_OK;
}

/* ---- one model ---- */

typedef struct bench_run {
    zt_model *model;
    uint8_t *trainable;
    zt_param_set ps;
    zt_optimizer *optimizer;
    zt_workspace *ws;
    zt_task_objective objective_state;
    zt_objective objective;
    zt_task_batch batch;
    zt_deferred_update deferred; /* shadow mode: the last step's update (bench_step) */
} bench_run;

static void bench_run_free(bench_run *br) {
    zt_task_objective_release(&br->objective_state);
    zt_workspace_free(br->ws);
    if (br->optimizer) {
        zt_param_set_free_state(&br->ps, zt_optimizer_get_info(br->optimizer)->state_copies);
        zt_optimizer_free(br->optimizer);
    }
    if (br->ps.params) zt_trainable_param_set_free(&br->ps);
    zt_deferred_update_free(&br->deferred);
    free(br->trainable);
    zt_model_free(br->model);
    zt_task_batch_free(&br->batch);
}

static zt_status bench_setup(zt_backend *be, const bench_options *o, const zt_opt_config *cfg,
                             const zt_zo_hparams *hp, bench_run *br, bench_result *r) {
    double t0 = now_ms();
    ZT_TRY(zt_model_create_random(&zt_opt_arch, cfg, o->dtype, MODEL_SEED, be, &br->model));
    r->create_ms = now_ms() - t0;
    zt_model *m = br->model;
    br->trainable = calloc((size_t)m->n_tensors, 1);
    if (!br->trainable) return zt_fail(ZT_ERR_NOMEM, "allocating the trainable mask");
    int count = 0;
    ZT_TRY(zt_model_select(m, NULL, br->trainable, &count));
    ZT_TRY(zt_trainable_param_set(m, br->trainable, &br->ps));
    ZT_TRY(zt_optimizer_create(o->optimizer, hp, o->warmup + o->steps, br->ps.n_elems,
                               &br->optimizer));
    r->state_copies = zt_optimizer_get_info(br->optimizer)->state_copies;
    ZT_TRY(zt_param_set_alloc_state(&br->ps, r->state_copies));
    zt_step_plan plan;
    ZT_TRY(plan_step(o, hp, br->ps.n_elems, 0, &plan));
    r->n_variants = plan.n_variants;
    r->staging_passes = staging_passes(&plan, o->mode);
    double n_elements, n_gathered, n_table;
    trainable_elements(m, br->trainable, &n_elements, &n_gathered, &n_table);
    sweeps_per_step(&plan, o->mode, o->dtype, n_elements > 0.0 ? n_table / n_elements : 0.0,
                    zt_model_head_group_limit(m), r);
    ZT_TRY(random_lm_batch(cfg, o->batch_size, o->seq_len, &br->batch));

    /* Inplace mode runs one variant at a time: one residual stream, no shadow buffers. */
    int shadow = o->mode == ZT_PERTURB_SHADOW;
    zt_workspace_shape shape = {br->batch.n_sequences, br->batch.seq_len,
                                shadow ? plan.n_variants : 1, shadow,
                                plan.dist == ZT_DIRECTIONS_SPHERE};
    ZT_TRY(zt_workspace_create(m, &shape, &br->ws));
    zt_model_plan_memory(m, &shape, &r->plan);
    br->objective_state.model = m;
    br->objective_state.ws = br->ws;
    br->objective_state.mode = o->mode;
    br->objective_state.perturbed = br->trainable;
    br->objective_state.batch = &br->batch;
    zt_task_objective_bind(&br->objective_state, &br->objective);
    r->n_params = zt_model_parameter_count(m);
    r->n_trainable = br->ps.n_elems;
    return ZT_OK;
}

/* One step as the trainer takes it: in shadow mode the previous step's update goes into this
 * step's staging and this step's is left pending (docs/design.md §2.5); in place, at once. */
static zt_status bench_step(bench_run *br, const bench_options *o, int step,
                            const zt_engine_options *engine, zt_step_record *last) {
    if (o->mode != ZT_PERTURB_SHADOW)
        return zt_zo_step(br->optimizer, &br->ps, &br->objective, step, engine, last);
    ZT_TRY(zt_zo_step_record(br->optimizer, &br->ps, &br->objective, step, engine, last));
    unsigned long long n_nonfinite = 0;
    ZT_TRY(zt_zo_settle_deferred(&br->ps, &br->deferred, &n_nonfinite));
    return zt_zo_defer_update(&br->ps, &br->deferred, last);
}

static zt_status time_steps(bench_run *br, const bench_options *o, bench_result *r,
                            zt_step_record *last) {
    zt_engine_options engine = {RUN_SEED, 1};
    for (int step = 0; step < o->warmup; step++)
        ZT_TRY(bench_step(br, o, step, &engine, last));
    r->step_min_ms = INFINITY;
    const zt_backend *be = br->model->be;
    const unsigned long long drawn_before = be->n_z_drawn;
    for (int i = 0; i < o->steps; i++) {
        meter_start(&r->step);
        zt_status s = bench_step(br, o, o->warmup + i, &engine, last);
        double ms = meter_stop(&r->step);
        ZT_TRY(s);
        if (ms < r->step_min_ms) r->step_min_ms = ms;
        if (ms > r->step_max_ms) r->step_max_ms = ms;
        if (i == 0) r->first_loss = last->losses[0];
    }
    /* Each timed step draws the previous step's update (fused or alone) and its own variants. */
    if (o->steps > 0 && r->n_trainable > 0)
        r->z_draws =
            (double)(be->n_z_drawn - drawn_before) / (double)o->steps / (double)r->n_trainable;
    unsigned long long n_nonfinite = 0; /* the last step's update, outside the timing */
    return zt_zo_settle_deferred(&br->ps, &br->deferred, &n_nonfinite);
}

static zt_status bench_model(zt_backend *be, const bench_options *o, const char *size,
                             bench_result *r) {
    memset(r, 0, sizeof *r);
    r->size = size;
    ZT_TRY(size_config(size, o->seq_len, &r->cfg));
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    if (o->dist) {
        hp.dist =
            strcmp(o->dist, "rademacher") == 0 ? ZT_DIRECTIONS_RADEMACHER : ZT_DIRECTIONS_GAUSSIAN;
        hp.dist_given = 1;
    }
    zt_mem_reset_peak(); /* the peak of this model alone (the previous one is freed) */

    bench_run br;
    memset(&br, 0, sizeof br);
    zt_step_record last;
    zt_status s = bench_setup(be, o, &r->cfg, &hp, &br, r);
    if (s == ZT_OK) s = time_steps(&br, o, r, &last);
    /* Memory is read before the split, whose own buffers (the f32 twin) are not the step's. */
    zt_mem_stats_get(&r->mem);
    zt_step_plan plan;
    if (s == ZT_OK) s = plan_step(o, &hp, br.ps.n_elems, o->warmup, &plan);
    if (s == ZT_OK) r->dist = backend_dist(plan.dist);
    if (s == ZT_OK) s = time_staging(br.model, &br.ps, o, &plan, &br.batch, &r->staging);
    if (s == ZT_OK) s = time_forwards(br.model, o, &br.batch, r);
    if (s == ZT_OK) s = time_update(&br.ps, &last, o->steps, &r->update);
    if (s == ZT_OK) {
        bytes_per_step(br.model, br.trainable, o, r);
        r->forward_flops = forward_flops(&r->cfg, &br.batch, r->n_variants);
    }
    bench_run_free(&br);
    return s;
}

/* ---- the draw floor ---- */

/* z per ns of one core drawing as the ops do (a run of ZT_CPU_Z_RUN_BLOCKS blocks at a time into
 * a buffer that stays in cache, nothing else done with it): the best of three passes over 2^22
 * elements. */
static double z_per_ns_one_core(zt_dist dist) {
    static float run[4 * ZT_CPU_Z_RUN_BLOCKS];
    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    const uint64_t n_blocks = (1u << 22) / 4;
    volatile float sink = 0.0f;
    double best = 0.0;
    for (int pass = 0; pass < 3; pass++) {
        const double start = now_ms();
        for (uint64_t b = 0; b < n_blocks; b += ZT_CPU_Z_RUN_BLOCKS) {
            if (dist == ZT_DIST_GAUSSIAN)
                zt_cpu_gauss_blocks(path, 0x5eed, b, ZT_CPU_Z_RUN_BLOCKS, run);
            else
                zt_cpu_rademacher_blocks(path, 0x5eed, b, ZT_CPU_Z_RUN_BLOCKS, run);
            sink += run[0];
        }
        const double ms = now_ms() - start;
        if (ms > 0.0 && 4.0 * (double)n_blocks / (ms * 1e6) > best)
            best = 4.0 * (double)n_blocks / (ms * 1e6);
    }
    (void)sink;
    return best;
}

/* What the step's z draws alone cost at that rate on the backend's threads, in ms. */
static double draw_floor_ms(const bench_options *o, const bench_result *r) {
    const double rate = r->dist == ZT_DIST_GAUSSIAN ? o->gauss_per_ns : o->rademacher_per_ns;
    const double draws = r->z_draws * (double)r->n_trainable;
    return rate > 0.0 ? draws / (rate * 1e6 * (double)o->backend_threads) : 0.0;
}

/* ---- output ---- */

static const char *mode_name(zt_perturb_mode mode) {
    return mode == ZT_PERTURB_SHADOW ? "shadow" : "inplace";
}

static double split_sum(const bench_result *r) {
    return meter_mean_ms(&r->staging) + meter_mean_ms(&r->forward) + meter_mean_ms(&r->update);
}

static const char *openblas_threading(void) {
    int kind = openblas_get_parallel();
    return kind == 0 ? "sequential" : kind == 1 ? "pthreads" : "OpenMP";
}

static void print_header(const bench_options *o, int backend_threads) {
    double load[3] = {0.0, 0.0, 0.0};
    int have_load = getloadavg(load, 3) == 3;
    printf("bench_step: one ZO step on the CPU backend (random OPT weights, random LM batch)\n");
    printf("machine: %ld online CPUs, load average %.2f; backend threads %d, OpenBLAS threads %d "
           "(%s build)\n",
           sysconf(_SC_NPROCESSORS_ONLN), have_load ? load[0] : -1.0, backend_threads,
           openblas_get_num_threads(), openblas_threading());
    printf("blas:    %s\n", zt_cpu_blas_kernels());
    /* Two thread pools that both spin after their parallel regions share the cores: on a
     * loaded or small machine a step can stall for many milliseconds (max >> min below). */
    if (ZT_HAVE_OPENMP && openblas_get_parallel() == 1 && openblas_get_num_threads() > 1 &&
        backend_threads > 1)
        printf("warning: OpenMP ops and a pthreads OpenBLAS with %d threads share the cores; "
               "OPENBLAS_NUM_THREADS=1 or an OpenMP OpenBLAS avoids the oversubscription\n",
               openblas_get_num_threads());
    printf("config:  dtype %s, batch %d x %d tokens, optimizer %s, directions %s, mode %s, %d "
           "timed steps after %d warm-up\n",
           zt_dtype_name(o->dtype), o->batch_size, o->seq_len, o->optimizer,
           o->dist ? o->dist : "the optimizer's", mode_name(o->mode), o->steps, o->warmup);
    if (o->head_blocks > 0)
        printf("head:    the table staged and multiplied %d rows at a time (--head-blocks)\n",
               o->head_blocks);
    else
        printf("head:    the whole table staged at once (--head-blocks 0)\n");
}

static void print_phase(const char *name, const meter *m, double step_ms, const char *detail) {
    printf("  %-9s %10.2f %6.1f%% %6.2f   %s\n", name, meter_mean_ms(m),
           100.0 * meter_mean_ms(m) / step_ms, meter_cores(m), detail);
}

static void print_text(const bench_options *o, const bench_result *r) {
    const zt_opt_config *c = &r->cfg;
    double step = meter_mean_ms(&r->step), sum = split_sum(r);
    double staging = meter_mean_ms(&r->staging), forward = meter_mean_ms(&r->forward);
    double update = meter_mean_ms(&r->update);
    char detail[256];
    printf("\n%s: %d layers, hidden %d, heads %d, ffn %d, vocab %d, positions %d: %.2fM params, "
           "%.2fM trainable, K = %d variants; random weights built in %.0f ms\n",
           r->size, c->num_hidden_layers, c->hidden_size, c->num_attention_heads, c->ffn_dim,
           c->vocab_size, c->max_position_embeddings, 1e-6 * (double)r->n_params,
           1e-6 * (double)r->n_trainable, r->n_variants, r->create_ms);
    printf("  %-9s %10s %7s %6s   %s\n", "phase", "ms/step", "share", "cores", "estimate");
    snprintf(detail, sizeof detail, "min %.2f ms, max %.2f ms; loss of variant 0 %.4f",
             r->step_min_ms, r->step_max_ms, r->first_loss);
    print_phase("step", &r->step, step, detail);
    snprintf(detail, sizeof detail, "%d pass%s, %.1f MiB moved, %.2f GB/s", r->staging_passes,
             r->staging_passes == 1 ? "" : "es", mib(r->staging_bytes),
             gb_per_s(r->staging_bytes, staging));
    print_phase("staging", &r->staging, step, detail);
    snprintf(detail, sizeof detail, "%.1f MiB of weights read, %.2f GFLOP, %.1f GFLOP/s",
             mib(r->forward_weight_bytes), 1e-9 * r->forward_flops,
             r->forward_flops / (forward * 1e6));
    print_phase("forward", &r->forward, step, detail);
    /* In shadow mode a step runs the update inside the next step's staging (fused); the split
     * times the two apart, so it counts the update's pass that the step no longer makes. */
    snprintf(detail, sizeof detail, "%.1f MiB moved, %.2f GB/s%s", mib(r->update_bytes),
             gb_per_s(r->update_bytes, update),
             o->mode == ZT_PERTURB_SHADOW ? " alone (a step fuses it into staging)" : "");
    print_phase("update", &r->update, step, detail);
    printf("  %-9s %.2f passes over the trainable weights, z drawn %.2f times per element "
           "(averages over the trainable elements; draws counted by the backend, the batch's "
           "gathered rows included)",
           "per step", r->theta_passes, r->z_draws);
    if (r->sr_draws)
        printf(", %d stochastic-rounding word%s", r->sr_draws, r->sr_draws == 1 ? "" : "s");
    printf("\n");
    /* The least the step can cost beyond its forwards: its draws, with no memory traffic. */
    const double floor_ms = draw_floor_ms(o, r);
    printf("  %-9s %10.2f %6.1f%%          the z draws alone: %.1fM %s z at %.2f per ns per core "
           "(measured here, in cache) on %d thread%s, %.1f%% of the forward\n",
           "draws", floor_ms, 100.0 * floor_ms / step, 1e-6 * r->z_draws * (double)r->n_trainable,
           r->dist == ZT_DIST_GAUSSIAN ? "Gaussian" : "Rademacher",
           r->dist == ZT_DIST_GAUSSIAN ? o->gauss_per_ns : o->rademacher_per_ns, o->backend_threads,
           o->backend_threads == 1 ? "" : "s", 100.0 * floor_ms / forward);
    int accounted = fabs(step - sum) <= SPLIT_TOLERANCE * step;
    printf("  %-9s %10.2f %6.1f%%          %s (%.1f%% of the fastest step)\n", "sum", sum,
           100.0 * sum / step,
           accounted ? "the split accounts for the mean step"
                     : "the split does NOT account for the mean step (more than 10% off)",
           100.0 * sum / r->step_min_ms);
    if (o->mode == ZT_PERTURB_SHADOW && o->dtype != ZT_F32)
        printf("  forward runs on f32 weights, as the GEMMs see them after staging; the same "
               "sweep over the %s masters: %.2f ms\n",
               zt_dtype_name(o->dtype), meter_mean_ms(&r->forward_master));
    printf("  memory peak (tracked):");
    for (int cat = 0; cat < ZT_MEM_CATEGORIES; cat++)
        printf(" %s %.1f MiB,", zt_mem_category_name((zt_mem_category)cat),
               mib((double)r->mem.peak[cat]));
    printf(" total %.1f MiB\n", mib((double)r->mem.peak_total));
    printf("  memory plan (model):   weights %.1f MiB, activations %.1f MiB, staging %.1f MiB, "
           "backend scratch %.1f MiB, total %.1f MiB\n",
           mib((double)r->plan.weights_bytes), mib((double)r->plan.activation_bytes),
           mib((double)r->plan.staging_bytes), mib((double)r->plan.backend_scratch_bytes),
           mib((double)r->plan.total_bytes));
}

static void print_json(const bench_options *o, int backend_threads, const bench_result *results,
                       int n) {
    printf("{\"machine_cpus\":%ld,\"backend_threads\":%d,\"openblas_threads\":%d,"
           "\"openblas_core\":\"%s\",",
           sysconf(_SC_NPROCESSORS_ONLN), backend_threads, openblas_get_num_threads(),
           zt_cpu_blas_core());
    printf("\"dtype\":\"%s\",\"batch_size\":%d,\"seq_len\":%d,\"optimizer\":\"%s\","
           "\"dist\":\"%s\",\"mode\":\"%s\",\"steps\":%d,\"warmup\":%d,\"head_blocks\":%d,"
           "\"models\":[",
           zt_dtype_name(o->dtype), o->batch_size, o->seq_len, o->optimizer,
           o->dist ? o->dist : "default", mode_name(o->mode), o->steps, o->warmup, o->head_blocks);
    for (int i = 0; i < n; i++) {
        const bench_result *r = &results[i];
        printf("%s{\"size\":\"%s\",\"params\":%zu,\"trainable\":%zu,\"variants\":%d,"
               "\"create_ms\":%.1f,\"loss\":%.6g,",
               i ? "," : "", r->size, r->n_params, r->n_trainable, r->n_variants, r->create_ms,
               r->first_loss);
        printf("\"step_ms_mean\":%.4f,\"step_ms_min\":%.4f,\"step_ms_max\":%.4f,"
               "\"staging_ms\":%.4f,\"forward_ms\":%.4f,\"forward_master_ms\":%.4f,"
               "\"update_ms\":%.4f,\"split_fraction\":%.4f,",
               meter_mean_ms(&r->step), r->step_min_ms, r->step_max_ms, meter_mean_ms(&r->staging),
               meter_mean_ms(&r->forward), meter_mean_ms(&r->forward_master),
               meter_mean_ms(&r->update), split_sum(r) / meter_mean_ms(&r->step));
        printf("\"cores_busy\":{\"step\":%.3f,\"staging\":%.3f,\"forward\":%.3f,"
               "\"update\":%.3f},",
               meter_cores(&r->step), meter_cores(&r->staging), meter_cores(&r->forward),
               meter_cores(&r->update));
        printf("\"theta_passes\":%.4f,\"z_draws_per_element\":%.4f,\"sr_draws_per_element\":%d,"
               "\"draw_floor_ms\":%.4f,",
               r->theta_passes, r->z_draws, r->sr_draws, draw_floor_ms(o, r));
        printf("\"staging_passes\":%d,\"staging_bytes\":%.0f,\"forward_weight_bytes\":%.0f,"
               "\"update_bytes\":%.0f,\"forward_flops\":%.0f,\"staging_gb_s\":%.3f,"
               "\"update_gb_s\":%.3f,\"memory_peak\":{",
               r->staging_passes, r->staging_bytes, r->forward_weight_bytes, r->update_bytes,
               r->forward_flops, gb_per_s(r->staging_bytes, meter_mean_ms(&r->staging)),
               gb_per_s(r->update_bytes, meter_mean_ms(&r->update)));
        for (int cat = 0; cat < ZT_MEM_CATEGORIES; cat++)
            printf("\"%s\":%zu,", zt_mem_category_name((zt_mem_category)cat), r->mem.peak[cat]);
        printf("\"total\":%zu},\"memory_plan\":{\"weights\":%zu,\"activations\":%zu,"
               "\"staging\":%zu,\"backend_scratch\":%zu,\"total\":%zu}}",
               r->mem.peak_total, r->plan.weights_bytes, r->plan.activation_bytes,
               r->plan.staging_bytes, r->plan.backend_scratch_bytes, r->plan.total_bytes);
    }
    printf("]}\n");
}

/* ---- options ---- */

static void usage(FILE *out) {
    fprintf(out,
            "usage: bench_step [options]\n"
            "  --model-size LIST   tiny, small, 125m, comma-separated (default tiny,small,125m)\n"
            "  --dtype D           f32, f16 or bf16 weights (default f16, as MeZO)\n"
            "  --batch-size N      sequences per batch (default 4)\n"
            "  --seq-len N         tokens per sequence (default 64)\n"
            "  --optimizer NAME    any zotune optimizer (default mezo)\n"
            "  --dist D            gaussian or rademacher directions (default: the optimizer's)\n"
            "  --mode M            shadow or inplace (default shadow)\n"
            "  --steps N           timed steps, after one warm-up step (default 3)\n"
            "  --threads N         CPU threads, 0 = all (default 0)\n"
            "  --head-blocks R     head-table rows the LM head stages at a time, 0 = the whole\n"
            "                      table (default: the CPU backend's, 512)\n"
            "  --quick             tiny and small only, 2 steps\n"
            "  --json              one JSON document instead of text\n"
            "  --help              this text\n");
}

static int parse_int(const char *flag, const char *text, int min, int *out) {
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (!*text || *end || value < min || value > 1 << 30) {
        fprintf(stderr, "bench_step: %s expects an integer >= %d, got '%s'\n", flag, min, text);
        return 0;
    }
    *out = (int)value;
    return 1;
}

static int parse_sizes(char *list, bench_options *o) {
    o->n_sizes = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->n_sizes == MAX_SIZES) {
            fprintf(stderr, "bench_step: at most %d model sizes\n", MAX_SIZES);
            return 0;
        }
        if (strcmp(tok, "tiny") != 0 && strcmp(tok, "small") != 0 && strcmp(tok, "125m") != 0) {
            fprintf(stderr, "bench_step: --model-size '%s': expected tiny, small or 125m\n", tok);
            return 0;
        }
        o->sizes[o->n_sizes++] = tok;
    }
    if (o->n_sizes == 0) fprintf(stderr, "bench_step: --model-size needs a size\n");
    return o->n_sizes > 0;
}

static int parse_value(bench_options *o, const char *flag, char *value) {
    if (strcmp(flag, "--model-size") == 0) return parse_sizes(value, o);
    if (strcmp(flag, "--batch-size") == 0) return parse_int(flag, value, 1, &o->batch_size);
    if (strcmp(flag, "--seq-len") == 0) return parse_int(flag, value, 2, &o->seq_len);
    if (strcmp(flag, "--steps") == 0) return parse_int(flag, value, 1, &o->steps);
    if (strcmp(flag, "--threads") == 0) return parse_int(flag, value, 0, &o->threads);
    if (strcmp(flag, "--head-blocks") == 0) return parse_int(flag, value, 0, &o->head_blocks);
    if (strcmp(flag, "--optimizer") == 0) {
        o->optimizer = value;
        return 1;
    }
    if (strcmp(flag, "--dist") == 0) {
        o->dist = value;
        if (strcmp(value, "gaussian") == 0 || strcmp(value, "rademacher") == 0) return 1;
        fprintf(stderr, "bench_step: --dist expects gaussian or rademacher, got '%s'\n", value);
        return 0;
    }
    if (strcmp(flag, "--dtype") == 0) {
        if (strcmp(value, "f32") == 0)
            o->dtype = ZT_F32;
        else if (strcmp(value, "f16") == 0)
            o->dtype = ZT_F16;
        else if (strcmp(value, "bf16") == 0)
            o->dtype = ZT_BF16;
        else
            fprintf(stderr, "bench_step: --dtype expects f32, f16 or bf16, got '%s'\n", value);
        return strcmp(value, "f32") == 0 || strcmp(value, "f16") == 0 || strcmp(value, "bf16") == 0;
    }
    if (strcmp(flag, "--mode") == 0) {
        if (strcmp(value, "shadow") == 0)
            o->mode = ZT_PERTURB_SHADOW;
        else if (strcmp(value, "inplace") == 0)
            o->mode = ZT_PERTURB_INPLACE;
        else
            fprintf(stderr, "bench_step: --mode expects shadow or inplace, got '%s'\n", value);
        return strcmp(value, "shadow") == 0 || strcmp(value, "inplace") == 0;
    }
    return 0; /* not reached: takes_value() admitted only the flags above */
}

static int takes_value(const char *flag) {
    static const char *const flags[] = {"--model-size", "--dtype",      "--batch-size", "--seq-len",
                                        "--optimizer",  "--mode",       "--steps",      "--threads",
                                        "--dist",       "--head-blocks"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strcmp(flag, flags[i]) == 0) return 1;
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (--help), 2 on a usage error. */
static int parse_options(int argc, char **argv, bench_options *o) {
    static char default_sizes[] = "tiny,small,125m", quick_sizes[] = "tiny,small";
    memset(o, 0, sizeof *o);
    o->dtype = ZT_F16;
    o->batch_size = 4;
    o->seq_len = 64;
    o->optimizer = "mezo";
    o->mode = ZT_PERTURB_SHADOW;
    o->steps = 3;
    o->warmup = 1;
    o->head_blocks = -1;
    int quick = 0, sizes_given = 0, steps_given = 0;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--quick") == 0)
            quick = 1;
        else if (strcmp(arg, "--json") == 0)
            o->json = 1;
        else if (strncmp(arg, "--", 2) == 0) {
            char *eq = strchr(arg, '=');
            if (eq) *eq = '\0';
            if (!takes_value(arg)) {
                fprintf(stderr, "bench_step: unknown option '%s' (see --help)\n", arg);
                return 2;
            }
            char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value) {
                fprintf(stderr, "bench_step: %s needs a value\n", arg);
                return 2;
            }
            if (!parse_value(o, arg, value)) return 2;
            sizes_given |= strcmp(arg, "--model-size") == 0;
            steps_given |= strcmp(arg, "--steps") == 0;
        } else {
            fprintf(stderr, "bench_step: unexpected argument '%s' (see --help)\n", arg);
            return 2;
        }
    }
    if (!sizes_given) parse_sizes(quick ? quick_sizes : default_sizes, o);
    if (quick && !steps_given) o->steps = 2;
    if (!zt_optimizer_find(o->optimizer)) {
        fprintf(stderr, "bench_step: unknown optimizer '%s'\n", o->optimizer);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv) {
    bench_options o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed) return parsed == 1 ? 0 : 2;
    zt_backend *be = NULL;
    if (report(zt_cpu_backend_create(o.threads, &be)) != ZT_OK) return 1;
    if (o.head_blocks >= 0) be->head_vocab_chunk = o.head_blocks;
    o.head_blocks = be->head_vocab_chunk;
    int backend_threads = zt_cpu(be)->n_threads;
    o.backend_threads = backend_threads;
    o.gauss_per_ns = z_per_ns_one_core(ZT_DIST_GAUSSIAN);
    o.rademacher_per_ns = z_per_ns_one_core(ZT_DIST_RADEMACHER);
    bench_result results[MAX_SIZES];
    if (!o.json) print_header(&o, backend_threads);
    int failed = 0;
    for (int i = 0; i < o.n_sizes && !failed; i++) {
        failed = report(bench_model(be, &o, o.sizes[i], &results[i])) != ZT_OK;
        if (!failed && !o.json) {
            print_text(&o, &results[i]);
            fflush(stdout);
        }
    }
    if (!failed && o.json) print_json(&o, backend_threads, results, o.n_sizes);
    zt_backend_destroy(be);
    return failed ? 1 : 0;
}
