// Node identity keys.
//
// One secret serves both signing and the handshake (DESIGN §3):
//
//     SecretKey (32-byte Ed25519 seed, base64 in config / key file)
//        │ crypto_sign_seed_keypair
//        ├──> Ed25519 signing key (64 bytes: seed || public)  ── sign gossip records, LAN beacons
//        ├──> PublicKey (32-byte Ed25519, base64 in [[peer]] public_key)
//        │      │ crypto_sign_ed25519_pk_to_curve25519
//        │      └──> X25519 static public  ── what the Noise handshake and mac1 use
//        │ crypto_sign_ed25519_sk_to_curve25519
//        └──> X25519 static private (clamped SHA-512(seed)[0..<32])
//
// Both conversions are libsodium's; `Identity` derives the X25519 public key as
// X25519(static private, base point) so it can never disagree with the private
// half, and the tests check it equals the converted Ed25519 public key.
//
// Text form: 32 bytes as standard, padded base64 (44 characters), like WireGuard.

import Support
import Wire
import CSodium

/// A node's secret: the 32-byte Ed25519 seed. Held in wiped storage; never printed.
public struct SecretKey: Sendable, Equatable, CustomStringConvertible {
    static let length = 32
    let seed: SecretBytes

    init(seed: SecretBytes) { self.seed = seed }

    /// Standard padded base64 of exactly 32 bytes; surrounding whitespace and newlines are ignored.
    public init?(base64: String) {
        Sodium.initialize()
        guard let seed = Sodium.base64Decode(base64, count: Self.length) else { return nil }
        self.seed = seed
    }

    /// Exactly 32 bytes. The caller should wipe its copy.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        seed = SecretBytes(copying: bytes)
    }

    public static func generate() -> SecretKey {
        SecretKey(seed: SecretBytes.random(count: length))
    }

    /// The key file / config text. Handle with care: this *is* the secret.
    public var base64: String { Sodium.base64Encode(seed) }

    /// The matching public key (what `wsctl pubkey` prints).
    public var publicKey: PublicKey { Identity(secret: self).publicKey }

    public static func == (a: SecretKey, b: SecretKey) -> Bool { Sodium.constantTimeEqual(a.seed, b.seed) }

    /// Never the key itself, so a stray `print` or log line cannot leak it.
    public var description: String { "SecretKey(redacted)" }
}

/// The crypto half of a member's public key (the value itself is in Wire/PublicKey.swift,
/// where byte layouts carry it): its base64 text and its X25519 form.
extension PublicKey: CustomStringConvertible {
    /// Standard padded base64 of exactly 32 bytes; surrounding whitespace and newlines are ignored.
    public init?(base64: String) {
        Sodium.initialize()
        guard let decoded = Sodium.base64Decode(base64, count: Self.length) else { return nil }
        self.init(exactly32: decoded.array)
    }

    public var base64: String { Sodium.base64Encode(bytes) }
    public var description: String { base64 }

