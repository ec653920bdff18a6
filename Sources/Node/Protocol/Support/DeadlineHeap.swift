// A table of deadlines keyed by an enum, kept as a binary min-heap with an
// index from key to heap slot (STYLE 5: "timers are a small table keyed by an
// enum; the next deadline is the minimum").
//
//   set(key, at: d)     insert, or move an armed key          O(log n)
//   set(key, at: nil)   cancel                                O(log n)
//   self[key]           the key's deadline, if armed          O(1)
//   earliest            the next deadline and its key         O(1)
//   due(now)            every key with deadline ≤ now         O(due): the heap
//                       is walked only under entries that are due
//   popDue(now)         remove and return the earliest if due O(log n)
//
// Each key is armed at most once: arming it again moves its deadline. There is
// no second list of deadlines to keep in step: whoever arms a timer arms it
// here, and whoever handles it reads it from here. Equal deadlines come out in no
// promised order; a caller that needs one (NodeCore: its documented handler
// order) sorts `due(now)` itself. (One session's handful of timers is a
// fixed inline table instead, `TimerTable` in SessionTimers.swift, and the
// session layer keeps every member's earliest in `DenseDeadlineHeap` below.)

import Support

struct DeadlineHeap<Key: Hashable & Sendable>: Sendable {
    private var heap: [(deadline: Instant, key: Key)] = []
    private var slot: [Key: Int] = [:]

    init() {}

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }

    /// The deadline `key` is armed for, if it is.
    subscript(key: Key) -> Instant? {
        slot[key].map { heap[$0].deadline }
    }

    /// The earliest deadline and its key.
    var earliest: (deadline: Instant, key: Key)? { heap.first }

    /// Arms `key` for `deadline` (moving it if armed); nil cancels it.
    mutating func set(_ key: Key, at deadline: Instant?) {
        guard let deadline else { return cancel(key) }
        if let i = slot[key] {
            let old = heap[i].deadline
            heap[i].deadline = deadline
            if deadline < old { siftUp(i) } else if deadline > old { siftDown(i) }
            return
        }
        heap.append((deadline, key))
        slot[key] = heap.count - 1
        siftUp(heap.count - 1)
    }

    /// Arms `key` for `deadline` unless it is armed for an earlier one.
    mutating func setEarlier(_ key: Key, at deadline: Instant) {
        if let d = self[key], d <= deadline { return }
        set(key, at: deadline)
    }

    mutating func cancel(_ key: Key) {
        guard let i = slot.removeValue(forKey: key) else { return }
        let last = heap.count - 1
        if i == last { heap.removeLast(); return }
        heap[i] = heap.removeLast()
        slot[heap[i].key] = i
        siftDown(i)
        siftUp(i)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    mutating func popDue(now: Instant) -> (deadline: Instant, key: Key)? {
        guard let first = heap.first, first.deadline <= now else { return nil }
        cancel(first.key)
        return first
    }

    /// Every key due at `now` (deadline ≤ now), in no particular order.
    func due(now: Instant) -> [Key] {
        var out: [Key] = []
        guard let first = heap.first, first.deadline <= now else { return out }
        var stack = [0]
        while let i = stack.popLast() {
            out.append(heap[i].key)
            for c in [2 * i + 1, 2 * i + 2] where c < heap.count && heap[c].deadline <= now { stack.append(c) }
        }
        return out
    }

    /// Every armed entry (status, tests), in no particular order.
    var entries: [(deadline: Instant, key: Key)] { heap }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        slot[heap[a].key] = a
        slot[heap[b].key] = b
    }

    private mutating func siftUp(_ start: Int) {
        HeapSift.up(start, less: { heap[$0].deadline < heap[$1].deadline }, swap: { swapAt($0, $1) })
    }

    private mutating func siftDown(_ start: Int) {
        HeapSift.down(start, count: heap.count, less: { heap[$0].deadline < heap[$1].deadline }, swap: { swapAt($0, $1) })
    }
}

