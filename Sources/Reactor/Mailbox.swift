// Work handed to a reactor from another thread.
//
// Each producer thread gets its own `Mailbox`: a bounded single-producer,
// single-consumer ring (no locks: one atomic index per side) plus the
// reactor's eventfd to wake it. The reactor thread drains every mailbox when
// the eventfd fires. Several reactors, one per core, hand each other work
// (a batch of packets for a session another core owns, a command) this way.
import Atomics
import CReactor

/// A bounded SPSC ring. `push` only from the one producer thread, `pop` only
/// from the consumer (the reactor).
public final class SPSCQueue<Element>: @unchecked Sendable {
    private let capacity: Int
    private let slots: UnsafeMutablePointer<Element?>
    private let head = ManagedAtomic<Int>(0)  // next slot to pop (consumer)
    private let tail = ManagedAtomic<Int>(0)  // next slot to push (producer)

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: nil, count: capacity)
    }

    deinit {
        slots.deinitialize(count: capacity)
        slots.deallocate()
    }

    /// False when full (the caller decides: drop and count, or retry later).
    public func push(_ e: Element) -> Bool {
        let t = tail.load(ordering: .relaxed)
        let h = head.load(ordering: .acquiring)
        if t - h >= capacity { return false }
        slots[t % capacity] = e
        tail.store(t + 1, ordering: .releasing)
        return true
    }

    public func pop() -> Element? {
        let h = head.load(ordering: .relaxed)
        let t = tail.load(ordering: .acquiring)
        if h == t { return nil }
        let e = slots[h % capacity].take()
        head.store(h + 1, ordering: .releasing)
        return e
    }

    public var isEmpty: Bool { head.load(ordering: .acquiring) == tail.load(ordering: .acquiring) }
}

/// A producer's channel into one reactor: jobs run on the reactor's thread, in order.
public final class Mailbox: Sendable {
    public typealias Job = @Sendable () -> Void
    let queue: SPSCQueue<Job>
    let wakeFD: Int32

    init(capacity: Int, wakeFD: Int32) {
        queue = SPSCQueue(capacity: capacity)
        self.wakeFD = wakeFD
    }

    /// Posts a job and wakes the reactor. False when the mailbox is full.
    @discardableResult
    public func post(_ job: @escaping Job) -> Bool {
        guard queue.push(job) else { return false }
        _ = CReactor_eventfd_write(wakeFD, 1)
        return true
    }
}
