/* How often a training step makes the host wait for the CUDA device (docs/design.md §4.3): once
 * for the step's losses and once for the update's count of non-finite weights, however many
 * tensors, gathers and log-prob chunks the step has. Counted on the host executor's backend (the
 * real backend's code, base.n_host_waits), with a MeZO step whose projected gradient must match
 * the CPU backend's. Also: an index range vouched for and then overwritten by an upload is checked
 * again, so a bad index there is still reported by position. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/status.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "data/targets.h"
#include "models/model.h"
#include "train/task_loss.h"
#include "train/trainable.h"
#include "zo/engine.h"
#include "zo/optimizer.h"
#include "zt_test.h"
#include "../train/lm_objective.h"

enum { BATCH = 3, SEQ_LEN = 12, STEPS = 3 };
/* The losses' download and the update's non-finite count. */
static const unsigned long long WAITS_PER_STEP = 2;

/* STEPS MeZO steps on the fixture model with every tensor trainable and the loss on every
 * token; projected_grad[s] and waits[s] per step. The first sequence is left-padded. */
static void run_steps(zt_backend *be, const char *model_dir, double *projected_grad,
                      unsigned long long *waits) {
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(model_dir, be, &m));
    int32_t ids[BATCH * SEQ_LEN], mask[BATCH * SEQ_LEN], labels[BATCH * SEQ_LEN];
    for (int i = 0; i < BATCH * SEQ_LEN; i++) {
        ids[i] = 4 + (int32_t)((i * 37u + 11u) % (unsigned)(m->dims.vocab_size - 4));
        mask[i] = !(i < 3); /* three left pads in sequence 0 */
        labels[i] = mask[i] ? ids[i] : -100;
    }
    zt_targets t;
    ZT_REQUIRE_OK(zt_targets_from_labels(BATCH, SEQ_LEN, labels, m->dims.vocab_size, &t));
    zt_batch b = {BATCH, SEQ_LEN, ids, mask, t.n, t.rows, t.ids};
    zt_workspace_shape shape = {BATCH, SEQ_LEN, 2, 1, 0};
    zt_workspace *ws = NULL;
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    uint8_t *all = malloc((size_t)m->n_tensors);
    memset(all, 1, (size_t)m->n_tensors);
    zt_param_set ps;
    ZT_REQUIRE_OK(zt_trainable_param_set(m, all, &ps));
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    hp.lr = 1e-3;
    hp.eps = 1e-3;
    zt_optimizer *optimizer = NULL;
    ZT_REQUIRE_OK(zt_optimizer_create("mezo", &hp, 1, ps.n_elems, &optimizer));
    float *logprobs = malloc(2 * (size_t)t.n * sizeof *logprobs);
    lm_objective ctx = {m, ws, &b, &t, all, logprobs};
    zt_objective objective = {&ctx, lm_evaluate};
    zt_engine_options engine = {11, 1};
    for (int s = 0; s < STEPS; s++) {
        const unsigned long long before = be->n_host_waits;
        zt_step_record rec;
        ZT_REQUIRE_OK(zt_zo_step(optimizer, &ps, &objective, s, &engine, &rec));
        waits[s] = be->n_host_waits - before;
        projected_grad[s] = rec.update.projected_grad;
    }
    zt_optimizer_free(optimizer);
    zt_trainable_param_set_free(&ps);
    zt_workspace_free(ws);
    zt_model_free(m);
    zt_targets_free(&t);
    free(logprobs);
    free(all);
}

