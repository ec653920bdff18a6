// One member's tunnel: its keypairs, its handshake, its timers, its queue:
// the cryptographic session only. Where its datagrams go is not its business:
// the path manager (PathManager / PathSet) holds the member's paths, its
// destination and the roaming rule; `Tunnels` tells the session whether a
// destination exists (`reachable`) and addresses what it sends when it is
// drained. Driven only by `Tunnels`, which owns the node-level parts (index
// table, cookie checker, outputs, the path manager) and passes the session's
// share in as `SessionContext`.
// The handshake is the member's suite (`suite`: Whalescale's Noise_IK, or
// WireGuard's Noise_IKpsk2 for a stock WireGuard peer, with its `psk`); the
// keypairs, transport and timers are the same for both (they are WireGuard's).
//
// Keypair rotation (WireGuard §6.2, wireguard-go `BeginSymmetricSession` and
// `ReceivedWithKeypair`), three slots:
//
//   initiator, response consumed:   previous <- current, current <- new
//       (it knows the responder has the keys: it switches at once and sends a
//        packet right away, queued data or a keepalive, to confirm them)
//   responder, initiation consumed: next <- new            (current unchanged)
//       (it cannot know the response arrived, so it keeps sending under
//        current until the first packet under `next` proves it did)
//   first packet under next:        previous <- current, current <- next
//   keypair older than REJECT_AFTER_TIME: dropped
//
// `previous` decrypts packets that were in flight under the old key when the
// switch happened: no packet is lost across a rekey. Three departures from
// wireguard-go, all to keep that promise when both sides rekey at once (rekey
// by count with symmetric traffic does exactly that):
//   - crossing initiations are settled by a tie-break (lower public key wins):
//     the winner ignores the loser's initiation, the loser abandons its own and
//     answers. Two completed crossing handshakes would leave each side sending
//     under a different new key and push the old key out of the three slots
//     while packets under it are still in flight;
//   - the responder keeps `previous` when a new `next` arrives (wireguard-go
//     drops it);
//   - the initiator keeps an unconfirmed `next` instead of moving it over
//     `current` (wireguard-go drops `current` then): `current` is what the
//     peer is sending under right now.

// Timer hooks (wireguard-go `timers.go`): the "authenticated packet received /
// sent" ones are in Session/SessionHooks.swift (shared with the shards' data
// path); the handshake ones are here:
//   initiation sent      -> arm handshakeRetry (backoff + jitter), cancel handshakeExpedite
//   a path opened        -> arm handshakeExpedite: now, but at least expediteMinInterval after
//                           the last initiation (the path manager's evidence, or a crossing
//                           initiation we win the tie-break against)
//   handshake complete   -> cancel retry, expedite and give-up

import Support
import Wire
import Crypto

/// The handshake side of a peer, one case per protocol state.
enum HandshakeState: Sendable {
    /// No handshake in progress.
    case idle
    /// A handshake is needed (packets queued, rekey due, no reply); the initiation
    /// goes out at the next `handleTimeout`, which has the wall clock for its
    /// timestamp. `since` starts the REKEY_ATTEMPT_TIME budget.
    case wanted(since: Instant)
    /// An initiation is out; `localIndex` is registered for its response and
    /// cookie reply. `attempt` is 1 for the first initiation of this handshake.
    case initiationSent(PendingInitiation, localIndex: UInt32, attempt: Int, since: Instant)

    var isIdle: Bool { if case .idle = self { true } else { false } }
}

/// Traffic and handshake counters of one peer (for `wsctl status`).
public struct PeerCounters: Sendable, Equatable {
    public var rxBytes: UInt64 = 0
    public var txBytes: UInt64 = 0
    public var rxPackets: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var keepalivesSent: UInt64 = 0
    public var initiationsSent: UInt64 = 0
    public var initiationsAccepted: UInt64 = 0
    public var handshakesCompleted: UInt64 = 0
    public var handshakesFailed: UInt64 = 0
    /// Packets dropped from the handshake queue (full, or the handshake gave up).
    public var queueDropped: UInt64 = 0
    public init() {}
}

