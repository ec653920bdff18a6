// The per-peer timer table, the retry backoff as a pure function, and the
// seeded random source that jitter and session indices come from.
//
// Timers follow wireguard-go `device/timers.go` (itself the kernel's timers.c):
// one slot per reason, armed and cancelled by the session's event hooks
// ("data sent", "any authenticated packet received", ...); the next deadline is
// the minimum over the slots, kept as they change. Across members, Tunnels
// holds each member's minimum in one heap (DenseDeadlineHeap in
// Support/DeadlineHeap.swift), so no call scans every member. Nothing here
// reads a clock.

import Support
import Wire
import Crypto

/// Why a peer wants to wake up. The raw order is also the order in which due
/// timers are handled within one `handleTimeout` (expiry and give-up first, so a
/// retry never fires for a handshake that just timed out).
public enum TimerReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// A keypair reaches REJECT_AFTER_TIME and is dropped.
    case keyExpiry = 0
    /// A handshake has been pending REKEY_ATTEMPT_TIME: give up, drop its queue.
    case handshakeGiveUp
    /// A handshake is wanted (packets queued, rekey due, ...): create and send an
    /// initiation. Separate from the send/receive call that wanted it because an
    /// initiation needs the wall-clock timestamp, which only `handleTimeout` gets.
    case handshakeInitiation
    /// An initiation went unanswered: send a new one (backoff + jitter).
    case handshakeRetry
    /// A path to the peer just opened while our initiation is unanswered (the
    /// path manager saw the evidence: an anchor introduced us, a relay path
    /// changed, the peer's own initiation crossed ours): send a new one now
    /// instead of at the retry. The same attempt, so the backoff is unchanged.
    case handshakeExpedite
    /// We sent data and heard nothing for KEEPALIVE + REKEY_TIMEOUT: re-handshake.
    case newHandshake
    /// We received data and sent nothing for KEEPALIVE_TIMEOUT: send a keepalive.
    case keepalive
    /// The configured persistent keepalive interval passed without traffic.
    case persistentKeepalive

    public var description: String {
        switch self {
        case .keyExpiry: "key expiry"
        case .handshakeGiveUp: "handshake give-up"
        case .handshakeInitiation: "handshake initiation"
        case .handshakeRetry: "handshake retry"
        case .handshakeExpedite: "handshake retry, expedited (a path opened, or a cookie came)"
        case .newHandshake: "no reply to data, new handshake"
        case .keepalive: "keepalive"
        case .persistentKeepalive: "persistent keepalive"
        }
    }
}

/// A small table of optional deadlines keyed by `TimerReason`, stored inline.
/// It keeps its earliest slot as slots change (an earlier arm is one compare;
/// only moving or clearing the earliest slot rescans the eight), so `next` is
/// a read: Tunnels compares it with its heap entry for the member after every
/// call and re-sets the entry only when it changed.
public struct TimerTable: Sendable, Equatable {
    private var slots = InlineArray<8, Instant?>(repeating: nil)
    private var earliest: Instant?
    private var earliestReason = TimerReason.keyExpiry

    public init() {}

    public subscript(_ reason: TimerReason) -> Instant? {
        get { slots[reason.rawValue] }
        set {
            slots[reason.rawValue] = newValue
            if let v = newValue, let e = earliest {
                if v < e || (v == e && reason.rawValue < earliestReason.rawValue) {
                    earliest = v
                    earliestReason = reason
                } else if reason == earliestReason {
                    recompute()  // the earliest moved later
                }
            } else if let v = newValue {
                earliest = v
                earliestReason = reason
            } else if earliest != nil, reason == earliestReason {
                recompute()  // the earliest was cancelled
            }
        }
    }

    public func isPending(_ reason: TimerReason) -> Bool { slots[reason.rawValue] != nil }

    /// The earliest armed deadline and its reason; ties go to the lower raw value.
    @inline(__always)
    public var next: (deadline: Instant, reason: TimerReason)? {
        earliest.map { ($0, earliestReason) }
    }

