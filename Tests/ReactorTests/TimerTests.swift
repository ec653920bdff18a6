import CReactor
import XCTest

@testable import Reactor

final class TimerTests: XCTestCase {
    func testQueueFiresInDeadlineOrderAndTiesInInsertionOrder() {
        var q = TimerQueue()
        var fired: [String] = []
        let deadlines: [(UInt64, String)] = [(50, "c"), (10, "a"), (30, "b1"), (30, "b2"), (70, "d"), (5, "first")]
        for (d, name) in deadlines { _ = q.add(deadline: d) { fired.append(name) } }
        XCTAssertEqual(q.nextDeadline(), 5)
        while let a = q.popDue(now: 60) { a() }
        XCTAssertEqual(fired, ["first", "a", "b1", "b2", "c"])
        XCTAssertEqual(q.nextDeadline(), 70)
        XCTAssertNil(q.popDue(now: 69))
    }

    func testCancelledTimerNeverFires() {
        var q = TimerQueue()
        var fired: [Int] = []
        var ids: [TimerID] = []
        for i in 0..<100 { ids.append(q.add(deadline: UInt64(1000 - i)) { fired.append(i) }) }
        for i in stride(from: 0, to: 100, by: 3) { XCTAssertTrue(q.cancel(ids[i])) }
        XCTAssertFalse(q.cancel(ids[0]), "second cancel reports not pending")
        while let a = q.popDue(now: .max) { a() }
        XCTAssertEqual(Set(fired), Set((0..<100).filter { $0 % 3 != 0 }))
        XCTAssertEqual(fired, fired.sorted(by: >), "larger i has the earlier deadline")
        XCTAssertEqual(q.count, 0)
        XCTAssertNil(q.nextDeadline())
    }

    /// Through the real loop: timerfd, epoll, and a cancel from inside another timer.
    func testReactorTimersOnTheRealClock() throws {
        let r = try Reactor()
        var fired: [Int] = []
        let base = Reactor.now()
        let ms: UInt64 = 1_000_000
        var victim: TimerID?
        r.addTimer(at: base + 30 * ms) { fired.append(3) }
        r.addTimer(at: base + 10 * ms) {
            fired.append(1)
            if let v = victim { r.cancelTimer(v) }
        }
        victim = r.addTimer(at: base + 20 * ms) { fired.append(99) }
        r.addTimer(at: base + 15 * ms) { fired.append(2) }
        // An earlier deadline added after a later one re-arms the timerfd.
        r.addTimer(at: base + 5 * ms) { fired.append(0) }
        r.addTimer(at: base + 40 * ms) { r.stop() }
        r.addTimer(at: base + 5_000 * ms) { XCTFail("loop did not stop"); r.stop() }
        r.run()
        XCTAssertEqual(fired, [0, 1, 2, 3])
        XCTAssertGreaterThanOrEqual(Reactor.now() - base, 40 * ms)
    }
}
