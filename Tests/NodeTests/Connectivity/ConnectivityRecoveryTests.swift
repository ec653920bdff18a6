import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// Recovery mode, the partition report and the endpoint cache, in NetSim.
final class ConnectivityRecoveryTests: XCTestCase {
    /// anchor-1, anchor-2, a host behind a full cone, and a public peer it talks to.
    func world() -> (NetSim, host: Int, peer: Int) {
        let sim = NetSim()
        let nat = sim.addNAT(.independent, .independent)
        sim.build([
            .init(name: "anchor-1", anchor: true),
            .init(name: "anchor-2", anchor: true),
            .init(name: "host", nat: nat),
            .init(name: "peer"),
        ])
        return (sim, 2, 3)
    }

    func testBackoffAnchorsFirstThenCachedEndpointsThenPartitionedThenRecovered() {
        let (sim, h, p) = world()
        sim.drive(for: .seconds(12 as UInt64))
        for k in 0..<10 {
            sim.sendIP(from: h, to: p, k)
            sim.sendIP(from: p, to: h, k)
            sim.drive(for: .seconds(1 as UInt64))
        }
        XCTAssertNotEqual(sim.activePath(h, p)?.kind, .relay)
        // The peer's endpoint is in the cache the engine would persist.
        let cache = EndpointCache(bytes: sim.hosts[h].core.endpointCacheBytes())
        let peerEndpoint = sim.hosts[p].local
        XCTAssertEqual(cache?.endpoints(for: sim.hosts[p].identity.publicKey).first, peerEndpoint)
        XCTAssertTrue(sim.events(h).contains(.endpointCacheChanged))

        // Everything the host knows goes away.
        sim.stop(0)
        sim.stop(1)
        sim.stop(p)
        let lost = sim.now
        sim.sendIP(from: h, to: p, 100)  // unanswered traffic: the peer's session no longer counts
        // Idle, the peer's session counts as a path until its keys expire (≤ 180 s).
        sim.drive(until: { self.started(sim, h) != nil }, within: .seconds(200 as UInt64))
        guard let start = started(sim, h) else { return }
        print("recovery: entered \((start - lost).seconds) s after every path was lost")

        sim.drive(for: .seconds(300 as UInt64))
        let probes = sim.sent.filter { $0.host == h && $0.at >= start && $0.type == MessageType.pathProbe.rawValue }
        // Group the probes into attempts (one attempt's probes leave together).
        var attempts: [[NetSim.Sent]] = []
        for s in probes {
            if let last = attempts.last?.last, s.at - last.at < .milliseconds(100) { attempts[attempts.count - 1].append(s) } else { attempts.append([s]) }
        }
        XCTAssertGreaterThanOrEqual(attempts.count, 9)
        let anchorEPs: Set<Endpoint> = [sim.hosts[0].local, sim.hosts[1].local]
        for (k, a) in attempts.enumerated() {
            let targets = a.map(\.to)
            let anchorsPart = targets.prefix { anchorEPs.contains($0) }
            XCTAssertEqual(Set(anchorsPart), anchorEPs, "attempt \(k): anchors first")
            let rest = Array(targets.dropFirst(anchorsPart.count))
            XCTAssertEqual(rest, k == 0 ? [] : [peerEndpoint], "attempt \(k): then the cached endpoint (not in the first)")
        }
        // 1, 2, 4, ..., 32, 60, 60 s apart, each within ±10%.
        let expected: [Double] = [1, 2, 4, 8, 16, 32, 60, 60]
        var gaps: [Double] = []
        for k in 1..<min(attempts.count, expected.count + 1) {
            let gap = (attempts[k][0].at - attempts[k - 1][0].at).seconds
            gaps.append((gap * 100).rounded() / 100)
            XCTAssertGreaterThanOrEqual(gap, expected[k - 1] * 0.9 - 0.001, "gap \(k)")
            XCTAssertLessThanOrEqual(gap, expected[k - 1] * 1.1 + 0.001, "gap \(k)")
        }
        print("recovery: attempts \(gaps) s apart")
        XCTAssertTrue(Set(gaps).count > 1)

        // Partitioned, plainly: an event, a flag, a warning.
        let partitioned = sim.hosts[h].events.first { $0.event == .partitioned }
        XCTAssertNotNil(partitioned)
        if let at = partitioned?.at { XCTAssertEqual(at, attempts[7][0].at, "after the eighth attempt") }
        let st = sim.status(h)
        XCTAssertTrue(st.partitioned)
        XCTAssertTrue(st.recovering)
        XCTAssertTrue(st.warnings.contains { $0.hasPrefix("partitioned") }, "\(st.warnings)")

        // An anchor comes back (a fresh process): the next attempt finds it.
        sim.restart(0)
        let back = sim.now
        let took = sim.drive(until: { sim.events(h).contains(.recovered) }, within: .seconds(70 as UInt64))
        XCTAssertNotNil(took)
        let after = sim.status(h)
        XCTAssertFalse(after.partitioned)
        XCTAssertFalse(after.recovering)
        XCTAssertEqual(after.anchors.first { $0.name == "anchor-1" }?.reachable, true)
        XCTAssertFalse(after.warnings.contains { $0.hasPrefix("partitioned") })
        print("recovery: back \(((sim.now - back)).seconds) s after an anchor returned")
    }

