// The receiver's reorder buffers of one lane's sessions (docs/multipath.md, "Wired").
//
//   SessionShard.receive ─▶ opened (replay window passed) ─▶ handle(peer, opened, packet?, now)
//        one path lately      ─▶ .deliver: pass it on now (the single-path case: two compares)
//        ≥ 2 paths within 1 s ─▶ the peer's ReorderBuffer, keyed by the DATA counter:
//                                 .held (comes out of `release…` in counter order) or .drop (late: counted)
//   handleTimeout(now) (the lane's timer at `pollTimeout`) ─▶ gaps given up, packets released
//
// A packet is `Handle` (Engine: a pooled receive buffer, kept past its batch; the
// simulator: bytes). Control messages and keepalives take counters too: they are
// handled at once by the caller and enter the buffer as a marker (`packet: nil`),
// so their counters are no gap. Buffering starts when IP packets of one session came
// over two paths (source endpoint, relayed or not) within `window` (1 s) and ends
// after `window` of one path (everything held is released then). Control messages
// do not count for that: a peer whose data all comes one way while its PATH_PONGs
// come over a far path (the multipath scheduler sends no small packet there) has
// nothing to reorder, and buffering its ACKs behind each pong's counter released
// them in bursts of 20 ms (perf/multipath B, session 10). A path that
// delivered nothing for max(4 × release timeout, 100 ms) while another did is
// declared failed: its gaps are flushed at once (`ReorderBuffer.handlePathFailed`).
// A new keypair restarts the counter: what is held is released and the buffer
// restarts; a straggler under the previous keypair is passed on at once.
//
// Replay protection comes first: the shard's replay window has accepted the
// counter before it gets here, so a duplicate never reaches a buffer (the
// window drops and counts it). A packet behind what the buffer already released
// (its gap was given up: the release timeout was too short, or buffering had
// just begun) is therefore late, not a duplicate: it is passed on out of order
// (`Verdict.late`, counted as `releasedLate`), as a single-path tunnel would,
// rather than lost. Memory: one ReorderBuffer per peer that ever
// spread (allocated once, reused), the list of buffering peers; nothing per packet.
import Support
import Wire

public struct SessionReorder<Handle: Sendable>: Sendable {
    public enum Verdict {
        /// Not buffering (or a straggler of an old keypair): pass the packet on now.
        case deliver
        /// Taken by the buffer: it comes out of `pollRelease` / `handleTimeout`.
        case held
        /// Late (its counter was released or given up already): the caller drops it. Not
        /// returned today: a late IP packet is passed on (`.late`), see the file header.
        case drop
        /// Late, and passed on out of order (counted as `releasedLate`): the replay window
        /// proved it no duplicate, and a reordered packet costs an inner TCP less than a lost one.
        case late
    }

    /// Paths told apart per peer (source endpoint and whether relayed).
    public static var pathSlots: Int { 4 }
    public static var window: Span { .seconds(1 as UInt64) }

    typealias PathSlot = ReorderPathSlot
    typealias Peer = ReorderPeer

    var peers: [Peer]
    /// Per peer, its ReorderBuffer once it has spread (allocated once, reused).
    var buffers: [ReorderBuffer<Handle?>?]
    /// Peers buffering now (their ids).
    public private(set) var buffering: [Int] = []
    public let timings: MultipathTimings

    public init(peers: Int, timings: MultipathTimings = .default) {
        self.peers = Array(repeating: Peer(), count: max(0, peers))
        self.buffers = Array(repeating: nil, count: max(0, peers))
        self.timings = timings
        buffering.reserveCapacity(16)
    }

    /// One opened DATA of `peer` (counter `counter` under keypair `receiverIndex`, from
    /// `source`, through an anchor when `relayed`). `packet` nil: a control message or
    /// keepalive the caller handled already (its counter is no gap).
    @inline(__always)
    public mutating func handle(peer: PeerID, counter: UInt64, receiverIndex: UInt32, source: Endpoint, relayed: Bool,
                                packet: Handle?, now: Instant) -> Verdict {
        guard admit(peer: peer, counter: counter, receiverIndex: receiverIndex, source: source, relayed: relayed,
                    data: packet != nil, now: now) else {
            return .deliver
        }
        return hold(peer: peer, counter: counter, packet: packet, now: now)
    }

