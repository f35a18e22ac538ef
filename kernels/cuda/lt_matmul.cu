/* The backend's one cublasLtMatmul call site (linear.cu's forward and linear_backward.cu's GEMMs)
 * and its plan cache: a configuration's matmul descriptor, layouts and algorithm are created once
 * and reused, the dimension carrying the batch's rows filed under its bucket (linear_plan.h), an
 * algorithm chosen for a bucket confirmed by cublasLtMatmulAlgoCheck for each real row count it
 * meets (docs/design.md §4.3, "GEMMs"). */
#include <string.h>

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

static cudaDataType cuda_type(zt_dtype dtype) {
    return dtype == ZT_F16 ? CUDA_R_16F : dtype == ZT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* A plan's objects until the cache owns them, destroyed on every path out. */
struct lt_plan_guard {
    zt_lt_plan *plan;
    ~lt_plan_guard() {
        if (plan == nullptr) return;
        if (plan->d) (void)cublasLtMatrixLayoutDestroy(plan->d);
        if (plan->b) (void)cublasLtMatrixLayoutDestroy(plan->b);
        if (plan->a) (void)cublasLtMatrixLayoutDestroy(plan->a);
        if (plan->op) (void)cublasLtMatmulDescDestroy(plan->op);
        plan->d = plan->b = plan->a = nullptr;
        plan->op = nullptr;
    }
};

struct lt_pref_guard {
    cublasLtMatmulPreference_t pref = nullptr;
    ~lt_pref_guard() {
        if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
    }
};

/* The stored (rows, cols) of A, B and D for op(A) (m, k), op(B) (k, n), D (m, n). */
struct lt_dims {
    uint64_t a_rows, a_cols, b_rows, b_cols, d_rows, d_cols;
};
static lt_dims dims_of(const zt_lt_plan_key &key, int m, int n, int k) {
    lt_dims d;
    d.a_rows = (uint64_t)(key.trans_a ? k : m);
    d.a_cols = (uint64_t)(key.trans_a ? m : k);
    d.b_rows = (uint64_t)(key.trans_b ? n : k);
    d.b_cols = (uint64_t)(key.trans_b ? k : n);
    d.d_rows = (uint64_t)m;
    d.d_cols = (uint64_t)n;
    return d;
}

static zt_status set_layout_dims(cublasLtMatrixLayout_t layout, uint64_t rows, uint64_t cols) {
    ZT_CUBLAS_TRY(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_ROWS, &rows, sizeof rows));
    ZT_CUBLAS_TRY(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof cols));
    return ZT_OK;
}

/* A strided batch of `count` members, `stride` elements apart (0: one operand for all). */
static zt_status set_layout_batch(cublasLtMatrixLayout_t layout, int count, long long stride) {
    const int32_t members = count;
    const int64_t offset = stride;
    ZT_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                   &members, sizeof members));
    ZT_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &offset, sizeof offset));
    return ZT_OK;
}

/* Points the plan's layouts at (m, n, k), unless they hold it already. */
static zt_status set_plan_dims(zt_lt_plan *plan, int m, int n, int k) {
    if (plan->m == m && plan->n == n && plan->k == k) return ZT_OK;
    const lt_dims d = dims_of(plan->key, m, n, k);
    ZT_TRY(set_layout_dims(plan->a, d.a_rows, d.a_cols));
    ZT_TRY(set_layout_dims(plan->b, d.b_rows, d.b_cols));
    ZT_TRY(set_layout_dims(plan->d, d.d_rows, d.d_cols));
    plan->m = m;
    plan->n = n;
    plan->k = k;
    return ZT_OK;
}

/* cuBLASLt's heuristic for the plan's descriptors at the dimensions its layouts hold now. */
static zt_status query_algo(zt_cuda_backend *cb, const char *op, zt_lt_plan *plan) {
    const zt_lt_plan_key &key = plan->key;
    lt_pref_guard p;
    ZT_CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&p.pref));
    cb->gemm_counts.descriptors_created++;
    const size_t workspace = ZT_CUDA_LT_WORKSPACE_BYTES;
    ZT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(
        p.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    const uint32_t align[3] = {key.align_a, key.align_b, key.align_d};
    ZT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(
        p.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align[0], sizeof align[0]));
    ZT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(
        p.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align[1], sizeof align[1]));
    ZT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(
        p.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align[2], sizeof align[2]));
    ZT_CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(
        p.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align[2], sizeof align[2]));
    cublasLtMatmulHeuristicResult_t result;
    memset(&result, 0, sizeof result);
    int n_results = 0;
    cb->gemm_counts.heuristic_queries++;
    ZT_CUBLAS_TRY(cublasLtMatmulAlgoGetHeuristic(cb->lt, plan->op, plan->a, plan->b, plan->d,
                                                 plan->d, p.pref, 1, &result, &n_results));
    if (n_results < 1 || result.state != CUBLAS_STATUS_SUCCESS)
        return zt_fail(ZT_ERR_CUDA,
                       "%s: cuBLASLt has no algorithm for m %d n %d k %d (A type %d%s, B type "
                       "%d%s, D type %d, compute %d, epilogue %d%s, batch %d)",
                       op, plan->m, plan->n, plan->k, key.a_type, key.trans_a ? " transposed" : "",
                       key.b_type, key.trans_b ? " transposed" : "", key.d_type, key.compute,
                       key.epilogue, key.accumulate ? ", accumulating" : "", key.batch);
    plan->algo = result.algo;
    return ZT_OK;
}

