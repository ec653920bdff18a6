// One listening stream socket served on a reactor, for the request/answer
// servers of the engine (the control socket, ControlServer.swift; the HTTP
// metrics endpoint, MetricsServer.swift). What both need and must get right
// the same way:
//   - accept without blocking; at most `maxClients` connections at once (more
//     are closed at accept and reported through `tooMany`),
//   - every connection cut off `timeoutNs` after accept, whatever it does
//     (reported through `timedOut`),
//   - one answer per connection: written without blocking (the rest when the
//     socket is writable again), then the connection is closed,
//   - a connection dropped is never touched again, even when its fd number
//     has been reused by a newer one.
// What a request is and what to answer is the owner's: it reads a readable
// connection in `readable` and calls `answer` or `drop`. `State` is the
// owner's per-connection state.
import Reactor

final class StreamServer<State> {
    final class Connection {
        let fd: Int32
        var state: State
        fileprivate var registration: Registration?
        fileprivate var timer: TimerID?
        /// The answer not yet written (the socket was full).
        fileprivate var pending: [UInt8] = []
        fileprivate init(fd: Int32, state: State) {
            self.fd = fd
            self.state = state
        }
        /// An answer is being written: the owner reads no more.
        var answering: Bool { !pending.isEmpty }
    }

    private let reactor: Reactor
    private let fd: Int32
    private var registration: Registration?
    private var connections: [Int32: Connection] = [:]
    private let maxClients: Int
    private let timeoutNs: UInt64
    private let makeState: (Int32) -> State
    /// Set before the first connection: the owner's handlers.
    var accepted: (Connection) -> Void = { _ in }
    var readable: (Connection) -> Void = { _ in }
    var tooMany: () -> Void = {}
    var timedOut: (Connection) -> Void = { _ in }

    /// Serves the listening socket `fd` (non-blocking) on `reactor`; closes it in `close`.
    init(listening fd: Int32, reactor: Reactor, maxClients: Int, timeoutNs: UInt64,
         state: @escaping (Int32) -> State) throws {
        self.reactor = reactor
        self.fd = fd
        self.maxClients = maxClients
        self.timeoutNs = timeoutNs
        makeState = state
        registration = try reactor.register(fd: fd, events: .readable) { [unowned self] _ in self.accept() }
    }

    var count: Int { connections.count }

    /// Whether `c` is still served (not dropped, its fd not another's now).
    func isLive(_ c: Connection) -> Bool { connections[c.fd] === c }

    func close() {
        for (_, c) in connections { drop(c) }
        if let r = registration { reactor.deregister(r) }
        registration = nil
        FileDescriptor.close(fd)
    }

    /// Writes `bytes` to `c` (now, or as the socket drains), then closes it.
    func answer(_ c: Connection, _ bytes: [UInt8]) {
        guard isLive(c) else { return }
        c.pending = bytes
        writePending(c)
    }

    func drop(_ c: Connection) {
        guard isLive(c) else { return }  // already dropped (its fd may be another connection's now)
        connections[c.fd] = nil
        if let r = c.registration { reactor.deregister(r) }
        if let t = c.timer { reactor.cancelTimer(t) }
        FileDescriptor.close(c.fd)
    }

    private func accept() {
        while true {
            let c = UnixStream.accept(fd)
            if c < 0 { return }  // EAGAIN, or a failed accept: nothing to do until the next event
            if connections.count >= maxClients {
                tooMany()
                FileDescriptor.close(c)
                continue
            }
            let conn = Connection(fd: c, state: makeState(c))
            connections[c] = conn
            do {
                conn.registration = try reactor.register(fd: c, events: .readable) { [unowned self, unowned conn] _ in
                    if conn.answering { self.writePending(conn) } else { self.readable(conn) }
                }
            } catch {
                drop(conn)
                continue
            }
            conn.timer = reactor.addTimer(after: timeoutNs) { [unowned self, weak conn] in
                guard let conn, self.isLive(conn) else { return }
                self.timedOut(conn)
                self.drop(conn)
            }
            accepted(conn)
        }
    }

    private func writePending(_ c: Connection) {
        while !c.pending.isEmpty {
            let n = c.pending.withUnsafeBytes { FileDescriptor.write(c.fd, $0) }
            if n == -StreamServerErrno.again {
                if let r = c.registration { try? reactor.modify(r, events: .writable) }
                return
            }
            if n <= 0 { break }
            c.pending.removeFirst(Int(n))
        }
        drop(c)
    }
}

enum StreamServerErrno {
    /// EAGAIN on Linux: what `FileDescriptor.read`/`write` return negated when nothing can move now.
    static let again: Int = 11
}
