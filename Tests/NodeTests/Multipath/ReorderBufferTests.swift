import XCTest
@testable import Support
@testable import Protocol

/// The receiver's reorder buffer as a pure machine with a virtual clock
/// (seed 2.9): order, depth bound, timeout skip, gap flush on path failure.
final class ReorderBufferTests: XCTestCase {
    typealias Buffer = ReorderBuffer<UInt64>
    func ms(_ x: Double) -> Instant { Instant(ns: UInt64(x * 1e6)) }

    /// Feeds one packet (its handle is its counter) and drains what it releases.
    @discardableResult
    func feed(_ b: inout Buffer, _ c: UInt64, path: Int = 0, at t: Instant = .zero) -> [UInt64] {
        if case .drop(let h) = b.handle(counter: c, packet: c, path: path, now: t) { XCTAssertEqual(h, c); return [] }
        return drain(&b)
    }

    func drain(_ b: inout Buffer) -> [UInt64] {
        var out: [UInt64] = []
        while let h = b.pollRelease() { out.append(h) }
        return out
    }

    func testInOrderPassesAndHoldsUntilTheGapFills() {
        var b = Buffer()
        XCTAssertEqual(feed(&b, 0), [0])
        XCTAssertEqual(feed(&b, 2), [])
        XCTAssertEqual(feed(&b, 3), [])
        XCTAssertEqual(b.heldCount, 2)
        XCTAssertEqual(feed(&b, 1), [1, 2, 3])
        XCTAssertEqual(b.counters.held, 2)
        XCTAssertEqual(b.counters.releasedInOrder, 4)
        XCTAssertNil(b.pollTimeout())
    }

    func testLateAndDuplicatePacketsAreDroppedAndCounted() {
        var b = Buffer()
        feed(&b, 0)
        feed(&b, 2)
        XCTAssertEqual(feed(&b, 0), [])
        XCTAssertEqual(feed(&b, 2), [])
        XCTAssertEqual(b.counters.droppedLateDuplicate, 2)
        XCTAssertEqual(b.heldCount, 1)
    }

    func testGapOlderThanTheTimeoutIsSkipped() {
        var b = Buffer()
        feed(&b, 0, at: ms(0))
        feed(&b, 2, at: ms(1))
        feed(&b, 3, at: ms(2))
        let (deadline, _) = b.pollTimeout()!
        XCTAssertEqual(deadline, ms(1) + b.releaseTimeout)
        b.handleTimeout(now: deadline - Span(ns: 1))
        XCTAssertEqual(drain(&b), [])
        b.handleTimeout(now: deadline)
        XCTAssertEqual(drain(&b), [2, 3])
        XCTAssertEqual(b.counters.releasedByTimeout, 2)
        XCTAssertEqual(b.counters.gapsSkipped, 1)
        // The skipped packet arriving now is late.
        XCTAssertEqual(feed(&b, 1, at: deadline), [])
        XCTAssertEqual(b.counters.droppedLateDuplicate, 1)
    }

    func testTimeoutSkipsOnlyExpiredGaps() {
        var b = Buffer()
        feed(&b, 0, at: ms(0))
        feed(&b, 2, at: ms(0))   // gap 1 waits from 0
        let t = b.releaseTimeout
        feed(&b, 5, at: ms(0) + t - Span(ns: 1_000_000))  // gaps 3, 4 wait from later
        b.handleTimeout(now: ms(0) + t)
        XCTAssertEqual(drain(&b), [2])
        XCTAssertEqual(b.heldCount, 1)
        XCTAssertEqual(b.next, 3)
    }

    func testPathFailureFlushesItsGapsAtOnce() {
        // Path 0 (fast) delivered 0, 2, 4, 6; path 1 (slow) had 1, 3, 5 in flight and fails.
        var b = Buffer()
        XCTAssertEqual(feed(&b, 0, path: 0), [0])
        for c in [2, 4, 6] as [UInt64] { feed(&b, c, path: 0, at: ms(1)) }
        XCTAssertEqual(feed(&b, 1, path: 1, at: ms(2)), [1, 2])
        b.handlePathFailed(1, now: ms(3))
        XCTAssertEqual(drain(&b), [4, 6])
        XCTAssertEqual(b.counters.flushedByPathFailure, 2)
        XCTAssertEqual(b.heldCount, 0)
        XCTAssertEqual(b.next, 7)
    }

