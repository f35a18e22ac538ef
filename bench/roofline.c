/* roofline: what one zeroth-order step should cost on a GPU, from arithmetic alone.
 *
 * For every OPT size (docs/spec.md §1.1) it counts the bytes a step moves and the FLOPs it
 * computes, phase by phase, and predicts each phase's time as the largest of
 *     bytes / HBM bandwidth,   FLOPs / arithmetic peak,   RNG instructions / issue rate,
 * the step's time as their sum (phases run one after another), and the memory the step needs
 * against the GPU's. Nothing runs on a device; the numbers are a floor that real kernels
 * approach, not a measurement.
 *
 * Two schemes are compared, each at two levels of implementation:
 *   zotune   shadow mode (docs/design.md §2): every tensor is staged, perturbed, into a per-layer
 *            scratch once per variant, the GEMMs read the staged copy, the master weights are
 *            written once by the update. "design": staged copies in the storage dtype and
 *            half-precision tensor-core GEMMs. "today": what the code does under --gemm half
 *            (the CUDA default): the design plus the passes that round f32 activations to the
 *            storage dtype where no layer norm or GEMM epilogue writes them rounded
 *            (models/opt/opt_layers.c). "f32": --gemm f32, f32
 *            staged copies and f32 GEMMs on the FP32 cores (the CPU's numerics).
 *   MeZO     as published (princeton-nlp/MeZO, large_models/trainer.py): in place, four
 *            sweeps over the weights that regenerate z (+eps, -2eps, +eps, update) and K = 2
 *            plain forwards through HF's eager OPT. "fused": each sweep one read + one write,
 *            the floor any MeZO implementation has. "eager": the sweeps as PyTorch runs the
 *            published expressions, one kernel per operator (byte counts at mezo_sweep_bytes).
 *
 * Assumptions (each also stated where its formula is):
 *   - Activations are f32 in zotune (backend.h; --activations storage shows what half-precision
 *     activations would save), the storage dtype in MeZO (--load_float16).
 *   - Every activation read or write goes to HBM (no reuse through L2 between ops): an upper
 *     bound on activation traffic, tight once N*h*4 bytes exceed the 50 MB L2.
 *   - zotune sends only target rows through the LM head, R = B * --targets-per-seq (MeZO's
 *     classification tasks score one label token per sequence), 1024 rows per head GEMM (the
 *     CUDA backend's head_chunk_rows), each re-reading the vocabulary table; MeZO's HF forward
 *     computes logits for all N = B*T rows.
 *   - zotune's attention is causal and flash-style (T(T+1)/2 query-key pairs, no T x T matrix);
 *     HF's eager attention computes the full T x T scores and writes them to memory.
 *   - RNG: 59.3 lane instructions per z element and 27.2 more per stochastic-rounding word,
 *     counted in the SASS of the built kernels by bench/sass_count.py (sm_90, nvcc 13.0, one
 *     term, Gaussian z, zotune's own Box-Muller transform): 59.3 is perturb f16 -> f16, the
 *     staging under --gemm half (Philox ~11 per element, the transform ~35, loads,
 *     conversions, the add and the loop ~13); 27.2 is what update f16 with SR (SGD) issues
 *     beyond that (the SR words' Philox, the rounding, the update's own arithmetic), so that
 *     z + SR word is the update's measured 86.5. --z rademacher charges 13.3 per z element
 *     instead (perturb f16 -> f16 Rademacher, a warp sharing each Philox call over 4096
 *     elements: Philox ~0.6 per element, the rest shuffles, sign bits, loads and stores);
 *     MeZO's baseline stays Gaussian. A GPU issues
 *     one instruction per lane per clock, i.e. FP32 peak / 2 (an FMA is 2 FLOPs). Instruction
 *     counts, not timings: --rng-tinst 0 drops the roof.
 *   - Optimizer state (momentum / AdaMM) is f32 and read + written by the update. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "backend.h"
#include "bench_common.h"
#include "cuda/cuda_backend.h"
#include "opt/opt.h"

static const char *const PROG = "roofline";

enum {
    MAX_PHASES = 8,
    POSITION_OFFSET = 2, /* OPT's learned positions have 2048 + 2 rows */
    BUFFER_ALIGN = 64,   /* the workspace aligns every buffer (opt_forward.c) */
};

/* Lane instructions per element (see the assumptions above), measured by bench/sass_count.py:
 * perturb f16 -> f16 Gaussian, and update f16 SR SGD Gaussian minus that. */
static const double RNG_INSTR_PER_Z = 59.3;
static const double RNG_INSTR_PER_SR_WORD = 27.2;
/* --z rademacher: perturb f16 -> f16 Rademacher, a warp sharing each Philox call over 4096
 * elements (kernels/cuda/rademacher.cuh); bench/results/sass-count-2026-12-07-rademacher.txt. */
static const double RNG_INSTR_PER_Z_RADEMACHER = 13.3;

/* ---- inputs ---- */

/* An OPT configuration as doubles: every count below is a product of these. */
typedef struct model_dims {
    const char *name;
    double vocab, hidden, layers, heads, ffn, embed_proj, positions;
    int pre_layer_norm;
    long long spec_params; /* 0 when not a released size */
} model_dims;

typedef struct workload {
    double batch, seq_len, tokens, target_rows; /* N = B*T, R */
    double variants;                            /* K */
    double storage_bytes;                       /* s: 2 for f16/bf16 */
    int half_precision;                         /* stochastic rounding in the update */
    double state_copies;                        /* f32 optimizer-state tensors per weight */
    double activation_bytes;                    /* zotune design: 4 (backend.h) or s */
    double head_chunk_rows;  /* target rows per LM-head GEMM: the backend's head_chunk_rows */
    double head_vocab_chunk; /* head-table rows staged at a time: the backend's; 0 = all (CUDA) */
} workload;

typedef struct machine {
    const char *label;
    double bytes_per_s;
    double tensor_flops_per_s; /* dense f16/bf16 tensor cores */
    double f32_flops_per_s;
    double lane_instr_per_s; /* 0: no RNG roof */
    double memory_bytes;
    double rng_instr_per_z; /* zotune's z: Gaussian or Rademacher (--z) */
} machine;

/* ---- outputs ---- */

typedef struct phase {
    const char *name;
    double bytes, weight_bytes, flops, rng_instr; /* weight_bytes: the part that is weights */
    double mem_ms, math_ms, rng_ms, ms;           /* ms = the largest of the three */
} phase;

typedef struct memory_need {
    double weights, activations, staging, state, total;
} memory_need;

typedef struct estimate {
    const char *scheme;
    phase phases[MAX_PHASES];
    int n_phases;
    double bytes, weight_bytes, flops, ms, ms_without_rng;
    memory_need memory;
} estimate;

/* ---- parameter counts (docs/spec.md §1.1) ---- */

/* P = V e + (2048 + 2) h + [e != h] 2 h e + [pre-LN] 2 h + L (4h^2 + 2hf + 9h + f): embeddings,
 * positions, project_in/out, the final layer norm, and per layer q/k/v/out (4h^2 + 4h), fc1
 * (hf + f), fc2 (fh + h) and two layer norms (4h). opt-125m: 38.6 M + 1.57 M + 1536 + 85.1 M. */
static double parameter_count(const model_dims *d) {
    double h = d->hidden, e = d->embed_proj, f = d->ffn;
    double p = d->vocab * e + (d->positions + POSITION_OFFSET) * h;
    if (e != h) p += 2.0 * h * e;
    if (d->pre_layer_norm) p += 2.0 * h;
    return p + d->layers * (4.0 * h * h + 2.0 * h * f + 9.0 * h + f);
}

static model_dims dims_of(const bench_opt_size *z) {
    model_dims d = {.name = z->name,
                    .vocab = BENCH_OPT_VOCAB,
                    .hidden = z->hidden,
                    .layers = z->layers,
                    .heads = z->heads,
                    .ffn = z->ffn,
                    .embed_proj = z->embed_proj,
                    .positions = BENCH_OPT_POSITIONS,
                    .pre_layer_norm = z->pre_layer_norm,
                    .spec_params = z->spec_params};
    return d;
}

/* ---- phases ---- */

