// The status object (`wsctl status`, docs/status-json.md): the config, NodeCore's
// status and the lanes' counters assembled into one `StatusReport`.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Reactor
import Logging

extension Daemon {
    /// The status object (`wsctl status`), built on the reactor's thread.
    func status() -> StatusReport {
        let now = Self.now()
        let st = core.status(now: now)
        func path(_ p: NodeStatus.Path) -> StatusReport.Path {
            StatusReport.Path(kind: p.kind, local: p.local.description, remote: "\(p.remote)",
                              via: p.viaName, rttMs: p.rttMs, loss: p.loss, active: p.active,
                              validated: p.validated, usable: p.usable,
                              lastRxSecondsAgo: p.lastRx.map { UInt64(max(0, (now - $0).seconds)) },
                              sources: p.sources,
                              uplink: Uplinks.lookup(kernelRoutes, family: p.remote.family, address: p.remote.address),
                              mtu: mtuControl.enabled ? pathMTU(remote: p.remote, relayed: p.via != nil) : nil)
        }
        var peers: [StatusReport.Peer] = []
        for p in st.peers {
            // Multipath, from the lane that owns the peer (lane 0's now, the others' as last published).
            let owner = SessionOwnership.owner(of: p.id, owners: lanes.count)
            let mp = owner == 0 ? lanes[0].multipath(of: p.id) : publishedMultipath[owner]?[p.id.rawValue]
            func spreadPath(_ q: NodeStatus.Path) -> StatusReport.Path {
                var out = path(q)
                if let v = mp?.paths.first(where: { $0.endpoint == q.remote && $0.relayed == (q.via != nil) }) {
                    out.weight = v.weight.isFinite ? v.weight : nil
                    let bw = v.bandwidthBitsPerSecond
                    out.bandwidthBps = bw.isFinite && bw > 0 && bw < 1e18 ? UInt64(bw) : nil
                    let cap = v.capBitsPerSecond
                    out.capBps = cap.isFinite && cap > 0 && cap < 1e18 ? UInt64(cap) : nil
                }
                return out
            }
            let reorder = mp?.reorder.map {
                StatusReport.Reorder(buffering: mp?.buffering ?? false, held: UInt64($0.held),
                                     releasedInOrder: UInt64($0.releasedInOrder), releasedByTimeout: UInt64($0.releasedByTimeout),
                                     flushedByPathFailure: UInt64($0.flushedByPathFailure), releasedByDepth: UInt64($0.releasedByDepth),
                                     droppedLateDuplicate: UInt64($0.droppedLateDuplicate), releasedLate: UInt64($0.releasedLate),
                                     maxDepthReached: UInt64($0.maxDepthReached),
                                     maxHeld: UInt64($0.maxHeld), releasedByLoss: UInt64($0.releasedByLoss))
            }
            let state: StatusReport.PeerState
            switch p.session?.state {
            case .established?, .rekeying?: state = .up
            case .handshaking?, .awaitingConfirmation?: state = .handshaking
            default: state = .idle
            }
            let active = p.paths.first { $0.active }
            let cfg = config.peers[p.id.rawValue]
            peers.append(StatusReport.Peer(
                name: p.name, publicKey: cfg.publicKey, address: cfg.addresses.map(\.description), state: state,
                endpoint: active.map { "\($0.remote)" },
                lastHandshakeSecondsAgo: p.session?.lastHandshake.map { UInt64((now - $0).seconds) },
                rxBytes: p.session?.counters.rxBytes ?? 0, txBytes: p.session?.counters.txBytes ?? 0,
                paths: p.paths.map(spreadPath),
                gossip: p.gossip.map {
                    StatusReport.GossipRecord(sequence: $0.sequence, endpoints: $0.endpoints.map {
                        StatusReport.AdvertisedEndpoint(addr: "\($0.endpoint)", source: StatusReport.EndpointSource(rawValue: $0.source.name) ?? .local)
                    })
                },
                punching: p.punching,
                nextDirectRetrySeconds: p.nextDirectRetry.map { $0 > now ? ($0 - now).seconds : 0 },
                rxPackets: p.session?.counters.rxPackets ?? 0, txPackets: p.session?.counters.txPackets ?? 0,
                handshakesCompleted: p.session?.counters.handshakesCompleted ?? 0,
                handshakesFailed: p.session?.counters.handshakesFailed ?? 0,
                kind: p.isWireGuard ? "wireguard" : "whalescale",
                persistentKeepaliveS: p.persistentKeepalive.map { UInt64($0.seconds) },
                roam: p.roam.map {
                    StatusReport.Roam(newSources: $0.newSources, taken: $0.taken, lastSource: $0.lastSource.map { "\($0)" },
                                      roamedFrom: $0.lastFrom.map { "\($0)" })
                },
                byPathKind: PathKind.allCases.map { k in
                    let t = p.byPathKind[k]
                    return StatusReport.PathTraffic(kind: k, rxBytes: t.rxBytes, rxPackets: t.rxPackets,
                                                    txBytes: t.txBytes, txPackets: t.txPackets)
                },
                lan: p.lan.map { StatusReport.AdvertisedEndpoint(addr: "\($0)", source: .lan) },
                cipher: p.session?.cipher?.statusName, checksumOffload: p.session?.headerFlags, reorder: reorder))
        }
        let anchors = st.anchors.map { StatusReport.Anchor(publicKey: $0.publicKey.base64, name: $0.name, reachable: $0.reachable) }
        var warnings = st.warnings
        if st.partitioned && !warnings.contains(where: { $0.contains("partition") }) {
            warnings.append("partitioned: every anchor and cached endpoint failed; a manual re-bootstrap is needed")
        }
        var counters = lanes[0].drops
        for (k, v) in st.counters { counters[k, default: 0] &+= v }
        // Packets written to the TUN device inside a GSO super-packet instead of alone.
        counters["tun_coalesced_packets"] = UInt64(lanes[0].fast.coalescer.merged)
        counters["tun_coalesced_udp"] = UInt64(lanes[0].fast.coalescer.mergedUDP)
        if let u = lanes[0].udp { for (k, v) in Lane.poolCounters(u.counters) { counters[k, default: 0] &+= v } }
        for (k, v) in lanes[0].shard.drops { counters[k.name, default: 0] &+= v }
        // Every lane of an anchor forwards RELAY: lane 0's here, the others' in `published`.
        lanes[0].addRelayCounters(to: &counters)
        for (_, c) in published { for (k, v) in c { counters[k, default: 0] &+= v } }
        for (k, v) in portMapCounters { counters[k, default: 0] &+= v }
        for (k, v) in control?.counters ?? [:] { counters[k, default: 0] &+= v }
        for (k, v) in metricsServer?.counters ?? [:] { counters[k, default: 0] &+= v }
        for (k, v) in lanCounters { counters[k, default: 0] &+= v }
        for (k, v) in dropIn?.counters ?? [:] { counters[k, default: 0] &+= v }
        if mtuControl.enabled {
            counters["mtu_changes"] = mtuControl.state.changes
            counters["mtu_below_minimum"] = mtuControl.state.belowMinimum
        }
        let local = udp.map { Endpoint($0.localEndpoint) }
        return StatusReport(
            node: StatusReport.Node(
                publicKey: identity.publicKey.base64, interface: config.node.interface,
                address: config.node.addresses.first?.description ?? "", addresses: config.node.addresses.map(\.description), listenPort: local?.port ?? config.node.listenPort,
                anchor: config.node.anchor, reactors: lanes.count,
                endpoints: st.endpoints.map {
                    StatusReport.AdvertisedEndpoint(addr: "\($0.endpoint)", source: StatusReport.EndpointSource(rawValue: $0.source.name) ?? .local)
                },
                nat: StatusReport.NAT(mapping: st.nat.mapping, evidence: st.nat.evidence.map {
                    StatusReport.Observation(anchor: $0.anchor, observed: "\($0.observed)",
                                             ageSeconds: now > $0.at ? UInt64((now - $0.at).seconds) : 0)
                }),
                wireGuardPublicKey: identity.wireGuardPublicKey,
                uplinks: uplinks.enumerated().compactMap { i, slot in
                    slot.map { StatusReport.Uplink(index: i, name: $0.name, source: $0.source.rawValue, present: Uplinks.present($0.name)) }
                },
                mtu: mtuControl.enabled ? mtuControl.state.current : mtu),
            anchors: anchors, peers: peers, warnings: warnings, counters: counters)
    }

    func peerName(_ p: PeerID) -> String { config.peers[p.rawValue].name }
}
