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
    private let server: StreamServer<[UInt8]>
    private let render: () -> String
    static let clientTimeoutNs: UInt64 = 5_000_000_000
    static let maxClients = 16
    private(set) var counters: [String: UInt64] = [:]

    init(address: SocketAddress, reactor: Reactor, render: @escaping () -> String) throws {
        self.render = render
        let fd = try TCPListener.listen(address)
        // Each connection's state: the request head received so far.
        server = try StreamServer(listening: fd, reactor: reactor, maxClients: Self.maxClients,
                                  timeoutNs: Self.clientTimeoutNs, state: { _ in [] })
        server.readable = { [unowned self] c in self.read(c) }
        server.tooMany = { [unowned self] in self.count("metrics_http_too_many_clients") }
        server.timedOut = { [unowned self] _ in self.count("metrics_http_timeouts") }
    }

    func close() { server.close() }

    private func count(_ name: String) { counters[name, default: 0] &+= 1 }

    private func read(_ c: StreamServer<[UInt8]>.Connection) {
        var buf = [UInt8](repeating: 0, count: 2048)
        while true {
            let n = buf.withUnsafeMutableBytes { FileDescriptor.read(c.fd, into: $0) }
            if n == -StreamServerErrno.again { return }
            if n <= 0 {  // closed (or reset) before a complete head
                count("metrics_http_incomplete")
                server.drop(c)
                return
            }
            c.state += buf[0..<Int(n)]
            let head = MetricsHTTP.parse(c.state)
            if head == .needMore { continue }
            let (status, bytes) = MetricsHTTP.respond(to: head, body: render)
            count(status == 200 ? "metrics_http_requests" : "metrics_http_bad_requests")
            c.state = []
            server.answer(c, bytes)
            return
        }
    }
}
