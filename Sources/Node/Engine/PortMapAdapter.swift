// Port mapping on startup (DESIGN §5; docs/connectivity.md "Port mapping"):
// ask the default gateway to forward a public UDP port to our listening port,
// with PCP (RFC 6887, our own sans-IO client), NAT-PMP (RFC 6886, libnatpmp)
// and UPnP-IGD (libminiupnpc), in the configured order; the first that maps wins.
//
//   worker thread "wsportmap" (blocking I/O: never a reactor)
//     /proc/net/route ─▶ gateway ─▶ PCP (GatewaySocket + PCPClient) ─▶ NAT-PMP ─▶ UPnP
//        │ mapped / lost, counters                  renew at ½ lifetime; epoch; gateway change
//        ▼
//   lane 0's mailbox ─▶ Daemon.portMapUpdate ─▶ NodeCore.addMappedEndpoint / removeMappedEndpoint
//                                              (a self-attested candidate: source pcp|natpmp|upnp)
//
// `stop()` (SIGTERM, Daemon.shutdown) asks the worker to delete the mapping
// (PCP and NAT-PMP: lifetime 0; UPnP: DeletePortMapping) and waits for it a
// bounded time: a dead gateway never holds up the exit for long.
import Support
import Wire
import Crypto
import Protocol
import Config
import Reactor
import CMiniUPnPc
import CNATPMP
import Atomics
import Foundation
import Logging

/// What the worker hands lane 0.
enum PortMapUpdate: Sendable {
    case mapped(Endpoint, EndpointSource)
    case lost(Endpoint)
    case counters([String: UInt64])
}

final class PortMapAdapter: @unchecked Sendable {
    /// Pacing the worker uses besides `PortMapTimings` (PCP's retransmission and lifetimes).
    struct Pacing {
        /// After every protocol failed: ask again this much later (or at once when the gateway changes).
        var retryAfterFailure = Span.seconds(UInt64(300))
        /// How often the default route is re-read.
        var gatewayCheck = Span.seconds(UInt64(10))
        /// NAT-PMP: give up on an answer after this long (libnatpmp itself would retry for a minute).
        var natpmpWait = Span.milliseconds(1750)
        /// UPnP: SSDP discovery wait, milliseconds.
        var upnpDiscoverMs: Int32 = 1000
        /// At shutdown: the longest the daemon waits for the delete.
        var stopWait = Span.milliseconds(2000)
    }

    let protocols: [PortMappingProtocol]
    let port: UInt16
    let timings: PortMapTimings
    let pacing: Pacing
    var logger: Logger
    /// Runs on lane 0 (through its mailbox).
    private let deliver: @Sendable (PortMapUpdate) -> Void
    private let stopFlag = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?

    // Worker-thread state.
    private var counters: [String: UInt64] = [:]
    private var active: Active?
    private var nextAttempt = Instant.zero
    private var gateway: SocketAddress?
    private var nextGatewayCheck = Instant.zero

    /// The mapping in force and how to keep it.
    private enum Active {
        case pcp(PCPClient, GatewaySocket, external: Endpoint?)
        case natpmp(external: Endpoint, renewAt: Instant, epoch: (server: UInt32, at: Instant))
        case upnp(UPnPMapping, renewAt: Instant)
    }

    init(protocols: [PortMappingProtocol], port: UInt16, timings: PortMapTimings = .default, pacing: Pacing = Pacing(),
         logger: Logger, deliver: @escaping @Sendable (PortMapUpdate) -> Void) {
        self.protocols = protocols
        self.port = port
        self.timings = timings
        self.pacing = pacing
        self.logger = logger
        self.deliver = deliver
    }

    func start() {
        let t = Thread { [self] in
            setThreadName("wsportmap")
            self.loop()
            self.finished.signal()
        }
        t.name = "wsportmap"
        thread = t
        t.start()
    }

    /// Deletes the mapping and ends the worker; waits at most `pacing.stopWait`.
    func stop() {
        guard thread != nil else { return }
        stopFlag.store(true, ordering: .releasing)
        if finished.wait(timeout: .now() + pacing.stopWait.seconds) == .timedOut {
            logger.notice("portmap: the gateway did not confirm the delete in time; the mapping expires on its own")
        }
        thread = nil
    }

