// The only door to libsodium.
//
// Everything cryptographic in Whalescale goes through the thin wrappers in this
// file (and the data-path AEAD in TransportKey.swift, which calls libsodium
// directly so it can work in place). No primitive is written here: X25519,
// Ed25519, ChaCha20-Poly1305, AES-256-GCM, XChaCha20-Poly1305, BLAKE2b and the random
// generator all come from libsodium. What is ours is the glue: HMAC and HKDF
// over BLAKE2b exactly as the Noise spec (§4.3) defines them, and the storage
// of secrets so that they are wiped when no longer referenced.
//
// Ownership of key material:
//
//     SecretKey / Identity / Noise state ──> SecretBytes (heap, immutable) ──deinit──> sodium_memzero
//     temporaries (HMAC pads, hash state) ──> wiped before their function returns
//
// Public values (public keys, handshake hashes, ciphertexts) stay in [UInt8].

import Support
import Wire
import CSodium
import Synchronization

/// Curve operations done by this process, by kind: what a handshake message
/// costs is counted, not estimated (tests assert that a refused initiation
/// stops after the es DH). A relaxed atomic add next to a ~50 µs scalar
/// multiplication costs nothing measurable, so it is counted in every build.
enum CurveOperations {
    /// X25519(private, public): a Noise DH token (es, ss, ee, se).
    static let dh = Atomic<Int>(0)
    /// X25519 with the base point: a key pair generated (Noise's e token).
    static let base = Atomic<Int>(0)
    /// Ed25519 public key -> X25519 (libsodium's main-subgroup check costs about a scalar multiplication).
    static let conversions = Atomic<Int>(0)

    /// The three counts at one moment; subtract two to get what happened in between.
    struct Snapshot: Equatable, CustomStringConvertible {
        var dh = 0, base = 0, conversions = 0
        static func - (a: Snapshot, b: Snapshot) -> Snapshot {
            Snapshot(dh: a.dh - b.dh, base: a.base - b.base, conversions: a.conversions - b.conversions)
        }
        var description: String { "dh \(dh), base \(base), conversions \(conversions)" }
    }

    static var snapshot: Snapshot {
        Snapshot(dh: dh.load(ordering: .relaxed), base: base.load(ordering: .relaxed),
                 conversions: conversions.load(ordering: .relaxed))
    }
}

/// libsodium's one-time setup, and the wrappers the rest of Crypto/ uses.
public enum Sodium {
    /// `sodium_init()` picks the fastest implementations for this CPU and seeds
    /// the random generator. It is itself thread safe; the `static let` makes
    /// later calls a single load (Swift runs a global's initializer once).
    private static let ready: Bool = sodium_init() >= 0

    /// Initializes libsodium. Idempotent and thread safe; every entry point of
    /// Crypto/ that needs randomness or speed calls it, and so may a `main`.
    public static func initialize() {
        // Without a working libsodium there is no randomness and no security:
        // this is the one failure that must stop the process.
        if !ready { fatalError("libsodium failed to initialize (sodium_init() < 0)") }
    }

    /// The linked libsodium's version ("1.0.20"): scripts/libsodium builds it
    /// statically when Debian's (1.0.18, a 2x slower AES-256-GCM) is all there is.
    public static var version: String { String(cString: sodium_version_string()) }

    // MARK: Random, wiping, comparing

    package static func randomBytes(_ count: Int) -> [UInt8] {
        initialize()
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
        return out
    }

    /// 8 random bytes as one integer, without an allocation.
    package static func randomUInt64() -> UInt64 {
        initialize()
        var x: UInt64 = 0
        withUnsafeMutableBytes(of: &x) { randombytes_buf($0.baseAddress!, $0.count) }
        return x
    }

