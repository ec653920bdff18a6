import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// Splitting TSO/USO super-packets: every segment checked field by field and
/// its checksums verified by the independent RFC 1071 in OffloadTestSupport.
final class OffloadSplitTests: XCTestCase {
    // MARK: virtio_net_hdr

    func testVnetHeaderLayoutIsLittleEndian() {
        let h = VirtioNetHeader(flags: 1, gsoType: 4, headerLength: 0x0102, gsoSize: 0x0304, checksumStart: 0x0506, checksumOffset: 0x0708)
        var b = [UInt8](repeating: 0xaa, count: 12)
        b.withUnsafeMutableBytes { h.write(to: $0.baseAddress!) }
        XCTAssertEqual(b, [1, 4, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07, 0xaa, 0xaa])
        XCTAssertEqual(b.withUnsafeBytes { VirtioNetHeader($0) }, h)
        XCTAssertNil([UInt8](repeating: 0, count: 9).withUnsafeBytes { VirtioNetHeader($0) })
        XCTAssertFalse(VirtioNetHeader.none.isGSO)
        XCTAssertTrue(VirtioNetHeader(gsoType: VirtioNetHeader.gsoTCPv4 | VirtioNetHeader.gsoECN).isGSO)
        XCTAssertFalse(VirtioNetHeader(gsoType: VirtioNetHeader.gsoECN).isGSO)
    }

    // MARK: Checksum

    func testChecksumMatchesNaiveForEveryLength() {
        let data = pattern(2100, seed: 7)
        for n in Array(0..<80) + [1399, 1400, 1401, 1460, 2047, 2100] {
            for start in [0, 2, 6] where start + n <= data.count {
                let mine = data.withUnsafeBytes { InternetChecksum.fold(InternetChecksum.partial($0.baseAddress! + start, count: n)) }
                let theirs = Naive.sum(data[start..<(start + n)])
                // Native order on this host: compare as the bytes a store would write.
                XCTAssertEqual(UInt16(bigEndian: mine), theirs, "length \(n) at \(start)")
            }
        }
    }

    func testChecksumOfAllOnesAndZeros() {
        let ones = [UInt8](repeating: 0xff, count: 64)
        XCTAssertEqual(ones.withUnsafeBytes { InternetChecksum.fold(InternetChecksum.partial($0.baseAddress!, count: 64)) }, 0xffff)
        let zeros = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(zeros.withUnsafeBytes { InternetChecksum.fold(InternetChecksum.partial($0.baseAddress!, count: 64)) }, 0)
        // Large sums fold with every carry.
        XCTAssertEqual(InternetChecksum.fold(0xffff_ffff_ffff_ffff), 0xffff)
        XCTAssertEqual(InternetChecksum.fold(0x1_0000), 1)
    }

    // MARK: TCP over IPv4

    /// Checks the segments of a split against the original super-packet.
    private func checkTCP(_ segs: [[UInt8]], spec: PacketSpec, gso: Int, file: StaticString = #filePath, line: UInt = #line) {
        let l4 = spec.ipHeaderLength
        let hl = spec.headerLength
        let total = spec.payload.count
        XCTAssertEqual(segs.count, (total + gso - 1) / gso, file: file, line: line)
        var reassembled: [UInt8] = []
        for (i, s) in segs.enumerated() {
            let last = i == segs.count - 1
            let pl = last ? total - gso * (segs.count - 1) : gso
            XCTAssertEqual(s.count, hl + pl, "segment \(i) length", file: file, line: line)
            if spec.isV6 {
                XCTAssertEqual(be16(s, 4), s.count - 40, "IPv6 payload length", file: file, line: line)
                XCTAssertEqual(be32(s, 0) & 0x000f_ffff, spec.flowLabel, "flow label kept", file: file, line: line)
            } else {
                XCTAssertEqual(be16(s, 2), s.count, "IPv4 total length", file: file, line: line)
                XCTAssertEqual(be16(s, 4), (Int(spec.id) + i) & 0xffff, "IPv4 ID increments", file: file, line: line)
                XCTAssertTrue(Naive.ipv4HeaderValid(s), "IPv4 header checksum of segment \(i)", file: file, line: line)
                XCTAssertEqual(Array(s[20..<l4]), spec.ipv4Options, "IPv4 options kept", file: file, line: line)
            }
            XCTAssertEqual(be32(s, l4 + 4), spec.seq &+ UInt32(i * gso), "sequence", file: file, line: line)
            XCTAssertEqual(be32(s, l4 + 8), spec.ack, file: file, line: line)
            let flags = s[l4 + 13]
            XCTAssertEqual(flags & 0x01 != 0, last && spec.flags & 0x01 != 0, "FIN only on the last", file: file, line: line)
            XCTAssertEqual(flags & 0x08 != 0, last && spec.flags & 0x08 != 0, "PSH only on the last", file: file, line: line)
            XCTAssertEqual(flags & 0x80 != 0, i == 0 && spec.flags & 0x80 != 0, "CWR only on the first", file: file, line: line)
            XCTAssertEqual(flags & 0x10, spec.flags & 0x10, "ACK on every segment", file: file, line: line)
            XCTAssertEqual(Array(s[(l4 + 20)..<hl]), spec.tcpOptions, "TCP options kept", file: file, line: line)
            XCTAssertTrue(Naive.transportValid(s, l4: l4, isV6: spec.isV6, proto: 6), "TCP checksum of segment \(i)", file: file, line: line)
            reassembled += s[hl...]
        }
        XCTAssertEqual(reassembled, spec.payload, "payload bytes in order", file: file, line: line)
    }

