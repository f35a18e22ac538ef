/* The pieces of exact data parallelism that need no second process: how a batch is shared over
 * ranks, the ordered reduction of per-example contributions (against a plain double loop), a
 * batch's contributions (against the token-mean and per-example definitions), and the
 * communicator's choice from the launcher's environment. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "dist/comm.h"
#include "dist/dp_reduce.h"
#include "train/task_loss.h"
#include "zt_test.h"

static void test_share(void) {
    int first = -1, count = -1;
    zt_comm_share(16, 3, 0, &first, &count);
    ZT_CHECK(first == 0 && count == 6, "16 over 3, rank 0: %d+%d", first, count);
    zt_comm_share(16, 3, 1, &first, &count);
    ZT_CHECK(first == 6 && count == 5, "16 over 3, rank 1: %d+%d", first, count);
    zt_comm_share(16, 3, 2, &first, &count);
    ZT_CHECK(first == 11 && count == 5, "16 over 3, rank 2: %d+%d", first, count);
    for (int n = 1; n <= 40; n++)
        for (int size = 1; size <= 8; size++) {
            int next = 0, least = n, most = 0;
            for (int rank = 0; rank < size; rank++) {
                zt_comm_share(n, size, rank, &first, &count);
                ZT_CHECK(first == next, "n %d size %d rank %d starts at %d, not %d", n, size, rank,
                         first, next);
                next = first + count;
                least = count < least ? count : least;
                most = count > most ? count : most;
            }
            ZT_CHECK(next == n && most - least <= 1, "n %d over %d: covers %d, shares %d..%d", n,
                     size, next, least, most);
        }
}

static double uniform(unsigned *state) {
    *state = *state * 1664525u + 1013904223u;
    return (double)(*state >> 8) / (double)(1u << 24);
}

static void test_reduce(void) {
    enum { K = 3, N = 11 };
    double value[K * N], weight[K * N], losses[K];
    unsigned seed = 7;
    for (int i = 0; i < K * N; i++) {
        value[i] = 10.0 * uniform(&seed) - 3.0;
        weight[i] = (double)(1 + (int)(5 * uniform(&seed)));
    }
    ZT_CHECK(zt_dp_reduce_losses(NULL, 1, K, N, value, weight, losses) == ZT_OK, "%s",
             zt_last_error());
    for (int k = 0; k < K; k++) {
        double total = 0.0, w = 0.0;
        for (int e = 0; e < N; e++) {
            total += value[k * N + e];
            w += weight[k * N + e];
        }
        ZT_CHECK(losses[k] == total / w, "variant %d: %.17g, the ordered loop %.17g", k, losses[k],
                 total / w);
    }
    /* one rank of one: the communicator's all-gather is the identity */
    zt_comm *single = NULL;
    ZT_CHECK(zt_comm_create("single", 0, 60.0, &single) == ZT_OK, "%s", zt_last_error());
    double again[K];
    ZT_CHECK(zt_dp_reduce_losses(single, 1, K, N, value, weight, again) == ZT_OK, "%s",
             zt_last_error());
    ZT_CHECK(memcmp(again, losses, sizeof again) == 0, "one rank reduces as no communicator");
    ZT_CHECK(single->rank == 0 && single->size == 1, "rank %d of %d", single->rank, single->size);
    zt_comm_destroy(single);
    for (int e = 0; e < N; e++)
        weight[N + e] = 0.0;
    ZT_CHECK(zt_dp_reduce_losses(NULL, 1, K, N, value, weight, losses) == ZT_ERR_INVALID_ARG,
             "a variant without targets is refused");
    ZT_CHECK(strstr(zt_last_error(), "without targets") != NULL, "%s", zt_last_error());
    ZT_CHECK(zt_dp_reduce_bytes(1, 2, 16, 3) == 2 * 2 * 6 * sizeof(double), "bytes per rank");
    ZT_CHECK(zt_dp_reduce_bytes(2, 5, 7, 6) == 2 * 3 * 3 * sizeof(double), "bytes, 2 groups");
}

