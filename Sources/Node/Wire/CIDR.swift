import Support

/// An IP prefix, "10.77.0.0/24" or "fd00:77::/64".
///
/// Cryptokey routing asks "which peer owns this destination?" for every packet
/// leaving the TUN device, so `contains` is the hot operation: the masks over
/// the two 64-bit halves of `IPAddressBytes` are computed once, here, and a
/// lookup is two ANDs and two compares, no byte loop and no allocation.
///
/// `address` is kept as written. For an interface address (`node.address =
/// "10.77.0.1/24"`) the host bits are the point; for a route they must be zero
/// (`Config` rejects `peer.address = "10.77.0.5/24"`), see `isNetworkAddress`.
/// `contains` and `overlaps` look only at the prefix bits, so both kinds work.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let family: Endpoint.Family
    /// IPv4 in the first 4 bytes (as in `Endpoint`), IPv6 in all 16.
    public let address: IPAddressBytes
    /// 0...32 for IPv4, 0...128 for IPv6.
    public let prefixLength: Int

    // Prefix masks over `address.hi` / `address.lo`. IPv4 lives in the top 32
    // bits of `hi`, so an IPv4 mask never reaches below bit 32 of `hi`.
    private let maskHi: UInt64
    private let maskLo: UInt64

    /// Nil if `prefixLength` is out of range for `family`.
    public init?(family: Endpoint.Family, address: IPAddressBytes, prefixLength: Int) {
        guard prefixLength >= 0, prefixLength <= CIDR.maxPrefixLength(family) else { return nil }
        self.family = family
        self.address = address
        self.prefixLength = prefixLength
        (maskHi, maskLo) = CIDR.masks(prefixLength)
    }

    /// Parses "a.b.c.d/n" or "v6/n". The prefix length is required: a bare
    /// address is rejected rather than silently read as /32.
    public init?(_ text: String) {
        guard case .success(let c) = CIDR.parse(text) else { return nil }
        self = c
    }

    /// The same prefix with the host bits cleared ("10.77.0.1/24" → "10.77.0.0/24").
    public var network: CIDR {
        var a = IPAddressBytes()
        a.hi = address.hi & maskHi
        a.lo = address.lo & maskLo
        // Same family and prefix length as self, which were valid.
        return CIDR(checked: family, a, prefixLength)
    }

    /// True if no host bit is set, i.e. this is a route, not an interface address.
    public var isNetworkAddress: Bool {
        address.hi & ~maskHi == 0 && address.lo & ~maskLo == 0
    }

    /// Whether `other` (an address of `family`) falls inside this prefix.
    /// The family matters: 10.0.0.1 and a00:1:: have the same leading bytes.
    @inline(__always)
    public func contains(_ other: IPAddressBytes, family: Endpoint.Family) -> Bool {
        family == self.family
            && (other.hi ^ address.hi) & maskHi == 0
            && (other.lo ^ address.lo) & maskLo == 0
    }

    /// Whether every address of `other` is inside this prefix.
    public func contains(_ other: CIDR) -> Bool {
        prefixLength <= other.prefixLength && contains(other.address, family: other.family)
    }

    /// Whether the two prefixes share at least one address. Two prefixes
    /// either nest or are disjoint, so this is "the shorter contains the longer".
    public func overlaps(_ other: CIDR) -> Bool {
        guard family == other.family else { return false }
        let (mh, ml) = prefixLength <= other.prefixLength ? (maskHi, maskLo) : (other.maskHi, other.maskLo)
        return (address.hi ^ other.address.hi) & mh == 0 && (address.lo ^ other.address.lo) & ml == 0
    }

    /// The address alone, without the prefix length ("10.77.0.1").
    public var addressText: String { family == .v4 ? address.v4Text : address.v6Text }

    public var description: String { "\(addressText)/\(prefixLength)" }

    /// Parses with a reason on failure, for configuration messages.
    package static func parse(_ text: String) -> Result<CIDR, CIDRParseError> {
        guard let slash = text.lastIndex(of: "/") else { return .failure(.noPrefixLength) }
        let host = String(text[..<slash])
        let digits = text[text.index(after: slash)...]
        let family: Endpoint.Family
        let bytes: IPAddressBytes
        if host.contains(":") {
            guard let a = IPAddressBytes(v6: host) else { return .failure(.badAddress(host)) }
            family = .v6
            bytes = a
        } else {
            // "010.1.1.1" means 8.1.1.1 to inet_aton and 10.1.1.1 to others: refuse to guess.
            let octets = host.split(separator: ".", omittingEmptySubsequences: false)
            guard !octets.contains(where: { $0.count > 1 && $0.first == "0" }),
                  let a = IPAddressBytes(v4: host) else { return .failure(.badAddress(host)) }
            family = .v4
            bytes = a
        }
        // Digits only: Int("+24") would parse, and "/024" is a typo more often than not.
        guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              digits == "0" || digits.first != "0",
              let n = Int(digits), let c = CIDR(family: family, address: bytes, prefixLength: n)
        else { return .failure(.badPrefixLength(String(digits), family)) }
        return .success(c)
    }

    private init(checked family: Endpoint.Family, _ address: IPAddressBytes, _ prefixLength: Int) {
        self.family = family
        self.address = address
        self.prefixLength = prefixLength
        (maskHi, maskLo) = CIDR.masks(prefixLength)
    }

    /// Address width in bits: the largest prefix length of the family.
    public static func maxPrefixLength(_ family: Endpoint.Family) -> Int { family == .v4 ? 32 : 128 }

    /// The top `n` bits set across (hi, lo).
    private static func masks(_ n: Int) -> (UInt64, UInt64) {
        func top(_ k: Int) -> UInt64 { k <= 0 ? 0 : k >= 64 ? ~0 : ~0 << UInt64(64 - k) }
        return (top(n), top(n - 64))
    }
}

/// Why a CIDR did not parse; the text goes into a config error after the value.
package enum CIDRParseError: Error, Equatable, CustomStringConvertible {
    case noPrefixLength
    case badAddress(String)
    case badPrefixLength(String, Endpoint.Family)

    package var description: String {
        switch self {
        case .noPrefixLength:
            return "missing /prefix-length (write 10.77.0.10/32 or fd00::10/128 for a single address)"
        case .badAddress(let a):
            return "\"\(a)\" is not an IPv4 or IPv6 address"
        case .badPrefixLength(let p, let f):
            return "prefix length \"\(p)\" is not in 0...\(CIDR.maxPrefixLength(f))"
        }
    }
}

