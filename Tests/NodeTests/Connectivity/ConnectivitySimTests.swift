import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// Connectivity in the simulated internet (`NetSim`): two anchors and hosts
/// behind every kind of NAT. Assertions are on behaviour with generous bounds
/// (5 s to connect, 10 s to heal); timings are printed for information only.
final class ConnectivitySimTests: XCTestCase {
    /// anchor-1, anchor-2 (public), public host, and hosts behind: full cone
    /// (EIM/EIF), restricted cone (EIM/ADF), port-restricted cone (EIM/APDF),
    /// three symmetric NATs (EDM/APDF), and two hosts sharing one
    /// port-restricted NAT (a LAN pair).
    struct World {
        let sim: NetSim
        /// Mapping behaviour per host (nil: public).
        let mapping: [NetSim.Mapping?]
        var hosts: Range<Int> { 0..<sim.hosts.count }
    }

    /// `WS_SIM_SEED` in the environment reruns every scenario with other keys,
    /// ports and jitter (a sweep: `for s in 1 2 3; do WS_SIM_SEED=$s swift test ...; done`).
    static var seed: UInt64 { ProcessInfo.processInfo.environment["WS_SIM_SEED"].flatMap { UInt64($0) } ?? 1 }

    func world(timings: ConnectivityTimings = .default) -> World {
        let sim = NetSim(timings: timings)
        sim.rng = SessionRandom(seed: 77 &+ Self.seed)
        let fullCone = sim.addNAT(.independent, .independent)
        let restricted = sim.addNAT(.independent, .address)
        let portRestricted = sim.addNAT(.independent, .addressAndPort)
        let sym1 = sim.addNAT(.dependent, .addressAndPort)
        let sym2 = sim.addNAT(.dependent, .addressAndPort)
        let sym3 = sim.addNAT(.dependent, .addressAndPort)
        let home = sim.addNAT(.independent, .addressAndPort)
        sim.build([
            .init(name: "anchor-1", anchor: true),
            .init(name: "anchor-2", anchor: true),
            .init(name: "public"),
            .init(name: "full-cone", nat: fullCone),
            .init(name: "restricted", nat: restricted),
            .init(name: "port-restricted", nat: portRestricted),
            .init(name: "symmetric-1", nat: sym1),
            .init(name: "symmetric-2", nat: sym2),
            .init(name: "symmetric-3", nat: sym3),
            .init(name: "lan-1", nat: home),
            .init(name: "lan-2", nat: home),
        ], seed: Self.seed)
        let mapping: [NetSim.Mapping?] = sim.hosts.map { h in h.nat.map { sim.nats[$0].mapping } }
        return World(sim: sim, mapping: mapping)
    }

    /// Every ordered pair sends packet `n`; returns the pairs.
    func sendAll(_ w: World, _ n: Int, among: [Int]? = nil) {
        let hosts = among ?? Array(w.hosts)
        for i in hosts { for j in hosts where i != j { w.sim.sendIP(from: i, to: j, n) } }
    }

    func allDelivered(_ w: World, _ n: Int, among: [Int]? = nil) -> [(Int, Int)] {
        let hosts = among ?? Array(w.hosts)
        var missing: [(Int, Int)] = []
        for i in hosts { for j in hosts where i != j && !w.sim.delivered(j, from: i, number: n) { missing.append((i, j)) } }
        return missing
    }

    func names(_ w: World, _ pairs: [(Int, Int)]) -> String {
        pairs.map { "\(w.sim.hosts[$0.0].name)->\(w.sim.hosts[$0.1].name)" }.joined(separator: ", ")
    }

    // MARK: Delivery under loss
    //
    // With WS_SIM_LOSS the network loses packets at random (and a relayed one
    // crosses two lossy hops), and nothing in a tunnel retransmits. The checks
    // then ask what an application that retransmits (TCP) would see: a packet
    // that must arrive is sent again every second until it does, and "nothing
    // lost" means "never three in a row lost" (a relayed packet crosses two
    // lossy hops: about 3.5% are lost at WS_SIM_LOSS=0.01, so two in a row
    // happen in a few hundred; a broken path loses every packet).

    func lossy(_ w: World) -> Bool { w.sim.network.loss > 0 }

