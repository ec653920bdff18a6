// NodeCore's timers: one table (`DeadlineHeap<NodeTimer>`, a deadline heap),
// keyed by (machine, peer, reason). Whoever arms a timer arms it here
// (`arm`), whoever handles it is found from here (`fire`); there is no second
// list to keep in step.
//
//   pollTimeout   min(session layer's deadline, timers.earliest)   O(1) for our own
//   handleTimeout the due keys (O(due)), run in the handler order below;
//                 a handler re-arms or cancels its own key
//
// Handler order (as it always was: transmits within one wake-up keep their order):
//   1. probe timeouts
//   2. per peer, in PeerID order: ping timeouts, anchor keepalive, path check,
//      punch round, rendezvous timeout, direct retry
//   3. address probe round, recovery attempt, warnings
//   4. our gossip record's publication, then gossip's own timer (a publication
//      starts a push round at once: it runs in the same wake-up)
// A handler may arm another key for `now`; it runs in the same wake-up if it
// comes later in this order, else in the next (`pollTimeout` ≤ now says so).
//
// Recovery pauses the anchor keepalives and the address probe round (recovery
// probes instead): while it runs, those keys are parked beside the table, and
// they return to it, deadlines unchanged, when it ends.

import Support
import Wire

/// One timer of NodeCore's: which machine, for which peer, why.
enum NodeTimer: Hashable, Sendable {
    /// AnchorTracker: the oldest PATH_PROBE's answer is overdue.
    case probeTimeout
    /// PathManager: the oldest PATH_PING to this peer is overdue.
    case pingTimeout(PeerID)
    /// AnchorTracker: the next answered keepalive to this anchor.
    case anchorKeepalive(PeerID)
    /// PathManager: look at the active path (armed when data is sent).
    case pathCheck(PeerID)
    /// HolePunch: the next punch round.
    case punch(PeerID)
    /// HolePunch: the RENDEZVOUS_REQUEST went unanswered.
    case rendezvousTimeout(PeerID)
    /// HolePunch: a relayed member's next direct-path attempt.
    case directRetry(PeerID)
    /// AnchorTracker: the next PATH_PROBE round to every anchor.
    case addressProbe
    /// Recovery: the next attempt.
    case recovery
    /// AnchorTracker: the warnings' first look, after the grace period.
    case warnings
    /// NodeCore: our record's next publication (at most one per `gossipPublishInterval`).
    case gossipPublish
    /// Gossip: a push round or anti-entropy (its `pollTimeout`).
    case gossip

    enum Machine: Sendable { case anchors, paths, holePunch, recovery, gossip }

    var machine: Machine {
        switch self {
        case .probeTimeout, .anchorKeepalive, .addressProbe, .warnings: .anchors
        case .pingTimeout, .pathCheck: .paths
        case .punch, .rendezvousTimeout, .directRetry: .holePunch
        case .recovery: .recovery
        case .gossipPublish, .gossip: .gossip
        }
    }

    var peer: PeerID? {
        switch self {
        case .pingTimeout(let p), .anchorKeepalive(let p), .pathCheck(let p), .punch(let p), .rendezvousTimeout(let p),
             .directRetry(let p): p
        case .probeTimeout, .addressProbe, .recovery, .warnings, .gossipPublish, .gossip: nil
        }
    }

    /// Paused while recovery runs.
    var pausedByRecovery: Bool {
        switch self {
        case .anchorKeepalive, .addressProbe: true
        default: false
        }
    }

    /// The handler order (see the header).
    var order: (Int, Int, Int) {
        switch self {
        case .probeTimeout: (0, 0, 0)
        case .pingTimeout(let p): (1, p.rawValue, 0)
        case .anchorKeepalive(let p): (1, p.rawValue, 1)
        case .pathCheck(let p): (1, p.rawValue, 2)
        case .punch(let p): (1, p.rawValue, 3)
        case .rendezvousTimeout(let p): (1, p.rawValue, 4)
        case .directRetry(let p): (1, p.rawValue, 5)
        case .addressProbe: (2, 0, 0)
        case .recovery: (3, 0, 0)
        case .warnings: (4, 0, 0)
        case .gossipPublish: (5, 0, 0)
        case .gossip: (5, 0, 1)
        }
    }

