// RELAY forwarding on every lane of an anchor: what reactor 0 publishes, and
// the per-lane forwarder that runs on it.
//
//   reactor 0 (NodeCore)                                     every lane k (SessionShard k)
//   ───────────────────────────────────────────────────      ───────────────────────────────────────────
//   sessions, paths, keys change ── relayTable ─ ShardSync ─▶ setRelayTable (a value: read-only here)
//                                   (compared member by       RELAY from a member's endpoint, steered to k
//                                    member, no allocation,   by its inner DATA's receiver index:
//                                    after keys or routes
//                                    changed)
//                                                               source ─▶ sender (bySource, memo per run)
//                                                               hop tag under the sender's session
//                                                               target: a member with a direct path
//                                                               shared budget of the sender ─▶ take
//                                                               rewrite id, re-tag, forward in place
//
// The table is a snapshot, published the way keys and routes are (ShardSync:
// pushed when it differs from what was sent, through the lanes' mailboxes; no
// lock on the packet path). A lane works on the table it last got: a member
// whose session just expired may be forwarded for at most one mailbox round
// trip (its keys' own deadline, `until`, is checked per packet with `now`).
//
// What a forward checks is exactly NodeCore's `receiveRelay` (Routing.swift),
// in the same order and with the same drop reasons:
//   source is the current endpoint of a member with live keys  else relay_source_not_member
//   the hop tag authenticates under that member's session      else relay_bad_tag      (M4)
//   the id names another member that may be relayed to         else relay_unknown_target
//   that member has live keys and a direct active path         else relay_target_unreachable
//   the sender's bytes/s budget has room                       else relay_rate_limited
//
// Per-member budgets across lanes: not split. Which lane a member's RELAY
// lands on depends on the inner receiver index (its target's choice), so one
// member's traffic to two targets can land on two lanes; per-lane buckets
// would either let it use N budgets or cap one flow at 1/N. So the lanes take
// from one budget per member (`SharedRelayBudget`): a generic cell rate
// algorithm (GCRA, a token bucket kept as one "theoretical arrival time"),
// one compare-and-swap per forwarded datagram in the engine (`Engine/
// AtomicRelayBudget.swift`), a plain value in single-threaded drivers.
//
// Relayed handshakes (H1): a RELAY whose inner datagram is a handshake is
// forwarded like any other (within the sender's budget); its target meters
// it (Tunnels: load meter, cookie keyed to (anchor, member), per-member
// bucket). A RELAY *for us* (from another anchor) is delivery, not forwarding:
// the shard opens DATA in it, and hands a handshake to NodeCore on lane 0.
import Support
import Wire
import Crypto

/// Who may relay and be relayed to, as reactor 0 sees it now (published to every lane).
public struct RelayTable: Equatable, Sendable {
    /// One member's relay-relevant state.
    public struct Member: Equatable, Sendable {
        /// Its current, authenticated direct endpoint: a RELAY from exactly here may be its (nil: none).
        public var source: Endpoint?
        /// Its keys can send until then (`Tunnels.isEstablished`); nil: no keys.
        public var until: Instant?
        /// Its direct active path's remote: where a RELAY for it goes (nil: relayed itself, or no path).
        public var remote: Endpoint?
        /// The hop-tag keys of our session with it.
        public var keys: RelayHopKeys
        /// Its relay label (what a forwarded RELAY names it by).
        public var label: MemberID
        /// It may use the relay and be relayed to: not us, not a stock WireGuard peer.
        public var relays: Bool

        public init(source: Endpoint?, until: Instant?, remote: Endpoint?, keys: RelayHopKeys, label: MemberID, relays: Bool) {
            self.source = source
            self.until = until
            self.remote = remote
            self.keys = keys
            self.label = label
            self.relays = relays
        }
    }

    public private(set) var members: [Member]
    /// Source endpoint -> member (built from `members`).
    private(set) var bySource: [Endpoint: PeerID]

    public init(members: [Member] = []) {
        self.members = members
        var by: [Endpoint: PeerID] = [:]
        for (i, m) in members.enumerated() {
            if let s = m.source, m.relays { by[s] = PeerID(rawValue: i) }
        }
        bySource = by
    }