    func testPathFailureKeepsGapsALivePathCanStillFill() {
        // Path 0 delivered up to 1 and fails; live paths 1 and 2 delivered up to 8 and 10. A path
        // delivers in order, so gaps below min(8, 10) can only be path 0's: flushed. Gap 9 may still
        // come on path 1: kept.
        var b = Buffer()
        feed(&b, 0, path: 0)
        feed(&b, 1, path: 0)
        feed(&b, 8, path: 1)
        feed(&b, 10, path: 2)
        b.handlePathFailed(0, now: ms(1))
        XCTAssertEqual(drain(&b), [8])
        XCTAssertEqual(b.next, 9)
        XCTAssertEqual(b.heldCount, 1)
    }

    func testAGapEveryLivePathPassedIsALossSkippedAtOnce() {
        // Path 0 (fast) carries the even counters, path 1 (slow) the odd ones; 3 is lost on path 1.
        var b = Buffer()
        XCTAssertEqual(feed(&b, 0, path: 0, at: ms(0)), [0])
        XCTAssertEqual(feed(&b, 2, path: 0, at: ms(1)), [])
        XCTAssertEqual(feed(&b, 4, path: 0, at: ms(2)), [])
        XCTAssertEqual(feed(&b, 6, path: 0, at: ms(3)), [])
        XCTAssertEqual(feed(&b, 1, path: 1, at: ms(20)), [1, 2])
        // Path 1 delivers 5: it sent 3 before 5 and delivers in order, so 3 was lost. Path 0
        // passed 3 too. 4, 5 and 6 go now, long before the release timeout.
        XCTAssertEqual(feed(&b, 5, path: 1, at: ms(21)), [4, 5, 6])
        XCTAssertEqual(b.counters.releasedByLoss, 3)   // 4, 5, 6: released past the skipped gap
        XCTAssertEqual(b.counters.releasedByTimeout, 0)
        XCTAssertEqual(b.counters.gapsSkipped, 1)
        XCTAssertEqual(b.heldCount, 0)
        XCTAssertNil(b.pollTimeout())
    }

    func testAGapAPathHasNotPassedYetIsKept() {
        // Path 1 lags: it delivered 1 only; gap 3 may still come over it. Nothing is skipped.
        var b = Buffer()
        feed(&b, 0, path: 0)
        XCTAssertEqual(feed(&b, 1, path: 1), [1])
        for c in [2, 4, 6, 8] as [UInt64] { XCTAssertEqual(feed(&b, c, path: 0, at: ms(1)), c == 2 ? [2] : []) }
        XCTAssertEqual(b.heldCount, 3)
        XCTAssertEqual(b.counters.releasedByLoss, 0)
        XCTAssertEqual(feed(&b, 3, path: 1, at: ms(2)), [3, 4])
    }

    func testOneLivePathInfersNoLoss() {
        // Only path 0 has been seen: the gap's packet may be on its way over a path not seen yet.
        var b = Buffer()
        feed(&b, 0, path: 0)
        XCTAssertEqual(feed(&b, 2, path: 0), [])
        XCTAssertEqual(feed(&b, 3, path: 0), [])
        XCTAssertEqual(b.heldCount, 2)
        XCTAssertEqual(b.counters.releasedByLoss, 0)
    }

    func testDepthBoundForcesTheOldestGapOut() {
        var b = Buffer()
        feed(&b, 0)
        for c in UInt64(2)...129 { XCTAssertEqual(feed(&b, c), []) }   // 128 held (the depth), gap at 1
        XCTAssertEqual(b.heldCount, 128)
        XCTAssertEqual(b.counters.maxDepthReached, 0)
        // A 129th to hold: gap 1 is skipped, 2...130 go.
        XCTAssertEqual(feed(&b, 130), Array(UInt64(2)...130))
        XCTAssertEqual(b.counters.maxDepthReached, 1)
        XCTAssertEqual(b.counters.releasedByDepth, 128)
        XCTAssertLessThanOrEqual(b.counters.maxHeld, 128)
        // A far jump skips at most `window` slots of work and lands in the window.
        feed(&b, 1_000_000_000)
        XCTAssertEqual(b.next, 1_000_000_000 - 511)
        XCTAssertEqual(b.heldCount, 1)
    }