    private var stopping: Bool { stopFlag.load(ordering: .acquiring) }
    private static func now() -> Instant { Instant(ns: Reactor.now()) }

    // MARK: The worker

    private func loop() {
        while !stopping {
            let now = Self.now()
            if now >= nextGatewayCheck { checkGateway(now) }
            if active == nil, let gw = gateway, now >= nextAttempt {
                attempt(gw)
                publish()
                continue
            }
            var wait = nextGatewayCheck - now
            switch active {
            case .pcp(var c, let sock, let ext)?:
                if let (d, _) = c.pollTimeout() { wait = min(wait, d - now) }
                if let bytes = sock.receive(timeoutMs: Int32(min(wait, .milliseconds(500)).milliseconds)) {
                    c.handle(bytes, now: Self.now())
                } else {
                    c.handleTimeout(now: Self.now())
                }
                active = .pcp(c, sock, external: ext)
                drivePCP()
                publish()
            case .natpmp(_, let renewAt, _)?:
                if now >= renewAt { renewNATPMP() } else { sleep(min(wait, renewAt - now)) }
            case .upnp(_, let renewAt)?:
                if now >= renewAt { renewUPnP() } else { sleep(min(wait, renewAt - now)) }
            case nil:
                if gateway != nil { wait = min(wait, nextAttempt - now) }
                sleep(wait)
            }
        }
        removeMapping()
        publish()
    }

    /// Sleeps in slices so `stop()` is noticed within 100 ms.
    private func sleep(_ span: Span) {
        let end = Self.now() + span
        while !stopping, Self.now() < end {
            usleep(UInt32(min(100_000, max(1_000, (end - Self.now()).ns / 1000))))
        }
    }

    private func checkGateway(_ now: Instant) {
        nextGatewayCheck = now + pacing.gatewayCheck
        let gw = DefaultGateway.ipv4()
        guard gw.map(Endpoint.init) != gateway.map(Endpoint.init) else { return }
        if let old = gateway { logger.info("portmap: default gateway changed from \(Endpoint(old).addressText) to \(gw.map { Endpoint($0).addressText } ?? "none")") }
        if active != nil {
            count("portmap_gateway_changed")
            drop()  // the old gateway is out of reach: its mapping cannot be deleted, it expires
        }
        gateway = gw
        nextAttempt = now
    }

    /// Each configured protocol in turn, until one maps.
    private func attempt(_ gw: SocketAddress) {
        var why: [String] = []
        for p in protocols where !stopping {
            let r: String?
            switch p {
            case .pcp: r = tryPCP(gw)
            case .natpmp: r = tryNATPMP(gw)
            case .upnp: r = tryUPnP()
            }
            if active != nil { return }
            why.append("\(p.rawValue): \(r ?? "no mapping")")
        }
        count("portmap_unavailable")
        logger.notice("portmap: no port mapping through \(Endpoint(gw).addressText) (\(why.joined(separator: "; "))); asking again in \(Int(pacing.retryAfterFailure.seconds)) s")
        nextAttempt = Self.now() + pacing.retryAfterFailure
    }

    private func mapped(_ e: Endpoint, _ source: EndpointSource, lifetime: Span) {
        count("portmap_\(source.name)_mapped")
        logger.info("portmap: \(source.name) mapped \(e) -> port \(port) for \(Int(lifetime.seconds)) s")
        deliver(.mapped(e, source))
    }

    private func lost(_ e: Endpoint) {
        logger.info("portmap: mapping \(e) withdrawn")
        deliver(.lost(e))
    }

    /// Forget the active mapping (announce it lost) and look again soon.
    private func drop() {
        switch active {
        case .pcp(_, _, let ext?)?: lost(ext)
        case .natpmp(let ext, _, _)?: lost(ext)
        case .upnp(let m, _)?: lost(m.external)
        default: break
        }
        active = nil
        nextAttempt = Self.now()
    }

    private func count(_ name: String) { counters[name, default: 0] &+= 1 }

    private func publish() {
        var all = counters
        if case .pcp(let c, _, _)? = active { for (k, v) in c.counters { all[k, default: 0] &+= v } }
        deliver(.counters(all.merging(pcpCounters) { $0 + $1 }))
    }

