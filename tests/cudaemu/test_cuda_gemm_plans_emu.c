/* How the CUDA linear cuts and plans its GEMMs (docs/design.md §4.3):
 *   - linear's chunk plan (kernels/cuda/linear_plan.h, pure) on the published OPT shapes, 125m to
 *     66b, at the GPU's 64 MiB chunk budget: the fewest chunks the budget allows, sizes within one
 *     alignment unit of each other, starts aligned; the 13b and 66b cases issue 16 names;
 *   - the row buckets of the GEMM plan cache;
 *   - on the executor (gemm_plans.h): descriptors and heuristic queries created once per shape
 *     and bucket, a bounded cache over batches of varying length, log-probs equal to the CPU's,
 *     and the counts per MeZO step printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudaemu_backend.h"
#include "gemm_plans.h"

#define GPU_CHUNK_FLOATS (16u << 20) /* ZT_CUDA_LINEAR_CHUNK_FLOATS on a GPU */

typedef struct opt_shape {
    const char *name;
    int hidden, ffn;
} opt_shape;

static const opt_shape kOptShapes[] = {
    {"125m", 768, 3072},   {"350m", 1024, 4096}, {"1.3b", 2048, 8192}, {"2.7b", 2560, 10240},
    {"6.7b", 4096, 16384}, {"13b", 5120, 20480}, {"30b", 7168, 28672}, {"66b", 9216, 36864},
};
enum { OPT_VOCAB = 50272 };

/* The properties every plan must have; returns the plan's chunking. */
static zt_chunking check_plan(const char *what, zt_gemm_precision gemm, int n_rows, int in_features,
                              int out_features, zt_dtype w_dtype, size_t chunk_floats) {
    const zt_linear_scratch plan =
        zt_cuda_linear_scratch(gemm, n_rows, in_features, out_features, w_dtype, 0, chunk_floats);
    const zt_chunking *c = &plan.chunks;
    const size_t budget = chunk_floats * sizeof(float);
    const size_t row_bytes = (size_t)in_features * (plan.half_inputs ? zt_dtype_size(w_dtype) : 4);
    const size_t total = plan.half_inputs ? (size_t)n_rows : (size_t)out_features;
    const size_t min_rows = plan.half_inputs ? 1 : 4;
    size_t max_rows = budget / row_bytes;
    if (max_rows < min_rows) max_rows = min_rows;
    const size_t fewest = (total + max_rows - 1) / max_rows;
    ZT_CHECK(c->total == total && c->n_chunks == fewest, "%s: %zu chunks of %zu rows, fewest %zu",
             what, c->n_chunks, total, fewest);
    size_t next = 0, smallest = total, largest = 0;
    for (size_t i = 0; i < c->n_chunks; i++) {
        const size_t first = zt_chunk_first(c, i), rows = zt_chunk_rows(c, i);
        ZT_CHECK(first == next && rows > 0, "%s: chunk %zu at %zu, %zu rows (expected at %zu)",
                 what, i, first, rows, next);
        ZT_CHECK(first % c->unit == 0 && (c->unit >= min_rows || c->n_chunks == 1),
                 "%s: chunk %zu at row %zu, unit %zu", what, i, first, c->unit);
        ZT_CHECK(rows <= max_rows, "%s: chunk %zu of %zu rows over the budget's %zu", what, i, rows,
                 max_rows);
        next = first + rows;
        if (rows < smallest) smallest = rows;
        if (rows > largest) largest = rows;
    }
    ZT_CHECK(next == total, "%s: chunks end at %zu of %zu", what, next, total);
    /* within a unit, and a unit at most an eighth of a chunk unless it is the least alignment */
    ZT_CHECK(largest - smallest <= c->unit &&
                 (c->n_chunks == 1 || 8 * c->unit <= largest || c->unit == min_rows),
             "%s: chunks of %zu to %zu rows, unit %zu: not even", what, smallest, largest, c->unit);
    ZT_CHECK(zt_chunk_max_rows(c) == largest, "%s: scratch sized for %zu rows, largest chunk %zu",
             what, zt_chunk_max_rows(c), largest);
    ZT_CHECK(plan.total_bytes >= largest * row_bytes, "%s: scratch %zu bytes for %zu", what,
             plan.total_bytes, largest * row_bytes);
    return *c;
}

