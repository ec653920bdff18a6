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
// The engine by job, one file each:
//   Daemon.swift          lifecycle: open the lanes, run, stop, clean up
//   Daemon+Setup.swift    the roster, NodeCore and the session shards made from the config
//   Daemon+Sources.swift  uplinks (netlink), port mapping and LAN discovery feeding lane 0
//   Lane.swift            one reactor's lane: rings and mailboxes between lanes
//   DataPath.swift        a lane's packet path (TUN ⇄ seal/open ⇄ UDP), routed by LaneRouter
//   CoreDriver.swift      lane 0 driving NodeCore: drain order, shard sync, the one timer, events
//   StatusAssembly.swift  the status object for the control socket
//   PortMapAdapter.swift  PCP / NAT-PMP / UPnP port mapping on a worker thread, results through lane 0's mailbox
//   LanAdapter.swift      LAN discovery (signed mDNS on 224.0.0.251:5353) on a worker thread, the same way
//   MTUControl.swift      the TUN's MTU follows the smallest active path; ICMP too-big for packets above it
//   ControlRequests.swift the control socket's verbs (status now; ping when its ECHO_REPLY comes or times out)
//   WireGuardDropIn.swift `whalescaled --wireguard IFNAME`: the UAPI socket, the device applied at run time
//   IOAdapters.swift, ControlServer.swift, MetricsServer.swift (HTTP /metrics), StateStore.swift,
//   Interface.swift: one adapter per I/O source
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
import Foundation
import Logging
import Reactor

public final class Daemon: @unchecked Sendable {
    /// The node's configuration. The drop-in mode (WireGuardDropIn.swift) replaces
    /// its peers when the UAPI changes them; otherwise it is fixed at start.
    public internal(set) var config: Config
    var identity: Identity
    var logger: Logger
    /// Lane 0's reactor: NodeCore, the control socket, signals (and lane 0's data).
    var reactor: Reactor { lanes[0].reactor }
    /// Sessions and connectivity (anchors, probes, rendezvous, relay, recovery), sans-IO. Lane 0 only.
    var core: NodeCore
    /// Read per packet by every lane; replaced only by the drop-in mode, which runs one lane.
    var routes: CryptokeyRoutes
    var members: [MemberSpec]
    /// `whalescaled --wireguard IFNAME`: the WireGuard device the UAPI configures (nil: a Whalescale node).
    var dropIn: DropInState?
    /// Called once the interface exists and the UAPI socket listens (drop-in
    /// mode: the parent process of a backgrounded daemon waits for it).
    public var onReady: (() -> Void)?
    /// One per reactor, one reactor per core (Lane.swift); lane 0 runs on the daemon's thread.
    private(set) var lanes: [Lane] = []
    var udp: DatagramSocket! { lanes[0].udp }
    var tun: TunDevice! { lanes[0].tun }
    var threads: [Thread] = []
    let finished = DispatchSemaphore(value: 0)
    var control: ControlServer?
    /// `[metrics] listen`: the HTTP /metrics adapter (MetricsServer.swift).
    var metricsServer: MetricsServer?
    /// `wsctl ping`s waiting for their ECHO_REPLY, by txid (ControlRequests.swift).
    var pendingEchoes: [UInt64: PendingEcho] = [:]
    var signals: Registration?
    var signalFD: Int32 = -1
    var stateStore: StateStore?
    /// Writes the state file off the reactors (M5); lane 0 hands it snapshots per `saveSchedule`.
    var stateWriter: StateWriter?
    var saveSchedule = SaveSchedule(interval: SaveSchedule.defaultInterval)
    /// The gossip records' file (`records.bin`), its own writer and schedule.
    var recordsWriter: StateWriter?
    var recordsSchedule = SaveSchedule(interval: SaveSchedule.defaultInterval)
    var tunnelTimer: TimerID?
    /// Path and endpoint change lines: a racing attacker must not set the log's rate (review F9).
    var moveLogBudget = LogBudget()
    var tunnelDeadline: Instant?
    /// Port mapping (PCP, NAT-PMP, UPnP) on its own thread; nil when `node.port_mapping = []`.
    var portMap: PortMapAdapter?
    /// What the port-mapping worker counted last (lane 0's thread only).
    var portMapCounters: [String: UInt64] = [:]
    /// LAN discovery (mDNS) on its own thread; nil when `node.lan_discovery = false`.
    var lan: LanAdapter?
    /// What the LAN worker counted last (lane 0's thread only).
    var lanCounters: [String: UInt64] = [:]
    /// The interfaces traffic may leave through (Uplinks.swift), by index; nil: a
    /// hole left by one that went away. Found at start, re-read after route changes.
    var uplinks: [Uplink?] = []
    /// The main routing table as last read (with the uplinks): what `paths[].uplink` looks up.
    var kernelRoutes: [KernelRoute] = []
    /// Netlink: links, addresses and routes changed (nil: the kernel refused it; read at start only).
    var routeMonitor: RouteMonitor?
    var uplinkTimer: TimerID?
    /// Counters the other lanes published last (lane 0's thread only).
    var published: [Int: [String: UInt64]] = [:]
    /// The multipath state of the peers the other lanes own, as they published it last (lane 0's thread only).
    var publishedMultipath: [Int: [Int: LaneMultipath]] = [:]
    /// What the lanes that own the sessions were told.
    var shardSync: ShardSync
    let started = Daemon.now()
    /// Views for NodeCore's own transmits (handshakes, keepalives, probes).
    let out: UnsafeMutablePointer<DatagramView>
    static let batch = 64
    /// A scratch buffer for control messages from pollTransmit (not the data path).
    let scratch: UnsafeMutableRawPointer
    static let scratchSize = 65536
    /// The TUN's MTU at start: `[node] mtu`, or the default (drop-in: WireGuard's).
    public let mtu: Int
    /// The tunnel MTU over the active paths, and the per-member limits the lanes check (MTUControl.swift).
    let mtuControl: MTUControl

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

