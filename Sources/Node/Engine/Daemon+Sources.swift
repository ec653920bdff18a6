// The daemon's sources beside the packet path, each on lane 0's reactor or on a
// worker thread whose results come back through a mailbox into lane 0:
// uplinks (the routing table, re-read on netlink changes), port mapping
// (PortMapAdapter.swift) and LAN discovery (LanAdapter.swift).
import Support
import Protocol
import Config
import Foundation
import Reactor

extension Daemon {
    /// `[node] uplinks`, or every interface with a route to the outside: at
    /// start, and again 500 ms after the kernel reports a change of links,
    /// addresses or routes. Only listed today: the kernel still picks the
    /// interface of every datagram.
    func findUplinks() {
        kernelRoutes = Uplinks.readRoutes()
        uplinks = Uplinks.merge([], resolveUplinks())
        let names = uplinks.compactMap { $0?.name }.joined(separator: ", ")
        if config.node.uplinks == nil {
            logger.info("uplinks: \(names.isEmpty ? "none" : names) (interfaces with a route to the outside; the kernel's routing picks one per datagram)")
        } else {
            logger.info("uplinks: \(names) (node.uplinks; the kernel's routing picks one per datagram)")
        }
        for case let u? in uplinks where !Uplinks.present(u.name) {
            logger.notice("uplinks: \(u.name) does not exist (yet)")
        }
        do {
            routeMonitor = try RouteMonitor(reactor: reactor) { [unowned self] in self.routesChanged() }
        } catch {
            logger.notice("uplinks: no netlink route monitor (\(error)); uplinks are read at start only")
        }
    }

    func resolveUplinks() -> [Uplink] {
        Uplinks.resolve(configured: config.node.uplinks, routes: kernelRoutes, tunnel: tun.name, limit: NodeConfig.maxUplinks)
    }

    /// A burst of netlink messages (an interface going up brings its address and
    /// routes; a router's table churns) becomes one re-read, 500 ms after the first.
    func routesChanged() {
        guard uplinkTimer == nil else { return }
        uplinkTimer = reactor.addTimer(after: 500_000_000) { [unowned self] in
            self.uplinkTimer = nil
            self.kernelRoutes = Uplinks.readRoutes()
            self.mtuUplinksChanged(now: Self.now())
            let merged = Uplinks.merge(self.uplinks, self.resolveUplinks())
            guard merged != self.uplinks else { return }
            let text = { (u: [Uplink?]) in u.enumerated().compactMap { i, x in x.map { "\(i):\($0.name)" } }.joined(separator: ", ") }
            self.logger.info("uplinks: now \(text(merged).isEmpty ? "none" : text(merged)) (were \(text(self.uplinks).isEmpty ? "none" : text(self.uplinks)))")
            self.uplinks = merged
        }
    }

    /// Starts the port-mapping worker; its results come back through a mailbox into lane 0.
    func startPortMapping(port: UInt16) {
        guard !config.node.portMapping.isEmpty else { return }
        let mailbox = reactor.makeMailbox(capacity: 256)
        let adapter = PortMapAdapter(protocols: config.node.portMapping, port: port, logger: logger) { [unowned self] update in
            mailbox.post { self.portMapUpdate(update) }
        }
        portMap = adapter
        adapter.start()
    }

    /// On lane 0: a mapped endpoint becomes a self-attested candidate (announced to anchors, used for punching).
    func portMapUpdate(_ u: PortMapUpdate) {
        let now = Self.now()
        switch u {
        case .mapped(let e, let source): core.addMappedEndpoint(e, source: source, now: now)
        case .lost(let e): core.removeMappedEndpoint(e, now: now)
        case .counters(let c):
            portMapCounters = c
            return
        }
        service(now: now)
    }

    /// Starts the LAN discovery worker; what it finds comes back through a mailbox into lane 0.
    func startLanDiscovery(port: UInt16) {
        guard config.node.lanDiscovery else { return }
        let mailbox = reactor.makeMailbox(capacity: 256)
        // The announcement's sequence starts at the wall clock's milliseconds: a restarted
        // node continues above its last run (peers refuse a lower one as stale).
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let first = UInt64(max(0, ts.tv_sec)) &* 1000 &+ UInt64(max(0, ts.tv_nsec) / 1_000_000)
        let adapter = LanAdapter(identity: identity, members: members.map(\.publicKey), port: port, tunName: tun.name,
                                 firstSequence: first, logger: logger) { [unowned self] update in
            mailbox.post { self.lanUpdate(update) }
        }
        lan = adapter
        adapter.start()
    }

    /// On lane 0: a member's signed LAN announcement becomes a `lan` endpoint (NodeCore punches it).
    func lanUpdate(_ u: LanUpdate) {
        switch u {
        case .discovered(let p, let ep):
            let now = Self.now()
            core.addLanEndpoint(p, ep, now: now)
            service(now: now)
        case .counters(let c):
            lanCounters = c
        }
    }
}
