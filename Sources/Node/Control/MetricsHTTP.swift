// The smallest HTTP/1.1 a Prometheus scraper needs: `GET /metrics` answered
// with the exposition text (PrometheusText), anything else with a short error,
// every answer `Connection: close`. Pure bytes in, bytes out; the engine's
// MetricsServer owns the sockets, the limits and the timeouts.
//
//   client                                   whalescaled
//     | -- GET /metrics HTTP/1.1\r\n ------>  |  request head, at most `maxHeadBytes`,
//     |    Host: ...\r\n\r\n                  |  ended by an empty line; a body is never read
//     | <-- HTTP/1.1 200 OK\r\n ------------  |
//     |     Content-Type: text/plain; version=0.0.4; charset=utf-8
//     |     Content-Length: N, Connection: close, then the text; close
public enum MetricsHTTP {
    /// Longest request head accepted; a scraper sends a few hundred bytes.
    public static let maxHeadBytes = 8192

    public enum Head: Equatable, Sendable {
        /// No empty line yet: read more.
        case needMore
        /// The head is complete: its request line.
        case complete(method: String, target: String, version: String)
        /// Not a request line this server understands.
        case malformed
        /// Over `maxHeadBytes` without an end.
        case tooLarge
    }

    /// Looks at what a connection sent so far.
    public static func parse(_ bytes: [UInt8]) -> Head {
        guard let end = headEnd(bytes) else { return bytes.count > maxHeadBytes ? .tooLarge : .needMore }
        guard end <= maxHeadBytes else { return .tooLarge }
        let lineEnd = bytes.firstIndex(of: 0x0A) ?? end
        var line = Array(bytes[0..<lineEnd])
        if line.last == 0x0D { line.removeLast() }
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return .malformed }
        let parts = line.split(separator: 0x20, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty, parts[2].hasPrefix("HTTP/1.") else { return .malformed }
        return .complete(method: parts[0], target: parts[1], version: parts[2])
    }

    /// The index just past the empty line that ends the head ("\r\n\r\n" or "\n\n"), if there is one.
    static func headEnd(_ b: [UInt8]) -> Int? {
        var i = 0
        while i < b.count {
            if b[i] == 0x0A {
                if i + 1 < b.count, b[i + 1] == 0x0A { return i + 2 }
                if i + 2 < b.count, b[i + 1] == 0x0D, b[i + 2] == 0x0A { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    /// The answer to a head; `body` is asked only for `GET /metrics`. The status code is for counting.
    public static func respond(to head: Head, body: () -> String) -> (status: Int, bytes: [UInt8]) {
        switch head {
        case .needMore, .malformed:
            return (400, response(400, "Bad Request", "bad request: send GET /metrics\n"))
        case .tooLarge:
            return (431, response(431, "Request Header Fields Too Large", "request head over \(maxHeadBytes) bytes\n"))
        case .complete(let method, let target, _):
            let path = target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? target
            guard path == "/metrics" else { return (404, response(404, "Not Found", "not found: the metrics are at /metrics\n")) }
            guard method == "GET" || method == "HEAD" else {
                return (405, response(405, "Method Not Allowed", "only GET /metrics\n", extra: "Allow: GET, HEAD\r\n"))
            }
            let text = body()
            var r = response(200, "OK", text, type: "text/plain; version=0.0.4; charset=utf-8")
            if method == "HEAD" { r = Array(r.prefix(r.count - text.utf8.count)) }
            return (200, r)
        }
    }

    static func response(_ code: Int, _ reason: String, _ body: String, type: String = "text/plain; charset=utf-8",
                         extra: String = "") -> [UInt8] {
        let b = Array(body.utf8)
        let head = "HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(b.count)\r\n\(extra)Connection: close\r\n\r\n"
        return Array(head.utf8) + b
    }
}
