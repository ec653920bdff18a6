import XCTest
@testable import Support
@testable import Protocol

/// The sender's scheduler, path health and bandwidth estimator as pure
/// machines with a virtual clock (seed 2.8, 2.11, 3.11).
final class SchedulerTests: XCTestCase {
    typealias Report = MultipathScheduler.PathReport
    func ms(_ x: Double) -> Instant { Instant(ns: UInt64(x * 1e6)) }

    /// Each report carries a new RTT sample (the spread's paths are pinged every 100 ms).
    var samples: UInt32 = 0
    func report(rtt: UInt64, mbit: Double?, queueing: Bool = false) -> Report {
        samples += 1
        let srtt = Span.milliseconds(rtt + (queueing ? 20 : 0))
        return Report(usable: true, srtt: srtt, rttvar: .zero, minRTT: .milliseconds(rtt),
                      deliveredBitsPerSecond: mbit.map { UInt64($0 * 1e6) }, lastRTT: srtt, sample: samples)
    }

    /// Sends `n` packets of 1400 bytes spaced `gap` apart; returns packets per path.
    func send(_ s: inout MultipathScheduler, _ n: Int, from t0: Instant, gap: Span = Span(ns: 100_000),
              counter c0: UInt64 = 0) -> [Int] {
        var per = [Int](repeating: 0, count: 8)
        for k in 0..<n {
            guard let p = s.pick(counter: c0 + UInt64(k), length: 1400, now: t0 + gap * UInt64(k)) else { continue }
            per[p.path] += 1
        }
        return per
    }

    /// Paths that appeared at 0, delivered, and report their rates at 1 s (a new path's
    /// rate counts only after a full window: until then it has the others' mean).
    let t1 = Instant(ns: 1_000_000_000)
    func confirmed(_ rtts: [UInt64], _ mbits: [Double?], timings: MultipathTimings = .default) -> MultipathScheduler {
        var s = MultipathScheduler(timings: timings)
        for (i, r) in rtts.enumerated() {
            s.update(path: i, report: report(rtt: r, mbit: nil, queueing: true), now: .zero)
            s.handleDelivered(path: i)
        }
        for (i, r) in rtts.enumerated() {
            s.update(path: i, report: report(rtt: r, mbit: mbits[i], queueing: true), now: t1)
        }
        return s
    }

    func testWeightsFollowBandwidth() {
        var s = confirmed([20, 20], [50, 20])
        let per = send(&s, 7000, from: t1)
        XCTAssertEqual(Double(per[0]) / 7000, 50.0 / 70, accuracy: 0.01)
        XCTAssertEqual(Double(per[1]) / 7000, 20.0 / 70, accuracy: 0.01)
        XCTAssertEqual(s.counters.duplicates, 0)
    }

    func testEqualSharesBeforeAnyEstimate() {
        var s = confirmed([20, 20, 20], [nil, nil, nil])
        let per = send(&s, 3000, from: t1)
        XCTAssertEqual(per[0], 1000)
        XCTAssertEqual(per[1], 1000)
        XCTAssertEqual(per[2], 1000)
    }

    func testHysteresisTable() {
        let rows: [(committed: Double, candidate: Double, commit: Bool)] = [
            (0, 10, true), (0, 0, false), (100, 100, false), (100, 119, false), (100, 120, false),
            (100, 121, true), (100, 81, false), (100, 80, false), (100, 79, true), (100, 300, true),
        ]
        for r in rows {
            XCTAssertEqual(MultipathScheduler.shouldCommit(committed: r.committed, candidate: r.candidate), r.commit, "\(r)")
        }
        // Through the machine: +10% leaves the weights alone, +30% moves them.
        var s = confirmed([20, 20], [50, 50])
        s.update(path: 0, report: report(rtt: 20, mbit: 55, queueing: true), now: ms(1001))
        XCTAssertEqual(s.view(path: 0).weight, 0.5, accuracy: 1e-9)
        XCTAssertEqual(s.counters.weightChanges, 0)
        s.update(path: 0, report: report(rtt: 20, mbit: 65, queueing: true), now: ms(1002))
        XCTAssertEqual(s.view(path: 0).weight, 65.0 / 115, accuracy: 1e-9)
        XCTAssertEqual(s.counters.weightChanges, 1)
    }