    /// Overwrites the array's storage with zeros (sodium_memzero is not optimised away).
    static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { sodium_memzero(base, raw.count) }
        }
    }

    /// Constant-time equality for MACs and secrets. Different lengths are simply unequal.
    static func constantTimeEqual(_ a: some ByteView, _ b: some ByteView) -> Bool {
        guard a.count == b.count else { return false }
        if a.count == 0 { return true }
        return a.withBytes { pa in b.withBytes { pb in sodium_memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0 } }
    }

    // MARK: Base64 (standard alphabet, padded: the format WireGuard uses for keys)

    static func base64Encode(_ bytes: some ByteView) -> String {
        let variant = Int32(sodium_base64_VARIANT_ORIGINAL)
        let capacity = sodium_base64_encoded_len(bytes.count, variant)  // includes the trailing NUL
        var chars = [CChar](repeating: 0, count: capacity)
        bytes.withBytes { raw in
            _ = chars.withUnsafeMutableBufferPointer { out in
                sodium_bin2base64(out.baseAddress!, capacity, raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count, variant)
            }
        }
        return String(decoding: chars.prefix(capacity - 1).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Decodes standard padded base64 into exactly `count` bytes, after trimming
    /// surrounding whitespace and newlines (a key file usually ends in "\n").
    /// libsodium rejects bad characters, missing padding and non-zero spare bits,
    /// so every key has exactly one accepted spelling.
    static func base64Decode(_ text: String, count: Int) -> SecretBytes? {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return nil }
        var trimmed = Array(String(scalars[first...last]).utf8)
        defer { wipe(&trimmed) }  // the text of a secret key is the secret
        // A padded encoding of `count` bytes is exactly this long; checking first
        // keeps oversize input away from the decoder entirely.
        guard trimmed.count == (count + 2) / 3 * 4 else { return nil }
        var decoded = 0
        let result = SecretBytes.make(count: count) { out in
            trimmed.withUnsafeBufferPointer { b64 in
                b64.withMemoryRebound(to: CChar.self) { b64 in
                    sodium_base642bin(out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count,
                                      b64.baseAddress, b64.count, nil, &decoded, nil,
                                      Int32(sodium_base64_VARIANT_ORIGINAL))
                }
            }
        }
        guard result.status == 0, decoded == count else { return nil }
        return result.value
    }

    // MARK: X25519

    /// X25519 public key for a private scalar (libsodium clamps the scalar).
    static func x25519Base(_ privateKey: SecretBytes) -> [UInt8] {
        CurveOperations.base.wrappingAdd(1, ordering: .relaxed)
        var out = [UInt8](repeating: 0, count: 32)
        _ = privateKey.withBytes { sk in
            out.withUnsafeMutableBytes { crypto_scalarmult_curve25519_base($0.baseAddress!, sk.baseAddress!) }
        }
        return out
    }

    /// X25519(privateKey, publicKey). Nil when the result is all zeros, i.e. the
    /// peer's point has small order: such a key contributes nothing secret, so it
    /// is refused (as WireGuard does; the Noise spec allows it).
    static func x25519(_ privateKey: SecretBytes, _ publicKey: some ByteView) -> SecretBytes? {
        guard privateKey.count == 32, publicKey.count == 32 else { return nil }
        CurveOperations.dh.wrappingAdd(1, ordering: .relaxed)
        let result = SecretBytes.make(count: 32) { out in
            privateKey.withBytes { sk in
                publicKey.withBytes { pk in
                    crypto_scalarmult_curve25519(out.baseAddress!, sk.baseAddress!, pk.baseAddress!)
                }
            }
        }
        return result.status == 0 ? result.value : nil
    }

    // MARK: BLAKE2b

    /// Unkeyed or keyed BLAKE2b of the concatenation of `parts`.
    static func blake2b(outputLength: Int, key: (some ByteView)? = [UInt8]?.none, _ parts: [UInt8]...) -> [UInt8] {
        let hash = Blake2b(outputLength: outputLength, key: key)
        for part in parts { hash.update(part) }
        return hash.finish()
    }

    /// HMAC (RFC 2104) over BLAKE2b with its 128-byte block (`NoiseHash.hmac`, Blake2s.swift).
    static func hmacBlake2b(key: some ByteView, _ parts: [any ByteView]) -> SecretBytes {
        NoiseHash.blake2b.hmac(key: key, parts)
    }

    static let blake2bHashLength = 64
    static let blake2bBlockLength = 128

    // MARK: AEADs used by the handshake (the data path uses TransportKey)

    /// ChaCha20-Poly1305 (IETF) with Noise's nonce: 4 zero bytes || 64-bit little-endian counter.
    static func chachaPolySeal(key: SecretBytes, nonce: UInt64, ad: some ByteView, plaintext: some ByteView) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        let n = noiseNonce(nonce)
        key.withBytes { k in ad.withBytes { a in plaintext.withBytes { p in withUnsafeBytes(of: n) { nb in
            out.withUnsafeMutableBytes { c in
                _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                    c.baseAddress!, nil, p.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(p.count),
                    a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count), nil,
                    nb.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        } } } }
        return out
    }

    static func chachaPolyOpen(key: SecretBytes, nonce: UInt64, ad: some ByteView, ciphertext: some ByteView) -> [UInt8]? {
        guard ciphertext.count >= 16 else { return nil }
        var out = [UInt8](repeating: 0, count: ciphertext.count - 16)
        let n = noiseNonce(nonce)
        let status = key.withBytes { k in ad.withBytes { a in ciphertext.withBytes { c in withUnsafeBytes(of: n) { nb in
            out.withUnsafeMutableBytes { m in
                // `m` may be empty (empty payload): libsodium accepts a NULL output then.
                crypto_aead_chacha20poly1305_ietf_decrypt(
                    m.baseAddress?.assumingMemoryBound(to: UInt8.self), nil, nil,
                    c.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(c.count),
                    a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count),
                    nb.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        } } } }
        return status == 0 ? out : nil
    }

    /// True when libsodium's AES-256-GCM runs on this CPU (x86-64 with AES-NI and
    /// PCLMULQDQ in libsodium 1.0.18). Without it, AES-GCM is refused, never emulated.
    public static var aesGCMAvailable: Bool {
        initialize()  // is_available reads the CPU features sodium_init() found
        return crypto_aead_aes256gcm_is_available() == 1
    }

    /// AES-256-GCM with Noise's AESGCM nonce (§12.4): 4 zero bytes || 64-bit big-endian counter.
    /// The caller checked `aesGCMAvailable` (NoiseProtocol refuses the suite otherwise).
    static func aesGCMSeal(key: SecretBytes, nonce: UInt64, ad: some ByteView, plaintext: some ByteView) -> [UInt8] {
        precondition(aesGCMAvailable, "AES-256-GCM used without AES-NI")
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        let n = noiseAESGCMNonce(nonce)
        key.withBytes { k in ad.withBytes { a in plaintext.withBytes { p in withUnsafeBytes(of: n) { nb in
            out.withUnsafeMutableBytes { c in
                _ = crypto_aead_aes256gcm_encrypt(
                    c.baseAddress!.assumingMemoryBound(to: UInt8.self), nil,
                    p.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(p.count),
                    a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count), nil,
                    nb.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        } } } }
        return out
    }

    static func aesGCMOpen(key: SecretBytes, nonce: UInt64, ad: some ByteView, ciphertext: some ByteView) -> [UInt8]? {
        guard ciphertext.count >= 16, aesGCMAvailable else { return nil }
        // One spare byte so an empty plaintext still has an output pointer.
        var out = [UInt8](repeating: 0, count: ciphertext.count - 16 + 1)
        let n = noiseAESGCMNonce(nonce)
        let status = key.withBytes { k in ad.withBytes { a in ciphertext.withBytes { c in withUnsafeBytes(of: n) { nb in
            out.withUnsafeMutableBytes { m in
                crypto_aead_aes256gcm_decrypt(
                    m.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, nil,
                    c.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(c.count),
                    a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count),
                    nb.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        } } } }
        guard status == 0 else { return nil }
        out.removeLast()
        return out
    }

    /// XChaCha20-Poly1305 (24-byte nonce), for cookie replies.
    static func xchachaPolySeal(key: some ByteView, nonce: [UInt8], ad: some ByteView, plaintext: some ByteView) -> [UInt8] {
        precondition(key.count == 32 && nonce.count == 24)
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        key.withBytes { k in ad.withBytes { a in plaintext.withBytes { p in nonce.withUnsafeBytes { nb in
            out.withUnsafeMutableBytes { c in
                _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
                    c.baseAddress!, nil, p.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(p.count),
                    a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count), nil,
                    nb.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        } } } }
        return out
    }

    static func xchachaPolyOpen(key: some ByteView, nonce: some ByteView, ad: some ByteView, ciphertext: some ByteView) -> [UInt8]? {
        guard key.count == 32, nonce.count == 24, ciphertext.count >= 16 else { return nil }
        var out = [UInt8](repeating: 0, count: ciphertext.count - 16)
        let status = key.withBytes { k in ad.withBytes { a in ciphertext.withBytes { c in nonce.withBytes { nb in
            out.withUnsafeMutableBytes { m in
                crypto_aead_xchacha20poly1305_ietf_decrypt(
                    m.baseAddress?.assumingMemoryBound(to: UInt8.self), nil, nil,
                    c.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(c.count),
                    a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count),
                    nb.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        } } } }
        return status == 0 ? out : nil
    }

    /// Noise's ChaChaPoly nonce (§12.3): 32 bits of zeros followed by the
    /// little-endian 64-bit counter. Three UInt32s are 12 contiguous bytes.
    /// `flags` (DATA header flags in a session that negotiated them: TransportKey.seal)
    /// take the place of the 32 zero bits; 0 gives Noise's nonce.
    static func noiseNonce(_ counter: UInt64, flags: UInt8 = 0) -> (UInt32, UInt32, UInt32) {
        (UInt32(flags).littleEndian, UInt32(truncatingIfNeeded: counter).littleEndian,
         UInt32(truncatingIfNeeded: counter >> 32).littleEndian)
    }

    /// Noise's AESGCM nonce (§12.4): "32 bits of zeros followed by big-endian encoding
    /// of n" -- the same 12 bytes as ChaChaPoly's but with the counter big-endian.
    static func noiseAESGCMNonce(_ counter: UInt64, flags: UInt8 = 0) -> (UInt32, UInt32, UInt32) {
        (UInt32(flags).littleEndian, UInt32(truncatingIfNeeded: counter >> 32).bigEndian,
         UInt32(truncatingIfNeeded: counter).bigEndian)
    }
}

// MARK: - Byte views

/// Anything whose bytes can be lent to libsodium: public [UInt8] data and wiped
/// `SecretBytes` alike, so one wrapper serves both without copying secrets out.
protocol ByteView {
    var count: Int { get }
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ByteView where Element == UInt8 {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try withUnsafeBytes(body) }
}

extension ArraySlice: ByteView where Element == UInt8 {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try withUnsafeBytes(body) }
}

// MARK: - Secret storage

/// Fixed-size key material on the heap, zeroed when the last reference goes.
///
/// Why a class: a struct's bytes are copied freely by the compiler and can never
/// be wiped; one heap allocation with a `deinit` is the one place that can.
/// Immutable after `init`, hence safe to share across threads.
final class SecretBytes: ByteView, @unchecked Sendable {
    let count: Int
    private let storage: UnsafeMutableRawPointer

    /// Allocates `count` zeroed bytes and lets `fill` write them.
    init(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Void) {
        self.count = count
        // One byte at least, so an empty secret still has a valid pointer to wipe.
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
        fill(UnsafeMutableRawBufferPointer(start: storage, count: count))
    }

    /// Fresh secret storage filled by a libsodium call; returns the call's status too.
    static func make(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Int32) -> (value: SecretBytes, status: Int32) {
        var status: Int32 = 0
        let value = SecretBytes(count: count) { status = fill($0) }
        return (value, status)
    }

    /// Fresh random bytes from libsodium, never held in an unwiped buffer.
    static func random(count: Int) -> SecretBytes {
        Sodium.initialize()
        return SecretBytes(count: count) { randombytes_buf($0.baseAddress!, $0.count) }
    }

    /// Copies `bytes` (the caller wipes its own copy if it was secret).
    convenience init(copying bytes: some ByteView) {
        self.init(count: bytes.count) { out in
            bytes.withBytes { if let base = $0.baseAddress, $0.count > 0 { out.baseAddress!.copyMemory(from: base, byteCount: $0.count) } }
        }
    }

    /// The first `length` bytes as a new secret (Noise truncates 64-byte HKDF outputs to 32-byte keys).
    func prefix(_ length: Int) -> SecretBytes {
        SecretBytes(count: min(length, count)) { out in
            out.baseAddress!.copyMemory(from: storage, byteCount: out.count)
        }
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage, count: count))
    }

    /// A copy the caller owns (and should wipe when it is secret).
    var array: [UInt8] { withBytes { Array($0) } }

    deinit {
        sodium_memzero(storage, max(count, 1))
        storage.deallocate()
    }
}

