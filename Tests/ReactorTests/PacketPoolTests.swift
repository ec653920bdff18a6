import XCTest
@testable import Reactor

final class PacketPoolTests: XCTestCase {
    func testTakeHoldReleaseAndReuse() {
        let pool = PacketPool(count: 3, bufferSize: 2000)
        XCTAssertEqual(pool.bufferSize, 2048)
        let a = pool.take()!, b = pool.take()!, c = pool.take()!
        XCTAssertNil(pool.take(), "every buffer held: nil, not a new allocation")
        XCTAssertEqual(Set([a, b, c]).count, 3)
        let bytes: [UInt8] = [1, 2, 3, 4]
        XCTAssertTrue(pool.release(b))
        let h = bytes.withUnsafeBytes { pool.hold($0) }!
        XCTAssertEqual(Array(pool.packet(h)), bytes)
        XCTAssertFalse(pool.isLive(b), "the old handle of a reused buffer is stale")
        XCTAssertFalse(pool.release(b), "a second release of the same handle is refused")
        XCTAssertTrue(pool.isLive(h))
        // Buffers do not overlap.
        pool.buffer(a).initializeMemory(as: UInt8.self, repeating: 0xAA)
        pool.buffer(c).initializeMemory(as: UInt8.self, repeating: 0xCC)
        XCTAssertEqual(Array(pool.packet(h)), bytes)
        XCTAssertTrue(pool.buffer(a).allSatisfy { $0 == 0xAA })
        for x in [a, c, h] { XCTAssertTrue(pool.release(x)) }
        XCTAssertEqual(pool.available, 3)
    }

    /// A packet longer than a buffer is refused, not truncated.
    func testOversizedPacketIsRefused() {
        let pool = PacketPool(count: 1, bufferSize: 64)
        let big = [UInt8](repeating: 1, count: 65)
        XCTAssertNil(big.withUnsafeBytes { pool.hold($0) })
        XCTAssertEqual(pool.available, 1)
    }

    /// Many packets held out of order and released out of order (as a reorder buffer
    /// would): every handle stays valid until released, and all come back.
    func testOutOfOrderHoldingKeepsEveryPacket() {
        let pool = PacketPool(count: 128, bufferSize: 64)
        var held: [(PacketHandle, UInt8)] = []
        var rng = SystemRandomNumberGenerator()
        for round in 0..<10_000 {
            if held.count < 128, Bool.random(using: &rng) || held.isEmpty {
                let v = UInt8(truncatingIfNeeded: round)
                let h = [v, v, v].withUnsafeBytes { pool.hold($0) }!
                held.append((h, v))
            } else {
                let k = Int.random(in: 0..<held.count, using: &rng)
                let (h, v) = held.remove(at: k)
                XCTAssertEqual(Array(pool.packet(h)), [v, v, v])
                XCTAssertTrue(pool.release(h))
            }
        }
        for (h, _) in held { pool.release(h) }
        XCTAssertEqual(pool.available, 128)
    }

    /// Two holders of one buffer (two packets of one GRO run kept apart): the buffer
    /// is freed at the second release only; a third release, or a retain after the
    /// buffer was freed, is refused and counted, and the handle stays stale after reuse.
    func testSharedBufferFreedAtLastReleaseAndStaleHandlesCounted() {
        let pool = PacketPool(count: 2, bufferSize: 64)
        let h = ([7, 7, 7] as [UInt8]).withUnsafeBytes { pool.hold($0) }!
        XCTAssertTrue(pool.retain(h))
        XCTAssertEqual(pool.holders(h), 2)
        XCTAssertTrue(pool.release(h))
        XCTAssertTrue(pool.isLive(h), "one holder left")
        XCTAssertEqual(Array(pool.packet(h)), [7, 7, 7])
        XCTAssertEqual(pool.available, 1)
        XCTAssertTrue(pool.release(h))
        XCTAssertFalse(pool.isLive(h))
        XCTAssertEqual(pool.available, 2)
        XCTAssertEqual(pool.counters.staleHandles, 0)
        XCTAssertFalse(pool.release(h), "released once too often")
        XCTAssertFalse(pool.retain(h), "retained after it was freed")
        XCTAssertEqual(pool.counters.staleHandles, 2)
        // The buffer comes back with a new generation: the old handle stays stale.
        let again = pool.take()!
        XCTAssertEqual(again.index, h.index)
        XCTAssertNotEqual(again.generation, h.generation)
        XCTAssertFalse(pool.isLive(h))
        XCTAssertEqual(pool.holders(h), 0)
        XCTAssertEqual(pool.counters.exhausted, 0)
        _ = pool.take()
        XCTAssertNil(pool.take())
        XCTAssertEqual(pool.counters.exhausted, 1, "an empty pool is counted")
    }
}
