/* Whole training runs through the CUDA kernels on the host executor: zt_train (src/train/
 * trainer.h) with options.device = "cuda-emu" (registered here through zt_backend_register)
 * against the same run on "cpu", --gemm f32, on the tiny OPT fixtures: first-order AdamW (pre-LN,
 * f32 and f16 weights), SGD with Nesterov momentum (post-LN), and MeZO. Per step the logged loss
 * and gradient norm (MeZO: projected gradient) must agree, the dev loss before and after too, the
 * final weights within a relative L2 bound, and the dev loss must go down on both devices.
 *
 * Why bounds and not bits: the device's reductions (GEMMs, row statistics, the backward's column
 * sums) add in other orders than the CPU's, so a forward differs in its last bits (the parity
 * tests bound it at NMSE ~1e-13, i.e. a few 1e-7 relative), and each update carries that into the
 * next step's weights. So:
 *   - before any update (step 1, the first dev loss) the two see the same weights: 1e-6 relative;
 *   - f32 first-order runs: losses, gradient norms and final weights within 1e-5 relative over 8
 *     steps (measured worst 7e-7 for a gradient norm, 2e-7 for the weights): the rounding of each
 *     step, not an amplified one, so a wrong gradient or state would show far above it;
 *   - f16 weights: a stored f16 rounds the f32 result to 11 bits, and a result that lands on the
 *     other side of a rounding boundary on one device stores a value an ulp (2^-11 = 4.9e-4
 *     relative) away; the final weights must then agree within one f16 ulp in relative L2 (5e-4:
 *     as if every weight were an ulp off; measured 6e-5), losses within 1e-4 (measured 1e-5),
 *     gradient norms within 5e-4 (measured 5e-5);
 *   - Adam divides each gradient element by its own running scale, which turns a gradient that is
 *     only rounding noise into full lr-sized steps of either sign. k_proj.bias is such a tensor
 *     (its exact gradient is zero: the key bias adds the same q . b to all of a query's scores,
 *     which the softmax cancels), so its AdamW weights are left out of the L2 (they move the loss
 *     by nothing, and the losses are checked); SGD's run keeps them in.
 *   - MeZO's projected gradient is a loss difference over 2 eps: a forward's rounding difference
 *     of ~1e-6 |L| (L ~ 8) becomes ~1e-6 |L| / eps in it, 8e-4 at eps = 1e-2 (the eps used here,
 *     ten times MeZO's default, to keep that floor well under the signal): within 2e-3 absolute
 *     plus 1e-3 relative (measured worst 2e-4 relative), losses within 1e-5 (measured 1.4e-6),
 *     weights within 2e-4 (measured 1.7e-5).
 * Nothing here is in pass/fail by time. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "cudaemu_backend.h"
#include "../train/train_util.h"
#include "zt_test.h"

enum { MAX_STEPS = 16 };

/* The executor has one device and runs blocks on its own workers: n_threads does not apply. */
static int n_emu_backends; /* made by make_cuda_emu: a run that named cuda-emu used it */
static zt_status make_cuda_emu(int n_threads, zt_backend **out) {
    (void)n_threads;
    n_emu_backends++;
    return zt_cudaemu_backend_create(0, out);
}

typedef struct run_log {
    int n;                      /* training lines */
    double loss[MAX_STEPS];     /* "loss" */
    double gradient[MAX_STEPS]; /* "grad_norm" (first-order) or "projected_grad" (MeZO) */
    double first_eval, last_eval;
} run_log;

/* The training lines of out/metrics.jsonl, in step order. */
static void read_metrics(const char *out, run_log *log) {
    char path[1200], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    ZT_REQUIRE(f != NULL, "no %s", path);
    log->n = 0;
    while (log->n < MAX_STEPS && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *loss = cJSON_GetObjectItem(o, "loss");
        const cJSON *norm = cJSON_GetObjectItem(o, "grad_norm");
        if (!cJSON_IsNumber(norm)) norm = cJSON_GetObjectItem(o, "projected_grad");
        if (cJSON_IsNumber(loss) && cJSON_IsNumber(norm)) {
            log->loss[log->n] = loss->valuedouble;
            log->gradient[log->n] = norm->valuedouble;
            log->n++;
        }
        cJSON_Delete(o);
    }
    fclose(f);
}

