// TUN offloads, the pure part: the virtio_net_hdr in front of every TUN packet,
// the Internet checksum, splitting a TSO/USO super-packet into wire-size
// segments, and coalescing consecutive segments of one TCP flow (or equal
// datagrams of one UDP flow) back into a super-packet for one TUN write (what
// GRO does in a NIC driver).
//
//   sender                                                     receiver
//   TCP ─▶ TUN read: [vnet hdr][IP|TCP|64 KiB payload]          UDP recv (GRO run)
//            │  plan() checks the header, split() copies          │  open each segment in place
//            ▼  each MSS chunk behind its own headers             ▼
//          [IP|TCP|mss] [IP|TCP|mss] ... [IP|TCP|rest]          GSOCoalescer.add(segment) ...
//            │  seal each in place (DATA header, tag)             │  flush(): head headers fixed,
//            ▼  one UDP GSO sendmsg                               ▼  [vnet hdr][head][payload]... one writev
//
// virtio_net_hdr (linux/virtio_net.h; 10 bytes, little-endian on every host we
// run on: the TUN device's "virtio endianness" is the CPU's unless
// TUNSETVNETBE/LE say otherwise):
//
//   0        1          2                4                6                  8                  10
//  +--------+----------+----------------+----------------+------------------+------------------+
//  | flags  | gso_type | hdr_len (u16)  | gso_size (u16) | csum_start (u16) | csum_offset (u16)|
//  +--------+----------+----------------+----------------+------------------+------------------+
//
//   flags     NEEDS_CSUM (1): the checksum at csum_start+csum_offset holds only the
//             pseudo-header sum; the rest is ours to add (from csum_start to the end).
//   gso_type  NONE 0, TCPV4 1, UDP 3 (UFO, never asked for), TCPV6 4, UDP_L4 5 (USO);
//             ECN 0x80 may be or-ed in (the flow uses ECN: CWR on the first segment only).
//   hdr_len   a hint only (the kernel may put the whole first packet's length
//             there on the forwarding path): the headers' length is re-read from
//             the packet, as wireguard-go does.
//   gso_size  the payload bytes of every segment but the last (the MSS).
//
// Segments are cut as the kernel's tcp_gso_segment/__udp_gso_segment cut them:
// IPv4 total length, ID + i and header checksum; IPv6 payload length; TCP
// sequence + i * gso_size, FIN and PSH only on the last segment, CWR only on the
// first; UDP length; and a full transport checksum per segment (0 becomes
// 0xFFFF, as skb_checksum_help writes it).
//
// Coalescing (the receiver's side of the picture) is GSOCoalescer.swift.
//
// Nothing here allocates after init, reads a clock or touches a descriptor.

/// The virtio_net_hdr of a TUN packet (see the layout above).
public struct VirtioNetHeader: Equatable, Sendable {
    public var flags: UInt8
    public var gsoType: UInt8
    public var headerLength: UInt16
    public var gsoSize: UInt16
    public var checksumStart: UInt16
    public var checksumOffset: UInt16

    public static let size = 10
    public static let needsChecksum: UInt8 = 1
    public static let dataValid: UInt8 = 2
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoUDP: UInt8 = 3
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoUDPL4: UInt8 = 5
    public static let gsoECN: UInt8 = 0x80

    /// A plain packet: no GSO, checksum complete.
    public static let none = VirtioNetHeader()

    public init(flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
                checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    /// Parses the first 10 bytes of `bytes`; nil if there are fewer.
    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.size else { return nil }
        flags = bytes[0]
        gsoType = bytes[1]
        headerLength = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        gsoSize = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        checksumStart = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        checksumOffset = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
    }

    /// Writes the 10 bytes at `p`.
    @inlinable
    public func write(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: flags, as: UInt8.self)
        p.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
    }

    /// One packet whose transport checksum field holds only the pseudo-header sum
    /// (`Offload.checksumPlace` says where): the kernel completes or trusts it.
    public static func partialChecksum(start: Int, offset: Int) -> VirtioNetHeader {
        VirtioNetHeader(flags: needsChecksum, checksumStart: UInt16(truncatingIfNeeded: start),
                        checksumOffset: UInt16(truncatingIfNeeded: offset))
    }

    /// A GSO super-packet to split (ECN bit ignored).
    @inlinable public var isGSO: Bool { gsoType & ~Self.gsoECN != Self.gsoNone }
    @inlinable public var needsChecksumCompletion: Bool { flags & Self.needsChecksum != 0 }
}

