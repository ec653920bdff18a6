// The receiver's reorder buffer of one session (seed 2.9, DESIGN §7): packets
// leave in the session's 64-bit counter order, however the paths reordered them.
//
//   handle(counter, packet, path, now) ─▶ late/duplicate? ─▶ .drop(packet)  (counted)
//                                      ─▶ beyond the counter window, or `depth` packets held already?
//                                         force-skip the oldest gaps (the depth bound)
//                                      ─▶ slot[counter % window]; in-order run moves to the output
//   handleTimeout(now)                 ─▶ gaps older than the release timeout are skipped
//   handlePathFailed(path, now)        ─▶ gaps no live path can fill any more are skipped at once
//   (every handle, while holding)      ─▶ gaps every live path has delivered past are lost: skipped at once
//   pollRelease() ─▶ packets in counter order (drain after every handle… call)
//   pollTimeout() ─▶ when the oldest held packet's gap expires
//
// Packets are opaque handles (Engine: `Reactor.PacketHandle` into a lane's
// PacketPool); this layer never sees bytes, so Protocol does not import Reactor.
// Every handle given to `handle` comes back exactly once, from `handle` (.drop)
// or from `pollRelease`. Memory is fixed at init: `window` slots, a FIFO of
// `window` + `depth` arrival records (one per held packet, plus records of packets
// released before an older-arriving one: their counters lie in the window), an
// output ring of 2 × `depth` + 1 and a bit per counter of 2 × `window`; nothing is
// allocated per packet.
//
// Depth and window. The depth (128) bounds the packets held; the window (512)
// bounds how far above the next counter a held packet may be. They differ because
// a slow path's gap spans every packet sent meanwhile on *all* paths, but only the
// faster paths' packets wait behind it: a path 20 ms behind at 5 500 packets/s
// spans 110 counters, of which the fast path's 83 are held (perf/multipath B; and
// A's two equal paths whose queues drift 15 ms apart: 125 counters, 62 held). With
// the window equal to the depth such a gap was forced out by the depth bound while
// fewer than the depth were held.
//
// Which gaps can a failed path still owe? A path delivers in the order it was
// given packets (no link reorders on purpose; the scheduler sends a counter once).
// So once path Q delivered counter h_Q, Q can only still deliver counters
// above h_Q. A gap g below h_Q of every live path can only be filled by a failed
// path: it is flushed the moment the path is declared failed, without waiting
// for the timeout, and without the sender telling which counter went where.
// The same rule finds losses while every path lives: a gap below h_Q of every
// live path (two or more seen) was sent on one of them and that path has
// delivered past it, so it was lost on the way. It is skipped when the packet
// that shows it arrives (`releasedByLoss`), not a release timeout later: a
// packet dropped by a slow path's queue would otherwise hold every packet of
// the fast path for the timeout. A path that reorders its own packets (none of
// ours does: one socket, one sender per path) would see such a packet passed
// on late, as a single-path tunnel passes a reordered packet.
//
// Release timeout: adapts to the latency spread between paths. It is the
// larger of the spread the driver reports (from path RTTs) and the spread
// observed here (how long gaps took to fill: a smoothed mean + 4 × mean
// deviation, as RFC 6298 smooths RTT), × factor + margin, clamped to
// [minReleaseTimeout, maxReleaseTimeout]. A packet that arrives after its gap
// was given up on timeout (a bit per recent counter) counts as a wait of twice
// the timeout, so a timeout that is too short grows.
import Support

