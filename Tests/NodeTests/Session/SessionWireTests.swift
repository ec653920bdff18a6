import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// DATA header layout and round trip, in a caller-owned buffer.
final class SessionDataMessageTests: XCTestCase {
    func testLayoutConstants() {
        XCTAssertEqual(DataMessage.type, 4)
        XCTAssertEqual(DataMessage.headerSize, 16)
        XCTAssertEqual(DataMessage.overhead, 32)
        XCTAssertEqual(DataMessage.minimumSize, 32)
    }

    func testHeaderBytesAreLittleEndian() {
        var bytes = [UInt8](repeating: 0xEE, count: 40)
        bytes.withUnsafeMutableBytes { b in
            XCTAssertTrue(DataMessage.writeHeader(.init(receiverIndex: 0x0403_0201, counter: 0x0C0B_0A09_0807_0605), into: b, at: 0))
        }
        XCTAssertEqual(Array(bytes[0..<16]), [4, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        XCTAssertEqual(bytes[16], 0xEE, "the payload is not touched")
    }

    func testRoundTripAtAnOffset() {
        // Header room in front of the payload, as the engine lays out its slab.
        var bytes = [UInt8](repeating: 0, count: 128)
        let h = DataMessage.Header(receiverIndex: .max, counter: .max - 1)
        bytes.withUnsafeMutableBytes { b in
            XCTAssertTrue(DataMessage.writeHeader(h, into: b, at: 48))
            let view = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(b)[48...])
            XCTAssertEqual(DataMessage.parseHeader(view, length: 48), h)
        }
    }

    func testLengthChecks() {
        var bytes = [UInt8](repeating: 0, count: 64)
        bytes.withUnsafeMutableBytes { b in
            DataMessage.writeHeader(.init(receiverIndex: 7, counter: 9), into: b, at: 0)
            let r = UnsafeRawBufferPointer(b)
            // table: (claimed length, parses?)
            let table: [(Int, Bool)] = [(0, false), (1, false), (16, false), (31, false), (32, true), (64, true), (65, false)]
            for (length, ok) in table {
                XCTAssertEqual(DataMessage.parseHeader(r, length: length) != nil, ok, "length \(length)")
            }
            XCTAssertEqual(DataMessage.payloadLength(messageLength: 32), 0, "keepalive")
            XCTAssertEqual(DataMessage.payloadLength(messageLength: 31), nil)
            // Header must fit where it is written.
            XCTAssertFalse(DataMessage.writeHeader(.init(receiverIndex: 1, counter: 1), into: b, at: 49))
            XCTAssertFalse(DataMessage.writeHeader(.init(receiverIndex: 1, counter: 1), into: b, at: -1))
            XCTAssertTrue(DataMessage.writeHeader(.init(receiverIndex: 1, counter: 1), into: b, at: 48))
        }
    }

    /// Byte 1 is flags: bit 0 (checksumPartial) parses (whether the session allows it is the
    /// session's to check); any other bit, and any bit of bytes 2 and 3, is refused.
    func testWrongTypeOrReservedBytesAreRejected() {
        var flagged = [UInt8](repeating: 0, count: 32)
        flagged[0] = 4
        flagged[1] = DataMessage.checksumPartial
        flagged.withUnsafeBytes { XCTAssertEqual(DataMessage.parseHeader($0, length: 32)?.flags, DataMessage.checksumPartial) }
        var written = [UInt8](repeating: 0, count: 32)
        written.withUnsafeMutableBytes {
            XCTAssertTrue(DataMessage.writeHeader(.init(receiverIndex: 0, counter: 0, flags: DataMessage.checksumPartial), into: $0, at: 0))
        }
        XCTAssertEqual(written, flagged)
        for (offset, value) in [(0, UInt8(1)), (0, 5), (1, 2), (1, 0x81), (2, 0x80), (3, 1)] {
            var bytes = [UInt8](repeating: 0, count: 32)
            bytes[0] = 4
            bytes[offset] = value
            bytes.withUnsafeBytes { XCTAssertNil(DataMessage.parseHeader($0, length: 32), "byte \(offset) = \(value)") }
        }
    }

    func testRandomRoundTrips() {
        var rng = SessionRandom(seed: 42)
        var bytes = [UInt8](repeating: 0, count: 64)
        for _ in 0..<1000 {
            let h = DataMessage.Header(receiverIndex: UInt32(truncatingIfNeeded: rng.next()), counter: rng.next())
            let off = Int(rng.next() % 17)
            bytes.withUnsafeMutableBytes { b in
                XCTAssertTrue(DataMessage.writeHeader(h, into: b, at: off))
                let view = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(b)[off...])
                XCTAssertEqual(DataMessage.parseHeader(view, length: 32), h)
            }
        }
    }
}

