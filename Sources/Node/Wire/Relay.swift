// RELAY (7): an anchor forwards a Whalescale datagram it cannot read.
//
//   0        1                 4                                   12
//  +--------+-----------------+-----------------------------------+
//  | type=7 |  reserved (0)   |        member id (8 bytes)        |
//  +--------+-----------------+-----------------------------------+
//  | inner: one whole Whalescale datagram (HANDSHAKE_INIT/RESP,     |
//  | COOKIE_REPLY or DATA), still encrypted end to end              |
//  +----------------------------------------------------------------+
//
// Header 12 bytes (the tunnel MTU budgets 16 for it). The outer header is not
// encrypted; the inner datagram is exactly what would have been sent directly.
//
// The member id names the *other* end, and the anchor rewrites it:
//   sender -> anchor   id = the target member; the anchor forwards only if the
//                      outer source is the current endpoint of an authenticated
//                      member session and the target is a member with a
//                      current endpoint (never an open relay), within the
//                      sender's byte budget;
//   anchor -> target   id = the source member, so the target knows whose
//                      session the inner packet belongs to before it opens it
//                      (and can check that the inner packet authenticates as
//                      that member).
// The anchor rewrites 8 bytes in place and forwards: no copy, no decryption.
//
// Member id = the first 8 bytes of BLAKE2b-256(member's Ed25519 public key).
// 64 bits name a member among the few hundred of a network with no practical
// chance of collision; it is a routing label, not a secret and not an
// authenticator (the inner packet authenticates itself).

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
    public static let headerSize = 12
    /// The smallest inner datagram worth relaying: a DATA keepalive.
    public static let minimumInnerSize = DataMessage.minimumSize
    public static let minimumSize = headerSize + minimumInnerSize

    /// The member id of a RELAY of `length` bytes at the start of `buffer`; nil
    /// when too short, too long for the buffer, not type 7, non-zero reserved
    /// bytes, or an inner type that is not a session message (1...4).
    @inlinable
    public static func parseHeader(_ buffer: UnsafeRawBufferPointer, length: Int) -> MemberID? {
        guard length >= minimumSize, length <= buffer.count else { return nil }
        guard buffer.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian == UInt32(type) else { return nil }
        let inner = buffer[headerSize]
        guard inner >= 1, inner <= 4 else { return nil }
        return MemberID(rawValue: buffer.loadUnaligned(fromByteOffset: 4, as: UInt64.self).littleEndian)
    }

    /// Writes the 12-byte header at `buffer[offset ..< offset + 12]`; false when it does not fit.
    @inlinable
    @discardableResult
    public static func writeHeader(_ id: MemberID, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Bool {
        guard offset >= 0, offset <= buffer.count - headerSize else { return false }
        buffer.storeBytes(of: UInt32(type).littleEndian, toByteOffset: offset, as: UInt32.self)
        buffer.storeBytes(of: id.rawValue.littleEndian, toByteOffset: offset + 4, as: UInt64.self)
        return true
    }

    /// Rewrites the member id of a parsed RELAY in place (the anchor's step).
    @inlinable
    public static func rewrite(_ id: MemberID, in buffer: UnsafeMutableRawBufferPointer) {
        buffer.storeBytes(of: id.rawValue.littleEndian, toByteOffset: 4, as: UInt64.self)
    }

    /// A new datagram: header + a copy of `inner` (for control-path messages
    /// that are not in a caller's buffer).
    public static func wrap(_ inner: [UInt8], for id: MemberID) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: headerSize)
        out.reserveCapacity(headerSize + inner.count)
        out.withUnsafeMutableBytes { _ = writeHeader(id, into: $0, at: 0) }
        out += inner
        return out
    }
}