    /// Counters of PCP clients no longer active.
    private var pcpCounters: [String: UInt64] = [:]

    // MARK: PCP

    private func tryPCP(_ gw: SocketAddress) -> String? {
        var g = gw
        g.port = PCP.serverPort
        let sock: GatewaySocket
        do { sock = try GatewaySocket(gateway: g) } catch { return "\(error)" }
        let me = Endpoint(sock.local)
        var c = PCPClient(gateway: Endpoint(g), client: Endpoint(family: me.family, address: me.address, port: 0),
                          internalPort: port, nonce: Sodium.randomBytes(12), timings: timings)
        c.start(now: Self.now())
        active = .pcp(c, sock, external: nil)
        // Until mapped or unavailable (at most ~1.75 s of retransmissions).
        while !stopping, case .pcp(var c, let s, let ext)? = active, ext == nil {
            while let b = c.pollTransmit() { s.send(b) }
            if case .unavailable = c.state { break }
            guard let (d, _) = c.pollTimeout() else { break }
            let now = Self.now()
            if let bytes = s.receive(timeoutMs: Int32(max(1, (d - now).milliseconds))) {
                c.handle(bytes, now: Self.now())
            } else {
                c.handleTimeout(now: Self.now())
            }
            active = .pcp(c, s, external: ext)
            if let why = drivePCP() { return why }
        }
        if case .pcp(_, _, nil)? = active {
            retirePCP()
            return "stopped"
        }
        return nil
    }

    /// Sends what the client wants sent and acts on its events; the reason when it became unavailable.
    @discardableResult
    private func drivePCP() -> String? {
        guard case .pcp(var c, let s, var ext)? = active else { return nil }
        while let b = c.pollTransmit() { s.send(b) }
        var gone: String?
        while let e = c.pollEvent() {
            switch e {
            case .mapped(let x, let lifetime):
                ext = x
                mapped(x, .pcp, lifetime: lifetime)
            case .lost(let x):
                ext = nil
                lost(x)
            case .unavailable(let reason):
                gone = reason
            }
        }
        active = .pcp(c, s, external: ext)
        if let gone {
            retirePCP()
            nextAttempt = Self.now()
            return gone
        }
        return nil
    }

    private func retirePCP() {
        if case .pcp(let c, _, _)? = active { for (k, v) in c.counters { pcpCounters[k, default: 0] &+= v } }
        active = nil
    }

    // MARK: NAT-PMP (libnatpmp)

    /// One request/answer exchange; libnatpmp retransmits (250 ms doubling), we stop at `pacing.natpmpWait`.
    private func natpmpExchange(_ n: inout natpmp_t, _ send: (inout natpmp_t) -> Int32) -> natpmpresp_t? {
        guard send(&n) >= 0 else { return nil }
        let end = Self.now() + pacing.natpmpWait
        var resp = natpmpresp_t()
        while !stopping, Self.now() < end {
            var tv = timeval()
            _ = getnatpmprequesttimeout(&n, &tv)
            let ms = min(Int64(tv.tv_sec) * 1000 + Int64(tv.tv_usec) / 1000, Int64((end - Self.now()).milliseconds))
            _ = GatewaySocket.waitReadable(n.s, timeoutMs: Int32(max(1, ms)))
            let r = readnatpmpresponseorretry(&n, &resp)
            if r == NATPMP_TRYAGAIN { continue }
            if r < 0 {
                count("natpmp_error_\(-r)")
                return nil
            }
            return resp
        }
        return nil
    }

