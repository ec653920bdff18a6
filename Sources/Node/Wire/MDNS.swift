// mDNS / DNS-SD messages for LAN discovery (RFC 6762, RFC 6763; DNS message
// format RFC 1035 §4.1). Byte layouts only: signing and checking are Crypto's
// (`Crypto/LanSigning.swift`), the rules Protocol's (`Protocol/LAN/LanDiscovery.swift`).
//
// A DNS message (every number big-endian):
//   0..2 id (0 in mDNS) | 2..4 flags (QR 0x8000, AA 0x0400) | 4..6 QDCOUNT
//   6..8 ANCOUNT | 8..10 NSCOUNT | 10..12 ARCOUNT, then
//   question: name | u16 type | u16 class (top bit: "unicast response wanted", §5.4)
//   record:   name | u16 type | u16 class (top bit: cache-flush, §10.2) | u32 TTL | u16 RDLENGTH | RDATA
//   name: labels (length byte 1...63, then the bytes), ended by a zero byte or
//         by a compression pointer (two bytes 0b11xxxxxx xxxxxxxx: the offset
//         of the rest of the name in the message)
//
// Whalescale's announcement (a response, flags 0x8400, 4 + n answers, no questions):
//   PTR  _whalescale._udp.local            -> ws-<16 hex>._whalescale._udp.local  (TTL 4500)
//   SRV  ws-<16 hex>._whalescale._udp.local  priority 0, weight 0, port P, target ws-<16 hex>.local (TTL 120, flush)
//   TXT  ws-<16 hex>._whalescale._udp.local  "txtvers=1" "id=<64 hex: Ed25519 public key>"
//        "port=P" "seq=<decimal u64>" "sig=<128 hex: Ed25519 signature>"  (TTL 4500, flush)
//   A / AAAA  ws-<16 hex>.local -> each announced address              (TTL 120, flush)
// <16 hex> is the first 8 bytes of the key, so instance names differ per node.
// The signature covers `LanAnnouncement.signedPart`:
//   "whalescale lan announcement v1" || key [32] || port u16 || seq u64
//   || n u8 || n × (family u8 (4|6), address [16]),
// so no field a receiver uses (key, port, sequence, addresses) can be changed.
// The query (flags 0, one question): _whalescale._udp.local PTR IN.
//
// Parsing is bounded: at most `maxMessageSize` bytes and `maxRecords` records;
// a name is at most 255 bytes with labels of at most 63, and a compression
// pointer must point strictly before the name it is in (so it cannot loop),
// at most `maxPointers` per name. Anything else is refused with a reason.
import Support

public enum MDNS {
    public static let port: UInt16 = 5353
    /// RFC 6762 §17: a message may fill a 9000-byte jumbo frame; nothing larger is read.
    public static let maxMessageSize = 9000
    public static let headerSize = 12
    /// Questions plus records in one message (avahi packs a few dozen at most).
    public static let maxRecords = 64
    /// RFC 1035 §2.3.4.
    public static let maxNameLength = 255
    public static let maxLabelLength = 63
    /// Compression pointers followed for one name.
    public static let maxPointers = 16

    public static let flagResponse: UInt16 = 0x8000
    public static let flagAuthoritative: UInt16 = 0x0400
    /// Class IN, and the top bit of the class field (cache-flush in records, QU in questions).
    public static let classIN: UInt16 = 1
    public static let classTopBit: UInt16 = 0x8000

    public enum RecordType: UInt16, Sendable {
        case a = 1, ptr = 12, txt = 16, aaaa = 28, srv = 33, any = 255
    }

    /// The service Whalescale announces.
    public static let service: [String] = ["_whalescale", "_udp", "local"]
}