/// One member's session state machine. Not driven directly: `Tunnels` calls it
/// and drains the shared outputs (see `Tunnels` for the drain order).
struct PeerSession: Sendable {
    /// Changes only when a session moves to a new roster (`Tunnels.adopt`).
    var id: PeerID
    let publicKey: PublicKey
    var persistentKeepalive: Span?
    /// Whalescale's handshake or WireGuard's; the transport and timers are the same.
    let suite: HandshakeSuiteID
    /// WireGuard's preshared key (nil: zeros); nil for Whalescale peers.
    let psk: PresharedKey?
    /// mac1/mac2 for messages we send to this peer; holds its cookie.
    var macs: MacGenerator
    var handshake: HandshakeState = .idle
    /// current / previous / next (KeypairSlots.swift).
    var keys = KeypairSlots()
    var timers = TimerTable()
    var needAnotherKeepalive = false
    /// The receive-side "last minute" rekey was asked for under `current`.
    var sentLastMinuteHandshake = false
    /// Greatest initiation timestamp accepted from this peer (replay defence).
    var greatestTimestamp: HandshakeTimestamp?
    var lastInitiationConsumed: Instant?
    var lastInitiationSent: Instant?
    var lastHandshake: Instant?
    /// Payloads waiting for keys, oldest first, at most `handshakeQueueLimit`.
    var queue: [[UInt8]] = []
    var counters = PeerCounters()

    init(id: PeerID, spec: PeerSpec) {
        self.id = id
        self.publicKey = spec.publicKey
        self.persistentKeepalive = spec.persistentKeepalive.flatMap { $0.ns > 0 ? $0 : nil }
        self.suite = spec.suite
        self.psk = spec.psk
        self.macs = Self.makeMacs(suite: spec.suite, peer: spec.publicKey)
        // A peer with persistent keepalive is one we must keep a session with
        // (an anchor, a peer behind NAT): start at once, as wireguard-go does.
        if persistentKeepalive != nil, spec.endpoint != nil { timers[.persistentKeepalive] = .zero }
    }

    // MARK: Data path

    /// Seals a payload for this peer in place (to go to `endpoint`, the
    /// destination the path manager gave Tunnels), or queues a copy and asks
    /// for a handshake when there are no usable keys.
    mutating func send(_ buffer: UnsafeMutableRawBufferPointer, base: UnsafeMutableRawPointer, payloadOffset: Int,
                       payloadLength: Int, to endpoint: Endpoint, now: Instant, ctx: inout SessionContext) -> Outbound {
        let sealedLength = padded(base, payloadOffset: payloadOffset, payloadLength: payloadLength, capacity: buffer.count)
        let outcome = keys.seal(base, payloadOffset: payloadOffset, payloadLength: sealedLength,
                                now: now, timings: ctx.timings)
        if case .sealed(let rekeyDue)? = outcome {
            let payloadLength = sealedLength
            afterSend(length: payloadLength + DataMessage.overhead, payloadLength: payloadLength, rekeyDue: rekeyDue, now: now, ctx: &ctx)
            return .send(endpoint, offset: payloadOffset - DataMessage.headerSize, length: payloadLength + DataMessage.overhead)
        }
        // No usable keys: hold the packet until a handshake completes.
        return hold(UnsafeRawBufferPointer(rebasing: buffer[payloadOffset..<(payloadOffset + payloadLength)]),
                    now: now, ctx: &ctx)
    }

    /// Copies a payload into the queue (bounded, oldest dropped first) and asks
    /// for a handshake; it leaves once keys exist. Without a destination the
    /// initiation waits until the path manager has one.
    mutating func hold(_ payload: UnsafeRawBufferPointer, now: Instant, ctx: inout SessionContext) -> Outbound {
        if queue.count >= ctx.timings.handshakeQueueLimit {
            queue.removeFirst()
            counters.queueDropped += 1
        }
        queue.append(Array(payload))
        wantHandshake(now: now, ctx: &ctx)
        return .queued
    }

    /// A DATA message whose header parsed and whose index names one of our keypairs.
    mutating func receiveData(_ base: UnsafeMutableRawPointer, length: Int, header: DataMessage.Header,
                              now: Instant, ctx: inout SessionContext) -> Inbound {
        let underNext: Bool
        switch keys.open(index: header.receiverIndex, counter: header.counter, base, length: length,
                         now: now, timings: ctx.timings) {
        case .rejected(let reason): return .drop(reason)
        case .opened(let n): underNext = n
        }
        // Authenticated and not replayed: only now may this packet change state.
        counters.rxPackets += 1
        counters.rxBytes += UInt64(length)
        if underNext { promoteNext(now: now, ctx: &ctx) }
        let payloadLength = length - DataMessage.overhead
        received(data: payloadLength > 0, now: now, ctx: &ctx)
        return .data(id, payloadOffset: DataMessage.headerSize, payloadLength: payloadLength)
    }

