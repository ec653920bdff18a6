// The node's session layer: every member's tunnel, the 32-bit index table, the
// cookie checker. Sans-IO: the engine hands it datagrams, outbound payloads and
// the time, and drains what it wants sent.
//
//   engine (reactor thread)                     Tunnels
//   ───────────────────────                     ───────
//   UDP batch in ──────── receive(buf, from, now, underLoad) ──> .data(peer, off, len)  (decrypted in place)
//                                                               .control / .drop(reason)
//   TUN batch in ──────── send(to: peer, buf, off, len, now) ──> .send(endpoint, off, len) (sealed in place)
//                                                               .queued / .drop(reason)
//   timer fired ───────── handleTimeout(now, wallClock)
//   after each batch:     pollTransmit() until nil   -> handshakes, cookie replies, keepalives, flushed queue
//                         pollEvent() until nil      -> established, rekeyed, endpointChanged, ...
//                         pollTimeout()              -> re-arm the timer (a deadline ≤ now: call handleTimeout now)
//
// Dispatch of inbound datagrams (first byte = type):
//   4 DATA       header -> receiver index -> peer -> keypair -> replay check -> AEAD open -> replay accept
//   (handshakes: suite and message by (type, length), Crypto/HandshakeSuite.swift)
//   1 INIT       length (180: Whalescale's suite, 148: WireGuard's) -> mac1 (that suite's checker) -> load meter -> [under load: mac2 else cookie reply;
//                per-address bucket, or per-member bucket if relayed]
//                -> es, decrypt s (1 DH) -> member of that suite? -> ss (precomputed), payload
//                -> timestamp newer? 20 ms since the last? -> ephemeral, ee, se -> response
//   2 RESP       length -> suite of the peer its receiver index names -> mac1 -> load meter -> [under load: as above] -> receiver index -> our initiation? -> Noise
//   3 COOKIE     length -> receiver index -> that peer's MacGenerator -> expedite our retry
//   5, 6, 7      not ours (path probe, relay): NodeCore handles them; here .unknownType
//
// Where datagrams go: `paths` (PathManager, one PathSet per member) holds
// every member's paths and its destination; PeerSession holds none. Alone,
// Tunnels roams as WireGuard does (`receive(roam: true)`: an authenticated
// packet from a new address makes it the member's direct active path). Under
// NodeCore, which decides paths itself, `receive(..., roam: false)` only gives
// a member with no destination one (a first contact), `activate` is how
// NodeCore switches the active path, `seal` seals for a path of the caller's
// choosing, and every `Transmit` names its peer so the caller can send it
// through a relay.
//
// The data path (DATA in, payload out) allocates nothing: buffers are the
// caller's, keys and replay windows are inline, the index table is a lookup.
// Handshakes, cookie replies and queued packets allocate; they are rare.

import Support
import Wire
import Crypto

// The values of its interface (PeerID, PeerSpec, DropReason, Inbound, Outbound,
// Transmit, TunnelEvent, PeerStatus, ...) are in TunnelTypes.swift; its path and
// traffic methods in Tunnels+Paths.swift.

