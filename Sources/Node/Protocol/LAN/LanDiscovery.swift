// LAN discovery (DESIGN §5, seed 2.7): signed mDNS/DNS-SD announcements on
// the local link, so that two members on one LAN find each other's LAN
// address and talk directly, never through the router's hairpin (which many
// routers lack). Sans-IO: the driver (Engine/LanAdapter.swift, a worker
// thread) owns the multicast sockets on 224.0.0.251:5353 and [ff02::fb]:5353
// and the clock.
//
// Drain order for the driver, after `start`, `setAddresses`, `handle` or `handleTimeout`:
//   1. `pollTransmit()` until nil: send each datagram (to the group, or unicast);
//   2. `pollEvent()` until nil: a member discovered at a LAN endpoint;
//   3. `pollTimeout()`: wake then and call `handleTimeout(now:)`.
//
//   start ──▶ query + announce ──1 s──▶ announce again ──60 s ± 10%──▶ announce ... (RFC 6762 §8.3: twice at start)
//   stop ──▶ the goodbye: our records with TTL 0 (§10.1)
//   our addresses change ──▶ announce (new sequence), at most one multicast a second (§6)
//   a query for _whalescale._udp.local ──▶ our announcement, at most one a second
//   an announcement ──▶ parse ──▶ member? ──▶ signature? ──▶ sender is one of the signed addresses?
//                  ──▶ sequence above the last one taken? ──▶ event .discovered(member, source address:port)
//
// IPv6: the kernel sends ff02::fb datagrams from the interface's link-local
// address, so a v6 sender is checked like a v4 one: its fe80::/10 source must
// be one of its signed (AAAA) addresses (the signature covers the 16 bytes; the
// scope is the interface the datagram arrived on). Paths never use link-local
// endpoints (PathManager.isUsableRemote), so the event then names the first
// signed global/ULA IPv6 address instead (with the announced port); with none,
// the link-local source with its scope id (NodeCore ignores it).
//
// Every announcement that is not taken is counted by why (`counters`): it never
// throws, traps or reaches NodeCore. Our own announcements (multicast loopback)
// are ignored uncounted.

import Support
import Wire
import Crypto

/// The values that drive LAN discovery.
public struct LanTimings: Sendable {
    /// Between periodic announcements. Peers learn of a new node from its
    /// start-up announcement and its query; this only refreshes (and covers
    /// a lost datagram), so a minute is plenty on a LAN.
    public var announceInterval: Span
    /// ± this percent on each periodic announcement, so nodes started together do not stay in step.
    public var jitterPercent: UInt64
    /// RFC 6762 §6: "a Multicast DNS responder MUST NOT ... multicast a record on
    /// a given interface until at least one second has elapsed since the last time
    /// that record was multicast". Answers to queries wait for this too.
    public var minMulticastGap: Span
    /// RFC 6762 §8.3: the announcement is sent twice at start, one second apart.
    public var startupRepeat: Span
    /// Announcements whose signature we check, per second and burst (Ed25519
    /// verification is the expensive part: a flood on the LAN must not eat a core).
    public var verifyRate: UInt64
    public var verifyBurst: UInt64

    public init(announceInterval: Span = .seconds(UInt64(60)), jitterPercent: UInt64 = 10, minMulticastGap: Span = .seconds(UInt64(1)),
                startupRepeat: Span = .seconds(UInt64(1)), verifyRate: UInt64 = 20, verifyBurst: UInt64 = 50) {
        self.announceInterval = announceInterval
        self.jitterPercent = jitterPercent
        self.minMulticastGap = minMulticastGap
        self.startupRepeat = startupRepeat
        self.verifyRate = verifyRate
        self.verifyBurst = verifyBurst
    }

    public static let `default` = LanTimings()
}

/// What LAN discovery reports to its driver.
public enum LanEvent: Equatable, Sendable {
    /// Member `peer` announced itself, correctly signed, from `endpoint` (its
    /// LAN address and Whalescale port), with a sequence above any before.
    case discovered(PeerID, Endpoint, sequence: UInt64)
}

public enum LanTimerReason: String, Sendable {
    /// The next announcement (start-up repeat, periodic, or a change waiting for the one-second rule).
    case announce
}

/// A datagram to send.
public enum LanTransmit: Equatable, Sendable {
    /// To 224.0.0.251:5353 and [ff02::fb]:5353 on every LAN interface.
    case group([UInt8])
}

/// Counters by name (`wsctl status --json` `counters`, `wsctl metrics`).
public struct LanCounters: Sendable, Equatable {
    public var announceSent: UInt64 = 0
    public var querySent: UInt64 = 0
    public var queryAnswered: UInt64 = 0
    public var announceAccepted: UInt64 = 0
    public var duplicate: UInt64 = 0
    public var badSignature: UInt64 = 0
    public var notMember: UInt64 = 0
    public var malformed: UInt64 = 0
    public var stale: UInt64 = 0
    public var wrongSource: UInt64 = 0
    public var rateLimited: UInt64 = 0
    public var goodbyeSent: UInt64 = 0

