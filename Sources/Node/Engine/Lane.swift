// One reactor of the engine, on its own thread, one per core:
//
//   lane k:  Reactor k ── UDP socket k (one SO_REUSEPORT group, BPF steers DATA by receiver index)
//                      ── TUN queue k  (IFF_MULTI_QUEUE: the kernel spreads flows over the queues)
//                      ── SessionShard k: keys of the peers it owns (p mod N == k)
//                      ── rings from every other lane (ByteRing: TUN packets, datagrams, reports)
//   lane 0 also runs NodeCore (handshakes, timers, connectivity), the control socket and signals.
//
//   TUN read on lane j for peer p:   j owns p ─▶ seal (shard) ─▶ UDP
//                                    else     ─▶ ring j→owner(p), whole read, vnet header kept
//                                    no keys/path on the owner ─▶ ring →0: NodeCore queues, handshakes
//   UDP datagram on lane j:          DATA owned here ─▶ open (shard) ─▶ TUN queue j
//                                    DATA owned by k (steering missed) ─▶ ring j→k
//                                    a control message opened here ─▶ ring j→0 (NodeCore)
//                                    (anchor) a RELAY to forward ─▶ checked and forwarded here (every lane)
//                                    anything else (handshake, probe) ─▶ ring j→0
//   reactor 0 → lane k: keys, routes, anchors through k's mailbox (closures; rare)
//
// A ring is single-producer single-consumer and allocated once; a lane wakes
// another once per batch (an eventfd write, through a mailbox job made once),
// never per packet. Records stay in the ring until the batch that read them is
// sent, so packets are sealed and opened in place there too.
//
// With one reactor (node.reactors = 1) it is the same code with N = 1: lane 0's
// shard owns every session, NodeCore runs beside it, and there are no rings
// (every datagram and TUN read is already on its owner).
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Atomics
import Reactor

/// The fixed header in front of every record of a ring between lanes (plain values only).
struct Handoff {
    enum Kind: UInt8 {
        /// A TUN read (vnet header + packet) for a peer the receiving lane owns.
        case tun = 1
        /// One IP packet for NodeCore on lane 0: its owner has no keys or path for it.
        case tunCore
        /// A UDP datagram as it was received from `source`.
        case datagram
        /// A control message a lane opened: `peer`, `source`, `via`, the plaintext.
        case control
        /// A ShardReport, stored after the header.
        case report
    }
    var kind: Kind
    var vnetLength: UInt8 = 0
    var peer: Int32 = -1
    var via: Int32 = -1
    var length: Int32 = 0
    var capacity: Int32 = 0
    var source = Endpoint(family: .v4, address: IPAddressBytes(), port: 0)
    var vnet: (UInt64, UInt64) = (0, 0)

    /// Where the packet starts in a record: the header, then the data path's headroom.
    static let payloadOffset = 128
    /// Room behind the packet: the tag, when it is sealed in place there.
    static let tailroom = 64
}

/// One reactor's share of the engine. Lane 0's belongs to the daemon's thread.
final class Lane: @unchecked Sendable {
    let id: Int
    unowned let daemon: Daemon
    let reactor: Reactor
    var udp: DatagramSocket!
    var tun: TunDevice!
    /// The data path's buffers (DataPath.swift).
    let fast = DataPathBuffers()
    /// The ICMP errors for packets above a member's path MTU (MTUControl.swift).
    let mtuGuard = LaneMTUGuard()
    /// Views for relayed forwards and probe answers within a batch.
    let out: UnsafeMutablePointer<DatagramView>
    /// The sessions this lane owns (all of them with one lane), set by the daemon
    /// before the lanes run. Not optional: unwrapping an optional struct on
    /// the packet path copied it (and retained its storage) per packet.
    var shard = SessionShard(index: 0, owners: 1, roster: Roster(), isAnchor: false)
    /// The rules between lanes (Protocol/Lanes/LaneRouter.swift), shared with the simulator.
    var router = LaneRouter(lanes: 1, isAnchor: false)
    var owners = 1
    /// Drops by reason (lane 0: also NodeCore's engine-side drops). Other lanes publish theirs to lane 0.
    var drops: [String: UInt64] = [:]

