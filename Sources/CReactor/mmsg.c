// CReactor: batched UDP I/O over recvmmsg/sendmmsg, and the one-per-syscall baseline.
//
// The batch contract: the caller owns the bytes (d[i].data, d[i].cap) and the
// CReactor_dgram array; this file owns only the kernel-facing scratch
// (mmsghdr, iovec, sockaddr_storage, cmsg), allocated once per CReactor_mmsg.
// One syscall per batch; nothing allocated per datagram.
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


struct CReactor_mmsg {
    int capacity;
    int cached_fd;
    int cached_v6;
    struct mmsghdr *hdrs;
    struct iovec *iovs;
    struct sockaddr_storage *names;
    uint8_t *cmsgs; // capacity * CREACTOR_CMSG_SPACE
};

CReactor_mmsg *CReactor_mmsg_create(int capacity) {
    if (capacity <= 0 || capacity > 4096) return NULL;
    CReactor_mmsg *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->capacity = capacity;
    m->cached_fd = -1;
    m->hdrs = calloc((size_t)capacity, sizeof(*m->hdrs));
    m->iovs = calloc((size_t)capacity, sizeof(*m->iovs));
    m->names = calloc((size_t)capacity, sizeof(*m->names));
    m->cmsgs = aligned_alloc(64, (size_t)capacity * CREACTOR_CMSG_SPACE);
    if (!m->hdrs || !m->iovs || !m->names || !m->cmsgs) {
        CReactor_mmsg_destroy(m);
        return NULL;
    }
    return m;
}

void CReactor_mmsg_destroy(CReactor_mmsg *m) {
    if (!m) return;
    free(m->hdrs);
    free(m->iovs);
    free(m->names);
    free(m->cmsgs);
    free(m);
}

int CReactor_mmsg_capacity(const CReactor_mmsg *m) { return m->capacity; }

int CReactor_is_v6_socket(int fd) {
    int dom = 0;
    socklen_t l = sizeof(dom);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0) return 0;
    return dom == AF_INET6;
}

static int is_v6(CReactor_mmsg *m, int fd) {
    if (m->cached_fd != fd) {
        m->cached_fd = fd;
        m->cached_v6 = CReactor_is_v6_socket(fd);
    }
    return m->cached_v6;
}

void CReactor_parse_cmsgs(struct msghdr *msg, CReactor_dgram *d) {
    d->segment = 0;
    d->ifindex = 0;
    memset(&d->local, 0, sizeof(d->local));
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int seg;
            memcpy(&seg, CMSG_DATA(c), sizeof(seg));
            d->segment = (uint16_t)seg;
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            d->local.family = AF_INET;
            memcpy(d->local.addr, &pi.ipi_addr, 4);
            d->ifindex = (uint32_t)pi.ipi_ifindex;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            if (IN6_IS_ADDR_V4MAPPED(&pi.ipi6_addr)) {
                d->local.family = AF_INET;
                memcpy(d->local.addr, &pi.ipi6_addr.s6_addr[12], 4);
            } else {
                d->local.family = AF_INET6;
                memcpy(d->local.addr, &pi.ipi6_addr, 16);
            }
            d->ifindex = pi.ipi6_ifindex;
        }
    }
}

size_t CReactor_build_cmsgs(const CReactor_dgram *d, int v6sock, void *buf, size_t cap) {
    size_t used = 0;
    struct msghdr tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.msg_control = buf;
    tmp.msg_controllen = cap;
    struct cmsghdr *c = CMSG_FIRSTHDR(&tmp);
    if (d->segment > 0 && d->len > d->segment && c) {
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = d->segment;
        memcpy(CMSG_DATA(c), &seg, sizeof(seg));
        used += CMSG_SPACE(sizeof(uint16_t));
        tmp.msg_controllen = used;
        c = (used + CMSG_SPACE(sizeof(struct in6_pktinfo)) <= cap) ? (struct cmsghdr *)((uint8_t *)buf + used) : NULL;
    }
    if (d->local.family != 0 && c) {
        if (d->local.family == AF_INET && !v6sock) {
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
            struct in_pktinfo pi;
            memset(&pi, 0, sizeof(pi));
            memcpy(&pi.ipi_spec_dst, d->local.addr, 4);
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
            used += CMSG_SPACE(sizeof(struct in_pktinfo));
        } else {
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
            struct in6_pktinfo pi;
            memset(&pi, 0, sizeof(pi));
            if (d->local.family == AF_INET) {
                pi.ipi6_addr.s6_addr[10] = 0xff;
                pi.ipi6_addr.s6_addr[11] = 0xff;
                memcpy(&pi.ipi6_addr.s6_addr[12], d->local.addr, 4);
            } else {
                memcpy(&pi.ipi6_addr, d->local.addr, 16);
            }
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
            used += CMSG_SPACE(sizeof(struct in6_pktinfo));
        }
    }
    return used;
}

