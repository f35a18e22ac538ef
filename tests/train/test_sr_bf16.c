/* Stochastic rounding lets BF16 weights follow updates smaller than half an ulp, so BF16
 * training tracks F32 where round-to-nearest stalls. Same run (MeZO, lr 1e-5, 600 steps, same
 * seed and batches) on the opt-pre weights stored as F32, as BF16 with stochastic rounding, and
 * as BF16 with round-to-nearest. At this lr a typical update (lr * projected_grad * z ~ 1e-5 *
 * 5) is well below half a BF16 ulp of a typical weight (~2e-4 at 0.1). */
#include "train_util.h"
#include "zt_test.h"

static double improvement(const char *fixture, int stochastic_rounding, size_t *moved,
                          size_t *total) {
    char out[256], model[1024], data[1024];
    make_temp_dir(out, sizeof out, "sr");
    zt_train_options o;
    fixture_run_options(&o, fixture, model, sizeof model, data, sizeof data, out);
    o.eval_path = data;
    o.steps = 600;
    o.hp.lr = 1e-5;
    o.stochastic_rounding = stochastic_rounding;
    zt_train_result res;
    ZT_REQUIRE_OK(zt_train(&o, &res));
    checkpoint_diff d = compare_checkpoints(model, out);
    *moved = d.changed;
    *total = d.elements;
    remove_run_dir(out);
    return res.first_eval_loss - res.last_eval_loss;
}

int main(void) {
    size_t moved_f32, moved_sr, moved_rtn, n;
    double f32 = improvement("opt-pre", 1, &moved_f32, &n);
    double sr = improvement("opt-pre-bf16", 1, &moved_sr, &n);
    double rtn = improvement("opt-pre-bf16", 0, &moved_rtn, &n);
    printf("dev-loss improvement after 600 steps at lr 1e-5: F32 %.4f, BF16+SR %.4f (%.0f%% of "
           "F32), BF16 round-to-nearest %.4f (%.0f%%)\n",
           f32, sr, 100 * sr / f32, rtn, 100 * rtn / f32);
    printf("weights that moved: F32 %zu, BF16+SR %zu, BF16 round-to-nearest %zu of %zu\n",
           moved_f32, moved_sr, moved_rtn, n);
    ZT_CHECK(f32 > 0.1, "the F32 run itself must learn (%.4f)", f32);
    ZT_CHECK(sr >= 0.6 * f32, "BF16 with stochastic rounding: %.4f < 60%% of F32's %.4f", sr, f32);
    ZT_CHECK(rtn <= 0.4 * f32, "round-to-nearest was expected to stall: %.4f vs F32 %.4f", rtn, f32);
    /* weights whose updates stay under half an ulp only move with SR */
    ZT_CHECK(2 * moved_sr > 3 * moved_rtn, "SR moved %zu weights, RTN %zu", moved_sr, moved_rtn);
    return zt_test_finish("test_sr_bf16");
}
