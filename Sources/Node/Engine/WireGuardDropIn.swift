// The drop-in mode: `whalescaled --wireguard IFNAME` behaves like a userspace
// WireGuard implementation (as wireguard-go does), configured only through
// WireGuard's cross-platform UAPI (Control/WireGuardUAPI.swift):
//
//   wg / wg-quick ──UNIX stream──▶ /var/run/wireguard/IFNAME.sock ──▶ UAPIRequestReader
//        get=1 ◀── WireGuardUAPI.render(device, live numbers from NodeCore)
//        set=1 ──▶ WireGuardUAPI.apply(lines, device) ──▶ new device ──▶ applyDevice:
//                    listen port changed   → a new UDP socket (the old one is kept if the port is taken)
//                    only allowed IPs      → new cryptokey routes, sessions untouched
//                    keys, psk, endpoint, keepalive, peers added or removed
//                                          → the roster and NodeCore are made again from the device
//                                            (every peer re-handshakes: see docs/wireguard.md)
//   every second: is IFNAME still there (`ip link del` ends the daemon, as in wireguard-go)
//
// One reactor (lane 0): the routes and the roster are replaced on the thread
// that reads them. The interface's addresses and routes are the user's (`ip`,
// wg-quick): the daemon sets only the MTU and brings it up.
//
// Roaming: the device has no Whalescale control plane to drive endpoints, so a
// WireGuard peer's path follows its authenticated packets as in WireGuard
// (NodeCore's roaming rule: a direct source on traffic is taken at once).
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Foundation
import Logging
import Reactor

/// What the drop-in mode adds to the daemon (lane 0's thread only).
final class DropInState {
    let interface: String
    let socketPath: String
    var device = WireGuardDevice()
    var server: StreamServer<UAPIRequestReader>?
    var linkTimer: TimerID?
    var ifIndex: UInt32 = 0
    var stopping = false
    /// The socket file's inode: removing the file (as some tools do to stop a
    /// userspace WireGuard) also ends the daemon, as in wireguard-go.
    var socketInode: UInt64 = 0
    /// Traffic and handshakes of peers before the core was last made again,
    /// by public key, so `wg show` keeps counting across a reconfiguration.
    var carried: [[UInt8]: WireGuardPeerLive] = [:]
    /// Requests answered with an errno other than 0, and connections cut off.
    var counters: [String: UInt64] = [:]

    static let socketDirectory = "/var/run/wireguard"
    /// wireguard-go's default MTU: 1500 minus WireGuard's worst-case overhead over IPv6 (80).
    static let mtu = 1420
    static let clientTimeoutNs: UInt64 = 5_000_000_000
    static let maxClients = 32
    static let linkCheckNs: UInt64 = 1_000_000_000

    init(interface: String) {
        self.interface = interface
        socketPath = "\(Self.socketDirectory)/\(interface).sock"
    }
}

extension Daemon {
    /// A WireGuard device named `interface`: no peers, no key, a free port until the UAPI sets them.
    public convenience init(wireGuardInterface interface: String, logger: Logger) throws {
        Sodium.initialize()
        // A placeholder identity until `private_key` is set: no peer is given to the core before that.
        let identity = Identity(secret: SecretKey.generate())
        var node = NodeConfig(privateKey: .inline(""), interface: interface, address: CIDR("0.0.0.0/0")!, listenPort: 0,
                              stateDir: "/nonexistent")
        node.addresses = []
        node.reactors = 1
        node.portMapping = []
        node.lanDiscovery = false
        try self.init(config: Config(node: node, peers: []), identity: identity, members: [], routes: [], logger: logger,
                      dropIn: DropInState(interface: interface), mtu: DropInState.mtu)
    }

    // MARK: start and stop

