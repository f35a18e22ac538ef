/* The CUDA backend's first-order update ops (fo_update, grad_sumsq: kernels/cuda/fo_update.cu),
 * executed on the CPU by the host executor (cudaemu), against the CPU backend
 * (kernels/cpu/fo_update.c) bit for bit: every rule (SGD plain, with momentum, Nesterov, coupled
 * and decoupled decay; signSGD with zero gradients; Adam over several bias corrections; AdaMM with
 * vhat's max), f32 / f16 / bf16 weights with and without stochastic rounding, sizes that are not
 * multiples of 4 or of a thread block, several steps with the state carried, grad_scale != 1,
 * NaN / Inf gradients and overflowing steps with the same non-finite count; grad_sumsq's double
 * on sizes about its 4096-element chunks, large and tiny values; the same refusals; the scratch
 * query.
 *
 *   test_cuda_fo_update_emu [--seed N]   CUDAEMU_WORKERS=n sets the host threads that run blocks
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "cpu/cpu_backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "parity_common.h"

#define N_STEPS 3

typedef struct fo_case {
    const char *name;
    zt_fo_update u;
    int adam_steps; /* ADAM: bias1, bias2 of steps 1, 2, ... (else fixed as given) */
} fo_case;

typedef struct fo_inputs {
    size_t n;
    zt_dtype dtype;
    void *theta;  /* (n) in dtype */
    float *grads; /* (N_STEPS, n) */
    float *state; /* (rows, n) or NULL */
    int rows;
    float lr_override; /* 0: the case's lr */
} fo_inputs;

typedef struct fo_result {
    void *theta;
    float *state;
    unsigned long long nonfinite[N_STEPS];
} fo_result;

static void step_update(const fo_case *c, int step, uint32_t tensor_id, zt_fo_update *u) {
    *u = c->u;
    if (c->adam_steps) {
        u->bias1 = 1.0f - powf(u->beta1, (float)(step + 1));
        u->bias2 = 1.0f - powf(u->beta2, (float)(step + 1));
    }
    u->rounding_seed = c->u.rounding_seed + 0x9E3779B97F4A7C15ull * (uint64_t)step + tensor_id;
}

/* N_STEPS updates on one backend from the same inputs; the count read after each step's sync. */
static int run_steps(zt_backend *be, const fo_case *c, const fo_inputs *in, uint32_t tensor_id,
                     fo_result *out, const char *case_name) {
    const size_t theta_bytes = in->n * zt_dtype_size(in->dtype);
    zt_pbuf theta, grad, state = {0};
    if (!zt_pbuf_make(be, &theta, in->theta, theta_bytes, "theta")) return 0;
    if (!zt_pbuf_make(be, &grad, in->grads, N_STEPS * in->n * sizeof(float), "grad")) return 0;
    if (in->rows > 0 &&
        !zt_pbuf_make(be, &state, in->state, (size_t)in->rows * in->n * sizeof(float), "state"))
        return 0;
    int ok = 1;
    for (int s = 0; s < N_STEPS && ok; s++) {
        zt_fo_update u;
        step_update(c, s, tensor_id, &u);
        if (in->lr_override != 0.0f) u.lr = in->lr_override;
        out->nonfinite[s] = 0;
        u.n_nonfinite = &out->nonfinite[s];
        const zt_status st = be->ops->fo_update(
            be, zt_pbuf_ptr(&theta), in->dtype, tensor_id, in->n,
            (const float *)zt_pbuf_ptr(&grad) + s * in->n, (float *)zt_pbuf_ptr(&state), &u);
        ZT_CHECK(st == ZT_OK, "%s %s step %d: %s", be->ops->name, case_name, s, zt_last_error());
        ok = st == ZT_OK && be->ops->sync(be) == ZT_OK;
    }
    out->theta = malloc(theta_bytes + 1);
    out->state = in->rows > 0 ? (float *)malloc((size_t)in->rows * in->n * sizeof(float)) : NULL;
    zt_pbuf_fetch(&theta, out->theta, case_name);
    if (in->rows > 0) zt_pbuf_fetch(&state, out->state, case_name);
    zt_pbuf_check_input(&grad, in->grads, case_name);
    zt_pbuf_free(&theta);
    zt_pbuf_free(&grad);
    zt_pbuf_free(&state);
    return ok;
}

static int n_cases_run;

