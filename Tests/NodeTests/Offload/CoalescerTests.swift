import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// TCP coalescing for the TUN write side: what merges, what must not, and that
/// a super-packet, once the kernel completes its checksum (NEEDS_CSUM), is a
/// valid TCP segment carrying exactly the merged payloads in order.
final class CoalescerTests: XCTestCase {
    struct Out: Equatable {
        var header: VirtioNetHeader
        var bytes: [UInt8]
        var pieces: Int
    }

    /// Feeds `packets` (copied into one stable buffer) through a coalescer; returns what it writes.
    func coalesce(_ packets: [[UInt8]], coalescer: GSOCoalescer = GSOCoalescer()) -> [Out] {
        let total = packets.reduce(0) { $0 + $1.count }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max(total, 1), alignment: 16)
        defer { buf.deallocate() }
        var outs: [Out] = []
        func drain() {
            coalescer.flush { o in
                var b = Array(UnsafeRawBufferPointer(start: o.head, count: o.headLength))
                for p in o.pieces { b += UnsafeRawBufferPointer(start: p.base, count: p.length) }
                outs.append(Out(header: o.header, bytes: b, pieces: o.pieces.count))
            }
        }
        var off = 0
        for p in packets {
            p.withUnsafeBytes { (buf + off).copyMemory(from: $0.baseAddress!, byteCount: p.count) }
            if !coalescer.add(buf + off, length: p.count) {
                drain()
                XCTAssertTrue(coalescer.add(buf + off, length: p.count))
            }
            off += p.count
        }
        drain()
        XCTAssertTrue(coalescer.isEmpty)
        return outs
    }

    /// Segments of one flow: `sizes` payload bytes each, in sequence from `seq`.
    func segments(_ base: PacketSpec, sizes: [Int], pshLast: Bool = false) -> [[UInt8]] {
        var spec = base
        var out: [[UInt8]] = []
        for (i, n) in sizes.enumerated() {
            spec.payload = pattern(n, seed: Int(spec.seq))
            spec.flags = 0x10 | (pshLast && i == sizes.count - 1 ? 0x08 : 0)
            spec.id = base.id &+ UInt16(i)
            out.append(spec.build())
            spec.seq &+= UInt32(n)
        }
        return out
    }

    /// What the kernel does with a NEEDS_CSUM super-packet before TCP sees it; then verifies it.
    func checkSuperPacket(_ o: Out, spec: PacketSpec, payload: [UInt8], gso: Int, psh: Bool,
                          file: StaticString = #filePath, line: UInt = #line) {
        let ihl = spec.ipHeaderLength
        let hl = spec.headerLength
        XCTAssertEqual(o.header.flags, VirtioNetHeader.needsChecksum, file: file, line: line)
        XCTAssertEqual(o.header.gsoType, spec.isV6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4, file: file, line: line)
        XCTAssertEqual(Int(o.header.headerLength), hl, file: file, line: line)
        XCTAssertEqual(Int(o.header.gsoSize), gso, file: file, line: line)
        XCTAssertEqual(Int(o.header.checksumStart), ihl, file: file, line: line)
        XCTAssertEqual(o.header.checksumOffset, 16, file: file, line: line)
        var b = o.bytes
        if spec.isV6 {
            XCTAssertEqual(be16(b, 4), b.count - 40, "IPv6 payload length", file: file, line: line)
        } else {
            XCTAssertEqual(be16(b, 2), b.count, "IPv4 total length", file: file, line: line)
            XCTAssertTrue(Naive.ipv4HeaderValid(b), "IPv4 header checksum", file: file, line: line)
        }
        XCTAssertEqual(b[ihl + 13] & 0x08 != 0, psh, "PSH", file: file, line: line)
        XCTAssertEqual(be32(b, ihl + 4), spec.seq, "first sequence number", file: file, line: line)
        // The field holds the pseudo-header sum (not complemented): check, then complete as the kernel would.
        let pseudo = Naive.sum([], initial: Naive.pseudo(b, isV6: spec.isV6, proto: 6, l4Length: b.count - ihl))
        XCTAssertEqual(be16(b, ihl + 16), Int(pseudo), "pseudo-header checksum", file: file, line: line)
        let c = ~Naive.sum(b[ihl...])
        put16(&b, ihl + 16, Int(c))
        XCTAssertTrue(Naive.transportValid(b, l4: ihl, isV6: spec.isV6, proto: 6), "completed checksum", file: file, line: line)
        XCTAssertEqual(Array(b[hl...]), payload, "payloads in order", file: file, line: line)
    }

    func testInOrderSegmentsMergeIntoOneSuperPacketV4() {
        var spec = PacketSpec()
        spec.tcpOptions = timestampOption(5, 6)
        let segs = segments(spec, sizes: [1352, 1352, 1352, 700], pshLast: true)
        let outs = coalesce(segs)
        XCTAssertEqual(outs.count, 1)
        XCTAssertEqual(outs.first?.pieces, 3)
        if let o = outs.first {
            checkSuperPacket(o, spec: spec, payload: segs.flatMap { $0[spec.headerLength...] }, gso: 1352, psh: true)
        }
    }

    func testInOrderSegmentsMergeV6() {
        var spec = PacketSpec()
        spec.isV6 = true
        let segs = segments(spec, sizes: [1000, 1000, 1000])
        let outs = coalesce(segs)
        XCTAssertEqual(outs.count, 1)
        if let o = outs.first {
            checkSuperPacket(o, spec: spec, payload: segs.flatMap { $0[spec.headerLength...] }, gso: 1000, psh: false)
        }
    }

    func testSplitThenCoalesceGivesTheSameStream() {
        var spec = PacketSpec()
        spec.tcpOptions = timestampOption(1, 2)
        spec.payload = pattern(1352 * 10 + 11, seed: 40)
        spec.flags = 0x18
        let (pkt, h) = superPacket(spec, gsoSize: 1352)
        guard let segs = splitAll(pkt, h).success else { return XCTFail("split refused") }
        let outs = coalesce(segs)
        XCTAssertEqual(outs.count, 1)
        if let o = outs.first { checkSuperPacket(o, spec: spec, payload: spec.payload, gso: 1352, psh: true) }
    }

    func testSingleSegmentPassesThroughUntouched() {
        let p = PacketSpec().build()
        let outs = coalesce([p])
        XCTAssertEqual(outs, [Out(header: .none, bytes: p, pieces: 0)])
    }

    func testWhatMustNotMerge() {
        let spec = PacketSpec()
        let two = segments(spec, sizes: [1000, 1000])

        // A different ACK number.
        var b = two[1]
        put32(&b, 28, 999)
        Naive.fixChecksums(&b, l4: 20, isV6: false, proto: 6)
        XCTAssertEqual(coalesce([two[0], b]).count, 2, "ack differs")

        // A window change.
        b = two[1]
        put16(&b, 34, 1)
        Naive.fixChecksums(&b, l4: 20, isV6: false, proto: 6)
        XCTAssertEqual(coalesce([two[0], b]).count, 2, "window differs")

        // Different options (timestamps moved on).
        var o1 = spec, o2 = spec
        o1.tcpOptions = timestampOption(1, 1)
        o2.tcpOptions = timestampOption(2, 1)
        o2.seq = spec.seq + 1000
        o1.payload = pattern(1000); o2.payload = pattern(1000)
        XCTAssertEqual(coalesce([o1.build(), o2.build()]).count, 2, "options differ")

        // A gap in sequence, and a reordering.
        let three = segments(spec, sizes: [1000, 1000, 1000])
        XCTAssertEqual(coalesce([three[0], three[2]]).count, 2, "gap")
        XCTAssertEqual(coalesce([three[1], three[0]]).count, 2, "reordered")

        // A larger segment after a smaller one; anything after a short one; anything after PSH.
        let grow = segments(spec, sizes: [500, 1000])
        XCTAssertEqual(coalesce(grow).count, 2, "larger after smaller")
        let short = segments(spec, sizes: [1000, 500, 500])
        XCTAssertEqual(coalesce(short).map(\.pieces), [1, 0], "a short segment ends the super-packet")
        let psh = segments(spec, sizes: [1000, 1000], pshLast: true) + [segments({ var s = spec; s.seq += 2000; return s }(), sizes: [1000])[0]]
        XCTAssertEqual(coalesce(psh).map(\.pieces), [1, 0], "PSH ends the super-packet")

        // TTL, TOS, DF.
        let mutations: [(inout PacketSpec) -> Void] = [{ $0.ttl = 1 }, { $0.tos = 4 }, { $0.df = false }]
        for mutate in mutations {
            var s2 = spec
            s2.seq += 1000
            mutate(&s2)
            s2.payload = pattern(1000, seed: 3)
            XCTAssertEqual(coalesce([two[0], s2.build()]).count, 2, "IP header field differs")
        }

        // Flags other than ACK/PSH: SYN, FIN, RST, URG, ECE, CWR; and pure ACKs.
        for f: UInt8 in [0x02, 0x11, 0x14, 0x30, 0x50, 0x90] {
            var s2 = spec
            s2.seq += 1000
            s2.flags = f
            s2.payload = pattern(1000, seed: 3)
            XCTAssertEqual(coalesce([two[0], s2.build()]).count, 2, "flags \(f)")
        }
        var ackOnly = spec
        ackOnly.seq += 1000
        XCTAssertEqual(coalesce([two[0], ackOnly.build(), two[1]]).count, 3, "a pure ACK is written alone and closes the flow")

        // IPv4 options are never coalesced.
        var opt = spec
        opt.ipv4Options = [1, 1, 1, 1]
        let optSegs = segments(opt, sizes: [1000, 1000])
        XCTAssertEqual(coalesce(optSegs).count, 2, "IPv4 options")

        // UDP where the TUN has no USO: written alone.
        var udp = spec
        udp.proto = 17
        udp.payload = pattern(100)
        let u = udp.build()
        XCTAssertEqual(coalesce([u, u], coalescer: GSOCoalescer(udp: false)).map(\.header), [.none, .none])
    }

    // MARK: UDP

    /// Datagrams of one flow, `sizes` payload bytes each, IPv4 IDs counting up from `base.id`.
    func datagrams(_ base: PacketSpec, sizes: [Int]) -> [[UInt8]] {
        var spec = base
        spec.proto = 17
        return sizes.enumerated().map { i, n in
            spec.payload = pattern(n, seed: 7 + i)
            spec.id = base.id &+ UInt16(i)
            return spec.build()
        }
    }

    /// Equal datagrams of one flow become one UDP_L4 super-packet, and cutting
    /// it as the kernel does (Offload.split, the read side's model of it) gives
    /// back exactly the datagrams that went in, v4 and v6, DF or not.
    func testUDPDatagramsOfOneFlowBecomeOneSuperPacketTheKernelCutsBackExactly() throws {
        for (isV6, df) in [(false, true), (false, false), (true, true)] {
            var spec = PacketSpec()
            spec.isV6 = isV6
            spec.df = df
            let sizes = [1200, 1200, 1200, 1200, 700]
            let ins = datagrams(spec, sizes: sizes)
            let outs = coalesce(ins)
            XCTAssertEqual(outs.count, 1, "v6 \(isV6) df \(df)")
            let o = try XCTUnwrap(outs.first)
            let ihl = isV6 ? 40 : 20
            XCTAssertEqual(o.header, VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoUDPL4,
                                                     headerLength: UInt16(ihl + 8), gsoSize: 1200,
                                                     checksumStart: UInt16(ihl), checksumOffset: 6))
            XCTAssertEqual(o.pieces, 4)
            XCTAssertEqual(be16(o.bytes, ihl + 4), o.bytes.count - ihl, "UDP length: the whole run")
            let parts = try XCTUnwrap(splitAll(o.bytes, o.header).success)
            XCTAssertEqual(parts, ins, "v6 \(isV6) df \(df)")
        }
    }

    func testWhatUDPMustNotMerge() {
        let spec = PacketSpec()
        let two = datagrams(spec, sizes: [1000, 1000])
        XCTAssertEqual(coalesce(two).map(\.pieces), [1])
        XCTAssertEqual(coalesce(datagrams(spec, sizes: [500, 1000])).count, 2, "larger after smaller")
        XCTAssertEqual(coalesce(datagrams(spec, sizes: [1000, 500, 500])).map(\.pieces), [1, 0], "a short datagram ends the run")
        var other = spec
        other.proto = 17
        other.dstPort = 5202
        other.payload = pattern(1000, seed: 8)
        other.id = spec.id &+ 1
        XCTAssertEqual(coalesce([two[0], other.build()]).count, 2, "another flow")
        // A TCP segment with the same addresses and ports is another flow.
        let tcp = segments(spec, sizes: [1000])[0]
        XCTAssertEqual(coalesce([two[0], tcp]).count, 2, "TCP between the same ports")
        // TTL, TOS, DF differ.
        for mutate: (inout PacketSpec) -> Void in [{ $0.ttl = 1 }, { $0.tos = 4 }, { $0.df = false }] {
            var s2 = spec
            mutate(&s2)
            s2.id = spec.id &+ 1
            XCTAssertEqual(coalesce([two[0], datagrams(s2, sizes: [1000])[0]]).count, 2, "IP header field differs")
        }
        // Without DF, the IDs must count up (the kernel renumbers the parts from the head's).
        var noDF = spec
        noDF.df = false
        let a = datagrams(noDF, sizes: [1000])[0]
        var b = noDF
        b.id = noDF.id &+ 5
        XCTAssertEqual(coalesce([a, datagrams(b, sizes: [1000])[0]]).count, 2, "IDs not consecutive")
        // With DF they may be anything (Linux sends 0 on unconnected sockets).
        var zero = spec
        zero.id = 0
        XCTAssertEqual(coalesce([datagrams(zero, sizes: [1000])[0], datagrams(zero, sizes: [1000])[0]]).count, 1, "DF, IDs 0")
        // An IPv4 datagram without a checksum is never merged; a bad checksum neither.
        var noSum = two
        noSum[1][26] = 0; noSum[1][27] = 0
        XCTAssertEqual(coalesce(noSum).count, 2, "no checksum")
        var bad = two
        bad[1][40] ^= 1
        XCTAssertEqual(coalesce(bad).count, 2, "bad checksum")
        // Fragments and IPv4 options.
        var frag = two
        frag[1][6] |= 0x20  // more fragments
        Naive.fixChecksums(&frag[1], l4: 20, isV6: false, proto: 17)
        frag[1][10] = 0; frag[1][11] = 0
        let ipsum = Naive.sum(frag[1][0..<20])
        put16(&frag[1], 10, Int(~ipsum & 0xffff))
        XCTAssertEqual(coalesce(frag).count, 2, "a fragment")
    }

    func testBadChecksumNeverHidesInASuperPacket() {
        let spec = PacketSpec()
        var segs = segments(spec, sizes: [1000, 1000, 1000])
        segs[1][100] ^= 0xff  // corrupt the payload of the second segment
        let c = GSOCoalescer()
        let outs = coalesce(segs, coalescer: c)
        XCTAssertEqual(c.badChecksums, 1)
        XCTAssertEqual(outs.map(\.pieces), [0, 0, 0], "nothing merged across the bad one")
        // The corrupted one is written alone, byte for byte as it came.
        XCTAssertTrue(outs.contains(Out(header: .none, bytes: segs[1], pieces: 0)))
        // A corrupted head: nothing merges into it.
        var bad = segments(spec, sizes: [1000, 1000])
        bad[0][200] ^= 1
        let outs2 = coalesce(bad)
        XCTAssertEqual(outs2.map(\.pieces), [0, 0])
    }

    func testInterleavedFlowsMergeSeparatelyAndKeepOrder() {
        let a = PacketSpec()
        var b = PacketSpec()
        b.srcPort = 40001
        b.seq = 5_000_000
        let sa = segments(a, sizes: [1000, 1000, 1000])
        let sb = segments(b, sizes: [800, 800])
        let outs = coalesce([sa[0], sb[0], sa[1], sb[1], sa[2]])
        XCTAssertEqual(outs.count, 2)
        XCTAssertEqual(outs.map(\.pieces), [2, 1], "flow A first (its first segment came first)")
        checkSuperPacket(outs[0], spec: a, payload: sa.flatMap { $0[40...] }, gso: 1000, psh: false)
        checkSuperPacket(outs[1], spec: b, payload: sb.flatMap { $0[40...] }, gso: 800, psh: false)
    }

    func testLimitsAndCapacity() {
        // 65535 bytes at most: 70 segments of 1000 make two super-packets.
        let spec = PacketSpec()
        let many = segments(spec, sizes: Array(repeating: 1000, count: 70))
        let outs = coalesce(many)
        XCTAssertEqual(outs.count, 2)
        XCTAssertTrue(outs.allSatisfy { $0.bytes.count <= 65535 })
        XCTAssertEqual(outs.reduce(0) { $0 + $1.bytes.count - 40 }, 70_000)

        // Small segments: at most maxSegmentsPerPacket per super-packet.
        let tiny = segments(spec, sizes: Array(repeating: 10, count: 600))
        let outs2 = coalesce(tiny)
        XCTAssertTrue(outs2.allSatisfy { $0.pieces + 1 <= GSOCoalescer.maxSegmentsPerPacket })
        XCTAssertEqual(outs2.reduce(0) { $0 + $1.pieces + 1 }, 600)

        // A full coalescer says so; after a flush it takes more.
        let small = GSOCoalescer(maxGroups: 2, maxPieces: 2)
        let udp: [UInt8] = { var s = PacketSpec(); s.proto = 17; return s.build() }()
        let outs3 = coalesce([udp, udp, udp, udp, udp], coalescer: small)
        XCTAssertEqual(outs3.count, 5)
    }

    /// A kernel that refuses GSO writes: the head goes back to being the segment
    /// (or datagram) it was, and every other one is still whole in front of its payload.
    func testRestoreHeadGivesBackTheOriginalPackets() {
        for v6 in [false, true] {
            var spec = PacketSpec()
            spec.isV6 = v6
            spec.tcpOptions = timestampOption(3, 4)
            let segs = segments(spec, sizes: [1200, 1200, 1200, 100])
            XCTAssertEqual(writtenAfterARefusedWrite(segs), segs, "TCP v6=\(v6)")
            let dgrams = datagrams(spec, sizes: [800, 800, 800])
            XCTAssertEqual(writtenAfterARefusedWrite(dgrams), dgrams, "UDP v6=\(v6)")
        }
    }

    /// Coalesces `packets` into one super-packet, then writes it as the data path
    /// does after EINVAL: the restored head, then each part with its own headers.
    func writtenAfterARefusedWrite(_ packets: [[UInt8]]) -> [[UInt8]] {
        let total = packets.reduce(0) { $0 + $1.count }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 16)
        defer { buf.deallocate() }
        let c = GSOCoalescer()
        var off = 0
        for p in packets {
            p.withUnsafeBytes { (buf + off).copyMemory(from: $0.baseAddress!, byteCount: p.count) }
            c.add(buf + off, length: p.count)
            off += p.count
        }
        var written: [[UInt8]] = []
        c.flush { o in
            XCTAssertEqual(o.pieces.count, packets.count - 1)
            GSOCoalescer.restoreHead(o)
            written.append(Array(UnsafeRawBufferPointer(start: o.head, count: o.headLength)))
            let hl = Int(o.header.headerLength)
            for piece in o.pieces { written.append(Array(UnsafeRawBufferPointer(start: piece.base - hl, count: piece.length + hl))) }
        }
        return written
    }

    func testGarbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let c = GSOCoalescer(maxGroups: 64, maxPieces: 64)
        let base = segments(PacketSpec(), sizes: [1000, 1000])
        for _ in 0..<500 {
            var packets: [[UInt8]] = []
            for _ in 0..<Int.random(in: 1...10, using: &rng) {
                var p = base[Int.random(in: 0...1, using: &rng)]
                let cut = Int.random(in: 0...p.count, using: &rng)
                p = Array(p[0..<cut])
                for _ in 0..<Int.random(in: 0...3, using: &rng) where !p.isEmpty {
                    p[Int.random(in: 0..<p.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                if !p.isEmpty { packets.append(p) }
            }
            let outs = coalesce(packets, coalescer: c)
            XCTAssertEqual(outs.reduce(0) { $0 + $1.pieces + 1 }, packets.count, "every packet comes out once")
        }
    }
}
