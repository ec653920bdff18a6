// TUN offloads (review C.2 rows 12, 13): VirtioNetHeader, Offload.plan/split/
// completeChecksum, and GSOCoalescer.add/flush, whose input is any member's
// decrypted inner packets.
//
// Every packet lives in an allocation of exactly its length (ASan sees any
// read or write past it); segments are written at an exact stride.
import Reactor

/// The Internet checksum of `bytes` (a second, naive implementation: RFC 1071).
func naiveSum(_ bytes: some Collection<UInt8>, _ initial: UInt32 = 0) -> UInt16 {
    var s = initial
    var hi = true
    for b in bytes {
        s += hi ? UInt32(b) << 8 : UInt32(b)
        hi.toggle()
    }
    while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
    return UInt16(s)
}

/// Whether the TCP/UDP checksum of an IP packet verifies (naive pseudo-header).
func naiveTransportValid(_ p: [UInt8], transportOffset ts: Int, isV6: Bool, proto: UInt8) -> Bool {
    let l4 = p.count - ts
    var pseudo: UInt32 = UInt32(proto) + UInt32(l4 & 0xffff) + UInt32(l4 >> 16)
    let addrs = isV6 ? p[8..<40] : p[12..<20]
    pseudo += UInt32(naiveSum(addrs))
    return naiveSum(p[ts...], pseudo) == 0xffff
}

/// The packet without the fields a re-segmentation may legitimately rewrite: the
/// IPv4 ID and header checksum (the kernel numbers the parts from the head's ID)
/// and the transport checksum (0 and 0xFFFF both verify).
func masked(_ p: [UInt8], transportOffset ts: Int, isTCP: Bool) -> [UInt8] {
    var q = p
    if q.count >= 20, q[0] >> 4 == 4 { q[4] = 0; q[5] = 0; q[10] = 0; q[11] = 0 }
    let c = ts + (isTCP ? 16 : 6)
    if c + 2 <= q.count { q[c] = 0; q[c + 1] = 0 }
    return q
}

/// Splits a packet list out of a fuzz input: [u16 LE length][bytes] ...
func packets(_ r: inout FuzzReader, max: Int) -> [[UInt8]] {
    var out: [[UInt8]] = []
    while !r.isEmpty, out.count < max { out.append(r.take(Int(r.u16()))) }
    return out
}