static bool serves(const zt_lt_plan *plan) {
    for (int i = 0; i < plan->n_served; i++)
        if (plan->served[i][0] == plan->m && plan->served[i][1] == plan->n &&
            plan->served[i][2] == plan->k)
            return true;
    return false;
}

/* Records the layouts' dimensions as served by the algorithm, over the oldest record. */
static void remember_served(zt_lt_plan *plan) {
    int *slot = plan->served[plan->next_served];
    slot[0] = plan->m;
    slot[1] = plan->n;
    slot[2] = plan->k;
    plan->next_served = (plan->next_served + 1) % kLtPlanServedDims;
    if (plan->n_served < kLtPlanServedDims) plan->n_served++;
}

/* Creates the plan for `key` (dimensions as the key has them: the rows bucketed) in a free or the
 * oldest slot, destroying what was there. */
static zt_status create_plan(zt_cuda_backend *cb, const char *op, const zt_lt_plan_key &key,
                             const void *bias, zt_lt_plan **out) {
    zt_lt_plan fresh;
    memset(&fresh, 0, sizeof fresh);
    fresh.key = key;
    lt_plan_guard guard = {&fresh};
    const cublasComputeType_t compute = (cublasComputeType_t)key.compute;
    ZT_CUBLAS_TRY(cublasLtMatmulDescCreate(&fresh.op, compute, CUDA_R_32F));
    cb->gemm_counts.descriptors_created++;
    const cublasOperation_t trans_a = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t trans_b = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasLtEpilogue_t epilogue = (cublasLtEpilogue_t)key.epilogue;
    ZT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(fresh.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                                 sizeof trans_a));
    ZT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(fresh.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                                 sizeof trans_b));
    ZT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(fresh.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                 sizeof epilogue));
    if (bias)
        ZT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(fresh.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &bias, sizeof bias));
    if (bias && key.batch > 1) {
        const int64_t stride = key.bias_stride;
        ZT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(
            fresh.op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &stride, sizeof stride));
    }
    const lt_dims d = dims_of(key, key.m, key.n, key.k);
    ZT_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&fresh.a, (cudaDataType)key.a_type, d.a_rows, d.a_cols,
                                             key.lda));
    cb->gemm_counts.descriptors_created++;
    ZT_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&fresh.b, (cudaDataType)key.b_type, d.b_rows, d.b_cols,
                                             key.ldb));
    cb->gemm_counts.descriptors_created++;
    ZT_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&fresh.d, (cudaDataType)key.d_type, d.d_rows, d.d_cols,
                                             key.ldc));
    cb->gemm_counts.descriptors_created++;
    if (key.batch > 1) {
        ZT_TRY(set_layout_batch(fresh.a, key.batch, key.a_stride));
        ZT_TRY(set_layout_batch(fresh.b, key.batch, key.b_stride));
        ZT_TRY(set_layout_batch(fresh.d, key.batch, key.d_stride));
    }
    fresh.m = key.m;
    fresh.n = key.n;
    fresh.k = key.k;
    ZT_TRY(query_algo(cb, op, &fresh));
    remember_served(&fresh);

    int slot;
    if (cb->n_lt_plans < kLtPlanCacheSize) {
        slot = cb->n_lt_plans++;
    } else {
        slot = cb->next_lt_evict;
        cb->next_lt_evict = (cb->next_lt_evict + 1) % kLtPlanCacheSize;
        lt_plan_guard evicted = {&cb->lt_plans[slot]};
    }
    cb->lt_plans[slot] = fresh;
    guard.plan = nullptr; /* the cache owns them now */
    cb->gemm_counts.cached_plans = cb->n_lt_plans;
    *out = &cb->lt_plans[slot];
    return ZT_OK;
}