    /// Samples at 1 s with no queue on `path` and a queue on `other`, no rates: a second
    /// later `path` is clearly unsaturated (`isClear`) and `other` saturated.
    func clear(_ s: inout MultipathScheduler, path: Int, other: Int) {
        s.update(path: path, report: report(rtt: 20, mbit: nil, queueing: false), now: t1)
        s.update(path: other, report: report(rtt: 20, mbit: nil, queueing: true), now: t1)
    }

    func testUnsaturatedPathIsProbedUpward() {
        var noBalance = MultipathTimings()
        noBalance.balanceStep = 0  // the queue balance has its own test
        var s = confirmed([20, 20], [nil, nil], timings: noBalance)
        clear(&s, path: 0, other: 1)
        s.update(path: 1, report: report(rtt: 20, mbit: 40, queueing: true), now: ms(2000))
        s.update(path: 0, report: report(rtt: 20, mbit: 40, queueing: false), now: ms(2000))
        XCTAssertEqual(s.view(path: 0).weight, 60.0 / 100, accuracy: 1e-9)  // 40 × 1.5 vs 40
        // Given less, an unsaturated path keeps its basis; a saturated one follows what it delivers.
        s.update(path: 1, report: report(rtt: 20, mbit: 20, queueing: true), now: ms(2100))
        s.update(path: 0, report: report(rtt: 20, mbit: 10, queueing: false), now: ms(2100))
        XCTAssertEqual(s.view(path: 0).weight, 60.0 / 80, accuracy: 1e-9)
        // (committed, delivered, saturated, measured, another path saturated) -> basis
        let rows: [(Double, Double, Bool, Bool, Bool, Double)] = [
            (0, 40, false, false, true, 50), (60, 40, false, false, true, 60), (40, 40, false, false, true, 50),
            (60, 40, true, false, true, 40), (0, 40, true, false, false, 40), (60, 40, true, true, false, 40),
            // Nobody saturated: the flow takes what the split gives, no guess grows.
            (40, 40, false, false, false, 40), (40, 45, false, false, false, 45),
            // Measured: follows what it delivers, never a guess above it.
            (40, 40, false, true, true, 40), (40, 48, false, true, true, 48), (50, 40, false, true, true, 50),
        ]
        for r in rows {
            XCTAssertEqual(MultipathScheduler.capacityBasis(committed: r.0, delivered: r.1, saturated: r.2, measured: r.3,
                                                            clearWhileOthersSaturated: r.4, probeGain: 1.25), r.5, "\(r)")
        }
    }

    /// perf/multipath A: a guess 25–50% above a path's share, then its first measurement
    /// (saturated for a whole window) only a little below the guess. The measurement
    /// replaces the guess whatever the difference; later ones pass the hysteresis.
    func testFirstMeasurementReplacesTheGuess() {
        var noBalance = MultipathTimings()
        noBalance.balanceStep = 0
        var s = confirmed([20, 20], [nil, nil], timings: noBalance)
        clear(&s, path: 0, other: 1)
        // Path 1 saturated (measured 49), path 0 clearly not: path 0's guess is 45 × 1.5.
        s.update(path: 1, report: report(rtt: 20, mbit: 49, queueing: true), now: ms(2000))
        s.update(path: 0, report: report(rtt: 20, mbit: 45, queueing: false), now: ms(2000))
        XCTAssertEqual(s.view(path: 0).committedBitsPerSecond, 67.5e6, accuracy: 1)
        // Path 0 takes more, fills, and stays saturated for a second: measured 52, 23% under its guess.
        var t = ms(2000)
        for _ in 0..<11 {
            t = t + .milliseconds(100)
            s.update(path: 0, report: report(rtt: 20, mbit: 52, queueing: true), now: t)
        }
        XCTAssertEqual(s.view(path: 0).committedBitsPerSecond, 52e6, accuracy: 1)
        // Measured 58 (+12%) or 44 (-15%) afterwards: inside the hysteresis, the weights stay.
        let changes = s.counters.weightChanges
        s.update(path: 0, report: report(rtt: 20, mbit: 58, queueing: true), now: t + .milliseconds(100))
        s.update(path: 0, report: report(rtt: 20, mbit: 44, queueing: true), now: t + .milliseconds(200))
        XCTAssertEqual(s.view(path: 0).committedBitsPerSecond, 52e6, accuracy: 1)
        XCTAssertEqual(s.counters.weightChanges, changes)
        // Measured once, a path is not guessed upward again within `remeasure`.
        s.update(path: 0, report: report(rtt: 20, mbit: 50, queueing: false), now: t + .milliseconds(300))
        XCTAssertEqual(s.view(path: 0).committedBitsPerSecond, 52e6, accuracy: 1)
    }

