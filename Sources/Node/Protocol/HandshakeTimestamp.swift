// The TAI64N timestamp an initiator puts (encrypted) in every initiation, and
// the only wall-clock value the session layer ever sees. The responder keeps the
// greatest one accepted per peer and refuses any initiation whose timestamp is
// not greater: a captured initiation replayed later cannot reset a session
// (whitepaper §5.1, "Replay attack").
//
//   bytes 0..<8   seconds, big-endian, TAI64 label 2^62 + 10 + unix seconds
//   bytes 8..<12  nanoseconds, big-endian, rounded down to 2^24 ns (whitening)
//
// The engine builds one from CLOCK_REALTIME and passes it to
// `Tunnels.handleTimeout(now:wallClock:)`; tests pass a virtual one.

import Support
import Wire
import Crypto

/// A TAI64N handshake timestamp. Compares as the 12 bytes compare.
public struct HandshakeTimestamp: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// TAI64 label: 2^62 + 10 s (the TAI−UTC offset WireGuard uses) + unix seconds.
    public var seconds: UInt64
    /// Nanoseconds within the second (already whitened when built from a clock).
    public var nanoseconds: UInt32

    static let tai64Base: UInt64 = 0x4000_0000_0000_000A

    /// From a wall clock reading; nanoseconds are rounded down to the whitening
    /// granularity so the timestamp does not reveal the sender's exact clock.
    public init(unixSeconds: UInt64, nanoseconds: UInt32) {
        self.seconds = Self.tai64Base &+ unixSeconds
        let n = min(nanoseconds, 999_999_999)
        self.nanoseconds = n - n % SessionConstants.timestampWhitening
    }

    /// From the 12 wire bytes (as `ReceivedInitiation.timestamp` carries them).
    public init?(bytes: [UInt8]) {
        guard bytes.count == 12 else { return nil }
        var s: UInt64 = 0
        for i in 0..<8 { s = s << 8 | UInt64(bytes[i]) }
        var n: UInt32 = 0
        for i in 8..<12 { n = n << 8 | UInt32(bytes[i]) }
        self.seconds = s
        self.nanoseconds = n
    }

    init(raw seconds: UInt64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// The 12 bytes for `InitiatorHandshake.createInitiation(timestamp:)`.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: seconds >> (56 - 8 * UInt64(i))) }
        for i in 0..<4 { out[8 + i] = UInt8(truncatingIfNeeded: nanoseconds >> (24 - 8 * UInt32(i))) }
        return out
    }

    /// The smallest whitened timestamp after this one. Used when our own wall
    /// clock steps back (NTP): initiations must stay strictly increasing, or the
    /// peer would refuse them as replays until the clock caught up.
    public var successor: HandshakeTimestamp {
        let step = SessionConstants.timestampWhitening
        let n = UInt64(nanoseconds) + UInt64(step)
        if n >= 1_000_000_000 { return HandshakeTimestamp(raw: seconds &+ 1, nanoseconds: 0) }
        return HandshakeTimestamp(raw: seconds, nanoseconds: UInt32(n))
    }

    public static func < (a: HandshakeTimestamp, b: HandshakeTimestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    public var description: String {
        "tai64n(\(seconds &- Self.tai64Base)s+\(nanoseconds)ns)"
    }
}
