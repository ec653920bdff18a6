// Handshake family: HANDSHAKE_INIT (1), HANDSHAKE_RESP (2), COOKIE_REPLY (3).
// WireGuard's shapes, over Noise_IK_25519_ChaChaPoly_BLAKE2b (Crypto/Handshake.swift).
// All integers little-endian; reserved bytes are zero (a non-zero one is refused).
//
// HANDSHAKE_INIT, 180 bytes
//   0        1        2        4                         8
//  +--------+--------+--------+-------------------------+
//  | type=1 | offer  | res (0)|  sender_index (u32 LE)  |
//  +--------+--------+--------+-------------------------+
//    1         offer               1   the initiator's cipher offer: bit 0 = AES-256-GCM; other bits
//                                      are carried (and authenticated) but mean nothing yet. 0: ChaCha only.
//    8 ..  40  ephemeral           32   Noise token e (clear X25519 public key)
//   40 ..  88  encrypted static    48   token s: initiator's X25519 static + tag
//   88 .. 148  encrypted payload   60   timestamp (12, TAI64N) || initiator's Ed25519 public key (32) + tag
//  148 .. 164  mac1                16   BLAKE2b-128(key = BLAKE2b-256("mac1----" || receiver's X25519 static), bytes 0..<148)
//  164 .. 180  mac2                16   BLAKE2b-128(key = cookie, bytes 0..<164), or zeros without a fresh cookie
//
//   Why the Ed25519 key rides in the payload: members are named by Ed25519 keys,
//   and X25519 → Ed25519 has no libsodium conversion (it loses a sign bit). The
//   responder checks that the carried key converts to the authenticated static,
//   so it is bound to the Noise transcript as firmly as s itself; and encrypted,
//   it keeps the initiator's identity hidden from observers as s does.
//
// HANDSHAKE_RESP, 92 bytes
//   0        1        2        4                         8                           12
//  +--------+--------+--------+-------------------------+---------------------------+
//  | type=2 | choice | res (0)|  sender_index (u32 LE)  | receiver_index (u32 LE)   |
//  +--------+--------+--------+-------------------------+---------------------------+
//    1         choice              1   the responder's cipher for the session: 0 ChaCha20-Poly1305,
//                                      1 AES-256-GCM; any other value is refused (nil)
//   12 ..  44  ephemeral           32   Noise token e
//   44 ..  60  encrypted empty     16   the empty payload's tag
//   60 ..  76  mac1                16   as above, keyed by the initiator's X25519 static, bytes 0..<60
//   76 ..  92  mac2                16   as above, bytes 0..<76
//
// COOKIE_REPLY, 64 bytes
//   0        1                 4                         8
//  +--------+-----------------+-------------------------+
//  | type=3 |  reserved (0)   | receiver_index (u32 LE) |
//  +--------+-----------------+-------------------------+
//    8 ..  32  nonce               24   random
//   32 ..  64  encrypted cookie    32   XChaCha20-Poly1305(key = BLAKE2b-256("cookie--" || sender's X25519 static),
//                                       nonce, AD = mac1 of the message answered, cookie (16)) + tag
//
// sender_index is the index the sender of the message chose for this handshake;
// receiver_index echoes the peer's. A COOKIE_REPLY answers a message and names
// that message's sender_index. Indices are not covered by Noise, only by mac1,
// which anyone knowing the receiver's public key can compute: they route, they
// do not authenticate.
//
// Both cipher bytes are authenticated: Crypto/Handshake.swift mixes them into the
// Noise transcript whenever the offer is non-zero (a flipped bit fails the
// handshake). An offer of 0 leaves the transcript exactly as before negotiation
// existed, so a peer that sends zeros gets ChaCha20-Poly1305.
//
// Parsing is exact: a message of another length or type, with non-zero bytes 2..<4,
// or a RESP choice other than 0 or 1, is nil. The length check comes before every read.

import Support

/// Layout shared by the two messages that carry mac1/mac2 (INIT and RESP): the
/// macs are always the last 32 bytes.
public enum HandshakeMACs {
    public static let macLength = 16
    /// Both macs.
    public static let trailerLength = 32

