// The node's protocol core: the session layer (`Tunnels`) plus connectivity —
// anchors, address observation, NAT classification, candidates and
// rendezvous, hole punching, relay, recovery — as one sans-IO value. The
// engine swaps `Tunnels` for it: it feeds datagrams, TUN packets, timer
// wake-ups and the time, and drains what comes out.
//
// NodeCore is a router: this file keeps the dispatch (by message type below,
// by control kind in Sessions.swift `handleControl`), the roster of members
// and the drain order. The state is in small machines, each a struct in its
// own file under Connectivity/ that says what it owns, takes and gives back:
//
//   AnchorTracker  anchors' reachability, probes, observations, NAT class, warnings
//   PathManager    every member's path set (PathSet.swift), active path, destination, pings in
//                  flight; held by Tunnels (its sessions send to the destination), driven
//                  here as `tunnels.paths`
//   HolePunch      punch rounds, rendezvous requests, direct retries
//   RelayService   relay forwarding and budgets, held introductions (anchors)
//   Recovery       the way back when every path is lost
//   EndpointBook   where every member (and we) might be: config, cache, candidates, gossip
//   Gossip         members' self-signed endpoint records (Protocol/Gossip; NodeCore's side: GossipRouting.swift)
//
// A machine never reads another's state: NodeCore hands each the values it
// needs and routes its outputs (Anchors.swift, Paths.swift, Sessions.swift,
// Routing.swift). Every connectivity deadline is one entry of one
// `DeadlineHeap<NodeTimer>` (NodeTimers.swift); the session layer's are one
// entry per member in Tunnels' own heap.
//
//   engine (reactor thread)                          NodeCore
//   ───────────────────────                          ────────
//   UDP datagram ── receive(buf, len, from, now) ──> .packet(peer, off, len)     IP packet for the TUN (decrypted in place)
//                                                    .transmit(to, off, len)     send buf[off..<off+len] (relay forward, probe reply; in place)
//                                                    .consumed / .drop(reason)
//   TUN packet ──── sendPacket(to: peer, buf, ...) ─> .send(endpoint, off, len)   direct, or RELAY-wrapped and tagged in place (16 more bytes of headroom)
//                                                    .queued / .drop(reason)
//   timer fired ─── handleTimeout(now, wallClock)
//   after each batch:  pollTransmit() until nil  -> handshakes, keepalives, probes, pings, control messages (already wrapped)
//                      pollEvent() until nil     -> session, path, anchor, NAT, recovery, cache events
//                      pollTimeout()             -> re-arm the timer (a deadline ≤ now: call handleTimeout now)
//
//   datagram dispatch (first byte):
//     1..4  session message -> Tunnels (roam: false; NodeCore moves endpoints) -> payload class:
//           empty = keepalive, 0x4_/0x6_ = IP packet, 0x01..0x3F = control message (ControlMessage.swift)
//     5     PATH_PROBE        -> member? rate limit per source address -> reply in place (63 ≤ 64 bytes)
//     6     PATH_PROBE_REPLY  -> an outstanding txid to that key? -> observation (anchors), recovery
//     7     RELAY             from an anchor's endpoint: unwrap (no copy) and receive the inner datagram;
//                             on an anchor from a member: check and forward in place
//
// Ownership: NodeCore decides every endpoint (seed 2.5). Tunnels never roams
// here (only a first contact gives a member with no destination one); a path
// is a PathID (our socket, the remote endpoint or a relay via an anchor) the
// path manager validated with an authenticated PATH_PING/PONG or saw
// authenticated traffic on, and `Tunnels.activate` makes one the path data
// goes on (the session's destination is its remote). A relayed peer's
// destination is the anchor's endpoint: whatever Tunnels sends to an
// anchor's endpoint on behalf of another member is wrapped in RELAY.
//
// The data path (DATA in, IP packet out; IP packet in, DATA or RELAY out;
// relay forwarding) allocates nothing: buffers are the caller's, per-peer
// state is in arrays indexed by PeerID, lookups are small scans or hash
// lookups of existing keys. Handshakes, control messages, probes and new
// paths allocate; they are rare.

