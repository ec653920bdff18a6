// Tunnels' side of a member's paths and traffic: where its sessions send
// (the path manager's destination), NodeCore's path decisions, and the traffic
// counters split by the kind of path it went over. Tunnels.swift has the rest.

import Support
import Wire
import Crypto

extension Tunnels {
    /// Send to `endpoint` from now on: it becomes the member's direct active
    /// path (for a caller without a path policy; NodeCore uses `activate`).
    /// Roaming on authenticated packets may later move it again; see
    /// `TunnelEvent.endpointChanged`.
    public mutating func setEndpoint(_ endpoint: Endpoint, for peer: PeerID) {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return }
        _ = paths.activate(peer, paths.addPath(peer, kind: .direct, remote: endpoint, via: nil).index)
        pathOpened(peer)
    }

    /// NodeCore's decision: data for `peer` goes on its paths[idx] from now on.
    /// Returns the path that was active.
    mutating func activate(_ peer: PeerID, _ idx: Int) -> PathState? {
        attributeTraffic(peer)
        let old = paths.activate(peer, idx)
        pathOpened(peer)
        return old
    }

    /// `peer` has a destination now (or a new one): whatever waited for one can go.
    mutating func pathOpened(_ peer: PeerID) {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return }
        if case .wanted = peers[peer.rawValue].handshake { peers[peer.rawValue].timers[.handshakeInitiation] = .zero }
        if peers[peer.rawValue].persistentKeepalive != nil, !peers[peer.rawValue].timers.isPending(.persistentKeepalive) {
            peers[peer.rawValue].timers[.persistentKeepalive] = .zero
        }
        synced(peer)
    }

    /// Whether `peer` has keys it can send under now (cheap; for the data path).
    public func isEstablished(_ peer: PeerID, now: Instant) -> Bool {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return false }
        return peers[peer.rawValue].keys.current?.canSend(now: now, timings: timings) ?? false
    }

    /// Until when `isEstablished(peer)` holds with the keys as they are now (nil: it does not now).
    /// What the lanes' relay table carries, so a lane checks the deadline per packet itself.
    @inline(__always)
    public func sendableUntil(_ peer: PeerID) -> Instant? {
        // Field by field through the optional: binding `current` would copy a keypair (its replay window).
        guard peer.rawValue >= 0, peer.rawValue < peers.count, let created = peers[peer.rawValue].keys.current?.createdAt,
              let n = peers[peer.rawValue].keys.current?.nextCounter, n < timings.rejectAfterMessages else { return nil }
        return created + timings.rejectAfterTime
    }

    /// Whether a handshake with `peer` is wanted or in flight.
    public func isHandshaking(_ peer: PeerID) -> Bool {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return false }
        return !peers[peer.rawValue].handshake.isIdle
    }

    /// Where the session sends now: the path manager's destination (cheap;
    /// `peerStatus` builds the whole picture).
    public func endpoint(of peer: PeerID) -> Endpoint? {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return nil }
        return paths.destination(peer)
    }

    /// `peer`'s session counters as one value (what `PathSet.attribute` splits by path kind).
    func trafficTotals(_ peer: PeerID) -> TrafficCount {
        let c = peers[peer.rawValue].counters
        return TrafficCount(rxBytes: c.rxBytes, rxPackets: c.rxPackets, txBytes: c.txBytes, txPackets: c.txPackets)
    }

    /// Puts `peer`'s traffic since the last call on the kinds of path it went
    /// over (before the active path, or the kind traffic arrives on, changes).
    mutating func attributeTraffic(_ peer: PeerID) {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return }
        paths.attributeTraffic(peer, totals: trafficTotals(peer))
    }

    /// Traffic arrived over a path of `kind`: what came before goes on the kind it came over.
    @inline(__always)
    mutating func receivedOver(_ peer: PeerID, kind: PathKind) {
        guard paths[peer].rxKind != kind else { return }
        attributeTraffic(peer)
        paths.setRxKind(peer, kind)
    }

    /// `peer`'s session traffic by path kind, up to now.
    public func trafficByKind(_ peer: PeerID) -> TrafficByKind {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return TrafficByKind() }
        return paths[peer].traffic(totals: trafficTotals(peer))
    }

    public func peerStatus(_ peer: PeerID, now: Instant) -> PeerStatus? {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return nil }
        var st = peers[peer.rawValue].status(now: now, timings: timings)
        st.endpoint = paths.destination(peer)
        return st
    }
}
