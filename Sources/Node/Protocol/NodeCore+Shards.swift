// NodeCore's side of sharded sessions (SessionShard.swift; the engine and the
// simulator at 1..N reactors): what it tells the owners, and what it takes back
// from them. Reactor 0 only.

import Support
import Wire
import Crypto

extension NodeCore {
    /// Reactors the sessions are split across (1: one shard owns them all).
    public var owners: Int { tunnels.owners }

    /// Whether SessionShards seal and open the data (NodeCore's `init`, `sharded`).
    public var sharded: Bool { tunnels.sharded }

    /// A peer whose keypairs changed: send `shardKeys(of:)` to its owner.
    public mutating func pollKeyChange() -> PeerID? { tunnels.pollKeyChange() }

    package func shardKeys(of peer: PeerID) -> KeypairSlots { tunnels.keys(of: peer) }

    /// Where the owner sends `peer`'s data now; nil while there is no active
    /// path (then the owner hands packets here, and `sendPacket` finds one).
    public func dataRoute(for peer: PeerID) -> DataRoute? {
        guard peer.rawValue >= 0, peer.rawValue < roster.count, !isSelf(peer),
              tunnels.paths[peer].active != nil, let ep = tunnels.endpoint(of: peer) else { return nil }
        return DataRoute(endpoint: ep, relayFor: relayingAnchor(to: ep, for: peer) != nil ? memberID(of: peer) : nil,
                         spread: spreadRoute(for: peer, now: clock))
    }

    /// The paths `peer`'s data is spread over: every usable path that answered a
    /// PATH_PING (it has an RTT), the active one first, up to `SpreadRoute.capacity`;
    /// empty with fewer than two (then the owner sends on the active path alone).
    /// Members only: not WireGuard peers (single path), not anchors (control traffic).
    func spreadRoute(for peer: PeerID, now: Instant) -> SpreadRoute {
        var r = SpreadRoute()
        guard timings.multipath, !isWireGuardPeer(peer), !isAnchorMember(peer), let a = tunnels.paths[peer].active,
              tunnels.paths[peer].paths.count >= 2 else {
            return r
        }
        // The active path first, then the others in PathSet order (no closure: this runs per shard report).
        let activeRelayed = tunnels.paths[peer].paths[a].via != nil
        var k = -1
        while k < tunnels.paths[peer].paths.count && r.count < SpreadRoute.capacity {
            let idx = k < 0 ? a : k
            k += 1
            if k > 0 && idx == a { continue }
            let path = tunnels.paths[peer].paths[idx]
            if !timings.multipathRelay, (path.via != nil) != activeRelayed { continue }  // another class than the active path's
            // A path besides the active one must have answered lately: while data
            // flows its check pings come every `pathQuiet`, so a path silent for
            // twice that (a NAT renumbered under it, a link gone) leaves the spread
            // instead of taking a share of the packets into nowhere.
            if idx != a, path.lastRx.map({ now - $0 > timings.pathQuiet + timings.pathQuiet }) ?? true { continue }
            guard let srtt = path.rtt, view(peer, idx, now: now).usable else {
                if idx == a { return SpreadRoute() }  // the active path has no RTT yet: one path
                continue
            }
            r.append(SpreadPath(slot: UInt8(idx), endpoint: path.remote, relayFor: path.via != nil ? memberID(of: peer) : nil,
                                srtt: srtt, rttvar: path.rttvar, minRTT: path.minRTT ?? srtt,
                                lastRTT: path.lastRTT, samples: path.rttSamples))
        }
        return r.count >= 2 ? r : SpreadRoute()
    }

    /// Every anchor's current endpoint (an owner unwraps RELAY only from these).
    public var anchorEndpointList: [(endpoint: Endpoint, peer: PeerID)] { anchorEndpoints }

    /// Every anchor's current endpoint and the relay-tag keys of our session
    /// with it: an owner tags the RELAY it sends to an anchor, and unwraps RELAY
    /// only from these, tagged under those keys.
    public var relayAnchorList: [RelayAnchor] {
        anchorEndpoints.map { RelayAnchor(endpoint: $0.endpoint, peer: $0.peer, keys: tunnels.relayHop(of: $0.peer)) }
    }

    /// Whether `list` is `relayAnchorList` as it is now (compared without building it: no allocation).
    public func relayAnchorsEqual(_ list: [RelayAnchor]) -> Bool {
        guard list.count == anchorEndpoints.count else { return false }
        var k = 0
        while k < list.count {
            let a = anchorEndpoints[k]
            if list[k].endpoint != a.endpoint || list[k].peer != a.peer || list[k].keys != tunnels.relayHop(of: a.peer) {
                return false
            }
            k += 1
        }
        return true
    }

    /// A control message an owner opened: `payload` is the decrypted payload
    /// of an authenticated DATA from `peer` that came from `source` (through
    /// the anchor `via`).
    public mutating func receiveOpened(from peer: PeerID, payload: UnsafeRawBufferPointer, source: Endpoint, via: PeerID?,
                                       now: Instant) -> NodeInbound {
        start(now)
        guard peer.rawValue >= 0, peer.rawValue < roster.count else { return drop(.session(.unknownPeer)) }
        switch ControlMessage.classify(payload, length: payload.count) {
        case .control:
            let r = receiveControlPayload(payload, from: peer, source: source, via: via, now: now)
            absorbTunnels(now: now)
            return r
        case .keepalive, .ipPacket:
            noteRx(peer, source: source, via: via, traffic: true, now: now)
            return .consumed
        case .unknown:
            return drop(.unknownPayload)
        }
    }

    /// What an owner did and saw under a peer's keys.
    public mutating func applyShardReport(_ report: ShardReport, now: Instant) {
        start(now)
        switch report {
        case .activity(let p, let a):
            guard p.rawValue >= 0, p.rawValue < roster.count else { return }
            tunnels.applyActivity(a, for: p, now: now)
            if a.rxPackets > 0, let source = a.source { noteRx(p, source: source, via: a.via, traffic: true, now: a.lastRx ?? now) }
            if a.txPackets > 0 {
                tunnels.paths.noteDataTx(p, at: a.lastTx ?? now)
                if a.txData { noteDataSent(p, now: a.lastTx ?? now) }
            }
        case .promoted(let p, let idx):
            tunnels.shardPromoted(p, localIndex: idx, now: now)
        case .rekeyDue(let p):
            tunnels.shardRekeyDue(p, now: now)
        }
        absorbTunnels(now: now)
    }
}

extension NodeCore {
    /// Carries a WireGuard peer's session and roaming record over from `old`, a
    /// NodeCore of the same identity for another roster (the drop-in mode's
    /// runtime roster: peers added or removed leave the others' sessions as
    /// they were). Right after init, before `connect`; see `Tunnels.adopt`.
    package mutating func adoptWireGuardPeer(_ id: PeerID, from old: NodeCore, _ oldID: PeerID, keepPaths: Bool) {
        guard id.rawValue < roster.count, oldID.rawValue < old.roster.count,
              isWireGuardPeer(id), old.isWireGuardPeer(oldID) else { return }
        tunnels.adopt(id, from: old.tunnels, oldID, keepPaths: keepPaths, persistentKeepalive: members[id.rawValue].persistentKeepalive)
        if id.rawValue < wireGuardRoams.count, oldID.rawValue < old.wireGuardRoams.count {
            wireGuardRoams[id.rawValue] = old.wireGuardRoams[oldID.rawValue]
        }
    }
}