/// All of a node's sessions. A value type; the engine owns one per reactor
/// that handles sessions.
///
/// Driving it (the order matters): after every call to `receive`, `send`,
/// `handleTimeout` or `setEndpoint` (in practice, once per batch of them):
///  1. `pollTransmit()` until nil, and send each datagram;
///  2. `pollEvent()` until nil;
///  3. `pollTimeout()`, and arm the timer for its deadline; a deadline at or
///     before `now` means "call `handleTimeout` now" (a handshake was asked for
///     by a send or receive and waits for the wall clock).
/// Transmits are drained before events so that an `established` event never
/// overtakes the keepalive that confirms the session.
public struct Tunnels: Sendable {
    public let publicKey: PublicKey
    public let timings: SessionTimings
    /// Every member's session, indexed by PeerID (internal: Tunnels+Paths.swift works on them too).
    var peers: [PeerSession]
    /// Every member's paths and destination (PathManager.swift, PathSet.swift).
    /// NodeCore drives it directly; alone, Tunnels' roaming does.
    var paths: PathManager
    /// Every member's earliest session timer, one heap entry each, re-set
    /// after any call that changed it (`synced`): `pollTimeout` is its top and
    /// `handleTimeout` visits only the members that are due.
    private var wake: DenseDeadlineHeap
    /// Reused by `handleTimeout` (no allocation per call once grown).
    private var dueScratch: [Int] = []
    /// Members whose timers the last `handleTimeout` looked at (tests: it
    /// stays the number due, not the number of members).
    private(set) var lastTimeoutVisits = 0
    /// Session datagrams dropped at drain time because their member had no
    /// destination any more (counted as `no_endpoint` in `wsctl status`).
    public private(set) var unroutable: UInt64 = 0
    /// Payloads dropped from the handshake queues of all peers (a queue full
    /// while a handshake runs, or a handshake that gave up): status counter
    /// `queue_dropped`, so that no packet waiting for keys is lost silently.
    public var queueDropped: UInt64 { peers.reduce(0) { $0 &+ $1.counters.queueDropped } }
    /// Who the members are: key and X25519 static -> PeerID (shared with NodeCore).
    public let roster: Roster
    /// ss (our static with each member's), computed at that member's first
    /// initiation and kept: a replayed or flooded initiation then costs one DH.
    private var staticStatics: [StaticStatic?]
    private var ctx: SessionContext
    /// This node takes inner packets with partial checksums (its TUN has offloads): DATA
    /// header flags are offered in our INITs and accepted in peers' (Wire/DataMessage.swift).
    public var headerFlags: Bool {
        get { ctx.headerFlags }
        set { ctx.headerFlags = newValue }
    }
    private var cookies: CookieChecker
    /// The same for WireGuard peers' messages (BLAKE2s; Crypto/WireGuardHandshake.swift).
    private var wgCookies: CookieChecker
    /// Counts well-formed, mac1-valid handshake messages (direct and relayed):
    /// above UNDER_LOAD_HANDSHAKES_PER_SECOND, handshakes must carry mac2.
    private var loadMeter: HandshakeLoadMeter
    /// Under load, per source address (direct handshakes).
    private var limiter: HandshakeRateLimiter
    /// Under load, per relaying member (relayed handshakes: their source is the
    /// anchor, shared by everyone it relays for). Members are configured, so
    /// one bucket each, indexed by PeerID: bounded, no table to evict.
    private var relayedLimiter: [TokenBucket]

