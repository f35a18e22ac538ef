/* The cuDNN backend API subset the CUDA backend calls (kernels/cuda/attention_cudnn.cu), emulated
 * on the host, as cudaemu_lt.cpp emulates cuBLASLt: descriptors keep their attributes as set, each
 * Finalize checks what the library documents for its kind, the engine heuristic "finds" one
 * engine for the graphs a fused flash attention engine serves and none for the others, and
 * Execute interprets the operation graph itself, op by op, in f32 on the (half) operands: each
 * virtual tensor holds its declared dtype's values, and a matmul of an f32 operand with a half one
 * (P V) rounds the f32 one to that dtype first, as a tensor core takes both in one dtype.
 *
 * Because the graph is interpreted and not recognised, the test of the cuDNN path checks the graph
 * the backend builds: a wrong mask, axis, reduction or stride gives wrong numbers, not a pass.
 *
 * Refusals, each printed with its reason as cuDNN's logging would:
 *   - at Set/Get/Finalize: a wrong descriptor kind, attribute or attribute type, a missing required
 *     attribute, dimensions and strides of different counts or non-positive, shapes that do not fit
 *     their operation (matmul, broadcasts, reductions), a virtual tensor read that no operation
 *     writes, a by-value tensor that is not a scalar;
 *   - at the heuristic (no engine, as the real one answers): a graph that is not two matmuls with
 *     f16 or bf16 operands of one dtype and f32 compute, a head dim (the first matmul's K) that is
 *     not a multiple of 8 or above 256 (NVIDIA's support matrix for SDPA on Hopper), a Q, V or O
 *     whose last dimension is not unit-stride, or a pointwise / reduction mode this file does not
 *     run;
 *   - at Execute: an unfinalized plan or pack, a uid of the graph missing from the pack, a tensor
 *     that is not inside one device block, a workspace smaller than the plan asked for.
 */
#include "cudaemu.h"

#include <math.h>
#include <stdio.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

struct cudnnContext {
    unsigned magic;
    cudaStream_t stream;
};