    /// Packet `n` between every pair of `among` until each has arrived, or
    /// `within` has passed: sent once without loss, again every second for
    /// the pairs still missing it under loss. Returns the pairs still missing
    /// it and how long the last arrival took (nil: not all arrived).
    @discardableResult
    func deliverAll(_ w: World, _ n: Int, among: [Int]? = nil, within: Span) -> (missing: [(Int, Int)], took: Span?) {
        let sim = w.sim
        sendAll(w, n, among: among)
        let t0 = sim.now
        guard lossy(w) else {
            let took = sim.drive(until: { self.allDelivered(w, n, among: among).isEmpty }, within: within)
            return (allDelivered(w, n, among: among), took)
        }
        while sim.now < t0 + within {
            let missing = allDelivered(w, n, among: among)
            if missing.isEmpty { return ([], sim.now - t0) }
            let resendAt = min(sim.now + .seconds(1 as UInt64), t0 + within)
            while sim.now < resendAt, !allDelivered(w, n, among: among).isEmpty {
                sim.drive(until: min(sim.now + .milliseconds(50), resendAt))
            }
            if sim.now >= resendAt { for (i, j) in allDelivered(w, n, among: among) { sim.sendIP(from: i, to: j, n) } }
        }
        let missing = allDelivered(w, n, among: among)
        return (missing, missing.isEmpty ? sim.now - t0 : nil)
    }

    /// The last number in `range` that counts as lost from `from` to `to`:
    /// without loss any undelivered packet; under loss the last of three in a row.
    func lastLost(_ w: World, _ range: Range<Int>, from: Int, to: Int) -> Int? {
        let lost = { (k: Int) in !w.sim.delivered(to, from: from, number: k) }
        guard lossy(w) else { return range.last(where: lost) }
        return range.dropFirst(2).last { lost($0) && lost($0 - 1) && lost($0 - 2) }
    }

    /// Traffic every `every` between every pair for `span`, numbered from `first`.
    func traffic(_ w: World, from first: Int, for span: Span, every: Span = .seconds(1 as UInt64), among: [Int]? = nil) -> Int {
        var n = first
        let end = w.sim.now + span
        while w.sim.now < end {
            sendAll(w, n, among: among)
            n += 1
            w.sim.drive(for: every)
        }
        return n
    }

    // MARK: The whole matrix