import Support
import Wire
import Crypto

/// A configured member, as NodeCore needs it (PeerID = its index).
public struct MemberSpec: Sendable {
    public var publicKey: PublicKey
    public var name: String
    /// Static endpoint from the config (anchors have one).
    public var endpoint: Endpoint?
    public var isAnchor: Bool
    /// The config's persistent keepalive for this member, if any (anchors
    /// get NodeCore's own anchor keepalive instead).
    public var persistentKeepalive: Span?
    /// A Whalescale node (`publicKey` Ed25519) or a stock WireGuard peer
    /// (`publicKey` its X25519 key; never an anchor).
    public var kind: MemberKind

    public init(publicKey: PublicKey, name: String, endpoint: Endpoint? = nil, isAnchor: Bool = false,
                persistentKeepalive: Span? = nil, kind: MemberKind = .whalescale) {
        self.publicKey = publicKey
        self.name = name
        self.endpoint = endpoint
        self.isAnchor = isAnchor && !kind.isWireGuard
        self.persistentKeepalive = persistentKeepalive
        self.kind = kind
    }
}

/// Result of `NodeCore.receive`.
public enum NodeInbound: Equatable, Sendable {
    /// An IP packet from `peer`, decrypted in place at `buffer[offset ..< offset + length]`:
    /// write it to the TUN (after the cryptokey check of its inner source).
    case packet(PeerID, offset: Int, length: Int)
    /// Send `buffer[offset ..< offset + length]` to the endpoint (a relayed
    /// datagram forwarded, a probe answered — both in place, in this batch).
    case transmit(Endpoint, offset: Int, length: Int)
    /// Handled (handshake, keepalive, control message, probe reply); drain the outputs.
    case consumed
    case drop(NodeDropReason)
    /// Sharded sessions: session data that reactor `k` owns (SessionShard.swift;
    /// with one reactor, k = 0). Hand the whole datagram, as received, to its shard.
    case handoff(reactor: Int)
}

/// Why NodeCore dropped a datagram. Counted (`NodeStatus.counters`), by `name`.
public enum NodeDropReason: Hashable, Sendable, CustomStringConvertible {
    /// The session layer's reason (authentication, replay, ...).
    case session(DropReason)
    case badLength
    case unknownType
    /// A decrypted payload that is neither IP, keepalive nor a known control message.
    case unknownPayload
    /// A control message that failed its length checks.
    case controlMalformed
    /// A control message this node does not take from that peer (a
    /// RENDEZVOUS_REQUEST to a non-anchor, a RENDEZVOUS from a non-anchor).
    case controlNotAllowed
    case rendezvousRateLimited
    /// A member sent CANDIDATES more often than its budget (1/s, burst 5).
    case candidatesRateLimited
    /// A PATH_PROBE from a key that is not a member: never answered.
    case probeNotMember
    /// This source address (IPv6: /64) used up its probe-reply budget, or the
    /// global one for sources that are not where a member is known to be.
    case probeRateLimited
    /// A PATH_PROBE_REPLY for no probe of ours (late, forged, wrong key).
    case probeUnexpectedReply
    /// A RELAY to a node that is not an anchor, not from one of our anchors.
    case relayNotAnchor
    /// The RELAY's source is not the current endpoint of an authenticated
    /// member session (a non-member, or a spoofed source): never an open relay.
    case relaySourceNotMember
    /// The named target is not a member (or is the sender, or us).
    case relayUnknownTarget
    /// The target has no live session or no direct endpoint at this anchor.
    case relayTargetUnreachable
    /// The sender used up its relay bytes/s budget.
    case relayRateLimited
    /// A relayed datagram that did not authenticate as the member the anchor named.
    case relayMismatch
    /// A RELAY whose hop tag does not authenticate under the sending hop's session (a forged source).
    case relayBadTag
    /// An ECHO_REPLY (`wsctl ping`) for no request of ours in flight (late: its request timed out).
    case echoUnexpected