    /// `handle` in two steps, for a caller that makes the handle only when it is kept
    /// (the engine keeps a pooled buffer past its batch): true when the packet goes to
    /// `hold` next (at once, with the same counter), false when it is passed on now.
    @inline(__always)
    public mutating func admit(peer: PeerID, counter: UInt64, receiverIndex: UInt32, source: Endpoint, relayed: Bool,
                               data: Bool = true, now: Instant) -> Bool {
        let i = peer.rawValue
        guard i >= 0 && i < peers.count else { return false }
        // Which path: the last one (the common case: one compare of the source) or another.
        var k = peers[i].last
        if !(peers[i].hasLast && peers[i].lastSource == source && peers[i].lastRelayed == relayed) {
            k = slot(i, source: source, relayed: relayed, now: now)
            peers[i].last = k
            peers[i].lastSource = source
            peers[i].lastRelayed = relayed
            peers[i].hasLast = true
        }
        if data && !(peers[i].hasLastData && peers[i].lastDataSource == source && peers[i].lastDataRelayed == relayed) {
            if peers[i].hasLastData { peers[i].spreadUntil = now + Self.window }  // the first path ever is no second path
            peers[i].lastDataSource = source
            peers[i].lastDataRelayed = relayed
            peers[i].hasLastData = true
        }
        if !peers[i].on {
            if now >= peers[i].spreadUntil {
                // One path: nothing to reorder (the fast case: a compare and a store more).
                if receiverIndex == peers[i].index {
                    if counter > peers[i].highest { peers[i].highest = counter }
                    return false
                }
                if receiverIndex != peers[i].index && receiverIndex != peers[i].previousIndex {
                    peers[i].previousIndex = peers[i].index
                    peers[i].index = receiverIndex
                    peers[i].highest = counter
                }
                return false
            }
            start(i, receiverIndex: receiverIndex)
            if receiverIndex == peers[i].index && counter < buffers[i]!.next {
                // Behind what already passed before buffering began (it came the slow way): pass it on.
                peers[i][k].lastAt = now
                return false
            }
        }
        peers[i][k].lastAt = now
        peers[i][k].seen = true
        peers[i][k].failed = false
        if receiverIndex != peers[i].index {
            if receiverIndex == peers[i].previousIndex { return false }
            // A new keypair: its counters start again.
            peers[i].previousIndex = peers[i].index
            peers[i].index = receiverIndex
            buffers[i]!.reset(next: counter < UInt64(buffers[i]!.depth) ? 0 : counter)
            // (released packets wait in the buffer's output for the caller's pollRelease)
        }
        if counter > peers[i].highest { peers[i].highest = counter }
        checkFailures(i, except: k, now: now)
        return true
    }

    /// The second step of `handle`, right after `admit` said true for this packet.
    @inline(__always)
    public mutating func hold(peer: PeerID, counter: UInt64, packet: Handle?, now: Instant) -> Verdict {
        let i = peer.rawValue
        guard i >= 0 && i < peers.count, peers[i].on else { return .deliver }
        switch buffers[i]!.handle(counter: counter, packet: packet, path: peers[i].last, now: now) {
        case .accepted: return .held
        case .drop:
            guard packet != nil else { return .held }
            peers[i].late += 1
            return .late
        }
    }

    /// The next packet of `peer` to pass on, in counter order.
    @inline(__always)
    public mutating func pollRelease(peer: PeerID) -> Handle? {
        let i = peer.rawValue
        guard i >= 0 && i < peers.count, buffers[i] != nil else { return nil }
        while let h = buffers[i]!.pollRelease() {
            if let h { return h }
        }
        return nil
    }

    /// When `handleTimeout` has work (a held gap expires, or a buffering peer went back to one path).
    public mutating func pollTimeout() -> (deadline: Instant, reason: String)? {
        var best: Instant?
        var n = 0
        while n < buffering.count {  // no for-in over an array: its iterator allocates in a debug build
            let i = buffering[n]
            n += 1
            var d = peers[i].spreadUntil
            if let t = buffers[i]!.pollTimeout()?.deadline, t < d { d = t }
            if best.map({ d < $0 }) ?? true { best = d }
        }
        return best.map { ($0, "reorder gap expires") }
    }

    /// Gives up expired gaps and ends buffering for peers back on one path; every
    /// packet that leaves goes to `release`, in counter order per peer.
    public mutating func handleTimeout(now: Instant, release: (PeerID, Handle) -> Void) {
        var n = 0
        while n < buffering.count {
            let i = buffering[n]
            let peer = PeerID(rawValue: i)
            if now >= peers[i].spreadUntil {
                buffers[i]!.reset(next: 0)
                while let h = pollRelease(peer: peer) { release(peer, h) }
                stop(i)
                buffering.swapAt(n, buffering.count - 1)
                buffering.removeLast()
                continue
            }
            buffers[i]!.handleTimeout(now: now)
            while let h = pollRelease(peer: peer) { release(peer, h) }
            n += 1
        }
    }

    /// Every peer's counters added up (maxHeld: the largest).
    public var total: ReorderCounters {
        var c = ReorderCounters()
        for i in peers.indices { if let pc = counters(of: PeerID(rawValue: i)) { c = Self.sum(c, pc) } }
        return c
    }

    /// `peer`'s counters (all its buffering so far), nil if it never buffered.
    public func counters(of peer: PeerID) -> ReorderCounters? {
        let i = peer.rawValue
        guard i >= 0 && i < peers.count else { return nil }
        guard let b = buffers[i] else { return nil }
        var c = b.counters
        c.droppedLateDuplicate -= min(c.droppedLateDuplicate, peers[i].late)
        c.releasedLate = peers[i].late
        return c
    }

    /// Whether `peer` is buffering now.
    public func isBuffering(_ peer: PeerID) -> Bool {
        peer.rawValue >= 0 && peer.rawValue < peers.count && peers[peer.rawValue].on
    }