/// The Internet checksum (RFC 1071), in the host's byte order: sum native
/// 32-bit words into 64 bits, fold at the end, store the result natively (the
/// ones'-complement sum is byte-order independent, RFC 1071 §2(B)).
public enum InternetChecksum {
    /// Partial sum of `count` bytes at `p`, added to `initial`. Start at an even
    /// offset of the packet; an odd last byte is padded with zero.
    @inlinable
    public static func partial(_ p: UnsafeRawPointer, count: Int, _ initial: UInt64 = 0) -> UInt64 {
        var a0 = initial, a1: UInt64 = 0
        var i = 0
        let n8 = count & ~7
        while i < n8 {
            a0 &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            a1 &+= UInt64(p.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
            i &+= 8
        }
        if count - i >= 4 {
            a0 &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            i &+= 4
        }
        if count - i >= 2 {
            a1 &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i &+= 2
        }
        if i < count {
            a0 &+= UInt64(UInt16(bigEndian: UInt16(p.load(fromByteOffset: i, as: UInt8.self)) << 8))
        }
        // Each accumulator stays below 2^48 for any IP packet: no overflow in the add.
        return a0 &+ a1
    }

    /// Folds a partial sum to 16 bits (not complemented).
    @inlinable
    public static func fold(_ sum: UInt64) -> UInt16 {
        var s = (sum & 0xffff_ffff) &+ (sum >> 32)
        s = (s & 0xffff_ffff) &+ (s >> 32)
        s = (s & 0xffff) &+ (s >> 16)
        s = (s & 0xffff) &+ (s >> 16)
        s = (s & 0xffff) &+ (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }

    /// The pseudo-header's addresses and protocol (RFC 768/793 for IPv4,
    /// RFC 8200 §8.1 for IPv6), without the length: add `lengthWord(l4Length)`.
    @inlinable
    public static func pseudoHeader(_ ip: UnsafeRawPointer, isV6: Bool, proto: UInt8) -> UInt64 {
        let protoWord = UInt64(UInt16(proto).bigEndian)
        return isV6 ? partial(ip + 8, count: 32, protoWord) : partial(ip + 12, count: 8, protoWord)
    }

    /// A 16-bit length as it enters a native-order sum.
    @inlinable
    public static func lengthWord(_ length: Int) -> UInt64 {
        UInt64(UInt16(truncatingIfNeeded: length).bigEndian)
    }
}

/// Why a packet read from the TUN device could not be prepared (counted by the engine).
public enum OffloadDrop: String, Error, Sendable, CaseIterable {
    /// The vnet header contradicts the packet (offsets past its end, wrong
    /// version for the GSO type, gso_size 0, a GSO packet without NEEDS_CSUM, ...).
    case badVnetHeader = "tun_vnet_bad"
    /// A GSO type we never asked for (UFO), or a transport we cannot segment.
    case unsupportedGSO = "tun_vnet_unsupported"
}

public enum Offload {
    /// At most this many segments from one super-packet (64 KiB at an MSS of 64).
    public static let maxSegments = 1024

    static let tcpFIN: UInt8 = 0x01
    static let tcpSYN: UInt8 = 0x02
    static let tcpRST: UInt8 = 0x04
    static let tcpPSH: UInt8 = 0x08
    static let tcpACK: UInt8 = 0x10
    static let tcpCWR: UInt8 = 0x80

    /// How a super-packet is cut: every segment is `headerLength` bytes of
    /// headers (IP, extension headers, TCP or UDP) and `gsoSize` bytes of
    /// payload, the last one `lastPayload`.
    public struct Plan: Equatable, Sendable {
        public let isV6: Bool
        public let isTCP: Bool
        /// Where the transport header starts (csum_start).
        public let transportOffset: Int
        public let headerLength: Int
        public let gsoSize: Int
        public let count: Int
        public let lastPayload: Int
        /// The length of every segment but the last.
        public var segmentLength: Int { headerLength + gsoSize }
        public func length(ofSegment i: Int) -> Int { headerLength + (i == count - 1 ? lastPayload : gsoSize) }
        public var checksumOffset: Int { isTCP ? 16 : 6 }
    }

    public enum Planned: Equatable, Sendable {
        case split(Plan)
        case drop(OffloadDrop)
    }

    /// Checks a GSO super-packet of `length` bytes at `p` against its vnet
    /// header and says how to cut it. Never trusts hdr_len; reads every offset
    /// it uses from the packet, within `length`.
    public static func plan(_ p: UnsafeRawPointer, length: Int, header h: VirtioNetHeader) -> Planned {
        guard length >= 20 else { return .drop(.badVnetHeader) }
        let version = p.load(as: UInt8.self) >> 4
        let isTCP: Bool
        switch h.gsoType & ~VirtioNetHeader.gsoECN {
        case VirtioNetHeader.gsoTCPv4:
            guard version == 4 else { return .drop(.badVnetHeader) }
            isTCP = true
        case VirtioNetHeader.gsoTCPv6:
            guard version == 6 else { return .drop(.badVnetHeader) }
            isTCP = true
        case VirtioNetHeader.gsoUDPL4:
            guard version == 4 || version == 6 else { return .drop(.badVnetHeader) }
            isTCP = false
        default:
            return .drop(.unsupportedGSO)
        }
        let proto: UInt8 = isTCP ? 6 : 17
        guard h.needsChecksumCompletion, h.gsoSize > 0 else { return .drop(.badVnetHeader) }
        let start = Int(h.checksumStart)
        let isV6 = version == 6
        if isV6 {
            guard length >= 40, start >= 40 else { return .drop(.badVnetHeader) }
            // Extension headers may sit between; without them the next header must be ours.
            if start == 40 && p.load(fromByteOffset: 6, as: UInt8.self) != proto { return .drop(.badVnetHeader) }
        } else {
            let ihl = Int(p.load(as: UInt8.self) & 0x0f) * 4
            guard ihl >= 20, start == ihl, p.load(fromByteOffset: 9, as: UInt8.self) == proto else { return .drop(.badVnetHeader) }
            // A fragment (MF or an offset) is never a GSO packet.
            let frag = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            guard frag & 0x3fff == 0 else { return .drop(.badVnetHeader) }
        }
        guard Int(h.checksumOffset) == (isTCP ? 16 : 6) else { return .drop(.badVnetHeader) }
        let headerLength: Int
        if isTCP {
            guard length >= start + 20 else { return .drop(.badVnetHeader) }
            let thl = Int(p.load(fromByteOffset: start + 12, as: UInt8.self) >> 4) * 4
            guard thl >= 20 else { return .drop(.badVnetHeader) }
            headerLength = start + thl
        } else {
            headerLength = start + 8
        }
        guard length > headerLength else { return .drop(.badVnetHeader) }
        let payload = length - headerLength
        let gso = Int(h.gsoSize)
        let count = (payload + gso - 1) / gso
        guard count <= maxSegments else { return .drop(.badVnetHeader) }
        return .split(Plan(isV6: isV6, isTCP: isTCP, transportOffset: start, headerLength: headerLength,
                           gsoSize: gso, count: count, lastPayload: payload - (count - 1) * gso))
    }

    /// Where the TCP or UDP checksum of the IP packet at `p` lies, when the packet
    /// alone says so: IPv4 (options allowed, not a fragment) or IPv6 without extension
    /// headers, carrying a whole TCP or UDP header. `start` is csum_start, `offset`
    /// csum_offset. A peer sends a checksum left partial only in such a packet, and the
    /// receiver finds it here to write the packet with NEEDS_CSUM.
    @inlinable
    public static func checksumPlace(_ p: UnsafeRawPointer, length: Int) -> (start: Int, offset: Int)? {
        guard length >= 20 else { return nil }
        let start: Int, proto: UInt8
        switch p.load(as: UInt8.self) >> 4 {
        case 4:
            start = Int(p.load(as: UInt8.self) & 0x0f) * 4
            guard start >= 20, UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3fff == 0 else { return nil }
            proto = p.load(fromByteOffset: 9, as: UInt8.self)
        case 6:
            guard length >= 40 else { return nil }
            start = 40
            proto = p.load(fromByteOffset: 6, as: UInt8.self)
        default:
            return nil
        }
        switch proto {
        case 6: return length >= start + 20 ? (start, 16) : nil
        case 17: return length >= start + 8 ? (start, 6) : nil
        default: return nil
        }
    }

    /// What every segment's headers of one super-packet derive from, read once from its
    /// headers (the super-packet's own, or a copy of them: `cutInPlace`).
    public struct SegmentBase: Sendable {
        let pseudo: UInt64
        let seq0: UInt32
        let id0: UInt16
        /// IPv4: the header's sum without its length, ID and checksum (which change per
        /// segment): each segment's checksum is then a fold, with no reads of the bytes
        /// just written (a load across fresh stores stalls store forwarding).
        let v4Base: UInt64

        public init(headers p: UnsafeRawPointer, plan: Plan) {
            let ts = plan.transportOffset
            pseudo = InternetChecksum.pseudoHeader(p, isV6: plan.isV6, proto: plan.isTCP ? 6 : 17)
            seq0 = plan.isTCP ? UInt32(bigEndian: p.loadUnaligned(fromByteOffset: ts + 4, as: UInt32.self)) : 0
            id0 = plan.isV6 ? 0 : UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
            v4Base = plan.isV6 ? 0 : UInt64(p.loadUnaligned(as: UInt16.self))
                &+ UInt64(p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
                &+ UInt64(p.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
                &+ InternetChecksum.partial(p + 12, count: ts - 12)
        }
    }

    /// Writes segments `segments` of the super-packet at `p` (checked by `plan`)
    /// as complete IP packets: segment i at `out + (i - segments.lowerBound) * stride`.
    /// `stride` must be at least `plan.segmentLength`. The source is only read.
    /// `partialChecksums`: each segment's transport checksum is left as the
    /// pseudo-header sum (for a peer that negotiated it: Wire/DataMessage.swift)
    /// instead of computed over the payload.
    public static func split(_ p: UnsafeRawPointer, plan: Plan, segments: Range<Int>,
                             into out: UnsafeMutableRawPointer, stride: Int, partialChecksums: Bool = false) {
        precondition(segments.lowerBound >= 0 && segments.upperBound <= plan.count && stride >= plan.segmentLength)
        let hl = plan.headerLength
        let base = SegmentBase(headers: p, plan: plan)
        for i in segments {
            let d = out + (i - segments.lowerBound) * stride
            let pl = i == plan.count - 1 ? plan.lastPayload : plan.gsoSize
            d.copyMemory(from: p, byteCount: hl)
            (d + hl).copyMemory(from: p + hl + i * plan.gsoSize, byteCount: pl)
            finishSegment(d, plan: plan, index: i, base: base, partialChecksums: partialChecksums)
        }
    }

    /// Cuts segment `i` where it lies: its headers (from `headers`, a copy of the
    /// super-packet's taken before segment 0 was cut) are written into the super-packet
    /// at `p` right in front of its payload, over the end of what segment i − 1 and
    /// earlier ones carried: cut in order, each one consumed (sealed elsewhere) before
    /// the next is cut. Returns where the segment starts (`plan.length(ofSegment: i)`
    /// bytes). No payload is copied: the data path seals from here into its send
    /// buffer.
    public static func cutInPlace(_ p: UnsafeMutableRawPointer, plan: Plan, segment i: Int, headers: UnsafeRawPointer,
                                  base: SegmentBase, partialChecksums: Bool) -> UnsafeMutableRawPointer {
        precondition(i >= 0 && i < plan.count)
        let d = p + i * plan.gsoSize
        d.copyMemory(from: headers, byteCount: plan.headerLength)
        finishSegment(d, plan: plan, index: i, base: base, partialChecksums: partialChecksums)
        return d
    }

    /// Segment `i`'s headers at `d` (a copy of the super-packet's, its payload behind
    /// them): lengths, IPv4 ID and header checksum, TCP sequence and flags, the
    /// transport checksum (or its pseudo-header sum).
    @inline(__always)
    static func finishSegment(_ d: UnsafeMutableRawPointer, plan: Plan, index i: Int, base: SegmentBase,
                              partialChecksums: Bool) {
        let last = plan.count - 1
        let ts = plan.transportOffset
        let segLen = plan.headerLength + (i == last ? plan.lastPayload : plan.gsoSize)
        if plan.isV6 {
            d.storeBytes(of: UInt16(truncatingIfNeeded: segLen - 40).bigEndian, toByteOffset: 4, as: UInt16.self)
        } else {
            let id = (base.id0 &+ UInt16(truncatingIfNeeded: i)).bigEndian
            d.storeBytes(of: UInt16(truncatingIfNeeded: segLen).bigEndian, toByteOffset: 2, as: UInt16.self)
            d.storeBytes(of: id, toByteOffset: 4, as: UInt16.self)
            let sum = base.v4Base &+ InternetChecksum.lengthWord(segLen) &+ UInt64(id)
            d.storeBytes(of: ~InternetChecksum.fold(sum), toByteOffset: 10, as: UInt16.self)
        }
        let th = d + ts
        let l4 = segLen - ts
        if plan.isTCP {
            th.storeBytes(of: (base.seq0 &+ UInt32(truncatingIfNeeded: i * plan.gsoSize)).bigEndian, toByteOffset: 4, as: UInt32.self)
            var flags = th.load(fromByteOffset: 13, as: UInt8.self)
            if i != last { flags &= ~(tcpFIN | tcpPSH) }
            if i != 0 { flags &= ~tcpCWR }
            th.storeBytes(of: flags, toByteOffset: 13, as: UInt8.self)
        } else {
            th.storeBytes(of: UInt16(truncatingIfNeeded: l4).bigEndian, toByteOffset: 4, as: UInt16.self)
        }
        let co = plan.checksumOffset
        let pseudo = base.pseudo &+ InternetChecksum.lengthWord(l4)
        if partialChecksums {
            th.storeBytes(of: InternetChecksum.fold(pseudo), toByteOffset: co, as: UInt16.self)
            return
        }
        th.storeBytes(of: UInt16(0), toByteOffset: co, as: UInt16.self)
        var c = ~InternetChecksum.fold(InternetChecksum.partial(th, count: l4, pseudo))
        if c == 0 { c = 0xffff }
        th.storeBytes(of: c, toByteOffset: co, as: UInt16.self)
    }

    /// Completes the checksum of a non-GSO packet the kernel left to us
    /// (NEEDS_CSUM: the field holds the pseudo-header sum; add everything from
    /// csum_start on). True when done or nothing was to do; false when the
    /// header's offsets do not fit the packet (drop it).
    public static func completeChecksum(_ p: UnsafeMutableRawPointer, length: Int, header h: VirtioNetHeader) -> Bool {
        guard h.needsChecksumCompletion else { return true }
        let start = Int(h.checksumStart), at = start + Int(h.checksumOffset)
        guard at + 2 <= length else { return false }
        var c = ~InternetChecksum.fold(InternetChecksum.partial(p + start, count: length - start))
        if c == 0 { c = 0xffff }
        p.storeBytes(of: c, toByteOffset: at, as: UInt16.self)
        return true
    }

    /// Whether the TCP or UDP checksum of the IP packet at `p` is right
    /// (`transportOffset`: where its header starts).
    public static func transportChecksumValid(_ p: UnsafeRawPointer, length: Int, transportOffset: Int, isV6: Bool, proto: UInt8) -> Bool {
        guard transportOffset < length else { return false }
        let l4 = length - transportOffset
        let sum = InternetChecksum.partial(p + transportOffset, count: l4,
                                           InternetChecksum.pseudoHeader(p, isV6: isV6, proto: proto) &+ InternetChecksum.lengthWord(l4))
        return InternetChecksum.fold(sum) == 0xffff
    }
}
