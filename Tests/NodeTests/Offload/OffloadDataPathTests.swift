import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// The offload data path without the kernel, in a loop: a 64 KiB TSO
/// super-packet is planned and split into an arena (DATA-header room in front of
/// every segment), every segment is sealed in place by one `Tunnels` and opened
/// in place by the other, and the coalescer turns the opened segments back into
/// one super-packet whose payload is the original's, byte for byte.
///
/// Not timed. It is the steady-state guard of the hot path (STYLE 16): with
/// perf/lib/malloccount.so preloaded it asserts that no round after the first
/// allocates anything,
///
///   gcc -O2 -shared -fPIC -o /tmp/malloccount.so perf/lib/malloccount.c
///   LD_PRELOAD=/tmp/malloccount.so <xctest> NodeTests.OffloadDataPathTests
///
/// and under callgrind (a `strip -g` copy of the test binary: valgrind 3.19
/// cannot read Swift 6's DWARF 5) it gives instructions per super-packet
/// (perf/results/datapath.md). Without the counter it still checks the bytes;
/// with WS_REQUIRE_MALLOC_COUNT=1 (scripts/test's preloaded run) a missing counter fails.
final class OffloadDataPathTests: XCTestCase {
    typealias Counter = @convention(c) () -> UInt64
    static let mallocCount: Counter? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "ws_malloc_count") else { return nil }
        return unsafeBitCast(sym, to: Counter.self)
    }()

    func testSuperPacketsSealedOpenedAndCoalescedInPlace() {
        let sim = SessionSim(count: 2)
        sim.send(from: 0, to: 1, .tagged(0))
        sim.drive(for: .milliseconds(100))
        sim.send(from: 1, to: 0, .tagged(0))
        sim.drive(for: .milliseconds(100))
        XCTAssertEqual(sim.status(0, 1)?.state, .established)
        let a = sim.nodes[0].address
        var ta = sim.nodes[0].tunnels, tb = sim.nodes[1].tunnels
        let pa = sim.pid(0, 1), pb = sim.pid(1, 0)
        let now = sim.now

        var spec = PacketSpec()
        spec.tcpOptions = timestampOption(1, 2)
        spec.payload = pattern(65535 - 52, seed: 99)
        spec.flags = 0x18
        let (superPacket, vnet) = superPacket(spec, gsoSize: 1352)
        let arena = UnsafeMutableRawPointer.allocate(byteCount: 128 << 10, alignment: 64)
        defer { arena.deallocate() }
        let coalescer = GSOCoalescer()
        let rounds = Int(ProcessInfo.processInfo.environment["WS_ROUNDS"] ?? "") ?? 200
        var delivered = 0
        var segments = 0
        var mallocsBefore: UInt64 = 0
        superPacket.withUnsafeBytes { src in
            for round in 0..<rounds {
                if round == 2, let c = Self.mallocCount { mallocsBefore = c() }
                guard case .split(let plan) = Offload.plan(src.baseAddress!, length: superPacket.count, header: vnet) else {
                    return XCTFail("plan")
                }
                let stride = plan.segmentLength + DataMessage.overhead
                Offload.split(src.baseAddress!, plan: plan, segments: 0..<plan.count, into: arena + DataMessage.headerSize, stride: stride)
                for i in 0..<plan.count {
                    let slot = UnsafeMutableRawBufferPointer(start: arena + i * stride, count: stride)
                    guard case .send(_, let off, let len) = ta.send(to: pa, slot, payloadOffset: DataMessage.headerSize,
                                                                     payloadLength: plan.length(ofSegment: i), now: now),
                          off == 0, len == plan.length(ofSegment: i) + DataMessage.overhead else { return XCTFail("seal \(i)") }
                    segments += 1
                }
                // The receiver sees the same bytes as one GRO run; each datagram is opened where it lies.
                for i in 0..<plan.count {
                    let len = plan.length(ofSegment: i) + DataMessage.overhead
                    let view = UnsafeMutableRawBufferPointer(start: arena + i * stride, count: len)
                    guard case .data(let p, let o, let l) = tb.receive(view, length: len, from: a, now: now, underLoad: false),
                          p == pb else { return XCTFail("open \(i)") }
                    coalescer.add(view.baseAddress! + o, length: l)
                }
                var outputs = 0
                coalescer.flush { out in
                    outputs += 1
                    XCTAssertEqual(out.pieces.count, plan.count - 1)
                    if round == 0 {
                        var bytes = Array(UnsafeRawBufferPointer(start: out.head + spec.headerLength, count: out.headLength - spec.headerLength))
                        for piece in out.pieces { bytes += UnsafeRawBufferPointer(start: piece.base, count: piece.length) }
                        XCTAssertEqual(bytes, spec.payload, "the stream survives split, seal, open, coalesce")
                    }
                }
                XCTAssertEqual(outputs, 1)
                delivered += 1
            }
        }
        if let c = Self.mallocCount, rounds > 2 {
            let n = c() - mallocsBefore
            XCTAssertEqual(n, 0, "allocations in \(rounds - 2) rounds of a 64 KiB super-packet (49 segments each)")
            print("OffloadDataPathTests: \(n) allocations in \(rounds - 2) super-packets")
        } else if ProcessInfo.processInfo.environment["WS_REQUIRE_MALLOC_COUNT"] == "1" {
            XCTFail("WS_REQUIRE_MALLOC_COUNT=1 but allocations were not counted (counter not preloaded, or WS_ROUNDS < 3)")
        }
        XCTAssertEqual(delivered, rounds)
        XCTAssertEqual(segments, rounds * 49)
        XCTAssertEqual(coalescer.badChecksums, 0)
        XCTAssertNil(tb.pollEvent())
    }
}