let offloadTargets: [FuzzTarget] = [
    FuzzTarget(name: "offload", summary: "VirtioNetHeader, Offload.plan/split/cutInPlace/completeChecksum") { input in
        var r = FuzzReader(input)
        let hbytes = r.take(VirtioNetHeader.size)
        guard let h = withExactBuffer(hbytes, { VirtioNetHeader(UnsafeRawBufferPointer($0)) }) else { return }
        var round = [UInt8](repeating: 0, count: VirtioNetHeader.size)
        round.withUnsafeMutableBytes { h.write(to: $0.baseAddress!) }
        check(round == hbytes, "virtio header round trip")
        let packet = r.rest()
        guard !packet.isEmpty else { return }
        withExactBuffer(packet) { b in
            let p = b.baseAddress!
            if h.isGSO {
                guard case .split(let plan) = Offload.plan(p, length: packet.count, header: h) else { return }
                check(plan.count >= 1 && plan.count <= Offload.maxSegments, "plan count \(plan.count)")
                check(plan.headerLength + (plan.count - 1) * plan.gsoSize + plan.lastPayload == packet.count, "plan does not cover the packet")
                check(plan.lastPayload >= 1 && plan.lastPayload <= plan.gsoSize, "last payload \(plan.lastPayload)")
                let stride = plan.segmentLength
                // Keep the work per input bounded: at most 64 segments are cut.
                let n = min(plan.count, 64)
                let out = UnsafeMutableRawPointer.allocate(byteCount: stride * n, alignment: 1)
                defer { out.deallocate() }
                Offload.split(p, plan: plan, segments: (plan.count - n)..<plan.count, into: out, stride: stride)
                let proto: UInt8 = plan.isTCP ? 6 : 17
                for j in 0..<n {
                    let i = plan.count - n + j
                    let seg = Array(UnsafeRawBufferPointer(start: out + j * stride, count: plan.length(ofSegment: i)))
                    check(naiveTransportValid(seg, transportOffset: plan.transportOffset, isV6: plan.isV6, proto: proto),
                          "segment \(i) transport checksum")
                    check(Offload.transportChecksumValid(seg, length: seg.count, transportOffset: plan.transportOffset,
                                                         isV6: plan.isV6, proto: proto), "segment \(i) checksum (Offload's own)")
                    if !plan.isV6 { check(naiveSum(seg[0..<plan.transportOffset]) == 0xffff, "segment \(i) IPv4 header checksum") }
                }
                // Cut where they lie (the data path's way), on a copy: the same segments.
                var work = packet
                work.withUnsafeMutableBytes { wb in
                    let w = wb.baseAddress!
                    let headers = UnsafeMutableRawPointer.allocate(byteCount: plan.headerLength, alignment: 1)
                    defer { headers.deallocate() }
                    headers.copyMemory(from: w, byteCount: plan.headerLength)
                    let base = Offload.SegmentBase(headers: w, plan: plan)
                    for i in 0..<plan.count {
                        let d = Offload.cutInPlace(w, plan: plan, segment: i, headers: headers, base: base, partialChecksums: false)
                        let j = i - (plan.count - n)
                        guard j >= 0 else { continue }
                        let len = plan.length(ofSegment: i)
                        check(UnsafeRawBufferPointer(start: d, count: len).elementsEqual(UnsafeRawBufferPointer(start: out + j * stride, count: len)),
                              "segment \(i) cut in place is not what split gives")
                    }
                }
            } else {
                _ = Offload.completeChecksum(p, length: packet.count, header: h)
            }
        }
    } seeds: {
        offloadSeeds()
    },

    FuzzTarget(name: "gso-coalescer", summary: "GSOCoalescer.add/flush, re-cut by Offload.plan/split == input") { input in
        var r = FuzzReader(input)
        let udp = r.u8() & 1 == 1
        let ins = packets(&r, max: 64)
        // Each packet in its own exact allocation; the originals kept for the oracle.
        let bufs = ins.map { pkt -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(pkt.count, 1), alignment: 1)
            pkt.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: pkt.count) } }
            return p
        }
        defer { bufs.forEach { $0.deallocate() } }
        let c = GSOCoalescer(maxGroups: 16, maxPieces: 32, udp: udp)
        var seen = [Int](repeating: 0, count: ins.count)
        func owner(of p: UnsafeRawPointer, length: Int) -> (index: Int, offset: Int) {
            for (i, b) in bufs.enumerated() {
                let off = p - UnsafeRawPointer(b)
                if off >= 0, off + length <= ins[i].count { return (i, off) }
            }
            fatalError("oracle: a piece outside every input buffer")
        }
        func flush() {
            c.flush { o in
                let head = owner(of: o.head, length: o.headLength)
                check(head.offset == 0 && o.headLength == ins[head.index].count, "head is not a whole input packet")
                guard o.pieces.count > 0 else {
                    check(o.header == .none, "single packet with a GSO header")
                    check(Array(UnsafeRawBufferPointer(start: o.head, count: o.headLength)) == ins[head.index], "single packet changed")
                    seen[head.index] += 1
                    return
                }
                // Gather the super-packet and cut it as the kernel would.
                var whole = Array(UnsafeRawBufferPointer(start: o.head, count: o.headLength))
                var members = [head.index]
                for piece in o.pieces {
                    let (k, off) = owner(of: piece.base, length: piece.length)
                    check(off + piece.length == ins[k].count, "piece is not the tail of its packet")
                    members.append(k)
                    whole += UnsafeRawBufferPointer(start: piece.base, count: piece.length)
                }
                let parts: [[UInt8]]? = withExactBuffer(whole) { b in
                    guard case .split(let plan) = Offload.plan(b.baseAddress!, length: whole.count, header: o.header) else { return nil }
                    let out = UnsafeMutableRawPointer.allocate(byteCount: plan.segmentLength * plan.count, alignment: 1)
                    defer { out.deallocate() }
                    Offload.split(b.baseAddress!, plan: plan, segments: 0..<plan.count, into: out, stride: plan.segmentLength)
                    return (0..<plan.count).map {
                        Array(UnsafeRawBufferPointer(start: out + $0 * plan.segmentLength, count: plan.length(ofSegment: $0)))
                    }
                }
                guard let parts else { fatalError("oracle: Offload.plan refuses the coalescer's super-packet \(o.header)") }
                check(parts.count == members.count, "re-cut into \(parts.count) segments, merged \(members.count)")
                let isV6 = whole[0] >> 4 == 6
                let ts = isV6 ? 40 : 20
                let isTCP = o.header.gsoType & ~VirtioNetHeader.gsoECN != VirtioNetHeader.gsoUDPL4
                for (part, k) in zip(parts, members) {
                    check(masked(part, transportOffset: ts, isTCP: isTCP) == masked(ins[k], transportOffset: ts, isTCP: isTCP),
                          "re-cut segment differs from input packet \(k)")
                    check(naiveTransportValid(ins[k], transportOffset: ts, isV6: isV6, proto: isTCP ? 6 : 17),
                          "a packet with a bad checksum was merged")
                    seen[k] += 1
                }
            }
        }
        for (i, b) in bufs.enumerated() {
            if !c.add(b, length: ins[i].count) {
                flush()
                check(c.add(b, length: ins[i].count), "add refused after flush")
            }
        }
        flush()
        check(seen.allSatisfy { $0 == 1 }, "packets lost or duplicated: \(seen)")
    } seeds: {
        coalescerSeeds()
    },
]

