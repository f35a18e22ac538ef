/* ZO training with half-precision GEMM inputs (--gemm half: activations rounded to the weight's
 * dtype, perturbed copies staged in it) still learns: the same MeZO run (300 steps, same seed and
 * batches) on the F16 and BF16 fixtures under --gemm f32 and --gemm half. Staging theta + eps z in
 * a half dtype quantises the perturbation (a BF16 ulp at 0.05 is 2.4e-4 against eps = 1e-3), so
 * the loss differences are noisier; over five seeds (one seed gave 75-116% depending on which)
 * the half runs must keep at least 70% of the f32 runs' mean dev-loss improvement, and both must
 * learn; the spread over seeds is printed. */
#include "train_util.h"
#include "zt_test.h"

enum { N_SEEDS = 5, FIRST_SEED = 40 };

static double improvement(const char *fixture, const char *gemm, uint64_t seed) {
    char out[256], model[1024], data[1024];
    make_temp_dir(out, sizeof out, "gemm");
    zt_train_options o;
    fixture_run_options(&o, fixture, model, sizeof model, data, sizeof data, out);
    o.eval_path = data;
    o.steps = 300;
    o.gemm = gemm;
    o.seed = seed;
    zt_train_result res;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    remove_run_dir(out);
    return res.first_eval_loss - res.last_eval_loss;
}

int main(void) {
    const char *fixtures[] = {"opt-pre-f16", "opt-pre-bf16"};
    for (int i = 0; i < 2; i++) {
        double f32 = 0, half = 0, lo = 1e9, hi = -1e9;
        for (int k = 0; k < N_SEEDS; k++) {
            double a = improvement(fixtures[i], "f32", FIRST_SEED + (uint64_t)k);
            double b = improvement(fixtures[i], "half", FIRST_SEED + (uint64_t)k);
            f32 += a / N_SEEDS, half += b / N_SEEDS;
            lo = fmin(lo, b / a), hi = fmax(hi, b / a);
        }
        printf("%-13s dev-loss improvement after 300 MeZO steps, mean of %d seeds: --gemm f32 "
               "%.4f, --gemm half %.4f (%.0f%%; %.0f-%.0f%% over seeds)\n",
               fixtures[i], N_SEEDS, f32, half, 100 * half / f32, 100 * lo, 100 * hi);
        ZT_CHECK(f32 > 0.3, "%s: the f32 runs themselves must learn (mean %.4f)", fixtures[i], f32);
        ZT_CHECK(half >= 0.7 * f32, "%s: --gemm half mean %.4f < 70%% of f32's %.4f", fixtures[i],
                 half, f32);
    }
    return zt_test_finish("test_gemm_half_train");
}
