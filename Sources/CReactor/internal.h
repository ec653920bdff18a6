// Helpers shared by the shim's C files; not part of the Swift-facing API.
#ifndef CREACTOR_INTERNAL_H
#define CREACTOR_INTERNAL_H
#include "CReactor.h"
#include <sys/socket.h>

int CReactor_endpoint_to_sockaddr(const CReactor_endpoint *ep, struct sockaddr_storage *ss, socklen_t *len);
void CReactor_endpoint_to_mapped(const CReactor_endpoint *ep, struct sockaddr_storage *ss, socklen_t *len);
void CReactor_endpoint_from_sockaddr(const void *sa, socklen_t len, CReactor_endpoint *ep);
/// Reads IP_PKTINFO / IPV6_PKTINFO / UDP_GRO out of a received control buffer into d.
void CReactor_parse_cmsgs(struct msghdr *msg, CReactor_dgram *d);
/// Writes the send-side control messages of d (UDP_SEGMENT, source pktinfo) into buf.
/// Returns the bytes used (0: none).
size_t CReactor_build_cmsgs(const CReactor_dgram *d, int v6sock, void *buf, size_t cap);
/// Is fd an AF_INET6 socket (so v4 peers need v4-mapped addresses)?
int CReactor_is_v6_socket(int fd);

#define CREACTOR_CMSG_SPACE 128

// Older libc headers lack these (linux/udp.h has them since 4.18 / 5.0).
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#endif