public struct ReorderCounters: Sendable, Equatable {
    /// Packets that arrived above a gap and had to wait.
    public var held = 0
    /// Packets released because everything before them had arrived.
    public var releasedInOrder = 0
    /// Packets released because a gap before them was given up on timeout.
    public var releasedByTimeout = 0
    /// Packets released because a gap before them was flushed at a path failure.
    public var flushedByPathFailure = 0
    /// Packets released because the depth bound forced a gap to be skipped.
    public var releasedByDepth = 0
    /// Packets released because every live path had delivered past the gap before them
    /// (its packet was lost on the way: paths deliver in order), without waiting for the timeout.
    public var releasedByLoss = 0
    /// Packets dropped: counter already released or skipped, or a duplicate.
    public var droppedLateDuplicate = 0
    /// Of those, packets whose gap had been given up on timeout before they came: each
    /// one says the release timeout was too short, and raises it.
    public var lateAfterSkip = 0
    /// Times a packet arrived beyond the counter window or with `depth` packets held
    /// already (the depth bound: gaps skipped).
    public var maxDepthReached = 0
    /// Counters given up (gaps skipped), whatever the reason.
    public var gapsSkipped = 0
    /// Most packets held at once.
    public var maxHeld = 0
    /// (SessionReorder) late packets passed on out of order instead of dropped: the
    /// replay window proved them no duplicates. Not counted in `droppedLateDuplicate`.
    public var releasedLate = 0
    @inlinable public init() {}
}

public struct ReorderBuffer<Handle>: Sendable where Handle: Sendable {
    public enum Admission {
        /// Taken: it comes out of `pollRelease` (now or later).
        case accepted
        /// Refused (late or duplicate, counted): the caller releases it.
        case drop(Handle)
    }

    public enum ReleaseReason: Sendable { case inOrder, timeout, pathFailure, depth, loss }

    @usableFromInline struct Slot: Sendable {
        @usableFromInline var handle: Handle
        @usableFromInline var counter: UInt64
        @inlinable init(handle: Handle, counter: UInt64) {
            self.handle = handle
            self.counter = counter
        }
    }

    /// The most packets held at once (`MultipathConstants.reorderDepth`).
    public let depth: Int
    /// How far above `next` a held packet's counter may be (`MultipathConstants.reorderWindow`, ≥ depth).
    public let window: Int
    public var timings: MultipathTimings
    public var counters: ReorderCounters { _counters }
    @usableFromInline var _counters: ReorderCounters = ReorderCounters()
    /// The next counter to release: every counter below it was released or skipped.
    public var next: UInt64 { _next }
    @usableFromInline var _next: UInt64
    /// Packets held now (≤ depth).
    public var heldCount: Int { _heldCount }
    @usableFromInline var _heldCount: Int = 0
    /// Highest counter accepted so far (valid when anything was accepted).
    public var highest: UInt64 { _highest }
    @usableFromInline var _highest: UInt64 = 0

    @usableFromInline var slots: [Slot?]
    /// One bit per counter in [next − 2·window, next): 1 = given up on timeout, 0 = released or skipped otherwise.
    @usableFromInline var skippedBits: [UInt64]
    /// Held packets in arrival order (counter, arrival): the oldest still-held one
    /// says when the current gap expires. Entries of released counters are skipped lazily.
    @usableFromInline var arrivals: [(counter: UInt64, at: Instant)]
    @usableFromInline var arrivalsHead = 0
    @usableFromInline var arrivalsCount = 0
    @usableFromInline var out: [Handle?]
    @usableFromInline var outHead = 0
    @usableFromInline var outCount = 0
    /// Per path: highest counter received on it, and whether it is failed.
    @usableFromInline var pathHigh: [UInt64]
    @usableFromInline var pathSeen: [Bool]
    @usableFromInline var pathFailed: [Bool]
    /// The driver's view of the latency spread between paths (from RTTs).
    @usableFromInline var reportedSpread = Span.zero
    /// Observed gap-fill waits, smoothed (ns).
    @usableFromInline var waitMean = 0.0
    @usableFromInline var waitDev = 0.0
    @usableFromInline var waitSamples = 0

