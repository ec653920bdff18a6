// ICMP "packet too big" for an inner packet that does not fit the tunnel's
// path (seed 2.10): written back into the TUN, so the sender's stack learns
// the smaller MTU (RFC 1191 path MTU discovery, RFC 8201 for IPv6).
//
// IPv4 (RFC 792, RFC 1191 §4), only for a packet with DF set and fragment offset 0:
//   IPv4 header (20): 0x45, tos 0, total, id 0, no flags, ttl 64, proto 1,
//                     checksum, src = the packet's destination, dst = its source
//   ICMP (8):         type 3, code 4 (fragmentation needed and DF set),
//                     checksum, unused (2), next-hop MTU (2)
//   quote:            the packet's first bytes, the whole error ≤ 576 bytes (RFC 1812 §4.3.2.3)
// IPv6 (RFC 4443 §3.2):
//   IPv6 header (40): version 6, payload length, next header 58, hop limit 64,
//                     src = the packet's destination, dst = its source
//   ICMPv6 (8):       type 2, code 0, checksum (over the pseudo-header too), MTU (4)
//   quote:            the packet's first bytes, the whole error ≤ 1280 bytes
//
// The error's source is the packet's destination: an address the kernel
// routes into the tunnel, so the error arrives as if from the far side (our
// own address as the source would be a martian on the TUN and dropped).
//
// Never an answer to an ICMP error (RFC 1122 §3.2.2, RFC 4443 §2.4(e)), to a
// later IPv4 fragment, to an IPv4 packet without DF (it may be fragmented:
// dropped, not answered), or to a source that is unspecified, loopback,
// multicast or broadcast. No allocation: the caller owns `out`.
import Support

public enum PacketTooBig {
    /// Room `build` needs in `out`: the largest error (IPv6's 1280).
    public static let bufferSize = 1280
    static let v4Limit = 576
    static let v6Limit = 1280

    /// Why no error was built (the packet is still dropped: counted by the caller).
    public enum Skip: String, Sendable, CaseIterable {
        case notIP = "not_ip"
        case icmpError = "icmp_error"
        case fragment
        case noDF = "no_df"
        case badSource = "bad_source"
    }

    public enum Result: Sendable, Equatable {
        /// `length` bytes of IP packet in `out`.
        case built(length: Int)
        case skip(Skip)
    }

    /// The ICMP error telling the sender of `packet` (an IP packet of
    /// `length` bytes as read from the TUN) that `mtu` is the most that fits.
    /// `out` has at least `bufferSize` bytes.
    public static func build(packet p: UnsafeRawPointer, length: Int, mtu: Int, into out: UnsafeMutableRawPointer) -> Result {
        guard length >= 1 else { return .skip(.notIP) }
        switch p.load(as: UInt8.self) >> 4 {
        case 4: return build4(p, length: length, mtu: mtu, out)
        case 6: return build6(p, length: length, mtu: mtu, out)
        default: return .skip(.notIP)
        }
    }

