// NodeCore: recovery mode.
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
                arm(.recovery, at: nil)
                unparkRecoveryPausedTimers()
                events.push(.recovered)
                arm(.addressProbe, at: now)
            }
            return
        }
        guard !recovery.active else { return }
        recovery = RecoveryState(active: true, attempt: 0, since: now, partitioned: false)
        parkRecoveryPausedTimers()
        arm(.recovery, at: now)
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
        arm(.recovery, at: now + jittered(delay, percent: timings.recoveryJitterPercent, using: &rng))
    }
}