static void add_phase(estimate *est, const machine *m, const char *name, double bytes,
                      double weight_bytes, double flops, double flops_per_s, double rng_instr) {
    phase *p = &est->phases[est->n_phases++];
    p->name = name;
    p->bytes = bytes, p->weight_bytes = weight_bytes, p->flops = flops, p->rng_instr = rng_instr;
    p->mem_ms = 1e3 * bytes / m->bytes_per_s;
    p->math_ms = flops > 0.0 ? 1e3 * flops / flops_per_s : 0.0;
    p->rng_ms = m->lane_instr_per_s > 0.0 ? 1e3 * rng_instr / m->lane_instr_per_s : 0.0;
    double bw_or_math = p->mem_ms > p->math_ms ? p->mem_ms : p->math_ms;
    p->ms = bw_or_math > p->rng_ms ? bw_or_math : p->rng_ms;
    est->bytes += bytes;
    est->weight_bytes += weight_bytes;
    est->flops += flops;
    est->ms += p->ms;
    est->ms_without_rng += bw_or_math;
}

/* The forward's traffic and work outside the LM head, per variant, for one activation size
 * `act` (bytes per element) and weight size `wt` as the GEMMs read it. Unit A = N h act, the
 * bytes of one (N, h) activation. Per layer:
 *   GEMMs        q, k, v, out: read A, write A each (8A); fc1: read A, write (f/h)A; fc2: read
 *                (f/h)A, write A: (10 + 2f/h) A, plus the weights and biases read once;
 *   attention    q, k, v read, out written: 4A (+ the int32 mask);
 *   norms+adds   two layer norms (read + write: 4A), two residual adds (read 2, write 1: 6A).
 * 125m, N 4096, f32: A = 12.6 MB, 32 A = 403 MB per layer per variant. */
typedef struct forward_traffic {
    double gemm_bytes, gemm_weight_bytes, gemm_flops;
    double attention_bytes;
    double norm_bytes, norm_weight_bytes, norm_flops;
} forward_traffic;

static forward_traffic forward_body(const model_dims *d, const workload *w, double act, double wt) {
    double h = d->hidden, f = d->ffn, e = d->embed_proj, L = d->layers;
    double n = w->tokens, r = w->target_rows;
    double unit = n * h * act;
    forward_traffic t;
    double layer_weights = 4.0 * h * h + 2.0 * h * f, layer_biases = 5.0 * h + f;
    t.gemm_weight_bytes = L * (layer_weights + layer_biases) * wt;
    t.gemm_bytes = t.gemm_weight_bytes + L * (10.0 + 2.0 * f / h) * unit;
    /* 2 N (4h^2 + 2hf) per layer. 125m, N 4096: 57.98 GFLOP per layer, 695.8 per variant. */
    t.gemm_flops = L * 2.0 * n * layer_weights;
    if (e != h) {
        /* project_in on N rows (e -> h), project_out on the R head rows (h -> e). */
        t.gemm_weight_bytes += 2.0 * h * e * wt;
        t.gemm_bytes += 2.0 * h * e * wt + n * (e + h) * act + r * (h + e) * act;
        t.gemm_flops += 2.0 * n * h * e + 2.0 * r * h * e;
    }
    t.attention_bytes = L * (4.0 * unit + 4.0 * n);
    /* Embedding: N table rows read (e), written (f32 act); positions: N rows read, x read and
     * written; the final layer norm and the row gather on R rows. */
    double embedding_weights = n * e * wt + n * h * wt;
    double embedding = embedding_weights + n * e * act + 2.0 * unit + 8.0 * n;
    double final_norm = d->pre_layer_norm ? 2.0 * h * wt : 0.0;
    double head_rows = 2.0 * r * h * act + (d->pre_layer_norm ? 2.0 * r * h * act : 0.0);
    t.norm_weight_bytes = L * 4.0 * h * wt + embedding_weights + final_norm;
    t.norm_bytes =
        L * (4.0 * unit + 4.0 * h * wt + 6.0 * unit) + embedding + final_norm + head_rows;
    /* ~8 FLOPs per element per layer norm, 1 per add. */
    t.norm_flops = L * (2.0 * 8.0 + 2.0) * n * h;
    return t;
}

/* Causal attention on tensor or FP32 cores: query i sees i+1 keys, QK^T and AV 2D each per
 * (query, key, head): 2 * 2D * H * B * T(T+1)/2 = 2 B h T(T+1) per layer.
 * 125m, B 16, T 256: 1.617 GFLOP per layer, 19.40 per variant. */
static double causal_attention_flops(const model_dims *d, const workload *w) {
    return d->layers * 2.0 * w->batch * d->hidden * w->seq_len * (w->seq_len + 1.0);
}

/* ---- zotune, shadow mode ---- */

/* Staged copies in `stage_bytes` per element (2 design, 4 f32), activations in `act` bytes
 * (4: backend.h), GEMMs at `gemm_flops_per_s`; `narrow`: each linear first rounds its input
 * activations to the storage dtype in a pass of its own (--gemm half). */
