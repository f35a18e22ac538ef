/* Every optimizer of the engine lowers the loss of a tiny OPT (the opt-pre fixture) on a
 * fixture task (the LM records of opt-pre/score.jsonl, evaluated on the same records) in 150
 * steps of batch 4: the mean drop over three seeds meets each optimizer's bar, and the spread is
 * printed. Hyperparameters per optimizer were chosen by a small grid (lr in {1e-2, 1e-3, 1e-4},
 * more for the step-size searchers); the untrained loss is ~7.98. */
#include "train_util.h"
#include "zt_test.h"

typedef struct case_spec {
    const char *optimizer;
    double lr, eps;
    int directions;
    double eta_b;    /* AS2P; 0 = default */
    double min_drop; /* required decrease of the dev loss, nats */
} case_spec;

static const case_spec cases[] = {
    {"mezo", 1e-3, 1e-3, 1, 0, 1.0},       {"mezo", 1e-3, 1e-3, 4, 0, 1.0},
    {"zo-sgd-fd", 1e-3, 1e-3, 1, 0, 1.0},  {"zo-sgd-sign", 1e-2, 1e-3, 1, 0, 1.0},
    {"zo-signsgd", 1e-2, 1e-3, 1, 0, 0.5}, {"ga-sign", 1e-3, 1e-3, 1, 0, 1.0},
    {"zo-sgd-mmt", 1e-4, 1e-3, 1, 0, 1.0}, {"zo-adamm", 1e-3, 1e-3, 1, 0, 0.5},
    {"stp", 3e-2, 1e-3, 1, 0, 1.0},        {"s2p", 30, 1e-3, 1, 0, 1.0},
    {"as2p", 0, 1e-1, 1, 5, 1.0},          {"as2p-sign", 0, 1e-1, 1, 5, 1.0},
};

enum { N_SEEDS = 3 };

/* The dev-loss drop of one run. */
static double drop_of(const case_spec *c, uint64_t seed) {
    char out[256], model[1024], data[1024];
    make_temp_dir(out, sizeof out, "opt");
    zt_train_options o;
    fixture_run_options(&o, "opt-pre", model, sizeof model, data, sizeof data, out);
    o.eval_path = data;
    o.optimizer = c->optimizer;
    o.steps = 150;
    o.seed = seed;
    o.hp.lr = c->lr;
    o.hp.eps = c->eps;
    o.hp.eps_end = c->eps / 10.0;
    o.hp.n_directions = c->directions;
    if (c->eta_b > 0) o.hp.as2p_eta_b = c->eta_b;
    zt_train_result res;
    zt_status s = zt_train(&o, &res);
    ZT_CHECK(s == ZT_OK, "%s: %s", c->optimizer, zt_last_error());
    remove_run_dir(out);
    return s == ZT_OK ? res.first_eval_loss - res.last_eval_loss : 0.0;
}

int main(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const case_spec *c = &cases[i];
        double mean = 0.0, lo = 1e9, hi = -1e9;
        for (int k = 0; k < N_SEEDS; k++) {
            double drop = drop_of(c, 42 + (uint64_t)k);
            mean += drop / N_SEEDS;
            lo = drop < lo ? drop : lo;
            hi = drop > hi ? drop : hi;
        }
        printf("%-12s q=%d lr %-6g eps %-6g dev loss drop, mean of %d seeds %.3f (%.3f-%.3f)\n",
               c->optimizer, c->directions, c->lr, c->eps, N_SEEDS, mean, lo, hi);
        ZT_CHECK(mean >= c->min_drop, "%s (q=%d): dev loss fell by %.3f on average < %.2f",
                 c->optimizer, c->directions, mean, c->min_drop);
    }
    return zt_test_finish("test_optimizers_opt");
}