    public convenience init(config: Config, logger: Logger) throws {
        Sodium.initialize()
        let keyText = try config.node.loadPrivateKey { [logger] w in logger.warning("\(w)") }
        guard let secret = SecretKey(base64: keyText) else {
            throw DaemonError("node.private_key: not a base64 key of 32 bytes")
        }
        let identity = Identity(secret: secret)
        try config.checkNoPeerHasKey(identity.publicKey.base64)
        let (members, routeList) = try Self.members(of: config)
        try self.init(config: config, identity: identity, members: members, routes: routeList, logger: logger)
    }

    init(config: Config, identity: Identity, members: [MemberSpec], routes routeList: [(CIDR, Int)], logger: Logger,
         dropIn: DropInState? = nil, mtu: Int = Daemon.defaultMTU) throws {
        self.config = config
        self.logger = logger
        self.identity = identity
        self.dropIn = dropIn
        routes = CryptokeyRoutes(routeList)
        let n = config.node.reactorCount
        self.members = members
        core = Self.makeCore(identity: identity, members: members, config: config, owners: n)
        shardSync = ShardSync(router: LaneRouter(lanes: n, isAnchor: config.node.anchor), peers: members.count)
        self.mtu = dropIn == nil ? (config.node.mtu ?? mtu) : mtu
        mtuControl = MTUControl(configured: dropIn == nil ? config.node.mtu : nil, initial: self.mtu, peers: members.count,
                                enabled: dropIn == nil)
        out = .allocate(capacity: Self.batch)
        out.initialize(repeating: DatagramView(), count: Self.batch)
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 16)
        for i in 0..<n {
            let r = try Reactor()
            r.onError = { [logger] e in logger.debug("io: \(e)") }
            let lane = Lane(id: i, daemon: self, reactor: r)
            lanes.append(lane)
        }
        splitSessions(across: n)
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

    /// Before the config (which may hold the key inline) is read: no core dump
    /// and no ptrace by other users may carry the secret key out of the process.
    @discardableResult
    public static func hardenProcess() -> Bool { ProcessHardening.disableCoreDumps() }

