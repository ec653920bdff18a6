// NodeCore's side of PathManager and HolePunch: choosing and keeping a path
// per member, and looking for a direct one. The machines hold the state and
// make the choices (PathManager.swift, HolePunch.swift); here NodeCore
// applies them to the session layer (`Tunnels.activate`: the path manager,
// which the session layer holds, gives its sessions their destination), the EndpointBook (the
// cache, the addresses to punch) and the AnchorTracker's reachability.
//
//   first packet to M, no path ──> relay through anchor A = relayAnchor(us, M) (data flows at once)
//                              └─> RENDEZVOUS_REQUEST(M) to A, and punch what we already know
//   (no anchor reachable yet: the packet waits in the session's queue; the first anchor
//    that becomes reachable gives M its relay path)
//   A ──RENDEZVOUS──> both sides (the other's key and candidates, A's own observation first)
//   (A has no session with M yet, a cold start: A holds the request and answers when M's
//    session comes up; our initiation, which A refused to relay, goes again at once, via A)
//   both sides: PATH_PING every candidate, rounds 100, 200, 400 ms ... ≤ 1 s, for 5 s
//               from the first round with keys (pings need the session)
//   PATH_PONG back from exactly where the ping went ──> path validated ──> `prefers` ──> active
//   punch over, still relayed ──> retry (new rendezvous) after 10 s, 20 s ... ≤ 120 s while traffic flows
//   active path quiet 3 s while sending ──> PATH_PING it; 3 missed ──> dead: fall back (relay), re-punch
//   anchor of a relay unreachable ──> relay through another reachable anchor
//
// Hole punching uses PATH_PING inside the session rather than PATH_PROBE:
// the pong is authenticated, so a candidate address that reaches some other
// host (every home LAN is 192.168.1.0/24) can never validate a path to the
// wrong member; it needs keys first, but the relayed session provides them
// within one relayed round trip, and it carries the observed source back and
// an RTT for scoring. No port prediction, no port sweeping (seed 1.5): only
// the candidates members announce and anchors observe are tried.

import Support
import Wire
import Crypto

extension NodeCore {
    /// Gives a member with no active path one: relay through an anchor
    /// (and start looking for a direct path), or its static/cached endpoint.
    mutating func ensurePath(_ p: PeerID, now: Instant) {
        if isWireGuardPeer(p) {
            // Single path, never relayed or punched: the configured (or last
            // working) endpoint, or none until the peer reaches us.
            if let ep = book.staticEndpoint(p) ?? book.cached(p).first {
                activate(p, addPath(p, kind: .direct, remote: ep, via: nil), now: now)
            }
            return
        }
        if isAnchorMember(p) {
            if let ep = book.staticEndpoint(p) {
                activate(p, addPath(p, kind: .direct, remote: ep, via: nil), now: now)
            }
            return
        }
        if !isAnchor, let a = chooseRelayAnchor(for: p, now: now), let aep = tunnels.endpoint(of: a) {
            activate(p, addPath(p, kind: .relay, remote: aep, via: a), now: now)
            beginDirectAttempt(p, now: now)
            return
        }
        if let ep = book.staticEndpoint(p) ?? book.lan(p) ?? book.cached(p).first {
            activate(p, addPath(p, kind: book.directKind(p, for: ep), remote: ep, via: nil), now: now)
            if !isAnchor { startPunch(p, now: now) }
        }
    }

    /// The anchor to relay `p` through: the pair's hash over reachable anchors
    /// whose relay path to `p` has not just died.
    func chooseRelayAnchor(for p: PeerID, now: Instant) -> PeerID? {
        let usable = reachableAnchors.filter { a in
            guard let ep = tunnels.endpoint(of: a), let idx = tunnels.paths[p].pathIndex(remote: ep, via: a),
                  let dead = tunnels.paths[p].paths[idx].deadAt else { return true }
            return now - dead >= timings.pathValidFor
        }
        return relayAnchor(for: myID, memberID(of: p), among: usable.map { (memberID(of: $0), $0) })
    }

