/* Attention on tensor cores through cuDNN (docs/design.md §4.3, "Attention"): the `attention` op
 * with --gemm half, as a cuDNN operation graph of the flash fused attention pattern on q, k, v
 * rounded to f16 or bf16; attention.cu's f32 kernels remain the fallback.
 *
 * Why a graph and not CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR: cuDNN 9.19's single SDPA
 * operation has no causal mask (only sequence lengths and block masks; the diagonal and score
 * modifiers arrive in 9.21), and zotune's attention is causal. The graph is the one the cuDNN
 * frontend builds for inference: S = Q K^T, S * scale, causal select from two GEN_INDEX and a
 * CMP_GE, softmax as MAX, SUB, EXP, ADD, DIV, then O = P V; every intermediate virtual and f32,
 * as the frontend declares them (the engine itself rounds P to the operands' dtype for P V).
 *
 * The padding mask. zotune's batches are left-padded (src/data): sequence b's admissible keys
 * are [lo_b, T). A packing kernel moves each sequence's rows lo_b .. T-1 to rows 0 .. T-lo_b-1 of
 * the half operands (zeros after them), so that the causal mask alone is the whole mask: a real
 * query i' = i - lo_b sees keys j' <= i', all real, exactly the keys j in [lo_b, i] it has in
 * the op. Rows past T - lo_b (queries of zero keys) compute something finite that nobody reads;
 * the unpacking kernel writes rows lo_b .. T-1 of `out` back in f32 and zeros before them (a
 * query with no admissible key). The contract allows any mask, though: a sequence whose
 * admissible keys are not one [lo, T) run (or are none) is flagged on the device by the span
 * kernel, skipped by the unpacking, and recomputed by attention.cu's kernel, which runs for the
 * flagged sequences only. No host wait is needed for any of it.
 *
 * q_scale is applied while packing (q * scale rounded once, as HF rounds the q_proj output), so
 * the graph's own scale is 1 and one plan serves every scale. Plans are cached per (B, T rounded
 * up to 64, H, D, dtype); one that cuDNN refuses (no engine, or the graph does not finalize) is
 * cached as refused, and that shape takes the f32 kernel. Each decision is said once on stderr. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#ifndef ZT_CUDA_EMULATED
#include <dlfcn.h>
#endif

#include "cuda/cuda_common.cuh"

namespace ZT_CUDA_NAMESPACE {

// ---------------------------------------------------------------------------------------------
// The kernels around the graph.

/* For each sequence, lo = the first admissible key and flag = 1 unless the admissible keys are
 * exactly [lo, T) and not empty. A thread per sequence: T reads each, a few microseconds. */
__global__ void zt_attention_key_span_k(int32_t *lo, int32_t *flag, /* (B) each */
                                        const int32_t *key_mask,    /* (B,T) */
                                        int batch, int seq_len) {
    for (int b = blockIdx.x * blockDim.x + threadIdx.x; b < batch; b += gridDim.x * blockDim.x) {
        const int32_t *row = key_mask + (size_t)b * seq_len;
        int first = seq_len, count = 0;
        for (int j = 0; j < seq_len; j++) {
            if (row[j] != 0) {
                if (first == seq_len) first = j;
                count++;
            }
        }
        lo[b] = first;
        flag[b] = count == 0 || count != seq_len - first;
    }
}

/* q, k, v (B,T,C) f32 to the half operands (B,Tp,C), Tp >= T the plan's length: each sequence's
 * rows lo .. T-1 moved to 0 .. T-lo-1, zeros after them; q times q_scale before rounding. */
__global__ void zt_attention_pack_k(void *q_half, void *k_half, void *v_half, /* (B,Tp,C) */
                                    zt_dtype half, const float *q, const float *k,
                                    const float *v, /* (B,T,C) each */
                                    const int32_t *lo, int batch, int seq_len, int plan_len,
                                    int n_cols, float q_scale) {
    const size_t n = (size_t)batch * plan_len * n_cols;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t row = e / (size_t)n_cols, col = e % (size_t)n_cols;
        const int b = (int)(row / (size_t)plan_len), t = (int)(row % (size_t)plan_len);
        const int source_t = t + lo[b];
        const bool inside = source_t < seq_len;
        const size_t at = ((size_t)b * seq_len + (size_t)(inside ? source_t : 0)) * n_cols + col;
        zt_store_rne(q_half, half, e, inside ? q[at] * q_scale : 0.0f);
        zt_store_rne(k_half, half, e, inside ? k[at] : 0.0f);
        zt_store_rne(v_half, half, e, inside ? v[at] : 0.0f);
    }
}