    var reason: NodeTimerReason {
        switch self {
        case .probeTimeout: .probeTimeout
        case .pingTimeout(let p): .pingTimeout(p)
        case .anchorKeepalive(let p): .anchorKeepalive(p)
        case .pathCheck(let p): .pathCheck(p)
        case .punch(let p): .punch(p)
        case .rendezvousTimeout(let p): .rendezvousTimeout(p)
        case .directRetry(let p): .directRetry(p)
        case .addressProbe: .addressProbe
        case .recovery: .recovery
        case .warnings: .warnings
        case .gossipPublish: .gossipPublish
        case .gossip: .gossip
        }
    }
}

extension NodeCore {
    /// Arms `key` for `deadline` (nil: cancels it). A key recovery pauses is
    /// parked while recovery runs.
    mutating func arm(_ key: NodeTimer, at deadline: Instant?) {
        if key.pausedByRecovery, recovery.isActive {
            parkedTimers[key] = deadline
        } else {
            timers.set(key, at: deadline)
        }
    }

    /// The deadline `key` is armed for (parked or not).
    func deadline(_ key: NodeTimer) -> Instant? {
        key.pausedByRecovery && recovery.isActive ? parkedTimers[key] : timers[key]
    }

    /// Recovery started: park the keys it pauses.
    mutating func parkRecoveryPausedTimers() {
        for (d, key) in timers.entries where key.pausedByRecovery {
            parkedTimers[key] = d
            timers.cancel(key)
        }
    }

    /// Recovery ended: the parked keys go back, deadlines unchanged.
    mutating func unparkRecoveryPausedTimers() {
        for (key, d) in parkedTimers { timers.set(key, at: d) }
        parkedTimers = [:]
    }

    /// The pending-ping deadline of `p` follows its oldest ping.
    mutating func syncPingTimer(_ p: PeerID) { arm(.pingTimeout(p), at: tunnels.paths.pingDeadline(p)) }

    /// The probe-timeout deadline follows the oldest probe.
    mutating func syncProbeTimer() {
        var earliest: Instant?
        for probe in anchorTracker.probes where earliest.map({ probe.sentAt < $0 }) ?? true { earliest = probe.sentAt }
        arm(.probeTimeout, at: earliest.map { $0 + timings.probeTimeout })
    }

    /// Adds a path to `p`'s table (a full table replaces one, and forgets its pings).
    mutating func addPath(_ p: PeerID, kind: PathKind, remote: Endpoint, via: PeerID?) -> Int {
        let (idx, forgotPings) = tunnels.paths.addPath(p, kind: kind, remote: remote, via: via)
        if forgotPings { syncPingTimer(p) }
        return idx
    }

    /// Our own earliest deadline (the session layer's is Tunnels').
    var ownTimeout: (deadline: Instant, reason: NodeTimerReason)? {
        timers.earliest.map { ($0.deadline, $0.key.reason) }
    }

    /// Runs every NodeCore timer due at `now`, in the handler order.
    mutating func handleOwnTimers(now: Instant) {
        var after: (Int, Int, Int)?
        while true {
            var next: NodeTimer?
            for key in timers.due(now: now) where after.map({ key.order > $0 }) ?? true {
                if let n = next, n.order < key.order { continue }
                next = key
            }
            guard let key = next else { return }
            after = key.order
            fire(key, now: now)
        }
    }

    private mutating func fire(_ key: NodeTimer, now: Instant) {
        switch key {
        case .probeTimeout: probeTimeouts(now: now)
        case .pingTimeout(let p): pingTimeouts(p, now: now)
        case .anchorKeepalive(let p): anchorKeepalive(p, now: now)
        case .pathCheck(let p): checkPath(p, now: now)
        case .punch(let p): punchRound(p, now: now)
        case .rendezvousTimeout(let p): rendezvousTimedOut(p, now: now)
        case .directRetry(let p): directRetry(p, now: now)
        case .addressProbe: addressProbeRound(now: now)
        case .recovery: recoveryAttempt(now: now)
        case .warnings:
            arm(.warnings, at: nil)
            updateWarnings(now: now)
            evaluateConnectivity(now: now)
        case .gossipPublish:
            arm(.gossipPublish, at: nil)
            publishOwnRecord(now: now)
        case .gossip:
            gossip.handleTimeout(now: now)
            drainGossip(now: now)
        }
    }
}
