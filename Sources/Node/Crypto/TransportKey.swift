// The data-path AEAD, in place, no allocation: ChaCha20-Poly1305 (IETF), or
// AES-256-GCM when the session negotiated it (Handshake.swift; both ends have AES-NI).
//
// A DATA packet's buffer, as the engine lays it out (header room first, so the
// ciphertext is written over the plaintext and the tag right after it):
//
//     buffer ─┬─ plaintext[0 ..< length] ─────────┬─ tag (16) ─┐
//             │  seal: encrypted in place          │  written    │
//             │  open: decrypted in place          │  checked    │
//
// Nonce: 4 zero bytes || counter as 64-bit integer, little-endian for ChaChaPoly
// (Noise §12.3), BIG-endian for AESGCM (Noise §12.4). No associated data: the DATA
// header (receiver index, counter) is authenticated implicitly, because the
// receiver decrypts with the key that index names and the nonce that counter gives.
//
// Nonce discipline is the session's: a counter must never be reused with one
// key, and Noise reserves 2^64-1 (the session rekeys long before either matters).
//
// Why the ChaCha key is four UInt64s and not [UInt8]: an Array is a heap object, and
// its retain/release per packet costs more than the cipher on small packets.
// The price is that copies of this struct cannot be wiped; TransportKey lives
// as long as its session and is replaced, not erased, on rekey.
//
// AES-GCM: libsodium's expanded key (crypto_aead_aes256gcm_beforenm: round keys
// and GHASH powers, 512 bytes, 16-byte aligned) is computed once per keypair, when
// the handshake completes, into one allocation owned by `AESGCMContext` (wiped and
// freed with the last copy of the key). The packet path reads it through a plain
// pointer kept beside the owner, so sealing touches no reference count, and calls
// the *_afternm functions: no key schedule per packet. (Checked in the release
// build: `seal`/`open` call no swift_retain, and SessionShard's send and receive
// paths have the same retain/release calls as with the ChaCha-only key; the
// allocation tests count 0 mallocs per packet under both ciphers.)
//
//     TransportKey ──┬─ key (4 x UInt64)      ChaCha20-Poly1305 key; relay-tag key source
//                    ├─ cipher                .chachaPoly / .aesGCM (branch per packet)
//                    ├─ aesState (pointer) ──> crypto_aead_aes256gcm_state (512 B, aligned 16)
//                    └─ aesOwner (class)   ──┘ keeps it alive, sodium_memzero + free in deinit

import Support
import Wire
import CSodium

/// Owner of one keypair direction's AES-256-GCM precomputed state. Immutable after
/// init (libsodium only reads it), hence safe to share across reactors.
final class AESGCMContext: @unchecked Sendable {
    let state: UnsafeMutablePointer<crypto_aead_aes256gcm_state>
    private let size: Int

    /// Nil when this CPU has no AES-GCM in libsodium.
    init?(key: UnsafeRawBufferPointer) {
        guard Sodium.aesGCMAvailable, key.count == 32 else { return nil }
        size = crypto_aead_aes256gcm_statebytes()
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(size, MemoryLayout<crypto_aead_aes256gcm_state>.size),
                                                   alignment: max(16, MemoryLayout<crypto_aead_aes256gcm_state>.alignment))
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        state = raw.bindMemory(to: crypto_aead_aes256gcm_state.self, capacity: 1)
        _ = crypto_aead_aes256gcm_beforenm(state, key.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }

    deinit {
        sodium_memzero(state, size)
        state.deallocate()
    }
}

/// One direction's 32-byte transport key and its cipher (ChaCha20-Poly1305 or AES-256-GCM).
/// `@unchecked Sendable`: every stored property is immutable; `aesState` points into
/// memory `aesOwner` owns and nobody writes after init.
public struct TransportKey: @unchecked Sendable {
    public static let tagLength = 16
    private let key: (UInt64, UInt64, UInt64, UInt64)
    /// Which AEAD seals and opens under this key (negotiated per session).
    public let cipher: NoiseCipher
    /// AES-GCM only: the precomputed state, read per packet without a retain.
    private let aesState: UnsafePointer<crypto_aead_aes256gcm_state>?
    /// AES-GCM only: keeps `aesState` alive.
    private let aesOwner: AESGCMContext?
    /// The relay-tag key of this direction (Crypto/RelayTag.swift), derived once per keypair.
    public let relayTagKey: RelayTagKey