static void zotune_step(const model_dims *d, const workload *w, const machine *m,
                        double stage_bytes, double act, double gemm_flops_per_s, int narrow,
                        const char *scheme, estimate *est) {
    memset(est, 0, sizeof *est);
    est->scheme = scheme;
    double k = w->variants, s = w->storage_bytes;
    double params = parameter_count(d), table = d->vocab * d->embed_proj;
    double positions = (d->positions + POSITION_OFFSET) * d->hidden;
    double n = w->tokens, r = w->target_rows;

    /* Staging: a layer's tensors (every tensor but the two tables) once for all K variants: read
     * in s, z drawn once, K copies written in the staging dtype (models/sweep.c). The tied
     * head's token table likewise, once per head group of zt_head_group_limit variants
     * (models/model.h: 2 for 125m, 1 from 350m on, where the table is under an eighth). The
     * embedding and the positions are read by perturbed gathers of the batch's N rows (their bytes
     * are the embedding's, in norms+adds), whose z costs RNG work for N (e + h) elements. 13b bf16
     * design: (12.85 G - 0.27 G - 10.5 M) x (2 + 2 x 2) + 0.27 G x (2 + 2 x 2) B = 77.0 GB. */
    double layered = params - positions - table;
    const double group_limit = zt_head_group_limit((size_t)table, (size_t)params);
    double head_groups = ceil(k / group_limit);
    double staged_bytes =
        layered * (s + k * stage_bytes) + table * (head_groups * s + k * stage_bytes);
    double drawn = layered + head_groups * table + k * n * (d->embed_proj + d->hidden);
    add_phase(est, m, "staging", staged_bytes, staged_bytes, 0.0, gemm_flops_per_s,
              drawn * m->rng_instr_per_z);

    forward_traffic t = forward_body(d, w, act, stage_bytes);
    add_phase(est, m, "GEMMs", k * t.gemm_bytes, k * t.gemm_weight_bytes, k * t.gemm_flops,
              gemm_flops_per_s, 0.0);
    add_phase(est, m, "attention", k * t.attention_bytes, 0.0, k * causal_attention_flops(d, w),
              gemm_flops_per_s, 0.0);
    add_phase(est, m, "norms+adds", k * t.norm_bytes, k * t.norm_weight_bytes, k * t.norm_flops,
              gemm_flops_per_s, 0.0);
    if (narrow) {
        /* Rounding passes of their own (docs/design.md §4.3, "Half activations"): per layer,
         * out_proj rounds its input (N h); a pre-LN layer's two layer norms write q/k/v's and
         * fc1's inputs rounded at once, a post-LN layer rounds them in two passes (2 N h); fc1
         * writes fc2's input in half from its epilogue (no pass). project_in N e, project_out
         * and the head R h / R e round in their linears. Read in act, written in s. The GEMMs
         * and norms above are still charged act bytes for what they read or write in s: an
         * upper bound. 125m bf16 (pre-LN), N 4096: 12 x 768 x 4096 x 6 B = 226 MB per variant
         * (was 2.04 GB when every linear rounded its own input). */
        double h = d->hidden, e = d->embed_proj;
        double per_layer = d->pre_layer_norm ? h : 3.0 * h;
        double inputs = d->layers * n * per_layer + r * (h + e) + (e != h ? n * e + r * h : 0.0);
        add_phase(est, m, "act->half", k * inputs * (act + s), 0.0, 0.0, gemm_flops_per_s, 0.0);
    }

    /* LM head on R target rows, head_chunk_rows per GEMM, each GEMM re-reading the staged (V, e)
     * table; the (R, V) f32 logits are written, then read by target_logprobs. 2 R e V FLOPs.
     * 125m, R 16: 1 chunk, 77.2 MB of table (bf16 staged) + 6.4 MB of logits, 1.24 GFLOP;
     * R 4096 (every token): 4 chunks of 1024, 309 MB of table + 1.65 GB of logits. */
    double chunks = ceil(r / w->head_chunk_rows);
    double head_weights = chunks * table * stage_bytes;
    double head_bytes = head_weights + r * d->embed_proj * act + 2.0 * r * d->vocab * sizeof(float);
    add_phase(est, m, "LM head", k * head_bytes, k * head_weights,
              k * 2.0 * r * d->embed_proj * d->vocab, gemm_flops_per_s, 0.0);

    /* Update, deferred to the next step's staging (docs/design.md §2.5): a layered tensor's theta
     * is read once by that pass (charged to staging above) and written back (s); the two tables,
     * read through gathers, take it alone (2s); each f32 state copy read + written (8); z
     * regenerated once, stochastic-rounding bits for half-precision stores.
     * 13b bf16: 12.57 G x 2 + 0.28 G x 4 = 26.3 GB (51.4 GB as a pass of its own). */
    double update_bytes =
        layered * s + (table + positions) * 2.0 * s + params * 8.0 * w->state_copies;
    double update_rng =
        params * (m->rng_instr_per_z + (w->half_precision ? RNG_INSTR_PER_SR_WORD : 0));
    add_phase(est, m, "update", update_bytes, update_bytes, 0.0, gemm_flops_per_s, update_rng);

    /* Memory, as models/workspace.c plans it (plan_layout), activations in `act` bytes:
     *   activations  K residual streams (N h) + K x the layer temporaries: h, q, k, v, attn
     *                (5 N h) + ffn (N f) + [e != h] tok (N e); + G x ([e != h] hid_proj (N e)
     *                + hid (N h)), G = min(K, zt_head_group_limit) + logits (min(N,
     *                head_chunk_rows) C), C = min(V, head_vocab_chunk) or V without head
     *                blocks + log-probs (K N) + five int32 (N) arrays + with head blocks the
     *                running log-sum-exp (G N 3 doubles);
     *   staging      the largest tensor a layer stages (max of 2050 h, h f, h e, and k, v,
     *                q's 3 h^2 side by side) + the largest vector (max of f, h, 3 h), then one
     *                region that holds in turn K - 1
     *                more of both and min(K, zt_head_group_limit) copies of C rows of the
     *                head table (C e), in the staging dtype;
     *   state        f32 copies. */
    double h = d->hidden, f = d->ffn, e = d->embed_proj;
    double head_chunk = n < w->head_chunk_rows ? n : w->head_chunk_rows;
    const int blocks = w->head_vocab_chunk > 0.0;
    const double head_cols =
        blocks && w->head_vocab_chunk < d->vocab ? w->head_vocab_chunk : d->vocab;
    memory_need *mem = &est->memory;
    mem->weights = params * s;
    const double narrow_rows = e != h ? n * e : 0.0;
    const double head_group = k < group_limit ? k : group_limit;
    mem->activations = act * (k * n * h + k * (5.0 * n * h + n * f + narrow_rows) +
                              head_group * (narrow_rows + n * h)) +
                       sizeof(float) * (head_chunk * head_cols + k * n) +
                       5.0 * n * sizeof(int32_t) +
                       (blocks ? head_group * n * 3.0 * sizeof(double) : 0.0);
    double largest_layered = positions;
    if (h * f > largest_layered) largest_layered = h * f;
    if (h * e > largest_layered) largest_layered = h * e;
    double vector = f > h ? f : h;
    /* k, v and q side by side, each 256-byte aligned (models/workspace.c): only an FFN
     * narrower than 3h needs more than its own tensors */
    const double kvq = 3.0 * ceil(h * h * stage_bytes / 256.0) * 256.0 / stage_bytes;
    const double kvq_bias = 3.0 * ceil(h * stage_bytes / 256.0) * 256.0 / stage_bytes;
    if (kvq > largest_layered) largest_layered = kvq;
    if (kvq_bias > vector) vector = kvq_bias;
    const double layer_variants = k > 1.0 ? (k - 1.0) * (largest_layered + vector) : 0.0;
    const double head_tables = head_group * head_cols * e;
    mem->staging =
        (largest_layered + vector + (layer_variants > head_tables ? layer_variants : head_tables)) *
        stage_bytes;
    mem->state = params * 4.0 * w->state_copies;
    mem->total = mem->weights + mem->activations + mem->staging + mem->state;
}

/* ---- MeZO as published ---- */

/* Bytes per weight element of one sweep, in units of s. Fused: read theta, write theta (2).
 * Eager PyTorch, the published expressions one operator at a time:
 *   perturb  z = normal (write 1); t1 = scale * z (read 1, write 1); t2 = t1 * eps (1, 1);
 *            theta + t2 (read 2, write 1): 8;
 *   update   z = normal (1); g * z (2); wd * theta (2); sum (3); lr * sum (2); theta - (3): 13. */
static void mezo_sweep_bytes(int eager, double *perturb, double *update) {
    *perturb = eager ? 8.0 : 2.0;
    *update = eager ? 13.0 : 2.0;
}

static void mezo_step(const model_dims *d, const workload *w, const machine *m, int eager,
                      double gemm_flops_per_s, const char *scheme, estimate *est) {
    memset(est, 0, sizeof *est);
    est->scheme = scheme;
    double k = w->variants, s = w->storage_bytes;
    double params = parameter_count(d), table = d->vocab * d->embed_proj;
    double n = w->tokens, t = w->seq_len, b = w->batch;
    double perturb_units, update_units;
    mezo_sweep_bytes(eager, &perturb_units, &update_units);

    /* K + 1 in-place moves (+eps, -2eps, +eps for K = 2), each regenerating z for every weight.
     * 13b fp16 fused: 3 x 2 x 25.7 GB = 154.2 GB. */
    double perturb_bytes = (k + 1.0) * params * perturb_units * s;
    add_phase(est, m, "perturb", perturb_bytes, perturb_bytes, 0.0, gemm_flops_per_s,
              (k + 1.0) * params * RNG_INSTR_PER_Z);

    /* The forwards read the masters directly, activations in the storage dtype. */
    forward_traffic f = forward_body(d, w, s, s);
    add_phase(est, m, "GEMMs", k * f.gemm_bytes, k * f.gemm_weight_bytes, k * f.gemm_flops,
              gemm_flops_per_s, 0.0);
    /* Eager attention: the (B, H, T, T) scores written, read and written by the softmax, read
     * by AV: 4 s per score, and the full square computed: 4 B h T^2 FLOPs per layer. */
    double scores = b * d->heads * t * t;
    add_phase(est, m, "attention", k * (f.attention_bytes + d->layers * 4.0 * s * scores), 0.0,
              k * d->layers * 4.0 * b * d->hidden * t * t, gemm_flops_per_s, 0.0);
    add_phase(est, m, "norms+adds", k * f.norm_bytes, k * f.norm_weight_bytes, k * f.norm_flops,
              gemm_flops_per_s, 0.0);
    /* HF's head on all N rows: the table read once, N rows in, (N, V) logits written.
     * 13b, N 4096: 0.51 + 0.04 + 0.41 GB, 2.1 TFLOP per forward. */
    double head_bytes = table * s + n * d->embed_proj * s + n * d->vocab * s;
    add_phase(est, m, "LM head", k * head_bytes, k * table * s,
              k * 2.0 * n * d->embed_proj * d->vocab, gemm_flops_per_s, 0.0);
    add_phase(est, m, "update", params * update_units * s, params * update_units * s, 0.0,
              gemm_flops_per_s, params * RNG_INSTR_PER_Z);

    /* Memory: the weights, one z of the largest tensor at a time (the paper's "0.86GB for
     * OPT-66B", the embedding), and eager inference activations, roughly: the (N, V) logits,
     * four (N, h) tensors, and the larger of the attention scores (fp16 + the fp32 softmax)
     * and fc1's output with its ReLU (2 N f). */
    double h = d->hidden, ffn = d->ffn;
    double largest = table > h * ffn ? table : h * ffn;
    double attention_peak = scores * (s + 4.0), ffn_peak = 2.0 * n * ffn * s;
    memory_need *mem = &est->memory;
    mem->weights = params * s;
    mem->staging = largest * s;
    mem->activations = n * d->vocab * s + 4.0 * n * h * s +
                       (attention_peak > ffn_peak ? attention_peak : ffn_peak);
    mem->state = 0.0;
    mem->total = mem->weights + mem->staging + mem->activations;
}