    public init() {}

    public var named: [(String, UInt64)] {
        [("lan_announce_sent", announceSent), ("lan_query_sent", querySent), ("lan_query_answered", queryAnswered),
         ("lan_announce_accepted", announceAccepted), ("lan_duplicate", duplicate), ("lan_bad_signature", badSignature),
         ("lan_not_member", notMember), ("lan_malformed", malformed), ("lan_stale", stale),
         ("lan_wrong_source", wrongSource), ("lan_rate_limited", rateLimited), ("lan_goodbye_sent", goodbyeSent)]
    }
}

public struct LanDiscovery: Sendable {
    public enum State: Equatable, Sendable {
        case idle
        /// Announcing: the next one at `nextAnnounce`; `startupLeft` start-up repeats still to send.
        case running(nextAnnounce: Instant, startupLeft: Int)
        case stopped
    }

    public private(set) var state: State = .idle
    public private(set) var counters = LanCounters()
    public let timings: LanTimings
    private let identity: Identity
    /// Members by PeerID (the roster's order); our own key may be among them.
    private let members: [PublicKey]
    private let port: UInt16
    /// Our announcement's sequence: only grows (one step per new content).
    public private(set) var sequence: UInt64
    private var addresses: [Endpoint] = []
    /// Our current signed announcement, serialized (signed again only when its content changes),
    /// and the same with every TTL 0 (the goodbye).
    private var announcement: [UInt8]?
    private var goodbye: [UInt8]?
    private var lastMulticast: Instant?
    /// Per member: the highest sequence taken, and where it came from.
    private var lastSequence: [UInt64?]
    private var verifyBudget: TokenBucket
    private var rng: SessionRandom
    private var outbox: [LanTransmit] = []
    private var events: [LanEvent] = []

    /// `firstSequence`: where our sequence starts (the engine passes the wall
    /// clock's milliseconds at start-up, so a restarted node continues above
    /// its last run without stored state). `seed`: the jitter's randomness.
    public init(identity: Identity, members: [PublicKey], port: UInt16, firstSequence: UInt64,
                timings: LanTimings = .default, seed: UInt64) {
        self.identity = identity
        self.members = members
        self.port = port
        self.sequence = firstSequence
        self.timings = timings
        lastSequence = Array(repeating: nil, count: members.count)
        verifyBudget = TokenBucket(rate: timings.verifyRate, burst: timings.verifyBurst)
        rng = SessionRandom(seed: seed)
    }

    // MARK: Commands

    /// Starts announcing `addresses` (our LAN interface addresses; ports ignored), and asks who is there.
    public mutating func start(addresses: [Endpoint], now: Instant) {
        guard state == .idle else { return }
        setContent(addresses)
        outbox.append(.group(LanAnnouncement.query()))
        counters.querySent &+= 1
        state = .running(nextAnnounce: now, startupLeft: 1)
        handleTimeout(now: now)
    }

    /// Our LAN addresses changed: announce the new ones (at once, or when the one-second rule allows).
    public mutating func setAddresses(_ list: [Endpoint], now: Instant) {
        let normal = Self.normalize(list)
        guard normal != addresses else { return }
        setContent(normal)
        guard case .running(_, let left) = state else { return }
        state = .running(nextAnnounce: earliestMulticast(now), startupLeft: left)
        handleTimeout(now: now)
    }

    /// Stops announcing: the daemon is going away. Sends the goodbye (our
    /// records with TTL 0, RFC 6762 §10.1) so browsers forget us at once.
    public mutating func stop() {
        if case .running = state, let g = goodbye {
            outbox.append(.group(g))
            counters.goodbyeSent &+= 1
        }
        state = .stopped
    }

    // MARK: Input

    /// One datagram received on port 5353 from `source`.
    public mutating func handle(_ bytes: [UInt8], from source: Endpoint, now: Instant) {
        guard case .running = state else { return }
        let m: DNSMessage
        switch DNSMessage.parse(bytes) {
        case .failure:
            counters.malformed &+= 1
            return
        case .success(let v): m = v
        }
        if LanAnnouncement.asksForService(m) {
            answerQuery(now: now)
            return
        }
        // Someone else's mDNS traffic (printers, avahi): not ours to judge.
        guard let found = LanAnnouncement.extract(from: m) else { return }
        for r in found {
            switch r {
            case .failure:
                counters.malformed &+= 1
            case .success(let a):
                take(a, from: source, now: now)
            }
        }
    }