/// Why a message was refused (counted by the LAN machine as `lan_malformed`).
public enum MDNSParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooShort, tooLong, tooManyRecords, badLabel, nameTooLong, badPointer, truncatedRecord, trailingBytes, badRecordData

    public var description: String {
        switch self {
        case .tooShort: "too_short"
        case .tooLong: "too_long"
        case .tooManyRecords: "too_many_records"
        case .badLabel: "bad_label"
        case .nameTooLong: "name_too_long"
        case .badPointer: "bad_pointer"
        case .truncatedRecord: "truncated_record"
        case .trailingBytes: "trailing_bytes"
        case .badRecordData: "bad_record_data"
        }
    }
}

/// A DNS name as its labels (compared case-insensitively for ASCII, RFC 6762 §16).
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    public let labels: [[UInt8]]

    public init(labels: [[UInt8]]) { self.labels = labels }
    public init(_ parts: [String]) { labels = parts.map { Array($0.utf8) } }

    public var description: String { labels.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ".") }

    /// Case-insensitive (ASCII) equality, as DNS compares names.
    public func matches(_ other: DNSName) -> Bool {
        guard labels.count == other.labels.count else { return false }
        for (a, b) in zip(labels, other.labels) {
            guard a.count == b.count else { return false }
            for (x, y) in zip(a, b) where Self.lower(x) != Self.lower(y) { return false }
        }
        return true
    }

    private static func lower(_ c: UInt8) -> UInt8 { c >= 65 && c <= 90 ? c + 32 : c }

    /// Uncompressed wire form (labels, then the zero byte).
    public func append(to b: inout [UInt8]) {
        for l in labels {
            b.append(UInt8(l.count))
            b += l
        }
        b.append(0)
    }
}

public struct DNSQuestion: Equatable, Sendable {
    public var name: DNSName
    public var type: UInt16
    /// With the QU bit cleared.
    public var qclass: UInt16
    public var unicastResponse: Bool

    public init(name: DNSName, type: UInt16, qclass: UInt16 = MDNS.classIN, unicastResponse: Bool = false) {
        self.name = name
        self.type = type
        self.qclass = qclass
        self.unicastResponse = unicastResponse
    }
}

public struct DNSRecord: Equatable, Sendable {
    public enum Data: Equatable, Sendable {
        case ptr(DNSName)
        case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
        case txt([[UInt8]])
        case a(IPAddressBytes)
        case aaaa(IPAddressBytes)
        /// Any other type, its RDATA unread.
        case other(type: UInt16, bytes: [UInt8])

        public var type: UInt16 {
            switch self {
            case .ptr: MDNS.RecordType.ptr.rawValue
            case .srv: MDNS.RecordType.srv.rawValue
            case .txt: MDNS.RecordType.txt.rawValue
            case .a: MDNS.RecordType.a.rawValue
            case .aaaa: MDNS.RecordType.aaaa.rawValue
            case .other(let t, _): t
            }
        }
    }

    public var name: DNSName
    /// With the cache-flush bit cleared.
    public var rclass: UInt16
    public var cacheFlush: Bool
    public var ttl: UInt32
    public var data: Data

    public init(name: DNSName, rclass: UInt16 = MDNS.classIN, cacheFlush: Bool = false, ttl: UInt32, data: Data) {
        self.name = name
        self.rclass = rclass
        self.cacheFlush = cacheFlush
        self.ttl = ttl
        self.data = data
    }
}

/// A whole DNS message: header fields, questions and every record section.
public struct DNSMessage: Equatable, Sendable {
    public var id: UInt16
    public var flags: UInt16
    public var questions: [DNSQuestion]
    public var answers: [DNSRecord]
    public var authorities: [DNSRecord]
    public var additionals: [DNSRecord]

    public init(id: UInt16 = 0, flags: UInt16, questions: [DNSQuestion] = [], answers: [DNSRecord] = [],
                authorities: [DNSRecord] = [], additionals: [DNSRecord] = []) {
        self.id = id
        self.flags = flags
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
    }

