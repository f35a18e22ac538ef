/* Batch invariance (kernels/backend.h, docs/distributed.md), checked on any backend: under it, a
 * sequence's log-probabilities do not depend on which other sequences share its forward, so
 * data-parallel ranks and gradient-accumulation micro-batches reproduce one process bit for bit.
 * The same records' log-probabilities from the whole batch, from halves and from single records
 * (all padded to the whole batch's length), for two perturbed variants in one sweep, on LM records
 * of different lengths, must carry the same bits. Without it the bits are printed, not asserted:
 * whether a BLAS keeps them is its business (OpenBLAS 0.3.21 on Zen does not). */
#ifndef ZT_TEST_BATCH_INVARIANCE_H
#define ZT_TEST_BATCH_INVARIANCE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "data/dataset.h"
#include "fixture.h"
#include "model.h"
#include "zt_test.h"

enum { ZT_INVARIANCE_VARIANTS = 2 };

/* Log-probabilities of records [first, first + n) of ds, padded to seq_len, per variant; the
 * caller frees. Writes the target count to *n_targets. */
static inline float *invariance_logprobs(zt_model *m, const zt_dataset *ds, int first, int n,
                                         int seq_len, int *n_targets) {
    int *indices = malloc((size_t)n * sizeof *indices);
    for (int i = 0; i < n; i++)
        indices[i] = first + i;
    zt_task_batch tb;
    ZT_REQUIRE_OK(
        zt_task_batch_build_padded(ds, indices, n, m->dims.pad_token_id, 0, seq_len, &tb));
    zt_workspace *ws = NULL;
    const zt_workspace_shape shape = {tb.n_sequences, tb.seq_len, ZT_INVARIANCE_VARIANTS, 1, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    const zt_direction up = {1234567, 1e-2f}, down = {1234567, -1e-2f};
    const zt_perturbation variant[ZT_INVARIANCE_VARIANTS] = {{&up, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                                             {&down, 1, ZT_DIST_GAUSSIAN, 1.0f}};
    const zt_variants variants = {ZT_INVARIANCE_VARIANTS, variant, NULL};
    const zt_batch b = {tb.n_sequences, tb.seq_len,     tb.input_ids, tb.attention_mask,
                        tb.n_targets,   tb.target_rows, tb.target_ids};
    float *lp =
        malloc((size_t)ZT_INVARIANCE_VARIANTS * (tb.n_targets > 0 ? tb.n_targets : 1) * sizeof *lp);
    ZT_REQUIRE_OK(zt_model_forward(m, ws, &b, &variants, lp, NULL));
    *n_targets = tb.n_targets;
    zt_workspace_free(ws);
    zt_task_batch_free(&tb);
    free(indices);
    return lp;
}

/* Whether records [first, first + n)'s targets, at `offset` among `all`'s, carry the same bits
 * in both variants. */
static inline int invariance_same_bits(const float *part, int part_targets, const float *all,
                                       int all_targets, int offset) {
    for (int k = 0; k < ZT_INVARIANCE_VARIANTS; k++)
        if (memcmp(part + (size_t)k * part_targets, all + (size_t)k * all_targets + offset,
                   (size_t)part_targets * sizeof *part) != 0)
            return 0;
    return 1;
}

/* Loads the model `fixture` (tests/fixtures/NAME) on be and checks the bits of opt-pre's
 * score.jsonl records (every opt-pre fixture shares its vocabulary) with batch invariance on
 * (asserted) and off (printed); `label` names the case. */
static inline void check_batch_invariance(zt_backend *be, const char *fixture, const char *label) {
    char model_dir[1024], data[1024];
    fixture_path(model_dir, sizeof model_dir, fixture, NULL);
    fixture_path(data, sizeof data, "opt-pre", "score.jsonl");
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(model_dir, be, &m));
    zt_dataset ds;
    ZT_REQUIRE_OK(zt_dataset_load(data, NULL, m->dims.vocab_size, m->dims.max_positions, &ds));
    const int n = ds.n_examples;
    ZT_CHECK(n >= 4, "%s holds %d records", data, n);
    int longest = 0;
    for (int i = 0; i < n; i++)
        if (zt_example_longest_sequence(&ds, &ds.examples[i], 0) > longest)
            longest = zt_example_longest_sequence(&ds, &ds.examples[i], 0);

    for (int invariant = 1; invariant >= 0; invariant--) {
        ZT_REQUIRE_OK(zt_backend_set_batch_invariant(be, invariant));
        int all_targets = 0;
        float *all = invariance_logprobs(m, &ds, 0, n, longest, &all_targets);
        int offset = 0, equal = 1, compared = 0;
        /* the first half, the second half, then each record alone */
        const int half = n / 2;
        const int firsts[] = {0, half}, counts[] = {half, n - half};
        for (int part = 0; part < 2; part++) {
            int t = 0;
            float *lp = invariance_logprobs(m, &ds, firsts[part], counts[part], longest, &t);
            equal &= invariance_same_bits(lp, t, all, all_targets, offset);
            compared += t;
            offset += t;
            free(lp);
        }
        offset = 0;
        for (int i = 0; i < n; i++) {
            int t = 0;
            float *lp = invariance_logprobs(m, &ds, i, 1, longest, &t);
            equal &= invariance_same_bits(lp, t, all, all_targets, offset);
            offset += t;
            free(lp);
        }
        if (invariant)
            ZT_CHECK(
                equal && compared == all_targets,
                "%s, batch-invariant: every record's %d log-probabilities (x%d variants) equal "
                "whatever its batch",
                label, all_targets, ZT_INVARIANCE_VARIANTS);
        else
            printf("%s without batch invariance: the records' bits %s with their batch "
                   "(information only: BLAS may or may not keep them)\n",
                   label, equal ? "stayed the same" : "changed");
        free(all);
    }
    zt_dataset_free(&ds);
    zt_model_free(m);
}

#endif
