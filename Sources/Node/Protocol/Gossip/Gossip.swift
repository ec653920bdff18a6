// Gossip of self-attested endpoint records (DESIGN §6; seed 2.3, 2.4, 3.2, 3.3).
// Sans-IO: the driver hands it messages from members (inside their sessions),
// the clock and which members are reachable; it gives back messages to send
// and records that changed. Wire formats: `Wire/Gossip.swift`.
//
//   publish(endpoints) ──▶ own record, sequence + 1, signed ──┐
//   RECORDS from a member ──▶ member? newer? signed? ─────────┴─▶ stored ─▶ event recordChanged
//                                                                 └─▶ a rumour: pushed to `fanout`
//                                                                     random members, `pushRounds` times
//   every `antiEntropy` (jittered): SUMMARY (count, hash of the digest) to one random member
//     SUMMARY, hash differs  ──▶ DIGEST (member id, sequence) in parts
//     DIGEST ──▶ PULL what they have newer, RECORDS what they lack or hold older
//   a member's session comes up ──▶ SUMMARY to it at once (a restart or a healed partition catches up)
//
// Rules (the seed's): the higher sequence wins, whatever any clock says; a
// record counts only with its own node's signature, so a member can carry
// another's record but never change it, and never redirect its traffic (3.3);
// records about non-members, bad signatures, stale sequences and malformed
// messages are dropped, counted, never stored or forwarded. What others
// observe about a node is not gossiped: observations stay hints in the
// endpoint book. Bounded: a fanout (not every member), a per-member byte
// budget on what we process, anti-entropy once per period.
//
// Drain order after every `handle…`: pollTransmit until nil, pollEvent until
// nil, then pollTimeout.
import Support
import Wire
import Crypto

/// The gossip constants (STYLE 6): spec name, unit, reason.
public struct GossipTimings: Sendable {
    /// Members a new record is pushed to per round (seed 2.4: a random few, not all).
    public var fanout = 3
    /// Rounds a new record is pushed for: a rumour reaches all but about e^-(fanout·rounds) of the members.
    public var pushRounds = 2
    /// Between two push rounds.
    public var pushInterval = Span.milliseconds(200)
    /// Anti-entropy period (seed 3.2: a slow timer; `[gossip] anti_entropy_s`).
    public var antiEntropy = Span.seconds(300 as UInt64)
    /// A node publishes its own record at most this often (NodeCore's driver: a
    /// flapping observation must not become a rumour per flip).
    public var publishInterval = Span.seconds(1 as UInt64)
    /// What one member may make us process, bytes per second and burst (a full digest of
    /// 10,000 members is 160 KB: the burst covers it).
    public var peerBytesPerSecond: UInt64 = 32 * 1024
    public var peerBurstBytes: UInt64 = 256 * 1024

    public init() {}
    public static let `default` = GossipTimings()
}

/// The members as gossip sees them: keys, relay labels, and the digest's order.
/// Immutable and shared (one value serves every node of a simulation).
public struct GossipRoster: Sendable {
    public let keys: [PublicKey]
    public let ids: [MemberID]
    let byKey: [PublicKey: Int]
    let byID: [MemberID: Int]
    /// Member indices sorted by member id: the digest's order.
    let order: [Int]

    public init(keys: [PublicKey]) {
        self.keys = keys
        ids = keys.map { MemberID(publicKey: $0) }
        var bk: [PublicKey: Int] = [:], bi: [MemberID: Int] = [:]
        for (i, k) in keys.enumerated() where bk[k] == nil {
            bk[k] = i
            bi[ids[i]] = i
        }
        byKey = bk
        byID = bi
        let labels = ids
        order = keys.indices.sorted { labels[$0].rawValue < labels[$1].rawValue }
    }

    public var count: Int { keys.count }
}

public enum GossipEvent: Equatable, Sendable {
    /// A member's record is new or newer (for the endpoint book).
    case recordChanged(PeerID, EndpointRecord)
}

/// Counted outcomes (status counters `gossip_…`).
public struct GossipCounters: Sendable, Equatable {
    public var messagesSent: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var messagesReceived: UInt64 = 0
    public var recordsAccepted: UInt64 = 0
    public var malformed: UInt64 = 0
    public var notMember: UInt64 = 0
    public var badSignature: UInt64 = 0
    public var stale: UInt64 = 0
    public var rateLimited: UInt64 = 0
    public var inSync: UInt64 = 0
    /// Records an anchor sent with an introduction (`introduce`).
    public var introduced: UInt64 = 0

    /// As status counters.
    public var named: [String: UInt64] {
        ["gossip_sent": messagesSent, "gossip_received": messagesReceived, "gossip_records_accepted": recordsAccepted,
         "gossip_malformed": malformed, "gossip_not_member": notMember, "gossip_bad_signature": badSignature,
         "gossip_stale": stale, "gossip_rate_limited": rateLimited, "gossip_in_sync": inSync,
         "gossip_introduced": introduced]
    }
}