    public var isResponse: Bool { flags & MDNS.flagResponse != 0 }
    /// Answers, authorities and additionals together.
    public var records: [DNSRecord] { answers + authorities + additionals }

    // MARK: Serialize (no compression: our messages are small)

    public func serialize() -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(512)
        func u16(_ v: UInt16) { b.append(UInt8(v >> 8)); b.append(UInt8(v & 0xff)) }
        func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xffff)) }
        u16(id); u16(flags)
        u16(UInt16(questions.count)); u16(UInt16(answers.count)); u16(UInt16(authorities.count)); u16(UInt16(additionals.count))
        for q in questions {
            q.name.append(to: &b)
            u16(q.type)
            u16(q.qclass | (q.unicastResponse ? MDNS.classTopBit : 0))
        }
        for r in records {
            r.name.append(to: &b)
            u16(r.data.type)
            u16(r.rclass | (r.cacheFlush ? MDNS.classTopBit : 0))
            u32(r.ttl)
            var d: [UInt8] = []
            switch r.data {
            case .ptr(let n): n.append(to: &d)
            case .srv(let prio, let weight, let port, let target):
                for v in [prio, weight, port] { d.append(UInt8(v >> 8)); d.append(UInt8(v & 0xff)) }
                target.append(to: &d)
            case .txt(let strings):
                for s in strings {
                    d.append(UInt8(min(s.count, 255)))
                    d += s.prefix(255)
                }
                if strings.isEmpty { d.append(0) }  // RFC 6763 §6.1: an empty TXT is one zero byte
            case .a(let a): d += a.bytes.prefix(4)
            case .aaaa(let a): d += a.bytes
            case .other(_, let bytes): d += bytes
            }
            u16(UInt16(d.count))
            b += d
        }
        return b
    }

    // MARK: Parse

    public static func parse(_ bytes: [UInt8]) -> Result<DNSMessage, MDNSParseError> {
        bytes.withUnsafeBytes { parse($0) }
    }

    public static func parse(_ b: UnsafeRawBufferPointer) -> Result<DNSMessage, MDNSParseError> {
        guard b.count >= MDNS.headerSize else { return .failure(.tooShort) }
        guard b.count <= MDNS.maxMessageSize else { return .failure(.tooLong) }
        func u16(_ o: Int) -> UInt16 { UInt16(b[o]) << 8 | UInt16(b[o + 1]) }
        let qd = Int(u16(4)), an = Int(u16(6)), ns = Int(u16(8)), ar = Int(u16(10))
        guard qd + an + ns + ar <= MDNS.maxRecords else { return .failure(.tooManyRecords) }
        var m = DNSMessage(id: u16(0), flags: u16(2))
        var at = MDNS.headerSize
        do {
            for _ in 0..<qd {
                let name = try readName(b, at: &at)
                guard at + 4 <= b.count else { throw MDNSParseError.truncatedRecord }
                let c = u16(at + 2)
                m.questions.append(DNSQuestion(name: name, type: u16(at), qclass: c & ~MDNS.classTopBit,
                                               unicastResponse: c & MDNS.classTopBit != 0))
                at += 4
            }
            for (count, section) in [(an, 0), (ns, 1), (ar, 2)] {
                for _ in 0..<count {
                    let r = try readRecord(b, at: &at)
                    switch section {
                    case 0: m.answers.append(r)
                    case 1: m.authorities.append(r)
                    default: m.additionals.append(r)
                    }
                }
            }
        } catch let e as MDNSParseError {
            return .failure(e)
        } catch {
            return .failure(.badRecordData)
        }
        guard at == b.count else { return .failure(.trailingBytes) }
        return .success(m)
    }

    private static func readRecord(_ b: UnsafeRawBufferPointer, at: inout Int) throws(MDNSParseError) -> DNSRecord {
        let name = try readName(b, at: &at)
        guard at + 10 <= b.count else { throw .truncatedRecord }
        func u16(_ o: Int) -> UInt16 { UInt16(b[o]) << 8 | UInt16(b[o + 1]) }
        let type = u16(at), c = u16(at + 2)
        let ttl = UInt32(u16(at + 4)) << 16 | UInt32(u16(at + 6))
        let len = Int(u16(at + 8))
        at += 10
        guard at + len <= b.count else { throw .truncatedRecord }
        let end = at + len
        let data: DNSRecord.Data
        switch MDNS.RecordType(rawValue: type) {
        case .ptr?:
            var p = at
            data = .ptr(try readName(b, at: &p, limit: end))
            guard p == end else { throw .badRecordData }
        case .srv?:
            guard len >= 7 else { throw .badRecordData }
            var p = at + 6
            let target = try readName(b, at: &p, limit: end)
            guard p == end else { throw .badRecordData }
            data = .srv(priority: u16(at), weight: u16(at + 2), port: u16(at + 4), target: target)
        case .txt?:
            var strings: [[UInt8]] = []
            var p = at
            while p < end {
                let n = Int(b[p])
                guard p + 1 + n <= end else { throw .badRecordData }
                strings.append(Array(b[(p + 1)..<(p + 1 + n)]))
                p += 1 + n
            }
            data = .txt(strings)
        case .a?:
            guard len == 4 else { throw .badRecordData }
            data = .a(IPAddressBytes(bytes: b[at..<end]))
        case .aaaa?:
            guard len == 16 else { throw .badRecordData }
            data = .aaaa(IPAddressBytes(bytes: b[at..<end]))
        default:
            data = .other(type: type, bytes: Array(b[at..<end]))
        }
        at = end
        return DNSRecord(name: name, rclass: c & ~MDNS.classTopBit, cacheFlush: c & MDNS.classTopBit != 0, ttl: ttl, data: data)
    }

    /// Reads a name at `at` (moved past it: past the first pointer if there is one).
    /// `limit`: where the enclosing field ends (RDATA); pointers may still lead anywhere earlier in the message.
    static func readName(_ b: UnsafeRawBufferPointer, at: inout Int, limit: Int? = nil) throws(MDNSParseError) -> DNSName {
        let end = limit ?? b.count
        var labels: [[UInt8]] = []
        var length = 1  // the final zero byte
        var p = at
        var jumped = false
        var pointers = 0
        // A pointer must go strictly backwards from where it is read: every
        // jump lowers `floor`, so a chain of pointers cannot come back around.
        var floor = at
        while true {
            guard p < (jumped ? b.count : end) else { throw .truncatedRecord }
            let len = Int(b[p])
            if len == 0 {
                if !jumped { at = p + 1 }
                return DNSName(labels: labels)
            }
            switch len & 0xC0 {
            case 0xC0:
                guard p + 1 < (jumped ? b.count : end) else { throw .truncatedRecord }
                let target = (len & 0x3F) << 8 | Int(b[p + 1])
                pointers += 1
                guard pointers <= MDNS.maxPointers, target < floor, target >= MDNS.headerSize else { throw .badPointer }
                if !jumped { at = p + 2 }
                jumped = true
                floor = target
                p = target
            case 0x00:
                guard len <= MDNS.maxLabelLength else { throw .badLabel }
                guard p + 1 + len <= (jumped ? b.count : end) else { throw .truncatedRecord }
                length += len + 1
                guard length <= MDNS.maxNameLength else { throw .nameTooLong }
                labels.append(Array(b[(p + 1)..<(p + 1 + len)]))
                p += 1 + len
            default:
                throw .badLabel  // 0x40, 0x80: extended label types (RFC 6891), never used in mDNS
            }
        }
    }
}

