/* The TCP communicator: ranks started without MPI by a torchrun-style launcher (RANK,
 * WORLD_SIZE, MASTER_ADDR, MASTER_PORT). A star around rank 0: every other rank connects to it,
 * so rank 0 relays each collective. A ZO step moves a few hundred bytes, so the relay costs
 * nothing that matters, and a rank that dies closes its socket, which every other rank sees at
 * its next collective at the latest. Each message carries its length, so ranks that disagree on
 * what they exchange (started with other options) fail with a clear error instead of reading
 * garbage. Point-to-point messages go directly between the two ranks: each rank listens on a port
 * of its own, and the lower rank of a pair connects to the higher one at their first message. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/status.h"
#include "dist/comm.h"

enum { HELLO_MAGIC = 0x7A74636Fu /* "ztco" */ };

typedef struct tcp_state {
    int *fd;          /* rank 0: (size) one socket per peer, fd[0] unused; others: fd[0] */
    double timeout_s; /* the longest a rank waits for a peer */
    int listener;     /* point to point: this rank's port, which higher ranks connect to */
    uint32_t *ip;     /* (size) every rank's address and port, network order */
    uint32_t *port;
    int *direct; /* (size) the point-to-point socket to each rank, -1 until the first message */
} tcp_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static tcp_state *state(const zt_comm *c) {
    return c->impl;
}

/* Waits until fd is ready for `events` or the deadline passes. */
static zt_status wait_ready(const zt_comm *c, int fd, short events, double deadline, int peer,
                            const char *what) {
    for (;;) {
        const double left = deadline - now_s();
        if (left <= 0 && peer < 0)
            return zt_fail(ZT_ERR_IO,
                           "rank 0 of %d: not every rank joined within %.0f s (--comm-timeout)",
                           c->size, state(c)->timeout_s);
        if (left <= 0)
            return zt_fail(ZT_ERR_IO,
                           "rank %d of %d: no word from rank %d within %.0f s while %s "
                           "(--comm-timeout): it hangs or died",
                           c->rank, c->size, peer, state(c)->timeout_s, what);
        struct pollfd p = {fd, events, 0};
        const int n = poll(&p, 1, left > 1e6 ? 1000000000 : (int)(left * 1000.0) + 1);
        if (n > 0) return ZT_OK;
        if (n < 0 && errno != EINTR)
            return zt_fail(ZT_ERR_IO, "rank %d: poll: %s", c->rank, strerror(errno));
    }
}

static zt_status send_all(const zt_comm *c, int fd, const void *data, size_t n, int peer) {
    const char *p = data;
    const double deadline = now_s() + state(c)->timeout_s;
    while (n > 0) {
        ZT_TRY(wait_ready(c, fd, POLLOUT, deadline, peer, "sending"));
        const ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0)
            return zt_fail(ZT_ERR_IO, "rank %d of %d: sending to rank %d: %s (it ended or failed)",
                           c->rank, c->size, peer, k < 0 ? strerror(errno) : "closed");
        p += k;
        n -= (size_t)k;
    }
    return ZT_OK;
}

static zt_status recv_all(const zt_comm *c, int fd, void *data, size_t n, int peer) {
    char *p = data;
    const double deadline = now_s() + state(c)->timeout_s;
    while (n > 0) {
        ZT_TRY(wait_ready(c, fd, POLLIN, deadline, peer, "waiting for it"));
        const ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0)
            return zt_fail(ZT_ERR_IO,
                           "rank %d of %d: rank %d closed the connection (%s): it ended or failed",
                           c->rank, c->size, peer, k < 0 ? strerror(errno) : "end of stream");
        p += k;
        n -= (size_t)k;
    }
    return ZT_OK;
}

/* A message: its length (u64), then its bytes. */
static zt_status send_message(const zt_comm *c, int fd, const void *data, size_t n, int peer) {
    const uint64_t length = n;
    ZT_TRY(send_all(c, fd, &length, sizeof length, peer));
    return send_all(c, fd, data, n, peer);
}

static zt_status recv_message(const zt_comm *c, int fd, void *data, size_t n, int peer) {
    uint64_t length = 0;
    ZT_TRY(recv_all(c, fd, &length, sizeof length, peer));
    if (length != n)
        return zt_fail(ZT_ERR_CONFLICT,
                       "rank %d of %d: rank %d sent %llu bytes where %zu were due: were the ranks "
                       "started with the same options?",
                       c->rank, c->size, peer, (unsigned long long)length, n);
    return recv_all(c, fd, data, n, peer);
}