    func testTCPv4SplitWithOptionsShortLastPSHandFIN() {
        var spec = PacketSpec()
        spec.tcpOptions = timestampOption(0x01020304, 0x0a0b0c0d)
        spec.payload = pattern(1352 * 3 + 500, seed: 1)
        spec.flags = 0x10 | 0x08 | 0x01  // ACK PSH FIN
        spec.id = 0xfffe                 // the ID wraps
        let (pkt, h) = superPacket(spec, gsoSize: 1352)
        guard let segs = splitAll(pkt, h).success else { return XCTFail("refused") }
        checkTCP(segs, spec: spec, gso: 1352)
    }

    func testTCPv4CWROnlyOnFirstWithECN() {
        var spec = PacketSpec()
        spec.payload = pattern(4000, seed: 2)
        spec.flags = 0x10 | 0x80  // ACK CWR
        let (pkt, h) = superPacket(spec, gsoSize: 1000, ecn: true)
        guard let segs = splitAll(pkt, h).success else { return XCTFail("refused") }
        XCTAssertEqual(segs.count, 4)
        checkTCP(segs, spec: spec, gso: 1000)
    }

    func testTCPv4ExactMultipleAndSingleSegment() {
        var spec = PacketSpec()
        spec.payload = pattern(1000 * 5, seed: 3)
        var (pkt, h) = superPacket(spec, gsoSize: 1000)
        guard let segs = splitAll(pkt, h).success else { return XCTFail("refused") }
        checkTCP(segs, spec: spec, gso: 1000)
        XCTAssertEqual(segs.map { $0.count }, Array(repeating: 1040, count: 5))

        spec.payload = pattern(300, seed: 4)
        (pkt, h) = superPacket(spec, gsoSize: 1000)
        guard let one = splitAll(pkt, h).success else { return XCTFail("refused") }
        checkTCP(one, spec: spec, gso: 1000)
    }

    func testTCPv4WithIPOptions() {
        var spec = PacketSpec()
        spec.ipv4Options = [0x94, 0x04, 0x00, 0x00]  // router alert
        spec.payload = pattern(2500, seed: 5)
        let (pkt, h) = superPacket(spec, gsoSize: 1200)
        guard let segs = splitAll(pkt, h).success else { return XCTFail("refused") }
        checkTCP(segs, spec: spec, gso: 1200)
    }

    func testOddSegmentSizeKeepsChecksumsRight() {
        var spec = PacketSpec()
        spec.payload = pattern(1001 * 3 + 7, seed: 6)
        let (pkt, h) = superPacket(spec, gsoSize: 1001)
        guard let segs = splitAll(pkt, h).success else { return XCTFail("refused") }
        checkTCP(segs, spec: spec, gso: 1001)
    }

    // MARK: TCP over IPv6