/* ---- today's step at the rates the kernels reached ---- */

/* What bench_ops measured on one shape (`bench_ops --backend cuda --json`), as the rate each
 * phase of the step runs at. The phases then cost their bytes or FLOPs at these rates instead of
 * the peaks: the step the kernels of that build should take, to compare with a timed `zotune
 * train` (tools/gpu-check.sh prints both). A phase without a measured kernel keeps its roofline
 * time. */
typedef struct measured_rates {
    char shape[32]; /* "opt-125m" */
    char source[192];
    double staging_bytes_per_s;   /* perturb, shadow */
    double gemm_flops_per_s;      /* linear qkv x 4 (q, k, v, out), fc1, fc2, by time */
    double attention_flops_per_s; /* attention, causal */
    double norm_bytes_per_s;      /* layernorm: also the residual adds and the rounding pass */
    double head_flops_per_s;      /* linear lm_head */
    double logprob_bytes_per_s;   /* logprobs, chunk */
    double update_bytes_per_s;    /* update, sgd */
} measured_rates;

enum { MAX_MEASURED = BENCH_OPT_N_SIZES };

static const cJSON *result_case(const cJSON *results, const char *op, const char *label) {
    const cJSON *r;
    cJSON_ArrayForEach(r, results) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(r, "op");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "case");
        if (cJSON_IsString(o) && cJSON_IsString(c) && strcmp(o->valuestring, op) == 0 &&
            strcmp(c->valuestring, label) == 0)
            return r;
    }
    return NULL;
}