    /// Data goes on paths[idx] from now on.
    mutating func activate(_ p: PeerID, _ idx: Int, now: Instant) {
        let old = tunnels.activate(p, idx)
        let path = tunnels.paths[p].paths[idx]
        arm(.pathCheck(p), at: nil)
        if old?.remote != path.remote || old?.via != path.via {
            events.push(.pathChanged(p, kind: path.kind, remote: path.remote, via: path.via))
        }
        guard path.kind != .relay else { return }
        arm(.directRetry(p), at: nil)
        holePunch.resetRetry(p)
        if path.lastRx != nil || path.validatedAt != nil, book.recordWorking(p, path.remote) {
            events.push(.endpointCacheChanged)
        }
        if isAnchorMember(p) {
            if let k = anchorEndpoints.firstIndex(where: { $0.peer == p }), anchorEndpoints[k].endpoint != path.remote {
                let was = anchorEndpoints[k].endpoint
                anchorEndpoints[k].endpoint = path.remote
                anchorMoved(p, from: was, to: path.remote, now: now)
            }
        } else if isAnchor, old?.remote != path.remote, tunnels.isEstablished(p, now: now) {
            // An anchor tells a member where it sees it (authenticated), so a
            // renumbered member learns it as soon as it says anything.
            _ = sendControl(.observed(path.remote), to: p, now: now)
        }
    }

    /// Relay paths through an anchor that moved follow it.
    mutating func anchorMoved(_ a: PeerID, from old: Endpoint, to new: Endpoint, now: Instant) {
        for p in tunnels.paths.anchorMoved(a, from: old, to: new) { tunnels.pathOpened(p) }
    }

    func view(_ p: PeerID, _ idx: Int, now: Instant) -> PathView {
        tunnels.paths.view(p, idx, now: now) { anchorTracker.isReachable($0) }
    }

    /// A path just proved itself: make it active if it is preferred.
    mutating func considerPath(_ p: PeerID, _ idx: Int, now: Instant) {
        guard tunnels.paths[p].active != idx, tunnels.paths.preferredOverActive(p, idx, now: now, anchorUp: { anchorTracker.isReachable($0) }) else {
            return
        }
        activate(p, idx, now: now)
        if tunnels.paths[p].activeKind == .lan { endPunch(p, now: now) }
    }

    /// The active path stopped answering (or its anchor went away): the best
    /// other usable path, else a fresh relay or static path.
    mutating func fallBack(_ p: PeerID, now: Instant) {
        tunnels.attributeTraffic(p)
        tunnels.paths.deactivate(p)
        if let best = tunnels.paths.best(p, now: now, anchorUp: { anchorTracker.isReachable($0) }) {
            activate(p, best, now: now)
            if tunnels.paths[p].activeKind == .relay { beginDirectAttempt(p, now: now) }
        } else {
            ensurePath(p, now: now)
        }
    }

    mutating func rerouteRelays(avoiding a: PeerID, now: Instant) {
        for i in entries.indices where tunnels.paths.peers[i].activePath?.via == a { fallBack(PeerID(rawValue: i), now: now) }
    }

    /// An anchor became reachable: a member that has a handshake waiting for
    /// want of any path (its first packets came before any anchor's session
    /// was up, a cold start; `sendPacket` held them) gets its relay path now,
    /// and the initiation leaves at once.
    mutating func givePathsToWaitingMembers(now: Instant) {
        guard !isAnchor else { return }
        for i in entries.indices where !entries[i].isSelf && !entries[i].isAnchor && tunnels.paths.peers[i].active == nil {
            let p = PeerID(rawValue: i)
            if tunnels.isHandshaking(p) { ensurePath(p, now: now) }
        }
    }

    /// No path to `p` and no anchor reachable yet, on a member with anchors:
    /// one will be (at start their sessions are a round trip away, and
    /// recovery looks for them), so `sendPacket` holds the packet instead of
    /// dropping it.
    func awaitsAnchor(_ p: PeerID) -> Bool {
        !isAnchor && !anchorPeers.isEmpty && !isAnchorMember(p) && !isWireGuardPeer(p) && reachableAnchors.isEmpty
    }

