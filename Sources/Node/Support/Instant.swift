/// A point on the monotonic clock, in nanoseconds. Protocol code never reads a
/// clock: every `handle…(now:)` takes an `Instant` from its driver (the engine
/// passes CLOCK_MONOTONIC; tests pass a virtual clock).
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var ns: UInt64
    public init(ns: UInt64) { self.ns = ns }
    public static let zero = Instant(ns: 0)

    public static func < (a: Instant, b: Instant) -> Bool { a.ns < b.ns }
    public static func + (a: Instant, d: Span) -> Instant { Instant(ns: a.ns &+ d.ns) }
    public static func - (a: Instant, d: Span) -> Instant { Instant(ns: a.ns >= d.ns ? a.ns - d.ns : 0) }
    /// The span from `b` to `a`, zero if `b` is later.
    public static func - (a: Instant, b: Instant) -> Span { Span(ns: a.ns >= b.ns ? a.ns - b.ns : 0) }
    public var description: String { "t+\(Double(ns) / 1e9)s" }
}

/// A length of time in nanoseconds (not `Swift.Duration`: plain integer math on the packet path).
public struct Span: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var ns: UInt64
    public init(ns: UInt64) { self.ns = ns }
    public static func seconds(_ s: Double) -> Span { Span(ns: UInt64(s * 1e9)) }
    public static func milliseconds(_ ms: UInt64) -> Span { Span(ns: ms * 1_000_000) }
    public static func seconds(_ s: UInt64) -> Span { Span(ns: s * 1_000_000_000) }
    public static let zero = Span(ns: 0)
    public static func < (a: Span, b: Span) -> Bool { a.ns < b.ns }
    public static func + (a: Span, b: Span) -> Span { Span(ns: a.ns &+ b.ns) }
    public static func * (a: Span, k: UInt64) -> Span { Span(ns: a.ns &* k) }
    public var seconds: Double { Double(ns) / 1e9 }
    public var milliseconds: Double { Double(ns) / 1e6 }
    public var description: String { "\(seconds)s" }
}
