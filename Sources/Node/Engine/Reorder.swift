// The receiver's reorder buffers in a lane (Protocol/Multipath/SessionReorder.swift;
// docs/multipath.md, "Wired"): a peer that sends one session over several paths
// gets its IP packets to the TUN in counter order.
//
//   udpDatagram: the shard opened DATA (replay window passed) ─▶ reorder.admit
//     false (one path: the usual case) ─▶ deliver now, as before
//     true  ─▶ the datagram's pool buffer kept past the batch (`udp.keep(view)`, one
//              more reference; a datagram handed over from another lane is copied
//              into a pool buffer) ─▶ reorder.hold ─▶ released packets to the TUN
//   control messages and keepalives of a buffering peer: their counters, as markers
//   the lane's timer at reorder.pollTimeout ─▶ handleTimeout: expired gaps given up
//   pool buffers of released packets are given back after the batch's TUN writes.
//
// Nothing here allocates per packet or makes a syscall: a kept buffer is a
// reference count in the pool; the timer is re-armed only for an earlier deadline.
import Support
import Wire
import Protocol
import Reactor

/// A packet held by a lane's reorder buffer: its bytes stay in the pool buffer.
struct HeldPacket: Sendable {
    var handle: PacketHandle
    var offset: Int32
    var length: Int32
    /// Its transport checksum was left partial by the sender (`Lane.deliver`).
    var partial: Bool
}

extension Lane {
    /// What `udpDatagram` does with an opened IP packet of `peer` at `p`.
    @inline(__always)
    func deliverOpened(_ p: UnsafeMutableRawPointer, length: Int, from peer: PeerID, now: Instant) {
        let o = shard.lastOpened
        // Authenticated with the payload (the session checked it may carry flags).
        let partial = DataMessage.flags(ofPayloadAt: p) & DataMessage.checksumPartial != 0
        guard reorder.admit(peer: peer, counter: o.counter, receiverIndex: o.receiverIndex, source: o.source,
                            relayed: o.relayed, now: now) else {
            deliver(p, length: length, from: peer, partial: partial)
            return
        }
        holdOpened(p, length: length, from: peer, counter: o.counter, partial: partial, now: now)
    }

    /// A control message or keepalive of `peer` that the shard opened: its counter fills its place.
    @inline(__always)
    func markOpened(_ peer: PeerID, now: Instant) {
        guard !reorder.buffering.isEmpty else { return }
        let o = shard.lastOpened
        guard o.peer == peer, reorder.admit(peer: peer, counter: o.counter, receiverIndex: o.receiverIndex, source: o.source,
                                            relayed: o.relayed, data: false, now: now) else { return }
        _ = reorder.hold(peer: peer, counter: o.counter, packet: nil, now: now)
        releaseReady(peer)
    }

    private func holdOpened(_ p: UnsafeMutableRawPointer, length: Int, from peer: PeerID, counter: UInt64, partial: Bool,
                            now: Instant) {
        let pool = udp.pool
        var held: HeldPacket?
        if receivingView >= 0, let h = udp.keep(receivingView) {
            if let off = pool.offset(of: UnsafeRawPointer(p), in: h) {
                held = HeldPacket(handle: h, offset: Int32(off), length: Int32(length), partial: partial)
            } else {
                _ = pool.release(h)
            }
        }
        if held == nil, let h = pool.hold(UnsafeRawBufferPointer(start: p, count: length)) {
            held = HeldPacket(handle: h, offset: 0, length: Int32(length), partial: partial)
        }
        guard let held else {
            // No pool buffer free: pass it on now (out of order); its counter is no gap.
            count("reorder_pool_exhausted")
            deliver(p, length: length, from: peer, partial: partial)
            _ = reorder.hold(peer: peer, counter: counter, packet: nil, now: now)
            releaseReady(peer)
            return
        }
        switch reorder.hold(peer: peer, counter: counter, packet: held, now: now) {
        case .held: break
        case .late, .deliver: deliverHeld(peer, held)  // late (counted): passed on out of order
        case .drop: _ = pool.release(held.handle)
        }
        releaseReady(peer)
    }

    /// Passes on what `peer`'s buffer released.
    @inline(__always)
    func releaseReady(_ peer: PeerID) {
        while let h = reorder.pollRelease(peer: peer) { deliverHeld(peer, h) }
    }

    func deliverHeld(_ peer: PeerID, _ h: HeldPacket) {
        let buf = udp.pool.buffer(h.handle)
        deliver(buf.baseAddress! + Int(h.offset), length: Int(h.length), from: peer, partial: h.partial)
        if releasingCount == Self.releasingCapacity { flushTunAndRelease() }
        releasing[releasingCount] = h.handle
        releasingCount += 1
    }

    /// Writes what the coalescer holds, then gives the released packets' buffers back.
    func flushTunAndRelease() {
        if tun.vnetHeader, fast.coalescing, !fast.coalescer.isEmpty { writeCoalesced(fast.coalescer) }
        releaseDelivered()
    }

    /// After the batch's TUN writes: the buffers of packets released from reorder buffers.
    func releaseDelivered() {
        let pool = udp.pool
        for k in 0..<releasingCount {
            if let h = releasing[k] { _ = pool.release(h) }
            releasing[k] = nil
        }
        releasingCount = 0
    }

    /// After a batch: the timer at the earliest reorder deadline (re-armed only when earlier).
    func armReorderTimer() {
        guard !reorder.buffering.isEmpty, let d = reorder.pollTimeout()?.deadline else { return }
        if let t = reorderTimer {
            if d >= reorderTimerAt { return }
            reactor.cancelTimer(t)
        }
        reorderTimerAt = d
        reorderTimer = reactor.addTimer(at: d.ns, reorderTimerFired)
    }

    static let releasingCapacity = 1024
}

/// What status shows of one peer's multipath state on its owning lane.
struct LaneMultipath: Sendable {
    var paths: [SpreadPathView]
    var reorder: ReorderCounters?
    var buffering: Bool
}

extension Lane {
    /// The multipath state of `peer` on this lane (its owner): nil when it never spread or buffered.
    func multipath(of peer: PeerID) -> LaneMultipath? {
        let paths = shard.spreadView(peer)
        let counters = reorder.counters(of: peer)
        guard paths != nil || counters != nil else { return nil }
        return LaneMultipath(paths: paths ?? [], reorder: counters, buffering: reorder.isBuffering(peer))
    }

    /// Every peer this lane owns that has multipath state (for lane 0's status).
    func multipathSnapshot(peers: Int) -> [Int: LaneMultipath] {
        var out: [Int: LaneMultipath] = [:]
        var p = id
        while p < peers {
            if let m = multipath(of: PeerID(rawValue: p)) { out[p] = m }
            p += max(1, owners)
        }
        return out
    }
}