// MARK: - Whalescale's announcement

/// What a node says about itself on the LAN (layout in the header). The signature is
/// checked by the LAN machine (`LanAnnouncement.isValidlySigned` in Crypto).
public struct LanAnnouncement: Equatable, Sendable {
    public static let txtVersion = "1"
    public static let signatureSize = 64
    /// At most this many A/AAAA addresses are announced and read.
    public static let maxAddresses = 8
    public static let signingContext: [UInt8] = Array("whalescale lan announcement v1".utf8)
    /// RFC 6762 §10: 120 s for records with a host name (SRV, A/AAAA), 75 min for the others.
    public static let hostTTL: UInt32 = 120
    public static let otherTTL: UInt32 = 4500

    public var key: PublicKey
    /// Our Whalescale UDP port.
    public var port: UInt16
    /// Only ever grows (per sender): a lower or equal one is a replay.
    public var sequence: UInt64
    /// The addresses (port ignored) the node announces, IPv4 and IPv6.
    public var addresses: [Endpoint]
    public var signature: [UInt8]

    public init(key: PublicKey, port: UInt16, sequence: UInt64, addresses: [Endpoint], signature: [UInt8]) {
        self.key = key
        self.port = port
        self.sequence = sequence
        self.addresses = Array(addresses.prefix(Self.maxAddresses)).map { Endpoint(family: $0.family, address: $0.address, port: 0) }
        self.signature = signature
    }

