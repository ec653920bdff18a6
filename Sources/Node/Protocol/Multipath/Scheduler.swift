// The sender's multipath scheduler of one session (seed 2.8, 2.11, 3.11;
// DESIGN §7): which path each packet of a flow takes.
//
//   update(path, report, now)   health + delivered rate of a path (PathHealth,
//                               BandwidthEstimator): weights, skips, overlap
//   remove(path, now)           the path is gone
//   pick(counter, length, now) -> Pick?   per packet: a path, maybe a duplicate path
//   handleDelivered(path)       the peer confirmed delivery on the path (ends its overlap)
//
// Rules, in the order they apply:
// 1. Candidates: paths present, healthy (an RTT sample, not failed) and not skipped.
// 2. Weights: by estimated bandwidth. A path's weight basis is its delivered rate
//    over 1 s while it is saturated (every RTT sample of that second showed a
//    queue; a spread's paths are pinged every 100 ms while data flows); while it is
//    not, the basis never falls, and grows to delivered × probeGain only while
//    another path is saturated, this one showed no queue for a whole second
//    (`isClear`) and was not measured saturated within `remeasure` (delivered
//    data alone only measures what the path was given:
//    `capacityBasis`). The committed basis changes only when the new one differs by
//    more than 20% (seed 3.11: weights do not oscillate), except a path's first
//    measurement, which replaces the guess it had. A path with no estimate yet —
//    new, back from a failure or a skip, or nothing saturated so far — gets the
//    mean of the others (equal shares when none has one). Between paths that are
//    not far, a queue balance trims the share of the one whose queue stands above
//    the others' (`nextTrim`: 1% per sample, at most half): estimates 2% apart
//    inside the hysteresis would otherwise keep one path saturated and the other
//    not.
// 3. Spread: smooth weighted round robin over bytes (nginx's smooth WRR with
//    packet lengths): every candidate earns weight × length, the richest sends
//    and pays length. Deterministic, no bursts, O(paths) with paths ≤ 8.
// 4. Reordering depth (seed 2.11): the reference path is the usable one with the
//    most bandwidth; it is never skipped. Another path whose latency spread from
//    the reference (either way) would make the receiver hold more than the reorder
//    depth — the packets/s held behind it (the others' share; its own when it is
//    ahead) × spread > depth — is skipped ("reorder-depth"), and used
//    again only below 80% of the depth after `skipHold` (hysteresis); not between
//    two paths whose base delays are within `farSpread` (their spread is a queue,
//    which rule 2 moves the flow off). Per packet,
//    a hard check backs it: if the packet about to go on a faster path would
//    arrive `window` counters (the receiver's) or more after the oldest packet still
//    in flight on a slower path, one of the two is skipped at once (the slower, unless it is the
//    reference). The packet always goes: nothing is held or rate-limited here
//    (seed 2.8: no congestion control in the tunnel).
// 4b. Far paths: a path whose base one-way delay is more than max(`farSpread`, the
//    fastest usable path's) behind the fastest usable path's (`isFar`) carries at most
//    a cap (a token bucket; a packet it turns away goes by the round robin's next
//    choice; packets under `farMinLength` never take it), learned from the path's own
//    queue in each new RTT sample (`nextCap`). Its queue then stays short, so the receiver holds
//    about the base spread's worth of the faster paths' packets, and the fastest path's
//    queue absorbs the inner TCP's sawtooth (perf/multipath B).
// 5. Make-before-break (seed 1.7): a path that became usable carries its packets
//    twice — also on the established path with the largest weight — until it
//    delivered something or `overlap` passed. No other duplication, no retransmission.
//
// Memory: fixed arrays of `maxPaths` and per-path in-flight records of `depth`,
// allocated at init; `pick` allocates nothing.
import Support

