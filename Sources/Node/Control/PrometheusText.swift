// The status object in Prometheus' text exposition format (version 0.0.4):
// what `wsctl metrics` prints. One `# HELP` and `# TYPE` per family, label
// values escaped (backslash, double quote, newline), families in a fixed order
// so a diff of two scrapes shows only what moved.
//
// Families (every name starts with `whalescale_`):
//   info{public_key,interface}                      gauge 1; reactors as a gauge of its own
//   peer_up{peer}, peer_rx_bytes_total{peer}, peer_tx_bytes_total{peer}, peer_rx_packets_total{peer},
//   peer_tx_packets_total{peer}, peer_handshakes_total{peer,result}, peer_last_handshake_seconds{peer}   per member
//   peer_path_kind_bytes_total{peer,kind,direction}, peer_path_kind_packets_total{peer,kind,direction}
//   path_active{peer,kind}, path_rtt_seconds{peer,kind}, path_loss_ratio{peer,kind}
//   anchor_reachable{anchor}, nat_mapping{mapping}, port_mapping{protocol,external}, warnings
//   counter_total{name}                             every status counter (drops by reason, relay, handoffs, ...)
import Support
import Wire
import Crypto
import Protocol

public enum PrometheusText {
    /// The exposition of `s` (ends with a newline).
    public static func render(_ s: StatusReport) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: [(String, String)], value: Double)]) {
            out += "# HELP whalescale_\(name) \(help)\n# TYPE whalescale_\(name) \(type)\n"
            for sample in samples {
                let labels = sample.labels.isEmpty ? "" : "{" + sample.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                out += "whalescale_\(name)\(labels) \(format(sample.value))\n"
            }
        }
        family("info", "gauge", "This node: its public key and interface (value 1).",
               [([("public_key", s.node.publicKey), ("interface", s.node.interface)], 1)])
        family("reactors", "gauge", "Reactor threads the daemon runs.", [([], Double(s.node.reactors))])
        family("peer_up", "gauge", "1 when a session with the member is established.",
               s.peers.map { ([("peer", $0.name)], $0.state == .up ? 1 : 0) })
        family("peer_rx_bytes_total", "counter", "Bytes received from the member (whole session messages).",
               s.peers.map { ([("peer", $0.name)], Double($0.rxBytes)) })
        family("peer_tx_bytes_total", "counter", "Bytes sent to the member (whole session messages).",
               s.peers.map { ([("peer", $0.name)], Double($0.txBytes)) })
        family("peer_rx_packets_total", "counter", "Session messages received from the member that authenticated.",
               s.peers.map { ([("peer", $0.name)], Double($0.rxPackets)) })
        family("peer_tx_packets_total", "counter", "Session messages sent to the member.",
               s.peers.map { ([("peer", $0.name)], Double($0.txPackets)) })
        family("peer_handshakes_total", "counter", "Handshakes with the member: completed, or failed (given up unanswered).",
               s.peers.flatMap { p in [([("peer", p.name), ("result", "completed")], Double(p.handshakesCompleted)),
                                       ([("peer", p.name), ("result", "failed")], Double(p.handshakesFailed))] })
        // By the kind of path the traffic went over (direct, lan, relay): each
        // session message counted once, on the kind of the path it took.
        let kinds = s.peers.flatMap { p in p.byPathKind.map { (peer: p.name, t: $0) } }
        family("peer_path_kind_bytes_total", "counter", "Bytes exchanged with the member over paths of one kind (direct, lan, relay).",
               kinds.flatMap { x in [([("peer", x.peer), ("kind", x.t.kind.rawValue), ("direction", "rx")], Double(x.t.rxBytes)),
                                     ([("peer", x.peer), ("kind", x.t.kind.rawValue), ("direction", "tx")], Double(x.t.txBytes))] })
        family("peer_path_kind_packets_total", "counter", "Session messages exchanged with the member over paths of one kind.",
               kinds.flatMap { x in [([("peer", x.peer), ("kind", x.t.kind.rawValue), ("direction", "rx")], Double(x.t.rxPackets)),
                                     ([("peer", x.peer), ("kind", x.t.kind.rawValue), ("direction", "tx")], Double(x.t.txPackets))] })
        family("peer_last_handshake_seconds", "gauge", "Seconds since the last completed handshake with the member.",
               s.peers.compactMap { p in p.lastHandshakeSecondsAgo.map { ([("peer", p.name)], Double($0)) } })
        let paths = s.peers.flatMap { p in p.paths.map { (peer: p.name, path: $0) } }
        family("path_active", "gauge", "1 for the path that carries the member's data now.",
               paths.map { ([("peer", $0.peer), ("kind", $0.path.kind.rawValue), ("remote", $0.path.remote)], $0.path.active ? 1 : 0) })
        family("path_rtt_seconds", "gauge", "Smoothed round-trip time of the path.",
               paths.compactMap { x in x.path.rttMs.map { ([("peer", x.peer), ("kind", x.path.kind.rawValue), ("remote", x.path.remote)], $0 / 1000) } })
        family("path_loss_ratio", "gauge", "Share of the path's last probes that were lost (0..1).",
               paths.compactMap { x in x.path.loss.map { ([("peer", x.peer), ("kind", x.path.kind.rawValue), ("remote", x.path.remote)], $0) } })
        family("anchor_reachable", "gauge", "1 when the anchor answers.",
               s.anchors.map { ([("anchor", $0.name)], $0.reachable ? 1 : 0) })
        family("nat_mapping", "gauge", "This node's NAT mapping behaviour as the anchors observe it (value 1).",
               [([("mapping", s.node.nat.mapping.rawValue)], 1)])
        family("port_mapping", "gauge", "1 for each port mapping in force (the public endpoint the gateway maps to our port).",
               s.node.endpoints.filter { [.pcp, .natpmp, .upnp].contains($0.source) }.map { ([("protocol", $0.source.rawValue), ("external", $0.addr)], 1) })
        family("warnings", "gauge", "Warnings the node reports (wsctl status lists them).", [([], Double(s.warnings.count))])
        family("counter_total", "counter", "Every status counter by name: drops by reason, relay, handoffs between reactors.",
               s.counters.keys.sorted().map { ([("name", $0)], Double(s.counters[$0]!)) })
        return out
    }

    static func escape(_ v: String) -> String {
        var o = ""
        for c in v {
            switch c {
            case "\\": o += "\\\\"
            case "\"": o += "\\\""
            case "\n": o += "\\n"
            default: o.append(c)
            }
        }
        return o
    }

    /// Integers without a fraction (counters stay exact up to 2^53), others as Swift prints them.
    static func format(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 9.007e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