    func testEveryPairConnectsConesGoDirectSymmetricPairsRelayOverBothAnchors() {
        let w = world()
        let sim = w.sim
        sim.drive(for: .seconds(12 as UInt64))  // anchors' sessions, first observations, candidates announced

        // NAT classification from the two anchors' observations.
        for i in w.hosts where !sim.hosts[i].core.isAnchor {
            let expected: NATMapping = w.mapping[i] == nil ? .none : w.mapping[i] == .dependent ? .endpointDependent : .endpointIndependent
            XCTAssertEqual(sim.status(i).nat.mapping, expected, sim.hosts[i].name)
            XCTAssertEqual(sim.status(i).nat.evidence.count, 2, sim.hosts[i].name)
        }

        // First packet of every ordered pair: delivered within 5 s.
        let t0 = sim.now
        let (firstMissing, took) = deliverAll(w, 1, within: .seconds(5 as UInt64))
        XCTAssertEqual(names(w, firstMissing), "", "undelivered first packets")
        print("connectivity: every one of \(w.hosts.count * (w.hosts.count - 1)) ordered pairs delivered its first packet after \(took.map { "\($0.milliseconds) ms" } ?? "-") (virtual)")
        let firstDelivery = w.hosts.flatMap { j in sim.hosts[j].received.filter { Self.number($0.payload) == 1 }.map { ($0.from, j, $0.at - t0) } }

        // Keep traffic flowing while punching and retries settle.
        var n = traffic(w, from: 2, for: .seconds(20 as UInt64))
        XCTAssertEqual(names(w, deliverAll(w, n, within: .seconds(3 as UInt64)).missing), "", "steady state")
        n += 1

        var relayVia: [String: Int] = [:]
        for i in w.hosts where !sim.hosts[i].core.isAnchor {
            for j in w.hosts where j != i && !sim.hosts[j].core.isAnchor {
                guard let path = sim.activePath(i, j) else { XCTFail("no path \(i)->\(j)"); continue }
                let pair = "\(sim.hosts[i].name)->\(sim.hosts[j].name)"
                switch (w.mapping[i], w.mapping[j]) {
                case (.dependent?, .dependent?):
                    XCTAssertEqual(path.kind, .relay, "symmetric <-> symmetric relays: \(pair)")
                    XCTAssertNotNil(path.via)
                    relayVia[path.viaName ?? "?", default: 0] += 1
                case (let a, let b) where a != .dependent && b != .dependent:
                    XCTAssertNotEqual(path.kind, .relay, "cone <-> cone goes direct: \(pair)")
                    // The path set: the direct path carries data and is usable,
                    // and the relay the pair started on is still in the set.
                    XCTAssertTrue(path.usable, "active direct path usable: \(pair)")
                    XCTAssertNotNil(path.lastRx, "heard over it: \(pair)")
                    XCTAssertEqual(path.local, .primary)
                    let set = sim.status(i).peers.first { $0.id == sim.pid(j) }?.paths ?? []
                    XCTAssertEqual(set.filter(\.active).count, 1, "one active path: \(pair)")
                    XCTAssertTrue(set.contains { $0.kind == .relay && !$0.active }, "the relay stays in the set: \(pair)")
                default:
                    if path.kind == .relay { relayVia[path.viaName ?? "?", default: 0] += 1 }
                }
            }
        }
        // The LAN pair talks over its LAN, never through a hairpin or a relay.
        XCTAssertEqual(sim.activePath(sim.index("lan-1"), sim.index("lan-2"))?.kind, .lan)
        XCTAssertEqual(sim.activePath(sim.index("lan-2"), sim.index("lan-1"))?.kind, .lan)
        // Relay load spreads over both anchors, and they did forward.
        XCTAssertEqual(Set(relayVia.keys), ["anchor-1", "anchor-2"], "\(relayVia)")
        for a in [0, 1] { XCTAssertGreaterThan(sim.status(a).counters["relay_forwarded_packets"] ?? 0, 0) }
        XCTAssertNotNil(sim.status(0).counters["queue_dropped"], "queue_dropped is always in the status counters")
        print("connectivity: relayed directions per anchor \(relayVia)")

        // For information: time to first packet, direct vs relayed.
        var direct: [Double] = [], relayed: [Double] = []
        for (i, j, t) in firstDelivery {
            if sim.activePath(i, j)?.kind == .relay { relayed.append(t.milliseconds) } else { direct.append(t.milliseconds) }
        }
        print("connectivity: first packet (relay first, then punch): pairs ending direct max \(direct.max() ?? 0) ms, ending relayed max \(relayed.max() ?? 0) ms")
        XCTAssertTrue(sim.hosts.allSatisfy { $0.drops.allSatisfy { $0 != .relayMismatch } })

        // Settled means settled: no path changes under steady traffic.
        let before = sim.hosts.map { $0.events.count }
        n = traffic(w, from: n, for: .seconds(30 as UInt64))
        for i in w.hosts {
            let changes = sim.hosts[i].events[before[i]...].filter { if case .pathChanged = $0.event { true } else { false } }
            XCTAssertEqual(changes.count, 0, "\(sim.hosts[i].name): \(changes.map { "\($0.at) \($0.event)" })")
        }
        for i in w.hosts {
            var drops: [String: Int] = [:]
            for d in sim.hosts[i].drops { drops[d.name, default: 0] += 1 }
            print("connectivity: \(sim.hosts[i].name) drops \(drops.sorted { $0.key < $1.key })")
        }
        print("connectivity: NAT unsolicited drops \(sim.nats.map(\.droppedUnsolicited))")
    }

    static func number(_ p: [UInt8]) -> Int { NetSim.packetNumber(p) }

    // MARK: Losing an anchor