/* The half output (B,Tp,C) back to out (B,T,C) f32 in the op's rows: row t of a sequence is row
 * t - lo of o_half, and rows before lo are zeros. Flagged sequences are left to the f32 kernel. */
__global__ void zt_attention_unpack_k(float *out,                        /* (B,T,C) */
                                      const void *o_half, zt_dtype half, /* (B,Tp,C) */
                                      const int32_t *lo, const int32_t *flag, int batch,
                                      int seq_len, int plan_len, int n_cols) {
    const size_t n = (size_t)batch * seq_len * n_cols;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t row = e / (size_t)n_cols, col = e % (size_t)n_cols;
        const int b = (int)(row / (size_t)seq_len), t = (int)(row % (size_t)seq_len);
        if (flag[b]) continue;
        const int first = lo[b];
        out[e] = t < first
                     ? 0.0f
                     : zt_load_f32(o_half, half,
                                   ((size_t)b * plan_len + (size_t)(t - first)) * n_cols + col);
    }
}

/* Plans are made for T rounded up to a multiple of this, so that batches of nearby padded lengths
 * share one (a plan costs cuDNN's heuristic and finalize on the host). The extra rows are zeros
 * after each sequence's own; under the causal mask no kept query sees them. */
constexpr int kPlanLenMultiple = 64;

static unsigned span_blocks(int batch) {
    return (unsigned)((batch + kBlockThreads - 1) / kBlockThreads);
}

// ---------------------------------------------------------------------------------------------
// The library. The real build opens libcudnn.so.9 at run time (dlopen), so that a machine without
// cuDNN still runs zotune, with attention on the f32 kernel; the executor's build calls its
// stand-ins (tests/cudaemu/cudaemu_cudnn.cpp, which cudaemu.h renames these names to).

struct zt_cudnn_api {
    decltype(&cudnnCreate) create;
    decltype(&cudnnDestroy) destroy;
    decltype(&cudnnSetStream) set_stream;
    decltype(&cudnnGetErrorString) error_string;
    decltype(&cudnnBackendCreateDescriptor) create_descriptor;
    decltype(&cudnnBackendDestroyDescriptor) destroy_descriptor;
    decltype(&cudnnBackendSetAttribute) set_attribute;
    decltype(&cudnnBackendGetAttribute) get_attribute;
    decltype(&cudnnBackendFinalize) finalize;
    decltype(&cudnnBackendExecute) execute;
    char missing[160]; /* why the library is not there; "" when it is */
};

static zt_cudnn_api load_cudnn() {
    zt_cudnn_api api;
    memset(&api, 0, sizeof api);
#ifdef ZT_CUDA_EMULATED
    api.create = cudnnCreate;
    api.destroy = cudnnDestroy;
    api.set_stream = cudnnSetStream;
    api.error_string = cudnnGetErrorString;
    api.create_descriptor = cudnnBackendCreateDescriptor;
    api.destroy_descriptor = cudnnBackendDestroyDescriptor;
    api.set_attribute = cudnnBackendSetAttribute;
    api.get_attribute = cudnnBackendGetAttribute;
    api.finalize = cudnnBackendFinalize;
    api.execute = cudnnBackendExecute;
#else
    void *lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        const char *err = dlerror();
        snprintf(api.missing, sizeof api.missing, "%s", err ? err : "libcudnn.so.9 not found");
        return api;
    }
    /* The library stays open for the process: plans made from it may outlive any backend. */
    bool all = true;
