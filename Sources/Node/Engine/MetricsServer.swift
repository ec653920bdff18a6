// `[metrics] listen`: Prometheus' scrape endpoint, an adapter on reactor 0.
// One non-blocking TCP listener; each connection is read through the reactor
// until its request head is complete (Control/MetricsHTTP.swift), answered
// once, and closed. Bounds, so that no client can block or exhaust anything:
//   - at most `maxClients` connections at once (more are closed at accept),
//   - a head of at most 8 KiB (then 431),
//   - 5 s per connection from accept to the last byte written (then cut off),
// each counted (`metrics_http_…` in the status counters). The status is built
// on the reactor's thread, as for `wsctl status`.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Reactor

final class MetricsServer {
    private let reactor: Reactor
    private let fd: Int32
    private var registration: Registration?
    private let render: () -> String
    private var clients: [Int32: Client] = [:]
    static let clientTimeoutNs: UInt64 = 5_000_000_000
    static let maxClients = 16
    private(set) var counters: [String: UInt64] = [:]

    final class Client {
        let fd: Int32
        var received: [UInt8] = []
        var pending: [UInt8] = []
        var registration: Registration?
        var timer: TimerID?
        init(fd: Int32) { self.fd = fd }
    }

    init(address: SocketAddress, reactor: Reactor, render: @escaping () -> String) throws {
        self.reactor = reactor
        self.render = render
        fd = try TCPListener.listen(address)
        registration = try reactor.register(fd: fd, events: .readable) { [unowned self] _ in self.accept() }
    }

    func close() {
        for (_, c) in clients { drop(c) }
        if let r = registration { reactor.deregister(r) }
        registration = nil
        FileDescriptor.close(fd)
    }

    private func count(_ name: String) { counters[name, default: 0] &+= 1 }

    private func accept() {
        while true {
            let c = UnixStream.accept(fd)
            if c < 0 { return }
            if clients.count >= Self.maxClients {
                count("metrics_http_too_many_clients")
                FileDescriptor.close(c)
                continue
            }
            let client = Client(fd: c)
            clients[c] = client
            do {
                client.registration = try reactor.register(fd: c, events: .readable) { [unowned self, unowned client] _ in
                    self.ready(client)
                }
            } catch {
                drop(client)
                continue
            }
            client.timer = reactor.addTimer(after: Self.clientTimeoutNs) { [unowned self, weak client] in
                guard let client, self.clients[client.fd] === client else { return }
                self.count("metrics_http_timeouts")
                self.drop(client)
            }
        }
    }

    private func ready(_ c: Client) {
        if !c.pending.isEmpty {
            writePending(c)
            return
        }
        var buf = [UInt8](repeating: 0, count: 2048)
        while true {
            let n = buf.withUnsafeMutableBytes { FileDescriptor.read(c.fd, into: $0) }
            if n == -EAGAIN_ { return }
            if n <= 0 {  // closed (or reset) before a complete head
                count("metrics_http_incomplete")
                drop(c)
                return
            }
            c.received += buf[0..<Int(n)]
            let head = MetricsHTTP.parse(c.received)
            if head == .needMore { continue }
            let (status, bytes) = MetricsHTTP.respond(to: head, body: render)
            count(status == 200 ? "metrics_http_requests" : "metrics_http_bad_requests")
            c.received = []
            c.pending = bytes
            writePending(c)
            return
        }
    }

    private func writePending(_ c: Client) {
        while !c.pending.isEmpty {
            let n = c.pending.withUnsafeBytes { FileDescriptor.write(c.fd, $0) }
            if n == -EAGAIN_ {
                if let r = c.registration { try? reactor.modify(r, events: .writable) }
                return
            }
            if n <= 0 { break }
            c.pending.removeFirst(Int(n))
        }
        drop(c)
    }

    private func drop(_ c: Client) {
        guard clients[c.fd] === c else { return }  // already dropped (its fd may be another client's now)
        clients[c.fd] = nil
        if let r = c.registration { reactor.deregister(r) }
        if let t = c.timer { reactor.cancelTimer(t) }
        FileDescriptor.close(c.fd)
    }
}

private let EAGAIN_: Int32 = 11
