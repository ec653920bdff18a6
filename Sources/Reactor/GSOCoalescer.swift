// TUN offloads, the receiver's side: GSOCoalescer merges what the data path
// opened back into GSO super-packets for one TUN write each (what GRO does in a
// NIC driver). The virtio_net_hdr layout, the checksum and the splitting are
// in TunOffload.swift.
//
// Coalescing (TCP only) follows the kernel's tcp_gro_receive and wireguard-go's
// tun/offload_linux.go: same addresses and ports, same ACK number, window and
// options, same TOS/TTL/DF (IPv4) or traffic class, flow label and hop limit
// (IPv6), flags exactly ACK or ACK|PSH, payload in sequence; every segment but
// the last exactly gso_size bytes; a PSH segment or a short one ends the
// super-packet. Each merged segment's checksum is verified first: the
// super-packet goes to the kernel as CHECKSUM_PARTIAL (NEEDS_CSUM), which the
// kernel trusts, so a segment with a bad checksum must never hide inside one
// (it is written alone, and the kernel drops it). A packet added as partial
// (its peer left the checksum to the receiver: Wire/DataMessage.swift) has
// nothing to verify: its field holds the pseudo-header sum, it merges as a
// verified one, and alone it is written with NEEDS_CSUM at the place given.
//
// Nothing here allocates after init, reads a clock or touches a descriptor.

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
        /// The head's checksum is partial: where it lies (csum_start; 0: complete) and csum_offset.
        var partialStart: UInt16
        var partialOffset: UInt16
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
    /// `partial`: its transport checksum holds only the pseudo-header sum, at this
    /// place (`Offload.checksumPlace` of the packet); nil: it is complete.
    @discardableResult
    public func add(_ p: UnsafeMutableRawPointer, length: Int, partial: (start: Int, offset: Int)? = nil) -> Bool {
        guard groupCount < maxGroups, pieceCount < maxPieces else { return false }
        guard let s = Self.segment(p, length: length), s.proto == 6 || udp else {
            newGroup(p, length: length, s: nil, partial: partial)
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
                    if partial == nil, !Self.checksumValid(p, length: length, s) {
                        // Written alone (the kernel drops it); the group stays open.
                        badChecksums += 1
                        newGroup(p, length: length, s: nil, partial: nil)
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
        newGroup(p, length: length, s: s, partial: partial)
        return true
    }

    /// Hands out every packet in order and resets. Super-packets get their
    /// headers rewritten in place first (lengths, IPv4 header checksum, PSH,
    /// pseudo-header checksum for NEEDS_CSUM).
    public func flush(_ write: (Output) -> Void) {
        for gi in 0..<groupCount {
            let g = groups[gi]
            guard g.pieceCount > 0 else {
                let header = g.partialStart == 0
                    ? VirtioNetHeader.none
                    : VirtioNetHeader.partialChecksum(start: Int(g.partialStart), offset: Int(g.partialOffset))
                write(Output(header: header, head: g.head, headLength: g.headLength,
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
        restoreSegment(o.head, length: o.headLength, of: o)
    }

    /// The same for every other segment of `o`, at `piece.base - o.header.headerLength`
    /// (`piece.length + headerLength` bytes): its headers are its own, but its
    /// checksum may have been left partial by its sender, so it is computed in full.
    public static func restoreSegment(_ h: UnsafeMutableRawPointer, length: Int, of o: Output) {
        let ihl = Int(o.header.checksumStart)
        let isV6 = h.load(as: UInt8.self) >> 4 == 6
        let isUDP = o.header.gsoType == VirtioNetHeader.gsoUDPL4
        if isV6 {
            h.storeBytes(of: UInt16(truncatingIfNeeded: length - 40).bigEndian, toByteOffset: 4, as: UInt16.self)
        } else {
            h.storeBytes(of: UInt16(truncatingIfNeeded: length).bigEndian, toByteOffset: 2, as: UInt16.self)
            h.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
            h.storeBytes(of: ~InternetChecksum.fold(InternetChecksum.partial(h, count: ihl)), toByteOffset: 10, as: UInt16.self)
        }
        let l4 = length - ihl
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

    private func newGroup(_ p: UnsafeMutableRawPointer, length: Int, s: Segment?, partial: (start: Int, offset: Int)?) {
        let gi = groupCount
        groupCount += 1
        groups[gi] = Group(
            head: p, headLength: length, ipHeaderLength: s?.ipHeaderLength ?? 0, l4HeaderLength: s?.l4HeaderLength ?? 0,
            isV6: s?.isV6 ?? false, proto: s?.proto ?? 0, mergeable: s?.mergeable ?? false, verified: partial != nil,
            partialStart: UInt16(truncatingIfNeeded: partial?.start ?? 0), partialOffset: UInt16(truncatingIfNeeded: partial?.offset ?? 0),
            psh: s?.psh ?? false,
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
