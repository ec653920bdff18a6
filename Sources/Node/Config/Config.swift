import Support
import Wire
import Crypto
import Glibc
import TOMLKit

/// A node's validated configuration (DESIGN §8; reference: docs/config.md).
///
///     [node]
///     private_key_file = "/etc/whalescale/ws0.key"   # or private_key = "base64", exactly one
///     interface = "ws0"                 # default "ws0"
///     address = "10.77.0.1/24"          # required: this node's overlay address (or a list: ["10.77.0.1/24", "fd77::1/64"])
///     listen_port = 51820               # default 51820; 0 = any free port
///     anchor = false                    # default false
///     relay_rate_mbit = 10000           # anchors: relay budget per member, Mbit/s; 0 = no limit
///     reactors = 0                      # threads (one reactor each); default 0 = one per online core, at most 16
///     state_dir = "/var/lib/whalescale/ws0"        # default /var/lib/whalescale/<interface>
///     port_mapping = ["pcp", "natpmp", "upnp"]     # default; tried in this order at start; [] = off
///     lan_discovery = true              # default true: signed mDNS announcements on 224.0.0.251:5353
///     control_socket = "/run/whalescale/ws0.sock"  # default /run/whalescale/<interface>.sock
///
///     [[peer]]
///     name = "anchor-1"                 # required, unique
///     public_key = "base64"             # required, unique
///     address = "10.77.0.10/32"         # required: string or array; routes to this peer
///     endpoint = "203.0.113.10:51820"   # optional; IP:port or [IPv6]:port, no hostnames
///     anchor = true                     # default false
///     persistent_keepalive = 25         # optional, seconds 1...3600
///     wireguard = false                 # true: a stock WireGuard peer (public_key is its `wg pubkey`)
///     preshared_key_file = "/etc/whalescale/wg-peer.psk"   # wireguard peers only; owner-only file (wg genpsk)
///
/// Parsing is strict: a config the daemon would have to guess about is an
/// error, and every error names the field and its line (`ConfigError`).
/// Decisions a user could trip on:
/// - `node.address` is an interface address: host bits are its point
///   ("10.77.0.1/24"). A peer `address` is a route: host bits must be zero
///   ("10.77.0.5/24" is refused with the network it probably meant), because
///   cryptokey routing by a silently widened prefix sends traffic to the wrong peer.
/// - No two peer routes may overlap (not even two of one peer's), and none may
///   contain this node's own address: every overlay address has one owner.
/// - All paths are absolute: the daemon runs from systemd with cwd "/".
public struct Config: Sendable {
    public var node: NodeConfig
    public var peers: [PeerConfig]
    /// `[gossip]` (optional: every key has a default).
    public var gossip = GossipConfig()
    /// `[metrics]` (optional: no HTTP listener by default).
    public var metrics = MetricsConfig()
    /// Legal but probably unintended ("only one anchor"), formatted like
    /// errors ("config.toml:9: peer[0]: ..."); the daemon logs them at startup.
    public var warnings: [String]
    /// Lines of the parsed text, for checks made after parsing.
    var source: SourceLines?

    public init(node: NodeConfig, peers: [PeerConfig], warnings: [String] = []) {
        self.node = node
        self.peers = peers
        self.warnings = warnings
    }

    /// Parses and validates TOML text. `path` only names the file in errors.
    public static func parse(_ text: String, path: String = "config.toml") throws(ConfigError) -> Config {
        var parser = ConfigParser(text: text, path: path)
        return try parser.run()
    }

    /// Reads (at most 1 MiB of UTF-8) and parses the file at `path`.
    public static func load(path: String) throws(ConfigError) -> Config {
        let file: SmallFile
        switch SmallFile.load(path, limit: 1 << 20) {
        case .success(let f): file = f
        case .failure(let e): throw ConfigError(path: path, line: nil, field: "", message: "cannot read: \(e)")
        }
        guard let text = String(validating: file.bytes, as: UTF8.self) else {
            throw ConfigError(path: path, line: nil, field: "", message: "is not valid UTF-8")
        }
        let config = try parse(text, path: path)
        // Who may write the config decides who is a member: only its owner.
        if file.mode & 0o022 != 0 {
            throw ConfigError(path: path, line: nil, field: "",
                              message: "is writable by group or others (mode \(String(file.mode, radix: 8))), who could add a member or an anchor: refused; run chmod go-w on it")
        }
        // A secret others can read is refused, as ssh refuses such a key.
        if case .inline = config.node.privateKey, file.mode & 0o077 != 0 {
            throw ConfigError(
                path: path, line: config.node.privateKeyLine, field: "node.private_key",
                message: "a secret key in a file others can read (mode \(String(file.mode, radix: 8))): refused; chmod 600 it or use private_key_file")
        }
        return config
    }

