import XCTest
@testable import Support
@testable import Simulation

/// The link emulator's machine with a virtual clock: pacing, drop-tail, delay
/// line without reordering, seeded loss, cut and restore, settings syntax.
final class LinkEmulatorTests: XCTestCase {
    func ms(_ x: Double) -> Instant { Instant(ns: UInt64(x * 1e6)) }

    func drainAll(_ l: inout LinkEmulator<Int>, until end: Instant, step: Span = Span(ns: 10_000)) -> [(Int, Instant)] {
        var out: [(Int, Instant)] = []
        var t = Instant.zero
        while t <= end {
            while let o = l.pollOutput(now: t) {
                if case .deliver(let h, _) = o { out.append((h, t)) }
            }
            t = t + step
        }
        return out
    }

    func testRatePacesAndDelayAdds() {
        // 10 Mbit/s: a 1250-byte packet takes 1 ms on the wire; + 20 ms delay.
        var l = LinkEmulator<Int>(settings: LinkSettings(delay: .milliseconds(20), rate: 10_000_000, queue: .packets(100)), seed: 1)
        for i in 0..<10 { XCTAssertNil(l.send(i, length: 1250, now: .zero)) }
        XCTAssertEqual(l.pollTimeout(), ms(21))
        let out = drainAll(&l, until: ms(40))
        XCTAssertEqual(out.map(\.0), Array(0..<10))
        for (i, (_, t)) in out.enumerated() {
            XCTAssertEqual(t.ns, ms(21 + Double(i)).ns, accuracy: 20_000)
        }
        XCTAssertEqual(l.counters.delivered, 10)
        XCTAssertEqual(l.counters.deliveredBytes, 12_500)
    }

    func testDropTailInPacketsAndInTime() {
        var l = LinkEmulator<Int>(settings: LinkSettings(rate: 10_000_000, queue: .packets(5)), seed: 1)
        var refused = 0
        for i in 0..<8 where l.send(i, length: 1250, now: .zero) != nil { refused += 1 }
        XCTAssertEqual(refused, 3)
        XCTAssertEqual(l.counters.droppedQueue, 3)
        XCTAssertEqual(l.counters.maxQueued, 5)
        // After 2 ms two packets left the serializer: two more fit.
        XCTAssertNil(l.send(100, length: 1250, now: ms(2)))
        XCTAssertNil(l.send(101, length: 1250, now: ms(2)))
        XCTAssertNotNil(l.send(102, length: 1250, now: ms(2)))

        // 3 ms of queue at 10 Mbit/s: a 1250-byte packet is 1 ms, so a 4th waiting one exceeds it.
        var t = LinkEmulator<Int>(settings: LinkSettings(rate: 10_000_000, queue: .time(.milliseconds(3))), seed: 1)
        var took = 0
        for i in 0..<10 where t.send(i, length: 1250, now: .zero) == nil { took += 1 }
        XCTAssertEqual(took, 4)  // backlogs 0, 1, 2, 3 ms accepted (≤ 3 ms); 4 ms refused
    }

    func testJitterNeverReorders() {
        var l = LinkEmulator<Int>(settings: LinkSettings(delay: .milliseconds(20), jitter: .milliseconds(5)), seed: 7)
        for i in 0..<500 { XCTAssertNil(l.send(i, length: 100, now: ms(Double(i) * 0.1))) }
        let out = drainAll(&l, until: ms(200))
        XCTAssertEqual(out.map(\.0), Array(0..<500))
        var sawSpread = false
        for (i, t) in out {
            let d = (t - ms(Double(i) * 0.1)).milliseconds
            XCTAssertGreaterThanOrEqual(d, 15 - 0.02)
            XCTAssertLessThanOrEqual(d, 25 + 0.02 + 5)  // FIFO may push a packet behind a later-sampled one
            if d > 22 { sawSpread = true }
        }
        XCTAssertTrue(sawSpread)
    }

    func testLossIsSeededAndNearTheSetting() {
        func run(_ seed: UInt64) -> Int {
            var l = LinkEmulator<Int>(settings: LinkSettings(loss: 0.1), seed: seed)
            for i in 0..<10_000 {
                if l.send(i, length: 100, now: .zero) == nil { _ = l.pollOutput(now: .zero) }
            }
            return l.counters.droppedLoss
        }
        XCTAssertEqual(run(3), run(3))
        XCTAssertEqual(Double(run(3)), 1000, accuracy: 150)
    }

    func testDownCutsInFlightAndUpRestores() {
        var l = LinkEmulator<Int>(settings: LinkSettings(delay: .milliseconds(50)), seed: 1)
        for i in 0..<4 { XCTAssertNil(l.send(i, length: 100, now: .zero)) }
        l.setUp(false, now: ms(10))
        XCTAssertEqual(l.send(9, length: 100, now: ms(10)), 9)
        var dropped: [Int] = []
        while let o = l.pollOutput(now: ms(10)) {
            guard case .drop(let h) = o else { return XCTFail("delivered while down") }
            dropped.append(h)
        }
        XCTAssertEqual(dropped, [0, 1, 2, 3])
        XCTAssertEqual(l.counters.droppedDown, 5)
        XCTAssertNil(l.pollTimeout())
        l.setUp(true, now: ms(20))
        XCTAssertNil(l.send(10, length: 100, now: ms(20)))
        XCTAssertNil(l.pollOutput(now: ms(69)))
        guard case .deliver(10, _)? = l.pollOutput(now: ms(70)) else { return XCTFail("not restored") }
    }

    func testSettingsSyntax() throws {
        let s = try LinkSettings.parse("delay=20ms,jitter=500us,rate=50mbit,queue=100ms,loss=1%")
        XCTAssertEqual(s.delay, .milliseconds(20))
        XCTAssertEqual(s.jitter, Span(ns: 500_000))
        XCTAssertEqual(s.rate, 50_000_000)
        XCTAssertEqual(s.queue, .time(.milliseconds(100)))
        XCTAssertEqual(s.loss, 0.01, accuracy: 1e-12)
        XCTAssertEqual(try LinkSettings.parse("queue=64p,down").queue, .packets(64))
        XCTAssertFalse(try LinkSettings.parse("down").up)
        for bad in ["delay=fast", "rate=-1mbit", "loss=2", "queue=0p", "colour=blue", "delay=20"] {
            XCTAssertThrowsError(try LinkSettings.parse(bad), bad)
        }
    }
}