    private static func build4(_ p: UnsafeRawPointer, length: Int, mtu: Int, _ out: UnsafeMutableRawPointer) -> Result {
        let ihl = Int(p.load(as: UInt8.self) & 0x0F) * 4
        guard length >= 20, ihl >= 20, length >= ihl else { return .skip(.notIP) }
        let flagsFrag = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        guard flagsFrag & 0x1FFF == 0 else { return .skip(.fragment) }
        guard flagsFrag & 0x4000 != 0 else { return .skip(.noDF) }
        let src = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        let first = src >> 24
        guard src != 0, first != 127, first < 224 else { return .skip(.badSource) }
        if p.load(fromByteOffset: 9, as: UInt8.self) == 1 {
            // ICMP: only echo request/reply and the other queries may be answered.
            guard length >= ihl + 1 else { return .skip(.icmpError) }
            switch p.load(fromByteOffset: ihl, as: UInt8.self) {
            case 3, 4, 5, 11, 12: return .skip(.icmpError)
            default: break
            }
        }
        let quote = min(length, v4Limit - 28)
        let total = 28 + quote
        (out + 28).copyMemory(from: p, byteCount: quote)
        // IPv4 header.
        out.storeBytes(of: UInt8(0x45), as: UInt8.self)
        out.storeBytes(of: UInt8(0), toByteOffset: 1, as: UInt8.self)
        out.storeBytes(of: UInt16(total).bigEndian, toByteOffset: 2, as: UInt16.self)
        out.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)  // id, flags, offset
        out.storeBytes(of: UInt8(64), toByteOffset: 8, as: UInt8.self)
        out.storeBytes(of: UInt8(1), toByteOffset: 9, as: UInt8.self)
        out.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        (out + 12).copyMemory(from: p + 16, byteCount: 4)
        (out + 16).copyMemory(from: p + 12, byteCount: 4)
        out.storeBytes(of: InternetChecksum.finish(InternetChecksum.add(0, out, 20)).bigEndian, toByteOffset: 10, as: UInt16.self)
        // ICMP.
        let icmp = out + 20
        icmp.storeBytes(of: UInt8(3), as: UInt8.self)
        icmp.storeBytes(of: UInt8(4), toByteOffset: 1, as: UInt8.self)
        icmp.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        icmp.storeBytes(of: UInt16(0), toByteOffset: 4, as: UInt16.self)
        icmp.storeBytes(of: UInt16(clamping: max(mtu, 68)).bigEndian, toByteOffset: 6, as: UInt16.self)
        icmp.storeBytes(of: InternetChecksum.finish(InternetChecksum.add(0, icmp, 8 + quote)).bigEndian, toByteOffset: 2, as: UInt16.self)
        return .built(length: total)
    }

    private static func build6(_ p: UnsafeRawPointer, length: Int, mtu: Int, _ out: UnsafeMutableRawPointer) -> Result {
        guard length >= 40 else { return .skip(.notIP) }
        let srcHi = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let srcLo = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        guard !(srcHi == 0 && (srcLo == 0 || srcLo == 1)), srcHi >> 56 != 0xFF else { return .skip(.badSource) }
        // Walk the extension headers (a few) to find an ICMPv6 error.
        var next = p.load(fromByteOffset: 6, as: UInt8.self)
        var off = 40
        for _ in 0..<8 {
            switch next {
            case 0, 43, 60:  // hop-by-hop, routing, destination options
                guard length >= off + 2 else { break }
                next = p.load(fromByteOffset: off, as: UInt8.self)
                off += (Int(p.load(fromByteOffset: off + 1, as: UInt8.self)) + 1) * 8
                continue
            case 44:  // fragment: a later fragment's upper header is elsewhere
                guard length >= off + 8 else { break }
                if UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off + 2, as: UInt16.self)) & 0xFFF8 != 0 { break }
                next = p.load(fromByteOffset: off, as: UInt8.self)
                off += 8
                continue
            case 58:
                if length >= off + 1, p.load(fromByteOffset: off, as: UInt8.self) < 128 { return .skip(.icmpError) }
            default:
                break
            }
            break
        }
        let quote = min(length, v6Limit - 48)
        let payload = 8 + quote
        (out + 48).copyMemory(from: p, byteCount: quote)
        out.storeBytes(of: UInt32(0x6000_0000).bigEndian, as: UInt32.self)
        out.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: 4, as: UInt16.self)
        out.storeBytes(of: UInt8(58), toByteOffset: 6, as: UInt8.self)
        out.storeBytes(of: UInt8(64), toByteOffset: 7, as: UInt8.self)
        (out + 8).copyMemory(from: p + 24, byteCount: 16)
        (out + 24).copyMemory(from: p + 8, byteCount: 16)
        let icmp = out + 40
        icmp.storeBytes(of: UInt8(2), as: UInt8.self)
        icmp.storeBytes(of: UInt8(0), toByteOffset: 1, as: UInt8.self)
        icmp.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        icmp.storeBytes(of: UInt32(clamping: max(mtu, 1280)).bigEndian, toByteOffset: 4, as: UInt32.self)
        // Pseudo-header: source, destination, upper-layer length, next header.
        var sum = InternetChecksum.add(0, out + 8, 32)
        sum &+= UInt32(payload >> 16) &+ UInt32(payload & 0xFFFF) &+ 58
        sum = InternetChecksum.add(sum, icmp, payload)
        icmp.storeBytes(of: InternetChecksum.finish(sum).bigEndian, toByteOffset: 2, as: UInt16.self)
        return .built(length: 40 + payload)
    }
}

/// RFC 1071's one's-complement sum, 16 bits at a time in network order.
public enum InternetChecksum {
    /// Adds `count` bytes at `p` to `sum` (an odd last byte padded with zero).
    @inline(__always)
    public static func add(_ sum: UInt32, _ p: UnsafeRawPointer, _ count: Int) -> UInt32 {
        var s = UInt64(sum)
        var i = 0
        while i + 1 < count {
            s &+= UInt64(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
            i += 2
        }
        if i < count { s &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8 }
        while s >> 32 != 0 { s = (s & 0xFFFF_FFFF) &+ (s >> 32) }
        return UInt32(s)
    }

    /// The checksum field's value (host order): the folded sum, complemented.
    @inline(__always)
    public static func finish(_ sum: UInt32) -> UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return ~UInt16(s)
    }
}

/// At most `burst` errors at once and `perSecond` on average (a token
/// bucket), so a flood of big packets cannot make us write a flood back.
public struct PacketTooBigLimiter: Sendable {
    public let perSecond: Int
    public let burst: Int
    private var tokens: Int
    private var last: Instant?

    public init(perSecond: Int = 20, burst: Int = 10) {
        self.perSecond = perSecond
        self.burst = burst
        tokens = burst
    }

    public mutating func allow(now: Instant) -> Bool {
        if let l = last {
            let interval = 1_000_000_000 / UInt64(max(perSecond, 1))
            let gained = (now - l).ns / interval
            if gained > 0 {
                tokens = min(burst, tokens + Int(min(gained, UInt64(burst))))
                last = gained >= UInt64(burst) ? now : l + Span(ns: gained * interval)
            }
        } else {
            last = now
        }
        guard tokens > 0 else { return false }
        tokens -= 1
        return true
    }
}
