/* The CUDA backend's GEMM plan cache (kernels/cuda/linear.cu, docs/design.md §4.3 "GEMMs"),
 * counted through zt_cuda_gemm_counts on a backend under test (the executor, or the real library
 * in the gpu suite): a second forward of the same shape creates no cuBLASLt descriptor and runs
 * no heuristic; forwards over batches of varying length keep the cache within the buckets their
 * row counts fall in, and a second pass over the same lengths creates nothing. The results stay
 * the CPU backend's (NMSE 1e-10). Also the counts per MeZO step on a fixture model, printed as the
 * measurement docs/design.md quotes.
 *
 * The caller passes the backend's counter function under its own name (zt_cuda_backend_gemm_counts,
 * or the executor's zt_cudaemu_backend_gemm_counts). */
#ifndef ZT_TESTS_GEMM_PLANS_H
#define ZT_TESTS_GEMM_PLANS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/linear_plan.h"
#include "data/targets.h"
#include "models/model.h"
#include "parity_common.h"
#include "zt_test.h"

#define ZT_GEMM_PLANS_BATCH 3
#define ZT_GEMM_PLANS_MAX_LEN 32 /* the fixtures' max_position_embeddings */
#define ZT_GEMM_PLANS_NMSE 1e-10

typedef void (*zt_gemm_counts_fn)(zt_backend *be, zt_cuda_gemm_counts *out);
typedef zt_status (*zt_gemm_backend_ctor)(int device, zt_backend **out);

/* A forward of a B x T batch (ids from a fixed formula, loss on every token after the first
 * sequence's two left pads) under n_variants variants: unperturbed, or MeZO's +eps and -eps pair
 * (the forward half of a step); log-probs to `logprobs` (K,R). */