public struct MultipathScheduler: Sendable {
    /// What the driver knows of one path (from PathHealth and BandwidthEstimator).
    public struct PathReport: Sendable, Equatable {
        public var usable: Bool
        public var srtt: Span?
        public var rttvar: Span
        public var minRTT: Span?
        /// Delivered rate over the last second, bits/s (nil: no feedback yet).
        public var deliveredBitsPerSecond: UInt64?
        /// The last RTT sample as it came, and the number of samples so far: a far path's
        /// cap follows the queue in each new one.
        public var lastRTT: Span?
        public var sample: UInt32
        public init(usable: Bool, srtt: Span?, rttvar: Span = .zero, minRTT: Span? = nil,
                    deliveredBitsPerSecond: UInt64? = nil, lastRTT: Span? = nil, sample: UInt32 = 0) {
            self.usable = usable
            self.srtt = srtt
            self.rttvar = rttvar
            self.minRTT = minRTT
            self.deliveredBitsPerSecond = deliveredBitsPerSecond
            self.lastRTT = lastRTT
            self.sample = sample
        }
        public init(_ h: PathHealth, delivered: UInt64?) {
            self.init(usable: h.isUsable, srtt: h.srtt, rttvar: h.rttvar, minRTT: h.minRTT, deliveredBitsPerSecond: delivered,
                      lastRTT: h.lastSample, sample: h.samples)
        }
    }

    public enum SkipReason: String, Sendable, Equatable {
        /// The receiver could not absorb the reordering it causes (seed 2.11).
        case reorderDepth = "reorder-depth"
        /// Its one-way delay is so far above the reference path's that the receiver
        /// would hold every packet of the fast path that long (seed 2.11).
        case latency = "latency"
    }

    public struct Pick: Sendable, Equatable {
        public var path: Int
        /// Make-before-break: send a copy on this path too.
        public var duplicate: Int?
    }

    /// Per-path view for status (`wsctl status`, planned).
    public struct PathView: Sendable, Equatable {
        public var present: Bool
        public var usable: Bool
        public var weight: Double
        public var committedBitsPerSecond: Double
        /// A far path's cap, bits/s (0: not a far path).
        public var capBitsPerSecond: Double
        public var skipped: SkipReason?
        public var overlapping: Bool
        public var packets: Int
        public var bytes: Int
    }

    public struct Counters: Sendable, Equatable {
        public var picks = 0
        /// No candidate path (the caller drops the packet, counted here).
        public var noPath = 0
        /// Copies sent for make-before-break.
        public var duplicates = 0
        /// Times a path was skipped for the reordering depth (predicted or hard check).
        public var reorderSkips = 0
        /// Times a path was skipped for its latency spread (`MultipathTimings.latencySkip`).
        public var latencySkips = 0
        /// Committed weight changes (hysteresis passed).
        public var weightChanges = 0
        /// Far paths' caps cut (a queue) and raised (room, and the cap was binding).
        public var capCuts = 0
        public var capRaises = 0
        public init() {}
    }

    struct Path: Sendable {
        var present = false
        var usable = false
        var owd = Span.zero            // one-way delay estimate: srtt − minRTT/2
        var jitter = Span.zero         // rttvar (one-way allowance)
        var minRTT: Span?
        var srtt: Span?
        var committed = 0.0            // weight basis, bits/s (0: none yet)
        var weight = 0.0               // normalised among candidates
        var credit = 0.0
        var skipped: SkipReason?
        var skipUntil = Instant.zero
        var appearedAt = Instant.zero
        var confirmed = true
        var packets = 0
        var bytes = 0
        // Far path (rule 4b): its cap (bits/s), token bucket (bytes), the last RTT sample
        // number seen, whether the cap turned a packet away since, the sent rate reported.
        var far = false
        var capBps = 0.0
        var tokens = 0.0
        var tokensAt = Instant.zero
        var sample: UInt32 = 0
        var queue = Span.zero           // the last RTT sample above the path's smallest (any path)
        var queueAt = Instant.zero
        var capLimited = false
        var capSeeded = false
        var capCutOnce = false          // its queue passed `farQueueHigh` since it became far
        var sentBps = 0.0
        var windowed = false            // a whole bandwidth window passed since it appeared
        // Saturation (rule 2): since when every RTT sample showed a queue; whether its
        // committed basis was measured saturated, and when last.
        var queuedSince: Instant?
        var clearSince: Instant?        // since when every sample showed no queue
        var trim = 1.0                  // queue balance (`nextTrim`): a factor on its basis
        var measured = false
        var measuredAt = Instant.zero
        // In-flight records (counter, sentAt), FIFO ring of `depth`.
        var ringHead = 0
        var ringCount = 0
    }

