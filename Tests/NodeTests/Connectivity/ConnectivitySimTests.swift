import XCTest
@testable import Node

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

    func world(timings: ConnectivityTimings = .default) -> World {
        let sim = NetSim(timings: timings)
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
        ])
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
        sendAll(w, 1)
        let took = sim.drive(until: { self.allDelivered(w, 1).isEmpty }, within: .seconds(5 as UInt64))
        XCTAssertEqual(names(w, allDelivered(w, 1)), "", "undelivered first packets")
        print("connectivity: every one of \(w.hosts.count * (w.hosts.count - 1)) ordered pairs delivered its first packet after \(took.map { "\($0.milliseconds) ms" } ?? "-") (virtual)")
        let firstDelivery = w.hosts.flatMap { j in sim.hosts[j].received.filter { Self.number($0.payload) == 1 }.map { ($0.from, j, $0.at - t0) } }

        // Keep traffic flowing while punching and retries settle.
        var n = traffic(w, from: 2, for: .seconds(20 as UInt64))
        sendAll(w, n)
        sim.drive(for: .seconds(2 as UInt64))
        XCTAssertEqual(names(w, allDelivered(w, n)), "", "steady state")
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
}
