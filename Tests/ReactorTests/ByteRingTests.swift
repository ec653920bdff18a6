import Foundation
import XCTest

@testable import Reactor

/// ByteRing: records in and out in order, full and empty, skip markers at the
/// end of the storage, the largest record at every position, and two threads.
final class ByteRingTests: XCTestCase {
    func testCapacityRoundsUpToAPowerOfTwo() {
        XCTAssertEqual(ByteRing(capacity: 1).capacity, 64)
        XCTAssertEqual(ByteRing(capacity: 1000).capacity, 1024)
        XCTAssertEqual(ByteRing(capacity: 4096).capacity, 4096)
        XCTAssertEqual(ByteRing(capacity: 4097).maxLength, 4096)
    }

    func testEmptyRingHasNothingToPeek() {
        let ring = ByteRing(capacity: 256)
        XCTAssertTrue(ring.isEmpty)
        XCTAssertNil(ring.peek())
        // Reserved but not committed: still nothing for the consumer.
        XCTAssertNotNil(ring.reserve(10))
        XCTAssertTrue(ring.isEmpty)
        XCTAssertNil(ring.peek())
        ring.commit()
        XCTAssertFalse(ring.isEmpty)
        XCTAssertEqual(ring.peek()?.count, 10)
        ring.release()
        XCTAssertTrue(ring.isEmpty)
    }

    func testFillUntilFullThenDrainInOrder() {
        let ring = ByteRing(capacity: 1024)
        // 40 bytes take 16 (prefix) + 48 (padded body) = 64: 16 of them fill 1024 exactly.
        var pushed = 0
        while let p = ring.reserve(40) {
            XCTAssertEqual(Int(bitPattern: p) % 16, 0, "16-byte aligned")
            fill(p, count: 40, seq: pushed)
            ring.commit()
            pushed += 1
            if pushed > 100 { break }
        }
        XCTAssertEqual(pushed, 16)
        XCTAssertNil(ring.reserve(0), "full: not even an empty record")
        // Freeing one record makes room for exactly one more.
        XCTAssertEqual(ring.peek().map { check($0, seq: 0) }, true)
        ring.release()
        XCTAssertNil(ring.reserve(49), "49 bytes pad to 64, + 16 of prefix: more than the 64 freed")
        let p = ring.reserve(40)
        XCTAssertNotNil(p)
        fill(p!, count: 40, seq: 16)
        ring.commit()
        XCTAssertNil(ring.reserve(0))
        for seq in 1...16 {
            guard let r = ring.peek() else { return XCTFail("record \(seq) missing") }
            XCTAssertEqual(r.count, 40)
            XCTAssertTrue(check(r, seq: seq), "record \(seq)")
            ring.release()
        }
        XCTAssertNil(ring.peek())
        XCTAssertTrue(ring.isEmpty)
    }

    func testWrapAroundWithOddSizesWritesSkipMarkers() {
        let ring = ByteRing(capacity: 512)
        let sizes = [1, 77, 3, 150, 33, 255, 17, 99, 200, 5, 0, 130, 61, 250, 9]
        var seq = 0
        var next = 0
        var wrapped = 0
        var lastStart = 0
        // Keep at most two records in flight so every position of the storage is used in turn.
        for round in 0..<600 {
            let length = sizes[round % sizes.count]
            var p = ring.reserve(length)
            while p == nil {
                // Full: drain until there is room (an empty ring always has room: 255 < 512 / 2).
                guard let r = ring.peek() else { return XCTFail("empty and still refused at round \(round)") }
                XCTAssertTrue(check(r, seq: next), "record \(next)")
                ring.release()
                next += 1
                p = ring.reserve(length)
            }
            let start = Int(bitPattern: p!)
            if start < lastStart { wrapped += 1 }
            lastStart = start
            fill(p!, count: length, seq: seq)
            ring.commit()
            seq += 1
            if seq - next > 2 {
                guard let r = ring.peek() else { return XCTFail("record \(next) missing") }
                XCTAssertEqual(r.count, sizes[next % sizes.count])
                XCTAssertTrue(check(r, seq: next), "record \(next)")
                ring.release()
                next += 1
            }
        }
        while let r = ring.peek() {
            XCTAssertTrue(check(r, seq: next), "record \(next)")
            ring.release()
            next += 1
        }
        XCTAssertEqual(next, seq, "every record came out once")
        XCTAssertGreaterThan(wrapped, 50, "records wrapped to the start many times")
    }

    func testAHalfCapacityRecordFitsAnEmptyRingAtEveryPosition() {
        let ring = ByteRing(capacity: 1024)
        XCTAssertEqual(ring.maxLength, 512)
        // Move the start through every 16-byte position; each time the empty ring takes 512 bytes.
        for shift in 0..<(1024 / 16 + 3) {
            if shift > 0 {
                XCTAssertNotNil(ring.reserve(0))  // a 16-byte record moves the position by 16
                ring.commit()
                XCTAssertNotNil(ring.peek())
                ring.release()
            }
            XCTAssertTrue(ring.isEmpty)
            guard let p = ring.reserve(512) else { return XCTFail("512 bytes refused after \(shift) shifts") }
            fill(p, count: 512, seq: shift)
            ring.commit()
            XCTAssertNil(ring.reserve(512), "two halves and their prefixes do not fit")
            guard let r = ring.peek() else { return XCTFail("record missing") }
            XCTAssertEqual(r.count, 512)
            XCTAssertTrue(check(r, seq: shift))
            ring.release()
        }
        XCTAssertNil(ring.reserve(513), "more than half is never granted")
    }

