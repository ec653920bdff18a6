// PathManager: every member's path table, and which path data goes on.
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
//
// Owns: per member, the paths with their evidence (heard, validated, RTT,
// loss, misses, death), the active index, the PATH_PINGs in flight, when data
// was last sent; and the direct-endpoint owner map (the relay's source check).
// Inputs:  `addPath`, `activate` / `deactivate`, `heard`, `validated`, `lost`,
//          `markDead`, `distrustDirect`, `anchorMoved`, `addPing` / `takePing` /
//          `expirePing`, `noteDataTx`, with the member and `now`.
// Outputs: answers (`view`, `best`, `prefers`, `roams`, `checkWanted`,
//          `pingDeadline`) and what changed (the old active path, pings forgotten,
//          members whose relay moved). NodeCore does the rest of activation:
//          Tunnels' endpoint, the pathChanged event, the EndpointBook's cache,
//          arming `NodeTimer.pingTimeout` / `.pathCheck` in its one table.

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

/// One member's paths.
struct PeerPaths: Sendable {
    var paths: [PathState] = []
    var active: Int?
    var pings: [PendingPing] = []
    var lastDataTx: Instant?

    static let maxPaths = 16
    static let maxPings = 64

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
}

struct PathManager: Sendable {
    let timings: ConnectivityTimings
    private(set) var peers: [PeerPaths]
    /// Current direct endpoint -> member (for the relay's source check).
    private(set) var directOwner: [Endpoint: PeerID] = [:]

    init(members: Int, timings: ConnectivityTimings) {
        self.timings = timings
        peers = Array(repeating: PeerPaths(), count: members)
    }

    /// `p`'s paths. A plain getter: a `_read` coroutine allocates its frame in
    /// a debug build (the preloaded allocation counter caught it on the data path).
    @inline(__always)
    subscript(p: PeerID) -> PeerPaths { peers[p.rawValue] }

    // MARK: The table

    /// Adds a path (or finds it); `forgotPings`: a full table replaced one, and its pings went with it.
    mutating func addPath(_ p: PeerID, kind: PathKind, remote: Endpoint, via: PeerID?) -> (index: Int, forgotPings: Bool) {
        let pings = peers[p.rawValue].pings.count
        let idx = peers[p.rawValue].addPath(kind: kind, remote: remote, via: via)
        return (idx, peers[p.rawValue].pings.count != pings)
    }

    /// Data goes on paths[idx] from now on; returns the path that was active.
    mutating func activate(_ p: PeerID, _ idx: Int) -> PathState? {
        let old = peers[p.rawValue].activePath
        peers[p.rawValue].active = idx
        let path = peers[p.rawValue].paths[idx]
        if let old, old.via == nil, directOwner[old.remote] == p { directOwner.removeValue(forKey: old.remote) }
        if path.via == nil { directOwner[path.remote] = p }
        return old
    }

    /// No active path (it died): its endpoint is nobody's now.
    mutating func deactivate(_ p: PeerID) {
        if let a = peers[p.rawValue].activePath, a.via == nil, directOwner[a.remote] == p { directOwner.removeValue(forKey: a.remote) }
        peers[p.rawValue].active = nil
    }

    /// Relay paths through anchor `a` follow it from `old` to `new`; returns
    /// the members whose active path moved (their session endpoint must too).
    mutating func anchorMoved(_ a: PeerID, from old: Endpoint, to new: Endpoint) -> [PeerID] {
        var moved: [PeerID] = []
        for i in peers.indices {
            guard let k = peers[i].pathIndex(remote: old, via: a) else { continue }
            peers[i].paths[k].remote = new
            if peers[i].active == k { moved.append(PeerID(rawValue: i)) }
        }
        return moved
    }

    // MARK: Evidence

    /// An authenticated packet arrived over paths[idx] (`traffic`: not a punch ping or pong).
    mutating func heard(_ p: PeerID, _ idx: Int, traffic: Bool, now: Instant) {
        peers[p.rawValue].paths[idx].lastRx = now
        if traffic {
            peers[p.rawValue].paths[idx].lastTrafficRx = now
            peers[p.rawValue].paths[idx].deadAt = nil
        }
    }

    /// A PATH_PONG came back exactly the way its ping went, after `rtt`.
    mutating func validated(_ p: PeerID, _ idx: Int, rtt: Span, now: Instant) {
        peers[p.rawValue].paths[idx].validatedAt = now
        peers[p.rawValue].paths[idx].recordRTT(rtt)
        peers[p.rawValue].paths[idx].missed = 0
        peers[p.rawValue].paths[idx].deadAt = nil
        peers[p.rawValue].paths[idx].recordPing(lost: false)
    }

    /// A ping over paths[idx] went unanswered; returns the misses in a row.
    mutating func lost(_ p: PeerID, _ idx: Int) -> Int {
        peers[p.rawValue].paths[idx].missed += 1
        peers[p.rawValue].paths[idx].recordPing(lost: true)
        return peers[p.rawValue].paths[idx].missed
    }