    public static func == (a: RelayTable, b: RelayTable) -> Bool { a.members == b.members }
}

/// A per-member relay budget (bytes/s with a burst) that every lane takes from.
/// Protocol holds no atomics: the engine supplies a thread-safe one
/// (`Engine/AtomicRelayBudget.swift`), a single-threaded driver `LocalRelayBudget`.
public protocol SharedRelayBudget: AnyObject, Sendable {
    /// Takes `bytes` from `member`'s budget at `now`; false: over it (nothing taken).
    func take(_ member: Int, bytes: Int, now: Instant) -> Bool
}

/// The budget's arithmetic, shared by both implementations: GCRA over a
/// "theoretical arrival time" `tat` in nanoseconds. A datagram of n bytes
/// costs n / rate seconds (rounded up: never more than the rate); it passes
/// when the new `tat` is no more than `burst / rate` ahead of now.
public struct RelayBudgetRule: Sendable, Equatable {
    public let bytesPerSecond: UInt64
    public let burstBytes: UInt64
    /// How far `tat` may run ahead of now (ns): the burst.
    public let tolerance: UInt64

    public init(bytesPerSecond: UInt64, burstBytes: UInt64) {
        self.bytesPerSecond = bytesPerSecond
        self.burstBytes = burstBytes
        if bytesPerSecond == 0 {
            tolerance = 0
        } else {
            let t = burstBytes.multipliedReportingOverflow(by: 1_000_000_000)
            tolerance = t.overflow ? UInt64.max / 2 : t.partialValue / bytesPerSecond
        }
    }

    /// 0: no limit.
    @inline(__always) public var unlimited: Bool { bytesPerSecond == 0 }

    /// The new `tat` for a datagram of `bytes` at `now` after `tat`, or nil when over budget.
    @inline(__always)
    public func next(tat: UInt64, bytes: Int, now: Instant) -> UInt64? {
        let cost = (UInt64(bytes) &* 1_000_000_000 &+ bytesPerSecond &- 1) / bytesPerSecond
        let start = max(tat, now.ns)
        let new = start &+ cost
        return new &- now.ns <= tolerance ? new : nil
    }
}

/// One thread's budget (the simulator, tests, NodeCore-less drivers).
public final class LocalRelayBudget: SharedRelayBudget, @unchecked Sendable {
    public let rule: RelayBudgetRule
    private var tat: [UInt64]

    public init(members: Int, rule: RelayBudgetRule) {
        self.rule = rule
        tat = Array(repeating: 0, count: members)
    }

    public func take(_ member: Int, bytes: Int, now: Instant) -> Bool {
        if rule.unlimited { return true }
        guard member >= 0, member < tat.count, let n = rule.next(tat: tat[member], bytes: bytes, now: now) else { return false }
        tat[member] = n
        return true
    }
}

/// What one lane forwarded (summed across lanes in `wsctl status`).
public struct RelayLaneCounters: Equatable, Sendable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public init() {}
}

/// One lane's RELAY forwarder on an anchor (held by its SessionShard).
struct RelayLane: Sendable {
    var table = RelayTable()
    /// The shared budget: held strongly in `budget`, called through `budgetRef`
    /// without a retain per packet (a retain of an object every lane shares
    /// would bounce its refcount between cores on each forwarded datagram; a
    /// plain or `unowned(unsafe)` reference still retained it around the call).
    private var budget: BudgetHolder?
    private var budgetRef: Unmanaged<BudgetHolder>?

    final class BudgetHolder: Sendable {
        let impl: any SharedRelayBudget
        init(_ b: any SharedRelayBudget) { impl = b }
    }

    private(set) var counters = RelayLaneCounters()
    /// The last source looked up, and its member: a GRO run's datagrams share
    /// their source, so `bySource` is hashed once per run, not per datagram.
    private var lastSource: Endpoint?
    private var lastSender: PeerID?

    enum Verdict: Equatable {
        case forward(Endpoint)
        case refuse(NodeDropReason)
    }