    /// Just the earliest deadline (what the node's heap holds for this table).
    @inline(__always)
    var nextDeadline: Instant? { earliest }

    private mutating func recompute() {
        earliest = nil
        // An index loop: `allCases` builds an array per call (found by the allocation
        // count of a session that sends and receives, MultipathAllocationTests).
        var r = 0
        while r < slots.count {
            defer { r += 1 }
            guard let d = slots[r], let reason = TimerReason(rawValue: r) else { continue }
            if let e = earliest, e <= d { continue }
            earliest = d
            earliestReason = reason
        }
    }

    /// Disarms and returns the reasons due at `now`, in handling order.
    public mutating func takeDue(now: Instant) -> DueTimers {
        var due = DueTimers()
        for reason in TimerReason.allCases {
            if let d = slots[reason.rawValue], d <= now {
                slots[reason.rawValue] = nil
                due.insert(reason)
            }
        }
        if !due.isEmpty { recompute() }
        return due
    }

    public static func == (a: TimerTable, b: TimerTable) -> Bool {
        TimerReason.allCases.allSatisfy { a[$0] == b[$0] }
    }
}

/// A set of timer reasons as a bitmask (no allocation).
public struct DueTimers: Sendable, Equatable {
    public private(set) var bits: UInt8 = 0
    public init() {}
    public mutating func insert(_ r: TimerReason) { bits |= 1 << UInt8(r.rawValue) }
    public func contains(_ r: TimerReason) -> Bool { bits & (1 << UInt8(r.rawValue)) != 0 }
    public var isEmpty: Bool { bits == 0 }
}

/// Retry delay after the `attempt`-th initiation (1-based), before jitter:
/// rekeyTimeout × 2^(attempt−1), capped at rekeyTimeoutMax. A pure function, so
/// the schedule is tested from a table.
public func handshakeRetryDelay(attempt: Int, timings: SessionTimings) -> Span {
    let base = timings.rekeyTimeout.ns
    let cap = max(timings.rekeyTimeoutMax.ns, base)
    let shift = max(0, min(attempt - 1, 32))
    // Overflow-safe doubling: stop as soon as the cap is reached.
    var d = base
    var i = 0
    while i < shift && d < cap {
        d = d > cap / 2 ? cap : d * 2
        i += 1
    }
    return Span(ns: min(d, cap))
}

/// A uniformly random jitter in [0, max).
public func retryJitter(max: Span, using rng: inout SessionRandom) -> Span {
    max.ns == 0 ? .zero : Span(ns: rng.next() % max.ns)
}

/// Unpredictable 64-bit values, for what authenticates something: a probe
/// txid is all that ties a PATH_PROBE_REPLY to our probe (review M6), so it
/// must not be guessable from other txids or indices. libsodium's CSPRNG
/// (randombytes_buf) in production; a test may ask for a seeded one to be
/// deterministic. (A concrete type, not an existential: NodeCore stays a
/// plain loadable struct.)
public struct SecretRandom: Sendable {
    private var seeded: SessionRandom?

    /// libsodium's CSPRNG.
    public static var sodium: SecretRandom { SecretRandom(seeded: nil) }
    /// Deterministic, for tests only: xoshiro is predictable from its output.
    public static func seeded(_ seed: UInt64) -> SecretRandom { SecretRandom(seeded: SessionRandom(seed: seed)) }

    public mutating func next() -> UInt64 {
        if seeded != nil { return seeded!.next() }
        return Sodium.randomUInt64()
    }
}

/// xoshiro256** seeded by SplitMix64: deterministic for tests, fast for jitter and
/// session indices. The engine seeds it from libsodium's CSPRNG. Indices are not
/// secrets (they travel in clear in every packet), so a non-cryptographic
/// generator costs nothing in security; predictability only lets an attacker
/// send packets that fail authentication, which it can do anyway. Not for
/// anything that authenticates (the output function is invertible and the
/// state update linear: a few outputs give the state): see `SecretRandom`.
public struct SessionRandom: RandomNumberGenerator, Sendable {
    private var s0, s1, s2, s3: UInt64

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
    }

    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }
}