/// RFC 6479 window: table tests.
final class SessionReplayWindowTests: XCTestCase {
    enum Step { case accept(UInt64), reject(UInt64) }

    func run(_ steps: [Step], limit: UInt64 = SessionConstants.rejectAfterMessages, file: StaticString = #filePath, line: UInt = #line) {
        var w = ReplayWindow(limit: limit)
        for (i, step) in steps.enumerated() {
            switch step {
            case .accept(let c):
                XCTAssertTrue(w.check(c), "step \(i): check \(c)", file: file, line: line)
                XCTAssertTrue(w.accept(c), "step \(i): accept \(c)", file: file, line: line)
            case .reject(let c):
                XCTAssertFalse(w.check(c), "step \(i): check \(c)", file: file, line: line)
                XCTAssertFalse(w.accept(c), "step \(i): accept \(c)", file: file, line: line)
            }
        }
    }

    func testWindowIsAtLeast4096() {
        XCTAssertGreaterThanOrEqual(ReplayWindow.size, 4096)
        XCTAssertEqual(ReplayWindow.size, 8128)
    }

    func testInOrder() { run((0..<10_000).map { .accept($0) }) }

    func testDuplicate() { run([.accept(0), .reject(0), .accept(1), .reject(1), .reject(0), .accept(5), .reject(5)]) }

    func testOutOfOrderWithinWindow() {
        run([.accept(10), .accept(8), .accept(9), .reject(8), .accept(0), .accept(1000), .accept(11), .reject(11), .accept(999), .accept(12)])
    }

    func testTooOld() {
        let w = ReplayWindow.size
        run([.accept(w + 100), .accept(100), .reject(99), .reject(0), .accept(101), .reject(101)])
    }

    func testExactlyAtWindowEdge() {
        let w = ReplayWindow.size
        run([.accept(w), .accept(0), .accept(w + 1), .reject(0), .accept(1), .reject(1)])
    }

    func testFarJumpClearsTheRing() {
        // Jumps of more than the ring must clear every block: counters that alias
        // old bits (same block index mod 128) must still be accepted once.
        let w = ReplayWindow.size
        run([.accept(1), .accept(2), .accept(1 << 40), .reject(1), .accept((1 << 40) - 1), .accept((1 << 40) - w),
             .reject((1 << 40) - w - 1), .accept((1 << 40) + 64 * 128 + 1), .accept((1 << 40) + 64 * 128 + 1 - 64 * 64)])
    }

    func testSlideByOneBlockKeepsOlderBits() {
        run([.accept(63), .accept(64), .reject(63), .accept(62), .accept(200), .reject(62), .reject(64)])
    }

    func testCounterLimits() {
        run([.accept(0), .accept(9), .reject(10), .reject(.max), .reject(11)], limit: 10)
        let reject = SessionConstants.rejectAfterMessages
        run([.accept(reject - 1), .reject(reject), .reject(.max), .accept(reject - 2)])
    }

    func testMatchesASetModel() {
        // Random walk against a plain model (set + highest): same verdicts.
        var rng = SessionRandom(seed: 7)
        var w = ReplayWindow()
        var seen = Set<UInt64>()
        var highest: UInt64? = nil
        var base: UInt64 = 0
        for _ in 0..<50_000 {
            let r = rng.next()
            if r % 50 == 0 { base += rng.next() % 20_000 }
            let c = base + rng.next() % 9000
            let expected: Bool
            if let h = highest, c <= h, h - c > ReplayWindow.size { expected = false }
            else { expected = !seen.contains(c) }
            XCTAssertEqual(w.check(c), expected, "check \(c)")
            XCTAssertEqual(w.accept(c), expected, "accept \(c)")
            if expected { seen.insert(c); highest = max(highest ?? 0, c) }
        }
    }
}