    /// Opens everything, runs until SIGTERM/SIGINT, cleans up. Throws only for start-up failures.
    public func run() throws {
        try start()
        if let d = dropIn {
            logger.info("whalescaled up as a WireGuard device: \(tun.name) mtu \(mtu), UAPI on \(d.socketPath), listening on \(Endpoint(udp.localEndpoint).port)")
            onReady?()
            reactor.run()
            shutdown()
            return
        }
        logger.info("whalescaled up: \(config.node.interface) \(config.node.addresses.map(\.description).joined(separator: ",")) mtu \(mtuControl.state.current), listening on \(config.node.listenPort), \(config.peers.count) peers, \(lanes.count) reactor\(lanes.count == 1 ? "" : "s"), key \(identity.publicKey.base64), cipher \(config.node.cipher.rawValue)\(config.node.cipher.allowsAESGCM && !NoiseCipher.aesGCM.isAvailable ? " (no AES-NI: ChaCha20-Poly1305 only)" : ""), libsodium \(Sodium.version)")
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
                setThreadName(name)
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
        signalFD = try SignalSource.open([SIGTERM, SIGINT])
        let sfd = signalFD
        signals = try reactor.register(fd: sfd, events: .readable) { [unowned self] _ in
            let s = SignalSource.read(sfd)
            if s > 0 {
                self.logger.info("signal \(s): shutting down")
                self.reactor.stop()
            }
        }

        try openLanes()
        // A TUN with a vnet header takes packets whose checksum a peer left partial (NEEDS_CSUM):
        // Whalescale sessions offer and accept DATA header flags (Wire/DataMessage.swift).
        core.headerFlags = tun.vnetHeader && config.node.checksumOffload
        try tun.setUp(mtu: mtu)
        if dropIn != nil {
            // wireguard-go's contract: the interface exists; its addresses and routes are the user's (`ip`, wg-quick).
            // The Whalescale control socket serves `wsctl status` (counters, roaming) beside the UAPI.
            control = try ControlServer(path: config.node.controlSocket, reactor: reactor) {
                [unowned self] request, reply in self.handle(request, reply: reply)
            }
            try startDropIn()
            return
        }
        try InterfaceSetup.configure(interface: tun.name, addresses: config.node.addresses,
                                     routes: config.peers.flatMap(\.addresses), logger: logger)

        control = try ControlServer(path: config.node.controlSocket, reactor: reactor, group: try controlGroupID()) {
            [unowned self] request, reply in self.handle(request, reply: reply)
        }
        if let listen = config.metrics.listen {
            metricsServer = try MetricsServer(address: listen.socketAddress, reactor: reactor) { [unowned self] in
                PrometheusText.render(self.status())
            }
            logger.info("metrics: serving GET /metrics on http://\(listen)")
        }

        let now = Self.now()
        // The gossip records first, before anything is sent or published: our
        // record's sequence continues where the last run's ended (never backwards).
        let recordsStore = StateStore(directory: config.node.stateDir, name: StateStore.recordsFile, logger: logger)
        if let bytes = recordsStore?.load() {
            logger.info("state: \(core.loadGossipSnapshot(bytes, now: now)) gossip records loaded")
        }
        recordsWriter = recordsStore.map { StateWriter(store: $0) }
        // What we route into the tunnel is never a member's endpoint (a site's LAN
        // behind an edge router is in its `address`): punching it would loop.
        core.tunnelledPrefixes = config.node.addresses.map(\.network) + config.peers.flatMap(\.addresses)
        // Where we can be reached on our own interfaces (candidates for peers on the same LAN or without NAT).
        let port = Endpoint(udp.localEndpoint).port
        core.setLocalEndpoints(LocalAddresses.list(excluding: tun.name).map { Endpoint(family: $0.family, address: $0.address, port: port) },
                               now: now)
        findUplinks()
        startMTU(now: now)
        startPortMapping(port: port)
        startLanDiscovery(port: port)
        // Last-known endpoints from the previous run (recovery tries them after the anchors).
        stateStore = StateStore(directory: config.node.stateDir, logger: logger)
        if let bytes = stateStore?.load(), !core.loadEndpointCache(bytes) {
            logger.notice("state: endpoint cache unreadable; starting without it")
        }
        stateWriter = stateStore.map { StateWriter(store: $0) }
        // Bring up sessions with every member that has a static endpoint (NodeCore does the anchors itself).
        for (i, p) in config.peers.enumerated() where p.endpoint != nil && !p.anchor {
            core.connect(PeerID(rawValue: i), now: now)
        }
        service(now: now)
    }

