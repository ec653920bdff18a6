import Atomics
import Support
import Protocol

/// The per-member relay budget every lane of an anchor takes from
/// (Protocol/Connectivity/RelayTable.swift): one GCRA word per member, one
/// compare-and-swap per forwarded datagram, no lock. A member's datagrams
/// usually land on one lane (steering by its target's index), so the word
/// mostly stays in one core's cache; when they land on two, the budget is
/// still one. Words are a cache line apart so members do not share a line.
public final class AtomicRelayBudget: SharedRelayBudget, @unchecked Sendable {
    public let rule: RelayBudgetRule
    private let base: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    private let count: Int
    /// UInt64 words per member: 64 bytes.
    private static let stride = 8

    public init(members: Int, rule: RelayBudgetRule) {
        self.rule = rule
        count = max(1, members)
        base = .allocate(capacity: count * Self.stride)
        base.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: count * Self.stride)
    }

    deinit {
        base.deinitialize(count: count * Self.stride)
        base.deallocate()
    }

    @inline(__always)
    public func take(_ member: Int, bytes: Int, now: Instant) -> Bool {
        if rule.unlimited { return true }
        guard member >= 0, member < count else { return false }
        let word = UnsafeAtomic<UInt64>(at: base + member * Self.stride)
        var tat = word.load(ordering: .relaxed)
        while true {
            guard let n = rule.next(tat: tat, bytes: bytes, now: now) else { return false }
            let (done, seen) = word.weakCompareExchange(expected: tat, desired: n, ordering: .relaxed)
            if done { return true }
            tat = seen
        }
    }
}
