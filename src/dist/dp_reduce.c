/* The gather is fixed-size (the largest share, padded), so one all-gather serves shares that
 * differ by one; the reduction then walks ranks in order, which is example order. */
#include "dist/dp_reduce.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"

static zt_status reduce_in_order(int n_variants, int global_examples, int ranks,
                                 const double *gathered, /* (ranks,2,K,max_share) */
                                 int max_share, double *losses) {
    for (int k = 0; k < n_variants; k++) {
        double total = 0.0, weight = 0.0;
        for (int q = 0; q < ranks; q++) {
            int first = 0, count = 0;
            zt_comm_share(global_examples, ranks, q, &first, &count);
            const double *block = gathered + (size_t)q * 2 * n_variants * max_share;
            const double *v = block + (size_t)k * max_share;
            const double *w = block + (size_t)(n_variants + k) * max_share;
            for (int j = 0; j < count; j++) {
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

size_t zt_dp_reduce_bytes(int n_variants, int global_examples, int ranks) {
    const int max_share = (global_examples + ranks - 1) / ranks;
    return (size_t)2 * n_variants * max_share * sizeof(double);
}

zt_status zt_dp_reduce_losses(zt_comm *comm, int n_variants, int global_examples,
                              const double *values, const double *weights, double *losses) {
    const int ranks = comm ? comm->size : 1, rank = comm ? comm->rank : 0;
    const int max_share = (global_examples + ranks - 1) / ranks;
    int first = 0, count = 0;
    zt_comm_share(global_examples, ranks, rank, &first, &count);
    const size_t per_rank = (size_t)2 * n_variants * max_share;
    double *send = zt_calloc(per_rank, sizeof *send);
    double *gathered = zt_malloc((size_t)ranks * per_rank * sizeof *gathered);
    zt_status s = send && gathered ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "loss gather buffers");
    for (int k = 0; s == ZT_OK && k < n_variants; k++) {
        if (count > 0) {
            memcpy(send + (size_t)k * max_share, values + (size_t)k * count,
                   (size_t)count * sizeof *send);
            memcpy(send + (size_t)(n_variants + k) * max_share, weights + (size_t)k * count,
                   (size_t)count * sizeof *send);
        }
    }
    if (s == ZT_OK) {
        if (comm && ranks > 1)
            s = comm->ops->allgather(comm, send, per_rank * sizeof *send, gathered);
        else
            memcpy(gathered, send, per_rank * sizeof *send);
    }
    if (s == ZT_OK)
        s = reduce_in_order(n_variants, global_examples, ranks, gathered, max_share, losses);
    free(send);
    free(gathered);
    return s;
}
