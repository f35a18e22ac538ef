/* The pipeline's layout over the ranks and the replicas' view of the world communicator
 * (src/dist/pipeline.h), in one process: the view runs over a scripted world whose all-gather
 * answers with every rank's known bytes, so what each stage's replicas receive, and whom their
 * messages reach, is checked against the layout written out by hand; so is what the view and the
 * world count of the view's calls (docs/distributed.md, "What a rank sends, counted"). */
#include <stdint.h>
#include <string.h>

#include "core/status.h"
#include "dist/pipeline.h"
#include "zt_test.h"

static void test_layout(void) {
    /* 6 ranks as 3 stages x 2 replicas over 4 layers: stages hold 2/1/1 layers */
    const int want_first[3] = {0, 2, 3}, want_end[3] = {2, 3, 4};
    for (int r = 0; r < 6; r++) {
        zt_pipeline_layout l;
        ZT_CHECK_OK(zt_pipeline_layout_of(6, r, 3, 4, &l));
        ZT_CHECK(l.stages == 3 && l.stage == r % 3 && l.replicas == 2 && l.replica == r / 3,
                 "rank %d: stage %d of %d, replica %d of %d", r, l.stage, l.stages, l.replica,
                 l.replicas);
        ZT_CHECK(l.first_layer == want_first[r % 3] && l.end_layer == want_end[r % 3],
                 "rank %d: layers [%d, %d)", r, l.first_layer, l.end_layer);
        ZT_CHECK(zt_pipeline_rank(&l, l.replica, l.stage) == r, "rank %d maps back", r);
    }
    /* every split covers the layers once, in order, the earlier stages holding no fewer */
    for (int layers = 1; layers <= 12; layers++)
        for (int stages = 1; stages <= layers; stages++) {
            int next = 0, previous = layers + 1;
            for (int s = 0; s < stages; s++) {
                zt_pipeline_layout l;
                ZT_CHECK_OK(zt_pipeline_layout_of(stages, s, stages, layers, &l));
                const int held = l.end_layer - l.first_layer;
                ZT_CHECK(l.first_layer == next && held >= 1 && held <= previous &&
                             held - layers / stages <= 1,
                         "%d layers over %d stages, stage %d: [%d, %d)", layers, stages, s,
                         l.first_layer, l.end_layer);
                next = l.end_layer;
                previous = held;
            }
            ZT_CHECK(next == layers, "%d layers over %d stages cover %d", layers, stages, next);
        }
    zt_pipeline_layout l;
    ZT_CHECK(zt_pipeline_layout_of(4, 0, 3, 4, &l) == ZT_ERR_INVALID_ARG &&
                 strstr(zt_last_error(), "--pipeline-stages 3: must divide the 4 ranks"),
             "3 stages over 4 ranks refused: %s", zt_last_error());
    ZT_CHECK(zt_pipeline_layout_of(4, 0, 4, 2, &l) == ZT_ERR_INVALID_ARG &&
                 strstr(zt_last_error(), "the model has 2 layers"),
             "4 stages of 2 layers refused: %s", zt_last_error());
}

/* A world of `size` ranks seen from `rank`: rank q's all-gather part is 8 bytes of value
 * 1000 q + i; point-to-point calls record their peer. */
typedef struct scripted {
    int last_peer, sends, recvs, barriers;
} scripted;

static zt_status scripted_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    for (int q = 0; q < c->size; q++)
        for (size_t i = 0; i < bytes; i++)
            ((uint8_t *)recv)[(size_t)q * bytes + i] =
                q == c->rank ? ((const uint8_t *)send)[i] : (uint8_t)(1000 * q + (int)i);
    return ZT_OK;
}
static zt_status scripted_broadcast(zt_comm *c, void *buf, size_t bytes, int root) {
    (void)c, (void)buf, (void)bytes, (void)root;
    return zt_fail(ZT_ERR_INTERNAL, "the view broadcasts through the all-gather");
}
static zt_status scripted_barrier(zt_comm *c) {
    ((scripted *)c->impl)->barriers++;
    return ZT_OK;
}
static zt_status scripted_send(zt_comm *c, const void *buf, size_t bytes, int peer) {
    (void)buf, (void)bytes;
    ((scripted *)c->impl)->last_peer = peer;
    ((scripted *)c->impl)->sends++;
    return ZT_OK;
}
static zt_status scripted_recv(zt_comm *c, void *buf, size_t bytes, int peer) {
    (void)buf, (void)bytes;
    ((scripted *)c->impl)->last_peer = peer;
    ((scripted *)c->impl)->recvs++;
    return ZT_OK;
}
static void scripted_abort(zt_comm *c, int code) {
    (void)c, (void)code;
}
static void scripted_destroy(zt_comm *c) {
    (void)c;
}
static const zt_comm_ops scripted_ops = {"scripted",       scripted_allgather, scripted_broadcast,
                                         scripted_barrier, scripted_send,      scripted_recv,
                                         scripted_abort,   scripted_destroy,   NULL};

