// Signing and checking LAN announcements (`Wire/MDNS.swift`): Ed25519 by the
// announcing node, over a context string and the fields a receiver uses.
import Support
import Wire

extension LanAnnouncement {
    /// An announcement by `identity`'s node, signed by it.
    public static func signed(by identity: Identity, port: UInt16, sequence: UInt64, addresses: [Endpoint]) -> LanAnnouncement {
        let unsigned = LanAnnouncement(key: identity.publicKey, port: port, sequence: sequence, addresses: addresses, signature: [])
        var a = unsigned
        a.signature = identity.sign(unsigned.signedPart)
        return a
    }

    /// True when the signature is by `key` over exactly this key, port, sequence and these addresses.
    public var isValidlySigned: Bool {
        Identity.verify(signature: signature, message: signedPart, key: key)
    }
}
