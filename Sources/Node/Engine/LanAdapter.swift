// LAN discovery (DESIGN §5, seed 2.7; docs/connectivity.md "LAN discovery"):
// signed mDNS announcements on 224.0.0.251:5353 and [ff02::fb]:5353, so members on one LAN reach
// each other directly, never through the router's hairpin.
//
//   worker thread "wslan" (blocking receive with a short timeout: never a reactor)
//     interfaces (getifaddrs, every 10 s) ─▶ join 224.0.0.251 / ff02::fb on each, LanDiscovery.setAddresses
//     MulticastSocket ×2 (Reactor: IPv4, IPv6) ─▶ LanDiscovery.handle ─▶ pollTransmit ─▶ both groups, on every LAN interface
//        │ discovered(member, endpoint), counters
//        ▼
//   lane 0's mailbox ─▶ Daemon.lanUpdate ─▶ NodeCore.addLanEndpoint (EndpointBook source `lan`, punch)
//
// `stop()` ends the worker within ~100 ms, after it multicast the goodbye (TTL 0).
// IPv6: a second socket ([::]:5353, IPV6_V6ONLY) joins ff02::fb on every interface
// with an IPv6 address; the announcement carries AAAA records for those addresses
// (link-local included: the kernel sends link-scope multicast from the link-local
// address, so that is the source a receiver checks). If the kernel refuses the IPv6
// socket, IPv4 goes on alone (logged once, counter `lan_socket6_failed`).
import Support
import Wire
import Crypto
import Protocol
import Reactor
import Atomics
import Foundation
import Logging

/// What the worker hands lane 0.
enum LanUpdate: Sendable {
    case discovered(PeerID, Endpoint)
    case counters([String: UInt64])
}

final class LanAdapter: @unchecked Sendable {
    /// How often the interface list is read again (a new LAN address is announced then).
    static let interfaceCheck = Span.seconds(UInt64(10))

    private let identity: Identity
    private let members: [PublicKey]
    private let port: UInt16
    private let tunName: String
    private let timings: LanTimings
    var logger: Logger
    private let deliver: @Sendable (LanUpdate) -> Void
    private let stopFlag = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?

    // Worker-thread state.
    private var socket: MulticastSocket?
    private var socket6: MulticastSocket?
    /// Interfaces where joining ff02::fb failed (logged once each).
    private var refused6: Set<UInt32> = []
    /// Counters of the adapter itself, published with the machine's.
    private var own: [String: UInt64] = [:]
    private var machine: LanDiscovery
    private var nextInterfaceCheck = Instant.zero
    private var published = LanCounters()
    private var publishedAt = Instant.zero
    /// Counters go to lane 0 at most this often: a flood on 5353 must not fill
    /// the mailbox (it drops when full) and crowd out a discovery.
    static let publishInterval = Span.milliseconds(250)
    private var announced: Set<PeerID> = []

