import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Simulation

/// Gossip of signed endpoint records: the rules (seed 2.3, 3.3), the order of
/// delivery, a healed partition, persistence, and bad input.
final class GossipTests: XCTestCase {
    let t0 = Instant(ns: 1_000_000_000)
    func at(_ ms: UInt64) -> Instant { t0 + .milliseconds(ms) }

    func keys(_ n: Int) -> [Identity] {
        (0..<n).map { i in Identity(secret: SecretKey(bytes: [UInt8](repeating: UInt8(i + 1), count: 32))!) }
    }

    func ep(_ port: UInt16) -> Candidate {
        var a = IPAddressBytes()
        a.hi = UInt64(0xC633_6401) << 32
        return Candidate(Endpoint(family: .v4, address: a, port: port), .observed)
    }

    func records(_ m: GossipMessage...) -> [UInt8] { m.flatMap(\.bytes) }

    func testRecordLayoutRoundTripsAndSignatureCoversEveryByte() {
        let id = keys(1)[0]
        let r = EndpointRecord.signed(by: id, sequence: 7, endpoints: [ep(1000), ep(2000)])
        XCTAssertEqual(r.bytes.count, 108 + 40)
        XCTAssertEqual(EndpointRecord(bytes: r.bytes), r)
        XCTAssertTrue(r.isValidlySigned)
        for i in 0..<r.bytes.count {
            var b = r.bytes
            b[i] ^= 0x01
            if let bad = EndpointRecord(bytes: b) { XCTAssertFalse(bad.isValidlySigned, "byte \(i) changed, signature still valid") }
        }
        XCTAssertNil(EndpointRecord(bytes: r.bytes + [0]))
        XCTAssertNil(EndpointRecord(bytes: Array(r.bytes.dropLast())))
        let m = GossipMessage.records([r, r])
        XCTAssertEqual(GossipMessage(bytes: m.bytes), m)
        let d = GossipMessage.digest(last: true, entries: [DigestEntry(member: MemberID(rawValue: 5), sequence: 9)])
        XCTAssertEqual(GossipMessage(bytes: d.bytes), d)
        XCTAssertEqual(GossipMessage(bytes: GossipMessage.pull([MemberID(rawValue: 1)]).bytes), .pull([MemberID(rawValue: 1)]))
        let s = GossipMessage.summary(count: 3, hash: [UInt8](repeating: 7, count: 16))
        XCTAssertEqual(GossipMessage(bytes: s.bytes), s)
    }

    /// The higher sequence wins; a stale or replayed record, a forged one, one about a
    /// non-member, and a member's record about another node are dropped and counted.
    func testRulesAndBadInputAreCountedNeverStored() {
        let ids = keys(4)
        let roster = GossipRoster(keys: ids.prefix(3).map(\.publicKey))
        var g = Gossip(roster: roster, me: 0, identity: ids[0], seed: 1)
        g.start(now: t0)
        let v2 = EndpointRecord.signed(by: ids[1], sequence: 2, endpoints: [ep(2)])
        let v1 = EndpointRecord.signed(by: ids[1], sequence: 1, endpoints: [ep(1)])
        g.handle(GossipMessage.records([v2]).bytes, from: PeerID(rawValue: 2), now: at(1))
        XCTAssertEqual(g.record(of: PeerID(rawValue: 1)), v2)
        g.handle(GossipMessage.records([v1]).bytes, from: PeerID(rawValue: 2), now: at(2))
        g.handle(GossipMessage.records([v2]).bytes, from: PeerID(rawValue: 2), now: at(3))
        XCTAssertEqual(g.counters.stale, 2)
        XCTAssertEqual(g.record(of: PeerID(rawValue: 1)), v2)
        // A malicious member (2) redirecting member 1: a record about 1 that 2 signed.
        let forged = EndpointRecord(node: ids[1].publicKey, sequence: 99, endpoints: [ep(6666)],
                                    signature: ids[2].sign(EndpointRecord.signingContext +
                                                           EndpointRecord.signedPart(node: ids[1].publicKey, sequence: 99, endpoints: [ep(6666)])))
        g.handle(GossipMessage.records([forged]).bytes, from: PeerID(rawValue: 2), now: at(4))
        XCTAssertEqual(g.counters.badSignature, 1)
        XCTAssertEqual(g.record(of: PeerID(rawValue: 1)), v2)
        // A stranger's own, well-signed record.
        g.handle(GossipMessage.records([EndpointRecord.signed(by: ids[3], sequence: 5, endpoints: [])]).bytes,
                 from: PeerID(rawValue: 2), now: at(5))
        XCTAssertEqual(g.counters.notMember, 1)
        // Malformed: truncated, extended, a wrong count.
        let good = GossipMessage.records([v2]).bytes
        g.handle(Array(good.dropLast()), from: PeerID(rawValue: 2), now: at(6))
        g.handle(good + [0], from: PeerID(rawValue: 2), now: at(6))
        var badCount = good
        badCount[1] = 2
        g.handle(badCount, from: PeerID(rawValue: 2), now: at(6))
        g.handle([GossipMessage.Kind.digest.rawValue, 0, 5, 0], from: PeerID(rawValue: 2), now: at(6))
        XCTAssertEqual(g.counters.malformed, 4)
        // Nothing bad was forwarded: the only records we push are v2 (and our own, not published).
        while let m = g.pollTransmit() {
            if case .records(let rs) = GossipMessage(bytes: m.bytes)! { XCTAssertEqual(rs, [v2]) }
        }
    }

