// AnchorTracker: what we know of our anchors and, through them, of ourselves.
//
//   every 7 s (± jitter)      PATH_PROBE -> every anchor  ─┐ reply: where the anchor sees us
//   every 20 s per anchor     PATH_PING (active-path flag) ─┤ pong: the same, authenticated, plus RTT;
//                                                           │       it also keeps NAT mappings open and the
//                                                           │       anchor's view of our endpoint current
//   a missed probe           -> probe again after 1 s, and ping the anchor at once
//   3 missed pings, or 3 missed probes and no pong since: unreachable
//   an anchor's observation changed (renumbered NAT, new mapping)
//                            -> re-announce CANDIDATES to every anchor, ping every session on its
//                               active path from the new address (members roam to it): the heal
//   reachable anchors 1 / 0  -> warning event (seed 2.1), `wsctl status` warnings
//
// NAT classification is `classifyNAT` over the anchors' latest observations
// (the evidence is kept and shown). An observation moves that state only when
// authenticated (a PATH_PONG, an OBSERVED) or agreed on: a PATH_PROBE_REPLY,
// which only its random txid ties to our probe, is a hint until a second
// probe reply or a pong says the same (`observeByProbe`). The probe
// responder (every node) answers members only, in place, never with more
// bytes than the probe, within a per-source budget (IPv6: per /64) and, for
// sources that are not where a member is known to be, a global one.
//
// Owns: each anchor's state (reachability, missed probes and pings, its
// observation of us and the unconfirmed hint, when it was last heard), the
// PATH_PROBEs in flight (also recovery's: same txids, same replies), the probe
// responder's budgets, the NAT class, the warning in force, the last heal.
// Inputs (values; NodeCore reads the session layer and the paths for it):
//   `makeProbe`, `probe(txid:)` / `takeProbe`, `expireProbe`, `probeMissed`,
//   `probeAnswered`, `allowProbeReply`, `pingLost`, `ponged`, `established`,
//   `heard`, `updateReachability`, `updateWarnings`, `observeByProbe`, `observe`, `mayHeal`
// Outputs: `pollEvent()` (reachable / unreachable, warnings, observed endpoint
// changed, NAT mapping changed), and decisions returned to NodeCore (probe
// bytes to send, "retry the round soon", "ping to confirm", "heal now").
// Drain order: NodeCore drains its events into its own right after each input,
// so they keep their order with the other machines'. Its timers (probe round,
// probe timeout, keepalives, warnings) are NodeCore's `NodeTimer`s.

import Support
import Wire
import Crypto

/// Reachability of an anchor (seed 2.1: tracked, warned about).
struct AnchorState: Sendable {
    var reachable = false
    var missedProbes = 0
    var missedPings = 0
    /// The address this anchor last saw us at, and when (NAT evidence).
    var observed: Endpoint?
    var observedAt: Instant?
    /// The last PATH_PROBE_REPLY's observation when it differed from
    /// `observed`: unauthenticated, it waits for agreement.
    var probeHint: Endpoint?
    var lastHeard: Instant?
    /// Last PATH_PONG from it, and last probe it left unanswered: a network
    /// that drops our unauthenticated probes but carries the session does not
    /// make an anchor unreachable.
    var lastPong: Instant?
    var lastProbeMiss: Instant?
}

/// Which anchor warning is in force (events are emitted on changes).
enum WarningState: Equatable, Sendable {
    case none
    case onlyOne
    case noAnchor
}

/// A PATH_PROBE we wait an answer for.
struct PendingProbe: Sendable {
    let txid: UInt64
    let target: PeerID
    let to: Endpoint
    let sentAt: Instant
    /// Sent by recovery (an answer ends it) rather than address observation.
    let recovery: Bool
}

struct AnchorTracker: Sendable {
    let timings: ConnectivityTimings
    /// This node is an anchor itself (it counts as one reachable anchor).
    let selfIsAnchor: Bool
    /// Our anchors (not us), in config order.
    let anchors: [PeerID]
    /// PeerID -> its slot in `states` (-1: not an anchor).
    private let slot: [Int]
    private var states: [AnchorState]
    /// PATH_PROBEs awaiting an answer.
    private(set) var probes: [PendingProbe] = []
    var probeLimiter: HandshakeRateLimiter
    /// Probe replies to sources that are not a member's known endpoint, in all.
    private var probeReplyBudget: TokenBucket
    /// Probe txids: the only authenticator of a PATH_PROBE_REPLY (review M6).
    private var txids: SecretRandom
    private(set) var nat: NATMapping = .unknown
    private(set) var warning = WarningState.none
    private var lastHeal: Instant?
    private var events = Outbox<NodeEvent>()

