// NodeCore on an anchor: introductions that wait for their target.
//
// When every daemon starts at once, a member asks an anchor to introduce it
// to a member whose session with that anchor is still a round trip away. The
// anchor cannot introduce (or relay to) a member it has no session with, so
// it refuses (`relay_target_unreachable`, RelayService.swift). Forgetting the
// request there would leave the requester waiting for an event it missed:
// its rendezvous timeout (2 s), and for its handshake initiation, which the
// anchor refused to relay too, the session's retry (5 s, then 10, 20 s apart).
// So the anchor keeps the request, and answers the moment the target's
// session comes up; long enough (30 s) to cover a member that starts late:
//
//   RENDEZVOUS_REQUEST(M) from H, no session with M   -> refused and counted; held (H, M) for 30 s
//   M's session established                           -> RENDEZVOUS to H and to M; forgotten
//   30 s passed                                       -> forgotten (H's handshake retries go on)
//
// H takes that RENDEZVOUS as the news that relaying through us works now and
// sends its initiation again at once (Paths.swift `receiveRendezvous`). The
// held list is small and bounded: each member's requests are already limited
// by its rendezvous budget (2/s, burst 5) before they are held.

import Support
import Wire
import Crypto

/// A rendezvous request an anchor could not serve yet.
struct HeldIntroduction: Sendable {
    let requester: PeerID
    let target: PeerID
    let until: Instant
}

extension NodeCore {
    /// Held introductions at most (the oldest goes first): each member's
    /// requests are limited by its rendezvous budget (2/s) before they are held.
    static let maxHeldIntroductions = 256

    /// `requester` asked to meet the member with key `key`, which has no
    /// session with us yet: remember it for `introductionHold`.
    mutating func holdIntroduction(of requester: PeerID, to key: PublicKey, now: Instant) {
        guard let target = tunnels.peerID(for: key), target != requester, !conns[target.rawValue].isSelf else { return }
        heldIntroductions.removeAll { $0.until <= now || ($0.requester == requester && $0.target == target) }
        if heldIntroductions.count >= Self.maxHeldIntroductions { heldIntroductions.removeFirst() }
        heldIntroductions.append(HeldIntroduction(requester: requester, target: target, until: now + timings.introductionHold))
    }

    /// `target`'s session just came up: introduce everyone who asked for it
    /// (as `serveRendezvous` would have, the rendezvous budget already paid).
    mutating func introduceHeld(_ target: PeerID, now: Instant) {
        guard heldIntroductions.contains(where: { $0.target == target }) else { return }
        let waiting = heldIntroductions.filter { $0.target == target && $0.until > now }
        heldIntroductions.removeAll { $0.target == target || $0.until <= now }
        guard let path = conns[target.rawValue].activePath, path.via == nil else { return }
        for h in waiting where tunnels.isEstablished(h.requester, now: now) {
            _ = sendControl(.rendezvous(peer: conns[target.rawValue].key, candidates: introduce(target)), to: h.requester, now: now)
            _ = sendControl(.rendezvous(peer: conns[h.requester.rawValue].key, candidates: introduce(h.requester)), to: target, now: now)
        }
    }
}
