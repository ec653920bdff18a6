// The answer to a control `ping` request (`wsctl ping`), and its line of text:
//
//   pong from h2 (10.77.0.22) via direct 203.0.113.102:51820 in 0.8 ms
//   pong from h3 (10.77.0.23) via relay anchor-1 (203.0.113.10:51820) in 4.1 ms
//   no pong from h3 (10.77.0.23) within 2000 ms
import Support
import Wire
import Protocol

/// One in-tunnel ping's outcome (`{"ok":true,"echo":{...}}`, docs/wsctl.md).
public struct EchoReport: Codable, Sendable, Equatable {
    /// The peer's config name and first overlay address (without prefix).
    public var peer: String
    public var address: String?
    /// False when no reply came within `timeout_ms`.
    public var answered: Bool
    public var timeoutMs: Int
    public var rttMs: Double?
    /// The path the reply came back on: `direct`, `lan` or `relay`; nil when unanswered.
    public var kind: PathKind?
    /// Where the reply came from: the peer's address, or a relaying anchor's.
    public var remote: String?
    /// The relaying anchor's name.
    public var via: String?
    /// Where the peer saw our request come from.
    public var observed: String?

    public init(peer: String, address: String?, answered: Bool, timeoutMs: Int, rttMs: Double? = nil, kind: PathKind? = nil,
                remote: String? = nil, via: String? = nil, observed: String? = nil) {
        self.peer = peer
        self.address = address
        self.answered = answered
        self.timeoutMs = timeoutMs
        self.rttMs = rttMs
        self.kind = kind
        self.remote = remote
        self.via = via
        self.observed = observed
    }

    enum CodingKeys: String, CodingKey {
        case peer, address, answered
        case timeoutMs = "timeout_ms"
        case rttMs = "rtt_ms"
        case kind, remote, via, observed
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(peer, forKey: .peer)
        try c.encode(address, forKey: .address)
        try c.encode(answered, forKey: .answered)
        try c.encode(timeoutMs, forKey: .timeoutMs)
        try c.encode(rttMs.flatMap { $0.isFinite ? $0 : nil }, forKey: .rttMs)
        try c.encode(kind, forKey: .kind)
        try c.encode(remote, forKey: .remote)
        try c.encode(via, forKey: .via)
        try c.encode(observed, forKey: .observed)
    }

    /// "h2 (10.77.0.22)".
    var who: String { address.map { "\(peer) (\($0))" } ?? peer }

    /// The path as `wsctl status` names it: "direct 203.0.113.102:51820", "relay anchor-1 (203.0.113.10:51820)".
    public var pathText: String {
        guard let kind else { return "unknown path" }
        switch kind {
        case .relay: return "relay \(via ?? "?")\(remote.map { " (\($0))" } ?? "")"
        default: return "\(kind.rawValue) \(remote ?? "?")"
        }
    }

    /// The line `wsctl ping` prints for this reply.
    public var line: String {
        guard answered else { return "no pong from \(who) within \(timeoutMs) ms" }
        return "pong from \(who) via \(pathText) in \(EchoReport.formatMs(rttMs ?? 0)) ms"
    }

    /// 0.8, 12.3, 140: one decimal below 100 ms.
    public static func formatMs(_ ms: Double) -> String {
        guard ms.isFinite else { return "?" }
        if ms >= 100 { return String(Int(ms.rounded())) }
        let tenths = Int((ms * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}

/// `wsctl ping`'s summary line over a run of replies.
public struct EchoSummary: Sendable, Equatable {
    public var sent = 0
    public var received = 0
    public var rtts: [Double] = []
    public init() {}

    public mutating func add(_ r: EchoReport) {
        sent += 1
        if r.answered {
            received += 1
            if let rtt = r.rttMs, rtt.isFinite { rtts.append(rtt) }
        }
    }

    /// "3 sent, 3 received, 0% lost; rtt min/avg/max 0.6/0.8/1.1 ms".
    public var line: String {
        let lost = sent == 0 ? 0 : Int((Double(sent - received) * 100 / Double(sent)).rounded())
        var s = "\(sent) sent, \(received) received, \(lost)% lost"
        if let lo = rtts.min(), let hi = rtts.max() {
            let avg = rtts.reduce(0, +) / Double(rtts.count)
            s += "; rtt min/avg/max \(EchoReport.formatMs(lo))/\(EchoReport.formatMs(avg))/\(EchoReport.formatMs(hi)) ms"
        }
        return s
    }
}