static void check_step_waits(zt_backend *cpu, zt_backend *emu, const char *model_dir) {
    double pg_cpu[STEPS], pg_emu[STEPS];
    unsigned long long waits_cpu[STEPS], waits_emu[STEPS];
    run_steps(cpu, model_dir, pg_cpu, waits_cpu);
    run_steps(emu, model_dir, pg_emu, waits_emu);
    for (int s = 0; s < STEPS; s++) {
        ZT_CHECK(waits_cpu[s] == 0, "step %d: the CPU backend waited %llu times", s, waits_cpu[s]);
        ZT_CHECK(waits_emu[s] == WAITS_PER_STEP,
                 "step %d: the host waited for the device %llu times, "
                 "not %llu",
                 s, waits_emu[s], WAITS_PER_STEP);
        ZT_CHECK(fabs(pg_emu[s] - pg_cpu[s]) <= 1e-3 * fabs(pg_cpu[s]) + 1e-6,
                 "step %d: projected gradient %.9g on the executor, %.9g on the CPU", s, pg_emu[s],
                 pg_cpu[s]);
        printf("%s step %d: %llu waits, projected gradient %.6g (CPU %.6g)\n", model_dir, s,
               waits_emu[s], pg_emu[s], pg_cpu[s]);
    }
}

/* Vouching covers exactly what the caller checked: a range overwritten by a later upload (which
 * did not vouch) is checked again, and a wider limit than vouched is still trusted only for the
 * range itself. */
static void check_vouch_forgotten(zt_backend *emu) {
    enum { N_ROWS = 6, TABLE_ROWS = 9, COLS = 4 };
    const zt_backend_ops *op = emu->ops;
    float *table = NULL, *out = NULL;
    int32_t *rows = NULL;
    ZT_REQUIRE_OK(
        op->alloc(emu, TABLE_ROWS * COLS * sizeof(float), ZT_MEM_WEIGHTS, (void **)&table));
    ZT_REQUIRE_OK(op->alloc(emu, N_ROWS * COLS * sizeof(float), ZT_MEM_ACTIVATIONS, (void **)&out));
    ZT_REQUIRE_OK(op->alloc(emu, N_ROWS * sizeof(int32_t), ZT_MEM_ACTIVATIONS, (void **)&rows));
    float host_table[TABLE_ROWS * COLS];
    for (int i = 0; i < TABLE_ROWS * COLS; i++)
        host_table[i] = (float)i;
    ZT_REQUIRE_OK(op->upload(emu, table, host_table, sizeof host_table));
    const zt_weight w = {table, ZT_F32};

    int32_t good[N_ROWS] = {0, 8, 3, 3, 1, 7};
    ZT_REQUIRE_OK(op->upload(emu, rows, good, sizeof good));
    op->vouch_indices(emu, rows, N_ROWS, 9);
    unsigned long long before = emu->n_host_waits;
    ZT_CHECK(op->gather_rows(emu, out, rows, w, N_ROWS, TABLE_ROWS, COLS, 0, NULL) == ZT_OK,
             "vouched gather: %s", zt_last_error());
    ZT_CHECK(emu->n_host_waits == before, "a vouched gather waited %llu times",
             emu->n_host_waits - before);
    float host_out[N_ROWS * COLS];
    ZT_REQUIRE_OK(op->download(emu, host_out, out, sizeof host_out));
    for (int r = 0; r < N_ROWS; r++)
        ZT_CHECK(host_out[r * COLS + 2] == host_table[good[r] * COLS + 2], "row %d gathered %g", r,
                 host_out[r * COLS + 2]);

    int32_t bad[N_ROWS] = {0, 8, 3, 9, 1, 7}; /* 9 is outside the 9-row table */
    ZT_REQUIRE_OK(op->upload(emu, rows, bad, sizeof bad));
    zt_status s = op->gather_rows(emu, out, rows, w, N_ROWS, TABLE_ROWS, COLS, 0, NULL);
    ZT_CHECK(s == ZT_ERR_INVALID_ARG && strstr(zt_last_error(), "row 3") &&
                 strstr(zt_last_error(), "9"),
             "a bad row after the vouched range was overwritten: status %d, '%s'", (int)s,
             zt_last_error());

    /* vouched against 9 rows: a table of 8 rows is not covered, and row 8 is caught */
    ZT_REQUIRE_OK(op->upload(emu, rows, good, sizeof good));
    op->vouch_indices(emu, rows, N_ROWS, 9);
    s = op->gather_rows(emu, out, rows, w, N_ROWS, 8, COLS, 0, NULL);
    ZT_CHECK(s == ZT_ERR_INVALID_ARG && strstr(zt_last_error(), "row 1"),
             "a smaller table than vouched for: status %d, '%s'", (int)s, zt_last_error());

    op->free(emu, rows, N_ROWS * sizeof(int32_t), ZT_MEM_ACTIVATIONS);
    op->free(emu, out, N_ROWS * COLS * sizeof(float), ZT_MEM_ACTIVATIONS);
    op->free(emu, table, TABLE_ROWS * COLS * sizeof(float), ZT_MEM_WEIGHTS);
}

