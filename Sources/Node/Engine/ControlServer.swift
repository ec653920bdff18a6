// The control socket: a UNIX stream socket, owner-only (0600, in a 0755
// directory), one request line per connection (Control/ControlProtocol.swift).
// Each connection is read through the reactor without blocking; a client that
// stalls is cut off after 5 s, one that sends too much gets an error answer.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Foundation
import Reactor

final class ControlServer {
    let path: String
    private let reactor: Reactor
    private let fd: Int32
    private var registration: Registration?
    private let status: () -> StatusReport
    private var clients: [Int32: Client] = [:]
    static let clientTimeoutNs: UInt64 = 5_000_000_000
    static let maxClients = 32

    final class Client {
        let fd: Int32
        var reader = ControlLineReader()
        var registration: Registration?
        var timer: TimerID?
        var pending: [UInt8] = []
        init(fd: Int32) { self.fd = fd }
    }

    init(path: String, reactor: Reactor, status: @escaping () -> StatusReport) throws {
        self.path = path
        self.reactor = reactor
        self.status = status
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        }
        fd = try UnixStream.listen(path: path, mode: 0o600)
        registration = try reactor.register(fd: fd, events: .readable) { [unowned self] _ in self.accept() }
    }

    func close() {
        for (_, c) in clients { drop(c) }
        if let r = registration { reactor.deregister(r) }
        registration = nil
        FileDescriptor.close(fd)
        unlink(path)
    }

    private func accept() {
        while true {
            let c = UnixStream.accept(fd)
            if c < 0 { return }  // EAGAIN, or a failed accept: nothing to do until the next event
            if clients.count >= Self.maxClients {
                FileDescriptor.close(c)
                continue
            }
            let client = Client(fd: c)
            clients[c] = client
            do {
                client.registration = try reactor.register(fd: c, events: .readable) { [unowned self, unowned client] ev in
                    self.ready(client, ev)
                }
            } catch {
                drop(client)
                continue
            }
            client.timer = reactor.addTimer(after: Self.clientTimeoutNs) { [unowned self, weak client] in
                if let client { self.drop(client) }
            }
        }
    }

    private func ready(_ c: Client, _ ev: Events) {
        if !c.pending.isEmpty {
            writePending(c)
            return
        }
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { FileDescriptor.read(c.fd, into: UnsafeMutableRawBufferPointer(rebasing: $0.prefix(4096))) }
            if n == -EAGAIN_ { return }
            let outcome: ControlLineReader.Outcome
            if n <= 0 {
                outcome = c.reader.finish()
            } else {
                outcome = c.reader.append(buf[0..<Int(n)])
            }
            switch outcome {
            case .needMore:
                if n <= 0 { drop(c); return }
                continue
            case .line(let line):
                answer(c, ControlCodec.respond(to: line) { [unowned self] req in
                    switch req {
                    case .status: return .status(self.status())
                    }
                })
                return
            case .tooLong:
                answer(c, ControlCodec.encode(ControlRequestError.tooLong(limit: ControlCodec.maxRequestBytes).response))
                return
            }
        }
    }

    private func answer(_ c: Client, _ bytes: [UInt8]) {
        c.pending = bytes
        writePending(c)
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
        guard clients.removeValue(forKey: c.fd) != nil else { return }
        if let r = c.registration { reactor.deregister(r) }
        if let t = c.timer { reactor.cancelTimer(t) }
        FileDescriptor.close(c.fd)
    }
}

private let EAGAIN_: Int32 = 11