static void compare_case(zt_backend *cpu, zt_backend *emu, const fo_case *c, const fo_inputs *in,
                         uint32_t tensor_id, const char *label, int expect_nonfinite) {
    char name[160];
    snprintf(name, sizeof name, "%s %s n=%zu %s%s", c->name, zt_dtype_name(in->dtype), in->n,
             c->u.stochastic_rounding ? "sr " : "", label);
    fo_result ref = {0}, dut = {0};
    const int ok_ref = run_steps(cpu, c, in, tensor_id, &ref, name);
    const int ok_dut = run_steps(emu, c, in, tensor_id, &dut, name);
    n_cases_run++;
    if (!ok_ref || !ok_dut) goto done;
    {
        const size_t theta_bytes = in->n * zt_dtype_size(in->dtype);
        size_t first_diff = (size_t)-1;
        const size_t esize = zt_dtype_size(in->dtype);
        for (size_t j = 0; j < in->n && first_diff == (size_t)-1; j++)
            if (memcmp((char *)ref.theta + j * esize, (char *)dut.theta + j * esize, esize) != 0)
                first_diff = j;
        ZT_CHECK(memcmp(ref.theta, dut.theta, theta_bytes) == 0,
                 "%s: theta differs from the CPU's, first at element %zu", name, first_diff);
        if (in->rows > 0)
            ZT_CHECK(memcmp(ref.state, dut.state, (size_t)in->rows * in->n * sizeof(float)) == 0,
                     "%s: state differs from the CPU's", name);
        unsigned long long total = 0;
        for (int s = 0; s < N_STEPS; s++) {
            ZT_CHECK(ref.nonfinite[s] == dut.nonfinite[s],
                     "%s step %d: non-finite count cpu %llu cuda %llu", name, s, ref.nonfinite[s],
                     dut.nonfinite[s]);
            total += ref.nonfinite[s];
        }
        if (expect_nonfinite)
            ZT_CHECK(total > 0, "%s: the case was meant to store non-finite weights", name);
        else
            ZT_CHECK(total == 0, "%s: %llu non-finite weights stored", name, total);
        printf("  fo_update  %-60s identical (non-finite %llu)\n", name, total);
    }
done:
    free(ref.theta);
    free(ref.state);
    free(dut.theta);
    free(dut.state);
}

/* Random inputs: gradients with some exact zeros (sign(0) = 0, momentum rows that stay 0), a
 * state whose v and vhat rows are non-negative and whose vhat sometimes exceeds the new v. */
static void make_inputs(zt_prng *r, const fo_case *c, size_t n, zt_dtype dtype, fo_inputs *in) {
    in->n = n;
    in->dtype = dtype;
    in->lr_override = 0.0f;
    in->theta = zt_random_weight(r, n, dtype, 1.0f);
    in->grads = zt_random_floats(r, N_STEPS * n, 2.0f, 0.0f);
    for (size_t j = 0; j < N_STEPS * n; j++)
        if (zt_prng_below(r, 7) == 0) in->grads[j] = 0.0f;
    in->rows = zt_fo_state_rows(&c->u);
    in->state = NULL;
    if (in->rows > 0) {
        in->state = (float *)malloc((size_t)in->rows * n * sizeof(float));
        for (size_t j = 0; j < (size_t)in->rows * n; j++) {
            const float x = zt_prng_uniform(r);
            in->state[j] = j < n ? 0.5f * x : 0.1f * x * x;
        }
    }
}

static void free_inputs(fo_inputs *in) {
    free(in->theta);
    free(in->grads);
    free(in->state);
}

