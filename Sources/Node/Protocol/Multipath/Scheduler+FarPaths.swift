// The multipath scheduler's far paths (rule 4b in Scheduler.swift's header; docs/multipath.md,
// "Scheduler"): which paths are far, the cap each one carries at most, and how the cap
// follows the path's own queue. Pure decisions (`isFar`, `nextCap`, `tooFar` in
// Scheduler.swift) are static, so NodeCore's probes and the tests use the same rules.
import Support

extension MultipathScheduler {
    /// A far path's next cap (rule 4b, a pure decision): none yet, the start; its queue
    /// above `farQueueHigh`, `farCut` × what it carried (the cap if less, or if it carried
    /// nothing measured; at least `farCut`² × the cap); the fastest path not busy (no queue of `farBusy` in its last
    /// sample), × `farDecay`; its queue above half the limit, × `farTrim`; at most half the
    /// limit while the cap was binding (it turned a packet away since the last sample),
    /// × `farGrow` (× `farGrowFast` at `farQueueEmpty` or less: below what the path
    /// carries); else unchanged. Never below `farMinCap`.
    public static func nextCap(cap: Double, sent: Double, queue: Span, limited: Bool, fastBusy: Bool, fastIdle: Bool? = nil,
                               start: Double, timings t: MultipathTimings) -> Double {
        guard cap > 0 else { return max(t.farMinCap, start) }
        // Cut below what it carried, but by at most farCut² of the cap in one sample: the
        // sent rate is a second's average and lags a cap that was just raised or lifted
        // (B's start: lifted to 20.7 Mbit/s, then cut to 10.3 from a sent rate of 12).
        if queue > t.farQueueHigh { return max(t.farMinCap, t.farCut * (sent > 0 ? max(min(cap, sent), t.farCut * cap) : cap)) }
        if fastIdle ?? !fastBusy { return max(t.farMinCap, cap * t.farDecay) }
        if !fastBusy { return cap }
        if queue.ns > t.farQueueHigh.ns / 2 { return max(t.farMinCap, cap * t.farTrim) }
        if limited && queue <= t.farQueueEmpty { return cap * t.farGrowFast }
        if limited { return cap * t.farGrow }
        return cap
    }

    /// Rule 4b's classification (a pure decision, also NodeCore's for its probes): base
    /// one-way delay (half the smallest RTT) more than max(`farSpread`, the fastest path's
    /// base one-way delay) behind the fastest path's. (A relayed path 10 ms behind a 10 ms
    /// direct one is not far; B's 60 ms path beside a 20 ms one is.)
    public static func isFar(minRTT b: Span, fastest f: Span, timings: MultipathTimings) -> Bool {
        b > f && b.ns / 2 - f.ns / 2 > max(timings.farSpread.ns, f.ns / 2)
    }

    /// Rule 4b's classification over the usable paths (`isFar`). A path that becomes
    /// far starts a cap; one that stops being far drops it.
    mutating func classifyFar() {
        let fastest = fastestPath(nonFarOnly: false).flatMap { paths[$0].minRTT ?? paths[$0].srtt }
        for j in 0..<paths.count {
            var far = false
            if paths[j].present && paths[j].usable, let f = fastest, let b = paths[j].minRTT ?? paths[j].srtt {
                far = Self.isFar(minRTT: b, fastest: f, timings: timings)
            }
            guard far != paths[j].far else { continue }
            paths[j].far = far
            paths[j].capBps = 0
            paths[j].tokens = 0
            paths[j].tokensAt = .zero
            paths[j].capLimited = false
            paths[j].capSeeded = false
            paths[j].capCutOnce = false
            if far {
                paths[j].capBps = Self.nextCap(cap: 0, sent: 0, queue: .zero, limited: false, fastBusy: false,
                                               start: startCap(), timings: timings)
                paths[j].committed = paths[j].capBps
            }
            dirty = true
        }
    }

