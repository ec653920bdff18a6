import XCTest
@testable import Support
@testable import Wire
@testable import Protocol
@testable import Simulation

/// Multipath in the data path (docs/multipath.md, "Wired"), in the simulated
/// internet: two public hosts with two paths between them, direct (10 ms one
/// way) and relayed through an anchor (20 ms). A flow of numbered packets from
/// `a` to `b` (with an answer from `b` for every second one, as TCP's ACKs) is
/// spread over both paths by a's owner and put back in order by b's reorder
/// buffer before the "TUN" (`received`).
final class MultipathWireTests: XCTestCase {
    struct World {
        let sim: NetSim
        let a: Int, b: Int, anchor: Int
    }

    static func makeWorld(owners: Int = 1) -> World {
        // A direct and a relayed path in one spread: what `multipathRelay` allows.
        var timings = ConnectivityTimings.default
        timings.multipathRelay = true
        let sim = NetSim(timings: timings, owners: owners)
        // Exact order and completeness are the point here: no random loss or jitter
        // (WS_SIM_LOSS / WS_SIM_JITTER_MS, which reorder within a path, do not apply).
        sim.network = NetworkModel(latency: .milliseconds(10), jitter: .zero, loss: 0, seed: 77)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "a"), .init(name: "b")])
        let w = World(sim: sim, a: 1, b: 2, anchor: 0)
        sim.drive(for: .seconds(2 as UInt64))
        // Traffic both ways for a while: the pair punches a direct path, and the
        // relay path it started on gets its RTT from the check pings of idle usable paths.
        var n = 0
        sim.drive(until: {
            sim.sendIP(from: w.a, to: w.b, n)
            sim.sendIP(from: w.b, to: w.a, n)
            n += 1
            return sim.hosts[w.a].core.spreadRoute(for: sim.pid(w.b), now: sim.now).count >= 2
                && sim.hosts[w.b].core.spreadRoute(for: sim.pid(w.a), now: sim.now).count >= 2
        }, within: .seconds(30 as UInt64), slice: .milliseconds(100))
        return w
    }

    /// Runs `count` packets a → b, one per millisecond, numbered from `first`
    /// (b answers every second one); `cut` runs before packet `cutAt`. Returns
    /// the datagrams a sent on the direct and on the relayed path.
    func flow(_ w: World, first: Int, count: Int, cutAt: Int? = nil, cut: (() -> Void)? = nil) -> (direct: Int, relayed: Int) {
        let sim = w.sim
        let sentBefore = sim.sent.count
        for k in 0..<count {
            if k == cutAt { cut?() }
            sim.sendIP(from: w.a, to: w.b, first + k, size: 1000)
            if k % 2 == 0 { sim.sendIP(from: w.b, to: w.a, first + k) }
            sim.drive(for: .milliseconds(1))
        }
        sim.drive(for: .seconds(2 as UInt64))
        var direct = 0, relayed = 0
        for s in sim.sent[sentBefore...] where s.host == w.a && s.length > 1000 {
            if s.type == MessageType.data.rawValue && s.to == sim.hosts[w.b].local { direct += 1 }
            if s.type == MessageType.relay.rawValue && s.to == sim.hosts[w.anchor].local { relayed += 1 }
        }
        return (direct, relayed)
    }

    /// b's packet numbers from a, from `first` on, in arrival order at the "TUN".
    func arrived(_ w: World, from first: Int) -> [Int] {
        w.sim.hosts[w.b].received.filter { $0.from == w.a && $0.payload.count == 1000 }
            .map { NetSim.packetNumber($0.payload) }.filter { $0 >= first }
    }

    func testOneFlowOverTwoPathsArrivesCompleteAndInOrder() {
        for owners in [1, 2] {
            let w = Self.makeWorld(owners: owners)
            let first = 1_000_000
            let (direct, relayed) = flow(w, first: first, count: 2000)
            XCTAssertGreaterThan(direct, 200, "the direct path carried a share (\(owners) reactor(s))")
            XCTAssertGreaterThan(relayed, 200, "the relayed path carried a share (\(owners) reactor(s))")
            XCTAssertEqual(direct + relayed, 2000, "each packet went once")
            let got = arrived(w, from: first)
            XCTAssertEqual(got, Array(first..<(first + 2000)), "complete and in order at the TUN (\(owners) reactor(s))")
            let c = w.sim.hosts[w.b].reorder.counters(of: w.sim.pid(w.a))
            XCTAssertNotNil(c, "b buffered a's packets")
            XCTAssertGreaterThan(c?.held ?? 0, 0, "packets waited for the slower path")
            XCTAssertLessThanOrEqual(c?.maxHeld ?? 0, MultipathConstants.reorderDepth)
            XCTAssertEqual(w.sim.hosts[w.b].reorderDrops, 0)
        }
    }

    func testCuttingAPathMidFlowLosesOnlyInFlightPacketsAndTheFlowGoesOn() {
        let w = Self.makeWorld()
        let sim = w.sim
        let first = 2_000_000
        let la = sim.hosts[w.a].local, lb = sim.hosts[w.b].local
        let (direct, relayed) = flow(w, first: first, count: 3000, cutAt: 1000) {
            // The direct path dies both ways; the relay through the anchor stays.
            sim.lose = { host, to, _ in (host == w.a && to == lb) || (host == w.b && to == la) }
        }
        XCTAssertGreaterThan(direct, 200)
        XCTAssertGreaterThan(relayed, 1500, "the relayed path took the flow after the cut")
        let got = arrived(w, from: first)
        XCTAssertEqual(got, got.sorted(), "in order at the TUN")
        XCTAssertEqual(Set(got).count, got.count, "no duplicates")
        let missing = Set(first..<(first + 3000)).subtracting(got)
        XCTAssertTrue(missing.allSatisfy { $0 >= first + 1000 }, "nothing before the cut is lost")
        // Lost: what the sender put on the direct path until it saw the path fail (a few
        // RTTs: max(3 × (srtt + 4 × rttvar), 100 ms)), about half the packets of that time.
        XCTAssertLessThan(missing.count, 400, "only packets in flight on the cut path are lost: \(missing.count)")
        XCTAssertTrue(missing.allSatisfy { $0 < first + 1600 }, "the flow goes on over the other path")
        XCTAssertEqual(Array(got.suffix(1000)), Array((first + 2000)..<(first + 3000)))

        // The path comes back: its dead path is probed again while data flows, and it carries a share again.
        sim.lose = { _, _, _ in false }
        let again = 3_000_000
        let (direct2, relayed2) = flow(w, first: again, count: 8000)
        XCTAssertGreaterThan(direct2, 1000, "the restored direct path carries a share again")
        XCTAssertGreaterThan(relayed2, 1000)
        XCTAssertEqual(arrived(w, from: again), Array(again..<(again + 8000)), "complete and in order")
    }

    /// The replay window comes before the reorder buffer: a DATA replayed while b buffers
    /// is dropped and counted as a replay, and its packet reaches the TUN once.
    func testAReplayedPacketIsACountedDropWhileBuffering() {
        let w = Self.makeWorld()
        let sim = w.sim
        var captured: [[UInt8]] = []
        sim.tamper = { host, bytes in
            if host == w.a, bytes.first == MessageType.data.rawValue, bytes.count > 1000, captured.count < 3 { captured.append(bytes) }
        }
        let first = 4_000_000
        _ = flow(w, first: first, count: 500)
        sim.tamper = nil
        XCTAssertTrue(sim.hosts[w.b].reorder.isBuffering(sim.pid(w.a)) || sim.hosts[w.b].reorder.counters(of: sim.pid(w.a)) != nil)
        let replaysBefore = sim.status(w.b).counters["replay"] ?? 0
        // Again during the flow: b still buffers (both paths within the last second).
        for k in 0..<20 {
            sim.sendIP(from: w.a, to: w.b, first + 500 + k, size: 1000)
            sim.drive(for: .milliseconds(1))
        }
        XCTAssertTrue(sim.hosts[w.b].reorder.isBuffering(sim.pid(w.a)), "b buffers now")
        for bytes in captured { sim.deliver(bytes, to: w.b, from: sim.hosts[w.a].local) }
        sim.drive(for: .seconds(2 as UInt64))
        XCTAssertEqual(captured.count, 3)
        XCTAssertEqual((sim.status(w.b).counters["replay"] ?? 0) - replaysBefore, 3, "each replay dropped and counted")
        let got = arrived(w, from: first)
        XCTAssertEqual(got, Array(first..<(first + 520)), "every packet once, in order")
    }

    /// With one usable path nothing is spread and nothing is buffered.
    func testOnePathIsTheSinglePathFastPath() {
        var timings = ConnectivityTimings.default
        timings.multipath = false
        let sim = NetSim(timings: timings)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "a"), .init(name: "b")])
        sim.drive(for: .seconds(2 as UInt64))
        var heldAfterSetup = 0
        for n in 0..<400 {
            // (The move from the relay to the direct path is two paths within a second: the
            // receiver may buffer across it. After that, one path: nothing is held.)
            if n == 200 { heldAfterSetup = sim.hosts[2].reorder.counters(of: sim.pid(1))?.held ?? 0 }
            sim.sendIP(from: 1, to: 2, n)
            sim.sendIP(from: 2, to: 1, n)
            sim.drive(for: .milliseconds(50))
        }
        XCTAssertEqual(sim.activePath(1, 2)?.kind, .direct)
        XCTAssertEqual(sim.hosts[1].core.spreadRoute(for: sim.pid(2), now: sim.now).count, 0)
        XCTAssertEqual(sim.hosts[1].core.dataRoute(for: sim.pid(2))?.spread.count, 0)
        XCTAssertFalse(sim.hosts[2].reorder.isBuffering(sim.pid(1)))
        XCTAssertEqual(sim.hosts[2].reorder.counters(of: sim.pid(1))?.held ?? 0, heldAfterSetup, "nothing held on one path")
    }

    /// The default (`multipathRelay` off): a pair with a direct path does not
    /// spread over its relay too, so its anchor carries none of its data.
    /// With it on (`makeWorld`), the same pair spreads over both.
    func testADirectPairDoesNotSpreadOverTheRelayByDefault() {
        let sim = NetSim()
        sim.network = NetworkModel(latency: .milliseconds(10), jitter: .zero, loss: 0, seed: 77)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "a"), .init(name: "b")])
        let w = World(sim: sim, a: 1, b: 2, anchor: 0)
        sim.drive(for: .seconds(2 as UInt64))
        for n in 0..<300 {
            sim.sendIP(from: w.a, to: w.b, n)
            sim.sendIP(from: w.b, to: w.a, n)
            sim.drive(for: .milliseconds(50))
        }
        XCTAssertEqual(sim.activePath(w.a, w.b)?.kind, .direct)
        XCTAssertTrue(sim.hosts[w.a].core.tunnels.paths[sim.pid(w.b)].paths.contains { $0.via != nil },
                      "the relay path is there (so the test can tell)")
        XCTAssertEqual(sim.hosts[w.a].core.spreadRoute(for: sim.pid(w.b), now: sim.now).count, 0)
        let (direct, relayed) = flow(w, first: 1000, count: 1000)
        XCTAssertEqual(relayed, 0, "no data through the anchor while the direct path works")
        XCTAssertEqual(direct, 1000)
    }

    /// While a flow is spread, each of its paths is pinged every `farProbe` (100 ms): the
    /// scheduler learns from the queue in each RTT sample whether a path is saturated
    /// (rule 2). Not more often, and not once the flow stopped.
    func testSpreadPathsArePingedEveryFarProbeWhileDataFlows() {
        let w = Self.makeWorld()
        let sim = w.sim
        let before = sim.sent.count
        let (direct, relayed) = flow(w, first: 5_000_000, count: 2000)  // 2 s of data, then 2 s idle
        XCTAssertGreaterThan(direct, 0)
        XCTAssertGreaterThan(relayed, 0, "spread over both paths")
        let ping = 10 + DataMessage.overhead
        var pings = 0
        for s in sim.sent[before...] where s.host == w.a {
            if s.type == MessageType.data.rawValue && s.to == sim.hosts[w.b].local && s.length == ping { pings += 1 }
            if s.type == MessageType.relay.rawValue && s.to == sim.hosts[w.anchor].local
                && s.length == ping + RelayMessage.headerSize { pings += 1 }
        }
        // 2 s of data on two paths: about 20 pings each; then 2 s idle, none at that pace.
        XCTAssertGreaterThanOrEqual(pings, 30, "both paths pinged while data flows")
        XCTAssertLessThanOrEqual(pings, 50, "at most one ping per path every 100 ms")
    }
}
