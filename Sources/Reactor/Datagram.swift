// Batched UDP through the reactor.
//
// The batch contract (STYLE 9), stated once:
//   - A `DatagramSocket` receives into buffers of a `PacketPool` (PacketPool.swift;
//     one per reactor, shared by its sockets, or the socket's own): for each
//     recvmmsg it takes up to `batchSize` free buffers (mmsg backend), or it keeps
//     a provided-buffer ring the kernel fills posted with up to
//     `UringEngine.buffersPerSocket` of them (uring backend, buffer id = pool
//     index). Each received datagram is a `CReactor_dgram` view: data/len/cap,
//     peer, local address, GRO segment size.
//   - Views are lent to `DatagramHandler.received` for the duration of the call.
//     The handler may rewrite bytes in place (decrypt, re-encrypt), move `data`
//     back into the header room before it (≥ `headroom` bytes, for headers
//     written in place), and send the very same views back out with `send`.
//   - A datagram the handler wants after the call it keeps: `keep(i)` gives the
//     handle of view i's pool buffer with one more reference, and the handler
//     releases it to `pool` when done (a GRO run kept twice is released twice).
//     When the handler returns, the socket drops its own reference to every
//     buffer of the batch: those not kept are free again, and the next receive
//     posts buffers from the free list. Nothing is copied, nothing allocated.
//   - Pool exhaustion is counted, never fatal: a receive posts as many buffers
//     as are free (`poolShort`); with none free, the mmsg backend reads the
//     waiting datagrams into one discard buffer and drops them (`poolDrops`),
//     and the uring backend, its ring empty, waits for the socket to become
//     readable, then posts what was freed meanwhile or drops likewise.
//   - `send` takes a span of views and makes one syscall per batch (sendmmsg,
//     or one io_uring_enter); a datagram the kernel refuses outright (EMSGSIZE,
//     EHOSTUNREACH, ...) is dropped and counted, never retried; EAGAIN stops the
//     batch: `send` returns how many it consumed and the handler's `writable`
//     is called when the socket drains.
//   - Offloads. A received view may be a UDP GRO run (`segment` > 0 and
//     `len` > `segment`: equal datagrams of `segment` bytes back to back, the
//     last one possibly shorter), only on a socket opened with `gro`; its
//     buffer must then be large (64 KiB). A view to send may be a UDP GSO run
//     in the same shape (at most `maxGSOSegments` datagrams, at most
//     `maxGSOBytes` in all): one sendmsg carries them all. If the kernel
//     refuses GSO (no UDP_SEGMENT, or EIO from a device without checksum
//     offload), `gso` turns off for good with one `onNotice` line, and runs
//     are split into single datagrams here, before the syscall: callers may
//     always build runs.
import CReactor

public protocol DatagramHandler: AnyObject {
    /// A batch arrived on `socket`. Views are valid only during this call.
    func received(_ batch: DatagramBatch, on socket: DatagramSocket)
    /// The socket can take more after a `send` that returned short.
    func writable(_ socket: DatagramSocket)
}

extension DatagramHandler {
    public func writable(_ socket: DatagramSocket) {}
}

/// A span of datagram views (received, or to send).
public struct DatagramBatch {
    public let base: UnsafeMutablePointer<CReactor_dgram>
    public let count: Int
    public init(base: UnsafeMutablePointer<CReactor_dgram>, count: Int) {
        self.base = base
        self.count = count
    }
    @inline(__always) public subscript(i: Int) -> UnsafeMutablePointer<CReactor_dgram> { base + i }
}

public struct DatagramCounters: Sendable {
    public var received = 0
    public var sent = 0
    public var batchesIn = 0
    public var batchesOut = 0
    public var truncated = 0
    /// Datagrams that arrived as part of a GRO run (counted once per run in `received`).
    public var groRuns = 0
    /// Datagram views sent as GSO runs.
    public var gsoRuns = 0
    public var sendRefused = 0
    public var sendWouldBlock = 0
    public var receiveErrors = 0
    public var noBuffers = 0
    /// Receives that posted fewer buffers than they wanted: the pool ran low (handlers kept many).
    public var poolShort = 0
    /// Datagrams read and dropped because the pool had no free buffer at all.
    public var poolDrops = 0
}

/// Socket options for a Whalescale UDP socket, applied by `UDPSocket.open`.
public struct UDPOptions: Sendable {
    public var reusePort = false
    public var packetInfo = true
    public var gro = false
    /// 8 MiB: about 9 ms of a 7 Gbit/s stream, what a receiving reactor may lose to the
    /// scheduler. 4 MiB overflowed in perf/throughput's 4-stream test once the sender got
    /// faster (session 14: 252 socket drops, 1,134 TCP retransmits; none at 8 or 16 MiB).
    public var receiveBuffer = 8 << 20
    public var sendBuffer = 4 << 20
    public init() {}
}

