// Path probe family: PATH_PROBE (5) and PATH_PROBE_REPLY (6), unencrypted.
// "Who is there, and how do you see me?" — how a node learns its public
// endpoint without STUN (DESIGN §4, §5), and how it finds out whether an
// anchor or a cached endpoint still answers before any session exists.
//
// PATH_PROBE, exactly 64 bytes
//   0        1                 4                                   12
//  +--------+-----------------+-----------------------------------+
//  | type=5 |  reserved (0)   |        txid (8 bytes, opaque)     |
//  +--------+-----------------+-----------------------------------+
//   12 ..  44  sender's Ed25519 public key   32
//   44 ..  64  padding (zero)                20
//
// PATH_PROBE_REPLY, exactly 63 bytes (never larger than the probe it answers)
//   0        1                 4                                   12
//  +--------+-----------------+-----------------------------------+
//  | type=6 |  reserved (0)   |   txid (8, echoed from the probe) |
//  +--------+-----------------+-----------------------------------+
//   12 ..  31  observed source endpoint of the probe   19   (WireEndpoint below)
//   31 ..  63  responder's Ed25519 public key          32
//
// Why the padding: a reply must never be larger than what elicited it, or
// the responder becomes an amplifier for spoofed sources. The probe is padded
// to 64 so the 63-byte reply (which carries an IPv6-sized address) fits.
//
// Neither message is authenticated: anyone may put a member's public key in a
// probe (keys are not secret), and an on-path attacker may forge a reply.
// So a responder answers only keys that are members (cheap filtering, not
// authentication), never with more bytes, and rate-limits per source address;
// a prober accepts a reply only for a txid it has outstanding, from the key it
// probed. Authenticated observations travel in-session (ControlMessage
// OBSERVED, PATH_PONG). Metadata exposure is accepted (seed 3.8).
//
// WireEndpoint, 19 bytes (also used by ControlMessage)
//   0         family  4 = IPv4, 6 = IPv6
//   1 ..  3   port    big-endian (network order, like the address)
//   3 .. 19   address 16 bytes in network order; IPv4 uses bytes 0..<4 and
//             the other 12 must be zero

import Support

/// The 19-byte endpoint encoding shared by the probe and control families.
public enum WireEndpoint {
    public static let size = 19

    /// Writes `endpoint` at `buffer[offset ..< offset + 19]`; false (nothing
    /// written) when that range does not fit.
    @discardableResult
    public static func write(_ endpoint: Endpoint, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Bool {
        guard offset >= 0, offset <= buffer.count - size else { return false }
        buffer[offset] = endpoint.family.rawValue
        buffer[offset + 1] = UInt8(truncatingIfNeeded: endpoint.port >> 8)
        buffer[offset + 2] = UInt8(truncatingIfNeeded: endpoint.port)
        buffer.storeBytes(of: endpoint.family == .v4 ? (endpoint.address.hi & 0xFFFF_FFFF_0000_0000).bigEndian
                                                     : endpoint.address.hi.bigEndian,
                          toByteOffset: offset + 3, as: UInt64.self)
        buffer.storeBytes(of: endpoint.family == .v4 ? 0 : endpoint.address.lo.bigEndian, toByteOffset: offset + 11, as: UInt64.self)
        return true
    }

    /// Reads an endpoint at `buffer[offset ..< offset + 19]`; nil when out of
    /// range, an unknown family, or an IPv4 address with non-zero padding.
    public static func read(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> Endpoint? {
        guard offset >= 0, offset <= buffer.count - size else { return nil }
        guard let family = Endpoint.Family(rawValue: buffer[offset]) else { return nil }
        let port = UInt16(buffer[offset + 1]) << 8 | UInt16(buffer[offset + 2])
        var a = IPAddressBytes()
        a.hi = UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: offset + 3, as: UInt64.self))
        a.lo = UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: offset + 11, as: UInt64.self))
        if family == .v4, a.lo != 0 || a.hi & 0xFFFF_FFFF != 0 { return nil }
        return Endpoint(family: family, address: a, port: port)
    }

    static func append(_ endpoint: Endpoint, to out: inout [UInt8]) {
        let start = out.count
        out += [UInt8](repeating: 0, count: size)
        out.withUnsafeMutableBytes { _ = write(endpoint, into: $0, at: start) }
    }
}

/// PATH_PROBE (layout above).
public struct PathProbe: Equatable, Sendable {
    public static let type = MessageType.pathProbe.rawValue
    public static let size = 64
    static let keyOffset = 12
    static let paddingOffset = 44

    public var txid: UInt64
    public var sender: PublicKey

    public init(txid: UInt64, sender: PublicKey) {
        self.txid = txid
        self.sender = sender
    }

    /// Parses a probe of `length` bytes at the start of `buffer`: exactly 64
    /// bytes, type 5, zero reserved bytes and zero padding.
    public init?(_ buffer: UnsafeRawBufferPointer, length: Int) {
        guard length == Self.size, buffer.count >= length else { return nil }
        guard buffer.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian == UInt32(Self.type) else { return nil }
        for i in Self.paddingOffset..<Self.size where buffer[i] != 0 { return nil }
        txid = buffer.loadUnaligned(fromByteOffset: 4, as: UInt64.self).littleEndian
        guard let key = PublicKey(bytes: Array(buffer[Self.keyOffset..<Self.paddingOffset])) else { return nil }
        sender = key
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        out[0] = Self.type
        out.withUnsafeMutableBytes { $0.storeBytes(of: txid.littleEndian, toByteOffset: 4, as: UInt64.self) }
        out.replaceSubrange(Self.keyOffset..<Self.paddingOffset, with: sender.bytes)
        return out
    }
}

/// PATH_PROBE_REPLY (layout above).
public struct PathProbeReply: Equatable, Sendable {
    public static let type = MessageType.pathProbeReply.rawValue
    public static let size = 63
    static let observedOffset = 12
    static let keyOffset = 31

    public var txid: UInt64
    /// The source address the probe arrived from, as the responder saw it.
    public var observed: Endpoint
    public var responder: PublicKey

    public init(txid: UInt64, observed: Endpoint, responder: PublicKey) {
        self.txid = txid
        self.observed = observed
        self.responder = responder
    }

    public init?(_ buffer: UnsafeRawBufferPointer, length: Int) {
        guard length == Self.size, buffer.count >= length else { return nil }
        guard buffer.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian == UInt32(Self.type) else { return nil }
        txid = buffer.loadUnaligned(fromByteOffset: 4, as: UInt64.self).littleEndian
        guard let ep = WireEndpoint.read(buffer, at: Self.observedOffset),
              let key = PublicKey(bytes: Array(buffer[Self.keyOffset..<Self.size])) else { return nil }
        observed = ep
        responder = key
    }

    /// Writes the reply at the start of `buffer` (in place of the probe it
    /// answers: the reply is shorter). Returns the length written, or nil if
    /// the buffer is too small.
    public func write(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard buffer.count >= Self.size else { return nil }
        buffer.storeBytes(of: UInt32(Self.type).littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: txid.littleEndian, toByteOffset: 4, as: UInt64.self)
        WireEndpoint.write(observed, into: buffer, at: Self.observedOffset)
        responder.bytes.withUnsafeBytes {
            UnsafeMutableRawBufferPointer(rebasing: buffer[Self.keyOffset..<Self.size]).copyMemory(from: $0)
        }
        return Self.size
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        _ = out.withUnsafeMutableBytes { write(into: $0) }
        return out
    }
}
