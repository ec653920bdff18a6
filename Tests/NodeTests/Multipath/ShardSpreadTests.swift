import XCTest
@testable import Support
@testable import Wire
@testable import Protocol

/// The sender's "failed here" rule for a spread's paths (SessionShard+Spread.swift): silence
/// means failure only against the gap a path usually has between packets heard over it.
final class ShardSpreadTests: XCTestCase {
    let fast = Endpoint("198.18.1.2:51820")!, slow = Endpoint("198.18.3.2:51820")!
    func ms(_ x: UInt64) -> Instant { Instant(ns: x * 1_000_000) }

    func spread() -> ShardSpread {
        var r = SpreadRoute()
        r.append(SpreadPath(slot: 0, endpoint: slow, relayFor: nil, srtt: .milliseconds(20), rttvar: .milliseconds(1), minRTT: .milliseconds(20)))
        r.append(SpreadPath(slot: 1, endpoint: fast, relayFor: nil, srtt: .milliseconds(20), rttvar: .milliseconds(1), minRTT: .milliseconds(20)))
        var s = ShardSpread(route: DataRoute(endpoint: slow, relayFor: nil, spread: r))
        s.sync(unkeyed: 0, now: ms(1))
        return s
    }

    /// Sends on both paths every ms from `from` to `to`; the peer's packets come over `fast`
    /// every ms, and over `slow` only when `slowToo`.
    func drive(_ s: inout ShardSpread, from: UInt64, to: UInt64, slowToo: Bool) {
        for t in from..<to {
            for k in 0..<2 where s.sentSince[k] == nil { s.sentSince[k] = ms(t) }
            s.heard(source: fast, relayed: false, now: ms(t))
            if slowToo { s.heard(source: slow, relayed: false, now: ms(t)) }
            s.checkHealth(now: ms(t))
        }
    }

    func testAPathThePeerDoesNotReplyOnIsNotFailedBySilence() {
        // The peer answers only PATH_PINGs over the slow path (every 3 s): its silence between them is its usual.
        var s = spread()
        for round in 0..<3 as Range<UInt64> {
            s.heard(source: slow, relayed: false, now: ms(10 + round * 3000))
            drive(&s, from: 11 + round * 3000, to: 3010 + round * 3000, slowToo: false)
            XCTAssertFalse(s.failed[0], "round \(round)")
        }
        XCTAssertFalse(s.failed[1])
    }

    func testAPathThatFallsSilentAfterCarryingRepliesFails() {
        var s = spread()
        drive(&s, from: 2, to: 1000, slowToo: true)
        XCTAssertFalse(s.failed[0])
        drive(&s, from: 1000, to: 1200, slowToo: false)   // cut: nothing more over it
        XCTAssertTrue(s.failed[0], "silent for 200 ms after a packet every ms")
        XCTAssertFalse(s.failed[1])
        s.heard(source: slow, relayed: false, now: ms(1200))
        XCTAssertFalse(s.failed[0], "anything heard makes it usable again")
    }

    /// A path that failed here, whose peer then replies over another path: a PATH_PONG that
    /// came back over it (NodeCore's sample count moved in a later push) makes it usable.
    func testAPongOverAFailedPathMakesItUsableAgain() {
        var s = spread()
        drive(&s, from: 2, to: 1000, slowToo: true)
        drive(&s, from: 1000, to: 1200, slowToo: false)
        XCTAssertTrue(s.failed[0])
        s.sync(unkeyed: 0, now: ms(1300))
        XCTAssertTrue(s.failed[0], "the same samples: still failed")
        var r = SpreadRoute()
        r.append(SpreadPath(slot: 0, endpoint: slow, relayFor: nil, srtt: .milliseconds(20), rttvar: .milliseconds(1),
                            minRTT: .milliseconds(20), lastRTT: .milliseconds(20), samples: 1))
        r.append(s.route.spread[1])
        s.route = DataRoute(endpoint: slow, relayFor: nil, spread: r)
        s.sync(unkeyed: 0, now: ms(1400))
        XCTAssertFalse(s.failed[0], "a new RTT sample: a pong came back over it")
    }
}
