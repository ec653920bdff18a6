// Cryptokey routing, both ways (WireGuard's idea): a packet read from the TUN
// device goes to the member whose configured addresses hold its destination
// (longest prefix wins), and a decrypted packet is accepted only if its inner
// source lies in the addresses of the member it came from.
//
// Pure and allocation-free per packet: prefixes are kept longest first, so the
// first match is the longest; `CIDR.contains` is two masked compares.

import Support
import Wire
import Crypto

public struct CryptokeyRoutes: Sendable {
    private var entries: [(cidr: CIDR, peer: Int)] = []

    public init(_ routes: [(CIDR, Int)]) {
        entries = routes.map { (cidr: $0.0, peer: $0.1) }.sorted { $0.cidr.prefixLength > $1.cidr.prefixLength }
    }

    /// The member owning `address`, if any.
    @inline(__always)
    public func lookup(_ address: IPAddressBytes, family: Endpoint.Family) -> Int? {
        for e in entries where e.cidr.contains(address, family: family) { return e.peer }
        return nil
    }

    /// Whether `peer` may send from `source`: the longest matching prefix must be the peer's own.
    @inline(__always)
    public func allows(peer: Int, source: IPAddressBytes, family: Endpoint.Family) -> Bool {
        lookup(source, family: family) == peer
    }
}

/// The addresses of an IP packet, read in place. Nil for anything that is not a
/// well-formed IPv4 or IPv6 header (counted and dropped by the caller).
public enum IPHeader {
    public static func destination(_ p: UnsafeRawPointer, length: Int) -> (IPAddressBytes, Endpoint.Family)? {
        address(p, length: length, v4Offset: 16, v6Offset: 24)
    }

    public static func source(_ p: UnsafeRawPointer, length: Int) -> (IPAddressBytes, Endpoint.Family)? {
        address(p, length: length, v4Offset: 12, v6Offset: 8)
    }

    @inline(__always)
    static func address(_ p: UnsafeRawPointer, length: Int, v4Offset: Int, v6Offset: Int) -> (IPAddressBytes, Endpoint.Family)? {
        guard length >= 1 else { return nil }
        switch p.load(as: UInt8.self) >> 4 {
        case 4:
            guard length >= 20 else { return nil }
            var a = IPAddressBytes()
            a.hi = UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: v4Offset, as: UInt32.self))) << 32
            return (a, .v4)
        case 6:
            guard length >= 40 else { return nil }
            var a = IPAddressBytes()
            a.hi = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: v6Offset, as: UInt64.self))
            a.lo = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: v6Offset + 8, as: UInt64.self))
            return (a, .v6)
        default:
            return nil
        }
    }
}