namespace {

constexpr unsigned kHandleMagic = 0x43444e48u, kDescMagic = 0x43444e44u;
/* The plan's workspace: a token amount, so that the backend's workspace plumbing is exercised. */
constexpr int64_t kWorkspaceBytes = 512;

struct descriptor;

struct attribute {
    cudnnBackendAttributeType_t type;
    std::vector<unsigned char> bytes;
    int64_t count;
    /* Descriptor values are copied when set, as the library copies them: the caller may destroy
     * its own once they are set (attention_cudnn.cu does, after the plan is finalized). */
    std::vector<std::shared_ptr<descriptor>> children;
};

struct descriptor {
    unsigned magic;
    cudnnBackendDescriptorType_t type;
    bool finalized;
    std::map<int, attribute> attrs;
    /* ENGINECFG / EXECUTION_PLAN: the graph they serve (set by the heuristic / the config). */
    std::shared_ptr<descriptor> graph;
};

size_t element_size(cudnnBackendAttributeType_t type) {
    switch (type) {
    case CUDNN_TYPE_HANDLE:
        return sizeof(cudnnHandle_t);
    case CUDNN_TYPE_DATA_TYPE:
        return sizeof(cudnnDataType_t);
    case CUDNN_TYPE_BOOLEAN:
        return sizeof(bool);
    case CUDNN_TYPE_INT64:
        return sizeof(int64_t);
    case CUDNN_TYPE_FLOAT:
        return sizeof(float);
    case CUDNN_TYPE_DOUBLE:
        return sizeof(double);
    case CUDNN_TYPE_VOID_PTR:
        return sizeof(void *);
    case CUDNN_TYPE_HEUR_MODE:
        return sizeof(cudnnBackendHeurMode_t);
    case CUDNN_TYPE_POINTWISE_MODE:
        return sizeof(cudnnPointwiseMode_t);
    case CUDNN_TYPE_BACKEND_DESCRIPTOR:
        return sizeof(cudnnBackendDescriptor_t);
    case CUDNN_TYPE_REDUCTION_OPERATOR_TYPE:
        return sizeof(cudnnReduceTensorOp_t);
    default:
        return 0;
    }
}

cudnnStatus_t refuse(const char *call, cudnnStatus_t status, const std::string &why) {
    fprintf(stderr, "cudaemu cuDNN: %s: %s\n", call, why.c_str());
    return status;
}

descriptor *as_desc(cudnnBackendDescriptor_t d) {
    descriptor *p = static_cast<descriptor *>(d);
    return p != NULL && p->magic == kDescMagic ? p : NULL;
}

const attribute *find(const descriptor *d, int name) {
    auto it = d->attrs.find(name);
    return it == d->attrs.end() ? NULL : &it->second;
}

template <typename T> bool get1(const descriptor *d, int name, T *out) {
    const attribute *a = find(d, name);
    if (a == NULL || a->count < 1) return false;
    memcpy(out, a->bytes.data(), sizeof(T));
    return true;
}

std::vector<int64_t> get_ints(const descriptor *d, int name) {
    const attribute *a = find(d, name);
    std::vector<int64_t> v;
    if (a == NULL || a->type != CUDNN_TYPE_INT64) return v;
    v.resize((size_t)a->count);
    memcpy(v.data(), a->bytes.data(), (size_t)a->count * sizeof(int64_t));
    return v;
}

const std::shared_ptr<descriptor> *get_shared(const descriptor *d, int name, int64_t i = 0) {
    const attribute *a = d == NULL ? NULL : find(d, name);
    if (a == NULL || a->type != CUDNN_TYPE_BACKEND_DESCRIPTOR || i >= a->count) return NULL;
    return &a->children[(size_t)i];
}

descriptor *get_desc(const descriptor *d, int name, int64_t i = 0) {
    const std::shared_ptr<descriptor> *p = get_shared(d, name, i);
    return p ? p->get() : NULL;
}

// ---- tensors ----

struct tensor_info {
    cudnnDataType_t type;
    std::vector<int64_t> dims, strides;
    int64_t uid;
    bool is_virtual, by_value;
};

bool tensor_of(const descriptor *d, tensor_info *t) {
    if (d == NULL || d->type != CUDNN_BACKEND_TENSOR_DESCRIPTOR || !d->finalized) return false;
    get1(d, CUDNN_ATTR_TENSOR_DATA_TYPE, &t->type);
    t->dims = get_ints(d, CUDNN_ATTR_TENSOR_DIMENSIONS);
    t->strides = get_ints(d, CUDNN_ATTR_TENSOR_STRIDES);
    get1(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, &t->uid);
    t->is_virtual = false;
    t->by_value = false;
    get1(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, &t->is_virtual);
    get1(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, &t->by_value);
    return true;
}

size_t count_of(const std::vector<int64_t> &dims) {
    size_t n = 1;
    for (int64_t x : dims)
        n *= (size_t)x;
    return n;
}

size_t dtype_bytes(cudnnDataType_t type) {
    switch (type) {
    case CUDNN_DATA_HALF:
    case CUDNN_DATA_BFLOAT16:
        return 2;
    case CUDNN_DATA_FLOAT:
    case CUDNN_DATA_INT32:
        return 4;
    case CUDNN_DATA_BOOLEAN:
        return 1;
    default:
        return 0;
    }
}

/* The value a tensor of `type` holds for v. */
float round_to(cudnnDataType_t type, float v) {
    switch (type) {
    case CUDNN_DATA_HALF:
        return __half2float(__float2half_rn(v));
    case CUDNN_DATA_BFLOAT16:
        return __bfloat162float(__float2bfloat16_rn(v));
    case CUDNN_DATA_INT32:
        return (float)(int32_t)v;
    case CUDNN_DATA_BOOLEAN:
        return v != 0.0f ? 1.0f : 0.0f;
    default:
        return v;
    }
}

/* The multi-index of linear position i of dims (row-major). */
void unravel(size_t i, const std::vector<int64_t> &dims, int64_t *at) {
    for (int d = (int)dims.size() - 1; d >= 0; d--) {
        at[d] = (int64_t)(i % (size_t)dims[d]);
        i /= (size_t)dims[d];
    }
}

/* Row-major position in `dims` of multi-index `at`, broadcasting extents of 1. */
size_t ravel_broadcast(const int64_t *at, const std::vector<int64_t> &dims) {
    size_t i = 0;
    for (size_t d = 0; d < dims.size(); d++)
        i = i * (size_t)dims[d] + (size_t)(dims[d] == 1 ? 0 : at[d]);
    return i;
}

bool broadcasts_to(const std::vector<int64_t> &from, const std::vector<int64_t> &to) {
    if (from.size() != to.size()) return false;
    for (size_t d = 0; d < to.size(); d++)
        if (from[d] != to[d] && from[d] != 1) return false;
    return true;
}

// ---- operations ----

struct op_info {
    cudnnBackendDescriptorType_t kind;
    int mode;     /* pointwise mode or reduction operator */
    int64_t axis; /* GEN_INDEX */
    const descriptor *in[3];
    const descriptor *out;
};

bool op_of(const descriptor *d, op_info *o, std::string *why) {
    memset(o, 0, sizeof *o);
    o->kind = d->type;
    switch (d->type) {
    case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR: {
        const descriptor *pw = get_desc(d, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR);
        cudnnPointwiseMode_t mode;
        if (pw == NULL || !get1(pw, CUDNN_ATTR_POINTWISE_MODE, &mode)) {
            *why = "pointwise operation without a pointwise descriptor";
            return false;
        }
        o->mode = mode;
        o->axis = -1;
        get1(pw, CUDNN_ATTR_POINTWISE_AXIS, &o->axis);
        o->in[0] = get_desc(d, CUDNN_ATTR_OPERATION_POINTWISE_XDESC);
        o->in[1] = get_desc(d, CUDNN_ATTR_OPERATION_POINTWISE_BDESC);
        o->in[2] = get_desc(d, CUDNN_ATTR_OPERATION_POINTWISE_TDESC);
        o->out = get_desc(d, CUDNN_ATTR_OPERATION_POINTWISE_YDESC);
        return true;
    }
    case CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR:
        o->in[0] = get_desc(d, CUDNN_ATTR_OPERATION_MATMUL_ADESC);
        o->in[1] = get_desc(d, CUDNN_ATTR_OPERATION_MATMUL_BDESC);
        o->out = get_desc(d, CUDNN_ATTR_OPERATION_MATMUL_CDESC);
        return true;
    case CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR: {
        const descriptor *red = get_desc(d, CUDNN_ATTR_OPERATION_REDUCTION_DESC);
        cudnnReduceTensorOp_t mode;
        if (red == NULL || !get1(red, CUDNN_ATTR_REDUCTION_OPERATOR, &mode)) {
            *why = "reduction operation without a reduction descriptor";
            return false;
        }
        o->mode = mode;
        o->in[0] = get_desc(d, CUDNN_ATTR_OPERATION_REDUCTION_XDESC);
        o->out = get_desc(d, CUDNN_ATTR_OPERATION_REDUCTION_YDESC);
        return true;
    }
    default:
        *why = "operation descriptor type " + std::to_string((int)d->type) + " is not emulated";
        return false;
    }
}

bool pointwise_arity(int mode, int *n_inputs) {
    switch (mode) {
    case CUDNN_POINTWISE_EXP:
    case CUDNN_POINTWISE_GEN_INDEX:
        *n_inputs = 1;
        return true;
    case CUDNN_POINTWISE_ADD:
    case CUDNN_POINTWISE_MUL:
    case CUDNN_POINTWISE_SUB:
    case CUDNN_POINTWISE_DIV:
    case CUDNN_POINTWISE_CMP_GE:
        *n_inputs = 2;
        return true;
    case CUDNN_POINTWISE_BINARY_SELECT:
        *n_inputs = 3;
        return true;
    default:
        return false;
    }
}

/* Finalize-time checks of one operation's shapes. */
bool check_op(const descriptor *d, std::string *why) {
    op_info o;
    if (!op_of(d, &o, why)) return false;
    tensor_info in[3], out;
    if (!tensor_of(o.out, &out) || !tensor_of(o.in[0], &in[0])) {
        *why = "an operation's input or output is not a finalized tensor";
        return false;
    }
    if (d->type == CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR) {
        if (!tensor_of(o.in[1], &in[1]) || get_desc(d, CUDNN_ATTR_OPERATION_MATMUL_DESC) == NULL) {
            *why = "matmul without B or its matmul descriptor";
            return false;
        }
        const size_t r = out.dims.size();
        if (r < 2 || in[0].dims.size() != r || in[1].dims.size() != r ||
            in[0].dims[r - 2] != out.dims[r - 2] || in[1].dims[r - 1] != out.dims[r - 1] ||
            in[0].dims[r - 1] != in[1].dims[r - 2]) {
            *why = "matmul: A (.., M, K), B (.., K, N) and C (.., M, N) do not fit";
            return false;
        }
        for (size_t i = 0; i + 2 < r; i++)
            if ((in[0].dims[i] != out.dims[i] && in[0].dims[i] != 1) ||
                (in[1].dims[i] != out.dims[i] && in[1].dims[i] != 1)) {
                *why = "matmul: a batch dimension of A or B neither matches C nor is 1";
                return false;
            }
        return true;
    }
    if (d->type == CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR) {
        if (!broadcasts_to(out.dims, in[0].dims)) {
            *why = "reduction: each dimension of y must be x's or 1";
            return false;
        }
        return true;
    }
    int n_inputs = 0;
    if (!pointwise_arity(o.mode, &n_inputs)) {
        *why = "pointwise mode " + std::to_string(o.mode) + " is not emulated";
        return false;
    }
    if (o.mode == CUDNN_POINTWISE_GEN_INDEX &&
        (o.axis < 0 || o.axis >= (int64_t)in[0].dims.size())) {
        *why = "GEN_INDEX needs an axis within x's dimensions";
        return false;
    }
    if (in[0].dims != out.dims) {
        *why = "pointwise: y's dimensions differ from x's";
        return false;
    }
    for (int i = 1; i < n_inputs; i++) {
        if (!tensor_of(o.in[i], &in[i])) {
            *why = i == 1 ? "pointwise: this mode needs B" : "BINARY_SELECT needs T (the mask)";
            return false;
        }
        if (!broadcasts_to(in[i].dims, out.dims)) {
            *why = "pointwise: an input does not broadcast to y";
            return false;
        }
    }
    return true;
}

/* Every tensor of a graph by uid; false when one uid names two different tensors. */
bool graph_tensors(const descriptor *graph, std::map<int64_t, tensor_info> *tensors,
                   std::vector<op_info> *ops, std::string *why) {
    const attribute *a = find(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    for (int64_t i = 0; a != NULL && i < a->count; i++) {
        op_info o;
        if (!op_of(get_desc(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, i), &o, why)) return false;
        ops->push_back(o);
        for (const descriptor *t : {o.in[0], o.in[1], o.in[2], o.out}) {
            tensor_info info;
            if (!tensor_of(t, &info)) continue;
            auto it = tensors->find(info.uid);
            if (it != tensors->end() &&
                (it->second.dims != info.dims || it->second.type != info.type)) {
                *why = "uid " + std::to_string(info.uid) + " names two different tensors";
                return false;
            }
            (*tensors)[info.uid] = info;
        }
    }
    return true;
}

bool check_graph(const descriptor *graph, std::string *why) {
    const attribute *a = find(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    cudnnHandle_t handle = NULL;
    if (a == NULL || a->count < 1 || !get1(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, &handle) ||
        handle == NULL) {
        *why = "an operation graph needs its operations and a handle";
        return false;
    }
    for (int64_t i = 0; i < a->count; i++) {
        const descriptor *op = get_desc(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, i);
        if (op == NULL || !op->finalized) {
            *why = "operation " + std::to_string(i) + " is not a finalized descriptor";
            return false;
        }
    }
    std::map<int64_t, tensor_info> tensors;
    std::vector<op_info> ops;
    if (!graph_tensors(graph, &tensors, &ops, why)) return false;
    std::map<int64_t, int> writers;
    for (const op_info &o : ops) {
        tensor_info out;
        tensor_of(o.out, &out);
        if (++writers[out.uid] > 1) {
            *why = "tensor " + std::to_string(out.uid) + " is written by two operations";
            return false;
        }
    }
    for (const op_info &o : ops)
        for (const descriptor *t : o.in) {
            tensor_info info;
            if (tensor_of(t, &info) && info.is_virtual && writers.count(info.uid) == 0) {
                *why = "virtual tensor " + std::to_string(info.uid) + " is read but never written";
                return false;
            }
        }
    return true;
}

/* Whether the fused attention engine this file stands in for serves the graph (the heuristic). */
bool engine_supports(const descriptor *graph, std::string *why) {
    std::map<int64_t, tensor_info> tensors;
    std::vector<op_info> ops;
    if (!graph_tensors(graph, &tensors, &ops, why)) return false;
    std::vector<const op_info *> matmuls;
    for (const op_info &o : ops) {
        if (o.kind == CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR) matmuls.push_back(&o);
        if (o.kind == CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR &&
            o.mode != CUDNN_REDUCE_TENSOR_MAX && o.mode != CUDNN_REDUCE_TENSOR_ADD) {
            *why = "reduction operator " + std::to_string(o.mode) + " is not served";
            return false;
        }
    }
    if (matmuls.size() != 2) {
        *why = "a fused attention graph has two matmuls";
        return false;
    }
    tensor_info q, kt, v, o;
    tensor_of(matmuls[0]->in[0], &q);
    tensor_of(matmuls[0]->in[1], &kt);
    tensor_of(matmuls[1]->in[1], &v);
    tensor_of(matmuls[1]->out, &o);
    for (const tensor_info *t : {&q, &kt, &v, &o}) {
        if (t->is_virtual || (t->type != CUDNN_DATA_HALF && t->type != CUDNN_DATA_BFLOAT16) ||
            t->type != q.type || t->dims.size() != 4) {
            *why = "Q, K, V and O must be 4-d f16 or bf16 tensors of one dtype in memory";
            return false;
        }
    }
    const int64_t head_dim = q.dims[3];
    if (head_dim % 8 != 0 || head_dim > 256) {
        *why = "head dim " + std::to_string(head_dim) +
               ": the fused attention engines take multiples of 8 up to 256";
        return false;
    }
    if (q.strides[3] != 1 || v.strides[3] != 1 || o.strides[3] != 1 || kt.strides[2] != 1) {
        *why = "Q, V, O (.., D) and K^T (.., D, S) need a unit stride along D";
        return false;
    }
    return true;
}

/* The matmul descriptors' compute type must be f32 (checked here, at the heuristic). */
bool matmul_compute_f32(const descriptor *graph) {
    const attribute *a = find(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    for (int64_t i = 0; i < a->count; i++) {
        const descriptor *op = get_desc(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, i);
        if (op->type != CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR) continue;
        cudnnDataType_t compute = CUDNN_DATA_HALF;
        if (!get1(get_desc(op, CUDNN_ATTR_OPERATION_MATMUL_DESC), CUDNN_ATTR_MATMUL_COMP_TYPE,
                  &compute) ||
            compute != CUDNN_DATA_FLOAT)
            return false;
    }
    return true;
}

bool finalize_check(descriptor *d, std::string *why) {
    auto need = [&](int name, const char *what) {
        if (find(d, name) == NULL) *why = std::string("missing ") + what;
        return find(d, name) != NULL;
    };
    switch (d->type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: {
        if (!need(CUDNN_ATTR_TENSOR_DATA_TYPE, "DATA_TYPE") ||
            !need(CUDNN_ATTR_TENSOR_DIMENSIONS, "DIMENSIONS") ||
            !need(CUDNN_ATTR_TENSOR_STRIDES, "STRIDES") ||
            !need(CUDNN_ATTR_TENSOR_UNIQUE_ID, "UNIQUE_ID") ||
            !need(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, "BYTE_ALIGNMENT"))
            return false;
        const std::vector<int64_t> dims = get_ints(d, CUDNN_ATTR_TENSOR_DIMENSIONS),
                                   strides = get_ints(d, CUDNN_ATTR_TENSOR_STRIDES);
        if (dims.empty() || dims.size() != strides.size() || dims.size() > 8) {
            *why = "dimensions and strides must be 1 to 8 values each, as many of both";
            return false;
        }
        for (size_t i = 0; i < dims.size(); i++)
            if (dims[i] < 1 || strides[i] < 1) {
                *why = "dimensions and strides must be positive";
                return false;
            }
        cudnnDataType_t type;
        get1(d, CUDNN_ATTR_TENSOR_DATA_TYPE, &type);
        if (dtype_bytes(type) == 0) {
            *why = "data type " + std::to_string((int)type) + " is not emulated";
            return false;
        }
        bool by_value = false, is_virtual = false;
        get1(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, &by_value);
        get1(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, &is_virtual);
        if (by_value && (is_virtual || count_of(dims) != 1)) {
            *why = "a by-value tensor is one element and not virtual";
            return false;
        }
        return true;
    }
    case CUDNN_BACKEND_POINTWISE_DESCRIPTOR:
        return need(CUDNN_ATTR_POINTWISE_MODE, "POINTWISE_MODE");
    case CUDNN_BACKEND_MATMUL_DESCRIPTOR:
        return need(CUDNN_ATTR_MATMUL_COMP_TYPE, "MATMUL_COMP_TYPE");
    case CUDNN_BACKEND_REDUCTION_DESCRIPTOR:
        return need(CUDNN_ATTR_REDUCTION_OPERATOR, "REDUCTION_OPERATOR") &&
               need(CUDNN_ATTR_REDUCTION_COMP_TYPE, "REDUCTION_COMP_TYPE");
    case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR:
        return check_op(d, why);
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR:
        return check_graph(d, why);
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
        const std::shared_ptr<descriptor> *graph =
            get_shared(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
        if (graph == NULL || (*graph)->type != CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR ||
            !need(CUDNN_ATTR_ENGINEHEUR_MODE, "HEUR_MODE")) {
            if (why->empty()) *why = "the heuristic needs an operation graph";
            return false;
        }
        d->graph = *graph;
        return true;
    }
    case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
        return true;
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
        const descriptor *config = get_desc(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
        cudnnHandle_t handle = NULL;
        if (config == NULL || config->graph == nullptr ||
            !get1(d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, &handle) || handle == NULL) {
            *why = "a plan needs a handle and an engine config from the heuristic";
            return false;
        }
        d->graph = config->graph;
        return true;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
        const attribute *ids = find(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS),
                        *ptrs = find(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
        if (ids == NULL || ptrs == NULL || ids->count != ptrs->count) {
            *why = "a variant pack needs as many data pointers as unique ids";
            return false;
        }
        return true;
    }
    default:
        *why = "descriptor type " + std::to_string((int)d->type) + " is not emulated";
        return false;
    }
}

// ---- execution ----

/* Reads a tensor in memory (strided) into row-major floats. */
void load(const tensor_info &t, const void *p, std::vector<float> *out) {
    const size_t n = count_of(t.dims);
    out->resize(n);
    int64_t at[8];
    for (size_t i = 0; i < n; i++) {
        unravel(i, t.dims, at);
        size_t off = 0;
        for (size_t d = 0; d < t.dims.size(); d++)
            off += (size_t)(at[d] * t.strides[d]);
        const char *e = static_cast<const char *>(p) + off * dtype_bytes(t.type);
        float v = 0.0f;
        switch (t.type) {
        case CUDNN_DATA_HALF:
            v = __half2float(*reinterpret_cast<const __half *>(e));
            break;
        case CUDNN_DATA_BFLOAT16:
            v = __bfloat162float(*reinterpret_cast<const __nv_bfloat16 *>(e));
            break;
        case CUDNN_DATA_FLOAT:
            memcpy(&v, e, 4);
            break;
        case CUDNN_DATA_INT32: {
            int32_t x;
            memcpy(&x, e, 4);
            v = (float)x;
            break;
        }
        default:
            v = *e != 0 ? 1.0f : 0.0f;
        }
        (*out)[i] = v;
    }
}

void store(const tensor_info &t, void *p, const std::vector<float> &values) {
    int64_t at[8];
    for (size_t i = 0; i < values.size(); i++) {
        unravel(i, t.dims, at);
        size_t off = 0;
        for (size_t d = 0; d < t.dims.size(); d++)
            off += (size_t)(at[d] * t.strides[d]);
        char *e = static_cast<char *>(p) + off * dtype_bytes(t.type);
        switch (t.type) {
        case CUDNN_DATA_HALF:
            *reinterpret_cast<__half *>(e) = __float2half_rn(values[i]);
            break;
        case CUDNN_DATA_BFLOAT16:
            *reinterpret_cast<__nv_bfloat16 *>(e) = __float2bfloat16_rn(values[i]);
            break;
        case CUDNN_DATA_FLOAT:
            memcpy(e, &values[i], 4);
            break;
        case CUDNN_DATA_INT32: {
            const int32_t x = (int32_t)values[i];
            memcpy(e, &x, 4);
            break;
        }
        default:
            *e = values[i] != 0.0f;
        }
    }
}

/* The byte span [0, span) a strided tensor covers from its base. */
size_t span_bytes(const tensor_info &t) {
    size_t last = 0;
    for (size_t d = 0; d < t.dims.size(); d++)
        last += (size_t)((t.dims[d] - 1) * t.strides[d]);
    return (last + 1) * dtype_bytes(t.type);
}

void run_op(const op_info &o, std::map<int64_t, std::vector<float>> &values) {
    tensor_info out, in[3];
    tensor_of(o.out, &out);
    for (int i = 0; i < 3; i++)
        if (o.in[i]) tensor_of(o.in[i], &in[i]);
    const size_t n = count_of(out.dims);
    std::vector<float> y(n, 0.0f);
    int64_t at[8];
    if (o.kind == CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR) {
        /* Tensor cores multiply operands of one dtype: an f32 operand (the probabilities) beside
         * a half one is rounded to that half dtype first, as the fused engines do for P V. */
        std::vector<float> a = values[in[0].uid], b = values[in[1].uid];
        const bool a_half = dtype_bytes(in[0].type) == 2, b_half = dtype_bytes(in[1].type) == 2;
        if (a_half != b_half)
            for (float &x : a_half ? b : a)
                x = round_to(a_half ? in[0].type : in[1].type, x);
        const size_t r = out.dims.size();
        const int64_t K = in[0].dims[r - 1];
        for (size_t i = 0; i < n; i++) {
            unravel(i, out.dims, at);
            const int64_t m = at[r - 2], nn = at[r - 1];
            double sum = 0.0;
            for (int64_t kk = 0; kk < K; kk++) {
                at[r - 2] = m;
                at[r - 1] = kk;
                const float av = a[ravel_broadcast(at, in[0].dims)];
                at[r - 2] = kk;
                at[r - 1] = nn;
                const float bv = b[ravel_broadcast(at, in[1].dims)];
                sum += (double)av * bv;
            }
            y[i] = (float)sum;
        }
    } else if (o.kind == CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR) {
        const std::vector<float> &x = values[in[0].uid];
        const bool is_max = o.mode == CUDNN_REDUCE_TENSOR_MAX;
        std::vector<double> acc(n, is_max ? -INFINITY : 0.0);
        for (size_t i = 0; i < x.size(); i++) {
            unravel(i, in[0].dims, at);
            const size_t j = ravel_broadcast(at, out.dims);
            acc[j] = is_max ? (acc[j] > x[i] ? acc[j] : x[i]) : acc[j] + x[i];
        }
        for (size_t j = 0; j < n; j++)
            y[j] = (float)acc[j];
    } else {
        const std::vector<float> &x = values[in[0].uid];
        const std::vector<float> *b = o.in[1] ? &values[in[1].uid] : NULL;
        const std::vector<float> *t = o.in[2] ? &values[in[2].uid] : NULL;
        for (size_t i = 0; i < n; i++) {
            unravel(i, out.dims, at);
            const float xv = x[i];
            const float bv = b ? (*b)[ravel_broadcast(at, in[1].dims)] : 0.0f;
            const float tv = t ? (*t)[ravel_broadcast(at, in[2].dims)] : 0.0f;
            float v = 0.0f;
            switch (o.mode) {
            case CUDNN_POINTWISE_ADD:
                v = xv + bv;
                break;
            case CUDNN_POINTWISE_MUL:
                v = xv * bv;
                break;
            case CUDNN_POINTWISE_SUB:
                v = xv - bv;
                break;
            case CUDNN_POINTWISE_DIV:
                v = xv / bv;
                break;
            case CUDNN_POINTWISE_EXP:
                v = expf(xv);
                break;
            case CUDNN_POINTWISE_GEN_INDEX:
                v = (float)at[o.axis];
                break;
            case CUDNN_POINTWISE_CMP_GE:
                v = xv >= bv ? 1.0f : 0.0f;
                break;
            case CUDNN_POINTWISE_BINARY_SELECT:
                v = tv != 0.0f ? xv : bv;
                break;
            }
            y[i] = v;
        }
    }
    for (float &v : y)
        v = round_to(out.type, v);
    values[out.uid] = std::move(y);
}

} // namespace

extern "C" {

const char *cudaemu_cudnnGetErrorString(cudnnStatus_t status) {
    switch (status) {
    case CUDNN_STATUS_SUCCESS:
        return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_SUPPORTED:
        return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_BAD_PARAM:
        return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_INITIALIZED:
        return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_EXECUTION_FAILED:
        return "CUDNN_STATUS_EXECUTION_FAILED";
    default:
        return "CUDNN_STATUS (other)";
    }
}

cudnnStatus_t cudaemu_cudnnCreate(cudnnHandle_t *handle) {
    if (handle == NULL) return refuse("cudnnCreate", CUDNN_STATUS_BAD_PARAM, "handle is NULL");
    *handle = new cudnnContext{kHandleMagic, NULL};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudaemu_cudnnDestroy(cudnnHandle_t handle) {
    if (handle == NULL || handle->magic != kHandleMagic)
        return refuse("cudnnDestroy", CUDNN_STATUS_BAD_PARAM, "not a live handle");
    handle->magic = 0;
    delete handle;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudaemu_cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
    if (handle == NULL || handle->magic != kHandleMagic)
        return refuse("cudnnSetStream", CUDNN_STATUS_BAD_PARAM, "not a live handle");
    handle->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudaemu_cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t type,
                                                   cudnnBackendDescriptor_t *out) {
    descriptor *d = new descriptor();
    d->magic = kDescMagic;
    d->type = type;
    d->finalized = false;
    *out = d;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudaemu_cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t desc) {
    descriptor *d = as_desc(desc);
    if (d == NULL)
        return refuse("cudnnBackendDestroyDescriptor", CUDNN_STATUS_BAD_PARAM, "not a descriptor");
    d->magic = 0;
    delete d;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudaemu_cudnnBackendSetAttribute(cudnnBackendDescriptor_t desc,
                                               cudnnBackendAttributeName_t name,
                                               cudnnBackendAttributeType_t type, int64_t count,
                                               const void *values) {
    const char *call = "cudnnBackendSetAttribute";
    descriptor *d = as_desc(desc);
    if (d == NULL) return refuse(call, CUDNN_STATUS_BAD_PARAM, "not a descriptor");
    if (d->finalized) return refuse(call, CUDNN_STATUS_BAD_PARAM, "attribute set after finalize");
    const size_t size = element_size(type);
    if (size == 0 || count < 1 || values == NULL)
        return refuse(call, CUDNN_STATUS_BAD_PARAM,
                      "attribute " + std::to_string((int)name) + ": type " +
                          std::to_string((int)type) + " with " + std::to_string(count) +
                          " values is not emulated");
    attribute a;
    a.type = type;
    a.count = count;
    a.bytes.assign(static_cast<const unsigned char *>(values),
                   static_cast<const unsigned char *>(values) + size * (size_t)count);
    if (type == CUDNN_TYPE_BACKEND_DESCRIPTOR)
        for (int64_t i = 0; i < count; i++) {
            void *p;
            memcpy(&p, a.bytes.data() + (size_t)i * sizeof p, sizeof p);
            const descriptor *child = as_desc(p);
            if (child == NULL || !child->finalized)
                return refuse(call, CUDNN_STATUS_BAD_PARAM,
                              "attribute " + std::to_string((int)name) +
                                  ": not a finalized descriptor");
            a.children.push_back(std::make_shared<descriptor>(*child));
        }
    d->attrs[(int)name] = std::move(a);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudaemu_cudnnBackendFinalize(cudnnBackendDescriptor_t desc) {
    descriptor *d = as_desc(desc);
    if (d == NULL)
        return refuse("cudnnBackendFinalize", CUDNN_STATUS_BAD_PARAM, "not a descriptor");
    std::string why;
    if (!finalize_check(d, &why))
        return refuse("cudnnBackendFinalize", CUDNN_STATUS_BAD_PARAM,
                      "descriptor type " + std::to_string((int)d->type) + ": " + why);
    d->finalized = true;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudaemu_cudnnBackendGetAttribute(cudnnBackendDescriptor_t const desc,
                                               cudnnBackendAttributeName_t name,
                                               cudnnBackendAttributeType_t type, int64_t requested,
                                               int64_t *returned, void *values) {
    const char *call = "cudnnBackendGetAttribute";
    descriptor *d = as_desc(desc);
    if (d == NULL || !d->finalized)
        return refuse(call, CUDNN_STATUS_BAD_PARAM, "not a finalized descriptor");
    if (d->type == CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR && name == CUDNN_ATTR_ENGINEHEUR_RESULTS &&
        type == CUDNN_TYPE_BACKEND_DESCRIPTOR) {
        std::string why;
        const bool ok =
            engine_supports(d->graph.get(), &why) &&
            (matmul_compute_f32(d->graph.get()) || (why = "matmul compute is not f32", false));
        if (!ok) {
            fprintf(stderr, "cudaemu cuDNN: heuristic: no engine: %s\n", why.c_str());
            *returned = 0;
            return CUDNN_STATUS_SUCCESS;
        }
        *returned = 1;
        if (requested < 1) return CUDNN_STATUS_SUCCESS;
        void *first;
        memcpy(&first, values, sizeof first);
        descriptor *config = as_desc(first);
        if (config == NULL || config->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)
            return refuse(call, CUDNN_STATUS_BAD_PARAM,
                          "heuristic results go into engine config descriptors the caller made");
        config->graph = d->graph;
        config->finalized = true;
        return CUDNN_STATUS_SUCCESS;
    }
    if (d->type == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR &&
        name == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE && type == CUDNN_TYPE_INT64 &&
        requested >= 1) {
        *returned = 1;
        *static_cast<int64_t *>(values) = kWorkspaceBytes;
        return CUDNN_STATUS_SUCCESS;
    }
    return refuse(call, CUDNN_STATUS_NOT_SUPPORTED,
                  "attribute " + std::to_string((int)name) + " of descriptor type " +
                      std::to_string((int)d->type) + " is not emulated");
}

cudnnStatus_t cudaemu_cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t plan,
                                          cudnnBackendDescriptor_t pack) {
    const char *call = "cudnnBackendExecute";
    descriptor *p = as_desc(plan), *vp = as_desc(pack);
    if (handle == NULL || handle->magic != kHandleMagic)
        return refuse(call, CUDNN_STATUS_BAD_PARAM, "not a live handle");
    if (p == NULL || !p->finalized || p->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR ||
        vp == NULL || !vp->finalized || vp->type != CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)
        return refuse(call, CUDNN_STATUS_BAD_PARAM, "needs a finalized plan and variant pack");
    std::map<int64_t, tensor_info> tensors;
    std::vector<op_info> ops;
    std::string why;
    if (!graph_tensors(p->graph.get(), &tensors, &ops, &why))
        return refuse(call, CUDNN_STATUS_BAD_PARAM, why);

    const std::vector<int64_t> ids = get_ints(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS);
    const attribute *ptrs = find(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
    std::map<int64_t, void *> data;
    for (size_t i = 0; i < ids.size(); i++) {
        void *ptr;
        memcpy(&ptr, ptrs->bytes.data() + i * sizeof ptr, sizeof ptr);
        data[ids[i]] = ptr;
    }
    void *workspace = NULL;
    get1(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, &workspace);
    if (!cudaemu::outside_device(workspace, (size_t)kWorkspaceBytes).empty())
        return refuse(call, CUDNN_STATUS_BAD_PARAM,
                      "the workspace is not device memory of the plan's size");

    std::map<int64_t, std::vector<float>> values;
    for (const auto &entry : tensors) {
        const tensor_info &t = entry.second;
        if (t.is_virtual) continue;
        auto it = data.find(t.uid);
        if (it == data.end() || it->second == NULL)
            return refuse(call, CUDNN_STATUS_BAD_PARAM,
                          "uid " + std::to_string(t.uid) + " has no pointer in the variant pack");
        if (t.by_value) {
            if (cudaemu::outside_device(it->second, 1).empty())
                return refuse(call, CUDNN_STATUS_BAD_PARAM,
                              "by-value uid " + std::to_string(t.uid) + " points at device memory");
        } else {
            const std::string where = cudaemu::outside_device(it->second, span_bytes(t));
            if (!where.empty())
                return refuse(call, CUDNN_STATUS_BAD_PARAM,
                              "uid " + std::to_string(t.uid) + ": " + where);
        }
    }
    /* Operations in dependency order, whatever the list's. */
    std::map<int64_t, bool> written;
    for (const op_info &o : ops) {
        tensor_info out;
        tensor_of(o.out, &out);
        written[out.uid] = true;
    }
    std::vector<bool> done(ops.size(), false);
    for (size_t finished = 0; finished < ops.size();) {
        bool progress = false;
        for (size_t i = 0; i < ops.size(); i++) {
            if (done[i]) continue;
            bool ready = true;
            for (const descriptor *t : ops[i].in) {
                tensor_info info;
                if (!tensor_of(t, &info)) continue;
                if (values.count(info.uid) == 0) {
                    if (written.count(info.uid)) {
                        ready = false;
                    } else {
                        load(info, data[info.uid], &values[info.uid]);
                    }
                }
            }
            if (!ready) continue;
            run_op(ops[i], values);
            done[i] = true;
            finished++;
            progress = true;
        }
        if (!progress) return refuse(call, CUDNN_STATUS_BAD_PARAM, "the graph has a cycle");
    }
    for (const auto &entry : tensors)
        if (!entry.second.is_virtual && written.count(entry.first))
            store(entry.second, data[entry.first], values[entry.first]);
    return CUDNN_STATUS_SUCCESS;
}

} // extern "C"
