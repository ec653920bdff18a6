// NodeCore's routing between its machines: what each is given (values, small
// views of the others' state) and where its outputs go. A machine never reads
// another's state; an output of one becomes the input of another here.
//
//   Recovery      <- the paths verdict (AnchorTracker's reachability, sessions' liveness)
//                 -> probes (sent as the AnchorTracker's), its events, the recovery timer;
//                    start/end pause/resume the anchor keepalive and probe-round timers
//   RelayService  <- the RELAY's sender and target, resolved against the roster and paths
//                 -> a forward or a refusal; held introductions, answered with `introduce`

import Support
import Wire
import Crypto

extension NodeCore {
    // MARK: Recovery

    /// The paths verdict, for Recovery: is any anchor reachable, or any member session alive?
    mutating func evaluateConnectivity(now: Instant) {
        // Without anchors there is nothing to recover to: the node works like
        // WireGuard (configured endpoints, handshakes on traffic), and says so
        // in its warnings.
        guard !isAnchor, !anchorPeers.isEmpty, let s = startedAt, now - s >= timings.warningGrace else { return }
        let anchorUp = anchorPeers.contains { anchorReachable($0) }
        // A member session is a path while its keys live and it is either heard
        // from lately or idle (nothing sent since it was last heard): data
        // going out unanswered, or expired keys, is what "lost" looks like.
        let peerUp = entries.indices.contains { i in
            guard !entries[i].isSelf, !entries[i].isAnchor, let rx = tunnels.paths.peers[i].activePath?.lastRx,
                  tunnels.isEstablished(PeerID(rawValue: i), now: now) else { return false }
            return now - rx < timings.pathValidFor || (tunnels.paths.peers[i].lastDataTx.map { $0 <= rx } ?? true)
        }
        switch recovery.evaluate(pathsUp: anchorUp || peerUp, now: now) {
        case .recovered:
            arm(.recovery, at: nil)
            unparkRecoveryPausedTimers()
            drainRecoveryEvents()
            arm(.addressProbe, at: now)
        case .started:
            parkRecoveryPausedTimers()
            arm(.recovery, at: now)
            anchorTracker.dropObservationProbes()
            syncProbeTimer()
            drainRecoveryEvents()
        case nil:
            break
        }
    }

    /// The recovery timer fired: Recovery says what to probe, from what we know of each member.
    mutating func recoveryAttempt(now: Instant) {
        func unique(_ list: [Endpoint]) -> [Endpoint] {
            var eps: [Endpoint] = []
            for ep in list where !eps.contains(ep) { eps.append(ep) }
            return eps
        }
        let anchors = anchorPeers.map { a in
            (a, unique([tunnels.endpoint(of: a), book.staticEndpoint(a)].compactMap { $0 } + book.cached(a)))
        }
        // WireGuard peers are never probed (a PATH_PROBE means nothing to them).
        let members = !recovery.probesMembers ? [] : entries.indices.filter {
            !entries[$0].isSelf && !entries[$0].isAnchor && !isWireGuardPeer(PeerID(rawValue: $0))
        }.map { i in
            (PeerID(rawValue: i), unique(book.cached(PeerID(rawValue: i)) + [book.staticEndpoint(PeerID(rawValue: i))].compactMap { $0 }))
        }
        let (targets, next) = recovery.attempt(anchors: anchors, members: members, now: now, rng: &rng)
        for t in targets { sendProbe(to: t.peer, at: t.endpoint, recovery: true, now: now) }
        drainRecoveryEvents()
        arm(.recovery, at: next)
    }

    mutating func drainRecoveryEvents() {
        while let e = recovery.pollEvent() { events.push(e) }
    }

    // MARK: RelayService

    mutating func receiveRelay(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                               now: Instant, underLoad: Bool) -> NodeInbound {
        guard let id = RelayMessage.parseHeader(UnsafeRawBufferPointer(buffer), length: length),
              let base = buffer.baseAddress else {
            return drop(.badLength)
        }
        if let anchor = anchorAt(source) {
            // Delivery: an anchor forwards a member's datagram to us; `id` names that member.
            // The anchor tagged it under its session with us: a forged anchor source stops here.
            guard tunnels.relayHop(of: anchor).check(base, length: length) else { return drop(.relayBadTag) }
            guard let sender = member(id), !isSelf(sender), !isWireGuardPeer(sender) else { return drop(.relayUnknownTarget) }
            let h = RelayMessage.headerSize
            let inner = UnsafeMutableRawBufferPointer(rebasing: buffer[h...])
            let result = receiveSession(inner, length: length - h, from: source, relayedBy: anchor, relayedFor: id,
                                        now: now, underLoad: underLoad)
            if case .packet(let p, let offset, let len) = result { return .packet(p, offset: offset + h, length: len) }
            return result
        }
        guard isAnchor else { return drop(.relayNotAnchor) }
        // Forwarding: the source must be a member's current endpoint, and the tag
        // must authenticate under that member's session (the address alone can be forged).
        var request = RelayService.Request()
        var targetKey: RelayTagKey?
        if let sender = tunnels.paths.directOwner[source], tunnels.isEstablished(sender, now: now), tunnels.endpoint(of: sender) == source {
            guard tunnels.relayHop(of: sender).check(base, length: length) else { return drop(.relayBadTag) }
            request.sender = sender
            // A WireGuard peer cannot unwrap a RELAY: never a relay target.
            if let target = member(id), target != sender, !isSelf(target), !isWireGuardPeer(target) {
                request.target = target
                if tunnels.isEstablished(target, now: now), let path = tunnels.paths[target].activePath, path.via == nil,
                   let key = tunnels.relayHop(of: target).send {
                    request.targetRemote = path.remote
                    targetKey = key
                }
            }
        }
        switch relay.forward(request, length: length, now: now) {
        case .refuse(let reason):
            return drop(reason)
        case .forward(let remote):
            // Rewrite the id to name the sender, and tag it under our session with the target.
            RelayMessage.rewrite(memberID(of: request.sender!), in: buffer)
            RelayTag.seal(base, length: length, key: targetKey!)
            return .transmit(remote, offset: 0, length: length)
        }
    }