    init(anchors: [PeerID], members: Int, selfIsAnchor: Bool, timings: ConnectivityTimings, txids: SecretRandom) {
        self.timings = timings
        self.selfIsAnchor = selfIsAnchor
        self.anchors = anchors
        var slot = [Int](repeating: -1, count: members)
        for (k, a) in anchors.enumerated() { slot[a.rawValue] = k }
        self.slot = slot
        states = Array(repeating: AnchorState(), count: anchors.count)
        probeLimiter = HandshakeRateLimiter(perSecond: timings.probeRepliesPerSecond, burst: timings.probeReplyBurst)
        probeReplyBudget = TokenBucket(rate: UInt64(max(0, timings.probeRepliesTotalPerSecond)),
                                       burst: UInt64(max(0, timings.probeRepliesTotalBurst)))
        self.txids = txids
    }

    mutating func pollEvent() -> NodeEvent? { events.pop() }

    // MARK: Views

    /// Whether `p` is one of our anchors.
    @inline(__always)
    func tracks(_ p: PeerID) -> Bool { p.rawValue >= 0 && p.rawValue < slot.count && slot[p.rawValue] >= 0 }

    func state(_ a: PeerID) -> AnchorState? { tracks(a) ? states[slot[a.rawValue]] : nil }

    func isReachable(_ a: PeerID) -> Bool { state(a)?.reachable ?? false }

    var reachable: [PeerID] { anchors.filter { isReachable($0) } }

    /// Where the anchors see us, in anchor order.
    var observed: [Endpoint] { anchors.compactMap { state($0)?.observed } }

    var natEvidence: [NATEvidence] {
        anchors.compactMap { a in
            guard let st = state(a), let ep = st.observed, let at = st.observedAt else { return nil }
            return NATEvidence(anchor: a, observed: ep, at: at)
        }
    }

    private mutating func update(_ a: PeerID, _ change: (inout AnchorState) -> Void) {
        guard tracks(a) else { return }
        change(&states[slot[a.rawValue]])
    }

    // MARK: Probes

    /// A PATH_PROBE to `p` at `ep`, or nil when one is already out there
    /// (recovery probes anew each attempt, replacing an unanswered one).
    mutating func makeProbe(to p: PeerID, at ep: Endpoint, recovery: Bool, from key: PublicKey, now: Instant) -> [UInt8]? {
        if recovery {
            // Each recovery attempt probes everything, even if the previous
            // attempt's probe (less than a timeout ago, early on) is unanswered.
            probes.removeAll { $0.target == p && $0.to == ep }
        } else if probes.contains(where: { $0.target == p && $0.to == ep }) {
            return nil
        }
        // From libsodium, not a seeded PRNG: the txid is the reply's only authenticator.
        let txid = txids.next()
        probes.append(PendingProbe(txid: txid, target: p, to: ep, sentAt: now, recovery: recovery))
        return PathProbe(txid: txid, sender: key).bytes
    }

    func probe(txid: UInt64) -> PendingProbe? { probes.first { $0.txid == txid } }

    mutating func takeProbe(txid: UInt64) {
        if let k = probes.firstIndex(where: { $0.txid == txid }) { probes.remove(at: k) }
    }

    /// Recovery started: address-observation probes are moot.
    mutating func dropObservationProbes() { probes.removeAll { !$0.recovery } }

    /// The first probe unanswered for `probeTimeout`, removed. One at a time:
    /// handling one may drop others (recovery starting).
    mutating func expireProbe(now: Instant) -> PendingProbe? {
        guard let k = probes.firstIndex(where: { $0.sentAt + timings.probeTimeout <= now }) else { return nil }
        return probes.remove(at: k)
    }

    /// Anchor `a` left a probe unanswered. True: probe again soon (it has not
    /// missed enough yet to be written off by probes).
    mutating func probeMissed(_ a: PeerID, now: Instant) -> Bool {
        update(a) {
            $0.missedProbes += 1
            $0.lastProbeMiss = now
        }
        return (state(a)?.missedProbes ?? 0) < timings.anchorMissedProbes
    }

    mutating func probeAnswered(_ a: PeerID) { update(a) { $0.missedProbes = 0 } }

    /// The probe responder's budgets: per source address, and for sources that
    /// are not where a member is known to be (`known`), one global budget.
    mutating func allowProbeReply(from source: Endpoint, known: Bool, now: Instant) -> Bool {
        guard probeLimiter.allow(source, now: now) else { return false }
        // A flood from many sources passes the per-source budget (each new
        // source starts full): all of them share one global budget. A probe
        // from where a member is known to be does not, so members are still
        // answered during such a flood (one whose address changed waits for
        // the flood to end, or heals through its session's pings).
        return known || probeReplyBudget.take(1, now: now)
    }

    // MARK: Keepalive pings and the session

    /// An anchor keepalive went unanswered. True: ping again soon.
    mutating func pingLost(_ a: PeerID) -> Bool {
        update(a) { $0.missedPings += 1 }
        return (state(a)?.missedPings ?? 0) < timings.anchorMissedPings
    }

