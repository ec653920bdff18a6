// The node's uplinks (issue 14, `[node] uplinks`): the interfaces its traffic
// to the outside may leave through, and which of them the kernel routes a
// path's remote through.
//
//   config uplinks = [...]  ──▶ those, in that order
//   (absent)                ──▶ every interface with a route to the outside:
//                               /proc/net/route, /proc/net/ipv6_route (main table)
//   status: node.uplinks; per path `uplink` = the interface of the longest-prefix
//           route to the path's remote (lowest metric among equals), in the
//           table as last read
//
// Re-read when the kernel says links, addresses or routes changed (Reactor's
// RouteMonitor, debounced by 500 ms), keeping each uplink's index (`merge`).
//
// What this is not yet: the daemon still has one UDP socket per lane, bound to
// [::]:port and to no device, so the kernel picks the uplink of every datagram
// by its routing table, and every path's `local` is `udp0`. One socket per
// uplink (SO_BINDTODEVICE) and a path per (uplink, remote) are planned
// (docs/multipath.md, "Uplinks").
//
// The parsers are pure (text in, routes out) and tested in UplinkTests; only
// `readRoutes` reads files, only at start and after a change (a status request
// looks up the table read last), never on the packet path.
import Support
import Wire
import Foundation
import Glibc

/// One uplink: an interface name and where it came from.
struct Uplink: Equatable, Sendable {
    enum Source: String, Sendable { case config, routes }
    var name: String
    var source: Source
}

/// One route of the kernel's main table, as much of it as uplinks need.
struct KernelRoute: Equatable, Sendable {
    var family: Endpoint.Family
    /// The destination prefix (IPv4 in the first four bytes).
    var destination: IPAddressBytes
    var prefixLength: Int
    var gateway: Bool
    var metric: UInt32
    var interface: String

    var isDefault: Bool { prefixLength == 0 }

    /// Whether `a` (of this route's family) is inside the destination prefix.
    func contains(_ a: IPAddressBytes) -> Bool {
        let n = prefixLength
        func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? ~0 : ~0 << UInt64(64 - bits) }
        let mh = mask(n), ml = mask(n - 64)
        return a.hi & mh == destination.hi & mh && a.lo & ml == destination.lo & ml
    }
}

enum Uplinks {
    // RTF_UP, RTF_GATEWAY, RTF_REJECT (linux/route.h, linux/ipv6_route.h).
    static let rtfUp: UInt32 = 0x1, rtfGateway: UInt32 = 0x2, rtfReject: UInt32 = 0x200