    /// Snake-case counter name (`wsctl status` counters).
    public var name: String {
        switch self {
        case .session(let r): r.rawValue
        case .badLength: "bad_length"
        case .unknownType: "unknown_type"
        case .unknownPayload: "unknown_payload"
        case .controlMalformed: "control_malformed"
        case .controlNotAllowed: "control_not_allowed"
        case .rendezvousRateLimited: "rendezvous_rate_limited"
        case .candidatesRateLimited: "candidates_rate_limited"
        case .probeNotMember: "probe_not_member"
        case .probeRateLimited: "probe_rate_limited"
        case .probeUnexpectedReply: "probe_unexpected_reply"
        case .relayNotAnchor: "relay_not_anchor"
        case .relaySourceNotMember: "relay_source_not_member"
        case .relayUnknownTarget: "relay_unknown_target"
        case .relayTargetUnreachable: "relay_target_unreachable"
        case .relayRateLimited: "relay_rate_limited"
        case .relayMismatch: "relay_mismatch"
        case .relayBadTag: "relay_bad_tag"
        case .echoUnexpected: "echo_unexpected_reply"
        }
    }

    public var description: String { name }
}

/// What happened, for the engine's log and `wsctl`.
public enum NodeEvent: Equatable, Sendable {
    /// From the session layer: established, rekeyed, handshake failed, expired
    /// (never `endpointChanged`: NodeCore reports paths as `pathChanged`).
    case session(TunnelEvent)
    /// Data to this peer now goes this way (`via`: the relaying anchor).
    case pathChanged(PeerID, kind: PathKind, remote: Endpoint, via: PeerID?)
    case anchorReachable(PeerID)
    case anchorUnreachable(PeerID)
    /// Seed 2.1: only this anchor is reachable (or, on an anchor, no other one is).
    case onlyOneAnchorReachable(PeerID?)
    case noAnchorReachable
    /// An anchor sees us somewhere else than before (renumbered NAT, new
    /// mapping): candidates were re-announced and every session pinged.
    case observedEndpointChanged(anchor: PeerID, old: Endpoint, new: Endpoint)
    case natMappingChanged(NATMapping)
    /// Every path was lost: probing anchors, then cached endpoints, with backoff.
    case recoveryStarted
    case recovered
    /// Seed 3.5: every anchor and cached endpoint was tried through the whole
    /// backoff without an answer; a manual re-bootstrap is needed.
    case partitioned
    /// `endpointCacheBytes()` changed: write it to state_dir (atomically).
    case endpointCacheChanged
    /// `gossipSnapshot()` changed (a record taken, ours or a member's): write it to state_dir.
    case gossipRecordsChanged
    /// The answer to an operator's ping (`startEcho`): which path it came back on, and the RTT.
    case echoReply(EchoResult)
}

/// Why NodeCore wants to wake up (shown by `wsctl`).
public enum NodeTimerReason: Equatable, Sendable, CustomStringConvertible {
    case session(PeerID, TimerReason)
    case addressProbe
    case probeTimeout
    case anchorKeepalive(PeerID)
    case pingTimeout(PeerID)
    case pathCheck(PeerID)
    case punch(PeerID)
    case rendezvousTimeout(PeerID)
    case directRetry(PeerID)
    case recovery
    case warnings
    /// Gossip's own timer (a push round or anti-entropy).
    case gossip
    /// Our candidates changed within a second of our last record: the next one.
    case gossipPublish

    public var description: String {
        switch self {
        case .session(let p, let r): "\(p): \(r)"
        case .addressProbe: "address probe"
        case .probeTimeout: "probe timeout"
        case .anchorKeepalive(let p): "\(p): anchor keepalive"
        case .pingTimeout(let p): "\(p): path ping timeout"
        case .pathCheck(let p): "\(p): path check"
        case .punch(let p): "\(p): hole punching"
        case .rendezvousTimeout(let p): "\(p): rendezvous timeout"
        case .directRetry(let p): "\(p): direct path retry"
        case .recovery: "recovery attempt"
        case .warnings: "anchor warnings"
        case .gossip: "gossip"
        case .gossipPublish: "gossip: publish our record"
        }
    }
}

