// The node's engine: the only part of Node that imports Reactor.
//
//   TUN ──tunRead(batch)──▶ cryptokey route ──▶ Tunnels.send (seal in place) ──▶ one sendmmsg ──▶ UDP
//   UDP ──received(batch)─▶ Tunnels.receive (open in place) ──▶ inner source check ──▶ write ──▶ TUN
//                                   │
//                 handshakes, cookies, keepalives: Tunnels.pollTransmit ──▶ UDP
//                 timers: one reactor timer at Tunnels.pollTimeout's deadline
//                 control: UNIX socket ──▶ ControlCodec ──▶ StatusReport
//                 SIGTERM/SIGINT: signalfd ──▶ stop; the TUN device, routes and socket go with it
//
// It owns the state machines, feeds them reactor events and the clock
// (CLOCK_MONOTONIC as `Instant`, the wall clock only for handshake
// timestamps), and drains their outputs into the reactor. Every drop is counted
// by reason and shown by `wsctl status`.
import CReactor
import Foundation
import Logging
import Reactor

public final class Daemon {
    public let config: Config
    let identity: Identity
    var logger: Logger
    let reactor: Reactor
    /// Sessions and connectivity (anchors, probes, rendezvous, relay, recovery), sans-IO.
    var core: NodeCore
    let routes: CryptokeyRoutes
    private(set) var udp: DatagramSocket!
    private(set) var tun: TunDevice!
    private var control: ControlServer?
    private var signals: Registration?
    private var signalFD: Int32 = -1
    private var stateStore: StateStore?
    private var tunnelTimer: TimerID?
    private var tunnelDeadline: Instant?
    /// Packets dropped by reason, for `wsctl status` (`counters`).
    var drops: [String: UInt64] = [:]
    var loadMeter = HandshakeLoadMeter()
    private let started = Daemon.now()
    /// Views for one outgoing batch (sealed TUN packets, in place).
    let out: UnsafeMutablePointer<CReactor_dgram>
    /// The data path's buffers (DataPath.swift).
    let fast = DataPathBuffers()
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
        core = NodeCore(identity: identity, members: members, isAnchor: config.node.anchor,
                        timings: ConnectivityTimings.default.withRelayRate(mbit: config.node.relayRateMbit))
        mtu = Self.defaultMTU
        reactor = try Reactor()
        out = .allocate(capacity: Self.batch)
        out.initialize(repeating: CReactor_dgram(), count: Self.batch)
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 16)
        reactor.onError = { [logger] e in logger.debug("io: \(e)") }
    }

    deinit {
        out.deallocate()
        scratch.deallocate()
    }

    public var publicKey: PublicKey { identity.publicKey }

    /// Opens everything, runs until SIGTERM/SIGINT, cleans up. Throws only for start-up failures.
    public func run() throws {
        try start()
        logger.info("whalescaled up: \(config.node.interface) \(config.node.addresses.map(\.description).joined(separator: ",")) mtu \(mtu), listening on \(config.node.listenPort), \(config.peers.count) peers, key \(identity.publicKey.base64)")
        reactor.run()
        shutdown()
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

        // One UDP socket for IPv4 and IPv6: a dual-stack [::]:port, or 0.0.0.0:port where IPv6 is off.
        var any6 = CReactor_endpoint()
        _ = CReactor_endpoint_parse("::", config.node.listenPort, &any6)
        var opened: (fd: Int32, notes: [String])
        do {
            opened = try UDPSocket.open(bind: any6, options: Self.udpOptions)
        } catch {
            logger.notice("IPv6 socket unavailable (\(error)); listening on IPv4 only")
            var any4 = CReactor_endpoint()
            _ = CReactor_endpoint_parse("0.0.0.0", config.node.listenPort, &any4)
            opened = try UDPSocket.open(bind: any4, options: Self.udpOptions)
        }
        for n in opened.notes { logger.notice("udp: \(n)") }
        // With UDP GRO a receive may be a 64 KiB run of datagrams: 64 KiB buffers (touched only as far
        // as datagrams fill them); the socket asks for fewer of them per batch while runs come in.
        let gro = CReactor_get_udp_gro(opened.fd) == 1
        udp = try DatagramSocket(reactor: reactor, fd: opened.fd, batchSize: gro ? 64 : Self.batch,
                                 bufferSize: gro ? 65536 + Self.headroom : 2048, headroom: Self.headroom, handler: UDPSide(self))
        udp.onNotice = { [logger] n in logger.notice("udp: \(n)") }

        tun = try TunDevice(reactor: reactor, name: config.node.interface, offloads: .all, headroom: Self.headroom,
                            handler: TunSide(self))
        for n in tun.notes { logger.notice("tun: \(n)") }
        // Same-flow UDP datagrams are written as one UDP_L4 super-packet only where the TUN has USO (6.2+).
        fast.coalescer.udp = tun.offloads.isSuperset(of: [.uso4, .uso6])
        logger.info("offloads: tun \(tun.vnetHeader ? tun.offloads.description : "off"), udp gso \(udp.gso ? "on" : "off"), gro \(gro ? "on" : "off")")
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

    func shutdown() {
        stateStore?.save(core.endpointCacheBytes())
        control?.close()
        control = nil
        tun?.close()  // a non-persistent TUN device disappears with its fd, and its routes with it
        udp?.close()
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

    func count(_ reason: String) {
        drops[reason, default: 0] &+= 1
        if logger.logLevel <= .trace { logger.trace("drop: \(reason)") }
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
        drops["udp_send_full", default: 0] &+= lost
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
        var counters = drops
        for (k, v) in st.counters { counters[k, default: 0] &+= v }
        // Packets written to the TUN device inside a GSO super-packet instead of alone.
        counters["tun_coalesced_packets"] = UInt64(fast.coalescer.merged)
        counters["tun_coalesced_udp"] = UInt64(fast.coalescer.mergedUDP)
        let local = udp.map { Endpoint($0.localEndpoint) }
        return StatusReport(
            node: StatusReport.Node(
                publicKey: identity.publicKey.base64, interface: config.node.interface,
                address: config.node.address.description, addresses: config.node.addresses.map(\.description), listenPort: local?.port ?? config.node.listenPort,
                anchor: config.node.anchor,
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
    unowned let d: Daemon
    init(_ d: Daemon) { self.d = d }
    func received(_ batch: DatagramBatch, on socket: DatagramSocket) { d.udpReceived(batch) }
}

final class TunSide: TunHandler {
    unowned let d: Daemon
    init(_ d: Daemon) { self.d = d }
    func tunRead(_ batch: TunBatch, device: TunDevice) { d.tunRead(batch) }
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
