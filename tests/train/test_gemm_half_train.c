/* ZO training with half-precision GEMM inputs (--gemm half: activations rounded to the weight's
 * dtype, perturbed copies staged in it) still learns: the same MeZO run (300 steps, same seed and
 * batches) on the F16 and BF16 fixtures under --gemm f32 and --gemm half. Staging theta + eps z in
 * a half dtype quantises the perturbation (a BF16 ulp at 0.05 is 2.4e-4 against eps = 1e-3), so
 * the loss differences are noisier; the half run must keep at least 70% of the f32 run's dev-loss
 * improvement, and both must learn. */
#include "train_util.h"
#include "zt_test.h"

static double improvement(const char *fixture, const char *gemm) {
    char out[256], model[1024], data[1024];
    make_temp_dir(out, sizeof out, "gemm");
    zt_train_options o;
    fixture_run_options(&o, fixture, model, sizeof model, data, sizeof data, out);
    o.eval_path = data;
    o.steps = 300;
    o.gemm = gemm;
    zt_train_result res;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    remove_run_dir(out);
    return res.first_eval_loss - res.last_eval_loss;
}

int main(void) {
    const char *fixtures[] = {"opt-pre-f16", "opt-pre-bf16"};
    for (int i = 0; i < 2; i++) {
        double f32 = improvement(fixtures[i], "f32");
        double half = improvement(fixtures[i], "half");
        printf("%-13s dev-loss improvement after 300 MeZO steps: --gemm f32 %.4f, --gemm half "
               "%.4f (%.0f%%)\n",
               fixtures[i], f32, half, 100 * half / f32);
        ZT_CHECK(f32 > 0.3, "%s: the f32 run itself must learn (%.4f)", fixtures[i], f32);
        ZT_CHECK(half >= 0.7 * f32, "%s: --gemm half %.4f < 70%% of f32's %.4f", fixtures[i], half,
                 f32);
    }
    return zt_test_finish("test_gemm_half_train");
}