/// A member as NodeCore needs it.
struct RosterEntry: Sendable {
    let key: PublicKey
    let memberID: MemberID
    /// Configured as an anchor, with an endpoint.
    let isAnchor: Bool
    /// Our own entry in the member list (never a peer).
    let isSelf: Bool
}

/// The node: sessions and connectivity, sans-IO. A value type; the engine owns
/// one per reactor that handles sessions.
///
/// Driving it (the order matters), after every call to `receive`,
/// `sendPacket`, `handleTimeout` or a command (in practice once per batch):
///  1. for each `.transmit` / `.send` result of the batch: send it (it lies in
///     the caller's buffer);
///  2. `pollTransmit()` until nil, and send each datagram;
///  3. `pollEvent()` until nil;
///  4. `pollTimeout()`, and arm the timer; a deadline at or before `now` means
///     "call `handleTimeout` now".
/// Transmits before events, so that an event never overtakes the packet it reports.
/// Inside, the machines' events are drained into NodeCore's own right after
/// the input that caused them, so `pollEvent` gives them in the order they happened.
public struct NodeCore: Sendable {
    public let publicKey: PublicKey
    public let isAnchor: Bool
    public let timings: ConnectivityTimings
    /// The session layer (read it for per-session detail; NodeCore drives it).
    public internal(set) var tunnels: Tunnels

    // The roster (the roster work may replace these tables; lookups go through
    // the helpers below: isSelf, isAnchorMember, key(of:), memberID(of:), member(_:)).
    let members: [MemberSpec]
    let myID: MemberID
    /// Every member, by PeerID, as the connectivity machines need them (an anchor
    /// here is one with an endpoint). Lookups by key or label go to `roster`.
    let entries: [RosterEntry]
    /// Anchors (not us), in config order.
    var anchorPeers: [PeerID]
    /// Who the members are (Roster.swift); the same value Tunnels and the shards hold.
    public var roster: Roster { tunnels.roster }
    /// The current endpoint of every anchor, for "is this an anchor's address?"
    /// (a handful: scanned).
    var anchorEndpoints: [(endpoint: Endpoint, peer: PeerID)] = []

    // The machines: each owns its state; NodeCore routes between them.
    /// Anchors, probes, our observed address, the NAT, warnings (AnchorTracker.swift).
    var anchorTracker: AnchorTracker
    /// Punch rounds, rendezvous requests, direct retries (HolePunch.swift).
    var holePunch: HolePunch
    /// On an anchor: forwarding, budgets, held introductions (RelayService.swift).
    var relay: RelayService
    /// The way back when every path is lost (Recovery.swift).
    var recovery: Recovery
    /// Where every member might be, and where we might be (EndpointBook.swift).
    var book: EndpointBook
    /// Every member's self-signed endpoint record, spread inside the sessions
    /// (Gossip/Gossip.swift; routed in GossipRouting.swift). Its PeerIDs are ours
    /// (we are appended when the member list leaves us out).
    var gossip: Gossip
    /// When we last published our own record (at most one per `publishInterval`).
    var gossipPublishedAt: Instant?
    /// `gossip.counters.recordsAccepted` when we last said the snapshot changed.
    var gossipSavedAccepted: UInt64 = 0
    /// Direct attempts started because a relayed member published a new record
    /// (status counter `gossip_record_punches`).
    var recordPunches: UInt64 = 0

    // The router's own: outputs, timers, counters.
    var outbox = Outbox<Transmit>()
    var events = Outbox<NodeEvent>()
    /// Every connectivity timer (NodeTimers.swift).
    var timers = DeadlineHeap<NodeTimer>()
    /// The timers recovery pauses, while it runs.
    var parkedTimers: [NodeTimer: Instant] = [:]
    var drops: [NodeDropReason: UInt64] = [:]
    /// Operator pings in flight (`wsctl ping`, Echo.swift).
    var echoes = EchoTable()
    /// Per member (used for WireGuard peers only): authenticated packets from a
    /// new source, reported in status and taken only under PathManager's rules.
    var wireGuardRoams: [WireGuardRoamMonitor] = []
    /// By PeerID: a stock WireGuard peer (a flat array: read per packet).
    let wireGuardFlags: [Bool]
    var rng: SessionRandom
    var startedAt: Instant?
    /// The latest `now` any input brought (`start`): what `dataRoute(for:)`, which
    /// takes no clock, judges path usability at.
    var clock = Instant.zero

