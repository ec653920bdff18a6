import Foundation
import XCTest
@testable import Support
@testable import Protocol
@testable import Simulation
@testable import Wire
import Reactor

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

    /// The receive path with the pool in use, as a reorder buffer will use it: datagrams
    /// arrive over loopback into a DatagramSocket's PacketPool, each is kept by its handle
    /// and given to a ReorderBuffer<PacketHandle>; one counter of every batch comes a batch
    /// late, so a dozen handles are held past their batch each time, and every handle is
    /// released when the buffer lets it go. 2 000 batches of 16 after a warm-up: nothing
    /// allocated (counted as above), every packet out intact and in counter order, the pool
    /// whole at the end.
    func testPooledReceiveIntoReorderBufferAllocatesNothing() throws {
        let r = try Reactor()
        let batch = 16, headroom = 64, size = 200
        let pool = PacketPool(count: batch + 64, bufferSize: 2048)
        final class Handler: DatagramHandler {
            var onBatch: (DatagramBatch, DatagramSocket) -> Void = { _, _ in }
            func received(_ batch: DatagramBatch, on socket: DatagramSocket) { onBatch(batch, socket) }
        }
        let h = Handler()
        guard let lo = SocketAddress.parse("127.0.0.1", port: 0) else { return XCTFail("loopback") }
        let rx = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: lo).fd, backend: .mmsg, batchSize: batch,
                                    bufferSize: 2048, headroom: headroom, pool: pool, handler: h)
        let tx = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: lo).fd, backend: .mmsg, handler: Handler())
        defer {
            rx.close()
            tx.close()
        }
        let to = rx.localEndpoint
        var rb = ReorderBuffer<PacketHandle>(depth: 128, paths: 1)
        var received = 0, released = 0, wrong = 0, refused = 0
        var next: UInt64 = 0
        var now = Instant(ns: 1_000_000_000)
        h.onBatch = { b, socket in
            for i in 0..<b.count {
                received += 1
                guard let k = socket.keep(i) else {
                    refused += 1
                    continue
                }
                let c = UnsafeRawPointer(b[i].pointee.data!).loadUnaligned(as: UInt64.self)
                if case .drop(let d) = rb.handle(counter: c, packet: k, path: 0, now: now) { pool.release(d) }
            }
            while let k = rb.pollRelease() {
                // The packet lies at the headroom of its buffer, intact however long it was held.
                let p = UnsafeRawPointer(pool.buffer(k).baseAddress! + headroom)
                if p.loadUnaligned(as: UInt64.self) != next || p.load(fromByteOffset: size - 1, as: UInt8.self) != UInt8(truncatingIfNeeded: next) {
                    wrong += 1
                }
                next += 1
                released += 1
                pool.release(k)
            }
        }
        let out = UnsafeMutablePointer<DatagramView>.allocate(capacity: batch + 1)
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: (batch + 1) * size, alignment: 16)
        defer {
            out.deallocate()
            bytes.deallocate()
        }
        let none = UInt64.max
        var late = none  // the counter held back for the next batch
        var sent = 0
        func send(_ counters: UnsafeBufferPointer<UInt64>) {
            for i in 0..<counters.count {
                let c = counters[i], p = bytes + i * size
                p.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: c), count: size)
                p.storeBytes(of: c, as: UInt64.self)
                out[i] = DatagramView()
                out[i].data = p.assumingMemoryBound(to: UInt8.self)
                out[i].len = UInt32(size)
                out[i].peer = to
            }
            sent += tx.send(DatagramBatch(base: out, count: counters.count))
        }
        let order = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: batch + 1)
        defer { order.deallocate() }
        var counted: UInt64?
        let rounds = 2_100
        for k in 0..<rounds {
            if k == 100 { counted = Self.mallocCount?() }
            // This batch's counters, the one held back last time first, and one of its own held back.
            var n = 0
            if late != none {
                order[n] = late
                n += 1
            }
            let first = UInt64(k * batch)
            late = k + 1 < rounds ? first + 3 : none
            for j in 0..<batch where first + UInt64(j) != late {
                order[n] = first + UInt64(j)
                n += 1
            }
            send(UnsafeBufferPointer(rebasing: order[0..<n]))
            now = now + Span.milliseconds(1)
            var spins = 0
            while received < sent && spins < 1000 {
                r.runOnce(timeoutMs: 100)
                spins += 1
            }
        }
        let after = Self.mallocCount?()
        XCTAssertEqual(sent, rounds * batch)
        XCTAssertEqual(received, sent, "every datagram received (loopback, paced by the loop)")
        XCTAssertEqual(released, sent, "every packet released in counter order")
        XCTAssertEqual(wrong, 0, "held packets intact")
        XCTAssertEqual(refused, 0)
        XCTAssertGreaterThanOrEqual(rb.counters.maxHeld, batch - 4, "handles held past their batch")
        XCTAssertEqual(pool.available, pool.count, "every handle released")
        XCTAssertEqual(pool.counters.staleHandles, 0)
        XCTAssertEqual(rx.counters.poolShort, 0)
        if let counted, let after {
            XCTAssertEqual(after - counted, 0, "allocations on the pooled receive path")
            print("pooled receive: \(after - counted) allocations for 32 000 datagrams held in a reorder buffer")
        } else if ProcessInfo.processInfo.environment["WS_REQUIRE_MALLOC_COUNT"] == "1" {
            XCTFail("WS_REQUIRE_MALLOC_COUNT=1 but the malloc counter is not preloaded: allocations not counted")
        } else {
            print("pooled receive: malloc counter not preloaded; allocation count not checked (see the doc comment)")
        }
    }

    /// The wired data path with two paths (MultipathWireTests' world: direct + relayed
    /// through the anchor): a's owner spreads with its MultipathScheduler (sealed in place,
    /// RELAY-wrapped for the relay path), the anchor forwards, b's owner opens and b's
    /// SessionReorder puts the packets back in order (the relayed ones arrive a packet late);
    /// b answers every second packet the same way. 10 000 packets after a warm-up:
    /// nothing allocated (counted as above), every packet in counter order.
    func testWiredMultipathDataPathAllocatesNothing() {
        let w = MultipathWireTests.makeWorld()
        let sim = w.sim
        let pa = sim.pid(w.a), pb = sim.pid(w.b)
        var aShard = sim.hosts[w.a].shards[0], bShard = sim.hosts[w.b].shards[0]
        var anchor = sim.hosts[w.anchor].shards[0]
        var aCore = sim.hosts[w.a].core, bCore = sim.hosts[w.b].core
        // The world lets go of what the loop took out of it: two copies of a shard share
        // their arrays, and the first write to one of them would copy it here, where the
        // daemon (one shard per lane, never copied) copies nothing.
        for h in [w.a, w.b, w.anchor] { sim.hosts[h].shards = [] }
        var reorder = SessionReorder<UInt32>(peers: sim.hosts.count)
        XCTAssertGreaterThanOrEqual(aCore.dataRoute(for: pb)?.spread.count ?? 0, 2, "a spreads to b")
        let aLocal = sim.hosts[w.a].local, bLocal = sim.hosts[w.b].local, anchorLocal = sim.hosts[w.anchor].local
        let headroom = 64, payload = 1200
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: headroom + payload + 64, alignment: 16)
        let parked = UnsafeMutableRawBufferPointer.allocate(byteCount: headroom + payload + 64, alignment: 16)
        defer { buffer.deallocate(); parked.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        parked.initializeMemory(as: UInt8.self, repeating: 0)
        var parkedLength = 0
        var counted: UInt64?
        var released = 0, disorder = 0, relayed = 0, direct = 0
        var last: UInt32?
        let start = sim.now
        // One datagram that left `from` for `to` (an anchor forwards it), opened by the receiver's shard.
        func arrive(_ b: UnsafeMutableRawBufferPointer, length: Int, from: Int, to ep: Endpoint, now: Instant) {
            var view = b
            var len = length
            var source = from == w.a ? aLocal : bLocal
            if ep == anchorLocal {
                guard case .forward(_, 0, let l) = anchor.receive(view, length: len, from: source, now: now) else { return }
                len = l
                source = anchorLocal
            }
            if from == w.a {
                let r = bShard.receive(view, length: len, from: source, now: now)
                guard case .packet(let peer, let off, _) = r, peer == pa else { return }
                let o = bShard.lastOpened
                let n = view.loadUnaligned(fromByteOffset: off + 8, as: UInt32.self)
                switch reorder.handle(peer: pa, counter: o.counter, receiverIndex: o.receiverIndex, source: o.source,
                                      relayed: o.relayed, packet: n, now: now) {
                case .deliver, .late: note(n)
                default: break
                }
                while let h = reorder.pollRelease(peer: pa) { note(h) }
            } else {
                _ = aShard.receive(view, length: len, from: source, now: now)
            }
            view = b
        }
        func note(_ n: UInt32) {
            // (The first relayed packet, late, comes before buffering starts: passed on as it is.)
            if let l = last, n <= l, n >= 100 { disorder += 1 }
            last = n
            released += 1
        }
        for i in 0..<10_200 {
            if i == 200 { counted = Self.mallocCount?() }
            let now = start + Span(ns: UInt64(i) * 1_000_000)
            buffer[headroom] = 0x45
            buffer.storeBytes(of: UInt32(i), toByteOffset: headroom + 8, as: UInt32.self)
            guard case .send(let ep, let off, let len) = aShard.send(to: pb, buffer, payloadOffset: headroom,
                                                                    payloadLength: payload, now: now) else { break }
            let view = UnsafeMutableRawBufferPointer(rebasing: buffer[off..<buffer.count])
            if ep == anchorLocal {
                // The relayed one arrives after the next direct one: park it.
                relayed += 1
                if parkedLength > 0 { arrive(parked, length: parkedLength, from: w.a, to: anchorLocal, now: now) }
                parked.baseAddress!.copyMemory(from: view.baseAddress!, byteCount: len)
                parkedLength = len
            } else {
                direct += 1
                arrive(view, length: len, from: w.a, to: ep, now: now)
                if parkedLength > 0 {
                    arrive(parked, length: parkedLength, from: w.a, to: anchorLocal, now: now)
                    parkedLength = 0
                }
            }
            if i % 2 == 0 {
                buffer[headroom] = 0x45
                if case .send(let ep2, let off2, let len2) = bShard.send(to: pa, buffer, payloadOffset: headroom, payloadLength: 60, now: now) {
                    arrive(UnsafeMutableRawBufferPointer(rebasing: buffer[off2..<buffer.count]), length: len2, from: w.b, to: ep2, now: now)
                }
            }
            if let d = reorder.pollTimeout()?.deadline, d <= now { reorder.handleTimeout(now: now) { _, h in note(h) } }
            _ = aShard.flushActivity(now: now)
            while let r = aShard.pollReport() { aCore.applyShardReport(r, now: now) }
            _ = bShard.flushActivity(now: now)
            while let r = bShard.pollReport() { bCore.applyShardReport(r, now: now) }
            while aCore.pollTransmit() != nil {}
            while aCore.pollEvent() != nil {}
            while bCore.pollTransmit() != nil {}
            while bCore.pollEvent() != nil {}
        }
        let after = Self.mallocCount?()
        XCTAssertGreaterThan(direct, 1000, "the direct path carried a share")
        XCTAssertGreaterThan(relayed, 1000, "the relayed path carried a share")
        XCTAssertGreaterThan(released, 10_000)
        XCTAssertEqual(disorder, 0, "in counter order")
        XCTAssertTrue(reorder.isBuffering(pa))
        if let counted, let after {
            XCTAssertEqual(after - counted, 0, "allocations on the wired multipath data path")
            print("multipath wired: \(after - counted) allocations for 10 000 spread packets and 5 000 answers")
        } else if ProcessInfo.processInfo.environment["WS_REQUIRE_MALLOC_COUNT"] == "1" {
            XCTFail("WS_REQUIRE_MALLOC_COUNT=1 but the malloc counter is not preloaded: allocations not counted")
        }
    }
}
