/* The cuDNN attention path's scratch in the memory plan (kernels/cuda/attention_cudnn.cu,
 * docs/design.md §4.5), on the host executor with its cuDNN stand-in: the attention query of
 * scratch_bytes, given the batch, the heads and q's dtype, answers the path's four half operands
 * padded to the plan's length (a multiple of 64), two per-sequence int32 vectors and cuDNN's
 * workspace (the stand-in asks 512 bytes), each 256-byte aligned, computed here from that
 * formula; 0 where attention takes the f32 kernel (--gemm f32, the F32 attention mode, a query
 * without a batch). The model's plan counts it, so a half-mode forward whose largest scratch
 * request is the attention's runs within the scratch its workspace reserved: the tracked scratch
 * does not grow during the forward (before, the cuDNN path grew it on demand). */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "core/alloc.h"
#include "cudaemu_backend.h"
#include "data/targets.h"
#include "fixture.h"
#include "model.h"
#include "zt_test.h"

static size_t align256(size_t n) {
    return (n + 255) / 256 * 256;
}

/* The stand-in's workspace (tests/cudaemu/cudaemu_cudnn.cpp, kWorkspaceBytes). */
enum { STAND_IN_WORKSPACE = 512 };

static size_t want_cudnn_scratch(int batch, int seq_len, int heads, int head_dim) {
    const size_t plan_len = ((size_t)seq_len + 63) / 64 * 64;
    return 4 * align256((size_t)batch * plan_len * heads * head_dim * 2) +
           2 * align256((size_t)batch * 4) + STAND_IN_WORKSPACE;
}

static size_t attention_query(zt_backend *be, int batch, int seq_len, int heads, int head_dim,
                              zt_dtype q_dtype) {
    const zt_scratch_query q = {.op = ZT_SCRATCH_ATTENTION,
                                .weight_dtype = q_dtype,
                                .bias_dtype = ZT_F32,
                                .seq_len = seq_len,
                                .head_dim = head_dim,
                                .batch = batch,
                                .n_heads = heads};
    return be->ops->scratch_bytes(be, &q);
}

static size_t scratch_now(void) {
    zt_mem_stats s;
    zt_mem_stats_get(&s);
    return s.current[ZT_MEM_SCRATCH];
}

static void check_queries(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &be));
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_HALF));
    static const int shapes[][4] = {{4, 12, 4, 8}, {3, 64, 2, 16}, {2, 65, 4, 64}, {1, 200, 8, 32}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int b = shapes[i][0], t = shapes[i][1], h = shapes[i][2], d = shapes[i][3];
        const size_t want = want_cudnn_scratch(b, t, h, d);
        for (int dt = 0; dt < 2; dt++) {
            const zt_dtype dtype = dt ? ZT_BF16 : ZT_F16;
            const size_t got = attention_query(be, b, t, h, d, dtype);
            printf("  attention B=%d T=%d H=%d D=%d %s under --gemm half: %zu bytes of scratch "
                   "(want %zu)\n",
                   b, t, h, d, zt_dtype_name(dtype), got, want);
            ZT_CHECK(got == want, "B=%d T=%d H=%d D=%d %s: %zu bytes, want %zu", b, t, h, d,
                     zt_dtype_name(dtype), got, want);
        }
        /* the f32 kernel takes none: f32 q, no batch named, the F32 mode, --gemm f32 */
        ZT_CHECK(attention_query(be, b, t, h, d, ZT_F32) == 0, "f32 q: scratch planned");
        ZT_CHECK(attention_query(be, 0, t, h, d, ZT_F16) == 0, "no batch: scratch planned");
        ZT_REQUIRE_OK(zt_cudaemu_backend_set_attention_mode(be, ZT_CUDA_ATTENTION_F32));
        ZT_CHECK(attention_query(be, b, t, h, d, ZT_F16) == 0, "F32 mode: scratch planned");
        ZT_REQUIRE_OK(zt_cudaemu_backend_set_attention_mode(be, ZT_CUDA_ATTENTION_AUTO));
        ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_F32));
        ZT_CHECK(attention_query(be, b, t, h, d, ZT_F16) == 0, "--gemm f32: scratch planned");
        ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_HALF));
    }
    /* head dim 20: the stand-in has no engine for it, so the f32 kernel and no scratch */
    ZT_CHECK(attention_query(be, 2, 16, 2, 20, ZT_F16) == 0, "D = 20: scratch planned");
    zt_backend_destroy(be);
}