    /// - Parameters:
    ///   - members: every configured member, in config order (PeerID = index).
    ///   - isAnchor: this node is an anchor (answers rendezvous requests, relays).
    ///   - seed: seeds jitter, ping txids and session indices; by default from libsodium.
    ///   - txids: where probe txids come from: libsodium by default; tests may
    ///     pass `.seeded(_:)` to be deterministic.
    ///   - owners: reactors the sessions are split across (SessionShard.swift).
    ///   - sharded: SessionShards seal and open the data, one per reactor, also
    ///     when `owners` is 1 (the engine and the simulator always): implied by
    ///     `owners` > 1. False: this value does everything (unit tests, benchmarks).
    ///   - sendCounters: sharded only: the shared send counter of each new keypair (the engine's is atomic with several reactors).
    ///   - cipher: `[node] cipher`: `.auto` offers and accepts AES-256-GCM (when this CPU has AES-NI).
    public init(identity: Identity, members: [MemberSpec], isAnchor: Bool, timings: ConnectivityTimings = .default,
                sessionTimings: SessionTimings = .default, gossipTimings: GossipTimings = .default,
                seed: UInt64 = Tunnels.randomSeed(), owners: Int = 1, sharded: Bool = false,
                sendCounters: @escaping SendCounterFactory = { LocalSendCounter() },
                txids: SecretRandom = .sodium, cipher: CipherSetting = .auto) {
        publicKey = identity.publicKey
        self.isAnchor = isAnchor
        self.timings = timings
        self.members = members
        wireGuardFlags = members.map(\.kind.isWireGuard)
        recovery = Recovery(timings: timings)
        book = EndpointBook(members: members, timings: timings)
        relay = RelayService(members: members.count, timings: timings)
        holePunch = HolePunch(members: members.count, timings: timings)
        myID = MemberID(publicKey: identity.publicKey)
        // Anchors get NodeCore's answered keepalive (PATH_PING) instead of the
        // session's persistent keepalive, so that recovery, not the session
        // layer, decides how often a lost anchor is retried (seed 3.1).
        // A WireGuard peer speaks WireGuard's suite on its one path: its
        // configured endpoint is where the session starts (NodeCore's path).
        let specs = members.map { m -> PeerSpec in
            if case .wireGuard(let psk) = m.kind {
                return PeerSpec(publicKey: m.publicKey, endpoint: m.endpoint, persistentKeepalive: m.persistentKeepalive,
                                suite: .wireGuard, psk: psk)
            }
            return PeerSpec(publicKey: m.publicKey, endpoint: m.isAnchor ? m.endpoint : nil,
                            persistentKeepalive: m.isAnchor ? nil : m.persistentKeepalive)
        }
        tunnels = Tunnels(identity: identity, peers: specs, roster: Roster(local: identity.publicKey, members: members),
                          timings: sessionTimings, pathTimings: timings, seed: seed, owners: owners,
                          sharded: sharded, sendCounters: sendCounters, cipher: cipher)
        rng = SessionRandom(seed: seed ^ 0xC0_77EC_7)
        var entries: [RosterEntry] = []
        var anchors: [PeerID] = []
        for (i, m) in members.enumerated() {
            let id = PeerID(rawValue: i)
            let self_ = !m.kind.isWireGuard && m.publicKey == identity.publicKey
            entries.append(RosterEntry(key: m.publicKey, memberID: MemberID(publicKey: m.publicKey),
                                      isAnchor: m.isAnchor && m.endpoint != nil, isSelf: self_))
            if self_ { continue }
            if m.isAnchor, m.endpoint != nil { anchors.append(id) }
        }
        self.entries = entries
        var gossipKeys = members.map(\.publicKey)
        let me: Int
        if let i = gossipKeys.firstIndex(of: identity.publicKey) { me = i } else {
            gossipKeys.append(identity.publicKey)
            me = gossipKeys.count - 1
        }
        gossip = Gossip(roster: GossipRoster(keys: gossipKeys), me: me, identity: identity, timings: gossipTimings,
                        seed: seed ^ 0x6055_1B)
        // Nobody is reachable before its session is up: gossip never makes a handshake.
        for i in gossipKeys.indices where i != me { gossip.peerDown(PeerID(rawValue: i)) }
        anchorPeers = anchors
        anchorTracker = AnchorTracker(anchors: anchors, members: members.count, selfIsAnchor: isAnchor, timings: timings,
                                      txids: txids)
        for a in anchors {
            guard let ep = members[a.rawValue].endpoint else { continue }
            let (i, _) = tunnels.paths.addPath(a, kind: .direct, remote: ep, via: nil)
            _ = tunnels.paths.activate(a, i)
            anchorEndpoints.append((ep, a))
        }
        // WireGuard peers: one direct path, the configured endpoint (if any)
        // active from the start, as Tunnels' session endpoint already is.
        for (i, m) in members.enumerated() where m.kind.isWireGuard {
            guard let ep = m.endpoint else { continue }
            let (idx, _) = tunnels.paths.addPath(PeerID(rawValue: i), kind: .direct, remote: ep, via: nil)
            _ = tunnels.paths.activate(PeerID(rawValue: i), idx)
        }
        wireGuardRoams = Array(repeating: WireGuardRoamMonitor(), count: members.count)
    }