    /// Data was sent to `p` (the data path: a few comparisons, no allocation).
    @inline(__always)
    mutating func noteDataSent(_ p: PeerID, now: Instant) {
        if !isAnchorMember(p) {
            let d = deadline(.pathCheck(p))
            let multi = timings.multipath && tunnels.paths[p].paths.count >= 2
            if d == nil || (multi && d! > now + timings.farProbe && tunnels.paths.mayLookAtChecks(p, now: now, interval: timings.farProbe)) {
                // The interval: `farProbe` for a spread (from the first check),
                // `probeRetry` while a direct path that answered before is dead (it rejoins the
                // spread within a second of coming back: perf/multipath A after the single-path
                // runs had one path rejoin 2-3 s late), else `pathQuiet`.
                var every = timings.pathQuiet
                if multi {
                    if probedSpreadPaths(p, now: now) != 0 {
                        every = timings.farProbe
                    } else if tunnels.paths.hasDeadDirectPath(p) {
                        every = timings.probeRetry
                    }
                }
                if d == nil || now + every < d! { arm(.pathCheck(p), at: now + every) }
            }
        }
        if tunnels.paths[p].activeKind == .relay, deadline(.directRetry(p)) == nil, !holePunch.isPunching(p),
           deadline(.rendezvousTimeout(p)) == nil {
            arm(.directRetry(p), at: holePunch.retryAt(p, now: now))
        }
    }

    /// The active path's check: heard from lately, or ping it.
    mutating func checkPath(_ p: PeerID, now: Instant) {
        arm(.pathCheck(p), at: nil)
        guard tunnels.isEstablished(p, now: now) else { return }
        checkSpreadPaths(p, now: now)
        guard let path = tunnels.paths.checkWanted(p, now: now) else { return }
        sendPing(p, remote: path.remote, via: path.via, purpose: .check, onActivePath: true, now: now)
    }

    /// Multipath (every member but WireGuard peers and anchors): the paths besides the
    /// active one are kept probed while data flows (this runs every `pathQuiet` then).
    /// A usable path quiet for `pathQuiet` gets a check ping (its RTT for the scheduler;
    /// misses declare it dead); a direct path that answered once and is not usable now
    /// (declared dead, or its validation ran out while unused) gets one too, so it joins
    /// the spread again when it comes back.
    /// The paths of a spread that the latency rule lets carry data are pinged every
    /// `farProbe` (100 ms), busy or not: the scheduler learns from the queue in each RTT
    /// sample whether a path is saturated (its rule 2) and a far path's cap follows it
    /// (4b). A PATH_PING takes a counter of the session, and one sent over a slower path
    /// is a gap the receiver waits for, no longer than a data packet's on that path; a
    /// path the latency rule leaves out (C's 200 ms one) is not pinged that often.
    /// (Session 8 measured pings every 100 ms on every path, that one included, with
    /// other rules of its own: A 66 and C 37 Mbit/s; session 11 without the left-out path
    /// and with the saturation rule: A 90.0, C 45.1, perf/results/multipath.md.)
    mutating func checkSpreadPaths(_ p: PeerID, now: Instant) {
        guard timings.multipath, !isWireGuardPeer(p), !isAnchorMember(p), let a = tunnels.paths[p].active else { return }
        let far = probedSpreadPaths(p, now: now)
        var k = 0
        while k < tunnels.paths[p].paths.count {
            let idx = k
            k += 1
            let path = tunnels.paths[p].paths[idx]
            // The active path too while it has no RTT (the side that did not start the
            // session learned it from traffic, never pinged it): `prefers` compares a lan
            // path with it by RTT, and without one the class alone would decide.
            // A path of the spread, every time (`farProbe`): the scheduler's saturation rule
            // and a far path's cap follow the queues in its samples.
            if idx < 16, far & (1 << UInt16(idx)) != 0 {
                // pinged below, busy or not
            } else if idx == a {
                guard path.rtt == nil, path.via == nil else { continue }
            } else if path.rtt != nil, let at = path.rttAt, now - at < timings.rttStale, let rx = path.lastRx,
                      now - rx < timings.pathQuiet {
                // (A path that carries the peer's traffic but was never measured here, or not
                // for `rttStale`, gets its one ping: without an RTT it cannot join this side's
                // spread, and with an old one the latency rule may keep it out for good: after
                // perf/multipath C, D's 20 ms path kept its 200 ms RTT, carried only the
                // peer's ACKs, and the spread never formed.)
                continue
            }
            let usable = view(p, idx, now: now).usable
            // A direct path that answered once and is not usable now: declared dead, or its
            // validation ran out while it carried nothing (perf/multipath A after the
            // single-path runs: path 1 had been the active path, the flow came back to
            // path 0, and path 1, unused and unvalidated, was never pinged again: no spread).
            let revive = !usable && path.via == nil && path.rtt != nil
            // A direct or LAN path that never answered here (its link was down when the
            // session began: perf/multipath with `--runs "ws0 ws"` had path 1 never
            // probed again, and no spread): one ping every `candidateRetry`.
            let candidate = !usable && path.via == nil && path.rtt == nil && (path.kind == .direct || path.kind == .lan)
                && path.candidateProbeAt.map { now - $0 >= timings.candidateRetry } ?? true
            guard usable || revive || candidate else { continue }
            // One ping in flight per path; on a far-probed path one that is overdue (twice
            // its RTT, at least twice `farProbe`: a drop-tail queue lost it) does not hold up
            // the next for the whole `probeTimeout`.
            let probed = idx < 16 && far & (1 << UInt16(idx)) != 0
            let overdue = max(Span(ns: 2 * (path.rtt ?? timings.farProbe).ns), Span(ns: 2 * timings.farProbe.ns))
            if tunnels.paths[p].pings.contains(where: {
                $0.remote == path.remote && $0.via == path.via && (!probed || now - $0.sentAt < overdue)
            }) { continue }
            if candidate { tunnels.paths.noteCandidateProbe(p, idx, now: now) }
            sendPing(p, remote: path.remote, via: path.via, purpose: .check, onActivePath: idx == a, now: now)
        }
    }