public enum UDPSocket {
    /// A non-blocking UDP socket bound to `bind`. For an IPv6 wildcard bind the
    /// socket is dual-stack. Options the kernel refuses degrade once: they are
    /// listed in `notes` (for one log line each) and the socket works without them.
    public static func open(bind: CReactor_endpoint, options: UDPOptions = UDPOptions()) throws(SyscallError) -> (fd: Int32, notes: [String]) {
        var ep = bind
        let family: Int32 = ep.family == 10 ? 10 : 2
        let fd = try syscallValue("socket(UDP)") { CReactor_udp_socket(family, 0) }
        var notes: [String] = []
        func soft(_ what: String, _ r: Int32) {
            if r < 0 { notes.append("\(what) refused (\(Errno.name(-r))); continuing without it") }
        }
        if options.reusePort { soft("SO_REUSEPORT", CReactor_set_reuseport(fd, 1)) }
        if options.packetInfo { soft("IP_PKTINFO", CReactor_set_pktinfo(fd, family, 1)) }
        if options.gro { soft("UDP_GRO", CReactor_set_udp_gro(fd, 1)) }
        // Root gets large buffers past net.core.rmem_max (read-only in a child netns) with *FORCE.
        if CReactor_set_rcvbuf_force(fd, Int32(options.receiveBuffer)) < 0 { soft("SO_RCVBUF", CReactor_set_rcvbuf(fd, Int32(options.receiveBuffer))) }
        if CReactor_set_sndbuf_force(fd, Int32(options.sendBuffer)) < 0 { soft("SO_SNDBUF", CReactor_set_sndbuf(fd, Int32(options.sendBuffer))) }
        do throws(SyscallError) {
            _ = try syscallValue("bind") { CReactor_bind(fd, &ep) }
        } catch {
            _ = CReactor_close(fd)
            throw error
        }
        return (fd, notes)
    }

    public static func localEndpoint(_ fd: Int32) -> CReactor_endpoint {
        var ep = CReactor_endpoint()
        _ = CReactor_local_endpoint(fd, &ep)
        return ep
    }
}

public final class DatagramSocket {
    public let fd: Int32
    public let backend: DatagramBackend
    public let batchSize: Int
    /// Bytes per receive buffer: the pool's (at least what `init` asked for).
    public let bufferSize: Int
    public let headroom: Int
    /// Where received datagrams land (PacketPool.swift): `keep` hands out its handles.
    public let pool: PacketPool
    public internal(set) var counters = DatagramCounters()
    public var isOpen: Bool { registration != nil }
    /// UDP GSO usable: probed at init (UDP_SEGMENT), off for good once the kernel refuses a run.
    public internal(set) var gso: Bool
    /// UDP_GRO is on for this socket (receive views may be runs).
    public var gro: Bool { CReactor_get_udp_gro(fd) == 1 }
    /// One line when an offload is switched off (the owner logs it).
    public var onNotice: (String) -> Void = { _ in }
    /// About how many bytes one receive batch may bring in (mmsg backend). With
    /// GRO, runs fill 64 KiB buffers: fewer of them are asked for, so a batch
    /// stays in cache while it is decrypted; small datagrams get the whole
    /// batch. (Measured, perf/results/datapath.md: 16 buffers beat 64 by 10% CPU
    /// per GB with GRO runs; 64 beat 16 by 12% when the path delivers no runs.)
    public var receiveBudget = 1 << 20
    /// Moving average of bytes per received view.
    private var averageView = 2048
    /// The most datagrams one GSO run may carry (the kernel's UDP_MAX_SEGMENTS is 64 or more).
    public static let maxGSOSegments = 64
    /// The most bytes one GSO run may carry: one IPv6 UDP payload (65535 - 40 - 8).
    public static let maxGSOBytes = 65487

    let reactor: Reactor
    /// Held strongly until `close()`, which lets go of it (and so breaks any cycle through it).
    var handler: DatagramHandler?
    private var registration: Registration?
    private var wantWritable = false

    private let views: UnsafeMutablePointer<CReactor_dgram>
    /// The pool buffer under each view of the batch being received or delivered (the socket's reference).
    let slotHandles: UnsafeMutablePointer<PacketHandle>
    /// Views lent to the handler right now (`keep(i)` takes i below it); 0 outside `received`.
    private var delivering = 0
    /// Where datagrams are read and dropped while the pool has no free buffer.
    private let discard: UnsafeMutableRawPointer
    private var recvScratch: OpaquePointer?
    private var sendScratch: OpaquePointer?
    private static let sendChunk = 256
    /// Runs split into single datagrams once GSO is off, and whose run each came from.
    private let split: UnsafeMutablePointer<CReactor_dgram>
    private let splitOwner: UnsafeMutablePointer<Int>

