// Sessions split across reactors: one reactor per core, each session owned by one.
//
//   reactor 0 (NodeCore: handshakes, timers, connectivity)     reactor k (SessionShard k)
//   ──────────────────────────────────────────────────────     ─────────────────────────
//   handshake completes, keys rotate ── keys(of:) ───────────▶ install: current/previous/next
//   path manager picks a path ───────── dataRoute(for:) ─────▶ setRoute: endpoint [+ RELAY label]
//   anchors or their keys change ────── relayAnchorList ─────▶ setAnchors (endpoints, relay-tag keys)
//   (anchor) members' sessions/paths ── relayTable ──────────▶ setRelayTable: every lane forwards RELAY
//                                                               (Connectivity/RelayTable.swift)
//                                                               DATA in (steered by receiver index):
//                                                                 open in place, replay window here only
//                                                               TUN packet for an owned peer: seal in place
//   applyShardReport ◀── activity (≤ every 20 ms per peer), promoted(next), rekeyDue ──┘
//   receiveOpened    ◀── a control message it opened (PATH_PING/PONG, RENDEZVOUS, ...)
//   sendPacket       ◀── a TUN packet it has no keys or path for (queue + handshake there)
//   keepalives, control messages: sealed on reactor 0 under the same keys
//
// Ownership: peer p belongs to reactor `p mod N`. We choose the receiver
// indices our peers put in DATA, so every index of p's keypairs is one whose
// low byte (its first byte on the wire) is ≡ p's owner mod N; the UDP sockets
// of the N reactors form one SO_REUSEPORT group with a classic BPF program
// that returns exactly `SessionOwnership.owner(ofIndex:)`. Every DATA for p
// lands on p's owner, which alone holds the replay windows. A datagram that
// lands elsewhere anyway (no BPF, a GRO run that mixed peers) is handed over.
//
// The one counter both sides seal under is a `SharedSendCounter`: an atomic
// add per sealed packet, no lock. Nothing else is shared: everything else
// crosses reactors as messages (the engine's mailboxes and rings).
//
// Sans-IO like everything in Protocol: buffers are the caller's, `now` is a
// parameter, outputs (`pollReport`) are drained by the engine.
import Support
import Wire
import Crypto

/// A keypair's send counter when two reactors seal under the keys. Protocol holds
/// no atomics and no threads: the engine supplies a thread-safe counter
/// (`Engine/AtomicSendCounter.swift`); a single-threaded driver (the simulator)
/// can use `LocalSendCounter`.
public protocol SharedSendCounter: AnyObject, Sendable {
    /// The counter for one packet (never the same twice).
    func take() -> UInt64
    var current: UInt64 { get }
}

/// A send counter for one thread: what the simulator runs split sessions with.
public final class LocalSendCounter: SharedSendCounter, @unchecked Sendable {
    private var value: UInt64 = 0
    public init() {}
    public func take() -> UInt64 { defer { value &+= 1 }; return value }
    public var current: UInt64 { value }
}

/// Makes the counter of each new keypair when sessions are split.
public typealias SendCounterFactory = @Sendable () -> any SharedSendCounter

/// Which reactor owns what (see the header comment).
public enum SessionOwnership {
    /// The reactor that owns `peer`'s session.
    @inline(__always)
    public static func owner(of peer: PeerID, owners: Int) -> Int { owners > 1 ? peer.rawValue % owners : 0 }

    /// The reactor DATA with receiver index `index` is steered to: the index's
    /// low byte (first on the wire) mod `owners`, as the engine's BPF program.
    @inline(__always)
    public static func owner(ofIndex index: UInt32, owners: Int) -> Int { owners > 1 ? Int(index & 0xFF) % owners : 0 }

    /// Where a whole datagram goes: DATA by its receiver index; a RELAY
    /// carrying DATA by the inner index when `relayInner` (the engine sets it
    /// on every node): on a member by the index's low byte (byte 20), so it
    /// lands on the inner session's owner; on an anchor (`anchor`) by its second
    /// byte (byte 21), whose low bit is the pair bit, so the two directions of a
    /// relayed pair land on different lanes, each of which forwards what lands
    /// on it; anything else to reactor 0. What the BPF program computes, byte for byte.
    public static func owner(ofDatagram p: UnsafeRawBufferPointer, length: Int, owners: Int, relayInner: Bool,
                             anchor: Bool = false) -> Int {
        guard owners > 1, length > 0 else { return 0 }
        if p[0] == MessageType.data.rawValue, length > 4 { return Int(p[4]) % owners }
        let at = anchor ? 21 : 20
        if relayInner, p[0] == MessageType.relay.rawValue, length > at, p[16] == MessageType.data.rawValue {
            return Int(p[at]) % owners
        }
        return 0
    }

