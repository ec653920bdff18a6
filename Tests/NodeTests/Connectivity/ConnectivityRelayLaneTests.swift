import XCTest
import Foundation
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Engine

/// An anchor forwards RELAY on every lane (Connectivity/RelayTable.swift): the
/// lane the steering picks checks and forwards it itself, with the relay table
/// reactor 0 publishes, and every lane takes from one budget per member.
final class ConnectivityRelayLaneTests: XCTestCase {
    /// One anchor and four members behind symmetric NATs: every pair relays.
    func relayedWorld(owners: Int, timings: ConnectivityTimings = .default) -> NetSim {
        let sim = NetSim(timings: timings, owners: owners)
        let nats = (0..<4).map { _ in sim.addNAT(.dependent, .addressAndPort) }
        sim.build([.init(name: "anchor-1", anchor: true)] + nats.enumerated().map { .init(name: "sym-\($0.offset + 1)", nat: $0.element) })
        sim.drive(for: .seconds(12 as UInt64))
        return sim
    }

    /// Steering picks the anchor's lane by the inner DATA receiver index's second byte,
    /// which the target chose with the pair bit as its low bit: the two directions of
    /// every pair land on different lanes of 2, and 12 directions spread over 3. Fails
    /// if relaying goes back to lane 0 (steering that does not read inside a RELAY on
    /// an anchor, or a shard that hands RELAY to NodeCore).
    func testEveryLaneOfAnAnchorForwardsWhatLandsOnIt() {
        for owners in [2, 3] {
            let sim = relayedWorld(owners: owners)
            let members = [1, 2, 3, 4]
            for n in 0..<6 {
                for i in members { for j in members where j != i { sim.sendIP(from: i, to: j, n) } }
                sim.drive(for: .seconds(1 as UInt64))
            }
            for i in members {
                for j in members where j != i {
                    XCTAssertEqual(sim.activePath(i, j)?.kind, .relay, "owners \(owners): \(i)->\(j) relays")
                    // Without loss every packet; under WS_SIM_LOSS (a relayed packet crosses two lossy
                    // hops) never three in a row lost, as a retransmitting application sees it.
                    let lost = { (n: Int) in !sim.delivered(j, from: i, number: n) }
                    if sim.network.loss == 0 {
                        for n in 0..<6 { XCTAssertFalse(lost(n), "owners \(owners): \(i)->\(j) #\(n)") }
                    } else {
                        for n in 2..<6 { XCTAssertFalse(lost(n) && lost(n - 1) && lost(n - 2), "owners \(owners): \(i)->\(j) #\(n - 2)...#\(n)") }
                    }
                }
            }
            // Where each direction lands: the second byte of the index its target chose for it.
            func lane(_ i: Int, _ j: Int) -> Int? {
                sim.hosts[j].core.shardKeys(of: sim.pid(i)).current.map { Int($0.localIndex >> 8 & 0xFF) % owners }
            }
            if owners == 2 {
                for i in members { for j in members where i < j {
                    XCTAssertNotNil(lane(i, j))
                    XCTAssertNotEqual(lane(i, j), lane(j, i), "\(i)<->\(j): the two directions on different lanes")
                } }
            }
            let lanes = sim.hosts[0].shards.map(\.relayCounters.packets)
            XCTAssertEqual(lanes.count, owners)
            for k in 0..<owners { XCTAssertGreaterThan(lanes[k], 0, "owners \(owners): lane \(k) forwarded (\(lanes))") }
            XCTAssertEqual(sim.hosts[0].core.relay.counters.packets, 0, "reactor 0's NodeCore forwarded nothing itself")
            let counters = sim.status(0).counters
            XCTAssertEqual(counters["relay_forwarded_packets"], lanes.reduce(0, +), "the status sums the lanes")
            for k in 0..<owners { XCTAssertEqual(counters["relay_forwarded_packets_lane\(k)"], lanes[k]) }
            for i in sim.hosts.indices {
                XCTAssertNil(sim.status(i).counters["relay_bad_tag"], "host \(i)")
                XCTAssertNil(sim.status(i).counters["relay_mismatch"], "host \(i)")
            }
        }
    }