    func testTCPv6Split() {
        var spec = PacketSpec()
        spec.isV6 = true
        spec.tcpOptions = timestampOption(9, 10)
        spec.payload = pattern(1328 * 4 + 1, seed: 8)
        spec.flags = 0x18
        let (pkt, h) = superPacket(spec, gsoSize: 1328)
        guard let segs = splitAll(pkt, h).success else { return XCTFail("refused") }
        checkTCP(segs, spec: spec, gso: 1328)
    }

    // MARK: UDP (USO)

    func testUDPv4andV6Split() {
        for v6 in [false, true] {
            var spec = PacketSpec()
            spec.isV6 = v6
            spec.proto = 17
            spec.payload = pattern(1200 * 3 + 17, seed: v6 ? 10 : 9)
            let (pkt, h) = superPacket(spec, gsoSize: 1200)
            guard let segs = splitAll(pkt, h).success else { return XCTFail("refused v6=\(v6)") }
            XCTAssertEqual(segs.count, 4)
            var reassembled: [UInt8] = []
            for (i, s) in segs.enumerated() {
                let l4 = spec.ipHeaderLength
                XCTAssertEqual(be16(s, l4 + 4), s.count - l4, "UDP length")
                XCTAssertTrue(Naive.transportValid(s, l4: l4, isV6: v6, proto: 17), "UDP checksum \(i) v6=\(v6)")
                XCTAssertNotEqual(be16(s, l4 + 6), 0, "a computed UDP checksum is never 0")
                if !v6 {
                    XCTAssertTrue(Naive.ipv4HeaderValid(s))
                    XCTAssertEqual(be16(s, 4), (Int(spec.id) + i) & 0xffff)
                }
                reassembled += s[(l4 + 8)...]
            }
            XCTAssertEqual(reassembled, spec.payload)
        }
    }

    // MARK: Bad vnet headers: dropped with a reason, never a crash

    func testBadHeadersAreDropped() {
        var spec = PacketSpec()
        spec.payload = pattern(3000, seed: 11)
        let (pkt, good) = superPacket(spec, gsoSize: 1000)
        XCTAssertNotNil(splitAll(pkt, good).success)

        func expect(_ h: VirtioNetHeader, _ why: OffloadDrop, _ what: String, _ p: [UInt8]? = nil, line: UInt = #line) {
            XCTAssertEqual(splitAll(p ?? pkt, h).failure, why, what, line: line)
        }
        var h = good
        h.gsoSize = 0
        expect(h, .badVnetHeader, "gso_size 0")
        h = good; h.flags = 0
        expect(h, .badVnetHeader, "GSO without NEEDS_CSUM")
        h = good; h.gsoType = VirtioNetHeader.gsoTCPv6
        expect(h, .badVnetHeader, "TCPV6 on an IPv4 packet")
        h = good; h.gsoType = VirtioNetHeader.gsoUDP
        expect(h, .unsupportedGSO, "UFO is never asked for")
        h = good; h.gsoType = 9
        expect(h, .unsupportedGSO, "unknown GSO type")
        h = good; h.checksumStart = 24
        expect(h, .badVnetHeader, "csum_start is not the IPv4 header length")
        h = good; h.checksumOffset = 6
        expect(h, .badVnetHeader, "csum_offset is UDP's on a TCP packet")
        h = good; h.gsoType = VirtioNetHeader.gsoUDPL4; h.checksumOffset = 6
        expect(h, .badVnetHeader, "UDP GSO on a TCP packet (protocol field)")
        h = good; h.gsoSize = 1
        expect(h, .badVnetHeader, "more segments than anyone sends")

        var p = pkt
        p[40 - 8] = 0x40  // TCP data offset 4 words: shorter than a TCP header
        expect(good, .badVnetHeader, "TCP data offset < 5", p)
        p = pkt
        p[6] = 0x20  // MF: a fragment
        expect(good, .badVnetHeader, "fragment", p)
        expect(good, .badVnetHeader, "headers only, no payload", Array(pkt[0..<40]))
        expect(good, .badVnetHeader, "cut inside the TCP header", Array(pkt[0..<30]))
        expect(good, .badVnetHeader, "shorter than an IP header", Array(pkt[0..<10]))
        p = pkt
        p[0] = 0x65
        expect(good, .badVnetHeader, "IPv6 version on a TCPV4 header", p)

        var v6 = PacketSpec()
        v6.isV6 = true
        v6.payload = pattern(2000, seed: 12)
        let (p6, h6) = superPacket(v6, gsoSize: 1000)
        XCTAssertNotNil(splitAll(p6, h6).success)
        h = h6; h.checksumStart = 20
        expect(h, .badVnetHeader, "csum_start inside the IPv6 header", p6)
        var q6 = p6
        q6[6] = 17
        expect(h6, .badVnetHeader, "IPv6 next header is not TCP", q6)
    }