    /// A path whose queue comes and goes (not clear for a whole window) is not guessed
    /// upward while another is saturated: the queue balance evens such a split out.
    func testAPathWithSomeQueueIsNotGuessedUpward() {
        var noBalance = MultipathTimings()
        noBalance.balanceStep = 0
        var s = confirmed([20, 20], [nil, nil], timings: noBalance)
        s.update(path: 0, report: report(rtt: 20, mbit: nil, queueing: false), now: ms(1500))  // clear only since 1.5 s
        s.update(path: 1, report: report(rtt: 20, mbit: nil, queueing: true), now: ms(1500))
        s.update(path: 1, report: report(rtt: 20, mbit: 49, queueing: true), now: ms(2000))
        s.update(path: 0, report: report(rtt: 20, mbit: 45, queueing: false), now: ms(2000))
        XCTAssertEqual(s.view(path: 0).committedBitsPerSecond, 0, "no guess: it keeps the others' mean")
        XCTAssertEqual(s.view(path: 0).weight, 0.5, accuracy: 1e-9)
    }

    /// Queue balance between paths of about the same base delay (rule 2): the one whose
    /// queue stands more than `balanceSlack` above the other's gives up a little of its
    /// share per sample, and takes it back once the queues are level.
    func testQueueBalanceTrim() {
        let q = { (x: UInt64) in Span.milliseconds(x) }
        let rows: [(trim: Double, queue: Span, others: Span?, next: Double)] = [
            (1, q(30), q(5), 0.99), (1, q(15), q(5), 1), (0.9, q(15), q(5), 0.909), (0.5, q(40), q(0), 0.5),
            (0.8, q(0), nil, 1), (1, q(0), q(30), 1),
        ]
        for r in rows {
            XCTAssertEqual(MultipathScheduler.nextTrim(r.trim, queue: r.queue, others: r.others), r.next, accuracy: 1e-9, "\(r)")
        }
        // Through the machine: equal estimates, path 1 with a 20 ms queue at every sample, path 0 none.
        var s = confirmed([20, 20], [50, 50])
        var t = t1
        for _ in 0..<20 {
            t = t + .milliseconds(100)
            s.update(path: 0, report: report(rtt: 20, mbit: 48, queueing: false), now: t)
            s.update(path: 1, report: report(rtt: 20, mbit: 50, queueing: true), now: t)
        }
        var f = 1.0
        for _ in 0..<20 { f *= 0.99 }
        XCTAssertEqual(s.view(path: 1).weight, f / (1 + f), accuracy: 0.01)
        XCTAssertNil(s.view(path: 0).skipped, "the path without a queue is not skipped for the spread")
        XCTAssertNil(s.view(path: 1).skipped)
    }

    func testPathWhoseSpreadExceedsTheDepthIsSkipped() {
        // 20 ms and 200 ms RTT: one-way spread 90 ms; at 10 000 packets/s that is 900 packets ≫ 128.
        // (The depth rule alone: the latency rule would skip this path at any rate.)
        var depthOnly = MultipathTimings()
        depthOnly.latencySkip = false
        var s = confirmed([20, 200], [50, 20], timings: depthOnly)
        let per = send(&s, 20_000, from: t1)
        XCTAssertEqual(s.view(path: 1).skipped, .reorderDepth)
        XCTAssertGreaterThanOrEqual(s.counters.reorderSkips, 1)
        XCTAssertLessThan(per[1], 300)  // only before the constraint saw the rate
        // At a low rate (50 packets/s: 4.5 packets of spread) the slow path is used again after the hold.
        var t = ms(3000) + .seconds(UInt64(2))
        var slow = 0
        for k in 0..<400 {
            t = t + .milliseconds(20)
            if let p = s.pick(counter: 30_000 + UInt64(k), length: 1400, now: t), p.path == 1 { slow += 1 }
        }
        XCTAssertNil(s.view(path: 1).skipped)
        XCTAssertGreaterThan(slow, 20)
    }

