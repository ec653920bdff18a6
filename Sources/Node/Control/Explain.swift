// `wsctl explain PEER`: every way this node knows to reach one peer, who said
// the peer may be there, what the probes found, why the active path is the
// one in use and, for a relayed peer, what would make it direct. Read from
// the status object alone (pure; tested from tables in ExplainTests):
//
//   laptop (10.77.0.20/32): up, last handshake 12s ago
//   key 3q2+7w...=
//   paths (active first):
//   * relay via anchor-1 (203.0.113.10:51820)  rtt 4.1 ms, loss 0%, anchor reachable
//     direct 198.51.100.20:40002  no answer to pings  [gossip: self-signed record seq 7 (observed)]
//   gossip record: seq 7: 192.168.1.20:51820 (local), 198.51.100.20:40002 (observed)
//   active: relay via anchor-1
//   why: no direct path answered its pings; ...
//   to make it direct: ...
import Support
import Wire
import Protocol

public enum Explain {
    /// The text for `s.peers[index]`.
    public static func render(_ s: StatusReport, peer index: Int) -> String {
        let p = s.peers[index]
        var out: [String] = []
        var head = "\(p.name) (\(p.address.joined(separator: ", "))): \(p.state.rawValue)"
        head += p.lastHandshakeSecondsAgo.map { ", last handshake \(StatusText.age(seconds: $0)) ago" } ?? ", no handshake yet"
        out.append(head)
        out.append("key \(p.publicKey)" + (p.cipher.map { ", cipher \($0)" } ?? ""))
        if p.paths.isEmpty {
            out.append("paths: none known")
        } else {
            out.append("paths (active first; * = carries data now):")
            for path in p.paths { out.append(line(path, peer: p)) }
        }
        if let g = p.gossip {
            out.append("gossip record: seq \(g.sequence), signed by the peer: "
                       + (g.endpoints.isEmpty ? "no endpoints" : g.endpoints.map { "\($0.addr) (\($0.source.rawValue))" }.joined(separator: ", ")))
        } else {
            out.append("gossip record: none received yet")
        }
        if p.punching { out.append("hole punching: a round is running now") }
        let (active, why, fix) = reasons(s, p)
        out.append("active: \(active)")
        out.append("why: \(why)")
        if let fix { out.append("to make it direct: \(fix)") }
        return out.joined(separator: "\n") + "\n"
    }

    /// One path's line: kind and address, probe results, who attested it.
    static func line(_ path: StatusReport.Path, peer p: StatusReport.Peer) -> String {
        var l = (path.active ? "* " : "  ") + StatusText.path(path)
        if path.kind == .relay { l += " (\(path.remote))" }
        var probe: [String] = []
        if let rtt = path.rttMs { probe.append("rtt \(EchoReport.formatMs(rtt)) ms") }
        if let loss = path.loss { probe.append("loss \(Int((loss * 100).rounded()))%") }
        if path.kind == .relay {
            probe.append(path.usable ? "anchor reachable" : "anchor unreachable")
        } else {
            probe.append(path.usable ? "answers pings" : (path.rttMs == nil ? "no answer to pings yet" : "stopped answering pings"))
        }
        l += "  " + probe.joined(separator: ", ")
        let who = attestation(path, peer: p)
        if !who.isEmpty { l += "  [\(who.joined(separator: "; "))]" }
        return l
    }

    /// Who said the peer is at this path's address.
    static func attestation(_ path: StatusReport.Path, peer p: StatusReport.Peer) -> [String] {
        if path.kind == .relay { return ["the anchor relays for both sides"] }
        var who: [String] = []
        for source in path.sources {
            switch source {
            case "gossip":
                let kind = p.gossip?.endpoints.first { $0.addr == path.remote }.map { " (\($0.source.rawValue))" } ?? ""
                who.append("gossip: self-signed record\(p.gossip.map { " seq \($0.sequence)" } ?? "")\(kind)")
            case "candidates": who.append("hint: the peer's candidates or an anchor's introduction (unsigned)")
            case "cache": who.append("cache: worked before (state_dir)")
            case "config": who.append("config: static endpoint")
            case "lan": who.append("lan: the peer's signed LAN announcement (mDNS) came from there\(p.lan == nil ? "" : " (\(p.lan!.addr))")")
            default: who.append(source)
            }
        }
        if who.isEmpty { who.append(path.kind == .lan ? "seen: the peer's packets came from there (lan)" : "seen: the peer's packets came from there") }
        return who
    }