    func startDropIn() throws {
        guard let d = dropIn else { return }
        d.ifIndex = if_nametoindex(d.interface)
        try FileManager.default.createDirectory(atPath: DropInState.socketDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        // A socket someone answers on is another daemon's interface: refuse rather than steal it.
        let probe = UnixStream.connect(path: d.socketPath)
        if probe >= 0 {
            FileDescriptor.close(probe)
            throw DaemonError("\(d.socketPath): another process serves this interface's UAPI")
        }
        // Owner-only, as wireguard-go makes it (umask 077): the UAPI hands out the private key.
        let fd = try UnixStream.listen(path: d.socketPath, mode: 0o700)
        let server = try StreamServer(listening: fd, reactor: reactor, maxClients: DropInState.maxClients,
                                      timeoutNs: DropInState.clientTimeoutNs, state: { _ in UAPIRequestReader() })
        server.tooMany = { [unowned d] in d.counters["uapi_too_many_clients", default: 0] &+= 1 }
        server.timedOut = { [unowned d] _ in d.counters["uapi_timed_out", default: 0] &+= 1 }
        server.readable = { [unowned self] c in self.uapiRead(c) }
        d.server = server
        d.socketInode = Self.inode(d.socketPath) ?? 0
        // `ip link del` while a read waits: the TUN fd then fails with EBADFD (or EIO) at once,
        // level-triggered: stop now rather than spin until the periodic check notices.
        reactor.onError = { [unowned self, logger] e in
            if e.call == "read(tun)" && (e.errno == EBADFD || e.errno == EIO) {
                self.interfaceGone()
            } else {
                logger.debug("io: \(e)")
            }
        }
        armLinkCheck()
        service(now: Self.now())
    }

    func stopDropIn() {
        guard let d = dropIn else { return }
        if let t = d.linkTimer { reactor.cancelTimer(t) }
        d.linkTimer = nil
        if let s = d.server {
            s.close()
            if d.socketInode != 0 && Self.inode(d.socketPath) == d.socketInode { unlink(d.socketPath) }
        }
        d.server = nil
    }

    /// `ip link del IFNAME` (or a rename) ends the daemon, as it ends wireguard-go.
    private func armLinkCheck() {
        guard let d = dropIn else { return }
        d.linkTimer = reactor.addTimer(after: DropInState.linkCheckNs) { [unowned self] in
            guard let d = self.dropIn else { return }
            d.linkTimer = nil
            let now = if_nametoindex(d.interface)
            if now == 0 || now != d.ifIndex {
                self.interfaceGone()
                return
            }
            if Self.inode(d.socketPath) != d.socketInode {
                self.logger.info("\(d.socketPath) was removed: shutting down")
                d.socketInode = 0  // not ours any more: shutdown must not unlink a successor's
                self.reactor.stop()
                return
            }
            self.armLinkCheck()
        }
    }

    private func interfaceGone() {
        guard let d = dropIn, !d.stopping else { return }
        d.stopping = true
        logger.info("interface \(d.interface) is gone: shutting down")
        reactor.stop()
    }

    // MARK: the UAPI socket

    private func uapiRead(_ c: StreamServer<UAPIRequestReader>.Connection) {
        guard let d = dropIn, let server = d.server else { return }
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { FileDescriptor.read(c.fd, into: $0) }
            if n == -StreamServerErrno.again { return }
            if n <= 0 {
                server.drop(c)  // closed before a whole request: nothing to answer
                return
            }
            switch c.state.append(buf[0..<Int(n)]) {
            case .needMore:
                continue
            case .tooLong:
                d.counters["uapi_refused", default: 0] &+= 1
                server.answer(c, Array(WireGuardUAPI.errnoAnswer(.tooLong).utf8))
                return
            case .malformed:
                d.counters["uapi_refused", default: 0] &+= 1
                server.answer(c, Array(WireGuardUAPI.errnoAnswer(.protocolError).utf8))
                return
            case .request(let r):
                server.answer(c, Array(uapiAnswer(r).utf8))
                return
            }
        }
    }

