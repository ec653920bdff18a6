// CReactor: sockets, epoll, eventfd, timerfd, signalfd, TUN. See include/CReactor.h.
// Every function returns >= 0 or -errno; policy (retry, would-block, errors) lives in Swift.
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

// <net/if.h> clashes with <linux/if.h>; this is the one declaration needed from it.
extern unsigned int if_nametoindex(const char *ifname);


_Static_assert(sizeof(CReactor_endpoint) == 24, "CReactor_endpoint layout");
_Static_assert(CReactor_EPOLLIN == EPOLLIN && CReactor_EPOLLOUT == EPOLLOUT && CReactor_EPOLLERR == EPOLLERR &&
                   CReactor_EPOLLHUP == EPOLLHUP && CReactor_EPOLLRDHUP == EPOLLRDHUP,
               "epoll flags mirror the kernel's");
_Static_assert(CReactor_IFF_TUN == IFF_TUN && CReactor_IFF_NO_PI == IFF_NO_PI &&
                   CReactor_IFF_MULTI_QUEUE == IFF_MULTI_QUEUE && CReactor_IFF_VNET_HDR == IFF_VNET_HDR,
               "TUN flags mirror the kernel's");
_Static_assert(CReactor_TUN_F_CSUM == TUN_F_CSUM && CReactor_TUN_F_TSO4 == TUN_F_TSO4 &&
                   CReactor_TUN_F_TSO6 == TUN_F_TSO6 && CReactor_TUN_F_TSO_ECN == TUN_F_TSO_ECN,
               "TUN offload flags mirror the kernel's");
// Debian 12's headers (Linux 6.1) predate USO (6.2); newer headers are checked too.
#ifdef TUN_F_USO4
_Static_assert(CReactor_TUN_F_USO4 == TUN_F_USO4 && CReactor_TUN_F_USO6 == TUN_F_USO6, "USO flags mirror the kernel's");
#endif
_Static_assert(sizeof(CReactor_virtio_net_hdr) == sizeof(struct virtio_net_hdr) &&
                   sizeof(struct virtio_net_hdr) == CReactor_VIRTIO_NET_HDR_LEN,
               "virtio_net_hdr size");
_Static_assert(offsetof(CReactor_virtio_net_hdr, flags) == offsetof(struct virtio_net_hdr, flags) &&
                   offsetof(CReactor_virtio_net_hdr, gso_type) == offsetof(struct virtio_net_hdr, gso_type) &&
                   offsetof(CReactor_virtio_net_hdr, hdr_len) == offsetof(struct virtio_net_hdr, hdr_len) &&
                   offsetof(CReactor_virtio_net_hdr, gso_size) == offsetof(struct virtio_net_hdr, gso_size) &&
                   offsetof(CReactor_virtio_net_hdr, csum_start) == offsetof(struct virtio_net_hdr, csum_start) &&
                   offsetof(CReactor_virtio_net_hdr, csum_offset) == offsetof(struct virtio_net_hdr, csum_offset),
               "virtio_net_hdr layout");
_Static_assert(CReactor_VIRTIO_NET_HDR_F_NEEDS_CSUM == VIRTIO_NET_HDR_F_NEEDS_CSUM &&
                   CReactor_VIRTIO_NET_HDR_F_DATA_VALID == VIRTIO_NET_HDR_F_DATA_VALID &&
                   CReactor_VIRTIO_NET_HDR_GSO_NONE == VIRTIO_NET_HDR_GSO_NONE &&
                   CReactor_VIRTIO_NET_HDR_GSO_TCPV4 == VIRTIO_NET_HDR_GSO_TCPV4 &&
                   CReactor_VIRTIO_NET_HDR_GSO_UDP == VIRTIO_NET_HDR_GSO_UDP &&
                   CReactor_VIRTIO_NET_HDR_GSO_TCPV6 == VIRTIO_NET_HDR_GSO_TCPV6 &&
                   CReactor_VIRTIO_NET_HDR_GSO_ECN == VIRTIO_NET_HDR_GSO_ECN,
               "virtio_net_hdr constants mirror the kernel's");
#ifdef VIRTIO_NET_HDR_GSO_UDP_L4
_Static_assert(CReactor_VIRTIO_NET_HDR_GSO_UDP_L4 == VIRTIO_NET_HDR_GSO_UDP_L4, "GSO_UDP_L4 mirrors the kernel's");
#endif
_Static_assert(sizeof(CReactor_iovec) == sizeof(struct iovec) &&
                   offsetof(CReactor_iovec, base) == offsetof(struct iovec, iov_base) &&
                   offsetof(CReactor_iovec, len) == offsetof(struct iovec, iov_len),
               "iovec layout");