    public let depth: Int
    /// The receiver's counter window (`ReorderBuffer.window`): the hard check's bound.
    public let window: Int
    public var timings: MultipathTimings
    public internal(set) var counters = Counters()
    var paths: [Path]
    private var ring: [(counter: UInt64, at: Instant)]   // paths × depth
    var dirty = true
    // Send rate, packets per second: 100 ms buckets over the last second.
    private var rateBuckets: [Int]
    private var rateCurrent: UInt64 = 0
    private var rateFirst: Instant?
    private var nextReview = Instant.zero
    /// The last RTT sample in which the fastest path that is not far showed a queue (rule 4b).
    var fastBusyAt = Instant.zero

    public init(paths: Int = MultipathConstants.maxPaths, depth: Int = MultipathConstants.reorderDepth,
                window: Int = MultipathConstants.reorderWindow, timings: MultipathTimings = .default) {
        precondition(paths > 0 && depth > 0)
        self.depth = depth
        self.window = max(depth, window)
        self.timings = timings
        self.paths = Array(repeating: Path(), count: paths)
        ring = Array(repeating: (0, .zero), count: paths * depth)
        rateBuckets = Array(repeating: 0, count: MultipathConstants.bandwidthBuckets)
    }

    // MARK: Inputs

    public mutating func update(path i: Int, report r: PathReport, now: Instant) {
        guard i >= 0 && i < paths.count else { return }
        var p = paths[i]
        let usable = r.usable && r.srtt != nil
        if usable && !(p.present && p.usable) {
            // Appeared (or came back): make-before-break overlap until it delivers.
            p.appearedAt = now
            p.confirmed = false
            p.credit = 0
            p.ringCount = 0
        }
        if !usable {
            // Failed or not yet probed: what it could carry is unknown when it comes back
            // (it then starts from the others' mean, `reweigh`).
            p.ringCount = 0
            p.committed = 0
            p.measured = false
            p.queuedSince = nil
            p.clearSince = nil
            p.trim = 1
        }
        p.present = true
        p.usable = usable
        p.sentBps = Double(r.deliveredBitsPerSecond ?? 0)
        p.windowed = now >= p.appearedAt + MultipathConstants.bandwidthWindow
        let newSample = r.lastRTT != nil && r.sample != p.sample
        p.sample = r.sample
        p.minRTT = r.minRTT ?? p.minRTT
        if let s = r.srtt {
            p.srtt = s
            p.owd = Self.oneWayDelay(srtt: s, minRTT: p.minRTT)
            p.jitter = r.rttvar
        }
        // A path that (re)appeared has not had a window of traffic yet: its delivered rate
        // says what the last second gave it, not what it can carry. Until a full window
        // passed it keeps the others' mean.
        if newSample, let last = r.lastRTT {
            let m = p.minRTT ?? last
            p.queue = Span(ns: last.ns > m.ns ? last.ns - m.ns : 0)
            p.queueAt = now
            // Saturation: every sample since stood above the smallest RTT (each sample, not
            // the smoothed RTT: that lags about 0.8 s, and a window in which the flow backed
            // off and the queue drained would be "measured" low).
            if p.queue > timings.queueingSlack {
                if p.queuedSince == nil { p.queuedSince = now }
                p.clearSince = nil
            } else {
                p.queuedSince = nil
                if p.clearSince == nil { p.clearSince = now }
            }
            if !p.far {
                let t = Self.nextTrim(p.trim, queue: p.queue, others: shortestQueue(besides: i, now), timings: timings)
                if t != p.trim {
                    p.trim = t
                    dirty = true
                }
            }
        }
        if !p.far, let d = r.deliveredBitsPerSecond, d > 0, now >= p.appearedAt + MultipathConstants.bandwidthWindow {
            let saturated = isSaturated(p, now)
            if p.measured && now - p.measuredAt >= timings.remeasure { p.measured = false }
            let basis = Self.capacityBasis(committed: p.committed, delivered: Double(d), saturated: saturated,
                                           measured: p.measured, clearWhileOthersSaturated: isClear(p, now) && anySaturated(besides: i, now),
                                           probeGain: timings.probeGain)
            // A path's first measurement replaces the guess it had, whatever the difference
            // (the guess was no estimate of its bandwidth); after that the hysteresis applies.
            if (saturated && !p.measured && basis > 0) || Self.shouldCommit(committed: p.committed, candidate: basis) {
                if p.committed > 0 && basis != p.committed { counters.weightChanges += 1 }
                p.committed = basis
            }
            if saturated {
                p.measured = true
                p.measuredAt = now
            }
        }
        paths[i] = p
        classifyFar()
        if paths[i].far, usable, !paths[i].capSeeded { seedCap(i) }
        if paths[i].far, usable, newSample { capControl(i, now: now) }
        // The latency rule at once, not at the next review: a far path that (re)appears
        // would otherwise take packets for up to 100 ms, each of which makes the
        // receiver wait (perf/multipath C flapped between 45 and 18 Mbit/s so).
        if p.usable, p.skipped == nil, let ref = referencePath(), ref != i, tooFar(i, ref) { skip(i, now, .latency) }
        reweigh(now)
    }

