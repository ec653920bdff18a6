// Per-member path state held by NodeCore: the member's paths, the pings in
// flight. Plain data; the logic is in NodeCore's
// extensions (Paths.swift, Sessions.swift). What used to live here too has its
// own machine now: addresses and candidates (EndpointBook), anchor
// reachability (AnchorTracker), relay and rendezvous budgets (RelayService),
// the punch and retry schedule (HolePunch),
// deadlines (NodeCore's DeadlineHeap, NodeTimers.swift).
//
// One member's paths:
//
//   paths[i] = (kind, remote, via)        lan/direct: remote = the member's address
//                                         relay:      remote = the anchor's address, via = the anchor
//   active   = the index data goes on (Tunnels' endpoint is paths[active].remote)
//
// A path is *validated* when a PATH_PONG came back from exactly where its
// PATH_PING went (so both NATs let that 5-tuple through in both directions);
// it is *heard* when any authenticated packet arrived over it.

import Support
import Wire
import Crypto

/// One way of reaching a member.
struct PathState: Sendable {
    var kind: PathKind
    var remote: Endpoint
    var via: PeerID?
    /// Last authenticated packet that arrived over this path.
    var lastRx: Instant?
    /// Last authenticated traffic (not a punch ping) over this path.
    var lastTrafficRx: Instant?
    /// Last PATH_PONG from exactly `remote` (relay: through `via`).
    var validatedAt: Instant?
    /// Smoothed RTT (RFC 6298's 7/8 EWMA).
    var rtt: Span?
    /// Consecutive pings that went unanswered.
    var missed = 0
    /// Set when declared dead (missed pings); cleared by a pong or traffic.
    var deadAt: Instant?
    /// The last 16 ping outcomes, bit = lost; `samples` of them are valid.
    var lossBits: UInt16 = 0
    var samples: UInt8 = 0

    var loss: Double? {
        guard samples > 0 else { return nil }
        return Double((lossBits & UInt16(truncatingIfNeeded: (1 << UInt32(samples)) - 1)).nonzeroBitCount) / Double(samples)
    }

    mutating func recordPing(lost: Bool) {
        lossBits = lossBits << 1 | (lost ? 1 : 0)
        if samples < 16 { samples += 1 }
    }

    mutating func recordRTT(_ sample: Span) {
        if let r = rtt { rtt = Span(ns: (r.ns / 8) * 7 + sample.ns / 8) } else { rtt = sample }
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

/// One member's connectivity state.
struct PeerConn: Sendable {
    let id: PeerID
    let key: PublicKey
    let memberID: MemberID
    let isAnchorMember: Bool
    /// Our own entry in the member list (never a peer).
    let isSelf: Bool
    var paths: [PathState] = []
    var active: Int?
    var pings: [PendingPing] = []
    var lastDataTx: Instant?

    static let maxPaths = 16
    static let maxPings = 64

    init(id: PeerID, spec: MemberSpec, isSelf: Bool, timings: ConnectivityTimings) {
        self.id = id
        key = spec.publicKey
        memberID = MemberID(publicKey: spec.publicKey)
        isAnchorMember = spec.isAnchor && spec.endpoint != nil
        self.isSelf = isSelf
    }

    var activeKind: PathKind? { active.map { paths[$0].kind } }
    var activePath: PathState? { active.map { paths[$0] } }

    @inline(__always)
    func pathIndex(remote: Endpoint, via: PeerID?) -> Int? {
        for i in paths.indices where paths[i].remote == remote && paths[i].via == via { return i }
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

    /// Whether another host could ever reach us at `e`: not loopback,
    /// unspecified, multicast or IPv6 link-local (its scope means nothing
    /// elsewhere), and a real port. Anything else is never announced or punched.
    static func isUsableRemote(_ e: Endpoint) -> Bool {
        guard e.port != 0 else { return false }
        let a = e.address
        switch e.family {
        case .v4:
            return a[0] != 127 && a[0] != 0 && a[0] < 224
        case .v6:
            let loopback = a.hi == 0 && a.lo == 1
            return !loopback && !(a.hi == 0 && a.lo == 0) && a[0] != 0xFF && !(a[0] == 0xFE && a[1] & 0xC0 == 0x80)
        }
    }

    static func isPrivate(_ e: Endpoint) -> Bool {
        let a = e.address
        switch e.family {
        case .v4:
            return a[0] == 10 || (a[0] == 172 && a[1] & 0xF0 == 16) || (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254)
        case .v6:
            return a[0] & 0xFE == 0xFC || (a[0] == 0xFE && a[1] & 0xC0 == 0x80)
        }
    }
}
