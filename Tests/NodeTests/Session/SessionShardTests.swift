import XCTest
import Reactor
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// The pieces of sessions split across reactors that the simulations do not
/// show on their own (NetSim with WS_SIM_OWNERS runs everything else split).
final class SessionShardTests: XCTestCase {
    /// The engine attaches Reactor's BPF program; NodeCore chooses indices and
    /// the shards check ownership with Node's mirror of it. They must agree on every datagram.
    func testOwnershipRuleIsTheSteeringProgram() {
        var rng = SessionRandom(seed: 9)
        for owners in 1...5 {
            for k in 0..<4000 {
                var d = (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if !d.isEmpty, k % 2 == 0 { d[0] = [4, 7, 1, 5][k / 2 % 4] }
                if d.count > 12, k % 3 == 0 { d[12] = 4 }
                if d.count > 16, k % 5 == 0 { d[16] = 4 }
                for (relayInner, anchor) in [(false, false), (true, false), (true, true)] {
                    d.withUnsafeBytes { b in
                        XCTAssertEqual(SessionOwnership.owner(ofDatagram: b, length: b.count, owners: owners, relayInner: relayInner,
                                                              anchor: anchor),
                                       owners > 1 ? Steering.group(of: b, groups: owners, relayInner: relayInner, relayByPair: anchor) : 0,
                                       "\(d)")
                    }
                }
            }
        }
    }

    /// Every receiver index a split session layer hands out is steered to the peer's owner.
    func testIndicesAreChosenForTheOwner() {
        var ctx = SessionContext(identity: Identity(secret: SecretKey(bytes: [UInt8](repeating: 7, count: 32))!),
                                 timings: .default, rng: SessionRandom(seed: 3), owners: 3)
        for p in 0..<30 {
            for _ in 0..<20 {
                let pairBit = p % 2 == 0
                let i = ctx.allocateIndex(for: PeerID(rawValue: p), pairBit: pairBit)
                XCTAssertEqual(SessionOwnership.owner(ofIndex: i, owners: 3), p % 3)
                var le = i.littleEndian
                withUnsafeBytes(of: &le) {
                    XCTAssertEqual(Int($0[0]) % 3, p % 3, "the index's first byte on the wire")
                    XCTAssertEqual($0[1] & 1 == 1, pairBit, "the pair bit: the low bit of its second byte")
                }
            }
        }
    }

    /// The two ends of a session set the pair bit opposite, so an anchor steers the
    /// two directions of a relayed pair to different lanes (with 2 lanes, always).
    func testThePairBitIsOppositeAtTheTwoEnds() {
        var rng = SessionRandom(seed: 5)
        for _ in 0..<50 {
            let a = SessionSim.identity(&rng).publicKey, b = SessionSim.identity(&rng).publicKey
            XCTAssertNotEqual(SessionOwnership.pairBit(own: a, peer: b), SessionOwnership.pairBit(own: b, peer: a))
        }
    }

    /// A keypair both reactors seal under never gives one counter twice,
    /// however the two interleave (two threads, one atomic).
    func testSharedSendCounterNeverRepeats() {
        let c = AtomicSendCounter()
        let n = 100_000
        let a = UnsafeMutablePointer<UInt64>.allocate(capacity: n), b = UnsafeMutablePointer<UInt64>.allocate(capacity: n)
        defer { a.deallocate(); b.deallocate() }
        let done = DispatchSemaphore(value: 0)
        let bits = UInt(bitPattern: b)
        Thread {
            let b = UnsafeMutablePointer<UInt64>(bitPattern: bits)!
            for i in 0..<n { b[i] = c.take() }
            done.signal()
        }.start()
        for i in 0..<n { a[i] = c.take() }
        done.wait()
        var seen = Set<UInt64>()
        for i in 0..<n { seen.insert(a[i]); seen.insert(b[i]) }
        XCTAssertEqual(seen.count, 2 * n)
        XCTAssertEqual(c.current, UInt64(2 * n))
    }
}

/// The relay-tag keys of one hop across a rekey (RelayHop.swift): a RELAY is tagged under the
/// sender's current keypair, and the receiver takes a tag under its current, next or previous one.
final class RelayHopKeysTests: XCTestCase {
    func keypair(_ seed: UInt8, index: UInt32) -> Keypair {
        let k = TransportKey(bytes: [UInt8](repeating: seed, count: 32))
        let r = TransportKey(bytes: [UInt8](repeating: seed &+ 100, count: 32))
        return Keypair(keys: TransportKeys(send: k, receive: r), localIndex: index, remoteIndex: index,
                       createdAt: Instant(ns: 0), isInitiator: true, timings: .default)
    }

    func relay(taggedBy key: RelayTagKey) -> [UInt8] {
        var m = RelayMessage.wrap([4] + [UInt8](repeating: 7, count: 47), for: MemberID(rawValue: 42))
        m.withUnsafeMutableBytes { RelayTag.seal($0.baseAddress!, length: $0.count, key: key) }
        return m
    }

    func testATagUnderAnyKeypairOfTheSessionPassesAndNoOtherDoes() {
        let old = keypair(1, index: 1), cur = keypair(2, index: 2), new = keypair(3, index: 3), foreign = keypair(4, index: 4)
        let hop = KeypairSlots(current: cur, previous: old, next: new).relayHop
        XCTAssertEqual(hop.send, cur.keys.send.relayTagKey, "we tag under the current keypair")
        XCTAssertEqual(KeypairSlots(next: new).relayHop.send, new.keys.send.relayTagKey, "before it is confirmed: next")
        XCTAssertNil(KeypairSlots().relayHop.send)
        // The peer's send key is our receive key of the same keypair.
        for (k, ok) in [(old, true), (cur, true), (new, true), (foreign, false)] {
            let m = relay(taggedBy: k.keys.receive.relayTagKey)
            XCTAssertEqual(m.withUnsafeBytes { hop.check($0.baseAddress!, length: m.count) }, ok, "keypair \(k.localIndex)")
        }
        let mine = relay(taggedBy: cur.keys.send.relayTagKey)
        XCTAssertFalse(mine.withUnsafeBytes { hop.check($0.baseAddress!, length: mine.count) }, "our own direction's key is not the peer's")
        XCTAssertFalse(mine.withUnsafeBytes { RelayHopKeys().check($0.baseAddress!, length: mine.count) }, "no session: nothing passes")
    }
}