#define RET(x)                      \
    do {                            \
        long ret_ = (long)(x);      \
        return ret_ < 0 ? -errno : (int)ret_; \
    } while (0)

// MARK: - Endpoints

int CReactor_endpoint_to_sockaddr(const CReactor_endpoint *ep, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof(*ss));
    if (ep->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(ep->port);
        memcpy(&sin->sin_addr, ep->addr, 4);
        *len = sizeof(*sin);
        return 0;
    }
    if (ep->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(ep->port);
        sin6->sin6_scope_id = ep->scope_id;
        memcpy(&sin6->sin6_addr, ep->addr, 16);
        *len = sizeof(*sin6);
        return 0;
    }
    return -EAFNOSUPPORT;
}

void CReactor_endpoint_to_mapped(const CReactor_endpoint *ep, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(ep->port);
    sin6->sin6_addr.s6_addr[10] = 0xff;
    sin6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&sin6->sin6_addr.s6_addr[12], ep->addr, 4);
    *len = sizeof(*sin6);
}

void CReactor_endpoint_from_sockaddr(const void *sa, socklen_t len, CReactor_endpoint *ep) {
    memset(ep, 0, sizeof(*ep));
    const struct sockaddr *s = sa;
    if (len >= (socklen_t)sizeof(struct sockaddr_in) && s->sa_family == AF_INET) {
        const struct sockaddr_in *sin = sa;
        ep->family = AF_INET;
        ep->port = ntohs(sin->sin_port);
        memcpy(ep->addr, &sin->sin_addr, 4);
    } else if (len >= (socklen_t)sizeof(struct sockaddr_in6) && s->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = sa;
        // A v4-mapped peer on a dual-stack socket is reported as the IPv4 peer it is.
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            ep->family = AF_INET;
            memcpy(ep->addr, &sin6->sin6_addr.s6_addr[12], 4);
        } else {
            ep->family = AF_INET6;
            memcpy(ep->addr, &sin6->sin6_addr, 16);
            ep->scope_id = sin6->sin6_scope_id;
        }
        ep->port = ntohs(sin6->sin6_port);
    }
}

int CReactor_endpoint_parse(const char *ip, uint16_t port, CReactor_endpoint *out) {
    memset(out, 0, sizeof(*out));
    out->port = port;
    if (inet_pton(AF_INET, ip, out->addr) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, out->addr) == 1) {
        out->family = AF_INET6;
        return 0;
    }
    return -EINVAL;
}

int CReactor_endpoint_ntop(const CReactor_endpoint *ep, char *buf, size_t len) {
    int af = ep->family == AF_INET ? AF_INET : AF_INET6;
    if (ep->family != AF_INET && ep->family != AF_INET6) return -EAFNOSUPPORT;
    return inet_ntop(af, ep->addr, buf, (socklen_t)len) ? 0 : -errno;
}

// MARK: - Sockets

int CReactor_udp_socket(int family, int v6only) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0) return -errno;
    if (family == AF_INET6) {
        int on = v6only ? 1 : 0;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    return fd;
}

/// A v4 endpoint through an AF_INET6 dual-stack socket needs a v4-mapped address.
static int sockaddr_for_fd(int fd, const CReactor_endpoint *ep, struct sockaddr_storage *ss, socklen_t *len) {
    int r = CReactor_endpoint_to_sockaddr(ep, ss, len);
    if (r < 0 || ep->family != AF_INET) return r;
    int dom = 0;
    socklen_t l = sizeof(dom);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 && dom == AF_INET6) CReactor_endpoint_to_mapped(ep, ss, len);
    return 0;
}

int CReactor_bind(int fd, const CReactor_endpoint *ep) {
    struct sockaddr_storage ss;
    socklen_t len;
    int r = sockaddr_for_fd(fd, ep, &ss, &len);
    if (r < 0) return r;
    RET(bind(fd, (struct sockaddr *)&ss, len));
}

int CReactor_connect(int fd, const CReactor_endpoint *ep) {
    struct sockaddr_storage ss;
    socklen_t len;
    int r = sockaddr_for_fd(fd, ep, &ss, &len);
    if (r < 0) return r;
    RET(connect(fd, (struct sockaddr *)&ss, len));
}