    // Per batch (DataPath.swift).
    var outCount = 0
    var arenaUsed = 0
    var forwards = 0
    var touchedCore = false
    var reportTimer: TimerID?
    var publishTimer: TimerID?
    var lastPublish = Instant.zero
    /// The publish timer's action, made once.
    lazy var publishFired: () -> Void = { [unowned self] in
        self.publishTimer = nil
        self.lastPublish = Daemon.now()
        self.publish()
    }
    /// The receiver's reorder buffers of the sessions this lane owns (Engine/Reorder.swift).
    var reorder = SessionReorder<HeldPacket>(peers: 0)
    /// The receive view the datagram being handled came in (-1: handed over from another lane).
    var receivingView = -1
    /// Pool buffers of packets the reorder buffers released, given back after the batch's TUN writes.
    let releasing: UnsafeMutablePointer<PacketHandle?> = {
        let p = UnsafeMutablePointer<PacketHandle?>.allocate(capacity: Lane.releasingCapacity)
        p.initialize(repeating: nil, count: Lane.releasingCapacity)
        return p
    }()
    var releasingCount = 0
    var reorderTimer: TimerID?
    var reorderTimerAt = Instant.zero
    /// The reorder timer's action, made once.
    lazy var reorderTimerFired: () -> Void = { [unowned self] in
        self.reorderTimer = nil
        let now = Daemon.now()
        self.beginBatch()
        self.reorder.handleTimeout(now: now) { p, h in self.deliverHeld(p, h) }
        self.endBatch(now: now)
    }
    /// The report timer's action, made once.
    lazy var reportTimerFired: () -> Void = { [unowned self] in
        self.reportTimer = nil
        let now = Daemon.now()
        self.beginBatch()
        self.flushReports(now: now, force: false)
        self.endBatch(now: now)
    }

    // Between lanes (all sized `daemon.lanes.count`; nil at our own index).
    /// Rings this lane writes, to lane k.
    var outbound: [ByteRing?] = []
    /// Rings this lane reads, from lane j.
    var inbound: [ByteRing?] = []
    /// A mailbox on lane k's reactor that this lane's thread posts to.
    var mailboxTo: [Mailbox?] = []
    /// Set by the producer when it posted a wake-up for ring j→self not yet drained.
    var wakePending: [ManagedAtomic<Bool>] = []
    /// The jobs that drain ring j→self, made once (posting one allocates nothing).
    var drainJobs: [Mailbox.Job?] = []
    /// Rings written in this batch, to wake at its end.
    var written: [Bool] = []
    /// Set by producer lane j when its ring to us was full and it stopped
    /// reading its TUN queue; we clear it and resume lane j once we drained.
    var producerWaiting: [ManagedAtomic<Bool>] = []
    /// The jobs that resume lane j's TUN reading, made once (posted to j by us).
    var resumeJobs: [Mailbox.Job?] = []
    /// Rings (by consumer) this lane waits on with its TUN reading paused.
    var waitingOn: UInt64 = 0
    let stopFlag = ManagedAtomic<Bool>(false)

    /// Bytes of one ring between two lanes: 4 MiB with two lanes (64 TSO reads
    /// in flight), less with more so that a lane's inbound rings stay about 8 MiB
    /// in all, but never under 1 MiB. (Memory is touched only as far as the rings fill.)
    static func ringCapacity(lanes n: Int) -> Int { max(1 << 20, min(4 << 20, (8 << 20) / max(1, n - 1))) }

    init(id: Int, daemon: Daemon, reactor: Reactor) {
        self.id = id
        self.daemon = daemon
        self.reactor = reactor
        out = .allocate(capacity: Daemon.batch)
        out.initialize(repeating: DatagramView(), count: Daemon.batch)
    }

    deinit {
        out.deallocate()
        releasing.deallocate()
    }


