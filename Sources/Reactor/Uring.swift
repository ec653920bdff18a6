// The io_uring datagram backend: one ring per reactor, multishot recvmsg per
// socket into that socket's provided-buffer ring; the ring's fd is polled by
// the reactor's epoll, and completions are reaped in batches and delivered to
// each socket's handler as one batch per socket. Buffers go back to the kernel
// right after the handler returns (sends from inside the handler complete
// inline: see CReactor_uring_sendmsg_batch).
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
        for (_, s) in sockets { s.uringSlab?.deallocate() }
        CReactor_uring_destroy(ring)
        cqes.deallocate()
    }

    func attach(_ s: DatagramSocket) throws(SyscallError) {
        guard nextID < 64 else { throw SyscallError(call: "io_uring provide buffers", errno: 28 /* ENOSPC */) }
        let id = nextID
        nextID += 1
        let count = Self.buffersPerSocket
        let slab = UnsafeMutableRawPointer.allocate(byteCount: count * s.bufferSize, alignment: 4096)
        _ = try syscallValue("io_uring_register_buf_ring") {
            CReactor_uring_provide_buffers(ring, id, slab.assumingMemoryBound(to: UInt8.self), UInt32(count), UInt32(s.bufferSize))
        }
        s.uringID = id
        s.uringSlab = slab
        s.uringCount = count
        sockets[id] = s
        try arm(s)
    }

    func detach(_ s: DatagramSocket) {
        guard sockets.removeValue(forKey: s.uringID) != nil else { return }
        _ = CReactor_uring_cancel(ring, UInt64(s.uringID))
        _ = CReactor_uring_submit(ring)
        // The slab stays allocated until the ring is destroyed: the kernel may still hold buffers of it.
        retired.append(s.uringSlab)
        s.uringSlab = nil
    }
    private var retired: [UnsafeMutableRawPointer?] = []

    private func arm(_ s: DatagramSocket) throws(SyscallError) {
        _ = try syscallValue("io_uring recvmsg multishot") { CReactor_uring_recvmsg_multishot(ring, s.fd, s.uringID, UInt64(s.uringID)) }
        _ = try syscallValue("io_uring_submit") { CReactor_uring_submit(ring) }
    }

    /// Reaps completions in batches; delivers per socket; recycles; re-arms ended multishots.
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
                    let v = s.uringViews + s.pending
                    let r = CReactor_uring_parse_recvmsg(ring, s.uringID, bid, c.res, v)
                    if r == 0 {
                        s.pending += 1
                    } else {
                        CReactor_uring_recycle(ring, s.uringID, bid)
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
            CReactor_uring_recycle_commit(ring, id)
            do { try arm(s) } catch { reactor.report(error) }
        }
    }

    private func flush(_ s: DatagramSocket) {
        let n = s.pending
        s.pending = 0
        // Buffer ids are saved first: the handler may rewrite the views (move `data`, reuse them to send).
        let views = s.uringViews
        for i in 0..<n { s.uringBufIDs[i] = views[i].buf_id }
        s.deliver(n)
        for i in 0..<n { CReactor_uring_recycle(ring, s.uringID, s.uringBufIDs[i]) }
        CReactor_uring_recycle_commit(ring, s.uringID)
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