    /// The paths of `p`'s spread pinged every `farProbe` (bit per PathSet slot): each one
    /// the latency rule lets carry data (not too far behind the spread's fastest path,
    /// `MultipathScheduler.tooFar`), the fastest included; 0 when the data is not spread.
    func probedSpreadPaths(_ p: PeerID, now: Instant) -> UInt16 {
        let r = spreadRoute(for: p, now: now)
        guard r.count >= 2 else { return 0 }
        var fastest = 0
        var k = 1
        while k < r.count {
            if r[k].minRTT < r[fastest].minRTT { fastest = k }
            k += 1
        }
        var mask: UInt16 = 0
        k = 0
        while k < r.count {
            let m = r[k].minRTT, f = r[fastest].minRTT, t = MultipathTimings.default
            // Near enough for the latency rule to let it carry data: a path the scheduler
            // leaves out (C's 200 ms one) is not pinged often, as every ping on it is a gap
            // the receiver waits for (perf/multipath C held 375 packets' worth behind each).
            if r[k].slot < 16, !MultipathScheduler.tooFar(minRTT: m, reference: f, timings: t) {
                mask |= 1 << UInt16(r[k].slot)
            }
            k += 1
        }
        if mask != 0 && r[fastest].slot < 16 { mask |= 1 << UInt16(r[fastest].slot) }
        return mask
    }