    @inlinable public init(firstCounter: UInt64 = 0, depth: Int = MultipathConstants.reorderDepth,
                window: Int? = nil, paths: Int = MultipathConstants.maxPaths, timings: MultipathTimings = .default) {
        precondition(depth > 0 && paths > 0)
        self.depth = depth
        self.window = max(depth, window ?? MultipathConstants.reorderWindow)
        self.timings = timings
        _next = firstCounter
        slots = Array(repeating: nil, count: self.window)
        skippedBits = Array(repeating: 0, count: (2 * self.window + 63) / 64)
        arrivals = Array(repeating: (0, .zero), count: self.window + depth)
        out = Array(repeating: nil, count: 2 * depth + 1)
        pathHigh = Array(repeating: 0, count: paths)
        pathSeen = Array(repeating: false, count: paths)
        pathFailed = Array(repeating: false, count: paths)
    }

    // MARK: Inputs

    /// One packet with session counter `counter` arrived on path `path` (an index
    /// below `paths`) at `now`.
    @inlinable public mutating func handle(counter: UInt64, packet: Handle, path: Int, now: Instant) -> Admission {
        if path >= 0 && path < pathHigh.count {
            if !pathSeen[path] || counter > pathHigh[path] { pathHigh[path] = counter }
            pathSeen[path] = true
            pathFailed[path] = false
        }
        if counter < next {
            _counters.droppedLateDuplicate += 1
            if next - counter <= UInt64(2 * window), isSkipped(counter) {
                // It came after all: the gap was given up too early. Count it as a wait
                // longer than the timeout, so the timeout grows (as TCP backs off its RTO).
                setSkipped(counter, false)
                _counters.lateAfterSkip += 1
                noteWait(releaseTimeout * 2)
            }
            return .drop(packet)
        }
        var forced = false
        if counter - next >= UInt64(window) {
            // Beyond the window: skip the oldest gaps (releasing what is held below)
            // until the counter fits.
            forced = true
            skip(below: counter - UInt64(window) + 1, reason: .depth)
            releaseRun(.depth)
        }
        let i = Int(counter % UInt64(window))
        if slots[i] != nil {
            _counters.droppedLateDuplicate += 1
            return .drop(packet)
        }
        if counter != next && heldCount >= depth {
            // The depth bound: `depth` packets wait already. The oldest gap goes (the lowest
            // held packet, or this one if lower, and the run after it are released) until
            // this one has a place or is next.
            forced = true
            while heldCount >= depth && counter != next {
                skip(below: min(lowestHeld(), counter), reason: .depth)
                releaseRun(.depth)
            }
        }
        if forced { _counters.maxDepthReached += 1 }
        if heldCount == 0 || counter > highest { _highest = counter }
        if counter == next {
            if heldCount > 0, let oldest = oldestArrival() {
                noteWait(now - oldest)
            }
            emit(packet, .inOrder)
            setSkipped(next, false)
            _next += 1
            releaseRun(.inOrder)
        } else {
            slots[i] = Slot(handle: packet, counter: counter)
            _heldCount += 1
            _counters.held += 1
            _counters.maxHeld = max(counters.maxHeld, heldCount)
            _ = oldestHeld()  // drop released records first: then the window + depth bound holds
            if arrivalsCount == arrivals.count {  // cannot happen (see above); degrade, never overrun
                arrivalsHead = (arrivalsHead + 1) % arrivals.count
                arrivalsCount -= 1
            }
            arrivals[(arrivalsHead + arrivalsCount) % arrivals.count] = (counter, now)
            arrivalsCount += 1
        }
        if heldCount > 0 { skipLost() }
        return .accepted
    }

    /// Gaps every live path delivered past are lost (the file comment): skipped now.
    /// Needs two live paths seen: with one, the other path's packets may be on their way.
    @inlinable mutating func skipLost() {
        var bound = UInt64.max
        var live = 0
        for q in 0..<pathHigh.count where pathSeen[q] && !pathFailed[q] {
            bound = min(bound, pathHigh[q])
            live += 1
        }
        guard live >= 2, bound > next else { return }
        skip(below: bound, reason: .loss)
        releaseRun(.loss)
    }