    /// Held packets of every peer now.
    public var heldNow: Int {
        var n = 0, k = 0
        while k < buffering.count {
            n += buffers[buffering[k]]!.heldCount
            k += 1
        }
        return n
    }

    // MARK: Internals

    mutating func start(_ i: Int, receiverIndex: UInt32) {
        if buffers[i] == nil {
            buffers[i] = ReorderBuffer(firstCounter: 0, paths: Self.pathSlots, timings: timings)
        }
        // Everything up to the highest counter passed on so far is behind us.
        let first = receiverIndex == peers[i].index ? peers[i].highest &+ 1 : 0
        if receiverIndex != peers[i].index {
            peers[i].previousIndex = peers[i].index
            peers[i].index = receiverIndex
        }
        buffers[i]!.reset(next: first)
        peers[i].on = true
        buffering.append(i)
    }

    mutating func stop(_ i: Int) {
        peers[i].on = false
    }

    /// The slot for a path (the least recently used one is replaced by a new path).
    mutating func slot(_ i: Int, source: Endpoint, relayed: Bool, now: Instant) -> Int {
        var oldest = 0
        for k in 0..<Self.pathSlots {
            let s = peers[i][k]
            if s.seen && s.source == source && s.relayed == relayed { return k }
            if !s.seen || (peers[i][oldest].seen && s.lastAt < peers[i][oldest].lastAt) { oldest = k }
        }
        peers[i][oldest] = PathSlot(source: source, relayed: relayed, seen: true, lastAt: now, failed: false)
        buffers[i]?.handlePathRestored(oldest)
        return oldest
    }

    /// A path silent for max(4 × release timeout, 100 ms) while path `k` delivers: failed.
    mutating func checkFailures(_ i: Int, except k: Int, now: Instant) {
        let limit = max(buffers[i]!.releaseTimeout * 4, .milliseconds(100))
        for s in 0..<Self.pathSlots where s != k {
            let p = peers[i][s]
            guard p.seen, !p.failed, p.lastAt + limit <= now else { continue }
            peers[i][s].failed = true
            buffers[i]!.handlePathFailed(s, now: now)
        }
    }

    static func sum(_ a: ReorderCounters, _ b: ReorderCounters) -> ReorderCounters {
        var c = a
        c.held += b.held
        c.releasedInOrder += b.releasedInOrder
        c.releasedByTimeout += b.releasedByTimeout
        c.flushedByPathFailure += b.flushedByPathFailure
        c.releasedByDepth += b.releasedByDepth
        c.releasedByLoss += b.releasedByLoss
        c.droppedLateDuplicate += b.droppedLateDuplicate
        c.lateAfterSkip += b.lateAfterSkip
        c.maxDepthReached += b.maxDepthReached
        c.gapsSkipped += b.gapsSkipped
        c.releasedLate += b.releasedLate
        c.maxHeld = max(a.maxHeld, b.maxHeld)
        return c
    }
}

/// One path of a peer as its reorder state knows it (SessionReorder).
struct ReorderPathSlot: Sendable {
    var source = Endpoint(family: .v4, address: IPAddressBytes(), port: 0)
    var relayed = false
    var seen = false
    var lastAt = Instant.zero
    var failed = false
}

/// One peer's reorder state, its buffer apart (`SessionReorder.buffers`). Not nested
/// in SessionReorder and not holding the buffer, so it is not generic: the per-packet
/// reads of the single-path case are plain field loads even where SessionReorder's
/// code is not specialized for `Handle`. Nested (so generic), each read copied the
/// whole Peer through its value witness (memmove, retain and release: about 3% of a
/// daemon's CPU in perf/throughput's single stream, session 12).
struct ReorderPeer: Sendable {
    var on = false
    /// The path the last packet came over (its slot, and the slot's key kept flat: read
    /// per packet), and until when the peer counts as spreading.
    var last = 0
    var lastSource = Endpoint(family: .v4, address: IPAddressBytes(), port: 0)
    var lastRelayed = false
    var hasLast = false
    /// The path the last IP packet came over (control messages do not start buffering).
    var lastDataSource = Endpoint(family: .v4, address: IPAddressBytes(), port: 0)
    var lastDataRelayed = false
    var hasLastData = false
    var spreadUntil = Instant.zero
    var p0 = ReorderPathSlot(), p1 = ReorderPathSlot(), p2 = ReorderPathSlot(), p3 = ReorderPathSlot()
    /// The keypair the counters are under, and the one before (stragglers).
    var index: UInt32 = 0
    var previousIndex: UInt32 = 0
    var highest: UInt64 = 0
    /// Late packets passed on (`Verdict.late`).
    var late = 0

    subscript(k: Int) -> ReorderPathSlot {
        get { switch k { case 0: p0; case 1: p1; case 2: p2; default: p3 } }
        set { switch k { case 0: p0 = newValue; case 1: p1 = newValue; case 2: p2 = newValue; default: p3 = newValue } }
    }
}
