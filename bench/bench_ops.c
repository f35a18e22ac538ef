/* bench_ops: each op of the backend table (kernels/backend.h) timed alone, at the shapes one
 * OPT forward and ZO step give it, against the device's peak bandwidth and arithmetic.
 *
 * A case is one op call on buffers sized from an OPT preset (N = B*T rows of hidden size h):
 *   linear     qkv N x h -> h (+bias), fc1 N x h -> f (+bias, ReLU), fc2 N x f -> h (+bias),
 *              lm_head R x e -> V (the tied table, R = one head chunk of target rows: the
 *              backend's head_chunk_rows, 64 on the CPU, 1024 on CUDA)
 *   attention  causal, B x T x h, H heads, no padding; on CUDA under --gemm half with half
 *              weights "causal" is the cuDNN path and "causal-f32k" the f32 kernel
 *   layernorm  N x h
 *   gather     N embedding rows out of the V x e table
 *   logprobs   R x V logits: one LM-head chunk, and B rows (MeZO's one target per sequence)
 *   perturb    the fc1 weight (h*f elements): staged into an f32 shadow, and in place
 *   update     the fc1 weight, SGD with stochastic rounding (f16/bf16)
 * Each case is warmed up once, then repeated until both --repeat repeats and the minimum time
 * are reached; the caches are flushed before every repeat so that each call streams its bytes
 * from memory, as it does inside a forward whose working set is far larger than the caches.
 * Bytes are the compulsory traffic (every input read once, every output written once); FLOPs
 * count multiply-adds as 2. The formulas, with napkin numbers, sit next to each case in
 * family_cases.
 *
 * CUDA repeats are timed with events on the backend's stream when the library exports it, and
 * by the host around a stream sync otherwise (see zt_cuda_backend_stream below). */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "bench_common.h"
#include "common/dtype.h"
#include "core/alloc.h"
#include "core/status.h"
#include "cpu/cpu_common.h"
#include "opt/opt.h"
#include "zt_config.h"

#if ZT_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "cuda/cuda_backend.h" /* zt_cuda_backend_set_attention_mode */

/* The CUDA backend keeps its stream private (kernels/cuda/cuda_backend.h exports only the
 * constructor), and its ops run on a non-blocking stream that events on the legacy stream do not
 * order with. A weak reference lets this file use an accessor as soon as the library defines
 * one, `void *zt_cuda_backend_stream(zt_backend *be)` returning the cudaStream_t; until then the
 * reference is NULL and repeats are timed by the host around a stream sync, which adds the
 * launch and sync latency (some microseconds) to every repeat. */
extern void *zt_cuda_backend_stream(zt_backend *be) __attribute__((weak));
#endif

enum {
    SKIP_EXIT = 77,     /* meson's "skipped" */
    MAX_SAMPLES = 2000, /* repeats kept for the median; enough for a 0.5 s window of 250 us */
    MAX_BUFFERS = 6,
    MAX_CASES = 16,
    PERTURB_TENSOR_ID = 7,
};

static const char *const PROG = "bench_ops";
static const uint64_t PERTURB_SEED = 20240607, ROUNDING_SEED = 99, FILL_SEED = 42;
static const float PERTURB_EPS = 1e-3f; /* MeZO's eps: the +eps variant's coefficient */
static const float UPDATE_COEFF = 0.5f; /* a projected gradient */
static const float UPDATE_LR = 1e-6f;

/* ---- options ---- */

typedef enum op_family {
    OP_LINEAR,
    OP_ATTENTION,
    OP_LAYERNORM,
    OP_GATHER,
    OP_LOGPROBS,
    OP_PERTURB,
    OP_UPDATE,
    N_FAMILIES
} op_family;

static const char *const FAMILY_NAMES[N_FAMILIES] = {"linear",   "attention", "layernorm", "gather",
                                                     "logprobs", "perturb",   "update"};

typedef struct options {
    const char *backend;
    const char *gemm;         /* --gemm: auto, f32, tf32, half (kernels/backend.h) */
    int families[N_FAMILIES]; /* 1 = run */
    const bench_opt_size *shape;
    zt_dtype dtype;
    int batch, seq_len;
    int repeat;         /* at least this many timed repeats */
    double min_time_ms; /* and at least this much timed op time */
    int threads;
    int json, flush;
    double peak_gbs, peak_tflops; /* > 0: given on the command line */
} options;

/* ---- peaks ---- */

typedef struct peaks {
    double gb_per_s, gflop_per_s; /* 0 = unknown: no percentage printed */
    char bandwidth_source[96], compute_source[96];
    double reference_bf16_tflops; /* CUDA: dense tensor-core peak, shown for reference */
} peaks;

/* ---- one benchmark case ---- */

typedef struct op_case {
    op_family family;
    const char *label;
    char shape_text[48];
    int rows, in_features, out_features, relu;
    int batch, seq_len, heads, head_dim;
    int table_rows, vocab;
    size_t n_elems;
    int inplace;
    /* linear on half activations (backend.h's half-activation ops): 1 the input already rounded
     * (linear_half_in), 2 the output written rounded too (linear_half_out) */
    int half_io;
    int members;         /* linear_batched over this many weights (k, v, q); 0: a single linear */
    double bytes, flops; /* per call */
    /* backend buffers, freed by free_case */
    void *buffer[MAX_BUFFERS];
    size_t buffer_bytes[MAX_BUFFERS];
    zt_mem_category buffer_category[MAX_BUFFERS];
    int n_buffers;
} op_case;

typedef struct case_timing {
    double median_ms, min_ms, mean_ms;
    int repeats;
} case_timing;

typedef struct case_result {
    op_case c;
    case_timing t;
    char skipped[160]; /* non-empty: the op is not available on this backend */
} case_result;

/* ---- the context a run shares ---- */

typedef struct bench_context {
    zt_backend *be;
    const options *o;
    int is_cuda, device;
    char device_name[256]; /* cudaDeviceProp.name is 256 bytes */
    void *flush_buffer;    /* host (CPU) or device (CUDA) memory, overwritten before each repeat */
    size_t flush_bytes;
#if ZT_HAVE_CUDA
    cudaStream_t stream; /* the backend's, or NULL: host timing (zt_cuda_backend_stream) */
    cudaEvent_t start, stop;
#endif
} bench_context;

static zt_status report(zt_status s) {
    if (s != ZT_OK) fprintf(stderr, "%s: %s\n", PROG, zt_last_error());
    return s;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1): 24 random bits scaled. */
