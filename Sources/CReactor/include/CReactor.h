// CReactor: the thin C shim under Whalescale's reactor.
//
// One function per syscall idea, every symbol prefixed CReactor_, no policy.
// Convention: every call returns >= 0 on success and -errno on failure (the
// kernel's own convention), so Swift applies one error policy in one place
// (Sources/Reactor/Syscall.swift). Nothing here retries, logs or allocates on
// the packet path; the batch scratch (mmsghdr/iovec/sockaddr/cmsg arrays) is
// allocated once by CReactor_mmsg_create.
#ifndef CREACTOR_H
#define CREACTOR_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Endpoints

/// A socket address in a fixed, Swift-friendly shape (no unions).
/// family is AF_INET (2) or AF_INET6 (10); addr holds 4 or 16 bytes; port is host order.
typedef struct CReactor_endpoint {
    uint16_t family;
    uint16_t port;
    uint32_t scope_id;
    uint8_t addr[16];
} CReactor_endpoint;

// MARK: - Datagrams

/// One datagram in a batch: where its bytes are and who it is from or to.
/// data/cap are set by the owner of the buffer (a slab, or the io_uring provided
/// buffer ring); len is filled on receive and read on send. segment is the
/// UDP GSO/GRO segment size (0: a single datagram). local is the destination
/// address the datagram arrived on (IP_PKTINFO), family 0 when unknown;
/// ifindex the interface it came in on.
typedef struct CReactor_dgram {
    uint8_t *data;
    uint32_t len;
    uint32_t cap;
    uint16_t segment;
    uint16_t buf_id;
    uint32_t ifindex;
    CReactor_endpoint peer;
    CReactor_endpoint local;
} CReactor_dgram;

/// Preallocated scratch for recvmmsg/sendmmsg: n mmsghdr, iovec,
/// sockaddr_storage and cmsg buffers. Opaque to Swift.
typedef struct CReactor_mmsg CReactor_mmsg;

CReactor_mmsg *CReactor_mmsg_create(int capacity);
void CReactor_mmsg_destroy(CReactor_mmsg *m);
int CReactor_mmsg_capacity(const CReactor_mmsg *m);

/// recvmmsg into d[0..<n] (each d[i].data/cap set by the caller). MSG_DONTWAIT.
/// Returns the count received, or -errno. Fills len, peer, local, ifindex, segment.
int CReactor_recvmmsg(int fd, CReactor_mmsg *m, CReactor_dgram *d, int n);
/// sendmmsg d[0..<n] (data, len, peer; segment > 0 adds a UDP_SEGMENT cmsg;
/// local.family != 0 adds a source-address pktinfo cmsg). MSG_DONTWAIT.
/// Returns the count sent (may be < n), or -errno if none was.
int CReactor_sendmmsg(int fd, CReactor_mmsg *m, const CReactor_dgram *d, int n);

/// One datagram per syscall (the baseline the benchmarks compare against).
int CReactor_recvfrom(int fd, CReactor_dgram *d);
int CReactor_sendto(int fd, const CReactor_dgram *d);

// MARK: - Sockets