static double number_of(const cJSON *item, const char *key) {
    const cJSON *v = item ? cJSON_GetObjectItemCaseSensitive(item, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

/* `key` ("bytes" or "flops") per second of one bench_ops case; 0 when it is missing. */
static double case_rate(const cJSON *results, const char *op, const char *label, const char *key) {
    const cJSON *r = result_case(results, op, label);
    double amount = number_of(r, key), ms = number_of(r, "ms");
    return ms > 0.0 ? amount / (1e-3 * ms) : 0.0;
}

/* One bench_ops document into rates; 0 and a message on stderr when it is not one. */
static int rates_of(const cJSON *doc, const char *path, measured_rates *out) {
    memset(out, 0, sizeof *out);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(doc, "shape");
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(doc, "results");
    if (!cJSON_IsString(shape) || !cJSON_IsArray(results)) {
        fprintf(stderr, "%s: --measured %s: not a bench_ops --json document (no shape/results)\n",
                PROG, path);
        return 0;
    }
    snprintf(out->shape, sizeof out->shape, "%s", shape->valuestring);
    const cJSON *device = cJSON_GetObjectItemCaseSensitive(doc, "device");
    snprintf(out->source, sizeof out->source, "%s (%s)", path,
             cJSON_IsString(device) ? device->valuestring : "unknown device");
    out->staging_bytes_per_s = case_rate(results, "perturb", "shadow", "bytes");
    const char *gemms[3] = {"qkv", "fc1", "fc2"};
    /* under --gemm half the FFN's GEMMs run on half activations, as the forward runs them */
    const char *half_io[3] = {NULL, "fc1-half-out", "fc2-half-in"};
    const double count[3] = {4.0, 1.0, 1.0};
    double flops = 0.0, seconds = 0.0;
    for (int i = 0; i < 3; i++) {
        const cJSON *r = half_io[i] ? result_case(results, "linear", half_io[i]) : NULL;
        if (!r) r = result_case(results, "linear", gemms[i]);
        double times = count[i];
        /* k, v and q as the forward runs them, one batched call; out_proj the fourth qkv */
        const cJSON *kvq = i == 0 ? result_case(results, "linear", "kvq-batched") : NULL;
        if (kvq) {
            flops += number_of(kvq, "flops");
            seconds += 1e-3 * number_of(kvq, "ms");
            times = 1.0;
        }
        flops += times * number_of(r, "flops");
        seconds += times * 1e-3 * number_of(r, "ms");
    }
    out->gemm_flops_per_s = seconds > 0.0 ? flops / seconds : 0.0;
    out->attention_flops_per_s = case_rate(results, "attention", "causal", "flops");
    out->norm_bytes_per_s = case_rate(results, "layernorm", "rows", "bytes");
    out->head_flops_per_s = case_rate(results, "linear", "lm_head", "flops");
    out->logprob_bytes_per_s = case_rate(results, "logprobs", "chunk", "bytes");
    out->update_bytes_per_s = case_rate(results, "update", "sgd", "bytes");
    return 1;
}

/* The whole of a file, NUL-terminated; NULL (message on stderr) when it cannot be read. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: --measured %s: %s\n", PROG, path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t size = 0, used = 0, got;
    do {
        if (used + 4097 > size) {
            size = size ? 2 * size : 65536;
            char *grown = realloc(text, size);
            if (!grown) {
                free(text);
                fclose(f);
                fprintf(stderr, "%s: --measured %s: out of memory\n", PROG, path);
                return NULL;
            }
            text = grown;
        }
        got = fread(text + used, 1, 4096, f);
        used += got;
    } while (got > 0);
    fclose(f);
    text[used] = '\0';
    return text;
}

/* Reads a bench_ops --json file, or a tools/gpu-check.sh result (whose "bench_ops" holds one such
 * document per size), appending to rates. Returns 1, or 0 after a message on stderr. */
static int load_measured(const char *path, measured_rates *rates, int *n_rates) {
    char *text = read_text(path);
    if (!text) return 0;
    /* bench_ops may print notes before its document: parse from the first line opening one */
    const char *start = text[0] == '{' ? text : strstr(text, "\n{");
    cJSON *doc = start ? cJSON_Parse(start[0] == '{' ? start : start + 1) : NULL;
    free(text);
    if (!doc) {
        fprintf(stderr, "%s: --measured %s: no JSON document in it\n", PROG, path);
        return 0;
    }
    int ok = 1;
    const cJSON *per_size = cJSON_GetObjectItemCaseSensitive(doc, "bench_ops");
    if (cJSON_IsObject(per_size)) {
        const cJSON *entry;
        cJSON_ArrayForEach(entry, per_size) {
            if (!cJSON_IsObject(entry)) continue; /* a size whose bench failed */
            if (*n_rates == MAX_MEASURED || !rates_of(entry, path, &rates[*n_rates])) {
                ok = 0;
                break;
            }
            ++*n_rates;
        }
    } else if (*n_rates < MAX_MEASURED && rates_of(doc, path, &rates[*n_rates])) {
        ++*n_rates;
    } else {
        ok = 0;
    }
    cJSON_Delete(doc);
    return ok;
}

/* Today's scheme with each phase at its measured rate. */
static void measured_step(const estimate *today, const model_dims *d, const workload *w,
                          const measured_rates *r, estimate *out) {
    *out = *today;
    out->scheme = "zotune today at measured kernel rates";
    out->ms = out->ms_without_rng = 0.0;
    for (int i = 0; i < out->n_phases; i++) {
        phase *p = &out->phases[i];
        double ms = p->ms;
        if (strcmp(p->name, "staging") == 0 && r->staging_bytes_per_s > 0)
            ms = 1e3 * p->bytes / r->staging_bytes_per_s;
        else if (strcmp(p->name, "GEMMs") == 0 && r->gemm_flops_per_s > 0)
            ms = 1e3 * p->flops / r->gemm_flops_per_s;
        else if (strcmp(p->name, "attention") == 0 && r->attention_flops_per_s > 0)
            ms = 1e3 * p->flops / r->attention_flops_per_s;
        else if ((strcmp(p->name, "norms+adds") == 0 || strcmp(p->name, "act->half") == 0) &&
                 r->norm_bytes_per_s > 0)
            ms = 1e3 * p->bytes / r->norm_bytes_per_s;
        else if (strcmp(p->name, "LM head") == 0 && r->head_flops_per_s > 0 &&
                 r->logprob_bytes_per_s > 0) {
            /* the GEMM at its rate, then target_logprobs reading the K x R x V f32 logits */
            double logits = w->variants * w->target_rows * d->vocab * sizeof(float);
            ms = 1e3 * (p->flops / r->head_flops_per_s + logits / r->logprob_bytes_per_s);
        } else if (strcmp(p->name, "update") == 0 && r->update_bytes_per_s > 0)
            ms = 1e3 * p->bytes / r->update_bytes_per_s;
        p->mem_ms = p->math_ms = p->rng_ms = 0.0;
        p->ms = ms;
        out->ms += ms;
        out->ms_without_rng += ms;
    }
}

/* ---- one size ---- */

enum { SCHEME_DESIGN, SCHEME_TODAY, SCHEME_F32, SCHEME_MEZO_FUSED, SCHEME_MEZO_EAGER, N_SCHEMES };

typedef struct size_result {
    model_dims dims;
    double params;
    estimate schemes[N_SCHEMES];
    estimate measured; /* valid when rates != NULL */
    const measured_rates *rates;
} size_result;

static void estimate_size(const model_dims *d, const workload *w, const machine *m,
                          const measured_rates *rates, size_result *out) {
    out->dims = *d;
    out->params = parameter_count(d);
    out->rates = rates;
    /* Half-precision storage computes on tensor cores; f32 storage on FP32 cores (no TF32). */
    double design_flops = w->half_precision ? m->tensor_flops_per_s : m->f32_flops_per_s;
    zotune_step(d, w, m, w->storage_bytes, w->activation_bytes, design_flops, 0,
                "zotune shadow (design)", &out->schemes[SCHEME_DESIGN]);
    zotune_step(d, w, m, w->storage_bytes, sizeof(float), design_flops, w->half_precision,
                "zotune shadow (today: --gemm half)", &out->schemes[SCHEME_TODAY]);
    zotune_step(d, w, m, sizeof(float), sizeof(float), m->f32_flops_per_s, 0,
                "zotune shadow (--gemm f32)", &out->schemes[SCHEME_F32]);
    mezo_step(d, w, m, 0, design_flops, "MeZO in place (fused sweeps)",
              &out->schemes[SCHEME_MEZO_FUSED]);
    mezo_step(d, w, m, 1, design_flops, "MeZO in place (eager PyTorch)",
              &out->schemes[SCHEME_MEZO_EAGER]);
    if (rates) measured_step(&out->schemes[SCHEME_TODAY], d, w, rates, &out->measured);
}

/* ---- output ---- */

static void print_estimate(const estimate *e, const machine *m) {
    printf("  %s\n", e->scheme);
    printf("    %-11s %10s %10s %8s %9s %9s %9s %9s\n", "phase", "GB", "GFLOP", "FLOP/B", "mem ms",
           "math ms", "rng ms", "time ms");
    for (int i = 0; i < e->n_phases; i++) {
        const phase *p = &e->phases[i];
        printf("    %-11s %10.2f %10.1f %8.1f %9.3f %9.3f %9.3f %9.3f\n", p->name,
               bench_gb(p->bytes), 1e-9 * p->flops, p->bytes > 0 ? p->flops / p->bytes : 0.0,
               p->mem_ms, p->math_ms, p->rng_ms, p->ms);
    }
    printf("    %-11s %10.2f %10.1f %8.1f %39.3f  (%.3f without the RNG roof)\n", "step",
           bench_gb(e->bytes), 1e-9 * e->flops, e->flops / e->bytes, e->ms, e->ms_without_rng);
    const memory_need *mem = &e->memory;
    printf("    memory %.2f GB = weights %.2f + activations %.2f + staging/z %.2f + state %.2f"
           "  -> %s %.0f GB\n",
           bench_gb(mem->total), bench_gb(mem->weights), bench_gb(mem->activations),
           bench_gb(mem->staging), bench_gb(mem->state),
           mem->total <= m->memory_bytes ? "fits" : "EXCEEDS", bench_gb(m->memory_bytes));
}

static void print_size(const size_result *r, const workload *w, const machine *m) {
    const model_dims *d = &r->dims;
    printf("opt-%s: %.0f parameters (L %.0f, h %.0f, f %.0f, e %.0f, H %.0f), N = %.0f x %.0f = "
           "%.0f tokens, R = %.0f target rows, K = %.0f\n",
           d->name, r->params, d->layers, d->hidden, d->ffn, d->embed_proj, d->heads, w->batch,
           w->seq_len, w->tokens, w->target_rows, w->variants);
    for (int i = 0; i < N_SCHEMES; i++) {
        if (i == SCHEME_DESIGN || i == SCHEME_MEZO_FUSED) {
            print_estimate(&r->schemes[i], m);
        } else {
            const estimate *e = &r->schemes[i];
            printf("  %s: %.2f GB, %.1f GFLOP, %.3f ms (%.3f without the RNG roof), memory "
                   "%.2f GB\n",
                   e->scheme, bench_gb(e->bytes), 1e-9 * e->flops, e->ms, e->ms_without_rng,
                   bench_gb(e->memory.total));
        }
    }
    if (r->rates) {
        const estimate *e = &r->measured;
        printf("  today at the kernel rates bench_ops measured (%s): %.3f ms =", r->rates->source,
               e->ms);
        for (int i = 0; i < e->n_phases; i++)
            printf("%s %s %.3f", i ? " +" : "", e->phases[i].name, e->phases[i].ms);
        printf("\n");
    }
    const estimate *ours = &r->schemes[SCHEME_DESIGN], *mezo = &r->schemes[SCHEME_MEZO_FUSED];
    printf("  weight traffic: design %.2f GB, MeZO fused %.2f GB (%.2fx); all traffic: %.2f vs "
           "%.2f GB (%.2fx)\n",
           bench_gb(ours->weight_bytes), bench_gb(mezo->weight_bytes),
           ours->weight_bytes / mezo->weight_bytes, bench_gb(ours->bytes), bench_gb(mezo->bytes),
           ours->bytes / mezo->bytes);
    printf("  speedup of the design: %.2fx over MeZO fused, %.2fx over MeZO eager\n\n",
           mezo->ms / ours->ms, r->schemes[SCHEME_MEZO_EAGER].ms / ours->ms);
}

static void print_summary(const size_result *results, int n, const machine *m) {
    printf("summary on %s (%.0f GB/s, %.0f TFLOP/s tensor, %.1f TFLOP/s FP32, %s), ms per step:\n",
           m->label, 1e-9 * m->bytes_per_s, 1e-12 * m->tensor_flops_per_s,
           1e-12 * m->f32_flops_per_s, m->lane_instr_per_s > 0 ? "RNG roof on" : "RNG roof off");
    printf("%-6s %15s %9s %9s %9s %9s %9s %9s %8s %8s %10s %10s\n", "size", "params", "design",
           "today", "f32", "MeZO-fus", "MeZO-eag", "no-RNG", "GB ours", "GB MeZO", "mem ours",
           "mem MeZO");
    for (int i = 0; i < n; i++) {
        const size_result *r = &results[i];
        const estimate *e = r->schemes;
        printf("%-6s %15.0f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %8.1f %8.1f %7.1f %s %7.1f %s\n",
               r->dims.name, r->params, e[SCHEME_DESIGN].ms, e[SCHEME_TODAY].ms, e[SCHEME_F32].ms,
               e[SCHEME_MEZO_FUSED].ms, e[SCHEME_MEZO_EAGER].ms, e[SCHEME_DESIGN].ms_without_rng,
               bench_gb(e[SCHEME_DESIGN].bytes), bench_gb(e[SCHEME_MEZO_FUSED].bytes),
               bench_gb(e[SCHEME_DESIGN].memory.total),
               e[SCHEME_DESIGN].memory.total <= m->memory_bytes ? "ok" : "XX",
               bench_gb(e[SCHEME_MEZO_FUSED].memory.total),
               e[SCHEME_MEZO_FUSED].memory.total <= m->memory_bytes ? "ok" : "XX");
        if (r->rates)
            printf("%-6s %15s today at measured kernel rates: %.2f ms (%.1fx the design)\n", "", "",
                   r->measured.ms, r->measured.ms / e[SCHEME_DESIGN].ms);
    }
    printf("(design: staged copies in the storage dtype + tensor-core GEMMs; today: the design + "
           "the activation rounding passes\n (--gemm half, the cuda default); f32: f32 staged "
           "copies + "
           "f32 GEMMs (--gemm f32);\n no-RNG: design without the RNG roof; mem: ok = fits in %.0f "
           "GB, XX = does not)\n",
           bench_gb(m->memory_bytes));
}

static void print_json_estimate(const estimate *e) {
    printf("{\"scheme\":\"%s\",\"bytes\":%.0f,\"weight_bytes\":%.0f,\"flops\":%.0f,\"ms\":%.6f,"
           "\"ms_without_rng\":%.6f,\"memory\":{\"weights\":%.0f,\"activations\":%.0f,"
           "\"staging\":%.0f,\"state\":%.0f,\"total\":%.0f},\"phases\":[",
           e->scheme, e->bytes, e->weight_bytes, e->flops, e->ms, e->ms_without_rng,
           e->memory.weights, e->memory.activations, e->memory.staging, e->memory.state,
           e->memory.total);
    for (int i = 0; i < e->n_phases; i++) {
        const phase *p = &e->phases[i];
        printf("%s{\"name\":\"%s\",\"bytes\":%.0f,\"weight_bytes\":%.0f,\"flops\":%.0f,"
               "\"rng_instr\":%.0f,\"mem_ms\":%.6f,\"math_ms\":%.6f,\"rng_ms\":%.6f,\"ms\":%.6f}",
               i ? "," : "", p->name, p->bytes, p->weight_bytes, p->flops, p->rng_instr, p->mem_ms,
               p->math_ms, p->rng_ms, p->ms);
    }
    printf("]}");
}

static void print_json(const size_result *results, int n, const workload *w, const machine *m,
                       zt_dtype dtype) {
    printf("{\"machine\":\"%s\",\"bytes_per_s\":%.0f,\"tensor_flops_per_s\":%.0f,"
           "\"f32_flops_per_s\":%.0f,\"lane_instr_per_s\":%.0f,\"memory_bytes\":%.0f,",
           m->label, m->bytes_per_s, m->tensor_flops_per_s, m->f32_flops_per_s, m->lane_instr_per_s,
           m->memory_bytes);
    printf("\"batch\":%.0f,\"seq_len\":%.0f,\"target_rows\":%.0f,\"variants\":%.0f,"
           "\"dtype\":\"%s\",\"state_copies\":%.0f,\"sizes\":[",
           w->batch, w->seq_len, w->target_rows, w->variants, bench_dtype_flag_name(dtype),
           w->state_copies);
    for (int i = 0; i < n; i++) {
        printf("%s{\"size\":\"opt-%s\",\"params\":%.0f,\"schemes\":[", i ? "," : "",
               results[i].dims.name, results[i].params);
        for (int k = 0; k < N_SCHEMES; k++) {
            if (k) printf(",");
            print_json_estimate(&results[i].schemes[k]);
        }
        printf("]");
        if (results[i].rates) {
            printf(",\"measured\":");
            print_json_estimate(&results[i].measured);
        }
        printf("}");
    }
    printf("]}\n");
}

/* ---- self-check ---- */

static int check_count = 0, check_failures = 0;

static void check_equal(const char *what, double got, double want) {
    check_count++;
    if (got == want) return;
    check_failures++;
    fprintf(stderr, "%s: self-check: %s = %.0f, expected %.0f\n", PROG, what, got, want);
}

static void check_near(const char *what, double got, double want, double tolerance) {
    check_count++;
    if (fabs(got - want) <= tolerance) return;
    check_failures++;
    fprintf(stderr, "%s: self-check: %s = %.0f, expected %.0f (+- %.0f)\n", PROG, what, got, want,
            tolerance);
}

static zt_opt_config config_of(const model_dims *d) {
    zt_opt_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = (int)d->vocab, c.hidden_size = (int)d->hidden;
    c.num_hidden_layers = (int)d->layers, c.num_attention_heads = (int)d->heads;
    c.ffn_dim = (int)d->ffn, c.max_position_embeddings = (int)d->positions;
    c.word_embed_proj_dim = (int)d->embed_proj, c.do_layer_norm_before = d->pre_layer_norm;
    c.enable_bias = 1, c.layer_norm_elementwise_affine = 1;
    c.bos_token_id = 2, c.eos_token_id = 2, c.pad_token_id = 1;
    return c;
}

/* The workspace plan of a real (small) model on the CPU backend against this file's formula, at
 * the CPU's head chunk: equal up to the 64-byte alignment of each of the workspace's buffers. */
static void check_memory_plan(const model_dims *d, const workload *w) {
    zt_opt_config cfg = config_of(d);
    zt_backend *be = NULL;
    zt_model *model = NULL;
    zt_status s = zt_backend_create("cpu", 1, &be);
    if (s == ZT_OK) s = zt_model_create_random(&zt_opt_arch, &cfg, ZT_F32, 1, be, &model);
    if (s != ZT_OK) {
        check_count++, check_failures++;
        fprintf(stderr, "%s: self-check: building a %s model: %s\n", PROG, d->name,
                zt_last_error());
    } else {
        zt_workspace_shape shape = {(int)w->batch, (int)w->seq_len, (int)w->variants, 1, 0};
        zt_memory_plan plan;
        zt_model_plan_memory(model, &shape, &plan);
        workload on_cpu = *w;
        on_cpu.head_chunk_rows = be->head_chunk_rows;
        on_cpu.head_vocab_chunk = be->head_vocab_chunk;
        machine any = {"any", 1e12, 1e15, 1e14, 0.0, 80e9, RNG_INSTR_PER_Z};
        estimate e;
        zotune_step(d, &on_cpu, &any, sizeof(float), sizeof(float), any.f32_flops_per_s, 0, "check",
                    &e);
        char what[96];
        snprintf(what, sizeof what, "%s workspace activations", d->name);
        check_near(what, e.memory.activations, (double)plan.activation_bytes, 20.0 * BUFFER_ALIGN);
        snprintf(what, sizeof what, "%s workspace staging", d->name);
        check_near(what, e.memory.staging, (double)plan.staging_bytes, 2.0 * BUFFER_ALIGN);
        snprintf(what, sizeof what, "%s weights (f32)", d->name);
        check_near(what, e.memory.weights, (double)plan.weights_bytes,
                   (double)model->n_tensors * BUFFER_ALIGN);
    }
    zt_model_free(model);
    zt_backend_destroy(be);
}

static int self_check(void) {
    /* 1. Parameter counts: this file's formula, the library's, and the published table
     * (docs/spec.md §1.1). */
    const bench_opt_size *sizes = bench_opt_sizes();
    for (int i = 0; i < BENCH_OPT_N_SIZES; i++) {
        model_dims d = dims_of(&sizes[i]);
        zt_opt_config cfg = config_of(&d);
        char what[64];
        snprintf(what, sizeof what, "opt-%s parameters (formula)", d.name);
        check_equal(what, parameter_count(&d), (double)d.spec_params);
        snprintf(what, sizeof what, "opt-%s parameters (zt_opt_parameter_count)", d.name);
        check_equal(what, (double)zt_opt_parameter_count(&cfg), (double)d.spec_params);
    }
    /* opt-125m by hand (docs/spec.md §1.1): 50272*768 + 2050*768 + 2*768 + 12*(4*768^2 + 2*768*3072
     * + 9*768 + 3072) = 38,608,896 + 1,574,400 + 1,536 + 85,054,464. */
    model_dims opt125m = dims_of(bench_find_opt_size("125m"));
    check_equal("opt-125m parameters (by hand)", parameter_count(&opt125m), 125239296.0);

    /* 2. opt-125m, B 16, T 256, R 16, K 2, bf16: FLOPs and staging bytes computed by hand.
     *   GEMMs      2 * 4096 * 12 * (4*768^2 + 2*768*3072) = 695,784,701,952 per variant
     *   attention  12 * 2 * 16 * 768 * 256 * 257          =  19,402,850,304 per variant
     *   LM head    2 * 16 * 768 * 50272                   =   1,235,484,672 per variant
     *   staging    2 * (125,239,296 + 38,608,896) * (2 + 2) = 1,310,785,536 bytes
     *   update     85,056,000 layered * 2 (written; read by staging)
     *              + (38,608,896 + 1,574,400) tables * 2 * 2 =  330,845,184 bytes */
    workload w = {.batch = 16,
                  .seq_len = 256,
                  .tokens = 4096,
                  .target_rows = 16,
                  .variants = 2,
                  .storage_bytes = 2,
                  .half_precision = 1,
                  .activation_bytes = 4,
                  .head_chunk_rows = ZT_CUDA_HEAD_CHUNK_ROWS};
    machine any = {"any", 1e12, 1e15, 1e14, 0.0, 80e9, RNG_INSTR_PER_Z};
    estimate e;
    zotune_step(&opt125m, &w, &any, 2.0, 4.0, any.tensor_flops_per_s, 0, "check", &e);
    /* layers once for both variants, the token table too (one head group of 2):
     * (125239296 - 2050 x 768 - 50272 x 768) x (2 + 2 x 2) + 50272 x 768 x (2 + 2 x 2) */
    check_equal("opt-125m staging bytes", e.phases[0].bytes, 741989376.0);
    check_equal("opt-125m GEMM FLOPs", e.phases[1].flops, 2.0 * 695784701952.0);
    check_equal("opt-125m attention FLOPs", e.phases[2].flops, 2.0 * 19402850304.0);
    check_equal("opt-125m LM head FLOPs", e.phases[4].flops, 2.0 * 1235484672.0);
    check_equal("opt-125m update bytes", e.phases[5].bytes, 330845184.0);
    /* Every token a target (R 4096): 4 head chunks of 1024, each reading the bf16 table.
     *   2 x 4 x 50272 x 768 x 2 = 617,742,336 bytes */
    workload all_tokens = w;
    all_tokens.target_rows = 4096;
    zotune_step(&opt125m, &all_tokens, &any, 2.0, 4.0, any.tensor_flops_per_s, 0, "check", &e);
    check_equal("opt-125m LM head table bytes (R 4096)", e.phases[4].weight_bytes, 617742336.0);
    /* --gemm half's rounding passes, pre-LN: K x (L N h + R (h + e)) x (4 + 2) B. */
    zotune_step(&opt125m, &w, &any, 2.0, 4.0, any.tensor_flops_per_s, 1, "check", &e);
    check_equal("opt-125m act->half bytes", e.phases[4].bytes,
                2.0 * (12.0 * 4096 * 768 + 16.0 * (768 + 768)) * 6.0);

    /* 3. The memory formula against the workspace the forward really allocates, on small
     *    models of both layer-norm layouts (pre-LN with e == h; post-LN with e != h). */
    model_dims pre_ln = {"tiny-pre", 1000, 64, 2, 4, 256, 64, 128, 1, 0};
    model_dims post_ln = {"tiny-post", 1000, 64, 2, 4, 256, 32, 128, 0, 0};
    workload small = {.batch = 3,
                      .seq_len = 100,
                      .tokens = 300,
                      .target_rows = 3,
                      .variants = 2,
                      .storage_bytes = 4,
                      .activation_bytes = 4,
                      .head_chunk_rows = ZT_CUDA_HEAD_CHUNK_ROWS};
    check_memory_plan(&pre_ln, &small);
    check_memory_plan(&post_ln, &small);
    /* an FFN of 2h: k, v and q side by side outgrow fc1 in the staging slots */
    model_dims narrow_ffn = {"tiny-narrow-ffn", 1000, 64, 2, 4, 128, 64, 128, 1, 0};
    check_memory_plan(&narrow_ffn, &small);

    /* 4. --measured: a bench_ops document (notes before it, as bench_ops prints them) read back
     *    into rates, and each phase costed at its rate: staging 989,319,168 B at 1e12 B/s =
     *    0.989 ms; GEMMs (4 qkv + fc1 + fc2, here all at 2e14 FLOP/s) 1.3916e12 FLOP = 6.958 ms;
     *    attention 3.8806e10 FLOP at 1e13 = 3.881 ms. */
    char path[] = "/tmp/roofline-self-check-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        check_count++, check_failures++;
        fprintf(stderr, "%s: self-check: cannot write %s\n", PROG, path);
    } else {
        fprintf(f, "load average 0.1\n{\"shape\":\"opt-125m\",\"device\":\"test\",\"results\":["
                   "{\"op\":\"perturb\",\"case\":\"shadow\",\"ms\":2,\"bytes\":2e9},"
                   "{\"op\":\"linear\",\"case\":\"qkv\",\"ms\":1,\"flops\":2e11},"
                   "{\"op\":\"linear\",\"case\":\"fc1\",\"ms\":4,\"flops\":8e11},"
                   "{\"op\":\"linear\",\"case\":\"fc2\",\"ms\":4,\"flops\":8e11},"
                   "{\"op\":\"attention\",\"case\":\"causal\",\"ms\":1,\"flops\":1e10}]}\n");
        fclose(f);
        measured_rates rates[MAX_MEASURED];
        int n_rates = 0;
        int loaded = load_measured(path, rates, &n_rates);
        remove(path);
        check_equal("--measured documents read", loaded ? n_rates : -1, 1);
        if (loaded && n_rates == 1) {
            zotune_step(&opt125m, &w, &any, 2.0, 4.0, any.tensor_flops_per_s, 0, "check", &e);
            estimate at_rates;
            measured_step(&e, &opt125m, &w, &rates[0], &at_rates);
            check_near("staging at 1e12 B/s (us)", 1e3 * at_rates.phases[0].ms, 741.989376, 1e-3);
            check_near("GEMMs at 2e14 FLOP/s (us)", 1e3 * at_rates.phases[1].ms,
                       1e6 * 2.0 * 695784701952.0 / 2e14, 1e-3);
            check_near("attention at 1e13 FLOP/s (us)", 1e3 * at_rates.phases[2].ms,
                       1e6 * 2.0 * 19402850304.0 / 1e13, 1e-3);
            /* no update case in the document: the update keeps its roofline time */
            check_near("update without a measured rate (us)", 1e3 * at_rates.phases[5].ms,
                       1e3 * e.phases[5].ms, 1e-6);
        }
    }

    printf("%s: self-check: %d of %d checks passed\n", PROG, check_count - check_failures,
           check_count);
    return check_failures ? 1 : 0;
}

/* ---- options ---- */

typedef struct options {
    int sizes[BENCH_OPT_N_SIZES]; /* 1 = estimate */
    int batch, seq_len, targets_per_seq, variants;
    zt_dtype dtype;
    double state_copies;
    int storage_activations; /* --activations storage */
    const bench_gpu_peaks *gpu;
    double peak_gbs, peak_tflops, rng_tinst, memory_gb; /* < 0: from the GPU table */
    int quick, json, self_check;
    int rademacher;                        /* --z rademacher */
    measured_rates measured[MAX_MEASURED]; /* --measured, one per shape */
    int n_measured;
} options;

static void usage(FILE *out) {
    fprintf(out,
            "usage: roofline [options]\n"
            "  --size LIST          OPT sizes, comma-separated, or all (default all: 125m 350m\n"
            "                       1.3b 2.7b 6.7b 13b 30b 66b)\n"
            "  --batch B            sequences per batch (default 16, MeZO's)\n"
            "  --seq-len T          tokens per sequence (default 256)\n"
            "  --targets-per-seq R  rows per sequence through zotune's LM head (default 1)\n"
            "  --variants K         loss evaluations per step (default 2: MeZO)\n"
            "  --dtype D            weight storage: bf16, f16 or f32 (default bf16)\n"
            "  --optimizer O        mezo (no state), momentum (1 f32 copy), adamm (3)\n"
            "  --activations A      zotune design activations: f32 (default, backend.h) or\n"
            "                       storage (the weights' dtype)\n"
            "  --gpu G              h100 (default), h100-pcie, h200, a100, a100-40gb\n"
            "  --peak-gbs X         override the HBM bandwidth, GB/s\n"
            "  --peak-tflops X      override the tensor-core peak, TFLOP/s\n"
            "  --z Z                zotune's z: gauss (default) or rademacher (its RNG\n"
            "                       roof; MeZO's baseline stays Gaussian)\n"
            "  --rng-tinst X        lane instructions per second for the RNG roof, in T/s\n"
            "                       (default FP32 peak / 2; 0 turns the RNG roof off)\n"
            "  --memory-gb X        GPU memory to fit in (default the GPU's: 80, h200 141)\n"
            "  --measured FILE      bench_ops --json output (or a tools/gpu-check.sh result):\n"
            "                       also cost today's step at the rates its kernels reached\n"
            "                       on that shape (repeatable)\n"
            "  --quick              the summary table only\n"
            "  --json               one JSON document\n"
            "  --self-check         check the formulas against docs/spec.md and the library; exit "
            "1 on\n"
            "                       a mismatch\n"
            "  --help               this text\n");
}

static int parse_size_list(const char *text, options *o) {
    memset(o->sizes, 0, sizeof o->sizes);
    if (strcmp(text, "all") == 0) {
        for (int i = 0; i < BENCH_OPT_N_SIZES; i++)
            o->sizes[i] = 1;
        return 1;
    }
    char list[256];
    snprintf(list, sizeof list, "%s", text);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        const bench_opt_size *z = bench_find_opt_size(tok);
        if (!z) {
            fprintf(stderr, "%s: --size: unknown OPT size '%s'\n", PROG, tok);
            return 0;
        }
        o->sizes[z - bench_opt_sizes()] = 1;
    }
    return 1;
}