/* Two tensors updated into overflow, their non-finite counts summed on the device and delivered by
 * the sync that follows: the same total as the CPU backend's immediate counts. */
static unsigned long long count_overflow(zt_backend *be) {
    enum { N = 1000 };
    uint16_t host[N];
    for (int i = 0; i < N; i++)
        host[i] = (uint16_t)(0x7800 + i % 512); /* f16 weights from 32768 up: lr 1e5 overflows */
    void *a = NULL, *b = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, sizeof host, ZT_MEM_WEIGHTS, &a));
    ZT_REQUIRE_OK(be->ops->alloc(be, sizeof host, ZT_MEM_WEIGHTS, &b));
    ZT_REQUIRE_OK(be->ops->upload(be, a, host, sizeof host));
    ZT_REQUIRE_OK(be->ops->upload(be, b, host, sizeof host));
    const zt_direction term = {99, 1.0f};
    zt_update u;
    memset(&u, 0, sizeof u);
    u.grad = (zt_perturbation){&term, 1, ZT_DIST_GAUSSIAN, 1.0f};
    u.rule = ZT_UPDATE_SGD;
    u.lr = 1e5f;
    unsigned long long counted = 0;
    u.n_nonfinite = &counted;
    ZT_REQUIRE_OK(be->ops->update(be, a, ZT_F16, 3, N, NULL, &u));
    ZT_REQUIRE_OK(be->ops->update(be, b, ZT_F16, 4, N, NULL, &u));
    ZT_REQUIRE_OK(be->ops->sync(be));
    be->ops->free(be, a, sizeof host, ZT_MEM_WEIGHTS);
    be->ops->free(be, b, sizeof host, ZT_MEM_WEIGHTS);
    return counted;
}

static void check_nonfinite_count(zt_backend *cpu, zt_backend *emu) {
    const unsigned long long on_cpu = count_overflow(cpu);
    const unsigned long long before = emu->n_host_waits;
    const unsigned long long on_emu = count_overflow(emu);
    ZT_CHECK(on_cpu > 0 && on_cpu < 2000, "the CPU counted %llu non-finite weights of 2000",
             on_cpu);
    ZT_CHECK(on_emu == on_cpu, "non-finite weights: %llu on the executor, %llu on the CPU", on_emu,
             on_cpu);
    ZT_CHECK(emu->n_host_waits - before == 1, "two updates and a sync waited %llu times",
             emu->n_host_waits - before);
}

int main(void) {
    const char *fixtures = getenv("ZT_FIXTURES");
    ZT_REQUIRE(fixtures != NULL, "ZT_FIXTURES is not set");
    char model_dir[4096];
    snprintf(model_dir, sizeof model_dir, "%s/opt-pre", fixtures);
    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    check_step_waits(cpu, emu, model_dir);
    check_vouch_forgotten(emu);
    check_nonfinite_count(cpu, emu);
    zt_backend_destroy(emu);
    zt_backend_destroy(cpu);
    return zt_test_finish("test_cuda_step_waits_emu");
}