    /// The bit 8 of every receiver index we choose for `peer`'s sessions: set
    /// when our key sorts before its, so the other end sets it the other way
    /// (an anchor steers each direction of a relayed pair by it).
    public static func pairBit(own: PublicKey, peer: PublicKey) -> Bool {
        own.bytes.lexicographicallyPrecedes(peer.bytes)
    }
}

/// Where the owner sends a peer's data: the session's endpoint, wrapped in
/// RELAY for `relayFor` (the peer's label) when that endpoint is an anchor's.
/// With two or more usable paths, `spread` lists them and the owner's
/// multipath scheduler picks one per packet (Multipath/MultipathRoute.swift).
public struct DataRoute: Equatable, Sendable {
    public var endpoint: Endpoint
    public var relayFor: MemberID?
    /// Empty: one path (`endpoint`). Two or more: the paths data is spread over.
    public var spread = SpreadRoute()
    public init(endpoint: Endpoint, relayFor: MemberID?, spread: SpreadRoute = SpreadRoute()) {
        self.endpoint = endpoint
        self.relayFor = relayFor
        self.spread = spread
    }
}

/// A route without its spread: what the owner reads per packet.
struct DataHop: Sendable {
    var endpoint: Endpoint
    var relayFor: MemberID?
}

/// What the owner did under one peer's keys since its last report.
public struct ShardActivity: Equatable, Sendable {
    public var rxPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var txBytes: UInt64 = 0
    /// A received packet had a payload (not only keepalives).
    public var rxData = false
    /// A sent packet had a payload.
    public var txData = false
    public var lastRx: Instant?
    public var lastTx: Instant?
    /// Where the last authenticated IP packet or keepalive came from (and through which anchor).
    public var source: Endpoint?
    public var via: PeerID?
    public init() {}
}

/// From an owner to reactor 0. Plain values only: the engine copies it between threads as bytes.
public enum ShardReport: Equatable, Sendable {
    case activity(PeerID, ShardActivity)
    /// The first packet under `next` arrived: the owner switched to it.
    case promoted(PeerID, localIndex: UInt32)
    /// Sealing found the current keys due for a rekey (count or age).
    case rekeyDue(PeerID)
}

/// Result of `SessionShard.receive`.
public enum ShardInbound: Equatable, Sendable {
    /// An IP packet from `peer`, decrypted in place at `buffer[offset ..< offset + length]`.
    case packet(PeerID, offset: Int, length: Int)
    /// A control message from `peer`, decrypted in place: reactor 0's (`NodeCore.receiveOpened`).
    case control(PeerID, offset: Int, length: Int, via: PeerID?)
    /// Not session data (handshake, probe, a relayed handshake for us): the whole datagram is reactor 0's.
    case core
    /// (Anchor) a RELAY checked, rewritten and re-tagged in place: send `buffer[offset ..< offset + length]` there.
    case forward(Endpoint, offset: Int, length: Int)
    /// Session data of a peer reactor `k` owns: hand the whole datagram over.
    case elsewhere(Int)
    /// Handled (a keepalive).
    case consumed
    case drop(NodeDropReason)
}

/// Result of `SessionShard.send`.
public enum ShardOutbound: Equatable, Sendable {
    /// Sealed in place (RELAY-wrapped if relayed): send `buffer[offset ..< offset + length]`.
    case send(Endpoint, offset: Int, length: Int)
    /// No keys or no path here: reactor 0's NodeCore takes the packet (queue, handshake, path).
    case core
    case drop(NodeDropReason)
}

/// One reactor's share of the sessions: the keys it seals and opens under.
public struct SessionShard: Sendable {
    public let index: Int
    public let owners: Int
    let timings: SessionTimings
    /// On an anchor, every shard forwards the RELAY datagrams that land on its lane (`relay`).
    let isAnchor: Bool
    /// The RELAY forwarder of this lane (anchors): the table reactor 0 publishes, the shared budget.
    var relay = RelayLane()
    /// The last RELAY label looked up and its member: a GRO run's datagrams
    /// share it, so the roster's dictionary is hashed once per run.
    private var lastLabel: MemberID?
    private var lastLabelPeer: PeerID?
    var peers: [ShardPeer]
    var indices: [UInt32: PeerID] = [:]
    /// The anchors and our sessions' relay-tag keys with them (pushed by reactor 0).
    var anchors: [RelayAnchor] = []
    /// The members (RELAY label -> sender), shared with reactor 0.
    let roster: Roster
    var reports = Outbox<ShardReport>()
    var dirty: [PeerID] = []
    public private(set) var drops: [NodeDropReason: UInt64] = [:]
    /// How often a peer's activity is reported at most (a new path is reported at once).
    public static let reportInterval = Span.milliseconds(20)

