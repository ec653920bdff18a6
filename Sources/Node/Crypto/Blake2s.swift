// BLAKE2s (RFC 7693) from Debian's libb2, for WireGuard's handshake: libsodium
// has only BLAKE2b. Nothing here is a primitive of this project's: `Blake2s`
// wraps libb2's streaming API, and `NoiseHash` lets the Noise framework
// (Noise.swift) run on either hash with one HMAC and one HKDF (§4.3).
//
//   NoiseHash.blake2b ── libsodium crypto_generichash_blake2b (HASHLEN 64, BLOCKLEN 128)
//   NoiseHash.blake2s ── libb2 blake2s_*                      (HASHLEN 32, BLOCKLEN 64)

import Support
import Wire
import CBlake2
import CSodium

/// Multi-part BLAKE2s (libb2). The state (about 200 bytes, key included for a
/// keyed hash) lives in its own allocation and is wiped on release, as `Blake2b`'s.
final class Blake2s {
    private let state: UnsafeMutablePointer<blake2s_state>
    private let outputLength: Int

    /// `outputLength` 1...32; `key` at most 32 bytes (nil or empty: unkeyed).
    init(outputLength: Int, key: (some ByteView)? = [UInt8]?.none) {
        precondition((1...32).contains(outputLength), "BLAKE2s outputs 1...32 bytes")
        self.outputLength = outputLength
        state = .allocate(capacity: 1)
        if let key, key.count > 0 {
            precondition(key.count <= 32, "BLAKE2s keys are at most 32 bytes")
            _ = key.withBytes { blake2s_init_key(state, outputLength, $0.baseAddress!, $0.count) }
        } else {
            _ = blake2s_init(state, outputLength)
        }
    }

    func update(_ bytes: any ByteView) {
        bytes.withBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return }
            _ = blake2s_update(state, base.assumingMemoryBound(to: UInt8.self), raw.count)
        }
    }

    func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: outputLength)
        out.withUnsafeMutableBytes { _ = blake2s_final(state, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), outputLength) }
        return out
    }

    func finishSecret() -> SecretBytes {
        SecretBytes.make(count: outputLength) {
            blake2s_final(state, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), outputLength)
        }.value
    }

    deinit {
        sodium_memzero(state, MemoryLayout<blake2s_state>.size)
        state.deallocate()
    }
}

extension Sodium {
    /// Unkeyed or keyed BLAKE2s of the concatenation of `parts` (libb2; named here
    /// beside `blake2b` so callers find both hashes in one place).
    static func blake2s(outputLength: Int, key: (some ByteView)? = [UInt8]?.none, _ parts: [UInt8]...) -> [UInt8] {
        let hash = Blake2s(outputLength: outputLength, key: key)
        for part in parts { hash.update(part) }
        return hash.finish()
    }
}

/// The hash of a Noise protocol name's last part (§12.8, §12.9).
public enum NoiseHash: String, Sendable, CaseIterable {
    case blake2b = "BLAKE2b"
    case blake2s = "BLAKE2s"

    /// HASHLEN.
    public var hashLength: Int { self == .blake2b ? 64 : 32 }
    /// BLOCKLEN (HMAC pads to it).
    var blockLength: Int { self == .blake2b ? 128 : 64 }

    /// HASH(parts...) with the full HASHLEN output.
    func hash(_ parts: [any ByteView]) -> [UInt8] {
        switch self {
        case .blake2b:
            let h = Blake2b(outputLength: hashLength)
            for p in parts { h.update(p) }
            return h.finish()
        case .blake2s:
            let h = Blake2s(outputLength: hashLength)
            for p in parts { h.update(p) }
            return h.finish()
        }
    }

    private func hashSecret(_ parts: [any ByteView]) -> SecretBytes {
        switch self {
        case .blake2b:
            let h = Blake2b(outputLength: hashLength)
            for p in parts { h.update(p) }
            return h.finishSecret()
        case .blake2s:
            let h = Blake2s(outputLength: hashLength)
            for p in parts { h.update(p) }
            return h.finishSecret()
        }
    }

    /// HMAC-HASH (RFC 2104) with this hash's block, as Noise §4.3 requires (Noise's
    /// HKDF is defined on HMAC-HASH, not on keyed BLAKE2). `key` is at most one
    /// block (Noise keys are HASHLEN bytes).
    func hmac(key: some ByteView, _ parts: [any ByteView]) -> SecretBytes {
        precondition(key.count <= blockLength, "Noise HMAC keys are at most one block")
        var pad = [UInt8](repeating: 0, count: blockLength)
        defer { Sodium.wipe(&pad) }
        key.withBytes { k in for i in 0..<k.count { pad[i] = k[i] } }
        for i in pad.indices { pad[i] ^= 0x36 }
        let inner = hashSecret([pad] + parts)
        for i in pad.indices { pad[i] ^= 0x36 ^ 0x5c }
        return hashSecret([pad, inner])
    }

    /// Noise's HKDF(chaining_key, input_key_material, num_outputs), §4.3
    /// (WireGuard's KDF1/KDF2/KDF3 are this with 1, 2, 3 outputs):
    ///   temp_key = HMAC(ck, ikm); out1 = HMAC(temp_key, 0x01); out_i = HMAC(temp_key, out_{i-1} || i).
    func hkdf(chainingKey: some ByteView, inputKeyMaterial: some ByteView, outputs: Int) -> [SecretBytes] {
        precondition((1...3).contains(outputs), "HKDF here gives one to three outputs")
        let tempKey = hmac(key: chainingKey, [inputKeyMaterial])
        var result: [SecretBytes] = []
        for i in 1...outputs {
            let counter: [UInt8] = [UInt8(i)]
            let previous: [any ByteView] = result.last.map { [$0] } ?? []
            result.append(hmac(key: tempKey, previous + [counter]))
        }
        return result
    }
}