    /// The peer's own NAT, as far as its signed record shows: two observed
    /// endpoints with one address and different ports mean a new port per destination.
    static func peerLooksSymmetric(_ p: StatusReport.Peer) -> Bool {
        guard let g = p.gossip else { return false }
        var ports: [String: Set<UInt16>] = [:]
        for e in g.endpoints where e.source == .observed {
            guard let ep = Endpoint(e.addr) else { continue }
            ports[ep.addressText, default: []].insert(ep.port)
        }
        return ports.values.contains { $0.count > 1 }
    }

    static func peerHasMapping(_ p: StatusReport.Peer) -> Bool {
        p.gossip?.endpoints.contains { [.upnp, .natpmp, .pcp].contains($0.source) } ?? false
    }

    /// (active path, why it is the one, what would make a relayed peer direct).
    static func reasons(_ s: StatusReport, _ p: StatusReport.Peer) -> (String, String, String?) {
        guard let active = p.paths.first(where: \.active) else {
            switch p.state {
            case .handshaking:
                return ("none yet", "a handshake is in flight; the path its answer comes back on becomes the active one", nil)
            default:
                let known = p.paths.isEmpty && p.gossip == nil
                return ("none", "no session: one starts when traffic goes to the peer (or `wsctl ping`)"
                        + (known ? "; no address of the peer is known yet: an anchor introduces members once both have sessions with it" : ""), nil)
            }
        }
        let name = StatusText.path(active)
        switch active.kind {
        case .lan:
            return (name, "a LAN path answers: it is preferred over direct and relay (no NAT in between, lowest latency)", nil)
        case .direct:
            let lanDown = p.paths.contains { $0.kind == .lan && !$0.usable }
            return (name, "a direct path answers its pings; direct is preferred over relay"
                    + (lanDown ? " (a LAN address is known but did not answer)" : ""), nil)
        case .relay:
            let direct = p.paths.filter { $0.kind != .relay }
            var why: String
            if direct.isEmpty {
                why = "no direct address of the peer is known to try (no gossip record with a public endpoint, no anchor introduction yet)"
            } else if let up = direct.first(where: \.usable) {
                // Validated but not chosen: the path manager's preference (PathManager.preferredOverActive) said no, for now.
                return (name, "\(StatusText.path(up)) answers its pings but is not active yet: the path manager moves data off the relay when a validated path is preferred over it (docs/connectivity.md)", nil)
            } else {
                why = "no direct path answered its pings (\(direct.count) tried), so data goes through the anchor"
            }
            if let t = p.nextDirectRetrySeconds { why += "; the next try for a direct path is in \(Int(t.rounded())) s" } else if p.punching {
                why += "; hole punching is running now"
            }
            let selfSymmetric = s.node.nat.mapping == .endpointDependent
            let peerSymmetric = peerLooksSymmetric(p)
            let fix: String
            switch (selfSymmetric, peerSymmetric) {
            case (true, true):
                fix = "both sides are behind endpoint-dependent (symmetric) NAT; a port mapping (UPnP, NAT-PMP or PCP) on either side, or an endpoint-independent NAT on either side, would allow a direct path"
            case (true, false):
                fix = "this node is behind an endpoint-dependent (symmetric) NAT\(peerHasMapping(p) ? "" : " and the peer advertises no port mapping"); a port mapping on this node's gateway (UPnP, NAT-PMP or PCP), or one on the peer's, would allow a direct path"
            case (false, true):
                fix = "the peer is behind an endpoint-dependent (symmetric) NAT (its record lists different public ports per anchor); a port mapping on its gateway, or on this node's, would allow a direct path"
            case (false, false):
                fix = s.node.nat.mapping == .unknown
                    ? "this node's NAT is not classified yet (fewer than two anchors answered); with two anchors the node can tell, and a port mapping on either side helps whatever the NAT"
                    : "neither NAT looks endpoint-dependent from here: a firewall may drop the punch packets (UDP to the peer's port), or the peer's addresses are stale; `wsctl netcheck` on both sides shows more"
            }
            return (name, why, fix)
        }
    }
}