    mutating func setBudget(_ b: (any SharedRelayBudget)?) {
        budget = b.map(BudgetHolder.init)
        budgetRef = budget.map { Unmanaged.passUnretained($0) }
    }

    mutating func setTable(_ t: RelayTable) {
        table = t
        lastSource = nil
        lastSender = nil
    }

    /// Forwards the RELAY of `length` bytes at `base` (header parsed: `target`
    /// is the member its id names, if any) from `source`: rewritten and re-tagged in place, or why not.
    @inline(__always)
    mutating func forward(_ base: UnsafeMutableRawPointer, length: Int, target: PeerID?, from source: Endpoint,
                          now: Instant) -> Verdict {
        let sender: PeerID?
        if let s = lastSource, s == source {
            sender = lastSender
        } else {
            sender = table.bySource[source]
            lastSource = source
            lastSender = sender
        }
        guard let sender, sender.rawValue < table.members.count else { return .refuse(.relaySourceNotMember) }
        // Read in place (`members[i]` would copy a whole entry per packet).
        let s = sender.rawValue
        guard let su = table.members[s].until, now < su else { return .refuse(.relaySourceNotMember) }
        // The address alone can be forged (M4): the tag must be under the sender's session.
        guard table.members[s].keys.check(base, length: length) else { return .refuse(.relayBadTag) }
        guard let target, target != sender, target.rawValue < table.members.count, table.members[target.rawValue].relays else {
            return .refuse(.relayUnknownTarget)
        }
        let t = target.rawValue
        guard let tu = table.members[t].until, now < tu, let remote = table.members[t].remote,
              let key = table.members[t].keys.send else {
            return .refuse(.relayTargetUnreachable)
        }
        if let b = budgetRef, !b._withUnsafeGuaranteedRef({ $0.impl.take(s, bytes: length, now: now) }) {
            return .refuse(.relayRateLimited)
        }
        counters.packets &+= 1
        counters.bytes &+= UInt64(length)
        RelayMessage.rewrite(table.members[s].label, in: UnsafeMutableRawBufferPointer(start: base, count: length))
        RelayTag.seal(base, length: length, key: key)
        return .forward(remote)
    }
}

extension NodeCore {
    /// The relay table as it is now (empty unless we are an anchor).
    public var relayTable: RelayTable {
        guard isAnchor else { return RelayTable() }
        var list: [RelayTable.Member] = []
        list.reserveCapacity(entries.count)
        for i in entries.indices { list.append(relayMember(PeerID(rawValue: i))) }
        return RelayTable(members: list)
    }

    /// Whether `t` is `relayTable` as it is now (compared without building it: no allocation).
    public func relayTableEqual(_ t: RelayTable) -> Bool {
        guard isAnchor else { return t.members.isEmpty }
        guard t.members.count == entries.count else { return false }
        var i = 0
        while i < entries.count {
            if t.members[i] != relayMember(PeerID(rawValue: i)) { return false }
            i += 1
        }
        return true
    }

    /// Member `p` as the lanes' forwarder needs it (what `receiveRelay` reads per packet).
    func relayMember(_ p: PeerID) -> RelayTable.Member {
        let relays = !isSelf(p) && !isWireGuardPeer(p)
        let until = tunnels.sendableUntil(p)
        var source: Endpoint?
        if until != nil, let ep = tunnels.endpoint(of: p), tunnels.paths.directOwner[ep] == p { source = ep }
        var remote: Endpoint?
        if until != nil, let path = tunnels.paths.peers[p.rawValue].activePath, path.via == nil { remote = path.remote }
        return RelayTable.Member(source: source, until: until, remote: remote, keys: tunnels.relayHop(of: p),
                                 label: memberID(of: p), relays: relays)
    }
}

extension NodeCore {
    /// The per-member relay budget (`node.relay_rate_mbit`) as the lanes' shared budget applies it.
    public var relayBudgetRule: RelayBudgetRule {
        RelayBudgetRule(bytesPerSecond: timings.relayBytesPerSecond, burstBytes: timings.relayBurstBytes)
    }
}
