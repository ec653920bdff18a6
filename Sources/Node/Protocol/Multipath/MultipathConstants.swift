// Multipath constants (docs/multipath.md; seed 2.8–2.11, 3.11; DESIGN §7).
// The machines in this folder read them; the data path runs those machines
// per session (the scheduler in the owning shard, the reorder buffer in the
// receiving lane: docs/multipath.md, "Wired").
import Support

public enum MultipathConstants {
    /// Reorder buffer depth, packets (seed 2.9, DESIGN §7): the most packets a
    /// session holds while waiting for a gap. Bounds memory per session and the
    /// scheduler's reordering-depth constraint.
    public static let reorderDepth = 128
    /// Reorder buffer window, counters: how far above the next counter to release a
    /// held packet may be (ReorderBuffer's file comment: a slow path's gap spans every
    /// path's packets, but only the faster paths' wait behind it). Memory per buffer
    /// grows with it (a slot per counter: `ReorderBuffer.storageBytes`).
    public static let reorderWindow = 512

    /// Paths per session a scheduler / reorder buffer tracks (fixed arrays: no
    /// allocation after init, and "O(paths)" per packet is a constant).
    public static let maxPaths = 8

    /// Bandwidth estimate window, 1 s (issue 14: "measured over 1 s from
    /// delivered data"), kept as 10 buckets of 100 ms.
    public static let bandwidthWindow = Span.seconds(UInt64(1))
    public static let bandwidthBuckets = 10

    /// Weight hysteresis (seed 3.11): a path's committed weight changes only when
    /// its estimate moved more than this fraction from the committed value.
    public static let weightHysteresis = 0.20
}