/// Timer table, retry schedule, jitter bounds, timestamps.
final class SessionTimerTests: XCTestCase {
    func testNextIsTheMinimumAndTiesGoToHandlingOrder() {
        var t = TimerTable()
        XCTAssertNil(t.next)
        t[.keepalive] = Instant(ns: 50)
        t[.handshakeRetry] = Instant(ns: 30)
        t[.persistentKeepalive] = Instant(ns: 30)
        XCTAssertEqual(t.next?.deadline, Instant(ns: 30))
        XCTAssertEqual(t.next?.reason, .handshakeRetry)
        t[.handshakeRetry] = nil
        XCTAssertEqual(t.next?.reason, .persistentKeepalive)
        let due = t.takeDue(now: Instant(ns: 40))
        XCTAssertTrue(due.contains(.persistentKeepalive))
        XCTAssertFalse(due.contains(.keepalive))
        XCTAssertFalse(t.isPending(.persistentKeepalive))
        XCTAssertTrue(t.isPending(.keepalive))
        XCTAssertTrue(t.takeDue(now: Instant(ns: 49)).isEmpty)
    }

    func testRetryBackoffTable() {
        let t = SessionTimings.default
        let table: [(Int, UInt64)] = [(1, 5), (2, 10), (3, 20), (4, 20), (10, 20), (1000, 20), (0, 5), (-3, 5)]
        for (attempt, seconds) in table {
            XCTAssertEqual(handshakeRetryDelay(attempt: attempt, timings: t), .seconds(seconds), "attempt \(attempt)")
        }
        // A cap below the base never shortens the base.
        let odd = SessionTimings(rekeyTimeout: .seconds(5 as UInt64), rekeyTimeoutMax: .seconds(1 as UInt64))
        XCTAssertEqual(handshakeRetryDelay(attempt: 3, timings: odd), .seconds(5 as UInt64))
    }

    func testJitterBounds() {
        var rng = SessionRandom(seed: 1)
        let max = Span.milliseconds(333)
        var lo = UInt64.max, hi: UInt64 = 0
        for _ in 0..<10_000 {
            let j = retryJitter(max: max, using: &rng)
            XCTAssertLessThan(j, max)
            lo = Swift.min(lo, j.ns); hi = Swift.max(hi, j.ns)
        }
        XCTAssertLessThan(lo, Span.milliseconds(10).ns, "spread over the range")
        XCTAssertGreaterThan(hi, Span.milliseconds(320).ns)
        XCTAssertEqual(retryJitter(max: .zero, using: &rng), .zero)
    }

    func testSeededRandomIsDeterministic() {
        var a = SessionRandom(seed: 99), b = SessionRandom(seed: 99), c = SessionRandom(seed: 100)
        let xa = (0..<8).map { _ in a.next() }
        XCTAssertEqual(xa, (0..<8).map { _ in b.next() })
        XCTAssertNotEqual(xa, (0..<8).map { _ in c.next() })
    }

    func testTimestampBytesOrderAndWhitening() {
        let a = HandshakeTimestamp(unixSeconds: 1_700_000_000, nanoseconds: 123_456_789)
        XCTAssertEqual(a.nanoseconds % SessionConstants.timestampWhitening, 0)
        XCTAssertLessThanOrEqual(a.nanoseconds, 123_456_789)
        XCTAssertEqual(a.bytes.count, 12)
        XCTAssertEqual(Array(a.bytes[0..<8]), [0x40, 0, 0, 0, 0x65, 0x53, 0xF1, 0x0A], "2^62 + 10 + unix seconds, big-endian")
        XCTAssertEqual(HandshakeTimestamp(bytes: a.bytes), a)
        XCTAssertNil(HandshakeTimestamp(bytes: [1, 2, 3]))
        // Within one whitening step two readings are equal (the responder would
        // refuse the second): `successor` is the next distinct value.
        let b = HandshakeTimestamp(unixSeconds: 1_700_000_000, nanoseconds: 123_456_790)
        XCTAssertEqual(a, b)
        XCTAssertGreaterThan(a.successor, a)
        XCTAssertGreaterThan(HandshakeTimestamp(unixSeconds: 5, nanoseconds: 999_999_999).successor.seconds,
                             HandshakeTimestamp(unixSeconds: 5, nanoseconds: 0).seconds)
        // Byte order agrees with Comparable.
        var rng = SessionRandom(seed: 3)
        for _ in 0..<200 {
            let x = HandshakeTimestamp(unixSeconds: rng.next() % 4_000_000_000, nanoseconds: UInt32(rng.next() % 1_000_000_000))
            let y = HandshakeTimestamp(unixSeconds: rng.next() % 4_000_000_000, nanoseconds: UInt32(rng.next() % 1_000_000_000))
            XCTAssertEqual(x < y, x.bytes.lexicographicallyPrecedes(y.bytes))
        }
    }

