// The node's engine: the only part of Node that imports Reactor.
//
//   TUN ──tunRead(batch)──▶ cryptokey route ──▶ seal in place (the peer's owner) ──▶ one sendmmsg ──▶ UDP
//   UDP ──received(batch)─▶ open in place (the peer's owner) ──▶ inner source check ──▶ write ──▶ TUN
//                                   │
//                 handshakes, cookies, keepalives: NodeCore.pollTransmit ──▶ UDP
//                 timers: one reactor timer at NodeCore.pollTimeout's deadline
//                 control: UNIX socket ──▶ ControlCodec ──▶ StatusReport
//                 SIGTERM/SIGINT: signalfd ──▶ stop; the TUN device, routes and sockets go with it
//
// One lane per reactor, one reactor per core (Lane.swift, docs/engine.md):
// each lane owns the sessions of a share of the peers; lane 0, on this
// thread, also runs NodeCore (handshakes, timers, connectivity), the control
// socket and the signals, and tells the other lanes their peers' keys and
// routes. With one reactor, lane 0 hands every packet to NodeCore.
//
// It owns the state machines, feeds them reactor events and the clock
// (CLOCK_MONOTONIC as `Instant`, the wall clock only for handshake
// timestamps), and drains their outputs into the reactors. Every drop is
// counted by reason and shown by `wsctl status`.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Atomics
import CReactor
import Foundation
import Logging
import Reactor

public final class Daemon: @unchecked Sendable {
    public let config: Config
    let identity: Identity
    var logger: Logger
    /// Lane 0's reactor: NodeCore, the control socket, signals (and lane 0's data).
    var reactor: Reactor { lanes[0].reactor }
    /// Sessions and connectivity (anchors, probes, rendezvous, relay, recovery), sans-IO. Lane 0 only.
    var core: NodeCore
    let routes: CryptokeyRoutes
    private let members: [MemberSpec]
    /// One per reactor, one reactor per core (Lane.swift); lane 0 runs on the daemon's thread.
    private(set) var lanes: [Lane] = []
    var udp: DatagramSocket! { lanes[0].udp }
    var tun: TunDevice! { lanes[0].tun }
    private var threads: [Thread] = []
    private let finished = DispatchSemaphore(value: 0)
    private var control: ControlServer?
    private var signals: Registration?
    private var signalFD: Int32 = -1
    private var stateStore: StateStore?
    private var tunnelTimer: TimerID?
    private var tunnelDeadline: Instant?
    /// Counters the other lanes published last (lane 0's thread only).
    var published: [Int: [String: UInt64]] = [:]
    /// What each owner was last told about routes and anchors (split only).
    private var sentRoutes: [DataRoute?] = []
    private var sentAnchors: [(endpoint: Endpoint, peer: PeerID)] = []
    /// Peers whose new keys an owner has not taken yet (its mailbox was full).
    private var keysToSend = Set<PeerID>()
    private let started = Daemon.now()
    /// Views for NodeCore's own transmits (handshakes, keepalives, probes).
    let out: UnsafeMutablePointer<CReactor_dgram>
    static let batch = 64
    /// A scratch buffer for control messages from pollTransmit (not the data path).
    private let scratch: UnsafeMutableRawPointer
    private static let scratchSize = 65536
    public let mtu: Int

    /// Room for our DATA header in front of every packet (and then some, for later framing).
    static let headroom = 64
    /// The UDP socket: GRO on (GSO is per send), large buffers.
    static var udpOptions: UDPOptions {
        var o = UDPOptions()
        o.gro = true
        return o
    }
    /// Outer IPv6 (40) + UDP (8) + DATA header (16) + tag (16), plus 16 for relay framing: 1500 - 96.
    public static let defaultMTU = 1500 - 40 - 8 - DataMessage.overhead - 16