    struct ShardPeer: Sendable {
        var keys = KeypairSlots()
        /// Where the peer's data goes (the route without its spread: read per packet, kept small).
        var route: DataHop?
        /// The spread has a relayed path (the owner reserves RELAY header room).
        var spreadRelayed = false
        var activity = ShardActivity()
        var dirty = false
        var lastReport: Instant?
        var reportedSource: Endpoint?
        var reportedVia: PeerID?
        /// The keypair (local index) a rekey was last asked for: once per keypair.
        var rekeyAskedFor: UInt32?
        /// A stock WireGuard peer: pad what is sealed for it to 16 bytes, trim what
        /// it sends to the IP length, take no control message from it.
        var pads = false
        /// Two or more usable paths (`route.spread`): the multipath scheduler's state.
        /// Nil on the single-path fast path (SessionShard+Spread.swift).
        var spread: ShardSpread?
    }

    /// What the last `.packet` / `.control` / `.consumed` verdict of `receive` opened: the
    /// session's counter, the keypair it was under and the path it came over (the
    /// receiver's reorder buffer, `SessionReorder`, reads it).
    public struct Opened: Sendable {
        public var peer = PeerID(rawValue: -1)
        public var counter: UInt64 = 0
        public var receiverIndex: UInt32 = 0
        public var source = Endpoint(family: .v4, address: IPAddressBytes(), port: 0)
        public var relayed = false
    }
    public private(set) var lastOpened = Opened()

    /// - Parameters:
    ///   - roster: the node's roster (`NodeCore.roster`); empty on a lane that holds no sessions.
    ///   - relayBudget: (anchors) the per-member relay budget every lane takes
    ///     from; nil: one of this shard's own, from `relayRule`.
    public init(index: Int, owners: Int, roster: Roster, isAnchor: Bool, timings: SessionTimings = .default,
                relayBudget: (any SharedRelayBudget)? = nil, relayRule: RelayBudgetRule? = nil) {
        self.index = index
        self.owners = max(1, owners)
        self.isAnchor = isAnchor
        self.timings = timings
        // Only the peers this shard owns (p mod owners == index) have a slot: p / owners.
        peers = Array(repeating: ShardPeer(), count: (max(0, roster.count - index) + self.owners - 1) / self.owners)
        for i in peers.indices where index + i * self.owners < roster.count {
            peers[i].pads = roster.members[index + i * self.owners].key.suite == .wireGuard
        }
        self.roster = roster
        if isAnchor {
            let rule = relayRule ?? RelayBudgetRule(bytesPerSecond: ConnectivityTimings.default.relayBytesPerSecond,
                                                    burstBytes: ConnectivityTimings.default.relayBurstBytes)
            relay.setBudget(relayBudget ?? LocalRelayBudget(members: roster.count, rule: rule))
        }
    }

    public func owns(_ peer: PeerID) -> Bool { SessionOwnership.owner(of: peer, owners: owners) == index }

    /// `peer`'s slot in `peers`, if this shard owns it.
    @inline(__always)
    func slot(_ peer: PeerID) -> Int? {
        guard peer.rawValue >= 0, owns(peer) else { return nil }
        let i = peer.rawValue / owners
        return i < peers.count ? i : nil
    }

    // MARK: From reactor 0

    /// The session layer's keypairs for `peer`. Windows of keypairs already
    /// here are kept (this shard is the only one that opens under them).
    package mutating func install(_ keys: KeypairSlots, for peer: PeerID) {
        guard let i = slot(peer) else { return }
        let old = peers[i].keys
        func keep(_ k: Keypair?) -> Keypair? {
            guard var k else { return nil }
            for o in [old.current, old.previous, old.next] {
                if let o, o.localIndex == k.localIndex { k.replay = o.replay }
            }
            return k
        }
        for o in [old.current, old.previous, old.next] {
            if let o, indices[o.localIndex] == peer { indices.removeValue(forKey: o.localIndex) }
        }
        let new = KeypairSlots(current: keep(keys.current), previous: keep(keys.previous), next: keep(keys.next))
        for k in [new.current, new.previous, new.next] {
            if let k { indices[k.localIndex] = peer }
        }
        peers[i].keys = new
    }

