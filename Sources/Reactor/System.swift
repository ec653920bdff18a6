// The kernel facilities the node needs besides the event loop, each a thin
// Swift face over one CReactor call, so that Engine and wsctl reach the kernel
// only through Reactor (nothing above Reactor imports CReactor).
//
// Types the shim defines are named here once:
//   SocketAddress = CReactor_endpoint (family, 16 address bytes, port, scope)
//   DatagramView  = CReactor_dgram    (one datagram of a batch: buffer, length, peer, GSO size)
//   IOVector      = CReactor_iovec
import CReactor
#if canImport(Glibc)
import Glibc
#endif

public typealias SocketAddress = CReactor_endpoint
public typealias DatagramView = CReactor_dgram
public typealias IOVector = CReactor_iovec

extension SocketAddress {
    /// `family` values (Linux AF_INET, AF_INET6).
    public static let inet: UInt16 = UInt16(AF_INET)
    public static let inet6: UInt16 = UInt16(AF_INET6)

    public var isV6: Bool { family == Self.inet6 }

    /// The wildcard address of a family with `port`: `[::]:port` (dual-stack
    /// where the kernel allows) or `0.0.0.0:port`.
    public static func any(v6: Bool, port: UInt16) -> SocketAddress {
        var a = SocketAddress()
        _ = CReactor_endpoint_parse(v6 ? "::" : "0.0.0.0", port, &a)
        return a
    }

    /// A numeric IPv4 or IPv6 address and a port; nil when `ip` is not one.
    public static func parse(_ ip: String, port: UInt16) -> SocketAddress? {
        var a = SocketAddress()
        return CReactor_endpoint_parse(ip, port, &a) == 0 ? a : nil
    }
}

/// File descriptors the node opens through Reactor.
public enum FileDescriptor {
    /// close(2); errors (EBADF is our bug, EINTR leaves the fd closed on Linux) are ignored.
    public static func close(_ fd: Int32) { _ = CReactor_close(fd) }

    /// read(2): bytes read, 0 at end of file, or -errno.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        Int(CReactor_read(fd, buffer.baseAddress, buffer.count))
    }

    /// write(2): bytes written or -errno.
    public static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        Int(CReactor_write(fd, bytes.baseAddress, bytes.count))
    }
}

/// UNIX stream sockets: the control socket (non-blocking, for the reactor) and its client.
public enum UnixStream {
    /// Binds and listens at `path` (an old socket file there is replaced) with
    /// permission bits `mode`; non-blocking, close-on-exec.
    public static func listen(path: String, mode: UInt32) throws(SyscallError) -> Int32 {
        try syscallValue("listen(unix)") { CReactor_unix_listen(path, mode) }
    }

    /// accept4 non-blocking: the new fd, or -errno (-EAGAIN when none is waiting).
    public static func accept(_ listener: Int32) -> Int32 { CReactor_accept(listener) }

    /// A blocking connection to `path`, or -errno.
    public static func connect(path: String) -> Int32 { CReactor_unix_connect(path) }

    /// Who is at the other end of a connected UNIX socket (SO_PEERCRED); nil if the kernel will not say.
    public static func peerCredentials(_ fd: Int32) -> (uid: UInt32, gid: UInt32)? {
        var uid: UInt32 = 0, gid: UInt32 = 0
        guard CReactor_peer_cred(fd, &uid, &gid) == 0 else { return nil }
        return (uid, gid)
    }
}

/// TCP, for the daemon's small HTTP metrics listener (nothing on the packet path).
public enum TCPListener {
    /// A non-blocking socket listening on `address`; accept with `UnixStream.accept` (accept4 works for any stream).
    public static func listen(_ address: SocketAddress) throws(SyscallError) -> Int32 {
        var a = address
        return try syscallValue("listen(tcp)") { CReactor_tcp_listen(&a) }
    }
}

/// Termination signals as a readable fd (signalfd), so the reactor handles them like any event.
public enum SignalSource {
    /// Blocks `signals` in the calling thread (threads made later inherit the mask) and returns a signalfd.
    public static func open(_ signals: [Int32]) throws(SyscallError) -> Int32 {
        try syscallValue("signalfd") { signals.withUnsafeBufferPointer { CReactor_signalfd($0.baseAddress, Int32($0.count)) } }
    }

    /// The number of the signal read, or 0 when none was pending.
    public static func read(_ fd: Int32) -> Int32 { CReactor_signalfd_read(fd) }
}

/// The calling thread's name as the kernel shows it (top -H, /proc/PID/task/*/comm; at most 15 bytes).
public func setThreadName(_ name: String) { _ = CReactor_set_thread_name(name) }

extension UDPSocket {
    /// True when UDP GRO is on for `fd` (a receive may then carry a run of datagrams).
    public static func groEnabled(_ fd: Int32) -> Bool { CReactor_get_udp_gro(fd) == 1 }

    /// SO_MARK on everything `fd` sends (0: none), as WireGuard's `fwmark`: policy
    /// routing (wg-quick's full tunnel) keeps the tunnel's own datagrams out of
    /// the tunnel by it. Needs CAP_NET_ADMIN.
    public static func setMark(_ fd: Int32, _ mark: UInt32) throws(SyscallError) {
        var v = mark
        if setsockopt(fd, SOL_SOCKET, SO_MARK, &v, socklen_t(MemoryLayout<UInt32>.size)) != 0 {
            throw SyscallError(call: "setsockopt(SO_MARK)", errno: errno)
        }
    }
}

extension FileDescriptor {
    /// When `fd` is a regular file (`wsctl genkey > node.key`), makes it owner-only
    /// (0600) before any secret is written to it. Other kinds (a pipe, a terminal) are left alone.
    public static func restrictToOwnerIfRegularFile(_ fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return }
        _ = fchmod(fd, 0o600)
    }
}

/// The process holds the node's secret key: no core dump may carry it.
public enum ProcessHardening {
    /// Core dumps off (RLIMIT_CORE 0) and the process not dumpable (PR_SET_DUMPABLE 0:
    /// no core, no ptrace attach by other users' processes, /proc/PID/mem root-only).
    /// Returns false if the kernel refused either.
    @discardableResult
    public static func disableCoreDumps() -> Bool {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        let a = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none) == 0
        let b = CReactor_set_dumpable(0) == 0
        return a && b
    }

    /// Whether the process is dumpable now (for tests: 0 after `disableCoreDumps`).
    public static var dumpable: Int32 { CReactor_get_dumpable() }
}

/// An interface's MTU (ioctl SIOCGIFMTU / SIOCSIFMTU on a throwaway socket):
/// read when the routes or links change and written when the tunnel's MTU
/// moves, never per packet.
public enum NetworkInterface {
    /// The MTU of interface `name`; nil when it does not exist (or the kernel refused).
    public static func mtu(_ name: String) -> Int? {
        let r = CReactor_if_get_mtu(name)
        return r > 0 ? Int(r) : nil
    }

    public static func setMTU(_ name: String, _ mtu: Int) throws(SyscallError) {
        _ = try syscallValue("SIOCSIFMTU") { CReactor_if_set_mtu(name, Int32(mtu)) }
    }
}
