/* Shadow mode never writes the master weights during evaluation: 200 MeZO steps with lr = 0
 * leave every weight bit-identical in F32, F16 and BF16. In-place mode (MeZO's +eps, -2eps,
 * +eps) does not return the weights exactly; its drift after the same 200 steps is measured and
 * printed here, not hidden. */
#include "train_util.h"
#include "zt_test.h"

static checkpoint_diff run_lr0(const char *fixture, zt_perturb_mode mode) {
    char out[256], model_dir[1024], data[1024];
    make_temp_dir(out, sizeof out, "lr0");
    zt_train_options o;
    fixture_run_options(&o, fixture, model_dir, sizeof model_dir, data, sizeof data, out);
    o.steps = 200;
    o.hp.lr = 0.0;
    o.mode = mode;
    zt_train_result res;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    ZT_CHECK(res.steps_done == 200, "%s: %d steps", fixture, res.steps_done);
    checkpoint_diff d = compare_checkpoints(model_dir, out);
    ZT_CHECK(!d.mismatched_layout, "%s: checkpoint layout differs from the base", fixture);
    remove_run_dir(out);
    return d;
}

int main(void) {
    const char *fixtures[] = {"opt-pre", "opt-pre-f16", "opt-pre-bf16"};
    for (int i = 0; i < 3; i++) {
        checkpoint_diff shadow = run_lr0(fixtures[i], ZT_PERTURB_SHADOW);
        ZT_CHECK(shadow.changed == 0, "%s shadow, lr 0: %zu of %zu weights changed (max %g)",
                 fixtures[i], shadow.changed, shadow.elements, shadow.max_abs);
        checkpoint_diff inplace = run_lr0(fixtures[i], ZT_PERTURB_INPLACE);
        printf("%-13s lr=0, 200 steps: shadow changed %zu of %zu weights; inplace changed %zu "
               "(%.2f%%), max |drift| %.3g\n",
               fixtures[i], shadow.changed, shadow.elements, inplace.changed,
               100.0 * (double)inplace.changed / (double)inplace.elements, inplace.max_abs);
        /* In half precision the in-place round trip cannot be exact for all 34k weights over
         * 200 steps; if it were, this test would not be measuring anything. */
        if (i > 0)
            ZT_CHECK(inplace.changed > 0, "%s inplace: no drift measured", fixtures[i]);
    }
    return zt_test_finish("test_shadow_inplace");
}
