import XCTest
@testable import Support
@testable import Wire
@testable import Protocol

/// The receiver's per-session buffering switch (SessionReorder): IP packets over two
/// paths start it; control messages over a second path do not (a peer whose data all
/// comes one way while its PATH_PONGs come over a far path has nothing to reorder).
final class SessionReorderTests: XCTestCase {
    let fast = Endpoint("198.18.1.2:51820")!, slow = Endpoint("198.18.3.2:51820")!
    let peer = PeerID(rawValue: 0)
    func ms(_ x: UInt64) -> Instant { Instant(ns: 1_000_000_000 + x * 1_000_000) }

    func testIPPacketsOverTwoPathsStartBuffering() {
        var r = SessionReorder<Int>(peers: 1)
        var c: UInt64 = 0
        for k in 0..<20 {
            let source = k % 2 == 0 ? fast : slow
            _ = r.handle(peer: peer, counter: c, receiverIndex: 1, source: source, relayed: false, packet: Int(c), now: ms(UInt64(k)))
            c += 1
        }
        XCTAssertTrue(r.isBuffering(peer))
    }

    func testControlMessagesOverASecondPathDoNotStartBuffering() {
        var r = SessionReorder<Int>(peers: 1)
        var c: UInt64 = 0
        for k in 0..<200 {
            // IP packets (ACKs) over the fast path; every tenth counter a PATH_PONG over the far one.
            let control = k % 10 == 9
            let v = r.handle(peer: peer, counter: c, receiverIndex: 1, source: control ? slow : fast, relayed: false,
                             packet: control ? nil : Int(c), now: ms(UInt64(k)))
            if !control { XCTAssertEqual(String(describing: v), "deliver", "counter \(c) passes at once") }
            c += 1
        }
        XCTAssertFalse(r.isBuffering(peer))
        XCTAssertNil(r.counters(of: peer), "never buffered")
    }
}
