import XCTest
@testable import Support
@testable import Protocol
@testable import Simulation

/// Two emulated paths (Simulation.LinkEmulator: rate, queue, delay) between a
/// sender running MultipathScheduler + PathHealth + BandwidthEstimator and a
/// receiver running ReorderBuffer, on a virtual clock. The scenarios of issue 14
/// (the numbers are RTTs; one-way delay is half): A 50 Mbit/s 20 ms + 50/20,
/// B 50/20 + 20/60, C 50/20 + 20/200, and D = A with path 1 cut mid-flow.
///
/// The sender offers 90% of the sum of the paths that are up (no inner TCP: what
/// these tests check is the machines' invariants, not a goodput figure; that is
/// perf/multipath's job, planned). Per-path delivery feedback reaches the sender
/// at once (the feedback message is planned; the machines take it as an input).
final class MultipathSimTests: XCTestCase {
    struct PathSpec { var mbit: Double; var rttMs: Double }
    struct Result {
        var goodputMbit: Double      // released in order, last second
        var maxHeld: Int
        var reorder: ReorderCounters
        var sched: MultipathScheduler.Counters
        var perPath: [Int]
        var perPathLastSecond: [Int]
        var longestStallMs: Double   // longest time without a release while the sender sent
        var orderViolations: Int
    }

    func run(_ specs: [PathSpec], seconds: Double = 4, cutPath1At: Double? = nil, restoreAt: Double? = nil) -> Result {
        let size = 1400
        var links = specs.enumerated().map { i, s in
            LinkEmulator<UInt64>(settings: LinkSettings(delay: Span(ns: UInt64(s.rttMs / 2 * 1e6)), rate: UInt64(s.mbit * 1e6),
                                                        queue: .time(.milliseconds(50))), capacity: 1 << 14, seed: UInt64(i + 1))
        }
        var health = specs.map { _ in PathHealth() }
        var bw = specs.map { _ in BandwidthEstimator() }
        var sched = MultipathScheduler()
        var rb = ReorderBuffer<UInt64>()
        let offeredPps = specs.reduce(0) { $0 + $1.mbit } * 0.9 * 1e6 / Double(size * 8)
        let dt = Span(ns: 50_000)
        var t = Instant(ns: 1_000_000_000)
        let start = t
        let end = t + Span.seconds(seconds)
        var counter: UInt64 = 0
        var owed = 0.0
        var lastReleased: UInt64?
        var violations = 0
        var releasedAt: [Instant] = []
        var lastRelease = t
        var longestStall = Span.zero
        var perPath = [Int](repeating: 0, count: specs.count)
        var perPathLastSecond = [Int](repeating: 0, count: specs.count)
        var nextReport = t
        var failed = [Bool](repeating: false, count: specs.count)
        // Paths start with one probe RTT each.
        for i in specs.indices {
            health[i].handleRTTSample(Span(ns: UInt64(specs[i].rttMs * 1e6)), now: t)
        }
        func release() {
            while let c = rb.pollRelease() {
                if let l = lastReleased, c <= l { violations += 1 }
                lastReleased = c
                releasedAt.append(t)
                longestStall = max(longestStall, t - lastRelease)
                lastRelease = t
            }
        }
        while t < end {
            let sec = (t - start).seconds
            if let cut = cutPath1At, sec >= cut, links[1].settings.up, restoreAt.map({ sec < $0 }) ?? true {
                links[1].setUp(false, now: t)
                while links[1].pollOutput(now: t) != nil {}
            }
            if let r = restoreAt, sec >= r, !links[1].settings.up { links[1].setUp(true, now: t) }
            // Reports every 50 ms: RTT = base + the link's queueing delay now.
            if t >= nextReport {
                nextReport = t + .milliseconds(50)
                var fast = Span.seconds(UInt64(100)), slow = Span.zero
                for i in specs.indices {
                    if links[i].settings.up {
                        let q = Double(links[i].queued(now: t)) * Double(size * 8) / (specs[i].mbit * 1e6)
                        health[i].handleRTTSample(Span(ns: UInt64((specs[i].rttMs / 1000 + q) * 1e9)), now: t)
                    } else if !failed[i] {
                        // A cut path answers no probe: only the failure clock runs.
                        health[i].handleSent(now: t)
                    }
                    if health[i].handleTimeout(now: t) {
                        failed[i] = true
                        rb.handlePathFailed(i, now: t)
                        release()
                    }
                    if failed[i] && health[i].isUsable {
                        failed[i] = false
                        rb.handlePathRestored(i)
                    }
                    sched.update(path: i, report: .init(health[i], delivered: bw[i].bitsPerSecond(now: t)), now: t)
                    if health[i].isUsable, let s = health[i].srtt {
                        fast = min(fast, s); slow = max(slow, s)
                    }
                }
                rb.setLatencySpread(Span(ns: (slow.ns - min(fast.ns, slow.ns)) / 2))
                if ProcessInfo.processInfo.environment["WS_SIM_TRACE"] != nil {
                    print(String(format: "t=%.2f", sec), specs.indices.map { i in
                        let v = sched.view(path: i)
                        return "p\(i) srtt=\(health[i].srtt.map { String(format: "%.0f", $0.milliseconds) } ?? "-") w=\(String(format: "%.2f", v.weight)) skip=\(v.skipped?.rawValue ?? "-") sent=\(v.packets) bw=\(bw[i].bitsPerSecond(now: t).map { $0 / 1_000_000 } ?? 0)"
                    }.joined(separator: " | "), "held=\(rb.heldCount) late=\(rb.counters.droppedLateDuplicate) to=\(rb.releaseTimeout.milliseconds)")
                }
            }
            // Send what the constant offered rate owes by now.
            // An ideal inner congestion control: 90% of the links that are up (a cut path's
            // share is not offered while it is cut, as TCP would back off).
            let upShare = specs.indices.reduce(0.0) { $0 + (links[$1].settings.up ? specs[$1].mbit : 0) }
                / specs.reduce(0.0) { $0 + $1.mbit }
            owed += offeredPps * upShare * dt.seconds
            while owed >= 1 {
                owed -= 1
                guard let p = sched.pick(counter: counter, length: size, now: t) else { counter += 1; continue }
                for path in [p.path] + (p.duplicate.map { [$0] } ?? []) {
                    health[path].handleSent(now: t)
                    _ = links[path].send(counter, length: size, now: t)
                }
                counter += 1
            }
            // Deliveries.
            for i in specs.indices {
                while let o = links[i].pollOutput(now: t) {
                    guard case .deliver(let c, let len) = o else { continue }
                    perPath[i] += 1
                    if t >= end - .seconds(UInt64(1)) { perPathLastSecond[i] += 1 }
                    health[i].handleReceive(now: t)
                    bw[i].handleDelivered(bytes: len, now: t)
                    sched.handleDelivered(path: i)
                    _ = rb.handle(counter: c, packet: c, path: i, now: t)
                    release()
                }
            }
            if let (d, _) = rb.pollTimeout(), d <= t {
                rb.handleTimeout(now: t)
                release()
            }
            t = t + dt
        }
        let lastSecond = releasedAt.filter { $0 >= end - .seconds(UInt64(1)) }.count
        return Result(goodputMbit: Double(lastSecond * size * 8) / 1e6, maxHeld: rb.counters.maxHeld, reorder: rb.counters,
                      sched: sched.counters, perPath: perPath, perPathLastSecond: perPathLastSecond, longestStallMs: longestStall.milliseconds, orderViolations: violations)
    }