    mutating func markDead(_ p: PeerID, _ idx: Int, now: Instant) {
        peers[p.rawValue].paths[idx].deadAt = now
        peers[p.rawValue].paths[idx].validatedAt = nil
    }

    /// Someone asked for an introduction because a direct path is missing or
    /// broken (or the member's NAT changed): our active direct path is no
    /// longer taken on trust. It stays active until another validates (or it does again).
    mutating func distrustDirect(_ p: PeerID) {
        guard let a = peers[p.rawValue].active, peers[p.rawValue].paths[a].via == nil else { return }
        peers[p.rawValue].paths[a].validatedAt = nil
        peers[p.rawValue].paths[a].lastTrafficRx = nil
    }

    mutating func noteDataTx(_ p: PeerID, at t: Instant) { peers[p.rawValue].lastDataTx = t }

    // MARK: Pings

    func canPing(_ p: PeerID) -> Bool { peers[p.rawValue].pings.count < PeerPaths.maxPings }

    mutating func addPing(_ p: PeerID, _ ping: PendingPing) { peers[p.rawValue].pings.append(ping) }

    mutating func takePing(_ p: PeerID, txid: UInt64) -> PendingPing? {
        guard let k = peers[p.rawValue].pings.firstIndex(where: { $0.txid == txid }) else { return nil }
        return peers[p.rawValue].pings.remove(at: k)
    }

    /// The first ping to `p` unanswered for `probeTimeout`, removed (one at a
    /// time: handling one may send or forget others).
    mutating func expirePing(_ p: PeerID, now: Instant) -> PendingPing? {
        guard let k = peers[p.rawValue].pings.firstIndex(where: { $0.sentAt + timings.probeTimeout <= now }) else { return nil }
        return peers[p.rawValue].pings.remove(at: k)
    }

    /// When the oldest ping to `p` times out.
    func pingDeadline(_ p: PeerID) -> Instant? {
        var earliest: Instant?
        for ping in peers[p.rawValue].pings where earliest.map({ ping.sentAt < $0 }) ?? true { earliest = ping.sentAt }
        return earliest.map { $0 + timings.probeTimeout }
    }

    // MARK: Choices

    /// paths[idx] as `prefers` sees it (a relay is usable while its anchor is reachable).
    func view(_ p: PeerID, _ idx: Int, now: Instant, anchorUp: (PeerID) -> Bool) -> PathView {
        let path = peers[p.rawValue].paths[idx]
        let usable: Bool
        if let a = path.via {
            usable = anchorUp(a) && path.deadAt.map { now - $0 >= timings.pathValidFor } ?? true
        } else {
            usable = path.isValid(now: now, timings: timings)
                || (path.deadAt == nil && path.lastTrafficRx.map { now - $0 < timings.pathValidFor } ?? false)
        }
        return PathView(kind: path.kind, usable: usable, rtt: path.rtt)
    }

    /// Whether paths[idx] is preferred over the active path (`prefers`, with its hysteresis).
    func preferredOverActive(_ p: PeerID, _ idx: Int, now: Instant, anchorUp: (PeerID) -> Bool) -> Bool {
        let active = peers[p.rawValue].active.map { view(p, $0, now: now, anchorUp: anchorUp) }
        return prefers(view(p, idx, now: now, anchorUp: anchorUp), over: active, ratio: timings.rttSwitchRatio,
                                minimum: timings.rttSwitchMinimum)
    }

    /// The best path of `p` by `prefers`, if any is usable.
    func best(_ p: PeerID, now: Instant, anchorUp: (PeerID) -> Bool) -> Int? {
        var best: Int?
        for k in peers[p.rawValue].paths.indices {
            let v = view(p, k, now: now, anchorUp: anchorUp)
            if prefers(v, over: best.map { view(p, $0, now: now, anchorUp: anchorUp) }, ratio: timings.rttSwitchRatio,
                                minimum: timings.rttSwitchMinimum) { best = k }
        }
        return best
    }

    /// The roaming rule for authenticated traffic over paths[idx] (Sessions.swift):
    /// the same or a better class follows at once, a worse one (or a relay)
    /// only once the active path has gone quiet.
    func roams(_ p: PeerID, to idx: Int, relayed: Bool, now: Instant) -> Bool {
        guard let a = peers[p.rawValue].active else { return true }
        let act = peers[p.rawValue].paths[a]
        let quiet = act.lastRx.map { now - $0 >= timings.pathQuiet } ?? true
        if relayed || peers[p.rawValue].paths[idx].kind < act.kind { return quiet }
        return true
    }

    /// The active path's check: nil when it was heard from lately or a check
    /// ping is out already, else where to ping.
    func checkWanted(_ p: PeerID, now: Instant) -> (remote: Endpoint, via: PeerID?)? {
        guard let path = peers[p.rawValue].activePath else { return nil }
        if let rx = path.lastRx, now - rx < timings.pathQuiet { return nil }
        if peers[p.rawValue].pings.contains(where: { $0.purpose == .check && $0.remote == path.remote && $0.via == path.via }) {
            return nil
        }
        return (path.remote, path.via)
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
