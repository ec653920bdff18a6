// CReactor: io_uring through liburing, the liburing way (examples/io_uring-udp.c):
// multishot recvmsg into a provided-buffer ring, user_data naming the operation,
// completions reaped in batches.
//
// Two rings: `rx` carries the long-lived multishot receives (its fd is polled by
// the reactor's epoll); `tx` carries send batches, which complete inline because
// every send is MSG_DONTWAIT (the kernel fails it with EAGAIN instead of arming
// poll), so a batch costs one io_uring_enter and never mixes with receive
// completions.
#include "internal.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_GROUPS 64
#define TX_BATCH 256

struct group {
    int used;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    uint8_t *slab;
    unsigned count;  // ring entries
    unsigned nbufs;  // buffer ids 0..<nbufs, at slab + id * size
    unsigned size;
    int pending; // posted, not yet published
    struct msghdr msg; // template for the multishot recvmsg: name and control lengths
};

struct CReactor_uring {
    struct io_uring rx;
    struct io_uring tx;
    struct group groups[MAX_GROUPS];
    struct msghdr tx_msgs[TX_BATCH];
    struct iovec tx_iovs[TX_BATCH];
    struct sockaddr_storage tx_names[TX_BATCH];
    uint8_t tx_cmsgs[TX_BATCH][CREACTOR_CMSG_SPACE];
    int tx_fd;
    int tx_v6;
};

CReactor_uring *CReactor_uring_create(unsigned entries, int *err) {
    CReactor_uring *u = calloc(1, sizeof(*u));
    if (!u) {
        *err = -ENOMEM;
        return NULL;
    }
    int r = io_uring_queue_init(entries, &u->rx, 0);
    if (r < 0) {
        free(u);
        *err = r;
        return NULL;
    }
    r = io_uring_queue_init(TX_BATCH * 2, &u->tx, 0);
    if (r < 0) {
        io_uring_queue_exit(&u->rx);
        free(u);
        *err = r;
        return NULL;
    }
    u->tx_fd = -1;
    *err = 0;
    return u;
}

void CReactor_uring_destroy(CReactor_uring *u) {
    if (!u) return;
    for (int g = 0; g < MAX_GROUPS; g++) {
        if (!u->groups[g].used) continue;
        io_uring_unregister_buf_ring(&u->rx, g);
        munmap(u->groups[g].br, u->groups[g].br_bytes);
    }
    io_uring_queue_exit(&u->rx);
    io_uring_queue_exit(&u->tx);
    free(u);
}

int CReactor_uring_fd(const CReactor_uring *u) { return u->rx.ring_fd; }

int CReactor_uring_register_buffer_ring(CReactor_uring *u, uint16_t bgid, uint8_t *slab, unsigned count, unsigned nbufs,
                                        unsigned size) {
    if (bgid >= MAX_GROUPS || u->groups[bgid].used) return -EINVAL;
    if (count == 0 || (count & (count - 1)) != 0 || count > 32768) return -EINVAL;
    if (nbufs == 0 || nbufs > 65536) return -EINVAL;
    struct group *g = &u->groups[bgid];
    g->br_bytes = (size_t)count * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, g->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    g->br = mem;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)mem;
    reg.ring_entries = count;
    reg.bgid = bgid;
    int r = io_uring_register_buf_ring(&u->rx, &reg, 0);
    if (r < 0) {
        munmap(mem, g->br_bytes);
        return r;
    }
    io_uring_buf_ring_init(g->br);
    g->used = 1;
    g->slab = slab;
    g->count = count;
    g->nbufs = nbufs;
    g->size = size;
    g->pending = 0;
    memset(&g->msg, 0, sizeof(g->msg));
    g->msg.msg_namelen = sizeof(struct sockaddr_storage);
    g->msg.msg_controllen = CREACTOR_CMSG_SPACE;
    return 0;
}

void CReactor_uring_provide_buffer(CReactor_uring *u, uint16_t bgid, uint16_t bid) {
    struct group *g = &u->groups[bgid];
    io_uring_buf_ring_add(g->br, g->slab + (size_t)bid * g->size, g->size, bid, io_uring_buf_ring_mask(g->count),
                          g->pending);
    g->pending++;
}

void CReactor_uring_provide_commit(CReactor_uring *u, uint16_t bgid) {
    struct group *g = &u->groups[bgid];
    if (g->pending) {
        io_uring_buf_ring_advance(g->br, g->pending);
        g->pending = 0;
    }
}

int CReactor_uring_recvmsg_multishot(CReactor_uring *u, int fd, uint16_t bgid, uint64_t user_data) {
    if (bgid >= MAX_GROUPS || !u->groups[bgid].used) return -EINVAL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->rx);
    if (!sqe) return -EBUSY;
    io_uring_prep_recvmsg_multishot(sqe, fd, &u->groups[bgid].msg, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int CReactor_uring_cancel(CReactor_uring *u, uint64_t user_data) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->rx);
    if (!sqe) return -EBUSY;
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, 0);
    return 0;
}

int CReactor_uring_submit(CReactor_uring *u) { return io_uring_submit(&u->rx); }