    public init(config: Config, logger: Logger) throws {
        self.config = config
        self.logger = logger
        Sodium.initialize()
        let keyText = try config.node.loadPrivateKey { [logger] w in logger.warning("\(w)") }
        guard let secret = SecretKey(base64: keyText) else {
            throw DaemonError("node.private_key: not a base64 key of 32 bytes")
        }
        identity = Identity(secret: secret)
        try config.checkNoPeerHasKey(identity.publicKey.base64)
        var members: [MemberSpec] = []
        var routeList: [(CIDR, Int)] = []
        for (i, p) in config.peers.enumerated() {
            guard let key = PublicKey(base64: p.publicKey) else { throw DaemonError("peer[\(i)].public_key: not a valid key") }
            members.append(MemberSpec(publicKey: key, name: p.name, endpoint: p.endpoint, isAnchor: p.anchor,
                                      persistentKeepalive: p.persistentKeepalive))
            for c in p.addresses { routeList.append((c, i)) }
        }
        routes = CryptokeyRoutes(routeList)
        let n = config.node.reactorCount
        self.members = members
        core = Self.makeCore(identity: identity, members: members, config: config, owners: n)
        mtu = Self.defaultMTU
        out = .allocate(capacity: Self.batch)
        out.initialize(repeating: CReactor_dgram(), count: Self.batch)
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 16)
        for i in 0..<n {
            let r = try Reactor()
            r.onError = { [logger] e in logger.debug("io: \(e)") }
            let lane = Lane(id: i, daemon: self, reactor: r)
            lanes.append(lane)
        }
        splitSessions(across: n)
        sentRoutes = Array(repeating: nil, count: members.count)
    }

    static func makeCore(identity: Identity, members: [MemberSpec], config: Config, owners: Int) -> NodeCore {
        NodeCore(identity: identity, members: members, isAnchor: config.node.anchor,
                 timings: ConnectivityTimings.default.withRelayRate(mbit: config.node.relayRateMbit), owners: owners,
                 sendCounters: { AtomicSendCounter() })
    }

    /// One shard per lane when there are several lanes.
    private func splitSessions(across n: Int) {
        for lane in lanes {
            lane.split = n > 1
            lane.owners = n
            lane.shard = SessionShard(index: lane.id, owners: n, members: n > 1 ? members.map(\.publicKey) : [], isAnchor: config.node.anchor)
        }
    }

    /// Fewer reactors than configured (the kernel refused a TUN queue): before
    /// anything ran, so NodeCore is made again for the new split.
    private func shrink(to n: Int) {
        for lane in lanes[n...] {
            lane.tun?.close()
            lane.udp?.close()
        }
        lanes.removeSubrange(n...)
        core = Self.makeCore(identity: identity, members: members, config: config, owners: n)
        splitSessions(across: n)
    }

    deinit {
        out.deallocate()
        scratch.deallocate()
    }

    public var publicKey: PublicKey { identity.publicKey }

    /// Opens everything, runs until SIGTERM/SIGINT, cleans up. Throws only for start-up failures.
    public func run() throws {
        try start()
        logger.info("whalescaled up: \(config.node.interface) \(config.node.addresses.map(\.description).joined(separator: ",")) mtu \(mtu), listening on \(config.node.listenPort), \(config.peers.count) peers, \(lanes.count) reactor\(lanes.count == 1 ? "" : "s"), key \(identity.publicKey.base64)")
        startLanes()
        reactor.run()
        stopLanes()
        shutdown()
    }

    /// Lanes 1... on their own threads, each looping until `stopLanes`.
    private func startLanes() {
        for lane in lanes.dropFirst() {
            let name = "wsreactor-\(lane.id)"
            let t = Thread { [finished] in
                // The kernel's name (top -H, /proc/PID/task/*/comm); Thread.name does not reach it.
                _ = CReactor_set_thread_name(name)
                while !lane.stopFlag.load(ordering: .acquiring) { lane.reactor.runOnce(timeoutMs: -1) }
                finished.signal()
            }
            t.name = name
            t.start()
            threads.append(t)
        }
    }

    private func stopLanes() {
        for lane in lanes.dropFirst() {
            lane.stopFlag.store(true, ordering: .releasing)
            lane.reactor.stopHandle.stop()
        }
        for _ in threads { finished.wait() }
        threads = []
    }

    func start() throws {
        // Signals first, so a SIGTERM during start-up is not lost.
        var sigs: [Int32] = [SIGTERM, SIGINT]
        signalFD = try syscallValue("signalfd") { CReactor_signalfd(&sigs, 2) }
        let sfd = signalFD
        signals = try reactor.register(fd: sfd, events: .readable) { [unowned self] _ in
            let s = CReactor_signalfd_read(sfd)
            if s > 0 {
                self.logger.info("signal \(s): shutting down")
                self.reactor.stop()
            }
        }

        try openLanes()
        try tun.setUp(mtu: mtu)
        try InterfaceSetup.configure(interface: tun.name, addresses: config.node.addresses,
                                     routes: config.peers.flatMap(\.addresses), logger: logger)

        control = try ControlServer(path: config.node.controlSocket, reactor: reactor) { [unowned self] in self.status() }

        let now = Self.now()
        // Where we can be reached on our own interfaces (candidates for peers on the same LAN or without NAT).
        let port = Endpoint(udp.localEndpoint).port
        core.setLocalEndpoints(LocalAddresses.list(excluding: tun.name).map { Endpoint(family: $0.family, address: $0.address, port: port) },
                               now: now)
        // Last-known endpoints from the previous run (recovery tries them after the anchors).
        stateStore = StateStore(directory: config.node.stateDir, logger: logger)
        if let bytes = stateStore?.load(), !core.loadEndpointCache(bytes) {
            logger.notice("state: endpoint cache unreadable; starting without it")
        }
        // Bring up sessions with every member that has a static endpoint (NodeCore does the anchors itself).
        for (i, p) in config.peers.enumerated() where p.endpoint != nil && !p.anchor {
            core.connect(PeerID(rawValue: i), now: now)
        }
        service(now: now)
    }

    /// Every lane's UDP socket (one SO_REUSEPORT group when there are several,
    /// with DATA steered to the lane that owns its receiver index) and TUN
    /// queue, and the rings and mailboxes between lanes.
    private func openLanes() throws {
        let wanted = lanes.count
        var port = config.node.listenPort
        for lane in lanes where lane.id < lanes.count {
            // One UDP socket for IPv4 and IPv6: a dual-stack [::]:port, or 0.0.0.0:port where IPv6 is off.
            var options = Self.udpOptions
            options.reusePort = wanted > 1
            var any6 = CReactor_endpoint()
            _ = CReactor_endpoint_parse("::", port, &any6)
            var opened: (fd: Int32, notes: [String])
            do {
                opened = try UDPSocket.open(bind: any6, options: options)
            } catch {
                if lane.id == 0 { logger.notice("IPv6 socket unavailable (\(error)); listening on IPv4 only") }
                var any4 = CReactor_endpoint()
                _ = CReactor_endpoint_parse("0.0.0.0", port, &any4)
                opened = try UDPSocket.open(bind: any4, options: options)
            }
            if lane.id == 0 {
                for n in opened.notes { logger.notice("udp: \(n)") }
                port = UDPSocket.localEndpoint(opened.fd).port  // the others join this port (it may have been 0)
            }
            // With UDP GRO a receive may be a 64 KiB run of datagrams: 64 KiB buffers (touched only as far
            // as datagrams fill them); the socket asks for fewer of them per batch while runs come in.
            let gro = CReactor_get_udp_gro(opened.fd) == 1
            lane.udp = try DatagramSocket(reactor: lane.reactor, fd: opened.fd, batchSize: gro ? 64 : Self.batch,
                                          bufferSize: gro ? 65536 + Self.headroom : 2048, headroom: Self.headroom, handler: UDPSide(lane))
            lane.udp.onNotice = { [logger] n in logger.notice("udp: \(n)") }
            do {
                lane.tun = try TunDevice(reactor: lane.reactor, name: lane.id == 0 ? config.node.interface : lanes[0].tun.name,
                                         multiQueue: wanted > 1, offloads: .all, headroom: Self.headroom, handler: TunSide(lane))
            } catch {
                // Degrade once, loudly: a kernel without multi-queue TUN (or with fewer queues) gets fewer reactors.
                guard wanted > 1 else { throw error }
                let keep = max(1, lane.id)
                logger.notice("tun: queue \(lane.id) refused (\(error)); running \(keep) reactor\(keep == 1 ? "" : "s") instead of \(wanted)")
                if lane.id > 0 {
                    shrink(to: keep)
                    break
                }
                shrink(to: 1)
                lane.tun = try TunDevice(reactor: lane.reactor, name: config.node.interface, offloads: .all,
                                         headroom: Self.headroom, handler: TunSide(lane))
            }
            // Same-flow UDP datagrams are written as one UDP_L4 super-packet only where the TUN has USO (6.2+).
            lane.fast.coalescer.udp = lane.tun.offloads.isSuperset(of: [.uso4, .uso6])
            if lane.id == 0 {
                for n in lane.tun.notes { logger.notice("tun: \(n)") }
                logger.info("offloads: tun \(tun.vnetHeader ? tun.offloads.description : "off"), udp gso \(udp.gso ? "on" : "off"), gro \(gro ? "on" : "off")")
            }
        }
        let n = lanes.count
        guard n > 1 else { return }
        do {
            // Members unwrap a RELAY from an anchor on the lane that owns its inner DATA; anchors forward RELAY on lane 0.
            try UDPSocket.attachSteering(fd: lanes[0].udp.fd, groups: n, relayInner: !config.node.anchor)
        } catch {
            logger.notice("udp: reuseport steering refused (\(error)); datagrams that land on the wrong reactor are handed over")
        }
        for lane in lanes {
            lane.outbound = (0..<n).map { $0 == lane.id ? nil : ByteRing(capacity: Lane.ringCapacity(lanes: n)) }
            lane.written = Array(repeating: false, count: n)
            lane.wakePending = (0..<n).map { _ in ManagedAtomic<Bool>(false) }
            lane.producerWaiting = (0..<n).map { _ in ManagedAtomic<Bool>(false) }
        }
        for lane in lanes {
            lane.inbound = lanes.map { $0.id == lane.id ? nil : $0.outbound[lane.id] }
            lane.mailboxTo = lanes.map { $0.id == lane.id ? nil : $0.reactor.makeMailbox(capacity: 4096) }
            lane.drainJobs = Array(repeating: nil, count: n)
            lane.resumeJobs = Array(repeating: nil, count: n)
            for j in 0..<n where j != lane.id {
                let job: Mailbox.Job = { [unowned lane] in lane.drain(from: j) }
                lane.drainJobs[j] = job
                let producer = lanes[j], me = lane.id
                let resume: Mailbox.Job = { [unowned producer] in producer.resume(from: me) }
                lane.resumeJobs[j] = resume
            }
        }
    }

    /// After NodeCore ran (split only): new keys, routes and anchors to the lanes
    /// that own the peers. What a full mailbox refused is sent again next time
    /// (a lane without a peer's keys would drop its DATA).
    private func syncShards() {
        while let p = core.pollKeyChange() { keysToSend.insert(p) }
        for p in keysToSend {
            let keys = core.shardKeys(of: p)
            if onOwner(of: p, { $0.shard.install(keys, for: p) }) { keysToSend.remove(p) }
        }
        for i in 0..<sentRoutes.count {
            let p = PeerID(rawValue: i)
            let r = core.dataRoute(for: p)
            if r != sentRoutes[i], onOwner(of: p, { $0.shard.setRoute(r, for: p) }) { sentRoutes[i] = r }
        }
        let anchors = core.anchorEndpointList
        if !anchors.elementsEqual(sentAnchors, by: { $0.endpoint == $1.endpoint && $0.peer == $1.peer }) {
            var all = true
            lanes[0].shard.setAnchors(anchors)
            for lane in lanes.dropFirst() where !lanes[0].mailboxTo[lane.id]!.post({ lane.shard.setAnchors(anchors) }) { all = false }
            if all { sentAnchors = anchors }
        }
    }

    /// Runs `job` on the lane that owns `peer`: at once on lane 0, else through
    /// its mailbox. False when that mailbox was full (the caller tries again later).
    private func onOwner(of peer: PeerID, _ job: @escaping @Sendable (Lane) -> Void) -> Bool {
        let k = SessionOwnership.owner(of: peer, owners: lanes.count)
        let lane = lanes[k]
        if k == 0 {
            job(lane)
            return true
        }
        return lanes[0].mailboxTo[k]!.post { job(lane) }
    }

    func shutdown() {
        stateStore?.save(core.endpointCacheBytes())
        control?.close()
        control = nil
        for lane in lanes.reversed() {
            lane.tun?.close()  // a non-persistent TUN device disappears with its last queue's fd, and its routes with it
            lane.udp?.close()
        }
        if let s = signals { reactor.deregister(s) }
        if signalFD >= 0 { _ = CReactor_close(signalFD) }
        logger.info("whalescaled stopped")
    }

    static func now() -> Instant { Instant(ns: Reactor.now()) }
    /// The wall clock, only for handshake timestamps (TAI64N-style, replay protection of initiations).
    static func wallClock() -> HandshakeTimestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return HandshakeTimestamp(unixSeconds: UInt64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
    }

    // MARK: Outputs and timers

    /// Drains the state machines' outputs: transmits, events, and the next deadline.
    func service(now: Instant) {
        var n = 0
        var used = 0
        while let t = core.pollTransmit() {
            if logger.logLevel <= .trace { logger.trace("transmit \(t.bytes.count) bytes type \(t.bytes.first ?? 0) to \(t.to)") }
            if t.bytes.count > Self.scratchSize - used || n == Self.batch {
                flush(n)
                n = 0
                used = 0
            }
            guard t.bytes.count <= Self.scratchSize else { continue }
            let dst = scratch + used
            t.bytes.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            out[n] = CReactor_dgram()
            out[n].data = dst.assumingMemoryBound(to: UInt8.self)
            out[n].len = UInt32(t.bytes.count)
            out[n].peer = t.to.creactor
            n += 1
            used += (t.bytes.count + 15) & ~15
        }
        flush(n)
        // Split: the owners learn new keys and paths before the next batch.
        if lanes.count > 1 { syncShards() }
        while let e = core.pollEvent() { log(e) }
        armTimer()
    }

    func flush(_ n: Int) {
        guard n > 0 else { return }
        let sent = udp.send(DatagramBatch(base: out, count: n))
        if sent < n { countUnsent(out, sent..<n) }
    }

    /// Counts the datagrams of views the socket did not take (a GSO run counts each of its datagrams).
    func countUnsent(_ views: UnsafeMutablePointer<CReactor_dgram>, _ range: Range<Int>) {
        var lost: UInt64 = 0
        for v in range {
            let seg = Int(views[v].segment)
            lost += seg > 0 ? UInt64((Int(views[v].len) + seg - 1) / seg) : 1
        }
        lanes[0].drops["udp_send_full", default: 0] &+= lost
    }

    /// Arms the one reactor timer for the state machines' next deadline. A
    /// timer already armed for an earlier moment is kept: it fires early, finds
    /// nothing due, and arms the next one then. So while traffic moves the
    /// deadlines later with every batch, nothing is re-armed (and nothing allocated).
    private func armTimer() {
        guard let (deadline, _) = core.pollTimeout() else {
            if let t = tunnelTimer { reactor.cancelTimer(t) }
            tunnelTimer = nil
            tunnelDeadline = nil
            return
        }
        if let armed = tunnelDeadline, armed <= deadline { return }
        if let t = tunnelTimer { reactor.cancelTimer(t) }
        tunnelDeadline = deadline
        tunnelTimer = reactor.addTimer(at: deadline.ns, tunnelTimerFired)
    }

    /// The timer's action, made once (a closure per arming would allocate its context each time).
    private lazy var tunnelTimerFired: () -> Void = { [unowned self] in
        self.tunnelTimer = nil
        self.tunnelDeadline = nil
        let now = Self.now()
        self.core.handleTimeout(now: now, wallClock: Self.wallClock())
        self.service(now: now)
    }

    private func log(_ e: NodeEvent) {
        switch e {
        case .session(.established(let p)): logger.info("\(peerName(p)): session established")
        case .session(.rekeyed(let p)): logger.debug("\(peerName(p)): rekeyed")
        case .session(.endpointChanged(let p, let ep)): logger.info("\(peerName(p)): endpoint now \(ep)")
        case .session(.handshakeFailed(let p)): logger.notice("\(peerName(p)): no handshake answer; queued packets dropped")
        case .session(.expired(let p)): logger.notice("\(peerName(p)): keys expired")
        case .pathChanged(let p, let kind, let remote, let via):
            logger.info("\(peerName(p)): path \(kind.rawValue) \(remote)\(via.map { " via " + peerName($0) } ?? "")")
        case .anchorReachable(let a): logger.info("anchor \(peerName(a)) reachable")
        case .anchorUnreachable(let a): logger.notice("anchor \(peerName(a)) unreachable")
        case .onlyOneAnchorReachable(let a):
            logger.warning("only one anchor is reachable\(a.map { " (" + peerName($0) + ")" } ?? ""): add or restore an anchor on another network")
        case .noAnchorReachable: logger.warning("no anchor is reachable")
        case .observedEndpointChanged(let a, let old, let new):
            logger.notice("our public endpoint changed: \(old) -> \(new) (seen by \(peerName(a)))")
        case .natMappingChanged(let m): logger.info("NAT mapping: \(m.rawValue)")
        case .recoveryStarted: logger.warning("every path lost: recovery mode (anchors first, then cached endpoints, backoff up to 60 s)")
        case .recovered: logger.info("recovered")
        case .partitioned:
            logger.error("partitioned: every anchor and cached endpoint failed; this node needs a manual re-bootstrap (a reachable anchor endpoint in the config)")
        case .endpointCacheChanged: stateStore?.save(core.endpointCacheBytes())
        }
    }

    /// The status object (`wsctl status`), built on the reactor's thread.
    func status() -> StatusReport {
        let now = Self.now()
        let st = core.status(now: now)
        func path(_ p: NodeStatus.Path) -> StatusReport.Path {
            StatusReport.Path(kind: p.kind, remote: "\(p.remote)",
                              via: p.viaName, rttMs: p.rttMs, loss: p.loss, active: p.active)
        }
        var peers: [StatusReport.Peer] = []
        for p in st.peers {
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
                paths: p.paths.map(path)))
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
        if lanes[0].split { for (k, v) in lanes[0].shard.drops { counters[k.name, default: 0] &+= v } }
        for (_, c) in published { for (k, v) in c { counters[k, default: 0] &+= v } }
        let local = udp.map { Endpoint($0.localEndpoint) }
        return StatusReport(
            node: StatusReport.Node(
                publicKey: identity.publicKey.base64, interface: config.node.interface,
                address: config.node.address.description, addresses: config.node.addresses.map(\.description), listenPort: local?.port ?? config.node.listenPort,
                anchor: config.node.anchor, reactors: lanes.count,
                endpoints: st.endpoints.map {
                    StatusReport.AdvertisedEndpoint(addr: "\($0.endpoint)", source: StatusReport.EndpointSource(rawValue: $0.source.name) ?? .local)
                },
                nat: StatusReport.NAT(mapping: st.nat.mapping)),
            anchors: anchors, peers: peers, warnings: warnings, counters: counters)
    }

    func peerName(_ p: PeerID) -> String { config.peers[p.rawValue].name }
}

struct DaemonError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Adapters between reactor callbacks and the daemon (they hold it unowned: the daemon outlives its sockets).
final class UDPSide: DatagramHandler {
    unowned let lane: Lane
    init(_ lane: Lane) { self.lane = lane }
    func received(_ batch: DatagramBatch, on socket: DatagramSocket) { lane.udpReceived(batch) }
}

final class TunSide: TunHandler {
    unowned let lane: Lane
    init(_ lane: Lane) { self.lane = lane }
    func tunRead(_ batch: TunBatch, device: TunDevice) { lane.tunRead(batch) }
}

extension Endpoint {
    init(_ c: CReactor_endpoint) {
        var a = IPAddressBytes()
        withUnsafeBytes(of: c.addr) { raw in
            a.hi = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            a.lo = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        self.init(family: c.family == 10 ? .v6 : .v4, address: a, port: c.port, scopeID: c.scope_id)
    }

    var creactor: CReactor_endpoint {
        var c = CReactor_endpoint()
        c.family = family == .v6 ? 10 : 2
        c.port = port
        c.scope_id = scopeID
        withUnsafeMutableBytes(of: &c.addr) { raw in
            raw.storeBytes(of: address.hi.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: address.lo.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return c
    }
}