    /// Public address, then the mapping. Nil and why when it failed.
    private func natpmpMap(_ gw: SocketAddress, lifetime: UInt32) -> (Endpoint, UInt32, UInt32)? {
        let v4 = Endpoint(gw)
        guard v4.family == .v4 else { return nil }
        var n = natpmp_t()
        let gwAddr = in_addr_t(UInt32(v4.address[0]) | UInt32(v4.address[1]) << 8 | UInt32(v4.address[2]) << 16 | UInt32(v4.address[3]) << 24)
        guard initnatpmp(&n, 1, gwAddr) == 0 else { return nil }
        defer { _ = closenatpmp(&n) }
        guard let pub = natpmpExchange(&n, { sendpublicaddressrequest(&$0) }), pub.type == NATPMP_RESPTYPE_PUBLICADDRESS else {
            return nil
        }
        let a = UInt32(bigEndian: pub.pnu.publicaddress.addr.s_addr)
        let port = self.port
        guard let m = natpmpExchange(&n, { sendnewportmappingrequest(&$0, NATPMP_PROTOCOL_UDP, port, port, lifetime) }),
              m.type == NATPMP_RESPTYPE_UDPPORTMAPPING else { return nil }
        let ext = Endpoint.v4(UInt8(a >> 24), UInt8((a >> 16) & 0xff), UInt8((a >> 8) & 0xff), UInt8(a & 0xff),
                              port: m.pnu.newportmapping.mappedpublicport)
        return (ext, m.pnu.newportmapping.lifetime, m.epoch)
    }

    /// RFC 6886 §3.4: lifetime 0 and suggested external port 0 delete our mapping of `port`.
    private func natpmpDelete(_ gw: SocketAddress) {
        let v4 = Endpoint(gw)
        var n = natpmp_t()
        let gwAddr = in_addr_t(UInt32(v4.address[0]) | UInt32(v4.address[1]) << 8 | UInt32(v4.address[2]) << 16 | UInt32(v4.address[3]) << 24)
        guard v4.family == .v4, initnatpmp(&n, 1, gwAddr) == 0 else { return }
        defer { _ = closenatpmp(&n) }
        let port = self.port
        _ = natpmpExchange(&n, { sendnewportmappingrequest(&$0, NATPMP_PROTOCOL_UDP, port, 0, 0) })
    }

    private func tryNATPMP(_ gw: SocketAddress) -> String? {
        guard let (ext, lifetime, epoch) = natpmpMap(gw, lifetime: timings.requestedLifetime) else { return "no answer or an error" }
        guard PortMapRules.isUsableExternal(ext), lifetime > 0 else {
            count("natpmp_bad_external")
            return "mapped to \(ext), which nobody outside can reach"
        }
        let now = Self.now()
        active = .natpmp(external: ext, renewAt: now + .seconds(UInt64(max(lifetime, timings.minimumLifetime) / 2)), epoch: (epoch, now))
        mapped(ext, .natpmp, lifetime: .seconds(UInt64(lifetime)))
        return nil
    }

    private func renewNATPMP() {
        guard case .natpmp(let old, _, let epoch)? = active, let gw = gateway else { return }
        count("natpmp_renew")
        guard let (ext, lifetime, e) = natpmpMap(gw, lifetime: timings.requestedLifetime), PortMapRules.isUsableExternal(ext), lifetime > 0 else {
            count("natpmp_renew_failed")
            drop()
            return
        }
        let now = Self.now()
        if PortMapRules.epochLost(previousServer: epoch.server, previousClient: epoch.at, server: e, now: now) {
            count("natpmp_gateway_restarted")  // the renewal re-created the mapping; only its address may be new
        }
        active = .natpmp(external: ext, renewAt: now + .seconds(UInt64(max(lifetime, timings.minimumLifetime) / 2)), epoch: (e, now))
        if ext != old {
            lost(old)
            mapped(ext, .natpmp, lifetime: .seconds(UInt64(lifetime)))
        }
        publish()
    }

    // MARK: UPnP-IGD (libminiupnpc)

    private func tryUPnP() -> String? {
        guard let m = UPnPMapping.add(port: port, lifetime: timings.requestedLifetime, discoverMs: pacing.upnpDiscoverMs) else {
            return "no Internet gateway device answered, or it refused the mapping"
        }
        guard PortMapRules.isUsableExternal(m.external) else {
            count("upnp_bad_external")
            m.delete()
            return "mapped to \(m.external), which nobody outside can reach"
        }
        active = .upnp(m, renewAt: Self.now() + .seconds(UInt64(timings.requestedLifetime / 2)))
        mapped(m.external, .upnp, lifetime: .seconds(UInt64(timings.requestedLifetime)))
        return nil
    }

