// The sender's side of multipath in the session's owner (docs/multipath.md, "Wired").
//
//   route.spread.count >= 2 ─▶ ShardPeer.spread = ShardSpread (a MultipathScheduler)
//   send: seal as usual (the counter is taken there) ─▶ scheduler.pick(counter, length, now)
//         ─▶ the picked path's endpoint (RELAY-wrapped and tagged for a relay path)
//   receive on a path ─▶ heard: it answers
//
// Path reports: srtt, rttvar and minRTT are the path's PATH_PING/PONG RTTs
// (PathState, pushed in the route); usable is "in the route" (NodeCore's view:
// validated or carrying traffic, not declared dead) and not failed here. Failed
// here: data went out on the path and nothing came back over it for
// max(3 × (srtt + 4 × rttvar), 100 ms, 4 × the usual gap between packets heard
// over it) while the peer's packets kept arriving over another path of the
// route; anything heard over it makes it usable again. The usual gap (a smoothed
// mean, 3 s until two packets came over the path since it joined) is what makes
// silence mean something: the peer sends its own traffic over the paths its
// scheduler picks, so a path it does not use for replies (a LAN path it prefers,
// one its latency rule leaves out) only hears PATH_PONGs, every few seconds;
// without it such a working path was declared failed 100 ms after each pong
// (perf/multipath C as the first scenario: the flow stayed on the 200 ms LAN path
// for 6 s, the 20 ms direct path failed here over and over).
// There is no per-path delivery feedback on the wire yet (planned): the
// scheduler's "delivered" rate is the rate sent on the path over the last
// second (also status's `bandwidth_bps`), and its reordering-depth and latency
// rules (from the RTT spread) skip a path the receiver could not absorb. Make-before-break copies are off here (a copy
// would need a second datagram per packet): `timings.overlap` is zero.
//
// With one path, `spread` is nil and `send` pays one nil check for all this.
import Support
import Wire
import Crypto

struct ShardSpread: Sendable {
    /// Indexed by the path's slot in the member's PathSet (`SpreadPath.slot`, < 16).
    static let slots = 16
    /// The usual gap assumed for a path heard fewer than twice since it joined the route.
    static let unknownGap = Span.seconds(3 as UInt64)
    /// The route as pushed (its spread: two or more paths).
    var route: DataRoute
    var scheduler: MultipathScheduler
    /// Per slot: last heard over it, data sent since then (first such send), failed here.
    var lastRx: [Instant]
    /// Per slot: the usual gap between packets heard over it (smoothed, 1/8), and how many
    /// came since it joined the route (up to 2: the gap is known from the second on).
    var rxGap: [Span]
    var rxCount: [UInt8]
    var sentSince: [Instant?]
    var failed: [Bool]
    /// Per slot: the path's RTT sample count (NodeCore's PATH_PONGs) when it failed here: a
    /// newer sample in a later push means a pong came back over it, so it works again.
    var failedSamples: [UInt32]
    /// Slots the scheduler knows (bit per slot), and whether the route changed since.
    var known: UInt16 = 0
    var stale = true
    var nextCheck = Instant.zero
    /// Packets sent per slot (status: a path's share).
    var packets: [UInt64]
    /// Bytes sent per slot over the last second, and that rate as of the last sync
    /// (the scheduler's delivered rate until per-path feedback exists; status).
    var sent: [BandwidthEstimator]
    var sentRate: [UInt64]
    var nextReport = Instant.zero

    init(route: DataRoute) {
        self.route = route
        var t = MultipathTimings.default
        t.overlap = .zero
        scheduler = MultipathScheduler(paths: Self.slots, timings: t)
        lastRx = Array(repeating: .zero, count: Self.slots)
        rxGap = Array(repeating: .zero, count: Self.slots)
        rxCount = Array(repeating: 0, count: Self.slots)
        sentSince = Array(repeating: nil, count: Self.slots)
        failed = Array(repeating: false, count: Self.slots)
        failedSamples = Array(repeating: 0, count: Self.slots)
        packets = Array(repeating: 0, count: Self.slots)
        // One estimator made per slot: `Array(repeating:)` would share one bucket
        // buffer among them, and a slot's first count would copy it on the data path.
        sent = (0..<Self.slots).map { _ in BandwidthEstimator() }
        sentRate = Array(repeating: 0, count: Self.slots)
    }

    mutating func routeChanged() { stale = true }