    func testWindowIsWiderThanTheDepth() {
        // A slow path's gap spans the fast path's packets: held counters may lie up to the
        // window (512) above the gap while fewer than the depth (128) wait.
        var b = Buffer()
        feed(&b, 0)
        for c in stride(from: UInt64(4), through: 508, by: 4) { XCTAssertEqual(feed(&b, c), []) }
        XCTAssertEqual(b.heldCount, 127)
        XCTAssertEqual(b.counters.maxDepthReached, 0)
        XCTAssertEqual(feed(&b, 1), [1])   // the slow path's packets fill the gaps in turn
        XCTAssertEqual(feed(&b, 2), [2])
        XCTAssertEqual(feed(&b, 3), [3, 4])
        // Beyond the window: the oldest gaps go until it fits.
        var w = Buffer()
        feed(&w, 0)
        feed(&w, 10)
        XCTAssertEqual(feed(&w, 600), [10])   // next = 600 − 511: gap 1...9 and 11...88 skipped
        XCTAssertEqual(w.next, 89)
        XCTAssertEqual(w.counters.maxDepthReached, 1)
        // Full, and a packet below every held one arrives: it is the next after the skip.
        var f = Buffer()
        feed(&f, 0)
        for c in UInt64(200)..<328 { feed(&f, c) }
        XCTAssertEqual(f.heldCount, 128)
        XCTAssertEqual(feed(&f, 150), [150])
        XCTAssertEqual(f.next, 151)
        XCTAssertEqual(f.heldCount, 128)
        XCTAssertEqual(f.counters.maxDepthReached, 1)
    }

    func testMemoryIsBoundedByTheDepth() {
        var b = Buffer()
        let size = b.storageBytes
        var rng = SessionRandom(seed: 5)
        var c: UInt64 = 0
        for _ in 0..<20_000 {
            c += 1 + rng.next() % 3
            feed(&b, c, path: Int(rng.next() % 2), at: ms(Double(c) / 10))
            if rng.next() % 50 == 0 { b.handleTimeout(now: ms(Double(c) / 10 + 1000)); _ = drain(&b) }
            XCTAssertLessThanOrEqual(b.heldCount, 128)
        }
        XCTAssertEqual(b.storageBytes, size)
        XCTAssertLessThanOrEqual(b.counters.maxHeld, 128)
    }

    func testReleaseTimeoutAdaptsToTheSpread() {
        var b = Buffer()
        XCTAssertEqual(b.releaseTimeout, b.timings.minReleaseTimeout)
        b.setLatencySpread(.milliseconds(40))
        XCTAssertEqual(b.releaseTimeout, .milliseconds(65))  // 40 × 1.5 + 5
        b.setLatencySpread(.seconds(UInt64(10)))
        XCTAssertEqual(b.releaseTimeout, b.timings.maxReleaseTimeout)
        // Observed waits raise it too: gaps that take 30 ms to fill.
        var o = Buffer()
        var c: UInt64 = 0
        for k in 0..<20 {
            let t0 = ms(Double(k) * 100)
            feed(&o, c + 1, at: t0)
            feed(&o, c, at: t0 + .milliseconds(30))
            c += 2
        }
        XCTAssertGreaterThan(o.releaseTimeout, .milliseconds(45))
    }

    func testLatePacketAfterATimeoutSkipRaisesTheTimeout() {
        var b = Buffer()
        feed(&b, 0, at: ms(0))
        feed(&b, 2, at: ms(0))
        let t0 = b.releaseTimeout
        b.handleTimeout(now: ms(0) + t0)
        XCTAssertEqual(drain(&b), [2])
        XCTAssertEqual(feed(&b, 1, at: ms(0) + t0 + .milliseconds(1)), [])  // gap 1 came after all
        XCTAssertEqual(b.counters.lateAfterSkip, 1)
        XCTAssertGreaterThan(b.releaseTimeout, t0)
        // A second copy of it is a plain duplicate.
        feed(&b, 1, at: ms(100))
        XCTAssertEqual(b.counters.lateAfterSkip, 1)
        XCTAssertEqual(b.counters.droppedLateDuplicate, 2)

        // A gap skipped for depth says nothing about the timeout.
        var d = Buffer()
        feed(&d, 0)
        feed(&d, 513)  // 1...1 skipped: beyond the window
        XCTAssertEqual(d.counters.maxDepthReached, 1)
        let before = d.releaseTimeout
        feed(&d, 1)
        XCTAssertEqual(d.counters.droppedLateDuplicate, 1)
        XCTAssertEqual(d.counters.lateAfterSkip, 0)
        XCTAssertEqual(d.releaseTimeout, before)
    }
}