    /// The X25519 form of this key (the peer's Noise static key), or nil when the
    /// 32 bytes are not a point of the main subgroup (libsodium refuses small-order
    /// and off-curve points): such a key can never complete a handshake.
    public var x25519: [UInt8]? {
        CurveOperations.conversions.wrappingAdd(1, ordering: .relaxed)
        var out = [UInt8](repeating: 0, count: 32)
        let status = out.withUnsafeMutableBytes { o in
            bytes.withUnsafeBytes { crypto_sign_ed25519_pk_to_curve25519(o.baseAddress!.assumingMemoryBound(to: UInt8.self), $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        }
        return status == 0 ? out : nil
    }
}

/// An X25519 key pair: the DH keys Noise works with.
public struct DHKeyPair: Sendable {
    let privateKey: SecretBytes
    public let publicKey: [UInt8]

    init(privateKey: SecretBytes) {
        self.privateKey = privateKey
        publicKey = Sodium.x25519Base(privateKey)
    }

    /// From a 32-byte X25519 private scalar (clamped by X25519 itself). Nil for another length.
    public init?(privateKey: [UInt8]) {
        guard privateKey.count == 32 else { return nil }
        self.init(privateKey: SecretBytes(copying: privateKey))
    }

    /// A fresh key pair from libsodium's random generator (Noise's GENERATE_KEYPAIR).
    public static func generate() -> DHKeyPair {
        DHKeyPair(privateKey: SecretBytes.random(count: 32))
    }
}

/// This node's identity: Ed25519 for signatures, the derived X25519 pair for the handshake.
public struct Identity: Sendable {
    public let publicKey: PublicKey
    /// libsodium's 64-byte Ed25519 secret key (seed || public key).
    let signingKey: SecretBytes
    /// The Noise static key pair, derived from the Ed25519 secret.
    let staticKeyPair: DHKeyPair

    public init(secret: SecretKey) {
        Sodium.initialize()
        var pk = [UInt8](repeating: 0, count: 32)
        // crypto_sign_seed_keypair cannot fail for a 32-byte seed.
        let sk = SecretBytes(count: 64) { sk in
            secret.seed.withBytes { seed in
                pk.withUnsafeMutableBytes { pk in
                    _ = crypto_sign_seed_keypair(pk.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                 sk.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                 seed.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        let xsk = SecretBytes(count: 32) { out in
            sk.withBytes { sk in
                _ = crypto_sign_ed25519_sk_to_curve25519(out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                         sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        publicKey = PublicKey(exactly32: pk)
        signingKey = sk
        staticKeyPair = DHKeyPair(privateKey: xsk)
    }

    /// The drop-in WireGuard device's identity (`whalescaled --wireguard`): its
    /// Noise static is the X25519 key `wg set IFNAME private-key` gave (32 bytes,
    /// clamped by X25519 itself), not one derived from an Ed25519 seed. The
    /// Ed25519 half is a fresh random key that nothing trusts: such a node has
    /// only WireGuard peers, which never see a signature. Nil for another length.
    public init?(wireGuardPrivateKey: [UInt8]) {
        guard let pair = DHKeyPair(privateKey: wireGuardPrivateKey) else { return nil }
        let random = Identity(secret: SecretKey(seed: SecretBytes.random(count: 32)))
        publicKey = random.publicKey
        signingKey = random.signingKey
        staticKeyPair = pair
    }

    /// The X25519 public key of a WireGuard private key (as `wg pubkey` prints it); nil for another length.
    public static func wireGuardPublicKey(privateKey: [UInt8]) -> [UInt8]? {
        DHKeyPair(privateKey: privateKey)?.publicKey
    }

    /// The X25519 static public key (equals `publicKey.x25519`).
    public var staticPublic: [UInt8] { staticKeyPair.publicKey }

    /// A copy of the X25519 static private key. Prefer the handshake API, which
    /// never copies it out; a caller that does take it should wipe its copy.
    public var staticPrivate: [UInt8] { staticKeyPair.privateKey.array }

    /// A detached 64-byte Ed25519 signature.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
        signature.withUnsafeMutableBytes { sig in
            message.withUnsafeBytes { m in
                signingKey.withBytes { sk in
                    _ = crypto_sign_detached(sig.baseAddress!.assumingMemoryBound(to: UInt8.self), nil,
                                             m.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(m.count),
                                             sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        return signature
    }

    /// True when `signature` is `key`'s valid Ed25519 signature of `message`.
    /// libsodium 1.0.18 also refuses small-order keys and non-canonical signatures.
    public static func verify(signature: [UInt8], message: [UInt8], key: PublicKey) -> Bool {
        guard signature.count == Int(crypto_sign_BYTES) else { return false }
        Sodium.initialize()
        return signature.withUnsafeBytes { sig in
            message.withUnsafeBytes { m in
                key.bytes.withUnsafeBytes { pk in
                    crypto_sign_verify_detached(sig.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                m.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(m.count),
                                                pk.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 0
                }
            }
        }
    }
}

/// A member's relay label (`Wire/Relay.swift`) is a hash of its key: hashing is Crypto's.
extension MemberID {
    /// First 8 bytes of BLAKE2b-256 of the key, computed once per member at start,
    /// never per packet.
    public init(publicKey: PublicKey) {
        let hash = Sodium.blake2b(outputLength: 32, publicKey.bytes)
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(hash[i]) << (8 * UInt64(i)) }
        self.init(rawValue: v)
    }
}
