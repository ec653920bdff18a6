import Support
import Wire
import Crypto
import Glibc
import TOMLKit

// The parser's core: the entry point, the typed access to TOML values, the
// value rules and the error texts. The sections ([node], [[peer]], [gossip],
// [metrics]) are in ConfigSections.swift.

// MARK: - Parser

struct ConfigParser {
    static let rootKeys = ["node", "peer", "gossip", "metrics"]
    static let nodeKeys = ["private_key_file", "private_key", "interface", "address", "listen_port", "anchor", "relay_rate_mbit", "reactors", "state_dir", "control_socket", "control_group", "port_mapping", "lan_discovery", "uplinks", "cipher", "checksum_offload", "mtu"]
    static let metricsKeys = ["listen"]
    static let peerKeys = ["name", "public_key", "address", "endpoint", "anchor", "persistent_keepalive", "wireguard",
                           "preshared_key_file"]
    static let gossipKeys = ["anti_entropy_s"]
    /// sun_path is 108 bytes with the terminating NUL.
    static let maxSocketPathBytes = 107
    static let maxNameBytes = 63

    let text: String
    let path: String
    let lines: SourceLines
    var warnings: [String] = []

    init(text: String, path: String) {
        self.text = text
        self.path = path
        lines = SourceLines(text)
    }

    mutating func run() throws(ConfigError) -> Config {
        // TOMLKit hands the text to C++ as a C string: a NUL would end the document early, silently.
        if let nul = text.utf8.firstIndex(of: 0) {
            let line = 1 + text.utf8[..<nul].lazy.filter { $0 == 0x0A }.count
            throw ConfigError(path: path, line: line, field: "", message: "contains a NUL byte")
        }
        if let line = lines.badHeaderLine {
            throw ConfigError(path: path, line: line, field: "", message: "TOML syntax error: a table header must start with a key")
        }
        if let line = lines.braceInArrayLine {
            throw ConfigError(path: path, line: line, field: "", message: "TOML syntax error: '}' inside an array, where a value or ']' is expected")
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigError(
                path: path, line: e.source.begin.line, column: e.source.begin.column, field: "",
                message: "TOML syntax error: \(e.description)")
        } catch {
            throw ConfigError(path: path, line: nil, field: "", message: "TOML syntax error: \(error)")
        }
        try checkKeys(root, allowed: ConfigParser.rootKeys, in: "")
        var node = try parseNode(root)
        node.configPath = path
        node.privateKeyLine = lines.line(of: node.privateKey.isInline ? "node.private_key" : "node.private_key_file")
        let peers = try parsePeers(root, node: node)
        warnAboutAnchors(node: node, peers: peers)
        var config = Config(node: node, peers: peers, warnings: warnings)
        config.gossip = try parseGossip(root)
        config.metrics = try parseMetrics(root)
        config.source = lines
        return config
    }

    // MARK: Warnings

    /// DESIGN §5 and the seed's rule 2.1: anchors are load-bearing, so a
    /// mesh with none or one, or an anchor nobody can find, is worth a line.
    mutating func warnAboutAnchors(node: NodeConfig, peers: [PeerConfig]) {
        let anchors = peers.indices.filter { peers[$0].anchor }
        if !peers.isEmpty && anchors.isEmpty && !node.anchor {
            warn("peer", "no peer is an anchor: nodes behind NAT will find each other only through static endpoints")
        } else if anchors.count == 1 && !node.anchor {
            warn("peer[\(anchors[0])].anchor", "only one anchor: when it is down, roaming nodes cannot rejoin; add a second on another network")
        }
        for k in anchors where peers[k].endpoint == nil {
            warn("peer[\(k)]", "anchor \(quoted(peers[k].name)) has no endpoint: without a static endpoint it is not treated as an anchor (no relay, rendezvous or anchor probes through it)")
        }
        if !node.anchor && node.relayRateMbit != NodeConfig.defaultRelayRateMbit {
            warn("node.relay_rate_mbit", "has an effect only on an anchor (anchor = true); this node relays for no one")
        }
        if node.anchor && node.listenPort == 0 {
            warn("node.listen_port", "an anchor with listen_port = 0 gets a new port at every start, breaking the endpoint peers have for it")
        }
    }

    // MARK: Typed access

    func string(_ t: TOMLTable, _ key: String, _ table: String) throws(ConfigError) -> String? {
        guard let v = t[key] else { return nil }
        guard v.type == .string, let s = v.string else { throw typeError("\(table).\(key)", expected: "a string", found: v) }
        return s
    }

    func int(_ t: TOMLTable, _ key: String, _ table: String) throws(ConfigError) -> Int? {
        guard let v = t[key] else { return nil }
        guard v.type == .int, let n = v.int else { throw typeError("\(table).\(key)", expected: "an integer", found: v) }
        return n
    }

    func bool(_ t: TOMLTable, _ key: String, _ table: String) throws(ConfigError) -> Bool? {
        guard let v = t[key] else { return nil }
        guard v.type == .bool, let b = v.bool else { throw typeError("\(table).\(key)", expected: "true or false", found: v) }
        return b
    }

