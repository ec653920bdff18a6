import Control
import Foundation
import Reactor

/// One request, one answer, over the UNIX socket (blocking; a 5 s limit each way).
enum ControlClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func request(_ req: ControlRequest, socket path: String) throws -> ControlResponse {
        let fd = UnixStream.connect(path: path)
        guard fd >= 0 else {
            let why = String(cString: strerror(-fd))
            if -fd == EACCES || -fd == EPERM {
                throw Failure(description: "cannot reach the daemon at \(path): \(why): the control socket is for the daemon's owner (and node.control_group) only")
            }
            throw Failure(description: "cannot reach the daemon at \(path): \(why) (is whalescaled running? try --socket)")
        }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let line = ControlCodec.encode(req)
        // A daemon that refuses us may close before reading: EPIPE, not a signal, and then read its reason.
        signal(SIGPIPE, SIG_IGN)
        let w = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let writeError = w == line.count ? nil : String(cString: strerror(errno))
        var answer: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if let writeError { throw Failure(description: "write to \(path) failed: \(writeError)") }
                throw Failure(description: "no answer from the daemon at \(path) within 5 s")
            }
            if n == 0 { break }
            answer += buf[0..<n]
            if answer.last == 0x0A { break }
            if answer.count > 64 << 20 { throw Failure(description: "answer too large") }
        }
        if answer.isEmpty, let writeError { throw Failure(description: "write to \(path) failed: \(writeError)") }
        do {
            return try ControlCodec.decodeResponse(answer)
        } catch {
            throw Failure(description: "unreadable answer from the daemon: \(error)")
        }
    }
}
