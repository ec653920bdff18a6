import CReactor
import XCTest

@testable import Reactor

/// Received datagrams land in the socket's PacketPool (Datagram.swift, "the batch
/// contract"): a handler keeps a datagram past its batch by its handle, later batches
/// reuse the other buffers, and an empty pool is counted, not fatal. Each test runs
/// on both backends (io_uring where this kernel supports it).
final class PooledReceiveTests: XCTestCase {
    /// Hands each batch to a closure.
    final class Handler: DatagramHandler {
        var onBatch: (DatagramBatch, DatagramSocket) -> Void = { _, _ in }
        func received(_ batch: DatagramBatch, on socket: DatagramSocket) { onBatch(batch, socket) }
    }

    /// Two sockets on loopback: `rx` receives into `pool`, `tx` sends datagrams of 100 bytes
    /// whose every byte is `tag`.
    struct Pair {
        let r: Reactor
        let rx: DatagramSocket
        let tx: DatagramSocket
        let handler: Handler
        let out: UnsafeMutablePointer<CReactor_dgram>
        let bytes: UnsafeMutableRawPointer

        init(backend: DatagramBackend, batchSize: Int, pool: PacketPool) throws {
            r = try Reactor()
            var lo = CReactor_endpoint()
            _ = CReactor_endpoint_parse("127.0.0.1", 0, &lo)
            handler = Handler()
            rx = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: lo).fd, backend: backend, batchSize: batchSize,
                                    bufferSize: pool.bufferSize, headroom: 64, pool: pool, handler: handler)
            tx = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: lo).fd, backend: .mmsg, handler: Handler())
            out = .allocate(capacity: 64)
            bytes = .allocate(byteCount: 64 * 100, alignment: 16)
        }

        func free() {
            rx.close()
            tx.close()
            out.deallocate()
            bytes.deallocate()
        }

        /// Sends `tags.count` datagrams, one per tag.
        func send(_ tags: [UInt8]) {
            for (i, t) in tags.enumerated() {
                (bytes + i * 100).initializeMemory(as: UInt8.self, repeating: t, count: 100)
                out[i] = CReactor_dgram()
                out[i].data = (bytes + i * 100).assumingMemoryBound(to: UInt8.self)
                out[i].len = 100
                out[i].peer = rx.localEndpoint
            }
            XCTAssertEqual(tx.send(DatagramBatch(base: out, count: tags.count)), tags.count)
        }

        /// Runs the loop until `done()` or 10 s (a bound against a hang, not a speed claim).
        func run(until done: () -> Bool) {
            let end = Reactor.now() + 10_000_000_000
            while !done() && Reactor.now() < end { r.runOnce(timeoutMs: 50) }
        }
    }

    func backends() -> [DatagramBackend] { DatagramBackend.uringSupported ? [.mmsg, .uring] : [.mmsg] }

    func poolSize(_ backend: DatagramBackend) -> Int { backend == .mmsg ? 16 : UringEngine.buffersPerSocket + 16 }

    /// The buffer index a view's bytes lie in.
    static func index(of v: CReactor_dgram, in pool: PacketPool) -> Int {
        (UnsafeRawPointer(v.data!) - UnsafeRawPointer(pool.base)) / pool.bufferSize
    }

    /// Two datagrams kept from the first batch stay intact while 50 later batches
    /// land in (and reuse) the other buffers; released, the pool is whole again.
    func testKeptHandleStaysIntactWhileLaterBatchesReuseOtherBuffers() throws {
        if !DatagramBackend.uringSupported { print("io_uring not supported here: mmsg backend only") }
        for backend in backends() {
            let pool = PacketPool(count: poolSize(backend), bufferSize: 2048)
            let p = try Pair(backend: backend, batchSize: 8, pool: pool)
            defer { p.free() }
            let idleFree = pool.available  // mmsg: all of them; uring: minus the ring's
            var kept: [(h: PacketHandle, offset: Int, tag: UInt8)] = []
            var received = 0
            var laterIndices = Set<Int>()
            var corrupted = 0
            p.handler.onBatch = { batch, socket in
                // First, the kept bytes: the kernel has just written this batch, so a kept
                // buffer posted again would show it here.
                for k in kept {
                    let b = pool.buffer(k.h)
                    if !(0..<100).allSatisfy({ b[k.offset + $0] == k.tag }) { corrupted += 1 }
                }
                for i in 0..<batch.count {
                    let v = batch[i].pointee
                    let tag = v.data[0]
                    if received >= 8 { laterIndices.insert(Self.index(of: v, in: pool)) }
                    if received < 8 && (tag == 1 || tag == 6), let h = socket.keep(i) {
                        kept.append((h, pool.offset(of: v.data, in: h)!, tag))
                    } else {
                        // Scribble over the rest, as a handler decrypting in place would.
                        v.data.update(repeating: 0xEE, count: Int(v.len))
                    }
                    received += 1
                }
            }
            p.send((0..<8).map { UInt8($0) })
            p.run { received >= 8 }
            XCTAssertEqual(received, 8, "\(backend)")
            XCTAssertEqual(kept.count, 2, "\(backend)")
            XCTAssertNil(p.rx.keep(0), "keep outside the handler is refused")
            XCTAssertEqual(pool.available, idleFree - 2, "\(backend): the two kept buffers are held, every other one is free")
            for round in 0..<50 {
                p.send((0..<8).map { UInt8(10 + (round + $0) % 200) })
                p.run { received >= 8 + 8 * (round + 1) }
            }
            XCTAssertEqual(received, 8 + 50 * 8, "\(backend)")
            XCTAssertEqual(corrupted, 0, "\(backend): kept bytes intact")
            for k in kept {
                XCTAssertFalse(laterIndices.contains(Int(k.h.index)), "\(backend): a kept buffer was never posted again")
                let b = pool.buffer(k.h)
                XCTAssertTrue((0..<100).allSatisfy { b[k.offset + $0] == k.tag }, "\(backend): kept datagram \(k.tag) intact")
            }
            if backend == .mmsg {
                XCTAssertLessThanOrEqual(laterIndices.count, pool.count - 2, "later batches reused the free buffers")
            }
            for k in kept { XCTAssertTrue(pool.release(k.h)) }
            XCTAssertEqual(pool.available, idleFree, "\(backend): released, every buffer is back")
            // A second release of the same handle, or a stale one, is refused and counted.
            let stale = pool.counters.staleHandles
            XCTAssertFalse(pool.release(kept[0].h))
            XCTAssertFalse(pool.retain(kept[1].h))
            XCTAssertEqual(pool.counters.staleHandles, stale + 2)
            XCTAssertEqual(p.rx.counters.poolShort, 0, "\(backend)")
            XCTAssertEqual(p.rx.counters.poolDrops, 0, "\(backend)")
        }
    }

    /// A handler that keeps every datagram empties the pool: further datagrams are
    /// dropped and counted (no crash, no allocation, no spinning); once the handles
    /// are released, datagrams land in the pool again.
    func testExhaustionIsCountedAndRecovers() throws {
        for backend in backends() {
            // uring: the ring gets what the pool has (8 buffers: short from the start, counted).
            let pool = PacketPool(count: 8, bufferSize: 2048)
            let p = try Pair(backend: backend, batchSize: 8, pool: pool)
            defer { p.free() }
            var kept: [PacketHandle] = []
            var received = 0
            p.handler.onBatch = { batch, socket in
                for i in 0..<batch.count {
                    received += 1
                    if let h = socket.keep(i) { kept.append(h) }
                }
            }
            p.send((0..<8).map { UInt8($0) })
            p.run { received >= 8 }
            XCTAssertEqual(received, 8, "\(backend)")
            XCTAssertEqual(kept.count, 8, "\(backend)")
            XCTAssertEqual(pool.available, 0, "\(backend)")
            p.send((0..<8).map { UInt8(20 + $0) })
            p.run { p.rx.counters.poolDrops >= 8 }
            XCTAssertEqual(p.rx.counters.poolDrops, 8, "\(backend): every datagram that found no buffer is counted")
            XCTAssertEqual(received, 8, "\(backend)")
            XCTAssertGreaterThan(p.rx.counters.poolShort, 0, "\(backend)")
            XCTAssertGreaterThan(pool.counters.exhausted, 0, "\(backend)")
            for h in kept { XCTAssertTrue(pool.release(h)) }
            kept.removeAll()
            p.handler.onBatch = { batch, _ in received += batch.count }
            p.send((0..<4).map { UInt8(40 + $0) })
            p.run { received >= 12 }
            XCTAssertEqual(received, 12, "\(backend): receiving again once buffers were released")
            XCTAssertEqual(p.rx.counters.poolDrops, 8, "\(backend)")
        }
    }
}
