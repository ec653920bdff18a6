// A listener for the kernel's network changes: links, addresses and routes
// (IPv4 and IPv6) coming and going, from an rtnetlink socket registered with
// a reactor. It only says "something changed" (once per readable batch); the
// caller re-reads what it needs (Engine/Uplinks.swift re-reads the route
// tables), so a lost message (ENOBUFS: the socket overran) costs nothing but
// a re-read.
import CReactor
#if canImport(Glibc)
import Glibc
#endif

public final class RouteMonitor {
    public let fd: Int32
    private unowned let reactor: Reactor
    private var registration: Registration?
    private let buffer: UnsafeMutableRawPointer
    private static let bufferSize = 16384
    /// Readable batches that carried at least one message, and socket overruns (ENOBUFS).
    public private(set) var batches = 0
    public private(set) var overruns = 0

    // RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE (linux/rtnetlink.h).
    static let groups: UInt32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400

    /// struct sockaddr_nl (linux/netlink.h), 12 bytes.
    private struct NetlinkAddress {
        var family: UInt16
        var pad: UInt16 = 0
        var pid: UInt32 = 0
        var groups: UInt32
    }

    /// Opens the socket and registers it; `onChange` runs on `reactor`'s thread.
    public init(reactor: Reactor, onChange: @escaping () -> Void) throws(SyscallError) {
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = Glibc.socket(AF_NETLINK, type, 0)  // NETLINK_ROUTE = 0
        guard fd >= 0 else { throw SyscallError(call: "socket(AF_NETLINK)", errno: errno) }
        var addr = NetlinkAddress(family: UInt16(AF_NETLINK), groups: Self.groups)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<NetlinkAddress>.size)) }
        }
        guard r == 0 else {
            let e = errno
            _ = CReactor_close(fd)
            throw SyscallError(call: "bind(AF_NETLINK)", errno: e)
        }
        self.fd = fd
        self.reactor = reactor
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 8)
        do throws(SyscallError) {
            registration = try reactor.register(fd: fd, events: .readable) { [unowned self] _ in
                if self.drain() { onChange() }
            }
        } catch {
            _ = CReactor_close(fd)
            buffer.deallocate()
            throw error
        }
    }

    /// Without `close()` first, only the fd goes (the kernel drops it from the epoll set);
    /// the reactor is not touched, since it may be gone already.
    deinit {
        if registration != nil { _ = CReactor_close(fd) }
        buffer.deallocate()
    }

    /// Reads everything queued; true if anything was (or was lost to an overrun).
    private func drain() -> Bool {
        var changed = false
        while true {
            let n = Glibc.recv(fd, buffer, Self.bufferSize, Int32(MSG_DONTWAIT))
            if n > 0 {
                changed = true
                continue
            }
            if n == 0 { break }
            let e = errno
            if e == EINTR { continue }
            if e == ENOBUFS {
                overruns += 1
                changed = true
                continue
            }
            break  // EAGAIN: drained; anything else: nothing more to read now
        }
        if changed { batches += 1 }
        return changed
    }

    /// Deregisters and closes; safe to call twice.
    public func close() {
        guard let reg = registration else { return }
        reactor.deregister(reg)
        registration = nil
        _ = CReactor_close(fd)
    }
}
