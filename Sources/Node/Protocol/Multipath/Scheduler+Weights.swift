// The multipath scheduler's weight rules (rule 2 in Scheduler.swift's header;
// docs/multipath.md, "Scheduler"): the hysteresis, a path's weight basis from its
// delivered rate while saturated, when a path counts as saturated or clearly not, and the
// queue balance between paths that are not far. Pure decisions (`shouldCommit`,
// `capacityBasis`, `nextTrim`) are static, tested from tables.
import Support

extension MultipathScheduler {
    /// Hysteresis (seed 3.11), a pure decision: commit a new weight basis only when
    /// it moved more than 20% from the committed one (or none is committed yet).
    public static func shouldCommit(committed: Double, candidate: Double,
                                    threshold: Double = MultipathConstants.weightHysteresis) -> Bool {
        guard committed > 0 else { return candidate > 0 }
        return abs(candidate - committed) > threshold * committed
    }

    /// A path's weight basis from its delivered rate (a pure decision). Delivered data only
    /// measures capacity when the path is saturated (a queue stood on it for a whole
    /// bandwidth window), so then the basis is the delivered rate, up or down. An
    /// unsaturated path delivered all it was given and may take more: its basis never falls
    /// for being given little. While another path is saturated — the flow wants more than
    /// the split gives it — and this one showed no queue for a whole second
    /// (`clearWhileOthersSaturated`: both at once), an unsaturated path not measured lately
    /// (`measured`: saturated within `remeasure`) grows to delivered × probeGain, until it
    /// saturates and is measured. A measured one only follows what it delivers: growing it by a guess again
    /// would outrun the hysteresis (a guess 25% high, then measured 18% lower, stays).
    public static func capacityBasis(committed: Double, delivered: Double, saturated: Bool, measured: Bool,
                                     clearWhileOthersSaturated: Bool, probeGain: Double) -> Double {
        if saturated { return delivered }
        if !measured && clearWhileOthersSaturated { return max(committed, delivered * probeGain) }
        // Nobody saturated: the flow took what the split gave it. A first estimate waits
        // for a saturation (until then the path has the others' mean: equal shares).
        return committed > 0 ? max(committed, delivered) : 0
    }

    /// Saturated: a queue stood on the path at every RTT sample for a whole bandwidth window,
    /// and the last sample is recent (a path not probed often has no say).
    func isSaturated(_ p: Path, _ now: Instant) -> Bool { heldForWindow(p.queuedSince, p, now) }

    /// A sample state (queue, or none) unbroken since `since` for a whole bandwidth window,
    /// with the last sample recent (a path not probed often has no say).
    private func heldForWindow(_ since: Instant?, _ p: Path, _ now: Instant) -> Bool {
        guard let since else { return false }
        return now - since >= MultipathConstants.bandwidthWindow && now - p.queueAt <= timings.saturationFresh
    }

    /// Queue balance between paths that are not far (rule 2): a path whose last sample
    /// stood more than `balanceSlack` above the shortest queue among the others gives up
    /// `balanceStep` of its share per sample (down to `balanceFloor`), and takes it back
    /// otherwise. Their estimates carry the 20% hysteresis, so two equal paths measured 2%
    /// apart keep that split; the saturated one holds the flow back (perf/multipath A,
    /// 87 Mbit/s with one path at 47 and no queue, the other at 49 with one).
    /// `others` nil: no other path with a recent sample.
    public static func nextTrim(_ trim: Double, queue: Span, others: Span?, timings: MultipathTimings = .default) -> Double {
        guard let o = others else { return 1 }
        if queue > o + timings.balanceSlack { return max(timings.balanceFloor, trim * (1 - timings.balanceStep)) }
        return min(1, trim * (1 + timings.balanceStep))
    }

    func shortestQueue(besides i: Int, _ now: Instant) -> Span? {
        var best: Span?
        var k = 0
        while k < paths.count {
            let q = paths[k]
            if k != i, q.present, q.usable, !q.far, q.skipped == nil, q.queueAt != .zero, now - q.queueAt <= timings.saturationFresh {
                if best == nil || q.queue < best! { best = q.queue }
            }
            k += 1
        }
        return best
    }

    /// Clearly not saturated: no queue at any RTT sample for a whole bandwidth window. Only
    /// such a path is guessed upward while another is saturated; one whose queue comes and
    /// goes is left to the queue balance (perf/multipath A's slow start: a path with 2–5 ms
    /// of queue guessed 1.5× its rate, the split at 0.6 / 0.4 for half a second).
    func isClear(_ p: Path, _ now: Instant) -> Bool { heldForWindow(p.clearSince, p, now) }

    func anySaturated(besides i: Int, _ now: Instant) -> Bool {
        var k = 0
        while k < paths.count {
            if k != i, isCandidate(k), !paths[k].far, isSaturated(paths[k], now) { return true }
            k += 1
        }
        return false
    }
}