/// A record as stored: shared by reference (a simulation's thousand nodes hold the same ones).
public final class StoredRecord: Sendable {
    public let record: EndpointRecord
    init(_ r: EndpointRecord) { record = r }
}

public struct Gossip: Sendable {
    public let roster: GossipRoster
    public let me: Int
    let identity: Identity?
    let timings: GossipTimings
    var rng: SessionRandom

    /// By member index; ours included.
    private(set) var records: [StoredRecord?]
    /// Our own record's sequence: never goes backwards (persisted with the record).
    public private(set) var ownSequence: UInt64 = 0
    private var ownEndpoints: [Candidate] = []
    /// Rumours: member index → push rounds left.
    private var hot: [Int: Int] = [:]
    private var pushAt: Instant?
    private var antiEntropyAt: Instant?
    /// Members not reachable now (no session): never chosen.
    private var down = Set<Int>()
    private var buckets: [Int: TokenBucket] = [:]
    /// Per member that is sending us its digest: the members it mentioned so far.
    private var digestSeen: [Int: Set<Int>] = [:]
    private var cachedHash: [UInt8]?
    private var out = Outbox<(to: PeerID, bytes: [UInt8])>()
    private var events = Outbox<GossipEvent>()
    public private(set) var counters = GossipCounters()

    /// - Parameters:
    ///   - identity: ours, to sign our record (nil: a node that only relays others' records, in tests).
    ///   - me: our index in `roster`.
    ///   - seed: for the choice of members (not a secret).
    public init(roster: GossipRoster, me: Int, identity: Identity?, timings: GossipTimings = .default, seed: UInt64) {
        self.roster = roster
        self.me = me
        self.identity = identity
        self.timings = timings
        rng = SessionRandom(seed: seed)
        records = Array(repeating: nil, count: roster.count)
    }

    // MARK: Inputs

    /// The first call: schedules the first anti-entropy round somewhere in the first period
    /// (so a thousand nodes started together do not all talk at once).
    public mutating func start(now: Instant) {
        let period = max(timings.antiEntropy.ns, 1)
        antiEntropyAt = now + Span(ns: rng.next() % period)
    }

    /// Our endpoints changed: a new record, one sequence higher, pushed to the fanout.
    public mutating func publish(_ endpoints: [Candidate], now: Instant) {
        guard let identity else { return }
        ownEndpoints = Array(endpoints.prefix(EndpointRecord.maxEndpoints))
        ownSequence &+= 1
        let r = EndpointRecord.signed(by: identity, sequence: ownSequence, endpoints: ownEndpoints)
        store(me, r, now: now)
    }

    /// A gossip message (the plaintext of a control message) from member `peer`.
    public mutating func handle(_ bytes: UnsafeRawBufferPointer, from peer: PeerID, now: Instant) {
        let p = peer.rawValue
        guard p >= 0, p < roster.count, p != me else { counters.notMember += 1; return }
        counters.messagesReceived += 1
        var bucket = buckets[p] ?? TokenBucket(rate: timings.peerBytesPerSecond, burst: timings.peerBurstBytes)
        let allowed = bucket.take(UInt64(bytes.count), now: now)
        buckets[p] = bucket
        guard allowed else { counters.rateLimited += 1; return }
        guard let m = GossipMessage(bytes) else { counters.malformed += 1; return }
        switch m {
        case .records(let rs): for r in rs { receive(r, now: now) }
        case .summary(let count, let hash): receiveSummary(count: count, hash: hash, from: p)
        case .digest(let last, let entries): receiveDigest(entries, last: last, from: p)
        case .pull(let ids): sendRecords(ids.compactMap { roster.byID[$0] }, to: p)
        }
    }

    public mutating func handle(_ bytes: [UInt8], from peer: PeerID, now: Instant) {
        bytes.withUnsafeBytes { handle($0, from: peer, now: now) }
    }

    /// A member's session came up: it may have missed records (a restart, a healed
    /// partition), so anti-entropy with it at once.
    public mutating func peerUp(_ peer: PeerID, now: Instant) {
        let p = peer.rawValue
        guard p >= 0, p < roster.count, p != me else { return }
        down.remove(p)
        sendSummary(to: p)
    }