    func testHardCheckSkipsASlowPathTheFastOneOutruns() {
        // The predicted check is blind at the start (no rate yet): the per-packet check must catch it.
        var tim = MultipathTimings()
        tim.depthSkip = 1e9  // disable the predicted check
        tim.latencySkip = false  // and the latency rule
        var s = MultipathScheduler(timings: tim)
        for (now, m0, m1) in [(Instant.zero, nil, nil), (t1, 90.0, 10.0)] as [(Instant, Double?, Double?)] {
            s.update(path: 0, report: report(rtt: 10, mbit: m0, queueing: true), now: now)
            s.update(path: 1, report: report(rtt: 400, mbit: m1, queueing: true), now: now)
        }
        s.handleDelivered(path: 0)
        s.handleDelivered(path: 1)
        // 10 µs apart: 200 ms of spread is 20 000 packets; the fast path would run > 128 ahead.
        _ = send(&s, 2000, from: t1, gap: Span(ns: 10_000))
        XCTAssertEqual(s.view(path: 1).skipped, .reorderDepth)
        XCTAssertEqual(s.counters.reorderSkips, 1)
    }

    func testMakeBeforeBreakDuplicatesUntilTheNewPathDelivers() {
        var s = confirmed([20], [50])
        _ = send(&s, 10, from: t1)
        s.update(path: 1, report: report(rtt: 20, mbit: nil), now: ms(1010))
        var dups = 0
        for k in 0..<20 {
            let p = s.pick(counter: 100 + UInt64(k), length: 1400, now: ms(1010 + Double(k) * 0.1))!
            if p.path == 1 { XCTAssertEqual(p.duplicate, 0); dups += 1 } else { XCTAssertNil(p.duplicate) }
        }
        XCTAssertEqual(dups, 10)
        XCTAssertEqual(s.counters.duplicates, 10)
        s.handleDelivered(path: 1)
        for k in 0..<20 { XCTAssertNil(s.pick(counter: 200 + UInt64(k), length: 1400, now: ms(1020))!.duplicate) }
        // The overlap also ends by itself.
        s.update(path: 2, report: report(rtt: 20, mbit: nil), now: ms(1030))
        for k in 0..<30 { _ = s.pick(counter: 300 + UInt64(k), length: 1400, now: ms(1030) + s.timings.overlap) }
        XCTAssertFalse(s.view(path: 2).overlapping)
        XCTAssertEqual(s.counters.duplicates, 10)
    }

    func testNoUsablePathIsCountedAndFailedPathsAreLeftOut() {
        var s = MultipathScheduler()
        XCTAssertNil(s.pick(counter: 0, length: 100, now: .zero))
        XCTAssertEqual(s.counters.noPath, 1)
        s = confirmed([20, 20], [50, 50])
        s.update(path: 1, report: Report(usable: false, srtt: .milliseconds(20)), now: ms(1001))
        let per = send(&s, 100, from: ms(1001))
        XCTAssertEqual(per[0], 100)
        s.remove(path: 0, now: ms(1002))
        XCTAssertNil(s.pick(counter: 1000, length: 100, now: ms(1003)))
    }

    // MARK: Path health and bandwidth

    func testFailureIsDetectedWithinAFewRTTsWhileDataFlows() {
        var h = PathHealth()
        h.handleRTTSample(.milliseconds(20), now: .zero)
        for k in 1...5 { h.handleRTTSample(.milliseconds(20), now: ms(Double(k) * 20)) }
        XCTAssertEqual(h.state, .active)
        // Idle: never declared failed.
        XCTAssertNil(h.pollTimeout())
        XCTAssertFalse(h.handleTimeout(now: ms(10_000)))
        // Data flows from t=10 s, nothing comes back.
        h.handleSent(now: ms(10_000))
        h.handleSent(now: ms(10_010))
        let (deadline, _) = h.pollTimeout()!
        XCTAssertLessThanOrEqual((deadline - ms(10_000)).milliseconds, 5 * 20 + 100)  // "a few RTTs" (floor 100 ms)
        XCTAssertFalse(h.handleTimeout(now: deadline - Span(ns: 1)))
        XCTAssertTrue(h.handleTimeout(now: deadline))
        XCTAssertEqual(h.state, .failed(since: deadline))
        XCTAssertFalse(h.isUsable)
        XCTAssertGreaterThan(h.loss, 0)
        // Anything arriving on it makes it usable again.
        h.handleReceive(now: deadline + .milliseconds(500))
        XCTAssertEqual(h.state, .active)
    }

