// WireGuard's handshake initiation (whitepaper §5.4.2), 148 bytes: the one
// WireGuard message whose length differs from Whalescale's (HANDSHAKE_INIT is
// 180 there, because it carries the Ed25519 key). WireGuard's response (92) and
// cookie reply (64) have exactly the layouts of HandshakeMessages.swift, and its
// transport message exactly DataMessage.swift's; those types serve both suites.
// All integers little-endian; the reserved bytes are zero (a non-zero one is refused).
//
// HANDSHAKE_INIT (WireGuard), 148 bytes
//   0        1                 4                         8
//  +--------+-----------------+-------------------------+
//  | type=1 |  reserved (0)   |  sender_index (u32 LE)  |
//  +--------+-----------------+-------------------------+
//    8 ..  40  unencrypted_ephemeral   32   Noise token e
//   40 ..  88  encrypted_static        48   token s: initiator's X25519 static + tag
//   88 .. 116  encrypted_timestamp     28   TAI64N (12) + tag
//  116 .. 132  mac1                    16   BLAKE2s-128(key = BLAKE2s-256("mac1----" || responder's static), bytes 0..<116)
//  132 .. 148  mac2                    16   BLAKE2s-128(key = cookie, bytes 0..<132), or zeros without a fresh cookie

import Support

/// WireGuard's HANDSHAKE_INIT (layout above).
public struct WireGuardInitiationMessage: Equatable, Sendable {
    public static let size = 148
    /// e (32) + enc(s) (48) + enc(timestamp) (28).
    public static let noiseSize = 108
    public static let noiseOffset = 8
    public static let mac1Offset = 116
    public static let mac2Offset = 132

    public var senderIndex: UInt32
    /// Noise message 1: e || enc(s) || enc(timestamp).
    public var noise: [UInt8]
    public var mac1: [UInt8]
    public var mac2: [UInt8]

    /// From our own parts (`noise` 108 bytes, macs 16); a wrong size is the caller's bug.
    public init(senderIndex: UInt32, noise: [UInt8],
                mac1: [UInt8] = [UInt8](repeating: 0, count: 16), mac2: [UInt8] = [UInt8](repeating: 0, count: 16)) {
        precondition(noise.count == Self.noiseSize && mac1.count == 16 && mac2.count == 16, "WireGuard INIT part sizes")
        self.senderIndex = senderIndex
        self.noise = noise
        self.mac1 = mac1
        self.mac2 = mac2
    }

    /// Nil unless exactly 148 bytes with type word 1.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.size, wireTypeWord(bytes) == UInt32(MessageType.handshakeInit.rawValue) else { return nil }
        senderIndex = wireLoad32(bytes, at: 4)
        noise = Array(bytes[Self.noiseOffset..<Self.mac1Offset])
        mac1 = Array(bytes[Self.mac1Offset..<Self.mac2Offset])
        mac2 = Array(bytes[Self.mac2Offset..<Self.size])
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = [MessageType.handshakeInit.rawValue, 0, 0, 0]
        out.reserveCapacity(Self.size)
        out += [UInt8(truncatingIfNeeded: senderIndex), UInt8(truncatingIfNeeded: senderIndex >> 8),
                UInt8(truncatingIfNeeded: senderIndex >> 16), UInt8(truncatingIfNeeded: senderIndex >> 24)]
        out += noise
        out += mac1
        out += mac2
        return out
    }
}
