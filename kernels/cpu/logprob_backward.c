/* target_logprobs_backward: the gradient of log_softmax(logits)[target] per row,
 *     d_logits[r, j] = d_logprob[r] * ([j == targets[r]] - softmax(logits[r, :])_j). */
#include <math.h>

#include "core/status.h"
#include "cpu/cpu_backward.h"
#include "cpu/cpu_common.h"

zt_status zt_cpu_target_logprobs_backward(zt_backend *be, float *d_logits, /* (R,V) = */
                                          const float *logits,             /* (R,V) */
                                          const int32_t *targets,          /* (R) */
                                          const float *d_logprob,          /* (R) */
                                          int n_rows, int vocab) {
    const char *op = "target_logprobs_backward";
    ZT_TRY(zt_check_logprob_backward_args(op, d_logits, logits, targets, d_logprob, n_rows, vocab));
    /* Checked up front so a bad target leaves d_logits untouched. */
    for (int r = 0; r < n_rows; r++) {
        if (targets[r] < 0 || targets[r] >= vocab)
            return zt_fail(ZT_ERR_INVALID_ARG, "%s: row %d target %d outside [0, %d)", op, r,
                           (int)targets[r], vocab);
    }

    ZT_CPU_PARALLEL_FOR(zt_cpu_threads(zt_cpu(be)))
    for (int r = 0; r < n_rows; r++) {
        const float *x = logits + (size_t)r * vocab;
        float *dx = d_logits + (size_t)r * vocab;
        /* The row max subtracted and the sum in double, in index order, as the forward's
         * log_sum_exp: a 50272-wide row of near-equal terms would lose ~4 digits in f32. */
        float max_logit = x[0];
        for (int j = 1; j < vocab; j++)
            if (x[j] > max_logit) max_logit = x[j];
        double sum = 0.0;
        for (int j = 0; j < vocab; j++)
            sum += exp((double)x[j] - (double)max_logit);
        const double scale = (double)d_logprob[r], inv_sum = 1.0 / sum;
        const int target = targets[r];
        /* x[j] is read before dx[j] is written, so dx may be x. */
        for (int j = 0; j < vocab; j++) {
            const double p = exp((double)x[j] - (double)max_logit) * inv_sum;
            dx[j] = (float)(scale * ((j == target ? 1.0 : 0.0) - p));
        }
    }
    return ZT_OK;
}
