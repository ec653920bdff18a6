// `wsctl netcheck`: what this node knows about its own network, from the
// status object (so the daemon sends no extra traffic to answer it):
//
//   nat: endpoint-dependent
//     anchor-1 saw 198.51.100.7:40001 (4s ago)
//     anchor-2 saw 198.51.100.7:40002 (2s ago)
//     the anchors saw different public ports for the one socket: the NAT maps a new port per destination
//   port mapping: none in force (tried: portmap_unavailable=1)
//   lan peers: none
//   ipv4: yes (local 192.168.1.10, public 198.51.100.7)
//   ipv6: no
//   anchors: anchor-1 reachable, anchor-2 reachable
import Support
import Wire
import Protocol

/// The `--json` object of `wsctl netcheck` (docs/wsctl.md).
public struct NetcheckReport: Codable, Sendable, Equatable {
    public struct Evidence: Codable, Sendable, Equatable {
        public var anchor: String
        public var observed: String
        public var ageS: UInt64
        enum CodingKeys: String, CodingKey { case anchor, observed, ageS = "age_s" }
    }
    public struct PortMapping: Codable, Sendable, Equatable {
        /// "pcp", "natpmp" or "upnp".
        public var `protocol`: String
        /// The public address and port the gateway maps to our port.
        public var external: String
    }
    public struct LANPeer: Codable, Sendable, Equatable {
        public var name: String
        public var remote: String
    }
    public struct Family: Codable, Sendable, Equatable {
        public var available: Bool
        /// Our addresses of this family on local interfaces.
        public var local: [String]
        /// Our public addresses of this family as anchors or the gateway report them.
        public var `public`: [String]
    }

    /// RFC 4787 mapping behaviour: endpoint-independent, endpoint-dependent, none, unknown.
    public var natMapping: NATMapping
    public var evidence: [Evidence]
    /// One sentence: why the mapping is what it is.
    public var verdict: String
    /// Mappings in force (empty: none).
    public var portMappings: [PortMapping]
    /// The port-mapping counters (`portmap_…`, `pcp_…`): what was tried and what the gateway said.
    public var portMappingCounters: [String: UInt64]
    public var lanPeers: [LANPeer]
    public var ipv4: Family
    public var ipv6: Family
    public var anchors: [StatusReport.Anchor]

    enum CodingKeys: String, CodingKey {
        case natMapping = "nat_mapping"
        case evidence, verdict
        case portMappings = "port_mappings"
        case portMappingCounters = "port_mapping_counters"
        case lanPeers = "lan_peers"
        case ipv4, ipv6, anchors
    }

    public init(_ s: StatusReport) {
        natMapping = s.node.nat.mapping
        evidence = s.node.nat.evidence.map { Evidence(anchor: $0.anchor, observed: $0.observed, ageS: $0.ageSeconds) }
        verdict = NetcheckReport.verdict(mapping: s.node.nat.mapping, evidence: s.node.nat.evidence)
        portMappings = s.node.endpoints.compactMap { e in
            switch e.source {
            case .pcp, .natpmp, .upnp: return PortMapping(protocol: e.source.rawValue, external: e.addr)
            default: return nil
            }
        }
        portMappingCounters = s.counters.filter { $0.key.hasPrefix("portmap_") || $0.key.hasPrefix("pcp_") }
        lanPeers = s.peers.compactMap { p in
            p.paths.first { $0.kind == .lan && $0.usable }.map { LANPeer(name: p.name, remote: $0.remote) }
        }
        func family(v6: Bool) -> Family {
            func host(_ addr: String) -> String? {
                guard let e = Endpoint(addr), (e.family == .v6) == v6 else { return nil }
                return e.addressText
            }
            let local = s.node.endpoints.filter { $0.source == .local }.compactMap { host($0.addr) }
            var pub: [String] = []
            for e in s.node.endpoints where e.source != .local && e.source != .lan {
                if let h = host(e.addr), !pub.contains(h) { pub.append(h) }
            }
            return Family(available: !local.isEmpty || !pub.isEmpty, local: local, public: pub)
        }
        ipv4 = family(v6: false)
        ipv6 = family(v6: true)
        anchors = s.anchors
    }

    /// The sentence under the NAT line.
    public static func verdict(mapping: NATMapping, evidence: [StatusReport.Observation]) -> String {
        let ports = Set(evidence.map(\.observed))
        switch mapping {
        case .endpointIndependent:
            return "every anchor saw the same public address and port: the NAT keeps one mapping for all destinations, so hole punching works"
        case .endpointDependent:
            return "the anchors saw different public ports for the one socket (\(ports.sorted().joined(separator: ", "))): the NAT maps a new port per destination (\"symmetric\"), so peers behind such a NAT too are reached through a relay unless a port mapping is in force"
        case .none:
            return "an anchor saw one of this host's own addresses: there is no NAT in front of this node"
        case .unknown:
            return evidence.count < 2
                ? "fewer than two anchors have reported where they see this node (\(evidence.count) so far): the mapping cannot be classified yet"
                : "the anchors' observations do not compare (different address families): the mapping is not classified"
        }
    }

    /// The text `wsctl netcheck` prints.
    public var text: String {
        var out: [String] = []
        out.append("nat: \(natMapping.rawValue)")
        for e in evidence { out.append("  \(e.anchor) saw \(e.observed) (\(StatusText.age(seconds: e.ageS)) ago)") }
        if evidence.isEmpty { out.append("  no anchor has reported where it sees this node yet") }
        out.append("  \(verdict)")
        if portMappings.isEmpty {
            let tried = portMappingCounters.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            out.append("port mapping: none in force" + (tried.isEmpty ? " (not tried, or no gateway answered yet)" : " (\(tried.joined(separator: ", ")))"))
        } else {
            out.append("port mapping: " + portMappings.map { "\($0.protocol) \($0.external)" }.joined(separator: ", "))
        }
        out.append("lan peers: " + (lanPeers.isEmpty ? "none" : lanPeers.map { "\($0.name) \($0.remote)" }.joined(separator: ", ")))
        func fam(_ name: String, _ f: Family) -> String {
            guard f.available else { return "\(name): no" }
            var parts: [String] = []
            if !f.local.isEmpty { parts.append("local " + f.local.joined(separator: ", ")) }
            if !f.public.isEmpty { parts.append("public " + f.public.joined(separator: ", ")) }
            return "\(name): yes (\(parts.joined(separator: "; ")))"
        }
        out.append(fam("ipv4", ipv4))
        out.append(fam("ipv6", ipv6))
        out.append("anchors: " + (anchors.isEmpty ? "none configured" : anchors.map { "\($0.name) \($0.reachable ? "reachable" : "unreachable")" }.joined(separator: ", ")))
        return out.joined(separator: "\n") + "\n"
    }
}
