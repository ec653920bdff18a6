// RELAY (7): an anchor forwards a Whalescale datagram it cannot read.
//
//   0        1                                  8                                  16
//  +--------+----------------------------------+----------------------------------+
//  | type=7 |  hop tag (7 bytes)               |        member id (8 bytes)       |
//  +--------+----------------------------------+----------------------------------+
//  | inner: one whole Whalescale datagram (HANDSHAKE_INIT/RESP,                   |
//  | COOKIE_REPLY or DATA), still encrypted end to end                            |
//  +------------------------------------------------------------------------------+
//
// Header 16 bytes (what the tunnel MTU budgets for it). The outer header is not
// encrypted; the inner datagram is exactly what would have been sent directly.
//
// The member id names the *other* end, and the anchor rewrites it:
//   sender -> anchor   id = the target member; the anchor forwards only if the
//                      outer source is the current endpoint of a member session
//                      and the hop tag authenticates under that session, and
//                      the target is a member with a current endpoint (never
//                      an open relay), within the sender's byte budget;
//   anchor -> target   id = the source member, so the target knows whose
//                      session the inner packet belongs to before it opens it
//                      (and can check that the inner packet authenticates as
//                      that member); the anchor re-tags under its session with
//                      the target, which checks the tag before it opens
//                      anything (a forged anchor source is dropped).
// The anchor rewrites 15 bytes in place and forwards: no copy, no decryption.
//
// Hop tag: 56 bits of keyed BLAKE2b over the member id, the inner datagram's
// first 16 bytes and its length, keyed by the session between the two hops
// (Crypto/RelayTag.swift). A RELAY whose tag fails is dropped and counted
// (`relay_bad_tag`).
//
// Member id = the first 8 bytes of BLAKE2b-256(member's Ed25519 public key).
// 64 bits name a member among the few hundred of a network with no practical
// chance of collision; it is a routing label, not a secret and not an
// authenticator (the hop tag and the inner packet are).

import Support

/// A member's 8-byte relay label (see the header comment).
public struct MemberID: Hashable, Sendable, CustomStringConvertible {
    /// The 8 id bytes read as one little-endian word (wire order is the hash's byte order).
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String {
        let hex = String(rawValue.byteSwapped, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Layout constants and in-place header parse/write for RELAY.
public enum RelayMessage {
    public static let type = MessageType.relay.rawValue
    public static let headerSize = 16
    /// Where the tag's 7 bytes start (they end at 8, where the member id starts).
    public static let tagOffset = 1
    public static let idOffset = 8
    /// The smallest inner datagram worth relaying: a DATA keepalive.
    public static let minimumInnerSize = DataMessage.minimumSize
    public static let minimumSize = headerSize + minimumInnerSize

    /// The member id of a RELAY of `length` bytes at the start of `buffer`; nil
    /// when too short, too long for the buffer, not type 7, or an inner type
    /// that is not a session message (1...4). The tag is not checked here.
    @inlinable
    public static func parseHeader(_ buffer: UnsafeRawBufferPointer, length: Int) -> MemberID? {
        guard length >= minimumSize, length <= buffer.count else { return nil }
        guard buffer[0] == type else { return nil }
        let inner = buffer[headerSize]
        guard inner >= 1, inner <= 4 else { return nil }
        return MemberID(rawValue: buffer.loadUnaligned(fromByteOffset: idOffset, as: UInt64.self).littleEndian)
    }

    /// Writes the 16-byte header at `buffer[offset ..< offset + 16]` with a zero
    /// tag (the caller tags it once the inner datagram lies behind it); false when it does not fit.
    @inlinable
    @discardableResult
    public static func writeHeader(_ id: MemberID, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Bool {
        guard offset >= 0, offset <= buffer.count - headerSize else { return false }
        buffer.storeBytes(of: UInt64(type).littleEndian, toByteOffset: offset, as: UInt64.self)
        buffer.storeBytes(of: id.rawValue.littleEndian, toByteOffset: offset + idOffset, as: UInt64.self)
        return true
    }

    /// Rewrites the member id of a parsed RELAY in place (the anchor's step; it re-tags after).
    @inlinable
    public static func rewrite(_ id: MemberID, in buffer: UnsafeMutableRawBufferPointer) {
        buffer.storeBytes(of: id.rawValue.littleEndian, toByteOffset: idOffset, as: UInt64.self)
    }

    /// The tag of the RELAY at `relay` (low 56 bits).
    @inlinable
    public static func tag(at relay: UnsafeRawPointer) -> UInt64 {
        UInt64(littleEndian: relay.loadUnaligned(as: UInt64.self)) >> 8
    }

    /// Writes `tag`'s low 56 bits into the RELAY at `relay` (type byte kept).
    @inlinable
    public static func writeTag(_ tag: UInt64, at relay: UnsafeMutableRawPointer) {
        relay.storeBytes(of: ((tag << 8) | UInt64(type)).littleEndian, as: UInt64.self)
    }

    /// A new datagram: header (zero tag) + a copy of `inner` (for control-path
    /// messages that are not in a caller's buffer; the caller tags it).
    public static func wrap(_ inner: [UInt8], for id: MemberID) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: headerSize)
        out.reserveCapacity(headerSize + inner.count)
        out.withUnsafeMutableBytes { _ = writeHeader(id, into: $0, at: 0) }
        out += inner
        return out
    }
}