/* An LM batch of 3 sequences: per-example NLL sums and counts; the loss is the token mean. */
static void test_lm_contributions(void) {
    int32_t rows[] = {1, 2, 5, 6, 7, 9}, ids[] = {4, 4, 4, 4, 4, 4}, seq[] = {0, 0, 1, 1, 1, 2};
    float logprob[] = {-0.5f, -1.25f, -2.0f, -0.125f, -3.0f, -0.75f};
    zt_task_batch b;
    memset(&b, 0, sizeof b);
    b.kind = ZT_TASK_LM;
    b.n_sequences = b.n_examples = 3;
    b.seq_len = 4;
    b.n_targets = 6;
    b.target_rows = rows;
    b.target_ids = ids;
    b.target_sequence = seq;
    double value[3], weight[3], loss = 0.0;
    ZT_CHECK(zt_task_batch_contributions(&b, logprob, 0, value, weight) == ZT_OK, "%s",
             zt_last_error());
    ZT_CHECK(value[0] == 1.75 && value[1] == 5.125 && value[2] == 0.75, "sums %g %g %g", value[0],
             value[1], value[2]);
    ZT_CHECK(weight[0] == 2 && weight[1] == 3 && weight[2] == 1, "counts %g %g %g", weight[0],
             weight[1], weight[2]);
    ZT_CHECK(zt_task_batch_loss(&b, logprob, &loss) == ZT_OK, "%s", zt_last_error());
    ZT_CHECK(loss == 7.625 / 6.0, "token mean %.17g", loss);
    ZT_CHECK(zt_task_batch_contributions(&b, logprob, 1, value, weight) == ZT_ERR_INVALID_ARG,
             "accuracy needs candidates");
}

static void test_comm_choice(void) {
    zt_comm *c = NULL;
    ZT_CHECK(zt_comm_create("ring", 0, 60.0, &c) == ZT_ERR_INVALID_ARG && c == NULL,
             "unknown kind");
    ZT_CHECK(strstr(zt_last_error(), "--comm ring") != NULL, "%s", zt_last_error());
    setenv("WORLD_SIZE", "4", 1);
    unsetenv("MASTER_ADDR");
    ZT_CHECK(zt_comm_create("auto", 0, 60.0, &c) == ZT_ERR_INVALID_ARG && c == NULL,
             "a torchrun-style launch without its variables is refused, not run as 4 copies");
    ZT_CHECK(strstr(zt_last_error(), "is not set") != NULL, "%s", zt_last_error());
    ZT_CHECK(zt_comm_create("single", 0, 60.0, &c) == ZT_OK && c->size == 1,
             "single is always possible");
    zt_comm_destroy(c);
    unsetenv("WORLD_SIZE");
    ZT_CHECK(zt_comm_create("auto", 0, 60.0, &c) == ZT_OK && c->size == 1 && c->rank == 0,
             "no launcher: one process");
    zt_comm_destroy(c);
    c = NULL;
    ZT_CHECK(zt_comm_create("auto", 1, 60.0, &c) == ZT_OK && strcmp(c->ops->name, "single") == 0,
             "no launcher, --device cuda: one process, not NCCL");
    zt_comm_destroy(c);
    c = NULL;
    ZT_CHECK(zt_comm_create("auto", 0, 0.0, &c) == ZT_ERR_INVALID_ARG && c == NULL &&
                 strstr(zt_last_error(), "--comm-timeout"),
             "a timeout of 0 is refused: %s", zt_last_error());
}

/* P virtual ranks in one process: a first pass records what each rank sends (its all-gather
 * stops there), a second hands every rank the concatenation, as MPI_Allgather would. */
enum { MAX_RANKS = 8, SLOT = 4096 };
static double sent[MAX_RANKS][SLOT];
static size_t sent_bytes;
static int replaying;