static void check_fo_update(zt_backend *cpu, zt_backend *emu, uint64_t seed) {
    const zt_fo_update adam = {.rule = ZT_FO_ADAM,
                               .lr = 0.01f,
                               .beta1 = 0.9f,
                               .beta2 = 0.999f,
                               .eps = 1e-8f,
                               .grad_scale = 1.0f};
    zt_fo_update adamw = adam;
    adamw.weight_decay = 0.1f;
    adamw.decoupled_decay = 1;
    adamw.grad_scale = 0.37f;
    zt_fo_update adam_coupled = adam;
    adam_coupled.weight_decay = 0.05f;
    adam_coupled.beta1 = 0.8f;
    adam_coupled.beta2 = 0.95f;
    zt_fo_update adam_fixed = adam; /* fixed bias corrections, one of them 1 */
    adam_fixed.bias1 = 1.0f;
    adam_fixed.bias2 = 0.0199f;
    adam_fixed.eps = 1e-3f;
    zt_fo_update adamm = adam;
    adamm.rule = ZT_FO_ADAMM;
    adamm.weight_decay = 0.01f;
    adamm.grad_scale = 1.5f;
    const fo_case cases[] = {
        {"sgd", {.rule = ZT_FO_SGD, .lr = 0.1f, .grad_scale = 1.0f}, 0},
        {"sgd_decay_scaled",
         {.rule = ZT_FO_SGD, .lr = 0.05f, .weight_decay = 0.1f, .grad_scale = 0.25f},
         0},
        {"sgd_decoupled",
         {.rule = ZT_FO_SGD,
          .lr = 0.05f,
          .weight_decay = 0.3f,
          .decoupled_decay = 1,
          .grad_scale = 0.7f},
         0},
        {"sgd_momentum",
         {.rule = ZT_FO_SGD,
          .lr = 0.1f,
          .momentum = 0.9f,
          .weight_decay = 0.01f,
          .grad_scale = 1.0f},
         0},
        {"sgd_nesterov",
         {.rule = ZT_FO_SGD,
          .lr = 0.1f,
          .momentum = 0.9f,
          .nesterov = 1,
          .weight_decay = 0.01f,
          .grad_scale = 0.3f},
         0},
        {"sign", {.rule = ZT_FO_SIGN, .lr = 0.01f, .grad_scale = 1.0f}, 0},
        {"sign_decay",
         {.rule = ZT_FO_SIGN, .lr = 0.01f, .weight_decay = 0.5f, .grad_scale = 2.0f},
         0},
        {"adam", adam, 1},
        {"adamw", adamw, 1},
        {"adam_coupled", adam_coupled, 1},
        {"adam_fixed_bias", adam_fixed, 0},
        {"adamm", adamm, 0},
    };
    const int n_cases = (int)(sizeof cases / sizeof cases[0]);
    const size_t sizes[] = {1, 3, 1000, 70001};
    const zt_dtype dtypes[] = {ZT_F32, ZT_F16, ZT_BF16};
    zt_prng r = {seed | 1};
    uint32_t tensor_id = 5;
    for (int ci = 0; ci < n_cases; ci++)
        for (int di = 0; di < 3; di++)
            for (int sr = 0; sr < (dtypes[di] == ZT_F32 ? 1 : 2); sr++)
                for (int si = 0; si < 4; si++) {
                    /* the largest size once per rule and dtype keeps the run short */
                    if (sizes[si] == 70001 && sr == 0 && dtypes[di] != ZT_F32) continue;
                    fo_case c = cases[ci];
                    c.u.stochastic_rounding = sr;
                    c.u.rounding_seed = seed ^ (0x51ull * (uint64_t)(ci + 1));
                    fo_inputs in;
                    make_inputs(&r, &c, sizes[si], dtypes[di], &in);
                    compare_case(cpu, emu, &c, &in, tensor_id++, "", 0);
                    free_inputs(&in);
                }

    /* NaN / Inf gradients (a NaN v must reach vhat), and a step overflowing f16's range. */
    for (int ci = 0; ci < n_cases; ci++)
        for (int di = 0; di < 3; di++)
            for (int sr = 0; sr < (dtypes[di] == ZT_F32 ? 1 : 2); sr++) {
                fo_case c = cases[ci];
                c.u.stochastic_rounding = sr;
                c.u.rounding_seed = seed + 77u * (uint64_t)ci;
                fo_inputs in;
                make_inputs(&r, &c, 1003, dtypes[di], &in);
                in.grads[17] = NAN;
                in.grads[1003 + 500] = INFINITY;
                in.grads[2 * 1003 + 1002] = -INFINITY;
                /* sign(NaN) is 0 and sign(Inf) 1: signSGD steps past them, finite */
                const int is_sign = c.u.rule == ZT_FO_SIGN;
                compare_case(cpu, emu, &c, &in, tensor_id++, "nan/inf grads", !is_sign);
                if (dtypes[di] == ZT_F16) {
                    /* finite in f32, beyond f16 (sign's u is 1: 1e5 lands far past 65504) */
                    in.grads[17] = 1.0f;
                    in.grads[1003 + 500] = 1.0f;
                    in.grads[2 * 1003 + 1002] = 1.0f;
                    in.lr_override = is_sign ? 1e5f : 1e6f;
                    compare_case(cpu, emu, &c, &in, tensor_id++, "f16 overflow", 1);
                }
                free_inputs(&in);
            }
}

