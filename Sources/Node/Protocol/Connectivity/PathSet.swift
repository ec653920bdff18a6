// Paths as sets: every way to reach one member, as the path manager keeps it.
//
//   PathID = (local, remote)
//     local   which of our sockets (uplinks) the path leaves from. Today the
//             engine has one UDP socket per address family, so this is always
//             `LocalPathEnd.primary` (index 0); the type carries it so that a
//             second uplink makes a second path to the same remote, not a clash.
//     remote  .endpoint(addr)            straight to the member (kind direct or lan)
//             .relay(anchor, at: addr)   wrapped in RELAY to the anchor at addr
//                                        (`at` follows the anchor when it moves)
//
//   PathSet (one per member, any kind of member: the path manager holds one
//   for every roster entry, whatever its handshake suite)
//     paths[0 ..< ≤16]   PathState: kind (direct / lan / relay), RTT, loss, last
//                        receive, MTU, validated, dead
//     active             the index data goes on. One path is active at a time
//                        today; a multipath scheduler would pick among the
//                        usable ones (planned, not here).
//     destination        where the session layer sends: the active path's
//                        remote, or with none active the last one's (a path
//                        that went quiet may still answer; WireGuard keeps its
//                        endpoint too), or a first contact's source before the
//                        caller made a path of it.
//     pings              PATH_PINGs in flight on any of the paths
//
// The session (PeerSession) knows none of this: it seals and opens, and its
// datagrams go to `destination` (Tunnels resolves it when they are drained).

import Support
import Wire
import Crypto

/// Our end of a path: which local socket (uplink) it leaves from.
public struct LocalPathEnd: Hashable, Sendable, CustomStringConvertible {
    /// Index among the engine's UDP sockets of the remote's address family.
    public let socket: UInt8
    public init(socket: UInt8) { self.socket = socket }
    /// The one socket per family the engine has today.
    public static let primary = LocalPathEnd(socket: 0)
    public var description: String { "udp\(socket)" }
}

/// The far end of a path.
public enum RemotePathEnd: Hashable, Sendable {
    /// Straight to the member at this address.
    case endpoint(Endpoint)
    /// Through the anchor `anchor`, whose address is `at` (where the RELAY goes).
    case relay(anchor: PeerID, at: Endpoint)

    /// Where datagrams on this path are sent (for a relay, the anchor's address).
    @inline(__always)
    public var address: Endpoint {
        switch self {
        case .endpoint(let e): e
        case .relay(_, let e): e
        }
    }

    /// The relaying anchor, nil for a path straight to the member.
    @inline(__always)
    public var via: PeerID? {
        if case .relay(let a, _) = self { return a }
        return nil
    }

    init(remote: Endpoint, via: PeerID?) {
        self = via.map { .relay(anchor: $0, at: remote) } ?? .endpoint(remote)
    }
}

/// One path to a member: our socket and its far end.
public struct PathID: Hashable, Sendable {
    public var local: LocalPathEnd
    public var remote: RemotePathEnd
    public init(local: LocalPathEnd = .primary, remote: RemotePathEnd) {
        self.local = local
        self.remote = remote
    }
}

/// One way of reaching a member, with its evidence.
struct PathState: Sendable {
    var id: PathID
    var kind: PathKind
    /// Last authenticated packet that arrived over this path.
    var lastRx: Instant?
    /// Last authenticated traffic (not a punch ping) over this path.
    var lastTrafficRx: Instant?
    /// Last PATH_PONG from exactly `remote` (relay: through `via`).
    var validatedAt: Instant?
    /// Smoothed RTT (RFC 6298's 7/8 EWMA).
    var rtt: Span?
    /// RTT variation (RFC 6298's 3/4 EWMA of |srtt − sample|) and the smallest sample:
    /// what the multipath scheduler reads (`NodeCore.dataRoute`).
    var rttvar: Span = .zero
    var minRTT: Span?
    /// When `minRTT` was taken.
    var minRTTAt: Instant?
    /// The last sample as it came (not smoothed), and how many there were: the
    /// multipath scheduler reads a far path's queue from each new one (`SpreadPath`).
    var lastRTT: Span?
    var rttSamples: UInt32 = 0
    /// When the last sample came.
    var rttAt: Instant?
    /// Consecutive pings that went unanswered.
    var missed = 0
    /// Set when declared dead (missed pings); cleared by a pong or traffic.
    var deadAt: Instant?
    /// The last check ping sent while it had never answered (`candidateRetry`).
    var candidateProbeAt: Instant?
    /// The last 16 ping outcomes, bit = lost; `samples` of them are valid.
    var lossBits: UInt16 = 0
    var samples: UInt8 = 0
    /// The largest datagram known to cross this path, in bytes. Nil: not
    /// measured; the TUN MTU plus our overhead is assumed (path MTU probing is
    /// planned, nothing sets this yet).
    var mtu: Int?