int CReactor_uring_reap(CReactor_uring *u, CReactor_cqe *out, int max) {
    struct io_uring_cqe *cqes[256];
    if (max > 256) max = 256;
    unsigned n = io_uring_peek_batch_cqe(&u->rx, cqes, (unsigned)max);
    for (unsigned i = 0; i < n; i++) {
        out[i].user_data = io_uring_cqe_get_data64(cqes[i]);
        out[i].res = cqes[i]->res;
        out[i].flags = cqes[i]->flags;
    }
    io_uring_cq_advance(&u->rx, n);
    return (int)n;
}

int CReactor_uring_parse_recvmsg(CReactor_uring *u, uint16_t bgid, uint16_t bid, int32_t res, CReactor_dgram *out) {
    struct group *g = &u->groups[bgid];
    if (bid >= g->nbufs || res < 0) return -EINVAL;
    uint8_t *buf = g->slab + (size_t)bid * g->size;
    struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, res, &g->msg);
    if (!o) return -EINVAL;
    out->buf_id = bid;
    out->data = io_uring_recvmsg_payload(o, &g->msg);
    out->len = io_uring_recvmsg_payload_length(o, res, &g->msg);
    // What is left of the buffer after the payload start: in-place work may grow into it.
    out->cap = (uint32_t)(g->size - (size_t)(out->data - buf));
    socklen_t nl = o->namelen < sizeof(struct sockaddr_storage) ? o->namelen : sizeof(struct sockaddr_storage);
    CReactor_endpoint_from_sockaddr(io_uring_recvmsg_name(o), nl, &out->peer);
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_control = (uint8_t *)io_uring_recvmsg_name(o) + g->msg.msg_namelen;
    m.msg_controllen = o->controllen;
    CReactor_parse_cmsgs(&m, out);
    if (o->flags & MSG_TRUNC) return -EMSGSIZE;
    return 0;
}

int CReactor_uring_sendmsg_batch(CReactor_uring *u, int fd, const CReactor_dgram *d, int n) {
    if (n > TX_BATCH) n = TX_BATCH;
    if (n <= 0) return 0;
    if (u->tx_fd != fd) {
        u->tx_fd = fd;
        u->tx_v6 = CReactor_is_v6_socket(fd);
    }
    for (int i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->tx);
        if (!sqe) {
            n = i;
            break;
        }
        struct msghdr *h = &u->tx_msgs[i];
        memset(h, 0, sizeof(*h));
        u->tx_iovs[i].iov_base = d[i].data;
        u->tx_iovs[i].iov_len = d[i].len;
        socklen_t nl = 0;
        if (u->tx_v6 && d[i].peer.family == AF_INET) CReactor_endpoint_to_mapped(&d[i].peer, &u->tx_names[i], &nl);
        else if (CReactor_endpoint_to_sockaddr(&d[i].peer, &u->tx_names[i], &nl) < 0) nl = 0;
        h->msg_name = nl ? &u->tx_names[i] : NULL;
        h->msg_namelen = nl;
        h->msg_iov = &u->tx_iovs[i];
        h->msg_iovlen = 1;
        size_t cl = (d[i].segment || d[i].local.family) ? CReactor_build_cmsgs(&d[i], u->tx_v6, u->tx_cmsgs[i], CREACTOR_CMSG_SPACE) : 0;
        h->msg_control = cl ? u->tx_cmsgs[i] : NULL;
        h->msg_controllen = cl;
        io_uring_prep_sendmsg(sqe, fd, h, MSG_DONTWAIT);
        // Linked: after the first failure (EAGAIN) the rest are cancelled, so
        // "count sent" is a prefix and the caller may retry the remainder in order.
        if (i + 1 < n) sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(sqe, (uint64_t)i);
    }
    int r = io_uring_submit_and_wait(&u->tx, (unsigned)n);
    if (r < 0) return r;
    int sent = 0, first_err = 0, seen = 0;
    int ok[TX_BATCH];
    memset(ok, 0, sizeof(int) * (size_t)n);
    while (seen < n) {
        struct io_uring_cqe *cqe;
        int w = io_uring_wait_cqe(&u->tx, &cqe);
        if (w < 0) return sent ? sent : w;
        uint64_t i = io_uring_cqe_get_data64(cqe);
        if (i < (uint64_t)n) {
            if (cqe->res >= 0) ok[i] = 1;
            else if (!first_err && cqe->res != -ECANCELED) first_err = cqe->res;
        }
        io_uring_cqe_seen(&u->tx, cqe);
        seen++;
    }
    while (sent < n && ok[sent]) sent++;
    if (sent == 0 && first_err) return first_err;
    return sent;
}

int CReactor_uring_supported(void) {
    static int cached = -1;
    if (cached >= 0) return cached;
    struct io_uring ring;
    if (io_uring_queue_init(8, &ring, 0) < 0) return cached = 0;
    struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
    int ok = p && io_uring_opcode_supported(p, IORING_OP_RECVMSG) && io_uring_opcode_supported(p, IORING_OP_SENDMSG);
    if (p) io_uring_free_probe(p);
    if (ok) {
        // Provided-buffer rings (5.19+) are what multishot recvmsg (6.0+) needs.
        void *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        struct io_uring_buf_reg reg;
        memset(&reg, 0, sizeof(reg));
        reg.ring_addr = (unsigned long)mem;
        reg.ring_entries = 8;
        reg.bgid = 0;
        ok = mem != MAP_FAILED && io_uring_register_buf_ring(&ring, &reg, 0) == 0;
        if (mem != MAP_FAILED) munmap(mem, 4096);
    }
    io_uring_queue_exit(&ring);
    return cached = ok;
}