    func check(_ name: String, _ r: Result) {
        print("multipath sim \(name): goodput \(String(format: "%.1f", r.goodputMbit)) Mbit/s, max held \(r.maxHeld), "
              + "per path \(r.perPath), longest stall \(String(format: "%.1f", r.longestStallMs)) ms, reorder \(r.reorder), scheduler \(r.sched)")
        XCTAssertEqual(r.orderViolations, 0, name)
        XCTAssertLessThanOrEqual(r.maxHeld, MultipathConstants.reorderDepth, name)
    }

    func testScenarioATwoEqualPathsAddUp() {
        let r = run([PathSpec(mbit: 50, rttMs: 20), PathSpec(mbit: 50, rttMs: 20)])
        check("A", r)
        XCTAssertGreaterThanOrEqual(r.goodputMbit, 0.9 * 90 * 0.98, "A carries the offered 90% of the sum")
        XCTAssertGreaterThan(r.perPath[1], r.perPath[0] / 2)
    }

    func testScenarioBUnequalPathsAddUpUnderTheFarPathsCap() {
        let r = run([PathSpec(mbit: 50, rttMs: 20), PathSpec(mbit: 20, rttMs: 60)])
        check("B", r)
        // The 60 ms path is a far path (scheduler rule 4b): its cap follows its queue in the
        // 50 ms RTT reports, the near path takes the rest, and the offered 90% of the sum arrives.
        XCTAssertGreaterThanOrEqual(r.goodputMbit, 0.85 * 70, "B: ≥ 85% of the sum")
        XCTAssertGreaterThan(r.perPathLastSecond[1], r.perPathLastSecond[0] / 6, "the far path carries its share")
    }

    func testScenarioCSlowPathIsSkippedNotWaitedFor() {
        let r = run([PathSpec(mbit: 50, rttMs: 20), PathSpec(mbit: 20, rttMs: 200)])
        check("C", r)
        XCTAssertGreaterThanOrEqual(r.goodputMbit, 50 * 0.95, "C is never worse than the best single path")
        XCTAssertGreaterThanOrEqual(r.sched.reorderSkips + r.sched.latencySkips, 1)
    }

    func testScenarioDCutPathIsFlushedAndTrafficGoesOn() {
        let r = run([PathSpec(mbit: 50, rttMs: 20), PathSpec(mbit: 50, rttMs: 20)], seconds: 4, cutPath1At: 1.5, restoreAt: 2.5)
        check("D", r)
        XCTAssertLessThan(r.longestStallMs, 1000, "D never stalls a second")
        XCTAssertGreaterThanOrEqual(r.goodputMbit, 0.9 * 90 * 0.98, "both paths carry the flow again after the restore")
        XCTAssertGreaterThan(r.perPathLastSecond[1], r.perPathLastSecond[0] / 2)
        XCTAssertGreaterThan(r.reorder.flushedByPathFailure + r.reorder.gapsSkipped, 0)
    }
}
extension MultipathSimTests {
    /// The baseline: one path, nothing reordered, nothing held.
    func testOnePathIsNeverHeld() {
        let r = run([PathSpec(mbit: 50, rttMs: 20)])
        check("one path", r)
        XCTAssertEqual(r.maxHeld, 0)
        XCTAssertGreaterThanOrEqual(r.goodputMbit, 45 * 0.98)
    }
}
