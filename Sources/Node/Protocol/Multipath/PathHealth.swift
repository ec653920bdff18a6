// Health of one path, from probes AND from delivered data (issue 14): RTT
// (RFC 6298 smoothing), loss (an EWMA over probe and data outcomes), last
// receive, and failure detection while data flows.
//
//   handleSent(now)            something left on the path that the peer answers
//                              (data with feedback, a probe): starts the failure clock
//   handleReceive(now)         anything authenticated arrived on the path: stops it
//   handleRTTSample(rtt, now)  a probe reply or a data acknowledgement
//   handleOutcome(lost:)       a probe or data packet known delivered (false) or lost (true)
//   pollTimeout() / handleTimeout(now) -> became failed?
//
// Failure: nothing received for max(failureRTTs × (srtt + 4·rttvar), minFailureTimeout)
// after the first unanswered send, so a path that carries data is declared failed
// within a few RTTs; an idle path is never declared failed by this rule (the
// connectivity layer's keepalives/probes cover idle paths). A receive on a failed
// path makes it active again.
//
// The peer must answer on the path while data flows (per-path feedback or probes):
// the wire message that carries it is planned (docs/multipath.md).
import Support

public struct PathHealth: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        /// No RTT sample yet.
        case unknown
        case active
        case failed(since: Instant)
    }

    public private(set) var state: State = .unknown
    public private(set) var srtt: Span?
    public private(set) var rttvar: Span = .zero
    public private(set) var minRTT: Span?
    /// The last RTT sample as it came, and how many there were (the scheduler reads a
    /// far path's queue from each new one).
    public private(set) var lastSample: Span?
    public private(set) var samples: UInt32 = 0
    /// EWMA of loss outcomes, 0...1 (gain 1/16).
    public private(set) var loss: Double = 0
    public private(set) var lastReceive: Instant?
    /// First send not answered yet (nil: everything answered, or idle).
    public private(set) var unansweredSince: Instant?
    public var timings: MultipathTimings

    public init(timings: MultipathTimings = .default) {
        self.timings = timings
    }

    public var isUsable: Bool { state == .active }

    /// How long a silence after a send means failure.
    public var failureTimeout: Span {
        let rtt = srtt ?? timings.initialRTT
        let t = (rtt + rttvar * 4) * timings.failureRTTs
        return max(t, timings.minFailureTimeout)
    }

    /// Whether the path's RTT stands above its minimum (a queue is building).
    public var isQueueing: Bool {
        guard let s = srtt, let m = minRTT else { return false }
        return s > m + timings.queueingSlack
    }

    public mutating func handleSent(now: Instant) {
        if unansweredSince == nil { unansweredSince = now }
    }

    public mutating func handleReceive(now: Instant) {
        lastReceive = now
        unansweredSince = nil
        if case .failed = state { state = srtt == nil ? .unknown : .active }
    }

    public mutating func handleRTTSample(_ rtt: Span, now: Instant) {
        if let s = srtt {
            // RFC 6298 §2.3: rttvar = 3/4 rttvar + 1/4 |srtt − r|; srtt = 7/8 srtt + 1/8 r.
            let diff = s.ns > rtt.ns ? s.ns - rtt.ns : rtt.ns - s.ns
            rttvar = Span(ns: (3 * rttvar.ns + diff) / 4)
            srtt = Span(ns: (7 * s.ns + rtt.ns) / 8)
        } else {
            srtt = rtt
            rttvar = Span(ns: rtt.ns / 2)
        }
        minRTT = min(minRTT ?? rtt, rtt)
        lastSample = rtt
        samples &+= 1
        handleReceive(now: now)
        state = .active
    }

    public mutating func handleOutcome(lost: Bool) {
        loss += ((lost ? 1 : 0) - loss) / 16
    }

    public func pollTimeout() -> (deadline: Instant, reason: String)? {
        guard case .active = state, let since = unansweredSince else { return nil }
        return (since + failureTimeout, "path silent since a send")
    }

    /// Returns true when the path was declared failed just now (the driver then tells
    /// the scheduler and calls `ReorderBuffer.handlePathFailed`).
    public mutating func handleTimeout(now: Instant) -> Bool {
        guard case .active = state, let since = unansweredSince, now >= since + failureTimeout else { return false }
        state = .failed(since: now)
        handleOutcome(lost: true)
        return true
    }
}

/// Delivered-data rate of one path over the last second (issue 14: "measured over
/// 1 s from delivered data"): 10 buckets of 100 ms, O(1) per sample, no allocation
/// after init.
public struct BandwidthEstimator: Sendable, Equatable {
    private var buckets: [UInt64]
    private var current: UInt64 = 0  // absolute bucket number of buckets[current % n]
    private var first: Instant?
    private let bucketNs: UInt64

    public init() {
        buckets = Array(repeating: 0, count: MultipathConstants.bandwidthBuckets)
        bucketNs = MultipathConstants.bandwidthWindow.ns / UInt64(MultipathConstants.bandwidthBuckets)
    }

    /// `bytes` were delivered on the path (as the peer's feedback reports) at `now`.
    public mutating func handleDelivered(bytes: Int, now: Instant) {
        advance(to: now)
        if first == nil { first = now }
        buckets[Int(current % UInt64(buckets.count))] &+= UInt64(max(0, bytes))
    }

    /// Bits per second over the last second (or since the first sample while that is
    /// shorter, at least 10 ms); nil before any sample.
    public mutating func bitsPerSecond(now: Instant) -> UInt64? {
        guard let f = first else { return nil }
        advance(to: now)
        var total: UInt64 = 0
        // Index loops, not reduce or for-in over the array: those allocate per element in
        // debug builds, and the allocation tests run there.
        var i = 0
        while i < buckets.count {
            total &+= buckets[i]
            i += 1
        }
        // The buckets span the n − 1 before the current one plus the current one's elapsed part.
        let span = UInt64(buckets.count - 1) * bucketNs + now.ns % bucketNs
        let windowNs = max(min(span, (now - f).ns), 10_000_000)
        return total &* 8 &* 1_000_000_000 / windowNs
    }

    private mutating func advance(to now: Instant) {
        let b = now.ns / bucketNs
        guard b > current else { return }
        let steps = min(b - current, UInt64(buckets.count))
        var k: UInt64 = 1
        while k <= steps {
            buckets[Int((current + k) % UInt64(buckets.count))] = 0
            k += 1
        }
        current = b
    }
}