    /// Something authenticated came over the route's path from `source`.
    mutating func heard(source: Endpoint, relayed: Bool, now: Instant) {
        guard let k = route.spread.position(of: source, relayed: relayed) else { return }
        let s = Int(route.spread[k].slot)
        if rxCount[s] > 0 {
            let gap = now - lastRx[s]
            rxGap[s] = rxCount[s] < 2 ? gap : Span(ns: rxGap[s].ns / 8 * 7 + gap.ns / 8)
        }
        if rxCount[s] < 2 { rxCount[s] += 1 }
        lastRx[s] = now
        sentSince[s] = nil
        if failed[s] {
            failed[s] = false
            stale = true
        }
    }

    /// Brings the scheduler up to the route (after a push, or a failure here).
    /// `unkeyed`: relay paths (bit per slot) whose anchor has no relay-tag key here yet.
    mutating func sync(unkeyed: UInt16, now: Instant) {
        stale = false
        var present: UInt16 = 0
        var k = 0
        while k < route.spread.count {
            let p = route.spread[k]
            let s = Int(p.slot)
            present |= 1 << UInt16(s)
            if known & (1 << UInt16(s)) == 0 {
                // New in the route: it has not been heard or sent on here yet.
                lastRx[s] = now
                rxGap[s] = .zero
                rxCount[s] = 0
                sentSince[s] = nil
                failed[s] = false
            }
            // Failed here, but a PATH_PONG came back over it since (its sample count moved):
            // it answers again. Traffic over it clears it too (`heard`), but the peer's replies
            // may come over another path, and then a path that failed here during an outage
            // stayed out (perf/multipath C after its path-1-alone run: the flow started on the
            // 200 ms path, 544 packets released by depth in its first half second).
            if failed[s] && p.samples != failedSamples[s] {
                failed[s] = false
            }
            sentRate[s] = sent[s].bitsPerSecond(now: now) ?? 0
            scheduler.update(path: s, report: .init(usable: !failed[s] && unkeyed & (1 << UInt16(s)) == 0, srtt: p.srtt,
                                                    rttvar: p.rttvar, minRTT: p.minRTT,
                                                    deliveredBitsPerSecond: failed[s] ? nil : sentRate[s],
                                                    lastRTT: p.lastRTT, sample: p.samples),
                             now: now)
            k += 1
        }
        var s = 0
        while s < Self.slots {
            if known & (1 << UInt16(s)) != 0 && present & (1 << UInt16(s)) == 0 { scheduler.remove(path: s, now: now) }
            s += 1
        }
        known = present
    }

    /// The failure rule of the file header, at most every 10 ms.
    mutating func checkHealth(now: Instant) {
        guard now >= nextCheck else { return }
        nextCheck = now + .milliseconds(10)
        if now >= nextReport {
            // The paths' reports to the scheduler (and the sent rates for status) four times a second.
            nextReport = now + .milliseconds(250)
            stale = true
        }
        var newest = Instant.zero
        var k = 0
        while k < route.spread.count {
            let s = Int(route.spread[k].slot)
            if !failed[s] && lastRx[s] > newest { newest = lastRx[s] }
            k += 1
        }
        k = 0
        while k < route.spread.count {
            let p = route.spread[k]
            let s = Int(p.slot)
            k += 1
            guard !failed[s], let since = sentSince[s] else { continue }
            let usual = rxCount[s] >= 2 ? Span(ns: 4 * rxGap[s].ns) : Self.unknownGap
            let limit = max(Span(ns: 3 * (p.srtt.ns + 4 * p.rttvar.ns)), .milliseconds(100), usual)
            if now - since >= limit && newest > lastRx[s] + limit && newest > since {
                failed[s] = true
                failedSamples[s] = p.samples
                stale = true
            }
        }
    }
}