    /// The UDP socket's packet-pool counters, as status counters (Reactor/PacketPool.swift).
    static func poolCounters(_ c: DatagramCounters) -> [(String, UInt64)] {
        [("udp_pool_short", UInt64(c.poolShort)), ("udp_pool_dropped", UInt64(c.poolDrops))]
    }

    func count(_ reason: String) {
        drops[reason, default: 0] &+= 1
    }

    // MARK: Rings

    /// Room for one record to lane `k` with `length` bytes of packet; nil (counted) when its ring is full.
    func reserve(to k: Int, _ header: Handoff, length: Int) -> UnsafeMutableRawPointer? {
        guard let ring = outbound[k] else { return nil }
        var h = header
        h.length = Int32(length)
        h.capacity = Int32(length + Handoff.tailroom)
        let size = Handoff.payloadOffset + length + Handoff.tailroom
        guard let rec = ring.reserve(size) ?? waitForRoom(to: k, ring, size, tun: header.kind == .tun) else {
            count("handoff_full")
            return nil
        }
        rec.storeBytes(of: h, as: Handoff.self)
        return rec + Handoff.payloadOffset
    }

    /// The ring to lane `k` is full. For TUN reads: stop reading the TUN queue
    /// until `k` drained (backpressure: the kernel queues, then drops, as for a
    /// slow reader, instead of this lane reading packets only to drop them).
    /// The flag is set before one more try, and `k` looks at it after it freed
    /// room, so one of the two always sees the other (both fenced).
    private func waitForRoom(to k: Int, _ ring: ByteRing, _ size: Int, tun waits: Bool) -> UnsafeMutableRawPointer? {
        guard waits else { return nil }
        let consumer = daemon.lanes[k]
        consumer.producerWaiting[id].store(true, ordering: .sequentiallyConsistent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if let rec = ring.reserve(size) {
            consumer.producerWaiting[id].store(false, ordering: .sequentiallyConsistent)
            return rec
        }
        waitingOn |= 1 << UInt64(k)
        tun.paused = true
        return nil
    }

    /// Lane `k` drained its ring from us: read the TUN again once no ring is full.
    func resume(from k: Int) {
        waitingOn &= ~(1 << UInt64(k))
        if waitingOn == 0 { tun.paused = false }
    }

    func commit(to k: Int) {
        outbound[k]!.commit()
        written[k] = true
    }

    /// Hands bytes to lane `k` (one copy).
    func handoff(to k: Int, _ header: Handoff, _ bytes: UnsafeRawPointer, length: Int) {
        guard let dst = reserve(to: k, header, length: length) else { return }
        dst.copyMemory(from: bytes, byteCount: length)
        commit(to: k)
    }

    /// Hands a shard's report to lane 0.
    func handoff(report: ShardReport) {
        guard let dst = reserve(to: 0, Handoff(kind: .report), length: MemoryLayout<ShardReport>.size) else { return }
        dst.storeBytes(of: report, as: ShardReport.self)
        commit(to: 0)
    }

    /// Wakes every lane this batch wrote to, once.
    func wakeWritten() {
        for k in written.indices where written[k] {
            written[k] = false
            let lane = daemon.lanes[k]
            if !lane.wakePending[id].exchange(true, ordering: .acquiringAndReleasing) {
                if !mailboxTo[k]!.post(lane.drainJobs[id]!) { lane.wakePending[id].store(false, ordering: .releasing) }
            }
        }
    }

    /// Runs on this lane's thread when lane `j` wrote to us: every record, as one batch.
    func drain(from j: Int) {
        wakePending[j].store(false, ordering: .releasing)
        guard let ring = inbound[j] else { return }
        let now = Daemon.now()
        var any = false
        while let rec = ring.readNext() {
            if !any {
                beginBatch()
                any = true
            }
            let h = rec.baseAddress!.load(as: Handoff.self)
            let p = rec.baseAddress! + Handoff.payloadOffset
            let len = Int(h.length)
            switch h.kind {
            case .tun:
                var vnet = h.vnet
                withUnsafeBytes(of: &vnet) { raw in
                    tunPacket(p, length: len, capacity: Int(h.capacity),
                              vnetHeader: h.vnetLength > 0 ? UnsafeRawBufferPointer(rebasing: raw[0..<Int(h.vnetLength)]) : nil,
                              now: now, forCore: false)
                }
            case .tunCore:
                tunPacket(p, length: len, capacity: Int(h.capacity), vnetHeader: nil, now: now, forCore: true)
            case .datagram:
                udpDatagram(UnsafeMutableRawBufferPointer(start: p, count: Int(h.capacity)), length: len, from: h.source, now: now,
                            handedOver: true)
            case .control:
                daemon.core.receiveOpened(from: PeerID(rawValue: Int(h.peer)), payload: UnsafeRawBufferPointer(start: p, count: len),
                                          source: h.source, via: h.via >= 0 ? PeerID(rawValue: Int(h.via)) : nil, now: now)
                    .countDrop(in: self)
                touchedCore = true
            case .report:
                daemon.core.applyShardReport(p.loadUnaligned(as: ShardReport.self), now: now)
                touchedCore = true
            }
        }
        if any { endBatch(now: now) }
        ring.releaseRead()
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if producerWaiting[j].exchange(false, ordering: .sequentiallyConsistent) { postResume(to: j) }
    }

    /// Resumes lane `j`'s TUN reading; a full mailbox is tried again in a millisecond
    /// (nothing else would: a paused lane writes no more records that would wake us).
    private func postResume(to j: Int) {
        if mailboxTo[j]!.post(resumeJobs[j]!) { return }
        _ = reactor.addTimer(after: 1_000_000) { [unowned self] in self.postResume(to: j) }
    }
}

extension NodeInbound {
    /// The result of a control message handed to NodeCore. A drop is not
    /// counted here: NodeCore counted it (NodeCore.drop) and the status shows
    /// NodeCore's counts; counting it in the lane too showed every one twice.
    func countDrop(in lane: Lane) {}
}

extension Lane {
    /// Lanes other than 0: what `wsctl status` shows of them, sent to lane 0 now and then.
    func publish() {
        var c = drops
        for (k, v) in shard.drops { c[k.name, default: 0] &+= v }
        c["tun_coalesced_packets", default: 0] &+= UInt64(fast.coalescer.merged)
        c["tun_coalesced_udp", default: 0] &+= UInt64(fast.coalescer.mergedUDP)
        if let u = udp { for (k, v) in Lane.poolCounters(u.counters) { c[k, default: 0] &+= v } }
        addRelayCounters(to: &c)
        let me = id
        let d = daemon
        let snapshot = c
        let multipath = multipathSnapshot(peers: daemon.config.peers.count)
        _ = mailboxTo[0]?.post {
            d.published[me] = snapshot
            d.publishedMultipath[me] = multipath
        }
    }
}

extension Lane {
    /// What this lane's shard forwarded as an anchor: added to the node's
    /// `relay_forwarded_packets`/`_bytes`, and this lane's own `relay_forwarded_packets_lane<k>`.
    func addRelayCounters(to c: inout [String: UInt64]) {
        guard daemon.config.node.anchor else { return }
        let r = shard.relayCounters
        c["relay_forwarded_packets", default: 0] &+= r.packets
        c["relay_forwarded_bytes", default: 0] &+= r.bytes
        c["relay_forwarded_packets_lane\(id)", default: 0] &+= r.packets
    }
}

extension Lane {
    /// Lanes other than 0, after a batch: counters to lane 0 at most twice a
    /// second, the last ones by a one-shot timer. An idle lane is never woken.
    func publishSoon(now: Instant) {
        guard id != 0, publishTimer == nil else { return }
        let due = lastPublish + Self.publishInterval
        if due <= now {
            lastPublish = now
            publish()
        } else {
            publishTimer = reactor.addTimer(at: due.ns, publishFired)
        }
    }

    static let publishInterval = Span.milliseconds(500)
}