#define ZT_CUDNN_SYMBOL(field, name)                                                               \
    all = all && (*reinterpret_cast<void **>(&api.field) = dlsym(lib, #name)) != NULL
    ZT_CUDNN_SYMBOL(create, cudnnCreate);
    ZT_CUDNN_SYMBOL(destroy, cudnnDestroy);
    ZT_CUDNN_SYMBOL(set_stream, cudnnSetStream);
    ZT_CUDNN_SYMBOL(error_string, cudnnGetErrorString);
    ZT_CUDNN_SYMBOL(create_descriptor, cudnnBackendCreateDescriptor);
    ZT_CUDNN_SYMBOL(destroy_descriptor, cudnnBackendDestroyDescriptor);
    ZT_CUDNN_SYMBOL(set_attribute, cudnnBackendSetAttribute);
    ZT_CUDNN_SYMBOL(get_attribute, cudnnBackendGetAttribute);
    ZT_CUDNN_SYMBOL(finalize, cudnnBackendFinalize);
    ZT_CUDNN_SYMBOL(execute, cudnnBackendExecute);
#undef ZT_CUDNN_SYMBOL
    if (!all) snprintf(api.missing, sizeof api.missing, "libcudnn.so.9 lacks a backend API entry");
#endif
    return api;
}

/* Loaded once per process (a function-local static: thread-safe initialization). */
static const zt_cudnn_api *cudnn_api() {
    static const zt_cudnn_api api = load_cudnn();
    return &api;
}

// ---------------------------------------------------------------------------------------------
// The graph.

/* Unique ids of the tensors the variant pack supplies; virtual ones count up from kFirstVirtual. */
enum : int64_t {
    kUidQ = 1,
    kUidKT,
    kUidV,
    kUidO,
    kUidScale,
    kUidMaskValue,
    kFirstVirtual = 100,
};

/* Every backend call of a plan build goes through this: a status other than success ends the
 * build with the call named (the plan is then refused, not an error of the op). */
#define ZT_CUDNN_BUILD(call)                                                                       \
    do {                                                                                           \
        cudnnStatus_t zt_cudnn_st_ = (call);                                                       \
        if (zt_cudnn_st_ != CUDNN_STATUS_SUCCESS) {                                                \
            snprintf(why, why_size, "%s: %s", #call, cudnn_api()->error_string(zt_cudnn_st_));     \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

/* The descriptors of one build, destroyed together whether it succeeds or not (the execution
 * plan keeps what it needs). */
struct descriptor_pool {
    cudnnBackendDescriptor_t items[64];
    int n = 0;
    ~descriptor_pool() {
        for (int i = n - 1; i >= 0; i--)
            cudnn_api()->destroy_descriptor(items[i]);
    }
    cudnnStatus_t make(cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t *out) {
        if (n == (int)(sizeof items / sizeof items[0])) return CUDNN_STATUS_INTERNAL_ERROR;
        cudnnStatus_t st = cudnn_api()->create_descriptor(type, out);
        if (st == CUDNN_STATUS_SUCCESS) items[n++] = *out;
        return st;
    }
};

struct graph_builder {
    descriptor_pool pool;
    char *why;
    size_t why_size;
    int64_t next_virtual = kFirstVirtual;

    /* A 4-d tensor; strides NULL means packed row-major. */
    bool tensor(cudnnBackendDescriptor_t *out, int64_t uid, cudnnDataType_t type,
                const int64_t (&dims)[4], const int64_t *strides, bool is_virtual,
                bool by_value = false) {
        int64_t packed[4];
        if (strides == NULL) {
            packed[3] = 1;
            for (int i = 2; i >= 0; i--)
                packed[i] = packed[i + 1] * dims[i + 1];
            strides = packed;
        }
        const int64_t alignment = 16;
        ZT_CUDNN_BUILD(pool.make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, out));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(*out, CUDNN_ATTR_TENSOR_DATA_TYPE,
                                                  CUDNN_TYPE_DATA_TYPE, 1, &type));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(*out, CUDNN_ATTR_TENSOR_DIMENSIONS,
                                                  CUDNN_TYPE_INT64, 4, dims));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(*out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64,
                                                  4, strides));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID,
                                                  CUDNN_TYPE_INT64, 1, &uid));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT,
                                                  CUDNN_TYPE_INT64, 1, &alignment));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(*out, CUDNN_ATTR_TENSOR_IS_VIRTUAL,
                                                  CUDNN_TYPE_BOOLEAN, 1, &is_virtual));
        if (by_value)
            ZT_CUDNN_BUILD(cudnn_api()->set_attribute(*out, CUDNN_ATTR_TENSOR_IS_BY_VALUE,
                                                      CUDNN_TYPE_BOOLEAN, 1, &by_value));
        ZT_CUDNN_BUILD(cudnn_api()->finalize(*out));
        return true;
    }

    bool virtual_tensor(cudnnBackendDescriptor_t *out, cudnnDataType_t type,
                        const int64_t (&dims)[4]) {
        return tensor(out, next_virtual++, type, dims, NULL, true);
    }

    /* y = mode(x [, b [, t]]); axis >= 0 for GEN_INDEX. */
    bool pointwise(cudnnBackendDescriptor_t *ops, int *n_ops, cudnnPointwiseMode_t mode,
                   cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                   cudnnBackendDescriptor_t t, cudnnBackendDescriptor_t y, int64_t axis = -1) {
        cudnnBackendDescriptor_t pw, op;
        const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
        ZT_CUDNN_BUILD(pool.make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(pw, CUDNN_ATTR_POINTWISE_MODE,
                                                  CUDNN_TYPE_POINTWISE_MODE, 1, &mode));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(pw, CUDNN_ATTR_POINTWISE_MATH_PREC,
                                                  CUDNN_TYPE_DATA_TYPE, 1, &precision));
        if (axis >= 0)
            ZT_CUDNN_BUILD(cudnn_api()->set_attribute(pw, CUDNN_ATTR_POINTWISE_AXIS,
                                                      CUDNN_TYPE_INT64, 1, &axis));
        ZT_CUDNN_BUILD(cudnn_api()->finalize(pw));
        ZT_CUDNN_BUILD(pool.make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, &op));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
        if (b)
            ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC,
                                                      CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
        if (t)
            ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC,
                                                      CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
        ZT_CUDNN_BUILD(cudnn_api()->finalize(op));
        ops[(*n_ops)++] = op;
        return true;
    }

    bool matmul(cudnnBackendDescriptor_t *ops, int *n_ops, cudnnBackendDescriptor_t a,
                cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
        cudnnBackendDescriptor_t mm, op;
        const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
        ZT_CUDNN_BUILD(pool.make(CUDNN_BACKEND_MATMUL_DESCRIPTOR, &mm));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(mm, CUDNN_ATTR_MATMUL_COMP_TYPE,
                                                  CUDNN_TYPE_DATA_TYPE, 1, &compute));
        ZT_CUDNN_BUILD(cudnn_api()->finalize(mm));
        ZT_CUDNN_BUILD(pool.make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, &op));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_MATMUL_DESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm));
        ZT_CUDNN_BUILD(cudnn_api()->finalize(op));
        ops[(*n_ops)++] = op;
        return true;
    }

    /* y = reduce(x) over the dimensions where y has extent 1 and x does not. */
    bool reduction(cudnnBackendDescriptor_t *ops, int *n_ops, cudnnReduceTensorOp_t mode,
                   cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
        cudnnBackendDescriptor_t red, op;
        const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
        ZT_CUDNN_BUILD(pool.make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, &red));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(red, CUDNN_ATTR_REDUCTION_OPERATOR,
                                                  CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(red, CUDNN_ATTR_REDUCTION_COMP_TYPE,
                                                  CUDNN_TYPE_DATA_TYPE, 1, &compute));
        ZT_CUDNN_BUILD(cudnn_api()->finalize(red));
        ZT_CUDNN_BUILD(pool.make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, &op));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
        ZT_CUDNN_BUILD(cudnn_api()->set_attribute(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &red));
        ZT_CUDNN_BUILD(cudnn_api()->finalize(op));
        ops[(*n_ops)++] = op;
        return true;
    }
};

