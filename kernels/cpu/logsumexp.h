/* The log-sum-exp of a row of logits, shared by target_logprobs and its tests. */
#ifndef ZT_CPU_LOGSUMEXP_H
#define ZT_CPU_LOGSUMEXP_H

#include "cpu/rng_blocks.h"

/* log(sum_j exp(x_j)) over x (V), with the row max subtracted and the sum in double (a
 * 50272-wide row of near-equal terms would lose ~4 digits in f32), the same bits on every path
 * (the SIMD paths are rng_blocks.h's: portable, AVX2, AVX-512). Within ~1e-15 relative of libm's
 * exp summed in order; NaN anywhere gives NaN, +inf gives NaN (inf - inf), -inf terms add 0. */
double zt_cpu_log_sum_exp(zt_cpu_rng_path path, const float *x, int vocab);

/* One block of a row's columns folded into the row's running log-sum-exp (target_logprobs_fold):
 * state[0] the max so far (a float), state[1] the sum of exp(x - state[0]) in double; `first`
 * starts the row. The row's log-sum-exp is then state[0] + log(state[1]): for a row of one block
 * exactly zt_cpu_log_sum_exp's bits; for more, the earlier sum is carried to a new max by
 * exp(old max - new max). The same bits on every path; NaN or +inf anywhere gives NaN, -inf
 * terms add 0, and a row of nothing but -inf gives NaN, as in one block. */
void zt_cpu_log_sum_exp_fold(zt_cpu_rng_path path, const float *x, int n, double *state, int first);

#endif