    /// The answer to one request (lane 0's thread).
    func uapiAnswer(_ r: UAPIRequest) -> String {
        guard let d = dropIn else { return WireGuardUAPI.errnoAnswer(.invalid) }
        switch r {
        case .get:
            return WireGuardUAPI.render(d.device, listenPort: udp.map { Endpoint($0.localEndpoint).port }, live: liveNumbers())
        case .unknown(let op):
            logger.notice("uapi: unknown operation \(String(reflecting: op))")
            d.counters["uapi_refused", default: 0] &+= 1
            return WireGuardUAPI.errnoAnswer(.invalid)
        case .set(let lines):
            switch WireGuardUAPI.apply(lines, to: d.device) {
            case .failure(let e):
                logger.notice("uapi: set refused: \(e)")
                d.counters["uapi_refused", default: 0] &+= 1
                return WireGuardUAPI.errnoAnswer(e.errno)
            case .success(let new):
                if let e = applyDevice(new) {
                    d.counters["uapi_refused", default: 0] &+= 1
                    return WireGuardUAPI.errnoAnswer(e.errno)
                }
                return WireGuardUAPI.errnoAnswer(nil)
            }
        }
    }

    // MARK: applying a device

    /// Makes the running node match `new`; nil when done, the errno when nothing changed.
    func applyDevice(_ new: WireGuardDevice) -> UAPIError? {
        guard let d = dropIn else { return UAPIError(.invalid, "not a WireGuard device") }
        let old = d.device
        let now = Self.now()
        // listen_port=0 keeps the port the socket has (it was free); another port means a new socket.
        var reopened = false
        if new.listenPort != 0, new.listenPort != udp.map({ Endpoint($0.localEndpoint).port }) {
            if let e = reopenUDP(port: new.listenPort, mark: old.fwmark) { return e }
            reopened = true
        }
        if new.fwmark != old.fwmark || reopened, let u = udp {
            do {
                try UDPSocket.setMark(u.fd, new.fwmark)
            } catch {
                logger.notice("uapi: fwmark \(new.fwmark): \(error)")
                return UAPIError(.notPermitted, "fwmark \(new.fwmark): \(error)")
            }
        }
        config.node.listenPort = new.listenPort
        d.device = new

        let sameCore = old.privateKey == new.privateKey && old.peers.count == new.peers.count
            && zip(old.peers, new.peers).allSatisfy {
                $0.publicKey == $1.publicKey && $0.presharedKey == $1.presharedKey && $0.endpoint == $1.endpoint
                    && $0.persistentKeepalive == $1.persistentKeepalive
            }
        let active = new.privateKey == nil ? [] : new.peers
        config.peers = active.map { p in
            PeerConfig(name: Self.shortName(p.publicKey), publicKey: Self.base64(p.publicKey), addresses: p.allowedIPs,
                       endpoint: p.endpoint, persistentKeepalive: p.persistentKeepalive > 0 ? .seconds(UInt64(p.persistentKeepalive)) : nil,
                       wireGuard: true)
        }
        var routeList: [(CIDR, Int)] = []
        for (i, p) in active.enumerated() { for c in p.allowedIPs { routeList.append((c, i)) } }
        routes = CryptokeyRoutes(routeList)
        if sameCore {
            service(now: now)
            return nil
        }
        // What `wg show` said before, by key: a peer whose session is not carried over keeps its counts.
        let before = liveNumbers()
        let oldCore = core
        let oldActive = old.privateKey == nil ? [] : old.peers
        members = active.map { p in
            MemberSpec(publicKey: PublicKey(exactly32: p.publicKey), name: Self.shortName(p.publicKey), endpoint: p.endpoint,
                       persistentKeepalive: p.persistentKeepalive > 0 ? .seconds(UInt64(p.persistentKeepalive)) : nil,
                       kind: .wireGuard(psk: p.presharedKey.flatMap { PresharedKey(bytes: $0) }))
        }
        if new.privateKey != old.privateKey {
            identity = new.privateKey.flatMap { Identity(wireGuardPrivateKey: $0) } ?? Identity(secret: SecretKey.generate())
        }
        core = Self.makeCore(identity: identity, members: members, config: config, owners: 1)
        splitSessions(across: 1)
        // Peers that are still the same peer (key, psk) under the same private key keep their
        // sessions, timers and roaming state; only the others handshake (again).
        var adopted = Set<[UInt8]>()
        var carried: [[UInt8]: WireGuardPeerLive] = [:]
        for (i, p) in active.enumerated() {
            if new.privateKey == old.privateKey, let j = oldActive.firstIndex(where: { $0.publicKey == p.publicKey }),
               oldActive[j].presharedKey == p.presharedKey {
                core.adoptWireGuardPeer(PeerID(rawValue: i), from: oldCore, PeerID(rawValue: j),
                                        keepPaths: p.endpoint == nil || p.endpoint == oldActive[j].endpoint)
                adopted.insert(p.publicKey)
                if let c = d.carried[p.publicKey] { carried[p.publicKey] = c }
            } else if let b = before[p.publicKey] {
                carried[p.publicKey] = b
            }
        }
        d.carried = carried
        core.tunnelledPrefixes = active.flatMap(\.allowedIPs)
        if let u = udp {
            let port = Endpoint(u.localEndpoint).port
            core.setLocalEndpoints(LocalAddresses.list(excluding: tun.name).map { Endpoint(family: $0.family, address: $0.address, port: port) },
                                   now: now)
        }
        for (i, p) in active.enumerated() where p.endpoint != nil && !adopted.contains(p.publicKey) {
            core.connect(PeerID(rawValue: i), now: now)
        }
        logger.info("\(d.interface): \(active.count) peer\(active.count == 1 ? "" : "s")\(new.privateKey == nil ? " (no private key yet)" : ""), \(adopted.count) session\(adopted.count == 1 ? "" : "s") kept")
        service(now: now)
        return nil
    }