/* Builds and finalizes the execution plan of one shape into *plan (kept; the rest is destroyed),
 * and its workspace size. false with the reason in why when cuDNN refuses. */
static bool build_plan(cudnnHandle_t handle, int batch, int seq_len, int n_heads, int head_dim,
                       zt_dtype half, cudnnBackendDescriptor_t *plan, int64_t *workspace, char *why,
                       size_t why_size) {
    graph_builder g;
    g.why = why;
    g.why_size = why_size;
    const cudnnDataType_t io = half == ZT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF;
    const int64_t B = batch, H = n_heads, T = seq_len, D = head_dim, C = (int64_t)n_heads * D;
    /* (B,T,C) with the heads interleaved: element (b, h, t, d) at b T C + t C + h D + d. */
    const int64_t bhsd[4] = {B, H, T, D}, bhsd_strides[4] = {T * C, D, C, 1};
    const int64_t bhds[4] = {B, H, D, T}, bhds_strides[4] = {T * C, D, 1, C}; /* K^T */
    const int64_t scores[4] = {B, H, T, T}, rows[4] = {B, H, T, 1}, scalar[4] = {1, 1, 1, 1};

    cudnnBackendDescriptor_t q, kt, v, o, scale, mask_value;
    if (!g.tensor(&q, kUidQ, io, bhsd, bhsd_strides, false) ||
        !g.tensor(&kt, kUidKT, io, bhds, bhds_strides, false) ||
        !g.tensor(&v, kUidV, io, bhsd, bhsd_strides, false) ||
        !g.tensor(&o, kUidO, io, bhsd, bhsd_strides, false) ||
        !g.tensor(&scale, kUidScale, CUDNN_DATA_FLOAT, scalar, NULL, false, true) ||
        !g.tensor(&mask_value, kUidMaskValue, CUDNN_DATA_FLOAT, scalar, NULL, false, true))
        return false;

    cudnnBackendDescriptor_t s, s_scaled, row_index, col_index, causal, s_masked, row_max, s_sub,
        s_exp, row_sum, p;
    if (!g.virtual_tensor(&s, CUDNN_DATA_FLOAT, scores) ||
        !g.virtual_tensor(&s_scaled, CUDNN_DATA_FLOAT, scores) ||
        !g.virtual_tensor(&row_index, CUDNN_DATA_INT32, scores) ||
        !g.virtual_tensor(&col_index, CUDNN_DATA_INT32, scores) ||
        !g.virtual_tensor(&causal, CUDNN_DATA_BOOLEAN, scores) ||
        !g.virtual_tensor(&s_masked, CUDNN_DATA_FLOAT, scores) ||
        !g.virtual_tensor(&row_max, CUDNN_DATA_FLOAT, rows) ||
        !g.virtual_tensor(&s_sub, CUDNN_DATA_FLOAT, scores) ||
        !g.virtual_tensor(&s_exp, CUDNN_DATA_FLOAT, scores) ||
        !g.virtual_tensor(&row_sum, CUDNN_DATA_FLOAT, rows) ||
        !g.virtual_tensor(&p, CUDNN_DATA_FLOAT, scores))
        return false;

    cudnnBackendDescriptor_t ops[12];
    int n_ops = 0;
    if (!g.matmul(ops, &n_ops, q, kt, s) ||
        !g.pointwise(ops, &n_ops, CUDNN_POINTWISE_MUL, s, scale, NULL, s_scaled) ||
        !g.pointwise(ops, &n_ops, CUDNN_POINTWISE_GEN_INDEX, s_scaled, NULL, NULL, row_index, 2) ||
        !g.pointwise(ops, &n_ops, CUDNN_POINTWISE_GEN_INDEX, s_scaled, NULL, NULL, col_index, 3) ||
        !g.pointwise(ops, &n_ops, CUDNN_POINTWISE_CMP_GE, row_index, col_index, NULL, causal) ||
        !g.pointwise(ops, &n_ops, CUDNN_POINTWISE_BINARY_SELECT, s_scaled, mask_value, causal,
                     s_masked) ||
        !g.reduction(ops, &n_ops, CUDNN_REDUCE_TENSOR_MAX, s_masked, row_max) ||
        !g.pointwise(ops, &n_ops, CUDNN_POINTWISE_SUB, s_masked, row_max, NULL, s_sub) ||
        !g.pointwise(ops, &n_ops, CUDNN_POINTWISE_EXP, s_sub, NULL, NULL, s_exp) ||
        !g.reduction(ops, &n_ops, CUDNN_REDUCE_TENSOR_ADD, s_exp, row_sum) ||
        !g.pointwise(ops, &n_ops, CUDNN_POINTWISE_DIV, s_exp, row_sum, NULL, p) ||
        !g.matmul(ops, &n_ops, p, v, o))
        return false;

    cudnnBackendDescriptor_t graph, heuristics, config;
    ZT_CUDNN_BUILD(g.pool.make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &graph));
    ZT_CUDNN_BUILD(cudnn_api()->set_attribute(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, n_ops, ops));
    ZT_CUDNN_BUILD(cudnn_api()->set_attribute(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE,
                                              CUDNN_TYPE_HANDLE, 1, &handle));
    ZT_CUDNN_BUILD(cudnn_api()->finalize(graph));

    ZT_CUDNN_BUILD(g.pool.make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heuristics));
    ZT_CUDNN_BUILD(cudnn_api()->set_attribute(heuristics, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph));
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    ZT_CUDNN_BUILD(cudnn_api()->set_attribute(heuristics, CUDNN_ATTR_ENGINEHEUR_MODE,
                                              CUDNN_TYPE_HEUR_MODE, 1, &mode));
    ZT_CUDNN_BUILD(cudnn_api()->finalize(heuristics));

    /* The heuristic's candidates, best first: the first that finalizes into a plan wins. */
    constexpr int kCandidates = 8;
    cudnnBackendDescriptor_t configs[kCandidates];
    for (int i = 0; i < kCandidates; i++)
        ZT_CUDNN_BUILD(g.pool.make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &configs[i]));
    int64_t n_configs = 0;
    ZT_CUDNN_BUILD(cudnn_api()->get_attribute(heuristics, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, kCandidates,
                                              &n_configs, configs));
    if (n_configs == 0) {
        snprintf(why, why_size, "no cuDNN engine supports the attention graph");
        return false;
    }
    for (int64_t i = 0; i < n_configs && i < kCandidates; i++) {
        config = configs[i];
        cudnnBackendDescriptor_t candidate;
        if (cudnn_api()->create_descriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &candidate) !=
            CUDNN_STATUS_SUCCESS)
            continue;
        if (cudnn_api()->set_attribute(candidate, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                       CUDNN_TYPE_HANDLE, 1, &handle) == CUDNN_STATUS_SUCCESS &&
            cudnn_api()->set_attribute(candidate, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                       CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                       &config) == CUDNN_STATUS_SUCCESS &&
            cudnn_api()->finalize(candidate) == CUDNN_STATUS_SUCCESS) {
            int64_t n_returned = 0;
            if (cudnn_api()->get_attribute(candidate, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                           CUDNN_TYPE_INT64, 1, &n_returned,
                                           workspace) == CUDNN_STATUS_SUCCESS) {
                *plan = candidate;
                return true;
            }
        }
        cudnn_api()->destroy_descriptor(candidate);
    }
    snprintf(why, why_size, "none of cuDNN's %lld candidate engines finalizes the attention plan",
             (long long)n_configs);
    return false;
}