    /// UPnP has no epoch: a renewal adds the mapping again, which also re-creates it after a gateway restart.
    private func renewUPnP() {
        guard case .upnp(let m, _)? = active else { return }
        count("upnp_renew")
        guard m.renew(lifetime: timings.requestedLifetime) else {
            count("upnp_renew_failed")
            drop()
            return
        }
        active = .upnp(m, renewAt: Self.now() + .seconds(UInt64(timings.requestedLifetime / 2)))
        publish()
    }

    // MARK: Shutdown

    private func removeMapping() {
        switch active {
        case .pcp(var c, let s, let ext)?:
            c.stop(now: Self.now())
            while let b = c.pollTransmit() { s.send(b) }
            let end = Self.now() + .milliseconds(1000)
            while case .deleting = c.state, Self.now() < end {
                if let bytes = s.receive(timeoutMs: 250) { c.handle(bytes, now: Self.now()) } else { c.handleTimeout(now: Self.now()) }
                while let b = c.pollTransmit() { s.send(b) }
            }
            active = .pcp(c, s, external: ext)
            count("portmap_deleted")
        case .natpmp(let ext, _, _)?:
            if let gw = gateway { natpmpDelete(gw) }
            count("portmap_deleted")
            lost(ext)
        case .upnp(let m, _)?:
            m.delete()
            count("portmap_deleted")
            lost(m.external)
        case nil: break
        }
        if case .pcp? = active { retirePCP() }
        active = nil
    }
}

/// One UPnP-IGD port mapping (libminiupnpc: SSDP discovery, then SOAP to the IGD's control URL).
final class UPnPMapping: @unchecked Sendable {
    private var urls = UPNPUrls()
    private var data = IGDdatas()
    let lanAddress: String
    let external: Endpoint
    let port: UInt16

    private init(urls: UPNPUrls, data: IGDdatas, lanAddress: String, external: Endpoint, port: UInt16) {
        self.urls = urls
        self.data = data
        self.lanAddress = lanAddress
        self.external = external
        self.port = port
    }

    deinit { FreeUPNPUrls(&urls) }

    private var serviceType: String {
        withUnsafeBytes(of: data.first.servicetype) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }

    /// Discovers the IGD, reads its external address and maps external `port` (UDP) to ours.
    static func add(port: UInt16, lifetime: UInt32, discoverMs: Int32) -> UPnPMapping? {
        var err: Int32 = 0
        guard let devs = upnpDiscover(discoverMs, nil, nil, 0, 0, 2, &err) else { return nil }
        defer { freeUPNPDevlist(devs) }
        var urls = UPNPUrls(), data = IGDdatas()
        var lan = [CChar](repeating: 0, count: 64)
        // 1: a connected IGD. Anything else (not connected, a UPnP device that is no IGD) maps nothing useful.
        guard UPNP_GetValidIGD(devs, &urls, &data, &lan, Int32(lan.count)) == 1 else {
            FreeUPNPUrls(&urls)
            return nil
        }
        let lanAddress = String(cString: lan)
        let m = UPnPMapping(urls: urls, data: data, lanAddress: lanAddress, external: Endpoint.v4(0, 0, 0, 0, port: 0), port: port)
        var ext = [CChar](repeating: 0, count: 64)
        guard UPNP_GetExternalIPAddress(m.urls.controlURL, m.serviceType, &ext) == 0,
              let ip = Endpoint("\(String(cString: ext)):\(port)") else { return nil }
        let mapped = UPnPMapping(urls: m.urls, data: m.data, lanAddress: lanAddress, external: ip, port: port)
        m.urls = UPNPUrls()  // ownership moved to `mapped`
        guard mapped.renew(lifetime: lifetime) else { return nil }
        return mapped
    }

    /// AddPortMapping again (a renewal; also re-creates it after the gateway restarted).
    func renew(lifetime: UInt32) -> Bool {
        UPNP_AddPortMapping(urls.controlURL, serviceType, "\(external.port)", "\(port)", lanAddress, "whalescale", "UDP", nil, "\(lifetime)") == 0
    }

    func delete() {
        _ = UPNP_DeletePortMapping(urls.controlURL, serviceType, "\(external.port)", "UDP", nil)
    }
}
