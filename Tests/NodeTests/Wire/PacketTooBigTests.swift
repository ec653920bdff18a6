import Foundation
import XCTest
@testable import Support
@testable import Wire

/// ICMP frag-needed / Packet Too Big for a packet above the path MTU
/// (Wire/PacketTooBig.swift): parsed back with every checksum verified, and
/// never an answer to an ICMP error.
final class PacketTooBigTests: XCTestCase {
    // MARK: Packets to answer

    /// An IPv4 packet of `length` bytes: 10.77.0.1 -> 10.77.0.2, DF as given, protocol `proto`.
    private func ipv4(length: Int, df: Bool = true, proto: UInt8 = 6, fragOffset: UInt16 = 0, icmpType: UInt8 = 8,
                      src: [UInt8] = [10, 77, 0, 1]) -> [UInt8] {
        var p = [UInt8](repeating: 0xAB, count: length)
        p[0] = 0x45; p[1] = 0
        p[2] = UInt8(length >> 8); p[3] = UInt8(length & 0xFF)
        p[4] = 0x12; p[5] = 0x34
        let ff = (df ? UInt16(0x4000) : 0) | fragOffset
        p[6] = UInt8(ff >> 8); p[7] = UInt8(ff & 0xFF)
        p[8] = 64; p[9] = proto
        p[10] = 0; p[11] = 0
        p.replaceSubrange(12..<16, with: src)
        p.replaceSubrange(16..<20, with: [10, 77, 0, 2])
        let c = p.withUnsafeBytes { InternetChecksum.finish(InternetChecksum.add(0, $0.baseAddress!, 20)) }
        p[10] = UInt8(c >> 8); p[11] = UInt8(c & 0xFF)
        if proto == 1 { p[20] = icmpType; p[21] = 0 }
        return p
    }

    /// An IPv6 packet: fd77::1 -> fd77::2, next header `next`.
    private func ipv6(length: Int, next: UInt8 = 17, icmpType: UInt8 = 128, src: [UInt8]? = nil) -> [UInt8] {
        var p = [UInt8](repeating: 0xCD, count: length)
        p[0] = 0x60; p[1] = 0; p[2] = 0; p[3] = 0
        let pl = length - 40
        p[4] = UInt8(pl >> 8); p[5] = UInt8(pl & 0xFF)
        p[6] = next; p[7] = 64
        let s = src ?? [0xfd, 0x77] + [UInt8](repeating: 0, count: 13) + [1]
        p.replaceSubrange(8..<24, with: s)
        p.replaceSubrange(24..<40, with: [0xfd, 0x77] + [UInt8](repeating: 0, count: 13) + [2])
        if next == 58 { p[40] = icmpType; p[41] = 0 }
        return p
    }

    private func build(_ packet: [UInt8], mtu: Int) -> (PacketTooBig.Result, [UInt8]) {
        var out = [UInt8](repeating: 0, count: PacketTooBig.bufferSize)
        let r = packet.withUnsafeBytes { pkt in
            out.withUnsafeMutableBytes { PacketTooBig.build(packet: pkt.baseAddress!, length: pkt.count, mtu: mtu, into: $0.baseAddress!) }
        }
        if case .built(let n) = r { return (r, Array(out[0..<n])) }
        return (r, [])
    }

    private func sum(_ b: ArraySlice<UInt8>) -> UInt16 {
        Array(b).withUnsafeBytes { InternetChecksum.finish(InternetChecksum.add(0, $0.baseAddress!, $0.count)) }
    }

