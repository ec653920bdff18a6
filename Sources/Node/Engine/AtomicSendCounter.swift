import Atomics
import Protocol

/// The send counter of a keypair two reactors seal under (the owner its data,
/// reactor 0 keepalives and control messages): one relaxed fetch-add per sealed
/// packet, no lock. Protocol only knows the `SharedSendCounter` protocol.
public final class AtomicSendCounter: SharedSendCounter {
    private let value = ManagedAtomic<UInt64>(0)
    public init() {}
    @inline(__always) public func take() -> UInt64 { value.loadThenWrappingIncrement(ordering: .relaxed) }
    public var current: UInt64 { value.load(ordering: .relaxed) }
}
