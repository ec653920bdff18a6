// What `wsctl status` needs from NodeCore (DESIGN §8), as plain values. The
// engine maps it onto `StatusReport` (names and enumeration strings are the
// same as the JSON's: `PathKind.rawValue`, `EndpointSource.name`,
// `NATMapping.rawValue`).

import Support
import Wire
import Crypto

public struct NodeStatus: Sendable, Equatable {
    /// One entry of a member's PathSet (PathSet.swift).
    public struct Path: Sendable, Equatable {
        public var kind: PathKind
        /// Our end of the path (which local socket).
        public var local: LocalPathEnd
        /// The member's address; for a relay path, the anchor's.
        public var remote: Endpoint
        /// The relaying anchor (and its name) for a relay path.
        public var via: PeerID?
        public var viaName: String?
        public var rttMs: Double?
        public var loss: Double?
        /// Data goes this way now.
        public var active: Bool
        /// Answered a ping recently (or, for a relay, its anchor is reachable).
        public var usable: Bool
        /// A PATH_PONG came back over it within `pathValidFor`.
        public var validated: Bool
        /// When an authenticated packet last arrived over it.
        public var lastRx: Instant?
        /// Measured path MTU; nil until probed (path MTU probing is planned).
        public var mtu: Int?
        /// Who told us the member may be at `remote` (direct paths; EndpointBook):
        /// "gossip" (its own signed record), "candidates" (its CANDIDATES or an
        /// anchor's introduction: unsigned hints), "cache", "config". Empty: none
        /// did (the member's packets came from there, or a relay).
        public var sources: [String] = []
    }

    public struct Peer: Sendable, Equatable {
        public var id: PeerID
        public var name: String
        public var publicKey: PublicKey
        public var isAnchor: Bool
        /// The session layer's view (state, keys, counters, next timer).
        public var session: PeerStatus?
        /// Active path first.
        public var paths: [Path]
        public var punching: Bool
        public var nextDirectRetry: Instant?
        /// The member's own signed endpoint record, as gossip holds it (nil: none yet).
        public var gossip: GossipRecord?
        /// A stock WireGuard peer (`wireguard = true`).
        public var isWireGuard: Bool = false
        /// WireGuard peers: authenticated packets from a new source (monitored roaming).
        public var roam: WireGuardRoamMonitor?
        /// The configured persistent keepalive.
        public var persistentKeepalive: Span?
        /// The session's traffic by the kind of path it went over.
        public var byPathKind = TrafficByKind()
        /// Where the member's signed LAN announcement came from (nil: none taken).
        public var lan: Endpoint? = nil
    }

    /// A member's gossip record: its sequence and the endpoints it signed.
    public struct GossipRecord: Sendable, Equatable {
        public var sequence: UInt64
        public var endpoints: [NodeEndpoint]
    }

    public struct Anchor: Sendable, Equatable {
        public var id: PeerID
        public var name: String
        public var publicKey: PublicKey
        public var reachable: Bool
        public var endpoint: Endpoint?
        /// Where this anchor last saw us.
        public var observed: Endpoint?
        public var lastHeard: Instant?
    }

    public struct NodeEndpoint: Sendable, Equatable {
        public var endpoint: Endpoint
        public var source: EndpointSource
    }

    public struct NAT: Sendable, Equatable {
        public var mapping: NATMapping
        /// Which anchor saw what (the classification's input).
        public var evidence: [(anchor: String, observed: Endpoint, at: Instant)]

        public static func == (a: NAT, b: NAT) -> Bool {
            a.mapping == b.mapping && a.evidence.count == b.evidence.count
                && zip(a.evidence, b.evidence).allSatisfy { $0.anchor == $1.anchor && $0.observed == $1.observed && $0.at == $1.at }
        }
    }

    public var publicKey: PublicKey
    public var isAnchor: Bool
    public var endpoints: [NodeEndpoint]
    public var nat: NAT
    public var anchors: [Anchor]
    public var peers: [Peer]
    /// Sentences for the operator (seed 2.1, 3.5).
    public var warnings: [String]
    /// Recovery mode: every path lost, probing with backoff.
    public var recovering: Bool
    /// Every anchor and cached endpoint failed: a manual re-bootstrap is needed.
    public var partitioned: Bool
    /// Drops by reason name, the gossip machine's `gossip_…` counters, plus
    /// `relay_forwarded_packets` / `relay_forwarded_bytes` on an anchor.
    public var counters: [String: UInt64]
}