    /// An anchor's introduction carries the subject's own signed record, to the
    /// one member introduced; nothing when it holds none; never a record about us.
    func testAnIntroductionCarriesTheSubjectsSignedRecord() {
        let ids = keys(3)
        let roster = GossipRoster(keys: ids.map(\.publicKey))
        var g = Gossip(roster: roster, me: 0, identity: ids[0], seed: 1)
        g.start(now: t0)
        XCTAssertFalse(g.introduce(PeerID(rawValue: 1), to: PeerID(rawValue: 2)), "no record of 1 held yet")
        XCTAssertNil(g.pollTransmit())
        let r1 = EndpointRecord.signed(by: ids[1], sequence: 4, endpoints: [ep(4000)])
        g.handle(GossipMessage.records([r1]).bytes, from: PeerID(rawValue: 1), now: at(1))
        while g.pollTransmit() != nil {}  // the push of the new rumour
        XCTAssertTrue(g.introduce(PeerID(rawValue: 1), to: PeerID(rawValue: 2)))
        let m = g.pollTransmit()
        XCTAssertEqual(m?.to, PeerID(rawValue: 2))
        XCTAssertEqual(m.flatMap { GossipMessage(bytes: $0.bytes) }, .records([r1]))
        XCTAssertNil(g.pollTransmit())
        XCTAssertFalse(g.introduce(PeerID(rawValue: 1), to: PeerID(rawValue: 1)), "a member is not introduced to itself")
        XCTAssertFalse(g.introduce(PeerID(rawValue: 1), to: PeerID(rawValue: 0)), "nor to us")
        XCTAssertFalse(g.introduce(PeerID(rawValue: 7), to: PeerID(rawValue: 2)), "nor a non-member")
        XCTAssertEqual(g.counters.introduced, 1)
        XCTAssertEqual(g.counters.named["gossip_introduced"], 1)
    }

    /// Whatever order records and their versions arrive in, the final state is the same:
    /// per node the highest sequence (a property test over random orders).
    func testOrderOfDeliveryDoesNotChangeTheFinalState() {
        let ids = keys(6)
        let roster = GossipRoster(keys: ids.map(\.publicKey))
        var all: [EndpointRecord] = []
        for i in 1..<6 { for s in 1...4 { all.append(EndpointRecord.signed(by: ids[i], sequence: UInt64(s), endpoints: [ep(UInt16(i * 100 + s))])) } }
        var rng = SessionRandom(seed: 42)
        var reference: [EndpointRecord?]?
        for _ in 0..<50 {
            var order = all
            order.shuffle(using: &rng)
            var g = Gossip(roster: roster, me: 0, identity: ids[0], seed: 3)
            var t: UInt64 = 0
            var k = 0
            while k < order.count {
                let n = Int(rng.next() % 4) + 1
                let batch = Array(order[k..<min(order.count, k + n)])
                t += 1
                g.handle(GossipMessage.records(batch).bytes, from: PeerID(rawValue: Int(rng.next() % 5) + 1), now: at(t))
                k += batch.count
            }
            let state = (0..<6).map { g.record(of: PeerID(rawValue: $0)) }
            for i in 1..<6 { XCTAssertEqual(state[i]?.sequence, 4) }
            if let reference { XCTAssertEqual(state, reference) } else { reference = state }
        }
    }