    public func peerID(for key: PublicKey) -> PeerID? { tunnels.peerID(for: key) }

    // MARK: The roster (small helpers: the roster work may replace the table)

    /// Our own entry in the member list (never a peer).
    @inline(__always) func isSelf(_ p: PeerID) -> Bool { entries[p.rawValue].isSelf }
    /// A configured anchor with an endpoint (us included, when we are one).
    @inline(__always) func isAnchorMember(_ p: PeerID) -> Bool { entries[p.rawValue].isAnchor }
    @inline(__always) func key(of p: PeerID) -> PublicKey { entries[p.rawValue].key }
    @inline(__always) func memberID(of p: PeerID) -> MemberID { entries[p.rawValue].memberID }
    /// A stock WireGuard peer: no control messages, relay or punching (Roster capabilities).
    @inline(__always) func isWireGuardPeer(_ p: PeerID) -> Bool {
        p.rawValue >= 0 && p.rawValue < wireGuardFlags.count && wireGuardFlags[p.rawValue]
    }
    /// A member that is not us.
    @inline(__always) func isPeer(_ p: PeerID) -> Bool { p.rawValue >= 0 && p.rawValue < entries.count && !entries[p.rawValue].isSelf }

    /// The member with this relay label (the first configured, if two collide; never us).
    @inline(__always)
    func member(_ id: MemberID) -> PeerID? { roster.peer(relayLabel: id) }
    public var peerCount: Int { members.count }

    // MARK: Inbound

    /// Handles one datagram of `length` bytes at the start of `buffer`, from
    /// `source`. `underLoad` forces the load state on, as for `Tunnels.receive`
    /// (which meters handshakes itself, direct and relayed).
    public mutating func receive(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                                 now: Instant, underLoad: Bool = false) -> NodeInbound {
        start(now)
        guard length > 0, length <= buffer.count else { return drop(.badLength) }
        switch buffer[0] {
        case 1...4:
            return receiveSession(buffer, length: length, from: source, relayedBy: nil, now: now, underLoad: underLoad)
        case MessageType.pathProbe.rawValue:
            return receiveProbe(buffer, length: length, from: source, now: now)
        case MessageType.pathProbeReply.rawValue:
            return receiveProbeReply(buffer, length: length, from: source, now: now)
        case MessageType.relay.rawValue:
            return receiveRelay(buffer, length: length, from: source, now: now, underLoad: underLoad)
        default:
            return drop(.unknownType)
        }
    }

