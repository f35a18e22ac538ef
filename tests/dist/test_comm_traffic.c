/* What the one-process communicator counts (src/dist/comm.h, zt_comm_traffic), and the summary
 * line's text: one process sends and receives nothing, whatever its calls hand over, yet every
 * successful call is counted and a refused one is not. The kinds with peers are counted by the
 * same calls in test_comm_mpi.c, test_comm_tcp.c and test_pipeline_layout.c. */
#include <stdint.h>
#include <string.h>

#include "core/status.h"
#include "dist/comm.h"
#include "zt_test.h"

static void test_single(void) {
    zt_comm *c = NULL;
    ZT_REQUIRE_OK(zt_comm_single_create(&c));
    double mine[4] = {1, 2, 3, 4}, all[4];
    ZT_CHECK_OK(zt_comm_allgather(c, mine, sizeof mine, all));
    ZT_CHECK(memcmp(mine, all, sizeof mine) == 0, "one process gathers its own part");
    ZT_CHECK_OK(zt_comm_allgather(c, mine, sizeof mine, all));
    ZT_CHECK_OK(zt_comm_broadcast(c, mine, sizeof mine, 0));
    ZT_CHECK(zt_comm_broadcast(c, mine, sizeof mine, 1) == ZT_ERR_INVALID_ARG,
             "a broadcast from rank 1 of 1 is refused");
    ZT_CHECK_OK(zt_comm_barrier(c));
    ZT_CHECK(zt_comm_send(c, mine, 8, 1) == ZT_ERR_INVALID_ARG, "a send is refused");
    ZT_CHECK(zt_comm_recv(c, mine, 8, 1) == ZT_ERR_INVALID_ARG, "a receive is refused");
    const uint64_t want_calls[ZT_COMM_OP_KINDS] = {
        [ZT_COMM_ALLGATHER] = 2, [ZT_COMM_BROADCAST] = 1, [ZT_COMM_BARRIER] = 1};
    for (int k = 0; k < ZT_COMM_OP_KINDS; k++) {
        const zt_comm_op_count *n = &c->traffic.op[k];
        ZT_CHECK(n->calls == want_calls[k] && n->sent == 0 && n->received == 0,
                 "single %s: %llu calls (want %llu), %llu sent, %llu received",
                 zt_comm_op_name((zt_comm_op_kind)k), (unsigned long long)n->calls,
                 (unsigned long long)want_calls[k], (unsigned long long)n->sent,
                 (unsigned long long)n->received);
    }
    ZT_CHECK(zt_comm_traffic_sent(&c->traffic) == 0 && zt_comm_traffic_received(&c->traffic) == 0,
             "one process: no bytes");
    zt_comm_destroy(c);
}

static void test_sums_and_text(void) {
    zt_comm_traffic t;
    memset(&t, 0, sizeof t);
    t.op[ZT_COMM_ALLGATHER] = (zt_comm_op_count){3, 396, 792};
    t.op[ZT_COMM_SEND] = (zt_comm_op_count){2, 4096, 0};
    t.op[ZT_COMM_RECV] = (zt_comm_op_count){1, 0, 64};
    t.op[ZT_COMM_BARRIER] = (zt_comm_op_count){1, 0, 0};
    ZT_CHECK(zt_comm_traffic_sent(&t) == 396 + 4096, "sent %llu",
             (unsigned long long)zt_comm_traffic_sent(&t));
    ZT_CHECK(zt_comm_traffic_received(&t) == 792 + 64, "received %llu",
             (unsigned long long)zt_comm_traffic_received(&t));
    char text[512];
    zt_comm_traffic_format(&t, text, sizeof text);
    const char *want = "sent 4492 bytes, received 856 bytes; allgather 3 calls (sent 396, "
                       "received 792); broadcast 0 calls (sent 0, received 0); send 2 calls "
                       "(sent 4096, received 0); recv 1 calls (sent 0, received 64); barrier 1 "
                       "calls (sent 0, received 0)";
    ZT_CHECK(strcmp(text, want) == 0, "the summary reads: %s", text);
    /* a short buffer is cut, never overrun */
    char small[24];
    memset(small, 'x', sizeof small);
    zt_comm_traffic_format(&t, small, 20);
    ZT_CHECK(strlen(small) == 19 && small[20] == 'x', "cut to %zu characters", strlen(small));
}

int main(void) {
    test_single();
    test_sums_and_text();
    return zt_test_finish("comm_traffic");
}