static void check_opt_plans(void) {
    static const int rows[] = {1, 16, 512, 4096, 8192};
    int n_plans = 0;
    for (size_t s = 0; s < sizeof kOptShapes / sizeof kOptShapes[0]; s++) {
        const opt_shape *o = &kOptShapes[s];
        const int layers[4][2] = {{o->hidden, o->hidden},
                                  {o->hidden, o->ffn},
                                  {o->ffn, o->hidden},
                                  {o->hidden, OPT_VOCAB}};
        for (int l = 0; l < 4; l++)
            for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
                for (int g = 0; g < 2; g++) {
                    char what[96];
                    snprintf(what, sizeof what, "opt-%s %dx%d N=%d %s", o->name, layers[l][0],
                             layers[l][1], rows[r], g ? "half" : "f32 (widened)");
                    check_plan(what, g ? ZT_GEMM_HALF : ZT_GEMM_F32, rows[r], layers[l][0],
                               layers[l][1], ZT_BF16, GPU_CHUNK_FLOATS);
                    n_plans++;
                }
    }
    /* issue 16's cases: 13b q/k/v over 4096 rows took 3264 + 832 rows (half) and 3264 + 1856
     * weight rows (widened); 66b fc2 re-read its weight for each of 10 row chunks (9 x 448 + 64) */
    zt_chunking c =
        check_plan("13b q half", ZT_GEMM_HALF, 4096, 5120, 5120, ZT_BF16, GPU_CHUNK_FLOATS);
    ZT_CHECK(c.n_chunks == 1, "13b q/k/v under half: %zu chunks", c.n_chunks);
    c = check_plan("13b q f32", ZT_GEMM_F32, 4096, 5120, 5120, ZT_BF16, GPU_CHUNK_FLOATS);
    ZT_CHECK(c.n_chunks == 2 && zt_chunk_rows(&c, 0) == 2560 && zt_chunk_rows(&c, 1) == 2560,
             "13b q/k/v widened: %zu chunks, first %zu rows", c.n_chunks, zt_chunk_rows(&c, 0));
    c = check_plan("66b fc2 half", ZT_GEMM_HALF, 4096, 36864, 9216, ZT_BF16, GPU_CHUNK_FLOATS);
    ZT_CHECK(c.n_chunks == 5 && zt_chunk_rows(&c, 0) == 768 && zt_chunk_rows(&c, 4) == 832,
             "66b fc2 under half: %zu chunks, %zu to %zu rows", c.n_chunks, zt_chunk_rows(&c, 0),
             zt_chunk_rows(&c, c.n_chunks - 1));
    c = check_plan("66b fc2 f32", ZT_GEMM_F32, 4096, 36864, 9216, ZT_BF16, GPU_CHUNK_FLOATS);
    ZT_CHECK(c.n_chunks == 21 && c.unit == 16 && zt_chunk_rows(&c, 0) == 432 &&
                 zt_chunk_rows(&c, 20) == 448,
             "66b fc2 widened: %zu chunks of unit %zu, %zu to %zu rows", c.n_chunks, c.unit,
             zt_chunk_rows(&c, 0), zt_chunk_rows(&c, 20));
    /* the executor's 40K floats: the minimum of 4 weight rows, and tiny layers */
    check_plan("40961 in, widened", ZT_GEMM_F32, 3, 40961, 9, ZT_F16, 40u * 1024u);
    check_plan("40961 in, half", ZT_GEMM_HALF, 3, 40961, 9, ZT_F16, 40u * 1024u);
    check_plan("1 x 1 widened", ZT_GEMM_F32, 1, 1, 1, ZT_BF16, 40u * 1024u);
    check_plan("768 x 300 widened", ZT_GEMM_F32, 37, 768, 300, ZT_BF16, 40u * 1024u);
    printf("chunk plans: %d OPT layer shapes (125m..66b) x rows x precision hold\n", n_plans);
}