int CReactor_local_endpoint(int fd, CReactor_endpoint *out) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    CReactor_endpoint_from_sockaddr(&ss, len, out);
    return 0;
}

static int setint(int fd, int level, int opt, int v) { RET(setsockopt(fd, level, opt, &v, sizeof(v))); }
static int getint(int fd, int level, int opt) {
    int v = 0;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, level, opt, &v, &l) < 0) return -errno;
    return v;
}

int CReactor_set_reuseport(int fd, int on) { return setint(fd, SOL_SOCKET, SO_REUSEPORT, on); }
int CReactor_set_pktinfo(int fd, int family, int on) {
    if (family == AF_INET6) {
        int r = setint(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, on);
        if (r < 0) return r;
        // Dual-stack sockets also receive v4 datagrams: ask for their pktinfo too (best effort).
        (void)setint(fd, IPPROTO_IP, IP_PKTINFO, on);
        return 0;
    }
    return setint(fd, IPPROTO_IP, IP_PKTINFO, on);
}
int CReactor_set_udp_segment(int fd, int size) { return setint(fd, SOL_UDP, UDP_SEGMENT, size); }
int CReactor_set_udp_gro(int fd, int on) { return setint(fd, SOL_UDP, UDP_GRO, on); }
int CReactor_get_udp_gro(int fd) { return getint(fd, SOL_UDP, UDP_GRO); }
int CReactor_set_rcvbuf_force(int fd, int bytes) { return setint(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes); }
int CReactor_set_sndbuf_force(int fd, int bytes) { return setint(fd, SOL_SOCKET, SO_SNDBUFFORCE, bytes); }
int CReactor_set_rcvbuf(int fd, int bytes) { return setint(fd, SOL_SOCKET, SO_RCVBUF, bytes); }
int CReactor_set_sndbuf(int fd, int bytes) { return setint(fd, SOL_SOCKET, SO_SNDBUF, bytes); }
int CReactor_get_rcvbuf(int fd) { return getint(fd, SOL_SOCKET, SO_RCVBUF); }
int CReactor_get_sndbuf(int fd) { return getint(fd, SOL_SOCKET, SO_SNDBUF); }

int CReactor_unix_listen(const char *path, unsigned mode) {
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) return -ENAMETOOLONG;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    unlink(path);
    // Created with the final mode: no window in which others could connect.
    mode_t old = umask(0777 & ~mode);
    int r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (r < 0 || chmod(path, mode) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int CReactor_unix_connect(const char *path) {
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) return -ENAMETOOLONG;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int CReactor_accept(int fd) { RET(accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)); }

int CReactor_peer_cred(int fd, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int CReactor_tcp_listen(const CReactor_endpoint *ep) {
    struct sockaddr_storage ss;
    socklen_t len;
    int r = CReactor_endpoint_to_sockaddr(ep, &ss, &len);
    if (r < 0) return r;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int CReactor_set_nonblocking(int fd, int on) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    RET(fcntl(fd, F_SETFL, fl));
}

int CReactor_socketpair_dgram(int *fds) {
    RET(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds));
}

int CReactor_close(int fd) { RET(close(fd)); }
int CReactor_read(int fd, void *buf, size_t len) { RET((int)read(fd, buf, len)); }
int CReactor_write(int fd, const void *buf, size_t len) { RET((int)write(fd, buf, len)); }

// MARK: - epoll, eventfd, timerfd, signalfd

int CReactor_epoll_create(void) { RET(epoll_create1(EPOLL_CLOEXEC)); }

int CReactor_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data = {.u64 = data}};
    RET(epoll_ctl(epfd, op, fd, &ev));
}

int CReactor_epoll_wait(int epfd, CReactor_event *out, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        out[i].events = evs[i].events;
        out[i].data = evs[i].data.u64;
    }
    return n;
}

int CReactor_eventfd(void) { RET(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)); }
int CReactor_eventfd_write(int fd, uint64_t value) { RET((int)write(fd, &value, sizeof(value))); }
int CReactor_eventfd_read(int fd, uint64_t *value) {
    ssize_t r = read(fd, value, sizeof(*value));
    return r < 0 ? -errno : 0;
}

uint64_t CReactor_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int CReactor_timerfd(void) { RET(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)); }