    public mutating func remove(path i: Int, now: Instant) {
        guard i >= 0 && i < paths.count else { return }
        paths[i] = Path()
        reweigh(now)
    }

    /// The peer confirmed delivery on path `i`: its make-before-break overlap ends.
    public mutating func handleDelivered(path i: Int) {
        guard i >= 0 && i < paths.count, !paths[i].confirmed else { return }
        paths[i].confirmed = true
    }

    /// One-way delay of the data direction from RTTs: half the base RTT plus all the
    /// queueing (srtt − minRTT) — the queue builds where the data goes, so halving the
    /// whole RTT would hide half of it and let a saturated path run too far behind.
    public static func oneWayDelay(srtt: Span, minRTT: Span?) -> Span {
        guard let m = minRTT, m <= srtt else { return Span(ns: srtt.ns / 2) }
        return Span(ns: srtt.ns - m.ns / 2)
    }

    /// Packets the receiver would hold behind a path `spread` slower than the fastest,
    /// at `packetsPerSecond`: the reordering-depth constraint's measure.
    public static func depthNeeded(packetsPerSecond: Double, spread: Span) -> Double {
        packetsPerSecond * spread.seconds
    }

    // MARK: The per-packet decision

    /// The path for the packet with session counter `counter` and `length` bytes,
    /// or nil when no path is usable (the caller drops and counts: `counters.noPath`).
    public mutating func pick(counter: UInt64, length: Int, now: Instant) -> Pick? {
        noteSend(now)
        if now >= nextReview { review(now) }
        if dirty { reweigh(now) }
        // Smooth weighted round robin over bytes.
        var best = -1
        var total = 0.0
        for i in 0..<paths.count where isCandidate(i) {
            if paths[i].far && length < timings.farMinLength { continue }
            if paths[i].far && !hasTokens(i, Double(length), now) {
                // Its cap turned the packet away (rule 4b): it sits this one out.
                paths[i].capLimited = true
                continue
            }
            paths[i].credit += paths[i].weight * Double(length)
            total += paths[i].weight
            if best < 0 || paths[i].credit > paths[best].credit { best = i }
        }
        guard best >= 0 else {
            counters.noPath += 1
            return nil
        }
        paths[best].credit -= total * Double(length)
        if paths[best].far { paths[best].tokens -= Double(length) }
        // Hard reordering check against slower paths' oldest in-flight packet. The path to
        // leave out is the slower one, unless that is the reference: then the faster one.
        let fastest = fastestOWD()
        let arrival = now + paths[best].owd
        let ref = referencePath()
        for s in 0..<paths.count where s != best && isCandidate(s) && paths[s].owd > paths[best].owd {
            prune(s, before: now + fastest)
            guard paths[s].ringCount > 0 else { continue }
            let oldest = ring[s * depth + paths[s].ringHead]
            if oldest.at + paths[s].owd > arrival && counter >= oldest.counter + UInt64(window) {
                let victim = s == ref ? best : s
                if victim != ref { skip(victim, now) }
            }
        }
        record(best, counter: counter, length: length, now: now)
        var pick = Pick(path: best, duplicate: nil)
        if !paths[best].confirmed {
            if now >= paths[best].appearedAt + timings.overlap {
                paths[best].confirmed = true
            } else if let d = establishedPath(excluding: best) {
                pick.duplicate = d
                counters.duplicates += 1
                record(d, counter: counter, length: length, now: now)
            }
        }
        counters.picks += 1
        return pick
    }