#undef ZT_CUDNN_BUILD

// ---------------------------------------------------------------------------------------------
// The plan cache and the op's entry.

/* The half dtype this call would take, or ZT_F32 for the f32 kernel. */
static zt_dtype attention_half(const zt_cuda_backend *cb) {
    switch (cb->attention_mode) {
    case ZT_CUDA_ATTENTION_AUTO:
        return cb->last_gemm_input_dtype == ZT_F16 || cb->last_gemm_input_dtype == ZT_BF16
                   ? (zt_dtype)cb->last_gemm_input_dtype
                   : ZT_F32;
    case ZT_CUDA_ATTENTION_F16:
        return ZT_F16;
    case ZT_CUDA_ATTENTION_BF16:
        return ZT_BF16;
    default:
        return ZT_F32;
    }
}

/* The cached plan of this shape, built on first use; NULL when the shape takes the f32 kernel. */
static zt_cudnn_attention_plan *find_plan(zt_cuda_backend *cb, int batch, int seq_len, int n_heads,
                                          int head_dim, zt_dtype half) {
    for (int i = 0; i < cb->n_attention_plans; i++) {
        zt_cudnn_attention_plan *p = &cb->attention_plans[i];
        if (p->batch == batch && p->seq_len == seq_len && p->n_heads == n_heads &&
            p->head_dim == head_dim && p->dtype == (int)half)
            return p->plan ? p : NULL;
    }
    char why[256] = "";
    cudnnBackendDescriptor_t plan = NULL;
    int64_t workspace = 0;
    if (!cb->cudnn_tried) {
        cb->cudnn_tried = 1;
        const zt_cudnn_api *api = cudnn_api();
        const cudnnStatus_t st =
            api->missing[0] ? CUDNN_STATUS_NOT_INITIALIZED : api->create(&cb->cudnn);
        if (api->missing[0]) {
            cb->cudnn = NULL;
            fprintf(stderr,
                    "zotune: cuda: cuDNN is unavailable (%s); attention runs on the f32 "
                    "kernel\n",
                    api->missing);
        } else if (st != CUDNN_STATUS_SUCCESS) {
            cb->cudnn = NULL;
            fprintf(stderr,
                    "zotune: cuda: cuDNN is unavailable (cudnnCreate: %s); attention "
                    "runs on the f32 kernel\n",
                    cudnn_api()->error_string(st));
        } else if (cudnn_api()->set_stream(cb->cudnn, cb->stream) != CUDNN_STATUS_SUCCESS) {
            cudnn_api()->destroy(cb->cudnn);
            cb->cudnn = NULL;
            fprintf(stderr, "zotune: cuda: cudnnSetStream failed; attention runs on the f32 "
                            "kernel\n");
        }
    }
    bool built = false;
    cb->attention_path_counts.plan_builds++;
    if (cb->cudnn == NULL)
        snprintf(why, sizeof why, "cuDNN is unavailable");
    else
        built = build_plan(cb->cudnn, batch, seq_len, n_heads, head_dim, half, &plan, &workspace,
                           why, sizeof why);
    /* Full, the oldest entry goes (its plan with it). */
    int slot = cb->n_attention_plans;
    if (slot == kCudnnAttentionPlans) {
        slot = cb->next_attention_evict;
        cb->next_attention_evict = (slot + 1) % kCudnnAttentionPlans;
        if (cb->attention_plans[slot].plan)
            cudnn_api()->destroy_descriptor(cb->attention_plans[slot].plan);
    } else {
        cb->n_attention_plans++;
    }
    zt_cudnn_attention_plan *p = &cb->attention_plans[slot];
    p->batch = batch;
    p->seq_len = seq_len;
    p->n_heads = n_heads;
    p->head_dim = head_dim;
    p->dtype = (int)half;
    p->plan = built ? plan : NULL;
    p->workspace_bytes = built ? (size_t)workspace : 0;
    if (built)
        fprintf(stderr,
                "zotune: cuda: attention B=%d T<=%d H=%d D=%d runs on cuDNN (%s, tensor "
                "cores)\n",
                batch, seq_len, n_heads, head_dim, half == ZT_BF16 ? "bf16" : "f16");
    else
        fprintf(stderr, "zotune: cuda: attention B=%d T<=%d H=%d D=%d runs on the f32 kernel: %s\n",
                batch, seq_len, n_heads, head_dim, why);
    return built ? p : NULL;
}