    public static func signedPart(key: PublicKey, port: UInt16, sequence: UInt64, addresses: [Endpoint]) -> [UInt8] {
        var b = signingContext
        b += key.bytes
        b.append(UInt8(port >> 8)); b.append(UInt8(port & 0xff))
        withUnsafeBytes(of: sequence.bigEndian) { b += $0 }
        let list = addresses.prefix(maxAddresses)
        b.append(UInt8(list.count))
        for a in list {
            b.append(a.family.rawValue)
            b += a.address.bytes
        }
        return b
    }

    public var signedPart: [UInt8] { Self.signedPart(key: key, port: port, sequence: sequence, addresses: addresses) }

    /// "ws-" and the first 8 key bytes in hex.
    public static func instanceLabel(_ key: PublicKey) -> String { "ws-" + Hex.encode(key.bytes.prefix(8)) }
    public static var serviceName: DNSName { DNSName(MDNS.service) }
    public var instanceName: DNSName { DNSName([Self.instanceLabel(key)] + MDNS.service) }
    public var hostName: DNSName { DNSName([Self.instanceLabel(key), "local"]) }

    /// The announcement as an mDNS response (also the answer to a query).
    /// `goodbye`: every TTL 0 (RFC 6762 §10.1: "the record is about to be
    /// removed"), sent when the node stops so browsers drop it at once.
    public func message(goodbye: Bool = false) -> DNSMessage {
        let txt: [[UInt8]] = ["txtvers=\(Self.txtVersion)", "id=\(Hex.encode(key.bytes))", "port=\(port)",
                              "seq=\(sequence)", "sig=\(Hex.encode(signature))"].map { Array($0.utf8) }
        let host = goodbye ? 0 : Self.hostTTL, other = goodbye ? 0 : Self.otherTTL
        var answers = [
            DNSRecord(name: Self.serviceName, ttl: other, data: .ptr(instanceName)),
            DNSRecord(name: instanceName, cacheFlush: true, ttl: host,
                      data: .srv(priority: 0, weight: 0, port: port, target: hostName)),
            DNSRecord(name: instanceName, cacheFlush: true, ttl: other, data: .txt(txt)),
        ]
        for a in addresses {
            answers.append(DNSRecord(name: hostName, cacheFlush: true, ttl: host, data: a.family == .v4 ? .a(a.address) : .aaaa(a.address)))
        }
        return DNSMessage(flags: MDNS.flagResponse | MDNS.flagAuthoritative, answers: answers)
    }

    public func serialize(goodbye: Bool = false) -> [UInt8] { message(goodbye: goodbye).serialize() }

    /// The query for our service (PTR, multicast answer wanted).
    public static func query() -> [UInt8] {
        DNSMessage(flags: 0, questions: [DNSQuestion(name: serviceName, type: MDNS.RecordType.ptr.rawValue)]).serialize()
    }