    /// Random headers over random and real packets: plan either refuses or the
    /// split stays inside the packet and the stride (checked by the plan's own
    /// numbers); nothing traps.
    func testRandomHeadersNeverCrash() {
        var rng = SystemRandomNumberGenerator()
        var spec = PacketSpec()
        spec.payload = pattern(5000, seed: 13)
        let (real, _) = superPacket(spec, gsoSize: 1000)
        for round in 0..<3000 {
            let useReal = round % 2 == 0
            let n = useReal ? Int.random(in: 0...real.count, using: &rng) : Int.random(in: 0...300, using: &rng)
            let bytes = useReal ? Array(real[0..<n]) : (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let h = VirtioNetHeader(flags: UInt8.random(in: 0...3, using: &rng), gsoType: [0, 1, 3, 4, 5, 0x81, 0x84, 7].randomElement(using: &rng)!,
                                    headerLength: UInt16.random(in: 0...200, using: &rng), gsoSize: UInt16.random(in: 0...2000, using: &rng),
                                    checksumStart: [0, 20, 24, 40, 60, UInt16.random(in: 0...400, using: &rng)].randomElement(using: &rng)!,
                                    checksumOffset: [0, 6, 16, UInt16.random(in: 0...400, using: &rng)].randomElement(using: &rng)!)
            bytes.withUnsafeBytes { src in
                let base = src.baseAddress ?? UnsafeRawPointer(bitPattern: 16)!
                if case .split(let plan) = Offload.plan(base, length: n, header: h) {
                    XCTAssertLessThanOrEqual(plan.headerLength + (plan.count - 1) * plan.gsoSize + plan.lastPayload, n)
                    XCTAssertGreaterThan(plan.lastPayload, 0)
                    XCTAssertLessThanOrEqual(plan.lastPayload, plan.gsoSize)
                    _ = splitAll(bytes, h)
                }
                // A non-GSO header may ask to complete a checksum anywhere.
                var copy = bytes
                let ok = copy.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 16)!, length: n, header: h) }
                if !ok { XCTAssertGreaterThan(Int(h.checksumStart) + Int(h.checksumOffset) + 2, n) }
            }
        }
    }

    // MARK: NEEDS_CSUM on a plain packet

    func testCompleteChecksumOfPartialPackets() {
        for (v6, proto) in [(false, UInt8(6)), (true, UInt8(6)), (false, UInt8(17)), (true, UInt8(17))] {
            var spec = PacketSpec()
            spec.isV6 = v6
            spec.proto = proto
            spec.payload = pattern(333, seed: Int(proto) + (v6 ? 1 : 0))
            var (p, h) = superPacket(spec, gsoSize: 1000)  // pseudo-header sum in the field
            h.gsoType = VirtioNetHeader.gsoNone
            h.gsoSize = 0
            XCTAssertFalse(Naive.transportValid(p, l4: spec.ipHeaderLength, isV6: v6, proto: proto))
            let n = p.count
            XCTAssertTrue(p.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress!, length: n, header: h) })
            XCTAssertTrue(Naive.transportValid(p, l4: spec.ipHeaderLength, isV6: v6, proto: proto), "v6=\(v6) proto=\(proto)")
            XCTAssertEqual(p, spec.build(), "the same bytes a full checksum gives")
        }
        // Without NEEDS_CSUM nothing is touched.
        var p = PacketSpec().build()
        let before = p
        let n = p.count
        XCTAssertTrue(p.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress!, length: n, header: .none) })
        XCTAssertEqual(p, before)
        // Offsets past the end: refused.
        let h = VirtioNetHeader(flags: 1, checksumStart: UInt16(p.count - 10), checksumOffset: 9)
        XCTAssertFalse(p.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress!, length: n, header: h) })
    }
}