    /// A UDP socket on `port` (0: any free one) in place of lane 0's; the old one stays if it cannot be bound.
    private func reopenUDP(port: UInt16, mark: UInt32) -> UAPIError? {
        let lane = lanes[0]
        let old = lane.udp
        var p = port
        do {
            _ = try openUDP(lane, port: &p, reusePort: false)
        } catch {
            lane.udp = old
            logger.notice("uapi: listen_port \(port): \(error)")
            return UAPIError(.addressInUse, "listen_port \(port): \(error)")
        }
        if mark != 0 {
            do {
                try UDPSocket.setMark(lane.udp.fd, mark)
            } catch {
                lane.udp.close()
                lane.udp = old
                return UAPIError(.notPermitted, "fwmark \(mark): \(error)")
            }
        }
        old?.close()
        logger.info("listening on \(p)")
        return nil
    }

    /// Each peer's endpoint, last handshake (wall clock), and bytes, by public key.
    func liveNumbers() -> [[UInt8]: WireGuardPeerLive] {
        guard let d = dropIn else { return [:] }
        var out = d.carried
        let now = Self.now()
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let wallNs = UInt64(max(0, ts.tv_sec)) &* 1_000_000_000 &+ UInt64(max(0, ts.tv_nsec))
        let st = core.status(now: now)
        for p in st.peers {
            guard p.id.rawValue < members.count else { continue }
            let key = members[p.id.rawValue].publicKey.bytes
            var l = out[key] ?? WireGuardPeerLive()
            if let ep = p.paths.first(where: \.active)?.remote { l.endpoint = ep }
            if let s = p.session {
                l.rxBytes &+= s.counters.rxBytes
                l.txBytes &+= s.counters.txBytes
                if let h = s.lastHandshake {
                    let ago = (now - h).ns
                    let at = wallNs > ago ? wallNs - ago : 0
                    l.lastHandshake = (at / 1_000_000_000, UInt32(at % 1_000_000_000))
                }
            }
            out[key] = l
        }
        return out
    }

    static func inode(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return UInt64(st.st_ino)
    }

    static func base64(_ key: [UInt8]) -> String { PublicKey(exactly32: key).base64 }
    /// A peer's name in logs and status: the start of its base64 key, as `wg` users know peers.
    static func shortName(_ key: [UInt8]) -> String { String(base64(key).prefix(8)) }
}