static zt_status virtual_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    if (!replaying) {
        memcpy(sent[c->rank], send, bytes);
        sent_bytes = bytes;
        return ZT_ERR_UNAVAILABLE;
    }
    for (int q = 0; q < c->size; q++)
        memcpy((char *)recv + (size_t)q * bytes, sent[q], bytes);
    return ZT_OK;
}

static const zt_comm_ops virtual_ops = {.name = "virtual", .allgather = virtual_allgather};

/* K variants over B examples, P ranks in G groups: every rank's losses equal the plain loop over
 * all examples in order, and each rank held exactly its layout's share. */
static void test_groups(int K, int B, int P, int G) {
    enum { MAXK = 8, MAXB = 32 };
    double value[MAXK][MAXB], weight[MAXK][MAXB], want[MAXK];
    unsigned seed = (unsigned)(K * 1000 + B * 100 + P * 10 + G);
    for (int k = 0; k < K; k++) {
        double total = 0.0, w = 0.0;
        for (int e = 0; e < B; e++) {
            value[k][e] = 4.0 * uniform(&seed) - 1.0;
            weight[k][e] = (double)(1 + (int)(3 * uniform(&seed)));
            total += value[k][e];
            w += weight[k][e];
        }
        want[k] = total / w;
    }
    for (int pass = 0; pass < 2; pass++) {
        replaying = pass;
        for (int rank = 0; rank < P; rank++) {
            zt_comm c = {.ops = &virtual_ops, .rank = rank, .size = P, .local_rank = rank};
            zt_dp_layout me;
            ZT_CHECK(zt_dp_layout_of(&c, G, K, B, &me) == ZT_OK, "%s", zt_last_error());
            double mine_v[MAXK * MAXB], mine_w[MAXK * MAXB];
            for (int k = 0; k < me.n_variants; k++)
                for (int e = 0; e < me.n_examples; e++) {
                    mine_v[k * me.n_examples + e] =
                        value[me.first_variant + k][me.first_example + e];
                    mine_w[k * me.n_examples + e] =
                        weight[me.first_variant + k][me.first_example + e];
                }
            double losses[MAXK];
            zt_status s = zt_dp_reduce_losses(&c, G, K, B, mine_v, mine_w, losses);
            if (pass == 0) {
                ZT_CHECK(s == ZT_ERR_UNAVAILABLE && sent_bytes <= sizeof sent[0],
                         "recording pass, rank %d", rank);
                continue;
            }
            ZT_CHECK(s == ZT_OK, "K %d B %d P %d G %d rank %d: %s", K, B, P, G, rank,
                     zt_last_error());
            for (int k = 0; k < K; k++)
                ZT_CHECK(losses[k] == want[k],
                         "K %d B %d P %d G %d rank %d variant %d: %.17g vs %.17g", K, B, P, G, rank,
                         k, losses[k], want[k]);
        }
    }
}

int main(void) {
    test_share();
    test_reduce();
    test_groups(2, 7, 3, 1);
    test_groups(5, 7, 6, 2);
    test_groups(4, 16, 4, 4);
    test_groups(1, 9, 4, 2); /* a group without variants still takes part */
    test_groups(6, 3, 6, 2);
    {
        zt_comm c = {.ops = &virtual_ops, .rank = 0, .size = 6, .local_rank = 0};
        zt_dp_layout me;
        ZT_CHECK(zt_dp_layout_of(&c, 4, 4, 8, &me) == ZT_ERR_INVALID_ARG, "4 groups of 6 ranks");
        ZT_CHECK(zt_dp_layout_of(&c, 3, 5, 7, &me) == ZT_OK && me.group == 0 &&
                     me.group_size == 2 && me.n_variants == 2 && me.n_examples == 4,
                 "rank 0 of 6 in 3 groups: group %d of size %d, %d variants, %d examples", me.group,
                 me.group_size, me.n_variants, me.n_examples);
    }
    test_lm_contributions();
    test_comm_choice();
    return zt_test_finish("test_dp_reduce");
}
