import Support
import Wire
import Crypto
import Protocol

/// `wsctl status` without `--json`: what a person wants at a glance, in the
/// spirit of `tailscale status`. The question it answers first is *how* each
/// peer is reached (STYLE 18), so that column reads like a sentence:
///
///     ws0  10.77.0.1/24  listening on 51820  anchor
///     public key: 3q2+7w...=
///     nat: endpoint-independent
///     endpoints: 198.51.100.7:51820 (observed), 192.168.1.10:51820 (local)
///     anchors: anchor-1 reachable, anchor-2 unreachable
///
///     PEER      ADDRESS        STATE  REACHED                    RTT    HANDSHAKE  RX       TX         RECORD
///     anchor-1  10.77.0.10/32  up     direct 203.0.113.10:51820  1.2ms  12s ago    1.2 MiB  340.0 KiB  #3
///     laptop    10.77.0.20/32  up     relay via anchor-1         4.1ms  1m3s ago   88.0 KiB 12.1 KiB   #7
///     phone     10.77.0.30/32  idle   idle                       -      never      0 B      0 B        -
///
/// RECORD is the sequence of the peer's own signed endpoint record (gossip).
///
///     warnings:
///       - only one anchor is reachable
///
/// Every active path is listed (multipath uses several at once); a peer with
/// none shows its state instead ("idle", "handshaking"). Scripts should use
/// `--json`: this layout may change.
public func renderStatusTable(_ s: StatusReport) -> String {
    var out: [String] = []
    let n = s.node
    out.append("\(n.interface)  \(n.addresses.joined(separator: ","))  listening on \(n.listenPort)\(n.anchor ? "  anchor" : "")\(n.reactors > 1 ? "  \(n.reactors) reactors" : "")")
    out.append("public key: \(n.publicKey)")
    out.append("nat: \(n.nat.mapping.rawValue)" + (n.nat.evidence.isEmpty ? "" : " (" + n.nat.evidence.map { "\($0.anchor) saw \($0.observed)" }.joined(separator: ", ") + ")"))
    if n.endpoints.isEmpty {
        out.append("endpoints: none known yet")
    } else {
        out.append("endpoints: " + n.endpoints.map { "\($0.addr) (\($0.source.rawValue))" }.joined(separator: ", "))
    }
    if s.anchors.isEmpty {
        out.append("anchors: none configured")
    } else {
        out.append("anchors: " + s.anchors.map { "\($0.name) \($0.reachable ? "reachable" : "unreachable")" }.joined(separator: ", "))
    }
    let onLan = s.peers.compactMap { p in p.lan.map { "\(p.name) \($0.addr)" } }
    if !onLan.isEmpty { out.append("on this lan: " + onLan.joined(separator: ", ")) }
    out.append("")

    if s.peers.isEmpty {
        out.append("no peers configured")
    } else {
        var rows = [["PEER", "ADDRESS", "STATE", "REACHED", "RTT", "HANDSHAKE", "RX", "TX", "RECORD"]]
        for p in s.peers {
            rows.append([
                p.kind == "wireguard" ? "\(p.name) (wireguard)" : p.name,
                p.address.joined(separator: ","),
                p.state.rawValue,
                StatusText.reached(p),
                StatusText.rtt(p),
                p.lastHandshakeSecondsAgo.map { StatusText.age(seconds: $0) + " ago" } ?? "never",
                StatusText.bytes(p.rxBytes),
                StatusText.bytes(p.txBytes),
                // The peer's own signed endpoint record (gossip): its sequence, and
                // where it says the peer is (`wsctl explain` shows each endpoint).
                p.gossip.map { "#\($0.sequence)" } ?? "-",
            ])
        }
        out += StatusText.columns(rows)
        // Each session's transport cipher (negotiated per handshake; docs/wire.md).
        let ciphers = s.peers.compactMap { p in p.cipher.map { "\(p.name) \($0)" } }
        if !ciphers.isEmpty { out.append("ciphers: " + ciphers.joined(separator: ", ")) }
    }

    let drops = s.counters.filter { $0.value > 0 }.sorted { $0.key < $1.key }
    if !drops.isEmpty {
        out.append("")
        out.append("counters: " + drops.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
    }
    if !s.warnings.isEmpty {
        out.append("")
        out.append("warnings:")
        out += s.warnings.map { "  - \($0)" }
    }
    return out.joined(separator: "\n") + "\n"
}

/// `wsctl show-wg`: the node and its WireGuard peers in `wg show`'s layout,
/// so that people who know `wg` read it at a glance. The interface's public
/// key is the node's X25519 key (what the WireGuard peers configure); Whalescale
/// peers are left out (`wsctl status` shows them).
public func renderWireGuardShow(_ s: StatusReport) -> String {
    var out: [String] = []
    out.append("interface: \(s.node.interface)")
    out.append("  public key: \(s.node.wireGuardPublicKey)")
    out.append("  private key: (hidden)")
    out.append("  listening port: \(s.node.listenPort)")
    for p in s.peers where p.kind == "wireguard" {
        out.append("")
        out.append("peer: \(p.publicKey)")
        if let e = p.endpoint { out.append("  endpoint: \(e)") }
        out.append("  allowed ips: \(p.address.joined(separator: ", "))")
        if let ago = p.lastHandshakeSecondsAgo {
            out.append("  latest handshake: \(WireGuardShowText.ago(ago))")
        }
        if p.rxBytes > 0 || p.txBytes > 0 {
            out.append("  transfer: \(WireGuardShowText.bytes(p.rxBytes)) received, \(WireGuardShowText.bytes(p.txBytes)) sent")
        }
        if let k = p.persistentKeepaliveS { out.append("  persistent keepalive: every \(WireGuardShowText.ago(k, suffix: false))") }
        if let r = p.roam, r.newSources > 0 {
            out.append("  roaming (monitored): \(r.newSources) packets from a new source, \(r.taken) taken; last \(r.lastSource ?? "?")")
        }
    }
    return out.joined(separator: "\n") + "\n"
}

/// `wg show`'s wording for times and sizes.
public enum WireGuardShowText {
    /// "1 minute, 5 seconds ago", as `wg show` writes it.
    public static func ago(_ seconds: UInt64, suffix: Bool = true) -> String {
        if seconds == 0 { return suffix ? "Now" : "0 seconds" }
        var parts: [String] = []
        let units: [(UInt64, String)] = [(365 * 86400, "year"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")]
        var left = seconds
        for (size, name) in units where left >= size {
            let n = left / size
            left %= size
            parts.append("\(n) \(name)\(n == 1 ? "" : "s")")
        }
        return parts.joined(separator: ", ") + (suffix ? " ago" : "")
    }

    /// "1.50 KiB", as `wg show` writes it.
    public static func bytes(_ n: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where n >= size {
            let hundredths = (n.multipliedReportingOverflow(by: 100).overflow ? n / size * 100 : n * 100 / size)
            let frac = hundredths % 100
            return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac) \(name)"
        }
        return "\(n) B"
    }
}

/// The pieces of the table, separately testable.
enum StatusText {
    /// "direct 203.0.113.5:51820", "relay via anchor-1", "lan 192.168.1.20:51820",
    /// several joined by ", ", or the state when no path is active.
    static func reached(_ p: StatusReport.Peer) -> String {
        let active = p.paths.filter(\.active)
        guard !active.isEmpty else { return p.state.rawValue }
        return active.map(path).joined(separator: ", ")
    }

    /// The active path's smoothed RTT, "0.8ms"; "-" when none is known.
    static func rtt(_ p: StatusReport.Peer) -> String {
        guard let ms = p.paths.first(where: \.active)?.rttMs, ms.isFinite else { return "-" }
        return EchoReport.formatMs(ms) + "ms"
    }

    static func path(_ p: StatusReport.Path) -> String {
        switch p.kind {
        case .direct: return "direct \(p.remote)"
        case .lan: return "lan \(p.remote)"
        case .relay: return p.via.map { "relay via \($0)" } ?? "relay \(p.remote)"
        }
    }

    /// "45s", "3m4s", "2h5m", "3d4h": two units at most, enough to judge freshness.
    static func age(seconds t: UInt64) -> String {
        switch t {
        case ..<60: return "\(t)s"
        case ..<3600: return "\(t / 60)m\(t % 60)s"
        case ..<86400: return "\(t / 3600)h\(t % 3600 / 60)m"
        default: return "\(t / 86400)d\(t % 86400 / 3600)h"
        }
    }

    /// IEC units with one decimal, truncated: "0 B", "999 B", "1.5 KiB", "12.0 MiB".
    static func bytes(_ b: UInt64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        guard b >= 1024 else { return "\(b) B" }
        var unit: UInt64 = 1024
        var k = 0
        while k < units.count - 1 && b / unit >= 1024 {
            unit *= 1024
            k += 1
        }
        // (b % unit) < unit <= 2^60, so the * 10 cannot overflow.
        return "\(b / unit).\((b % unit) * 10 / unit) \(units[k])"
    }

    /// Left-aligned columns two spaces apart, no trailing blanks.
    static func columns(_ rows: [[String]]) -> [String] {
        let count = rows.map(\.count).max() ?? 0
        var widths = Array(repeating: 0, count: count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        return rows.map { row in
            var line = ""
            for (i, cell) in row.enumerated() {
                line += cell
                if i < row.count - 1 { line += String(repeating: " ", count: widths[i] - cell.count + 2) }
            }
            return line
        }
    }
}