    /// The preshared key's base64 text from `peers[index].presharedKeyFile` (nil: none set),
    /// trimmed. A file group or others may access is refused, as for the node's
    /// key. Errors never include the file's content.
    public func loadPresharedKey(peer index: Int) throws(ConfigError) -> String? {
        guard index >= 0, index < peers.count, let path = peers[index].presharedKeyFile else { return nil }
        let line = peers[index].line, configPath = node.configPath
        func fail(_ message: String) -> ConfigError {
            ConfigError(path: configPath, line: line, field: "peer[\(index)].preshared_key_file", message: message)
        }
        let file: SmallFile
        switch SmallFile.load(path, limit: 4096) {
        case .success(let f): file = f
        case .failure(let e): throw fail("cannot read \"\(path)\": \(e)")
        }
        let trimmed = String(decoding: file.bytes, as: UTF8.self).trimmingASCIIWhitespace()
        guard KeyText.isValid(trimmed) else {
            throw fail("\"\(path)\" does not hold a base64 key of 32 bytes (as printed by wg genpsk)")
        }
        if file.mode & 0o077 != 0 {
            throw fail("preshared key file \"\(path)\" is accessible by group or others (mode \(String(file.mode, radix: 8))): refused; run chmod 600 on it")
        }
        return trimmed
    }

    /// Peers with `anchor = true`, in file order.
    public var anchors: [PeerConfig] { peers.filter(\.anchor) }

    public func peer(named name: String) -> PeerConfig? { peers.first { $0.name == name } }

    /// Refuses a peer that carries this node's own public key. Config cannot
    /// derive the public key from the secret (that is Crypto's job), so the
    /// engine calls this once it has loaded the key.
    public func checkNoPeerHasKey(_ ownPublicKey: String) throws(ConfigError) {
        guard let k = peers.firstIndex(where: { $0.publicKey == ownPublicKey }) else { return }
        let field = "peer[\(k)].public_key"
        throw ConfigError(
            path: node.configPath, line: source?.line(of: field) ?? peers[k].line, field: field,
            message: "is this node's own public key")
    }

    /// `node.control_group` as a gid: a group of this host's group database,
    /// or a number; nil when the config names none. `parse` does not read the
    /// host's databases, so the daemon (at start) and `--check-config` call this.
    public func controlGroupID() throws(ConfigError) -> gid_t? {
        guard let name = node.controlGroup else { return nil }
        if let g = getgrnam(name) { return g.pointee.gr_gid }
        if let n = UInt32(name) { return n }
        throw ConfigError(path: node.configPath, line: source?.line(of: "node.control_group"), field: "node.control_group",
                          message: "no group \(String(reflecting: name)) on this host")
    }
}

/// A way to ask the gateway for a port mapping (`node.port_mapping`).
public enum PortMappingProtocol: String, Sendable, Equatable, CaseIterable {
    case pcp, natpmp, upnp
}

/// The `[node]` table.
public struct NodeConfig: Sendable, Equatable {
    /// Where the secret key comes from. Printing it never shows the key.
    public enum PrivateKey: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// `private_key = "..."`: base64 text, already checked.
        case inline(String)
        /// `private_key_file = "..."`: an absolute path, read by `loadPrivateKey`.
        case file(String)