static zt_status tcp_allgather(zt_comm *c, const void *send, size_t bytes, void *recv) {
    tcp_state *t = state(c);
    char *out = recv;
    if (c->rank != 0) {
        ZT_TRY(send_message(c, t->fd[0], send, bytes, 0));
        return recv_message(c, t->fd[0], recv, bytes * (size_t)c->size, 0);
    }
    if (bytes > 0) memmove(out, send, bytes);
    for (int q = 1; q < c->size; q++)
        ZT_TRY(recv_message(c, t->fd[q], out + (size_t)q * bytes, bytes, q));
    for (int q = 1; q < c->size; q++)
        ZT_TRY(send_message(c, t->fd[q], out, bytes * (size_t)c->size, q));
    return ZT_OK;
}

static zt_status tcp_broadcast(zt_comm *c, void *buf, size_t bytes, int root) {
    tcp_state *t = state(c);
    if (root < 0 || root >= c->size)
        return zt_fail(ZT_ERR_INVALID_ARG, "broadcast from rank %d of %d", root, c->size);
    if (c->rank != 0) {
        if (c->rank == root) return send_message(c, t->fd[0], buf, bytes, 0);
        return recv_message(c, t->fd[0], buf, bytes, 0);
    }
    if (root != 0) ZT_TRY(recv_message(c, t->fd[root], buf, bytes, root));
    for (int q = 1; q < c->size; q++)
        if (q != root) ZT_TRY(send_message(c, t->fd[q], buf, bytes, q));
    return ZT_OK;
}

static zt_status tcp_barrier(zt_comm *c) {
    uint8_t mine = 1;
    uint8_t *all = zt_malloc((size_t)c->size);
    if (!all) return zt_fail(ZT_ERR_NOMEM, "barrier of %d ranks", c->size);
    zt_status s = tcp_allgather(c, &mine, 1, all);
    free(all);
    return s;
}

