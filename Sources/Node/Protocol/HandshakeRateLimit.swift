// Handshake load control. Two pieces, both sans-IO:
//
//  - `HandshakeLoadMeter` (inside `Tunnels`): counts handshake messages per
//    second and says whether the node is under load. `Tunnels` records only
//    well-formed, mac1-valid INIT/RESP, direct or relayed. Sticky for
//    UNDER_LOAD_AFTER_TIME so a flood cannot toggle it off with a short pause.
//  - `HandshakeRateLimiter` (inside `Tunnels`): under load, after the cookie
//    check proved the source address is real, a token bucket per source IP,
//    IPv6 per /64 (port ignored: one host, one budget) caps the DH work one
//    address can cause (wireguard-go `ratelimiter/`: 20/s, burst 5). A fixed
//    table with O(1) work per call (NodeCore's probe responder uses it too).
//
// Under load an initiation therefore passes: mac1 (knows our public key) ->
// mac2 (has a fresh cookie for its source address) -> per-address bucket ->
// the expensive Noise work.

import Support
import Wire
import Crypto

/// Decides when the node is "under load" from the rate of handshake messages.
public struct HandshakeLoadMeter: Sendable {
    public let threshold: Int
    public let stickiness: Span
    private var windowStart: Instant = .zero
    private var count = 0
    private var loadedUntil: Instant?

    public init(threshold: Int = SessionConstants.underLoadHandshakesPerSecond,
                stickiness: Span = SessionConstants.underLoadAfterTime) {
        self.threshold = threshold
        self.stickiness = stickiness
    }

    /// Records one handshake message (a well-formed INIT or RESP with a valid mac1) arriving at `now`, and returns
    /// whether the node is under load for it.
    public mutating func record(now: Instant) -> Bool {
        if now - windowStart >= .seconds(1 as UInt64) {
            windowStart = now
            count = 0
        }
        count += 1
        if count > threshold { loadedUntil = now + stickiness }
        return isUnderLoad(now: now)
    }

    public func isUnderLoad(now: Instant) -> Bool {
        guard let until = loadedUntil else { return false }
        return now < until
    }
}

/// The unit a per-source budget belongs to: an IPv4 address, or an IPv6 /64
/// (wireguard-go `ratelimiter/` masks IPv6 the same way: one subscriber
/// usually holds a whole /64, and 2^64 addresses must not mean 2^64 budgets).
/// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is one IPv4 host: kept whole.
/// `lo` is never 0 for a real key (the family tag), so 0 marks an empty slot.
struct SourceKey: Hashable, Sendable {
    let hi: UInt64
    let lo: UInt64

    init(_ source: Endpoint) {
        let a = source.address
        switch source.family {
        case .v4:
            hi = a.hi
            lo = 1
        case .v6 where a.hi == 0 && a.lo >> 32 == 0xFFFF:
            hi = a.hi
            lo = a.lo  // its upper half is 0x0000_FFFF: never 0, 1 or 2
        case .v6:
            hi = a.hi
            lo = 2
        }
    }
}

/// Per-source token bucket (see `SourceKey`), for handshakes under load and
/// for probe replies.
///
/// The table is fixed (`maxEntries` slots, allocated once) and set-associative:
/// a keyed hash picks a set of `ways` slots; a source's bucket lives in one
/// of them. A new source takes an empty slot of its set, else the one used
/// longest ago (LRU within the set). So every call looks at exactly `ways`
/// slots, whatever the table holds: a flood from many sources costs O(1) per
/// datagram and never locks anyone out (the table was a Dictionary that,
/// once full, was rebuilt by `filter` for every new source and then refused
/// it: review H2). An evicted source starts again with a full bucket, so under
/// a many-source flood the per-source budget alone bounds nothing: callers put
/// a global budget on top (NodeCore's probe replies; the load meter and mac2
/// for handshakes).
struct HandshakeRateLimiter: Sendable {
    struct Slot: Sendable {
        var hi: UInt64 = 0
        var lo: UInt64 = 0  // 0: empty
        /// Credit in nanoseconds: one use costs `cost`.
        var tokens: UInt64 = 0
        var last: Instant = .zero
    }
    /// Slots in all (a memory bound: 4,096 × 32 bytes), and per set: 8 is
    /// enough that sources sharing a set rarely evict each other's fresh
    /// buckets, and few enough that scanning a set is a handful of loads.
    static let maxEntries = 4096
    static let ways = 8

    private var slots: [Slot]
    private let cost: UInt64
    private let capacity: UInt64
    /// Slots examined over the limiter's life (tests: work per call is bounded).
    private(set) var slotsVisited = 0

    init(perSecond: Int, burst: Int) {
        cost = 1_000_000_000 / UInt64(max(1, perSecond))
        capacity = cost * UInt64(max(1, burst))
        slots = [Slot](repeating: Slot(), count: Self.maxEntries)
    }

    /// Takes one use from `source`'s budget, if it has one.
    mutating func allow(_ source: Endpoint, now: Instant) -> Bool {
        let key = SourceKey(source)
        // Hasher is seeded per process: an attacker cannot aim at one set.
        let set = key.hashValue & (Self.maxEntries / Self.ways - 1)
        let base = set * Self.ways
        var victim = base
        for i in base..<(base + Self.ways) {
            slotsVisited &+= 1
            let s = slots[i]
            if s.lo == key.lo, s.hi == key.hi {
                var tokens = min(capacity, s.tokens &+ (now - s.last).ns)
                let ok = tokens >= cost
                if ok { tokens -= cost }
                slots[i].tokens = tokens
                slots[i].last = now
                return ok
            }
            // Prefer an empty slot, else the least recently used one.
            if slots[victim].lo != 0, s.lo == 0 || s.last < slots[victim].last { victim = i }
        }
        slots[victim] = Slot(hi: key.hi, lo: key.lo, tokens: capacity - cost, last: now)
        return true
    }
}