        public var description: String {
            switch self {
            case .inline: return "inline(<redacted>)"
            case .file(let p): return "file(\(p))"
            }
        }
        public var debugDescription: String { description }
        public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .enum) }
    }

    public static let defaultInterface = "ws0"
    public static let defaultListenPort: UInt16 = 51820
    public static func defaultStateDir(interface: String) -> String { "/var/lib/whalescale/\(interface)" }
    public static func defaultControlSocket(interface: String) -> String { "/run/whalescale/\(interface).sock" }

    public var privateKey: PrivateKey
    public var interface: String
    /// This node's overlay addresses with their on-link prefixes, host bits
    /// kept; at least one (`address` is the first).
    public var addresses: [CIDR]
    public var address: CIDR { addresses[0] }
    /// 0 lets the kernel choose.
    public var listenPort: UInt16
    public var anchor: Bool
    /// An anchor's relay budget per sending member, Mbit/s (0: no limit).
    public var relayRateMbit: Int
    /// Reactors (threads) to run, each owning its share of the sessions; 0: one per online core (at most `maxAutoReactors`).
    public var reactors: Int = 0
    /// Port-mapping protocols to ask the default gateway with, in order (the first that maps wins); empty: none.
    public var portMapping: [PortMappingProtocol] = PortMappingProtocol.allCases
    /// LAN discovery: announce ourselves and listen for members on 224.0.0.251:5353 (mDNS).
    public var lanDiscovery = true
    public var stateDir: String
    public var controlSocket: String
    /// `control_group`: a group whose members may use the control socket too
    /// (it is then 0660 and owned by that group); nil: the owner only (0600).
    public var controlGroup: String?
    /// The same as `ConnectivityTimings.defaultRelayRateMbit` (Protocol's; ConfigTests keeps them equal).
    public static let defaultRelayRateMbit = 10_000
    public static let maxRelayRateMbit = 100_000
    public static let maxReactors = 64
    public static let maxAutoReactors = 16

    /// The reactors the daemon runs: `reactors`, or one per online core.
    public var reactorCount: Int {
        if reactors > 0 { return reactors }
        return max(1, min(Self.maxAutoReactors, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    }

    // Where the config came from, for the messages of `loadPrivateKey`.
    var configPath = "config.toml"
    var privateKeyLine: Int?

    public init(
        privateKey: PrivateKey, interface: String = NodeConfig.defaultInterface, address: CIDR,
        listenPort: UInt16 = NodeConfig.defaultListenPort, anchor: Bool = false,
        relayRateMbit: Int = NodeConfig.defaultRelayRateMbit, stateDir: String? = nil, controlSocket: String? = nil
    ) {
        self.privateKey = privateKey
        self.interface = interface
        addresses = [address]
        self.listenPort = listenPort
        self.anchor = anchor
        self.relayRateMbit = relayRateMbit
        self.stateDir = stateDir ?? NodeConfig.defaultStateDir(interface: interface)
        self.controlSocket = controlSocket ?? NodeConfig.defaultControlSocket(interface: interface)
    }

    /// The secret key as base64 text: the inline value, or the file's content
    /// with surrounding whitespace trimmed (`wsctl genkey > file` ends in a newline).
    ///
    /// A key file that group or others may access is refused, as ssh refuses
    /// such a key (`wg` only warns): the seed signs and decrypts for the whole
    /// network. Errors never include the file's content.
    public func loadPrivateKey(warning: (String) -> Void = { _ in }) throws(ConfigError) -> String {
        let keyPath: String
        switch privateKey {
        case .inline(let k): return k
        case .file(let p): keyPath = p
        }
        func fail(_ message: String) -> ConfigError {
            ConfigError(path: configPath, line: privateKeyLine, field: "node.private_key_file", message: message)
        }
        let file: SmallFile
        switch SmallFile.load(keyPath, limit: 4096) {
        case .success(let f): file = f
        case .failure(let e): throw fail("cannot read \"\(keyPath)\": \(e)")
        }
        let text = String(decoding: file.bytes, as: UTF8.self)
        let trimmed = text.trimmingASCIIWhitespace()
        guard KeyText.isValid(trimmed) else {
            throw fail("\"\(keyPath)\" does not hold a base64 key of 32 bytes (as printed by wsctl genkey)")
        }
        if file.mode & 0o077 != 0 {
            throw fail("key file \"\(keyPath)\" is accessible by group or others (mode \(String(file.mode, radix: 8))): refused; run chmod 600 on it")
        }
        return trimmed
    }
}

/// One `[[peer]]` table: a member of the network.
public struct PeerConfig: Sendable, Equatable {
    public var name: String
    /// Canonical base64 of 32 bytes, so equal keys are equal strings.
    public var publicKey: String
    /// Overlay routes to this peer: network addresses, non-overlapping, at least one.
    public var addresses: [CIDR]
    /// A static endpoint to try first (anchors have one).
    public var endpoint: Endpoint?
    public var anchor: Bool
    public var persistentKeepalive: Span?
    /// `wireguard = true`: a stock WireGuard peer; `publicKey` is its X25519 key.
    public var wireGuard: Bool
    /// `preshared_key_file`: an absolute path, read by `loadPresharedKey` (WireGuard peers only).
    public var presharedKeyFile: String?
    /// Line of the `[[peer]]` header, for messages about this peer; nil when built in code.
    public var line: Int?

    public init(
        name: String, publicKey: String, addresses: [CIDR], endpoint: Endpoint? = nil,
        anchor: Bool = false, persistentKeepalive: Span? = nil, wireGuard: Bool = false,
        presharedKeyFile: String? = nil, line: Int? = nil
    ) {
        self.name = name
        self.publicKey = publicKey
        self.addresses = addresses
        self.endpoint = endpoint
        self.anchor = anchor
        self.persistentKeepalive = persistentKeepalive
        self.wireGuard = wireGuard
        self.presharedKeyFile = presharedKeyFile
        self.line = line
    }

}

// MARK: - Parser

private struct ConfigParser {
    static let rootKeys = ["node", "peer", "gossip", "metrics"]
    static let nodeKeys = ["private_key_file", "private_key", "interface", "address", "listen_port", "anchor", "relay_rate_mbit", "reactors", "state_dir", "control_socket", "control_group", "port_mapping", "lan_discovery"]
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

    // MARK: [node]

    func parseNode(_ root: TOMLTable) throws(ConfigError) -> NodeConfig {
        guard let v = root["node"] else {
            throw ConfigError(path: path, line: nil, field: "node", message: "missing [node] table")
        }
        guard v.type == .table, let t = v.table else { throw typeError("node", expected: "a table ([node])", found: v) }
        try checkKeys(t, allowed: ConfigParser.nodeKeys, in: "node")

        let privateKey: NodeConfig.PrivateKey
        let inlineKey = try string(t, "private_key", "node")
        let keyFile = try string(t, "private_key_file", "node")
        switch (inlineKey, keyFile) {
        case (nil, nil):
            throw fail("node", "missing private_key_file (or private_key)")
        case (.some, .some):
            let later = (lines.line(of: "node.private_key") ?? 0) > (lines.line(of: "node.private_key_file") ?? 0)
            throw fail(later ? "node.private_key" : "node.private_key_file", "set only one of private_key and private_key_file")
        case (let k?, nil):
            guard KeyText.isValid(k) else {
                throw fail("node.private_key", "is not a base64 key of 32 bytes (as printed by wsctl genkey)")
            }
            privateKey = .inline(k)
        case (nil, let f?):
            try checkAbsolutePath(f, "node.private_key_file")
            privateKey = .file(f)
        }

        let interface = try string(t, "interface", "node") ?? NodeConfig.defaultInterface
        if let problem = ConfigParser.interfaceProblem(interface) {
            throw fail("node.interface", "\(quoted(interface)) \(problem)")
        }

        var addresses: [CIDR] = []
        for (text, field) in try addressTexts(t, table: "node",
                                              missing: "missing (this node's overlay address, e.g. \"10.77.0.1/24\")") {
            switch CIDR.parse(text) {
            case .failure(let e):
                throw fail(field, "\(quoted(text)) is not a valid CIDR: \(e)")
            case .success(let c):
                if addresses.contains(where: { $0.address == c.address && $0.family == c.family }) {
                    throw fail(field, "\(c.addressText) is already one of this node's addresses")
                }
                addresses.append(c)
            }
        }

        var listenPort = NodeConfig.defaultListenPort
        if let p = try int(t, "listen_port", "node") {
            guard let port = UInt16(exactly: p) else { throw fail("node.listen_port", "\(p) is not a port (0...65535)") }
            listenPort = port
        }
        let anchor = try bool(t, "anchor", "node") ?? false
        var relayRate = NodeConfig.defaultRelayRateMbit
        if let r = try int(t, "relay_rate_mbit", "node") {
            guard r >= 0 && r <= NodeConfig.maxRelayRateMbit else {
                throw fail("node.relay_rate_mbit", "\(r) is out of range (0...\(NodeConfig.maxRelayRateMbit) Mbit/s; 0 = no limit)")
            }
            relayRate = r
        }
        var reactors = 0
        if let r = try int(t, "reactors", "node") {
            guard r >= 0 && r <= NodeConfig.maxReactors else {
                throw fail("node.reactors", "\(r) is out of range (0...\(NodeConfig.maxReactors); 0 = one per online core)")
            }
            reactors = r
        }

        let stateDir = try string(t, "state_dir", "node") ?? NodeConfig.defaultStateDir(interface: interface)
        try checkAbsolutePath(stateDir, "node.state_dir")
        let controlSocket = try string(t, "control_socket", "node") ?? NodeConfig.defaultControlSocket(interface: interface)
        try checkAbsolutePath(controlSocket, "node.control_socket")
        if controlSocket.utf8.count > ConfigParser.maxSocketPathBytes {
            throw fail("node.control_socket", "is longer than \(ConfigParser.maxSocketPathBytes) bytes, the limit of a UNIX socket path")
        }
        var node = NodeConfig(
            privateKey: privateKey, interface: interface, address: addresses[0], listenPort: listenPort,
            anchor: anchor, relayRateMbit: relayRate, stateDir: stateDir, controlSocket: controlSocket)
        node.addresses = addresses
        node.reactors = reactors
        node.portMapping = try portMapping(t)
        node.lanDiscovery = try bool(t, "lan_discovery", "node") ?? true
        if let g = try string(t, "control_group", "node") {
            guard !g.isEmpty, g.utf8.count <= 32, g.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
                throw fail("node.control_group", "\(quoted(g)) is not a group name (letters, digits, '-', '_', '.'; at most 32) or a numeric gid")
            }
            node.controlGroup = g
        }
        return node
    }

    // MARK: [metrics]

    func parseMetrics(_ root: TOMLTable) throws(ConfigError) -> MetricsConfig {
        var m = MetricsConfig()
        guard let v = root["metrics"] else { return m }
        guard v.type == .table, let t = v.table else { throw typeError("metrics", expected: "a table ([metrics])", found: v) }
        try checkKeys(t, allowed: ConfigParser.metricsKeys, in: "metrics")
        if let text = try string(t, "listen", "metrics") {
            guard let ep = ConfigParser.endpoint(text) else {
                throw fail("metrics.listen", "\(quoted(text)) is not an address and port such as \"127.0.0.1:9586\" or \"[::1]:9586\"")
            }
            m.listen = ep
        }
        return m
    }

    /// `port_mapping`: an array of distinct protocol names; [] turns port mapping off.
    func portMapping(_ t: TOMLTable) throws(ConfigError) -> [PortMappingProtocol] {
        let field = "node.port_mapping"
        guard let v = t["port_mapping"] else { return PortMappingProtocol.allCases }
        guard v.type == .array, let array = v.array else {
            throw typeError(field, expected: "an array of \"pcp\", \"natpmp\", \"upnp\" ([] = off)", found: v)
        }
        var out: [PortMappingProtocol] = []
        for (n, element) in array.enumerated() {
            guard element.type == .string, let s = element.string else {
                throw typeError("\(field)[\(n)]", expected: "a string", found: element)
            }
            guard let p = PortMappingProtocol(rawValue: s) else {
                throw fail(field, "\(quoted(s)) is not a port-mapping protocol (pcp, natpmp, upnp)")
            }
            guard !out.contains(p) else { throw fail(field, "\(quoted(s)) is listed twice") }
            out.append(p)
        }
        return out
    }

    // MARK: [gossip]

    func parseGossip(_ root: TOMLTable) throws(ConfigError) -> GossipConfig {
        var g = GossipConfig()
        guard let v = root["gossip"] else { return g }
        guard v.type == .table, let t = v.table else { throw typeError("gossip", expected: "a table ([gossip])", found: v) }
        try checkKeys(t, allowed: ConfigParser.gossipKeys, in: "gossip")
        if let s = try int(t, "anti_entropy_s", "gossip") {
            guard s >= GossipConfig.minAntiEntropySeconds && s <= GossipConfig.maxAntiEntropySeconds else {
                throw fail("gossip.anti_entropy_s",
                           "\(s) is out of range (\(GossipConfig.minAntiEntropySeconds)...\(GossipConfig.maxAntiEntropySeconds) seconds)")
            }
            g.antiEntropySeconds = s
        }
        return g
    }

    // MARK: [[peer]]

    /// A peer route and where it was written, for overlap messages.
    struct Route {
        var cidr: CIDR
        var field: String
        var peer: Int
    }

    func parsePeers(_ root: TOMLTable, node: NodeConfig) throws(ConfigError) -> [PeerConfig] {
        guard let v = root["peer"] else { return [] }
        guard v.type == .array, let array = v.array else {
            throw typeError("peer", expected: "[[peer]] tables", found: v)
        }
        var peers: [PeerConfig] = []
        var routes: [Route] = []
        for (k, element) in array.enumerated() {
            let f = "peer[\(k)]"
            guard element.type == .table, let t = element.table else {
                throw typeError(f, expected: "a table", found: element)
            }
            let (peer, addressFields) = try parsePeer(t, field: f)

            // Uniqueness against the peers before it, so the error lands on the second one.
            if let j = peers.firstIndex(where: { $0.name == peer.name }) {
                throw fail("\(f).name", "\(quoted(peer.name)) is already the name of \(ref("peer[\(j)]", line: "peer[\(j)].name"))")
            }
            if let j = peers.firstIndex(where: { $0.publicKey == peer.publicKey }) {
                throw fail("\(f).public_key", "is already the key of \(ref("peer[\(j)]", name: peers[j].name, line: "peer[\(j)].public_key"))")
            }

            // Every overlay address has one owner: routes must not overlap each
            // other or cover this node (DESIGN §3: the config is the network).
            for (cidr, field) in zip(peer.addresses, addressFields) {
                if let own = node.addresses.first(where: { cidr.contains($0.address, family: $0.family) }) {
                    throw fail(field, "\(cidr) contains this node's own address \(own.addressText) (node.address\(lines.line(of: "node.address").map { ", line \($0)" } ?? ""))")
                }
                if let other = routes.first(where: { $0.cidr.overlaps(cidr) }) {
                    let owner = other.peer == k ? nil : peers[other.peer].name
                    throw fail(field, "\(cidr) overlaps \(other.cidr) of \(ref(other.field, name: owner, line: other.field))")
                }
                routes.append(Route(cidr: cidr, field: field, peer: k))
            }
            peers.append(peer)
        }
        // An endpoint is where the tunnel's own UDP goes: inside an address we
        // route into the tunnel, it would go through the tunnel itself (a loop).
        for (k, peer) in peers.enumerated() {
            guard let ep = peer.endpoint else { continue }
            let field = "peer[\(k)].endpoint"
            if let own = node.addresses.first(where: { $0.network.contains(ep.address, family: ep.family) }) {
                throw fail(field, "\(ep) is inside this node's overlay prefix \(own.network) (node.address): packets to it would go through the tunnel itself")
            }
            if let r = routes.first(where: { $0.cidr.contains(ep.address, family: ep.family) }) {
                throw fail(field, "\(ep) is inside \(r.cidr) of \(ref(r.field, name: peers[r.peer].name, line: r.field)), which is routed into the tunnel: packets to it would go through the tunnel itself")
            }
        }
        return peers
    }

    /// The peer, and the field name of each of its addresses for later messages.
    func parsePeer(_ t: TOMLTable, field f: String) throws(ConfigError) -> (PeerConfig, [String]) {
        try checkKeys(t, allowed: ConfigParser.peerKeys, in: f)

        guard let name = try string(t, "name", f) else { throw fail("\(f).name", "missing (every peer needs a unique name)") }
        if let problem = ConfigParser.nameProblem(name) { throw fail("\(f).name", "\(quoted(name)) \(problem)") }

        guard let key = try string(t, "public_key", f) else { throw fail("\(f).public_key", "missing") }
        guard KeyText.isValid(key) else {
            throw fail("\(f).public_key", "\(quoted(key)) is not a base64 key of 32 bytes")
        }

        var addresses: [CIDR] = []
        let written = try addressTexts(t, table: f, missing: "missing (the overlay addresses routed to this peer, e.g. \"10.77.0.10/32\")")
        for (text, field) in written {
            switch CIDR.parse(text) {
            case .failure(let e):
                throw fail(field, "\(quoted(text)) is not a valid CIDR: \(e)")
            case .success(let c) where !c.isNetworkAddress:
                throw fail(field, "\(quoted(text)) has host bits set: write \(c.network) for the network, or \(c.addressText)/\(CIDR.maxPrefixLength(c.family)) for one address")
            case .success(let c):
                addresses.append(c)
            }
        }

        var endpoint: Endpoint?
        if let text = try string(t, "endpoint", f) {
            guard let e = ConfigParser.endpoint(text) else {
                throw fail("\(f).endpoint", "\(quoted(text)) is not IPv4:port or [IPv6]:port with a port in 1...65535 (hostnames are not accepted)")
            }
            endpoint = e
        }

        let anchor = try bool(t, "anchor", f) ?? false

        var keepalive: Span?
        if let s = try int(t, "persistent_keepalive", f) {
            guard (1...3600).contains(s) else {
                throw fail("\(f).persistent_keepalive", "\(s) is not in 1...3600 seconds (leave it out to disable)")
            }
            keepalive = .seconds(UInt64(s))
        }
        let wireGuard = try bool(t, "wireguard", f) ?? false
        if wireGuard && anchor {
            throw fail("\(f).anchor", "a WireGuard peer cannot be an anchor (it speaks only WireGuard's protocol)")
        }
        let pskFile = try string(t, "preshared_key_file", f)
        if let pskFile {
            guard wireGuard else {
                throw fail("\(f).preshared_key_file", "is for WireGuard peers only (set wireguard = true)")
            }
            try checkAbsolutePath(pskFile, "\(f).preshared_key_file")
        }
        let peer = PeerConfig(
            name: name, publicKey: key, addresses: addresses, endpoint: endpoint, anchor: anchor,
            persistentKeepalive: keepalive, wireGuard: wireGuard, presharedKeyFile: pskFile, line: lines.line(of: f))
        return (peer, written.map(\.1))
    }

    /// `address = "a/n"` or `address = ["a/n", ...]` in table `f`, each with its field name.
    func addressTexts(_ t: TOMLTable, table f: String, missing: String) throws(ConfigError) -> [(String, String)] {
        let field = "\(f).address"
        guard let v = t["address"] else { throw fail(field, missing) }
        if v.type == .string, let s = v.string { return [(s, field)] }
        guard v.type == .array, let array = v.array else {
            throw typeError(field, expected: "a string or an array of strings", found: v)
        }
        if array.isEmpty { throw fail(field, "is empty: \(f == "node" ? "a node" : "a peer") needs at least one address") }
        var out: [(String, String)] = []
        for (n, element) in array.enumerated() {
            guard element.type == .string, let s = element.string else {
                throw typeError("\(field)[\(n)]", expected: "a string", found: element)
            }
            out.append((s, "\(field)[\(n)]"))
        }
        return out
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

private extension NodeConfig.PrivateKey {
    var isInline: Bool {
        if case .inline = self { return true }
        return false
    }
}

/// Levenshtein distance, for "did you mean" on short key names.
private func editDistance(_ a: String, _ b: String) -> Int {
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

private extension String {
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

/// `[metrics]`: the daemon's Prometheus endpoint (docs/wsctl.md, "metrics").
public struct MetricsConfig: Sendable, Equatable {
    /// `listen`: where to serve `GET /metrics` over HTTP/1.1; nil: not served.
    /// Anyone who can connect reads the node's peers and addresses: keep it on
    /// loopback or a management network.
    public var listen: Endpoint?
    public init(listen: Endpoint? = nil) { self.listen = listen }
}

/// `[gossip]`: how members spread their endpoint records (docs/gossip.md).
public struct GossipConfig: Sendable, Equatable {
    /// `anti_entropy_s`: seconds between two anti-entropy rounds (each jittered to
    /// 80–100% of it). Bounds how long a member that missed a push holds an old record.
    public var antiEntropySeconds = 300
    /// Below 10 s a summary per member per period costs more than it catches;
    /// above a day a missed record stays wrong for too long.
    public static let minAntiEntropySeconds = 10
    public static let maxAntiEntropySeconds = 86_400

    public init() {}
}