extension NodeCore {
    /// The picture for `wsctl status`.
    public func status(now: Instant) -> NodeStatus {
        var peers: [NodeStatus.Peer] = []
        for i in entries.indices where !entries[i].isSelf {
            let id = PeerID(rawValue: i)
            let c = tunnels.paths[id]
            var paths: [NodeStatus.Path] = []
            for (k, path) in c.paths.enumerated() {
                let usable = view(id, k, now: now).usable
                paths.append(NodeStatus.Path(
                    kind: path.kind, local: path.id.local, remote: path.remote, via: path.via,
                    viaName: path.via.map { members[$0.rawValue].name },
                    rttMs: path.rtt?.milliseconds, loss: path.loss, active: c.active == k, usable: usable,
                    validated: path.isValid(now: now, timings: timings), lastRx: path.lastRx, mtu: path.mtu,
                    sources: path.via != nil ? [] : pathSources(id, path.remote)))
            }
            paths.sort { $0.active && !$1.active }
            peers.append(NodeStatus.Peer(
                id: id, name: members[i].name, publicKey: entries[i].key, isAnchor: entries[i].isAnchor,
                session: tunnels.peerStatus(id, now: now), paths: paths, punching: holePunch.isPunching(id),
                nextDirectRetry: deadline(.directRetry(id)),
                gossip: gossip.record(of: id).map {
                    NodeStatus.GossipRecord(sequence: $0.sequence,
                                            endpoints: $0.endpoints.map { NodeStatus.NodeEndpoint(endpoint: $0.endpoint, source: $0.source) })
                },
                isWireGuard: isWireGuardPeer(id),
                roam: isWireGuardPeer(id) && i < wireGuardRoams.count ? wireGuardRoams[i] : nil,
                persistentKeepalive: members[i].persistentKeepalive, byPathKind: tunnels.trafficByKind(id), lan: book.lan(id)))
        }
        let anchors = anchorPeers.map { a in
            let st = anchorTracker.state(a) ?? AnchorState()
            return NodeStatus.Anchor(id: a, name: members[a.rawValue].name, publicKey: key(of: a),
                                     reachable: st.reachable, endpoint: tunnels.endpoint(of: a), observed: st.observed,
                                     lastHeard: st.lastHeard)
        }
        var counters: [String: UInt64] = [:]
        for (reason, n) in drops { counters[reason.name, default: 0] &+= n }
        // Session datagrams whose member had no destination when drained.
        if tunnels.unroutable > 0 { counters[NodeDropReason.session(.noEndpoint).name, default: 0] &+= tunnels.unroutable }
        // Packets that waited for keys and were dropped (always present: 0 is the news).
        counters["queue_dropped"] = tunnels.queueDropped
        for (name, n) in gossip.counters.named { counters[name] = n }
        counters["gossip_record_punches"] = recordPunches
        if isAnchor {
            counters["relay_forwarded_packets"] = relay.counters.packets
            counters["relay_forwarded_bytes"] = relay.counters.bytes
        }
        return NodeStatus(
            publicKey: publicKey, isAnchor: isAnchor,
            endpoints: currentCandidates.map { NodeStatus.NodeEndpoint(endpoint: $0.endpoint, source: $0.source) },
            nat: NodeStatus.NAT(mapping: anchorTracker.nat, evidence: anchorTracker.natEvidence.map { (members[$0.anchor.rawValue].name, $0.observed, $0.at) }),
            anchors: anchors, peers: peers, warnings: warnings(now: now), recovering: recovery.isActive,
            partitioned: recovery.isPartitioned, counters: counters)
    }

    /// EndpointBook's sources of one address of `p`, each named once, in the book's order.
    func pathSources(_ p: PeerID, _ remote: Endpoint) -> [String] {
        var out: [String] = []
        for e in book.entries(for: p) where e.endpoint == remote {
            let name: String
            switch e.source {
            case .config: name = "config"
            case .cache: name = "cache"
            case .announced: name = "candidates"
            case .gossip: name = "gossip"
            case .lan: name = "lan"
            }
            if !out.contains(name) { out.append(name) }
        }
        return out
    }

    func warnings(now: Instant) -> [String] {
        var out: [String] = []
        let total = anchorPeers.count + (isAnchor ? 1 : 0)
        if total == 0 {
            out.append("no anchor is configured: members behind NAT may not reach each other, and a node that loses its peers cannot find them again")
        } else if let s = startedAt, now - s >= timings.warningGrace {
            let up = reachableAnchors
            let count = up.count + (isAnchor ? 1 : 0)
            if count == 0 {
                out.append("no anchor is reachable")
            } else if count == 1 {
                let name = up.first.map { members[$0.rawValue].name } ?? "this node"
                out.append(total == 1
                    ? "only one anchor is configured (\(name)): if it goes down, members behind NAT lose each other; add a second anchor on another network"
                    : "only one anchor is reachable (\(name)): if it goes down too, members behind NAT lose each other")
            }
        }
        if recovery.isPartitioned {
            out.append("partitioned: no anchor and no cached endpoint has answered; every address this node knows is stale. Re-bootstrap: put a reachable anchor endpoint in the config and restart")
        } else if recovery.isActive {
            out.append("every path is lost: probing anchors, then cached endpoints, with backoff")
        }
        return out
    }
}
