/* The cuBLASLt subset the CUDA backend calls, emulated on the host: descriptors and layouts as the
 * library keeps them, a heuristic that "finds" one algorithm, and cublasLtMatmul as OpenBLAS
 * cblas_sgemm on operands converted to f32 (TF32-rounded under CUBLAS_COMPUTE_32F_FAST_TF32),
 * followed by the bias / ReLU epilogue.
 *
 * It is strict where the library would fail or silently misbehave: an unsupported type or compute
 * combination, inconsistent m/n/k between the layouts and the transposes, a leading dimension
 * below the rows, an operand or bias outside device memory (or running past its block), a pointer
 * less aligned than the algorithm was chosen for (the heuristic's preference), an unknown
 * attribute. Every refusal prints why, as cuBLASLt's logging would, and returns its status.
 *
 * Numerics model: a tensor core multiplies the (exact) f16/bf16/TF32 inputs and accumulates in
 * f32; sgemm on the widened inputs does the same up to summation order. TF32 conversion is
 * modelled as round to nearest, ties away from zero (PTX cvt.rna.tf32.f32); tests bound it by
 * truncation's error, so the real rounding may be either.
 */
#include "cudaemu.h"

#include <cblas.h>
#include <stdio.h>

#include <atomic>
#include <string>
#include <vector>

struct cublasLtContext {
    unsigned magic;
};