// MARK: - Seeds

/// An IPv4/IPv6 TCP or UDP packet with valid checksums.
func ipPacket(v6: Bool, tcp: Bool, payload: [UInt8], seq: UInt32 = 1000, id: UInt16 = 1, psh: Bool = false) -> [UInt8] {
    let ihl = v6 ? 40 : 20
    let thl = tcp ? 20 : 8
    var p = [UInt8](repeating: 0, count: ihl + thl) + payload
    let total = p.count
    if v6 {
        p[0] = 0x60
        p[4] = UInt8((total - 40) >> 8); p[5] = UInt8((total - 40) & 0xff)
        p[6] = tcp ? 6 : 17
        p[7] = 64
        p[8] = 0xfd; p[23] = 1
        p[24] = 0xfd; p[39] = 2
    } else {
        p[0] = 0x45
        p[2] = UInt8(total >> 8); p[3] = UInt8(total & 0xff)
        p[4] = UInt8(id >> 8); p[5] = UInt8(id & 0xff)
        p[6] = 0x40  // DF
        p[8] = 64
        p[9] = tcp ? 6 : 17
        p.replaceSubrange(12..<20, with: [10, 0, 0, 1, 10, 0, 0, 2])
        let s = ~naiveSum(p[0..<20])
        p[10] = UInt8(s >> 8); p[11] = UInt8(s & 0xff)
    }
    p[ihl] = 0x9c; p[ihl + 1] = 0x40  // source port 40000
    p[ihl + 2] = 0x14; p[ihl + 3] = 0x51  // 5201
    if tcp {
        p[ihl + 4] = UInt8(seq >> 24); p[ihl + 5] = UInt8((seq >> 16) & 0xff)
        p[ihl + 6] = UInt8((seq >> 8) & 0xff); p[ihl + 7] = UInt8(seq & 0xff)
        p[ihl + 11] = 1  // ack
        p[ihl + 12] = 0x50
        p[ihl + 13] = psh ? 0x18 : 0x10
        p[ihl + 14] = 0xff; p[ihl + 15] = 0xff
    } else {
        let l4 = total - ihl
        p[ihl + 4] = UInt8(l4 >> 8); p[ihl + 5] = UInt8(l4 & 0xff)
    }
    let l4 = total - ihl
    var pseudo = UInt32(tcp ? 6 : 17) + UInt32(l4)
    pseudo += UInt32(naiveSum(v6 ? p[8..<40] : p[12..<20]))
    var c = ~naiveSum(p[ihl...], pseudo)
    if c == 0 { c = 0xffff }
    let co = ihl + (tcp ? 16 : 6)
    p[co] = UInt8(c >> 8); p[co + 1] = UInt8(c & 0xff)
    return p
}

func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }

func offloadSeeds() -> [[UInt8]] {
    var seeds: [[UInt8]] = []
    for (v6, tcp) in [(false, true), (true, true), (false, false), (true, false)] {
        // A super-packet: one header, 3.5 segments of 100 bytes of payload.
        let payload = (0..<350).map { UInt8($0 & 0xff) }
        var p = ipPacket(v6: v6, tcp: tcp, payload: payload)
        let ihl = v6 ? 40 : 20
        let gsoType = tcp ? (v6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4) : VirtioNetHeader.gsoUDPL4
        let h = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: gsoType, headerLength: UInt16(ihl + (tcp ? 20 : 8)),
                                gsoSize: 100, checksumStart: UInt16(ihl), checksumOffset: tcp ? 16 : 6)
        var hb = [UInt8](repeating: 0, count: 10)
        hb.withUnsafeMutableBytes { h.write(to: $0.baseAddress!) }
        seeds.append(hb + p)
        // The same packet, no GSO, checksum to complete.
        p[ihl + (tcp ? 16 : 6)] = 0
        let n = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: UInt16(ihl), checksumOffset: tcp ? 16 : 6)
        n.write(to: &hb)
        seeds.append(hb + p)
    }
    return seeds
}

func coalescerSeeds() -> [[UInt8]] {
    var seeds: [[UInt8]] = []
    for (v6, tcp) in [(false, true), (true, true), (false, false), (true, false)] {
        var s: [UInt8] = [1]
        for i in 0..<4 {
            let size = i == 3 ? 60 : 100
            let p = ipPacket(v6: v6, tcp: tcp, payload: (0..<size).map { UInt8(($0 + i) & 0xff) },
                             seq: 1000 + UInt32(i * 100), id: UInt16(1 + i), psh: i == 3)
            s += le16(p.count) + p
        }
        seeds.append(s)
    }
    return seeds
}
