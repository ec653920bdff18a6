// NodeCore: anchors and address observation.
//
//   every 7 s (± jitter)      PATH_PROBE -> every anchor  ─┐ reply: where the anchor sees us
//   every 20 s per anchor     PATH_PING (active-path flag) ─┤ pong: the same, authenticated, plus RTT;
//                                                           │       it also keeps NAT mappings open and the
//                                                           │       anchor's view of our endpoint current
//   a missed probe           -> probe again after 1 s, and ping the anchor at once
//   2 missed pings, or 3 missed probes and no pong since: unreachable
//   an anchor's observation changed (renumbered NAT, new mapping)
//                            -> re-announce CANDIDATES to every anchor, ping every session on its
//                               active path from the new address (members roam to it): the heal
//   reachable anchors 1 / 0  -> warning event (seed 2.1), `wsctl status` warnings
//
// NAT classification is `classifyNAT` over the anchors' latest observations
// (the evidence is kept and shown). An observation moves that state only when
// authenticated (a PATH_PONG, an OBSERVED) or agreed on: a PATH_PROBE_REPLY,
// which only its random txid ties to our probe, is a hint until a second
// probe reply or a pong says the same (`recordProbeObservation`). The probe
// responder (every node) answers members only, in place, never with more
// bytes than the probe, within a per-source budget (IPv6: per /64) and, for
// sources that are not where a member is known to be, a global one.

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
        if recovery {
            // Each recovery attempt probes everything, even if the previous
            // attempt's probe (less than a timeout ago, early on) is unanswered.
            probes.removeAll { $0.target == p && $0.to == ep }
        } else if probes.contains(where: { $0.target == p && $0.to == ep }) {
            return
        }
        // From libsodium, not `rng`: the txid is the reply's only authenticator.
        let txid = txids.next()
        probes.append(PendingProbe(txid: txid, target: p, to: ep, sentAt: now, recovery: recovery))
        outbox.push(Transmit(to: ep, bytes: PathProbe(txid: txid, sender: publicKey).bytes))
    }

    mutating func probeTimeouts(now: Instant) {
        var k = 0
        while k < probes.count {
            guard probes[k].sentAt + timings.probeTimeout <= now else { k += 1; continue }
            let probe = probes.remove(at: k)
            guard conns[probe.target.rawValue].anchor != nil, !probe.recovery else { continue }
            let a = probe.target
            conns[a.rawValue].anchor?.missedProbes += 1
            conns[a.rawValue].anchor?.lastProbeMiss = now
            // Ask the session too, at once: an answered ping keeps the anchor
            // reachable, two missed ones make it unreachable sooner than probes.
            if tunnels.isEstablished(a, now: now), !conns[a.rawValue].pings.contains(where: { $0.purpose == .anchorKeepalive }),
               let ep = tunnels.endpoint(of: a) {
                sendPing(a, remote: ep, via: nil, purpose: .anchorKeepalive, onActivePath: true, now: now)
            }
            if (conns[probe.target.rawValue].anchor?.missedProbes ?? 0) < timings.anchorMissedProbes, !recovery.isActive {
                // "immediately when a path looks dead": probe again soon, not in a full interval.
                let retry = now + timings.probeRetry
                if deadline(.addressProbe).map({ retry < $0 }) ?? true { arm(.addressProbe, at: retry) }
            }
            updateAnchorReachability(probe.target, now: now)
        }
    }

    // MARK: The probe responder (every node)

    mutating func receiveProbe(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                               now: Instant) -> NodeInbound {
        guard let probe = PathProbe(UnsafeRawBufferPointer(buffer), length: length) else { return drop(.badLength) }
        // Filtering, not authentication (keys are public): a stranger cannot
        // make us answer, and nobody gets more than it sent.
        guard let sender = tunnels.peerID(for: probe.sender) else { return drop(.probeNotMember) }
        guard probeLimiter.allow(source, now: now) else { return drop(.probeRateLimited) }
        // A flood from many sources passes the per-source budget (each new
        // source starts full): all of them share one global budget. A probe
        // from where a member is known to be does not, so members are still
        // answered during such a flood (one whose address changed waits for
        // the flood to end, or heals through its session's pings).
        let known = tunnels.endpoint(of: sender) == source || book.staticEndpoint(sender) == source
            || directOwner[source] != nil
        guard known || probeReplyBudget.take(1, now: now) else { return drop(.probeRateLimited) }
        let reply = PathProbeReply(txid: probe.txid, observed: source, responder: publicKey)
        guard let n = reply.write(into: buffer), n <= length else { return drop(.badLength) }
        return .transmit(source, offset: 0, length: n)
    }

    mutating func receiveProbeReply(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                                    now: Instant) -> NodeInbound {
        guard let reply = PathProbeReply(UnsafeRawBufferPointer(buffer), length: length) else { return drop(.badLength) }
        guard let k = probes.firstIndex(where: { $0.txid == reply.txid }),
              conns[probes[k].target.rawValue].key == reply.responder, probes[k].to == source else {
            return drop(.probeUnexpectedReply)
        }
        let probe = probes.remove(at: k)
        let p = probe.target
        if conns[p.rawValue].anchor != nil {
            conns[p.rawValue].anchor?.missedProbes = 0
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

    mutating func anchorKeepalive(_ a: PeerID, now: Instant) {
        if conns[a.rawValue].anchor != nil { arm(.anchorKeepalive(a), at: now + timings.anchorKeepalive) }
        guard !recovery.isActive, let st = conns[a.rawValue].anchor else { return }
        if tunnels.isEstablished(a, now: now), st.missedPings < timings.anchorMissedPings {
            if !conns[a.rawValue].pings.contains(where: { $0.purpose == .anchorKeepalive }),
               let ep = tunnels.endpoint(of: a) {
                sendPing(a, remote: ep, via: nil, purpose: .anchorKeepalive, onActivePath: true, now: now)
            }
        } else if tunnels.isEstablished(a, now: now) {
            // Keys we think are live, but no answer under them: the anchor
            // restarted and lost the session. A new handshake.
            tunnels.rehandshake(a, now: now)
        } else if !tunnels.isHandshaking(a) {
            tunnels.connect(a, now: now)
        }
    }

    mutating func updateAnchorReachability(_ a: PeerID, now: Instant) {
        guard let st = conns[a.rawValue].anchor else { return }
        // Probes decide only when the session has nothing better to say: no
        // pong since the last missed probe, and none on its way.
        let pingPending = conns[a.rawValue].pings.contains { $0.purpose == .anchorKeepalive }
        let probesOK = st.missedProbes < timings.anchorMissedProbes || pingPending
            || (st.lastPong.map { p in st.lastProbeMiss.map { p > $0 } ?? true } ?? false)
        let reachable = tunnels.isEstablished(a, now: now) && st.missedPings < timings.anchorMissedPings && probesOK
        guard reachable != st.reachable else { return }
        conns[a.rawValue].anchor?.reachable = reachable
        events.push(reachable ? .anchorReachable(a) : .anchorUnreachable(a))
        if reachable { givePathsToWaitingMembers(now: now) } else { rerouteRelays(avoiding: a, now: now) }
        updateWarnings(now: now)
        evaluateConnectivity(now: now)
    }

    func anchorReachable(_ a: PeerID) -> Bool { conns[a.rawValue].anchor?.reachable ?? false }

    var reachableAnchors: [PeerID] { anchorPeers.filter { anchorReachable($0) } }

    mutating func updateWarnings(now: Instant) {
        guard let s = startedAt, now - s >= timings.warningGrace else { return }
        let reachable = reachableAnchors
        let total = anchorPeers.count + (isAnchor ? 1 : 0)
        let count = reachable.count + (isAnchor ? 1 : 0)
        let state: WarningState = total == 0 ? .none : count == 0 ? .noAnchor : count == 1 ? .onlyOne : .none
        guard state != warningState else { return }
        warningState = state
        switch state {
        case .none: break
        case .onlyOne: events.push(.onlyOneAnchorReachable(reachable.first))
        case .noAnchor: events.push(.noAnchorReachable)
        }
    }

    /// An anchor answered from another address than we had (its static one
    /// during recovery, or it moved): send there from now on.
    mutating func setAnchorEndpoint(_ a: PeerID, _ ep: Endpoint, now: Instant) {
        let idx = addPath(a, kind: .direct, remote: ep, via: nil)
        activate(a, idx, now: now)
    }

    // MARK: Observations, candidates, NAT

    /// What a PATH_PROBE_REPLY says anchor `a` sees. Only the txid (64 random
    /// bits) ties the reply to our probe, and anyone on the path can forge
    /// one, so by itself it never changes the observed endpoint, the
    /// candidates we announce or the NAT class (review M6). It counts when
    ///  - it agrees with what we hold (a refresh), or
    ///  - the previous probe reply from this anchor said the same: two
    ///    independent probes (different txids, sent seconds apart) agree;
    /// otherwise it is kept as a hint, and the anchor is pinged at once: the
    /// PATH_PONG's observation is authenticated (`recordObservation`) and
    /// settles it within one round trip — how a renumbered NAT still heals
    /// within the probe interval.
    mutating func recordProbeObservation(_ a: PeerID, _ ep: Endpoint, now: Instant) {
        guard let st = conns[a.rawValue].anchor else { return }
        if st.observed == ep || st.probeHint == ep { return recordObservation(a, ep, now: now) }
        conns[a.rawValue].anchor?.probeHint = ep
        if tunnels.isEstablished(a, now: now), let path = conns[a.rawValue].activePath,
           !conns[a.rawValue].pings.contains(where: { $0.purpose == .anchorKeepalive }) {
            sendPing(a, remote: path.remote, via: path.via, purpose: .anchorKeepalive, onActivePath: true, now: now)
        }
    }

    /// An authenticated observation (PATH_PONG, OBSERVED), or one two probe
    /// replies agreed on: where anchor `a` sees us now.
    mutating func recordObservation(_ a: PeerID, _ ep: Endpoint, now: Instant) {
        guard let st = conns[a.rawValue].anchor else { return }
        conns[a.rawValue].anchor?.probeHint = nil
        let old = st.observed
        conns[a.rawValue].anchor?.observed = ep
        conns[a.rawValue].anchor?.observedAt = now
        if let old, old != ep {
            events.push(.observedEndpointChanged(anchor: a, old: old, new: ep))
            heal(now: now)
        }
        candidatesMayHaveChanged(now: now)
        let mapping = classifyNAT(natEvidence, local: book.locals)
        if mapping != nat {
            nat = mapping
            events.push(.natMappingChanged(mapping))
        }
    }

    var natEvidence: [NATEvidence] {
        anchorPeers.compactMap { a in
            guard let st = conns[a.rawValue].anchor, let ep = st.observed, let at = st.observedAt else { return nil }
            return NATEvidence(anchor: a, observed: ep, at: at)
        }
    }

    /// Our address changed as the world sees it: tell every anchor our
    /// candidates (done by the caller) and every session where we are now —
    /// anchors first, so that an anchor has moved us before a relayed ping
    /// through it arrives (it relays only from a member's current endpoint).
    mutating func heal(now: Instant) {
        if let last = lastHeal, now - last < timings.probeTimeout { return }
        lastHeal = now
        let order = anchorPeers + conns.indices.map { PeerID(rawValue: $0) }.filter { !conns[$0.rawValue].isAnchorMember }
        for p in order where !conns[p.rawValue].isSelf && tunnels.isEstablished(p, now: now) {
            guard let path = conns[p.rawValue].activePath else { continue }
            if path.via != nil {
                // Our NAT changed: a direct path may work now. Retry soon, from the start of the backoff.
                conns[p.rawValue].directRetryAttempt = 0
                arm(.directRetry(p), at: now + timings.directRetryInitial)
            } else if conns[p.rawValue].anchor == nil {
                // A member behind a filtering NAT drops our packets from the new
                // address until it sends there itself: a rendezvous makes both
                // sides punch again (the anchor hands out our new address).
                beginDirectAttempt(p, now: now)
            }
            let purpose: PingPurpose = conns[p.rawValue].anchor != nil ? .anchorKeepalive : .check
            sendPing(p, remote: path.remote, via: path.via, purpose: purpose, onActivePath: true, now: now)
        }
    }

    /// Where the anchors see us, in anchor order.
    var observedByAnchors: [Endpoint] { anchorPeers.compactMap { conns[$0.rawValue].anchor?.observed } }

    /// Our candidates, best first: local, port-mapped, observed by anchors (the EndpointBook's).
    var currentCandidates: [Candidate] { book.ownCandidates(observed: observedByAnchors) }

    /// Re-announces our candidates to every anchor with a session when they changed.
    mutating func candidatesMayHaveChanged(now: Instant) {
        let list = currentCandidates
        guard book.announce(list) else { return }
        for a in anchorPeers where tunnels.isEstablished(a, now: now) {
            _ = sendControl(.candidates(list), to: a, now: now)
        }
    }

    /// Every endpoint that is ours (never a hole-punching target).
    func isOwnEndpoint(_ ep: Endpoint) -> Bool {
        book.isOwn(ep, observed: observedByAnchors)
    }
}