    func testStoppingOneAnchorKeepsEveryPairUpAndWarns() {
        let w = world()
        let sim = w.sim
        sim.drive(for: .seconds(12 as UInt64))
        var n = traffic(w, from: 1, for: .seconds(15 as UInt64))
        let relayedViaOne = w.hosts.flatMap { i in w.hosts.filter { j in sim.activePath(i, j)?.viaName == "anchor-1" }.map { (i, $0) } }
        XCTAssertFalse(relayedViaOne.isEmpty, "some pairs relay through anchor-1")

        sim.stop(0)
        let stopped = sim.now
        let rest = Array(w.hosts.dropFirst())
        n = traffic(w, from: n, for: .seconds(25 as UInt64), among: rest)
        XCTAssertEqual(names(w, deliverAll(w, n, among: rest, within: .seconds(5 as UInt64)).missing), "",
                       "every pair still exchanges packets")
        for (i, j) in relayedViaOne {
            XCTAssertNotEqual(sim.activePath(i, j)?.viaName, "anchor-1", "moved off the stopped anchor")
        }
        for i in rest {
            let st = sim.status(i)
            XCTAssertEqual(st.anchors.first { $0.name == "anchor-1" }?.reachable, false, sim.hosts[i].name)
            XCTAssertTrue(st.warnings.contains { $0.contains("only one anchor is reachable") }, "\(sim.hosts[i].name): \(st.warnings)")
            if !sim.hosts[i].core.isAnchor {
                XCTAssertTrue(sim.hosts[i].events.contains { $0.at >= stopped && $0.event == .onlyOneAnchorReachable(sim.pid(1)) },
                              sim.hosts[i].name)
            }
        }
        let lost = sim.hosts[2].events.first { $0.event == .anchorUnreachable(sim.pid(0)) }.map { $0.at - stopped }
        print("connectivity: anchor-1 stopped; the public host marked it unreachable after \(lost.map { "\($0.seconds) s" } ?? "-")")
    }

    // MARK: Renumbering

    func testRenumberedNATHealsItsTunnelsWithinTenSeconds() {
        let w = world()
        let sim = w.sim
        sim.drive(for: .seconds(12 as UInt64))
        let h = sim.index("port-restricted")
        // No traffic to the anchors themselves: their view of the host must
        // move through the heal, not through data that happens to pass by.
        let peers = w.hosts.filter { $0 != h && !sim.hosts[$0].core.isAnchor }
        _ = traffic(w, from: 1, for: .seconds(15 as UInt64))
        let kinds = peers.map { sim.activePath(h, $0)?.kind }
        XCTAssertTrue(kinds.contains(.relay) && kinds.contains(.direct), "both kinds of path are exercised: \(kinds)")

        // Worst case for detection: just after the host's address probe.
        let probes = sim.sent.filter { $0.host == h && $0.type == MessageType.pathProbe.rawValue }.count
        sim.drive(until: { sim.sent.filter { $0.host == h && $0.type == MessageType.pathProbe.rawValue }.count > probes },
                  within: .seconds(10 as UInt64))
        sim.drive(for: .milliseconds(30))
        let nat = sim.hosts[h].nat!
        let t0 = sim.now
        sim.renumber(nat, to: IPAddressBytes(v4: (100, 64, 0, 77)))

        // Traffic both ways every 250 ms for 20 s.
        var sentAt: [Int: Instant] = [:]
        var k = 10_000
        while sim.now < t0 + .seconds(20 as UInt64) {
            for j in peers {
                sim.sendIP(from: h, to: j, k)
                sim.sendIP(from: j, to: h, k)
            }
            sentAt[k] = sim.now
            k += 1
            sim.drive(for: .milliseconds(250))
        }
        sim.drive(for: .seconds(2 as UInt64))
        // Healed at: the send time of the first packet after which nothing was lost, per pair and direction.
        var worst = Span.zero
        for j in peers {
            for (from, to) in [(h, j), (j, h)] {
                let lastLost = self.lastLost(w, 10_000..<k, from: from, to: to)
                let healed = lastLost.map { (sentAt[$0 + 1] ?? sim.now) - t0 } ?? .zero
                if healed > worst { worst = healed }
                XCTAssertLessThanOrEqual(healed, .seconds(10 as UInt64),
                                         "\(sim.hosts[from].name)->\(sim.hosts[to].name) healed after \(healed)")
                XCTAssertNotNil(lastLost == k - 1 ? nil : 0, "\(sim.hosts[from].name)->\(sim.hosts[to].name) never healed")
            }
        }
        XCTAssertTrue(sim.hosts[h].events.contains { if case .observedEndpointChanged = $0.event { $0.at >= t0 } else { false } })
        print("connectivity: NAT renumbered just after an address probe; every tunnel of its host healed within \(worst.seconds) s (virtual)")
    }

