// In-session control messages: the plaintext of an encrypted DATA payload
// whose first byte is not an IP version nibble (DESIGN §4).
//
//   first payload byte   meaning
//   ------------------   ------------------------------------------------
//   (empty payload)      keepalive
//   0x01 ... 0x3F        control message: 0x01...0x08 this file, 0x10...0x13 gossip
//                        (Wire/Gossip.swift, `GossipMessage`: NodeCore's router checks
//                        `GossipMessage.isGossip` before parsing here); the rest unassigned
//   0x4_                 IPv4 packet (high nibble 4)
//   0x6_                 IPv6 packet (high nibble 6)
//   anything else        dropped
//
// All integers little-endian, endpoints as WireEndpoint (19 bytes, see
// PathProbe.swift), keys are Ed25519 public keys (32). Every message has an
// exact length for its type and counts; a candidate list holds at most
// `maxCandidates` entries. A message of any other length is refused: the
// encryption proves who sent it, not that its lengths are sane.
//
// 0x01 OBSERVED            20 bytes   "the source address I see your packets come from"
//   0 type | 1..20 endpoint
// 0x02 CANDIDATES          2 + 20n    "my endpoints" (sent to every anchor on change)
//   0 type | 1 n (0...16) | n x candidate
// 0x03 RENDEZVOUS_REQUEST  33 bytes   "introduce me to this member" (to an anchor)
//   0 type | 1..33 target key
// 0x04 RENDEZVOUS          34 + 20n   anchor -> both sides: the other member and its candidates,
//   0 type | 1..33 peer key | 33 n | n x candidate          the anchor's own observation first
// 0x05 PATH_PING           10 bytes   liveness and RTT of one path
//   0 type | 1..9 txid | 9 flags: bit 0 = "this is my active path to you" (a
//                        keepalive: the receiver may roam to its source, as for
//                        data); other bits zero. Hole-punching pings to
//                        candidates leave it clear: they must not move anything.
// 0x06 PATH_PONG           28 bytes   answer, sent back the way the ping came
//   0 type | 1..9 txid | 9..28 observed source of the ping
//
// 0x07 ECHO_REQUEST        9 bytes   `wsctl ping`: "answer me", on the session's active path
//   0 type | 1..9 txid   (never moves a path by itself beyond what any traffic does)
// 0x08 ECHO_REPLY         28 bytes   the answer, sent back exactly the way the request came
//   0 type | 1..9 txid | 9..28 observed source of the request
//
// candidate, 20 bytes: 0 source (EndpointSource) | 1..20 endpoint

import Support

/// How a node knows one of its endpoints (DESIGN §8 `node.endpoints[].source`).
public enum EndpointSource: UInt8, Sendable, CaseIterable, Comparable {
    /// A local interface address and the listening port.
    case local = 1
    /// What an anchor or peer saw our packets come from.
    case observed = 2
    case upnp = 3
    case natpmp = 4
    case pcp = 5
    /// Our address as announced on the LAN.
    case lan = 6

    /// The name in `wsctl status --json` (same strings as `StatusReport.EndpointSource`).
    public var name: String {
        switch self {
        case .local: "local"
        case .observed: "observed"
        case .upnp: "upnp"
        case .natpmp: "natpmp"
        case .pcp: "pcp"
        case .lan: "lan"
        }
    }

    public static func < (a: EndpointSource, b: EndpointSource) -> Bool { a.rawValue < b.rawValue }
}

/// One endpoint a member says it may be reached at.
public struct Candidate: Hashable, Sendable, CustomStringConvertible {
    public var endpoint: Endpoint
    public var source: EndpointSource
    public init(_ endpoint: Endpoint, _ source: EndpointSource) {
        self.endpoint = endpoint
        self.source = source
    }
    public var description: String { "\(endpoint) (\(source.name))" }
}

/// An in-session control message (layouts above).
public enum ControlMessage: Equatable, Sendable {
    case observed(Endpoint)
    case candidates([Candidate])
    case rendezvousRequest(target: PublicKey)
    case rendezvous(peer: PublicKey, candidates: [Candidate])
    case pathPing(txid: UInt64, onActivePath: Bool)
    case pathPong(txid: UInt64, observed: Endpoint)
    /// An operator's in-tunnel ping (`wsctl ping`): answered by the peer's daemon.
    case echoRequest(txid: UInt64)
    case echoReply(txid: UInt64, observed: Endpoint)

    public enum Kind: UInt8, Sendable {
        case observed = 0x01
        case candidates = 0x02
        case rendezvousRequest = 0x03
        case rendezvous = 0x04
        case pathPing = 0x05
        case pathPong = 0x06
        case echoRequest = 0x07
        case echoReply = 0x08
    }

    public static let maxCandidates = 16
    static let candidateSize = 1 + WireEndpoint.size
    /// The largest control message (a full RENDEZVOUS).
    public static let maxSize = 34 + maxCandidates * candidateSize

    /// What the first byte of a decrypted payload says it is.
    public enum PayloadClass: Equatable, Sendable { case keepalive, ipPacket, control, unknown }