static void tune_socket(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static zt_status check_peer(const zt_comm *c, int peer) {
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return zt_fail(ZT_ERR_INVALID_ARG, "rank %d of %d: a message with rank %d", c->rank,
                       c->size, peer);
    return ZT_OK;
}

/* The socket to `peer`: the lower rank connects, the higher one accepts (and keeps the
 * connections of other ranks that arrive first). */
static zt_status direct_link(zt_comm *c, int peer, int *out) {
    tcp_state *t = state(c);
    const double deadline = now_s() + t->timeout_s;
    while (t->direct[peer] < 0 && c->rank < peer) {
        struct sockaddr_in addr;
        memset(&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = t->ip[peer];
        addr.sin_port = htons((uint16_t)t->port[peer]);
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            const int e = errno;
            if (fd >= 0) close(fd);
            return zt_fail(ZT_ERR_IO, "rank %d of %d: connecting to rank %d: %s (it ended?)",
                           c->rank, c->size, peer, strerror(e));
        }
        tune_socket(fd);
        t->direct[peer] = fd;
        const uint32_t hello[2] = {HELLO_MAGIC, (uint32_t)c->rank};
        ZT_TRY(send_all(c, fd, hello, sizeof hello, peer));
    }
    while (t->direct[peer] < 0) {
        ZT_TRY(wait_ready(c, t->listener, POLLIN, deadline, peer, "waiting for it to connect"));
        const int fd = accept(t->listener, NULL, NULL);
        if (fd < 0) return zt_fail(ZT_ERR_IO, "rank %d: accept: %s", c->rank, strerror(errno));
        tune_socket(fd);
        uint32_t hello[2] = {0, 0};
        zt_status s = recv_all(c, fd, hello, sizeof hello, -1);
        if (s == ZT_OK &&
            (hello[0] != HELLO_MAGIC || hello[1] >= (uint32_t)c->rank || t->direct[hello[1]] >= 0))
            s = zt_fail(ZT_ERR_CONFLICT, "rank %d: a connection announced rank %u", c->rank,
                        hello[1]);
        if (s != ZT_OK) {
            close(fd);
            return s;
        }
        t->direct[hello[1]] = fd;
    }
    *out = t->direct[peer];
    return ZT_OK;
}

static zt_status tcp_send(zt_comm *c, const void *buf, size_t bytes, int peer) {
    int fd = -1;
    ZT_TRY(check_peer(c, peer));
    ZT_TRY(direct_link(c, peer, &fd));
    return send_message(c, fd, buf, bytes, peer);
}

static zt_status tcp_recv(zt_comm *c, void *buf, size_t bytes, int peer) {
    int fd = -1;
    ZT_TRY(check_peer(c, peer));
    ZT_TRY(direct_link(c, peer, &fd));
    return recv_message(c, fd, buf, bytes, peer);
}

static void close_socket(int *fd) {
    if (*fd >= 0) {
        shutdown(*fd, SHUT_RDWR);
        close(*fd);
        *fd = -1;
    }
}

static void close_all(zt_comm *c) {
    tcp_state *t = state(c);
    for (int q = 0; t->direct && q < c->size; q++)
        close_socket(&t->direct[q]);
    close_socket(&t->listener);
    for (int q = 0; q < (c->rank == 0 ? c->size : 1); q++)
        close_socket(&t->fd[q]);
}

/* The other ranks see the closed sockets at their next (or current) collective and fail. */
static void tcp_abort(zt_comm *c, int code) {
    (void)code;
    close_all(c);
}

static void tcp_destroy(zt_comm *c) {
    close_all(c);
    free(state(c)->fd);
    free(state(c)->direct);
    free(state(c)->ip);
    free(state(c)->port);
    free(state(c));
    free(c);
}

static const zt_comm_ops tcp_ops = {"tcp",    tcp_allgather, tcp_broadcast, tcp_barrier, tcp_send,
                                    tcp_recv, tcp_abort,     tcp_destroy,   NULL};

/* Rank 0: accepts the other size - 1 ranks, each announcing itself with (magic, rank, size). */
static zt_status accept_peers(zt_comm *c, int port) {
    tcp_state *t = state(c);
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) return zt_fail(ZT_ERR_IO, "rank 0: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons((uint16_t)port);
    zt_status s = ZT_OK;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, c->size) != 0)
        s = zt_fail(ZT_ERR_IO, "rank 0: listening on MASTER_PORT=%d: %s", port, strerror(errno));
    const double deadline = now_s() + t->timeout_s;
    for (int joined = 1; s == ZT_OK && joined < c->size; joined++) {
        s = wait_ready(c, listener, POLLIN, deadline, -1, "waiting for the ranks to join");
        const int fd = s == ZT_OK ? accept(listener, NULL, NULL) : -1;
        if (s == ZT_OK && fd < 0) s = zt_fail(ZT_ERR_IO, "rank 0: accept: %s", strerror(errno));
        uint32_t hello[3] = {0, 0, 0};
        if (s == ZT_OK) {
            tune_socket(fd);
            s = recv_all(c, fd, hello, sizeof hello, -1);
        }
        if (s == ZT_OK && (hello[0] != HELLO_MAGIC || hello[2] != (uint32_t)c->size ||
                           hello[1] == 0 || hello[1] >= (uint32_t)c->size || t->fd[hello[1]] >= 0))
            s = zt_fail(ZT_ERR_CONFLICT,
                        "rank 0: a peer announced rank %u of %u (WORLD_SIZE here is %d, or that "
                        "rank joined twice)",
                        hello[1], hello[2], c->size);
        if (s == ZT_OK)
            t->fd[hello[1]] = fd;
        else if (fd >= 0)
            close(fd);
    }
    close(listener);
    return s;
}