    func testAnswersKeepAPathAlive() {
        var h = PathHealth()
        h.handleRTTSample(.milliseconds(20), now: .zero)
        for k in 0..<100 {
            h.handleSent(now: ms(Double(k) * 10))
            h.handleReceive(now: ms(Double(k) * 10 + 5))
            XCTAssertFalse(h.handleTimeout(now: ms(Double(k) * 10 + 9)))
        }
        XCTAssertEqual(h.state, .active)
    }

    func testRTTSmoothingAndQueueing() {
        var h = PathHealth()
        h.handleRTTSample(.milliseconds(20), now: .zero)
        XCTAssertFalse(h.isQueueing)
        for k in 1...30 { h.handleRTTSample(.milliseconds(60), now: ms(Double(k))) }
        XCTAssertEqual(h.srtt!.milliseconds, 60, accuracy: 1)
        XCTAssertEqual(h.minRTT, .milliseconds(20))
        XCTAssertTrue(h.isQueueing)
    }

    func testBandwidthOverOneSecond() {
        var b = BandwidthEstimator()
        XCTAssertNil(b.bitsPerSecond(now: .zero))
        // 50 Mbit/s: 6250 bytes per ms, for 3 s.
        for k in 0..<3000 { b.handleDelivered(bytes: 6250, now: ms(Double(k))) }
        XCTAssertEqual(Double(b.bitsPerSecond(now: ms(3000))!), 50e6, accuracy: 50e6 * 0.02)
        // Then 10 Mbit/s: after one second the estimate is the new rate.
        for k in 3000..<4000 { b.handleDelivered(bytes: 1250, now: ms(Double(k))) }
        XCTAssertEqual(Double(b.bitsPerSecond(now: ms(4000))!), 10e6, accuracy: 10e6 * 0.15)
        // Silence: zero after a second.
        XCTAssertEqual(b.bitsPerSecond(now: ms(6000)), 0)
    }

    /// The latency rule (seed 2.11), fixed (the default): a path whose one-way delay
    /// is above the reference's by more than 2 × max(15 ms, the reference's one-way
    /// delay) is skipped whatever the rate (perf/multipath C: an inner TCP at 2.9 Mbit/s
    /// passed the depth rule); 20 and 40 ms RTT paths are both used, 20 and 60 (B) too
    /// (the 60 ms one as a far path, under its cap), 20 and 200 (C) not; the skipped
    /// path comes back when its delay falls.
    func testPathFarBehindTheReferenceIsSkippedForLatencyAtAnyRate() {
        // Paths without a queue: one-way delay = RTT / 2.
        func confirmed(_ rtts: [UInt64], _ mbits: [Double?]) -> MultipathScheduler {
            var s = MultipathScheduler()
            for (i, r) in rtts.enumerated() {
                s.update(path: i, report: report(rtt: r, mbit: nil), now: .zero)
                s.handleDelivered(path: i)
            }
            for (i, r) in rtts.enumerated() { s.update(path: i, report: report(rtt: r, mbit: mbits[i]), now: t1) }
            return s
        }
        var near = confirmed([20, 40], [50, 50])
        let perNear = send(&near, 2000, from: t1, gap: .milliseconds(5))  // 200 packets/s: the depth rule would allow anything
        XCTAssertNil(near.view(path: 1).skipped)
        XCTAssertGreaterThan(perNear[1], 500, "a 40 ms path beside a 20 ms one is used")
        var b = confirmed([20, 60], [50, 20])
        let perB = send(&b, 2000, from: t1, gap: .milliseconds(5))
        XCTAssertNil(b.view(path: 1).skipped, "B")
        XCTAssertGreaterThan(b.view(path: 1).capBitsPerSecond, 0, "B's 60 ms path is a far path")
        XCTAssertGreaterThan(perB[1], 100, "B's far path carries a share")
        for (rtt, why) in [(200, "C"), (400, "400 ms")] {
            var s = confirmed([20, UInt64(rtt)], [50, 20])
            let per = send(&s, 2000, from: t1, gap: .milliseconds(5))
            XCTAssertEqual(s.view(path: 1).skipped, .latency, why)
            XCTAssertEqual(s.counters.latencySkips, 1, why)
            XCTAssertEqual(per[1], 0, "\(why): skipped when its report came, before any packet")
        }
        // Removed and back (it left the spread for a while): skipped again before any packet.
        var back = confirmed([20, 200], [50, 20])
        back.remove(path: 1, now: t1 + .milliseconds(10))
        back.update(path: 1, report: report(rtt: 200, mbit: nil), now: t1 + .milliseconds(20))
        XCTAssertEqual(send(&back, 500, from: t1 + .milliseconds(20), gap: .milliseconds(1))[1], 0)
        // The slow path's delay falls to 30 ms RTT: used again after the hold.
        var s = confirmed([20, 200], [50, 20])
        _ = send(&s, 400, from: t1, gap: .milliseconds(5))
        let later = t1 + .seconds(3 as UInt64)
        s.update(path: 1, report: report(rtt: 30, mbit: 20, queueing: false), now: later)
        let per = send(&s, 400, from: later, gap: .milliseconds(5))
        XCTAssertNil(s.view(path: 1).skipped)
        XCTAssertGreaterThan(per[1], 50)
    }