    /// A far path's first cap: `farStartShare` of the largest weight basis among the paths
    /// that are not far (or, before one has a basis, of what it sent over its first window).
    func startCap() -> Double {
        var m = 0.0
        for j in 0..<paths.count where paths[j].present && paths[j].usable && !paths[j].far {
            m = max(m, paths[j].committed > 0 ? min(paths[j].committed, paths[j].sentBps) : 0, paths[j].windowed ? paths[j].sentBps : 0)
        }
        return timings.farStartShare * m
    }

    /// A new RTT sample of far path i: its cap follows its queue and the fastest path's
    /// (`nextCap`); its committed basis follows the cap with the hysteresis.
    mutating func capControl(_ i: Int, now: Instant) {
        // The fastest usable path that is not far: busy when its last sample (at most
        // 500 ms old) stood `farBusy` above its smallest RTT.
        var fastBusy = false
        if let f = fastestPath(nonFarOnly: true) { fastBusy = paths[f].queue >= timings.farBusy && now - paths[f].queueAt < .milliseconds(500) }
        // Idle: not busy for `farIdleHold`. A TCP backoff drains the fast path's queue for a
        // few hundred ms; decaying the cap then left B's far path at 12 of its 19 Mbit/s for
        // a second after each one.
        if fastBusy { fastBusyAt = now }
        let fastIdle = !fastBusy && now - fastBusyAt >= timings.farIdleHold
        let start = startCap()
        var next = Self.nextCap(cap: paths[i].capBps, sent: paths[i].sentBps, queue: paths[i].queue,
                                limited: paths[i].capLimited, fastBusy: fastBusy, fastIdle: fastIdle, start: start,
                                timings: timings)
        // Until its queue first passed the limit, the cap is at least `farStartShare` of what
        // the fastest path carries now: a flow that starts after the paths were idle seeds
        // the cap from the first quarter second's rate, and growing from there by steps
        // took over a second of perf/multipath B's 12.
        if paths[i].queue > timings.farQueueHigh { paths[i].capCutOnce = true }
        if !paths[i].capCutOnce && fastBusy { next = max(next, start) }
        paths[i].capLimited = false
        if next < paths[i].capBps { counters.capCuts += 1 } else if next > paths[i].capBps { counters.capRaises += 1 }
        paths[i].capBps = next
        if Self.shouldCommit(committed: paths[i].committed, candidate: next) {
            if paths[i].committed > 0 { counters.weightChanges += 1 }
            paths[i].committed = next
            dirty = true
        }
    }

    /// A far path's first cap was taken before the paths that are not far had a basis:
    /// start over from theirs once they have one.
    mutating func seedCap(_ i: Int) {
        let start = startCap()
        guard start > 0 else { return }
        paths[i].capSeeded = true
        guard start > paths[i].capBps else { return }
        paths[i].capBps = start
        paths[i].committed = start
        dirty = true
    }

    /// Refills far path i's bucket (5 ms of its cap, at least two full packets) and says
    /// whether it holds `length` bytes.
    mutating func hasTokens(_ i: Int, _ length: Double, _ now: Instant) -> Bool {
        let rate = paths[i].capBps / 8
        let bucket = max(rate * 0.005, 3000)
        if paths[i].tokensAt == .zero {
            paths[i].tokens = bucket
        } else if now > paths[i].tokensAt {
            paths[i].tokens = min(bucket, paths[i].tokens + rate * (now - paths[i].tokensAt).seconds)
        }
        paths[i].tokensAt = now
        return paths[i].tokens >= length
    }

    /// The usable path with the smallest base RTT (its smallest, else its smoothed RTT),
    /// among all or only those that are not far; ties: the lower index.
    func fastestPath(nonFarOnly: Bool) -> Int? {
        var best: Int?
        for j in 0..<paths.count where paths[j].present && paths[j].usable && !(nonFarOnly && paths[j].far) {
            guard let b = paths[j].minRTT ?? paths[j].srtt else { continue }
            if let f = best, let fb = paths[f].minRTT ?? paths[f].srtt, fb <= b { continue }
            best = j
        }
        return best
    }
}
