// HolePunch: the schedule of looking for a direct path to a member.
//
//   begin (a relay path was given, our NAT changed, a direct path died)
//     -> ask an anchor for a rendezvous (the pair's relay anchor first, then the
//        other reachable ones, each once per attempt; 2 s each)
//     -> punch: PATH_PING every candidate, rounds 100, 200, 400 ms ... ≤ 1 s, for 5 s
//        from the first round with keys (pings need the session; before that, a
//        look every 100 ms while the window lasts, then every 1 s while a
//        handshake is under way)
//   a direct path active and 4 rounds done, or the window over -> end
//   ended while still relayed -> retry after 10 s, 20 s ... ≤ 120 s (while traffic flows)
//
// Owns, per member: the punch window and round, the rendezvous anchor asked
// and those tried in this attempt, the direct-retry backoff.
// Inputs:  `beginAttempt`, `chooseRendezvousAnchor(options:)`, `rendezvousAnswered`,
//          `start`, `round(established:handshaking:now:)`, `roundDone`, `end`,
//          `resetRetry`, all with the member and `now`.
// Outputs: decisions and deadlines, returned: which anchor to ask, what a round
//          does (end, wait until, punch), when the next round or retry is due.
//          NodeCore sends the pings and requests (it has the sessions and the
//          EndpointBook's addresses) and arms `NodeTimer.punch`,
//          `.rendezvousTimeout` and `.directRetry` in its one table.

import Support
import Wire

struct HolePunch: Sendable {
    private struct Peer: Sendable {
        /// Punching until this instant (the window), in round `round`.
        var until: Instant?
        var round = 0
        /// A RENDEZVOUS_REQUEST is out to this anchor.
        var rendezvousAnchor: PeerID?
        var rendezvousTried: [PeerID] = []
        /// Direct-path retries so far (the backoff's exponent).
        var retryAttempt = 0
    }

    let timings: ConnectivityTimings
    private var peers: [Peer]

    init(members: Int, timings: ConnectivityTimings) {
        self.timings = timings
        peers = Array(repeating: Peer(), count: members)
    }

    func isPunching(_ p: PeerID) -> Bool { peers[p.rawValue].until != nil }

    func rendezvousAnchor(_ p: PeerID) -> PeerID? { peers[p.rawValue].rendezvousAnchor }

    // MARK: Rendezvous

    /// A new attempt: every reachable anchor may be asked again.
    mutating func beginAttempt(_ p: PeerID) { peers[p.rawValue].rendezvousTried = [] }

    /// The first of `options` (preferred first) not asked in this attempt,
    /// now asked; nil when none is left.
    mutating func chooseRendezvousAnchor(_ p: PeerID, options: [PeerID]) -> PeerID? {
        guard let a = options.first(where: { !peers[p.rawValue].rendezvousTried.contains($0) }) else {
            peers[p.rawValue].rendezvousAnchor = nil
            return nil
        }
        peers[p.rawValue].rendezvousTried.append(a)
        peers[p.rawValue].rendezvousAnchor = a
        return a
    }

    mutating func rendezvousAnswered(_ p: PeerID) { peers[p.rawValue].rendezvousAnchor = nil }

    // MARK: Punching

    /// Opens the window (NodeCore arms the first round for `now`).
    mutating func start(_ p: PeerID, now: Instant) {
        peers[p.rawValue].until = now + timings.punchDuration
        peers[p.rawValue].round = 0
    }

    enum Round: Equatable, Sendable {
        /// Not punching, or the window is over: end it.
        case end
        /// No keys yet: make sure a session is coming up (`prepare`), look again then.
        case wait(until: Instant, prepare: Bool)
        /// Send this round's pings (`first`: also the relay path's, for its RTT).
        case punch(first: Bool, until: Instant)
    }

    /// What the round due now does.
    mutating func round(_ p: PeerID, established: Bool, handshaking: Bool, now: Instant) -> Round {
        guard var until = peers[p.rawValue].until else { return .end }
        guard established else {
            guard now < until else {
                // The whole window passed without keys. The punch has not
                // begun (pings need keys): while a handshake is under way it
                // waits for the session's `established`, which starts its
                // rounds at once (a slow look every second covers a handshake
                // that ends some other way). Ending it here would leave a pair
                // that connects late relayed until the direct retry (10 s).
                return handshaking ? .wait(until: now + timings.punchMaxRound, prepare: false) : .end
            }
            // Pings need keys: make sure a session is coming up (through the
            // relay, if that is the path). A responder holding fresh keys
            // from the other side's initiation waits for its confirmation.
            return .wait(until: now + timings.punchFirstRound, prepare: true)
        }
        // The window counts from the first round that can send a ping.
        let first = peers[p.rawValue].round == 0
        if first {
            until = now + timings.punchDuration
            peers[p.rawValue].until = until
        }
        return now < until ? .punch(first: first, until: until) : .end
    }

    /// The round's pings are out: the next round's deadline, and whether to
    /// end now (a direct path is active: a few rounds gave LAN candidates their chance).
    mutating func roundDone(_ p: PeerID, until: Instant, directActive: Bool, now: Instant) -> (next: Instant, end: Bool) {
        peers[p.rawValue].round += 1
        let round = peers[p.rawValue].round
        let gap = doubling(timings.punchFirstRound, times: round - 1, cap: timings.punchMaxRound)
        return (min(now + gap, until), directActive && round >= 4)
    }

    /// Closes the window. The direct retry's deadline when it was open and we
    /// are still `relayed` (the backoff grows), else nil. `wasPunching`: false
    /// when there was nothing to end.
    mutating func end(_ p: PeerID, relayed: Bool, now: Instant) -> (wasPunching: Bool, retryAt: Instant?) {
        guard peers[p.rawValue].until != nil else { return (false, nil) }
        peers[p.rawValue].until = nil
        guard relayed else { return (true, nil) }
        let at = now + directRetryDelay(attempt: peers[p.rawValue].retryAttempt, timings: timings)
        peers[p.rawValue].retryAttempt += 1
        return (true, at)
    }

    // MARK: Direct retry

    /// The next direct retry's deadline from `now` (the backoff as it stands).
    func retryAt(_ p: PeerID, now: Instant) -> Instant {
        now + directRetryDelay(attempt: peers[p.rawValue].retryAttempt, timings: timings)
    }

    /// A direct path works (or our NAT changed): the backoff starts over.
    mutating func resetRetry(_ p: PeerID) { peers[p.rawValue].retryAttempt = 0 }
}