    /// Gives up gaps whose oldest waiting packet has waited the release timeout.
    @inlinable public mutating func handleTimeout(now: Instant) {
        let timeout = releaseTimeout
        while let oldest = oldestHeld(), oldest.at + timeout <= now {
            // Everything below the oldest-waiting packet is given up; it and the run after it go.
            skip(below: oldest.counter, reason: .timeout)
            releaseRun(.timeout)
        }
    }

    /// Path `path` was declared failed (path health): the gaps only it could still
    /// fill are flushed at once (seed 2.9).
    @inlinable public mutating func handlePathFailed(_ path: Int, now: Instant) {
        guard path >= 0 && path < pathFailed.count else { return }
        pathFailed[path] = true
        guard heldCount > 0 else { return }
        // The lowest counter a live path may still deliver below: min over live paths of h_Q.
        var bound = highest
        for q in 0..<pathHigh.count where pathSeen[q] && !pathFailed[q] {
            bound = min(bound, pathHigh[q])
        }
        // Gaps below `bound` are owed by failed paths only.
        skip(below: bound, reason: .pathFailure)
        releaseRun(.pathFailure)
    }

    /// Releases everything held, in counter order (counted as released by timeout: their
    /// gaps were not filled), and starts again at counter `first` with no path history:
    /// the session's counter restarted (a new keypair) or buffering starts or ends.
    /// Drain `pollRelease` after it. Allocates nothing.
    @inlinable public mutating func reset(next first: UInt64) {
        if heldCount > 0 { skip(below: highest &+ 1, reason: .timeout) }
        _next = first
        _highest = first
        arrivalsHead = 0
        arrivalsCount = 0
        for i in 0..<skippedBits.count { skippedBits[i] = 0 }
        for q in 0..<pathSeen.count {
            pathSeen[q] = false
            pathFailed[q] = false
        }
    }

    /// A path came back (or a new one appeared): it may fill gaps again.
    @inlinable public mutating func handlePathRestored(_ path: Int) {
        guard path >= 0 && path < pathFailed.count else { return }
        pathFailed[path] = false
    }

    /// The latency spread between the session's paths as the driver measures it
    /// (slowest minus fastest one-way delay, from RTTs): feeds the release timeout.
    @inlinable public mutating func setLatencySpread(_ spread: Span) {
        reportedSpread = spread
    }

    // MARK: Outputs

    /// The next packet to pass on, in counter order; nil when none is ready.
    @inlinable public mutating func pollRelease() -> Handle? {
        guard outCount > 0 else { return nil }
        let h = out[outHead]
        out[outHead] = nil
        outHead = (outHead + 1) % out.count
        outCount -= 1
        return h
    }

    /// When `handleTimeout` has work: the oldest held packet's arrival + the release timeout.
    @inlinable public mutating func pollTimeout() -> (deadline: Instant, reason: String)? {
        guard let oldest = oldestHeld() else { return nil }
        return (oldest.at + releaseTimeout, "reorder gap expires")
    }

    /// The current release timeout (adaptive, see the file comment).
    @inlinable public var releaseTimeout: Span {
        let observed = waitSamples > 0 ? Span(ns: UInt64(max(0, waitMean + 4 * waitDev))) : .zero
        let spread = max(reportedSpread, observed)
        let t = Span(ns: UInt64(Double(spread.ns) * timings.releaseTimeoutFactor)) + timings.releaseTimeoutMargin
        return min(max(t, timings.minReleaseTimeout), timings.maxReleaseTimeout)
    }

    /// Bytes this buffer's own storage takes (fixed at init; bounded by the depth).
    @inlinable public var storageBytes: Int {
        slots.count * MemoryLayout<Slot?>.stride + arrivals.count * MemoryLayout<(UInt64, Instant)>.stride
            + out.count * MemoryLayout<Handle?>.stride + pathHigh.count * 10
    }

    // MARK: Internals

