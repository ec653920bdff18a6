// The tunnel's MTU: the smallest MTU over the paths data goes on (seed 2.10,
// anti-patterns "Rule: VPN MTU must be the minimum across all active paths.
// Recalculate when paths are added or removed.").
//
//   per path   uplink MTU (the interface the path leaves through)
//              − outer IP header (20 to an IPv4 remote, 40 to an IPv6 one)
//              − UDP (8) − DATA header and tag (32) − RELAY header (16, relayed only)
//   tunnel     min over every data path of every member, clamped to
//              1280 ... cap (cap: `[node] mtu`, an upper bound when set);
//              no data path at all: the configured (or default) value
//   per member min over its own data paths, clamped the same way; a member
//              without one: the tunnel's value (what the data path checks a
//              packet read from the TUN against)
//
// A path's own MTU below 1280 (IPv6's minimum; an uplink with a tiny MTU) is
// not followed: the tunnel keeps 1280 (the outer packets are then fragmented
// or lost by the uplink) and `belowMinimum` counts it once per such path set.
//
// Plain struct, no I/O: the engine reads the uplinks' MTUs and the data paths
// (`NodeCore.dataPaths(now:)`), calls `update(_:now:)` when a path is added or
// removed or an uplink's MTU changed, and applies what changed (the TUN's MTU,
// the per-member limits the lanes read).
import Support
import Wire
import Crypto

/// Per-path MTU arithmetic.
public enum PathMTU {
    public static let ipv4Header = 20
    public static let ipv6Header = 40
    public static let udpHeader = 8
    /// RFC 8200 §5: every IPv6 link carries 1280 bytes; the tunnel never goes below.
    public static let minimum = 1280
    /// Largest MTU the tunnel takes (`[node] mtu` ≤ this): a 64 KiB IP packet.
    public static let maximum = 65535

    /// The largest inner packet a path carries in one outer datagram of at most `uplinkMTU` bytes.
    public static func inner(uplinkMTU: Int, remote: Endpoint.Family, relayed: Bool) -> Int {
        uplinkMTU - (remote == .v4 ? ipv4Header : ipv6Header) - udpHeader - DataMessage.overhead
            - (relayed ? RelayMessage.headerSize : 0)
    }
}

/// The tunnel's MTU over all members' data paths (see the file header).
public struct TunnelMTU: Sendable {
    /// One path data goes on, with the uplink it leaves through.
    public struct Path: Sendable, Equatable, CustomStringConvertible {
        public var peer: PeerID
        public var peerName: String
        public var kind: PathKind
        /// The member's address; for a relay path, the anchor's.
        public var remote: Endpoint
        public var relayed: Bool
        /// The interface the path leaves through (nil: no route; the uplink MTU is then assumed).
        public var uplink: String?
        public var uplinkMTU: Int

        public init(peer: PeerID, peerName: String, kind: PathKind, remote: Endpoint, relayed: Bool, uplink: String?, uplinkMTU: Int) {
            self.peer = peer
            self.peerName = peerName
            self.kind = kind
            self.remote = remote
            self.relayed = relayed
            self.uplink = uplink
            self.uplinkMTU = uplinkMTU
        }

        /// This path's own MTU (not clamped).
        public var mtu: Int { PathMTU.inner(uplinkMTU: uplinkMTU, remote: remote.family, relayed: relayed) }

        /// "<peer> <kind> <remote> via <uplink>", as the change log line names it.
        public var description: String { "\(peerName) \(kind.rawValue) \(remote) via \(uplink ?? "?")" }
    }

    /// What one `update` changed.
    public struct Change: Sendable, Equatable {
        public var old: Int
        public var new: Int
        /// The path that set the new value (nil: no data path, the fallback).
        public var smallest: Path?
    }

    /// `[node] mtu`: never above it (nil: no cap but `PathMTU.maximum`).
    public let cap: Int?
    /// With no data path: the configured value, or the default.
    public let fallback: Int
    public private(set) var current: Int
    /// Per member (by PeerID), what a packet read from the TUN for it may be at most.
    public private(set) var peerLimits: [Int]
    /// The path that set `current` (nil: the fallback).
    public private(set) var smallest: Path?
    /// Path sets whose smallest path was below 1280 (1280 kept).
    public private(set) var belowMinimum: UInt64 = 0
    /// Changes of `current` so far.
    public private(set) var changes: UInt64 = 0
    public private(set) var changedAt: Instant?
    private var lastRawMinimum: Int?

    /// `configured`: `[node] mtu` (a cap) or nil; `defaultMTU`: the value with no path and no configuration.
    public init(configured: Int?, defaultMTU: Int, peers: Int) {
        cap = configured.map { min(max($0, PathMTU.minimum), PathMTU.maximum) }
        fallback = cap ?? defaultMTU
        current = fallback
        peerLimits = Array(repeating: fallback, count: peers)
    }

    func clamp(_ v: Int) -> Int { min(max(v, PathMTU.minimum), cap ?? PathMTU.maximum) }

    /// Recalculates from the data paths now. Returns the tunnel's change, nil
    /// if it stayed; `peerLimits` may change without it (`peerLimitsChanged`).
    public mutating func update(_ paths: [Path], now: Instant) -> (change: Change?, peerLimitsChanged: Bool) {
        var best: Path?
        var perPeer = Array(repeating: Int.max, count: peerLimits.count)
        for p in paths {
            let m = p.mtu
            if best.map({ m < $0.mtu }) ?? true { best = p }
            if p.peer.rawValue < perPeer.count { perPeer[p.peer.rawValue] = min(perPeer[p.peer.rawValue], m) }
        }
        let raw = best?.mtu
        if let raw, raw < PathMTU.minimum, lastRawMinimum != raw { belowMinimum &+= 1 }
        lastRawMinimum = raw
        let next = raw.map(clamp) ?? fallback
        var limits = perPeer
        for i in limits.indices { limits[i] = limits[i] == Int.max ? next : clamp(limits[i]) }
        let limitsChanged = limits != peerLimits
        peerLimits = limits
        guard next != current else {
            smallest = best
            return (nil, limitsChanged)
        }
        let change = Change(old: current, new: next, smallest: best)
        current = next
        smallest = best
        changes &+= 1
        changedAt = now
        return (change, limitsChanged)
    }

    /// The driver could not apply `change` (the kernel refused the MTU): back
    /// to the old value, so the next `update` tries again.
    public mutating func notApplied(_ change: Change) {
        guard current == change.new else { return }
        current = change.old
        changes &-= 1
    }
}

extension NodeCore {
    /// The paths data goes on now: a member's active path, or, while its data
    /// is spread (`spreadRoute`, docs/multipath.md), every path the scheduler
    /// may pick, so a relayed path in the spread limits the MTU too.
    public func dataPaths(now: Instant) -> [(peer: PeerID, name: String, kind: PathKind, remote: Endpoint, via: PeerID?)] {
        var out: [(peer: PeerID, name: String, kind: PathKind, remote: Endpoint, via: PeerID?)] = []
        for i in entries.indices where !entries[i].isSelf {
            let id = PeerID(rawValue: i)
            let spread = spreadRoute(for: id, now: now)
            if spread.count >= 2 {
                for k in 0..<spread.count {
                    let path = tunnels.paths[id].paths[Int(spread[k].slot)]
                    out.append((id, members[i].name, path.kind, path.remote, path.via))
                }
                continue
            }
            guard let path = tunnels.paths[id].activePath else { continue }
            out.append((id, members[i].name, path.kind, path.remote, path.via))
        }
        return out
    }
}