/// A non-blocking, close-on-exec UDP socket. family AF_INET or AF_INET6;
/// for AF_INET6, v6only = 0 makes it dual-stack.
int CReactor_udp_socket(int family, int v6only);
int CReactor_bind(int fd, const CReactor_endpoint *ep);
int CReactor_connect(int fd, const CReactor_endpoint *ep);
int CReactor_local_endpoint(int fd, CReactor_endpoint *out);
int CReactor_set_reuseport(int fd, int on);
/* The calling thread's kernel name (PR_SET_NAME; 15 bytes kept). 0 or -errno. */
int CReactor_set_thread_name(const char *name);
/// PR_SET_DUMPABLE (0: no core dump, no ptrace attach by other users) and PR_GET_DUMPABLE (prctl is variadic: Swift cannot call it).
int CReactor_set_dumpable(int on);
int CReactor_get_dumpable(void);
int CReactor_set_pktinfo(int fd, int family, int on);
/// UDP_SEGMENT default size on the socket (GSO); 0 probes support only.
int CReactor_set_udp_segment(int fd, int size);
int CReactor_set_udp_gro(int fd, int on);
/// Is UDP_GRO on for this socket? 1, 0, or -errno (a kernel without it).
int CReactor_get_udp_gro(int fd);
/// SO_RCVBUFFORCE / SO_SNDBUFFORCE (root), falling back to neither: the caller decides.
int CReactor_set_rcvbuf_force(int fd, int bytes);
int CReactor_set_sndbuf_force(int fd, int bytes);
int CReactor_set_rcvbuf(int fd, int bytes);
int CReactor_set_sndbuf(int fd, int bytes);
int CReactor_get_rcvbuf(int fd);
int CReactor_get_sndbuf(int fd);
/// Attaches (SO_ATTACH_REUSEPORT_CBPF) the steering program to fd's SO_REUSEPORT
/// group: DATA (type 4) goes to socket byte[4] % groups (the receiver index's low
/// byte), RELAY (type 7) carrying DATA to byte[20] % groups when relay_inner is 1
/// (a member: the inner index's owner byte) and to byte[21] % groups when it is 2 (an anchor),
/// anything else and any datagram too short for its loads to socket 0. Sockets
/// are numbered in the order they joined the group. The engine binds one socket
/// per reactor and steers DATA to the reactor owning the receiver index
/// (steering.c; the Swift mirror is Steering.group). Returns 0 or -errno
/// (-EINVAL for groups 0).
int CReactor_attach_steering(int fd, unsigned groups, int relay_inner);
/// A UNIX stream socket listening at path (unlinking a stale one first), mode applied.
int CReactor_unix_listen(const char *path, unsigned mode);
int CReactor_unix_connect(const char *path);
int CReactor_accept(int fd);
/// The uid and gid of the process at the other end of a connected UNIX socket (SO_PEERCRED).
int CReactor_peer_cred(int fd, uint32_t *uid, uint32_t *gid);
/// A non-blocking TCP socket listening on ep (SO_REUSEADDR, backlog 16; IPv6 sockets v6-only).
int CReactor_tcp_listen(const CReactor_endpoint *ep);
int CReactor_set_nonblocking(int fd, int on);
/// A connected, non-blocking AF_UNIX datagram pair (tests: a peer that never reads makes EAGAIN).
int CReactor_socketpair_dgram(int *fds);
int CReactor_close(int fd);
int CReactor_read(int fd, void *buf, size_t len);
int CReactor_write(int fd, const void *buf, size_t len);

/// "1.2.3.4" / "::1" -> endpoint (port host order). Returns 0 or -EINVAL.
int CReactor_endpoint_parse(const char *ip, uint16_t port, CReactor_endpoint *out);
/// endpoint -> "1.2.3.4" / "fe80::1" into buf (INET6_ADDRSTRLEN is enough).
int CReactor_endpoint_ntop(const CReactor_endpoint *ep, char *buf, size_t len);

// MARK: - epoll, eventfd, timerfd, signalfd

enum {
    CReactor_EPOLLIN = 0x001,
    CReactor_EPOLLOUT = 0x004,
    CReactor_EPOLLERR = 0x008,
    CReactor_EPOLLHUP = 0x010,
    CReactor_EPOLLRDHUP = 0x2000,
    CReactor_EPOLLET = (int)(1u << 31),
};
enum { CReactor_EPOLL_CTL_ADD = 1, CReactor_EPOLL_CTL_DEL = 2, CReactor_EPOLL_CTL_MOD = 3 };

/// epoll_event without the packed attribute (x86_64 packs it; Swift imports this one cleanly).
typedef struct CReactor_event {
    uint32_t events;
    uint64_t data;
} CReactor_event;

int CReactor_epoll_create(void);
int CReactor_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/// timeout_ms -1 blocks. Returns the count of events written to out.
int CReactor_epoll_wait(int epfd, CReactor_event *out, int max, int timeout_ms);