    /// A far path that carried the whole flow (it was the only one, or the active one)
    /// is not the reference: the latency rule still skips it, not the near path
    /// (perf/multipath B and C, session 8: the flow stayed on the far path).
    func testFarPathCarryingTheFlowIsNotTheReference() {
        for rtt in [200, 400] as [UInt64] {
            var s = MultipathScheduler()
            for i in 0..<2 {
                s.update(path: i, report: report(rtt: i == 0 ? 20 : rtt, mbit: nil), now: .zero)
                s.handleDelivered(path: i)
            }
            // The far path was given (and so "delivered") everything, the near one little.
            s.update(path: 1, report: report(rtt: rtt, mbit: 20), now: t1)
            s.update(path: 0, report: report(rtt: 20, mbit: 1), now: t1)
            let per = send(&s, 2000, from: t1, gap: .milliseconds(1))
            XCTAssertEqual(s.view(path: 1).skipped, .latency, "\(rtt) ms")
            XCTAssertNil(s.view(path: 0).skipped, "\(rtt) ms")
            XCTAssertEqual(per[1], 0, "\(rtt) ms: the far path carries nothing")
            XCTAssertEqual(per[0], 2000)
        }
    }

    // MARK: Far paths (rule 4b)

    /// The cap's rule as a table: no cap yet, the start; a queue above the limit, a cut
    /// below what the path carried; the fast path not busy, a decay; room and a binding
    /// cap, a raise (faster far below the limit); else unchanged; never below the floor.
    func testFarCapTable() {
        let t = MultipathTimings.default
        let q = { (x: Double) in Span(ns: UInt64(x * 1e6)) }
        let rows: [(cap: Double, sent: Double, queue: Span, limited: Bool, busy: Bool, start: Double, next: Double)] = [
            (0, 0, .zero, false, false, 20e6, 20e6),                  // the start
            (0, 0, .zero, false, false, 0, t.farMinCap),              // nothing to start from: the floor
            (20e6, 18e6, q(9), true, true, 0, 0.85 * 18e6),           // a queue: below what it carried
            (20e6, 0, q(9), true, true, 0, 0.85 * 20e6),              // nothing measured: below the cap
            (20e6, 10e6, q(9), true, true, 0, 0.85 * 0.85 * 20e6),    // a lagging sent rate: at most farCut² of the cap
            (20e6, 18e6, q(5), true, false, 0, 20e6),                 // the fast path just stopped being busy: held
            (20e6, 18e6, q(1), true, false, 0, 20e6),                 // the fast path not busy, not yet idle: held
            (t.farMinCap, 0, q(1), false, false, 0, t.farMinCap),     // never below the floor
            (16e6, 16e6, q(0.5), true, true, 0, 16e6 * t.farGrowFast), // no queue, binding: fast raise
            (16e6, 16e6, q(3), true, true, 0, 16e6 * t.farGrow),      // below half the limit: raise
            (16e6, 16e6, q(5), true, true, 0, 16e6 * t.farTrim),      // between half and the limit: trimmed
            (16e6, 16e6, q(5), false, true, 0, 16e6 * t.farTrim),     // (binding or not)
            (16e6, 12e6, q(1), false, true, 0, 16e6),                 // not binding: hold
        ]
        for r in rows {
            let next = MultipathScheduler.nextCap(cap: r.cap, sent: r.sent, queue: r.queue, limited: r.limited,
                                                  fastBusy: r.busy, fastIdle: false, start: r.start, timings: t)
            XCTAssertEqual(next, r.next, accuracy: 1, "\(r)")
        }
        // The fast path idle (no queue for `farIdleHold`): the cap decays.
        XCTAssertEqual(MultipathScheduler.nextCap(cap: 20e6, sent: 18e6, queue: q(1), limited: true, fastBusy: false,
                                                  fastIdle: true, start: 0, timings: t), 0.95 * 20e6, accuracy: 1)
        // Which paths are far: more than max(5 ms, the fastest's one-way delay) behind it.
        XCTAssertTrue(MultipathScheduler.isFar(minRTT: .milliseconds(60), fastest: .milliseconds(20), timings: t))
        XCTAssertFalse(MultipathScheduler.isFar(minRTT: .milliseconds(40), fastest: .milliseconds(20), timings: t))
        XCTAssertFalse(MultipathScheduler.isFar(minRTT: .milliseconds(20), fastest: .milliseconds(20), timings: t))
        XCTAssertTrue(MultipathScheduler.isFar(minRTT: .milliseconds(14), fastest: .milliseconds(2), timings: t))
    }

