// A modelled network for simulations with a virtual clock: latency with
// jitter (so datagrams reorder), random loss, partitions (nodes in different
// groups cannot reach each other while partitioned) and churn (a node that is
// down neither sends nor receives). Deterministic for a seed.
import Support
import Protocol

public struct NetworkModel: Sendable {
    /// One-way latency and its jitter (uniform in latency ± jitter).
    public var latency: Span
    public var jitter: Span
    /// Share of datagrams lost, 0...1.
    public var loss: Double
    /// Partition group per node (nil: no partition). Datagrams between groups are lost.
    public var groups: [Int]?
    /// Nodes that are down (churn).
    public var down = Set<Int>()
    var rng: SessionRandom

    public init(latency: Span = .milliseconds(50), jitter: Span = .milliseconds(20), loss: Double = 0, seed: UInt64) {
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        rng = SessionRandom(seed: seed ^ 0x6E65_7477_6F72_6B)
    }

    /// The delay of one datagram on the modelled link, or nil when it is lost (no
    /// partitions or churn: for a simulator that routes by address, as NetSim).
    public mutating func sample() -> Span? {
        if loss > 0, Double(rng.next() >> 11) / Double(1 << 53) < loss { return nil }
        let j = jitter.ns
        let d = latency.ns + (j > 0 ? rng.next() % (2 * j + 1) : 0)
        return Span(ns: d >= j ? d - j : 0)
    }

    /// When a datagram sent now from `a` to `b` arrives, or nil when it is lost.
    public mutating func delay(from a: Int, to b: Int) -> Span? {
        if down.contains(a) || down.contains(b) { return nil }
        if let g = groups, g[a] != g[b] { return nil }
        if loss > 0, Double(rng.next() >> 11) / Double(1 << 53) < loss { return nil }
        let j = jitter.ns
        let d = latency.ns + (j > 0 ? rng.next() % (2 * j + 1) : 0)
        return Span(ns: d >= j ? d - j : 0)
    }
}

/// Events in time order (a binary heap; equal times in insertion order, so a run is deterministic).
public struct EventQueue<Event>: Sendable where Event: Sendable {
    private var heap: [(at: Instant, seq: UInt64, event: Event)] = []
    private var seq: UInt64 = 0

    public init() {}
    public var isEmpty: Bool { heap.isEmpty }
    public var count: Int { heap.count }
    public var nextTime: Instant? { heap.first?.at }

    public mutating func push(_ e: Event, at t: Instant) {
        seq &+= 1
        heap.append((t, seq, e))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    public mutating func pop() -> (at: Instant, event: Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, less(l, m) { m = l }
            if r < heap.count, less(r, m) { m = r }
            if m == i { break }
            heap.swapAt(i, m)
            i = m
        }
        return (top.at, top.event)
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        heap[a].at < heap[b].at || (heap[a].at == heap[b].at && heap[a].seq < heap[b].seq)
    }
}