static size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

/* The cuDNN path's scratch for one call: q, k, v and o in half, padded to the plan's length, the
 * per-sequence first key and fallback flag, then cuDNN's workspace; each part 256-byte aligned.
 * The op and the scratch planner (zt_cuda_attention_cudnn_scratch_bytes) both take it from here. */
struct cudnn_scratch {
    size_t operand_bytes, span_bytes, total_bytes;
};
static cudnn_scratch cudnn_scratch_of(int batch, int plan_len, int n_heads, int head_dim,
                                      size_t workspace_bytes) {
    cudnn_scratch s;
    s.operand_bytes = align256((size_t)batch * plan_len * n_heads * head_dim * 2);
    s.span_bytes = align256((size_t)batch * sizeof(int32_t));
    s.total_bytes = 4 * s.operand_bytes + 2 * s.span_bytes + workspace_bytes;
    return s;
}

static int plan_len_of(int seq_len) {
    return (seq_len + kPlanLenMultiple - 1) / kPlanLenMultiple * kPlanLenMultiple;
}

size_t zt_cuda_attention_cudnn_scratch_bytes(zt_cuda_backend *cb, int batch, int seq_len,
                                             int n_heads, int head_dim, int gemm_input_dtype) {
    const int saved = cb->last_gemm_input_dtype;
    cb->last_gemm_input_dtype = gemm_input_dtype;
    const zt_dtype half = attention_half(cb);
    cb->last_gemm_input_dtype = saved;
    if (half == ZT_F32 || batch <= 0 || seq_len <= 0 || n_heads <= 0 || head_dim <= 0) return 0;
    const int plan_len = plan_len_of(seq_len);
    /* builds and caches the plan the forward will find: its workspace size is cuDNN's answer */
    const zt_cudnn_attention_plan *plan = find_plan(cb, batch, plan_len, n_heads, head_dim, half);
    if (plan == NULL) return 0; /* the f32 kernel, which takes no scratch */
    return cudnn_scratch_of(batch, plan_len, n_heads, head_dim, plan->workspace_bytes).total_bytes;
}