    init(id: PathID, kind: PathKind) {
        self.id = id
        self.kind = kind
    }

    init(kind: PathKind, remote: Endpoint, via: PeerID?) {
        self.init(id: PathID(remote: RemotePathEnd(remote: remote, via: via)), kind: kind)
    }

    /// Where datagrams on this path go (for a relay, the anchor's address).
    @inline(__always)
    var remote: Endpoint { id.remote.address }
    /// The relaying anchor (nil: straight to the member).
    @inline(__always)
    var via: PeerID? { id.remote.via }

    /// Bytes each packet on this path carries besides its payload: DATA's
    /// header and tag, RELAY's header on a relay path.
    var overhead: Int { DataMessage.overhead + (via != nil ? RelayMessage.headerSize : 0) }

    var loss: Double? {
        guard samples > 0 else { return nil }
        return Double((lossBits & UInt16(truncatingIfNeeded: (1 << UInt32(samples)) - 1)).nonzeroBitCount) / Double(samples)
    }

    mutating func recordPing(lost: Bool) {
        lossBits = lossBits << 1 | (lost ? 1 : 0)
        if samples < 16 { samples += 1 }
    }

    /// How long the smallest RTT stands before a larger sample replaces it: a
    /// path whose route changed (a longer one, a new uplink behind the same
    /// address) shows its new base delay within this, not never.
    static let minRTTWindow = Span.seconds(10 as UInt64)

    /// One RTT sample (a PATH_PONG). RFC 6298's smoothing, except that a sample
    /// below half or above twice the smoothed RTT starts it again: a path not
    /// carrying data is pinged only every few seconds, and at 1/8 per sample a
    /// path whose delay changed (perf/multipath going from a 200 ms path to a
    /// 20 ms one) kept its old RTT for half a minute and stayed out of the
    /// spread. The smallest RTT is the minimum over `minRTTWindow`.
    mutating func recordRTT(_ sample: Span, now: Instant) {
        lastRTT = sample
        rttSamples &+= 1
        rttAt = now
        if let r = rtt, sample.ns >= r.ns / 2, sample.ns <= 2 * r.ns {
            let d = r.ns > sample.ns ? r.ns - sample.ns : sample.ns - r.ns
            rttvar = Span(ns: (rttvar.ns / 4) * 3 + d / 4)
            rtt = Span(ns: (r.ns / 8) * 7 + sample.ns / 8)
        } else {
            rtt = sample
            rttvar = Span(ns: sample.ns / 2)
        }
        if let m = minRTT, let at = minRTTAt, sample >= m, now - at < Self.minRTTWindow { return }
        minRTT = sample
        minRTTAt = now
    }

    func isValid(now: Instant, timings: ConnectivityTimings) -> Bool {
        guard deadAt == nil, let v = validatedAt else { return false }
        return now - v < timings.pathValidFor
    }
}

/// Why a ping was sent: decides what its answer (or silence) means.
enum PingPurpose: Sendable, Equatable {
    /// Hole punching / validating a candidate.
    case punch
    /// The active path looked quiet while we were sending.
    case check
    /// The anchor keepalive (an answered keepalive).
    case anchorKeepalive
}

struct PendingPing: Sendable {
    let txid: UInt64
    let remote: Endpoint
    let via: PeerID?
    let sentAt: Instant
    let purpose: PingPurpose
}

/// One member's paths.
/// Session messages and bytes (as the session counts them) in each direction.
public struct TrafficCount: Sendable, Equatable {
    public var rxBytes: UInt64 = 0
    public var rxPackets: UInt64 = 0
    public var txBytes: UInt64 = 0
    public var txPackets: UInt64 = 0
    public init(rxBytes: UInt64 = 0, rxPackets: UInt64 = 0, txBytes: UInt64 = 0, txPackets: UInt64 = 0) {
        self.rxBytes = rxBytes
        self.rxPackets = rxPackets
        self.txBytes = txBytes
        self.txPackets = txPackets
    }
}

