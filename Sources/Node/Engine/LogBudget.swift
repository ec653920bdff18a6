// A budget for log lines that a peer (or an attacker racing a peer's packets,
// security review F9) can make us write at its own rate: path and endpoint
// changes. At most `burst` lines, refilled at `perSecond`; what is over budget
// is counted, and the next line that fits says how many were left out. A
// plain value that takes `now`: the daemon asks before each such line.

import Support

struct LogBudget: Sendable {
    let burst: Double
    let perSecond: Double
    private var tokens: Double
    private var last: Instant?
    /// Lines left out since the last one written.
    private(set) var suppressed: UInt64 = 0

    init(burst: Int = 20, perSecond: Double = 2) {
        self.burst = Double(burst)
        self.perSecond = perSecond
        tokens = Double(burst)
    }

    /// Whether a line may be written now; if so, how many were left out before it (0: none).
    mutating func admit(now: Instant) -> (allowed: Bool, leftOut: UInt64) {
        if let l = last {
            if now > l { tokens = min(burst, tokens + (now - l).seconds * perSecond); last = now }
        } else {
            last = now
        }
        guard tokens >= 1 else {
            suppressed += 1
            return (false, 0)
        }
        tokens -= 1
        defer { suppressed = 0 }
        return (true, suppressed)
    }
}
