// The io_uring datagram backend: one ring per reactor, multishot recvmsg per
// socket into that socket's provided-buffer ring; the ring's fd is polled by
// the reactor's epoll, and completions are reaped in batches and delivered to
// each socket's handler as one batch per socket (sends from inside the handler
// complete inline: see CReactor_uring_sendmsg_batch).
//
// The ring is posted with buffers of the socket's PacketPool, buffer id = pool
// index (the kernel writes at pool.base + id × size). The socket holds one
// reference to each posted buffer. After the handler returns it drops its
// references to the batch's buffers (a buffer the handler kept stays with its
// holder), and the ring is topped up from the pool's free list, up to
// `buffersPerSocket`; short when the pool runs low (counted: `poolShort`). An
// empty ring ends the multishot receive (ENOBUFS): the socket then waits, by
// epoll, for a datagram, posts what the pool has freed meanwhile and re-arms,
// or, the pool still empty, drops what waits (`poolDrops`).
import CReactor

final class UringEngine {
    let ring: OpaquePointer
    private unowned let reactor: Reactor
    private var registration: Registration?
    private var sockets: [UInt16: DatagramSocket] = [:]
    private var nextID: UInt16 = 1
    private let cqes: UnsafeMutablePointer<CReactor_cqe>
    private static let reapMax: Int32 = 256
    /// Buffers per socket: a power of two (provided-buffer ring).
    static let buffersPerSocket = 512

    init(reactor: Reactor) throws(SyscallError) {
        var err: Int32 = 0
        guard let r = CReactor_uring_create(1024, &err) else { throw SyscallError(call: "io_uring_queue_init", errno: -err) }
        ring = r
        self.reactor = reactor
        cqes = .allocate(capacity: Int(Self.reapMax))
        registration = try reactor.register(fd: CReactor_uring_fd(r), events: .readable) { [unowned self] _ in self.reap() }
    }

    deinit {
        // No deregistration: the engine dies with its reactor, whose epoll fd closes with it.
        // The pools (held by the sockets and `retired`) outlive the ring: released after this body.
        CReactor_uring_destroy(ring)
        cqes.deallocate()
    }

    func attach(_ s: DatagramSocket) throws(SyscallError) {
        guard nextID < 64 else { throw SyscallError(call: "io_uring provide buffers", errno: 28 /* ENOSPC */) }
        let id = nextID
        nextID += 1
        let pool = s.pool
        _ = try syscallValue("io_uring_register_buf_ring") {
            CReactor_uring_register_buffer_ring(ring, id, pool.base.assumingMemoryBound(to: UInt8.self),
                                                UInt32(Self.buffersPerSocket), UInt32(pool.count), UInt32(pool.bufferSize))
        }
        s.uringID = id
        sockets[id] = s
        refill(s)
        try arm(s)
    }

    func detach(_ s: DatagramSocket) {
        guard sockets.removeValue(forKey: s.uringID) != nil else { return }
        _ = CReactor_uring_cancel(ring, UInt64(s.uringID))
        _ = CReactor_uring_submit(ring)
        // The buffers posted in its ring stay taken from the pool, and the pool stays
        // allocated, until the ring is destroyed: the kernel may still write into them.
        retired.append(s.pool)
    }
    private var retired: [PacketPool] = []

    /// Tops the socket's buffer ring up from its pool, up to `buffersPerSocket` (short: counted).
    private func refill(_ s: DatagramSocket) {
        let pool = s.pool
        while s.ringPosted < Self.buffersPerSocket, let h = pool.take() {
            CReactor_uring_provide_buffer(ring, s.uringID, UInt16(truncatingIfNeeded: h.index))
            s.ringPosted += 1
        }
        if s.ringPosted < Self.buffersPerSocket { s.counters.poolShort += 1 }
        CReactor_uring_provide_commit(ring, s.uringID)
    }

    /// The socket of an empty ring became readable: post what the pool freed and re-arm,
    /// or, with nothing free, drop what waits (counted) and keep waiting.
    func unstarve(_ s: DatagramSocket) {
        guard sockets[s.uringID] === s else { return }
        refill(s)
        if s.ringPosted > 0 {
            s.starved = false
            s.updateInterest()
            do { try arm(s) } catch { reactor.report(error) }
            return
        }
        for _ in 0..<16 where s.discardWaiting(s.batchSize) {}
    }

    private func arm(_ s: DatagramSocket) throws(SyscallError) {
        _ = try syscallValue("io_uring recvmsg multishot") { CReactor_uring_recvmsg_multishot(ring, s.fd, s.uringID, UInt64(s.uringID)) }
        _ = try syscallValue("io_uring_submit") { CReactor_uring_submit(ring) }
    }

    /// Reaps completions in batches; delivers per socket; tops rings up; re-arms ended multishots.
    func reap() {
        var rearm: [UInt16] = []
        while true {
            let n = Int(CReactor_uring_reap(ring, cqes, Self.reapMax))
            if n == 0 { break }
            for i in 0..<n {
                let c = cqes[i]
                guard c.user_data != 0, let s = sockets[UInt16(truncatingIfNeeded: c.user_data)] else { continue }
                let more = c.flags & UInt32(CReactor_CQE_F_MORE) != 0
                if c.res < 0 {
                    if -c.res == ENOBUFS_ { s.counters.noBuffers += 1 } else if -c.res != 125 /* ECANCELED */ {
                        reactor.report(SyscallError(call: "io_uring recvmsg", errno: -c.res))
                    }
                } else if c.flags & UInt32(CReactor_CQE_F_BUFFER) != 0 {
                    let bid = UInt16(truncatingIfNeeded: c.flags >> UInt32(CReactor_CQE_BUFFER_SHIFT))
                    s.ringPosted -= 1
                    let v = s.uringViews + s.pending
                    let r = CReactor_uring_parse_recvmsg(ring, s.uringID, bid, c.res, v)
                    if r == 0 {
                        // The ring's reference to the buffer becomes the batch's.
                        s.slotHandles[s.pending] = s.pool.handle(at: Int(bid))
                        s.pending += 1
                    } else {
                        // Still the socket's: straight back into the ring.
                        CReactor_uring_provide_buffer(ring, s.uringID, bid)
                        CReactor_uring_provide_commit(ring, s.uringID)
                        s.ringPosted += 1
                        s.counters.truncated += 1
                    }
                    if s.pending == s.batchSize { flush(s) }
                }
                if !more && sockets[s.uringID] != nil && !rearm.contains(s.uringID) { rearm.append(s.uringID) }
            }
        }
        for (_, s) in sockets where s.pending > 0 { flush(s) }
        for id in rearm {
            guard let s = sockets[id] else { continue }
            refill(s)
            // An empty ring would end the receive at once (ENOBUFS): wait for the socket instead.
            guard s.ringPosted > 0 else {
                s.starved = true
                s.updateInterest()
                continue
            }
            do { try arm(s) } catch { reactor.report(error) }
        }
    }

    private func flush(_ s: DatagramSocket) {
        let n = s.pending
        s.pending = 0
        // The handles are the socket's record of the buffers: the handler may rewrite the views.
        s.deliver(n)
        let pool = s.pool
        for i in 0..<n { pool.release(s.slotHandles[i]) }
        // A handler that closed the socket detached it: its ring takes no more buffers.
        if sockets[s.uringID] === s { refill(s) }
    }
}

extension Reactor {
    func uringEngine() throws(SyscallError) -> UringEngine {
        if let u = uring { return u }
        let u = try UringEngine(reactor: self)
        uring = u
        return u
    }
}