    init(identity: Identity, members: [PublicKey], port: UInt16, tunName: String, firstSequence: UInt64,
         timings: LanTimings = .default, logger: Logger, deliver: @escaping @Sendable (LanUpdate) -> Void) {
        self.identity = identity
        self.members = members
        self.port = port
        self.tunName = tunName
        self.timings = timings
        self.logger = logger
        self.deliver = deliver
        let seed = Sodium.randomBytes(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        machine = LanDiscovery(identity: identity, members: members, port: port, firstSequence: firstSequence,
                               timings: timings, seed: seed)
    }

    /// Opens the mDNS socket and starts the worker. A socket the kernel refuses
    /// (another program holds 5353 without SO_REUSEPORT) is logged once and LAN
    /// discovery stays off; the node works without it.
    func start() {
        do {
            socket = try MulticastSocket()
        } catch {
            logger.notice("lan: no mDNS socket on port \(MDNS.port) (\(error)); LAN discovery is off")
            deliver(.counters(["lan_socket_failed": 1]))
            return
        }
        do {
            socket6 = try MulticastSocket(v6: true)
        } catch {
            logger.notice("lan: no IPv6 mDNS socket on [::]:\(MDNS.port) (\(error)); LAN discovery is IPv4 only")
            own["lan_socket6_failed"] = 1
            deliver(.counters(own))
        }
        let t = Thread { [self] in
            setThreadName("wslan")
            self.loop()
            self.finished.signal()
        }
        t.name = "wslan"
        thread = t
        t.start()
    }

    func stop() {
        guard thread != nil else { return }
        stopFlag.store(true, ordering: .releasing)
        _ = finished.wait(timeout: .now() + 1.0)
        thread = nil
    }

    private var stopping: Bool { stopFlag.load(ordering: .acquiring) }
    private static func now() -> Instant { Instant(ns: Reactor.now()) }

    // MARK: The worker

    private func loop() {
        guard let sock = socket else { return }
        let sockets = [sock] + (socket6.map { [$0] } ?? [])
        while !stopping {
            var now = Self.now()
            if now >= nextInterfaceCheck { checkInterfaces(sock, now) }
            var wait = Span.milliseconds(100)  // stop() is noticed within this
            if let (d, _) = machine.pollTimeout() { wait = d > now ? min(wait, d - now) : .zero }
            if let (bytes, from) = MulticastSocket.receive(from: sockets, timeoutMs: Int32(wait.milliseconds)) {
                now = Self.now()
                machine.handle(bytes, from: Endpoint(from), now: now)
            }
            machine.handleTimeout(now: Self.now())
            drain(sock)
        }
        machine.stop()
        drain(sock)  // the goodbye
        socket = nil
        socket6 = nil
    }

    /// Joins the groups on new interface addresses (IPv4) and interfaces (IPv6), leaves them on gone
    /// ones, and tells the machine: IPv4 first, then IPv6 link-local, then IPv6 global/ULA.
    private func checkInterfaces(_ sock: MulticastSocket, _ now: Instant) {
        nextInterfaceCheck = now + Self.interfaceCheck
        let v4 = LocalAddresses.list(excluding: tunName).filter { $0.family == .v4 }
            .map { Endpoint(family: .v4, address: $0.address, port: 0) }
        for gone in sock.joined where !v4.contains(Endpoint(gone)) { sock.leave(interfaceAddress: gone) }
        var joined: [Endpoint] = []
        for e in v4 {
            if let err = sock.join(interfaceAddress: e.socketAddress) {
                logger.notice("lan: cannot join 224.0.0.251 on \(e.addressText): \(err)")
            } else {
                joined.append(e)
            }
        }
        joined += checkInterfacesV6()
        if case .idle = machine.state {
            machine.start(addresses: joined, now: now)
            logger.info("lan: announcing \(joined.map(\.addressText).joined(separator: ", ")) port \(port) as _whalescale._udp.local")
        } else {
            machine.setAddresses(joined, now: now)
        }
        drain(sock)
    }

    /// The IPv6 addresses to announce: those of the interfaces that joined ff02::fb.
    private func checkInterfacesV6() -> [Endpoint] {
        guard let sock6 = socket6 else { return [] }
        let v6 = LocalAddresses.listV6(excluding: tunName)
        let indexes = Set(v6.map(\.index))
        for gone in sock6.joinedIndexes where !indexes.contains(gone) { sock6.leave(interfaceIndex: gone) }
        for i in indexes.sorted() {
            if let err = sock6.join(interfaceIndex: i) {
                if refused6.insert(i).inserted { logger.notice("lan: cannot join ff02::fb on interface \(i): \(err)") }
            }
        }
        let ok = v6.filter { sock6.joinedIndexes.contains($0.index) }
            .map { Endpoint(family: .v6, address: $0.address, port: 0) }
        return ok.filter { LanDiscovery.isLinkLocal($0) } + ok.filter { !LanDiscovery.isLinkLocal($0) }
    }

    private func drain(_ sock: MulticastSocket) {
        while let t = machine.pollTransmit() {
            switch t {
            case .group(let bytes):
                for a in sock.joined { sock.sendToGroup(bytes, via: a) }
                if let sock6 = socket6 {
                    for i in sock6.joinedIndexes { sock6.sendToGroup(bytes, interfaceIndex: i) }
                }
            }
        }
        while let e = machine.pollEvent() {
            switch e {
            case .discovered(let p, let ep, let seq):
                if announced.insert(p).inserted {
                    logger.info("lan: member #\(p.rawValue) announced itself at \(ep) (sequence \(seq))")
                }
                deliver(.discovered(p, ep))
            }
        }
        let now = Self.now()
        if machine.counters != published, now - publishedAt >= Self.publishInterval {
            published = machine.counters
            publishedAt = now
            var c: [String: UInt64] = own
            for (k, v) in published.named { c[k] = v }
            deliver(.counters(c))
        }
    }
}