typedef struct run_config {
    const char *label;
    const char *fixture;
    const char *optimizer;
    double lr, weight_decay, momentum, clip_norm, eps;
    int nesterov, steps;
    int skip_key_bias; /* leave k_proj.bias out of the weights' L2 (see the top) */
    double loss_rtol;  /* per step past the first, and the last dev loss */
    double gradient_atol, gradient_rtol, weights_rtol;
} run_config;

static void run_on(const run_config *c, const char *device, char *out, size_t out_size,
                   run_log *log) {
    char model[1024], data[1024];
    make_temp_dir(out, out_size, "train_emu");
    zt_train_options o;
    fixture_run_options(&o, c->fixture, model, sizeof model, data, sizeof data, out);
    o.eval_path = data;
    o.device = device;
    o.gemm = "f32";
    o.threads = 1;
    o.optimizer = c->optimizer;
    o.steps = c->steps;
    o.log_every = 1;
    o.seed = 7;
    o.hp.lr = c->lr;
    if (c->eps > 0) o.hp.eps = c->eps;
    o.hp.weight_decay = c->weight_decay;
    o.hp.momentum = c->momentum;
    o.fo.nesterov = c->nesterov;
    o.fo.clip_norm = c->clip_norm;
    zt_train_result res;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    ZT_CHECK(res.steps_done == c->steps && !res.interrupted, "%s on %s: %d steps done", c->label,
             device, res.steps_done);
    read_metrics(out, log);
    log->first_eval = res.first_eval_loss;
    log->last_eval = res.last_eval_loss;
}

/* sqrt(sum (a - b)^2 / sum b^2) over every tensor of the two directories' model.safetensors,
 * read as doubles whatever their dtype; -1 when their layouts differ. */
static double weights_relative_l2(const char *dir_a, const char *dir_b, int skip_key_bias) {
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/model.safetensors", dir_a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", dir_b);
    zt_safetensors *a = NULL, *b = NULL;
    ZT_REQUIRE_OK(zt_st_open(pa, &a));
    ZT_REQUIRE_OK(zt_st_open(pb, &b));
    double diff = 0.0, norm = 0.0;
    int same_layout = zt_st_count(a) == zt_st_count(b);
    for (int i = 0; same_layout && i < zt_st_count(a); i++) {
        const zt_st_tensor *ta = zt_st_get(a, i), *tb = zt_st_find(b, ta->name);
        if (!tb || tb->n_elems != ta->n_elems || strcmp(ta->dtype, tb->dtype) != 0) {
            same_layout = 0;
            break;
        }
        if (skip_key_bias && strstr(ta->name, "k_proj.bias")) continue;
        for (size_t e = 0; e < ta->n_elems; e++) {
            const double x = element_as_double(ta, e), y = element_as_double(tb, e);
            diff += (x - y) * (x - y);
            norm += y * y;
        }
    }
    zt_st_close(a);
    zt_st_close(b);
    return same_layout && norm > 0.0 ? sqrt(diff / norm) : -1.0;
}

static double relative(double got, double want) {
    return fabs(got - want) / fmax(fabs(want), 1e-30);
}