    /// B's paths at 70 Mbit/s offered: the far path carries at most its cap (a token
    /// bucket), the near one the rest; its cap follows its queue in each new RTT sample
    /// (cut above the limit, raised while it is binding and the near path is busy), and
    /// small packets never take it.
    func testFarPathCarriesAtMostItsCapWhichFollowsItsQueue() {
        var s = MultipathScheduler()
        var sample: UInt32 = 1000  // above the helper's `report` samples
        func samples(_ at: Instant, farQueueMs: Double, nearQueueMs: Double, nearMbit: Double = 50, farSent: Double? = nil) {
            sample += 1
            s.update(path: 0, report: Report(usable: true, srtt: .milliseconds(20), minRTT: .milliseconds(20),
                                             deliveredBitsPerSecond: UInt64(nearMbit * 1e6),
                                             lastRTT: Span(ns: UInt64((20 + nearQueueMs) * 1e6)), sample: sample), now: at)
            s.update(path: 1, report: Report(usable: true, srtt: .milliseconds(60), minRTT: .milliseconds(60),
                                             deliveredBitsPerSecond: farSent.map { UInt64($0) },
                                             lastRTT: Span(ns: UInt64((60 + farQueueMs) * 1e6)), sample: sample), now: at)
        }
        for i in 0..<2 {
            s.update(path: i, report: report(rtt: i == 0 ? 20 : 60, mbit: nil), now: .zero)
            s.handleDelivered(path: i)
        }
        samples(t1, farQueueMs: 0, nearQueueMs: 10)
        let cap0 = s.view(path: 1).capBitsPerSecond
        XCTAssertEqual(cap0, 0.4 * 50e6, accuracy: 1, "it starts at 40% of the near path's basis (its delivered rate: no path is saturated, so no guess above it)")
        XCTAssertNil(s.view(path: 1).skipped)
        // 1 s at 70 Mbit/s of 1400-byte packets (6250/s): the far path is held to its cap.
        let per = send(&s, 6250, from: t1, gap: Span(ns: 160_000))
        let farMbit = Double(per[1] * 1400 * 8) / 1e6
        XCTAssertLessThanOrEqual(farMbit, cap0 / 1e6 * 1.02 + 0.1, "at most its cap")
        XCTAssertGreaterThan(farMbit, cap0 / 1e6 * 0.9, "its cap binds at full load")
        XCTAssertEqual(per[0] + per[1], 6250, "nothing is held or dropped: the near path takes the rest")
        // Its queue above the limit: cut below what it carried.
        let t2 = t1 + .seconds(1 as UInt64)
        samples(t2, farQueueMs: 12, nearQueueMs: 10, farSent: farMbit * 1e6)
        XCTAssertEqual(s.view(path: 1).capBitsPerSecond, 0.85 * min(cap0, farMbit * 1e6), accuracy: 1)
        XCTAssertEqual(s.counters.capCuts, 1)
        // No queue, binding (packets turned away), the near path busy: raised.
        let before = s.view(path: 1).capBitsPerSecond
        _ = send(&s, 625, from: t2, gap: Span(ns: 160_000), counter: 6250)
        samples(t2 + .milliseconds(100), farQueueMs: 0, nearQueueMs: 10)
        let raised = before * MultipathTimings.default.farGrowFast
        XCTAssertEqual(s.view(path: 1).capBitsPerSecond, raised, accuracy: 1)
        XCTAssertEqual(s.counters.capRaises, 1)
        // The near path not busy: held (a TCP backoff drains it for a moment), then, idle
        // for a second, it decays.
        samples(t2 + .milliseconds(200), farQueueMs: 0, nearQueueMs: 0)
        XCTAssertEqual(s.view(path: 1).capBitsPerSecond, raised, accuracy: 1)
        samples(t2 + .milliseconds(1200), farQueueMs: 0, nearQueueMs: 0)
        XCTAssertEqual(s.view(path: 1).capBitsPerSecond, raised * 0.95, accuracy: 1)
        // Small packets (ACKs) never take the far path.
        var small = 0
        for k in 0..<1000 {
            if let p = s.pick(counter: 6875 + UInt64(k), length: 100, now: t2 + .milliseconds(300) + Span(ns: UInt64(k) * 100_000)),
               p.path == 1 { small += 1 }
        }
        XCTAssertEqual(small, 0)
    }