    /// A node restarted without its state hears its own older record... and one with a
    /// higher sequence from its earlier life: it continues above it, so its new record wins.
    func testOwnSequenceNeverGoesBackwards() {
        let ids = keys(2)
        let roster = GossipRoster(keys: ids.map(\.publicKey))
        var g = Gossip(roster: roster, me: 0, identity: ids[0], seed: 1)
        g.publish([ep(1)], now: at(0))
        XCTAssertEqual(g.ownSequence, 1)
        let earlier = EndpointRecord.signed(by: ids[0], sequence: 40, endpoints: [ep(40)])
        g.handle(GossipMessage.records([earlier]).bytes, from: PeerID(rawValue: 1), now: at(1))
        XCTAssertEqual(g.ownSequence, 41)
        XCTAssertEqual(g.record(of: PeerID(rawValue: 0))?.endpoints, [ep(1)])
        // Persistence: a snapshot loads into the next run, whose next record is 42.
        var next = Gossip(roster: roster, me: 0, identity: ids[0], seed: 2)
        XCTAssertEqual(next.load(g.snapshot(), now: at(2)), 1)
        next.publish([ep(2)], now: at(3))
        XCTAssertEqual(next.ownSequence, 42)
        // A snapshot with a forged record loads the rest and skips that one.
        var bytes = g.snapshot()
        bytes[bytes.count - 1] ^= 1
        var third = Gossip(roster: roster, me: 0, identity: ids[0], seed: 2)
        XCTAssertEqual(third.load(bytes, now: at(4)), 0)
    }

    /// One member cannot make us process more than its byte budget.
    func testAMemberFloodingIsBudgeted() {
        let ids = keys(3)
        let roster = GossipRoster(keys: ids.map(\.publicKey))
        var g = Gossip(roster: roster, me: 0, identity: ids[0], seed: 1)
        let junk = GossipMessage.pull([roster.ids[1]]).bytes
        for _ in 0..<50_000 { g.handle(junk, from: PeerID(rawValue: 1), now: at(0)) }
        XCTAssertGreaterThan(g.counters.rateLimited, 0)
        XCTAssertLessThanOrEqual(UInt64(junk.count) * (50_000 - g.counters.rateLimited), GossipTimings.default.peerBurstBytes)
    }

    /// The simulator with 1% loss and jitter: two halves partitioned while a node's
    /// endpoint changes twice; after the partition heals everyone converges on the
    /// higher sequence within one anti-entropy period.
    func testAHealedPartitionConverges() {
        var timings = GossipTimings.default
        timings.antiEntropy = .seconds(30 as UInt64)
        var net = NetworkModel(latency: .milliseconds(50), jitter: .milliseconds(20), loss: 0.01, seed: 5)
        let n = 60
        net.groups = (0..<n).map { $0 < n / 2 ? 0 : 1 }
        let w = GossipWorld(nodes: n, timings: timings, network: net, seed: 5)
        w.publish(0, version: 2)
        w.publish(0, version: 3)
        w.run(until: w.now + .seconds(10 as UInt64))
        let inA = (0..<(n / 2)).filter { w.nodes[$0].sequence(of: PeerID(rawValue: 0)) == 3 }.count
        let inB = ((n / 2)..<n).filter { w.nodes[$0].sequence(of: PeerID(rawValue: 0)) == 3 }.count
        XCTAssertEqual(inA, n / 2, "the change spreads in its own half")
        XCTAssertEqual(inB, 0, "and not across the partition")
        w.network.groups = nil
        let healed = w.now
        w.run(until: healed + timings.antiEntropy) { (0..<n).allSatisfy { w.nodes[$0].sequence(of: PeerID(rawValue: 0)) == 3 } }
        XCTAssertTrue((0..<n).allSatisfy { w.nodes[$0].sequence(of: PeerID(rawValue: 0)) == 3 })
        XCTAssertLessThanOrEqual((w.now - healed).seconds, timings.antiEntropy.seconds)
    }

    /// A node that was down (churn) catches up when it comes back: its sessions come
    /// up and anti-entropy with it runs at once.
    func testANodeThatWasDownCatchesUpWhenItReturns() {
        let net = NetworkModel(latency: .milliseconds(30), jitter: .milliseconds(10), loss: 0, seed: 9)
        let w = GossipWorld(nodes: 40, timings: .default, network: net, seed: 9)
        w.setDown(7, true)
        w.publish(3, version: 2)
        w.run(until: w.now + .seconds(5 as UInt64))
        XCTAssertEqual(w.nodes[7].sequence(of: PeerID(rawValue: 3)), 1)
        w.setDown(7, false)
        w.run(until: w.now + .seconds(2 as UInt64))
        XCTAssertEqual(w.nodes[7].sequence(of: PeerID(rawValue: 3)), 2)
    }
}
