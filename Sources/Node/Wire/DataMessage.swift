// DATA: one encrypted packet of a session.
//
//   0        1        2        3        4                                 8
//  +--------+--------+--------+--------+--------+--------+--------+--------+
//  | type=4 |        reserved (0)      |      receiver_index (u32 LE)      |
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

    /// Byte offsets within the header.
    static let receiverIndexOffset = 4
    static let counterOffset = 8

    /// The parsed fixed header.
    public struct Header: Equatable, Sendable {
        public var receiverIndex: UInt32
        public var counter: UInt64
        public init(receiverIndex: UInt32, counter: UInt64) {
            self.receiverIndex = receiverIndex
            self.counter = counter
        }
    }

    /// Parses the header of a DATA message of `length` bytes at the start of
    /// `buffer`. Nil when the message is shorter than a keepalive, longer than the
    /// buffer, not a DATA message, or has non-zero reserved bytes.
    @inlinable
    public static func parseHeader(_ buffer: UnsafeRawBufferPointer, length: Int) -> Header? {
        guard length >= minimumSize, length <= buffer.count else { return nil }
        // The first four bytes as one LE word: type 4 with zero reserved bytes.
        guard buffer.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian == UInt32(type) else { return nil }
        let index = buffer.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        let counter = buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
        return Header(receiverIndex: index, counter: counter)
    }

    /// Writes the 16-byte header at `buffer[offset..<offset+16]`. False (nothing
    /// written) when that range does not fit in the buffer.
    @inlinable
    @discardableResult
    public static func writeHeader(_ header: Header, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Bool {
        guard offset >= 0, offset <= buffer.count - headerSize else { return false }
        buffer.storeBytes(of: UInt32(type).littleEndian, toByteOffset: offset, as: UInt32.self)
        buffer.storeBytes(of: header.receiverIndex.littleEndian, toByteOffset: offset + 4, as: UInt32.self)
        buffer.storeBytes(of: header.counter.littleEndian, toByteOffset: offset + 8, as: UInt64.self)
        return true
    }

    /// Payload length of a DATA message of `length` bytes (nil if too short).
    @inlinable
    public static func payloadLength(messageLength length: Int) -> Int? {
        length >= minimumSize ? length - overhead : nil
    }
}