void zt_cuda_lt_plans_release(zt_cuda_backend *cb) {
    for (int i = 0; i < cb->n_lt_plans; i++) {
        lt_plan_guard release = {&cb->lt_plans[i]};
    }
    cb->n_lt_plans = 0;
    cb->next_lt_evict = 0;
    cb->gemm_counts.cached_plans = 0;
}

zt_status zt_cuda_lt_matmul(zt_cuda_backend *cb, const char *op, const zt_lt_gemm &g) {
    if (g.m == 0 || g.n == 0) return ZT_OK;
    const cublasLtEpilogue_t epilogue =
        g.bias ? (g.relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
               : (g.relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
    zt_lt_plan_key key;
    memset(&key, 0, sizeof key); /* the key is compared bytewise: no stray padding */
    key.m = g.m;
    key.n = g.rows_dim == ZT_LT_ROWS_N ? zt_gemm_rows_bucket(g.n) : g.n;
    key.k = g.rows_dim == ZT_LT_ROWS_K ? zt_gemm_rows_bucket(g.k) : g.k;
    key.lda = g.lda;
    key.ldb = g.ldb;
    key.ldc = g.ldd;
    key.trans_a = g.trans_a != 0;
    key.trans_b = g.trans_b != 0;
    key.accumulate = g.accumulate != 0;
    key.a_type = (int)cuda_type(g.a_dtype);
    key.b_type = (int)cuda_type(g.b_dtype);
    key.d_type = (int)cuda_type(g.d_dtype);
    key.compute = (int)g.compute;
    key.epilogue = (int)epilogue;
    key.rows_dim = (int)g.rows_dim;
    key.align_a = zt_alignment_of(g.a);
    if (g.max_align_a && key.align_a > g.max_align_a) key.align_a = g.max_align_a;
    key.align_b = zt_alignment_of(g.b);
    key.align_d = zt_alignment_of(g.d);
    key.align_bias = g.bias ? zt_alignment_of(g.bias) : 0;
    key.batch = g.batch > 1 ? g.batch : 1;
    if (key.batch > 1) {
        key.a_stride = g.a_stride;
        key.b_stride = g.b_stride;
        key.d_stride = g.d_stride;
        key.bias_stride = g.bias ? g.bias_stride : 0;
        /* a bucket past the members' stride would describe overlapping outputs: the real count */
        if (g.rows_dim == ZT_LT_ROWS_N && (long long)key.n * g.ldd > g.d_stride) key.n = g.n;
    }

    zt_lt_plan *plan = nullptr;
    for (int i = 0; i < cb->n_lt_plans && plan == nullptr; i++)
        if (memcmp(&cb->lt_plans[i].key, &key, sizeof key) == 0) plan = &cb->lt_plans[i];
    if (plan == nullptr) ZT_TRY(create_plan(cb, op, key, g.bias, &plan));
    if (g.bias)
        ZT_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &g.bias, sizeof g.bias));
    ZT_TRY(set_plan_dims(plan, g.m, g.n, g.k));
    if (!serves(plan)) {
        /* The algorithm was chosen for the bucket: cuBLASLt confirms it for these dimensions and
         * this workspace, else its heuristic chooses again for them (the plan keeps that one). */
        cublasLtMatmulHeuristicResult_t check;
        memset(&check, 0, sizeof check);
        cb->gemm_counts.algo_checks++;
        const cublasStatus_t status = cublasLtMatmulAlgoCheck(
            cb->lt, plan->op, plan->a, plan->b, plan->d, plan->d, &plan->algo, &check);
        if (status != CUBLAS_STATUS_SUCCESS || check.workspaceSize > ZT_CUDA_LT_WORKSPACE_BYTES) {
            ZT_TRY(query_algo(cb, op, plan));
            plan->n_served = 0;
        }
        remember_served(plan);
    }
    const float one = 1.0f, beta = g.accumulate ? 1.0f : 0.0f;
    cb->gemm_counts.matmuls++;
    if (key.batch > 1) cb->gemm_counts.batched_matmuls++;
    ZT_CUBLAS_TRY(cublasLtMatmul(cb->lt, plan->op, &one, g.a, plan->a, g.b, plan->b, &beta, g.d,
                                 plan->d, g.d, plan->d, &plan->algo, cb->lt_workspace,
                                 ZT_CUDA_LT_WORKSPACE_BYTES, cb->stream));
    return ZT_OK;
}

} // namespace ZT_CUDA_NAMESPACE