static void test_view(void) {
    /* 8 ranks as 2 stages x 4 replicas, seen from rank 5: stage 1 of replica 2 */
    scripted script = {-1, 0, 0, 0};
    zt_comm world = {.ops = &scripted_ops, .rank = 5, .size = 8, .local_rank = 5, .impl = &script};
    zt_pipeline_layout l;
    ZT_CHECK_OK(zt_pipeline_layout_of(8, 5, 2, 4, &l));
    zt_comm *view = NULL;
    ZT_CHECK_OK(zt_comm_replica_view(&world, &l, &view));
    if (!view) return;
    ZT_CHECK(view->size == 4 && view->rank == 2, "rank 5 is replica %d of %d", view->rank,
             view->size);
    uint8_t mine[3] = {7, 8, 9}, got[4 * 3];
    ZT_CHECK_OK(zt_comm_allgather(view, mine, sizeof mine, got));
    /* stage 1's ranks are 1, 3, 5 (this one) and 7, in replica order */
    const int stage_ranks[4] = {1, 3, 5, 7};
    int wrong = 0;
    for (int d = 0; d < 4; d++)
        for (int i = 0; i < 3; i++) {
            const uint8_t want = d == 2 ? mine[i] : (uint8_t)(1000 * stage_ranks[d] + i);
            wrong += got[d * 3 + i] != want;
        }
    ZT_CHECK(wrong == 0, "the view's all-gather holds stage 1's parts: %d wrong", wrong);
    uint8_t value[3] = {1, 2, 3};
    ZT_CHECK_OK(zt_comm_broadcast(view, value, sizeof value, 3));
    ZT_CHECK(value[0] == (uint8_t)(7000) && value[2] == (uint8_t)(7002),
             "broadcast from replica 3 delivers world rank 7's bytes (%d %d)", value[0], value[2]);
    ZT_CHECK_OK(zt_comm_send(view, value, 1, 0));
    ZT_CHECK(script.last_peer == 1 && script.sends == 1, "a send to replica 0 reaches rank %d",
             script.last_peer);
    ZT_CHECK_OK(zt_comm_recv(view, value, 1, 3));
    ZT_CHECK(script.last_peer == 7 && script.recvs == 1, "a receive from replica 3 is rank %d's",
             script.last_peer);
    ZT_CHECK_OK(zt_comm_barrier(view));
    ZT_CHECK(script.barriers == 1, "the view's barrier is the world's");
    ZT_CHECK(zt_comm_broadcast(view, value, 1, 4) == ZT_ERR_INVALID_ARG,
             "broadcast from replica 4 of 4 refused");
    /* the view counts its calls over its 4 replicas: the all-gather of 3 bytes receives 3 x 3,
     * the broadcast from replica 3 receives 3, a byte each way, a barrier; the refused
     * broadcast does not count */
    const zt_comm_op_count view_want[ZT_COMM_OP_KINDS] = {[ZT_COMM_ALLGATHER] = {1, 3, 9},
                                                          [ZT_COMM_BROADCAST] = {1, 0, 3},
                                                          [ZT_COMM_SEND] = {1, 1, 0},
                                                          [ZT_COMM_RECV] = {1, 0, 1},
                                                          [ZT_COMM_BARRIER] = {1, 0, 0}};
    /* the world carries both as all-gathers of 3 bytes over its 8 ranks (7 x 3 received) */
    const zt_comm_op_count world_want[ZT_COMM_OP_KINDS] = {[ZT_COMM_ALLGATHER] = {2, 6, 42},
                                                           [ZT_COMM_SEND] = {1, 1, 0},
                                                           [ZT_COMM_RECV] = {1, 0, 1},
                                                           [ZT_COMM_BARRIER] = {1, 0, 0}};
    for (int k = 0; k < ZT_COMM_OP_KINDS; k++) {
        const zt_comm_op_count *v = &view->traffic.op[k], *w = &world.traffic.op[k];
        ZT_CHECK(v->calls == view_want[k].calls && v->sent == view_want[k].sent &&
                     v->received == view_want[k].received,
                 "the view counted %s: %llu calls, %llu sent, %llu received",
                 zt_comm_op_name((zt_comm_op_kind)k), (unsigned long long)v->calls,
                 (unsigned long long)v->sent, (unsigned long long)v->received);
        ZT_CHECK(w->calls == world_want[k].calls && w->sent == world_want[k].sent &&
                     w->received == world_want[k].received,
                 "the world counted %s: %llu calls, %llu sent, %llu received",
                 zt_comm_op_name((zt_comm_op_kind)k), (unsigned long long)w->calls,
                 (unsigned long long)w->sent, (unsigned long long)w->received);
    }
    zt_comm_destroy(view);
}

int main(void) {
    test_layout();
    test_view();
    return zt_test_finish("pipeline_layout");
}