/* Every other rank: connects to rank 0, retrying while it starts up. */
static zt_status join_root(zt_comm *c, const char *host, int port) {
    tcp_state *t = state(c);
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    const double deadline = now_s() + t->timeout_s;
    for (;;) {
        struct addrinfo hints, *found = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        const int rc = getaddrinfo(host, service, &hints, &found);
        if (rc != 0)
            return zt_fail(ZT_ERR_IO, "rank %d: MASTER_ADDR=%s: %s", c->rank, host,
                           gai_strerror(rc));
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        const int ok = fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0;
        freeaddrinfo(found);
        if (ok) {
            tune_socket(fd);
            t->fd[0] = fd;
            const uint32_t hello[3] = {HELLO_MAGIC, (uint32_t)c->rank, (uint32_t)c->size};
            return send_all(c, fd, hello, sizeof hello, 0);
        }
        if (fd >= 0) close(fd);
        if (now_s() > deadline)
            return zt_fail(ZT_ERR_IO,
                           "rank %d: could not reach rank 0 at %s:%d within %.0f s "
                           "(--comm-timeout)",
                           c->rank, host, port, t->timeout_s);
        struct timespec nap = {0, 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

/* Every rank's listening port, and its address as rank 0 saw it connect (rank 0's own as the
 * other ranks reached it). */
static zt_status direct_setup(zt_comm *c) {
    tcp_state *t = state(c);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof addr;
    t->listener = socket(AF_INET, SOCK_STREAM, 0);
    if (t->listener < 0 || bind(t->listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(t->listener, c->size) != 0 ||
        getsockname(t->listener, (struct sockaddr *)&addr, &len) != 0)
        return zt_fail(ZT_ERR_IO, "rank %d: listening for point-to-point messages: %s", c->rank,
                       strerror(errno));
    const uint32_t mine = ntohs(addr.sin_port);
    ZT_TRY(tcp_allgather(c, &mine, sizeof mine, t->port));
    for (int q = 0; q < (c->rank == 0 ? c->size : 1); q++) {
        len = sizeof addr;
        if ((c->rank == 0) == (q == 0)) continue; /* rank 0 has no socket to itself */
        if (getpeername(t->fd[q], (struct sockaddr *)&addr, &len) != 0)
            return zt_fail(ZT_ERR_IO, "rank %d: getpeername: %s", c->rank, strerror(errno));
        t->ip[c->rank == 0 ? q : 0] = addr.sin_addr.s_addr;
    }
    uint32_t root_ip = t->ip[0];
    ZT_TRY(tcp_broadcast(c, t->ip, (size_t)c->size * sizeof *t->ip, 0));
    t->ip[0] = root_ip;
    return ZT_OK;
}

zt_status zt_comm_tcp_create(int rank, int size, int local_rank, const char *host, int port,
                             double timeout_s, zt_comm **out) {
    *out = NULL;
    if (size < 1 || rank < 0 || rank >= size)
        return zt_fail(ZT_ERR_INVALID_ARG, "RANK=%d is not in 0 .. WORLD_SIZE-1 = %d", rank,
                       size - 1);
    if (port <= 0 || port > 65535)
        return zt_fail(ZT_ERR_INVALID_ARG, "MASTER_PORT=%d: not a port", port);
    if (!(timeout_s > 0)) return zt_fail(ZT_ERR_INVALID_ARG, "--comm-timeout must be positive");
    zt_comm *c = zt_calloc(1, sizeof *c);
    tcp_state *t = zt_calloc(1, sizeof *t);
    int *fd = zt_malloc((size_t)size * sizeof *fd), *direct = zt_malloc((size_t)size * sizeof *fd);
    uint32_t *ip = zt_calloc((size_t)size, sizeof *ip),
             *ports = zt_calloc((size_t)size, sizeof *ip);
    if (!c || !t || !fd || !direct || !ip || !ports) {
        free(c), free(t), free(fd), free(direct), free(ip), free(ports);
        return zt_fail(ZT_ERR_NOMEM, "allocating the communicator");
    }
    for (int q = 0; q < size; q++)
        fd[q] = direct[q] = -1;
    t->fd = fd;
    t->direct = direct;
    t->ip = ip;
    t->port = ports;
    t->listener = -1;
    t->timeout_s = timeout_s;
    c->ops = &tcp_ops;
    c->impl = t;
    c->rank = rank;
    c->size = size;
    c->local_rank = local_rank;
    zt_status s = size == 1 ? ZT_OK : rank == 0 ? accept_peers(c, port) : join_root(c, host, port);
    /* every rank has joined before any rank starts work: a missing one fails the start */
    if (s == ZT_OK && size > 1) s = tcp_barrier(c);
    if (s == ZT_OK && size > 1) s = direct_setup(c);
    if (s != ZT_OK) {
        tcp_destroy(c);
        return s;
    }
    *out = c;
    return ZT_OK;
}