    // MARK: Status

    public func view(path i: Int) -> PathView {
        let p = paths[i]
        return PathView(present: p.present, usable: p.usable, weight: isCandidate(i) ? p.weight : 0,
                        committedBitsPerSecond: p.committed, capBitsPerSecond: p.far ? p.capBps : 0, skipped: p.skipped,
                        overlapping: p.usable && !p.confirmed, packets: p.packets, bytes: p.bytes)
    }

    /// Packets per second sent over the last second.
    public func packetsPerSecond(now: Instant) -> Double {
        guard let f = rateFirst else { return 0 }
        let bucketNs = MultipathConstants.bandwidthWindow.ns / UInt64(rateBuckets.count)
        let windowNs = min(MultipathConstants.bandwidthWindow.ns, max((now - f).ns, bucketNs))
        // Buckets older than the window were zeroed by noteSend; a stale view may overcount a little.
        var n = 0
        for i in 0..<rateBuckets.count { n += rateBuckets[i] }  // no for-in over the array: see BandwidthEstimator
        return Double(n) * 1e9 / Double(windowNs)
    }

    // MARK: Internals

    func isCandidate(_ i: Int) -> Bool {
        let p = paths[i]
        return p.present && p.usable && p.skipped == nil
    }

    private func fastestOWD() -> Span {
        var f: Span?
        for i in 0..<paths.count where isCandidate(i) {
            f = min(f ?? paths[i].owd, paths[i].owd)
        }
        return f ?? .zero
    }

    private func establishedPath(excluding x: Int) -> Int? {
        var best: Int?
        for i in 0..<paths.count where i != x && isCandidate(i) && paths[i].confirmed {
            if best == nil || paths[i].weight > paths[best!].weight { best = i }
        }
        return best
    }

    private mutating func skip(_ s: Int, _ now: Instant, _ why: SkipReason = .reorderDepth) {
        guard paths[s].skipped == nil else { return }
        paths[s].skipped = why
        paths[s].skipUntil = now + timings.skipHold
        paths[s].ringCount = 0
        if why == .latency { counters.latencySkips += 1 } else { counters.reorderSkips += 1 }
        dirty = true
    }

    /// The latency rule (seed 2.11): path i is skipped when its base one-way delay (half
    /// its smallest RTT: the path itself, not the queue the flow builds on it) exceeds the
    /// reference's by more than `factor` × max(`spreadFloor`, the reference's base one-way
    /// delay). The receiver would hold every packet of the fast path that long; queues and
    /// jitter are the depth rule's.
    private func tooFar(_ i: Int, _ ref: Int, factor: Double = 1) -> Bool {
        guard timings.latencySkip, let a = paths[i].minRTT ?? paths[i].srtt,
              let b = paths[ref].minRTT ?? paths[ref].srtt else { return false }
        return Self.tooFar(minRTT: a, reference: b, factor: factor, timings: timings)
    }