    func testRateLimiterBucket() {
        var r = HandshakeRateLimiter(perSecond: 20, burst: 5)
        let a = Endpoint.v4(192, 0, 2, 1, port: 1), b = Endpoint.v4(192, 0, 2, 2, port: 1)
        let t0 = Instant(ns: 1_000_000_000)
        for i in 0..<5 { XCTAssertTrue(r.allow(a, now: t0), "burst \(i)") }
        XCTAssertFalse(r.allow(a, now: t0))
        XCTAssertTrue(r.allow(b, now: t0), "budgets are per address")
        XCTAssertFalse(r.allow(a, now: t0 + .milliseconds(40)))
        XCTAssertTrue(r.allow(a, now: t0 + .milliseconds(60)), "one token per 50 ms")
        XCTAssertFalse(r.allow(Endpoint.v4(192, 0, 2, 1, port: 2), now: t0 + .milliseconds(60)), "the port is ignored")
    }

    /// Review H2: 10,000 distinct sources within one second. Every new source
    /// gets its first use (the old table refused everyone new once 4,096 fresh
    /// entries filled it), each call looks at a fixed number of slots (the old
    /// one rebuilt the whole table per call), and the table does not grow.
    func testRateLimiterManySourcesBoundedWork() {
        var r = HandshakeRateLimiter(perSecond: 10, burst: 20)
        let t0 = Instant(ns: 1_000_000_000)
        for k in 0..<10_000 {
            let src = Endpoint.v4(10, UInt8(k >> 16), UInt8((k >> 8) & 0xff), UInt8(k & 0xff), port: 9)
            XCTAssertTrue(r.allow(src, now: t0 + Span(ns: UInt64(k) * 100_000)), "new source \(k) is not locked out")
        }
        XCTAssertEqual(r.slotsVisited, 10_000 * HandshakeRateLimiter.ways, "O(1): one set of slots per call")
        // A source seen a moment ago keeps its (spent) budget unless its set was reused.
        let last = Endpoint.v4(10, 0, 0x27, 0x0F, port: 9)  // k = 9,999
        for _ in 0..<19 { XCTAssertTrue(r.allow(last, now: t0 + .seconds(1 as UInt64))) }
        XCTAssertFalse(r.allow(last, now: t0 + .seconds(1 as UInt64)), "its burst is spent")
    }

    /// Review M3: IPv6 sources share a budget per /64; IPv4-mapped addresses are hosts.
    func testSourceKeyMasksIPv6ToSlash64() {
        func v6(_ s: String) -> Endpoint { Endpoint(family: .v6, address: IPAddressBytes(v6: s)!, port: 1) }
        XCTAssertEqual(SourceKey(v6("2001:db8:1:2::1")), SourceKey(v6("2001:db8:1:2:ffff:1:2:3")))
        XCTAssertNotEqual(SourceKey(v6("2001:db8:1:2::1")), SourceKey(v6("2001:db8:1:3::1")))
        XCTAssertNotEqual(SourceKey(v6("::ffff:192.0.2.1")), SourceKey(v6("::ffff:192.0.2.2")))
        XCTAssertNotEqual(SourceKey(.v4(192, 0, 2, 1, port: 1)), SourceKey(.v4(192, 0, 2, 2, port: 1)))
        XCTAssertEqual(SourceKey(.v4(192, 0, 2, 1, port: 1)), SourceKey(.v4(192, 0, 2, 1, port: 2)))
        // An IPv4 address and an IPv6 /64 with the same first bytes are different sources.
        XCTAssertNotEqual(SourceKey(.v4(192, 0, 2, 1, port: 1)), SourceKey(v6("c000:201::")))
    }

    func testLoadMeterIsSticky() {
        var m = HandshakeLoadMeter(threshold: 3, stickiness: .seconds(1 as UInt64))
        let t = Instant(ns: 10_000_000_000)
        XCTAssertFalse(m.record(now: t))
        XCTAssertFalse(m.record(now: t))
        XCTAssertFalse(m.record(now: t))
        XCTAssertTrue(m.record(now: t))
        XCTAssertTrue(m.isUnderLoad(now: t + .milliseconds(999)))
        XCTAssertFalse(m.isUnderLoad(now: t + .milliseconds(1000)))
    }
}