    func testIdleHostBehindARenumberedNATIsReachableAgainWithinTenSeconds() {
        let w = world()
        let sim = w.sim
        sim.drive(for: .seconds(12 as UInt64))
        let h = sim.index("restricted")
        let peers = w.hosts.filter { $0 != h }
        _ = traffic(w, from: 1, for: .seconds(10 as UInt64))
        sim.drive(for: .seconds(5 as UInt64))  // idle from here on
        let probes = sim.sent.filter { $0.host == h && $0.type == MessageType.pathProbe.rawValue }.count
        sim.drive(until: { sim.sent.filter { $0.host == h && $0.type == MessageType.pathProbe.rawValue }.count > probes },
                  within: .seconds(10 as UInt64))
        sim.drive(for: .milliseconds(30))
        let t0 = sim.now
        sim.renumber(sim.hosts[h].nat!, to: IPAddressBytes(v4: (100, 64, 9, 9)))
        sim.drive(until: t0 + .seconds(10 as UInt64))
        // Ten seconds later, without any traffic meanwhile: one packet each way, none lost.
        for j in peers {
            sim.sendIP(from: j, to: h, 500)
            sim.sendIP(from: h, to: j, 500)
        }
        sim.drive(for: .seconds(1 as UInt64))
        // Under loss, as an application would: what did not arrive is sent again, twice, a second apart.
        for _ in 0..<(lossy(w) ? 2 : 0) {
            for j in peers {
                if !sim.delivered(h, from: j, number: 500) { sim.sendIP(from: j, to: h, 500) }
                if !sim.delivered(j, from: h, number: 500) { sim.sendIP(from: h, to: j, 500) }
            }
            sim.drive(for: .seconds(1 as UInt64))
        }
        for j in peers {
            XCTAssertTrue(sim.delivered(h, from: j, number: 500), "\(sim.hosts[j].name) -> renumbered host")
            XCTAssertTrue(sim.delivered(j, from: h, number: 500), "renumbered host -> \(sim.hosts[j].name)")
        }
        let detected = sim.hosts[h].events.first { if case .observedEndpointChanged = $0.event { $0.at >= t0 } else { false } }
        print("connectivity: idle host noticed its NAT's renumbering after \(detected.map { ($0.at - t0).seconds } ?? -1) s")
    }

    // MARK: Port mapping

    func testAPortMappingLetsASymmetricPairGoDirect() {
        let w = world()
        let sim = w.sim
        let a = sim.index("symmetric-1"), b = sim.index("symmetric-2")
        // symmetric-1's router grants a port mapping (as UPnP-IGD would): 198.51.100.x:40000 -> the host.
        let nat = sim.hosts[a].nat!
        sim.nats[nat].forwards[40000] = sim.hosts[a].local
        let mapped = Endpoint(family: .v4, address: sim.nats[nat].publicIP, port: 40000)
        sim.hosts[a].core.addMappedEndpoint(mapped, source: .upnp, now: sim.now)
        sim.drain(a)
        sim.drive(for: .seconds(12 as UInt64))
        XCTAssertTrue(sim.status(a).endpoints.contains(.init(endpoint: mapped, source: .upnp)), "advertised, self-attested")
        XCTAssertEqual(sim.status(a).endpoints.first?.source, .local)
        let c = sim.index("symmetric-3")
        _ = traffic(w, from: 1, for: .seconds(10 as UInt64), among: [a, b, c])
        for peer in [b, c] {
            XCTAssertEqual(sim.activePath(peer, a)?.kind, .direct, "through the mapped port")
            XCTAssertEqual(sim.activePath(peer, a)?.remote, mapped)
            XCTAssertEqual(sim.activePath(a, peer)?.kind, .direct)
        }
        XCTAssertEqual(sim.activePath(b, c)?.kind, .relay, "the pair without a mapping still relays")
        XCTAssertEqual(sim.status(a).nat.mapping, .endpointDependent, "the NAT itself is still symmetric")
    }