static void compare_runs(const run_config *c) {
    char cpu_out[256], emu_out[256];
    run_log cpu, emu;
    run_on(c, "cpu", cpu_out, sizeof cpu_out, &cpu);
    const int emu_backends_before = n_emu_backends;
    run_on(c, "cuda-emu", emu_out, sizeof emu_out, &emu);
    ZT_CHECK(n_emu_backends == emu_backends_before + 1, "%s: the cuda-emu run made %d backends",
             c->label, n_emu_backends - emu_backends_before);
    ZT_CHECK(cpu.n == c->steps && emu.n == c->steps, "%s: %d and %d logged steps, want %d",
             c->label, cpu.n, emu.n, c->steps);
    double worst_loss = 0.0, worst_gradient = 0.0;
    for (int s = 0; s < cpu.n && s < emu.n; s++) {
        worst_loss = fmax(worst_loss, relative(emu.loss[s], cpu.loss[s]));
        worst_gradient = fmax(worst_gradient, relative(emu.gradient[s], cpu.gradient[s]));
        ZT_CHECK_CLOSE(emu.loss[s], cpu.loss[s], 0.0, s == 0 ? 1e-6 : c->loss_rtol,
                       "%s step %d: loss on cuda-emu against cpu", c->label, s + 1);
        ZT_CHECK_CLOSE(emu.gradient[s], cpu.gradient[s], c->gradient_atol, c->gradient_rtol,
                       "%s step %d: gradient norm on cuda-emu against cpu", c->label, s + 1);
    }
    ZT_CHECK_CLOSE(emu.first_eval, cpu.first_eval, 0.0, 1e-6, "%s: dev loss before training",
                   c->label);
    ZT_CHECK_CLOSE(emu.last_eval, cpu.last_eval, 0.0, c->loss_rtol, "%s: dev loss after training",
                   c->label);
    ZT_CHECK(cpu.last_eval < cpu.first_eval && emu.last_eval < emu.first_eval,
             "%s: the dev loss did not go down (cpu %.6f -> %.6f, cuda-emu %.6f -> %.6f)", c->label,
             cpu.first_eval, cpu.last_eval, emu.first_eval, emu.last_eval);
    const double l2 = weights_relative_l2(emu_out, cpu_out, c->skip_key_bias);
    ZT_CHECK(l2 >= 0.0 && l2 <= c->weights_rtol, "%s: final weights differ by relative L2 %.3g",
             c->label, l2);
    printf("%-34s dev loss %.4f -> %.4f; worst step rel. diff: loss %.2g, gradient %.2g; "
           "weights rel. L2 %.2g\n",
           c->label, cpu.first_eval, cpu.last_eval, worst_loss, worst_gradient, l2);
    remove_run_dir(cpu_out);
    remove_run_dir(emu_out);
}

int main(void) {
    ZT_REQUIRE_OK(zt_backend_register("cuda-emu", make_cuda_emu));
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_open("cuda-emu", 1, "f32", &be));
    ZT_CHECK(strcmp(be->ops->name, "cuda-emu") == 0 && be->gemm == ZT_GEMM_F32,
             "--device cuda-emu made '%s'", be->ops->name);
    zt_backend_destroy(be);

    static const run_config configs[] = {
        {.label = "adamw, opt-pre",
         .fixture = "opt-pre",
         .optimizer = "adamw",
         .lr = 1e-2,
         .weight_decay = 0.1,
         .clip_norm = 1.0,
         .steps = 8,
         .skip_key_bias = 1,
         .loss_rtol = 1e-5,
         .gradient_rtol = 1e-5,
         .weights_rtol = 1e-5},
        {.label = "sgd nesterov 0.9, opt-post",
         .fixture = "opt-post",
         .optimizer = "sgd",
         .lr = 0.2,
         .momentum = 0.9,
         .nesterov = 1,
         .steps = 8,
         .loss_rtol = 1e-5,
         .gradient_rtol = 1e-5,
         .weights_rtol = 1e-5},
        {.label = "adamw, opt-pre-f16",
         .fixture = "opt-pre-f16",
         .optimizer = "adamw",
         .lr = 1e-2,
         .weight_decay = 0.1,
         .clip_norm = 1.0,
         .steps = 8,
         .skip_key_bias = 1,
         .loss_rtol = 1e-4,
         .gradient_rtol = 5e-4,
         .weights_rtol = 5e-4},
        {.label = "mezo, opt-pre",
         .fixture = "opt-pre",
         .optimizer = "mezo",
         .lr = 1e-2,
         .eps = 1e-2,
         .steps = 10,
         .loss_rtol = 1e-5,
         .gradient_atol = 2e-3,
         .gradient_rtol = 1e-3,
         .weights_rtol = 2e-4},
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        compare_runs(&configs[i]);
    return zt_test_finish("test_cuda_train_emu");
}