    /// `inner` wrapped in RELAY for `peer` through the anchor at `to`, tagged
    /// under our session with that anchor (control path: handshakes, control messages).
    func relayWrapped(_ inner: [UInt8], for peer: PeerID, to: Endpoint) -> [UInt8] {
        var out = RelayMessage.wrap(inner, for: memberID(of: peer))
        if let anchor = anchorAt(to), let key = tunnels.relayHop(of: anchor).send, out.count >= RelayMessage.minimumSize {
            out.withUnsafeMutableBytes { RelayTag.seal($0.baseAddress!, length: $0.count, key: key) }
        }
        return out
    }

    /// Writes a tagged RELAY header for `peer` at `buffer[offset...]`, in front of
    /// the sealed datagram already there (`length`: header and datagram).
    @inline(__always)
    func writeRelayHeader(for peer: PeerID, to: Endpoint, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int, length: Int) {
        RelayMessage.writeHeader(memberID(of: peer), into: buffer, at: offset)
        guard let anchor = anchorAt(to), let key = tunnels.relayHop(of: anchor).send, let base = buffer.baseAddress else { return }
        RelayTag.seal(base + offset, length: length, key: key)
    }

    /// An anchor introduces `requester` and the member with key `target` to each other.
    mutating func serveRendezvous(from requester: PeerID, target key: PublicKey, now: Instant) -> NodeInbound {
        guard relay.admitRendezvous(from: requester, now: now) else { return drop(.rendezvousRateLimited) }
        guard let target = tunnels.peerID(for: key), target != requester, !isSelf(target),
              tunnels.isEstablished(target, now: now), tunnels.paths[target].activePath?.via == nil else {
            return drop(.relayTargetUnreachable)
        }
        introduceRecords(target, requester, now: now)
        _ = sendControl(.rendezvous(peer: key, candidates: introduce(target)), to: requester, now: now)
        _ = sendControl(.rendezvous(peer: self.key(of: requester), candidates: introduce(requester)), to: target, now: now)
        return .consumed
    }

    /// The signed records that go with an introduction of `a` and `b`, each to
    /// the other, sent before the RENDEZVOUS in the same session (so they are
    /// in the receiver's endpoint book when its punch starts). The receiver's
    /// gossip machine checks the signature, as for any record.
    mutating func introduceRecords(_ a: PeerID, _ b: PeerID, now: Instant) {
        gossip.introduce(a, to: b)
        gossip.introduce(b, to: a)
        drainGossip(now: now)
    }

    /// What we tell others about `p`: where we hear it from, then what it announced.
    func introduce(_ p: PeerID) -> [Candidate] {
        var out: [Candidate] = []
        if let path = tunnels.paths[p].activePath, path.via == nil { out.append(Candidate(path.remote, .observed)) }
        for c in book.candidates(p) where !out.contains(where: { $0.endpoint == c.endpoint }) { out.append(c) }
        return Array(out.prefix(ControlMessage.maxCandidates))
    }

    /// `requester` asked to meet the member with key `key`, which has no
    /// session with us yet: RelayService holds it.
    mutating func holdIntroduction(of requester: PeerID, to key: PublicKey, now: Instant) {
        guard let target = tunnels.peerID(for: key), target != requester, !isSelf(target) else { return }
        relay.hold(requester: requester, target: target, now: now)
    }

    /// `target`'s session just came up: introduce everyone who asked for it
    /// (as `serveRendezvous` would have, the rendezvous budget already paid).
    mutating func introduceHeld(_ target: PeerID, now: Instant) {
        let waiting = relay.takeHeld(for: target, now: now)
        guard !waiting.isEmpty, let path = tunnels.paths[target].activePath, path.via == nil else { return }
        for h in waiting where tunnels.isEstablished(h, now: now) {
            introduceRecords(target, h, now: now)
            _ = sendControl(.rendezvous(peer: key(of: target), candidates: introduce(target)), to: h, now: now)
            _ = sendControl(.rendezvous(peer: key(of: h), candidates: introduce(h)), to: target, now: now)
        }
    }
}
