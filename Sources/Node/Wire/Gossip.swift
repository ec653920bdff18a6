// Gossip: self-attested endpoint records and the messages that spread them
// (DESIGN §6, seed 2.3, 2.4, 3.2, 3.3). Byte layouts only; signing and
// verifying are Crypto's (`Crypto/RecordSigning.swift`), the rules Protocol's
// (`Protocol/Gossip/Gossip.swift`).
//
// ENDPOINT RECORD (108 + 20n bytes, n ≤ 8), signed by the node it is about:
//   0   u8   version (1)
//   1   u8   n: endpoints (0...8)
//   2   u16  reserved, zero
//   4   [32] the node's Ed25519 public key
//   36  u64  sequence (little-endian): Lamport-style, the node's own counter;
//            the higher one wins, whatever any clock says
//   44  n × candidate (20 bytes: source | endpoint, as in ControlMessage.swift)
//   44+20n [64] Ed25519 signature by that key over
//            "whalescale endpoint record v1" || bytes [0 ..< 44+20n]
//
// Gossip messages travel inside encrypted sessions as control messages
// (first payload byte 0x10...0x13, see ControlMessage.swift's table):
//
// 0x10 RECORDS   type | n (1...8) | n × record         push on change, or answer to PULL / DIGEST
// 0x11 SUMMARY   type | u32 count | [16] digest hash   anti-entropy opener: equal hashes end it
// 0x12 DIGEST    type | flags (bit 0: last part) | u16 n | n × (member id [8], u64 seq)
// 0x13 PULL      type | u16 n | n × member id [8]      "send me these records"
//
// Every message has an exact length for its counts; anything else is refused
// (the session proves who sent it, not that its lengths are sane).
import Support

/// One node's signed statement of where it may be reached (layout above).
/// The signature is not checked here: `EndpointRecord.verify` in Crypto does that.
public struct EndpointRecord: Hashable, Sendable {
    public static let version: UInt8 = 1
    public static let maxEndpoints = 8
    public static let headerSize = 44
    public static let signatureSize = 64
    public static let candidateSize = 1 + WireEndpoint.size
    /// Prepended to the signed bytes, so a record's signature can never be taken for another message's.
    public static let signingContext: [UInt8] = Array("whalescale endpoint record v1".utf8)

    public let node: PublicKey
    public let sequence: UInt64
    public let endpoints: [Candidate]
    public let signature: [UInt8]

    public init(node: PublicKey, sequence: UInt64, endpoints: [Candidate], signature: [UInt8]) {
        self.node = node
        self.sequence = sequence
        self.endpoints = Array(endpoints.prefix(Self.maxEndpoints))
        self.signature = signature
    }

    public static func size(endpoints n: Int) -> Int { headerSize + n * candidateSize + signatureSize }
    public var size: Int { Self.size(endpoints: endpoints.count) }

    /// The bytes the signature covers (without the context prefix).
    public static func signedPart(node: PublicKey, sequence: UInt64, endpoints: [Candidate]) -> [UInt8] {
        var b: [UInt8] = [version, UInt8(min(endpoints.count, maxEndpoints)), 0, 0]
        b += node.bytes
        withUnsafeBytes(of: sequence.littleEndian) { b += $0 }
        for c in endpoints.prefix(maxEndpoints) {
            b.append(c.source.rawValue)
            WireEndpoint.append(c.endpoint, to: &b)
        }
        return b
    }

    public var signedPart: [UInt8] { Self.signedPart(node: node, sequence: sequence, endpoints: endpoints) }

    public var bytes: [UInt8] { signedPart + signature }

    /// Parses one record at `offset`; returns it and its size, or nil (bad version,
    /// count, reserved bytes, source or endpoint, or too short).
    public static func parse(_ b: UnsafeRawBufferPointer, at offset: Int) -> (EndpointRecord, Int)? {
        guard offset >= 0, offset <= b.count - headerSize else { return nil }
        guard b[offset] == version else { return nil }
        let n = Int(b[offset + 1])
        guard n <= maxEndpoints, b[offset + 2] == 0, b[offset + 3] == 0 else { return nil }
        let total = size(endpoints: n)
        guard offset <= b.count - total else { return nil }
        guard let key = PublicKey(bytes: Array(b[(offset + 4)..<(offset + 36)])) else { return nil }
        let seq = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: offset + 36, as: UInt64.self))
        var eps: [Candidate] = []
        eps.reserveCapacity(n)
        for i in 0..<n {
            let at = offset + headerSize + i * candidateSize
            guard let source = EndpointSource(rawValue: b[at]), let ep = WireEndpoint.read(b, at: at + 1) else { return nil }
            eps.append(Candidate(ep, source))
        }
        let sigAt = offset + headerSize + n * candidateSize
        let sig = Array(b[sigAt..<(sigAt + signatureSize)])
        return (EndpointRecord(node: key, sequence: seq, endpoints: eps, signature: sig), total)
    }

    public init?(bytes: [UInt8]) {
        guard let (r, n) = bytes.withUnsafeBytes({ Self.parse($0, at: 0) }), n == bytes.count else { return nil }
        self = r
    }
}