    // MARK: Outbound

    /// Seals an IP packet at `buffer[payloadOffset ..< payloadOffset + payloadLength]`
    /// for `peer`, in place: DATA header in the 16 bytes before it, and for a
    /// relayed peer the RELAY header in the 12 before that (so `payloadOffset`
    /// ≥ 28; the engine's 64 bytes of headroom cover it), tag in the 16 after.
    public mutating func sendPacket(to peer: PeerID, _ buffer: UnsafeMutableRawBufferPointer, payloadOffset: Int,
                                    payloadLength: Int, now: Instant) -> Outbound {
        start(now)
        guard peer.rawValue >= 0, peer.rawValue < entries.count, !isSelf(peer) else { return .drop(.unknownPeer) }
        if tunnels.paths[peer].active == nil {
            ensurePath(peer, now: now)
            if tunnels.paths[peer].active == nil, awaitsAnchor(peer) {
                // No anchor reachable yet (at start their handshakes are a round
                // trip away): the packet waits for the path the first one gives.
                let result = tunnels.hold(for: peer, buffer, payloadOffset: payloadOffset, payloadLength: payloadLength, now: now)
                absorbTunnels(now: now)
                return result
            }
        }
        let relayed = tunnels.paths[peer].activeKind == .relay
        if relayed, payloadOffset < DataMessage.headerSize + RelayMessage.headerSize { return .drop(.badLength) }
        let result = tunnels.send(to: peer, buffer, payloadOffset: payloadOffset, payloadLength: payloadLength, now: now)
        tunnels.paths.noteDataTx(peer, at: now)
        guard case .send(let to, let offset, let length) = result else {
            absorbTunnels(now: now)
            return result
        }
        noteDataSent(peer, now: now)
        guard relayingAnchor(to: to, for: peer) != nil else { return result }
        writeRelayHeader(for: peer, to: to, buffer, at: offset - RelayMessage.headerSize, length: length + RelayMessage.headerSize)
        return .send(to, offset: offset - RelayMessage.headerSize, length: length + RelayMessage.headerSize)
    }

    // MARK: Timers and outputs

    /// Fires everything due at `now` (pass the current time, not the deadline).
    /// `wallClock` is the TAI64N timestamp for any handshake initiation sent now.
    public mutating func handleTimeout(now: Instant, wallClock: HandshakeTimestamp) {
        start(now)
        tunnels.handleTimeout(now: now, wallClock: wallClock)
        absorbTunnels(now: now)
        handleOwnTimers(now: now)
        // Our timers may have asked for handshakes (connect): they need the wall clock now.
        tunnels.handleTimeout(now: now, wallClock: wallClock)
        absorbTunnels(now: now)
    }

    public mutating func pollTransmit() -> Transmit? { outbox.pop() }

    public mutating func pollEvent() -> NodeEvent? { events.pop() }

    /// The earliest deadline and why (sessions and connectivity).
    /// Our own timers are one deadline heap, the session layer's another
    /// (one entry per member, in Tunnels): two reads, no scan.
    public func pollTimeout() -> (deadline: Instant, reason: NodeTimerReason)? {
        let own = ownTimeout
        guard let session = tunnels.pollTimeoutPeer(), own.map({ session.deadline < $0.deadline }) ?? true else { return own }
        return (session.deadline, .session(session.peer, session.reason))
    }

    // MARK: Commands

    /// The host's interface addresses with our listening port (the engine
    /// calls this at start and when interfaces change). Local candidates.
    /// The prefixes this node routes into its own tunnel: its overlay prefixes
    /// and every member's addresses (the engine sets them at start, from the
    /// config). An address in them is never taken as a member's endpoint: not
    /// punched, probed or cached, and a packet heard from one (it came through
    /// the tunnel) makes no path. Without this, an edge router whose LAN is in
    /// a member's `address` would punch that member's LAN address, through the
    /// tunnel, and loop.
    public var tunnelledPrefixes: [CIDR] {
        get { book.tunnelled }
        set { book.tunnelled = newValue }
    }

