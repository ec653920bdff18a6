// Packet builders and an independent checksum for the offload tests.
//
// The checksum here is RFC 1071 written the plain way (big-endian 16-bit words
// summed in a UInt32, carries folded), sharing nothing with InternetChecksum,
// so the split/coalesce tests verify headers against a second implementation.
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

enum Naive {
    /// The folded ones'-complement sum of `bytes` as big-endian 16-bit words (not complemented).
    static func sum(_ bytes: ArraySlice<UInt8>, initial: UInt32 = 0) -> UInt16 {
        var s = initial
        var i = bytes.startIndex
        while i + 1 < bytes.endIndex {
            s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            s = (s & 0xffff) + (s >> 16)
            i += 2
        }
        if i < bytes.endIndex {
            s += UInt32(bytes[i]) << 8
            s = (s & 0xffff) + (s >> 16)
        }
        while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
        return UInt16(s)
    }

    static func pseudo(_ pkt: [UInt8], isV6: Bool, proto: UInt8, l4Length: Int) -> UInt32 {
        var b: [UInt8] = isV6 ? Array(pkt[8..<40]) : Array(pkt[12..<20])
        b += [0, proto, UInt8(l4Length >> 8), UInt8(l4Length & 0xff)]
        return UInt32(sum(b[...]))
    }

    /// True when the transport checksum of `pkt` (transport header at `l4`) verifies.
    static func transportValid(_ pkt: [UInt8], l4: Int, isV6: Bool, proto: UInt8) -> Bool {
        let p = pseudo(pkt, isV6: isV6, proto: proto, l4Length: pkt.count - l4)
        return sum(pkt[l4...], initial: p) == 0xffff
    }

    static func ipv4HeaderValid(_ pkt: [UInt8]) -> Bool {
        let ihl = Int(pkt[0] & 0x0f) * 4
        return sum(pkt[0..<ihl]) == 0xffff
    }

    /// Fills in a correct transport checksum (and IPv4 header checksum).
    static func fixChecksums(_ pkt: inout [UInt8], l4: Int, isV6: Bool, proto: UInt8) {
        if !isV6 {
            pkt[10] = 0; pkt[11] = 0
            let c = ~sum(pkt[0..<l4])
            pkt[10] = UInt8(c >> 8); pkt[11] = UInt8(c & 0xff)
        }
        let at = l4 + (proto == 6 ? 16 : 6)
        pkt[at] = 0; pkt[at + 1] = 0
        var c = ~sum(pkt[l4...], initial: pseudo(pkt, isV6: isV6, proto: proto, l4Length: pkt.count - l4))
        if c == 0 && proto == 17 { c = 0xffff }
        pkt[at] = UInt8(c >> 8); pkt[at + 1] = UInt8(c & 0xff)
    }
}

func be16(_ p: [UInt8], _ i: Int) -> Int { Int(p[i]) << 8 | Int(p[i + 1]) }
func be32(_ p: [UInt8], _ i: Int) -> UInt32 { UInt32(p[i]) << 24 | UInt32(p[i + 1]) << 16 | UInt32(p[i + 2]) << 8 | UInt32(p[i + 3]) }
func put16(_ p: inout [UInt8], _ i: Int, _ v: Int) { p[i] = UInt8((v >> 8) & 0xff); p[i + 1] = UInt8(v & 0xff) }
func put32(_ p: inout [UInt8], _ i: Int, _ v: UInt32) {
    p[i] = UInt8(v >> 24); p[i + 1] = UInt8((v >> 16) & 0xff); p[i + 2] = UInt8((v >> 8) & 0xff); p[i + 3] = UInt8(v & 0xff)
}

/// A deterministic byte pattern (a different one per seed).
func pattern(_ n: Int, seed: Int = 1) -> [UInt8] {
    var x = UInt32(truncatingIfNeeded: seed &* 2654435761 &+ 12345)
    return (0..<n).map { _ in
        x = x &* 1664525 &+ 1013904223
        return UInt8(truncatingIfNeeded: x >> 24)
    }
}

struct PacketSpec {
    var isV6 = false
    var proto: UInt8 = 6
    var payload: [UInt8] = []
    var tcpOptions: [UInt8] = []
    var ipv4Options: [UInt8] = []
    var flags: UInt8 = 0x10  // ACK
    var seq: UInt32 = 1000
    var ack: UInt32 = 777
    var window: UInt16 = 512
    var id: UInt16 = 0x1234
    var tos: UInt8 = 0
    var ttl: UInt8 = 64
    var df = true
    var srcPort: UInt16 = 40000
    var dstPort: UInt16 = 5201
    var src4: [UInt8] = [10, 77, 0, 1]
    var dst4: [UInt8] = [10, 77, 0, 2]
    var src6: [UInt8] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    var dst6: [UInt8] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    var flowLabel: UInt32 = 0x12345

    var ipHeaderLength: Int { isV6 ? 40 : 20 + ipv4Options.count }
    var l4HeaderLength: Int { proto == 6 ? 20 + tcpOptions.count : 8 }
    var headerLength: Int { ipHeaderLength + l4HeaderLength }

