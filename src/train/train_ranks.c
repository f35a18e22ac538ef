/* What a run over several ranks adds to the loop (docs/distributed.md): who writes, the
 * collectives the loop itself makes (barriers, the stop flag, --verify-replicas), and each
 * rank's share of a step as --grad-accum's micro-batches. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fingerprint.h"
#include "core/status.h"
#include "dist/comm.h"
#include "train/train_run.h"

/* Only rank 0 of a data-parallel job writes (the log, metrics, snapshots, best/, the final
 * weights): every rank holds the same weights and records bit for bit. */
int zt_run_writes_files(const zt_run *r) {
    return r->o->comm == NULL || r->o->comm->rank == 0;
}

/* Every rank waits here until all have arrived (a no-op in one process). */
zt_status zt_run_barrier(const zt_run *r) {
    zt_comm *c = r->o->comm;
    return c && c->size > 1 ? zt_comm_barrier(c) : ZT_OK;
}

/* The most examples one training forward of this rank holds: its share of the batch (its
 * group's, with direction groups), in --grad-accum's micro-batches. */
int zt_train_largest_micro_batch(const zt_train_options *o) {
    const int ranks = zt_train_replicas(o);
    const int groups = o->direction_groups > 1 ? o->direction_groups : 1;
    const int per_group = ranks / groups > 0 ? ranks / groups : 1;
    const int share = (o->batch_size + per_group - 1) / per_group;
    const int accum = o->grad_accum > 1 ? o->grad_accum : 1;
    return (share + accum - 1) / accum;
}

int zt_train_direction_groups(const zt_train_options *o) {
    const int ranks = zt_train_replicas(o);
    const int groups = o->direction_groups > 1 ? o->direction_groups : 1;
    return ranks % groups == 0 ? groups : 1;
}

/* A stop asked of any rank (SIGTERM to one of them) stops all of them after the same step. */
zt_status zt_run_stop_agreed(const zt_run *r, int local, int *agreed) {
    zt_comm *c = r->o->comm;
    *agreed = local;
    if (!c || c->size <= 1) return ZT_OK;
    int32_t mine = local;
    int32_t *all = zt_malloc((size_t)c->size * sizeof *all);
    if (!all) return zt_fail(ZT_ERR_NOMEM, "stop flags of %d ranks", c->size);
    zt_status s = zt_comm_allgather(c, &mine, sizeof mine, all);
    for (int q = 0; s == ZT_OK && q < c->size; q++)
        *agreed |= all[q] != 0;
    free(all);
    return s;
}

/* A checksum of every weight this rank holds, read back a slice at a time. */
static zt_status weights_checksum(const zt_run *r, uint64_t *checksum) {
    enum { SLICE = 1 << 20 };
    const zt_model *m = r->model;
    uint8_t *host = zt_malloc(SLICE);
    if (!host) return zt_fail(ZT_ERR_NOMEM, "--verify-replicas: a %d-byte slice", SLICE);
    zt_fingerprint fp;
    zt_fingerprint_init(&fp);
    zt_status s = ZT_OK;
    for (size_t done = 0; s == ZT_OK && done < m->weights_bytes; done += SLICE) {
        const size_t n = m->weights_bytes - done < SLICE ? m->weights_bytes - done : SLICE;
        s = m->be->ops->download(m->be, host, (const char *)m->weights + done, n);
        if (s == ZT_OK) zt_fingerprint_update(&fp, host, n);
    }
    free(host);
    *checksum = zt_fingerprint_final(&fp);
    return s;
}

/* --verify-replicas: every rank's weights against rank 0's after `steps` steps. Every rank
 * reaches the same verdict, so all of them stop together on a mismatch. */
zt_status zt_run_verify_replicas(const zt_run *r, int steps) {
    /* with pipeline stages, each stage's replicas (which hold the same tensors) */
    zt_comm *c = r->replicas ? r->replicas : r->o->comm;
    const char *who = r->pipeline ? "replica" : "rank";
    if (!c || c->size <= 1) return ZT_OK;
    uint64_t mine = 0;
    ZT_TRY(weights_checksum(r, &mine));
    uint64_t *all = zt_malloc((size_t)c->size * sizeof *all);
    if (!all) return zt_fail(ZT_ERR_NOMEM, "checksums of %d ranks", c->size);
    zt_status s = zt_comm_allgather(c, &mine, sizeof mine, all);
    for (int q = 1; s == ZT_OK && q < c->size; q++)
        if (all[q] != all[0])
            s = zt_fail(ZT_ERR_INTERNAL,
                        "--verify-replicas: after step %d the weights of %s %d differ from %s "
                        "0's (checksum %016llx, %s 0 %016llx): were the ranks started with the "
                        "same options and files?",
                        steps, who, q, who, (unsigned long long)all[q], who,
                        (unsigned long long)all[0]);
    free(all);
    return s;
}

/* The padded length of the whole step's batch, which a data-parallel rank pads its share to (0
 * when the backend is not batch-invariant: the share's own length is as good). */
static int step_seq_len(const zt_run *r) {
    if (!r->be->batch_invariant) return 0;
    int longest = 0;
    for (int i = 0; i < r->o->batch_size; i++) {
        const zt_example *e = &r->train.examples[r->indices[i]];
        const int n = zt_example_longest_sequence(&r->train, e, r->o->train_as_lm);
        if (n > longest) longest = n;
    }
    return longest;
}

int zt_train_grad_accum(const zt_train_options *o) {
    return o->grad_accum > 1 ? o->grad_accum : 1;
}

/* The rank's examples [first, first + count) of the step as --grad-accum's micro-batches (one
 * without it), each padded as the whole step's batch is when batch-invariant. */
zt_status zt_run_build_micro_batches(zt_run *r, int first, int count) {
    const int n = zt_train_grad_accum(r->o), seq_len = step_seq_len(r);
    for (int i = 0; i < n; i++) {
        int at = 0, size = 0;
        zt_comm_share(count, n, i, &at, &size);
        ZT_TRY(zt_task_batch_build_padded(&r->train, r->indices + first + at, size,
                                          r->model->dims.pad_token_id, r->o->train_as_lm, seq_len,
                                          &r->micro[i]));
    }
    return ZT_OK;
}