    mutating func ponged(_ a: PeerID, now: Instant) {
        update(a) {
            $0.missedPings = 0
            $0.lastPong = now
        }
    }

    mutating func established(_ a: PeerID) { update(a) { $0.missedPings = 0 } }

    mutating func heard(_ a: PeerID, now: Instant) { update(a) { $0.lastHeard = now } }

    /// What the keepalive timer does for an anchor with a session `established`.
    enum Keepalive: Equatable, Sendable { case ping, rehandshake, connect }

    func keepalive(_ a: PeerID, established: Bool) -> Keepalive {
        guard established else { return .connect }
        // Keys we think are live, but no answer under them: the anchor
        // restarted and lost the session. A new handshake.
        return (state(a)?.missedPings ?? 0) < timings.anchorMissedPings ? .ping : .rehandshake
    }

    // MARK: Reachability and warnings

    /// Reachability from the session's state and our probes and pings. The new
    /// value when it changed (and its event is out), else nil.
    mutating func updateReachability(_ a: PeerID, established: Bool, keepalivePending: Bool) -> Bool? {
        guard let st = state(a) else { return nil }
        // Probes decide only when the session has nothing better to say: no
        // pong since the last missed probe, and none on its way.
        let probesOK = st.missedProbes < timings.anchorMissedProbes || keepalivePending
            || (st.lastPong.map { p in st.lastProbeMiss.map { p > $0 } ?? true } ?? false)
        let reachable = established && st.missedPings < timings.anchorMissedPings && probesOK
        guard reachable != st.reachable else { return nil }
        update(a) { $0.reachable = reachable }
        events.push(reachable ? .anchorReachable(a) : .anchorUnreachable(a))
        return reachable
    }

    /// The warning in force (seed 2.1), after the grace period from `startedAt`.
    mutating func updateWarnings(startedAt: Instant?, now: Instant) {
        guard let s = startedAt, now - s >= timings.warningGrace else { return }
        let up = reachable
        let total = anchors.count + (selfIsAnchor ? 1 : 0)
        let count = up.count + (selfIsAnchor ? 1 : 0)
        let state: WarningState = total == 0 ? .none : count == 0 ? .noAnchor : count == 1 ? .onlyOne : .none
        guard state != warning else { return }
        warning = state
        switch state {
        case .none: break
        case .onlyOne: events.push(.onlyOneAnchorReachable(up.first))
        case .noAnchor: events.push(.noAnchorReachable)
        }
    }

    // MARK: Observations and the NAT

    /// What a PATH_PROBE_REPLY says anchor `a` sees. Only the txid (64 random
    /// bits) ties the reply to our probe, and anyone on the path can forge
    /// one, so by itself it never changes the observed endpoint, the
    /// candidates we announce or the NAT class (review M6). It counts (true:
    /// `observe` it) when
    ///  - it agrees with what we hold (a refresh), or
    ///  - the previous probe reply from this anchor said the same: two
    ///    independent probes (different txids, sent seconds apart) agree;
    /// otherwise it is kept as a hint (false), and NodeCore pings the anchor
    /// at once: the PATH_PONG's observation is authenticated and settles it
    /// within one round trip — how a renumbered NAT still heals within the
    /// probe interval.
    mutating func observeByProbe(_ a: PeerID, _ ep: Endpoint) -> Bool {
        guard let st = state(a) else { return false }
        if st.observed == ep || st.probeHint == ep { return true }
        update(a) { $0.probeHint = ep }
        return false
    }

    /// An authenticated observation (PATH_PONG, OBSERVED), or one two probe
    /// replies agreed on: where anchor `a` sees us now. Returns the old
    /// observation when it moved (the NAT renumbered: NodeCore heals).
    mutating func observe(_ a: PeerID, _ ep: Endpoint, now: Instant) -> Endpoint? {
        guard let st = state(a) else { return nil }
        update(a) {
            $0.probeHint = nil
            $0.observed = ep
            $0.observedAt = now
        }
        var moved: Endpoint?
        if let old = st.observed, old != ep {
            events.push(.observedEndpointChanged(anchor: a, old: old, new: ep))
            moved = old
        }
        return moved
    }

    /// Reclassifies the NAT from the evidence (after NodeCore re-announced candidates).
    mutating func classify(locals: [Endpoint]) {
        let mapping = classifyNAT(natEvidence, local: locals)
        if mapping != nat {
            nat = mapping
            events.push(.natMappingChanged(mapping))
        }
    }

    /// Whether to heal now: at most once per probe timeout.
    mutating func mayHeal(now: Instant) -> Bool {
        if let last = lastHeal, now - last < timings.probeTimeout { return false }
        lastHeal = now
        return true
    }
}