int CReactor_recvmmsg(int fd, CReactor_mmsg *m, CReactor_dgram *d, int n) {
    if (n > m->capacity) n = m->capacity;
    for (int i = 0; i < n; i++) {
        m->iovs[i].iov_base = d[i].data;
        m->iovs[i].iov_len = d[i].cap;
        struct msghdr *h = &m->hdrs[i].msg_hdr;
        h->msg_name = &m->names[i];
        h->msg_namelen = sizeof(m->names[i]);
        h->msg_iov = &m->iovs[i];
        h->msg_iovlen = 1;
        h->msg_control = m->cmsgs + (size_t)i * CREACTOR_CMSG_SPACE;
        h->msg_controllen = CREACTOR_CMSG_SPACE;
        h->msg_flags = 0;
    }
    int r = recvmmsg(fd, m->hdrs, (unsigned)n, MSG_DONTWAIT, NULL);
    if (r < 0) return -errno;
    for (int i = 0; i < r; i++) {
        struct msghdr *h = &m->hdrs[i].msg_hdr;
        d[i].len = m->hdrs[i].msg_len;
        CReactor_endpoint_from_sockaddr(&m->names[i], h->msg_namelen, &d[i].peer);
        CReactor_parse_cmsgs(h, &d[i]);
        // A truncated datagram is reported with len > cap so the caller can count and drop it.
        if (h->msg_flags & MSG_TRUNC) d[i].len = d[i].cap + 1;
    }
    return r;
}

int CReactor_sendmmsg(int fd, CReactor_mmsg *m, const CReactor_dgram *d, int n) {
    if (n > m->capacity) n = m->capacity;
    int v6 = is_v6(m, fd);
    for (int i = 0; i < n; i++) {
        m->iovs[i].iov_base = d[i].data;
        m->iovs[i].iov_len = d[i].len;
        struct msghdr *h = &m->hdrs[i].msg_hdr;
        socklen_t nl = 0;
        if (v6 && d[i].peer.family == AF_INET) CReactor_endpoint_to_mapped(&d[i].peer, &m->names[i], &nl);
        else if (CReactor_endpoint_to_sockaddr(&d[i].peer, &m->names[i], &nl) < 0) nl = 0;
        h->msg_name = nl ? &m->names[i] : NULL;
        h->msg_namelen = nl;
        h->msg_iov = &m->iovs[i];
        h->msg_iovlen = 1;
        uint8_t *cbuf = m->cmsgs + (size_t)i * CREACTOR_CMSG_SPACE;
        size_t cl = (d[i].segment || d[i].local.family) ? CReactor_build_cmsgs(&d[i], v6, cbuf, CREACTOR_CMSG_SPACE) : 0;
        h->msg_control = cl ? cbuf : NULL;
        h->msg_controllen = cl;
        h->msg_flags = 0;
    }
    int r = sendmmsg(fd, m->hdrs, (unsigned)n, MSG_DONTWAIT);
    return r < 0 ? -errno : r;
}

int CReactor_recvfrom(int fd, CReactor_dgram *d) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    ssize_t r = recvfrom(fd, d->data, d->cap, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
    if (r < 0) return -errno;
    d->len = (uint32_t)r;
    d->segment = 0;
    CReactor_endpoint_from_sockaddr(&ss, sl, &d->peer);
    return (int)r;
}

int CReactor_sendto(int fd, const CReactor_dgram *d) {
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    // The baseline path: the socket must be of the peer's family (no v4-mapping here).
    if (CReactor_endpoint_to_sockaddr(&d->peer, &ss, &sl) < 0) return -EAFNOSUPPORT;
    ssize_t r = sendto(fd, d->data, d->len, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
    return r < 0 ? -errno : (int)r;
}
