// NodeCore: session datagrams, in-session control messages, and the roaming
// rule (which authenticated packets move a member's path).
//
// Roaming (seed 2.5: NodeCore decides, Tunnels never roams here):
//   - authenticated *traffic* (IP packets, keepalives, control messages other
//     than punch pings) from a direct source of the same or a better class
//     than the active path: follow it — the member sends from where it wants
//     to be reached (that is how a renumbered NAT heals: its first keepalive
//     moves us);
//   - from a worse class (LAN -> public, direct -> relay): only once the
//     active path has gone quiet (nothing heard for `pathQuiet`): the member
//     fell back, so do we;
//   - punch pings (PATH_PING without the active-path flag) and pongs never
//     roam: they validate paths, and a validated path wins by preference
//     (`prefers`), not by arriving last.
// (The rule itself is PathManager's `roams`; `noteRx` below applies it.)

import Support
import Wire
import Crypto

extension NodeCore {
    /// A session datagram (types 1...4), direct or the inner part of a RELAY.
    mutating func receiveSession(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                                 relayedBy anchor: PeerID?, relayedFor sender: MemberID? = nil,
                                 now: Instant, underLoad: Bool) -> NodeInbound {
        // Sharded (1..N reactors): DATA is opened only by the shard that owns its index.
        if tunnels.sharded, buffer[0] == MessageType.data.rawValue {
            guard length >= DataMessage.minimumSize else { return drop(.session(.badLength)) }
            return .handoff(reactor: SessionOwnership.owner(ofIndex: buffer.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian,
                                                            owners: tunnels.owners))
        }
        // A relayed handshake meets the same defences as a direct one, keyed to
        // the member the anchor names (Tunnels: mac2, cookie reply, budget).
        let origin = sender.flatMap { id in member(id).map { RelayOrigin(sender: $0, memberID: id) } }
        let result = tunnels.receive(buffer, length: length, from: source, now: now, underLoad: underLoad, roam: false,
                                     relayed: origin)
        absorbTunnels(now: now)
        switch result {
        case .data(let peer, let offset, let len):
            if let sender, memberID(of: peer) != sender { return drop(.relayMismatch) }
            let payload = UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + len)])
            switch ControlMessage.classify(payload, length: len) {
            case .keepalive:
                noteRx(peer, source: source, via: anchor, traffic: true, now: now)
                return .consumed
            case .ipPacket:
                noteRx(peer, source: source, via: anchor, traffic: true, now: now)
                // WireGuard pads the plaintext to 16 bytes: the IP header's length is the packet's.
                if isWireGuardPeer(peer) {
                    return .packet(peer, offset: offset, length: WireGuardPadding.ipLength(payload, length: len))
                }
                return .packet(peer, offset: offset, length: len)
            case .control:
                // A WireGuard peer has no control messages (Roster capabilities).
                guard !isWireGuardPeer(peer) else { return drop(.controlNotAllowed) }
                return receiveControlPayload(payload, from: peer, source: source, via: anchor, now: now)
            case .unknown:
                return drop(.unknownPayload)
            }
        case .control:
            return .consumed
        case .drop(let reason):
            return drop(.session(reason))
        }
    }

    /// Bookkeeping for an authenticated packet from `p` over (source, via), and the roaming rule.
    mutating func noteRx(_ p: PeerID, source: Endpoint, via: PeerID?, traffic: Bool, now: Instant) {
        // Heard from an address we route into the tunnel: it came through the
        // tunnel itself (e.g. to a LAN address of a site we route to the member).
        // Never a path: sending there would loop.
        if via == nil, book.isTunnelled(source) { return }
        let wasActive = tunnels.paths[p].activePath
        defer {
            // Seed 2.5: a WireGuard peer's roaming is monitored, not obeyed: a
            // new source is counted and shown, and taken only if the rule above took it.
            if isWireGuardPeer(p), let old = wasActive, old.remote != source || old.via != via {
                wireGuardRoams[p.rawValue].sawNewSource(source, from: old.remote,
                                                        taken: tunnels.paths[p].activePath?.remote == source, now: now)
            }
        }
        let idx: Int
        if let found = tunnels.paths[p].pathIndex(remote: source, via: via) {
            idx = found
        } else {
            let kind = via != nil ? PathKind.relay : book.directKind(p, for: source)
            idx = addPath(p, kind: kind, remote: source, via: via)
        }
        tunnels.paths.heard(p, idx, traffic: traffic, now: now)
        if traffic { tunnels.receivedOver(p, kind: tunnels.paths[p].paths[idx].kind) }
        anchorTracker.heard(p, now: now)
        guard traffic, tunnels.paths[p].active != idx, tunnels.paths.roams(p, to: idx, relayed: via != nil, now: now) else { return }
        // Spread over several paths (multipath): traffic over another path of the
        // spread is expected, not a move; the active path stays while it is usable.
        if let a = tunnels.paths[p].active, view(p, a, now: now).usable, spreadRoute(for: p, now: now).contains(slot: idx) {
            return
        }
        activate(p, idx, now: now)
    }

    mutating func handleControl(_ message: ControlMessage, from p: PeerID, source: Endpoint, via: PeerID?,
                                now: Instant) -> NodeInbound {
        switch message {
        case .pathPing(let txid, let onActive):
            noteRx(p, source: source, via: via, traffic: onActive, now: now)
            // The answer goes back exactly the way the ping came, whatever our active path.
            _ = sendControl(.pathPong(txid: txid, observed: source), to: p, path: (source, via), now: now)
            if !onActive, via == nil, tunnels.paths[p].pathIndex(remote: source, via: nil).map({
                tunnels.paths[p].paths[$0].isValid(now: now, timings: timings)
            }) != true, !tunnels.paths[p].pings.contains(where: { $0.remote == source && $0.via == nil }) {
                // A triggered check (ICE's term): the member reached us from
                // there; find out whether we reach it back the same way.
                sendPing(p, remote: source, via: nil, purpose: .punch, onActivePath: false, now: now)
            }
        case .pathPong(let txid, let observed):
            receivePong(p, txid: txid, observed: observed, source: source, via: via, now: now)
        case .echoRequest(let txid):
            noteRx(p, source: source, via: via, traffic: true, now: now)
            // Back exactly the way it came, as a PATH_PONG: the asker learns which path answered.
            _ = sendControl(.echoReply(txid: txid, observed: source), to: p, path: (source, via), now: now)
        case .echoReply(let txid, let observed):
            noteRx(p, source: source, via: via, traffic: true, now: now)
            return receiveEchoReply(p, txid: txid, observed: observed, source: source, via: via, now: now)
        case .observed(let ep):
            noteRx(p, source: source, via: via, traffic: true, now: now)
            if anchorTracker.tracks(p) { recordObservation(p, ep, now: now) }
        case .candidates(let list):
            noteRx(p, source: source, via: via, traffic: true, now: now)
            // Bounded by the parser (maxCandidates) and rate-limited here: an
            // anchor hands them out, a member punches them (review M8).
            guard book.allowUpdate(from: p, now: now) else { return drop(.candidatesRateLimited) }
            let list = Array(list.prefix(ControlMessage.maxCandidates))
            // An anchor stores what the member says (it never punches it); a
            // member punches only within the unattested-address budget.
            book.setCandidates(p, isAnchor ? list : admitCandidates(p, list, attested: nil, now: now), now: now)
        case .rendezvousRequest(let target):
            noteRx(p, source: source, via: via, traffic: true, now: now)
            guard isAnchor else { return drop(.controlNotAllowed) }
            let result = serveRendezvous(from: p, target: target, now: now)
            // Refused for now (no session with the target yet): answered when it comes up.
            if result == .drop(.relayTargetUnreachable) { holdIntroduction(of: p, to: target, now: now) }
            return result
        case .rendezvous(let key, let list):
            noteRx(p, source: source, via: via, traffic: true, now: now)
            guard anchorTracker.tracks(p), let x = tunnels.peerID(for: key), x != p,
                  !isSelf(x) else { return drop(.controlNotAllowed) }
            receiveRendezvous(x, from: p, candidates: list, now: now)
        }
        return .consumed
    }

    mutating func receivePong(_ p: PeerID, txid: UInt64, observed: Endpoint, source: Endpoint, via: PeerID?, now: Instant) {
        guard let ping = tunnels.paths.takePing(p, txid: txid) else {
            noteRx(p, source: source, via: via, traffic: false, now: now)
            return  // late: its ping already counted as lost
        }
        syncPingTimer(p)
        noteRx(p, source: source, via: via, traffic: false, now: now)
        // Validated only if it came back from exactly where the ping went.
        guard ping.via == via, via != nil || ping.remote == source,
              let idx = tunnels.paths[p].pathIndex(remote: ping.remote, via: ping.via) else { return }
        tunnels.paths.validated(p, idx, rtt: now - ping.sentAt, now: now)
        if anchorTracker.tracks(p) {
            anchorTracker.ponged(p, now: now)
            recordObservation(p, observed, now: now)
            updateAnchorReachability(p, now: now)
        }
        considerPath(p, idx, now: now)
    }

    mutating func handleSessionEvent(_ e: TunnelEvent, now: Instant) {
        switch e {
        case .endpointChanged(let p, let ep):
            // With roam: false this is a first contact (the member had no
            // endpoint): its first packet came this way, so answers go back so.
            let idx: Int
            if let a = relayingAnchor(to: ep, for: p) {
                idx = addPath(p, kind: .relay, remote: ep, via: a)
            } else {
                idx = addPath(p, kind: book.directKind(p, for: ep), remote: ep, via: nil)
            }
            tunnels.paths.heard(p, idx, traffic: false, now: now)
            if tunnels.paths[p].active == nil { activate(p, idx, now: now) }
        case .established(let p):
            events.push(.session(e))
            // The handshake answered on the active path: it is heard.
            if let a = tunnels.paths[p].active { tunnels.paths.heard(p, a, traffic: false, now: now) }
            if anchorTracker.tracks(p) {
                anchorTracker.established(p)
                arm(.anchorKeepalive(p), at: now)  // ping at once: RTT and an authenticated observation
                if !book.announced.isEmpty { _ = sendControl(.candidates(book.announced), to: p, now: now) }
                updateAnchorReachability(p, now: now)
            }
            if holePunch.isPunching(p) { arm(.punch(p), at: now) }
            if isAnchor { introduceHeld(p, now: now) }
            if !isWireGuardPeer(p) { gossipSession(p, up: true, now: now) }
            evaluateConnectivity(now: now)
        case .handshakeFailed(let p), .expired(let p):
            events.push(.session(e))
            gossipSession(p, up: false, now: now)
            if anchorTracker.tracks(p) { updateAnchorReachability(p, now: now) }
            evaluateConnectivity(now: now)
        case .rekeyed:
            events.push(.session(e))
        }
    }

    // MARK: Sending control messages

    /// Sends a control message to `p`: on `path` (sealed for it, whatever the
    /// session's endpoint), or else through the session like data (queued
    /// until keys exist). False if it could not be sealed or queued.
    @discardableResult
    mutating func sendControl(_ message: ControlMessage, to p: PeerID, path: (remote: Endpoint, via: PeerID?)? = nil,
                              now: Instant) -> Bool {
        sendControlBytes(message.bytes, to: p, path: path, now: now)
    }

    /// `sendControl` for a payload already serialized (gossip's messages).
    @discardableResult
    mutating func sendControlBytes(_ payload: [UInt8], to p: PeerID, path: (remote: Endpoint, via: PeerID?)? = nil,
                                   now: Instant) -> Bool {
        // A WireGuard peer would take a control message for a bad IP packet:
        // none is sent (pings, gossip, candidates, rendezvous all end here).
        guard !isWireGuardPeer(p) else { return false }
        let head = DataMessage.headerSize
        var buf = [UInt8](repeating: 0, count: head + payload.count + DataMessage.tagSize)
        buf.replaceSubrange(head..<(head + payload.count), with: payload)
        if let path {
            let sealed = buf.withUnsafeMutableBytes {
                tunnels.seal(for: p, $0, payloadOffset: head, payloadLength: payload.count, now: now)
            }
            guard let sealed else { return false }
            let bytes = Array(buf[sealed.offset..<(sealed.offset + sealed.length)])
            if path.via != nil {
                outbox.push(Transmit(to: path.remote, bytes: relayWrapped(bytes, for: p, to: path.remote), peer: p))
            } else {
                outbox.push(Transmit(to: path.remote, bytes: bytes, peer: p))
            }
            absorbTunnels(now: now)
            return true
        }
        let result = buf.withUnsafeMutableBytes {
            tunnels.send(to: p, $0, payloadOffset: head, payloadLength: payload.count, now: now)
        }
        switch result {
        case .send(let to, let offset, let length):
            let bytes = Array(buf[offset..<(offset + length)])
            if relayingAnchor(to: to, for: p) != nil {
                outbox.push(Transmit(to: to, bytes: relayWrapped(bytes, for: p, to: to), peer: p))
            } else {
                outbox.push(Transmit(to: to, bytes: bytes, peer: p))
            }
            absorbTunnels(now: now)
            return true
        case .queued:
            absorbTunnels(now: now)
            return true
        case .drop:
            return false
        }
    }

    /// A PATH_PING to `p` on (remote, via), remembered until answered or timed out.
    @discardableResult
    mutating func sendPing(_ p: PeerID, remote: Endpoint, via: PeerID?, purpose: PingPurpose, onActivePath: Bool,
                           now: Instant) -> Bool {
        guard tunnels.paths.canPing(p) else { return false }
        let txid = rng.next()
        guard sendControl(.pathPing(txid: txid, onActivePath: onActivePath), to: p, path: (remote, via), now: now) else {
            return false
        }
        if tunnels.paths[p].pathIndex(remote: remote, via: via) == nil {
            let kind = via != nil ? PathKind.relay : book.directKind(p, for: remote)
            _ = addPath(p, kind: kind, remote: remote, via: via)
        }
        tunnels.paths.addPing(p, PendingPing(txid: txid, remote: remote, via: via, sentAt: now, purpose: purpose))
        syncPingTimer(p)
        return true
    }
}
