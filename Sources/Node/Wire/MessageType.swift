// The first byte of every Whalescale datagram names its message family.
//
//   0        1        2        3        4
//  +--------+--------+--------+--------+---- ...
//  |  type  |     reserved (0, 0, 0)   | family-specific
//  +--------+--------+--------+--------+---- ...
//
// Every family keeps bytes 1..<4 reserved and zero, so the first four bytes read
// as one little-endian word equal the type (as in WireGuard); a receiver drops a
// datagram whose reserved bytes are not zero. One exception: byte 1 of
// Whalescale's HANDSHAKE_INIT and HANDSHAKE_RESP carries the cipher offer and
// choice (HandshakeMessages.swift, docs/wire.md). Layouts live one file per family:
// HandshakeMessages.swift (1, 2, 3), DataMessage.swift (4), the path probe (5, 6)
// and relay (7) files.

import Support

/// The type byte at offset 0 of every datagram.
public enum MessageType: UInt8, Sendable, CaseIterable {
    /// Noise_IK message 1 (HandshakeMessages.swift).
    case handshakeInit = 1
    /// Noise_IK message 2 (HandshakeMessages.swift).
    case handshakeResp = 2
    /// Answer to a handshake message under load, carrying an encrypted cookie (HandshakeMessages.swift).
    case cookieReply = 3
    /// An encrypted session packet (DataMessage.swift).
    case data = 4
    /// Unencrypted "who is there, and how do you see me?".
    case pathProbe = 5
    /// Echo of a probe's transaction id with the observed source address.
    case pathProbeReply = 6
    /// An anchor-forwarded packet whose inner payload stays encrypted end to end.
    case relay = 7

    /// The type of a datagram from its first byte; nil when empty or unknown.
    /// (Reserved bytes are each family's parser's to check.)
    public init?(datagram: UnsafeRawBufferPointer) {
        guard let first = datagram.first else { return nil }
        self.init(rawValue: first)
    }

    public init?(datagram: [UInt8]) {
        guard let first = datagram.first else { return nil }
        self.init(rawValue: first)
    }
}
