/* The gather is fixed-size (the largest shares, padded), so one all-gather serves shares that
 * differ by one; the reduction then walks a variant's group's ranks in order, which is example
 * order. */
#include "dist/dp_reduce.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"

zt_status zt_dp_layout_of(const zt_comm *comm, int groups, int n_variants, int global_examples,
                          zt_dp_layout *out) {
    const int ranks = comm ? comm->size : 1, rank = comm ? comm->rank : 0;
    if (groups < 1 || ranks % groups != 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--direction-groups %d: must divide the %d ranks into equal groups", groups,
                       ranks);
    out->groups = groups;
    out->group_size = ranks / groups;
    out->group = rank / out->group_size;
    out->rank_in_group = rank % out->group_size;
    zt_comm_share(n_variants, groups, out->group, &out->first_variant, &out->n_variants);
    zt_comm_share(global_examples, out->group_size, out->rank_in_group, &out->first_example,
                  &out->n_examples);
    return ZT_OK;
}

static int ceil_div(int a, int b) {
    return (a + b - 1) / b;
}

size_t zt_dp_reduce_bytes(int groups, int n_variants, int global_examples, int ranks) {
    const int group_size = ranks / groups;
    return (size_t)2 * ceil_div(n_variants, groups) * ceil_div(global_examples, group_size) *
           sizeof(double);
}

/* gathered: (ranks, 2, max_k, max_e): each rank's values then weights, padded. */
static zt_status reduce_in_order(const zt_dp_layout *me, int n_variants, int global_examples,
                                 const double *gathered, int max_k, int max_e, double *losses) {
    for (int k = 0; k < n_variants; k++) {
        int group = 0, first_k = 0, count_k = 0;
        for (group = 0; group < me->groups; group++) {
            zt_comm_share(n_variants, me->groups, group, &first_k, &count_k);
            if (k < first_k + count_k) break;
        }
        const int kk = k - first_k;
        double total = 0.0, weight = 0.0;
        for (int q = 0; q < me->group_size; q++) {
            int first_e = 0, count_e = 0;
            zt_comm_share(global_examples, me->group_size, q, &first_e, &count_e);
            const int rank = group * me->group_size + q;
            const double *block = gathered + (size_t)rank * 2 * max_k * max_e;
            const double *v = block + (size_t)kk * max_e;
            const double *w = block + (size_t)(max_k + kk) * max_e;
            for (int j = 0; j < count_e; j++) {
                total += v[j];
                weight += w[j];
            }
        }
        if (!(weight > 0.0))
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "a batch of %d examples without targets (variant %d)", global_examples,
                           k);
        losses[k] = total / weight;
    }
    return ZT_OK;
}

zt_status zt_dp_reduce_losses(zt_comm *comm, int groups, int n_variants, int global_examples,
                              const double *values, const double *weights, double *losses) {
    const int ranks = comm ? comm->size : 1;
    zt_dp_layout me;
    ZT_TRY(zt_dp_layout_of(comm, groups, n_variants, global_examples, &me));
    const int max_k = ceil_div(n_variants, groups);
    const int max_e = ceil_div(global_examples, me.group_size);
    const size_t per_rank = (size_t)2 * max_k * max_e;
    double *send = zt_calloc(per_rank, sizeof *send);
    double *gathered = zt_malloc((size_t)ranks * per_rank * sizeof *gathered);
    zt_status s = send && gathered ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "loss gather buffers");
    for (int k = 0; s == ZT_OK && k < me.n_variants && me.n_examples > 0; k++) {
        const size_t n = (size_t)me.n_examples * sizeof *send;
        memcpy(send + (size_t)k * max_e, values + (size_t)k * me.n_examples, n);
        memcpy(send + (size_t)(max_k + k) * max_e, weights + (size_t)k * me.n_examples, n);
    }
    if (s == ZT_OK) {
        if (comm && ranks > 1)
            s = zt_comm_allgather(comm, send, per_rank * sizeof *send, gathered);
        else
            memcpy(gathered, send, per_rank * sizeof *send);
    }
    if (s == ZT_OK)
        s = reduce_in_order(&me, n_variants, global_examples, gathered, max_k, max_e, losses);
    free(send);
    free(gathered);
    return s;
}
