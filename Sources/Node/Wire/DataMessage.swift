// DATA: one encrypted packet of a session.
//
//   0        1        2        3        4                                 8
//  +--------+--------+--------+--------+--------+--------+--------+--------+
//  | type=4 | flags  |  reserved (0)   |      receiver_index (u32 LE)      |
//  +--------+--------+--------+--------+--------+--------+--------+--------+
//  |                          counter (u64 LE)                             |  8..16
//  +-----------------------------------------------------------------------+
//  |  ciphertext: payload (0..n bytes) encrypted in place, ChaCha20-Poly1305 |
//  |  with the counter as nonce, followed by the 16-byte Poly1305 tag       |
//  +-----------------------------------------------------------------------+
//
// Header 16 bytes, tag 16 bytes: overhead 32, minimum message 32 (an empty
// payload is a keepalive). `receiver_index` is the index the *receiver* chose
// for this keypair during the handshake, so the receiver finds the key with one
// table lookup. The counter is the AEAD nonce, the replay-window index and (for
// multipath) the reorder sequence at once; it is never reused under one key.
//
// Parsing and serializing work on a caller-owned buffer (the engine's slab) and
// never copy the payload: the header is written into header room in front of
// the payload, and the session seals/opens the payload in place behind it.
// Every read is preceded by a length check; reserved bytes must be zero (as
// wireguard-go reads the first four bytes as one little-endian type word).
//
// flags (byte 1) is 0 unless the session negotiated header flags in its
// handshake (Crypto/Handshake.swift, offer bit 1; docs/wire.md): then the
// flags byte fills the first 32 bits of the AEAD nonce (otherwise zero:
// Crypto/TransportKey.swift), so a flag changed in flight fails
// authentication, and bit 0 (`checksumPartial`) says that the inner packet's
// TCP or UDP checksum field holds only the pseudo-header sum, as a packet
// handed to a NIC with CHECKSUM_PARTIAL does: the receiver writes it to its
// TUN with NEEDS_CSUM instead of verifying it (Engine/DataPath.swift). A
// session that did not negotiate them refuses any flag.

import Support

/// Layout constants and header parse/serialize for DATA messages.
public enum DataMessage {
    /// Message type byte (matches Crypto's `MessageType.data`).
    public static let type: UInt8 = 4
    /// type + reserved + receiver_index + counter.
    public static let headerSize = 16
    /// Poly1305 tag appended to the ciphertext.
    public static let tagSize = 16
    /// Bytes a DATA message adds around its payload.
    public static let overhead = headerSize + tagSize
    /// The shortest valid DATA message: a keepalive (empty payload).
    public static let minimumSize = overhead

    /// Flag bit 0 (byte 1): the inner packet's transport checksum is partial (see above).
    public static let checksumPartial: UInt8 = 1
    /// The flags this version knows; a header with any other bit set is not parsed.
    public static let knownFlags: UInt8 = checksumPartial

    /// Byte offsets within the header.
    static let receiverIndexOffset = 4
    static let counterOffset = 8

    /// The parsed fixed header.
    public struct Header: Equatable, Sendable {
        public var receiverIndex: UInt32
        public var counter: UInt64
        /// Byte 1: 0, or `checksumPartial` in a session that negotiated header flags.
        public var flags: UInt8
        public init(receiverIndex: UInt32, counter: UInt64, flags: UInt8 = 0) {
            self.receiverIndex = receiverIndex
            self.counter = counter
            self.flags = flags
        }
    }

    /// Parses the header of a DATA message of `length` bytes at the start of
    /// `buffer`. Nil when the message is shorter than a keepalive, longer than the
    /// buffer, not a DATA message, or has non-zero reserved bytes or an unknown flag.
    /// Whether its session allows flags at all is the session's to check.
    @inlinable
    public static func parseHeader(_ buffer: UnsafeRawBufferPointer, length: Int) -> Header? {
        guard length >= minimumSize, length <= buffer.count else { return nil }
        // The first four bytes as one LE word: type 4, known flags, zero reserved bytes.
        let word = buffer.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian
        guard word & 0xffff_00ff == UInt32(type) else { return nil }
        let flags = UInt8(truncatingIfNeeded: word >> 8)
        guard flags & ~knownFlags == 0 else { return nil }
        let index = buffer.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        let counter = buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
        return Header(receiverIndex: index, counter: counter, flags: flags)
    }

    /// The flags of the DATA header in front of a payload that was opened in place
    /// behind it (`payload` = header + 16): the engine reads them after the session
    /// authenticated the message, so they are the sender's.
    @inlinable
    public static func flags(ofPayloadAt payload: UnsafeRawPointer) -> UInt8 {
        (payload - headerSize).load(fromByteOffset: 1, as: UInt8.self)
    }

    /// Writes the 16-byte header at `buffer[offset..<offset+16]`. False (nothing
    /// written) when that range does not fit in the buffer.
    @inlinable
    @discardableResult
    public static func writeHeader(_ header: Header, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Bool {
        guard offset >= 0, offset <= buffer.count - headerSize, let base = buffer.baseAddress else { return false }
        writeHeader(header, at: base + offset)
        return true
    }

    /// Writes the 16-byte header at `at`, which the caller knows has room for it
    /// (the send path: the slot's header room in front of the payload).
    @inlinable
    public static func writeHeader(_ header: Header, at p: UnsafeMutableRawPointer) {
        p.storeBytes(of: (UInt32(type) | UInt32(header.flags) << 8).littleEndian, as: UInt32.self)
        p.storeBytes(of: header.receiverIndex.littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: header.counter.littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Payload length of a DATA message of `length` bytes (nil if too short).
    @inlinable
    public static func payloadLength(messageLength length: Int) -> Int? {
        length >= minimumSize ? length - overhead : nil
    }
}
