/* target_logprobs: log_softmax(logits)[target] per row, the LM loss's only input. */
#include <math.h>

#include "core/status.h"
#include "cpu/cpu_common.h"

/* log(sum_j exp(x_j)) with the row max subtracted, summed in double: a 50272-wide row of
 * near-equal terms would lose ~4 digits in an f32 sum. */
static double log_sum_exp(const float *x, /* (V) */
                          int vocab) {
    float max_logit = x[0];
    for (int j = 1; j < vocab; j++)
        if (x[j] > max_logit) max_logit = x[j];
    double sum = 0.0;
    for (int j = 0; j < vocab; j++)
        sum += exp((double)x[j] - (double)max_logit);
    return (double)max_logit + log(sum);
}

zt_status zt_cpu_target_logprobs(zt_backend *be, float *logprob, /* (R) */
                                 const float *logits,            /* (R,V) */
                                 const int32_t *targets,         /* (R) */
                                 int n_rows, int vocab) {
    const char *op = "target_logprobs";
    ZT_TRY(zt_check_logprob_args(op, logprob, logits, targets, n_rows, vocab));
    /* Checked up front so a bad target leaves logprob untouched. */
    for (int r = 0; r < n_rows; r++) {
        if (targets[r] < 0 || targets[r] >= vocab)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d target %d outside [0, %d)", op, r,
                           (int)targets[r], vocab);
    }

    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int r = 0; r < n_rows; r++) {
        const float *row = logits + (size_t)r * vocab;
        logprob[r] = (float)((double)row[targets[r]] - log_sum_exp(row, vocab));
    }
    return ZT_OK;
}