    // MARK: Handshake messages

    /// An initiation from this peer that authenticated (Tunnels checked macs,
    /// cookie and membership).
    mutating func consumeInitiation(_ received: AuthenticatedInitiation, length: Int, from source: Endpoint,
                                    now: Instant, ctx: inout SessionContext) -> Inbound {
        guard let timestamp = HandshakeTimestamp(bytes: received.timestamp) else { return .drop(.authFailed) }
        // "The responder keeps the greatest timestamp received per peer and
        // discards packets containing timestamps less than or equal to it."
        if let greatest = greatestTimestamp, timestamp <= greatest { return .drop(.staleTimestamp) }
        if let last = lastInitiationConsumed, now - last < ctx.timings.initiationMinInterval { return .drop(.handshakeFlood) }
        // Both sides initiated at once (rekey by count with symmetric traffic
        // does this). Two crossing handshakes would leave each side on a
        // different new key and retire the old one while packets under it are
        // still in flight; so one handshake wins, by the lower public key. The
        // winner ignores the loser's initiation (it is answered by our own);
        // the loser drops its own and answers. Only while our initiation is
        // fresh: an old one was probably lost, and then answering is better.
        // The same crossing seen late: our handshake already completed (we are
        // the initiator of fresh keys) and the peer's initiation, sent before
        // ours reached it, arrives now. The peer has our keys as `next`.
        if keys.current?.isInitiator == true, let created = keys.current?.createdAt, now - created < ctx.timings.rekeyTimeout {
            return .drop(.simultaneousInitiation)
        }
        var loseTieTo: UInt32?
        if case .initiationSent(_, let ownIndex, _, _) = handshake, let sent = lastInitiationSent,
           now - sent < ctx.timings.rekeyTimeout {
            if Self.winsTie(ctx.identity.publicKey, over: publicKey) {
                // The peer reaches us and had not seen our initiation when it
                // sent its own: ours may be lost (an anchor that refused to
                // relay it, a NAT not open yet), and the peer waits for it now.
                // Send it again soon, not at the retry; an answer cancels that.
                expedite(now: now, ctx: &ctx)
                return .drop(.simultaneousInitiation)
            }
            loseTieTo = ownIndex
        }

        // Every refusal is behind us: only now the response's DH work (a new
        // ephemeral, ee, se), and only after it succeeded does state change.
        let index = ctx.allocateIndex(for: id, pairBit: SessionOwnership.pairBit(own: ctx.identity.publicKey, peer: publicKey))
        guard let (response, transport) = createResponse(to: received, senderIndex: index, aesGCM: ctx.aesGCM,
                                                         headerFlags: ctx.headerFlags, now: now) else {
            ctx.freeIndex(index)
            return .drop(.authFailed)
        }
        if let ownIndex = loseTieTo {
            ctx.freeIndex(ownIndex)
            handshake = .idle
            timers[.handshakeRetry] = nil
            timers[.handshakeExpedite] = nil
            timers[.handshakeInitiation] = nil
            // handshakeGiveUp stays armed: if the peer never confirms, queued
            // packets are still dropped in time.
        }
        // Ours was only wanted, not sent: the peer's handshake serves the same need.
        if case .wanted = handshake {
            handshake = .idle
            timers[.handshakeInitiation] = nil
        }

        let fresh = Keypair(keys: transport, localIndex: index, remoteIndex: received.senderIndex, createdAt: now,
                            isInitiator: false, timings: ctx.timings, shared: ctx.newSendCounter)
        if let stale = keys.installResponded(fresh) { ctx.freeIndex(stale) }
        ctx.keysChanged(id)
        greatestTimestamp = timestamp
        lastInitiationConsumed = now
        counters.initiationsAccepted += 1
        counters.rxBytes += UInt64(length)
        timers[.newHandshake] = nil
        traversal(now: now)
        // The response goes back the way the initiation came, even when the
        // endpoint did not move (a relayed initiation: `source` is the anchor).
        ctx.transmits.push(SessionTransmit(to: source, bytes: response, peer: id))
        counters.txBytes += UInt64(response.count)
        timers[.keepalive] = nil  // any authenticated packet sent
        scheduleKeyExpiry(timings: ctx.timings)
        return .control
    }