    /// An anchor introduces `subject` to `peer` (a RENDEZVOUS): `subject`'s own
    /// signed record goes with it, so `peer` checks the signature of what it is
    /// told instead of taking the anchor's word. False when we hold no record
    /// of `subject` (it has not published one yet): the introduction then
    /// carries only the anchor's observation, which the receiver treats as a
    /// hint (NodeCore `admitCandidates`).
    @discardableResult
    public mutating func introduce(_ subject: PeerID, to peer: PeerID) -> Bool {
        let s = subject.rawValue, p = peer.rawValue
        guard s >= 0, s < roster.count, p >= 0, p < roster.count, p != me, s != p, records[s] != nil else { return false }
        counters.introduced += 1
        sendRecords([s], to: p)
        return true
    }

    /// A member is not reachable: never chosen until `peerUp`.
    public mutating func peerDown(_ peer: PeerID) {
        guard peer.rawValue >= 0, peer.rawValue < roster.count else { return }
        down.insert(peer.rawValue)
    }

    public mutating func handleTimeout(now: Instant) {
        if let t = pushAt, t <= now { pushRound(now: now) }
        if let t = antiEntropyAt, t <= now {
            if let p = randomMember() { sendSummary(to: p) }
            // 80...100% of the period: never later than one period (so a node that
            // missed a rumour holds it within one period of the change, from its own
            // round), and jittered so that rounds do not fall into lock step.
            let period = timings.antiEntropy.ns
            antiEntropyAt = now + Span(ns: period - period / 5 + rng.next() % max(1, period / 5 + 1))
        }
    }

    // MARK: Outputs

    public mutating func pollTransmit() -> (to: PeerID, bytes: [UInt8])? { out.pop() }
    public mutating func pollEvent() -> GossipEvent? { events.pop() }

    /// The next moment `handleTimeout` has work, and why.
    public func pollTimeout() -> (deadline: Instant, reason: String)? {
        switch (pushAt, antiEntropyAt) {
        case let (p?, a?): p <= a ? (p, "gossip push") : (a, "gossip anti-entropy")
        case let (p?, nil): (p, "gossip push")
        case let (nil, a?): (a, "gossip anti-entropy")
        case (nil, nil): nil
        }
    }

    /// The record held for member `peer` (ours included).
    public func record(of peer: PeerID) -> EndpointRecord? {
        guard peer.rawValue >= 0, peer.rawValue < records.count else { return nil }
        return records[peer.rawValue]?.record
    }

    public func sequence(of peer: PeerID) -> UInt64 { record(of: peer)?.sequence ?? 0 }

    // MARK: Persistence (the endpoint cache in state_dir)

    /// Every record held, ours first, as bytes (each record self-delimiting).
    public func snapshot() -> [UInt8] {
        var b: [UInt8] = []
        if let mine = records[me] { b += mine.record.bytes }
        for (i, r) in records.enumerated() where i != me { if let r { b += r.record.bytes } }
        return b
    }

    /// Loads a snapshot: every record checked as if a member had sent it; our own
    /// record's sequence is where ours continues (it never goes backwards across
    /// restarts). Returns the records taken; stops at the first malformed byte.
    @discardableResult
    public mutating func load(_ bytes: [UInt8], now: Instant) -> Int {
        var taken = 0
        bytes.withUnsafeBytes { b in
            var at = 0
            while at < b.count, let (r, size) = EndpointRecord.parse(b, at: at) {
                at += size
                guard let i = roster.byKey[r.node], r.isValidlySigned else { continue }
                if i == me {
                    if r.sequence > ownSequence {
                        ownSequence = r.sequence
                        ownEndpoints = r.endpoints
                        records[me] = StoredRecord(r)
                        taken += 1
                    }
                } else if r.sequence > (records[i]?.record.sequence ?? 0) {
                    records[i] = StoredRecord(r)
                    events.push(.recordChanged(PeerID(rawValue: i), r))
                    taken += 1
                }
            }
        }
        cachedHash = nil
        return taken
    }

    /// Takes records that are already verified and shared (a simulation's starting state).
    public mutating func adopt(_ shared: [StoredRecord?]) {
        precondition(shared.count == records.count)
        records = shared
        if let mine = shared[me] { ownSequence = mine.record.sequence; ownEndpoints = mine.record.endpoints }
        cachedHash = nil
    }

    /// Makes a stored record (verifying it) for `adopt`.
    public static func share(_ r: EndpointRecord) -> StoredRecord? { r.isValidlySigned ? StoredRecord(r) : nil }

    // MARK: Receiving

    private mutating func receive(_ r: EndpointRecord, now: Instant) {
        guard let i = roster.byKey[r.node] else { counters.notMember += 1; return }
        if i == me {
            // Our own record from an earlier life (state lost) with a higher sequence:
            // continue above it, so ours wins again everywhere.
            guard r.sequence > ownSequence else { counters.stale += 1; return }
            guard r.isValidlySigned else { counters.badSignature += 1; return }
            ownSequence = r.sequence
            publish(ownEndpoints, now: now)
            return
        }
        // Cheap checks first: a stale or replayed record costs no signature check.
        guard r.sequence > (records[i]?.record.sequence ?? 0) else { counters.stale += 1; return }
        guard r.isValidlySigned else { counters.badSignature += 1; return }
        store(i, r, now: now)
    }

