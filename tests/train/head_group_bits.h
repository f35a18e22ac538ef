/* The head's grouped staging keeps every variant's bits (docs/design.md §2.3): a K-variant
 * forward's log-probabilities and logits equal, bit for bit, K forwards of one variant each
 * (one-variant workspaces, whose head stages its table alone), on any backend. Shared by
 * tests/train/test_head_group.c (CPU) and tests/cudaemu/test_cuda_head_group_emu.c (the CUDA
 * kernels on the host executor). */
#ifndef ZT_TESTS_HEAD_GROUP_BITS_H
#define ZT_TESTS_HEAD_GROUP_BITS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/status.h"
#include "data/targets.h"
#include "../model/fixture.h"
#include "models/model.h"
#include "zt_test.h"

/* The K variants' log-probabilities (K,R) and logits (K,R,V) in one forward, or (one = 1) in K
 * forwards of one variant each. */
static inline void head_group_forward(zt_model *m, const zt_batch *b, const zt_perturbation *p,
                                      int k_count, int one, float *logprobs, float *logits) {
    const size_t r = (size_t)b->n_targets, v = (size_t)m->dims.vocab_size;
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {b->batch, b->seq_len, one ? 1 : k_count, 1, 0};
    ZT_REQUIRE_OK(zt_workspace_create(m, &shape, &ws));
    if (one) {
        for (int k = 0; k < k_count; k++) {
            zt_variants single = {1, &p[k], NULL};
            ZT_REQUIRE_OK(
                zt_model_forward(m, ws, b, &single, logprobs + k * r, logits + k * r * v));
        }
    } else {
        zt_variants all = {k_count, p, NULL};
        ZT_REQUIRE_OK(zt_model_forward(m, ws, b, &all, logprobs, logits));
    }
    zt_workspace_free(ws);
}

static inline void head_group_check_variants(zt_model *m, const zt_batch *b,
                                             const zt_perturbation *p, int k_count,
                                             const char *what) {
    const size_t r = (size_t)b->n_targets, v = (size_t)m->dims.vocab_size;
    float *lp_together = malloc(k_count * r * sizeof(float));
    float *lp_alone = malloc(k_count * r * sizeof(float));
    float *logits_together = malloc(k_count * r * v * sizeof(float));
    float *logits_alone = malloc(k_count * r * v * sizeof(float));
    head_group_forward(m, b, p, k_count, 0, lp_together, logits_together);
    head_group_forward(m, b, p, k_count, 1, lp_alone, logits_alone);
    int lp_differ = 0;
    size_t logits_differ = 0;
    for (size_t i = 0; i < k_count * r; i++)
        lp_differ += memcmp(&lp_together[i], &lp_alone[i], sizeof(float)) != 0;
    for (size_t i = 0; i < k_count * r * v; i++)
        logits_differ += memcmp(&logits_together[i], &logits_alone[i], sizeof(float)) != 0;
    /* the variants must differ from each other, or the comparison proves little */
    int distinct = 0;
    for (int k = 1; k < k_count; k++)
        distinct += memcmp(lp_together, lp_together + k * r, r * sizeof(float)) != 0;
    printf("  %s: K = %d, %zu log-probabilities and %zu logits differ from %d one-variant forwards "
           "(%d of %d variants differ from variant 0)\n",
           what, k_count, (size_t)lp_differ, logits_differ, k_count, distinct, k_count - 1);
    ZT_CHECK(lp_differ == 0, "%s: %d log-probabilities differ", what, lp_differ);
    ZT_CHECK(logits_differ == 0, "%s: %zu logits differ", what, logits_differ);
    ZT_CHECK(distinct == k_count - 1, "%s: only %d variants differ from variant 0", what, distinct);
    free(lp_together);
    free(lp_alone);
    free(logits_together);
    free(logits_alone);
}

/* K = 2 (MeZO), 3 (an unperturbed variant first), 5 (two seeds, a two-term variant, a group of
 * one left over), and K = 2 under batch invariance. */
static inline void head_group_check_bits(zt_model *m, const zt_batch *b) {
    const float eps = 1e-2f;
    const zt_direction plus = {3, eps}, minus = {3, -eps}, plus2 = {8, eps}, minus2 = {8, -eps};
    const zt_direction pair[2] = {{3, 0.5f * eps}, {8, -0.25f * eps}};
    const zt_perturbation p_plus = {&plus, 1, ZT_DIST_GAUSSIAN, 1.0f};
    const zt_perturbation p_minus = {&minus, 1, ZT_DIST_GAUSSIAN, 1.0f};
    const zt_perturbation none = {NULL, 0, ZT_DIST_GAUSSIAN, 1.0f};
    const zt_perturbation mezo[2] = {p_plus, p_minus};
    head_group_check_variants(m, b, mezo, 2, "MeZO");
    const zt_perturbation with_base[3] = {none, p_plus, p_minus};
    head_group_check_variants(m, b, with_base, 3, "unperturbed first");
    const zt_perturbation mixed[5] = {p_plus,
                                      p_minus,
                                      {&plus2, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                      {&minus2, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                      {pair, 2, ZT_DIST_GAUSSIAN, 1.0f}};
    head_group_check_variants(m, b, mixed, 5, "two seeds");
    ZT_REQUIRE_OK(zt_backend_set_batch_invariant(m->be, 1));
    head_group_check_variants(m, b, mezo, 2, "batch-invariant MeZO");
    ZT_REQUIRE_OK(zt_backend_set_batch_invariant(m->be, 0));
}

/* The checks above on a fixture model (tests/fixtures/NAME) and its "lm" batch, under `gemm`. */
static inline void head_group_check_fixture(zt_backend *be, const char *fixture,
                                            zt_gemm_precision gemm) {
    char dir[1024], ref_path[1024];
    fixture_path(dir, sizeof dir, fixture, NULL);
    fixture_path(ref_path, sizeof ref_path, fixture, "reference.safetensors");
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, gemm));
    zt_model *m = NULL;
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));
    ZT_REQUIRE(m->lm_head == m->embed_tokens, "the %s fixture ties its head", fixture);
    int64_t shape[2];
    int32_t *ids = fixture_array(ref, "lm_input_ids", "I32", NULL, shape);
    int32_t *mask = fixture_array(ref, "lm_attention_mask", "I32", NULL, NULL);
    int32_t *labels = fixture_array(ref, "lm_labels", "I32", NULL, NULL);
    const int batch = (int)shape[0], seq_len = (int)shape[1];
    zt_targets t;
    ZT_REQUIRE_OK(zt_targets_from_labels(batch, seq_len, labels, m->dims.vocab_size, &t));
    zt_batch b = {batch, seq_len, ids, mask, t.n, t.rows, t.ids};
    printf("%s on %s, gemm %s (head input %d, hidden %d):\n", fixture, be->ops->name,
           zt_gemm_precision_name(gemm), m->dims.head_input_size, m->dims.hidden_size);
    head_group_check_bits(m, &b);
    zt_targets_free(&t);
    free(ids);
    free(mask);
    free(labels);
    zt_st_close(ref);
    zt_model_free(m);
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_F32));
}

#endif