    /// The first unknown key in document order, with a suggestion for a typo.
    func checkKeys(_ t: TOMLTable, allowed: [String], in table: String) throws(ConfigError) {
        let join = { (key: String) in table.isEmpty ? key : "\(table).\(key)" }
        let unknown = t.keys.filter { !allowed.contains($0) }
            .sorted { (lines.line(of: join($0)) ?? .max, $0) < (lines.line(of: join($1)) ?? .max, $1) }
        guard let key = unknown.first else { return }
        var message = "unknown key"
        if let guess = allowed.min(by: { editDistance(key, $0) < editDistance(key, $1) }), editDistance(key, guess) <= 2 {
            message += " (did you mean \(guess)?)"
        } else {
            message += " (\(table.isEmpty ? "top-level tables are" : "known keys are") \(allowed.joined(separator: ", ")))"
        }
        throw fail(join(key), message)
    }

    // MARK: Value rules

    func checkAbsolutePath(_ p: String, _ field: String) throws(ConfigError) {
        guard p.hasPrefix("/") else { throw fail(field, "\(quoted(p)) is not an absolute path") }
    }

    /// Linux dev_valid_name(): 1...15 bytes (IFNAMSIZ with its NUL), not "." or
    /// "..", no '/', ':' or whitespace. Printable ASCII only, since the name
    /// also becomes a path under /run and /var/lib.
    static func interfaceProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "is empty" }
        if bytes.count > 15 { return "is longer than 15 bytes, the Linux limit (IFNAMSIZ)" }
        if name == "." || name == ".." { return "is not a valid interface name" }
        if bytes.contains(where: { $0 <= 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") }) {
            return "is not a valid interface name: use printable ASCII without '/', ':' or spaces"
        }
        return nil
    }

    /// Names show up in `wsctl status` columns and logs: keep them one word.
    static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > maxNameBytes { return "is longer than \(maxNameBytes) bytes" }
        let ok = name.unicodeScalars.allSatisfy { s in
            s.isASCII && (s.properties.isAlphabetic || ("0"..."9").contains(s) || s == "-" || s == "_" || s == ".")
        }
        return ok ? nil : "may contain only letters, digits, '-', '_' and '.'"
    }

    /// `Endpoint.init?(_:)` plus what it lets through that a config should not:
    /// port 0 (nothing to send to), "+80", and "010.0.0.1" (octal to inet_aton).
    static func endpoint(_ text: String) -> Endpoint? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        let port = text[text.index(after: colon)...]
        guard !port.isEmpty, port.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        if !text.hasPrefix("[") {
            let octets = text[..<colon].split(separator: ".", omittingEmptySubsequences: false)
            if octets.contains(where: { $0.count > 1 && $0.first == "0" }) { return nil }
        }
        guard let e = Endpoint(text), e.port != 0 else { return nil }
        return e
    }

    // MARK: Errors

    func fail(_ field: String, _ message: String) -> ConfigError {
        ConfigError(path: path, line: lines.line(of: field), field: field, message: message)
    }

    func typeError(_ field: String, expected: String, found v: TOMLValueConvertible) -> ConfigError {
        fail(field, "expected \(expected), found \(ConfigParser.describe(v.type))")
    }

    mutating func warn(_ field: String, _ message: String) {
        warnings.append(ConfigError(path: path, line: lines.line(of: field), field: field, message: "warning: \(message)").description)
    }

    /// Another field, for "already used by" messages: `peer[0] ("a", line 6)`,
    /// with the peer's name and the line of `line` when they are known.
    func ref(_ field: String, name: String? = nil, line: String) -> String {
        let notes = [name.map(quoted), lines.line(of: line).map { "line \($0)" }].compactMap { $0 }
        return notes.isEmpty ? field : "\(field) (\(notes.joined(separator: ", ")))"
    }

    func quoted(_ s: String) -> String {
        // Debug description escapes quotes and control characters.
        String(reflecting: s)
    }

    static func describe(_ t: TOMLType) -> String {
        switch t {
        case .table: return "a table"
        case .array: return "an array"
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a floating-point number"
        case .bool: return "a boolean"
        case .date: return "a date"
        case .time: return "a time"
        case .dateTime: return "a date-time"
        }
    }
}

extension NodeConfig.PrivateKey {
    var isInline: Bool {
        if case .inline = self { return true }
        return false
    }
}

/// Levenshtein distance, for "did you mean" on short key names.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}

extension String {
    /// Without leading and trailing spaces, tabs, CR and LF.
    func trimmingASCIIWhitespace() -> String {
        let ws: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C]
        let u = Array(utf8)
        guard let first = u.firstIndex(where: { !ws.contains($0) }), let last = u.lastIndex(where: { !ws.contains($0) }) else {
            return ""
        }
        return String(decoding: u[first...last], as: UTF8.self)
    }
}