    /// The latency rule as a pure decision (also NodeCore's: it pings a far path of a spread
    /// often only when this rule lets it carry data, as each ping on it is a gap the receiver
    /// waits for): base one-way delay more than `latencyFactor` × max(`spreadFloor`, the
    /// reference's base one-way delay) behind the reference's.
    public static func tooFar(minRTT a: Span, reference b: Span, factor: Double = 1, timings: MultipathTimings) -> Bool {
        guard a > b else { return false }
        let limit = max(timings.spreadFloor.ns, b.ns / 2)
        return Double(a.ns / 2 - b.ns / 2) > factor * timings.latencyFactor * Double(limit)
    }

    /// Every 100 ms: the predicted reordering-depth constraint, with hysteresis.
    private mutating func review(_ now: Instant) {
        nextReview = now + .milliseconds(100)
        guard let ref = referencePath() else { return }
        if paths[ref].skipped != nil {
            // The reference changed to a path skipped against the old one: it is never skipped.
            paths[ref].skipped = nil
            paths[ref].credit = 0
            dirty = true
        }
        let pps = packetsPerSecond(now: now)
        for i in 0..<paths.count where i != ref && paths[i].present && paths[i].usable {
            // The receiver holds the faster side's packets behind the slower side's gap:
            // behind path i, the share not on it; ahead of it, its own share.
            let slower = paths[i].owd >= paths[ref].owd
            let w = isCandidate(i) ? paths[i].weight : 0
            let need = Self.depthNeeded(packetsPerSecond: pps * (slower ? 1 - w : w), spread: spread(i, ref))
            // Between two paths of about the same base delay, the spread is one path's queue:
            // the weights (rule 2) move the flow off the saturated path. Skipping the other
            // would put the whole flow on the queue (perf/multipath A with every RTT fresh:
            // the path without a queue skipped, the queued one overflowing, 69 Mbit/s).
            let near = !Self.baseApart(paths[i].minRTT, paths[ref].minRTT, timings: timings)
            if paths[i].skipped == nil {
                if tooFar(i, ref) {
                    skip(i, now, .latency)
                } else if need > timings.depthSkip * Double(depth) && !near {
                    skip(i, now)
                }
            } else if now >= paths[i].skipUntil && (need < timings.depthResume * Double(depth) || near)
                        && !tooFar(i, ref, factor: timings.depthResume) {
                paths[i].skipped = nil
                paths[i].credit = 0
                paths[i].committed = paths[i].far ? paths[i].capBps : 0
                paths[i].appearedAt = now
                paths[i].confirmed = false
                dirty = true
            }
        }
    }

    /// Whether two paths' base one-way delays (half their smallest RTTs) are more than
    /// `farSpread` apart (unknown: apart).
    static func baseApart(_ a: Span?, _ b: Span?, timings: MultipathTimings) -> Bool {
        guard let a, let b else { return true }
        let d = a > b ? a.ns - b.ns : b.ns - a.ns
        return d / 2 > timings.farSpread.ns
    }

    /// The latency spread between path i and the reference: the one-way delay difference
    /// (either way: a path ahead of the reference reorders as much as one behind it) plus
    /// the later one's jitter allowance.
    private func spread(_ i: Int, _ ref: Int) -> Span {
        if paths[i].far, let a = paths[i].minRTT, let b = paths[ref].minRTT, a > b {
            // Its cap keeps its queue under `farQueueHigh`: the base spread and half that.
            return Span(ns: a.ns / 2 - b.ns / 2 + timings.farQueueHigh.ns / 2)
        }
        let a = paths[i].owd, b = paths[ref].owd
        return a >= b ? Span(ns: a.ns - b.ns) + paths[i].jitter : Span(ns: b.ns - a.ns) + paths[ref].jitter
    }