extension SessionShard {
    /// `send` for a peer with two or more usable paths (see the file header).
    mutating func sendSpread(_ i: Int, _ peer: PeerID, _ buffer: UnsafeMutableRawBufferPointer,
                             payloadOffset: Int, payloadLength: Int, flags: UInt8, source: UnsafeRawPointer?,
                             now: Instant) -> ShardOutbound {
        guard let base = buffer.baseAddress else { return .drop(.session(.unknownPeer)) }
        let room = DataMessage.headerSize + (peers[i].spreadRelayed ? RelayMessage.headerSize : 0)
        guard payloadOffset >= room, payloadLength >= 0, payloadLength <= buffer.count - DataMessage.tagSize - payloadOffset else {
            return .drop(.badLength)
        }
        peers[i].spread!.checkHealth(now: now)
        if peers[i].spread!.stale {
            var unkeyed: UInt16 = 0
            var k = 0
            while k < peers[i].spread!.route.spread.count {
                let p = peers[i].spread!.route.spread[k]
                if p.relayFor != nil, anchorAt(p.endpoint).flatMap({ anchors[$0].keys.send }) == nil { unkeyed |= 1 << UInt16(p.slot) }
                k += 1
            }
            peers[i].spread!.sync(unkeyed: unkeyed, now: now)
        }
        let sealedLength = peers[i].pads
            ? WireGuardPadding.pad(base, payloadOffset: payloadOffset, payloadLength: payloadLength, capacity: buffer.count)
            : payloadLength
        let outcome = peers[i].keys.seal(base, payloadOffset: payloadOffset, payloadLength: sealedLength, flags: flags,
                                         source: source, now: now, timings: timings)
        if case .badFlags? = outcome { return .drop(.session(.unknownType)) }
        guard case .sealed(let rekeyDue)? = outcome else { return .core }
        if rekeyDue, let idx = peers[i].keys.current?.localIndex, peers[i].rekeyAskedFor != idx {
            peers[i].rekeyAskedFor = idx
            reports.push(.rekeyDue(peer))
        }
        let offset = payloadOffset - DataMessage.headerSize
        let length = sealedLength + DataMessage.overhead
        let counter = UInt64(littleEndian: (base + offset + 8).loadUnaligned(as: UInt64.self))
        // The picked path; with none usable (all failed here) the route's own path.
        var endpoint = peers[i].spread!.route.endpoint
        var label = peers[i].spread!.route.relayFor
        if let pick = peers[i].spread!.scheduler.pick(counter: counter, length: length, now: now) {
            var k = 0
            while k < peers[i].spread!.route.spread.count {
                let p = peers[i].spread!.route.spread[k]
                if Int(p.slot) == pick.path {
                    endpoint = p.endpoint
                    label = p.relayFor
                    if peers[i].spread!.sentSince[pick.path] == nil { peers[i].spread!.sentSince[pick.path] = now }
                    peers[i].spread!.packets[pick.path] &+= 1
                    peers[i].spread!.sent[pick.path].handleDelivered(bytes: length, now: now)
                    break
                }
                k += 1
            }
        }
        peers[i].activity.txPackets += 1
        peers[i].activity.txBytes += UInt64(length)
        if sealedLength > 0 { peers[i].activity.txData = true }
        peers[i].activity.lastTx = now
        markDirty(peer)
        guard let label else { return .send(endpoint, offset: offset, length: length) }
        guard let a = anchorAt(endpoint), let key = anchors[a].keys.send else {
            // The anchor's relay-tag key went away since the last sync (`sync` leaves such paths out).
            peers[i].spread!.routeChanged()
            return .drop(.relayTargetUnreachable)
        }
        RelayMessage.writeHeader(label, into: buffer, at: offset - RelayMessage.headerSize)
        RelayTag.seal(base + offset - RelayMessage.headerSize, length: length + RelayMessage.headerSize, key: key)
        return .send(endpoint, offset: offset - RelayMessage.headerSize, length: length + RelayMessage.headerSize)
    }

    /// Per path of `peer`'s spread route: where it goes, the scheduler's weight (0...1)
    /// and bandwidth estimate (bits/s, 0: none). Nil when the peer is not spread here (status).
    public func spreadView(_ peer: PeerID) -> [SpreadPathView]? {
        guard let i = slot(peer), let sp = peers[i].spread else { return nil }
        let route = sp.route
        var out: [SpreadPathView] = []
        for k in 0..<route.spread.count {
            let p = route.spread[k]
            let v = sp.scheduler.view(path: Int(p.slot))
            out.append(SpreadPathView(endpoint: p.endpoint, relayed: p.relayFor != nil, weight: v.weight,
                                      bandwidthBitsPerSecond: Double(sp.sentRate[Int(p.slot)]), failed: sp.failed[Int(p.slot)],
                                      capBitsPerSecond: v.capBitsPerSecond))
        }
        return out
    }
}

/// One path of a spread route as status shows it (`SessionShard.spreadView`).
public struct SpreadPathView: Sendable, Equatable {
    public var endpoint: Endpoint
    public var relayed: Bool
    public var weight: Double
    public var bandwidthBitsPerSecond: Double
    public var failed: Bool
    /// A far path's cap (rule 4b), bits/s; 0: not far.
    public var capBitsPerSecond: Double = 0
}