/// The same min-heap for dense integer keys `0 ..< capacity` (the session
/// layer's members, by PeerID): the key -> slot index is a plain array, so
/// moving an entry costs no hashing and arming never allocates once built.
/// Ties are broken by the lower key, so the earliest entry is the one a scan
/// in key order would find first.
///
/// Tunnels keeps one entry per member: that member's earliest session timer
/// (`TimerTable.next`), re-set only when it changed, so `pollTimeout` is the
/// top and `handleTimeout` visits only members that are due.
struct DenseDeadlineHeap: Sendable {
    private var heap: [(deadline: Instant, key: Int)] = []
    /// key -> its index in `heap`, or -1 when not armed.
    private var slot: [Int]

    init(capacity: Int) {
        slot = Array(repeating: -1, count: capacity)
        heap.reserveCapacity(capacity)
    }

    var count: Int { heap.count }

    @inline(__always)
    subscript(key: Int) -> Instant? {
        let i = slot[key]
        return i < 0 ? nil : heap[i].deadline
    }

    var earliest: (deadline: Instant, key: Int)? { heap.first }

    /// Arms `key` for `deadline` (moving it if armed); nil cancels it.
    mutating func set(_ key: Int, at deadline: Instant?) {
        guard let deadline else { return cancel(key) }
        let i = slot[key]
        if i >= 0 {
            heap[i].deadline = deadline
            siftUp(i)
            siftDown(slot[key])
            return
        }
        heap.append((deadline, key))
        slot[key] = heap.count - 1
        siftUp(heap.count - 1)
    }

    mutating func cancel(_ key: Int) {
        let i = slot[key]
        guard i >= 0 else { return }
        slot[key] = -1
        let last = heap.count - 1
        if i == last { heap.removeLast(); return }
        let moved = heap.removeLast()
        heap[i] = moved
        slot[moved.key] = i
        siftUp(i)
        siftDown(slot[moved.key])
    }

    /// Appends every key due at `now` (deadline ≤ now) to `out`, in no
    /// particular order; walks only the part of the heap that is due.
    func due(now: Instant, into out: inout [Int]) {
        guard let first = heap.first, first.deadline <= now else { return }
        let start = out.count
        out.append(0)  // heap indices while walking, keys at the end
        var k = start
        while k < out.count {
            let l = 2 * out[k] + 1, r = l + 1
            if l < heap.count, heap[l].deadline <= now { out.append(l) }
            if r < heap.count, heap[r].deadline <= now { out.append(r) }
            k += 1
        }
        for j in start..<out.count { out[j] = heap[out[j]].key }
    }

    @inline(__always)
    private func less(_ a: Int, _ b: Int) -> Bool {
        heap[a].deadline < heap[b].deadline || (heap[a].deadline == heap[b].deadline && heap[a].key < heap[b].key)
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        slot[heap[a].key] = a
        slot[heap[b].key] = b
    }

    private mutating func siftUp(_ start: Int) {
        HeapSift.up(start, less: { less($0, $1) }, swap: { swapAt($0, $1) })
    }

    private mutating func siftDown(_ start: Int) {
        HeapSift.down(start, count: heap.count, less: { less($0, $1) }, swap: { swapAt($0, $1) })
    }
}

/// The sift loops of a binary min-heap stored as an array, written once for both
/// heaps above. They see the heap only by slot index: `less(a, b)` says slot a's
/// entry comes before slot b's (the heap's order), `swap(a, b)` exchanges two
/// slots (and keeps the heap's key -> slot index in step).
enum HeapSift {
    /// Moves the entry at `start` up while it comes before its parent.
    @inline(__always)
    static func up(_ start: Int, less: (Int, Int) -> Bool, swap: (Int, Int) -> Void) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { return }
            swap(i, parent)
            i = parent
        }
    }

    /// Moves the entry at `start` down while a child (of `count` entries) comes before it.
    @inline(__always)
    static func down(_ start: Int, count: Int, less: (Int, Int) -> Bool, swap: (Int, Int) -> Void) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < count, less(l, m) { m = l }
            if r < count, less(r, m) { m = r }
            if m == i { return }
            swap(i, m)
            i = m
        }
    }
}
