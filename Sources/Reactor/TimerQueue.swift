// Timers of one reactor: a binary min-heap of (deadline, id) with lazy
// cancellation. Equal deadlines fire in the order they were added (the id
// breaks ties), so "fires in deadline order" holds exactly. A cancelled
// timer's entry stays in the heap until it surfaces and is skipped; its
// action is dropped at once, so a cancelled timer can never fire.

public struct TimerID: Hashable, Sendable {
    public let raw: UInt64
}

struct TimerQueue {
    private struct Entry {
        var deadline: UInt64
        var id: UInt64
        @inline(__always) static func < (a: Entry, b: Entry) -> Bool {
            a.deadline != b.deadline ? a.deadline < b.deadline : a.id < b.id
        }
    }

    private var heap: [Entry] = []
    private var actions: [UInt64: () -> Void] = [:]
    private var nextID: UInt64 = 1

    var count: Int { actions.count }

    mutating func add(deadline: UInt64, _ action: @escaping () -> Void) -> TimerID {
        let id = nextID
        nextID += 1
        actions[id] = action
        heap.append(Entry(deadline: deadline, id: id))
        siftUp(heap.count - 1)
        return TimerID(raw: id)
    }

    /// Returns true if the timer was pending.
    @discardableResult
    mutating func cancel(_ t: TimerID) -> Bool {
        actions.removeValue(forKey: t.raw) != nil
    }

    /// The earliest live deadline (skipping cancelled entries).
    mutating func nextDeadline() -> UInt64? {
        dropCancelledTop()
        return heap.first?.deadline
    }

    /// Removes and returns the earliest due action, if its deadline <= now.
    mutating func popDue(now: UInt64) -> (() -> Void)? {
        dropCancelledTop()
        guard let top = heap.first, top.deadline <= now else { return nil }
        removeTop()
        return actions.removeValue(forKey: top.id)
    }

    private mutating func dropCancelledTop() {
        while let top = heap.first, actions[top.id] == nil { removeTop() }
    }

    private mutating func removeTop() {
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
    }

    private mutating func siftUp(_ i0: Int) {
        var i = i0
        while i > 0 {
            let p = (i - 1) / 2
            if heap[i] < heap[p] {
                heap.swapAt(i, p)
                i = p
            } else { return }
        }
    }

    private mutating func siftDown(_ i0: Int) {
        var i = i0
        let n = heap.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && heap[l] < heap[m] { m = l }
            if r < n && heap[r] < heap[m] { m = r }
            if m == i { return }
            heap.swapAt(i, m)
            i = m
        }
    }
}