    /// `/proc/net/route`: a header line, then tab-separated Iface, Destination,
    /// Gateway, Flags, RefCnt, Use, Metric, Mask, ... with addresses as the
    /// kernel's 32-bit value in host order, printed %08X. Lines that do not
    /// parse are skipped (a kernel with more columns still parses).
    static func parseIPv4(_ text: String) -> [KernelRoute] {
        var out: [KernelRoute] = []
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard f.count >= 8, let dst = UInt32(f[1], radix: 16), let flags = UInt32(f[3], radix: 16),
                  let metric = UInt32(f[6]), let mask = UInt32(f[7], radix: 16) else { continue }
            guard flags & rtfUp != 0, flags & rtfReject == 0 else { continue }
            // Host order on this machine; the bytes in memory are the address in network order.
            let d = UInt32(bigEndian: dst), m = UInt32(bigEndian: mask)
            var a = IPAddressBytes()
            a.hi = UInt64(d) << 32
            out.append(KernelRoute(family: .v4, destination: a, prefixLength: m.nonzeroBitCount,
                                   gateway: flags & rtfGateway != 0, metric: metric, interface: String(f[0])))
        }
        return out
    }

    /// `/proc/net/ipv6_route`: no header; space-separated destination (32 hex),
    /// its prefix length (hex), source, source prefix, next hop, metric, refcnt,
    /// use, flags (all hex) and the interface.
    static func parseIPv6(_ text: String) -> [KernelRoute] {
        var out: [KernelRoute] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 10, f[0].utf8.count == 32, let plen = Int(f[1], radix: 16), plen <= 128,
                  let metric = UInt32(f[5], radix: 16), let flags = UInt32(f[8], radix: 16),
                  let hi = UInt64(f[0].prefix(16), radix: 16), let lo = UInt64(f[0].suffix(16), radix: 16) else { continue }
            guard flags & rtfUp != 0, flags & rtfReject == 0 else { continue }
            var a = IPAddressBytes()
            a.hi = hi
            a.lo = lo
            out.append(KernelRoute(family: .v6, destination: a, prefixLength: plen,
                                   gateway: flags & rtfGateway != 0, metric: metric, interface: String(f[9])))
        }
        return out
    }

    /// The interfaces with a route to the outside: a default route (with or
    /// without a gateway: a point-to-point modem has none) or any route via a
    /// gateway, other than loopback and `excluding` (our tunnel). Ordered by
    /// their best default route's metric (a preferred uplink first), then the
    /// ones without a default route, each group by name; at most `limit`.
    static func outside(_ routes: [KernelRoute], excluding: Set<String>, limit: Int) -> [String] {
        var best: [String: UInt32] = [:]  // interface -> lowest default-route metric (UInt32.max: gateway routes only)
        for r in routes where r.interface != "lo" && !excluding.contains(r.interface) && (r.isDefault || r.gateway) {
            let m = r.isDefault ? r.metric : UInt32.max
            best[r.interface] = min(best[r.interface] ?? .max, m)
        }
        return best.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.prefix(limit).map(\.key)
    }

    /// The interface the main table routes `address` through: the longest
    /// prefix that contains it, the lowest metric among equals. Policy rules
    /// (`ip rule`) are not consulted. Nil: no route.
    static func lookup(_ routes: [KernelRoute], family: Endpoint.Family, address: IPAddressBytes) -> String? {
        var pick: KernelRoute?
        for r in routes where r.family == family && r.contains(address) {
            if let p = pick, (p.prefixLength, UInt32.max - p.metric) >= (r.prefixLength, UInt32.max - r.metric) { continue }
            pick = r
        }
        return pick?.interface
    }

    /// The node's uplinks: the configured ones, or those `outside` finds.
    static func resolve(configured: [String]?, routes: [KernelRoute], tunnel: String, limit: Int) -> [Uplink] {
        if let c = configured { return c.map { Uplink(name: $0, source: .config) } }
        return outside(routes, excluding: [tunnel], limit: limit).map { Uplink(name: $0, source: .routes) }
    }

    /// After a re-read: an uplink still found keeps its index (its slot); one
    /// no longer found leaves a hole (nil); a new one takes the first hole, or
    /// the end. Indices stay stable while interfaces come and go, so a path's
    /// uplink index (planned: its socket) never points at another interface.
    static func merge(_ current: [Uplink?], _ found: [Uplink]) -> [Uplink?] {
        var out: [Uplink?] = current.map { slot in
            guard let u = slot, let now = found.first(where: { $0.name == u.name }) else { return nil }
            return now
        }
        for f in found where !out.contains(where: { $0?.name == f.name }) {
            if let hole = out.firstIndex(where: { $0 == nil }) { out[hole] = f } else { out.append(f) }
        }
        while let last = out.last, last == nil { out.removeLast() }
        return out
    }

    /// The main table now (unreadable files: no routes). At most the first
    /// `maxRouteBytes` of each file: a router with a full table would make this
    /// a long read on lane 0's thread; its uplinks (default and gateway routes)
    /// come first in practice, a lookup beyond the cap says nil.
    static func readRoutes() -> [KernelRoute] {
        parseIPv4(readCapped("/proc/net/route")) + parseIPv6(readCapped("/proc/net/ipv6_route"))
    }

    static let maxRouteBytes = 1 << 20

    private static func readCapped(_ path: String) -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? h.close() }
        var out = Data()
        while out.count < maxRouteBytes, let chunk = try? h.read(upToCount: 65536), !chunk.isEmpty { out.append(chunk) }
        // Cut at the last whole line.
        if out.count >= maxRouteBytes, let nl = out.lastIndex(of: UInt8(ascii: "\n")) { out = out.prefix(upTo: nl + 1) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether an interface of that name exists now.
    static func present(_ name: String) -> Bool { if_nametoindex(name) != 0 }
}