    public mutating func setRoute(_ route: DataRoute?, for peer: PeerID) {
        guard let i = slot(peer) else { return }
        peers[i].route = route.map { DataHop(endpoint: $0.endpoint, relayFor: $0.relayFor) }
        if let route, route.spread.count >= 2 {
            if peers[i].spread == nil { peers[i].spread = ShardSpread(route: route) }
            peers[i].spread!.route = route
            peers[i].spread!.routeChanged()
            peers[i].spreadRelayed = route.spread.anyRelayed
        } else {
            peers[i].spread = nil
            peers[i].spreadRelayed = false
        }
    }

    public mutating func setAnchors(_ list: [RelayAnchor]) {
        anchors = list
        for i in peers.indices where peers[i].spread != nil { peers[i].spread!.routeChanged() }
    }

    /// (Anchors) who may relay and be relayed to, as reactor 0 sees it now.
    public mutating func setRelayTable(_ t: RelayTable) { relay.setTable(t) }

    /// What this lane forwarded as an anchor.
    public var relayCounters: RelayLaneCounters { relay.counters }

    // MARK: Data path

    /// Whether packets to `peer` may carry DATA header flags now: its current keys negotiated them.
    public func sendsHeaderFlags(to peer: PeerID) -> Bool {
        guard let i = slot(peer) else { return false }
        return peers[i].keys.headerFlags
    }

    /// Header room a payload for `peer` needs: DATA, plus RELAY when relayed
    /// (or when there is no route here yet: the packet then goes to reactor 0, which may relay it).
    public func headerRoom(for peer: PeerID) -> Int {
        guard let i = slot(peer), let r = peers[i].route, r.relayFor == nil, !peers[i].spreadRelayed else {
            return DataMessage.headerSize + RelayMessage.headerSize
        }
        return DataMessage.headerSize
    }

    /// Seals an IP packet for `peer` in place (geometry as `NodeCore.sendPacket`).
    /// `flags`: DATA header flags (`DataMessage.checksumPartial`), only when
    /// `sendsHeaderFlags(to:)`; otherwise the packet is dropped as `.unknownType`.
    /// `source`: the payload lies there instead of at `payloadOffset` (not overlapping
    /// `buffer`): it is sealed from there into the buffer, which needs only the room.
    /// Not on `.core`: the caller then copies it into the buffer first.
    public mutating func send(to peer: PeerID, _ buffer: UnsafeMutableRawBufferPointer, payloadOffset: Int,
                              payloadLength: Int, flags: UInt8 = 0, source: UnsafeRawPointer? = nil,
                              now: Instant) -> ShardOutbound {
        guard let i = slot(peer), let base = buffer.baseAddress else { return .drop(.session(.unknownPeer)) }
        guard let route = peers[i].route, peers[i].keys.current != nil else { return .core }
        var source = source
        if let s = source, peers[i].pads {
            // WireGuard's padding is written behind the payload: it must lie in the buffer.
            guard payloadOffset >= 0, payloadLength >= 0, payloadLength <= buffer.count - payloadOffset else { return .drop(.badLength) }
            (base + payloadOffset).copyMemory(from: s, byteCount: payloadLength)
            source = nil
        }
        if peers[i].spread != nil {
            return sendSpread(i, peer, buffer, payloadOffset: payloadOffset, payloadLength: payloadLength, flags: flags,
                              source: source, now: now)
        }
        // Relayed: tagged under our session with the anchor; without its keys here, reactor 0 sends it.
        var hopKey: RelayTagKey?
        if route.relayFor != nil {
            guard let k = anchorAt(route.endpoint), let key = anchors[k].keys.send else { return .core }
            hopKey = key
        }
        let room = DataMessage.headerSize + (route.relayFor != nil ? RelayMessage.headerSize : 0)
        guard payloadOffset >= room, payloadLength >= 0, payloadLength <= buffer.count - DataMessage.tagSize - payloadOffset else {
            return .drop(.badLength)
        }
        let sealedLength = peers[i].pads
            ? WireGuardPadding.pad(base, payloadOffset: payloadOffset, payloadLength: payloadLength, capacity: buffer.count)
            : payloadLength
        let outcome = peers[i].keys.seal(base, payloadOffset: payloadOffset, payloadLength: sealedLength, flags: flags,
                                         source: source, now: now, timings: timings)
        if case .badFlags? = outcome { return .drop(.session(.unknownType)) }
        guard case .sealed(let rekeyDue)? = outcome else { return .core }  // expired: reactor 0 queues and rekeys
        let payloadLength = sealedLength
        if rekeyDue, let idx = peers[i].keys.current?.localIndex, peers[i].rekeyAskedFor != idx {
            peers[i].rekeyAskedFor = idx
            reports.push(.rekeyDue(peer))
        }
        let length = payloadLength + DataMessage.overhead
        peers[i].activity.txPackets += 1
        peers[i].activity.txBytes += UInt64(length)
        if payloadLength > 0 { peers[i].activity.txData = true }
        peers[i].activity.lastTx = now
        markDirty(peer)
        let offset = payloadOffset - DataMessage.headerSize
        guard let label = route.relayFor else { return .send(route.endpoint, offset: offset, length: length) }
        RelayMessage.writeHeader(label, into: buffer, at: offset - RelayMessage.headerSize)
        RelayTag.seal(base + offset - RelayMessage.headerSize, length: length + RelayMessage.headerSize, key: hopKey!)
        return .send(route.endpoint, offset: offset - RelayMessage.headerSize, length: length + RelayMessage.headerSize)
    }

