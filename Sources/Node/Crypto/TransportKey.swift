// The data-path AEAD: ChaCha20-Poly1305 (IETF) in place, no allocation.
//
// A DATA packet's buffer, as the engine lays it out (header room first, so the
// ciphertext is written over the plaintext and the tag right after it):
//
//     buffer ─┬─ plaintext[0 ..< length] ─────────┬─ tag (16) ─┐
//             │  seal: encrypted in place          │  written    │
//             │  open: decrypted in place          │  checked    │
//
// Nonce (Noise §5.1 / §12.3, ChaChaPoly): 4 zero bytes || counter as 64-bit
// little-endian. No associated data: the DATA header (receiver index, counter)
// is authenticated implicitly, because the receiver decrypts with the key that
// index names and the nonce that counter gives.
//
// Nonce discipline is the session's: a counter must never be reused with one
// key, and Noise reserves 2^64-1 (the session rekeys long before either matters).
//
// Why the key is four UInt64s and not [UInt8]: an Array is a heap object, and
// its retain/release per packet costs more than the cipher on small packets.
// The price is that copies of this struct cannot be wiped; TransportKey lives
// as long as its session and is replaced, not erased, on rekey.

import Support
import Wire
import CSodium

/// One direction's 32-byte ChaCha20-Poly1305 key, stored inline.
public struct TransportKey: Sendable {
    public static let tagLength = 16
    private let key: (UInt64, UInt64, UInt64, UInt64)
    /// The relay-tag key of this direction (Crypto/RelayTag.swift), derived once per keypair.
    public let relayTagKey: RelayTagKey

    /// `bytes` must be exactly 32 bytes (keys come from the handshake's Split()).
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "a transport key is 32 bytes")
        Sodium.initialize()  // picks the fastest ChaCha20 for this CPU
        var k: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &k) { $0.copyBytes(from: bytes) }
        key = k
        relayTagKey = withUnsafeBytes(of: &k) { RelayTagKey(transportKey: $0) }
    }

    init(secret: SecretBytes) {
        precondition(secret.count == 32, "a transport key is 32 bytes")
        Sodium.initialize()
        var k: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        secret.withBytes { s in withUnsafeMutableBytes(of: &k) { $0.copyMemory(from: s) } }
        key = k
        relayTagKey = withUnsafeBytes(of: &k) { RelayTagKey(transportKey: $0) }
    }

    /// Encrypts buffer[0..<length] in place and writes the 16-byte tag at buffer[length..<length+16].
    /// Nonce is Noise's ChaChaPoly nonce: 32 zero bits || counter as 64-bit little-endian. No AD.
    public func seal(counter: UInt64, buffer: UnsafeMutableRawPointer, length: Int) {
        precondition(length >= 0)
        let bytes = buffer.assumingMemoryBound(to: UInt8.self)
        let nonce = Sodium.noiseNonce(counter)
        withUnsafeBytes(of: key) { k in
            withUnsafeBytes(of: nonce) { n in
                // libsodium allows c == m: the stream is XORed, then the MAC taken over the output.
                _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                    bytes, bytes + length, nil, bytes, UInt64(length), nil, 0, nil,
                    n.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
    }

    /// Decrypts buffer[0..<length] in place (length includes the tag). False if authentication fails.
    /// On failure libsodium zeroes buffer[0..<length-16] (it checks the tag first and never hands
    /// out unauthenticated plaintext), so the packet is gone: drop it, do not retry it with another key.
    public func open(counter: UInt64, buffer: UnsafeMutableRawPointer, length: Int) -> Bool {
        guard length >= Self.tagLength else { return false }
        let bytes = buffer.assumingMemoryBound(to: UInt8.self)
        let body = length - Self.tagLength
        let nonce = Sodium.noiseNonce(counter)
        return withUnsafeBytes(of: key) { k in
            withUnsafeBytes(of: nonce) { n in
                crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                    bytes, nil, bytes, UInt64(body), bytes + body, nil, 0,
                    n.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 0
            }
        }
    }
}

/// The two keys of an established session, named from this side's point of view.
public struct TransportKeys: Sendable {
    public let send: TransportKey
    public let receive: TransportKey

    public init(send: TransportKey, receive: TransportKey) {
        self.send = send
        self.receive = receive
    }
}