    /// The mapping arrives while the symmetric pair has long been relayed (its
    /// direct retries backed off towards 120 s): the new signed record reaches
    /// the other member (gossip, and the records the anchors send with each
    /// introduction), and that record itself starts a direct attempt: the pair
    /// goes direct within seconds, not at the next retry.
    func testANewRecordStartsADirectAttemptAtOnce() {
        let w = world()
        let sim = w.sim
        let a = sim.index("symmetric-1"), b = sim.index("symmetric-2")
        var n = traffic(w, from: 1, for: .seconds(200 as UInt64), among: [a, b])
        XCTAssertEqual(sim.activePath(b, a)?.kind, .relay)
        let anchors = [sim.index("anchor-1"), sim.index("anchor-2")]
        XCTAssertGreaterThan(anchors.reduce(0) { $0 + (sim.status($1).counters["gossip_introduced"] ?? 0) }, 0,
                             "the anchors' introductions carried signed records")
        let punchesBefore = sim.status(b).counters["gossip_record_punches"] ?? 0

        let nat = sim.hosts[a].nat!
        sim.nats[nat].forwards[40000] = sim.hosts[a].local
        let mapped = Endpoint(family: .v4, address: sim.nats[nat].publicIP, port: 40000)
        sim.hosts[a].core.addMappedEndpoint(mapped, source: .upnp, now: sim.now)
        sim.drain(a)
        let t0 = sim.now
        func direct() -> Bool { sim.activePath(b, a)?.kind == .direct && sim.activePath(b, a)?.remote == mapped }
        while sim.now < t0 + .seconds(6 as UInt64), !direct() {
            n = traffic(w, from: n, for: .milliseconds(500), every: .milliseconds(100), among: [a, b])
        }
        XCTAssertTrue(direct(), "direct through the mapped port within 6 s of the mapping: \(String(describing: sim.activePath(b, a)))")
        XCTAssertGreaterThan(sim.status(b).counters["gossip_record_punches"] ?? 0, punchesBefore, "the record started it")
        print("connectivity: a relayed pair went direct \((sim.now - t0).seconds) s (virtual) after a port mapping was made")
    }

    /// Every session message lands on the kind of path it went over: a cone
    /// pair starts relayed and goes direct (both kinds carry some), a
    /// symmetric pair stays relayed (none direct); the kinds add up to the
    /// session's own counters (status `peers[].by_path_kind`).
    func testTrafficIsCountedByTheKindOfPathItTook() {
        let w = world()
        let sim = w.sim
        let cone1 = sim.index("full-cone"), cone2 = sim.index("restricted")
        let sym1 = sim.index("symmetric-1"), sym2 = sim.index("symmetric-2")
        _ = traffic(w, from: 1, for: .seconds(20 as UInt64), every: .milliseconds(100), among: [cone1, cone2, sym1, sym2])
        func peer(_ i: Int, _ j: Int) -> NodeStatus.Peer { sim.status(i).peers.first { $0.id == sim.pid(j) }! }
        let cone = peer(cone1, cone2)
        XCTAssertEqual(cone.paths.first?.kind, .direct)
        XCTAssertGreaterThan(cone.byPathKind.relay.txPackets, 0, "the first packets went through the relay: \(cone.byPathKind)")
        XCTAssertGreaterThan(cone.byPathKind.direct.txPackets, cone.byPathKind.relay.txPackets, "most went direct: \(cone.byPathKind)")
        XCTAssertGreaterThan(cone.byPathKind.direct.rxPackets, 0)
        let sym = peer(sym1, sym2)
        XCTAssertEqual(sym.paths.first?.kind, .relay)
        XCTAssertEqual(sym.byPathKind.direct, TrafficCount(), "nothing went direct: \(sym.byPathKind)")
        XCTAssertEqual(sym.byPathKind.lan, TrafficCount())
        // The network loses nothing: no working path may show loss (a punch
        // ping that found no answer while the NATs opened is not the path's).
        for i in [cone1, cone2, sym1, sym2] where !lossy(w) {
            for p in sim.status(i).peers where [cone1, cone2, sym1, sym2].map(sim.pid).contains(p.id) {
                for path in p.paths where path.usable {
                    XCTAssertEqual(path.loss ?? 0, 0, "\(sim.hosts[i].name) -> \(p.name): \(path.kind) \(path.remote)")
                }
            }
        }
        for p in [cone, sym] {
            let c = p.session!.counters, k = p.byPathKind
            XCTAssertEqual(k.direct.txPackets + k.lan.txPackets + k.relay.txPackets, c.txPackets, p.name)
            XCTAssertEqual(k.direct.rxBytes + k.lan.rxBytes + k.relay.rxBytes, c.rxBytes, p.name)
        }
    }