    @inlinable mutating func emit(_ h: Handle, _ reason: ReleaseReason) {
        precondition(outCount < out.count, "ReorderBuffer: drain pollRelease() after every handle call")
        out[(outHead + outCount) % out.count] = h
        outCount += 1
        switch reason {
        case .inOrder: _counters.releasedInOrder += 1
        case .timeout: _counters.releasedByTimeout += 1
        case .pathFailure: _counters.flushedByPathFailure += 1
        case .depth: _counters.releasedByDepth += 1
        case .loss: _counters.releasedByLoss += 1
        }
    }

    /// Releases the contiguous run of held packets starting at `next`.
    @inlinable mutating func releaseRun(_ reason: ReleaseReason) {
        while heldCount > 0 {
            let i = Int(next % UInt64(window))
            guard let s = slots[i], s.counter == next else { return }
            slots[i] = nil
            _heldCount -= 1
            emit(s.handle, reason)
            setSkipped(next, false)
            _next += 1
        }
    }

    /// Moves `next` up to `target`: held packets on the way are released (with
    /// `reason`), missing counters are counted as skipped gaps. O(window) at most.
    @inlinable mutating func skip(below target: UInt64, reason: ReleaseReason) {
        guard target > next else { return }
        if heldCount == 0 || target - next > UInt64(window) {
            // Far jump: every held packet is below target. Release them in order, then jump.
            let end = min(target, next + UInt64(window))
            while next < end, heldCount > 0 {
                releaseOne(reason)
            }
            _counters.gapsSkipped += Int(clamping: target - next)
            var c = max(next, target >= UInt64(2 * window) ? target - UInt64(2 * window) : 0)
            while c < target {
                setSkipped(c, reason == .timeout)
                c += 1
            }
            _next = target
            return
        }
        while next < target {
            releaseOne(reason)
        }
    }

    @inlinable mutating func releaseOne(_ reason: ReleaseReason) {
        let i = Int(next % UInt64(window))
        if let s = slots[i], s.counter == next {
            slots[i] = nil
            _heldCount -= 1
            emit(s.handle, reason)
            setSkipped(next, false)
        } else {
            _counters.gapsSkipped += 1
            // Only a timeout's skip says something about the timeout; a late packet after a
            // depth or failure skip is the scheduler's or the path's doing.
            setSkipped(next, reason == .timeout)
        }
        _next += 1
    }

    @inlinable func isSkipped(_ c: UInt64) -> Bool {
        let bit = Int(c % UInt64(skippedBits.count * 64))
        return skippedBits[bit >> 6] & (1 << UInt64(bit & 63)) != 0
    }

    @inlinable mutating func setSkipped(_ c: UInt64, _ on: Bool) {
        let bit = Int(c % UInt64(skippedBits.count * 64))
        if on { skippedBits[bit >> 6] |= 1 << UInt64(bit & 63) } else { skippedBits[bit >> 6] &= ~(1 << UInt64(bit & 63)) }
    }

    /// The oldest held packet by arrival (dropping records of packets already released).
    @inlinable mutating func oldestHeld() -> (counter: UInt64, at: Instant)? {
        while arrivalsCount > 0 {
            let a = arrivals[arrivalsHead]
            if a.counter >= next { return a }
            arrivalsHead = (arrivalsHead + 1) % arrivals.count
            arrivalsCount -= 1
        }
        return nil
    }

    @inlinable mutating func oldestArrival() -> Instant? { oldestHeld()?.at }

    /// The lowest counter held (call only while something is held): O(window) at most,
    /// paid only when the depth bound forces a gap out.
    @inlinable func lowestHeld() -> UInt64 {
        var c = next
        while c < next + UInt64(window) {
            if let s = slots[Int(c % UInt64(window))], s.counter == c { return c }
            c += 1
        }
        return next
    }

    @inlinable mutating func noteWait(_ w: Span) {
        let x = Double(w.ns)
        if waitSamples == 0 {
            waitMean = x
            waitDev = x / 2
        } else {
            waitDev += (abs(x - waitMean) - waitDev) / 4
            waitMean += (x - waitMean) / 8
        }
        waitSamples += 1
    }
}
