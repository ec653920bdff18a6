import XCTest
import Support
@testable import Engine

/// Path/endpoint change lines are budgeted (review F9: a racing attacker moved a
/// path ~150 times a second, one info line each).
final class LogBudgetTests: XCTestCase {
    func testBurstThenRateAndTheNextLineSaysHowManyWereLeftOut() {
        var b = LogBudget(burst: 3, perSecond: 2)
        let t0 = Instant(ns: 1_000_000_000)
        for _ in 0..<3 { XCTAssertEqual(b.admit(now: t0).allowed, true) }
        for _ in 0..<100 { XCTAssertEqual(b.admit(now: t0).allowed, false) }
        // Half a second refills one line, which reports the 100 left out.
        let next = b.admit(now: t0 + .milliseconds(500))
        XCTAssertTrue(next.allowed)
        XCTAssertEqual(next.leftOut, 100)
        XCTAssertFalse(b.admit(now: t0 + .milliseconds(500)).allowed)
        // A long quiet spell refills to the burst, not beyond.
        var allowed = 0
        for _ in 0..<10 where b.admit(now: t0 + .seconds(UInt64(60))).allowed { allowed += 1 }
        XCTAssertEqual(allowed, 3)
    }

    func testAClockThatGoesBackGivesNothingExtra() {
        var b = LogBudget(burst: 1, perSecond: 1)
        XCTAssertTrue(b.admit(now: Instant(ns: 10_000_000_000)).allowed)
        XCTAssertFalse(b.admit(now: Instant(ns: 5_000_000_000)).allowed)
        XCTAssertFalse(b.admit(now: Instant(ns: 10_000_000_000)).allowed)
        XCTAssertTrue(b.admit(now: Instant(ns: 11_000_000_000)).allowed)
    }
}
