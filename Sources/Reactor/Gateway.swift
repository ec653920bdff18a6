// What the port-mapping worker (Engine/PortMapAdapter.swift) needs from the
// kernel, off the reactors: the IPv4 default gateway (/proc/net/route) and a
// small connected UDP socket to it that a worker thread may wait on. Never
// registered with a reactor: waiting here blocks the calling thread.
import CReactor
#if canImport(Glibc)
import Glibc
#endif

public enum DefaultGateway {
    /// The IPv4 default route's gateway (port 0), or nil when there is none.
    public static func ipv4() -> SocketAddress? {
        guard let text = readSmallFile("/proc/net/route") else { return nil }
        return parseRouteTable(text)
    }

    /// /proc/net/route: "Iface Destination Gateway Flags RefCnt Use Metric Mask ...",
    /// addresses as host-order (little-endian) hex. The default route has
    /// destination and mask 0 and RTF_GATEWAY (0x2) set; the lowest metric wins.
    public static func parseRouteTable(_ text: String) -> SocketAddress? {
        var best: (metric: Int, gw: UInt32)?
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 8, f[1] == "00000000", f[7] == "00000000",
                  let gw = UInt32(f[2], radix: 16), gw != 0,
                  let flags = UInt32(f[3], radix: 16), flags & 0x3 == 0x3,  // RTF_UP | RTF_GATEWAY
                  let metric = Int(f[6]) else { continue }
            if best == nil || metric < best!.metric { best = (metric, gw) }
        }
        guard let gw = best?.gw else { return nil }
        let b = withUnsafeBytes(of: gw.littleEndian) { Array($0) }
        return SocketAddress.parse("\(b[0]).\(b[1]).\(b[2]).\(b[3])", port: 0)
    }

    private static func readSmallFile(_ path: String) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = CReactor_close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { CReactor_read(fd, $0.baseAddress, $0.count) }
            if n == -EINTR { continue }
            guard n > 0 else { break }
            out += buf[0..<Int(n)]
            if out.count > 1 << 20 { break }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A UDP socket connected to one gateway port (PCP's 5351), for one worker thread.
public final class GatewaySocket {
    public let fd: Int32
    /// Our address and port toward the gateway (what the gateway sees as the source).
    public let local: SocketAddress

    public init(gateway: SocketAddress) throws(SyscallError) {
        let fd = CReactor_udp_socket(Int32(gateway.family), 0)
        guard fd >= 0 else { throw SyscallError(call: "socket", errno: -fd) }
        var g = gateway
        let c = CReactor_connect(fd, &g)
        guard c == 0 else {
            _ = CReactor_close(fd)
            throw SyscallError(call: "connect", errno: -c)
        }
        var l = SocketAddress()
        _ = CReactor_local_endpoint(fd, &l)
        self.fd = fd
        local = l
    }

    deinit { _ = CReactor_close(fd) }

    /// One datagram; false if the kernel refused it (no route, buffer full): the caller's retransmission covers it.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) } == bytes.count
    }

    /// The next datagram from the gateway, waiting at most `timeoutMs`; nil on timeout.
    /// An ICMP error (port unreachable) is consumed and reported as nil, too.
    public func receive(timeoutMs: Int32) -> [UInt8]? {
        guard Self.waitReadable(fd, timeoutMs: timeoutMs) else { return nil }
        var buf = [UInt8](repeating: 0, count: 2048)
        let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard n >= 0 else { return nil }
        return Array(buf[0..<n])
    }

    /// Waits until `fd` is readable or `timeoutMs` passed (EINTR: false, the caller loops on its own clock).
    public static func waitReadable(_ fd: Int32, timeoutMs: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return Glibc.poll(&p, 1, max(0, timeoutMs)) == 1
    }
}