static float uniform_pm1(uint64_t *state) {
    return (float)(splitmix64(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

/* ---- buffers ---- */

static zt_status add_buffer(bench_context *ctx, op_case *c, size_t n_bytes,
                            zt_mem_category category, const void *host_data, void **out) {
    if (c->n_buffers == MAX_BUFFERS)
        return zt_fail(ZT_ERR_INTERNAL, "bench_ops: more than %d buffers in one case", MAX_BUFFERS);
    zt_backend *be = ctx->be;
    ZT_TRY(be->ops->alloc(be, n_bytes, category, out));
    c->buffer[c->n_buffers] = *out;
    c->buffer_bytes[c->n_buffers] = n_bytes;
    c->buffer_category[c->n_buffers] = category;
    c->n_buffers++;
    return host_data ? be->ops->upload(be, *out, host_data, n_bytes) : ZT_OK;
}

/* n values uniform in [-scale, scale) stored in `dtype`. */
static zt_status add_random(bench_context *ctx, op_case *c, size_t n, zt_dtype dtype, float scale,
                            zt_mem_category category, void **out) {
    size_t element = zt_dtype_size(dtype);
    void *host = malloc(n * element);
    if (!host) return zt_fail(ZT_ERR_NOMEM, "bench_ops: %zu host bytes", n * element);
    uint64_t state = FILL_SEED + (uint64_t)c->n_buffers;
    for (size_t i = 0; i < n; i++) {
        float value = scale * uniform_pm1(&state);
        if (dtype == ZT_F32)
            ((float *)host)[i] = value;
        else if (dtype == ZT_F16)
            ((uint16_t *)host)[i] = zt_f32_to_f16(value);
        else
            ((uint16_t *)host)[i] = zt_f32_to_bf16(value);
    }
    zt_status s = add_buffer(ctx, c, n * element, category, host, out);
    free(host);
    return s;
}

/* n int32 values: uniform in [0, modulo), or all `modulo` when uniform is 0 (a mask of ones). */
static zt_status add_indices(bench_context *ctx, op_case *c, size_t n, int modulo, int uniform,
                             void **out) {
    int32_t *host = malloc(n * sizeof *host);
    if (!host) return zt_fail(ZT_ERR_NOMEM, "bench_ops: %zu host bytes", n * sizeof *host);
    uint64_t state = FILL_SEED + 1000u + (uint64_t)c->n_buffers;
    for (size_t i = 0; i < n; i++)
        host[i] = uniform ? (int32_t)(splitmix64(&state) % (uint64_t)modulo) : modulo;
    zt_status s = add_buffer(ctx, c, n * sizeof *host, ZT_MEM_ACTIVATIONS, host, out);
    /* As the model does with a batch's indices (models/sweep.c): the op then skips its device
     * check, whose wait for the device would otherwise sit inside the timed window. */
    if (s == ZT_OK && ctx->be->ops->vouch_indices)
        ctx->be->ops->vouch_indices(ctx->be, *out, n, uniform ? modulo : modulo + 1);
    free(host);
    return s;
}

static void free_case(bench_context *ctx, op_case *c) {
    for (int i = 0; i < c->n_buffers; i++)
        ctx->be->ops->free(ctx->be, c->buffer[i], c->buffer_bytes[i], c->buffer_category[i]);
    c->n_buffers = 0;
}

/* ---- the cases: shapes, bytes and FLOPs ---- */

/* The cases of one family at the preset's shapes. Returns how many were written to `out`. */
static int family_cases(op_family family, const options *o, const zt_backend *be, op_case *out) {
    const bench_opt_size *z = o->shape;
    int n = o->batch * o->seq_len, h = z->hidden, f = z->ffn, e = z->embed_proj;
    /* The forward sends target rows through the head the backend's head_chunk_rows at a time. */
    int head_rows = zt_head_chunk_rows(be, n);
    double s = (double)zt_dtype_size(o->dtype), fl = sizeof(float);
    int count = 0;
    op_case base;
    memset(&base, 0, sizeof base);
    base.family = family;
    switch (family) {
    case OP_LINEAR: {
        struct {
            const char *label;
            int rows, in, out, relu;
        } shapes[4] = {{"qkv", n, h, h, 0},
                       {"fc1", n, h, f, 1},
                       {"fc2", n, f, h, 0},
                       {"lm_head", head_rows, e, BENCH_OPT_VOCAB, 0}};
        for (int i = 0; i < 4; i++) {
            op_case c = base;
            c.label = shapes[i].label;
            c.rows = shapes[i].rows, c.in_features = shapes[i].in;
            c.out_features = shapes[i].out, c.relu = shapes[i].relu;
            int has_bias = strcmp(c.label, "lm_head") != 0;
            double rows = c.rows, in = c.in_features, outf = c.out_features;
            /* in (N,IC) f32 + W (OC,IC) + bias (OC) in storage dtype + out (N,OC) f32.
             * 125m fc1, bf16: 12.6 MB + 4.7 MB + 6 KB + 50.3 MB = 67.6 MB. */
            c.bytes =
                fl * rows * in + s * outf * in + (has_bias ? s * outf : 0.0) + fl * rows * outf;
            /* 2 N IC OC; the bias/ReLU epilogue (N OC) is left out. 125m fc1: 19.3 GFLOP. */
            c.flops = 2.0 * rows * in * outf;
            snprintf(c.shape_text, sizeof c.shape_text, "%dx%d -> %d%s%s", c.rows, c.in_features,
                     c.out_features, has_bias ? " +b" : "", c.relu ? " relu" : "");
            out[count++] = c;
        }
        /* k, v and q as the forward runs them: one linear_batched call (one strided-batched
         * GEMM on CUDA) against the three "qkv" calls above */
        if (be->ops->linear_batched) {
            op_case c = out[0];
            c.label = "kvq-batched";
            c.members = 3;
            double rows = c.rows, in = c.in_features, outf = c.out_features;
            c.bytes = fl * rows * in + 3.0 * (s * outf * in + s * outf + fl * rows * outf);
            c.flops = 3.0 * 2.0 * rows * in * outf;
            snprintf(c.shape_text, sizeof c.shape_text, "3 x %dx%d -> %d +b", c.rows, c.in_features,
                     c.out_features);
            out[count++] = c;
        }
        /* What the half-mode forward runs for the FFN (models/opt/opt_layers.c): fc1 on the
         * layer norm's rounded output writing fc2's input rounded, fc2 reading it. */
        if (be->gemm == ZT_GEMM_HALF && o->dtype != ZT_F32 && zt_backend_has_half_activations(be)) {
            for (int i = 1; i <= 2; i++) {
                op_case c = out[i];
                c.label = i == 1 ? "fc1-half-out" : "fc2-half-in";
                c.half_io = i == 1 ? 2 : 1;
                double rows = c.rows, in = c.in_features, outf = c.out_features;
                /* the activations in the storage dtype: 125m fc1, bf16: 6.3 + 4.7 + 25.2 MB */
                c.bytes = s * rows * in + s * outf * in + s * outf +
                          (c.half_io == 2 ? s : fl) * rows * outf;
                snprintf(c.shape_text, sizeof c.shape_text, "%dx%d -> %d +b%s, half %s", c.rows,
                         c.in_features, c.out_features, c.relu ? " relu" : "",
                         c.half_io == 2 ? "in/out" : "in");
                out[count++] = c;
            }
        }
        break;
    }
    case OP_ATTENTION: {
        op_case c = base;
        c.label = "causal";
        c.batch = o->batch, c.seq_len = o->seq_len, c.heads = z->heads;
        c.head_dim = h / z->heads;
        double rows = n, t = o->seq_len;
        /* q, k, v read and out written, (B,T,C) f32 each, + the (B,T) int32 mask; a flash-style
         * kernel keeps the T x T scores on chip. 125m, N 4096: 4 x 12.6 MB = 50.3 MB. */
        c.bytes = 4.0 * fl * rows * h + 4.0 * rows;
        /* Query i sees i+1 keys: QK^T and AV cost 2D each per (query, key, head) pair, so
         * 2 * 2D * H * B * T(T+1)/2 = 2 B C T (T+1). 125m, B 16, T 256: 1.62 GFLOP. */
        c.flops = 2.0 * o->batch * (double)h * t * (t + 1.0);
        snprintf(c.shape_text, sizeof c.shape_text, "B%d T%d H%d D%d", c.batch, c.seq_len, c.heads,
                 c.head_dim);
        out[count++] = c;
        /* On CUDA with half GEMMs "causal" is the cuDNN path (kernels/cuda/attention_cudnn.cu,
         * the path training takes); "causal-f32k" times the f32 kernel on the same shape. */
        if (strncmp(be->ops->name, "cuda", 4) == 0 && be->gemm == ZT_GEMM_HALF &&
            o->dtype != ZT_F32) {
            c.label = "causal-f32k";
            out[count++] = c;
        }
        break;
    }
    case OP_LAYERNORM: {
        op_case c = base;
        c.label = "rows";
        c.rows = n, c.in_features = h;
        /* in read + out written, (N,h) f32, + gamma and beta. 125m: 25.2 MB. */
        c.bytes = 2.0 * fl * n * h + 2.0 * s * h;
        /* ~8 per element: mean (1), variance (3), normalise (2), affine (2). */
        c.flops = 8.0 * n * (double)h;
        snprintf(c.shape_text, sizeof c.shape_text, "%dx%d", n, h);
        out[count++] = c;
        break;
    }
    case OP_GATHER: {
        op_case c = base;
        c.label = "embed";
        c.rows = n, c.in_features = e, c.table_rows = BENCH_OPT_VOCAB;
        /* N rows of the (V,e) table read in storage dtype, written as f32, + N int32 ids.
         * 125m bf16: 6.3 + 12.6 MB + 16 KB. */
        c.bytes = s * n * e + fl * n * e + 4.0 * n;
        c.flops = 0.0;
        snprintf(c.shape_text, sizeof c.shape_text, "%d of %dx%d", n, BENCH_OPT_VOCAB, e);
        out[count++] = c;
        break;
    }
    case OP_LOGPROBS: {
        /* A full head chunk (every token a target), and MeZO's B rows (one per sequence). */
        const struct {
            const char *label;
            int rows;
        } shapes[2] = {{"chunk", head_rows}, {"per-seq", o->batch < n ? o->batch : n}};
        for (int i = 0; i < 2; i++) {
            if (i == 1 && shapes[1].rows == head_rows) break;
            op_case c = base;
            c.label = shapes[i].label;
            c.rows = shapes[i].rows, c.vocab = BENCH_OPT_VOCAB;
            /* (R,V) f32 logits read + R targets + R log-probs. 1024 rows: 206 MB; 16: 3.2 MB. */
            c.bytes = fl * c.rows * (double)c.vocab + 8.0 * c.rows;
            /* ~4 per logit: max, subtract, exp, sum. */
            c.flops = 4.0 * c.rows * (double)c.vocab;
            snprintf(c.shape_text, sizeof c.shape_text, "%dx%d", c.rows, c.vocab);
            out[count++] = c;
        }
        break;
    }
    case OP_PERTURB: {
        for (int inplace = 0; inplace <= 1; inplace++) {
            op_case c = base;
            c.label = inplace ? "inplace" : "shadow";
            c.inplace = inplace;
            c.n_elems = (size_t)h * (size_t)f;
            /* shadow: read the master (s), write the staged copy in the backend's stage dtype
             * (f32, or the storage dtype under --gemm half: zt_backend_stage_dtype); inplace:
             * read and write the master (2s). 125m fc1 (2.36 M elements), bf16 into f32: 14.2
             * MB; in place 9.4 MB. The Philox and Box-Muller work is integer and
             * transcendental: not counted as FLOPs. */
            const double staged = (double)zt_dtype_size(zt_backend_stage_dtype(be, o->dtype));
            c.bytes = inplace ? 2.0 * s * (double)c.n_elems : (s + staged) * (double)c.n_elems;
            c.flops = 0.0;
            snprintf(c.shape_text, sizeof c.shape_text, "%zu (fc1 %dx%d)", c.n_elems, f, h);
            out[count++] = c;
        }
        break;
    }
    case OP_UPDATE: {
        op_case c = base;
        c.label = "sgd";
        c.n_elems = (size_t)h * (size_t)f;
        /* theta read and written once (2s); SGD keeps no state. 125m fc1 bf16: 9.4 MB. */
        c.bytes = 2.0 * s * (double)c.n_elems;
        c.flops = 0.0;
        snprintf(c.shape_text, sizeof c.shape_text, "%zu (fc1 %dx%d)%s", c.n_elems, f, h,
                 o->dtype == ZT_F32 ? "" : " SR");
        out[count++] = c;
        break;
    }
    case N_FAMILIES:
        break;
    }
    return count;
}

/* Allocates and fills the buffers of a case, in the order run_case reads them. */
static zt_status setup_case(bench_context *ctx, op_case *c) {
    const options *o = ctx->o;
    zt_dtype w = o->dtype;
    void *p = NULL;
    switch (c->family) {
    case OP_LINEAR: {
        size_t in = (size_t)c->rows * c->in_features, out = (size_t)c->rows * c->out_features;
        size_t weight = (size_t)c->out_features * c->in_features;
        int has_bias = strcmp(c->label, "lm_head") != 0;
        const size_t members = c->members > 1 ? (size_t)c->members : 1;
        ZT_TRY(add_random(ctx, c, in, c->half_io ? w : ZT_F32, 1.0f, ZT_MEM_ACTIVATIONS, &p));
        ZT_TRY(add_random(ctx, c, members * weight, w, 0.02f, ZT_MEM_WEIGHTS, &p));
        if (has_bias)
            ZT_TRY(add_random(ctx, c, members * (size_t)c->out_features, w, 0.02f, ZT_MEM_WEIGHTS,
                              &p));
        return add_buffer(ctx, c,
                          members * out * (c->half_io == 2 ? zt_dtype_size(w) : sizeof(float)),
                          ZT_MEM_ACTIVATIONS, NULL, &p);
    }
    case OP_ATTENTION: {
        size_t n = (size_t)c->batch * c->seq_len * c->heads * c->head_dim;
        for (int i = 0; i < 3; i++)
            ZT_TRY(add_random(ctx, c, n, ZT_F32, 1.0f, ZT_MEM_ACTIVATIONS, &p));
        ZT_TRY(add_indices(ctx, c, (size_t)c->batch * c->seq_len, 1, 0, &p));
        return add_buffer(ctx, c, n * sizeof(float), ZT_MEM_ACTIVATIONS, NULL, &p);
    }
    case OP_LAYERNORM: {
        size_t n = (size_t)c->rows * c->in_features;
        ZT_TRY(add_random(ctx, c, n, ZT_F32, 1.0f, ZT_MEM_ACTIVATIONS, &p));
        ZT_TRY(add_random(ctx, c, (size_t)c->in_features, w, 1.0f, ZT_MEM_WEIGHTS, &p));
        ZT_TRY(add_random(ctx, c, (size_t)c->in_features, w, 0.1f, ZT_MEM_WEIGHTS, &p));
        return add_buffer(ctx, c, n * sizeof(float), ZT_MEM_ACTIVATIONS, NULL, &p);
    }
    case OP_GATHER: {
        size_t table = (size_t)c->table_rows * c->in_features;
        ZT_TRY(add_indices(ctx, c, (size_t)c->rows, c->table_rows, 1, &p));
        ZT_TRY(add_random(ctx, c, table, w, 0.02f, ZT_MEM_WEIGHTS, &p));
        return add_buffer(ctx, c, (size_t)c->rows * c->in_features * sizeof(float),
                          ZT_MEM_ACTIVATIONS, NULL, &p);
    }
    case OP_LOGPROBS: {
        ZT_TRY(
            add_random(ctx, c, (size_t)c->rows * c->vocab, ZT_F32, 8.0f, ZT_MEM_ACTIVATIONS, &p));
        ZT_TRY(add_indices(ctx, c, (size_t)c->rows, c->vocab, 1, &p));
        return add_buffer(ctx, c, (size_t)c->rows * sizeof(float), ZT_MEM_ACTIVATIONS, NULL, &p);
    }
    case OP_PERTURB:
        ZT_TRY(add_random(ctx, c, c->n_elems, w, 0.02f, ZT_MEM_WEIGHTS, &p));
        if (c->inplace) return ZT_OK;
        return add_buffer(ctx, c, c->n_elems * zt_dtype_size(zt_backend_stage_dtype(ctx->be, w)),
                          ZT_MEM_SCRATCH, NULL, &p);
    case OP_UPDATE:
        return add_random(ctx, c, c->n_elems, w, 0.02f, ZT_MEM_WEIGHTS, &p);
    case N_FAMILIES:
        break;
    }
    return zt_fail(ZT_ERR_INTERNAL, "bench_ops: unknown op family %d", (int)c->family);
}

static zt_weight weight_of(const void *data, zt_dtype dtype) {
    zt_weight w = {data, dtype};
    return w;
}

/* One call of the case's op (enqueued, not waited for, on CUDA). */
static zt_status run_case(bench_context *ctx, const op_case *c) {
    zt_backend *be = ctx->be;
    const zt_backend_ops *op = be->ops;
    zt_dtype w = ctx->o->dtype;
    void *const *b = c->buffer;
    switch (c->family) {
    case OP_LINEAR: {
        int has_bias = c->n_buffers == 4;
        zt_weight bias = weight_of(has_bias ? b[2] : NULL, w);
        if (c->members > 1)
            return op->linear_batched(
                be, b[c->n_buffers - 1], (size_t)c->rows * (size_t)c->out_features, b[0], ZT_F32,
                weight_of(b[1], w), (size_t)c->out_features * (size_t)c->in_features, bias,
                (size_t)c->out_features, c->members, c->rows, c->in_features, c->out_features,
                c->relu);
        if (c->half_io == 2)
            return op->linear_half_out(be, b[c->n_buffers - 1], b[0], weight_of(b[1], w), bias,
                                       c->rows, c->in_features, c->out_features, c->relu);
        if (c->half_io == 1)
            return op->linear_half_in(be, b[c->n_buffers - 1], b[0], weight_of(b[1], w), bias,
                                      c->rows, c->in_features, c->out_features, c->relu);
        return op->linear(be, b[c->n_buffers - 1], b[0], weight_of(b[1], w), bias, c->rows,
                          c->in_features, c->out_features, c->relu);
    }
    case OP_ATTENTION: {
        float q_scale = (float)(1.0 / sqrt((double)c->head_dim));
#if ZT_HAVE_CUDA
        if (strcmp(be->ops->name, "cuda") == 0) {
            /* the path explicitly, not by whichever GEMM ran last (the AUTO mode) */
            const int half =
                be->gemm == ZT_GEMM_HALF && w != ZT_F32 && strcmp(c->label, "causal-f32k") != 0;
            ZT_TRY(zt_cuda_backend_set_attention_mode(be, !half          ? ZT_CUDA_ATTENTION_F32
                                                          : w == ZT_BF16 ? ZT_CUDA_ATTENTION_BF16
                                                                         : ZT_CUDA_ATTENTION_F16));
        }
#endif
        return op->attention(be, b[4], b[0], b[1], b[2], b[3], c->batch, c->seq_len, c->heads,
                             c->head_dim, q_scale);
    }
    case OP_LAYERNORM:
        return op->layernorm(be, b[3], b[0], weight_of(b[1], w), weight_of(b[2], w), c->rows,
                             c->in_features, 1e-5f);
    case OP_GATHER:
        return op->gather_rows(be, b[2], b[0], weight_of(b[1], w), c->rows, c->table_rows,
                               c->in_features, 0, NULL);
    case OP_LOGPROBS:
        return op->target_logprobs(be, b[2], b[0], b[1], c->rows, c->vocab);
    case OP_PERTURB: {
        zt_direction plus_eps = {PERTURB_SEED, PERTURB_EPS};
        zt_perturbation p = {&plus_eps, 1, ZT_DIST_GAUSSIAN, 1.0f};
        void *dst = c->inplace ? b[0] : b[1];
        return op->perturb(be, dst, c->inplace ? w : zt_backend_stage_dtype(be, w),
                           weight_of(b[0], w), PERTURB_TENSOR_ID, 0, c->n_elems, &p);
    }
    case OP_UPDATE: {
        zt_direction grad = {PERTURB_SEED, UPDATE_COEFF};
        zt_update u;
        memset(&u, 0, sizeof u);
        u.grad.terms = &grad, u.grad.n_terms = 1, u.grad.dist = ZT_DIST_GAUSSIAN;
        u.grad.z_scale = 1.0f;
        u.rule = ZT_UPDATE_SGD, u.lr = UPDATE_LR;
        u.stochastic_rounding = w != ZT_F32, u.rounding_seed = ROUNDING_SEED;
        return op->update(be, b[0], w, PERTURB_TENSOR_ID, c->n_elems, NULL, &u);
    }
    case N_FAMILIES:
        break;
    }
    return zt_fail(ZT_ERR_INTERNAL, "bench_ops: unknown op family %d", (int)c->family);
}

/* ---- cache flush and the timer ---- */

/* Twice the last-level cache, so that nothing of the previous repeat survives an overwrite.
 * A virtual machine may report its host's whole L3 (256 MiB on a 2-core slice of an EPYC), so
 * the size is capped: 512 MiB at ~10 GB/s is already ~50 ms of flushing per repeat. */
static size_t cpu_flush_bytes(void) {
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t cache = l3 > 0 ? (size_t)l3 : (size_t)32 << 20;
    size_t cap = (size_t)256 << 20;
    return 2 * (cache < cap ? cache : cap);
}

static zt_status flush_caches(bench_context *ctx, int repeat) {
    if (!ctx->flush_buffer) return ZT_OK;
#if ZT_HAVE_CUDA
    if (ctx->is_cuda) {
        cudaError_t err =
            cudaMemsetAsync(ctx->flush_buffer, repeat & 0xff, ctx->flush_bytes, ctx->stream);
        /* Host timing starts on the host, so the flush must be over before it does. */
        if (err == cudaSuccess && !ctx->stream) err = cudaDeviceSynchronize();
        if (err != cudaSuccess)
            return zt_fail(ZT_ERR_CUDA, "bench_ops: L2 flush: %s", cudaGetErrorString(err));
        return ZT_OK;
    }
#endif
    memset(ctx->flush_buffer, repeat & 0xff, ctx->flush_bytes);
    return ZT_OK;
}

/* Milliseconds of one call of the case, the op's completion included. */
static zt_status timed_call(bench_context *ctx, const op_case *c, double *ms) {
#if ZT_HAVE_CUDA
    if (ctx->is_cuda && ctx->stream) {
        cudaError_t err = cudaEventRecord(ctx->start, ctx->stream);
        ZT_TRY(run_case(ctx, c));
        if (err == cudaSuccess) err = cudaEventRecord(ctx->stop, ctx->stream);
        if (err == cudaSuccess) err = cudaEventSynchronize(ctx->stop);
        float elapsed = 0.0f;
        if (err == cudaSuccess) err = cudaEventElapsedTime(&elapsed, ctx->start, ctx->stop);
        if (err != cudaSuccess)
            return zt_fail(ZT_ERR_CUDA, "bench_ops: event timing: %s", cudaGetErrorString(err));
        *ms = elapsed;
        return ZT_OK;
    }
#endif
    double t0 = bench_now_ms();
    ZT_TRY(run_case(ctx, c));
    ZT_TRY(ctx->be->ops->sync(ctx->be));
    *ms = bench_now_ms() - t0;
    return ZT_OK;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One warm-up call (it also grows the backend's scratch), then repeats until both --repeat and
 * the minimum op time are reached. Flushes make a repeat cost more wall time than op time, so
 * the loop also ends after 4x the minimum wall time once --repeat is met, or at MAX_SAMPLES. */
static zt_status time_case(bench_context *ctx, const op_case *c, case_timing *t) {
    static double samples[MAX_SAMPLES];
    double ignored;
    ZT_TRY(timed_call(ctx, c, &ignored));
    const options *o = ctx->o;
    double op_time = 0.0, wall_start = bench_now_ms();
    int n = 0;
    while (n < MAX_SAMPLES) {
        int enough_repeats = n >= o->repeat;
        if (enough_repeats &&
            (op_time >= o->min_time_ms || bench_now_ms() - wall_start >= 4.0 * o->min_time_ms))
            break;
        ZT_TRY(flush_caches(ctx, n));
        ZT_TRY(timed_call(ctx, c, &samples[n]));
        op_time += samples[n++];
    }
    qsort(samples, (size_t)n, sizeof samples[0], compare_doubles);
    t->repeats = n;
    t->min_ms = samples[0];
    t->median_ms = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
    t->mean_ms = op_time / n;
    return ZT_OK;
}

/* ---- peaks ---- */

/* STREAM-style copy between two arrays 4x the last-level cache (as capped by cpu_flush_bytes;
 * at least 128 MiB each), split over the backend's threads; best of 5. Counted as STREAM counts:
 * read + write = 2 x array bytes (the write-allocate read that a plain store also causes is not
 * counted). */
static double measure_cpu_copy_gb_per_s(int n_threads, size_t *array_bytes) {
    size_t bytes = 2 * cpu_flush_bytes(); /* 4x the (capped) last-level cache */
    if (bytes < ((size_t)128 << 20)) bytes = (size_t)128 << 20;
    *array_bytes = bytes;
    char *src = malloc(bytes), *dst = malloc(bytes);
    double best = 0.0;
    if (src && dst) {
        const long n_chunks = 64;
        const size_t chunk = bytes / (size_t)n_chunks;
        /* First touch in parallel: pages land near the threads that will copy them. */
        ZT_CPU_PARALLEL_FOR(n_threads)
        for (long i = 0; i < n_chunks; i++) {
            memset(src + (size_t)i * chunk, (int)i, chunk);
            memset(dst + (size_t)i * chunk, 0, chunk);
        }
        for (int run = 0; run < 5; run++) {
            double t0 = bench_now_ms();
            ZT_CPU_PARALLEL_FOR(n_threads)
            for (long i = 0; i < n_chunks; i++)
                memcpy(dst + (size_t)i * chunk, src + (size_t)i * chunk, chunk);
            double gbs =
                bench_gb_per_s(2.0 * (double)chunk * (double)n_chunks, bench_now_ms() - t0);
            if (gbs > best) best = gbs;
        }
    }
    free(src);
    free(dst);
    return best;
}

/* cblas_sgemm on square n x n matrices: the ceiling of the CPU backend's linear, which widens
 * f16/bf16 weights to f32 and calls sgemm. 2 n^3 FLOPs; best of 3 after one warm-up. */
static double measure_cpu_sgemm_gflop_per_s(int n) {
    size_t elems = (size_t)n * (size_t)n;
    float *a = malloc(elems * sizeof *a), *b = malloc(elems * sizeof *b);
    float *c = malloc(elems * sizeof *c);
    double best = 0.0;
    if (a && b && c) {
        uint64_t state = FILL_SEED;
        for (size_t i = 0; i < elems; i++)
            a[i] = uniform_pm1(&state), b[i] = uniform_pm1(&state);
        for (int run = 0; run < 4; run++) {
            double t0 = bench_now_ms();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                        n);
            double gflops = bench_gflop_per_s(2.0 * (double)n * n * n, bench_now_ms() - t0);
            if (run > 0 && gflops > best) best = gflops;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

static void resolve_peaks(bench_context *ctx, peaks *pk) {
    const options *o = ctx->o;
    memset(pk, 0, sizeof *pk);
    if (!ctx->is_cuda) {
        size_t array_bytes = 0;
        pk->gb_per_s = measure_cpu_copy_gb_per_s(zt_cpu(ctx->be)->n_threads, &array_bytes);
        snprintf(pk->bandwidth_source, sizeof pk->bandwidth_source, "measured: copy of 2 x %zu MiB",
                 array_bytes >> 20);
        const int gemm_n = 2048;
        pk->gflop_per_s = measure_cpu_sgemm_gflop_per_s(gemm_n);
        snprintf(pk->compute_source, sizeof pk->compute_source, "measured: sgemm %d^3, %d threads",
                 gemm_n, openblas_get_num_threads());
    } else {
        const bench_gpu_peaks *g = bench_find_gpu_by_device_name(ctx->device_name);
        if (g) {
            /* The roof of linear under the backend's GEMM precision (kernels/cuda/linear.cu):
             * tensor cores for half inputs (f16/bf16 weights; f32 weights stay FP32), TF32
             * tensor cores under --gemm tf32, the FP32 cores otherwise. The BF16 peak is shown
             * for reference whatever the mode. */
            const zt_gemm_precision gemm = ctx->be->gemm;
            const int half_inputs = gemm == ZT_GEMM_HALF && o->dtype != ZT_F32;
            pk->gb_per_s = g->hbm_gb_per_s;
            pk->gflop_per_s = 1e3 * (half_inputs            ? g->bf16_tflops
                                     : gemm == ZT_GEMM_TF32 ? g->tf32_tflops
                                                            : g->f32_tflops);
            pk->reference_bf16_tflops = g->bf16_tflops;
            snprintf(pk->bandwidth_source, sizeof pk->bandwidth_source, "table: %s", g->label);
            snprintf(pk->compute_source, sizeof pk->compute_source, "table: %s, %s", g->label,
                     half_inputs            ? "BF16/FP16 tensor"
                     : gemm == ZT_GEMM_TF32 ? "TF32"
                                            : "FP32");
        } else {
            snprintf(pk->bandwidth_source, sizeof pk->bandwidth_source,
                     "unknown device: give --peak-gbs");
            snprintf(pk->compute_source, sizeof pk->compute_source,
                     "unknown device: give --peak-tflops");
        }
    }
    if (o->peak_gbs > 0.0) {
        pk->gb_per_s = o->peak_gbs;
        snprintf(pk->bandwidth_source, sizeof pk->bandwidth_source, "--peak-gbs");
    }
    if (o->peak_tflops > 0.0) {
        pk->gflop_per_s = 1e3 * o->peak_tflops;
        snprintf(pk->compute_source, sizeof pk->compute_source, "--peak-tflops");
    }
}

/* ---- backend set-up ---- */

/* Returns ZT_ERR_UNAVAILABLE (message set) when the backend cannot run here. */
static zt_status open_backend(bench_context *ctx) {
    const options *o = ctx->o;
    ctx->is_cuda = strncmp(o->backend, "cuda", 4) == 0;
    ZT_TRY(zt_backend_open(o->backend, o->threads, o->gemm, &ctx->be));
    if (!ctx->is_cuda) {
        snprintf(ctx->device_name, sizeof ctx->device_name, "cpu, %d threads",
                 zt_cpu(ctx->be)->n_threads);
        if (o->flush) {
            ctx->flush_bytes = cpu_flush_bytes();
            ctx->flush_buffer = malloc(ctx->flush_bytes);
            if (!ctx->flush_buffer) return zt_fail(ZT_ERR_NOMEM, "bench_ops: flush buffer");
        }
        return ZT_OK;
    }
#if ZT_HAVE_CUDA
    ctx->device = o->backend[4] == ':' ? atoi(o->backend + 5) : 0;
    struct cudaDeviceProp prop;
    cudaError_t err = cudaSetDevice(ctx->device);
    if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, ctx->device);
    int l2_bytes = 0;
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, ctx->device);
    if (err == cudaSuccess) err = cudaEventCreate(&ctx->start);
    if (err == cudaSuccess) err = cudaEventCreate(&ctx->stop);
    if (err != cudaSuccess)
        return zt_fail(ZT_ERR_CUDA, "bench_ops: device %d: %s", ctx->device,
                       cudaGetErrorString(err));
    snprintf(ctx->device_name, sizeof ctx->device_name, "%s", prop.name);
    ctx->stream = zt_cuda_backend_stream ? (cudaStream_t)zt_cuda_backend_stream(ctx->be) : NULL;
    if (o->flush) {
        ctx->flush_bytes = 2 * (size_t)(l2_bytes > 0 ? l2_bytes : 50 << 20);
        err = cudaMalloc(&ctx->flush_buffer, ctx->flush_bytes);
        if (err != cudaSuccess) {
            ctx->flush_buffer = NULL;
            return zt_fail(ZT_ERR_CUDA, "bench_ops: L2 flush buffer of %zu bytes: %s",
                           ctx->flush_bytes, cudaGetErrorString(err));
        }
    }
    return ZT_OK;
#else
    return zt_fail(ZT_ERR_UNAVAILABLE, "internal: cuda backend created without ZT_HAVE_CUDA");
#endif
}

static void close_backend(bench_context *ctx) {
    if (ctx->flush_buffer) {
#if ZT_HAVE_CUDA
        if (ctx->is_cuda) (void)cudaFree(ctx->flush_buffer);
#endif
        if (!ctx->is_cuda) free(ctx->flush_buffer);
    }
#if ZT_HAVE_CUDA
    if (ctx->is_cuda && ctx->be) {
        (void)cudaEventDestroy(ctx->start);
        (void)cudaEventDestroy(ctx->stop);
    }
#endif
    zt_backend_destroy(ctx->be);
}

/* The 1-minute load average, -1 when unknown. */
static double cpu_load_average(void) {
    double load[1];
    return getloadavg(load, 1) == 1 ? load[0] : -1.0;
}

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

static const char *timer_name(const bench_context *ctx) {
    if (!ctx->is_cuda) return "host clock";
#if ZT_HAVE_CUDA
    if (ctx->stream) return "cudaEvents on the backend's stream";
#endif
    return "host clock around a stream sync (launch latency included)";
}

/* ---- output ---- */

static double percent(double value, double peak) {
    return peak > 0.0 ? 100.0 * value / peak : 0.0;
}

static void print_text_header(const bench_context *ctx, const peaks *pk) {
    const options *o = ctx->o;
    const bench_opt_size *z = o->shape;
    printf("bench_ops: backend %s (%s), shape opt-%s (h %d, f %d, heads %d, e %d, V %d), "
           "B %d x T %d = %d rows, weights %s, gemm %s\n",
           o->backend, ctx->device_name, z->name, z->hidden, z->ffn, z->heads, z->embed_proj,
           BENCH_OPT_VOCAB, o->batch, o->seq_len, o->batch * o->seq_len,
           bench_dtype_flag_name(o->dtype), zt_gemm_precision_name(ctx->be->gemm));
    printf("peaks: memory %.1f GB/s (%s); compute %.1f GFLOP/s (%s)\n", pk->gb_per_s,
           pk->bandwidth_source, pk->gflop_per_s, pk->compute_source);
    if (pk->reference_bf16_tflops > 0.0)
        printf("       (dense BF16 tensor-core peak %.0f TFLOP/s, for reference)\n",
               pk->reference_bf16_tflops);
    printf("timing: %s; median of >= %d repeats and >= %.2f s per case, %s\n", timer_name(ctx),
           o->repeat, 1e-3 * o->min_time_ms,
           o->flush ? "caches flushed before each repeat" : "warm caches");
    /* The CPU backend's OpenMP threads and OpenBLAS's own threads share the cores: how OpenMP
     * waits between regions changes the linear timings several-fold, so it is on record. */
    if (!ctx->is_cuda) {
        printf("blas:    %s\n", zt_cpu_blas_kernels());
        printf("threads: OpenBLAS %d, OMP_WAIT_POLICY=%s, OMP_NUM_THREADS=%s\n",
               openblas_get_num_threads(), env_or("OMP_WAIT_POLICY", "(unset)"),
               env_or("OMP_NUM_THREADS", "(unset)"));
        /* On a shared machine other processes steal the cores an OpenMP region waits for. */
        double load = cpu_load_average();
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        printf("load average %.2f on %ld CPUs%s\n", load, cpus,
               load > 0.5 * (double)cpus ? ": other processes compete, timings are contended" : "");
    }
    printf("\n");
    printf("%-10s %-12s %-36s %10s %9s %6s %10s %6s %5s\n", "op", "case", "shape", "ms", "GB/s",
           "%bw", "GFLOP/s", "%math", "reps");
}

static void print_text_row(const case_result *r, const peaks *pk) {
    const op_case *c = &r->c;
    if (r->skipped[0]) {
        printf("%-10s %-12s %-36s skipped: %s\n", FAMILY_NAMES[c->family], c->label, c->shape_text,
               r->skipped);
        return;
    }
    double ms = r->t.median_ms;
    double gbs = bench_gb_per_s(c->bytes, ms), gflops = bench_gflop_per_s(c->flops, ms);
    printf("%-10s %-12s %-36s %10.4f %9.2f ", FAMILY_NAMES[c->family], c->label, c->shape_text, ms,
           gbs);
    if (pk->gb_per_s > 0.0)
        printf("%5.1f%% ", percent(gbs, pk->gb_per_s));
    else
        printf("%6s ", "-");
    if (c->flops > 0.0) {
        printf("%10.2f ", gflops);
        if (pk->gflop_per_s > 0.0)
            printf("%5.1f%% ", percent(gflops, pk->gflop_per_s));
        else
            printf("%6s ", "-");
    } else {
        printf("%10s %6s ", "-", "-");
    }
    printf("%5d\n", r->t.repeats);
}

static void print_json(const bench_context *ctx, const peaks *pk, const case_result *results,
                       int n) {
    const options *o = ctx->o;
    printf("{\"backend\":\"%s\",\"device\":\"%s\",\"timer\":\"%s\",\"shape\":\"opt-%s\","
           "\"dtype\":\"%s\",\"gemm\":\"%s\",\"batch\":%d,\"seq_len\":%d,\"flush\":%s,",
           o->backend, ctx->device_name, timer_name(ctx), o->shape->name,
           bench_dtype_flag_name(o->dtype), zt_gemm_precision_name(ctx->be->gemm), o->batch,
           o->seq_len, o->flush ? "true" : "false");
    if (!ctx->is_cuda)
        printf("\"openblas_core\":\"%s\",\"openblas_threads\":%d,\"omp_wait_policy\":\"%s\","
               "\"load_average\":%.2f,",
               zt_cpu_blas_core(), openblas_get_num_threads(), env_or("OMP_WAIT_POLICY", ""),
               cpu_load_average());
    printf("\"peak_gb_per_s\":%.3f,\"peak_gflop_per_s\":%.3f,\"peak_bandwidth_source\":\"%s\","
           "\"peak_compute_source\":\"%s\",\"results\":[",
           pk->gb_per_s, pk->gflop_per_s, pk->bandwidth_source, pk->compute_source);
    for (int i = 0; i < n; i++) {
        const case_result *r = &results[i];
        const op_case *c = &r->c;
        printf("%s{\"op\":\"%s\",\"case\":\"%s\",\"shape\":\"%s\",", i ? "," : "",
               FAMILY_NAMES[c->family], c->label, c->shape_text);
        if (r->skipped[0]) {
            /* The message may hold quotes; keep the JSON valid by dropping them. */
            printf("\"skipped\":\"");
            for (const char *ch = r->skipped; *ch; ch++)
                if (*ch != '"' && *ch != '\\') putchar(*ch);
            printf("\"}");
            continue;
        }
        double ms = r->t.median_ms;
        double gbs = bench_gb_per_s(c->bytes, ms), gflops = bench_gflop_per_s(c->flops, ms);
        printf("\"ms\":%.6f,\"ms_min\":%.6f,\"ms_mean\":%.6f,\"repeats\":%d,\"bytes\":%.0f,"
               "\"flops\":%.0f,\"gb_per_s\":%.3f,\"gflop_per_s\":%.3f,\"pct_bandwidth\":%.2f,"
               "\"pct_compute\":%.2f}",
               ms, r->t.min_ms, r->t.mean_ms, r->t.repeats, c->bytes, c->flops, gbs, gflops,
               percent(gbs, pk->gb_per_s), c->flops > 0.0 ? percent(gflops, pk->gflop_per_s) : 0.0);
    }
    printf("]}\n");
}

/* ---- options ---- */

static void usage(FILE *out) {
    fprintf(
        out,
        "usage: bench_ops [options]\n"
        "  --backend B        cpu, cuda or cuda:N (default cpu; cuda exits 77 without a device)\n"
        "  --op LIST          all, or a comma list of linear, attention, layernorm, gather,\n"
        "                     logprobs, perturb, update (default all)\n"
        "  --shape S          OPT preset: 125m, 350m, 1.3b, 2.7b, 6.7b, 13b, 30b, 66b\n"
        "                     (\"opt-\" optional; default 125m)\n"
        "  --dtype D          weight storage: f32, f16 or bf16 (default bf16)\n"
        "  --gemm P           linear's GEMM precision: " ZT_GEMM_HELP "\n"
        "  --batch N          sequences (default 16; --quick 4)\n"
        "  --seq-len N        tokens per sequence (default 256; --quick 128)\n"
        "  --repeat N         at least N timed repeats per case (default 3; --quick 2)\n"
        "  --min-time S       and at least S seconds of op time (default 0.5; --quick 0.1)\n"
        "  --threads N        CPU threads, 0 = all (default 0)\n"
        "  --no-flush         keep caches warm between repeats\n"
        "  --peak-gbs X       memory peak for the percentages, GB/s\n"
        "  --peak-tflops X    compute peak for the percentages, TFLOP/s\n"
        "  --quick            small batch, short timing (for CI)\n"
        "  --json             one JSON document instead of the table\n"
        "  --help             this text\n");
}

static int parse_ops(const char *text, options *o) {
    memset(o->families, 0, sizeof o->families);
    if (strcmp(text, "all") == 0) {
        for (int f = 0; f < N_FAMILIES; f++)
            o->families[f] = 1;
        return 1;
    }
    char list[256];
    snprintf(list, sizeof list, "%s", text);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int f = 0; f < N_FAMILIES; f++)
            if (strcmp(tok, FAMILY_NAMES[f]) == 0) o->families[f] = found = 1;
        if (!found) {
            fprintf(stderr, "%s: --op: unknown op '%s' (see --help)\n", PROG, tok);
            return 0;
        }
    }
    return 1;
}

static int parse_backend(const char *text) {
    if (strcmp(text, "cpu") == 0 || strcmp(text, "cuda") == 0) return 1;
    if (strncmp(text, "cuda:", 5) == 0 && text[5]) {
        char *end = NULL;
        long device = strtol(text + 5, &end, 10);
        if (!*end && device >= 0 && device < 1024) return 1;
    }
    fprintf(stderr, "%s: --backend expects cpu, cuda or cuda:N, got '%s'\n", PROG, text);
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (--help), 2 on a usage error. */
static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu";
    o->gemm = "auto";
    parse_ops("all", o);
    o->shape = bench_find_opt_size("125m");
    o->dtype = ZT_BF16;
    o->flush = 1;
    int quick = 0, batch = 0, seq_len = 0, repeat = 0;
    double min_time_s = 0.0;
    for (int i = 1; i < argc; i++) {
        char *flag = NULL, *value = NULL;
        if (!bench_split_option(argv[i], &flag, &value)) {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", PROG, argv[i]);
            return 2;
        }
        if (strcmp(flag, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(flag, "--quick") == 0)
            quick = 1;
        else if (strcmp(flag, "--json") == 0)
            o->json = 1;
        else if (strcmp(flag, "--no-flush") == 0)
            o->flush = 0;
        else {
            value = bench_take_value(PROG, argc, argv, &i, flag, value);
            if (!value) return 2;
            int ok;
            if (strcmp(flag, "--backend") == 0) {
                ok = parse_backend(value);
                o->backend = value;
            } else if (strcmp(flag, "--gemm") == 0) {
                zt_gemm_precision unused;
                ok = strcmp(value, "auto") == 0 ||
                     zt_gemm_precision_parse(value, "--gemm", &unused) == ZT_OK;
                if (!ok) fprintf(stderr, "%s: %s\n", PROG, zt_last_error());
                o->gemm = value;
            } else if (strcmp(flag, "--op") == 0) {
                ok = parse_ops(value, o);
            } else if (strcmp(flag, "--shape") == 0) {
                o->shape = bench_find_opt_size(value);
                ok = o->shape != NULL;
                if (!ok) fprintf(stderr, "%s: --shape: unknown OPT size '%s'\n", PROG, value);
            } else if (strcmp(flag, "--dtype") == 0) {
                ok = bench_parse_dtype(PROG, value, &o->dtype);
            } else if (strcmp(flag, "--batch") == 0) {
                ok = bench_parse_int(PROG, flag, value, 1, &batch);
            } else if (strcmp(flag, "--seq-len") == 0) {
                ok = bench_parse_int(PROG, flag, value, 1, &seq_len);
                if (ok && seq_len > BENCH_OPT_POSITIONS) {
                    fprintf(stderr, "%s: --seq-len %d exceeds OPT's %d positions\n", PROG, seq_len,
                            BENCH_OPT_POSITIONS);
                    ok = 0;
                }
            } else if (strcmp(flag, "--repeat") == 0) {
                ok = bench_parse_int(PROG, flag, value, 1, &repeat);
            } else if (strcmp(flag, "--min-time") == 0) {
                ok = bench_parse_double(PROG, flag, value, 0.0, &min_time_s);
            } else if (strcmp(flag, "--threads") == 0) {
                ok = bench_parse_int(PROG, flag, value, 0, &o->threads);
            } else if (strcmp(flag, "--peak-gbs") == 0) {
                ok = bench_parse_double(PROG, flag, value, 1e-9, &o->peak_gbs);
            } else if (strcmp(flag, "--peak-tflops") == 0) {
                ok = bench_parse_double(PROG, flag, value, 1e-9, &o->peak_tflops);
            } else {
                fprintf(stderr, "%s: unknown option '%s' (see --help)\n", PROG, flag);
                ok = 0;
            }
            if (!ok) return 2;
        }
    }
    o->batch = batch ? batch : quick ? 4 : 16;
    o->seq_len = seq_len ? seq_len : quick ? 128 : 256;
    o->repeat = repeat ? repeat : quick ? 2 : 3;
    o->min_time_ms = 1e3 * (min_time_s > 0.0 ? min_time_s : quick ? 0.1 : 0.5);
    return 0;
}

/* ---- main ---- */

int main(int argc, char **argv) {
    options o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed) return parsed == 1 ? 0 : 2;

    bench_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.o = &o;
    zt_status s = open_backend(&ctx);
    if (s != ZT_OK) {
        int unavailable = s == ZT_ERR_UNAVAILABLE;
        if (unavailable)
            printf("%s: skipped: %s\n", PROG, zt_last_error());
        else
            report(s);
        close_backend(&ctx);
        return unavailable ? SKIP_EXIT : 1;
    }

    peaks pk;
    resolve_peaks(&ctx, &pk);
    if (!o.json) print_text_header(&ctx, &pk);

    static case_result results[N_FAMILIES * 4];
    int n_results = 0, failed = 0;
    for (int f = 0; f < N_FAMILIES && !failed; f++) {
        if (!o.families[f]) continue;
        op_case cases[MAX_CASES];
        int n_cases = family_cases((op_family)f, &o, ctx.be, cases);
        for (int i = 0; i < n_cases && !failed; i++) {
            case_result *r = &results[n_results++];
            memset(r, 0, sizeof *r);
            r->c = cases[i];
            s = setup_case(&ctx, &r->c);
            if (s == ZT_OK) s = time_case(&ctx, &r->c, &r->t);
            free_case(&ctx, &r->c);
            if (s == ZT_ERR_UNAVAILABLE) {
                /* An op this backend does not implement yet: recorded, not fatal. */
                snprintf(r->skipped, sizeof r->skipped, "%s", zt_last_error());
                s = ZT_OK;
            }
            failed = report(s) != ZT_OK;
            if (!failed && !o.json) {
                print_text_row(r, &pk);
                fflush(stdout);
            }
        }
    }
    if (!failed && o.json) print_json(&ctx, &pk, results, n_results);
    close_backend(&ctx);
    return failed ? 1 : 0;
}
