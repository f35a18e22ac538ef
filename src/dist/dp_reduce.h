/* Data-parallel losses, exact (docs/distributed.md): each rank holds per-example contributions
 * (a value and a weight per example and variant) for its share of the step's batch; every rank
 * gathers all of them and reduces them in example order, so every rank, and one process holding
 * the whole batch, gets the same K losses bit for bit: loss_k = sum_e value / sum_e weight. */
#ifndef ZT_DIST_DP_REDUCE_H
#define ZT_DIST_DP_REDUCE_H

#include "dist/comm.h"

/* comm NULL: one process. values and weights are (K, local) with local = this rank's share of
 * global_examples (zt_comm_share). A variant whose weights sum to 0 (no target anywhere) is an
 * error. */
zt_status zt_dp_reduce_losses(zt_comm *comm, int n_variants, int global_examples,
                              const double *values,  /* (K,local) */
                              const double *weights, /* (K,local) */
                              double *losses);       /* (K) */

/* Bytes a rank sends per reduction: what docs/distributed.md quotes per step. */
size_t zt_dp_reduce_bytes(int n_variants, int global_examples, int ranks);

#endif
