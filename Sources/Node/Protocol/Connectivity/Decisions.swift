// The connectivity layer's choices, as pure functions (STYLE 8): NAT
// classification, path preference with its hysteresis, relay anchor choice,
// the recovery backoff. Numbers in, a decision out; tested from tables.

// MARK: - NAT classification

import Support
import Wire
import Crypto

/// RFC 4787 mapping behaviour as seen from outside (DESIGN §8 `node.nat.mapping`).
/// Also `node.nat.mapping` in `wsctl status --json` (its raw values are that contract).
public enum NATMapping: String, Codable, Sendable, CaseIterable {
    /// Same public endpoint whoever we talk to: hole punching works.
    case endpointIndependent = "endpoint-independent"
    /// A new public port per destination ("symmetric"): a peer like it needs a relay.
    case endpointDependent = "endpoint-dependent"
    /// An anchor sees one of our local endpoints: no NAT.
    case none
    /// Fewer than two anchors answered (or they disagree about the address family).
    case unknown
}

/// One anchor's view of where our packets come from, kept for `wsctl`.
public struct NATEvidence: Equatable, Sendable {
    public var anchor: PeerID
    public var observed: Endpoint
    public var at: Instant
    public init(anchor: PeerID, observed: Endpoint, at: Instant) {
        self.anchor = anchor
        self.observed = observed
        self.at = at
    }
}

/// Classifies the NAT from what different anchors observe and our local endpoints.
///
///   - any observation equal to a local endpoint (address and port): `none`;
///   - two or more anchors of one family see the same endpoint: `endpoint-independent`;
///   - they see different endpoints (port or address): `endpoint-dependent`;
///   - otherwise (zero or one observation per family): `unknown`.
/// IPv4 decides when it has an answer (that is where NATs are); IPv6 otherwise.
/// Only anchors' observations count: anchors are public, a peer behind its own
/// NAT (or on our LAN) sees something else.
public func classifyNAT(_ evidence: [NATEvidence], local: [Endpoint]) -> NATMapping {
    func classify(_ family: Endpoint.Family) -> NATMapping {
        let seen = evidence.filter { $0.observed.family == family }
        if seen.contains(where: { obs in local.contains { $0.address == obs.observed.address && $0.port == obs.observed.port } }) {
            return .none
        }
        let anchors = Set(seen.map(\.anchor))
        guard anchors.count >= 2 else { return .unknown }
        let distinct = Set(seen.map { EndpointKey($0.observed) })
        return distinct.count == 1 ? .endpointIndependent : .endpointDependent
    }
    let v4 = classify(.v4)
    return v4 != .unknown ? v4 : classify(.v6)
}

/// Endpoint identity without the scope id (an anchor never reports one).
struct EndpointKey: Hashable {
    let address: IPAddressBytes
    let port: UInt16
    init(_ e: Endpoint) {
        address = e.address
        port = e.port
    }
}

// MARK: - Path preference

/// How a path reaches a peer (DESIGN §8 `paths[].kind`).
/// Also `paths[].kind` in `wsctl status --json` (its raw values are that contract).
public enum PathKind: String, Codable, Sendable, CaseIterable, Comparable {
    /// Straight to the peer's public (or self-attested) endpoint.
    case direct
    /// To the peer's address on a shared LAN (a local/lan candidate).
    case lan
    /// Through an anchor, which forwards the still-encrypted packets.
    case relay

    /// "prefer lan/local > direct observed > relay".
    public var rank: Int {
        switch self {
        case .lan: 2
        case .direct: 1
        case .relay: 0
        }
    }

    public static func < (a: PathKind, b: PathKind) -> Bool { a.rank < b.rank }
}

/// What the preference function needs to know about a path.
public struct PathView: Equatable, Sendable {
    public var kind: PathKind
    /// The path answered recently (validated, or the relay's anchor is reachable).
    public var usable: Bool
    public var rtt: Span?
    public init(kind: PathKind, usable: Bool, rtt: Span? = nil) {
        self.kind = kind
        self.usable = usable
        self.rtt = rtt
    }
}

/// `prefers`' RTT hysteresis: `c` below `ratio` × `a` and at least `minimum` less.
public func rttClearlyBelow(_ c: Span, _ a: Span, ratio: Double = 0.8, minimum: Span = .milliseconds(5)) -> Bool {
    c < a && Double(c.ns) < ratio * Double(a.ns) && a.ns - c.ns >= minimum.ns
}