    /// - Parameters:
    ///   - seed: seeds session indices and retry jitter. By default 8 bytes from
    ///     libsodium's CSPRNG; tests pass a constant to be deterministic.
    ///   - owners: reactors the sessions are split across (SessionShard.swift).
    ///   - sharded: the data plane is SessionShards, one per reactor, also when
    ///     `owners` is 1 (the engine, the simulator): keys go to the owners, DATA
    ///     is handed to them. Implied by `owners` > 1. False: this value seals and
    ///     opens everything itself (unit tests, benchmarks).
    ///   - sendCounters: split only: each new keypair's send counter, shared by the
    ///     reactors that seal under it (the engine passes an atomic one).
    ///   - roster: the members, `peers[i]` being the session of the roster's
    ///     `PeerID(rawValue: i)`. Nil: one is built from `peers` (tests, benchmarks).
    ///     Our own key or a duplicate is never a handshake partner (the roster finds neither).
    ///   - pathTimings: the path manager's (path validity, RTT hysteresis); NodeCore passes its own.
    ///   A spec's `endpoint` becomes the member's first (direct, active) path.
    public init(identity: Identity, peers specs: [PeerSpec], roster: Roster? = nil, timings: SessionTimings = .default,
                pathTimings: ConnectivityTimings = .default,
                seed: UInt64 = Tunnels.randomSeed(), owners: Int = 1, sharded: Bool = false,
                sendCounters: @escaping SendCounterFactory = { LocalSendCounter() }, cipher: CipherSetting = .auto) {
        publicKey = identity.publicKey
        self.timings = timings
        let roster = roster ?? Roster(local: identity.publicKey, members: specs.enumerated().map {
            MemberSpec(publicKey: $0.element.publicKey, name: PeerID(rawValue: $0.offset).description,
                       kind: $0.element.suite == .wireGuard ? .wireGuard(psk: $0.element.psk) : .whalescale)
        })
        precondition(roster.count == specs.count, "Tunnels: one PeerSpec per roster member")
        self.roster = roster
        peers = specs.enumerated().map { PeerSession(id: PeerID(rawValue: $0.offset), spec: $0.element) }
        paths = PathManager(members: specs.count, timings: pathTimings)
        wake = DenseDeadlineHeap(capacity: specs.count)
        for (i, spec) in specs.enumerated() {
            guard let ep = spec.endpoint else { continue }
            let p = PeerID(rawValue: i)
            _ = paths.activate(p, paths.addPath(p, kind: .direct, remote: ep, via: nil).index)
        }
        staticStatics = Array(repeating: nil, count: specs.count)
        ctx = SessionContext(identity: identity, timings: timings, rng: SessionRandom(seed: seed), owners: owners,
                             sharded: sharded, sendCounters: sendCounters, cipher: cipher)
        cookies = CookieChecker(identity: identity)
        wgCookies = CookieChecker(wireGuardIdentity: identity)
        loadMeter = HandshakeLoadMeter()
        limiter = HandshakeRateLimiter(perSecond: timings.handshakesPerSecondPerSource,
                                       burst: timings.handshakeBurstPerSource)
        relayedLimiter = Array(repeating: TokenBucket(rate: UInt64(max(1, timings.handshakesPerSecondPerSource)),
                                                      burst: UInt64(max(1, timings.handshakeBurstPerSource))),
                               count: specs.count)
        for i in peers.indices { synced(PeerID(rawValue: i)) }
    }

    /// After a call into `peer`'s session: its heap entry follows its earliest
    /// timer. One compare when nothing changed (the data path's usual case).
    @inline(__always)
    mutating func synced(_ peer: PeerID) {
        let d = peers[peer.rawValue].timers.nextDeadline
        if d != wake[peer.rawValue] { wake.set(peer.rawValue, at: d) }
    }

    public var peerCount: Int { peers.count }

    /// The identity the sessions run under (a carried-over session needs the same one).
    var identity: Identity { ctx.identity }