    /// A complete packet with correct lengths and checksums.
    func build() -> [UInt8] {
        var p: [UInt8]
        let total = headerLength + payload.count
        if isV6 {
            p = [UInt8](repeating: 0, count: 40)
            put32(&p, 0, 6 << 28 | UInt32(tos) << 20 | flowLabel)
            put16(&p, 4, total - 40)
            p[6] = proto
            p[7] = ttl
            p.replaceSubrange(8..<24, with: src6)
            p.replaceSubrange(24..<40, with: dst6)
        } else {
            precondition(ipv4Options.count % 4 == 0)
            p = [UInt8](repeating: 0, count: 20)
            p[0] = 0x40 | UInt8(5 + ipv4Options.count / 4)
            p[1] = tos
            put16(&p, 2, total)
            put16(&p, 4, Int(id))
            p[6] = df ? 0x40 : 0
            p[8] = ttl
            p[9] = proto
            p.replaceSubrange(12..<16, with: src4)
            p.replaceSubrange(16..<20, with: dst4)
            p += ipv4Options
        }
        let l4 = p.count
        if proto == 6 {
            precondition(tcpOptions.count % 4 == 0)
            var t = [UInt8](repeating: 0, count: 20)
            put16(&t, 0, Int(srcPort)); put16(&t, 2, Int(dstPort))
            put32(&t, 4, seq); put32(&t, 8, ack)
            t[12] = UInt8((20 + tcpOptions.count) / 4) << 4
            t[13] = flags
            put16(&t, 14, Int(window))
            p += t + tcpOptions
        } else {
            var u = [UInt8](repeating: 0, count: 8)
            put16(&u, 0, Int(srcPort)); put16(&u, 2, Int(dstPort))
            put16(&u, 4, 8 + payload.count)
            p += u
        }
        p += payload
        Naive.fixChecksums(&p, l4: l4, isV6: isV6, proto: proto)
        return p
    }
}

/// TCP timestamps option as Linux sends it (NOP, NOP, TS).
func timestampOption(_ tsval: UInt32, _ tsecr: UInt32) -> [UInt8] {
    var o: [UInt8] = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0]
    put32(&o, 4, tsval); put32(&o, 8, tsecr)
    return o
}

/// A kernel-style TSO/USO super-packet from `spec` (whose payload is all the
/// segments' payloads): lengths for the whole, the transport checksum field
/// holding only the pseudo-header sum (NEEDS_CSUM), and its vnet header.
func superPacket(_ spec: PacketSpec, gsoSize: Int, ecn: Bool = false) -> ([UInt8], VirtioNetHeader) {
    var p = spec.build()
    let l4 = spec.ipHeaderLength
    let at = l4 + (spec.proto == 6 ? 16 : 6)
    let ps = Naive.pseudo(p, isV6: spec.isV6, proto: spec.proto, l4Length: p.count - l4)
    let folded = Naive.sum([], initial: ps)
    put16(&p, at, Int(folded))
    let type: UInt8 = spec.proto == 17 ? VirtioNetHeader.gsoUDPL4 : (spec.isV6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4)
    let h = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: type | (ecn ? VirtioNetHeader.gsoECN : 0),
                            headerLength: UInt16(spec.headerLength), gsoSize: UInt16(gsoSize),
                            checksumStart: UInt16(l4), checksumOffset: spec.proto == 6 ? 16 : 6)
    return (p, h)
}

/// Runs `Offload.plan` + `split` on a copy of `packet`; the segments as arrays.
func splitAll(_ packet: [UInt8], _ h: VirtioNetHeader) -> Result<[[UInt8]], OffloadDrop> {
    packet.withUnsafeBytes { src -> Result<[[UInt8]], OffloadDrop> in
        switch Offload.plan(src.baseAddress!, length: packet.count, header: h) {
        case .drop(let d): return .failure(d)
        case .split(let plan):
            let stride = plan.segmentLength + 7  // any stride at least the segment length
            let out = UnsafeMutableRawPointer.allocate(byteCount: stride * plan.count, alignment: 16)
            defer { out.deallocate() }
            out.initializeMemory(as: UInt8.self, repeating: 0xee, count: stride * plan.count)
            // In two calls, to exercise ranges that do not start at 0.
            let mid = plan.count / 2
            Offload.split(src.baseAddress!, plan: plan, segments: 0..<mid, into: out, stride: stride)
            Offload.split(src.baseAddress!, plan: plan, segments: mid..<plan.count, into: out + mid * stride, stride: stride)
            return .success((0..<plan.count).map { i in
                Array(UnsafeRawBufferPointer(start: out + i * stride, count: plan.length(ofSegment: i)))
            })
        }
    }
}

extension Result {
    var success: Success? { if case .success(let s) = self { s } else { nil } }
    var failure: Failure? { if case .failure(let f) = self { f } else { nil } }
}