static int parse_value(options *o, const char *flag, const char *value) {
    if (strcmp(flag, "--size") == 0) return parse_size_list(value, o);
    if (strcmp(flag, "--batch") == 0) return bench_parse_int(PROG, flag, value, 1, &o->batch);
    if (strcmp(flag, "--seq-len") == 0) {
        if (!bench_parse_int(PROG, flag, value, 1, &o->seq_len)) return 0;
        if (o->seq_len <= BENCH_OPT_POSITIONS) return 1;
        fprintf(stderr, "%s: --seq-len %d exceeds OPT's %d positions\n", PROG, o->seq_len,
                BENCH_OPT_POSITIONS);
        return 0;
    }
    if (strcmp(flag, "--targets-per-seq") == 0)
        return bench_parse_int(PROG, flag, value, 1, &o->targets_per_seq);
    if (strcmp(flag, "--variants") == 0) return bench_parse_int(PROG, flag, value, 1, &o->variants);
    if (strcmp(flag, "--dtype") == 0) return bench_parse_dtype(PROG, value, &o->dtype);
    if (strcmp(flag, "--optimizer") == 0) {
        if (strcmp(value, "mezo") == 0)
            o->state_copies = 0;
        else if (strcmp(value, "momentum") == 0)
            o->state_copies = 1;
        else if (strcmp(value, "adamm") == 0)
            o->state_copies = 3;
        else {
            fprintf(stderr, "%s: --optimizer expects mezo, momentum or adamm, got '%s'\n", PROG,
                    value);
            return 0;
        }
        return 1;
    }
    if (strcmp(flag, "--activations") == 0) {
        o->storage_activations = strcmp(value, "storage") == 0;
        if (o->storage_activations || strcmp(value, "f32") == 0) return 1;
        fprintf(stderr, "%s: --activations expects f32 or storage, got '%s'\n", PROG, value);
        return 0;
    }
    if (strcmp(flag, "--gpu") == 0) {
        o->gpu = bench_find_gpu_by_key(value);
        if (!o->gpu) fprintf(stderr, "%s: --gpu: unknown GPU '%s' (see --help)\n", PROG, value);
        return o->gpu != NULL;
    }
    if (strcmp(flag, "--peak-gbs") == 0)
        return bench_parse_double(PROG, flag, value, 1e-9, &o->peak_gbs);
    if (strcmp(flag, "--peak-tflops") == 0)
        return bench_parse_double(PROG, flag, value, 1e-9, &o->peak_tflops);
    if (strcmp(flag, "--rng-tinst") == 0)
        return bench_parse_double(PROG, flag, value, 0.0, &o->rng_tinst);
    if (strcmp(flag, "--z") == 0) {
        if (strcmp(value, "gauss") != 0 && strcmp(value, "rademacher") != 0) {
            fprintf(stderr, "%s: --z: '%s' is neither gauss nor rademacher\n", PROG, value);
            return 0;
        }
        o->rademacher = strcmp(value, "rademacher") == 0;
        return 1;
    }
    if (strcmp(flag, "--memory-gb") == 0)
        return bench_parse_double(PROG, flag, value, 1e-9, &o->memory_gb);
    if (strcmp(flag, "--measured") == 0) return load_measured(value, o->measured, &o->n_measured);
    fprintf(stderr, "%s: unknown option '%s' (see --help)\n", PROG, flag);
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (--help), 2 on a usage error. */
static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    parse_size_list("all", o);
    o->batch = 16, o->seq_len = 256, o->targets_per_seq = 1, o->variants = 2;
    o->dtype = ZT_BF16;
    o->gpu = bench_find_gpu_by_key("h100");
    o->peak_gbs = o->peak_tflops = o->rng_tinst = o->memory_gb = -1.0;
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
            o->quick = 1;
        else if (strcmp(flag, "--json") == 0)
            o->json = 1;
        else if (strcmp(flag, "--self-check") == 0)
            o->self_check = 1;
        else {
            value = bench_take_value(PROG, argc, argv, &i, flag, value);
            if (!value || !parse_value(o, flag, value)) return 2;
        }
    }
    return 0;
}