/// One entry of a digest: a member (by its 8-byte relay label) and the sequence held for it.
public struct DigestEntry: Hashable, Sendable {
    public var member: MemberID
    public var sequence: UInt64
    public init(member: MemberID, sequence: UInt64) {
        self.member = member
        self.sequence = sequence
    }
}

/// The gossip control messages (layout above).
public enum GossipMessage: Equatable, Sendable {
    case records([EndpointRecord])
    case summary(count: UInt32, hash: [UInt8])
    case digest(last: Bool, entries: [DigestEntry])
    case pull([MemberID])

    public enum Kind: UInt8, Sendable, CaseIterable {
        case records = 0x10, summary = 0x11, digest = 0x12, pull = 0x13
    }

    public static let maxRecordsPerMessage = 4
    public static let hashSize = 16
    /// Entries per DIGEST or PULL message: one message stays within a 1280-byte IPv6 minimum MTU.
    public static let maxDigestEntries = 72
    public static let maxPullEntries = 140

    /// True when `first` is a gossip message's type byte.
    public static func isGossip(_ first: UInt8) -> Bool { Kind(rawValue: first) != nil }

    public var bytes: [UInt8] {
        switch self {
        case .records(let rs):
            var b: [UInt8] = [Kind.records.rawValue, UInt8(rs.count)]
            for r in rs { b += r.bytes }
            return b
        case .summary(let count, let hash):
            var b: [UInt8] = [Kind.summary.rawValue]
            withUnsafeBytes(of: count.littleEndian) { b += $0 }
            return b + hash
        case .digest(let last, let entries):
            var b: [UInt8] = [Kind.digest.rawValue, last ? 1 : 0]
            withUnsafeBytes(of: UInt16(entries.count).littleEndian) { b += $0 }
            for e in entries {
                withUnsafeBytes(of: e.member.rawValue.littleEndian) { b += $0 }
                withUnsafeBytes(of: e.sequence.littleEndian) { b += $0 }
            }
            return b
        case .pull(let ids):
            var b: [UInt8] = [Kind.pull.rawValue]
            withUnsafeBytes(of: UInt16(ids.count).littleEndian) { b += $0 }
            for id in ids { withUnsafeBytes(of: id.rawValue.littleEndian) { b += $0 } }
            return b
        }
    }

    /// Parses exactly `b`; nil for any other length, count or field.
    public init?(_ b: UnsafeRawBufferPointer) {
        guard let first = b.first, let kind = Kind(rawValue: first) else { return nil }
        switch kind {
        case .records:
            guard b.count >= 2 else { return nil }
            let n = Int(b[1])
            guard n >= 1, n <= Self.maxRecordsPerMessage else { return nil }
            var at = 2
            var rs: [EndpointRecord] = []
            for _ in 0..<n {
                guard let (r, size) = EndpointRecord.parse(b, at: at) else { return nil }
                rs.append(r)
                at += size
            }
            guard at == b.count else { return nil }
            self = .records(rs)
        case .summary:
            guard b.count == 1 + 4 + Self.hashSize else { return nil }
            self = .summary(count: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 1, as: UInt32.self)),
                            hash: Array(b[5..<(5 + Self.hashSize)]))
        case .digest:
            guard b.count >= 4, b[1] & ~1 == 0 else { return nil }
            let n = Int(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            guard n <= Self.maxDigestEntries, b.count == 4 + 16 * n else { return nil }
            var es: [DigestEntry] = []
            es.reserveCapacity(n)
            for i in 0..<n {
                let at = 4 + 16 * i
                es.append(DigestEntry(member: MemberID(rawValue: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt64.self))),
                                      sequence: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self))))
            }
            self = .digest(last: b[1] & 1 == 1, entries: es)
        case .pull:
            guard b.count >= 3 else { return nil }
            let n = Int(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 1, as: UInt16.self)))
            guard n >= 1, n <= Self.maxPullEntries, b.count == 3 + 8 * n else { return nil }
            self = .pull((0..<n).map { MemberID(rawValue: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 3 + 8 * $0, as: UInt64.self))) })
        }
    }

    public init?(bytes: [UInt8]) {
        guard let m = bytes.withUnsafeBytes({ GossipMessage($0) }) else { return nil }
        self = m
    }
}