    /// `from`'s relay-tag key toward `to`: the session between the two hops.
    func hopKey(_ sim: NetSim, from: Int, to: Int) -> RelayTagKey? {
        sim.hosts[from].core.shardKeys(of: sim.pid(to)).relayHop.send
    }

    func tagged(_ m: [UInt8], _ key: RelayTagKey?) -> [UInt8] {
        var m = m
        if let key { m.withUnsafeMutableBytes { RelayTag.seal($0.baseAddress!, length: $0.count, key: key) } }
        return m
    }

    /// A RELAY-looking inner DATA whose receiver index's second byte is `index` (what an
    /// anchor's steering reads: the pair byte).
    func inner(index: UInt8) -> [UInt8] {
        var d = [4] + [UInt8](repeating: 0xAB, count: 1199)
        d[5] = index
        return d
    }

    /// Every defence of NodeCore's relay (ConnectivityGuardTests) holds on lanes other than 0:
    /// the sender's current endpoint and its session's tag (M4), a member target with a
    /// direct path, and one budget across lanes.
    func testEveryLaneKeepsTheRelayDefencesAndOneBudgetPerMember() {
        let sim = NetSim(timings: ConnectivityTimings.default.withRelayRate(mbit: 20), owners: 3)  // 2.5 MB/s, 1 MiB burst
        let n1 = sim.addNAT(.independent, .independent), n2 = sim.addNAT(.independent, .independent)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "a", nat: n1), .init(name: "b", nat: n2)])
        sim.drive(for: .seconds(12 as UInt64))
        let anchor = 0, a = 1, b = 2
        guard let aEndpoint = sim.activePath(anchor, a)?.remote, let bEndpoint = sim.activePath(anchor, b)?.remote else {
            return XCTFail("members have sessions with the anchor")
        }
        let idA = MemberID(publicKey: sim.hosts[a].identity.publicKey), idB = MemberID(publicKey: sim.hosts[b].identity.publicKey)
        let aKey = hopKey(sim, from: a, to: anchor)
        let before = sim.status(anchor).counters
        func delta(_ k: String) -> UInt64 { (sim.status(anchor).counters[k] ?? 0) - (before[k] ?? 0) }
        var lane = -1

        // Forwarded on lane 1 (inner index 1 % 3), rewritten and re-tagged there.
        var ok = tagged(RelayMessage.wrap(inner(index: 1), for: idB), aKey)
        XCTAssertEqual(sim.receiveOnLanes(&ok, at: anchor, from: aEndpoint, lane: { lane = $0 }), .transmit(bEndpoint, offset: 0, length: ok.count))
        XCTAssertEqual(lane, 1)
        XCTAssertEqual(ok.withUnsafeBytes { RelayMessage.parseHeader($0, length: ok.count) }, idA)
        XCTAssertEqual(Array(ok[RelayMessage.headerSize...]), inner(index: 1), "the inner datagram is untouched")
        let bHop = sim.hosts[b].core.shardKeys(of: sim.pid(anchor)).relayHop
        XCTAssertTrue(ok.withUnsafeBytes { bHop.check($0.baseAddress!, length: ok.count) }, "b takes the anchor's tag")

        // The refusals, each on lane 2.
        let stranger = Endpoint.v4(203, 0, 113, 99, port: 4444)
        let spoofed = Endpoint(family: .v4, address: aEndpoint.address, port: aEndpoint.port &+ 1)
        let cases: [(Endpoint, MemberID, NodeDropReason)] = [
            (stranger, idB, .relaySourceNotMember),
            (spoofed, idB, .relaySourceNotMember),
            (aEndpoint, MemberID(rawValue: 12345), .relayUnknownTarget),
            (aEndpoint, idA, .relayUnknownTarget),
            (aEndpoint, MemberID(publicKey: sim.hosts[anchor].identity.publicKey), .relayUnknownTarget),
        ]
        for (src, id, reason) in cases {
            var m = tagged(RelayMessage.wrap(inner(index: 2), for: id), aKey)
            XCTAssertEqual(sim.receiveOnLanes(&m, at: anchor, from: src, lane: { lane = $0 }), .drop(reason), "\(src) -> \(id)")
            XCTAssertEqual(lane, 2)
        }
        // M4: a's exact endpoint without a's tag.
        var garbage = RelayMessage.wrap(inner(index: 2), for: idB)
        garbage.replaceSubrange(1..<8, with: [0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03])
        var grown = tagged(RelayMessage.wrap(inner(index: 2), for: idB), aKey)
        grown.append(0)
        for f in [RelayMessage.wrap(inner(index: 2), for: idB), garbage, tagged(RelayMessage.wrap(inner(index: 2), for: idB), hopKey(sim, from: b, to: anchor)), grown] {
            var m = f
            XCTAssertEqual(sim.receiveOnLanes(&m, at: anchor, from: aEndpoint), .drop(.relayBadTag))
        }
        // Keys past their deadline: the lane checks it per packet, before reactor 0 publishes again.
        var late = tagged(RelayMessage.wrap(inner(index: 1), for: idB), aKey)
        let sendable = sim.hosts[anchor].core.tunnels.sendableUntil(sim.pid(a))!
        let r = late.withUnsafeMutableBytes { sim.hosts[anchor].shards[1].receive($0, length: $0.count, from: aEndpoint, now: sendable) }
        XCTAssertEqual(r, .drop(.relaySourceNotMember), "a's keys are dead at their deadline")

        // One budget for a across lanes 1 and 2: the burst passes once, not once per lane.
        var forwarded = 0, limited = 0
        var onLane = [Int: Int]()
        for k in 0..<2000 {
            var m = tagged(RelayMessage.wrap(inner(index: UInt8(1 + k % 2)), for: idB), aKey)
            switch sim.receiveOnLanes(&m, at: anchor, from: aEndpoint, lane: { lane = $0 }) {
            case .transmit:
                forwarded += 1
                onLane[lane, default: 0] += 1
            case .drop(.relayRateLimited): limited += 1
            case let other: XCTFail("unexpected \(other)")
            }
        }
        let size = UInt64(inner(index: 1).count + RelayMessage.headerSize)
        let burst = sim.hosts[anchor].core.timings.relayBurstBytes
        XCTAssertEqual(burst, 1 << 20)
        XCTAssertLessThanOrEqual(UInt64(forwarded) * size, burst + size, "one burst in all, not one per lane")
        XCTAssertGreaterThan(UInt64(forwarded) * size, burst - 2 * size)
        XCTAssertGreaterThan(onLane[1] ?? 0, 0)
        XCTAssertGreaterThan(onLane[2] ?? 0, 0)
        sim.now = sim.now + .milliseconds(100)  // 250 kB back
        var later = tagged(RelayMessage.wrap(inner(index: 2), for: idB), aKey)
        if case .transmit = sim.receiveOnLanes(&later, at: anchor, from: aEndpoint) {} else { XCTFail("budget refills") }

        XCTAssertEqual(delta("relay_source_not_member"), 3)
        XCTAssertEqual(delta("relay_unknown_target"), 3)
        XCTAssertEqual(delta("relay_bad_tag"), 4)
        XCTAssertEqual(delta("relay_rate_limited"), UInt64(limited))
        XCTAssertEqual(delta("relay_forwarded_packets"), UInt64(forwarded + 2))
        XCTAssertEqual(sim.hosts[anchor].core.relay.counters.packets, 0, "NodeCore forwarded nothing")
    }

    /// A relayed handshake is forwarded by the lane it lands on (lane 0: steering
    /// reads only DATA inside a RELAY), within the budget; its target meters it (H1,
    /// ConnectivityRelayedHandshakeTests). A RELAY for the anchor itself is not forwarded.
    func testARelayedHandshakeIsForwardedOnItsLaneAndARelayForUsIsNot() {
        let sim = NetSim(owners: 3)
        let n1 = sim.addNAT(.independent, .independent), n2 = sim.addNAT(.independent, .independent)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "a", nat: n1), .init(name: "b", nat: n2)])
        sim.drive(for: .seconds(12 as UInt64))
        let anchor = 0, a = 1, b = 2
        guard let aEndpoint = sim.activePath(anchor, a)?.remote, let bEndpoint = sim.activePath(anchor, b)?.remote else {
            return XCTFail("members have sessions with the anchor")
        }
        let idB = MemberID(publicKey: sim.hosts[b].identity.publicKey)
        var init1 = [UInt8](repeating: 0x11, count: 148)
        init1[0] = 1
        var m = tagged(RelayMessage.wrap(init1, for: idB), hopKey(sim, from: a, to: anchor))
        var lane = -1
        XCTAssertEqual(sim.receiveOnLanes(&m, at: anchor, from: aEndpoint, lane: { lane = $0 }), .transmit(bEndpoint, offset: 0, length: m.count))
        XCTAssertEqual(lane, 0)
        XCTAssertEqual(sim.hosts[anchor].shards[0].relayCounters.packets, 1)
    }

    /// The budget's arithmetic (GCRA): a burst, then the rate; 0 is no limit.
    func testRelayBudgetRule() {
        let rule = RelayBudgetRule(bytesPerSecond: 1_000_000, burstBytes: 10_000)
        let budget = LocalRelayBudget(members: 2, rule: rule)
        let t = Instant(ns: 5_000_000_000)
        var n = 0
        while budget.take(0, bytes: 1000, now: t) { n += 1 }
        XCTAssertEqual(n, 10, "the burst, and no more")
        XCTAssertTrue(budget.take(1, bytes: 1000, now: t), "another member's budget is its own")
        XCTAssertFalse(budget.take(0, bytes: 1000, now: t + Span(ns: 999_000)))
        XCTAssertTrue(budget.take(0, bytes: 1000, now: t + .milliseconds(1)), "1000 bytes back after 1 ms at 1 MB/s")
        XCTAssertFalse(budget.take(7, bytes: 1, now: t), "not a member")
        let free = LocalRelayBudget(members: 1, rule: RelayBudgetRule(bytesPerSecond: 0, burstBytes: 0))
        for _ in 0..<10_000 { XCTAssertTrue(free.take(0, bytes: 65535, now: t)) }
    }

    /// The engine's budget: lanes on several threads take from one word per member, and
    /// together get one burst (compare-and-swap, no lock).
    func testAtomicRelayBudgetIsOneBudgetAcrossThreads() {
        let rule = RelayBudgetRule(bytesPerSecond: 1_000, burstBytes: 1_000_000)
        let budget = AtomicRelayBudget(members: 3, rule: rule)
        let t = Instant(ns: 9_000_000_000)
        let taken = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        taken.initialize(repeating: 0, count: 4)
        defer { taken.deallocate() }
        let box = UnsafeSendableBox(taken)
        DispatchQueue.concurrentPerform(iterations: 4) { k in
            var n = 0
            for _ in 0..<5000 where budget.take(1, bytes: 100, now: t) { n += 1 }
            box.pointer[k] = n
        }
        XCTAssertEqual((0..<4).map { taken[$0] }.reduce(0, +), 10_000, "1 MB of burst in 100-byte takes, across 4 threads")
        XCTAssertTrue(budget.take(2, bytes: 100, now: t))
    }
}

private struct UnsafeSendableBox: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int>
    init(_ p: UnsafeMutablePointer<Int>) { pointer = p }
}