    func testAnchorsStayReachableWhenOnlyProbesAreLost() {
        let (sim, h, _) = world()
        // A network that drops the unauthenticated probes but carries sessions.
        sim.lose = { host, _, type in host == h && type == MessageType.pathProbe.rawValue }
        sim.drive(for: .seconds(90 as UInt64))
        let st = sim.status(h)
        XCTAssertEqual(st.anchors.map(\.reachable), [true, true])
        XCTAssertTrue(st.warnings.isEmpty, "\(st.warnings)")
        XCTAssertEqual(st.nat.evidence.count, 2, "observations still come, authenticated, in pongs")
        XCTAssertFalse(sim.events(h).contains(.anchorUnreachable(sim.pid(0))))
        // Losing the session too makes it unreachable quickly.
        sim.lose = { host, to, _ in host == h && to == sim.hosts[0].local }
        let t0 = sim.now
        sim.drive(until: { sim.status(h).anchors[0].reachable == false }, within: .seconds(30 as UInt64))
        print("recovery: anchor unreachable \((sim.now - t0).seconds) s after its path broke")
    }

    func started(_ sim: NetSim, _ h: Int) -> Instant? {
        sim.hosts[h].events.first { $0.event == .recoveryStarted }?.at
    }

    func testNodeWithNothingToTryIsPartitionedAtOnce() {
        let sim = NetSim()
        let nat = sim.addNAT(.independent, .addressAndPort)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "host", nat: nat)])
        sim.stop(0)
        sim.drive(for: .seconds(20 as UInt64))
        // It still has the anchor's configured endpoint: it is not partitioned yet, it is recovering.
        XCTAssertTrue(sim.status(1).recovering)
        XCTAssertTrue(sim.status(1).warnings.contains { $0 == "no anchor is reachable" })
        XCTAssertTrue(sim.events(1).contains(.noAnchorReachable) || sim.events(1).contains(.recoveryStarted))
        sim.drive(for: .seconds(400 as UInt64))
        XCTAssertTrue(sim.status(1).partitioned)
    }

    func testEndpointCacheLoadsIntoTheNextRun() {
        let (sim, h, p) = world()
        sim.drive(for: .seconds(12 as UInt64))
        sim.sendIP(from: h, to: p, 1)
        sim.drive(for: .seconds(5 as UInt64))
        let bytes = sim.hosts[h].core.endpointCacheBytes()
        // A restarted host reads it and, with every anchor down, probes the cached endpoint.
        sim.stop(0)
        sim.stop(1)
        sim.restart(h)
        XCTAssertTrue(sim.hosts[h].core.loadEndpointCache(bytes))
        XCTAssertFalse(sim.hosts[h].core.loadEndpointCache(Array("not json".utf8)))
        sim.drive(until: { sim.events(h).contains(.recovered) }, within: .seconds(60 as UInt64))
        XCTAssertEqual(sim.activePath(h, p)?.remote, sim.hosts[p].local, "found the peer at its cached endpoint")
        sim.sendIP(from: h, to: p, 2)
        sim.drive(for: .seconds(1 as UInt64))
        XCTAssertTrue(sim.delivered(p, from: h, number: 2))
    }
}