    // MARK: Upgrade

    func testARelayedPairKeepsDeliveringAcrossRekeysOfEveryHop() {
        // Each hop tags a RELAY under its session with the next hop (Wire/Relay.swift), and
        // those keys rotate with every rekey (120 s) on both hops: a packet tagged on either
        // side of a rekey still passes, on the anchor and on the member.
        let w = world()
        let sim = w.sim
        let a = sim.index("symmetric-1"), b = sim.index("symmetric-2")
        sim.drive(for: .seconds(12 as UInt64))
        let anchors = [sim.index("anchor-1"), sim.index("anchor-2")]
        func hopKeys() -> [RelayTagKey?] {
            [a, b].flatMap { m in anchors.map { sim.hosts[m].core.shardKeys(of: sim.pid($0)).relayHop.send } }
        }
        let before = hopKeys()
        XCTAssertFalse(before.contains(nil), "both members have sessions with both anchors")
        for n in 5000..<5450 {  // 450 s: three rekeys of every session
            sim.sendIP(from: a, to: b, n)
            sim.sendIP(from: b, to: a, n)
            sim.drive(for: .seconds(1 as UInt64))
        }
        sim.drive(for: .seconds(1 as UInt64))
        XCTAssertEqual(sim.activePath(a, b)?.kind, .relay)
        // Without loss nothing is lost; under loss never three in a row (a rekey
        // that broke a hop would lose every packet until the next handshake).
        for (from, to) in [(a, b), (b, a)] {
            XCTAssertNil(lastLost(w, 5000..<5450, from: from, to: to),
                         "\(sim.hosts[from].name)->\(sim.hosts[to].name): lost \((5000..<5450).filter { !sim.delivered(to, from: from, number: $0) })")
        }
        for (x, y) in zip(before, hopKeys()) { XCTAssertNotEqual(x, y, "the hop keys rotated") }
        for i in sim.hosts.indices {
            XCTAssertNil(sim.status(i).counters["relay_bad_tag"], "host \(i)")
        }
    }

    func testRelayedPairGoesDirectWhenTheNATAllowsItLater() {
        let w = world()
        let sim = w.sim
        let a = sim.index("symmetric-1"), b = sim.index("symmetric-2")
        sim.drive(for: .seconds(12 as UInt64))
        _ = traffic(w, from: 1, for: .seconds(15 as UInt64), among: [a, b])
        XCTAssertEqual(sim.activePath(a, b)?.kind, .relay)
        XCTAssertEqual(sim.activePath(b, a)?.kind, .relay)

        // symmetric-1's router is reconfigured (rebooted) as a full cone.
        let nat = sim.hosts[a].nat!
        sim.nats[nat].mapping = .independent
        sim.nats[nat].filtering = .independent
        sim.nats[nat].entries.removeAll()
        let t0 = sim.now
        var n = 1000
        let took = sim.drive(until: {
            sim.sendIP(from: a, to: b, n)
            sim.sendIP(from: b, to: a, n)
            n += 1
            return sim.activePath(a, b)?.kind == .direct && sim.activePath(b, a)?.kind == .direct
        }, within: .seconds(180 as UInt64), slice: .seconds(1 as UInt64))
        XCTAssertNotNil(took)
        // Under loss a probe reply or pong may be missing at that moment: the class settles a round later.
        sim.drive(until: { sim.status(a).nat.mapping == .endpointIndependent },
                  within: lossy(w) ? .seconds(20 as UInt64) : .milliseconds(1))
        XCTAssertEqual(sim.status(a).nat.mapping, .endpointIndependent)
        // Still delivering, directly.
        XCTAssertEqual(names(w, deliverAll(w, 99_999, among: [a, b], within: .seconds(3 as UInt64)).missing), "")
        print("connectivity: relayed pair went direct \((sim.now - t0).seconds) s after its NAT began to allow it")
    }
}