    mutating func pingTimeouts(_ p: PeerID, now: Instant) {
        while let ping = tunnels.paths.expirePing(p, now: now) {
            syncPingTimer(p)
            guard let idx = tunnels.paths[p].pathIndex(remote: ping.remote, via: ping.via) else { continue }
            // A punch ping that finds no answer is how punching works (the
            // first ones open the NATs; most candidates never answer): it is
            // not the path's loss. Loss and misses count only the pings that
            // check a path (keepalives, quiet checks), so status shows a
            // working path's loss, not the punch that found it.
            let missed = ping.purpose == .punch ? tunnels.paths[p].paths[idx].missed : tunnels.paths.lost(p, idx)
            switch ping.purpose {
            case .anchorKeepalive:
                if anchorTracker.pingLost(p), anchorTracker.tracks(p) { arm(.anchorKeepalive(p), at: now + timings.probeRetry) }
                updateAnchorReachability(p, now: now)
            case .check:
                // A path of a spread behind a full drop-tail queue loses a few pings in a row:
                // misses declare such a path dead only once nothing at all came over it for
                // `pathQuiet` (the data's answers count).
                let silent = tunnels.paths[p].paths[idx].lastRx.map { now - $0 >= timings.pathQuiet } ?? true
                guard tunnels.paths[p].active == idx else {
                    // Another path of a spread (multipath): dead after as many misses, no fallback needed.
                    if missed >= timings.pathMissedPings && silent {
                        tunnels.paths.markDead(p, idx, now: now)
                    } else if spreadRoute(for: p, now: now).contains(slot: idx) {
                        sendPing(p, remote: ping.remote, via: ping.via, purpose: .check, onActivePath: false, now: now)
                    }
                    continue
                }
                // A spread pings its paths (the active one too) ten times a second through the
                // flow's own drop-tail queue: misses count there only once nothing at all came
                // over it for `pathQuiet`.
                let probed = idx < 16 && probedSpreadPaths(p, now: now) & (1 << UInt16(idx)) != 0
                if missed >= timings.pathMissedPings && (silent || !probed) {
                    tunnels.paths.markDead(p, idx, now: now)
                    fallBack(p, now: now)
                } else {
                    sendPing(p, remote: ping.remote, via: ping.via, purpose: .check, onActivePath: true, now: now)
                }
            case .punch:
                break
            }
        }
        syncPingTimer(p)  // a deadline that went stale costs one wake-up, never a spin
    }

    // MARK: Rendezvous and hole punching

    mutating func beginDirectAttempt(_ p: PeerID, now: Instant) {
        guard !isAnchor, !isAnchorMember(p) else { return }
        holePunch.beginAttempt(p)
        requestRendezvous(p, now: now)
        startPunch(p, now: now)
    }

    /// Asks a reachable anchor (the pair's relay anchor first) to introduce us to `p`.
    mutating func requestRendezvous(_ p: PeerID, now: Instant) {
        let preferred = relayAnchor(for: myID, memberID(of: p),
                                    among: reachableAnchors.map { (memberID(of: $0), $0) })
        guard let a = holePunch.chooseRendezvousAnchor(p, options: [preferred].compactMap { $0 } + reachableAnchors) else {
            arm(.rendezvousTimeout(p), at: nil)
            return
        }
        arm(.rendezvousTimeout(p), at: now + timings.rendezvousTimeout)
        _ = sendControl(.rendezvousRequest(target: key(of: p)), to: a, now: now)
    }

    /// `anchor` introduces us to `p`: it has live sessions with both of us now.
    mutating func receiveRendezvous(_ p: PeerID, from anchor: PeerID, candidates: [Candidate], now: Instant) {
        // The anchor puts where it hears `p` from first (RelayService `introduce`).
        let observed = candidates.first.flatMap { $0.source == .observed ? $0.endpoint : nil }
        book.setCandidates(p, admitCandidates(p, candidates, attested: observed, now: now), now: now)
        holePunch.rendezvousAnswered(p)
        arm(.rendezvousTimeout(p), at: nil)
        // Someone asked for this introduction because a direct path is missing
        // or broken (or the member's NAT changed): our direct path is no longer
        // taken on trust. It stays active until another validates (or it does again).
        tunnels.paths.distrustDirect(p)
        if tunnels.paths[p].active == nil { ensurePath(p, now: now) }
        if !tunnels.isEstablished(p, now: now) {
            // No session yet, so nothing proves our path to p works, but
            // relaying through `anchor` does now. Our initiation may have
            // reached an anchor before that anchor knew p (a cold start: it
            // refused to relay it) and nothing else would send it again before
            // the session's retry (5 s): send it now, through `anchor`.
            if let path = tunnels.paths[p].activePath, path.via != anchor, let aep = tunnels.endpoint(of: anchor) {
                activate(p, addPath(p, kind: .relay, remote: aep, via: anchor), now: now)
            }
            tunnels.expediteHandshake(p, now: now)
        }
        startPunch(p, now: now)
    }

