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
// Coalescing (TCP only) follows the kernel's tcp_gro_receive and wireguard-go's
// tun/offload_linux.go: same addresses and ports, same ACK number, window and
// options, same TOS/TTL/DF (IPv4) or traffic class, flow label and hop limit
// (IPv6), flags exactly ACK or ACK|PSH, payload in sequence; every segment but
// the last exactly gso_size bytes; a PSH segment or a short one ends the
// super-packet. Each merged segment's checksum is verified first: the
// super-packet goes to the kernel as CHECKSUM_PARTIAL (NEEDS_CSUM), which the
// kernel trusts, so a segment with a bad checksum must never hide inside one
// (it is written alone, and the kernel drops it).
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

    /// Writes segments `segments` of the super-packet at `p` (checked by `plan`)
    /// as complete IP packets: segment i at `out + (i - segments.lowerBound) * stride`.
    /// `stride` must be at least `plan.segmentLength`. The source is only read.
    public static func split(_ p: UnsafeRawPointer, plan: Plan, segments: Range<Int>,
                             into out: UnsafeMutableRawPointer, stride: Int) {
        precondition(segments.lowerBound >= 0 && segments.upperBound <= plan.count && stride >= plan.segmentLength)
        let hl = plan.headerLength
        let ts = plan.transportOffset
        let pseudo = InternetChecksum.pseudoHeader(p, isV6: plan.isV6, proto: plan.isTCP ? 6 : 17)
        let last = plan.count - 1
        let seq0 = plan.isTCP ? UInt32(bigEndian: p.loadUnaligned(fromByteOffset: ts + 4, as: UInt32.self)) : 0
        let id0 = plan.isV6 ? 0 : UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        for i in segments {
            let d = out + (i - segments.lowerBound) * stride
            let pl = i == last ? plan.lastPayload : plan.gsoSize
            d.copyMemory(from: p, byteCount: hl)
            (d + hl).copyMemory(from: p + hl + i * plan.gsoSize, byteCount: pl)
            let segLen = hl + pl
            if plan.isV6 {
                d.storeBytes(of: UInt16(truncatingIfNeeded: segLen - 40).bigEndian, toByteOffset: 4, as: UInt16.self)
            } else {
                d.storeBytes(of: UInt16(truncatingIfNeeded: segLen).bigEndian, toByteOffset: 2, as: UInt16.self)
                d.storeBytes(of: (id0 &+ UInt16(truncatingIfNeeded: i)).bigEndian, toByteOffset: 4, as: UInt16.self)
                d.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
                d.storeBytes(of: ~InternetChecksum.fold(InternetChecksum.partial(d, count: ts)), toByteOffset: 10, as: UInt16.self)
            }
            let th = d + ts
            let l4 = segLen - ts
            if plan.isTCP {
                th.storeBytes(of: (seq0 &+ UInt32(truncatingIfNeeded: i * plan.gsoSize)).bigEndian, toByteOffset: 4, as: UInt32.self)
                var flags = th.load(fromByteOffset: 13, as: UInt8.self)
                if i != last { flags &= ~(tcpFIN | tcpPSH) }
                if i != 0 { flags &= ~tcpCWR }
                th.storeBytes(of: flags, toByteOffset: 13, as: UInt8.self)
            } else {
                th.storeBytes(of: UInt16(truncatingIfNeeded: l4).bigEndian, toByteOffset: 4, as: UInt16.self)
            }
            let co = plan.checksumOffset
            th.storeBytes(of: UInt16(0), toByteOffset: co, as: UInt16.self)
            var c = ~InternetChecksum.fold(InternetChecksum.partial(th, count: l4, pseudo &+ InternetChecksum.lengthWord(l4)))
            if c == 0 { c = 0xffff }
            th.storeBytes(of: c, toByteOffset: co, as: UInt16.self)
        }
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

/// Coalesces consecutive in-order segments of one TCP flow, and consecutive
/// equal-sized datagrams of one UDP flow, into GSO super-packets (TCPv4/v6,
/// UDP_L4), without copying: a super-packet is its first packet (whose headers
/// are rewritten) followed by the payloads of the others where they lie; the
/// kernel cuts it back into the same packets (or hands it whole to a socket
/// with GRO on). Packets that cannot be merged pass through alone, in order
/// within their flow. One instance per data path, reused batch after batch.
///
/// UDP: the datagrams of a run must be equal in size (the last may be
/// shorter, and ends the run), carry a checksum that verifies (an IPv4
/// datagram without one is never merged: the kernel would give each part a
/// checksum it did not have), and agree in every IP header field the kernel
/// copies (TOS or traffic class and flow label, DF, TTL or hop limit).
/// `udp = false` (a kernel without USO) leaves UDP alone.
///
/// Use: `add` every packet of a batch (pointers must stay valid until `flush`);
/// when `add` returns false it is full: `flush`, then `add` again. `flush`
/// hands out every packet or super-packet in order of arrival of its first
/// segment and resets.
public final class GSOCoalescer {
    /// A payload appended to a super-packet (layout of `struct iovec`).
    public struct Piece {
        public var base: UnsafeRawPointer
        public var length: Int
    }

    /// One packet to write: `head` (a whole IP packet) followed by `pieces`. With
    /// pieces, `header` describes the GSO super-packet; without, it is `.none`.
    public struct Output {
        public let header: VirtioNetHeader
        public let head: UnsafeMutableRawPointer
        public let headLength: Int
        public let pieces: UnsafeBufferPointer<Piece>
    }

    struct Group {
        var head: UnsafeMutableRawPointer
        var headLength: Int
        /// 0 when this packet is not a TCP segment we parsed (nothing can join it).
        var ipHeaderLength: Int
        var l4HeaderLength: Int
        var isV6: Bool
        /// 6 (TCP) or 17 (UDP); 0 for a packet that is neither.
        var proto: UInt8
        var mergeable: Bool
        var verified: Bool
        var psh: Bool
        var gsoSize: Int
        var lastPayload: Int
        var totalLength: Int
        var nextSeq: UInt32
        /// Appended payloads: a list through `links` (flows may interleave in a batch).
        var firstPiece: Int
        var lastPiece: Int
        var pieceCount: Int
    }

    public let maxGroups: Int
    public let maxPieces: Int
    /// The most bytes one super-packet may hold (an IP packet's length field).
    public static let maxLength = 65535
    /// The most segments in one super-packet: its TUN write is one writev of
    /// this many pieces plus two (UIO_MAXIOV is 1024); 64 KiB at MSS 1352 is 49.
    public static let maxSegmentsPerPacket = 255
    static let openSlots = 8

    private let groups: UnsafeMutablePointer<Group>
    private let pieces: UnsafeMutablePointer<Piece>
    private let links: UnsafeMutablePointer<Int>
    /// One group's pieces in order, for `flush`'s output.
    private let gather: UnsafeMutablePointer<Piece>
    /// Groups that may still grow, most recent last (a small LRU: flows interleave little).
    private let open: UnsafeMutablePointer<Int>
    private var groupCount = 0
    private var pieceCount = 0
    private var openCount = 0
    /// Counters (for tests and `wsctl status`).
    public private(set) var merged = 0
    /// Of those, UDP datagrams.
    public private(set) var mergedUDP = 0
    public private(set) var badChecksums = 0

    /// Whether UDP datagrams are merged (TUN with USO: kernel 6.2+); TCP always is.
    public var udp: Bool

    public init(maxGroups: Int = 1024, maxPieces: Int = 4096, udp: Bool = true) {
        self.udp = udp
        self.maxGroups = maxGroups
        self.maxPieces = maxPieces
        groups = .allocate(capacity: maxGroups)
        pieces = .allocate(capacity: maxPieces)
        links = .allocate(capacity: maxPieces)
        gather = .allocate(capacity: maxPieces)
        open = .allocate(capacity: Self.openSlots)
    }

    deinit {
        groups.deallocate()
        pieces.deallocate()
        links.deallocate()
        gather.deallocate()
        open.deallocate()
    }

    public var isEmpty: Bool { groupCount == 0 }

    /// Takes the IP packet at `p`. False (nothing taken) when full: `flush` first.
    @discardableResult
    public func add(_ p: UnsafeMutableRawPointer, length: Int) -> Bool {
        guard groupCount < maxGroups, pieceCount < maxPieces else { return false }
        guard let s = Self.segment(p, length: length), s.proto == 6 || udp else {
            newGroup(p, length: length, s: nil)
            return true
        }
        // The flow's open group, if any.
        var slot = openCount - 1
        while slot >= 0 {
            if groups[open[slot]].proto == s.proto && Self.sameFlow(groups[open[slot]].head, p, s) { break }
            slot -= 1
        }
        if slot >= 0 {
            let gi = open[slot]
            if s.mergeable, canAppend(groups[gi], p, s) {
                if !groups[gi].verified {
                    if Self.checksumValid(groups[gi].head, length: groups[gi].headLength, s) {
                        groups[gi].verified = true
                    } else {
                        badChecksums += 1
                        groups[gi].mergeable = false
                    }
                }
                if groups[gi].mergeable {
                    if !Self.checksumValid(p, length: length, s) {
                        // Written alone (the kernel drops it); the group stays open.
                        badChecksums += 1
                        newGroup(p, length: length, s: nil)
                        return true
                    }
                    append(gi, p, s)
                    if groups[gi].psh || s.payload < groups[gi].gsoSize { closeOpen(slot) }
                    return true
                }
            }
            // Whatever comes now in this flow must not be written before what the group holds.
            closeOpen(slot)
        }
        newGroup(p, length: length, s: s)
        return true
    }

    /// Hands out every packet in order and resets. Super-packets get their
    /// headers rewritten in place first (lengths, IPv4 header checksum, PSH,
    /// pseudo-header checksum for NEEDS_CSUM).
    public func flush(_ write: (Output) -> Void) {
        for gi in 0..<groupCount {
            let g = groups[gi]
            guard g.pieceCount > 0 else {
                write(Output(header: .none, head: g.head, headLength: g.headLength,
                             pieces: UnsafeBufferPointer(start: nil, count: 0)))
                continue
            }
            let ihl = g.ipHeaderLength
            let h = g.head
            if g.isV6 {
                h.storeBytes(of: UInt16(truncatingIfNeeded: g.totalLength - 40).bigEndian, toByteOffset: 4, as: UInt16.self)
            } else {
                h.storeBytes(of: UInt16(truncatingIfNeeded: g.totalLength).bigEndian, toByteOffset: 2, as: UInt16.self)
                h.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
                h.storeBytes(of: ~InternetChecksum.fold(InternetChecksum.partial(h, count: ihl)), toByteOffset: 10, as: UInt16.self)
            }
            if g.psh {
                h.storeBytes(of: h.load(fromByteOffset: ihl + 13, as: UInt8.self) | Offload.tcpPSH, toByteOffset: ihl + 13, as: UInt8.self)
            }
            // The transport checksum field holds the pseudo-header sum (NEEDS_CSUM); for UDP
            // the length field holds the whole run's, as Linux's own UDP GRO leaves it.
            let l4 = g.totalLength - ihl
            let isUDP = g.proto == 17
            let pseudo = InternetChecksum.pseudoHeader(h, isV6: g.isV6, proto: g.proto) &+ InternetChecksum.lengthWord(l4)
            if isUDP { h.storeBytes(of: UInt16(truncatingIfNeeded: l4).bigEndian, toByteOffset: ihl + 4, as: UInt16.self) }
            h.storeBytes(of: InternetChecksum.fold(pseudo), toByteOffset: ihl + (isUDP ? 6 : 16), as: UInt16.self)
            let header = VirtioNetHeader(
                flags: VirtioNetHeader.needsChecksum,
                gsoType: isUDP ? VirtioNetHeader.gsoUDPL4 : g.isV6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4,
                headerLength: UInt16(ihl + g.l4HeaderLength), gsoSize: UInt16(g.gsoSize),
                checksumStart: UInt16(ihl), checksumOffset: isUDP ? 6 : 16)
            var k = g.firstPiece
            for j in 0..<g.pieceCount {
                gather[j] = pieces[k]
                k = links[k]
            }
            write(Output(header: header, head: h, headLength: g.headLength,
                         pieces: UnsafeBufferPointer(start: gather, count: g.pieceCount)))
        }
        groupCount = 0
        pieceCount = 0
        openCount = 0
    }

    /// Undoes `flush`'s rewrite of a super-packet's head so that it can be
    /// written alone (a kernel that refuses GSO writes): lengths and checksums
    /// of the head as the single segment it was. The other segments were never
    /// touched: each piece still has its own headers in front of it.
    public static func restoreHead(_ o: Output) {
        let ihl = Int(o.header.checksumStart)
        let h = o.head
        let isV6 = h.load(as: UInt8.self) >> 4 == 6
        let isUDP = o.header.gsoType == VirtioNetHeader.gsoUDPL4
        if isV6 {
            h.storeBytes(of: UInt16(truncatingIfNeeded: o.headLength - 40).bigEndian, toByteOffset: 4, as: UInt16.self)
        } else {
            h.storeBytes(of: UInt16(truncatingIfNeeded: o.headLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            h.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
            h.storeBytes(of: ~InternetChecksum.fold(InternetChecksum.partial(h, count: ihl)), toByteOffset: 10, as: UInt16.self)
        }
        let l4 = o.headLength - ihl
        let at = ihl + (isUDP ? 6 : 16)
        if isUDP { h.storeBytes(of: UInt16(truncatingIfNeeded: l4).bigEndian, toByteOffset: ihl + 4, as: UInt16.self) }
        h.storeBytes(of: UInt16(0), toByteOffset: at, as: UInt16.self)
        let sum = InternetChecksum.partial(h + ihl, count: l4,
                                           InternetChecksum.pseudoHeader(h, isV6: isV6, proto: isUDP ? 17 : 6) &+ InternetChecksum.lengthWord(l4))
        let c = ~InternetChecksum.fold(sum)
        h.storeBytes(of: isUDP && c == 0 ? 0xffff : c, toByteOffset: at, as: UInt16.self)
    }

    // MARK: Internals

    /// A parsed TCP segment: where its headers end and what must match.
    struct Segment {
        var isV6: Bool
        var proto: UInt8
        var ipHeaderLength: Int
        var l4HeaderLength: Int
        var payload: Int
        var seq: UInt32
        var psh: Bool
        /// May join or start a super-packet: no IP options or fragments, a payload, and for
        /// TCP flags ACK or ACK|PSH, for UDP a checksum.
        var mergeable: Bool
    }

    /// Parses a TCP segment in a plain IPv4 (no options) or IPv6 (no extension
    /// headers) packet whose length fields agree with `length`; nil otherwise.
    static func segment(_ p: UnsafeRawPointer, length: Int) -> Segment? {
        guard length >= 28 else { return nil }
        let v = p.load(as: UInt8.self)
        let isV6: Bool
        let ihl: Int
        let proto: UInt8
        switch v >> 4 {
        case 4:
            proto = p.load(fromByteOffset: 9, as: UInt8.self)
            guard v & 0x0f == 5, proto == 6 || proto == 17,
                  Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))) == length else { return nil }
            isV6 = false
            ihl = 20
        case 6:
            proto = p.load(fromByteOffset: 6, as: UInt8.self)
            guard length >= 48, proto == 6 || proto == 17,
                  Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))) == length - 40 else { return nil }
            isV6 = true
            ihl = 40
        default:
            return nil
        }
        var fragment = false
        if !isV6 {
            let frag = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            fragment = frag & 0x3fff != 0
        }
        if proto == 17 {
            let l4 = length - ihl
            guard l4 >= 8, Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: ihl + 4, as: UInt16.self))) == l4 else { return nil }
            let hasChecksum = p.loadUnaligned(fromByteOffset: ihl + 6, as: UInt16.self) != 0
            return Segment(isV6: isV6, proto: 17, ipHeaderLength: ihl, l4HeaderLength: 8, payload: l4 - 8, seq: 0, psh: false,
                           mergeable: l4 > 8 && !fragment && hasChecksum)
        }
        guard length >= ihl + 20 else { return nil }
        let thl = Int(p.load(fromByteOffset: ihl + 12, as: UInt8.self) >> 4) * 4
        guard thl >= 20, ihl + thl <= length else { return nil }
        let flags = p.load(fromByteOffset: ihl + 13, as: UInt8.self)
        let payload = length - ihl - thl
        let mergeable = flags & ~Offload.tcpPSH == Offload.tcpACK && payload > 0 && !fragment
        return Segment(isV6: isV6, proto: 6, ipHeaderLength: ihl, l4HeaderLength: thl, payload: payload,
                       seq: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: ihl + 4, as: UInt32.self)),
                       psh: flags & Offload.tcpPSH != 0, mergeable: mergeable)
    }

    /// Same addresses and ports (the head was parsed as a TCP segment of the same IP version).
    @inline(__always)
    static func sameFlow(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ s: Segment) -> Bool {
        if s.isV6 {
            guard a.load(as: UInt8.self) >> 4 == 6 else { return false }
            return a.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                && a.loadUnaligned(fromByteOffset: 16, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
                && a.loadUnaligned(fromByteOffset: 24, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
                && a.loadUnaligned(fromByteOffset: 32, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 32, as: UInt64.self)
                && a.loadUnaligned(fromByteOffset: 40, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 40, as: UInt32.self)
        }
        guard a.load(as: UInt8.self) == 0x45 else { return false }
        return a.loadUnaligned(fromByteOffset: 12, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 12, as: UInt64.self)
            && a.loadUnaligned(fromByteOffset: 20, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 20, as: UInt32.self)
    }

    private func canAppend(_ g: Group, _ p: UnsafeRawPointer, _ s: Segment) -> Bool {
        guard g.mergeable, !g.psh, g.lastPayload == g.gsoSize, s.payload <= g.gsoSize,
              s.proto == 17 || s.seq == g.nextSeq, s.l4HeaderLength == g.l4HeaderLength, s.ipHeaderLength == g.ipHeaderLength,
              g.totalLength + s.payload <= Self.maxLength, g.pieceCount + 1 < Self.maxSegmentsPerPacket else { return false }
        let h = UnsafeRawPointer(g.head)
        if s.isV6 {
            // Version, traffic class and flow label; hop limit.
            guard h.loadUnaligned(as: UInt32.self) == p.loadUnaligned(as: UInt32.self),
                  h.load(fromByteOffset: 7, as: UInt8.self) == p.load(fromByteOffset: 7, as: UInt8.self) else { return false }
        } else {
            // TOS; DF and the reserved bit; TTL.
            guard h.load(fromByteOffset: 1, as: UInt8.self) == p.load(fromByteOffset: 1, as: UInt8.self),
                  h.load(fromByteOffset: 6, as: UInt8.self) >> 5 == p.load(fromByteOffset: 6, as: UInt8.self) >> 5,
                  h.load(fromByteOffset: 8, as: UInt8.self) == p.load(fromByteOffset: 8, as: UInt8.self) else { return false }
        }
        // UDP: the ports matched (same flow); length and checksum are per datagram. The
        // kernel numbers the parts' IPv4 IDs from the head's: merge only datagrams so
        // numbered already, or atomic ones (DF: the ID means nothing, RFC 6864).
        if s.proto == 17 {
            guard !s.isV6, h.load(fromByteOffset: 6, as: UInt8.self) & 0x40 == 0 else { return true }
            let id0 = UInt16(bigEndian: h.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
            return UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) == id0 &+ UInt16(truncatingIfNeeded: g.pieceCount + 1)
        }
        let t = s.ipHeaderLength
        // ACK number; data offset; window; urgent pointer; then the options byte for byte.
        guard h.loadUnaligned(fromByteOffset: t + 8, as: UInt32.self) == p.loadUnaligned(fromByteOffset: t + 8, as: UInt32.self),
              h.load(fromByteOffset: t + 12, as: UInt8.self) == p.load(fromByteOffset: t + 12, as: UInt8.self),
              h.loadUnaligned(fromByteOffset: t + 14, as: UInt16.self) == p.loadUnaligned(fromByteOffset: t + 14, as: UInt16.self),
              h.loadUnaligned(fromByteOffset: t + 18, as: UInt16.self) == p.loadUnaligned(fromByteOffset: t + 18, as: UInt16.self)
        else { return false }
        var o = t + 20
        let end = t + s.l4HeaderLength
        while o + 4 <= end {
            guard h.loadUnaligned(fromByteOffset: o, as: UInt32.self) == p.loadUnaligned(fromByteOffset: o, as: UInt32.self) else { return false }
            o += 4
        }
        return true
    }

    static func checksumValid(_ p: UnsafeRawPointer, length: Int, _ s: Segment) -> Bool {
        Offload.transportChecksumValid(p, length: length, transportOffset: s.ipHeaderLength, isV6: s.isV6, proto: s.proto)
    }

    private func newGroup(_ p: UnsafeMutableRawPointer, length: Int, s: Segment?) {
        let gi = groupCount
        groupCount += 1
        groups[gi] = Group(
            head: p, headLength: length, ipHeaderLength: s?.ipHeaderLength ?? 0, l4HeaderLength: s?.l4HeaderLength ?? 0,
            isV6: s?.isV6 ?? false, proto: s?.proto ?? 0, mergeable: s?.mergeable ?? false, verified: false, psh: s?.psh ?? false,
            gsoSize: s?.payload ?? 0, lastPayload: s?.payload ?? 0, totalLength: length,
            nextSeq: (s?.seq ?? 0) &+ UInt32(truncatingIfNeeded: s?.payload ?? 0), firstPiece: -1, lastPiece: -1,
            pieceCount: 0)
        guard let s, s.mergeable, !s.psh else { return }
        if openCount == Self.openSlots { closeOpen(0) }
        open[openCount] = gi
        openCount += 1
    }

    private func append(_ gi: Int, _ p: UnsafeRawPointer, _ s: Segment) {
        let k = pieceCount
        pieces[k] = Piece(base: p + s.ipHeaderLength + s.l4HeaderLength, length: s.payload)
        links[k] = -1
        if groups[gi].pieceCount == 0 { groups[gi].firstPiece = k } else { links[groups[gi].lastPiece] = k }
        groups[gi].lastPiece = k
        pieceCount += 1
        groups[gi].pieceCount += 1
        groups[gi].lastPayload = s.payload
        groups[gi].totalLength += s.payload
        groups[gi].nextSeq = s.seq &+ UInt32(truncatingIfNeeded: s.payload)
        if s.psh { groups[gi].psh = true }
        merged += 1
        if s.proto == 17 { mergedUDP += 1 }
    }

    private func closeOpen(_ slot: Int) {
        var i = slot
        while i + 1 < openCount {
            open[i] = open[i + 1]
            i += 1
        }
        openCount -= 1
    }
}