int CReactor_eventfd(void);
int CReactor_eventfd_write(int fd, uint64_t value);
/// Reads and resets the counter; returns 0 and sets *value, or -errno.
int CReactor_eventfd_read(int fd, uint64_t *value);

/// CLOCK_MONOTONIC now, in nanoseconds.
uint64_t CReactor_monotonic_ns(void);
int CReactor_timerfd(void);
/// Arms the timerfd at an absolute CLOCK_MONOTONIC deadline (ns); 0 disarms.
int CReactor_timerfd_arm(int fd, uint64_t deadline_ns);
int CReactor_timerfd_read(int fd, uint64_t *expirations);

/// Blocks signals (in the calling thread) and returns a signalfd for them.
int CReactor_signalfd(const int *signals, int count);
/// Reads one signal; returns its number, or -errno.
int CReactor_signalfd_read(int fd);
/// Blocks these signals in the calling thread (threads created after inherit the mask).
int CReactor_block_signals(const int *signals, int count);

// MARK: - TUN

enum {
    CReactor_IFF_TUN = 0x0001,
    CReactor_IFF_NO_PI = 0x1000,
    CReactor_IFF_MULTI_QUEUE = 0x0100,
    CReactor_IFF_VNET_HDR = 0x4000,
};
enum {
    CReactor_TUN_F_CSUM = 0x01,
    CReactor_TUN_F_TSO4 = 0x02,
    CReactor_TUN_F_TSO6 = 0x04,
    CReactor_TUN_F_TSO_ECN = 0x08,
    CReactor_TUN_F_USO4 = 0x20,
    CReactor_TUN_F_USO6 = 0x40,
};

/// struct virtio_net_hdr (linux/virtio_net.h), the header in front of every
/// packet read from or written to a TUN device opened with IFF_VNET_HDR (10
/// bytes, the default TUNSETVNETHDRSZ). Fields are in the device's "virtio
/// endianness": little-endian on the hosts we run on (x86_64, aarch64), so
/// Node/Wire parses the bytes as little-endian. Mirrored, layout checked by
/// _Static_assert in shim.c.
typedef struct CReactor_virtio_net_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
} CReactor_virtio_net_hdr;

enum {
    CReactor_VIRTIO_NET_HDR_LEN = 10,
    CReactor_VIRTIO_NET_HDR_F_NEEDS_CSUM = 1,
    CReactor_VIRTIO_NET_HDR_F_DATA_VALID = 2,
    CReactor_VIRTIO_NET_HDR_GSO_NONE = 0,
    CReactor_VIRTIO_NET_HDR_GSO_TCPV4 = 1,
    CReactor_VIRTIO_NET_HDR_GSO_UDP = 3,
    CReactor_VIRTIO_NET_HDR_GSO_TCPV6 = 4,
    CReactor_VIRTIO_NET_HDR_GSO_UDP_L4 = 5,
    CReactor_VIRTIO_NET_HDR_GSO_ECN = 0x80,
};

/// struct iovec, mirrored (no Glibc import needed in Swift).
typedef struct CReactor_iovec {
    void *base;
    size_t len;
} CReactor_iovec;

/// Opens /dev/net/tun with IFF_TUN|IFF_NO_PI|extra_flags (IFF_VNET_HDR, IFF_MULTI_QUEUE)
/// as name (empty: the kernel picks), non-blocking. The actual name goes to name_out (>= 16 bytes).
int CReactor_tun_open(const char *name, int extra_flags, char *name_out);
/// TUNSETOFFLOAD: the offloads this side can take (TUN_F_*). -EINVAL when the kernel lacks one.
int CReactor_tun_set_offload(int fd, unsigned flags);
int CReactor_tun_set_vnet_hdr_size(int fd, int size);
/// TUNGETFEATURES: the IFF_* flags this kernel's TUN driver supports (>= 0), or -errno.
int CReactor_tun_features(int fd);
/// writev(2): one packet gathered from n pieces (a TUN write: the vnet header,
/// the headers, the payloads of coalesced segments where they lie). Returns the
/// bytes written or -errno.
int CReactor_writev(int fd, const CReactor_iovec *iov, int n);
/// Interface flags and MTU through an ioctl socket (no netlink policy here).
int CReactor_if_set_up(const char *name, int up);
int CReactor_if_set_mtu(const char *name, int mtu);
/// The interface's MTU (SIOCGIFMTU), or -errno.
int CReactor_if_get_mtu(const char *name);
int CReactor_if_index(const char *name);