    /// The part of `list` (a member's announced candidates, or an anchor's
    /// introduction) we will punch. Vouched-for addresses always: `attested`
    /// (the introducing anchor's own observation), `p`'s configured or cached
    /// endpoints, and addresses we have heard `p` from. Every other address is
    /// only `p`'s word, and a member could name any host on the Internet: at
    /// most `unattestedPunchTargets` distinct ones per `unattestedPunchWindow`,
    /// however many introductions arrive (review M8). Within the budget,
    /// observed addresses are taken first (they are public), then the rest in
    /// the member's order; the result keeps the list's order.
    mutating func admitCandidates(_ p: PeerID, _ list: [Candidate], attested: Endpoint?, now: Instant) -> [Candidate] {
        let heard = tunnels.paths[p].paths.compactMap { $0.via == nil && $0.lastRx != nil ? $0.remote : nil }
        return book.admit(p, list, attested: attested, heard: heard, now: now)
    }

    mutating func startPunch(_ p: PeerID, now: Instant) {
        guard !isAnchorMember(p), !isWireGuardPeer(p) else { return }
        holePunch.start(p, now: now)
        arm(.punch(p), at: now)
    }

    /// Addresses worth a punch ping: the member's candidates, what the cache
    /// and config know; never one of ours or an anchor's, never one already valid.
    func punchTargets(_ p: PeerID, now: Instant) -> [Endpoint] {
        let c = tunnels.paths[p]
        var out: [Endpoint] = []
        let all = book.punchable(p)
        for ep in all where PathManager.isUsableRemote(ep) && !out.contains(ep) && !isOwnEndpoint(ep) && anchorAt(ep) == nil {
            if let k = c.pathIndex(remote: ep, via: nil), c.paths[k].isValid(now: now, timings: timings) { continue }
            out.append(ep)
        }
        return out
    }

    mutating func punchRound(_ p: PeerID, now: Instant) {
        switch holePunch.round(p, established: tunnels.isEstablished(p, now: now), handshaking: tunnels.isHandshaking(p), now: now) {
        case .end:
            endPunch(p, now: now)
        case .wait(let next, let prepare):
            if prepare {
                if tunnels.paths[p].active == nil { ensurePath(p, now: now) }
                if !tunnels.isHandshaking(p) { tunnels.connect(p, now: now) }
            }
            arm(.punch(p), at: next)
        case .punch(let first, let until):
            let activeRemote = tunnels.paths[p].activePath.flatMap { $0.via == nil ? $0.remote : nil }
            for ep in punchTargets(p, now: now) {
                // A ping to where our data goes says so: once it gets through, the
                // member roams to our source (how a renumbered side is found again
                // behind a filtering NAT: both sides punch, the flag moves the path).
                sendPing(p, remote: ep, via: nil, purpose: .punch, onActivePath: ep == activeRemote, now: now)
            }
            // The relay path's RTT too, once per punch (for status and scoring).
            if first, let path = tunnels.paths[p].activePath, let a = path.via {
                sendPing(p, remote: path.remote, via: a, purpose: .punch, onActivePath: false, now: now)
            }
            let (next, end) = holePunch.roundDone(p, until: until, directActive: tunnels.paths[p].activeKind == .direct, now: now)
            arm(.punch(p), at: next)
            if end { endPunch(p, now: now) }
        }
    }

    mutating func endPunch(_ p: PeerID, now: Instant) {
        let (wasPunching, retryAt) = holePunch.end(p, relayed: tunnels.paths[p].activeKind == .relay, now: now)
        guard wasPunching else { return }
        arm(.punch(p), at: nil)
        if let retryAt { arm(.directRetry(p), at: retryAt) }
    }

    mutating func rendezvousTimedOut(_ p: PeerID, now: Instant) {
        arm(.rendezvousTimeout(p), at: nil)
        requestRendezvous(p, now: now)  // the next anchor, if any
    }

    mutating func directRetry(_ p: PeerID, now: Instant) {
        arm(.directRetry(p), at: nil)
        guard tunnels.paths[p].activeKind == .relay, let tx = tunnels.paths[p].lastDataTx, now - tx < timings.directRetryIdle else { return }
        beginDirectAttempt(p, now: now)
    }
}
