// NodeCore: recovery mode, and the timer table that drives everything.
//
// Recovery (DESIGN §5, seed 3.1, 3.5): when no anchor is reachable and no
// member session is alive (keys live, and heard from lately or simply idle),
// the node has lost every path.
// It then probes, with exponential backoff and jitter (1 s, 2 s, 4 s, ...,
// 60 s, each ±10%):
//   attempt 1      every anchor (its current and configured endpoints)
//   attempt 2...   every anchor first, then every cached / configured endpoint of the other members
// Probes are single 64-byte datagrams (one radio wake-up per attempt). An
// answer from an anchor brings its session up; an answer from a cached
// endpoint makes that the member's path. Any reachable anchor or live session
// ends recovery. After `recoveryPartitionAfter` attempts without any answer
// (≈ 3 min, the backoff at its cap) the node says it is partitioned
// (`NodeEvent.partitioned`, `NodeStatus.partitioned`, a warning): every
// address it knows is stale and a manual re-bootstrap (a reachable anchor
// endpoint in the config) is needed. It keeps trying every 60 s.
// Anchors do not enter recovery: they are the fixed points others find.

import Support
import Wire
import Crypto

extension NodeCore {
    mutating func evaluateConnectivity(now: Instant) {
        // Without anchors there is nothing to recover to: the node works like
        // WireGuard (configured endpoints, handshakes on traffic), and says so
        // in its warnings.
        guard !isAnchor, !anchorPeers.isEmpty, let s = startedAt, now - s >= timings.warningGrace else { return }
        let anchorUp = anchorPeers.contains { anchorReachable($0) }
        // A member session is a path while its keys live and it is either heard
        // from lately or idle (nothing sent since it was last heard): data
        // going out unanswered, or expired keys, is what "lost" looks like.
        let peerUp = conns.indices.contains { i in
            guard !conns[i].isSelf, !conns[i].isAnchorMember, let rx = conns[i].activePath?.lastRx,
                  tunnels.isEstablished(PeerID(rawValue: i), now: now) else { return false }
            return now - rx < timings.pathValidFor || (conns[i].lastDataTx.map { $0 <= rx } ?? true)
        }
        if anchorUp || peerUp {
            if recovery.active {
                recovery = RecoveryState()
                events.push(.recovered)
                nextProbeRound = now
            }
            return
        }
        guard !recovery.active else { return }
        recovery = RecoveryState(active: true, attempt: 0, nextAt: now, since: now, partitioned: false)
        probes.removeAll { !$0.recovery }
        events.push(.recoveryStarted)
    }

    mutating func recoveryAttempt(now: Instant) {
        var targets = 0
        for a in anchorPeers {
            var eps: [Endpoint] = []
            for ep in [tunnels.endpoint(of: a), conns[a.rawValue].staticEndpoint].compactMap({ $0 })
                + cache.endpoints(for: conns[a.rawValue].key) where !eps.contains(ep) { eps.append(ep) }
            for ep in eps { sendProbe(to: a, at: ep, recovery: true, now: now); targets += 1 }
        }
        if recovery.attempt >= 1 {
            for i in conns.indices where !conns[i].isSelf && !conns[i].isAnchorMember {
                var eps: [Endpoint] = []
                for ep in cache.endpoints(for: conns[i].key) + [conns[i].staticEndpoint].compactMap({ $0 })
                    where !eps.contains(ep) { eps.append(ep) }
                for ep in eps { sendProbe(to: PeerID(rawValue: i), at: ep, recovery: true, now: now); targets += 1 }
            }
        }
        recovery.attempt += 1
        if !recovery.partitioned, recovery.attempt >= timings.recoveryPartitionAfter || (targets == 0 && recovery.attempt > 1) {
            recovery.partitioned = true
            events.push(.partitioned)
        }
        let delay = recoveryDelay(attempt: recovery.attempt - 1, timings: timings)
        recovery.nextAt = now + jittered(delay, percent: timings.recoveryJitterPercent, using: &rng)
    }

    // MARK: Timer table

    /// Every deadline NodeCore holds, with its reason (the minimum is `pollTimeout`).
    func ownTimers(_ consider: (Instant?, @autoclosure () -> NodeTimerReason) -> Void) {
        for i in conns.indices where !conns[i].isSelf {
            let p = PeerID(rawValue: i)
            if let (d, r) = tunnels.pollTimeout(for: p) { consider(d, .session(p, r)) }
            let c = conns[i]
            if !recovery.active { consider(c.anchor?.keepaliveAt, .anchorKeepalive(p)) }
            var earliestPing: Instant?
            for ping in c.pings {
                let d = ping.sentAt + timings.probeTimeout
                if earliestPing.map({ d < $0 }) ?? true { earliestPing = d }
            }
            consider(earliestPing, .pingTimeout(p))
            consider(c.checkAt, .pathCheck(p))
            consider(c.punchNext, .punch(p))
            consider(c.rendezvousDeadline, .rendezvousTimeout(p))
            consider(c.directRetryAt, .directRetry(p))
        }
        if !recovery.active { consider(nextProbeRound, .addressProbe) }
        var earliestProbe: Instant?
        for probe in probes {
            let d = probe.sentAt + timings.probeTimeout
            if earliestProbe.map({ d < $0 }) ?? true { earliestProbe = d }
        }
        consider(earliestProbe, .probeTimeout)
        if recovery.active { consider(recovery.nextAt, .recovery) }
        consider(warningCheckAt, .warnings)
    }

    /// Runs every NodeCore timer due at `now`; each handler re-arms or clears its own deadline.
    mutating func handleOwnTimers(now: Instant) {
        probeTimeouts(now: now)
        for i in conns.indices where !conns[i].isSelf {
            let p = PeerID(rawValue: i)
            if conns[i].pings.contains(where: { $0.sentAt + timings.probeTimeout <= now }) { pingTimeouts(p, now: now) }
            if !recovery.active, let d = conns[i].anchor?.keepaliveAt, d <= now { anchorKeepalive(p, now: now) }
            if let d = conns[i].checkAt, d <= now { checkPath(p, now: now) }
            if let d = conns[i].punchNext, d <= now { punchRound(p, now: now) }
            if let d = conns[i].rendezvousDeadline, d <= now { rendezvousTimedOut(p, now: now) }
            if let d = conns[i].directRetryAt, d <= now { directRetry(p, now: now) }
        }
        if !recovery.active, let d = nextProbeRound, d <= now { addressProbeRound(now: now) }
        if recovery.active, let d = recovery.nextAt, d <= now { recoveryAttempt(now: now) }
        if let d = warningCheckAt, d <= now {
            warningCheckAt = nil
            updateWarnings(now: now)
            evaluateConnectivity(now: now)
        }
    }
}
