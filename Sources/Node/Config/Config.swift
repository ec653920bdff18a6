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
///     uplinks = ["wlan0", "wwan0"]      # default: every interface with a route to the outside
///     cipher = "auto"                   # default "auto": AES-256-GCM when both ends have AES-NI; or "chacha20poly1305"
///     checksum_offload = true           # default true: inner checksums left partial between Whalescale peers
///     mtu = 1420                        # default: none; a cap on the tunnel MTU (the minimum over active paths)
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
    /// `uplinks`: the interfaces this node's traffic leaves through, in the
    /// order given (an uplink's index is its place here); nil: every interface
    /// that has a route to the outside, found by the engine at start.
    public var uplinks: [String]?
    /// At most as many uplinks as a session has multipath slots (`MultipathConstants.maxPaths`).
    public static let maxUplinks = 8
    /// `mtu`: the tunnel interface's MTU at most this (a cap); the daemon sets
    /// the minimum over the paths data goes on, and this value while there is
    /// none. Nil: no cap, and the default (1404) while no path exists.
    public var mtu: Int?
    /// IPv6's minimum link MTU (RFC 8200 §5) ... a 64 KiB IP packet.
    public static let minMTU = 1280
    public static let maxMTU = 65535
    /// `cipher`: `.auto` offers and accepts AES-256-GCM (when this CPU has AES-NI) in
    /// Whalescale's handshake; `.chacha20poly1305` never does. ChaCha20-Poly1305 is the fallback.
    public var cipher: CipherSetting = .auto
    /// `checksum_offload`: offer and accept DATA header flags, so that inner TCP/UDP
    /// checksums are left partial between Whalescale peers (docs/wire.md "Header flags";
    /// only where the TUN has offloads). False: every checksum is computed and verified.
    public var checksumOffload = true
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