namespace {

/* Marks on each object, so a handle or descriptor of the wrong kind (or a freed one) is caught. */
constexpr uint32_t kDescMagic = 0x4c54444du, kLayoutMagic = 0x4c54414cu, kPrefMagic = 0x4c545052u,
                   kAlgoMagic = 0x4c54414fu, kHandleMagic = 0x4c54484eu;

struct desc_state {
    uint32_t magic;
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t transa, transb;
    uint32_t epilogue;
    const void *bias;
    int32_t bias_type;
    int64_t bias_batch_stride; /* elements between the members' biases */
};
struct layout_state {
    uint32_t magic;
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch;        /* CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT (1 when unset) */
    int64_t batch_stride; /* CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, elements */
};
struct pref_state {
    uint32_t magic;
    uint64_t max_workspace;
    uint32_t align[4]; /* A, B, C, D minimum alignment in bytes */
};
struct algo_state {
    uint32_t magic;
    uint32_t align[4];
};

static_assert(sizeof(desc_state) <= sizeof(cublasLtMatmulDescOpaque_t), "desc state too large");
static_assert(sizeof(layout_state) <= sizeof(cublasLtMatrixLayoutOpaque_t), "layout too large");
static_assert(sizeof(pref_state) <= sizeof(cublasLtMatmulPreferenceOpaque_t), "pref too large");
static_assert(sizeof(algo_state) <= sizeof(cublasLtMatmulAlgo_t), "algo state too large");

template <typename State, typename Opaque> State read_state(const Opaque *o) {
    State s;
    memcpy(&s, o, sizeof s);
    return s;
}
template <typename State, typename Opaque> void write_state(Opaque *o, const State &s) {
    memcpy(o, &s, sizeof s);
}

/* Descriptors, layouts and preferences created and not yet destroyed (the handle aside). */
std::atomic<long> live_objects{0};

/* The create / destroy pair every descriptor kind shares: the state lives in the opaque block. */
template <typename Opaque, typename State>
cublasStatus_t create_object(Opaque **out, const State &state) {
    if (out == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *out = new Opaque();
    live_objects++;
    write_state(*out, state);
    return CUBLAS_STATUS_SUCCESS;
}

template <typename State, typename Opaque>
cublasStatus_t destroy_object(Opaque *object, uint32_t magic) {
    if (object == nullptr || read_state<State>(object).magic != magic)
        return CUBLAS_STATUS_INVALID_VALUE;
    delete object;
    live_objects--;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t refuse(const char *call, cublasStatus_t status, const std::string &why) {
    fprintf(stderr, "cudaemu: %s: %s\n", call, why.c_str());
    return status;
}

size_t type_size(cudaDataType t) {
    switch (t) {
    case CUDA_R_32F:
        return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF:
        return 2;
    default:
        return 0;
    }
}

const char *type_name(cudaDataType t) {
    switch (t) {
    case CUDA_R_32F:
        return "CUDA_R_32F";
    case CUDA_R_16F:
        return "CUDA_R_16F";
    case CUDA_R_16BF:
        return "CUDA_R_16BF";
    default:
        return "an unemulated type";
    }
}

unsigned alignment_of(const void *p) {
    unsigned a = 256;
    while (a > 1 && ((uintptr_t)p % a) != 0)
        a /= 2;
    return a;
}

/* Everything a matmul (or its heuristic) must agree on; "" when it is consistent. */
std::string check_problem(const desc_state &d, const layout_state &a, const layout_state &b,
                          const layout_state &c, const layout_state &dl, int *m, int *n, int *k) {
    char buf[256];
    if (d.magic != kDescMagic)
        return "operation descriptor not created by cublasLtMatmulDescCreate";
    if (a.magic != kLayoutMagic || b.magic != kLayoutMagic || c.magic != kLayoutMagic ||
        dl.magic != kLayoutMagic)
        return "a matrix layout not created by cublasLtMatrixLayoutCreate";
    if (d.compute != CUBLAS_COMPUTE_32F && d.compute != CUBLAS_COMPUTE_32F_PEDANTIC &&
        d.compute != CUBLAS_COMPUTE_32F_FAST_TF32) {
        snprintf(buf, sizeof buf, "compute type %d is not emulated", (int)d.compute);
        return buf;
    }
    if (d.scale != CUDA_R_32F) return "scale type must be CUDA_R_32F with an f32 compute type";
    if (a.type != b.type) return "A and B must have the same type";
    if (type_size(a.type) == 0) return std::string("A/B type is ") + type_name(a.type);
    if (d.compute == CUBLAS_COMPUTE_32F_FAST_TF32 && a.type != CUDA_R_32F)
        return "CUBLAS_COMPUTE_32F_FAST_TF32 takes CUDA_R_32F inputs";
    if (type_size(dl.type) == 0) return std::string("D type is ") + type_name(dl.type);
    if (c.type != dl.type) return "C and D types differ (not emulated)";
    if (c.rows != dl.rows || c.cols != dl.cols || c.ld != dl.ld || c.batch != dl.batch ||
        c.batch_stride != dl.batch_stride)
        return "C and D layouts differ (not emulated)";
    /* strided batches: A, B and D name one count; a stride of 0 repeats a member (a shared B) */
    if (a.batch < 1 || a.batch != b.batch || a.batch != dl.batch) {
        snprintf(buf, sizeof buf, "batch counts differ: A %d, B %d, D %d", (int)a.batch,
                 (int)b.batch, (int)dl.batch);
        return buf;
    }
    if (dl.batch > 1 && dl.batch_stride < (int64_t)(dl.ld * (int64_t)dl.cols))
        return "D's batch stride makes its members overlap";
    const bool ta = d.transa == CUBLAS_OP_T, tb = d.transb == CUBLAS_OP_T;
    if ((d.transa != CUBLAS_OP_N && !ta) || (d.transb != CUBLAS_OP_N && !tb))
        return "transposes must be CUBLAS_OP_N or CUBLAS_OP_T";
    const uint64_t a_rows = ta ? a.cols : a.rows, a_k = ta ? a.rows : a.cols;
    const uint64_t b_k = tb ? b.cols : b.rows, b_cols = tb ? b.rows : b.cols;
    if (a_rows != dl.rows || b_cols != dl.cols || a_k != b_k) {
        snprintf(
            buf, sizeof buf, "shapes disagree: op(A) %llu x %llu, op(B) %llu x %llu, D %llu x %llu",
            (unsigned long long)a_rows, (unsigned long long)a_k, (unsigned long long)b_k,
            (unsigned long long)b_cols, (unsigned long long)dl.rows, (unsigned long long)dl.cols);
        return buf;
    }
    for (const layout_state *l : {&a, &b, &dl})
        if (l->ld < (int64_t)(l->rows > 1 ? l->rows : 1)) {
            snprintf(buf, sizeof buf, "leading dimension %lld below %llu rows", (long long)l->ld,
                     (unsigned long long)l->rows);
            return buf;
        }
    switch (d.epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT:
    case CUBLASLT_EPILOGUE_RELU:
        break;
    case CUBLASLT_EPILOGUE_BIAS:
    case CUBLASLT_EPILOGUE_RELU_BIAS:
        if (d.bias == nullptr) return "a bias epilogue without CUBLASLT_MATMUL_DESC_BIAS_POINTER";
        /* cuBLASLt's default bias type is D's; only that is emulated */
        if (d.bias_type != -1 && d.bias_type != (int32_t)dl.type)
            return std::string("bias type must be D's (") + type_name(dl.type) + ")";
        break;
    default:
        snprintf(buf, sizeof buf, "epilogue %u is not emulated", d.epilogue);
        return buf;
    }
    if (a_rows > INT32_MAX || b_cols > INT32_MAX || a_k > INT32_MAX) return "dimension too large";
    *m = (int)a_rows;
    *n = (int)b_cols;
    *k = (int)a_k;
    return "";
}

/* An operand of `l` must lie in one device block and be aligned as the algorithm assumes. */
std::string check_operand(const void *p, const layout_state &l, unsigned min_align,
                          const char *name) {
    if (l.rows == 0 || l.cols == 0) return "";
    const size_t elem = type_size(l.type);
    const size_t n_bytes = ((size_t)(l.cols - 1) * (size_t)l.ld + (size_t)l.rows +
                            (size_t)(l.batch - 1) * (size_t)l.batch_stride) *
                           elem;
    std::string where = cudaemu::outside_device(p, n_bytes);
    char buf[256];
    if (!where.empty()) {
        snprintf(buf, sizeof buf, "%s (%llu x %llu, ld %lld, %zu bytes at %p) is %s", name,
                 (unsigned long long)l.rows, (unsigned long long)l.cols, (long long)l.ld, n_bytes,
                 p, where.c_str());
        return buf;
    }
    if (alignment_of(p) < min_align || alignment_of(p) < elem) {
        snprintf(buf, sizeof buf,
                 "%s at %p is %u-byte aligned; the algorithm was chosen for %u (set "
                 "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%s_BYTES)",
                 name, p, alignment_of(p), min_align > elem ? min_align : (unsigned)elem, name);
        return buf;
    }
    return "";
}

float to_tf32(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    if ((bits & 0x7f800000u) == 0x7f800000u) return x; /* Inf, NaN */
    bits = (bits + 0x1000u) & ~0x1fffu;                /* to nearest, ties away from zero */
    memcpy(&x, &bits, 4);
    return x;
}

/* A column-major rows x cols operand (leading dimension ld) as dense f32, column-major. */
std::vector<float> widen(const void *p, const layout_state &l, bool tf32) {
    std::vector<float> out((size_t)l.rows * l.cols);
    for (uint64_t col = 0; col < l.cols; col++)
        for (uint64_t row = 0; row < l.rows; row++) {
            const size_t at = (size_t)col * (size_t)l.ld + row;
            float v;
            if (l.type == CUDA_R_16F)
                v = __half2float(static_cast<const __half *>(p)[at]);
            else if (l.type == CUDA_R_16BF)
                v = __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[at]);
            else
                v = static_cast<const float *>(p)[at];
            out[(size_t)col * l.rows + row] = tf32 ? to_tf32(v) : v;
        }
    return out;
}

/* One matmul of a (possibly batched) call: D = alpha op(A) op(B) + beta D, then the epilogue;
 * a half D gets the f32 result rounded to nearest even at the end. */
void matmul_member(const desc_state &d, const layout_state &al, const layout_state &bl,
                   const layout_state &dl, const void *A, const void *B, void *D,
                   const void *bias_p, int m, int n, int k, float alpha_f, float beta_f) {
    /* a half D: the f32 result (bias and ReLU added in f32) rounded to nearest even at the end,
     * the model of the epilogue's conversion that tests/gpu measures on the real library */
    const bool half_d = dl.type != CUDA_R_32F;
    std::vector<float> f32_result(half_d ? (size_t)n * (size_t)dl.ld : 0);
    float *out = half_d ? f32_result.data() : static_cast<float *>(D);
    const bool tf32 = d.compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    /* beta == 0 means C is not read, so NaN already in D must not survive (as in cuBLASLt). */
    if (beta_f == 0.0f)
        for (int col = 0; col < n; col++)
            for (int row = 0; row < m; row++)
                out[(size_t)col * dl.ld + row] = 0.0f;
    if (k > 0) {
        std::vector<float> a = widen(A, al, tf32), b = widen(B, bl, tf32);
        cblas_sgemm(CblasColMajor, d.transa == CUBLAS_OP_T ? CblasTrans : CblasNoTrans,
                    d.transb == CUBLAS_OP_T ? CblasTrans : CblasNoTrans, m, n, k, alpha_f, a.data(),
                    (int)al.rows, b.data(), (int)bl.rows, beta_f, out, (int)dl.ld);
    } else if (beta_f != 0.0f) {
        for (int col = 0; col < n; col++)
            for (int row = 0; row < m; row++)
                out[(size_t)col * dl.ld + row] *= beta_f;
    }
    const bool add_bias = (d.epilogue & CUBLASLT_EPILOGUE_BIAS) != 0;
    const bool relu = (d.epilogue & CUBLASLT_EPILOGUE_RELU) != 0;
    if (add_bias || relu) {
        const layout_state bias_layout = {kLayoutMagic, dl.type, (uint64_t)m, 1, (int64_t)m, 1, 0};
        const std::vector<float> bias =
            add_bias ? widen(bias_p, bias_layout, false) : std::vector<float>();
        for (int col = 0; col < n; col++)
            for (int row = 0; row < m; row++) {
                float &v = out[(size_t)col * dl.ld + row];
                if (add_bias) v += bias[row];
                if (relu) v = v < 0.0f ? 0.0f : v; /* NaN passes; cuBLASLt does not say */
            }
    }
    if (half_d)
        for (int col = 0; col < n; col++)
            for (int row = 0; row < m; row++) {
                const size_t at = (size_t)col * dl.ld + row;
                if (dl.type == CUDA_R_16F)
                    static_cast<__half *>(D)[at] = __float2half_rn(out[at]);
                else
                    static_cast<__nv_bfloat16 *>(D)[at] = __float2bfloat16_rn(out[at]);
            }
}

} // namespace

extern "C" {

cublasStatus_t cudaemu_cublasLtCreate(cublasLtHandle_t *handle) {
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasLtContext{kHandleMagic};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cudaemu_cublasLtDestroy(cublasLtHandle_t handle) {
    if (handle == nullptr || handle->magic != kHandleMagic) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->magic = 0;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cudaemu_cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc,
                                                cublasComputeType_t compute, cudaDataType_t scale) {
    const desc_state s = {kDescMagic,  compute,     scale,
                          CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT,
                          nullptr,     -1,          0};
    return create_object(desc, s);
}

cublasStatus_t cudaemu_cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    return destroy_object<desc_state>(desc, kDescMagic);
}

cublasStatus_t cudaemu_cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                                      cublasLtMatmulDescAttributes_t attr,
                                                      const void *buf, size_t size) {
    const char *call = "cublasLtMatmulDescSetAttribute";
    if (desc == nullptr || buf == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    desc_state s = read_state<desc_state>(desc);
    if (s.magic != kDescMagic) return CUBLAS_STATUS_INVALID_VALUE;
    auto take = [&](void *field, size_t field_size) {
        if (size != field_size) return false;
        memcpy(field, buf, size);
        return true;
    };
    bool ok;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
        ok = take(&s.transa, sizeof s.transa);
        break;
    case CUBLASLT_MATMUL_DESC_TRANSB:
        ok = take(&s.transb, sizeof s.transb);
        break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        ok = take(&s.epilogue, sizeof s.epilogue);
        break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        ok = take(&s.bias, sizeof s.bias);
        break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        ok = take(&s.bias_type, sizeof s.bias_type);
        break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE:
        ok = take(&s.bias_batch_stride, sizeof s.bias_batch_stride);
        break;
    default:
        return refuse(call, CUBLAS_STATUS_NOT_SUPPORTED,
                      "attribute " + std::to_string((int)attr) + " is not emulated");
    }
    if (!ok)
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE,
                      "attribute " + std::to_string((int)attr) + ": wrong size " +
                          std::to_string(size));
    write_state(desc, s);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cudaemu_cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type,
                                                  uint64_t rows, uint64_t cols, int64_t ld) {
    const layout_state s = {kLayoutMagic, type, rows, cols, ld, 1, 0};
    return create_object(layout, s);
}

