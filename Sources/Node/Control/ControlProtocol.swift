import Support
import Wire
import Crypto
import Protocol
import Foundation

// The control socket protocol (UNIX stream socket, owner-only; DESIGN §8):
//
//     wsctl                                   whalescaled
//       | -- {"verb":"status"}\n ------------->  |   one request line, at most 64 KiB
//       | <-- {"ok":true,"status":{...}}\n ----  |   one response line, then close
//       |     {"ok":false,"error":"..."}\n       |   (or this, for any bad request)
//
// One request per connection keeps the server trivial: no framing beyond the
// newline, no session, nothing to time out but the read. Everything here is
// pure (bytes in, bytes out); the engine owns the socket and uses
// `ControlLineReader` to collect the request and `ControlCodec` to answer it.
// A malformed request gets an error response, never a crash or a hang.

/// What a client can ask. Each verb is one case; a verb with arguments
/// carries them as associated values.
public enum ControlRequest: Sendable, Equatable {
    /// The node's state, answered with `ControlResponse.status`.
    case status
    /// One in-tunnel ping (ECHO_REQUEST) to a peer named by name, overlay
    /// address or public key; answered with `ControlResponse.echo` when the
    /// reply comes or `timeoutMs` passed (the connection waits, the daemon does not).
    case ping(peer: String, timeoutMs: Int)

    /// The `verb` string on the wire.
    public var verb: String {
        switch self {
        case .status: return "status"
        case .ping: return "ping"
        }
    }

    public static let allVerbs = ["status", "ping"]
    /// `ping`'s wait when the request names none, and its bounds (under the
    /// server's 5 s cut-off of a connection).
    public static let defaultPingTimeoutMs = 2000
    public static let pingTimeoutRange = 50...4000
    /// Longest peer query accepted (a name is at most 63 bytes, a key 44).
    public static let maxPeerQueryBytes = 256
}

/// The server's answer: `{"ok":true,"status":{...}}`, `{"ok":true,"echo":{...}}`
/// or `{"ok":false,"error":"..."}`.
public enum ControlResponse: Sendable, Equatable, Codable {
    case status(StatusReport)
    case echo(EchoReport)
    case error(String)

    enum CodingKeys: String, CodingKey {
        case ok, status, echo, error
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if try c.decode(Bool.self, forKey: .ok) {
            if c.contains(.echo) {
                self = .echo(try c.decode(EchoReport.self, forKey: .echo))
            } else {
                self = .status(try c.decode(StatusReport.self, forKey: .status))
            }
        } else {
            self = .error(try c.decode(String.self, forKey: .error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .status(let s):
            try c.encode(true, forKey: .ok)
            try c.encode(s, forKey: .status)
        case .echo(let e):
            try c.encode(true, forKey: .ok)
            try c.encode(e, forKey: .echo)
        case .error(let e):
            try c.encode(false, forKey: .ok)
            try c.encode(e, forKey: .error)
        }
    }
}

/// Why a request line was refused. `description` is the text the client sees
/// in `{"ok":false,"error":...}`.
public enum ControlRequestError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case tooLong(limit: Int)
    case nestedTooDeeply(limit: Int)
    case notJSON
    case notAnObject
    case missingVerb
    case verbNotAString
    case unknownVerb(String)
    /// A verb's argument is missing or out of range (the sentence says which).
    case badArgument(String)
    /// The peer credentials of the connection are not the owner's (or the control group's).
    case notPermitted(uid: UInt32, gid: UInt32)

    public var description: String {
        switch self {
        case .empty: return "empty request: send one JSON object such as {\"verb\":\"status\"} and a newline"
        case .tooLong(let n): return "request line longer than \(n) bytes"
        case .nestedTooDeeply(let n): return "request nested deeper than \(n) levels"
        case .notJSON: return "request is not valid JSON"
        case .notAnObject: return "request must be a JSON object such as {\"verb\":\"status\"}"
        case .missingVerb: return "request has no \"verb\""
        case .verbNotAString: return "\"verb\" must be a string"
        case .unknownVerb(let v):
            // Bounded: the verb came from the client and is echoed back.
            return "unknown verb \(String(reflecting: String(v.prefix(64)))) (known: \(ControlRequest.allVerbs.joined(separator: ", ")))"
        case .badArgument(let s): return s
        case .notPermitted(let uid, let gid):
            return "permission denied: uid \(uid) (gid \(gid)) may not use this control socket: it is for the daemon's owner and the configured control_group only"
        }
    }

    public var response: ControlResponse { .error(description) }
}

/// Encodes and decodes control lines. Pure functions, no socket.
public enum ControlCodec {
    /// Longest request line accepted, without its newline. A real request is
    /// a few dozen bytes; the limit bounds what a client can make us buffer.
    public static let maxRequestBytes = 64 * 1024
    /// Requests are flat; a deep nest would only cost stack in the JSON parser.
    static let maxRequestDepth = 32

    // MARK: Requests

    /// `{"verb":"status"}` (arguments beside the verb, keys sorted) and a newline.
    public static func encode(_ request: ControlRequest) -> [UInt8] {
        var object: [String: Any] = ["verb": request.verb]
        switch request {
        case .status: break
        case .ping(let peer, let timeoutMs):
            object["peer"] = peer
            object["timeout_ms"] = timeoutMs
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return Array("{\"verb\":\"\(request.verb)\"}\n".utf8)
        }
        return Array(data) + [0x0A]
    }