    /// A response whose receiver index is registered to this peer.
    mutating func consumeResponse(_ message: [UInt8], receiverIndex: UInt32, now: Instant,
                                  ctx: inout SessionContext) -> Inbound {
        guard case .initiationSent(let state, let index, _, _) = handshake, index == receiverIndex else {
            return .drop(.unexpectedMessage)
        }
        guard let (responderIndex, transport) = state.consumeResponse(message) else { return .drop(.authFailed) }
        let hadSession = keys.current?.canSend(now: now, timings: ctx.timings) ?? false
        // The initiation's index becomes the keypair's: the peer will use it in DATA.
        let fresh = Keypair(keys: transport, localIndex: index, remoteIndex: responderIndex, createdAt: now,
                            isInitiator: true, timings: ctx.timings, shared: ctx.newSendCounter)
        if let old = keys.installInitiated(fresh) { ctx.freeIndex(old) }
        ctx.keysChanged(id)
        handshakeComplete(now: now)
        counters.rxBytes += UInt64(message.count)
        timers[.newHandshake] = nil
        traversal(now: now)
        scheduleKeyExpiry(timings: ctx.timings)
        ctx.events.push(hadSession ? .rekeyed(id) : .established(id))
        // Confirm the keys to the responder now: queued data, else a keepalive.
        if !flushQueue(now: now, ctx: &ctx) { sendKeepalive(now: now, ctx: &ctx) }
        return .control
    }

    // MARK: Timers

    /// Fires the timers due at `now` (the current time, not the deadline).
    /// `reachable`: the path manager has a destination for this member.
    mutating func handleTimeout(now: Instant, wallClock: HandshakeTimestamp, reachable: Bool, ctx: inout SessionContext) {
        let due = timers.takeDue(now: now)
        let t = ctx.timings
        if due.contains(.keyExpiry) { expireKeys(now: now, ctx: &ctx) }
        if due.contains(.handshakeGiveUp) { giveUp(ctx: &ctx) }
        if due.contains(.handshakeInitiation) || due.contains(.handshakeRetry), !handshake.isIdle {
            sendInitiation(now: now, wallClock: wallClock, reachable: reachable, ctx: &ctx)
        } else if due.contains(.handshakeExpedite), case .initiationSent = handshake {
            sendInitiation(now: now, wallClock: wallClock, reachable: reachable, sameAttempt: true, ctx: &ctx)
        }
        if due.contains(.newHandshake) {
            // We sent data and heard nothing back: the peer may have lost our
            // session (rebooted) or the path broke.
            wantHandshake(now: now, ctx: &ctx)
        }
        if due.contains(.keepalive) {
            sendKeepalive(now: now, ctx: &ctx)
            if needAnotherKeepalive {
                needAnotherKeepalive = false
                timers[.keepalive] = now + t.keepaliveTimeout
            }
        }
        if due.contains(.persistentKeepalive), reachable {
            if keys.current?.canSend(now: now, timings: t) == true {
                sendKeepalive(now: now, ctx: &ctx)
            } else {
                // No session to keep alive: make one (its initiation re-arms this timer).
                wantHandshake(now: now, ctx: &ctx)
            }
        }
    }

    /// Asks for a handshake unless one is already under way. Initiations are
    /// at least REKEY_TIMEOUT apart (whitepaper §6.2 "at most once per REKEY_TIMEOUT").
    mutating func wantHandshake(now: Instant, ctx: inout SessionContext) {
        guard handshake.isIdle else { return }
        // A fresh unconfirmed `next` means the peer just initiated: its first
        // packet under the new keys is a round trip away. A handshake of our
        // own now would only cross it.
        if let n = keys.next, now - n.createdAt < ctx.timings.rekeyTimeout { return }
        handshake = .wanted(since: now)
        var at = now
        if let last = lastInitiationSent, now - last < ctx.timings.rekeyTimeout { at = last + ctx.timings.rekeyTimeout }
        timers[.handshakeInitiation] = at
        timers[.handshakeGiveUp] = now + ctx.timings.rekeyAttemptTime
    }