    /// Handles one datagram of `length` bytes at the start of `buffer`, from `source`.
    public mutating func receive(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                                 now: Instant) -> ShardInbound {
        guard length > 0, length <= buffer.count, let base = buffer.baseAddress else { return drop(.badLength) }
        switch buffer[0] {
        case MessageType.data.rawValue:
            return receiveData(base, length: length, from: source, via: nil, relayedFor: nil, now: now)
        case MessageType.relay.rawValue:
            // A RELAY from an anchor carries a datagram for us; one from a member is to forward
            // (an anchor forwards it on this lane, whichever it is; NodeCore refuses it elsewhere).
            guard let label = RelayMessage.parseHeader(UnsafeRawBufferPointer(buffer), length: length) else { return .core }
            guard let k = anchorAt(source) else {
                guard isAnchor else { return .core }
                switch relay.forward(base, length: length, target: member(label), from: source, now: now) {
                case .forward(let to): return .forward(to, offset: 0, length: length)
                case .refuse(let r): return drop(r)
                }
            }
            guard buffer[RelayMessage.headerSize] == MessageType.data.rawValue else { return .core }
            // The anchor tagged it under its session with us: a forged anchor source stops here.
            guard anchors[k].keys.check(base, length: length) else { return drop(.relayBadTag) }
            let anchor = anchors[k].peer
            guard let sender = member(label) else { return drop(.relayUnknownTarget) }
            let h = RelayMessage.headerSize
            let r = receiveData(base + h, length: length - h, from: source, via: anchor, relayedFor: sender, now: now)
            switch r {
            case .packet(let p, let o, let l): return .packet(p, offset: o + h, length: l)
            case .control(let p, let o, let l, let v): return .control(p, offset: o + h, length: l, via: v)
            default: return r
            }
        default:
            return .core
        }
    }