    /// Every lane's UDP socket (one SO_REUSEPORT group when there are several,
    /// with DATA steered to the lane that owns its receiver index) and TUN
    /// queue, and the rings and mailboxes between lanes.
    func openLanes() throws {
        let wanted = lanes.count
        var port = config.node.listenPort
        for lane in lanes where lane.id < lanes.count {
            let gro = try openUDP(lane, port: &port, reusePort: wanted > 1)
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
            // A RELAY carrying DATA goes by its inner receiver index on every node: a member unwraps
            // it on the lane that owns the inner DATA; an anchor forwards it on the lane it lands
            // on, picked by the index's second byte (the pair bit: LaneRouter.isAnchor).
            try UDPSocket.attachSteering(fd: lanes[0].udp.fd, groups: n, relayInner: LaneRouter.relayInner,
                                         relayByPair: config.node.anchor)
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

    /// Opens `lane`'s UDP socket on `port` (lane 0 sets `port` to the one it got:
    /// the others join it) and returns whether GRO is on.
    func openUDP(_ lane: Lane, port: inout UInt16, reusePort: Bool) throws -> Bool {
        // One UDP socket for IPv4 and IPv6: a dual-stack [::]:port, or 0.0.0.0:port where IPv6 is off.
        var options = Self.udpOptions
        options.reusePort = reusePort
        let any6 = SocketAddress.any(v6: true, port: port)
        var opened: (fd: Int32, notes: [String])
        do {
            opened = try UDPSocket.open(bind: any6, options: options)
        } catch {
            if lane.id == 0 { logger.notice("IPv6 socket unavailable (\(error)); listening on IPv4 only") }
            let any4 = SocketAddress.any(v6: false, port: port)
            opened = try UDPSocket.open(bind: any4, options: options)
        }
        if lane.id == 0 {
            for n in opened.notes { logger.notice("udp: \(n)") }
            port = UDPSocket.localEndpoint(opened.fd).port  // the others join this port (it may have been 0)
        }
        // With UDP GRO a receive may be a 64 KiB run of datagrams: 64 KiB buffers (touched only as far
        // as datagrams fill them); the socket asks for fewer of them per batch while runs come in.
        let gro = UDPSocket.groEnabled(opened.fd)
        let slots = gro ? 64 : Self.batch, size = gro ? 65536 + Self.headroom : 2048
        // One packet pool per reactor, made here, before the lane runs: the receive buffers,
        // and as many again for datagrams kept past their batch (Reactor/PacketPool.swift).
        // Plus room for what the reorder buffers hold (Engine/Reorder.swift): a held datagram keeps
        // its receive buffer (with GRO, a run's datagrams share one).
        let held = gro ? 32 : MultipathConstants.reorderDepth
        let pool = PacketPool(count: DatagramSocket.ownPoolBuffers(backend: .default, batchSize: slots) + held, bufferSize: size)
        lane.udp = try DatagramSocket(reactor: lane.reactor, fd: opened.fd, batchSize: slots, bufferSize: size,
                                      headroom: Self.headroom, pool: pool, handler: UDPSide(lane))
        lane.udp.onNotice = { [logger] n in logger.notice("udp: \(n)") }
        return gro
    }

    func shutdown() {
        // The gateway's mapping first (bounded wait), while the network is still ours.
        portMap?.stop()
        portMap = nil
        lan?.stop()
        lan = nil
        // The newest cache, written before we exit (the reactors have stopped: nothing races it).
        if let w = stateWriter {
            w.submit(core.endpointCacheBytes())
            w.finish()
        }
        if let w = recordsWriter {
            w.submit(core.gossipSnapshot())
            w.finish()
        }
        stopDropIn()
        routeMonitor?.close()
        routeMonitor = nil
        if let t = uplinkTimer { reactor.cancelTimer(t) }
        stopMTU()
        control?.close()
        control = nil
        metricsServer?.close()
        metricsServer = nil
        for lane in lanes.reversed() {
            lane.tun?.close()  // a non-persistent TUN device disappears with its last queue's fd, and its routes with it
            lane.udp?.close()
        }
        if let s = signals { reactor.deregister(s) }
        if signalFD >= 0 { FileDescriptor.close(signalFD) }
        logger.info("whalescaled stopped")
    }

    static func now() -> Instant { Instant(ns: Reactor.now()) }
    /// The wall clock, only for handshake timestamps (TAI64N-style, replay protection of initiations).
    static func wallClock() -> HandshakeTimestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return HandshakeTimestamp(unixSeconds: UInt64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
    }

    /// The timer's action, made once (a closure per arming would allocate its context each time).
    lazy var tunnelTimerFired: () -> Void = { [unowned self] in
        self.tunnelTimer = nil
        self.tunnelDeadline = nil
        let now = Self.now()
        self.core.handleTimeout(now: now, wallClock: Self.wallClock())
        self.service(now: now)
    }
}

struct DaemonError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Adapters between reactor callbacks and the daemon (they hold it unowned: the daemon outlives its sockets).
extension Endpoint {
    init(_ c: SocketAddress) {
        var a = IPAddressBytes()
        withUnsafeBytes(of: c.addr) { raw in
            a.hi = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            a.lo = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        self.init(family: c.isV6 ? .v6 : .v4, address: a, port: c.port, scopeID: c.scope_id)
    }

    var socketAddress: SocketAddress {
        var c = SocketAddress()
        c.family = family == .v6 ? SocketAddress.inet6 : SocketAddress.inet
        c.port = port
        c.scope_id = scopeID
        withUnsafeMutableBytes(of: &c.addr) { raw in
            raw.storeBytes(of: address.hi.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: address.lo.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return c
    }
}
