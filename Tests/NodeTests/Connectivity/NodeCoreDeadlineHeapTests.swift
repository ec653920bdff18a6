import XCTest
@testable import Support
@testable import Protocol

/// DeadlineHeap (Protocol/Support/DeadlineHeap.swift): the deadline heap NodeCore's
/// timers live in, from tables of operations.
final class NodeCoreDeadlineHeapTests: XCTestCase {
    private func t(_ s: UInt64) -> Instant { Instant(ns: s * 1_000_000_000) }

    /// The earliest, checked against a plain minimum after every operation.
    private func checkInvariant(_ table: DeadlineHeap<Int>, _ model: [Int: Instant], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(table.count, model.count, file: file, line: line)
        XCTAssertEqual(table.earliest?.deadline, model.values.min(), file: file, line: line)
        if let e = table.earliest { XCTAssertEqual(model[e.key], e.deadline, file: file, line: line) }
        for (k, d) in model { XCTAssertEqual(table[k], d, file: file, line: line) }
    }

    func testInsertEarliestCancelReschedule() {
        enum Op { case set(Int, UInt64?), earlier(Int, UInt64) }
        // (operation, earliest key after it)
        let steps: [(Op, Int?)] = [
            (.set(1, 30), 1),
            (.set(2, 10), 2),
            (.set(3, 20), 2),
            (.set(2, 40), 3),      // reschedule later: 3 is first now
            (.set(1, 5), 1),       // reschedule earlier
            (.set(1, nil), 3),     // cancel the earliest
            (.earlier(2, 50), 3),  // armed earlier already: unchanged
            (.earlier(2, 15), 2),  // moved earlier
            (.set(4, nil), 2),     // cancelling an unarmed key is nothing
            (.set(2, nil), 3),
            (.set(3, nil), nil),
        ]
        var table = DeadlineHeap<Int>()
        var model: [Int: Instant] = [:]
        for (n, (op, first)) in steps.enumerated() {
            switch op {
            case .set(let k, let d):
                table.set(k, at: d.map(t))
                model[k] = d.map(t)
            case .earlier(let k, let d):
                table.setEarlier(k, at: t(d))
                model[k] = min(model[k] ?? t(d), t(d))
            }
            XCTAssertEqual(table.earliest?.key, first, "step \(n)")
            checkInvariant(table, model)
        }
        XCTAssertTrue(table.isEmpty)
    }

    func testPopDueAndDue() {
        var table = DeadlineHeap<String>()
        for (k, s) in [("a", 3), ("b", 1), ("c", 2), ("d", 9), ("e", 2), ("f", 7)] as [(String, UInt64)] {
            table.set(k, at: t(s))
        }
        XCTAssertEqual(Set(table.due(now: t(2))), ["b", "c", "e"])
        XCTAssertEqual(table.due(now: t(0)), [])
        XCTAssertEqual(Set(table.due(now: t(100))), ["a", "b", "c", "d", "e", "f"])
        var popped: [Instant] = []
        while let e = table.popDue(now: t(3)) { popped.append(e.deadline) }
        XCTAssertEqual(popped, [t(1), t(2), t(2), t(3)], "due entries come out earliest first")
        XCTAssertEqual(table.count, 2)
        XCTAssertNil(table.popDue(now: t(6)))
        XCTAssertEqual(table.earliest?.key, "f")
    }

    /// Random operations against a dictionary model (a fixed seed: repeatable).
    func testRandomOperationsMatchModel() {
        var rng = SessionRandom(seed: 42)
        var table = DeadlineHeap<Int>()
        var model: [Int: Instant] = [:]
        for _ in 0..<2000 {
            let k = Int(rng.next() % 32)
            switch rng.next() % 4 {
            case 0:
                table.cancel(k)
                model[k] = nil
            case 1:
                let now = t(rng.next() % 100)
                if let e = table.popDue(now: now) {
                    XCTAssertEqual(e.deadline, model.values.min())
                    XCTAssertLessThanOrEqual(e.deadline, now)
                    model[e.key] = nil
                } else {
                    XCTAssertTrue(model.values.allSatisfy { $0 > now })
                }
            default:
                let d = t(rng.next() % 100)
                table.set(k, at: d)
                model[k] = d
            }
            let now = t(rng.next() % 100)
            XCTAssertEqual(Set(table.due(now: now)), Set(model.filter { $0.value <= now }.keys))
            checkInvariant(table, model)
        }
    }
}