    private mutating func store(_ i: Int, _ r: EndpointRecord, now: Instant) {
        records[i] = StoredRecord(r)
        cachedHash = nil
        counters.recordsAccepted += 1
        if i != me { events.push(.recordChanged(PeerID(rawValue: i), r)) }
        hot[i] = timings.pushRounds
        if pushAt == nil { pushAt = now }
    }

    private mutating func receiveSummary(count: UInt32, hash: [UInt8], from p: Int) {
        guard hash != digestHash() else { counters.inSync += 1; return }
        // They differ: our digest, in parts, so they can pull and push what differs.
        var entries: [DigestEntry] = []
        let held = roster.order.filter { records[$0] != nil }
        for (n, i) in held.enumerated() {
            entries.append(DigestEntry(member: roster.ids[i], sequence: records[i]!.record.sequence))
            if entries.count == GossipMessage.maxDigestEntries || n == held.count - 1 {
                send(.digest(last: n == held.count - 1, entries: entries), to: p)
                entries.removeAll(keepingCapacity: true)
            }
        }
        if held.isEmpty { send(.digest(last: true, entries: []), to: p) }
    }

    private mutating func receiveDigest(_ entries: [DigestEntry], last: Bool, from p: Int) {
        var seen = digestSeen[p] ?? []
        var want: [MemberID] = []
        var give: [Int] = []
        for e in entries {
            guard let i = roster.byID[e.member] else { counters.notMember += 1; continue }
            seen.insert(i)
            let ours = records[i]?.record.sequence ?? 0
            if e.sequence > ours { want.append(e.member) } else if ours > e.sequence { give.append(i) }
        }
        if last {
            // What they did not mention at all, they lack.
            for (i, r) in records.enumerated() where r != nil && !seen.contains(i) { give.append(i) }
            digestSeen[p] = nil
        } else {
            digestSeen[p] = seen
        }
        var k = 0
        while k < want.count {
            let part = Array(want[k..<min(want.count, k + GossipMessage.maxPullEntries)])
            send(.pull(part), to: p)
            k += part.count
        }
        sendRecords(give, to: p)
    }

    // MARK: Sending

    private mutating func pushRound(now: Instant) {
        let rumours = hot.keys.sorted()
        var targets: [Int: [Int]] = [:]
        for i in rumours {
            var chosen = Set<Int>()
            var tries = 0
            while chosen.count < timings.fanout, tries < timings.fanout * 4 {
                tries += 1
                if let p = randomMember(), p != i { chosen.insert(p) }
            }
            for p in chosen { targets[p, default: []].append(i) }
            let left = (hot[i] ?? 1) - 1
            hot[i] = left > 0 ? left : nil
        }
        for (p, is_) in targets.sorted(by: { $0.key < $1.key }) { sendRecords(is_, to: p) }
        pushAt = hot.isEmpty ? nil : now + timings.pushInterval
    }

    private mutating func sendRecords(_ indices: [Int], to p: Int) {
        var batch: [EndpointRecord] = []
        for i in indices {
            guard let r = records[i]?.record else { continue }
            batch.append(r)
            if batch.count == GossipMessage.maxRecordsPerMessage {
                send(.records(batch), to: p)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { send(.records(batch), to: p) }
    }

    private mutating func sendSummary(to p: Int) {
        let held = records.reduce(0) { $0 + ($1 == nil ? 0 : 1) }
        send(.summary(count: UInt32(held), hash: digestHash()), to: p)
    }

    private mutating func send(_ m: GossipMessage, to p: Int) {
        let b = m.bytes
        counters.messagesSent += 1
        counters.bytesSent += UInt64(b.count)
        out.push((PeerID(rawValue: p), b))
    }

    /// A random reachable member other than us (nil when there is none).
    private mutating func randomMember() -> Int? {
        let n = roster.count
        guard n > 1 else { return nil }
        for _ in 0..<32 {
            let p = Int(rng.next() % UInt64(n))
            if p != me, !down.contains(p) { return p }
        }
        return (0..<n).first { $0 != me && !down.contains($0) }
    }

    /// The hash of what we hold, in member-id order (cached until a record changes).
    private mutating func digestHash() -> [UInt8] {
        if let h = cachedHash { return h }
        var entries: [DigestEntry] = []
        entries.reserveCapacity(records.count)
        for i in roster.order { if let r = records[i] { entries.append(DigestEntry(member: roster.ids[i], sequence: r.record.sequence)) } }
        let h = GossipMessage.digestHash(entries)
        cachedHash = h
        return h
    }
}