    private func be16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }

    // MARK: IPv4

    func testIPv4FragNeeded() {
        let original = ipv4(length: 1400)
        let (r, icmp) = build(original, mtu: 1340)
        guard case .built(let n) = r else { return XCTFail("\(r)") }
        XCTAssertEqual(n, 576, "the error is at most 576 bytes (RFC 1812)")
        // IPv4 header: valid checksum, ICMP, from the packet's destination to its source.
        XCTAssertEqual(icmp[0], 0x45)
        XCTAssertEqual(be16(icmp, 2), n)
        XCTAssertEqual(icmp[9], 1)
        XCTAssertEqual(sum(icmp[0..<20]), 0, "IPv4 header checksum")
        XCTAssertEqual(Array(icmp[12..<16]), [10, 77, 0, 2])
        XCTAssertEqual(Array(icmp[16..<20]), [10, 77, 0, 1])
        // ICMP: type 3 code 4, next-hop MTU, checksum over the whole message.
        XCTAssertEqual(icmp[20], 3)
        XCTAssertEqual(icmp[21], 4)
        XCTAssertEqual(be16(icmp, 24), 0)
        XCTAssertEqual(be16(icmp, 26), 1340)
        XCTAssertEqual(sum(icmp[20...]), 0, "ICMP checksum")
        // The quote: the original's first bytes, its header intact.
        XCTAssertEqual(Array(icmp[28...]), Array(original[0..<548]))
    }

    func testIPv4SmallPacketQuotedWhole() {
        let original = ipv4(length: 300, proto: 17)
        let (r, icmp) = build(original, mtu: 1280)
        XCTAssertEqual(r, .built(length: 328))
        XCTAssertEqual(Array(icmp[28...]), original)
        XCTAssertEqual(sum(icmp[20...]), 0)
        XCTAssertEqual(sum(icmp[0..<20]), 0)
    }

    func testIPv4NotAnswered() {
        for t: UInt8 in [3, 4, 5, 11, 12] {
            XCTAssertEqual(build(ipv4(length: 1400, proto: 1, icmpType: t), mtu: 1340).0, .skip(.icmpError), "ICMP type \(t)")
        }
        // An echo request is a query, not an error: answered.
        if case .skip = build(ipv4(length: 1400, proto: 1, icmpType: 8), mtu: 1340).0 { XCTFail("echo request") }
        XCTAssertEqual(build(ipv4(length: 1400, df: false), mtu: 1340).0, .skip(.noDF))
        XCTAssertEqual(build(ipv4(length: 1400, fragOffset: 185), mtu: 1340).0, .skip(.fragment))
        XCTAssertEqual(build(ipv4(length: 1400, src: [0, 0, 0, 0]), mtu: 1340).0, .skip(.badSource))
        XCTAssertEqual(build(ipv4(length: 1400, src: [224, 0, 0, 5]), mtu: 1340).0, .skip(.badSource))
        XCTAssertEqual(build(ipv4(length: 1400, src: [127, 0, 0, 1]), mtu: 1340).0, .skip(.badSource))
        XCTAssertEqual(build([0x45, 0, 0], mtu: 1340).0, .skip(.notIP))
        XCTAssertEqual(build([0x20] + [UInt8](repeating: 0, count: 60), mtu: 1340).0, .skip(.notIP))
        XCTAssertEqual(build([], mtu: 1340).0, .skip(.notIP))
    }

    // MARK: IPv6

    func testIPv6PacketTooBig() {
        let original = ipv6(length: 1400)
        let (r, icmp) = build(original, mtu: 1320)
        guard case .built(let n) = r else { return XCTFail("\(r)") }
        XCTAssertEqual(n, 1280, "the error is at most the IPv6 minimum MTU")
        XCTAssertEqual(icmp[0] >> 4, 6)
        XCTAssertEqual(be16(icmp, 4), n - 40)
        XCTAssertEqual(icmp[6], 58)
        XCTAssertEqual(Array(icmp[8..<24]), Array(original[24..<40]), "from the packet's destination")
        XCTAssertEqual(Array(icmp[24..<40]), Array(original[8..<24]), "to its source")
        XCTAssertEqual(icmp[40], 2)
        XCTAssertEqual(icmp[41], 0)
        XCTAssertEqual(Int(icmp[44]) << 24 | Int(icmp[45]) << 16 | Int(icmp[46]) << 8 | Int(icmp[47]), 1320)
        // Checksum over the pseudo-header (src, dst, length, 58) and the message.
        var pseudo = Array(icmp[8..<40])
        let len = n - 40
        pseudo += [UInt8(len >> 24), UInt8((len >> 16) & 0xFF), UInt8((len >> 8) & 0xFF), UInt8(len & 0xFF), 0, 0, 0, 58]
        XCTAssertEqual(sum((pseudo + icmp[40...])[...]), 0, "ICMPv6 checksum")
        XCTAssertEqual(Array(icmp[48...]), Array(original[0..<1232]))
    }

    func testIPv6OddLengthChecksum() {
        let original = ipv6(length: 301)
        let (r, icmp) = build(original, mtu: 1280)
        XCTAssertEqual(r, .built(length: 349))
        var pseudo = Array(icmp[8..<40])
        pseudo += [0, 0, UInt8(309 >> 8), UInt8(309 & 0xFF), 0, 0, 0, 58]
        XCTAssertEqual(sum((pseudo + icmp[40...])[...]), 0)
    }

    func testIPv6NotAnswered() {
        for t: UInt8 in [1, 2, 3, 4, 127] {
            XCTAssertEqual(build(ipv6(length: 1400, next: 58, icmpType: t), mtu: 1320).0, .skip(.icmpError), "ICMPv6 type \(t)")
        }
        if case .skip = build(ipv6(length: 1400, next: 58, icmpType: 128), mtu: 1320).0 { XCTFail("echo request") }
        // An ICMPv6 error behind a hop-by-hop header is still an error.
        var hbh = ipv6(length: 1400, next: 0)
        hbh[40] = 58; hbh[41] = 0; hbh[48] = 1
        XCTAssertEqual(build(hbh, mtu: 1320).0, .skip(.icmpError))
        XCTAssertEqual(build(ipv6(length: 1400, src: [UInt8](repeating: 0, count: 16)), mtu: 1320).0, .skip(.badSource))
        XCTAssertEqual(build(ipv6(length: 1400, src: [0xff, 0x02] + [UInt8](repeating: 0, count: 13) + [1]), mtu: 1320).0, .skip(.badSource))
        XCTAssertEqual(build(Array(ipv6(length: 1400)[0..<39]), mtu: 1320).0, .skip(.notIP))
    }

    // MARK: No allocation

    typealias Counter = @convention(c) () -> UInt64
    static let mallocCount: Counter? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "ws_malloc_count") else { return nil }
        return unsafeBitCast(sym, to: Counter.self)
    }()

    /// Building errors and asking the limiter allocate nothing (scripts/test's
    /// allocation run preloads perf/lib/malloccount.so; without it, not counted).
    func testBuildingAllocatesNothing() {
        let packets = [ipv4(length: 1400), ipv6(length: 1400), ipv4(length: 1400, proto: 1, icmpType: 3)]
        let out = UnsafeMutableRawPointer.allocate(byteCount: PacketTooBig.bufferSize, alignment: 16)
        defer { out.deallocate() }
        let raw = packets.map { p -> UnsafeMutableRawPointer in
            let r = UnsafeMutableRawPointer.allocate(byteCount: p.count, alignment: 16)
            p.withUnsafeBytes { r.copyMemory(from: $0.baseAddress!, byteCount: p.count) }
            return r
        }
        defer { raw.forEach { $0.deallocate() } }
        var limiter = PacketTooBigLimiter()
        var built = 0, allowed = 0
        var counted: UInt64?
        for i in 0..<30_000 {
            if i == 3_000 { counted = Self.mallocCount?() }
            let k = i % 3
            if case .built = PacketTooBig.build(packet: raw[k], length: 1400, mtu: 1340, into: out) { built += 1 }
            if limiter.allow(now: Instant(ns: UInt64(i) * 1_000_000)) { allowed += 1 }
        }
        let after = Self.mallocCount?()
        XCTAssertEqual(built, 20_000)
        XCTAssertLessThanOrEqual(allowed, 30 * 20 + 10)
        if let counted, let after {
            XCTAssertEqual(after - counted, 0, "allocations building packet-too-big errors")
            print("packet too big: \(after - counted) allocations for 27 000 errors")
        } else if ProcessInfo.processInfo.environment["WS_REQUIRE_MALLOC_COUNT"] == "1" {
            XCTFail("WS_REQUIRE_MALLOC_COUNT=1 but the malloc counter is not preloaded: allocations not counted")
        }
    }

    // MARK: Rate limit

    func testRateLimit() {
        var l = PacketTooBigLimiter(perSecond: 20, burst: 10)
        let t0 = Instant(ns: 1_000_000_000)
        XCTAssertEqual((0..<15).filter { _ in l.allow(now: t0) }.count, 10, "the burst")
        XCTAssertFalse(l.allow(now: t0 + .milliseconds(10)))
        XCTAssertTrue(l.allow(now: t0 + .milliseconds(50)), "one token per 50 ms")
        XCTAssertFalse(l.allow(now: t0 + .milliseconds(60)))
        // Over a second, at most 20 more (plus what was left).
        var n = 0
        for ms in stride(from: 100, to: 1100, by: 1) where l.allow(now: t0 + .milliseconds(UInt64(ms))) { n += 1 }
        XCTAssertLessThanOrEqual(n, 21)
        XCTAssertGreaterThanOrEqual(n, 19)
        // After a long pause, the burst again (no overflow).
        XCTAssertEqual((0..<15).filter { _ in l.allow(now: Instant(ns: UInt64.max / 2)) }.count, 10)
    }
}
