// How an operator names a peer on the command line (`wsctl ping PEER`,
// `wsctl explain PEER`): its config name, an overlay address inside one of its
// routes ("10.77.0.22", or the route itself "10.77.0.22/32"), or its public
// key. Pure: the daemon and wsctl resolve against the status's peer list.
import Support
import Wire

public enum PeerQuery {
    /// The index in `peers` of the peer `text` names, or a sentence saying why none (or two) match.
    public static func resolve(_ text: String, in peers: [StatusReport.Peer]) -> Result<Int, PeerQueryError> {
        let q = text.trimmingASCIISpaces
        guard !q.isEmpty else { return .failure(PeerQueryError(message: "no peer named: give a name, an overlay address or a public key")) }
        if let i = peers.firstIndex(where: { $0.name == q }) { return .success(i) }
        if let i = peers.firstIndex(where: { $0.publicKey == q }) { return .success(i) }
        // An address: the most specific route that holds it (routes never overlap, but be exact anyway).
        let host = q.split(separator: "/", maxSplits: 1).first.map(String.init) ?? q
        let parsed: (Endpoint.Family, IPAddressBytes)?
        if let a = IPAddressBytes(v4: host) { parsed = (.v4, a) } else if let a = IPAddressBytes(v6: host) { parsed = (.v6, a) } else { parsed = nil }
        if let (family, address) = parsed {
            var best: (index: Int, length: Int)?
            for (i, p) in peers.enumerated() {
                for route in p.address {
                    guard let c = CIDR(route), c.contains(address, family: family) else { continue }
                    if best == nil || c.prefixLength > best!.length { best = (i, c.prefixLength) }
                }
            }
            if let best { return .success(best.index) }
            return .failure(PeerQueryError(message: "no peer's overlay routes hold \(host) (wsctl status lists them)"))
        }
        let names = peers.map(\.name)
        let close = names.filter { $0.lowercased().hasPrefix(q.lowercased()) }
        let hint = close.isEmpty ? "peers: \(names.prefix(20).joined(separator: ", "))" : "did you mean \(close.prefix(5).joined(separator: ", "))?"
        return .failure(PeerQueryError(message: "no peer \(String(reflecting: String(q.prefix(64)))): not a name, overlay address or public key of a member (\(hint))"))
    }
}

public struct PeerQueryError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension String {
    var trimmingASCIISpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