    /// A path to the peer just opened while our initiation is unanswered: send
    /// a new one now instead of at the retry, but not sooner than
    /// `expediteMinInterval` after the last one (an answer to it may be on its
    /// way: a new initiation frees its index). No-op unless an initiation is
    /// out, or when the retry comes first anyway. True if one is scheduled.
    @discardableResult
    mutating func expedite(now: Instant, ctx: inout SessionContext) -> Bool {
        guard case .initiationSent = handshake, let sent = lastInitiationSent else { return false }
        let at = max(now, sent + ctx.timings.expediteMinInterval)
        if let retry = timers[.handshakeRetry], retry <= at { return false }
        if let pending = timers[.handshakeExpedite], pending <= at { return true }
        timers[.handshakeExpedite] = at
        return true
    }

    /// Sends a new initiation (new ephemeral, index and timestamp). `sameAttempt`:
    /// an expedited re-send, which keeps the attempt number and so the backoff.
    mutating func sendInitiation(now: Instant, wallClock: HandshakeTimestamp, reachable: Bool, sameAttempt: Bool = false,
                                 ctx: inout SessionContext) {
        let t = ctx.timings
        timers[.handshakeExpedite] = nil
        let attempt: Int
        let since: Instant
        switch handshake {
        case .idle:
            return
        case .wanted(let s):
            if let n = keys.next, now - n.createdAt < t.rekeyTimeout {
                // The peer initiated meanwhile; its confirmation is on the way.
                handshake = .idle
                return
            }
            attempt = 1
            since = s
        case .initiationSent(_, let oldIndex, let a, let s):
            // A new initiation (new ephemeral, new index) replaces the old one: a
            // late response to the old one finds no index and is dropped.
            ctx.freeIndex(oldIndex)
            attempt = sameAttempt ? a : a + 1
            since = s
        }
        let index = ctx.allocateIndex(for: id, pairBit: SessionOwnership.pairBit(own: ctx.identity.publicKey, peer: publicKey))
        let timestamp = ctx.nextTimestamp(wallClock)
        // Offer AES-GCM on the first attempts only: a peer from before negotiation answers the later ones.
        let early = attempt <= SessionConstants.cipherOfferAttempts
        let made = reachable
            ? createInitiation(identity: ctx.identity, senderIndex: index, timestamp: timestamp, offerAESGCM: ctx.aesGCM && early,
                               offerHeaderFlags: ctx.headerFlags && early, now: now)
            : nil
        guard let (message, state) = made else {
            // No endpoint yet (the path manager may find one), or the peer's key
            // cannot handshake: look again later; give-up still bounds it.
            ctx.freeIndex(index)
            handshake = .wanted(since: since)
            timers[.handshakeInitiation] = now + t.rekeyTimeout
            return
        }
        handshake = .initiationSent(state, localIndex: index, attempt: attempt, since: since)
        lastInitiationSent = now
        timers[.handshakeInitiation] = nil
        timers[.handshakeRetry] = now + handshakeRetryDelay(attempt: attempt, timings: t)
            + retryJitter(max: t.rekeyTimeoutJitterMax, using: &ctx.rng)
        ctx.transmits.push(SessionTransmit(to: nil, bytes: message, peer: id))
        counters.initiationsSent += 1
        counters.txBytes += UInt64(message.count)
        traversal(now: now)
        timers[.keepalive] = nil
    }

    /// REKEY_ATTEMPT_TIME passed without a completed handshake.
    mutating func giveUp(ctx: inout SessionContext) {
        switch handshake {
        case .idle: if queue.isEmpty { return }  // lost a tie and the winner never confirmed
        case .wanted: break
        case .initiationSent(_, let index, _, _): ctx.freeIndex(index)
        }
        handshake = .idle
        timers[.handshakeRetry] = nil
        timers[.handshakeExpedite] = nil
        timers[.handshakeInitiation] = nil
        timers[.keepalive] = nil
        // "We drop all packets without a keypair ... if we try unsuccessfully for too long."
        counters.queueDropped += UInt64(queue.count)
        queue.removeAll()
        counters.handshakesFailed += 1
        ctx.events.push(.handshakeFailed(id))
    }