    // uring backend
    var uringID: UInt16 = 0
    var pending = 0  // views filled from completions, not yet delivered
    /// Pool buffers posted in the provided-buffer ring now (the socket holds their references).
    var ringPosted = 0
    /// The ring is empty and the multishot receive ended: waiting for the socket to become readable.
    var starved = false

    /// Registers `fd` (a non-blocking UDP socket; the reactor owns it from now on and closes it).
    /// `pool`: the reactor's packet pool, used on its thread only (buffers of at least
    /// `bufferSize` bytes); nil makes the socket its own, `ownPoolBuffers(...)` large.
    public init(reactor: Reactor, fd: Int32, backend: DatagramBackend = .default, batchSize: Int = 64,
                bufferSize: Int = 2048, headroom: Int = 64, pool: PacketPool? = nil,
                handler: DatagramHandler) throws(SyscallError) {
        precondition(batchSize > 0 && batchSize <= 1024 && bufferSize > headroom)
        let pool = pool ?? PacketPool(count: Self.ownPoolBuffers(backend: backend, batchSize: batchSize), bufferSize: bufferSize)
        precondition(pool.bufferSize >= bufferSize, "the pool's buffers are smaller than the socket's")
        precondition(backend == .mmsg || pool.count <= 1 << 16, "io_uring names a buffer by a 16-bit id")
        self.reactor = reactor
        self.fd = fd
        self.backend = backend
        self.batchSize = batchSize
        self.bufferSize = pool.bufferSize
        self.headroom = headroom
        self.pool = pool
        self.handler = handler
        views = .allocate(capacity: max(batchSize, Self.sendChunk))
        views.initialize(repeating: CReactor_dgram(), count: max(batchSize, Self.sendChunk))
        slotHandles = .allocate(capacity: batchSize)
        slotHandles.initialize(repeating: PacketHandle(index: 0, generation: 0), count: batchSize)
        discard = .allocate(byteCount: pool.bufferSize, alignment: 64)
        recvScratch = CReactor_mmsg_create(Int32(batchSize))
        sendScratch = CReactor_mmsg_create(Int32(Self.sendChunk))
        split = .allocate(capacity: Self.sendChunk)
        split.initialize(repeating: CReactor_dgram(), count: Self.sendChunk)
        splitOwner = .allocate(capacity: Self.sendChunk)
        // UDP_SEGMENT with size 0 sets no default and only tells whether the kernel has GSO (4.18+).
        gso = CReactor_set_udp_segment(fd, 0) == 0
        switch backend {
        case .mmsg:
            registration = try reactor.register(fd: fd, events: .readable) { [unowned self] ev in self.ready(ev) }
        case .uring:
            registration = try reactor.register(fd: fd, events: []) { [unowned self] ev in self.ready(ev) }
            do throws(SyscallError) {
                try reactor.uringEngine().attach(self)
            } catch {
                reactor.deregister(registration!)
                registration = nil
                throw error
            }
        }
    }

    /// The size of a socket's own pool: twice the buffers one receive posts, so
    /// that a batch's worth may be kept while the next batch arrives.
    public static func ownPoolBuffers(backend: DatagramBackend, batchSize: Int) -> Int {
        2 * (backend == .mmsg ? batchSize : UringEngine.buffersPerSocket)
    }

    deinit {
        close()
        views.deallocate()
        slotHandles.deallocate()
        discard.deallocate()
        split.deallocate()
        splitOwner.deallocate()
        if let s = recvScratch { CReactor_mmsg_destroy(s) }
        if let s = sendScratch { CReactor_mmsg_destroy(s) }
    }

    /// Deregisters and closes the socket. Idempotent.
    public func close() {
        handler = nil
        guard let reg = registration else { return }
        if backend == .uring { reactor.uring?.detach(self) }
        reactor.deregister(reg)
        registration = nil
        _ = CReactor_close(fd)
    }

    public var localEndpoint: CReactor_endpoint { UDPSocket.localEndpoint(fd) }

    private func ready(_ ev: Events) {
        if ev.contains(.writable) && wantWritable {
            wantWritable = false
            updateInterest()
            handler?.writable(self)
        }
        guard ev.contains(.readable) || ev.contains(.error) else { return }
        if backend == .mmsg { drain() } else if starved { reactor.uring?.unstarve(self) }
    }