    /// 8 random bytes from libsodium (not a clock, not I/O: fine in a sans-IO core).
    public static func randomSeed() -> UInt64 {
        Sodium.randomBytes(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    public func peerID(for key: PublicKey) -> PeerID? { roster.peer(for: key) }

    // MARK: Inbound

    /// Handles one datagram of `length` bytes at the start of `buffer`, from
    /// `source`. DATA is decrypted in place. `underLoad` (set by the engine, see
    /// `HandshakeLoadMeter`) makes handshakes prove their source with mac2.
    ///
    /// `roam`: whether an authenticated packet may move the peer's endpoint to
    /// `source` (WireGuard's roaming, the default). A path manager that owns
    /// endpoint decisions (seed 2.5), and any caller feeding the inner datagram
    /// of a RELAY (whose `source` is the anchor, not the peer), passes false:
    /// the endpoint is then only set when the peer has none yet, so that the
    /// answer to a first contact goes back the way it came.
    ///
    /// `relayed`: the datagram is the inner part of a RELAY from the anchor at
    /// `source`, which names the member that sent it. Under load a relayed
    /// handshake then proves (anchor endpoint, member) with mac2, its cookie
    /// reply goes back through the anchor to that member, and the per-member
    /// budget applies instead of the per-address one.
    ///
    /// `underLoad` forces the load state on (tests, a driver that knows
    /// better); `Tunnels` also meters handshakes itself (`HandshakeLoadMeter`).
    public mutating func receive(_ buffer: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint,
                                 now: Instant, underLoad: Bool = false, roam: Bool = true,
                                 relayed: RelayOrigin? = nil) -> Inbound {
        guard length > 0, length <= buffer.count, let base = buffer.baseAddress else { return .drop(.badLength) }
        let type = buffer[0]
        if type == MessageType.data.rawValue {
            guard length >= DataMessage.minimumSize else { return .drop(.badLength) }
            guard let header = DataMessage.parseHeader(UnsafeRawBufferPointer(buffer), length: length) else {
                return .drop(.unknownType)
            }
            guard let peer = ctx.indices[header.receiverIndex] else { return .drop(.unknownIndex) }
            let result = peers[peer.rawValue].receiveData(base, length: length, header: header, now: now, ctx: &ctx)
            synced(peer)
            if case .data = result { roamed(peer, to: source, mayMove: roam) }
            return result
        }
        // A handshake message: its suite and kind by (type, length), as boringtun's
        // parse_incoming_packet (Crypto/HandshakeSuite.swift). Only then is it copied.
        guard let (suite, kind) = HandshakeSuites.classify(type: type, length: length) else {
            return .drop(HandshakeSuites.isHandshakeType(type) ? .badLength : .unknownType)
        }
        let message = Array(UnsafeRawBufferPointer(rebasing: buffer[..<length]))
        switch kind {
        case .initiation, .response:
            return receiveHandshake(message, suite: suite, initiation: kind == .initiation, from: source, now: now,
                                    underLoad: underLoad, roam: roam, relayed: relayed)
        case .cookieReply:
            // The peer's MacGenerator knows its suite's cookie key.
            return receiveCookieReply(message, now: now)
        }
    }

    private mutating func receiveHandshake(_ message: [UInt8], suite classified: HandshakeSuiteID, initiation: Bool,
                                           from source: Endpoint, now: Instant, underLoad: Bool, roam: Bool,
                                           relayed: RelayOrigin?) -> Inbound {
        // Which suite: an INIT says by its length; a RESP (one layout in both)
        // belongs to the suite of the peer whose initiation its receiver index names.
        var suite = classified
        if !initiation, let peer = ctx.indices[wireLoad32(message, at: 8)] { suite = peers[peer.rawValue].suite }
        // Bytes 2 and 3 are reserved (zero). Byte 1 is Whalescale's cipher offer (INIT,
        // any value) or choice (RESP, 0 or 1), and reserved (zero) in WireGuard's suite.
        guard message[2] == 0, message[3] == 0 else { return .drop(.unknownType) }
        switch suite {
        case .wireGuard: guard message[1] == 0 else { return .drop(.unknownType) }
        case .whalescaleIK:
            guard initiation || message[1] <= HandshakeResponseMessage.maxCipherChoice else { return .drop(.unknownType) }
        }
        // mac1 first: one BLAKE2b/BLAKE2s, rejects anyone who does not know our key.
        guard suite == .wireGuard ? wgCookies.mac1Valid(message) : cookies.mac1Valid(message) else { return .drop(.mac1) }
        // Only now does it count as load: exact length, type word and mac1 all
        // passed, so junk starting with byte 1 or 2 cannot put us under load.
        // Relayed ones count too (they cost the same DH work).
        let loaded = loadMeter.record(now: now) || underLoad
        if loaded {
            let relayedFor = relayed?.memberID
            let mac2OK = suite == .wireGuard
                ? wgCookies.mac2Valid(message, source: source, relayedFor: relayedFor, now: now)
                : cookies.mac2Valid(message, source: source, relayedFor: relayedFor, now: now)
            guard mac2OK else {
                // Answer with a cookie for this source instead of doing DH work:
                // the sender proves it receives at `source` by using it in mac2.
                // A relayed sender's cookie is for (anchor, member) and goes back
                // wrapped through the anchor to that member (`peer` says so).
                let senderIndex = wireLoad32(message, at: 4)
                let reply = suite == .wireGuard
                    ? wgCookies.createCookieReply(to: message, receiverIndex: senderIndex, source: source,
                                                  relayedFor: relayedFor, now: now)
                    : cookies.createCookieReply(to: message, receiverIndex: senderIndex, source: source,
                                                relayedFor: relayedFor, now: now)
                if !reply.isEmpty { ctx.transmits.push(SessionTransmit(to: source, bytes: reply, peer: relayed?.sender)) }
                return .drop(.cookieRequired)
            }
            if let relayed {
                guard relayed.sender.rawValue >= 0, relayed.sender.rawValue < relayedLimiter.count,
                      relayedLimiter[relayed.sender.rawValue].take(1, now: now) else { return .drop(.rateLimited) }
            } else {
                guard limiter.allow(source, now: now) else { return .drop(.rateLimited) }
            }
        }
        if initiation {
            // es (one DH) and the static: a stranger stops here, before ss, the
            // ephemeral and the response (WireGuard's order). A member is found
            // by its static only in its own suite: a Whalescale member's static
            // in a WireGuard INIT (or the reverse) is no member.
            let received: AuthenticatedInitiation
            let peer: PeerID
            switch suite {
            case .whalescaleIK:
                guard let opened = WhalescaleIK.openInitiation(identity: ctx.identity, message: message) else {
                    return .drop(.authFailed)
                }
                guard let p = roster.peer(staticKey: WhalescaleIK.initiatorStatic(of: opened)),
                      peers[p.rawValue].suite == .whalescaleIK else { return .drop(.notMember) }
                guard let ss = staticStatic(of: p),
                      let r = WhalescaleIK.authenticate(opened, staticStatic: ss, initiator: peers[p.rawValue].publicKey) else {
                    return .drop(.authFailed)
                }
                (peer, received) = (p, .whalescale(r))
            case .wireGuard:
                guard let opened = WireGuardIK.openInitiation(identity: ctx.identity, message: message) else {
                    return .drop(.authFailed)
                }
                guard let p = roster.peer(staticKey: WireGuardIK.initiatorStatic(of: opened)),
                      peers[p.rawValue].suite == .wireGuard else { return .drop(.notMember) }
                guard let ss = staticStatic(of: p),
                      let r = WireGuardIK.authenticate(opened, staticStatic: ss, initiator: peers[p.rawValue].publicKey) else {
                    return .drop(.authFailed)
                }
                (peer, received) = (p, .wireGuard(r))
            }
            // Timestamp and flood checks, then the response's DHs (PeerSession).
            let result = peers[peer.rawValue].consumeInitiation(received, length: message.count, from: source,
                                                                now: now, ctx: &ctx)
            synced(peer)
            if result == .control { roamed(peer, to: source, mayMove: roam) }
            return result
        } else {
            let receiverIndex = wireLoad32(message, at: 8)
            guard let peer = ctx.indices[receiverIndex] else { return .drop(.unknownIndex) }
            let result = peers[peer.rawValue].consumeResponse(message, receiverIndex: receiverIndex, now: now, ctx: &ctx)
            synced(peer)
            if result == .control { roamed(peer, to: source, mayMove: roam) }
            return result
        }
    }

    /// Roaming, for a packet from `peer` that authenticated and was not a
    /// replay (the rule is the path manager's): with `mayMove` (WireGuard's
    /// roaming) `source` becomes the member's direct active path; without,
    /// only a member with no destination at all gets one, the address its
    /// first packet came from, so that the answer to a first contact goes
    /// back the way it came.
    @inline(__always)
    private mutating func roamed(_ peer: PeerID, to source: Endpoint, mayMove: Bool) {
        let moved = mayMove ? paths.roamDirect(peer, to: source) : paths.firstContact(peer, at: source)
        if moved { ctx.events.push(.endpointChanged(peer, source)) }
    }

    /// ss with `peer`, computed at its first initiation and kept (a member's key does not change).
    private mutating func staticStatic(of peer: PeerID) -> StaticStatic? {
        if let ss = staticStatics[peer.rawValue] { return ss }
        let key = peers[peer.rawValue].publicKey
        guard let x = peers[peer.rawValue].suite == .wireGuard ? key.bytes : key.x25519,
              let ss = Crypto.staticStatic(identity: ctx.identity, peerStatic: x) else { return nil }
        staticStatics[peer.rawValue] = ss
        return ss
    }

    private mutating func receiveCookieReply(_ message: [UInt8], now: Instant) -> Inbound {
        guard wireTypeWord(message) == UInt32(message[0]) else { return .drop(.unknownType) }
        let receiverIndex = wireLoad32(message, at: 4)
        guard let peer = ctx.indices[receiverIndex] else { return .drop(.unknownIndex) }
        // A cookie reply is not authenticated by the peer's static key (anyone who
        // saw our message and knows the peer's public key could make one), so it
        // never moves the endpoint; it only feeds mac2 of our next message.
        guard peers[peer.rawValue].macs.consumeCookieReply(message, now: now) else { return .drop(.authFailed) }
        // The peer is under load and drops our message until it carries mac2:
        // send the initiation again now (at least `expediteMinInterval` after
        // the last one), not at the retry 5 s later.
        peers[peer.rawValue].expedite(now: now, ctx: &ctx)
        synced(peer)
        return .control
    }

    // MARK: Outbound

    /// Seals the payload at `buffer[payloadOffset ..< payloadOffset + payloadLength]`
    /// for `peer`, in place: the DATA header goes into the 16 bytes before it (so
    /// `payloadOffset >= 16`) and the tag into the 16 bytes after it.
    public mutating func send(to peer: PeerID, _ buffer: UnsafeMutableRawBufferPointer, payloadOffset: Int,
                              payloadLength: Int, now: Instant) -> Outbound {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return .drop(.unknownPeer) }
        guard payloadOffset >= DataMessage.headerSize, payloadLength >= 0,
              payloadLength <= buffer.count - DataMessage.tagSize - payloadOffset,
              let base = buffer.baseAddress else { return .drop(.badLength) }
        guard let destination = paths.destination(peer) else { return .drop(.noEndpoint) }
        let result = peers[peer.rawValue].send(buffer, base: base, payloadOffset: payloadOffset, payloadLength: payloadLength,
                                               to: destination, now: now, ctx: &ctx)
        synced(peer)
        return result
    }

    /// Keeps the payload at `buffer[payloadOffset ..< payloadOffset + payloadLength]`
    /// for `peer`, which has no destination yet, and asks for a handshake: for a
    /// path manager that will find one soon (its anchors are still coming up).
    /// It leaves once a path was activated and keys exist;
    /// like any queued packet it is dropped if the handshake gives up.
    public mutating func hold(for peer: PeerID, _ buffer: UnsafeMutableRawBufferPointer, payloadOffset: Int,
                              payloadLength: Int, now: Instant) -> Outbound {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return .drop(.unknownPeer) }
        guard payloadOffset >= 0, payloadLength >= 0, payloadOffset + payloadLength <= buffer.count else { return .drop(.badLength) }
        let result = peers[peer.rawValue].hold(UnsafeRawBufferPointer(rebasing: buffer[payloadOffset..<(payloadOffset + payloadLength)]),
                                               now: now, ctx: &ctx)
        synced(peer)
        return result
    }