    mutating func expireKeys(now: Instant, ctx: inout SessionContext) {
        let limit = ctx.timings.rejectAfterTime
        if let k = keys.previous, now - k.createdAt >= limit { ctx.freeIndex(k.localIndex); keys.previous = nil }
        if let k = keys.next, now - k.createdAt >= limit { ctx.freeIndex(k.localIndex); keys.next = nil }
        if let k = keys.current, now - k.createdAt >= limit {
            ctx.freeIndex(k.localIndex)
            keys.current = nil
            ctx.events.push(.expired(id))
        }
        ctx.keysChanged(id)
        scheduleKeyExpiry(timings: ctx.timings)
    }

    // MARK: Helpers

    /// Arms keyExpiry for the oldest keypair held.
    mutating func scheduleKeyExpiry(timings: SessionTimings) {
        timers[.keyExpiry] = keys.oldestCreatedAt.map { $0 + timings.rejectAfterTime }
    }

    /// The first packet under `next` arrived: the peer has these keys.
    mutating func promoteNext(now: Instant, ctx: inout SessionContext) {
        let hadSession = keys.current?.canSend(now: now, timings: ctx.timings) ?? false
        if let old = keys.promote() { ctx.freeIndex(old) }
        ctx.keysChanged(id)
        sentLastMinuteHandshake = false
        // Our own initiation, if one is out, is now redundant.
        switch handshake {
        case .idle: break
        case .wanted: handshake = .idle
        case .initiationSent(_, let index, _, _):
            ctx.freeIndex(index)
            handshake = .idle
        }
        handshakeComplete(now: now)
        scheduleKeyExpiry(timings: ctx.timings)
        ctx.events.push(hadSession ? .rekeyed(id) : .established(id))
        _ = flushQueue(now: now, ctx: &ctx)
    }

    mutating func handshakeComplete(now: Instant) {
        handshake = .idle
        timers[.handshakeRetry] = nil
        timers[.handshakeExpedite] = nil
        timers[.handshakeGiveUp] = nil
        timers[.handshakeInitiation] = nil
        sentLastMinuteHandshake = false
        lastHandshake = now
        counters.handshakesCompleted += 1
    }

    /// The deterministic tie-break for simultaneous initiations: the lower key wins.
    static func winsTie(_ ours: PublicKey, over theirs: PublicKey) -> Bool {
        ours.bytes.lexicographicallyPrecedes(theirs.bytes)
    }

    mutating func traversal(now: Instant) {
        if let p = persistentKeepalive { timers[.persistentKeepalive] = now + p }
    }

    /// Seals under `current` for a path the caller picked (Tunnels.seal).
    mutating func seal(_ base: UnsafeMutableRawPointer, payloadOffset: Int, payloadLength: Int,
                       now: Instant, ctx: inout SessionContext) -> Sealed? {
        guard case .sealed(let rekeyDue)? = keys.seal(base, payloadOffset: payloadOffset, payloadLength: payloadLength,
                                                       now: now, timings: ctx.timings) else { return nil }
        afterSend(length: payloadLength + DataMessage.overhead, payloadLength: payloadLength, rekeyDue: rekeyDue,
                  expectReply: false, now: now, ctx: &ctx)
        return Sealed(offset: payloadOffset - DataMessage.headerSize, length: payloadLength + DataMessage.overhead)
    }

    /// Timer hooks after a sealed packet left (data or keepalive). `expectReply`
    /// false (a path probe) skips the "sent data, heard nothing" timer.
    mutating func afterSend(length: Int, payloadLength: Int, rekeyDue: Bool, expectReply: Bool = true,
                            now: Instant, ctx: inout SessionContext) {
        counters.txPackets += 1
        counters.txBytes += UInt64(length)
        sent(data: expectReply && payloadLength > 0, now: now, ctx: &ctx)
        if rekeyDue { wantHandshake(now: now, ctx: &ctx) }
    }