/// Multi-part BLAKE2b through libsodium's streaming API. The state lives in its
/// own 64-byte aligned allocation (libsodium declares it CRYPTO_ALIGN(64)) and is
/// wiped on release, since it holds the key for keyed hashes.
final class Blake2b {
    private let state: UnsafeMutableRawPointer
    private let stateSize: Int
    private let outputLength: Int

    init(outputLength: Int, key: (some ByteView)? = [UInt8]?.none) {
        Sodium.initialize()
        precondition((16...64).contains(outputLength))
        self.outputLength = outputLength
        stateSize = crypto_generichash_blake2b_statebytes()
        state = UnsafeMutableRawPointer.allocate(byteCount: stateSize, alignment: 64)
        let s = OpaquePointer(state)
        if let key, key.count > 0 {
            _ = key.withBytes { crypto_generichash_blake2b_init(s, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), $0.count, outputLength) }
        } else {
            _ = crypto_generichash_blake2b_init(s, nil, 0, outputLength)
        }
    }

    func update(_ bytes: any ByteView) {
        bytes.withBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return }
            _ = crypto_generichash_blake2b_update(OpaquePointer(state),
                                                  base.assumingMemoryBound(to: UInt8.self), UInt64(raw.count))
        }
    }

    func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: outputLength)
        out.withUnsafeMutableBytes { _ = finalize(into: $0) }
        return out
    }

    func finishSecret() -> SecretBytes {
        SecretBytes.make(count: outputLength) { finalize(into: $0) }.value
    }

    private func finalize(into out: UnsafeMutableRawBufferPointer) -> Int32 {
        crypto_generichash_blake2b_final(OpaquePointer(state),
                                         out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count)
    }

    deinit {
        sodium_memzero(state, stateSize)
        state.deallocate()
    }
}