    /// Offset of mac1 in `message` if it is a well-formed-length INIT or RESP, else nil.
    public static func mac1Offset(_ message: [UInt8]) -> Int? {
        guard let type = MessageType(datagram: message) else { return nil }
        switch type {
        case .handshakeInit where message.count == HandshakeInitiationMessage.size: return HandshakeInitiationMessage.mac1Offset
        case .handshakeResp where message.count == HandshakeResponseMessage.size: return HandshakeResponseMessage.mac1Offset
        default: return nil
        }
    }
}

/// HANDSHAKE_INIT (layout above).
public struct HandshakeInitiationMessage: Equatable, Sendable {
    public static let size = 180
    /// e (32) + enc(s) (48) + enc(payload) (60).
    public static let noiseSize = 140
    /// The plaintext payload: timestamp (12) + Ed25519 public key (32).
    public static let payloadSize = 44
    public static let noiseOffset = 8
    public static let mac1Offset = 148
    public static let mac2Offset = 164

    /// Byte 1: the initiator's offer (bit 0: AES-256-GCM, bit 1: DATA header flags). 0 for neither.
    public var cipherOffer: UInt8
    public var senderIndex: UInt32
    /// Noise message 1: e || enc(s) || enc(payload).
    public var noise: [UInt8]
    public var mac1: [UInt8]
    public var mac2: [UInt8]

    /// For building a message from our own parts: the sizes are the layout's
    /// (`noise` 140 bytes, macs 16), and a wrong one is the caller's bug. Bytes from
    /// the network go through `init?(bytes:)`.
    public init(senderIndex: UInt32, noise: [UInt8], cipherOffer: UInt8 = 0,
                mac1: [UInt8] = [UInt8](repeating: 0, count: 16), mac2: [UInt8] = [UInt8](repeating: 0, count: 16)) {
        precondition(noise.count == Self.noiseSize && mac1.count == 16 && mac2.count == 16, "HANDSHAKE_INIT part sizes")
        self.cipherOffer = cipherOffer
        self.senderIndex = senderIndex
        self.noise = noise
        self.mac1 = mac1
        self.mac2 = mac2
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.size, bytes[0] == MessageType.handshakeInit.rawValue, bytes[2] == 0, bytes[3] == 0 else {
            return nil
        }
        cipherOffer = bytes[1]
        senderIndex = wireLoad32(bytes, at: 4)
        noise = Array(bytes[Self.noiseOffset..<Self.mac1Offset])
        mac1 = Array(bytes[Self.mac1Offset..<Self.mac2Offset])
        mac2 = Array(bytes[Self.mac2Offset..<Self.size])
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = [MessageType.handshakeInit.rawValue, cipherOffer, 0, 0]
        out.reserveCapacity(Self.size)
        wireAppend32(&out, senderIndex)
        out += noise
        out += mac1
        out += mac2
        return out
    }
}

/// HANDSHAKE_RESP (layout above).
public struct HandshakeResponseMessage: Equatable, Sendable {
    public static let size = 92
    /// e (32) + enc(empty) (16).
    public static let noiseSize = 48
    public static let noiseOffset = 12
    public static let mac1Offset = 60
    public static let mac2Offset = 76

    /// The largest choice byte a RESP may carry (bit 0: AES-256-GCM, bit 1: DATA header flags).
    public static let maxCipherChoice: UInt8 = 3

    /// Byte 1: the responder's choice: bit 0 the cipher (0 ChaCha20-Poly1305, 1 AES-256-GCM),
    /// bit 1 DATA header flags (only when offered).
    public var cipherChoice: UInt8
    public var senderIndex: UInt32
    public var receiverIndex: UInt32
    /// Noise message 2: e || enc(empty payload).
    public var noise: [UInt8]
    public var mac1: [UInt8]
    public var mac2: [UInt8]