zt_status zt_cuda_attention_cudnn(zt_cuda_backend *cb, float *out, const float *q, const float *k,
                                  const float *v, const int32_t *key_mask, int batch, int seq_len,
                                  int n_heads, int head_dim, float q_scale,
                                  const int32_t **fallback_flags) {
    const char *op = "attention (cuDNN)";
    *fallback_flags = NULL;
    const zt_dtype half = attention_half(cb);
    if (half == ZT_F32) return ZT_OK; /* the mode's choice, not a refusal: not counted */
    const int plan_len = plan_len_of(seq_len);
    zt_cudnn_attention_plan *plan = find_plan(cb, batch, plan_len, n_heads, head_dim, half);
    if (plan == NULL) {
        cb->attention_path_counts.f32_kernel++;
        return ZT_OK;
    }
    const size_t n_elems = (size_t)batch * seq_len * n_heads * head_dim;
    const size_t n_plan_elems = (size_t)batch * plan_len * n_heads * head_dim;
    const cudnn_scratch layout =
        cudnn_scratch_of(batch, plan_len, n_heads, head_dim, plan->workspace_bytes);
    const size_t operand_bytes = layout.operand_bytes, span_bytes = layout.span_bytes;
    const size_t total = layout.total_bytes;
    float *base;
    ZT_TRY(zt_cuda_scratch(cb, (total + sizeof(float) - 1) / sizeof(float), op, &base));
    char *scratch = reinterpret_cast<char *>(base);
    void *q_half = scratch, *k_half = scratch + operand_bytes,
         *v_half = scratch + 2 * operand_bytes, *o_half = scratch + 3 * operand_bytes;
    int32_t *lo = reinterpret_cast<int32_t *>(scratch + 4 * operand_bytes);
    int32_t *flag = reinterpret_cast<int32_t *>(scratch + 4 * operand_bytes + span_bytes);
    void *workspace = plan->workspace_bytes ? scratch + 4 * operand_bytes + 2 * span_bytes : NULL;

    const int n_cols = n_heads * head_dim;
    ZT_LAUNCH(zt_attention_key_span_k, span_blocks(batch), kBlockThreads, 0, cb->stream, lo, flag,
              key_mask, batch, seq_len);
    ZT_LAUNCH(zt_attention_pack_k, zt_stride_blocks(n_plan_elems), kBlockThreads, 0, cb->stream,
              q_half, k_half, v_half, half, q, k, v, lo, batch, seq_len, plan_len, n_cols, q_scale);

    /* By-value scalars live on the host for the call. The masked scores' value: the most
     * negative float, whose exp after the row max is subtracted is exactly 0 (and never NaN). */
    float scale = 1.0f, mask_value = -3.4028234663852886e38f;
    int64_t uids[6] = {kUidQ, kUidKT, kUidV, kUidO, kUidScale, kUidMaskValue};
    void *pointers[6] = {q_half, k_half, v_half, o_half, &scale, &mask_value};
    cudnnBackendDescriptor_t pack = NULL;
    cudnnStatus_t st = cudnn_api()->create_descriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
    if (st == CUDNN_STATUS_SUCCESS)
        st = cudnn_api()->set_attribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
                                        6, uids);
    if (st == CUDNN_STATUS_SUCCESS)
        st = cudnn_api()->set_attribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                        CUDNN_TYPE_VOID_PTR, 6, pointers);
    if (st == CUDNN_STATUS_SUCCESS)
        st = cudnn_api()->set_attribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                        CUDNN_TYPE_VOID_PTR, 1, &workspace);
    if (st == CUDNN_STATUS_SUCCESS) st = cudnn_api()->finalize(pack);
    if (st == CUDNN_STATUS_SUCCESS) st = cudnn_api()->execute(cb->cudnn, plan->plan, pack);
    if (pack) cudnn_api()->destroy_descriptor(pack);
    if (st != CUDNN_STATUS_SUCCESS)
        return zt_fail(ZT_ERR_CUDA, "%s: B=%d T=%d H=%d D=%d: cudnnBackendExecute: %s", op, batch,
                       seq_len, n_heads, head_dim, cudnn_api()->error_string(st));

    ZT_LAUNCH(zt_attention_unpack_k, zt_stride_blocks(n_elems), kBlockThreads, 0, cb->stream, out,
              o_half, half, lo, flag, batch, seq_len, plan_len, n_cols);
    cb->attention_path_counts.cudnn++;
    *fallback_flags = flag;
    return ZT_OK;
}

void zt_cuda_attention_plans_release(zt_cuda_backend *cb) {
    for (int i = 0; i < cb->n_attention_plans; i++)
        if (cb->attention_plans[i].plan)
            cudnn_api()->destroy_descriptor(cb->attention_plans[i].plan);
    cb->n_attention_plans = 0;
    cb->next_attention_evict = 0;
    if (cb->cudnn) cudnn_api()->destroy(cb->cudnn);
    cb->cudnn = NULL;
    cb->cudnn_tried = 0;
}

} // namespace ZT_CUDA_NAMESPACE