/// setns(2) of the calling thread into a network namespace file (/var/run/netns/NAME).
int CReactor_setns_net(const char *path);

// MARK: - io_uring (through liburing)

/// A ring with one provided-buffer ring per registered UDP socket. Opaque to Swift.
typedef struct CReactor_uring CReactor_uring;

/// entries: SQ size. Returns NULL and sets *err (-errno) on failure.
CReactor_uring *CReactor_uring_create(unsigned entries, int *err);
void CReactor_uring_destroy(CReactor_uring *u);
/// The ring's fd, pollable: readable when completions are waiting.
int CReactor_uring_fd(const CReactor_uring *u);

/// Registers an empty provided-buffer ring of count entries (a power of two) for
/// group bgid over memory the caller owns: buffer id b (0 <= b < nbufs <= 65536)
/// is the size bytes at slab + b * size. The caller posts buffers with
/// CReactor_uring_provide_buffer, never more than count at once.
int CReactor_uring_register_buffer_ring(CReactor_uring *u, uint16_t bgid, uint8_t *slab,
                                        unsigned count, unsigned nbufs, unsigned size);
/// Posts buffer bid of group bgid to the kernel (published on the next commit).
void CReactor_uring_provide_buffer(CReactor_uring *u, uint16_t bgid, uint16_t bid);
/// Publishes the buffers posted to group bgid since the last commit.
void CReactor_uring_provide_commit(CReactor_uring *u, uint16_t bgid);

/// Arms a multishot recvmsg on fd into group bgid; user_data names the operation.
int CReactor_uring_recvmsg_multishot(CReactor_uring *u, int fd, uint16_t bgid, uint64_t user_data);
/// Queues a cancel of the operation tagged user_data.
int CReactor_uring_cancel(CReactor_uring *u, uint64_t user_data);
/// Submits queued SQEs (one io_uring_enter). Returns the count submitted or -errno.
int CReactor_uring_submit(CReactor_uring *u);

/// A completion, as reaped.
typedef struct CReactor_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} CReactor_cqe;

enum {
    CReactor_CQE_F_BUFFER = 1u << 0,
    CReactor_CQE_F_MORE = 1u << 1,
    CReactor_CQE_BUFFER_SHIFT = 16,
};

/// Reaps up to max completions without waiting. Returns the count.
int CReactor_uring_reap(CReactor_uring *u, CReactor_cqe *out, int max);
/// Turns a multishot recvmsg completion (buffer bid of group bgid, res bytes) into a
/// datagram view into that buffer: payload pointer, length, peer; 0 or -errno
/// (-EMSGSIZE for a truncated datagram).
int CReactor_uring_parse_recvmsg(CReactor_uring *u, uint16_t bgid, uint16_t bid, int32_t res,
                                 CReactor_dgram *out);
/// Sends d[0..<n] as sendmsg SQEs with MSG_DONTWAIT and one io_uring_enter, and
/// waits for their completions (which are inline for non-blocking UDP sends).
/// Returns the count sent before the first failure, or -errno if none was.
int CReactor_uring_sendmsg_batch(CReactor_uring *u, int fd, const CReactor_dgram *d, int n);

/// Does this kernel and liburing support multishot recvmsg with provided-buffer rings?
/// 1 yes, 0 no (probed once, by a real ring).
int CReactor_uring_supported(void);

#ifdef __cplusplus
}
#endif
#endif