cublasStatus_t cudaemu_cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    return destroy_object<layout_state>(layout, kLayoutMagic);
}

/* Rows and columns only: the backend's plans keep type and leading dimension. */
cublasStatus_t cudaemu_cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                        cublasLtMatrixLayoutAttribute_t attr,
                                                        const void *buf, size_t size) {
    const char *call = "cublasLtMatrixLayoutSetAttribute";
    if (layout == nullptr || buf == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    layout_state s = read_state<layout_state>(layout);
    if (s.magic != kLayoutMagic) return CUBLAS_STATUS_INVALID_VALUE;
    void *field;
    size_t field_size;
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_ROWS:
        field = &s.rows, field_size = sizeof s.rows;
        break;
    case CUBLASLT_MATRIX_LAYOUT_COLS:
        field = &s.cols, field_size = sizeof s.cols;
        break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
        field = &s.batch, field_size = sizeof s.batch;
        break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
        field = &s.batch_stride, field_size = sizeof s.batch_stride;
        break;
    default:
        return refuse(call, CUBLAS_STATUS_NOT_SUPPORTED,
                      "attribute " + std::to_string((int)attr) + " is not emulated");
    }
    if (size != field_size)
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE,
                      "attribute " + std::to_string((int)attr) + ": wrong size " +
                          std::to_string(size));
    memcpy(field, buf, size);
    if (s.batch < 1 || s.batch_stride < 0)
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "batch count < 1 or stride < 0");
    write_state(layout, s);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cudaemu_cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    const pref_state s = {kPrefMagic, 0, {256, 256, 256, 256}}; /* the library's defaults */
    return create_object(pref, s);
}

cublasStatus_t cudaemu_cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    return destroy_object<pref_state>(pref, kPrefMagic);
}

cublasStatus_t
cudaemu_cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                             cublasLtMatmulPreferenceAttributes_t attr,
                                             const void *buf, size_t size) {
    const char *call = "cublasLtMatmulPreferenceSetAttribute";
    if (pref == nullptr || buf == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    pref_state s = read_state<pref_state>(pref);
    if (s.magic != kPrefMagic) return CUBLAS_STATUS_INVALID_VALUE;
    int slot = -1;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        if (size != sizeof s.max_workspace)
            return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "workspace size: wrong size");
        memcpy(&s.max_workspace, buf, size);
        write_state(pref, s);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
        slot = 0;
        break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
        slot = 1;
        break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
        slot = 2;
        break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        slot = 3;
        break;
    default:
        return refuse(call, CUBLAS_STATUS_NOT_SUPPORTED,
                      "attribute " + std::to_string((int)attr) + " is not emulated");
    }
    if (size != sizeof(uint32_t))
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "alignment: wrong size");
    memcpy(&s.align[slot], buf, size);
    write_state(pref, s);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cudaemu_cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t op,
                                       cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                       cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                       cublasLtMatmulPreference_t pref, int requested,
                                       cublasLtMatmulHeuristicResult_t results[], int *n_results) {
    const char *call = "cublasLtMatmulAlgoGetHeuristic";
    if (handle == nullptr || handle->magic != kHandleMagic) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (op == nullptr || a == nullptr || b == nullptr || c == nullptr || d == nullptr ||
        pref == nullptr || results == nullptr || n_results == nullptr || requested < 1)
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "NULL argument or no result requested");
    const pref_state p = read_state<pref_state>(pref);
    if (p.magic != kPrefMagic) return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "bad preference");
    int m, n, k;
    std::string why = check_problem(read_state<desc_state>(op), read_state<layout_state>(a),
                                    read_state<layout_state>(b), read_state<layout_state>(c),
                                    read_state<layout_state>(d), &m, &n, &k);
    if (!why.empty()) return refuse(call, CUBLAS_STATUS_NOT_SUPPORTED, why);
    memset(&results[0], 0, sizeof results[0]);
    algo_state algo = {kAlgoMagic, {p.align[0], p.align[1], p.align[2], p.align[3]}};
    write_state(&results[0].algo, algo);
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *n_results = 1;
    return CUBLAS_STATUS_SUCCESS;
}

/* Accepts an algorithm from the heuristic for any consistent problem, as the emulated matmul runs
 * every shape; the alignments it was chosen for are still enforced by cublasLtMatmul. */
cublasStatus_t cudaemu_cublasLtMatmulAlgoCheck(cublasLtHandle_t handle, cublasLtMatmulDesc_t op,
                                               cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                               cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                               const cublasLtMatmulAlgo_t *algo,
                                               cublasLtMatmulHeuristicResult_t *result) {
    const char *call = "cublasLtMatmulAlgoCheck";
    if (handle == nullptr || handle->magic != kHandleMagic) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (op == nullptr || a == nullptr || b == nullptr || c == nullptr || d == nullptr ||
        algo == nullptr || result == nullptr)
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "NULL argument");
    if (read_state<algo_state>(algo).magic != kAlgoMagic)
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE,
                      "algo must come from cublasLtMatmulAlgoGetHeuristic");
    int m, n, k;
    std::string why = check_problem(read_state<desc_state>(op), read_state<layout_state>(a),
                                    read_state<layout_state>(b), read_state<layout_state>(c),
                                    read_state<layout_state>(d), &m, &n, &k);
    if (!why.empty()) return refuse(call, CUBLAS_STATUS_INVALID_VALUE, why);
    const cublasLtMatmulAlgo_t chosen = *algo; /* algo may point to result->algo */
    memset(result, 0, sizeof *result);
    result->algo = chosen;
    result->workspaceSize = 0;
    result->state = CUBLAS_STATUS_SUCCESS;
    result->wavesCount = 1.0f;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cudaemu_cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t op,
                                      const void *alpha, const void *A,
                                      cublasLtMatrixLayout_t a_desc, const void *B,
                                      cublasLtMatrixLayout_t b_desc, const void *beta,
                                      const void *C, cublasLtMatrixLayout_t c_desc, void *D,
                                      cublasLtMatrixLayout_t d_desc,
                                      const cublasLtMatmulAlgo_t *algo, void *workspace,
                                      size_t workspace_bytes, cudaStream_t stream) {
    const char *call = "cublasLtMatmul";
    if (handle == nullptr || handle->magic != kHandleMagic) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (op == nullptr || a_desc == nullptr || b_desc == nullptr || c_desc == nullptr ||
        d_desc == nullptr || alpha == nullptr || beta == nullptr)
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "NULL descriptor or scalar");
    if (algo == nullptr || read_state<algo_state>(algo).magic != kAlgoMagic)
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE,
                      "algo must come from cublasLtMatmulAlgoGetHeuristic");
    if (!cudaemu::stream_is_valid(stream))
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "stream is not a live stream");
    const desc_state d = read_state<desc_state>(op);
    const layout_state al = read_state<layout_state>(a_desc), bl = read_state<layout_state>(b_desc),
                       cl = read_state<layout_state>(c_desc), dl = read_state<layout_state>(d_desc);
    int m, n, k;
    std::string why = check_problem(d, al, bl, cl, dl, &m, &n, &k);
    if (!why.empty()) return refuse(call, CUBLAS_STATUS_NOT_SUPPORTED, why);
    if (cudaemu::outside_device(alpha, 4).empty() || cudaemu::outside_device(beta, 4).empty())
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE,
                      "alpha and beta must be host pointers (the default pointer mode)");
    const float alpha_f = *static_cast<const float *>(alpha);
    const float beta_f = *static_cast<const float *>(beta);
    if (beta_f != 0.0f && C != D)
        return refuse(call, CUBLAS_STATUS_NOT_SUPPORTED, "beta != 0 with C != D is not emulated");
    if (beta_f != 0.0f && dl.type != CUDA_R_32F)
        return refuse(call, CUBLAS_STATUS_NOT_SUPPORTED, "beta != 0 with a half D is not emulated");
    const algo_state chosen = read_state<algo_state>(algo);
    if (!(why = check_operand(A, al, chosen.align[0], "A")).empty() ||
        !(why = check_operand(B, bl, chosen.align[1], "B")).empty() ||
        !(why = check_operand(D, dl, chosen.align[3], "D")).empty())
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE, why);
    if (d.bias != nullptr && (d.epilogue & CUBLASLT_EPILOGUE_BIAS)) {
        std::string where = cudaemu::outside_device(
            d.bias, ((size_t)m + (size_t)(dl.batch - 1) * (size_t)d.bias_batch_stride) *
                        type_size(dl.type));
        if (!where.empty())
            return refuse(call, CUBLAS_STATUS_INVALID_VALUE,
                          "bias (" + std::to_string(m) + " " + type_name(dl.type) + ") is " +
                              where);
        /* stricter than the documentation: other projects report failures below 16 bytes */
        if (alignment_of(d.bias) < 16)
            return refuse(call, CUBLAS_STATUS_NOT_SUPPORTED,
                          "bias at " + std::to_string((uintptr_t)d.bias) +
                              " is less than 16-byte aligned");
    }
    if (workspace_bytes > 0 && !cudaemu::outside_device(workspace, workspace_bytes).empty())
        return refuse(call, CUBLAS_STATUS_INVALID_VALUE, "workspace is not device memory");
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;

    /* each member of a strided batch as a matmul of its own: the bits of separate calls */
    for (int member = 0; member < dl.batch; member++) {
        const size_t elem_a = type_size(al.type), elem_b = type_size(bl.type);
        const char *a_i = static_cast<const char *>(A) + (size_t)member * al.batch_stride * elem_a;
        const char *b_i = static_cast<const char *>(B) + (size_t)member * bl.batch_stride * elem_b;
        char *d_i = static_cast<char *>(D) + (size_t)member * dl.batch_stride * type_size(dl.type);
        const char *bias_i = d.bias ? static_cast<const char *>(d.bias) +
                                          (size_t)member * d.bias_batch_stride * type_size(dl.type)
                                    : nullptr;
        matmul_member(d, al, bl, dl, a_i, b_i, d_i, bias_i, m, n, k, alpha_f, beta_f);
    }
    return CUBLAS_STATUS_SUCCESS;
}

long cudaemu_lt_live_objects(void) {
    return live_objects.load();
}

} // extern "C"
