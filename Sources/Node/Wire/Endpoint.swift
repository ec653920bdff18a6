import Support

/// A UDP endpoint (IPv4 or IPv6 address and port). Same fields as the shim's
/// `SocketAddress` (Reactor); the engine converts at the edge, so Wire, Crypto and
/// Protocol never see a socket type.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public enum Family: UInt8, Sendable { case v4 = 4, v6 = 6 }
    public var family: Family
    public var port: UInt16
    /// IPv4 in the first 4 bytes; IPv6 in all 16.
    public var address: IPAddressBytes
    public var scopeID: UInt32

    public init(family: Family, address: IPAddressBytes, port: UInt16, scopeID: UInt32 = 0) {
        self.family = family
        self.address = address
        self.port = port
        self.scopeID = scopeID
    }

    public static func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) -> Endpoint {
        Endpoint(family: .v4, address: IPAddressBytes(v4: (a, b, c, d)), port: port)
    }

    /// Parses "1.2.3.4:51820" or "[2001:db8::1]:51820".
    public init?(_ text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()), let a = IPAddressBytes(v6: host) else { return nil }
            self.init(family: .v6, address: a, port: port)
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            let host = String(text[..<colon])
            guard let port = UInt16(text[text.index(after: colon)...]), let a = IPAddressBytes(v4: host) else { return nil }
            self.init(family: .v4, address: a, port: port)
        }
    }

    public var addressText: String { family == .v4 ? address.v4Text : address.v6Text }

    /// A private or link-local address: 10/8, 172.16/12, 192.168/16, 169.254/16;
    /// fc00::/7 (ULA), fe80::/10. Reachable on a LAN, not from the internet.
    public var isPrivate: Bool {
        let a = address
        switch family {
        case .v4:
            return a[0] == 10 || (a[0] == 172 && a[1] & 0xF0 == 16) || (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254)
        case .v6:
            return a[0] & 0xFE == 0xFC || (a[0] == 0xFE && a[1] & 0xC0 == 0x80)
        }
    }

    /// IPv4 shared address space (100.64/10, RFC 6598: carrier-grade NAT, Tailscale's overlay).
    public var isShared: Bool { family == .v4 && address[0] == 100 && address[1] & 0xC0 == 64 }

    public var description: String { family == .v4 ? "\(addressText):\(port)" : "[\(addressText)]:\(port)" }
}

/// 16 address bytes stored inline (no heap): IPv4 uses the first four.
public struct IPAddressBytes: Hashable, Sendable {
    public var hi: UInt64 = 0
    public var lo: UInt64 = 0

    public init() {}
    public init(v4 b: (UInt8, UInt8, UInt8, UInt8)) {
        self.init(bytes: [b.0, b.1, b.2, b.3])
    }
    /// From up to 16 bytes in network order.
    public init<C: Collection>(bytes: C) where C.Element == UInt8 {
        var i = 0
        for b in bytes.prefix(16) {
            self[i] = b
            i += 1
        }
    }

    public subscript(i: Int) -> UInt8 {
        get { i < 8 ? UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64(i))) : UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64(i - 8))) }
        set {
            if i < 8 {
                let s = 56 - 8 * UInt64(i)
                hi = (hi & ~(0xff << s)) | (UInt64(newValue) << s)
            } else {
                let s = 56 - 8 * UInt64(i - 8)
                lo = (lo & ~(0xff << s)) | (UInt64(newValue) << s)
            }
        }
    }

    public var bytes: [UInt8] { (0..<16).map { self[$0] } }

    public init?(v4 text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt8(p) else { return nil }
            out.append(v)
        }
        self.init(bytes: out)
    }

    public init?(v6 text: String) {
        // RFC 4291 text forms: "::" once, hex groups, optional trailing dotted IPv4.
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var halves: [String] = []
        let chars = Array(text)
        if let k = chars.indices.first(where: { $0 + 1 < chars.count && chars[$0] == ":" && chars[$0 + 1] == ":" }) {
            halves = [String(chars[..<k]), String(chars[(k + 2)...])]
            if halves[1].hasPrefix(":") || halves[1].split(separator: ":", omittingEmptySubsequences: false).contains("") && !halves[1].isEmpty { return nil }
        } else {
            halves = [text]
        }
        guard halves.count <= 2, !text.isEmpty else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, p) in parts.enumerated() {
                if i == parts.count - 1, p.contains(".") {
                    guard let v4 = IPAddressBytes(v4: String(p)) else { return nil }
                    out.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    out.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                } else {
                    guard !p.isEmpty, p.count <= 4, let v = UInt16(p, radix: 16) else { return nil }
                    out.append(v)
                }
            }
            return out
        }
        guard let h = groups(halves[0]) else { return nil }
        head = h
        if halves.count == 2 {
            guard let t = groups(halves[1]) else { return nil }
            tail = t
            guard head.count + tail.count <= 7 else { return nil }
        } else {
            guard head.count == 8 else { return nil }
        }
        let all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        var b: [UInt8] = []
        for g in all { b += [UInt8(g >> 8), UInt8(g & 0xff)] }
        self.init(bytes: b)
    }

    public var v4Text: String { "\(self[0]).\(self[1]).\(self[2]).\(self[3])" }

    public var v6Text: String {
        let g = (0..<8).map { UInt16(self[2 * $0]) << 8 | UInt16(self[2 * $0 + 1]) }
        // RFC 5952: compress the longest run (length >= 2) of zero groups, first one on a tie.
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        func hex(_ r: Range<Int>) -> String { r.map { String(g[$0], radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLen)..<8)
    }
}