    public mutating func handleTimeout(now: Instant) {
        guard case .running(let next, let left) = state, now >= next else { return }
        // The one-second rule also covers a query answered just before.
        if let last = lastMulticast, now < last + timings.minMulticastGap {
            state = .running(nextAnnounce: last + timings.minMulticastGap, startupLeft: left)
            return
        }
        sendAnnouncement(now: now)
        if left > 0 {
            state = .running(nextAnnounce: now + timings.startupRepeat, startupLeft: left - 1)
        } else {
            state = .running(nextAnnounce: now + jittered(timings.announceInterval, percent: timings.jitterPercent, using: &rng),
                             startupLeft: 0)
        }
    }

    // MARK: Output

    public mutating func pollTransmit() -> LanTransmit? { outbox.isEmpty ? nil : outbox.removeFirst() }
    public mutating func pollEvent() -> LanEvent? { events.isEmpty ? nil : events.removeFirst() }

    public func pollTimeout() -> (deadline: Instant, reason: LanTimerReason)? {
        guard case .running(let next, _) = state else { return nil }
        return (next, .announce)
    }

    /// The highest sequence taken from member `p` (nil: none yet).
    public func sequence(of p: PeerID) -> UInt64? {
        p.rawValue >= 0 && p.rawValue < lastSequence.count ? lastSequence[p.rawValue] : nil
    }

    /// fe80::/10.
    public static func isLinkLocal(_ e: Endpoint) -> Bool {
        e.family == .v6 && e.address[0] == 0xFE && e.address[1] & 0xC0 == 0x80
    }

    /// Where a member that sent its signed announcement from `source` is reached:
    /// the source, except that a link-local IPv6 source gives the first signed
    /// global/ULA IPv6 address (paths never use link-local endpoints).
    static func endpoint(for a: LanAnnouncement, from source: Endpoint) -> Endpoint {
        if isLinkLocal(source),
           let g = a.addresses.first(where: { $0.family == .v6 && !isLinkLocal($0) && $0.address[0] != 0xFF }) {
            return Endpoint(family: .v6, address: g.address, port: a.port)
        }
        return Endpoint(family: source.family, address: source.address, port: a.port, scopeID: isLinkLocal(source) ? source.scopeID : 0)
    }

    // MARK: Internals

    private static func normalize(_ list: [Endpoint]) -> [Endpoint] {
        var out: [Endpoint] = []
        for e in list {
            let a = Endpoint(family: e.family, address: e.address, port: 0)
            if !out.contains(a) { out.append(a) }
        }
        return Array(out.prefix(LanAnnouncement.maxAddresses))
    }

    /// New content: a new sequence and signature (the sequence only ever grows).
    private mutating func setContent(_ list: [Endpoint]) {
        addresses = Self.normalize(list)
        guard !addresses.isEmpty else {
            announcement = nil
            goodbye = nil
            return
        }
        sequence &+= 1
        let signed = LanAnnouncement.signed(by: identity, port: port, sequence: sequence, addresses: addresses)
        announcement = signed.serialize()
        goodbye = signed.serialize(goodbye: true)
    }

    private func earliestMulticast(_ now: Instant) -> Instant {
        guard let last = lastMulticast, now < last + timings.minMulticastGap else { return now }
        return last + timings.minMulticastGap
    }

    private mutating func sendAnnouncement(now: Instant) {
        guard let a = announcement else { return }  // no LAN address: nothing to say
        outbox.append(.group(a))
        counters.announceSent &+= 1
        lastMulticast = now
    }

    /// A query for our service: our announcement now, or when the one-second rule allows
    /// (several queries in that second get that one answer).
    private mutating func answerQuery(now: Instant) {
        guard announcement != nil, case .running(let next, let left) = state else { return }
        counters.queryAnswered &+= 1
        let at = earliestMulticast(now)
        if at < next { state = .running(nextAnnounce: at, startupLeft: left) }
        handleTimeout(now: now)
    }

    private mutating func take(_ a: LanAnnouncement, from source: Endpoint, now: Instant) {
        if a.key == identity.publicKey { return }  // our own, looped back
        guard let i = members.firstIndex(of: a.key) else {
            counters.notMember &+= 1
            return
        }
        if let last = lastSequence[i] {
            if a.sequence == last {
                counters.duplicate &+= 1  // a repeat (start-up, periodic, answer) of what we took
                return
            }
            if a.sequence < last {
                counters.stale &+= 1
                return
            }
        }
        guard verifyBudget.take(1, now: now) else {
            counters.rateLimited &+= 1
            return
        }
        guard a.isValidlySigned else {
            counters.badSignature &+= 1
            return
        }
        // The sender must be one of the addresses it signed: a signed announcement
        // replayed by another host gives nobody a path to that host.
        guard a.addresses.contains(where: { $0.family == source.family && $0.address == source.address }) else {
            counters.wrongSource &+= 1
            return
        }
        lastSequence[i] = a.sequence
        counters.announceAccepted &+= 1
        events.append(.discovered(PeerID(rawValue: i), Self.endpoint(for: a, from: source), sequence: a.sequence))
    }
}
