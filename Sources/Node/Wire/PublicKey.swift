import Support

/// A node's 32-byte Ed25519 public key: its name in the network, as the wire carries it.
/// Its base64 text and X25519 form come from Crypto (`Crypto/Keys.swift`), the only
/// layer that calls libsodium.
public struct PublicKey: Hashable, Sendable {
    public static let length = 32
    public let bytes: [UInt8]

    /// Exactly 32 bytes. Not checked to be a valid curve point here (see `x25519` in Crypto).
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        self.bytes = bytes
    }

    /// For 32 bytes the package produced itself (no check needed).
    package init(exactly32 bytes: [UInt8]) { self.bytes = bytes }
}
