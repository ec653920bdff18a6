// RelayService: RELAY forwarding and rendezvous on an anchor, as a machine.
//
//   member H                      anchor A                          member M
//   seal DATA for M, prepend  ──> source == H's current endpoint    
//   RELAY(id M), tag it under     of an established session, and    
//   H's session with A, send      the tag H's (relay_bad_tag)?      
//   to A                          id M a member with a session      
//                                 and a direct endpoint?            
//                                 H's bytes/s budget?               
//                                 rewrite id := H, tag under A's    
//                                 session with M, forward ─────────> from an anchor's endpoint, tagged under
//                                 (in place, never decrypted)         its session with us: unwrap in place,
//                                                                     Tunnels.receive(roam: false),
//                                                                     inner must authenticate as H
//
// An anchor is never an open relay: every check above is on state that only
// an authenticated session creates (DESIGN §5), and every refusal is counted.
// Rendezvous: a member asks an anchor to introduce it to another; the anchor
// sends each side the other's key and candidates, its own observation of
// that member first (the endpoint it actually hears the member from).
//
// Introductions that wait for their target. When every daemon starts at
// once, a member asks an anchor to introduce it to a member whose session
// with that anchor is still a round trip away. The anchor cannot introduce
// (or relay to) a member it has no session with, so it refuses
// (`relay_target_unreachable`). Forgetting the request there would leave the
// requester waiting for an event it missed: its rendezvous timeout (2 s), and
// for its handshake initiation, which the anchor refused to relay too, the
// session's retry (5 s, then 10, 20 s apart). So the anchor keeps the
// request, and answers the moment the target's session comes up; long enough
// (30 s) to cover a member that starts late:
//
//   RENDEZVOUS_REQUEST(M) from H, no session with M   -> refused and counted; held (H, M) for 30 s
//   M's session established                           -> RENDEZVOUS to H and to M; forgotten
//   30 s passed                                       -> forgotten (H's handshake retries go on)
//
// H takes that RENDEZVOUS as the news that relaying through us works now and
// sends its initiation again at once (Paths.swift `receiveRendezvous`). The
// held list is small and bounded: each member's requests are already limited
// by its rendezvous budget (2/s, burst 5) before they are held.
//
// Owns: per-member relay (bytes/s) and rendezvous budgets, the held
// introductions, the forwarding counters.
// Inputs (NodeCore resolves the roster and paths into values first):
//   `forward(_:length:now:)`          a RELAY to forward: sender, target, the target's direct endpoint
//   `admitRendezvous(from:now:)`      a RENDEZVOUS_REQUEST: within the requester's budget?
//   `hold(requester:target:now:)`     refused for want of a session with the target: keep it
//   `takeHeld(for:now:)`              the target's session came up: who asked for it
// Outputs: the decisions, returned (a forward in place, or a drop reason);
// NodeCore sends the introductions. No timer: held introductions expire lazily.

import Support
import Wire

/// A rendezvous request an anchor could not serve yet.
struct HeldIntroduction: Sendable {
    let requester: PeerID
    let target: PeerID
    let until: Instant
}

/// Relay counters of an anchor (status, tests).
struct RelayCounters: Sendable {
    var packets: UInt64 = 0
    var bytes: UInt64 = 0
}

struct RelayService: Sendable {
    /// A RELAY to forward, resolved by NodeCore against the roster and the paths.
    struct Request: Sendable {
        /// The member whose current, authenticated endpoint sent it; nil: none.
        var sender: PeerID?
        /// The member it names; nil: not a member, the sender, or us.
        var target: PeerID?
        /// The target's direct endpoint, if it has an established session and one.
        var targetRemote: Endpoint?
    }

    enum Forward: Equatable, Sendable {
        /// Rewrite the id to the sender's and send it (in place) to this endpoint.
        case forward(Endpoint)
        case refuse(NodeDropReason)
    }

    /// Held introductions at most (the oldest goes first): each member's
    /// requests are limited by its rendezvous budget (2/s) before they are held.
    static let maxHeldIntroductions = 256

    let timings: ConnectivityTimings
    private var relayBuckets: [TokenBucket]
    private var rendezvousBuckets: [TokenBucket]
    private(set) var held: [HeldIntroduction] = []
    private(set) var counters = RelayCounters()

    init(members: Int, timings: ConnectivityTimings) {
        self.timings = timings
        relayBuckets = Array(repeating: TokenBucket(rate: timings.relayBytesPerSecond, burst: timings.relayBurstBytes),
                             count: members)
        rendezvousBuckets = Array(repeating: TokenBucket(rate: UInt64(timings.rendezvousPerSecond),
                                                         burst: UInt64(timings.rendezvousBurst)), count: members)
    }

    /// Where to forward a RELAY of `length` bytes, or why not (the checks in
    /// the picture's order; the sender's budget is spent only on a forward).
    @inline(__always)
    mutating func forward(_ r: Request, length: Int, now: Instant) -> Forward {
        guard let sender = r.sender else { return .refuse(.relaySourceNotMember) }
        guard r.target != nil else { return .refuse(.relayUnknownTarget) }
        guard let remote = r.targetRemote else { return .refuse(.relayTargetUnreachable) }
        guard timings.relayBytesPerSecond == 0 || relayBuckets[sender.rawValue].take(UInt64(length), now: now) else {
            return .refuse(.relayRateLimited)
        }
        counters.packets &+= 1
        counters.bytes &+= UInt64(length)
        return .forward(remote)
    }

    /// A RENDEZVOUS_REQUEST from `requester`: within its budget?
    mutating func admitRendezvous(from requester: PeerID, now: Instant) -> Bool {
        rendezvousBuckets[requester.rawValue].take(1, now: now)
    }

    /// `requester` asked to meet `target`, which has no session with us yet:
    /// remember it for `introductionHold`.
    mutating func hold(requester: PeerID, target: PeerID, now: Instant) {
        held.removeAll { $0.until <= now || ($0.requester == requester && $0.target == target) }
        if held.count >= Self.maxHeldIntroductions { held.removeFirst() }
        held.append(HeldIntroduction(requester: requester, target: target, until: now + timings.introductionHold))
    }

    /// `target`'s session just came up: everyone who asked for it (and is
    /// still waiting), forgotten now.
    mutating func takeHeld(for target: PeerID, now: Instant) -> [PeerID] {
        guard held.contains(where: { $0.target == target }) else { return [] }
        let waiting = held.filter { $0.target == target && $0.until > now }.map(\.requester)
        held.removeAll { $0.target == target || $0.until <= now }
        return waiting
    }
}