/// Whether `candidate` should replace `active` as the path data goes on.
///
/// Class first, then RTT with hysteresis:
///   - an unusable candidate never wins; any usable one beats no path or an
///     unusable active path;
///   - a better class wins at once (lan > direct > relay): a relayed pair goes
///     direct as soon as a direct path answers;
///   - a worse class never wins while the active path is usable;
///   - except between lan and direct, both straight to the member: there the
///     class gives way to a clear RTT win as within a class (a "lan" path that
///     is the slow one, such as a second uplink the LAN discovery found, 200 ms
///     away beside a 20 ms direct path: perf/multipath C kept its flow on it);
///     without RTTs for both, the class decides;
///   - within a class, only a clear RTT win: below `ratio` × the active RTT and
///     at least `minimum` better (default 80% and 5 ms), so two paths with
///     similar RTTs do not trade places on every sample (STYLE 8). Without
///     RTTs for both, the active path stays.
/// Roaming (a peer's traffic arriving from a new source of the same class) is
/// not a preference question: it follows the peer's own choice (NodeCore).
public func prefers(_ candidate: PathView, over active: PathView?, ratio: Double = 0.8,
                    minimum: Span = .milliseconds(5)) -> Bool {
    guard candidate.usable else { return false }
    guard let active, active.usable else { return true }
    func clearlyFaster(_ c: Span, than a: Span) -> Bool { rttClearlyBelow(c, a, ratio: ratio, minimum: minimum) }
    if candidate.kind != active.kind {
        if candidate.kind != .relay && active.kind != .relay, let c = candidate.rtt, let a = active.rtt {
            // lan and direct: the class, unless the other one is clearly faster.
            return candidate.kind > active.kind ? !clearlyFaster(a, than: c) : clearlyFaster(c, than: a)
        }
        return candidate.kind > active.kind
    }
    guard let c = candidate.rtt, let a = active.rtt else { return false }
    return clearlyFaster(c, than: a)
}

// MARK: - Relay anchor choice

/// The anchor a pair relays through: a hash of the pair (the same on both
/// sides: XOR of the two member ids, then mixed) over the reachable anchors
/// in a stable order, so relay load spreads over anchors (seed 3.7) and both
/// directions usually use the same one. Nil when no anchor is reachable.
public func relayAnchor(for a: MemberID, _ b: MemberID, among anchors: [(id: MemberID, peer: PeerID)]) -> PeerID? {
    guard !anchors.isEmpty else { return nil }
    let sorted = anchors.sorted { $0.id.rawValue < $1.id.rawValue }
    var x = a.rawValue ^ b.rawValue
    // SplitMix64 finalizer: neighbouring ids land on unrelated anchors.
    x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
    x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
    x ^= x >> 31
    return sorted[Int(x % UInt64(sorted.count))].peer
}

// MARK: - Backoff schedules

/// Delay before recovery attempt `attempt` (0-based) before jitter:
/// initial × 2^attempt, capped (1, 2, 4, ... 32, 60, 60 s).
public func recoveryDelay(attempt: Int, timings: ConnectivityTimings) -> Span {
    doubling(timings.recoveryInitial, times: attempt, cap: timings.recoveryMax)
}

/// Delay before the `attempt`-th (0-based) direct-path retry of a relayed peer.
public func directRetryDelay(attempt: Int, timings: ConnectivityTimings) -> Span {
    doubling(timings.directRetryInitial, times: attempt, cap: timings.directRetryMax)
}

func doubling(_ base: Span, times: Int, cap: Span) -> Span {
    var d = base.ns
    var i = 0
    while i < max(0, times) && d < cap.ns {
        d = d > cap.ns / 2 ? cap.ns : d * 2
        i += 1
    }
    return Span(ns: min(d, max(cap.ns, base.ns)))
}

/// `span` ± `percent`% (uniform), from `rng`.
public func jittered(_ span: Span, percent: UInt64, using rng: inout SessionRandom) -> Span {
    let width = span.ns / 100 * percent
    guard width > 0 else { return span }
    let offset = rng.next() % (2 * width + 1)
    return Span(ns: span.ns - width + offset)
}

// MARK: - Rate limiting

/// A token bucket in units of your choice (bytes, messages), refilled
/// continuously: `rate` units per second up to `burst`. Inline, no allocation.
public struct TokenBucket: Sendable, Equatable {
    public let rate: UInt64
    public let burst: UInt64
    /// Credit in units × 10^9 (nanosecond precision without floating point).
    private var credit: UInt64
    private var last: Instant?

    public init(rate: UInt64, burst: UInt64) {
        self.rate = rate
        self.burst = burst
        credit = burst &* 1_000_000_000
    }

    /// Takes `cost` units if they are there.
    public mutating func take(_ cost: UInt64, now: Instant) -> Bool {
        let cap = burst &* 1_000_000_000
        if let last {
            let gained = (now - last).ns.multipliedReportingOverflow(by: rate)
            let sum = credit.addingReportingOverflow(gained.partialValue)
            credit = gained.overflow || sum.overflow ? cap : min(cap, sum.partialValue)
        }
        last = now
        let need = cost.multipliedReportingOverflow(by: 1_000_000_000)
        guard !need.overflow, credit >= need.partialValue else { return false }
        credit -= need.partialValue
        return true
    }
}