static void check_buckets(void) {
    static const int cases[][2] = {{1, 8},       {8, 8},      {9, 16},    {64, 64},
                                   {65, 80},     {100, 112},  {129, 160}, {4096, 4096},
                                   {4097, 5120}, {3000, 3072}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ZT_CHECK(zt_gemm_rows_bucket(cases[i][0]) == cases[i][1], "bucket of %d rows: %d, not %d",
                 cases[i][0], zt_gemm_rows_bucket(cases[i][0]), cases[i][1]);
    int n_distinct = 0, previous = 0;
    for (int rows = 1; rows <= 32768; rows++) {
        const int b = zt_gemm_rows_bucket(rows);
        ZT_CHECK(b >= rows && (rows <= 64 || 4 * (long)b <= 5 * (long)rows + 4 * 64),
                 "bucket of %d rows: %d", rows, b);
        if (b != previous) n_distinct++;
        ZT_CHECK(b >= previous, "buckets not monotonic at %d rows", rows);
        previous = b;
        if (n_distinct > 64) break;
    }
    ZT_CHECK(n_distinct == 8 + 4 * 9, "%d buckets for 1..32768 rows (8 up to 64, 4 per octave)",
             n_distinct);
}

/* More configurations than the cache holds (kLtPlanCacheSize, 128): the oldest plans are
 * destroyed as new ones come, a shape met again after its plan was evicted is planned again and
 * still computes the double loop's result, and destroying the backend destroys every cuBLASLt
 * object the cache held. */
static void check_eviction(void) {
    enum { N = 3, IC = 8, SHAPES = 150, CACHE = 128 };
    const long live_before = cudaemu_lt_live_objects();
    zt_backend *emu = NULL;
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    const zt_backend_ops *op = emu->ops;
    float x[N * IC], w[SHAPES * IC], want[N * SHAPES], got[N * SHAPES];
    for (int i = 0; i < N * IC; i++)
        x[i] = (float)((i * 7) % 11) - 5.0f;
    for (int i = 0; i < SHAPES * IC; i++)
        w[i] = (float)((i * 5) % 13) * 0.25f - 1.5f;
    float *d_x = NULL, *d_w = NULL, *d_out = NULL;
    ZT_REQUIRE_OK(op->alloc(emu, sizeof x, ZT_MEM_ACTIVATIONS, (void **)&d_x));
    ZT_REQUIRE_OK(op->alloc(emu, sizeof w, ZT_MEM_WEIGHTS, (void **)&d_w));
    ZT_REQUIRE_OK(op->alloc(emu, sizeof got, ZT_MEM_ACTIVATIONS, (void **)&d_out));
    ZT_REQUIRE_OK(op->upload(emu, d_x, x, sizeof x));
    ZT_REQUIRE_OK(op->upload(emu, d_w, w, sizeof w));
    const zt_weight absent = {NULL, ZT_F32};
    /* out_features 1..SHAPES, then the first 10 again (evicted by then) */
    for (int pass = 0; pass < 2; pass++)
        for (int oc = 1; oc <= (pass ? 10 : SHAPES); oc++) {
            const zt_weight wt = {d_w, ZT_F32};
            ZT_REQUIRE_OK(op->linear(emu, d_out, d_x, wt, absent, N, IC, oc, 0));
            ZT_REQUIRE_OK(op->download(emu, got, d_out, (size_t)N * oc * sizeof(float)));
            for (int n = 0; n < N; n++)
                for (int o = 0; o < oc; o++) {
                    double sum = 0.0; /* small integers and quarters: exact in f32 */
                    for (int k = 0; k < IC; k++)
                        sum += (double)x[n * IC + k] * w[o * IC + k];
                    want[n * oc + o] = (float)sum;
                }
            ZT_CHECK(memcmp(got, want, (size_t)N * oc * sizeof(float)) == 0,
                     "linear OC=%d (pass %d) differs from the double loop", oc, pass);
        }
    zt_cuda_gemm_counts c;
    zt_cudaemu_backend_gemm_counts(emu, &c);
    ZT_CHECK(c.cached_plans == CACHE, "%d plans cached after %d shapes", c.cached_plans, SHAPES);
    ZT_CHECK(c.heuristic_queries == SHAPES + 10,
             "%llu heuristic queries for %d shapes and 10 evicted ones again", c.heuristic_queries,
             SHAPES);
    /* each plan: a descriptor and 3 layouts, alive; a preference per query, destroyed at once */
    ZT_CHECK(cudaemu_lt_live_objects() - live_before == 4 * CACHE,
             "%ld cuBLASLt objects alive with %d plans cached",
             cudaemu_lt_live_objects() - live_before, CACHE);
    op->free(emu, d_x, sizeof x, ZT_MEM_ACTIVATIONS);
    op->free(emu, d_w, sizeof w, ZT_MEM_WEIGHTS);
    op->free(emu, d_out, sizeof got, ZT_MEM_ACTIVATIONS);
    zt_backend_destroy(emu);
    ZT_CHECK(cudaemu_lt_live_objects() == live_before,
             "%ld cuBLASLt objects alive after the backend was destroyed, %ld before",
             cudaemu_lt_live_objects(), live_before);
    printf("plan cache: %d shapes, %d cached, %llu queries, objects freed at destroy\n", SHAPES,
           CACHE, c.heuristic_queries);
}

/* The backend under test with attention on the f32 kernel: these checks hold the GEMMs to the
 * CPU's half mode, which rounds no attention operands; the cuDNN path's own rounding is
 * test_cuda_cudnn_emu's and model_parity.h's. */
static zt_status create_gemm_only(int device, zt_backend **out) {
    ZT_TRY(zt_cudaemu_backend_create(device, out));
    return zt_cudaemu_backend_set_attention_mode(*out, ZT_CUDA_ATTENTION_F32);
}

int main(void) {
    check_opt_plans();
    check_buckets();
    check_eviction();

    const char *fixtures = getenv("ZT_FIXTURES");
    ZT_REQUIRE(fixtures != NULL, "ZT_FIXTURES is not set");
    char f32_dir[4096], f16_dir[4096];
    snprintf(f32_dir, sizeof f32_dir, "%s/opt-pre", fixtures);
    snprintf(f16_dir, sizeof f16_dir, "%s/opt-pre-f16", fixtures);
    zt_gemm_plans_run(create_gemm_only, 0, zt_cudaemu_backend_gemm_counts, f32_dir, ZT_GEMM_F32);
    zt_gemm_plans_run(create_gemm_only, 0, zt_cudaemu_backend_gemm_counts, f16_dir, ZT_GEMM_F32);
    zt_gemm_plans_run(create_gemm_only, 0, zt_cudaemu_backend_gemm_counts, f16_dir, ZT_GEMM_HALF);
    return zt_test_finish("test_cuda_gemm_plans_emu");
}