    /// (Plain comparisons, not range patterns: this runs for every packet,
    /// and a range pattern costs a generic call in a debug build.)
    @inlinable
    public static func classify(_ payload: UnsafeRawBufferPointer, length: Int) -> PayloadClass {
        guard length > 0, payload.count > 0 else { return .keepalive }
        let first = payload[0]
        let version = first >> 4
        if version == 4 || version == 6 { return .ipPacket }
        return first != 0 && first < 0x40 ? .control : .unknown
    }

    public var kind: Kind {
        switch self {
        case .observed: .observed
        case .candidates: .candidates
        case .rendezvousRequest: .rendezvousRequest
        case .rendezvous: .rendezvous
        case .pathPing: .pathPing
        case .pathPong: .pathPong
        case .echoRequest: .echoRequest
        case .echoReply: .echoReply
        }
    }

    /// Parses the `length` bytes at the start of `buffer`; nil for an unknown
    /// type, a wrong length, a count over the limit, or a bad field.
    public init?(_ buffer: UnsafeRawBufferPointer, length: Int) {
        guard length >= 1, length <= buffer.count, let kind = Kind(rawValue: buffer[0]) else { return nil }
        let b = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
        switch kind {
        case .observed:
            guard length == 1 + WireEndpoint.size, let ep = WireEndpoint.read(b, at: 1) else { return nil }
            self = .observed(ep)
        case .candidates:
            guard length >= 2, let list = Self.readCandidates(b, countAt: 1) else { return nil }
            self = .candidates(list)
        case .rendezvousRequest:
            guard length == 33, let key = PublicKey(bytes: Array(b[1..<33])) else { return nil }
            self = .rendezvousRequest(target: key)
        case .rendezvous:
            guard length >= 34, let key = PublicKey(bytes: Array(b[1..<33])),
                  let list = Self.readCandidates(b, countAt: 33) else { return nil }
            self = .rendezvous(peer: key, candidates: list)
        case .pathPing:
            guard length == 10, b[9] & ~1 == 0 else { return nil }
            self = .pathPing(txid: b.loadUnaligned(fromByteOffset: 1, as: UInt64.self).littleEndian, onActivePath: b[9] == 1)
        case .pathPong:
            guard length == 9 + WireEndpoint.size, let ep = WireEndpoint.read(b, at: 9) else { return nil }
            self = .pathPong(txid: b.loadUnaligned(fromByteOffset: 1, as: UInt64.self).littleEndian, observed: ep)
        case .echoRequest:
            guard length == 9 else { return nil }
            self = .echoRequest(txid: b.loadUnaligned(fromByteOffset: 1, as: UInt64.self).littleEndian)
        case .echoReply:
            guard length == 9 + WireEndpoint.size, let ep = WireEndpoint.read(b, at: 9) else { return nil }
            self = .echoReply(txid: b.loadUnaligned(fromByteOffset: 1, as: UInt64.self).littleEndian, observed: ep)
        }
    }

    public init?(bytes: [UInt8]) {
        guard let m = bytes.withUnsafeBytes({ ControlMessage($0, length: bytes.count) }) else { return nil }
        self = m
    }

    /// The count byte at `countAt`, then exactly that many candidates to the end.
    private static func readCandidates(_ b: UnsafeRawBufferPointer, countAt: Int) -> [Candidate]? {
        let n = Int(b[countAt])
        guard n <= maxCandidates, b.count == countAt + 1 + n * candidateSize else { return nil }
        var out: [Candidate] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            let at = countAt + 1 + i * candidateSize
            guard let source = EndpointSource(rawValue: b[at]), let ep = WireEndpoint.read(b, at: at + 1) else { return nil }
            out.append(Candidate(ep, source))
        }
        return out
    }

    /// Serialized bytes. Candidate lists longer than `maxCandidates` are cut
    /// to the limit (the caller orders them best first).
    public var bytes: [UInt8] {
        var out: [UInt8] = [kind.rawValue]
        switch self {
        case .observed(let ep):
            WireEndpoint.append(ep, to: &out)
        case .candidates(let list):
            Self.appendCandidates(list, to: &out)
        case .rendezvousRequest(let key):
            out += key.bytes
        case .rendezvous(let key, let list):
            out += key.bytes
            Self.appendCandidates(list, to: &out)
        case .pathPing(let txid, let active):
            Self.append64(txid, to: &out)
            out.append(active ? 1 : 0)
        case .pathPong(let txid, let ep), .echoReply(let txid, let ep):
            Self.append64(txid, to: &out)
            WireEndpoint.append(ep, to: &out)
        case .echoRequest(let txid):
            Self.append64(txid, to: &out)
        }
        return out
    }

    private static func appendCandidates(_ list: [Candidate], to out: inout [UInt8]) {
        let n = min(list.count, maxCandidates)
        out.append(UInt8(n))
        for c in list.prefix(n) {
            out.append(c.source.rawValue)
            WireEndpoint.append(c.endpoint, to: &out)
        }
    }

    private static func append64(_ v: UInt64, to out: inout [UInt8]) {
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}