    /// The path the reordering constraint measures others against, and never skips: the
    /// usable path with the largest committed bandwidth (ties: the lower delay), among
    /// those the latency rule does not put too far behind the path with the smallest
    /// base RTT. Skipping the path that carries most of the flow because a small path is
    /// faster would cost more than it saves; but a far path that carries most of it only
    /// because it was the active one (perf/multipath B and C after the far path had been
    /// the only one: the flow stayed on it, 17.7 and 3.4 Mbit/s) must not be the
    /// reference, or the latency rule would skip the near path instead.
    private func referencePath() -> Int? {
        let base = fastestPath(nonFarOnly: false)
        var ref: Int?
        for i in 0..<paths.count where paths[i].present && paths[i].usable {
            if let b = base, i != b, tooFar(i, b) { continue }
            guard let r = ref else { ref = i; continue }
            if paths[i].committed > paths[r].committed
                || (paths[i].committed == paths[r].committed && paths[i].owd < paths[r].owd) { ref = i }
        }
        return ref ?? base
    }

    private mutating func reweigh(_ now: Instant) {
        dirty = false
        var known = 0.0
        var n = 0
        for i in 0..<paths.count where isCandidate(i) && paths[i].committed > 0 && !paths[i].far {
            known += paths[i].committed
            n += 1
        }
        // With no estimate among the paths that are not far, a far path's cap is the only
        // figure: the others are taken as that over `farStartShare` (what a cap starts from).
        var farBasis = 0.0
        for i in 0..<paths.count where isCandidate(i) && paths[i].far { farBasis = max(farBasis, paths[i].committed) }
        let fallback = n > 0 ? known / Double(n) : (farBasis > 0 ? farBasis / max(timings.farStartShare, 0.01) : 1)
        var total = 0.0
        for i in 0..<paths.count where isCandidate(i) {
            total += basis(i, fallback)
        }
        for i in 0..<paths.count {
            guard isCandidate(i), total > 0 else {
                paths[i].weight = 0
                paths[i].credit = 0
                continue
            }
            paths[i].weight = basis(i, fallback) / total
        }
    }

    /// Path i's weight basis: a far path's committed cap × `farWeightGain` (its bucket binds
    /// at full load); else its committed basis, or `fallback` (the others' mean) without one.
    private func basis(_ i: Int, _ fallback: Double) -> Double {
        if paths[i].far { return timings.farWeightGain * paths[i].committed }
        return (paths[i].committed > 0 ? paths[i].committed : fallback) * paths[i].trim
    }

    private mutating func record(_ i: Int, counter: UInt64, length: Int, now: Instant) {
        paths[i].packets += 1
        paths[i].bytes += length
        var p = paths[i]
        if p.ringCount == depth {  // oldest record dropped: more than `depth` in flight on one path
            p.ringHead = (p.ringHead + 1) % depth
            p.ringCount -= 1
        }
        ring[i * depth + (p.ringHead + p.ringCount) % depth] = (counter, now)
        p.ringCount += 1
        paths[i].ringHead = p.ringHead
        paths[i].ringCount = p.ringCount
    }

    /// Forgets in-flight records of path `s` that arrive before `t` (nothing sent from
    /// now on can arrive before them, so they no longer constrain anything).
    private mutating func prune(_ s: Int, before t: Instant) {
        while paths[s].ringCount > 0 {
            let r = ring[s * depth + paths[s].ringHead]
            guard r.at + paths[s].owd <= t else { return }
            paths[s].ringHead = (paths[s].ringHead + 1) % depth
            paths[s].ringCount -= 1
        }
    }

    private mutating func noteSend(_ now: Instant) {
        if rateFirst == nil { rateFirst = now }
        let bucketNs = MultipathConstants.bandwidthWindow.ns / UInt64(rateBuckets.count)
        let b = now.ns / bucketNs
        if b > rateCurrent {
            let steps = min(b - rateCurrent, UInt64(rateBuckets.count))
            var k: UInt64 = 1
            while k <= steps {
                rateBuckets[Int((rateCurrent + k) % UInt64(rateBuckets.count))] = 0
                k += 1
            }
            rateCurrent = b
        }
        rateBuckets[Int(rateCurrent % UInt64(rateBuckets.count))] += 1
    }
}
