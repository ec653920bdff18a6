// The reactor: a single-threaded event loop that owns every fd and timer of one core.
//
//        other threads ──post──▶ Mailbox (SPSC) ──eventfd──┐
//                                                          ▼
//   timers (heap) ──▶ one timerfd ──▶ epoll_wait ◀── registered fds (UDP, TUN, UNIX, ...)
//                                        │               ▲
//                                        │               └── io_uring rx ring fd (datagram backend)
//                                        ▼
//                          dispatch by (slot, generation) ──▶ handlers
//
// Registrations carry a generation in the high 32 bits of epoll's user data,
// so an event still queued for an fd that was deregistered (and whose number the
// kernel has since handed out again) is recognised as stale and dropped.
// Nothing here knows any of Whalescale's protocols.
import Atomics
import CReactor

public struct Events: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readable = Events(rawValue: UInt32(CReactor_EPOLLIN))
    public static let writable = Events(rawValue: UInt32(CReactor_EPOLLOUT))
    public static let error = Events(rawValue: UInt32(CReactor_EPOLLERR))
    public static let hangup = Events(rawValue: UInt32(CReactor_EPOLLHUP))
}

public struct Registration: Hashable, Sendable {
    public let fd: Int32
    let slot: UInt32
    let generation: UInt32
    var userData: UInt64 { UInt64(generation) << 32 | UInt64(slot) }
}

/// How datagrams move: epoll readiness + recvmmsg/sendmmsg, or io_uring.
public enum DatagramBackend: String, Sendable, CaseIterable {
    case mmsg
    case uring

    /// The default, decided by measurement (perf/reactor-echo; README): recvmmsg/sendmmsg.
    /// io_uring is used only when asked for and supported.
    public static let `default`: DatagramBackend = .mmsg

    public static var uringSupported: Bool { CReactor_uring_supported() == 1 }
}

/// Counters a reactor keeps about itself (exposed for status and tests).
public struct ReactorCounters: Sendable {
    public var staleEvents = 0
    public var wakeups = 0
    public var timersFired = 0
    public var ioErrors = 0
}

public final class Reactor {
    public typealias Handler = (Events) -> Void

    private struct Slot {
        var fd: Int32 = -1
        var generation: UInt32 = 0
        var handler: Handler?
    }

    let epfd: Int32
    private let wakeFD: Int32
    private let timerFD: Int32
    private var slots: [Slot] = []
    private var freeSlots: [UInt32] = []
    private var timers = TimerQueue()
    private var armedDeadline: UInt64 = 0
    private var mailboxes: [Mailbox] = []
    private let stopRequested = ManagedAtomic<Bool>(false)
    private var events: UnsafeMutablePointer<CReactor_event>
    private static let maxEvents: Int32 = 128
    private var wakeRegistration: Registration?
    private var timerRegistration: Registration?
    var uring: UringEngine?

    public private(set) var counters = ReactorCounters()
    /// Called with every I/O error the loop handled instead of crashing (call name and errno).
    public var onError: (SyscallError) -> Void = { _ in }

    public init() throws(SyscallError) {
        epfd = try syscallValue("epoll_create1") { CReactor_epoll_create() }
        wakeFD = try syscallValue("eventfd") { CReactor_eventfd() }
        timerFD = try syscallValue("timerfd_create") { CReactor_timerfd() }
        events = .allocate(capacity: Int(Self.maxEvents))
        let wfd = wakeFD, tfd = timerFD
        wakeRegistration = try register(fd: wfd, events: .readable) { [unowned self] _ in self.drainMailboxes() }
        timerRegistration = try register(fd: tfd, events: .readable) { [unowned self] _ in
            var n: UInt64 = 0
            _ = CReactor_timerfd_read(tfd, &n)
            self.armedDeadline = 0
        }
    }