// ---------------------------------------------------------------------------------------------
// grad_sumsq

static double sumsq_on(zt_backend *be, const float *x, size_t n, const char *what) {
    zt_pbuf b;
    double out = -1.0;
    if (!zt_pbuf_make(be, &b, x, n * sizeof(float), "x")) return out;
    ZT_CHECK_OK(be->ops->grad_sumsq(be, &out, (const float *)zt_pbuf_ptr(&b), n));
    zt_pbuf_check_input(&b, x, what);
    zt_pbuf_free(&b);
    return out;
}

static void check_grad_sumsq(zt_backend *cpu, zt_backend *emu, uint64_t seed) {
    const size_t sizes[] = {1, 4095, 4096, 4097, 100003};
    const float scales[] = {1.0f, 3e34f, 1e-38f, 1e-42f}; /* x 1000 at most: finite */
    const char *scale_names[] = {"unit", "large", "tiny", "subnormal"};
    zt_prng r = {seed * 3 + 1};
    for (int si = 0; si < 5; si++)
        for (int k = 0; k < 4; k++) {
            const size_t n = sizes[si];
            float *x = zt_random_floats(&r, n, 1.0f, 0.0f);
            for (size_t j = 0; j < n; j++)
                x[j] *= scales[k] * (float)(1 + zt_prng_below(&r, 1000));
            char name[96];
            snprintf(name, sizeof name, "n=%zu %s", n, scale_names[k]);
            const double ref = sumsq_on(cpu, x, n, name), dut = sumsq_on(emu, x, n, name);
            ZT_CHECK(memcmp(&ref, &dut, sizeof ref) == 0, "grad_sumsq %s: cpu %.17g cuda %.17g",
                     name, ref, dut);
            printf("  grad_sumsq %-30s %.17g %s\n", name, dut,
                   ref == dut ? "identical" : "DIFFERS");
            free(x);

            zt_scratch_query q;
            memset(&q, 0, sizeof q);
            q.op = ZT_SCRATCH_GRAD_SUMSQ;
            q.n_elems = n;
            const size_t want = ((n + 4095) / 4096 + 1) * sizeof(double);
            ZT_CHECK(emu->ops->scratch_bytes(emu, &q) == want,
                     "grad_sumsq n=%zu: scratch query %zu bytes, the op takes %zu", n,
                     emu->ops->scratch_bytes(emu, &q), want);
        }
    double zero = -1.0;
    ZT_CHECK_OK(emu->ops->grad_sumsq(emu, &zero, NULL, 0));
    ZT_CHECK(zero == 0.0, "grad_sumsq of nothing: %g", zero);
}

// ---------------------------------------------------------------------------------------------
// Refusals: the same status and message from both backends

typedef struct refusal {
    const char *name;
    zt_fo_update u;
    int null_theta, null_grad, null_state, overlap, bad_dtype;
} refusal;

static zt_status refuse_on(zt_backend *be, const refusal *c, char *text, size_t text_size) {
    const size_t n = 8;
    void *mem = NULL;
    ZT_REQUIRE_OK(be->ops->alloc(be, 5 * n * sizeof(float), ZT_MEM_ACTIVATIONS, &mem));
    float *theta = (float *)mem, *grad = theta + n, *state = grad + n;
    zt_fo_update u = c->u;
    const zt_status s = be->ops->fo_update(be, c->null_theta ? NULL : theta,
                                           c->bad_dtype ? (zt_dtype)(ZT_BF16 + 1) : ZT_F32, 1, n,
                                           c->null_grad ? NULL
                                           : c->overlap ? theta + 2
                                                        : grad,
                                           c->null_state ? NULL : state, &u);
    snprintf(text, text_size, "%s", s == ZT_OK ? "" : zt_last_error());
    be->ops->free(be, mem, 5 * n * sizeof(float), ZT_MEM_ACTIVATIONS);
    return s;
}