    /// For building a message from our own parts (`noise` 48 bytes, macs 16);
    /// a wrong size is the caller's bug. Bytes from the network go through `init?(bytes:)`.
    public init(senderIndex: UInt32, receiverIndex: UInt32, noise: [UInt8], cipherChoice: UInt8 = 0,
                mac1: [UInt8] = [UInt8](repeating: 0, count: 16), mac2: [UInt8] = [UInt8](repeating: 0, count: 16)) {
        precondition(noise.count == Self.noiseSize && mac1.count == 16 && mac2.count == 16, "HANDSHAKE_RESP part sizes")
        precondition(cipherChoice <= Self.maxCipherChoice, "HANDSHAKE_RESP cipher choice")
        self.cipherChoice = cipherChoice
        self.senderIndex = senderIndex
        self.receiverIndex = receiverIndex
        self.noise = noise
        self.mac1 = mac1
        self.mac2 = mac2
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.size, bytes[0] == MessageType.handshakeResp.rawValue, bytes[1] <= Self.maxCipherChoice,
              bytes[2] == 0, bytes[3] == 0 else { return nil }
        cipherChoice = bytes[1]
        senderIndex = wireLoad32(bytes, at: 4)
        receiverIndex = wireLoad32(bytes, at: 8)
        noise = Array(bytes[Self.noiseOffset..<Self.mac1Offset])
        mac1 = Array(bytes[Self.mac1Offset..<Self.mac2Offset])
        mac2 = Array(bytes[Self.mac2Offset..<Self.size])
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = [MessageType.handshakeResp.rawValue, cipherChoice, 0, 0]
        out.reserveCapacity(Self.size)
        wireAppend32(&out, senderIndex)
        wireAppend32(&out, receiverIndex)
        out += noise
        out += mac1
        out += mac2
        return out
    }
}

/// COOKIE_REPLY (layout above).
public struct CookieReplyMessage: Equatable, Sendable {
    public static let size = 64
    public static let nonceSize = 24
    /// cookie (16) + tag (16).
    public static let encryptedCookieSize = 32
    public static let nonceOffset = 8
    public static let encryptedCookieOffset = 32

    public var receiverIndex: UInt32
    public var nonce: [UInt8]
    public var encryptedCookie: [UInt8]

    /// For building a message from our own parts (nonce 24 bytes, encrypted cookie 32);
    /// a wrong size is the caller's bug. Bytes from the network go through `init?(bytes:)`.
    public init(receiverIndex: UInt32, nonce: [UInt8], encryptedCookie: [UInt8]) {
        precondition(nonce.count == Self.nonceSize && encryptedCookie.count == Self.encryptedCookieSize, "COOKIE_REPLY part sizes")
        self.receiverIndex = receiverIndex
        self.nonce = nonce
        self.encryptedCookie = encryptedCookie
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.size, wireTypeWord(bytes) == UInt32(MessageType.cookieReply.rawValue) else { return nil }
        receiverIndex = wireLoad32(bytes, at: 4)
        nonce = Array(bytes[Self.nonceOffset..<Self.encryptedCookieOffset])
        encryptedCookie = Array(bytes[Self.encryptedCookieOffset..<Self.size])
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = [MessageType.cookieReply.rawValue, 0, 0, 0]
        out.reserveCapacity(Self.size)
        wireAppend32(&out, receiverIndex)
        out += nonce
        out += encryptedCookie
        return out
    }
}

// MARK: - Little-endian helpers (callers have checked the length)
//
// Public: the session layer (Protocol/Tunnels.swift) reads indices of messages
// whose size it checked with these too, rather than with byte helpers of its own.

/// Bytes 0..<4 as one LE word: the type with its three reserved zero bytes
/// (equal to the type byte exactly when the reserved bytes are zero).
public func wireTypeWord(_ bytes: [UInt8]) -> UInt32 { wireLoad32(bytes, at: 0) }

/// Bytes `offset ..< offset + 4` as one LE word (a sender or receiver index).
public func wireLoad32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
    UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
}

private func wireAppend32(_ out: inout [UInt8], _ value: UInt32) {
    out += [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8),
            UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 24)]
}