    func updateInterest() {
        guard let reg = registration else { return }
        var ev: Events = backend == .mmsg || starved ? .readable : []
        if wantWritable { ev.insert(.writable) }
        do { try reactor.modify(reg, events: ev) } catch { fail(error) }
    }

    /// mmsg backend: receive batches until the socket is empty (bounded, for fairness).
    private func drain() {
        guard let recvScratch else { return }
        for _ in 0..<16 {
            let want = min(batchSize, max(4, receiveBudget / max(averageView, 1)))
            let posted = post(want)
            guard posted > 0 else {
                // No free buffer at all: read what waits and drop it (counted), rather than leave
                // the socket readable (the loop would spin) or let the kernel drop uncounted.
                if !discardWaiting(want) { return }
                continue
            }
            let n: Int
            do throws(SyscallError) {
                switch try syscall("recvmmsg", { CReactor_recvmmsg(fd, recvScratch, views, Int32(posted)) }) {
                case .done(let k): n = k
                case .wouldBlock:
                    unpost(posted)
                    return
                }
            } catch {
                unpost(posted)
                if error.isBug { fail(error); return }
                // ICMP errors surfacing as ECONNREFUSED, ENOBUFS, ...: counted, the socket keeps working.
                counters.receiveErrors += 1
                reactor.report(error)
                continue
            }
            if n > 0 {
                var bytes = 0
                for i in 0..<n { bytes += Int(min(views[i].len, views[i].cap)) }
                averageView = (averageView * 3 + bytes / n) / 4
            }
            deliver(n)
            unpost(posted)
            if n < posted || registration == nil { return }
        }
    }

    /// Takes up to `want` pool buffers for views[0..<k] (fewer when the pool runs low: counted). Returns k.
    @inline(__always)
    private func post(_ want: Int) -> Int {
        var k = 0
        while k < want, let h = pool.take() {
            slotHandles[k] = h
            views[k].data = (pool.base + Int(h.index) * bufferSize + headroom).assumingMemoryBound(to: UInt8.self)
            views[k].cap = UInt32(bufferSize - headroom)
            views[k].segment = 0
            k += 1
        }
        if k < want { counters.poolShort += 1 }
        return k
    }

    /// Drops the socket's references to the buffers of slots 0..<k (in reverse, so the
    /// next `post` takes the same buffers in the same order). What a handler kept stays held.
    @inline(__always)
    private func unpost(_ k: Int) {
        var i = k
        while i > 0 {
            i -= 1
            pool.release(slotHandles[i])
        }
    }

    /// Reads up to `want` waiting datagrams into the discard buffer and drops them (`poolDrops`).
    /// True when there may be more.
    func discardWaiting(_ want: Int) -> Bool {
        guard let recvScratch else { return false }
        for i in 0..<want {
            views[i].data = discard.assumingMemoryBound(to: UInt8.self)
            views[i].cap = UInt32(bufferSize)
            views[i].segment = 0
        }
        do throws(SyscallError) {
            switch try syscall("recvmmsg", { CReactor_recvmmsg(fd, recvScratch, views, Int32(want)) }) {
            case .done(let n):
                for i in 0..<n {
                    let seg = Int(views[i].segment), len = Int(views[i].len)
                    counters.poolDrops += seg > 0 && len > seg ? (len + seg - 1) / seg : 1
                }
                return n == want
            case .wouldBlock: return false
            }
        } catch {
            if error.isBug { fail(error); return false }
            counters.receiveErrors += 1
            reactor.report(error)
            return true
        }
    }

    /// Hands views[0..<n] to the handler, dropping truncated ones. `slotHandles[0..<n]`
    /// name their buffers; a dropped view's handle moves behind the delivered ones.
    func deliver(_ n0: Int) {
        var n = n0
        var i = 0
        while i < n {
            if views[i].len > views[i].cap {
                counters.truncated += 1
                views[i] = views[n - 1]
                let h = slotHandles[i]
                slotHandles[i] = slotHandles[n - 1]
                slotHandles[n - 1] = h
                n -= 1
            } else { i += 1 }
        }
        guard n > 0 else { return }
        for j in 0..<n where views[j].segment > 0 && views[j].len > UInt32(views[j].segment) { counters.groRuns += 1 }
        counters.received += n
        counters.batchesIn += 1
        delivering = n
        handler?.received(DatagramBatch(base: views, count: n), on: self)
        delivering = 0
    }