    /// Parses one request line (with or without its "\n" or "\r\n").
    /// Keys other than "verb" are ignored, so a newer wsctl may add optional
    /// arguments without breaking an older daemon.
    public static func decodeRequest(_ line: some Collection<UInt8>) -> Result<ControlRequest, ControlRequestError> {
        var bytes = Array(line)
        if bytes.last == 0x0A { bytes.removeLast() }
        if bytes.last == 0x0D { bytes.removeLast() }
        guard bytes.count <= maxRequestBytes else { return .failure(.tooLong(limit: maxRequestBytes)) }
        guard bytes.contains(where: { !isJSONWhitespace($0) }) else { return .failure(.empty) }
        guard nestingDepth(bytes) <= maxRequestDepth else { return .failure(.nestedTooDeeply(limit: maxRequestDepth)) }

        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            return .failure(.notJSON)
        }
        guard let object = json as? [String: Any] else { return .failure(.notAnObject) }
        guard let verbValue = object["verb"] else { return .failure(.missingVerb) }
        guard let verb = verbValue as? String else { return .failure(.verbNotAString) }
        switch verb {
        case "status": return .success(.status)
        case "ping":
            guard let peer = object["peer"] as? String, !peer.isEmpty else {
                return .failure(.badArgument("ping needs \"peer\": a peer's name, overlay address or public key"))
            }
            guard peer.utf8.count <= ControlRequest.maxPeerQueryBytes else {
                return .failure(.badArgument("\"peer\" is longer than \(ControlRequest.maxPeerQueryBytes) bytes"))
            }
            var timeout = ControlRequest.defaultPingTimeoutMs
            if let t = object["timeout_ms"] {
                // A fraction is refused (exact integers only); true/false bridge to 1/0, out of range.
                guard let n = t as? NSNumber, let v = Int(exactly: n.doubleValue),
                      ControlRequest.pingTimeoutRange.contains(v) else {
                    return .failure(.badArgument("\"timeout_ms\" must be an integer in \(ControlRequest.pingTimeoutRange.lowerBound)...\(ControlRequest.pingTimeoutRange.upperBound)"))
                }
                timeout = v
            }
            return .success(.ping(peer: peer, timeoutMs: timeout))
        default: return .failure(.unknownVerb(verb))
        }
    }

    /// Server side in one call: a request line in, the response line out.
    public static func respond(
        to line: some Collection<UInt8>, handler: (ControlRequest) -> ControlResponse
    ) -> [UInt8] {
        switch decodeRequest(line) {
        case .success(let request): return encode(handler(request))
        case .failure(let e): return encode(e.response)
        }
    }

    // MARK: Responses

    /// One line of compact JSON with sorted keys, and a newline. JSONEncoder
    /// escapes control characters inside strings, so the line never breaks early.
    public static func encode(_ response: ControlResponse) -> [UInt8] {
        guard let data = try? lineEncoder.encode(response) else {
            // Cannot happen with the types above (no floats that JSON lacks);
            // still an answer rather than a dropped connection.
            return Array("{\"error\":\"internal error: cannot encode the response\",\"ok\":false}\n".utf8)
        }
        return Array(data) + [0x0A]
    }

    /// Parses the server's line (client side).
    public static func decodeResponse(_ line: some Collection<UInt8>) throws(ControlResponseError) -> ControlResponse {
        var bytes = Array(line)
        if bytes.last == 0x0A { bytes.removeLast() }
        do {
            return try JSONDecoder().decode(ControlResponse.self, from: Data(bytes))
        } catch {
            throw ControlResponseError(message: "daemon sent an unreadable response: \(error)")
        }
    }

    /// `wsctl status --json`: the report alone, indented, keys sorted.
    public static func prettyJSON(_ status: some Encodable) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        guard let data = try? e.encode(status) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Helpers

    private static var lineEncoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    private static func isJSONWhitespace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    /// Deepest bracket nesting outside strings, counted before parsing.
    private static func nestingDepth(_ bytes: [UInt8]) -> Int {
        var depth = 0, deepest = 0, inString = false, escaped = false
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
                continue
            }
            switch b {
            case 0x22: inString = true
            case 0x5B, 0x7B: depth += 1; deepest = max(deepest, depth)
            case 0x5D, 0x7D: depth -= 1
            default: break
            }
        }
        return deepest
    }
}

/// The client could not read the daemon's answer.
public struct ControlResponseError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Collects a request line from the bytes a connection delivers, in whatever
/// pieces they come, and stops buffering at the limit: a client that never
/// sends a newline costs at most `maxRequestBytes`.
public struct ControlLineReader: Sendable {
    public enum Outcome: Equatable, Sendable {
        /// No newline yet: read more.
        case needMore
        /// The request line, without its newline. Bytes after it are ignored.
        case line([UInt8])
        /// Over the limit: answer `ControlRequestError.tooLong` and close.
        case tooLong
    }

    private var buffer: [UInt8] = []
    private var done = false

    public init() {}

    public mutating func append(_ bytes: some Collection<UInt8>) -> Outcome {
        guard !done else { return .needMore }
        for b in bytes {
            if b == 0x0A {
                done = true
                return .line(buffer)
            }
            // +1 leaves room for the "\r" of a "\r\n" line at the limit.
            guard buffer.count < ControlCodec.maxRequestBytes + 1 else {
                done = true
                return .tooLong
            }
            buffer.append(b)
        }
        return .needMore
    }

    /// The peer closed its write side: what was sent is the request, newline or not.
    public mutating func finish() -> Outcome {
        guard !done else { return .needMore }
        done = true
        return .line(buffer)
    }
}