    private mutating func receiveData(_ base: UnsafeMutableRawPointer, length: Int, from source: Endpoint, via: PeerID?,
                                      relayedFor sender: PeerID?, now: Instant) -> ShardInbound {
        guard length >= DataMessage.minimumSize else { return drop(.session(.badLength)) }
        guard let header = DataMessage.parseHeader(UnsafeRawBufferPointer(start: base, count: length), length: length) else {
            return drop(.session(.unknownType))
        }
        let owner = SessionOwnership.owner(ofIndex: header.receiverIndex, owners: owners)
        if owner != index { return .elsewhere(owner) }
        guard let peer = indices[header.receiverIndex], let i = slot(peer) else { return drop(.session(.unknownIndex)) }
        let idx = header.receiverIndex
        let underNext: Bool
        switch peers[i].keys.open(index: idx, counter: header.counter, base, length: length, now: now, timings: timings) {
        case .rejected(let reason): return drop(.session(reason))
        case .opened(let n): underNext = n
        }
        // Authenticated: a relayed datagram must be from the member the anchor named.
        if let sender, sender != peer { return drop(.relayMismatch) }
        if underNext {
            if let old = peers[i].keys.promote(), indices[old] == peer { indices.removeValue(forKey: old) }
            reports.push(.promoted(peer, localIndex: idx))
        }
        let payloadLength = length - DataMessage.overhead
        lastOpened.peer = peer
        lastOpened.counter = header.counter
        lastOpened.receiverIndex = idx
        lastOpened.source = source
        lastOpened.relayed = via != nil
        if peers[i].spread != nil { peers[i].spread!.heard(source: source, relayed: via != nil, now: now) }
        peers[i].activity.rxPackets += 1
        peers[i].activity.rxBytes += UInt64(length)
        if payloadLength > 0 { peers[i].activity.rxData = true }
        peers[i].activity.lastRx = now
        markDirty(peer)
        let payload = UnsafeRawBufferPointer(start: base + DataMessage.headerSize, count: payloadLength)
        let kind = ControlMessage.classify(payload, length: payloadLength)
        if kind == .keepalive || kind == .ipPacket {
            // Traffic: it may move the path (NodeCore's noteRx). A control message
            // says itself what it proves about its path (a ping off the active path
            // does not make it active): NodeCore reads it.
            peers[i].activity.source = source
            peers[i].activity.via = via
        }
        switch kind {
        case .keepalive: return .consumed
        case .ipPacket:
            // A WireGuard peer pads to 16 bytes: the IP header's length is the packet's.
            if peers[i].pads {
                return .packet(peer, offset: DataMessage.headerSize, length: WireGuardPadding.ipLength(payload, length: payloadLength))
            }
            return .packet(peer, offset: DataMessage.headerSize, length: payloadLength)
        case .control:
            // A WireGuard peer has no control messages (Roster capabilities).
            if peers[i].pads { return drop(.controlNotAllowed) }
            return .control(peer, offset: DataMessage.headerSize, length: payloadLength, via: via)
        case .unknown: return drop(.unknownPayload)
        }
    }

    // MARK: Outputs

    /// Queues the activity reports that are due: a peer's first, one from a
    /// new path, and otherwise at most one per `reportInterval` (`force`: all).
    /// Returns when the next one is due, if any waits.
    public mutating func flushActivity(now: Instant, force: Bool = false) -> Instant? {
        var k = 0
        var nextDue: Instant?
        while k < dirty.count {
            let p = dirty[k]
            let i = p.rawValue / owners
            let a = peers[i].activity
            let moved = a.source != nil && (a.source != peers[i].reportedSource || a.via != peers[i].reportedVia)
            let due = peers[i].lastReport.map { $0 + Self.reportInterval } ?? now
            if force || moved || due <= now {
                reports.push(.activity(p, a))
                if a.source != nil {
                    peers[i].reportedSource = a.source
                    peers[i].reportedVia = a.via
                }
                peers[i].activity = ShardActivity()
                peers[i].lastReport = now
                peers[i].dirty = false
                dirty.swapAt(k, dirty.count - 1)
                dirty.removeLast()
            } else {
                if nextDue.map({ due < $0 }) ?? true { nextDue = due }
                k += 1
            }
        }
        return nextDue
    }

    public mutating func pollReport() -> ShardReport? { reports.pop() }

    // MARK: Helpers

    mutating func markDirty(_ p: PeerID) {
        let i = p.rawValue / owners
        guard !peers[i].dirty else { return }
        peers[i].dirty = true
        dirty.append(p)
    }

    private mutating func drop(_ r: NodeDropReason) -> ShardInbound {
        drops[r, default: 0] &+= 1
        return .drop(r)
    }

    mutating func count(_ r: NodeDropReason) { drops[r, default: 0] &+= 1 }

    /// The member a RELAY label names (the roster's; the last answer remembered).
    @inline(__always)
    private mutating func member(_ label: MemberID) -> PeerID? {
        if let l = lastLabel, l == label { return lastLabelPeer }
        let p = roster.peer(relayLabel: label)
        lastLabel = label
        lastLabelPeer = p
        return p
    }

    /// The anchor at `ep`, as its position in `anchors`.
    /// An index loop over the (few) anchors: the `for … where` form over an array of
    /// tuples went through unspecialised generic code and allocated per step in a
    /// debug build (found by the preloaded allocation counter, scripts/test).
    func anchorAt(_ ep: Endpoint) -> Int? {
        var i = 0
        while i < anchors.count {
            if anchors[i].endpoint == ep { return i }
            i += 1
        }
        return nil
    }

    /// Whether `peer` has keys here (tests, status).
    public func hasKeys(_ peer: PeerID) -> Bool { slot(peer).map { peers[$0].keys.current != nil } ?? false }
}
