/* Data-parallel losses, exact (docs/distributed.md): each rank holds per-example contributions
 * (a value and a weight per example and variant) for its share of the step's batch and its share
 * of the step's variants; every rank gathers all of them and reduces each variant's in example
 * order, so every rank, and one process holding the whole batch and every variant, gets the same
 * K losses bit for bit: loss_k = sum_e value / sum_e weight.
 *
 * Direction groups: the ranks form `groups` equal groups of consecutive ranks; group g evaluates
 * its share of the K variants (zt_comm_share(K, groups, g)), data-parallel over its ranks. */
#ifndef ZT_DIST_DP_REDUCE_H
#define ZT_DIST_DP_REDUCE_H

#include "dist/comm.h"

/* Where a rank stands: its group, its variants and its examples. */
typedef struct zt_dp_layout {
    int groups, group, rank_in_group, group_size;
    int first_variant, n_variants; /* this rank's share of the K variants */
    int first_example, n_examples; /* this rank's share of the batch */
} zt_dp_layout;

/* comm NULL: one process (one group). ZT_ERR_INVALID_ARG when groups does not divide the ranks. */
zt_status zt_dp_layout_of(const zt_comm *comm, int groups, int n_variants, int global_examples,
                          zt_dp_layout *out);

/* values and weights are (this rank's variants, this rank's examples), as zt_dp_layout_of says;
 * losses (K) for every variant. A variant whose weights sum to 0 (no target anywhere) is an
 * error. */
zt_status zt_dp_reduce_losses(zt_comm *comm, int groups, int n_variants, int global_examples,
                              const double *values,  /* (K_rank,E_rank) */
                              const double *weights, /* (K_rank,E_rank) */
                              double *losses);       /* (K) */

/* Bytes a rank sends per reduction: what docs/distributed.md quotes per step. */
size_t zt_dp_reduce_bytes(int groups, int n_variants, int global_examples, int ranks);

#endif
