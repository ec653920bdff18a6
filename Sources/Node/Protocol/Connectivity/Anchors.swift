// NodeCore's side of the AnchorTracker (AnchorTracker.swift has the picture):
// it gives the tracker what the session layer and the paths know (is the
// session up, is a keepalive ping out), sends what it decides (probes, pings,
// handshakes), and routes its verdicts to the other machines: a reachable
// anchor gives waiting members their relay path, an unreachable one moves the
// relays through it, an observation that moved heals every session and
// re-announces our candidates (EndpointBook), and every change is a verdict
// for Recovery.

import Support
import Wire
import Crypto

extension NodeCore {
    // MARK: Probing anchors

    mutating func addressProbeRound(now: Instant) {
        arm(.addressProbe, at: now + timings.addressProbeInterval - retryJitter(max: timings.addressProbeJitter, using: &rng))
        evaluateConnectivity(now: now)
        guard !recovery.isActive else { return }
        for a in anchorPeers {
            guard let ep = tunnels.endpoint(of: a) ?? book.staticEndpoint(a) else { continue }
            sendProbe(to: a, at: ep, recovery: false, now: now)
        }
    }

    mutating func sendProbe(to p: PeerID, at ep: Endpoint, recovery: Bool, now: Instant) {
        guard let bytes = anchorTracker.makeProbe(to: p, at: ep, recovery: recovery, from: publicKey, now: now) else { return }
        syncProbeTimer()
        outbox.push(Transmit(to: ep, bytes: bytes))
    }

    mutating func probeTimeouts(now: Instant) {
        while let probe = anchorTracker.expireProbe(now: now) {
            syncProbeTimer()
            guard anchorTracker.tracks(probe.target), !probe.recovery else { continue }
            let a = probe.target
            let retrySoon = anchorTracker.probeMissed(a, now: now)
            // Ask the session too, at once: an answered ping keeps the anchor
            // reachable, three missed ones make it unreachable sooner than probes.
            if tunnels.isEstablished(a, now: now), !keepalivePending(a), let ep = tunnels.endpoint(of: a) {
                sendPing(a, remote: ep, via: nil, purpose: .anchorKeepalive, onActivePath: true, now: now)
            }
            if retrySoon, !recovery.isActive {
                // "immediately when a path looks dead": probe again soon, not in a full interval.
                let retry = now + timings.probeRetry
                if deadline(.addressProbe).map({ retry < $0 }) ?? true { arm(.addressProbe, at: retry) }
            }
            updateAnchorReachability(a, now: now)
        }
        syncProbeTimer()
    }

    // MARK: The probe responder (every node)

    mutating func receiveProbe(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                               now: Instant) -> NodeInbound {
        guard let probe = PathProbe(UnsafeRawBufferPointer(buffer), length: length) else { return drop(.badLength) }
        // Filtering, not authentication (keys are public): a stranger cannot
        // make us answer, and nobody gets more than it sent.
        guard let sender = tunnels.peerID(for: probe.sender) else { return drop(.probeNotMember) }
        let known = tunnels.endpoint(of: sender) == source || book.staticEndpoint(sender) == source
            || tunnels.paths.directOwner[source] != nil
        guard anchorTracker.allowProbeReply(from: source, known: known, now: now) else { return drop(.probeRateLimited) }
        let reply = PathProbeReply(txid: probe.txid, observed: source, responder: publicKey)
        guard let n = reply.write(into: buffer), n <= length else { return drop(.badLength) }
        return .transmit(source, offset: 0, length: n)
    }

    mutating func receiveProbeReply(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                                    now: Instant) -> NodeInbound {
        guard let reply = PathProbeReply(UnsafeRawBufferPointer(buffer), length: length) else { return drop(.badLength) }
        guard let probe = anchorTracker.probe(txid: reply.txid), key(of: probe.target) == reply.responder,
              probe.to == source else {
            return drop(.probeUnexpectedReply)
        }
        anchorTracker.takeProbe(txid: reply.txid)
        syncProbeTimer()
        let p = probe.target
        if anchorTracker.tracks(p) {
            anchorTracker.probeAnswered(p)
            recordProbeObservation(p, reply.observed, now: now)
            if !tunnels.isEstablished(p, now: now), !tunnels.isHandshaking(p) {
                if probe.to != tunnels.endpoint(of: p) { setAnchorEndpoint(p, probe.to, now: now) }
                tunnels.connect(p, now: now)
            }
            updateAnchorReachability(p, now: now)
        } else if probe.recovery {
            // A cached endpoint answered: that is where the member is.
            let idx = addPath(p, kind: book.directKind(p, for: probe.to), remote: probe.to, via: nil)
            activate(p, idx, now: now)
            tunnels.connect(p, now: now)
        }
        return .consumed
    }

    // MARK: Anchor keepalive and reachability

    /// An anchor keepalive (PATH_PING) to `a` is out, unanswered.
    func keepalivePending(_ a: PeerID) -> Bool { tunnels.paths[a].pings.contains { $0.purpose == .anchorKeepalive } }

