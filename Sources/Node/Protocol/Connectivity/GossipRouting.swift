// NodeCore's side of gossip (Gossip/Gossip.swift has the machine and its
// picture): what it hands the machine and where its outputs go.
//
//   gossip control message (0x10...0x13) from a member's session ──▶ gossip.handle
//   session established / expired, handshake failed ────────────────▶ peerUp / peerDown
//   our candidates changed (local, mapped, observed) ───────────────▶ publish, at most once per
//                                                                      `publishInterval` (NodeTimer .gossipPublish)
//   gossip.pollTransmit ──▶ an encrypted control message to that member, only over a live session
//                           (gossip never brings a session up)
//   gossip.pollEvent    ──▶ recordChanged: the member's own endpoints into the EndpointBook
//                           (source `.gossip`: signed by the member, so vouched for)
//   gossip.pollTimeout  ──▶ NodeTimer .gossip
//   a record taken      ──▶ NodeEvent.gossipRecordsChanged (the engine writes `gossipSnapshot()`)

import Support
import Wire
import Crypto

extension NodeCore {
    /// A decrypted control payload from member `p` (first byte 0x01...0x3F):
    /// gossip goes to the gossip machine, the rest to `handleControl`.
    mutating func receiveControlPayload(_ payload: UnsafeRawBufferPointer, from p: PeerID, source: Endpoint, via: PeerID?,
                                        now: Instant) -> NodeInbound {
        if payload.count > 0, GossipMessage.isGossip(payload[0]) {
            // Traffic like any other authenticated message: it may move the path.
            noteRx(p, source: source, via: via, traffic: true, now: now)
            gossip.handle(payload, from: p, now: now)
            drainGossip(now: now)
            return .consumed
        }
        guard let message = ControlMessage(payload, length: payload.count) else { return drop(.controlMalformed) }
        return handleControl(message, from: p, source: source, via: via, now: now)
    }

    /// Routes what gossip gave back: messages (over live sessions only), changed
    /// records (into the book), its next deadline, and "the snapshot changed".
    mutating func drainGossip(now: Instant) {
        while let (to, bytes) = gossip.pollTransmit() {
            guard isPeer(to), tunnels.isEstablished(to, now: now) else { continue }
            sendControlBytes(bytes, to: to, now: now)
        }
        while let e = gossip.pollEvent() {
            switch e {
            case .recordChanged(let p, let record):
                guard isPeer(p) else { continue }
                let usable = record.endpoints.filter { PathManager.isUsableRemote($0.endpoint) && !isOwnEndpoint($0.endpoint) }
                // The signature says who published the addresses, not that
                // they are the member's: a new one meets the same budget as
                // its candidates (review M8), so a member that churns records
                // cannot make us ping more third parties than its candidates
                // could. An address its previous record held stays admitted.
                book.setGossiped(p, isAnchor ? usable : admitCandidates(p, usable, attested: nil, now: now),
                                 sequence: record.sequence, now: now)
                // A member we reach only through a relay published new
                // addresses (it moved, or got a port mapping): try them now,
                // with a rendezvous so that it punches towards us too, not at
                // the next direct retry. Not while a punch runs (it already
                // takes the book's addresses each round).
                if !isAnchor, !isAnchorMember(p), tunnels.paths[p].activeKind == .relay, tunnels.isEstablished(p, now: now),
                   !holePunch.isPunching(p) {
                    recordPunches += 1
                    beginDirectAttempt(p, now: now)
                }
            }
        }
        syncGossipTimer()
        if gossip.counters.recordsAccepted != gossipSavedAccepted {
            gossipSavedAccepted = gossip.counters.recordsAccepted
            events.push(.gossipRecordsChanged)
        }
    }

    mutating func syncGossipTimer() { arm(.gossip, at: gossip.pollTimeout()?.deadline) }

    /// Our own record, if our candidates differ from what it says: now, or once
    /// `publishInterval` has passed since the last one.
    mutating func publishOwnRecord(now: Instant) {
        let list = Array(currentCandidates.prefix(EndpointRecord.maxEndpoints))
        guard !list.isEmpty, list != gossip.record(of: PeerID(rawValue: gossip.me)).map({ $0.endpoints }) else {
            arm(.gossipPublish, at: nil)
            return
        }
        if let last = gossipPublishedAt, now < last + gossip.timings.publishInterval {
            if deadline(.gossipPublish) == nil { arm(.gossipPublish, at: last + gossip.timings.publishInterval) }
            return
        }
        gossipPublishedAt = now
        gossip.publish(list, now: now)
        drainGossip(now: now)
    }

    /// A member's session came up or went away.
    mutating func gossipSession(_ p: PeerID, up: Bool, now: Instant) {
        guard isPeer(p) else { return }
        if up { gossip.peerUp(p, now: now) } else { gossip.peerDown(p) }
        drainGossip(now: now)
    }

    // MARK: Persistence and status

    /// Loads the gossip snapshot the engine found in state_dir (before anything
    /// is sent: our record's sequence continues where the last run's ended).
    /// Returns the records taken.
    @discardableResult
    public mutating func loadGossipSnapshot(_ bytes: [UInt8], now: Instant) -> Int {
        let n = gossip.load(bytes, now: now)
        gossipSavedAccepted = gossip.counters.recordsAccepted
        drainGossip(now: now)
        // The loaded record of ours is the last run's: ours now, if it differs, one higher.
        if startedAt != nil { publishOwnRecord(now: now) }
        return n
    }

    /// Every record held, ours first (see `NodeEvent.gossipRecordsChanged`).
    public func gossipSnapshot() -> [UInt8] { gossip.snapshot() }

    /// The record held for member `p` (ours: `gossip.me`).
    public func gossipRecord(of p: PeerID) -> EndpointRecord? { gossip.record(of: p) }

    /// Our own record's sequence (never goes backwards).
    public var gossipOwnSequence: UInt64 { gossip.ownSequence }
}
