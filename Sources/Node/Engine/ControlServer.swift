// The control socket: a UNIX stream socket, owner-only (0600, in a 0755
// directory; 0660 and group-owned with `node.control_group`), one request line
// per connection (Control/ControlProtocol.swift). Each connection is read
// through the reactor without blocking; a client that stalls is cut off after
// 5 s, one that sends too much gets an error answer.
//
// Who may ask: the file mode is the first gate; on accept the server also asks
// the kernel who connected (SO_PEERCRED) and answers anyone but root, the
// daemon's own uid and members of the control group with a "permission denied"
// line instead of running the request (counted: `control_refused`), so a
// socket made world-writable by mistake still serves nobody else.
//
// A request may be answered later (`ping` waits for a reply from the network):
// the handler gets a `reply` closure; the connection stays registered, without
// blocking anything, until it is called or the 5 s cut-off drops the client (a
// late reply to a dropped client is discarded).
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
    private let server: StreamServer<Client>
    private let handler: (ControlRequest, @escaping (ControlResponse) -> Void) -> Void
    /// Who besides root and our own uid may connect (nil: nobody).
    private let group: gid_t?
    private let ownerUID = getuid()
    /// Connections refused by peer credentials, and ones cut off (too many, timeout).
    private(set) var counters: [String: UInt64] = [:]
    static let clientTimeoutNs: UInt64 = 5_000_000_000
    static let maxClients = 32

    /// A connection's state.
    struct Client {
        var reader = ControlLineReader()
        /// A request line came: what is read after it is ignored.
        var asked = false
        /// Not the owner nor in the control group: every request gets this.
        var refusal: ControlRequestError?
    }
    typealias Connection = StreamServer<Client>.Connection

    /// nil when the peer at `c` may use the socket; the refusal otherwise.
    private func permission(_ c: Int32) -> ControlRequestError? {
        guard let cred = UnixStream.peerCredentials(c) else { return .notPermitted(uid: UInt32.max, gid: UInt32.max) }
        if cred.uid == 0 || cred.uid == ownerUID { return nil }
        if let group, cred.gid == group || Self.supplementaryGroups(ofUID: cred.uid).contains(group) { return nil }
        return .notPermitted(uid: cred.uid, gid: cred.gid)
    }

    /// The groups a user belongs to by the group database (SO_PEERCRED gives the primary gid only).
    static func supplementaryGroups(ofUID uid: uid_t) -> [gid_t] {
        guard let pw = getpwuid(uid), let name = pw.pointee.pw_name else { return [] }
        var n: Int32 = 64
        var groups = [gid_t](repeating: 0, count: 64)
        guard getgrouplist(name, pw.pointee.pw_gid, &groups, &n) >= 0 else { return [] }
        return Array(groups.prefix(Int(n)))
    }

    init(path: String, reactor: Reactor, group: gid_t? = nil,
         handler: @escaping (ControlRequest, @escaping (ControlResponse) -> Void) -> Void) throws {
        self.path = path
        self.group = group
        self.handler = handler
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        }
        let fd = try UnixStream.listen(path: path, mode: group == nil ? 0o600 : 0o660)
        if let group, chown(path, getuid(), group) != 0 {
            let e = errno
            FileDescriptor.close(fd)
            unlink(path)
            throw DaemonError("control socket \(path): cannot give it to group \(group): \(String(cString: strerror(e)))")
        }
        server = try StreamServer(listening: fd, reactor: reactor, maxClients: Self.maxClients,
                                  timeoutNs: Self.clientTimeoutNs, state: { _ in Client() })
        server.tooMany = { [unowned self] in self.counters["control_too_many_clients", default: 0] &+= 1 }
        server.accepted = { [unowned self] c in
            // Answered once its request line is read (a client that is still
            // writing would otherwise get EPIPE instead of the reason), and
            // cut off by the timer like any other if it never sends one.
            if let refusal = self.permission(c.fd) {
                self.counters["control_refused", default: 0] &+= 1
                c.state.refusal = refusal
            }
        }
        server.readable = { [unowned self] c in self.read(c) }
    }

    func close() {
        server.close()
        unlink(path)
    }

    private func read(_ c: Connection) {
        if c.state.asked {
            // Waiting for a deferred answer: a close from the client drops it; other bytes are ignored.
            var sink = [UInt8](repeating: 0, count: 256)
            let n = sink.withUnsafeMutableBytes { FileDescriptor.read(c.fd, into: $0) }
            if n == 0 || (n < 0 && n != -StreamServerErrno.again) { server.drop(c) }
            return
        }
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { FileDescriptor.read(c.fd, into: $0) }
            if n == -StreamServerErrno.again { return }
            let outcome: ControlLineReader.Outcome
            if n <= 0 {
                outcome = c.state.reader.finish()
            } else {
                outcome = c.state.reader.append(buf[0..<Int(n)])
            }
            switch outcome {
            case .needMore:
                if n <= 0 { server.drop(c); return }
                continue
            case .line(let line):
                c.state.asked = true
                if let refusal = c.state.refusal {
                    server.answer(c, ControlCodec.encode(refusal.response))
                    return
                }
                switch ControlCodec.decodeRequest(line) {
                case .failure(let e):
                    server.answer(c, ControlCodec.encode(e.response))
                case .success(let request):
                    handler(request) { [weak self, weak c] response in
                        guard let self, let c, self.server.isLive(c) else { return }  // dropped meanwhile
                        self.server.answer(c, ControlCodec.encode(response))
                    }
                }
                return
            case .tooLong:
                server.answer(c, ControlCodec.encode((c.state.refusal ?? ControlRequestError.tooLong(limit: ControlCodec.maxRequestBytes)).response))
                return
            }
        }
    }
}