    mutating func anchorKeepalive(_ a: PeerID, now: Instant) {
        guard anchorTracker.tracks(a) else { return }
        arm(.anchorKeepalive(a), at: now + timings.anchorKeepalive)
        guard !recovery.isActive else { return }
        switch anchorTracker.keepalive(a, established: tunnels.isEstablished(a, now: now)) {
        case .ping:
            if !keepalivePending(a), let ep = tunnels.endpoint(of: a) {
                sendPing(a, remote: ep, via: nil, purpose: .anchorKeepalive, onActivePath: true, now: now)
            }
        case .rehandshake:
            tunnels.rehandshake(a, now: now)
        case .connect:
            if !tunnels.isHandshaking(a) { tunnels.connect(a, now: now) }
        }
    }

    mutating func updateAnchorReachability(_ a: PeerID, now: Instant) {
        guard let reachable = anchorTracker.updateReachability(a, established: tunnels.isEstablished(a, now: now),
                                                                keepalivePending: keepalivePending(a)) else { return }
        drainAnchorEvents()
        if reachable { givePathsToWaitingMembers(now: now) } else { rerouteRelays(avoiding: a, now: now) }
        updateWarnings(now: now)
        evaluateConnectivity(now: now)
    }

    func anchorReachable(_ a: PeerID) -> Bool { anchorTracker.isReachable(a) }

    var reachableAnchors: [PeerID] { anchorTracker.reachable }

    mutating func updateWarnings(now: Instant) {
        anchorTracker.updateWarnings(startedAt: startedAt, now: now)
        drainAnchorEvents()
    }

    mutating func drainAnchorEvents() {
        while let e = anchorTracker.pollEvent() { events.push(e) }
    }

    /// An anchor answered from another address than we had (its static one
    /// during recovery, or it moved): send there from now on.
    mutating func setAnchorEndpoint(_ a: PeerID, _ ep: Endpoint, now: Instant) {
        let idx = addPath(a, kind: .direct, remote: ep, via: nil)
        activate(a, idx, now: now)
    }

    // MARK: Observations, candidates, NAT

    /// A PATH_PROBE_REPLY's observation: counted if it agrees (AnchorTracker
    /// `observeByProbe`), else the anchor is pinged at once so that a
    /// PATH_PONG, authenticated, settles it.
    mutating func recordProbeObservation(_ a: PeerID, _ ep: Endpoint, now: Instant) {
        guard anchorTracker.tracks(a) else { return }
        if anchorTracker.observeByProbe(a, ep) { return recordObservation(a, ep, now: now) }
        if tunnels.isEstablished(a, now: now), let path = tunnels.paths[a].activePath, !keepalivePending(a) {
            sendPing(a, remote: path.remote, via: path.via, purpose: .anchorKeepalive, onActivePath: true, now: now)
        }
    }

    /// An authenticated observation (PATH_PONG, OBSERVED), or one two probe
    /// replies agreed on: where anchor `a` sees us now.
    mutating func recordObservation(_ a: PeerID, _ ep: Endpoint, now: Instant) {
        guard anchorTracker.tracks(a) else { return }
        let moved = anchorTracker.observe(a, ep, now: now)
        drainAnchorEvents()
        if moved != nil { heal(now: now) }
        candidatesMayHaveChanged(now: now)
        anchorTracker.classify(locals: book.locals)
        drainAnchorEvents()
    }

    /// Our address changed as the world sees it: tell every anchor our
    /// candidates (done by the caller) and every session where we are now —
    /// anchors first, so that an anchor has moved us before a relayed ping
    /// through it arrives (it relays only from a member's current endpoint).
    mutating func heal(now: Instant) {
        guard anchorTracker.mayHeal(now: now) else { return }
        let order = anchorPeers + entries.indices.map { PeerID(rawValue: $0) }.filter { !isAnchorMember($0) }
        for p in order where !isSelf(p) && tunnels.isEstablished(p, now: now) {
            guard let path = tunnels.paths[p].activePath else { continue }
            let isAnchor = anchorTracker.tracks(p)
            if path.via != nil {
                // Our NAT changed: a direct path may work now. Retry soon, from the start of the backoff.
                holePunch.resetRetry(p)
                arm(.directRetry(p), at: now + timings.directRetryInitial)
            } else if !isAnchor {
                // A member behind a filtering NAT drops our packets from the new
                // address until it sends there itself: a rendezvous makes both
                // sides punch again (the anchor hands out our new address).
                beginDirectAttempt(p, now: now)
            }
            sendPing(p, remote: path.remote, via: path.via, purpose: isAnchor ? .anchorKeepalive : .check, onActivePath: true, now: now)
        }
    }

    /// Our candidates, best first: local, port-mapped, observed by anchors (the EndpointBook's).
    var currentCandidates: [Candidate] { book.ownCandidates(observed: anchorTracker.observed) }

    /// Re-announces our candidates to every anchor with a session when they
    /// changed, and publishes our gossip record (at most once per second).
    mutating func candidatesMayHaveChanged(now: Instant) {
        let list = currentCandidates
        guard book.announce(list) else { return }
        publishOwnRecord(now: now)
        for a in anchorPeers where tunnels.isEstablished(a, now: now) {
            _ = sendControl(.candidates(list), to: a, now: now)
        }
    }

    /// Every endpoint that is ours (never a hole-punching target).
    func isOwnEndpoint(_ ep: Endpoint) -> Bool { book.isOwn(ep, observed: anchorTracker.observed) }
}