    func testReadNextKeepsABatchUntilReleaseRead() {
        let ring = ByteRing(capacity: 1024)
        for seq in 0..<5 {
            let p = ring.reserve(100)!
            fill(p, count: 100, seq: seq)
            ring.commit()
        }
        // 5 records of 16 + 112 bytes: 640 taken, 384 free.
        var batch: [UnsafeMutableRawBufferPointer] = []
        while let r = ring.readNext() { batch.append(r) }
        XCTAssertEqual(batch.count, 5)
        XCTAssertNil(ring.reserve(400), "records read but not released keep their room")
        // Still intact (a lane works on them in place until the batch is sent).
        for (seq, r) in batch.enumerated() { XCTAssertTrue(check(r, seq: seq), "record \(seq)") }
        XCTAssertNil(ring.readNext())
        ring.releaseRead()
        XCTAssertTrue(ring.isEmpty)
        XCTAssertNotNil(ring.reserve(400), "released at once")
        ring.commit()
        XCTAssertEqual(ring.readNext()?.count, 400)
        XCTAssertNil(ring.readNext())
        ring.releaseRead()
        ring.releaseRead()  // nothing read: nothing freed
        XCTAssertTrue(ring.isEmpty)
    }

    func testReserveLargerThanCapacityIsNil() {
        let ring = ByteRing(capacity: 256)
        XCTAssertNil(ring.reserve(256))
        XCTAssertNil(ring.reserve(257))
        XCTAssertNil(ring.reserve(1 << 20))
        XCTAssertTrue(ring.isEmpty)
        // A refused reserve changes nothing.
        XCTAssertNotNil(ring.reserve(128))
        ring.commit()
        XCTAssertEqual(ring.peek()?.count, 128)
    }

    /// A producer thread pushes 200,000 records of pseudo-random length
    /// 1...3000 whose bytes are a function of their sequence number; the
    /// consumer checks each record's length and every byte, in order, freeing
    /// them one at a time.
    func testTwoThreadStress() {
        stress(batch: 1)
    }

    /// The same, the consumer reading batches of up to 16 with `readNext` and
    /// freeing each batch at once (as a lane does).
    func testTwoThreadStressInBatches() {
        stress(batch: 16)
    }

    func stress(batch: Int, total: Int = 200_000) {
        // Small enough that the producer often finds it full and the consumer empty.
        let ring = ByteRing(capacity: 16 << 10)
        let pattern = Pattern()
        let producer = Thread {
            for seq in 0..<total {
                let length = Self.length(seq)
                var p = ring.reserve(length)
                while p == nil {
                    sched_yield()
                    p = ring.reserve(length)
                }
                pattern.write(p!, count: length, seq: seq)
                ring.commit()
            }
        }
        let start = Date()
        producer.start()
        var seq = 0
        var bad = 0
        func verify(_ r: UnsafeMutableRawBufferPointer) {
            if r.count != Self.length(seq) || !pattern.matches(r, seq: seq) {
                bad += 1
                if bad < 5 { XCTFail("record \(seq): \(r.count) bytes, wanted \(Self.length(seq))") }
            }
            seq += 1
        }
        while seq < total {
            var got = 0
            if batch == 1 {
                if let r = ring.peek() {
                    verify(r)
                    ring.release()
                    got = 1
                }
            } else {
                while got < batch, let r = ring.readNext() {
                    verify(r)
                    got += 1
                }
                ring.releaseRead()
            }
            if got == 0 {
                if Date().timeIntervalSince(start) > 20 { break }
                sched_yield()
            }
        }
        XCTAssertEqual(seq, total, "all records arrived")
        XCTAssertEqual(bad, 0)
        XCTAssertTrue(ring.isEmpty)
        // No bound on the run time: a test must not time the machine (a busy 2-core
        // box took 9.5 s once). A ring that stops moving is caught by the 20 s
        // guard above and the count check.
    }

    // MARK: - Helpers

    /// Pseudo-random length 1...3000 from the sequence number (splitmix64).
    static func length(_ seq: Int) -> Int {
        var z = UInt64(seq) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return 1 + Int(z % 3000)
    }

    /// Byte i of record seq is (seq * 7 + i) & 0xff, copied from and compared
    /// with a table so the stress test checks every byte at memcpy speed.
    final class Pattern: @unchecked Sendable {
        let table: UnsafeMutableRawPointer
        init() {
            table = .allocate(byteCount: 256 + 4096, alignment: 16)
            for i in 0..<(256 + 4096) { table.storeBytes(of: UInt8(truncatingIfNeeded: i), toByteOffset: i, as: UInt8.self) }
        }
        deinit { table.deallocate() }
        func write(_ p: UnsafeMutableRawPointer, count: Int, seq: Int) {
            p.copyMemory(from: table + ((seq &* 7) & 0xFF), byteCount: count)
        }
        func matches(_ r: UnsafeMutableRawBufferPointer, seq: Int) -> Bool {
            memcmp(r.baseAddress!, table + ((seq &* 7) & 0xFF), r.count) == 0
        }
    }

    func fill(_ p: UnsafeMutableRawPointer, count: Int, seq: Int) {
        for i in 0..<count { p.storeBytes(of: UInt8(truncatingIfNeeded: seq &* 31 &+ i), toByteOffset: i, as: UInt8.self) }
    }

    func check(_ r: UnsafeMutableRawBufferPointer, seq: Int) -> Bool {
        for i in 0..<r.count where r[i] != UInt8(truncatingIfNeeded: seq &* 31 &+ i) { return false }
        return true
    }
}
