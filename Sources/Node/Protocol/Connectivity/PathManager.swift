// PathManager: every member's PathSet (PathSet.swift), and which path data goes on.
//
// One member's paths:
//
//   paths[i] = (id: (local, remote), kind, evidence)
//                                         lan/direct: remote = the member's address
//                                         relay:      remote = the anchor's address, via = the anchor
//   active   = the index data goes on; `destination` = its remote, where the
//              session layer sends (Tunnels holds this manager and asks it;
//              PeerSession has no endpoint of its own)
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
//          `expirePing`, `noteDataTx`, with the member and `now`;
//          `firstContact` / `roamDirect` (the session layer's own roaming,
//          when no NodeCore decides: WireGuard's rule).
// Outputs: answers (`destination`, `view`, `best`, `prefers`, `roams`, `checkWanted`,
//          `pingDeadline`) and what changed (the old active path, pings forgotten,
//          members whose relay moved). NodeCore does the rest of activation
//          (`Tunnels.activate` kicks a handshake that waited for a path): the
//          pathChanged event, the EndpointBook's cache, arming
//          `NodeTimer.pingTimeout` / `.pathCheck` in its one table.

import Support
import Wire
import Crypto

struct PathManager: Sendable {
    let timings: ConnectivityTimings
    private(set) var peers: [PathSet]
    /// Current direct endpoint -> member (for the relay's source check).
    private(set) var directOwner: [Endpoint: PeerID] = [:]

    init(members: Int, timings: ConnectivityTimings) {
        self.timings = timings
        peers = Array(repeating: PathSet(), count: members)
    }

    /// `p`'s paths. A plain getter: a `_read` coroutine allocates its frame in
    /// a debug build (the preloaded allocation counter caught it on the data path).
    @inline(__always)
    subscript(p: PeerID) -> PathSet { peers[p.rawValue] }

    /// A member's paths as another roster's manager held them (`Tunnels.adopt`).
    /// Only for members whose paths name no other member (no relay: WireGuard peers).
    mutating func adopt(_ p: PeerID, _ set: PathSet) { peers[p.rawValue] = set }

    // MARK: The table

    /// Adds a path (or finds it); `forgotPings`: a full table replaced one, and its pings went with it.
    mutating func addPath(_ p: PeerID, kind: PathKind, remote: Endpoint, via: PeerID?) -> (index: Int, forgotPings: Bool) {
        let pings = peers[p.rawValue].pings.count
        let idx = peers[p.rawValue].addPath(kind: kind, remote: remote, via: via)
        return (idx, peers[p.rawValue].pings.count != pings)
    }

    /// Data goes on paths[idx] from now on (and the session's datagrams go to
    /// its remote); returns the path that was active.
    mutating func activate(_ p: PeerID, _ idx: Int) -> PathState? {
        let old = peers[p.rawValue].activePath
        peers[p.rawValue].active = idx
        let path = peers[p.rawValue].paths[idx]
        peers[p.rawValue].destination = path.remote
        if let old, old.via == nil, directOwner[old.remote] == p { directOwner.removeValue(forKey: old.remote) }
        if path.via == nil { directOwner[path.remote] = p }
        return old
    }

    mutating func attributeTraffic(_ p: PeerID, totals: TrafficCount) { peers[p.rawValue].attribute(totals: totals) }

    mutating func setRxKind(_ p: PeerID, _ kind: PathKind) { peers[p.rawValue].rxKind = kind }

    /// No active path (it died): its endpoint is nobody's now. The session
    /// keeps sending to it (`destination`) until another path is activated.
    mutating func deactivate(_ p: PeerID) {
        if let a = peers[p.rawValue].activePath, a.via == nil, directOwner[a.remote] == p { directOwner.removeValue(forKey: a.remote) }
        peers[p.rawValue].active = nil
    }

    /// Relay paths through anchor `a` follow it from `old` to `new` (and the
    /// destination of members whose active path is one of them); returns those members.
    @discardableResult
    mutating func anchorMoved(_ a: PeerID, from old: Endpoint, to new: Endpoint) -> [PeerID] {
        var moved: [PeerID] = []
        for i in peers.indices {
            guard let k = peers[i].pathIndex(remote: old, via: a) else { continue }
            peers[i].paths[k].id.remote = .relay(anchor: a, at: new)
            if peers[i].active == k {
                peers[i].destination = new
                moved.append(PeerID(rawValue: i))
            }
        }
        return moved
    }

    // MARK: The session's destination and roaming

    /// Where `p`'s session sends now (cheap: the data path asks it per packet).
    @inline(__always)
    func destination(_ p: PeerID) -> Endpoint? { peers[p.rawValue].destination }

    /// A first contact from `p` at `source` (no destination yet): answers go
    /// back that way until the caller activates a path. False if `p` had one.
    mutating func firstContact(_ p: PeerID, at source: Endpoint) -> Bool {
        guard peers[p.rawValue].destination == nil else { return false }
        peers[p.rawValue].destination = source
        return true
    }

    /// WireGuard's roaming (a caller with no path policy of its own, e.g. the
    /// session layer alone): an authenticated packet from `source` makes it
    /// `p`'s direct active path. False if it already was the destination.
    mutating func roamDirect(_ p: PeerID, to source: Endpoint) -> Bool {
        guard peers[p.rawValue].destination != source else { return false }
        let (idx, _) = addPath(p, kind: .direct, remote: source, via: nil)
        _ = activate(p, idx)
        return true
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
        peers[p.rawValue].paths[idx].recordRTT(rtt, now: now)
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

    mutating func noteCandidateProbe(_ p: PeerID, _ idx: Int, now: Instant) {
        peers[p.rawValue].paths[idx].candidateProbeAt = now
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

    /// Whether `p` has a direct path that answered once and is declared dead (a loop, no
    /// closure: `noteDataSent` asks it on the data path's reports, which allocate nothing).
    func hasDeadDirectPath(_ p: PeerID) -> Bool {
        var k = 0
        while k < peers[p.rawValue].paths.count {
            let path = peers[p.rawValue].paths[k]
            if path.via == nil && path.rtt != nil && path.deadAt != nil { return true }
            k += 1
        }
        return false
    }

    /// Whether `noteDataSent` may look at `p`'s paths now (and not again for `interval`).
    mutating func mayLookAtChecks(_ p: PeerID, now: Instant, interval: Span) -> Bool {
        guard now >= peers[p.rawValue].checkLookAt else { return false }
        peers[p.rawValue].checkLookAt = now + interval
        return true
    }

    // MARK: Pings

    func canPing(_ p: PeerID) -> Bool { peers[p.rawValue].pings.count < PathSet.maxPings }

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
    /// only once the active path has gone quiet. A lan path counts as worse than
    /// an active direct path clearly faster than it (`prefers`' exception).
    func roams(_ p: PeerID, to idx: Int, relayed: Bool, now: Instant) -> Bool {
        guard let a = peers[p.rawValue].active else { return true }
        let act = peers[p.rawValue].paths[a]
        let cand = peers[p.rawValue].paths[idx]
        let quiet = act.lastRx.map { now - $0 >= timings.pathQuiet } ?? true
        if relayed || cand.kind < act.kind { return quiet }
        if cand.kind == .lan, act.kind == .direct, let c = cand.rtt, let r = act.rtt,
           rttClearlyBelow(r, c, ratio: timings.rttSwitchRatio, minimum: timings.rttSwitchMinimum) {
            return quiet
        }
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

    static func isPrivate(_ e: Endpoint) -> Bool { e.isPrivate }
}