static void check_refusals(zt_backend *cpu, zt_backend *emu) {
    const zt_fo_update sgd = {.rule = ZT_FO_SGD, .lr = 0.1f, .grad_scale = 1.0f};
    const zt_fo_update adam = {.rule = ZT_FO_ADAM,
                               .lr = 0.1f,
                               .beta1 = 0.9f,
                               .beta2 = 0.99f,
                               .eps = 1e-8f,
                               .bias1 = 0.1f,
                               .bias2 = 0.01f,
                               .grad_scale = 1.0f};
    refusal cases[14];
    int n = 0;
    cases[n++] = (refusal){"null theta", sgd, 1, 0, 0, 0, 0};
    cases[n++] = (refusal){"null grad", sgd, 0, 1, 0, 0, 0};
    cases[n++] = (refusal){"bad dtype", sgd, 0, 0, 0, 0, 1};
    cases[n++] = (refusal){"grad overlaps theta", sgd, 0, 0, 0, 1, 0};
    cases[n] = (refusal){"nan lr", sgd, 0, 0, 0, 0, 0};
    cases[n++].u.lr = NAN;
    cases[n] = (refusal){"inf grad_scale", sgd, 0, 0, 0, 0, 0};
    cases[n++].u.grad_scale = INFINITY;
    cases[n] = (refusal){"nesterov without momentum", sgd, 0, 0, 0, 0, 0};
    cases[n++].u.nesterov = 1;
    cases[n] = (refusal){"momentum above 1", sgd, 0, 0, 0, 0, 0};
    cases[n++].u.momentum = 1.5f;
    cases[n] = (refusal){"momentum without state", sgd, 0, 0, 1, 0, 0};
    cases[n++].u.momentum = 0.9f;
    cases[n++] = (refusal){"adam without state", adam, 0, 0, 1, 0, 0};
    cases[n] = (refusal){"adam bias1 0", adam, 0, 0, 0, 0, 0};
    cases[n++].u.bias1 = 0.0f;
    cases[n] = (refusal){"adam eps 0", adam, 0, 0, 0, 0, 0};
    cases[n++].u.eps = 0.0f;
    cases[n] = (refusal){"unknown rule", sgd, 0, 0, 0, 0, 0};
    cases[n++].u.rule = (zt_fo_rule)7;
    for (int i = 0; i < n; i++) {
        char ref_text[512], dut_text[512];
        const zt_status ref = refuse_on(cpu, &cases[i], ref_text, sizeof ref_text);
        const zt_status dut = refuse_on(emu, &cases[i], dut_text, sizeof dut_text);
        zt_parity_same_error("fo_update", cases[i].name, ref, ref_text, dut, dut_text);
    }
    double out = 0.0;
    char ref_text[512];
    zt_status ref = cpu->ops->grad_sumsq(cpu, NULL, NULL, 4);
    snprintf(ref_text, sizeof ref_text, "%s", zt_last_error());
    zt_status dut = emu->ops->grad_sumsq(emu, NULL, NULL, 4);
    zt_parity_same_error("grad_sumsq", "null out", ref, ref_text, dut, zt_last_error());
    ref = cpu->ops->grad_sumsq(cpu, &out, NULL, 4);
    snprintf(ref_text, sizeof ref_text, "%s", zt_last_error());
    dut = emu->ops->grad_sumsq(emu, &out, NULL, 4);
    zt_parity_same_error("grad_sumsq", "null x", ref, ref_text, dut, zt_last_error());
}

int main(int argc, char **argv) {
    uint64_t seed = 20250611;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--seed N]\n", argv[0]);
            return 2;
        }
    }
    const double start = zt_parity_now();
    zt_mem_stats at_start;
    zt_mem_stats_get(&at_start);

    zt_backend *cpu = NULL, *emu = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(0, &cpu));
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    ZT_CHECK(emu->ops->fo_update != NULL && emu->ops->grad_sumsq != NULL,
             "the CUDA backend lacks the first-order update ops");
    check_fo_update(cpu, emu, seed);
    check_grad_sumsq(cpu, emu, seed);
    check_refusals(cpu, emu);
    emu->ops->destroy(emu);
    cpu->ops->destroy(cpu);

    zt_mem_stats at_end;
    zt_mem_stats_get(&at_end);
    ZT_CHECK(at_end.current_total == at_start.current_total,
             "tracked memory: %zu bytes at start, %zu after destroying both backends",
             at_start.current_total, at_end.current_total);
    printf("seed %llu, %d fo_update cases, %.1f s\n", (unsigned long long)seed, n_cases_run,
           zt_parity_now() - start);
    return zt_test_finish("test_cuda_fo_update_emu");
}
