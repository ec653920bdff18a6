import Support
import Wire
import Crypto
import Glibc
import TOMLKit

// The config's sections, each parsed and checked by ConfigParser (ConfigParser.swift).
extension ConfigParser {
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
        node.uplinks = try uplinks(t, tunnel: interface)
        if let m = try int(t, "mtu", "node") {
            guard m >= NodeConfig.minMTU && m <= NodeConfig.maxMTU else {
                throw fail("node.mtu", "\(m) is out of range (\(NodeConfig.minMTU)...\(NodeConfig.maxMTU) bytes)")
            }
            node.mtu = m
        }
        if let c = try string(t, "cipher", "node") {
            guard let setting = CipherSetting(rawValue: c) else {
                throw fail("node.cipher", "\(quoted(c)) is not a cipher setting (\"auto\" or \"chacha20poly1305\")")
            }
            node.cipher = setting
        }
        node.checksumOffload = try bool(t, "checksum_offload", "node") ?? true
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

    /// `uplinks`: distinct interface names, at most `NodeConfig.maxUplinks`, never
    /// the tunnel itself; absent: nil (the engine takes every interface with a
    /// route to the outside). An empty list is refused: it would leave the node
    /// without a way out, and leaving the key out already means "all of them".
    func uplinks(_ t: TOMLTable, tunnel: String) throws(ConfigError) -> [String]? {
        let field = "node.uplinks"
        guard let v = t["uplinks"] else { return nil }
        guard v.type == .array, let array = v.array else {
            throw typeError(field, expected: "an array of interface names, e.g. [\"wlan0\", \"wwan0\"]", found: v)
        }
        guard !array.isEmpty else {
            throw fail(field, "is empty: list at least one interface, or leave the key out for every interface with a route to the outside")
        }
        guard array.count <= NodeConfig.maxUplinks else {
            throw fail(field, "has \(array.count) interfaces; at most \(NodeConfig.maxUplinks)")
        }
        var out: [String] = []
        for (n, element) in array.enumerated() {
            guard element.type == .string, let s = element.string else {
                throw typeError("\(field)[\(n)]", expected: "a string", found: element)
            }
            if let problem = ConfigParser.interfaceProblem(s) { throw fail(field, "\(quoted(s)) \(problem)") }
            guard s != tunnel else { throw fail(field, "\(quoted(s)) is this node's own tunnel interface (node.interface)") }
            guard s != "lo" else { throw fail(field, "\(quoted(s)) is the loopback interface, not a way out") }
            guard !out.contains(s) else { throw fail(field, "\(quoted(s)) is listed twice") }
            out.append(s)
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
}