/* The fixture's LM batch through a K = 3 half-mode forward on a fresh backend. */
static void check_forward(const char *fixture) {
    char dir[1024], ref_path[1024];
    fixture_path(dir, sizeof dir, fixture, NULL);
    fixture_path(ref_path, sizeof ref_path, fixture, "reference.safetensors");
    zt_safetensors *ref = NULL;
    ZT_REQUIRE_OK(zt_st_open(ref_path, &ref));
    fixture_lm_batch lm = fixture_lm_batch_read(ref);
    const int batch = lm.batch, seq_len = lm.seq_len;

    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &be));
    ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, ZT_GEMM_HALF));
    zt_model *m = NULL;
    ZT_REQUIRE_OK(zt_model_load(dir, be, &m));
    zt_targets targets;
    ZT_REQUIRE_OK(zt_targets_from_labels(batch, seq_len, lm.labels, m->dims.vocab_size, &targets));
    const zt_batch b = {batch, seq_len, lm.ids, lm.mask, targets.n, targets.rows, targets.ids};
    const zt_direction plus = {0x5eedULL, 1e-3f}, minus = {0x5eedULL, -1e-3f};
    const zt_perturbation p[3] = {{NULL, 0, ZT_DIST_GAUSSIAN, 1.0f},
                                  {&plus, 1, ZT_DIST_GAUSSIAN, 1.0f},
                                  {&minus, 1, ZT_DIST_GAUSSIAN, 1.0f}};
    const zt_variants v = {3, p, NULL};
    zt_workspace_shape ws_shape = {batch, seq_len, 3, 1, 0};
    zt_memory_plan plan;
    zt_model_plan_memory(m, &ws_shape, &plan);
    const int heads = m->dims.n_heads, head_dim = m->dims.hidden_size / heads;
    const size_t attention = want_cudnn_scratch(batch, seq_len, heads, head_dim);
    ZT_CHECK(plan.backend_scratch_bytes >= attention,
             "%s: planned scratch %zu below the cuDNN attention's %zu", fixture,
             plan.backend_scratch_bytes, attention);

    const size_t before_workspace = scratch_now();
    zt_workspace *ws = NULL;
    ZT_REQUIRE_OK(zt_workspace_create(m, &ws_shape, &ws));
    const size_t reserved = scratch_now();
    zt_cuda_attention_path_counts paths_before, paths_after;
    zt_cudaemu_backend_attention_paths(be, &paths_before);
    float *lp = malloc((size_t)3 * targets.n * sizeof(float));
    ZT_CHECK_OK(zt_model_forward(m, ws, &b, &v, lp, NULL));
    zt_cudaemu_backend_attention_paths(be, &paths_after);
    const size_t after = scratch_now();
    printf("  %-12s B=%d T=%d: plan's backend scratch %zu B (cuDNN attention %zu B); tracked "
           "scratch %zu B after the workspace, %zu B after the forward (%llu attention calls on "
           "cuDNN)\n",
           fixture, batch, seq_len, plan.backend_scratch_bytes, attention,
           reserved - before_workspace, after - before_workspace,
           paths_after.cudnn - paths_before.cudnn);
    ZT_CHECK(paths_after.cudnn - paths_before.cudnn == (unsigned long long)m->dims.n_layers * 3,
             "%s: %llu attention calls on cuDNN, want %d", fixture,
             paths_after.cudnn - paths_before.cudnn, m->dims.n_layers * 3);
    ZT_CHECK(after == reserved, "%s: the forward grew the scratch from %zu to %zu bytes", fixture,
             reserved, after);
    free(lp);
    zt_workspace_free(ws);
    zt_targets_free(&targets);
    zt_model_free(m);
    zt_backend_destroy(be);
    fixture_lm_batch_free(&lm);
    zt_st_close(ref);
}

int main(void) {
    printf("scratch_bytes' attention query on the executor's cuDNN path\n");
    check_queries();
    printf("half-mode forwards within their planned scratch\n");
    check_forward("opt-pre-f16");
    check_forward("opt-pre-bf16");
    return zt_test_finish("test_cuda_attention_scratch_emu");
}