    /// Seals an owned payload (queued data, keepalive) into a new datagram for
    /// `pollTransmit`, addressed to the member's destination when drained
    /// (Tunnels drops and counts it if there is none then). False when there
    /// are no usable keys.
    mutating func sendOwned(_ payload: [UInt8], now: Instant, ctx: inout SessionContext) -> Bool {
        let sealedLength = ownedSealedLength(payload.count)
        var packet = [UInt8](repeating: 0, count: sealedLength + DataMessage.overhead)
        let timings = ctx.timings
        let outcome: Keypair.SealOutcome? = packet.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress else { return nil }
            if !payload.isEmpty {
                payload.withUnsafeBytes { p in
                    UnsafeMutableRawBufferPointer(rebasing: b[DataMessage.headerSize..<(DataMessage.headerSize + p.count)])
                        .copyMemory(from: p)
                }
            }
            return keys.seal(base, payloadOffset: DataMessage.headerSize, payloadLength: sealedLength,
                             now: now, timings: timings)
        }
        guard case .sealed(let rekeyDue)? = outcome else { return false }
        ctx.transmits.push(SessionTransmit(to: nil, bytes: packet, peer: id))
        afterSend(length: packet.count, payloadLength: sealedLength, rekeyDue: rekeyDue, now: now, ctx: &ctx)
        return true
    }

    mutating func sendKeepalive(now: Instant, ctx: inout SessionContext) {
        if sendOwned([], now: now, ctx: &ctx) { counters.keepalivesSent += 1 }
    }

    /// Sends what waited for keys, in order. True if anything was sent.
    mutating func flushQueue(now: Instant, ctx: inout SessionContext) -> Bool {
        var sent = 0
        while sent < queue.count {
            guard sendOwned(queue[sent], now: now, ctx: &ctx) else { break }
            sent += 1
        }
        queue.removeFirst(sent)
        return sent > 0
    }

    func status(now: Instant, timings: SessionTimings) -> PeerStatus {
        let live = keys.current?.canSend(now: now, timings: timings) ?? false
        let state: PeerStatus.State
        switch (live, handshake) {
        case (true, .idle): state = .established
        case (true, _): state = .rekeying
        case (false, .idle): state = keys.next != nil ? .awaitingConfirmation : .idle
        case (false, _): state = .handshaking
        }
        var attempt = 0
        if case .initiationSent(_, _, let a, _) = handshake { attempt = a }
        return PeerStatus(
            publicKey: publicKey, state: state, endpoint: nil, lastHandshake: lastHandshake,
            handshakeAttempt: attempt, keyAge: keys.current.map { now - $0.createdAt }, cipher: keys.current?.keys.cipher,
            headerFlags: keys.current?.keys.headerFlags, sendCounter: keys.current?.nextCounter, queuedPackets: queue.count,
            persistentKeepalive: persistentKeepalive, counters: counters,
            nextTimer: timers.next.map { PeerStatus.Timer(deadline: $0.deadline, reason: $0.reason) })
    }
}

// MARK: Split sessions: what the owning reactor reports back

extension PeerSession {
    /// The owning reactor sealed and opened packets under this peer's keys
    /// (`SessionShard`): the timer hooks and counters the data path would
    /// have run here, once per report. Received and sent are applied in the
    /// order they last happened, so the keepalive timer ends as it would have.
    mutating func applyActivity(_ a: ShardActivity, now: Instant, ctx: inout SessionContext) {
        counters.rxPackets += a.rxPackets
        counters.rxBytes += a.rxBytes
        counters.txPackets += a.txPackets
        counters.txBytes += a.txBytes
        let rxFirst = (a.lastRx ?? .zero) <= (a.lastTx ?? .zero)
        if rxFirst {
            appliedReceive(a, now: now, ctx: &ctx)
            appliedSend(a, now: now, ctx: &ctx)
        } else {
            appliedSend(a, now: now, ctx: &ctx)
            appliedReceive(a, now: now, ctx: &ctx)
        }
    }

    private mutating func appliedReceive(_ a: ShardActivity, now: Instant, ctx: inout SessionContext) {
        guard a.rxPackets > 0 else { return }
        received(data: a.rxData, now: now, ctx: &ctx)
    }

    private mutating func appliedSend(_ a: ShardActivity, now: Instant, ctx: inout SessionContext) {
        guard a.txPackets > 0 else { return }
        sent(data: a.txData, now: now, ctx: &ctx)
    }

    /// The owning reactor saw the first packet under `next` (index `localIndex`)
    /// and switched to it: do the same here, once.
    mutating func shardPromoted(localIndex: UInt32, now: Instant, ctx: inout SessionContext) {
        guard keys.next?.localIndex == localIndex else { return }
        promoteNext(now: now, ctx: &ctx)
    }
}