static machine machine_of(const options *o) {
    const bench_gpu_peaks *g = o->gpu;
    machine m;
    m.label = g->label;
    m.bytes_per_s = 1e9 * (o->peak_gbs > 0 ? o->peak_gbs : g->hbm_gb_per_s);
    m.tensor_flops_per_s = 1e12 * (o->peak_tflops > 0 ? o->peak_tflops : g->bf16_tflops);
    m.f32_flops_per_s = 1e12 * g->f32_tflops;
    /* One instruction per lane per clock = FP32 peak / 2 (an FMA is two FLOPs). H100 SXM:
     * 132 SMs x 128 lanes x 1.98 GHz = 33.5 T lane-instructions/s. */
    m.lane_instr_per_s = o->rng_tinst >= 0 ? 1e12 * o->rng_tinst : m.f32_flops_per_s / 2.0;
    m.memory_bytes = 1e9 * (o->memory_gb > 0 ? o->memory_gb : o->gpu->memory_gb);
    m.rng_instr_per_z = o->rademacher ? RNG_INSTR_PER_Z_RADEMACHER : RNG_INSTR_PER_Z;
    return m;
}

int main(int argc, char **argv) {
    options o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed) return parsed == 1 ? 0 : 2;
    if (o.self_check) return self_check();

    workload w;
    w.batch = o.batch, w.seq_len = o.seq_len, w.tokens = (double)o.batch * o.seq_len;
    w.target_rows = (double)o.batch * o.targets_per_seq;
    if (w.target_rows > w.tokens) w.target_rows = w.tokens;
    w.variants = o.variants;
    w.storage_bytes = (double)zt_dtype_size(o.dtype);
    w.half_precision = o.dtype != ZT_F32;
    w.state_copies = o.state_copies;
    w.activation_bytes = o.storage_activations ? w.storage_bytes : sizeof(float);
    w.head_chunk_rows = ZT_CUDA_HEAD_CHUNK_ROWS;
    machine m = machine_of(&o);

    size_result results[BENCH_OPT_N_SIZES];
    int n = 0;
    for (int i = 0; i < BENCH_OPT_N_SIZES; i++) {
        if (!o.sizes[i]) continue;
        model_dims d = dims_of(&bench_opt_sizes()[i]);
        const measured_rates *rates = NULL;
        char shape[40];
        snprintf(shape, sizeof shape, "opt-%s", d.name);
        for (int j = 0; j < o.n_measured; j++)
            if (strcmp(o.measured[j].shape, shape) == 0) rates = &o.measured[j];
        estimate_size(&d, &w, &m, rates, &results[n++]);
    }
    if (o.json) {
        print_json(results, n, &w, &m, o.dtype);
        return 0;
    }
    printf("roofline: one ZO step (K = %d, %s weights, %s activations in the design, B %d x T %d, "
           "%d target row(s) per sequence, %s) on %s\n\n",
           o.variants, bench_dtype_flag_name(o.dtype), o.storage_activations ? "storage" : "f32",
           o.batch, o.seq_len, o.targets_per_seq,
           o.state_copies == 0   ? "no optimizer state"
           : o.state_copies == 1 ? "momentum"
                                 : "AdaMM",
           m.label);
    if (!o.quick)
        for (int i = 0; i < n; i++)
            print_size(&results[i], &w, &m);
    print_summary(results, n, &m);
    return 0;
}