/// Values that drive timers and thresholds; tests may override them.
public struct MultipathTimings: Sendable, Equatable {
    /// Smallest and largest reorder release timeout. The timeout adapts between them
    /// from the measured latency spread.
    public var minReleaseTimeout: Span = .milliseconds(10)
    public var maxReleaseTimeout: Span = .milliseconds(1000)
    /// Release timeout = spread × factor + margin (clamped): a gap is given up once it
    /// has waited clearly longer than the slowest path's lag behind the fastest.
    public var releaseTimeoutFactor = 1.5
    public var releaseTimeoutMargin: Span = .milliseconds(5)
    /// Path failure: declared when nothing arrived on the path for
    /// max(failureRTTs × (srtt + 4·rttvar), minFailureTimeout) after something was sent
    /// on it ("within a few RTTs while data flows").
    public var failureRTTs: UInt64 = 3
    public var minFailureTimeout: Span = .milliseconds(100)
    /// RTT assumed before any sample (RFC 6298's 1 s is too long for failure detection
    /// on a path that already carries data; 300 ms is a slow mobile link).
    public var initialRTT: Span = .milliseconds(300)
    /// Make-before-break overlap: a new path's packets are also sent on an established
    /// path until the new path delivered something, at most this long.
    public var overlap: Span = .milliseconds(500)
    /// Capacity probe: a path is saturated while every RTT sample of a second stood more
    /// than `queueingSlack` above its minimum. One that showed no queue for a second while
    /// another is saturated, and was not measured saturated within `remeasure`, grows to
    /// its delivered rate × `probeGain`, so its share can grow until a queue builds
    /// (delivered rate alone would freeze the shares it was first given; the step must
    /// clear the 20% hysteresis). `MultipathScheduler.capacityBasis`.
    public var probeGain = 1.5
    public var queueingSlack: Span = .milliseconds(5)
    /// A path counts as saturated only while its last RTT sample is at most this old
    /// (a spread's paths are pinged every `ConnectivityTimings.farProbe` while data flows).
    public var saturationFresh: Span = .milliseconds(500)
    /// A measured basis (the path was saturated) stops being trusted as the path's capacity
    /// after this long without saturation: it may grow by `probeGain` again.
    /// Queue balance between paths that are not far (`MultipathScheduler.nextTrim`).
    public var balanceSlack: Span = .milliseconds(10)
    public var balanceStep = 0.01
    public var balanceFloor = 0.5
    public var remeasure: Span = .seconds(UInt64(5))
    /// Reordering-depth constraint: a path is skipped when the packets the receiver
    /// would hold behind it (send rate × its latency spread) exceed `depthSkip` × depth,
    /// and used again below `depthResume` × depth (hysteresis).
    public var depthSkip = 1.0
    public var depthResume = 0.8
    /// Latency rule (seed 2.11): a path whose base one-way delay (half its smallest RTT)
    /// exceeds the reference path's by more than max(`spreadFloor`, the reference's base
    /// one-way delay) is skipped: perf/multipath B's 60 ms path is (20 > 15 ms), C's
    /// 200 ms one too. (Session 8 built and measured a rate-aware "absorbability" rule that
    /// admitted B's path: it lost to the fast path alone in every run, 17–43 vs 45 Mbit/s,
    /// because the receiver then needs more than the depth; removed, in git history at
    /// 71b4d91, until per-path delivery feedback exists: perf/results/multipath.md.)
    public var latencySkip = true
    public var spreadFloor: Span = .milliseconds(15)
    /// The latency rule's factor: a path is too far beyond `latencyFactor` × max(`spreadFloor`,
    /// the reference's base one-way delay). 2 since session 10, when far paths got a cap
    /// (below): B's 60 ms path (20 ms behind) is in, C's 200 ms one (90 ms behind) is not.
    public var latencyFactor = 2.0
    /// Far paths (seed 2.11; docs/multipath.md, "Far paths"): a path whose base one-way
    /// delay is more than max(`farSpread`, the fastest path's) behind the fastest path's carries at most a cap, a
    /// token bucket, and the cap follows the path's own queue in each new RTT sample
    /// (NodeCore pings a far path of a spread, and the spread's fastest path, every
    /// `ConnectivityTimings.farProbe`): a queue above `farQueueHigh` cuts it to `farCut` ×
    /// what the path carried (or the cap, if less); while the fastest path's last sample
    /// showed a queue of `farBusy` or more (the flow wants more than it carries), a queue
    /// above half the limit trims it × `farTrim`, and one at most half the limit, after the
    /// cap turned a packet away, raises it × `farGrow` (× `farGrowFast` at `farQueueEmpty`
    /// or less); while the fastest path shows no such queue it decays × `farDecay` (a flow
    /// the fast path carries alone keeps off the far one). It starts at `farStartShare` ×
    /// the fastest path's rate, is lifted to that while the fastest path is busy until its
    /// queue first passes the limit, never below `farMinCap`, and weighs `farWeightGain` ×
    /// its cap in the round robin (its committed basis follows the cap with the 20%
    /// hysteresis), so that at full load the bucket, not the share, says what it carries:
    /// the fast path takes the rest, its queue (not the far path's) absorbs the inner
    /// TCP's sawtooth, and the receiver holds little more than the base spread's worth of
    /// the fast path's packets.
    public var farSpread: Span = .milliseconds(5)
    public var farQueueHigh: Span = .milliseconds(8)
    public var farBusy: Span = .milliseconds(3)
    public var farCut = 0.85
    public var farTrim = 0.98
    public var farQueueEmpty: Span = .milliseconds(1)
    public var farGrow = 1.02
    public var farGrowFast = 1.05
    public var farDecay = 0.95
    /// The fastest path counts as idle for the decay only after this long without a queue.
    public var farIdleHold: Span = .seconds(UInt64(1))
    public var farStartShare = 0.4
    public var farMinCap = 250_000.0
    public var farWeightGain = 1.5
    /// Packets shorter than this never take a far path: they need no bandwidth (TCP's
    /// ACKs, keepalives, interactive traffic), and a far path only adds to their delay.
    /// (The receiver of a bulk flow spread its ACKs half over B's 60 ms path: the
    /// sender's reorder buffer then released them in bursts, and each burst of the inner
    /// TCP overran the fast path's queue.)
    public var farMinLength = 600
    /// A skipped path is held out at least this long before it is reconsidered.
    public var skipHold: Span = .milliseconds(1000)

    public init() {}
    public static let `default` = MultipathTimings()
}