    deinit {
        uring = nil
        _ = CReactor_close(timerFD)
        _ = CReactor_close(wakeFD)
        _ = CReactor_close(epfd)
        events.deallocate()
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    @inline(__always) public static func now() -> UInt64 { CReactor_monotonic_ns() }

    // MARK: Registrations

    public func register(fd: Int32, events: Events, handler: @escaping Handler) throws(SyscallError) -> Registration {
        let slot: UInt32
        if let s = freeSlots.popLast() {
            slot = s
        } else {
            slot = UInt32(slots.count)
            slots.append(Slot())
        }
        slots[Int(slot)].generation &+= 1
        slots[Int(slot)].fd = fd
        slots[Int(slot)].handler = handler
        let reg = Registration(fd: fd, slot: slot, generation: slots[Int(slot)].generation)
        do throws(SyscallError) {
            _ = try syscallValue("epoll_ctl(ADD)") {
                CReactor_epoll_ctl(epfd, Int32(CReactor_EPOLL_CTL_ADD), fd, events.rawValue, reg.userData)
            }
        } catch {
            release(slot)
            throw error
        }
        return reg
    }

    public func modify(_ reg: Registration, events: Events) throws(SyscallError) {
        guard isLive(reg) else { return }
        _ = try syscallValue("epoll_ctl(MOD)") {
            CReactor_epoll_ctl(epfd, Int32(CReactor_EPOLL_CTL_MOD), reg.fd, events.rawValue, reg.userData)
        }
    }

    /// Removes the registration. Safe to call twice, and after the fd was closed
    /// (the kernel then already dropped it; EBADF/ENOENT are expected and ignored).
    public func deregister(_ reg: Registration) {
        guard isLive(reg) else { return }
        _ = CReactor_epoll_ctl(epfd, Int32(CReactor_EPOLL_CTL_DEL), reg.fd, 0, 0)
        release(reg.slot)
    }

    public func isLive(_ reg: Registration) -> Bool {
        Int(reg.slot) < slots.count && slots[Int(reg.slot)].generation == reg.generation && slots[Int(reg.slot)].handler != nil
    }

    private func release(_ slot: UInt32) {
        slots[Int(slot)].handler = nil
        slots[Int(slot)].fd = -1
        slots[Int(slot)].generation &+= 1  // events still queued for the old generation are now stale
        freeSlots.append(slot)
    }

    // MARK: Timers

    /// Runs `action` on this reactor at `deadline` (CLOCK_MONOTONIC ns) or soon after.
    @discardableResult
    public func addTimer(at deadline: UInt64, _ action: @escaping () -> Void) -> TimerID {
        let id = timers.add(deadline: deadline, action)
        rearmIfEarlier(deadline)
        return id
    }

    @discardableResult
    public func addTimer(after ns: UInt64, _ action: @escaping () -> Void) -> TimerID {
        addTimer(at: Self.now() &+ ns, action)
    }

    public func cancelTimer(_ id: TimerID) { timers.cancel(id) }

    public var pendingTimers: Int { timers.count }

    /// The timerfd is re-armed only for an earlier deadline (STYLE 13).
    private func rearmIfEarlier(_ deadline: UInt64) {
        if armedDeadline == 0 || deadline < armedDeadline {
            armedDeadline = max(deadline, 1)
            _ = CReactor_timerfd_arm(timerFD, armedDeadline)
        }
    }

    private func runDueTimers() {
        let now = Self.now()
        while let action = timers.popDue(now: now) {
            counters.timersFired += 1
            action()
        }
        if let next = timers.nextDeadline() {
            if armedDeadline == 0 || next < armedDeadline || armedDeadline <= now {
                armedDeadline = next
                _ = CReactor_timerfd_arm(timerFD, next)
            }
        }
    }

    // MARK: Cross-thread work

    /// A new single-producer channel into this reactor. Give one to each thread that posts.
    /// Call on the reactor's thread (before handing it out).
    public func makeMailbox(capacity: Int = 1024) -> Mailbox {
        let m = Mailbox(capacity: capacity, wakeFD: wakeFD)
        mailboxes.append(m)
        return m
    }

    private func drainMailboxes() {
        var n: UInt64 = 0
        _ = CReactor_eventfd_read(wakeFD, &n)
        counters.wakeups += 1
        for m in mailboxes {
            while let job = m.queue.pop() { job() }
        }
    }

    /// A handle any thread may use to stop this reactor.
    public var stopHandle: StopHandle { StopHandle(flag: stopRequested, wakeFD: wakeFD) }

    /// Stops the loop after the current iteration (from the reactor's own thread).
    public func stop() { stopRequested.store(true, ordering: .releasing) }

    // MARK: The loop

    /// Runs until `stop()` (or a StopHandle) is called.
    public func run() {
        stopRequested.store(false, ordering: .releasing)
        while !stopRequested.load(ordering: .acquiring) {
            runOnce(timeoutMs: -1)
        }
        // Jobs posted before the stop still run: a mailbox never silently loses work.
        drainMailboxes()
    }

    /// One epoll_wait and the dispatch of what it returned, then due timers.
    public func runOnce(timeoutMs: Int32) {
        let n: Int
        do throws(SyscallError) {
            switch try syscall("epoll_wait", { CReactor_epoll_wait(epfd, events, Self.maxEvents, timeoutMs) }) {
            case .done(let k): n = k
            case .wouldBlock: n = 0
            }
        } catch {
            report(error)
            return
        }
        for i in 0..<n {
            let ev = events[i]
            let slot = Int(UInt32(truncatingIfNeeded: ev.data))
            let gen = UInt32(truncatingIfNeeded: ev.data >> 32)
            guard slot < slots.count, slots[slot].generation == gen, let h = slots[slot].handler else {
                counters.staleEvents += 1
                continue
            }
            h(Events(rawValue: ev.events))
        }
        runDueTimers()
    }

    func report(_ e: SyscallError) {
        counters.ioErrors += 1
        onError(e)
    }
}

/// Stops a reactor from any thread.
public struct StopHandle: Sendable {
    let flag: ManagedAtomic<Bool>
    let wakeFD: Int32
    public func stop() {
        flag.store(true, ordering: .releasing)
        _ = CReactor_eventfd_write(wakeFD, 1)
    }
}
