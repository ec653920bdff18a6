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
    var tunnels: Tunnels
    let routes: CryptokeyRoutes
    private(set) var udp: DatagramSocket!
    private(set) var tun: TunDevice!
    private var control: ControlServer?
    private var signals: Registration?
    private var signalFD: Int32 = -1
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
        var specs: [PeerSpec] = []
        var routeList: [(CIDR, Int)] = []
        for (i, p) in config.peers.enumerated() {
            guard let key = PublicKey(base64: p.publicKey) else { throw DaemonError("peer[\(i)].public_key: not a valid key") }
            specs.append(PeerSpec(publicKey: key, endpoint: p.endpoint, persistentKeepalive: p.persistentKeepalive))
            for c in p.addresses { routeList.append((c, i)) }
        }
        routes = CryptokeyRoutes(routeList)
        tunnels = Tunnels(identity: identity, peers: specs)
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
        logger.info("whalescaled up: \(config.node.interface) \(config.node.address) mtu \(mtu), listening on \(config.node.listenPort), \(config.peers.count) peers, key \(identity.publicKey.base64)")
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
        logger.info("offloads: tun \(tun.vnetHeader ? tun.offloads.description : "off"), udp gso \(udp.gso ? "on" : "off"), gro \(gro ? "on" : "off")")
        try tun.setUp(mtu: mtu)
        try InterfaceSetup.configure(interface: tun.name, address: config.node.address,
                                     routes: config.peers.flatMap(\.addresses), logger: logger)

        control = try ControlServer(path: config.node.controlSocket, reactor: reactor) { [unowned self] in self.status() }

        // Bring up sessions with every member that has an endpoint (anchors first).
        let now = Self.now()
        for (i, p) in config.peers.enumerated() where p.endpoint != nil {
            tunnels.connect(PeerID(rawValue: i), now: now)
        }
        service(now: now)
    }

    func shutdown() {
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
        while let t = tunnels.pollTransmit() {
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
        while let e = tunnels.pollEvent() { log(e) }
        armTimer()
    }

    private func flush(_ n: Int) {
        guard n > 0 else { return }
        let sent = udp.send(DatagramBatch(base: out, count: n))
        if sent < n { drops["udp_send_full", default: 0] &+= UInt64(n - sent) }
    }

    private func armTimer() {
        guard let (deadline, _) = tunnels.pollTimeout() else {
            if let t = tunnelTimer { reactor.cancelTimer(t) }
            tunnelTimer = nil
            tunnelDeadline = nil
            return
        }
        if tunnelDeadline == deadline { return }
        if let t = tunnelTimer { reactor.cancelTimer(t) }
        tunnelDeadline = deadline
        tunnelTimer = reactor.addTimer(at: deadline.ns) { [unowned self] in
            self.tunnelTimer = nil
            self.tunnelDeadline = nil
            let now = Self.now()
            self.tunnels.handleTimeout(now: now, wallClock: Self.wallClock())
            self.service(now: now)
        }
    }

    private func log(_ e: TunnelEvent) {
        switch e {
        case .established(let p): logger.info("\(peerName(p)): session established")
        case .rekeyed(let p): logger.debug("\(peerName(p)): rekeyed")
        case .endpointChanged(let p, let ep): logger.info("\(peerName(p)): endpoint now \(ep)")
        case .handshakeFailed(let p): logger.notice("\(peerName(p)): no handshake answer; queued packets dropped, will retry on traffic")
        case .expired(let p): logger.notice("\(peerName(p)): keys expired")
        }
    }

    /// The status object (`wsctl status`), built on the reactor's thread.
    func status() -> StatusReport {
        let now = Self.now()
        var peers: [StatusReport.Peer] = []
        var anchors: [StatusReport.Anchor] = []
        for (i, p) in config.peers.enumerated() {
            let st = tunnels.peerStatus(PeerID(rawValue: i), now: now)
            let state: StatusReport.PeerState
            switch st?.state {
            case .established?, .rekeying?: state = .up
            case .handshaking?, .awaitingConfirmation?: state = .handshaking
            default: state = .idle
            }
            let ep = st?.endpoint.map { "\($0)" }
            var paths: [StatusReport.Path] = []
            if let ep { paths.append(StatusReport.Path(kind: .direct, remote: ep, active: state == .up)) }
            peers.append(StatusReport.Peer(
                name: p.name, publicKey: p.publicKey, address: p.addresses.map(\.description), state: state,
                endpoint: ep, lastHandshakeSecondsAgo: st?.lastHandshake.map { UInt64((now - $0).seconds) },
                rxBytes: st?.counters.rxBytes ?? 0, txBytes: st?.counters.txBytes ?? 0, paths: paths))
            if p.anchor { anchors.append(StatusReport.Anchor(publicKey: p.publicKey, name: p.name, reachable: state == .up)) }
        }
        var warnings: [String] = []
        let reachable = anchors.filter(\.reachable).count
        if !anchors.isEmpty && reachable <= 1 && now - started > .seconds(10 as UInt64) {
            warnings.append(reachable == 0 ? "no anchor is reachable" : "only one anchor is reachable")
        }
        let local = udp.map { Endpoint($0.localEndpoint) }
        return StatusReport(
            node: StatusReport.Node(
                publicKey: identity.publicKey.base64, interface: config.node.interface,
                address: config.node.address.description, listenPort: local?.port ?? config.node.listenPort,
                anchor: config.node.anchor, endpoints: [], nat: StatusReport.NAT(mapping: .unknown)),
            anchors: anchors, peers: peers, warnings: warnings, counters: drops)
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