    /// Keeps datagram `i` of the batch being delivered past the batch: the handle of its
    /// pool buffer with one more reference, which the caller releases to `pool` when done.
    /// The bytes stay where the view says (`pool.offset(of:in:)` turns its `data` into
    /// an offset). Valid only inside `received`; nil outside it or for an index out of the batch.
    public func keep(_ i: Int) -> PacketHandle? {
        guard i >= 0 && i < delivering else { return nil }
        let h = slotHandles[i]
        return pool.retain(h) ? h : nil
    }

    /// The view array the uring engine fills (capacity `batchSize`), `slotHandles` beside it.
    var uringViews: UnsafeMutablePointer<CReactor_dgram> { views }

    /// Sends `batch`. Returns how many views were consumed (sent, or refused and
    /// counted). Fewer than `batch.count` means the socket is full: `writable` follows.
    @discardableResult
    public func send(_ batch: DatagramBatch) -> Int {
        guard registration != nil else { return 0 }
        guard gso else { return sendSplitting(batch.base, count: batch.count) }
        let r = sendViews(batch.base, count: batch.count)
        guard r.gsoRefused else { return r.done }
        // Degrade once, loudly: from now on runs are split before the syscall.
        gso = false
        onNotice("UDP GSO refused by the kernel (\(Errno.name(EIO_))); sending one datagram per syscall slot from now on")
        return r.done + sendSplitting(batch.base + r.done, count: batch.count - r.done)
    }

    /// Without GSO: every run becomes single datagrams (in `split`), sent in chunks.
    private func sendSplitting(_ base: UnsafeMutablePointer<CReactor_dgram>, count: Int) -> Int {
        var k = 0
        func flush() -> Int? {  // nil: all sent; else the first view not completely sent
            let sent = sendViews(split, count: k).done
            defer { k = 0 }
            return sent < k ? splitOwner[sent] : nil
        }
        for i in 0..<count {
            let v = base[i]
            let seg = Int(v.segment)
            guard seg > 0 && Int(v.len) > seg else {
                if k == Self.sendChunk, let stop = flush() { return stop }
                split[k] = v
                split[k].segment = 0
                splitOwner[k] = i
                k += 1
                continue
            }
            var off = 0
            while off < Int(v.len) {
                if k == Self.sendChunk, let stop = flush() { return stop }
                split[k] = v
                split[k].data = v.data + off
                split[k].len = UInt32(min(seg, Int(v.len) - off))
                split[k].segment = 0
                splitOwner[k] = i
                k += 1
                off += seg
            }
        }
        if k > 0, let stop = flush() { return stop }
        return count
    }

    /// One syscall per chunk of views, as they are. `gsoRefused`: stopped at a run the kernel refused with EIO.
    private func sendViews(_ base: UnsafeMutablePointer<CReactor_dgram>, count: Int) -> (done: Int, gsoRefused: Bool) {
        var done = 0
        while done < count {
            let chunk = min(count - done, Self.sendChunk)
            let r: Int32
            switch backend {
            case .mmsg: r = CReactor_sendmmsg(fd, sendScratch, base + done, Int32(chunk))
            case .uring: r = reactor.uring.map { CReactor_uring_sendmsg_batch($0.ring, fd, base + done, Int32(chunk)) } ?? -EBADF_
            }
            if r >= 0 {
                for j in 0..<Int(r) where base[done + j].segment > 0 && base[done + j].len > UInt32(base[done + j].segment) {
                    counters.gsoRuns += 1
                }
                done += Int(r)
                counters.sent += Int(r)
                counters.batchesOut += 1
                continue
            }
            switch -r {
            case EINTR_: continue
            case EAGAIN_:
                counters.sendWouldBlock += 1
                if !wantWritable {
                    wantWritable = true
                    updateInterest()
                }
                return (done, false)
            case EBADF_, EFAULT_:
                fail(SyscallError(call: backend == .mmsg ? "sendmmsg" : "io_uring sendmsg", errno: -r))
                return (done, false)
            case EIO_ where gso && base[done].segment > 0 && base[done].len > UInt32(base[done].segment):
                // UDP GSO needs checksum offload on the way out; this route's device has none.
                return (done, true)
            default:
                // The first datagram of the chunk was refused (EMSGSIZE, EHOSTUNREACH, EINVAL, ...).
                counters.sendRefused += 1
                reactor.report(SyscallError(call: backend == .mmsg ? "sendmmsg" : "io_uring sendmsg", errno: -r))
                done += 1
            }
        }
        return (done, false)
    }

    /// A bug-class error (EBADF: the fd was closed under us): drop the socket, report, keep the loop.
    func fail(_ e: SyscallError) {
        reactor.report(e)
        if let reg = registration {
            if backend == .uring { reactor.uring?.detach(self) }
            reactor.deregister(reg)
            registration = nil
        }
    }
}