    /// A flow that starts on idle paths: the far path's cap, seeded from the fast path's
    /// first reports, is lifted to `farStartShare` of what the fast path carries while that
    /// one is busy, until the far path's queue first passes the limit; after that only
    /// its queue moves it.
    func testFarCapFollowsTheFastPathUntilItsFirstQueue() {
        var s = MultipathScheduler()
        var sample: UInt32 = 1000
        func samples(_ at: Instant, fastMbit: Double, farQueueMs: Double) {
            sample += 1
            s.update(path: 0, report: Report(usable: true, srtt: .milliseconds(20), minRTT: .milliseconds(20),
                                             deliveredBitsPerSecond: UInt64(fastMbit * 1e6),
                                             lastRTT: .milliseconds(30), sample: sample), now: at)
            s.update(path: 1, report: Report(usable: true, srtt: .milliseconds(60), minRTT: .milliseconds(60),
                                             lastRTT: Span(ns: UInt64((60 + farQueueMs) * 1e6)), sample: sample), now: at)
        }
        for i in 0..<2 {
            s.update(path: i, report: report(rtt: i == 0 ? 20 : 60, mbit: nil), now: .zero)
            s.handleDelivered(path: i)
        }
        samples(t1, fastMbit: 5, farQueueMs: 0)
        XCTAssertEqual(s.view(path: 1).capBitsPerSecond, 0.4 * 5e6, accuracy: 1, "seeded from the first rate")
        samples(t1 + .milliseconds(100), fastMbit: 30, farQueueMs: 0)
        XCTAssertEqual(s.view(path: 1).capBitsPerSecond, 0.4 * 30e6, accuracy: 1, "lifted with the fast path's rate")
        samples(t1 + .milliseconds(200), fastMbit: 45, farQueueMs: 12)
        let cut = s.view(path: 1).capBitsPerSecond
        XCTAssertLessThan(cut, 0.4 * 30e6, "its first queue cuts it")
        samples(t1 + .milliseconds(300), fastMbit: 50, farQueueMs: 0)
        XCTAssertEqual(s.view(path: 1).capBitsPerSecond, cut, accuracy: 1, "after that, not lifted (not binding: held)")
    }
}
