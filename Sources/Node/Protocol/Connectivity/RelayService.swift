// NodeCore: RELAY in both roles, and the anchor's rendezvous service.
//
//   member H                      anchor A                          member M
//   seal DATA for M, prepend  ──> source == H's current endpoint    
//   RELAY(id M), send to A        of an established session?        
//                                 id M a member with a session      
//                                 and a direct endpoint?            
//                                 H's bytes/s budget?               
//                                 rewrite id := H, forward ────────> from an anchor's endpoint: unwrap in
//                                 (in place, never decrypted)         place, Tunnels.receive(roam: false),
//                                                                     inner must authenticate as H
//
// An anchor is never an open relay: every check above is on state that only
// an authenticated session creates (DESIGN §5), and every refusal is counted.
// Rendezvous: a member asks an anchor to introduce it to another; the anchor
// sends each side the other's key and candidates, its own observation of
// that member first (the endpoint it actually hears the member from).

import Support
import Wire
import Crypto

extension NodeCore {
    mutating func receiveRelay(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                               now: Instant, underLoad: Bool) -> NodeInbound {
        guard let id = RelayMessage.parseHeader(UnsafeRawBufferPointer(buffer), length: length) else {
            return drop(.badLength)
        }
        if let anchor = anchorAt(source) {
            // Delivery: an anchor forwards a member's datagram to us; `id` names that member.
            guard let sender = roster.peer(relayLabel: id), !conns[sender.rawValue].isSelf else { return drop(.relayUnknownTarget) }
            let h = RelayMessage.headerSize
            let inner = UnsafeMutableRawBufferPointer(rebasing: buffer[h...])
            let result = receiveSession(inner, length: length - h, from: source, relayedBy: anchor, relayedFor: id,
                                        now: now, underLoad: underLoad)
            if case .packet(let p, let offset, let len) = result { return .packet(p, offset: offset + h, length: len) }
            return result
        }
        guard isAnchor else { return drop(.relayNotAnchor) }
        // Forwarding: the source must be a member's current, authenticated endpoint.
        guard let sender = directOwner[source], tunnels.isEstablished(sender, now: now),
              tunnels.endpoint(of: sender) == source else { return drop(.relaySourceNotMember) }
        guard let target = roster.peer(relayLabel: id), target != sender, !conns[target.rawValue].isSelf else {
            return drop(.relayUnknownTarget)
        }
        guard tunnels.isEstablished(target, now: now), let path = conns[target.rawValue].activePath, path.via == nil else {
            return drop(.relayTargetUnreachable)
        }
        guard timings.relayBytesPerSecond == 0 || conns[sender.rawValue].relayBucket.take(UInt64(length), now: now) else {
            return drop(.relayRateLimited)
        }
        RelayMessage.rewrite(conns[sender.rawValue].memberID, in: buffer)
        relayed.packets &+= 1
        relayed.bytes &+= UInt64(length)
        return .transmit(path.remote, offset: 0, length: length)
    }

    /// An anchor introduces `requester` and the member with key `target` to each other.
    mutating func serveRendezvous(from requester: PeerID, target key: PublicKey, now: Instant) -> NodeInbound {
        guard conns[requester.rawValue].rendezvousBucket.take(1, now: now) else { return drop(.rendezvousRateLimited) }
        guard let target = tunnels.peerID(for: key), target != requester, !conns[target.rawValue].isSelf,
              tunnels.isEstablished(target, now: now), conns[target.rawValue].activePath?.via == nil else {
            return drop(.relayTargetUnreachable)
        }
        _ = sendControl(.rendezvous(peer: key, candidates: introduce(target)), to: requester, now: now)
        _ = sendControl(.rendezvous(peer: conns[requester.rawValue].key, candidates: introduce(requester)), to: target, now: now)
        return .consumed
    }

    /// What we tell others about `p`: where we hear it from, then what it announced.
    func introduce(_ p: PeerID) -> [Candidate] {
        var out: [Candidate] = []
        if let path = conns[p.rawValue].activePath, path.via == nil { out.append(Candidate(path.remote, .observed)) }
        for c in conns[p.rawValue].candidates where !out.contains(where: { $0.endpoint == c.endpoint }) { out.append(c) }
        return Array(out.prefix(ControlMessage.maxCandidates))
    }
}