    /// Seals a payload for `peer` under its current keys, in place (same
    /// geometry as `send`), whatever its endpoint: for a path manager that sends
    /// the result somewhere else than the session's endpoint (a PATH_PING to a
    /// candidate address, a pong back the way the ping came). Never queues and
    /// never asks for a handshake; nil without live keys. Unlike `send`, it does
    /// not expect an answer: a probe on a path that does not work must not make
    /// the session re-handshake (no "sent data, heard nothing" timer).
    public mutating func seal(for peer: PeerID, _ buffer: UnsafeMutableRawBufferPointer, payloadOffset: Int,
                              payloadLength: Int, now: Instant) -> Sealed? {
        guard peer.rawValue >= 0, peer.rawValue < peers.count,
              payloadOffset >= DataMessage.headerSize, payloadLength >= 0,
              payloadLength <= buffer.count - DataMessage.tagSize - payloadOffset,
              let base = buffer.baseAddress else { return nil }
        let sealed = peers[peer.rawValue].seal(base, payloadOffset: payloadOffset, payloadLength: payloadLength, now: now, ctx: &ctx)
        synced(peer)
        return sealed
    }

    // MARK: Timers and outputs

    /// Fires every timer due at `now` (pass the current time, not the deadline).
    /// `wallClock` is the TAI64N timestamp for any initiation sent now.
    public mutating func handleTimeout(now: Instant, wallClock: HandshakeTimestamp) {
        // Only the members whose earliest timer is due, in PeerID order (the
        // order a scan of every member would take: rng draws and transmits
        // come out the same).
        dueScratch.removeAll(keepingCapacity: true)
        wake.due(now: now, into: &dueScratch)
        dueScratch.sort()
        lastTimeoutVisits = dueScratch.count
        for i in dueScratch {
            // A handler may arm another timer for `now` (no reply -> handshake
            // wanted -> initiation): run it in the same call, a bounded number of rounds.
            var rounds = 0
            while rounds < 4, let next = peers[i].timers.next, next.deadline <= now {
                peers[i].handleTimeout(now: now, wallClock: wallClock, reachable: paths.destination(PeerID(rawValue: i)) != nil,
                                       ctx: &ctx)
                rounds += 1
            }
            synced(PeerID(rawValue: i))
        }
    }