    /// This node's TUN takes inner packets with partial checksums: sessions from now on
    /// negotiate DATA header flags (`Tunnels.headerFlags`). Set once, before the first handshake.
    public var headerFlags: Bool {
        get { tunnels.headerFlags }
        set { tunnels.headerFlags = newValue }
    }

    public mutating func setLocalEndpoints(_ endpoints: [Endpoint], now: Instant) {
        start(now)
        book.setLocals(endpoints)
        candidatesMayHaveChanged(now: now)
    }

    /// A port mapping (UPnP-IGD, NAT-PMP, PCP) made our endpoint reachable:
    /// advertised as a self-attested candidate.
    public mutating func addMappedEndpoint(_ endpoint: Endpoint, source: EndpointSource, now: Instant) {
        start(now)
        let c = Candidate(endpoint, source)
        guard book.addMapped(c) else { return }
        candidatesMayHaveChanged(now: now)
    }

    public mutating func removeMappedEndpoint(_ endpoint: Endpoint, now: Instant) {
        book.removeMapped(endpoint)
        candidatesMayHaveChanged(now: now)
    }

    /// Reads the endpoint cache the engine found in state_dir. False (and
    /// nothing loaded) if the bytes are not a cache; unknown members are skipped.
    @discardableResult
    public mutating func loadEndpointCache(_ bytes: [UInt8]) -> Bool {
        let keys = Set(members.map(\.publicKey))
        return book.loadCache(bytes) { keys.contains($0) }
    }

    /// The cache to persist (see `NodeEvent.endpointCacheChanged`).
    public func endpointCacheBytes() -> [UInt8] { book.cache.bytes }

    /// Brings a session with `peer` up without waiting for traffic.
    public mutating func connect(_ peer: PeerID, now: Instant) {
        start(now)
        guard peer.rawValue >= 0, peer.rawValue < entries.count, !isSelf(peer) else { return }
        if tunnels.paths[peer].active == nil { ensurePath(peer, now: now) }
        tunnels.connect(peer, now: now)
    }

    // MARK: Helpers used everywhere

    mutating func start(_ now: Instant) {
        if now > clock { clock = now }
        guard startedAt == nil else { return }
        startedAt = now
        arm(.addressProbe, at: now)
        arm(.warnings, at: now + timings.warningGrace)
        gossip.start(now: now)
        syncGossipTimer()
        for a in anchorPeers {
            if anchorTracker.tracks(a) { arm(.anchorKeepalive(a), at: now) }
            tunnels.connect(a, now: now)
        }
    }

    mutating func drop(_ reason: NodeDropReason) -> NodeInbound {
        drops[reason, default: 0] &+= 1
        return .drop(reason)
    }

    mutating func count(_ reason: NodeDropReason) {
        drops[reason, default: 0] &+= 1
    }

    /// The anchor a datagram to `to` for `peer` goes through, if `to` is an
    /// anchor's endpoint and `peer` is not that anchor.
    @inline(__always)
    func relayingAnchor(to: Endpoint, for peer: PeerID) -> PeerID? {
        guard let a = anchorAt(to) else { return nil }
        return a == peer ? nil : a
    }

    @inline(__always)
    func anchorAt(_ endpoint: Endpoint) -> PeerID? {
        var k = 0
        while k < anchorEndpoints.count {
            if anchorEndpoints[k].endpoint == endpoint { return anchorEndpoints[k].peer }
            k += 1
        }
        return nil
    }

    /// Moves the session layer's transmits (wrapping relayed ones) and events into ours.
    mutating func absorbTunnels(now: Instant) {
        while let t = tunnels.pollTransmit() {
            if let p = t.peer, relayingAnchor(to: t.to, for: p) != nil {
                outbox.push(Transmit(to: t.to, bytes: relayWrapped(t.bytes, for: p, to: t.to), peer: p))
            } else {
                outbox.push(t)
            }
        }
        while let e = tunnels.pollEvent() { handleSessionEvent(e, now: now) }
    }
}