    /// `bytes` must be exactly 32 bytes (keys come from the handshake's Split()).
    /// AES-GCM on a CPU without it is the caller's bug (negotiation never picks it).
    public init(bytes: [UInt8], cipher: NoiseCipher = .chachaPoly) {
        precondition(bytes.count == 32, "a transport key is 32 bytes")
        var k: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &k) { $0.copyBytes(from: bytes) }
        self.init(key: k, cipher: cipher)
    }

    init(secret: SecretBytes, cipher: NoiseCipher = .chachaPoly) {
        precondition(secret.count == 32, "a transport key is 32 bytes")
        var k: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        secret.withBytes { s in withUnsafeMutableBytes(of: &k) { $0.copyMemory(from: s) } }
        self.init(key: k, cipher: cipher)
    }

    private init(key k: (UInt64, UInt64, UInt64, UInt64), cipher: NoiseCipher) {
        Sodium.initialize()  // picks the fastest ChaCha20 for this CPU, finds AES-NI
        var k = k
        key = k
        self.cipher = cipher
        relayTagKey = withUnsafeBytes(of: &k) { RelayTagKey(transportKey: $0) }
        if cipher == .aesGCM {
            let owner = withUnsafeBytes(of: &k) { AESGCMContext(key: $0) }
            precondition(owner != nil, "AES-256-GCM transport key on a CPU without AES-NI")
            aesOwner = owner
            aesState = owner.map { UnsafePointer($0.state) }
        } else {
            aesOwner = nil
            aesState = nil
        }
    }

    /// Encrypts buffer[0..<length] in place and writes the 16-byte tag at buffer[length..<length+16].
    /// Nonce is Noise's for the cipher: 32 zero bits || counter (64-bit LE for ChaChaPoly, BE for AESGCM),
    /// except that `flags` (DATA header flags, in a session that negotiated them) fill the
    /// first 32 bits as a little-endian word: the flags are authenticated at no cost, and a
    /// nonce is still never reused (the counter alone never is). No AD.
    /// `source`: the plaintext is read from there instead (`length` bytes, not overlapping
    /// `buffer`), and only the ciphertext and tag are written to `buffer`.
    public func seal(counter: UInt64, buffer: UnsafeMutableRawPointer, length: Int, flags: UInt8 = 0,
                     source: UnsafeRawPointer? = nil) {
        precondition(length >= 0)
        let bytes = buffer.assumingMemoryBound(to: UInt8.self)
        let m = source?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(bytes)
        if let aesState {
            let nonce = Sodium.noiseAESGCMNonce(counter, flags: flags)
            withUnsafeBytes(of: nonce) { n in
                // libsodium's AES-NI code reads each block before writing it: c == m is fine.
                _ = crypto_aead_aes256gcm_encrypt_detached_afternm(
                    bytes, bytes + length, nil, m, UInt64(length), nil, 0, nil,
                    n.baseAddress!.assumingMemoryBound(to: UInt8.self), aesState)
            }
            return
        }
        let nonce = Sodium.noiseNonce(counter, flags: flags)
        withUnsafeBytes(of: key) { k in
            withUnsafeBytes(of: nonce) { n in
                // libsodium allows c == m: the stream is XORed, then the MAC taken over the output.
                _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                    bytes, bytes + length, nil, m, UInt64(length), nil, 0, nil,
                    n.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
    }

    /// Decrypts buffer[0..<length] in place (length includes the tag). False if authentication fails.
    /// On failure buffer[0..<length-16] no longer holds the ciphertext (libsodium never hands
    /// out unauthenticated plaintext: it zeroes it), so the packet is gone: drop it, do not
    /// retry it with another key.
    /// `flags`: the DATA header's, which the sender sealed with (see `seal`).
    public func open(counter: UInt64, buffer: UnsafeMutableRawPointer, length: Int, flags: UInt8 = 0) -> Bool {
        guard length >= Self.tagLength else { return false }
        let bytes = buffer.assumingMemoryBound(to: UInt8.self)
        let body = length - Self.tagLength
        if let aesState {
            let nonce = Sodium.noiseAESGCMNonce(counter, flags: flags)
            return withUnsafeBytes(of: nonce) { n in
                crypto_aead_aes256gcm_decrypt_detached_afternm(
                    bytes, nil, bytes, UInt64(body), bytes + body, nil, 0,
                    n.baseAddress!.assumingMemoryBound(to: UInt8.self), aesState) == 0
            }
        }
        let nonce = Sodium.noiseNonce(counter, flags: flags)
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
    /// Both ends negotiated DATA header flags (offer and choice bit 1, Handshake.swift):
    /// header byte 1 may carry `DataMessage.checksumPartial`, and it is sealed into the
    /// nonce (`TransportKey.seal`). False for WireGuard peers and older Whalescale nodes.
    public let headerFlags: Bool

    public init(send: TransportKey, receive: TransportKey, headerFlags: Bool = false) {
        self.send = send
        self.receive = receive
        self.headerFlags = headerFlags
    }

    /// The same keys, with header flags as negotiated.
    public func with(headerFlags: Bool) -> TransportKeys {
        TransportKeys(send: send, receive: receive, headerFlags: headerFlags)
    }

    /// The session's cipher (both directions use the one negotiated).
    public var cipher: NoiseCipher { send.cipher }
}