/// A peer's session traffic by the kind of path it went over (status
/// `peers[].by_path_kind`, metrics `whalescale_peer_path_kind_*`).
public struct TrafficByKind: Sendable, Equatable {
    public var direct = TrafficCount()
    public var lan = TrafficCount()
    public var relay = TrafficCount()
    public init() {}
    public subscript(kind: PathKind) -> TrafficCount {
        get { switch kind { case .direct: direct; case .lan: lan; case .relay: relay } }
        set { switch kind { case .direct: direct = newValue; case .lan: lan = newValue; case .relay: relay = newValue } }
    }
}

struct PathSet: Sendable {
    var paths: [PathState] = []
    var active: Int?
    /// Where the session layer sends (see the file header).
    var destination: Endpoint?
    var pings: [PendingPing] = []
    var lastDataTx: Instant?
    /// When `noteDataSent` may next look at the paths for its check interval (far paths of
    /// a spread, a dead path to revive): at most every `farProbe`, not per shard report.
    var checkLookAt = Instant.zero
    /// Traffic already put on a kind of path, and the session's totals when it
    /// was (`attribute`): what the session counted since then went over the
    /// path last heard from (received) and the active path (sent), because
    /// `attribute` runs whenever either changes kind.
    var byKind = TrafficByKind()
    var attributed = TrafficCount()
    /// The kind of the path that last carried traffic to us.
    var rxKind: PathKind?

    /// `byKind` with what the session counted since the last `attribute`
    /// (`totals`: the session's counters now) put where it went.
    func traffic(totals: TrafficCount) -> TrafficByKind {
        var out = byKind
        if let k = rxKind ?? activeKind {
            out[k].rxBytes &+= totals.rxBytes &- attributed.rxBytes
            out[k].rxPackets &+= totals.rxPackets &- attributed.rxPackets
        }
        if let k = activeKind {
            out[k].txBytes &+= totals.txBytes &- attributed.txBytes
            out[k].txPackets &+= totals.txPackets &- attributed.txPackets
        }
        return out
    }

    /// Puts what the session counted since the last call on the kinds of path
    /// it went over; call before the active path or the received-from kind changes.
    mutating func attribute(totals: TrafficCount) {
        byKind = traffic(totals: totals)
        if rxKind ?? activeKind != nil {
            attributed.rxBytes = totals.rxBytes
            attributed.rxPackets = totals.rxPackets
        }
        if activeKind != nil {
            attributed.txBytes = totals.txBytes
            attributed.txPackets = totals.txPackets
        }
    }

    static let maxPaths = 16
    static let maxPings = 64

    var activeKind: PathKind? { active.map { paths[$0].kind } }
    var activePath: PathState? { active.map { paths[$0] } }

    @inline(__always)
    func pathIndex(remote: Endpoint, via: PeerID?) -> Int? {
        for i in paths.indices where paths[i].remote == remote && paths[i].via == via { return i }
        return nil
    }

    func pathIndex(_ id: PathID) -> Int? {
        for i in paths.indices where paths[i].id == id { return i }
        return nil
    }

    /// Adds a path (or returns the existing one). When the table is full, the
    /// oldest-heard path that is neither active nor a relay is replaced.
    mutating func addPath(kind: PathKind, remote: Endpoint, via: PeerID?) -> Int {
        if let i = pathIndex(remote: remote, via: via) { return i }
        let fresh = PathState(kind: kind, remote: remote, via: via)
        if paths.count < Self.maxPaths {
            paths.append(fresh)
            return paths.count - 1
        }
        var victim: Int?
        for i in paths.indices where i != active && paths[i].kind != .relay {
            if let v = victim, (paths[v].lastRx ?? .zero) <= (paths[i].lastRx ?? .zero) { continue }
            victim = i
        }
        let i = victim ?? (active == 0 ? 1 : 0)
        let old = paths[i]
        pings.removeAll { $0.remote == old.remote && $0.via == old.via }
        paths[i] = fresh
        return i
    }
}