    /// Why a message naming our service is not a usable announcement.
    public enum Problem: Error, Equatable, Sendable {
        /// A required record or TXT key is missing, repeated or unreadable.
        case malformed(String)
    }

    /// The Whalescale announcements in a parsed response: one per PTR to an
    /// instance of our service (nil: the message does not mention our
    /// service at all, it is someone else's mDNS traffic).
    public static func extract(from m: DNSMessage) -> [Result<LanAnnouncement, Problem>]? {
        guard m.isResponse else { return nil }
        let records = m.records
        let instances = records.compactMap { r -> DNSName? in
            guard r.name.matches(serviceName), case .ptr(let target) = r.data else { return nil }
            return target
        }
        guard !instances.isEmpty else { return nil }
        return instances.prefix(maxAddresses).map { extract(instance: $0, from: records) }
    }

    private static func extract(instance: DNSName, from records: [DNSRecord]) -> Result<LanAnnouncement, Problem> {
        let txts = records.filter { $0.name.matches(instance) && $0.data.type == MDNS.RecordType.txt.rawValue }
        guard txts.count == 1, case .txt(let strings) = txts[0].data else { return .failure(.malformed("txt_count")) }
        var fields: [String: String] = [:]
        for s in strings {
            guard let eq = s.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let k = String(decoding: s[..<eq], as: UTF8.self).lowercased()
            // RFC 6763 §6.4: "If a client receives a TXT record containing the same key more than once, then
            // the client MUST silently ignore all but the first occurrence".
            if fields[k] == nil { fields[k] = String(decoding: s[(eq + 1)...], as: UTF8.self) }
        }
        guard fields["txtvers"] == txtVersion else { return .failure(.malformed("txtvers")) }
        guard let idHex = fields["id"], let idBytes = Hex.decode(idHex), let key = PublicKey(bytes: idBytes) else {
            return .failure(.malformed("id"))
        }
        guard let portText = fields["port"], let port = UInt16(portText), port != 0 else { return .failure(.malformed("port")) }
        guard let seqText = fields["seq"], let seq = UInt64(seqText) else { return .failure(.malformed("seq")) }
        guard let sigHex = fields["sig"], let sig = Hex.decode(sigHex), sig.count == signatureSize else {
            return .failure(.malformed("sig"))
        }
        let srvs = records.filter { $0.name.matches(instance) && $0.data.type == MDNS.RecordType.srv.rawValue }
        guard srvs.count == 1, case .srv(_, _, let srvPort, let target) = srvs[0].data, srvPort == port else {
            return .failure(.malformed("srv"))
        }
        var addresses: [Endpoint] = []
        for r in records where r.name.matches(target) {
            switch r.data {
            case .a(let a): addresses.append(Endpoint(family: .v4, address: a, port: 0))
            case .aaaa(let a): addresses.append(Endpoint(family: .v6, address: a, port: 0))
            default: continue
            }
        }
        guard !addresses.isEmpty, addresses.count <= maxAddresses else { return .failure(.malformed("addresses")) }
        return .success(LanAnnouncement(key: key, port: port, sequence: seq, addresses: addresses, signature: sig))
    }

    /// Whether `m` asks for our service (a PTR or ANY question for `_whalescale._udp.local`).
    public static func asksForService(_ m: DNSMessage) -> Bool {
        !m.isResponse && m.questions.contains {
            $0.name.matches(serviceName) && ($0.type == MDNS.RecordType.ptr.rawValue || $0.type == MDNS.RecordType.any.rawValue)
        }
    }
}

/// Lowercase hex, for TXT values (Wire has no base64: that is Crypto's).
public enum Hex {
    public static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Nil unless `text` is an even number of hex digits.
    public static func decode(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        func v(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let h = v(u[i]), let l = v(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }
}
