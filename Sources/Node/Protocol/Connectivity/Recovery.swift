// Recovery: the machine that looks for a way back when every path is lost.
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
//
// Owns: its phase (idle, or recovering: attempts, since when, partitioned).
// Inputs:  `evaluate(pathsUp:now:)`  NodeCore's verdict: is any anchor reachable or member session alive?
//          `attempt(anchors:members:now:rng:)` the recovery timer fired; the endpoints to try
//          (members': only when `probesMembers`)
// Outputs: `pollEvent()`  recoveryStarted / recovered / partitioned
//          the probes of an attempt and its next deadline (returned; NodeCore sends
//          them through the AnchorTracker and arms `NodeTimer.recovery`)
// Drain order: NodeCore drains its events into its own after each input.
// It holds no deadline: its one timer is `NodeTimer.recovery` in NodeCore's table.

import Support
import Wire

struct Recovery: Sendable {
    enum Phase: Equatable, Sendable {
        case idle
        /// `attempt`: attempts made since recovery started.
        case recovering(attempt: Int, since: Instant, partitioned: Bool)
    }

    /// One endpoint to probe, for a member.
    struct Target: Equatable, Sendable {
        let peer: PeerID
        let endpoint: Endpoint
    }

    let timings: ConnectivityTimings
    private(set) var phase = Phase.idle
    private var events = Outbox<NodeEvent>()

    init(timings: ConnectivityTimings) { self.timings = timings }

    var isActive: Bool { phase != .idle }

    /// The next attempt probes the other members too (not only the anchors).
    var probesMembers: Bool {
        if case .recovering(let attempt, _, _) = phase { return attempt >= 1 }
        return false
    }

    var isPartitioned: Bool {
        if case .recovering(_, _, let partitioned) = phase { return partitioned }
        return false
    }

    mutating func pollEvent() -> NodeEvent? { events.pop() }

    /// What happened to the phase (NodeCore pauses or resumes timers on it).
    enum Transition: Equatable, Sendable { case started, recovered }

    /// NodeCore's verdict on the paths: any up ends recovery, none starts it.
    mutating func evaluate(pathsUp: Bool, now: Instant) -> Transition? {
        if pathsUp {
            guard isActive else { return nil }
            phase = .idle
            events.push(.recovered)
            return .recovered
        }
        guard !isActive else { return nil }
        phase = .recovering(attempt: 0, since: now, partitioned: false)
        events.push(.recoveryStarted)
        return .started
    }

    /// One attempt: the anchors' endpoints always, the other members' from
    /// the second attempt on (each list: a member and its endpoints, in the
    /// order to try). Returns the probes and the next attempt's deadline.
    mutating func attempt(anchors: [(PeerID, [Endpoint])], members: [(PeerID, [Endpoint])], now: Instant,
                          rng: inout SessionRandom) -> (targets: [Target], next: Instant) {
        guard case .recovering(var attempt, let since, var partitioned) = phase else { return ([], now) }
        var targets: [Target] = []
        for (p, eps) in anchors { for ep in eps { targets.append(Target(peer: p, endpoint: ep)) } }
        if attempt >= 1 {
            for (p, eps) in members { for ep in eps { targets.append(Target(peer: p, endpoint: ep)) } }
        }
        attempt += 1
        if !partitioned, attempt >= timings.recoveryPartitionAfter || (targets.isEmpty && attempt > 1) {
            partitioned = true
            events.push(.partitioned)
        }
        phase = .recovering(attempt: attempt, since: since, partitioned: partitioned)
        let delay = recoveryDelay(attempt: attempt - 1, timings: timings)
        return (targets, now + jittered(delay, percent: timings.recoveryJitterPercent, using: &rng))
    }
}
