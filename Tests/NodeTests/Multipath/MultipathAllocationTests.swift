import Foundation
import XCTest
@testable import Support
@testable import Protocol
@testable import Simulation

/// The multipath machines' per-packet calls allocate nothing (STYLE 16):
/// scheduler.pick, reorder handle/pollRelease/pollTimeout, link emulator
/// send/pollOutput, path health and bandwidth updates, 20 000 packets over two
/// paths with reordering, after a warm-up. Counted only with
/// perf/lib/malloccount.so preloaded (scripts/test's allocation run):
///
///   gcc -O2 -shared -fPIC -o /tmp/malloccount.so perf/lib/malloccount.c
///   LD_PRELOAD=/tmp/malloccount.so .build/debug/WhalescalePackageTests.xctest NodeTests.MultipathAllocationTests
///
/// Without it the loop still checks order and depth; with WS_REQUIRE_MALLOC_COUNT=1 a
/// missing counter fails.
final class MultipathAllocationTests: XCTestCase {
    typealias Counter = @convention(c) () -> UInt64
    static let mallocCount: Counter? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "ws_malloc_count") else { return nil }
        return unsafeBitCast(sym, to: Counter.self)
    }()

    func testPerPacketCallsAllocateNothing() {
        var sched = MultipathScheduler()
        var rb = ReorderBuffer<UInt32>()
        var links = [LinkEmulator<UInt32>(settings: LinkSettings(delay: .milliseconds(10), rate: 50_000_000), capacity: 4096, seed: 1),
                     LinkEmulator<UInt32>(settings: LinkSettings(delay: .milliseconds(12), jitter: .milliseconds(1), rate: 50_000_000),
                                          capacity: 4096, seed: 2)]
        var health = [PathHealth(), PathHealth()]
        var bw = [BandwidthEstimator(), BandwidthEstimator()]
        var t = Instant(ns: 1_000_000_000)
        for i in 0..<2 {
            health[i].handleRTTSample(.milliseconds(20 + UInt64(i) * 4), now: t)
            sched.update(path: i, report: .init(health[i], delivered: nil), now: t)
        }
        var counter: UInt64 = 0
        var last: UInt64?
        var released = 0
        var counted: UInt64?
        var disorder = 0
        let gap = Span(ns: 200_000)  // 5 000 packets/s, 1400 bytes: 56 Mbit/s over 100
        for k in 0..<22_000 {
            if k == 2_000 { counted = Self.mallocCount?() }
            if let p = sched.pick(counter: counter, length: 1400, now: t) {
                health[p.path].handleSent(now: t)
                _ = links[p.path].send(UInt32(truncatingIfNeeded: counter), length: 1400, now: t)
                if let d = p.duplicate { _ = links[d].send(UInt32(truncatingIfNeeded: counter), length: 1400, now: t) }
            }
            counter += 1
            for i in 0..<2 {
                while let o = links[i].pollOutput(now: t) {
                    guard case .deliver(let h, let len) = o else { continue }
                    health[i].handleReceive(now: t)
                    bw[i].handleDelivered(bytes: len, now: t)
                    sched.handleDelivered(path: i)
                    _ = rb.handle(counter: UInt64(h), packet: h, path: i, now: t)
                    while let r = rb.pollRelease() {
                        if let l = last, UInt64(r) <= l { disorder += 1 }
                        last = UInt64(r)
                        released += 1
                    }
                }
            }
            if let (d, _) = rb.pollTimeout(), d <= t {
                rb.handleTimeout(now: t)
                while let r = rb.pollRelease() { last = UInt64(r); released += 1 }
            }
            if k % 250 == 0 {  // a report every 50 ms, as a driver would
                for i in 0..<2 {
                    health[i].handleRTTSample(.milliseconds(20 + UInt64(i) * 4), now: t)
                    sched.update(path: i, report: .init(health[i], delivered: bw[i].bitsPerSecond(now: t)), now: t)
                }
            }
            t = t + gap
        }
        XCTAssertEqual(disorder, 0)
        let after = Self.mallocCount?()
        XCTAssertGreaterThan(released, 21_000)
        XCTAssertLessThanOrEqual(rb.counters.maxHeld, 128)
        if let counted, let after {
            XCTAssertEqual(after - counted, 0, "allocations in the multipath machines' per-packet calls")
            print("multipath: \(after - counted) allocations for 20 000 packets over two paths")
        } else if ProcessInfo.processInfo.environment["WS_REQUIRE_MALLOC_COUNT"] == "1" {
            XCTFail("WS_REQUIRE_MALLOC_COUNT=1 but the malloc counter is not preloaded: allocations not counted")
        } else {
            print("multipath: malloc counter not preloaded; allocation count not checked (see the doc comment)")
        }
    }
}
