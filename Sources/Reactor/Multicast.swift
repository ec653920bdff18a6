// The mDNS sockets LAN discovery needs (Engine/LanAdapter.swift): UDP on port
// 5353, the IPv4 group 224.0.0.251 joined on each LAN interface address (one
// IPv4 socket), the IPv6 group ff02::fb joined on each interface that has an
// IPv6 address, by interface index (a second, IPV6_V6ONLY socket on [::]:5353),
// for one worker thread (never registered with a reactor: `receive` blocks the caller).
//
// RFC 6762 §11: "All Multicast DNS responses ... MUST be sent with IP TTL 255",
// and a responder listens on port 5353 (§5.2); other responders on the host
// (avahi-daemon, systemd-resolved) bind the same port, so the socket sets
// SO_REUSEADDR and SO_REUSEPORT and shares it. Multicast loopback stays on: a
// browser on this host (avahi-browse) must see our announcements; the
// discovery machine ignores its own.
//
// RFC 6762 §11 asks the same of IPv6: hop limit 255 (IPV6_MULTICAST_HOPS).
import CReactor
#if canImport(Glibc)
import Glibc
#endif

public final class MulticastSocket {
    /// 224.0.0.251, the mDNS group (RFC 6762 §3).
    public static let mdnsGroupV4: (UInt8, UInt8, UInt8, UInt8) = (224, 0, 0, 251)
    public static let mdnsPort: UInt16 = 5353
    /// ff02::fb, the IPv6 mDNS group (RFC 6762 §3).
    public static let mdnsGroupV6: [UInt8] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb]

    public let fd: Int32
    /// True: the IPv6 socket (ff02::fb, IPV6_V6ONLY); false: the IPv4 one (224.0.0.251).
    public let isV6: Bool
    /// Interface addresses (IPv4, port 0) whose interface has joined the group (the IPv4 socket).
    public private(set) var joined: [SocketAddress] = []
    /// Interface indexes that have joined ff02::fb (the IPv6 socket).
    public private(set) var joinedIndexes: [UInt32] = []

    /// A UDP socket bound to 0.0.0.0:`port` (or [::]:`port`, IPV6_V6ONLY, when `v6`),
    /// shared with other mDNS responders.
    public init(port: UInt16 = MulticastSocket.mdnsPort, v6: Bool = false) throws(SyscallError) {
        let fd = try syscallValue("socket") { CReactor_udp_socket(Int32(v6 ? AF_INET6 : AF_INET), v6 ? 1 : 0) }
        do {
            try Self.setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)")
            _ = try syscallValue("setsockopt(SO_REUSEPORT)") { CReactor_set_reuseport(fd, 1) }
            if v6 {
                try Self.setInt(fd, Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS, 255, "setsockopt(IPV6_MULTICAST_HOPS)")
                try Self.setInt(fd, Int32(IPPROTO_IPV6), IPV6_MULTICAST_LOOP, 1, "setsockopt(IPV6_MULTICAST_LOOP)")
            } else {
                try Self.setInt(fd, Int32(IPPROTO_IP), IP_MULTICAST_TTL, 255, "setsockopt(IP_MULTICAST_TTL)")
                try Self.setInt(fd, Int32(IPPROTO_IP), IP_MULTICAST_LOOP, 1, "setsockopt(IP_MULTICAST_LOOP)")
            }
            var any = SocketAddress.any(v6: v6, port: port)
            _ = try syscallValue("bind(mdns)") { CReactor_bind(fd, &any) }
        } catch {
            _ = CReactor_close(fd)
            throw error
        }
        self.fd = fd
        self.isV6 = v6
    }

    deinit { _ = CReactor_close(fd) }

    private static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ call: StaticString) throws(SyscallError) {
        var v = value
        if setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw SyscallError(call: "\(call)", errno: Glibc.errno)
        }
    }

    private static func inAddr(_ a: SocketAddress) -> in_addr {
        in_addr(s_addr: UInt32(a.addr.0) | UInt32(a.addr.1) << 8 | UInt32(a.addr.2) << 16 | UInt32(a.addr.3) << 24)
    }

    private static var group: in_addr {
        let g = mdnsGroupV4
        return in_addr(s_addr: UInt32(g.0) | UInt32(g.1) << 8 | UInt32(g.2) << 16 | UInt32(g.3) << 24)
    }

    /// Joins the group on the interface that holds `interfaceAddress` (IPv4).
    /// Nil on success (or when joined already), else the error.
    @discardableResult
    public func join(interfaceAddress a: SocketAddress) -> SyscallError? {
        guard !a.isV6, !isV6 else { return SyscallError(call: "join(mdns): IPv4 only, join(interfaceIndex:) for IPv6", errno: EAFNOSUPPORT) }
        if joined.contains(where: { Self.inAddr($0).s_addr == Self.inAddr(a).s_addr }) { return nil }
        var m = ip_mreqn(imr_multiaddr: Self.group, imr_address: Self.inAddr(a), imr_ifindex: 0)
        if setsockopt(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, &m, socklen_t(MemoryLayout<ip_mreqn>.size)) != 0 {
            let e = Glibc.errno
            if e != EADDRINUSE { return SyscallError(call: "setsockopt(IP_ADD_MEMBERSHIP)", errno: e) }
        }
        joined.append(a)
        return nil
    }

    /// Leaves the group on that interface (the address went away).
    public func leave(interfaceAddress a: SocketAddress) {
        guard let k = joined.firstIndex(where: { Self.inAddr($0).s_addr == Self.inAddr(a).s_addr }) else { return }
        var m = ip_mreqn(imr_multiaddr: Self.group, imr_address: Self.inAddr(a), imr_ifindex: 0)
        _ = setsockopt(fd, Int32(IPPROTO_IP), IP_DROP_MEMBERSHIP, &m, socklen_t(MemoryLayout<ip_mreqn>.size))
        joined.remove(at: k)
    }

    private static func mreq6(_ index: UInt32) -> ipv6_mreq {
        var m = ipv6_mreq()
        withUnsafeMutableBytes(of: &m.ipv6mr_multiaddr) { raw in
            for (i, b) in mdnsGroupV6.enumerated() { raw[i] = b }
        }
        m.ipv6mr_interface = index
        return m
    }

    /// Joins ff02::fb on interface `index` (the IPv6 socket). Nil on success (or when joined already), else the error.
    @discardableResult
    public func join(interfaceIndex index: UInt32) -> SyscallError? {
        guard isV6 else { return SyscallError(call: "join(mdns): IPv6 on the IPv4 socket", errno: EAFNOSUPPORT) }
        if joinedIndexes.contains(index) { return nil }
        var m = Self.mreq6(index)
        if setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_ADD_MEMBERSHIP, &m, socklen_t(MemoryLayout<ipv6_mreq>.size)) != 0 {
            let e = Glibc.errno
            if e != EADDRINUSE { return SyscallError(call: "setsockopt(IPV6_JOIN_GROUP)", errno: e) }
        }
        joinedIndexes.append(index)
        return nil
    }

    /// Leaves ff02::fb on interface `index` (it has no IPv6 address any more).
    public func leave(interfaceIndex index: UInt32) {
        guard let k = joinedIndexes.firstIndex(of: index) else { return }
        var m = Self.mreq6(index)
        _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_DROP_MEMBERSHIP, &m, socklen_t(MemoryLayout<ipv6_mreq>.size))
        joinedIndexes.remove(at: k)
    }

    /// One datagram to [ff02::fb%`index`]:5353 (the IPv6 socket). False if the kernel refused it.
    @discardableResult
    public func sendToGroup(_ bytes: [UInt8], interfaceIndex index: UInt32, port: UInt16 = MulticastSocket.mdnsPort) -> Bool {
        guard isV6 else { return false }
        try? Self.setInt(fd, Int32(IPPROTO_IPV6), IPV6_MULTICAST_IF, Int32(bitPattern: index), "setsockopt(IPV6_MULTICAST_IF)")
        var to = SocketAddress.any(v6: true, port: port)
        withUnsafeMutableBytes(of: &to.addr) { raw in
            for (i, b) in Self.mdnsGroupV6.enumerated() { raw[i] = b }
        }
        to.scope_id = index
        return send(bytes, to: to)
    }

    /// The datagram that arrives first on any of `sockets` and its source, waiting at most `timeoutMs`; nil on timeout.
    /// An IPv6 link-local source carries the receiving interface's index as its scope id.
    public static func receive(from sockets: [MulticastSocket], timeoutMs: Int32, maxSize: Int = 9000) -> (bytes: [UInt8], from: SocketAddress)? {
        var fds = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        guard !fds.isEmpty, Glibc.poll(&fds, nfds_t(fds.count), max(0, timeoutMs)) > 0 else { return nil }
        for (i, p) in fds.enumerated() where p.revents & Int16(POLLIN) != 0 {
            if let r = sockets[i].receive(timeoutMs: 0, maxSize: maxSize) { return r }
        }
        return nil
    }

    /// One datagram to 224.0.0.251:5353 out of the interface holding `interfaceAddress`.
    /// False if the kernel refused it (no route, buffer full): the next announcement covers it.
    @discardableResult
    public func sendToGroup(_ bytes: [UInt8], via a: SocketAddress, port: UInt16 = MulticastSocket.mdnsPort) -> Bool {
        var m = ip_mreqn(imr_multiaddr: Self.group, imr_address: Self.inAddr(a), imr_ifindex: 0)
        guard setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &m, socklen_t(MemoryLayout<ip_mreqn>.size)) == 0 else { return false }
        let g = Self.mdnsGroupV4
        guard let to = SocketAddress.parse("\(g.0).\(g.1).\(g.2).\(g.3)", port: port) else { return false }
        return send(bytes, to: to)
    }

    /// One datagram to a unicast address (a legacy querier's source port, RFC 6762 §6.7).
    @discardableResult
    public func send(_ bytes: [UInt8], to: SocketAddress) -> Bool {
        var d = DatagramView()
        d.peer = to
        return bytes.withUnsafeBufferPointer { b -> Bool in
            d.data = UnsafeMutablePointer(mutating: b.baseAddress)
            d.len = UInt32(b.count)
            d.cap = UInt32(b.count)
            return CReactor_sendto(fd, &d) == Int32(b.count)
        }
    }

    /// The next datagram and its source, waiting at most `timeoutMs`; nil on timeout.
    /// A datagram larger than `maxSize` arrives truncated: the parser refuses it.
    public func receive(timeoutMs: Int32, maxSize: Int = 9000) -> (bytes: [UInt8], from: SocketAddress)? {
        guard GatewaySocket.waitReadable(fd, timeoutMs: timeoutMs) else { return nil }
        var buf = [UInt8](repeating: 0, count: maxSize)
        var d = DatagramView()
        let n = buf.withUnsafeMutableBufferPointer { b -> Int32 in
            d.data = b.baseAddress
            d.cap = UInt32(b.count)
            return CReactor_recvfrom(fd, &d)
        }
        guard n >= 0 else { return nil }
        return (Array(buf[0..<Int(n)]), d.peer)
    }
}