    /// The earliest deadline of any peer, and why (shown by `wsctl`): the top
    /// of the heap, no scan.
    public func pollTimeout() -> (deadline: Instant, reason: TimerReason)? {
        guard let top = wake.earliest, let n = peers[top.key].timers.next else { return nil }
        return n
    }

    /// The same, with the member it belongs to (the lowest PeerID among equal deadlines).
    public func pollTimeoutPeer() -> (deadline: Instant, peer: PeerID, reason: TimerReason)? {
        guard let top = wake.earliest, let n = peers[top.key].timers.next else { return nil }
        return (n.deadline, PeerID(rawValue: top.key), n.reason)
    }

    /// The earliest deadline and reason of one peer.
    public func pollTimeout(for peer: PeerID) -> (deadline: Instant, reason: TimerReason)? {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return nil }
        return peers[peer.rawValue].timers.next
    }

    public mutating func pollTransmit() -> Transmit? {
        while let t = ctx.transmits.pop() {
            if let to = t.to { return Transmit(to: to, bytes: t.bytes, peer: t.peer) }
            guard let p = t.peer, let to = paths.destination(p) else {
                unroutable &+= 1
                continue
            }
            return Transmit(to: to, bytes: t.bytes, peer: p)
        }
        return nil
    }

    public mutating func pollEvent() -> TunnelEvent? { ctx.events.pop() }

    // MARK: Commands and status

    /// Brings a session up without waiting for traffic (anchors at startup, a
    /// path manager that wants a peer warm). No-op if keys are live or a
    /// handshake is already under way; the initiation leaves at the next
    /// `handleTimeout` (pollTimeout says `now`).
    public mutating func connect(_ peer: PeerID, now: Instant) {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return }
        if peers[peer.rawValue].keys.current?.canSend(now: now, timings: timings) == true { return }
        peers[peer.rawValue].wantHandshake(now: now, ctx: &ctx)
        synced(peer)
    }

    /// Asks for a new handshake even though keys are live (a path manager that
    /// finds the peer no longer answers under them: it restarted and lost the
    /// session). Initiations stay at least REKEY_TIMEOUT apart; no-op while one
    /// is wanted or in flight.
    public mutating func rehandshake(_ peer: PeerID, now: Instant) {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return }
        peers[peer.rawValue].wantHandshake(now: now, ctx: &ctx)
        synced(peer)
    }

    /// A path to `peer` just opened (an anchor that could not relay to it
    /// before now introduces us) while our initiation is unanswered:
    /// send a new one now instead of at the retry (REKEY_TIMEOUT and backoff),
    /// but at least `expediteMinInterval` after the previous one. The same
    /// attempt number: the backoff does not advance. No-op without an
    /// initiation in flight; true if one is scheduled (pollTimeout says when).
    @discardableResult
    public mutating func expediteHandshake(_ peer: PeerID, now: Instant) -> Bool {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return false }
        let scheduled = peers[peer.rawValue].expedite(now: now, ctx: &ctx)
        synced(peer)
        return scheduled
    }

    // MARK: Split sessions (SessionShard.swift)

    /// Reactors the sessions are split across (1: one owns them all).
    public var owners: Int { ctx.owners }

    /// Whether SessionShards seal and open the data (see `init`'s `sharded`).
    public var sharded: Bool { ctx.split }

    /// A peer whose keypairs changed since the last call: install `keys(of:)` on its owner.
    mutating func pollKeyChange() -> PeerID? { ctx.keyChanges.pop() }

    /// Carries member `oldID`'s session over from `old` (a Tunnels for another
    /// roster of the same identity) to member `id` here: its keypairs, handshake
    /// in flight, timers, replay state, counters and receiver indices, so the
    /// new roster does not cost this member a handshake (the drop-in mode's
    /// runtime roster, Engine/WireGuardDropIn.swift). Call it right after init,
    /// before anything else ran here; the caller checks the member is the same
    /// (key, suite, psk). `keepPaths`: the member's paths too (false: the ones
    /// init made from a new configured endpoint stay). Its keys are queued for
    /// the owning lane.
    package mutating func adopt(_ id: PeerID, from old: Tunnels, _ oldID: PeerID, keepPaths: Bool,
                                persistentKeepalive: Span?) {
        guard id.rawValue >= 0, id.rawValue < peers.count, oldID.rawValue >= 0, oldID.rawValue < old.peers.count else { return }
        var s = old.peers[oldID.rawValue]
        guard s.publicKey == peers[id.rawValue].publicKey, s.suite == peers[id.rawValue].suite else { return }
        s.id = id
        let keepalive = persistentKeepalive.flatMap { $0.ns > 0 ? $0 : nil }
        if keepalive != s.persistentKeepalive {
            s.persistentKeepalive = keepalive
            s.timers[.persistentKeepalive] = keepalive == nil ? nil : .zero
        }
        peers[id.rawValue] = s
        for (index, p) in old.ctx.indices where p == oldID { ctx.indices[index] = id }
        if let last = old.ctx.lastTimestamp, ctx.lastTimestamp.map({ $0 < last }) ?? true { ctx.lastTimestamp = last }
        staticStatics[id.rawValue] = old.staticStatics[oldID.rawValue]
        if keepPaths { paths.adopt(id, old.paths[oldID]) }
        ctx.keysChanged(id)
        synced(id)
    }

    /// The relay-tag keys of our session with `peer` (RelayHop.swift): no copy of the slots.
    @inline(__always)
    func relayHop(of peer: PeerID) -> RelayHopKeys {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return RelayHopKeys() }
        return peers[peer.rawValue].keys.relayHop
    }

    /// The peer's keypairs as they are now, for its owning reactor.
    func keys(of peer: PeerID) -> KeypairSlots {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return KeypairSlots() }
        return peers[peer.rawValue].keys
    }

    /// What the owning reactor did under `peer`'s keys since its last report.
    mutating func applyActivity(_ a: ShardActivity, for peer: PeerID, now: Instant) {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return }
        peers[peer.rawValue].applyActivity(a, now: now, ctx: &ctx)
        synced(peer)
    }

    /// The owning reactor switched to the keypair it knew as `next`.
    mutating func shardPromoted(_ peer: PeerID, localIndex: UInt32, now: Instant) {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return }
        peers[peer.rawValue].shardPromoted(localIndex: localIndex, now: now, ctx: &ctx)
        synced(peer)
    }

    /// The owning reactor's sealing found the keys due for a rekey (by count or age).
    mutating func shardRekeyDue(_ peer: PeerID, now: Instant) {
        guard peer.rawValue >= 0, peer.rawValue < peers.count else { return }
        peers[peer.rawValue].wantHandshake(now: now, ctx: &ctx)
        synced(peer)
    }
}
