// Signing and checking endpoint records (`Wire/Gossip.swift`): Ed25519 by the
// node the record is about, over a context string and the record's bytes.
import Support
import Wire

extension EndpointRecord {
    /// A record about `identity`'s node, signed by it.
    public static func signed(by identity: Identity, sequence: UInt64, endpoints: [Candidate]) -> EndpointRecord {
        let part = signedPart(node: identity.publicKey, sequence: sequence, endpoints: endpoints)
        return EndpointRecord(node: identity.publicKey, sequence: sequence, endpoints: endpoints,
                              signature: identity.sign(signingContext + part))
    }

    /// True when the signature is the record's own node's, over exactly these bytes.
    /// A third party can carry a record but never change it.
    public var isValidlySigned: Bool {
        Identity.verify(signature: signature, message: Self.signingContext + signedPart, key: node)
    }
}

extension GossipMessage {
    /// The digest's hash: BLAKE2b-128 over (member id, sequence) pairs, little-endian,
    /// in the order given (the caller sorts by member id). Equal hashes end an anti-entropy round.
    public static func digestHash(_ entries: some Sequence<DigestEntry>) -> [UInt8] {
        var b: [UInt8] = []
        for e in entries {
            withUnsafeBytes(of: e.member.rawValue.littleEndian) { b += $0 }
            withUnsafeBytes(of: e.sequence.littleEndian) { b += $0 }
        }
        return Sodium.blake2b(outputLength: hashSize, b)
    }
}