int CReactor_timerfd_arm(int fd, uint64_t deadline_ns) {
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    // A zero it_value disarms; a deadline already past still fires (1 ns is the earliest).
    if (deadline_ns != 0) {
        its.it_value.tv_sec = (time_t)(deadline_ns / 1000000000ull);
        its.it_value.tv_nsec = (long)(deadline_ns % 1000000000ull);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    }
    RET(timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL));
}

int CReactor_timerfd_read(int fd, uint64_t *expirations) {
    ssize_t r = read(fd, expirations, sizeof(*expirations));
    return r < 0 ? -errno : 0;
}

static int fill_sigset(sigset_t *set, const int *signals, int count) {
    sigemptyset(set);
    for (int i = 0; i < count; i++)
        if (sigaddset(set, signals[i]) < 0) return -errno;
    return 0;
}

int CReactor_block_signals(const int *signals, int count) {
    sigset_t set;
    int r = fill_sigset(&set, signals, count);
    if (r < 0) return r;
    r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    return r == 0 ? 0 : -r;
}

int CReactor_signalfd(const int *signals, int count) {
    sigset_t set;
    int r = fill_sigset(&set, signals, count);
    if (r < 0) return r;
    r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (r != 0) return -r;
    RET(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
}

int CReactor_signalfd_read(int fd) {
    struct signalfd_siginfo si;
    ssize_t r = read(fd, &si, sizeof(si));
    if (r < 0) return -errno;
    if (r != sizeof(si)) return -EIO;
    return (int)si.ssi_signo;
}

// MARK: - TUN

int CReactor_tun_open(const char *name, int extra_flags, char *name_out) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = (short)(IFF_TUN | IFF_NO_PI | extra_flags);
    if (name && *name) {
        if (strlen(name) >= IFNAMSIZ) {
            close(fd);
            return -ENAMETOOLONG;
        }
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    }
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (name_out) {
        memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
        name_out[IFNAMSIZ - 1] = 0;
    }
    return fd;
}

int CReactor_tun_set_offload(int fd, unsigned flags) { RET(ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags)); }
int CReactor_tun_set_vnet_hdr_size(int fd, int size) { RET(ioctl(fd, TUNSETVNETHDRSZ, &size)); }
int CReactor_tun_features(int fd) {
    unsigned int f = 0;
    if (ioctl(fd, TUNGETFEATURES, &f) < 0) return -errno;
    return (int)(f & 0x7fffffff);
}
int CReactor_writev(int fd, const CReactor_iovec *iov, int n) { RET(writev(fd, (const struct iovec *)iov, n)); }

// Interface ioctls go through a throwaway AF_INET datagram socket. `if_named`
// fills the name (refusing one that would not fit); `if_ioctl` runs one request.
static int if_named(struct ifreq *ifr, const char *name) {
    memset(ifr, 0, sizeof(*ifr));
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
    return 0;
}

static int if_ioctl(unsigned long request, struct ifreq *ifr) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    int r = ioctl(s, request, ifr) < 0 ? -errno : 0;
    close(s);
    return r;
}

int CReactor_if_set_up(const char *name, int up) {
    struct ifreq ifr;
    int r = if_named(&ifr, name);
    if (r == 0) r = if_ioctl(SIOCGIFFLAGS, &ifr);
    if (r < 0) return r;
    if (up) ifr.ifr_flags |= IFF_UP;
    else ifr.ifr_flags &= ~IFF_UP;
    return if_ioctl(SIOCSIFFLAGS, &ifr);
}

int CReactor_if_set_mtu(const char *name, int mtu) {
    struct ifreq ifr;
    int r = if_named(&ifr, name);
    if (r < 0) return r;
    ifr.ifr_mtu = mtu;
    return if_ioctl(SIOCSIFMTU, &ifr);
}

int CReactor_if_get_mtu(const char *name) {
    struct ifreq ifr;
    int r = if_named(&ifr, name);
    if (r == 0) r = if_ioctl(SIOCGIFMTU, &ifr);
    return r < 0 ? r : ifr.ifr_mtu;
}

int CReactor_if_index(const char *name) {
    unsigned idx = if_nametoindex(name);
    return idx == 0 ? -errno : (int)idx;
}

int CReactor_setns_net(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int r = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* The calling thread's name as the kernel shows it (top -H, /proc/PID/task/TID/comm); at most 15 bytes kept. */
int CReactor_set_thread_name(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0) < 0 ? -errno : 0; }

int CReactor_set_dumpable(int on) { return prctl(PR_SET_DUMPABLE, (unsigned long)on, 0, 0, 0) < 0 ? -errno : 0; }
int CReactor_get_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }
