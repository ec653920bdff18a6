// Handshake load control. Two pieces, both sans-IO:
//
//  - `HandshakeLoadMeter` (inside `Tunnels`): counts handshake messages per
//    second and says whether the node is under load. `Tunnels` records only
//    well-formed, mac1-valid INIT/RESP, direct or relayed. Sticky for
//    UNDER_LOAD_AFTER_TIME so a flood cannot toggle it off with a short pause.
//  - `HandshakeRateLimiter` (inside `Tunnels`): under load, after the cookie
//    check proved the source address is real, a token bucket per source IP
//    (port ignored: one host, one budget) caps the DH work one address can cause
//    (wireguard-go `ratelimiter/`: 20/s, burst 5).
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

/// Per-source-address token bucket for handshakes under load.
struct HandshakeRateLimiter: Sendable {
    struct Bucket: Sendable { var tokens: UInt64; var last: Instant }
    /// Tokens are in nanoseconds of "credit": one handshake costs `cost`.
    private var buckets: [IPAddressBytes: Bucket] = [:]
    private let cost: UInt64
    private let capacity: UInt64
    /// Entries idle this long are full again and can be forgotten.
    private let idle: Span
    /// Table bound: a spoofed-source flood cannot grow memory without limit
    /// (mac2 already filters spoofing; this is the second belt).
    static let maxEntries = 4096

    init(perSecond: Int, burst: Int) {
        cost = 1_000_000_000 / UInt64(max(1, perSecond))
        capacity = cost * UInt64(max(1, burst))
        idle = Span(ns: capacity)
    }

    mutating func allow(_ address: IPAddressBytes, now: Instant) -> Bool {
        if var b = buckets[address] {
            b.tokens = min(capacity, b.tokens &+ (now - b.last).ns)
            b.last = now
            guard b.tokens >= cost else {
                buckets[address] = b
                return false
            }
            b.tokens -= cost
            buckets[address] = b
            return true
        }
        if buckets.count >= Self.maxEntries {
            buckets = buckets.filter { now - $0.value.last < idle }
            if buckets.count >= Self.maxEntries { return false }
        }
        buckets[address] = Bucket(tokens: capacity - cost, last: now)
        return true
    }
}