static void zt_gemm_plans_forward(zt_model *m, zt_workspace *ws, int seq_len, int n_variants,
                                  float *logprobs, int *n_targets) {
    enum { B = ZT_GEMM_PLANS_BATCH };
    int32_t ids[B * ZT_GEMM_PLANS_MAX_LEN], mask[B * ZT_GEMM_PLANS_MAX_LEN],
        labels[B * ZT_GEMM_PLANS_MAX_LEN];
    for (int i = 0; i < B * seq_len; i++) {
        ids[i] = 4 + (int32_t)((i * 37u + 11u) % (unsigned)(m->dims.vocab_size - 4));
        mask[i] = !(i < 2);
        labels[i] = mask[i] ? ids[i] : -100;
    }
    zt_targets t;
    ZT_REQUIRE_OK(zt_targets_from_labels(B, seq_len, labels, m->dims.vocab_size, &t));
    zt_batch b = {B, seq_len, ids, mask, t.n, t.rows, t.ids};
    const zt_direction plus = {0x5eedULL, 1e-3f}, minus = {0x5eedULL, -1e-3f};
    const zt_perturbation none = {NULL, 0, ZT_DIST_GAUSSIAN, 1.0f};
    const zt_perturbation pair[2] = {{&plus, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                     {&minus, 1, ZT_DIST_GAUSSIAN, 1.0f}};
    const zt_variants v = {n_variants, n_variants == 1 ? &none : pair, NULL};
    ZT_CHECK_OK(zt_model_forward(m, ws, &b, &v, logprobs, NULL));
    *n_targets = t.n;
    zt_targets_free(&t);
}

typedef struct zt_gemm_plans_model {
    zt_model *m;
    zt_workspace *ws;
} zt_gemm_plans_model;

static zt_gemm_plans_model zt_gemm_plans_load(zt_backend *be, const char *dir) {
    zt_gemm_plans_model pm = {NULL, NULL};
    ZT_REQUIRE_OK(zt_model_load(dir, be, &pm.m));
    zt_workspace_shape shape = {ZT_GEMM_PLANS_BATCH, ZT_GEMM_PLANS_MAX_LEN, 2, 1, 0};
    ZT_REQUIRE_OK(zt_workspace_create(pm.m, &shape, &pm.ws));
    return pm;
}

static void zt_gemm_plans_unload(zt_gemm_plans_model *pm) {
    zt_workspace_free(pm->ws);
    zt_model_free(pm->m);
}

/* What happened between two counts. */
static zt_cuda_gemm_counts zt_gemm_counts_since(const zt_cuda_gemm_counts *before,
                                                const zt_cuda_gemm_counts *after) {
    zt_cuda_gemm_counts d = *after;
    d.matmuls -= before->matmuls;
    d.descriptors_created -= before->descriptors_created;
    d.heuristic_queries -= before->heuristic_queries;
    d.algo_checks -= before->algo_checks;
    d.batched_matmuls -= before->batched_matmuls;
    return d;
}

static void zt_gemm_counts_print(const char *what, const zt_cuda_gemm_counts *d) {
    printf("  %-44s %4llu matmuls (%3llu batched), %4llu descriptors created, %3llu heuristic "
           "queries, %3llu algo checks, %3d plans cached%s\n",
           what, d->matmuls, d->batched_matmuls, d->descriptors_created, d->heuristic_queries,
           d->algo_checks, d->cached_plans,
           d->batched_refused ? " (batches refused: member by member)" : "");
}

/* Same-shape forwards reuse every plan; lengths 4..32 (rows 12..96) fill the cache with the
 * first forward's plans once per row bucket at most, and a second pass over them (in reverse)
 * creates nothing. Each forward gives the CPU's log-probs: within NMSE 1e-10 under f32; under half
 * within half of what half rounding itself moves them on the CPU: an activation near a rounding
 * boundary may round the other way (model_parity.h argues a tenth for its batch), and with 10 to
 * 90 targets one such flip is a larger share (measured up to 0.24); a missing or wrong rounding
 * differs by the whole effect. Then the forward half of MeZO
 * steps, counted per step. The backend under test is created here, so that its cache starts
 * empty. */
static void zt_gemm_plans_run(zt_gemm_backend_ctor create, int device, zt_gemm_counts_fn counts_of,
                              const char *model_dir, zt_gemm_precision gemm) {
    enum { B = ZT_GEMM_PLANS_BATCH, MAX_R = 2 * B * ZT_GEMM_PLANS_MAX_LEN };
    const char *mode = zt_gemm_precision_name(gemm);
    zt_backend *cpu = NULL, *cpu_f32 = NULL, *dut = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &cpu));
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &cpu_f32));
    ZT_REQUIRE_OK(create(device, &dut));
    printf("GEMM plans on %s, %s, --gemm %s:\n", dut->ops->name, model_dir, mode);
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(cpu, gemm));
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(dut, gemm));
    zt_gemm_plans_model on_cpu = zt_gemm_plans_load(cpu, model_dir);
    zt_gemm_plans_model on_cpu_f32 = zt_gemm_plans_load(cpu_f32, model_dir);
    zt_gemm_plans_model on_dut = zt_gemm_plans_load(dut, model_dir);
    static float want[MAX_R], got[MAX_R], unrounded[MAX_R];
    zt_cuda_gemm_counts c0, c1, c2, d;
    int n_targets = 0;

    /* the same shape twice */
    counts_of(dut, &c0);
    zt_gemm_plans_forward(on_dut.m, on_dut.ws, 12, 1, got, &n_targets);
    counts_of(dut, &c1);
    zt_gemm_plans_forward(on_dut.m, on_dut.ws, 12, 1, got, &n_targets);
    counts_of(dut, &c2);
    d = zt_gemm_counts_since(&c0, &c1);
    zt_gemm_counts_print("first forward, T=12", &d);
    const int plans_per_forward = d.cached_plans - c0.cached_plans;
    /* k, v and q: one strided-batched GEMM per layer (per chunk of rows), unless the weight is
     * widened (half weights under f32 GEMMs: member by member) or the library refused the batch */
    const zt_dtype w_dtype = on_dut.m->tensors[on_dut.m->n_tensors - 1].dtype;
    const int batches = gemm == ZT_GEMM_HALF || w_dtype == ZT_F32;
    const unsigned long long layers = (unsigned long long)on_dut.m->dims.n_layers;
    ZT_CHECK(d.batched_refused || (batches ? d.batched_matmuls >= layers &&
                                                 d.matmuls <= d.batched_matmuls + 3 * layers + 4
                                           : d.batched_matmuls == 0),
             "%s: %llu of %llu matmuls batched over %llu layers (%s expected)", mode,
             d.batched_matmuls, d.matmuls, layers, batches ? "one per layer and chunk" : "none");
    d = zt_gemm_counts_since(&c1, &c2);
    zt_gemm_counts_print("second forward, same shape", &d);
    ZT_CHECK(d.matmuls > 0, "%s: the second forward made no GEMM", mode);
    ZT_CHECK(d.descriptors_created == 0 && d.heuristic_queries == 0 && d.algo_checks == 0,
             "%s: a second forward of the same shape created %llu descriptors, ran %llu "
             "heuristic queries and %llu algo checks",
             mode, d.descriptors_created, d.heuristic_queries, d.algo_checks);

    /* varying lengths, twice */
    int buckets[ZT_GEMM_PLANS_MAX_LEN + 1], n_buckets = 0, n_lengths = 0;
    for (int pass = 0; pass < 2; pass++) {
        counts_of(dut, &c1);
        for (int i = 4; i <= ZT_GEMM_PLANS_MAX_LEN; i++) {
            const int seq_len = pass == 0 ? i : ZT_GEMM_PLANS_MAX_LEN + 4 - i;
            zt_gemm_plans_forward(on_dut.m, on_dut.ws, seq_len, 1, got, &n_targets);
            zt_gemm_plans_forward(on_cpu.m, on_cpu.ws, seq_len, 1, want, &n_targets);
            double bound = ZT_GEMM_PLANS_NMSE;
            if (gemm == ZT_GEMM_HALF) {
                zt_gemm_plans_forward(on_cpu_f32.m, on_cpu_f32.ws, seq_len, 1, unrounded,
                                      &n_targets);
                const double effect = zt_nmse(want, unrounded, (size_t)n_targets);
                if (0.5 * effect > bound) bound = 0.5 * effect;
            }
            const double nmse = zt_nmse(got, want, (size_t)n_targets);
            ZT_CHECK(nmse <= bound, "%s T=%d: log-probs nmse %.3g against the CPU (bound %.3g)",
                     mode, seq_len, nmse, bound);
            if (pass > 0) continue;
            n_lengths++;
            const int bucket = zt_gemm_rows_bucket(B * seq_len);
            int seen = 0;
            for (int j = 0; j < n_buckets; j++)
                seen |= buckets[j] == bucket;
            if (!seen) buckets[n_buckets++] = bucket;
        }
        counts_of(dut, &c2);
        d = zt_gemm_counts_since(&c1, &c2);
        char what[96];
        snprintf(what, sizeof what, "%d lengths (%d row buckets), pass %d", n_lengths, n_buckets,
                 pass + 1);
        zt_gemm_counts_print(what, &d);
        if (pass == 1)
            ZT_CHECK(d.descriptors_created == 0 && d.heuristic_queries == 0,
                     "%s: a second pass over the same lengths created %llu descriptors and ran "
                     "%llu heuristic queries: the cache churns",
                     mode, d.descriptors_created, d.heuristic_queries);
    }
    /* The body's plans once per row bucket; the head's chunks (at most head_chunk_rows rows) fall
     * in buckets of their own, counted generously as one more row bucket. */
    ZT_CHECK(c2.cached_plans <= plans_per_forward * (n_buckets + 1),
             "%s: %d plans cached after %d lengths, above %d per forward x (%d buckets + 1)", mode,
             c2.cached_plans, n_lengths, plans_per_forward, n_buckets);

    /* the forward half of MeZO steps (K = 2, staged) on a fresh shape */
    for (int step = 0; step < 3; step++) {
        counts_of(dut, &c1);
        zt_gemm_plans_forward(on_dut.m, on_dut.ws, 29, 2, got, &n_targets);
        counts_of(dut, &c2);
        d = zt_gemm_counts_since(&c1, &c2);
        char what[96];
        snprintf(what, sizeof what, "MeZO step %d (K=2, T=29)", step);
        zt_gemm_counts_print(what, &d);
        ZT_CHECK(d.matmuls > 0, "%s: MeZO step %d made no GEMM", mode, step);
        if (step > 0)
            ZT_CHECK(d.descriptors_created == 0 && d.heuristic_queries == 0 && d.algo_checks == 0,
                     "%s: MeZO step %d created %llu descriptors", mode, step,
                     d.descriptors_created);
    }
    zt_gemm_plans_unload(&on_dut);
    zt_gemm_plans_unload(&on_cpu_f32);
    zt_gemm_plans_unload(&on_cpu);
    zt_backend_destroy(dut);
    zt_backend_destroy(cpu_f32);
    zt_backend_destroy(cpu);
}

#endif
